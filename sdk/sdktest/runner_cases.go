package sdktest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/limitgraph/limit/sdk/base"
	"github.com/limitgraph/limit/sdk/runner"
)

// RunnerCases returns the runner conformance cases for cfg, in the order they are meant to
// run. Cases needing an input cfg lacks are marked not applicable (SlowInput, ErrorInput)
// or fail with a message naming the missing field (Input).
func RunnerCases(cfg RunnerSuiteConfig) []RunnerCase {
	needInput := func(name string, run func(context.Context, runner.Runner, runner.Session, RunnerSuiteConfig) error) RunnerCase {
		return RunnerCase{Name: name, Run: func(ctx context.Context, r runner.Runner, s runner.Session) error {
			if cfg.Input == "" {
				return errors.New("RunnerSuiteConfig.Input is empty: give an input the runner executes successfully")
			}
			return run(ctx, r, s, cfg)
		}}
	}
	withCfg := func(name string, run func(context.Context, runner.Runner, runner.Session, RunnerSuiteConfig) error) RunnerCase {
		return RunnerCase{Name: name, Run: func(ctx context.Context, r runner.Runner, s runner.Session) error {
			return run(ctx, r, s, cfg)
		}}
	}
	notApplicable := func(c RunnerCase, value, field string) RunnerCase {
		if value == "" {
			c.NotApplicable = "no " + field + " given"
		}
		return c
	}
	return []RunnerCase{
		withCfg("info", caseRunnerInfo),
		withCfg("health", caseRunnerHealth),
		needInput("execute-ok", caseExecuteOK),
		needInput("execute-twice", caseExecuteTwice),
		notApplicable(needInput("error-input", caseErrorInput), cfg.ErrorInput, "ErrorInput (--error-input)"),
		notApplicable(needInput("timeout", caseTimeout), cfg.SlowInput, "SlowInput (--slow-input)"),
		notApplicable(needInput("cancel", caseCancel), cfg.SlowInput, "SlowInput (--slow-input)"),
		withCfg("cancel-unknown", caseCancelUnknown),
		withCfg("close-session", caseCloseSession),
	}
}

// execution is what the suite saw of one execution.
type execution struct {
	req     runner.ExecuteRequest
	res     runner.Result
	err     error // the error Execute returned, or what it panicked with
	elapsed time.Duration
	// panicked says Execute panicked (in-process, on startExecution's goroutine; through
	// the plugin boundary the SDK turns a panic into an error return).
	panicked bool

	mu      sync.Mutex
	stdout  strings.Builder
	stderr  strings.Builder
	tokens  strings.Builder
	invalid []string // protocol violations among the events
}

// execute runs req on r, collecting its events. emit is safe for concurrent use, and never
// fails, so a runner is not stopped by the suite.
func execute(ctx context.Context, r runner.Runner, req runner.ExecuteRequest) *execution {
	e := &execution{req: req}
	start := time.Now()
	e.res, e.err = r.Execute(ctx, req, e.emit)
	e.elapsed = time.Since(start)
	return e
}

func (e *execution) emit(ev runner.Event) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	switch {
	case ev.Output != nil && ev.Token != nil:
		e.invalid = append(e.invalid, "an event carries both output and a token")
	case ev.Output != nil:
		switch ev.Output.Stream {
		case runner.Stdout:
			e.stdout.Write(ev.Output.Data)
		case runner.Stderr:
			e.stderr.Write(ev.Output.Data)
		default:
			e.invalid = append(e.invalid, fmt.Sprintf("output event on unknown stream %d", ev.Output.Stream))
		}
	case ev.Token != nil:
		e.tokens.WriteString(ev.Token.Text)
	default:
		e.invalid = append(e.invalid, "an event carries neither output nor a token")
	}
	return nil
}

