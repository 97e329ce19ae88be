package cacache_test

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/certgate/certgate/internal/apierror"
	"github.com/certgate/certgate/internal/ca"
	"github.com/certgate/certgate/internal/ca/pcatest"
	"github.com/certgate/certgate/internal/cacache"
	"github.com/certgate/certgate/internal/metrics"
	"github.com/certgate/certgate/internal/servertest"
	"github.com/certgate/certgate/internal/store"
)

// clock is the cache's injected time.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

type env struct {
	t          *testing.T
	dbl        *pcatest.Server
	pca        *ca.PCAClient
	backend    ca.Backend
	st         *store.Store
	dir        string // the SQLite database's directory
	closeStore func()
	clock      *clock
	logs       *observer.ObservedLogs
	metrics    *metrics.Metrics
	cache      *cacache.Cache
	opts       cacache.Options
}

// newEnv builds a PCA client on the real SDK pointed at a fresh double, a
// SQLite store in a temporary directory, and a cache on both with an
// injected clock. wrap may replace the backend; tweak may adjust options.
func newEnv(t *testing.T, dblOpts []pcatest.Option, wrap func(ca.Backend) ca.Backend, tweak func(*cacache.Options)) *env {
	t.Helper()
	servertest.SetAWSTestEnv(t)
	e := &env{t: t, dbl: servertest.NewPCADouble(t, dblOpts...), clock: &clock{now: time.Now()}, metrics: metrics.New()}
	core, logs := observer.New(zapcore.DebugLevel)
	e.logs = logs
	log := zap.New(core)
	arns := map[string]string{}
	for _, r := range ca.Names {
		arns[r] = e.dbl.ARN(r)
	}
	pc, err := ca.NewPCAClient(context.Background(), ca.PCAConfig{
		Region: e.dbl.Region(), Endpoint: e.dbl.URL(), ARNs: arns,
		// No SDK retries: each lookup is exactly one call per operation,
		// and an outage fails at once.
		MaxRetries: 0,
		RateLimits: map[string]float64{ca.OpGetCACertificate: 1000, ca.OpDescribeCA: 1000},
	}, log.Named("pca"), e.metrics)
	if err != nil {
		t.Fatal(err)
	}
	e.pca = pc
	e.backend = pc
	if wrap != nil {
		e.backend = wrap(pc)
	}
	e.dir = t.TempDir()
	e.st, e.closeStore = openStore(t, e.dir)
	e.opts = cacache.Options{Backend: e.backend, Store: e.st, TTL: time.Hour, Now: e.clock.Now, Log: log, Metrics: e.metrics,
		FetchTimeout: 5 * time.Second}
	if tweak != nil {
		tweak(&e.opts)
	}
	e.cache = cacache.New(e.opts)
	return e
}

// openStore opens the SQLite database in dir; close it with the returned
// function (at most once; Store.Close is not idempotent) or leave it to the
// test's cleanup.
func openStore(t *testing.T, dir string) (*store.Store, func()) {
	t.Helper()
	st, err := store.Open(context.Background(), store.Options{Driver: "sqlite", DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	closer := func() { once.Do(func() { _ = st.Close() }) }
	t.Cleanup(closer)
	return st, closer
}

// calls is the double's count of the two operations behind Describe.
type calls struct{ getCA, describe int }

func (e *env) calls() calls {
	return calls{e.dbl.Count(pcatest.OpGetCertificateAuthorityCertificate), e.dbl.Count(pcatest.OpDescribeCertificateAuthority)}
}

func (e *env) wantCalls(t *testing.T, what string, base calls, getCA, describe int) {
	t.Helper()
	got := e.calls()
	if d := (calls{got.getCA - base.getCA, got.describe - base.describe}); d != (calls{getCA, describe}) {
		t.Fatalf("%s: backend calls GetCertificateAuthorityCertificate +%d, DescribeCertificateAuthority +%d; want +%d, +%d",
			what, d.getCA, d.describe, getCA, describe)
	}
}

func (e *env) refresh() {
	e.t.Helper()
	if err := e.cache.Refresh(context.Background()); err != nil {
		e.t.Fatalf("Refresh: %v", err)
	}
}

func (e *env) get(name string) *cacache.Entry {
	e.t.Helper()
	got, err := e.cache.Get(context.Background(), name)
	if err != nil {
		e.t.Fatalf("Get(%s): %v", name, err)
	}
	return got
}

// gauge reads one labelled gauge from the registry, as a scrape would.
func gauge(t *testing.T, m *metrics.Metrics, name, caName string) (float64, bool) {
	t.Helper()
	mfs, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, x := range mf.GetMetric() {
			for _, l := range x.GetLabel() {
				if l.GetName() == "ca" && l.GetValue() == caName {
					return x.GetGauge().GetValue(), true
				}
			}
		}
	}
	return 0, false
}

func wantAPIError(t *testing.T, err error, status int, code string) *apierror.Error {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want %d %s", status, code)
	}
	var ae *apierror.Error
	if !errors.As(err, &ae) {
		t.Fatalf("error %v is not an apierror, want %d %s", err, status, code)
	}
	if ae.Status != status || ae.Code != code {
		t.Fatalf("error %d %s (%s), want %d %s", ae.Status, ae.Code, ae.Message, status, code)
	}
	return ae
}

