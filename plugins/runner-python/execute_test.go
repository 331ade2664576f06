package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/limitgraph/limit/host/version"
	"github.com/limitgraph/limit/sdk/base"
	"github.com/limitgraph/limit/sdk/runner"
)

// These tests drive the real plugin binary through the runner client (gRPC), as the host
// does.

func TestPluginInfoAndSchema(t *testing.T) {
	t.Parallel()
	l := launch(t, nil)
	info, err := l.r.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if info.Name != "python" || info.Kind != base.KindRunner || info.Version != version.Version {
		t.Errorf("info = %+v", info)
	}
	schema, err := l.r.Client.ConfigSchema(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, a := range schema.Attributes {
		names = append(names, a.Name)
	}
	for _, want := range []string{"interpreter", "venv", "env", "timeout", "memory_limit", "cpu_limit", "max_processes", "max_output_bytes", "max_file_bytes"} {
		if !strings.Contains(strings.Join(names, " "), want) {
			t.Errorf("schema lacks %s: %v", want, names)
		}
	}
	ds := l.r.Configure(context.Background(), base.ConfigureRequest{Config: []byte(`{"memory_limit": "huge"}`), ValidateOnly: true})
	if !ds.HasErrors() || ds[0].Path[0] != "memory_limit" {
		t.Errorf("bad config accepted through the plugin: %v", ds)
	}
}

func TestStatePersists(t *testing.T) {
	t.Parallel()
	s := open(t, nil, nil)
	s.mustRun("x = 41")
	if e := s.mustRun("print(x + 1)"); e.stdout != "42\n" {
		t.Errorf("print(x + 1) wrote %q", e.stdout)
	}
	// A trailing expression is the result's output, like in a notebook.
	if e := s.mustRun("def f(a):\n    return a * 2\nf(x)"); e.res.Output != "82" || e.stdout != "" {
		t.Errorf("output %q stdout %q", e.res.Output, e.stdout)
	}
	if e := s.mustRun("import math\nmath.floor(f(1.25))"); e.res.Output != "2" {
		t.Errorf("output %q", e.res.Output)
	}
	e := s.mustRun("print('a'); import sys; print('b', file=sys.stderr)")
	if e.stdout != "a\n" || e.stderr != "b\n" {
		t.Errorf("stdout %q stderr %q", e.stdout, e.stderr)
	}
	// Duration crosses the protocol in whole milliseconds; the exact figure is in Extra.
	if e.res.Usage.Extra["duration_us"] <= 0 || e.res.Usage.PeakMemoryBytes == 0 || e.res.ExitCode != 0 || e.res.StateReset {
		t.Errorf("result %+v", e.res)
	}
	// Output of a child process is captured too: it writes to the same pipes.
	if e := s.mustRun("import subprocess; subprocess.run(['echo', 'from a child'])"); e.stdout != "from a child\n" {
		t.Errorf("child output %q", e.stdout)
	}
	// multiprocessing works: processes, pipes and semaphores in the sandbox's /dev/shm.
	if e := s.mustRun("from multiprocessing import Pool\nwith Pool(2) as p:\n    print(p.map(abs, [-1, -2]))"); e.stdout != "[1, 2]\n" {
		t.Errorf("multiprocessing: %s", e)
	}
	// Temporary files go to the work dir: it is the only place the code may write.
	if e := s.mustRun("import tempfile, os\nwith tempfile.NamedTemporaryFile() as f:\n    print(os.path.dirname(f.name) == os.getcwd())"); e.stdout != "True\n" {
		t.Errorf("tempfile: %s", e)
	}
}

func TestOutputStreamsWhileRunning(t *testing.T) {
	t.Parallel()
	s := open(t, nil, nil)
	// The code prints, then waits for a file the test creates (in its work dir, as the
	// worker sees it) only once that first line has reached it: unless output streams
	// while the code runs, it waits in vain.
	goFile := s.workerPath(filepath.Join(s.sess.WorkDir, "go"))
	code := "import os, time\nprint('first')\nfor _ in range(400):\n    if os.path.exists('go'):\n        break\n    time.sleep(0.05)\nprint('second' if os.path.exists('go') else 'not streamed')"
	var out strings.Builder
	res, err := s.r.Execute(context.Background(), runner.ExecuteRequest{ExecutionID: "stream", Input: code}, func(ev runner.Event) error {
		if ev.Output != nil {
			out.Write(ev.Output.Data)
			if strings.Contains(out.String(), "first\n") {
				return os.WriteFile(goFile, nil, 0o644)
			}
		}
		return nil
	})
	if err != nil || res.Status != runner.StatusOK || out.String() != "first\nsecond\n" {
		t.Fatalf("%v %+v %q", err, res, out.String())
	}
}

func TestErrors(t *testing.T) {
	t.Parallel()
	s := open(t, nil, nil)
	s.mustRun("kept = 'yes'")
	tests := []struct {
		code     string
		status   runner.Status
		exit     int
		contains []string
	}{
		{"1/0", runner.StatusError, 1, []string{"Traceback", "ZeroDivisionError: division by zero", "1/0"}},
		{"def g():\n    raise ValueError('bad')\ng()", runner.StatusError, 1, []string{"line 2, in g", "ValueError: bad"}},
		{"exec('1/0')", runner.StatusError, 1, []string{"<string>", "ZeroDivisionError"}},
		{"x = (", runner.StatusError, 1, []string{"SyntaxError"}},
		{"import sys; sys.exit(3)", runner.StatusError, 3, []string{"SystemExit: 3"}},
		{"raise KeyboardInterrupt", runner.StatusError, 130, []string{"KeyboardInterrupt"}},
		{"import sys; sys.exit(0)", runner.StatusOK, 0, nil},
	}
	for _, tt := range tests {
		e := s.run(tt.code, 0)
		if e.err != nil || e.res.Status != tt.status || e.res.ExitCode != tt.exit || e.res.StateReset {
			t.Errorf("%q: %s", tt.code, e)
			continue
		}
		for _, c := range tt.contains {
			if !strings.Contains(e.res.Error, c) {
				t.Errorf("%q: error %q lacks %q", tt.code, e.res.Error, c)
			}
		}
		if strings.Contains(e.res.Error, "limit-worker") {
			t.Errorf("%q: the worker's own frames show in %q", tt.code, e.res.Error)
		}
	}
	if e := s.mustRun("kept"); e.res.Output != "'yes'" {
		t.Errorf("state lost after errors: %s", e)
	}
}

func TestConcurrentExecutionsAreSerialized(t *testing.T) {
	t.Parallel()
	s := open(t, nil, nil)
	s.mustRun("n = 0")
	var wg sync.WaitGroup
	errs := make(chan string, 8)
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			e := s.run("v = n\nimport time; time.sleep(0.01)\nn = v + 1", 0)
			if e.err != nil || e.res.Status != runner.StatusOK {
				errs <- e.String()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	if e := s.mustRun("n"); e.res.Output != "8" {
		t.Errorf("n = %s after 8 serialized increments", e.res.Output)
	}
}

func TestInfiniteLoopIsInterrupted(t *testing.T) {
	t.Parallel()
	// A generous grace: a loaded machine must not turn the interrupt into a kill.
	s := open(t, map[string]any{"interrupt_grace": "20s"}, nil)
	s.mustRun("before = 1")
	e := s.run("while True:\n    pass", 300*time.Millisecond)
	if e.res.Status != runner.StatusTimeout || e.res.StateReset || !strings.Contains(e.res.Error, "timed out after 300ms") ||
		!strings.Contains(e.res.Error, "state is kept") {
		t.Fatalf("%s", e)
	}
	if e := s.mustRun("before"); e.res.Output != "1" {
		t.Errorf("state lost: %s", e)
	}
}

func TestStubbornLoopIsKilled(t *testing.T) {
	t.Parallel()
	s := open(t, map[string]any{"interrupt_grace": "300ms"}, nil)
	s.mustRun("before = 1")
	code := "while True:\n    try:\n        while True:\n            pass\n    except KeyboardInterrupt:\n        pass"
	e := s.run(code, 300*time.Millisecond)
	if e.res.Status != runner.StatusTimeout || !e.res.StateReset || !strings.Contains(e.res.Error, "worker was killed") {
		t.Fatalf("%s", e)
	}
	e = s.run("before", 0)
	if e.res.Status != runner.StatusError || !strings.Contains(e.res.Error, "NameError") || e.res.StateReset {
		t.Errorf("after the kill: %s", e)
	}
	s.mustRun("print('alive')")
}

// TestZombiesAreNotStrays: children the code exited without waiting for (zombies, which
// Python never reaps by itself) are not processes an interrupted execution left running.
// The sweep after a timeout neither signals them round after round nor warns about them,
// while a live child that ignores the interrupt is killed, once, and the sweep ends.
func TestZombiesAreNotStrays(t *testing.T) {
	t.Parallel()
	l, logs := launchLogged(t, map[string]any{"interrupt_grace": "20s"})
	s := openOn(t, l, nil)
	s.mustRun("import os\nfor i in range(3):\n    if os.fork() == 0:\n        os._exit(0)")
	worker := s.workerPID()
	waitFor(t, 10*time.Second, "three zombies in the worker's group", func() bool {
		return groupStates(worker)['Z'] == 3
	})

	e := s.run("import time\ntime.sleep(60)", time.Second)
	if e.res.Status != runner.StatusTimeout || e.res.StateReset {
		t.Fatalf("%s", e)
	}
	if strings.Contains(logs.String(), "keep appearing") || strings.Contains(logs.String(), "interrupted execution left") {
		t.Fatalf("zombies taken for strays:\n%s", logs)
	}
	if n := groupStates(worker)['Z']; n != 3 {
		t.Errorf("%d zombies, want the 3 the code left", n)
	}

	// A child that ignores SIGINT (inherited, so from its first instruction) outlives the
	// interrupt: the sweep kills it and stops at its zombie.
	code := "import os, signal, time\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\n" +
		"if os.fork() == 0:\n    time.sleep(600)\n    os._exit(0)\n" +
		"signal.signal(signal.SIGINT, signal.default_int_handler)\ntime.sleep(60)"
	e = s.run(code, time.Second)
	if e.res.Status != runner.StatusTimeout || e.res.StateReset {
		t.Fatalf("%s", e)
	}
	// The plugin's log lines reach the host through its stderr, which may lag the answer.
	killed := regexp.MustCompile(`interrupted execution left:.* pids=\[\d+\]`)
	waitFor(t, 10*time.Second, "the log line of the stray killed", func() bool { return killed.MatchString(logs.String()) })
	if out := logs.String(); strings.Contains(out, "keep appearing") {
		t.Fatalf("want one live stray killed, no warning:\n%s", out)
	}
	if st := groupStates(worker); st['Z'] != 4 || len(st) != 1 {
		t.Errorf("worker's group (but the worker) after the sweep: %v, want 4 zombies", st)
	}
	s.mustRun("print('alive')")
}

// workerPID is the host pid of the session's worker, from its health report.
func (s *testSession) workerPID() int {
	s.t.Helper()
	h, _ := s.health()
	var pid int
	if _, rest, ok := strings.Cut(h.Message, "worker pid "); !ok {
		s.t.Fatalf("no worker pid in %q", h.Message)
	} else if _, err := fmt.Sscanf(rest, "%d", &pid); err != nil {
		s.t.Fatalf("no worker pid in %q: %v", h.Message, err)
	}
	return pid
}

// groupStates counts the processes of process group pgrp, its leader aside, by state.
func groupStates(pgrp int) map[byte]int {
	n := map[byte]int{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == pgrp {
			continue
		}
		if st, g := procStat(pid); g == pgrp {
			n[st]++
		}
	}
	return n
}

func TestCancel(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		grace string
		code  string
		reset bool
	}{
		{"interruptible", "20s", "import time; time.sleep(30)", false},
		{"stubborn", "300ms", "while True:\n    try:\n        import time; time.sleep(30)\n    except KeyboardInterrupt:\n        pass", true},
	}
	for _, tt := range tests {
		s := open(t, map[string]any{"interrupt_grace": tt.grace}, nil)
		s.mustRun("before = 1")
		ctx := context.Background()
		if found, err := s.r.Cancel(ctx, "nope"); err != nil || found {
			t.Errorf("cancel of an unknown execution: %v %v", found, err)
		}
		done := make(chan outcome, 1)
		id := "cancel-" + tt.name
		go func() { done <- s.runID(ctx, id, tt.code, time.Minute) }()
		var found bool
		for deadline := time.Now().Add(10 * time.Second); !found && time.Now().Before(deadline); {
			time.Sleep(50 * time.Millisecond)
			var err error
			if found, err = s.r.Cancel(ctx, id); err != nil {
				t.Fatal(err)
			}
		}
		if !found {
			t.Fatalf("%s: Cancel never found the running execution", tt.name)
		}
		e := <-done
		if e.res.Status != runner.StatusCancelled || e.res.StateReset != tt.reset {
			t.Errorf("%s: %s", tt.name, e)
		}
		// The stubborn one lost the state, the other kept it.
		if e := s.run("before", 0); strings.Contains(e.res.Error, "NameError") != tt.reset {
			t.Errorf("%s: %s", tt.name, e)
		}
		s.mustRun("print('alive')")
	}
}

func TestHostGoingAwayInterrupts(t *testing.T) {
	t.Parallel()
	s := open(t, map[string]any{"interrupt_grace": "20s"}, nil)
	s.mustRun("before = 1")
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	e := s.runID(ctx, "gone", "import time; time.sleep(30)", time.Minute)
	if e.err == nil {
		t.Errorf("no error when the caller went away: %s", e)
	}
	// The interrupted code left the worker idle and its state intact.
	if e := s.mustRun("before"); e.res.Output != "1" {
		t.Errorf("%s", e)
	}
}

func TestPrint100MB(t *testing.T) {
	t.Parallel()
	s := open(t, map[string]any{"max_output_bytes": "1MiB"}, nil)
	e := s.run("import sys\nchunk = 'x' * 10**6\nfor _ in range(100):\n    sys.stdout.write(chunk)\nprint('never shown')", 0)
	if e.res.Status != runner.StatusOK || !e.res.Truncated {
		t.Fatalf("%s", e)
	}
	// stdout gets all of the budget but stderr's reserve.
	marker := fmt.Sprintf(truncationMarker, "stdout", 1<<20, "stdout")
	if !strings.HasSuffix(e.stdout, marker) || len(e.stdout) != 1<<20-streamReserveMax+len(marker) || strings.Contains(e.stdout, "never") {
		t.Errorf("stdout has %d bytes, ends %q", len(e.stdout), e.stdout[max(0, len(e.stdout)-120):])
	}
	// A huge expression value is cut to the same limit.
	e = s.mustRun("'y' * 3_000_000")
	if len(e.res.Output) > 1<<20+8 || !e.res.Truncated {
		t.Errorf("value of %d bytes, truncated=%v", len(e.res.Output), e.res.Truncated)
	}
	if e := s.mustRun("print('alive')"); e.stdout != "alive\n" || e.res.Truncated {
		t.Errorf("%s", e)
	}
}

// TestStderrAfterStdoutFlood checks that a stream flooded past max_output_bytes does not
// silence the other: each keeps its reserve, and each says where it was cut.
func TestStderrAfterStdoutFlood(t *testing.T) {
	t.Parallel()
	s := open(t, nil, nil) // max_output_bytes: 1 MiB
	const budget, reserve = 1 << 20, streamReserveMax
	stdoutCut := fmt.Sprintf(truncationMarker, "stdout", budget, "stdout")
	stderrCut := fmt.Sprintf(truncationMarker, "stderr", budget, "stderr")
	e := s.run("import sys\nsys.stdout.write('0123456789' * 300_000)\nsys.stdout.flush()\nsys.stderr.write('E' * 2_000_000)\nsys.stderr.flush()\nraise ValueError('the end')", 0)
	if e.res.Status != runner.StatusError || !e.res.Truncated || !strings.Contains(e.res.Error, "ValueError: the end") {
		t.Fatalf("%s", e)
	}
	if !strings.HasSuffix(e.stdout, stdoutCut) || len(e.stdout) != budget-reserve+len(stdoutCut) {
		t.Errorf("stdout has %d bytes, ends %q", len(e.stdout), e.stdout[max(0, len(e.stdout)-120):])
	}
	if e.stderr != strings.Repeat("E", reserve)+stderrCut {
		t.Errorf("stderr has %d bytes, ends %q", len(e.stderr), e.stderr[max(0, len(e.stderr)-120):])
	}
	// The other way round: warnings flood stderr, the answer still reaches stdout.
	e = s.run("import sys\nsys.stderr.write('W' * 2_000_000)\nsys.stderr.flush()\nprint('answer: 42')", 0)
	if e.res.Status != runner.StatusOK || !e.res.Truncated || e.stdout != "answer: 42\n" ||
		!strings.HasSuffix(e.stderr, stderrCut) || len(e.stderr) != budget-reserve+len(stderrCut) {
		t.Errorf("%s", e)
	}
}

// TestErrorTextCapped checks that an exception's text, which the code chooses, is held to
// the session's max_output_bytes like its output, keeping the traceback's start and end.
func TestErrorTextCapped(t *testing.T) {
	t.Parallel()
	const budget = 1000
	s := open(t, nil, func(sess *runner.Session) { sess.Limits.MaxOutputBytes = budget })
	e := s.run("def f():\n    raise ValueError('x' * 5_000_000 + ' the end')\nf()", 0)
	if e.res.Status != runner.StatusError || !e.res.Truncated {
		t.Fatalf("%s", e)
	}
	if len(e.res.Error) > budget+len(errorCutMarker)+20 || !strings.HasPrefix(e.res.Error, "Traceback") ||
		!strings.HasSuffix(e.res.Error, "x the end\n") || !strings.Contains(e.res.Error, "[error truncated: max_output_bytes of 1000 bytes reached;") {
		t.Errorf("error of %d bytes: %q", len(e.res.Error), clip(e.res.Error))
	}
	// Short errors are whole, and the flag stays off.
	if e := s.run("raise KeyError('k')", 0); !strings.HasSuffix(e.res.Error, "KeyError: 'k'\n") || e.res.Truncated || strings.Contains(e.res.Error, "truncated") {
		t.Errorf("%s", e)
	}
	// A limit's own words come before the code's, which are cut just the same.
	e = s.run("raise MemoryError('y' * 100_000)", 0)
	if e.res.Status != runner.StatusLimitExceeded || !e.res.Truncated || !strings.HasPrefix(e.res.Error, "memory limit of") || len(e.res.Error) > 2*budget {
		t.Errorf("%s", e)
	}
	// Past 1 MiB the worker cuts the text itself (to bound its frame), keeping its end:
	// the result says so all the same.
	big := open(t, map[string]any{"max_output_bytes": "8MiB"}, nil)
	e = big.run("raise ValueError('z' * 3_000_000 + ' the end')", 0)
	if e.res.Status != runner.StatusError || !e.res.Truncated || len(e.res.Error) > 1<<20+200 ||
		!strings.HasSuffix(e.res.Error, "z the end\n") || !strings.Contains(e.res.Error, "characters cut ...]") {
		t.Errorf("%s", e)
	}
}

func TestKillSelf(t *testing.T) {
	t.Parallel()
	s := open(t, nil, nil)
	s.mustRun("before = 1")
	e := s.run("import os; print('bye', flush=True); os.kill(os.getpid(), 9)", 0)
	if e.res.Status != runner.StatusError || !e.res.StateReset || e.res.ExitCode != 137 ||
		!strings.Contains(e.res.Error, "signal 9") || e.stdout != "bye\n" {
		t.Fatalf("%s", e)
	}
	if e := s.run("before", 0); !strings.Contains(e.res.Error, "NameError") || e.res.StateReset {
		t.Errorf("%s", e)
	}
	// A worker that dies between executions is replaced, and the next result says the
	// state was reset.
	initPID := children(s.pid())
	s.mustRun("import os, threading\nthreading.Timer(0.2, lambda: os._exit(7)).start()")
	waitFor(t, 20*time.Second, "a fresh worker", func() bool {
		now := children(s.pid())
		return len(now) == 1 && (len(initPID) != 1 || now[0] != initPID[0])
	})
	e = s.run("print('alive')", 0)
	if e.res.Status != runner.StatusOK || !e.res.StateReset || e.stdout != "alive\n" {
		t.Errorf("after a death between executions: %s", e)
	}
}

func TestProtocolPipeAbuse(t *testing.T) {
	t.Parallel()
	s := open(t, nil, nil)
	e := s.run("import os; os.write(4, b'\\xff' * 64)\nimport time; time.sleep(5)", 0)
	if e.res.Status != runner.StatusError || !e.res.StateReset || e.res.FinishReason != "protocol_error" {
		t.Fatalf("%s", e)
	}
	s.mustRun("print('alive')")
}

func TestOpenSessionErrors(t *testing.T) {
	t.Parallel()
	// An interpreter that exits at once: the session cannot open and says why.
	dir, err := os.MkdirTemp("", "limit-python-broken-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	broken := filepath.Join(dir, "python3")
	if err := os.WriteFile(broken, []byte("#!/bin/sh\necho /bin/false\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		cfg  map[string]any
		sess func(*runner.Session)
		want string
	}{
		{"dead interpreter", map[string]any{"interpreter": broken}, nil, "exited during start-up: exited with code 1"},
		{"bad env", nil, func(s *runner.Session) { s.Env = map[string]string{"A=B": "x"} }, "invalid environment variable"},
		{"no work dir", nil, func(s *runner.Session) { s.WorkDir = "" }, "no work dir"},
		{"missing work dir", nil, func(s *runner.Session) { s.WorkDir = "/nonexistent/work" }, "/nonexistent/work"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			l := launch(t, tt.cfg)
			sess := runner.Session{ID: "bad", WorkDir: newWorkDir(t)}
			if tt.sess != nil {
				tt.sess(&sess)
			}
			err := l.r.OpenSession(context.Background(), sess)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("OpenSession: %v, want an error mentioning %q", err, tt.want)
			}
			// Nothing was left behind by the failed open.
			if cg := pluginCgroups(l.pid()); len(cg) > 0 {
				t.Errorf("cgroups left: %v", cg)
			}
			// A plugin whose open failed can still open a good session.
			if tt.name != "dead interpreter" {
				if err := l.r.OpenSession(context.Background(), runner.Session{ID: "good", WorkDir: newWorkDir(t)}); err != nil {
					t.Errorf("open after a failed open: %v", err)
				}
				_ = l.r.CloseSession(context.Background())
			}
		})
	}
	// Execute without a session is an error, not a crash.
	l := launch(t, nil)
	if _, err := l.r.Execute(context.Background(), runner.ExecuteRequest{Input: "1"}, func(runner.Event) error { return nil }); err == nil {
		t.Error("Execute without a session succeeded")
	}
}

// pluginCgroups lists the cgroups a plugin process created.
func pluginCgroups(pid int) []string {
	mounts, _ := cgroupV1Mounts()
	var out []string
	for _, m := range mounts {
		for _, pat := range []string{"*", "*/*", "*/*/*"} {
			got, _ := filepath.Glob(filepath.Join(m, pat, fmt.Sprintf("%s%d-*", cgroupPrefix, pid)))
			out = append(out, got...)
		}
	}
	return out
}
