package store_test

import (
	"context"
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

func final(serial string) (*store.Certificate, *store.Event) {
	c := pending(serial, "alice")
	c.Status = store.StatusIssued
	return c, &store.Event{CA: c.CA, Type: store.EventIssued, Serial: serial}
}

func insertAsync(s *store.Store, ctx context.Context, serial string) <-chan error {
	done := make(chan error, 1)
	go func() {
		c, ev := final(serial)
		done <- s.InsertFinal(ctx, c, ev)
	}()
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
		for _, serial := range []string{"a1", "a2"} {
			if c, err := s.GetBySerial(ctx, serial); err != nil || c.Status != store.StatusIssued {
				t.Fatalf("%s: %+v, %v", serial, c, err)
			}
		}
		if n := countEvents(t, s, "serial IN ?", []string{"a1", "a2"}); n != 2 {
			t.Fatalf("%d events, want 2", n)
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
