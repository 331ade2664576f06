// Package groupcommit is the single-writer group commit shared by the storage backends
// whose engine allows one write transaction at a time (bbolt, SQLite): concurrent writes
// queue for one goroutine, which applies whatever is queued in one transaction and
// commits once, so N writers share one fsync instead of paying N.
package groupcommit

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
)

// ErrClosed is returned by Write after Close, unless Config.ErrClosed says otherwise.
var ErrClosed = errors.New("group commit writer closed")

// Config describes the backend's transactions. Begin, Commit and Rollback are called one
// transaction at a time: from the writer goroutine, or from the goroutine of a writer that
// commits inline (see Writer.Write).
type Config[T any] struct {
	// MaxBatch is the most requests in one transaction (at least 1).
	MaxBatch int
	// MaxBytes bounds the sizes (Write's size) of one transaction's requests together; a
	// request alone may exceed it.
	MaxBytes int
	// Begin starts a write transaction.
	Begin func() (T, error)
	// Commit makes the transaction durable.
	Commit func(T) error
	// Rollback discards it.
	Rollback func(T) error
	// MaxLinger, when positive, lets the writer wait for stragglers while writers are
	// concurrent: when fewer requests are queued than it expects (the last group's, plus
	// those that queued while it committed), it waits up to the last commit's duration (at
	// most MaxLinger) for them: at most one fsync, in exchange for sharing the next one.
	// Writers that were answered together come back a few µs apart (more through the
	// plugin boundary), so without it groups alternate between a few requests and the
	// rest, and take twice the fsyncs. A lone writer never waits.
	MaxLinger time.Duration
	// ErrClosed is what Write returns once the writer is closed; nil means ErrClosed.
	ErrClosed error
	// Log receives a warning when a group fails and its requests are retried alone.
	Log hclog.Logger
}

// Apply performs one request's write inside tx and reports whether it changed anything.
// It may run twice (in a group transaction that fails, then alone), so it must set its
// results afresh on every call.
type Apply[T any] func(tx T) (wrote bool, err error)

// Request states. A request moves from queued to taken (by the writer) or to abandoned (by
// its caller, whose context ended or whose writer stopped) exactly once, so a caller that
// returns an error without waiting knows its write was never applied.
const (
	stateQueued int32 = iota
	stateTaken
	stateAbandoned
)

// request is one write waiting for the writer goroutine.
type request[T any] struct {
	ctx   context.Context
	apply Apply[T]
	size  int
	state atomic.Int32
	// done receives the outcome exactly once; buffered so the writer never blocks.
	done chan error
}

// run calls apply, turning a panic into an error so a bug in one request cannot take the
// writer goroutine, and the plugin process, down.
func (r *request[T]) run(tx T) (wrote bool, err error) {
	defer func() {
		if p := recover(); p != nil {
			wrote, err = false, fmt.Errorf("panic in write: %v", p)
		}
	}()
	return r.apply(tx)
}

// Writer owns the single goroutine that writes.
type Writer[T any] struct {
	cfg      Config[T]
	reqs     chan *request[T]
	quit     chan struct{} // closed by Close: stop after draining reqs
	stopped  chan struct{} // closed by the writer when it has exited
	stopOnce sync.Once
	commits  atomic.Int64
	// turn is held by whoever runs a transaction: the writer goroutine, or a writer
	// committing inline (see Write). Its holder alone touches expect and lastCommit.
	turn chan struct{}
	// taken is set while the writer goroutine holds a request it took off the queue and
	// waits for its turn: a writer arriving then is not alone.
	taken atomic.Bool

	// For MaxLinger, used by the holder of turn only: how many writers the next group
	// can expect (the last group's, which come back once answered, and those that queued
	// while it committed), how long the last commit took and when it ended.
	expect     int
	lastCommit time.Duration
	lastEnd    time.Time

	// HookCollect, if set, runs in the writer after it took a group's first request and
	// before it drains the queue; tests use it to let requests pile up. Set it before the
	// first write: it is read without synchronization. While it is set, no write commits
	// inline: every one goes through the writer goroutine.
	HookCollect func()
}

