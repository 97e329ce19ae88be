// Package issuance is the one path from an issue request to a stored,
// verified certificate: validate, authorise, record a pending row, sign,
// verify, record the result and its event. Every step is a small function so
// the order (write before sign, audit after) is visible in Issue.
package issuance

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/certgate/certgate/internal/apierror"
	"github.com/certgate/certgate/internal/ca"
	"github.com/certgate/certgate/internal/metrics"
	"github.com/certgate/certgate/internal/policy"
	"github.com/certgate/certgate/internal/store"
	"github.com/certgate/certgate/internal/validation"
)

// Key types for server-side generation.
const (
	KeyECDSAP256 = "ecdsa-p256"
	KeyRSA2048   = "rsa-2048"
)

// Request is the body of POST /v1/certificates.
type Request struct {
	Profile      string   `json:"profile"`
	CommonName   string   `json:"common_name,omitempty"`
	SANs         []string `json:"sans,omitempty"`
	CSR          string   `json:"csr,omitempty"`
	KeyType      string   `json:"key_type,omitempty"`
	ValidityDays *int     `json:"validity_days,omitempty"`
	TTL          string   `json:"ttl,omitempty"`
}

// Caller is who asks, as the HTTP edge established it.
type Caller struct {
	Principal      string
	Policy         *policy.Policy
	RequestID      string
	SourceAddr     string
	IdempotencyKey string
}

// Result is the body of a 201.
type Result struct {
	Serial         string    `json:"serial"`
	Profile        string    `json:"profile"`
	CA             string    `json:"ca"`
	Cluster        string    `json:"cluster,omitempty"`
	CommonName     string    `json:"common_name"`
	SANs           []string  `json:"sans"`
	NotBefore      time.Time `json:"not_before"`
	NotAfter       time.Time `json:"not_after"`
	Certificate    string    `json:"certificate"`
	Chain          string    `json:"chain"`
	Root           string    `json:"root"`
	Bundle         string    `json:"bundle"`
	PrivateKey     string    `json:"private_key,omitempty"`
	CertificateARN string    `json:"certificate_arn,omitempty"`
	// Replayed is set when an Idempotency-Key returned an earlier result.
	Replayed bool `json:"-"`
}

// Store is what the service needs of the database.
type Store interface {
	CreatePending(ctx context.Context, c *store.Certificate) error
	SetARN(ctx context.Context, id uint64, arn string) error
	Finish(ctx context.Context, c *store.Certificate, ev *store.Event) error
	InsertFinal(ctx context.Context, c *store.Certificate, ev *store.Event) error
	ExpectWrite(ctx context.Context) (context.Context, func())
	GetByIdempotencyKey(ctx context.Context, requester, key string) (*store.Certificate, error)
	AddEvent(ctx context.Context, ev *store.Event) error
}

// CAGate lets the CA cache refuse issuance on a CA that is expired, disabled
// or whose chain does not verify, and clamp validity to the CA's NotAfter.
type CAGate interface {
	Usable(ctx context.Context, caName string) (*x509.Certificate, error)
}

// Service issues certificates. It holds no lock across signing.
type Service struct {
	Backend  ca.Backend
	Store    Store
	Profiles ca.Profiles
	Log      *zap.Logger
	Metrics  *metrics.Metrics
	Now      func() time.Time
	Gate     CAGate // optional
	// pemCache holds PEM renderings of CA certificates by raw DER, so the hot
	// path does not re-encode the same chain for every response.
	pemCache pemCache
}

// Issue runs the whole issuance for one request.
func (s *Service) Issue(ctx context.Context, c Caller, req Request) (*Result, error) {
	start := s.Now()
	res, err := s.issue(ctx, c, req)
	if err != nil {
		ae := apierror.As(err)
		s.Metrics.IssueFailures.WithLabelValues(req.Profile, ae.Code).Inc()
		return nil, err
	}
	s.Metrics.IssueDuration.WithLabelValues(res.Profile, s.Backend.Kind()).Observe(s.Now().Sub(start).Seconds())
	if !res.Replayed {
		s.Metrics.Issued.WithLabelValues(res.Profile, res.CA).Inc()
	}
	return res, nil
}

// prepared is a request after validation: everything needed to sign.
type prepared struct {
	profile    *ca.Profile
	names      *validation.Names
	pub        crypto.PublicKey
	csrDER     []byte
	priv       crypto.Signer // only when the server generated the key
	span       time.Duration
	reqHash    string
	cluster    string
	commonName string
}

