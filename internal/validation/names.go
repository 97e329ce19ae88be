package validation

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"

	"golang.org/x/net/idna"

	"github.com/certgate/certgate/internal/apierror"
)

const (
	// MaxSANs bounds the names of one certificate, counted after
	// deduplication and with the common name included.
	MaxSANs = 100

	// MaxCommonNameLen is ub-common-name from RFC 5280: a longer CN cannot be
	// encoded in a conforming certificate.
	MaxCommonNameLen = 64

	// MaxURILen is the SPIFFE limit on an ID, applied to every URI SAN: no
	// legitimate identity needs more, and it bounds certificate size.
	MaxURILen = 2048

	maxDNSLen   = 253 // RFC 1035, presentation form without the trailing dot
	maxLabelLen = 63
	maxLocalLen = 64  // RFC 5321 local part
	maxEmailLen = 254 // RFC 5321 path limit less the angle brackets
)

// Names is a normalised, deduplicated set of certificate names. CommonName,
// when set, is also one of the SANs.
type Names struct {
	CommonName string
	DNS        []string
	IPs        []net.IP
	URIs       []*url.URL
	Emails     []string
}

// Strings renders every SAN as the API stores and returns it: DNS names, then
// IP addresses, then URIs, then e-mail addresses. Each string classifies back
// to its own type, so ParseNames(n.CommonName, n.Strings(), …) rebuilds n.
func (n *Names) Strings() []string {
	if n == nil {
		return nil
	}
	out := make([]string, 0, n.Count())
	out = append(out, n.DNS...)
	for _, ip := range n.IPs {
		out = append(out, ip.String())
	}
	for _, u := range n.URIs {
		out = append(out, u.String())
	}
	return append(out, n.Emails...)
}

// Count is the number of SANs.
func (n *Names) Count() int {
	if n == nil {
		return 0
	}
	return len(n.DNS) + len(n.IPs) + len(n.URIs) + len(n.Emails)
}

type kind int

const (
	kindDNS kind = iota
	kindIP
	kindURI
	kindEmail
)

func (k kind) String() string {
	switch k {
	case kindIP:
		return "IP address"
	case kindURI:
		return "URI"
	case kindEmail:
		return "e-mail address"
	default:
		return "DNS name"
	}
}

// name is one normalised SAN; text is its rendered form and its identity for
// deduplication (the four renderings cannot collide, see classify).
type name struct {
	kind kind
	text string
	ip   net.IP
	uri  *url.URL
}

// classify applies the contract's precedence. The order matters: an IPv6
// literal contains ':' and a URI may contain '@', so each test must come
// before the ones that would misread it.
func classify(s string) kind {
	switch {
	case isIPLiteral(s):
		return kindIP
	case strings.Contains(s, "://"):
		return kindURI
	case strings.Contains(s, "@"):
		return kindEmail
	default:
		return kindDNS
	}
}

func isIPLiteral(s string) bool {
	_, err := netip.ParseAddr(s)
	return err == nil
}

// parseName classifies and normalises one name given as a string.
func parseName(s string, allowWildcard bool) (name, error) {
	switch classify(s) {
	case kindIP:
		a, _ := netip.ParseAddr(s)
		return ipName(a)
	case kindURI:
		u, err := normURI(s)
		if err != nil {
			return name{}, err
		}
		return name{kind: kindURI, text: u.String(), uri: u}, nil
	case kindEmail:
		e, err := normEmail(s)
		if err != nil {
			return name{}, err
		}
		return name{kind: kindEmail, text: e}, nil
	default:
		if strings.Contains(s, ":") {
			// Most likely a mistyped IPv6 address or host:port; saying
			// "':' is not allowed in DNS names" would hide that.
			return name{}, errors.New("is neither a valid IP address nor a DNS name (DNS names cannot contain ':', and ports are not part of a name)")
		}
		d, err := normDNS(s, allowWildcard, "")
		if err != nil {
			return name{}, err
		}
		return name{kind: kindDNS, text: d}, nil
	}
}

func ipName(a netip.Addr) (name, error) {
	a, err := checkIP(a)
	if err != nil {
		return name{}, err
	}
	return name{kind: kindIP, text: a.String(), ip: net.IP(a.AsSlice())}, nil
}

