package e2e

import (
	"bytes"
	"crypto"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/certgate/certgate/internal/servertest"
)

type badCase struct {
	name   string
	method string // default POST
	path   string // default /v1/certificates
	body   []byte
	hdr    map[string]string
	status int
	code   string
	fields []string // detail fields that must be present
}

// tamperedCSR is a valid CSR with one byte of the signed content changed.
func tamperedCSR(t testing.TB) string {
	t.Helper()
	good := makeCSR(t, p256(t), csrSpec{CN: "tamper.example.com", DNS: []string{"tamper.example.com"}})
	b, _ := pem.Decode([]byte(good))
	der := bytes.Replace(b.Bytes, []byte("tamper.example.com"), []byte("tampes.example.com"), 1)
	if bytes.Equal(der, b.Bytes) {
		t.Fatal("tampering changed nothing")
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
}

func badCases(t testing.TB) []badCase {
	j := func(v any) []byte { return mustJSON(t, v) }
	ok := map[string]any{"profile": "server", "common_name": "ok.example.com"}
	with := func(kv ...any) []byte {
		m := map[string]any{}
		for k, v := range ok {
			m[k] = v
		}
		for i := 0; i < len(kv); i += 2 {
			if kv[i+1] == nil {
				delete(m, kv[i].(string))
				continue
			}
			m[kv[i].(string)] = kv[i+1]
		}
		return j(m)
	}
	csrFor := func(key crypto.Signer) string {
		return makeCSR(t, key, csrSpec{CN: "key.example.com", DNS: []string{"key.example.com"}})
	}
	ecKeys(t)
	manySANs := make([]string, 101)
	for i := range manySANs {
		manySANs[i] = fmt.Sprintf("h%d.example.com", i)
	}
	noAuth := map[string]string{"Authorization": ""}
	const vf, br = "validation_failed", "bad_request"
	return []badCase{
		// Body syntax.
		{name: "malformed JSON", body: []byte(`{"profile": "server",`), status: 400, code: br},
		{name: "not JSON at all", body: []byte(`profile=server`), status: 400, code: br},
		{name: "trailing object", body: []byte(`{"profile":"server","common_name":"ok.example.com"} {}`), status: 400, code: br},
		{name: "trailing garbage", body: []byte(`{"profile":"server","common_name":"ok.example.com"}x`), status: 400, code: br},
		{name: "unknown field", body: with("colour", "red"), status: 400, code: vf, fields: []string{"colour"}},
		{name: "profile is a number", body: with("profile", 5), status: 400, code: vf, fields: []string{"profile"}},
		{name: "validity_days is a string", body: with("validity_days", "7"), status: 400, code: vf, fields: []string{"validity_days"}},
		{name: "validity_days is fractional", body: with("validity_days", 1.5), status: 400, code: vf, fields: []string{"validity_days"}},
		{name: "sans is a string", body: with("sans", "a.example.com"), status: 400, code: vf, fields: []string{"sans"}},
		{name: "body is an array", body: []byte(`[]`), status: 400, code: vf},
		{name: "empty body", body: []byte{}, status: 400, code: br},
		{name: "null body", body: []byte(`null`), status: 400, code: vf, fields: []string{"profile"}},
		{name: "wrong content type", body: j(ok), hdr: map[string]string{"Content-Type": "text/plain"}, status: 415, code: "unsupported_media_type"},
		// Profile.
		{name: "missing profile", body: with("profile", nil), status: 400, code: vf, fields: []string{"profile"}},
		{name: "unknown profile", body: with("profile", "admin"), status: 400, code: vf, fields: []string{"profile"}},
		{name: "istio-intermediate on /v1/certificates", body: with("profile", "istio-intermediate"), status: 400, code: vf, fields: []string{"profile"}},
		// Validity.
		{name: "validity_days 0", body: with("validity_days", 0), status: 400, code: vf, fields: []string{"validity_days"}},
		{name: "validity_days 8", body: with("validity_days", 8), status: 400, code: vf, fields: []string{"validity_days"}},
		{name: "validity_days -1", body: with("validity_days", -1), status: 400, code: vf, fields: []string{"validity_days"}},
		{name: "ttl 169h", body: with("ttl", "169h"), status: 400, code: vf, fields: []string{"ttl"}},
		{name: "ttl 8d", body: with("ttl", "8d"), status: 400, code: vf, fields: []string{"ttl"}},
		{name: "ttl abc", body: with("ttl", "abc"), status: 400, code: vf, fields: []string{"ttl"}},
		{name: "ttl 1ms", body: with("ttl", "1ms"), status: 400, code: vf, fields: []string{"ttl"}},
		{name: "ttl negative", body: with("ttl", "-24h"), status: 400, code: vf, fields: []string{"ttl"}},
		{name: "validity_days and ttl", body: with("validity_days", 1, "ttl", "24h"), status: 400, code: vf, fields: []string{"validity_days", "ttl"}},
		// CSR and keys.
		{name: "garbage CSR", body: with("csr", "not a csr"), status: 400, code: vf, fields: []string{"csr"}},
		{name: "CSR with bad base64", body: with("csr", "-----BEGIN CERTIFICATE REQUEST-----\n!!!!\n-----END CERTIFICATE REQUEST-----\n"), status: 400, code: vf, fields: []string{"csr"}},
		{name: "tampered CSR signature", body: with("common_name", nil, "csr", tamperedCSR(t)), status: 400, code: vf, fields: []string{"csr"}},
		{name: "CSR with RSA 1024", body: with("common_name", nil, "csr", csrFor(rsa1024(t))), status: 400, code: vf, fields: []string{"csr"}},
		{name: "CSR with P-224", body: with("common_name", nil, "csr", csrFor(keyP224)), status: 400, code: vf, fields: []string{"csr"}},
		{name: "CSR with P-521", body: with("common_name", nil, "csr", csrFor(keyP521)), status: 400, code: vf, fields: []string{"csr"}},
		{name: "CSR with Ed25519", body: with("common_name", nil, "csr", csrFor(keyEd)), status: 400, code: vf, fields: []string{"csr"}},
		{name: "csr plus key_type", body: with("common_name", nil, "csr", csrFor(keyP256), "key_type", "ecdsa-p256"), status: 400, code: vf, fields: []string{"key_type"}},
		{name: "bad key_type", body: with("key_type", "rsa-1024"), status: 400, code: vf, fields: []string{"key_type"}},
		{name: "key_type ed25519", body: with("key_type", "ed25519"), status: 400, code: vf, fields: []string{"key_type"}},
		{name: "names differ between CSR and request", body: with("common_name", nil, "sans", []string{"other.example.com"}, "csr", csrFor(keyP256)), status: 400, code: vf, fields: []string{"csr"}},
		{name: "CSR larger than 32 KiB", body: with("csr", "-----BEGIN CERTIFICATE REQUEST-----\n"+strings.Repeat("QUFB\n", 7000)+"-----END CERTIFICATE REQUEST-----\n"), status: 413, code: "request_too_large"},
		{name: "Idempotency-Key longer than 255", body: j(ok), hdr: map[string]string{"Idempotency-Key": strings.Repeat("k", 256)}, status: 400, code: vf, fields: []string{"Idempotency-Key"}},
		{name: "body larger than 64 KiB", body: with("common_name", strings.Repeat("a", 70<<10)), status: 413, code: "request_too_large"},
		// Names.
		{name: "wildcard on client profile", body: with("profile", "client", "common_name", nil, "sans", []string{"*.example.com"}), status: 400, code: vf, fields: []string{"sans[0]"}},
		{name: "wildcard *.com", body: with("sans", []string{"*.com"}), status: 400, code: vf, fields: []string{"sans[0]"}},
		{name: "wildcard not left-most", body: with("sans", []string{"a.*.example.com"}), status: 400, code: vf, fields: []string{"sans[0]"}},
		{name: "partial wildcard label", body: with("sans", []string{"a*.example.com"}), status: 400, code: vf, fields: []string{"sans[0]"}},
		{name: "DNS with space", body: with("sans", []string{"a b.example.com"}), status: 400, code: vf, fields: []string{"sans[0]"}},
		{name: "DNS with underscore", body: with("sans", []string{"a_b.example.com"}), status: 400, code: vf, fields: []string{"sans[0]"}},
		{name: "DNS with 64-char label", body: with("sans", []string{strings.Repeat("a", 64) + ".example.com"}), status: 400, code: vf, fields: []string{"sans[0]"}},
		{name: "DNS with 254 chars", body: with("sans", []string{strings.Repeat(strings.Repeat("a", 49)+".", 5) + "abcd"}), status: 400, code: vf, fields: []string{"sans[0]"}},
		{name: "DNS with unicode", body: with("sans", []string{"bücher.example.com"}), status: 400, code: vf, fields: []string{"sans[0]"}},
		{name: "DNS with empty label", body: with("sans", []string{"a..example.com"}), status: 400, code: vf, fields: []string{"sans[0]"}},
		{name: "bad IP 300.1.2.3", body: with("sans", []string{"300.1.2.3"}), status: 400, code: vf, fields: []string{"sans[0]"}},
		{name: "bad IPv6", body: with("sans", []string{"fe80::1::2"}), status: 400, code: vf, fields: []string{"sans[0]"}},
		{name: "unspecified IP", body: with("sans", []string{"0.0.0.0"}), status: 400, code: vf, fields: []string{"sans[0]"}},
		{name: "bad URI (spiffe without path)", body: with("sans", []string{"spiffe://cluster.local"}), status: 400, code: vf, fields: []string{"sans[0]"}},
		{name: "bad URI (space)", body: with("sans", []string{"https://exa mple.com/x"}), status: 400, code: vf, fields: []string{"sans[0]"}},
		{name: "bad email (two @)", body: with("sans", []string{"a@b@example.com"}), status: 400, code: vf, fields: []string{"sans[0]"}},
		{name: "bad email (empty local part)", body: with("sans", []string{"@example.com"}), status: 400, code: vf, fields: []string{"sans[0]"}},
		{name: "bad second SAN", body: with("sans", []string{"ok.example.com", "bad_name.example.com"}), status: 400, code: vf, fields: []string{"sans[1]"}},
		{name: "bad common_name", body: with("common_name", "bad name"), status: 400, code: vf, fields: []string{"common_name"}},
		{name: "too many SANs", body: with("sans", manySANs), status: 400, code: vf, fields: []string{"sans"}},
		{name: "no names", body: with("common_name", nil), status: 400, code: vf, fields: []string{"sans"}},
		// Credentials.
		{name: "missing token", body: j(ok), hdr: noAuth, status: 401, code: "unauthenticated"},
		{name: "wrong token", body: j(ok), hdr: map[string]string{"Authorization": "Bearer cg_not-the-token"}, status: 401, code: "unauthenticated"},
		{name: "basic auth", body: j(ok), hdr: map[string]string{"Authorization": "Basic YWRtaW46YWRtaW4="}, status: 401, code: "unauthenticated"},
		{name: "bearer without token", body: j(ok), hdr: map[string]string{"Authorization": "Bearer "}, status: 401, code: "unauthenticated"},
		{name: "token without scheme", body: j(ok), hdr: map[string]string{"Authorization": "sometoken"}, status: 401, code: "unauthenticated"},
		{name: "list without token", method: "GET", path: "/v1/certificates", hdr: noAuth, status: 401, code: "unauthenticated"},
		{name: "get without token", method: "GET", path: "/v1/certificates/abc", hdr: noAuth, status: 401, code: "unauthenticated"},
		// Lookups.
		{name: "GET unknown serial", method: "GET", path: "/v1/certificates/7f0123456789abcdef", status: 404, code: "not_found"},
		{name: "GET unknown serial with colons", method: "GET", path: "/v1/certificates/7F:01:23:45", status: 404, code: "not_found"},
		{name: "GET bad serial", method: "GET", path: "/v1/certificates/xyz", status: 400, code: vf, fields: []string{"serial"}},
		{name: "GET serial with misplaced colon", method: "GET", path: "/v1/certificates/ab::cd", status: 400, code: vf, fields: []string{"serial"}},
		{name: "GET zero serial", method: "GET", path: "/v1/certificates/00", status: 400, code: vf, fields: []string{"serial"}},
		{name: "GET serial too long", method: "GET", path: "/v1/certificates/" + strings.Repeat("a", 65), status: 400, code: vf, fields: []string{"serial"}},
		{name: "unknown route", method: "GET", path: "/v1/nothing-here", status: 404, code: "not_found"},
		{name: "unknown route POST", method: "POST", path: "/v2/certificates", body: j(ok), status: 404, code: "not_found"},
		{name: "unknown CA chain", method: "GET", path: "/v1/cas/nope/chain", status: 404, code: "not_found"},
		// Listing.
		{name: "list limit 0", method: "GET", path: "/v1/certificates?limit=0", status: 400, code: vf, fields: []string{"limit"}},
		{name: "list limit abc", method: "GET", path: "/v1/certificates?limit=abc", status: 400, code: vf, fields: []string{"limit"}},
		{name: "list limit 1001", method: "GET", path: "/v1/certificates?limit=1001", status: 400, code: vf, fields: []string{"limit"}},
		{name: "list bad status", method: "GET", path: "/v1/certificates?status=expired", status: 400, code: vf, fields: []string{"status"}},
		{name: "list bad page_token", method: "GET", path: "/v1/certificates?page_token=!!!", status: 400, code: vf, fields: []string{"page_token"}},
		{name: "list page_token wrong length", method: "GET", path: "/v1/certificates?page_token=" + base64.RawURLEncoding.EncodeToString([]byte("abc")), status: 400, code: vf, fields: []string{"page_token"}},
		{name: "list bad expires_before", method: "GET", path: "/v1/certificates?expires_before=tomorrow", status: 400, code: vf, fields: []string{"expires_before"}},
		{name: "list unknown parameter", method: "GET", path: "/v1/certificates?colour=red", status: 400, code: vf, fields: []string{"colour"}},
		{name: "list bad ca", method: "GET", path: "/v1/certificates?ca=other-ca", status: 400, code: vf, fields: []string{"ca"}},
	}
}

// TestBadInputs sends bad requests and checks for each the status, the
// documented error body, and that nothing was issued or recorded (a refusal
// may add a "refused" event, never a certificate row).
func TestBadInputs(t *testing.T) {
	env := servertest.Start(t)
	cases := badCases(t)
	if len(cases) < 30 {
		t.Fatalf("only %d bad-input cases", len(cases))
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			method, path := c.method, c.path
			if method == "" {
				method = "POST"
			}
			if path == "" {
				path = "/v1/certificates"
			}
			hdr := map[string]string{}
			for k, v := range c.hdr {
				hdr[k] = v
			}
			// Every other case sends its own request ID, which must come back.
			sentID := ""
			if i%2 == 0 {
				sentID = fmt.Sprintf("e2e-bad-%d", i)
				hdr["X-Request-ID"] = sentID
			}
			certsBefore, eventsBefore := countCerts(t, env), countEventsExcept(t, env, "refused")
			resp, body := call(t, env, method, path, c.body, hdr)
			certsAfter, eventsAfter := countCerts(t, env), countEventsExcept(t, env, "refused")

			if resp.StatusCode != c.status {
				t.Errorf("status %d, want %d: %s", resp.StatusCode, c.status, body)
			}
			if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
				t.Errorf("Content-Type %q, want application/json", ct)
			}
			var eb errBody
			dec := json.NewDecoder(bytes.NewReader(body))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&eb); err != nil {
				t.Fatalf("error body does not have the documented shape: %v: %s", err, body)
			}
			e := eb.Error
			if e.Code != c.code {
				t.Errorf("error.code %q, want %q (%s)", e.Code, c.code, e.Message)
			}
			if strings.TrimSpace(e.Message) == "" {
				t.Error("error.message is empty")
			}
			hid := resp.Header.Get("X-Request-ID")
			if e.RequestID == "" || e.RequestID != hid {
				t.Errorf("error.request_id %q, X-Request-ID header %q: want equal and non-empty", e.RequestID, hid)
			}
			if sentID != "" && hid != sentID {
				t.Errorf("X-Request-ID %q, want the caller's %q", hid, sentID)
			}
			if e.Retryable == nil || *e.Retryable {
				t.Errorf("error.retryable = %v, want present and false for a %d", e.Retryable, resp.StatusCode)
			}
			if c.code == "validation_failed" && len(e.Details) == 0 {
				t.Error("validation error without details")
			}
			for _, d := range e.Details {
				if d.Reason == "" {
					t.Errorf("detail %+v has no reason", d)
				}
			}
			for _, f := range c.fields {
				found := false
				for _, d := range e.Details {
					found = found || d.Field == f
				}
				if !found {
					t.Errorf("no detail for field %q: %+v", f, e.Details)
				}
			}
			if resp.StatusCode == http.StatusUnauthorized && resp.Header.Get("WWW-Authenticate") == "" {
				t.Error("401 without WWW-Authenticate")
			}
			if certsAfter != certsBefore {
				t.Errorf("certificates table went from %d to %d rows on a refused request", certsBefore, certsAfter)
			}
			if eventsAfter != eventsBefore {
				t.Errorf("a refused request wrote %d events other than \"refused\"", eventsAfter-eventsBefore)
			}
			// A refused request withdraws the write it announced, or every
			// later write batch would wait out the linger for it.
			if n := env.Srv.Store.Announced(); n != 0 {
				t.Errorf("%d announced writes outstanding after the request", n)
			}
		})
	}
	t.Logf("%d bad-input cases", len(cases))
}

