package e2e

// CA certificate management: the CA cache against the PCA double (restart
// while PCA is down, expiry, disabled and expired CAs, broken chains), the
// relying party's `certgate verify` logic against a live server, and (as a
// benchmark) the PCA calls the cache costs per issued certificate.

import (
	"bufio"
	"context"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/certgate/certgate/internal/api"
	"github.com/certgate/certgate/internal/ca"
	"github.com/certgate/certgate/internal/ca/pcatest"
	"github.com/certgate/certgate/internal/cacache"
	"github.com/certgate/certgate/internal/client"
	"github.com/certgate/certgate/internal/config"
	"github.com/certgate/certgate/internal/server"
	"github.com/certgate/certgate/internal/servertest"
	"github.com/certgate/certgate/internal/store"
	"github.com/certgate/certgate/internal/verify"
)

// casList is GET /v1/cas by name.
func casList(t testing.TB, env *servertest.Env) map[string]api.CAView {
	t.Helper()
	resp, body := call(t, env, "GET", "/v1/cas", nil, nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /v1/cas: %d %s", resp.StatusCode, body)
	}
	var out struct {
		CAs []api.CAView `json:"cas"`
	}
	if err := json.Unmarshal(body, &out); err != nil {
		t.Fatal(err)
	}
	m := map[string]api.CAView{}
	for _, v := range out.CAs {
		m[v.Name] = v
	}
	return m
}

type casReadyz struct {
	Status   string            `json:"status"`
	Checks   map[string]string `json:"checks"`
	Warnings map[string]string `json:"warnings"`
}

func casReady(t testing.TB, env *servertest.Env) (int, casReadyz) {
	t.Helper()
	resp, body := call(t, env, "GET", "/readyz", nil, map[string]string{"Authorization": ""})
	var r casReadyz
	if err := json.Unmarshal(body, &r); err != nil {
		t.Fatalf("/readyz: %v: %s", err, body)
	}
	return resp.StatusCode, r
}

// casScrape reads one sample from GET /metrics, as Prometheus would.
func casScrape(t testing.TB, env *servertest.Env, metric, caName string) (float64, bool) {
	t.Helper()
	resp, body := call(t, env, "GET", "/metrics", nil, map[string]string{"Authorization": ""})
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/metrics: %d", resp.StatusCode)
	}
	prefix := fmt.Sprintf("%s{ca=%q} ", metric, caName)
	sc := bufio.NewScanner(strings.NewReader(string(body)))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), prefix); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				t.Fatalf("%s: %v", sc.Text(), err)
			}
			return f, true
		}
	}
	return 0, false
}

// casWantError checks status, code and, when wanted, Retry-After.
func casWantError(t testing.TB, what string, resp *http.Response, body []byte, status int, code string, retryAfter bool) errBody {
	t.Helper()
	var e errBody
	_ = json.Unmarshal(body, &e)
	if resp.StatusCode != status || e.Error.Code != code {
		t.Fatalf("%s: %d %s, want %d %s: %s", what, resp.StatusCode, e.Error.Code, status, code, body)
	}
	if ra := resp.Header.Get("Retry-After"); retryAfter != (ra != "") {
		t.Fatalf("%s: Retry-After %q, want present=%v", what, ra, retryAfter)
	}
	return e
}

func casIssue(profile string, extra map[string]any) []byte {
	req := map[string]any{"profile": profile, "common_name": profile + ".cas.internal"}
	for k, v := range extra {
		req[k] = v
	}
	b, _ := json.Marshal(req)
	return b
}