func TestGetServesFromCacheWithinTTL(t *testing.T) {
	e := newEnv(t, nil, nil, nil)
	base := e.calls()
	first := e.get(ca.ServerCA)
	e.wantCalls(t, "first Get", base, 1, 1)
	if first.Stale || first.Status != "ACTIVE" || !first.FetchedAt.Equal(e.clock.Now()) {
		t.Fatalf("first entry: stale %v status %q fetched %v", first.Stale, first.Status, first.FetchedAt)
	}

	base = e.calls()
	e.clock.Advance(time.Hour - time.Second)
	if again := e.get(ca.ServerCA); again != first {
		t.Fatal("a Get within the TTL returned a different entry")
	}
	e.wantCalls(t, "Get within the TTL", base, 0, 0)

	e.clock.Advance(time.Second)
	after := e.get(ca.ServerCA)
	e.wantCalls(t, "first Get after the TTL", base, 1, 1)
	if after == first || !after.FetchedAt.Equal(e.clock.Now()) {
		t.Fatalf("after the TTL: entry not refetched (fetched %v, now %v)", after.FetchedAt, e.clock.Now())
	}
	for range 5 {
		e.get(ca.ServerCA)
	}
	e.wantCalls(t, "Gets after the refresh", base, 1, 1)

	// Refresh always asks, for every CA.
	base = e.calls()
	e.refresh()
	e.wantCalls(t, "Refresh", base, len(ca.Names), len(ca.Names))
}

func TestConcurrentGetsShareOneLookup(t *testing.T) {
	e := newEnv(t, nil, nil, nil)
	e.refresh()
	e.clock.Advance(time.Hour + time.Minute)
	// Each operation takes 200 ms, so every Get below starts while the
	// first lookup is still running.
	e.dbl.SetLatency(pcatest.OpAny, 200*time.Millisecond)

	t.Run("Gets of an expired entry", func(t *testing.T) {
		base := e.calls()
		const n = 100
		start := make(chan struct{})
		got := make([]*cacache.Entry, n)
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				got[i], errs[i] = e.cache.Get(context.Background(), ca.ServerCA)
			}()
		}
		close(start)
		wg.Wait()
		for i := range n {
			if errs[i] != nil || got[i] == nil || got[i].Stale {
				t.Fatalf("Get %d: %v (entry %+v)", i, errs[i], got[i])
			}
			if got[i] != got[0] {
				t.Fatalf("Get %d returned another entry than Get 0", i)
			}
		}
		e.wantCalls(t, "100 concurrent Gets", base, 1, 1)
	})

	t.Run("Gets during a Refresh", func(t *testing.T) {
		e.clock.Advance(time.Hour + time.Minute)
		base := e.calls()
		refreshed := make(chan error, 1)
		go func() { refreshed <- e.cache.Refresh(context.Background()) }()
		// Each lookup takes two calls of 200 ms: 50 ms in, all four are
		// on the wire and the Gets below join them.
		time.Sleep(50 * time.Millisecond)
		const n = 100
		var wg sync.WaitGroup
		errs := make(chan error, n)
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				got, err := e.cache.Get(context.Background(), ca.Names[i%len(ca.Names)])
				if err == nil && got.Stale {
					err = errors.New("stale entry")
				}
				errs <- err
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		if err := <-refreshed; err != nil {
			t.Fatal(err)
		}
		e.wantCalls(t, "Refresh with 100 concurrent Gets", base, len(ca.Names), len(ca.Names))
	})
}

