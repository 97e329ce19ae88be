// Package cacache keeps every configured CA's certificate, chain and status
// in memory, refreshed from the backend before its TTL runs out, copied to
// the database so a restart without the backend still serves the last known
// chains, and checked: a CA whose chain does not verify, or that is expired,
// disabled or not yet valid, is not used for issuance.
//
// Freshness: an entry is fresh for TTL after the backend last confirmed it.
// The background refresher runs at 9/10 of the TTL, so lookups on the
// request path normally never wait for the backend; after a failed refresh
// it tries again every RetryInterval. An entry the backend has not confirmed
// within the TTL (loaded from the database at start, or refreshes failing
// past the TTL) is stale: its chain is still served, but a PCA CA is not
// used for issuance, and the next lookup asks the backend again, so service
// recovers without a restart as soon as the backend answers.
package cacache

import (
	"context"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sync/singleflight"

	"github.com/certgate/certgate/internal/apierror"
	"github.com/certgate/certgate/internal/ca"
	"github.com/certgate/certgate/internal/metrics"
	"github.com/certgate/certgate/internal/store"
)

// Error codes of Usable beyond apierror's.
const (
	CodeCAExpired      = "ca_expired"
	CodeCANotYetValid  = "ca_not_yet_valid"
	CodeCANotActive    = "ca_not_active"
	CodeCAChainInvalid = "ca_chain_invalid"
)

// Entry is one CA as last seen. Entries are immutable once published: every
// change makes a copy.
type Entry struct {
	ca.Info
	KeyAlgorithm     string
	SigningAlgorithm string
	// FetchedAt is when the backend last confirmed this data.
	FetchedAt time.Time
	// Stale is set when the backend has not confirmed the data within the
	// TTL: it came from the database, or refreshes have failed since.
	Stale    bool
	ChainErr error // the chain does not verify to the trust bundle
	FetchErr error // the last refresh failed (the entry may still be fresh)
}

// Fingerprint is the SHA-256 of the CA certificate's DER, in hex.
func (e *Entry) Fingerprint() string {
	if e == nil || e.Certificate == nil {
		return ""
	}
	sum := sha256.Sum256(e.Certificate.Raw)
	return hex.EncodeToString(sum[:])
}

// Store is the database side of the cache.
type Store interface {
	UpsertCA(ctx context.Context, c *store.CertificateAuthority) error
	ListCAs(ctx context.Context) ([]store.CertificateAuthority, error)
	AddEvent(ctx context.Context, ev *store.Event) error
}

// Options configure a Cache.
type Options struct {
	Backend ca.Backend
	Store   Store
	// TTL is how long the backend's answer is trusted (default 1h).
	TTL time.Duration
	// RetryInterval is how soon the background refresher tries again after
	// a failed refresh (default min(TTL, 30s)).
	RetryInterval time.Duration
	// WarnBefore is how long before a CA's NotAfter it raises warnings
	// (default 30 days).
	WarnBefore time.Duration
	Now        func() time.Time
	Log        *zap.Logger
	Metrics    *metrics.Metrics
	Names      []string // CA roles to track; default ca.Names
	// FetchTimeout bounds one backend lookup of one CA (default 10s).
	FetchTimeout time.Duration
}

// Cache is safe for concurrent use.
type Cache struct {
	o       Options
	sf      singleflight.Group
	mu      sync.RWMutex
	entries map[string]*Entry
}

