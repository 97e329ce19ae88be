package validation

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"strings"

	"github.com/certgate/certgate/internal/apierror"
)

// MaxCSRBytes bounds the PEM text of a CSR. An RSA-8192 CSR with a hundred
// long SANs is well under it; anything larger is not a CSR we would sign.
const MaxCSRBytes = 32 << 10

// weakCSRSignature lists signature algorithms x509 still verifies on CSRs but
// that prove nothing any more (MD5, SHA-1 collisions); Boulder refuses them.
var weakCSRSignature = map[x509.SignatureAlgorithm]bool{
	x509.MD2WithRSA:    true,
	x509.MD5WithRSA:    true,
	x509.SHA1WithRSA:   true,
	x509.DSAWithSHA1:   true,
	x509.ECDSAWithSHA1: true,
}

// ParseCSR decodes exactly one PEM "CERTIFICATE REQUEST" (or the legacy "NEW
// CERTIFICATE REQUEST") block and checks its self-signature. Only whitespace
// may surround the block: text before it (as openssl req -text prints) is
// refused too, so that what we verify is all that was sent. The key itself
// is not judged here; that is CheckKey's job, so the caller can name the
// right field. Every error names the field "csr".
func ParseCSR(pemText string) (*x509.CertificateRequest, error) {
	if len(pemText) > MaxCSRBytes {
		return nil, apierror.Field("csr", "is %d bytes; at most %d are accepted", len(pemText), MaxCSRBytes)
	}
	text := strings.Trim(pemText, " \t\r\n")
	switch {
	case text == "":
		return nil, apierror.Field("csr", "is empty")
	case !strings.HasPrefix(text, "-----BEGIN "):
		return nil, apierror.Field("csr", "must be PEM text starting with -----BEGIN CERTIFICATE REQUEST-----; DER, bare base64 and leading text are not accepted")
	}
	// pem.Decode silently skips a malformed block and returns the next one,
	// so counting the armour lines is the reliable way to see "exactly one".
	if n := strings.Count(text, "-----BEGIN"); n > 1 {
		return nil, apierror.Field("csr", "contains %d PEM blocks; send exactly one CERTIFICATE REQUEST", n)
	}
	block, rest := pem.Decode([]byte(text))
	if block == nil {
		return nil, apierror.Field("csr", "is not a valid PEM block (bad base64, or no matching END line)")
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return nil, apierror.Field("csr", "has data after the PEM block")
	}
	if block.Type != "CERTIFICATE REQUEST" && block.Type != "NEW CERTIFICATE REQUEST" {
		return nil, apierror.Field("csr", "is a PEM %s block; expected CERTIFICATE REQUEST", show(block.Type))
	}
	if len(block.Headers) != 0 {
		return nil, apierror.Field("csr", "has PEM headers, which a CSR never needs (an encrypted block?)")
	}
	csr, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		return nil, apierror.Field("csr", "cannot be parsed as a PKCS#10 certificate request").WithCause(err)
	}
	if csr.PublicKey == nil {
		return nil, apierror.Field("csr", "uses an unsupported public key algorithm; use ECDSA P-256 or P-384, or RSA with at least 2048 bits")
	}
	if weakCSRSignature[csr.SignatureAlgorithm] {
		return nil, apierror.Field("csr", "is signed with %s, which is too weak; sign it with SHA-256 or better", csr.SignatureAlgorithm)
	}
	if err := csr.CheckSignature(); err != nil {
		// crypto refuses to verify with some keys CheckKey would refuse
		// anyway (tiny RSA); that reason is more useful than "bad signature".
		if kerr := CheckKey("csr", csr.PublicKey); kerr != nil {
			return nil, apierror.As(kerr).WithCause(err)
		}
		if errors.Is(err, x509.ErrUnsupportedAlgorithm) {
			return nil, apierror.Field("csr", "uses an unsupported signature algorithm (%s)", csr.SignatureAlgorithm).WithCause(err)
		}
		return nil, apierror.Field("csr", "has a signature that does not verify: it is corrupt or was not signed by its own key").WithCause(err)
	}
	return csr, nil
}
