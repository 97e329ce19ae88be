// Package policy decides what one principal may do: which operations, which
// certificate profiles, which names and how long a certificate may live.
//
// It has no I/O and no clock so that every rule can be pinned down by table
// tests here, and the HTTP and issuance layers only ask it yes/no questions.
//
// Semantics (the README repeats them for operators):
//
//   - Nothing is allowed by default. A principal with no allow patterns can
//     issue nothing; deny beats allow; the common name and every SAN must be
//     allowed, and the first one refused is reported.
//   - Operations: issue, read, revoke, admin. admin implies every operation.
//   - Profiles: the request's profile must be listed. An empty list means no
//     profile for a non-admin and every profile for an admin; an admin that
//     lists profiles is held to that list.
//   - Admin does not widen names: an admin's names come from its allow and
//     deny patterns like anyone else's. Only AllowAll (the bootstrap admin)
//     allows every name.
//   - Patterns are classified like names: "scheme://…" is a URI, an IP or a
//     CIDR is an address, "…@…" is an e-mail address, anything else is a DNS
//     name. A pattern only ever matches names of its own kind.
//   - DNS: exact names (case-insensitive, trailing dot ignored) or "*.suffix",
//     which covers one or more labels under suffix, including the literal
//     wildcard name "*.suffix", but not suffix itself. A requested wildcard
//     name is refused when any deny pattern names something the wildcard
//     would cover.
//   - IP: a single address or a CIDR, v4 or v6; IPv4-mapped IPv6 addresses
//     are treated as the IPv4 address they carry, on both sides.
//   - URI: exact, or with "*" standing for one or more characters other
//     than "/", "?" and "#"; a trailing "/*" stands for a whole subtree. A
//     "*" in the host must be a whole left-most DNS label ("*.example.com").
//     Scheme and host are compared case-insensitively, the rest exactly after
//     percent-encoding normalisation; requested URIs with "." or ".." path
//     segments are refused.
//   - E-mail: an exact address or "*@domain" (any local part at exactly that
//     domain). The domain is case-insensitive, the local part is not.
//   - A common name must be a DNS name, IP, URI or e-mail address, checked
//     like a SAN.
//   - max_validity caps the requested validity (equal is allowed); 0 leaves
//     only the profile's own cap.
package policy

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"time"

	"github.com/certgate/certgate/internal/apierror"
)

// Operations a principal can be granted.
const (
	OpIssue  = "issue"
	OpRead   = "read"
	OpRevoke = "revoke"
	OpAdmin  = "admin"
)

// Detail fields of a refusal. They name the part of the issue request at
// fault so that clients can point at it.
const (
	FieldOperation  = "operation"
	FieldProfile    = "profile"
	FieldCommonName = "common_name"
	FieldSANs       = "sans"
	FieldValidity   = "validity"
)

// Config is one principal's policy as written in the auth.principals section
// of the configuration file.
type Config struct {
	Operations  []string      `yaml:"operations"`
	Profiles    []string      `yaml:"profiles"`
	Allow       []string      `yaml:"allow"`
	Deny        []string      `yaml:"deny"`
	MaxValidity time.Duration `yaml:"max_validity"` // 0 = no principal cap (the profile's cap still applies)
}

// ConfigError names the configuration entry Compile refused, so that the
// operator can find it in a long principals list.
type ConfigError struct {
	Key    string // "operations", "profiles", "allow", "deny" or "max_validity"
	Index  int    // position in the list; -1 for scalar keys
	Value  string
	Reason string
}

func (e *ConfigError) Error() string {
	if e.Index < 0 {
		return fmt.Sprintf("policy: %s %q: %s", e.Key, e.Value, e.Reason)
	}
	return fmt.Sprintf("policy: %s[%d] %q: %s", e.Key, e.Index, e.Value, e.Reason)
}

// Policy is a compiled Config. It is never modified after Compile, so one
// value may be shared by any number of goroutines. A nil *Policy allows
// nothing, so a principal whose policy was lost fails closed.
type Policy struct {
	allowAll    bool
	admin       bool
	ops         map[string]bool
	profiles    map[string]bool
	allProfiles bool
	allow, deny patterns
	maxValidity time.Duration
}

var knownOps = []string{OpIssue, OpRead, OpRevoke, OpAdmin}

// Compile checks c and builds its Policy. Every bad entry is reported (as a
// *ConfigError, joined), because fixing a config one error per restart is
// slow.
func Compile(c Config) (*Policy, error) {
	var errs []error
	p := &Policy{
		ops:         map[string]bool{},
		profiles:    map[string]bool{},
		maxValidity: c.MaxValidity,
	}
	for i, op := range c.Operations {
		if !slices.Contains(knownOps, op) {
			errs = append(errs, &ConfigError{Key: "operations", Index: i, Value: op,
				Reason: fmt.Sprintf("unknown operation (known: %v)", knownOps)})
			continue
		}
		p.ops[op] = true
	}
	p.admin = p.ops[OpAdmin]
	for i, prof := range c.Profiles {
		if prof == "" {
			errs = append(errs, &ConfigError{Key: "profiles", Index: i, Value: prof, Reason: "empty profile name"})
			continue
		}
		p.profiles[prof] = true
	}
	p.allProfiles = p.admin && len(c.Profiles) == 0
	if c.MaxValidity < 0 {
		errs = append(errs, &ConfigError{Key: "max_validity", Index: -1, Value: c.MaxValidity.String(),
			Reason: "must not be negative (0 means no principal cap)"})
	}
	errs = append(errs, p.allow.compile("allow", c.Allow)...)
	errs = append(errs, p.deny.compile("deny", c.Deny)...)
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return p, nil
}

