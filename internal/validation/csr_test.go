package validation

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"net"
	"net/url"
	"strings"
	"sync"
	"testing"
)

// Keys are generated once: RSA generation dominates the test time otherwise.
var testKeys = sync.OnceValue(func() map[string]crypto.Signer {
	keys := map[string]crypto.Signer{}
	for name, c := range map[string]elliptic.Curve{"p224": elliptic.P224(), "p256": elliptic.P256(), "p384": elliptic.P384(), "p521": elliptic.P521()} {
		k, err := ecdsa.GenerateKey(c, rand.Reader)
		if err != nil {
			panic(err)
		}
		keys[name] = k
	}
	for name, bits := range map[string]int{"rsa1024": 1024, "rsa2047": 2047, "rsa2048": 2048} {
		k, err := rsa.GenerateKey(rand.Reader, bits)
		if err != nil {
			panic(err)
		}
		keys[name] = k
	}
	_, ed, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		panic(err)
	}
	keys["ed25519"] = ed
	return keys
})

func key(name string) crypto.Signer { return testKeys()[name] }

// resignSHA1 replaces a CSR's signature with a SHA-1 one, which x509 no longer
// produces but still verifies on CSRs.
func resignSHA1(t *testing.T, der []byte, k *rsa.PrivateKey) []byte {
	t.Helper()
	var in struct {
		TBS    asn1.RawValue
		SigAlg pkix.AlgorithmIdentifier
		Sig    asn1.BitString
	}
	if _, err := asn1.Unmarshal(der, &in); err != nil {
		t.Fatal(err)
	}
	sum := sha1.Sum(in.TBS.FullBytes)
	sig, err := rsa.SignPKCS1v15(rand.Reader, k, crypto.SHA1, sum[:])
	if err != nil {
		t.Fatal(err)
	}
	in.SigAlg = pkix.AlgorithmIdentifier{Algorithm: asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 5}, Parameters: asn1.NullRawValue}
	in.Sig = asn1.BitString{Bytes: sig, BitLength: 8 * len(sig)}
	out, err := asn1.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestParseCSRValid(t *testing.T) {
	tmpl := &x509.CertificateRequest{
		Subject:        pkix.Name{CommonName: "api.internal"},
		DNSNames:       []string{"api.internal", "*.api.internal"},
		IPAddresses:    []net.IP{net.ParseIP("10.0.0.7")},
		URIs:           []*url.URL{{Scheme: "spiffe", Host: "cluster.local", Path: "/ns/a/sa/b"}},
		EmailAddresses: []string{"ops@example.com"},
	}
	p256 := csrPEM(t, key("p256"), tmpl)
	tests := []struct {
		name    string
		pem     string
		wantAlg string
	}{
		{name: "ECDSA P-256", pem: p256, wantAlg: "ecdsa-p256"},
		{name: "ECDSA P-384", pem: csrPEM(t, key("p384"), tmpl), wantAlg: "ecdsa-p384"},
		{name: "RSA 2048", pem: csrPEM(t, key("rsa2048"), tmpl), wantAlg: "rsa-2048"},
		{name: "legacy NEW CERTIFICATE REQUEST type", pem: pemOf("NEW CERTIFICATE REQUEST", csrDER(t, key("p256"), tmpl)), wantAlg: "ecdsa-p256"},
		{name: "surrounding whitespace", pem: "\n\n  " + p256 + "\n\t\n", wantAlg: "ecdsa-p256"},
		{name: "CRLF line endings", pem: strings.ReplaceAll(p256, "\n", "\r\n"), wantAlg: "ecdsa-p256"},
		{name: "no final newline", pem: strings.TrimSuffix(p256, "\n"), wantAlg: "ecdsa-p256"},
		{name: "exactly MaxCSRBytes with padding", pem: p256 + strings.Repeat(" ", MaxCSRBytes-len(p256)), wantAlg: "ecdsa-p256"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			csr, err := ParseCSR(tt.pem)
			wantOK(t, err)
			if got := KeyAlgorithm(csr.PublicKey); got != tt.wantAlg {
				t.Errorf("KeyAlgorithm = %q, want %q", got, tt.wantAlg)
			}
			wantOK(t, CheckKey("csr", csr.PublicKey))
			n, err := NamesFromCSR(csr, true)
			wantOK(t, err)
			want := []string{"api.internal", "*.api.internal", "10.0.0.7", "spiffe://cluster.local/ns/a/sa/b", "ops@example.com"}
			if !equalStrings(n.Strings(), want) || n.CommonName != "api.internal" {
				t.Errorf("names = %q/%q, want %q", n.CommonName, n.Strings(), want)
			}
			req, err := ParseNames("api.internal", []string{"ops@example.com", "10.0.0.7", "*.API.internal", "spiffe://cluster.local/ns/a/sa/b"}, true)
			wantOK(t, err)
			wantOK(t, SameSet(req, n))
		})
	}
}

