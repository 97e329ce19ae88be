package pcatest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode"
)

var (
	caARNPattern       = regexp.MustCompile(`^arn:[\w+=/,.@-]+:acm-pca:[\w+=/,.@-]*:[0-9]*:certificate-authority/[\w+=,.@-]+$`)
	certARNPattern     = regexp.MustCompile(`^(arn:[\w+=/,.@-]+:acm-pca:[\w+=/,.@-]*:[0-9]*:certificate-authority/[\w+=,.@-]+)/certificate/[0-9a-fA-F]+$`)
	templateARNPattern = regexp.MustCompile(`^arn:([\w-]+):acm-pca:::template/([A-Za-z0-9_]+)/V([0-9]+)$`)
)

// ShortLivedMaxValidity is the longest certificate a SHORT_LIVED_CERTIFICATE CA issues.
const ShortLivedMaxValidity = 7 * 24 * time.Hour

// TemplateARN returns the ARN of a PCA template in the aws partition,
// e.g. TemplateARN("EndEntityClientAuthCertificate_APIPassthrough").
func TemplateARN(name string) string {
	return "arn:aws:acm-pca:::template/" + name + "/V1"
}

type sigAlg struct {
	alg x509.SignatureAlgorithm
	ec  bool
}

var sigAlgs = map[string]sigAlg{
	"SHA256WITHECDSA":   {x509.ECDSAWithSHA256, true},
	"SHA384WITHECDSA":   {x509.ECDSAWithSHA384, true},
	"SHA512WITHECDSA":   {x509.ECDSAWithSHA512, true},
	"SHA256WITHRSA":     {x509.SHA256WithRSA, false},
	"SHA384WITHRSA":     {x509.SHA384WithRSA, false},
	"SHA512WITHRSA":     {x509.SHA512WithRSA, false},
	"SHA256WITHRSA_PSS": {x509.SHA256WithRSAPSS, false},
	"SHA384WITHRSA_PSS": {x509.SHA384WithRSAPSS, false},
	"SHA512WITHRSA_PSS": {x509.SHA512WithRSAPSS, false},
}

type validity struct {
	Type  string
	Value *int64
}

type issueRequest struct {
	ApiPassthrough          json.RawMessage
	CertificateAuthorityArn string
	Csr                     []byte
	SigningAlgorithm        string
	TemplateArn             string
	Validity                *validity
	ValidityNotBefore       *validity
	IdempotencyToken        *string
}

type asn1Subject struct {
	Country                    string
	Organization               string
	OrganizationalUnit         string
	DistinguishedNameQualifier string
	State                      string
	CommonName                 string
	SerialNumber               string
	Locality                   string
	Title                      string
	Surname                    string
	GivenName                  string
	Initials                   string
	Pseudonym                  string
	GenerationQualifier        string
	CustomAttributes           []struct {
		ObjectIdentifier string
		Value            string
	}
}

type generalName struct {
	DnsName                   *string
	IpAddress                 *string
	UniformResourceIdentifier *string
	Rfc822Name                *string
	RegisteredId              *string
	DirectoryName             *asn1Subject
	OtherName                 json.RawMessage
	EdiPartyName              json.RawMessage
}

type keyUsageIn struct {
	DigitalSignature, NonRepudiation, KeyEncipherment, DataEncipherment, KeyAgreement,
	KeyCertSign, CRLSign, EncipherOnly, DecipherOnly bool
}

type apiPassthrough struct {
	Subject    *asn1Subject
	Extensions *struct {
		KeyUsage         *keyUsageIn
		ExtendedKeyUsage []struct {
			ExtendedKeyUsageType             string
			ExtendedKeyUsageObjectIdentifier string
		}
		SubjectAlternativeNames []generalName
		CustomExtensions        []struct {
			ObjectIdentifier string
			Value            string
			Critical         bool
		}
		CertificatePolicies json.RawMessage
	}
}

type idemKey struct{ ca, token string }

type idemEntry struct {
	at     time.Time
	fp     [32]byte
	done   chan struct{}
	arn    string
	serial string
	err    *apiError
}

