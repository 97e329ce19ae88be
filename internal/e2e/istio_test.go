package e2e

// Istio intermediate CAs, end to end: a real server issues per-cluster
// intermediates; openssl and crypto/x509 judge the files; workloads signed
// with the intermediates' keys (as istiod signs them) do mutual TLS across
// clusters; revoking one cluster's intermediate cuts its workloads off for a
// verifier that checks the root's CRL. Every helper here starts with
// "istio" so this file cannot collide with the other e2e files.

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/certgate/certgate/internal/ca"
	"github.com/certgate/certgate/internal/ca/pcatest"
	"github.com/certgate/certgate/internal/client"
	"github.com/certgate/certgate/internal/config"
	"github.com/certgate/certgate/internal/issuance"
	"github.com/certgate/certgate/internal/istio"
	"github.com/certgate/certgate/internal/policy"
	"github.com/certgate/certgate/internal/server"
	"github.com/certgate/certgate/internal/servertest"
)

const istioTrustDomain = "spiffe://cluster.local/"

// ---- helpers ----

func istioCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// istioIssue issues an intermediate through the API.
func istioIssue(t *testing.T, c *client.Client, req issuance.IntermediateRequest) *issuance.IntermediateResult {
	t.Helper()
	var res issuance.IntermediateResult
	resp, err := c.Do(istioCtx(t), http.MethodPost, istio.Route, req, &res, nil)
	if err != nil {
		t.Fatalf("POST %s %+v: %v", istio.Route, req, err)
	}
	if resp.StatusCode != http.StatusCreated || resp.Header.Get("Location") != "/v1/certificates/"+res.Serial {
		t.Fatalf("status %d, Location %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	if cc := resp.Header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("Cache-Control %q, want no-store (the body may hold a CA key)", cc)
	}
	return &res
}

// istioWantError asserts a documented error body.
func istioWantError(t *testing.T, err error, status int, code, field string) *client.Error {
	t.Helper()
	var ce *client.Error
	if !errors.As(err, &ce) {
		t.Fatalf("want %d %s, got %v", status, code, err)
	}
	if ce.Status != status || (code != "" && ce.Body.Code != code) || ce.Body.Message == "" || ce.Body.RequestID == "" {
		t.Fatalf("want %d %s, got %d %+v", status, code, ce.Status, ce.Body)
	}
	if field != "" {
		found := false
		for _, d := range ce.Body.Details {
			found = found || d.Field == field
		}
		if !found {
			t.Fatalf("want a detail for %q, got %+v", field, ce.Body)
		}
	}
	return ce
}

func istioCerts(t *testing.T, what string, b []byte) []*x509.Certificate {
	t.Helper()
	var out []*x509.Certificate
	rest := b
	for {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			t.Fatalf("%s: PEM block %q", what, blk.Type)
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		out = append(out, c)
	}
	if len(out) == 0 || len(bytes.TrimSpace(rest)) != 0 {
		t.Fatalf("%s: %d certificates, %d trailing bytes", what, len(out), len(rest))
	}
	return out
}

func istioKey(t *testing.T, b []byte) crypto.Signer {
	t.Helper()
	k, err := istio.ParsePrivateKeyPEM(b)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func istioRead(t *testing.T, dir, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func istioMode(t *testing.T, path string, want os.FileMode) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != want {
		t.Errorf("%s: mode %04o, want %04o", filepath.Base(path), got, want)
	}
}

// istioCluster is one cluster's plug-in CA as istiod would load it.
type istioCluster struct {
	name  string
	cert  *x509.Certificate // ca-cert.pem
	key   crypto.Signer     // ca-key.pem
	root  *x509.Certificate // root-cert.pem
	chain []*x509.Certificate
	dir   string
}

func istioLoad(t *testing.T, name, dir string) *istioCluster {
	t.Helper()
	c := &istioCluster{name: name, dir: dir,
		cert:  istioCerts(t, istio.FileCACert, istioRead(t, dir, istio.FileCACert))[0],
		key:   istioKey(t, istioRead(t, dir, istio.FileCAKey)),
		root:  istioCerts(t, istio.FileRootCert, istioRead(t, dir, istio.FileRootCert))[0],
		chain: istioCerts(t, istio.FileCertChain, istioRead(t, dir, istio.FileCertChain)),
	}
	return c
}

// istioCacerts runs the CLI's flow into a fresh directory.
func istioCacerts(t *testing.T, env *servertest.Env, o istio.CacertsOptions) (*istioCluster, *istio.CacertsOutcome) {
	t.Helper()
	if o.Out == "" {
		o.Out = filepath.Join(t.TempDir(), o.Cluster)
	}
	out, err := istio.Cacerts(istioCtx(t), env.Client, o)
	if err != nil {
		t.Fatalf("cacerts %s: %v", o.Cluster, err)
	}
	return istioLoad(t, o.Cluster, o.Out), out
}

// istioWorkload signs a workload certificate with a cluster's CA key the
// way istiod does: no subject, a critical SPIFFE URI SAN, digitalSignature
// and keyEncipherment, client and server auth, one day.
func istioWorkload(t *testing.T, issuer *x509.Certificate, issuerKey crypto.Signer, spiffeID string) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(spiffeID)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial, URIs: []*url.URL{u},
		NotBefore: now.Add(-time.Minute), NotAfter: now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, issuer, key.Public(), issuerKey)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c, key
}

// istioSubCA makes a CA under issuer, as a cluster operator might try.
func istioSubCA(t *testing.T, issuer *x509.Certificate, issuerKey crypto.Signer) (*x509.Certificate, crypto.Signer) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(now.UnixNano()), Subject: pkix.Name{CommonName: "namespace sub-CA"},
		NotBefore: now.Add(-time.Minute), NotAfter: now.Add(48 * time.Hour),
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign, BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, issuer, key.Public(), issuerKey)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c, key
}

func istioPool(certs ...*x509.Certificate) *x509.CertPool {
	p := x509.NewCertPool()
	for _, c := range certs {
		p.AddCert(c)
	}
	return p
}