// TestCAsRestartWithPCADown: a server that starts while PCA is unreachable
// serves the stored CA state (stale), refuses issuance with a retryable 503,
// and recovers as soon as PCA answers, without a restart.
//
// The second server is built with server.New and serves its handler from an
// httptest TLS listener, because server.Start cannot start at all while PCA
// is down: it issues its own TLS certificate from server-ca first (see the
// report: that is a gap of server.Start, not of the cache).
func TestCAsRestartWithPCADown(t *testing.T) {
	for _, db := range []string{"sqlite", "postgres"} {
		t.Run(db, func(t *testing.T) {
			dbl := servertest.NewPCADouble(t)
			cfg := config.Default()
			cfg.DataDir = t.TempDir()
			cfg.Listen = "127.0.0.1:0"
			cfg.Auth.RateLimit = 0
			cfg.AWSPCA.MaxRetries = 1
			cfg.AWSPCA.RetryDelay = config.Duration(10 * time.Millisecond)
			servertest.WithPCA(t, dbl)(cfg, nil)
			if db == "postgres" {
				servertest.WithPostgres(t)(cfg, nil)
			}

			// The first run fetches and stores the CAs, then stops.
			ctx := context.Background()
			first, err := server.New(ctx, cfg, server.Options{})
			if err != nil {
				t.Fatal(err)
			}
			fctx, stop := context.WithCancel(ctx)
			first.CAs.Start(fctx)
			stored := first.CAs.Peek(ca.ServerCA)
			if stored == nil || stored.Stale {
				t.Fatalf("first run: server-ca %+v", stored)
			}
			stop()
			if err := first.Shutdown(ctx); err != nil {
				t.Fatal(err)
			}

			dbl.SetDown(pcatest.DownUnavailable)
			core, logs := observer.New(zapcore.DebugLevel)
			second, err := server.New(ctx, cfg, server.Options{Log: zap.New(core)})
			if err != nil {
				t.Fatal(err)
			}
			sctx, cancel := context.WithCancel(ctx)
			second.CAs.Start(sctx) // what server.Start does first
			ts := httptest.NewUnstartedServer(second.Handler())
			ts.StartTLS()
			t.Cleanup(func() {
				ts.Close()
				cancel()
				_ = second.Shutdown(context.Background())
			})
			c, err := client.New(ts.URL, second.Token, nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			c.HTTP = ts.Client()
			env := &servertest.Env{Srv: second, Client: c, URL: ts.URL, Cfg: cfg, Logs: logs}

			cas := casList(t, env)
			for _, n := range ca.Names {
				v := cas[n]
				if !v.Stale || v.FetchError == "" || !v.ChainValid || v.NotAfter.IsZero() {
					t.Fatalf("GET /v1/cas %s while PCA is down: %+v; want the stored entry, stale, with the fetch error", n, v)
				}
			}
			if cas[ca.ServerCA].Fingerprint != stored.Fingerprint() {
				t.Fatal("the stale server-ca is not the stored one")
			}
			if roots := trustBundle(t, env); !roots[0].Equal(dbl.Root()) {
				t.Fatal("trust bundle while PCA is down is not the PCA root")
			}
			resp, body := call(t, env, "GET", "/v1/cas/server-ca/chain", nil, map[string]string{"Authorization": ""})
			if resp.StatusCode != http.StatusOK || !strings.Contains(resp.Header.Get("Warning"), "stale") {
				t.Fatalf("chain while PCA is down: %d, Warning %q: %s", resp.StatusCode, resp.Header.Get("Warning"), body)
			}
			if code, r := casReady(t, env); code != http.StatusOK || !strings.Contains(r.Warnings[ca.ServerCA], "stale") {
				t.Fatalf("/readyz while PCA is down: %d %+v; want ready with stale warnings", code, r)
			}
			for range 2 {
				resp, body = call(t, env, "POST", "/v1/certificates", casIssue("server", nil), nil)
				e := casWantError(t, "issue while PCA is down", resp, body, http.StatusServiceUnavailable, "ca_unavailable", true)
				if e.Error.Retryable == nil || !*e.Error.Retryable {
					t.Fatalf("503 not marked retryable: %s", body)
				}
			}

			dbl.SetDown(pcatest.Up)
			resp, body = call(t, env, "POST", "/v1/certificates", casIssue("server", nil), nil)
			if resp.StatusCode != http.StatusCreated {
				t.Fatalf("issue once PCA is back (no restart): %d %s", resp.StatusCode, body)
			}
			cas = casList(t, env)
			for _, n := range []string{ca.Root, ca.ServerCA} {
				if v := cas[n]; v.Stale || v.FetchError != "" {
					t.Fatalf("%s after recovery: %+v", n, v)
				}
			}
			if logs.FilterMessage("CA backend answers again").Len() == 0 {
				t.Error("no log line for the recovery")
			}
		})
	}
}

func TestCAExpiryWarning(t *testing.T) {
	notAfter := time.Now().Add(10 * ca.Day)
	dbl := servertest.NewPCADouble(t, pcatest.WithCA(pcatest.RoleServerCA, pcatest.CAConfig{NotAfter: notAfter}))
	env := servertest.Start(t, servertest.WithPCA(t, dbl))

	logged := env.Logs.FilterMessage("CA certificate expires soon").FilterField(zap.String("ca", ca.ServerCA)).All()
	if len(logged) == 0 || logged[0].Level != zapcore.WarnLevel {
		t.Fatalf("no expiry warning logged for server-ca: %v", logged)
	}
	code, r := casReady(t, env)
	if code != http.StatusOK || !strings.Contains(r.Warnings[ca.ServerCA], "expires in 9 days") {
		t.Fatalf("/readyz: %d %+v; want ready with server-ca's expiry warning", code, r)
	}
	if _, ok := r.Warnings[ca.ClientCA]; ok {
		t.Fatalf("client-ca has a warning: %+v", r.Warnings)
	}
	v, ok := casScrape(t, env, "certgate_ca_expiry_seconds", ca.ServerCA)
	if !ok || v <= 9*ca.Day.Seconds() || v >= 30*ca.Day.Seconds() {
		t.Fatalf("certgate_ca_expiry_seconds{ca=\"server-ca\"} = %v (present %v), want about 10 days", v, ok)
	}
	if v, _ := casScrape(t, env, "certgate_ca_expiry_seconds", ca.ClientCA); v < 365*ca.Day.Seconds() {
		t.Fatalf("certgate_ca_expiry_seconds{ca=\"client-ca\"} = %v", v)
	}
	view := casList(t, env)[ca.ServerCA]
	if view.DaysToExpiry != 9 || !strings.Contains(view.Warning, "expires in") {
		t.Fatalf("GET /v1/cas server-ca: %+v", view)
	}

	events := func() []store.Event {
		evs, _, err := env.Srv.Store.ListEvents(context.Background(), store.EventFilter{CA: ca.ServerCA, Type: store.EventCAExpiring})
		if err != nil {
			t.Fatal(err)
		}
		return evs
	}
	before := len(events())
	if before == 0 {
		t.Fatal("no ca_expiring event after the start's refresh")
	}
	if resp, body := call(t, env, "POST", "/v1/cas/refresh", nil, nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("refresh: %d %s", resp.StatusCode, body)
	}
	evs := events()
	if len(evs) != before+1 || evs[0].Details["not_after"] != notAfter.UTC().Truncate(time.Second).Format(time.RFC3339) {
		t.Fatalf("ca_expiring events after a refresh: %d (was %d), newest %+v", len(evs), before, evs[0])
	}

	resp, body := call(t, env, "POST", "/v1/certificates", casIssue("server", nil), nil)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("issuance on an expiring (not expired) CA: %d %s", resp.StatusCode, body)
	}
}

