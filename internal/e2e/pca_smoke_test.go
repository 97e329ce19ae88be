package e2e

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"testing"

	"github.com/certgate/certgate/internal/issuance"
	"github.com/certgate/certgate/internal/servertest"
)

func TestPCASmoke(t *testing.T) {
	dbl := servertest.NewPCADouble(t)
	env := servertest.Start(t, servertest.WithPCA(t, dbl))
	var res issuance.Result
	if _, err := env.Client.Do(context.Background(), "POST", "/v1/certificates", issuance.Request{Profile: "server", CommonName: "api.internal"}, &res, nil); err != nil {
		t.Fatal(err)
	}
	b, _ := pem.Decode([]byte(res.Certificate))
	leaf, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if res.CertificateARN == "" || leaf.KeyUsage != x509.KeyUsageDigitalSignature|x509.KeyUsageKeyEncipherment {
		t.Fatalf("arn %q ku %b", res.CertificateARN, leaf.KeyUsage)
	}
	t.Logf("issued %s via %s; calls issue=%d get=%d", res.Serial, res.CertificateARN, dbl.Count("IssueCertificate"), dbl.Count("GetCertificate"))
}
