package istio

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/certgate/certgate/internal/apierror"
	"github.com/certgate/certgate/internal/client"
	"github.com/certgate/certgate/internal/issuance"
)

// CacertsOptions are the flags of `certgate istio cacerts`.
type CacertsOptions struct {
	Cluster string
	Out     string
	// Days is the validity; 0 means the server's default.
	Days int
	// KeyType: ecdsa-p256 (default), ecdsa-p384 or rsa-2048.
	KeyType string
	// ServerKey lets the server generate the key (it then crosses the
	// network once); by default it is generated here and only a CSR is sent.
	ServerKey      bool
	IdempotencyKey string
	WriteOptions
}

// CacertsOutcome is what Cacerts did.
type CacertsOutcome struct {
	Result  *issuance.IntermediateResult
	Bundle  *Bundle
	Written []string
}

// GenerateKey makes a CA key locally.
func GenerateKey(keyType string) (crypto.Signer, error) {
	switch keyType {
	case "", issuance.KeyECDSAP256:
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case issuance.KeyECDSAP384:
		return ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case issuance.KeyRSA2048:
		return rsa.GenerateKey(rand.Reader, 2048)
	}
	return nil, fmt.Errorf("key type %q: want %s (default), %s or %s", keyType, issuance.KeyECDSAP256, issuance.KeyECDSAP384, issuance.KeyRSA2048)
}

// CSR makes the CSR for a cluster's intermediate. The server sets the
// subject itself; the CSR names the same one so that it reads right.
func CSR(key crypto.Signer, cluster string) (string, error) {
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: issuance.IntermediateSubject(cluster)}, key)
	if err != nil {
		return "", err
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})), nil
}

// MarshalKey renders a key as PKCS#8 PEM.
func MarshalKey(key crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// Cacerts issues a cluster's intermediate and writes its cacerts bundle:
// everything is checked before the request (so a bad flag costs no CA
// certificate) and the bundle is verified before it is written.
func Cacerts(ctx context.Context, c *client.Client, o CacertsOptions) (*CacertsOutcome, error) {
	if err := issuance.ValidateCluster(o.Cluster); err != nil {
		return nil, fmt.Errorf("--cluster: %s", reason(err))
	}
	if o.Out == "" {
		return nil, errors.New("--out is required: the directory for ca-cert.pem, ca-key.pem, root-cert.pem and cert-chain.pem")
	}
	if err := ValidateNamespace(o.namespace()); err != nil {
		return nil, fmt.Errorf("--namespace: %w", err)
	}
	if o.Days < 0 {
		return nil, fmt.Errorf("--days %d: must be positive", o.Days)
	}
	if !o.Force {
		if ex := Existing(o.Out, o.WriteOptions); len(ex) > 0 {
			return nil, fmt.Errorf("%w: %s in %s; refusing to replace a cluster's CA (use --force)", ErrExists, strings.Join(ex, ", "), o.Out)
		}
	}
	req := issuance.IntermediateRequest{Cluster: o.Cluster}
	if o.Days > 0 {
		d := o.Days
		req.ValidityDays = &d
	}
	var keyPEM []byte
	if o.ServerKey {
		req.KeyType = o.KeyType
	} else {
		key, err := GenerateKey(o.KeyType)
		if err != nil {
			return nil, fmt.Errorf("--key-type: %w", err)
		}
		if req.CSR, err = CSR(key, o.Cluster); err != nil {
			return nil, err
		}
		if keyPEM, err = MarshalKey(key); err != nil {
			return nil, err
		}
	}
	hdr := map[string]string{}
	if o.IdempotencyKey != "" {
		hdr["Idempotency-Key"] = o.IdempotencyKey
	}
	var res issuance.IntermediateResult
	if _, err := c.Do(ctx, http.MethodPost, Route, req, &res, hdr); err != nil {
		return nil, err
	}
	if o.ServerKey {
		keyPEM = []byte(res.CAKey)
	}
	b, err := NewBundle(&res, keyPEM)
	if err != nil {
		return &CacertsOutcome{Result: &res}, err
	}
	written, err := Write(o.Out, b, o.WriteOptions, time.Now())
	if err != nil {
		return &CacertsOutcome{Result: &res, Bundle: b, Written: written}, fmt.Errorf("intermediate %s was issued but not written: %w", res.Serial, err)
	}
	return &CacertsOutcome{Result: &res, Bundle: b, Written: written}, nil
}

func reason(err error) string {
	if ae := apierror.As(err); ae != nil && len(ae.Details) > 0 {
		return ae.Details[0].Reason
	}
	return err.Error()
}
