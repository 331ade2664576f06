package keyed

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

// TestMutex: one key is held by one caller at a time, other keys are not held back, and
// a key's mutex goes once nobody holds or waits for it.
func TestMutex(t *testing.T) {
	var k Mutex
	unlockA := k.Lock("a")
	// Another key is free.
	k.Lock("b")()
	got, released := make(chan struct{}), make(chan struct{})
	go func() {
		unlock := k.Lock("a")
		close(got)
		unlock()
		close(released)
	}()
	select {
	case <-got:
		t.Fatal("a second caller got key a while it was held")
	default:
	}
	unlockA()
	<-got
	<-released // else its unlock may come after the count below
	var wg sync.WaitGroup
	n := 0
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			unlock := k.Lock("c")
			n++ // the race detector fails the test if two callers hold c at once
			unlock()
		}()
	}
	wg.Wait()
	if n != 50 {
		t.Fatalf("n = %d", n)
	}
	if h := k.held(); h != 0 {
		t.Fatalf("%d keys left in the set, want 0", h)
	}
}

// TestLockContext: a caller waiting for a held key gives up when its context ends, with
// the context's error and without the key, and leaves nothing in the set behind it.
func TestLockContext(t *testing.T) {
	var k Mutex
	unlock := k.Lock("a")
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		u, err := k.LockContext(ctx, "a")
		if u != nil {
			u()
		}
		errc <- err
	}()
	for k.Refs("a") != 2 { // the holder and the waiter
		time.Sleep(time.Millisecond)
	}
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("LockContext on a held key with its context ended: %v, want context canceled", err)
	}
	unlock()
	u, err := k.LockContext(context.Background(), "a")
	if err != nil {
		t.Fatal(err)
	}
	u()
	if h, r := k.held(), k.Refs("a"); h != 0 || r != 0 {
		t.Fatalf("%d keys left in the set, %d callers on a; want 0, 0", h, r)
	}
}
