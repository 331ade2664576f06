package trace

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"sync"

	"github.com/limitgraph/limit/sdk/storage"
)

// groupWriter combines concurrent batches to one namespace into a single storage Batch: the
// first writer to arrive writes at once, and those that arrive while its call is in flight
// are written together by the next one. Writers from many clients thus cost the storage
// plugin one call (one durable write) per round instead of one each, with no added wait when
// there is no concurrency.
//
// A combined batch is atomic as a whole, so each writer's ops are applied entirely or not at
// all, as with a batch of its own. Conditional batches (with storage.OpAssertAbsent or
// storage.OpAssertValue) keep their meaning too:
//   - a writer whose assertion reads a key that an earlier writer of the round writes is left
//     for the next round, since the storage checks assertions against the state before the
//     whole batch, not before that writer's ops;
//   - when an assertion fails, only its writer gets the *storage.ConditionError (with Op
//     counted within its own ops), and the others are written again without it. A backend
//     that does not say which assertion failed makes every writer of the round write alone.
//
// Any other failure reaches every writer of the round.
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
	// asserts are the keys the writer's assertions read.
	asserts [][]byte
	// lead is closed to make this writer the next leader; done receives the outcome.
	lead chan struct{}
	done chan error
}

// write applies ops to namespace ns atomically, possibly in one storage Batch with the ops
// of concurrent writers. It returns once they are durable or have failed; a failed
// assertion is reported as by storage.Storage.Batch.
func (g *groupWriter) write(ctx context.Context, ns string, ops []storage.Op) error {
	// A writer's invalid batch must fail alone, not the group it would join.
	if err := storage.ValidateBatch(ns, ops); err != nil {
		return err
	}
	req := &groupReq{ops: ops, lead: make(chan struct{}), done: make(chan error, 1)}
	for _, op := range ops {
		req.size += len(op.Key) + len(op.Value)
		if op.IsAssertion() {
			req.asserts = append(req.asserts, op.Key)
		}
	}
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
	var written map[string]struct{} // keys written by the group so far, once someone asserts
	for _, r := range q.pending {
		if len(group) > 0 && (ops+len(r.ops) > storage.MaxBatchOps || size+r.size > storage.MaxBatchBytes) {
			break
		}
		if len(r.asserts) > 0 && len(group) > 0 {
			if written == nil {
				written = map[string]struct{}{}
				for _, w := range group {
					w.addWrites(written)
				}
			}
			if r.readsAny(written) {
				break // keep the order: r and everyone after it go in the next round
			}
		}
		group = append(group, r)
		if written != nil {
			r.addWrites(written)
		}
		ops += len(r.ops)
		size += r.size
	}
	q.pending = q.pending[len(group):]
	g.mu.Unlock()

	// The batch carries other writers' ops too: the leader giving up must not cancel them.
	g.commit(context.WithoutCancel(ctx), ns, group)

	g.mu.Lock()
	if len(q.pending) > 0 {
		close(q.pending[0].lead)
	} else {
		q.busy = false
		delete(g.qs, ns)
	}
	g.mu.Unlock()
}

// addWrites adds the keys r writes to set.
func (r *groupReq) addWrites(set map[string]struct{}) {
	for _, op := range r.ops {
		if !op.IsAssertion() {
			set[string(op.Key)] = struct{}{}
		}
	}
}

// readsAny tells whether one of r's assertions reads a key in set.
func (r *groupReq) readsAny(set map[string]struct{}) bool {
	for _, k := range r.asserts {
		if _, ok := set[string(k)]; ok {
			return true
		}
	}
	return false
}

// commit writes the ops of group in one batch and tells every writer its outcome. A failed
// assertion fails its own writer only; the others are written again without it.
func (g *groupWriter) commit(ctx context.Context, ns string, group []*groupReq) {
	for len(group) > 0 {
		all := group[0].ops
		if len(group) > 1 {
			n := 0
			for _, r := range group {
				n += len(r.ops)
			}
			all = make([]storage.Op, 0, n)
			for _, r := range group {
				all = append(all, r.ops...)
			}
		}
		err := g.st.Batch(ctx, ns, all)
		if err == nil || len(group) == 1 || !errors.Is(err, storage.ErrConditionFailed) {
			for _, r := range group {
				r.done <- err
			}
			return
		}
		i, cerr := conditionOwner(group, err)
		if i < 0 {
			// Which writer's assertion failed is unknown: each writes alone.
			for _, r := range group {
				r.done <- g.st.Batch(ctx, ns, r.ops)
			}
			return
		}
		group[i].done <- cerr
		group = slices.Delete(group, i, i+1)
	}
}

// conditionOwner finds the writer of group whose assertion err (from a combined batch of
// their ops, in order) names, and returns its index with the error as its own batch would
// have returned it; -1 if err names no assertion of theirs.
func conditionOwner(group []*groupReq, err error) (int, error) {
	var ce *storage.ConditionError
	if !errors.As(err, &ce) || ce.Op < 0 {
		return -1, nil
	}
	op := ce.Op
	for i, r := range group {
		if op >= len(r.ops) {
			op -= len(r.ops)
			continue
		}
		if !r.ops[op].IsAssertion() || !bytes.Equal(r.ops[op].Key, ce.Key) {
			return -1, nil
		}
		return i, &storage.ConditionError{Op: op, Key: ce.Key}
	}
	return -1, nil
}
