package ca

import (
	"context"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/acmpca"
	"github.com/aws/aws-sdk-go-v2/service/acmpca/types"
	"github.com/aws/smithy-go"
	smithymw "github.com/aws/smithy-go/middleware"
	"go.uber.org/zap"
	"golang.org/x/time/rate"

	"github.com/certgate/certgate/internal/apierror"
	"github.com/certgate/certgate/internal/metrics"
)

// PCA operation names, as the SDK and the rate limits name them.
const (
	OpIssueCertificate   = "IssueCertificate"
	OpGetCertificate     = "GetCertificate"
	OpGetCACertificate   = "GetCertificateAuthorityCertificate"
	OpDescribeCA         = "DescribeCertificateAuthority"
	OpRevokeCertificate  = "RevokeCertificate"
	defaultOtherOpRate   = 20
	defaultLeafTemplate  = "BlankEndEntityCertificate_APIPassthrough/V1"
	defaultIstioTemplate = "SubordinateCACertificate_PathLen0/V1"
)

// ErrOutcomeUnknown marks a failure after which the CA may still issue the
// certificate (the request was accepted, or may have been): the caller must
// keep its pending row for reconciliation instead of marking it failed.
var ErrOutcomeUnknown = errors.New("the CA may still issue this certificate")

// PCAConfig configures the AWS Private CA backend.
type PCAConfig struct {
	Region        string
	Endpoint      string            // override for emulators and tests
	ARNs          map[string]string // CA role → ARN
	MaxRetries    int
	RetryDelay    time.Duration
	MaxRetryDelay time.Duration
	// IssueTimeout bounds IssueCertificate plus polling, within the request's
	// own deadline.
	IssueTimeout      time.Duration
	Templates         map[string]string // profile → template name or ARN
	SigningAlgorithms map[string]string // CA role → algorithm override
	RateLimits        map[string]float64
	// HTTPClient replaces the SDK's default (timeouts set here either way).
	HTTPClient aws.HTTPClient
}

// PCAClient is the Backend for AWS Private CA. It wraps the SDK's client
// with a deliberate retryer, a client-side rate budget per operation, fast
// polling timed from the CA's observed issuance delay, and error mapping.
type PCAClient struct {
	api      *acmpca.Client
	cfg      PCAConfig
	log      *zap.Logger
	metrics  *metrics.Metrics
	limiters map[string]*rate.Limiter
	lookup   func(ctx context.Context, name string) (*x509.Certificate, error)

	mu     sync.Mutex
	delays map[string]*delayEstimate // per CA ARN
}

var (
	_ Backend = (*PCAClient)(nil)
	_ Revoker = (*PCAClient)(nil)
)

// NewPCAClient builds the SDK client from the default credential chain
// (environment, shared files, IRSA web identity, instance role).
func NewPCAClient(ctx context.Context, cfg PCAConfig, log *zap.Logger, m *metrics.Metrics) (*PCAClient, error) {
	for _, role := range Names {
		if cfg.ARNs[role] == "" {
			return nil, fmt.Errorf("aws_pca: no ARN for CA %s", role)
		}
	}
	if cfg.MaxRetries < 0 {
		cfg.MaxRetries = 0
	}
	if cfg.RetryDelay <= 0 {
		cfg.RetryDelay = 100 * time.Millisecond
	}
	if cfg.MaxRetryDelay <= 0 {
		cfg.MaxRetryDelay = 5 * time.Second
	}
	if cfg.IssueTimeout <= 0 {
		cfg.IssueTimeout = 30 * time.Second
	}
	httpClient := cfg.HTTPClient
	if httpClient == nil {
		// The SDK's buildable client keeps its pooled transport; only the
		// timeouts are made explicit so a hung connection cannot pin a request.
		httpClient = awshttp.NewBuildableClient().WithTimeout(20 * time.Second).WithDialerOptions(func(d *net.Dialer) {
			d.Timeout = 5 * time.Second
		}).WithTransportOptions(func(t *http.Transport) {
			t.TLSHandshakeTimeout = 5 * time.Second
			t.ResponseHeaderTimeout = 15 * time.Second
			t.MaxIdleConnsPerHost = 64
		})
	}
	awsCfg, err := awsconfig.LoadDefaultConfig(ctx, awsconfig.WithRegion(cfg.Region), awsconfig.WithHTTPClient(httpClient))
	if err != nil {
		return nil, fmt.Errorf("aws config: %w", err)
	}
	p := &PCAClient{cfg: cfg, log: log, metrics: m, delays: map[string]*delayEstimate{}, limiters: map[string]*rate.Limiter{}}
	for _, op := range []string{OpIssueCertificate, OpGetCertificate, OpGetCACertificate, OpDescribeCA, OpRevokeCertificate} {
		r := cfg.RateLimits[op]
		if r <= 0 {
			switch op {
			case OpIssueCertificate:
				r = 25
			case OpGetCertificate:
				r = 75
			default:
				r = defaultOtherOpRate
			}
		}
		// Burst 1: PCA's quota is a rate, and a burst above it is what
		// draws ThrottlingException.
		p.limiters[op] = rate.NewLimiter(rate.Limit(r), 1)
	}
	p.api = acmpca.NewFromConfig(awsCfg, func(o *acmpca.Options) {
		if cfg.Endpoint != "" {
			o.BaseEndpoint = aws.String(cfg.Endpoint)
		}
		o.Retryer = p.newRetryer()
		o.APIOptions = append(o.APIOptions, p.rateLimitMiddleware)
	})
	return p, nil
}

