package ca

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// Local is the embedded software CA: a root and three intermediates kept as
// files in the data directory (keys 0600), parsed once at start and held in
// memory, so signing touches no disk and takes no lock.
type Local struct {
	dir   string
	now   func() time.Time
	cas   map[string]*localCA
	root  *localCA
	urlFn func(caName string) (crl, ocsp string)
}

type localCA struct {
	name  string
	cert  *x509.Certificate
	key   crypto.Signer
	chain []*x509.Certificate // issuers of cert up to and including the root
	// anchor holds only this CA's certificate. Its own chain to the root is
	// verified once at load, so each leaf is verified with x509.Verify
	// against it: the leaf's signature, validity and EKU every time, without
	// re-verifying the (P-384) root signature on every issuance.
	anchor *x509.CertPool
}

var _ Backend = (*Local)(nil)

// LocalOptions configure the local CA.
type LocalOptions struct {
	Dir string // where the CA files live
	Now func() time.Time
	// Validity of a newly created hierarchy.
	RootValidity         time.Duration
	IntermediateValidity time.Duration
	// PublicURLs, when set, returns the CRL and OCSP URLs a leaf of caName
	// should carry (CRL Distribution Point, AIA OCSP).
	PublicURLs func(caName string) (crl, ocsp string)
}

// OpenLocal loads the hierarchy from opts.Dir, creating it on first start.
// A second start reuses the same root and intermediates.
func OpenLocal(opts LocalOptions) (*Local, error) {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.RootValidity == 0 {
		opts.RootValidity = 10 * 365 * Day
	}
	if opts.IntermediateValidity == 0 {
		opts.IntermediateValidity = 5 * 365 * Day
	}
	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("local CA dir: %w", err)
	}
	l := &Local{dir: opts.Dir, now: opts.Now, cas: map[string]*localCA{}, urlFn: opts.PublicURLs}
	root, err := l.loadOrCreate(Root, nil, opts.RootValidity)
	if err != nil {
		return nil, err
	}
	l.root = root
	l.cas[Root] = root
	for _, name := range []string{ClientCA, ServerCA, IstioCA} {
		c, err := l.loadOrCreate(name, root, opts.IntermediateValidity)
		if err != nil {
			return nil, err
		}
		// A hierarchy whose files were swapped or corrupted must not sign.
		if err := Verify(c.cert, nil, root.cert, c.cert.NotBefore.Add(time.Second), nil); err != nil {
			return nil, fmt.Errorf("local CA %s does not chain to the local root: %w", name, err)
		}
		c.anchor = x509.NewCertPool()
		c.anchor.AddCert(c.cert)
		l.cas[name] = c
	}
	root.anchor = x509.NewCertPool()
	root.anchor.AddCert(root.cert)
	return l, nil
}

func (l *Local) paths(name string) (certPath, keyPath string) {
	return filepath.Join(l.dir, name+".crt"), filepath.Join(l.dir, name+".key")
}

func (l *Local) loadOrCreate(name string, parent *localCA, validity time.Duration) (*localCA, error) {
	certPath, keyPath := l.paths(name)
	certPEM, certErr := os.ReadFile(certPath)
	keyPEM, keyErr := os.ReadFile(keyPath)
	switch {
	case certErr == nil && keyErr == nil:
		return parseLocalCA(name, certPEM, keyPEM, parent)
	case errors.Is(certErr, fs.ErrNotExist) && errors.Is(keyErr, fs.ErrNotExist):
	default:
		return nil, fmt.Errorf("local CA %s: certificate and key must both exist or both be absent (cert: %v, key: %v)", name, certErr, keyErr)
	}
	curve := elliptic.P256()
	if parent == nil {
		curve = elliptic.P384()
	}
	key, err := ecdsa.GenerateKey(curve, rand.Reader)
	if err != nil {
		return nil, err
	}
	serial, err := NewSerial()
	if err != nil {
		return nil, err
	}
	now := l.now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{Organization: []string{"certgate"}, CommonName: "certgate local " + name},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	issuerCert, issuerKey := tmpl, crypto.Signer(key)
	if parent != nil {
		// Intermediates sign only end-entity certificates.
		tmpl.MaxPathLen, tmpl.MaxPathLenZero = 0, true
		issuerCert, issuerKey = parent.cert, parent.key
		if tmpl.NotAfter.After(parent.cert.NotAfter) {
			tmpl.NotAfter = parent.cert.NotAfter
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, issuerCert, key.Public(), issuerKey)
	if err != nil {
		return nil, fmt.Errorf("create local CA %s: %w", name, err)
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	keyPEM = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8})
	certPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	// Key first, 0600, written atomically: a crash never leaves a certificate
	// without its key.
	if err := writeFileAtomic(keyPath, keyPEM, 0o600); err != nil {
		return nil, err
	}
	if err := writeFileAtomic(certPath, certPEM, 0o644); err != nil {
		return nil, err
	}
	return parseLocalCA(name, certPEM, keyPEM, parent)
}

