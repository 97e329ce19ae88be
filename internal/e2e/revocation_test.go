package e2e

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/certgate/certgate/internal/api"
	"github.com/certgate/certgate/internal/apierror"
	"github.com/certgate/certgate/internal/auth"
	"github.com/certgate/certgate/internal/ca"
	"github.com/certgate/certgate/internal/client"
	"github.com/certgate/certgate/internal/config"
	"github.com/certgate/certgate/internal/issuance"
	"github.com/certgate/certgate/internal/policy"
	"github.com/certgate/certgate/internal/revocation"
	"github.com/certgate/certgate/internal/server"
	"github.com/certgate/certgate/internal/servertest"
	"github.com/certgate/certgate/internal/store"
)

const rvOpenSSL = "/usr/bin/openssl"

// rvDatabases runs f on SQLite and, when configured, PostgreSQL.
func rvDatabases(t *testing.T, f func(t *testing.T, db servertest.Option)) {
	t.Run("sqlite", func(t *testing.T) { f(t, func(*config.Config, *server.Options) {}) })
	t.Run("postgres", func(t *testing.T) { f(t, servertest.WithPostgres(t)) })
}

func rvPublic(c *config.Config, _ *server.Options) { c.PublicListen = "127.0.0.1:0" }

func rvIssue(t *testing.T, c *client.Client, profile, cn string) *issuance.Result {
	t.Helper()
	var res issuance.Result
	req := issuance.Request{Profile: profile, CommonName: cn, KeyType: issuance.KeyECDSAP256}
	if _, err := c.Do(context.Background(), "POST", "/v1/certificates", req, &res, nil); err != nil {
		t.Fatalf("issue %s %s: %v", profile, cn, err)
	}
	return &res
}

func rvRevoke(c *client.Client, serial string, body any) (*api.CertificateView, error) {
	var v api.CertificateView
	_, err := c.Do(context.Background(), "POST", "/v1/certificates/"+serial+"/revoke", body, &v, nil)
	return &v, err
}

func rvStatus(err error) int {
	var ce *client.Error
	if errors.As(err, &ce) {
		return ce.Status
	}
	if err == nil {
		return 200
	}
	return -1
}

