package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
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
	sans := []string{"localhost", "127.0.0.1", "::1"}
	host, _, _ := net.SplitHostPort(s.Cfg.Listen)
	if ip := net.ParseIP(host); ip != nil && !ip.IsUnspecified() && !ip.IsLoopback() {
		sans = append(sans, host)
	}
	sans = append(sans, s.Cfg.ServerNames...)
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
	// Only the public chain is written; the key never touches disk.
	_ = ca.WriteFileAtomic(s.CertPath(), []byte(res.Certificate+res.Chain), 0o644)
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
