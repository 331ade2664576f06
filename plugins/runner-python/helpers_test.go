package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"

	"github.com/limitgraph/limit/internal/syncbuf"
	"github.com/limitgraph/limit/internal/testbin"
	"github.com/limitgraph/limit/sdk/base"
	"github.com/limitgraph/limit/sdk/runner"
)

func TestMain(m *testing.M) {
	// In-process runners (benchmarks) re-execute the test binary as the sandbox's init.
	if len(os.Args) > 1 && os.Args[1] == initArg {
		sandboxInit()
	}
	code := m.Run()
	testbin.Cleanup()
	os.Exit(code)
}

// testSecret is in the plugin process's environment; the sandboxed code must not see it.
const testSecret = "LIMIT_TEST_SECRET=hunter2"

// pluginBinary builds the real plugin binary once per test process.
func pluginBinary(t testing.TB) string {
	t.Helper()
	return testbin.Plugin(t, "runner-python")
}

// launched is a plugin process started by a test.
type launched struct {
	r   *runner.Client
	pc  *plugin.Client
	cmd *exec.Cmd
}

// pid is the plugin process's pid.
func (l *launched) pid() int { return l.cmd.Process.Pid }

// launch starts the plugin binary and configures it with cfg (nil: defaults).
func launch(t testing.TB, cfg map[string]any) *launched {
	t.Helper()
	return launchWith(t, cfg, runner.PluginSet())
}

// launchWith is launch with the client plugin set set (runner.PluginSetGRPCOnly to keep
// executions on gRPC).
func launchWith(t testing.TB, cfg map[string]any, set plugin.PluginSet) *launched {
	t.Helper()
	return launchLC(t, cfg, base.LaunchConfig{Plugins: set})
}

// launchLogged is launch with the plugin logging at debug level into the returned buffer,
// through go-plugin as the host receives it.
func launchLogged(t testing.TB, cfg map[string]any) (*launched, *syncbuf.Buffer) {
	t.Helper()
	logs := new(syncbuf.Buffer)
	return launchLC(t, cfg, base.LaunchConfig{
		Plugins: runner.PluginSet(),
		Env:     []string{base.LogLevelEnv + "=debug"},
		Logger:  hclog.New(&hclog.LoggerOptions{Output: logs, Level: hclog.Debug}),
	}), logs
}

// launchLC is launch with lc's plugin set, logger and extra environment.
func launchLC(t testing.TB, cfg map[string]any, lc base.LaunchConfig) *launched {
	t.Helper()
	lc.Path, lc.Kind = pluginBinary(t), base.KindRunner
	lc.Env = append([]string{testSecret, "PATH=/usr/bin:/bin"}, lc.Env...)
	pc, cmd := base.NewClientCmd(lc)
	t.Cleanup(pc.Kill)
	raw, err := base.Dispense(context.Background(), pc, base.KindRunner)
	if err != nil {
		t.Fatal(err)
	}
	l := &launched{r: raw.(*runner.Client), pc: pc, cmd: cmd}
	if cfg == nil {
		cfg = map[string]any{}
	}
	b, _ := json.Marshal(cfg)
	if ds := l.r.Configure(context.Background(), base.ConfigureRequest{Config: b, DataDir: t.TempDir()}); ds.HasErrors() {
		t.Fatalf("configure: %v", ds.Err())
	}
	return l
}

// testSession is an open session of a launched plugin.
type testSession struct {
	*launched
	t    testing.TB
	sess runner.Session
}

// newWorkDir makes a session work dir the way the host does: under a 0700 data dir.
func newWorkDir(t testing.TB) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "data", "sessions", fmt.Sprintf("s%d", time.Now().UnixNano()), "work")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	return dir
}

// open launches the plugin with cfg and opens a session, which mod may adjust first.
func open(t testing.TB, cfg map[string]any, mod func(*runner.Session)) *testSession {
	t.Helper()
	return openOn(t, launch(t, cfg), mod)
}

// openOn opens a session on the launched plugin l.
func openOn(t testing.TB, l *launched, mod func(*runner.Session)) *testSession {
	t.Helper()
	s := runner.Session{ID: fmt.Sprintf("%s-%d", t.Name(), time.Now().UnixNano()), WorkDir: newWorkDir(t)}
	if mod != nil {
		mod(&s)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := l.r.OpenSession(ctx, s); err != nil {
		t.Fatalf("open session: %v", err)
	}
	ts := &testSession{launched: l, t: t, sess: s}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		_ = l.r.CloseSession(ctx)
	})
	return ts
}

// outcome is what one Execute call returned.
type outcome struct {
	stdout, stderr string
	res            runner.Result
	err            error
	events         int
	firstEvent     time.Duration
}

func (e outcome) String() string {
	return fmt.Sprintf("status=%s exit=%d reset=%v truncated=%v reason=%q error=%q output=%q stdout=%q stderr=%q err=%v",
		e.res.Status, e.res.ExitCode, e.res.StateReset, e.res.Truncated, e.res.FinishReason, clip(e.res.Error),
		clip(e.res.Output), clip(e.stdout), clip(e.stderr), e.err)
}

func clip(s string) string {
	if len(s) > 600 {
		return s[:300] + " ... " + s[len(s)-300:]
	}
	return s
}

// run executes code with an optional timeout and returns what came back.
func (s *testSession) run(code string, timeout time.Duration) outcome {
	s.t.Helper()
	return s.runID(context.Background(), fmt.Sprintf("x%d", time.Now().UnixNano()), code, timeout)
}

func (s *testSession) runID(ctx context.Context, id, code string, timeout time.Duration) outcome {
	var (
		mu         sync.Mutex
		out, errs  strings.Builder
		n          int
		firstEvent time.Duration
	)
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	res, err := s.r.Execute(ctx, runner.ExecuteRequest{ExecutionID: id, Input: code, Timeout: timeout}, func(ev runner.Event) error {
		mu.Lock()
		defer mu.Unlock()
		if n == 0 {
			firstEvent = time.Since(start)
		}
		n++
		if ev.Output != nil {
			if ev.Output.Stream == runner.Stderr {
				errs.Write(ev.Output.Data)
			} else {
				out.Write(ev.Output.Data)
			}
		}
		return nil
	})
	return outcome{stdout: out.String(), stderr: errs.String(), res: res, err: err, events: n, firstEvent: firstEvent}
}

// mustRun executes code and fails the test unless it succeeds.
func (s *testSession) mustRun(code string) outcome {
	s.t.Helper()
	e := s.run(code, 0)
	if e.err != nil || e.res.Status != runner.StatusOK {
		s.t.Fatalf("run %q: %s", clip(code), e)
	}
	return e
}

// workerPath is path as the session's worker sees it, reached from outside through its
// root (/proc/<pid>/root): with the disk limit the work dir is the session's own
// filesystem, mounted in the worker's mount namespace only.
func (s *testSession) workerPath(path string) string {
	s.t.Helper()
	pid := s.workerPID()
	real, err := filepath.EvalSymlinks(filepath.Dir(path))
	if err != nil {
		s.t.Fatal(err)
	}
	return fmt.Sprintf("/proc/%d/root%s", pid, filepath.Join(real, filepath.Base(path)))
}

// health returns the session's health report as a map of features.
func (s *testSession) health() (runner.Health, map[string]runner.IsolationFeature) {
	s.t.Helper()
	h, err := s.r.Health(context.Background())
	if err != nil {
		s.t.Fatal(err)
	}
	m := map[string]runner.IsolationFeature{}
	for _, f := range h.Isolation {
		m[f.Name] = f
	}
	return h, m
}