func istioPEM(certs ...*x509.Certificate) []byte {
	var b bytes.Buffer
	for _, c := range certs {
		_ = pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	}
	return b.Bytes()
}

func istioOpenSSL(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("openssl")
	if err != nil {
		t.Skip("openssl is not installed: skipping the openssl agreement checks")
	}
	return p
}

func istioRun(t *testing.T, name string, args ...string) (string, error) {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	return string(out), err
}

// ---- the cacerts files, judged by openssl and crypto/x509 ----

func TestIstioCacertsFiles(t *testing.T) {
	openssl := istioOpenSSL(t)
	env := servertest.Start(t)
	root := istioCerts(t, "trust bundle", env.RootPEM)[0]

	for _, tc := range []struct {
		name string
		o    istio.CacertsOptions
	}{
		{"local key", istio.CacertsOptions{Cluster: "east", WriteOptions: istio.WriteOptions{SecretYAML: true}}},
		{"local p384 key, own namespace", istio.CacertsOptions{Cluster: "north", KeyType: issuance.KeyECDSAP384, Days: 30,
			WriteOptions: istio.WriteOptions{SecretYAML: true, Namespace: "mesh-ca"}}},
		{"server rsa key", istio.CacertsOptions{Cluster: "south", ServerKey: true, KeyType: issuance.KeyRSA2048, Days: 90}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			parent := t.TempDir()
			tc.o.Out = filepath.Join(parent, "out", tc.o.Cluster) // created by the CLI
			cl, out := istioCacerts(t, env, tc.o)
			dir := tc.o.Out

			// Modes: the key and the manifest (which embeds it) 0600, the
			// directory 0700.
			istioMode(t, dir, 0o700)
			istioMode(t, filepath.Join(dir, istio.FileCAKey), 0o600)
			for _, f := range []string{istio.FileCACert, istio.FileRootCert, istio.FileCertChain} {
				istioMode(t, filepath.Join(dir, f), 0o644)
			}
			if tc.o.SecretYAML {
				istioMode(t, filepath.Join(dir, istio.FileSecretYAML), 0o600)
			} else if _, err := os.Stat(filepath.Join(dir, istio.FileSecretYAML)); err == nil {
				t.Error("cacerts.yaml written without --secret-yaml")
			}

			// Go: CA:TRUE pathlen 0, the exact usages, subject naming the
			// cluster, validity, key match, chain layout.
			c := cl.cert
			if !c.IsCA || c.MaxPathLen != 0 || !c.MaxPathLenZero {
				t.Errorf("CA %v pathlen %d zero %v", c.IsCA, c.MaxPathLen, c.MaxPathLenZero)
			}
			if want := x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature; c.KeyUsage != want {
				t.Errorf("key usage %b, want %b", c.KeyUsage, want)
			}
			if got, want := c.Subject.String(), issuance.IntermediateSubject(tc.o.Cluster).String(); got != want {
				t.Errorf("subject %q, want %q", got, want)
			}
			days := tc.o.Days
			if days == 0 {
				days = 365
			}
			if span := c.NotAfter.Sub(c.NotBefore); span != time.Duration(days)*ca.Day {
				t.Errorf("span %s, want %d days", span, days)
			}
			if !cl.root.Equal(root) {
				t.Error("root-cert.pem is not the server's root")
			}
			if len(cl.chain) != 2 || !cl.chain[0].Equal(c) || !cl.chain[1].Equal(root) {
				t.Errorf("cert-chain.pem: %d certificates; want ca-cert then root, each once", len(cl.chain))
			}
			if !ca.PublicKeysEqual(cl.key.Public(), c.PublicKey) {
				t.Error("ca-key.pem does not match ca-cert.pem")
			}
			switch {
			case tc.o.KeyType == issuance.KeyRSA2048:
				if _, ok := cl.key.(*rsa.PrivateKey); !ok {
					t.Errorf("key %T, want RSA", cl.key)
				}
			case tc.o.KeyType == issuance.KeyECDSAP384:
				if k, ok := cl.key.(*ecdsa.PrivateKey); !ok || k.Curve != elliptic.P384() {
					t.Errorf("key %T, want P-384", cl.key)
				}
			default:
				if k, ok := cl.key.(*ecdsa.PrivateKey); !ok || k.Curve != elliptic.P256() {
					t.Errorf("key %T, want P-256", cl.key)
				}
			}
			if out.Result.Cluster != tc.o.Cluster || out.Result.Serial != ca.FormatSerial(c.SerialNumber) {
				t.Errorf("result %+v", out.Result)
			}

			// openssl: the chain verifies, the constraints print as
			// CA:TRUE, pathlen:0, and the key's public half is the
			// certificate's.
			p := func(n string) string { return filepath.Join(dir, n) }
			if o, err := istioRun(t, openssl, "verify", "-CAfile", p(istio.FileRootCert), "-untrusted", p(istio.FileCertChain), p(istio.FileCACert)); err != nil || !strings.Contains(o, ": OK") {
				t.Errorf("openssl verify: %v\n%s", err, o)
			}
			o, err := istioRun(t, openssl, "x509", "-noout", "-ext", "basicConstraints", "-in", p(istio.FileCACert))
			if err != nil || !strings.Contains(o, "critical") || !strings.Contains(o, "CA:TRUE, pathlen:0") {
				t.Errorf("openssl basicConstraints: %v\n%s", err, o)
			}
			o, err = istioRun(t, openssl, "x509", "-noout", "-ext", "keyUsage", "-in", p(istio.FileCACert))
			if err != nil || !strings.Contains(o, "Digital Signature, Certificate Sign, CRL Sign") {
				t.Errorf("openssl keyUsage: %v\n%s", err, o)
			}
			keyPub, err1 := istioRun(t, openssl, "pkey", "-in", p(istio.FileCAKey), "-pubout")
			certPub, err2 := istioRun(t, openssl, "x509", "-in", p(istio.FileCACert), "-noout", "-pubkey")
			if err1 != nil || err2 != nil || !strings.Contains(keyPub, "BEGIN PUBLIC KEY") || keyPub != certPub {
				t.Errorf("openssl public keys differ (%v, %v):\n%s\n%s", err1, err2, keyPub, certPub)
			}

			// The manifest: a v1 Secret "cacerts" of type Opaque whose data
			// are exactly the four files.
			if tc.o.SecretYAML {
				istioCheckManifest(t, dir, tc.o.Cluster, map[bool]string{true: tc.o.Namespace, false: istio.DefaultNamespace}[tc.o.Namespace != ""])
				steps := istio.NextSteps(dir, out.Bundle, tc.o.WriteOptions)
				for _, want := range []string{"kubectl apply -f " + filepath.Join(dir, istio.FileSecretYAML),
					"kubectl create secret generic cacerts -n ", "kubectl rollout restart deployment/istiod -n "} {
					if !strings.Contains(steps, want) {
						t.Errorf("next steps lack %q:\n%s", want, steps)
					}
				}
			}

			// A second run into the same directory refuses to replace the
			// cluster's CA unless forced, and asks the server for nothing.
			before := istioCountIntermediates(t, env)
			_, err = istio.Cacerts(istioCtx(t), env.Client, tc.o)
			if !errors.Is(err, istio.ErrExists) || !strings.Contains(err.Error(), "--force") {
				t.Fatalf("second run: %v", err)
			}
			if after := istioCountIntermediates(t, env); after != before {
				t.Errorf("a refused run issued a certificate (%d → %d)", before, after)
			}
			forced := tc.o
			forced.Force = true
			cl2, _ := istioCacerts(t, env, forced)
			if cl2.cert.Equal(cl.cert) {
				t.Error("--force did not replace the files")
			}
		})
	}
}

