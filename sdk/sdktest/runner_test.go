package sdktest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/limitgraph/limit/sdk/base"
	"github.com/limitgraph/limit/sdk/runner"
)

// serveRunnerEnv makes the test binary serve one of the test runners below instead of
// running tests (its value names which, see testRunners), so the suite can be run through
// a real plugin process. TestMain belongs to storage_test.go, so the switch happens in init.
const serveRunnerEnv = "LIMIT_SDKTEST_SERVE_RUNNER"

func init() {
	name := os.Getenv(serveRunnerEnv)
	if name == "" {
		return
	}
	newRunner, ok := testRunners[name]
	if !ok {
		fmt.Fprintf(os.Stderr, "unknown test runner %q\n", name)
		os.Exit(2)
	}
	runner.Serve(newRunner())
	os.Exit(0)
}

// echoConfig is the suite configuration that fits echoRunner.
var echoConfig = RunnerSuiteConfig{Input: "hello", Expect: "echo: hello", ErrorInput: "fail", SlowInput: "sleep"}

// echoRunner is the fake runner the suite is checked against. It echoes its input on
// stdout; "fail" fails; "sleep" runs until its timeout, Cancel or its context ends.
type echoRunner struct {
	mu      sync.Mutex
	session *runner.Session
	running map[string]context.CancelCauseFunc
}

// errCancelled is the cause of an execution stopped by Cancel.
var errCancelled = errors.New("cancelled by Cancel")

func newEchoRunner() *echoRunner {
	return &echoRunner{running: map[string]context.CancelCauseFunc{}}
}

func (e *echoRunner) PluginInfo() base.Info {
	return base.Info{Name: "echo", Kind: base.KindRunner, Version: "0.1.0", ProtocolVersions: []uint32{base.ProtocolVersion}}
}

func (e *echoRunner) ConfigSchema() base.Schema {
	return base.Schema{Attributes: []base.Attribute{{Name: "prefix", Type: "string", Default: "echo: "}}}
}

func (e *echoRunner) Configure(_ context.Context, req base.ConfigureRequest) base.Diagnostics {
	var cfg struct {
		Prefix string `json:"prefix"`
	}
	return base.DecodeConfig(req.Config, &cfg)
}

func (e *echoRunner) OpenSession(_ context.Context, s runner.Session) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.session != nil {
		return fmt.Errorf("this process already serves session %q", e.session.ID)
	}
	e.session = &s
	return nil
}

func (e *echoRunner) Execute(ctx context.Context, req runner.ExecuteRequest, emit func(runner.Event) error) (runner.Result, error) {
	start := time.Now()
	e.mu.Lock()
	open := e.session != nil
	e.mu.Unlock()
	if !open {
		return runner.Result{}, errors.New("no session is open")
	}
	var res runner.Result
	switch req.Input {
	case "sleep":
		res = e.sleep(ctx, req)
	case "fail":
		if err := emit(runner.Event{Output: &runner.Output{Stream: runner.Stderr, Data: []byte("boom\n")}}); err != nil {
			return runner.Result{}, err
		}
		res = runner.Result{Status: runner.StatusError, ExitCode: 1, Error: "failed on purpose"}
	default:
		if err := emit(runner.Event{Output: &runner.Output{Stream: runner.Stdout, Data: []byte("echo: " + req.Input + "\n")}}); err != nil {
			return runner.Result{}, err
		}
		res = runner.Result{Status: runner.StatusOK, Output: req.Input}
	}
	res.Duration = time.Since(start)
	return res, nil
}

// sleep waits until the execution's timeout, Cancel or the end of ctx.
func (e *echoRunner) sleep(ctx context.Context, req runner.ExecuteRequest) runner.Result {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	e.mu.Lock()
	e.running[req.ExecutionID] = cancel
	e.mu.Unlock()
	defer func() {
		e.mu.Lock()
		delete(e.running, req.ExecutionID)
		e.mu.Unlock()
	}()
	var timeout <-chan time.Time
	if req.Timeout > 0 {
		timeout = time.After(req.Timeout)
	}
	select {
	case <-timeout:
		return runner.Result{Status: runner.StatusTimeout, Error: fmt.Sprintf("timed out after %v", req.Timeout)}
	case <-ctx.Done():
		return runner.Result{Status: runner.StatusCancelled, Error: context.Cause(ctx).Error()}
	case <-time.After(time.Minute):
		return runner.Result{Status: runner.StatusOK}
	}
}

func (e *echoRunner) Cancel(_ context.Context, id string) (bool, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	cancel, ok := e.running[id]
	if ok {
		cancel(errCancelled)
	}
	return ok, nil
}

