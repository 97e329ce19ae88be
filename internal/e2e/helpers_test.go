// Package e2e holds certgate's acceptance tests: whole servers started by
// servertest (real TLS on loopback, real database, local CA), driven over
// HTTP, with every certificate checked by parsing it.
package e2e

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/certgate/certgate/internal/servertest"
	"github.com/certgate/certgate/internal/store"
)

// ---- keys: generated once per test binary (RSA generation is slow) ----

var (
	keyOnce  sync.Once
	keyP256  *ecdsa.PrivateKey
	keyP384  *ecdsa.PrivateKey
	keyP224  *ecdsa.PrivateKey
	keyP521  *ecdsa.PrivateKey
	keyEd    ed25519.PrivateKey
	rsaOnce  sync.Once
	keyRSA   *rsa.PrivateKey
	rsa1Once sync.Once
	keyRSA1k *rsa.PrivateKey
)

func ecKeys(t testing.TB) {
	t.Helper()
	keyOnce.Do(func() {
		gen := func(c elliptic.Curve) *ecdsa.PrivateKey {
			k, err := ecdsa.GenerateKey(c, rand.Reader)
			if err != nil {
				panic(err)
			}
			return k
		}
		keyP256, keyP384, keyP224, keyP521 = gen(elliptic.P256()), gen(elliptic.P384()), gen(elliptic.P224()), gen(elliptic.P521())
		var err error
		if _, keyEd, err = ed25519.GenerateKey(rand.Reader); err != nil {
			panic(err)
		}
	})
}

func p256(t testing.TB) *ecdsa.PrivateKey { ecKeys(t); return keyP256 }
func p384(t testing.TB) *ecdsa.PrivateKey { ecKeys(t); return keyP384 }

func rsa2048(t testing.TB) *rsa.PrivateKey {
	t.Helper()
	rsaOnce.Do(func() {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			panic(err)
		}
		keyRSA = k
	})
	return keyRSA
}

func rsa1024(t testing.TB) *rsa.PrivateKey {
	t.Helper()
	rsa1Once.Do(func() {
		k, err := rsa.GenerateKey(rand.Reader, 1024)
		if err != nil {
			panic(err)
		}
		keyRSA1k = k
	})
	return keyRSA1k
}

// ---- CSRs ----

type csrSpec struct {
	CN     string
	DNS    []string
	IPs    []string
	URIs   []string
	Emails []string
	Extra  []pkix.Extension
}

func makeCSR(t testing.TB, key crypto.Signer, s csrSpec) string {
	t.Helper()
	tmpl := &x509.CertificateRequest{Subject: pkix.Name{CommonName: s.CN}, DNSNames: s.DNS, EmailAddresses: s.Emails, ExtraExtensions: s.Extra}
	for _, ip := range s.IPs {
		tmpl.IPAddresses = append(tmpl.IPAddresses, net.ParseIP(ip))
	}
	for _, u := range s.URIs {
		pu, err := url.Parse(u)
		if err != nil {
			t.Fatal(err)
		}
		tmpl.URIs = append(tmpl.URIs, pu)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatalf("create CSR: %v", err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
}

// ---- HTTP ----

// call sends one request with the admin token and a JSON Content-Type (when
// there is a body); hdr sets further headers, and a header given as ""
// is removed (e.g. "Authorization": "" sends no credentials). It returns the
// response (body already read and closed) and the body.
func call(t testing.TB, env *servertest.Env, method, path string, body []byte, hdr map[string]string) (*http.Response, []byte) {
	t.Helper()
	h := map[string]string{"Authorization": "Bearer " + env.Srv.Token}
	for k, v := range hdr {
		if v == "" {
			delete(h, k)
			continue
		}
		h[k] = v
	}
	resp, b, err := secDo(t, env, env.Client.HTTP, method, path, body, h)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	return resp, b
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// issueResp is the 201 body of POST /v1/certificates.
type issueResp struct {
	Serial         string    `json:"serial"`
	Profile        string    `json:"profile"`
	CA             string    `json:"ca"`
	CommonName     string    `json:"common_name"`
	SANs           []string  `json:"sans"`
	NotBefore      time.Time `json:"not_before"`
	NotAfter       time.Time `json:"not_after"`
	Certificate    string    `json:"certificate"`
	Chain          string    `json:"chain"`
	Root           string    `json:"root"`
	Bundle         string    `json:"bundle"`
	PrivateKey     string    `json:"private_key"`
	CertificateARN string    `json:"certificate_arn"`
}

// issue POSTs req and requires a 201.
func issue(t testing.TB, env *servertest.Env, req map[string]any) *issueResp {
	t.Helper()
	resp, body := call(t, env, "POST", "/v1/certificates", mustJSON(t, req), nil)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("POST /v1/certificates %v: status %d, want 201: %s", req, resp.StatusCode, body)
	}
	var out issueResp
	if err := json.Unmarshal(body, &out); err != nil {
		t.Fatalf("decoding issue response: %v: %s", err, body)
	}
	return &out
}

// errBody is the documented error body.
type errBody struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
		Details []struct {
			Field  string `json:"field"`
			Reason string `json:"reason"`
		} `json:"details"`
		RequestID string `json:"request_id"`
		Retryable *bool  `json:"retryable"`
	} `json:"error"`
}

