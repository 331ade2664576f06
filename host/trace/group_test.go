package trace

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/limitgraph/limit/sdk/storage"
	"github.com/limitgraph/limit/sdk/storage/memstore"
)

// countingBatches counts Batch calls and makes each one slow enough for writers to queue.
type countingBatches struct {
	storage.Storage
	calls atomic.Int64
	gate  chan struct{}
}

func (c *countingBatches) Batch(ctx context.Context, ns string, ops []storage.Op) error {
	c.calls.Add(1)
	<-c.gate
	return c.Storage.Batch(ctx, ns, ops)
}

// TestGroupWriter checks that concurrent writes to one namespace are combined into fewer
// storage batches, that each is applied, and that an invalid one fails alone.
func TestGroupWriter(t *testing.T) {
	ctx := context.Background()
	base := memstore.New()
	st := &countingBatches{Storage: base, gate: make(chan struct{})}
	g := &groupWriter{st: st}
	const writers = 32
	errs := make([]error, writers)
	var wg sync.WaitGroup
	for i := range writers {
		wg.Go(func() {
			ops := []storage.Op{
				{Kind: storage.OpPut, Key: fmt.Appendf(nil, "a%02d", i), Value: []byte("x")},
				{Kind: storage.OpPut, Key: fmt.Appendf(nil, "b%02d", i), Value: []byte("y")},
			}
			if i == 7 {
				ops = append(ops, storage.Op{Kind: storage.OpPut}) // empty key: invalid
			}
			errs[i] = g.write(ctx, "ns", ops)
		})
	}
	// Hold the first batch until every other valid writer queued behind it.
	for {
		g.mu.Lock()
		queued := 0
		if q := g.qs["ns"]; q != nil {
			queued = len(q.pending)
		}
		g.mu.Unlock()
		if queued == writers-2 { // all but the invalid one and the leader
			break
		}
		runtime.Gosched()
	}
	close(st.gate)
	wg.Wait()
	for i, err := range errs {
		switch {
		case i == 7 && !errors.Is(err, storage.ErrInvalid):
			t.Fatalf("invalid write: %v, want storage.ErrInvalid", err)
		case i != 7 && err != nil:
			t.Fatalf("writer %d: %v", i, err)
		}
	}
	res, err := base.Scan(ctx, storage.ScanRequest{Namespace: "ns", Limit: 1000})
	if err != nil || len(res.Items) != 2*(writers-1) {
		t.Fatalf("namespace holds %d keys (%v), want %d", len(res.Items), err, 2*(writers-1))
	}
	if n := st.calls.Load(); n != 2 {
		t.Fatalf("%d storage batches for %d writers, want 2: the leader's and one of all the others", n, writers-1)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.qs) != 0 {
		t.Fatalf("%d queues left behind", len(g.qs))
	}
}

// vagueConditions hides which assertion failed, as a backend may.
type vagueConditions struct{ storage.Storage }

func (v vagueConditions) Batch(ctx context.Context, ns string, ops []storage.Op) error {
	err := v.Storage.Batch(ctx, ns, ops)
	if errors.Is(err, storage.ErrConditionFailed) {
		return fmt.Errorf("backend says: %w", storage.ErrConditionFailed)
	}
	return err
}

// TestGroupWriterConditional combines conditional batches with others: a failed assertion
// fails its own writer only, and a writer whose assertion reads a key written earlier in the
// same round waits for the next round, so it sees that write.
func TestGroupWriterConditional(t *testing.T) {
	put := func(k string) storage.Op { return storage.Op{Kind: storage.OpPut, Key: []byte(k), Value: []byte("v")} }
	absent := func(k string) storage.Op { return storage.Op{Kind: storage.OpAssertAbsent, Key: []byte(k)} }
	writers := [][]storage.Op{
		{put("w0")},                  // round 1, alone: the leader, held at the gate
		{absent("taken"), put("w1")}, // round 2: its assertion fails, it alone
		{absent("free"), put("w2")},  // round 2
		{put("w3")},                  // round 2
		{absent("w3"), put("w4")},    // round 3: reads what w3 writes; fails after it
		{put("w5")},                  // round 3, after w4 in order
	}
	fails := map[int]bool{1: true, 4: true}
	for _, tc := range []struct {
		name    string
		vague   bool
		batches int64
	}{
		// Rounds: 1; 2 with w1, then without it; 3 with w4, then without it.
		{"backend names the assertion", false, 5},
		// Rounds: 1; 2, then each of w1, w2, w3 alone; 3, then w4 and w5 alone.
		{"backend does not", true, 8},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			base := memstore.New()
			if err := base.Put(ctx, "ns", []byte("taken"), []byte("x")); err != nil {
				t.Fatal(err)
			}
			var inner storage.Storage = base
			if tc.vague {
				inner = vagueConditions{base}
			}
			st := &countingBatches{Storage: inner, gate: make(chan struct{})}
			g := &groupWriter{st: st}
			errs := make([]error, len(writers))
			var wg sync.WaitGroup
			for i, ops := range writers {
				wg.Go(func() { errs[i] = g.write(ctx, "ns", ops) })
				// Wait for writer i to be in place before the next one comes.
				for {
					g.mu.Lock()
					queued := 0
					if q := g.qs["ns"]; q != nil {
						queued = len(q.pending)
					}
					g.mu.Unlock()
					if (i == 0 && st.calls.Load() == 1) || (i > 0 && queued == i) {
						break
					}
					runtime.Gosched()
				}
			}
			close(st.gate)
			wg.Wait()
			for i, err := range errs {
				var ce *storage.ConditionError
				switch {
				case fails[i] && !errors.Is(err, storage.ErrConditionFailed):
					t.Errorf("writer %d: %v, want a failed condition", i, err)
				case fails[i] && !tc.vague && (!errors.As(err, &ce) || ce.Op != 0 || string(ce.Key) != string(writers[i][0].Key)):
					t.Errorf("writer %d: %v, want its own assertion 0 named", i, err)
				case !fails[i] && err != nil:
					t.Errorf("writer %d: %v", i, err)
				}
				_, ok, err := base.Get(ctx, "ns", fmt.Appendf(nil, "w%d", i))
				if err != nil || ok == fails[i] {
					t.Errorf("writer %d's key present %v (%v), want %v", i, ok, err, !fails[i])
				}
			}
			if n := st.calls.Load(); n != tc.batches {
				t.Errorf("%d storage batches, want %d", n, tc.batches)
			}
		})
	}
}
