package policy

import (
	"errors"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/certgate/certgate/internal/apierror"
)

// payments is the DESIGN.md example principal, widened with one pattern of
// every kind so that each rule has something to bite on.
var payments = Config{
	Operations: []string{OpIssue, OpRead, OpRevoke},
	Profiles:   []string{"server", "client"},
	Allow: []string{
		"*.payments.svc.cluster.local",
		"10.20.0.0/16",
		"spiffe://cluster.local/ns/payments/*",
		"API.Payments.Example.com.",
		"2001:db8:1::/48",
		"192.168.7.7",
		"*@payments.example.com",
		"oncall@example.com",
		"spiffe://cluster.local/ns/*/sa/payments-reader",
		"https://*.hooks.example.com/payments/*",
	},
	Deny: []string{
		"admin.payments.svc.cluster.local",
		"*.internal.payments.svc.cluster.local",
		"10.20.99.0/24",
		"2001:db8:1:ff::1",
		"spiffe://cluster.local/ns/payments/sa/admin",
		"root@payments.example.com",
	},
	MaxValidity: 72 * time.Hour,
}

func mustCompile(t testing.TB, c Config) *Policy {
	t.Helper()
	p, err := Compile(c)
	if err != nil {
		t.Fatalf("Compile: %v", err)
	}
	return p
}

func ips(ss ...string) []net.IP {
	out := make([]net.IP, len(ss))
	for i, s := range ss {
		out[i] = net.ParseIP(s)
		if out[i] == nil {
			panic("bad test IP " + s)
		}
	}
	return out
}

func uris(ss ...string) []*url.URL {
	out := make([]*url.URL, len(ss))
	for i, s := range ss {
		u, err := url.Parse(s)
		if err != nil {
			panic(err)
		}
		out[i] = u
	}
	return out
}

// wantRefused checks the refusal contract every caller relies on: a 403
// *apierror.Error whose message and single detail name the field and the
// refused value.
func wantRefused(t *testing.T, err error, field, refused string) {
	t.Helper()
	if err == nil {
		t.Fatalf("allowed; want refusal on %s %q", field, refused)
	}
	var ae *apierror.Error
	if !errors.As(err, &ae) {
		t.Fatalf("error %T %v is not *apierror.Error", err, err)
	}
	if ae.Status != http.StatusForbidden || ae.Code != apierror.CodeForbidden {
		t.Errorf("status %d code %q; want 403 %q", ae.Status, ae.Code, apierror.CodeForbidden)
	}
	if len(ae.Details) != 1 || ae.Details[0].Field != field {
		t.Fatalf("details %+v; want one with field %q", ae.Details, field)
	}
	if !strings.Contains(ae.Message, refused) || !strings.Contains(ae.Details[0].Reason, refused) {
		t.Errorf("message %q / reason %q do not name %q", ae.Message, ae.Details[0].Reason, refused)
	}
}

type issueCase struct {
	name    string
	cfg     *Config        // nil: payments
	policy  func() *Policy // overrides cfg
	req     Request
	field   string // "" = allowed
	refused string // text the message must contain
}

func runIssueCases(t *testing.T, cases []issueCase) {
	t.Helper()
	def := mustCompile(t, payments)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := def
			if tc.cfg != nil {
				p = mustCompile(t, *tc.cfg)
			}
			if tc.policy != nil {
				p = tc.policy()
			}
			req := tc.req
			if req.Profile == "" {
				req.Profile = "server"
			}
			err := p.CheckIssue(req)
			if tc.field == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			wantRefused(t, err, tc.field, tc.refused)
		})
	}
}

