package e2e

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/certgate/certgate/internal/servertest"
)

// profileWant is one row of the design contract's profile table.
type profileWant struct {
	name string
	ku   x509.KeyUsage
	eku  []x509.ExtKeyUsage
	ca   string
}

var leafProfiles = []profileWant{
	{"client", x509.KeyUsageDigitalSignature | x509.KeyUsageKeyAgreement, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, "client-ca"},
	{"server", x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, "server-ca"},
	{"machine", x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth}, "istio-ca"},
}

var (
	oidKeyUsage         = asn1.ObjectIdentifier{2, 5, 29, 15}
	oidExtKeyUsage      = asn1.ObjectIdentifier{2, 5, 29, 37}
	oidBasicConstraints = asn1.ObjectIdentifier{2, 5, 29, 19}
)

// hostileExtensions asks, in the CSR, for everything a leaf must never get:
// keyCertSign and cRLSign, codeSigning and anyExtendedKeyUsage, CA:TRUE.
func hostileExtensions(t testing.TB) []pkix.Extension {
	t.Helper()
	// digitalSignature (bit 0), keyCertSign (bit 5), cRLSign (bit 6)
	ku, err := asn1.Marshal(asn1.BitString{Bytes: []byte{0x86}, BitLength: 7})
	if err != nil {
		t.Fatal(err)
	}
	eku, err := asn1.Marshal([]asn1.ObjectIdentifier{{1, 3, 6, 1, 5, 5, 7, 3, 3}, {2, 5, 29, 37, 0}})
	if err != nil {
		t.Fatal(err)
	}
	bc, err := asn1.Marshal(struct {
		IsCA       bool
		MaxPathLen int
	}{true, 5})
	if err != nil {
		t.Fatal(err)
	}
	return []pkix.Extension{
		{Id: oidKeyUsage, Critical: true, Value: ku},
		{Id: oidExtKeyUsage, Value: eku},
		{Id: oidBasicConstraints, Critical: true, Value: bc},
	}
}

var lowerHex = regexp.MustCompile(`^[0-9a-f]+$`)

// issueCase is one request of the acceptance table.
type issueCase struct {
	name     string
	csrKey   func(testing.TB) crypto.Signer // nil: the server generates the key
	hostile  bool                           // CSR asks for CA/codeSigning extensions
	listed   bool                           // request lists the names too (with a CSR)
	keyType  string                         // "" = default (ecdsa-p256)
	validity map[string]any                 // validity_days / ttl
	span     time.Duration                  // expected NotAfter-NotBefore
}

func issueCases() []issueCase {
	p256k := func(t testing.TB) crypto.Signer { return p256(t) }
	p384k := func(t testing.TB) crypto.Signer { return p384(t) }
	rsak := func(t testing.TB) crypto.Signer { return rsa2048(t) }
	week := 7 * 24 * time.Hour
	cs := []issueCase{
		{name: "csr-p256-hostile-extensions", csrKey: p256k, hostile: true, span: week},
		{name: "csr-p384-names-listed", csrKey: p384k, listed: true, span: week},
		{name: "csr-rsa2048-hostile-extensions", csrKey: rsak, hostile: true, listed: true, span: week},
		{name: "key-default", span: week},
		{name: "key-ecdsa-p256", keyType: "ecdsa-p256", span: week},
		{name: "key-rsa-2048", keyType: "rsa-2048", validity: map[string]any{"validity_days": 2}, span: 2 * 24 * time.Hour},
	}
	for _, d := range []int{1, 3, 7} {
		cs = append(cs, issueCase{name: fmt.Sprintf("validity_days-%d", d), validity: map[string]any{"validity_days": d}, span: time.Duration(d) * 24 * time.Hour})
	}
	for _, ttl := range []string{"24h", "90m", "36h", "7d", "168h"} {
		d := map[string]time.Duration{"24h": 24 * time.Hour, "90m": 90 * time.Minute, "36h": 36 * time.Hour, "7d": week, "168h": week}[ttl]
		cs = append(cs, issueCase{name: "ttl-" + ttl, validity: map[string]any{"ttl": ttl}, span: d})
	}
	return cs
}

