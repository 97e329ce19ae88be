package store_test

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/certgate/certgate/internal/servertest"
	"github.com/certgate/certgate/internal/store"
)

// backends runs f on SQLite in a temporary directory, and on PostgreSQL in a
// fresh schema when CERTGATE_TEST_POSTGRES_DSN is set (skipped otherwise).
func backends(t *testing.T, f func(t *testing.T, s *store.Store)) {
	t.Run("sqlite", func(t *testing.T) {
		s, err := store.Open(context.Background(), store.Options{Driver: "sqlite", DataDir: t.TempDir()})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close() })
		f(t, s)
	})
	t.Run("postgres", func(t *testing.T) {
		dsn := servertest.PostgresDSN(t)
		s, err := store.Open(context.Background(), store.Options{Driver: "postgres", DSN: dsn, MaxOpenConns: 4})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close() })
		f(t, s)
	})
}

func ptr[T any](v T) *T { return &v }

var ctx = context.Background()

func pending(serial, requester string) *store.Certificate {
	c := &store.Certificate{CA: "server-ca", Profile: "server", CommonName: "api.example.com", SANs: []string{"api.example.com", "10.0.0.7"},
		KeyAlgorithm: "ecdsa-p256", NotBefore: time.Now().UTC().Truncate(time.Second), NotAfter: time.Now().UTC().Add(7 * 24 * time.Hour).Truncate(time.Second),
		Requester: requester}
	if serial != "" {
		c.Serial = ptr(serial)
	}
	return c
}

func countEvents(t *testing.T, s *store.Store, where string, args ...any) int64 {
	t.Helper()
	var n int64
	q := s.DB().Model(&store.Event{})
	if where != "" {
		q = q.Where(where, args...)
	}
	if err := q.Count(&n).Error; err != nil {
		t.Fatal(err)
	}
	return n
}

