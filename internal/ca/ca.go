// Package ca holds certgate's CA backends behind one interface: the embedded
// local CA (local.go) and AWS Private CA (pca.go). Everything a backend needs
// has already been validated by the issuance service; a backend only signs
// and returns a verified chain.
package ca

import (
	"context"
	"crypto"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"net/url"
	"time"
)

// CA names: the four roles of the PCA configuration and of the local hierarchy.
const (
	Root     = "root"
	ClientCA = "client-ca"
	ServerCA = "server-ca"
	IstioCA  = "istio-ca"
)

// Names lists every CA role in hierarchy order.
var Names = []string{Root, ClientCA, ServerCA, IstioCA}

// KnownCA reports whether name is one of the four roles.
func KnownCA(name string) bool {
	for _, n := range Names {
		if n == name {
			return true
		}
	}
	return false
}

// SignRequest is a fully validated request: names normalised, key checked,
// validity computed. Backends must put exactly this into the certificate.
type SignRequest struct {
	Profile   *Profile
	CA        string // issuing CA role
	PublicKey crypto.PublicKey
	// CSR is the DER of the request's CSR when the client sent one (PCA needs
	// a CSR; for server-generated keys the service makes one).
	CSR       []byte
	Subject   pkix.Name
	DNSNames  []string
	IPs       []net.IP
	URIs      []*url.URL
	Emails    []string
	NotBefore time.Time
	NotAfter  time.Time
	// Serial is chosen by certgate before signing (write-before-sign). A
	// backend that cannot honour it (PCA) returns its own.
	Serial *big.Int
	// IdempotencyToken is stable across retries of the same logical request.
	IdempotencyToken string
	// OnSubmitted, if set, is called once the backend has accepted the request
	// and knows its own reference for it (the PCA certificate ARN), before
	// waiting for the certificate, so the caller can record it.
	OnSubmitted func(ctx context.Context, ref string) error
}

// SignResult is what every backend returns: a leaf whose chain was verified
// with x509.Verify up to Root.
type SignResult struct {
	Leaf  *x509.Certificate
	Chain []*x509.Certificate // issuer first, root excluded
	Root  *x509.Certificate
	// ARN is the PCA certificate ARN; empty for the local CA.
	ARN string
}

// Info describes one CA as the backend sees it.
type Info struct {
	Name        string
	Backend     string
	ARN         string
	Status      string // ACTIVE, DISABLED, EXPIRED, ..., or "unknown"
	UsageMode   string // GENERAL_PURPOSE, SHORT_LIVED_CERTIFICATE, or ""
	Certificate *x509.Certificate
	Chain       []*x509.Certificate // issuers of Certificate, up to and including the root; empty for the root
}

// Backend signs certificates for the four CA roles.
type Backend interface {
	// Kind is "local" or "aws-pca".
	Kind() string
	Sign(ctx context.Context, req *SignRequest) (*SignResult, error)
	// Describe fetches a CA's certificate, chain and status from the source.
	Describe(ctx context.Context, name string) (*Info, error)
}

// Revoker is implemented by backends whose revocation goes to the CA itself
// (PCA). The local CA records revocations in the database only.
type Revoker interface {
	Revoke(ctx context.Context, caName string, serial *big.Int, reason int) error
}

// Verify checks leaf → chain → root with x509.Verify, for any usage the
// profile allows. Every backend calls it before returning a certificate.
func Verify(leaf *x509.Certificate, chain []*x509.Certificate, root *x509.Certificate, at time.Time, usages []x509.ExtKeyUsage) error {
	roots := x509.NewCertPool()
	roots.AddCert(root)
	inter := x509.NewCertPool()
	for _, c := range chain {
		inter.AddCert(c)
	}
	if len(usages) == 0 {
		usages = []x509.ExtKeyUsage{x509.ExtKeyUsageAny}
	}
	_, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: at, KeyUsages: usages})
	return err
}
