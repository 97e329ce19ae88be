// Package pcatest is an AWS Private CA test double: an HTTP server on
// 127.0.0.1 that speaks the awsJson1_1 wire protocol, so the real
// aws-sdk-go-v2 acmpca client (with BaseEndpoint set to URL()) talks to it
// exactly as it would to AWS — signing, serialization, error decoding,
// request IDs and retries included.
//
// It holds a real four-CA hierarchy (root, client-ca, server-ca, istio-ca),
// implements IssueCertificate, GetCertificate,
// GetCertificateAuthorityCertificate, DescribeCertificateAuthority and
// RevokeCertificate with PCA's templates, validity rules, idempotency and
// asynchronous issuance, and can inject latency, throttling, scripted
// errors, dropped connections and outages. Every request is logged for
// assertions. All methods are safe for concurrent use.
//
// A client is built as production code builds it, pointed at URL():
//
//	srv, err := pcatest.New()
//	...
//	defer srv.Close()
//	client := acmpca.NewFromConfig(aws.Config{
//		Region:      "us-east-1",
//		Credentials: credentials.NewStaticCredentialsProvider("AKID", "SECRET", ""),
//	}, func(o *acmpca.Options) { o.BaseEndpoint = aws.String(srv.URL()) })
//
// Requests must be SigV4-signed for the server's region and service
// "acm-pca" (the signature itself is not checked); see WithoutAuthCheck.
package pcatest

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Operation names, as in the X-Amz-Target header after "ACMPrivateCA.".
const (
	OpIssueCertificate                   = "IssueCertificate"
	OpGetCertificate                     = "GetCertificate"
	OpGetCertificateAuthorityCertificate = "GetCertificateAuthorityCertificate"
	OpDescribeCertificateAuthority       = "DescribeCertificateAuthority"
	OpRevokeCertificate                  = "RevokeCertificate"

	// OpAny makes a fault or latency apply to every operation. An
	// operation's own setting takes precedence over OpAny's.
	OpAny = "*"
)

// IdempotencyWindow is how long PCA remembers an IdempotencyToken.
const IdempotencyWindow = 5 * time.Minute

const targetPrefix = "ACMPrivateCA."

// Call is one request as the server saw it, whatever its outcome.
type Call struct {
	Op          string
	Time        time.Time
	RequestID   string
	AccessKeyID string // from the SigV4 Authorization header

	CAArn            string
	CertificateArn   string // GetCertificate's input; IssueCertificate's result
	IdempotencyToken string
	TemplateArn      string
	SigningAlgorithm string
	ValidityType     string
	ValidityValue    int64
	// Serial: for RevokeCertificate the CertificateSerial exactly as sent;
	// for IssueCertificate the minted (or replayed) serial in colon hex.
	Serial string
	Reason string

	Status int    // HTTP status sent (0 when the connection was dropped)
	Err    string // error type; empty on success
	ErrMsg string
	// Injected: the outcome came from fault injection (FailNext, InjectNext,
	// SetDown, SetAccessDenied, SetQuota), not from the operation itself.
	Injected bool
	// Replayed: IssueCertificate answered from an idempotency record.
	Replayed bool
	// ReplayMismatch: a replayed request differed from the original in CSR,
	// template, signing algorithm, validity or ApiPassthrough — PCA still
	// returns the first certificate, which is almost always a client bug.
	ReplayMismatch bool
}

// IssuedCert is one certificate minted by IssueCertificate.
type IssuedCert struct {
	Cert             *x509.Certificate
	PEM              string
	Arn              string
	CAArn            string
	Role             string // issuing CA's role
	IdempotencyToken string
	TemplateArn      string
	IssuedAt         time.Time
	ReadyAt          time.Time // GetCertificate answers RequestInProgress before this
}

// Revocation is one accepted RevokeCertificate.
type Revocation struct {
	CAArn          string
	Role           string
	Serial         *big.Int
	RawSerial      string // CertificateSerial exactly as received
	Reason         string
	Time           time.Time
	CertificateArn string
	Cert           *x509.Certificate
}

// Stats counts what the server did.
type Stats struct {
	Requests          int // every HTTP request, including failed ones
	Issued            int // certificates minted
	IdempotentReplays int // IssueCertificate calls answered with an earlier ARN
	Throttled         int // requests refused by SetQuota
	InjectedFaults    int // requests failed or dropped by fault injection
	Revoked           int
}

