package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/certgate/certgate/internal/auth"
	"github.com/certgate/certgate/internal/config"
	"github.com/certgate/certgate/internal/server"
	"github.com/certgate/certgate/internal/servertest"
)

// runCLI runs certgate in-process and returns stdout, stderr and the error.
func runCLI(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	root := newRoot()
	var out, errOut bytes.Buffer
	root.SetArgs(args)
	root.SetOut(&out)
	root.SetErr(&errOut)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err := root.ExecuteContext(ctx)
	return out.String(), errOut.String(), err
}

var tokenLineRE = regexp.MustCompile(`(?m)^(cg_[A-Za-z0-9_-]{43})$`)

// parseTokenNew splits the human output of `token new` into the token and the
// YAML entry.
func parseTokenNew(t *testing.T, out string) (token string, entry string) {
	t.Helper()
	m := tokenLineRE.FindAllStringSubmatch(out, -1)
	if len(m) != 1 {
		t.Fatalf("want the token exactly once on a line of its own, found %d times in:\n%s", len(m), out)
	}
	token = m[0][1]
	_, entry, ok := strings.Cut(out, "then restart certgate:\n\n")
	if !ok {
		t.Fatalf("no config entry in:\n%s", out)
	}
	return token, entry
}

// loadEntry nests a printed entry in a config file and loads it the way
// `certgate serve` does.
func loadEntry(t *testing.T, entry string) *config.Config {
	t.Helper()
	var b strings.Builder
	b.WriteString("auth:\n  principals:\n")
	for _, l := range strings.Split(strings.TrimRight(entry, "\n"), "\n") {
		b.WriteString("    " + l + "\n")
	}
	path := filepath.Join(t.TempDir(), "certgate.yaml")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path, nil)
	if err != nil {
		t.Fatalf("the printed entry does not load: %v\n%s", err, b.String())
	}
	return cfg
}

func TestTokenNew(t *testing.T) {
	out, stderr, err := runCLI(t, "token", "new", "payments-ci",
		"--operations", "issue,read", "--profiles", "server", "--profiles", "client",
		"--allow", "*.payments.svc.cluster.local,10.20.0.0/16", "--allow", "spiffe://cluster.local/ns/payments/*",
		"--deny", "admin.payments.svc.cluster.local", "--max-validity", "3d")
	if err != nil {
		t.Fatalf("token new: %v\n%s", err, stderr)
	}
	if stderr != "" {
		t.Errorf("unexpected warnings for a complete policy: %s", stderr)
	}
	token, entry := parseTokenNew(t, out)
	if strings.Contains(entry, token) {
		t.Fatalf("the config entry contains the token:\n%s", entry)
	}
	if !strings.Contains(entry, "token_sha256: "+auth.HashToken(token)) {
		t.Fatalf("the entry does not carry the token's SHA-256 %s:\n%s", auth.HashToken(token), entry)
	}

	cfg := loadEntry(t, entry)
	if len(cfg.Auth.Principals) != 1 {
		t.Fatalf("%d principals loaded", len(cfg.Auth.Principals))
	}
	pc := cfg.Auth.Principals[0]
	if pc.Name != "payments-ci" || pc.MaxValidity != 72*time.Hour ||
		fmt.Sprint(pc.Operations) != "[issue read]" || fmt.Sprint(pc.Profiles) != "[server client]" ||
		len(pc.Allow) != 3 || fmt.Sprint(pc.Deny) != "[admin.payments.svc.cluster.local]" {
		t.Errorf("loaded principal %+v", pc)
	}
	a, err := auth.New(cfg.Auth, "")
	if err != nil {
		t.Fatal(err)
	}
	p, ok := a.FromBearer(token)
	if !ok || p.Name != "payments-ci" {
		t.Fatalf("the printed token does not authenticate as payments-ci")
	}
	for name, want := range map[string]bool{
		"api.payments.svc.cluster.local": true, "admin.payments.svc.cluster.local": false, "10.20.3.4": true,
		"10.21.0.1": false, "spiffe://cluster.local/ns/payments/sa/x": true, "api.other.svc": false,
	} {
		if ok, why := p.Policy.AllowsName(name); ok != want {
			t.Errorf("policy AllowsName(%q) = %v (%s), want %v", name, ok, why, want)
		}
	}

	// Every run makes a new token.
	out2, _, err := runCLI(t, "token", "new", "payments-ci", "--profiles", "server", "--allow", "x.internal")
	if err != nil {
		t.Fatal(err)
	}
	token2, _ := parseTokenNew(t, out2)
	if token2 == token {
		t.Error("two runs printed the same token")
	}
}