func (s *Server) issueCertificate(ctx context.Context, call *Call, body []byte) ([]byte, *apiError) {
	var req issueRequest
	if e := decode(body, &req); e != nil {
		return nil, e
	}
	a, e := s.lookupCA(req.CertificateAuthorityArn)
	if e != nil {
		return nil, e
	}
	switch {
	case len(req.Csr) == 0:
		return nil, errf("ValidationException", "1 validation error detected: Value null at 'csr' failed to satisfy constraint: Member must not be null")
	case len(req.Csr) > 32768:
		return nil, errf("ValidationException", "1 validation error detected: Value at 'csr' failed to satisfy constraint: Member must have length less than or equal to 32768")
	case req.SigningAlgorithm == "":
		return nil, errf("ValidationException", "1 validation error detected: Value null at 'signingAlgorithm' failed to satisfy constraint: Member must not be null")
	case req.Validity == nil || req.Validity.Type == "" || req.Validity.Value == nil:
		return nil, errf("ValidationException", "1 validation error detected: Value null at 'validity' failed to satisfy constraint: Member must not be null")
	case req.IdempotencyToken != nil && (len(*req.IdempotencyToken) < 1 || len(*req.IdempotencyToken) > 36):
		return nil, errf("ValidationException", "1 validation error detected: Value '%s' at 'idempotencyToken' failed to satisfy constraint: Member must have length between 1 and 36", *req.IdempotencyToken)
	}

	now := s.now()
	var entry *idemEntry
	var key idemKey
	if req.IdempotencyToken != nil {
		fp := fingerprint(&req)
		key = idemKey{a.arn, *req.IdempotencyToken}
		s.mu.Lock()
		prev := s.idem[key]
		if prev != nil && now.Sub(prev.at) < IdempotencyWindow {
			s.mu.Unlock()
			select {
			case <-prev.done:
			case <-ctx.Done():
				return nil, errf("RequestTimeout", "client went away")
			}
			if prev.err != nil {
				return nil, prev.err
			}
			s.mu.Lock()
			s.stats.IdempotentReplays++
			s.mu.Unlock()
			call.Replayed = true
			call.ReplayMismatch = prev.fp != fp
			call.CertificateArn = prev.arn
			call.Serial = prev.serial
			return marshal(map[string]string{"CertificateArn": prev.arn}), nil
		}
		entry = &idemEntry{at: now, fp: fp, done: make(chan struct{})}
		s.idem[key] = entry
		s.mu.Unlock()
	}

	rec, apiErr := s.mint(a, &req, now)

	if entry != nil {
		s.mu.Lock()
		if apiErr != nil {
			entry.err = apiErr
			if s.idem[key] == entry {
				delete(s.idem, key)
			}
		} else {
			entry.arn = rec.arn
			if rec.cert != nil {
				entry.serial = ColonHex(rec.cert.SerialNumber)
			}
		}
		s.mu.Unlock()
		close(entry.done)
	}
	if apiErr != nil {
		return nil, apiErr
	}
	call.CertificateArn = rec.arn
	if rec.cert != nil {
		call.Serial = ColonHex(rec.cert.SerialNumber)
	}
	return marshal(map[string]string{"CertificateArn": rec.arn}), nil
}

func fingerprint(req *issueRequest) [32]byte {
	h := sha256.New()
	for _, p := range [][]byte{req.Csr, []byte(req.TemplateArn), []byte(req.SigningAlgorithm), req.ApiPassthrough} {
		fmt.Fprintf(h, "%d:", len(p))
		h.Write(p)
	}
	for _, v := range []*validity{req.Validity, req.ValidityNotBefore} {
		if v != nil && v.Value != nil {
			fmt.Fprintf(h, "%s=%d;", v.Type, *v.Value)
		} else {
			h.Write([]byte("-;"))
		}
	}
	var out [32]byte
	h.Sum(out[:0])
	return out
}

