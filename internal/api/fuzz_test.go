package api

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/certgate/certgate/internal/apierror"
	"github.com/certgate/certgate/internal/issuance"
)

// checkDecodeError holds a refusal to the error contract: an *apierror.Error
// with a 4xx status, a code and a message, and complete details.
func checkDecodeError(t *testing.T, body []byte, err error) {
	t.Helper()
	var ae *apierror.Error
	if !errors.As(err, &ae) {
		t.Fatalf("DecodeStrict(%q) = %v (%T), not an *apierror.Error", body, err, err)
	}
	if ae.Status < 400 || ae.Status > 499 {
		t.Fatalf("DecodeStrict(%q): status %d, want 4xx (%v)", body, ae.Status, err)
	}
	if ae.Code == "" || strings.TrimSpace(ae.Message) == "" {
		t.Fatalf("DecodeStrict(%q): empty code or message: %+v", body, ae)
	}
	for _, d := range ae.Details {
		if d.Reason == "" {
			t.Fatalf("DecodeStrict(%q): detail without a reason: %+v", body, ae.Details)
		}
	}
}

// FuzzDecodeIssueRequest drives the strict decoder with arbitrary bodies:
// it never panics, every refusal is a 4xx *apierror.Error, and an accepted
// body re-encodes to one that decodes to the same request.
func FuzzDecodeIssueRequest(f *testing.F) {
	for _, s := range []string{
		`{"profile":"server","common_name":"api.internal","sans":["api.internal","10.0.0.7"]}`,
		`{"profile":"client","csr":"-----BEGIN CERTIFICATE REQUEST-----\nMIIB\n-----END CERTIFICATE REQUEST-----\n"}`,
		`{"profile":"machine","key_type":"rsa-2048","validity_days":3}`,
		`{"profile":"server","ttl":"24h"}`,
		`{"profile":"server","validity_days":1e2}`,
		`{"profile":"server","validity_days":99999999999999999999}`,
		`{"profile":"server","validity_days":null,"sans":null}`,
		`{"profile":5}`,
		`{"sans":[1,2]}`,
		`{"sans":"x"}`,
		`{"colour":"red"}`,
		`{"Profile":"server"}`,
		`{"profile":"a","profile":"b"}`,
		`{"profile":"\ud800"}`,
		`{} {}`,
		`{}x`,
		`[]`,
		`null`,
		`"string"`,
		`123`,
		``,
		` `,
		`{`,
		`{"profile":`,
		"\xff\xfe{}",
		`{"validity_days":-1}`,
		`{"validity_days":1.5}`,
		`{"ttl":{}}`,
		`{"csr":[]}`,
		`{"sans":[` + strings.Repeat(`"a",`, 50) + `"a"]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var req issuance.Request
		err := DecodeStrict(body, &req)
		if err != nil {
			checkDecodeError(t, body, err)
			return
		}
		// Accepted: the request re-encodes and decodes to the same value.
		again, mErr := json.Marshal(req)
		if mErr != nil {
			t.Fatalf("accepted %q but cannot re-encode %+v: %v", body, req, mErr)
		}
		var req2 issuance.Request
		if err := DecodeStrict(again, &req2); err != nil {
			t.Fatalf("accepted %q, but its re-encoding %q is refused: %v", body, again, err)
		}
		if len(req.SANs) == 0 {
			req.SANs = nil
		}
		if len(req2.SANs) == 0 {
			req2.SANs = nil
		}
		if !reflect.DeepEqual(req, req2) {
			t.Fatalf("decode(encode(decode(%q))) = %+v, want %+v", body, req2, req)
		}
	})
}

// TestDecodeStrict pins the decoder's classification of common mistakes.
func TestDecodeStrict(t *testing.T) {
	cases := []struct {
		body  string
		ok    bool
		code  string
		field string
	}{
		{`{"profile":"server"}`, true, "", ""},
		{` {"profile":"server"} ` + "\n", true, "", ""},
		{``, false, apierror.CodeBadRequest, ""},
		{`{"profile":"server"`, false, apierror.CodeBadRequest, ""},
		{`{"profile":"server"} {}`, false, apierror.CodeBadRequest, ""},
		{`{"profile":"server"}]`, false, apierror.CodeBadRequest, ""},
		{`{"profile":"server","x":1}`, false, apierror.CodeValidation, "x"},
		{`{"profile":1}`, false, apierror.CodeValidation, "profile"},
		{`{"validity_days":"1"}`, false, apierror.CodeValidation, "validity_days"},
		{`{"sans":[1]}`, false, apierror.CodeValidation, "sans"},
		{`[]`, false, apierror.CodeValidation, "body"},
	}
	for _, c := range cases {
		t.Run(c.body, func(t *testing.T) {
			var req issuance.Request
			err := DecodeStrict([]byte(c.body), &req)
			if c.ok {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			checkDecodeError(t, []byte(c.body), err)
			ae := apierror.As(err)
			if ae.Status != 400 || ae.Code != c.code {
				t.Errorf("got %d %s, want 400 %s", ae.Status, ae.Code, c.code)
			}
			if c.field != "" && (len(ae.Details) == 0 || ae.Details[0].Field != c.field) {
				t.Errorf("details %+v, want field %q", ae.Details, c.field)
			}
		})
	}
}
