package issuance

// Istio intermediate CAs: one CA certificate per cluster, issued by the root
// with the istio-intermediate profile (CA:TRUE, pathlen 0), for istiod's
// plug-in CA ("cacerts"). It runs the same path as every other issuance —
// validate, authorise, signAndRecord (write before sign, event, idempotency,
// metrics) — with the request shape of POST /v1/istio/intermediates.

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/certgate/certgate/internal/apierror"
	"github.com/certgate/certgate/internal/ca"
	"github.com/certgate/certgate/internal/policy"
	"github.com/certgate/certgate/internal/validation"
)

// KeyECDSAP384 is offered for CA keys only (server-side generation).
const KeyECDSAP384 = "ecdsa-p384"

// UsageModeShortLived is PCA's short-lived certificate mode. Such a CA must
// be the last CA in its hierarchy: it cannot issue CA certificates.
const UsageModeShortLived = "SHORT_LIVED_CERTIFICATE"

// CodeShortLivedCA is the error code (409) for a CA certificate asked of a
// PCA CA in short-lived mode. The request is well-formed; the CA's
// configuration is what conflicts with it, so retrying cannot help until an
// operator points the profile at a general-purpose CA.
const CodeShortLivedCA = "ca_short_lived"

// MaxClusterLen is the longest cluster name: one DNS label.
const MaxClusterLen = 63

// IntermediateRequest is the body of POST /v1/istio/intermediates.
type IntermediateRequest struct {
	Cluster      string `json:"cluster"`
	CSR          string `json:"csr,omitempty"`
	KeyType      string `json:"key_type,omitempty"`
	ValidityDays *int   `json:"validity_days,omitempty"`
}

// IntermediateResult is the body of its 201: the four Istio cacerts files
// (ca_key only when the server generated the key).
type IntermediateResult struct {
	Serial    string    `json:"serial"`
	Cluster   string    `json:"cluster"`
	Profile   string    `json:"profile"`
	CA        string    `json:"ca"` // issuing CA role (root)
	Subject   string    `json:"subject"`
	NotBefore time.Time `json:"not_before"`
	NotAfter  time.Time `json:"not_after"`
	// CACert is the cluster's intermediate (ca-cert.pem).
	CACert string `json:"ca_cert"`
	// RootCert is the root (root-cert.pem).
	RootCert string `json:"root_cert"`
	// CertChain is ca-cert first, then its issuers up to and including the
	// root, each exactly once (cert-chain.pem).
	CertChain string `json:"cert_chain"`
	// CAKey is the PKCS#8 PEM key (ca-key.pem), only when the server
	// generated it; it is returned once and never stored.
	CAKey          string `json:"ca_key,omitempty"`
	CertificateARN string `json:"certificate_arn,omitempty"`
	// Replayed is set when an Idempotency-Key returned an earlier result
	// (which never carries ca_key: the key was not kept).
	Replayed bool `json:"-"`
}

// IntermediateCommonName is the common name of a cluster's intermediate.
func IntermediateCommonName(cluster string) string { return "istio-intermediate " + cluster }

// IntermediateSubject is the subject certgate gives a cluster's intermediate,
// whatever a CSR asks for: the cluster is in the name, so an operator
// reading any certificate in a mesh sees which cluster's CA signed it.
func IntermediateSubject(cluster string) pkix.Name {
	return pkix.Name{Organization: []string{"certgate"}, OrganizationalUnit: []string{"istio"}, CommonName: IntermediateCommonName(cluster)}
}

// subject is the subject signAndRecord puts into the certificate: the
// cluster subject for a cluster CA, else the common name alone.
func (p *prepared) subject() pkix.Name {
	if p.profile != nil && p.profile.IsCA && p.cluster != "" {
		return IntermediateSubject(p.cluster)
	}
	var cn string
	if p.names != nil {
		cn = p.names.CommonName
	}
	return pkix.Name{CommonName: cn}
}

// ValidateCluster checks a cluster name: a lower-case DNS label (RFC 1123),
// 1 to 63 characters of a-z, 0-9 and '-', not starting or ending with '-'.
// It refuses rather than lower-cases: "East" and "east" naming two clusters
// is a mistake to show, not to paper over.
func ValidateCluster(cluster string) error {
	switch {
	case cluster == "":
		return apierror.Field("cluster", "is required: the name of the cluster this intermediate CA is for (a DNS label such as \"east\")")
	case len(cluster) > MaxClusterLen:
		return apierror.Field("cluster", "is %d characters; at most %d (one DNS label)", len(cluster), MaxClusterLen)
	case cluster[0] == '-' || cluster[len(cluster)-1] == '-':
		return apierror.Field("cluster", "%q must not start or end with '-'", cluster)
	}
	for i := 0; i < len(cluster); i++ {
		c := cluster[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '-':
		case c >= 'A' && c <= 'Z':
			return apierror.Field("cluster", "%q must be lower case (a DNS label: a-z, 0-9 and '-')", cluster)
		default:
			return apierror.Field("cluster", "%q has %q at position %d; only a-z, 0-9 and '-' are allowed (a DNS label)", cluster, rune(c), i+1)
		}
	}
	return nil
}