func TestCheckIssueDNS(t *testing.T) {
	runIssueCases(t, []issueCase{
		{name: "one label under wildcard", req: Request{DNS: []string{"api.payments.svc.cluster.local"}}},
		{name: "two labels under wildcard", req: Request{DNS: []string{"a.b.payments.svc.cluster.local"}}},
		{name: "wildcard suffix itself refused", req: Request{DNS: []string{"payments.svc.cluster.local"}},
			field: FieldSANs, refused: `"payments.svc.cluster.local"`},
		{name: "look-alike suffix refused", req: Request{DNS: []string{"xpayments.svc.cluster.local"}},
			field: FieldSANs, refused: "xpayments.svc.cluster.local"},
		{name: "look-alike under look-alike refused", req: Request{DNS: []string{"a.xpayments.svc.cluster.local"}},
			field: FieldSANs, refused: "a.xpayments.svc.cluster.local"},
		{name: "unrelated name refused", req: Request{DNS: []string{"example.org"}},
			field: FieldSANs, refused: "example.org"},
		{name: "exact allow, pattern written with capitals and trailing dot", req: Request{DNS: []string{"api.payments.example.com"}}},
		{name: "exact allow does not cover subdomains", req: Request{DNS: []string{"x.api.payments.example.com"}},
			field: FieldSANs, refused: "x.api.payments.example.com"},
		{name: "deny beats allow", req: Request{DNS: []string{"admin.payments.svc.cluster.local"}},
			field: FieldSANs, refused: `deny pattern "admin.payments.svc.cluster.local"`},
		{name: "exact deny does not reach below it", req: Request{DNS: []string{"x.admin.payments.svc.cluster.local"}}},
		{name: "wildcard deny beats wildcard allow", req: Request{DNS: []string{"db.internal.payments.svc.cluster.local"}},
			field: FieldSANs, refused: "db.internal.payments.svc.cluster.local"},
		{name: "wildcard deny spares its base name", req: Request{DNS: []string{"internal.payments.svc.cluster.local"}}},
		{name: "wildcard request refused because deny names a covered host",
			req:   Request{DNS: []string{"*.payments.svc.cluster.local"}},
			field: FieldSANs, refused: "names a host the wildcard would cover"},
		{name: "wildcard request in a subtree no deny touches", req: Request{DNS: []string{"*.api.payments.svc.cluster.local"}}},
		{name: "wildcard request equal to wildcard deny", req: Request{DNS: []string{"*.internal.payments.svc.cluster.local"}},
			field: FieldSANs, refused: `deny pattern "*.internal.payments.svc.cluster.local"`},
		{name: "wildcard request inside wildcard deny", req: Request{DNS: []string{"*.x.internal.payments.svc.cluster.local"}},
			field: FieldSANs, refused: "*.x.internal.payments.svc.cluster.local"},
		{name: "wildcard request not covered by an exact allow",
			cfg:   &Config{Operations: []string{OpIssue}, Profiles: []string{"server"}, Allow: []string{"a.example.com"}},
			req:   Request{DNS: []string{"*.example.com"}},
			field: FieldSANs, refused: "*.example.com"},
		{name: "wildcard not left-most refused", req: Request{DNS: []string{"a.*.payments.svc.cluster.local"}},
			field: FieldSANs, refused: "a.*.payments.svc.cluster.local"},
		{name: "name with a space under an allowed suffix refused", req: Request{DNS: []string{"a b.payments.svc.cluster.local"}},
			field: FieldSANs, refused: "a b.payments.svc.cluster.local"},
		{name: "first refused name is reported",
			req:   Request{DNS: []string{"ok.payments.svc.cluster.local", "bad1.example.org", "bad2.example.org"}},
			field: FieldSANs, refused: "bad1.example.org"},
	})
}