// newRetryer is the SDK's standard retryer with our policy: at most
// MaxRetries retries, exponential backoff with full jitter from RetryDelay
// capped at MaxRetryDelay, and no retry-token bucket — our own rate budget
// keeps bursts under the quota, and the bucket would turn a burst of
// throttling into hard "retry quota exceeded" failures.
func (p *PCAClient) newRetryer() aws.Retryer {
	return retry.NewStandard(func(o *retry.StandardOptions) {
		o.MaxAttempts = p.cfg.MaxRetries + 1
		o.MaxBackoff = p.cfg.MaxRetryDelay
		o.Backoff = jitterBackoff{base: p.cfg.RetryDelay, max: p.cfg.MaxRetryDelay}
		o.RateLimiter = ratelimit.None
		// DefaultRetryables: throttling codes (incl. LimitExceededException),
		// HTTP 500/502/503/504, timeouts and connection errors; never
		// InvalidArgs, MalformedCSR, InvalidArn, ResourceNotFound,
		// InvalidState, AccessDenied or RequestInProgress.
		o.Retryables = append([]retry.IsErrorRetryable(nil), retry.DefaultRetryables...)
	})
}

type jitterBackoff struct{ base, max time.Duration }

// BackoffDelay is base·2^(attempt-1), capped, with full jitter over the upper half
// so retries from a burst spread out but never fire immediately.
func (b jitterBackoff) BackoffDelay(attempt int, _ error) (time.Duration, error) {
	d := b.base << max(attempt-1, 0)
	if d > b.max || d <= 0 {
		d = b.max
	}
	return d/2 + time.Duration(rand.Int64N(int64(d/2)+1)), nil
}

// rateLimitMiddleware takes a token from the operation's budget before every
// attempt (retries included). A wait that cannot end before the request's
// deadline fails at once as a 429 instead of burning the deadline.
func (p *PCAClient) rateLimitMiddleware(stack *smithymw.Stack) error {
	return stack.Finalize.Insert(smithymw.FinalizeMiddlewareFunc("certgateRateBudget",
		func(ctx context.Context, in smithymw.FinalizeInput, next smithymw.FinalizeHandler) (smithymw.FinalizeOutput, smithymw.Metadata, error) {
			if err := p.wait(ctx, awsmiddleware.GetOperationName(ctx)); err != nil {
				return smithymw.FinalizeOutput{}, smithymw.Metadata{}, err
			}
			out, md, err := next.HandleFinalize(ctx, in)
			if err != nil && unknownOutcome(err) {
				if t, ok := ctx.Value(attemptsKey{}).(*attempts); ok {
					t.unknown.Store(true)
				}
			}
			return out, md, err
		}), "Retry", smithymw.After)
}

// attempts remembers, across the SDK's retries of one call, whether any
// attempt ended with an unknown outcome: if the first IssueCertificate was
// processed but its answer lost, a later throttled retry must not make the
// request look cleanly refused, or the certificate PCA minted goes unrecorded.
type attempts struct{ unknown atomic.Bool }

type attemptsKey struct{}

// errBudget is returned when the client-side budget cannot serve a call in time.
type errBudget struct {
	op    string
	after time.Duration
}

func (e *errBudget) Error() string {
	return fmt.Sprintf("client-side rate budget for %s exhausted; next slot in %s", e.op, e.after)
}

func (p *PCAClient) wait(ctx context.Context, op string) error {
	lim := p.limiters[op]
	if lim == nil {
		lim = p.limiters[OpDescribeCA]
	}
	r := lim.Reserve()
	d := r.Delay()
	if d == 0 {
		return nil
	}
	if dl, ok := ctx.Deadline(); ok && time.Now().Add(d).After(dl) {
		r.Cancel()
		if p.metrics != nil {
			p.metrics.RateLimited.WithLabelValues("pca_" + op).Inc()
		}
		return &errBudget{op: op, after: d}
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		r.Cancel()
		return ctx.Err()
	}
}

// SetLookup makes the client read CA certificates from the CA cache instead
// of asking PCA on every issuance.
func (p *PCAClient) SetLookup(f func(ctx context.Context, name string) (*x509.Certificate, error)) {
	p.lookup = f
}

// Kind implements Backend.
func (p *PCAClient) Kind() string { return "aws-pca" }

// RequiresCSR tells the issuance service that PCA signs only CSRs.
func (p *PCAClient) RequiresCSR() bool { return true }

// ARN returns the configured ARN of a CA role.
func (p *PCAClient) ARN(name string) string { return p.cfg.ARNs[name] }