// mint validates the request and signs. The CA's key and certificate are
// immutable, so signing happens outside s.mu and issuance scales with cores.
func (s *Server) mint(a *authority, req *issueRequest, now time.Time) (*certRecord, *apiError) {
	if st := s.effectiveStatus(a); st != StatusActive {
		return nil, errf("InvalidStateException", "The certificate authority %s is in the %s state and cannot issue certificates.", a.arn, st)
	}
	s.mu.Lock()
	usageMode := a.usageMode
	crlURLs := s.crlURLs(a)
	delay := s.issueDelay
	s.mu.Unlock()

	sa, ok := sigAlgs[req.SigningAlgorithm]
	if !ok || sa.ec != a.ec {
		return nil, errf("InvalidArgsException", "The signing algorithm %s is not compatible with the certificate authority's key algorithm %s.", req.SigningAlgorithm, a.keyAlg)
	}
	tmpl, e := parseTemplate(req.TemplateArn, partitionOfARN(a.arn))
	if e != nil {
		return nil, e
	}
	csr, e := parseCSR(req.Csr)
	if e != nil {
		return nil, e
	}
	notBefore, notAfter, e := computeValidity(req.Validity, req.ValidityNotBefore, now, a, usageMode)
	if e != nil {
		return nil, e
	}
	if tmpl.ca {
		if usageMode == UsageModeShortLived {
			return nil, errf("InvalidArgsException", "A certificate authority in %s mode cannot issue CA certificates.", UsageModeShortLived)
		}
		if a.maxPathLen >= 0 && tmpl.pathLen >= a.maxPathLen {
			return nil, errf("InvalidArgsException", "The path length %d of template %s must be less than the issuing CA's path length constraint %d.", tmpl.pathLen, tmpl.name, a.maxPathLen)
		}
	}
	var api *apiPassthrough
	if tmpl.api && len(req.ApiPassthrough) > 0 && string(req.ApiPassthrough) != "null" {
		api = new(apiPassthrough)
		if err := json.Unmarshal(req.ApiPassthrough, api); err != nil {
			return nil, errf("SerializationException", "ApiPassthrough: %v", err)
		}
	}

	serial, err := newSerial()
	if err != nil {
		return nil, errf("InternalFailure", "%v", err)
	}
	arn := a.arn + "/certificate/" + serial.Text(16)

	tpl, e := buildCertificate(tmpl, csr, api)
	if e != nil {
		return nil, e
	}

	// Only a request PCA would accept can fail asynchronously.
	s.mu.Lock()
	var asyncErr string
	if len(s.asyncFails) > 0 {
		asyncErr = s.asyncFails[0]
		s.asyncFails = s.asyncFails[1:]
	}
	s.mu.Unlock()

	rec := &certRecord{
		arn: arn, ca: a, template: tmpl.arn, issuedAt: now, readyAt: now.Add(delay), asyncErr: asyncErr,
	}
	if req.IdempotencyToken != nil {
		rec.token = *req.IdempotencyToken
	}
	if asyncErr == "" {
		tpl.SerialNumber = serial
		tpl.NotBefore, tpl.NotAfter = notBefore, notAfter
		tpl.SignatureAlgorithm = sa.alg
		tpl.CRLDistributionPoints = crlURLs
		der, err := x509.CreateCertificate(rand.Reader, tpl, a.cert, csr.PublicKey, a.signer)
		if err != nil {
			return nil, errf("InvalidArgsException", "The certificate could not be created: %v", err)
		}
		cert, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, errf("InvalidArgsException", "The certificate could not be created: %v", err)
		}
		rec.cert, rec.pem = cert, pemString(der)
	}

	s.mu.Lock()
	s.storeLocked(rec)
	if rec.cert != nil {
		s.issued = append(s.issued, rec)
		s.stats.Issued++
	}
	s.mu.Unlock()
	return rec, nil
}

func partitionOfARN(arn string) string {
	parts := strings.SplitN(arn, ":", 3)
	if len(parts) < 2 {
		return "aws"
	}
	return parts[1]
}

func parseCSR(b []byte) (*x509.CertificateRequest, *apiError) {
	block, _ := pem.Decode(b)
	if block == nil || (block.Type != "CERTIFICATE REQUEST" && block.Type != "NEW CERTIFICATE REQUEST") {
		return nil, errf("MalformedCSRException", "The certificate signing request is not a PEM-encoded CERTIFICATE REQUEST.")
	}
	csr, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		return nil, errf("MalformedCSRException", "The certificate signing request is malformed: %v", err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, errf("MalformedCSRException", "The certificate signing request's signature is invalid: %v", err)
	}
	switch k := csr.PublicKey.(type) {
	case *rsa.PublicKey:
		if n := k.N.BitLen(); n < 2048 || n > 4096 {
			return nil, errf("MalformedCSRException", "RSA key size %d is not supported.", n)
		}
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256(), elliptic.P384(), elliptic.P521():
		default:
			return nil, errf("MalformedCSRException", "The elliptic curve of the CSR's key is not supported.")
		}
	default:
		return nil, errf("MalformedCSRException", "The CSR's public key algorithm %v is not supported.", csr.PublicKeyAlgorithm)
	}
	return csr, nil
}

