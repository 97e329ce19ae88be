package store_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/certgate/certgate/internal/servertest"
	"github.com/certgate/certgate/internal/store"
)

// lingering opens a store whose write batches wait up to a minute for
// announced writes, so only an arrival or a withdrawal can end the wait.
func lingering(t *testing.T, f func(t *testing.T, s *store.Store)) {
	open := func(t *testing.T, o store.Options) {
		o.WriteLinger = time.Minute
		s, err := store.Open(context.Background(), o)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close() })
		f(t, s)
	}
	t.Run("sqlite", func(t *testing.T) { open(t, store.Options{Driver: "sqlite", DataDir: t.TempDir()}) })
	t.Run("postgres", func(t *testing.T) {
		open(t, store.Options{Driver: "postgres", DSN: servertest.PostgresDSN(t), MaxOpenConns: 4})
	})
}

// final is an issued row whose every value depends on its serial, so rows
// merged into one INSERT could not swap values unnoticed.
func final(serial string) (*store.Certificate, *store.Event) {
	c := pending(serial, "alice-"+serial)
	c.Status = store.StatusIssued
	c.CommonName = serial + ".example.com"
	c.SANs = []string{serial + ".example.com"}
	c.PEM = "pem of " + serial
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	c.NotBefore = base.Add(time.Duration(len(serial)) * time.Hour)
	c.NotAfter = c.NotBefore.Add(time.Duration(serial[len(serial)-1]) * time.Minute)
	return c, &store.Event{CA: c.CA, Type: store.EventIssued, Serial: serial, Principal: "alice-" + serial}
}

func insertAsync(s *store.Store, ctx context.Context, serial string) <-chan error {
	c, ev := final(serial)
	return insertRowAsync(s, ctx, c, ev)
}

func insertRowAsync(s *store.Store, ctx context.Context, c *store.Certificate, ev *store.Event) <-chan error {
	done := make(chan error, 1)
	go func() { done <- s.InsertFinal(ctx, c, ev) }()
	return done
}

// stillWaiting fails the test if the write completed: while a write is
// announced, a batch must not commit without it.
func stillWaiting(t *testing.T, done <-chan error) {
	t.Helper()
	select {
	case err := <-done:
		t.Fatalf("the batch committed (err %v) while an announced write was still on its way", err)
	case <-time.After(150 * time.Millisecond):
	}
}

func committed(t *testing.T, done <-chan error) {
	t.Helper()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the write was never committed")
	}
}

func TestGroupCommitTakesAnnouncedWritesAlong(t *testing.T) {
	lingering(t, func(t *testing.T, s *store.Store) {
		w0, tx0 := s.WriteStats()
		actx, done := s.ExpectWrite(ctx)
		defer done()
		first := insertAsync(s, ctx, "a1")
		stillWaiting(t, first)
		second := insertAsync(s, actx, "a2")
		committed(t, second)
		committed(t, first)
		w1, tx1 := s.WriteStats()
		if w1-w0 != 2 || tx1-tx0 != 1 {
			t.Fatalf("%d writes in %d transactions, want 2 in 1 (the announced write shares the commit)", w1-w0, tx1-tx0)
		}
		// Merged into one multi-row INSERT per table, each row and event
		// still has exactly its own values.
		for _, serial := range []string{"a1", "a2"} {
			want, _ := final(serial)
			got, err := s.GetBySerial(ctx, serial)
			if err != nil {
				t.Fatal(err)
			}
			if got.Status != store.StatusIssued || got.CommonName != want.CommonName || got.Requester != want.Requester ||
				!got.NotBefore.Equal(want.NotBefore) || !got.NotAfter.Equal(want.NotAfter) || got.PEM != want.PEM ||
				fmt.Sprint(got.SANs) != fmt.Sprint(want.SANs) || got.CreatedAt.IsZero() {
				t.Fatalf("%s: stored %+v, want %+v", serial, got, want)
			}
			var ev store.Event
			if err := s.DB().Where("serial = ?", serial).Take(&ev).Error; err != nil || ev.Type != store.EventIssued || ev.CA != "server-ca" || ev.Principal != "alice-"+serial {
				t.Fatalf("%s: event %+v, %v", serial, ev, err)
			}
		}
	})
}

func TestGroupCommitWithdrawnAnnouncementReleasesTheBatch(t *testing.T) {
	lingering(t, func(t *testing.T, s *store.Store) {
		_, done := s.ExpectWrite(ctx)
		w := insertAsync(s, ctx, "b1")
		stillWaiting(t, w)
		done() // the announcing request failed before writing
		done() // and a second call changes nothing
		committed(t, w)
		// Nothing is announced any more: the next write does not wait.
		committed(t, insertAsync(s, ctx, "b2"))
		if n := s.Announced(); n != 0 {
			t.Fatalf("%d announcements outstanding, want 0", n)
		}
		// The count did not go below zero: a new announcement holds again.
		_, done2 := s.ExpectWrite(ctx)
		w3 := insertAsync(s, ctx, "b3")
		stillWaiting(t, w3)
		done2()
		committed(t, w3)
	})
}