func (e *echoRunner) Health(context.Context) (runner.Health, error) {
	return runner.Health{Healthy: true, Isolation: []runner.IsolationFeature{{Name: "none", Detail: "a test runner isolates nothing"}}}, nil
}

func (e *echoRunner) CloseSession(context.Context) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, cancel := range e.running {
		cancel(errors.New("session closed"))
	}
	return nil
}

// Deliberately broken runners: each breaks one thing the suite must notice.

// ignoresCancel says it found the execution but does not stop it.
type ignoresCancel struct{ *echoRunner }

func (ignoresCancel) Cancel(context.Context, string) (bool, error) { return true, nil }

// neverFinds never finds the execution to cancel.
type neverFinds struct{ *echoRunner }

func (neverFinds) Cancel(context.Context, string) (bool, error) { return false, nil }

// findsAnything finds every execution, running or not.
type findsAnything struct{ *echoRunner }

func (f findsAnything) Cancel(ctx context.Context, id string) (bool, error) {
	_, _ = f.echoRunner.Cancel(ctx, id)
	return true, nil
}

// ignoresTimeout drops the execution's timeout.
type ignoresTimeout struct{ *echoRunner }

func (r ignoresTimeout) Execute(ctx context.Context, req runner.ExecuteRequest, emit func(runner.Event) error) (runner.Result, error) {
	req.Timeout = 0
	return r.echoRunner.Execute(ctx, req, emit)
}

// unspecifiedStatus forgets to set the status of a successful execution.
type unspecifiedStatus struct{ *echoRunner }

func (r unspecifiedStatus) Execute(ctx context.Context, req runner.ExecuteRequest, emit func(runner.Event) error) (runner.Result, error) {
	res, err := r.echoRunner.Execute(ctx, req, emit)
	if res.Status == runner.StatusOK {
		res.Status = 0
	}
	return res, err
}

// noDuration never reports how long an execution ran.
type noDuration struct{ *echoRunner }

func (r noDuration) Execute(ctx context.Context, req runner.ExecuteRequest, emit func(runner.Event) error) (runner.Result, error) {
	res, err := r.echoRunner.Execute(ctx, req, emit)
	res.Duration = 0
	return res, err
}

// errorsAsOK reports a failed execution as a success.
type errorsAsOK struct{ *echoRunner }

func (r errorsAsOK) Execute(ctx context.Context, req runner.ExecuteRequest, emit func(runner.Event) error) (runner.Result, error) {
	res, err := r.echoRunner.Execute(ctx, req, emit)
	if res.Status == runner.StatusError {
		res = runner.Result{Status: runner.StatusOK, Duration: res.Duration}
	}
	return res, err
}

// oneShot serves one execution, then fails every other.
type oneShot struct {
	*echoRunner
	mu   sync.Mutex
	used bool
}

func (r *oneShot) Execute(ctx context.Context, req runner.ExecuteRequest, emit func(runner.Event) error) (runner.Result, error) {
	r.mu.Lock()
	used := r.used
	r.used = true
	r.mu.Unlock()
	if used {
		return runner.Result{}, errors.New("this runner executes only once")
	}
	return r.echoRunner.Execute(ctx, req, emit)
}

// unhealthy reports itself unhealthy.
type unhealthy struct{ *echoRunner }

func (unhealthy) Health(context.Context) (runner.Health, error) {
	return runner.Health{Healthy: false, Message: "broken on purpose"}, nil
}

// claimsGovernance says it is a governance plugin.
type claimsGovernance struct{ *echoRunner }

func (r claimsGovernance) PluginInfo() base.Info {
	i := r.echoRunner.PluginInfo()
	i.Kind = base.KindGovernance
	return i
}

// slowClose takes longer to close its session than the host gives it: it returns only
// when its context ends.
type slowClose struct{ *echoRunner }

func (slowClose) CloseSession(ctx context.Context) error {
	<-ctx.Done()
	return nil
}

// lateOK runs the slow input past its timeout, then reports success.
type lateOK struct{ *echoRunner }

func (r lateOK) Execute(ctx context.Context, req runner.ExecuteRequest, emit func(runner.Event) error) (runner.Result, error) {
	if req.Input != "sleep" || req.Timeout == 0 {
		return r.echoRunner.Execute(ctx, req, emit)
	}
	start := time.Now()
	time.Sleep(req.Timeout + 100*time.Millisecond)
	return runner.Result{Status: runner.StatusOK, Duration: time.Since(start)}, nil
}

