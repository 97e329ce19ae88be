package ca

// Tests of the AWS Private CA backend against the pcatest double, through
// the real SDK over loopback: request shape, error mapping, retries and
// idempotency, cancellation, the rate budget, templates, the chain parser,
// revocation and the issuance-delay estimator.

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"math/big"
	"net/http"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/acmpca"

	"github.com/certgate/certgate/internal/apierror"
	"github.com/certgate/certgate/internal/ca/pcatest"
)

const blankTemplateARN = "arn:aws:acm-pca:::template/BlankEndEntityCertificate_APIPassthrough/V1"

// The double's CA keys: root RSA, client-ca P-256, server-ca RSA, istio-ca P-384.
var wantSigning = map[string]struct {
	pca string
	x   x509.SignatureAlgorithm
}{
	ClientCA: {"SHA256WITHECDSA", x509.ECDSAWithSHA256},
	ServerCA: {"SHA256WITHRSA", x509.SHA256WithRSA},
	IstioCA:  {"SHA384WITHECDSA", x509.ECDSAWithSHA384},
}

// checkIssued checks one Sign result against its request and the double's
// record of the IssueCertificate call.
func checkIssued(t *testing.T, h *pcaHarness, req *SignRequest, res *SignResult, tmplARN string) {
	t.Helper()
	prof := req.Profile
	leaf := res.Leaf

	var call pcatest.Call
	for _, c := range h.dbl.Calls(pcatest.OpIssueCertificate) {
		if c.CertificateArn == res.ARN && c.Err == "" {
			call = c
		}
	}
	if call.Op == "" {
		t.Fatalf("no successful IssueCertificate returned %s", res.ARN)
	}
	if call.CAArn != h.dbl.ARN(prof.CA) {
		t.Errorf("IssueCertificate went to %s, want %s (%s)", call.CAArn, h.dbl.ARN(prof.CA), prof.CA)
	}
	if call.TemplateArn != tmplARN {
		t.Errorf("template %s, want %s", call.TemplateArn, tmplARN)
	}
	if want := wantSigning[prof.CA]; call.SigningAlgorithm != want.pca || leaf.SignatureAlgorithm != want.x {
		t.Errorf("SigningAlgorithm %s (leaf signed %v), want %s for %s's key", call.SigningAlgorithm, leaf.SignatureAlgorithm, want.pca, prof.CA)
	}
	if call.ValidityType != "ABSOLUTE" || call.ValidityValue != req.NotAfter.Unix() {
		t.Errorf("Validity %s %d, want ABSOLUTE %d", call.ValidityType, call.ValidityValue, req.NotAfter.Unix())
	}
	if call.IdempotencyToken != req.IdempotencyToken {
		t.Errorf("IdempotencyToken %q, want the request's %q", call.IdempotencyToken, req.IdempotencyToken)
	}
	// ValidityNotBefore was sent: without it PCA backdates NotBefore by an hour.
	if !leaf.NotBefore.Equal(req.NotBefore) || !leaf.NotAfter.Equal(req.NotAfter) {
		t.Errorf("validity %s..%s, want exactly %s..%s", leaf.NotBefore, leaf.NotAfter, req.NotBefore, req.NotAfter)
	}
	if span := leaf.NotAfter.Sub(leaf.NotBefore); span > MaxLeafValidity {
		t.Errorf("span %s exceeds 7 days", span)
	}
	if leaf.KeyUsage != prof.KeyUsage || !slices.Equal(leaf.ExtKeyUsage, prof.ExtKeyUsage) || len(leaf.UnknownExtKeyUsage) != 0 {
		t.Errorf("KU %v EKU %v (+%v), want exactly %v %v", keyUsageNames(leaf.KeyUsage), ExtKeyUsageNames(leaf.ExtKeyUsage),
			leaf.UnknownExtKeyUsage, keyUsageNames(prof.KeyUsage), ExtKeyUsageNames(prof.ExtKeyUsage))
	}
	if leaf.IsCA {
		t.Error("leaf is a CA")
	}
	if got, want := sanSet(leaf.DNSNames, leaf.IPAddresses, leaf.URIs, leaf.EmailAddresses), sanSet(req.DNSNames, req.IPs, req.URIs, req.Emails); !slices.Equal(got, want) {
		t.Errorf("SANs %q, want %q", got, want)
	}
	if leaf.Subject.CommonName != req.Subject.CommonName {
		t.Errorf("CN %q, want %q", leaf.Subject.CommonName, req.Subject.CommonName)
	}
	if !PublicKeysEqual(leaf.PublicKey, req.PublicKey) {
		t.Error("the leaf certifies another key")
	}
	if !strings.HasPrefix(res.ARN, h.dbl.ARN(prof.CA)+"/certificate/") {
		t.Errorf("certificate ARN %s is not under %s", res.ARN, h.dbl.ARN(prof.CA))
	}
	if len(res.Chain) != 1 || !res.Chain[0].Equal(h.dbl.CACert(prof.CA)) || !res.Root.Equal(h.dbl.Root()) {
		t.Errorf("chain %d certificates / root %s, want [%s] and the double's root", len(res.Chain), res.Root.Subject, prof.CA)
	}
	inter := x509.NewCertPool()
	for _, c := range res.Chain {
		inter.AddCert(c)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: h.dbl.RootPool(), Intermediates: inter, KeyUsages: prof.ExtKeyUsage}); err != nil {
		t.Errorf("x509.Verify to the double's root: %v", err)
	}
}