func TestCheckIssueIP(t *testing.T) {
	runIssueCases(t, []issueCase{
		{name: "v4 first address of CIDR", req: Request{IPs: ips("10.20.0.0")}},
		{name: "v4 last address of CIDR", req: Request{IPs: ips("10.20.255.255")}},
		{name: "v4 one below CIDR", req: Request{IPs: ips("10.19.255.255")}, field: FieldSANs, refused: "10.19.255.255"},
		{name: "v4 one above CIDR", req: Request{IPs: ips("10.21.0.0")}, field: FieldSANs, refused: "10.21.0.0"},
		{name: "v4 denied sub-range first", req: Request{IPs: ips("10.20.99.0")}, field: FieldSANs, refused: `deny pattern "10.20.99.0/24"`},
		{name: "v4 denied sub-range last", req: Request{IPs: ips("10.20.99.255")}, field: FieldSANs, refused: "10.20.99.255"},
		{name: "v4 just outside denied sub-range", req: Request{IPs: ips("10.20.98.255", "10.20.100.0")}},
		{name: "v4 4-byte form", req: Request{IPs: []net.IP{net.IPv4(10, 20, 1, 1).To4()}}},
		{name: "v4 single-address pattern", req: Request{IPs: ips("192.168.7.7")}},
		{name: "v4 next to single-address pattern", req: Request{IPs: ips("192.168.7.8")}, field: FieldSANs, refused: "192.168.7.8"},
		{name: "v6 first address of CIDR", req: Request{IPs: ips("2001:db8:1::")}},
		{name: "v6 last address of CIDR", req: Request{IPs: ips("2001:db8:1:ffff:ffff:ffff:ffff:ffff")}},
		{name: "v6 one below CIDR", req: Request{IPs: ips("2001:db8:0:ffff:ffff:ffff:ffff:ffff")},
			field: FieldSANs, refused: "2001:db8:0:ffff:ffff:ffff:ffff:ffff"},
		{name: "v6 one above CIDR", req: Request{IPs: ips("2001:db8:2::")}, field: FieldSANs, refused: "2001:db8:2::"},
		{name: "v6 single-address deny", req: Request{IPs: ips("2001:db8:1:ff::1")}, field: FieldSANs, refused: "2001:db8:1:ff::1"},
		{name: "v6 next to single-address deny", req: Request{IPs: ips("2001:db8:1:ff::2")}},
		{name: "mapped address matches v4 allow", req: Request{IPs: []net.IP{net.ParseIP("::ffff:10.20.1.1").To16()}}},
		{name: "mapped address hits v4 deny", req: Request{IPs: []net.IP{net.ParseIP("::ffff:10.20.99.1").To16()}},
			field: FieldSANs, refused: "10.20.99.1"},
		{name: "mapped pattern matches v4 address",
			cfg: &Config{Operations: []string{OpIssue}, Profiles: []string{"server"}, Allow: []string{"::ffff:172.16.0.0/108"}},
			req: Request{IPs: ips("172.16.3.4")}},
		{name: "v6 CIDR does not cover v4 addresses",
			cfg: &Config{Operations: []string{OpIssue}, Profiles: []string{"server"}, Allow: []string{"::/0"}},
			req: Request{IPs: ips("10.0.0.1")}, field: FieldSANs, refused: "10.0.0.1"},
		{name: "malformed address refused", req: Request{IPs: []net.IP{{1, 2, 3}}}, field: FieldSANs, refused: "malformed IP"},
	})
}

