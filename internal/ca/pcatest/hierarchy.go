package pcatest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"fmt"
	"math/big"
	"strings"
	"sync"
	"time"
)

// CA roles, the same four names certgate uses for its PCA configuration.
const (
	RoleRoot     = "root"
	RoleClientCA = "client-ca"
	RoleServerCA = "server-ca"
	RoleIstioCA  = "istio-ca"
)

// Roles lists the CA roles in hierarchy order (the root first).
var Roles = []string{RoleRoot, RoleClientCA, RoleServerCA, RoleIstioCA}

// Key algorithms and usage modes as PCA spells them.
const (
	KeyAlgorithmRSA2048 = "RSA_2048"
	KeyAlgorithmECP256  = "EC_prime256v1"
	KeyAlgorithmECP384  = "EC_secp384r1"

	UsageModeGeneralPurpose = "GENERAL_PURPOSE"
	UsageModeShortLived     = "SHORT_LIVED_CERTIFICATE"

	StatusActive             = "ACTIVE"
	StatusDisabled           = "DISABLED"
	StatusExpired            = "EXPIRED"
	StatusDeleted            = "DELETED"
	StatusCreating           = "CREATING"
	StatusPendingCertificate = "PENDING_CERTIFICATE"
	StatusFailed             = "FAILED"
)

type roleSpec struct {
	role       string
	keyAlg     string
	sigAlg     string // PCA name of the CA's own signing algorithm
	maxPathLen int    // -1: unconstrained
}

// Like PCA's RootCACertificate/V1 the root has no path length constraint;
// the subordinates carry pathlen 0 (SubordinateCACertificate_PathLen0), so
// only the root can issue CA certificates — certgate's Istio intermediates
// come from the root.
var roleSpecs = map[string]roleSpec{
	RoleRoot:     {RoleRoot, KeyAlgorithmRSA2048, "SHA256WITHRSA", -1},
	RoleClientCA: {RoleClientCA, KeyAlgorithmECP256, "SHA256WITHECDSA", 0},
	RoleServerCA: {RoleServerCA, KeyAlgorithmRSA2048, "SHA256WITHRSA", 0},
	RoleIstioCA:  {RoleIstioCA, KeyAlgorithmECP384, "SHA384WITHECDSA", 0},
}

// CRLConfig mirrors PCA's CrlConfiguration. When Enabled, issued
// certificates carry a CRL distribution point the way PCA writes it.
type CRLConfig struct {
	Enabled          bool
	S3BucketName     string
	CustomCname      string
	ExpirationInDays int
}

// CAConfig adjusts one CA of the hierarchy. Zero fields keep the defaults:
// valid from a day ago for 10 years (root) or 5 years (subordinates),
// ACTIVE, GENERAL_PURPOSE, CRL enabled.
type CAConfig struct {
	NotBefore time.Time
	NotAfter  time.Time
	Status    string
	UsageMode string
	CRL       *CRLConfig
	// MaxPathLen overrides the CA certificate's path length constraint
	// (-1: none). Defaults: none for the root, 0 for the subordinates.
	MaxPathLen *int
}

type authority struct {
	role       string
	id         string
	arn        string
	typ        string
	keyAlg     string
	sigAlg     string
	ec         bool
	maxPathLen int
	signer     crypto.Signer
	cert       *x509.Certificate
	pem        string
	chainPEM   string // issuers above this CA, nearest first; empty for the root
	parent     *authority
	createdAt  time.Time

	// Guarded by Server.mu.
	status          string
	usageMode       string
	crl             CRLConfig
	lastStateChange time.Time
}

// The fixed keys are parsed once per process and shared by every Server;
// crypto.Signer implementations of RSA and ECDSA keys are safe for
// concurrent use.
var parsedFixedKeys = sync.OnceValues(func() (map[string]crypto.Signer, error) {
	out := make(map[string]crypto.Signer, len(Roles))
	for _, role := range Roles {
		k, err := fixedKey(role)
		if err != nil {
			return nil, err
		}
		out[role] = k
	}
	return out, nil
})

func generateKey(alg string) (crypto.Signer, error) {
	switch alg {
	case KeyAlgorithmRSA2048:
		return rsa.GenerateKey(rand.Reader, 2048)
	case KeyAlgorithmECP256:
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case KeyAlgorithmECP384:
		return ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	}
	return nil, fmt.Errorf("pcatest: unsupported key algorithm %q", alg)
}