// checkIP normalises an address to the form a relying party compares against.
func checkIP(a netip.Addr) (netip.Addr, error) {
	if a.Zone() != "" {
		// A zone is local to one host's interfaces; it cannot be encoded in
		// a certificate and means nothing to anybody else.
		return a, errors.New("IPv6 zone identifiers (%…) are not allowed")
	}
	// Clients dialling 10.0.0.7 compare 4-byte addresses; a mapped form in
	// the certificate would not match some of them.
	a = a.Unmap()
	switch {
	case a.IsUnspecified():
		return a, errors.New("the unspecified address is not a host address")
	case a.IsMulticast():
		return a, errors.New("multicast addresses are not host addresses")
	}
	return a, nil
}

// normDNS validates and normalises a DNS name. where is empty for a SAN, or
// names the context (e-mail domain, URI host) in which wildcards never apply.
func normDNS(s string, allowWildcard bool, where string) (string, error) {
	if s == "" {
		return "", errors.New("is empty")
	}
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return "", unicodeError(s)
		}
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c < 0x20 || c == 0x7f:
			return "", errors.New("contains a control character")
		case c == ' ':
			return "", errors.New("contains a space")
		}
	}
	n := strings.ToLower(s)
	// One trailing dot is the absolute form of the same name; certificates
	// never carry it, and two dots are an empty label, refused below.
	n = strings.TrimSuffix(n, ".")
	if n == "" {
		return "", errors.New("is only a dot")
	}
	if len(n) > maxDNSLen {
		return "", fmt.Errorf("is %d characters long; a DNS name is at most %d", len(n), maxDNSLen)
	}
	labels := strings.Split(n, ".")
	wildcard, puny := false, false
	for i, l := range labels {
		if l == "" {
			return "", errors.New("has an empty label (a leading dot or two dots in a row)")
		}
		if strings.Contains(l, "*") {
			if l == "*" && i == 0 {
				wildcard = true
				continue
			}
			return "", errors.New("a wildcard '*' is only allowed as the whole left-most label, as in *.example.com")
		}
		if len(l) > maxLabelLen {
			return "", fmt.Errorf("has a label of %d characters; a label is at most %d", len(l), maxLabelLen)
		}
		for j := 0; j < len(l); j++ {
			switch c := l[j]; {
			case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '-':
			case c == '_':
				return "", errors.New("contains an underscore, which is not allowed in DNS host names")
			default:
				return "", fmt.Errorf("contains %q; DNS names allow only letters, digits, hyphens and dots", c)
			}
		}
		if l[0] == '-' || l[len(l)-1] == '-' {
			return "", fmt.Errorf("has label %q, which starts or ends with a hyphen", l)
		}
		if strings.HasPrefix(l, "xn--") {
			puny = true
		} else if len(l) >= 4 && l[2:4] == "--" {
			// RFC 5891 reserves "??--" labels for IDNA encodings; only
			// xn-- is defined, and Boulder refuses the rest too.
			return "", fmt.Errorf("has label %q with '--' in the third and fourth positions, which is reserved for IDNA (only xn-- is allowed)", l)
		}
	}
	if wildcard {
		switch {
		case where != "":
			return "", fmt.Errorf("wildcards are not allowed in %s", where)
		case !allowWildcard:
			return "", errors.New("is a wildcard, and this profile does not allow wildcards")
		case len(labels) < 3:
			return "", errors.New("a wildcard needs at least two labels after it, as in *.example.com")
		}
	}
	if last := labels[len(labels)-1]; isNumericLabel(last) {
		if allDigitsAndDots(n) {
			return "", errors.New("looks like an IPv4 address but is not a valid one")
		}
		// URL parsers (WHATWG) read a host with a numeric last label as an
		// IPv4 address, so such a name could never be reached by name.
		return "", fmt.Errorf("ends in the numeric label %q, which clients read as an IP address", last)
	}
	if puny {
		base := n
		if wildcard {
			base = strings.TrimPrefix(n, "*.")
		}
		u, err := idna.Lookup.ToUnicode(base)
		if err != nil {
			return "", fmt.Errorf("has a punycode (xn--) label that is not valid IDNA: %v", err)
		}
		// Several punycode strings can decode to the same Unicode; only the
		// canonical one is the name, the others would be spoofing vectors.
		if back, err := idna.Lookup.ToASCII(u); err != nil || back != base {
			return "", errors.New("has a punycode (xn--) label that is not in canonical form")
		}
	}
	return n, nil
}

