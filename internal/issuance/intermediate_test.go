package issuance

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/certgate/certgate/internal/apierror"
	"github.com/certgate/certgate/internal/ca"
	"github.com/certgate/certgate/internal/metrics"
	"github.com/certgate/certgate/internal/policy"
	"github.com/certgate/certgate/internal/store"
)

// Helpers here are prefixed "im" so they cannot collide with other test
// files of this package.

type imGate struct {
	l    *ca.Local
	mode string // UsageMode's answer
}

func (g *imGate) Usable(ctx context.Context, name string) (*x509.Certificate, error) {
	info, err := g.l.Describe(ctx, name)
	if err != nil {
		return nil, err
	}
	return info.Certificate, nil
}

// imModeGate also reports a usage mode, as the CA cache may.
type imModeGate struct{ imGate }

func (g *imModeGate) UsageMode(string) string { return g.mode }

// imPCALike is the local CA dressed up as aws-pca, with a usage mode.
type imPCALike struct {
	*ca.Local
	mode      string
	describes int
}

func (b *imPCALike) Kind() string { return "aws-pca" }

func (b *imPCALike) Describe(ctx context.Context, name string) (*ca.Info, error) {
	b.describes++
	info, err := b.Local.Describe(ctx, name)
	if err != nil {
		return nil, err
	}
	cp := *info
	cp.Backend, cp.UsageMode = "aws-pca", b.mode
	return &cp, nil
}

// imBadPathLen signs CA certificates with pathlen 1, as a wrong PCA
// template would.
type imBadPathLen struct{ *ca.Local }

func (b *imBadPathLen) Sign(ctx context.Context, req *ca.SignRequest) (*ca.SignResult, error) {
	r := *req
	p := *req.Profile
	p.MaxPathLen = 1
	r.Profile = &p
	return b.Local.Sign(ctx, &r)
}

type imEnv struct {
	svc   *Service
	local *ca.Local
	st    *store.Store
}

