package ca

import (
	"crypto/x509"
	"fmt"
	"sort"
	"time"
)

// Profile names.
const (
	ProfileClient            = "client"
	ProfileServer            = "server"
	ProfileMachine           = "machine"
	ProfileIstioIntermediate = "istio-intermediate"
)

// Day is 24 hours; certificate spans are counted in exact durations.
const Day = 24 * time.Hour

// MaxLeafValidity is the longest span NotBefore → NotAfter of any end-entity
// certificate, backdating included.
const MaxLeafValidity = 7 * Day

// Backdate is how far NotBefore is set before the issuance time to absorb
// clock skew between certgate and relying parties. It counts against the
// validity span, so a 7-day certificate is valid 7 days in total.
const Backdate = time.Minute

// Profile is one certificate shape. The issued certificate carries exactly
// KeyUsage and ExtKeyUsage, whatever the CSR asks for.
type Profile struct {
	Name            string
	KeyUsage        x509.KeyUsage
	ExtKeyUsage     []x509.ExtKeyUsage
	CA              string // issuing CA role
	MaxValidity     time.Duration
	DefaultValidity time.Duration
	AllowWildcard   bool
	IsCA            bool
	MaxPathLen      int // only for IsCA; 0 means pathlen:0
}

// Profiles is the set of profiles in force.
type Profiles map[string]*Profile

// DefaultProfiles returns the profiles of the design contract. The Istio
// intermediate's default validity comes from config (istioValidity).
func DefaultProfiles(istioValidity time.Duration) Profiles {
	if istioValidity <= 0 {
		istioValidity = 365 * Day
	}
	return Profiles{
		ProfileClient: {
			Name:            ProfileClient,
			KeyUsage:        x509.KeyUsageDigitalSignature | x509.KeyUsageKeyAgreement,
			ExtKeyUsage:     []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
			CA:              ClientCA,
			MaxValidity:     MaxLeafValidity,
			DefaultValidity: MaxLeafValidity,
		},
		ProfileServer: {
			Name:            ProfileServer,
			KeyUsage:        x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
			ExtKeyUsage:     []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
			CA:              ServerCA,
			MaxValidity:     MaxLeafValidity,
			DefaultValidity: MaxLeafValidity,
			AllowWildcard:   true,
		},
		ProfileMachine: {
			Name:            ProfileMachine,
			KeyUsage:        x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
			ExtKeyUsage:     []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth},
			CA:              IstioCA,
			MaxValidity:     MaxLeafValidity,
			DefaultValidity: MaxLeafValidity,
			AllowWildcard:   true,
		},
		ProfileIstioIntermediate: {
			Name:            ProfileIstioIntermediate,
			KeyUsage:        x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
			CA:              Root,
			MaxValidity:     istioValidity,
			DefaultValidity: istioValidity,
			IsCA:            true,
			MaxPathLen:      0,
		},
	}
}

// Validate checks the profile policy once, at load, so a bad profile stops
// the service at start instead of producing a bad certificate later.
func (p *Profile) Validate() error {
	switch {
	case p.Name == "":
		return fmt.Errorf("profile without a name")
	case !KnownCA(p.CA):
		return fmt.Errorf("profile %s: unknown issuing CA %q", p.Name, p.CA)
	case p.KeyUsage == 0:
		return fmt.Errorf("profile %s: no key usage", p.Name)
	case p.MaxValidity <= 0:
		return fmt.Errorf("profile %s: max validity must be positive", p.Name)
	case p.DefaultValidity <= 0 || p.DefaultValidity > p.MaxValidity:
		return fmt.Errorf("profile %s: default validity %s outside (0, %s]", p.Name, p.DefaultValidity, p.MaxValidity)
	}
	if p.IsCA {
		if p.KeyUsage&x509.KeyUsageCertSign == 0 {
			return fmt.Errorf("profile %s: a CA profile needs keyCertSign", p.Name)
		}
		if len(p.ExtKeyUsage) != 0 {
			return fmt.Errorf("profile %s: a CA profile carries no EKU", p.Name)
		}
		// The local and PCA intermediates are pathlen:0; only the root can
		// issue a CA certificate that verifies.
		if p.CA != Root {
			return fmt.Errorf("profile %s: CA certificates are issued by the root, not %s", p.Name, p.CA)
		}
		if p.MaxPathLen < 0 {
			return fmt.Errorf("profile %s: a CA profile needs a path length limit (0 or more)", p.Name)
		}
		return nil
	}
	if p.MaxValidity > MaxLeafValidity {
		return fmt.Errorf("profile %s: end-entity validity %s exceeds %s", p.Name, p.MaxValidity, MaxLeafValidity)
	}
	if p.KeyUsage&(x509.KeyUsageCertSign|x509.KeyUsageCRLSign) != 0 {
		return fmt.Errorf("profile %s: an end-entity profile must not sign certificates or CRLs", p.Name)
	}
	if len(p.ExtKeyUsage) == 0 {
		return fmt.Errorf("profile %s: an end-entity profile needs an EKU", p.Name)
	}
	for _, e := range p.ExtKeyUsage {
		if e != x509.ExtKeyUsageClientAuth && e != x509.ExtKeyUsageServerAuth {
			return fmt.Errorf("profile %s: EKU %v is not allowed; an end-entity profile has clientAuth and/or serverAuth only", p.Name, ExtKeyUsageNames([]x509.ExtKeyUsage{e}))
		}
	}
	if p.CA == Root {
		return fmt.Errorf("profile %s: end-entity certificates are not issued by the root", p.Name)
	}
	return nil
}

// Validate checks every profile.
func (ps Profiles) Validate() error {
	for _, name := range ps.Names() {
		p := ps[name]
		if p == nil {
			return fmt.Errorf("profile %q is nil", name)
		}
		if p.Name != name {
			return fmt.Errorf("profile key %q names profile %q", name, p.Name)
		}
		if err := p.Validate(); err != nil {
			return err
		}
	}
	return nil
}

// Lookup returns the named profile or nil.
func (ps Profiles) Lookup(name string) *Profile { return ps[name] }

// Names lists the profiles, sorted.
func (ps Profiles) Names() []string {
	out := make([]string, 0, len(ps))
	for n := range ps {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// LeafProfiles are the profiles POST /v1/certificates accepts.
func (ps Profiles) LeafProfiles() []string {
	var out []string
	for _, n := range ps.Names() {
		if !ps[n].IsCA {
			out = append(out, n)
		}
	}
	return out
}

// ExtKeyUsageNames renders EKUs for humans and tests.
func ExtKeyUsageNames(ekus []x509.ExtKeyUsage) []string {
	var out []string
	for _, e := range ekus {
		switch e {
		case x509.ExtKeyUsageClientAuth:
			out = append(out, "clientAuth")
		case x509.ExtKeyUsageServerAuth:
			out = append(out, "serverAuth")
		default:
			out = append(out, fmt.Sprintf("eku(%d)", e))
		}
	}
	return out
}
