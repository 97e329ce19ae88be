package e2e

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/certgate/certgate/internal/config"
	"github.com/certgate/certgate/internal/server"
	"github.com/certgate/certgate/internal/servertest"
)

// peerChain does a TLS handshake with the server trusting nothing, and
// returns what the server presented.
func peerChain(t *testing.T, addr string) []*x509.Certificate {
	t.Helper()
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", addr,
		&tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatalf("TLS handshake with %s: %v", addr, err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates
}

// TestServerOwnCertificateAndRestart: the listener's certificate comes from
// certgate's own server CA and verifies against the trust bundle; a restart
// on the same data directory keeps the root, the token and the records; the
// secrets on disk are private.
func TestServerOwnCertificateAndRestart(t *testing.T) {
	dataDir := t.TempDir()
	sameDir := func(c *config.Config, _ *server.Options) { c.DataDir = dataDir }

	var firstRoot []byte
	var firstToken, serial string
	t.Run("first start", func(t *testing.T) {
		env := servertest.Start(t, sameDir)
		root := trustBundle(t, env)[0]
		firstRoot, firstToken = root.Raw, env.Srv.Token

		peers := peerChain(t, env.Srv.Addr())
		if len(peers) < 2 {
			t.Fatalf("server presented %d certificates, want its leaf and the server CA", len(peers))
		}
		leaf := peers[0]
		serverCA := caChain(t, env, "server-ca")[0]
		if !bytes.Equal(peers[1].Raw, serverCA.Raw) {
			t.Errorf("server presented %s as its issuer, want the server-ca certificate", peers[1].Subject)
		}
		for _, name := range []string{"localhost", "127.0.0.1", "::1"} {
			if _, err := leaf.Verify(x509.VerifyOptions{Roots: poolOf(root), Intermediates: poolOf(peers[1:]...),
				DNSName: name, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
				t.Errorf("server certificate does not verify for %s against GET /v1/trust-bundle: %v", name, err)
			}
		}
		if span := leaf.NotAfter.Sub(leaf.NotBefore); span > 7*24*time.Hour {
			t.Errorf("server certificate valid for %s, more than 7 days", span)
		}
		if !slices.Equal(leaf.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}) {
			t.Errorf("server certificate EKU %v, want the server profile's", leaf.ExtKeyUsage)
		}
		// A client trusting only the bundle connects with full verification.
		conn, err := tls.Dial("tcp", env.Srv.Addr(), &tls.Config{RootCAs: poolOf(root), ServerName: "localhost"})
		if err != nil {
			t.Errorf("verified TLS handshake: %v", err)
		} else {
			conn.Close()
		}
		// The server's own certificate is recorded like any other.
		resp, body := call(t, env, "GET", "/v1/certificates/"+leaf.SerialNumber.Text(16), nil, nil)
		if resp.StatusCode != http.StatusOK {
			t.Errorf("the server's own certificate is not recorded: %d %s", resp.StatusCode, body)
		}

		serial = issue(t, env, map[string]any{"profile": "client", "common_name": "before-restart.example.internal"}).Serial

		// Secrets on disk.
		wantMode(t, filepath.Join(dataDir, "admin.token"), 0o600)
		keys, _ := filepath.Glob(filepath.Join(dataDir, "ca", "*.key"))
		if len(keys) != 4 {
			t.Errorf("found CA key files %v, want root, client-ca, server-ca, istio-ca", keys)
		}
		for _, k := range keys {
			wantMode(t, k, 0o600)
		}
		tok, err := os.ReadFile(filepath.Join(dataDir, "admin.token"))
		if err != nil || strings.TrimSpace(string(tok)) != env.Srv.Token {
			t.Errorf("admin.token does not hold the bootstrap token (%v)", err)
		}
	})
	if t.Failed() {
		return
	}

	t.Run("second start", func(t *testing.T) {
		env := servertest.Start(t, sameDir)
		root := trustBundle(t, env)[0]
		if !bytes.Equal(root.Raw, firstRoot) {
			t.Fatal("the second start created a new root instead of reusing the one in the data directory")
		}
		if env.Srv.Token != firstToken {
			t.Error("the second start changed the admin token")
		}
		resp, body := call(t, env, "GET", "/v1/certificates?limit=1000", nil, nil)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("list: %d %s", resp.StatusCode, body)
		}
		var list struct {
			Certificates []struct{ Serial, Status string } `json:"certificates"`
		}
		if err := json.Unmarshal(body, &list); err != nil {
			t.Fatal(err)
		}
		found := false
		for _, c := range list.Certificates {
			found = found || c.Serial == serial
		}
		if !found {
			t.Errorf("certificate %s issued before the restart is not listed after it (%d listed)", serial, len(list.Certificates))
		}
		peers := peerChain(t, env.Srv.Addr())
		if _, err := peers[0].Verify(x509.VerifyOptions{Roots: poolOf(root), Intermediates: poolOf(peers[1:]...), DNSName: "localhost"}); err != nil {
			t.Errorf("after restart the server certificate does not verify against the same root: %v", err)
		}
		// The earlier certificate still verifies against the (same) bundle.
		resp, body = call(t, env, "GET", "/v1/certificates/"+serial, nil, nil)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s after restart: %d %s", serial, resp.StatusCode, body)
		}
		var v struct{ Certificate string }
		_ = json.Unmarshal(body, &v)
		old := parseOneCert(t, "old certificate", v.Certificate)
		if _, err := old.Verify(x509.VerifyOptions{Roots: poolOf(root), Intermediates: poolOf(caChain(t, env, "client-ca")[0]),
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
			t.Errorf("certificate from before the restart no longer verifies: %v", err)
		}
	})
}

func wantMode(t *testing.T, path string, want os.FileMode) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Errorf("%s: %v", path, err)
		return
	}
	if got := fi.Mode().Perm(); got != want {
		t.Errorf("%s has mode %o, want %o", path, got, want)
	}
}