func imSetup(t *testing.T, istioValidity time.Duration, wrap func(*ca.Local) (ca.Backend, CAGate)) *imEnv {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	st, err := store.Open(ctx, store.Options{Driver: "sqlite", DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	l, err := ca.OpenLocal(ca.LocalOptions{Dir: dir + "/ca"})
	if err != nil {
		t.Fatal(err)
	}
	var backend ca.Backend = l
	var gate CAGate = &imGate{l: l}
	if wrap != nil {
		backend, gate = wrap(l)
	}
	profiles := ca.DefaultProfiles(istioValidity)
	if err := profiles.Validate(); err != nil {
		t.Fatal(err)
	}
	svc := &Service{Backend: backend, Store: st, Profiles: profiles, Log: zap.NewNop(), Metrics: metrics.New(), Now: time.Now, Gate: gate}
	return &imEnv{svc: svc, local: l, st: st}
}

func imAdmin() Caller {
	return Caller{Principal: "admin", Policy: policy.AllowAll(), RequestID: "req-1"}
}

func imCaller(t *testing.T, name string, c policy.Config) Caller {
	t.Helper()
	p, err := policy.Compile(c)
	if err != nil {
		t.Fatal(err)
	}
	return Caller{Principal: name, Policy: p}
}

func imDays(n int) *int { return &n }

func imCSR(t *testing.T, key crypto.Signer, tmpl *x509.CertificateRequest) string {
	t.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
}

func imCerts(t *testing.T, s string) []*x509.Certificate {
	t.Helper()
	certs, err := parseCertsPEM(s)
	if err != nil {
		t.Fatal(err)
	}
	return certs
}

func imWantErr(t *testing.T, err error, status int, code, field string) *apierror.Error {
	t.Helper()
	if err == nil {
		t.Fatalf("want %d %s (field %q), got success", status, code, field)
	}
	ae := apierror.As(err)
	if ae.Status != status || (code != "" && ae.Code != code) {
		t.Fatalf("want %d %s, got %d %s: %s", status, code, ae.Status, ae.Code, ae.Message)
	}
	if field != "" {
		found := false
		for _, d := range ae.Details {
			found = found || d.Field == field
		}
		if !found {
			t.Fatalf("want a detail for field %q, got %+v (%s)", field, ae.Details, ae.Message)
		}
	}
	return ae
}

func imCountRows(t *testing.T, st *store.Store) int64 {
	t.Helper()
	var n int64
	if err := st.DB().Model(&store.Certificate{}).Count(&n).Error; err != nil {
		t.Fatal(err)
	}
	return n
}

// checkIstioCA asserts the certificate is the cluster's pathlen-0 CA.
func imCheckCA(t *testing.T, c *x509.Certificate, cluster string) {
	t.Helper()
	if !c.BasicConstraintsValid || !c.IsCA || c.MaxPathLen != 0 || !c.MaxPathLenZero {
		t.Errorf("basic constraints: valid=%v CA=%v pathlen=%d zero=%v; want CA:TRUE, pathlen:0", c.BasicConstraintsValid, c.IsCA, c.MaxPathLen, c.MaxPathLenZero)
	}
	if want := x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature; c.KeyUsage != want {
		t.Errorf("key usage %b, want %b", c.KeyUsage, want)
	}
	if len(c.ExtKeyUsage) != 0 || len(c.DNSNames)+len(c.IPAddresses)+len(c.URIs)+len(c.EmailAddresses) != 0 {
		t.Errorf("EKU %v / SANs %v %v %v %v: a cluster CA carries none", c.ExtKeyUsage, c.DNSNames, c.IPAddresses, c.URIs, c.EmailAddresses)
	}
	if c.Subject.CommonName != "istio-intermediate "+cluster {
		t.Errorf("subject CN %q, want %q", c.Subject.CommonName, "istio-intermediate "+cluster)
	}
	if got := c.Subject.String(); got != IntermediateSubject(cluster).String() {
		t.Errorf("subject %q, want %q (O=certgate, OU=istio: signAndRecord must use p.subject())", got, IntermediateSubject(cluster).String())
	}
}

func TestIntermediateServerKey(t *testing.T) {
	e := imSetup(t, 0, nil)
	ctx := context.Background()
	res, err := e.svc.IssueIntermediate(ctx, imAdmin(), IntermediateRequest{Cluster: "east"})
	if err != nil {
		t.Fatal(err)
	}
	if res.Cluster != "east" || res.Profile != ca.ProfileIstioIntermediate || res.CA != ca.Root || res.Serial == "" || res.CertificateARN != "" {
		t.Fatalf("result %+v", res)
	}
	leaf := imCerts(t, res.CACert)
	if len(leaf) != 1 {
		t.Fatalf("ca_cert holds %d certificates", len(leaf))
	}
	imCheckCA(t, leaf[0], "east")
	if res.Subject != leaf[0].Subject.String() {
		t.Errorf("subject field %q, certificate %q", res.Subject, leaf[0].Subject)
	}
	if ca.FormatSerial(leaf[0].SerialNumber) != res.Serial {
		t.Errorf("serial %s, certificate %s", res.Serial, ca.FormatSerial(leaf[0].SerialNumber))
	}
	// Default validity: the profile's 365 days, counted NotBefore → NotAfter.
	if span := leaf[0].NotAfter.Sub(leaf[0].NotBefore); span != 365*ca.Day {
		t.Errorf("span %s, want 365 days", span)
	}
	root := e.local.Root()
	roots := imCerts(t, res.RootCert)
	if len(roots) != 1 || !roots[0].Equal(root) {
		t.Fatal("root_cert is not the root")
	}
	chain := imCerts(t, res.CertChain)
	if len(chain) != 2 || !chain[0].Equal(leaf[0]) || !chain[1].Equal(root) {
		t.Fatalf("cert_chain: %d certificates; want ca-cert then root", len(chain))
	}
	key, err := x509.ParsePKCS8PrivateKey(mustPEM(t, res.CAKey, "PRIVATE KEY"))
	if err != nil {
		t.Fatal(err)
	}
	ek, ok := key.(*ecdsa.PrivateKey)
	if !ok || ek.Curve != elliptic.P256() || !ek.PublicKey.Equal(leaf[0].PublicKey) {
		t.Fatalf("ca_key %T does not match ca_cert or is not P-256", key)
	}
	// The row and the event carry the cluster.
	row, err := e.st.GetBySerial(ctx, res.Serial)
	if err != nil {
		t.Fatal(err)
	}
	if row.Cluster != "east" || row.Status != store.StatusIssued || row.Profile != ca.ProfileIstioIntermediate || row.CA != ca.Root || len(row.SANs) != 0 {
		t.Fatalf("row %+v", row)
	}
	evs, _, err := e.st.ListEvents(ctx, store.EventFilter{CA: ca.Root, Type: store.EventIssued, Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 1 || evs[0].Serial != res.Serial || evs[0].Details["cluster"] != "east" || evs[0].Details["profile"] != ca.ProfileIstioIntermediate {
		t.Fatalf("events %+v", evs)
	}
}

func mustPEM(t *testing.T, s, typ string) []byte {
	t.Helper()
	b, rest := pem.Decode([]byte(s))
	if b == nil || b.Type != typ || strings.TrimSpace(string(rest)) != "" {
		t.Fatalf("want one PEM %s block", typ)
	}
	return b.Bytes
}

func TestIntermediateKeyTypes(t *testing.T) {
	e := imSetup(t, 0, nil)
	for _, kt := range []string{KeyECDSAP384, KeyRSA2048} {
		res, err := e.svc.IssueIntermediate(context.Background(), imAdmin(), IntermediateRequest{Cluster: "kt-" + kt, KeyType: kt, ValidityDays: imDays(30)})
		if err != nil {
			t.Fatalf("%s: %v", kt, err)
		}
		leaf := imCerts(t, res.CACert)[0]
		switch kt {
		case KeyECDSAP384:
			if k, ok := leaf.PublicKey.(*ecdsa.PublicKey); !ok || k.Curve != elliptic.P384() {
				t.Errorf("%s: key %T", kt, leaf.PublicKey)
			}
		case KeyRSA2048:
			if k, ok := leaf.PublicKey.(*rsa.PublicKey); !ok || k.N.BitLen() != 2048 {
				t.Errorf("%s: key %T", kt, leaf.PublicKey)
			}
		}
		if span := leaf.NotAfter.Sub(leaf.NotBefore); span != 30*ca.Day {
			t.Errorf("span %s, want 30 days", span)
		}
	}
}

// A CSR's subject and extensions are ignored: certgate names the cluster,
// and the profile decides the rest.
func TestIntermediateCSRNamesIgnored(t *testing.T) {
	e := imSetup(t, 0, nil)
	key, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	csr := imCSR(t, key, &x509.CertificateRequest{
		Subject:  pkix.Name{CommonName: "certgate local root", Organization: []string{"evil"}},
		DNSNames: []string{"evil.example"},
	})
	res, err := e.svc.IssueIntermediate(context.Background(), imAdmin(), IntermediateRequest{Cluster: "west", CSR: csr})
	if err != nil {
		t.Fatal(err)
	}
	if res.CAKey != "" {
		t.Error("ca_key returned for a CSR")
	}
	leaf := imCerts(t, res.CACert)[0]
	imCheckCA(t, leaf, "west")
	if !key.PublicKey.Equal(leaf.PublicKey) {
		t.Error("certificate is not for the CSR's key")
	}
}

func TestIntermediateBadInput(t *testing.T) {
	e := imSetup(t, 0, nil)
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 1024)
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	goodCSR := imCSR(t, ecKey, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "x"}})
	cases := []struct {
		name  string
		req   IntermediateRequest
		field string
	}{
		{"no cluster", IntermediateRequest{}, "cluster"},
		{"upper case", IntermediateRequest{Cluster: "East"}, "cluster"},
		{"leading hyphen", IntermediateRequest{Cluster: "-east"}, "cluster"},
		{"trailing hyphen", IntermediateRequest{Cluster: "east-"}, "cluster"},
		{"dot", IntermediateRequest{Cluster: "east.prod"}, "cluster"},
		{"underscore", IntermediateRequest{Cluster: "east_1"}, "cluster"},
		{"space", IntermediateRequest{Cluster: "east 1"}, "cluster"},
		{"unicode", IntermediateRequest{Cluster: "öst"}, "cluster"},
		{"64 chars", IntermediateRequest{Cluster: strings.Repeat("a", 64)}, "cluster"},
		{"zero days", IntermediateRequest{Cluster: "east", ValidityDays: imDays(0)}, "validity_days"},
		{"over max", IntermediateRequest{Cluster: "east", ValidityDays: imDays(366)}, "validity_days"},
		{"negative", IntermediateRequest{Cluster: "east", ValidityDays: imDays(-1)}, "validity_days"},
		{"csr and key_type", IntermediateRequest{Cluster: "east", CSR: goodCSR, KeyType: KeyRSA2048}, "key_type"},
		{"garbage csr", IntermediateRequest{Cluster: "east", CSR: "-----BEGIN CERTIFICATE REQUEST-----\nbm9wZQ==\n-----END CERTIFICATE REQUEST-----\n"}, "csr"},
		{"not pem", IntermediateRequest{Cluster: "east", CSR: "hello"}, "csr"},
		{"weak key", IntermediateRequest{Cluster: "east", CSR: imCSR(t, rsaKey, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "x"}})}, "csr"},
		{"key type", IntermediateRequest{Cluster: "east", KeyType: "ed25519"}, "key_type"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := e.svc.IssueIntermediate(context.Background(), imAdmin(), tc.req)
			imWantErr(t, err, http.StatusBadRequest, apierror.CodeValidation, tc.field)
		})
	}
	if n := imCountRows(t, e.st); n != 0 {
		t.Errorf("%d certificate rows after refusals, want 0", n)
	}
	// 63 characters, digits and inner hyphens are fine.
	for _, ok := range []string{strings.Repeat("a", 63), "1", "east-1", "0-x"} {
		if err := ValidateCluster(ok); err != nil {
			t.Errorf("ValidateCluster(%q): %v", ok, err)
		}
	}
}

