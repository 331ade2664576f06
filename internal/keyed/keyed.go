// Package keyed holds a set of mutexes by key.
package keyed

import (
	"context"
	"sync"
)

// Mutex is a set of mutexes by key, each existing while someone holds or waits for it.
// The zero value is ready to use.
type Mutex struct {
	mu sync.Mutex
	m  map[string]*entry
}

type entry struct {
	sem  chan struct{} // holds a token while the key is locked
	refs int           // callers holding or waiting for the key
}

// Lock locks key and returns the function that unlocks it.
func (k *Mutex) Lock(key string) func() {
	unlock, _ := k.LockContext(context.Background(), key)
	return unlock
}

// LockContext locks key, or gives up when ctx ends first (returning ctx's error), and
// returns the function that unlocks it.
func (k *Mutex) LockContext(ctx context.Context, key string) (func(), error) {
	k.mu.Lock()
	if k.m == nil {
		k.m = map[string]*entry{}
	}
	e := k.m[key]
	if e == nil {
		e = &entry{sem: make(chan struct{}, 1)}
		k.m[key] = e
	}
	e.refs++
	k.mu.Unlock()
	release := func() {
		k.mu.Lock()
		if e.refs--; e.refs == 0 {
			delete(k.m, key)
		}
		k.mu.Unlock()
	}
	select {
	case e.sem <- struct{}{}:
		return func() { <-e.sem; release() }, nil
	case <-ctx.Done():
		release()
		return nil, ctx.Err()
	}
}

// Refs is the number of callers holding or waiting for key: 0 when nobody does, and then
// the key has no mutex in the set.
func (k *Mutex) Refs(key string) int {
	k.mu.Lock()
	defer k.mu.Unlock()
	if e := k.m[key]; e != nil {
		return e.refs
	}
	return 0
}

// held is the number of keys locked or waited for (for tests).
func (k *Mutex) held() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return len(k.m)
}
