package istio

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/certgate/certgate/internal/ca"
	"github.com/certgate/certgate/internal/issuance"
)

// The plug-in CA layout istiod reads from the "cacerts" Secret.
const (
	FileCACert     = "ca-cert.pem"
	FileCAKey      = "ca-key.pem"
	FileRootCert   = "root-cert.pem"
	FileCertChain  = "cert-chain.pem"
	FileSecretYAML = "cacerts.yaml"

	SecretName       = "cacerts"
	DefaultNamespace = "istio-system"
)

// Bundle is one cluster's cacerts: PEM text exactly as written to disk.
type Bundle struct {
	Cluster  string
	Serial   string
	NotAfter time.Time

	CACert    []byte // the cluster's intermediate
	CAKey     []byte // its private key, PKCS#8 PEM
	RootCert  []byte // the root
	CertChain []byte // ca-cert, its issuers, the root; each once
}

// NewBundle builds the bundle of an issued intermediate; keyPEM is the key
// kept locally, or res.CAKey when the server generated it.
func NewBundle(res *issuance.IntermediateResult, keyPEM []byte) (*Bundle, error) {
	if len(bytes.TrimSpace(keyPEM)) == 0 {
		return nil, errors.New("no private key for the intermediate: the server returns a generated key only once (not on an Idempotency-Key replay)")
	}
	b := &Bundle{Cluster: res.Cluster, Serial: res.Serial, NotAfter: res.NotAfter,
		CACert: []byte(res.CACert), CAKey: keyPEM, RootCert: []byte(res.RootCert), CertChain: []byte(res.CertChain)}
	return b, nil
}

// Check proves the bundle is what istiod needs before anything is written:
// ca-cert is a CA certificate whose key is ca-key, cert-chain runs from
// ca-cert to root-cert with each certificate once and each signed by the
// next, and ca-cert verifies to root-cert at now.
func (b *Bundle) Check(now time.Time) error {
	caCert, err := onePEMCert(FileCACert, b.CACert)
	if err != nil {
		return err
	}
	root, err := onePEMCert(FileRootCert, b.RootCert)
	if err != nil {
		return err
	}
	chain, err := pemCerts(b.CertChain)
	if err != nil {
		return fmt.Errorf("%s: %w", FileCertChain, err)
	}
	switch {
	case !caCert.IsCA || !caCert.BasicConstraintsValid:
		return fmt.Errorf("%s is not a CA certificate (basicConstraints CA:FALSE)", FileCACert)
	case caCert.KeyUsage&x509.KeyUsageCertSign == 0:
		return fmt.Errorf("%s lacks keyCertSign", FileCACert)
	case !root.IsCA || root.CheckSignatureFrom(root) != nil:
		return fmt.Errorf("%s is not a self-signed CA certificate", FileRootCert)
	case len(chain) < 2:
		return fmt.Errorf("%s has %d certificates; it needs %s and at least its root", FileCertChain, len(chain), FileCACert)
	case !chain[0].Equal(caCert):
		return fmt.Errorf("%s does not start with %s", FileCertChain, FileCACert)
	case !chain[len(chain)-1].Equal(root):
		return fmt.Errorf("%s does not end with %s", FileCertChain, FileRootCert)
	}
	for i := 0; i < len(chain)-1; i++ {
		for j := i + 1; j < len(chain); j++ {
			if chain[i].Equal(chain[j]) {
				return fmt.Errorf("%s lists certificate %d twice", FileCertChain, i+1)
			}
		}
		if err := chain[i].CheckSignatureFrom(chain[i+1]); err != nil {
			return fmt.Errorf("%s: certificate %d is not signed by certificate %d: %w", FileCertChain, i+1, i+2, err)
		}
	}
	roots := x509.NewCertPool()
	roots.AddCert(root)
	inter := x509.NewCertPool()
	for _, c := range chain[1 : len(chain)-1] {
		inter.AddCert(c)
	}
	if _, err := caCert.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return fmt.Errorf("%s does not verify to %s: %w", FileCACert, FileRootCert, err)
	}
	key, err := ParsePrivateKeyPEM(b.CAKey)
	if err != nil {
		return fmt.Errorf("%s: %w", FileCAKey, err)
	}
	if !ca.PublicKeysEqual(key.Public(), caCert.PublicKey) {
		return fmt.Errorf("%s does not match %s", FileCAKey, FileCACert)
	}
	return nil
}

// File is one file of the bundle.
type File struct {
	Name string
	Data []byte
	Mode os.FileMode
}

