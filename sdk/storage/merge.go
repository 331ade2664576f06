package storage

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	limitv1 "github.com/limitgraph/limit/proto/limit/v1"
)

// Writes that callers make concurrently through one Client are merged: the Puts and the
// unconditional Batches to one namespace that are waiting at the same moment cross the
// plugin boundary as one Batch. A call across the boundary costs the host and the plugin
// each tens of µs of CPU (a frame, a goroutine, wake-ups) and a trip's latency, while the
// backend's own group commit shares one fsync among them anyway; so without merging,
// concurrent durable writes through a plugin were bound by the boundary, not by the disk.
//
// Merging keeps each call's meaning. A Batch applies its ops in order and atomically
// (conformance), so the merged calls are applied as if one after the other, in the order
// they arrived, and all at once; each caller is answered only once the merged Batch is
// durable. A merged Batch that fails for a reason that may be one call's (an invalid op the
// plugin refuses, a size the plugin will not take, a full disk) has applied nothing, so
// each of its calls is made again on its own, and only the culprit fails. A failure of the
// connection or the plugin (unavailable, deadline, cancelled) reaches every call, as it
// would have reached each. A call alone is made exactly as without merging.
//
// Calls whose outcome depends on the state before them (CompareAndSwap, Delete's
// existed, a Batch with assertions) or that name other namespaces are never merged.
const (
	// mergeMaxBytes bounds the keys and values of one merged Batch; a call larger than it
	// goes alone.
	mergeMaxBytes = 4 << 20
	// mergeMaxOps bounds its ops.
	mergeMaxOps = MaxBatchOps
	// mergeMaxIdle is how many namespaces' queues are kept before the idle ones are
	// dropped.
	mergeMaxIdle = 1024
)

// States of a waiting call: it moves from queued to taken (by a flush) or to abandoned (by
// its caller, whose context ended) exactly once, so a caller that gives up before its call
// was taken knows it was never made.
const (
	mergeQueued int32 = iota
	mergeTaken
	mergeAbandoned
)

// merger holds the calls waiting to be merged, per namespace.
type merger struct {
	mu sync.Mutex
	qs map[string]*mergeQueue
	// off disables merging (benchmarks compare both).
	off atomic.Bool
	// merged counts the calls that went in a merged Batch, batches the merged Batches.
	merged, batches atomic.Int64
}

// mergeQueue is one namespace's calls. One round (the calls taken together, made as one
// Batch unless the limits split it) is in flight at a time: the calls that arrive meanwhile
// wait and go together in the next. Like the backends' group commit, the next round may
// linger, at most for as long as the last one took (and mergeMaxLinger), until as many calls
// wait as it expects: those of the last round, which come back once answered, and those
// that waited behind it. Without it, callers answered together come back a few µs apart and
// split into rounds of a few calls each. A call that finds the queue idle for longer than
// that linger is alone and never waits: the last round's callers would have been back. The
// call that completes a lingering round makes it on its own goroutine (see write), so a
// round costs no hand-off to a leader.
type mergeQueue struct {
	inflight bool // a round is being made
	pending  []*mergeCall
	expect   int           // calls the next round expects
	last     time.Duration // how long the last round's calls took
	ended    time.Time     // when the last round ended
	// While a round lingers: it is made once want calls wait, or by timer when its linger
	// ends; gen tells a timer that fires after its round was made that it is stale.
	want  int
	timer *time.Timer
	gen   uint64
	// ready is the channel of the calls waiting now, closed once their round is answered:
	// one broadcast wakes them all, each then reading its own outcome.
	ready chan struct{}
}

// mergeMaxLinger bounds a round's wait for the calls it expects.
const mergeMaxLinger = time.Millisecond

// mergeCall is one Put or Batch waiting to be merged.
type mergeCall struct {
	ctx   context.Context
	ops   []Op
	size  int
	state atomic.Int32
	// ready is closed once err holds the outcome (the channel of the call's round, shared
	// with the calls taken with it); errAlone means "make the call on your own".
	ready chan struct{}
	err   error
}

// errAlone tells a merged call that its Batch failed in a way that may be its own.
var errAlone = status.Error(codes.Aborted, "merged write failed; made again alone")