// slowInputFails returns an error for the slow input instead of running it.
type slowInputFails struct{ *echoRunner }

func (r slowInputFails) Execute(ctx context.Context, req runner.ExecuteRequest, emit func(runner.Event) error) (runner.Result, error) {
	if req.Input == "sleep" {
		return runner.Result{}, errors.New("interpreter not found")
	}
	return r.echoRunner.Execute(ctx, req, emit)
}

// slowInputPanics panics on the slow input.
type slowInputPanics struct{ *echoRunner }

func (r slowInputPanics) Execute(ctx context.Context, req runner.ExecuteRequest, emit func(runner.Event) error) (runner.Result, error) {
	if req.Input == "sleep" {
		panic("runner bug")
	}
	return r.echoRunner.Execute(ctx, req, emit)
}

// testRunners are the runners the test binary can serve, by name.
var testRunners = map[string]func() runner.Runner{
	"echo":               func() runner.Runner { return newEchoRunner() },
	"ignores-cancel":     func() runner.Runner { return ignoresCancel{newEchoRunner()} },
	"never-finds":        func() runner.Runner { return neverFinds{newEchoRunner()} },
	"finds-anything":     func() runner.Runner { return findsAnything{newEchoRunner()} },
	"ignores-timeout":    func() runner.Runner { return ignoresTimeout{newEchoRunner()} },
	"unspecified-status": func() runner.Runner { return unspecifiedStatus{newEchoRunner()} },
	"no-duration":        func() runner.Runner { return noDuration{newEchoRunner()} },
	"slow-close":         func() runner.Runner { return slowClose{newEchoRunner()} },
	"errors-as-ok":       func() runner.Runner { return errorsAsOK{newEchoRunner()} },
	"one-shot":           func() runner.Runner { return &oneShot{echoRunner: newEchoRunner()} },
	"unhealthy":          func() runner.Runner { return unhealthy{newEchoRunner()} },
	"claims-governance":  func() runner.Runner { return claimsGovernance{newEchoRunner()} },
	"late-ok":            func() runner.Runner { return lateOK{newEchoRunner()} },
	"slow-input-fails":   func() runner.Runner { return slowInputFails{newEchoRunner()} },
	"slow-input-panics":  func() runner.Runner { return slowInputPanics{newEchoRunner()} },
}

// inProcess returns a newRunner function for the named test runner.
func inProcess(name string) func() (runner.Runner, func()) {
	return func() (runner.Runner, func()) {
		r := testRunners[name]()
		return r, func() {
			// As the host does: a runner whose close takes longer is killed, here left.
			ctx, cancel := context.WithTimeout(context.Background(), runner.CloseSessionTimeout)
			defer cancel()
			_ = r.CloseSession(ctx)
		}
	}
}

// launched returns a newRunner function that starts the test binary as the named runner.
func launched(t testing.TB, name string) func() (runner.Runner, func()) {
	return LaunchRunnerFunc(t.Context(), testBinary(t), []string{serveRunnerEnv + "=" + name}, nil, t.TempDir())
}

func TestRunRunnerEcho(t *testing.T) {
	start := time.Now()
	RunRunner(t, inProcess("echo"), echoConfig)
	t.Logf("runner suite against the echo runner in-process: %v", time.Since(start))
}

func TestRunRunnerEchoPlugin(t *testing.T) {
	start := time.Now()
	RunRunner(t, launched(t, "echo"), echoConfig)
	t.Logf("runner suite through the plugin boundary, a process per case: %v", time.Since(start))
}

func TestRunRunnerEchoPluginGRPC(t *testing.T) {
	RunRunner(t, LaunchRunnerGRPCFunc(t.Context(), testBinary(t), []string{serveRunnerEnv + "=echo"}, nil, t.TempDir()), echoConfig)
}

