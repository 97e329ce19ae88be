package api

import (
	"crypto/x509"
	"net/http"
	"time"

	"github.com/certgate/certgate/internal/apierror"
	"github.com/certgate/certgate/internal/auth"
	"github.com/certgate/certgate/internal/ca"
	"github.com/certgate/certgate/internal/cacache"
	"github.com/certgate/certgate/internal/policy"
	"github.com/certgate/certgate/internal/store"
)

// CAView is one CA in GET /v1/cas.
type CAView struct {
	Name             string    `json:"name"`
	Backend          string    `json:"backend"`
	ARN              string    `json:"arn,omitempty"`
	Status           string    `json:"status"`
	UsageMode        string    `json:"usage_mode,omitempty"`
	KeyAlgorithm     string    `json:"key_algorithm"`
	SigningAlgorithm string    `json:"signing_algorithm"`
	Subject          string    `json:"subject"`
	Serial           string    `json:"serial"`
	Fingerprint      string    `json:"fingerprint_sha256"`
	NotBefore        time.Time `json:"not_before"`
	NotAfter         time.Time `json:"not_after"`
	DaysToExpiry     int       `json:"days_to_expiry"`
	FetchedAt        time.Time `json:"fetched_at"`
	Stale            bool      `json:"stale"`
	ChainValid       bool      `json:"chain_valid"`
	ChainError       string    `json:"chain_error,omitempty"`
	// FetchError is the last failed refresh, if the latest attempt failed.
	FetchError string `json:"fetch_error,omitempty"`
	// Warning is the entry's /readyz warning: broken chain, stale data,
	// failed refresh, expired or expiring within the warning period.
	Warning string `json:"warning,omitempty"`
}

func (a *API) caView(e *cacache.Entry) CAView {
	v := CAView{Name: e.Name, Backend: e.Backend, ARN: e.ARN, Status: e.Status, UsageMode: e.UsageMode,
		KeyAlgorithm: e.KeyAlgorithm, SigningAlgorithm: e.SigningAlgorithm, Subject: e.Certificate.Subject.String(),
		NotBefore: e.Certificate.NotBefore.UTC(), NotAfter: e.Certificate.NotAfter.UTC(),
		DaysToExpiry: int(e.Certificate.NotAfter.Sub(a.Now()) / ca.Day), FetchedAt: e.FetchedAt.UTC(),
		Stale: e.Stale, ChainValid: e.ChainErr == nil, Serial: ca.FormatSerial(e.Certificate.SerialNumber),
		Fingerprint: e.Fingerprint(), Warning: a.CAs.Warning(e)}
	if e.ChainErr != nil {
		v.ChainError = e.ChainErr.Error()
	}
	if e.FetchErr != nil {
		v.FetchError = e.FetchErr.Error()
	}
	return v
}

func (a *API) listCAs(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	if !p.Policy.Can(policy.OpRead) {
		a.writeError(w, r, apierror.Forbidden("principal %q may not read CAs", p.Name))
		return
	}
	out := []CAView{}
	for _, e := range a.CAs.All() {
		out = append(out, a.caView(e))
	}
	writeJSON(w, http.StatusOK, map[string]any{"cas": out})
}

// caChain serves the CA first, then its issuers up to the root, as PEM. It is
// public like the trust bundle: relying parties need it without a token.
func (a *API) caChain(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if !ca.KnownCA(name) {
		a.writeError(w, r, apierror.NotFound("unknown CA %q (one of root, client-ca, server-ca, istio-ca)", name))
		return
	}
	e, err := a.CAs.Get(r.Context(), name)
	if err != nil {
		a.writeError(w, r, apierror.Unavailable(apierror.CodeCAUnavailable, 5*time.Second, "CA %s is not available", name).WithCause(err))
		return
	}
	if e.ChainErr != nil {
		// A chain that does not verify is not handed to relying parties.
		a.writeError(w, r, apierror.New(http.StatusServiceUnavailable, cacache.CodeCAChainInvalid,
			"the chain of CA %s does not verify to the trust bundle: %v", name, e.ChainErr))
		return
	}
	if e.Stale {
		w.Header().Set("Warning", `110 certgate "stale: the CA backend is unreachable"`)
	}
	w.Header().Set("Content-Type", "application/x-pem-file")
	_, _ = w.Write([]byte(cacache.PEM(append([]*x509.Certificate{e.Certificate}, e.Chain...)...)))
}

func (a *API) refreshCAs(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	if !p.Policy.Can(policy.OpAdmin) {
		a.writeError(w, r, apierror.Forbidden("principal %q may not refresh CAs (needs admin)", p.Name))
		return
	}
	err := a.CAs.Refresh(r.Context())
	info := reqInfo(r)
	outcome := "success"
	details := map[string]string{"action": "ca_refresh"}
	if err != nil {
		outcome = "failure"
		details["error"] = err.Error()
	}
	_ = a.Store.AddEvent(r.Context(), &store.Event{CA: "", Type: store.EventAdmin, Principal: p.Name, RequestID: info.id,
		SourceAddr: remoteIP(r), Outcome: outcome, Details: details})
	if err != nil {
		ae := apierror.New(http.StatusBadGateway, apierror.CodeUpstream, "refreshing CAs failed for some CAs; the others were refreshed")
		ae.Retryable, ae.RetryAfter = true, 5*time.Second
		for _, n := range ca.Names {
			switch e := a.CAs.Peek(n); {
			case e == nil:
				ae = ae.WithDetail(n, "not loaded")
			case e.FetchErr != nil:
				ae = ae.WithDetail(n, e.FetchErr.Error())
			}
		}
		a.writeError(w, r, ae.WithCause(err))
		return
	}
	out := []CAView{}
	for _, e := range a.CAs.All() {
		out = append(out, a.caView(e))
	}
	writeJSON(w, http.StatusOK, map[string]any{"cas": out})
}