// write makes a Put (put true, one op) or an unconditional Batch of ops in ns through c,
// merged with the other calls waiting at the same time.
func (c *Client) write(ctx context.Context, ns string, put bool, ops []Op) error {
	what := "batch"
	if put {
		what = "put"
	}
	if err := ctx.Err(); err != nil {
		return fromStatus(what, status.FromContextError(err).Err())
	}
	m := &c.merge
	if m.off.Load() {
		return fromStatus(what, c.send(ctx, ns, put, ops))
	}
	call := &mergeCall{ctx: ctx, ops: ops}
	for _, op := range ops {
		call.size += len(op.Key) + len(op.Value)
	}
	if call.size > mergeMaxBytes || len(ops) > mergeMaxOps {
		return fromStatus(what, c.send(ctx, ns, put, ops))
	}
	m.mu.Lock()
	if m.qs == nil {
		m.qs = map[string]*mergeQueue{}
	}
	q := m.qs[ns]
	if q == nil {
		if len(m.qs) >= mergeMaxIdle {
			// Forget the idle namespaces (and what their rounds were like) rather than
			// keep one entry for every namespace ever written.
			for k, v := range m.qs {
				if !v.inflight && len(v.pending) == 0 {
					delete(m.qs, k)
				}
			}
		}
		q = &mergeQueue{}
		m.qs[ns] = q
	}
	if q.ready == nil {
		q.ready = make(chan struct{})
	}
	call.ready = q.ready
	q.pending = append(q.pending, call)
	var taken []*mergeCall
	switch {
	case q.inflight:
		// Taken when the round in flight ends.
	case q.want > 0:
		if len(q.pending) >= q.want {
			taken = q.take()
		}
	default:
		// The calls a round expects come back a few µs after it ended, if at all: once
		// longer than the linger has passed, the queue is idle and a call is alone, so it
		// is made at once rather than wait for writers that left.
		if linger := min(q.last, mergeMaxLinger); len(q.pending) >= q.expect || linger <= 0 || time.Since(q.ended) > linger {
			taken = q.take()
		} else {
			c.linger(ns, q, linger)
		}
	}
	m.mu.Unlock()
	if taken != nil {
		group := c.live(taken)
		switch {
		case len(group) == 1 && group[0] == call:
			// Alone: the call as it would have been made without merging.
			start := time.Now()
			err := c.send(ctx, ns, put, ops)
			m.mu.Lock()
			behind := len(q.pending)
			m.mu.Unlock()
			close(call.ready) // for the abandoned calls taken with it, if any
			c.endRound(ns, q, 1+behind, time.Since(start))
			return fromStatus(what, err)
		case ctx.Done() == nil:
			// This caller completed the round and makes it: it waits for the round's
			// outcome anyway, and nothing can end its wait sooner.
			c.round(ns, q, group, call.ready)
		default:
			// A caller whose context may end does not wait for others' writes.
			go c.round(ns, q, group, call.ready)
		}
	}
	select {
	case <-call.ready:
		err := call.err
		if err == errAlone {
			return fromStatus(what, c.send(ctx, ns, put, ops))
		}
		return fromStatus(what, err)
	case <-ctx.Done():
		// Never made if still queued (abandoned here); else made or not, as a cancelled
		// call over the wire would be.
		call.state.CompareAndSwap(mergeQueued, mergeAbandoned)
		return fromStatus(what, status.FromContextError(ctx.Err()).Err())
	}
}

// take takes q's waiting calls for a round, which is then in flight: at least one, all
// waiting on the same channel (ready). The caller holds the merger's lock.
func (q *mergeQueue) take() []*mergeCall {
	taken := q.pending
	q.pending, q.ready, q.want, q.inflight = nil, nil, 0, true
	if q.timer != nil {
		q.timer.Stop()
		q.timer = nil
	}
	return taken
}

// linger lets q's next round wait up to d for the calls it expects; the call that
// completes it makes it, or the timer when d ends. The caller holds the merger's lock.
func (c *Client) linger(ns string, q *mergeQueue, d time.Duration) {
	q.want = q.expect
	q.gen++
	gen := q.gen
	q.timer = time.AfterFunc(d, func() {
		m := &c.merge
		m.mu.Lock()
		if q.gen != gen || q.want == 0 || q.inflight {
			m.mu.Unlock()
			return // made already
		}
		taken := q.take()
		m.mu.Unlock()
		ready := taken[0].ready
		c.round(ns, q, c.live(taken), ready)
	})
}

// live keeps the taken calls whose callers still wait; the others are told they were not
// made.
func (c *Client) live(taken []*mergeCall) []*mergeCall {
	live := taken[:0]
	for _, t := range taken {
		if err := t.ctx.Err(); err != nil {
			// Its caller gave up: not made, as a call whose context ended before it was
			// sent is not.
			if t.state.CompareAndSwap(mergeQueued, mergeAbandoned) {
				t.err = status.FromContextError(err).Err()
			}
			continue
		}
		if t.state.CompareAndSwap(mergeQueued, mergeTaken) {
			live = append(live, t)
		}
	}
	return live
}

// round makes the calls of group, in flight in q, answers them (closing ready, the
// channel they wait on) and ends the round.
func (c *Client) round(ns string, q *mergeQueue, group []*mergeCall, ready chan struct{}) {
	start := time.Now()
	behind := 0
	c.flush(ns, group, ready, func() {
		// Before the calls are answered (some come back at once): how many queued behind.
		c.merge.mu.Lock()
		behind = len(q.pending)
		c.merge.mu.Unlock()
	})
	c.endRound(ns, q, len(group)+behind, time.Since(start))
}