// Files lists the bundle's files, the key first (so an interrupted write
// never leaves a certificate without its key).
func (b *Bundle) Files() []File {
	return []File{
		{FileCAKey, b.CAKey, 0o600},
		{FileCACert, b.CACert, 0o644},
		{FileRootCert, b.RootCert, 0o644},
		{FileCertChain, b.CertChain, 0o644},
	}
}

// WriteOptions say what Write writes.
type WriteOptions struct {
	// SecretYAML adds cacerts.yaml, the Secret manifest.
	SecretYAML bool
	// Namespace of the Secret; default istio-system.
	Namespace string
	// Force overwrites an existing bundle.
	Force bool
}

func (o WriteOptions) namespace() string {
	if o.Namespace == "" {
		return DefaultNamespace
	}
	return o.Namespace
}

func (o WriteOptions) names() []string {
	n := []string{FileCAKey, FileCACert, FileRootCert, FileCertChain}
	if o.SecretYAML {
		n = append(n, FileSecretYAML)
	}
	return n
}

// Existing lists the bundle files already present in dir.
func Existing(dir string, o WriteOptions) []string {
	var out []string
	for _, n := range o.names() {
		if _, err := os.Lstat(filepath.Join(dir, n)); err == nil {
			out = append(out, n)
		}
	}
	return out
}

// ErrExists is returned by Write (and Cacerts) when dir already holds a
// bundle and Force is not set: overwriting a cluster's CA key by accident
// is not recoverable.
var ErrExists = errors.New("the output directory already holds cacerts files")

