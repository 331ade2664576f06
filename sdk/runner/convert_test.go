package runner

import (
	"testing"
	"time"
)

// TestLimitsRoundTrip: every limit survives the trip through the protocol message, so
// a session's limits reach the runner as the host set them.
func TestLimitsRoundTrip(t *testing.T) {
	in := Limits{
		Timeout: 1500 * time.Millisecond, MemoryBytes: 2, CPUMillis: 3, MaxProcesses: 4,
		MaxOutputBytes: 5, MaxFileBytes: 6, MaxDiskBytes: 7,
	}
	if out := LimitsFromProto(LimitsToProto(in)); out != in {
		t.Errorf("round trip: got %+v, want %+v", out, in)
	}
}
