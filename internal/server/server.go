// Package server wires certgate together from its configuration: database,
// CA backend, CA cache, authentication, issuance, HTTP API and the TLS
// listener with a certificate from certgate's own server CA.
package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/certgate/certgate/internal/api"
	"github.com/certgate/certgate/internal/auth"
	"github.com/certgate/certgate/internal/ca"
	"github.com/certgate/certgate/internal/cacache"
	"github.com/certgate/certgate/internal/config"
	"github.com/certgate/certgate/internal/issuance"
	"github.com/certgate/certgate/internal/metrics"
	"github.com/certgate/certgate/internal/ratelimit"
	"github.com/certgate/certgate/internal/store"
)

// Server is a running certgate.
type Server struct {
	Cfg     *config.Config
	Log     *zap.Logger
	Metrics *metrics.Metrics
	Store   *store.Store
	Backend ca.Backend
	Local   *ca.Local // nil on PCA
	CAs     *cacache.Cache
	Auth    *auth.Authenticator
	Issuer  *issuance.Service
	API     *api.API
	Now     func() time.Time
	Token   string // bootstrap admin token ("" when disabled)
	// Routes lets optional features add handlers before the server starts.
	Routes []func(a *api.API, mux *http.ServeMux)
	// OnStart runs after the CA cache is filled and before the listener
	// accepts; OnShutdown runs after in-flight requests finished, before the
	// database closes. Features (public CRL/OCSP listener, reconciliation)
	// hook in here.
	OnStart    []func(ctx context.Context) error
	OnShutdown []func(ctx context.Context) error

	tlsCert  atomic.Pointer[tls.Certificate]
	renewMu  sync.Mutex
	httpSrv  *http.Server
	listener net.Listener
	draining atomic.Bool
	cancel   context.CancelFunc
	done     chan struct{}

	shutdownOnce sync.Once
	shutdownErr  error
}

// Options override parts of the wiring, for tests.
type Options struct {
	Now     func() time.Time
	Backend ca.Backend // replaces the configured backend
	Log     *zap.Logger
}

// New builds a server from cfg; nothing listens until Start.
func New(ctx context.Context, cfg *config.Config, o Options) (*Server, error) {
	s := &Server{Cfg: cfg, Log: o.Log, Now: o.Now, Metrics: metrics.New()}
	if s.Now == nil {
		s.Now = time.Now
	}
	if s.Log == nil {
		s.Log = zap.NewNop()
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	st, err := store.Open(ctx, store.Options{Driver: cfg.Database.Driver, DSN: cfg.Database.DSN, DataDir: cfg.DataDir,
		MaxOpenConns: cfg.Database.MaxOpenConns, Now: s.Now, WriteLinger: cfg.Database.WriteLinger.D()})
	if err != nil {
		return nil, err
	}
	s.Store = st
	s.Metrics.WatchWrites(st.WriteStats)
	if err := s.buildBackend(ctx, o); err != nil {
		st.Close()
		return nil, err
	}
	s.CAs = cacache.New(cacache.Options{Backend: s.Backend, Store: st, TTL: cfg.CACacheTTL.D(), RetryInterval: cfg.CACacheRetry.D(), WarnBefore: cfg.CAExpiryWarning.D(),
		Now: s.Now, Log: s.Log, Metrics: s.Metrics})
	if cfg.Auth.BootstrapAdmin {
		if s.Token, err = auth.LoadOrCreateBootstrapToken(cfg.DataDir); err != nil {
			st.Close()
			return nil, fmt.Errorf("bootstrap token: %w", err)
		}
	}
	if s.Auth, err = auth.New(cfg.Auth, s.Token); err != nil {
		st.Close()
		return nil, err
	}
	profiles := ca.DefaultProfiles(cfg.IstioValidity.D())
	if err := profiles.Validate(); err != nil {
		st.Close()
		return nil, err
	}
	s.Issuer = &issuance.Service{Backend: s.Backend, Store: st, Profiles: profiles, Log: s.Log, Metrics: s.Metrics, Now: s.Now, Gate: s.CAs}
	s.API = &api.API{Issuer: s.Issuer, Store: st, Auth: s.Auth, CAs: s.CAs, Log: s.Log, Metrics: s.Metrics,
		Limiter: ratelimit.New(cfg.Auth.RateLimit, cfg.Auth.RateLimitBurst), Backend: s.Backend.Kind(), Now: s.Now,
		Ready: []api.Readiness{
			func(ctx context.Context) (string, error) { return "database", st.Ping(ctx) },
			s.CAs.Ready,
		}}
	s.API.SetDraining(s.draining.Load)
	for _, f := range features {
		if err := f(ctx, s); err != nil {
			st.Close()
			return nil, err
		}
	}
	return s, nil
}

// features are optional parts of certgate (revocation, istio, …) that wire
// themselves in from their own file in this package, each with an init that
// appends here, so adding one touches no shared code.
var features []func(ctx context.Context, s *Server) error

func (s *Server) buildBackend(ctx context.Context, o Options) error {
	if o.Backend != nil {
		s.Backend = o.Backend
		s.Local, _ = o.Backend.(*ca.Local)
		return nil
	}
	switch s.Cfg.Backend {
	case "local":
		l, err := ca.OpenLocal(ca.LocalOptions{Dir: filepath.Join(s.Cfg.DataDir, "ca"), Now: s.Now, PublicURLs: s.publicURLs()})
		if err != nil {
			return err
		}
		s.Backend, s.Local = l, l
		return nil
	case "aws-pca":
		b, err := newPCABackend(ctx, s)
		if err != nil {
			return err
		}
		s.Backend = b
		return nil
	}
	return fmt.Errorf("unknown backend %q", s.Cfg.Backend)
}

// newPCABackend is set by the PCA wiring (pca.go in this package).
var newPCABackend = func(ctx context.Context, s *Server) (ca.Backend, error) {
	return nil, errors.New("backend aws-pca is not available in this build")
}

func (s *Server) publicURLs() func(string) (string, string) {
	base := s.Cfg.PublicURL
	if base == "" {
		return nil
	}
	for len(base) > 0 && base[len(base)-1] == '/' {
		base = base[:len(base)-1]
	}
	return func(caName string) (string, string) {
		return base + "/crl/" + caName + ".crl", base + "/ocsp/" + caName
	}
}

// Handler is the HTTP handler (for tests that serve it themselves).
func (s *Server) Handler() http.Handler {
	routes := s.Routes
	s.API.Extra = func(mux *http.ServeMux) {
		for _, r := range routes {
			r(s.API, mux)
		}
	}
	return s.API.Handler()
}

// TLSConfig is the listener's: TLS 1.2+, AEAD suites with forward secrecy,
// optional client certificates checked against the trust bundle.
func (s *Server) TLSConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		CipherSuites: []uint16{
			tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
			tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
			tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
		},
		GetCertificate: s.getCertificate,
		ClientAuth:     tls.VerifyClientCertIfGiven,
		ClientCAs:      s.clientCAs(),
	}
}

