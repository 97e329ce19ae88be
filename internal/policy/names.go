package policy

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"regexp"
	"strings"
)

type kind int

const (
	kindDNS kind = iota
	kindIP
	kindURI
	kindEmail
)

// name is one requested name in the canonical form patterns are compared
// against; text doubles as the form shown in messages.
type name struct {
	kind          kind
	text          string
	addr          netip.Addr // kindIP
	local, domain string     // kindEmail
}

// parseName classifies a name the way the service classifies a common name.
// IP comes first because an IPv6 literal is not a DNS name even though it
// contains none of "://" and "@".
func parseName(s string) (name, error) {
	if s == "" {
		return name{}, errors.New("empty name")
	}
	if a, err := netip.ParseAddr(s); err == nil {
		return addrName(a)
	}
	if strings.Contains(s, "://") {
		u, err := url.Parse(s)
		if err != nil {
			return name{}, fmt.Errorf("malformed URI: %v", err)
		}
		return parseURL(u)
	}
	if strings.Contains(s, "@") {
		return parseEmail(s)
	}
	return parseDNS(s)
}

func parseDNS(s string) (name, error) {
	s = normDNS(s)
	if _, err := checkDNS(s); err != nil {
		return name{}, err
	}
	return name{kind: kindDNS, text: s}, nil
}

func parseIP(ip net.IP) (name, error) {
	a, ok := netip.AddrFromSlice(ip)
	if !ok {
		return name{}, fmt.Errorf("malformed IP address (%d bytes)", len(ip))
	}
	return addrName(a)
}

// addrName unmaps IPv4-mapped addresses because a TLS client connecting to
// ::ffff:10.0.0.1 is connecting to 10.0.0.1: the two must get one answer.
func addrName(a netip.Addr) (name, error) {
	if a.Zone() != "" {
		return name{}, errors.New("IP address with a zone cannot appear in a certificate")
	}
	a = a.Unmap()
	return name{kind: kindIP, text: a.String(), addr: a}, nil
}

func parseURL(u *url.URL) (name, error) {
	if u == nil {
		return name{}, errors.New("empty URI")
	}
	if u.Scheme == "" {
		return name{}, errors.New("URI without a scheme")
	}
	if hasDotSegment(u) {
		// Relying parties that resolve dot segments would read
		// spiffe://td/ns/payments/../admin as another identity than the
		// one the pattern allowed.
		return name{}, errors.New(`URI with a "." or ".." path segment`)
	}
	return name{kind: kindURI, text: canonURI(u)}, nil
}

func parseEmail(s string) (name, error) {
	local, domain, ok := strings.Cut(s, "@")
	if !ok || local == "" || domain == "" || strings.Contains(domain, "@") {
		return name{}, errors.New("malformed e-mail address: want local@domain")
	}
	domain = normDNS(domain)
	if w, err := checkDNS(domain); err != nil || w {
		return name{}, errors.New("malformed e-mail address: bad domain")
	}
	return name{kind: kindEmail, text: local + "@" + domain, local: local, domain: domain}, nil
}

// normDNS makes the forms the service treats as equal compare equal.
func normDNS(s string) string {
	return strings.TrimSuffix(strings.ToLower(s), ".")
}

// checkDNS checks the syntax of a normalised DNS name. It is strict even
// though validation checks requests first: a wildcard pattern matches by
// suffix, so without this a name with a space or a "/" under an allowed
// suffix would pass.
func checkDNS(s string) (wildcard bool, err error) {
	if s == "" {
		return false, errors.New("empty DNS name")
	}
	if len(s) > 253 {
		return false, errors.New("DNS name longer than 253 characters")
	}
	for i, l := range strings.Split(s, ".") {
		switch {
		case l == "":
			return false, errors.New("DNS name with an empty label")
		case l == "*":
			if i != 0 {
				return false, errors.New(`wildcard "*" must be the whole left-most label`)
			}
			wildcard = true
			continue
		case len(l) > 63:
			return false, errors.New("DNS label longer than 63 characters")
		}
		for _, c := range l {
			switch {
			case 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '-', c == '_':
			case c == '*':
				return false, errors.New(`wildcard "*" must be the whole left-most label`)
			default:
				return false, fmt.Errorf("invalid character %q in DNS name (internationalised names must be in xn-- form)", c)
			}
		}
	}
	return wildcard, nil
}

