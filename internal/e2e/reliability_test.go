package e2e

// Reliability: write-before-sign, Idempotency-Key semantics, outages of the
// database and of AWS Private CA, graceful shutdown, and two replicas on one
// PostgreSQL. Helpers are prefixed "rel" so they cannot collide with other
// files of this package.
//
// Idempotency-Key contract these tests pin down (per principal; keys of
// different principals are independent):
//   - same key, same body, first request finished → 201 with the first
//     result (same serial) and header Idempotent-Replayed: true; a
//     server-generated private key is never stored, so a replay carries no
//     private_key (send a CSR when the response might be lost);
//   - same key, same body, first request still in flight → 409 code
//     "conflict", retryable true, Retry-After 1: retry the same key;
//   - same key, different body → 422 idempotency_key_reused;
//   - a request that failed definitively after it was recorded (400, 502)
//     replays the same error; one that failed in a way that invites a retry
//     (429 throttled, 503 CA not active — the CA issued nothing) releases
//     the key, so the retry the client was told to make is a new attempt;
//   - a request whose outcome is unknown (timeout, 5xx, lost answer) keeps
//     its row pending: the key answers 409 until reconciliation settles it.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/certgate/certgate/internal/apierror"
	"github.com/certgate/certgate/internal/auth"
	"github.com/certgate/certgate/internal/ca"
	"github.com/certgate/certgate/internal/ca/pcatest"
	"github.com/certgate/certgate/internal/config"
	"github.com/certgate/certgate/internal/policy"
	"github.com/certgate/certgate/internal/server"
	"github.com/certgate/certgate/internal/servertest"
	"github.com/certgate/certgate/internal/store"
)

// ---- helpers ----

// relResp is one HTTP exchange; Err is a transport error.
type relResp struct {
	Status int
	Header http.Header
	Body   []byte
	Err    error
}

func (r relResp) String() string {
	if r.Err != nil {
		return "transport error: " + r.Err.Error()
	}
	return fmt.Sprintf("%d %s", r.Status, bytes.TrimSpace(r.Body))
}

// relDo sends one request through client c (nil: the env's admin client's
// transport) with bearer token tok ("" = the admin token). It is safe to
// call from any goroutine.
func relDo(env *servertest.Env, c *http.Client, tok, method, path string, body any, hdr map[string]string) relResp {
	if c == nil {
		c = env.Client.HTTP
	}
	if tok == "" {
		tok = env.Srv.Token
	}
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return relResp{Err: err}
		}
		rd = bytes.NewReader(b)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, env.URL+path, rd)
	if err != nil {
		return relResp{Err: err}
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		return relResp{Err: err}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return relResp{Status: resp.StatusCode, Header: resp.Header, Body: b, Err: err}
}

func relIssue(env *servertest.Env, key string, body map[string]any) relResp {
	var hdr map[string]string
	if key != "" {
		hdr = map[string]string{"Idempotency-Key": key}
	}
	return relDo(env, nil, "", "POST", "/v1/certificates", body, hdr)
}

func relIssued(t testing.TB, r relResp) issueResp {
	t.Helper()
	if r.Err != nil || r.Status != http.StatusCreated {
		t.Fatalf("want 201, got %s", r)
	}
	var out issueResp
	if err := json.Unmarshal(r.Body, &out); err != nil || out.Serial == "" {
		t.Fatalf("decoding 201: %v: %s", err, r.Body)
	}
	return out
}

func relErrBody(t testing.TB, r relResp) errBody {
	t.Helper()
	var eb errBody
	if err := json.Unmarshal(r.Body, &eb); err != nil || eb.Error.Code == "" {
		t.Fatalf("response %s is not the documented error body: %v", r, err)
	}
	return eb
}

// relWantErr requires a status and code, retryable as given, and Retry-After
// when retryable.
func relWantErr(t testing.TB, what string, r relResp, status int, code string, retryable bool) errBody {
	t.Helper()
	if r.Err != nil || r.Status != status {
		t.Fatalf("%s: want %d %s, got %s", what, status, code, r)
	}
	eb := relErrBody(t, r)
	if code != "" && eb.Error.Code != code {
		t.Fatalf("%s: code %q, want %q (%s)", what, eb.Error.Code, code, eb.Error.Message)
	}
	if eb.Error.Retryable == nil || *eb.Error.Retryable != retryable {
		t.Errorf("%s: retryable %v, want %v", what, eb.Error.Retryable, retryable)
	}
	if retryable && r.Header.Get("Retry-After") == "" {
		t.Errorf("%s: retryable %d without Retry-After", what, status)
	}
	return eb
}

// relStart is servertest.Start whose client drops its idle connections
// before the server shuts down: http.Server.Shutdown waits up to 5 s for a
// connection that was opened but never carried a request (StateNew), which
// a burst of concurrent requests leaves behind in the client's pool.
func relStart(t *testing.T, opts ...servertest.Option) *servertest.Env {
	t.Helper()
	env := servertest.Start(t, opts...)
	t.Cleanup(env.Client.HTTP.CloseIdleConnections)
	return env
}

func relWithDataDir(dir string) servertest.Option {
	return func(c *config.Config, _ *server.Options) { c.DataDir = dir }
}

// relPrincipal adds a token principal that may issue and read server and
// client certificates for *.rel.internal.
func relPrincipal(t testing.TB, name string) (servertest.Option, string) {
	tok, hash, err := auth.NewToken()
	if err != nil {
		t.Fatal(err)
	}
	return func(c *config.Config, _ *server.Options) {
		c.Auth.Principals = append(c.Auth.Principals, config.Principal{Name: name, TokenSHA256: hash,
			Config: policy.Config{Operations: []string{policy.OpIssue, policy.OpRead}, Profiles: []string{"server", "client"},
				Allow: []string{"*.rel.internal"}}})
	}, tok
}

func relCSRBody(t testing.TB, cn string) map[string]any {
	return map[string]any{"profile": "server", "csr": makeCSR(t, p256(t), csrSpec{CN: cn, DNS: []string{cn}})}
}

func relRowsWhere(t testing.TB, st *store.Store, query string, args ...any) []store.Certificate {
	t.Helper()
	var rows []store.Certificate
	if err := st.DB().Where(query, args...).Order("id").Find(&rows).Error; err != nil {
		t.Fatal(err)
	}
	return rows
}

func relOneRow(t testing.TB, st *store.Store, query string, args ...any) store.Certificate {
	t.Helper()
	rows := relRowsWhere(t, st, query, args...)
	if len(rows) != 1 {
		t.Fatalf("%d rows where %s %v, want 1", len(rows), query, args)
	}
	return rows[0]
}

