package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/go-hclog"
)

// maxGroupBytes bounds the keys and values of one group transaction, so max_batch
// requests of 16 MiB each do not land in one transaction and one write-ahead log burst.
const maxGroupBytes = 64 << 20

// Request states. A request moves from queued to taken (by the writer) or to abandoned (by
// its caller, whose context ended or whose engine stopped) exactly once, so a caller that
// returns an error without waiting knows its write was never applied.
const (
	stateQueued int32 = iota
	stateTaken
	stateAbandoned
)

// wtx is the open write transaction a request's apply function works in.
type wtx struct {
	ctx context.Context
	d   *db
}

// get reads key inside the transaction, seeing the writes before it in the group.
func (t *wtx) get(ns string, key []byte) ([]byte, bool, error) {
	var v []byte
	err := t.d.wGet.QueryRowContext(t.ctx, []byte(ns), key).Scan(&v)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return nil, false, nil
	case err != nil:
		return nil, false, err
	}
	return nonNil(v), true, nil
}

// put writes key=value.
func (t *wtx) put(ns string, key, value []byte) error {
	_, err := t.d.wPut.ExecContext(t.ctx, []byte(ns), key, nonNil(value))
	return err
}

// del deletes key and tells whether it existed.
func (t *wtx) del(ns string, key []byte) (bool, error) {
	res, err := t.d.wDelete.ExecContext(t.ctx, []byte(ns), key)
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n > 0, err
}

// applyFunc performs a write inside t and reports whether it changed anything. It may run
// twice (in a group transaction that fails, then alone), so it must set its results afresh
// on every call.
type applyFunc func(t *wtx) (wrote bool, err error)

// writeReq is one write waiting for the writer goroutine.
type writeReq struct {
	ctx   context.Context
	apply applyFunc
	// size is the bytes the request adds to a transaction.
	size  int
	state atomic.Int32
	// done receives the request's outcome exactly once; buffered so the writer never
	// blocks on a caller.
	done chan error
}

// run calls apply, turning a panic into an error so a bug in one request cannot take the
// writer goroutine, and the plugin process, down.
func (r *writeReq) run(t *wtx) (wrote bool, err error) {
	defer func() {
		if p := recover(); p != nil {
			wrote, err = false, fmt.Errorf("panic in write: %v", p)
		}
	}()
	return r.apply(t)
}

// engine owns an open database and the single goroutine that writes to it.
type engine struct {
	db       *db
	set      settings
	log      hclog.Logger
	reqs     chan *writeReq
	quit     chan struct{} // closed by close: stop after draining reqs
	stopped  chan struct{} // closed by the writer when it has exited
	stopOnce sync.Once

	// commits counts committed write transactions (tests check grouping with it).
	commits atomic.Int64
	// hookCollect, if set, runs in the writer after it took a group's first request and
	// before it drains the queue; tests use it to let requests pile up. Set it before the
	// first write, it is read without synchronization.
	hookCollect func()
}

func newEngine(d *db, set settings, log hclog.Logger) *engine {
	e := &engine{
		db: d, set: set, log: log,
		reqs:    make(chan *writeReq, set.maxBatch),
		quit:    make(chan struct{}),
		stopped: make(chan struct{}),
	}
	go e.writer()
	return e
}

// write queues apply for the writer goroutine and waits until it is committed. A context
// that ends while the request is still queued withdraws it; once the writer has taken it,
// write waits for the outcome. So a context error means the write was not applied, rather
// than "maybe".
func (e *engine) write(ctx context.Context, size int, apply applyFunc) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	r := &writeReq{ctx: ctx, apply: apply, size: size, done: make(chan error, 1)}
	select {
	case e.reqs <- r:
	case <-ctx.Done():
		return ctx.Err()
	case <-e.quit:
		return errClosed
	}
	select {
	case err := <-r.done:
		return err
	case <-ctx.Done():
		if r.state.CompareAndSwap(stateQueued, stateAbandoned) {
			return ctx.Err()
		}
		return <-r.done
	case <-e.stopped:
		// The request went into the queue after the writer's last drain.
		if r.state.CompareAndSwap(stateQueued, stateAbandoned) {
			return errClosed
		}
		return <-r.done
	}
}