// IssueIntermediate issues a cluster's Istio intermediate CA.
//
// Errors: 400 validation_failed for bad input (field "cluster",
// "validity_days", "csr", "key_type") or a span past the root's NotAfter
// (field "validity"); 403 when the principal lacks issue or the
// istio-intermediate profile (or asks for more than its max_validity); 409
// ca_short_lived when the issuing PCA CA is in short-lived mode; 503 when
// the root is unusable; PCA errors as for any issuance.
func (s *Service) IssueIntermediate(ctx context.Context, c Caller, req IntermediateRequest) (*IntermediateResult, error) {
	start := s.Now()
	res, err := s.issueIntermediate(ctx, c, req)
	if err != nil {
		s.Metrics.IssueFailures.WithLabelValues(ca.ProfileIstioIntermediate, apierror.As(err).Code).Inc()
		return nil, err
	}
	s.Metrics.IssueDuration.WithLabelValues(res.Profile, s.Backend.Kind()).Observe(s.Now().Sub(start).Seconds())
	if !res.Replayed {
		s.Metrics.Issued.WithLabelValues(res.Profile, res.CA).Inc()
	}
	return res, nil
}

// intermediateHashInput keeps an intermediate request's idempotency hash
// apart from any leaf request's.
type intermediateHashInput struct {
	Kind string              `json:"kind"`
	Req  IntermediateRequest `json:"req"`
}

func (s *Service) issueIntermediate(ctx context.Context, c Caller, req IntermediateRequest) (*IntermediateResult, error) {
	prof := s.Profiles.Lookup(ca.ProfileIstioIntermediate)
	if prof == nil || !prof.IsCA {
		return nil, apierror.Internal(errors.New("issuance: the istio-intermediate profile is not configured as a CA profile"))
	}
	p, err := s.validateIntermediate(req, prof)
	if err != nil {
		s.refused(ctx, c, prof.Name, "", err)
		return nil, err
	}
	p.reqHash = requestHash(c.Principal, intermediateHashInput{Kind: prof.Name, Req: req})
	if err := authorizeIntermediate(c, p); err != nil {
		s.refused(ctx, c, prof.Name, prof.CA, err)
		return nil, err
	}
	if err := s.mayIssueCAs(ctx, prof.CA); err != nil {
		s.refused(ctx, c, prof.Name, prof.CA, err)
		return nil, err
	}
	res, err := s.signAndRecord(ctx, c, p)
	if err != nil {
		return nil, err
	}
	return intermediateResult(res, p)
}

// validateIntermediate turns a request into a prepared one or a 400. The
// CSR's own subject and extensions are ignored: certgate sets the subject
// and the profile sets the rest.
func (s *Service) validateIntermediate(req IntermediateRequest, prof *ca.Profile) (*prepared, error) {
	if err := ValidateCluster(req.Cluster); err != nil {
		return nil, err
	}
	span, err := validation.Span(req.ValidityDays, "", prof.DefaultValidity, prof.MaxValidity)
	if err != nil {
		return nil, err
	}
	p := &prepared{profile: prof, span: span, cluster: req.Cluster,
		names: &validation.Names{CommonName: IntermediateCommonName(req.Cluster)}}
	if req.CSR != "" {
		if req.KeyType != "" {
			return nil, apierror.Field("key_type", "only without csr: the CSR's key is used")
		}
		csr, err := validation.ParseCSR(req.CSR)
		if err != nil {
			return nil, err
		}
		if err := validation.CheckKey("csr", csr.PublicKey); err != nil {
			return nil, err
		}
		p.pub, p.csrDER = csr.PublicKey, csr.Raw
		return p, nil
	}
	priv, err := generateCAKey(req.KeyType)
	if err != nil {
		return nil, err
	}
	p.priv, p.pub = priv, priv.Public()
	return p, nil
}

// generateCAKey makes a server-side CA key: ECDSA P-256 (default), P-384 or
// RSA 2048.
func generateCAKey(keyType string) (crypto.Signer, error) {
	switch keyType {
	case "", KeyECDSAP256:
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case KeyECDSAP384:
		return ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case KeyRSA2048:
		return rsa.GenerateKey(rand.Reader, 2048)
	}
	return nil, apierror.Field("key_type", "unsupported key type %q (%s, %s or %s)", keyType, KeyECDSAP256, KeyECDSAP384, KeyRSA2048)
}

// authorizeIntermediate: the principal needs issue and the istio-intermediate
// profile; its max_validity, if any, caps the span as for every issuance.
// Name patterns do not apply: the certificate carries no SANs, and its one
// name is made by certgate from the cluster.
func authorizeIntermediate(c Caller, p *prepared) error {
	if c.Policy == nil {
		return apierror.Forbidden("no policy for principal %q", c.Principal)
	}
	if !c.Policy.Can(policy.OpIssue) {
		return apierror.Forbidden("principal %q may not issue certificates", c.Principal).WithDetail("operation", "issue not allowed")
	}
	if !c.Policy.AllowsProfile(p.profile.Name) {
		return apierror.Forbidden("principal %q may not issue Istio intermediate CAs: profile %q is not in its profiles", c.Principal, p.profile.Name).
			WithDetail(policy.FieldProfile, fmt.Sprintf("profile %q is not in the principal's profiles", p.profile.Name))
	}
	return c.Policy.CheckIssue(policy.Request{Profile: p.profile.Name, Validity: p.span})
}