func TestCheckRunnerCounts(t *testing.T) {
	all := len(RunnerCases(echoConfig))
	for _, tc := range []struct {
		name                    string
		cfg                     RunnerSuiteConfig
		passed, failed, skipped int
		notApplicable           []string
	}{
		{"every input", echoConfig, all, 0, 0, nil},
		{"no slow input", RunnerSuiteConfig{Input: "hello", Expect: "echo: hello", ErrorInput: "fail"}, all - 2, 0, 2, []string{"timeout", "cancel"}},
		{"input only", RunnerSuiteConfig{Input: "hello"}, all - 3, 0, 3, []string{"error-input", "timeout", "cancel"}},
		// Without Input, the cases that execute fail and say what is missing.
		{"no input", RunnerSuiteConfig{}, 4, 2, 3, []string{"error-input", "timeout", "cancel"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			seen := map[string]int{}
			passed, failed, skipped := CheckRunner(t.Context(), inProcess("echo"), tc.cfg, func(name string, err error, _ time.Duration) {
				seen[name]++
				na := errors.Is(err, ErrNotApplicable)
				want := false
				for _, n := range tc.notApplicable {
					want = want || n == name
				}
				if na != want {
					t.Errorf("case %s: not applicable is %v, want %v (error %v)", name, na, want, err)
				}
				if err != nil && !na && !strings.Contains(err.Error(), "RunnerSuiteConfig.Input is empty") {
					t.Errorf("case %s failed: %v", name, err)
				}
			})
			if passed != tc.passed || failed != tc.failed || skipped != tc.skipped {
				t.Errorf("CheckRunner: %d passed, %d failed, %d not applicable; want %d, %d, %d", passed, failed, skipped, tc.passed, tc.failed, tc.skipped)
			}
			for _, c := range RunnerCases(tc.cfg) {
				if seen[c.Name] != 1 {
					t.Errorf("case %s reported %d times, want once", c.Name, seen[c.Name])
				}
			}
		})
	}
}

func TestRunnerCaseNamesUnique(t *testing.T) {
	names := map[string]bool{}
	for _, c := range RunnerCases(echoConfig) {
		if names[c.Name] {
			t.Errorf("case name %q is used twice", c.Name)
		}
		names[c.Name] = true
	}
}

func TestCheckRunnerNoRunner(t *testing.T) {
	for _, tc := range []struct {
		name      string
		newRunner func() (runner.Runner, func())
		wantErr   string
	}{
		{"nil function", nil, "newRunner is nil"},
		{"nil runner", func() (runner.Runner, func()) { return nil, nil }, "newRunner returned no runner"},
		{"launch fails", LaunchRunnerFunc(t.Context(), "/nonexistent/runner-plugin", nil, nil, t.TempDir()), "/nonexistent/runner-plugin"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			passed, failed, _ := CheckRunner(t.Context(), tc.newRunner, echoConfig, func(name string, err error, _ time.Duration) {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Errorf("case %s: got error %v, want one containing %q", name, err, tc.wantErr)
				}
			})
			if passed != 0 || failed != len(RunnerCases(echoConfig)) {
				t.Errorf("CheckRunner: %d passed, %d failed; want every case failed", passed, failed)
			}
		})
	}
}

// brokenRunnerCases lists each broken runner with the cases it must fail and a case it
// must still pass (so the failure is the bug's, not a broken wrapper's).
var brokenRunnerCases = []struct {
	runner   string
	mustFail []string
	control  string
}{
	{"ignores-cancel", []string{"cancel"}, "execute-ok"},
	{"never-finds", []string{"cancel"}, "execute-ok"},
	{"finds-anything", []string{"cancel-unknown"}, "execute-ok"},
	{"ignores-timeout", []string{"timeout"}, "cancel"},
	{"unspecified-status", []string{"execute-ok", "execute-twice"}, "health"},
	{"no-duration", []string{"execute-ok", "timeout"}, "health"},
	{"errors-as-ok", []string{"error-input"}, "execute-ok"},
	{"one-shot", []string{"execute-twice", "error-input"}, "execute-ok"},
	{"unhealthy", []string{"health"}, "execute-ok"},
	{"claims-governance", []string{"info"}, "execute-ok"},
	{"slow-close", []string{"close-session"}, "execute-ok"},
}

// checkBroken runs the cases named in mustFail and control with a short grace period
// and checks that the former fail and the latter passes.
func checkBroken(t *testing.T, newRunner func() (runner.Runner, func()), mustFail []string, control string) {
	t.Helper()
	cfg := echoConfig
	cfg.Grace = 300 * time.Millisecond
	errs := map[string]error{}
	ran := map[string]bool{}
	for _, c := range RunnerCases(cfg) {
		if c.Name != control && !slices.Contains(mustFail, c.Name) {
			continue
		}
		ran[c.Name] = true
		errs[c.Name] = runRunnerCase(t.Context(), c, newRunner)
	}
	for _, name := range append([]string{control}, mustFail...) {
		if !ran[name] {
			t.Fatalf("no case named %q", name)
		}
	}
	for _, name := range mustFail {
		if errs[name] == nil {
			t.Errorf("case %s passed; want it to fail", name)
		} else {
			t.Logf("case %s failed as it should: %v", name, errs[name])
		}
	}
	if err := errs[control]; err != nil {
		t.Errorf("case %s failed: %v; the broken runner should break only one thing", control, err)
	}
}