func relPendingCount(t testing.TB, st *store.Store) int {
	t.Helper()
	return len(relRowsWhere(t, st, "status = ?", store.StatusPending))
}

// relMintedSerials are the serials (certgate's spelling) the double minted.
func relMintedSerials(dbl *pcatest.Server) []string {
	var out []string
	for _, c := range dbl.IssuedCerts() {
		out = append(out, ca.FormatSerial(c.Cert.SerialNumber))
	}
	return out
}

// relEveryMintedIsIssued: every certificate the double minted has an issued
// row with its serial.
func relEveryMintedIsIssued(t testing.TB, st *store.Store, dbl *pcatest.Server) {
	t.Helper()
	for _, s := range relMintedSerials(dbl) {
		rows := relRowsWhere(t, st, "serial = ?", s)
		if len(rows) != 1 || (rows[0].Status != store.StatusIssued && rows[0].Status != store.StatusRevoked) {
			t.Errorf("certificate %s minted by PCA has no issued row (%d rows)", s, len(rows))
		}
	}
}

// relProbe is the local CA with a look at the database from inside Sign,
// and an error to return instead of signing.
type relProbe struct {
	*ca.Local
	st   atomic.Pointer[store.Store]
	fail atomic.Pointer[error]

	mu   sync.Mutex
	seen []store.Certificate // the row as Sign found it
	errs []error
}

func (p *relProbe) Sign(ctx context.Context, req *ca.SignRequest) (*ca.SignResult, error) {
	if st := p.st.Load(); st != nil && strings.HasSuffix(req.Subject.CommonName, ".wbs.rel.internal") {
		row, err := st.GetBySerial(ctx, ca.FormatSerial(req.Serial))
		p.mu.Lock()
		if err != nil {
			p.errs = append(p.errs, err)
		} else {
			p.seen = append(p.seen, *row)
		}
		p.mu.Unlock()
		if e := p.fail.Swap(nil); e != nil {
			return nil, *e
		}
	}
	return p.Local.Sign(ctx, req)
}

func (p *relProbe) last(t testing.TB) store.Certificate {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.errs) > 0 {
		t.Fatalf("reading the row from inside Sign: %v (the row must be committed before the CA is asked)", p.errs)
	}
	if len(p.seen) == 0 {
		t.Fatal("Sign was not called")
	}
	return p.seen[len(p.seen)-1]
}

func (p *relProbe) failWith(err error) { p.fail.Store(&err) }

func (p *relProbe) calls() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.seen) + len(p.errs)
}

// ---- 1. write before sign ----

// relLocalProbe starts a server whose local CA is wrapped in a probe that
// looks at the database from inside Sign.
func relLocalProbe(t *testing.T) (*relProbe, *servertest.Env) {
	t.Helper()
	probe := &relProbe{}
	env := relStart(t, func(c *config.Config, o *server.Options) {
		l, err := ca.OpenLocal(ca.LocalOptions{Dir: filepath.Join(c.DataDir, "ca")})
		if err != nil {
			t.Fatal(err)
		}
		probe.Local = l
		o.Backend = probe
	})
	probe.st.Store(env.Srv.Store)
	return probe, env
}

func TestWriteBeforeSignLocal(t *testing.T) {
	probe, env := relLocalProbe(t)
	st := env.Srv.Store

	t.Run("pending row exists when the CA is called", func(t *testing.T) {
		r := relIssue(env, "wbs-key-1", relCSRBody(t, "a.wbs.rel.internal"))
		res := relIssued(t, r)
		seen := probe.last(t)
		if seen.Status != store.StatusPending {
			t.Errorf("row status %q while the CA signs, want pending", seen.Status)
		}
		if len(seen.RequestHash) != 64 {
			t.Errorf("row request hash %q while the CA signs, want a SHA-256 hex", seen.RequestHash)
		}
		if seen.Requester != auth.AdminName {
			t.Errorf("row requester %q, want %q", seen.Requester, auth.AdminName)
		}
		if seen.IdempotencyKey == nil || *seen.IdempotencyKey != "wbs-key-1" || seen.IdemRequester == nil || *seen.IdemRequester != auth.AdminName {
			t.Errorf("row idempotency key %v / requester %v, want wbs-key-1 / admin", seen.IdempotencyKey, seen.IdemRequester)
		}
		if seen.Serial == nil || *seen.Serial != res.Serial || seen.PEM != "" {
			t.Errorf("row while signing: serial %v pem %d bytes; want the chosen serial %s and no certificate yet", seen.Serial, len(seen.PEM), res.Serial)
		}
		after := relOneRow(t, st, "id = ?", seen.ID)
		if after.Status != store.StatusIssued || after.PEM != res.Certificate || after.Fingerprint == "" || after.IdempotencyToken == "" {
			t.Errorf("row after success: status %s, pem matches %v, fingerprint %q, token %q; want issued with the certificate",
				after.Status, after.PEM == res.Certificate, after.Fingerprint, after.IdempotencyToken)
		}
		var evs []store.Event
		st.DB().Where("serial = ? AND type = ?", res.Serial, store.EventIssued).Find(&evs)
		if len(evs) != 1 {
			t.Errorf("%d issued events for %s, want 1", len(evs), res.Serial)
		}
	})

	t.Run("definitive CA error fails the row with the reason", func(t *testing.T) {
		probe.failWith(apierror.New(http.StatusBadGateway, apierror.CodeUpstream, "the test CA refused this request"))
		body := relCSRBody(t, "b.wbs.rel.internal")
		r := relIssue(env, "wbs-key-2", body)
		eb := relWantErr(t, "refused issuance", r, http.StatusBadGateway, apierror.CodeUpstream, false)
		seen := probe.last(t)
		if seen.Status != store.StatusPending {
			t.Errorf("row status %q while the CA signs, want pending", seen.Status)
		}
		row := relOneRow(t, st, "id = ?", seen.ID)
		if row.Status != store.StatusFailed || !strings.Contains(row.FailureReason, "the test CA refused this request") {
			t.Errorf("row after a definitive error: status %s reason %q; want failed with the reason", row.Status, row.FailureReason)
		}
		var n int64
		st.DB().Model(&store.Event{}).Where("type = ? AND request_id = ?", store.EventFailed, eb.Error.RequestID).Count(&n)
		if n != 1 {
			t.Errorf("%d failed events for request %s, want 1", n, eb.Error.RequestID)
		}
		// The same request replays the same error without asking the CA.
		before := probe.calls()
		r2 := relIssue(env, "wbs-key-2", body)
		eb2 := relWantErr(t, "replayed failure", r2, http.StatusBadGateway, apierror.CodeUpstream, false)
		if eb2.Error.Message != eb.Error.Message {
			t.Errorf("replayed failure %q, first %q", eb2.Error.Message, eb.Error.Message)
		}
		if probe.calls() != before {
			t.Error("the replay of a failed key asked the CA again")
		}
	})

	t.Run("unknown outcome leaves the row pending for reconciliation", func(t *testing.T) {
		probe.failWith(fmt.Errorf("%w: %w", ca.ErrOutcomeUnknown, apierror.Unavailable(apierror.CodeUpstream, time.Second, "the test CA did not answer")))
		r := relIssue(env, "wbs-key-3", relCSRBody(t, "c.wbs.rel.internal"))
		relWantErr(t, "unknown outcome", r, http.StatusServiceUnavailable, apierror.CodeUpstream, true)
		seen := probe.last(t)
		if row := relOneRow(t, st, "id = ?", seen.ID); row.Status != store.StatusPending {
			t.Fatalf("row after an unknown outcome: %s, want pending", row.Status)
		}
		// The local CA signs in process: reconciliation fails the row.
		if _, err := env.Srv.Issuer.Reconcile(context.Background(), st, 0); err != nil {
			t.Fatal(err)
		}
		if row := relOneRow(t, st, "id = ?", seen.ID); row.Status != store.StatusFailed {
			t.Errorf("row after reconciliation: %s, want failed", row.Status)
		}
		if n := relPendingCount(t, st); n != 0 {
			t.Errorf("%d rows pending", n)
		}
	})
}

