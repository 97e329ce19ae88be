// Package api is certgate's HTTP edge: routing, authentication, decoding,
// and the one place where errors are classified into status codes.
package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"

	"github.com/certgate/certgate/internal/apierror"
	"github.com/certgate/certgate/internal/auth"
	"github.com/certgate/certgate/internal/ca"
	"github.com/certgate/certgate/internal/cacache"
	"github.com/certgate/certgate/internal/issuance"
	"github.com/certgate/certgate/internal/metrics"
	"github.com/certgate/certgate/internal/policy"
	"github.com/certgate/certgate/internal/store"
	"github.com/certgate/certgate/internal/validation"
)

// Body limits: a CSR is at most 32 KiB, a whole request at most 64 KiB.
const (
	MaxRequestBytes = 64 << 10
	MaxCSRBytes     = 32 << 10
)

// Limiter is a per-principal rate limit.
type Limiter interface {
	Allow(principal string) (ok bool, retryAfter time.Duration)
}

// Readiness reports one dependency's health for /readyz.
type Readiness func(ctx context.Context) (name string, err error)

// API holds the handlers' dependencies.
type API struct {
	Issuer   *issuance.Service
	Store    *store.Store
	Auth     *auth.Authenticator
	CAs      *cacache.Cache
	Log      *zap.Logger
	Metrics  *metrics.Metrics
	Limiter  Limiter
	Backend  string
	Ready    []Readiness
	Now      func() time.Time
	Extra    func(mux *http.ServeMux) // routes other packages add (revocation, istio, …)
	draining func() bool
}

// Handler builds the router.
func (a *API) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("POST /v1/certificates", a.authed("/v1/certificates", a.issue))
	mux.Handle("GET /v1/certificates", a.authed("/v1/certificates", a.list))
	mux.Handle("GET /v1/certificates/{serial}", a.authed("/v1/certificates/{serial}", a.get))
	mux.Handle("GET /v1/trust-bundle", a.wrap("/v1/trust-bundle", a.trustBundle))
	mux.Handle("GET /v1/cas", a.authed("/v1/cas", a.listCAs))
	mux.Handle("GET /v1/cas/{name}/chain", a.wrap("/v1/cas/{name}/chain", a.caChain))
	mux.Handle("POST /v1/cas/refresh", a.authed("/v1/cas/refresh", a.refreshCAs))
	mux.Handle("GET /healthz", a.wrap("/healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	}))
	mux.Handle("GET /readyz", a.wrap("/readyz", a.readyz))
	mux.Handle("GET /metrics", a.wrap("/metrics", promhttp.HandlerFor(a.Metrics.Registry, promhttp.HandlerOpts{}).ServeHTTP))
	if a.Extra != nil {
		a.Extra(mux)
	}
	// Unmatched paths and methods get the documented error body (404, or
	// 405 with Allow), not Go's plain text.
	unmatched := a.wrap("unmatched", func(w http.ResponseWriter, r *http.Request) {
		var allow []string
		for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodPatch} {
			probe := r.Clone(r.Context())
			probe.Method = m
			if _, pattern := mux.Handler(probe); pattern != "" {
				allow = append(allow, m)
			}
		}
		if len(allow) > 0 {
			w.Header().Set("Allow", strings.Join(allow, ", "))
			a.writeError(w, r, apierror.New(http.StatusMethodNotAllowed, apierror.CodeMethodNotAllowed, "%s is not allowed on %s (allowed: %s)", r.Method, r.URL.Path, strings.Join(allow, ", ")))
			return
		}
		a.writeError(w, r, apierror.NotFound("no route for %s %s", r.Method, r.URL.Path))
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, pattern := mux.Handler(r); pattern == "" {
			unmatched.ServeHTTP(w, r)
			return
		}
		mux.ServeHTTP(w, r)
	})
}

// Authed exposes the authentication wrapper to route-adding packages.
func (a *API) Authed(route string, h func(http.ResponseWriter, *http.Request, *auth.Principal)) http.Handler {
	return a.authed(route, h)
}