func unicodeError(s string) error {
	if a, err := idna.Lookup.ToASCII(s); err == nil && a != "" && isASCII(a) {
		return fmt.Errorf("contains non-ASCII characters; send internationalised names in punycode, here %s", show(strings.TrimSuffix(a, ".")))
	}
	return errors.New("contains non-ASCII characters; send internationalised names in punycode (xn--…)")
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// isNumericLabel reports a label that a WHATWG URL parser takes for an IPv4
// part: decimal digits, or 0x followed by hex digits.
func isNumericLabel(l string) bool {
	if h, ok := strings.CutPrefix(l, "0x"); ok {
		for i := 0; i < len(h); i++ {
			if !isHex(h[i]) {
				return false
			}
		}
		return true
	}
	for i := 0; i < len(l); i++ {
		if l[i] < '0' || l[i] > '9' {
			return false
		}
	}
	return l != ""
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f'
}

func allDigitsAndDots(s string) bool {
	for i := 0; i < len(s); i++ {
		if (s[i] < '0' || s[i] > '9') && s[i] != '.' {
			return false
		}
	}
	return true
}

var errNonASCII = errors.New("contains non-ASCII characters")

// printable refuses anything but visible ASCII, which is all a URI or an
// e-mail address in a certificate (IA5String, no SMTPUTF8) may hold.
func printable(s string) error {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c >= 0x80:
			return errNonASCII
		case c == ' ':
			return errors.New("contains a space")
		case c < 0x20 || c == 0x7f:
			return errors.New("contains a control character")
		}
	}
	return nil
}

// normURI validates an absolute URI and returns it normalised: scheme and
// host lower-cased, IP hosts in canonical form.
func normURI(s string) (*url.URL, error) {
	if len(s) > MaxURILen {
		return nil, fmt.Errorf("is %d bytes long; a URI is at most %d", len(s), MaxURILen)
	}
	if err := printable(s); err != nil {
		if err == errNonASCII {
			return nil, errors.New("contains non-ASCII characters; percent-encode them (and use punycode for the host)")
		}
		return nil, err
	}
	if strings.Contains(s, "#") {
		// A fragment addresses part of a resource; an identity has none,
		// and url.URL drops an empty one, which would change the name.
		return nil, errors.New("has a fragment (#…), which is not allowed")
	}
	u, err := url.Parse(s)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("is not a valid URI: %v", err)
	}
	switch {
	case u.Scheme == "":
		return nil, errors.New("has no scheme")
	case u.Opaque != "":
		return nil, errors.New("must have the form scheme://host/…")
	case u.User != nil:
		return nil, errors.New("has user information (user@host), which is not allowed")
	}
	u.Scheme = strings.ToLower(u.Scheme)
	if u.Scheme == "spiffe" {
		if err := checkSPIFFE(s, u); err != nil {
			return nil, err
		}
	} else {
		host, err := normURIHost(u.Host)
		if err != nil {
			return nil, err
		}
		u.Host = host
	}
	out := u.String()
	// The normalised form is what gets stored and later re-validated; if
	// url.URL cannot reproduce it, the name has no stable identity.
	if again, err := url.Parse(out); err != nil || again.String() != out {
		return nil, errors.New("has no canonical form (unusual escaping)")
	}
	return u, nil
}

func normURIHost(hostport string) (string, error) {
	if hostport == "" {
		return "", errors.New("has no host")
	}
	host, port := hostport, ""
	if i := strings.LastIndexByte(hostport, ':'); i >= 0 && !strings.HasSuffix(hostport, "]") {
		host, port = hostport[:i], hostport[i+1:]
		if err := checkPort(port); err != nil {
			return "", err
		}
		port = ":" + port
	}
	if inner, ok := strings.CutPrefix(host, "["); ok {
		inner, ok = strings.CutSuffix(inner, "]")
		a, err := netip.ParseAddr(inner)
		if !ok || err != nil || !a.Is6() {
			return "", errors.New("has a bracketed host that is not an IPv6 address")
		}
		if a, err = checkIP(a); err != nil {
			return "", fmt.Errorf("host: %v", err)
		}
		if a.Is4() {
			return a.String() + port, nil
		}
		return "[" + a.String() + "]" + port, nil
	}
	if a, err := netip.ParseAddr(host); err == nil {
		if a, err = checkIP(a); err != nil {
			return "", fmt.Errorf("host: %v", err)
		}
		if a.Is6() {
			return "[" + a.String() + "]" + port, nil
		}
		return a.String() + port, nil
	}
	d, err := normDNS(host, false, "URI hosts")
	if err != nil {
		return "", fmt.Errorf("host %s", err)
	}
	return d + port, nil
}