func TestIntermediateAuthorization(t *testing.T) {
	e := imSetup(t, 0, nil)
	ctx := context.Background()
	noProfile := imCaller(t, "payments-ci", policy.Config{Operations: []string{policy.OpIssue}, Profiles: []string{ca.ProfileServer}, Allow: []string{"*.example.com"}})
	_, err := e.svc.IssueIntermediate(ctx, noProfile, IntermediateRequest{Cluster: "east"})
	imWantErr(t, err, http.StatusForbidden, apierror.CodeForbidden, "profile")

	noIssue := imCaller(t, "reader", policy.Config{Operations: []string{policy.OpRead}, Profiles: []string{ca.ProfileIstioIntermediate}})
	_, err = e.svc.IssueIntermediate(ctx, noIssue, IntermediateRequest{Cluster: "east"})
	imWantErr(t, err, http.StatusForbidden, apierror.CodeForbidden, "operation")

	_, err = e.svc.IssueIntermediate(ctx, Caller{Principal: "ghost"}, IntermediateRequest{Cluster: "east"})
	imWantErr(t, err, http.StatusForbidden, apierror.CodeForbidden, "")

	// Name patterns do not apply (no SANs): a mesh operator with the
	// profile and no allow list may issue.
	mesh := imCaller(t, "mesh-ops", policy.Config{Operations: []string{policy.OpIssue}, Profiles: []string{ca.ProfileIstioIntermediate}, MaxValidity: 90 * ca.Day})
	// Its max_validity caps the span as for any issuance.
	_, err = e.svc.IssueIntermediate(ctx, mesh, IntermediateRequest{Cluster: "east"})
	imWantErr(t, err, http.StatusForbidden, apierror.CodeForbidden, "validity")
	res, err := e.svc.IssueIntermediate(ctx, mesh, IntermediateRequest{Cluster: "east", ValidityDays: imDays(90)})
	if err != nil {
		t.Fatal(err)
	}
	row, err := e.st.GetBySerial(ctx, res.Serial)
	if err != nil || row.Requester != "mesh-ops" {
		t.Fatalf("row %+v, %v", row, err)
	}
	// Refusals are audited.
	evs, _, err := e.st.ListEvents(ctx, store.EventFilter{Type: store.EventRefused, Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 4 {
		t.Errorf("%d refused events, want 4", len(evs))
	}
}

// No certificate may outlive its issuer: a span past the root's NotAfter
// is a 400 naming the validity, before anything is recorded.
func TestIntermediateNotPastRoot(t *testing.T) {
	e := imSetup(t, 20*365*ca.Day, nil) // allow more than the root's 10 years
	_, err := e.svc.IssueIntermediate(context.Background(), imAdmin(), IntermediateRequest{Cluster: "east", ValidityDays: imDays(11 * 365)})
	ae := imWantErr(t, err, http.StatusBadRequest, apierror.CodeValidation, "validity")
	if !strings.Contains(ae.Message, "root") {
		t.Errorf("message %q does not name the root", ae.Message)
	}
	if n := imCountRows(t, e.st); n != 0 {
		t.Errorf("%d rows, want 0", n)
	}
}

func TestIntermediateShortLivedPCA(t *testing.T) {
	for _, viaGate := range []bool{true, false} {
		name := map[bool]string{true: "cache reports the mode", false: "backend describes it"}[viaGate]
		t.Run(name, func(t *testing.T) {
			var pca *imPCALike
			var gate *imModeGate
			e := imSetup(t, 0, func(l *ca.Local) (ca.Backend, CAGate) {
				pca = &imPCALike{Local: l, mode: UsageModeShortLived}
				gate = &imModeGate{imGate{l: l, mode: UsageModeShortLived}}
				if viaGate {
					return pca, gate
				}
				return pca, &imGate{l: l}
			})
			_, err := e.svc.IssueIntermediate(context.Background(), imAdmin(), IntermediateRequest{Cluster: "east"})
			ae := imWantErr(t, err, http.StatusConflict, CodeShortLivedCA, "ca")
			if !strings.Contains(ae.Message, "short-lived CAs must be the last CA in a hierarchy") || ae.Retryable {
				t.Errorf("message %q retryable %v", ae.Message, ae.Retryable)
			}
			if n := imCountRows(t, e.st); n != 0 {
				t.Errorf("%d rows, want 0: nothing is recorded for a refused request", n)
			}
			if viaGate && pca.describes != 0 {
				t.Errorf("%d Describe calls; the cache's usage mode should be used", pca.describes)
			}
			// A general-purpose CA issues.
			pca.mode, gate.mode = "GENERAL_PURPOSE", "GENERAL_PURPOSE"
			res, err := e.svc.IssueIntermediate(context.Background(), imAdmin(), IntermediateRequest{Cluster: "east"})
			if err != nil {
				t.Fatal(err)
			}
			imCheckCA(t, imCerts(t, res.CACert)[0], "east")
		})
	}
}

// A CA certificate that is not exactly pathlen 0 (a wrong PCA template)
// never reaches the client.
func TestIntermediateWrongPathLenRefused(t *testing.T) {
	e := imSetup(t, 0, func(l *ca.Local) (ca.Backend, CAGate) { return &imBadPathLen{l}, &imGate{l: l} })
	_, err := e.svc.IssueIntermediate(context.Background(), imAdmin(), IntermediateRequest{Cluster: "east"})
	imWantErr(t, err, http.StatusBadGateway, apierror.CodeUpstream, "")
}

func TestIntermediateIdempotency(t *testing.T) {
	e := imSetup(t, 0, nil)
	ctx := context.Background()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	req := IntermediateRequest{Cluster: "east", CSR: imCSR(t, key, &x509.CertificateRequest{Subject: IntermediateSubject("east")})}
	c := imAdmin()
	c.IdempotencyKey = "k-1"
	first, err := e.svc.IssueIntermediate(ctx, c, req)
	if err != nil {
		t.Fatal(err)
	}
	again, err := e.svc.IssueIntermediate(ctx, c, req)
	if err != nil {
		t.Fatal(err)
	}
	if !again.Replayed || again.Serial != first.Serial || again.CertChain != first.CertChain || again.RootCert != first.RootCert || again.Cluster != "east" {
		t.Fatalf("replay %+v, first %+v", again, first)
	}
	req.Cluster = "west"
	_, err = e.svc.IssueIntermediate(ctx, c, req)
	imWantErr(t, err, http.StatusUnprocessableEntity, apierror.CodeIdempotencyReuse, "")
	if n := imCountRows(t, e.st); n != 1 {
		t.Errorf("%d rows, want 1", n)
	}
}

func TestIntermediateProfileMissing(t *testing.T) {
	e := imSetup(t, 0, nil)
	delete(e.svc.Profiles, ca.ProfileIstioIntermediate)
	_, err := e.svc.IssueIntermediate(context.Background(), imAdmin(), IntermediateRequest{Cluster: "east"})
	if ae := apierror.As(err); ae == nil || ae.Status != http.StatusInternalServerError {
		t.Fatalf("want 500, got %v", err)
	}
}
