package revocation

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/certgate/certgate/internal/api"
	"github.com/certgate/certgate/internal/apierror"
	"github.com/certgate/certgate/internal/auth"
	"github.com/certgate/certgate/internal/ca"
	"github.com/certgate/certgate/internal/policy"
	"github.com/certgate/certgate/internal/store"
)

// EventView is one event in GET /v1/events.
type EventView struct {
	ID         uint64            `json:"id"`
	CA         string            `json:"ca"`
	Type       string            `json:"type"`
	Time       time.Time         `json:"time"`
	Serial     string            `json:"serial"`
	Principal  string            `json:"principal"`
	RequestID  string            `json:"request_id"`
	SourceAddr string            `json:"source_addr"`
	Outcome    string            `json:"outcome"`
	Details    map[string]string `json:"details"`
}

// EventPage is the body of GET /v1/events.
type EventPage struct {
	Events        []EventView `json:"events"`
	NextPageToken string      `json:"next_page_token"`
}

// ViewEvent renders a stored event.
func ViewEvent(e *store.Event) EventView {
	d := e.Details
	if d == nil {
		d = map[string]string{}
	}
	return EventView{ID: e.ID, CA: e.CA, Type: e.Type, Time: e.Time.UTC(), Serial: e.Serial, Principal: e.Principal,
		RequestID: e.RequestID, SourceAddr: e.SourceAddr, Outcome: e.Outcome, Details: d}
}

func validEventType(t string) bool {
	if len(t) == 0 || len(t) > 32 {
		return false
	}
	for _, c := range t {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// GET /v1/events: ca, type, since (inclusive), until (exclusive), limit
// (1..1000, default 100), page_token, order (newest | oldest, default
// newest), and as extensions serial and principal. Paging is keyset on
// (time, id), so pages never overlap or skip and cost the same at any depth;
// a page token is bound to the filters and order it was issued for.
// Non-admins see only events they caused.
func (s *Service) handleEvents(a *api.API, w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	if !p.Policy.Can(policy.OpRead) {
		a.WriteError(w, r, apierror.Forbidden("principal %q may not read events", p.Name).WithDetail("operation", "read not allowed"))
		return
	}
	q := r.URL.Query()
	for k, v := range q {
		switch k {
		case "ca", "type", "since", "until", "limit", "page_token", "order", "serial", "principal":
			if len(v) > 1 {
				a.WriteError(w, r, apierror.Field(k, "given more than once"))
				return
			}
		default:
			a.WriteError(w, r, apierror.Field(k, "unknown query parameter (ca, type, since, until, limit, page_token, order, serial, principal)"))
			return
		}
	}
	f := store.EventFilter{CA: q.Get("ca"), Type: q.Get("type")}
	if f.CA != "" && !ca.KnownCA(f.CA) {
		a.WriteError(w, r, apierror.Field("ca", "unknown CA %q (one of root, client-ca, server-ca, istio-ca)", f.CA))
		return
	}
	if f.Type != "" && !validEventType(f.Type) {
		a.WriteError(w, r, apierror.Field("type", "must be an event type such as issued, revoked, failed, refused, ca_refreshed, ca_expiring, admin"))
		return
	}
	serial := ""
	if v := q.Get("serial"); v != "" {
		n, err := ca.NormalizeSerial(v)
		if err != nil {
			a.WriteError(w, r, apierror.Field("serial", "%v", err))
			return
		}
		serial = n
	}
	f.Principal = q.Get("principal")
	if !p.Policy.IsAdmin() {
		if f.Principal != "" && f.Principal != p.Name {
			a.WriteError(w, r, apierror.Forbidden("principal %q may read only its own events", p.Name).WithDetail("principal", "needs admin"))
			return
		}
		f.Principal = p.Name
	}
	var err error
	if f.Limit, err = api.ParseLimit(q.Get("limit")); err != nil {
		a.WriteError(w, r, err)
		return
	}
	if f.Since, err = api.ParseTime("since", q.Get("since")); err != nil {
		a.WriteError(w, r, err)
		return
	}
	if f.Until, err = api.ParseTime("until", q.Get("until")); err != nil {
		a.WriteError(w, r, err)
		return
	}
	if f.Since != nil && f.Until != nil && !f.Since.Before(*f.Until) {
		a.WriteError(w, r, apierror.Field("until", "must be after since"))
		return
	}
	switch q.Get("order") {
	case "", "newest":
	case "oldest":
		f.OldestFirst = true
	default:
		a.WriteError(w, r, apierror.Field("order", "newest or oldest"))
		return
	}
	fp := queryFingerprint(f, serial)
	if tok := q.Get("page_token"); tok != "" {
		bound, inner, ok := strings.Cut(tok, ".")
		if !ok || bound != fp {
			a.WriteError(w, r, apierror.Field("page_token", "not a token for this query: keep the same ca, type, since, until, order, serial and principal while paging"))
			return
		}
		f.PageToken = inner
	}
	f.Serial = serial
	rows, next, err := s.o.Store.ListEvents(r.Context(), f)
	if errors.Is(err, store.ErrBadPageToken) {
		a.WriteError(w, r, apierror.Field("page_token", "not a token this server issued"))
		return
	}
	if err != nil {
		a.WriteError(w, r, api.DBError(err))
		return
	}
	page := EventPage{Events: make([]EventView, len(rows))}
	for i := range rows {
		page.Events[i] = ViewEvent(&rows[i])
	}
	if next != "" {
		page.NextPageToken = fp + "." + next
	}
	api.WriteJSON(w, http.StatusOK, page)
}

// queryFingerprint binds a page token to its query.
func queryFingerprint(f store.EventFilter, serial string) string {
	var b strings.Builder
	for _, s := range []string{f.CA, f.Type, f.Principal, serial, fmtTime(f.Since), fmtTime(f.Until)} {
		b.WriteString(s)
		b.WriteByte(0)
	}
	if f.OldestFirst {
		b.WriteString("oldest")
	}
	h := sha256.Sum256([]byte(b.String()))
	return hex.EncodeToString(h[:4])
}

func fmtTime(t *time.Time) string {
	if t == nil {
		return ""
	}
	return t.UTC().Format(time.RFC3339Nano)
}
