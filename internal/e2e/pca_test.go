package e2e

// Acceptance tests of certgate on AWS Private CA: whole servers on the
// aws-pca backend, the real AWS SDK talking over loopback to the pcatest
// double, every certificate parsed and verified. TestRealPCA runs the same
// checks against a real PCA hierarchy when CERTGATE_TEST_PCA_* is set.

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/certgate/certgate/internal/ca"
	"github.com/certgate/certgate/internal/ca/pcatest"
	"github.com/certgate/certgate/internal/config"
	"github.com/certgate/certgate/internal/server"
	"github.com/certgate/certgate/internal/servertest"
	"github.com/certgate/certgate/internal/store"
)

const blankTemplate = "arn:aws:acm-pca:::template/BlankEndEntityCertificate_APIPassthrough/V1"

// pcaProfile is one leaf profile of the contract as PCA must issue it.
type pcaProfile struct {
	name, ca string
	ku       x509.KeyUsage
	eku      []x509.ExtKeyUsage
	// The double's CA keys: client-ca P-256, server-ca RSA, istio-ca P-384.
	sigAlg  string
	x509Alg x509.SignatureAlgorithm
	spec    csrSpec // the names requested
}

var pcaProfiles = []pcaProfile{
	{name: "client", ca: "client-ca", ku: x509.KeyUsageDigitalSignature | x509.KeyUsageKeyAgreement,
		eku: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, sigAlg: "SHA256WITHECDSA", x509Alg: x509.ECDSAWithSHA256,
		spec: csrSpec{CN: "alice.clients.e2e.internal", DNS: []string{"alice.clients.e2e.internal"},
			URIs: []string{"spiffe://cluster.local/ns/clients/sa/alice"}, Emails: []string{"alice@e2e.internal"}}},
	{name: "server", ca: "server-ca", ku: x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		eku: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, sigAlg: "SHA256WITHRSA", x509Alg: x509.SHA256WithRSA,
		spec: csrSpec{CN: "api.e2e.internal", DNS: []string{"api.e2e.internal", "*.api.e2e.internal"}, IPs: []string{"10.0.0.7", "2001:db8::7"}}},
	{name: "machine", ca: "istio-ca", ku: x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		eku: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth}, sigAlg: "SHA384WITHECDSA", x509Alg: x509.ECDSAWithSHA384,
		spec: csrSpec{CN: "node-1.mesh.e2e.internal", DNS: []string{"node-1.mesh.e2e.internal"}, IPs: []string{"10.1.2.3"},
			URIs: []string{"spiffe://cluster.local/ns/mesh/sa/node-1"}}},
}

func pcaProfileNamed(name string) pcaProfile {
	for _, p := range pcaProfiles {
		if p.name == name {
			return p
		}
	}
	panic("no profile " + name)
}

func (s csrSpec) sans() []string {
	out := append(append(append(append([]string{}, s.DNS...), s.IPs...), s.URIs...), s.Emails...)
	slices.Sort(out)
	return out
}

// leafSANs renders a certificate's SANs as the API's strings, sorted.
func leafSANs(c *x509.Certificate) []string {
	var out []string
	out = append(out, c.DNSNames...)
	for _, ip := range c.IPAddresses {
		out = append(out, ip.String())
	}
	for _, u := range c.URIs {
		out = append(out, u.String())
	}
	out = append(out, c.EmailAddresses...)
	slices.Sort(out)
	return out
}

// startPCA runs a server on the aws-pca backend against dbl, on PostgreSQL
// when CERTGATE_TEST_POSTGRES_DSN is set (the production database) and on
// SQLite otherwise.
func startPCA(t testing.TB, dbl *pcatest.Server, opts ...servertest.Option) *servertest.Env {
	t.Helper()
	all := []servertest.Option{servertest.WithPCA(t, dbl)}
	if os.Getenv(servertest.PostgresEnv) != "" {
		all = append(all, servertest.WithPostgres(t))
	}
	return servertest.Start(t, append(all, opts...)...)
}

func withTemplates(m map[string]string) servertest.Option {
	return func(c *config.Config, _ *server.Options) { c.AWSPCA.Templates = m }
}

// pcaIssueRequest builds the body of a request on p: with a CSR made with
// key, or (key nil) asking the server for a keyType key.
func pcaIssueRequest(t testing.TB, p pcaProfile, key crypto.Signer, keyType string) map[string]any {
	req := map[string]any{"profile": p.name}
	if key != nil {
		req["csr"] = makeCSR(t, key, p.spec)
		return req
	}
	req["common_name"] = p.spec.CN
	req["sans"] = p.spec.sans()
	if keyType != "" {
		req["key_type"] = keyType
	}
	return req
}

// issueCallFor finds the successful IssueCertificate that returned arn.
func issueCallFor(t testing.TB, dbl *pcatest.Server, arn string) pcatest.Call {
	t.Helper()
	for _, c := range dbl.Calls(pcatest.OpIssueCertificate) {
		if c.CertificateArn == arn && c.Err == "" {
			return c
		}
	}
	t.Fatalf("no successful IssueCertificate returned %s", arn)
	return pcatest.Call{}
}

