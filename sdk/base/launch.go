package base

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	"github.com/limitgraph/limit/internal/sysmon"
)

// DefaultStartTimeout bounds how long a plugin may take to complete its handshake.
const DefaultStartTimeout = 10 * time.Second

// LaunchConfig says how to start a plugin binary.
type LaunchConfig struct {
	// Path of the plugin binary.
	Path string
	// Args passed to the binary.
	Args []string
	// Kind of the plugin; the binary must serve it.
	Kind string
	// Plugins is the client-side plugin set for Kind (storage.PluginSet(), ...).
	Plugins plugin.PluginSet
	// Env is the whole environment of the plugin process: the host's own environment is
	// never passed on (secrets stay where they are configured).
	Env []string
	// SHA256, if set, pins the binary: go-plugin refuses to start a binary whose sum differs.
	SHA256 []byte
	// StartTimeout bounds the handshake; zero means DefaultStartTimeout.
	StartTimeout time.Duration
	// Logger receives the plugin's log lines; nil discards them.
	Logger hclog.Logger
	// Dir is the plugin process's working directory; empty means the host's.
	Dir string
	// Stderr, if set, receives every line the process writes to its stderr (a log line or
	// not), each followed by a newline: a panic's stack goes to the host's log at DEBUG
	// only, so a host that wants it at hand keeps it from here.
	Stderr io.Writer
	// SocketDir, if set, is where the plugin creates its Unix sockets: go-plugin's (the
	// gRPC connection) and its fast path's. It must exist, and its path leave room for
	// SocketNameMax more bytes within a socket address. Empty means the system's
	// temporary directory, which a host killed with SIGKILL leaves them in for good.
	SocketDir string
}

// SocketNameMax bounds what a plugin adds to LaunchConfig.SocketDir for a socket's path:
// go-plugin's "/plugin" and ten digits; a fast path's "/limit-governance-", ten digits,
// and "/s".
const SocketNameMax = 30

// SocketPathMax is the longest path a Unix socket can be bound to on Linux (sun_path's
// 108 bytes, less the terminating NUL).
const SocketPathMax = 107

// NewClient returns an unstarted go-plugin client for cfg, with mutual TLS negotiated
// automatically, version negotiation, no inherited environment, message limits, and the
// process in its own process group with a parent-death signal.
func NewClient(cfg LaunchConfig) *plugin.Client {
	c, _ := NewClientCmd(cfg)
	return c
}

// NewClientCmd is NewClient that also returns the plugin's command, whose Process is set
// once the client has started it, so the caller can stop the process group even when the
// handshake never completed.
func NewClientCmd(cfg LaunchConfig) (*plugin.Client, *exec.Cmd) {
	cmd := exec.Command(cfg.Path, cfg.Args...)
	cmd.Env = append([]string{}, cfg.Env...)
	if cfg.Kind == KindStorage {
		// A storage plugin starts with its runtime's sysmon kept out of deep sleep, which it
		// paid for at every group commit (internal/sysmon says how and what it costs). Not
		// runners, started per session, nor rules. A GODEBUG in the plugin's configured env
		// comes after it and wins ("schedtrace=0" turns it off).
		cmd.Env = sysmon.WithSetting(cmd.Env, sysmon.Setting)
	}
	if cfg.SocketDir != "" {
		// go-plugin's client passes its UnixSocketConfig.TempDir on only to a plugin it
		// starts through a RunnerFunc: the plugin reads the directory from this variable
		// (and sdk/internal/fastpath does too). Last, so the plugin's configured env cannot
		// move it.
		cmd.Env = append(cmd.Env, plugin.EnvUnixSocketDir+"="+cfg.SocketDir)
	}
	cmd.Dir = cfg.Dir
	setProcAttr(cmd)
	timeout := cfg.StartTimeout
	if timeout <= 0 {
		timeout = DefaultStartTimeout
	}
	logger := cfg.Logger
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	cc := &plugin.ClientConfig{
		HandshakeConfig:  Handshake,
		VersionedPlugins: map[int]plugin.PluginSet{ProtocolVersion: cfg.Plugins},
		Cmd:              cmd,
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		AutoMTLS:         true,
		SkipHostEnv:      true,
		StartTimeout:     timeout,
		Logger:           logger,
		SyncStdout:       &strayOutput{logger: logger, stream: "stdout"},
		SyncStderr:       &strayOutput{logger: logger, stream: "stderr"},
		Stderr:           cfg.Stderr,
		GRPCDialOptions: []grpc.DialOption{
			grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(MaxMessageSize), grpc.MaxCallSendMsgSize(MaxMessageSize)),
		},
	}
	if len(cfg.SHA256) > 0 {
		cc.SecureConfig = &plugin.SecureConfig{Checksum: cfg.SHA256, Hash: sha256.New()}
	}
	return plugin.NewClient(cc), cmd
}

// strayOutput logs what a plugin writes to its os.Stdout or os.Stderr once it serves
// (go-plugin carries both to the host) rather than through its logger: a fmt.Println left
// in the plugin, or a child process's output, shows in the host log under the plugin's name
// instead of being dropped.
//
// go-plugin carries the output in chunks of 1 KiB, cut anywhere: a line is logged once
// its newline comes, whole, however many chunks it took. A line still without its newline
// is logged as it is once it reaches maxStrayLine, or when nothing more has come for
// strayFlushAfter (a prompt, the last words of a process).
type strayOutput struct {
	logger hclog.Logger
	stream string

	mu      sync.Mutex
	partial []byte      // the line begun, without its newline yet
	flush   *time.Timer // logs partial when nothing more comes
}

