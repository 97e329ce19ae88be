// Package metrics defines certgate's Prometheus metrics (prefix certgate_) on
// a registry of their own, so tests can build as many servers as they like.
package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Metrics is the set the service updates.
type Metrics struct {
	Registry      *prometheus.Registry
	HTTPRequests  *prometheus.CounterVec
	HTTPDuration  *prometheus.HistogramVec
	Issued        *prometheus.CounterVec
	IssueFailures *prometheus.CounterVec
	IssueDuration *prometheus.HistogramVec
	Revoked       *prometheus.CounterVec
	CAExpiry      *prometheus.GaugeVec
	CAChainValid  *prometheus.GaugeVec
	PCACalls      *prometheus.CounterVec
	PCAPolls      prometheus.Histogram
	RateLimited   *prometheus.CounterVec
}

// New registers every metric on a fresh registry.
func New() *Metrics {
	r := prometheus.NewRegistry()
	r.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	latency := []float64{.001, .0025, .005, .01, .02, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}
	m := &Metrics{
		Registry: r,
		HTTPRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "certgate_http_requests_total", Help: "HTTP requests by route and status code."}, []string{"route", "code"}),
		HTTPDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "certgate_http_request_duration_seconds", Help: "HTTP request latency by route.", Buckets: latency}, []string{"route"}),
		Issued: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "certgate_certificates_issued_total", Help: "Certificates issued by profile and CA."}, []string{"profile", "ca"}),
		IssueFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "certgate_issuance_failures_total", Help: "Issuance requests that failed, by profile and error code."}, []string{"profile", "code"}),
		IssueDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "certgate_issuance_duration_seconds", Help: "Time to issue a certificate, validation to stored row.", Buckets: latency}, []string{"profile", "backend"}),
		Revoked: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "certgate_certificates_revoked_total", Help: "Certificates revoked by CA and reason."}, []string{"ca", "reason"}),
		CAExpiry: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "certgate_ca_expiry_seconds", Help: "Seconds until each CA certificate expires."}, []string{"ca"}),
		CAChainValid: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "certgate_ca_chain_valid", Help: "1 when the CA's cached chain verifies to the trust bundle, else 0."}, []string{"ca"}),
		PCACalls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "certgate_pca_calls_total", Help: "AWS Private CA API calls by operation and outcome."}, []string{"operation", "outcome"}),
		PCAPolls: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "certgate_pca_get_certificate_polls", Help: "GetCertificate calls needed per issued certificate.", Buckets: []float64{1, 2, 3, 4, 6, 8, 12, 20}}),
		RateLimited: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "certgate_rate_limited_total", Help: "Requests refused by a rate limit, by limiter."}, []string{"limiter"}),
	}
	r.MustRegister(m.HTTPRequests, m.HTTPDuration, m.Issued, m.IssueFailures, m.IssueDuration, m.Revoked,
		m.CAExpiry, m.CAChainValid, m.PCACalls, m.PCAPolls, m.RateLimited)
	return m
}

// WatchWrites exports the database writer's counters: writes over
// transactions is how many writes share a commit (group commit).
func (m *Metrics) WatchWrites(stats func() (writes, transactions int64)) {
	m.Registry.MustRegister(
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "certgate_db_writes_total", Help: "Database writes run by the group-commit writer."},
			func() float64 { w, _ := stats(); return float64(w) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "certgate_db_write_transactions_total", Help: "Transactions the group-commit writer committed or rolled back; writes_total / this = writes per commit."},
			func() float64 { _, t := stats(); return float64(t) }),
	)
}
