package e2e

// Load scenarios for certgate on AWS Private CA, as benchmarks so that
// `go test ./...` never runs them. Each runs its scenario once (use
// -benchtime 1x), reports its figures as benchmark metrics and log lines,
// and fails if the scenario's acceptance criteria are missed:
//
//	CERTGATE_TEST_POSTGRES_DSN=postgres://postgres@127.0.0.1:5432/test?sslmode=disable \
//	go test ./internal/e2e -run '^$' -bench BenchmarkPCALoad -benchtime 1x -timeout 10m
//
// Every request is a real POST /v1/certificates over HTTPS to a whole
// server whose PCA backend is the real SDK talking to the pcatest double;
// every certificate returned is parsed and verified to the double's root.

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/certgate/certgate/internal/ca/pcatest"
	"github.com/certgate/certgate/internal/servertest"
)

// pcaOps are the operations certgate calls, for calls-per-certificate.
var pcaOps = []string{pcatest.OpIssueCertificate, pcatest.OpGetCertificate,
	pcatest.OpGetCertificateAuthorityCertificate, pcatest.OpDescribeCertificateAuthority}

var opShort = map[string]string{
	pcatest.OpIssueCertificate: "issue", pcatest.OpGetCertificate: "get",
	pcatest.OpGetCertificateAuthorityCertificate: "getca", pcatest.OpDescribeCertificateAuthority: "describe",
}

// loadRecorder collects the outcome of every request of a run.
type loadRecorder struct {
	mu       sync.Mutex
	lat      []time.Duration
	errors   int
	firstErr string
}