func TestCertificateLifecycle(t *testing.T) {
	backends(t, func(t *testing.T, s *store.Store) {
		c := pending("abc123", "alice")
		if err := s.CreatePending(ctx, c); err != nil {
			t.Fatalf("CreatePending: %v", err)
		}
		if c.ID == 0 || c.Status != store.StatusPending {
			t.Fatalf("after CreatePending: id %d status %q", c.ID, c.Status)
		}
		got, err := s.GetBySerial(ctx, "abc123")
		if err != nil || got.ID != c.ID || got.Status != store.StatusPending || !slices.Equal(got.SANs, c.SANs) {
			t.Fatalf("GetBySerial of the pending row = %+v, %v", got, err)
		}
		if _, err := s.GetBySerial(ctx, "def456"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("GetBySerial(unknown) error %v, want ErrNotFound", err)
		}
		// A second row with the same serial is a conflict.
		if err := s.CreatePending(ctx, pending("abc123", "bob")); !errors.Is(err, store.ErrConflict) {
			t.Errorf("duplicate serial: %v, want ErrConflict", err)
		}

		// Finish: issued, with its event, atomically.
		c.Status, c.PEM, c.Fingerprint = store.StatusIssued, "-----BEGIN CERTIFICATE-----\n...", "ff00"
		if err := s.Finish(ctx, c, &store.Event{CA: c.CA, Type: store.EventIssued, Serial: "abc123", Principal: "alice", Outcome: "success"}); err != nil {
			t.Fatalf("Finish: %v", err)
		}
		got, err = s.GetBySerial(ctx, "abc123")
		if err != nil || got.Status != store.StatusIssued || got.PEM != c.PEM || got.Fingerprint != "ff00" {
			t.Fatalf("after Finish: %+v, %v", got, err)
		}
		if n := countEvents(t, s, "type = ? AND serial = ?", store.EventIssued, "abc123"); n != 1 {
			t.Errorf("%d issued events, want 1", n)
		}
		// A row that is no longer pending cannot be finished again, and the
		// refused Finish writes no event.
		c.Status = store.StatusFailed
		if err := s.Finish(ctx, c, &store.Event{CA: c.CA, Type: store.EventFailed, Serial: "abc123"}); !errors.Is(err, store.ErrConflict) {
			t.Errorf("second Finish: %v, want ErrConflict", err)
		}
		if n := countEvents(t, s, "type = ?", store.EventFailed); n != 0 {
			t.Errorf("refused Finish wrote %d events", n)
		}
		if got, _ := s.GetBySerial(ctx, "abc123"); got.Status != store.StatusIssued {
			t.Errorf("refused Finish changed the status to %q", got.Status)
		}

		// Revoke once.
		at := time.Now().UTC().Truncate(time.Second)
		rev, err := s.Revoke(ctx, "abc123", "key_compromise", at, &store.Event{CA: c.CA, Type: store.EventRevoked, Serial: "abc123", Principal: "alice"})
		if err != nil {
			t.Fatalf("Revoke: %v", err)
		}
		if rev.Status != store.StatusRevoked || rev.RevocationReason != "key_compromise" || rev.RevokedAt == nil || !rev.RevokedAt.Equal(at) {
			t.Fatalf("Revoke returned %+v", rev)
		}
		// A second Revoke is a conflict and changes nothing.
		_, err = s.Revoke(ctx, "abc123", "superseded", at.Add(time.Hour), &store.Event{CA: c.CA, Type: store.EventRevoked, Serial: "abc123"})
		if !errors.Is(err, store.ErrConflict) {
			t.Errorf("second Revoke: %v, want ErrConflict", err)
		}
		got, _ = s.GetBySerial(ctx, "abc123")
		if got.Status != store.StatusRevoked || got.RevocationReason != "key_compromise" || got.RevokedAt == nil || !got.RevokedAt.Equal(at) {
			t.Errorf("second Revoke changed the row: %+v", got)
		}
		if n := countEvents(t, s, "type = ?", store.EventRevoked); n != 1 {
			t.Errorf("%d revoked events after two Revoke calls, want 1", n)
		}
		// Only issued certificates can be revoked.
		p := pending("beef", "alice")
		if err := s.CreatePending(ctx, p); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Revoke(ctx, "beef", "superseded", at, nil); !errors.Is(err, store.ErrConflict) {
			t.Errorf("Revoke of a pending row: %v, want ErrConflict", err)
		}
		if got, _ := s.GetBySerial(ctx, "beef"); got.Status != store.StatusPending {
			t.Errorf("Revoke of a pending row changed it to %q", got.Status)
		}
		if revoked, err := s.Revoked(ctx, "server-ca"); err != nil || len(revoked) != 1 || *revoked[0].Serial != "abc123" {
			t.Errorf("Revoked(server-ca) = %v, %v; want abc123 only", revoked, err)
		}
		// A failed issuance is recorded too.
		p.Status, p.FailureReason = store.StatusFailed, `{"status":502}`
		if err := s.Finish(ctx, p, &store.Event{CA: p.CA, Type: store.EventFailed}); err != nil {
			t.Fatalf("Finish(failed): %v", err)
		}
		if got, _ := s.GetByID(ctx, p.ID); got.Status != store.StatusFailed || got.FailureReason != `{"status":502}` {
			t.Errorf("failed row: %+v", got)
		}
	})
}

func TestIdempotencyKeyPerRequester(t *testing.T) {
	backends(t, func(t *testing.T, s *store.Store) {
		mk := func(serial, requester, key string) *store.Certificate {
			c := pending(serial, requester)
			if key != "" {
				c.IdempotencyKey, c.IdemRequester = ptr(key), ptr(requester)
			}
			return c
		}
		a := mk("a1", "alice", "k1")
		if err := s.CreatePending(ctx, a); err != nil {
			t.Fatal(err)
		}
		b := mk("b1", "bob", "k1")
		if err := s.CreatePending(ctx, b); err != nil {
			t.Errorf("same key, another requester: %v, want OK", err)
		}
		if err := s.CreatePending(ctx, mk("a2", "alice", "k1")); !errors.Is(err, store.ErrConflict) {
			t.Errorf("same key, same requester: %v, want ErrConflict", err)
		}
		if _, err := s.GetBySerial(ctx, "a2"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("the refused row was written: %v", err)
		}
		if err := s.CreatePending(ctx, mk("a3", "alice", "k2")); err != nil {
			t.Errorf("another key, same requester: %v", err)
		}
		// Rows without a key never collide.
		for _, serial := range []string{"n1", "n2", "n3"} {
			if err := s.CreatePending(ctx, mk(serial, "alice", "")); err != nil {
				t.Errorf("row without a key: %v", err)
			}
		}
		for _, c := range []struct{ requester, key, serial string }{{"alice", "k1", "a1"}, {"bob", "k1", "b1"}, {"alice", "k2", "a3"}} {
			got, err := s.GetByIdempotencyKey(ctx, c.requester, c.key)
			if err != nil || *got.Serial != c.serial {
				t.Errorf("GetByIdempotencyKey(%s, %s) = %v, %v; want %s", c.requester, c.key, got, err, c.serial)
			}
		}
		if _, err := s.GetByIdempotencyKey(ctx, "carol", "k1"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("GetByIdempotencyKey(carol) = %v, want ErrNotFound", err)
		}
	})
}