// UsageModer is what the CA gate may offer to tell a CA's PCA usage mode
// (GENERAL_PURPOSE, SHORT_LIVED_CERTIFICATE, or "" when unknown).
type UsageModer interface {
	UsageMode(name string) string
}

// mayIssueCAs refuses, on PCA, a CA certificate from a CA in short-lived
// mode: PCA would refuse it too, later and less clearly, after a pending row
// was written and a quota unit spent.
func (s *Service) mayIssueCAs(ctx context.Context, caName string) error {
	if s.Backend.Kind() != "aws-pca" {
		return nil
	}
	mode := ""
	if um, ok := s.Gate.(UsageModer); ok {
		// Usable fills the cache (and refuses an unusable CA with its own 503).
		if _, err := s.Gate.Usable(ctx, caName); err != nil {
			return err
		}
		mode = um.UsageMode(caName)
	} else {
		info, err := s.Backend.Describe(ctx, caName)
		if err != nil {
			return apierror.Unavailable(apierror.CodeCAUnavailable, 5*time.Second, "CA %s is unavailable: it could not be described", caName).WithCause(err)
		}
		mode = info.UsageMode
	}
	if mode == UsageModeShortLived {
		return apierror.New(http.StatusConflict, CodeShortLivedCA,
			"CA %s is a short-lived-mode PCA CA, which cannot issue CA certificates; short-lived CAs must be the last CA in a hierarchy. Issue Istio intermediates from a general-purpose CA", caName).
			WithDetail("ca", fmt.Sprintf("%s: usage mode %s", caName, mode))
	}
	return nil
}

// intermediateResult renders the Istio files, after checking that what the
// CA returned is a pathlen-0 CA certificate for the requested key that
// chains to the root: a wrong PCA template must not reach a cluster.
func intermediateResult(res *Result, p *prepared) (*IntermediateResult, error) {
	certs, err := parseCertsPEM(res.Certificate + res.Chain + res.Root)
	if err != nil || len(certs) < 2 {
		return nil, apierror.Internal(fmt.Errorf("issuance: intermediate result: %d certificates, %v", len(certs), err))
	}
	// Each certificate once, in issuer order, ending at the root.
	var chain []*x509.Certificate
	for _, c := range certs {
		dup := false
		for _, have := range chain {
			if bytes.Equal(have.Raw, c.Raw) {
				dup = true
				break
			}
		}
		if !dup {
			chain = append(chain, c)
		}
	}
	leaf, root := chain[0], chain[len(chain)-1]
	if err := checkIntermediate(leaf, chain[1:len(chain)-1], root, p, res.Replayed); err != nil {
		return nil, err
	}
	var all strings.Builder
	for _, c := range chain {
		all.WriteString(certPEM(c.Raw))
	}
	return &IntermediateResult{
		Serial: res.Serial, Cluster: res.Cluster, Profile: res.Profile, CA: res.CA, Subject: leaf.Subject.String(),
		NotBefore: res.NotBefore, NotAfter: res.NotAfter,
		CACert: res.Certificate, RootCert: certPEM(root.Raw),
		CertChain: all.String(), CAKey: res.PrivateKey, CertificateARN: res.CertificateARN, Replayed: res.Replayed,
	}, nil
}

func checkIntermediate(leaf *x509.Certificate, inter []*x509.Certificate, root *x509.Certificate, p *prepared, replayed bool) error {
	upstream := func(format string, args ...any) error {
		return apierror.New(http.StatusBadGateway, apierror.CodeUpstream, format, args...)
	}
	switch {
	case !leaf.BasicConstraintsValid || !leaf.IsCA:
		return upstream("the CA returned a certificate that is not a CA (basicConstraints CA:FALSE): check the %s template", p.profile.Name)
	case leaf.MaxPathLen != p.profile.MaxPathLen || (p.profile.MaxPathLen == 0 && !leaf.MaxPathLenZero):
		return upstream("the CA returned a CA certificate with path length %d, profile %s wants %d: check the template", leaf.MaxPathLen, p.profile.Name, p.profile.MaxPathLen)
	case leaf.KeyUsage != p.profile.KeyUsage:
		return upstream("the CA returned key usage %b, profile %s wants %b: check the template", leaf.KeyUsage, p.profile.Name, p.profile.KeyUsage)
	}
	// A replay returns the certificate of the first request; with a
	// server-generated key this request's key is a new one.
	if !replayed && !ca.PublicKeysEqual(leaf.PublicKey, p.pub) {
		return upstream("the CA returned a certificate for a different key")
	}
	if err := ca.Verify(leaf, inter, root, leaf.NotBefore.Add(time.Second), nil); err != nil {
		return upstream("the CA returned an intermediate that does not verify to the root: %v", err)
	}
	return nil
}

func parseCertsPEM(s string) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	rest := []byte(s)
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			return out, nil
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
}
