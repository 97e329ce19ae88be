package auth

import (
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/certgate/certgate/internal/config"
	"github.com/certgate/certgate/internal/policy"
)

func TestNewTokenAndHash(t *testing.T) {
	seen := map[string]bool{}
	tokRE := regexp.MustCompile(`^cg_[A-Za-z0-9_-]{43}$`)
	hexRE := regexp.MustCompile(`^[0-9a-f]{64}$`)
	for i := 0; i < 100; i++ {
		tok, h, err := NewToken()
		if err != nil {
			t.Fatal(err)
		}
		if !tokRE.MatchString(tok) {
			t.Fatalf("token %q: want cg_ + 43 base64url characters (256 bits)", tok)
		}
		if seen[tok] {
			t.Fatalf("token %q generated twice", tok)
		}
		seen[tok] = true
		sum := sha256.Sum256([]byte(tok))
		if h != hex.EncodeToString(sum[:]) || h != HashToken(tok) || !hexRE.MatchString(h) {
			t.Fatalf("hash %q of %q: want lower-case hex SHA-256 %x", h, tok, sum)
		}
		if strings.Contains(h, tok) || strings.Contains(tok, h) {
			t.Fatal("hash and token overlap")
		}
	}
}

func principal(name, token string, subjects ...string) config.Principal {
	p := config.Principal{Name: name, MTLSSubjects: subjects}
	if token != "" {
		p.TokenSHA256 = HashToken(token)
	}
	p.Operations = []string{policy.OpIssue, policy.OpRead}
	return p
}

func TestFromBearer(t *testing.T) {
	a, err := New(config.Auth{Principals: []config.Principal{
		principal("ci", "cg_ci-token"),
		principal("ops", "cg_ops-token"),
	}}, "cg_bootstrap")
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		token, want string
	}{
		{"cg_ci-token", "ci"},
		{"cg_ops-token", "ops"},
		{"cg_bootstrap", AdminName},
		{"", ""},
		{"cg_ci-toke", ""},
		{"cg_ci-token ", ""}, // the middleware trims; the authenticator compares bytes
		{"CG_CI-TOKEN", ""},
		{HashToken("cg_ci-token"), ""}, // the stored hash is not a credential
	}
	for _, c := range cases {
		p, ok := a.FromBearer(c.token)
		switch {
		case c.want == "" && (ok || p != nil):
			t.Errorf("FromBearer(%q) = %v, want refused", c.token, p.Name)
		case c.want != "" && (!ok || p == nil || p.Name != c.want):
			t.Errorf("FromBearer(%q) = %v %v, want %s", c.token, p, ok, c.want)
		}
	}
	admin, _ := a.FromBearer("cg_bootstrap")
	if !admin.Policy.IsAdmin() {
		t.Error("the bootstrap principal is not admin")
	}
	ci, _ := a.FromBearer("cg_ci-token")
	if ci.Policy.IsAdmin() || ci.Policy.Can(policy.OpRevoke) || !ci.Policy.Can(policy.OpIssue) {
		t.Error("the configured principal did not get its configured policy")
	}
}

func TestNewWithoutBootstrapHasNoAdmin(t *testing.T) {
	a, err := New(config.Auth{Principals: []config.Principal{principal("ci", "cg_x")}}, "")
	if err != nil {
		t.Fatal(err)
	}
	if p, ok := a.FromBearer(""); ok || p != nil {
		t.Fatal("an empty token authenticated")
	}
	if _, ok := a.FromBearer("cg_x"); !ok {
		t.Fatal("configured token refused")
	}
}

func TestNewTokenHashForms(t *testing.T) {
	h := HashToken("cg_t")
	for _, form := range []string{h, strings.ToUpper(h), " " + h + "\n"} {
		a, err := New(config.Auth{Principals: []config.Principal{{Name: "p", TokenSHA256: form}}}, "")
		if err != nil {
			t.Fatalf("token_sha256 %q: %v", form, err)
		}
		if _, ok := a.FromBearer("cg_t"); !ok {
			t.Errorf("token_sha256 %q: token refused", form)
		}
	}
	for _, bad := range []string{h[:63], h + "00", "zz" + h[2:], "cg_t", "sha256:" + h} {
		if _, err := New(config.Auth{Principals: []config.Principal{{Name: "p", TokenSHA256: bad}}}, ""); err == nil ||
			!strings.Contains(err.Error(), "64 hex") {
			t.Errorf("token_sha256 %q: err %v, want a 64 hex characters error", bad, err)
		}
	}
}

