package validation

import (
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/certgate/certgate/internal/apierror"
)

// wantValidation asserts that err is certgate's 400 validation error with a
// detail for field whose reason contains every one of reasons.
func wantValidation(t *testing.T, err error, field string, reasons ...string) *apierror.Error {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want a 400 on %q", field)
	}
	var e *apierror.Error
	if !errors.As(err, &e) {
		t.Fatalf("error %v (%T) is not an *apierror.Error", err, err)
	}
	if e.Status != http.StatusBadRequest || e.Code != apierror.CodeValidation {
		t.Fatalf("got status %d code %q, want 400 %q (%v)", e.Status, e.Code, apierror.CodeValidation, err)
	}
	if e.Message == "" {
		t.Errorf("error has no message")
	}
	for _, d := range e.Details {
		if d.Field != field {
			continue
		}
		if d.Reason == "" {
			t.Errorf("detail for %q has no reason", field)
		}
		ok := true
		for _, r := range reasons {
			if !strings.Contains(d.Reason, r) {
				ok = false
			}
		}
		if ok {
			return e
		}
	}
	t.Fatalf("no detail for field %q with reason containing %q; details: %+v", field, reasons, e.Details)
	return nil
}

func wantOK(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("unexpected error: %v (details %+v)", err, apierror.As(err).Details)
	}
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// csrDER signs a CSR for tmpl with key.
func csrDER(t testing.TB, key crypto.Signer, tmpl *x509.CertificateRequest) []byte {
	t.Helper()
	if tmpl == nil {
		tmpl = &x509.CertificateRequest{Subject: pkix.Name{CommonName: "api.internal"}, DNSNames: []string{"api.internal"}}
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatalf("create CSR: %v", err)
	}
	return der
}

func csrPEM(t testing.TB, key crypto.Signer, tmpl *x509.CertificateRequest) string {
	t.Helper()
	return pemOf("CERTIFICATE REQUEST", csrDER(t, key, tmpl))
}

func pemOf(typ string, der []byte) string {
	return string(pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}))
}