func (p *PCAClient) caCert(ctx context.Context, name string) (*x509.Certificate, error) {
	if p.lookup != nil {
		return p.lookup(ctx, name)
	}
	info, err := p.Describe(ctx, name)
	if err != nil {
		return nil, err
	}
	return info.Certificate, nil
}

// templateARN resolves a profile's template (name or full ARN), in the CA
// ARN's partition so GovCloud and China work.
func (p *PCAClient) templateARN(profile *Profile, caARN string) string {
	t := p.cfg.Templates[profile.Name]
	if t == "" {
		t = defaultLeafTemplate
		if profile.IsCA {
			t = defaultIstioTemplate
		}
	}
	if strings.HasPrefix(t, "arn:") {
		return t
	}
	partition := "aws"
	if parts := strings.SplitN(caARN, ":", 3); len(parts) == 3 && parts[0] == "arn" {
		partition = parts[1]
	}
	return "arn:" + partition + ":acm-pca:::template/" + t
}

// signingAlgorithm follows the issuing CA's key unless config overrides it.
func (p *PCAClient) signingAlgorithm(name string, caCert *x509.Certificate) (types.SigningAlgorithm, error) {
	if o := p.cfg.SigningAlgorithms[name]; o != "" {
		return types.SigningAlgorithm(o), nil
	}
	switch k := caCert.PublicKey.(type) {
	case *rsa.PublicKey:
		return types.SigningAlgorithmSha256withrsa, nil
	case *ecdsa.PublicKey:
		switch k.Curve.Params().BitSize {
		case 256:
			return types.SigningAlgorithmSha256withecdsa, nil
		case 384:
			return types.SigningAlgorithmSha384withecdsa, nil
		case 521:
			return types.SigningAlgorithmSha512withecdsa, nil
		}
	}
	return "", fmt.Errorf("CA %s: cannot derive a signing algorithm from its %T key; set aws_pca.signing_algorithms.%s", name, caCert.PublicKey, name)
}

// passthrough carries exactly the profile and the validated names, so a
// Blank…_APIPassthrough template yields exactly the profile's certificate.
func passthrough(req *SignRequest) *types.ApiPassthrough {
	p := req.Profile
	ku := &types.KeyUsage{
		DigitalSignature: p.KeyUsage&x509.KeyUsageDigitalSignature != 0,
		KeyEncipherment:  p.KeyUsage&x509.KeyUsageKeyEncipherment != 0,
		KeyAgreement:     p.KeyUsage&x509.KeyUsageKeyAgreement != 0,
		KeyCertSign:      p.KeyUsage&x509.KeyUsageCertSign != 0,
		CRLSign:          p.KeyUsage&x509.KeyUsageCRLSign != 0,
		DataEncipherment: p.KeyUsage&x509.KeyUsageDataEncipherment != 0,
		NonRepudiation:   p.KeyUsage&x509.KeyUsageContentCommitment != 0,
	}
	ext := &types.Extensions{KeyUsage: ku}
	for _, e := range p.ExtKeyUsage {
		switch e {
		case x509.ExtKeyUsageServerAuth:
			ext.ExtendedKeyUsage = append(ext.ExtendedKeyUsage, types.ExtendedKeyUsage{ExtendedKeyUsageType: types.ExtendedKeyUsageTypeServerAuth})
		case x509.ExtKeyUsageClientAuth:
			ext.ExtendedKeyUsage = append(ext.ExtendedKeyUsage, types.ExtendedKeyUsage{ExtendedKeyUsageType: types.ExtendedKeyUsageTypeClientAuth})
		}
	}
	for _, d := range req.DNSNames {
		ext.SubjectAlternativeNames = append(ext.SubjectAlternativeNames, types.GeneralName{DnsName: aws.String(d)})
	}
	for _, ip := range req.IPs {
		ext.SubjectAlternativeNames = append(ext.SubjectAlternativeNames, types.GeneralName{IpAddress: aws.String(ip.String())})
	}
	for _, u := range req.URIs {
		ext.SubjectAlternativeNames = append(ext.SubjectAlternativeNames, types.GeneralName{UniformResourceIdentifier: aws.String(u.String())})
	}
	for _, e := range req.Emails {
		ext.SubjectAlternativeNames = append(ext.SubjectAlternativeNames, types.GeneralName{Rfc822Name: aws.String(e)})
	}
	subj := &types.ASN1Subject{}
	if req.Subject.CommonName != "" {
		subj.CommonName = aws.String(req.Subject.CommonName)
	}
	if len(req.Subject.Organization) > 0 {
		subj.Organization = aws.String(req.Subject.Organization[0])
	}
	if len(req.Subject.OrganizationalUnit) > 0 {
		subj.OrganizationalUnit = aws.String(req.Subject.OrganizationalUnit[0])
	}
	return &types.ApiPassthrough{Extensions: ext, Subject: subj}
}