// Without an Idempotency-Key the local CA (which signs in this process, so a
// certificate exists nowhere before it is recorded) writes its row once,
// after signing; whichever way, the row ends issued and nothing is pending.
func TestWriteBeforeSignLocalWithoutKey(t *testing.T) {
	probe, env := relLocalProbe(t)
	res := relIssued(t, relIssue(env, "", relCSRBody(t, "nokey.wbs.rel.internal")))
	probe.mu.Lock()
	t.Logf("row seen from inside Sign: %d rows, lookup errors %v", len(probe.seen), probe.errs)
	probe.mu.Unlock()
	if row := relOneRow(t, env.Srv.Store, "serial = ?", res.Serial); row.Status != store.StatusIssued || row.PEM != res.Certificate {
		t.Errorf("row: %s, want issued with the certificate", row.Status)
	}
	if n := relPendingCount(t, env.Srv.Store); n != 0 {
		t.Errorf("%d rows pending", n)
	}
}

func TestWriteBeforeSignPCA(t *testing.T) {
	dbl := servertest.NewPCADouble(t)
	env := relStart(t, servertest.WithPCA(t, dbl))
	st := env.Srv.Store

	t.Run("ARN recorded as soon as IssueCertificate returns", func(t *testing.T) {
		dbl.SetIssueDelay(1500 * time.Millisecond)
		defer dbl.SetIssueDelay(0)
		cn := "arn.wbs.rel.internal"
		start := time.Now()
		done := make(chan relResp, 1)
		go func() { done <- relIssue(env, "", relCSRBody(t, cn)) }()
		var seen store.Certificate
		var seenAfter time.Duration
		for {
			rows := relRowsWhere(t, st, "common_name = ?", cn)
			if len(rows) == 1 && rows[0].ARN != "" {
				seen, seenAfter = rows[0], time.Since(start)
				break
			}
			select {
			case r := <-done:
				t.Fatalf("the issuance finished (%s) before its ARN was seen recorded (rows %d)", r, len(rows))
			default:
			}
			time.Sleep(10 * time.Millisecond)
		}
		if seen.Status != store.StatusPending || seen.Serial != nil {
			t.Errorf("row with the ARN: status %s serial %v, want pending without a serial (PCA is still issuing)", seen.Status, seen.Serial)
		}
		calls := dbl.Calls(pcatest.OpIssueCertificate)
		if len(calls) == 0 || calls[len(calls)-1].CertificateArn != seen.ARN {
			t.Errorf("recorded ARN %q is not the one IssueCertificate returned", seen.ARN)
		}
		if len(seen.CSR) == 0 || len(seen.RequestHash) != 64 || seen.Requester != auth.AdminName {
			t.Errorf("pending PCA row lacks CSR (%d bytes), request hash %q or requester %q", len(seen.CSR), seen.RequestHash, seen.Requester)
		}
		res := relIssued(t, <-done)
		t.Logf("ARN recorded %s after the request started; certificate after %s", seenAfter, time.Since(start))
		row := relOneRow(t, st, "id = ?", seen.ID)
		if row.Status != store.StatusIssued || row.Serial == nil || *row.Serial != res.Serial || row.ARN != seen.ARN || res.CertificateARN != seen.ARN {
			t.Errorf("row after success: status %s serial %v arn %s; want issued as %s with ARN %s", row.Status, row.Serial, row.ARN, res.Serial, seen.ARN)
		}
	})

	t.Run("definitive PCA error fails the row with the reason", func(t *testing.T) {
		issues := dbl.Count(pcatest.OpIssueCertificate)
		dbl.FailNext(pcatest.OpIssueCertificate, 1, "InvalidArgsException", 0)
		cn := "refused.wbs.rel.internal"
		body := relCSRBody(t, cn)
		r := relIssue(env, "wbs-pca-refused", body)
		eb := relWantErr(t, "InvalidArgsException", r, http.StatusBadRequest, ca.CodePCAInvalidArgs, false)
		if n := dbl.Count(pcatest.OpIssueCertificate) - issues; n != 1 {
			t.Errorf("%d IssueCertificate calls for a definitive refusal, want 1 (no retry)", n)
		}
		row := relOneRow(t, st, "common_name = ?", cn)
		if row.Status != store.StatusFailed || !strings.Contains(row.FailureReason, ca.CodePCAInvalidArgs) || row.ARN != "" {
			t.Errorf("row: status %s reason %q arn %q; want failed naming %s", row.Status, row.FailureReason, row.ARN, ca.CodePCAInvalidArgs)
		}
		// The same request replays the same error, without calling PCA.
		r2 := relIssue(env, "wbs-pca-refused", body)
		eb2 := relWantErr(t, "replayed refusal", r2, http.StatusBadRequest, ca.CodePCAInvalidArgs, false)
		if eb2.Error.Message != eb.Error.Message {
			t.Errorf("replayed message %q, first %q", eb2.Error.Message, eb.Error.Message)
		}
		if n := dbl.Count(pcatest.OpIssueCertificate) - issues; n != 1 {
			t.Errorf("the replay called IssueCertificate again (%d calls)", n)
		}
	})
	if n := relPendingCount(t, st); n != 0 {
		t.Errorf("%d rows left pending", n)
	}
}