func TestFailedLookupIsRetriedByTheNextGet(t *testing.T) {
	e := newEnv(t, nil, nil, nil)
	e.refresh()

	// Within the TTL a failed refresh keeps the entry usable.
	e.dbl.SetDown(pcatest.DownUnavailable)
	e.clock.Advance(50 * time.Minute)
	if err := e.cache.Refresh(context.Background()); err == nil {
		t.Fatal("Refresh with the backend down succeeded")
	}
	got := e.get(ca.ServerCA)
	if got.Stale || got.FetchErr == nil {
		t.Fatalf("entry after a failed refresh within the TTL: stale %v, fetch error %v; want fresh with the error", got.Stale, got.FetchErr)
	}
	if _, err := e.cache.Usable(context.Background(), ca.ServerCA); err != nil {
		t.Fatalf("Usable within the TTL after a failed refresh: %v", err)
	}
	if w := e.cache.Warnings()[ca.ServerCA]; !strings.Contains(w, "last refresh failed") {
		t.Fatalf("warning %q, want it to report the failed refresh", w)
	}

	// Past the TTL it is stale, every Get asks again, and issuance is refused.
	e.clock.Advance(20 * time.Minute)
	for i := range 3 {
		base := e.calls()
		_, err := e.cache.Usable(context.Background(), ca.ServerCA)
		ae := wantAPIError(t, err, http.StatusServiceUnavailable, apierror.CodeCAUnavailable)
		if ae.RetryAfter <= 0 || !ae.Retryable {
			t.Fatalf("stale 503 without Retry-After: %+v", ae)
		}
		e.wantCalls(t, fmt.Sprintf("Usable while down, attempt %d", i+1), base, 1, 0)
	}
	if got := e.cache.Peek(ca.ServerCA); !got.Stale || got.Certificate == nil {
		t.Fatalf("entry while down: stale %v, certificate %v", got.Stale, got.Certificate != nil)
	}
	if len(e.cache.Roots()) != 1 {
		t.Fatal("the trust bundle is gone while the backend is down")
	}

	// Back up: the very next Get recovers, no refresh or restart needed.
	e.dbl.SetDown(pcatest.Up)
	base := e.calls()
	if _, err := e.cache.Usable(context.Background(), ca.ServerCA); err != nil {
		t.Fatalf("Usable after the backend came back: %v", err)
	}
	e.wantCalls(t, "Usable after recovery", base, 1, 1)
	if got := e.cache.Peek(ca.ServerCA); got.Stale || got.FetchErr != nil {
		t.Fatalf("entry after recovery: stale %v, fetch error %v", got.Stale, got.FetchErr)
	}
}

func TestRestartWithBackendDown(t *testing.T) {
	first := newEnv(t, nil, nil, nil)
	first.refresh()
	want := first.cache.Peek(ca.ServerCA)

	first.dbl.SetDown(pcatest.DownUnavailable)
	first.closeStore()

	// A new process: new store handle on the same database, new cache.
	st, _ := openStore(t, first.dir)
	opts := first.opts
	opts.Store = st
	opts.RetryInterval = 50 * time.Millisecond
	c := cacache.New(opts)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c.Start(ctx)

	for _, name := range ca.Names {
		got := c.Peek(name)
		if got == nil || !got.Stale || got.Certificate == nil || got.FetchErr == nil {
			t.Fatalf("%s after a start with the backend down: %+v; want the stored entry, stale, with the fetch error", name, got)
		}
		if got.ChainErr != nil {
			t.Fatalf("%s stored chain does not verify: %v", name, got.ChainErr)
		}
	}
	if got := c.Peek(ca.ServerCA); !got.Certificate.Equal(want.Certificate) || got.ARN != want.ARN {
		t.Fatal("the stored server-ca is not the one fetched before the restart")
	}
	if _, err := c.Usable(ctx, ca.ServerCA); err == nil {
		t.Fatal("issuance allowed on a stale PCA CA")
	} else {
		wantAPIError(t, err, http.StatusServiceUnavailable, apierror.CodeCAUnavailable)
	}
	if name, err := c.Ready(ctx); err != nil {
		t.Fatalf("%s not ready while only stale: %v", name, err)
	}
	if w := c.Warnings()[ca.Root]; !strings.Contains(w, "stale") {
		t.Fatalf("root warning %q, want stale", w)
	}

	// The background refresher retries every RetryInterval, far sooner
	// than the TTL, and recovers without any Get.
	before := first.calls()
	time.Sleep(300 * time.Millisecond)
	if got := first.calls(); got.getCA-before.getCA < 2*len(ca.Names) {
		t.Fatalf("background retries while down: %d GetCertificateAuthorityCertificate calls in 300 ms, want at least %d",
			got.getCA-before.getCA, 2*len(ca.Names))
	}
	first.dbl.SetDown(pcatest.Up)
	deadline := time.Now().Add(5 * time.Second)
	for {
		stale := 0
		for _, e := range c.All() {
			if e.Stale {
				stale++
			}
		}
		if stale == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d CAs still stale 5 s after the backend came back", stale)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := c.Usable(ctx, ca.ServerCA); err != nil {
		t.Fatalf("Usable after background recovery: %v", err)
	}
	if d := c.NextRefresh(false); d != 54*time.Minute {
		t.Fatalf("refresh after success in %v, want 9/10 of the TTL", d)
	}
}

