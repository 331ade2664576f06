package storage

import (
	"context"
	"testing"
	"time"
)

// TestMergedContext checks the context a merged Batch is sent with: no deadline unless
// every call has one, then the latest; cancelled only once every call's context is.
func TestMergedContext(t *testing.T) {
	calls := func(ctxs ...context.Context) []*mergeCall {
		var cs []*mergeCall
		for _, ctx := range ctxs {
			cs = append(cs, &mergeCall{ctx: ctx})
		}
		return cs
	}
	soon, cancelSoon := context.WithTimeout(context.Background(), time.Hour)
	defer cancelSoon()
	later, cancelLater := context.WithTimeout(context.Background(), 2*time.Hour)
	defer cancelLater()
	ctx, done := mergedContext(calls(soon, later))
	if d, ok := ctx.Deadline(); !ok || !d.Equal(mustDeadline(t, later)) {
		t.Errorf("deadline %v %v, want the latest, %v", d, ok, mustDeadline(t, later))
	}
	done()
	ctx, done = mergedContext(calls(soon, context.Background()))
	if d, ok := ctx.Deadline(); ok {
		t.Errorf("deadline %v with a call that has none", d)
	}
	done()

	a, cancelA := context.WithCancel(context.Background())
	b, cancelB := context.WithCancel(context.Background())
	ctx, done = mergedContext(calls(a, b))
	defer done()
	cancelA()
	time.Sleep(10 * time.Millisecond)
	if ctx.Err() != nil {
		t.Fatal("merged context cancelled while one of its calls still waits")
	}
	cancelB()
	select {
	case <-ctx.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("merged context not cancelled after all its calls were")
	}
}

func mustDeadline(t *testing.T, ctx context.Context) time.Time {
	t.Helper()
	d, ok := ctx.Deadline()
	if !ok {
		t.Fatal("no deadline")
	}
	return d
}