func istioCheckManifest(t *testing.T, dir, cluster, namespace string) {
	t.Helper()
	var m struct {
		APIVersion string `yaml:"apiVersion"`
		Kind       string `yaml:"kind"`
		Metadata   struct {
			Name        string            `yaml:"name"`
			Namespace   string            `yaml:"namespace"`
			Annotations map[string]string `yaml:"annotations"`
		} `yaml:"metadata"`
		Type string            `yaml:"type"`
		Data map[string]string `yaml:"data"`
	}
	raw := istioRead(t, dir, istio.FileSecretYAML)
	if err := yaml.Unmarshal(raw, &m); err != nil {
		t.Fatalf("cacerts.yaml: %v\n%s", err, raw)
	}
	if m.APIVersion != "v1" || m.Kind != "Secret" || m.Metadata.Name != "cacerts" || m.Metadata.Namespace != namespace || m.Type != "Opaque" {
		t.Errorf("manifest header %+v", m)
	}
	if m.Metadata.Annotations["certgate/cluster"] != cluster {
		t.Errorf("annotations %v", m.Metadata.Annotations)
	}
	if len(m.Data) != 4 {
		t.Errorf("data has %d keys, want the four files", len(m.Data))
	}
	for _, f := range []string{istio.FileCACert, istio.FileCAKey, istio.FileRootCert, istio.FileCertChain} {
		got, err := base64.StdEncoding.DecodeString(m.Data[f])
		if err != nil || !bytes.Equal(got, istioRead(t, dir, f)) {
			t.Errorf("data[%s] is not base64 of the file (%v)", f, err)
		}
	}
}

func istioCountIntermediates(t *testing.T, env *servertest.Env) int {
	t.Helper()
	return len(istioList(t, env))
}

// istioList lists intermediates through GET /v1/certificates, as raw JSON
// objects so the test sees exactly the keys the API sends.
func istioList(t *testing.T, env *servertest.Env) []map[string]any {
	t.Helper()
	var raw []byte
	if _, err := env.Client.Do(istioCtx(t), http.MethodGet, "/v1/certificates?profile="+ca.ProfileIstioIntermediate+"&limit=1000", nil, &raw, nil); err != nil {
		t.Fatal(err)
	}
	var page struct {
		Certificates []map[string]any `json:"certificates"`
	}
	if err := json.Unmarshal(raw, &page); err != nil {
		t.Fatal(err)
	}
	return page.Certificates
}

// ---- what istiod will do with it ----