func TestDefaultRetryInterval(t *testing.T) {
	for _, tc := range []struct{ ttl, want time.Duration }{
		{time.Hour, 30 * time.Second},
		{10 * time.Second, 10 * time.Second},
	} {
		c := cacache.New(cacache.Options{TTL: tc.ttl})
		if got := c.NextRefresh(true); got != tc.want {
			t.Errorf("TTL %v: retry after failure in %v, want %v", tc.ttl, got, tc.want)
		}
	}
}

func TestExpiringCA(t *testing.T) {
	now := time.Now()
	e := newEnv(t, []pcatest.Option{pcatest.WithCA(pcatest.RoleServerCA, pcatest.CAConfig{NotAfter: now.Add(10 * ca.Day)})}, nil, nil)
	e.refresh()
	e.refresh()

	logs := e.logs.FilterMessage("CA certificate expires soon").FilterField(zap.String("ca", ca.ServerCA)).All()
	if len(logs) != 2 || logs[0].Level != zapcore.WarnLevel {
		t.Fatalf("expiry warnings logged: %d (%v), want one warning per refresh", len(logs), logs)
	}
	if n := e.logs.FilterMessage("CA certificate expires soon").FilterField(zap.String("ca", ca.ClientCA)).Len(); n != 0 {
		t.Fatalf("client-ca (5 years left) logged %d expiry warnings", n)
	}
	if w := e.cache.Warnings()[ca.ServerCA]; !strings.Contains(w, "expires in 9 days") && !strings.Contains(w, "expires in 10 days") {
		t.Fatalf("readiness warning %q, want 'expires in 9/10 days'", w)
	}
	if _, ok := e.cache.Warnings()[ca.ClientCA]; ok {
		t.Fatal("client-ca has a warning")
	}
	v, ok := gauge(t, e.metrics, "certgate_ca_expiry_seconds", ca.ServerCA)
	if !ok || v <= 0 || v >= (30*ca.Day).Seconds() {
		t.Fatalf("certgate_ca_expiry_seconds{ca=server-ca} = %v (present %v), want in (0, 30 days)", v, ok)
	}
	if v, _ := gauge(t, e.metrics, "certgate_ca_expiry_seconds", ca.ClientCA); v < (4 * 365 * ca.Day).Seconds() {
		t.Fatalf("certgate_ca_expiry_seconds{ca=client-ca} = %v", v)
	}
	evs, _, err := e.st.ListEvents(context.Background(), store.EventFilter{CA: ca.ServerCA, Type: store.EventCAExpiring})
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 2 || evs[0].Details["not_after"] == "" || evs[0].Details["expired"] != "false" {
		t.Fatalf("ca_expiring events for server-ca: %+v, want one per refresh", evs)
	}
	if evs, _, _ := e.st.ListEvents(context.Background(), store.EventFilter{CA: ca.ClientCA, Type: store.EventCAExpiring}); len(evs) != 0 {
		t.Fatalf("client-ca has ca_expiring events: %+v", evs)
	}
	if _, err := e.cache.Usable(context.Background(), ca.ServerCA); err != nil {
		t.Fatalf("an expiring (not expired) CA is refused: %v", err)
	}
	if _, err := e.cache.Ready(context.Background()); err != nil {
		t.Fatalf("an expiring CA makes the server unready: %v", err)
	}
}