// Sign implements Backend: IssueCertificate (idempotent), then poll
// GetCertificate until the certificate exists, then parse and verify.
func (p *PCAClient) Sign(ctx context.Context, req *SignRequest) (*SignResult, error) {
	arn := p.cfg.ARNs[req.CA]
	if arn == "" {
		return nil, fmt.Errorf("no ARN configured for CA %s", req.CA)
	}
	if len(req.CSR) == 0 {
		return nil, errors.New("PCA needs a CSR")
	}
	ctx, cancel := context.WithTimeout(ctx, p.cfg.IssueTimeout)
	defer cancel()
	issuer, err := p.caCert(ctx, req.CA)
	if err != nil {
		return nil, err
	}
	root, err := p.caCert(ctx, Root)
	if err != nil {
		return nil, err
	}
	alg, err := p.signingAlgorithm(req.CA, issuer)
	if err != nil {
		return nil, err
	}
	tmpl := p.templateARN(req.Profile, arn)
	// A template whose usages are known to differ from the profile would
	// mint (and bill) a certificate certgate must refuse: stop before asking.
	if err := checkTemplate(req.Profile, tmpl); err != nil {
		return nil, err
	}
	in := &acmpca.IssueCertificateInput{
		CertificateAuthorityArn: aws.String(arn),
		Csr:                     pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: req.CSR}),
		SigningAlgorithm:        alg,
		TemplateArn:             aws.String(tmpl),
		// ABSOLUTE with an explicit NotBefore: PCA would otherwise backdate
		// by an hour and a "7 day" certificate would span 7 days 1 hour.
		Validity:          &types.Validity{Type: types.ValidityPeriodTypeAbsolute, Value: aws.Int64(req.NotAfter.Unix())},
		ValidityNotBefore: &types.Validity{Type: types.ValidityPeriodTypeAbsolute, Value: aws.Int64(req.NotBefore.Unix())},
		IdempotencyToken:  aws.String(req.IdempotencyToken),
	}
	if apiPassthrough(tmpl) {
		in.ApiPassthrough = passthrough(req)
	} else if err := csrSubjectMatches(req); err != nil {
		// Without API passthrough PCA copies the CSR's subject; a subject
		// other than the one certgate decided must not reach the certificate.
		return nil, apierror.Field("csr", "with template %s the CSR's subject becomes the certificate's: %v (or configure an _APIPassthrough template for profile %s)", tmpl, err, req.Profile.Name)
	}
	tries := &attempts{}
	out, err := p.api.IssueCertificate(context.WithValue(ctx, attemptsKey{}, tries), in)
	p.count(OpIssueCertificate, err)
	if err != nil {
		ce := p.classify(err, OpIssueCertificate, arn, tmpl)
		if unknownOutcome(err) || tries.unknown.Load() {
			// A timeout or 5xx may hide an accepted request; the same
			// idempotency token will find it again.
			return nil, fmt.Errorf("%w: %w", ErrOutcomeUnknown, ce)
		}
		return nil, ce
	}
	// Issuance delays are timed from here, when PCA has accepted the
	// request: time spent queueing for the rate budget or in retries before
	// it is no part of how long the CA takes.
	accepted := time.Now()
	certARN := aws.ToString(out.CertificateArn)
	p.log.Info("pca certificate requested", zap.String("ca", req.CA), zap.String("certificate_arn", certARN),
		zap.String("template", tmpl), zap.String("request_id", requestID(out.ResultMetadata)))
	if req.OnSubmitted != nil {
		if err := req.OnSubmitted(ctx, certARN); err != nil {
			p.log.Error("recording certificate ARN", zap.String("certificate_arn", certARN), zap.Error(err))
		}
	}
	leafPEM, chainPEM, err := p.waitIssued(ctx, arn, certARN, accepted)
	if err != nil {
		if isCode(err, "RequestFailedException") {
			// PCA says the issuance failed for good: nothing was issued,
			// so there is nothing left to reconcile.
			return nil, err
		}
		return nil, fmt.Errorf("%w: %w", ErrOutcomeUnknown, err)
	}
	leaf, chain, err := ParsePCAChain(leafPEM, chainPEM, root)
	if err != nil {
		return nil, apierror.New(http.StatusBadGateway, apierror.CodeUpstream, "PCA returned a certificate chain that does not verify: %v", err).WithCause(err)
	}
	if err := checkLeaf(req, leaf, tmpl); err != nil {
		p.log.Error("pca certificate refused", zap.String("certificate_arn", certARN), zap.String("template", tmpl), zap.Error(err))
		return nil, err
	}
	return &SignResult{Leaf: leaf, Chain: chain, Root: root, ARN: certARN}, nil
}

// Fetch returns an already-requested certificate by ARN (reconciliation).
func (p *PCAClient) Fetch(ctx context.Context, caName, certARN string) (*SignResult, error) {
	arn := p.cfg.ARNs[caName]
	root, err := p.caCert(ctx, Root)
	if err != nil {
		return nil, err
	}
	out, err := p.api.GetCertificate(ctx, &acmpca.GetCertificateInput{CertificateAuthorityArn: aws.String(arn), CertificateArn: aws.String(certARN)})
	p.count(OpGetCertificate, err)
	if err != nil {
		return nil, p.classify(err, OpGetCertificate, arn, "")
	}
	leaf, chain, err := ParsePCAChain(aws.ToString(out.Certificate), aws.ToString(out.CertificateChain), root)
	if err != nil {
		return nil, err
	}
	return &SignResult{Leaf: leaf, Chain: chain, Root: root, ARN: certARN}, nil
}

