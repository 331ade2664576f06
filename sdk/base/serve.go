package base

import (
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
)

// LogLevelEnv names the environment variable through which the host tells a plugin its log
// level ("trace", "debug", "info", "warn", "error").
const LogLevelEnv = "LIMIT_LOG_LEVEL"

// Serve serves p, the go-plugin glue of a plugin of the given kind, and returns when the
// host closes the connection. Kind packages wrap it (storage.Serve, runner.Serve, ...),
// so a plugin's main is one call.
//
// The plugin writes structured logs to stderr, which the host forwards under the plugin's
// name; it exits by itself if the host process dies, so no plugin outlives its host. A
// SIGTERM from outside does not stop it while its host lives (see holdOnTermination).
func Serve(kind string, p plugin.Plugin) {
	// go-plugin replaces os.Stderr with the pipe it carries to the host as stray output;
	// the loggers made after this (in Configure, in a call) must still write to the
	// process's stderr, which the host reads as log lines.
	logOutput.CompareAndSwap(nil, os.Stderr)
	logger := NewPluginLogger(kind)
	panicLogger.Store(&logger)
	go exitWhenOrphaned(logger)
	go holdOnTermination(logger, os.Getppid(), make(chan os.Signal, 1))
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig:  Handshake,
		VersionedPlugins: map[int]plugin.PluginSet{ProtocolVersion: {kind: p}},
		GRPCServer: func(opts []grpc.ServerOption) *grpc.Server {
			opts = append(opts, grpc.MaxRecvMsgSize(MaxMessageSize), grpc.MaxSendMsgSize(MaxMessageSize))
			return grpc.NewServer(opts...)
		},
		Logger: logger,
	})
}

// logOutput is the process's stderr as it was when Serve began, before go-plugin
// replaced os.Stderr (nil before Serve).
var logOutput atomic.Pointer[os.File]

// NewPluginLogger returns the logger a plugin should use: JSON lines on the process's
// stderr, which go-plugin on the host side parses and re-emits with their level and
// fields. It may be made before Serve or after (in Configure, in a call): either way it
// writes to the stderr the plugin had before Serve, not to the os.Stderr that go-plugin
// puts in its place, whose output the host logs as stray output, line by line.
func NewPluginLogger(name string) hclog.Logger {
	level := hclog.LevelFromString(os.Getenv(LogLevelEnv))
	if level == hclog.NoLevel {
		level = hclog.Info
	}
	out := logOutput.Load()
	if out == nil {
		out = os.Stderr
	}
	return hclog.New(&hclog.LoggerOptions{
		Name:       name,
		Level:      level,
		Output:     out,
		JSONFormat: true,
	})
}

// exitWhenOrphaned ends the plugin when its parent goes away. The host also sets the
// parent-death signal, but that signal follows the parent's thread, not its process, so
// this check is the backstop.
func exitWhenOrphaned(logger hclog.Logger) {
	ppid := os.Getppid()
	if ppid <= 1 {
		return
	}
	for range time.Tick(500 * time.Millisecond) {
		if os.Getppid() != ppid {
			logger.Warn("host process is gone, exiting", "parent_pid", ppid)
			exitHostGone()
		}
	}
}

// hostGoneCleanup bounds the function OnHostGone registered.
const hostGoneCleanup = 15 * time.Second

var (
	hostGoneHook atomic.Pointer[func()]
	hostGoneOnce sync.Once
)

// OnHostGone registers f to run before the plugin exits because its host is gone (the
// orphan check, or a SIGTERM once the host is gone), to leave nothing behind: a runner
// stops what it started. f gets hostGoneCleanup; the plugin exits then, done or not.
func OnHostGone(f func()) { hostGoneHook.Store(&f) }

// exitHostGone runs the OnHostGone function, once, and exits.
func exitHostGone() {
	hostGoneOnce.Do(func() {
		if f := hostGoneHook.Load(); f != nil {
			done := make(chan struct{})
			go func() {
				defer close(done)
				(*f)()
			}()
			select {
			case <-done:
			case <-time.After(hostGoneCleanup):
			}
		}
		os.Exit(3)
	})
	select {} // another goroutine is exiting
}

// holdOnTermination keeps the plugin serving when SIGTERM comes from outside. A service
// manager stopping limitd may signal every process of its unit at once (systemd's default
// KillMode=control-group), while the host still needs its plugins to finish the running
// executions and record them; the host stops each plugin itself when it is done (go-plugin's
// shutdown call, then SIGKILL), and the parent-death signal and exitWhenOrphaned end one
// whose host is gone. A SIGTERM that comes when the parent (ppid) is gone ends the plugin
// at once, as SIGTERM would by default. ch receives the signals (a parameter for tests).
func holdOnTermination(logger hclog.Logger, ppid int, ch chan os.Signal) {
	signal.Notify(ch, syscall.SIGTERM)
	for range ch {
		if ppid <= 1 || os.Getppid() != ppid {
			logger.Warn("SIGTERM and the host process is gone, exiting", "parent_pid", ppid)
			exitHostGone()
		}
		logger.Debug("SIGTERM ignored: the host stops its plugins itself once it no longer needs them")
	}
}