// TestIssueProfiles is the main acceptance table: every leaf profile, every
// key source, every validity form, on SQLite and on PostgreSQL.
func TestIssueProfiles(t *testing.T) {
	for _, db := range []struct {
		name string
		opts func(t *testing.T) []servertest.Option
	}{
		{"sqlite", func(*testing.T) []servertest.Option { return nil }},
		{"postgres", func(t *testing.T) []servertest.Option { return []servertest.Option{servertest.WithPostgres(t)} }},
	} {
		t.Run(db.name, func(t *testing.T) {
			env := servertest.Start(t, db.opts(t)...)
			roots := trustBundle(t, env)
			if len(roots) != 1 {
				t.Fatalf("trust bundle has %d certificates, want the one local root", len(roots))
			}
			root := roots[0]
			caCerts := map[string]*x509.Certificate{}
			for _, p := range leafProfiles {
				chain := caChain(t, env, p.ca)
				if len(chain) != 2 || !bytes.Equal(chain[1].Raw, root.Raw) {
					t.Fatalf("GET /v1/cas/%s/chain: %d certificates, want the CA then the trust-bundle root", p.ca, len(chain))
				}
				caCerts[p.ca] = chain[0]
			}
			issued := map[string][]string{}
			for _, p := range leafProfiles {
				for _, c := range issueCases() {
					t.Run(p.name+"/"+c.name, func(t *testing.T) {
						if serial := checkIssue(t, env, p, c, root, caCerts[p.ca]); serial != "" {
							issued[p.name] = append(issued[p.name], serial)
						}
					})
				}
			}
			// Every certificate is listed under its profile, once, newest
			// first, across pages.
			for _, p := range leafProfiles {
				t.Run("list "+p.name, func(t *testing.T) {
					got := listAll(t, env, "profile="+p.name+"&status=issued&limit=4")
					want := map[string]bool{}
					for _, s := range issued[p.name] {
						want[s] = true
					}
					seen := map[string]bool{}
					for _, s := range got {
						if seen[s] {
							t.Errorf("serial %s listed twice", s)
						}
						seen[s] = true
					}
					for s := range want {
						if !seen[s] {
							t.Errorf("serial %s issued with profile %s is not listed", s, p.name)
						}
					}
					extra := len(seen) - len(want)
					if p.name == "server" {
						extra-- // the server's own TLS certificate
					}
					if extra != 0 {
						t.Errorf("%d certificates listed that were not issued with profile %s", extra, p.name)
					}
				})
			}
		})
	}
}