func checkPort(p string) error {
	n, err := strconv.Atoi(p)
	if err != nil || n < 1 || n > 65535 || strconv.Itoa(n) != p {
		return fmt.Errorf("has port %s; a port is a number from 1 to 65535 without leading zeros", show(p))
	}
	return nil
}

// checkSPIFFE applies the SPIFFE ID rules (spiffe/standards, SPIFFE-ID.md),
// which are stricter than RFC 3986 so that IDs compare as plain strings.
func checkSPIFFE(raw string, u *url.URL) error {
	if strings.Contains(raw, "%") {
		return errors.New("is a SPIFFE ID with percent-encoding, which SPIFFE does not allow")
	}
	td := u.Host
	switch {
	case td == "":
		return errors.New("is a SPIFFE ID without a trust domain")
	case strings.Contains(td, ":"):
		return errors.New("is a SPIFFE ID with a port, which SPIFFE does not allow")
	case len(td) > 255:
		return errors.New("is a SPIFFE ID whose trust domain is longer than 255 characters")
	case u.RawQuery != "" || u.ForceQuery:
		return errors.New("is a SPIFFE ID with a query, which SPIFFE does not allow")
	}
	for i := 0; i < len(td); i++ {
		c := td[i]
		if c >= 'A' && c <= 'Z' {
			return errors.New("is a SPIFFE ID whose trust domain is not lower case")
		}
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_') {
			return fmt.Errorf("is a SPIFFE ID whose trust domain contains %q (only a-z, 0-9, '-', '.', '_')", c)
		}
	}
	if u.Path == "" || u.Path == "/" {
		return errors.New("is a SPIFFE ID without a path; a workload ID looks like spiffe://trust.domain/ns/x/sa/y")
	}
	for _, seg := range strings.Split(strings.TrimPrefix(u.Path, "/"), "/") {
		switch seg {
		case "":
			return errors.New("is a SPIFFE ID with an empty path segment (// or a trailing /)")
		case ".", "..":
			return errors.New("is a SPIFFE ID with a '.' or '..' path segment")
		}
		for i := 0; i < len(seg); i++ {
			c := seg[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_') {
				return fmt.Errorf("is a SPIFFE ID whose path contains %q (only letters, digits, '-', '.', '_')", c)
			}
		}
	}
	return nil
}

// normEmail validates local@domain; only the domain is lower-cased, because
// the local part is case-sensitive to the receiving server (RFC 5321 §2.4).
func normEmail(s string) (string, error) {
	if strings.Count(s, "@") != 1 {
		return "", errors.New("must be exactly one local part, '@' and a domain")
	}
	local, domain, _ := strings.Cut(s, "@")
	switch {
	case local == "":
		return "", errors.New("has an empty local part (before '@')")
	case len(local) > maxLocalLen:
		return "", fmt.Errorf("has a local part of %d characters; at most %d are allowed", len(local), maxLocalLen)
	}
	if err := printable(local); err != nil {
		return "", fmt.Errorf("has a local part that %v (it must be printable ASCII without spaces)", err)
	}
	d, err := normDNS(domain, false, "e-mail addresses")
	if err != nil {
		return "", fmt.Errorf("has a domain that %v", err)
	}
	out := local + "@" + d
	if len(out) > maxEmailLen {
		return "", fmt.Errorf("is %d characters long; an e-mail address is at most %d", len(out), maxEmailLen)
	}
	return out, nil
}

// builder collects names in order, first occurrence winning.
type builder struct {
	names Names
	seen  map[string]bool
	bad   details
}

func (b *builder) add(n name) {
	if b.seen == nil {
		b.seen = make(map[string]bool)
	}
	if b.seen[n.text] {
		return
	}
	b.seen[n.text] = true
	switch n.kind {
	case kindDNS:
		b.names.DNS = append(b.names.DNS, n.text)
	case kindIP:
		b.names.IPs = append(b.names.IPs, n.ip)
	case kindURI:
		b.names.URIs = append(b.names.URIs, n.uri)
	case kindEmail:
		b.names.Emails = append(b.names.Emails, n.text)
	}
}

// commonName validates a CN. It is checked after normalisation because the
// normalised form is what the certificate will carry.
func (b *builder) commonName(cn string, allowWildcard bool, field, prefix string) {
	n, err := parseName(cn, allowWildcard)
	if err != nil {
		b.bad.add(field, prefix+show(cn)+" "+err.Error())
		return
	}
	if len(n.text) > MaxCommonNameLen {
		b.bad.add(field, fmt.Sprintf("%s%s is %d characters long; a common name is at most %d (RFC 5280 ub-common-name)", prefix, show(cn), len(n.text), MaxCommonNameLen))
		return
	}
	b.names.CommonName = n.text
	b.add(n)
}

