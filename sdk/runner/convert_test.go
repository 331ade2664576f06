package runner

import (
	"testing"
	"time"

	limitv1 "github.com/limitgraph/limit/proto/limit/v1"
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

// TestResultWithoutStatus: a result that names no status (or one this SDK does not know)
// is an error that says it is the runner's bug, not an error with no text.
func TestResultWithoutStatus(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   *limitv1.ExecuteResult
		want string
	}{
		{"no status", &limitv1.ExecuteResult{}, "runner result has no status (a bug in the runner plugin)"},
		{"no status, an error", &limitv1.ExecuteResult{Error: "oops"}, "runner result has no status (a bug in the runner plugin): oops"},
		{"unknown status", &limitv1.ExecuteResult{Status: 99}, "runner result has unknown status 99 (a bug in the runner plugin)"},
		{"ok", &limitv1.ExecuteResult{Status: limitv1.ExecuteStatus(StatusOK)}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := ResultFromProto(tc.in)
			if r.Error != tc.want {
				t.Errorf("Error = %q, want %q", r.Error, tc.want)
			}
			if tc.want != "" && r.Status != StatusError {
				t.Errorf("Status = %v, want StatusError", r.Status)
			}
		})
	}
}
