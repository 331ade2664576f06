package e2e

import (
	"errors"
	"fmt"
	"net/http"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/limitgraph/limit/internal/testbin"
	"github.com/limitgraph/limit/sdk/client"
)

// shutdownConfig is the Python runner with a long execution timeout, so that only the
// shutdown can end the executions these tests leave running.
func shutdownConfig(t *testing.T, dataDir, shutdownTimeout string) string {
	t.Helper()
	testbin.Plugin(t, "storage-bolt")
	testbin.Plugin(t, "runner-python")
	return writeConfig(t, fmt.Sprintf(`host {
  listen     = "127.0.0.1:0"
  data_dir   = %q
  plugin_dir = %q
}
storage "bolt" {}
runner "python" {
  config {
    timeout = "120s"
  }
}
api {
  shutdown_timeout = %q
}
`, dataDir, testbin.PluginDir(t), shutdownTimeout))
}

// waitGone waits, generously, for procs (descendants of a limitd that exited) to end,
// and fails with those left.
func waitGone(t *testing.T, procs []proc) {
	t.Helper()
	left := func() []string {
		var out []string
		for _, p := range procs {
			if p.running() {
				out = append(out, fmt.Sprintf("%d %.100s", p.pid, p.cmd))
			}
		}
		return out
	}
	deadline := time.Now().Add(30 * time.Second)
	for len(left()) > 0 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if l := left(); len(l) > 0 {
		t.Fatalf("processes limitd started outlived it:\n%s", strings.Join(l, "\n"))
	}
}

// waitExit waits, generously, for limitd to exit and returns its exit code.
func waitExit(t *testing.T, d *daemon) int {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- d.cmd.Wait() }()
	select {
	case err := <-done:
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode()
		}
		if err != nil {
			t.Fatal(err)
		}
		return 0
	case <-time.After(90 * time.Second):
		d.cmd.Process.Kill()
		<-done
		t.Fatalf("limitd did not exit\n%s", d.stderr.String())
		return -1
	}
}

