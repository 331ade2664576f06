package storage

import (
	"context"
	"runtime"
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

// mergeQueue is one namespace's calls. One Batch is in flight at a time (busy): the calls
// that arrive meanwhile wait and go together in the next. Like the backends' group commit,
// the next round may linger, at most for as long as the last one took (and mergeMaxLinger),
// until as many calls wait as it expects: those of the last round, which come back once
// answered, and those that waited behind it. Without it, callers answered together come
// back a few µs apart and split into rounds of a few calls each.
type mergeQueue struct {
	busy    bool
	pending []*mergeCall
	expect  int           // calls the next round expects
	last    time.Duration // how long the last round's call took
	want    int           // while lingering: wake the leader once this many wait
	wake    chan struct{} // the leader's wake-up, cap 1
}

// mergeMaxLinger bounds a round's wait for the calls it expects.
const mergeMaxLinger = time.Millisecond

// mergeCall is one Put or Batch waiting to be merged.
type mergeCall struct {
	ctx   context.Context
	ops   []Op
	size  int
	state atomic.Int32
	// done receives the outcome once; errAlone means "make the call on your own".
	done chan error
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
	call := &mergeCall{ctx: ctx, ops: ops, done: make(chan error, 1)}
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
				if !v.busy {
					delete(m.qs, k)
				}
			}
		}
		q = &mergeQueue{wake: make(chan struct{}, 1)}
		m.qs[ns] = q
	}
	q.pending = append(q.pending, call)
	leader := !q.busy
	q.busy = true
	if !leader && q.want > 0 && len(q.pending) >= q.want {
		q.want = 0
		select {
		case q.wake <- struct{}{}:
		default:
		}
	}
	m.mu.Unlock()
	if leader {
		// Let the goroutines that are ready to run (typically callers answered together,
		// about to write again) join before the calls are taken.
		runtime.Gosched()
		group := c.collect(q)
		if len(group) == 1 && group[0] == call {
			// Alone: the call as it would have been made without merging.
			start := time.Now()
			err := c.send(ctx, ns, put, ops)
			c.next(ns, q, time.Since(start))
			return fromStatus(what, err)
		}
		go c.lead(ns, q, group)
	}
	select {
	case err := <-call.done:
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

// collect takes q's waiting calls for a round, lingering for the calls it expects.
func (c *Client) collect(q *mergeQueue) []*mergeCall {
	m := &c.merge
	m.mu.Lock()
	linger := min(q.last, mergeMaxLinger)
	if len(q.pending) < q.expect && linger > 0 {
		q.want = q.expect
		m.mu.Unlock()
		t := time.NewTimer(linger)
		select {
		case <-q.wake:
		case <-t.C:
		}
		t.Stop()
		m.mu.Lock()
		q.want = 0
		select { // a wake-up sent after the timer fired
		case <-q.wake:
		default:
		}
	}
	taken := q.pending
	q.pending = nil
	m.mu.Unlock()
	live := taken[:0]
	for _, t := range taken {
		if err := t.ctx.Err(); err != nil {
			// Its caller gave up: not made, as a call whose context ended before it was
			// sent is not.
			if t.state.CompareAndSwap(mergeQueued, mergeAbandoned) {
				t.done <- status.FromContextError(err).Err()
			}
			continue
		}
		if t.state.CompareAndSwap(mergeQueued, mergeTaken) {
			live = append(live, t)
		}
	}
	return live
}

// next ends a lone call's round (see endRound); the calls that queued behind it go on
// their own goroutine.
func (c *Client) next(ns string, q *mergeQueue, d time.Duration) {
	if c.endRound(q, 1, d) {
		go func() { c.lead(ns, q, c.collect(q)) }()
	}
}

// lead makes rounds until nobody waits: the calls of group as few Batches as the limits
// allow, each answered, then the calls that queued meanwhile.
func (c *Client) lead(ns string, q *mergeQueue, group []*mergeCall) {
	for {
		start := time.Now()
		c.flush(ns, group)
		if !c.endRound(q, len(group), time.Since(start)) {
			return
		}
		group = c.collect(q)
	}
}

// endRound ends a round of n calls that took d: q expects them back, with those that
// queued behind it. It tells whether calls wait for another round; when none does, q is
// no longer busy.
func (c *Client) endRound(q *mergeQueue, n int, d time.Duration) bool {
	m := &c.merge
	m.mu.Lock()
	defer m.mu.Unlock()
	q.expect, q.last = n+len(q.pending), d
	if len(q.pending) == 0 {
		q.busy = false
		return false
	}
	return true
}

// flush makes the calls of one round, as few Batches as the limits allow, and answers
// each.
func (c *Client) flush(ns string, calls []*mergeCall) {
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
			group[0].done <- errAlone
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
		for _, g := range group {
			g.done <- err
		}
	}
}

// mergedContext is the context of a merged Batch: it has no deadline unless every call
// has one, and then the latest; it is cancelled only when every call's context is.
func mergedContext(calls []*mergeCall) (context.Context, context.CancelFunc) {
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
	m := &limitv1.BatchRequest{Namespace: ns, Ops: make([]*limitv1.BatchOp, len(ops))}
	for i, op := range ops {
		opNS := op.Namespace
		if opNS == ns {
			opNS = ""
		}
		m.Ops[i] = &limitv1.BatchOp{Kind: limitv1.BatchOp_Kind(op.Kind), Key: op.Key, Value: op.Value, Namespace: opNS}
	}
	_, err := c.rpc.Batch(ctx, m)
	return err
}

// MergeWrites turns the merging of concurrent writes on (the default) or off; benchmarks
// measure both.
func (c *Client) MergeWrites(on bool) { c.merge.off.Store(!on) }

// MergeStats reports how many calls went in merged Batches, and how many Batches those
// were.
func (c *Client) MergeStats() (calls, batches int64) {
	return c.merge.merged.Load(), c.merge.batches.Load()
}