// checkPCAIssued checks a 201 from a PCA-backed server: the IssueCertificate
// call, the leaf, the chain and the stored row.
func checkPCAIssued(t *testing.T, env *servertest.Env, dbl *pcatest.Server, p pcaProfile, res *issueResp, template string, before time.Time) *x509.Certificate {
	t.Helper()
	if res.Profile != p.name || res.CA != p.ca {
		t.Errorf("profile/ca %s/%s, want %s/%s", res.Profile, res.CA, p.name, p.ca)
	}
	if !strings.HasPrefix(res.CertificateARN, dbl.ARN(p.ca)+"/certificate/") {
		t.Fatalf("certificate_arn %q is not a certificate of %s (%s)", res.CertificateARN, p.ca, dbl.ARN(p.ca))
	}
	ic := issueCallFor(t, dbl, res.CertificateARN)
	if ic.CAArn != dbl.ARN(p.ca) {
		t.Errorf("IssueCertificate went to %s, want %s", ic.CAArn, dbl.ARN(p.ca))
	}
	if ic.TemplateArn != template {
		t.Errorf("template %s, want %s", ic.TemplateArn, template)
	}
	if ic.SigningAlgorithm != p.sigAlg {
		t.Errorf("SigningAlgorithm %s, want %s (the %s key)", ic.SigningAlgorithm, p.sigAlg, p.ca)
	}
	if ic.IdempotencyToken == "" || len(ic.IdempotencyToken) > 36 {
		t.Errorf("IdempotencyToken %q", ic.IdempotencyToken)
	}

	leaf := parseOneCert(t, "certificate", res.Certificate)
	if ic.ValidityType != "ABSOLUTE" || ic.ValidityValue != leaf.NotAfter.Unix() {
		t.Errorf("Validity %s %d, want ABSOLUTE %d", ic.ValidityType, ic.ValidityValue, leaf.NotAfter.Unix())
	}
	// ValidityNotBefore was honoured: PCA's default backdates an hour.
	if leaf.NotBefore.Before(before.Add(-2*time.Minute)) || leaf.NotBefore.After(time.Now()) {
		t.Errorf("NotBefore %s, want within a minute or two before the request (%s)", leaf.NotBefore, before)
	}
	if span := leaf.NotAfter.Sub(leaf.NotBefore); span > 7*24*time.Hour || span < 7*24*time.Hour-2*time.Minute {
		t.Errorf("span %s, want the default 7 days and never more", span)
	}
	if !res.NotBefore.Equal(leaf.NotBefore) || !res.NotAfter.Equal(leaf.NotAfter) {
		t.Errorf("response validity %s..%s, certificate %s..%s", res.NotBefore, res.NotAfter, leaf.NotBefore, leaf.NotAfter)
	}
	if leaf.KeyUsage != p.ku || !sameEKUs(leaf.ExtKeyUsage, p.eku) || len(leaf.UnknownExtKeyUsage) != 0 {
		t.Errorf("KU %b EKU %v (+%v), want exactly %b %v", leaf.KeyUsage, leaf.ExtKeyUsage, leaf.UnknownExtKeyUsage, p.ku, p.eku)
	}
	if leaf.IsCA {
		t.Error("leaf is a CA")
	}
	if got, want := leafSANs(leaf), p.spec.sans(); !slices.Equal(got, want) {
		t.Errorf("SANs %q, want %q", got, want)
	}
	if got := append([]string(nil), res.SANs...); !slices.Equal(sortedCopy(got), p.spec.sans()) {
		t.Errorf("response sans %q, want %q", res.SANs, p.spec.sans())
	}
	if leaf.Subject.CommonName != p.spec.CN {
		t.Errorf("CN %q, want %q", leaf.Subject.CommonName, p.spec.CN)
	}
	if leaf.SignatureAlgorithm != p.x509Alg {
		t.Errorf("leaf signed with %v, want %v", leaf.SignatureAlgorithm, p.x509Alg)
	}
	if leaf.SerialNumber.Text(16) != res.Serial {
		t.Errorf("serial %s, leaf %s", res.Serial, leaf.SerialNumber.Text(16))
	}

	chain := parseCerts(t, "chain", res.Chain)
	root := parseOneCert(t, "root", res.Root)
	if len(chain) != 1 || !chain[0].Equal(dbl.CACert(p.ca)) || !root.Equal(dbl.Root()) {
		t.Errorf("chain of %d certificates and root %s, want [%s] and the double's root", len(chain), root.Subject, p.ca)
	}
	if bundle := parseCerts(t, "bundle", res.Bundle); len(bundle) != 3 || !bundle[0].Equal(leaf) || !bundle[2].Equal(dbl.Root()) {
		t.Errorf("bundle of %d certificates, want leaf, %s, root", len(bundle), p.ca)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: dbl.RootPool(), Intermediates: poolOf(chain...), KeyUsages: p.eku}); err != nil {
		t.Errorf("x509.Verify to the double's root: %v", err)
	}

	// The stored row shows the ARN.
	resp, body := call(t, env, "GET", "/v1/certificates/"+res.Serial, nil, nil)
	var row struct {
		Status         string `json:"status"`
		CertificateARN string `json:"certificate_arn"`
		Certificate    string `json:"certificate"`
	}
	if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &row) != nil {
		t.Fatalf("GET /v1/certificates/%s: %d %s", res.Serial, resp.StatusCode, body)
	}
	if row.Status != "issued" || row.CertificateARN != res.CertificateARN || row.Certificate != res.Certificate {
		t.Errorf("stored row: status %q certificate_arn %q, want issued %q and the same PEM", row.Status, row.CertificateARN, res.CertificateARN)
	}
	return leaf
}