// endRound ends the round in flight in q, which took d: the next expects n calls (the
// round's, which come back once answered, and those that queued behind it). The calls
// waiting are made at once if they are as many (on a new goroutine, so that a caller that
// made the round returns), else they linger.
func (c *Client) endRound(ns string, q *mergeQueue, n int, d time.Duration) {
	m := &c.merge
	m.mu.Lock()
	q.expect, q.last, q.ended, q.inflight = n, d, time.Now(), false
	if len(q.pending) == 0 {
		m.mu.Unlock()
		return
	}
	if linger := min(d, mergeMaxLinger); len(q.pending) < q.expect && linger > 0 {
		c.linger(ns, q, linger)
		m.mu.Unlock()
		return
	}
	taken := q.take()
	m.mu.Unlock()
	ready := taken[0].ready
	go c.round(ns, q, c.live(taken), ready)
}

// flush makes the calls of one round, as few Batches as the limits allow, and once all are
// made calls made, then answers them all at once: each call's outcome set, ready closed.
func (c *Client) flush(ns string, calls []*mergeCall, ready chan struct{}, made func()) {
	type answer struct {
		group []*mergeCall
		err   error
	}
	var answers []answer
	for len(calls) > 0 {
		n, size, nops := 0, 0, 0
		for n < len(calls) && (n == 0 || (size+calls[n].size <= mergeMaxBytes && nops+len(calls[n].ops) <= mergeMaxOps)) {
			size += calls[n].size
			nops += len(calls[n].ops)
			n++
		}
		group := calls[:n]
		calls = calls[n:]
		if len(group) == 1 {
			answers = append(answers, answer{group, errAlone})
			continue
		}
		ops := make([]Op, 0, nops)
		for _, g := range group {
			ops = append(ops, g.ops...)
		}
		ctx, cancel := mergedContext(group)
		err := c.send(ctx, ns, false, ops)
		cancel()
		c.merge.merged.Add(int64(len(group)))
		c.merge.batches.Add(1)
		switch status.Code(err) {
		case codes.OK, codes.Unavailable, codes.DeadlineExceeded, codes.Canceled:
		default:
			err = errAlone // nothing was applied; each call finds out whether it was at fault
		}
		answers = append(answers, answer{group, err})
	}
	made()
	for _, a := range answers {
		for _, g := range a.group {
			g.err = a.err
		}
	}
	close(ready)
}

// mergedContext is the context of a merged Batch: it has no deadline unless every call
// has one, and then the latest; it is cancelled only when every call's context is.
func mergedContext(calls []*mergeCall) (context.Context, context.CancelFunc) {
	for _, c := range calls {
		if c.ctx.Done() == nil {
			// A call whose context never ends (nor has a deadline): neither does the merged
			// one, and nothing need watch the others. The host's trace writes are such.
			return context.Background(), func() {}
		}
	}
	var latest time.Time
	for _, c := range calls {
		d, ok := c.ctx.Deadline()
		if !ok {
			latest = time.Time{}
			break
		}
		if d.After(latest) {
			latest = d
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	if !latest.IsZero() {
		ctx, cancel = context.WithDeadline(context.Background(), latest)
	}
	var left atomic.Int32
	left.Store(int32(len(calls)))
	stops := make([]func() bool, len(calls))
	for i, c := range calls {
		stops[i] = context.AfterFunc(c.ctx, func() {
			if left.Add(-1) == 0 {
				cancel()
			}
		})
	}
	return ctx, func() {
		for _, stop := range stops {
			stop()
		}
		cancel()
	}
}

// send makes one Put or Batch call over the client's transport.
func (c *Client) send(ctx context.Context, ns string, put bool, ops []Op) error {
	if put {
		_, err := c.rpc.Put(ctx, &limitv1.PutRequest{Namespace: ns, Key: ops[0].Key, Value: ops[0].Value})
		return err
	}
	if f, ok := c.rpc.(*fastClient); ok {
		return f.batchOps(ctx, ns, ops)
	}
	_, err := c.rpc.Batch(ctx, batchRequest(ns, ops))
	return err
}

// batchRequest is the BatchRequest of ops in ns.
func batchRequest(ns string, ops []Op) *limitv1.BatchRequest {
	m := &limitv1.BatchRequest{Namespace: ns, Ops: make([]*limitv1.BatchOp, len(ops))}
	for i, op := range ops {
		m.Ops[i] = &limitv1.BatchOp{Kind: limitv1.BatchOp_Kind(op.Kind), Key: op.Key, Value: op.Value, Namespace: opNamespace(ns, op)}
	}
	return m
}

// MergeWrites turns the merging of concurrent writes on (the default) or off; benchmarks
// measure both.
func (c *Client) MergeWrites(on bool) { c.merge.off.Store(!on) }

// MergeStats reports how many calls went in merged Batches, and how many Batches those
// were.
func (c *Client) MergeStats() (calls, batches int64) {
	return c.merge.merged.Load(), c.merge.batches.Load()
}