func TestPCASignEveryProfile(t *testing.T) {
	h := newPCAHarness(t, nil, nil)
	for _, profile := range []string{ProfileClient, ProfileServer, ProfileMachine} {
		t.Run(profile, func(t *testing.T) {
			before := h.dbl.Stats().Issued
			req := signRequest(t, profile)
			var submitted string
			req.OnSubmitted = func(_ context.Context, arn string) error { submitted = arn; return nil }
			res, err := h.p.Sign(context.Background(), req)
			if err != nil {
				t.Fatalf("Sign: %v", err)
			}
			checkIssued(t, h, req, res, blankTemplateARN)
			if submitted != res.ARN {
				t.Errorf("OnSubmitted got %q, result ARN %q", submitted, res.ARN)
			}
			if got := h.dbl.Stats().Issued - before; got != 1 {
				t.Errorf("%d certificates minted, want 1", got)
			}
		})
	}
}

func TestPCASigningAlgorithmOverride(t *testing.T) {
	h := newPCAHarness(t, nil, func(c *PCAConfig) { c.SigningAlgorithms = map[string]string{ClientCA: "SHA384WITHECDSA"} })
	res, err := h.p.Sign(context.Background(), signRequest(t, ProfileClient))
	if err != nil {
		t.Fatal(err)
	}
	if c := lastCall(t, h.dbl, pcatest.OpIssueCertificate); c.SigningAlgorithm != "SHA384WITHECDSA" || res.Leaf.SignatureAlgorithm != x509.ECDSAWithSHA384 {
		t.Errorf("override ignored: sent %s, leaf %v", c.SigningAlgorithm, res.Leaf.SignatureAlgorithm)
	}
}