func TestIstioWorkloadChains(t *testing.T) {
	env := servertest.Start(t)
	east, _ := istioCacerts(t, env, istio.CacertsOptions{Cluster: "east"})
	roots := istioPool(east.root) // root-cert.pem alone
	inter := istioPool(east.chain...)

	// A workload certificate as istiod issues it verifies against the root
	// with cert-chain.pem as intermediates.
	leaf, _ := istioWorkload(t, east.cert, east.key, "spiffe://cluster.local/ns/default/sa/app")
	chains, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}})
	if err != nil {
		t.Fatalf("workload certificate does not verify: %v", err)
	}
	if len(chains) != 1 || len(chains[0]) != 3 || !chains[0][1].Equal(east.cert) || !chains[0][2].Equal(east.root) {
		t.Fatalf("chain %v", chains)
	}
	for _, usage := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{usage}}); err != nil {
			t.Errorf("usage %v: %v", usage, err)
		}
	}

	// pathlen 0: a sub-CA under the intermediate, and a leaf under it, do
	// not verify.
	sub, subKey := istioSubCA(t, east.cert, east.key)
	deep, _ := istioWorkload(t, sub, subKey, "spiffe://cluster.local/ns/default/sa/deep")
	_, err = deep.Verify(x509.VerifyOptions{Roots: roots, Intermediates: istioPool(append([]*x509.Certificate{sub}, east.chain...)...),
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	var cie x509.CertificateInvalidError
	if !errors.As(err, &cie) || cie.Reason != x509.TooManyIntermediates {
		t.Fatalf("a leaf under a sub-CA of the pathlen-0 intermediate: want TooManyIntermediates, got %v", err)
	}
	// (The sub-CA certificate itself still chains, as RFC 5280 has it:
	// pathlen limits the CAs below the intermediate, so nothing the sub-CA
	// signs is ever trusted.)

	// openssl agrees on both.
	if _, err := exec.LookPath("openssl"); err == nil {
		dir := t.TempDir()
		w := func(name string, data []byte) string {
			p := filepath.Join(dir, name)
			if err := os.WriteFile(p, data, 0o600); err != nil {
				t.Fatal(err)
			}
			return p
		}
		rootF := filepath.Join(east.dir, istio.FileRootCert)
		o, err := istioRun(t, "openssl", "verify", "-CAfile", rootF, "-untrusted", filepath.Join(east.dir, istio.FileCertChain), w("leaf.pem", istioPEM(leaf)))
		if err != nil || !strings.Contains(o, ": OK") {
			t.Errorf("openssl verify workload: %v\n%s", err, o)
		}
		o, err = istioRun(t, "openssl", "verify", "-CAfile", rootF, "-untrusted", w("deep-chain.pem", append(istioPEM(sub), istioRead(t, east.dir, istio.FileCertChain)...)), w("deep.pem", istioPEM(deep)))
		if err == nil || !strings.Contains(o, "path length") {
			t.Errorf("openssl verify of a leaf under a sub-CA: want a path length error, got %v\n%s", err, o)
		}
	}
}

// ---- cross-cluster mTLS, then revocation ----

// istioVerifier is a workload's peer check as Envoy does it: the chain must
// verify to root-cert.pem alone (intermediates from the peer), the peer must
// carry a SPIFFE ID of the trust domain, and — when CRLs are given — no
// certificate of the chain may be on its issuer's CRL.
type istioVerifier struct {
	roots *x509.CertPool
	usage x509.ExtKeyUsage
	crls  map[string]*x509.RevocationList // by the issuer certificate's DER
}

func (v *istioVerifier) verify(rawCerts [][]byte, _ [][]*x509.Certificate) error {
	if len(rawCerts) == 0 {
		return errors.New("no peer certificate")
	}
	var certs []*x509.Certificate
	for _, r := range rawCerts {
		c, err := x509.ParseCertificate(r)
		if err != nil {
			return err
		}
		certs = append(certs, c)
	}
	chains, err := certs[0].Verify(x509.VerifyOptions{Roots: v.roots, Intermediates: istioPool(certs[1:]...), KeyUsages: []x509.ExtKeyUsage{v.usage}})
	if err != nil {
		return err
	}
	id := ""
	for _, u := range certs[0].URIs {
		if strings.HasPrefix(u.String(), istioTrustDomain) {
			id = u.String()
		}
	}
	if id == "" {
		return fmt.Errorf("peer has no SPIFFE ID in %s", istioTrustDomain)
	}
	now := time.Now()
	for _, chain := range chains {
		for i := 0; i+1 < len(chain); i++ {
			crl := v.crls[string(chain[i+1].Raw)]
			if crl == nil {
				continue // this issuer publishes no CRL (istiod does not)
			}
			if err := crl.CheckSignatureFrom(chain[i+1]); err != nil {
				return fmt.Errorf("CRL of %s: %w", chain[i+1].Subject, err)
			}
			if now.After(crl.NextUpdate) {
				return fmt.Errorf("CRL of %s is stale (next update %s)", chain[i+1].Subject, crl.NextUpdate)
			}
			for _, e := range crl.RevokedCertificateEntries {
				if e.SerialNumber.Cmp(chain[i].SerialNumber) == 0 {
					return fmt.Errorf("certificate %q (serial %s) is revoked", chain[i].Subject, ca.FormatSerial(e.SerialNumber))
				}
			}
		}
	}
	return nil
}

type istioWorkloadID struct {
	leaf  *x509.Certificate
	key   crypto.Signer
	chain []*x509.Certificate // cert-chain.pem minus the root
	root  *x509.Certificate
}

func (w *istioWorkloadID) tlsCert() tls.Certificate {
	c := tls.Certificate{Certificate: [][]byte{w.leaf.Raw}, PrivateKey: w.key, Leaf: w.leaf}
	for _, x := range w.chain {
		c.Certificate = append(c.Certificate, x.Raw)
	}
	return c
}

func istioNewWorkload(t *testing.T, cl *istioCluster, sa string) *istioWorkloadID {
	t.Helper()
	leaf, key := istioWorkload(t, cl.cert, cl.key, "spiffe://cluster.local/ns/default/sa/"+sa)
	return &istioWorkloadID{leaf: leaf, key: key, chain: cl.chain[:len(cl.chain)-1], root: cl.root}
}

// istioHandshake runs a real mutual-TLS exchange over 127.0.0.1: server
// presents srv, client presents cli, each trusts only its own root-cert.pem
// (and the CRLs given), and they swap a ping and a pong.
func istioHandshake(t *testing.T, srv, cli *istioWorkloadID, crls map[string]*x509.RevocationList) (clientErr, serverErr error) {
	t.Helper()
	sv := &istioVerifier{roots: istioPool(srv.root), usage: x509.ExtKeyUsageClientAuth, crls: crls}
	cv := &istioVerifier{roots: istioPool(cli.root), usage: x509.ExtKeyUsageServerAuth, crls: crls}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{
		MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{srv.tlsCert()},
		// Verification is the SPIFFE way (no host names), so the standard
		// check is replaced by istioVerifier, not merely skipped.
		ClientAuth: tls.RequireAnyClientCert, VerifyPeerCertificate: sv.verify,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan error, 1)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			done <- err
			return
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
		buf := make([]byte, 4)
		if _, err := io.ReadFull(conn, buf); err != nil {
			done <- err
			return
		}
		if string(buf) != "ping" {
			done <- fmt.Errorf("server read %q", buf)
			return
		}
		_, err = conn.Write([]byte("pong"))
		done <- err
	}()
	clientErr = func() error {
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", ln.Addr().String(), &tls.Config{
			MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cli.tlsCert()},
			InsecureSkipVerify: true, VerifyPeerCertificate: cv.verify, //nolint:gosec // replaced by istioVerifier
		})
		if err != nil {
			return err
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := conn.Write([]byte("ping")); err != nil {
			return err
		}
		buf := make([]byte, 4)
		if _, err := io.ReadFull(conn, buf); err != nil {
			return err
		}
		if string(buf) != "pong" {
			return fmt.Errorf("client read %q", buf)
		}
		return nil
	}()
	return clientErr, <-done
}

