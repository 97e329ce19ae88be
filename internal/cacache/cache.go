// Package cacache keeps every configured CA's certificate, chain and status
// in memory, refreshed from the backend every TTL, copied to the database so
// a restart without the backend still serves the last known chains, and
// checked: a CA whose chain does not verify, or that is expired, disabled or
// not yet valid, is not used for issuance.
package cacache

import (
	"context"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"sort"
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

// Entry is one CA as last seen.
type Entry struct {
	ca.Info
	KeyAlgorithm     string
	SigningAlgorithm string
	FetchedAt        time.Time
	// Stale is set when the entry came from the database or the last refresh
	// failed: the data is the last known, not the current.
	Stale    bool
	ChainErr error // the chain does not verify to the trust bundle
	FetchErr error // the last refresh failed
}

// Store is the database side of the cache.
type Store interface {
	UpsertCA(ctx context.Context, c *store.CertificateAuthority) error
	ListCAs(ctx context.Context) ([]store.CertificateAuthority, error)
	AddEvent(ctx context.Context, ev *store.Event) error
}

// Options configure a Cache.
type Options struct {
	Backend     ca.Backend
	Store       Store
	TTL         time.Duration
	WarnBefore  time.Duration
	Now         func() time.Time
	Log         *zap.Logger
	Metrics     *metrics.Metrics
	Names       []string // CA roles to track; default ca.Names
	FetchTimout time.Duration
}

// Cache is safe for concurrent use.
type Cache struct {
	o       Options
	sf      singleflight.Group
	mu      sync.RWMutex
	entries map[string]*Entry
}

// New builds an empty cache; call Load and Refresh (or Start) to fill it.
func New(o Options) *Cache {
	if o.TTL <= 0 {
		o.TTL = time.Hour
	}
	if o.WarnBefore <= 0 {
		o.WarnBefore = 30 * ca.Day
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if len(o.Names) == 0 {
		o.Names = ca.Names
	}
	if o.FetchTimout <= 0 {
		o.FetchTimout = 10 * time.Second
	}
	return &Cache{o: o, entries: map[string]*Entry{}}
}

// Start loads the database copy, refreshes every CA once, and keeps
// refreshing every TTL until ctx ends. A backend that is down at start is
// logged, not fatal: the database copy serves, marked stale.
func (c *Cache) Start(ctx context.Context) {
	if err := c.LoadStored(ctx); err != nil {
		c.o.Log.Warn("loading stored CA state", zap.Error(err))
	}
	if err := c.Refresh(ctx); err != nil {
		c.o.Log.Warn("initial CA refresh", zap.Error(err))
	}
	go func() {
		t := time.NewTicker(c.o.TTL)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if err := c.Refresh(ctx); err != nil {
					c.o.Log.Warn("background CA refresh", zap.Error(err))
				}
			}
		}
	}()
}

// LoadStored fills the cache from the database, marked stale.
func (c *Cache) LoadStored(ctx context.Context) error {
	rows, err := c.o.Store.ListCAs(ctx)
	if err != nil {
		return err
	}
	for _, r := range rows {
		cert, err := parseOne(r.CertificatePEM)
		if err != nil {
			continue
		}
		chain, _ := parseAll(r.ChainPEM)
		e := &Entry{Info: ca.Info{Name: r.Name, Backend: r.Backend, ARN: r.ARN, Status: r.Status, UsageMode: r.UsageMode, Certificate: cert, Chain: chain},
			KeyAlgorithm: r.KeyAlgorithm, SigningAlgorithm: r.SigningAlgorithm, FetchedAt: r.FetchedAt, Stale: true}
		c.mu.Lock()
		if _, have := c.entries[r.Name]; !have {
			c.entries[r.Name] = e
		}
		c.mu.Unlock()
	}
	c.validateAll()
	return nil
}

// Refresh fetches every CA now (the root first, so chains verify against
// the freshest root).
func (c *Cache) Refresh(ctx context.Context) error {
	var errs []error
	for _, name := range c.o.Names {
		if _, err := c.fetch(ctx, name); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
		}
	}
	c.validateAll()
	return errors.Join(errs...)
}

// Get returns a CA, fetching it if missing or older than the TTL. Concurrent
// callers share one backend call.
func (c *Cache) Get(ctx context.Context, name string) (*Entry, error) {
	c.mu.RLock()
	e := c.entries[name]
	c.mu.RUnlock()
	if e != nil && !e.Stale && c.o.Now().Sub(e.FetchedAt) < c.o.TTL {
		return e, nil
	}
	fresh, err := c.fetch(ctx, name)
	if err == nil {
		c.validateAll()
		c.mu.RLock()
		fresh = c.entries[name]
		c.mu.RUnlock()
		return fresh, nil
	}
	if e != nil {
		return c.markStale(name, err), nil
	}
	return nil, err
}

func (c *Cache) markStale(name string, err error) *Entry {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.entries[name]
	if e == nil {
		return nil
	}
	cp := *e
	cp.Stale, cp.FetchErr = true, err
	c.entries[name] = &cp
	return &cp
}

