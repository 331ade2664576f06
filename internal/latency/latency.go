// Package latency records durations for benchmarks in a histogram of fixed size and about
// 1.5 % resolution, so recording costs the same at ten samples and at ten million.
package latency

import (
	"math/bits"
	"time"
)

// Histogram holds durations: below 64 ns exactly, above, each power of two split into 32
// buckets. Its zero value is empty and ready to use; it is not safe for concurrent use
// (give each goroutine one and Merge them).
type Histogram struct {
	counts [59 * 32]uint64
	n      uint64
}

// bucket returns the bucket of v nanoseconds.
func bucket(v uint64) int {
	if v < 64 {
		return int(v)
	}
	shift := bits.Len64(v) - 6
	return shift*32 + int(v>>shift)
}

// value returns the middle of bucket i, in nanoseconds.
func value(i int) uint64 {
	if i < 64 {
		return uint64(i)
	}
	shift := i/32 - 1
	mant := uint64(i - shift*32)
	return mant<<shift + (uint64(1)<<shift)/2
}

// Record adds one duration (a negative one counts as 0).
func (h *Histogram) Record(d time.Duration) {
	h.counts[bucket(uint64(max(d, 0)))]++
	h.n++
}

// Merge adds the durations of o.
func (h *Histogram) Merge(o *Histogram) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
}

// Count is how many durations were recorded.
func (h *Histogram) Count() int { return int(h.n) }

// Quantile returns the duration below which a fraction q of the recorded ones fall; 0
// when nothing was recorded.
func (h *Histogram) Quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := min(max(uint64(q*float64(h.n)+0.5), 1), h.n)
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			return time.Duration(value(i))
		}
	}
	return time.Duration(value(len(h.counts) - 1))
}