// istioSkipIfNoRoute fails the test when the server answered 404 "no route":
// the endpoint is not wired in: a failure, not a skip.
func istioSkipIfNoRoute(t *testing.T, err error, what string) {
	t.Helper()
	var ce *client.Error
	if errors.As(err, &ce) && ce.Status == http.StatusNotFound && strings.HasPrefix(ce.Body.Message, "no route") {
		t.Fatalf("%s is not served (404 %q)", what, ce.Body.Message)
	}
}

func TestIstioCrossClusterMTLSAndRevocation(t *testing.T) {
	env := servertest.Start(t)
	east, _ := istioCacerts(t, env, istio.CacertsOptions{Cluster: "east"})
	west, westOut := istioCacerts(t, env, istio.CacertsOptions{Cluster: "west"})
	if !east.root.Equal(west.root) || east.cert.Equal(west.cert) {
		t.Fatal("east and west must share the root and have their own intermediates")
	}
	eastApp := istioNewWorkload(t, east, "app")
	westApp := istioNewWorkload(t, west, "app")

	for _, dir := range []struct {
		name     string
		srv, cli *istioWorkloadID
	}{{"east serves west", eastApp, westApp}, {"west serves east", westApp, eastApp}} {
		if cerr, serr := istioHandshake(t, dir.srv, dir.cli, nil); cerr != nil || serr != nil {
			t.Fatalf("%s: client %v, server %v", dir.name, cerr, serr)
		}
	}
	// The verifier is not a formality: a workload of a foreign root with
	// the same SPIFFE ID is refused.
	rogueKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	rogueRootTmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "rogue root"}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	rogueDER, _ := x509.CreateCertificate(rand.Reader, rogueRootTmpl, rogueRootTmpl, rogueKey.Public(), rogueKey)
	rogueRoot, _ := x509.ParseCertificate(rogueDER)
	rogueLeaf, rogueLeafKey := istioWorkload(t, rogueRoot, rogueKey, "spiffe://cluster.local/ns/default/sa/app")
	rogue := &istioWorkloadID{leaf: rogueLeaf, key: rogueLeafKey, root: rogueRoot}
	if _, serr := istioHandshake(t, eastApp, rogue, nil); serr == nil {
		t.Fatal("a workload of a foreign root was accepted")
	}

	// Listing shows both, with their clusters.
	clusters := map[string]bool{}
	for _, row := range istioList(t, env) {
		cl, _ := row["cluster"].(string)
		clusters[cl] = true
		if row["profile"] != ca.ProfileIstioIntermediate || row["ca"] != ca.Root {
			t.Errorf("row %v", row)
		}
	}
	if !clusters["east"] || !clusters["west"] {
		t.Errorf("listed clusters %v, want east and west", clusters)
	}

	// Revoke west's intermediate.
	ctx := istioCtx(t)
	var revoked map[string]any
	_, err := env.Client.Do(ctx, http.MethodPost, "/v1/certificates/"+westOut.Result.Serial+"/revoke", map[string]string{"reason": "key_compromise"}, &revoked, nil)
	istioSkipIfNoRoute(t, err, "POST /v1/certificates/{serial}/revoke")
	if err != nil {
		t.Fatalf("revoke west: %v", err)
	}
	if revoked["status"] != "revoked" || revoked["cluster"] != "west" {
		t.Errorf("revoke answer %v", revoked)
	}
	var der []byte
	_, err = env.Client.Do(ctx, http.MethodGet, "/v1/cas/"+ca.Root+"/crl", nil, &der, nil)
	istioSkipIfNoRoute(t, err, "GET /v1/cas/root/crl")
	if err != nil {
		t.Fatalf("root CRL: %v", err)
	}
	crl, err := x509.ParseRevocationList(der)
	if err != nil {
		t.Fatalf("root CRL: %v", err)
	}
	crls := map[string]*x509.RevocationList{string(east.root.Raw): crl}

	// A verifier that checks the root's CRL refuses west's workload and
	// still accepts east's, as server and as client.
	westVerifier := &istioVerifier{roots: istioPool(east.root), usage: x509.ExtKeyUsageClientAuth, crls: crls}
	err = westVerifier.verify([][]byte{westApp.leaf.Raw, west.cert.Raw}, nil)
	if err == nil || !strings.Contains(err.Error(), "revoked") {
		t.Fatalf("west's workload with the CRL: %v", err)
	}
	if err := westVerifier.verify([][]byte{eastApp.leaf.Raw, east.cert.Raw}, nil); err != nil {
		t.Fatalf("east's workload with the CRL: %v", err)
	}
	eastClient := istioNewWorkload(t, east, "client")
	if cerr, serr := istioHandshake(t, eastApp, eastClient, crls); cerr != nil || serr != nil {
		t.Fatalf("east ↔ east with the CRL: client %v, server %v", cerr, serr)
	}
	if _, serr := istioHandshake(t, eastApp, westApp, crls); serr == nil || !strings.Contains(serr.Error(), "revoked") {
		t.Fatalf("west client → east server with the CRL: server error %v, want revoked", serr)
	}
	if cerr, _ := istioHandshake(t, westApp, eastClient, crls); cerr == nil || !strings.Contains(cerr.Error(), "revoked") {
		t.Fatalf("east client → west server with the CRL: client error %v, want revoked", cerr)
	}
	// Without the CRL, west still passes: revocation is what cut it off.
	if cerr, serr := istioHandshake(t, eastApp, westApp, nil); cerr != nil || serr != nil {
		t.Fatalf("without the CRL: client %v, server %v", cerr, serr)
	}
}

// ---- refusals over HTTP ----

