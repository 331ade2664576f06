// Package plugins launches and supervises the host's plugin processes: the storage backend
// and governance rules (one process each, restarted with backoff when they crash) and the
// runners (a fresh process per session and runner, stopped when the session ends).
package plugins

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"

	"github.com/limitgraph/limit/sdk/base"
	"github.com/limitgraph/limit/sdk/governance"
	"github.com/limitgraph/limit/sdk/runner"
	"github.com/limitgraph/limit/sdk/storage"
)

// Spec says which binary to run for a plugin and how to configure it.
type Spec struct {
	// Kind is base.KindStorage, base.KindRunner or base.KindGovernance.
	Kind string
	// Name is the block label in the config, e.g. "bolt" or "python".
	Name string
	// Path is the resolved path of the binary.
	Path string
	// SHA256, if set, pins the binary.
	SHA256 []byte
	// Env is the plugin's whole environment.
	Env map[string]string
	// Config is the decoded config block as JSON; nil means "{}".
	Config json.RawMessage
	// DataDir is handed to the plugin for its own files.
	DataDir string
	// SocketDir is where the plugin creates its Unix sockets (base.LaunchConfig.SocketDir):
	// limitd's run directory, swept at its start; empty means the system's temporary
	// directory.
	SocketDir string
	// StartTimeout bounds the handshake; zero means base.DefaultStartTimeout.
	StartTimeout time.Duration
	// ConfigureTimeout bounds the plugin's Configure (where its slow setup belongs); zero
	// means DefaultConfigureTimeout.
	ConfigureTimeout time.Duration
	// LogLevel is passed to the plugin as LIMIT_LOG_LEVEL.
	LogLevel string
	// Pool is how many processes of a runner are kept started and configured ahead of
	// the sessions that will take them; 0 starts each when a session needs it.
	Pool int
	// IdleTimeout, for a runner, is how long a session's process may run nothing before
	// it is stopped (the session's next execution starts a fresh one); 0 keeps it until
	// the session is released.
	IdleTimeout time.Duration
	// MaxProcesses, for a runner, caps how many processes its sessions hold at once
	// (pre-started ones of its pool aside); 0 sets no cap.
	MaxProcesses int
	// Limits, for a runner, are the limits its configuration gives a session that sets
	// none (runner.LimitsReporter), when LimitsReported: what a user's session may lower
	// but not raise. A zero field is one the runner does not bound.
	Limits         runner.Limits
	LimitsReported bool
	// AllowUserNetwork, for a runner, lets a user's token create a session with
	// allow_network that may run it (the block's allow_user_network).
	AllowUserNetwork bool
}

// ID is the plugin's namespaced id, e.g. "storage.bolt".
func (s Spec) ID() string { return s.Kind + "." + s.Name }

// Resolve finds a plugin binary. A name containing a slash is a path (relative to the
// working directory); a bare name is looked up in pluginDir. The file must exist and be
// executable, and match sum when one is given.
func Resolve(pluginDir, name string, sum []byte) (string, error) {
	path := name
	if !strings.ContainsRune(name, '/') {
		path = filepath.Join(pluginDir, name)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", err
	}
	fi, err := os.Stat(abs)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return "", fmt.Errorf("plugin binary %q not found (looked in %s); run `make build` or set host.plugin_dir", name, abs)
	case err != nil:
		return "", fmt.Errorf("plugin binary %q: %w", name, err)
	case fi.IsDir():
		return "", fmt.Errorf("plugin binary %q: %s is a directory", name, abs)
	case fi.Mode()&0o111 == 0:
		return "", fmt.Errorf("plugin binary %q: %s is not executable", name, abs)
	}
	if len(sum) > 0 {
		if err := VerifySHA256(abs, sum); err != nil {
			return "", fmt.Errorf("plugin %q: %w", name, err)
		}
	}
	return abs, nil
}

// VerifySHA256 checks a file's SHA-256 against want, naming both sums on mismatch.
func VerifySHA256(path string, want []byte) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return fmt.Errorf("hash %s: %w", path, err)
	}
	if got := h.Sum(nil); !bytes.Equal(got, want) {
		return fmt.Errorf("sha256 mismatch for %s: expected %x, actual %x", path, want, got)
	}
	return nil
}

// ConfigError carries the diagnostics a plugin returned for its configuration, so the
// caller can point at the config file.
type ConfigError struct {
	Spec        Spec
	Diagnostics base.Diagnostics
}

func (e *ConfigError) Error() string {
	return fmt.Sprintf("%s %q rejected its configuration: %v", e.Spec.Kind, e.Spec.Name, e.Diagnostics.Err())
}

// Process is one running plugin process.
type Process struct {
	Spec   Spec
	Info   base.Info
	Impl   base.Plugin
	PID    int
	client *plugin.Client
	rpc    plugin.ClientProtocol
	start  time.Time
	watch  *procWatch
	logger hclog.Logger
	// ConfigWarnings are the warning diagnostics the plugin returned from its last
	// Configure call (which accepted the configuration).
	ConfigWarnings base.Diagnostics
}

