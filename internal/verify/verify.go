// Package verify checks a certificate the way a relying party would, against
// what a certgate server publishes: trust (a path to the trust bundle),
// signature (by its issuer's key), validity (now) and revocation (the
// issuing CA's CRL, when the server serves one). It is the logic behind
// `certgate verify`.
package verify

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/certgate/certgate/internal/ca"
)

// Status of one check.
type Status string

const (
	OK   Status = "OK"
	Fail Status = "FAIL"
	// Skip: the check could not be made (e.g. no CRL is available).
	Skip Status = "SKIP"
)

// Check names, in the order they are reported.
const (
	CheckTrust      = "trust"
	CheckSignature  = "signature"
	CheckValidity   = "validity"
	CheckRevocation = "revocation"
)

// Check is one verdict.
type Check struct {
	Name   string `json:"name"`
	Status Status `json:"status"`
	Detail string `json:"detail"`
}

// Report is the outcome for one certificate.
type Report struct {
	Subject   string    `json:"subject"`
	Serial    string    `json:"serial"`
	Issuer    string    `json:"issuer"`
	NotBefore time.Time `json:"not_before"`
	NotAfter  time.Time `json:"not_after"`
	SHA256    string    `json:"fingerprint_sha256"`
	// IssuingCA is the certgate CA that issued the certificate, when its
	// issuer is one of the server's CAs.
	IssuingCA string  `json:"issuing_ca,omitempty"`
	Checks    []Check `json:"checks"`
	// OK: every check passed (a skipped check counts as passed unless
	// Options.RequireRevocation is set).
	OK bool `json:"ok"`
}

// Failed lists the checks that did not hold.
func (r *Report) Failed() []string {
	var out []string
	for _, c := range r.Checks {
		if c.Status == Fail {
			out = append(out, c.Name)
		}
	}
	return out
}

// Source is what the server publishes. Every method may fail; a failure
// turns into a FAIL (trust bundle) or a skipped check (chains, CRLs).
type Source interface {
	// TrustBundle is GET /v1/trust-bundle.
	TrustBundle(ctx context.Context) ([]*x509.Certificate, error)
	// Chain is GET /v1/cas/{name}/chain: the CA first, then its issuers.
	Chain(ctx context.Context, name string) ([]*x509.Certificate, error)
	// CRL is GET /v1/cas/{name}/crl: the CA's CRL, DER (or PEM).
	CRL(ctx context.Context, name string) ([]byte, error)
}

// Options are the inputs of Run.
type Options struct {
	Cert *x509.Certificate
	// Intermediates are extra certificates to build the path from (--chain,
	// or the rest of the certificate file).
	Intermediates []*x509.Certificate
	// Roots, when set (--ca-file), are the trust anchors; otherwise the
	// source's trust bundle is.
	Roots []*x509.Certificate
	// Source is the server; nil checks offline (Roots needed; revocation
	// is not checked).
	Source Source
	// CANames are the server's CAs to look up (default ca.Names).
	CANames []string
	Now     time.Time
	// RequireRevocation makes a revocation check that could not be made
	// count as a failure.
	RequireRevocation bool
}