// ---- 3. Idempotency-Key ----

func TestIdempotencyKeySemantics(t *testing.T) {
	other, otherTok := relPrincipal(t, "team-b")
	env := relStart(t, other)
	st := env.Srv.Store
	body := relCSRBody(t, "idem.rel.internal")

	first := relIssue(env, "idem-1", body)
	a := relIssued(t, first)
	if first.Header.Get("Idempotent-Replayed") != "" {
		t.Error("the first response carries Idempotent-Replayed")
	}
	second := relIssue(env, "idem-1", body)
	b := relIssued(t, second)
	if b.Serial != a.Serial || b.Certificate != a.Certificate {
		t.Fatalf("replay returned serial %s, first %s", b.Serial, a.Serial)
	}
	if second.Header.Get("Idempotent-Replayed") != "true" {
		t.Errorf("replay header Idempotent-Replayed = %q, want true", second.Header.Get("Idempotent-Replayed"))
	}
	if n := len(relRowsWhere(t, st, "idempotency_key = ?", "idem-1")); n != 1 {
		t.Errorf("%d rows for the key, want 1", n)
	}

	r := relIssue(env, "idem-1", relCSRBody(t, "other.rel.internal"))
	relWantErr(t, "same key, different body", r, http.StatusUnprocessableEntity, apierror.CodeIdempotencyReuse, false)

	// Another principal's identical key is its own.
	rb := relDo(env, nil, otherTok, "POST", "/v1/certificates", body, map[string]string{"Idempotency-Key": "idem-1"})
	c := relIssued(t, rb)
	if c.Serial == a.Serial || rb.Header.Get("Idempotent-Replayed") != "" {
		t.Errorf("another principal's use of the key returned serial %s (replayed %q); want a new certificate", c.Serial, rb.Header.Get("Idempotent-Replayed"))
	}
	rb2 := relDo(env, nil, otherTok, "POST", "/v1/certificates", body, map[string]string{"Idempotency-Key": "idem-1"})
	if d := relIssued(t, rb2); d.Serial != c.Serial || rb2.Header.Get("Idempotent-Replayed") != "true" {
		t.Errorf("team-b replay: serial %s replayed %q; want %s replayed", d.Serial, rb2.Header.Get("Idempotent-Replayed"), c.Serial)
	}

	// Server-generated keys are returned once: the replay has the
	// certificate but no private key.
	gen := map[string]any{"profile": "server", "common_name": "gen.rel.internal"}
	g1 := relIssued(t, relIssue(env, "idem-gen", gen))
	g2 := relIssued(t, relIssue(env, "idem-gen", gen))
	if g1.PrivateKey == "" || g2.PrivateKey != "" || g2.Serial != g1.Serial {
		t.Errorf("generated key: first has key %v, replay has key %v, serials %s/%s; want the key only in the first, same serial",
			g1.PrivateKey != "", g2.PrivateKey != "", g1.Serial, g2.Serial)
	}
}

// A failure that invites a retry (429 throttled, with Retry-After) must
// not poison the key: a client that retries the same key, as told, gets the
// certificate once the CA accepts again, instead of the stored 429 forever.
// A definitive failure (400) keeps replaying (TestWriteBeforeSignPCA).
func TestIdempotencyKeyRetryableFailureRetries(t *testing.T) {
	dbl := servertest.NewPCADouble(t)
	env := relStart(t, servertest.WithPCA(t, dbl))
	body := relCSRBody(t, "throttled.rel.internal")
	minted := len(dbl.IssuedCerts()) // the server's own certificate
	dbl.FailNext(pcatest.OpIssueCertificate, env.Cfg.AWSPCA.MaxRetries+1, "ThrottlingException", 0)
	r := relIssue(env, "throttled-key", body)
	relWantErr(t, "throttled", r, http.StatusTooManyRequests, apierror.CodeUpstreamThrottled, true)
	if n := len(dbl.IssuedCerts()) - minted; n != 0 {
		t.Fatalf("PCA minted %d certificates while throttling every attempt", n)
	}
	r = relIssue(env, "throttled-key", body)
	if r.Status != http.StatusCreated {
		t.Fatalf("retry of the same key after throttling: %s; want 201 (the key must not keep replaying a retryable error)", r)
	}
	res := relIssued(t, r)
	if r.Header.Get("Idempotent-Replayed") != "" {
		t.Error("the first successful answer is marked as a replay")
	}
	r = relIssue(env, "throttled-key", body)
	if again := relIssued(t, r); again.Serial != res.Serial || r.Header.Get("Idempotent-Replayed") != "true" {
		t.Errorf("replay: serial %s, want %s replayed", again.Serial, res.Serial)
	}
	rows := relRowsWhere(t, env.Srv.Store, "idempotency_key = ?", "throttled-key")
	if len(rows) != 1 || rows[0].Serial == nil || *rows[0].Serial != res.Serial {
		t.Errorf("%d rows hold the key, want exactly the issued one", len(rows))
	}
	failed := relRowsWhere(t, env.Srv.Store, "common_name = ? AND status = ?", "throttled.rel.internal", store.StatusFailed)
	if len(failed) != 1 || !strings.Contains(failed[0].FailureReason, apierror.CodeUpstreamThrottled) {
		t.Errorf("the throttled attempt is not kept as a failed row (%d rows)", len(failed))
	}
	if n := len(dbl.IssuedCerts()) - minted; n != 1 {
		t.Errorf("PCA minted %d, want 1", n)
	}
}

