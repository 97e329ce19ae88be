package store

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"gorm.io/gorm"
)

// writer is a group-commit queue: concurrent issuances hand it their small
// write transactions, and one goroutine runs as many as are waiting inside a
// single database transaction. A commit (and on SQLite the single writer
// lock) is then shared by every request that arrived meanwhile, instead of
// paid per request; nothing is acknowledged before its commit, so nothing is
// lost.
//
// A batch is also held open briefly while writes are announced (ExpectWrite):
// under load the requests behind the first one are still signing, a fraction
// of a millisecond from their write, and one commit for all of them costs far
// less than one each (on SQLite a commit writes every dirty page to the WAL).
// With nothing announced — a lone request — nothing waits.
type writer struct {
	db     *gorm.DB
	ops    chan *writeOp
	quit   chan struct{}
	done   chan struct{}
	linger time.Duration // how long a batch waits for announced writes at most
	// oneStatement: a batch of issued rows only is written as one atomic
	// statement without BEGIN/COMMIT (PostgreSQL: one round trip, not four).
	oneStatement bool

	coming atomic.Int64  // writes announced and neither taken by the writer nor withdrawn
	wake   chan struct{} // an announced write was queued or withdrawn

	batches atomic.Int64 // transactions run (a failed batch's retries included), for tests and metrics
	writes  atomic.Int64 // writes run
}

type writeOp struct {
	ctx context.Context
	fn  func(tx *gorm.DB) error
	err chan error
	a   *announcement // the write the caller announced, if any
	// final, when set, is the same write as fn in a form a batch can merge
	// with others into one multi-row INSERT; fn alone is used when the op
	// runs by itself.
	final *finalWrite
}

const maxBatch = 128

func newWriter(db *gorm.DB, linger time.Duration, oneStatement bool) *writer {
	w := &writer{db: db, ops: make(chan *writeOp, 1024), quit: make(chan struct{}), done: make(chan struct{}),
		linger: linger, wake: make(chan struct{}, 1), oneStatement: oneStatement}
	go w.loop()
	return w
}

var errClosed = errors.New("store is closed")

// announcement is one expected write, carried in the context of the request
// that will make it.
type announcement struct {
	w    *writer
	once atomic.Bool
}

type announcementKey struct{}

// withdraw is idempotent: the write was queued, or will never come.
func (a *announcement) withdraw() {
	if a.settle() {
		select {
		case a.w.wake <- struct{}{}:
		default:
		}
	}
}

// settle removes the announcement from the count once; the writer calls it
// on taking the op, so a batch never waits for a write it already holds.
func (a *announcement) settle() bool {
	if a != nil && a.once.CompareAndSwap(false, true) {
		a.w.coming.Add(-1)
		return true
	}
	return false
}

func (w *writer) announce(ctx context.Context) (context.Context, func()) {
	a := &announcement{w: w}
	w.coming.Add(1)
	return context.WithValue(ctx, announcementKey{}, a), a.withdraw
}

// do runs fn in a batch and waits for its commit.
func (w *writer) do(ctx context.Context, fn func(tx *gorm.DB) error) error {
	return w.doOp(ctx, &writeOp{fn: fn})
}

// doOp queues op (fn, and final when it is a final-row insert) and waits for
// its commit.
func (w *writer) doOp(ctx context.Context, op *writeOp) error {
	a, _ := ctx.Value(announcementKey{}).(*announcement)
	if a != nil && a.w != w {
		a = nil
	}
	op.ctx, op.err, op.a = ctx, make(chan error, 1), a
	select {
	case w.ops <- op:
	case <-w.quit:
		return errClosed
	case <-ctx.Done():
		return ctx.Err()
	}
	// Withdrawn only once queued (if the writer has not already taken it),
	// so a lingering batch sees the op before it sees the count drop.
	if a != nil {
		a.withdraw()
	}
	// Once queued, the outcome is awaited even if ctx ends: the write may
	// already be committed, and the caller must know. Once the writer has
	// stopped, every op it took has its answer; one still unanswered was
	// queued after the last drain and will never run.
	select {
	case err := <-op.err:
		return err
	case <-w.done:
		select {
		case err := <-op.err:
			return err
		default:
			return errClosed
		}
	}
}

