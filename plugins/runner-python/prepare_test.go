package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/limitgraph/limit/sdk/base"
	"github.com/limitgraph/limit/sdk/runner"
)

// prepared configures a runner and waits until it has prepared for a session: an init
// spawned ahead and the worker compiled.
func prepared(t *testing.T) (*pythonRunner, int) {
	t.Helper()
	r := newRunner(nil)
	if ds := r.Configure(context.Background(), base.ConfigureRequest{Config: []byte(`{}`)}); ds.HasErrors() {
		t.Fatal(ds.Err())
	}
	deadline := time.Now().Add(20 * time.Second)
	for r.compiled.Load() == nil {
		if time.Now().After(deadline) {
			t.Fatal("the worker was not compiled ahead")
		}
		time.Sleep(10 * time.Millisecond)
	}
	r.mu.Lock()
	pre := r.pre
	r.mu.Unlock()
	if pre == nil || pre.exited() {
		t.Fatal("no init was spawned ahead")
	}
	return r, pre.cmd.Process.Pid
}

// A configured runner that waits for its session spawns its init and compiles the
// worker ahead, and the worker started from them behaves as one started from scratch:
// state kept, tracebacks without the worker's own frames.
func TestPreparedWorker(t *testing.T) {
	ctx := context.Background()
	r, initPID := prepared(t)
	if err := r.OpenSession(ctx, runner.Session{ID: "precompiled", WorkDir: newWorkDir(t)}); err != nil {
		t.Fatal(err)
	}
	defer r.CloseSession(ctx)
	if r.sb.compiled == "" {
		t.Fatal("the session's worker was started from source")
	}
	if pid := r.w.cmd.Process.Pid; pid != initPID {
		t.Fatalf("the session's init is %d, not %d spawned ahead", pid, initPID)
	}
	h, err := r.Health(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range h.Isolation {
		if !f.Enforced {
			t.Errorf("not enforced with a prepared init: %+v", f)
		}
	}
	run := func(code string) runner.Result { return runIn(t, r, code) }
	run("x = 41")
	if res := run("print(x + 1)"); res.Status != runner.StatusOK || res.Output != "42\n" {
		t.Fatalf("state: %+v", res)
	}
	res := run("1/0")
	if res.Status != runner.StatusError || !strings.Contains(res.Error, "ZeroDivisionError") || strings.Contains(res.Error, "limit-worker") {
		t.Fatalf("traceback: %+v", res)
	}
}

// A runner opened at once never compiles the worker ahead: that would only compete with
// the session's start.
func TestNoPrecompileWhenOpenedAtOnce(t *testing.T) {
	ctx := context.Background()
	r := newRunner(nil)
	if ds := r.Configure(ctx, base.ConfigureRequest{Config: []byte(`{}`)}); ds.HasErrors() {
		t.Fatal(ds.Err())
	}
	if err := r.OpenSession(ctx, runner.Session{ID: "at-once", WorkDir: newWorkDir(t)}); err != nil {
		t.Fatal(err)
	}
	defer r.CloseSession(ctx)
	time.Sleep(2 * prepareDelay)
	r.mu.Lock()
	pre := r.pre
	r.mu.Unlock()
	if r.compiled.Load() != nil || pre != nil {
		t.Fatal("prepared for a session after the session opened")
	}
}

// An init spawned ahead for a session without network does not serve one that allows
// it: it is discarded, and a runner closed before any session leaves none behind.
func TestPreparedInitDiscarded(t *testing.T) {
	ctx := context.Background()
	r, initPID := prepared(t)
	if err := r.OpenSession(ctx, runner.Session{ID: "net", WorkDir: newWorkDir(t), AllowNetwork: true}); err != nil {
		t.Fatal(err)
	}
	if pid := r.w.cmd.Process.Pid; pid == initPID {
		t.Fatal("a session with network got the init spawned without it")
	}
	_, m := healthMap(t, r)
	if f := m[featNetNS]; f.Enforced {
		t.Fatalf("net_ns reported enforced for a session with network: %+v", f)
	}
	if res, err := r.Execute(ctx, runner.ExecuteRequest{ExecutionID: "x", Input: "print(1)"}, func(runner.Event) error { return nil }); err != nil || res.Status != runner.StatusOK {
		t.Fatalf("execute: %+v %v", res, err)
	}
	waitGone(t, initPID)
	_ = r.CloseSession(ctx)

	r2, initPID2 := prepared(t)
	if err := r2.CloseSession(ctx); err != nil {
		t.Fatal(err)
	}
	waitGone(t, initPID2)
}

func healthMap(t *testing.T, r *pythonRunner) (runner.Health, map[string]runner.IsolationFeature) {
	t.Helper()
	h, err := r.Health(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]runner.IsolationFeature{}
	for _, f := range h.Isolation {
		m[f.Name] = f
	}
	return h, m
}

// waitGone waits until process pid has ended and been reaped.
func waitGone(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err != nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("process %d is still there", pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// runIn executes code in r's open session; the result's Output holds what the code
// printed, then its value.
func runIn(t *testing.T, r *pythonRunner, code string) runner.Result {
	t.Helper()
	var out strings.Builder
	res, err := r.Execute(context.Background(), runner.ExecuteRequest{ExecutionID: "x", Input: code}, func(ev runner.Event) error {
		if ev.Output != nil {
			out.Write(ev.Output.Data)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	res.Output = out.String() + res.Output
	return res
}