func TestCAUnusable(t *testing.T) {
	now := time.Now()
	dbl := servertest.NewPCADouble(t,
		pcatest.WithCA(pcatest.RoleClientCA, pcatest.CAConfig{NotAfter: now.Add(3 * ca.Day)}),
		pcatest.WithCA(pcatest.RoleIstioCA, pcatest.CAConfig{NotAfter: now.Add(-time.Hour)}))
	env := servertest.Start(t, servertest.WithPCA(t, dbl))

	t.Run("expired CA", func(t *testing.T) {
		resp, body := call(t, env, "POST", "/v1/certificates", casIssue("machine", nil), nil)
		casWantError(t, "machine profile on the expired istio-ca", resp, body, http.StatusServiceUnavailable, "ca_expired", false)
		if w := casList(t, env)[ca.IstioCA].Warning; !strings.Contains(w, "expired at") {
			t.Fatalf("istio-ca warning %q", w)
		}
	})
	t.Run("leaf would outlive its CA", func(t *testing.T) {
		resp, body := call(t, env, "POST", "/v1/certificates", casIssue("client", map[string]any{"validity_days": 7}), nil)
		e := casWantError(t, "7 days from a CA with 3 left", resp, body, http.StatusBadRequest, "validation_failed", false)
		if len(e.Error.Details) == 0 || e.Error.Details[0].Field != "validity" {
			t.Fatalf("details %+v, want field validity", e.Error.Details)
		}
		resp, body = call(t, env, "POST", "/v1/certificates", casIssue("client", map[string]any{"ttl": "24h"}), nil)
		if resp.StatusCode != http.StatusCreated {
			t.Fatalf("24h from a CA with 3 days left: %d %s", resp.StatusCode, body)
		}
	})
	t.Run("disabled CA", func(t *testing.T) {
		dbl.SetStatus(pcatest.RoleClientCA, pcatest.StatusDisabled)
		defer dbl.SetStatus(pcatest.RoleClientCA, pcatest.StatusActive)
		if resp, body := call(t, env, "POST", "/v1/cas/refresh", nil, nil); resp.StatusCode != http.StatusOK {
			t.Fatalf("refresh: %d %s", resp.StatusCode, body)
		}
		if st := casList(t, env)[ca.ClientCA].Status; st != pcatest.StatusDisabled {
			t.Fatalf("client-ca status %q", st)
		}
		resp, body := call(t, env, "POST", "/v1/certificates", casIssue("client", map[string]any{"ttl": "24h"}), nil)
		casWantError(t, "client profile on the disabled client-ca", resp, body, http.StatusServiceUnavailable, "ca_not_active", false)
		resp, body = call(t, env, "POST", "/v1/certificates", casIssue("server", nil), nil)
		if resp.StatusCode != http.StatusCreated {
			t.Fatalf("server-ca refused because client-ca is disabled: %d %s", resp.StatusCode, body)
		}
	})
}