func isWildcard(dns string) bool { return strings.HasPrefix(dns, "*.") }

// under reports whether n is strictly below the domain d.
func under(n, d string) bool {
	return len(n) > len(d)+1 && strings.HasSuffix(n, d) && n[len(n)-len(d)-1] == '.'
}

// hasDotSegment looks at the decoded path so that %2e%2e counts as "..".
func hasDotSegment(u *url.URL) bool {
	if u.Opaque != "" {
		return false
	}
	for _, seg := range strings.Split(u.Path, "/") {
		if seg == "." || seg == ".." {
			return true
		}
	}
	return false
}

// canonURI writes a URI so that spellings RFC 3986 §6.2.2 calls equivalent
// compare equal: lower-case scheme and host, percent-encoded unreserved
// characters decoded, other escapes in upper case. Without this,
// spiffe://td/ns/p/sa/%61dmin would slip past a deny of .../sa/admin.
func canonURI(u *url.URL) string {
	var b strings.Builder
	b.WriteString(strings.ToLower(u.Scheme))
	b.WriteByte(':')
	if u.Opaque != "" {
		b.WriteString(normPercent(u.Opaque))
	} else {
		b.WriteString("//")
		if u.User != nil {
			b.WriteString(u.User.String())
			b.WriteByte('@')
		}
		b.WriteString(strings.ToLower(u.Host))
		b.WriteString(normPercent(u.EscapedPath()))
	}
	if u.ForceQuery || u.RawQuery != "" {
		b.WriteByte('?')
		b.WriteString(normPercent(u.RawQuery))
	}
	if u.Fragment != "" {
		b.WriteByte('#')
		b.WriteString(normPercent(u.EscapedFragment()))
	}
	return b.String()
}

func normPercent(s string) string {
	if !strings.Contains(s, "%") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]) {
			c := unhex(s[i+1])<<4 | unhex(s[i+2])
			if isUnreserved(c) {
				b.WriteByte(c)
			} else {
				b.WriteByte('%')
				b.WriteString(strings.ToUpper(s[i+1 : i+3]))
			}
			i += 2
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c >= 'a':
		return c - 'a' + 10
	default:
		return c - 'A' + 10
	}
}

func isUnreserved(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '-' || c == '.' || c == '_' || c == '~'
}

// patterns is one compiled allow or deny list, split by kind so that a
// pattern is only ever compared with names of its own kind.
type patterns struct {
	dns    []dnsPattern
	ips    []ipPattern
	uris   []uriPattern
	emails []emailPattern
}

type dnsPattern struct {
	src    string
	name   string // the suffix without "*." when wildcard
	suffix bool
}

type ipPattern struct {
	src    string
	prefix netip.Prefix
}

type uriPattern struct {
	src   string
	exact string         // canonical form, when the pattern has no "*"
	re    *regexp.Regexp // otherwise
}

type emailPattern struct {
	src    string
	local  string // "" = any local part
	domain string
}

func (ps *patterns) compile(key string, srcs []string) []error {
	var errs []error
	for i, src := range srcs {
		if err := ps.add(src); err != nil {
			errs = append(errs, &ConfigError{Key: key, Index: i, Value: src, Reason: err.Error()})
		}
	}
	return errs
}