func (s *Service) issue(ctx context.Context, c Caller, req Request) (*Result, error) {
	if s.Backend.Kind() == "local" && c.IdempotencyKey == "" && req.CSR != "" {
		// This request will write its row within a millisecond or so (the
		// local CA signs in process): a write batch committing meanwhile
		// may wait for it and share one commit. A request without a CSR
		// announces only once its key exists (signAndRecord): generating
		// an RSA key takes far longer than a batch should wait.
		var done func()
		ctx, done = s.Store.ExpectWrite(ctx)
		defer done()
	}
	p, err := s.validate(req)
	if err != nil {
		s.refused(ctx, c, req.Profile, "", err)
		return nil, err
	}
	p.reqHash = requestHash(c.Principal, req)
	// A request that names no validity gets the longest span its principal
	// may have, not a refusal for the profile's default.
	if req.ValidityDays == nil && req.TTL == "" && c.Policy != nil {
		if m := c.Policy.MaxValidity(); m > 0 && m < p.span {
			p.span = m
		}
	}
	if err := authorize(c, p); err != nil {
		s.refused(ctx, c, p.profile.Name, p.profile.CA, err)
		return nil, err
	}
	return s.signAndRecord(ctx, c, p)
}

// validate turns a request into a prepared one or a 400.
func (s *Service) validate(req Request) (*prepared, error) {
	prof := s.Profiles.Lookup(req.Profile)
	if req.Profile == "" {
		return nil, apierror.Field("profile", "is required (one of %s)", strings.Join(s.Profiles.LeafProfiles(), ", "))
	}
	if prof == nil || prof.IsCA {
		return nil, apierror.Field("profile", "unknown profile %q (one of %s)", req.Profile, strings.Join(s.Profiles.LeafProfiles(), ", "))
	}
	span, err := validation.Span(req.ValidityDays, req.TTL, prof.DefaultValidity, prof.MaxValidity)
	if err != nil {
		return nil, err
	}
	p := &prepared{profile: prof, span: span}
	if err := s.keyAndNames(p, req.CSR, req.KeyType, req.CommonName, req.SANs); err != nil {
		return nil, err
	}
	return p, nil
}

// keyAndNames settles the public key and the names, from the CSR or from a
// key the server generates.
func (s *Service) keyAndNames(p *prepared, csrPEM, keyType, cn string, sans []string) error {
	listed := cn != "" || len(sans) > 0
	var reqNames *validation.Names
	if listed {
		n, err := validation.ParseNames(cn, sans, p.profile.AllowWildcard)
		if err != nil {
			return err
		}
		reqNames = n
	}
	if csrPEM != "" {
		if keyType != "" {
			return apierror.Field("key_type", "only without csr: the CSR's key is used")
		}
		csr, err := validation.ParseCSR(csrPEM)
		if err != nil {
			return err
		}
		if err := validation.CheckKey("csr", csr.PublicKey); err != nil {
			return err
		}
		csrNames, err := validation.NamesFromCSR(csr, p.profile.AllowWildcard)
		if err != nil {
			return err
		}
		if reqNames != nil {
			if err := validation.SameSet(reqNames, csrNames); err != nil {
				return err
			}
			if reqNames.CommonName == "" {
				reqNames.CommonName = csrNames.CommonName
			}
			p.names = reqNames
		} else {
			p.names = csrNames
		}
		p.pub, p.csrDER = csr.PublicKey, csr.Raw
		return nil
	}
	if reqNames == nil {
		return apierror.Validation("a certificate needs a name: give common_name or sans (or a csr that names them)",
			apierror.Detail{Field: "sans", Reason: "no names"})
	}
	p.names = reqNames
	switch keyType {
	case "", KeyECDSAP256:
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return err
		}
		p.priv = k
	case KeyRSA2048:
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			return err
		}
		p.priv = k
	default:
		return apierror.Field("key_type", "unsupported key type %q (ecdsa-p256 or rsa-2048)", keyType)
	}
	p.pub = p.priv.Public()
	return nil
}

func authorize(c Caller, p *prepared) error {
	if c.Policy == nil {
		return apierror.Forbidden("no policy for principal %q", c.Principal)
	}
	if !c.Policy.Can(policy.OpIssue) {
		return apierror.Forbidden("principal %q may not issue certificates", c.Principal).WithDetail("operation", "issue not allowed")
	}
	n := p.names
	return c.Policy.CheckIssue(policy.Request{
		Profile: p.profile.Name, CommonName: n.CommonName, DNS: n.DNS, IPs: n.IPs, URIs: n.URIs, Emails: n.Emails, Validity: p.span,
	})
}