func istioToken(name string) (token, sum string) {
	token = "tok-" + name + "-0123456789abcdef"
	h := sha256.Sum256([]byte(token))
	return token, hex.EncodeToString(h[:])
}

func istioWithPrincipals() servertest.Option {
	return func(c *config.Config, _ *server.Options) {
		add := func(name string, pc policy.Config) {
			_, sum := istioToken(name)
			c.Auth.Principals = append(c.Auth.Principals, config.Principal{Name: name, TokenSHA256: sum, Config: pc})
		}
		add("payments-ci", policy.Config{Operations: []string{policy.OpIssue, policy.OpRead}, Profiles: []string{ca.ProfileServer}, Allow: []string{"*.payments.example"}})
		add("auditor", policy.Config{Operations: []string{policy.OpRead}, Profiles: []string{ca.ProfileIstioIntermediate}})
		add("mesh-ops", policy.Config{Operations: []string{policy.OpIssue, policy.OpRead}, Profiles: []string{ca.ProfileIstioIntermediate}})
	}
}

func TestIstioRefusals(t *testing.T) {
	env := servertest.Start(t, istioWithPrincipals())
	ctx := istioCtx(t)
	admin := env.Client
	post := func(c *client.Client, body any) error {
		_, err := c.Do(ctx, http.MethodPost, istio.Route, body, nil, nil)
		return err
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	csr, err := istio.CSR(key, "east")
	if err != nil {
		t.Fatal(err)
	}
	days := func(n int) *int { return &n }
	for _, tc := range []struct {
		name  string
		body  any
		field string
	}{
		{"missing cluster", issuance.IntermediateRequest{}, "cluster"},
		{"upper-case cluster", issuance.IntermediateRequest{Cluster: "East"}, "cluster"},
		{"leading hyphen", issuance.IntermediateRequest{Cluster: "-east"}, "cluster"},
		{"dotted cluster", issuance.IntermediateRequest{Cluster: "east.example"}, "cluster"},
		{"64-char cluster", issuance.IntermediateRequest{Cluster: strings.Repeat("e", 64)}, "cluster"},
		{"validity over max", issuance.IntermediateRequest{Cluster: "east", ValidityDays: days(366)}, "validity_days"},
		{"validity zero", issuance.IntermediateRequest{Cluster: "east", ValidityDays: days(0)}, "validity_days"},
		{"csr and key_type", issuance.IntermediateRequest{Cluster: "east", CSR: csr, KeyType: issuance.KeyRSA2048}, "key_type"},
		{"garbage csr", issuance.IntermediateRequest{Cluster: "east", CSR: "-----BEGIN CERTIFICATE REQUEST-----\nZ2FyYmFnZQ==\n-----END CERTIFICATE REQUEST-----\n"}, "csr"},
		{"unknown key type", issuance.IntermediateRequest{Cluster: "east", KeyType: "dsa-1024"}, "key_type"},
		{"unknown field", map[string]any{"cluster": "east", "profile": "server"}, "profile"},
		{"cluster not a string", map[string]any{"cluster": 7}, "cluster"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			istioWantError(t, post(admin, tc.body), http.StatusBadRequest, "", tc.field)
		})
	}

	// Principals: no profile, no issue → 403; with both → 201.
	tok, _ := istioToken("payments-ci")
	istioWantError(t, post(env.NewClient(t, tok, nil), issuance.IntermediateRequest{Cluster: "east"}), http.StatusForbidden, "forbidden", "profile")
	tok, _ = istioToken("auditor")
	istioWantError(t, post(env.NewClient(t, tok, nil), issuance.IntermediateRequest{Cluster: "east"}), http.StatusForbidden, "forbidden", "operation")
	istioWantError(t, post(env.NewClient(t, "", nil), issuance.IntermediateRequest{Cluster: "east"}), http.StatusUnauthorized, "unauthenticated", "")
	tok, _ = istioToken("mesh-ops")
	mesh := env.NewClient(t, tok, nil)
	res := istioIssue(t, mesh, issuance.IntermediateRequest{Cluster: "east", CSR: csr, ValidityDays: days(10)})
	if res.CAKey != "" || res.Cluster != "east" {
		t.Fatalf("result %+v", res)
	}
	if leaf := istioCerts(t, "ca_cert", []byte(res.CACert))[0]; !key.PublicKey.Equal(leaf.PublicKey) {
		t.Fatal("not the CSR's key")
	}
	// The leaf endpoint does not issue CA certificates.
	_, err = admin.Do(ctx, http.MethodPost, "/v1/certificates", issuance.Request{Profile: ca.ProfileIstioIntermediate, CommonName: "x.example"}, nil, nil)
	istioWantError(t, err, http.StatusBadRequest, "validation_failed", "profile")
	// Other methods get the documented error shape and a pointer to listing.
	_, err = admin.Do(ctx, http.MethodGet, istio.Route, nil, nil, nil)
	ce := istioWantError(t, err, http.StatusMethodNotAllowed, "method_not_allowed", "")
	if !strings.Contains(ce.Body.Message, "profile=istio-intermediate") || ce.Header.Get("Allow") != http.MethodPost {
		t.Errorf("405 %+v, Allow %q", ce.Body, ce.Header.Get("Allow"))
	}
	// The single-certificate view carries the cluster too.
	var raw []byte
	if _, err := admin.Do(ctx, http.MethodGet, "/v1/certificates/"+res.Serial, nil, &raw, nil); err != nil {
		t.Fatal(err)
	}
	var view map[string]any
	if err := json.Unmarshal(raw, &view); err != nil || view["cluster"] != "east" || view["requester"] != "mesh-ops" {
		t.Errorf("GET view %s (%v)", raw, err)
	}
}

