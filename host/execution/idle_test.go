package execution

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/limitgraph/limit/host/plugins"
	"github.com/limitgraph/limit/host/session"
	"github.com/limitgraph/limit/host/trace/tracetest"
)

// TestIdleRunnerProcessStateReset: once the session's runner process was stopped for being
// idle, the session's next execution runs in a fresh process and its result, and its
// trace, say state_reset.
func TestIdleRunnerProcessStateReset(t *testing.T) {
	st, _ := tracetest.Mem(t)
	e, s, runners := echoEngineWith(t, st, func(sp *plugins.Spec) { sp.IdleTimeout = 20 * time.Millisecond })
	ctx := context.Background()
	first, err := e.Execute(ctx, s.ID, Request{Runner: "echo", Input: "x"}, nil)
	if err != nil || first.Status != "ok" || first.StateReset {
		t.Fatalf("first: %+v %v", first, err)
	}
	for deadline := time.Now().Add(10 * time.Second); len(runners.Statuses()) > 0; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the idle process is still listed")
		}
	}
	after, err := e.Execute(ctx, s.ID, Request{Runner: "echo", Input: "y"}, nil)
	if err != nil || after.Status != "ok" || !after.StateReset || pidOf(t, after.Stdout) == pidOf(t, first.Stdout) {
		t.Fatalf("after the idle timeout: %+v %v, want a fresh process and state_reset", after, err)
	}
	if ex := executed(t, e, after.TraceID); ex["state_reset"] != true {
		t.Fatalf("executed entry %v, want state_reset", ex)
	}
}

// TestRunnerBusyRefused: a runner at its max_processes with every process running an
// execution refuses a new session's execution with ErrRunnerBusy, before any trace.
func TestRunnerBusyRefused(t *testing.T) {
	st, _ := tracetest.Mem(t)
	e, s, runners := echoEngineWith(t, st, func(sp *plugins.Spec) { sp.MaxProcesses = 1 })
	ctx := context.Background()
	// The session's process is held in flight, as by a running execution.
	h, err := e.Sessions.Runner(ctx, s, "echo")
	if err != nil {
		t.Fatal(err)
	}
	defer h.Done()
	other, err := e.Sessions.Create(ctx, session.CreateRequest{Runners: []string{"echo"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.Execute(ctx, other.ID, Request{Runner: "echo", Input: "x"}, nil); !errors.Is(err, plugins.ErrRunnerBusy) {
		t.Fatalf("execution with every process busy: %v", err)
	}
	if n := len(runners.Statuses()); n != 1 {
		t.Fatalf("%d processes, want 1", n)
	}
}