// Polling: the first GetCertificate goes out when this CA's certificates
// have lately been ready (see delayEstimate), then every pollStep, growing by
// half each time up to maxPollStep.
const (
	pollStep     = 25 * time.Millisecond
	maxPollStep  = time.Second
	initialDelay = 50 * time.Millisecond // before anything was observed
)

// waitIssued polls GetCertificate until the certificate exists, under ctx.
// accepted is when IssueCertificate returned. A steady 300 ms issuance costs
// one or two polls and a few milliseconds over the delay, not the SDK
// waiter's one-second minimum.
func (p *PCAClient) waitIssued(ctx context.Context, caARN, certARN string, accepted time.Time) (string, string, error) {
	est := p.estimate(caARN)
	step := pollStep
	polls := 0
	var lastMiss time.Duration = -1
	timer := time.NewTimer(time.Until(accepted.Add(est.first())))
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return "", "", p.classify(ctx.Err(), OpGetCertificate, caARN, "")
		case <-timer.C:
		}
		polls++
		sent := time.Since(accepted)
		out, err := p.api.GetCertificate(ctx, &acmpca.GetCertificateInput{CertificateAuthorityArn: aws.String(caARN), CertificateArn: aws.String(certARN)})
		var inProgress *types.RequestInProgressException
		switch {
		case err == nil:
			p.count(OpGetCertificate, nil)
			est.observe(lastMiss, sent)
			if p.metrics != nil {
				p.metrics.PCAPolls.Observe(float64(polls))
			}
			return aws.ToString(out.Certificate), aws.ToString(out.CertificateChain), nil
		case errors.As(err, &inProgress):
			p.count(OpGetCertificate, nil)
			lastMiss = sent
			timer.Reset(step)
			step = min(step*3/2, maxPollStep)
		default:
			p.count(OpGetCertificate, err)
			return "", "", p.classify(err, OpGetCertificate, caARN, "")
		}
	}
}

func (p *PCAClient) estimate(caARN string) *delayEstimate {
	p.mu.Lock()
	defer p.mu.Unlock()
	e := p.delays[caARN]
	if e == nil {
		e = &delayEstimate{}
		p.delays[caARN] = e
	}
	return e
}

// delayEstimate learns how long a CA takes to issue, counted from the
// moment IssueCertificate returned. Each wait brackets that delay: later
// than the last poll that found the certificate in progress, no later than
// the poll that found it. The first poll goes out at the earliest time by
// which, judging from the last delayWindow brackets, at least readyShare of
// the certificates were ready — a bracket that straddles the time counts
// half. A certificate found at the first poll has no lower bound, so it
// also proposes one pollStep earlier: that keeps probing downwards and
// follows a CA that gets faster. The first poll is readyMargin after that
// time. With a steady delay most waits cost one poll and a miss costs one
// pollStep; after a miss the steps grow.
type delayEstimate struct {
	mu     sync.Mutex
	after  [delayWindow]time.Duration // last miss, -1 when the first poll hit
	before [delayWindow]time.Duration // the hit
	n      int                        // waits recorded (the ring holds the last delayWindow)
}

const (
	delayWindow = 32
	readyShare  = 0.45
	// readyMargin absorbs a few milliseconds of scheduling jitter: without
	// it, concurrent waits whose first polls land just before the delay keep
	// missing together and the estimate settles there.
	readyMargin = pollStep / 5
)

func (d *delayEstimate) first() time.Duration {
	d.mu.Lock()
	defer d.mu.Unlock()
	n := min(d.n, delayWindow)
	if n == 0 {
		return initialDelay
	}
	cands := make([]time.Duration, 0, 2*n)
	for i := range n {
		lo := d.after[i]
		if lo < 0 {
			lo = max(d.before[i]-pollStep, 0)
		}
		cands = append(cands, lo, d.before[i])
	}
	slices.Sort(cands)
	for _, t := range cands {
		ready := 0.0
		for i := range n {
			switch {
			case d.before[i] <= t:
				ready++
			case d.after[i] < t:
				ready += 0.5
			}
		}
		if ready >= readyShare*float64(n) {
			return t + readyMargin
		}
	}
	return cands[len(cands)-1] + readyMargin
}

// observe records one wait: lastMiss is when the last poll that found the
// certificate in progress was sent (-1 if none), hit when the one that
// found it was.
func (d *delayEstimate) observe(lastMiss, hit time.Duration) {
	d.mu.Lock()
	defer d.mu.Unlock()
	i := d.n % delayWindow
	d.after[i], d.before[i] = lastMiss, hit
	d.n++
}