func (ps *patterns) add(src string) error {
	switch {
	case strings.TrimSpace(src) == "":
		return errors.New("empty pattern")
	case strings.TrimSpace(src) != src:
		return errors.New("pattern with leading or trailing space")
	case strings.Contains(src, "://"):
		p, err := compileURI(src)
		if err != nil {
			return err
		}
		ps.uris = append(ps.uris, p)
	case strings.Contains(src, "/"):
		pfx, err := netip.ParsePrefix(src)
		if err != nil {
			return errors.New("neither a CIDR nor a URI (a URI pattern needs scheme://)")
		}
		if pfx.Masked() != pfx {
			// 10.20.1.0/16 is most likely a typo for /24; guessing which
			// was meant could allow 255 networks too many.
			return fmt.Errorf("CIDR has host bits set (the network is %s)", pfx.Masked())
		}
		ps.ips = append(ps.ips, ipPattern{src: src, prefix: unmapPrefix(pfx)})
	case isAddr(src):
		a, _ := netip.ParseAddr(src)
		if a.Zone() != "" {
			return errors.New("IP address with a zone")
		}
		a = a.Unmap()
		ps.ips = append(ps.ips, ipPattern{src: src, prefix: netip.PrefixFrom(a, a.BitLen())})
	case strings.Contains(src, "@"):
		p, err := compileEmail(src)
		if err != nil {
			return err
		}
		ps.emails = append(ps.emails, p)
	default:
		p, err := compileDNS(src)
		if err != nil {
			return err
		}
		ps.dns = append(ps.dns, p)
	}
	return nil
}

func isAddr(s string) bool {
	_, err := netip.ParseAddr(s)
	return err == nil
}

// unmapPrefix turns ::ffff:10.0.0.0/104 into 10.0.0.0/8, because requested
// addresses are unmapped before matching and would otherwise never match it.
func unmapPrefix(p netip.Prefix) netip.Prefix {
	if p.Addr().Is4In6() && p.Bits() >= 96 {
		return netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
	}
	return p
}

func compileDNS(src string) (dnsPattern, error) {
	s := normDNS(src)
	wild, err := checkDNS(s)
	if err != nil {
		return dnsPattern{}, err
	}
	labels := strings.Split(s, ".")
	last := labels[len(labels)-1]
	if strings.Trim(last, "0123456789") == "" {
		return dnsPattern{}, errors.New("all-numeric top-level label: not a DNS name, and not a valid IP address")
	}
	if !wild {
		return dnsPattern{src: src, name: s}, nil
	}
	// "*" alone or "*.com" would hand a principal a whole top-level domain,
	// which is never what a per-service policy means.
	if len(labels) < 3 {
		return dnsPattern{}, errors.New(`a wildcard needs at least two labels after "*." ("*" alone and "*.com" are too broad)`)
	}
	return dnsPattern{src: src, name: strings.Join(labels[1:], "."), suffix: true}, nil
}

func compileEmail(src string) (emailPattern, error) {
	local, domain, _ := strings.Cut(src, "@")
	switch {
	case local == "":
		return emailPattern{}, errors.New(`e-mail pattern without a local part (use "*@domain" for any)`)
	case strings.Contains(domain, "@"):
		return emailPattern{}, errors.New(`e-mail pattern with more than one "@"`)
	case local != "*" && strings.Contains(local, "*"):
		return emailPattern{}, errors.New(`"*" in an e-mail pattern must be the whole local part`)
	}
	domain = normDNS(domain)
	if strings.Contains(domain, "*") {
		return emailPattern{}, errors.New(`e-mail pattern with a wildcard domain (only "*@domain" is supported)`)
	}
	if _, err := checkDNS(domain); err != nil {
		return emailPattern{}, fmt.Errorf("e-mail pattern domain: %v", err)
	}
	if local == "*" {
		local = ""
	}
	return emailPattern{src: src, local: local, domain: domain}, nil
}

// hostLabels is the regexp for the labels a host wildcard stands for: one
// or more, like a DNS wildcard pattern, but never crossing into the port,
// the user information or the path.
const hostLabels = `[^/?#@:.\[\]]+(?:\.[^/?#@:.\[\]]+)*`