func TestParseCSRInvalid(t *testing.T) {
	good := csrDER(t, key("p256"), nil)
	goodPEM := pemOf("CERTIFICATE REQUEST", good)

	flipLast := append([]byte(nil), good...)
	flipLast[len(flipLast)-1] ^= 0x01
	rsaDER := csrDER(t, key("rsa2048"), nil)
	flipRSA := append([]byte(nil), rsaDER...)
	flipRSA[len(flipRSA)-10] ^= 0x80
	// Changing the subject (inside the signed part) must break the signature.
	flipTBS := []byte(strings.Replace(string(good), "api.internal", "api.internax", 1))

	withHeaders := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Headers: map[string]string{"Proc-Type": "4,ENCRYPTED"}, Bytes: good}))
	body := strings.SplitN(goodPEM, "\n", 2)[1]

	tests := []struct {
		name   string
		pem    string
		reason string
	}{
		{name: "empty", pem: "", reason: "is empty"},
		{name: "only whitespace", pem: " \n\t ", reason: "is empty"},
		{name: "garbage text", pem: "hello, CA", reason: "must be PEM"},
		{name: "raw DER", pem: string(good), reason: "must be PEM"},
		{name: "bare base64", pem: body, reason: "must be PEM"},
		{name: "leading text", pem: "Certificate Request:\n    Data: ...\n" + goodPEM, reason: "must be PEM"},
		{name: "two PEM blocks", pem: goodPEM + goodPEM, reason: "2 PEM blocks"},
		{name: "second block of another type", pem: goodPEM + pemOf("PRIVATE KEY", []byte{1, 2, 3}), reason: "2 PEM blocks"},
		{name: "trailing garbage", pem: goodPEM + "garbage", reason: "data after the PEM block"},
		{name: "trailing garbage after whitespace", pem: goodPEM + "\n\n-- \nsig\n", reason: "data after the PEM block"},
		{name: "text after the END line", pem: strings.TrimSuffix(goodPEM, "\n") + "garbage", reason: "not a valid PEM block"},
		{name: "text after the BEGIN line", pem: strings.Replace(goodPEM, "REQUEST-----\n", "REQUEST----- junk\n", 1), reason: "not a valid PEM block"},
		{name: "wrong PEM type", pem: pemOf("CERTIFICATE", good), reason: `"CERTIFICATE" block`},
		{name: "private key PEM", pem: pemOf("EC PRIVATE KEY", good), reason: "expected CERTIFICATE REQUEST"},
		{name: "PEM headers", pem: withHeaders, reason: "headers"},
		{name: "missing END line", pem: strings.Split(goodPEM, "-----END")[0], reason: "not a valid PEM block"},
		{name: "bad base64", pem: "-----BEGIN CERTIFICATE REQUEST-----\n!!!!\n-----END CERTIFICATE REQUEST-----\n", reason: "not a valid PEM block"},
		{name: "mismatched END type", pem: strings.Replace(goodPEM, "END CERTIFICATE REQUEST", "END CERTIFICATE", 1), reason: "not a valid PEM block"},
		{name: "DER garbage in PEM", pem: pemOf("CERTIFICATE REQUEST", []byte("definitely not DER")), reason: "cannot be parsed"},
		{name: "empty PEM body", pem: pemOf("CERTIFICATE REQUEST", nil), reason: "cannot be parsed"},
		{name: "trailing bytes inside DER", pem: pemOf("CERTIFICATE REQUEST", append(append([]byte(nil), good...), 0)), reason: "cannot be parsed"},
		{name: "truncated DER", pem: pemOf("CERTIFICATE REQUEST", good[:len(good)-5]), reason: "cannot be parsed"},
		{name: "tampered ECDSA signature", pem: pemOf("CERTIFICATE REQUEST", flipLast), reason: "does not verify"},
		{name: "tampered RSA signature", pem: pemOf("CERTIFICATE REQUEST", flipRSA), reason: "does not verify"},
		{name: "tampered subject", pem: pemOf("CERTIFICATE REQUEST", flipTBS), reason: "does not verify"},
		{name: "SHA-1 signature", pem: pemOf("CERTIFICATE REQUEST", resignSHA1(t, rsaDER, key("rsa2048").(*rsa.PrivateKey))), reason: "too weak"},
		{name: "oversized", pem: goodPEM + strings.Repeat(" ", MaxCSRBytes), reason: "at most 32768"},
		{name: "one byte over", pem: goodPEM + strings.Repeat(" ", MaxCSRBytes+1-len(goodPEM)), reason: "32769 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			csr, err := ParseCSR(tt.pem)
			if csr != nil {
				t.Errorf("got a CSR alongside an error")
			}
			wantValidation(t, err, "csr", tt.reason)
		})
	}
}

// ParseCSR parses keys the policy refuses, so that CheckKey can say why.
func TestParseCSRLeavesKeyPolicyToCheckKey(t *testing.T) {
	tests := []struct {
		key, alg, reason string
	}{
		{key: "ed25519", alg: "ed25519", reason: "Ed25519"},
		{key: "rsa1024", alg: "rsa-1024", reason: "1024 bits"},
		{key: "p521", alg: "ecdsa-p521", reason: "P-521"},
	}
	for _, tt := range tests {
		t.Run(tt.key, func(t *testing.T) {
			csr, err := ParseCSR(csrPEM(t, key(tt.key), nil))
			wantOK(t, err)
			if got := KeyAlgorithm(csr.PublicKey); got != tt.alg {
				t.Errorf("KeyAlgorithm = %q, want %q", got, tt.alg)
			}
			wantValidation(t, CheckKey("csr", csr.PublicKey), "csr", tt.reason)
		})
	}
}

// A CSR whose names break policy parses, and NamesFromCSR refuses it.
func TestParseCSRThenNames(t *testing.T) {
	p := csrPEM(t, key("p256"), &x509.CertificateRequest{DNSNames: []string{"ok.example", "bad_name.example"}})
	csr, err := ParseCSR(p)
	wantOK(t, err)
	_, err = NamesFromCSR(csr, false)
	wantValidation(t, err, "csr", `"bad_name.example"`, "underscore")
}
