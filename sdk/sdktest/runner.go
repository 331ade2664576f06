package sdktest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"runtime/debug"
	"testing"
	"time"

	"github.com/hashicorp/go-plugin"

	"github.com/limitgraph/limit/sdk/base"
	"github.com/limitgraph/limit/sdk/runner"
)

// ErrNotApplicable marks a case that does not apply under the suite's configuration, such as
// the runner suite's timeout case when no SlowInput was given. CheckRunner and
// CheckGovernance report such a case with an error wrapping ErrNotApplicable and count it
// as skipped, neither passed nor failed; RunRunner and RunGovernance skip its subtest.
var ErrNotApplicable = errors.New("not applicable")

// DefaultRunnerGrace is how long a runner may take, by default, to end an execution after
// its timeout passed or it was cancelled.
const DefaultRunnerGrace = 5 * time.Second

// runnerTestTimeout is the execution timeout of the timeout case.
const runnerTestTimeout = 300 * time.Millisecond

// RunnerSuiteConfig gives the runner suite inputs the runner under test understands: what
// an input means differs between runners (Python code, a model prompt, ...), so the author
// supplies them.
type RunnerSuiteConfig struct {
	// Input is executed successfully by the runner, e.g. `print("hello")`. Required.
	Input string
	// Expect is text the execution of Input produces: it must appear in the streamed
	// stdout, the streamed tokens or the result's Output. Empty means any output at all.
	Expect string
	// ErrorInput, if set, makes the execution fail (a Python exception, a rejected prompt):
	// the result must have status error or limit_exceeded and say why.
	ErrorInput string
	// SlowInput, if set, runs for at least ten seconds unless stopped, e.g.
	// `import time; time.sleep(60)`. The timeout and cancel cases use it; without it they
	// are not applicable.
	SlowInput string
	// Params are passed with every execution (runner-specific: a model name, max tokens).
	Params map[string]any
	// Grace bounds how long the runner may take to end an execution after its timeout
	// passed or it was cancelled, and how long after an execution starts Cancel may still
	// answer that it does not know it; zero means DefaultRunnerGrace.
	Grace time.Duration
}

// grace returns the configured grace period or its default.
func (c RunnerSuiteConfig) grace() time.Duration {
	if c.Grace > 0 {
		return c.Grace
	}
	return DefaultRunnerGrace
}

// RunnerCase is one conformance check of a runner. A runner process serves exactly one
// session, so every case gets a fresh runner with a session of its own already open.
type RunnerCase struct {
	// Name identifies the case, e.g. "cancel"; it is also a subtest name.
	Name string
	// NotApplicable, when not empty, tells why the case does not apply under the suite's
	// configuration; the case is then reported as not applicable and Run is not called.
	NotApplicable string
	// Run performs the check against r, whose session sess is open. It returns nil when
	// the runner behaves as the protocol says, or an error that tells what it did instead.
	Run func(ctx context.Context, r runner.Runner, sess runner.Session) error
}

// RunRunner runs every case of RunnerCases(cfg) as a subtest. Each case calls newRunner for
// a fresh runner (configured, session not yet opened) and calls the returned stop function
// (if not nil) when it ends; LaunchRunnerFunc returns such a function for a plugin binary.
// Cases that do not apply under cfg are skipped with the reason.
func RunRunner(t *testing.T, newRunner func() (runner.Runner, func()), cfg RunnerSuiteConfig) {
	t.Helper()
	if newRunner == nil {
		t.Fatal("sdktest.RunRunner: newRunner is nil")
	}
	for _, c := range RunnerCases(cfg) {
		t.Run(c.Name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), CaseTimeout)
			defer cancel()
			err := runRunnerCase(ctx, c, newRunner)
			if errors.Is(err, ErrNotApplicable) {
				t.Skip(err)
			}
			if err != nil {
				t.Fatal(err)
			}
		})
	}
}