// Wrap exposes the unauthenticated wrapper to route-adding packages.
func (a *API) Wrap(route string, h http.HandlerFunc) http.Handler { return a.wrap(route, h) }

// WriteError exposes the error writer.
func (a *API) WriteError(w http.ResponseWriter, r *http.Request, err error) { a.writeError(w, r, err) }

// WriteJSON writes a JSON body.
func WriteJSON(w http.ResponseWriter, status int, v any) { writeJSON(w, status, v) }

// DecodeJSON exposes the strict decoder.
func DecodeJSON(r *http.Request, v any) error { return decodeJSON(r, v) }

// Caller builds the issuance caller for a request.
func Caller(r *http.Request, p *auth.Principal) issuance.Caller {
	info := reqInfo(r)
	return issuance.Caller{Principal: p.Name, Policy: p.Policy, RequestID: info.id, SourceAddr: remoteIP(r),
		IdempotencyKey: strings.TrimSpace(r.Header.Get("Idempotency-Key"))}
}

// SetLogFields records profile and serial for the access log line.
func SetLogFields(r *http.Request, profile, serial string) {
	if info := reqInfo(r); info != nil {
		if profile != "" {
			info.profile = profile
		}
		if serial != "" {
			info.serial = serial
		}
	}
}

// decodeJSON reads exactly one JSON object with no unknown fields.
func decodeJSON(r *http.Request, v any) error {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || (mt != "application/json" && !strings.HasSuffix(mt, "+json")) {
			return apierror.New(http.StatusUnsupportedMediaType, apierror.CodeUnsupportedMedia, "Content-Type must be application/json")
		}
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return bodyError(err)
	}
	return DecodeStrict(body, v)
}

// DecodeStrict decodes one JSON object, refusing unknown fields and trailing
// data. It is the parser the fuzz target drives.
func DecodeStrict(body []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var se *json.SyntaxError
		var te *json.UnmarshalTypeError
		switch {
		case errors.Is(err, io.EOF):
			return apierror.New(http.StatusBadRequest, apierror.CodeBadRequest, "the request body is empty; send a JSON object")
		case errors.As(err, &se):
			return apierror.New(http.StatusBadRequest, apierror.CodeBadRequest, "malformed JSON at byte %d", se.Offset)
		case errors.As(err, &te):
			field := te.Field
			if field == "" {
				field = "body"
			}
			return apierror.Field(field, "must be %s, not %s", te.Type, te.Value)
		case strings.HasPrefix(err.Error(), "json: unknown field "):
			name := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
			return apierror.Field(name, "unknown field")
		default:
			return apierror.New(http.StatusBadRequest, apierror.CodeBadRequest, "malformed JSON: %v", err)
		}
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return apierror.New(http.StatusBadRequest, apierror.CodeBadRequest, "unexpected data after the JSON object")
	}
	return nil
}

func (a *API) issue(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	var req issuance.Request
	if err := decodeJSON(r, &req); err != nil {
		a.writeError(w, r, err)
		return
	}
	if len(req.CSR) > MaxCSRBytes {
		a.writeError(w, r, apierror.New(http.StatusRequestEntityTooLarge, apierror.CodeTooLarge, "the CSR exceeds %d bytes", MaxCSRBytes).WithDetail("csr", "too large"))
		return
	}
	if k := r.Header.Get("Idempotency-Key"); len(k) > 255 {
		a.writeError(w, r, apierror.Field("Idempotency-Key", "at most 255 characters"))
		return
	}
	SetLogFields(r, req.Profile, "")
	res, err := a.Issuer.Issue(r.Context(), Caller(r, p), req)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	SetLogFields(r, "", res.Serial)
	w.Header().Set("Location", "/v1/certificates/"+res.Serial)
	if res.Replayed {
		w.Header().Set("Idempotent-Replayed", "true")
	}
	writeJSON(w, http.StatusCreated, res)
}