func (s *Server) buildHierarchy(fresh bool, cfgs map[string]CAConfig) error {
	keys, err := parsedFixedKeys()
	if err != nil {
		return err
	}
	if fresh {
		keys = make(map[string]crypto.Signer, len(Roles))
		for _, role := range Roles {
			if keys[role], err = generateKey(roleSpecs[role].keyAlg); err != nil {
				return err
			}
		}
	}

	now := s.now()
	s.cas = make(map[string]*authority, len(Roles))
	s.byARN = make(map[string]*authority, len(Roles))
	for _, role := range Roles {
		spec := roleSpecs[role]
		cfg := cfgs[role]
		a := &authority{
			role:       role,
			id:         newUUID(),
			keyAlg:     spec.keyAlg,
			sigAlg:     spec.sigAlg,
			ec:         spec.keyAlg != KeyAlgorithmRSA2048,
			maxPathLen: spec.maxPathLen,
			signer:     keys[role],
			createdAt:  now,
			status:     StatusActive,
			usageMode:  UsageModeGeneralPurpose,
			crl: CRLConfig{
				Enabled:          true,
				S3BucketName:     "pcatest-crl-" + s.instance,
				ExpirationInDays: 7,
			},
			lastStateChange: now,
		}
		a.arn = fmt.Sprintf("arn:%s:acm-pca:%s:%s:certificate-authority/%s", s.partition, s.region, s.account, a.id)
		if role == RoleRoot {
			a.typ = "ROOT"
		} else {
			a.typ = "SUBORDINATE"
			a.parent = s.cas[RoleRoot]
		}
		if cfg.Status != "" {
			a.status = cfg.Status
		}
		if cfg.UsageMode != "" {
			a.usageMode = cfg.UsageMode
		}
		if cfg.CRL != nil {
			a.crl = *cfg.CRL
		}
		if cfg.MaxPathLen != nil {
			a.maxPathLen = *cfg.MaxPathLen
		}
		if err := s.certifyCA(a, cfg, now); err != nil {
			return fmt.Errorf("pcatest: create %s: %w", role, err)
		}
		s.cas[role] = a
		s.byARN[a.arn] = a
	}
	return nil
}

func (s *Server) certifyCA(a *authority, cfg CAConfig, now time.Time) error {
	notAfter := cfg.NotAfter
	if notAfter.IsZero() {
		if a.parent == nil {
			notAfter = now.AddDate(10, 0, 0)
		} else {
			notAfter = now.AddDate(5, 0, 0)
		}
	}
	notBefore := cfg.NotBefore
	if notBefore.IsZero() {
		notBefore = now.Add(-24 * time.Hour)
		if !notBefore.Before(notAfter) {
			notBefore = notAfter.Add(-24 * time.Hour)
		}
	}
	serial, err := newSerial()
	if err != nil {
		return err
	}
	ski, err := subjectKeyID(a.signer.Public())
	if err != nil {
		return err
	}
	tpl := &x509.Certificate{
		SerialNumber: serial,
		Subject: pkix.Name{
			CommonName:         fmt.Sprintf("pcatest %s %s", a.role, s.instance),
			Organization:       []string{"certgate pcatest"},
			OrganizationalUnit: []string{a.id},
		},
		NotBefore:             notBefore.Truncate(time.Second),
		NotAfter:              notAfter.Truncate(time.Second),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            a.maxPathLen,
		MaxPathLenZero:        a.maxPathLen == 0,
		SubjectKeyId:          ski,
	}
	parentCert, parentKey := tpl, a.signer
	tpl.SignatureAlgorithm = x509.SHA256WithRSA
	if a.parent != nil {
		parentCert, parentKey = a.parent.cert, a.parent.signer
		tpl.SignatureAlgorithm = sigAlgs[a.parent.sigAlg].alg
		tpl.CRLDistributionPoints = s.crlURLs(a.parent)
	}
	der, err := x509.CreateCertificate(rand.Reader, tpl, parentCert, a.signer.Public(), parentKey)
	if err != nil {
		return err
	}
	a.cert, err = x509.ParseCertificate(der)
	if err != nil {
		return err
	}
	a.pem = pemString(der)
	if a.parent != nil {
		a.chainPEM = a.parent.pem
		if a.parent.chainPEM != "" {
			a.chainPEM += "\n" + a.parent.chainPEM
		}
	}
	return nil
}

// crlURLs follows PCA's layout; the caller holds s.mu or is still in New.
func (s *Server) crlURLs(a *authority) []string {
	if !a.crl.Enabled {
		return nil
	}
	if a.crl.CustomCname != "" {
		return []string{fmt.Sprintf("http://%s/crl/%s.crl", a.crl.CustomCname, a.id)}
	}
	return []string{fmt.Sprintf("http://%s.s3.%s.amazonaws.com/crl/%s.crl", a.crl.S3BucketName, s.region, a.id)}
}

// PCA returns PEM without a trailing newline and joins chains with one "\n";
// clients that concatenate naively break on exactly that, so keep it.
func pemString(der []byte) string {
	return strings.TrimRight(string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})), "\n")
}

// newSerial returns 16 random bytes with the top bit clear (positive, so
// the DER is exactly 16 bytes) and the next bit set (so it is never shorter).
func newSerial() (*big.Int, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return nil, err
	}
	b[0] = b[0]&0x7f | 0x40
	return new(big.Int).SetBytes(b), nil
}

// subjectKeyID is RFC 5280 method 1: SHA-1 of the subjectPublicKey bits.
func subjectKeyID(pub crypto.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, err
	}
	var spki struct {
		Algorithm pkix.AlgorithmIdentifier
		PublicKey asn1.BitString
	}
	if _, err := asn1.Unmarshal(der, &spki); err != nil {
		return nil, err
	}
	sum := sha1.Sum(spki.PublicKey.Bytes)
	return sum[:], nil
}

func newUUID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

// ColonHex formats a serial the way AWS examples and consoles show it:
// lower-case hex byte pairs separated by colons.
func ColonHex(n *big.Int) string {
	b := n.Bytes()
	if len(b) == 0 {
		b = []byte{0}
	}
	var sb strings.Builder
	for i, c := range b {
		if i > 0 {
			sb.WriteByte(':')
		}
		fmt.Fprintf(&sb, "%02x", c)
	}
	return sb.String()
}