// relConcurrentSameKey sends n identical requests with one key at once,
// across envs round-robin, and checks one certificate came of it. Every
// answer is the same 201 or a retryable 409 (first request in flight).
func relConcurrentSameKey(t *testing.T, envs []*servertest.Env, n int, key string, body map[string]any) (serial string, created, conflicts int) {
	t.Helper()
	var wg sync.WaitGroup
	out := make([]relResp, n)
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			out[i] = relIssue(envs[i%len(envs)], key, body)
		}()
	}
	close(start)
	wg.Wait()
	for i, r := range out {
		switch {
		case r.Err == nil && r.Status == http.StatusCreated:
			var res issueResp
			if err := json.Unmarshal(r.Body, &res); err != nil {
				t.Fatal(err)
			}
			if serial == "" {
				serial = res.Serial
			} else if res.Serial != serial {
				t.Errorf("request %d got serial %s, another got %s: two certificates for one key", i, res.Serial, serial)
			}
			created++
		case r.Err == nil && r.Status == http.StatusConflict:
			relWantErr(t, fmt.Sprintf("request %d", i), r, http.StatusConflict, apierror.CodeConflict, true)
			conflicts++
		default:
			t.Errorf("request %d: %s; want 201 or a retryable 409", i, r)
		}
	}
	// Once the first finished, the key replays.
	deadline := time.Now().Add(20 * time.Second)
	for {
		r := relIssue(envs[0], key, body)
		if r.Err == nil && r.Status == http.StatusConflict && time.Now().Before(deadline) {
			time.Sleep(100 * time.Millisecond)
			continue
		}
		res := relIssued(t, r)
		if serial != "" && res.Serial != serial {
			t.Errorf("replay after the burst: serial %s, burst got %s", res.Serial, serial)
		}
		serial = res.Serial
		break
	}
	for _, env := range envs[:1] {
		rows := relRowsWhere(t, env.Srv.Store, "idempotency_key = ?", key)
		if len(rows) != 1 || rows[0].Status != store.StatusIssued {
			t.Errorf("%d rows for key %s (want 1, issued)", len(rows), key)
		}
	}
	t.Logf("%d concurrent requests with one key: %d × 201 (serial %s), %d × 409 in flight", n, created, serial, conflicts)
	return serial, created, conflicts
}

func TestIdempotencyKeyConcurrent(t *testing.T) {
	t.Run("local sqlite", func(t *testing.T) {
		env := relStart(t)
		before := countCerts(t, env)
		relConcurrentSameKey(t, []*servertest.Env{env}, 20, "burst-local", relCSRBody(t, "burst.rel.internal"))
		if n := countCerts(t, env) - before; n != 1 {
			t.Errorf("%d certificate rows added, want 1", n)
		}
	})
	t.Run("local postgres", func(t *testing.T) {
		env := relStart(t, servertest.WithPostgres(t))
		before := countCerts(t, env)
		relConcurrentSameKey(t, []*servertest.Env{env}, 20, "burst-pg", relCSRBody(t, "burst.rel.internal"))
		if n := countCerts(t, env) - before; n != 1 {
			t.Errorf("%d certificate rows added, want 1", n)
		}
	})
	t.Run("pca", func(t *testing.T) {
		dbl := servertest.NewPCADouble(t)
		env := relStart(t, servertest.WithPCA(t, dbl))
		dbl.SetIssueDelay(300 * time.Millisecond)
		before, minted := countCerts(t, env), len(dbl.IssuedCerts())
		serial, _, _ := relConcurrentSameKey(t, []*servertest.Env{env}, 20, "burst-pca", relCSRBody(t, "burst.rel.internal"))
		if n := countCerts(t, env) - before; n != 1 {
			t.Errorf("%d certificate rows added, want 1", n)
		}
		if n := len(dbl.IssuedCerts()) - minted; n != 1 {
			t.Errorf("PCA minted %d certificates for one key, want 1", n)
		}
		if got := relMintedSerials(dbl); got[len(got)-1] != serial {
			t.Errorf("PCA minted %s, clients got %s", got[len(got)-1], serial)
		}
	})
}

func TestIdempotencyKeySurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	body := relCSRBody(t, "restart.rel.internal")
	var serial string
	t.Run("first server", func(t *testing.T) {
		env := relStart(t, relWithDataDir(dir))
		serial = relIssued(t, relIssue(env, "restart-key", body)).Serial
	})
	t.Run("second server on the same data", func(t *testing.T) {
		env := relStart(t, relWithDataDir(dir))
		r := relIssue(env, "restart-key", body)
		res := relIssued(t, r)
		if res.Serial != serial || r.Header.Get("Idempotent-Replayed") != "true" {
			t.Errorf("after restart: serial %s replayed %q; want %s replayed", res.Serial, r.Header.Get("Idempotent-Replayed"), serial)
		}
		relWantErr(t, "different body after restart", relIssue(env, "restart-key", relCSRBody(t, "x.rel.internal")),
			http.StatusUnprocessableEntity, apierror.CodeIdempotencyReuse, false)
	})
}

// ---- 4. outages ----