// waitLog waits for limitd to log want.
func waitLog(t *testing.T, d *daemon, want string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !strings.Contains(d.stderr.String(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("limitd did not log %q\n%s", want, d.stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitTraces waits until the session's trace list holds n traces (a running execution's
// trace is stored while it runs).
func waitTraces(t *testing.T, d *daemon, sessionID string, n int) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		l, err := d.c.ListTraces(ctx, sessionID, 100, "")
		if err == nil && len(l.Traces) >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("session %s: %d traces never stored (%v)", sessionID, n, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// checkAfterRestart checks that the session survived, that the interrupted trace verifies
// (and, when wantStatus is set, records that outcome), and that the session runs again.
func checkAfterRestart(t *testing.T, d *daemon, sessionID, traceID, wantStatus string) {
	t.Helper()
	if _, err := d.c.GetSession(ctx, sessionID); err != nil {
		t.Fatalf("session %s lost across the restart: %v", sessionID, err)
	}
	if v, err := d.c.VerifyProvenance(ctx, traceID); err != nil || !v.Valid {
		t.Fatalf("trace %s does not verify after the restart: %+v %v", traceID, v, err)
	}
	if wantStatus != "" {
		tv, err := d.c.GetTrace(ctx, traceID)
		if err != nil {
			t.Fatal(err)
		}
		var executed string
		for _, e := range tv.Provenance {
			if e.Kind == "executed" {
				executed = string(e.Data)
			}
		}
		if !strings.Contains(executed, `"status":"`+wantStatus+`"`) && !strings.Contains(executed, `"status": "`+wantStatus+`"`) {
			t.Fatalf("trace %s: executed entry %q, want status %q", traceID, executed, wantStatus)
		}
	}
	r, err := d.c.Execute(ctx, sessionID, client.ExecuteRequest{Runner: "python", Input: "print(6 * 7)"})
	if err != nil || r.Status != "ok" || r.Stdout != "42\n" {
		t.Fatalf("session %s does not run after the restart: %+v %v", sessionID, r, err)
	}
}

// TestShutdownAnswersInFlightExecutions stops limitd with SIGTERM while a plain and a
// streaming execution run past api.shutdown_timeout: both clients get a result saying
// the host stopped them, their traces record it, new requests are refused, limitd exits
// with 0 leaving no process behind, and after a restart the sessions run again.
func TestShutdownAnswersInFlightExecutions(t *testing.T) {
	cfg := shutdownConfig(t, t.TempDir(), "4s")
	d := start(t, cfg)
	a, err := d.c.CreateSession(ctx, client.CreateSessionRequest{Name: "plain"})
	if err != nil {
		t.Fatal(err)
	}
	b, err := d.c.CreateSession(ctx, client.CreateSessionRequest{Name: "stream"})
	if err != nil {
		t.Fatal(err)
	}
	type answer struct {
		r   *client.ExecutionResult
		err error
	}
	plain, stream := make(chan answer, 1), make(chan answer, 1)
	go func() {
		r, err := d.c.Execute(ctx, a.ID, client.ExecuteRequest{Runner: "python", Input: "import time; time.sleep(20)"})
		plain <- answer{r, err}
	}()
	printed := make(chan struct{}, 1)
	go func() {
		r, err := d.c.ExecuteStream(ctx, b.ID, client.ExecuteRequest{Runner: "python",
			Input: "print('started', flush=True); import time; time.sleep(20)"}, func(client.Event) {
			select {
			case printed <- struct{}{}:
			default:
			}
		})
		stream <- answer{r, err}
	}()
	select {
	case <-printed:
	case <-time.After(60 * time.Second):
		t.Fatal("the streaming execution sent nothing")
	}
	waitTraces(t, d, a.ID, 1)
	waitTraces(t, d, b.ID, 1)
	procs := descendants(d.cmd.Process.Pid)
	if len(procs) == 0 {
		t.Fatal("limitd has no plugin processes")
	}

	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitLog(t, d, "shutting down")
	// A new request is refused: the connection (the listener is closed) or with 503.
	req, _ := http.NewRequest("GET", d.url+"/v1/health", nil)
	if res, err := http.DefaultClient.Do(req); err == nil {
		res.Body.Close()
		if res.StatusCode != http.StatusServiceUnavailable || res.Header.Get("Content-Type") != "application/problem+json" {
			t.Fatalf("request during shutdown: %d %s, want refused or 503 problem+json", res.StatusCode, res.Header.Get("Content-Type"))
		}
	}

	if code := waitExit(t, d); code != 0 {
		t.Fatalf("limitd exited with %d after SIGTERM, want 0\n%s", code, d.stderr.String())
	}
	var traces [2]string
	for i, ch := range []chan answer{plain, stream} {
		got := <-ch // the daemon is gone: the answer came or the connection broke
		if got.err != nil {
			t.Fatalf("execution %d: no answer before limitd exited: %v\n%s", i, got.err, d.stderr.String())
		}
		if got.r.Status != "cancelled" || !strings.Contains(got.r.Error, "shut down") || got.r.TraceID == "" {
			t.Fatalf("execution %d: %+v, want status cancelled saying limitd shut down", i, got.r)
		}
		traces[i] = got.r.TraceID
	}
	waitGone(t, procs)

	d2 := start(t, cfg)
	checkAfterRestart(t, d2, a.ID, traces[0], "cancelled")
	checkAfterRestart(t, d2, b.ID, traces[1], "cancelled")
}

// TestShutdownSecondSignalStopsAtOnce sends SIGINT right behind a SIGTERM while a long
// execution runs: limitd exits at once, with 1, its plugins and sandboxes go with it, and
// after a restart the execution's trace (stored while it ran) verifies and the session
// runs again.
func TestShutdownSecondSignalStopsAtOnce(t *testing.T) {
	cfg := shutdownConfig(t, t.TempDir(), "10m")
	d := start(t, cfg)
	s, err := d.c.CreateSession(ctx, client.CreateSessionRequest{Name: "slow"})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := d.c.Execute(ctx, s.ID, client.ExecuteRequest{Runner: "python", Input: "import time; time.sleep(300)"})
		done <- err
	}()
	waitTraces(t, d, s.ID, 1)
	l, err := d.c.ListTraces(ctx, s.ID, 10, "")
	if err != nil {
		t.Fatal(err)
	}
	procs := descendants(d.cmd.Process.Pid)

	// The second signal right behind the first: it once came before limitd listened
	// for a second one, and was lost (limitd waited out the shutdown_timeout).
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := d.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	// Far less than the 10m shutdown_timeout and the 300s execution.
	if code := waitExit(t, d); code != 1 {
		t.Fatalf("limitd exited with %d after a second signal, want 1\n%s", code, d.stderr.String())
	}
	if log := d.stderr.String(); !strings.Contains(log, "second signal: stopping at once") {
		t.Fatalf("limitd's log does not tell of the second signal:\n%s", log)
	}
	<-done // the connection broke
	waitGone(t, procs)

	d2 := start(t, cfg)
	checkAfterRestart(t, d2, s.ID, l.Traces[0].ID, "")
}
