package plugins

import (
	"context"
	"syscall"
	"testing"
	"time"

	"github.com/limitgraph/limit/sdk/base"
	"github.com/limitgraph/limit/sdk/runner"
)

// TestRunnerRestartCounts: the session processes a runner replaced are counted by reason,
// for the metrics' limit_plugin_restarts_total: one killed (kill -9, found dead by the
// session's next Get) as a crash, one that failed an execution (Retire) as failed, one
// stopped to make room under max_processes as such. A runner crash used to be counted
// nowhere the metrics read.
func TestRunnerRestartCounts(t *testing.T) {
	ctx := context.Background()
	capped := testSpec(base.KindRunner, "capped", "echo")
	capped.MaxProcesses = 1
	rs := NewRunners(map[string]Spec{"echo": testSpec(base.KindRunner, "echo", "echo"), "capped": capped}, nil)
	defer rs.Close(ctx)
	get := func(id, name string) *Handle {
		t.Helper()
		h, err := rs.Get(ctx, runner.Session{ID: id}, name)
		if err != nil {
			t.Fatalf("Get %s %s: %v", id, name, err)
		}
		echoOutput(t, h, id)
		return h
	}

	a := get("A", "echo")
	a.Done()
	if err := syscall.Kill(a.Process.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitDead(t, a.Process.PID, 5*time.Second)
	for deadline := time.Now().Add(5 * time.Second); !a.Process.Exited(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the exit was not noticed")
		}
	}
	if a2 := get("A", "echo"); !a2.Replaced {
		t.Fatal("the killed process was not replaced")
	} else {
		a2.Done()
	}

	b := get("B", "echo")
	b.Retire()
	b.Done()

	get("C", "capped").Done()
	get("D", "capped").Done() // C's process makes room

	got := map[[3]string]uint64{}
	for _, c := range rs.RestartCounts() {
		got[[3]string{c.Kind, c.Name, c.Reason}] = c.Count
	}
	for k, want := range map[[3]string]uint64{
		{"runner", "echo", RestartCrash}:          1,
		{"runner", "echo", RestartFailed}:         1,
		{"runner", "echo", RestartIdle}:           0,
		{"runner", "echo", RestartMaxProcesses}:   0,
		{"runner", "capped", RestartMaxProcesses}: 1,
		{"runner", "capped", RestartCrash}:        0,
	} {
		if n, ok := got[k]; !ok || n != want {
			t.Errorf("restarts %v = %d (listed %v), want %d", k, n, ok, want)
		}
	}
}