// requestHash identifies a logical request for idempotency: the same
// principal sending the same body hashes the same.
func requestHash(principal string, req any) string {
	b, _ := json.Marshal(req)
	h := sha256.New()
	h.Write([]byte(principal))
	h.Write([]byte{0})
	h.Write(b)
	return hex.EncodeToString(h.Sum(nil))
}

// idempotencyToken is what PCA sees: stable for one logical request (the
// pending row, or the client's Idempotency-Key), different for two requests
// that merely look alike, and at most 36 characters.
func idempotencyToken(principal string, rowID uint64, idemKey, reqHash string) string {
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%d\x00%s\x00%s", principal, rowID, idemKey, reqHash)
	return hex.EncodeToString(h.Sum(nil))[:32]
}

func (s *Service) signAndRecord(ctx context.Context, c Caller, p *prepared) (*Result, error) {
	if c.IdempotencyKey != "" {
		if res, err := s.replay(ctx, c, p); res != nil || err != nil {
			return res, err
		}
	}
	now := s.Now().UTC().Truncate(time.Second)
	notBefore := now.Add(-ca.Backdate)
	notAfter := notBefore.Add(p.span)
	if err := s.fitsIssuer(ctx, p.profile.CA, notAfter); err != nil {
		return nil, err
	}
	serial, err := ca.NewSerial()
	if err != nil {
		return nil, err
	}
	serialHex := ca.FormatSerial(serial)
	row := &store.Certificate{
		CA: p.profile.CA, Profile: p.profile.Name, CommonName: p.names.CommonName, SANs: p.names.Strings(),
		Cluster: p.cluster, KeyAlgorithm: validation.KeyAlgorithm(p.pub), NotBefore: notBefore, NotAfter: notAfter,
		Requester: c.Principal, RequestHash: p.reqHash, RequestID: c.RequestID,
	}
	if s.Backend.Kind() == "local" {
		row.Serial = &serialHex
	}
	if c.IdempotencyKey != "" {
		k, r := c.IdempotencyKey, c.Principal
		row.IdempotencyKey, row.IdemRequester = &k, &r
	}
	var csrDER []byte
	if needsCSR(s.Backend) {
		if csrDER = p.csrDER; csrDER == nil {
			// The names go into the CSR too: a PCA template without
			// ApiPassthrough takes the certificate's names from it.
			tmpl := &x509.CertificateRequest{Subject: p.subject()}
			if p.names != nil && !p.profile.IsCA {
				tmpl.DNSNames, tmpl.IPAddresses, tmpl.URIs, tmpl.EmailAddresses = p.names.DNS, p.names.IPs, p.names.URIs, p.names.Emails
			}
			der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, p.priv)
			if err != nil {
				return nil, err
			}
			csrDER = der
		}
		row.CSR = csrDER
	}
	// Write before sign, for every CA outside this process: the pending row
	// is committed before the CA is asked, so nothing it issues can go
	// unrecorded. The local CA signs in this process: a certificate it
	// signs exists nowhere else until it is recorded, so a crash in between
	// loses nothing anyone holds, and one write (the final row and its
	// event, together) replaces two. An Idempotency-Key still takes the
	// pending path: its row is what makes concurrent duplicates wait.
	oneWrite := s.Backend.Kind() == "local" && c.IdempotencyKey == ""
	record := func(ctx context.Context, row *store.Certificate, ev *store.Event) error {
		if oneWrite {
			return s.Store.InsertFinal(ctx, row, ev)
		}
		return s.Store.Finish(ctx, row, ev)
	}
	if oneWrite {
		// nothing yet: the row is written once, after signing
	} else if err := s.Store.CreatePending(ctx, row); err != nil {
		if errors.Is(err, store.ErrConflict) && c.IdempotencyKey != "" {
			// Another request with the same key won the race.
			return s.replay(ctx, c, p)
		}
		return nil, dbError(err)
	}
	row.IdempotencyToken = idempotencyToken(c.Principal, row.ID, c.IdempotencyKey, p.reqHash)
	sreq := &ca.SignRequest{
		Profile: p.profile, CA: p.profile.CA, PublicKey: p.pub, CSR: csrDER,
		Subject:  p.subject(),
		DNSNames: p.names.DNS, IPs: p.names.IPs, URIs: p.names.URIs, Emails: p.names.Emails,
		NotBefore: notBefore, NotAfter: notAfter, Serial: serial, IdempotencyToken: row.IdempotencyToken,
		OnSubmitted: func(ctx context.Context, arn string) error { return s.Store.SetARN(ctx, row.ID, arn) },
	}
	// Signing follows the request's context (a client that hangs up stops
	// the PCA polling at once); recording does not, so what the CA signed is
	// always written down.
	signCtx := context.WithoutCancel(ctx)
	if oneWrite && p.priv != nil {
		var done func()
		signCtx, done = s.Store.ExpectWrite(signCtx)
		defer done()
	}
	out, signErr := s.Backend.Sign(ctx, sreq)
	if signErr == nil {
		signErr = checkResult(out, p)
	}
	if errors.Is(signErr, ca.ErrOutcomeUnknown) {
		// The CA may still issue: the row stays pending (with its ARN when
		// known) and reconciliation finishes it, so nothing goes unrecorded.
		s.Log.Warn("issuance outcome unknown; left pending for reconciliation", zap.Uint64("row", row.ID), zap.Error(signErr))
		return nil, signErr
	}
	if signErr != nil {
		row.Status, row.FailureReason = store.StatusFailed, encodeFailure(signErr)
		ae := apierror.As(signErr)
		if ae.Retryable {
			// The CA turned the request away before issuing (throttled,
			// busy, CA not active) and the client is told to retry: the
			// row stays as the record of this attempt but lets go of the
			// Idempotency-Key, so a retry with the same key is a new
			// attempt rather than this error replayed for a day.
			row.IdempotencyKey, row.IdemRequester = nil, nil
		}
		ev := s.event(c, store.EventFailed, row.CA, "", "failure", map[string]string{"profile": row.Profile, "code": ae.Code, "reason": ae.Message})
		if err := record(signCtx, row, ev); err != nil {
			s.Log.Error("recording failed issuance", zap.Uint64("row", row.ID), zap.Error(err))
		}
		return nil, signErr
	}
	leaf := out.Leaf
	serialHex = ca.FormatSerial(leaf.SerialNumber)
	fp := sha256.Sum256(leaf.Raw)
	row.Serial = &serialHex
	row.Status = store.StatusIssued
	row.NotBefore, row.NotAfter = leaf.NotBefore.UTC(), leaf.NotAfter.UTC()
	row.PEM = certPEM(leaf.Raw)
	row.ARN = out.ARN
	row.Fingerprint = hex.EncodeToString(fp[:])
	details := map[string]string{"profile": row.Profile, "not_after": row.NotAfter.Format(time.RFC3339)}
	if row.Cluster != "" {
		details["cluster"] = row.Cluster
	}
	if out.ARN != "" {
		details["certificate_arn"] = out.ARN
	}
	ev := s.event(c, store.EventIssued, row.CA, serialHex, "success", details)
	if err := record(signCtx, row, ev); err != nil {
		// The certificate exists but is not recorded as issued: never hand it
		// out. Reconciliation finds the pending row.
		s.Log.Error("recording issued certificate", zap.Uint64("row", row.ID), zap.String("serial", serialHex), zap.Error(err))
		return nil, dbError(err)
	}
	res := s.result(row, out)
	if p.priv != nil {
		pk, err := x509.MarshalPKCS8PrivateKey(p.priv)
		if err != nil {
			return nil, err
		}
		res.PrivateKey = string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pk}))
	}
	return res, nil
}