// computeValidity applies PCA's rules: NotBefore defaults to issuance minus
// 60 minutes; a short-lived CA's limit is measured from the explicit
// ValidityNotBefore, or else from issuance (the backdating does not count).
func computeValidity(v, nb *validity, now time.Time, a *authority, usageMode string) (time.Time, time.Time, *apiError) {
	n := *v.Value
	if n <= 0 {
		return time.Time{}, time.Time{}, errf("ValidationException", "1 validation error detected: Value '%d' at 'validity.value' failed to satisfy constraint: Member must have value greater than or equal to 1", n)
	}
	var notAfter time.Time
	switch v.Type {
	case "DAYS":
		if n > 365*10000 {
			return time.Time{}, time.Time{}, errf("InvalidArgsException", "The validity period is too long.")
		}
		notAfter = now.Add(time.Duration(n) * 24 * time.Hour)
	case "MONTHS":
		if n > 12*10000 {
			return time.Time{}, time.Time{}, errf("InvalidArgsException", "The validity period is too long.")
		}
		notAfter = now.AddDate(0, int(n), 0)
	case "YEARS":
		if n > 10000 {
			return time.Time{}, time.Time{}, errf("InvalidArgsException", "The validity period is too long.")
		}
		notAfter = now.AddDate(int(n), 0, 0)
	case "ABSOLUTE":
		notAfter = time.Unix(n, 0)
	case "END_DATE":
		t, ok := parseEndDate(n)
		if !ok {
			return time.Time{}, time.Time{}, errf("InvalidArgsException", "The END_DATE validity %d is not in YYMMDDHHMMSS or YYYYMMDDHHMMSS format.", n)
		}
		notAfter = t
	default:
		return time.Time{}, time.Time{}, errf("ValidationException", "1 validation error detected: Value '%s' at 'validity.type' failed to satisfy constraint: Member must satisfy enum value set: [END_DATE, ABSOLUTE, DAYS, MONTHS, YEARS]", v.Type)
	}
	notAfter = notAfter.UTC().Truncate(time.Second)

	spanStart := now
	var notBefore time.Time
	if nb != nil {
		if nb.Type != "ABSOLUTE" || nb.Value == nil {
			return time.Time{}, time.Time{}, errf("InvalidArgsException", "ValidityNotBefore must be of type ABSOLUTE.")
		}
		notBefore = time.Unix(*nb.Value, 0).UTC()
		if notBefore.Before(a.cert.NotBefore) {
			return time.Time{}, time.Time{}, errf("InvalidArgsException", "The certificate's notBefore %s precedes the certificate authority's %s.", notBefore.Format(time.RFC3339), a.cert.NotBefore.Format(time.RFC3339))
		}
		spanStart = notBefore
	} else {
		notBefore = now.Add(-60 * time.Minute).UTC().Truncate(time.Second)
		if notBefore.Before(a.cert.NotBefore) {
			notBefore = a.cert.NotBefore
		}
	}
	if !notAfter.After(notBefore) || !notAfter.After(now) {
		return time.Time{}, time.Time{}, errf("InvalidArgsException", "The certificate's notAfter %s must be in the future and after its notBefore %s.", notAfter.Format(time.RFC3339), notBefore.Format(time.RFC3339))
	}
	if notAfter.After(a.cert.NotAfter) {
		return time.Time{}, time.Time{}, errf("InvalidArgsException", "The certificate's validity (notAfter %s) exceeds the certificate authority's (notAfter %s).", notAfter.Format(time.RFC3339), a.cert.NotAfter.Format(time.RFC3339))
	}
	if usageMode == UsageModeShortLived && notAfter.Sub(spanStart) > ShortLivedMaxValidity {
		return time.Time{}, time.Time{}, errf("InvalidArgsException", "A certificate authority in %s mode issues certificates valid for at most 7 days; requested %s.", UsageModeShortLived, notAfter.Sub(spanStart))
	}
	return notBefore, notAfter, nil
}

func parseEndDate(n int64) (time.Time, bool) {
	s := strconv.FormatInt(n, 10)
	switch len(s) {
	case 12:
		// UTCTime: PCA pivots at 50 (Go's own two-digit rule pivots at 69).
		if yy, _ := strconv.Atoi(s[:2]); yy >= 50 {
			s = "19" + s
		} else {
			s = "20" + s
		}
	case 14:
	default:
		return time.Time{}, false
	}
	t, err := time.Parse("20060102150405", s)
	return t, err == nil
}

