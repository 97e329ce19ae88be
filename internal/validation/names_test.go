package validation

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"net"
	"net/url"
	"strings"
	"testing"
)

var (
	label63 = strings.Repeat("a", 63)
	label64 = strings.Repeat("a", 64)
	// 63+1+63+1+63+1+61 = 253 characters, the RFC 1035 maximum.
	name253 = label63 + "." + label63 + "." + label63 + "." + strings.Repeat("b", 61)
	name254 = label63 + "." + label63 + "." + label63 + "." + strings.Repeat("b", 62)
)

func manyNames(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("host%d.example.com", i)
	}
	return out
}

func TestParseNamesValid(t *testing.T) {
	tests := []struct {
		name   string
		cn     string
		sans   []string
		wild   bool
		want   []string
		wantCN string
	}{
		{name: "plain DNS", sans: []string{"api.internal"}, want: []string{"api.internal"}},
		{name: "single label", sans: []string{"localhost"}, want: []string{"localhost"}},
		{name: "upper case and trailing dot normalised", sans: []string{"API.Example.COM."}, want: []string{"api.example.com"}},
		{name: "hyphen inside label", sans: []string{"my-service.ns.svc"}, want: []string{"my-service.ns.svc"}},
		{name: "leading digits in a label", sans: []string{"123.example.com", "1a.example.com"}, want: []string{"123.example.com", "1a.example.com"}},
		{name: "label of 63", sans: []string{label63 + ".com"}, want: []string{label63 + ".com"}},
		{name: "name of 253", sans: []string{name253}, want: []string{name253}},
		{name: "name of 253 plus trailing dot", sans: []string{name253 + "."}, want: []string{name253}},
		{name: "valid punycode", sans: []string{"xn--bcher-kva.example"}, want: []string{"xn--bcher-kva.example"}},
		{name: "punycode upper case", sans: []string{"XN--BCHER-KVA.example"}, want: []string{"xn--bcher-kva.example"}},
		{name: "punycode greek", sans: []string{"xn--nxasmq6b.com"}, want: []string{"xn--nxasmq6b.com"}},
		{name: "wildcard allowed", sans: []string{"*.example.com"}, wild: true, want: []string{"*.example.com"}},
		{name: "wildcard upper case", sans: []string{"*.EXAMPLE.com."}, wild: true, want: []string{"*.example.com"}},
		{name: "wildcard over punycode", sans: []string{"*.xn--bcher-kva.example"}, wild: true, want: []string{"*.xn--bcher-kva.example"}},
		{name: "wildcard and its base both", sans: []string{"*.example.com", "example.com"}, wild: true, want: []string{"*.example.com", "example.com"}},
		{name: "IPv4", sans: []string{"10.0.0.7"}, want: []string{"10.0.0.7"}},
		{name: "IPv4 loopback", sans: []string{"127.0.0.1"}, want: []string{"127.0.0.1"}},
		{name: "IPv6 lower-cased", sans: []string{"2001:DB8::1"}, want: []string{"2001:db8::1"}},
		{name: "IPv6 long form compressed", sans: []string{"2001:0db8:0000:0000:0000:0000:0000:0001"}, want: []string{"2001:db8::1"}},
		{name: "IPv6 loopback", sans: []string{"::1"}, want: []string{"::1"}},
		{name: "IPv4-mapped IPv6 becomes IPv4", sans: []string{"::ffff:10.0.0.1"}, want: []string{"10.0.0.1"}},
		{name: "IPv4-mapped hex becomes IPv4", sans: []string{"::ffff:a00:1"}, want: []string{"10.0.0.1"}},
		{name: "https URI normalised", sans: []string{"HTTPS://Example.COM/Path?q=1"}, want: []string{"https://example.com/Path?q=1"}},
		{name: "URI with port", sans: []string{"https://example.com:8443/x"}, want: []string{"https://example.com:8443/x"}},
		{name: "URI with IPv4 host", sans: []string{"https://10.0.0.1/"}, want: []string{"https://10.0.0.1/"}},
		{name: "URI with IPv6 host", sans: []string{"https://[2001:DB8::1]:443/"}, want: []string{"https://[2001:db8::1]:443/"}},
		{name: "URI with mapped IPv6 host", sans: []string{"https://[::ffff:10.0.0.1]:8443/"}, want: []string{"https://10.0.0.1:8443/"}},
		{name: "URI with trailing-dot host", sans: []string{"https://example.com./"}, want: []string{"https://example.com/"}},
		{name: "SPIFFE ID", sans: []string{"spiffe://cluster.local/ns/ci/sa/payments"}, want: []string{"spiffe://cluster.local/ns/ci/sa/payments"}},
		{name: "SPIFFE scheme upper case", sans: []string{"SPIFFE://cluster.local/ns/ci"}, want: []string{"spiffe://cluster.local/ns/ci"}},
		{name: "SPIFFE underscores and dots", sans: []string{"spiffe://my_td.local/a.b/c_d-e"}, want: []string{"spiffe://my_td.local/a.b/c_d-e"}},
		{name: "e-mail domain lower-cased, local kept", sans: []string{"Alice@Example.COM"}, want: []string{"Alice@example.com"}},
		{name: "e-mail with plus", sans: []string{"ops+certs@example.com"}, want: []string{"ops+certs@example.com"}},
		{name: "dedupe after normalisation", sans: []string{"a.com", "A.COM.", "b.com", "a.com"}, want: []string{"a.com", "b.com"}},
		{name: "dedupe IP forms", sans: []string{"10.0.0.1", "::ffff:10.0.0.1"}, want: []string{"10.0.0.1"}},
		{name: "dedupe IPv6 forms", sans: []string{"2001:db8::1", "2001:0DB8:0:0::1"}, want: []string{"2001:db8::1"}},
		{name: "dedupe URIs by normal form", sans: []string{"https://EXAMPLE.com/", "https://example.com/"}, want: []string{"https://example.com/"}},
		{name: "e-mail local part case is significant", sans: []string{"a@example.com", "A@example.com"}, want: []string{"a@example.com", "A@example.com"}},
		{name: "grouped by type, order kept within", sans: []string{"b@example.com", "spiffe://td/x", "10.0.0.2", "z.com", "10.0.0.1", "a.com"},
			want: []string{"z.com", "a.com", "10.0.0.2", "10.0.0.1", "spiffe://td/x", "b@example.com"}},
		{name: "CN added when missing", cn: "api.internal", sans: []string{"10.0.0.7"}, want: []string{"api.internal", "10.0.0.7"}, wantCN: "api.internal"},
		{name: "CN appended after SANs of its type", cn: "c.com", sans: []string{"a.com", "b.com"}, want: []string{"a.com", "b.com", "c.com"}, wantCN: "c.com"},
		{name: "CN already present in other case", cn: "API.internal.", sans: []string{"api.internal"}, want: []string{"api.internal"}, wantCN: "api.internal"},
		{name: "CN only", cn: "api.internal", want: []string{"api.internal"}, wantCN: "api.internal"},
		{name: "CN IP normalised", cn: "::ffff:10.0.0.9", want: []string{"10.0.0.9"}, wantCN: "10.0.0.9"},
		{name: "CN SPIFFE", cn: "spiffe://td/w", want: []string{"spiffe://td/w"}, wantCN: "spiffe://td/w"},
		{name: "CN e-mail", cn: "ops@Example.com", want: []string{"ops@example.com"}, wantCN: "ops@example.com"},
		{name: "CN wildcard where allowed", cn: "*.example.com", wild: true, want: []string{"*.example.com"}, wantCN: "*.example.com"},
		{name: "CN of 64 characters", cn: strings.Repeat("c", 60) + ".com", want: []string{strings.Repeat("c", 60) + ".com"}, wantCN: strings.Repeat("c", 60) + ".com"},
		{name: "CN of 65 characters shortened by normalisation", cn: strings.Repeat("c", 60) + ".COM.", want: []string{strings.Repeat("c", 60) + ".com"}, wantCN: strings.Repeat("c", 60) + ".com"},
		{name: "exactly MaxSANs", sans: manyNames(MaxSANs), want: manyNames(MaxSANs)},
		{name: "over MaxSANs before dedupe only", sans: append(manyNames(MaxSANs), "HOST0.example.com"), want: manyNames(MaxSANs)},
		{name: "MaxSANs including CN", cn: "host0.example.com", sans: manyNames(MaxSANs), want: manyNames(MaxSANs), wantCN: "host0.example.com"},
		{name: "emoji punycode is valid IDNA (UTS 46)", sans: []string{"xn--ls8h.example"}, want: []string{"xn--ls8h.example"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, err := ParseNames(tt.cn, tt.sans, tt.wild)
			wantOK(t, err)
			if got := n.Strings(); !equalStrings(got, tt.want) {
				t.Errorf("Strings() = %q, want %q", got, tt.want)
			}
			if n.CommonName != tt.wantCN {
				t.Errorf("CommonName = %q, want %q", n.CommonName, tt.wantCN)
			}
			if n.Count() != len(tt.want) {
				t.Errorf("Count() = %d, want %d", n.Count(), len(tt.want))
			}
			// The stored form must come back unchanged when re-validated.
			again, err := ParseNames(n.CommonName, n.Strings(), tt.wild)
			wantOK(t, err)
			if !equalStrings(again.Strings(), n.Strings()) || again.CommonName != n.CommonName {
				t.Errorf("not idempotent: %q/%q then %q/%q", n.CommonName, n.Strings(), again.CommonName, again.Strings())
			}
		})
	}
}

