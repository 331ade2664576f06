package plugins

import (
	"context"
	"errors"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/limitgraph/limit/internal/syncbuf"
	"github.com/limitgraph/limit/sdk/base"
	"github.com/limitgraph/limit/sdk/runner"
)

// waitLog waits until logs holds want.
func waitLog(t *testing.T, logs *syncbuf.Buffer, want string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(logs.String(), want); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no %q in the log:\n%s", want, logs.String())
		}
	}
}

// TestPluginHoldsOnSIGTERM: a SIGTERM from outside (systemd stopping limitd signals every
// process of its unit) does not end a plugin while its host lives: the host still needs
// it to finish and record the running executions, and stops it itself.
func TestPluginHoldsOnSIGTERM(t *testing.T) {
	ctx := context.Background()
	var logs syncbuf.Buffer
	spec := testSpec(base.KindStorage, "mem", "memstore")
	spec.LogLevel = "debug"
	m, err := StartManaged(ctx, spec, hclog.New(&hclog.LoggerOptions{Output: &logs, Level: hclog.Debug}), 20*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	pid := m.Status().PID
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitLog(t, &logs, "SIGTERM ignored")
	st := NewStorage(m)
	if err := st.Put(ctx, "ns", []byte("k"), []byte("v")); err != nil {
		t.Fatalf("put after SIGTERM: %v", err)
	}
	if s := m.Status(); s.PID != pid || !s.Healthy || s.Restarts != 0 {
		t.Fatalf("status after SIGTERM = %+v (pid was %d)", s, pid)
	}
}

// TestManagedStoppingDoesNotRestart: once the host shuts down, a supervised plugin whose
// process ends is not restarted, its end is logged at INFO (not ERROR), and callers are
// told at once that it is unavailable.
func TestManagedStoppingDoesNotRestart(t *testing.T) {
	ctx := context.Background()
	var logs syncbuf.Buffer
	m, err := StartManaged(ctx, testSpec(base.KindStorage, "mem", "memstore"), hclog.New(&hclog.LoggerOptions{Output: &logs, Level: hclog.Info}), 20*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	m.Stopping()
	pid := m.Status().PID
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitLog(t, &logs, "not restarted")
	waitLog(t, &logs, "plugin process exited")
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := m.Current(cctx); !errors.Is(err, ErrUnavailable) || cctx.Err() != nil {
		t.Fatalf("current after the end: %v (context %v), want unavailable at once", err, cctx.Err())
	}
	out := logs.String()
	if strings.Contains(out, "[ERROR]") || strings.Contains(out, "restarted") && !strings.Contains(out, "not restarted") {
		t.Errorf("an end while stopping logged as news, or restarted:\n%s", out)
	}
	if s := m.Status(); s.Restarts != 0 || s.PID != 0 {
		t.Errorf("status = %+v, want no process and no restart", s)
	}
}

// TestRunnersStoppingDoNotReplace: once the host shuts down, a session's runner process
// that ended is not replaced (Get says why), and the pool stops and refills no more.
func TestRunnersStoppingDoNotReplace(t *testing.T) {
	ctx := context.Background()
	var logs syncbuf.Buffer
	spec := testSpec(base.KindRunner, "echo", "echo")
	spec.Config = []byte(`{"greeting":"hello"}`)
	rs := NewRunners(map[string]Spec{"echo": spec}, hclog.New(&hclog.LoggerOptions{Output: &logs, Level: hclog.Info}))
	defer rs.Close(ctx)
	h, err := rs.Get(ctx, runner.Session{ID: "S"}, "echo")
	if err != nil {
		t.Fatal(err)
	}
	h.Done()
	rs.Stopping()
	if err := syscall.Kill(h.Process.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); !h.Process.Exited(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the exit was not noticed")
		}
	}
	if h2, err := rs.Get(ctx, runner.Session{ID: "S"}, "echo"); err == nil || !strings.Contains(err.Error(), "shuts down") {
		if h2 != nil {
			t.Errorf("a fresh process (pid %d) replaced one that ended while the host shuts down", h2.Process.PID)
		}
		t.Fatalf("get after the end: %v", err)
	}
	waitLog(t, &logs, "plugin process exited")
	if out := logs.String(); strings.Contains(out, "[ERROR]") || rs.Crashes() != 0 {
		t.Errorf("an end while stopping logged as news or counted as a crash (%d):\n%s", rs.Crashes(), out)
	}
}