// ---- PEM / certificates ----

func parseCerts(t testing.TB, what, s string) []*x509.Certificate {
	t.Helper()
	var out []*x509.Certificate
	rest := []byte(s)
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			t.Fatalf("%s: PEM block %q, want CERTIFICATE", what, b.Type)
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		out = append(out, c)
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		t.Fatalf("%s: trailing non-PEM data %q", what, rest)
	}
	return out
}

func parseOneCert(t testing.TB, what, s string) *x509.Certificate {
	t.Helper()
	cs := parseCerts(t, what, s)
	if len(cs) != 1 {
		t.Fatalf("%s: %d certificates, want 1", what, len(cs))
	}
	return cs[0]
}

// trustBundle fetches GET /v1/trust-bundle without credentials.
func trustBundle(t testing.TB, env *servertest.Env) []*x509.Certificate {
	t.Helper()
	resp, body := call(t, env, "GET", "/v1/trust-bundle", nil, map[string]string{"Authorization": ""})
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /v1/trust-bundle: %d %s", resp.StatusCode, body)
	}
	roots := parseCerts(t, "trust bundle", string(body))
	if len(roots) == 0 {
		t.Fatal("empty trust bundle")
	}
	return roots
}

// caChain fetches GET /v1/cas/{name}/chain: the CA first, then its issuers.
func caChain(t testing.TB, env *servertest.Env, name string) []*x509.Certificate {
	t.Helper()
	resp, body := call(t, env, "GET", "/v1/cas/"+name+"/chain", nil, nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /v1/cas/%s/chain: %d %s", name, resp.StatusCode, body)
	}
	return parseCerts(t, name+" chain", string(body))
}

func poolOf(certs ...*x509.Certificate) *x509.CertPool {
	p := x509.NewCertPool()
	for _, c := range certs {
		p.AddCert(c)
	}
	return p
}

func pemCert(c *x509.Certificate) string {
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw}))
}

// ---- database ----

func countCerts(t testing.TB, env *servertest.Env) int64 {
	t.Helper()
	var n int64
	if err := env.Srv.Store.DB().Model(&store.Certificate{}).Count(&n).Error; err != nil {
		t.Fatalf("counting certificates: %v", err)
	}
	return n
}

// countEventsExcept counts events whose type is not typ.
func countEventsExcept(t testing.TB, env *servertest.Env, typ string) int64 {
	t.Helper()
	var n int64
	if err := env.Srv.Store.DB().Model(&store.Event{}).Where("type <> ?", typ).Count(&n).Error; err != nil {
		t.Fatalf("counting events: %v", err)
	}
	return n
}

// colonUpper renders a lower-case hex serial as upper-case colon-separated
// octets, the way openssl and PCA print serials.
func colonUpper(serial string) string {
	s := strings.ToUpper(serial)
	if len(s)%2 == 1 {
		s = "0" + s
	}
	var parts []string
	for i := 0; i < len(s); i += 2 {
		parts = append(parts, s[i:i+2])
	}
	return strings.Join(parts, ":")
}