func sameEKUs(a, b []x509.ExtKeyUsage) bool {
	if len(a) != len(b) {
		return false
	}
	for _, e := range a {
		if !slices.Contains(b, e) {
			return false
		}
	}
	return true
}

func checkKeyMatches(t *testing.T, res *issueResp, leaf *x509.Certificate, csrKey crypto.Signer) {
	t.Helper()
	if csrKey != nil {
		if res.PrivateKey != "" {
			t.Error("private_key returned for a CSR")
		}
		if !leaf.PublicKey.(interface{ Equal(crypto.PublicKey) bool }).Equal(csrKey.Public()) {
			t.Error("the leaf certifies another key than the CSR's")
		}
		return
	}
	b, _ := pem.Decode([]byte(res.PrivateKey))
	if b == nil {
		t.Fatal("no private_key for a server-generated key")
	}
	k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if !k.(crypto.Signer).Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(leaf.PublicKey) {
		t.Error("private_key does not match the certificate")
	}
}

// TestPCAIssueEveryProfile: acceptance 1 — every leaf profile, with a CSR
// and with a server-generated key, through POST /v1/certificates.
func TestPCAIssueEveryProfile(t *testing.T) {
	dbl := servertest.NewPCADouble(t)
	env := startPCA(t, dbl)
	csrKeys := map[string]func(testing.TB) crypto.Signer{
		"client":  func(t testing.TB) crypto.Signer { return p256(t) },
		"server":  func(t testing.TB) crypto.Signer { return rsa2048(t) },
		"machine": func(t testing.TB) crypto.Signer { return p384(t) },
	}
	keyTypes := map[string]string{"client": "", "server": "rsa-2048", "machine": "ecdsa-p256"}
	for _, p := range pcaProfiles {
		for _, withCSR := range []bool{true, false} {
			name := p.name + "/server-key"
			if withCSR {
				name = p.name + "/csr"
			}
			t.Run(name, func(t *testing.T) {
				var key crypto.Signer
				if withCSR {
					key = csrKeys[p.name](t)
				}
				minted := dbl.Stats().Issued
				before := time.Now()
				res := issue(t, env, pcaIssueRequest(t, p, key, keyTypes[p.name]))
				leaf := checkPCAIssued(t, env, dbl, p, res, blankTemplate, before)
				checkKeyMatches(t, res, leaf, key)
				if n := dbl.Stats().Issued - minted; n != 1 {
					t.Errorf("%d certificates minted for one request", n)
				}
			})
		}
	}
}

// latestRow is the newest certificate row of a profile.
func latestRow(t testing.TB, env *servertest.Env, profile string) store.Certificate {
	t.Helper()
	var row store.Certificate
	if err := env.Srv.Store.DB().Where("profile = ?", profile).Order("id DESC").Take(&row).Error; err != nil {
		t.Fatalf("newest %s row: %v", profile, err)
	}
	return row
}

func decodeErr(t testing.TB, body []byte) errBody {
	t.Helper()
	var e errBody
	if err := json.Unmarshal(body, &e); err != nil || e.Error.Code == "" {
		t.Fatalf("not the error body: %s", body)
	}
	return e
}

func detailOf(e errBody, field string) string {
	for _, d := range e.Error.Details {
		if d.Field == field {
			return d.Reason
		}
	}
	return ""
}

// TestPCATemplateOverride: acceptance 2 — aws_pca.templates per profile.
func TestPCATemplateOverride(t *testing.T) {
	dbl := servertest.NewPCADouble(t)
	env := startPCA(t, dbl, withTemplates(map[string]string{
		"server": "EndEntityServerAuthCertificate_APIPassthrough/V1",
		"client": "EndEntityCertificate/V1", // adds serverAuth and keyEncipherment
	}))

	t.Run("server exact", func(t *testing.T) {
		before := time.Now()
		res := issue(t, env, pcaIssueRequest(t, pcaProfileNamed("server"), nil, ""))
		checkPCAIssued(t, env, dbl, pcaProfileNamed("server"), res, "arn:aws:acm-pca:::template/EndEntityServerAuthCertificate_APIPassthrough/V1", before)
	})
	t.Run("client refused", func(t *testing.T) {
		minted := dbl.Stats().Issued
		resp, body := call(t, env, "POST", "/v1/certificates", mustJSON(t, pcaIssueRequest(t, pcaProfileNamed("client"), p256(t), "")), nil)
		if resp.StatusCode != http.StatusBadGateway {
			t.Fatalf("status %d, want 502: %s", resp.StatusCode, body)
		}
		e := decodeErr(t, body)
		if e.Error.Code != "upstream_error" || !strings.Contains(e.Error.Message, "EndEntityCertificate/V1") || !strings.Contains(e.Error.Message, "aws_pca.templates.client") {
			t.Errorf("error %s %q, want upstream_error naming the template and the setting", e.Error.Code, e.Error.Message)
		}
		row := latestRow(t, env, "client")
		if row.Status != store.StatusFailed || row.Serial != nil || row.PEM != "" {
			t.Errorf("row status %q serial %v, want failed without a certificate", row.Status, row.Serial)
		}
		if n := dbl.Stats().Issued - minted; n != 0 {
			t.Errorf("%d certificates minted (and billed) for a template certgate refuses", n)
		}
		var issued int64
		env.Srv.Store.DB().Model(&store.Certificate{}).Where("profile = ? AND status = ?", "client", store.StatusIssued).Count(&issued)
		if issued != 0 {
			t.Errorf("%d client certificates recorded as issued", issued)
		}
	})
}