func TestTokenNewJSONAndTokenFile(t *testing.T) {
	out, _, err := runCLI(t, "token", "new", "ci", "--profiles", "server", "--allow", "*.ci.internal", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var o tokenNewOutput
	if err := json.Unmarshal([]byte(out), &o); err != nil {
		t.Fatalf("--json output: %v\n%s", err, out)
	}
	if o.Name != "ci" || o.Token == "" || auth.HashToken(o.Token) != o.TokenSHA256 || strings.Contains(o.ConfigYAML, o.Token) {
		t.Fatalf("--json output %+v", o)
	}
	var entries []config.Principal
	if err := yaml.Unmarshal([]byte(o.ConfigYAML), &entries); err != nil || len(entries) != 1 || entries[0].TokenSHA256 != o.TokenSHA256 {
		t.Fatalf("config_yaml %q: %v %+v", o.ConfigYAML, err, entries)
	}

	path := filepath.Join(t.TempDir(), "ci.token")
	out, _, err = runCLI(t, "token", "new", "ci", "--profiles", "server", "--allow", "*.ci.internal", "--token-file", path)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	tok := strings.TrimSpace(string(b))
	if !tokenLineRE.MatchString(tok) {
		t.Fatalf("token file holds %q", b)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Errorf("token file mode %v, want 0600", fi.Mode().Perm())
	}
	if strings.Contains(out, tok) || tokenLineRE.MatchString(out) {
		t.Errorf("with --token-file the token was printed too:\n%s", out)
	}
	if !strings.Contains(out, auth.HashToken(tok)) {
		t.Errorf("the entry does not carry the file's token hash:\n%s", out)
	}
	// An existing file is never replaced.
	if _, _, err := runCLI(t, "token", "new", "ci", "--allow", "x.internal", "--profiles", "server", "--token-file", path); err == nil ||
		!strings.Contains(err.Error(), "already exists") {
		t.Errorf("existing --token-file: err %v", err)
	}
	if b2, _ := os.ReadFile(path); !bytes.Equal(b, b2) {
		t.Error("the existing token file was changed")
	}
}

func TestTokenNewRefusesBadInput(t *testing.T) {
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"token", "new"}, "accepts 1 arg"},
		{[]string{"token", "new", "a", "b"}, "accepts 1 arg"},
		{[]string{"token", "new", "has space"}, "no spaces"},
		{[]string{"token", "new", "admin"}, "bootstrap admin"},
		{[]string{"token", "new", strings.Repeat("n", 129)}, "1 to 128"},
		{[]string{"token", "new", "p", "--operations", "issue,sudo"}, "unknown operation"},
		{[]string{"token", "new", "p", "--allow", "10.0.0.1/8"}, "host bits"},
		{[]string{"token", "new", "p", "--deny", "a.*.example.com"}, "wildcard"},
		{[]string{"token", "new", "p", "--max-validity", "forever"}, "max-validity"},
		{[]string{"token", "new", "p", "--max-validity", "-1h"}, "max-validity"},
	}
	for _, c := range cases {
		out, _, err := runCLI(t, c.args...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: err %v, want %q", c.args[2:], err, c.want)
		}
		if tokenLineRE.MatchString(out) || strings.Contains(out, "cg_") {
			t.Errorf("%v: a refused run printed a token:\n%s", c.args[2:], out)
		}
	}
}

func TestTokenNewWarnsAboutUselessPolicies(t *testing.T) {
	_, stderr, err := runCLI(t, "token", "new", "p")
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{"no --profiles", "no --allow"} {
		if !strings.Contains(stderr, w) {
			t.Errorf("no warning %q in %q", w, stderr)
		}
	}
	_, stderr, err = runCLI(t, "token", "new", "auditor", "--operations", "read,revoke")
	if err != nil {
		t.Fatal(err)
	}
	if stderr != "" {
		t.Errorf("a principal that does not issue got warnings: %s", stderr)
	}
}