// TestMethodNotAllowed: a known path with a method it does not serve is a
// 405 with an Allow header and the documented error body (code
// method_not_allowed), not a 404 that tells the client the path is unknown.
func TestMethodNotAllowed(t *testing.T) {
	env := servertest.Start(t)
	cases := []struct {
		method, path string
		allow        []string
	}{
		{"DELETE", "/v1/certificates", []string{"GET", "POST"}},
		{"PUT", "/v1/certificates/0a1b", []string{"GET"}},
		{"POST", "/v1/trust-bundle", []string{"GET"}},
		{"GET", "/v1/cas/refresh", []string{"POST"}},
	}
	for _, c := range cases {
		t.Run(c.method+" "+c.path, func(t *testing.T) {
			before := countCerts(t, env)
			resp, body := call(t, env, c.method, c.path, nil, nil)
			if resp.StatusCode != http.StatusMethodNotAllowed {
				t.Errorf("status %d, want 405: %s", resp.StatusCode, body)
			}
			allow := resp.Header.Get("Allow")
			for _, m := range c.allow {
				if !strings.Contains(allow, m) {
					t.Errorf("Allow %q does not list %s", allow, m)
				}
			}
			var eb errBody
			if err := json.Unmarshal(body, &eb); err != nil {
				t.Fatalf("not the error body: %v: %s", err, body)
			}
			if eb.Error.Code != "method_not_allowed" || eb.Error.Message == "" || eb.Error.RequestID != resp.Header.Get("X-Request-ID") {
				t.Errorf("error body %+v, want code method_not_allowed, a message and the request ID", eb.Error)
			}
			if countCerts(t, env) != before {
				t.Error("a refused request changed the certificates table")
			}
		})
	}
}