func TestParseNamesInvalid(t *testing.T) {
	tests := []struct {
		name   string
		cn     string
		sans   []string
		wild   bool
		field  string
		reason string
	}{
		// DNS syntax
		{name: "label of 64", sans: []string{label64 + ".com"}, field: "sans[0]", reason: "label of 64"},
		{name: "name of 254", sans: []string{name254}, field: "sans[0]", reason: "254 characters"},
		{name: "empty string", sans: []string{""}, field: "sans[0]", reason: "is empty"},
		{name: "only a dot", sans: []string{"."}, field: "sans[0]", reason: "only a dot"},
		{name: "empty label", sans: []string{"a..b.com"}, field: "sans[0]", reason: "empty label"},
		{name: "leading dot", sans: []string{".a.com"}, field: "sans[0]", reason: "empty label"},
		{name: "two trailing dots", sans: []string{"a.com.."}, field: "sans[0]", reason: "empty label"},
		{name: "underscore", sans: []string{"_acme.example.com"}, field: "sans[0]", reason: "underscore"},
		{name: "space inside", sans: []string{"a b.com"}, field: "sans[0]", reason: "space"},
		{name: "leading space", sans: []string{" a.com"}, field: "sans[0]", reason: "space"},
		{name: "NUL byte", sans: []string{"a\x00.com"}, field: "sans[0]", reason: "control character"},
		{name: "newline", sans: []string{"a.com\n"}, field: "sans[0]", reason: "control character"},
		{name: "DEL", sans: []string{"a\x7f.com"}, field: "sans[0]", reason: "control character"},
		{name: "leading hyphen", sans: []string{"-a.com"}, field: "sans[0]", reason: "hyphen"},
		{name: "trailing hyphen", sans: []string{"a-.com"}, field: "sans[0]", reason: "hyphen"},
		{name: "slash", sans: []string{"a/b.com"}, field: "sans[0]", reason: "letters, digits, hyphens"},
		{name: "reserved R-LDH label", sans: []string{"ab--cd.example"}, field: "sans[0]", reason: "reserved for IDNA"},
		// Unicode and IDNA
		{name: "Unicode with punycode hint", sans: []string{"bücher.example"}, field: "sans[0]", reason: "xn--bcher-kva.example"},
		{name: "Unicode upper case hint", sans: []string{"BÜCHER.example"}, field: "sans[0]", reason: "punycode"},
		{name: "Unicode that has no punycode", sans: []string{"a\u2488.ru"}, field: "sans[0]", reason: "punycode"},
		{name: "invalid UTF-8", sans: []string{"a\xff.com"}, field: "sans[0]", reason: "non-ASCII"},
		{name: "punycode that does not decode", sans: []string{"xn--a.example"}, field: "sans[0]", reason: "not valid IDNA"},
		{name: "punycode of disallowed rune", sans: []string{"xn--a-ecp.ru"}, field: "sans[0]", reason: "not valid IDNA"},
		{name: "punycode of non-NFC", sans: []string{"xn--bucher-xyd.example"}, field: "sans[0]", reason: "not valid IDNA"},
		{name: "punycode of mapped rune", sans: []string{"xn--c2g.example"}, field: "sans[0]", reason: "not valid IDNA"},
		{name: "bare xn-- label", sans: []string{"xn--.example"}, field: "sans[0]", reason: "hyphen"},
		// numeric look-alikes
		{name: "IPv4 octet over 255", sans: []string{"1.2.3.256"}, field: "sans[0]", reason: "looks like an IPv4"},
		{name: "IPv4 leading zero", sans: []string{"010.0.0.1"}, field: "sans[0]", reason: "looks like an IPv4"},
		{name: "IPv4 with three parts", sans: []string{"10.1.1"}, field: "sans[0]", reason: "looks like an IPv4"},
		{name: "IPv4 with trailing dot", sans: []string{"10.0.0.1."}, field: "sans[0]", reason: "looks like an IPv4"},
		{name: "numeric last label", sans: []string{"example.123"}, field: "sans[0]", reason: "numeric label"},
		{name: "hex last label", sans: []string{"example.0x1f"}, field: "sans[0]", reason: "numeric label"},
		// wildcards
		{name: "wildcard not allowed by profile", sans: []string{"*.example.com"}, field: "sans[0]", reason: "this profile does not allow wildcards"},
		{name: "wildcard over a TLD", sans: []string{"*.com"}, wild: true, field: "sans[0]", reason: "two labels"},
		{name: "bare wildcard", sans: []string{"*"}, wild: true, field: "sans[0]", reason: "two labels"},
		{name: "partial wildcard prefix", sans: []string{"a*.b.com"}, wild: true, field: "sans[0]", reason: "whole left-most label"},
		{name: "partial wildcard suffix", sans: []string{"*a.b.com"}, wild: true, field: "sans[0]", reason: "whole left-most label"},
		{name: "double wildcard label", sans: []string{"**.b.com"}, wild: true, field: "sans[0]", reason: "whole left-most label"},
		{name: "two wildcard labels", sans: []string{"*.*.b.com"}, wild: true, field: "sans[0]", reason: "whole left-most label"},
		{name: "wildcard in the middle", sans: []string{"foo.*.com"}, wild: true, field: "sans[0]", reason: "whole left-most label"},
		{name: "wildcard last", sans: []string{"b.com.*"}, wild: true, field: "sans[0]", reason: "whole left-most label"},
		{name: "wildcard misplaced without permission", sans: []string{"foo.*.com"}, field: "sans[0]", reason: "whole left-most label"},
		{name: "wildcard CN not allowed", cn: "*.example.com", field: "common_name", reason: "does not allow wildcards"},
		{name: "wildcard on an IP-like name", sans: []string{"*.1.2.3"}, wild: true, field: "sans[0]", reason: "numeric label"},
		// IP addresses
		{name: "IPv6 zone", sans: []string{"fe80::1%eth0"}, field: "sans[0]", reason: "zone"},
		{name: "IPv4-mapped with zone", sans: []string{"::ffff:10.0.0.1%1"}, field: "sans[0]", reason: "zone"},
		{name: "IPv4 unspecified", sans: []string{"0.0.0.0"}, field: "sans[0]", reason: "unspecified"},
		{name: "IPv6 unspecified", sans: []string{"::"}, field: "sans[0]", reason: "unspecified"},
		{name: "multicast", sans: []string{"224.0.0.1"}, field: "sans[0]", reason: "multicast"},
		{name: "bracketed IPv6", sans: []string{"[::1]"}, field: "sans[0]", reason: "neither a valid IP address"},
		{name: "host and port", sans: []string{"10.0.0.1:443"}, field: "sans[0]", reason: "neither a valid IP address"},
		{name: "bad IPv6", sans: []string{"2001:db8::g"}, field: "sans[0]", reason: "neither a valid IP address"},
		{name: "empty zone", sans: []string{"fe80::1%"}, field: "sans[0]", reason: "neither a valid IP address"},
		// URIs
		{name: "URI without host", sans: []string{"https://"}, field: "sans[0]", reason: "no host"},
		{name: "URI without host but path", sans: []string{"https:///path"}, field: "sans[0]", reason: "no host"},
		{name: "URI without scheme", sans: []string{"://example.com/"}, field: "sans[0]", reason: "not a valid URI"},
		{name: "URI with userinfo", sans: []string{"https://user@example.com/"}, field: "sans[0]", reason: "user information"},
		{name: "URI with fragment", sans: []string{"https://example.com/#frag"}, field: "sans[0]", reason: "fragment"},
		{name: "URI with empty fragment", sans: []string{"https://example.com/#"}, field: "sans[0]", reason: "fragment"},
		{name: "URI with opaque part", sans: []string{"urn:x://y"}, field: "sans[0]", reason: "scheme://host"},
		{name: "URI host with underscore", sans: []string{"https://exa_mple.com/"}, field: "sans[0]", reason: "underscore"},
		{name: "URI host wildcard", sans: []string{"https://*.example.com/"}, wild: true, field: "sans[0]", reason: "wildcards are not allowed in URI hosts"},
		{name: "URI host non-ASCII", sans: []string{"https://exämple.com/"}, field: "sans[0]", reason: "non-ASCII"},
		{name: "URI with space", sans: []string{"https://example.com/a b"}, field: "sans[0]", reason: "space"},
		{name: "URI port zero", sans: []string{"https://example.com:0/"}, field: "sans[0]", reason: "port"},
		{name: "URI port too large", sans: []string{"https://example.com:65536/"}, field: "sans[0]", reason: "port"},
		{name: "URI port leading zero", sans: []string{"https://example.com:0443/"}, field: "sans[0]", reason: "port"},
		{name: "URI empty port", sans: []string{"https://example.com:/"}, field: "sans[0]", reason: "port"},
		{name: "URI IPv6 zone host", sans: []string{"https://[fe80::1%25eth0]/"}, field: "sans[0]", reason: "zone"},
		{name: "URI bracketed IPv4", sans: []string{"https://[10.0.0.1]/"}, field: "sans[0]", reason: "not a valid URI"},
		{name: "URI too long", sans: []string{"https://example.com/" + strings.Repeat("a", MaxURILen)}, field: "sans[0]", reason: "at most 2048"},
		// SPIFFE
		{name: "SPIFFE upper-case trust domain", sans: []string{"spiffe://Cluster.local/ns/x"}, field: "sans[0]", reason: "lower case"},
		{name: "SPIFFE without path", sans: []string{"spiffe://cluster.local"}, field: "sans[0]", reason: "without a path"},
		{name: "SPIFFE root path", sans: []string{"spiffe://cluster.local/"}, field: "sans[0]", reason: "without a path"},
		{name: "SPIFFE trailing slash", sans: []string{"spiffe://cluster.local/ns/"}, field: "sans[0]", reason: "empty path segment"},
		{name: "SPIFFE double slash", sans: []string{"spiffe://cluster.local/a//b"}, field: "sans[0]", reason: "empty path segment"},
		{name: "SPIFFE dot-dot segment", sans: []string{"spiffe://cluster.local/a/../b"}, field: "sans[0]", reason: "'..'"},
		{name: "SPIFFE query", sans: []string{"spiffe://cluster.local/a?x=1"}, field: "sans[0]", reason: "query"},
		{name: "SPIFFE empty query", sans: []string{"spiffe://cluster.local/a?"}, field: "sans[0]", reason: "query"},
		{name: "SPIFFE fragment", sans: []string{"spiffe://cluster.local/a#f"}, field: "sans[0]", reason: "fragment"},
		{name: "SPIFFE port", sans: []string{"spiffe://cluster.local:8080/a"}, field: "sans[0]", reason: "port"},
		{name: "SPIFFE userinfo", sans: []string{"spiffe://user@cluster.local/a"}, field: "sans[0]", reason: "user information"},
		{name: "SPIFFE without trust domain", sans: []string{"spiffe:///a"}, field: "sans[0]", reason: "without a trust domain"},
		{name: "SPIFFE percent-encoding", sans: []string{"spiffe://cluster.local/a%41b"}, field: "sans[0]", reason: "percent-encoding"},
		{name: "SPIFFE bad path character", sans: []string{"spiffe://cluster.local/a+b"}, field: "sans[0]", reason: "path contains"},
		{name: "SPIFFE bad trust-domain character", sans: []string{"spiffe://clus~ter/a"}, field: "sans[0]", reason: "trust domain contains"},
		{name: "SPIFFE too long", sans: []string{"spiffe://td/" + strings.Repeat("a", MaxURILen)}, field: "sans[0]", reason: "at most 2048"},
		// e-mail
		{name: "e-mail two at signs", sans: []string{"a@@b.com"}, field: "sans[0]", reason: "exactly one"},
		{name: "e-mail empty local part", sans: []string{"@b.com"}, field: "sans[0]", reason: "empty local part"},
		{name: "e-mail empty domain", sans: []string{"a@"}, field: "sans[0]", reason: "domain"},
		{name: "e-mail domain underscore", sans: []string{"a@b_c.com"}, field: "sans[0]", reason: "underscore"},
		{name: "e-mail space in local part", sans: []string{"a b@c.com"}, field: "sans[0]", reason: "space"},
		{name: "e-mail non-ASCII local part", sans: []string{"jörg@example.com"}, field: "sans[0]", reason: "non-ASCII"},
		{name: "e-mail wildcard domain", sans: []string{"a@*.example.com"}, wild: true, field: "sans[0]", reason: "wildcards are not allowed in e-mail"},
		{name: "e-mail IP domain", sans: []string{"a@10.0.0.1"}, field: "sans[0]", reason: "IPv4"},
		{name: "e-mail bracketed domain", sans: []string{"a@[10.0.0.1]"}, field: "sans[0]", reason: "domain"},
		{name: "e-mail long local part", sans: []string{strings.Repeat("l", 65) + "@example.com"}, field: "sans[0]", reason: "local part of 65"},
		// common name
		{name: "CN of 65 characters", cn: strings.Repeat("c", 61) + ".com", field: "common_name", reason: "at most 64"},
		{name: "CN invalid", cn: "bad_cn.example", field: "common_name", reason: "underscore"},
		{name: "CN Unicode", cn: "bücher.example", field: "common_name", reason: "punycode"},
		// counts
		{name: "no names at all", field: "sans", reason: "no names"},
		{name: "empty SAN list", sans: []string{}, field: "sans", reason: "no names"},
		{name: "too many SANs", sans: manyNames(MaxSANs + 1), field: "sans", reason: "101 names"},
		{name: "too many with CN", cn: "extra.example.com", sans: manyNames(MaxSANs), field: "sans", reason: "101 names"},
		// the index must point at the bad entry
		{name: "bad entry indexed", sans: []string{"ok.com", "10.0.0.1", "bad_name.com"}, field: "sans[2]", reason: "underscore"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, err := ParseNames(tt.cn, tt.sans, tt.wild)
			if n != nil {
				t.Errorf("got names %q alongside an error", n.Strings())
			}
			wantValidation(t, err, tt.field, tt.reason)
		})
	}
}