// TestPCAErrorMapping drives every PCA failure of the contract through the
// real SDK and checks the status, code, retryability, outcome and the AWS
// request ID certgate reports. Failures are produced the way AWS produces
// them wherever the double can (a disabled CA, a bad ARN, a quota), and
// injected only where it cannot.
func TestPCAErrorMapping(t *testing.T) {
	fastRetries := func(c *PCAConfig) { c.RetryDelay, c.MaxRetryDelay = time.Millisecond, 5*time.Millisecond }
	type tc struct {
		name    string
		mod     func(*PCAConfig)
		prep    func(t *testing.T, h *pcaHarness)
		run     func(t *testing.T, h *pcaHarness) error // default: Sign a client certificate
		op      string                                  // operation whose last call carries the error
		awsCode string                                  // what the double answered; "" for no AWS answer
		calls   int                                     // calls of op after prep
		status  int
		code    string
		retry   bool
		unknown bool // the CA may still issue: ErrOutcomeUnknown
	}
	badCSR := func(t *testing.T, h *pcaHarness) error {
		req := signRequest(t, ProfileClient)
		req.CSR = bytes.Clone(req.CSR)
		req.CSR[len(req.CSR)-1] ^= 0xff // breaks the CSR's signature, not its structure
		_, err := h.p.Sign(context.Background(), req)
		return err
	}
	cases := []tc{
		{name: "InvalidArgs", mod: func(c *PCAConfig) { c.SigningAlgorithms = map[string]string{ClientCA: "SHA256WITHRSA"} },
			awsCode: "InvalidArgsException", calls: 1, status: 400, code: CodePCAInvalidArgs},
		{name: "MalformedCSR", run: badCSR, awsCode: "MalformedCSRException", calls: 1, status: 400, code: CodePCAMalformedCSR},
		{name: "LimitExceeded", prep: func(_ *testing.T, h *pcaHarness) {
			h.dbl.FailNext(pcatest.OpIssueCertificate, 4, "LimitExceededException", 0)
		},
			awsCode: "LimitExceededException", calls: 4, status: 429, code: apierror.CodeUpstreamThrottled, retry: true},
		{name: "Throttling", prep: func(t *testing.T, h *pcaHarness) {
			// A real quota: the first issuance takes the only token.
			h.dbl.SetQuota(pcatest.OpIssueCertificate, 0.001, 1)
			if _, err := h.p.Sign(context.Background(), signRequest(t, ProfileClient)); err != nil {
				t.Fatal(err)
			}
		}, awsCode: "ThrottlingException", calls: 4, status: 429, code: apierror.CodeUpstreamThrottled, retry: true},
		{name: "InvalidState", prep: func(_ *testing.T, h *pcaHarness) { h.dbl.SetStatus(pcatest.RoleClientCA, pcatest.StatusDisabled) },
			awsCode: "InvalidStateException", calls: 1, status: 503, code: CodePCAInvalidState, retry: true},
		{name: "ResourceNotFound", mod: func(c *PCAConfig) {
			c.ARNs[ClientCA] = c.ARNs[ClientCA][:strings.LastIndex(c.ARNs[ClientCA], "/")+1] + "00000000-0000-4000-8000-000000000000"
		}, awsCode: "ResourceNotFoundException", calls: 1, status: 500, code: CodePCANotFound},
		{name: "AccessDenied", prep: func(_ *testing.T, h *pcaHarness) { h.dbl.SetAccessDenied(pcatest.OpIssueCertificate, true) },
			awsCode: "AccessDeniedException", calls: 1, status: 500, code: CodePCAAccessDenied},
		{name: "InvalidArn", mod: func(c *PCAConfig) {
			c.ARNs[ClientCA] = c.ARNs[ClientCA][:strings.LastIndex(c.ARNs[ClientCA], "/")+1] + "not a CA id"
		}, awsCode: "InvalidArnException", calls: 1, status: 500, code: CodePCAInvalidArn},
		{name: "RequestInProgress", op: pcatest.OpGetCertificate, run: func(t *testing.T, h *pcaHarness) error {
			// Reconciliation's Fetch of a certificate PCA is still issuing.
			h.dbl.SetIssueDelay(time.Hour)
			req := signRequest(t, ProfileClient)
			ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
			defer cancel()
			var arn string
			req.OnSubmitted = func(_ context.Context, a string) error { arn = a; return nil }
			if _, err := h.p.Sign(ctx, req); !errors.Is(err, ErrOutcomeUnknown) || arn == "" {
				t.Fatalf("Sign during a long issuance: %v (ARN %q)", err, arn)
			}
			h.dbl.ResetCalls()
			_, err := h.p.Fetch(context.Background(), ClientCA, arn)
			return err
		}, awsCode: "RequestInProgressException", calls: 1, status: 409, code: CodePCAInProgress, retry: true},
		{name: "RequestFailed", op: pcatest.OpGetCertificate, prep: func(_ *testing.T, h *pcaHarness) { h.dbl.FailIssuanceNext(1, "") },
			awsCode: "RequestFailedException", calls: 1, status: 502, code: CodePCARequestFailed},
		{name: "Deadline", op: pcatest.OpGetCertificate, run: func(t *testing.T, h *pcaHarness) error {
			h.dbl.SetIssueDelay(5 * time.Second)
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			defer cancel()
			_, err := h.p.Sign(ctx, signRequest(t, ProfileClient))
			return err
		}, calls: -1, status: 504, code: apierror.CodeTimeout, retry: true, unknown: true},
		{name: "InternalFailure", prep: func(_ *testing.T, h *pcaHarness) { h.dbl.FailNext(pcatest.OpIssueCertificate, 4, "InternalFailure", 0) },
			awsCode: "InternalFailure", calls: 4, status: 503, code: apierror.CodeUpstream, retry: true, unknown: true},
		{name: "ServiceUnavailable", prep: func(_ *testing.T, h *pcaHarness) {
			h.dbl.FailNext(pcatest.OpIssueCertificate, 4, "ServiceUnavailable", 503)
		}, awsCode: "ServiceUnavailable", calls: 4, status: 503, code: apierror.CodeUpstream, retry: true, unknown: true},
		{name: "ConnectionDropped", prep: func(_ *testing.T, h *pcaHarness) { h.dbl.DropNext(pcatest.OpIssueCertificate, 4) },
			// Up to 4 attempts arrive: a retry on a pooled connection the
			// double dropped can fail before it reaches the double.
			calls: -1, status: 503, code: apierror.CodeUpstream, retry: true, unknown: true},
		{name: "RevokeInvalidRequest", op: pcatest.OpRevokeCertificate, run: func(_ *testing.T, h *pcaHarness) error {
			// A root cannot revoke its own certificate.
			return h.p.Revoke(context.Background(), Root, h.dbl.Root().SerialNumber, 1)
		}, awsCode: "InvalidRequestException", calls: 1, status: 400, code: CodePCAInvalidRequest},
		{name: "RevokeConcurrentModification", op: pcatest.OpRevokeCertificate, run: func(_ *testing.T, h *pcaHarness) error {
			h.dbl.FailNext(pcatest.OpRevokeCertificate, 1, "ConcurrentModificationException", 0)
			return h.p.Revoke(context.Background(), ClientCA, big.NewInt(12345), 1)
		}, awsCode: "ConcurrentModificationException", calls: 1, status: 409, code: CodePCAConcurrent, retry: true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := newPCAHarness(t, nil, func(cfg *PCAConfig) {
				fastRetries(cfg)
				if c.mod != nil {
					c.mod(cfg)
				}
			})
			if c.prep != nil {
				c.prep(t, h)
			}
			h.dbl.ResetCalls()
			run := c.run
			if run == nil {
				run = func(t *testing.T, h *pcaHarness) error {
					_, err := h.p.Sign(context.Background(), signRequest(t, ProfileClient))
					return err
				}
			}
			start := time.Now()
			err := run(t, h)
			e := apiErr(t, err)
			if e.Status != c.status || e.Code != c.code || e.Retryable != c.retry {
				t.Errorf("got %d %s retryable=%v, want %d %s retryable=%v (%v)", e.Status, e.Code, e.Retryable, c.status, c.code, c.retry, err)
			}
			if c.retry && c.status != http.StatusConflict && e.RetryAfter <= 0 {
				t.Errorf("retryable %d without Retry-After", e.Status)
			}
			if got := errors.Is(err, ErrOutcomeUnknown); got != c.unknown {
				t.Errorf("ErrOutcomeUnknown = %v, want %v", got, c.unknown)
			}
			if c.status == 504 && time.Since(start) > 2*time.Second {
				t.Errorf("deadline error after %s", time.Since(start))
			}
			op := c.op
			if op == "" {
				op = pcatest.OpIssueCertificate
			}
			calls := h.dbl.Calls(op)
			if c.calls >= 0 && len(calls) != c.calls {
				t.Errorf("%d %s calls, want %d", len(calls), op, c.calls)
			}
			if c.name == "ConnectionDropped" && (len(calls) < 1 || len(calls) > 4) {
				t.Errorf("%d %s calls, want 1 to 4 (max_retries 3)", len(calls), op)
			}
			if c.awsCode == "" {
				if id := detail(e, "aws_request_id"); id != "" && c.status == 504 {
					t.Errorf("aws_request_id %q on a client-side deadline", id)
				}
				return
			}
			last := calls[len(calls)-1]
			if last.Err != c.awsCode {
				t.Errorf("the double answered %q, want %q", last.Err, c.awsCode)
			}
			if id := detail(e, "aws_request_id"); id == "" || id != last.RequestID {
				t.Errorf("aws_request_id %q, want the double's %q", id, last.RequestID)
			}
			if c.status == 500 && (!strings.Contains(e.Message, h.cfg.ARNs[ClientCA]) || !strings.Contains(e.Message, "template")) {
				t.Errorf("a configuration error should name the CA ARN and template: %q", e.Message)
			}
		})
	}
}

