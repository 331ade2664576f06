package plugins

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/limitgraph/limit/sdk/base"
	"github.com/limitgraph/limit/sdk/runner"
)

// hasSession reports whether the health report lists a process of the runner for session.
func hasSession(rs *Runners, session string) bool {
	for _, st := range rs.Statuses() {
		if st.Session == session {
			return true
		}
	}
	return false
}

// waitGone waits until the health report no longer lists the session's process.
func waitGone(t *testing.T, rs *Runners, session string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); hasSession(rs, session); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the process of session %s is still listed", session)
		}
	}
}

// TestRunnerIdleTimeout: a session's process that has run nothing for idle_timeout is
// stopped and leaves the health report; the session's next Get starts a fresh process,
// Replaced (the execution's state_reset), whose state starts over. A process whose handle
// is not Done (an execution in flight) is not stopped.
func TestRunnerIdleTimeout(t *testing.T) {
	ctx := context.Background()
	spec := testSpec(base.KindRunner, "echo", "echo")
	spec.IdleTimeout = 20 * time.Millisecond
	rs := NewRunners(map[string]Spec{"echo": spec}, nil)
	defer rs.Close(ctx)

	busy, err := rs.Get(ctx, runner.Session{ID: "busy"}, "echo")
	if err != nil {
		t.Fatal(err)
	}
	h, err := rs.Get(ctx, runner.Session{ID: "S"}, "echo")
	if err != nil {
		t.Fatal(err)
	}
	if got := echoOutput(t, h, "1"); !strings.Contains(got, "n=1") {
		t.Fatalf("first output %q", got)
	}
	h.Done()
	h.Done() // a second Done changes nothing
	waitGone(t, rs, "S")
	waitDead(t, h.Process.PID, 10*time.Second)

	h2, err := rs.Get(ctx, runner.Session{ID: "S"}, "echo")
	if err != nil {
		t.Fatal(err)
	}
	defer h2.Done()
	if !h2.Fresh || !h2.Replaced || h2.Process.PID == h.Process.PID {
		t.Fatalf("after the idle timeout: fresh %v replaced %v pid %d (old %d)", h2.Fresh, h2.Replaced, h2.Process.PID, h.Process.PID)
	}
	if got := echoOutput(t, h2, "again"); !strings.Contains(got, "n=1") {
		t.Fatalf("fresh process output %q", got)
	}
	// Only the first process after the stop is Replaced.
	if h3, err := rs.Get(ctx, runner.Session{ID: "S"}, "echo"); err != nil || h3.Replaced || h3.Fresh {
		t.Fatalf("third Get: %+v %v", h3, err)
	} else {
		h3.Done()
	}
	// The process with an execution in flight outlived several idle timeouts.
	if !hasSession(rs, "busy") || !alive(busy.Process.PID) || rs.Crashes() != 0 {
		t.Fatalf("busy process: listed %v alive %v crashes %d", hasSession(rs, "busy"), alive(busy.Process.PID), rs.Crashes())
	}
	if got := echoOutput(t, busy, "x"); !strings.Contains(got, "n=1") {
		t.Fatalf("busy process output %q", got)
	}
}

// TestRunnerIdleReapChecksInFlight: the reaper re-checks, under the lock, that nothing is
// in flight: a Get that won the race keeps the process, state and all.
func TestRunnerIdleReapChecksInFlight(t *testing.T) {
	ctx := context.Background()
	spec := testSpec(base.KindRunner, "echo", "echo")
	spec.IdleTimeout = time.Hour
	rs := NewRunners(map[string]Spec{"echo": spec}, nil)
	defer rs.Close(ctx)
	h, err := rs.Get(ctx, runner.Session{ID: "S"}, "echo")
	if err != nil {
		t.Fatal(err)
	}
	echoOutput(t, h, "1")
	h2, err := rs.Get(ctx, runner.Session{ID: "S"}, "echo")
	if err != nil || h2.Process != h.Process {
		t.Fatalf("second Get: %v", err)
	}
	h.Done()
	// The timer fires as if the timeout had passed, while h2 is in flight.
	rs.reapIdle(h.key, h.entry, time.Nanosecond)
	if got := echoOutput(t, h2, "2"); !strings.Contains(got, "n=2") || !hasSession(rs, "S") {
		t.Fatalf("a process in flight was stopped: %q", got)
	}
	h2.Done()
	// A timer of a use since superseded does nothing either.
	rs.reapIdle(h.key, h.entry, time.Hour)
	if !hasSession(rs, "S") {
		t.Fatal("a process used since the timer was set was stopped")
	}
	rs.reapIdle(h.key, h.entry, time.Nanosecond)
	if hasSession(rs, "S") {
		t.Fatal("an idle process was not stopped")
	}
	waitDead(t, h.Process.PID, 10*time.Second)
}

