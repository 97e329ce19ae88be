package verify_test

import (
	"bytes"
	"context"
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
	"strings"
	"testing"
	"time"

	"github.com/certgate/certgate/internal/ca"
	"github.com/certgate/certgate/internal/verify"
)

// hierarchy is a certgate local CA (root and three intermediates, as
// `certgate serve` creates them) in a temporary directory.
type hierarchy struct {
	l      *ca.Local
	chains map[string][]*x509.Certificate
}

func newHierarchy(t *testing.T) *hierarchy {
	t.Helper()
	l, err := ca.OpenLocal(ca.LocalOptions{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	h := &hierarchy{l: l, chains: map[string][]*x509.Certificate{}}
	for _, n := range ca.Names {
		info, err := l.Describe(context.Background(), n)
		if err != nil {
			t.Fatal(err)
		}
		h.chains[n] = append([]*x509.Certificate{info.Certificate}, info.Chain...)
	}
	return h
}

var leafKey = func() crypto.Signer {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	return k
}()

// issue signs a server certificate through the local CA's own Sign.
func (h *hierarchy) issue(t *testing.T, notBefore, notAfter time.Time) *x509.Certificate {
	t.Helper()
	serial, err := ca.NewSerial()
	if err != nil {
		t.Fatal(err)
	}
	res, err := h.l.Sign(context.Background(), &ca.SignRequest{
		Profile: ca.DefaultProfiles(0)[ca.ProfileServer], CA: ca.ServerCA, PublicKey: leafKey.Public(),
		Subject: pkix.Name{CommonName: "api.internal"}, DNSNames: []string{"api.internal"},
		NotBefore: notBefore, NotAfter: notAfter, Serial: serial,
	})
	if err != nil {
		t.Fatal(err)
	}
	return res.Leaf
}

// crl makes server-ca's CRL listing revoked, signed by signer (nil: the
// server CA's own key), with the given next update.
func (h *hierarchy) crl(t *testing.T, signer crypto.Signer, nextUpdate time.Time, revoked ...*x509.Certificate) []byte {
	t.Helper()
	issuer, key, _ := h.l.Signer(ca.ServerCA)
	if signer != nil {
		key = signer
	}
	var entries []x509.RevocationListEntry
	for _, c := range revoked {
		entries = append(entries, x509.RevocationListEntry{SerialNumber: c.SerialNumber, RevocationTime: time.Now().Add(-time.Minute), ReasonCode: 1})
	}
	der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
		Number: big.NewInt(7), ThisUpdate: time.Now().Add(-time.Hour), NextUpdate: nextUpdate, RevokedCertificateEntries: entries,
	}, issuer, key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// fakeSource serves what a server would.
type fakeSource struct {
	roots    []*x509.Certificate
	rootsErr error
	chains   map[string][]*x509.Certificate
	crls     map[string][]byte
}

func (f *fakeSource) TrustBundle(context.Context) ([]*x509.Certificate, error) {
	return f.roots, f.rootsErr
}

func (f *fakeSource) Chain(_ context.Context, name string) ([]*x509.Certificate, error) {
	if c, ok := f.chains[name]; ok {
		return c, nil
	}
	return nil, errors.New("GET /v1/cas/" + name + "/chain: 404 not_found")
}

func (f *fakeSource) CRL(_ context.Context, name string) ([]byte, error) {
	if b, ok := f.crls[name]; ok {
		return b, nil
	}
	return nil, errors.New("GET /v1/cas/" + name + "/crl: 404 not_found")
}

func selfSigned(t *testing.T) *x509.Certificate {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(42), Subject: pkix.Name{CommonName: "api.internal"}, DNSNames: []string{"api.internal"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, k.Public(), k)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// tamper flips a bit in the signature.
func tamper(t *testing.T, c *x509.Certificate) *x509.Certificate {
	t.Helper()
	raw := bytes.Clone(c.Raw)
	sig := c.Signature
	i := bytes.LastIndex(raw, sig)
	if i < 0 {
		t.Fatal("signature not found in DER")
	}
	raw[i+len(sig)/2] ^= 0x01
	out, err := x509.ParseCertificate(raw)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestVerify(t *testing.T) {
	h := newHierarchy(t)
	stranger := newHierarchy(t) // another certgate: same CA names, other keys
	now := time.Now()
	fresh := h.issue(t, now.Add(-time.Minute), now.Add(7*ca.Day-time.Minute))
	revoked := h.issue(t, now.Add(-time.Minute), now.Add(ca.Day))
	expired := h.issue(t, now.Add(-50*time.Minute), now.Add(-10*time.Minute)) // the CA is an hour old
	otherKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	root := h.chains[ca.Root]

	server := func(crl []byte) *fakeSource {
		f := &fakeSource{roots: root, chains: h.chains, crls: map[string][]byte{}}
		if crl != nil {
			f.crls[ca.ServerCA] = crl
		}
		return f
	}
	goodCRL := h.crl(t, nil, now.Add(ca.Day), revoked)

	type want map[string]verify.Status
	all := func(trust, sig, validity, rev verify.Status) want {
		return want{verify.CheckTrust: trust, verify.CheckSignature: sig, verify.CheckValidity: validity, verify.CheckRevocation: rev}
	}
	const ok, fail, skip = verify.OK, verify.Fail, verify.Skip
	for _, tc := range []struct {
		name   string
		opts   verify.Options
		want   want
		wantOK bool
		detail map[string]string // check → substring of its detail
	}{
		{name: "fresh certgate certificate", opts: verify.Options{Cert: fresh, Source: server(goodCRL)},
			want: all(ok, ok, ok, ok), wantOK: true,
			detail: map[string]string{verify.CheckTrust: `via "certgate local server-ca"`, verify.CheckRevocation: "not on the CRL of server-ca (number 7"}},
		{name: "fresh, the server has no CRL endpoint", opts: verify.Options{Cert: fresh, Source: server(nil)},
			want: all(ok, ok, ok, skip), wantOK: true,
			detail: map[string]string{verify.CheckRevocation: "no CRL for server-ca: GET /v1/cas/server-ca/crl: 404"}},
		{name: "fresh, revocation required but unavailable", opts: verify.Options{Cert: fresh, Source: server(nil), RequireRevocation: true},
			want: all(ok, ok, ok, skip), wantOK: false},
		{name: "self-signed stranger", opts: verify.Options{Cert: selfSigned(t), Source: server(goodCRL)},
			want: all(fail, ok, ok, skip), wantOK: false,
			detail: map[string]string{verify.CheckTrust: "does not chain to the trust bundle", verify.CheckSignature: "self-signed"}},
		{name: "certificate of another certgate", opts: verify.Options{Cert: stranger.issue(t, now.Add(-time.Minute), now.Add(ca.Day)), Source: server(goodCRL)},
			want: all(fail, fail, ok, skip), wantOK: false,
			detail: map[string]string{verify.CheckSignature: "does not verify with the issuer's key", verify.CheckRevocation: "no verified issuer"}},
		{name: "expired", opts: verify.Options{Cert: expired, Source: server(goodCRL)},
			want: all(ok, ok, fail, ok), wantOK: false,
			detail: map[string]string{verify.CheckValidity: "expired at"}},
		{name: "not yet valid", opts: verify.Options{Cert: fresh, Source: server(goodCRL), Now: now.Add(-time.Hour)},
			want: all(ok, ok, fail, ok), wantOK: false,
			detail: map[string]string{verify.CheckValidity: "not valid before"}},
		{name: "tampered signature", opts: verify.Options{Cert: tamper(t, fresh), Source: server(goodCRL)},
			want: all(fail, fail, ok, skip), wantOK: false,
			detail: map[string]string{verify.CheckSignature: "does not verify with the issuer's key"}},
		{name: "revoked", opts: verify.Options{Cert: revoked, Source: server(goodCRL)},
			want: all(ok, ok, ok, fail), wantOK: false,
			detail: map[string]string{verify.CheckRevocation: "revoked at"}},
		{name: "revoked, PEM CRL", opts: verify.Options{Cert: revoked, Source: server(pemCRL(goodCRL))},
			want: all(ok, ok, ok, fail), wantOK: false},
		{name: "CRL not signed by the CA", opts: verify.Options{Cert: fresh, Source: server(h.crl(t, otherKey, now.Add(ca.Day)))},
			want: all(ok, ok, ok, fail), wantOK: false,
			detail: map[string]string{verify.CheckRevocation: "not signed by its key"}},
		{name: "CRL out of date", opts: verify.Options{Cert: fresh, Source: server(h.crl(t, nil, now.Add(-time.Minute)))},
			want: all(ok, ok, ok, fail), wantOK: false,
			detail: map[string]string{verify.CheckRevocation: "out of date"}},
		{name: "CRL garbage", opts: verify.Options{Cert: fresh, Source: server([]byte("<html>not a CRL</html>"))},
			want: all(ok, ok, ok, fail), wantOK: false},
		{name: "offline: --ca-file and --chain", opts: verify.Options{Cert: fresh, Roots: root, Intermediates: h.chains[ca.ServerCA][:1]},
			want: all(ok, ok, ok, skip), wantOK: true,
			detail: map[string]string{verify.CheckRevocation: "no server to ask"}},
		{name: "offline without the chain", opts: verify.Options{Cert: fresh, Roots: root},
			want: all(fail, fail, ok, skip), wantOK: false,
			detail: map[string]string{verify.CheckSignature: "give its chain with --chain"}},
		{name: "--ca-file of another certgate", opts: verify.Options{Cert: fresh, Roots: stranger.chains[ca.Root], Source: server(goodCRL)},
			want: all(fail, ok, ok, ok), wantOK: false},
		{name: "trust bundle unavailable", opts: verify.Options{Cert: fresh, Source: &fakeSource{rootsErr: errors.New("connection refused"), chains: h.chains}},
			want: all(fail, ok, ok, skip), wantOK: false,
			detail: map[string]string{verify.CheckTrust: "fetching the trust bundle: connection refused"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := verify.Run(context.Background(), tc.opts)
			got := want{}
			for _, c := range r.Checks {
				got[c.Name] = c.Status
			}
			var out strings.Builder
			r.Print(&out)
			t.Log("\n" + out.String())
			for name, st := range tc.want {
				if got[name] != st {
					t.Errorf("%s: %s, want %s\n%s", name, got[name], st, out.String())
				}
			}
			if r.OK != tc.wantOK {
				t.Errorf("OK = %v, want %v\n%s", r.OK, tc.wantOK, out.String())
			}
			for name, sub := range tc.detail {
				for _, c := range r.Checks {
					if c.Name == name && !strings.Contains(c.Detail, sub) {
						t.Errorf("%s detail %q, want it to contain %q", name, c.Detail, sub)
					}
				}
			}
			wantResult := "result:     OK"
			if !tc.wantOK {
				wantResult = "result:     FAIL"
			}
			if !strings.Contains(out.String(), wantResult) {
				t.Errorf("printed report lacks %q:\n%s", wantResult, out.String())
			}
			if got[verify.CheckRevocation] == skip && !strings.Contains(out.String(), "revocation: not checked (") {
				t.Errorf("a skipped revocation check is not printed as 'not checked':\n%s", out.String())
			}
		})
	}
}

func pemCRL(der []byte) []byte {
	return []byte("-----BEGIN X509 CRL-----\n" + b64(der) + "\n-----END X509 CRL-----\n")
}

func TestIssuingCA(t *testing.T) {
	h := newHierarchy(t)
	leaf := h.issue(t, time.Now().Add(-time.Minute), time.Now().Add(ca.Day))
	name, c := verify.IssuingCA(leaf, h.chains)
	if name != ca.ServerCA || !c.Equal(h.chains[ca.ServerCA][0]) {
		t.Fatalf("IssuingCA = %s", name)
	}
	if name, _ := verify.IssuingCA(h.chains[ca.ClientCA][0], h.chains); name != ca.Root {
		t.Fatalf("IssuingCA(client-ca) = %q, want root", name)
	}
	if name, _ := verify.IssuingCA(selfSigned(t), h.chains); name != "" {
		t.Fatalf("IssuingCA(stranger) = %q", name)
	}
}

func TestParsePEM(t *testing.T) {
	h := newHierarchy(t)
	leaf := h.issue(t, time.Now().Add(-time.Minute), time.Now().Add(ca.Day))
	bundle := pemOf(leaf) + "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n" + pemOf(h.chains[ca.ServerCA][0])
	got, err := verify.ParsePEM([]byte(bundle))
	if err != nil || len(got) != 2 || !got[0].Equal(leaf) {
		t.Fatalf("ParsePEM(leaf, key, CA) = %d certificates, %v", len(got), err)
	}
	if got, err := verify.ParsePEM(leaf.Raw); err != nil || len(got) != 1 {
		t.Fatalf("ParsePEM(DER) = %v, %v", got, err)
	}
	if _, err := verify.ParsePEM([]byte("hello")); err == nil {
		t.Fatal("ParsePEM of garbage succeeded")
	}
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

func pemOf(c *x509.Certificate) string {
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw}))
}