// All bad SANs are reported at once so a client can fix them in one go.
func TestParseNamesCollectsAllErrors(t *testing.T) {
	_, err := ParseNames("bad cn", []string{"ok.com", "bad_one.com", "10.0.0.1", "*.x.com", "fe80::1%eth0"}, false)
	e := wantValidation(t, err, "sans[1]", "underscore")
	wantValidation(t, err, "sans[3]", "wildcards")
	wantValidation(t, err, "sans[4]", "zone")
	wantValidation(t, err, "common_name", "space")
	if len(e.Details) != 4 {
		t.Errorf("got %d details, want 4: %+v", len(e.Details), e.Details)
	}
}

// Thousands of bad SANs must not produce thousands of details.
func TestParseNamesDetailsBounded(t *testing.T) {
	sans := make([]string, 5*MaxSANs)
	for i := range sans {
		sans[i] = fmt.Sprintf("bad_%d.com", i)
	}
	_, err := ParseNames("", sans, false)
	e := wantValidation(t, err, "sans[0]", "underscore")
	if len(e.Details) > MaxSANs+1 {
		t.Errorf("got %d details, want at most %d", len(e.Details), MaxSANs+1)
	}
	wantValidation(t, err, fmt.Sprintf("sans[%d]", MaxSANs-1), "more problems not listed")
}

