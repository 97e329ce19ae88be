// Package validation is certgate's request policy: which CSRs, keys, names
// and validity spans a client may ask for. It follows Boulder's split between
// key policy (goodkey: CheckKey) and name policy (policy: ParseNames,
// NamesFromCSR), and it refuses rather than repairs: anything it cannot
// normalise without guessing the client's intent is a 400.
//
// Every refusal is an *apierror.Error with status 400, code
// validation_failed, and details whose Field is the JSON path the client
// sent ("sans[2]", "common_name", "csr", "validity_days", "ttl", "key_type"),
// so a client can point at the offending input without parsing prose.
package validation

import (
	"fmt"

	"github.com/certgate/certgate/internal/apierror"
)

// maxDetails bounds the details of one error: a request with thousands of bad
// SANs must not produce a response (and a log line) thousands of entries long.
const maxDetails = MaxSANs

// maxShown bounds how much of a client's input is echoed back in a reason.
const maxShown = 80

// show quotes user input for a reason, escaping control characters and
// shortening it so that an oversized input cannot bloat the error.
func show(s string) string {
	if len(s) > maxShown {
		return fmt.Sprintf("%q…", s[:maxShown])
	}
	return fmt.Sprintf("%q", s)
}

// details accumulates refusals so one response can list every bad name.
type details struct {
	list    []apierror.Detail
	dropped int
}

func (d *details) add(field, reason string) {
	if len(d.list) >= maxDetails {
		d.dropped++
		return
	}
	d.list = append(d.list, apierror.Detail{Field: field, Reason: reason})
}

func (d *details) empty() bool { return len(d.list) == 0 }

// err renders the accumulated details, or nil when there are none.
func (d *details) err(what string) error {
	if d.empty() {
		return nil
	}
	list := d.list
	if d.dropped > 0 {
		list = append(list, apierror.Detail{Field: list[len(list)-1].Field,
			Reason: fmt.Sprintf("%d more problems not listed", d.dropped)})
	}
	if len(list) == 1 {
		return apierror.Validation("invalid "+list[0].Field+": "+list[0].Reason, list...)
	}
	return apierror.Validation(fmt.Sprintf("%d problems with %s; see details", len(d.list)+d.dropped, what), list...)
}