func TestCheckIssueURIAndEmail(t *testing.T) {
	runIssueCases(t, []issueCase{
		{name: "uri under trailing /*", req: Request{URIs: uris("spiffe://cluster.local/ns/payments/sa/api")}},
		{name: "uri deep under trailing /*", req: Request{URIs: uris("spiffe://cluster.local/ns/payments/sa/api/x/y")}},
		{name: "uri look-alike prefix refused", req: Request{URIs: uris("spiffe://cluster.local/ns/payments-evil/x")},
			field: FieldSANs, refused: "spiffe://cluster.local/ns/payments-evil/x"},
		{name: "uri base of /* refused", req: Request{URIs: uris("spiffe://cluster.local/ns/payments")},
			field: FieldSANs, refused: "spiffe://cluster.local/ns/payments"},
		{name: "uri base with slash refused", req: Request{URIs: uris("spiffe://cluster.local/ns/payments/")},
			field: FieldSANs, refused: "spiffe://cluster.local/ns/payments/"},
		{name: "uri scheme and host case-insensitive", req: Request{URIs: uris("SPIFFE://Cluster.LOCAL/ns/payments/sa/api")}},
		{name: "uri path case-sensitive", req: Request{URIs: uris("spiffe://cluster.local/NS/payments/sa/api")},
			field: FieldSANs, refused: "spiffe://cluster.local/NS/payments/sa/api"},
		{name: "uri other trust domain refused", req: Request{URIs: uris("spiffe://evil.local/ns/payments/sa/api")},
			field: FieldSANs, refused: "spiffe://evil.local/ns/payments/sa/api"},
		{name: "uri deny beats allow", req: Request{URIs: uris("spiffe://cluster.local/ns/payments/sa/admin")},
			field: FieldSANs, refused: `deny pattern "spiffe://cluster.local/ns/payments/sa/admin"`},
		{name: "uri percent-encoded deny evasion refused", req: Request{URIs: uris("spiffe://cluster.local/ns/payments/sa/%61dmin")},
			field: FieldSANs, refused: "deny pattern"},
		{name: "uri dot segment refused", req: Request{URIs: uris("spiffe://cluster.local/ns/payments/../admin/sa/x")},
			field: FieldSANs, refused: "path segment"},
		{name: "uri inner * matches one segment", req: Request{URIs: uris("spiffe://cluster.local/ns/shop/sa/payments-reader")}},
		{name: "uri inner * does not cross /", req: Request{URIs: uris("spiffe://cluster.local/ns/a/b/sa/payments-reader")},
			field: FieldSANs, refused: "spiffe://cluster.local/ns/a/b/sa/payments-reader"},
		{name: "uri host wildcard", req: Request{URIs: uris("https://eu.hooks.example.com/payments/v1")}},
		{name: "uri host wildcard needs a label", req: Request{URIs: uris("https://hooks.example.com/payments/v1")},
			field: FieldSANs, refused: "https://hooks.example.com/payments/v1"},
		{name: "uri host wildcard stays in the host", req: Request{URIs: uris("https://evil.com/x.hooks.example.com/payments/v1")},
			field: FieldSANs, refused: "https://evil.com/x.hooks.example.com/payments/v1"},
		{name: "uri nil refused", req: Request{URIs: []*url.URL{nil}}, field: FieldSANs, refused: "empty URI"},
		{name: "email any local part at domain", req: Request{Emails: []string{"dev@payments.example.com"}}},
		{name: "email domain case-insensitive", req: Request{Emails: []string{"dev@Payments.EXAMPLE.com"}}},
		{name: "email subdomain refused", req: Request{Emails: []string{"dev@eu.payments.example.com"}},
			field: FieldSANs, refused: "dev@eu.payments.example.com"},
		{name: "email deny beats allow", req: Request{Emails: []string{"root@payments.example.com"}},
			field: FieldSANs, refused: "root@payments.example.com"},
		{name: "email exact", req: Request{Emails: []string{"oncall@example.com"}}},
		{name: "email exact local part case-sensitive", req: Request{Emails: []string{"OnCall@example.com"}},
			field: FieldSANs, refused: "OnCall@example.com"},
		{name: "email other local part refused", req: Request{Emails: []string{"ceo@example.com"}},
			field: FieldSANs, refused: "ceo@example.com"},
	})
}

