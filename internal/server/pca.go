package server

import (
	"context"
	"crypto/x509"

	"github.com/certgate/certgate/internal/ca"
)

func init() {
	newPCABackend = func(ctx context.Context, s *Server) (ca.Backend, error) {
		p := s.Cfg.AWSPCA
		return ca.NewPCAClient(ctx, ca.PCAConfig{
			Region:   p.Region,
			Endpoint: p.Endpoint,
			ARNs: map[string]string{ca.Root: p.RootCAArn, ca.ClientCA: p.ClientCAArn,
				ca.ServerCA: p.ServerCAArn, ca.IstioCA: p.IstioCAArn},
			MaxRetries: p.MaxRetries, RetryDelay: p.RetryDelay.D(), MaxRetryDelay: p.MaxRetryDelay.D(),
			IssueTimeout: p.IssueTimeout.D(), Templates: p.Templates, SigningAlgorithms: p.SigningAlgorithms,
			RateLimits: p.RateLimits,
		}, s.Log.Named("pca"), s.Metrics)
	}
	features = append(features, func(_ context.Context, s *Server) error {
		// Issuance reads CA certificates from the cache, not from PCA.
		if pc, ok := s.Backend.(*ca.PCAClient); ok {
			pc.SetLookup(func(ctx context.Context, name string) (*x509.Certificate, error) {
				e, err := s.CAs.Get(ctx, name)
				if err != nil {
					return nil, err
				}
				return e.Certificate, nil
			})
		}
		return nil
	})
}
