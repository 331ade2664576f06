package sdktest

import (
	"context"
	"errors"
	"fmt"
	"reflect"

	"github.com/hashicorp/go-plugin"

	"github.com/limitgraph/limit/sdk/base"
)

// launch starts the plugin binary at path the way the host does (mutual TLS, only env as
// its environment, its own process group), checks that it is a plugin of kind whose client
// is a T, and configures it as the host does: configJSON (nil means "{}") is checked
// against the plugin's config schema and takes its defaults (ApplySchema), then goes to
// Configure with dataDir. It returns the
// client and a function that stops the process and every process it started.
//
// A start that fails, including a binary that never completes the handshake, ends within
// base.DefaultStartTimeout and leaves no process behind.
func launch[T base.Plugin](ctx context.Context, kind string, set plugin.PluginSet, path string, env []string, configJSON []byte, dataDir string) (T, func(), error) {
	var zero T
	client, cmd := base.NewClientCmd(base.LaunchConfig{Path: path, Kind: kind, Plugins: set, Env: env})
	// The start is not cut short when ctx ends: base.Dispense would then call Client.Kill
	// before knowing the plugin's pid, and Kill waits for the plugin's stdout to close,
	// which never happens while a child of the plugin holds it. go-plugin's start timeout
	// bounds the start instead; ctx still ends the calls that follow.
	raw, err := base.Dispense(context.WithoutCancel(ctx), client, kind)
	pid := 0
	if cmd.Process != nil { // the start is over: go-plugin no longer writes it
		pid = cmd.Process.Pid
	}
	stop := func() { base.Stop(client, pid, true) }
	fail := func(err error) (T, func(), error) {
		base.Stop(client, pid, false)
		return zero, nil, fmt.Errorf("launch %s plugin %s: %w", kind, path, err)
	}
	if err != nil {
		// A binary that exited before the handshake: say how, once it has been waited for.
		stopped := base.Stop(client, pid, false)
		var nh *base.NoHandshakeError
		if errors.As(err, &nh) {
			e := &base.NoHandshakeError{Path: path}
			if stopped {
				e.State = cmd.ProcessState
			}
			err = e
		}
		return zero, nil, fmt.Errorf("launch %s plugin %s: %w", kind, path, err)
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
	schema, err := pluginSchema(ctx, p)
	if err != nil {
		return fail(err)
	}
	cfg, ds := ApplySchema(schema, configJSON)
	if ds.HasErrors() {
		return fail(fmt.Errorf("config of plugin %q: %w", info.Name, ds.Err()))
	}
	if ds := p.Configure(ctx, base.ConfigureRequest{Config: cfg, DataDir: dataDir}); ds.HasErrors() {
		return fail(fmt.Errorf("configure plugin %q: %w", info.Name, ds.Err()))
	}
	return p, stop, nil
}