func TestCheckIssueCommonNameProfileValidity(t *testing.T) {
	admin := Config{Operations: []string{OpAdmin}, Allow: []string{"*.example.com"}}
	adminListed := Config{Operations: []string{OpAdmin}, Profiles: []string{"client"}, Allow: []string{"*.example.com"}}
	noCap := payments
	noCap.MaxValidity = 0
	readOnly := payments
	readOnly.Operations = []string{OpRead}
	noAllow := Config{Operations: []string{OpIssue}, Profiles: []string{"server"}}
	runIssueCases(t, []issueCase{
		{name: "cn dns allowed", req: Request{CommonName: "api.payments.svc.cluster.local"}},
		{name: "cn denied", req: Request{CommonName: "admin.payments.svc.cluster.local", DNS: []string{"api.payments.svc.cluster.local"}},
			field: FieldCommonName, refused: "admin.payments.svc.cluster.local"},
		{name: "cn checked before sans", req: Request{CommonName: "x.example.org", DNS: []string{"y.example.org"}},
			field: FieldCommonName, refused: "x.example.org"},
		{name: "cn ip", req: Request{CommonName: "10.20.0.1"}},
		{name: "cn ip outside", req: Request{CommonName: "10.30.0.1"}, field: FieldCommonName, refused: "10.30.0.1"},
		{name: "cn uri", req: Request{CommonName: "spiffe://cluster.local/ns/payments/sa/api"}},
		{name: "cn email", req: Request{CommonName: "oncall@example.com"}},
		{name: "cn free text refused", req: Request{CommonName: "Payments Service"},
			field: FieldCommonName, refused: "Payments Service"},
		{name: "profile listed", req: Request{Profile: "client", DNS: []string{"api.payments.svc.cluster.local"}}},
		{name: "profile not listed", req: Request{Profile: "machine", DNS: []string{"api.payments.svc.cluster.local"}},
			field: FieldProfile, refused: `"machine"`},
		{name: "profile checked before names", req: Request{Profile: "istio-intermediate", DNS: []string{"example.org"}},
			field: FieldProfile, refused: "istio-intermediate"},
		{name: "admin with no profiles gets all", cfg: &admin, req: Request{Profile: "istio-intermediate", DNS: []string{"a.example.com"}}},
		{name: "admin with listed profiles is held to them", cfg: &adminListed, req: Request{Profile: "server", DNS: []string{"a.example.com"}},
			field: FieldProfile, refused: "server"},
		{name: "admin names still need an allow", cfg: &admin, req: Request{DNS: []string{"a.example.org"}},
			field: FieldSANs, refused: "a.example.org"},
		{name: "validity equal to cap", req: Request{DNS: []string{"a.payments.svc.cluster.local"}, Validity: 72 * time.Hour}},
		{name: "validity one second over cap", req: Request{DNS: []string{"a.payments.svc.cluster.local"}, Validity: 72*time.Hour + time.Second},
			field: FieldValidity, refused: "72h0m1s"},
		{name: "no principal cap", cfg: &noCap, req: Request{DNS: []string{"a.payments.svc.cluster.local"}, Validity: 365 * 24 * time.Hour}},
		{name: "no issue operation", cfg: &readOnly, req: Request{DNS: []string{"a.payments.svc.cluster.local"}},
			field: FieldOperation, refused: "issue"},
		{name: "empty policy refuses", cfg: &Config{}, req: Request{DNS: []string{"a.payments.svc.cluster.local"}},
			field: FieldOperation, refused: "issue"},
		{name: "no allow patterns refuse every name", cfg: &noAllow, req: Request{DNS: []string{"localhost"}},
			field: FieldSANs, refused: "no allow pattern"},
		{name: "no allow patterns refuse every ip", cfg: &noAllow, req: Request{IPs: ips("127.0.0.1")},
			field: FieldSANs, refused: "127.0.0.1"},
		{name: "nil policy refuses", policy: func() *Policy { return nil }, req: Request{DNS: []string{"a.payments.svc.cluster.local"}},
			field: FieldOperation, refused: "issue"},
		{name: "allow-all allows anything", policy: AllowAll,
			req: Request{Profile: "istio-intermediate", CommonName: "Anything", DNS: []string{"*.com"}, Validity: 1000 * time.Hour}},
	})
}

func TestOperations(t *testing.T) {
	cases := []struct {
		name  string
		p     *Policy
		admin bool
		can   map[string]bool
	}{
		{"empty", mustCompile(t, Config{}), false,
			map[string]bool{OpIssue: false, OpRead: false, OpRevoke: false, OpAdmin: false}},
		{"issue and read", mustCompile(t, Config{Operations: []string{OpIssue, OpRead}}), false,
			map[string]bool{OpIssue: true, OpRead: true, OpRevoke: false, OpAdmin: false}},
		{"admin implies all", mustCompile(t, Config{Operations: []string{OpAdmin}}), true,
			map[string]bool{OpIssue: true, OpRead: true, OpRevoke: true, OpAdmin: true, "bogus": false}},
		{"allow-all", AllowAll(), true,
			map[string]bool{OpIssue: true, OpRead: true, OpRevoke: true, OpAdmin: true, "": false}},
		{"nil", nil, false, map[string]bool{OpIssue: false, OpAdmin: false}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.p.IsAdmin(); got != tc.admin {
				t.Errorf("IsAdmin = %v; want %v", got, tc.admin)
			}
			for op, want := range tc.can {
				if got := tc.p.Can(op); got != want {
					t.Errorf("Can(%q) = %v; want %v", op, got, want)
				}
				err := tc.p.Require(op)
				if want && err != nil {
					t.Errorf("Require(%q) = %v", op, err)
				}
				if !want {
					wantRefused(t, err, FieldOperation, strconv.Quote(op))
				}
			}
		})
	}
}