// Fault is an injected failure for InjectNext.
type Fault struct {
	// ErrorType is the X-Amzn-ErrorType / __type, e.g. "ThrottlingException",
	// "InternalFailure", "ServiceUnavailable", "AccessDeniedException" or a
	// modeled exception such as "LimitExceededException" (which the SDK then
	// returns as its typed error).
	ErrorType string
	// Status defaults to 500 for InternalFailure/InternalServerError/
	// InternalError, 503 for ServiceUnavailable and 400 otherwise.
	Status  int
	Message string
	// Drop closes the connection without any response instead.
	Drop bool
	// AfterProcessing runs the operation for real (a certificate is minted,
	// a revocation recorded) and only then fails or drops: the response is
	// lost, which is what idempotency tokens exist for.
	AfterProcessing bool
}

// DownMode selects how SetDown makes the service unreachable.
type DownMode int

const (
	Up DownMode = iota
	// DownUnavailable answers every request 503 ServiceUnavailable.
	DownUnavailable
	// DownReset closes every connection without a response.
	DownReset
	// DownHang holds every request until the client gives up or the server
	// is closed.
	DownHang
)

// Option configures New.
type Option func(*options)

type options struct {
	region     string
	account    string
	issueDelay time.Duration
	clock      func() time.Time
	fresh      bool
	noAuth     bool
	cas        map[string]CAConfig
}

// WithRegion sets the region of the CA ARNs and of the expected SigV4
// credential scope (default us-east-1).
func WithRegion(region string) Option { return func(o *options) { o.region = region } }

// WithAccountID sets the account in the CA ARNs (default 123456789012).
func WithAccountID(id string) Option { return func(o *options) { o.account = id } }

// WithIssueDelay sets how long after IssueCertificate a certificate becomes
// retrievable (default 0).
func WithIssueDelay(d time.Duration) Option { return func(o *options) { o.issueDelay = d } }

// WithClock replaces time.Now for certificate times, the CAs' validity,
// the idempotency window and issue readiness. Latency, quotas and the call
// log's Time stay on the real clock.
func WithClock(now func() time.Time) Option { return func(o *options) { o.clock = now } }

// WithCA adjusts one CA of the hierarchy (role: RoleRoot, RoleClientCA, …).
func WithCA(role string, cfg CAConfig) Option {
	return func(o *options) {
		if o.cas == nil {
			o.cas = map[string]CAConfig{}
		}
		o.cas[role] = cfg
	}
}

// WithFreshKeys generates new CA keys for this server instead of using the
// package's fixed ones (slower: two RSA key generations).
func WithFreshKeys() Option { return func(o *options) { o.fresh = true } }

// WithoutAuthCheck accepts requests without a SigV4 Authorization header.
// By default a missing header, or one scoped to another region or service,
// fails as AWS would, which catches a misconfigured client.
func WithoutAuthCheck() Option { return func(o *options) { o.noAuth = true } }

// Server is the PCA double. Create it with New and Close it when done.
type Server struct {
	ts        *httptest.Server
	clock     func() time.Time
	region    string
	partition string
	account   string
	instance  string
	authCheck bool
	closing   chan struct{}
	closeOnce sync.Once

	// Immutable after New.
	cas   map[string]*authority
	byARN map[string]*authority

	mu         sync.Mutex
	issueDelay time.Duration
	latency    map[string]time.Duration
	limiters   map[string]*rate.Limiter
	faults     map[string][]Fault
	denied     map[string]bool
	down       DownMode
	asyncFails []string
	rewrite    func(certPEM, chainPEM string) (string, string)
	calls      []Call
	certs      map[string]*certRecord            // by certificate ARN
	bySerial   map[string]map[string]*certRecord // CA ARN → serial hex → record
	idem       map[idemKey]*idemEntry
	issued     []*certRecord
	revoked    []Revocation
	stats      Stats
}

type certRecord struct {
	arn      string
	ca       *authority
	cert     *x509.Certificate
	pem      string
	token    string
	template string
	issuedAt time.Time
	readyAt  time.Time
	asyncErr string
	revoked  bool
	// selfSigned marks the root's own certificate, which cannot be revoked.
	selfSigned bool
}

