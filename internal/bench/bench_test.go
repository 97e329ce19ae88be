package bench

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/certgate/certgate/internal/client"
	"github.com/certgate/certgate/internal/servertest"
	"github.com/certgate/certgate/internal/store"
)

var ctx = context.Background()

func sane(t *testing.T, rep *Report, mode string, want int64) {
	t.Helper()
	if rep.Mode != mode || rep.Requests != want || rep.Errors != 0 {
		t.Fatalf("mode %s, %d requests, %d errors (first: %s); want %s, %d, 0", rep.Mode, rep.Requests, rep.Errors, rep.FirstError, mode, want)
	}
	if !(rep.RPS > 0 && rep.P50ms > 0 && rep.P50ms <= rep.P90ms && rep.P90ms <= rep.P99ms && rep.P99ms <= rep.Maxms) {
		t.Fatalf("figures out of order: %+v", rep)
	}
}

func TestRunAgainstAServer(t *testing.T) {
	env := servertest.Start(t)
	// Connections the transport dialled but never used would hold the
	// server's shutdown for 5 s (net/http treats them as busy until then).
	t.Cleanup(env.Client.HTTP.CloseIdleConnections)
	rep, err := Run(ctx, env.Client, Options{Concurrency: 4, Count: 24, CSRPool: 6})
	if err != nil {
		t.Fatal(err)
	}
	sane(t, rep, "server", 24)
	rep, err = Run(ctx, env.Client, Options{Concurrency: 2, Count: 6, ServerKeys: true, Profile: "client"})
	if err != nil {
		t.Fatal(err)
	}
	sane(t, rep, "server", 6)
	// Every request withdrew the write it announced once it was written.
	if n := env.Srv.Store.Announced(); n != 0 {
		t.Fatalf("%d announced writes outstanding after the runs", n)
	}
	// Every request reached the server and was recorded there.
	var n int64
	if err := env.Srv.Store.DB().Model(&store.Certificate{}).Where("status = ? AND common_name LIKE ?", store.StatusIssued, "bench-%").Count(&n).Error; err != nil || n != 30 {
		t.Fatalf("%d issued rows (%v), want 30", n, err)
	}
}

func TestInProcessAndBaseline(t *testing.T) {
	for _, o := range []Options{
		{InProcess: true, Count: 16, Concurrency: 4},
		{InProcess: true, Count: 4, ServerKeys: true},
		{Baseline: true, Count: 16, Concurrency: 4},
		{Baseline: true, Count: 4, ServerKeys: true},
	} {
		mode := "in-process"
		if o.Baseline {
			mode = "plain-http-baseline"
		}
		t.Run(mode, func(t *testing.T) {
			rep, err := Run(ctx, nil, o)
			if err != nil {
				t.Fatal(err)
			}
			sane(t, rep, mode, int64(o.Count))
		})
	}
}

// issuedBy signs a certificate for pub with cca and returns the response the
// checks read.
func issuedBy(t *testing.T, cca *ceilingCA, csrPEM string) issued {
	t.Helper()
	sign, err := cca.signer(Options{Profile: "server"})
	if err != nil {
		t.Fatal(err)
	}
	s, err := sign(csrPEM, "")
	if err != nil {
		t.Fatal(err)
	}
	return issued{Certificate: certPEM(s.der), Chain: certPEM(cca.issuer.Raw)}
}

func keyPEM(t *testing.T, k *ecdsa.PrivateKey) string {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
}

func TestCheckRefusesWrongCertificates(t *testing.T) {
	ours, err := openCeilingCA()
	if err != nil {
		t.Fatal(err)
	}
	theirs, err := openCeilingCA()
	if err != nil {
		t.Fatal(err)
	}
	pool, err := pregenerate(2, "")
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ours.root)
	good := issuedBy(t, ours, pool[0].csrPEM)
	foreign := issuedBy(t, theirs, pool[0].csrPEM)
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	for _, tc := range []struct {
		name string
		res  issued
		pub  any
		want string
	}{
		{"good", good, pool[0].pub, ""},
		{"another key", good, pool[1].pub, "not the request's"},
		{"server key: another private key", issued{Certificate: good.Certificate, Chain: good.Chain, PrivateKey: keyPEM(t, other)}, nil, "not the request's"},
		{"server key: garbage private key", issued{Certificate: good.Certificate, Chain: good.Chain, PrivateKey: "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"}, nil, ""},
		{"another hierarchy", foreign, pool[0].pub, "chain"},
		{"our leaf, their chain", issued{Certificate: good.Certificate, Chain: foreign.Chain}, pool[0].pub, "chain"},
		{"their leaf, our chain", issued{Certificate: foreign.Certificate, Chain: good.Chain}, pool[0].pub, "chain"},
		{"no certificate", issued{Chain: good.Chain}, pool[0].pub, "no certificate"},
		{"garbage", issued{Certificate: strings.Replace(good.Certificate, "MII", "AAA", 1), Chain: good.Chain}, pool[0].pub, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := check(&tc.res, tc.pub, &anchorCache{roots: roots})
			switch {
			case tc.name == "good" && err != nil:
				t.Fatalf("a good certificate failed: %v", err)
			case tc.name != "good" && err == nil:
				t.Fatal("accepted")
			case tc.want != "" && err != nil && !strings.Contains(err.Error(), tc.want):
				t.Fatalf("error %q, want it to mention %q", err, tc.want)
			}
		})
	}
}

// A server that answers with certificates for the wrong key is counted as
// errors, not throughput.
func TestRunCountsBadAnswersAsErrors(t *testing.T) {
	cca, err := openCeilingCA()
	if err != nil {
		t.Fatal(err)
	}
	stranger, err := pregenerate(1, "")
	if err != nil {
		t.Fatal(err)
	}
	wrong := issuedBy(t, cca, stranger[0].csrPEM)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/trust-bundle" {
			_, _ = w.Write([]byte(certPEM(cca.root.Raw)))
			return
		}
		w.WriteHeader(http.StatusCreated)
		_ = json.NewEncoder(w).Encode(wrong)
	}))
	defer srv.Close()
	c, err := client.New(srv.URL, "", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := Run(ctx, c, Options{Concurrency: 2, Count: 10, CSRPool: 3})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Requests != 0 || rep.Errors != 10 || !strings.Contains(rep.FirstError, "not the request's") {
		t.Fatalf("%d requests, %d errors, first %q; want 0, 10, a key mismatch", rep.Requests, rep.Errors, rep.FirstError)
	}
}
