// Command runner-plugin is an example third-party runner plugin for the LIMIT host, written
// only against the public SDK (github.com/limitgraph/limit/sdk/...). It echoes its input
// upper-cased, one word per output event, with a configurable pause between words, and
// shows what every runner must do:
//
//   - stream output through emit as it is produced;
//   - enforce the execution's timeout itself and end with StatusTimeout: the context Execute
//     gets ends only when the host gives up on the runner (a few seconds after the timeout,
//     and it then stops the process) or when the client goes away;
//   - end an execution that Cancel found with StatusCancelled;
//   - return an error only when the runner itself failed: the host then reports the
//     execution as failed and gives the session a fresh process.
//
// The host starts the plugin, not you: build it with
//
//	go build -o limit-runner-upper ./examples/runner-plugin
//
// check it with `limitctl plugin check --kind runner` and declare it in the host's HCL (see
// README.md).
package main

import (
	"context"
	"errors"
	"strings"
	"sync"
	"time"

	"github.com/limitgraph/limit/sdk/base"
	"github.com/limitgraph/limit/sdk/runner"
)

func main() {
	// runner.Serve blocks until the host stops the plugin. Never write to stdout before
	// it runs (the host reads the handshake there); log with base.NewPluginLogger.
	runner.Serve(&upper{})
}

// defaultTimeout applies when neither the execution nor its session sets one.
const defaultTimeout = 30 * time.Second

// errCancelled is the cause of an execution's context when Cancel stopped it.
var errCancelled = errors.New("cancelled")

// upper is the runner. The host starts one process per session, so it holds one session.
type upper struct {
	delay   time.Duration // pause before each word
	session runner.Session

	mu      sync.Mutex
	running map[string]context.CancelCauseFunc // by execution id, for Cancel
}

// PluginInfo names the plugin; Kind must match the HCL block that declares it.
func (u *upper) PluginInfo() base.Info {
	return base.Info{Name: "upper", Kind: base.KindRunner, Version: "0.1.0", Description: "echoes its input upper-cased"}
}

// ConfigSchema is what the host checks the HCL config block against, with file:line errors.
func (u *upper) ConfigSchema() base.Schema {
	return base.Schema{Attributes: []base.Attribute{
		{Name: "delay", Type: "string", Default: "0s", Description: "pause before each word, a Go duration"},
	}}
}

// Configure checks the block and, unless ValidateOnly (limitd -validate), applies it. A
// diagnostic's path names the attribute, so the host points at its line.
func (u *upper) Configure(_ context.Context, req base.ConfigureRequest) base.Diagnostics {
	var cfg struct {
		Delay string `json:"delay"`
	}
	if ds := base.DecodeConfig(req.Config, &cfg); ds.HasErrors() {
		return ds
	}
	var delay time.Duration
	if cfg.Delay != "" {
		d, err := time.ParseDuration(cfg.Delay)
		if err != nil || d < 0 {
			return base.Diagnostics{base.Errorf([]string{"delay"}, "delay %q is not a duration such as \"100ms\"", cfg.Delay)}
		}
		delay = d
	}
	if !req.ValidateOnly {
		u.delay = delay
	}
	return nil
}

// OpenSession is called once, before the session's first execution.
func (u *upper) OpenSession(_ context.Context, s runner.Session) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.session, u.running = s, map[string]context.CancelCauseFunc{}
	return nil
}

// Execute echoes req.Input upper-cased, one word per event.
func (u *upper) Execute(ctx context.Context, req runner.ExecuteRequest, emit func(runner.Event) error) (runner.Result, error) {
	start := time.Now()
	// The timeout: the execution's, else the session's, else the runner's default.
	timeout := req.Timeout
	if timeout == 0 {
		timeout = u.session.Limits.Timeout
	}
	if timeout == 0 {
		timeout = defaultTimeout
	}
	ctx, cancelTimeout := context.WithTimeout(ctx, timeout)
	defer cancelTimeout()
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	u.mu.Lock()
	u.running[req.ExecutionID] = cancel
	u.mu.Unlock()
	defer func() {
		u.mu.Lock()
		delete(u.running, req.ExecutionID)
		u.mu.Unlock()
	}()

	var out strings.Builder
	words := strings.Fields(strings.ToUpper(req.Input))
	for i, w := range words {
		if i < len(words)-1 {
			w += " "
		} else {
			w += "\n"
		}
		select {
		case <-ctx.Done():
			return stopped(ctx, out.String(), start), nil
		case <-time.After(u.delay):
		}
		if err := emit(runner.Event{Output: &runner.Output{Stream: runner.Stdout, Data: []byte(w)}}); err != nil {
			// The host is gone; nobody reads the result.
			return runner.Result{}, err
		}
		out.WriteString(w)
	}
	return runner.Result{Status: runner.StatusOK, Output: out.String(), Duration: time.Since(start)}, nil
}

// stopped is the result of an execution whose context ended: Cancel, its timeout, or the host.
func stopped(ctx context.Context, out string, start time.Time) runner.Result {
	r := runner.Result{Status: runner.StatusCancelled, ExitCode: -1, Output: out, Error: "cancelled", Duration: time.Since(start)}
	if !errors.Is(context.Cause(ctx), errCancelled) && errors.Is(ctx.Err(), context.DeadlineExceeded) {
		r.Status, r.Error = runner.StatusTimeout, "timed out"
	}
	return r
}

// Cancel stops a running execution; it tells whether the execution was running.
func (u *upper) Cancel(_ context.Context, id string) (bool, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	cancel, ok := u.running[id]
	if ok {
		cancel(errCancelled)
	}
	return ok, nil
}

// Health reports the runner's state; a sandboxing runner lists its isolation features.
func (u *upper) Health(context.Context) (runner.Health, error) {
	return runner.Health{Healthy: true}, nil
}

// CloseSession is called before the host stops the process.
func (u *upper) CloseSession(context.Context) error { return nil }