// CheckRunner runs every case of RunnerCases(cfg), one after the other, each against a fresh
// runner from newRunner, and calls report (if not nil) after each with the case's name, its
// error (nil when it passed; wrapping ErrNotApplicable when it does not apply) and how long
// it took. It returns how many cases passed, failed and were not applicable. It is what a
// CLI such as `limitctl plugin check --kind runner` calls.
func CheckRunner(ctx context.Context, newRunner func() (runner.Runner, func()), cfg RunnerSuiteConfig, report func(name string, err error, elapsed time.Duration)) (passed, failed, skipped int) {
	for _, c := range RunnerCases(cfg) {
		start := time.Now()
		var err error
		if newRunner == nil {
			err = errors.New("newRunner is nil")
		} else {
			cctx, cancel := context.WithTimeout(ctx, CaseTimeout)
			err = runRunnerCase(cctx, c, newRunner)
			cancel()
		}
		switch {
		case errors.Is(err, ErrNotApplicable):
			skipped++
		case err != nil:
			failed++
		default:
			passed++
		}
		if report != nil {
			report(c.Name, err, time.Since(start))
		}
	}
	return passed, failed, skipped
}

// runRunnerCase gives c a fresh runner with an open session in a temporary working
// directory, runs it, and turns a panic in it into a failure of that case alone.
func runRunnerCase(ctx context.Context, c RunnerCase, newRunner func() (runner.Runner, func())) (err error) {
	if c.NotApplicable != "" {
		return fmt.Errorf("%w: %s", ErrNotApplicable, c.NotApplicable)
	}
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("case panicked: %v\n%s", r, debug.Stack())
		}
	}()
	dir, err := os.MkdirTemp("", "sdktest-runner-")
	if err != nil {
		return fmt.Errorf("create the session's working directory: %w", err)
	}
	defer os.RemoveAll(dir)
	r, stop := newRunner()
	if stop != nil {
		defer stop()
	}
	if r == nil {
		return errors.New("newRunner returned no runner")
	}
	sess := runner.Session{ID: newID("sdktest-" + c.Name), WorkDir: dir, Env: map[string]string{}}
	if err := r.OpenSession(ctx, sess); err != nil {
		return fmt.Errorf("open session %q: %w", sess.ID, err)
	}
	return c.Run(ctx, r, sess)
}

// newID returns prefix followed by a random suffix, for session and execution ids.
func newID(prefix string) string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return prefix + "-" + hex.EncodeToString(b[:])
}

// runnerCloseTimeout bounds the polite CloseSession a launched runner gets before it is
// killed, as the host does when a session ends.
const runnerCloseTimeout = runner.CloseSessionTimeout

// LaunchRunner starts the runner plugin binary at path the way the host does (mutual TLS,
// only env as its environment), checks that it is a runner plugin, and configures it with
// configJSON (nil means "{}"; checked and given its defaults as the host does, see
// ApplySchema) and dataDir. It returns the plugin's client, which implements
// runner.Runner, and a function that closes the session (briefly) and stops the process.
//
// A runner process serves one session: launch one process per session, as the host does.
func LaunchRunner(ctx context.Context, path string, env []string, configJSON []byte, dataDir string, opts ...LaunchOption) (runner.Runner, func(), error) {
	return launchRunner(ctx, runner.PluginSet(), path, env, configJSON, dataDir, opts...)
}

// LaunchRunnerGRPC is LaunchRunner with a client that executes over gRPC and ignores the
// plugin's fast path, so a suite can check both transports.
func LaunchRunnerGRPC(ctx context.Context, path string, env []string, configJSON []byte, dataDir string, opts ...LaunchOption) (runner.Runner, func(), error) {
	return launchRunner(ctx, runner.PluginSetGRPCOnly(), path, env, configJSON, dataDir, opts...)
}