func TestAllowsName(t *testing.T) {
	p := mustCompile(t, payments)
	cases := []struct {
		name string
		ok   bool
		why  string
	}{
		{"a.payments.svc.cluster.local", true, `allowed by "*.payments.svc.cluster.local"`},
		{"A.Payments.SVC.cluster.local.", true, "allowed"},
		{"api.payments.example.com", true, `allowed by "API.Payments.Example.com."`},
		{"admin.payments.svc.cluster.local", false, "deny pattern"},
		{"*.payments.svc.cluster.local", false, "wildcard would cover"},
		{"payments.svc.cluster.local", false, "no allow pattern"},
		{"10.20.3.4", true, `"10.20.0.0/16"`},
		{"::ffff:10.20.3.4", true, `"10.20.0.0/16"`},
		{"10.20.99.4", false, "10.20.99.0/24"},
		{"fe80::1%eth0", false, "zone"},
		{"spiffe://cluster.local/ns/payments/sa/api", true, "allowed"},
		{"spiffe://cluster.local/ns/payments", false, "no allow pattern"},
		{"spiffe://cluster.local/ns/payments/%2e%2e/x", false, "path segment"},
		{"dev@payments.example.com", true, `"*@payments.example.com"`},
		{"dev@payments.example.com@x", false, "malformed e-mail"},
		{"@payments.example.com", false, "malformed e-mail"},
		{"", false, "empty"},
		{"10.20.0.0/16", false, "invalid character"},
		{"Payments Service", false, "invalid character"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ok, why := p.AllowsName(tc.name)
			if ok != tc.ok || !strings.Contains(why, tc.why) {
				t.Errorf("AllowsName(%q) = %v, %q; want %v, …%s…", tc.name, ok, why, tc.ok, tc.why)
			}
		})
	}
	if ok, _ := AllowAll().AllowsName("anything at all"); !ok {
		t.Error("AllowAll refused a name")
	}
	if ok, _ := (*Policy)(nil).AllowsName("a.example.com"); ok {
		t.Error("nil policy allowed a name")
	}
}

func TestCompileErrors(t *testing.T) {
	cases := []struct {
		name   string
		cfg    Config
		value  string // the entry the error must name
		reason string
	}{
		{"unknown operation", Config{Operations: []string{"issue", "superuser"}}, "superuser", "unknown operation"},
		{"empty profile", Config{Profiles: []string{""}}, `profiles[0] ""`, "empty profile"},
		{"negative max_validity", Config{MaxValidity: -time.Hour}, "-1h0m0s", "negative"},
		{"empty pattern", Config{Allow: []string{""}}, `allow[0] ""`, "empty pattern"},
		{"blank pattern", Config{Deny: []string{"  "}}, `deny[0] "  "`, "empty pattern"},
		{"padded pattern", Config{Allow: []string{" a.example.com"}}, " a.example.com", "space"},
		{"star alone", Config{Allow: []string{"*"}}, `"*"`, "too broad"},
		{"star dot com", Config{Allow: []string{"*.com"}}, "*.com", "too broad"},
		{"star dot com in deny", Config{Deny: []string{"*.com."}}, "*.com.", "too broad"},
		{"wildcard not left-most", Config{Allow: []string{"a.*.example.com"}}, "a.*.example.com", "left-most"},
		{"partial-label wildcard", Config{Allow: []string{"api*.example.com"}}, "api*.example.com", "left-most"},
		{"empty label", Config{Allow: []string{"a..example.com"}}, "a..example.com", "empty label"},
		{"unicode name", Config{Allow: []string{"bücher.example.com"}}, "bücher.example.com", "xn--"},
		{"bad v4 CIDR", Config{Allow: []string{"10.0.0.0/33"}}, "10.0.0.0/33", "CIDR"},
		{"bad v6 CIDR", Config{Allow: []string{"2001:db8::/129"}}, "2001:db8::/129", "CIDR"},
		{"CIDR with host bits", Config{Allow: []string{"10.20.1.0/16"}}, "10.20.1.0/16", "10.20.0.0/16"},
		{"bad IP", Config{Allow: []string{"10.0.0.300"}}, "10.0.0.300", "numeric"},
		{"zoned IP", Config{Allow: []string{"fe80::1%eth0"}}, "fe80::1%eth0", "zone"},
		{"URI without scheme", Config{Allow: []string{"cluster.local/ns/payments/*"}}, "cluster.local/ns/payments/*", "scheme"},
		{"URI empty scheme", Config{Allow: []string{"://cluster.local/ns/x"}}, "://cluster.local/ns/x", "scheme"},
		{"URI opaque", Config{Allow: []string{"urn:x://y"}}, "urn:x://y", "scheme://"},
		{"URI with user", Config{Allow: []string{"https://u@example.com/x"}}, "https://u@example.com/x", "user"},
		{"URI any host", Config{Allow: []string{"spiffe://*/ns/x"}}, "spiffe://*/ns/x", "too broad"},
		{"URI host wildcard too broad", Config{Allow: []string{"spiffe://*.local/ns/x"}}, "spiffe://*.local/ns/x", "too broad"},
		{"URI dot segment", Config{Allow: []string{"spiffe://td/ns/../x"}}, "spiffe://td/ns/../x", "segment"},
		{"email no local", Config{Allow: []string{"@example.com"}}, "@example.com", "local part"},
		{"email partial wildcard", Config{Allow: []string{"dev*@example.com"}}, "dev*@example.com", "whole local part"},
		{"email wildcard domain", Config{Allow: []string{"*@*.example.com"}}, "*@*.example.com", "wildcard domain"},
		{"email two ats", Config{Allow: []string{"a@b@example.com"}}, "a@b@example.com", "more than one"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p, err := Compile(tc.cfg)
			if err == nil {
				t.Fatalf("compiled %+v", p)
			}
			var ce *ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("error %T is not *ConfigError: %v", err, err)
			}
			if !strings.Contains(err.Error(), tc.value) || !strings.Contains(err.Error(), tc.reason) {
				t.Errorf("error %q; want it to name %q and say %q", err, tc.value, tc.reason)
			}
		})
	}

	t.Run("every bad entry is reported", func(t *testing.T) {
		_, err := Compile(Config{Operations: []string{"x"}, Allow: []string{"*", "a.example.com", "10.0.0.0/99"}})
		for _, want := range []string{`operations[0] "x"`, `allow[0] "*"`, `allow[2] "10.0.0.0/99"`} {
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("error %v does not mention %s", err, want)
			}
		}
	})
	t.Run("good patterns compile", func(t *testing.T) {
		mustCompile(t, payments)
		mustCompile(t, Config{Allow: []string{"localhost", "_acme.example.com", "0.0.0.0/0", "::1",
			"spiffe://td/*", "file:///srv/*", "https://*.example.com:8443/x?y=*", "spiffe://td/%2A"}})
	})
}

