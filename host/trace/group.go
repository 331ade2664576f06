package trace

import (
	"context"
	"sync"

	"github.com/limitgraph/limit/sdk/storage"
)

// groupWriter combines concurrent batches to one namespace into a single storage Batch: the
// first writer to arrive writes at once, and those that arrive while its call is in flight
// are written together by the next one. Creates from many clients thus cost the storage
// plugin one call per round instead of one each, with no added wait when there is no
// concurrency. A combined batch is atomic as a whole, so each writer's ops are applied
// entirely or not at all, as with a batch of its own; when it fails, every writer in it gets
// the error.
type groupWriter struct {
	st storage.Storage
	mu sync.Mutex
	qs map[string]*groupQueue
}

// groupQueue holds the writers waiting on one namespace.
type groupQueue struct {
	// busy tells that a leader is writing; pending are the writers it has not taken yet.
	busy    bool
	pending []*groupReq
}

type groupReq struct {
	ops  []storage.Op
	size int
	// lead is closed to make this writer the next leader; done receives the outcome.
	lead chan struct{}
	done chan error
}

// write applies ops to namespace ns atomically, possibly in one storage Batch with the ops
// of concurrent writers. It returns once they are durable or have failed.
func (g *groupWriter) write(ctx context.Context, ns string, ops []storage.Op) error {
	// A writer's invalid batch must fail alone, not the group it would join.
	if err := storage.ValidateBatch(ns, ops); err != nil {
		return err
	}
	size := 0
	for _, op := range ops {
		size += len(op.Key) + len(op.Value)
	}
	req := &groupReq{ops: ops, size: size, lead: make(chan struct{}), done: make(chan error, 1)}
	g.mu.Lock()
	if g.qs == nil {
		g.qs = map[string]*groupQueue{}
	}
	q := g.qs[ns]
	if q == nil {
		q = &groupQueue{}
		g.qs[ns] = q
	}
	q.pending = append(q.pending, req)
	leader := !q.busy
	q.busy = true
	g.mu.Unlock()
	if !leader {
		select {
		case err := <-req.done:
			return err
		case <-req.lead:
		}
	}
	g.flush(ctx, ns, q)
	return <-req.done
}

// flush writes the pending batches of q (the leader's own first) as one storage Batch within
// the protocol's limits, then hands the lead to the next waiting writer, if any.
func (g *groupWriter) flush(ctx context.Context, ns string, q *groupQueue) {
	g.mu.Lock()
	var group []*groupReq
	ops, size := 0, 0
	for _, r := range q.pending {
		if len(group) > 0 && (ops+len(r.ops) > storage.MaxBatchOps || size+r.size > storage.MaxBatchBytes) {
			break
		}
		group = append(group, r)
		ops += len(r.ops)
		size += r.size
	}
	q.pending = q.pending[len(group):]
	g.mu.Unlock()

	all := make([]storage.Op, 0, ops)
	for _, r := range group {
		all = append(all, r.ops...)
	}
	// The batch carries other writers' ops too: the leader giving up must not cancel them.
	err := g.st.Batch(context.WithoutCancel(ctx), ns, all)
	for _, r := range group {
		r.done <- err
	}

	g.mu.Lock()
	if len(q.pending) > 0 {
		close(q.pending[0].lead)
	} else {
		q.busy = false
		delete(g.qs, ns)
	}
	g.mu.Unlock()
}
