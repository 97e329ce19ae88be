package validation

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/certgate/certgate/internal/apierror"
)

// MinSpan is the shortest validity we issue: below it, ordinary clock skew
// between relying parties makes the certificate expire before it is used.
const MinSpan = 5 * time.Minute

const day = 24 * time.Hour

// Span computes the requested validity span (NotBefore to NotAfter). The
// client gives at most one of validityDays (1 to max in whole days) and ttl (a
// Go duration such as "24h" or "90m", or "<n>d" for whole days). Without
// either the span is def, capped at max. A request above max is refused, not
// clipped: the client asked for something it will not get, and silently
// issuing less would surprise its renewal logic.
func Span(validityDays *int, ttl string, def, max time.Duration) (time.Duration, error) {
	if max < MinSpan {
		return 0, apierror.Internal(fmt.Errorf("validation: profile maximum validity %s is below the minimum %s", max, MinSpan))
	}
	if def <= 0 || def > max {
		def = max
	}
	switch {
	case validityDays != nil && ttl != "":
		return 0, apierror.Validation("give validity_days or ttl, not both",
			apierror.Detail{Field: "validity_days", Reason: "cannot be combined with ttl"},
			apierror.Detail{Field: "ttl", Reason: "cannot be combined with validity_days"})
	case validityDays != nil:
		maxDays := int64(max / day)
		if maxDays == 0 {
			return 0, apierror.Field("validity_days", "this profile allows at most %s, less than a day; use ttl instead", fmtSpan(max))
		}
		if v := int64(*validityDays); v < 1 || v > maxDays {
			return 0, apierror.Field("validity_days", "is %d; it must be between 1 and %d", v, maxDays)
		}
		return time.Duration(*validityDays) * day, nil
	case ttl != "":
		d, err := parseTTL(ttl)
		if err != nil {
			return 0, err
		}
		switch {
		case d < MinSpan:
			return 0, apierror.Field("ttl", "is %s; it must be at least %s", show(ttl), fmtSpan(MinSpan))
		case d > max:
			return 0, apierror.Field("ttl", "is %s; this profile allows at most %s", show(ttl), fmtSpan(max))
		}
		return d, nil
	default:
		return def, nil
	}
}

// parseTTL accepts Go durations plus whole days, the unit people actually
// think of certificate lifetimes in and which time.ParseDuration lacks.
func parseTTL(s string) (time.Duration, error) {
	if n, ok := strings.CutSuffix(s, "d"); ok && n != "" && strings.Trim(n, "0123456789") == "" {
		v, err := strconv.ParseInt(n, 10, 64)
		if err != nil || v > int64(1<<63-1)/int64(day) {
			// Far beyond any maximum; report it as too long, not malformed.
			return time.Duration(1<<63 - 1), nil
		}
		return time.Duration(v) * day, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, apierror.Field("ttl", "is %s, which is not a duration; use e.g. \"24h\", \"90m\" or \"7d\"", show(s))
	}
	return d, nil
}

// fmtSpan renders a span for people: whole days as days, the rest as Go
// durations, which is also the syntax ttl accepts.
func fmtSpan(d time.Duration) string {
	switch {
	case d == day:
		return "1 day"
	case d > 0 && d%day == 0:
		return fmt.Sprintf("%d days", d/day)
	}
	return d.String()
}