// TestRunnerIdleRace: executions that start while the reaper stops the session's process
// (an idle timeout shorter than the gap between them) all succeed, each in a process that
// is either the session's previous one or a fresh one marked Replaced.
func TestRunnerIdleRace(t *testing.T) {
	ctx := context.Background()
	spec := testSpec(base.KindRunner, "echo", "echo")
	spec.IdleTimeout = time.Millisecond
	rs := NewRunners(map[string]Spec{"echo": spec}, nil)
	defer rs.Close(ctx)
	var pid int
	for i := range 20 {
		h, err := rs.Get(ctx, runner.Session{ID: "S"}, "echo")
		if err != nil {
			t.Fatalf("Get %d: %v", i, err)
		}
		if i > 0 && h.Process.PID != pid && !h.Replaced {
			t.Fatalf("Get %d: a new process not marked Replaced", i)
		}
		pid = h.Process.PID
		res, err := h.Execute(ctx, runner.ExecuteRequest{Input: "x"}, func(runner.Event) error { return nil })
		if err != nil || res.Status != runner.StatusOK {
			t.Fatalf("execution %d: %+v %v", i, res, err)
		}
		h.Done()
	}
}

// TestRunnerMaxProcesses: at max_processes, a new session's process replaces the least
// recently used one with nothing in flight (its session's next process is Replaced); with
// every process busy, Get is refused with a RunnerBusyError.
func TestRunnerMaxProcesses(t *testing.T) {
	ctx := context.Background()
	spec := testSpec(base.KindRunner, "echo", "echo")
	spec.MaxProcesses = 2
	rs := NewRunners(map[string]Spec{"echo": spec}, nil)
	defer rs.Close(ctx)
	use := func(id string) *Handle {
		t.Helper()
		h, err := rs.Get(ctx, runner.Session{ID: id}, "echo")
		if err != nil {
			t.Fatalf("Get %s: %v", id, err)
		}
		echoOutput(t, h, id)
		return h
	}
	a := use("A")
	a.Done()
	b := use("B")
	b.Done()
	use("A").Done() // A is now the more recently used

	c := use("C") // B's process makes room
	waitDead(t, b.Process.PID, 10*time.Second)
	if hasSession(rs, "B") || !hasSession(rs, "A") || !alive(a.Process.PID) || c.Replaced {
		t.Fatalf("after C: B listed %v, A listed %v alive %v, C replaced %v", hasSession(rs, "B"), hasSession(rs, "A"), alive(a.Process.PID), c.Replaced)
	}

	a2 := use("A") // A and C both in flight now
	_, err := rs.Get(ctx, runner.Session{ID: "D"}, "echo")
	var busy *RunnerBusyError
	if !errors.Is(err, ErrRunnerBusy) || !errors.As(err, &busy) || busy.Runner != "echo" || busy.Max != 2 {
		t.Fatalf("Get with every process busy: %v", err)
	}
	if hasSession(rs, "D") || !alive(a2.Process.PID) || !alive(c.Process.PID) {
		t.Fatal("a refused Get changed the processes")
	}

	c.Done() // C's process makes room for B's
	b2, err := rs.Get(ctx, runner.Session{ID: "B"}, "echo")
	if err != nil {
		t.Fatal(err)
	}
	defer b2.Done()
	if !b2.Fresh || !b2.Replaced || b2.Process.PID == b.Process.PID {
		t.Fatalf("B after its process made room: fresh %v replaced %v", b2.Fresh, b2.Replaced)
	}
	if got := echoOutput(t, b2, "again"); !strings.Contains(got, "n=1") {
		t.Fatalf("B's fresh process output %q", got)
	}
	waitDead(t, c.Process.PID, 10*time.Second)
	if n := len(rs.Statuses()); n != 2 {
		t.Fatalf("%d processes listed, max_processes is 2", n)
	}
	if got := echoOutput(t, a2, "still"); !strings.Contains(got, "n=4") {
		t.Fatalf("A's process lost its state: %q", got)
	}
}
