package e2e

import (
	"net/url"
	"slices"
	"testing"

	"github.com/certgate/certgate/internal/servertest"
)

// TestListByCommonName: GET /v1/certificates?common_name=X finds the
// certificates whose common name is X, spelled as the issue response
// returned it. DNS names are case-insensitive (any case finds them); the
// local part of an e-mail address and the path of a URI are not, so they
// must match as issued.
func TestListByCommonName(t *testing.T) {
	env := servertest.Start(t)
	cases := []struct {
		name    string
		profile string
		cn      string
		queries []string // spellings that must find it
	}{
		{"DNS name", "server", "api.list.example.com", []string{"api.list.example.com", "API.List.Example.COM", "api.list.example.com."}},
		{"e-mail address with upper-case local part", "client", "Alice.Smith@list.example.com", []string{"Alice.Smith@list.example.com", "Alice.Smith@LIST.example.com"}},
		{"SPIFFE ID with upper-case path", "client", "spiffe://cluster.local/ns/Payments/sa/API", []string{"spiffe://cluster.local/ns/Payments/sa/API"}},
		{"IP address", "server", "10.9.8.7", []string{"10.9.8.7"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			res := issue(t, env, map[string]any{"profile": c.profile, "common_name": c.cn})
			if res.CommonName != c.cn {
				t.Fatalf("issued with common_name %q, want %q", res.CommonName, c.cn)
			}
			for _, q := range c.queries {
				got := listAll(t, env, "common_name="+url.QueryEscape(q))
				if !slices.Contains(got, res.Serial) {
					t.Errorf("common_name=%s lists %v, not the certificate %s issued for %q", q, got, res.Serial, c.cn)
				}
			}
		})
	}
}

// TestCSRCommonNameKeptWhenRequestListsOnlySANs: with a CSR, a request that
// lists the same SANs but no common_name does not override the CSR's common
// name; the certificate keeps it.
func TestCSRCommonNameKeptWhenRequestListsOnlySANs(t *testing.T) {
	env := servertest.Start(t)
	csr := makeCSR(t, p256(t), csrSpec{CN: "cn.csr.example.com", DNS: []string{"cn.csr.example.com", "alt.csr.example.com"}})
	for _, c := range []struct {
		name   string
		req    map[string]any
		wantCN string
	}{
		{"names from the CSR", map[string]any{"profile": "server", "csr": csr}, "cn.csr.example.com"},
		{"request lists the SANs only", map[string]any{"profile": "server", "csr": csr, "sans": []string{"alt.csr.example.com", "cn.csr.example.com"}}, "cn.csr.example.com"},
		{"request names another CN of the set", map[string]any{"profile": "server", "csr": csr, "common_name": "alt.csr.example.com", "sans": []string{"cn.csr.example.com"}}, "alt.csr.example.com"},
	} {
		t.Run(c.name, func(t *testing.T) {
			res := issue(t, env, c.req)
			leaf := parseOneCert(t, "certificate", res.Certificate)
			if res.CommonName != c.wantCN || leaf.Subject.CommonName != c.wantCN {
				t.Errorf("common name: response %q, certificate %q; want %q", res.CommonName, leaf.Subject.CommonName, c.wantCN)
			}
			if got := sortedCopy(leaf.DNSNames); !slices.Equal(got, []string{"alt.csr.example.com", "cn.csr.example.com"}) {
				t.Errorf("DNS SANs %v", got)
			}
		})
	}
}
