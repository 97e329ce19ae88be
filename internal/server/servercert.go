package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"path/filepath"
	"time"

	"go.uber.org/zap"

	"github.com/certgate/certgate/internal/ca"
	"github.com/certgate/certgate/internal/issuance"
	"github.com/certgate/certgate/internal/policy"
)

// SelfPrincipal names certgate itself in the certificates table and events.
const SelfPrincipal = "certgate"

// renewServerCert issues the listener's certificate through the normal
// issuance path (so it is recorded and audited like any other) from the
// server CA, for localhost, 127.0.0.1, ::1 and server_names. The key lives
// only in memory.
func (s *Server) renewServerCert(ctx context.Context) error {
	s.renewMu.Lock()
	defer s.renewMu.Unlock()
	if c := s.tlsCert.Load(); c != nil && !s.needsRenewal(c.Leaf) {
		return nil
	}
	if s.tlsCert.Load() == nil {
		// A restart reuses the stored pair while it is fresh, so the server
		// can serve (stale CA chains, CRLs, the API) even when the CA
		// backend is unreachable at start.
		if c, err := tls.LoadX509KeyPair(s.CertPath(), s.keyPath()); err == nil && c.Leaf != nil &&
			s.Now().Before(c.Leaf.NotAfter) && s.coversNames(c.Leaf) {
			s.tlsCert.Store(&c)
			if !s.needsRenewal(c.Leaf) {
				return nil
			}
		}
	}
	if err := s.issueServerCert(ctx); err != nil {
		if c := s.tlsCert.Load(); c != nil && s.Now().Before(c.Leaf.NotAfter) {
			s.Log.Warn("renewing the server certificate failed; keeping the current one", zap.Error(err), zap.Time("not_after", c.Leaf.NotAfter))
			return nil
		}
		return err
	}
	return nil
}

func (s *Server) keyPath() string { return filepath.Join(s.Cfg.DataDir, "server.key") }

// serverNames are the names the listener's certificate must carry.
func (s *Server) serverNames() []string {
	sans := []string{"localhost", "127.0.0.1", "::1"}
	host, _, _ := net.SplitHostPort(s.Cfg.Listen)
	if ip := net.ParseIP(host); ip != nil && !ip.IsUnspecified() && !ip.IsLoopback() {
		sans = append(sans, host)
	}
	return append(sans, s.Cfg.ServerNames...)
}

func (s *Server) coversNames(leaf *x509.Certificate) bool {
	for _, n := range s.serverNames() {
		if leaf.VerifyHostname(n) != nil {
			return false
		}
	}
	return true
}

func (s *Server) issueServerCert(ctx context.Context) error {
	sans := s.serverNames()
	res, err := s.Issuer.Issue(ctx, issuance.Caller{Principal: SelfPrincipal, Policy: policy.AllowAll(), RequestID: "server-certificate"},
		issuance.Request{Profile: ca.ProfileServer, CommonName: "localhost", SANs: sans})
	if err != nil {
		return err
	}
	cert, err := tls.X509KeyPair([]byte(res.Certificate+res.Chain), []byte(res.PrivateKey))
	if err != nil {
		return fmt.Errorf("server key pair: %w", err)
	}
	s.tlsCert.Store(&cert)
	// The pair is kept (key 0600, like the CA keys beside it) so a restart
	// does not depend on the CA backend being reachable.
	if err := ca.WriteFileAtomic(s.keyPath(), []byte(res.PrivateKey), 0o600); err != nil {
		s.Log.Warn("storing the server key", zap.Error(err))
	} else if err := ca.WriteFileAtomic(s.CertPath(), []byte(res.Certificate+res.Chain), 0o644); err != nil {
		s.Log.Warn("storing the server certificate", zap.Error(err))
	}
	s.Log.Info("server certificate issued", zap.String("serial", res.Serial), zap.Time("not_after", res.NotAfter))
	return nil
}

// needsRenewal is true in the last third of the certificate's life.
func (s *Server) needsRenewal(leaf *x509.Certificate) bool {
	if leaf == nil {
		return true
	}
	life := leaf.NotAfter.Sub(leaf.NotBefore)
	return s.Now().After(leaf.NotAfter.Add(-life / 3))
}

func (s *Server) getCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	c := s.tlsCert.Load()
	if c == nil {
		return nil, fmt.Errorf("no server certificate yet")
	}
	if s.needsRenewal(c.Leaf) && s.renewMu.TryLock() {
		s.renewMu.Unlock()
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			if err := s.renewServerCert(ctx); err != nil {
				s.Log.Error("renewing server certificate", zap.Error(err))
			}
		}()
	}
	return c, nil
}

// ServerCertPEM returns the listener's current certificate chain as PEM.
func (s *Server) ServerCertPEM() []byte {
	c := s.tlsCert.Load()
	if c == nil {
		return nil
	}
	var out []byte
	for _, d := range c.Certificate {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: d})...)
	}
	return out
}