type csrNeeder interface{ RequiresCSR() bool }

func needsCSR(b ca.Backend) bool {
	n, ok := b.(csrNeeder)
	return ok && n.RequiresCSR()
}

// checkResult refuses a certificate that is not exactly what was asked for;
// it matters for PCA, where the template decides the extensions.
func checkResult(out *ca.SignResult, p *prepared) error {
	if out == nil || out.Leaf == nil || out.Root == nil {
		return errors.New("backend returned no certificate")
	}
	if !ca.PublicKeysEqual(out.Leaf.PublicKey, p.pub) {
		return apierror.New(http.StatusBadGateway, apierror.CodeUpstream, "the CA returned a certificate for a different key")
	}
	if out.Leaf.KeyUsage != p.profile.KeyUsage {
		return apierror.New(http.StatusBadGateway, apierror.CodeUpstream, "the CA returned key usage %b, profile %s wants %b: check the template", out.Leaf.KeyUsage, p.profile.Name, p.profile.KeyUsage)
	}
	// EKU order carries no meaning (EndEntityCertificate/V1 lists
	// serverAuth first); the set must be exactly the profile's.
	if !ca.UsagesMatch(p.profile, out.Leaf.KeyUsage, out.Leaf.ExtKeyUsage, out.Leaf.UnknownExtKeyUsage) {
		return apierror.New(http.StatusBadGateway, apierror.CodeUpstream, "the CA returned EKU %v (and %d unknown), profile %s wants %v: check the template",
			ca.ExtKeyUsageNames(out.Leaf.ExtKeyUsage), len(out.Leaf.UnknownExtKeyUsage), p.profile.Name, ca.ExtKeyUsageNames(p.profile.ExtKeyUsage))
	}
	if out.Leaf.IsCA != p.profile.IsCA {
		return apierror.New(http.StatusBadGateway, apierror.CodeUpstream, "the CA returned a certificate with CA:%v, profile %s wants CA:%v: check the template", out.Leaf.IsCA, p.profile.Name, p.profile.IsCA)
	}
	if p.profile.IsCA && (out.Leaf.MaxPathLen != p.profile.MaxPathLen || (p.profile.MaxPathLen == 0 && !out.Leaf.MaxPathLenZero)) {
		return apierror.New(http.StatusBadGateway, apierror.CodeUpstream, "the CA returned a CA certificate with path length %d, profile %s wants %d: check the template", out.Leaf.MaxPathLen, p.profile.Name, p.profile.MaxPathLen)
	}
	if span := out.Leaf.NotAfter.Sub(out.Leaf.NotBefore); span > p.profile.MaxValidity {
		return apierror.New(http.StatusBadGateway, apierror.CodeUpstream, "the CA returned a certificate valid for %s, more than the profile's %s", span, p.profile.MaxValidity)
	}
	return nil
}

