package bench

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/certgate/certgate/internal/ca"
	"github.com/certgate/certgate/internal/client"
	"github.com/certgate/certgate/internal/issuance"
)

// startBaseline starts the plain-HTTP signer of --baseline on a loopback
// port and returns a client for it and a stop function. It is the yardstick
// issue targets are phrased against ("a plain-HTTP signer with no auth and
// no database"): the in-process signing work behind net/http, answering the
// same JSON as certgate (certificate, chain, root, bundle) so the checking
// client does the same work against both. Unlike certgate it does not
// x509.Verify the leaf before answering, and it signs every request with the
// profile it was started with.
func startBaseline(o Options) (*client.Client, func(), error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, nil, err
	}
	srv, err := baselineServer(o)
	if err != nil {
		_ = ln.Close()
		return nil, nil, err
	}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			// The load generator then sees connection errors and reports them.
			fmt.Fprintln(os.Stderr, "baseline signer:", err)
		}
	}()
	c, err := client.New("http://"+ln.Addr().String(), "", nil, nil)
	if err != nil {
		_ = srv.Close()
		return nil, nil, err
	}
	stop := func() {
		c.HTTP.CloseIdleConnections() // or Shutdown waits 5 s for never-used ones
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}
	return c, stop, nil
}

// ServeBaseline serves the plain-HTTP signer on ln until ctx ends, so it can
// run in a process of its own, as certgate does (`certgate bench
// --serve-baseline ADDR`, then `certgate bench --server http://ADDR`).
func ServeBaseline(ctx context.Context, ln net.Listener, o Options) error {
	if o.Profile == "" {
		o.Profile = ca.ProfileServer
	}
	srv, err := baselineServer(o)
	if err != nil {
		return err
	}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func baselineServer(o Options) (*http.Server, error) {
	cca, err := openCeilingCA()
	if err != nil {
		return nil, err
	}
	sign, err := cca.signer(o)
	if err != nil {
		return nil, err
	}
	chainPEM, rootPEM := certPEM(cca.issuer.Raw), certPEM(cca.root.Raw)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/trust-bundle", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte(rootPEM)) })
	mux.HandleFunc("POST /v1/certificates", func(w http.ResponseWriter, r *http.Request) {
		var req issuance.Request
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10)).Decode(&req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		s, err := sign(req.CSR, req.KeyType)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		leaf := certPEM(s.der)
		var keyPEM string
		if s.priv != nil {
			der, err := x509.MarshalPKCS8PrivateKey(s.priv)
			if err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			keyPEM = string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		enc := json.NewEncoder(w)
		enc.SetEscapeHTML(false)
		_ = enc.Encode(issuance.Result{Serial: s.tmpl.SerialNumber.Text(16), Profile: o.Profile, CA: "server-ca",
			CommonName: s.names.CommonName, SANs: s.names.DNS, NotBefore: s.tmpl.NotBefore, NotAfter: s.tmpl.NotAfter,
			Certificate: leaf, Chain: chainPEM, Root: rootPEM, Bundle: leaf + chainPEM + rootPEM, PrivateKey: keyPEM})
	})
	return &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}, nil
}
