// Package echo holds the plugins the host's own tests run: a runner that echoes its input
// (with its session, process id and a per-process execution count as its "state") and a
// governance rule that flags keywords. They are real plugins, built as binaries by
// internal/testbin, but they isolate nothing and must never be configured in production.
package echo

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/limitgraph/limit/sdk/base"
	"github.com/limitgraph/limit/sdk/governance"
	"github.com/limitgraph/limit/sdk/runner"
)

// Runner is the echo test runner. Inputs:
//
//	crash          the process exits at once (a runner crash)
//	orphan-crash   the same, leaving a child (30 s) that holds its stdout and stderr
//	panic          Execute panics (the SDK turns it into an error; the process lives on)
//	hang           Execute never returns, ignoring cancel and timeout
//	env            the result's output is the process environment
//	big:N          N bytes of "x" on stdout
//	output:N       an output of about N bytes: "a" then "é" (two bytes) over and over
//	sleep:MS       sleeps MS milliseconds (honours cancel and timeout)
//	sleep:MS:TEXT  the same, then TEXT on stdout
//	spend:MS       streams the token "partial ", then works MS milliseconds; cancelled
//	               through Cancel it answers a cancelled result of its own, with what it
//	               spent (usage), its output so far and finish reason "cancel"
//	tokens-wait:W  streams each word of W as a token, then waits for its cancel or end
//	tokens-hang:W  streams each word of W as a token, then never returns, as hang
//	stderr:TEXT    TEXT on stderr
//	anything else  "session=<id> pid=<pid> n=<count> input=<input>" on stdout and as output
type Runner struct {
	mu      sync.Mutex
	session runner.Session
	count   int
	running map[string]context.CancelFunc
}

// PluginInfo implements base.Plugin.
func (e *Runner) PluginInfo() base.Info {
	return base.Info{Name: "echo", Kind: base.KindRunner, Version: "1.2.3", Capabilities: []string{"input:text/plain"}}
}

// ConfigSchema implements base.Plugin.
func (e *Runner) ConfigSchema() base.Schema {
	return base.Schema{Attributes: []base.Attribute{{Name: "greeting", Type: "string", Default: "hi"}}}
}

// Configure implements base.Plugin; greeting "bad" is refused.
func (e *Runner) Configure(_ context.Context, req base.ConfigureRequest) base.Diagnostics {
	var cfg struct {
		Greeting string `json:"greeting"`
	}
	if ds := base.DecodeConfig(req.Config, &cfg); ds.HasErrors() {
		return ds
	}
	if cfg.Greeting == "bad" {
		return base.Diagnostics{base.Errorf([]string{"greeting"}, "greeting must not be %q", cfg.Greeting)}
	}
	return nil
}

// OpenSession implements runner.Runner.
func (e *Runner) OpenSession(_ context.Context, s runner.Session) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.session = s
	e.running = map[string]context.CancelFunc{}
	return nil
}