type template struct {
	name     string
	arn      string
	ca       bool
	pathLen  int
	blank    bool
	api, csr bool
	ku       x509.KeyUsage
	eku      []x509.ExtKeyUsage
}

var eeFamilies = map[string]struct {
	ku  x509.KeyUsage
	eku []x509.ExtKeyUsage
}{
	"EndEntityCertificate":           {x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}},
	"EndEntityClientAuthCertificate": {x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}},
	"EndEntityServerAuthCertificate": {x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}},
	"CodeSigningCertificate":         {x509.KeyUsageDigitalSignature, []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning}},
	"OCSPSigningCertificate":         {x509.KeyUsageDigitalSignature, []x509.ExtKeyUsage{x509.ExtKeyUsageOCSPSigning}},
}

func parseTemplate(arn, partition string) (*template, *apiError) {
	if arn == "" {
		arn = "arn:" + partition + ":acm-pca:::template/EndEntityCertificate/V1"
	}
	m := templateARNPattern.FindStringSubmatch(arn)
	if m == nil {
		return nil, errf("InvalidArnException", "The template ARN %s is not valid.", arn)
	}
	if m[1] != partition {
		return nil, errf("InvalidArgsException", "The template %s is not in the certificate authority's partition %s.", arn, partition)
	}
	unknown := errf("InvalidArgsException", "The template %s does not exist.", arn)
	if m[3] != "1" {
		return nil, unknown
	}
	t := &template{name: m[2], arn: arn}
	base, passthrough := t.name, false
	for _, suf := range []string{"_APICSRPassthrough", "_APIPassthrough", "_CSRPassthrough"} {
		if b, ok := strings.CutSuffix(base, suf); ok {
			base, passthrough = b, true
			t.api = suf != "_CSRPassthrough"
			t.csr = suf != "_APIPassthrough"
			break
		}
	}
	pathLen := func(prefix string) bool {
		d, ok := strings.CutPrefix(base, prefix)
		if !ok || len(d) != 1 || d[0] < '0' || d[0] > '3' {
			return false
		}
		t.ca, t.pathLen = true, int(d[0]-'0')
		return true
	}
	switch {
	case eeFamilies[base].ku != 0:
		t.ku, t.eku = eeFamilies[base].ku, eeFamilies[base].eku
	case base == "BlankEndEntityCertificate" && passthrough:
		t.blank = true
	case pathLen("SubordinateCACertificate_PathLen"):
		t.ku = x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign | x509.KeyUsageCRLSign
	case passthrough && pathLen("BlankSubordinateCACertificate_PathLen"):
		t.blank = true
	default:
		return nil, unknown
	}
	return t, nil
}

var (
	oidKU     = asn1.ObjectIdentifier{2, 5, 29, 15}
	oidEKU    = asn1.ObjectIdentifier{2, 5, 29, 37}
	oidSAN    = asn1.ObjectIdentifier{2, 5, 29, 17}
	oidBC     = asn1.ObjectIdentifier{2, 5, 29, 19}
	oidSKI    = asn1.ObjectIdentifier{2, 5, 29, 14}
	oidAKI    = asn1.ObjectIdentifier{2, 5, 29, 35}
	oidCRLDP  = asn1.ObjectIdentifier{2, 5, 29, 31}
	oidAIA    = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 1, 1}
	emptyName = []byte{0x30, 0x00}
)

var ekuTypes = map[string]x509.ExtKeyUsage{
	"SERVER_AUTH":      x509.ExtKeyUsageServerAuth,
	"CLIENT_AUTH":      x509.ExtKeyUsageClientAuth,
	"CODE_SIGNING":     x509.ExtKeyUsageCodeSigning,
	"EMAIL_PROTECTION": x509.ExtKeyUsageEmailProtection,
	"TIME_STAMPING":    x509.ExtKeyUsageTimeStamping,
	"OCSP_SIGNING":     x509.ExtKeyUsageOCSPSigning,
}

var ekuTypeOIDs = map[string]asn1.ObjectIdentifier{
	"SMART_CARD_LOGIN":         {1, 3, 6, 1, 4, 1, 311, 20, 2, 2},
	"DOCUMENT_SIGNING":         {1, 3, 6, 1, 4, 1, 311, 10, 3, 12},
	"CERTIFICATE_TRANSPARENCY": {1, 3, 6, 1, 4, 1, 11129, 2, 4, 4},
}