// New starts a writer.
func New[T any](cfg Config[T]) *Writer[T] {
	cfg.MaxBatch = max(cfg.MaxBatch, 1)
	if cfg.ErrClosed == nil {
		cfg.ErrClosed = ErrClosed
	}
	if cfg.Log == nil {
		cfg.Log = hclog.NewNullLogger()
	}
	w := &Writer[T]{
		cfg:     cfg,
		reqs:    make(chan *request[T], cfg.MaxBatch),
		quit:    make(chan struct{}),
		stopped: make(chan struct{}),
		turn:    make(chan struct{}, 1),
	}
	go w.writer()
	return w
}

// Commits counts the committed transactions (a transaction in which nothing changed is
// rolled back and not counted).
func (w *Writer[T]) Commits() int64 { return w.commits.Load() }

// Queued is how many requests wait for the writer.
func (w *Writer[T]) Queued() int { return len(w.reqs) }

// Write queues apply for the writer goroutine and waits until it is committed; size is
// what the request adds to a transaction (its keys and values). A context that ends while
// the request is still queued withdraws it; once the writer has taken it, Write waits for
// the outcome. So a context error means the write was not applied, rather than "maybe".
func (w *Writer[T]) Write(ctx context.Context, size int, apply Apply[T]) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	r := &request[T]{ctx: ctx, apply: apply, size: size, done: make(chan error, 1)}
	if done, err := w.inline(r); done {
		return err
	}
	select {
	case w.reqs <- r:
	case <-ctx.Done():
		return ctx.Err()
	case <-w.quit:
		return w.cfg.ErrClosed
	}
	select {
	case err := <-r.done:
		return err
	case <-ctx.Done():
		if r.state.CompareAndSwap(stateQueued, stateAbandoned) {
			return ctx.Err()
		}
		return <-r.done
	case <-w.stopped:
		// The request went into the queue after the writer's last drain.
		if r.state.CompareAndSwap(stateQueued, stateAbandoned) {
			return w.cfg.ErrClosed
		}
		return <-r.done
	}
}

// inline commits r on the caller's goroutine when it is expected to be alone: no
// transaction runs, nothing is queued, and the last group was one request that nobody
// queued behind. A writer that always comes alone (behind the plugin boundary, the host
// merges concurrent writes into one call) then skips two hand-offs between goroutines,
// each a wake-up of an idle thread, at every commit; concurrent writers keep going
// through the writer goroutine, whose groups are unchanged (expect stays above one).
func (w *Writer[T]) inline(r *request[T]) (done bool, err error) {
	if w.HookCollect != nil {
		return false, nil // tests that hold the writer goroutine expect every write to reach it
	}
	select {
	case w.turn <- struct{}{}:
	default:
		return false, nil
	}
	defer func() { <-w.turn }()
	select {
	case <-w.quit:
		return false, nil
	default:
	}
	if w.expected() > 1 || len(w.reqs) > 0 || w.taken.Load() {
		return false, nil
	}
	r.state.Store(stateTaken)
	w.commit([]*request[T]{r})
	return true, <-r.done
}

// writer takes the first queued request, adds whatever else is already queued without
// waiting for more, applies them all in one transaction in arrival order, commits once,
// and answers each.
func (w *Writer[T]) writer() {
	defer close(w.stopped)
	group := make([]*request[T], 0, w.cfg.MaxBatch)
	for {
		var first *request[T]
		select {
		case first = <-w.reqs:
		case <-w.quit:
			// Drain: everything queued before Close is still written. The turn is taken
			// for good: an inline commit under way ends first, and none starts after, so
			// once Close returns no transaction runs.
			w.turn <- struct{}{}
			for {
				select {
				case first = <-w.reqs:
				default:
					return
				}
				group = w.collect(group[:0], first)
				w.commit(group)
				clear(group)
			}
		}
		if w.HookCollect != nil {
			w.HookCollect()
		}
		w.taken.Store(true)
		w.turn <- struct{}{}
		w.taken.Store(false)
		group = w.collect(group[:0], first)
		w.commit(group)
		<-w.turn
		clear(group) // drop references to answered requests
	}
}