// relPGControl returns start and stop functions for the local PostgreSQL
// cluster, or skips: stopping the server every test shares is opt-in.
func relPGControl(t *testing.T) (start, stop func() error) {
	t.Helper()
	if os.Getenv(servertest.PostgresEnv) == "" || os.Getenv("CERTGATE_TEST_PG_CONTROL") != "1" {
		t.Skipf("stops and restarts the PostgreSQL server: runs only with %s and CERTGATE_TEST_PG_CONTROL=1 (set by .ci/chaos; never while other tests use the server)", servertest.PostgresEnv)
	}
	version, cluster := "15", "main"
	if v := os.Getenv("CERTGATE_TEST_PG_CLUSTER"); v != "" { // e.g. "15/main"
		version, cluster, _ = strings.Cut(v, "/")
	} else if ents, err := os.ReadDir("/etc/postgresql"); err == nil && len(ents) > 0 {
		version = ents[0].Name()
	}
	ctl := func(action string) error {
		out, err := exec.Command("pg_ctlcluster", "--skip-systemctl-redirect", version, cluster, action).CombinedOutput()
		if err != nil {
			return fmt.Errorf("pg_ctlcluster %s %s %s: %v: %s", version, cluster, action, err, out)
		}
		return nil
	}
	ready := func() error {
		db, err := sql.Open("pgx", os.Getenv(servertest.PostgresEnv))
		if err != nil {
			return err
		}
		defer db.Close()
		deadline := time.Now().Add(60 * time.Second)
		for {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			err := db.PingContext(ctx)
			cancel()
			if err == nil {
				return nil
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("PostgreSQL not ready 60 s after start: %w", err)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	start = func() error {
		if err := ctl("start"); err != nil && !strings.Contains(err.Error(), "already running") {
			return err
		}
		return ready()
	}
	return start, func() error { return ctl("stop") }
}

func TestOutagePostgres(t *testing.T) {
	pgStart, pgStop := relPGControl(t)
	env := relStart(t, servertest.WithPostgres(t))
	// Registered after the server and schema clean-ups, so it runs before
	// them: PostgreSQL is back up whatever happens below.
	t.Cleanup(func() {
		if err := pgStart(); err != nil {
			t.Errorf("restarting PostgreSQL: %v", err)
		}
	})
	relIssued(t, relIssue(env, "", map[string]any{"profile": "server", "common_name": "before.pg.rel.internal"}))
	if r := relDo(env, nil, "", "GET", "/readyz", nil, nil); r.Status != http.StatusOK {
		t.Fatalf("/readyz before the outage: %s", r)
	}

	if err := pgStop(); err != nil {
		t.Fatal(err)
	}
	t.Log("PostgreSQL stopped")
	for i, key := range []string{"", "pg-outage-key", ""} {
		start := time.Now()
		r := relIssue(env, key, map[string]any{"profile": "server", "common_name": fmt.Sprintf("during%d.pg.rel.internal", i)})
		took := time.Since(start)
		relWantErr(t, fmt.Sprintf("issuance %d with the database down", i), r, http.StatusServiceUnavailable, apierror.CodeDatabase, true)
		if took > 3*time.Second {
			t.Errorf("issuance %d took %s to fail with the database down, want well under 5 s", i, took)
		}
	}
	start := time.Now()
	if r := relDo(env, nil, "", "GET", "/readyz", nil, nil); r.Status != http.StatusServiceUnavailable || !strings.Contains(string(r.Body), "database") {
		t.Errorf("/readyz with the database down: %s, want 503 naming the database", r)
	} else if took := time.Since(start); took > 3*time.Second {
		t.Errorf("/readyz took %s with the database down", took)
	}

	if err := pgStart(); err != nil {
		t.Fatal(err)
	}
	t.Log("PostgreSQL started")
	// Recovery without restarting certgate.
	deadline := time.Now().Add(30 * time.Second)
	var last relResp
	var recoveredAfter time.Duration
	restarted := time.Now()
	for {
		last = relIssue(env, "", map[string]any{"profile": "server", "common_name": "after.pg.rel.internal"})
		if last.Status == http.StatusCreated {
			recoveredAfter = time.Since(restarted)
			break
		}
		if last.Status != http.StatusServiceUnavailable || time.Now().After(deadline) {
			t.Fatalf("issuance after PostgreSQL came back: %s (want 201 within 30 s, 503 meanwhile)", last)
		}
		time.Sleep(200 * time.Millisecond)
	}
	for {
		r := relDo(env, nil, "", "GET", "/readyz", nil, nil)
		if r.Status == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz after PostgreSQL came back: %s", r)
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("issuance recovered %s after PostgreSQL started", recoveredAfter)
	// The key used during the outage was never recorded: it issues now.
	relIssued(t, relIssue(env, "pg-outage-key", map[string]any{"profile": "server", "common_name": "during1.pg.rel.internal"}))
	if n := relPendingCount(t, env.Srv.Store); n != 0 {
		t.Errorf("%d rows pending after the outage", n)
	}
}

// relSettleGoroutines waits for the goroutine count to return to base.
func relSettleGoroutines(t *testing.T, base int, idle func()) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		idle()
		n := runtime.NumGoroutine()
		if n <= base+4 {
			t.Logf("goroutines: %d (baseline %d)", n, base)
			return
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			t.Fatalf("goroutines: %d, baseline %d: the outage leaked goroutines\n%s", n, base, buf)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// relBurst sends k concurrent issuances and returns the answers and the
// slowest one's duration.
func relBurst(env *servertest.Env, k int, cn string) ([]relResp, time.Duration) {
	out := make([]relResp, k)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range k {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i] = relIssue(env, "", map[string]any{"profile": "server", "common_name": fmt.Sprintf("%d.%s", i, cn)})
		}()
	}
	wg.Wait()
	return out, time.Since(start)
}

func TestOutagePCA(t *testing.T) {
	dbl := servertest.NewPCADouble(t)
	env := relStart(t, servertest.WithPCA(t, dbl), func(c *config.Config, _ *server.Options) {
		c.AWSPCA.IssueTimeout = config.Duration(2 * time.Second)
		c.Reconcile.Interval = 0 // reconciled explicitly below
	})
	relIssued(t, relIssue(env, "", map[string]any{"profile": "server", "common_name": "warm.pca.rel.internal"}))
	idle := func() { env.Client.HTTP.CloseIdleConnections() }
	idle()
	time.Sleep(200 * time.Millisecond)
	base := runtime.NumGoroutine()
	// Several requests per mode, so a goroutine leaked per request shows
	// above the settle loop's slack.
	const k = 6
	maxAttempts := env.Cfg.AWSPCA.MaxRetries + 1

	for _, tc := range []struct {
		name string
		mode pcatest.DownMode
	}{{"503 ServiceUnavailable", pcatest.DownUnavailable}, {"connection reset", pcatest.DownReset}} {
		t.Run(tc.name, func(t *testing.T) {
			dbl.SetDown(tc.mode)
			defer dbl.SetDown(pcatest.Up)
			issues := dbl.Count(pcatest.OpIssueCertificate)
			out, took := relBurst(env, k, "down.pca.rel.internal")
			for i, r := range out {
				relWantErr(t, fmt.Sprintf("%s, request %d", tc.name, i), r, http.StatusServiceUnavailable, "", true)
			}
			// Every attempt reaches the double when it answers 503; with
			// resets an attempt on a pooled connection the double already
			// closed may fail before it arrives, so only the bound holds.
			n := dbl.Count(pcatest.OpIssueCertificate) - issues
			if n > k*maxAttempts || (tc.mode == pcatest.DownUnavailable && n != k*maxAttempts) || n < k {
				t.Errorf("%d IssueCertificate attempts seen for %d requests, want %d each (max_retries %d)", n, k, maxAttempts, maxAttempts-1)
			}
			if took > 5*time.Second {
				t.Errorf("took %s to give up", took)
			}
			t.Logf("%s: %d × %d within %s, %d attempts, Retry-After %s", tc.name, k, out[0].Status, took.Round(time.Millisecond), n, out[0].Header.Get("Retry-After"))
		})
	}
	t.Run("hang", func(t *testing.T) {
		dbl.SetDown(pcatest.DownHang)
		defer dbl.SetDown(pcatest.Up)
		out, took := relBurst(env, k, "hang.pca.rel.internal")
		for i, r := range out {
			relWantErr(t, fmt.Sprintf("hung PCA, request %d", i), r, http.StatusGatewayTimeout, apierror.CodeTimeout, true)
		}
		if took < 1900*time.Millisecond || took > 6*time.Second {
			t.Errorf("hung PCA answered after %s, want about issue_timeout (2 s)", took)
		}
		t.Logf("hang: %d × %d within %s", k, out[0].Status, took.Round(time.Millisecond))
	})
	t.Run("recovery", func(t *testing.T) {
		relIssued(t, relIssue(env, "", map[string]any{"profile": "server", "common_name": "after.pca.rel.internal"}))
		// The outage's requests may have reached PCA: their rows wait for
		// reconciliation, which records whatever PCA issued.
		if _, err := env.Srv.Issuer.Reconcile(context.Background(), env.Srv.Store, 0); err != nil {
			t.Fatal(err)
		}
		if n := relPendingCount(t, env.Srv.Store); n != 0 {
			t.Errorf("%d rows pending after reconciliation", n)
		}
		relEveryMintedIsIssued(t, env.Srv.Store, dbl)
	})
	relSettleGoroutines(t, base, idle)
}

// Reconciliation must never finish the row of a request still signing:
// a min_age shorter than aws_pca.issue_timeout is raised at start.
func TestReconcileSparesLiveRequests(t *testing.T) {
	dbl := servertest.NewPCADouble(t)
	env := relStart(t, servertest.WithPCA(t, dbl), func(c *config.Config, _ *server.Options) {
		c.Reconcile.Interval = config.Duration(50 * time.Millisecond)
		c.Reconcile.MinAge = config.Duration(100 * time.Millisecond)
		c.AWSPCA.IssueTimeout = config.Duration(5 * time.Second)
	})
	minted := len(dbl.IssuedCerts())
	dbl.SetIssueDelay(1500 * time.Millisecond)
	res := relIssued(t, relIssue(env, "", map[string]any{"profile": "server", "common_name": "live.rel.internal"}))
	if n := len(dbl.IssuedCerts()) - minted; n != 1 {
		t.Errorf("PCA minted %d certificates for one request, want 1", n)
	}
	if row := relOneRow(t, env.Srv.Store, "serial = ?", res.Serial); row.Status != store.StatusIssued {
		t.Errorf("row %s, want issued", row.Status)
	}
	if env.Logs.FilterMessage("reconcile.min_age is shorter than a live request may take; raised").Len() != 1 {
		t.Error("no warning that reconcile.min_age was raised")
	}
}

// ---- 5. graceful shutdown ----

func TestGracefulShutdownInFlight(t *testing.T) {
	dbl := servertest.NewPCADouble(t)
	env := relStart(t, servertest.WithPCA(t, dbl))
	dbl.SetIssueDelay(1500 * time.Millisecond)
	issues := dbl.Count(pcatest.OpIssueCertificate)
	done := make(chan relResp, 1)
	go func() {
		done <- relIssue(env, "", map[string]any{"profile": "server", "common_name": "inflight.rel.internal"})
	}()
	waitFor(t, 5*time.Second, "the issuance to reach PCA", func() bool { return dbl.Count(pcatest.OpIssueCertificate) > issues })

	shutdownErr := make(chan error, 1)
	shutdownStart := time.Now()
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		shutdownErr <- env.Srv.Shutdown(ctx)
	}()
	addr := env.Srv.Addr()
	waitFor(t, time.Second, "new connections to be refused", func() bool {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err != nil {
			return true
		}
		c.Close()
		return false
	})
	fresh := &http.Client{Transport: &http.Transport{TLSClientConfig: env.Client.HTTP.Transport.(*http.Transport).TLSClientConfig}}
	if r := relDo(env, fresh, "", "GET", "/healthz", nil, nil); r.Err == nil {
		t.Errorf("a new request during shutdown was served: %s", r)
	}

	r := <-done
	res := relIssued(t, r)
	if err := <-shutdownErr; err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	t.Logf("in-flight issuance answered 201; shutdown took %s", time.Since(shutdownStart).Round(time.Millisecond))
	st, err := store.Open(context.Background(), store.Options{Driver: "sqlite", DataDir: env.Cfg.DataDir})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if row := relOneRow(t, st, "serial = ?", res.Serial); row.Status != store.StatusIssued {
		t.Errorf("row after shutdown: %s, want issued", row.Status)
	}
	if n := relPendingCount(t, st); n != 0 {
		t.Errorf("%d rows pending after a graceful shutdown", n)
	}
}

func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// relBuildBinary builds cmd/certgate into the test's temporary directory.
func relBuildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "certgate")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/certgate")
	cmd.Dir = filepath.Join("..", "..")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v: %s", err, out)
	}
	return bin
}