func (r *loadRecorder) issue(env *servertest.Env, dbl *pcatest.Server, body []byte) {
	t0 := time.Now()
	status, resp, err := post(env, body)
	lat := time.Since(t0)
	if err == nil && status != http.StatusCreated {
		err = fmt.Errorf("status %d: %s", status, resp)
	}
	if err == nil {
		var res issueResp
		if err = json.Unmarshal(resp, &res); err == nil {
			err = verifyBurstCert(&res, dbl)
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil {
		r.errors++
		if r.firstErr == "" {
			r.firstErr = err.Error()
		}
		return
	}
	r.lat = append(r.lat, lat)
}

func (r *loadRecorder) pct(p int) time.Duration {
	if len(r.lat) == 0 {
		return 0
	}
	s := slices.Clone(r.lat)
	slices.Sort(s)
	i := (len(s)*p + 99) / 100
	return s[max(i-1, 0)]
}

// report logs and records the run's figures: latency percentiles, errors,
// and the average number of calls of every PCA operation per certificate.
func (r *loadRecorder) report(b *testing.B, name string, dbl *pcatest.Server, took time.Duration) map[string]float64 {
	perCert := map[string]float64{}
	n := len(r.lat)
	line := fmt.Sprintf("%s: %d certificates, %d errors in %s; latency p50 %s p90 %s p99 %s max %s; calls per certificate:",
		name, n, r.errors, took.Round(time.Millisecond), r.pct(50).Round(time.Millisecond), r.pct(90).Round(time.Millisecond),
		r.pct(99).Round(time.Millisecond), r.pct(100).Round(time.Millisecond))
	for _, op := range pcaOps {
		v := 0.0
		if n > 0 {
			v = float64(dbl.Count(op)) / float64(n)
		}
		perCert[op] = v
		line += fmt.Sprintf(" %s %.2f", op, v)
		b.ReportMetric(v, opShort[op]+"/cert")
	}
	b.Log(line)
	if r.firstErr != "" {
		b.Logf("first error: %s", r.firstErr)
	}
	b.ReportMetric(float64(r.errors), "errors")
	b.ReportMetric(float64(r.pct(50).Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(r.pct(99).Microseconds())/1000, "p99-ms")
	return perCert
}

func serverBodies(b *testing.B, n int) [][]byte {
	key := p256(b)
	out := make([][]byte, n)
	for i := range out {
		cn := fmt.Sprintf("load-%d.e2e.internal", i)
		out[i] = mustJSON(b, map[string]any{"profile": "server", "csr": makeCSR(b, key, csrSpec{CN: cn, DNS: []string{cn}})})
	}
	return out
}

// BenchmarkPCALoadSteady: 5 requests per second for 60 s, open loop, with
// PCA taking 1 s to issue each certificate. Acceptance: no errors.
// warmUp issues 40 certificates one by one, so connections, caches and the
// learned poll delay exist before anything is measured.
func warmUp(env *servertest.Env, dbl *pcatest.Server, bodies [][]byte) *loadRecorder {
	var warm loadRecorder
	for i := range 40 {
		warm.issue(env, dbl, bodies[i%len(bodies)])
	}
	return &warm
}

// backToBack runs clients goroutines that each issue perClient certificates
// one after another, and returns what they measured and how long it took.
func backToBack(env *servertest.Env, dbl *pcatest.Server, bodies [][]byte, clients, perClient int) (*loadRecorder, time.Duration) {
	var rec loadRecorder
	var wg sync.WaitGroup
	start := time.Now()
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perClient {
				rec.issue(env, dbl, bodies[(c*perClient+i)%len(bodies)])
			}
		}()
	}
	wg.Wait()
	return &rec, time.Since(start)
}

func BenchmarkPCALoadSteady(b *testing.B) {
	for range b.N {
		dbl := servertest.NewPCADouble(b)
		dbl.SetIssueDelay(time.Second)
		env := startPCA(b, dbl)
		const rps, seconds = 5, 60
		bodies := serverBodies(b, 64)
		dbl.ResetCalls()
		var rec loadRecorder
		var wg sync.WaitGroup
		tick := time.NewTicker(time.Second / rps)
		start := time.Now()
		for i := range rps * seconds {
			if i > 0 {
				<-tick.C
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				rec.issue(env, dbl, bodies[i%len(bodies)])
			}()
		}
		tick.Stop()
		wg.Wait()
		rec.report(b, "steady 5 rps x 60 s, 1 s issuance", dbl, time.Since(start))
		if rec.errors != 0 || len(rec.lat) != rps*seconds {
			b.Errorf("%d errors, %d certificates of %d", rec.errors, len(rec.lat), rps*seconds)
		}
	}
}

// BenchmarkPCALoadBurst: 100 issuances at once against PCA's default
// IssueCertificate quota (25/s, burst 25) with certgate's default budget.
// Acceptance: all succeed; no throttling reaches a client.
func BenchmarkPCALoadBurst(b *testing.B) {
	for range b.N {
		dbl := servertest.NewPCADouble(b)
		dbl.SetQuota(pcatest.OpIssueCertificate, 25, 25)
		env := startPCA(b, dbl)
		before := dbl.Stats()
		dbl.ResetCalls()
		res := runBurst(b, env, dbl, 100)
		throttled := dbl.Stats().Throttled - before.Throttled
		rec := loadRecorder{lat: res.latency, errors: res.failed, firstErr: res.firstErr}
		rec.report(b, "burst of 100 vs 25/s quota", dbl, res.took)
		b.Logf("burst: the double throttled %d IssueCertificate calls (absorbed by retries); %d throttles reached clients", throttled, res.failed)
		b.ReportMetric(float64(throttled), "throttled@pca")
		if res.failed != 0 || len(res.latency) != 100 {
			b.Errorf("%d of 100 failed; first: %s", res.failed, res.firstErr)
		}
	}
}

// BenchmarkPCALoadLatency: time to certificate with PCA taking 300 ms to
// issue, after a warm-up that lets certgate learn the delay; 4 clients
// issuing back to back. Acceptance: median < 450 ms with GetCertificate
// at most 2 calls per certificate on average.
func BenchmarkPCALoadLatency(b *testing.B) {
	for range b.N {
		dbl := servertest.NewPCADouble(b)
		dbl.SetIssueDelay(300 * time.Millisecond)
		env := startPCA(b, dbl)
		bodies := serverBodies(b, 64)
		warm := warmUp(env, dbl, bodies)
		if warm.errors > 0 {
			b.Fatalf("warm-up: %d errors; first: %s", warm.errors, warm.firstErr)
		}
		dbl.ResetCalls()
		rec, took := backToBack(env, dbl, bodies, 4, 50)
		perCert := rec.report(b, "latency, 300 ms issuance, 4 clients", dbl, took)
		if rec.errors != 0 {
			b.Errorf("%d errors; first: %s", rec.errors, rec.firstErr)
		}
		if p50 := rec.pct(50); p50 >= 450*time.Millisecond {
			b.Errorf("median time to certificate %s, want < 450ms", p50)
		}
		if g := perCert[pcatest.OpGetCertificate]; g > 2 {
			b.Errorf("%.2f GetCertificate calls per certificate, want ≤ 2", g)
		}
	}
}

// BenchmarkPCALoadAfterBurst: PCA takes 300 ms to issue; a burst of 100
// queues up to 4 s for the IssueCertificate budget, then 4 clients issue
// back to back. Time spent queueing is no part of PCA's issuance delay, so
// the first poll after the burst must still come at about 300 ms.
// Acceptance: median time to certificate after the burst < 450 ms and p90
// < 600 ms, with at most 2 GetCertificate calls per certificate.
func BenchmarkPCALoadAfterBurst(b *testing.B) {
	for range b.N {
		dbl := servertest.NewPCADouble(b)
		dbl.SetIssueDelay(300 * time.Millisecond)
		dbl.SetQuota(pcatest.OpIssueCertificate, 25, 25)
		env := startPCA(b, dbl)
		bodies := serverBodies(b, 64)
		warm := warmUp(env, dbl, bodies)
		burst := runBurst(b, env, dbl, 100)
		if warm.errors > 0 || burst.failed > 0 {
			b.Fatalf("warm-up %d errors, burst %d; first: %s %s", warm.errors, burst.failed, warm.firstErr, burst.firstErr)
		}
		b.Logf("burst of 100 with 300 ms issuance: %s, p50 %s", burst.took.Round(time.Millisecond), burst.latency[50].Round(time.Millisecond))
		dbl.ResetCalls()
		rec, took := backToBack(env, dbl, bodies, 4, 25)
		perCert := rec.report(b, "after the burst, 300 ms issuance, 4 clients", dbl, took)
		if rec.errors != 0 {
			b.Errorf("%d errors; first: %s", rec.errors, rec.firstErr)
		}
		if p50, p90 := rec.pct(50), rec.pct(90); p50 >= 450*time.Millisecond || p90 >= 600*time.Millisecond {
			b.Errorf("time to certificate after a burst: median %s, p90 %s; want < 450ms and < 600ms", p50, p90)
		}
		if g := perCert[pcatest.OpGetCertificate]; g > 2 {
			b.Errorf("%.2f GetCertificate calls per certificate, want ≤ 2", g)
		}
	}
}