// TestPCARetriesAreIdempotent: every retry of IssueCertificate carries the
// same IdempotencyToken, so a lost answer never mints a second certificate.
func TestPCARetriesAreIdempotent(t *testing.T) {
	cases := []struct {
		name   string
		inject func(dbl *pcatest.Server)
		calls  int
	}{
		{"throttled twice", func(d *pcatest.Server) { d.FailNext(pcatest.OpIssueCertificate, 2, "ThrottlingException", 0) }, 3},
		{"500 after minting", func(d *pcatest.Server) {
			d.InjectNext(pcatest.OpIssueCertificate, 1, pcatest.Fault{AfterProcessing: true, ErrorType: "InternalFailure"})
		}, 2},
		{"connection dropped after minting", func(d *pcatest.Server) {
			d.InjectNext(pcatest.OpIssueCertificate, 1, pcatest.Fault{AfterProcessing: true, Drop: true})
		}, 2},
		{"GetCertificate throttled while polling", func(d *pcatest.Server) { d.FailNext(pcatest.OpGetCertificate, 2, "ThrottlingException", 0) }, 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := newPCAHarness(t, nil, nil)
			c.inject(h.dbl)
			req := signRequest(t, ProfileServer)
			res, err := h.p.Sign(context.Background(), req)
			if err != nil {
				t.Fatalf("Sign: %v", err)
			}
			calls := h.dbl.Calls(pcatest.OpIssueCertificate)
			// After a dropped connection a retry may die on a stale pooled
			// connection before reaching the double, so drops allow more.
			if n := len(calls); n < c.calls || (n > c.calls && !strings.Contains(c.name, "dropped")) || n > 4 {
				t.Errorf("%d IssueCertificate calls, want %d", n, c.calls)
			}
			for i, call := range calls {
				if call.IdempotencyToken != req.IdempotencyToken {
					t.Errorf("call %d token %q, want %q", i, call.IdempotencyToken, req.IdempotencyToken)
				}
				if call.ReplayMismatch {
					t.Errorf("call %d replayed a different request under the same token", i)
				}
			}
			issued := h.dbl.IssuedCerts()
			if len(issued) != 1 || !issued[0].Cert.Equal(res.Leaf) || issued[0].Arn != res.ARN {
				t.Fatalf("%d certificates minted (want 1, the one returned)", len(issued))
			}
			checkIssued(t, h, req, res, blankTemplateARN)
		})
	}
}

// TestPCACancelDuringPolling: a caller that goes away while PCA is still
// issuing stops the polling at once, leaves no goroutine behind, and gets
// ErrOutcomeUnknown (the certificate may still appear) after the ARN was
// handed to OnSubmitted.
func TestPCACancelDuringPolling(t *testing.T) {
	h := newPCAHarness(t, nil, nil)
	// Warm up: the SDK's connections exist before the baseline is taken.
	if _, err := h.p.Sign(context.Background(), signRequest(t, ProfileServer)); err != nil {
		t.Fatal(err)
	}
	h.dbl.SetIssueDelay(5 * time.Second)
	base := pcatest.Goroutines()

	ctx, cancel := context.WithCancel(context.Background())
	req := signRequest(t, ProfileServer)
	var arn string
	req.OnSubmitted = func(_ context.Context, a string) error {
		arn = a
		time.AfterFunc(300*time.Millisecond, cancel)
		return nil
	}
	start := time.Now()
	_, err := h.p.Sign(ctx, req)
	took := time.Since(start)
	cancel()
	if !errors.Is(err, ErrOutcomeUnknown) {
		t.Fatalf("Sign after cancel: %v, want ErrOutcomeUnknown", err)
	}
	if e := apiErr(t, err); e.Code != apierror.CodeTimeout {
		t.Errorf("code %s, want %s", e.Code, apierror.CodeTimeout)
	}
	if took > 1500*time.Millisecond {
		t.Errorf("Sign returned %s after the call, %s after the cancel; want promptly (the issuance takes 5s)", took, took-300*time.Millisecond)
	}
	if arn == "" || !strings.HasPrefix(arn, h.dbl.ARN(ServerCA)) {
		t.Errorf("OnSubmitted got ARN %q", arn)
	}
	polls := h.dbl.Count(pcatest.OpGetCertificate)
	deadline := time.Now().Add(3 * time.Second)
	n := pcatest.Goroutines()
	for n > base && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
		n = pcatest.Goroutines()
	}
	if n > base {
		buf := make([]byte, 1<<20)
		t.Errorf("%d goroutines after the cancel, %d before:\n%s", n, base, buf[:runtime.Stack(buf, true)])
	}
	if later := h.dbl.Count(pcatest.OpGetCertificate); later != polls {
		t.Errorf("polling went on after Sign returned: %d GetCertificate calls, then %d", polls, later)
	}
}

