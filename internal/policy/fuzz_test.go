package policy

import (
	"strings"
	"testing"
)

// FuzzAllowsName checks that no name panics the matcher, and that a name
// spelled exactly like a pattern is allowed by that pattern and refused once
// the same pattern is also denied: if that failed, patterns and names would
// be normalised differently and an operator could not predict the policy.
func FuzzAllowsName(f *testing.F) {
	for _, s := range append(append([]string{}, payments.Allow...), payments.Deny...) {
		f.Add(s, s)
	}
	for _, s := range []string{
		"a.payments.svc.cluster.local", "*.payments.svc.cluster.local", "payments.svc.cluster.local.",
		"::ffff:10.20.1.1", "10.20.99.255", "fe80::1%eth0", "spiffe://cluster.local/ns/payments/%2e%2e/x",
		"SPIFFE://CLUSTER.LOCAL/ns/payments/sa/%61dmin", "https://*.hooks.example.com/payments/*?q#f",
		"dev@Payments.Example.com", "a@b@c", "@", "://", "*", "", "a..b", "xn--bcher-kva.example",
	} {
		f.Add(s, s)
		f.Add("*.example.com", s)
	}
	fixed := mustCompile(f, payments)
	f.Fuzz(func(t *testing.T, pattern, name string) {
		ok, why := fixed.AllowsName(name)
		if why == "" {
			t.Errorf("AllowsName(%q) gave no reason", name)
		}
		for _, d := range payments.Deny {
			if name == d && ok {
				t.Errorf("AllowsName(%q) allowed a name equal to a deny pattern", name)
			}
		}

		allow, err := Compile(Config{Allow: []string{pattern}})
		if err != nil {
			return
		}
		if strings.Contains(pattern, "/") && !strings.Contains(pattern, "://") {
			return // a CIDR is not a name
		}
		if ok, why := allow.AllowsName(pattern); !ok {
			t.Errorf("pattern %q does not allow itself: %s", pattern, why)
		}
		both := mustCompile(t, Config{Allow: []string{pattern}, Deny: []string{pattern}})
		if ok, _ := both.AllowsName(pattern); ok {
			t.Errorf("pattern %q allowed although denied", pattern)
		}
		if ok, _ := allow.AllowsName(name); ok && name != pattern {
			// Whatever else the pattern allows must survive a round trip
			// through the denier built from the same pattern.
			if ok, _ := both.AllowsName(name); ok {
				t.Errorf("%q allowed by %q and not refused by the same deny", name, pattern)
			}
		}
	})
}