func (b *builder) finish(field string) (*Names, error) {
	if err := b.bad.err("the names"); err != nil {
		return nil, err
	}
	switch c := b.names.Count(); {
	case c == 0:
		if field == "csr" {
			return nil, apierror.Field(field, "the CSR names nothing: it has no subject common name and no SANs")
		}
		return nil, apierror.Field(field, "no names: give a common_name or at least one SAN")
	case c > MaxSANs:
		return nil, apierror.Field(field, "%d names after removing duplicates; at most %d are allowed", c, MaxSANs)
	}
	return &b.names, nil
}

// ParseNames classifies and normalises a request's common name and SANs. A
// valid IP literal is an IP address, a string with "://" a URI, one with '@'
// an e-mail address, anything else a DNS name. SANs are deduplicated after
// normalisation (first occurrence wins) and the common name is appended when
// it is not among them. Details name "sans[i]" and "common_name".
func ParseNames(commonName string, sans []string, allowWildcard bool) (*Names, error) {
	var b builder
	for i, s := range sans {
		n, err := parseName(s, allowWildcard)
		if err != nil {
			b.bad.add(fmt.Sprintf("sans[%d]", i), show(s)+" "+err.Error())
			continue
		}
		b.add(n)
	}
	if commonName != "" {
		b.commonName(commonName, allowWildcard, "common_name", "")
	}
	return b.finish("sans")
}

// NamesFromCSR applies the same policy to the names inside a CSR: the
// subject common name, then the DNS, IP, URI and e-mail SANs. Each SAN keeps
// the type the CSR gave it, and must also read back as that type from its
// string form, which is how the API stores it. Details name "csr".
func NamesFromCSR(csr *x509.CertificateRequest, allowWildcard bool) (*Names, error) {
	if csr == nil {
		return nil, apierror.Field("csr", "no CSR")
	}
	var b builder
	fail := func(k kind, shown string, err error) {
		b.bad.add("csr", fmt.Sprintf("%s %s %s", k, shown, err))
	}
	typed := func(k kind, shown string, n name, err error) {
		if err == nil && classify(n.text) != k {
			err = fmt.Errorf("is ambiguous: its string form %s would be taken for another type (%s)", show(n.text), classify(n.text))
		}
		if err != nil {
			fail(k, shown, err)
			return
		}
		b.add(n)
	}
	for _, s := range csr.DNSNames {
		d, err := normDNS(s, allowWildcard, "")
		typed(kindDNS, show(s), name{kind: kindDNS, text: d}, err)
	}
	for _, ip := range csr.IPAddresses {
		a, ok := netip.AddrFromSlice(ip)
		if !ok {
			fail(kindIP, fmt.Sprintf("%x", []byte(ip)), errors.New("is malformed"))
			continue
		}
		n, err := ipName(a)
		typed(kindIP, show(a.String()), n, err)
	}
	for _, u := range csr.URIs {
		if u == nil {
			continue
		}
		s := u.String()
		nu, err := normURI(s)
		n := name{kind: kindURI}
		if err == nil {
			n.text, n.uri = nu.String(), nu
		}
		typed(kindURI, show(s), n, err)
	}
	for _, s := range csr.EmailAddresses {
		e, err := normEmail(s)
		typed(kindEmail, show(s), name{kind: kindEmail, text: e}, err)
	}
	if cn := csr.Subject.CommonName; cn != "" {
		b.commonName(cn, allowWildcard, "csr", "subject common name ")
	}
	return b.finish("csr")
}

// SameSet reports whether the request and the CSR name exactly the same SANs,
// in any order. The common names are not compared: the request's wins.
func SameSet(req, csr *Names) error {
	a, b := req.Strings(), csr.Strings()
	inA, inB := make(map[string]bool, len(a)), make(map[string]bool, len(b))
	for _, s := range a {
		inA[s] = true
	}
	for _, s := range b {
		inB[s] = true
	}
	var d details
	for _, s := range a {
		if !inB[s] {
			d.add("csr", fmt.Sprintf("the request names %s but the CSR does not", show(s)))
		}
	}
	for _, s := range b {
		if !inA[s] {
			d.add("csr", fmt.Sprintf("the CSR names %s but the request does not", show(s)))
		}
	}
	if d.empty() {
		return nil
	}
	return apierror.Validation("the request's names and the CSR's names differ: "+d.list[0].Reason, d.list...)
}
