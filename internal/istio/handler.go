// Package istio is certgate's Istio support: POST /v1/istio/intermediates,
// which issues a cluster's intermediate CA, and the "cacerts" bundle —
// ca-cert.pem, ca-key.pem, root-cert.pem, cert-chain.pem and an optional
// Kubernetes Secret manifest — that istiod's plug-in CA reads.
package istio

import (
	"net/http"

	"github.com/certgate/certgate/internal/api"
	"github.com/certgate/certgate/internal/apierror"
	"github.com/certgate/certgate/internal/auth"
	"github.com/certgate/certgate/internal/ca"
	"github.com/certgate/certgate/internal/issuance"
)

// Route is the API path of intermediate issuance.
const Route = "/v1/istio/intermediates"

// Handler serves the Istio routes.
type Handler struct {
	Issuer *issuance.Service
}

// Register adds the routes to mux. Listing is GET
// /v1/certificates?profile=istio-intermediate; other methods here get a 405
// in the documented error shape saying so.
func (h *Handler) Register(a *api.API, mux *http.ServeMux) {
	mux.Handle("POST "+Route, a.Authed(Route, func(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
		h.create(a, w, r, p)
	}))
	mux.Handle(Route, a.Wrap(Route, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Allow", http.MethodPost)
		a.WriteError(w, r, apierror.New(http.StatusMethodNotAllowed, apierror.CodeMethodNotAllowed,
			"%s %s is not supported: POST issues an intermediate; list them with GET /v1/certificates?profile=%s",
			r.Method, Route, ca.ProfileIstioIntermediate))
	}))
}

func (h *Handler) create(a *api.API, w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	var req issuance.IntermediateRequest
	if err := api.DecodeJSON(r, &req); err != nil {
		a.WriteError(w, r, err)
		return
	}
	if len(req.CSR) > api.MaxCSRBytes {
		a.WriteError(w, r, apierror.New(http.StatusRequestEntityTooLarge, apierror.CodeTooLarge, "the CSR exceeds %d bytes", api.MaxCSRBytes).WithDetail("csr", "too large"))
		return
	}
	if k := r.Header.Get("Idempotency-Key"); len(k) > 255 {
		a.WriteError(w, r, apierror.Field("Idempotency-Key", "at most 255 characters"))
		return
	}
	api.SetLogFields(r, ca.ProfileIstioIntermediate, "")
	res, err := h.Issuer.IssueIntermediate(r.Context(), api.Caller(r, p), req)
	if err != nil {
		a.WriteError(w, r, err)
		return
	}
	api.SetLogFields(r, "", res.Serial)
	w.Header().Set("Location", "/v1/certificates/"+res.Serial)
	// The body may hold a CA private key: no cache may keep it.
	w.Header().Set("Cache-Control", "no-store")
	if res.Replayed {
		w.Header().Set("Idempotent-Replayed", "true")
	}
	api.WriteJSON(w, http.StatusCreated, res)
}