// checkIssue issues one certificate and checks it; it returns its serial.
func checkIssue(t *testing.T, env *servertest.Env, p profileWant, c issueCase, root, issuingCA *x509.Certificate) string {
	cn := "svc." + p.name + ".example.internal"
	alt := "alt." + p.name + ".example.internal"
	uri := "spiffe://cluster.local/ns/e2e/sa/" + p.name
	wantSANs := []string{cn, alt, "10.0.0.7", uri}
	req := map[string]any{"profile": p.name}
	var csrPub crypto.PublicKey
	if c.csrKey != nil {
		key := c.csrKey(t)
		csrPub = key.Public()
		spec := csrSpec{CN: cn, DNS: []string{cn, alt}, IPs: []string{"10.0.0.7"}, URIs: []string{uri}}
		if c.hostile {
			spec.Extra = hostileExtensions(t)
		}
		csrPEM := makeCSR(t, key, spec)
		if c.hostile {
			// The test means something only if the CSR really asks.
			b, _ := pem.Decode([]byte(csrPEM))
			parsed, err := x509.ParseCertificateRequest(b.Bytes)
			if err != nil {
				t.Fatal(err)
			}
			asked := 0
			for _, e := range parsed.Extensions {
				if e.Id.Equal(oidKeyUsage) || e.Id.Equal(oidExtKeyUsage) || e.Id.Equal(oidBasicConstraints) {
					asked++
				}
			}
			if asked != 3 {
				t.Fatalf("hostile CSR carries %d of the 3 requested extensions", asked)
			}
		}
		req["csr"] = csrPEM
		if c.listed {
			// Same set, another order and case: must be accepted.
			req["common_name"] = strings.ToUpper(cn)
			req["sans"] = []string{uri, "10.0.0.7", strings.ToUpper(alt)}
		}
	} else {
		req["common_name"] = cn
		req["sans"] = []string{alt, "10.0.0.7", uri}
		if c.keyType != "" {
			req["key_type"] = c.keyType
		}
	}
	for k, v := range c.validity {
		req[k] = v
	}
	before := time.Now()
	res := issue(t, env, req)

	// Response metadata.
	if res.Profile != p.name || res.CA != p.ca {
		t.Errorf("profile/ca = %q/%q, want %q/%q", res.Profile, res.CA, p.name, p.ca)
	}
	if res.CommonName != cn {
		t.Errorf("common_name = %q, want %q", res.CommonName, cn)
	}
	if got, want := sortedCopy(res.SANs), sortedCopy(wantSANs); !slices.Equal(got, want) {
		t.Errorf("sans = %q, want %q", got, want)
	}
	if !lowerHex.MatchString(res.Serial) || strings.HasPrefix(res.Serial, "0") {
		t.Errorf("serial %q is not lower-case hex without colons or leading zeros", res.Serial)
	}
	if res.CertificateARN != "" {
		t.Errorf("certificate_arn %q on the local CA", res.CertificateARN)
	}

	// The leaf, parsed.
	leaf := parseOneCert(t, "certificate", res.Certificate)
	if got := leaf.SerialNumber.Text(16); got != res.Serial {
		t.Errorf("leaf serial %s, response serial %s", got, res.Serial)
	}
	if leaf.KeyUsage != p.ku {
		t.Errorf("KeyUsage = %b, want exactly %b", leaf.KeyUsage, p.ku)
	}
	if !slices.Equal(leaf.ExtKeyUsage, p.eku) || len(leaf.UnknownExtKeyUsage) != 0 {
		t.Errorf("ExtKeyUsage = %v (+unknown %v), want exactly %v", leaf.ExtKeyUsage, leaf.UnknownExtKeyUsage, p.eku)
	}
	if leaf.IsCA {
		t.Errorf("leaf is a CA (basic constraints CA:TRUE)")
	}
	for _, e := range leaf.Extensions {
		if e.Id.Equal(oidBasicConstraints) && bytes.Contains(e.Value, []byte{0x01, 0x01, 0xff}) {
			t.Errorf("basic constraints extension carries cA TRUE: %x", e.Value)
		}
	}
	if leaf.Subject.CommonName != cn {
		t.Errorf("subject CN %q, want %q", leaf.Subject.CommonName, cn)
	}
	if !slices.Contains(leaf.DNSNames, cn) || !slices.Contains(leaf.DNSNames, alt) || len(leaf.DNSNames) != 2 {
		t.Errorf("DNS SANs %q, want %q and %q", leaf.DNSNames, cn, alt)
	}
	if len(leaf.IPAddresses) != 1 || leaf.IPAddresses[0].String() != "10.0.0.7" {
		t.Errorf("IP SANs %v, want [10.0.0.7]", leaf.IPAddresses)
	}
	if len(leaf.URIs) != 1 || leaf.URIs[0].String() != uri {
		t.Errorf("URI SANs %v, want [%s]", leaf.URIs, uri)
	}

	// Validity: counted NotBefore → NotAfter, at most 7 days in total.
	span := leaf.NotAfter.Sub(leaf.NotBefore)
	if span > 7*24*time.Hour {
		t.Errorf("validity span %s exceeds 7 days", span)
	}
	if span > c.span || span < c.span-2*time.Minute {
		t.Errorf("validity span %s, want %s (backdating counted inside it)", span, c.span)
	}
	if leaf.NotBefore.After(before.Add(time.Second)) || !leaf.NotAfter.After(time.Now()) {
		t.Errorf("leaf not valid now: %s .. %s", leaf.NotBefore, leaf.NotAfter)
	}
	if !res.NotBefore.Equal(leaf.NotBefore) || !res.NotAfter.Equal(leaf.NotAfter) {
		t.Errorf("response validity %s..%s differs from the certificate's %s..%s", res.NotBefore, res.NotAfter, leaf.NotBefore, leaf.NotAfter)
	}

	// Issuer: the profile's CA, as GET /v1/cas/{name}/chain serves it.
	if !bytes.Equal(leaf.RawIssuer, issuingCA.RawSubject) {
		t.Errorf("leaf issuer %q, want %s's subject %q", leaf.Issuer, p.ca, issuingCA.Subject)
	}
	if err := leaf.CheckSignatureFrom(issuingCA); err != nil {
		t.Errorf("leaf not signed by %s: %v", p.ca, err)
	}

	// Chain, root, bundle.
	chain := parseCerts(t, "chain", res.Chain)
	if len(chain) == 0 || !bytes.Equal(chain[0].Raw, issuingCA.Raw) {
		t.Fatalf("chain does not start with the issuing CA %s (%d certificates)", p.ca, len(chain))
	}
	for i, cc := range chain {
		if bytes.Equal(cc.Raw, root.Raw) || bytes.Equal(cc.RawIssuer, cc.RawSubject) {
			t.Errorf("chain[%d] (%s) is the root or self-issued: the chain must exclude the root", i, cc.Subject)
		}
	}
	if r := parseOneCert(t, "root", res.Root); !bytes.Equal(r.Raw, root.Raw) {
		t.Errorf("response root is not the trust-bundle root")
	}
	bundle := parseCerts(t, "bundle", res.Bundle)
	want := append(append([]*x509.Certificate{leaf}, chain...), root)
	if len(bundle) != len(want) {
		t.Errorf("bundle has %d certificates, want leaf+chain+root = %d", len(bundle), len(want))
	} else {
		for i := range want {
			if !bytes.Equal(bundle[i].Raw, want[i].Raw) {
				t.Errorf("bundle[%d] is %s, want %s", i, bundle[i].Subject, want[i].Subject)
			}
		}
	}
	chains, err := leaf.Verify(x509.VerifyOptions{Roots: poolOf(root), Intermediates: poolOf(chain...), KeyUsages: p.eku})
	if err != nil {
		t.Errorf("x509.Verify to the trust-bundle root: %v", err)
	} else if last := chains[0][len(chains[0])-1]; !bytes.Equal(last.Raw, root.Raw) {
		t.Errorf("verified chain ends at %s, not the root", last.Subject)
	}

	// Private key: only when the server generated it, PKCS#8, matching.
	if c.csrKey != nil {
		if res.PrivateKey != "" {
			t.Errorf("private_key returned although the client sent a CSR")
		}
		if !leaf.PublicKey.(interface{ Equal(crypto.PublicKey) bool }).Equal(csrPub) {
			t.Errorf("leaf key is not the CSR's key")
		}
	} else {
		checkPrivateKey(t, res.PrivateKey, leaf, c.keyType)
	}

	// The row, readable by any spelling of the serial.
	for _, spelling := range []string{colonUpper(res.Serial), strings.ToUpper(res.Serial), res.Serial} {
		resp, body := call(t, env, "GET", "/v1/certificates/"+spelling, nil, nil)
		if resp.StatusCode != http.StatusOK {
			t.Errorf("GET /v1/certificates/%s: %d %s", spelling, resp.StatusCode, body)
			continue
		}
		var v struct {
			Serial, Status, Profile, CA, Certificate string
		}
		if err := json.Unmarshal(body, &v); err != nil {
			t.Fatal(err)
		}
		if v.Serial != res.Serial || v.Status != "issued" || v.Profile != p.name || v.CA != p.ca || v.Certificate != res.Certificate {
			t.Errorf("GET /v1/certificates/%s = {%s %s %s %s}, want {%s issued %s %s} and the same PEM", spelling, v.Serial, v.Status, v.Profile, v.CA, res.Serial, p.name, p.ca)
		}
	}
	return res.Serial
}