// casTamper is the PCA backend with one CA's chain replaced by another
// hierarchy's while set. It embeds the client so every optional interface
// (RequiresCSR, Revoke, …) still shows through.
type casTamper struct {
	*ca.PCAClient
	name  string
	chain atomic.Pointer[[]*x509.Certificate]
}

func (b *casTamper) Describe(ctx context.Context, name string) (*ca.Info, error) {
	info, err := b.PCAClient.Describe(ctx, name)
	if c := b.chain.Load(); err == nil && name == b.name && c != nil {
		cp := *info
		cp.Chain = *c
		info = &cp
	}
	return info, err
}

func TestCABrokenChain(t *testing.T) {
	dbl := servertest.NewPCADouble(t)
	other := servertest.NewPCADouble(t)
	tb := &casTamper{name: ca.ClientCA}
	env := servertest.Start(t, servertest.WithPCA(t, dbl), func(c *config.Config, so *server.Options) {
		arns := map[string]string{ca.Root: c.AWSPCA.RootCAArn, ca.ClientCA: c.AWSPCA.ClientCAArn, ca.ServerCA: c.AWSPCA.ServerCAArn, ca.IstioCA: c.AWSPCA.IstioCAArn}
		pc, err := ca.NewPCAClient(context.Background(), ca.PCAConfig{Region: c.AWSPCA.Region, Endpoint: c.AWSPCA.Endpoint, ARNs: arns}, zap.NewNop(), nil)
		if err != nil {
			t.Fatal(err)
		}
		tb.PCAClient = pc
		so.Backend = tb
	})
	if code, r := casReady(t, env); code != http.StatusOK {
		t.Fatalf("/readyz before tampering: %d %+v", code, r)
	}

	tb.chain.Store(&[]*x509.Certificate{other.Root()})
	if resp, body := call(t, env, "POST", "/v1/cas/refresh", nil, nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("refresh: %d %s", resp.StatusCode, body)
	}
	v := casList(t, env)[ca.ClientCA]
	if v.ChainValid || !strings.Contains(v.ChainError, "not in the trust bundle's root") {
		t.Fatalf("GET /v1/cas client-ca: chain_valid %v, chain_error %q", v.ChainValid, v.ChainError)
	}
	if casList(t, env)[ca.ServerCA].ChainValid != true {
		t.Fatal("server-ca reported invalid")
	}
	code, r := casReady(t, env)
	if code != http.StatusServiceUnavailable || !strings.Contains(r.Checks["cas"], "client-ca: chain does not verify") {
		t.Fatalf("/readyz: %d %+v; want 503 naming client-ca's chain", code, r)
	}
	if g, ok := casScrape(t, env, "certgate_ca_chain_valid", ca.ClientCA); !ok || g != 0 {
		t.Fatalf("certgate_ca_chain_valid{ca=\"client-ca\"} = %v (present %v), want 0", g, ok)
	}
	if g, _ := casScrape(t, env, "certgate_ca_chain_valid", ca.ServerCA); g != 1 {
		t.Fatalf("certgate_ca_chain_valid{ca=\"server-ca\"} = %v, want 1", g)
	}
	logged := env.Logs.FilterMessage("CA chain does not verify").FilterField(zap.String("ca", ca.ClientCA)).All()
	if len(logged) == 0 || logged[0].Level != zapcore.ErrorLevel {
		t.Fatalf("no error log line for client-ca's chain: %v", logged)
	}
	resp, body := call(t, env, "POST", "/v1/certificates", casIssue("client", nil), nil)
	casWantError(t, "issuance on client-ca", resp, body, http.StatusServiceUnavailable, cacache.CodeCAChainInvalid, false)
	resp, body = call(t, env, "GET", "/v1/cas/client-ca/chain", nil, map[string]string{"Authorization": ""})
	casWantError(t, "client-ca chain", resp, body, http.StatusServiceUnavailable, cacache.CodeCAChainInvalid, false)
	resp, body = call(t, env, "POST", "/v1/certificates", casIssue("server", nil), nil)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("server-ca refused because of client-ca: %d %s", resp.StatusCode, body)
	}

	tb.chain.Store(nil)
	if resp, body := call(t, env, "POST", "/v1/cas/refresh", nil, nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("refresh: %d %s", resp.StatusCode, body)
	}
	if code, r := casReady(t, env); code != http.StatusOK {
		t.Fatalf("/readyz after the backend is fixed: %d %+v", code, r)
	}
	resp, body = call(t, env, "POST", "/v1/certificates", casIssue("client", nil), nil)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("issuance on client-ca after the fix: %d %s", resp.StatusCode, body)
	}
}

