package plugins

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/limitgraph/limit/internal/syncbuf"
	"github.com/limitgraph/limit/sdk/base"
	"github.com/limitgraph/limit/sdk/runner"
)

// pooledEcho returns runners with one echo runner whose pool holds n processes.
func pooledEcho(t *testing.T, n int, check time.Duration) *Runners {
	t.Helper()
	old := poolCheckInterval
	poolCheckInterval = check
	t.Cleanup(func() { poolCheckInterval = old })
	spec := testSpec(base.KindRunner, "echo", "echo")
	spec.Config = []byte(`{"greeting":"hello"}`)
	spec.Pool = n
	rs := NewRunners(map[string]Spec{"echo": spec}, nil)
	t.Cleanup(func() { rs.Close(context.Background()) })
	return rs
}

// idlePIDs waits until the echo pool holds n idle processes and returns their pids, as
// the health report lists them.
func idlePIDs(t *testing.T, rs *Runners, n int) []int {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		var pids []int
		for _, st := range rs.Statuses() {
			if st.Kind == KindPool && st.Name == "echo" && st.Healthy {
				pids = append(pids, st.PID)
			}
		}
		if len(pids) == n && rs.Idle("echo") == n {
			return pids
		}
		if time.Now().After(deadline) {
			t.Fatalf("the pool holds %v, want %d idle processes", pids, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestPooledProcessStrayOutputNamesSession: what a pre-started process writes outside its
// logger once a session took it is logged with the session's id, as for a process started
// for the session (the pool's logger, made before, named only the pool).
func TestPooledProcessStrayOutputNamesSession(t *testing.T) {
	old := poolCheckInterval
	poolCheckInterval = time.Second
	t.Cleanup(func() { poolCheckInterval = old })
	var logs syncbuf.Buffer
	spec := testSpec(base.KindRunner, "echo", "echo")
	spec.Pool = 1
	rs := NewRunners(map[string]Spec{"echo": spec}, hclog.New(&hclog.LoggerOptions{Output: &logs, Level: hclog.Info}))
	t.Cleanup(func() { rs.Close(context.Background()) })
	idlePIDs(t, rs, 1)
	ctx := context.Background()
	h, err := rs.Get(ctx, runner.Session{ID: "S-stray"}, "echo")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.Process.Impl.(runner.Runner).Execute(ctx, runner.ExecuteRequest{ExecutionID: "x", Input: "stray"}, func(runner.Event) error { return nil }); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		for l := range strings.Lines(logs.String()) {
			if strings.Contains(l, "stray line of an execution") {
				if !strings.Contains(l, "pool=echo") || !strings.Contains(l, "session=S-stray") {
					t.Fatalf("stray output logged as %q, want the pool and the session", l)
				}
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the stray line is not in the log:\n%s", logs.String())
		}
	}
}

func TestPoolHandsOutDistinctProcesses(t *testing.T) {
	ctx := context.Background()
	rs := pooledEcho(t, 2, time.Second)
	idle := idlePIDs(t, rs, 2)
	seenIdle := map[int]bool{}
	for _, pid := range idle {
		seenIdle[pid] = true
	}
	handed := map[int]string{} // pid → the one session it went to
	for i := 0; i < 6; i++ {
		id := fmt.Sprintf("S%d", i)
		h, err := rs.Get(ctx, runner.Session{ID: id}, "echo")
		if err != nil {
			t.Fatal(err)
		}
		if prev, ok := handed[h.Process.PID]; ok {
			t.Fatalf("process %d handed to %s after %s", h.Process.PID, id, prev)
		}
		handed[h.Process.PID] = id
		if !h.Fresh {
			t.Fatalf("session %s got a process that is not fresh", id)
		}
		if got := echoOutput(t, h, "x"); !strings.Contains(got, "session="+id) || !strings.Contains(got, "n=1") {
			t.Fatalf("session %s: %q", id, got)
		}
		if i == 0 && !seenIdle[h.Process.PID] {
			t.Fatalf("the first session got pid %d, not one of the idle processes %v", h.Process.PID, idle)
		}
		for _, st := range rs.Statuses() {
			if st.Kind == KindPool {
				seenIdle[st.PID] = true
				if s, ok := handed[st.PID]; ok {
					t.Fatalf("process %d of session %s is listed idle in the pool", st.PID, s)
				}
			}
		}
	}
	// Every session kept its own process: a second Get returns it, with its state.
	for pid, id := range handed {
		h, err := rs.Get(ctx, runner.Session{ID: id}, "echo")
		if err != nil || h.Process.PID != pid || h.Fresh {
			t.Fatalf("second Get for %s: pid %d (want %d) fresh %v err %v", id, h.Process.PID, pid, h.Fresh, err)
		}
		if got := echoOutput(t, h, "y"); !strings.Contains(got, "session="+id) || !strings.Contains(got, "n=2") {
			t.Fatalf("session %s after a second Get: %q", id, got)
		}
	}
	// The pool refills with processes no session has had, and a released session's
	// process is killed, not returned.
	refill := idlePIDs(t, rs, 2)
	for _, pid := range refill {
		if s, ok := handed[pid]; ok {
			t.Fatalf("the refilled pool holds process %d of session %s", pid, s)
		}
	}
	var s0 int
	for pid, id := range handed {
		if id == "S0" {
			s0 = pid
		}
	}
	rs.Release(ctx, "S0")
	waitDead(t, s0, 5*time.Second)
	h, err := rs.Get(ctx, runner.Session{ID: "S0"}, "echo")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := handed[h.Process.PID]; ok {
		t.Fatalf("S0 opened again in process %d, which a session had before", h.Process.PID)
	}
}

func TestPoolReplacesDeadIdleProcess(t *testing.T) {
	rs := pooledEcho(t, 1, 20*time.Millisecond)
	old := idlePIDs(t, rs, 1)[0]
	if err := syscall.Kill(old, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitDead(t, old, 5*time.Second)
	deadline := time.Now().Add(20 * time.Second)
	for {
		sts := rs.Statuses()
		if len(sts) == 1 && sts[0].PID != old && sts[0].Healthy && sts[0].Restarts == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the dead idle process %d was not replaced: %+v", old, sts)
		}
		time.Sleep(10 * time.Millisecond)
	}
	h, err := rs.Get(context.Background(), runner.Session{ID: "S"}, "echo")
	if err != nil {
		t.Fatal(err)
	}
	if h.Process.PID == old || !alive(h.Process.PID) {
		t.Fatalf("session got pid %d (the dead one was %d)", h.Process.PID, old)
	}
	if got := echoOutput(t, h, "x"); !strings.Contains(got, "session=S") {
		t.Fatalf("output %q", got)
	}
}

// A process that dies after the pool's last look is never handed to a session: it
// gets a live one.
func TestPoolDeadWhenTaken(t *testing.T) {
	rs := pooledEcho(t, 1, time.Hour)
	old := idlePIDs(t, rs, 1)[0]
	if err := syscall.Kill(old, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	h, err := rs.Get(context.Background(), runner.Session{ID: "S"}, "echo")
	if err != nil {
		t.Fatal(err)
	}
	if h.Process.PID == old {
		t.Fatalf("session got the killed process %d", old)
	}
	if got := echoOutput(t, h, "x"); !strings.Contains(got, "session=S") {
		t.Fatalf("output %q", got)
	}
}

// children lists the live child processes of this test process.
func children(t *testing.T) []int {
	t.Helper()
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", os.Getpid()))
	if err != nil {
		t.Fatal(err)
	}
	var out []int
	for _, task := range tasks {
		b, _ := os.ReadFile(task)
		for _, f := range strings.Fields(string(b)) {
			if pid, err := strconv.Atoi(f); err == nil && alive(pid) {
				out = append(out, pid)
			}
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

func TestPoolCloseKillsEverything(t *testing.T) {
	ctx := context.Background()
	before := children(t)
	rs := pooledEcho(t, 2, time.Second)
	idle := idlePIDs(t, rs, 2)
	h, err := rs.Get(ctx, runner.Session{ID: "S"}, "echo")
	if err != nil {
		t.Fatal(err)
	}
	rs.Close(ctx)
	for _, pid := range append(idle, h.Process.PID) {
		if alive(pid) {
			t.Errorf("process %d survived Close", pid)
		}
	}
	if left := children(t); !slices.Equal(left, before) {
		t.Errorf("child processes after Close %v, before %v", left, before)
	}
	if rs.Idle("echo") != 0 || len(rs.Statuses()) != 0 {
		t.Errorf("after Close: idle %d, statuses %+v", rs.Idle("echo"), rs.Statuses())
	}
	if _, err := rs.Get(ctx, runner.Session{ID: "T"}, "echo"); err == nil {
		t.Error("Get after Close succeeded")
	}

	// Closed while its first process is starting: that one is killed too.
	rs2 := pooledEcho(t, 2, time.Second)
	time.Sleep(5 * time.Millisecond)
	rs2.Close(ctx)
	if left := children(t); !slices.Equal(left, before) {
		t.Errorf("child processes after closing a filling pool %v, before %v", left, before)
	}
}

// A runner that cannot start shows in the health report as an unhealthy pool entry with
// the reason, and a session still gets the error of its own attempt.
func TestPoolStartFailureIsReported(t *testing.T) {
	old := poolCheckInterval
	poolCheckInterval = time.Second
	t.Cleanup(func() { poolCheckInterval = old })
	spec := testSpec(base.KindRunner, "echo", "echo")
	spec.Config = []byte(`{"greeting":"bad"}`)
	spec.Pool = 1
	rs := NewRunners(map[string]Spec{"echo": spec}, nil)
	defer rs.Close(context.Background())
	deadline := time.Now().Add(20 * time.Second)
	for {
		sts := rs.Statuses()
		if len(sts) == 1 && sts[0].Kind == KindPool && !sts[0].Healthy && strings.Contains(sts[0].LastError, "greeting") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("statuses %+v", sts)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := rs.Get(context.Background(), runner.Session{ID: "S"}, "echo"); err == nil || !strings.Contains(err.Error(), "greeting") {
		t.Fatalf("Get: %v", err)
	}
}

// TestPingOfAStoppedProcess: a plugin process that is alive but does not answer (stopped,
// frozen) fails a health ping after pingTimeout instead of holding the caller for good:
// go-plugin's ping has no deadline, and a session taking such a process from the pool
// checked whether it was dead with one, which held the session's Get (and its delete)
// forever.
func TestPingOfAStoppedProcess(t *testing.T) {
	old := pingTimeout
	pingTimeout = 200 * time.Millisecond
	t.Cleanup(func() { pingTimeout = old })
	p, err := Launch(context.Background(), testSpec(base.KindRunner, "echo", "echo"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Kill)
	if err := p.Ping(); err != nil {
		t.Fatalf("ping of the running process: %v", err)
	}
	if err := syscall.Kill(p.PID, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	// Whatever happens, the stopped process must not outlive the test.
	t.Cleanup(func() { _ = syscall.Kill(p.PID, syscall.SIGKILL) })
	waitStopped(t, p.PID)
	done := make(chan error, 1)
	go func() { done <- p.Ping() }()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "no answer within") {
			t.Fatalf("ping of the stopped process: %v, want no answer", err)
		}
	case <-time.After(30 * time.Second):
		_ = syscall.Kill(p.PID, syscall.SIGKILL)
		t.Fatal("the ping of a stopped process never returned")
	}
	if err := syscall.Kill(p.PID, syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	if err := p.Ping(); err != nil {
		t.Fatalf("ping once it runs again: %v", err)
	}
}

// waitStopped waits until every thread of process pid is stopped. A SIGSTOP stops a
// process's threads one by one: the thread the kernel hands the signal to stops the
// others once it runs, which on a loaded machine can take long enough for another thread
// to answer a ping meanwhile (TestPingOfAStoppedProcess failed so, about once in 40 runs
// under make test).
func waitStopped(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
		if err != nil {
			t.Fatal(err)
		}
		stopped := len(tasks) > 0
		for _, task := range tasks {
			stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/stat", pid, task.Name()))
			if err != nil {
				stopped = false // a thread that just ended, or one not readable yet
				break
			}
			// The state follows the command name in parentheses, which may hold spaces.
			i := strings.LastIndexByte(string(stat), ')')
			if i < 0 || i+2 >= len(stat) || (stat[i+2] != 'T' && stat[i+2] != 't') {
				stopped = false
				break
			}
		}
		if stopped {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("process %d: not every thread stopped within 20s of SIGSTOP", pid)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestPoolReportsRunnerUnhealthyBeforeSessions: a runner that says, before any session,
// that it is not healthy (the Python runner on a machine where it cannot isolate code)
// makes its pool's health entries unhealthy with its message, whether or not a process is
// idle, and keeps saying so once every idle process is taken.
func TestPoolReportsRunnerUnhealthyBeforeSessions(t *testing.T) {
	ctx := context.Background()
	old := poolCheckInterval
	poolCheckInterval = 20 * time.Millisecond
	t.Cleanup(func() { poolCheckInterval = old })
	spec := testSpec(base.KindRunner, "echo", "echo")
	spec.Config = []byte(`{"greeting":"sick"}`)
	spec.Pool = 1
	rs := NewRunners(map[string]Spec{"echo": spec}, nil)
	t.Cleanup(func() { rs.Close(context.Background()) })

	sick := func() []Status {
		var out []Status
		for _, st := range rs.Statuses() {
			if st.Kind == KindPool && st.Name == "echo" && !st.Healthy && strings.Contains(st.Detail, "sick on purpose") &&
				len(st.Isolation) == 1 {
				out = append(out, st)
			}
		}
		return out
	}
	for deadline := time.Now().Add(20 * time.Second); len(sick()) != 1 || rs.Idle("echo") != 1; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the pool does not report the runner unhealthy: %+v", rs.Statuses())
		}
	}
	if st := sick()[0]; st.PID == 0 {
		t.Errorf("the idle process's entry has no pid: %+v", st)
	}
	// The runner is still usable (it decides for itself what to refuse); with its idle
	// process taken, the pool still says it is unhealthy.
	h, err := rs.Get(ctx, runner.Session{ID: "S1"}, "echo")
	if err != nil {
		t.Fatal(err)
	}
	h.Done()
	if n := len(sick()); n != 1 {
		t.Errorf("after a take: %d unhealthy pool entries, want 1: %+v", n, rs.Statuses())
	}
}

// TestNoPoolReportsRunnerUnhealthyBeforeSessions: a runner without pre-started processes
// (pool = 0) is still asked, before any session, how it fares on this machine: a process
// is started for the purpose and stopped, and a runner that says it is not healthy has
// an unhealthy entry with its message (no process kept), as with a pool. Sessions still
// get processes of their own.
func TestNoPoolReportsRunnerUnhealthyBeforeSessions(t *testing.T) {
	ctx := context.Background()
	spec := testSpec(base.KindRunner, "echo", "echo")
	spec.Config = []byte(`{"greeting":"sick"}`)
	spec.Pool = 0
	rs := NewRunners(map[string]Spec{"echo": spec}, nil)
	t.Cleanup(func() { rs.Close(context.Background()) })

	sick := func() []Status {
		var out []Status
		for _, st := range rs.Statuses() {
			if st.Kind == KindPool && st.Name == "echo" && !st.Healthy && strings.Contains(st.Detail, "sick on purpose") && len(st.Isolation) == 1 {
				out = append(out, st)
			}
		}
		return out
	}
	for deadline := time.Now().Add(20 * time.Second); len(sick()) != 1; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the runner is not reported unhealthy before any session: %+v", rs.Statuses())
		}
	}
	if st := sick()[0]; st.PID != 0 || rs.Idle("echo") != 0 {
		t.Errorf("a process is kept for the health check: %+v, %d idle", st, rs.Idle("echo"))
	}
	h, err := rs.Get(ctx, runner.Session{ID: "S1"}, "echo")
	if err != nil {
		t.Fatal(err)
	}
	h.Done()
	if n := len(sick()); n != 1 {
		t.Errorf("with a session open: %d unhealthy entries, want 1: %+v", n, rs.Statuses())
	}
	for _, rc := range rs.RestartCounts() {
		if rc.Kind == KindPool {
			t.Errorf("a runner without a pool counts pool restarts: %+v", rc)
		}
	}
}