// describe summarizes the execution for an error message.
func (e *execution) describe() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.panicked {
		return fmt.Sprintf("execute %s panicked after %v: %v", showText(e.req.Input), e.elapsed.Round(time.Millisecond), e.err)
	}
	if e.err != nil {
		return fmt.Sprintf("execute %s returned error %q after %v", showText(e.req.Input), e.err, e.elapsed.Round(time.Millisecond))
	}
	var parts []string
	parts = append(parts, fmt.Sprintf("status %s", statusName(e.res.Status)), fmt.Sprintf("exit code %d", e.res.ExitCode))
	if e.res.Error != "" {
		parts = append(parts, "error "+showText(e.res.Error))
	}
	if e.res.Output != "" {
		parts = append(parts, "output "+showText(e.res.Output))
	}
	if s := e.stdout.String(); s != "" {
		parts = append(parts, "stdout "+showText(s))
	}
	if s := e.stderr.String(); s != "" {
		parts = append(parts, "stderr "+showText(s))
	}
	if s := e.tokens.String(); s != "" {
		parts = append(parts, "tokens "+showText(s))
	}
	return fmt.Sprintf("execute %s: %s after %v", showText(e.req.Input), strings.Join(parts, ", "), e.elapsed.Round(time.Millisecond))
}

// statusName names a status, including values outside the protocol.
func statusName(s runner.Status) string {
	if s < runner.StatusOK || s > runner.StatusLimitExceeded {
		return fmt.Sprintf("%d (not a protocol status)", int(s))
	}
	return s.String()
}

// checkEvents reports protocol violations among the events.
func (e *execution) checkEvents() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.invalid) > 0 {
		return fmt.Errorf("execute %s: %s", showText(e.req.Input), strings.Join(e.invalid, "; "))
	}
	return nil
}

// checkDuration checks that the result's duration is plausible: not negative, not longer
// than the call as the suite saw it, and above zero, in-process and through the protocol
// alike (it carries microseconds: an execution takes more than one).
func (e *execution) checkDuration() error {
	d := e.res.Duration
	switch {
	case d < 0:
		return fmt.Errorf("%s: result duration is negative (%v)", e.describe(), d)
	case d > e.elapsed+time.Millisecond:
		return fmt.Errorf("%s: result duration %v is longer than the call took (%v)", e.describe(), d, e.elapsed)
	case d == 0:
		return fmt.Errorf("%s: result duration is zero, want how long the execution ran (every result carries its timing)", e.describe())
	}
	return nil
}

// wantOK checks that e succeeded and produced cfg.Expect.
func (e *execution) wantOK(cfg RunnerSuiteConfig) error {
	if e.err != nil {
		return fmt.Errorf("%s (an error return means the runner itself failed)", e.describe())
	}
	if e.res.Status != runner.StatusOK {
		return fmt.Errorf("%s: want status ok", e.describe())
	}
	if e.res.ExitCode != 0 {
		return fmt.Errorf("%s: status ok with a non-zero exit code", e.describe())
	}
	if err := e.checkEvents(); err != nil {
		return err
	}
	e.mu.Lock()
	stdout, tokens := e.stdout.String(), e.tokens.String()
	e.mu.Unlock()
	if cfg.Expect == "" {
		if stdout == "" && tokens == "" && e.res.Output == "" {
			return fmt.Errorf("%s: no output at all, want some on stdout, in tokens or in the result's output", e.describe())
		}
	} else if !strings.Contains(stdout, cfg.Expect) && !strings.Contains(tokens, cfg.Expect) && !strings.Contains(e.res.Output, cfg.Expect) {
		return fmt.Errorf("%s: want %s in the streamed stdout, the streamed tokens or the result's output", e.describe(), showText(cfg.Expect))
	}
	return e.checkDuration()
}

// executeOK runs cfg.Input with a new execution id and checks that it succeeds.
func executeOK(ctx context.Context, r runner.Runner, cfg RunnerSuiteConfig, when string) (string, error) {
	id := newID("exec")
	e := execute(ctx, r, runner.ExecuteRequest{ExecutionID: id, Input: cfg.Input, Params: cfg.Params})
	if err := e.wantOK(cfg); err != nil {
		if when != "" {
			return id, fmt.Errorf("%s: %w", when, err)
		}
		return id, err
	}
	return id, nil
}