// TestPCAMachineEndEntityTemplate: EndEntityCertificate/V1 gives exactly the
// machine profile's usages, with serverAuth listed first; EKU order carries
// no meaning, so it must be accepted. That template does not read
// ApiPassthrough, so PCA takes the names from the CSR — for a server-generated
// key, the CSR certgate makes itself: the certificate must still carry
// exactly the requested names; one without them is refused, never issued.
// (The machine profile, because EndEntityCertificate/V1 has exactly its
// usages; the server profile would also break the server's own certificate.)
func TestPCAMachineEndEntityTemplate(t *testing.T) {
	for _, tc := range []struct {
		name string
		key  func(testing.TB) crypto.Signer
	}{
		{"client CSR", func(t testing.TB) crypto.Signer { return p256(t) }},
		{"server-generated key", func(testing.TB) crypto.Signer { return nil }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dbl := servertest.NewPCADouble(t)
			env := startPCA(t, dbl, withTemplates(map[string]string{"machine": "EndEntityCertificate/V1"}))
			p := pcaProfileNamed("machine")
			before := time.Now()
			res := issue(t, env, pcaIssueRequest(t, p, tc.key(t), ""))
			checkPCAIssued(t, env, dbl, p, res, "arn:aws:acm-pca:::template/EndEntityCertificate/V1", before)
		})
	}
}

// TestPCARetries: acceptance 3 — what is retried, how often, with which
// token, and what the client sees when retries run out.
func TestPCARetries(t *testing.T) {
	dbl := servertest.NewPCADouble(t)
	env := startPCA(t, dbl)
	server := pcaProfileNamed("server")

	t.Run("throttled twice then issued", func(t *testing.T) {
		dbl.ResetCalls()
		minted := dbl.Stats().Issued
		dbl.FailNext(pcatest.OpIssueCertificate, 2, "ThrottlingException", 0)
		res := issue(t, env, pcaIssueRequest(t, server, nil, ""))
		calls := dbl.Calls(pcatest.OpIssueCertificate)
		if len(calls) != 3 {
			t.Fatalf("%d IssueCertificate calls, want 3", len(calls))
		}
		for i, c := range calls {
			if c.IdempotencyToken == "" || c.IdempotencyToken != calls[0].IdempotencyToken {
				t.Errorf("call %d token %q, first %q", i, c.IdempotencyToken, calls[0].IdempotencyToken)
			}
		}
		if calls[0].Err != "ThrottlingException" || calls[1].Err != "ThrottlingException" || calls[2].CertificateArn != res.CertificateARN {
			t.Errorf("calls: %s, %s, then %s", calls[0].Err, calls[1].Err, calls[2].CertificateArn)
		}
		if n := dbl.Stats().Issued - minted; n != 1 {
			t.Errorf("%d certificates minted, want 1", n)
		}
	})

	t.Run("500 after minting is retried idempotently", func(t *testing.T) {
		dbl.ResetCalls()
		minted, replays := dbl.Stats().Issued, dbl.Stats().IdempotentReplays
		dbl.InjectNext(pcatest.OpIssueCertificate, 1, pcatest.Fault{AfterProcessing: true, ErrorType: "InternalFailure"})
		res := issue(t, env, pcaIssueRequest(t, server, nil, ""))
		calls := dbl.Calls(pcatest.OpIssueCertificate)
		if len(calls) != 2 || calls[0].Status != 500 || calls[0].IdempotencyToken != calls[1].IdempotencyToken || !calls[1].Replayed || calls[1].ReplayMismatch {
			t.Fatalf("calls %+v", calls)
		}
		st := dbl.Stats()
		if st.Issued-minted != 1 || st.IdempotentReplays-replays != 1 {
			t.Errorf("minted %d, replayed %d; want 1 and 1", st.Issued-minted, st.IdempotentReplays-replays)
		}
		if issued := dbl.IssuedCerts(); issued[len(issued)-1].Arn != res.CertificateARN {
			t.Error("the certificate returned is not the one minted")
		}
	})

	// Not retried: exactly one call, the mapped status, the row failed.
	for _, c := range []struct {
		awsCode string
		status  int
		code    string
	}{
		{"InvalidArgsException", 400, "pca_invalid_args"},
		{"MalformedCSRException", 400, "pca_malformed_csr"},
		{"InvalidStateException", 503, "pca_invalid_state"},
		{"ResourceNotFoundException", 500, "pca_resource_not_found"},
		{"AccessDeniedException", 500, "pca_access_denied"},
		{"InvalidArnException", 500, "pca_invalid_arn"},
	} {
		t.Run("not retried "+c.awsCode, func(t *testing.T) {
			dbl.ResetCalls()
			dbl.FailNext(pcatest.OpIssueCertificate, 1, c.awsCode, 0)
			resp, body := call(t, env, "POST", "/v1/certificates", mustJSON(t, pcaIssueRequest(t, server, nil, "")), nil)
			checkPCAError(t, dbl, resp, body, c.status, c.code, 1)
			if row := latestRow(t, env, "server"); row.Status != store.StatusFailed {
				t.Errorf("row %s, want failed", row.Status)
			}
		})
	}

	t.Run("throttled 4 times", func(t *testing.T) {
		dbl.ResetCalls()
		dbl.FailNext(pcatest.OpIssueCertificate, 4, "ThrottlingException", 0)
		resp, body := call(t, env, "POST", "/v1/certificates", mustJSON(t, pcaIssueRequest(t, server, nil, "")), nil)
		checkPCAError(t, dbl, resp, body, 429, "upstream_throttled", 4)
		if row := latestRow(t, env, "server"); row.Status != store.StatusFailed {
			t.Errorf("row %s, want failed: a throttled request was never accepted", row.Status)
		}
	})

	t.Run("503 4 times", func(t *testing.T) {
		dbl.ResetCalls()
		dbl.FailNext(pcatest.OpIssueCertificate, 4, "ServiceUnavailable", 503)
		resp, body := call(t, env, "POST", "/v1/certificates", mustJSON(t, pcaIssueRequest(t, server, nil, "")), nil)
		checkPCAError(t, dbl, resp, body, 503, "upstream_error", 4)
		// A 5xx may hide an accepted request: the row stays for reconciliation.
		if row := latestRow(t, env, "server"); row.Status != store.StatusPending {
			t.Errorf("row %s, want pending", row.Status)
		}
	})
}

