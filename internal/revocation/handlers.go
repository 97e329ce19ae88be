package revocation

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"
	"golang.org/x/crypto/ocsp"

	"github.com/certgate/certgate/internal/api"
	"github.com/certgate/certgate/internal/apierror"
	"github.com/certgate/certgate/internal/auth"
	"github.com/certgate/certgate/internal/ca"
	"github.com/certgate/certgate/internal/policy"
	"github.com/certgate/certgate/internal/store"
)

// maxOCSPRequest bounds an OCSP request body; real ones are ~100 bytes.
const maxOCSPRequest = 8 << 10

// Register adds the revocation routes to the main (HTTPS) listener:
//
//	POST /v1/certificates/{serial}/revoke   revoke (operation revoke)
//	GET  /v1/events                         certificate events (operation read)
//	GET  /v1/cas/{name}/crl                 DER CRL, public
//	GET  /crl/{name}.crl                    the same, at the CRL DP path
//	GET  /ocsp/{ca}/{base64 request}        OCSP, public
//	POST /ocsp/{ca}                         OCSP, public
func (s *Service) Register(a *api.API, mux *http.ServeMux) {
	mux.Handle("POST /v1/certificates/{serial}/revoke", a.Authed("/v1/certificates/{serial}/revoke",
		func(w http.ResponseWriter, r *http.Request, p *auth.Principal) { s.handleRevoke(a, w, r, p) }))
	mux.Handle("GET /v1/events", a.Authed("/v1/events",
		func(w http.ResponseWriter, r *http.Request, p *auth.Principal) { s.handleEvents(a, w, r, p) }))
	mux.Handle("GET /v1/cas/{name}/crl", a.Wrap("/v1/cas/{name}/crl", func(w http.ResponseWriter, r *http.Request) {
		s.serveCRL(a, w, r, r.PathValue("name"))
	}))
	mux.Handle("GET /crl/{file}", a.Wrap("/crl/{file}", func(w http.ResponseWriter, r *http.Request) {
		s.serveCRLFile(a, w, r, r.PathValue("file"))
	}))
	ocspH := a.Wrap("/ocsp/{ca}", func(w http.ResponseWriter, r *http.Request) { s.serveOCSP(a, w, r) })
	mux.Handle("GET /ocsp/{ca}", ocspH)
	mux.Handle("GET /ocsp/{ca}/{req...}", ocspH)
	mux.Handle("POST /ocsp/{ca}", ocspH)
	mux.Handle("POST /ocsp/{ca}/{rest...}", ocspH)
}

// PublicHandler serves the plain-HTTP public listener: /crl/{name}.crl and
// /ocsp/{ca} only. It dispatches on the raw path itself rather than through
// http.ServeMux, whose path cleaning would redirect (and so corrupt) an
// unescaped base64 GET request containing "//".
func (s *Service) PublicHandler(a *api.API) http.Handler {
	crlH := a.Wrap("public:/crl/{file}", func(w http.ResponseWriter, r *http.Request) {
		file, _ := url.PathUnescape(strings.TrimPrefix(r.URL.EscapedPath(), "/crl/"))
		s.serveCRLFile(a, w, r, file)
	})
	ocspH := a.Wrap("public:/ocsp/{ca}", func(w http.ResponseWriter, r *http.Request) { s.serveOCSP(a, w, r) })
	other := a.Wrap("public:unmatched", func(w http.ResponseWriter, r *http.Request) {
		a.WriteError(w, r, apierror.NotFound("no route for %s %s; this listener serves only /crl/{ca}.crl and /ocsp/{ca}", r.Method, r.URL.Path))
	})
	methodNotAllowed := func(allow string) http.Handler {
		return a.Wrap("public:method", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Allow", allow)
			a.WriteError(w, r, apierror.New(http.StatusMethodNotAllowed, apierror.CodeMethodNotAllowed, "%s is not allowed here; use %s", r.Method, allow))
		})
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := r.URL.EscapedPath()
		switch {
		case strings.HasPrefix(p, "/crl/") && !strings.Contains(p[len("/crl/"):], "/"):
			if r.Method != http.MethodGet && r.Method != http.MethodHead {
				methodNotAllowed("GET, HEAD").ServeHTTP(w, r)
				return
			}
			crlH.ServeHTTP(w, r)
		case strings.HasPrefix(p, "/ocsp/") && len(p) > len("/ocsp/"):
			if r.Method != http.MethodGet && r.Method != http.MethodPost {
				methodNotAllowed("GET, POST").ServeHTTP(w, r)
				return
			}
			ocspH.ServeHTTP(w, r)
		default:
			other.ServeHTTP(w, r)
		}
	})
}

// ---- revoke ----

// RevokeRequest is the body of POST /v1/certificates/{serial}/revoke.
type RevokeRequest struct {
	Reason string `json:"reason"`
}

