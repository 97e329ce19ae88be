package store

import (
	"context"
	"errors"

	"gorm.io/gorm"
)

// writer is a group-commit queue: concurrent issuances hand it their small
// write transactions, and one goroutine runs as many as are waiting inside a
// single database transaction, each under its own savepoint. A commit (and
// on SQLite the single writer lock) is then shared by every request that
// arrived meanwhile, instead of paid per request; nothing is acknowledged
// before its commit, so nothing is lost.
type writer struct {
	db   *gorm.DB
	ops  chan *writeOp
	quit chan struct{}
	done chan struct{}
}

type writeOp struct {
	ctx  context.Context
	fn   func(tx *gorm.DB) error
	err  chan error
	used bool
}

const maxBatch = 128

func newWriter(db *gorm.DB) *writer {
	w := &writer{db: db, ops: make(chan *writeOp, 1024), quit: make(chan struct{}), done: make(chan struct{})}
	go w.loop()
	return w
}

var errClosed = errors.New("store is closed")

// do runs fn in a batch and waits for its commit.
func (w *writer) do(ctx context.Context, fn func(tx *gorm.DB) error) error {
	op := &writeOp{ctx: ctx, fn: fn, err: make(chan error, 1)}
	select {
	case w.ops <- op:
	case <-w.quit:
		return errClosed
	case <-ctx.Done():
		return ctx.Err()
	}
	// Once queued, the outcome is awaited even if ctx ends: the write may
	// already be committed, and the caller must know.
	return <-op.err
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
			batch = append(batch[:0], op)
		}
	fill:
		for len(batch) < maxBatch {
			select {
			case op := <-w.ops:
				batch = append(batch, op)
			default:
				break fill
			}
		}
		w.run(batch)
	}
}

func (w *writer) run(batch []*writeOp) {
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
		for _, op := range batch {
			if err := op.fn(tx); err != nil {
				return err
			}
		}
		return nil
	})
	if err == nil {
		for _, op := range batch {
			op.err <- nil
		}
		return
	}
	for _, op := range batch {
		op.err <- w.db.WithContext(context.WithoutCancel(op.ctx)).Transaction(op.fn)
	}
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
