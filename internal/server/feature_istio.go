package server

import (
	"context"
	"net/http"

	"github.com/certgate/certgate/internal/api"
	"github.com/certgate/certgate/internal/istio"
)

// Istio intermediate CAs: POST /v1/istio/intermediates.
func init() {
	features = append(features, func(_ context.Context, s *Server) error {
		h := &istio.Handler{Issuer: s.Issuer}
		s.Routes = append(s.Routes, func(a *api.API, mux *http.ServeMux) { h.Register(a, mux) })
		return nil
	})
}
