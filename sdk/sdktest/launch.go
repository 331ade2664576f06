package sdktest

import (
	"context"
	"fmt"
	"reflect"

	"github.com/hashicorp/go-plugin"

	"github.com/limitgraph/limit/sdk/base"
)

// launch starts the plugin binary at path the way the host does (mutual TLS, only env as
// its environment), checks that it is a plugin of kind whose client is a T, and
// configures it with configJSON (nil means "{}") and dataDir. It returns the client and a
// function that stops the process.
func launch[T base.Plugin](ctx context.Context, kind string, set plugin.PluginSet, path string, env []string, configJSON []byte, dataDir string) (T, func(), error) {
	var zero T
	client := base.NewClient(base.LaunchConfig{Path: path, Kind: kind, Plugins: set, Env: env})
	stop := func() { client.Kill() }
	fail := func(err error) (T, func(), error) {
		stop()
		return zero, nil, fmt.Errorf("launch %s plugin %s: %w", kind, path, err)
	}
	raw, err := base.Dispense(ctx, client, kind)
	if err != nil {
		return fail(err)
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
	if len(configJSON) == 0 {
		configJSON = []byte("{}")
	}
	if ds := p.Configure(ctx, base.ConfigureRequest{Config: configJSON, DataDir: dataDir}); ds.HasErrors() {
		return fail(fmt.Errorf("configure plugin %q: %w", info.Name, ds.Err()))
	}
	return p, stop, nil
}
