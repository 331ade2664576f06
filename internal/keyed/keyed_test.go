package keyed

import (
	"sync"
	"testing"
)

// TestMutex: one key is held by one caller at a time, other keys are not held back, and
// a key's mutex goes once nobody holds or waits for it.
func TestMutex(t *testing.T) {
	var k Mutex
	unlockA := k.Lock("a")
	// Another key is free.
	k.Lock("b")()
	got := make(chan struct{})
	go func() {
		unlock := k.Lock("a")
		close(got)
		unlock()
	}()
	select {
	case <-got:
		t.Fatal("a second caller got key a while it was held")
	default:
	}
	unlockA()
	<-got
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