// A span past the root's NotAfter is a clear 400, not a clipped certificate.
func TestIstioNotPastRoot(t *testing.T) {
	env := servertest.Start(t, func(c *config.Config, _ *server.Options) {
		c.IstioValidity = config.Duration(20 * 365 * ca.Day) // more than the root's 10 years
	})
	n := 11 * 365
	_, err := env.Client.Do(istioCtx(t), http.MethodPost, istio.Route, issuance.IntermediateRequest{Cluster: "east", ValidityDays: &n}, nil, nil)
	ce := istioWantError(t, err, http.StatusBadRequest, "validation_failed", "validity")
	if !strings.Contains(ce.Body.Message, "root") {
		t.Errorf("message %q does not name the root", ce.Body.Message)
	}
}

// ---- AWS Private CA (the test double) ----

func TestIstioPCA(t *testing.T) {
	dbl := servertest.NewPCADouble(t)
	env := servertest.Start(t, servertest.WithPCA(t, dbl))
	ctx := istioCtx(t)

	// A P-384 CSR as the CLI makes it.
	key, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	csr, err := istio.CSR(key, "east")
	if err != nil {
		t.Fatal(err)
	}
	res := istioIssue(t, env.Client, issuance.IntermediateRequest{Cluster: "east", CSR: csr, ValidityDays: func() *int { n := 90; return &n }()})
	if res.CertificateARN == "" || res.CAKey != "" || res.CA != ca.Root {
		t.Fatalf("result %+v", res)
	}
	c := istioCerts(t, "ca_cert", []byte(res.CACert))[0]
	if !c.IsCA || c.MaxPathLen != 0 || !c.MaxPathLenZero {
		t.Errorf("CA %v pathlen %d", c.IsCA, c.MaxPathLen)
	}
	if want := x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature; c.KeyUsage != want {
		t.Errorf("key usage %b, want %b", c.KeyUsage, want)
	}
	if got, want := c.Subject.String(), issuance.IntermediateSubject("east").String(); got != want {
		t.Errorf("subject %q, want %q", got, want)
	}
	if len(c.DNSNames) != 0 || !key.PublicKey.Equal(c.PublicKey) {
		t.Errorf("SANs %v / key mismatch", c.DNSNames)
	}
	if span := c.NotAfter.Sub(c.NotBefore); span != 90*ca.Day {
		t.Errorf("span %s, want 90 days", span)
	}
	root := istioCerts(t, "root_cert", []byte(res.RootCert))[0]
	chain := istioCerts(t, "cert_chain", []byte(res.CertChain))
	if !root.Equal(dbl.Root()) || len(chain) != 2 || !chain[0].Equal(c) || !chain[1].Equal(root) {
		t.Fatalf("root/chain: %d certificates", len(chain))
	}
	var calls []pcatest.Call // the server's own TLS certificate comes from server-ca
	for _, call := range dbl.Calls(pcatest.OpIssueCertificate) {
		if call.CAArn == dbl.ARN(ca.Root) {
			calls = append(calls, call)
		}
	}
	if len(calls) != 1 || !strings.Contains(calls[0].TemplateArn, "SubordinateCACertificate_PathLen0") || calls[0].IdempotencyToken == "" {
		t.Fatalf("IssueCertificate calls %+v", calls)
	}

	// The CLI flow on PCA: the local key, the files, a workload that
	// verifies, pathlen enforced.
	east, out := istioCacerts(t, env, istio.CacertsOptions{Cluster: "west", WriteOptions: istio.WriteOptions{SecretYAML: true}})
	if out.Result.CertificateARN == "" || !east.root.Equal(dbl.Root()) {
		t.Fatalf("cacerts on PCA: %+v", out.Result)
	}
	leaf, _ := istioWorkload(t, east.cert, east.key, "spiffe://cluster.local/ns/default/sa/app")
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: istioPool(east.root), Intermediates: istioPool(east.chain...),
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Fatalf("workload under the PCA-issued intermediate: %v", err)
	}
	sub, subKey := istioSubCA(t, east.cert, east.key)
	deep, _ := istioWorkload(t, sub, subKey, "spiffe://cluster.local/ns/default/sa/deep")
	if _, err := deep.Verify(x509.VerifyOptions{Roots: istioPool(east.root), Intermediates: istioPool(sub, east.cert),
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err == nil {
		t.Fatal("a leaf under a sub-CA of the PCA-issued pathlen-0 intermediate verified")
	}
	if rows := istioList(t, env); len(rows) != 2 || rows[0]["certificate_arn"] == nil {
		t.Errorf("list: %v", rows)
	}

	// A root in short-lived mode cannot issue CA certificates: a clear 409
	// before any IssueCertificate call or row.
	dbl.SetUsageMode(ca.Root, pcatest.UsageModeShortLived)
	if _, err := env.Client.Do(ctx, http.MethodPost, "/v1/cas/refresh", nil, nil, nil); err != nil {
		t.Fatalf("refresh: %v", err)
	}
	issued := dbl.Count(pcatest.OpIssueCertificate)
	_, err = env.Client.Do(ctx, http.MethodPost, istio.Route, issuance.IntermediateRequest{Cluster: "south"}, nil, nil)
	ce := istioWantError(t, err, http.StatusConflict, issuance.CodeShortLivedCA, "ca")
	if !strings.Contains(ce.Body.Message, "short-lived CAs must be the last CA in a hierarchy") || ce.Body.Retryable {
		t.Errorf("409 body %+v", ce.Body)
	}
	if n := dbl.Count(pcatest.OpIssueCertificate); n != issued {
		t.Errorf("IssueCertificate called %d times for a refused request", n-issued)
	}
	if n := istioCountIntermediates(t, env); n != 2 {
		t.Errorf("%d intermediates listed, want 2", n)
	}
	// Leaf profiles on other CAs are unaffected by the root's mode.
	dbl.SetUsageMode(ca.Root, pcatest.UsageModeGeneralPurpose)
	if _, err := env.Client.Do(ctx, http.MethodPost, "/v1/cas/refresh", nil, nil, nil); err != nil {
		t.Fatalf("refresh: %v", err)
	}
	istioIssue(t, env.Client, issuance.IntermediateRequest{Cluster: "south", ValidityDays: func() *int { n := 1; return &n }()})
}

// On PCA too, a CSR's own subject and SANs never reach the intermediate:
// certgate names the cluster. This needs a template that takes the subject
// from ApiPassthrough (SubordinateCACertificate_PathLen0_APIPassthrough);
// with a plain template PCA would copy the CSR's subject.
// With SubordinateCACertificate_PathLen0/V1 (no API passthrough) PCA copies
// the CSR's subject, so certgate refuses a CSR whose subject is not the one
// it decides, before PCA is asked, and accepts one that matches exactly.
func TestIstioPCAForeignCSRSubject(t *testing.T) {
	dbl := servertest.NewPCADouble(t)
	env := servertest.Start(t, servertest.WithPCA(t, dbl))
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	mk := func(subj pkix.Name) string {
		der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: subj, DNSNames: []string{"evil.example"}}, key)
		if err != nil {
			t.Fatal(err)
		}
		return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
	}
	before := dbl.Count("IssueCertificate")
	var ce *client.Error
	_, err := env.Client.Do(context.Background(), "POST", "/v1/istio/intermediates",
		issuance.IntermediateRequest{Cluster: "east", CSR: mk(pkix.Name{CommonName: "certgate root", Organization: []string{"evil"}})}, nil, nil)
	if !errors.As(err, &ce) || ce.Status != 400 || len(ce.Body.Details) == 0 || ce.Body.Details[0].Field != "csr" {
		t.Fatalf("foreign CSR subject: %v, want 400 on csr", err)
	}
	if n := dbl.Count("IssueCertificate"); n != before {
		t.Errorf("PCA was asked %d times for a refused CSR", n-before)
	}
	res := istioIssue(t, env.Client, issuance.IntermediateRequest{Cluster: "east", CSR: mk(issuance.IntermediateSubject("east"))})
	c := istioCerts(t, "ca_cert", []byte(res.CACert))[0]
	if got, want := c.Subject.String(), issuance.IntermediateSubject("east").String(); got != want {
		t.Errorf("subject %q, want %q", got, want)
	}
	if len(c.DNSNames) != 0 || !c.IsCA || c.MaxPathLen != 0 || !key.PublicKey.Equal(c.PublicKey) {
		t.Errorf("SANs %v CA %v pathlen %d", c.DNSNames, c.IsCA, c.MaxPathLen)
	}
}