// checkPCAError checks an error answer to a PCA failure: status, code,
// Retry-After when retrying helps, the number of IssueCertificate calls and
// the AWS request ID of the last one in details.
func checkPCAError(t *testing.T, dbl *pcatest.Server, resp *http.Response, body []byte, status int, code string, calls int) {
	t.Helper()
	if resp.StatusCode != status {
		t.Fatalf("status %d, want %d: %s", resp.StatusCode, status, body)
	}
	e := decodeErr(t, body)
	if e.Error.Code != code {
		t.Errorf("code %s, want %s", e.Error.Code, code)
	}
	if status == 429 || status == 503 {
		if ra, err := strconv.Atoi(resp.Header.Get("Retry-After")); err != nil || ra < 1 {
			t.Errorf("Retry-After %q on a %d", resp.Header.Get("Retry-After"), status)
		}
		if e.Error.Retryable == nil || !*e.Error.Retryable {
			t.Errorf("%d not marked retryable", status)
		}
	}
	got := dbl.Calls(pcatest.OpIssueCertificate)
	if len(got) != calls {
		t.Fatalf("%d IssueCertificate calls, want %d", len(got), calls)
	}
	if id := detailOf(e, "aws_request_id"); id == "" || id != got[len(got)-1].RequestID {
		t.Errorf("details aws_request_id %q, want the double's %q", id, got[len(got)-1].RequestID)
	}
}

// TestPCACancelDuringPolling: acceptance 5 — a client that hangs up while
// PCA is still issuing stops the polling at once; the row stays pending
// with its certificate ARN for reconciliation; nothing is left running.
func TestPCACancelDuringPolling(t *testing.T) {
	dbl := servertest.NewPCADouble(t)
	env := startPCA(t, dbl)
	p := pcaProfileNamed("client")
	issue(t, env, pcaIssueRequest(t, p, p256(t), "")) // warm: connections and caches exist
	dbl.SetIssueDelay(5 * time.Second)
	time.Sleep(50 * time.Millisecond)
	base := pcatest.Goroutines()

	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, "POST", env.URL+"/v1/certificates", bytes.NewReader(mustJSON(t, pcaIssueRequest(t, p, p256(t), ""))))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+env.Srv.Token)
	done := make(chan error, 1)
	go func() {
		resp, err := env.Client.HTTP.Do(req)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		done <- err
	}()
	// Cancel once PCA has accepted the request and polling has begun.
	deadline := time.Now().Add(5 * time.Second)
	for dbl.Count(pcatest.OpGetCertificate) == 0 || len(dbl.Calls(pcatest.OpIssueCertificate)) < 2 {
		if time.Now().After(deadline) {
			t.Fatal("no polling started")
		}
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond)
	cancel()
	cancelled := time.Now()
	if err := <-done; err == nil {
		t.Fatal("the cancelled request completed")
	}
	// The server side gives up promptly: its pending-row log line appears
	// well before the 5 s issuance would have finished.
	for len(env.Logs.FilterMessage("issuance outcome unknown; left pending for reconciliation").All()) == 0 {
		if time.Since(cancelled) > 2*time.Second {
			t.Fatal("Sign did not return within 2s of the cancel")
		}
		time.Sleep(10 * time.Millisecond)
	}
	took := time.Since(cancelled)
	polls := dbl.Count(pcatest.OpGetCertificate)

	calls := dbl.Calls(pcatest.OpIssueCertificate)
	arn := calls[len(calls)-1].CertificateArn
	row := latestRow(t, env, "client")
	if row.Status != store.StatusPending || row.ARN == "" || row.ARN != arn || row.Serial != nil {
		t.Errorf("row: status %q ARN %q serial %v, want pending with ARN %s", row.Status, row.ARN, row.Serial, arn)
	}
	byID, err := env.Srv.Store.GetByID(context.Background(), row.ID)
	if err != nil || byID.Status != store.StatusPending || byID.ARN != arn {
		t.Errorf("GetByID(%d): %v %+v", row.ID, err, byID)
	}

	n := pcatest.Goroutines()
	for settle := time.Now().Add(3 * time.Second); n > base && time.Now().Before(settle); n = pcatest.Goroutines() {
		time.Sleep(20 * time.Millisecond)
	}
	if n > base {
		buf := make([]byte, 1<<20)
		t.Errorf("%d goroutines after the cancelled request, %d before:\n%s", n, base, buf[:runtime.Stack(buf, true)])
	}
	time.Sleep(150 * time.Millisecond)
	if later := dbl.Count(pcatest.OpGetCertificate); later != polls {
		t.Errorf("GetCertificate went on after the cancel: %d then %d", polls, later)
	}
	t.Logf("Sign returned %s after the cancel; %d GetCertificate calls", took.Round(time.Millisecond), polls)
}