// Run gathers what the server publishes and checks opts.Cert against it.
func Run(ctx context.Context, o Options) *Report {
	in := Input{Cert: o.Cert, Intermediates: o.Intermediates, Roots: o.Roots, Now: o.Now, RequireRevocation: o.RequireRevocation}
	if in.Now.IsZero() {
		in.Now = time.Now()
	}
	if o.Source == nil {
		in.CRLUnavailable = "no server to ask"
		if len(in.Roots) == 0 {
			in.RootsErr = errors.New("no trust anchors: give --ca-file or a server")
		}
		return Evaluate(in)
	}
	if len(in.Roots) == 0 {
		roots, err := o.Source.TrustBundle(ctx)
		if err == nil && len(roots) == 0 {
			err = errors.New("the trust bundle is empty")
		}
		if err != nil {
			in.RootsErr = fmt.Errorf("fetching the trust bundle: %w", err)
		}
		in.Roots = roots
	}
	names := o.CANames
	if len(names) == 0 {
		names = ca.Names
	}
	// The chains are fetched at once: an unreachable server costs one
	// timeout, not one per CA.
	chains := make([][]*x509.Certificate, len(names))
	errs := make([]error, len(names))
	var wg sync.WaitGroup
	for i, n := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			chains[i], errs[i] = o.Source.Chain(ctx, n)
			if errs[i] == nil && len(chains[i]) == 0 {
				errs[i] = errors.New("empty chain")
			}
		}()
	}
	wg.Wait()
	in.CAs = map[string][]*x509.Certificate{}
	var chainErrs []string
	for i, n := range names {
		if errs[i] != nil {
			chainErrs = append(chainErrs, fmt.Sprintf("%s: %v", n, errs[i]))
			continue
		}
		in.CAs[n] = chains[i]
	}
	if len(chainErrs) > 1 {
		chainErrs = []string{fmt.Sprintf("%s (and %d more)", chainErrs[0], len(chainErrs)-1)}
	}
	name, _ := IssuingCA(o.Cert, in.CAs)
	switch {
	case name == "" && len(chainErrs) > 0:
		in.CRLUnavailable = "the issuer is none of the server's CAs that answered; CA chains unavailable: " + chainErrs[0]
	case name == "":
		in.CRLUnavailable = "the issuer is not one of the server's CAs"
	default:
		crl, err := o.Source.CRL(ctx, name)
		if err != nil {
			in.CRLUnavailable = fmt.Sprintf("no CRL for %s: %v", name, err)
		} else {
			in.CRL = crl
		}
	}
	return Evaluate(in)
}

// Input is everything Evaluate needs, already fetched.
type Input struct {
	Cert          *x509.Certificate
	Intermediates []*x509.Certificate
	Roots         []*x509.Certificate
	RootsErr      error // why Roots is empty
	// CAs are the server's CA chains by name, CA first (GET /v1/cas/{name}/chain).
	CAs map[string][]*x509.Certificate
	// CRL is the issuing CA's CRL (DER or PEM); nil when unavailable, with
	// CRLUnavailable saying why.
	CRL               []byte
	CRLUnavailable    string
	Now               time.Time
	RequireRevocation bool
}

// Evaluate runs the four checks.
func Evaluate(in Input) *Report {
	c := in.Cert
	sum := sha256.Sum256(c.Raw)
	r := &Report{Subject: c.Subject.String(), Serial: ca.FormatSerial(c.SerialNumber), Issuer: c.Issuer.String(),
		NotBefore: c.NotBefore.UTC(), NotAfter: c.NotAfter.UTC(), SHA256: hex.EncodeToString(sum[:])}
	if in.Now.IsZero() {
		in.Now = time.Now()
	}
	var caCerts []*x509.Certificate
	for _, chain := range in.CAs {
		caCerts = append(caCerts, chain...)
	}
	r.IssuingCA, _ = IssuingCA(c, in.CAs)

	path, trust := checkTrust(in, caCerts)
	r.Checks = append(r.Checks, trust)
	issuer, sig := checkSignature(c, path, append(append(append([]*x509.Certificate(nil), in.Intermediates...), caCerts...), in.Roots...))
	r.Checks = append(r.Checks, sig)
	r.Checks = append(r.Checks, checkValidity(c, path, in.Now))
	r.Checks = append(r.Checks, checkRevocation(in, issuer, r.IssuingCA))

	r.OK = true
	for _, ch := range r.Checks {
		if ch.Status == Fail || (ch.Status == Skip && in.RequireRevocation) {
			r.OK = false
		}
	}
	return r
}