// The literal "%2A" in a URI pattern is the escape hatch for a real "*".
func TestURIPatternEscapedStar(t *testing.T) {
	p := mustCompile(t, Config{Allow: []string{"spiffe://td/ns/%2A"}})
	if ok, why := p.AllowsName("spiffe://td/ns/%2a"); !ok {
		t.Errorf("escaped star refused: %s", why)
	}
	if ok, _ := p.AllowsName("spiffe://td/ns/x"); ok {
		t.Error("escaped star acted as a wildcard")
	}
}

func TestYAMLConfig(t *testing.T) {
	const doc = `
operations: [issue, read, revoke, admin]
profiles: [server, client]
allow: ["*.payments.svc.cluster.local", "10.20.0.0/16", "spiffe://cluster.local/ns/payments/*"]
deny: ["admin.payments.svc.cluster.local"]
max_validity: 72h
`
	var c Config
	if err := yaml.Unmarshal([]byte(doc), &c); err != nil {
		t.Fatal(err)
	}
	if c.MaxValidity != 72*time.Hour || len(c.Allow) != 3 || len(c.Deny) != 1 || len(c.Operations) != 4 || len(c.Profiles) != 2 {
		t.Fatalf("decoded %+v", c)
	}
	p := mustCompile(t, c)
	if !p.IsAdmin() || p.MaxValidity() != 72*time.Hour || !p.AllowsProfile("server") || p.AllowsProfile("machine") {
		t.Errorf("compiled policy does not reflect %+v", c)
	}
}

// Compile's result is shared between request goroutines; run with -race.
func TestConcurrentUse(t *testing.T) {
	p := mustCompile(t, payments)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 200 {
				_ = p.CheckIssue(Request{Profile: "server", DNS: []string{strconv.Itoa(i*1000+j) + ".payments.svc.cluster.local"},
					URIs: uris("spiffe://cluster.local/ns/payments/sa/x")})
				p.AllowsName("10.20.1.1")
			}
		}()
	}
	wg.Wait()
}