// buildCertificate applies PCA's order of operations: the template's
// extensions win over ApiPassthrough, which wins over the CSR. Only Blank
// templates leave key usage and EKU to the caller.
func buildCertificate(t *template, csr *x509.CertificateRequest, api *apiPassthrough) (*x509.Certificate, *apiError) {
	ski, err := subjectKeyID(csr.PublicKey)
	if err != nil {
		return nil, errf("MalformedCSRException", "The CSR's public key cannot be encoded: %v", err)
	}
	tpl := &x509.Certificate{
		RawSubject:            csr.RawSubject,
		BasicConstraintsValid: true,
		IsCA:                  t.ca,
		MaxPathLen:            -1,
		SubjectKeyId:          ski,
	}
	if t.ca {
		tpl.MaxPathLen, tpl.MaxPathLenZero = t.pathLen, t.pathLen == 0
	}
	if api != nil && api.Subject != nil {
		der, e := api.Subject.der()
		if e != nil {
			return nil, e
		}
		tpl.RawSubject = der
	}
	if len(tpl.RawSubject) == 0 {
		tpl.RawSubject = emptyName
	}

	taken := map[string]bool{}
	for _, o := range []asn1.ObjectIdentifier{oidBC, oidSKI, oidAKI, oidCRLDP, oidAIA} {
		taken[o.String()] = true
	}
	var apiExt = func() bool { return api != nil && api.Extensions != nil }

	if !t.blank {
		tpl.KeyUsage, tpl.ExtKeyUsage = t.ku, t.eku
		taken[oidKU.String()], taken[oidEKU.String()] = true, true
	} else if apiExt() {
		if k := api.Extensions.KeyUsage; k != nil {
			tpl.KeyUsage = k.bits()
			taken[oidKU.String()] = true
		}
		if len(api.Extensions.ExtendedKeyUsage) > 0 {
			for _, e := range api.Extensions.ExtendedKeyUsage {
				switch {
				case (e.ExtendedKeyUsageType == "") == (e.ExtendedKeyUsageObjectIdentifier == ""):
					return nil, errf("InvalidArgsException", "Each ExtendedKeyUsage needs exactly one of ExtendedKeyUsageType and ExtendedKeyUsageObjectIdentifier.")
				case e.ExtendedKeyUsageObjectIdentifier != "":
					oid, ok := parseOID(e.ExtendedKeyUsageObjectIdentifier)
					if !ok {
						return nil, errf("InvalidArgsException", "Invalid object identifier %q.", e.ExtendedKeyUsageObjectIdentifier)
					}
					tpl.UnknownExtKeyUsage = append(tpl.UnknownExtKeyUsage, oid)
				case ekuTypes[e.ExtendedKeyUsageType] != x509.ExtKeyUsageAny:
					tpl.ExtKeyUsage = append(tpl.ExtKeyUsage, ekuTypes[e.ExtendedKeyUsageType])
				case ekuTypeOIDs[e.ExtendedKeyUsageType] != nil:
					tpl.UnknownExtKeyUsage = append(tpl.UnknownExtKeyUsage, ekuTypeOIDs[e.ExtendedKeyUsageType])
				default:
					return nil, errf("ValidationException", "1 validation error detected: Value '%s' at 'apiPassthrough.extensions.extendedKeyUsage.member.extendedKeyUsageType' failed to satisfy constraint: Member must satisfy enum value set", e.ExtendedKeyUsageType)
				}
			}
			taken[oidEKU.String()] = true
		}
	}

	subjectEmpty := string(tpl.RawSubject) == string(emptyName)
	hasSAN := false
	switch {
	case apiExt() && len(api.Extensions.SubjectAlternativeNames) > 0:
		ext, e := buildSAN(api.Extensions.SubjectAlternativeNames, subjectEmpty)
		if e != nil {
			return nil, e
		}
		tpl.ExtraExtensions = append(tpl.ExtraExtensions, ext)
		hasSAN = true
	case !t.ca || t.csr || t.blank:
		for _, ext := range csr.Extensions {
			if ext.Id.Equal(oidSAN) {
				// RFC 5280 4.2.1.6: the SAN is the identity when the subject is empty.
				ext.Critical = ext.Critical || subjectEmpty
				tpl.ExtraExtensions = append(tpl.ExtraExtensions, ext)
				hasSAN = true
			}
		}
	}
	taken[oidSAN.String()] = true
	if subjectEmpty && !hasSAN {
		return nil, errf("MalformedCSRException", "The certificate needs a subject or a subject alternative name.")
	}

	if apiExt() {
		for _, c := range api.Extensions.CustomExtensions {
			oid, ok := parseOID(c.ObjectIdentifier)
			if !ok {
				return nil, errf("InvalidArgsException", "Invalid object identifier %q.", c.ObjectIdentifier)
			}
			val, err := base64.StdEncoding.DecodeString(c.Value)
			if err != nil {
				return nil, errf("InvalidArgsException", "The value of custom extension %s is not base64: %v", c.ObjectIdentifier, err)
			}
			if taken[oid.String()] {
				continue
			}
			taken[oid.String()] = true
			tpl.ExtraExtensions = append(tpl.ExtraExtensions, pkix.Extension{Id: oid, Critical: c.Critical, Value: val})
		}
	}
	if t.csr {
		for _, ext := range csr.Extensions {
			if taken[ext.Id.String()] {
				continue
			}
			taken[ext.Id.String()] = true
			tpl.ExtraExtensions = append(tpl.ExtraExtensions, ext)
		}
	}
	return tpl, nil
}

