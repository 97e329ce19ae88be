package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/certgate/certgate/internal/revocation"
)

// Revocation, CRLs, OCSP and the events API (internal/revocation), plus the
// optional plain-HTTP public listener (public_listen) that serves only
// /crl/{ca}.crl and /ocsp/{ca}.
func init() { features = append(features, revocationFeature) }

type revocationRuntime struct {
	svc *revocation.Service
	mu  sync.Mutex
	srv *http.Server
	ln  net.Listener
}

// runtimes maps a Server to its revocation parts, for the accessors below.
var runtimes sync.Map // *Server → *revocationRuntime

func revocationFeature(ctx context.Context, s *Server) error {
	if err := s.Store.MigrateRevocation(ctx); err != nil {
		return err
	}
	var signers revocation.SignerSource
	if s.Local != nil {
		signers = s.Local
	} else if ss, ok := s.Backend.(revocation.SignerSource); ok {
		signers = ss // a wrapper around the local CA
	}
	rt := &revocationRuntime{svc: revocation.New(revocation.Options{
		Store: s.Store, Backend: s.Backend, Signers: signers, CRLURLs: s.Cfg.AWSPCA.CRLURLs,
		Now: s.Now, Log: s.Log.Named("revocation"), Metrics: s.Metrics,
	})}
	runtimes.Store(s, rt)
	s.Routes = append(s.Routes, rt.svc.Register)
	s.OnShutdown = append(s.OnShutdown, func(context.Context) error {
		runtimes.Delete(s)
		return nil
	})
	if s.Cfg.PublicListen == "" {
		return nil
	}
	s.OnStart = append(s.OnStart, func(ctx context.Context) error {
		ln, err := net.Listen("tcp", s.Cfg.PublicListen)
		if err != nil {
			return fmt.Errorf("public_listen %s: %w", s.Cfg.PublicListen, err)
		}
		srv := &http.Server{
			Handler:           rt.svc.PublicHandler(s.API),
			ReadHeaderTimeout: 5 * time.Second,
			ReadTimeout:       10 * time.Second,
			WriteTimeout:      30 * time.Second,
			IdleTimeout:       120 * time.Second,
			MaxHeaderBytes:    16 << 10,
			ErrorLog:          zap.NewStdLog(s.Log.Named("public-http")),
		}
		rt.mu.Lock()
		rt.srv, rt.ln = srv, ln
		rt.mu.Unlock()
		go func() {
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				s.Log.Error("public listener", zap.Error(err))
			}
		}()
		s.Log.Info("public CRL/OCSP listener (plain HTTP)", zap.String("addr", ln.Addr().String()))
		return nil
	})
	s.OnShutdown = append(s.OnShutdown, func(ctx context.Context) error {
		rt.mu.Lock()
		srv := rt.srv
		rt.srv = nil
		rt.mu.Unlock()
		if srv == nil {
			return nil
		}
		return srv.Shutdown(ctx)
	})
	return nil
}

func (s *Server) revocationRuntime() *revocationRuntime {
	v, ok := runtimes.Load(s)
	if !ok {
		return nil
	}
	return v.(*revocationRuntime)
}

// PublicAddr is the bound address of the plain-HTTP CRL/OCSP listener
// (public_listen), or "" when it is not configured or not started.
func (s *Server) PublicAddr() string {
	rt := s.revocationRuntime()
	if rt == nil {
		return ""
	}
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if rt.ln == nil || rt.srv == nil {
		return ""
	}
	return rt.ln.Addr().String()
}

// Revocation is the server's revocation service (CRLs, OCSP, revoke).
func (s *Server) Revocation() *revocation.Service {
	if rt := s.revocationRuntime(); rt != nil {
		return rt.svc
	}
	return nil
}
