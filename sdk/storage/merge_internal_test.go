package storage

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/status"

	limitv1 "github.com/limitgraph/limit/proto/limit/v1"
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
	ctx, done = mergedContext(calls(soon, context.WithoutCancel(later)))
	if d, ok := ctx.Deadline(); ok || ctx.Done() != nil {
		t.Errorf("deadline %v %v, Done %v with a call whose context never ends: want neither", d, ok, ctx.Done())
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

// fakeRPC records the Puts and Batches a Client sends; a Put of "block" waits until
// release is closed.
type fakeRPC struct {
	limitv1.StorageClient
	release chan struct{}
	started chan struct{} // closed when the blocking Put arrived
	mu      sync.Mutex
	keys    []string // every key written, in the order applied
	calls   int
}

func (f *fakeRPC) Put(ctx context.Context, in *limitv1.PutRequest, _ ...grpc.CallOption) (*limitv1.PutResponse, error) {
	if string(in.GetKey()) == "block" {
		close(f.started)
		<-f.release
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	f.keys = append(f.keys, string(in.GetKey()))
	return &limitv1.PutResponse{}, nil
}

func (f *fakeRPC) Batch(ctx context.Context, in *limitv1.BatchRequest, _ ...grpc.CallOption) (*limitv1.BatchResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	for _, op := range in.GetOps() {
		f.keys = append(f.keys, string(op.GetKey()))
	}
	return &limitv1.BatchResponse{}, nil
}

// TestMergeSkipsAbandonedCalls queues writes behind one in flight, lets one of them be
// cancelled while it waits, and checks that it is never made, that it returns its
// context's error, and that the others go together in one Batch, in arrival order.
func TestMergeSkipsAbandonedCalls(t *testing.T) {
	f := &fakeRPC{release: make(chan struct{}), started: make(chan struct{})}
	c := &Client{rpc: f}
	ctx := context.Background()
	first := make(chan error, 1)
	go func() { first <- c.Put(ctx, "ns", []byte("block"), []byte("v")) }()
	<-f.started // the first Put is in flight; the next calls queue behind it
	results := make([]chan error, 4)
	cancelCtx, cancel := context.WithCancel(ctx)
	for i := range results {
		results[i] = make(chan error, 1)
		callCtx := ctx
		if i == 2 {
			callCtx = cancelCtx
		}
		go func() { results[i] <- c.Put(callCtx, "ns", fmt.Appendf(nil, "k%d", i), []byte("v")) }()
		waitQueued(t, c, "ns", i+1)
	}
	cancel()
	if err := <-results[2]; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled waiting put: %v, want context canceled", err)
	}
	close(f.release)
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	for i, ch := range results {
		if i == 2 {
			continue
		}
		if err := <-ch; err != nil {
			t.Fatalf("put k%d: %v", i, err)
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if got := fmt.Sprint(f.keys); got != "[block k0 k1 k3]" || f.calls != 2 {
		t.Fatalf("written %s in %d calls; want [block k0 k1 k3] in 2 (the cancelled put never made)", got, f.calls)
	}
}

// waitQueued waits until n calls wait in ns's queue.
func waitQueued(t *testing.T, c *Client, ns string, n int) {
	t.Helper()
	for range 5000 {
		c.merge.mu.Lock()
		q := c.merge.qs[ns]
		got := 0
		if q != nil {
			got = len(q.pending)
		}
		c.merge.mu.Unlock()
		if got >= n {
			return
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatalf("fewer than %d calls queued after 5 s", n)
}

// slowBatchRPC is fakeRPC whose Batches wait until release is closed; batched is closed
// when the first Batch arrived, and onCaller tells whether it was made on a goroutine the
// test started (a caller's), not one the client started.
type slowBatchRPC struct {
	fakeRPC
	batched  chan struct{}
	once     sync.Once
	onCaller bool
}

func (f *slowBatchRPC) Batch(ctx context.Context, in *limitv1.BatchRequest, opts ...grpc.CallOption) (*limitv1.BatchResponse, error) {
	f.once.Do(func() {
		stack := make([]byte, 16<<10)
		stack = stack[:runtime.Stack(stack, false)]
		f.mu.Lock()
		f.onCaller = bytes.Contains(stack, []byte("TestMergeRoundCompleter"))
		f.mu.Unlock()
		close(f.batched)
	})
	select {
	case <-f.release:
	case <-ctx.Done():
		return nil, status.FromContextError(ctx.Err()).Err()
	}
	return f.fakeRPC.Batch(ctx, in, opts...)
}

// TestMergeRoundCompleter has a lingering round completed by a second call: the two go as
// one Batch. A completing caller whose context can end does not make the round on its own
// goroutine, so it returns as soon as its context ends, the Batch still in flight; one
// whose context cannot end makes it and returns once it is answered.
func TestMergeRoundCompleter(t *testing.T) {
	for _, cancellable := range []bool{true, false} {
		t.Run(fmt.Sprintf("cancellable=%v", cancellable), func(t *testing.T) {
			f := &slowBatchRPC{fakeRPC: fakeRPC{release: make(chan struct{})}, batched: make(chan struct{})}
			c := &Client{rpc: f}
			// A round lingering for two calls, without a timer: only a second call makes it.
			c.merge.qs = map[string]*mergeQueue{"ns": {want: 2, expect: 2}}
			first := make(chan error, 1)
			go func() { first <- c.Put(context.Background(), "ns", []byte("k0"), []byte("v")) }()
			waitQueued(t, c, "ns", 1)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if !cancellable {
				ctx = context.WithoutCancel(ctx)
			}
			second := make(chan error, 1)
			go func() { second <- c.Put(ctx, "ns", []byte("k1"), []byte("v")) }()
			<-f.batched // the second call completed the round
			if cancellable {
				cancel()
				select {
				case err := <-second:
					if !errors.Is(err, context.Canceled) {
						t.Fatalf("completing put: %v, want context canceled", err)
					}
				case <-time.After(5 * time.Second):
					t.Fatal("a completing caller whose context ended still waits for the round")
				}
			} else {
				select {
				case err := <-second:
					t.Fatalf("completing put returned (%v) before its round was answered", err)
				case <-time.After(20 * time.Millisecond):
				}
			}
			close(f.release)
			if err := <-first; err != nil {
				t.Fatal(err)
			}
			if !cancellable {
				if err := <-second; err != nil {
					t.Fatal(err)
				}
			}
			f.mu.Lock()
			defer f.mu.Unlock()
			if got := fmt.Sprint(f.keys); got != "[k0 k1]" || f.calls != 1 {
				t.Fatalf("written %s in %d calls; want [k0 k1] in one Batch", got, f.calls)
			}
			if f.onCaller == cancellable {
				t.Fatalf("the Batch made on the completing caller's goroutine: %v; want %v", f.onCaller, !cancellable)
			}
		})
	}
}

// TestMergeIdleCallIsAlone: a queue whose last round had 16 calls lingers for them only
// while they may be coming back; a call that finds it idle for longer than that linger is
// made at once, alone, and the next round expects one.
func TestMergeIdleCallIsAlone(t *testing.T) {
	f := &fakeRPC{}
	c := &Client{rpc: f}
	q := &mergeQueue{expect: 16, last: time.Millisecond, ended: time.Now()}
	c.merge.qs = map[string]*mergeQueue{"ns": q}
	time.Sleep(5 * mergeMaxLinger) // idle: longer than any linger
	if err := c.Put(context.Background(), "ns", []byte("k"), []byte("v")); err != nil {
		t.Fatal(err)
	}
	c.merge.mu.Lock()
	defer c.merge.mu.Unlock()
	if q.gen != 0 {
		t.Fatal("a call after the queue idled lingered for the last round's 16 calls")
	}
	if q.expect != 1 || f.calls != 1 {
		t.Fatalf("expect %d after %d calls; want 1 after 1", q.expect, f.calls)
	}
}