// collect builds a group from first and the requests already queued, up to MaxBatch
// requests and MaxBytes.
func (w *Writer[T]) collect(group []*request[T], first *request[T]) []*request[T] {
	size := 0
	add := func(r *request[T]) {
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
	for len(group) < w.cfg.MaxBatch && size < w.cfg.MaxBytes {
		select {
		case r := <-w.reqs:
			add(r)
			continue
		default:
		}
		break
	}
	linger := min(w.lastCommit, w.cfg.MaxLinger)
	want := min(w.expected(), w.cfg.MaxBatch)
	if want <= 1 || len(group) >= want || linger <= 0 {
		return group
	}
	timer := time.NewTimer(linger)
	defer timer.Stop()
	for len(group) < want && size < w.cfg.MaxBytes {
		select {
		case r := <-w.reqs:
			add(r)
		case <-timer.C:
			return group
		case <-w.quit:
			return group
		}
	}
	return group
}

// expected is how many writers the next group can expect: the last group's and those
// that queued behind it, unless the writer has been idle for longer than it would linger
// for them. They come back a few µs after they are answered, if at all, so after that a
// writer is alone: it neither waits for writers that left nor misses committing inline.
// Its caller holds turn.
func (w *Writer[T]) expected() int {
	linger := min(w.lastCommit, w.cfg.MaxLinger)
	if w.expect > 1 && linger > 0 && time.Since(w.lastEnd) > linger {
		return 1
	}
	return w.expect
}

// commit applies a group in one transaction. If that transaction fails, each request is
// retried in its own, so one bad request fails alone.
func (w *Writer[T]) commit(group []*request[T]) {
	if len(group) == 0 {
		return
	}
	start := time.Now()
	err := w.apply(group)
	w.lastEnd = time.Now()
	w.lastCommit = w.lastEnd.Sub(start)
	// Counted before anyone is answered: the queue holds only writers that missed this
	// group. Expecting just the last group's size would keep them out of every group to
	// come (16 writers settle into groups of 13 through the plugin boundary, the other 3
	// always a commit behind); expecting them too brings everyone back into one group.
	w.expect = len(group) + len(w.reqs)
	if err == nil || len(group) == 1 {
		for _, r := range group {
			r.done <- err
		}
		return
	}
	w.cfg.Log.Warn("group transaction failed, retrying its requests one by one", "requests", len(group), "error", err)
	for _, r := range group {
		r.done <- w.apply([]*request[T]{r})
	}
}

// apply runs reqs in order in one transaction, each seeing the effects of those before
// it, and commits it. A transaction in which nothing changed (a failed compare-and-swap, a
// delete of a missing key) is rolled back instead: there is nothing to make durable, so it
// costs no fsync.
func (w *Writer[T]) apply(reqs []*request[T]) error {
	tx, err := w.cfg.Begin()
	if err != nil {
		return err
	}
	changed := false
	for _, r := range reqs {
		wrote, err := r.run(tx)
		if err != nil {
			_ = w.cfg.Rollback(tx)
			return err
		}
		changed = changed || wrote
	}
	if !changed {
		return w.cfg.Rollback(tx)
	}
	if err := w.cfg.Commit(tx); err != nil {
		return err
	}
	w.commits.Add(1)
	return nil
}

// Close stops the writer after it has written everything queued. It does not close the
// backend: the caller does that after Close returns.
func (w *Writer[T]) Close() {
	w.stopOnce.Do(func() {
		close(w.quit)
		<-w.stopped
	})
}
