package ca

// Test harness for the AWS Private CA backend: a real PCAClient (the real
// SDK, our retryer and rate budget) pointed at the pcatest double.

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/certgate/certgate/internal/apierror"
	"github.com/certgate/certgate/internal/ca/pcatest"
	"github.com/certgate/certgate/internal/metrics"
)

// setAWSTestEnv points the SDK's default credential chain at static test
// credentials and away from any real AWS configuration on the machine (the
// same as servertest.SetAWSTestEnv, which this package cannot import).
func setAWSTestEnv(t testing.TB) {
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIDCERTGATETEST")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "certgate-test-secret")
	t.Setenv("AWS_SESSION_TOKEN", "")
	t.Setenv("AWS_PROFILE", "")
	t.Setenv("AWS_CONFIG_FILE", "/dev/null")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	t.Setenv("AWS_REGION", "")
}

type pcaHarness struct {
	dbl  *pcatest.Server
	p    *PCAClient
	cfg  PCAConfig
	logs *observer.ObservedLogs
}

func newDouble(t testing.TB, opts ...pcatest.Option) *pcatest.Server {
	t.Helper()
	d, err := pcatest.New(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Close)
	return d
}

func doubleARNs(dbl *pcatest.Server) map[string]string {
	return map[string]string{
		Root: dbl.ARN(pcatest.RoleRoot), ClientCA: dbl.ARN(pcatest.RoleClientCA),
		ServerCA: dbl.ARN(pcatest.RoleServerCA), IstioCA: dbl.ARN(pcatest.RoleIstioCA),
	}
}

// newPCAHarness builds a PCAClient as the server does (defaults of the
// config file), against dbl (a fresh double when nil). CA certificates come
// from the double directly, as the server's CA cache would provide them.
func newPCAHarness(t testing.TB, dbl *pcatest.Server, mod func(*PCAConfig)) *pcaHarness {
	t.Helper()
	setAWSTestEnv(t)
	if dbl == nil {
		dbl = newDouble(t)
	}
	cfg := PCAConfig{
		Region: dbl.Region(), Endpoint: dbl.URL(), ARNs: doubleARNs(dbl),
		MaxRetries: 3, RetryDelay: 100 * time.Millisecond, MaxRetryDelay: 5 * time.Second,
		RateLimits: map[string]float64{OpIssueCertificate: 25, OpGetCertificate: 75},
	}
	if mod != nil {
		mod(&cfg)
	}
	core, logs := observer.New(zapcore.DebugLevel)
	p, err := NewPCAClient(context.Background(), cfg, zap.New(core), metrics.New())
	if err != nil {
		t.Fatalf("NewPCAClient: %v", err)
	}
	p.SetLookup(func(_ context.Context, name string) (*x509.Certificate, error) {
		if c := dbl.CACert(name); c != nil {
			return c, nil
		}
		return nil, fmt.Errorf("no CA %q in the double", name)
	})
	return &pcaHarness{dbl: dbl, p: p, cfg: cfg, logs: logs}
}

var testKeyP256 = sync.OnceValue(func() *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	return k
})

// reqNames are the names of one test request.
type reqNames struct {
	cn     string
	dns    []string
	ips    []string
	uris   []string
	emails []string
}

// profileNames gives every profile a request that uses each kind of SAN it
// allows, so a name lost or added on the way through PCA shows.
var profileNames = map[string]reqNames{
	ProfileClient: {cn: "alice.client.test", dns: []string{"alice.client.test"},
		uris: []string{"spiffe://cluster.local/ns/clients/sa/alice"}, emails: []string{"alice@client.test"}},
	ProfileServer: {cn: "api.server.test", dns: []string{"api.server.test", "*.api.server.test"},
		ips: []string{"10.0.0.7", "2001:db8::7"}},
	ProfileMachine: {cn: "node-1.machine.test", dns: []string{"node-1.machine.test"}, ips: []string{"10.1.2.3"},
		uris: []string{"spiffe://cluster.local/ns/mesh/sa/node-1"}},
}

func newToken() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// makeCSRDER makes a CSR naming n, signed by key.
func makeCSRDER(t testing.TB, key crypto.Signer, n reqNames) []byte {
	t.Helper()
	tmpl := &x509.CertificateRequest{Subject: pkix.Name{CommonName: n.cn}, DNSNames: n.dns, EmailAddresses: n.emails}
	for _, ip := range n.ips {
		tmpl.IPAddresses = append(tmpl.IPAddresses, net.ParseIP(ip))
	}
	for _, u := range n.uris {
		pu, err := url.Parse(u)
		if err != nil {
			t.Fatal(err)
		}
		tmpl.URIs = append(tmpl.URIs, pu)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// signRequest is what the issuance service would hand the backend for a
// CSR-based request on profile, with the profile's default validity.
func signRequest(t testing.TB, profile string) *SignRequest {
	t.Helper()
	prof := DefaultProfiles(0)[profile]
	if prof == nil {
		t.Fatalf("no profile %q", profile)
	}
	n := profileNames[profile]
	key := testKeyP256()
	req := &SignRequest{Profile: prof, CA: prof.CA, PublicKey: key.Public(), CSR: makeCSRDER(t, key, n),
		Subject: pkix.Name{CommonName: n.cn}, DNSNames: n.dns, Emails: n.emails, IdempotencyToken: newToken()}
	for _, ip := range n.ips {
		req.IPs = append(req.IPs, net.ParseIP(ip))
	}
	for _, u := range n.uris {
		pu, _ := url.Parse(u)
		req.URIs = append(req.URIs, pu)
	}
	now := time.Now().UTC().Truncate(time.Second)
	req.NotBefore = now.Add(-Backdate)
	req.NotAfter = req.NotBefore.Add(prof.DefaultValidity)
	return req
}

// apiErr returns the classified error inside err, failing the test if there is none.
func apiErr(t testing.TB, err error) *apierror.Error {
	t.Helper()
	if err == nil {
		t.Fatal("no error")
	}
	var e *apierror.Error
	if !errors.As(err, &e) {
		t.Fatalf("error %v (%T) is not classified", err, err)
	}
	return e
}

// detail returns the reason of the detail named field, or "".
func detail(e *apierror.Error, field string) string {
	for _, d := range e.Details {
		if d.Field == field {
			return d.Reason
		}
	}
	return ""
}

// lastCall is the last logged call of op.
func lastCall(t testing.TB, dbl *pcatest.Server, op string) pcatest.Call {
	t.Helper()
	calls := dbl.Calls(op)
	if len(calls) == 0 {
		t.Fatalf("the double saw no %s", op)
	}
	return calls[len(calls)-1]
}
