// Package revocation is certgate's revocation side: the revoke operation
// (recorded in the database, and sent to AWS Private CA first when the backend
// implements ca.Revoker), the local CA's CRLs and OCSP responder, and the
// certificate events API.
//
// Freshness across replicas. Everything is built from the database, never
// from what one replica remembers. Each CA has a revocation stamp (count of
// revoked certificates and latest revocation time, one index range scan);
// a replica re-reads it at most once per CheckInterval (default 5 s), or at
// once after a revocation it made itself. A changed stamp regenerates the CRL
// at the next request and drops the CA's cached OCSP answers, so a revocation
// made on another replica is visible everywhere within CheckInterval.
//
// CRLs. One per local CA (client-ca, server-ca, istio-ca, and root for the
// Istio intermediates it issued), DER from x509.CreateRevocationList signed by
// that CA; thisUpdate now, nextUpdate now+24h (CRLValidity), regenerated when
// less than a third of that remains or when the stamp changed. The CRL number
// and the DER are kept in the crl_states table, so the number grows across
// regenerations, restarts and replicas (compare-and-swap on the number), and
// replicas serve the same CRL. Revoked certificates that have expired are
// left out (RFC 5280 §3.3 allows it; certgate's leaves live at most 7 days).
//
// OCSP (RFC 6960). GET (base64 DER request after /ocsp/{ca}/) and POST
// (application/ocsp-request). Answers are signed by the CA itself (no
// delegated responder), thisUpdate now, nextUpdate now+1h (OCSPValidity),
// and cached per (CA, serial, CertID hash) until half of that has passed, the
// serial is revoked here, or the CA's stamp changes. A malformed request gets
// the malformedRequest OCSP response with HTTP 200, as RFC 6960 Appendix A
// intends (the HTTP exchange worked; the OCSP layer reports the error); a
// request about another issuer gets unauthorized; a serial this CA never
// issued (or whose issuance is pending or failed) is unknown.
package revocation

import (
	"context"
	"crypto"
	"crypto/x509"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/certgate/certgate/internal/ca"
	"github.com/certgate/certgate/internal/metrics"
	"github.com/certgate/certgate/internal/store"
)

// Validity of what the service signs. They are constants on purpose: relying
// parties and the README need one answer, not a configuration matrix.
const (
	// CRLValidity is nextUpdate - thisUpdate of every CRL.
	CRLValidity = 24 * time.Hour
	// CRLRefreshBefore: a CRL is regenerated when less than this is left
	// before its nextUpdate (a third of its validity).
	CRLRefreshBefore = CRLValidity / 3
	// OCSPValidity is nextUpdate - thisUpdate of every OCSP answer.
	OCSPValidity = time.Hour
	// OCSPReuse is how long a signed OCSP answer is served from memory.
	OCSPReuse = OCSPValidity / 2
	// DefaultCheckInterval bounds how stale a replica's view of another
	// replica's revocations can be.
	DefaultCheckInterval = 5 * time.Second
	// maxOCSPCache bounds the OCSP cache (entries); beyond it the cache is
	// emptied. Unknown serials are never cached, so the bound cannot be
	// filled with made-up serials.
	maxOCSPCache = 100_000
)

// SignerSource gives a CA's certificate and key (ca.Local implements it).
type SignerSource interface {
	Signer(name string) (*x509.Certificate, crypto.Signer, bool)
}

// Options configure a Service.
type Options struct {
	Store *store.Store
	// Backend decides the mode: "aws-pca" redirects CRLs and declines OCSP;
	// a backend implementing ca.Revoker is asked to revoke first.
	Backend ca.Backend
	// Signers signs CRLs and OCSP answers; nil when the CA keys are not here.
	Signers SignerSource
	// CRLURLs are PCA's published CRL locations by CA name.
	CRLURLs       map[string]string
	Now           func() time.Time
	Log           *zap.Logger
	Metrics       *metrics.Metrics // optional
	CheckInterval time.Duration    // default DefaultCheckInterval
}

// Service is safe for concurrent use.
type Service struct {
	o       Options
	pca     bool
	revoker ca.Revoker
	cas     map[string]*caState

	ocspMu sync.RWMutex
	ocsp   map[ocspKey]*ocspEntry

	crlSigned   *prometheus.CounterVec
	ocspAnswers *prometheus.CounterVec
}