func TestUnusableCAs(t *testing.T) {
	now := time.Now()
	t.Run("expired", func(t *testing.T) {
		e := newEnv(t, []pcatest.Option{pcatest.WithCA(pcatest.RoleClientCA, pcatest.CAConfig{NotAfter: now.Add(-time.Hour)})}, nil, nil)
		e.refresh()
		got := e.cache.Peek(ca.ClientCA)
		if got.ChainErr != nil {
			t.Fatalf("an expired CA is reported as a broken chain: %v", got.ChainErr)
		}
		_, err := e.cache.Usable(context.Background(), ca.ClientCA)
		wantAPIError(t, err, http.StatusServiceUnavailable, cacache.CodeCAExpired)
		if w := e.cache.Warnings()[ca.ClientCA]; !strings.Contains(w, "expired") {
			t.Fatalf("warning %q", w)
		}
		if e.logs.FilterMessage("CA certificate has expired").Len() == 0 {
			t.Fatal("no log line for the expired CA")
		}
	})
	t.Run("not yet valid", func(t *testing.T) {
		e := newEnv(t, []pcatest.Option{pcatest.WithCA(pcatest.RoleClientCA, pcatest.CAConfig{NotBefore: now.Add(time.Hour), NotAfter: now.Add(400 * ca.Day)})}, nil, nil)
		e.refresh()
		_, err := e.cache.Usable(context.Background(), ca.ClientCA)
		wantAPIError(t, err, http.StatusServiceUnavailable, cacache.CodeCANotYetValid)
	})
	t.Run("disabled", func(t *testing.T) {
		e := newEnv(t, nil, nil, nil)
		e.refresh()
		e.dbl.SetStatus(pcatest.RoleClientCA, pcatest.StatusDisabled)
		if _, err := e.cache.Usable(context.Background(), ca.ClientCA); err != nil {
			t.Fatalf("before the refresh the cached status is ACTIVE: %v", err)
		}
		e.refresh()
		_, err := e.cache.Usable(context.Background(), ca.ClientCA)
		wantAPIError(t, err, http.StatusServiceUnavailable, cacache.CodeCANotActive)
		if _, err := e.cache.Usable(context.Background(), ca.ServerCA); err != nil {
			t.Fatalf("server-ca: %v", err)
		}
	})
	t.Run("status not permitted", func(t *testing.T) {
		e := newEnv(t, nil, nil, nil)
		e.dbl.SetAccessDenied(pcatest.OpDescribeCertificateAuthority, true)
		e.refresh()
		if got := e.cache.Peek(ca.ClientCA); got.Status != "unknown" {
			t.Fatalf("status %q, want unknown", got.Status)
		}
		if _, err := e.cache.Usable(context.Background(), ca.ClientCA); err != nil {
			t.Fatalf("a CA of unknown status is refused: %v", err)
		}
	})
}

// swapChain is a backend whose answer for one CA carries a chain that does
// not lead to the trust bundle's root (here: another PCA hierarchy's).
type swapChain struct {
	ca.Backend
	mu    sync.Mutex
	name  string
	chain []*x509.Certificate // nil: pass through
}

func (s *swapChain) set(chain []*x509.Certificate) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.chain = chain
}

func (s *swapChain) Describe(ctx context.Context, name string) (*ca.Info, error) {
	info, err := s.Backend.Describe(ctx, name)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err == nil && name == s.name && s.chain != nil {
		cp := *info
		cp.Chain = s.chain
		info = &cp
	}
	return info, err
}