// TestPCABurst: acceptance 6 — 100 concurrent issuances against PCA's
// default IssueCertificate quota (25/s) with certgate's default budget
// (25/s): all succeed, none sees throttling.
func TestPCABurst(t *testing.T) {
	if testing.Short() {
		t.Skip("a 4 s burst; skipped with -short")
	}
	dbl := servertest.NewPCADouble(t)
	dbl.SetQuota(pcatest.OpIssueCertificate, 25, 25)
	env := startPCA(t, dbl)
	before := dbl.Stats() // the server's own TLS certificate comes from PCA too
	res := runBurst(t, env, dbl, 100)
	if res.failed > 0 {
		t.Fatalf("%d of %d requests failed; first: %s", res.failed, 100, res.firstErr)
	}
	st := dbl.Stats()
	if n := st.Issued - before.Issued; n != 100 {
		t.Errorf("%d certificates minted for 100 requests", n)
	}
	var throttled int
	for _, c := range dbl.Calls(pcatest.OpIssueCertificate) {
		if c.Err == "ThrottlingException" {
			throttled++
		}
	}
	if throttled != st.Throttled-before.Throttled {
		t.Errorf("%d throttled calls logged, %d counted", throttled, st.Throttled-before.Throttled)
	}
	t.Logf("100 concurrent issuances in %s (p50 %s, max %s); the double throttled %d IssueCertificate calls (absorbed by retries); 0 reached clients",
		res.took.Round(time.Millisecond), res.latency[len(res.latency)/2].Round(time.Millisecond), res.latency[len(res.latency)-1].Round(time.Millisecond), throttled)
}

type burstResult struct {
	took     time.Duration
	failed   int
	firstErr string
	latency  []time.Duration
}

// runBurst sends n issuances at once (CSR-based, server profile) and checks
// every certificate.
func runBurst(t testing.TB, env *servertest.Env, dbl *pcatest.Server, n int) burstResult {
	t.Helper()
	key := p256(t)
	bodies := make([][]byte, n)
	for i := range bodies {
		spec := csrSpec{CN: fmt.Sprintf("burst-%d.e2e.internal", i), DNS: []string{fmt.Sprintf("burst-%d.e2e.internal", i)}}
		bodies[i] = mustJSON(t, map[string]any{"profile": "server", "csr": makeCSR(t, key, spec)})
	}
	var (
		wg  sync.WaitGroup
		mu  sync.Mutex
		out burstResult
	)
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			t0 := time.Now()
			status, body, err := post(env, bodies[i])
			lat := time.Since(t0)
			mu.Lock()
			defer mu.Unlock()
			if err == nil && status == http.StatusCreated {
				var r issueResp
				if err = json.Unmarshal(body, &r); err == nil {
					err = verifyBurstCert(&r, dbl)
				}
			} else if err == nil {
				err = fmt.Errorf("status %d: %s", status, body)
			}
			if err != nil {
				out.failed++
				if out.firstErr == "" {
					out.firstErr = err.Error()
				}
				return
			}
			out.latency = append(out.latency, lat)
		}()
	}
	t0 := time.Now()
	close(start)
	wg.Wait()
	out.took = time.Since(t0)
	slices.Sort(out.latency)
	return out
}

func post(env *servertest.Env, body []byte) (int, []byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "POST", env.URL+"/v1/certificates", bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+env.Srv.Token)
	resp, err := env.Client.HTTP.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