// New builds an empty cache; call LoadStored and Refresh (or Start) to fill it.
func New(o Options) *Cache {
	if o.TTL <= 0 {
		o.TTL = time.Hour
	}
	if o.RetryInterval <= 0 {
		o.RetryInterval = min(o.TTL, 30*time.Second)
	}
	if o.WarnBefore <= 0 {
		o.WarnBefore = 30 * ca.Day
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Log == nil {
		o.Log = zap.NewNop()
	}
	if len(o.Names) == 0 {
		o.Names = ca.Names
	}
	if o.FetchTimeout <= 0 {
		o.FetchTimeout = 10 * time.Second
	}
	return &Cache{o: o, entries: map[string]*Entry{}}
}

// Start loads the database copy, refreshes every CA once, and keeps
// refreshing in the background until ctx ends. A backend that is down at
// start is logged, not fatal: the database copy serves, marked stale.
func (c *Cache) Start(ctx context.Context) {
	if err := c.LoadStored(ctx); err != nil {
		c.o.Log.Warn("loading stored CA state", zap.Error(err))
	}
	err := c.Refresh(ctx)
	if err != nil {
		c.o.Log.Warn("initial CA refresh failed; serving the stored CA state, marked stale", zap.Error(err),
			zap.Duration("retry_in", c.o.RetryInterval))
	}
	go c.loop(ctx, err != nil)
}

// NextRefresh is how long the background refresher waits after a refresh
// that succeeded (9/10 of the TTL, so entries are renewed before they
// expire) or failed (RetryInterval).
func (c *Cache) NextRefresh(failed bool) time.Duration {
	if failed {
		return c.o.RetryInterval
	}
	return c.o.TTL - c.o.TTL/10
}

func (c *Cache) loop(ctx context.Context, failed bool) {
	for {
		t := time.NewTimer(c.NextRefresh(failed))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		err := c.Refresh(ctx)
		failed = err != nil
		if failed && ctx.Err() == nil {
			c.o.Log.Warn("background CA refresh failed", zap.Error(err), zap.Duration("retry_in", c.o.RetryInterval))
		}
	}
}

// LoadStored fills the cache from the database, marked stale. Entries the
// cache already holds are kept.
func (c *Cache) LoadStored(ctx context.Context) error {
	rows, err := c.o.Store.ListCAs(ctx)
	if err != nil {
		return err
	}
	for _, r := range rows {
		cert, err := parseOne(r.CertificatePEM)
		if err != nil {
			c.o.Log.Warn("stored CA certificate does not parse; ignored", zap.String("ca", r.Name), zap.Error(err))
			continue
		}
		chain, err := parseAll(r.ChainPEM)
		if err != nil {
			c.o.Log.Warn("stored CA chain does not parse; ignored", zap.String("ca", r.Name), zap.Error(err))
			continue
		}
		e := &Entry{Info: ca.Info{Name: r.Name, Backend: r.Backend, ARN: r.ARN, Status: r.Status, UsageMode: r.UsageMode, Certificate: cert, Chain: chain},
			KeyAlgorithm: r.KeyAlgorithm, SigningAlgorithm: r.SigningAlgorithm, FetchedAt: r.FetchedAt, Stale: true}
		c.mu.Lock()
		if _, have := c.entries[r.Name]; !have {
			c.entries[r.Name] = e
		}
		c.mu.Unlock()
	}
	c.validateAll(true)
	return nil
}

// Refresh asks the backend for every CA now, all at once, and returns the
// failures joined. CAs that fail keep their last known state.
func (c *Cache) Refresh(ctx context.Context) error {
	errs := make([]error, len(c.o.Names))
	var wg sync.WaitGroup
	for i, name := range c.o.Names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := c.fetch(ctx, name, true); err != nil {
				errs[i] = fmt.Errorf("%s: %w", name, err)
			}
		}()
	}
	wg.Wait()
	c.validateAll(true)
	return errors.Join(errs...)
}

// Get returns a CA, asking the backend when the entry is missing, stale or
// older than the TTL. Concurrent callers share one backend call. When the
// backend fails and a last known entry exists, that entry is returned,
// marked stale once past the TTL, with a nil error; the next Get asks the
// backend again.
func (c *Cache) Get(ctx context.Context, name string) (*Entry, error) {
	if e := c.Peek(name); c.fresh(e) {
		return e, nil
	}
	_, err := c.fetch(ctx, name, false)
	cur := c.Peek(name)
	switch {
	case cur == nil:
		if err == nil {
			err = fmt.Errorf("CA %s: no entry after a successful fetch", name)
		}
		return nil, err
	case err != nil && !cur.Stale && !c.fresh(cur):
		// The caller gave up before the shared lookup ended: its answer is
		// not known yet, so the old entry counts as stale for this caller.
		cp := *cur
		cp.Stale, cp.FetchErr = true, err
		return &cp, nil
	}
	return cur, nil
}