// TestVerifyAgainstServer drives the logic of `certgate verify` against a
// live server (local CA), the way the CLI does: the server's trust bundle,
// CA chains and CRLs, no token.
func TestVerifyAgainstServer(t *testing.T) {
	env := servertest.Start(t)
	anon := env.NewClient(t, "", nil)
	src := verify.ServerSource{Client: anon}
	res := issue(t, env, map[string]any{"profile": "server", "common_name": "verify.cas.internal"})
	leaf := parseOneCert(t, "certificate", res.Certificate)

	run := func(o verify.Options) *verify.Report {
		t.Helper()
		o.Source = src
		r := verify.Run(context.Background(), o)
		var b strings.Builder
		r.Print(&b)
		t.Log("\n" + b.String())
		return r
	}
	status := func(r *verify.Report) map[string]verify.Status {
		m := map[string]verify.Status{}
		for _, c := range r.Checks {
			m[c.Name] = c.Status
		}
		return m
	}

	r := run(verify.Options{Cert: leaf})
	if !r.OK || r.IssuingCA != ca.ServerCA {
		t.Fatalf("a fresh certificate does not verify: %+v", r)
	}
	crlServed := status(r)[verify.CheckRevocation] == verify.OK
	if !crlServed {
		t.Logf("revocation not checked: the server has no CRL endpoint yet")
	}

	// The file `certgate issue` writes: leaf + chain, parsed like the CLI.
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "tls.crt"), []byte(res.Certificate+res.Chain), 0o644); err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(filepath.Join(dir, "tls.crt"))
	certs, err := verify.ParsePEM(raw)
	if err != nil || len(certs) != 2 {
		t.Fatalf("tls.crt: %d certificates, %v", len(certs), err)
	}
	if r := run(verify.Options{Cert: certs[0], Intermediates: certs[1:], Roots: trustBundle(t, env)}); !r.OK {
		t.Fatalf("tls.crt with --ca-file: %+v", r.Checks)
	}

	stranger := servertest.Start(t)
	foreign := issue(t, stranger, map[string]any{"profile": "server", "common_name": "verify.cas.internal"})
	if r := run(verify.Options{Cert: parseOneCert(t, "foreign", foreign.Certificate)}); r.OK || status(r)[verify.CheckTrust] != verify.Fail {
		t.Fatalf("another certgate's certificate verified: %+v", r.Checks)
	}

	if !crlServed {
		return
	}
	resp, body := call(t, env, "POST", "/v1/certificates/"+res.Serial+"/revoke", mustJSON(t, map[string]string{"reason": "key_compromise"}), nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("revoke: %d %s", resp.StatusCode, body)
	}
	r = run(verify.Options{Cert: leaf})
	if r.OK || status(r)[verify.CheckRevocation] != verify.Fail {
		t.Fatalf("a revoked certificate verified: %+v", r.Checks)
	}
}

