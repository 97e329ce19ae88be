package revocation

import (
	"sort"
	"strings"

	"github.com/certgate/certgate/internal/apierror"
)

// RFC 5280 CRLReason codes (section 5.3.1). 7 is unused; certificateHold (6)
// and removeFromCRL (8) are not offered: certgate revocations are permanent.
const (
	ReasonUnspecified          = 0
	ReasonKeyCompromise        = 1
	ReasonCACompromise         = 2
	ReasonAffiliationChanged   = 3
	ReasonSuperseded           = 4
	ReasonCessationOfOperation = 5
	ReasonCertificateHold      = 6
	ReasonPrivilegeWithdrawn   = 9
	ReasonAACompromise         = 10
)

// Reasons maps the API's reason names to RFC 5280 codes.
var Reasons = map[string]int{
	"unspecified":            ReasonUnspecified,
	"key_compromise":         ReasonKeyCompromise,
	"ca_compromise":          ReasonCACompromise,
	"affiliation_changed":    ReasonAffiliationChanged,
	"superseded":             ReasonSuperseded,
	"cessation_of_operation": ReasonCessationOfOperation,
	"privilege_withdrawn":    ReasonPrivilegeWithdrawn,
	"aa_compromise":          ReasonAACompromise,
}

// ReasonNames lists the accepted names, sorted, for error messages and help.
func ReasonNames() []string {
	out := make([]string, 0, len(Reasons))
	for n := range Reasons {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// ParseReason turns an API reason into its name and code. Empty means
// unspecified; case and surrounding space are ignored.
func ParseReason(s string) (string, int, error) {
	name := strings.ToLower(strings.TrimSpace(s))
	if name == "" {
		return "unspecified", ReasonUnspecified, nil
	}
	if code, ok := Reasons[name]; ok {
		return name, code, nil
	}
	if name == "certificate_hold" || name == "remove_from_crl" {
		return "", 0, apierror.Field("reason", "%s is not supported: certgate revocations are permanent (a hold could be lifted, which short-lived certificates never need); use one of %s",
			name, strings.Join(ReasonNames(), ", "))
	}
	return "", 0, apierror.Field("reason", "unknown reason %q; use one of %s", s, strings.Join(ReasonNames(), ", "))
}

// ReasonCode maps a stored reason name to its code; anything unknown is
// unspecified, so a row written by another version still yields a valid CRL.
func ReasonCode(name string) int {
	if code, ok := Reasons[strings.ToLower(name)]; ok {
		return code
	}
	return ReasonUnspecified
}
