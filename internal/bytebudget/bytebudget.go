// Package bytebudget bounds the bytes of large work in flight: the daemon's large request
// bodies (api.max_body_bytes_in_flight) and the jailbreak rule's large texts
// (max_bytes_in_flight), each held several times over in memory while handled. A piece of
// work waits until its bytes fit; one larger than the whole budget waits for all of it,
// so it runs alone rather than never.
package bytebudget

import (
	"context"
	"sync/atomic"

	"golang.org/x/sync/semaphore"
)

// Budget is a budget of bytes. Its zero value is not usable; see New.
type Budget struct {
	sem           *semaphore.Weighted
	max           int64
	held, waiting atomic.Int64
}

// New returns a budget of max bytes, max > 0.
func New(max int64) *Budget { return &Budget{sem: semaphore.NewWeighted(max), max: max} }

// Max is the budget's size.
func (b *Budget) Max() int64 { return b.max }

// Held is how many of its bytes are held now.
func (b *Budget) Held() int64 { return b.held.Load() }

// Waiting is how many callers wait for their share now.
func (b *Budget) Waiting() int64 { return b.waiting.Load() }

// share is what n bytes take of the budget: n, or all of it for more.
func (b *Budget) share(n int64) int64 { return max(min(n, b.max), 0) }

// Acquire waits until n bytes fit, or ctx ends (its error then), and returns what gives
// them back.
func (b *Budget) Acquire(ctx context.Context, n int64) (release func(), err error) {
	w := b.share(n)
	b.waiting.Add(1)
	err = b.sem.Acquire(ctx, w)
	b.waiting.Add(-1)
	if err != nil {
		return nil, err
	}
	return b.taken(w), nil
}

// TryAcquire is Acquire without waiting: ok is false when n bytes do not fit now.
func (b *Budget) TryAcquire(n int64) (release func(), ok bool) {
	w := b.share(n)
	if !b.sem.TryAcquire(w) {
		return nil, false
	}
	return b.taken(w), true
}

// taken counts w bytes as held and returns what gives them back (to be called once).
func (b *Budget) taken(w int64) func() {
	b.held.Add(w)
	return func() {
		b.held.Add(-w)
		b.sem.Release(w)
	}
}