// fresh: the backend confirmed e within the TTL.
func (c *Cache) fresh(e *Entry) bool {
	return e != nil && !e.Stale && c.o.Now().Sub(e.FetchedAt) < c.o.TTL
}

// fetch asks the backend once for name, however many callers wait. A
// caller that stops waiting (ctx) leaves the lookup running for the others.
// Unless force is set, a lookup that finds the entry fresh again (another
// caller's lookup finished in between) returns it without asking.
func (c *Cache) fetch(ctx context.Context, name string, force bool) (*Entry, error) {
	ch := c.sf.DoChan(name, func() (any, error) {
		if !force {
			if e := c.Peek(name); c.fresh(e) {
				return e, nil
			}
		}
		return c.load(context.WithoutCancel(ctx), name)
	})
	select {
	case r := <-ch:
		if r.Err != nil {
			return nil, r.Err
		}
		return r.Val.(*Entry), nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// load is one backend lookup; only fetch calls it.
func (c *Cache) load(ctx context.Context, name string) (*Entry, error) {
	ctx, cancel := context.WithTimeout(ctx, c.o.FetchTimeout)
	defer cancel()
	info, err := c.o.Backend.Describe(ctx, name)
	if err != nil {
		c.failed(name, err)
		return nil, err
	}
	e := &Entry{Info: *info, FetchedAt: c.o.Now(), KeyAlgorithm: keyAlgorithm(info.Certificate), SigningAlgorithm: signingAlgorithm(info.Certificate)}
	c.mu.Lock()
	prev := c.entries[name]
	if prev != nil {
		// Keep the chain verdict until validateAll recomputes it, so a
		// broken chain is never briefly reported as fine.
		e.ChainErr = prev.ChainErr
	}
	c.entries[name] = e
	c.mu.Unlock()
	if prev != nil && prev.Certificate != nil && !prev.Certificate.Equal(e.Certificate) {
		c.o.Log.Warn("CA certificate changed", zap.String("ca", name),
			zap.String("old_sha256", prev.Fingerprint()), zap.String("new_sha256", e.Fingerprint()),
			zap.Time("old_not_after", prev.Certificate.NotAfter), zap.Time("new_not_after", e.Certificate.NotAfter))
	}
	if prev != nil && (prev.Stale || prev.FetchErr != nil) {
		c.o.Log.Info("CA backend answers again", zap.String("ca", name))
	}
	c.validateAll(false)
	c.persist(ctx, e)
	return c.Peek(name), nil
}

// failed records a failed lookup: the entry keeps its data, gains the error,
// and turns stale once the backend has not confirmed it for a TTL.
func (c *Cache) failed(name string, err error) {
	now := c.o.Now()
	c.mu.Lock()
	e := c.entries[name]
	stale := false
	if e != nil {
		cp := *e
		cp.FetchErr = err
		cp.Stale = cp.Stale || now.Sub(cp.FetchedAt) >= c.o.TTL
		stale = cp.Stale
		c.entries[name] = &cp
	}
	c.mu.Unlock()
	c.o.Log.Warn("CA lookup failed", zap.String("ca", name), zap.Bool("have_last_known", e != nil), zap.Bool("stale", stale), zap.Error(err))
}

func (c *Cache) persist(ctx context.Context, e *Entry) {
	row := &store.CertificateAuthority{
		Name: e.Name, Backend: e.Backend, ARN: e.ARN, Status: e.Status, UsageMode: e.UsageMode,
		KeyAlgorithm: e.KeyAlgorithm, SigningAlgorithm: e.SigningAlgorithm,
		CertificatePEM: pemOf(e.Certificate), ChainPEM: pemOf(e.Chain...),
		NotBefore: e.Certificate.NotBefore, NotAfter: e.Certificate.NotAfter, FetchedAt: e.FetchedAt,
	}
	if err := c.o.Store.UpsertCA(ctx, row); err != nil {
		c.o.Log.Warn("storing CA state", zap.String("ca", e.Name), zap.Error(err))
	}
	notAfter := e.Certificate.NotAfter.UTC().Format(time.RFC3339)
	ev := &store.Event{CA: e.Name, Type: store.EventCARefreshed, Outcome: "success", Principal: "certgate",
		Details: map[string]string{"status": e.Status, "not_after": notAfter, "sha256": e.Fingerprint()}}
	if err := c.o.Store.AddEvent(ctx, ev); err != nil {
		c.o.Log.Warn("CA refresh event", zap.String("ca", e.Name), zap.Error(err))
	}
	left := e.Certificate.NotAfter.Sub(c.o.Now())
	if left >= c.o.WarnBefore {
		return
	}
	days := int(left / ca.Day)
	if left < 0 {
		c.o.Log.Error("CA certificate has expired", zap.String("ca", e.Name), zap.Time("not_after", e.Certificate.NotAfter))
	} else {
		c.o.Log.Warn("CA certificate expires soon", zap.String("ca", e.Name), zap.Time("not_after", e.Certificate.NotAfter),
			zap.Duration("left", left), zap.Int("days_left", days))
	}
	ev = &store.Event{CA: e.Name, Type: store.EventCAExpiring, Outcome: "warning", Principal: "certgate",
		Details: map[string]string{"not_after": notAfter, "days_left": strconv.Itoa(days), "expired": strconv.FormatBool(left < 0),
			"warn_before_days": strconv.Itoa(int(c.o.WarnBefore / ca.Day))}}
	if err := c.o.Store.AddEvent(ctx, ev); err != nil {
		c.o.Log.Warn("CA expiring event", zap.String("ca", e.Name), zap.Error(err))
	}
}

// validateAll checks every chain against the trust bundle; results land in
// each entry, the metrics and, when logAll is set or a verdict changed, the
// log.
func (c *Cache) validateAll(logAll bool) {
	type change struct {
		name      string
		err       error
		recovered bool
	}
	var logs []change
	c.mu.Lock()
	root := c.entries[ca.Root]
	now := c.o.Now()
	for name, e := range c.entries {
		var err error
		switch {
		case root == nil || root.Certificate == nil:
			err = errNoRoot
		case name == ca.Root:
			err = verifyRoot(e)
		default:
			err = verifyCA(e, root.Certificate, now)
		}
		changed := errText(err) != errText(e.ChainErr)
		// While CAs load one by one the root may come last: a verdict
		// that only says so is not worth a log line until a full pass.
		quiet := !logAll && (errors.Is(err, errNoRoot) || errors.Is(e.ChainErr, errNoRoot))
		if changed {
			cp := *e
			cp.ChainErr = err
			c.entries[name] = &cp
		}
		if quiet {
			continue
		}
		if err != nil && (logAll || changed) {
			logs = append(logs, change{name: name, err: err})
		} else if err == nil && changed {
			logs = append(logs, change{name: name, recovered: true})
		}
	}
	c.mu.Unlock()
	for _, l := range logs {
		if l.recovered {
			c.o.Log.Info("CA chain verifies again", zap.String("ca", l.name))
			continue
		}
		c.o.Log.Error("CA chain does not verify", zap.String("ca", l.name), zap.Error(l.err))
	}
	c.updateMetrics()
}

// updateMetrics sets the expiry and chain gauges from the current entries.
func (c *Cache) updateMetrics() {
	if c.o.Metrics == nil {
		return
	}
	now := c.o.Now()
	for _, e := range c.All() {
		valid := 1.0
		if e.ChainErr != nil {
			valid = 0
		}
		c.o.Metrics.CAChainValid.WithLabelValues(e.Name).Set(valid)
		c.o.Metrics.CAExpiry.WithLabelValues(e.Name).Set(e.Certificate.NotAfter.Sub(now).Seconds())
	}
}

var errNoRoot = errors.New("no root CA certificate to verify against")

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func verifyRoot(e *Entry) error {
	if err := e.Certificate.CheckSignatureFrom(e.Certificate); err != nil {
		return fmt.Errorf("the root CA certificate is not self-signed: %w", err)
	}
	if len(e.Chain) != 0 {
		return errors.New("the root CA has a chain above it")
	}
	return nil
}

// verifyCA checks that the CA certificate chains through its chain to the
// trust bundle's root. Validity is checked separately (Usable), so the chain
// is verified at a moment when every certificate on it is valid: now when
// possible, else the nearest such moment.
func verifyCA(e *Entry, root *x509.Certificate, now time.Time) error {
	if len(e.Chain) == 0 {
		return errors.New("no chain to the root")
	}
	top := e.Chain[len(e.Chain)-1]
	if !top.Equal(root) {
		return fmt.Errorf("the chain ends in %q, not in the trust bundle's root %q", top.Subject, root.Subject)
	}
	if !e.Certificate.IsCA {
		return errors.New("the CA certificate is not a CA (basicConstraints CA:FALSE)")
	}
	if e.Certificate.KeyUsage != 0 && e.Certificate.KeyUsage&x509.KeyUsageCertSign == 0 {
		return errors.New("the CA certificate lacks the keyCertSign key usage")
	}
	notBefore, notAfter := e.Certificate.NotBefore, e.Certificate.NotAfter
	for _, x := range e.Chain {
		if x.NotBefore.After(notBefore) {
			notBefore = x.NotBefore
		}
		if x.NotAfter.Before(notAfter) {
			notAfter = x.NotAfter
		}
	}
	if notBefore.After(notAfter) {
		return fmt.Errorf("the chain's certificates are never valid at the same time (latest not-before %s, earliest not-after %s)",
			notBefore.UTC().Format(time.RFC3339), notAfter.UTC().Format(time.RFC3339))
	}
	at := now
	if at.Before(notBefore) {
		at = notBefore
	}
	if at.After(notAfter) {
		at = notAfter
	}
	roots := x509.NewCertPool()
	roots.AddCert(root)
	inter := x509.NewCertPool()
	for _, x := range e.Chain[:len(e.Chain)-1] {
		inter.AddCert(x)
	}
	if _, err := e.Certificate.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: at, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return err
	}
	return nil
}

// Usable returns the CA certificate if issuance on it may proceed, or a 503
// naming why not.
func (c *Cache) Usable(ctx context.Context, name string) (*x509.Certificate, error) {
	e, err := c.Get(ctx, name)
	if err != nil {
		return nil, apierror.Unavailable(apierror.CodeCAUnavailable, 5*time.Second, "CA %s is unavailable: its certificate could not be fetched", name).WithCause(err)
	}
	now := c.o.Now()
	switch {
	case e.ChainErr != nil:
		return nil, apierror.New(http.StatusServiceUnavailable, CodeCAChainInvalid, "CA %s is not used: its chain does not verify to the trust bundle: %v", name, e.ChainErr).WithCause(e.ChainErr)
	case e.Stale && c.o.Backend.Kind() != "local":
		return nil, apierror.Unavailable(apierror.CodeCAUnavailable, 5*time.Second, "CA %s is unreachable; serving its last known chain only (fetched %s)",
			name, e.FetchedAt.UTC().Format(time.RFC3339)).WithCause(e.FetchErr)
	case now.After(e.Certificate.NotAfter):
		return nil, apierror.New(http.StatusServiceUnavailable, CodeCAExpired, "CA %s expired at %s", name, e.Certificate.NotAfter.UTC().Format(time.RFC3339))
	case now.Before(e.Certificate.NotBefore):
		ae := apierror.New(http.StatusServiceUnavailable, CodeCANotYetValid, "CA %s is not valid until %s", name, e.Certificate.NotBefore.UTC().Format(time.RFC3339))
		if wait := e.Certificate.NotBefore.Sub(now); wait <= 5*time.Minute {
			ae.Retryable, ae.RetryAfter = true, wait
		}
		return nil, ae
	case e.Status != "" && e.Status != "ACTIVE" && e.Status != "unknown":
		return nil, apierror.New(http.StatusServiceUnavailable, CodeCANotActive, "CA %s is %s", name, e.Status)
	}
	return e.Certificate, nil
}

// UsageMode is the CA's PCA usage mode as last seen ("" when unknown); it
// lets the issuance service skip a DescribeCertificateAuthority per request.
func (c *Cache) UsageMode(name string) string {
	if e := c.Peek(name); e != nil {
		return e.UsageMode
	}
	return ""
}

// Roots is the trust bundle.
func (c *Cache) Roots() []*x509.Certificate {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if e := c.entries[ca.Root]; e != nil && e.Certificate != nil {
		return []*x509.Certificate{e.Certificate}
	}
	return nil
}

// All returns every entry, in role order.
func (c *Cache) All() []*Entry {
	c.mu.RLock()
	defer c.mu.RUnlock()
	var out []*Entry
	for _, n := range c.o.Names {
		if e := c.entries[n]; e != nil {
			out = append(out, e)
		}
	}
	return out
}

// Peek returns an entry without fetching.
func (c *Cache) Peek(name string) *Entry {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.entries[name]
}

// Warning is the /readyz detail for one entry ("" when all is well): broken
// chain, stale data, failed refresh, expired or expiring soon.
func (c *Cache) Warning(e *Entry) string {
	var w []string
	if e.ChainErr != nil {
		w = append(w, "chain does not verify: "+e.ChainErr.Error())
	}
	switch {
	case e.Stale && e.FetchErr != nil:
		w = append(w, fmt.Sprintf("stale: last fetched %s; last refresh failed: %v", e.FetchedAt.UTC().Format(time.RFC3339), e.FetchErr))
	case e.Stale:
		w = append(w, "stale: last fetched "+e.FetchedAt.UTC().Format(time.RFC3339))
	case e.FetchErr != nil:
		w = append(w, "last refresh failed: "+e.FetchErr.Error())
	}
	if left := e.Certificate.NotAfter.Sub(c.o.Now()); left < 0 {
		w = append(w, "expired at "+e.Certificate.NotAfter.UTC().Format(time.RFC3339))
	} else if left < c.o.WarnBefore {
		w = append(w, fmt.Sprintf("expires in %d days (%s)", int(left/ca.Day), e.Certificate.NotAfter.UTC().Format(time.RFC3339)))
	}
	return strings.Join(w, "; ")
}

// Warnings are the /readyz details, by CA name.
func (c *Cache) Warnings() map[string]string {
	out := map[string]string{}
	for _, e := range c.All() {
		if w := c.Warning(e); w != "" {
			out[e.Name] = w
		}
	}
	return out
}

// Ready fails when a CA cannot issue because it is missing or its chain is
// broken. Stale data and expiry are warnings: the server still serves
// chains, CRLs and the other CAs. It also brings the expiry gauges up to
// date, so a probed server exports current values between refreshes.
func (c *Cache) Ready(_ context.Context) (string, error) {
	var bad []string
	for _, n := range c.o.Names {
		e := c.Peek(n)
		switch {
		case e == nil:
			bad = append(bad, n+": not loaded")
		case e.ChainErr != nil:
			bad = append(bad, n+": chain does not verify: "+e.ChainErr.Error())
		}
	}
	c.updateMetrics()
	if len(bad) > 0 {
		return "cas", errors.New(strings.Join(bad, "; "))
	}
	return "cas", nil
}

func keyAlgorithm(c *x509.Certificate) string {
	switch k := c.PublicKey.(type) {
	case *ecdsa.PublicKey:
		return "EC_" + k.Curve.Params().Name
	case *rsa.PublicKey:
		return fmt.Sprintf("RSA_%d", k.N.BitLen())
	}
	return "unknown"
}

func signingAlgorithm(c *x509.Certificate) string {
	switch k := c.PublicKey.(type) {
	case *ecdsa.PublicKey:
		if k.Curve.Params().BitSize > 256 {
			return "SHA384WITHECDSA"
		}
		return "SHA256WITHECDSA"
	case *rsa.PublicKey:
		return "SHA256WITHRSA"
	}
	return ""
}

func pemOf(certs ...*x509.Certificate) string {
	var b strings.Builder
	for _, c := range certs {
		if c != nil {
			b.Write(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw}))
		}
	}
	return b.String()
}

// PEM renders certificates.
func PEM(certs ...*x509.Certificate) string { return pemOf(certs...) }

func parseOne(s string) (*x509.Certificate, error) {
	all, err := parseAll(s)
	if err != nil {
		return nil, err
	}
	if len(all) != 1 {
		return nil, fmt.Errorf("want one certificate, got %d", len(all))
	}
	return all[0], nil
}

func parseAll(s string) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	rest := []byte(s)
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			return out, nil
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
}