// AllowAll is the bootstrap admin's policy: every operation, every profile,
// every name, no principal validity cap. Name syntax is left to validation.
func AllowAll() *Policy {
	return &Policy{allowAll: true, admin: true, allProfiles: true}
}

// Can reports whether op is granted. Unknown operations are never granted,
// not even to an admin, so a typo in a caller fails closed.
func (p *Policy) Can(op string) bool {
	if p == nil || !slices.Contains(knownOps, op) {
		return false
	}
	return p.allowAll || p.admin || p.ops[op]
}

// IsAdmin reports whether the principal holds admin, which also lets it read
// and revoke certificates other principals requested.
func (p *Policy) IsAdmin() bool { return p != nil && (p.allowAll || p.admin) }

// Require is Can as the 403 the HTTP layer returns.
func (p *Policy) Require(op string) error {
	if p.Can(op) {
		return nil
	}
	return apierror.Forbidden("operation %q is not granted to this principal", op).
		WithDetail(FieldOperation, fmt.Sprintf("operation %q is not granted", op))
}

// AllowsProfile reports whether the principal may issue with the profile.
func (p *Policy) AllowsProfile(profile string) bool {
	if p == nil {
		return false
	}
	return p.allowAll || p.allProfiles || p.profiles[profile]
}

// MaxValidity is the principal's validity cap, 0 for none. The issuance
// service needs it to clamp a profile's default validity before asking
// CheckIssue, so that a request without an explicit validity is not refused.
func (p *Policy) MaxValidity() time.Duration {
	if p == nil {
		return 0
	}
	return p.maxValidity
}

// Request is what an issuance asks for, already normalised (lower-case DNS,
// no trailing dot). Validity is the effective span the certificate will have,
// after the profile default was applied: CheckIssue cannot know the default.
type Request struct {
	Profile    string
	CommonName string
	DNS        []string
	IPs        []net.IP
	URIs       []*url.URL
	Emails     []string
	Validity   time.Duration
}

// CheckIssue returns nil when the principal may issue r, or a 403
// *apierror.Error naming the first refused field or name. The order is
// operation, profile, common name, SANs (DNS, IP, URI, e-mail, each in
// request order), validity.
//
// A request that names nothing passes the name checks: whether such a
// certificate is valid at all is a 400 for validation to decide, not a 403.
func (p *Policy) CheckIssue(r Request) error {
	if !p.Can(OpIssue) {
		return p.Require(OpIssue)
	}
	if !p.AllowsProfile(r.Profile) {
		return apierror.Forbidden("profile %q is not allowed for this principal", r.Profile).
			WithDetail(FieldProfile, fmt.Sprintf("profile %q is not in the principal's profiles", r.Profile))
	}
	if p.allowAll {
		return nil
	}
	if r.CommonName != "" {
		n, err := parseName(r.CommonName)
		if err == nil {
			err = p.check(n)
		}
		if err != nil {
			return refuseName(FieldCommonName, "common name", r.CommonName, err)
		}
	}
	for _, s := range r.DNS {
		n, err := parseDNS(s)
		if err == nil {
			err = p.check(n)
		}
		if err != nil {
			return refuseName(FieldSANs, "DNS name", s, err)
		}
	}
	for _, ip := range r.IPs {
		n, err := parseIP(ip)
		if err == nil {
			err = p.check(n)
		}
		if err != nil {
			return refuseName(FieldSANs, "IP address", ip.String(), err)
		}
	}
	for _, u := range r.URIs {
		n, err := parseURL(u)
		if err == nil {
			err = p.check(n)
		}
		if err != nil {
			shown := "<nil>"
			if u != nil {
				shown = u.String()
			}
			return refuseName(FieldSANs, "URI", shown, err)
		}
	}
	for _, s := range r.Emails {
		n, err := parseEmail(s)
		if err == nil {
			err = p.check(n)
		}
		if err != nil {
			return refuseName(FieldSANs, "e-mail address", s, err)
		}
	}
	if p.maxValidity > 0 && r.Validity > p.maxValidity {
		return apierror.Forbidden("validity %s exceeds this principal's maximum of %s", r.Validity, p.maxValidity).
			WithDetail(FieldValidity, fmt.Sprintf("%s is over the maximum of %s", r.Validity, p.maxValidity))
	}
	return nil
}

func refuseName(field, kind, shown string, why error) error {
	return apierror.Forbidden("%s %q is not allowed for this principal: %v", kind, shown, why).
		WithDetail(field, fmt.Sprintf("%q: %v", shown, why))
}

// AllowsName checks one name of any kind, classified as a request's common
// name is: an IP literal, a URI ("://"), an e-mail address ("@"), else a DNS
// name. why explains the answer in words fit for an error message.
func (p *Policy) AllowsName(name string) (ok bool, why string) {
	if p == nil {
		return false, "no policy"
	}
	if p.allowAll {
		return true, "the allow-all policy allows every name"
	}
	n, err := parseName(name)
	if err != nil {
		return false, err.Error()
	}
	if err := p.check(n); err != nil {
		return false, err.Error()
	}
	return true, fmt.Sprintf("allowed by %q", p.allow.match(n))
}

// check applies deny before allow so that the reason given for a name that
// both cover is the deny: that is the one the operator has to change.
func (p *Policy) check(n name) error {
	if d := p.deny.refuses(n); d != "" {
		if n.kind == kindDNS && isWildcard(n.text) && !p.deny.matchesDNS(n.text) {
			return fmt.Errorf("refused by deny pattern %q, which names a host the wildcard would cover", d)
		}
		return fmt.Errorf("refused by deny pattern %q", d)
	}
	if p.allow.match(n) == "" {
		return errors.New("no allow pattern covers it")
	}
	return nil
}