func parseLocalCA(name string, certPEM, keyPEM []byte, parent *localCA) (*localCA, error) {
	cb, _ := pem.Decode(certPEM)
	if cb == nil || cb.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("local CA %s: certificate file is not PEM", name)
	}
	cert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, fmt.Errorf("local CA %s: %w", name, err)
	}
	kb, _ := pem.Decode(keyPEM)
	if kb == nil {
		return nil, fmt.Errorf("local CA %s: key file is not PEM", name)
	}
	k, err := x509.ParsePKCS8PrivateKey(kb.Bytes)
	if err != nil {
		return nil, fmt.Errorf("local CA %s key: %w", name, err)
	}
	signer, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("local CA %s: key cannot sign", name)
	}
	if !publicKeysEqual(signer.Public(), cert.PublicKey) {
		return nil, fmt.Errorf("local CA %s: key does not match certificate", name)
	}
	c := &localCA{name: name, cert: cert, key: signer}
	if parent != nil {
		c.chain = append([]*x509.Certificate{parent.cert}, parent.chain...)
	}
	return c, nil
}

func publicKeysEqual(a, b crypto.PublicKey) bool {
	ak, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && ak.Equal(b)
}

// PublicKeysEqual reports whether two public keys are the same key.
func PublicKeysEqual(a, b crypto.PublicKey) bool { return publicKeysEqual(a, b) }

func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// WriteFileAtomic writes data to path via a temporary file and rename.
func WriteFileAtomic(path string, data []byte, mode os.FileMode) error {
	return writeFileAtomic(path, data, mode)
}

// Kind implements Backend.
func (l *Local) Kind() string { return "local" }

// Root returns the local root certificate.
func (l *Local) Root() *x509.Certificate { return l.root.cert }

// Signer returns a CA's certificate and key, for CRL and OCSP signing.
func (l *Local) Signer(name string) (*x509.Certificate, crypto.Signer, bool) {
	c, ok := l.cas[name]
	if !ok {
		return nil, nil, false
	}
	return c.cert, c.key, true
}

// Describe implements Backend.
func (l *Local) Describe(_ context.Context, name string) (*Info, error) {
	c, ok := l.cas[name]
	if !ok {
		return nil, fmt.Errorf("unknown CA %q", name)
	}
	status := "ACTIVE"
	now := l.now()
	if now.After(c.cert.NotAfter) {
		status = "EXPIRED"
	}
	return &Info{Name: name, Backend: "local", Status: status, Certificate: c.cert, Chain: c.chain}, nil
}

// Sign implements Backend: the template is built from the validated request
// only, never from the CSR's extensions.
func (l *Local) Sign(_ context.Context, req *SignRequest) (*SignResult, error) {
	issuer, ok := l.cas[req.CA]
	if !ok {
		return nil, fmt.Errorf("unknown CA %q", req.CA)
	}
	p := req.Profile
	tmpl := &x509.Certificate{
		SerialNumber:          req.Serial,
		Subject:               req.Subject,
		NotBefore:             req.NotBefore,
		NotAfter:              req.NotAfter,
		KeyUsage:              p.KeyUsage,
		ExtKeyUsage:           p.ExtKeyUsage,
		BasicConstraintsValid: true,
		DNSNames:              req.DNSNames,
		IPAddresses:           req.IPs,
		URIs:                  req.URIs,
		EmailAddresses:        req.Emails,
	}
	if p.IsCA {
		tmpl.IsCA = true
		tmpl.MaxPathLen = p.MaxPathLen
		tmpl.MaxPathLenZero = p.MaxPathLen == 0
	}
	if l.urlFn != nil {
		crl, ocsp := l.urlFn(req.CA)
		if crl != "" {
			tmpl.CRLDistributionPoints = []string{crl}
		}
		if ocsp != "" {
			tmpl.OCSPServer = []string{ocsp}
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, issuer.cert, req.PublicKey, issuer.key)
	if err != nil {
		return nil, fmt.Errorf("local CA %s: sign: %w", req.CA, err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	var chain []*x509.Certificate
	if issuer != l.root {
		chain = append([]*x509.Certificate{issuer.cert}, issuer.chain[:len(issuer.chain)-1]...)
	}
	usages := p.ExtKeyUsage
	if len(usages) == 0 {
		usages = []x509.ExtKeyUsage{x509.ExtKeyUsageAny}
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: issuer.anchor, CurrentTime: leaf.NotBefore.Add(time.Second), KeyUsages: usages}); err != nil {
		return nil, fmt.Errorf("local CA %s: issued certificate does not verify: %w", req.CA, err)
	}
	return &SignResult{Leaf: leaf, Chain: chain, Root: l.root.cert}, nil
}
