package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync"
	"testing"

	"github.com/limitgraph/limit/sdk/base"
)

// waitFor polls until cond holds; the test's own timeout bounds it.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for !cond() {
		if t.Context().Err() != nil {
			t.Fatalf("gave up waiting for %s", what)
		}
		runtime.Gosched()
	}
}

// waiting reports the number of waiters of session.
func waiting(f *fairSlots, session string) int {
	st, _ := f.stats(session)
	return st.Waiting
}

// queueWaiter starts a goroutine that waits for a slot for session and, once granted,
// sends name on granted. It returns when the waiter is queued.
func queueWaiter(t *testing.T, f *fairSlots, wg *sync.WaitGroup, session, name string, granted chan<- string) {
	t.Helper()
	before := waiting(f, session)
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := f.acquire(context.Background(), session); err != nil {
			granted <- "error: " + err.Error()
			return
		}
		granted <- name
	}()
	waitFor(t, name+" queued", func() bool { return waiting(f, session) == before+1 })
}

// TestFairSlotsSmallSessionFirst holds the one slot, queues N waiters of a flooding
// session and then one of another, and checks the order slots are granted in as each
// holder releases: the other session's waiter comes right after the current holder,
// then the flooding session's in their own order.
func TestFairSlotsSmallSessionFirst(t *testing.T) {
	for _, tt := range []struct{ flood, other string }{
		{"A", "B"},
		{"", "B"}, // requests without a session id are a session of their own
		{"A", ""},
	} {
		t.Run(fmt.Sprintf("flood %q other %q", tt.flood, tt.other), func(t *testing.T) {
			const n = 5
			f := newFairSlots(1, 50)
			if err := f.acquire(context.Background(), tt.flood); err != nil {
				t.Fatal(err)
			}
			granted := make(chan string, n+1)
			var wg sync.WaitGroup
			for i := range n {
				queueWaiter(t, f, &wg, tt.flood, fmt.Sprintf("flood-%d", i), granted)
			}
			queueWaiter(t, f, &wg, tt.other, "other", granted)

			want := []string{"other"}
			for i := range n {
				want = append(want, fmt.Sprintf("flood-%d", i))
			}
			holder := tt.flood
			for i, w := range want {
				f.release(holder)
				got := <-granted
				if got != w {
					t.Fatalf("grant %d went to %s, want %s (order %v)", i, got, w, want)
				}
				holder = tt.flood
				if got == "other" {
					holder = tt.other
				}
			}
			f.release(holder)
			wg.Wait()
			if st, free := f.stats(tt.flood); st != (fairStats{}) || free != 1 || len(f.sessions) != 0 {
				t.Fatalf("after all releases: flood %+v, free %d, sessions %d; want nothing held, 1 free", st, free, len(f.sessions))
			}
		})
	}
}