// Execute implements runner.Runner.
func (e *Runner) Execute(ctx context.Context, req runner.ExecuteRequest, emit func(runner.Event) error) (runner.Result, error) {
	start := time.Now()
	out := func(s runner.Stream, data string) error {
		return emit(runner.Event{Output: &runner.Output{Stream: s, Data: []byte(data)}})
	}
	switch {
	case req.Input == "crash":
		os.Exit(7)
	case req.Input == "orphan-crash":
		// Dies leaving a child that holds its stdout and stderr: the host's plugin client
		// does not see the process as exited while those pipes stay open.
		// (go-plugin points os.Stdout and os.Stderr at pipes of its own; fds 1 and 2 are
		// still the ones the host reads.)
		child := exec.Command("/bin/sleep", "30")
		child.Stdout, child.Stderr = os.NewFile(1, "stdout"), os.NewFile(2, "stderr")
		if err := child.Start(); err != nil {
			return runner.Result{}, err
		}
		os.Exit(7)
	case req.Input == "panic":
		panic("echo: asked to panic")
	case req.Input == "hang":
		select {}
	case req.Input == "env":
		return runner.Result{Status: runner.StatusOK, Output: strings.Join(os.Environ(), "\n"), Duration: time.Since(start)}, nil
	case strings.HasPrefix(req.Input, "big:"):
		n, _ := strconv.Atoi(strings.TrimPrefix(req.Input, "big:"))
		if err := out(runner.Stdout, strings.Repeat("x", n)); err != nil {
			return runner.Result{}, err
		}
		return runner.Result{Status: runner.StatusOK, Duration: time.Since(start)}, nil
	case strings.HasPrefix(req.Input, "output:"):
		n, _ := strconv.Atoi(strings.TrimPrefix(req.Input, "output:"))
		return runner.Result{Status: runner.StatusOK, Output: "a" + strings.Repeat("é", n/2), Duration: time.Since(start)}, nil
	case strings.HasPrefix(req.Input, "stderr:"):
		if err := out(runner.Stderr, strings.TrimPrefix(req.Input, "stderr:")); err != nil {
			return runner.Result{}, err
		}
		return runner.Result{Status: runner.StatusError, ExitCode: 1, Error: "wrote to stderr", Duration: time.Since(start)}, nil
	case strings.HasPrefix(req.Input, "tokens-wait:"):
		// Streams each word as a token, as a model does, then waits for its end (a client
		// leaving) and reports nothing of what it streamed.
		for _, w := range strings.Fields(strings.TrimPrefix(req.Input, "tokens-wait:")) {
			if err := emit(runner.Event{Token: &runner.Token{Text: w + " "}}); err != nil {
				return runner.Result{}, err
			}
		}
		cctx, cancel := e.track(ctx, req.ExecutionID)
		defer cancel()
		<-cctx.Done()
		return runner.Result{Status: runner.StatusCancelled, ExitCode: -1, Error: cctx.Err().Error(), Duration: time.Since(start)}, nil
	case strings.HasPrefix(req.Input, "tokens-hang:"):
		for _, w := range strings.Fields(strings.TrimPrefix(req.Input, "tokens-hang:")) {
			if err := emit(runner.Event{Token: &runner.Token{Text: w + " "}}); err != nil {
				return runner.Result{}, err
			}
		}
		select {}
	case strings.HasPrefix(req.Input, "spend:"):
		ms, _ := strconv.Atoi(strings.TrimPrefix(req.Input, "spend:"))
		if err := emit(runner.Event{Token: &runner.Token{Text: "partial "}}); err != nil {
			return runner.Result{}, err
		}
		cctx, cancel := e.track(ctx, req.ExecutionID)
		defer cancel()
		select {
		case <-time.After(time.Duration(ms) * time.Millisecond):
			return runner.Result{Status: runner.StatusOK, Output: "partial spent", Duration: time.Since(start), Usage: SpentUsage}, nil
		case <-cctx.Done():
		}
		if !errors.Is(context.Cause(cctx), errCancelled) {
			return runner.Result{Status: runner.StatusCancelled, ExitCode: -1, Error: cctx.Err().Error(), Duration: time.Since(start)}, nil
		}
		return runner.Result{Status: runner.StatusCancelled, ExitCode: -1, Error: "cancelled through Cancel", Output: "partial",
			FinishReason: "cancel", Duration: time.Since(start), Usage: SpentUsage}, nil
	case strings.HasPrefix(req.Input, "sleep:"):
		arg, text, _ := strings.Cut(strings.TrimPrefix(req.Input, "sleep:"), ":")
		ms, _ := strconv.Atoi(arg)
		cctx, cancel := context.WithCancel(ctx)
		if req.Timeout > 0 {
			cctx, cancel = context.WithTimeout(ctx, req.Timeout)
		}
		e.mu.Lock()
		e.running[req.ExecutionID] = cancel
		e.mu.Unlock()
		defer func() {
			e.mu.Lock()
			delete(e.running, req.ExecutionID)
			e.mu.Unlock()
			cancel()
		}()
		select {
		case <-time.After(time.Duration(ms) * time.Millisecond):
		case <-cctx.Done():
			st := runner.StatusCancelled
			if errors.Is(cctx.Err(), context.DeadlineExceeded) {
				st = runner.StatusTimeout
			}
			return runner.Result{Status: st, ExitCode: -1, Error: cctx.Err().Error(), Duration: time.Since(start)}, nil
		}
		if text != "" {
			if err := out(runner.Stdout, text); err != nil {
				return runner.Result{}, err
			}
		}
		return runner.Result{Status: runner.StatusOK, Output: "slept", Duration: time.Since(start)}, nil
	}
	e.mu.Lock()
	e.count++
	text := fmt.Sprintf("session=%s pid=%d n=%d input=%s", e.session.ID, os.Getpid(), e.count, req.Input)
	e.mu.Unlock()
	if err := out(runner.Stdout, text); err != nil {
		return runner.Result{}, err
	}
	return runner.Result{Status: runner.StatusOK, Output: text, Duration: time.Since(start),
		Usage: runner.Usage{PromptTokens: uint64(len(strings.Fields(req.Input)))}}, nil
}