// IssuingCA finds the server CA whose certificate signed c.
func IssuingCA(c *x509.Certificate, cas map[string][]*x509.Certificate) (string, *x509.Certificate) {
	for _, n := range ca.Names {
		if chain := cas[n]; len(chain) > 0 && issuedBy(c, chain[0]) {
			return n, chain[0]
		}
	}
	for n, chain := range cas { // names outside the four roles
		if len(chain) > 0 && issuedBy(c, chain[0]) {
			return n, chain[0]
		}
	}
	return "", nil
}

// issuedBy: parent's name is c's issuer and parent's key signed c.
func issuedBy(c, parent *x509.Certificate) bool {
	if !bytes.Equal(c.RawIssuer, parent.RawSubject) {
		return false
	}
	if len(c.AuthorityKeyId) > 0 && len(parent.SubjectKeyId) > 0 && !bytes.Equal(c.AuthorityKeyId, parent.SubjectKeyId) {
		return false
	}
	return c.CheckSignatureFrom(parent) == nil
}

// checkTrust builds a path to the roots. Time is checked separately, so the
// path is built at a moment when the certificate is valid.
func checkTrust(in Input, caCerts []*x509.Certificate) ([]*x509.Certificate, Check) {
	ch := Check{Name: CheckTrust}
	if len(in.Roots) == 0 {
		ch.Status, ch.Detail = Fail, "no trust anchors"
		if in.RootsErr != nil {
			ch.Detail = in.RootsErr.Error()
		}
		return nil, ch
	}
	roots := x509.NewCertPool()
	for _, x := range in.Roots {
		roots.AddCert(x)
	}
	inter := x509.NewCertPool()
	for _, x := range append(append([]*x509.Certificate(nil), in.Intermediates...), caCerts...) {
		inter.AddCert(x)
	}
	c := in.Cert
	at := in.Now
	if at.Before(c.NotBefore) {
		at = c.NotBefore
	}
	if at.After(c.NotAfter) {
		at = c.NotAfter
	}
	chains, err := c.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: at, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	if err != nil {
		ch.Status, ch.Detail = Fail, describeVerifyError(err, len(in.Roots))
		return nil, ch
	}
	path := chains[0]
	var via []string
	for _, x := range path[1 : len(path)-1] {
		via = append(via, quote(x))
	}
	ch.Status = OK
	ch.Detail = "chains to " + quote(path[len(path)-1])
	if len(via) > 0 {
		ch.Detail += " via " + strings.Join(via, ", ")
	}
	return path, ch
}

func describeVerifyError(err error, nRoots int) string {
	var ua x509.UnknownAuthorityError
	if errors.As(err, &ua) {
		return fmt.Sprintf("does not chain to the trust bundle (%d root(s)): %v", nRoots, err)
	}
	return err.Error()
}

// checkSignature finds the issuer (on the trusted path, else among every
// certificate at hand) and checks c's signature with its key.
func checkSignature(c *x509.Certificate, path, candidates []*x509.Certificate) (*x509.Certificate, Check) {
	ch := Check{Name: CheckSignature}
	if len(path) > 1 {
		ch.Status, ch.Detail = OK, fmt.Sprintf("%s by %s", c.SignatureAlgorithm, quote(path[1]))
		return path[1], ch
	}
	if len(path) == 1 { // c is itself a trust anchor
		ch.Status, ch.Detail = OK, fmt.Sprintf("%s, self-signed trust anchor", c.SignatureAlgorithm)
		return c, ch
	}
	var named []*x509.Certificate
	for _, p := range append([]*x509.Certificate{c}, candidates...) {
		if bytes.Equal(c.RawIssuer, p.RawSubject) {
			named = append(named, p)
		}
	}
	for _, p := range named {
		if err := signedBy(c, p); err == nil {
			ch.Status = OK
			if p == c {
				ch.Detail = fmt.Sprintf("%s, self-signed", c.SignatureAlgorithm)
			} else {
				ch.Detail = fmt.Sprintf("%s by %s", c.SignatureAlgorithm, quote(p))
			}
			return p, ch
		}
	}
	ch.Status = Fail
	if len(named) == 0 {
		ch.Detail = fmt.Sprintf("no certificate of the issuer %q to check the signature with (give its chain with --chain)", c.Issuer.String())
		return nil, ch
	}
	errs := make([]string, 0, len(named))
	for _, p := range named {
		errs = append(errs, fmt.Sprintf("%s: %v", quote(p), signedBy(c, p)))
	}
	ch.Detail = "the signature does not verify with the issuer's key: " + strings.Join(errs, "; ")
	return nil, ch
}