// fetch asks the backend once for name, however many callers wait.
func (c *Cache) fetch(ctx context.Context, name string) (*Entry, error) {
	v, err, _ := c.sf.Do(name, func() (any, error) {
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.o.FetchTimout)
		defer cancel()
		info, err := c.o.Backend.Describe(fctx, name)
		if err != nil {
			c.markStale(name, err)
			return nil, err
		}
		e := &Entry{Info: *info, FetchedAt: c.o.Now(), KeyAlgorithm: keyAlgorithm(info.Certificate), SigningAlgorithm: signingAlgorithm(info.Certificate)}
		c.mu.Lock()
		c.entries[name] = e
		c.mu.Unlock()
		c.persist(fctx, e)
		return e, nil
	})
	if err != nil {
		return nil, err
	}
	return v.(*Entry), nil
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
	ev := &store.Event{CA: e.Name, Type: store.EventCARefreshed, Outcome: "success", Principal: "certgate",
		Details: map[string]string{"status": e.Status, "not_after": e.Certificate.NotAfter.UTC().Format(time.RFC3339)}}
	if err := c.o.Store.AddEvent(ctx, ev); err != nil {
		c.o.Log.Warn("CA refresh event", zap.Error(err))
	}
}

// validateAll checks every chain against the trust bundle and raises expiry
// warnings; results land in each entry, the logs and the metrics.
func (c *Cache) validateAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	root := c.entries[ca.Root]
	now := c.o.Now()
	for name, e := range c.entries {
		var err error
		switch {
		case root == nil || root.Certificate == nil:
			err = errors.New("no root CA certificate to verify against")
		case name == ca.Root:
			err = e.Certificate.CheckSignatureFrom(e.Certificate)
			if err == nil && len(e.Chain) != 0 {
				err = errors.New("the root CA has a chain above it")
			}
		default:
			err = verifyCA(e, root.Certificate)
		}
		if (err == nil) != (e.ChainErr == nil) {
			cp := *e
			cp.ChainErr = err
			c.entries[name] = &cp
			e = &cp
		}
		valid := 1.0
		if err != nil {
			valid = 0
			c.o.Log.Error("CA chain does not verify", zap.String("ca", name), zap.Error(err))
		}
		if c.o.Metrics != nil {
			c.o.Metrics.CAChainValid.WithLabelValues(name).Set(valid)
			c.o.Metrics.CAExpiry.WithLabelValues(name).Set(e.Certificate.NotAfter.Sub(now).Seconds())
		}
		if left := e.Certificate.NotAfter.Sub(now); left < c.o.WarnBefore {
			c.o.Log.Warn("CA certificate expires soon", zap.String("ca", name), zap.Time("not_after", e.Certificate.NotAfter), zap.Duration("left", left))
		}
	}
}

func verifyCA(e *Entry, root *x509.Certificate) error {
	if len(e.Chain) == 0 {
		return errors.New("no chain to the root")
	}
	top := e.Chain[len(e.Chain)-1]
	if !top.Equal(root) {
		return errors.New("the chain ends in a different root than the trust bundle's")
	}
	roots := x509.NewCertPool()
	roots.AddCert(root)
	inter := x509.NewCertPool()
	for _, x := range e.Chain[:len(e.Chain)-1] {
		inter.AddCert(x)
	}
	at := e.Certificate.NotBefore.Add(time.Second)
	if _, err := e.Certificate.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: at, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return err
	}
	if !e.Certificate.IsCA {
		return errors.New("the CA certificate is not a CA (basicConstraints CA:FALSE)")
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
		return nil, apierror.Unavailable(apierror.CodeCAUnavailable, 0, "CA %s is not used: its chain does not verify to the trust bundle", name).WithCause(e.ChainErr)
	case e.Stale && c.o.Backend.Kind() != "local":
		return nil, apierror.Unavailable(apierror.CodeCAUnavailable, 5*time.Second, "CA %s is unreachable; serving its last known chain only", name).WithCause(e.FetchErr)
	case now.After(e.Certificate.NotAfter):
		return nil, apierror.Unavailable("ca_expired", 0, "CA %s expired at %s", name, e.Certificate.NotAfter.UTC().Format(time.RFC3339))
	case now.Before(e.Certificate.NotBefore):
		return nil, apierror.Unavailable("ca_not_yet_valid", 0, "CA %s is not valid until %s", name, e.Certificate.NotBefore.UTC().Format(time.RFC3339))
	case e.Status != "" && e.Status != "ACTIVE" && e.Status != "unknown":
		return nil, apierror.Unavailable("ca_not_active", 0, "CA %s is %s", name, e.Status)
	}
	return e.Certificate, nil
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

// Warnings are the /readyz details: expiring CAs, broken chains, stale data.
func (c *Cache) Warnings() map[string]string {
	out := map[string]string{}
	now := c.o.Now()
	for _, e := range c.All() {
		var w []string
		if e.ChainErr != nil {
			w = append(w, "chain does not verify: "+e.ChainErr.Error())
		}
		if e.Stale {
			w = append(w, "stale: last fetched "+e.FetchedAt.UTC().Format(time.RFC3339))
		}
		if left := e.Certificate.NotAfter.Sub(now); left < 0 {
			w = append(w, "expired")
		} else if left < c.o.WarnBefore {
			w = append(w, fmt.Sprintf("expires in %d days (%s)", int(left/ca.Day), e.Certificate.NotAfter.UTC().Format(time.RFC3339)))
		}
		if len(w) > 0 {
			out[e.Name] = strings.Join(w, "; ")
		}
	}
	return out
}

// Ready fails when a CA cannot issue (broken chain or missing).
func (c *Cache) Ready(_ context.Context) (string, error) {
	var bad []string
	for _, n := range c.o.Names {
		e := c.Peek(n)
		switch {
		case e == nil:
			bad = append(bad, n+": not loaded")
		case e.ChainErr != nil:
			bad = append(bad, n+": chain does not verify")
		}
	}
	sort.Strings(bad)
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

// ErrUnknownCA is returned for a name outside the configured roles.
var ErrUnknownCA = apierror.New(http.StatusNotFound, apierror.CodeNotFound, "unknown CA")
