package main

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/limitgraph/limit/sdk/base"
	"github.com/limitgraph/limit/sdk/runner"
)

// runUntilOutput executes code and cancels the call's context once the code's first
// output arrives, as a host whose client went away does: the call returns an error and
// no result reaches the host.
func (s *testSession) runUntilOutput(code string) outcome {
	s.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var once sync.Once
	res, err := s.r.Execute(ctx, runner.ExecuteRequest{ExecutionID: "abandoned", Input: code, Timeout: time.Minute}, func(ev runner.Event) error {
		once.Do(cancel)
		return nil
	})
	return outcome{res: res, err: err}
}

// TestStateResetOfAnAbandonedExecution checks that a state reset is reported by the
// session's next result when the execution during which it happened ended without one (its
// caller went away, so the host got an error, not a result, and keeps the session). It was
// counted as reported, so the next execution found its variables gone with state_reset
// false.
func TestStateResetOfAnAbandonedExecution(t *testing.T) {
	t.Parallel()
	s := open(t, map[string]any{"interrupt_grace": "300ms"}, nil)
	// The worker is killed during the abandoned execution: the code swallows the interrupt.
	s.mustRun("before = 1")
	// The output comes from within the try, so the interrupt cannot land outside it.
	stubborn := "import time\nwhile True:\n    try:\n        print('started', flush=True)\n        time.sleep(30)\n    except KeyboardInterrupt:\n        pass"
	if e := s.runUntilOutput(stubborn); e.err == nil {
		t.Fatalf("the abandoned execution returned no error: %s", e)
	}
	e := s.run("before", 0)
	if !strings.Contains(e.res.Error, "NameError") || !e.res.StateReset {
		t.Errorf("after a kill during an abandoned execution: %s", e)
	}

	// The worker dies between executions: the reset the next execution owes its host is
	// owed by the one after it when that one is abandoned.
	s.mustRun("before = 1")
	initPID := children(s.pid())
	s.mustRun("import os, threading\nthreading.Timer(0.2, lambda: os._exit(7)).start()")
	waitFor(t, 20*time.Second, "a fresh worker", func() bool {
		now := children(s.pid())
		return len(now) == 1 && (len(initPID) != 1 || now[0] != initPID[0])
	})
	if e := s.runUntilOutput("print('started', flush=True)\nimport time; time.sleep(30)"); e.err == nil {
		t.Fatalf("the abandoned execution returned no error: %s", e)
	}
	e = s.run("before", 0)
	if !strings.Contains(e.res.Error, "NameError") || !e.res.StateReset {
		t.Errorf("after a death between executions and an abandoned execution: %s", e)
	}
}

// TestCloseSessionDuringAnExecution closes the session while an execution runs, in this
// process so that the race detector watches both: the execution ends (the worker is
// killed, and the result says the session's close cut it short), and the worker's
// descriptors (its pidfd, which the interrupt signals through, and the memory probe's
// files) are not closed while the execution may still use them.
func TestCloseSessionDuringAnExecution(t *testing.T) {
	t.Parallel()
	r := newRunner(nil)
	if ds := r.Configure(context.Background(), base.ConfigureRequest{Config: []byte(`{"interrupt_grace": "20s"}`)}); ds.HasErrors() {
		t.Fatal(ds.Err())
	}
	if err := r.OpenSession(context.Background(), runner.Session{ID: "close-" + t.Name(), WorkDir: newWorkDir(t)}); err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{})
	var once sync.Once
	done := make(chan error, 1)
	go func() {
		code := "import time\nwhile True:\n    try:\n        print('started', flush=True)\n        time.sleep(30)\n    except KeyboardInterrupt:\n        pass"
		res, err := r.Execute(context.Background(), runner.ExecuteRequest{ExecutionID: "running", Input: code}, func(runner.Event) error {
			once.Do(func() { close(started) })
			return nil
		})
		switch {
		case err != nil:
		case !res.StateReset:
			err = fmt.Errorf("result %+v: the worker was killed, want state_reset", res)
		case res.Status != runner.StatusCancelled || !strings.Contains(res.Error, "session was closed") || strings.Contains(res.Error, "did not stop"):
			// Not "did not stop within 20s of the interrupt": the close killed it at once.
			err = fmt.Errorf("result %+v: want cancelled, saying the session was closed", res)
		}
		done <- err
	}()
	<-started
	if err := r.CloseSession(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