// TestPCARateBudget: a call that cannot get its budget slot before its
// deadline fails at once with 429 and Retry-After, without reaching PCA;
// one whose deadline leaves room waits for the slot.
func TestPCARateBudget(t *testing.T) {
	h := newPCAHarness(t, nil, nil) // IssueCertificate 25/s, the default
	lim := h.p.limiters[OpIssueCertificate]
	if lim.Limit() != 25 || lim.Burst() != 1 {
		t.Fatalf("IssueCertificate budget %v/s burst %d, want 25/s burst 1", lim.Limit(), lim.Burst())
	}
	for range 10 { // a burst ahead of us: the next slot is about 400ms away
		lim.Reserve()
	}

	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := h.p.Sign(ctx, signRequest(t, ProfileServer))
	took := time.Since(start)
	e := apiErr(t, err)
	if e.Status != http.StatusTooManyRequests || e.Code != apierror.CodeRateLimited || !e.Retryable || e.RetryAfter < time.Second {
		t.Errorf("got %d %s retryable=%v after %s, want 429 %s with Retry-After ≥ 1s", e.Status, e.Code, e.Retryable, e.RetryAfter, apierror.CodeRateLimited)
	}
	if errors.Is(err, ErrOutcomeUnknown) {
		t.Error("a call that never left is not an unknown outcome")
	}
	if took > 100*time.Millisecond {
		t.Errorf("429 after %s, want at once", took)
	}
	if n := h.dbl.Count(pcatest.OpIssueCertificate); n != 0 {
		t.Errorf("%d IssueCertificate calls reached PCA", n)
	}

	// Room in the deadline: the call waits for its slot and succeeds.
	for range 5 { // another 200ms ahead of whatever is queued
		lim.Reserve()
	}
	wait := lim.Reserve()
	d := wait.Delay()
	wait.Cancel()
	ctx2, cancel2 := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel2()
	start = time.Now()
	if _, err := h.p.Sign(ctx2, signRequest(t, ProfileServer)); err != nil {
		t.Fatalf("Sign with room to wait: %v", err)
	}
	if took := time.Since(start); took < d-50*time.Millisecond {
		t.Errorf("Sign took %s, but its budget slot was %s away", took, d)
	}
}

// TestPCARateBudgetPerAttempt: retries take budget slots too, so a storm of
// throttling cannot push the retries themselves over the quota.
func TestPCARateBudgetPerAttempt(t *testing.T) {
	h := newPCAHarness(t, nil, func(c *PCAConfig) {
		c.RateLimits = map[string]float64{OpIssueCertificate: 5} // one slot per 200ms
		c.RetryDelay, c.MaxRetryDelay = time.Millisecond, 2*time.Millisecond
	})
	h.dbl.FailNext(pcatest.OpIssueCertificate, 2, "ThrottlingException", 0)
	if _, err := h.p.Sign(context.Background(), signRequest(t, ProfileClient)); err != nil {
		t.Fatal(err)
	}
	calls := h.dbl.Calls(pcatest.OpIssueCertificate)
	if len(calls) != 3 {
		t.Fatalf("%d IssueCertificate calls, want 3", len(calls))
	}
	for i := 1; i < len(calls); i++ {
		if gap := calls[i].Time.Sub(calls[i-1].Time); gap < 170*time.Millisecond {
			t.Errorf("attempt %d came %s after the previous one; the 5/s budget allows one per 200ms", i+1, gap)
		}
	}
}

// TestPCADescribe: status and usage mode from DescribeCertificateAuthority;
// when IAM denies it, status "unknown" and issuance still works.
func TestPCADescribe(t *testing.T) {
	dbl := newDouble(t, pcatest.WithCA(pcatest.RoleIstioCA, pcatest.CAConfig{UsageMode: pcatest.UsageModeShortLived}))
	h := newPCAHarness(t, dbl, nil)
	h.p.SetLookup(nil) // Sign reads CA certificates through Describe
	info, err := h.p.Describe(context.Background(), IstioCA)
	if err != nil {
		t.Fatal(err)
	}
	if info.Status != "ACTIVE" || info.UsageMode != "SHORT_LIVED_CERTIFICATE" || info.ARN != dbl.ARN(IstioCA) ||
		!info.Certificate.Equal(dbl.CACert(IstioCA)) || len(info.Chain) != 1 || !info.Chain[0].Equal(dbl.Root()) {
		t.Errorf("Describe(istio-ca) = %s %s %s, chain %d", info.Status, info.UsageMode, info.ARN, len(info.Chain))
	}

	dbl.SetAccessDenied(pcatest.OpDescribeCertificateAuthority, true)
	for _, name := range Names {
		info, err := h.p.Describe(context.Background(), name)
		if err != nil {
			t.Fatalf("Describe(%s) with DescribeCertificateAuthority denied: %v", name, err)
		}
		if info.Status != "unknown" || info.UsageMode != "" || !info.Certificate.Equal(dbl.CACert(name)) {
			t.Errorf("%s: status %q usage %q", name, info.Status, info.UsageMode)
		}
	}
	if c := lastCall(t, dbl, pcatest.OpDescribeCertificateAuthority); c.Err != "AccessDeniedException" {
		t.Errorf("the double answered %q", c.Err)
	}
	req := signRequest(t, ProfileMachine)
	res, err := h.p.Sign(context.Background(), req)
	if err != nil {
		t.Fatalf("issuance with DescribeCertificateAuthority denied: %v", err)
	}
	checkIssued(t, h, req, res, blankTemplateARN)
}