func TestListCertificatesKeyset(t *testing.T) {
	backends(t, func(t *testing.T, s *store.Store) {
		base := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
		profiles := []string{"client", "server", "machine"}
		statuses := []string{store.StatusIssued, store.StatusIssued, store.StatusRevoked, store.StatusFailed, store.StatusIssued}
		rows := make([]store.Certificate, 250)
		for i := range rows {
			p := profiles[i%3]
			rows[i] = store.Certificate{Serial: ptr(fmt.Sprintf("%x", 0x1000+i)), CA: map[string]string{"client": "client-ca", "server": "server-ca", "machine": "istio-ca"}[p],
				Profile: p, CommonName: fmt.Sprintf("cn-%d.example.com", i%10), SANs: []string{fmt.Sprintf("cn-%d.example.com", i%10)},
				Status: statuses[i%5], NotBefore: base, NotAfter: base.Add(time.Duration(i) * time.Hour), Requester: []string{"alice", "bob"}[i%2]}
		}
		if err := s.DB().CreateInBatches(rows, 100).Error; err != nil {
			t.Fatalf("bulk insert: %v", err)
		}
		cutoff := base.Add(125 * time.Hour)
		cases := []struct {
			name  string
			f     store.CertFilter
			match func(c store.Certificate) bool
		}{
			{"all", store.CertFilter{}, func(store.Certificate) bool { return true }},
			{"all, limit 50 (exact multiple)", store.CertFilter{Limit: 50}, func(store.Certificate) bool { return true }},
			{"profile server", store.CertFilter{Profile: "server"}, func(c store.Certificate) bool { return c.Profile == "server" }},
			{"status revoked", store.CertFilter{Status: store.StatusRevoked}, func(c store.Certificate) bool { return c.Status == store.StatusRevoked }},
			{"common name", store.CertFilter{CommonName: "cn-3.example.com"}, func(c store.Certificate) bool { return c.CommonName == "cn-3.example.com" }},
			{"expires before", store.CertFilter{ExpiresBefore: &cutoff}, func(c store.Certificate) bool { return c.NotAfter.Before(cutoff) }},
			{"ca and requester", store.CertFilter{CA: "istio-ca", Requester: "bob"}, func(c store.Certificate) bool { return c.CA == "istio-ca" && c.Requester == "bob" }},
			{"profile, status and expiry", store.CertFilter{Profile: "client", Status: store.StatusIssued, ExpiresBefore: &cutoff},
				func(c store.Certificate) bool {
					return c.Profile == "client" && c.Status == store.StatusIssued && c.NotAfter.Before(cutoff)
				}},
			{"nothing matches", store.CertFilter{CommonName: "nobody.example.com"}, func(store.Certificate) bool { return false }},
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				// Newest first by id; an expires_before listing is soonest
				// expiry first (not_after, id ascending).
				byExpiry := c.f.ExpiresBefore != nil
				var want []string
				if byExpiry {
					for i := range rows { // rows were made in not_after order
						if c.match(rows[i]) {
							want = append(want, *rows[i].Serial)
						}
					}
				} else {
					for i := len(rows) - 1; i >= 0; i-- {
						if c.match(rows[i]) {
							want = append(want, *rows[i].Serial)
						}
					}
				}
				f := c.f
				if f.Limit == 0 {
					f.Limit = 100
				}
				var got []string
				seen := map[string]bool{}
				pages := 0
				var lastID uint64
				for {
					page, next, err := s.ListCertificates(ctx, f)
					if err != nil {
						t.Fatalf("page %d: %v", pages, err)
					}
					pages++
					if len(page) > f.Limit {
						t.Fatalf("page of %d rows, limit %d", len(page), f.Limit)
					}
					for _, r := range page {
						if seen[*r.Serial] {
							t.Fatalf("serial %s listed twice", *r.Serial)
						}
						seen[*r.Serial] = true
						if !byExpiry && lastID != 0 && r.ID >= lastID {
							t.Fatalf("ids not strictly decreasing: %d after %d", r.ID, lastID)
						}
						if byExpiry && lastID != 0 && r.ID <= lastID {
							t.Fatalf("expiry order: id %d after %d", r.ID, lastID)
						}
						lastID = r.ID
						if r.PEM != "" {
							t.Errorf("listing returned the PEM")
						}
						got = append(got, *r.Serial)
					}
					if next == "" {
						break
					}
					if len(page) != f.Limit {
						t.Fatalf("a page of %d (< limit %d) came with a next token", len(page), f.Limit)
					}
					if pages > 20 {
						t.Fatal("pagination does not end")
					}
					f.PageToken = next
				}
				if !slices.Equal(got, want) {
					t.Fatalf("listed %d serials, want %d (gaps, extras or order)\n got %v\nwant %v", len(got), len(want), got, want)
				}
				if wantPages := max(1, (len(want)+f.Limit-1)/f.Limit); pages != wantPages {
					t.Errorf("%d pages for %d rows at limit %d, want %d (no empty trailing page)", pages, len(want), f.Limit, wantPages)
				}
			})
		}
	})
}