// TestTokenNewAgainstServer configures a server with the printed entry, uses
// the CLI with the printed token (local key + CSR, server key, given CSR) and
// checks that neither the token nor any key or CSR reaches the server's logs.
func TestTokenNewAgainstServer(t *testing.T) {
	out, _, err := runCLI(t, "token", "new", "cli-ci", "--profiles", "server", "--allow", "*.cli.internal", "--max-validity", "48h")
	if err != nil {
		t.Fatal(err)
	}
	token, entry := parseTokenNew(t, out)
	pcs := loadEntry(t, entry).Auth.Principals
	env := servertest.Start(t, func(c *config.Config, _ *server.Options) { c.Auth.Principals = pcs })
	caFile := filepath.Join(t.TempDir(), "root.pem")
	if err := os.WriteFile(caFile, env.RootPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	base := []string{"--server", env.URL, "--token", token, "--ca-file", caFile}
	secrets := map[string]string{"cli token": token, "bootstrap token": env.Srv.Token}

	dir := t.TempDir()
	if _, stderr, err := runCLI(t, append([]string{"issue", "--profile", "server", "--cn", "a.cli.internal", "--ttl", "24h", "--out", filepath.Join(dir, "local")}, base...)...); err != nil {
		t.Fatalf("issue with a local key: %v %s", err, stderr)
	}
	if _, stderr, err := runCLI(t, append([]string{"issue", "--profile", "server", "--cn", "b.cli.internal", "--ttl", "24h", "--server-key", "--key-type", "rsa-2048", "--out", filepath.Join(dir, "server")}, base...)...); err != nil {
		t.Fatalf("issue with a server key: %v %s", err, stderr)
	}
	for _, d := range []string{"local", "server"} {
		k, err := os.ReadFile(filepath.Join(dir, d, "tls.key"))
		if err != nil {
			t.Fatal(err)
		}
		secrets[d+" key"] = string(k)
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "c.cli.internal"}, DNSNames: []string{"c.cli.internal"}}, key)
	if err != nil {
		t.Fatal(err)
	}
	csr := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
	secrets["csr"] = csr
	csrFile := filepath.Join(dir, "c.csr")
	if err := os.WriteFile(csrFile, []byte(csr), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, stderr, err := runCLI(t, append([]string{"issue", "--profile", "server", "--csr", csrFile, "--ttl", "24h"}, base...)...); err != nil {
		t.Fatalf("issue with a CSR: %v %s", err, stderr)
	}
	// Refusals: over max_validity, a name outside the policy, a wrong token.
	if _, _, err := runCLI(t, append([]string{"issue", "--profile", "server", "--cn", "d.cli.internal", "--days", "3"}, base...)...); err == nil || !strings.Contains(err.Error(), "403") {
		t.Errorf("over max_validity: %v, want 403", err)
	}
	if _, _, err := runCLI(t, append([]string{"issue", "--profile", "server", "--csr", csrFile, "--ttl", "24h", "--san", "evil.example.com"}, base...)...); err == nil {
		t.Error("a name outside the policy was issued")
	}
	bad := []string{"--server", env.URL, "--token", token[:len(token)-1] + "x", "--ca-file", caFile}
	if _, _, err := runCLI(t, append([]string{"list"}, bad...)...); err == nil || !strings.Contains(err.Error(), "401") {
		t.Errorf("wrong token: %v, want 401", err)
	}
	secrets["wrong token"] = bad[3]

	// The issued certificates belong to cli-ci.
	stdout, _, err := runCLI(t, append([]string{"list", "--json"}, base...)...)
	if err != nil {
		t.Fatal(err)
	}
	var page struct {
		Certificates []struct {
			Requester string `json:"requester"`
		} `json:"certificates"`
	}
	if err := json.Unmarshal([]byte(stdout), &page); err != nil || len(page.Certificates) != 3 {
		t.Fatalf("list: %v %s", err, stdout)
	}
	for _, c := range page.Certificates {
		if c.Requester != "cli-ci" {
			t.Errorf("requester %q, want cli-ci", c.Requester)
		}
	}

	logs := env.RenderedLogs(t)
	if len(logs) < 8 {
		t.Fatalf("only %d log entries: is the observer wired?", len(logs))
	}
	if !strings.Contains(strings.Join(logs, "\n"), `"principal":"cli-ci"`) {
		t.Fatal("the rendered logs do not show the principal field: the search below would prove nothing")
	}
	for what, s := range secrets {
		for _, needle := range servertest.LeakNeedles(s) {
			for _, l := range logs {
				if strings.Contains(l, needle) {
					t.Errorf("the %s appears in the server log: %s", what, l)
				}
			}
		}
	}
}
