package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/certgate/certgate/internal/api"
	"github.com/certgate/certgate/internal/issuance"
	"github.com/certgate/certgate/internal/revocation"
	"github.com/certgate/certgate/internal/servertest"
)

func rvCLI(t *testing.T, args ...string) (string, error) {
	t.Helper()
	root := newRoot()
	var out, errOut bytes.Buffer
	root.SetArgs(args)
	root.SetOut(&out)
	root.SetErr(&errOut)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err := root.ExecuteContext(ctx)
	return out.String(), err
}

func TestRevokeAndEventsCLI(t *testing.T) {
	e := servertest.Start(t)
	caFile := filepath.Join(t.TempDir(), "root.pem")
	if err := os.WriteFile(caFile, e.RootPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	conn := []string{"--server", e.URL, "--token", e.Srv.Token, "--ca-file", caFile}
	since := time.Now().UTC().Add(-time.Second).Format(time.RFC3339Nano)

	var serials []string
	for _, cn := range []string{"cli1.example.test", "cli2.example.test"} {
		var res issuance.Result
		req := issuance.Request{Profile: "server", CommonName: cn, KeyType: issuance.KeyECDSAP256}
		if _, err := e.Client.Do(context.Background(), "POST", "/v1/certificates", req, &res, nil); err != nil {
			t.Fatal(err)
		}
		serials = append(serials, res.Serial)
	}

	out, err := rvCLI(t, append([]string{"revoke", serials[0], "--reason", "key_compromise"}, conn...)...)
	if err != nil || !strings.Contains(out, "revoked     "+serials[0]) || !strings.Contains(out, "key_compromise") {
		t.Fatalf("revoke: %v\n%s", err, out)
	}
	out, err = rvCLI(t, append([]string{"revoke", serials[1], "--json"}, conn...)...)
	var v api.CertificateView
	if err != nil || json.Unmarshal([]byte(out), &v) != nil || v.Status != "revoked" || v.RevocationReason != "unspecified" {
		t.Fatalf("revoke --json: %v\n%s", err, out)
	}
	if _, err := rvCLI(t, append([]string{"revoke", serials[1]}, conn...)...); err == nil || !strings.Contains(err.Error(), "409") {
		t.Fatalf("second revoke: %v", err)
	}
	if _, err := rvCLI(t, append([]string{"revoke", serials[1], "--reason", "certificate_hold"}, conn...)...); err == nil || !strings.Contains(err.Error(), "permanent") {
		t.Fatalf("certificate_hold: %v", err)
	}

	out, err = rvCLI(t, append([]string{"events", "--ca", "server-ca", "--type", "revoked", "--since", since, "--json", "--all", "--limit", "1", "--order", "oldest"}, conn...)...)
	var page revocation.EventPage
	if err != nil || json.Unmarshal([]byte(out), &page) != nil || len(page.Events) != 2 || page.Events[0].Serial != serials[0] || page.Events[1].Serial != serials[1] {
		t.Fatalf("events --json: %v\n%s", err, out)
	}
	out, err = rvCLI(t, append([]string{"events", "--ca", "server-ca", "--since", "1h", "--until", "0s"}, conn...)...)
	if err != nil || !strings.Contains(out, "TIME") || strings.Count(out, "revoked") != 2 || !strings.Contains(out, "reason=key_compromise") {
		t.Fatalf("events: %v\n%s", err, out)
	}
	if _, err := rvCLI(t, append([]string{"events", "--since", "last tuesday"}, conn...)...); err == nil {
		t.Fatal("bad --since accepted")
	}
}