// caState is one CA's freshness bookkeeping and cached CRL.
type caState struct {
	name      string
	stampMu   sync.Mutex   // one stamp read per CA at a time
	stamp     atomic.Value // string; written under stampMu
	checkedAt atomic.Int64 // unix nanos of the last stamp read; 0: never
	gen       atomic.Uint64
	dirty     atomic.Bool // a revocation here: re-read the stamp now

	crlMu sync.Mutex // one CRL regeneration per CA at a time
	crl   atomic.Pointer[crlEntry]
}

// New builds a Service. It registers its metrics on o.Metrics when given.
func New(o Options) *Service {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Log == nil {
		o.Log = zap.NewNop()
	}
	if o.CheckInterval <= 0 {
		o.CheckInterval = DefaultCheckInterval
	}
	s := &Service{o: o, cas: map[string]*caState{}, ocsp: map[ocspKey]*ocspEntry{}}
	if o.Backend != nil {
		s.pca = o.Backend.Kind() == "aws-pca"
		s.revoker, _ = o.Backend.(ca.Revoker)
	}
	for _, n := range ca.Names {
		s.cas[n] = &caState{name: n}
	}
	s.crlSigned = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "certgate_crl_generated_total", Help: "CRLs signed by this replica, by CA."}, []string{"ca"})
	s.ocspAnswers = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "certgate_ocsp_responses_total", Help: "OCSP answers by CA and status (good, revoked, unknown, unauthorized, malformed, try_later, internal_error) and whether they came from the cache."},
		[]string{"ca", "status", "cached"})
	if o.Metrics != nil && o.Metrics.Registry != nil {
		_ = o.Metrics.Registry.Register(s.crlSigned)
		_ = o.Metrics.Registry.Register(s.ocspAnswers)
	}
	return s
}

// PCA reports whether the backend is AWS Private CA.
func (s *Service) PCA() bool { return s.pca }

func (s *Service) now() time.Time { return s.o.Now() }

// check returns the CA's revocation generation and stamp, re-reading the
// stamp when force is set, when a local revocation asked for it, or when the
// last read is older than the check interval. A changed stamp bumps the
// generation and drops the CA's cached OCSP answers.
func (s *Service) check(ctx context.Context, st *caState, force bool) (uint64, string, error) {
	due := func() bool {
		return force || st.dirty.Load() || st.checkedAt.Load() == 0 ||
			s.now().UnixNano()-st.checkedAt.Load() >= int64(s.o.CheckInterval)
	}
	if !due() {
		return st.gen.Load(), st.loadStamp(), nil
	}
	st.stampMu.Lock()
	defer st.stampMu.Unlock()
	if !force && !due() { // another request read it while we waited
		return st.gen.Load(), st.loadStamp(), nil
	}
	// Cleared before the read: a revocation committed after the read sets
	// it again, so it is never lost.
	st.dirty.Store(false)
	stamp, err := s.o.Store.RevocationStamp(ctx, st.name)
	if err != nil {
		st.dirty.Store(true)
		return st.gen.Load(), st.loadStamp(), err
	}
	if stamp != st.loadStamp() {
		st.stamp.Store(stamp)
		st.gen.Add(1)
		s.flushOCSP(st.name, "")
	}
	st.checkedAt.Store(s.now().UnixNano())
	return st.gen.Load(), stamp, nil
}

func (st *caState) loadStamp() string {
	v, _ := st.stamp.Load().(string)
	return v
}

// Revoked tells the caches that serial of caName was just revoked here: its
// OCSP answers are dropped now, and the next CRL or OCSP request re-reads
// the CA's stamp.
func (s *Service) Revoked(caName, serial string) {
	if st, ok := s.cas[caName]; ok {
		st.dirty.Store(true)
	}
	s.flushOCSP(caName, serial)
}

func (s *Service) signer(name string) (*x509.Certificate, crypto.Signer, bool) {
	if s.o.Signers == nil || s.pca {
		return nil, nil, false
	}
	return s.o.Signers.Signer(name)
}