// ParsePCAChain parses GetCertificate's Certificate and CertificateChain,
// orders the chain by signatures (not by position), verifies the leaf to
// root, and returns the chain issuer-first without the root.
func ParsePCAChain(leafPEM, chainPEM string, root *x509.Certificate) (*x509.Certificate, []*x509.Certificate, error) {
	leaves, err := parsePEMCerts(leafPEM)
	if err != nil {
		return nil, nil, fmt.Errorf("certificate: %w", err)
	}
	if len(leaves) != 1 {
		return nil, nil, fmt.Errorf("certificate: want one, got %d", len(leaves))
	}
	pool, err := parsePEMCerts(chainPEM)
	if err != nil {
		return nil, nil, fmt.Errorf("chain: %w", err)
	}
	if root == nil {
		return nil, nil, errors.New("no trusted root to verify against")
	}
	leaf := leaves[0]
	var chain []*x509.Certificate
	cur := leaf
	for i := 0; i <= len(pool); i++ {
		if cur.CheckSignatureFrom(root) == nil && bytesEqual(cur.RawIssuer, root.RawSubject) {
			break
		}
		var next *x509.Certificate
		for _, c := range pool {
			if c.Equal(cur) || c.Equal(root) {
				continue
			}
			if bytesEqual(cur.RawIssuer, c.RawSubject) && cur.CheckSignatureFrom(c) == nil {
				next = c
				break
			}
		}
		if next == nil {
			return nil, nil, fmt.Errorf("no issuer for %q in the returned chain", cur.Subject)
		}
		chain = append(chain, next)
		cur = next
	}
	at := leaf.NotBefore.Add(time.Second)
	if err := Verify(leaf, chain, root, at, nil); err != nil {
		return nil, nil, err
	}
	return leaf, chain, nil
}

func bytesEqual(a, b []byte) bool { return string(a) == string(b) }

func csrSubjectMatches(req *SignRequest) error {
	csr, err := x509.ParseCertificateRequest(req.CSR)
	if err != nil {
		return err
	}
	if got, want := csr.Subject.String(), req.Subject.String(); got != want {
		return fmt.Errorf("the CSR's subject is %q, it must be %q", got, want)
	}
	return nil
}

func parsePEMCerts(s string) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	rest := []byte(s)
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("unexpected PEM block %q", b.Type)
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
		if len(out) > 16 {
			return nil, errors.New("more than 16 certificates")
		}
	}
	return out, nil
}

// Describe implements Backend: GetCertificateAuthorityCertificate for the
// certificate and chain, DescribeCertificateAuthority for status and usage
// mode (status "unknown" when IAM does not permit it).
func (p *PCAClient) Describe(ctx context.Context, name string) (*Info, error) {
	arn := p.cfg.ARNs[name]
	if arn == "" {
		return nil, fmt.Errorf("no ARN configured for CA %s", name)
	}
	out, err := p.api.GetCertificateAuthorityCertificate(ctx, &acmpca.GetCertificateAuthorityCertificateInput{CertificateAuthorityArn: aws.String(arn)})
	p.count(OpGetCACertificate, err)
	if err != nil {
		return nil, p.classify(err, OpGetCACertificate, arn, "")
	}
	certs, err := parsePEMCerts(aws.ToString(out.Certificate))
	if err != nil || len(certs) != 1 {
		return nil, fmt.Errorf("CA %s certificate: %v", name, err)
	}
	chain, err := parsePEMCerts(aws.ToString(out.CertificateChain))
	if err != nil {
		return nil, fmt.Errorf("CA %s chain: %w", name, err)
	}
	info := &Info{Name: name, Backend: "aws-pca", ARN: arn, Status: "unknown", Certificate: certs[0], Chain: chain}
	d, err := p.api.DescribeCertificateAuthority(ctx, &acmpca.DescribeCertificateAuthorityInput{CertificateAuthorityArn: aws.String(arn)})
	p.count(OpDescribeCA, err)
	switch {
	case err == nil && d.CertificateAuthority != nil:
		info.Status = string(d.CertificateAuthority.Status)
		info.UsageMode = string(d.CertificateAuthority.UsageMode)
	case isCode(err, "AccessDeniedException"):
		p.log.Warn("DescribeCertificateAuthority not permitted; CA status unknown", zap.String("ca", name), zap.String("arn", arn))
	default:
		p.log.Warn("DescribeCertificateAuthority failed; CA status unknown", zap.String("ca", name), zap.Error(err))
	}
	return info, nil
}

// pcaReasons maps RFC 5280 reason codes to PCA's names.
var pcaReasons = map[int]types.RevocationReason{
	0:  types.RevocationReasonUnspecified,
	1:  types.RevocationReasonKeyCompromise,
	2:  types.RevocationReasonCertificateAuthorityCompromise,
	3:  types.RevocationReasonAffiliationChanged,
	4:  types.RevocationReasonSuperseded,
	5:  types.RevocationReasonCessationOfOperation,
	9:  types.RevocationReasonPrivilegeWithdrawn,
	10: types.RevocationReasonAACompromise,
}