// New starts a server on 127.0.0.1 with a fresh CA hierarchy.
func New(opts ...Option) (*Server, error) {
	o := options{region: "us-east-1", account: "123456789012"}
	for _, fn := range opts {
		fn(&o)
	}
	for role, cfg := range o.cas {
		if _, ok := roleSpecs[role]; !ok {
			return nil, fmt.Errorf("pcatest: unknown CA role %q", role)
		}
		if cfg.UsageMode != "" && cfg.UsageMode != UsageModeGeneralPurpose && cfg.UsageMode != UsageModeShortLived {
			return nil, fmt.Errorf("pcatest: unknown usage mode %q", cfg.UsageMode)
		}
	}
	s := &Server{
		clock:      o.clock,
		region:     o.region,
		partition:  partitionOf(o.region),
		account:    o.account,
		instance:   newUUID()[:8],
		authCheck:  !o.noAuth,
		closing:    make(chan struct{}),
		issueDelay: o.issueDelay,
		latency:    map[string]time.Duration{},
		limiters:   map[string]*rate.Limiter{},
		faults:     map[string][]Fault{},
		denied:     map[string]bool{},
		certs:      map[string]*certRecord{},
		bySerial:   map[string]map[string]*certRecord{},
		idem:       map[idemKey]*idemEntry{},
	}
	if s.clock == nil {
		s.clock = time.Now
	}
	if err := s.buildHierarchy(o.fresh, o.cas); err != nil {
		return nil, err
	}
	// CA certificates are retrievable and revocable like any certificate
	// their issuer minted; they are not part of Issued().
	for _, role := range Roles {
		a := s.cas[role]
		issuer := a.parent
		if issuer == nil {
			issuer = a
		}
		rec := &certRecord{
			arn:        issuer.arn + "/certificate/" + a.cert.SerialNumber.Text(16),
			ca:         issuer,
			cert:       a.cert,
			pem:        a.pem,
			issuedAt:   a.createdAt,
			readyAt:    a.createdAt,
			selfSigned: a.parent == nil,
		}
		s.storeLocked(rec)
	}
	s.ts = httptest.NewServer(s)
	return s, nil
}

func partitionOf(region string) string {
	switch {
	case strings.HasPrefix(region, "cn-"):
		return "aws-cn"
	case strings.HasPrefix(region, "us-gov-"):
		return "aws-us-gov"
	}
	return "aws"
}

func (s *Server) now() time.Time { return s.clock() }

// URL is the endpoint for acmpca.Options.BaseEndpoint.
func (s *Server) URL() string { return s.ts.URL }

// Close stops the server; requests held by DownHang are released first.
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		close(s.closing)
		s.ts.CloseClientConnections()
		s.ts.Close()
	})
}

// Region is the region of the CA ARNs.
func (s *Server) Region() string { return s.region }

// ARN returns the CA ARN of a role, or "" for an unknown role.
func (s *Server) ARN(role string) string {
	if a := s.cas[role]; a != nil {
		return a.arn
	}
	return ""
}

// CACert returns the CA certificate of a role, or nil.
func (s *Server) CACert(role string) *x509.Certificate {
	if a := s.cas[role]; a != nil {
		return a.cert
	}
	return nil
}

// CACertPEM returns the CA certificate of a role as GetCertificateAuthorityCertificate sends it.
func (s *Server) CACertPEM(role string) string {
	if a := s.cas[role]; a != nil {
		return a.pem
	}
	return ""
}

// Root returns the root CA certificate.
func (s *Server) Root() *x509.Certificate { return s.cas[RoleRoot].cert }

// RootPool returns a pool holding only the root, for x509.VerifyOptions.
func (s *Server) RootPool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(s.Root())
	return p
}

// Role returns the role of a CA ARN, or "".
func (s *Server) Role(arn string) string {
	if a := s.byARN[arn]; a != nil {
		return a.role
	}
	return ""
}

func (s *Server) mustCA(role string) *authority {
	a := s.cas[role]
	if a == nil {
		panic(fmt.Sprintf("pcatest: unknown CA role %q", role))
	}
	return a
}