// TestPCATemplates: the template per profile is configurable; a template
// known to set other usages than the profile's is refused before anything
// is issued, and a certificate that comes back with other usages or names
// is refused after.
func TestPCATemplates(t *testing.T) {
	cases := []struct {
		name, profile, template string
		wantARN                 string
		status                  int    // 0: issued
		issued                  int    // certificates the double minted
		msg                     string // part of the refusal
	}{
		{name: "server EndEntityServerAuth APIPassthrough", profile: ProfileServer, template: "EndEntityServerAuthCertificate_APIPassthrough/V1",
			wantARN: "arn:aws:acm-pca:::template/EndEntityServerAuthCertificate_APIPassthrough/V1", issued: 1},
		{name: "server EndEntityServerAuth by ARN", profile: ProfileServer, template: "arn:aws:acm-pca:::template/EndEntityServerAuthCertificate/V1",
			wantARN: "arn:aws:acm-pca:::template/EndEntityServerAuthCertificate/V1", issued: 1},
		{name: "machine EndEntityCertificate", profile: ProfileMachine, template: "EndEntityCertificate/V1",
			wantARN: "arn:aws:acm-pca:::template/EndEntityCertificate/V1", issued: 1},
		{name: "client APICSRPassthrough blank", profile: ProfileClient, template: "BlankEndEntityCertificate_APICSRPassthrough/V1",
			wantARN: "arn:aws:acm-pca:::template/BlankEndEntityCertificate_APICSRPassthrough/V1", issued: 1},
		{name: "client EndEntityCertificate refused before issuing", profile: ProfileClient, template: "EndEntityCertificate/V1",
			status: 502, msg: "keyEncipherment"},
		{name: "client EndEntityClientAuth refused before issuing", profile: ProfileClient, template: "EndEntityClientAuthCertificate_APIPassthrough/V1",
			status: 502, msg: "aws_pca.templates.client"},
		{name: "server CA template refused before issuing", profile: ProfileServer, template: "SubordinateCACertificate_PathLen0/V1",
			status: 502, msg: "a CA certificate"},
		{name: "client CSR passthrough refused after issuing", profile: ProfileClient, template: "BlankEndEntityCertificate_CSRPassthrough/V1",
			status: 502, issued: 1, msg: "key usage"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := newPCAHarness(t, nil, func(cfg *PCAConfig) { cfg.Templates = map[string]string{c.profile: c.template} })
			req := signRequest(t, c.profile)
			res, err := h.p.Sign(context.Background(), req)
			if got := h.dbl.Stats().Issued; got != c.issued {
				t.Errorf("%d certificates minted, want %d", got, c.issued)
			}
			if c.status == 0 {
				if err != nil {
					t.Fatalf("Sign: %v", err)
				}
				checkIssuedAnyEKUOrder(t, h, req, res, c.wantARN)
				return
			}
			e := apiErr(t, err)
			if e.Status != c.status || e.Code != apierror.CodeUpstream || !strings.Contains(e.Message, c.msg) {
				t.Errorf("got %d %s %q, want %d %s mentioning %q", e.Status, e.Code, e.Message, c.status, apierror.CodeUpstream, c.msg)
			}
			if errors.Is(err, ErrOutcomeUnknown) {
				t.Error("a refused template is a final failure, not an unknown outcome")
			}
		})
	}
}

// checkIssuedAnyEKUOrder is checkIssued for templates that fix the EKU
// order themselves (EndEntityCertificate lists serverAuth first).
func checkIssuedAnyEKUOrder(t *testing.T, h *pcaHarness, req *SignRequest, res *SignResult, tmplARN string) {
	t.Helper()
	if !UsagesMatch(req.Profile, res.Leaf.KeyUsage, res.Leaf.ExtKeyUsage, res.Leaf.UnknownExtKeyUsage) {
		t.Fatalf("usages %v %v, want the profile's", keyUsageNames(res.Leaf.KeyUsage), ExtKeyUsageNames(res.Leaf.ExtKeyUsage))
	}
	saved := req.Profile
	p := *saved
	p.ExtKeyUsage = res.Leaf.ExtKeyUsage
	req.Profile = &p
	defer func() { req.Profile = saved }()
	checkIssued(t, h, req, res, tmplARN)
}

func TestPCATemplatePartition(t *testing.T) {
	dbl := newDouble(t, pcatest.WithRegion("us-gov-west-1"))
	h := newPCAHarness(t, dbl, nil)
	req := signRequest(t, ProfileServer)
	if _, err := h.p.Sign(context.Background(), req); err != nil {
		t.Fatalf("Sign in GovCloud: %v", err)
	}
	if c := lastCall(t, dbl, pcatest.OpIssueCertificate); c.TemplateArn != "arn:aws-us-gov:acm-pca:::template/BlankEndEntityCertificate_APIPassthrough/V1" {
		t.Errorf("template ARN %s is not in the CA's partition", c.TemplateArn)
	}
}

