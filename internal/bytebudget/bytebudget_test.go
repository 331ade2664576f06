package bytebudget

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestBudget: pieces take their bytes while they fit, one over the whole budget takes all
// of it, a caller that does not fit waits (counted) until bytes come back or its context
// ends, and a release gives its bytes back.
func TestBudget(t *testing.T) {
	b := New(100)
	r1, ok := b.TryAcquire(60)
	if !ok || b.Held() != 60 {
		t.Fatalf("60 of 100: ok %v, held %d", ok, b.Held())
	}
	if _, ok := b.TryAcquire(50); ok {
		t.Fatal("50 more fit in the 40 left")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := b.Acquire(ctx, 50); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("50 more until the context ends: %v", err)
	}
	got := make(chan func(), 1)
	go func() {
		r, err := b.Acquire(context.Background(), 1000) // more than the budget: all of it
		if err != nil {
			t.Error(err)
		}
		got <- r
	}()
	for b.Waiting() != 1 {
		time.Sleep(time.Millisecond)
	}
	r1()
	r2 := <-got
	if b.Held() != 100 || b.Waiting() != 0 {
		t.Fatalf("a piece over the budget: held %d, waiting %d", b.Held(), b.Waiting())
	}
	if _, ok := b.TryAcquire(1); ok {
		t.Fatal("a byte fit beside a piece holding the whole budget")
	}
	r2()
	if r, ok := b.TryAcquire(100); !ok || b.Held() != 100 {
		t.Fatal("the budget was not given back whole")
	} else {
		r()
	}
	if b.Max() != 100 || b.Held() != 0 {
		t.Fatalf("max %d held %d", b.Max(), b.Held())
	}
}