// SetStatus sets a CA's status (ACTIVE, DISABLED, EXPIRED, DELETED, …).
// A CA whose certificate has expired reports EXPIRED while set ACTIVE.
func (s *Server) SetStatus(role, status string) {
	a := s.mustCA(role)
	s.mu.Lock()
	defer s.mu.Unlock()
	a.status = status
	a.lastStateChange = s.now()
}

// SetUsageMode sets a CA's usage mode (GENERAL_PURPOSE or SHORT_LIVED_CERTIFICATE).
func (s *Server) SetUsageMode(role, mode string) {
	a := s.mustCA(role)
	s.mu.Lock()
	defer s.mu.Unlock()
	a.usageMode = mode
}

// SetCRL sets a CA's CRL configuration, as DescribeCertificateAuthority
// reports it and as later certificates' distribution points use it.
func (s *Server) SetCRL(role string, cfg CRLConfig) {
	a := s.mustCA(role)
	s.mu.Lock()
	defer s.mu.Unlock()
	a.crl = cfg
}

// SetIssueDelay sets the delay for certificates issued from now on.
func (s *Server) SetIssueDelay(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.issueDelay = d
}

// SetLatency delays every request of op (or OpAny) by d before it is handled.
func (s *Server) SetLatency(op string, d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if d <= 0 {
		delete(s.latency, op)
		return
	}
	s.latency[op] = d
}

// SetQuota limits op (or OpAny, one bucket shared by all operations) to
// perSecond requests with the given burst (≤0: ceil(perSecond)); requests
// over it fail with 400 ThrottlingException. perSecond ≤ 0 removes the quota.
func (s *Server) SetQuota(op string, perSecond float64, burst int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if perSecond <= 0 {
		delete(s.limiters, op)
		return
	}
	if burst <= 0 {
		burst = int(perSecond)
		if float64(burst) < perSecond {
			burst++
		}
	}
	s.limiters[op] = rate.NewLimiter(rate.Limit(perSecond), burst)
}

// FailNext makes the next n requests of op (or OpAny) fail with errorType
// and HTTP status (0: the default for that type, see Fault.Status), before
// the operation runs. Scripted faults are consumed in the order queued.
func (s *Server) FailNext(op string, n int, errorType string, status int) {
	s.InjectNext(op, n, Fault{ErrorType: errorType, Status: status})
}

// DropNext closes the connection of the next n requests of op without a response.
func (s *Server) DropNext(op string, n int) {
	s.InjectNext(op, n, Fault{Drop: true})
}

// InjectNext queues n copies of f for op (or OpAny).
func (s *Server) InjectNext(op string, n int, f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for range n {
		s.faults[op] = append(s.faults[op], f)
	}
}

// ClearFaults drops every queued fault.
func (s *Server) ClearFaults() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = map[string][]Fault{}
}

// SetAccessDenied makes op (or OpAny) answer 400 AccessDeniedException, the
// way AWS does when the caller's IAM policy lacks the action.
func (s *Server) SetAccessDenied(op string, denied bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if denied {
		s.denied[op] = true
	} else {
		delete(s.denied, op)
	}
}

// SetDown makes every request fail the chosen way; Up restores service.
func (s *Server) SetDown(mode DownMode) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.down = mode
}

// FailIssuanceNext makes the next n accepted IssueCertificate calls fail
// asynchronously: they return an ARN, and GetCertificate then answers
// RequestFailedException with message. Nothing is minted for them.
func (s *Server) FailIssuanceNext(n int, message string) {
	if message == "" {
		message = "The certificate could not be issued"
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for range n {
		s.asyncFails = append(s.asyncFails, message)
	}
}

// SetCertificateRewrite lets a test tamper with GetCertificate responses
// (reorder, truncate or replace the chain); nil restores them.
func (s *Server) SetCertificateRewrite(fn func(certPEM, chainPEM string) (string, string)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rewrite = fn
}

// Calls returns the logged requests of op in arrival order ("" or OpAny: all).
func (s *Server) Calls(op string) []Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Call
	for _, c := range s.calls {
		if op == "" || op == OpAny || c.Op == op {
			out = append(out, c)
		}
	}
	return out
}

// Count is len(Calls(op)).
func (s *Server) Count(op string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if op == "" || op == OpAny {
		return len(s.calls)
	}
	n := 0
	for _, c := range s.calls {
		if c.Op == op {
			n++
		}
	}
	return n
}