func TestBrokenChain(t *testing.T) {
	other := servertest.NewPCADouble(t)
	otherChain := []*x509.Certificate{other.Root()}
	sw := &swapChain{name: ca.ClientCA}
	e := newEnv(t, nil, func(b ca.Backend) ca.Backend { sw.Backend = b; return sw }, nil)
	e.refresh()
	if v, _ := gauge(t, e.metrics, "certgate_ca_chain_valid", ca.ClientCA); v != 1 {
		t.Fatalf("chain_valid before tampering = %v", v)
	}

	sw.set(otherChain)
	e.refresh()
	got := e.cache.Peek(ca.ClientCA)
	if got.ChainErr == nil {
		t.Fatal("a chain ending in another root was accepted")
	}
	if v, ok := gauge(t, e.metrics, "certgate_ca_chain_valid", ca.ClientCA); !ok || v != 0 {
		t.Fatalf("certgate_ca_chain_valid{ca=client-ca} = %v (present %v), want 0", v, ok)
	}
	if v, _ := gauge(t, e.metrics, "certgate_ca_chain_valid", ca.ServerCA); v != 1 {
		t.Fatalf("certgate_ca_chain_valid{ca=server-ca} = %v, want 1", v)
	}
	logs := e.logs.FilterMessage("CA chain does not verify").FilterField(zap.String("ca", ca.ClientCA)).All()
	if len(logs) == 0 || logs[0].Level != zapcore.ErrorLevel {
		t.Fatalf("chain failure logs: %v, want an error line for client-ca", logs)
	}
	name, err := e.cache.Ready(context.Background())
	if err == nil || !strings.Contains(err.Error(), "client-ca: chain does not verify") {
		t.Fatalf("Ready = %s, %v; want client-ca's chain failure", name, err)
	}
	_, err = e.cache.Usable(context.Background(), ca.ClientCA)
	wantAPIError(t, err, http.StatusServiceUnavailable, cacache.CodeCAChainInvalid)
	if _, err := e.cache.Usable(context.Background(), ca.ServerCA); err != nil {
		t.Fatalf("server-ca refused because client-ca's chain is broken: %v", err)
	}

	// The certificate itself swapped for another hierarchy's: the chain
	// ends in our root, but does not sign it.
	sw.set(nil)
	e.refresh()
	if got := e.cache.Peek(ca.ClientCA); got.ChainErr != nil {
		t.Fatalf("after the backend is fixed: %v", got.ChainErr)
	}
	if e.logs.FilterMessage("CA chain verifies again").Len() != 1 {
		t.Fatal("no log line for the recovered chain")
	}
	if v, _ := gauge(t, e.metrics, "certgate_ca_chain_valid", ca.ClientCA); v != 1 {
		t.Fatalf("chain_valid after the fix = %v", v)
	}
}

func TestForeignCertificateUnderOurRoot(t *testing.T) {
	other := servertest.NewPCADouble(t)
	e := newEnv(t, nil, func(b ca.Backend) ca.Backend {
		return &swapCert{Backend: b, name: ca.IstioCA, cert: other.CACert(pcatest.RoleIstioCA)}
	}, nil)
	e.refresh()
	got := e.cache.Peek(ca.IstioCA)
	if got.ChainErr == nil {
		t.Fatal("a CA certificate not signed by the chain was accepted")
	}
	_, err := e.cache.Usable(context.Background(), ca.IstioCA)
	wantAPIError(t, err, http.StatusServiceUnavailable, cacache.CodeCAChainInvalid)
}

type swapCert struct {
	ca.Backend
	name string
	cert *x509.Certificate
}

func (s *swapCert) Describe(ctx context.Context, name string) (*ca.Info, error) {
	info, err := s.Backend.Describe(ctx, name)
	if err == nil && name == s.name {
		cp := *info
		cp.Certificate = s.cert
		info = &cp
	}
	return info, err
}

func TestGetHonoursCallerContext(t *testing.T) {
	e := newEnv(t, nil, nil, nil)
	e.refresh()
	e.clock.Advance(2 * time.Hour)
	e.dbl.SetLatency(pcatest.OpAny, 500*time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	got, err := e.cache.Get(ctx, ca.ServerCA)
	if took := time.Since(start); took > 300*time.Millisecond {
		t.Fatalf("Get waited %v after its context ended", took)
	}
	if err != nil || got == nil || !got.Stale {
		t.Fatalf("Get with an expired context: %v, %+v; want the last entry, marked stale for this caller", err, got)
	}
	if _, err := e.cache.Usable(ctx, ca.ServerCA); err == nil {
		t.Fatal("Usable on an unconfirmed entry succeeded")
	}
	// The shared lookup went on and lands for the next caller.
	time.Sleep(1200 * time.Millisecond)
	if got := e.cache.Peek(ca.ServerCA); got.Stale || !got.FetchedAt.Equal(e.clock.Now()) {
		t.Fatalf("the shared lookup did not finish: %+v", got)
	}
}

func TestUsageModeFromCache(t *testing.T) {
	e := newEnv(t, []pcatest.Option{pcatest.WithCA(pcatest.RoleIstioCA, pcatest.CAConfig{UsageMode: pcatest.UsageModeShortLived})}, nil, nil)
	e.refresh()
	base := e.calls()
	if m := e.cache.UsageMode(ca.IstioCA); m != pcatest.UsageModeShortLived {
		t.Fatalf("istio-ca usage mode %q", m)
	}
	if m := e.cache.UsageMode(ca.Root); m != pcatest.UsageModeGeneralPurpose {
		t.Fatalf("root usage mode %q", m)
	}
	e.wantCalls(t, "UsageMode", base, 0, 0)
}
