package config

import (
	"testing"
	"time"
)

// TestRunnerIdleTimeoutAndMaxProcesses: a runner block's idle_timeout (default 30m, "0"
// keeps processes until their session is deleted) and max_processes (default 0, no cap),
// and the file:line errors `limitd -validate` prints for bad values.
func TestRunnerIdleTimeoutAndMaxProcesses(t *testing.T) {
	for _, tt := range []struct {
		name string
		src  string
		idle time.Duration
		max  int
	}{
		{"default", "runner \"python\" {}\n", DefaultRunnerIdleTimeout, 0},
		{"set", "runner \"python\" {\n  idle_timeout  = \"90s\"\n  max_processes = 8\n}\n", 90 * time.Second, 8},
		{"off", "runner \"python\" {\n  idle_timeout  = \"0\"\n  max_processes = 0\n}\n", 0, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg, diags := Parse(testFile, []byte(tt.src), envMap(nil))
			if diags.HasErrors() {
				t.Fatal(diags)
			}
			b := cfg.Runners[0]
			if got := b.RunnerIdleTimeout(); got != tt.idle || b.MaxProcesses != tt.max {
				t.Fatalf("idle_timeout = %v, max_processes = %d; want %v, %d", got, b.MaxProcesses, tt.idle, tt.max)
			}
		})
	}
	for _, tt := range []struct {
		name, src, summary, detail string
		line                       int
	}{
		{"idle negative", "runner \"python\" {\n\n  idle_timeout = \"-1m\"\n}\n", "Invalid duration", "idle_timeout must not be negative", 3},
		{"idle not a duration", "runner \"python\" {\n  idle_timeout = \"half an hour\"\n}\n", "Invalid duration", "idle_timeout = \"half an hour\" is not a duration", 2},
		{"idle without unit", "runner \"python\" {\n  idle_timeout = 30\n}\n", "Invalid duration", "missing unit", 2},
		{"max negative", "runner \"python\" {\n  pool = 0\n  max_processes = -1\n}\n", "Invalid max_processes", "got -1", 3},
		{"max fraction", "runner \"python\" {\n  max_processes = 2.5\n}\n", "Invalid max_processes", "whole number", 2},
		{"max not a number", "runner \"python\" {\n  max_processes = \"many\"\n}\n", "Incorrect attribute value type", "a number is required", 2},
		{"not a runner", "storage \"bolt\" {\n  idle_timeout = \"1m\"\n}\n", "Unsupported argument", "idle_timeout", 2},
	} {
		t.Run(tt.name, func(t *testing.T) { wantOneError(t, tt.src, tt.line, tt.summary, tt.detail) })
	}
}

// TestRunnerAllowUserNetwork: a runner block's allow_user_network (default false: only an
// operator's token may give a session the host's network), and the file:line errors
// `limitd -validate` prints for a value that is not a bool or a block that is not a runner.
func TestRunnerAllowUserNetwork(t *testing.T) {
	for _, tt := range []struct {
		src  string
		want bool
	}{
		{"runner \"python\" {}\n", false},
		{"runner \"python\" {\n  allow_user_network = true\n}\n", true},
		{"runner \"python\" {\n  allow_user_network = false\n}\n", false},
	} {
		cfg, diags := Parse(testFile, []byte(tt.src), envMap(nil))
		if diags.HasErrors() {
			t.Fatal(diags)
		}
		if got := cfg.Runners[0].AllowUserNetwork; got != tt.want {
			t.Errorf("%q: allow_user_network %v, want %v", tt.src, got, tt.want)
		}
	}
	wantOneError(t, "runner \"python\" {\n  pool = 0\n  allow_user_network = \"sometimes\"\n}\n", 3, "Incorrect attribute value type", "a bool is required")
	wantOneError(t, "storage \"bolt\" {\n  allow_user_network = true\n}\n", 2, "Unsupported argument", "allow_user_network")
}