func verifyBurstCert(r *issueResp, dbl *pcatest.Server) error {
	b, _ := pem.Decode([]byte(r.Certificate))
	if b == nil {
		return fmt.Errorf("no certificate")
	}
	leaf, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		return err
	}
	inter := x509.NewCertPool()
	inter.AppendCertsFromPEM([]byte(r.Chain))
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: dbl.RootPool(), Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
		return err
	}
	if r.CertificateARN == "" {
		return fmt.Errorf("no certificate_arn")
	}
	return nil
}

// TestPCADescribeDenied: acceptance 7 — without DescribeCertificateAuthority
// permission every CA shows status "unknown" and issuance still works.
func TestPCADescribeDenied(t *testing.T) {
	dbl := servertest.NewPCADouble(t)
	dbl.SetAccessDenied(pcatest.OpDescribeCertificateAuthority, true)
	env := startPCA(t, dbl)
	resp, body := call(t, env, "GET", "/v1/cas", nil, nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /v1/cas: %d %s", resp.StatusCode, body)
	}
	var cas struct {
		CAs []struct {
			Name, Backend, ARN, Status string
			ChainValid                 bool `json:"chain_valid"`
		} `json:"cas"`
	}
	if err := json.Unmarshal(body, &cas); err != nil {
		t.Fatal(err)
	}
	if len(cas.CAs) != 4 {
		t.Fatalf("%d CAs: %s", len(cas.CAs), body)
	}
	for _, c := range cas.CAs {
		if c.Status != "unknown" || c.Backend != "aws-pca" || c.ARN != dbl.ARN(c.Name) || !c.ChainValid {
			t.Errorf("%s: status %q backend %q ARN %q chain_valid %v", c.Name, c.Status, c.Backend, c.ARN, c.ChainValid)
		}
	}
	if n := dbl.Count(pcatest.OpDescribeCertificateAuthority); n == 0 {
		t.Error("DescribeCertificateAuthority was never tried")
	}
	p := pcaProfileNamed("machine")
	before := time.Now()
	res := issue(t, env, pcaIssueRequest(t, p, nil, ""))
	checkPCAIssued(t, env, dbl, p, res, blankTemplate, before)
}

// ---- against a real AWS Private CA ----

// realPCAEnv names the variables that turn TestRealPCA on.
var realPCAEnv = []string{"CERTGATE_TEST_PCA_REGION", "CERTGATE_TEST_PCA_ROOT_ARN", "CERTGATE_TEST_PCA_CLIENT_ARN",
	"CERTGATE_TEST_PCA_SERVER_ARN", "CERTGATE_TEST_PCA_ISTIO_ARN"}

// TestRealPCA issues one certificate per leaf profile from a real PCA
// hierarchy, checks it as above (usages, names, span, chain to the PCA
// root, ARN stored) and revokes it. Credentials come from the standard AWS
// chain. Each run costs four certificates — one per profile and the
// server's own TLS certificate, which on aws-pca also comes from PCA (about
// $0.06 each in short-lived mode, up to $0.75 in general-purpose mode); all
// four are revoked at the end.
func TestRealPCA(t *testing.T) {
	var missing []string
	for _, k := range realPCAEnv {
		if os.Getenv(k) == "" {
			missing = append(missing, k)
		}
	}
	if len(missing) > 0 {
		t.Skipf("set %s to test against a real AWS Private CA (missing: %s)", strings.Join(realPCAEnv, ", "), strings.Join(missing, ", "))
	}
	arns := map[string]string{
		"root": os.Getenv("CERTGATE_TEST_PCA_ROOT_ARN"), "client-ca": os.Getenv("CERTGATE_TEST_PCA_CLIENT_ARN"),
		"server-ca": os.Getenv("CERTGATE_TEST_PCA_SERVER_ARN"), "istio-ca": os.Getenv("CERTGATE_TEST_PCA_ISTIO_ARN"),
	}
	env := servertest.Start(t, func(c *config.Config, _ *server.Options) {
		c.Backend = "aws-pca"
		c.AWSPCA.Region = os.Getenv("CERTGATE_TEST_PCA_REGION")
		c.AWSPCA.RootCAArn, c.AWSPCA.ClientCAArn = arns["root"], arns["client-ca"]
		c.AWSPCA.ServerCAArn, c.AWSPCA.IstioCAArn = arns["server-ca"], arns["istio-ca"]
	})
	// The server's own TLS certificate came from the real PCA too: revoke it
	// at the end like the others (cleanups run before the server stops).
	t.Cleanup(func() { revokeOwnCertificates(t, env) })
	realPCAChecks(t, env, arns)
}

// revokeOwnCertificates revokes the server's own TLS certificates.
func revokeOwnCertificates(t *testing.T, env *servertest.Env) {
	var own []store.Certificate
	if err := env.Srv.Store.DB().Where("requester = ? AND status = ?", server.SelfPrincipal, store.StatusIssued).Find(&own).Error; err != nil || len(own) == 0 {
		t.Errorf("finding the server's own certificate: %v (%d found)", err, len(own))
	}
	for _, c := range own {
		resp, body := call(t, env, "POST", "/v1/certificates/"+*c.Serial+"/revoke", mustJSON(t, map[string]string{"reason": "cessation_of_operation"}), nil)
		if resp.StatusCode != http.StatusOK {
			t.Errorf("revoking the server's own certificate %s: %d %s", *c.Serial, resp.StatusCode, body)
		}
	}
}