// Transport names what carries the process's frequent calls, "unix" (its fast path) or
// "grpc"; "" for a plugin that cannot say.
func (p *Process) Transport() string {
	if t, ok := p.Impl.(interface{ Transport() string }); ok {
		return t.Transport()
	}
	return ""
}

func pluginSet(kind string) (plugin.PluginSet, error) {
	switch kind {
	case base.KindStorage:
		return storage.PluginSet(), nil
	case base.KindRunner:
		return runner.PluginSet(), nil
	case base.KindGovernance:
		return governance.PluginSet(), nil
	}
	return nil, fmt.Errorf("unknown plugin kind %q", kind)
}

// Launch starts a plugin process and completes the handshake, without configuring it.
// The binary is checked against Spec.SHA256 first (and again by go-plugin when it starts
// it), and the plugin must say it is of Spec.Kind.
func Launch(ctx context.Context, spec Spec, logger hclog.Logger) (*Process, error) {
	set, err := pluginSet(spec.Kind)
	if err != nil {
		return nil, err
	}
	if len(spec.SHA256) > 0 {
		if err := VerifySHA256(spec.Path, spec.SHA256); err != nil {
			return nil, fmt.Errorf("%s %q: %w", spec.Kind, spec.Name, err)
		}
	}
	env := make([]string, 0, len(spec.Env)+1)
	for k, v := range spec.Env {
		env = append(env, k+"="+v)
	}
	if spec.LogLevel != "" {
		env = append(env, base.LogLevelEnv+"="+spec.LogLevel)
	}
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	w := &procWatch{}
	logger = exitLogger{Logger: logger, w: w}
	timeout := spec.StartTimeout
	if timeout <= 0 {
		timeout = base.DefaultStartTimeout
	}
	c, cmd := base.NewClientCmd(base.LaunchConfig{
		Path: spec.Path, Kind: spec.Kind, Plugins: set, Env: env, SHA256: spec.SHA256,
		StartTimeout: timeout, Logger: logger, Stderr: &w.tail, SocketDir: spec.SocketDir,
	})
	// The dispense deadline is a backstop above go-plugin's own start timeout, which
	// gives the clearer error.
	dctx, cancel := context.WithTimeout(ctx, timeout+5*time.Second)
	defer cancel()
	started := time.Now()
	raw, err := base.Dispense(dctx, c, spec.Kind)
	pid := 0
	// After an abandoned start, go-plugin may still be setting cmd.Process (and Dispense
	// kills what it starts); otherwise the start is over and the pid ours to read.
	if !errors.Is(err, base.ErrStartAbandoned) && cmd.Process != nil {
		pid = cmd.Process.Pid
	}
	if err != nil {
		// The error says what went wrong, quoting what the process wrote (Stop waits
		// until go-plugin has read all of it).
		w.stopping.Store(true)
		w.unstarted.Store(true)
		base.Stop(c, pid, false)
		return nil, fmt.Errorf("%s %q (%s): %w%s", spec.Kind, spec.Name, spec.Path, err, stderrNote(w))
	}
	impl, ok := raw.(base.Plugin)
	if !ok {
		w.stopping.Store(true)
		base.Stop(c, pid, false)
		return nil, fmt.Errorf("%s %q: plugin client has unexpected type %T", spec.Kind, spec.Name, raw)
	}
	rpc, _ := c.Client()
	p := &Process{Spec: spec, Impl: impl, PID: pid, client: c, rpc: rpc, start: started, watch: w, logger: logger}
	icx, icancel := context.WithTimeout(ctx, timeout)
	defer icancel()
	info, err := infoOf(icx, impl)
	if err != nil {
		p.Kill()
		return nil, fmt.Errorf("%s %q: %w%s", spec.Kind, spec.Name, err, stderrNote(w))
	}
	if info.Kind != spec.Kind {
		p.Kill()
		return nil, fmt.Errorf("%s %q: binary %s is a %q plugin, not a %q plugin", spec.Kind, spec.Name, spec.Path, info.Kind, spec.Kind)
	}
	if err := base.CheckInfo(info); err != nil {
		p.Kill()
		return nil, fmt.Errorf("%s %q: binary %s is refused: %w", spec.Kind, spec.Name, spec.Path, err)
	}
	p.Info = info
	return p, nil
}

// baser is implemented by every kind's client (through base.Client).
type baser interface{ Base() *base.Client }

// infoOf asks the plugin for its Info through the base client, keeping the error.
func infoOf(ctx context.Context, impl base.Plugin) (base.Info, error) {
	if c, ok := impl.(baser); ok {
		return c.Base().Info(ctx)
	}
	return impl.PluginInfo(), nil
}

// Schema asks the plugin for its config schema.
func (p *Process) Schema(ctx context.Context) (base.Schema, error) {
	if c, ok := p.Impl.(baser); ok {
		return c.Base().ConfigSchema(ctx)
	}
	return p.Impl.ConfigSchema(), nil
}

// DefaultConfigureTimeout bounds a plugin's Configure when its spec sets no
// ConfigureTimeout (host.plugin_configure_timeout's default): generous, as a plugin's slow
// setup (opening a large database, connecting to a server) belongs there.
const DefaultConfigureTimeout = 5 * time.Minute

