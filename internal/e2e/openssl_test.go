package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/certgate/certgate/internal/servertest"
)

const opensslPath = "/usr/bin/openssl"

func findOpenSSL(t *testing.T) string {
	t.Helper()
	if _, err := os.Stat(opensslPath); err == nil {
		return opensslPath
	}
	if p, err := exec.LookPath("openssl"); err == nil {
		return p
	}
	t.Skipf("openssl not found at %s nor on PATH: skipping the openssl agreement test", opensslPath)
	return ""
}

// TestOpenSSLAgrees has an independent implementation judge what certgate
// issues: the chain verifies for the profile's purposes (and not for the
// others), and the usages print exactly as the profile table says.
func TestOpenSSLAgrees(t *testing.T) {
	openssl := findOpenSSL(t)
	env := servertest.Start(t)
	root := trustBundle(t, env)[0]

	cases := []struct {
		profile  string
		ok, fail []string // -purpose values that must pass / fail
		ku, eku  string
	}{
		{"client", []string{"sslclient"}, []string{"sslserver"},
			"Digital Signature, Key Agreement", "TLS Web Client Authentication"},
		{"server", []string{"sslserver"}, []string{"sslclient"},
			"Digital Signature, Key Encipherment", "TLS Web Server Authentication"},
		{"machine", []string{"sslclient", "sslserver"}, nil,
			"Digital Signature, Key Encipherment", "TLS Web Client Authentication, TLS Web Server Authentication"},
	}
	for _, c := range cases {
		for _, keyType := range []string{"ecdsa-p256", "rsa-2048"} {
			t.Run(c.profile+"/"+keyType, func(t *testing.T) {
				res := issue(t, env, map[string]any{"profile": c.profile, "common_name": c.profile + ".openssl.example.internal",
					"sans": []string{"127.0.0.1"}, "key_type": keyType})
				dir := t.TempDir()
				write := func(name, data string) string {
					p := filepath.Join(dir, name)
					if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
						t.Fatal(err)
					}
					return p
				}
				rootF := write("root.pem", pemCert(root))
				chainF := write("chain.pem", res.Chain)
				leafF := write("leaf.pem", res.Certificate)
				verify := func(purpose string) (string, error) {
					out, err := exec.Command(openssl, "verify", "-x509_strict", "-CAfile", rootF, "-untrusted", chainF, "-purpose", purpose, leafF).CombinedOutput()
					return string(out), err
				}
				for _, purpose := range c.ok {
					out, err := verify(purpose)
					if err != nil || strings.TrimSpace(out) != leafF+": OK" {
						t.Errorf("openssl verify -purpose %s: %v\n%s", purpose, err, out)
					}
				}
				for _, purpose := range c.fail {
					if out, err := verify(purpose); err == nil {
						t.Errorf("openssl verify -purpose %s accepted a %s certificate:\n%s", purpose, c.profile, out)
					}
				}
				// The chain alone (without the root as CAfile) must not verify:
				// the root is what anchors trust, and the chain excludes it.
				if out, err := exec.Command(openssl, "verify", "-no-CAfile", "-no-CApath", "-CAfile", chainF, leafF).CombinedOutput(); err == nil {
					t.Errorf("leaf verified against the chain alone; the chain must not contain the root:\n%s", out)
				}

				out, err := exec.Command(openssl, "x509", "-noout", "-ext", "keyUsage,extendedKeyUsage", "-in", leafF).CombinedOutput()
				if err != nil {
					t.Fatalf("openssl x509 -ext: %v\n%s", err, out)
				}
				var lines []string
				for _, l := range strings.Split(string(out), "\n") {
					if l = strings.TrimSpace(l); l != "" {
						lines = append(lines, l)
					}
				}
				want := []string{"X509v3 Key Usage: critical", c.ku, "X509v3 Extended Key Usage:", c.eku}
				if strings.Join(lines, "\n") != strings.Join(want, "\n") {
					t.Errorf("openssl prints usages\n%s\nwant\n%s", strings.Join(lines, "\n"), strings.Join(want, "\n"))
				}

				// The generated key is PKCS#8 that openssl reads and that
				// matches the certificate.
				keyF := write("key.pem", res.PrivateKey)
				pubKey, err := exec.Command(openssl, "pkey", "-in", keyF, "-pubout").CombinedOutput()
				if err != nil {
					t.Fatalf("openssl pkey: %v\n%s", err, pubKey)
				}
				pubCert, err := exec.Command(openssl, "x509", "-in", leafF, "-noout", "-pubkey").CombinedOutput()
				if err != nil {
					t.Fatalf("openssl x509 -pubkey: %v\n%s", err, pubCert)
				}
				if string(pubKey) != string(pubCert) {
					t.Errorf("openssl: the private key's public half differs from the certificate's key")
				}
			})
		}
	}
}