// CertificateView is a stored certificate as the API shows it.
type CertificateView struct {
	Serial           string     `json:"serial"`
	Status           string     `json:"status"`
	Profile          string     `json:"profile"`
	CA               string     `json:"ca"`
	Cluster          string     `json:"cluster,omitempty"`
	CommonName       string     `json:"common_name"`
	SANs             []string   `json:"sans"`
	KeyAlgorithm     string     `json:"key_algorithm"`
	NotBefore        time.Time  `json:"not_before"`
	NotAfter         time.Time  `json:"not_after"`
	Requester        string     `json:"requester"`
	Fingerprint      string     `json:"fingerprint_sha256,omitempty"`
	CertificateARN   string     `json:"certificate_arn,omitempty"`
	RevokedAt        *time.Time `json:"revoked_at,omitempty"`
	RevocationReason string     `json:"revocation_reason,omitempty"`
	CreatedAt        time.Time  `json:"created_at"`
	Certificate      string     `json:"certificate,omitempty"`
}

// View renders a stored row.
func View(c *store.Certificate, withPEM bool) CertificateView {
	v := CertificateView{Status: c.Status, Profile: c.Profile, CA: c.CA, Cluster: c.Cluster, CommonName: c.CommonName,
		SANs: c.SANs, KeyAlgorithm: c.KeyAlgorithm, NotBefore: c.NotBefore.UTC(), NotAfter: c.NotAfter.UTC(), Requester: c.Requester,
		Fingerprint: c.Fingerprint, CertificateARN: c.ARN, RevokedAt: c.RevokedAt, RevocationReason: c.RevocationReason,
		CreatedAt: c.CreatedAt.UTC()}
	if c.Serial != nil {
		v.Serial = *c.Serial
	}
	if v.SANs == nil {
		v.SANs = []string{}
	}
	if withPEM {
		v.Certificate = c.PEM
	}
	return v
}

// LoadOwned fetches a certificate by any spelling of its serial, for a
// principal allowed op on it: non-admins see only their own, and someone
// else's certificate is a 404 so existence does not leak.
func (a *API) LoadOwned(r *http.Request, p *auth.Principal, op string) (*store.Certificate, error) {
	if !p.Policy.Can(op) {
		return nil, apierror.Forbidden("principal %q may not %s certificates", p.Name, op).WithDetail("operation", op+" not allowed")
	}
	serial, err := ca.NormalizeSerial(r.PathValue("serial"))
	if err != nil {
		return nil, apierror.Field("serial", "%v", err)
	}
	SetLogFields(r, "", serial)
	c, err := a.Store.GetBySerial(r.Context(), serial)
	if errors.Is(err, store.ErrNotFound) || (err == nil && !p.Policy.IsAdmin() && c.Requester != p.Name) {
		return nil, apierror.NotFound("no certificate with serial %s", serial)
	}
	if err != nil {
		return nil, dbErr(err)
	}
	return c, nil
}

func dbErr(err error) error {
	if errors.Is(err, context.Canceled) {
		return apierror.New(http.StatusRequestTimeout, apierror.CodeTimeout, "request cancelled")
	}
	return apierror.Unavailable(apierror.CodeDatabase, 2*time.Second, "the database is unavailable; retry shortly").WithCause(err)
}

// DBError classifies a database error for route-adding packages.
func DBError(err error) error { return dbErr(err) }

func (a *API) get(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	c, err := a.LoadOwned(r, p, policy.OpRead)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, View(c, true))
}

func parseLimit(q string) (int, error) {
	if q == "" {
		return 100, nil
	}
	n, err := strconv.Atoi(q)
	if err != nil || n < 1 || n > 1000 {
		return 0, apierror.Field("limit", "must be an integer from 1 to 1000")
	}
	return n, nil
}

// ParseLimit exposes limit parsing.
func ParseLimit(q string) (int, error) { return parseLimit(q) }

