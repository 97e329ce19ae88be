package pcatest

import (
	"context"
	"math/big"
	"strings"
	"time"
)

// RevocationReasons are the values RevokeCertificate accepts.
var RevocationReasons = []string{
	"UNSPECIFIED", "KEY_COMPROMISE", "CERTIFICATE_AUTHORITY_COMPROMISE", "AFFILIATION_CHANGED",
	"SUPERSEDED", "CESSATION_OF_OPERATION", "PRIVILEGE_WITHDRAWN", "A_A_COMPROMISE",
}

// unusable reports states in which a CA has no usable certificate.
func unusable(status string) bool {
	switch status {
	case StatusCreating, StatusPendingCertificate, StatusFailed, StatusDeleted:
		return true
	}
	return false
}

func (s *Server) getCertificate(_ context.Context, _ *Call, body []byte) ([]byte, *apiError) {
	var req struct{ CertificateAuthorityArn, CertificateArn string }
	if e := decode(body, &req); e != nil {
		return nil, e
	}
	a, e := s.lookupCA(req.CertificateAuthorityArn)
	if e != nil {
		return nil, e
	}
	if req.CertificateArn == "" {
		return nil, errf("ValidationException", "1 validation error detected: Value null at 'certificateArn' failed to satisfy constraint: Member must not be null")
	}
	m := certARNPattern.FindStringSubmatch(req.CertificateArn)
	if m == nil {
		return nil, errf("InvalidArnException", "The ARN %s is not valid.", req.CertificateArn)
	}
	if st := s.effectiveStatus(a); unusable(st) {
		return nil, errf("InvalidStateException", "The certificate authority %s is in the %s state.", a.arn, st)
	}
	now := s.now()
	s.mu.Lock()
	rec := s.certs[req.CertificateArn]
	rewrite := s.rewrite
	s.mu.Unlock()
	if rec == nil || m[1] != a.arn {
		return nil, errf("ResourceNotFoundException", "Could not find certificate %s for certificate authority %s.", req.CertificateArn, a.arn)
	}
	if now.Before(rec.readyAt) {
		return nil, errf("RequestInProgressException", "The request to issue certificate %s is still in progress.", rec.arn)
	}
	if rec.asyncErr != "" {
		return nil, errf("RequestFailedException", "%s", rec.asyncErr)
	}
	cert := rec.pem
	chain := rec.ca.pem
	if rec.ca.chainPEM != "" {
		chain += "\n" + rec.ca.chainPEM
	}
	if rewrite != nil {
		cert, chain = rewrite(cert, chain)
	}
	out := map[string]string{"Certificate": cert}
	if chain != "" {
		out["CertificateChain"] = chain
	}
	return marshal(out), nil
}

func (s *Server) getCACertificate(_ context.Context, _ *Call, body []byte) ([]byte, *apiError) {
	var req struct{ CertificateAuthorityArn string }
	if e := decode(body, &req); e != nil {
		return nil, e
	}
	a, e := s.lookupCA(req.CertificateAuthorityArn)
	if e != nil {
		return nil, e
	}
	if st := s.effectiveStatus(a); unusable(st) {
		return nil, errf("InvalidStateException", "The certificate authority %s is in the %s state.", a.arn, st)
	}
	out := map[string]string{"Certificate": a.pem}
	if a.chainPEM != "" {
		out["CertificateChain"] = a.chainPEM
	}
	return marshal(out), nil
}

type crlJSON struct {
	Enabled          bool
	S3BucketName     string `json:",omitempty"`
	CustomCname      string `json:",omitempty"`
	ExpirationInDays int    `json:",omitempty"`
}

type describeJSON struct {
	Arn                               string
	OwnerAccount                      string
	CreatedAt                         float64
	LastStateChangeAt                 float64
	Type                              string
	Serial                            string
	Status                            string
	NotBefore                         int64
	NotAfter                          int64
	UsageMode                         string
	KeyStorageSecurityStandard        string
	CertificateAuthorityConfiguration struct {
		KeyAlgorithm     string
		SigningAlgorithm string
		Subject          map[string]string
	}
	RevocationConfiguration struct {
		CrlConfiguration  crlJSON
		OcspConfiguration struct{ Enabled bool }
	}
}

func epoch(t time.Time) float64 { return float64(t.UnixMilli()) / 1000 }