// signedBy checks c's signature with p's key; for another certificate p
// must also be a CA allowed to sign certificates.
func signedBy(c, p *x509.Certificate) error {
	if p == c || p.Equal(c) {
		return c.CheckSignature(c.SignatureAlgorithm, c.RawTBSCertificate, c.Signature)
	}
	return c.CheckSignatureFrom(p)
}

func checkValidity(c *x509.Certificate, path []*x509.Certificate, now time.Time) Check {
	ch := Check{Name: CheckValidity}
	switch {
	case now.Before(c.NotBefore):
		ch.Status, ch.Detail = Fail, fmt.Sprintf("not valid before %s (in %s)", stamp(c.NotBefore), human(c.NotBefore.Sub(now)))
		return ch
	case now.After(c.NotAfter):
		ch.Status, ch.Detail = Fail, fmt.Sprintf("expired at %s (%s ago)", stamp(c.NotAfter), human(now.Sub(c.NotAfter)))
		return ch
	}
	for _, x := range path[min(1, len(path)):] {
		if now.Before(x.NotBefore) || now.After(x.NotAfter) {
			ch.Status, ch.Detail = Fail, fmt.Sprintf("the issuer %s is not valid now (%s to %s)", quote(x), stamp(x.NotBefore), stamp(x.NotAfter))
			return ch
		}
	}
	ch.Status, ch.Detail = OK, fmt.Sprintf("%s to %s (%s left)", stamp(c.NotBefore), stamp(c.NotAfter), human(c.NotAfter.Sub(now)))
	return ch
}

func checkRevocation(in Input, issuer *x509.Certificate, caName string) Check {
	ch := Check{Name: CheckRevocation, Status: Skip}
	c := in.Cert
	switch {
	case bytes.Equal(c.RawIssuer, c.RawSubject) && signedBy(c, c) == nil:
		ch.Detail = "a self-signed certificate has no CRL"
		return ch
	case issuer == nil:
		ch.Detail = "no verified issuer (see signature), so no CRL to check against"
		return ch
	case in.CRL == nil:
		ch.Detail = in.CRLUnavailable
		if ch.Detail == "" {
			ch.Detail = "no CRL"
		}
		return ch
	}
	der := in.CRL
	if b, _ := pem.Decode(der); b != nil && b.Type == "X509 CRL" {
		der = b.Bytes
	}
	crl, err := x509.ParseRevocationList(der)
	ch.Status = Fail
	name := caName
	if name == "" {
		name = quote(issuer)
	}
	if err != nil {
		ch.Detail = fmt.Sprintf("the CRL of %s does not parse: %v", name, err)
		return ch
	}
	if !bytes.Equal(crl.RawIssuer, issuer.RawSubject) {
		ch.Detail = fmt.Sprintf("the CRL is issued by %q, not by %s", crl.Issuer.String(), name)
		return ch
	}
	if err := crl.CheckSignatureFrom(issuer); err != nil {
		ch.Detail = fmt.Sprintf("the CRL of %s is not signed by its key: %v", name, err)
		return ch
	}
	if !crl.NextUpdate.IsZero() && in.Now.After(crl.NextUpdate) {
		ch.Detail = fmt.Sprintf("the CRL of %s is out of date (next update was due %s)", name, stamp(crl.NextUpdate))
		return ch
	}
	for _, e := range crl.RevokedCertificateEntries {
		if e.SerialNumber.Cmp(c.SerialNumber) == 0 {
			ch.Detail = fmt.Sprintf("revoked at %s, reason %s (CRL of %s, updated %s)", stamp(e.RevocationTime), reasonName(e.ReasonCode), name, stamp(crl.ThisUpdate))
			return ch
		}
	}
	ch.Status = OK
	var b strings.Builder
	fmt.Fprintf(&b, "not on the CRL of %s (", name)
	if crl.Number != nil {
		fmt.Fprintf(&b, "number %s, ", crl.Number)
	}
	fmt.Fprintf(&b, "updated %s", stamp(crl.ThisUpdate))
	if !crl.NextUpdate.IsZero() {
		fmt.Fprintf(&b, ", next update %s", stamp(crl.NextUpdate))
	}
	b.WriteString(")")
	ch.Detail = b.String()
	return ch
}