// TestFairSlotsFewestHeld checks that a freed slot goes to the waiting session holding
// the fewest slots even when another session has waited longer, and that sessions
// holding equally many take turns.
func TestFairSlotsFewestHeld(t *testing.T) {
	f := newFairSlots(3, 10)
	ctx := context.Background()
	for _, s := range []string{"A", "A", "C"} {
		if err := f.acquire(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	granted := make(chan string, 8)
	var wg sync.WaitGroup
	queueWaiter(t, f, &wg, "A", "A-0", granted) // A waits first but holds 2
	queueWaiter(t, f, &wg, "B", "B-0", granted) // B holds none
	f.release("C")
	if got := <-granted; got != "B-0" {
		t.Fatalf("slot freed by C went to %s, want B-0 (B holds fewer than A)", got)
	}
	// Now A holds 2, B 1. Queue more of both; then release both B's and one of A's so
	// that A and B hold 1 each with waiters: they must alternate.
	queueWaiter(t, f, &wg, "B", "B-1", granted)
	queueWaiter(t, f, &wg, "B", "B-2", granted)
	f.release("A") // A 1, B 1: the tie goes to A, granted less recently than B
	if got := <-granted; got != "A-0" {
		t.Fatalf("got %s, want A-0", got)
	}
	queueWaiter(t, f, &wg, "A", "A-1", granted)
	// Holding: A 2, B 1. Release one of A's: A 1, B 1, B served less recently.
	f.release("A")
	if got := <-granted; got != "B-1" {
		t.Fatalf("got %s, want B-1", got)
	}
	// Holding: A 1, B 2. Release one of B's: A 1, B 1, A served less recently.
	f.release("B")
	if got := <-granted; got != "A-1" {
		t.Fatalf("got %s, want A-1", got)
	}
	f.release("B")
	if got := <-granted; got != "B-2" {
		t.Fatalf("got %s, want B-2", got)
	}
	for _, s := range []string{"A", "A", "B"} {
		f.release(s)
	}
	wg.Wait()
	if _, free := f.stats(""); free != 3 || len(f.sessions) != 0 {
		t.Fatalf("free %d, sessions %d after all releases; want 3 and 0", free, len(f.sessions))
	}
}

// TestFairSlotsCancel checks that a cancelled waiter returns its context's error, leaves
// no waiter behind, and frees no slot it did not hold.
func TestFairSlotsCancel(t *testing.T) {
	f := newFairSlots(1, 10)
	if err := f.acquire(context.Background(), "A"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- f.acquire(ctx, "B") }()
	waitFor(t, "B queued", func() bool { return waiting(f, "B") == 1 })
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled acquire returned %v, want context.Canceled", err)
	}
	if st, free := f.stats("B"); st != (fairStats{}) || free != 0 || f.waiting != 0 {
		t.Fatalf("after cancel: B %+v, free %d, waiting %d; want nothing for B, 0 free", st, free, f.waiting)
	}
	if _, ok := f.sessions["B"]; ok {
		t.Fatal("cancelled session B still tracked")
	}
	// A context already done gets no slot while none is free.
	if err := f.acquire(ctx, "C"); !errors.Is(err, context.Canceled) {
		t.Fatalf("acquire with a done context: %v", err)
	}
	f.release("A")
	if _, free := f.stats(""); free != 1 || len(f.sessions) != 0 {
		t.Fatalf("after release: free %d, sessions %d; want 1 and 0", free, len(f.sessions))
	}
}

// TestFairSlotsCap checks the per-session bound on waiters: the next one is refused at
// once with errTooManyWaiting, other sessions still queue, and room comes back as the
// session's waiters are served.
func TestFairSlotsCap(t *testing.T) {
	f := newFairSlots(1, 2)
	ctx := context.Background()
	if err := f.acquire(ctx, "A"); err != nil {
		t.Fatal(err)
	}
	granted := make(chan string, 4)
	var wg sync.WaitGroup
	queueWaiter(t, f, &wg, "A", "A-0", granted)
	queueWaiter(t, f, &wg, "A", "A-1", granted)
	err := f.acquire(ctx, "A")
	if !errors.Is(err, errTooManyWaiting) {
		t.Fatalf("third waiter of A: %v, want errTooManyWaiting", err)
	}
	t.Log(err)
	if waiting(f, "A") != 2 {
		t.Fatalf("refused request was queued: A has %d waiting", waiting(f, "A"))
	}
	queueWaiter(t, f, &wg, "", "anon", granted) // the bound is per session
	f.release("A")
	if got := <-granted; got != "anon" {
		t.Fatalf("got %s, want anon", got)
	}
	f.release("")
	if got := <-granted; got != "A-0" {
		t.Fatalf("got %s, want A-0", got)
	}
	queueWaiter(t, f, &wg, "A", "A-2", granted) // A-0 was served: room for one more
	if err := f.acquire(ctx, "A"); !errors.Is(err, errTooManyWaiting) {
		t.Fatalf("A over its bound again: %v", err)
	}
	for _, want := range []string{"A-1", "A-2"} {
		f.release("A")
		if got := <-granted; got != want {
			t.Fatalf("got %s, want %s", got, want)
		}
	}
	f.release("A")
	wg.Wait()
	if _, free := f.stats(""); free != 1 || len(f.sessions) != 0 {
		t.Fatalf("free %d, sessions %d; want 1 and 0", free, len(f.sessions))
	}
}

// TestFairSlotsStress runs many sessions acquiring with random cancellations; at the end
// every slot is free and nothing is tracked, and no more than size slots were ever held.
func TestFairSlotsStress(t *testing.T) {
	const size = 3
	f := newFairSlots(size, 8)
	var (
		mu        sync.Mutex
		held, top int
		wg        sync.WaitGroup
	)
	for g := range 40 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			session := fmt.Sprint(g % 5)
			rng := rand.New(rand.NewPCG(uint64(g), 1))
			for range 200 {
				ctx, cancel := context.WithCancel(context.Background())
				if rng.IntN(3) == 0 {
					go cancel() // races with the grant
				}
				err := f.acquire(ctx, session)
				if err == nil {
					mu.Lock()
					held++
					top = max(top, held)
					mu.Unlock()
					runtime.Gosched()
					mu.Lock()
					held--
					mu.Unlock()
					f.release(session)
				} else if !errors.Is(err, context.Canceled) && !errors.Is(err, errTooManyWaiting) {
					t.Errorf("acquire: %v", err)
				}
				cancel()
			}
		}()
	}
	wg.Wait()
	if _, free := f.stats(""); free != size || len(f.sessions) != 0 || f.waiting != 0 {
		t.Fatalf("free %d, sessions %d, waiting %d; want %d, 0, 0", free, len(f.sessions), f.waiting, size)
	}
	if top > size {
		t.Fatalf("%d slots held at once, more than %d", top, size)
	}
}

// TestMaxWaitingDefault checks that max_waiting_per_session defaults to a multiple of
// workers with a floor, and that a set value is used as is.
func TestMaxWaitingDefault(t *testing.T) {
	for _, tt := range []struct {
		config string
		want   int
	}{
		{`{}`, minDefaultWaiting},
		{`{"workers": 16}`, waitingPerWorker * 16},
		{`{"workers": 3, "max_waiting_per_session": 1}`, 1},
	} {
		set, ds := parseConfig(base.ConfigureRequest{Config: json.RawMessage(tt.config)})
		if ds.HasErrors() || set.maxWaiting != tt.want {
			t.Errorf("config %s: max waiting %d (%v), want %d", tt.config, set.maxWaiting, ds, tt.want)
		}
	}
}

// BenchmarkFairSlotsUncontended measures taking and giving back a free slot, the path
// every evaluation takes when the analyzers are not all busy.
//
//	go test -run '^$' -bench FairSlots ./plugins/governance-codesafety
func BenchmarkFairSlotsUncontended(b *testing.B) {
	f := newFairSlots(4, 16)
	ctx := context.Background()
	for b.Loop() {
		if err := f.acquire(ctx, "session"); err != nil {
			b.Fatal(err)
		}
		f.release("session")
	}
}