func TestListEventsPaging(t *testing.T) {
	backends(t, func(t *testing.T, s *store.Store) {
		t0 := time.Date(2031, 3, 4, 5, 6, 7, 0, time.UTC)
		t1 := t0.Add(1500 * time.Microsecond) // sub-second
		t2 := t0.Add(2 * time.Second)
		t3 := t0.Add(3 * time.Second)
		var all []store.Event
		add := func(n int, at time.Time, caName, typ string) {
			for i := 0; i < n; i++ {
				ev := store.Event{CA: caName, Type: typ, Time: at, Principal: "p", Details: map[string]string{"i": fmt.Sprint(len(all))}}
				if err := s.AddEvent(ctx, &ev); err != nil {
					t.Fatal(err)
				}
				all = append(all, ev)
			}
		}
		// Interleave so ids and times are not in the same order.
		add(13, t2, "server-ca", store.EventIssued)
		add(11, t0, "server-ca", store.EventIssued)
		add(5, t1, "client-ca", store.EventRevoked)
		add(17, t1, "server-ca", store.EventIssued)
		add(9, t3, "server-ca", store.EventRevoked)
		add(4, t0, "server-ca", store.EventRevoked)

		type key struct {
			t  time.Time
			id uint64
		}
		expect := func(match func(e store.Event) bool, oldest bool) []uint64 {
			var ks []key
			for _, e := range all {
				if match(e) {
					ks = append(ks, key{e.Time, e.ID})
				}
			}
			slices.SortFunc(ks, func(a, b key) int {
				c := a.t.Compare(b.t)
				if c == 0 {
					c = map[bool]int{true: -1, false: 1}[a.id < b.id]
				}
				if !oldest {
					c = -c
				}
				return c
			})
			out := make([]uint64, len(ks))
			for i, k := range ks {
				out[i] = k.id
			}
			return out
		}
		cases := []struct {
			name  string
			f     store.EventFilter
			match func(e store.Event) bool
		}{
			{"all", store.EventFilter{}, func(store.Event) bool { return true }},
			{"ca", store.EventFilter{CA: "server-ca"}, func(e store.Event) bool { return e.CA == "server-ca" }},
			{"type", store.EventFilter{Type: store.EventRevoked}, func(e store.Event) bool { return e.Type == store.EventRevoked }},
			{"since t1 (inclusive)", store.EventFilter{Since: &t1}, func(e store.Event) bool { return !e.Time.Before(t1) }},
			{"until t2 (exclusive)", store.EventFilter{Until: &t2}, func(e store.Event) bool { return e.Time.Before(t2) }},
			{"ca, since t1, until t3", store.EventFilter{CA: "server-ca", Since: &t1, Until: &t3},
				func(e store.Event) bool { return e.CA == "server-ca" && !e.Time.Before(t1) && e.Time.Before(t3) }},
		}
		for _, c := range cases {
			for _, oldest := range []bool{false, true} {
				for _, limit := range []int{1, 7, 17} {
					t.Run(fmt.Sprintf("%s/oldest=%v/limit=%d", c.name, oldest, limit), func(t *testing.T) {
						want := expect(c.match, oldest)
						f := c.f
						f.OldestFirst, f.Limit = oldest, limit
						var got []uint64
						for pages := 0; ; pages++ {
							if pages > len(all)+2 {
								t.Fatal("pagination does not end")
							}
							page, next, err := s.ListEvents(ctx, f)
							if err != nil {
								t.Fatal(err)
							}
							for _, e := range page {
								got = append(got, e.ID)
							}
							if next == "" {
								break
							}
							if len(page) != limit {
								t.Fatalf("short page (%d < %d) with a next token", len(page), limit)
							}
							f.PageToken = next
						}
						if !slices.Equal(got, want) {
							t.Fatalf("paged %d events, want %d (loss, duplicates or order)\n got %v\nwant %v", len(got), len(want), got, want)
						}
					})
				}
			}
		}
		// Event times round-trip exactly (to the microsecond).
		evs, _, err := s.ListEvents(ctx, store.EventFilter{Since: &t1, Until: &t2, Limit: 1000})
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range evs {
			if !e.Time.Equal(t1) {
				t.Errorf("event %d time %s, want %s", e.ID, e.Time, t1)
			}
		}
		// An event without a time gets the store's clock.
		ev := store.Event{CA: "root", Type: store.EventCARefreshed}
		before := time.Now().Add(-time.Second)
		if err := s.AddEvent(ctx, &ev); err != nil {
			t.Fatal(err)
		}
		if ev.Time.Before(before) || ev.Time.After(time.Now().Add(time.Second)) || ev.Time.Location() != time.UTC {
			t.Errorf("event stamped %v, want now in UTC", ev.Time)
		}
	})
}