func TestRunnerSuiteCatchesBrokenRunners(t *testing.T) {
	for _, tc := range brokenRunnerCases {
		t.Run(tc.runner, func(t *testing.T) {
			t.Parallel()
			checkBroken(t, inProcess(tc.runner), tc.mustFail, tc.control)
		})
	}
}

// TestRunnerSuiteHints: a failing timeout or cancel case blames what went wrong, not
// SlowInput, when the runner is at fault: a success reported after the timeout is a
// timeout ignored, and an execution that returned an error or panicked says so (a panic
// fails the case alone, not the test binary).
func TestRunnerSuiteHints(t *testing.T) {
	cfg := echoConfig
	cfg.Grace = 10 * time.Second // long enough for lateOK to answer
	cases := map[string]RunnerCase{}
	for _, c := range RunnerCases(cfg) {
		cases[c.Name] = c
	}
	for _, tc := range []struct {
		runner, kase string
		want         []string
	}{
		{"late-ok", "timeout", []string{"status ok", "the runner ignored the execution's timeout of 300ms"}},
		{"slow-input-fails", "cancel", []string{`returned error "interpreter not found"`, "before Cancel found it: Execute failed"}},
		{"slow-input-panics", "cancel", []string{"panicked after", "runner bug", "before Cancel found it: Execute failed"}},
		{"slow-input-panics", "timeout", []string{"panicked after", "runner bug"}},
	} {
		t.Run(tc.runner+"/"+tc.kase, func(t *testing.T) {
			t.Parallel()
			err := runRunnerCase(t.Context(), cases[tc.kase], inProcess(tc.runner))
			if err == nil {
				t.Fatalf("case %s passed; want it to fail", tc.kase)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("case %s: %v; want it to say %q", tc.kase, err, w)
				}
			}
			if strings.Contains(err.Error(), "SlowInput") {
				t.Errorf("case %s: %v; want it not to blame SlowInput", tc.kase, err)
			}
		})
	}
}

// TestRunnerSuiteCatchesBrokenPlugins runs some broken runners as real plugin processes:
// the failures must survive the protocol (an unspecified status arrives as an error; a
// missing duration is judged as in-process: the protocol carries microseconds).
// Each case starts a process, which costs over a second under the race detector (mutual
// TLS generates P-521 keys on both sides), so only a few runners are run this way.
func TestRunnerSuiteCatchesBrokenPlugins(t *testing.T) {
	for _, tc := range brokenRunnerCases {
		switch tc.runner {
		case "ignores-cancel", "unspecified-status", "no-duration", "slow-close":
		default:
			continue
		}
		t.Run(tc.runner, func(t *testing.T) {
			t.Parallel()
			checkBroken(t, launched(t, tc.runner), tc.mustFail, tc.control)
		})
	}
}

func TestLaunchRunnerErrors(t *testing.T) {
	exe := testBinary(t)
	for _, tc := range []struct {
		name    string
		path    string
		env     []string
		config  string
		wantErr string
	}{
		{"unknown config attribute", exe, []string{serveRunnerEnv + "=echo"}, `{"path": "x"}`, `unsupported attribute "path"`},
		{"config not JSON", exe, []string{serveRunnerEnv + "=echo"}, `{`, "not valid JSON"},
		{"runner claiming another kind", exe, []string{serveRunnerEnv + "=claims-governance"}, `{}`, `kind "governance"`},
		{"storage plugin", exe, []string{serveEnv + "=1"}, `{}`, `kind "storage"`},
		{"no such binary", "/nonexistent/runner-plugin", nil, `{}`, "/nonexistent/runner-plugin"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r, stop, err := LaunchRunner(t.Context(), tc.path, tc.env, []byte(tc.config), t.TempDir())
			if err == nil {
				stop()
				t.Fatalf("LaunchRunner: got %T and no error, want an error containing %q", r, tc.wantErr)
			}
			if !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("LaunchRunner: got error %q, want one containing %q", err, tc.wantErr)
			}
		})
	}
}

func TestLaunchRunnerStop(t *testing.T) {
	r, stop, err := LaunchRunner(t.Context(), testBinary(t), []string{serveRunnerEnv + "=echo"}, nil, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if err := r.OpenSession(t.Context(), runner.Session{ID: "s", WorkDir: t.TempDir()}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Health(t.Context()); err != nil {
		t.Fatalf("health before stop: %v", err)
	}
	stop()
	if _, err := r.Health(t.Context()); err == nil {
		t.Fatal("health after stop: no error, want the plugin to be gone")
	}
}
