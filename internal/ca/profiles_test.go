package ca

import (
	"crypto/x509"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestDefaultProfilesMatchContract pins the profile table of DESIGN.md.
func TestDefaultProfilesMatchContract(t *testing.T) {
	ps := DefaultProfiles(0)
	if err := ps.Validate(); err != nil {
		t.Fatalf("DefaultProfiles(0).Validate() = %v", err)
	}
	if err := DefaultProfiles(30 * Day).Validate(); err != nil {
		t.Fatalf("DefaultProfiles(30d).Validate() = %v", err)
	}
	want := []struct {
		name     string
		ku       x509.KeyUsage
		eku      []x509.ExtKeyUsage
		ca       string
		max      time.Duration
		wildcard bool
		isCA     bool
	}{
		{ProfileClient, x509.KeyUsageDigitalSignature | x509.KeyUsageKeyAgreement, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, ClientCA, 7 * Day, false, false},
		{ProfileServer, x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, ServerCA, 7 * Day, true, false},
		{ProfileMachine, x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth}, IstioCA, 7 * Day, true, false},
		{ProfileIstioIntermediate, x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature, nil, Root, 365 * Day, false, true},
	}
	if got := ps.Names(); len(got) != len(want) {
		t.Fatalf("profiles %v, want exactly the four of the contract", got)
	}
	for _, w := range want {
		p := ps.Lookup(w.name)
		if p == nil {
			t.Fatalf("no profile %q", w.name)
		}
		if p.Name != w.name || p.KeyUsage != w.ku || !slices.Equal(p.ExtKeyUsage, w.eku) || p.CA != w.ca ||
			p.MaxValidity != w.max || p.DefaultValidity != w.max || p.AllowWildcard != w.wildcard || p.IsCA != w.isCA {
			t.Errorf("profile %s = %+v, want %+v", w.name, *p, w)
		}
		if p.IsCA && p.MaxPathLen != 0 {
			t.Errorf("profile %s: pathlen %d, want 0", w.name, p.MaxPathLen)
		}
	}
	if got, want := ps.LeafProfiles(), []string{"client", "machine", "server"}; !slices.Equal(got, want) {
		t.Errorf("LeafProfiles() = %v, want %v", got, want)
	}
	if ps.Lookup("nope") != nil {
		t.Error("Lookup of an unknown profile is not nil")
	}
	if got := DefaultProfiles(90 * Day)[ProfileIstioIntermediate]; got.MaxValidity != 90*Day || got.DefaultValidity != 90*Day {
		t.Errorf("istio validity from config not applied: %s/%s", got.MaxValidity, got.DefaultValidity)
	}
	// DefaultProfiles returns fresh values: changing one set leaves the next alone.
	ps[ProfileClient].KeyUsage |= x509.KeyUsageCertSign
	if DefaultProfiles(0)[ProfileClient].KeyUsage&x509.KeyUsageCertSign != 0 {
		t.Error("DefaultProfiles shares state between calls")
	}
}

// TestProfileValidateRefusesBrokenProfiles breaks one rule at a time.
func TestProfileValidateRefusesBrokenProfiles(t *testing.T) {
	leaf := func(mut func(p *Profile)) Profiles {
		ps := DefaultProfiles(0)
		mut(ps[ProfileServer])
		return ps
	}
	istio := func(mut func(p *Profile)) Profiles {
		ps := DefaultProfiles(0)
		mut(ps[ProfileIstioIntermediate])
		return ps
	}
	cases := []struct {
		name string
		ps   Profiles
		want string // part of the error
	}{
		{"no name", leaf(func(p *Profile) { p.Name = "" }), ""},
		{"key differs from name", leaf(func(p *Profile) { p.Name = "server2" }), "server2"},
		{"unknown issuing CA", leaf(func(p *Profile) { p.CA = "other-ca" }), "other-ca"},
		{"no issuing CA", leaf(func(p *Profile) { p.CA = "" }), "server"},
		{"no key usage", leaf(func(p *Profile) { p.KeyUsage = 0 }), "key usage"},
		{"zero max validity", leaf(func(p *Profile) { p.MaxValidity = 0 }), "server"},
		{"negative max validity", leaf(func(p *Profile) { p.MaxValidity = -Day }), "server"},
		{"zero default validity", leaf(func(p *Profile) { p.DefaultValidity = 0 }), "default validity"},
		{"default above max", leaf(func(p *Profile) { p.DefaultValidity = 3 * Day; p.MaxValidity = 2 * Day }), "default validity"},
		{"leaf longer than 7 days", leaf(func(p *Profile) { p.MaxValidity = 8 * Day; p.DefaultValidity = 8 * Day }), "exceeds"},
		{"leaf 7 days and a second", leaf(func(p *Profile) { p.MaxValidity = 7*Day + time.Second }), ""},
		{"leaf signs certificates", leaf(func(p *Profile) { p.KeyUsage |= x509.KeyUsageCertSign }), "sign"},
		{"leaf signs CRLs", leaf(func(p *Profile) { p.KeyUsage |= x509.KeyUsageCRLSign }), "sign"},
		{"leaf without EKU", leaf(func(p *Profile) { p.ExtKeyUsage = nil }), "EKU"},
		{"leaf with anyExtendedKeyUsage", leaf(func(p *Profile) { p.ExtKeyUsage = append(p.ExtKeyUsage, x509.ExtKeyUsageAny) }), "EKU"},
		{"leaf with codeSigning", leaf(func(p *Profile) { p.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning} }), "EKU"},
		{"leaf issued by the root", leaf(func(p *Profile) { p.CA = Root }), "root"},
		{"CA profile without keyCertSign", istio(func(p *Profile) { p.KeyUsage = x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature }), "keyCertSign"},
		{"CA profile with an EKU", istio(func(p *Profile) { p.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth} }), "EKU"},
		{"CA profile under an intermediate", istio(func(p *Profile) { p.CA = IstioCA }), "root"},
		{"CA profile without path length limit", istio(func(p *Profile) { p.MaxPathLen = -1 }), "path"},
		{"nil profile", func() Profiles { ps := DefaultProfiles(0); ps["extra"] = nil; return ps }(), "extra"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var err error
			func() {
				defer func() {
					if r := recover(); r != nil {
						t.Fatalf("Validate panicked: %v", r)
					}
				}()
				err = c.ps.Validate()
			}()
			if err == nil {
				t.Fatal("Validate accepted a broken profile")
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q does not mention %q", err, c.want)
			}
		})
	}
}