// listAll pages through GET /v1/certificates?query and returns the serials.
func listAll(t *testing.T, env *servertest.Env, query string) []string {
	t.Helper()
	var out []string
	token := ""
	for pages := 0; ; pages++ {
		if pages > 100 {
			t.Fatal("pagination does not end")
		}
		path := "/v1/certificates?" + query
		if token != "" {
			path += "&page_token=" + url.QueryEscape(token)
		}
		resp, body := call(t, env, "GET", path, nil, nil)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %d %s", path, resp.StatusCode, body)
		}
		var page struct {
			Certificates []struct {
				Serial string `json:"serial"`
			} `json:"certificates"`
			Next string `json:"next_page_token"`
		}
		if err := json.Unmarshal(body, &page); err != nil {
			t.Fatal(err)
		}
		for _, c := range page.Certificates {
			out = append(out, c.Serial)
		}
		if page.Next == "" {
			return out
		}
		token = page.Next
	}
}

func checkPrivateKey(t *testing.T, keyPEM string, leaf *x509.Certificate, keyType string) {
	t.Helper()
	if keyPEM == "" {
		t.Fatal("no private_key although the server generated the key")
	}
	b, rest := pem.Decode([]byte(keyPEM))
	if b == nil || b.Type != "PRIVATE KEY" || len(bytes.TrimSpace(rest)) != 0 {
		t.Fatalf("private_key is not one PKCS#8 'PRIVATE KEY' PEM block")
	}
	k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
	if err != nil {
		t.Fatalf("private_key is not PKCS#8: %v", err)
	}
	signer, ok := k.(crypto.Signer)
	if !ok || !signer.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(leaf.PublicKey) {
		t.Fatalf("private_key does not match the certificate")
	}
	switch keyType {
	case "", "ecdsa-p256":
		if ek, ok := k.(*ecdsa.PrivateKey); !ok || ek.Curve != elliptic.P256() {
			t.Errorf("generated key is %T, want ECDSA P-256", k)
		}
	case "rsa-2048":
		if rk, ok := k.(*rsa.PrivateKey); !ok || rk.N.BitLen() != 2048 {
			t.Errorf("generated key is %T, want RSA 2048", k)
		}
	}
}

func sortedCopy(s []string) []string {
	out := append([]string(nil), s...)
	sort.Strings(out)
	return out
}