func (s *Service) handleRevoke(a *api.API, w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	c, err := a.LoadOwned(r, p, policy.OpRevoke)
	if err != nil {
		a.WriteError(w, r, err)
		return
	}
	api.SetLogFields(r, c.Profile, "")
	var req RevokeRequest
	body, err := io.ReadAll(r.Body)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			a.WriteError(w, r, apierror.New(http.StatusRequestEntityTooLarge, apierror.CodeTooLarge, "the request body exceeds %d bytes", mbe.Limit))
			return
		}
		a.WriteError(w, r, apierror.New(http.StatusBadRequest, apierror.CodeBadRequest, "reading the request body: %v", err))
		return
	}
	if len(bytes.TrimSpace(body)) > 0 {
		r.Body = io.NopCloser(bytes.NewReader(body))
		if err := api.DecodeJSON(r, &req); err != nil {
			a.WriteError(w, r, err)
			return
		}
	}
	reason, code, err := ParseReason(req.Reason)
	if err != nil {
		a.WriteError(w, r, err)
		return
	}
	serial := *c.Serial
	if err := notRevocable(c); err != nil {
		a.WriteError(w, r, err)
		return
	}
	details := map[string]string{"reason": reason, "profile": c.Profile}
	if s.revoker != nil {
		sn, ok := new(big.Int).SetString(serial, 16)
		if !ok {
			a.WriteError(w, r, apierror.Internal(fmt.Errorf("stored serial %q is not hex", serial)))
			return
		}
		if err := s.revoker.Revoke(r.Context(), c.CA, sn, code); err != nil {
			if !AlreadyProcessed(err) {
				s.o.Log.Warn("backend revocation failed", zap.String("serial", serial), zap.String("ca", c.CA), zap.Error(err))
				a.WriteError(w, r, err)
				return
			}
			// The CA already has it revoked (an earlier attempt whose
			// database write failed, or another replica): record it.
			details["backend"] = "already revoked"
		}
	}
	caller := api.Caller(r, p)
	at := s.now().UTC()
	ev := &store.Event{CA: c.CA, Type: store.EventRevoked, Time: at, Serial: serial, Principal: p.Name,
		RequestID: caller.RequestID, SourceAddr: caller.SourceAddr, Outcome: "success", Details: details}
	// A detached context: once the CA has revoked, the record must be
	// written even if the client goes away.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 15*time.Second)
	defer cancel()
	updated, err := s.o.Store.Revoke(ctx, serial, reason, at, ev)
	if errors.Is(err, store.ErrConflict) {
		cur, gerr := s.o.Store.GetBySerial(ctx, serial)
		if gerr == nil {
			if nerr := notRevocable(cur); nerr != nil {
				a.WriteError(w, r, nerr)
				return
			}
		}
		a.WriteError(w, r, apierror.Conflict("certificate %s changed while it was being revoked; fetch it and retry", serial))
		return
	}
	if err != nil {
		a.WriteError(w, r, api.DBError(err))
		return
	}
	s.Revoked(c.CA, serial)
	if s.o.Metrics != nil {
		s.o.Metrics.Revoked.WithLabelValues(c.CA, reason).Inc()
	}
	api.WriteJSON(w, http.StatusOK, api.View(updated, true))
}

// notRevocable explains why a certificate in its current state cannot be
// revoked (409), or returns nil for an issued one.
func notRevocable(c *store.Certificate) error {
	serial := ""
	if c.Serial != nil {
		serial = *c.Serial
	}
	switch c.Status {
	case store.StatusIssued:
		return nil
	case store.StatusRevoked:
		when := ""
		if c.RevokedAt != nil {
			when = " at " + c.RevokedAt.UTC().Format(time.RFC3339)
		}
		return apierror.Conflict("certificate %s is already revoked%s (reason %s)", serial, when, c.RevocationReason).
			WithDetail("status", store.StatusRevoked)
	case store.StatusPending:
		return apierror.Conflict("certificate %s is still being issued; only an issued certificate can be revoked", serial).
			WithDetail("status", store.StatusPending)
	default:
		return apierror.Conflict("certificate %s was never issued (status %s); there is nothing to revoke", serial, c.Status).
			WithDetail("status", c.Status)
	}
}

// AlreadyProcessed reports whether a backend revocation error says the CA had
// already revoked the certificate (PCA's RequestAlreadyProcessedException),
// which certgate treats as success for its own record.
func AlreadyProcessed(err error) bool {
	if err == nil {
		return false
	}
	var coded interface{ ErrorCode() string }
	if errors.As(err, &coded) && coded.ErrorCode() == "RequestAlreadyProcessedException" {
		return true
	}
	return strings.Contains(err.Error(), "RequestAlreadyProcessed")
}

// ---- CRL ----

func (s *Service) serveCRLFile(a *api.API, w http.ResponseWriter, r *http.Request, file string) {
	name, ok := strings.CutSuffix(file, ".crl")
	if !ok {
		a.WriteError(w, r, apierror.NotFound("no CRL %q: CRLs are at /crl/{ca}.crl", file))
		return
	}
	s.serveCRL(a, w, r, name)
}