func TestKnownTemplate(t *testing.T) {
	ee := x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment
	cases := []struct {
		arn  string
		ok   bool
		want templateUsage
	}{
		{"arn:aws:acm-pca:::template/BlankEndEntityCertificate_APIPassthrough/V1", true, templateUsage{fromAPI: true}},
		{"arn:aws:acm-pca:::template/BlankEndEntityCertificate_APICSRPassthrough/V1", true, templateUsage{fromAPI: true}},
		{"arn:aws:acm-pca:::template/BlankEndEntityCertificate_CSRPassthrough/V1", false, templateUsage{}},
		{"arn:aws:acm-pca:::template/EndEntityCertificate/V1", true, templateUsage{ku: ee, eku: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}},
		{"arn:aws-cn:acm-pca:::template/EndEntityClientAuthCertificate_CSRPassthrough/V1", true, templateUsage{ku: ee, eku: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}},
		{"arn:aws:acm-pca:::template/EndEntityServerAuthCertificate_APIPassthrough/V1", true, templateUsage{ku: ee, eku: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}},
		{"arn:aws:acm-pca:::template/CodeSigningCertificate/V1", true, templateUsage{ku: x509.KeyUsageDigitalSignature, eku: []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning}}},
		{"arn:aws:acm-pca:::template/SubordinateCACertificate_PathLen0/V1", true, templateUsage{ku: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign | x509.KeyUsageCRLSign, isCA: true}},
		{"arn:aws:acm-pca:::template/SubordinateCACertificate_PathLen2_CSRPassthrough/V1", true, templateUsage{ku: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign | x509.KeyUsageCRLSign, isCA: true, pathLen: 2}},
		{"arn:aws:acm-pca:::template/BlankSubordinateCACertificate_PathLen1_APIPassthrough/V1", true, templateUsage{isCA: true, pathLen: 1, fromAPI: true}},
		{"arn:aws:acm-pca:::template/SubordinateCACertificate_PathLen4/V1", false, templateUsage{}},
		{"arn:aws:acm-pca:::template/EndEntityCertificate/V2", false, templateUsage{}},
		{"arn:aws:acm-pca:::template/RootCACertificate/V1", false, templateUsage{}},
		{"arn:aws:acm-pca:us-east-1:123456789012:template/Custom/V1", false, templateUsage{}},
		{"EndEntityCertificate/V1", false, templateUsage{}},
	}
	for _, c := range cases {
		got, ok := knownTemplate(c.arn)
		if ok != c.ok || got.ku != c.want.ku || !slices.Equal(got.eku, c.want.eku) || got.isCA != c.want.isCA || got.pathLen != c.want.pathLen || got.fromAPI != c.want.fromAPI {
			t.Errorf("knownTemplate(%s) = %+v %v, want %+v %v", c.arn, got, ok, c.want, c.ok)
		}
	}
	istio := DefaultProfiles(0)[ProfileIstioIntermediate]
	if err := checkTemplate(istio, "arn:aws:acm-pca:::template/SubordinateCACertificate_PathLen0/V1"); err != nil {
		t.Errorf("istio default template refused: %v", err)
	}
	if err := checkTemplate(istio, "arn:aws:acm-pca:::template/SubordinateCACertificate_PathLen1/V1"); err == nil {
		t.Error("pathlen 1 accepted for a pathlen 0 profile")
	}
}

// TestPCAChainHandling: the chain is ordered by signature, not position,
// and one that does not verify to the cached root is refused (502, final).
func TestPCAChainHandling(t *testing.T) {
	other := newDouble(t, pcatest.WithFreshKeys())
	cases := []struct {
		name    string
		rewrite func(cert, chain string) (string, string)
		ok      bool
	}{
		{"reversed", func(cert, chain string) (string, string) {
			parts := strings.SplitAfter(chain, "-----END CERTIFICATE-----")
			slices.Reverse(parts)
			return cert, strings.Join(parts, "\n")
		}, true},
		{"root dropped", func(cert, chain string) (string, string) {
			return cert, chain[:strings.Index(chain, "-----END CERTIFICATE-----")+len("-----END CERTIFICATE-----")]
		}, true},
		{"intermediate missing", func(cert, chain string) (string, string) {
			return cert, chain[strings.Index(chain, "-----END CERTIFICATE-----")+len("-----END CERTIFICATE-----"):]
		}, false},
		{"another hierarchy", func(cert, _ string) (string, string) {
			return cert, other.CACertPEM(pcatest.RoleServerCA) + "\n" + other.CACertPEM(pcatest.RoleRoot)
		}, false},
		{"certificate replaced", func(_, chain string) (string, string) {
			return other.CACertPEM(pcatest.RoleServerCA), chain
		}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := newPCAHarness(t, nil, nil)
			h.dbl.SetCertificateRewrite(c.rewrite)
			req := signRequest(t, ProfileServer)
			res, err := h.p.Sign(context.Background(), req)
			if c.ok {
				if err != nil {
					t.Fatalf("Sign: %v", err)
				}
				checkIssued(t, h, req, res, blankTemplateARN)
				return
			}
			e := apiErr(t, err)
			if e.Status != http.StatusBadGateway || errors.Is(err, ErrOutcomeUnknown) {
				t.Errorf("got %d (unknown=%v): %v, want a final 502", e.Status, errors.Is(err, ErrOutcomeUnknown), err)
			}
		})
	}
}