func (w *writer) loop() {
	defer close(w.done)
	batch := make([]*writeOp, 0, maxBatch)
	for {
		select {
		case <-w.quit:
			w.drainClosed()
			return
		case op := <-w.ops:
			op.a.settle()
			batch = append(batch[:0], op)
		}
		batch = w.hold(w.fill(batch))
		w.writes.Add(int64(len(batch)))
		w.run(batch)
	}
}

// hold keeps the batch open while announced writes are on their way, up to
// the linger; it returns as soon as none is left to wait for.
func (w *writer) hold(batch []*writeOp) []*writeOp {
	if w.linger <= 0 || w.coming.Load() <= 0 || len(batch) >= maxBatch {
		return batch
	}
	t := time.NewTimer(w.linger)
	defer t.Stop()
	for len(batch) < maxBatch && w.coming.Load() > 0 {
		select {
		case op := <-w.ops:
			op.a.settle()
			batch = append(batch, op)
		case <-w.wake:
		case <-t.C:
			return w.fill(batch)
		case <-w.quit:
			return w.fill(batch)
		}
	}
	// An op queued together with its wake-up may still sit in the channel
	// (select picks at random): take it along rather than leave it for a
	// commit of its own.
	return w.fill(batch)
}

// fill takes every op already queued, up to maxBatch.
func (w *writer) fill(batch []*writeOp) []*writeOp {
	for len(batch) < maxBatch {
		select {
		case op := <-w.ops:
			op.a.settle()
			batch = append(batch, op)
		default:
			return batch
		}
	}
	return batch
}

func (w *writer) run(batch []*writeOp) {
	w.batches.Add(1)
	if w.oneStatement && allFinal(batch) {
		finals := make([]*finalWrite, len(batch))
		for i, op := range batch {
			finals[i] = op.final
		}
		err := insertFinalsOneStatement(w.db.WithContext(context.WithoutCancel(batch[0].ctx)), finals)
		if err == nil || len(batch) == 1 {
			for _, op := range batch {
				op.err <- err
			}
			return
		}
		w.runAlone(batch)
		return
	}
	if len(batch) == 1 {
		op := batch[0]
		op.err <- w.db.WithContext(context.WithoutCancel(op.ctx)).Transaction(op.fn)
		return
	}
	// All ops in one transaction, without savepoints (which cost SQLite a
	// sub-journal write per op). If any op fails — a unique violation, a row
	// no longer pending — the whole batch rolls back and each op runs again
	// alone, so one op's failure never touches another's outcome.
	err := w.db.Transaction(func(tx *gorm.DB) error {
		var finals []*finalWrite
		for _, op := range batch {
			if op.final != nil {
				finals = append(finals, op.final)
				continue
			}
			if err := op.fn(tx); err != nil {
				return err
			}
		}
		if len(finals) > 0 {
			return insertFinals(tx, finals)
		}
		return nil
	})
	if err == nil {
		for _, op := range batch {
			op.err <- nil
		}
		return
	}
	w.runAlone(batch)
}

// runAlone runs each op in a transaction of its own, after a batch failed.
func (w *writer) runAlone(batch []*writeOp) {
	w.batches.Add(int64(len(batch)))
	for _, op := range batch {
		op.err <- w.db.WithContext(context.WithoutCancel(op.ctx)).Transaction(op.fn)
	}
}

func allFinal(batch []*writeOp) bool {
	for _, op := range batch {
		if op.final == nil {
			return false
		}
	}
	return true
}

func (w *writer) drainClosed() {
	for {
		select {
		case op := <-w.ops:
			op.err <- errClosed
		default:
			return
		}
	}
}

func (w *writer) close() {
	close(w.quit)
	<-w.done
}