// writer is the engine's only writing goroutine. It takes the first queued request, adds
// whatever else is already queued without waiting for more, applies them all in one
// transaction in arrival order, commits once (one fsync of the write-ahead log), and
// answers each.
func (e *engine) writer() {
	defer close(e.stopped)
	group := make([]*writeReq, 0, e.set.maxBatch)
	for {
		var first *writeReq
		select {
		case first = <-e.reqs:
		case <-e.quit:
			// Drain: everything queued before close is still written.
			for {
				select {
				case first = <-e.reqs:
				default:
					return
				}
				group = e.collect(group[:0], first)
				e.commit(group)
				clear(group)
			}
		}
		if e.hookCollect != nil {
			e.hookCollect()
		}
		group = e.collect(group[:0], first)
		e.commit(group)
		clear(group) // drop references to answered requests
	}
}

// collect builds a group from first and the requests already queued, up to max_batch
// requests and maxGroupBytes.
func (e *engine) collect(group []*writeReq, first *writeReq) []*writeReq {
	size := 0
	add := func(r *writeReq) {
		if !r.state.CompareAndSwap(stateQueued, stateTaken) {
			return // its caller gave up while it was queued
		}
		if err := r.ctx.Err(); err != nil {
			r.done <- err
			return
		}
		group = append(group, r)
		size += r.size
	}
	add(first)
	for len(group) < e.set.maxBatch && size < maxGroupBytes {
		select {
		case r := <-e.reqs:
			add(r)
		default:
			return group
		}
	}
	return group
}

// commit applies a group in one transaction. If that transaction fails, each request is
// retried in its own, so one bad request fails alone.
func (e *engine) commit(group []*writeReq) {
	if len(group) == 0 {
		return
	}
	err := e.apply(group)
	if err == nil || len(group) == 1 {
		for _, r := range group {
			r.done <- err
		}
		return
	}
	e.log.Warn("group transaction failed, retrying its requests one by one", "requests", len(group), "error", err)
	for _, r := range group {
		r.done <- e.apply([]*writeReq{r})
	}
}

// apply runs reqs in order in one IMMEDIATE transaction, each seeing the effects of those
// before it, and commits it. A transaction in which nothing changed (a failed
// compare-and-swap, a delete of a missing key) is rolled back instead: there is nothing to
// make durable, so it costs no fsync. The requests' own contexts do not reach SQLite: a
// caller that gives up must not interrupt the others' transaction.
func (e *engine) apply(reqs []*writeReq) error {
	ctx := context.Background()
	conn := e.db.conn
	if _, err := conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		e.rollback()
		return err
	}
	t := &wtx{ctx: ctx, d: e.db}
	changed := false
	for _, r := range reqs {
		wrote, err := r.run(t)
		if err != nil {
			e.rollback()
			return err
		}
		changed = changed || wrote
	}
	if !changed {
		e.rollback()
		return nil
	}
	if _, err := conn.ExecContext(ctx, "COMMIT"); err != nil {
		// SQLite may leave the transaction open after a failed COMMIT (SQLITE_BUSY,
		// SQLITE_FULL); end it so the next group starts clean.
		e.rollback()
		return err
	}
	e.commits.Add(1)
	return nil
}

// rollback ends the open transaction, if any. SQLite rolls back by itself after some
// errors, in which case ROLLBACK reports that no transaction is active, which is fine.
func (e *engine) rollback() {
	_, _ = e.db.conn.ExecContext(context.Background(), "ROLLBACK")
}

// close stops the writer after it has written everything queued, then closes the database.
func (e *engine) close() error {
	var err error
	e.stopOnce.Do(func() {
		close(e.quit)
		<-e.stopped
		err = e.db.close()
	})
	return err
}