// ResetCalls empties the call log (stats and certificates are kept).
func (s *Server) ResetCalls() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = nil
}

// Stats returns the counters.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats
}

// Issued returns every certificate minted by IssueCertificate, once each,
// in minting order.
func (s *Server) Issued() []*x509.Certificate {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*x509.Certificate, len(s.issued))
	for i, r := range s.issued {
		out[i] = r.cert
	}
	return out
}

// IssuedCerts is Issued with ARNs, tokens and times.
func (s *Server) IssuedCerts() []IssuedCert {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]IssuedCert, len(s.issued))
	for i, r := range s.issued {
		out[i] = r.export()
	}
	return out
}

// Certificate looks up a minted certificate by its ARN.
func (s *Server) Certificate(arn string) (IssuedCert, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.certs[arn]
	if r == nil || r.cert == nil {
		return IssuedCert{}, false
	}
	return r.export(), true
}

func (r *certRecord) export() IssuedCert {
	return IssuedCert{
		Cert: r.cert, PEM: r.pem, Arn: r.arn, CAArn: r.ca.arn, Role: r.ca.role,
		IdempotencyToken: r.token, TemplateArn: r.template,
		IssuedAt: r.issuedAt, ReadyAt: r.readyAt,
	}
}

// Revoked returns accepted revocations in order.
func (s *Server) Revoked() []Revocation {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Revocation(nil), s.revoked...)
}

// IsRevoked reports whether the certificate with this serial was revoked.
func (s *Server) IsRevoked(serial *big.Int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range s.revoked {
		if r.Serial.Cmp(serial) == 0 {
			return true
		}
	}
	return false
}

func (s *Server) storeLocked(r *certRecord) {
	s.certs[r.arn] = r
	m := s.bySerial[r.ca.arn]
	if m == nil {
		m = map[string]*certRecord{}
		s.bySerial[r.ca.arn] = m
	}
	if r.cert != nil {
		m[r.cert.SerialNumber.Text(16)] = r
	}
}

// apiError is an AWS error response.
type apiError struct {
	typ    string
	msg    string
	status int
}

func (e *apiError) Error() string { return e.typ + ": " + e.msg }

func errf(typ, format string, args ...any) *apiError {
	return &apiError{typ: typ, msg: fmt.Sprintf(format, args...), status: defaultStatus(typ)}
}

func defaultStatus(typ string) int {
	switch typ {
	case "InternalFailure", "InternalServerError", "InternalError":
		return http.StatusInternalServerError
	case "ServiceUnavailable", "ServiceUnavailableException":
		return http.StatusServiceUnavailable
	case "InvalidSignatureException":
		return http.StatusForbidden
	}
	return http.StatusBadRequest
}

// commonInput holds every identifying field any supported operation has,
// decoded leniently so that even rejected requests are logged usefully.
type commonInput struct {
	CertificateAuthorityArn string
	CertificateArn          string
	IdempotencyToken        string
	TemplateArn             string
	SigningAlgorithm        string
	CertificateSerial       string
	RevocationReason        string
	Validity                *struct {
		Type  string
		Value *int64
	}
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	reqID := newUUID()
	// Set directly to send AWS's spelling; clients canonicalize anyway.
	w.Header()["x-amzn-RequestId"] = []string{reqID}

	call := Call{Time: time.Now(), RequestID: reqID, AccessKeyID: accessKeyID(r.Header.Get("Authorization"))}
	target := r.Header.Get("X-Amz-Target")
	call.Op = strings.TrimPrefix(target, targetPrefix)
	body, readErr := io.ReadAll(io.LimitReader(r.Body, 1<<20))

	var in commonInput
	_ = json.Unmarshal(body, &in)
	call.CAArn = in.CertificateAuthorityArn
	call.CertificateArn = in.CertificateArn
	call.IdempotencyToken = in.IdempotencyToken
	call.TemplateArn = in.TemplateArn
	call.SigningAlgorithm = in.SigningAlgorithm
	call.Serial = in.CertificateSerial
	call.Reason = in.RevocationReason
	if in.Validity != nil {
		call.ValidityType = in.Validity.Type
		if in.Validity.Value != nil {
			call.ValidityValue = *in.Validity.Value
		}
	}

	s.mu.Lock()
	lat, ok := s.latency[call.Op]
	if !ok {
		lat = s.latency[OpAny]
	}
	s.mu.Unlock()
	if lat > 0 && !s.sleep(r.Context(), lat) {
		call.Err, call.ErrMsg = "ClientGone", "client gave up during injected latency"
		s.record(&call)
		return
	}

	res, fault := s.handle(r, &call, target, body, readErr)
	switch {
	case fault != nil && fault.Drop:
		s.drop(w)
	case res.err != nil:
		call.Status, call.Err, call.ErrMsg = res.err.status, res.err.typ, res.err.msg
		writeError(w, res.err)
	default:
		call.Status = http.StatusOK
		w.Header().Set("Content-Type", "application/x-amz-json-1.1")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(res.body)
	}
	s.record(&call)
}

