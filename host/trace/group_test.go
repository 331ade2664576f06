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