func rvCert(t *testing.T, pemText string) *x509.Certificate {
	t.Helper()
	b, _ := pem.Decode([]byte(pemText))
	if b == nil {
		t.Fatal("no PEM")
	}
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func rvGet(t *testing.T, hc *http.Client, u string) (*http.Response, []byte) {
	t.Helper()
	resp, err := hc.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

func rvWrite(t *testing.T, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func rvRun(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command(rvOpenSSL, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("openssl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func rvCRL(t *testing.T, hc *http.Client, u string, issuer *x509.Certificate) (*x509.RevocationList, []byte) {
	t.Helper()
	resp, der := rvGet(t, hc, u)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/pkix-crl" {
		t.Fatalf("GET %s: %d %s %s", u, resp.StatusCode, resp.Header.Get("Content-Type"), der)
	}
	rl, err := x509.ParseRevocationList(der)
	if err != nil {
		t.Fatal(err)
	}
	if err := rl.CheckSignatureFrom(issuer); err != nil {
		t.Fatalf("CRL signature: %v", err)
	}
	return rl, der
}

func rvEntries(rl *x509.RevocationList) map[string]int {
	m := map[string]int{}
	for _, e := range rl.RevokedCertificateEntries {
		m[ca.FormatSerial(e.SerialNumber)] = e.ReasonCode
	}
	return m
}

func rvOCSP(t *testing.T, hc *http.Client, base string, get bool, reqDER []byte) []byte {
	t.Helper()
	var resp *http.Response
	var err error
	if get {
		resp, err = hc.Get(base + "/" + url.PathEscape(base64.StdEncoding.EncodeToString(reqDER)))
	} else {
		resp, err = hc.Post(base, "application/ocsp-request", bytes.NewReader(reqDER))
	}
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/ocsp-response" {
		t.Fatalf("OCSP %s: %d %q %s", base, resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
	return body
}

// TestRevocationCRLAndOCSP: revoke through the API, then check the CRL and
// OCSP answers with openssl and with Go, on the main and public listeners.
func TestRevocationCRLAndOCSP(t *testing.T) {
	if _, err := os.Stat(rvOpenSSL); err != nil {
		t.Skip("openssl not installed")
	}
	rvDatabases(t, func(t *testing.T, db servertest.Option) {
		e := servertest.Start(t, db, rvPublic)
		pub := "http://" + e.Srv.PublicAddr()
		if e.Srv.PublicAddr() == "" {
			t.Fatal("public listener not started")
		}
		hc := e.Client.HTTP
		a := rvIssue(t, e.Client, "server", "a.example.test")
		b := rvIssue(t, e.Client, "server", "b.example.test")
		good := rvIssue(t, e.Client, "server", "good.example.test")
		cl := rvIssue(t, e.Client, "client", "c.example.test")
		issuer := rvCert(t, a.Chain)
		root := rvCert(t, a.Root)

		rl0, _ := rvCRL(t, hc, e.URL+"/v1/cas/server-ca/crl", issuer)
		if len(rl0.RevokedCertificateEntries) != 0 {
			t.Fatalf("fresh CRL has entries: %v", rvEntries(rl0))
		}
		if v, err := rvRevoke(e.Client, a.Serial, map[string]string{"reason": "key_compromise"}); err != nil || v.Status != "revoked" || v.RevocationReason != "key_compromise" || v.RevokedAt == nil {
			t.Fatalf("revoke a: %+v %v", v, err)
		}
		// Colons and upper case are accepted.
		sn, _ := ca.ParseSerial(b.Serial)
		if _, err := rvRevoke(e.Client, strings.ToUpper(ca.ColonSerial(sn)), map[string]string{"reason": "superseded"}); err != nil {
			t.Fatalf("revoke b: %v", err)
		}
		if _, err := rvRevoke(e.Client, cl.Serial, map[string]string{"reason": "affiliation_changed"}); err != nil {
			t.Fatalf("revoke client: %v", err)
		}

		rl1, der := rvCRL(t, hc, e.URL+"/v1/cas/server-ca/crl", issuer)
		want := map[string]int{a.Serial: revocation.ReasonKeyCompromise, b.Serial: revocation.ReasonSuperseded}
		if got := rvEntries(rl1); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("CRL entries %v, want %v", got, want)
		}
		if rl1.Number.Cmp(rl0.Number) <= 0 {
			t.Fatalf("CRL number %v after %v", rl1.Number, rl0.Number)
		}
		if d := rl1.NextUpdate.Sub(rl1.ThisUpdate); d != revocation.CRLValidity {
			t.Fatalf("CRL validity %v", d)
		}
		// The public listener and the CRL DP path serve the same CRL.
		_, pubDER := rvCRL(t, http.DefaultClient, pub+"/crl/server-ca.crl", issuer)
		_, mainDER := rvCRL(t, hc, e.URL+"/crl/server-ca.crl", issuer)
		if !bytes.Equal(pubDER, der) || !bytes.Equal(mainDER, der) {
			t.Fatal("listeners serve different CRLs")
		}
		clientCA := rvCert(t, cl.Chain)
		rlc, _ := rvCRL(t, hc, e.URL+"/v1/cas/client-ca/crl", clientCA)
		if got := rvEntries(rlc); len(got) != 1 || got[cl.Serial] != revocation.ReasonAffiliationChanged {
			t.Fatalf("client-ca CRL %v", got)
		}
		rvCRL(t, hc, e.URL+"/v1/cas/root/crl", root)
		if resp, _ := rvGet(t, hc, e.URL+"/v1/cas/nope/crl"); resp.StatusCode != 404 {
			t.Fatalf("unknown CA CRL: %d", resp.StatusCode)
		}

		// openssl parses and verifies the CRL and lists exactly the revoked serials.
		dir := t.TempDir()
		crlFile := rvWrite(t, dir, "crl.der", der)
		text := rvRun(t, "crl", "-inform", "DER", "-in", crlFile, "-noout", "-text")
		var listed []string
		for _, m := range regexp.MustCompile(`Serial Number: ([0-9A-Fa-f]+)`).FindAllStringSubmatch(text, -1) {
			s, _ := ca.NormalizeSerial(m[1])
			listed = append(listed, s)
		}
		if len(listed) != 2 || !(listed[0] == a.Serial && listed[1] == b.Serial || listed[0] == b.Serial && listed[1] == a.Serial) {
			t.Fatalf("openssl lists %v, want %s and %s\n%s", listed, a.Serial, b.Serial, text)
		}
		if !strings.Contains(text, "Key Compromise") || !strings.Contains(text, "Superseded") || !strings.Contains(text, "X509v3 CRL Number") {
			t.Fatalf("openssl text lacks reasons or number:\n%s", text)
		}
		chainFile := rvWrite(t, dir, "chain.pem", []byte(a.Chain+a.Root))
		if out := rvRun(t, "crl", "-inform", "DER", "-in", crlFile, "-CAfile", chainFile, "-noout"); !strings.Contains(out, "verify OK") {
			t.Fatalf("openssl crl verify: %s", out)
		}
		t.Logf("openssl crl -text:\n%s", text)

		// openssl ocsp against the public listener.
		issuerFile := rvWrite(t, dir, "server-ca.pem", []byte(a.Chain))
		for _, tc := range []struct {
			res  *issuance.Result
			want string
		}{{a, "revoked"}, {good, "good"}} {
			leafFile := rvWrite(t, dir, tc.res.Serial+".pem", []byte(tc.res.Certificate))
			out := rvRun(t, "ocsp", "-issuer", issuerFile, "-cert", leafFile, "-url", pub+"/ocsp/server-ca", "-CAfile", chainFile, "-resp_text")
			if !strings.Contains(out, leafFile+": "+tc.want) || !strings.Contains(out, "Response verify OK") {
				t.Fatalf("openssl ocsp for %s: want %s\n%s", tc.res.CommonName, tc.want, out)
			}
			if tc.want == "revoked" && !strings.Contains(out, "Reason: keyCompromise") {
				t.Fatalf("openssl ocsp: no reason\n%s", out)
			}
			t.Logf("openssl ocsp (%s):\n%s", tc.want, out)
		}

		// Go client: GET and POST, on both listeners.
		aCert, goodCert := rvCert(t, a.Certificate), rvCert(t, good.Certificate)
		for _, base := range []struct {
			url string
			hc  *http.Client
		}{{pub + "/ocsp/server-ca", http.DefaultClient}, {e.URL + "/ocsp/server-ca", hc}} {
			for _, get := range []bool{true, false} {
				for _, tc := range []struct {
					cert *x509.Certificate
					want int
				}{{aCert, ocsp.Revoked}, {goodCert, ocsp.Good}} {
					req, _ := ocsp.CreateRequest(tc.cert, issuer, &ocsp.RequestOptions{Hash: crypto.SHA256})
					resp, err := ocsp.ParseResponseForCert(rvOCSP(t, base.hc, base.url, get, req), tc.cert, issuer)
					if err != nil || resp.Status != tc.want {
						t.Fatalf("%s get=%v: %+v %v", base.url, get, resp, err)
					}
					if resp.Status == ocsp.Revoked && resp.RevocationReason != ocsp.KeyCompromise {
						t.Fatalf("reason %d", resp.RevocationReason)
					}
					if d := resp.NextUpdate.Sub(resp.ThisUpdate); d != revocation.OCSPValidity {
						t.Fatalf("OCSP validity %v", d)
					}
				}
				// A serial never issued: unknown.
				never, _ := ca.NewSerial()
				fake := *goodCert
				fake.SerialNumber = never
				req, _ := ocsp.CreateRequest(&fake, issuer, nil)
				resp, err := ocsp.ParseResponse(rvOCSP(t, base.hc, base.url, get, req), issuer)
				if err != nil || resp.Status != ocsp.Unknown || resp.SerialNumber.Cmp(never) != 0 {
					t.Fatalf("never issued: %+v %v", resp, err)
				}
			}
			// Another CA's certificate: unauthorized. Garbage: malformed (200).
			req, _ := ocsp.CreateRequest(rvCert(t, cl.Certificate), clientCA, nil)
			if _, err := ocsp.ParseResponse(rvOCSP(t, base.hc, base.url, false, req), nil); !rvIsOCSPError(err, ocsp.Unauthorized) {
				t.Fatalf("wrong issuer: %v", err)
			}
			if _, err := ocsp.ParseResponse(rvOCSP(t, base.hc, base.url, false, []byte("not ocsp")), nil); !rvIsOCSPError(err, ocsp.Malformed) {
				t.Fatalf("garbage: %v", err)
			}
		}
		// The root answers for the intermediates it signed.
		req, _ := ocsp.CreateRequest(issuer, root, nil)
		if resp, err := ocsp.ParseResponseForCert(rvOCSP(t, http.DefaultClient, pub+"/ocsp/root", true, req), issuer, root); err != nil || resp.Status != ocsp.Good {
			t.Fatalf("root OCSP for server-ca: %+v %v", resp, err)
		}
		// Unescaped base64 GETs (with '/' and '+') work on the public listener.
		resp, body := rvGet(t, http.DefaultClient, pub+"/ocsp/server-ca/"+base64.StdEncoding.EncodeToString(rvOCSPRequestWithSlash(t, goodCert, issuer)))
		if r, err := ocsp.ParseResponse(body, issuer); resp.StatusCode != 200 || err != nil || r.Status != ocsp.Good {
			t.Fatalf("raw base64 GET: %d %v", resp.StatusCode, err)
		}
		// The public listener serves nothing else.
		if resp, _ := rvGet(t, http.DefaultClient, pub+"/v1/certificates"); resp.StatusCode != 404 {
			t.Fatalf("public listener answered %s with %d", "/v1/certificates", resp.StatusCode)
		}
	})
}

// rvOCSPRequestWithSlash builds a request whose base64 contains "/" (by
// trying SHA-1 and SHA-256 CertIDs), so the raw GET path has a slash in it.
func rvOCSPRequestWithSlash(t *testing.T, cert, issuer *x509.Certificate) []byte {
	for _, h := range []crypto.Hash{crypto.SHA1, crypto.SHA256, crypto.SHA384, crypto.SHA512} {
		der, err := ocsp.CreateRequest(cert, issuer, &ocsp.RequestOptions{Hash: h})
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(base64.StdEncoding.EncodeToString(der), "/") {
			return der
		}
	}
	der, _ := ocsp.CreateRequest(cert, issuer, nil)
	return der
}

func rvIsOCSPError(err error, status ocsp.ResponseStatus) bool {
	var re ocsp.ResponseError
	return errors.As(err, &re) && re.Status == status
}

// TestRevokeConflicts: concurrent revokes of one certificate give one 200
// and one 409 and one event; revoking twice or a pending/failed row is 409
// and changes nothing.
func TestRevokeConflicts(t *testing.T) {
	rvDatabases(t, func(t *testing.T, db servertest.Option) {
		e := servertest.Start(t, db)
		ctx := context.Background()
		for round := 0; round < 5; round++ {
			res := rvIssue(t, e.Client, "server", fmt.Sprintf("race%d.example.test", round))
			var wg sync.WaitGroup
			codes := make([]int, 2)
			for i := range codes {
				wg.Add(1)
				go func(i int) {
					defer wg.Done()
					_, err := rvRevoke(e.Client, res.Serial, map[string]string{"reason": "key_compromise"})
					codes[i] = rvStatus(err)
				}(i)
			}
			wg.Wait()
			if !(codes[0] == 200 && codes[1] == 409 || codes[0] == 409 && codes[1] == 200) {
				t.Fatalf("round %d: codes %v", round, codes)
			}
			var page revocation.EventPage
			if _, err := e.Client.Do(ctx, "GET", "/v1/events?type=revoked&serial="+res.Serial, nil, &page, nil); err != nil {
				t.Fatal(err)
			}
			if len(page.Events) != 1 {
				t.Fatalf("round %d: %d revoked events", round, len(page.Events))
			}
			ev := page.Events[0]
			if ev.CA != "server-ca" || ev.Principal != "admin" || ev.RequestID == "" || ev.SourceAddr == "" || ev.Details["reason"] != "key_compromise" || ev.Outcome != "success" {
				t.Fatalf("event %+v", ev)
			}
		}

		// Already revoked: 409 with the error body, nothing changes.
		res := rvIssue(t, e.Client, "server", "twice.example.test")
		first, err := rvRevoke(e.Client, res.Serial, nil)
		if err != nil || first.RevocationReason != "unspecified" {
			t.Fatalf("revoke with no body: %+v %v", first, err)
		}
		_, err = rvRevoke(e.Client, res.Serial, map[string]string{"reason": "key_compromise"})
		var ce *client.Error
		if !errors.As(err, &ce) || ce.Status != 409 || ce.Body.Code != apierror.CodeConflict || ce.Body.RequestID == "" || !strings.Contains(ce.Body.Message, "already revoked") {
			t.Fatalf("second revoke: %v", err)
		}
		row, _ := e.Srv.Store.GetBySerial(ctx, res.Serial)
		if row.RevocationReason != "unspecified" || !row.RevokedAt.Equal(*first.RevokedAt) {
			t.Fatalf("second revoke changed the row: %+v", row)
		}

		// Pending and failed rows: 409.
		for _, status := range []string{store.StatusPending, store.StatusFailed} {
			sn, _ := ca.NewSerial()
			s := ca.FormatSerial(sn)
			c := &store.Certificate{Serial: &s, CA: "server-ca", Profile: "server", Requester: "admin", NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}
			if err := e.Srv.Store.CreatePending(ctx, c); err != nil {
				t.Fatal(err)
			}
			if status == store.StatusFailed {
				c.Status = store.StatusFailed
				if err := e.Srv.Store.Finish(ctx, c, nil); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := rvRevoke(e.Client, s, nil); rvStatus(err) != 409 {
				t.Fatalf("%s: %v", status, err)
			}
		}

		// Bad input.
		for _, body := range []any{map[string]string{"reason": "certificate_hold"}, map[string]string{"reason": "bogus"}, map[string]any{"reason": "superseded", "extra": 1}} {
			r := rvIssue(t, e.Client, "server", "bad.example.test")
			if _, err := rvRevoke(e.Client, r.Serial, body); rvStatus(err) != 400 {
				t.Fatalf("body %v: %v", body, err)
			}
		}
		if _, err := rvRevoke(e.Client, "zz", nil); rvStatus(err) != 400 {
			t.Fatalf("bad serial: %v", err)
		}
		if _, err := rvRevoke(e.Client, "abcdef12345", nil); rvStatus(err) != 404 {
			t.Fatalf("unknown serial: %v", err)
		}
	})
}

func rvPrincipal(t *testing.T, name string, ops ...string) (config.Principal, string) {
	tok, hash, err := auth.NewToken()
	if err != nil {
		t.Fatal(err)
	}
	return config.Principal{Name: name, TokenSHA256: hash, Config: policy.Config{Operations: ops, Profiles: []string{"server"},
		Allow: []string{"*." + name + ".test"}}}, tok
}

// TestRevokeAuthorization: owners only, the revoke operation required, and
// events scoped to the principal.
func TestRevokeAuthorization(t *testing.T) {
	alice, aliceTok := rvPrincipal(t, "alice", "issue", "read", "revoke")
	bob, bobTok := rvPrincipal(t, "bob", "issue", "read", "revoke")
	reader, readerTok := rvPrincipal(t, "reader", "issue", "read")
	e := servertest.Start(t, func(c *config.Config, _ *server.Options) {
		c.Auth.Principals = []config.Principal{alice, bob, reader}
	})
	ac, bc, rc := e.NewClient(t, aliceTok, nil), e.NewClient(t, bobTok, nil), e.NewClient(t, readerTok, nil)
	ctx := context.Background()

	ares := rvIssue(t, ac, "server", "www.alice.test")
	rres := rvIssue(t, rc, "server", "www.reader.test")
	if _, err := rvRevoke(bc, ares.Serial, nil); rvStatus(err) != 404 {
		t.Fatalf("bob revoking alice's: %v", err)
	}
	if _, err := rvRevoke(rc, rres.Serial, nil); rvStatus(err) != 403 {
		t.Fatalf("reader revoking its own: %v", err)
	}
	if _, err := rvRevoke(rc, ares.Serial, nil); rvStatus(err) != 403 {
		t.Fatalf("reader revoking alice's: %v", err)
	}
	if v, err := rvRevoke(ac, ares.Serial, map[string]string{"reason": "cessation_of_operation"}); err != nil || v.Status != "revoked" {
		t.Fatalf("alice revoking her own: %v", err)
	}
	if _, err := rvRevoke(e.Client, rres.Serial, nil); err != nil {
		t.Fatalf("admin revoking reader's: %v", err)
	}

	// Events: each non-admin sees only its own.
	for _, tc := range []struct {
		c    *client.Client
		name string
		want int // issued + revoked
	}{{ac, "alice", 2}, {rc, "reader", 1}, {bc, "bob", 0}} {
		var page revocation.EventPage
		if _, err := tc.c.Do(ctx, "GET", "/v1/events?limit=1000", nil, &page, nil); err != nil {
			t.Fatal(err)
		}
		for _, ev := range page.Events {
			if ev.Principal != tc.name {
				t.Fatalf("%s sees %s's event", tc.name, ev.Principal)
			}
		}
		if len(page.Events) != tc.want {
			t.Fatalf("%s: %d events, want %d", tc.name, len(page.Events), tc.want)
		}
	}
	if _, err := bc.Do(ctx, "GET", "/v1/events?principal=alice", nil, nil, nil); rvStatus(err) != 403 {
		t.Fatalf("bob asking for alice's events: %v", err)
	}
	var page revocation.EventPage
	if _, err := e.Client.Do(ctx, "GET", "/v1/events?principal=alice&type=revoked", nil, &page, nil); err != nil || len(page.Events) != 1 {
		t.Fatalf("admin filtering by principal: %v %d", err, len(page.Events))
	}
	// Without a token: 401.
	anon := e.NewClient(t, "", nil)
	if _, err := rvRevoke(anon, ares.Serial, nil); rvStatus(err) != 401 {
		t.Fatalf("anonymous revoke: %v", err)
	}
	if _, err := anon.Do(ctx, "GET", "/v1/events", nil, nil, nil); rvStatus(err) != 401 {
		t.Fatalf("anonymous events: %v", err)
	}
}

// TestEventsQuery: by CA and time range, both orders, every page size: no
// duplicates, no gaps, and the documented 400s.
func TestEventsQuery(t *testing.T) {
	rvDatabases(t, func(t *testing.T, db servertest.Option) {
		e := servertest.Start(t, db)
		ctx := context.Background()
		t0 := time.Now().UTC().Add(-time.Millisecond)
		var srvSerials, cliSerials []string
		for i := 0; i < 7; i++ {
			srvSerials = append(srvSerials, rvIssue(t, e.Client, "server", fmt.Sprintf("s%d.example.test", i)).Serial)
			if i%2 == 0 {
				cliSerials = append(cliSerials, rvIssue(t, e.Client, "client", fmt.Sprintf("c%d.example.test", i)).Serial)
			}
		}
		for _, s := range srvSerials[:3] {
			if _, err := rvRevoke(e.Client, s, map[string]string{"reason": "superseded"}); err != nil {
				t.Fatal(err)
			}
		}
		t1 := time.Now().UTC().Add(time.Millisecond)

		query := func(q url.Values) (all []revocation.EventView, pages int) {
			t.Helper()
			seen := map[uint64]bool{}
			tok := ""
			for {
				if tok != "" {
					q.Set("page_token", tok)
				}
				var page revocation.EventPage
				if _, err := e.Client.Do(ctx, "GET", "/v1/events?"+q.Encode(), nil, &page, nil); err != nil {
					t.Fatal(err)
				}
				pages++
				for _, ev := range page.Events {
					if seen[ev.ID] {
						t.Fatalf("event %d twice (%v)", ev.ID, q)
					}
					seen[ev.ID] = true
				}
				all = append(all, page.Events...)
				if tok = page.NextPageToken; tok == "" {
					return all, pages
				}
				if pages > 100 {
					t.Fatal("paging does not end")
				}
			}
		}
		base := url.Values{"ca": {"server-ca"}, "since": {t0.Format(time.RFC3339Nano)}, "until": {t1.Format(time.RFC3339Nano)}, "limit": {"1000"}}
		full, _ := query(base)
		if len(full) != 7+3 {
			t.Fatalf("server-ca events in range: %d, want 10", len(full))
		}
		for i, ev := range full {
			if ev.CA != "server-ca" || ev.Time.Before(t0) || !ev.Time.Before(t1) {
				t.Fatalf("event outside the filter: %+v", ev)
			}
			if i > 0 && (ev.Time.After(full[i-1].Time) || ev.Time.Equal(full[i-1].Time) && ev.ID > full[i-1].ID) {
				t.Fatalf("not newest first at %d", i)
			}
		}
		ids := func(evs []revocation.EventView) string {
			var b strings.Builder
			for _, ev := range evs {
				fmt.Fprintf(&b, "%d,", ev.ID)
			}
			return b.String()
		}
		reversed := make([]revocation.EventView, len(full))
		for i, ev := range full {
			reversed[len(full)-1-i] = ev
		}
		for _, limit := range []int{1, 2, 3, 4, 10} {
			for _, order := range []string{"newest", "oldest"} {
				q := url.Values{}
				for k, v := range base {
					q[k] = v
				}
				q.Set("limit", fmt.Sprint(limit))
				q.Set("order", order)
				got, pages := query(q)
				want := full
				if order == "oldest" {
					want = reversed
				}
				if ids(got) != ids(want) {
					t.Fatalf("limit %d order %s: %s, want %s", limit, order, ids(got), ids(want))
				}
				if wantPages := (len(full) + limit - 1) / limit; pages < wantPages || pages > wantPages+1 {
					t.Fatalf("limit %d: %d pages", limit, pages)
				}
			}
		}
		// A narrower range: exactly the events inside it.
		oldest := reversed
		since, until := oldest[2].Time, oldest[7].Time
		q := url.Values{"ca": {"server-ca"}, "since": {since.Format(time.RFC3339Nano)}, "until": {until.Format(time.RFC3339Nano)}, "order": {"oldest"}, "limit": {"2"}}
		got, _ := query(q)
		var want []revocation.EventView
		for _, ev := range oldest {
			if !ev.Time.Before(since) && ev.Time.Before(until) {
				want = append(want, ev)
			}
		}
		if ids(got) != ids(want) || len(want) < 5 {
			t.Fatalf("narrow range: %s, want %s", ids(got), ids(want))
		}
		// type filter.
		q = url.Values{"ca": {"server-ca"}, "type": {"revoked"}, "since": {t0.Format(time.RFC3339)}}
		if got, _ := query(q); len(got) != 3 {
			t.Fatalf("revoked: %d", len(got))
		}
		q = url.Values{"ca": {"client-ca"}, "since": {t0.Format(time.RFC3339Nano)}}
		if got, _ := query(q); len(got) != len(cliSerials) {
			t.Fatalf("client-ca: %d, want %d", len(got), len(cliSerials))
		}

		// 400s: unknown parameter, bad values, a token from another query.
		var page revocation.EventPage
		if _, err := e.Client.Do(ctx, "GET", "/v1/events?ca=server-ca&limit=1", nil, &page, nil); err != nil || page.NextPageToken == "" {
			t.Fatal(err)
		}
		for _, bad := range []string{"bogus=1", "ca=nope", "limit=0", "limit=1001", "since=yesterday", "order=sideways", "type=Bad-Type",
			"since=2026-01-02T00:00:00Z&until=2026-01-01T00:00:00Z", "page_token=garbage",
			"ca=server-ca&order=oldest&page_token=" + url.QueryEscape(page.NextPageToken),
			"ca=client-ca&page_token=" + url.QueryEscape(page.NextPageToken)} {
			_, err := e.Client.Do(ctx, "GET", "/v1/events?"+bad, nil, nil, nil)
			var ce *client.Error
			if !errors.As(err, &ce) || ce.Status != 400 || ce.Body.Code != apierror.CodeValidation {
				t.Fatalf("%s: %v", bad, err)
			}
		}
	})
}

// rvFakePCA is the local CA plus a recording ca.Revoker, standing in for the
// PCA backend.
type rvFakePCA struct {
	*ca.Local
	kind  string
	mu    sync.Mutex
	calls []rvRevokeCall
	err   error
}

type rvRevokeCall struct {
	CA     string
	Serial *big.Int
	Reason int
}

func (f *rvFakePCA) Kind() string {
	if f.kind != "" {
		return f.kind
	}
	return f.Local.Kind()
}

func (f *rvFakePCA) Revoke(_ context.Context, caName string, serial *big.Int, reason int) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, rvRevokeCall{caName, new(big.Int).Set(serial), reason})
	return f.err
}

func (f *rvFakePCA) set(err error) {
	f.mu.Lock()
	f.err = err
	f.mu.Unlock()
}

func (f *rvFakePCA) takeCalls() []rvRevokeCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.calls
	f.calls = nil
	return c
}

var _ ca.Revoker = (*rvFakePCA)(nil)

func rvNewFake(t *testing.T, kind string) *rvFakePCA {
	l, err := ca.OpenLocal(ca.LocalOptions{Dir: filepath.Join(t.TempDir(), "ca")})
	if err != nil {
		t.Fatal(err)
	}
	return &rvFakePCA{Local: l, kind: kind}
}

// awsErr mimics a smithy.APIError from the SDK.
type rvAWSErr struct{ code string }

func (e rvAWSErr) Error() string     { return "api error " + e.code + ": it happened" }
func (e rvAWSErr) ErrorCode() string { return e.code }

// TestRevokeCallsBackendRevoker: a backend implementing ca.Revoker is asked
// first, with the right serial and RFC 5280 reason; its errors are passed
// through and leave the certificate issued; RequestAlreadyProcessed counts
// as success.
func TestRevokeCallsBackendRevoker(t *testing.T) {
	fake := rvNewFake(t, "")
	e := servertest.Start(t, func(_ *config.Config, o *server.Options) { o.Backend = fake })
	ctx := context.Background()
	fake.takeCalls() // none expected, but start clean

	res := rvIssue(t, e.Client, "server", "pca.example.test")
	if _, err := rvRevoke(e.Client, res.Serial, map[string]string{"reason": "privilege_withdrawn"}); err != nil {
		t.Fatal(err)
	}
	calls := fake.takeCalls()
	want, _ := ca.ParseSerial(res.Serial)
	if len(calls) != 1 || calls[0].CA != "server-ca" || calls[0].Serial.Cmp(want) != 0 || calls[0].Reason != 9 {
		t.Fatalf("calls %+v, want server-ca %s reason 9", calls, res.Serial)
	}
	// A second revoke is refused before the backend is asked.
	if _, err := rvRevoke(e.Client, res.Serial, nil); rvStatus(err) != 409 {
		t.Fatalf("second: %v", err)
	}
	if c := fake.takeCalls(); len(c) != 0 {
		t.Fatalf("backend asked for an already revoked certificate: %+v", c)
	}

	// Backend failure: its status and body pass through; nothing recorded.
	res2 := rvIssue(t, e.Client, "server", "pca2.example.test")
	fake.set(fmt.Errorf("pca: %w", apierror.Unavailable(apierror.CodeCAUnavailable, 3*time.Second, "the CA is not ACTIVE").WithCause(rvAWSErr{"InvalidStateException"})))
	_, err := rvRevoke(e.Client, res2.Serial, map[string]string{"reason": "key_compromise"})
	var ce *client.Error
	if !errors.As(err, &ce) || ce.Status != 503 || ce.Body.Code != apierror.CodeCAUnavailable || ce.Header.Get("Retry-After") != "3" {
		t.Fatalf("backend failure: %v", err)
	}
	if row, _ := e.Srv.Store.GetBySerial(ctx, res2.Serial); row.Status != store.StatusIssued {
		t.Fatalf("status after a failed backend revoke: %s", row.Status)
	}
	// Already processed at the CA: recorded as revoked.
	fake.set(apierror.Conflict("already revoked").WithCause(rvAWSErr{"RequestAlreadyProcessedException"}))
	if v, err := rvRevoke(e.Client, res2.Serial, map[string]string{"reason": "key_compromise"}); err != nil || v.Status != "revoked" {
		t.Fatalf("already processed: %+v %v", v, err)
	}
	if c := fake.takeCalls(); len(c) != 2 || c[1].Reason != 1 {
		t.Fatalf("calls %+v", c)
	}
	var page revocation.EventPage
	if _, err := e.Client.Do(ctx, "GET", "/v1/events?type=revoked&serial="+res2.Serial, nil, &page, nil); err != nil || len(page.Events) != 1 || page.Events[0].Details["backend"] != "already revoked" {
		t.Fatalf("event: %+v %v", page.Events, err)
	}
	// The CRL is still signed by the wrapped local CA.
	rl, _ := rvCRL(t, e.Client.HTTP, e.URL+"/v1/cas/server-ca/crl", rvCert(t, res.Chain))
	if len(rl.RevokedCertificateEntries) != 2 {
		t.Fatalf("CRL entries %v", rvEntries(rl))
	}
}

// TestPCAModeCRLAndOCSP: on aws-pca the CRL route redirects to the
// configured S3 URL or explains, and OCSP says PCA hosts it.
func TestPCAModeCRLAndOCSP(t *testing.T) {
	fake := rvNewFake(t, "aws-pca")
	const s3 = "http://certgate-crl.s3.us-east-1.amazonaws.com/crl/11111111-2222-3333-4444-555555555555.crl"
	e := servertest.Start(t, rvPublic, func(c *config.Config, o *server.Options) {
		o.Backend = fake
		c.AWSPCA.CRLURLs = map[string]string{"server-ca": s3}
	})
	noFollow := *e.Client.HTTP
	noFollow.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, _ := rvGet(t, &noFollow, e.URL+"/v1/cas/server-ca/crl")
	if resp.StatusCode != 302 || resp.Header.Get("Location") != s3 {
		t.Fatalf("server-ca CRL: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	resp, body := rvGet(t, &noFollow, e.URL+"/v1/cas/client-ca/crl")
	if resp.StatusCode != 404 || !strings.Contains(string(body), "aws_pca.crl_urls") {
		t.Fatalf("client-ca CRL: %d %s", resp.StatusCode, body)
	}
	for _, u := range []string{e.URL + "/ocsp/server-ca", "http://" + e.Srv.PublicAddr() + "/ocsp/server-ca"} {
		hc := e.Client.HTTP
		if strings.HasPrefix(u, "http:") {
			hc = http.DefaultClient
		}
		r, err := hc.Post(u, "application/ocsp-request", strings.NewReader("x"))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(r.Body)
		r.Body.Close()
		if r.StatusCode != 404 || !strings.Contains(string(b), "hosts OCSP") {
			t.Fatalf("%s: %d %s", u, r.StatusCode, b)
		}
	}
	noFollowPlain := &http.Client{CheckRedirect: noFollow.CheckRedirect}
	resp, _ = rvGet(t, noFollowPlain, "http://"+e.Srv.PublicAddr()+"/crl/server-ca.crl")
	if resp.StatusCode != 302 || resp.Header.Get("Location") != s3 {
		t.Fatalf("public CRL: %d", resp.StatusCode)
	}
}

// TestCRLNumberSurvivesRestart: the CRL number keeps growing after a
// restart on the same data directory and database.
func TestCRLNumberSurvivesRestart(t *testing.T) {
	rvDatabases(t, func(t *testing.T, db servertest.Option) {
		dir := t.TempDir()
		same := func(c *config.Config, o *server.Options) {
			c.DataDir = dir
			db(c, o) // the same schema both times
		}
		var issuer *x509.Certificate
		var rl1, rl2, rl3, rl4 *x509.RevocationList
		// Each server lives in its own subtest, whose cleanup shuts it down
		// before the next one starts on the same directory and database.
		t.Run("first", func(t *testing.T) {
			e1 := servertest.Start(t, same)
			res := rvIssue(t, e1.Client, "server", "restart.example.test")
			issuer = rvCert(t, res.Chain)
			rl1, _ = rvCRL(t, e1.Client.HTTP, e1.URL+"/v1/cas/server-ca/crl", issuer)
			if _, err := rvRevoke(e1.Client, res.Serial, nil); err != nil {
				t.Fatal(err)
			}
			rl2, _ = rvCRL(t, e1.Client.HTTP, e1.URL+"/v1/cas/server-ca/crl", issuer)
		})
		t.Run("second", func(t *testing.T) {
			e2 := servertest.Start(t, same)
			rl3, _ = rvCRL(t, e2.Client.HTTP, e2.URL+"/v1/cas/server-ca/crl", issuer)
			res2 := rvIssue(t, e2.Client, "server", "restart2.example.test")
			if _, err := rvRevoke(e2.Client, res2.Serial, nil); err != nil {
				t.Fatal(err)
			}
			rl4, _ = rvCRL(t, e2.Client.HTTP, e2.URL+"/v1/cas/server-ca/crl", issuer)
		})
		if t.Failed() {
			return
		}
		if !(rl1.Number.Cmp(rl2.Number) < 0 && rl2.Number.Cmp(rl3.Number) <= 0 && rl3.Number.Cmp(rl4.Number) < 0) {
			t.Fatalf("numbers %v %v %v %v", rl1.Number, rl2.Number, rl3.Number, rl4.Number)
		}
		if len(rl4.RevokedCertificateEntries) != 2 {
			t.Fatalf("entries after restart: %v", rvEntries(rl4))
		}
	})
}