func TestBadPageToken(t *testing.T) {
	backends(t, func(t *testing.T, s *store.Store) {
		eightBytes := base64.RawURLEncoding.EncodeToString(make([]byte, 8))
		sixteen := base64.RawURLEncoding.EncodeToString(make([]byte, 16))
		for _, tok := range []string{"!!!", "a", "abc", "AAAA", sixteen, eightBytes + "=", "Zm9v YmFy"} {
			if _, _, err := s.ListCertificates(ctx, store.CertFilter{PageToken: tok}); !errors.Is(err, store.ErrBadPageToken) {
				t.Errorf("ListCertificates(page_token %q): %v, want ErrBadPageToken", tok, err)
			}
		}
		for _, tok := range []string{"!!!", "a", eightBytes, sixteen + "AA"} {
			if _, _, err := s.ListEvents(ctx, store.EventFilter{PageToken: tok}); !errors.Is(err, store.ErrBadPageToken) {
				t.Errorf("ListEvents(page_token %q): %v, want ErrBadPageToken", tok, err)
			}
		}
		// Well-formed tokens work (even pointing nowhere).
		if _, _, err := s.ListCertificates(ctx, store.CertFilter{PageToken: eightBytes}); err != nil {
			t.Errorf("ListCertificates with a well-formed token: %v", err)
		}
		if _, _, err := s.ListEvents(ctx, store.EventFilter{PageToken: sixteen}); err != nil {
			t.Errorf("ListEvents with a well-formed token: %v", err)
		}
	})
}

func TestUpsertCA(t *testing.T) {
	backends(t, func(t *testing.T, s *store.Store) {
		nb := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
		na := nb.Add(5 * 365 * 24 * time.Hour)
		fetched := time.Date(2026, 2, 3, 4, 5, 6, 789000000, time.UTC)
		in := store.CertificateAuthority{Name: "server-ca", Backend: "local", Status: "ACTIVE", KeyAlgorithm: "ecdsa-p256",
			SigningAlgorithm: "ECDSA-SHA256", CertificatePEM: "-----BEGIN CERTIFICATE-----\nA\n", ChainPEM: "-----BEGIN CERTIFICATE-----\nR\n",
			NotBefore: nb, NotAfter: na, FetchedAt: fetched}
		if err := s.UpsertCA(ctx, &in); err != nil {
			t.Fatalf("UpsertCA: %v", err)
		}
		root := store.CertificateAuthority{Name: "root", Backend: "local", Status: "ACTIVE", NotBefore: nb, NotAfter: na, FetchedAt: fetched}
		if err := s.UpsertCA(ctx, &root); err != nil {
			t.Fatal(err)
		}
		cas, err := s.ListCAs(ctx)
		if err != nil || len(cas) != 2 || cas[0].Name != "root" || cas[1].Name != "server-ca" {
			t.Fatalf("ListCAs = %+v, %v", cas, err)
		}
		got := cas[1]
		if got.Backend != in.Backend || got.Status != in.Status || got.KeyAlgorithm != in.KeyAlgorithm || got.SigningAlgorithm != in.SigningAlgorithm ||
			got.CertificatePEM != in.CertificatePEM || got.ChainPEM != in.ChainPEM ||
			!got.NotBefore.Equal(nb) || !got.NotAfter.Equal(na) || !got.FetchedAt.Equal(fetched) {
			t.Errorf("round trip: got %+v\nwant %+v", got, in)
		}
		// Upsert again: the same row, updated.
		upd := in
		upd.Status, upd.ARN, upd.UsageMode, upd.ChainPEM = "DISABLED", "arn:aws:acm-pca:us-east-1:1:certificate-authority/x", "SHORT_LIVED_CERTIFICATE", "new chain"
		upd.FetchedAt = fetched.Add(time.Hour)
		if err := s.UpsertCA(ctx, &upd); err != nil {
			t.Fatalf("second UpsertCA: %v", err)
		}
		cas, err = s.ListCAs(ctx)
		if err != nil || len(cas) != 2 {
			t.Fatalf("after update: %d CAs, %v", len(cas), err)
		}
		got = cas[1]
		if got.Status != "DISABLED" || got.ARN != upd.ARN || got.UsageMode != upd.UsageMode || got.ChainPEM != "new chain" || !got.FetchedAt.Equal(upd.FetchedAt) {
			t.Errorf("update not applied: %+v", got)
		}
	})
}