// TestPCARealChecksOnDouble runs TestRealPCA's checks, revocation included,
// against the double, so they are known to work before they cost money.
func TestPCARealChecksOnDouble(t *testing.T) {
	dbl := servertest.NewPCADouble(t)
	env := startPCA(t, dbl)
	arns := map[string]string{}
	for _, name := range []string{"root", "client-ca", "server-ca", "istio-ca"} {
		arns[name] = dbl.ARN(name)
	}
	realPCAChecks(t, env, arns)
	revokeOwnCertificates(t, env)
	revs := dbl.Revoked()
	if len(revs) != len(pcaProfiles)+1 {
		t.Fatalf("%d revocations reached PCA, want %d (one per profile and the server's own)", len(revs), len(pcaProfiles)+1)
	}
	for _, r := range revs {
		if r.Reason != "CESSATION_OF_OPERATION" || r.CAArn != arns[r.Role] {
			t.Errorf("revocation %+v", r)
		}
		// PCA wants the serial as colon-separated lower-case hex.
		if r.RawSerial != ca.ColonSerial(r.Serial) || !strings.Contains(r.RawSerial, ":") {
			t.Errorf("RevokeCertificate got serial %q, want %q", r.RawSerial, ca.ColonSerial(r.Serial))
		}
	}
}

// realPCAChecks issues one certificate per leaf profile (server-generated
// key, default template), checks it with nothing but what a client sees,
// and revokes it when the subtest ends.
func realPCAChecks(t *testing.T, env *servertest.Env, arns map[string]string) {
	roots := trustBundle(t, env)
	if len(roots) != 1 {
		t.Fatalf("trust bundle of %d certificates", len(roots))
	}
	root := roots[0]
	for _, p := range pcaProfiles {
		t.Run(p.name, func(t *testing.T) {
			before := time.Now()
			res := issue(t, env, pcaIssueRequest(t, p, nil, ""))
			t.Cleanup(func() {
				resp, body := call(t, env, "POST", "/v1/certificates/"+res.Serial+"/revoke", mustJSON(t, map[string]string{"reason": "cessation_of_operation"}), nil)
				if resp.StatusCode != http.StatusOK {
					t.Errorf("revoking %s: %d %s", res.Serial, resp.StatusCode, body)
				}
			})
			if !strings.HasPrefix(res.CertificateARN, arns[p.ca]+"/certificate/") {
				t.Errorf("certificate_arn %q is not under %s", res.CertificateARN, arns[p.ca])
			}
			leaf := parseOneCert(t, "certificate", res.Certificate)
			if leaf.KeyUsage != p.ku || !sameEKUs(leaf.ExtKeyUsage, p.eku) || len(leaf.UnknownExtKeyUsage) != 0 || leaf.IsCA {
				t.Errorf("KU %b EKU %v (+%v) CA %v, want exactly %b %v", leaf.KeyUsage, leaf.ExtKeyUsage, leaf.UnknownExtKeyUsage, leaf.IsCA, p.ku, p.eku)
			}
			if got, want := leafSANs(leaf), p.spec.sans(); !slices.Equal(got, want) {
				t.Errorf("SANs %q, want %q", got, want)
			}
			if span := leaf.NotAfter.Sub(leaf.NotBefore); span > 7*24*time.Hour {
				t.Errorf("span %s exceeds 7 days", span)
			}
			if leaf.NotBefore.Before(before.Add(-2 * time.Minute)) {
				t.Errorf("NotBefore %s: backdated more than certgate asked", leaf.NotBefore)
			}
			chain := parseCerts(t, "chain", res.Chain)
			if len(chain) == 0 || leaf.CheckSignatureFrom(chain[0]) != nil {
				t.Fatalf("chain does not start with the issuer")
			}
			if !matchesCAKey(leaf.SignatureAlgorithm, chain[0].PublicKey) {
				t.Errorf("leaf signed with %v by a %T key", leaf.SignatureAlgorithm, chain[0].PublicKey)
			}
			if _, err := leaf.Verify(x509.VerifyOptions{Roots: poolOf(root), Intermediates: poolOf(chain...), KeyUsages: p.eku}); err != nil {
				t.Errorf("x509.Verify to the PCA root: %v", err)
			}
			checkKeyMatches(t, res, leaf, nil)
			resp, body := call(t, env, "GET", "/v1/certificates/"+res.Serial, nil, nil)
			if resp.StatusCode != http.StatusOK || !bytes.Contains(body, []byte(res.CertificateARN)) {
				t.Errorf("GET /v1/certificates/%s: %d, ARN not shown: %s", res.Serial, resp.StatusCode, body)
			}
		})
	}
}

// matchesCAKey: SHA256WITHRSA for RSA, SHA256WITHECDSA for P-256,
// SHA384WITHECDSA for P-384.
func matchesCAKey(alg x509.SignatureAlgorithm, pub crypto.PublicKey) bool {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		return alg == x509.SHA256WithRSA
	case *ecdsa.PublicKey:
		switch k.Curve.Params().BitSize {
		case 256:
			return alg == x509.ECDSAWithSHA256
		case 384:
			return alg == x509.ECDSAWithSHA384
		}
	}
	return false
}