// ParseTime reads an RFC 3339 query parameter.
func ParseTime(field, v string) (*time.Time, error) {
	if v == "" {
		return nil, nil
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return nil, apierror.Field(field, "must be an RFC 3339 time such as 2026-01-02T15:04:05Z")
	}
	return &t, nil
}

var certStatuses = map[string]bool{store.StatusPending: true, store.StatusIssued: true, store.StatusFailed: true, store.StatusRevoked: true}

func (a *API) list(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	if !p.Policy.Can(policy.OpRead) {
		a.writeError(w, r, apierror.Forbidden("principal %q may not read certificates", p.Name))
		return
	}
	q := r.URL.Query()
	for k := range q {
		switch k {
		case "profile", "status", "common_name", "expires_before", "limit", "page_token", "ca", "requester":
		default:
			a.writeError(w, r, apierror.Field(k, "unknown query parameter"))
			return
		}
	}
	f := store.CertFilter{Profile: q.Get("profile"), Status: q.Get("status"), CommonName: normalizeCN(q.Get("common_name")), CA: q.Get("ca"), PageToken: q.Get("page_token")}
	if f.Status != "" && !certStatuses[f.Status] {
		a.writeError(w, r, apierror.Field("status", "one of pending, issued, failed, revoked"))
		return
	}
	if f.CA != "" && !ca.KnownCA(f.CA) {
		a.writeError(w, r, apierror.Field("ca", "unknown CA %q", f.CA))
		return
	}
	var err error
	if f.Limit, err = parseLimit(q.Get("limit")); err != nil {
		a.writeError(w, r, err)
		return
	}
	if f.ExpiresBefore, err = ParseTime("expires_before", q.Get("expires_before")); err != nil {
		a.writeError(w, r, err)
		return
	}
	if !p.Policy.IsAdmin() {
		f.Requester = p.Name
	} else {
		f.Requester = q.Get("requester")
	}
	rows, next, err := a.Store.ListCertificates(r.Context(), f)
	if errors.Is(err, store.ErrBadPageToken) {
		a.writeError(w, r, apierror.Field("page_token", "not a token this server issued"))
		return
	}
	if err != nil {
		a.writeError(w, r, dbErr(err))
		return
	}
	out := make([]CertificateView, len(rows))
	for i := range rows {
		out[i] = View(&rows[i], false)
	}
	writeJSON(w, http.StatusOK, map[string]any{"certificates": out, "next_page_token": next})
}

// normalizeCN spells a common_name filter the way names are stored.
func normalizeCN(cn string) string {
	if cn == "" {
		return ""
	}
	if n, err := validation.ParseNames(cn, nil, true); err == nil {
		return n.CommonName
	}
	return cn
}

func (a *API) trustBundle(w http.ResponseWriter, r *http.Request) {
	roots := a.CAs.Roots()
	if len(roots) == 0 {
		a.writeError(w, r, apierror.Unavailable(apierror.CodeCAUnavailable, 5*time.Second, "the root CA certificate is not available yet"))
		return
	}
	w.Header().Set("Content-Type", "application/x-pem-file")
	w.Header().Set("Cache-Control", "public, max-age=300")
	_, _ = w.Write([]byte(cacache.PEM(roots...)))
}

func (a *API) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	checks := map[string]string{}
	ok := true
	if a.draining != nil && a.draining() {
		checks["shutdown"] = "draining"
		ok = false
	}
	for _, check := range a.Ready {
		name, err := check(ctx)
		if err != nil {
			checks[name] = err.Error()
			ok = false
		} else {
			checks[name] = "ok"
		}
	}
	warnings := a.CAs.Warnings()
	status := http.StatusOK
	word := "ready"
	if !ok {
		status, word = http.StatusServiceUnavailable, "not ready"
	}
	writeJSON(w, status, map[string]any{"status": word, "checks": checks, "warnings": warnings})
}

// SetDraining lets the server report shutdown in /readyz.
func (a *API) SetDraining(f func() bool) { a.draining = f }
