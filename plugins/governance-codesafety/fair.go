package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
)

// errTooManyWaiting is returned when a session already has as many analyses waiting for
// an analyzer as it may.
var errTooManyWaiting = errors.New("too many code analyses waiting")

// fairSlots shares a fixed number of slots (analyzer processes) between sessions.
//
// A free slot is taken at once. When none is free, callers wait, and each slot given
// back goes to a waiter of the session that holds the fewest slots at that moment; among
// sessions holding equally few, to the one granted a slot least recently (round robin),
// and within a session to its oldest waiter. How many requests a session has queued does
// not count, so a session flooding the rule with slow analyses delays another session's
// request by at most one analysis, not by its whole queue. Each session may have at most
// maxWaiting requests waiting; more are refused at once with errTooManyWaiting.
//
// Invariant: free > 0 only when nobody waits (release hands a slot straight to a waiter).
type fairSlots struct {
	maxWaiting int

	mu   sync.Mutex
	free int
	// sessions holds every session that holds a slot or waits for one; an entry is
	// dropped when it does neither, so the map stays as small as the current load.
	sessions map[string]*fairSession
	// waiting counts waiters over all sessions; 0 lets release skip the search.
	waiting int
	// grants numbers grants, for the round-robin order among equal sessions.
	grants uint64
	// arrivals numbers waiters, for the oldest-first order.
	arrivals uint64
}

// fairSession is one session's share: the empty session id is a session of its own.
type fairSession struct {
	held      int
	queue     []*fairWaiter // oldest first
	lastGrant uint64        // value of grants at this session's latest grant; 0: never
}

// fairWaiter is one request waiting for a slot.
type fairWaiter struct {
	// ready is closed when the slot is granted; granted is set (under mu) at the same time.
	ready   chan struct{}
	granted bool
	seq     uint64 // arrival order
}

// newFairSlots returns a scheduler of size slots allowing maxWaiting waiters per session.
func newFairSlots(size, maxWaiting int) *fairSlots {
	return &fairSlots{maxWaiting: maxWaiting, free: size, sessions: map[string]*fairSession{}}
}

// acquire takes a slot for session, waiting while ctx allows. On success the caller
// must call release with the same session exactly once.
func (f *fairSlots) acquire(ctx context.Context, session string) error {
	f.mu.Lock()
	s := f.sessions[session]
	if f.free > 0 {
		// Uncontended: nobody waits (see the invariant), so take it without queueing.
		f.free--
		if s == nil {
			s = &fairSession{}
			f.sessions[session] = s
		}
		f.grantLocked(s)
		f.mu.Unlock()
		return nil
	}
	if s == nil {
		if f.maxWaiting < 1 {
			f.mu.Unlock()
			return f.tooMany()
		}
		s = &fairSession{}
		f.sessions[session] = s
	} else if len(s.queue) >= f.maxWaiting {
		f.mu.Unlock()
		return f.tooMany()
	}
	f.arrivals++
	w := &fairWaiter{ready: make(chan struct{}), seq: f.arrivals}
	s.queue = append(s.queue, w)
	f.waiting++
	f.mu.Unlock()

	select {
	case <-w.ready:
		return nil
	case <-ctx.Done():
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if w.granted {
		// Granted while being cancelled: the slot is ours, so pass it on rather than leak it.
		f.releaseLocked(session)
		return ctx.Err()
	}
	if i := slices.Index(s.queue, w); i >= 0 {
		s.queue = slices.Delete(s.queue, i, i+1)
	}
	f.waiting--
	f.dropIfIdleLocked(session, s)
	return ctx.Err()
}

// release gives back a slot session acquired.
func (f *fairSlots) release(session string) {
	f.mu.Lock()
	f.releaseLocked(session)
	f.mu.Unlock()
}

func (f *fairSlots) releaseLocked(session string) {
	s := f.sessions[session]
	if s == nil || s.held == 0 {
		panic("codesafety: release of a slot that was not acquired") // a bug in this package
	}
	s.held--
	f.dropIfIdleLocked(session, s)
	if f.waiting == 0 {
		f.free++
		return
	}
	// Pick the waiting session holding the fewest slots, then the one served least
	// recently. A linear scan: the sessions waiting are few (each queue is bounded and
	// the host bounds concurrent evaluations), and it keeps the policy easy to read.
	var next *fairSession
	for _, c := range f.sessions {
		if len(c.queue) == 0 {
			continue
		}
		if next == nil || c.before(next) {
			next = c
		}
	}
	w := next.queue[0]
	next.queue[0] = nil
	next.queue = next.queue[1:]
	f.waiting--
	f.grantLocked(next)
	w.granted = true
	close(w.ready)
}

// before reports whether waiting session s is served before waiting session o: it holds
// fewer slots, or as many and was granted one less recently (round robin), or neither
// was granted one since it last went idle and its oldest waiter came first.
func (s *fairSession) before(o *fairSession) bool {
	if s.held != o.held {
		return s.held < o.held
	}
	if s.lastGrant != o.lastGrant {
		return s.lastGrant < o.lastGrant
	}
	return s.queue[0].seq < o.queue[0].seq
}

// tooMany is the error for a session over its waiting bound.
func (f *fairSlots) tooMany() error {
	return fmt.Errorf("%w: this session already has %d code analyses waiting for an analyzer, the most max_waiting_per_session allows; wait for them to finish before sending more code", errTooManyWaiting, f.maxWaiting)
}

// grantLocked records one more slot held by s.
func (f *fairSlots) grantLocked(s *fairSession) {
	f.grants++
	s.held++
	s.lastGrant = f.grants
}

// dropIfIdleLocked forgets s when it neither holds nor waits for a slot.
func (f *fairSlots) dropIfIdleLocked(session string, s *fairSession) {
	if s.held == 0 && len(s.queue) == 0 {
		delete(f.sessions, session)
	}
}

// fairStats is a snapshot of one session's share, for tests and logs.
type fairStats struct {
	Held, Waiting int
}

// stats returns the share of session and the number of free slots.
func (f *fairSlots) stats(session string) (fairStats, int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var st fairStats
	if s := f.sessions[session]; s != nil {
		st = fairStats{Held: s.held, Waiting: len(s.queue)}
	}
	return st, f.free
}