// SpentUsage is what input "spend:MS" reports it spent, whether it ends or is cancelled.
var SpentUsage = runner.Usage{PromptTokens: 5, CompletionTokens: 1, TotalTokens: 6, CPUTimeMS: 7}

// errCancelled is the cause of an execution's end that Cancel asked for.
var errCancelled = errors.New("echo: cancelled through Cancel")

// track makes the execution id cancellable through Cancel until the returned cancel.
func (e *Runner) track(ctx context.Context, id string) (context.Context, context.CancelFunc) {
	cctx, cancel := context.WithCancelCause(ctx)
	e.mu.Lock()
	e.running[id] = func() { cancel(errCancelled) }
	e.mu.Unlock()
	return cctx, func() {
		e.mu.Lock()
		delete(e.running, id)
		e.mu.Unlock()
		cancel(nil)
	}
}

// Cancel implements runner.Runner.
func (e *Runner) Cancel(_ context.Context, id string) (bool, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if c, ok := e.running[id]; ok {
		c()
		return true, nil
	}
	return false, nil
}

// Health implements runner.Runner.
func (e *Runner) Health(context.Context) (runner.Health, error) {
	return runner.Health{Healthy: true, Isolation: []runner.IsolationFeature{{Name: "none", Enforced: false, Detail: "test runner: no isolation"}}}, nil
}

// CloseSession implements runner.Runner.
func (e *Runner) CloseSession(context.Context) error { return nil }

// Rule is the keyword test rule: "forbidden" raises jailbreak (severity 8) before
// execution, "secret" in an output raises high_risk (severity 6) after, "lowrisk" raises
// anomaly (severity 2) before. Each finding has score 1 and locates the word's first
// occurrence: its line, column (1-based, in bytes) and byte span. Before execution,
// "toolarge" makes it fail with governance.ErrBeyondLimits (content beyond what it can
// check) and "rulefault" with a plain error (a rule that cannot answer this time).
type Rule struct{}

// PluginInfo implements base.Plugin.
func (Rule) PluginInfo() base.Info {
	return base.Info{Name: "keyword", Kind: base.KindGovernance, Version: "0.0.1"}
}

// ConfigSchema implements base.Plugin.
func (Rule) ConfigSchema() base.Schema { return base.Schema{} }

// Configure implements base.Plugin.
func (Rule) Configure(_ context.Context, req base.ConfigureRequest) base.Diagnostics {
	var cfg struct{}
	return base.DecodeConfig(req.Config, &cfg)
}

// Describe implements governance.Rule.
func (Rule) Describe(context.Context) ([]governance.RuleDescription, error) {
	return []governance.RuleDescription{
		{ID: "keyword", Flags: []string{governance.FlagJailbreak, governance.FlagAnomaly}, Stages: []governance.Stage{governance.StagePre}},
		{ID: "keyword-output", Flags: []string{governance.FlagHighRisk}, Stages: []governance.Stage{governance.StagePost}},
	}, nil
}

// Evaluate implements governance.Rule.
func (Rule) Evaluate(_ context.Context, req governance.EvaluateRequest) ([]governance.Finding, error) {
	var out []governance.Finding
	find := func(word, flag, rule string, sev int) {
		if i := strings.Index(req.Content, word); i >= 0 {
			line := 1 + strings.Count(req.Content[:i], "\n")
			column := i - strings.LastIndex(req.Content[:i], "\n") // 1-based, in bytes
			out = append(out, governance.Finding{Flag: flag, Severity: sev, Score: 1, Reason: "keyword " + strconv.Quote(word), RuleID: rule,
				Location: &governance.Location{Line: line, Column: column, Start: i, End: i + len(word)}})
		}
	}
	if req.Stage == governance.StagePre {
		if strings.Contains(req.Content, "toolarge") {
			return nil, fmt.Errorf("content holds \"toolarge\": %w", governance.ErrBeyondLimits)
		}
		if strings.Contains(req.Content, "rulefault") {
			return nil, errors.New("content holds \"rulefault\"")
		}
		find("forbidden", governance.FlagJailbreak, "keyword", 8)
		find("lowrisk", governance.FlagAnomaly, "keyword", 2)
	} else {
		find("secret", governance.FlagHighRisk, "keyword-output", 6)
	}
	return out, nil
}