func (k *keyUsageIn) bits() x509.KeyUsage {
	var u x509.KeyUsage
	for _, f := range []struct {
		set bool
		bit x509.KeyUsage
	}{
		{k.DigitalSignature, x509.KeyUsageDigitalSignature},
		{k.NonRepudiation, x509.KeyUsageContentCommitment},
		{k.KeyEncipherment, x509.KeyUsageKeyEncipherment},
		{k.DataEncipherment, x509.KeyUsageDataEncipherment},
		{k.KeyAgreement, x509.KeyUsageKeyAgreement},
		{k.KeyCertSign, x509.KeyUsageCertSign},
		{k.CRLSign, x509.KeyUsageCRLSign},
		{k.EncipherOnly, x509.KeyUsageEncipherOnly},
		{k.DecipherOnly, x509.KeyUsageDecipherOnly},
	} {
		if f.set {
			u |= f.bit
		}
	}
	return u
}

func parseOID(s string) (asn1.ObjectIdentifier, bool) {
	parts := strings.Split(s, ".")
	if len(parts) < 2 {
		return nil, false
	}
	oid := make(asn1.ObjectIdentifier, len(parts))
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 {
			return nil, false
		}
		oid[i] = n
	}
	return oid, true
}

var (
	oidTitle               = asn1.ObjectIdentifier{2, 5, 4, 12}
	oidSurname             = asn1.ObjectIdentifier{2, 5, 4, 4}
	oidGivenName           = asn1.ObjectIdentifier{2, 5, 4, 42}
	oidInitials            = asn1.ObjectIdentifier{2, 5, 4, 43}
	oidGenerationQualifier = asn1.ObjectIdentifier{2, 5, 4, 44}
	oidDNQualifier         = asn1.ObjectIdentifier{2, 5, 4, 46}
	oidPseudonym           = asn1.ObjectIdentifier{2, 5, 4, 65}
)

func (sub *asn1Subject) der() ([]byte, *apiError) {
	var n pkix.Name
	one := func(v string) []string {
		if v == "" {
			return nil
		}
		return []string{v}
	}
	n.Country = one(sub.Country)
	n.Organization = one(sub.Organization)
	n.OrganizationalUnit = one(sub.OrganizationalUnit)
	n.Province = one(sub.State)
	n.Locality = one(sub.Locality)
	n.CommonName = sub.CommonName
	n.SerialNumber = sub.SerialNumber
	for _, x := range []struct {
		oid asn1.ObjectIdentifier
		v   string
	}{
		{oidDNQualifier, sub.DistinguishedNameQualifier},
		{oidTitle, sub.Title},
		{oidSurname, sub.Surname},
		{oidGivenName, sub.GivenName},
		{oidInitials, sub.Initials},
		{oidPseudonym, sub.Pseudonym},
		{oidGenerationQualifier, sub.GenerationQualifier},
	} {
		if x.v != "" {
			n.ExtraNames = append(n.ExtraNames, pkix.AttributeTypeAndValue{Type: x.oid, Value: x.v})
		}
	}
	for _, ca := range sub.CustomAttributes {
		oid, ok := parseOID(ca.ObjectIdentifier)
		if !ok {
			return nil, errf("InvalidArgsException", "Invalid object identifier %q in subject.", ca.ObjectIdentifier)
		}
		n.ExtraNames = append(n.ExtraNames, pkix.AttributeTypeAndValue{Type: oid, Value: ca.Value})
	}
	der, err := asn1.Marshal(n.ToRDNSequence())
	if err != nil {
		return nil, errf("InvalidArgsException", "The subject cannot be encoded: %v", err)
	}
	return der, nil
}

