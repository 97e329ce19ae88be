package istio

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/certgate/certgate/internal/issuance"
)

type testCA struct {
	cert *x509.Certificate
	key  crypto.Signer
}

func newTestCA(t *testing.T, name string, parent *testCA, pathLen int) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature, BasicConstraintsValid: true, IsCA: true,
		MaxPathLen: pathLen, MaxPathLenZero: pathLen == 0,
	}
	issuer, issuerKey := tmpl, crypto.Signer(key)
	if parent != nil {
		issuer, issuerKey = parent.cert, parent.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, issuer, key.Public(), issuerKey)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &testCA{cert: c, key: key}
}

func pemOf(certs ...*x509.Certificate) []byte {
	var b bytes.Buffer
	for _, c := range certs {
		_ = pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	}
	return b.Bytes()
}

// testBundle: root → mid (pathlen 1) → cluster CA (pathlen 0).
func testBundle(t *testing.T) (*Bundle, *testCA, *testCA, *testCA) {
	t.Helper()
	root := newTestCA(t, "root", nil, -1)
	mid := newTestCA(t, "mid", root, 1)
	cl := newTestCA(t, "istio-intermediate east", mid, 0)
	key, err := MarshalKey(cl.key)
	if err != nil {
		t.Fatal(err)
	}
	res := &issuance.IntermediateResult{Serial: "abc", Cluster: "east", NotAfter: cl.cert.NotAfter,
		CACert: string(pemOf(cl.cert)), RootCert: string(pemOf(root.cert)), CertChain: string(pemOf(cl.cert, mid.cert, root.cert))}
	b, err := NewBundle(res, key)
	if err != nil {
		t.Fatal(err)
	}
	return b, root, mid, cl
}

func TestBundleCheck(t *testing.T) {
	b, root, mid, cl := testBundle(t)
	if err := b.Check(time.Now()); err != nil {
		t.Fatalf("good bundle: %v", err)
	}
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	otherKey, _ := MarshalKey(other)
	leafish := newTestCA(t, "leaf", cl, 0)
	leafish.cert.IsCA = false
	cases := map[string]func(b *Bundle){
		"wrong key":         func(b *Bundle) { b.CAKey = otherKey },
		"no key":            func(b *Bundle) { b.CAKey = []byte("junk") },
		"chain without mid": func(b *Bundle) { b.CertChain = pemOf(cl.cert, root.cert) },
		"chain without root": func(b *Bundle) {
			b.CertChain = pemOf(cl.cert, mid.cert)
		},
		"chain duplicate":    func(b *Bundle) { b.CertChain = pemOf(cl.cert, mid.cert, mid.cert, root.cert) },
		"chain out of order": func(b *Bundle) { b.CertChain = pemOf(cl.cert, root.cert, mid.cert) },
		"chain not from ca":  func(b *Bundle) { b.CertChain = pemOf(mid.cert, root.cert) },
		"two ca certs":       func(b *Bundle) { b.CACert = pemOf(cl.cert, mid.cert) },
		"root not root":      func(b *Bundle) { b.RootCert = pemOf(mid.cert) },
		"trailing junk":      func(b *Bundle) { b.CertChain = append(pemOf(cl.cert, mid.cert, root.cert), "junk"...) },
		"expired": func(b *Bundle) {
			if err := b.Check(time.Now().Add(48 * time.Hour)); err == nil {
				t.Error("expired bundle passed")
			}
			b.CACert = nil
		},
	}
	for name, mut := range cases {
		t.Run(name, func(t *testing.T) {
			bb := *b
			mut(&bb)
			if err := bb.Check(time.Now()); err == nil {
				t.Fatal("accepted")
			}
		})
	}
	if _, err := NewBundle(&issuance.IntermediateResult{}, nil); err == nil {
		t.Error("a bundle without a key")
	}
}

