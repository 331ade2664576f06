package base

import (
	"os"
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
// name; it exits by itself if the host process dies, so no plugin outlives its host.
func Serve(kind string, p plugin.Plugin) {
	logger := NewPluginLogger(kind)
	panicLogger.Store(&logger)
	go exitWhenOrphaned(logger)
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

// NewPluginLogger returns the logger a plugin should use: JSON lines on stderr, which
// go-plugin on the host side parses and re-emits with their level and fields.
func NewPluginLogger(name string) hclog.Logger {
	level := hclog.LevelFromString(os.Getenv(LogLevelEnv))
	if level == hclog.NoLevel {
		level = hclog.Info
	}
	return hclog.New(&hclog.LoggerOptions{
		Name:       name,
		Level:      level,
		Output:     os.Stderr,
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
			os.Exit(3)
		}
	}
}