func TestNewRefusesBadPolicyAndDuplicateSubjects(t *testing.T) {
	bad := principal("p", "cg_a")
	bad.Allow = []string{"10.0.0.1/8"}
	if _, err := New(config.Auth{Principals: []config.Principal{bad}}, ""); err == nil || !strings.Contains(err.Error(), "principal p") {
		t.Errorf("bad allow pattern: err %v, want it to name principal p", err)
	}
	_, err := New(config.Auth{Principals: []config.Principal{
		principal("a", "", "spiffe://td/ns/x/sa/y"),
		principal("b", "", "spiffe://td/ns/x/sa/y"),
	}}, "")
	if err == nil || !strings.Contains(err.Error(), "mapped twice") {
		t.Errorf("duplicate mtls subject: err %v", err)
	}
}

func mustURL(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func TestFromCertificate(t *testing.T) {
	a, err := New(config.Auth{Principals: []config.Principal{
		principal("by-uri", "", "spiffe://cluster.local/ns/ci/sa/payments"),
		principal("by-cn", "", "ci-runner.internal"),
		principal("by-dn", "", "CN=legacy,OU=build,O=Example"),
	}}, "cg_admin")
	if err != nil {
		t.Fatal(err)
	}
	if !a.HasMTLS() {
		t.Fatal("HasMTLS false with mtls_subjects configured")
	}
	cases := []struct {
		name string
		cert *x509.Certificate
		want string
	}{
		{"uri", &x509.Certificate{URIs: []*url.URL{mustURL(t, "spiffe://cluster.local/ns/ci/sa/payments")}}, "by-uri"},
		{"uri among others", &x509.Certificate{URIs: []*url.URL{mustURL(t, "spiffe://cluster.local/ns/x/sa/y"), mustURL(t, "spiffe://cluster.local/ns/ci/sa/payments")}}, "by-uri"},
		{"uri beats cn", &x509.Certificate{Subject: pkix.Name{CommonName: "ci-runner.internal"}, URIs: []*url.URL{mustURL(t, "spiffe://cluster.local/ns/ci/sa/payments")}}, "by-uri"},
		{"cn", &x509.Certificate{Subject: pkix.Name{CommonName: "ci-runner.internal"}}, "by-cn"},
		{"cn when uri unmapped", &x509.Certificate{Subject: pkix.Name{CommonName: "ci-runner.internal"}, URIs: []*url.URL{mustURL(t, "spiffe://other/x")}}, "by-cn"},
		{"dn", &x509.Certificate{Subject: pkix.Name{CommonName: "legacy", OrganizationalUnit: []string{"build"}, Organization: []string{"Example"}}}, "by-dn"},
		{"uri differs by path", &x509.Certificate{URIs: []*url.URL{mustURL(t, "spiffe://cluster.local/ns/ci/sa/payments/x")}}, ""},
		{"cn differs by case", &x509.Certificate{Subject: pkix.Name{CommonName: "CI-RUNNER.internal"}}, ""},
		{"dn missing a part", &x509.Certificate{Subject: pkix.Name{CommonName: "legacy", Organization: []string{"Example"}}}, ""},
		{"dns san is not a subject", &x509.Certificate{DNSNames: []string{"ci-runner.internal"}}, ""},
		{"empty", &x509.Certificate{}, ""},
	}
	for _, c := range cases {
		p, ok := a.FromCertificate(c.cert)
		got := ""
		if ok {
			got = p.Name
		}
		if got != c.want {
			t.Errorf("%s: principal %q, want %q", c.name, got, c.want)
		}
	}
	// The bootstrap admin is a token only: no certificate maps to it.
	if p, ok := a.FromCertificate(&x509.Certificate{Subject: pkix.Name{CommonName: AdminName}}); ok {
		t.Errorf("CN=admin mapped to %s", p.Name)
	}
}

func TestFromBearerConcurrent(t *testing.T) {
	a, err := New(config.Auth{Principals: []config.Principal{principal("ci", "cg_ci")}}, "cg_admin")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 200; j++ {
				if p, ok := a.FromBearer("cg_ci"); !ok || p.Name != "ci" {
					t.Error("lost the principal under concurrency")
					return
				}
			}
		}()
	}
	wg.Wait()
}

func TestBootstrapToken(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	tok, err := LoadOrCreateBootstrapToken(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(tok, "cg_") {
		t.Errorf("token %q", tok)
	}
	path := filepath.Join(dir, TokenFileName)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("token file mode %v, want 0600", fi.Mode().Perm())
	}
	di, _ := os.Stat(dir)
	if di.Mode().Perm()&0o077 != 0 {
		t.Errorf("data dir mode %v: readable by others", di.Mode().Perm())
	}
	again, err := LoadOrCreateBootstrapToken(dir)
	if err != nil || again != tok {
		t.Fatalf("second load: %q %v, want the same token", again, err)
	}
	if err := os.WriteFile(path, []byte(" \n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadOrCreateBootstrapToken(dir); err == nil {
		t.Error("an empty token file was accepted")
	}
	if err := os.WriteFile(path, []byte("cg_hand-made\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got, err := LoadOrCreateBootstrapToken(dir); err != nil || got != "cg_hand-made" {
		t.Errorf("hand-written token: %q %v", got, err)
	}
}