type result struct {
	body []byte
	err  *apiError
}

func (s *Server) handle(r *http.Request, call *Call, target string, body []byte, readErr error) (result, *Fault) {
	s.mu.Lock()
	down := s.down
	s.mu.Unlock()
	switch down {
	case DownUnavailable:
		call.Injected = true
		s.countFault()
		return result{err: errf("ServiceUnavailable", "Service unavailable")}, nil
	case DownReset:
		call.Injected = true
		s.countFault()
		return result{}, &Fault{Drop: true}
	case DownHang:
		call.Injected = true
		s.countFault()
		select {
		case <-r.Context().Done():
		case <-s.closing:
		}
		return result{}, &Fault{Drop: true}
	}

	if r.Method != http.MethodPost || !strings.HasPrefix(target, targetPrefix) {
		return result{err: errf("UnknownOperationException", "Unknown operation %q", target)}, nil
	}
	if readErr != nil {
		return result{err: errf("SerializationException", "reading body: %v", readErr)}, nil
	}
	if s.authCheck {
		if e := s.checkAuth(r.Header.Get("Authorization")); e != nil {
			return result{err: e}, nil
		}
	}

	var handler func(context.Context, *Call, []byte) ([]byte, *apiError)
	switch call.Op {
	case OpIssueCertificate:
		handler = s.issueCertificate
	case OpGetCertificate:
		handler = s.getCertificate
	case OpGetCertificateAuthorityCertificate:
		handler = s.getCACertificate
	case OpDescribeCertificateAuthority:
		handler = s.describeCA
	case OpRevokeCertificate:
		handler = s.revokeCertificate
	default:
		return result{err: errf("UnknownOperationException", "Unknown operation %s", target)}, nil
	}

	fault := s.nextFault(call.Op)
	if fault != nil && !fault.AfterProcessing {
		call.Injected = true
		if fault.Drop {
			return result{}, fault
		}
		return result{err: faultError(fault)}, nil
	}

	if e := s.throttle(call.Op); e != nil {
		call.Injected = true
		return result{err: e}, nil
	}
	if s.isDenied(call.Op) {
		call.Injected = true
		s.countFault()
		resource := call.CAArn
		if resource == "" {
			resource = "*"
		}
		return result{err: errf("AccessDeniedException",
			"User: arn:aws:iam::%s:user/pcatest is not authorized to perform: acm-pca:%s on resource: %s because no identity-based policy allows the acm-pca:%s action",
			s.account, call.Op, resource, call.Op)}, nil
	}

	if !json.Valid(body) {
		return result{err: errf("SerializationException", "request body is not valid JSON")}, nil
	}
	out, apiErr := handler(r.Context(), call, body)
	if fault != nil {
		call.Injected = true
		if fault.Drop {
			return result{}, fault
		}
		return result{err: faultError(fault)}, nil
	}
	return result{body: out, err: apiErr}, nil
}

func faultError(f *Fault) *apiError {
	typ := f.ErrorType
	if typ == "" {
		typ = "InternalFailure"
	}
	msg := f.Message
	if msg == "" {
		msg = "pcatest: injected " + typ
	}
	status := f.Status
	if status == 0 {
		status = defaultStatus(typ)
	}
	return &apiError{typ: typ, msg: msg, status: status}
}

func (s *Server) nextFault(op string) *Fault {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, key := range []string{op, OpAny} {
		if q := s.faults[key]; len(q) > 0 {
			f := q[0]
			s.faults[key] = q[1:]
			s.stats.InjectedFaults++
			return &f
		}
	}
	return nil
}

