package sdktest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"

	"github.com/limitgraph/limit/sdk/base"
)

// LaunchOption changes how a Launch function starts a plugin.
type LaunchOption func(*launchOptions)

type launchOptions struct {
	logf     func(format string, args ...any)
	warnings func(base.Diagnostics)
}

// WithLogf passes what the plugin process says to logf, a line at a time: its log lines
// (base.NewPluginLogger) at their level, other lines of its stderr (what it writes before
// it serves, a panic's stack) at DEBUG, and what it writes to os.Stdout or os.Stderr once
// it serves at WARN, as the host logs them. t.Logf fits, so `go test -v` shows what the
// plugin said; lines after the stop function returned are dropped, so stopping the
// plugin in t.Cleanup is safe.
func WithLogf(logf func(format string, args ...any)) LaunchOption {
	return func(o *launchOptions) { o.logf = logf }
}

// WithConfigWarnings calls f with the warning diagnostics of a configuration the plugin
// accepted (the host shows them where the attributes are set and logs them at start).
func WithConfigWarnings(f func(base.Diagnostics)) LaunchOption {
	return func(o *launchOptions) { o.warnings = f }
}

// stderrTailLines is how many of the last lines a plugin wrote to its stderr a start error
// quotes, as the host does.
const stderrTailLines = 5

// stderrLines keeps the last lines a plugin wrote to its stderr.
type stderrLines struct {
	mu     sync.Mutex
	tail   []string
	closed bool // the plugin was stopped: logfWriter passes nothing on
}

// logfWriter passes the lines of the plugin's logger to logf until lines is closed.
type logfWriter struct {
	lines *stderrLines
	logf  func(format string, args ...any)
}

func (w logfWriter) Write(p []byte) (int, error) {
	w.lines.mu.Lock()
	defer w.lines.mu.Unlock()
	if !w.lines.closed {
		for line := range bytes.Lines(p) {
			w.logf("%s", bytes.TrimRight(line, "\r\n"))
		}
	}
	return len(p), nil
}

func (w *stderrLines) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for line := range bytes.Lines(p) {
		l := string(bytes.TrimRight(line, "\r\n"))
		if l == "" {
			continue
		}
		w.tail = append(w.tail, l)
		if len(w.tail) > stderrTailLines {
			w.tail = w.tail[len(w.tail)-stderrTailLines:]
		}
	}
	return len(p), nil
}

func (w *stderrLines) close() {
	w.mu.Lock()
	w.closed = true
	w.mu.Unlock()
}

// note quotes the last lines, for an error, or is "" when there are none.
func (w *stderrLines) note() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.tail) == 0 {
		return ""
	}
	return "; its stderr ended with:\n  " + strings.Join(w.tail, "\n  ")
}

// launch starts the plugin binary at path the way the host does (mutual TLS, only env as
// its environment, its own process group), checks that it is a plugin of kind whose client
// is a T, and configures it as the host does: configJSON (nil means "{}") is checked
// against the plugin's config schema and takes its defaults (ApplySchema), then goes to
// Configure with dataDir. It returns the
// client and a function that stops the process and every process it started.
//
// A start that fails, including a binary that never completes the handshake, ends within
// base.DefaultStartTimeout and leaves no process behind; its error quotes the last lines
// the process wrote to its stderr.
func launch[T base.Plugin](ctx context.Context, kind string, set plugin.PluginSet, path string, env []string, configJSON []byte, dataDir string, opts ...LaunchOption) (T, func(), error) {
	var zero T
	var o launchOptions
	for _, opt := range opts {
		opt(&o)
	}
	stderr := &stderrLines{}
	lc := base.LaunchConfig{Path: path, Kind: kind, Plugins: set, Env: env, Stderr: stderr}
	if o.logf != nil {
		// go-plugin hands the logger each line of the process's stderr (a log line at its
		// level, any other at DEBUG) and what the plugin writes to os.Stdout or os.Stderr
		// once it serves: everything the plugin says, once.
		lc.Logger = hclog.New(&hclog.LoggerOptions{
			Name: "plugin", Level: hclog.Trace, Output: logfWriter{stderr, o.logf}, DisableTime: true,
		})
	}
	client, cmd := base.NewClientCmd(lc)
	// The start is not cut short when ctx ends: base.Dispense would then call Client.Kill
	// before knowing the plugin's pid, and Kill waits for the plugin's stdout to close,
	// which never happens while a child of the plugin holds it. go-plugin's start timeout
	// bounds the start instead; ctx still ends the calls that follow.
	raw, err := base.Dispense(context.WithoutCancel(ctx), client, kind)
	pid := 0
	if cmd.Process != nil { // the start is over: go-plugin no longer writes it
		pid = cmd.Process.Pid
	}
	stop := func() {
		base.Stop(client, pid, true)
		stderr.close()
	}
	fail := func(err error) (T, func(), error) {
		base.Stop(client, pid, false)
		stderr.close()
		return zero, nil, fmt.Errorf("launch %s plugin %s: %w%s", kind, path, err, stderr.note())
	}
	if err != nil {
		// A binary that exited before the handshake: say how, once it has been waited for.
		// Once stopped, go-plugin has read all the process wrote to its stderr.
		stopped := base.Stop(client, pid, false)
		stderr.close()
		var nh *base.NoHandshakeError
		if errors.As(err, &nh) {
			e := &base.NoHandshakeError{Path: path}
			if stopped {
				e.State = cmd.ProcessState
			}
			err = e
		}
		return zero, nil, fmt.Errorf("launch %s plugin %s: %w%s", kind, path, err, stderr.note())
	}
	p, ok := raw.(T)
	if !ok {
		return fail(fmt.Errorf("dispensed %T, which is not a %v", raw, reflect.TypeFor[T]()))
	}
	info, err := pluginInfo(ctx, p)
	if err != nil {
		return fail(err)
	}
	if info.Kind != kind {
		return fail(fmt.Errorf("plugin %q reports kind %q, want %q", info.Name, info.Kind, kind))
	}
	if err := base.CheckInfo(info); err != nil {
		return fail(fmt.Errorf("the host would refuse plugin %q: %w", info.Name, err))
	}
	schema, err := pluginSchema(ctx, p)
	if err != nil {
		return fail(err)
	}
	cfg, ds := ApplySchema(schema, configJSON)
	if ds.HasErrors() {
		return fail(fmt.Errorf("config of plugin %q: %w", info.Name, ds.Err()))
	}
	ds = p.Configure(ctx, base.ConfigureRequest{Config: cfg, DataDir: dataDir})
	if ds.HasErrors() {
		return fail(fmt.Errorf("configure plugin %q: %w", info.Name, ds.Err()))
	}
	if w := ds.Warnings(); len(w) > 0 && o.warnings != nil {
		o.warnings(w)
	}
	return p, stop, nil
}
