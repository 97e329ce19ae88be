package verify

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"

	"github.com/certgate/certgate/internal/client"
)

// ServerSource reads a certgate server's public endpoints; none of them
// needs a token.
type ServerSource struct {
	Client *client.Client
}

var _ Source = ServerSource{}

func (s ServerSource) get(ctx context.Context, path string) ([]byte, error) {
	var raw []byte
	if _, err := s.Client.Do(ctx, "GET", path, nil, &raw, nil); err != nil {
		var ce *client.Error
		if errors.As(err, &ce) {
			return nil, fmt.Errorf("GET %s: %d %s", path, ce.Status, firstNonEmpty(ce.Body.Code, ce.Body.Message))
		}
		return nil, fmt.Errorf("GET %s: %w", path, err)
	}
	return raw, nil
}

func firstNonEmpty(v ...string) string {
	for _, s := range v {
		if s != "" {
			return s
		}
	}
	return ""
}

// TrustBundle implements Source.
func (s ServerSource) TrustBundle(ctx context.Context) ([]*x509.Certificate, error) {
	b, err := s.get(ctx, "/v1/trust-bundle")
	if err != nil {
		return nil, err
	}
	return ParsePEM(b)
}

// Chain implements Source.
func (s ServerSource) Chain(ctx context.Context, name string) ([]*x509.Certificate, error) {
	b, err := s.get(ctx, "/v1/cas/"+url.PathEscape(name)+"/chain")
	if err != nil {
		return nil, err
	}
	return ParsePEM(b)
}

// CRL implements Source.
func (s ServerSource) CRL(ctx context.Context, name string) ([]byte, error) {
	return s.get(ctx, "/v1/cas/"+url.PathEscape(name)+"/crl")
}
