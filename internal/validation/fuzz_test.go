package validation

import (
	"bytes"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/certgate/certgate/internal/apierror"
)

// checkRefusal holds every refusal to the error contract, whatever the input.
func checkRefusal(t *testing.T, err error) {
	t.Helper()
	var e *apierror.Error
	if !errors.As(err, &e) {
		t.Fatalf("refusal %v is %T, not *apierror.Error", err, err)
	}
	if e.Status != http.StatusBadRequest || e.Code != apierror.CodeValidation {
		t.Fatalf("refusal is %d %s, want 400 %s: %v", e.Status, e.Code, apierror.CodeValidation, err)
	}
	if len(e.Details) == 0 {
		t.Fatalf("refusal without details: %v", err)
	}
	for _, d := range e.Details {
		if d.Field == "" || d.Reason == "" {
			t.Fatalf("incomplete detail %+v", d)
		}
	}
}

// checkNames holds an accepted name set to its invariants: the output is
// normalised (re-parsing it changes nothing), duplicate-free, within limits,
// and the typed form agrees with the string form (NamesFromCSR accepts it).
func checkNames(t *testing.T, n *Names, allow bool) {
	t.Helper()
	all := n.Strings()
	if len(all) == 0 || len(all) > MaxSANs || len(all) != n.Count() {
		t.Fatalf("accepted %d names (Count %d)", len(all), n.Count())
	}
	seen := map[string]bool{}
	for _, s := range all {
		if seen[s] {
			t.Fatalf("duplicate %q in %q", s, all)
		}
		seen[s] = true
		if !allow && strings.Contains(s, "*") && classify(s) == kindDNS {
			t.Fatalf("wildcard %q accepted without permission", s)
		}
	}
	if n.CommonName != "" && (!seen[n.CommonName] || len(n.CommonName) > MaxCommonNameLen) {
		t.Fatalf("common name %q missing from %q or too long", n.CommonName, all)
	}
	again, err := ParseNames(n.CommonName, all, allow)
	if err != nil {
		t.Fatalf("normalised %q/%q does not re-parse: %v", n.CommonName, all, err)
	}
	if !equalStrings(again.Strings(), all) || again.CommonName != n.CommonName {
		t.Fatalf("not idempotent: %q/%q became %q/%q", n.CommonName, all, again.CommonName, again.Strings())
	}
	csr := &x509.CertificateRequest{Subject: pkix.Name{CommonName: n.CommonName},
		DNSNames: n.DNS, IPAddresses: n.IPs, URIs: n.URIs, EmailAddresses: n.Emails}
	viaCSR, err := NamesFromCSR(csr, allow)
	if err != nil {
		t.Fatalf("typed names %q refused by NamesFromCSR: %v", all, err)
	}
	if err := SameSet(n, viaCSR); err != nil {
		t.Fatalf("NamesFromCSR disagrees: %v", err)
	}
}

func FuzzParseNames(f *testing.F) {
	seeds := []struct {
		cn, sans string
		allow    bool
	}{
		{"api.internal", "api.internal\n10.0.0.7", false},
		{"", "*.example.com\nEXAMPLE.com.", true},
		{"*.example.com", "", false},
		{"", "xn--bcher-kva.example\nbücher.example\nxn--a.example", false},
		{"", "::ffff:10.0.0.1\nfe80::1%eth0\n2001:DB8::1\n0.0.0.0", false},
		{"", "spiffe://cluster.local/ns/a/sa/b\nspiffe://Cluster.local/x\nspiffe://td/a?x", false},
		{"", "HTTPS://Example.COM:8443/p?q=1\nhttps://[::1]:443/\nhttps://u@x/#f", false},
		{"ops@Example.com", "a@b@c\n@x.com\nA@x.com", false},
		{"", "1.2.3.256\nexample.123\nab--cd.x\n_a.b\na..b\n-a.b", true},
		{"", "a*.b.com\n*.*.b.com\nfoo.*.com\n*.com\n*", true},
		{label63 + ".com", name253 + "\n" + name254, false},
		{"", "", false},
		{"", "https://example.com/a%2Fb\nhttp://x/%7e\nhttps://[::ffff:1.2.3.4]/", false},
	}
	for _, s := range seeds {
		f.Add(s.cn, s.sans, s.allow)
	}
	f.Fuzz(func(t *testing.T, cn, sans string, allow bool) {
		var list []string
		if sans != "" {
			list = strings.Split(sans, "\n")
		}
		n, err := ParseNames(cn, list, allow)
		if err != nil {
			if n != nil {
				t.Fatalf("names alongside error %v", err)
			}
			checkRefusal(t, err)
			return
		}
		checkNames(t, n, allow)
	})
}