// relProc is a certgate binary running as a subprocess.
type relProc struct {
	cmd  *exec.Cmd
	addr string
	mu   sync.Mutex
	log  bytes.Buffer
	exit chan error
}

func (p *relProc) Log() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.log.String()
}

// relStartBinary runs `certgate serve` with env and waits for its listener.
func relStartBinary(t *testing.T, bin string, env []string) *relProc {
	t.Helper()
	p := &relProc{exit: make(chan error, 1)}
	p.cmd = exec.Command(bin, "serve")
	p.cmd.Env = env
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	p.cmd.Stdout = io.Discard
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	addrc := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			p.mu.Lock()
			p.log.WriteString(line + "\n")
			p.mu.Unlock()
			if rest, ok := strings.CutPrefix(line, "certgate serving https://"); ok {
				addr, _, _ := strings.Cut(rest, " ")
				addrc <- addr
			}
		}
		p.exit <- p.cmd.Wait()
	}()
	t.Cleanup(func() {
		if p.cmd.ProcessState == nil {
			_ = p.cmd.Process.Kill()
		}
	})
	select {
	case p.addr = <-addrc:
		return p
	case err := <-p.exit:
		t.Fatalf("certgate exited before listening: %v\n%s", err, p.Log())
	case <-time.After(30 * time.Second):
		t.Fatalf("certgate did not listen within 30 s\n%s", p.Log())
	}
	return nil
}

