package api

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/certgate/certgate/internal/apierror"
	"github.com/certgate/certgate/internal/auth"
	"github.com/certgate/certgate/internal/ca"
	"github.com/certgate/certgate/internal/store"
)

type ctxKey struct{}

// requestInfo travels with the request so the access log line can name the
// principal, profile and serial that the handler learned.
type requestInfo struct {
	id        string
	route     string
	principal *auth.Principal
	profile   string
	serial    string
	err       *apierror.Error
}

func reqInfo(r *http.Request) *requestInfo {
	v, _ := r.Context().Value(ctxKey{}).(*requestInfo)
	return v
}

type statusWriter struct {
	http.ResponseWriter
	status int
	bytes  int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += n
	return n, err
}

func newRequestID() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// validRequestID accepts a caller's X-Request-ID only if it is short and
// plain, so it can go into logs and bodies unescaped.
func validRequestID(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// wrap gives every request an ID, a recovery from panics, a body limit, one
// access log line and metrics.
func (a *API) wrap(route string, h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		info := &requestInfo{route: route}
		if id := r.Header.Get("X-Request-ID"); validRequestID(id) {
			info.id = id
		} else {
			info.id = newRequestID()
		}
		r = r.WithContext(context.WithValue(r.Context(), ctxKey{}, info))
		sw := &statusWriter{ResponseWriter: w}
		sw.Header().Set("X-Request-ID", info.id)
		r.Body = http.MaxBytesReader(sw, r.Body, MaxRequestBytes)
		defer func() {
			if p := recover(); p != nil {
				a.Log.Error("panic", zap.String("request_id", info.id), zap.Any("panic", p), zap.ByteString("stack", debug.Stack()))
				if sw.status == 0 {
					a.writeError(sw, r, apierror.Internal(fmt.Errorf("panic: %v", p)))
				}
			}
			status := sw.status
			if status == 0 {
				status = http.StatusOK
			}
			elapsed := time.Since(start)
			a.Metrics.HTTPRequests.WithLabelValues(route, strconv.Itoa(status)).Inc()
			a.Metrics.HTTPDuration.WithLabelValues(route).Observe(elapsed.Seconds())
			fields := []zap.Field{
				zap.String("request_id", info.id), zap.String("method", r.Method), zap.String("route", route),
				zap.Int("status", status), zap.Duration("latency", elapsed), zap.String("remote", remoteIP(r)),
			}
			if info.principal != nil {
				fields = append(fields, zap.String("principal", info.principal.Name))
			}
			if info.profile != "" {
				fields = append(fields, zap.String("profile", info.profile))
			}
			if info.serial != "" {
				fields = append(fields, zap.String("serial", info.serial))
			}
			if info.err != nil {
				fields = append(fields, zap.String("error_code", info.err.Code))
				if info.err.Cause != nil {
					fields = append(fields, zap.String("cause", info.err.Cause.Error()))
				}
			}
			switch {
			case status >= 500:
				a.Log.Error("request", fields...)
			case route == "/healthz" || route == "/readyz" || route == "/metrics":
				a.Log.Debug("request", fields...)
			default:
				a.Log.Info("request", fields...)
			}
		}()
		h(sw, r)
	})
}

func remoteIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// authenticate resolves the caller from a verified client certificate or a
// bearer token; a request that offers a bad credential is refused even if it
// also offers a good one.
func (a *API) authenticate(r *http.Request) (*auth.Principal, error) {
	h := r.Header.Get("Authorization")
	if h != "" {
		scheme, tok, ok := strings.Cut(h, " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(tok) == "" {
			return nil, apierror.Unauthenticated("the Authorization header must be 'Bearer <token>'")
		}
		p, ok := a.Auth.FromBearer(strings.TrimSpace(tok))
		if !ok {
			return nil, apierror.Unauthenticated("invalid token")
		}
		return p, nil
	}
	if r.TLS != nil && len(r.TLS.VerifiedChains) > 0 {
		leaf := r.TLS.VerifiedChains[0][0]
		if p, ok := a.Auth.FromCertificate(leaf); ok {
			if err := a.notRevoked(r.Context(), leaf); err != nil {
				return nil, err
			}
			return p, nil
		}
		return nil, apierror.Unauthenticated("the client certificate is not mapped to any principal")
	}
	if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
		return nil, apierror.Unauthenticated("the client certificate does not chain to a trusted CA")
	}
	return nil, apierror.Unauthenticated("credentials required: send 'Authorization: Bearer <token>' or a client certificate")
}

// notRevoked refuses a client certificate that certgate issued and then
// revoked: it still chains to the root until it expires. The fingerprint
// check keeps a certificate from another CA with a colliding serial out.
func (a *API) notRevoked(ctx context.Context, leaf *x509.Certificate) error {
	if a.Store == nil {
		return nil
	}
	c, err := a.Store.GetBySerial(ctx, ca.FormatSerial(leaf.SerialNumber))
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return dbErr(err)
	}
	fp := sha256.Sum256(leaf.Raw)
	if c.Status == store.StatusRevoked && c.Fingerprint == hex.EncodeToString(fp[:]) {
		return apierror.Unauthenticated("the client certificate has been revoked")
	}
	return nil
}

// authed wraps a handler that needs a principal.
func (a *API) authed(route string, h func(http.ResponseWriter, *http.Request, *auth.Principal)) http.Handler {
	return a.wrap(route, func(w http.ResponseWriter, r *http.Request) {
		p, err := a.authenticate(r)
		if err != nil {
			w.Header().Set("WWW-Authenticate", `Bearer realm="certgate"`)
			a.writeError(w, r, err)
			return
		}
		reqInfo(r).principal = p
		if a.Limiter != nil {
			if ok, retry := a.Limiter.Allow(p.Name); !ok {
				a.Metrics.RateLimited.WithLabelValues("principal").Inc()
				e := apierror.New(http.StatusTooManyRequests, apierror.CodeRateLimited, "rate limit exceeded for principal %q", p.Name)
				e.Retryable, e.RetryAfter = true, retry
				a.writeError(w, r, e)
				return
			}
		}
		h(w, r, p)
	})
}

// bodyError turns a body read failure into 413 or 400.
func bodyError(err error) error {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return apierror.New(http.StatusRequestEntityTooLarge, apierror.CodeTooLarge, "the request body exceeds %d bytes", mbe.Limit)
	}
	return apierror.New(http.StatusBadRequest, apierror.CodeBadRequest, "reading the request body: %v", err)
}