// BenchmarkCALookupsUnderLoad measures what the CA cache costs PCA under
// load: 10 concurrent issuers against the PCA double through the whole
// server, then DescribeCertificateAuthority + GetCertificateAuthorityCertificate
// calls per issued certificate. It runs its load once whatever b.N is:
//
//	go test ./internal/e2e -run '^$' -bench CALookupsUnderLoad -benchtime 1x
//
// CERTGATE_CA_LOAD_DURATION (default 60s) sets the load's length.
func BenchmarkCALookupsUnderLoad(b *testing.B) {
	d := 60 * time.Second
	if v := os.Getenv("CERTGATE_CA_LOAD_DURATION"); v != "" {
		var err error
		if d, err = time.ParseDuration(v); err != nil {
			b.Fatal(err)
		}
	}
	for _, ttl := range []time.Duration{time.Hour, 10 * time.Second} {
		b.Run("ttl="+ttl.String(), func(b *testing.B) {
			dbl := servertest.NewPCADouble(b)
			env := servertest.Start(b, servertest.WithPCA(b, dbl), func(c *config.Config, _ *server.Options) {
				c.CACacheTTL = config.Duration(ttl)
			})
			caCalls := func() int {
				return dbl.Count(pcatest.OpDescribeCertificateAuthority) + dbl.Count(pcatest.OpGetCertificateAuthorityCertificate)
			}
			startCalls, startIssued := caCalls(), dbl.Stats().Issued
			var ok, failed atomic.Int64
			deadline := time.Now().Add(d)
			var wg sync.WaitGroup
			b.ResetTimer()
			for w := range 10 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := 0; time.Now().Before(deadline); i++ {
						req := issuanceBody(w, i)
						var out struct{ Serial string }
						if _, err := env.Client.Do(context.Background(), "POST", "/v1/certificates", req, &out, nil); err != nil {
							failed.Add(1)
							continue
						}
						ok.Add(1)
					}
				}()
			}
			wg.Wait()
			b.StopTimer()
			calls := caCalls() - startCalls
			issued := dbl.Stats().Issued - startIssued
			perCert := float64(calls) / float64(max(ok.Load(), 1))
			b.ReportMetric(perCert, "ca_calls/cert")
			b.ReportMetric(float64(ok.Load())/d.Seconds(), "certs/s")
			b.ReportMetric(float64(failed.Load()), "failures")
			b.Logf("ttl %v, %v of load: %d certificates (%d minted by PCA), %d failures, %d CA calls (Describe + GetCACertificate) = %.4f per certificate; %d more at start-up (%.4f per certificate with them)",
				ttl, d, ok.Load(), issued, failed.Load(), calls, perCert, startCalls, float64(calls+startCalls)/float64(max(ok.Load(), 1)))
		})
	}
}

func issuanceBody(worker, i int) map[string]any {
	cn := fmt.Sprintf("w%d-%d.load.cas.internal", worker, i)
	return map[string]any{"profile": "server", "common_name": cn, "ttl": "1h"}
}