func TestGroupCommitDoesNotWaitWithoutAnnouncements(t *testing.T) {
	lingering(t, func(t *testing.T, s *store.Store) {
		for i := range 3 {
			committed(t, insertAsync(s, ctx, fmt.Sprintf("c%d", i)))
		}
		// A request's own announcement ends when its write is queued, so a
		// lone announced request does not wait for itself either.
		actx, done := s.ExpectWrite(ctx)
		defer done()
		committed(t, insertAsync(s, actx, "c9"))
	})
}

// A merged batch that breaks a uniqueness rule is rolled back and each write
// runs alone: the duplicate gets ErrConflict, the other write is not lost.
func TestGroupCommitMergedConflictIsolated(t *testing.T) {
	lingering(t, func(t *testing.T, s *store.Store) {
		committed(t, insertAsync(s, ctx, "dup"))
		actx, done := s.ExpectWrite(ctx)
		defer done()
		dup := insertAsync(s, ctx, "dup")
		stillWaiting(t, dup)
		pend := make(chan error, 1)
		go func() { pend <- s.CreatePending(actx, pending("", "bob")) }()
		committed(t, pend)
		select {
		case err := <-dup:
			if !errors.Is(err, store.ErrConflict) {
				t.Fatalf("duplicate serial: %v, want ErrConflict", err)
			}
		case <-time.After(20 * time.Second):
			t.Fatal("the duplicate never returned")
		}
		if n := countEvents(t, s, "serial = ?", "dup"); n != 1 {
			t.Fatalf("%d events for the serial, want 1 (the loser's rolled back)", n)
		}
		var rows int64
		if err := s.DB().Model(&store.Certificate{}).Where("requester = ? AND status = ?", "bob", store.StatusPending).Count(&rows).Error; err != nil || rows != 1 {
			t.Fatalf("%d pending rows for bob (%v), want 1", rows, err)
		}
	})
}

// Final rows merge with each other while other writes in the same batch run
// as they are.
func TestGroupCommitMergesFinalsAmongOtherWrites(t *testing.T) {
	lingering(t, func(t *testing.T, s *store.Store) {
		w0, tx0 := s.WriteStats()
		actx, done := s.ExpectWrite(ctx)
		defer done()
		var waits []<-chan error
		for i := range 5 {
			w := insertAsync(s, ctx, fmt.Sprintf("m%d", i))
			waits = append(waits, w)
		}
		// A row without an event, and one with an Idempotency-Key, among
		// rows with NULL keys.
		quiet, _ := final("q1")
		waits = append(waits, insertRowAsync(s, ctx, quiet, nil))
		keyed, keyedEv := final("k1")
		keyed.IdempotencyKey, keyed.IdemRequester = ptr("key-1"), ptr(keyed.Requester)
		waits = append(waits, insertRowAsync(s, ctx, keyed, keyedEv))
		p := make(chan error, 1)
		go func() { p <- s.CreatePending(ctx, pending("", "carol")) }()
		waits = append(waits, p)
		for _, w := range waits {
			stillWaiting(t, w)
		}
		waits = append(waits, insertAsync(s, actx, "m9"))
		for _, w := range waits {
			committed(t, w)
		}
		w1, tx1 := s.WriteStats()
		if w1-w0 != 9 || tx1-tx0 != 1 {
			t.Fatalf("%d writes in %d transactions, want 9 in 1", w1-w0, tx1-tx0)
		}
		if n := countEvents(t, s, "serial LIKE ?", "m%"); n != 6 {
			t.Fatalf("%d events, want 6", n)
		}
		if n := countEvents(t, s, "serial IN ?", []string{"q1", "k1"}); n != 1 {
			t.Fatalf("%d events for q1 and k1, want 1 (q1 has none)", n)
		}
		if c, err := s.GetByIdempotencyKey(ctx, keyed.Requester, "key-1"); err != nil || c.Serial == nil || *c.Serial != "k1" {
			t.Fatalf("by idempotency key: %+v, %v", c, err)
		}
		if c, err := s.GetBySerial(ctx, "q1"); err != nil || c.IdempotencyKey != nil || c.CommonName != "q1.example.com" {
			t.Fatalf("q1: %+v, %v", c, err)
		}
	})
}

// With the linger off (database.write_linger: 0), announced writes are not
// waited for.
func TestGroupCommitLingerOff(t *testing.T) {
	s, err := store.Open(context.Background(), store.Options{Driver: "sqlite", DataDir: t.TempDir(), WriteLinger: 0})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	_, done := s.ExpectWrite(ctx)
	defer done()
	committed(t, insertAsync(s, ctx, "off"))
}