func compileURI(src string) (uriPattern, error) {
	u, err := url.Parse(src)
	if err != nil {
		return uriPattern{}, fmt.Errorf("malformed URI: %v", err)
	}
	switch {
	case u.Scheme == "":
		return uriPattern{}, errors.New("URI pattern without a scheme")
	case u.Opaque != "":
		return uriPattern{}, errors.New("URI pattern must have the form scheme://…")
	case u.User != nil:
		return uriPattern{}, errors.New("URI pattern with user information")
	case hasDotSegment(u):
		return uriPattern{}, errors.New(`URI pattern with a "." or ".." path segment`)
	}
	host := strings.ToLower(u.Hostname())
	if strings.Contains(host, "*") {
		if _, err := compileDNS(host); err != nil {
			return uriPattern{}, fmt.Errorf("URI pattern host: %v", err)
		}
	}
	canon := canonURI(u)
	if !strings.Contains(canon, "*") {
		return uriPattern{src: src, exact: canon}, nil
	}

	// The authority and the rest get different wildcard rules, so cut the
	// canonical form where canonURI put the host.
	head := strings.ToLower(u.Scheme) + "://"
	authority := strings.ToLower(u.Host)
	rest := canon[len(head)+len(authority):]
	var re strings.Builder
	re.WriteString("^")
	re.WriteString(regexp.QuoteMeta(head))
	if strings.HasPrefix(authority, "*.") {
		re.WriteString(hostLabels)
		authority = authority[1:]
	}
	re.WriteString(regexp.QuoteMeta(authority))
	parts := strings.Split(rest, "*")
	for i, part := range parts {
		re.WriteString(regexp.QuoteMeta(part))
		switch {
		case i == len(parts)-1:
		case i == len(parts)-2 && parts[i+1] == "" && strings.HasSuffix(part, "/"):
			// A trailing "/*" grants a whole subtree: listing every depth
			// of spiffe://td/ns/payments/... separately is impractical.
			re.WriteString(".+")
		default:
			re.WriteString("[^/?#]+")
		}
	}
	re.WriteString("$")
	r, err := regexp.Compile(re.String())
	if err != nil {
		return uriPattern{}, fmt.Errorf("internal: URI pattern regexp: %v", err)
	}
	return uriPattern{src: src, re: r}, nil
}

// match returns the first pattern covering n, or "".
func (ps *patterns) match(n name) string {
	switch n.kind {
	case kindDNS:
		for _, p := range ps.dns {
			if p.suffix && under(n.text, p.name) || !p.suffix && p.name == n.text {
				return p.src
			}
		}
	case kindIP:
		for _, p := range ps.ips {
			if p.prefix.Contains(n.addr) {
				return p.src
			}
		}
	case kindURI:
		for _, p := range ps.uris {
			if p.re == nil && p.exact == n.text || p.re != nil && p.re.MatchString(n.text) {
				return p.src
			}
		}
	case kindEmail:
		for _, p := range ps.emails {
			if p.domain == n.domain && (p.local == "" || p.local == n.local) {
				return p.src
			}
		}
	}
	return ""
}

// matchesDNS reports whether a deny pattern matches the DNS name as a plain
// string, which tells a wildcard refused for itself from one refused for a
// name it covers.
func (ps *patterns) matchesDNS(dns string) bool {
	return ps.match(name{kind: kindDNS, text: dns}) != ""
}

// refuses returns the first deny pattern that refuses n, or "". For a
// requested wildcard *.R that is any pattern naming a host *.R would cover:
// a certificate for *.payments.example is usable as admin.payments.example,
// so a deny of admin.payments.example must refuse it. Deeper names
// (a.b.payments.example) count too, matching the one-or-more-labels
// reading of allow patterns and the clients that match wildcards loosely.
func (ps *patterns) refuses(n name) string {
	if d := ps.match(n); d != "" {
		return d
	}
	if n.kind != kindDNS || !isWildcard(n.text) {
		return ""
	}
	r := n.text[2:]
	for _, p := range ps.dns {
		if !p.suffix && under(p.name, r) {
			return p.src
		}
		// Two wildcard subtrees overlap when one base is within the other;
		// the case of r under p.name was already caught by match.
		if p.suffix && (p.name == r || under(p.name, r)) {
			return p.src
		}
	}
	return ""
}