func (s *Server) throttle(op string) *apiError {
	s.mu.Lock()
	lims := []*rate.Limiter{s.limiters[op], s.limiters[OpAny]}
	s.mu.Unlock()
	for _, l := range lims {
		if l != nil && !l.Allow() {
			s.mu.Lock()
			s.stats.Throttled++
			s.mu.Unlock()
			return errf("ThrottlingException", "Rate exceeded")
		}
	}
	return nil
}

func (s *Server) isDenied(op string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.denied[op] || s.denied[OpAny]
}

func (s *Server) countFault() {
	s.mu.Lock()
	s.stats.InjectedFaults++
	s.mu.Unlock()
}

func (s *Server) record(c *Call) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stats.Requests++
	s.calls = append(s.calls, *c)
}

func (s *Server) sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	case <-s.closing:
		return false
	}
}

// drop closes the connection without a response, so the client sees EOF or
// a reset — a transient connection error for the SDK's retryer.
func (s *Server) drop(w http.ResponseWriter) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		panic(http.ErrAbortHandler)
	}
	conn, _, err := hj.Hijack()
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	_ = conn.Close()
}

func writeError(w http.ResponseWriter, e *apiError) {
	w.Header().Set("X-Amzn-ErrorType", e.typ)
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	w.WriteHeader(e.status)
	b, _ := json.Marshal(map[string]string{"__type": e.typ, "message": e.msg})
	_, _ = w.Write(b)
}

// checkAuth verifies the SigV4 header's shape and scope, not the signature:
// the secret is not known here, but region and service mistakes are the
// ones a client makes.
func (s *Server) checkAuth(h string) *apiError {
	if h == "" {
		return errf("MissingAuthenticationTokenException", "Missing Authentication Token")
	}
	if !strings.HasPrefix(h, "AWS4-HMAC-SHA256 ") {
		return errf("IncompleteSignatureException", "Authorization header requires the AWS4-HMAC-SHA256 algorithm")
	}
	cred := authField(h, "Credential")
	parts := strings.Split(cred, "/")
	if len(parts) != 5 || parts[4] != "aws4_request" || authField(h, "Signature") == "" {
		return errf("IncompleteSignatureException", "Authorization header requires 'Credential', 'SignedHeaders' and 'Signature' parameters")
	}
	if parts[2] != s.region {
		return errf("InvalidSignatureException", "Credential should be scoped to a valid region, not '%s'.", parts[2])
	}
	if parts[3] != "acm-pca" {
		return errf("InvalidSignatureException", "Credential should be scoped to correct service: 'acm-pca'.")
	}
	return nil
}

func authField(h, name string) string {
	for _, f := range strings.FieldsFunc(strings.TrimPrefix(h, "AWS4-HMAC-SHA256 "), func(r rune) bool { return r == ',' || r == ' ' }) {
		if v, ok := strings.CutPrefix(f, name+"="); ok {
			return v
		}
	}
	return ""
}

func accessKeyID(h string) string {
	cred := authField(h, "Credential")
	id, _, _ := strings.Cut(cred, "/")
	return id
}

// lookupCA validates the ARN's format before its existence, as PCA does.
func (s *Server) lookupCA(arn string) (*authority, *apiError) {
	if arn == "" {
		return nil, errf("ValidationException", "1 validation error detected: Value null at 'certificateAuthorityArn' failed to satisfy constraint: Member must not be null")
	}
	if !caARNPattern.MatchString(arn) {
		return nil, errf("InvalidArnException", "The ARN %s is not valid.", arn)
	}
	a := s.byARN[arn]
	if a == nil {
		return nil, errf("ResourceNotFoundException", "Could not find certificate authority %s.", arn)
	}
	return a, nil
}

// effectiveStatus derives EXPIRED from the CA certificate, as PCA does.
func (s *Server) effectiveStatus(a *authority) string {
	s.mu.Lock()
	st := a.status
	s.mu.Unlock()
	if st == StatusActive && s.now().After(a.cert.NotAfter) {
		return StatusExpired
	}
	return st
}

func marshal(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

func decode(body []byte, v any) *apiError {
	d := json.NewDecoder(bytes.NewReader(body))
	if err := d.Decode(v); err != nil {
		return errf("SerializationException", "%v", err)
	}
	return nil
}