// caseRunnerInfo: the plugin names itself as a runner with a version, and its config
// schema has a name and a type for every attribute.
func caseRunnerInfo(ctx context.Context, r runner.Runner, _ runner.Session, _ RunnerSuiteConfig) error {
	info, err := pluginInfo(ctx, r)
	if err != nil {
		return err
	}
	if err := checkInfo(info, base.KindRunner); err != nil {
		return err
	}
	schema, err := pluginSchema(ctx, r)
	if err != nil {
		return err
	}
	return checkSchema(schema)
}

// checkInfo checks the kind, name and version of a plugin's Info.
func checkInfo(info base.Info, kind string) error {
	var problems []string
	if info.Kind != kind {
		problems = append(problems, fmt.Sprintf("kind is %q, want %q", info.Kind, kind))
	}
	if err := base.CheckInfo(info); err != nil {
		problems = append(problems, err.Error())
	}
	if len(problems) > 0 {
		return fmt.Errorf("plugin info %+v: %s", info, strings.Join(problems, "; "))
	}
	return nil
}

// checkSchema checks that every attribute of a config schema has a unique name and a type.
func checkSchema(s base.Schema) error {
	seen := map[string]bool{}
	for i, a := range s.Attributes {
		switch {
		case a.Name == "":
			return fmt.Errorf("config schema attribute %d has no name", i)
		case seen[a.Name]:
			return fmt.Errorf("config schema attribute %q is declared twice", a.Name)
		case strings.TrimSpace(a.Type) == "":
			return fmt.Errorf("config schema attribute %q has no type (want an HCL type such as \"string\")", a.Name)
		}
		seen[a.Name] = true
	}
	return nil
}

// caseRunnerHealth: an open runner is healthy and names each isolation feature it reports.
func caseRunnerHealth(ctx context.Context, r runner.Runner, _ runner.Session, _ RunnerSuiteConfig) error {
	h, err := r.Health(ctx)
	if err != nil {
		return fmt.Errorf("health: %w", err)
	}
	if !h.Healthy {
		return fmt.Errorf("health: not healthy right after the session opened (message %q)", h.Message)
	}
	seen := map[string]bool{}
	for i, f := range h.Isolation {
		if strings.TrimSpace(f.Name) == "" {
			return fmt.Errorf("health: isolation feature %d has no name (%+v)", i, f)
		}
		if seen[f.Name] {
			return fmt.Errorf("health: isolation feature %q is reported twice", f.Name)
		}
		seen[f.Name] = true
	}
	return nil
}

// caseExecuteOK: Input succeeds, produces Expect and reports its duration.
func caseExecuteOK(ctx context.Context, r runner.Runner, _ runner.Session, cfg RunnerSuiteConfig) error {
	_, err := executeOK(ctx, r, cfg, "")
	return err
}

// caseExecuteTwice: the process keeps serving its session after an execution.
func caseExecuteTwice(ctx context.Context, r runner.Runner, _ runner.Session, cfg RunnerSuiteConfig) error {
	if _, err := executeOK(ctx, r, cfg, "first execution"); err != nil {
		return err
	}
	_, err := executeOK(ctx, r, cfg, "second execution in the same session")
	return err
}