func (s *Service) serveCRL(a *api.API, w http.ResponseWriter, r *http.Request, name string) {
	if !ca.KnownCA(name) {
		a.WriteError(w, r, apierror.NotFound("unknown CA %q (one of root, client-ca, server-ca, istio-ca)", name))
		return
	}
	if s.pca {
		if u := s.o.CRLURLs[name]; u != "" {
			http.Redirect(w, r, u, http.StatusFound)
			return
		}
		a.WriteError(w, r, apierror.NotFound("AWS Private CA publishes the CRL of %s to S3 itself; configure aws_pca.crl_urls.%s with its URL to have certgate redirect there", name, name))
		return
	}
	c, err := s.CRL(r.Context(), name)
	switch {
	case errors.Is(err, ErrNoSigner):
		a.WriteError(w, r, apierror.NotFound("no CRL for %s: the %s backend's keys are not held by certgate", name, a.Backend))
		return
	case err != nil:
		a.WriteError(w, r, apierror.Unavailable(apierror.CodeUnavailable, 2*time.Second, "the CRL of %s cannot be built now; retry shortly", name).WithCause(err))
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/pkix-crl")
	h.Set("ETag", fmt.Sprintf(`"%s-%d"`, name, c.Number))
	// Relying parties may cache until the next regeneration would happen at
	// the latest, but never past a minute: revocations show up quickly.
	h.Set("Cache-Control", "public, max-age=60")
	h.Set("Expires", c.NextUpdate.UTC().Format(http.TimeFormat))
	http.ServeContent(w, r, "", c.ThisUpdate, bytes.NewReader(c.DER))
}

// ---- OCSP ----

func (s *Service) serveOCSP(a *api.API, w http.ResponseWriter, r *http.Request) {
	rest := strings.TrimPrefix(r.URL.EscapedPath(), "/ocsp/")
	caEsc, reqPart, _ := strings.Cut(rest, "/")
	name, err := url.PathUnescape(caEsc)
	if err != nil || !ca.KnownCA(name) {
		a.WriteError(w, r, apierror.NotFound("unknown CA %q (one of root, client-ca, server-ca, istio-ca)", caEsc))
		return
	}
	if s.pca {
		a.WriteError(w, r, apierror.NotFound("AWS Private CA hosts OCSP itself when it is enabled in the CA's revocation configuration; certgate answers OCSP only for its local CA"))
		return
	}
	if _, _, ok := s.signer(name); !ok {
		a.WriteError(w, r, apierror.NotFound("no OCSP for %s: the %s backend's keys are not held by certgate", name, a.Backend))
		return
	}
	var der []byte
	switch r.Method {
	case http.MethodPost:
		der, err = io.ReadAll(io.LimitReader(r.Body, maxOCSPRequest+1))
		if err != nil || len(der) > maxOCSPRequest {
			der = nil
		}
	default:
		der = decodeGETRequest(reqPart)
	}
	var ans *OCSPAnswer
	if der == nil {
		ans = errorAnswer(ocsp.MalformedRequestErrorResponse, "malformed")
		s.ocspAnswers.WithLabelValues(name, ans.Status, "false").Inc()
	} else {
		ans = s.OCSP(r.Context(), name, der)
	}
	h := w.Header()
	h.Set("Content-Type", "application/ocsp-response")
	if r.Method == http.MethodGet && !ans.NextUpdate.IsZero() {
		// RFC 5019 §6: let HTTP caches keep a signed answer until shortly
		// before it would be replaced here.
		maxAge := int(time.Until(ans.NextUpdate) / time.Second)
		if reuse := int(OCSPReuse / time.Second); maxAge > reuse {
			maxAge = reuse
		}
		if maxAge < 0 {
			maxAge = 0
		}
		h.Set("Cache-Control", "public, no-transform, must-revalidate, max-age="+strconv.Itoa(maxAge))
		h.Set("Last-Modified", ans.ThisUpdate.UTC().Format(http.TimeFormat))
		h.Set("Expires", ans.NextUpdate.UTC().Format(http.TimeFormat))
	} else {
		h.Set("Cache-Control", "no-store")
	}
	h.Set("Content-Length", strconv.Itoa(len(ans.DER)))
	// Error answers too are 200: the HTTP exchange worked and the OCSP
	// responseStatus carries the error (RFC 6960 Appendix A).
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = w.Write(ans.DER)
	}
}

// decodeGETRequest reads the base64 request of a GET: URL-encoded as RFC
// 5019 asks, or raw (some clients skip the encoding); standard or URL-safe
// alphabet, padded or not. nil when it is not base64.
func decodeGETRequest(part string) []byte {
	if part == "" {
		return nil
	}
	if u, err := url.PathUnescape(part); err == nil {
		part = u
	}
	part = strings.TrimSpace(part)
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(part); err == nil && len(b) > 0 {
			return b
		}
	}
	return nil
}