// Two final rows with one serial in one merged INSERT: the batch is rolled
// back and rerun write by write, so exactly one wins and the others are kept.
func TestGroupCommitMergedDuplicateFinals(t *testing.T) {
	lingering(t, func(t *testing.T, s *store.Store) {
		actx, done := s.ExpectWrite(ctx)
		defer done()
		a := insertAsync(s, ctx, "twin")
		b := insertAsync(s, ctx, "twin")
		other := insertAsync(s, ctx, "single")
		for _, w := range []<-chan error{a, b, other} {
			stillWaiting(t, w)
		}
		committed(t, insertAsync(s, actx, "last"))
		committed(t, other)
		var conflicts, wins int
		for _, w := range []<-chan error{a, b} {
			select {
			case err := <-w:
				switch {
				case err == nil:
					wins++
				case errors.Is(err, store.ErrConflict):
					conflicts++
				default:
					t.Fatalf("twin: %v", err)
				}
			case <-time.After(20 * time.Second):
				t.Fatal("a twin never returned")
			}
		}
		if wins != 1 || conflicts != 1 {
			t.Fatalf("%d wins and %d conflicts for one serial, want 1 and 1", wins, conflicts)
		}
		for serial, want := range map[string]int64{"twin": 1, "single": 1, "last": 1} {
			if n := countEvents(t, s, "serial = ?", serial); n != want {
				t.Fatalf("%d events for %s, want %d", n, serial, want)
			}
		}
	})
}

// A write after Close gets an error; it never waits for a writer that is
// gone.
func TestWriteAfterCloseReturns(t *testing.T) {
	for i := range 20 {
		s, err := store.Open(context.Background(), store.Options{Driver: "sqlite", DataDir: t.TempDir()})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-insertAsync(s, ctx, fmt.Sprintf("late%d", i)):
			if err == nil {
				t.Fatal("a write after Close succeeded")
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("attempt %d: a write after Close hung", i)
		}
	}
}

// A batch of issued rows only — on PostgreSQL one statement without
// BEGIN/COMMIT — with a row without an event in the middle, an
// Idempotency-Key, and a lone row without an event.
func TestGroupCommitFinalsOnly(t *testing.T) {
	lingering(t, func(t *testing.T, s *store.Store) {
		w0, tx0 := s.WriteStats()
		actx, done := s.ExpectWrite(ctx)
		defer done()
		first := insertAsync(s, ctx, "f1")
		quiet, _ := final("fq")
		mid := insertRowAsync(s, ctx, quiet, nil)
		keyed, keyedEv := final("fk")
		keyed.IdempotencyKey, keyed.IdemRequester = ptr("fkey"), ptr(keyed.Requester)
		withKey := insertRowAsync(s, ctx, keyed, keyedEv)
		for _, w := range []<-chan error{first, mid, withKey} {
			stillWaiting(t, w)
		}
		last := insertAsync(s, actx, "fl")
		for _, w := range []<-chan error{first, mid, withKey, last} {
			committed(t, w)
		}
		if w1, tx1 := s.WriteStats(); w1-w0 != 4 || tx1-tx0 != 1 {
			t.Fatalf("%d writes in %d transactions, want 4 in 1", w1-w0, tx1-tx0)
		}
		for serial, want := range map[string]int64{"f1": 1, "fq": 0, "fk": 1, "fl": 1} {
			if n := countEvents(t, s, "serial = ?", serial); n != want {
				t.Fatalf("%d events for %s, want %d", n, serial, want)
			}
			want, _ := final(serial)
			got, err := s.GetBySerial(ctx, serial)
			if err != nil || got.CommonName != want.CommonName || !got.NotAfter.Equal(want.NotAfter) || got.PEM != want.PEM {
				t.Fatalf("%s: %+v, %v", serial, got, err)
			}
		}
		if c, err := s.GetByIdempotencyKey(ctx, keyed.Requester, "fkey"); err != nil || *c.Serial != "fk" {
			t.Fatalf("by idempotency key: %+v, %v", c, err)
		}
		lone, _ := final("fz")
		committed(t, insertRowAsync(s, ctx, lone, nil))
		if n := countEvents(t, s, "serial = ?", "fz"); n != 0 {
			t.Fatalf("%d events for a row written without one", n)
		}
		// A duplicate alone is a conflict, not a lost or doubled row.
		dup, dupEv := final("fz")
		if err := s.InsertFinal(ctx, dup, dupEv); !errors.Is(err, store.ErrConflict) {
			t.Fatalf("duplicate serial: %v, want ErrConflict", err)
		}
		if n := countEvents(t, s, "serial = ?", "fz"); n != 0 {
			t.Fatalf("the refused duplicate left %d events", n)
		}
	})
}
