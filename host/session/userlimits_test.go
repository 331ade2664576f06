package session

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/limitgraph/limit/host/plugins"
	"github.com/limitgraph/limit/sdk/runner"
	"github.com/limitgraph/limit/sdk/storage/memstore"
)

// TestUserLimits: a user's session (ByUser) may lower the limits the configuration of
// each runner it may run gives (what the runner reported) but not raise them; a limit a
// runner does not bound (zero) is the user's, but for the timeout, bounded then by the
// host's default; a runner that reports nothing lets a user's session set no limit; the
// network needs allow_user_network of every runner the session may run. An operator's
// (not ByUser) is bounded by the absolute bounds alone.
func TestUserLimits(t *testing.T) {
	specs := map[string]plugins.Spec{
		// As the python and llm runners report their defaults; "llama" as a runner
		// that reports no timeout of its own.
		"python": {Name: "python", LimitsReported: true, AllowUserNetwork: true, Limits: runner.Limits{
			Timeout: 30 * time.Second, MemoryBytes: 512 << 20, CPUMillis: 1000, MaxProcesses: 64,
			MaxOutputBytes: 1 << 20, MaxFileBytes: 1 << 30, MaxDiskBytes: 1 << 30,
		}},
		"llm":   {Name: "llm", LimitsReported: true, Limits: runner.Limits{Timeout: 120 * time.Second}},
		"llama": {Name: "llama", LimitsReported: true},
		"other": {Name: "other"}, // reports nothing
	}
	m := NewManager(Options{Store: memstore.New(), DataDir: t.TempDir(), Policies: []string{"default"}, DefaultPolicy: "default",
		Runners: plugins.NewRunners(specs, nil)})
	for _, tt := range []struct {
		name    string
		req     CreateRequest
		field   string // "" when allowed
		runner  string
		ceiling uint64
	}{
		{"lower", CreateRequest{Runners: []string{"python"}, Limits: Limits{MemoryBytes: 128 << 20, CPUMillis: 500, TimeoutMS: 30000}}, "", "", 0},
		{"memory", CreateRequest{Runners: []string{"python"}, Limits: Limits{MemoryBytes: 1 << 40}}, "limits.memory_bytes", "python", 512 << 20},
		{"cpu", CreateRequest{Runners: []string{"python"}, Limits: Limits{CPUMillis: 64000}}, "limits.cpu_millis", "python", 1000},
		{"processes", CreateRequest{Runners: []string{"python"}, Limits: Limits{MaxProcesses: 100000}}, "limits.max_processes", "python", 64},
		{"disk", CreateRequest{Runners: []string{"python"}, Limits: Limits{MaxDiskBytes: 1 << 40}}, "limits.max_disk_bytes", "python", 1 << 30},
		{"output", CreateRequest{Runners: []string{"python"}, Limits: Limits{MaxOutputBytes: 1 << 30}}, "limits.max_output_bytes", "python", 1 << 20},
		{"llm timeout", CreateRequest{Runners: []string{"llm"}, Limits: Limits{TimeoutMS: 120001}}, "limits.timeout_ms", "llm", 120000},
		{"llm unbounded", CreateRequest{Runners: []string{"llm"}, Limits: Limits{MemoryBytes: 1 << 40, MaxOutputBytes: 1 << 30, TimeoutMS: 120000}}, "", "", 0},
		{"llama host default timeout", CreateRequest{Runners: []string{"llama"}, Limits: Limits{TimeoutMS: 60001}}, "limits.timeout_ms", "llama", DefaultTimeoutMS},
		{"unreported", CreateRequest{Runners: []string{"other"}, Limits: Limits{MemoryBytes: 64 << 20}}, "limits.memory_bytes", "other", 0},
		{"unreported without limits", CreateRequest{Runners: []string{"other"}}, "", "", 0},
		{"every runner", CreateRequest{Limits: Limits{MemoryBytes: 64 << 20}}, "limits.memory_bytes", "other", 0},
		{"network", CreateRequest{Runners: []string{"python"}, AllowNetwork: true}, "", "", 0},
		{"network refused", CreateRequest{Runners: []string{"python", "llm"}, AllowNetwork: true}, "allow_network", "llm", 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			req := tt.req
			req.ByUser = true
			_, err := m.Create(context.Background(), req)
			var le *UserLimitError
			switch {
			case tt.field == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tt.field == "":
				return
			case !errors.As(err, &le):
				t.Fatalf("got %v, want a UserLimitError", err)
			case le.Field != tt.field || le.Runner != tt.runner || le.Ceiling != tt.ceiling:
				t.Fatalf("got %+v (%v), want %s of runner %s above %d", le, err, tt.field, tt.runner, tt.ceiling)
			}
			// An operator's may.
			req.ByUser = false
			if _, err := m.Create(context.Background(), req); err != nil {
				t.Fatalf("an operator's: %v", err)
			}
		})
	}
	if err := m.CheckUserTimeout("python", 30001); err == nil || err.(*UserLimitError).Field != "timeout_ms" {
		t.Fatalf("an execution's timeout_ms above python's: %v", err)
	}
	if err := m.CheckUserTimeout("python", 30000); err != nil {
		t.Fatalf("an execution's timeout_ms of python's: %v", err)
	}
}

// TestReservedOwner: an operator cannot create a session for a user named like the host's
// own principals and agents (no token file may give such a user either).
func TestReservedOwner(t *testing.T) {
	m := NewManager(Options{Store: memstore.New(), DataDir: t.TempDir(), Policies: []string{"default"}, DefaultPolicy: "default"})
	for _, name := range []string{"operator", "anonymous", "limitd", "api"} {
		if _, err := m.Create(context.Background(), CreateRequest{Owner: name}); !errors.Is(err, ErrInvalid) {
			t.Errorf("a session for %q: %v, want ErrInvalid", name, err)
		}
	}
	if _, err := m.Create(context.Background(), CreateRequest{Owner: "operators"}); err != nil {
		t.Errorf("a session for \"operators\": %v", err)
	}
}