// Revoke implements Revoker. A certificate PCA already revoked counts as
// revoked, so a retry after a lost answer succeeds.
func (p *PCAClient) Revoke(ctx context.Context, caName string, serial *big.Int, reason int) error {
	arn := p.cfg.ARNs[caName]
	r, ok := pcaReasons[reason]
	if !ok {
		return apierror.Field("reason", "PCA has no revocation reason for code %d", reason)
	}
	_, err := p.api.RevokeCertificate(ctx, &acmpca.RevokeCertificateInput{
		CertificateAuthorityArn: aws.String(arn), CertificateSerial: aws.String(ColonSerial(serial)), RevocationReason: r,
	})
	p.count(OpRevokeCertificate, err)
	var done *types.RequestAlreadyProcessedException
	if errors.As(err, &done) {
		return nil
	}
	if err != nil {
		return p.classify(err, OpRevokeCertificate, arn, "")
	}
	return nil
}

func (p *PCAClient) count(op string, err error) {
	if p.metrics == nil {
		return
	}
	outcome := "ok"
	if err != nil {
		outcome = "error"
		var ae smithy.APIError
		if errors.As(err, &ae) {
			outcome = ae.ErrorCode()
		}
	}
	p.metrics.PCACalls.WithLabelValues(op, outcome).Inc()
}

func requestID(md smithymw.Metadata) string {
	id, _ := awsmiddleware.GetRequestIDMetadata(md)
	return id
}

// apiPassthrough reports whether a template reads ApiPassthrough.
func apiPassthrough(tmplARN string) bool {
	return strings.Contains(tmplARN, "_APIPassthrough") || strings.Contains(tmplARN, "_APICSRPassthrough")
}

// templateUsage is what a PCA template puts into a certificate.
type templateUsage struct {
	ku      x509.KeyUsage
	eku     []x509.ExtKeyUsage
	isCA    bool
	pathLen int
	// fromAPI: key usage and EKU come from ApiPassthrough (a Blank…
	// template read with ApiPassthrough), so they are the profile's.
	fromAPI bool
}

var endEntityTemplates = map[string]templateUsage{
	"EndEntityCertificate":           {ku: x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment, eku: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}},
	"EndEntityClientAuthCertificate": {ku: x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment, eku: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}},
	"EndEntityServerAuthCertificate": {ku: x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment, eku: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}},
	"CodeSigningCertificate":         {ku: x509.KeyUsageDigitalSignature, eku: []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning}},
	"OCSPSigningCertificate":         {ku: x509.KeyUsageDigitalSignature, eku: []x509.ExtKeyUsage{x509.ExtKeyUsageOCSPSigning}},
}

// knownTemplate returns what an AWS-defined V1 template issues, as AWS
// documents it; ok is false for templates whose usages come from the CSR
// and for names it does not know (those are checked on the certificate).
func knownTemplate(tmplARN string) (templateUsage, bool) {
	_, name, found := strings.Cut(tmplARN, ":template/")
	if !found {
		return templateUsage{}, false
	}
	name, ok := strings.CutSuffix(name, "/V1")
	if !ok {
		return templateUsage{}, false
	}
	base, variant := name, ""
	for _, suf := range []string{"_APICSRPassthrough", "_APIPassthrough", "_CSRPassthrough"} {
		if b, ok := strings.CutSuffix(name, suf); ok {
			base, variant = b, suf
			break
		}
	}
	pathLen := func(prefix string) (int, bool) {
		d, ok := strings.CutPrefix(base, prefix)
		if !ok || len(d) != 1 || d[0] < '0' || d[0] > '3' {
			return 0, false
		}
		return int(d[0] - '0'), true
	}
	fromAPI := variant == "_APIPassthrough" || variant == "_APICSRPassthrough"
	switch {
	case endEntityTemplates[base].ku != 0:
		return endEntityTemplates[base], true
	case base == "BlankEndEntityCertificate" && fromAPI:
		return templateUsage{fromAPI: true}, true
	}
	if n, ok := pathLen("SubordinateCACertificate_PathLen"); ok {
		return templateUsage{ku: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign | x509.KeyUsageCRLSign, isCA: true, pathLen: n}, true
	}
	if n, ok := pathLen("BlankSubordinateCACertificate_PathLen"); ok && fromAPI {
		return templateUsage{isCA: true, pathLen: n, fromAPI: true}, true
	}
	return templateUsage{}, false
}

// checkTemplate refuses, before anything is issued, a template known to
// give certificates other usages than the profile's.
func checkTemplate(prof *Profile, tmplARN string) error {
	u, ok := knownTemplate(tmplARN)
	if !ok {
		return nil
	}
	switch {
	case u.isCA != prof.IsCA:
		what := "an end-entity"
		if u.isCA {
			what = "a CA"
		}
		return templateError(prof, tmplARN, fmt.Sprintf("issues %s certificate", what))
	case u.isCA && u.pathLen != prof.MaxPathLen:
		return templateError(prof, tmplARN, fmt.Sprintf("sets path length %d, the profile %d", u.pathLen, prof.MaxPathLen))
	case u.fromAPI:
		return nil
	case !UsagesMatch(prof, u.ku, u.eku, nil):
		return templateError(prof, tmplARN, fmt.Sprintf("sets key usage %s and EKU %s", keyUsageNames(u.ku), ExtKeyUsageNames(u.eku)))
	}
	return nil
}