var reasons = []string{"unspecified", "key_compromise", "ca_compromise", "affiliation_changed", "superseded",
	"cessation_of_operation", "certificate_hold", "", "remove_from_crl", "privilege_withdrawn", "aa_compromise"}

func reasonName(code int) string {
	if code >= 0 && code < len(reasons) && reasons[code] != "" {
		return reasons[code]
	}
	return fmt.Sprintf("code %d", code)
}

func quote(c *x509.Certificate) string {
	if c.Subject.CommonName != "" {
		return fmt.Sprintf("%q", c.Subject.CommonName)
	}
	return fmt.Sprintf("%q", c.Subject.String())
}

func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// human renders a duration in days and hours, or minutes when short.
func human(d time.Duration) string {
	if d < 0 {
		d = -d
	}
	switch {
	case d >= ca.Day:
		return fmt.Sprintf("%dd%dh", int(d/ca.Day), int(d%ca.Day/time.Hour))
	case d >= time.Hour:
		return fmt.Sprintf("%dh%dm", int(d/time.Hour), int(d%time.Hour/time.Minute))
	case d >= time.Minute:
		return fmt.Sprintf("%dm", int(d/time.Minute))
	}
	return fmt.Sprintf("%ds", int(d/time.Second))
}

// Print writes the human report: a header, one line per check, a verdict.
func (r *Report) Print(w io.Writer) {
	fmt.Fprintf(w, "certificate %s\n", r.Subject)
	fmt.Fprintf(w, "  serial    %s\n  issuer    %s\n", r.Serial, r.Issuer)
	if r.IssuingCA != "" {
		fmt.Fprintf(w, "  ca        %s\n", r.IssuingCA)
	}
	fmt.Fprintf(w, "  sha256    %s\n", r.SHA256)
	for _, c := range r.Checks {
		label := c.Name + ":"
		if c.Status == Skip {
			fmt.Fprintf(w, "%-11s not checked (%s)\n", label, c.Detail)
			continue
		}
		fmt.Fprintf(w, "%-11s %-4s  %s\n", label, c.Status, c.Detail)
	}
	if r.OK {
		fmt.Fprintln(w, "result:     OK")
		return
	}
	failed := r.Failed()
	if len(failed) == 0 {
		failed = []string{"revocation not checked (required)"}
	}
	fmt.Fprintf(w, "result:     FAIL (%s)\n", strings.Join(failed, ", "))
}

// ParsePEM reads every CERTIFICATE block; other blocks (a key next to the
// certificate) are ignored, anything unparsable is an error.
func ParsePEM(b []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	rest := b
	for {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("certificate %d: %w", len(out)+1, err)
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		if c, err := x509.ParseCertificate(b); err == nil { // DER
			return []*x509.Certificate{c}, nil
		}
		return nil, errors.New("no certificate found (want PEM or DER)")
	}
	return out, nil
}