func (s *Server) clientCAs() *x509.CertPool {
	pool := x509.NewCertPool()
	if f := s.Cfg.Auth.ClientCAFile; f != "" {
		if b, err := os.ReadFile(f); err == nil {
			pool.AppendCertsFromPEM(b)
		} else {
			s.Log.Error("reading auth.client_ca_file", zap.Error(err))
		}
		return pool
	}
	for _, r := range s.CAs.Roots() {
		pool.AddCert(r)
	}
	return pool
}

// Start fills the CA cache, gets the server's own certificate and listens.
func (s *Server) Start(ctx context.Context) error {
	ctx, s.cancel = context.WithCancel(ctx)
	s.CAs.Start(ctx)
	if err := s.renewServerCert(ctx); err != nil {
		return fmt.Errorf("server certificate: %w", err)
	}
	for _, f := range s.OnStart {
		if err := f(ctx); err != nil {
			return err
		}
	}
	ln, err := net.Listen("tcp", s.Cfg.Listen)
	if err != nil {
		return err
	}
	s.listener = tls.NewListener(ln, s.TLSConfig())
	s.httpSrv = &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    32 << 10,
		ErrorLog:          zap.NewStdLog(s.Log.Named("http")),
	}
	s.done = make(chan struct{})
	go func() {
		defer close(s.done)
		if err := s.httpSrv.Serve(s.listener); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.Log.Error("serve", zap.Error(err))
		}
	}()
	s.Log.Info("certgate listening", zap.String("addr", s.Addr()), zap.String("backend", s.Backend.Kind()),
		zap.String("database", s.Store.Driver()), zap.String("data_dir", s.Cfg.DataDir))
	return nil
}

// Addr is the listening address.
func (s *Server) Addr() string {
	if s.listener == nil {
		return ""
	}
	return s.listener.Addr().String()
}

// Shutdown stops accepting, lets in-flight requests finish within ctx, then
// closes the database.
func (s *Server) Shutdown(ctx context.Context) error {
	// Idempotent: a second call (a test's clean-up after an explicit
	// shutdown, a second signal) returns the first call's result instead of
	// closing the database twice.
	s.shutdownOnce.Do(func() { s.shutdownErr = s.shutdown(ctx) })
	return s.shutdownErr
}

func (s *Server) shutdown(ctx context.Context) error {
	s.draining.Store(true)
	var err error
	if s.httpSrv != nil {
		err = s.httpSrv.Shutdown(ctx)
		<-s.done
	}
	for _, f := range s.OnShutdown {
		if ferr := f(ctx); err == nil {
			err = ferr
		}
	}
	if s.cancel != nil {
		s.cancel()
	}
	if cerr := s.Store.Close(); err == nil {
		err = cerr
	}
	return err
}

// CertPath is where the server's own certificate chain is written, for
// operators who want to inspect it.
func (s *Server) CertPath() string { return filepath.Join(s.Cfg.DataDir, "server.crt") }
