package latency

import (
	"testing"
	"time"
)

func TestQuantiles(t *testing.T) {
	var h Histogram
	for i := 1; i <= 1000; i++ {
		h.Record(time.Duration(i) * time.Microsecond)
	}
	if h.Count() != 1000 {
		t.Fatalf("Count = %d", h.Count())
	}
	for _, tc := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 500 * time.Microsecond}, {0.99, 990 * time.Microsecond}, {1, 1000 * time.Microsecond}} {
		got := h.Quantile(tc.q)
		if diff := float64(got-tc.want) / float64(tc.want); diff < -0.02 || diff > 0.02 {
			t.Errorf("Quantile(%v) = %v, want %v within 2%%", tc.q, got, tc.want)
		}
	}
	var empty Histogram
	if empty.Quantile(0.5) != 0 {
		t.Error("quantile of nothing is not 0")
	}
	var both Histogram
	both.Merge(&h)
	both.Merge(&h)
	if both.Count() != 2000 || both.Quantile(0.5) != h.Quantile(0.5) {
		t.Errorf("merge: %d durations, p50 %v", both.Count(), both.Quantile(0.5))
	}
}

func TestBuckets(t *testing.T) {
	var h Histogram
	for _, v := range []uint64{0, 1, 63, 64, 65, 1000, 123456789, 1 << 62, 1<<63 - 1} {
		b := bucket(v)
		if b < 0 || b >= len(h.counts) {
			t.Fatalf("bucket of %d is %d, outside [0, %d)", v, b, len(h.counts))
		}
		if got := value(b); v >= 64 && (float64(got) < float64(v)*0.97 || float64(got) > float64(v)*1.03) {
			t.Errorf("bucket of %d stands for %d, more than 3%% off", v, got)
		}
	}
}