// buildSAN encodes the extension itself so that every GeneralName kind
// keeps its order and form, as PCA copies them.
func buildSAN(names []generalName, critical bool) (pkix.Extension, *apiError) {
	raws := make([]asn1.RawValue, 0, len(names))
	for i, gn := range names {
		set := 0
		for _, present := range []bool{gn.DnsName != nil, gn.IpAddress != nil, gn.UniformResourceIdentifier != nil,
			gn.Rfc822Name != nil, gn.RegisteredId != nil, gn.DirectoryName != nil, len(gn.OtherName) > 0, len(gn.EdiPartyName) > 0} {
			if present {
				set++
			}
		}
		if set != 1 {
			return pkix.Extension{}, errf("InvalidArgsException", "SubjectAlternativeNames[%d] must have exactly one name type set, has %d.", i, set)
		}
		ascii := func(what, v string) *apiError {
			if v == "" {
				return errf("InvalidArgsException", "SubjectAlternativeNames[%d]: empty %s.", i, what)
			}
			for _, r := range v {
				if r > unicode.MaxASCII {
					return errf("InvalidArgsException", "SubjectAlternativeNames[%d]: %s %q is not ASCII.", i, what, v)
				}
			}
			return nil
		}
		switch {
		case gn.DnsName != nil:
			if e := ascii("DnsName", *gn.DnsName); e != nil {
				return pkix.Extension{}, e
			}
			raws = append(raws, asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 2, Bytes: []byte(*gn.DnsName)})
		case gn.Rfc822Name != nil:
			if e := ascii("Rfc822Name", *gn.Rfc822Name); e != nil {
				return pkix.Extension{}, e
			}
			raws = append(raws, asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 1, Bytes: []byte(*gn.Rfc822Name)})
		case gn.UniformResourceIdentifier != nil:
			v := *gn.UniformResourceIdentifier
			if e := ascii("UniformResourceIdentifier", v); e != nil {
				return pkix.Extension{}, e
			}
			if u, err := url.Parse(v); err != nil || u.Scheme == "" {
				return pkix.Extension{}, errf("InvalidArgsException", "SubjectAlternativeNames[%d]: %q is not an absolute URI.", i, v)
			}
			raws = append(raws, asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 6, Bytes: []byte(v)})
		case gn.IpAddress != nil:
			ip := net.ParseIP(*gn.IpAddress)
			if ip == nil {
				return pkix.Extension{}, errf("InvalidArgsException", "SubjectAlternativeNames[%d]: %q is not an IP address.", i, *gn.IpAddress)
			}
			if v4 := ip.To4(); v4 != nil {
				ip = v4
			}
			raws = append(raws, asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 7, Bytes: ip})
		case gn.RegisteredId != nil:
			oid, ok := parseOID(*gn.RegisteredId)
			if !ok {
				return pkix.Extension{}, errf("InvalidArgsException", "SubjectAlternativeNames[%d]: invalid object identifier %q.", i, *gn.RegisteredId)
			}
			der, _ := asn1.Marshal(oid)
			var rv asn1.RawValue
			_, _ = asn1.Unmarshal(der, &rv)
			raws = append(raws, asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 8, Bytes: rv.Bytes})
		case gn.DirectoryName != nil:
			der, e := gn.DirectoryName.der()
			if e != nil {
				return pkix.Extension{}, e
			}
			raws = append(raws, asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 4, IsCompound: true, Bytes: der})
		default:
			return pkix.Extension{}, errf("InvalidArgsException", "SubjectAlternativeNames[%d]: OtherName and EdiPartyName are not supported by pcatest.", i)
		}
	}
	der, err := asn1.Marshal(raws)
	if err != nil {
		return pkix.Extension{}, errf("InvalidArgsException", "SubjectAlternativeNames cannot be encoded: %v", err)
	}
	return pkix.Extension{Id: oidSAN, Critical: critical, Value: der}, nil
}