// errConfigureTimeout is the cause of a Configure's context that ran out of time.
var errConfigureTimeout = errors.New("configure timeout")

// Configure sends the spec's configuration, bounded by the spec's ConfigureTimeout: a
// plugin that does not answer in time gets an error naming it (the caller kills the
// process). Error diagnostics come back as *ConfigError (with the warnings beside them).
// Warnings of a configuration the plugin accepted are kept in ConfigWarnings, for the
// caller to show at their place in the file, and logged at WARN when the configuration is
// applied (not validateOnly).
func (p *Process) Configure(ctx context.Context, validateOnly bool) error {
	cfg := p.Spec.Config
	if len(cfg) == 0 {
		cfg = json.RawMessage("{}")
	}
	timeout := p.Spec.ConfigureTimeout
	if timeout <= 0 {
		timeout = DefaultConfigureTimeout
	}
	cctx, cancel := context.WithTimeoutCause(ctx, timeout, errConfigureTimeout)
	defer cancel()
	if p.logger != nil {
		p.logger.Debug("configuring plugin", "validate_only", validateOnly, "timeout", timeout)
	}
	ds := p.Impl.Configure(cctx, base.ConfigureRequest{Config: cfg, ValidateOnly: validateOnly, DataDir: p.Spec.DataDir})
	if ds.HasErrors() && context.Cause(cctx) == errConfigureTimeout {
		return fmt.Errorf("%s %q did not finish its Configure within %s (host.plugin_configure_timeout): %w; "+
			"the plugin is stopped. Raise host.plugin_configure_timeout if its setup needs longer",
			p.Spec.Kind, p.Spec.Name, timeout, context.DeadlineExceeded)
	}
	if ds.HasErrors() {
		return &ConfigError{Spec: p.Spec, Diagnostics: ds}
	}
	p.ConfigWarnings = ds.Warnings()
	if !validateOnly && p.logger != nil {
		for _, d := range p.ConfigWarnings {
			p.logger.Warn("plugin configuration warning", "warning", d.Error())
		}
	}
	return nil
}

// ReportedLimits asks a runner what limits the spec's configuration gives a session that
// sets none (runner.LimitsReporter); reported is false for a plugin that does not say.
func (p *Process) ReportedLimits(ctx context.Context) (l runner.Limits, reported bool, err error) {
	cfg := p.Spec.Config
	if len(cfg) == 0 {
		cfg = json.RawMessage("{}")
	}
	req := base.ConfigureRequest{Config: cfg, ValidateOnly: true, DataDir: p.Spec.DataDir}
	switch impl := p.Impl.(type) {
	case interface {
		ReportedLimits(context.Context, base.ConfigureRequest) (runner.Limits, bool, error)
	}:
		return impl.ReportedLimits(ctx, req)
	case runner.LimitsReporter:
		l, err := impl.ConfiguredLimits(req)
		return l, err == nil, err
	}
	return runner.Limits{}, false, nil
}

// Exited reports whether the process has ended.
func (p *Process) Exited() bool { return p.client.Exited() }

// pingTimeout bounds how long Ping waits for an answer.
var pingTimeout = 5 * time.Second

// Ping checks that the plugin answers (the gRPC health service go-plugin serves), within
// pingTimeout. go-plugin's ping has no deadline: a process that is alive but does not
// answer (stopped, frozen, its server stuck) would hold the caller for good, and callers
// ping precisely to find out whether a process that failed them is still usable.
func (p *Process) Ping() error {
	if p.rpc == nil {
		return errors.New("no connection")
	}
	ch := make(chan error, 1)
	go func() { ch <- p.rpc.Ping() }()
	select {
	case err := <-ch:
		return err
	case <-time.After(pingTimeout):
		return fmt.Errorf("no answer within %v", pingTimeout)
	}
}

// Uptime is how long the process has been running.
func (p *Process) Uptime() time.Duration { return time.Since(p.start) }

// Kill stops the process and every process it started (its process group, and those below
// it that left the group), and waits for it to end. The plugin gets a moment to exit
// cleanly first.
func (p *Process) Kill() {
	p.watch.stopping.Store(true)
	base.Stop(p.client, p.PID, true)
}

// expectEnd marks the process's end as expected (the host is shutting down): go-plugin's
// report of its exit is logged at INFO, with no stderr lines.
func (p *Process) expectEnd() {
	p.watch.stopping.Store(true)
	p.watch.shutdown.Store(true)
}

// killLost stops a process the host found lost (it stopped answering, or died before the
// host heard of its exit): unlike Kill, its end is news, and its last stderr lines are
// logged at ERROR when go-plugin reports it (whether the host's kill or the crash ended it).
func (p *Process) killLost() {
	base.Stop(p.client, p.PID, true)
}

// stderrNote quotes the last lines a process that failed to start wrote to its stderr,
// for its start error, or is "" when it wrote none.
func stderrNote(w *procWatch) string {
	lines := w.tail.Last(startErrLines)
	if len(lines) == 0 {
		return ""
	}
	return "; its stderr ended with:\n  " + strings.Join(lines, "\n  ")
}