const (
	// maxStrayLine bounds a line of stray output kept waiting for its newline.
	maxStrayLine = 64 << 10
	// strayFlushAfter is how long a line begun waits for the rest before it is logged.
	strayFlushAfter = time.Second
)

func (w *strayOutput) Write(p []byte) (int, error) {
	n := len(p)
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.flush != nil {
		w.flush.Stop()
	}
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			w.partial = append(w.partial, p...)
			if len(w.partial) >= maxStrayLine {
				w.emit()
			}
			break
		}
		w.partial = append(w.partial, p[:i]...)
		w.emit()
		p = p[i+1:]
	}
	if len(w.partial) > 0 {
		if w.flush == nil {
			w.flush = time.AfterFunc(strayFlushAfter, func() {
				w.mu.Lock()
				defer w.mu.Unlock()
				w.emit()
			})
		} else {
			w.flush.Reset(strayFlushAfter)
		}
	}
	return n, nil
}

// emit logs the line in partial, if any. The caller holds mu.
func (w *strayOutput) emit() {
	if line := bytes.TrimRight(w.partial, "\r"); len(line) > 0 {
		w.logger.Warn("plugin output outside its logger", "stream", w.stream, "line", string(line))
	}
	w.partial = w.partial[:0]
}

// NoHandshakeError is a plugin process that closed its stdout, having written nothing
// there, before the go-plugin handshake: it exited (or closed stdout) before it served,
// so it is not a LIMIT plugin, or one that failed first.
type NoHandshakeError struct {
	// Path is the binary, when the caller sets it.
	Path string
	// State is how the process ended, when the caller knows it: Dispense cannot wait for
	// the process, a caller that stopped it can (see sdktest).
	State *os.ProcessState
}

func (e *NoHandshakeError) Error() string {
	who := "the plugin process"
	if e.Path != "" {
		who = e.Path
	}
	var how string
	switch {
	case e.State == nil:
		how = "closed its stdout"
	case e.State.Exited():
		how = fmt.Sprintf("exited (status %d)", e.State.ExitCode())
	default:
		how = fmt.Sprintf("ended (%s)", e.State)
	}
	return who + " " + how + " before the plugin handshake, having written nothing to stdout: not a LIMIT plugin, or one that failed before it served"
}

// startError rewrites go-plugin's start errors for a plugin author: what went wrong
// without go-plugin's generic list of causes, and what to do about it.
func startError(err error) error {
	msg := err.Error()
	switch {
	case strings.Contains(msg, "Failed to read any lines from plugin's stdout"):
		return &NoHandshakeError{}
	case strings.HasPrefix(msg, unrecognized):
		line, _, _ := strings.Cut(strings.TrimPrefix(msg, unrecognized), "\n")
		what := "an empty line"
		if line != "" {
			if len(line) > 80 {
				line = line[:80] + "..."
			}
			what = strconv.Quote(line)
		}
		return fmt.Errorf("the plugin wrote %s to stdout instead of the handshake (a plugin must write nothing to stdout before it serves: the host reads its handshake there; log to stderr, with NewPluginLogger)", what)
	case strings.HasPrefix(msg, "incompatible API version with plugin"):
		return fmt.Errorf("%w (the plugin was built against a LIMIT SDK of another protocol version: rebuild it against the SDK of this host's version)", err)
	case strings.Contains(msg, "timeout while waiting for plugin to start"):
		return fmt.Errorf("%w (the plugin did not serve within its start timeout, host.plugin_start_timeout in limitd's config; do slow setup in Configure, not before Serve)", err)
	}
	return err
}

// unrecognized begins go-plugin's error for a first line on stdout that is no handshake.
const unrecognized = "Unrecognized remote plugin message: "

// ErrStartAbandoned marks a Dispense that gave up waiting for the plugin's start.
var ErrStartAbandoned = errors.New("start abandoned")

// Dispense starts the plugin process if needed, completes the handshake and returns the
// kind's client object (a storage.Storage, runner.Runner, ...).
//
// When ctx ends before the start does, the error wraps ErrStartAbandoned: the start goes
// on in the background (its process is killed once it is over), so the caller must not
// read the command's Process, which the start may still be setting.
func Dispense(ctx context.Context, c *plugin.Client, kind string) (any, error) {
	type result struct {
		v   any
		err error
	}
	ch := make(chan result, 1)
	go func() {
		rpc, err := c.Client()
		if err != nil {
			ch <- result{nil, err}
			return
		}
		v, err := rpc.Dispense(kind)
		ch <- result{v, err}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			return nil, fmt.Errorf("start %s plugin: %w", kind, startError(r.err))
		}
		return r.v, nil
	case <-ctx.Done():
		// The start may still be under way (Kill does nothing before it has begun): kill
		// what it started once it is over, so no process is left behind.
		go func() {
			<-ch
			c.Kill()
		}()
		c.Kill()
		return nil, fmt.Errorf("start %s plugin: %w: %w", kind, ErrStartAbandoned, ctx.Err())
	}
}