func (s *Server) describeCA(_ context.Context, _ *Call, body []byte) ([]byte, *apiError) {
	var req struct{ CertificateAuthorityArn string }
	if e := decode(body, &req); e != nil {
		return nil, e
	}
	a, e := s.lookupCA(req.CertificateAuthorityArn)
	if e != nil {
		return nil, e
	}
	status := s.effectiveStatus(a)
	s.mu.Lock()
	d := describeJSON{
		Arn:                        a.arn,
		OwnerAccount:               s.account,
		CreatedAt:                  epoch(a.createdAt),
		LastStateChangeAt:          epoch(a.lastStateChange),
		Type:                       a.typ,
		Serial:                     ColonHex(a.cert.SerialNumber),
		Status:                     status,
		NotBefore:                  a.cert.NotBefore.Unix(),
		NotAfter:                   a.cert.NotAfter.Unix(),
		UsageMode:                  a.usageMode,
		KeyStorageSecurityStandard: "FIPS_140_2_LEVEL_3_OR_HIGHER",
	}
	d.RevocationConfiguration.CrlConfiguration = crlJSON(a.crl)
	s.mu.Unlock()
	d.CertificateAuthorityConfiguration.KeyAlgorithm = a.keyAlg
	d.CertificateAuthorityConfiguration.SigningAlgorithm = a.sigAlg
	subj := map[string]string{"CommonName": a.cert.Subject.CommonName}
	if o := a.cert.Subject.Organization; len(o) > 0 {
		subj["Organization"] = o[0]
	}
	if ou := a.cert.Subject.OrganizationalUnit; len(ou) > 0 {
		subj["OrganizationalUnit"] = ou[0]
	}
	d.CertificateAuthorityConfiguration.Subject = subj
	return marshal(map[string]any{"CertificateAuthority": d}), nil
}

func (s *Server) revokeCertificate(_ context.Context, _ *Call, body []byte) ([]byte, *apiError) {
	var req struct{ CertificateAuthorityArn, CertificateSerial, RevocationReason string }
	if e := decode(body, &req); e != nil {
		return nil, e
	}
	a, e := s.lookupCA(req.CertificateAuthorityArn)
	if e != nil {
		return nil, e
	}
	switch {
	case req.CertificateSerial == "":
		return nil, errf("ValidationException", "1 validation error detected: Value null at 'certificateSerial' failed to satisfy constraint: Member must not be null")
	case len(req.CertificateSerial) > 128:
		return nil, errf("ValidationException", "1 validation error detected: Value at 'certificateSerial' failed to satisfy constraint: Member must have length less than or equal to 128")
	case req.RevocationReason == "":
		return nil, errf("ValidationException", "1 validation error detected: Value null at 'revocationReason' failed to satisfy constraint: Member must not be null")
	}
	valid := false
	for _, r := range RevocationReasons {
		valid = valid || r == req.RevocationReason
	}
	if !valid {
		return nil, errf("InvalidRequestException", "The revocation reason %q is not valid; use one of %s.", req.RevocationReason, strings.Join(RevocationReasons, ", "))
	}
	serial, ok := parseSerial(req.CertificateSerial)
	if !ok {
		return nil, errf("InvalidRequestException", "The certificate serial %q is not hexadecimal.", req.CertificateSerial)
	}
	switch st := s.effectiveStatus(a); st {
	case StatusActive, StatusDisabled, StatusExpired:
	default:
		return nil, errf("InvalidStateException", "The certificate authority %s is in the %s state.", a.arn, st)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	rec := s.bySerial[a.arn][serial.Text(16)]
	if rec == nil {
		return nil, errf("ResourceNotFoundException", "Could not find certificate with serial %s issued by %s.", req.CertificateSerial, a.arn)
	}
	if rec.selfSigned {
		return nil, errf("InvalidRequestException", "A root certificate authority cannot revoke its own certificate.")
	}
	if rec.revoked {
		return nil, errf("RequestAlreadyProcessedException", "The certificate with serial %s has already been revoked.", req.CertificateSerial)
	}
	rec.revoked = true
	s.revoked = append(s.revoked, Revocation{
		CAArn: a.arn, Role: a.role, Serial: rec.cert.SerialNumber, RawSerial: req.CertificateSerial,
		Reason: req.RevocationReason, Time: s.now(), CertificateArn: rec.arn, Cert: rec.cert,
	})
	s.stats.Revoked++
	return nil, nil
}

// parseSerial accepts colon-separated byte pairs in any case, or plain hex.
func parseSerial(raw string) (*big.Int, bool) {
	hex := raw
	if strings.Contains(raw, ":") {
		parts := strings.Split(raw, ":")
		for _, p := range parts {
			if len(p) == 0 || len(p) > 2 {
				return nil, false
			}
		}
		hex = strings.Join(parts, "")
	}
	if hex == "" || strings.HasPrefix(hex, "-") || strings.HasPrefix(hex, "+") {
		return nil, false
	}
	n, ok := new(big.Int).SetString(hex, 16)
	return n, ok
}