func TestPCARevoke(t *testing.T) {
	h := newPCAHarness(t, nil, nil)
	res, err := h.p.Sign(context.Background(), signRequest(t, ProfileClient))
	if err != nil {
		t.Fatal(err)
	}
	serial := res.Leaf.SerialNumber
	if err := h.p.Revoke(context.Background(), ClientCA, serial, 1); err != nil {
		t.Fatalf("Revoke: %v", err)
	}
	revs := h.dbl.Revoked()
	if len(revs) != 1 || revs[0].Serial.Cmp(serial) != 0 || revs[0].Reason != "KEY_COMPROMISE" || revs[0].RawSerial != ColonSerial(serial) ||
		revs[0].CAArn != h.dbl.ARN(ClientCA) {
		t.Fatalf("revocations %+v", revs)
	}
	if revs[0].RawSerial != strings.ToLower(revs[0].RawSerial) || !strings.Contains(revs[0].RawSerial, ":") {
		t.Errorf("serial sent as %q, want colon-separated lower-case hex", revs[0].RawSerial)
	}
	// A repeat (an answer lost the first time) is not an error.
	if err := h.p.Revoke(context.Background(), ClientCA, serial, 1); err != nil {
		t.Errorf("second Revoke: %v", err)
	}
	if c := lastCall(t, h.dbl, pcatest.OpRevokeCertificate); c.Err != "RequestAlreadyProcessedException" {
		t.Errorf("second revoke answered %q", c.Err)
	}
	if e := apiErr(t, h.p.Revoke(context.Background(), ClientCA, serial, 8)); e.Status != 400 {
		t.Errorf("reason 8 (removeFromCRL): %d", e.Status)
	}
}

// simulateWait runs waitIssued's schedule against a certificate ready at
// ready (after IssueCertificate returned), without time passing.
func simulateWait(d *delayEstimate, ready time.Duration) (polls int, at time.Duration) {
	at = d.first()
	var lastMiss time.Duration = -1
	step := pollStep
	for {
		polls++
		if at >= ready {
			d.observe(lastMiss, at)
			return polls, at
		}
		lastMiss = at
		at += step
		step = min(step*3/2, maxPollStep)
	}
}

func TestDelayEstimate(t *testing.T) {
	run := func(d *delayEstimate, ready time.Duration, n int) (avgPolls float64, median, worst time.Duration) {
		var lat []time.Duration
		total := 0
		for range n {
			p, at := simulateWait(d, ready)
			total += p
			lat = append(lat, at)
		}
		slices.Sort(lat)
		return float64(total) / float64(n), lat[n/2], lat[n-1]
	}
	d := &delayEstimate{}
	if f := d.first(); f != initialDelay {
		t.Errorf("first poll with no history at %s", f)
	}
	// Cold start on a 300ms CA: the first wait climbs the steps.
	if p, at := simulateWait(d, 300*time.Millisecond); p > 7 || at > 450*time.Millisecond {
		t.Errorf("cold wait: %d polls, ready at %s", p, at)
	}
	run(d, 300*time.Millisecond, 40)
	polls, median, worst := run(d, 300*time.Millisecond, 400)
	t.Logf("steady 300ms: %.2f polls, median %s, worst %s", polls, median, worst)
	if polls > 1.5 || median > 320*time.Millisecond || worst > 300*time.Millisecond+pollStep+readyMargin {
		t.Errorf("steady 300ms: %.2f polls/certificate (want ≤ 1.5), median %s, worst %s", polls, median, worst)
	}
	// The CA gets faster: followed within a few dozen issuances.
	run(d, 100*time.Millisecond, 40)
	polls, median, _ = run(d, 100*time.Millisecond, 200)
	if polls > 1.5 || median > 120*time.Millisecond {
		t.Errorf("after speeding up to 100ms: %.2f polls, median %s", polls, median)
	}
	// The CA gets slower: the first poll follows at once.
	run(d, time.Second, 20) // once most of the window is slow
	if f := d.first(); f < 900*time.Millisecond {
		t.Errorf("after slowing to 1s the first poll is at %s", f)
	}
	polls, median, _ = run(d, time.Second, 200)
	if polls > 1.5 || median > 1050*time.Millisecond {
		t.Errorf("steady 1s: %.2f polls, median %s", polls, median)
	}
	// Jitter: ready uniformly in 250..350ms.
	j := &delayEstimate{}
	total, var1 := 0, []time.Duration{}
	for i := range 600 {
		p, at := simulateWait(j, 250*time.Millisecond+time.Duration(i*7919%100)*time.Millisecond)
		if i >= 100 {
			total += p
			var1 = append(var1, at)
		}
	}
	slices.Sort(var1)
	if avg := float64(total) / 500; avg > 2 || var1[250] > 340*time.Millisecond {
		t.Errorf("jittered 250..350ms: %.2f polls, median %s", avg, var1[250])
	}
}

// TestPCAUsesConfiguredEndpointAndRegion guards the wiring the double relies
// on: requests are SigV4-scoped to the configured region and service.
func TestPCAUsesConfiguredEndpointAndRegion(t *testing.T) {
	dbl := newDouble(t, pcatest.WithRegion("eu-west-2"))
	h := newPCAHarness(t, dbl, nil)
	out, err := h.p.api.GetCertificateAuthorityCertificate(context.Background(), &acmpca.GetCertificateAuthorityCertificateInput{CertificateAuthorityArn: aws.String(dbl.ARN(Root))})
	if err != nil {
		t.Fatalf("a request scoped to eu-west-2: %v", err)
	}
	if aws.ToString(out.Certificate) != dbl.CACertPEM(Root) {
		t.Error("another certificate")
	}
	if c := lastCall(t, dbl, pcatest.OpGetCertificateAuthorityCertificate); c.AccessKeyID != "AKIDCERTGATETEST" {
		t.Errorf("credentials %q, want the environment's", c.AccessKeyID)
	}
}