// TestConcurrentConflicts races writers that may not all win: the same
// idempotency key from one requester, and revocations of one serial. Writes
// are batched (group commit), so the losers' failures must stay their own.
func TestConcurrentConflicts(t *testing.T) {
	backends(t, func(t *testing.T, s *store.Store) {
		const n = 24
		results := make(chan error, n)
		for i := 0; i < n; i++ {
			go func(i int) {
				c := pending(fmt.Sprintf("c%02d", i), "alice")
				c.IdempotencyKey, c.IdemRequester = ptr("same-key"), ptr("alice")
				results <- s.CreatePending(ctx, c)
			}(i)
		}
		wins := 0
		for i := 0; i < n; i++ {
			switch err := <-results; {
			case err == nil:
				wins++
			case !errors.Is(err, store.ErrConflict):
				t.Errorf("CreatePending: %v, want nil or ErrConflict", err)
			}
		}
		if wins != 1 {
			t.Fatalf("%d writers won the same idempotency key, want 1", wins)
		}
		var rows int64
		if err := s.DB().Model(&store.Certificate{}).Where("idempotency_key = ?", "same-key").Count(&rows).Error; err != nil || rows != 1 {
			t.Fatalf("%d rows with the key (%v), want 1", rows, err)
		}
		// Unrelated writes in the same batches are not rolled back with the losers.
		for i := 0; i < n; i++ {
			go func(i int) {
				c := pending(fmt.Sprintf("u%02d", i), "bob")
				if i%2 == 0 {
					c.IdempotencyKey, c.IdemRequester = ptr("bob-key"), ptr("bob")
				}
				results <- s.CreatePending(ctx, c)
			}(i)
		}
		ok := 0
		for i := 0; i < n; i++ {
			if err := <-results; err == nil {
				ok++
			} else if !errors.Is(err, store.ErrConflict) {
				t.Errorf("CreatePending: %v", err)
			}
		}
		if err := s.DB().Model(&store.Certificate{}).Where("requester = ?", "bob").Count(&rows).Error; err != nil || int(rows) != ok || ok != n/2+1 {
			t.Errorf("bob: %d writes succeeded, %d rows (%v); want %d", ok, rows, err, n/2+1)
		}

		// Concurrent revocations of one certificate: exactly one wins.
		c := pending("dead", "alice")
		if err := s.CreatePending(ctx, c); err != nil {
			t.Fatal(err)
		}
		c.Status = store.StatusIssued
		if err := s.Finish(ctx, c, nil); err != nil {
			t.Fatal(err)
		}
		for i := 0; i < n; i++ {
			go func() {
				_, err := s.Revoke(ctx, "dead", "superseded", time.Now(), &store.Event{CA: "server-ca", Type: store.EventRevoked, Serial: "dead"})
				results <- err
			}()
		}
		wins = 0
		for i := 0; i < n; i++ {
			switch err := <-results; {
			case err == nil:
				wins++
			case !errors.Is(err, store.ErrConflict):
				t.Errorf("Revoke: %v", err)
			}
		}
		if wins != 1 {
			t.Errorf("%d concurrent revocations succeeded, want 1", wins)
		}
		if got := countEvents(t, s, "type = ? AND serial = ?", store.EventRevoked, "dead"); got != 1 {
			t.Errorf("%d revoked events, want 1", got)
		}
	})
}