// relBinaryEnv configures the binary for the PCA double through CERTGATE_*.
func relBinaryEnv(dbl *pcatest.Server, dataDir string, extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "CERTGATE_") && !strings.HasPrefix(kv, "AWS_") {
			env = append(env, kv)
		}
	}
	env = append(env,
		"AWS_ACCESS_KEY_ID=AKIDCERTGATETEST", "AWS_SECRET_ACCESS_KEY=certgate-test-secret",
		"AWS_CONFIG_FILE=/dev/null", "AWS_SHARED_CREDENTIALS_FILE=/dev/null", "AWS_EC2_METADATA_DISABLED=true",
		"CERTGATE_BACKEND=aws-pca", "CERTGATE_AWS_PCA_REGION="+dbl.Region(), "CERTGATE_AWS_PCA_ENDPOINT="+dbl.URL(),
		"CERTGATE_AWS_PCA_ROOT_CA_ARN="+dbl.ARN(ca.Root), "CERTGATE_AWS_PCA_CLIENT_CA_ARN="+dbl.ARN(ca.ClientCA),
		"CERTGATE_AWS_PCA_SERVER_CA_ARN="+dbl.ARN(ca.ServerCA), "CERTGATE_AWS_PCA_ISTIO_CA_ARN="+dbl.ARN(ca.IstioCA),
		"CERTGATE_DATA_DIR="+dataDir, "CERTGATE_LISTEN=127.0.0.1:0", "CERTGATE_LOG_LEVEL=info",
	)
	return append(env, extra...)
}

func TestGracefulShutdownBinarySIGTERM(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the certgate binary")
	}
	bin := relBuildBinary(t)
	servertest.SetAWSTestEnv(t)
	dbl := servertest.NewPCADouble(t)
	dataDir := t.TempDir()
	p := relStartBinary(t, bin, relBinaryEnv(dbl, dataDir, "CERTGATE_SHUTDOWN_TIMEOUT=20s"))
	tok, err := os.ReadFile(filepath.Join(dataDir, auth.TokenFileName))
	if err != nil {
		t.Fatal(err)
	}
	env := &servertest.Env{URL: "https://" + p.addr, Srv: &server.Server{Token: strings.TrimSpace(string(tok))}}
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: dbl.RootPool(), MinVersion: tls.VersionTLS12}}}

	dbl.SetIssueDelay(1500 * time.Millisecond)
	issues := dbl.Count(pcatest.OpIssueCertificate)
	done := make(chan relResp, 1)
	go func() {
		done <- relDo(env, client, "", "POST", "/v1/certificates", map[string]any{"profile": "server", "common_name": "sigterm.rel.internal"}, nil)
	}()
	waitFor(t, 10*time.Second, "the issuance to reach PCA", func() bool { return dbl.Count(pcatest.OpIssueCertificate) > issues })
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	sent := time.Now()
	waitFor(t, 2*time.Second, "new connections to be refused after SIGTERM", func() bool {
		c, err := net.DialTimeout("tcp", p.addr, 200*time.Millisecond)
		if err != nil {
			return true
		}
		c.Close()
		return false
	})
	r := <-done
	if r.Err != nil || r.Status != http.StatusCreated {
		t.Fatalf("in-flight issuance across SIGTERM: %s\n%s", r, p.Log())
	}
	res := relIssued(t, r)
	select {
	case err := <-p.exit:
		if err != nil {
			t.Errorf("certgate exited with %v after SIGTERM\n%s", err, p.Log())
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("certgate still running 20 s after SIGTERM\n%s", p.Log())
	}
	t.Logf("SIGTERM: in-flight issuance answered 201, process exited %s after the signal", time.Since(sent).Round(time.Millisecond))
	st, err := store.Open(context.Background(), store.Options{Driver: "sqlite", DataDir: dataDir})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if row := relOneRow(t, st, "serial = ?", res.Serial); row.Status != store.StatusIssued {
		t.Errorf("row after SIGTERM: %s, want issued", row.Status)
	}
	if n := relPendingCount(t, st); n != 0 {
		t.Errorf("%d rows pending after SIGTERM", n)
	}
}

// ---- 6. two replicas ----

func TestTwoReplicasOnePostgres(t *testing.T) {
	dsn := servertest.PostgresDSN(t)
	shared := t.TempDir() // the local CA and admin token both replicas use
	opt := func(c *config.Config, _ *server.Options) {
		c.DataDir = shared
		c.Database.Driver = "postgres"
		c.Database.DSN = dsn
	}
	a := relStart(t, opt)
	b := relStart(t, opt)
	if a.Srv.Token != b.Srv.Token {
		t.Fatal("replicas on one data dir have different admin tokens")
	}
	for i, env := range []*servertest.Env{a, b} {
		relIssued(t, relIssue(env, "", map[string]any{"profile": "server", "common_name": fmt.Sprintf("r%d.rel.internal", i)}))
	}

	t.Run("same key on both", func(t *testing.T) {
		before := countCerts(t, a)
		relConcurrentSameKey(t, []*servertest.Env{a, b}, 20, "replica-key", relCSRBody(t, "replicas.rel.internal"))
		if n := countCerts(t, a) - before; n != 1 {
			t.Errorf("%d rows added for one key on two replicas, want 1", n)
		}
	})

	t.Run("concurrent revokes on both", func(t *testing.T) {
		serial := relIssued(t, relIssue(a, "", map[string]any{"profile": "server", "common_name": "revoke.rel.internal"})).Serial
		path := "/v1/certificates/" + serial + "/revoke"
		const n = 10
		out := make([]relResp, n)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				out[i] = relDo([]*servertest.Env{a, b}[i%2], nil, "", "POST", path, map[string]string{"reason": "key_compromise"}, nil)
			}()
		}
		close(start)
		wg.Wait()
		ok := 0
		for i, r := range out {
			switch {
			case r.Err == nil && r.Status == http.StatusNotFound && strings.Contains(string(r.Body), "no route"):
				t.Fatalf("POST /v1/certificates/{serial}/revoke is not routed: %s", r)
			case r.Err == nil && r.Status == http.StatusOK:
				ok++
			case r.Err == nil && r.Status == http.StatusConflict:
			default:
				t.Errorf("revoke %d: %s; want 200 or 409", i, r)
			}
		}
		if ok != 1 {
			t.Errorf("%d revokes answered 200, want exactly 1 (the rest 409)", ok)
		}
		var evs int64
		a.Srv.Store.DB().Model(&store.Event{}).Where("type = ? AND serial = ?", store.EventRevoked, serial).Count(&evs)
		if evs != 1 {
			t.Errorf("%d revoked events for %s, want 1", evs, serial)
		}
		if row := relOneRow(t, a.Srv.Store, "serial = ?", serial); row.Status != store.StatusRevoked {
			t.Errorf("row status %s, want revoked", row.Status)
		}
		t.Logf("%d concurrent revokes on two replicas: 1 × 200, %d × 409", n, n-ok)
	})
}