// Write checks b and writes its files into dir (created 0700 when missing),
// each atomically: ca-key.pem and cacerts.yaml (which embeds the key) 0600,
// the certificates 0644. It returns the paths written.
func Write(dir string, b *Bundle, o WriteOptions, now time.Time) ([]string, error) {
	if err := ValidateNamespace(o.namespace()); err != nil {
		return nil, err
	}
	if err := b.Check(now); err != nil {
		return nil, fmt.Errorf("refusing to write an inconsistent bundle: %w", err)
	}
	if !o.Force {
		if ex := Existing(dir, o); len(ex) > 0 {
			return nil, fmt.Errorf("%w: %s in %s (use --force to replace them)", ErrExists, strings.Join(ex, ", "), dir)
		}
	}
	files := b.Files()
	if o.SecretYAML {
		m, err := SecretManifest(b, o.namespace())
		if err != nil {
			return nil, err
		}
		files = append(files, File{FileSecretYAML, m, 0o600})
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	var written []string
	for _, f := range files {
		p := filepath.Join(dir, f.Name)
		if err := ca.WriteFileAtomic(p, f.Data, f.Mode); err != nil {
			return written, fmt.Errorf("writing %s: %w", p, err)
		}
		written = append(written, p)
	}
	return written, nil
}

type secretManifest struct {
	APIVersion string         `yaml:"apiVersion"`
	Kind       string         `yaml:"kind"`
	Metadata   secretMetadata `yaml:"metadata"`
	Type       string         `yaml:"type"`
	// Data maps file names to base64; yaml sorts the keys.
	Data map[string]string `yaml:"data"`
}

type secretMetadata struct {
	Name        string            `yaml:"name"`
	Namespace   string            `yaml:"namespace"`
	Labels      map[string]string `yaml:"labels,omitempty"`
	Annotations map[string]string `yaml:"annotations,omitempty"`
}

// SecretManifest renders the "cacerts" Secret (type Opaque, the four files
// base64 under data) that istiod's plug-in CA mounts.
func SecretManifest(b *Bundle, namespace string) ([]byte, error) {
	if namespace == "" {
		namespace = DefaultNamespace
	}
	if err := ValidateNamespace(namespace); err != nil {
		return nil, err
	}
	enc := base64.StdEncoding.EncodeToString
	m := secretManifest{
		APIVersion: "v1", Kind: "Secret", Type: "Opaque",
		Metadata: secretMetadata{Name: SecretName, Namespace: namespace,
			Labels: map[string]string{"app.kubernetes.io/managed-by": "certgate"},
			Annotations: map[string]string{
				"certgate/cluster": b.Cluster, "certgate/serial": b.Serial,
				"certgate/not-after": b.NotAfter.UTC().Format(time.RFC3339),
			}},
		Data: map[string]string{
			FileCACert: enc(b.CACert), FileCAKey: enc(b.CAKey), FileRootCert: enc(b.RootCert), FileCertChain: enc(b.CertChain),
		},
	}
	var out bytes.Buffer
	fmt.Fprintf(&out, "# Istio plug-in CA for cluster %q, issued by certgate (serial %s, expires %s).\n",
		b.Cluster, b.Serial, b.NotAfter.UTC().Format(time.RFC3339))
	out.WriteString("# It contains the intermediate's private key: keep it out of version control.\n")
	enc2 := yaml.NewEncoder(&out)
	enc2.SetIndent(2)
	if err := enc2.Encode(m); err != nil {
		return nil, err
	}
	if err := enc2.Close(); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

// ValidateNamespace checks a Kubernetes namespace name (an RFC 1123 label).
func ValidateNamespace(ns string) error {
	if len(ns) == 0 || len(ns) > 63 || ns[0] == '-' || ns[len(ns)-1] == '-' {
		return fmt.Errorf("namespace %q: must be 1 to 63 characters of a-z, 0-9 and '-', not starting or ending with '-'", ns)
	}
	for i := 0; i < len(ns); i++ {
		c := ns[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return fmt.Errorf("namespace %q: must be 1 to 63 characters of a-z, 0-9 and '-', not starting or ending with '-'", ns)
		}
	}
	return nil
}

// NextSteps is what to run after writing the bundle to dir.
func NextSteps(dir string, b *Bundle, o WriteOptions) string {
	ns := o.namespace()
	p := func(name string) string { return shellQuote(filepath.Join(dir, name)) }
	var s strings.Builder
	fmt.Fprintf(&s, "Next steps, with kubectl pointed at cluster %s:\n", b.Cluster)
	fmt.Fprintf(&s, "  kubectl create namespace %s --dry-run=client -o yaml | kubectl apply -f -\n", ns)
	if o.SecretYAML {
		fmt.Fprintf(&s, "  kubectl apply -f %s\n", p(FileSecretYAML))
		s.WriteString("or, without the manifest:\n")
	}
	fmt.Fprintf(&s, "  kubectl create secret generic %s -n %s \\\n", SecretName, ns)
	fmt.Fprintf(&s, "    --from-file=%s \\\n    --from-file=%s \\\n    --from-file=%s \\\n    --from-file=%s\n",
		p(FileCACert), p(FileCAKey), p(FileRootCert), p(FileCertChain))
	fmt.Fprintf(&s, "  (replacing an existing %s secret: kubectl delete secret %s -n %s first, or use the manifest)\n", SecretName, SecretName, ns)
	s.WriteString("Then restart istiod so it loads the new CA:\n")
	fmt.Fprintf(&s, "  kubectl rollout restart deployment/istiod -n %s\n", ns)
	s.WriteString("Workloads switch to the new CA as their certificates rotate; restart them to switch now.\n")
	fmt.Fprintf(&s, "%s is the cluster's CA key: once the secret exists, delete or lock away this copy.\n", p(FileCAKey))
	return s.String()
}

func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./=:@+,") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// ParsePrivateKeyPEM reads a PKCS#8, SEC 1 (EC) or PKCS#1 (RSA) private key.
func ParsePrivateKeyPEM(b []byte) (crypto.Signer, error) {
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, errors.New("no PEM private key")
	}
	var k any
	var err error
	switch blk.Type {
	case "PRIVATE KEY":
		k, err = x509.ParsePKCS8PrivateKey(blk.Bytes)
	case "EC PRIVATE KEY":
		k, err = x509.ParseECPrivateKey(blk.Bytes)
	case "RSA PRIVATE KEY":
		k, err = x509.ParsePKCS1PrivateKey(blk.Bytes)
	default:
		return nil, fmt.Errorf("PEM block %q is not a private key", blk.Type)
	}
	if err != nil {
		return nil, err
	}
	switch s := k.(type) {
	case *ecdsa.PrivateKey:
		return s, nil
	case *rsa.PrivateKey:
		return s, nil
	}
	return nil, fmt.Errorf("unsupported private key type %T", k)
}

func onePEMCert(name string, b []byte) (*x509.Certificate, error) {
	certs, err := pemCerts(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if len(certs) != 1 {
		return nil, fmt.Errorf("%s holds %d certificates; want exactly one", name, len(certs))
	}
	return certs[0], nil
}

func pemCerts(b []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	rest := b
	for {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("unexpected PEM block %q", blk.Type)
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return nil, errors.New("data after the last PEM block")
	}
	if len(out) == 0 {
		return nil, errors.New("no PEM certificate")
	}
	return out, nil
}
