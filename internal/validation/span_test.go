package validation

import (
	"net/http"
	"testing"
	"time"

	"github.com/certgate/certgate/internal/apierror"
)

func days(n int) *int { return &n }

func TestSpan(t *testing.T) {
	const (
		week  = 7 * day
		year  = 365 * day
		half  = 12 * time.Hour
		noDef = time.Duration(0)
	)
	ok := []struct {
		name     string
		days     *int
		ttl      string
		def, max time.Duration
		want     time.Duration
	}{
		{name: "neither: default", def: 3 * day, max: week, want: 3 * day},
		{name: "neither: default equal to max", def: week, max: week, want: week},
		{name: "neither: default above max is capped", def: 30 * day, max: week, want: week},
		{name: "neither: no default means max", def: noDef, max: week, want: week},
		{name: "neither: negative default means max", def: -time.Hour, max: week, want: week},
		{name: "days 1", days: days(1), def: week, max: week, want: day},
		{name: "days 7", days: days(7), def: week, max: week, want: week},
		{name: "days 365 on an intermediate", days: days(365), def: year, max: year, want: year},
		{name: "ttl hours", ttl: "24h", def: week, max: week, want: day},
		{name: "ttl minutes", ttl: "90m", def: week, max: week, want: 90 * time.Minute},
		{name: "ttl compound", ttl: "1h30m", def: week, max: week, want: 90 * time.Minute},
		{name: "ttl exactly the minimum", ttl: "5m", def: week, max: week, want: MinSpan},
		{name: "ttl minimum in seconds", ttl: "300s", def: week, max: week, want: MinSpan},
		{name: "ttl exactly max", ttl: "168h", def: week, max: week, want: week},
		{name: "ttl days", ttl: "7d", def: week, max: week, want: week},
		{name: "ttl one day", ttl: "1d", def: week, max: week, want: day},
		{name: "ttl leading zero days", ttl: "07d", def: week, max: week, want: week},
		{name: "ttl under a day on a short profile", ttl: "6h", def: half, max: half, want: 6 * time.Hour},
		{name: "ttl days on an intermediate", ttl: "365d", def: year, max: year, want: year},
	}
	for _, tt := range ok {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Span(tt.days, tt.ttl, tt.def, tt.max)
			wantOK(t, err)
			if got != tt.want {
				t.Errorf("Span = %s, want %s", got, tt.want)
			}
		})
	}

	bad := []struct {
		name     string
		days     *int
		ttl      string
		def, max time.Duration
		field    string
		reason   string
	}{
		{name: "both given", days: days(1), ttl: "24h", def: week, max: week, field: "ttl", reason: "cannot be combined"},
		{name: "both given names validity_days too", days: days(1), ttl: "24h", def: week, max: week, field: "validity_days", reason: "cannot be combined"},
		{name: "both given even if each is bad", days: days(0), ttl: "x", def: week, max: week, field: "validity_days", reason: "cannot be combined"},
		{name: "days 0", days: days(0), def: week, max: week, field: "validity_days", reason: "between 1 and 7"},
		{name: "days negative", days: days(-1), def: week, max: week, field: "validity_days", reason: "between 1 and 7"},
		{name: "days 8", days: days(8), def: week, max: week, field: "validity_days", reason: "is 8"},
		{name: "days huge", days: days(1 << 40), def: week, max: week, field: "validity_days", reason: "between 1 and 7"},
		{name: "days 366 on an intermediate", days: days(366), def: year, max: year, field: "validity_days", reason: "between 1 and 365"},
		{name: "days on a sub-day profile", days: days(1), def: half, max: half, field: "validity_days", reason: "use ttl"},
		{name: "ttl over max", ttl: "169h", def: week, max: week, field: "ttl", reason: "at most 7 days"},
		{name: "ttl days over max", ttl: "8d", def: week, max: week, field: "ttl", reason: "at most 7 days"},
		{name: "ttl one nanosecond over max", ttl: "168h0m0.000000001s", def: week, max: week, field: "ttl", reason: "at most"},
		{name: "ttl days overflow", ttl: "99999999999999999999d", def: week, max: week, field: "ttl", reason: "at most"},
		{name: "ttl duration overflow", ttl: "9999999999h", def: week, max: week, field: "ttl", reason: "not a duration"},
		{name: "ttl under minimum", ttl: "4m59s", def: week, max: week, field: "ttl", reason: "at least 5m0s"},
		{name: "ttl zero", ttl: "0", def: week, max: week, field: "ttl", reason: "at least"},
		{name: "ttl zero days", ttl: "0d", def: week, max: week, field: "ttl", reason: "at least"},
		{name: "ttl negative", ttl: "-1h", def: week, max: week, field: "ttl", reason: "at least"},
		{name: "ttl no unit", ttl: "24", def: week, max: week, field: "ttl", reason: "not a duration"},
		{name: "ttl garbage", ttl: "tomorrow", def: week, max: week, field: "ttl", reason: "not a duration"},
		{name: "ttl fractional days", ttl: "1.5d", def: week, max: week, field: "ttl", reason: "not a duration"},
		{name: "ttl upper-case unit", ttl: "7D", def: week, max: week, field: "ttl", reason: "not a duration"},
		{name: "ttl weeks", ttl: "1w", def: week, max: week, field: "ttl", reason: "not a duration"},
		{name: "ttl days with other units", ttl: "1d2h", def: week, max: week, field: "ttl", reason: "not a duration"},
		{name: "ttl bare d", ttl: "d", def: week, max: week, field: "ttl", reason: "not a duration"},
		{name: "ttl with spaces", ttl: " 24h", def: week, max: week, field: "ttl", reason: "not a duration"},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Span(tt.days, tt.ttl, tt.def, tt.max)
			if got != 0 {
				t.Errorf("got span %s alongside an error", got)
			}
			wantValidation(t, err, tt.field, tt.reason)
		})
	}
}

// A profile whose maximum is below the minimum is our configuration bug, not
// the client's mistake.
func TestSpanBadProfile(t *testing.T) {
	_, err := Span(nil, "", time.Minute, time.Minute)
	e := apierror.As(err)
	if e == nil || e.Status != http.StatusInternalServerError {
		t.Fatalf("got %v, want a 500", err)
	}
}