// caseErrorInput: a failing input ends with status error (or limit_exceeded) that says why,
// as a result rather than an error return, and the session keeps working.
func caseErrorInput(ctx context.Context, r runner.Runner, _ runner.Session, cfg RunnerSuiteConfig) error {
	e := execute(ctx, r, runner.ExecuteRequest{ExecutionID: newID("exec"), Input: cfg.ErrorInput, Params: cfg.Params})
	if e.err != nil {
		return fmt.Errorf("%s: a failing input must end with a result of status error, not an error return (which means the runner itself failed)", e.describe())
	}
	if e.res.Status != runner.StatusError && e.res.Status != runner.StatusLimitExceeded {
		return fmt.Errorf("%s: want status error", e.describe())
	}
	e.mu.Lock()
	stderr := e.stderr.String()
	e.mu.Unlock()
	if e.res.ExitCode == 0 && e.res.Error == "" && stderr == "" {
		return fmt.Errorf("%s: the result does not say why it failed: want a non-zero exit code, an error message or something on stderr", e.describe())
	}
	if err := e.checkEvents(); err != nil {
		return err
	}
	if err := e.checkDuration(); err != nil {
		return err
	}
	_, err := executeOK(ctx, r, cfg, "execution after a failed one")
	return err
}

// startExecution runs req in the background; the channel receives the execution when it
// ends. Cancelling the returned function cancels the execution's context.
func startExecution(ctx context.Context, r runner.Runner, req runner.ExecuteRequest) (<-chan *execution, context.CancelFunc) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan *execution, 1)
	go func() {
		// A panic on this goroutine would end the whole test binary, not the case alone
		// (runRunnerCase recovers only its own): it becomes the execution's outcome.
		start := time.Now()
		defer func() {
			if p := recover(); p != nil {
				done <- &execution{req: req, err: fmt.Errorf("%v", p), elapsed: time.Since(start), panicked: true}
			}
		}()
		done <- execute(ctx, r, req)
	}()
	return done, cancel
}

// caseTimeout: an execution that outlives its timeout ends with status timeout soon after,
// and the session keeps working.
func caseTimeout(ctx context.Context, r runner.Runner, _ runner.Session, cfg RunnerSuiteConfig) error {
	req := runner.ExecuteRequest{ExecutionID: newID("exec"), Input: cfg.SlowInput, Timeout: runnerTestTimeout, Params: cfg.Params}
	done, cancel := startExecution(ctx, r, req)
	// The runner must enforce the timeout itself; the context is cancelled only after
	// the case has given up, so the runner cannot lean on it.
	defer cancel()
	limit := runnerTestTimeout + cfg.grace()
	var e *execution
	select {
	case e = <-done:
	case <-time.After(limit):
		return fmt.Errorf("execute %s with a timeout of %v: no result after %v; the runner must stop an execution at its timeout", showText(cfg.SlowInput), runnerTestTimeout, limit)
	}
	if e.err != nil {
		return fmt.Errorf("%s: a timed-out execution must end with a result of status timeout, not an error return", e.describe())
	}
	if e.res.Status != runner.StatusTimeout {
		if e.res.Status == runner.StatusOK {
			if e.elapsed > runnerTestTimeout {
				return fmt.Errorf("%s: the runner ignored the execution's timeout of %v; it must stop the execution then and end it with status timeout", e.describe(), runnerTestTimeout)
			}
			return fmt.Errorf("%s: want status timeout; SlowInput must run for at least ten seconds", e.describe())
		}
		return fmt.Errorf("%s: want status timeout after the %v timeout", e.describe(), runnerTestTimeout)
	}
	if err := e.checkDuration(); err != nil {
		return err
	}
	_, err := executeOK(ctx, r, cfg, "execution after a timed-out one")
	return err
}

// cancelPoll is how often the cancel case retries Cancel until the execution is found.
const cancelPoll = 10 * time.Millisecond