func templateError(prof *Profile, tmplARN, what string) error {
	suggest := defaultLeafTemplate
	if prof.IsCA {
		suggest = fmt.Sprintf("SubordinateCACertificate_PathLen%d/V1", prof.MaxPathLen)
	}
	return apierror.New(http.StatusBadGateway, apierror.CodeUpstream,
		"the AWS Private CA template %s %s, but profile %s needs exactly key usage %s and EKU %s: set aws_pca.templates.%s to %s or another template with exactly these usages",
		tmplARN, what, prof.Name, keyUsageNames(prof.KeyUsage), ExtKeyUsageNames(prof.ExtKeyUsage), prof.Name, suggest)
}

// UsagesMatch reports whether a certificate's key usage and extended key
// usages are exactly the profile's: the same key usage bits, the same set of
// EKUs in any order, and no EKU outside the known ones.
func UsagesMatch(prof *Profile, ku x509.KeyUsage, eku []x509.ExtKeyUsage, unknownEKU []asn1.ObjectIdentifier) bool {
	if ku != prof.KeyUsage || len(unknownEKU) != 0 {
		return false
	}
	for _, e := range eku {
		if !slices.Contains(prof.ExtKeyUsage, e) {
			return false
		}
	}
	for _, e := range prof.ExtKeyUsage {
		if !slices.Contains(eku, e) {
			return false
		}
	}
	return true
}

// checkLeaf refuses a certificate that is not what was asked for: another
// key, other usages, other names, a CA flag or a span the request did not
// ask for. With a Blank…_APIPassthrough template this never fires; it
// catches templates certgate does not know and CSR-passthrough surprises.
func checkLeaf(req *SignRequest, leaf *x509.Certificate, tmplARN string) error {
	prof := req.Profile
	bad := func(format string, args ...any) error {
		return apierror.New(http.StatusBadGateway, apierror.CodeUpstream,
			"AWS Private CA returned a certificate that does not match the request (%s, template %s): %s",
			prof.Name, tmplARN, fmt.Sprintf(format, args...))
	}
	if req.PublicKey != nil && !PublicKeysEqual(leaf.PublicKey, req.PublicKey) {
		return bad("it certifies another public key")
	}
	if !UsagesMatch(prof, leaf.KeyUsage, leaf.ExtKeyUsage, leaf.UnknownExtKeyUsage) {
		return bad("key usage %s and EKU %s (+%d unknown), the profile wants exactly %s and %s",
			keyUsageNames(leaf.KeyUsage), ExtKeyUsageNames(leaf.ExtKeyUsage), len(leaf.UnknownExtKeyUsage),
			keyUsageNames(prof.KeyUsage), ExtKeyUsageNames(prof.ExtKeyUsage))
	}
	if leaf.IsCA != prof.IsCA {
		return bad("basic constraints CA:%v, the profile wants CA:%v", leaf.IsCA, prof.IsCA)
	}
	if span, want := leaf.NotAfter.Sub(leaf.NotBefore), req.NotAfter.Sub(req.NotBefore); span > want+time.Second || span > prof.MaxValidity {
		return bad("valid for %s, more than the %s requested", span, want)
	}
	if prof.IsCA {
		return nil
	}
	if got, want := sanSet(leaf.DNSNames, leaf.IPAddresses, leaf.URIs, leaf.EmailAddresses), sanSet(req.DNSNames, req.IPs, req.URIs, req.Emails); !slices.Equal(got, want) {
		return bad("subject alternative names %q, requested %q (a template without APIPassthrough takes the names from the CSR)", got, want)
	}
	return nil
}

// sanSet renders names comparably: typed, normalised, sorted, deduplicated.
func sanSet(dns []string, ips []net.IP, uris []*url.URL, emails []string) []string {
	var out []string
	for _, d := range dns {
		out = append(out, "dns:"+strings.TrimSuffix(strings.ToLower(d), "."))
	}
	for _, ip := range ips {
		out = append(out, "ip:"+ip.String())
	}
	for _, u := range uris {
		out = append(out, "uri:"+u.String())
	}
	for _, e := range emails {
		out = append(out, "email:"+strings.ToLower(e))
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// keyUsageNames renders key usage bits for messages.
func keyUsageNames(ku x509.KeyUsage) []string {
	names := []struct {
		bit  x509.KeyUsage
		name string
	}{
		{x509.KeyUsageDigitalSignature, "digitalSignature"}, {x509.KeyUsageContentCommitment, "nonRepudiation"},
		{x509.KeyUsageKeyEncipherment, "keyEncipherment"}, {x509.KeyUsageDataEncipherment, "dataEncipherment"},
		{x509.KeyUsageKeyAgreement, "keyAgreement"}, {x509.KeyUsageCertSign, "keyCertSign"},
		{x509.KeyUsageCRLSign, "cRLSign"}, {x509.KeyUsageEncipherOnly, "encipherOnly"}, {x509.KeyUsageDecipherOnly, "decipherOnly"},
	}
	out := []string{}
	for _, n := range names {
		if ku&n.bit != 0 {
			out = append(out, n.name)
		}
	}
	return out
}