// fitsIssuer refuses issuance on a CA the cache says is unusable (503) and a
// span that CA cannot cover (400): no certificate may outlive its issuer.
func (s *Service) fitsIssuer(ctx context.Context, caName string, notAfter time.Time) error {
	if s.Gate == nil {
		return nil
	}
	cert, err := s.Gate.Usable(ctx, caName)
	if err != nil || cert == nil {
		return err
	}
	if notAfter.After(cert.NotAfter) {
		return apierror.Field("validity", "the requested validity ends %s, after the issuing CA %s expires (%s); ask for a shorter span",
			notAfter.Format(time.RFC3339), caName, cert.NotAfter.UTC().Format(time.RFC3339))
	}
	return nil
}

func (s *Service) result(row *store.Certificate, out *ca.SignResult) *Result {
	chain := s.pemCache.encodeAll(out.Chain)
	root := s.pemCache.encode(out.Root)
	return &Result{
		Serial: *row.Serial, Profile: row.Profile, CA: row.CA, Cluster: row.Cluster, CommonName: row.CommonName, SANs: row.SANs,
		NotBefore: row.NotBefore, NotAfter: row.NotAfter, Certificate: row.PEM, Chain: chain, Root: root,
		Bundle: row.PEM + chain + root, CertificateARN: row.ARN,
	}
}

func (s *Service) event(c Caller, typ, caName, serial, outcome string, details map[string]string) *store.Event {
	return &store.Event{CA: caName, Type: typ, Serial: serial, Principal: c.Principal, RequestID: c.RequestID,
		SourceAddr: c.SourceAddr, Outcome: outcome, Details: details}
}

// refused audits a request turned away before anything was recorded. It is
// best effort: a refusal must not become a 500 because the audit write failed.
func (s *Service) refused(ctx context.Context, c Caller, profile, caName string, err error) {
	ae := apierror.As(err)
	if ae.Status >= 500 {
		return
	}
	details := map[string]string{"code": ae.Code, "reason": ae.Message}
	if profile != "" {
		details["profile"] = profile
	}
	if err := s.Store.AddEvent(ctx, s.event(c, store.EventRefused, caName, "", "refused", details)); err != nil {
		s.Log.Warn("audit of refused request", zap.Error(err))
	}
}

// dbError classifies a database failure: retryable 503, never a 500.
func dbError(err error) error {
	if err == nil {
		return nil
	}
	var ae *apierror.Error
	if errors.As(err, &ae) {
		return err
	}
	return apierror.Unavailable(apierror.CodeDatabase, 2*time.Second, "the database is unavailable; retry shortly").WithCause(err)
}
