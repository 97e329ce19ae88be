package pcatest

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/acmpca"
	"github.com/aws/aws-sdk-go-v2/service/acmpca/types"
	"github.com/aws/smithy-go"
)

func newServer(t testing.TB, opts ...Option) *Server {
	t.Helper()
	srv, err := New(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	return srv
}

// newClient builds the client the way certgate's production code does:
// the real SDK, BaseEndpoint pointed at the double, static credentials.
func newClient(t testing.TB, srv *Server, opts ...func(*acmpca.Options)) *acmpca.Client {
	t.Helper()
	cfg := aws.Config{
		Region:      "us-east-1",
		Credentials: credentials.NewStaticCredentialsProvider("AKIDTEST", "SECRET", ""),
	}
	base := func(o *acmpca.Options) {
		o.BaseEndpoint = aws.String(srv.URL())
		o.Retryer = aws.NopRetryer{}
	}
	return acmpca.NewFromConfig(cfg, append([]func(*acmpca.Options){base}, opts...)...)
}

var leafKey = sync.OnceValue(func() crypto.Signer {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	return k
})

type csrOpts struct {
	subject pkix.Name
	dns     []string
	ips     []net.IP
	uris    []*url.URL
	emails  []string
	exts    []pkix.Extension
	key     crypto.Signer
}

func makeCSR(t testing.TB, o csrOpts) []byte {
	t.Helper()
	if o.key == nil {
		o.key = leafKey()
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: o.subject, DNSNames: o.dns, IPAddresses: o.ips, URIs: o.uris, EmailAddresses: o.emails,
		ExtraExtensions: o.exts,
	}, o.key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
}

func simpleCSR(t testing.TB) []byte {
	return makeCSR(t, csrOpts{subject: pkix.Name{CommonName: "svc.example.com"}, dns: []string{"svc.example.com"}})
}

var roleSigAlg = map[string]types.SigningAlgorithm{
	RoleRoot:     types.SigningAlgorithmSha256withrsa,
	RoleServerCA: types.SigningAlgorithmSha256withrsa,
	RoleClientCA: types.SigningAlgorithmSha256withecdsa,
	RoleIstioCA:  types.SigningAlgorithmSha384withecdsa,
}

func issueInput(srv *Server, role string, csr []byte) *acmpca.IssueCertificateInput {
	return &acmpca.IssueCertificateInput{
		CertificateAuthorityArn: aws.String(srv.ARN(role)),
		Csr:                     csr,
		SigningAlgorithm:        roleSigAlg[role],
		Validity:                &types.Validity{Type: types.ValidityPeriodTypeDays, Value: aws.Int64(7)},
	}
}

// onClosedConnRepeat runs call again (up to twice) when it failed with "use
// of closed network connection": net/http can hand the SDK a response whose
// pooled connection it is closing (aws/aws-sdk-go-v2#2737). certgate's
// standard retryer retries that error; these tests use NopRetryer to see
// every fault the double injects, so the happy path repeats it here.
func onClosedConnRepeat(call func() error) error {
	err := call()
	for i := 0; i < 2 && err != nil && strings.Contains(err.Error(), "use of closed network connection"); i++ {
		err = call()
	}
	return err
}

// issueAndGet issues and fetches; mod may adjust the input.
func issueAndGet(t testing.TB, c *acmpca.Client, srv *Server, role string, csr []byte, mod func(*acmpca.IssueCertificateInput)) (*x509.Certificate, []*x509.Certificate, string) {
	t.Helper()
	in := issueInput(srv, role, csr)
	if mod != nil {
		mod(in)
	}
	ctx := context.Background()
	if in.IdempotencyToken == nil {
		// So a repeat after a closed connection cannot issue twice.
		in.IdempotencyToken = aws.String(fmt.Sprintf("t%d", time.Now().UnixNano()))
	}
	var out *acmpca.IssueCertificateOutput
	err := onClosedConnRepeat(func() (err error) { out, err = c.IssueCertificate(ctx, in); return err })
	if err != nil {
		t.Fatalf("IssueCertificate: %v", err)
	}
	var got *acmpca.GetCertificateOutput
	err = onClosedConnRepeat(func() (err error) {
		got, err = c.GetCertificate(ctx, &acmpca.GetCertificateInput{CertificateAuthorityArn: in.CertificateAuthorityArn, CertificateArn: out.CertificateArn})
		return err
	})
	if err != nil {
		t.Fatalf("GetCertificate: %v", err)
	}
	leaf := parsePEMs(t, aws.ToString(got.Certificate))
	if len(leaf) != 1 {
		t.Fatalf("Certificate holds %d certificates", len(leaf))
	}
	return leaf[0], parsePEMs(t, aws.ToString(got.CertificateChain)), aws.ToString(out.CertificateArn)
}

func issueErr(t testing.TB, c *acmpca.Client, in *acmpca.IssueCertificateInput) error {
	t.Helper()
	_, err := c.IssueCertificate(context.Background(), in)
	if err == nil {
		t.Fatal("IssueCertificate succeeded, want an error")
	}
	return err
}

func parsePEMs(t testing.TB, s string) []*x509.Certificate {
	t.Helper()
	var out []*x509.Certificate
	rest := []byte(s)
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			return out
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, c)
	}
}

func errorCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

func wantCode(t testing.TB, err error, code string) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want %s", code)
	}
	if got := errorCode(err); got != code {
		t.Fatalf("error code %q (%v), want %s", got, err, code)
	}
}

func verifyChain(t testing.TB, srv *Server, leaf *x509.Certificate, chain []*x509.Certificate, usage x509.ExtKeyUsage) {
	t.Helper()
	inter := x509.NewCertPool()
	for _, c := range chain {
		inter.AddCert(c)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: srv.RootPool(), Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{usage}}); err != nil {
		t.Fatalf("chain does not verify: %v", err)
	}
}

func fixedClock(t time.Time) (func() time.Time, func(time.Duration)) {
	var mu sync.Mutex
	now := t
	return func() time.Time {
			mu.Lock()
			defer mu.Unlock()
			return now
		}, func(d time.Duration) {
			mu.Lock()
			defer mu.Unlock()
			now = now.Add(d)
		}
}