func launchRunner(ctx context.Context, set plugin.PluginSet, path string, env []string, configJSON []byte, dataDir string, opts ...LaunchOption) (runner.Runner, func(), error) {
	r, kill, err := launch[runner.Runner](ctx, base.KindRunner, set, path, env, configJSON, dataDir, opts...)
	if err != nil {
		return nil, nil, err
	}
	stop := func() {
		cctx, cancel := context.WithTimeout(context.Background(), runnerCloseTimeout)
		_ = r.CloseSession(cctx)
		cancel()
		kill()
	}
	return r, stop, nil
}

// LaunchRunnerFunc returns a newRunner function for RunRunner and CheckRunner that
// launches a fresh process of the runner plugin at path for every case (see LaunchRunner).
// When a launch fails, the runner it returns answers every call with the launch error, so
// the case fails with it.
func LaunchRunnerFunc(ctx context.Context, path string, env []string, configJSON []byte, dataDir string, opts ...LaunchOption) func() (runner.Runner, func()) {
	return launchRunnerFunc(ctx, runner.PluginSet(), path, env, configJSON, dataDir, opts...)
}

// LaunchRunnerGRPCFunc is LaunchRunnerFunc over gRPC only (see LaunchRunnerGRPC).
func LaunchRunnerGRPCFunc(ctx context.Context, path string, env []string, configJSON []byte, dataDir string, opts ...LaunchOption) func() (runner.Runner, func()) {
	return launchRunnerFunc(ctx, runner.PluginSetGRPCOnly(), path, env, configJSON, dataDir, opts...)
}

func launchRunnerFunc(ctx context.Context, set plugin.PluginSet, path string, env []string, configJSON []byte, dataDir string, opts ...LaunchOption) func() (runner.Runner, func()) {
	return func() (runner.Runner, func()) {
		r, stop, err := launchRunner(ctx, set, path, env, configJSON, dataDir, opts...)
		if err != nil {
			return failedRunner{err}, nil
		}
		return r, stop
	}
}

// pluginInfo asks a plugin for its Info through the context-taking call of a plugin
// client, so a dead plugin is an error rather than an empty Info; an in-process plugin
// answers PluginInfo.
func pluginInfo(ctx context.Context, p base.Plugin) (base.Info, error) {
	if ic, ok := p.(interface {
		Info(context.Context) (base.Info, error)
	}); ok {
		return ic.Info(ctx)
	}
	return p.PluginInfo(), nil
}

// pluginSchema is pluginInfo for the config schema.
func pluginSchema(ctx context.Context, p base.Plugin) (base.Schema, error) {
	if sc, ok := p.(interface {
		Base() *base.Client
	}); ok {
		return sc.Base().ConfigSchema(ctx)
	}
	return p.ConfigSchema(), nil
}

// failedRunner is the runner of a launch that failed: every call returns the launch error.
type failedRunner struct{ err error }

func (f failedRunner) PluginInfo() base.Info     { return base.Info{} }
func (f failedRunner) ConfigSchema() base.Schema { return base.Schema{} }
func (f failedRunner) Configure(context.Context, base.ConfigureRequest) base.Diagnostics {
	return base.Diagnostics{base.Errorf(nil, "%v", f.err)}
}
func (f failedRunner) OpenSession(context.Context, runner.Session) error { return f.err }
func (f failedRunner) Execute(context.Context, runner.ExecuteRequest, func(runner.Event) error) (runner.Result, error) {
	return runner.Result{}, f.err
}
func (f failedRunner) Cancel(context.Context, string) (bool, error)  { return false, f.err }
func (f failedRunner) Health(context.Context) (runner.Health, error) { return runner.Health{}, f.err }
func (f failedRunner) CloseSession(context.Context) error            { return f.err }

// showText formats runner output for an error message, cutting long text short.
func showText(s string) string {
	if len(s) <= 200 {
		return fmt.Sprintf("%q", s)
	}
	return fmt.Sprintf("%q... (%d bytes)", s[:160], len(s))
}

var _ runner.Runner = failedRunner{}