func TestWriteAndManifest(t *testing.T) {
	b, _, _, _ := testBundle(t)
	dir := filepath.Join(t.TempDir(), "new", "east")
	o := WriteOptions{SecretYAML: true, Namespace: "istio-system"}
	written, err := Write(dir, b, o, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if len(written) != 5 || filepath.Base(written[0]) != FileCAKey {
		t.Fatalf("written %v: want the key first and five files", written)
	}
	modes := map[string]os.FileMode{FileCAKey: 0o600, FileSecretYAML: 0o600, FileCACert: 0o644, FileRootCert: 0o644, FileCertChain: 0o644}
	for name, want := range modes {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s: %04o, want %04o", name, fi.Mode().Perm(), want)
		}
	}
	if fi, _ := os.Stat(dir); fi.Mode().Perm() != 0o700 {
		t.Errorf("dir mode %04o", fi.Mode().Perm())
	}
	var m map[string]any
	raw, _ := os.ReadFile(filepath.Join(dir, FileSecretYAML))
	if err := yaml.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	data, _ := m["data"].(map[string]any)
	if m["apiVersion"] != "v1" || m["kind"] != "Secret" || m["type"] != "Opaque" || len(data) != 4 {
		t.Fatalf("manifest %v", m)
	}
	md := m["metadata"].(map[string]any)
	if md["name"] != "cacerts" || md["namespace"] != "istio-system" {
		t.Fatalf("metadata %v", md)
	}
	for _, f := range []string{FileCACert, FileCAKey, FileRootCert, FileCertChain} {
		got, _ := base64.StdEncoding.DecodeString(data[f].(string))
		want, _ := os.ReadFile(filepath.Join(dir, f))
		if !bytes.Equal(got, want) {
			t.Errorf("data[%s] differs from the file", f)
		}
	}
	// No overwrite without Force; with it, fine.
	if _, err := Write(dir, b, o, time.Now()); !errors.Is(err, ErrExists) {
		t.Fatalf("overwrite: %v", err)
	}
	o.Force = true
	if _, err := Write(dir, b, o, time.Now()); err != nil {
		t.Fatal(err)
	}
	// An inconsistent bundle is never written.
	bad := *b
	bad.CAKey, _ = MarshalKey(mustKey(t))
	if _, err := Write(filepath.Join(t.TempDir(), "x"), &bad, WriteOptions{}, time.Now()); err == nil || !strings.Contains(err.Error(), "does not match") {
		t.Fatalf("inconsistent bundle: %v", err)
	}
	if _, err := SecretManifest(b, "Istio_System"); err == nil {
		t.Error("bad namespace accepted")
	}
}

func mustKey(t *testing.T) crypto.Signer {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestNextSteps(t *testing.T) {
	b, _, _, _ := testBundle(t)
	s := NextSteps("/tmp/my dir", b, WriteOptions{SecretYAML: true, Namespace: "mesh"})
	for _, want := range []string{
		"kubectl apply -f '/tmp/my dir/cacerts.yaml'",
		"kubectl create secret generic cacerts -n mesh",
		"--from-file='/tmp/my dir/ca-key.pem'",
		"kubectl rollout restart deployment/istiod -n mesh",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("lacks %q:\n%s", want, s)
		}
	}
	if s := NextSteps("out", b, WriteOptions{}); strings.Contains(s, "cacerts.yaml") || !strings.Contains(s, "-n istio-system") {
		t.Errorf("without the manifest:\n%s", s)
	}
}

func TestCSRAndKeys(t *testing.T) {
	for _, kt := range []string{"", issuance.KeyECDSAP256, issuance.KeyECDSAP384, issuance.KeyRSA2048} {
		k, err := GenerateKey(kt)
		if err != nil {
			t.Fatal(err)
		}
		csr, err := CSR(k, "east")
		if err != nil {
			t.Fatal(err)
		}
		blk, _ := pem.Decode([]byte(csr))
		r, err := x509.ParseCertificateRequest(blk.Bytes)
		if err != nil || r.CheckSignature() != nil || r.Subject.CommonName != "istio-intermediate east" {
			t.Fatalf("%s: csr %v", kt, err)
		}
		p, _ := MarshalKey(k)
		back, err := ParsePrivateKeyPEM(p)
		if err != nil || !back.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(k.Public()) {
			t.Fatalf("%s: key round trip %v", kt, err)
		}
	}
	if _, err := GenerateKey("ed25519"); err == nil {
		t.Error("ed25519 accepted")
	}
	for _, ns := range []string{"istio-system", "a", "x1"} {
		if ValidateNamespace(ns) != nil {
			t.Errorf("%q refused", ns)
		}
	}
	for _, ns := range []string{"", "-a", "a-", "A", "a.b", strings.Repeat("a", 64)} {
		if ValidateNamespace(ns) == nil {
			t.Errorf("%q accepted", ns)
		}
	}
}