// ---- the CLI binary ----

func TestIstioCLIBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the certgate binary")
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go tool on PATH to build the CLI")
	}
	env := servertest.Start(t)
	tmp := t.TempDir()
	bin := filepath.Join(tmp, "certgate")
	if out, err := exec.Command(goBin, "build", "-o", bin, "github.com/certgate/certgate/cmd/certgate").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	rootFile := filepath.Join(tmp, "root.pem")
	if err := os.WriteFile(rootFile, env.RootPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) (string, string, error) {
		cmd := exec.Command(bin, args...)
		cmd.Dir = tmp
		cmd.Env = append(os.Environ(), "CERTGATE_SERVER="+env.URL, "CERTGATE_TOKEN="+env.Srv.Token, "CERTGATE_CA_FILE="+rootFile)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		return stdout.String(), stderr.String(), err
	}
	out := filepath.Join(tmp, "east")
	stdout, stderr, err := run("istio", "cacerts", "--cluster", "east", "--out", out, "--secret-yaml", "--days", "30")
	if err != nil {
		t.Fatalf("certgate istio cacerts: %v\n%s\n%s", err, stdout, stderr)
	}
	for _, want := range []string{"cluster     east", "kubectl apply -f " + filepath.Join(out, "cacerts.yaml"),
		"kubectl create secret generic cacerts -n istio-system", "kubectl rollout restart deployment/istiod -n istio-system"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("output lacks %q:\n%s", want, stdout)
		}
	}
	if strings.Contains(stdout, "PRIVATE KEY") {
		t.Error("the CLI printed a private key")
	}
	cl := istioLoad(t, "east", out)
	istioMode(t, filepath.Join(out, istio.FileCAKey), 0o600)
	istioMode(t, filepath.Join(out, istio.FileSecretYAML), 0o600)
	istioCheckManifest(t, out, "east", istio.DefaultNamespace)
	if span := cl.cert.NotAfter.Sub(cl.cert.NotBefore); span != 30*ca.Day {
		t.Errorf("--days 30 gave %s", span)
	}
	// Again without --force: refused, non-zero exit, files untouched.
	_, stderr, err = run("istio", "cacerts", "--cluster", "east", "--out", out)
	if err == nil || !strings.Contains(stderr, "--force") {
		t.Fatalf("second run: %v\n%s", err, stderr)
	}
	if !istioLoad(t, "east", out).cert.Equal(cl.cert) {
		t.Error("a refused run changed the files")
	}
	// A bad cluster name fails before any request.
	_, stderr, err = run("istio", "cacerts", "--cluster", "East", "--out", filepath.Join(tmp, "bad"))
	if err == nil || !strings.Contains(stderr, "lower case") {
		t.Fatalf("bad cluster: %v\n%s", err, stderr)
	}
	if _, err := os.Stat(filepath.Join(tmp, "bad")); err == nil {
		t.Error("a refused run created the output directory")
	}
	// --json: the result without the key, and the files.
	stdout, stderr, err = run("istio", "cacerts", "--cluster", "west", "--out", filepath.Join(tmp, "west"), "--server-key", "--json")
	if err != nil {
		t.Fatalf("--json: %v\n%s", err, stderr)
	}
	var js struct {
		Intermediate map[string]any `json:"intermediate"`
		Files        []string       `json:"files"`
	}
	if err := json.Unmarshal([]byte(stdout), &js); err != nil || js.Intermediate["cluster"] != "west" || len(js.Files) != 4 {
		t.Fatalf("--json output %s (%v)", stdout, err)
	}
	if _, has := js.Intermediate["ca_key"]; has || strings.Contains(stdout, "PRIVATE KEY") {
		t.Error("--json printed the CA key")
	}
	istioLoad(t, "west", filepath.Join(tmp, "west"))
}