// Reasons echo the input, but never an unbounded amount of it.
func TestReasonEchoBounded(t *testing.T) {
	long := strings.Repeat("x_", 5000)
	_, err := ParseNames("", []string{long}, false)
	e := wantValidation(t, err, "sans[0]", "at most 253")
	if len(e.Details[0].Reason) > 400 {
		t.Errorf("reason is %d bytes long", len(e.Details[0].Reason))
	}
}

func TestNamesTypes(t *testing.T) {
	n, err := ParseNames("", []string{"a.com", "10.0.0.1", "2001:db8::1", "spiffe://td/w", "x@a.com"}, false)
	wantOK(t, err)
	if len(n.DNS) != 1 || len(n.IPs) != 2 || len(n.URIs) != 1 || len(n.Emails) != 1 {
		t.Fatalf("classified as %+v", n)
	}
	if len(n.IPs[0]) != net.IPv4len {
		t.Errorf("IPv4 stored in %d bytes, want 4", len(n.IPs[0]))
	}
	if !n.IPs[1].Equal(net.ParseIP("2001:db8::1")) {
		t.Errorf("IPv6 = %v", n.IPs[1])
	}
	if n.URIs[0].Scheme != "spiffe" || n.URIs[0].Host != "td" || n.URIs[0].Path != "/w" {
		t.Errorf("URI = %#v", n.URIs[0])
	}
	var none *Names
	if none.Count() != 0 || none.Strings() != nil {
		t.Errorf("nil Names: Count %d Strings %q", none.Count(), none.Strings())
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

func TestNamesFromCSR(t *testing.T) {
	valid := []struct {
		name   string
		csr    *x509.CertificateRequest
		wild   bool
		want   []string
		wantCN string
	}{
		{name: "all SAN types normalised", csr: &x509.CertificateRequest{
			Subject:        pkix.Name{CommonName: "API.internal"},
			DNSNames:       []string{"api.internal", "B.Internal."},
			IPAddresses:    []net.IP{net.ParseIP("10.0.0.1"), net.ParseIP("2001:db8::1")},
			URIs:           []*url.URL{mustURL(t, "SPIFFE://cluster.local/ns/a")},
			EmailAddresses: []string{"Ops@Example.com"},
		}, want: []string{"api.internal", "b.internal", "10.0.0.1", "2001:db8::1", "spiffe://cluster.local/ns/a", "Ops@example.com"}, wantCN: "api.internal"},
		{name: "CN only", csr: &x509.CertificateRequest{Subject: pkix.Name{CommonName: "only.example"}},
			want: []string{"only.example"}, wantCN: "only.example"},
		{name: "SANs only", csr: &x509.CertificateRequest{DNSNames: []string{"a.example"}}, want: []string{"a.example"}},
		{name: "CN added", csr: &x509.CertificateRequest{Subject: pkix.Name{CommonName: "10.0.0.9"}, DNSNames: []string{"a.example"}},
			want: []string{"a.example", "10.0.0.9"}, wantCN: "10.0.0.9"},
		{name: "duplicates removed", csr: &x509.CertificateRequest{DNSNames: []string{"a.example", "A.EXAMPLE"},
			IPAddresses: []net.IP{net.ParseIP("10.0.0.1"), net.IP{10, 0, 0, 1}}}, want: []string{"a.example", "10.0.0.1"}},
		{name: "wildcard where allowed", csr: &x509.CertificateRequest{DNSNames: []string{"*.example.com"}}, wild: true, want: []string{"*.example.com"}},
	}
	for _, tt := range valid {
		t.Run(tt.name, func(t *testing.T) {
			n, err := NamesFromCSR(tt.csr, tt.wild)
			wantOK(t, err)
			if !equalStrings(n.Strings(), tt.want) || n.CommonName != tt.wantCN {
				t.Errorf("got %q/%q, want %q/%q", n.CommonName, n.Strings(), tt.wantCN, tt.want)
			}
			// The CSR's names, once stored as strings, must validate as a
			// request would send them.
			again, err := ParseNames(n.CommonName, n.Strings(), tt.wild)
			wantOK(t, err)
			wantOK(t, SameSet(again, n))
		})
	}

	invalid := []struct {
		name   string
		csr    *x509.CertificateRequest
		wild   bool
		reason string
	}{
		{name: "nil CSR", csr: nil, reason: "no CSR"},
		{name: "no names", csr: &x509.CertificateRequest{}, reason: "names nothing"},
		{name: "bad DNS name", csr: &x509.CertificateRequest{DNSNames: []string{"bad_name.example"}}, reason: "underscore"},
		{name: "IP in a DNS name", csr: &x509.CertificateRequest{DNSNames: []string{"10.0.0.1"}}, reason: "IPv4"},
		{name: "URI in a DNS name", csr: &x509.CertificateRequest{DNSNames: []string{"https://a.com/"}}, reason: "DNS name"},
		{name: "wildcard not allowed", csr: &x509.CertificateRequest{DNSNames: []string{"*.example.com"}}, reason: "does not allow wildcards"},
		{name: "malformed IP", csr: &x509.CertificateRequest{IPAddresses: []net.IP{{1, 2, 3}}}, reason: "malformed"},
		{name: "unspecified IP", csr: &x509.CertificateRequest{IPAddresses: []net.IP{net.IPv4zero}}, reason: "unspecified"},
		{name: "URI with userinfo", csr: &x509.CertificateRequest{URIs: []*url.URL{mustURL(t, "https://u@a.com/")}}, reason: "user information"},
		{name: "SPIFFE without path", csr: &x509.CertificateRequest{URIs: []*url.URL{mustURL(t, "spiffe://td")}}, reason: "without a path"},
		{name: "bad e-mail", csr: &x509.CertificateRequest{EmailAddresses: []string{"a@b@c.com"}}, reason: "exactly one"},
		{name: "e-mail that reads as a URI", csr: &x509.CertificateRequest{EmailAddresses: []string{"a://b@example.com"}}, reason: "ambiguous"},
		{name: "bad CN", csr: &x509.CertificateRequest{Subject: pkix.Name{CommonName: "bad cn"}, DNSNames: []string{"a.com"}}, reason: "subject common name"},
		{name: "long CN", csr: &x509.CertificateRequest{Subject: pkix.Name{CommonName: strings.Repeat("c", 61) + ".com"}}, reason: "at most 64"},
		{name: "wildcard CN not allowed", csr: &x509.CertificateRequest{Subject: pkix.Name{CommonName: "*.example.com"}}, reason: "does not allow wildcards"},
		{name: "too many names", csr: &x509.CertificateRequest{DNSNames: manyNames(MaxSANs + 1)}, reason: "101 names"},
	}
	for _, tt := range invalid {
		t.Run(tt.name, func(t *testing.T) {
			n, err := NamesFromCSR(tt.csr, tt.wild)
			if n != nil {
				t.Errorf("got names %q alongside an error", n.Strings())
			}
			wantValidation(t, err, "csr", tt.reason)
		})
	}
}

func TestSameSet(t *testing.T) {
	parse := func(cn string, sans ...string) *Names {
		t.Helper()
		n, err := ParseNames(cn, sans, true)
		wantOK(t, err)
		return n
	}
	same := []struct {
		name     string
		req, csr *Names
	}{
		{name: "identical", req: parse("", "a.com", "10.0.0.1"), csr: parse("", "a.com", "10.0.0.1")},
		{name: "different order", req: parse("", "a.com", "b.com", "10.0.0.1"), csr: parse("", "10.0.0.1", "b.com", "a.com")},
		{name: "different spelling, same normal form", req: parse("", "A.com.", "::ffff:10.0.0.1"), csr: parse("", "a.com", "10.0.0.1")},
		{name: "CN counted as a SAN", req: parse("a.com", "b.com"), csr: parse("", "b.com", "a.com")},
		{name: "different CN, same SANs", req: parse("a.com", "a.com", "b.com"), csr: parse("b.com", "a.com", "b.com")},
		{name: "both nil", req: nil, csr: nil},
	}
	for _, tt := range same {
		t.Run(tt.name, func(t *testing.T) {
			if err := SameSet(tt.req, tt.csr); err != nil {
				t.Errorf("SameSet = %v, want nil", err)
			}
		})
	}
	differ := []struct {
		name     string
		req, csr *Names
		reason   string
	}{
		{name: "request has more", req: parse("", "a.com", "b.com"), csr: parse("", "a.com"), reason: `the request names "b.com" but the CSR does not`},
		{name: "CSR has more", req: parse("", "a.com"), csr: parse("", "a.com", "10.0.0.1"), reason: `the CSR names "10.0.0.1" but the request does not`},
		{name: "disjoint", req: parse("", "spiffe://td/a"), csr: parse("", "spiffe://td/b"), reason: `"spiffe://td/a"`},
		{name: "wildcard is not its base", req: parse("", "*.a.com"), csr: parse("", "x.a.com"), reason: `"*.a.com"`},
		{name: "e-mail local part case", req: parse("", "A@x.com"), csr: parse("", "a@x.com"), reason: `"A@x.com"`},
		{name: "against nil", req: parse("", "a.com"), csr: nil, reason: `"a.com"`},
	}
	for _, tt := range differ {
		t.Run(tt.name, func(t *testing.T) {
			err := SameSet(tt.req, tt.csr)
			wantValidation(t, err, "csr", tt.reason)
		})
	}
}