// FuzzNamesFromCSR feeds typed names straight in, as a hostile CSR could carry
// them, without the fuzzer having to forge signatures.
func FuzzNamesFromCSR(f *testing.F) {
	f.Add("api.internal", "a.example\n*.b.example", []byte{10, 0, 0, 1}, "spiffe://td/w", "ops@example.com", true)
	f.Add("", "10.0.0.1", []byte{1, 2, 3}, "https://u@x/", "a://b@example.com", false)
	f.Add("x", "", []byte(net.ParseIP("::ffff:10.0.0.2")), "HTTP://EXAMPLE.com/", "A@B.COM", false)
	f.Fuzz(func(t *testing.T, cn, dns string, ip []byte, uri, email string, allow bool) {
		csr := &x509.CertificateRequest{Subject: pkix.Name{CommonName: cn}}
		if dns != "" {
			csr.DNSNames = strings.Split(dns, "\n")
		}
		if len(ip) > 0 {
			csr.IPAddresses = []net.IP{ip}
		}
		if u, err := url.Parse(uri); err == nil && uri != "" {
			csr.URIs = []*url.URL{u}
		}
		if email != "" {
			csr.EmailAddresses = []string{email}
		}
		n, err := NamesFromCSR(csr, allow)
		if err != nil {
			checkRefusal(t, err)
			return
		}
		checkNames(t, n, allow)
	})
}

func FuzzParseCSR(f *testing.F) {
	tmpl := &x509.CertificateRequest{
		Subject:        pkix.Name{CommonName: "api.internal"},
		DNSNames:       []string{"api.internal", "*.api.internal", "bad_name.internal"},
		IPAddresses:    []net.IP{net.ParseIP("10.0.0.7")},
		URIs:           []*url.URL{{Scheme: "spiffe", Host: "cluster.local", Path: "/ns/a"}},
		EmailAddresses: []string{"ops@example.com"},
	}
	for _, k := range []string{"p256", "p384", "rsa2048", "ed25519", "p224"} {
		p := csrPEM(f, key(k), tmpl)
		f.Add(p)
		f.Add(pemOf("NEW CERTIFICATE REQUEST", csrDER(f, key(k), nil)))
		f.Add(p + p)
		f.Add(p + "trailing")
		f.Add(strings.Replace(p, "CERTIFICATE REQUEST", "CERTIFICATE", 2))
	}
	good := csrDER(f, key("p256"), nil)
	flipped := append([]byte(nil), good...)
	flipped[len(flipped)-1] ^= 1
	f.Add(pemOf("CERTIFICATE REQUEST", flipped))
	f.Add(string(good))
	f.Add("")
	f.Add("-----BEGIN CERTIFICATE REQUEST-----\n!!\n-----END CERTIFICATE REQUEST-----\n")
	f.Fuzz(func(t *testing.T, text string) {
		csr, err := ParseCSR(text)
		if err != nil {
			if csr != nil {
				t.Fatalf("CSR alongside error %v", err)
			}
			checkRefusal(t, err)
			return
		}
		if err := csr.CheckSignature(); err != nil {
			t.Fatalf("accepted a CSR whose signature does not verify: %v", err)
		}
		if KeyAlgorithm(csr.PublicKey) == "" {
			t.Fatalf("unnamed key %T", csr.PublicKey)
		}
		if err := CheckKey("csr", csr.PublicKey); err != nil {
			checkRefusal(t, err)
		}
		// Re-encoding what was accepted must give back the same request.
		again, err := ParseCSR(pemOf("CERTIFICATE REQUEST", csr.Raw))
		if err != nil || !bytes.Equal(again.Raw, csr.Raw) {
			t.Fatalf("accepted CSR does not round-trip: %v", err)
		}
		for _, allow := range []bool{false, true} {
			n, err := NamesFromCSR(csr, allow)
			if err != nil {
				checkRefusal(t, err)
				continue
			}
			checkNames(t, n, allow)
		}
	})
}

func FuzzSpan(f *testing.F) {
	f.Add(7, true, "", int64(7*day), int64(7*day))
	f.Add(0, false, "24h", int64(7*day), int64(7*day))
	f.Add(0, false, "7d", int64(365*day), int64(365*day))
	f.Add(3, true, "1h", int64(0), int64(7*day))
	f.Fuzz(func(t *testing.T, d int, useDays bool, ttl string, def, max int64) {
		if time.Duration(max) < MinSpan {
			max = int64(MinSpan)
		}
		var dp *int
		if useDays {
			dp = &d
		}
		got, err := Span(dp, ttl, time.Duration(def), time.Duration(max))
		if err != nil {
			checkRefusal(t, err)
			return
		}
		if got <= 0 || got > time.Duration(max) {
			t.Fatalf("span %s outside (0, %s]", got, time.Duration(max))
		}
		if (useDays || ttl != "") && got < MinSpan {
			t.Fatalf("requested span %s below the minimum", got)
		}
	})
}
