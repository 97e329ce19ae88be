package issuance

import (
	"crypto/x509"
	"encoding/pem"
	"strings"
	"sync"
)

// pemCache remembers the PEM of CA certificates; there are a handful of
// them and they are in every response.
type pemCache struct{ m sync.Map } // string(DER) → string(PEM)

func (c *pemCache) encode(cert *x509.Certificate) string {
	if cert == nil {
		return ""
	}
	if v, ok := c.m.Load(string(cert.Raw)); ok {
		return v.(string)
	}
	p := certPEM(cert.Raw)
	c.m.Store(string(cert.Raw), p)
	return p
}

func (c *pemCache) encodeAll(certs []*x509.Certificate) string {
	var b strings.Builder
	for _, x := range certs {
		b.WriteString(c.encode(x))
	}
	return b.String()
}

// certPEM renders one certificate.
func certPEM(der []byte) string {
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}