// caseCancel: Cancel finds a running execution, which then ends with status cancelled,
// and the session keeps working.
func caseCancel(ctx context.Context, r runner.Runner, _ runner.Session, cfg RunnerSuiteConfig) error {
	id := newID("exec")
	done, cancel := startExecution(ctx, r, runner.ExecuteRequest{ExecutionID: id, Input: cfg.SlowInput, Params: cfg.Params})
	defer cancel()
	// The execution may not be registered yet when Cancel first arrives: retry until it
	// is found, it ends by itself, or the grace period is over.
	deadline := time.Now().Add(cfg.grace())
	var e *execution
	for {
		found, err := r.Cancel(ctx, id)
		if err != nil {
			return fmt.Errorf("cancel running execution %q: %w", id, err)
		}
		if found {
			break
		}
		select {
		case e = <-done:
			switch {
			case e.err != nil:
				return fmt.Errorf("%s, before Cancel found it: Execute failed instead of running until cancelled (failed code is reported as a result, not an error return)", e.describe())
			case e.res.Status != runner.StatusOK:
				return fmt.Errorf("%s: it ended before Cancel found it; SlowInput must run, without failing, for at least ten seconds", e.describe())
			}
			return fmt.Errorf("%s: it ended before Cancel found it (Cancel kept answering found=false); SlowInput must run for at least ten seconds", e.describe())
		case <-time.After(cancelPoll):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("cancel running execution %q: still not found after %v of retries, want found=true while it runs", id, cfg.grace())
		}
	}
	cancelled := time.Now()
	select {
	case e = <-done:
	case <-time.After(cfg.grace()):
		return fmt.Errorf("execute %s: no result %v after Cancel found it; the runner must stop a cancelled execution", showText(cfg.SlowInput), cfg.grace())
	}
	if e.err != nil {
		return fmt.Errorf("%s: a cancelled execution must end with a result of status cancelled, not an error return", e.describe())
	}
	if e.res.Status != runner.StatusCancelled {
		return fmt.Errorf("%s: want status cancelled %v after Cancel", e.describe(), time.Since(cancelled).Round(time.Millisecond))
	}
	if err := e.checkDuration(); err != nil {
		return err
	}
	_, err := executeOK(ctx, r, cfg, "execution after a cancelled one")
	return err
}

// caseCancelUnknown: cancelling an execution that does not run is not an error and finds
// nothing, both for an id never used and (with Input) for an execution already finished.
func caseCancelUnknown(ctx context.Context, r runner.Runner, _ runner.Session, cfg RunnerSuiteConfig) error {
	id := newID("never-started")
	found, err := r.Cancel(ctx, id)
	if err != nil {
		return fmt.Errorf("cancel unknown execution %q: %w (want found=false and no error)", id, err)
	}
	if found {
		return fmt.Errorf("cancel unknown execution %q: found=true, want false", id)
	}
	if cfg.Input == "" {
		return nil
	}
	id, err = executeOK(ctx, r, cfg, "")
	if err != nil {
		return err
	}
	found, err = r.Cancel(ctx, id)
	if err != nil {
		return fmt.Errorf("cancel finished execution %q: %w (want found=false and no error)", id, err)
	}
	if found {
		return fmt.Errorf("cancel finished execution %q: found=true, want false (only running executions are found)", id)
	}
	return nil
}

// caseCloseSession: closing the session succeeds within runner.CloseSessionTimeout, what
// the host gives it before it kills the process.
func caseCloseSession(ctx context.Context, r runner.Runner, _ runner.Session, _ RunnerSuiteConfig) error {
	cctx, cancel := context.WithTimeout(ctx, runner.CloseSessionTimeout)
	defer cancel()
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- r.CloseSession(cctx) }()
	tooLong := fmt.Errorf("close session: not done within %v, which is all the host gives it before it kills the process (runner.CloseSessionTimeout); release what takes longer as the process ends, or in the background", runner.CloseSessionTimeout)
	select {
	case err := <-done:
		// A runner that returns when its context ends has not closed in time, though
		// through a plugin its answer may come back just before the caller's deadline:
		// the plugin's copy of the deadline is its own clock's reading of it.
		if cctx.Err() != nil || time.Since(start) >= runner.CloseSessionTimeout*9/10 {
			return tooLong
		}
		if err != nil {
			return fmt.Errorf("close session: %w", err)
		}
		return nil
	case <-cctx.Done():
		// A runner in this process that ignores its context would hold the suite.
		return tooLong
	}
}
