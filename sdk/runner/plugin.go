package runner

import (
	"context"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	limitv1 "github.com/limitgraph/limit/proto/limit/v1"
	"github.com/limitgraph/limit/sdk/base"
	"github.com/limitgraph/limit/sdk/internal/fastpath"
)

// GRPCPlugin is the go-plugin glue of a runner plugin. On the plugin side it serves the
// runner service and offers the fast path; on the host side its client uses the fast path
// unless GRPCOnly is set.
type GRPCPlugin struct {
	plugin.NetRPCUnsupportedPlugin
	// Impl is the implementation served; nil on the host side.
	Impl Runner
	// GRPCOnly makes the host's client ignore the plugin's fast path.
	GRPCOnly bool

	fast fastpath.Servers
}

// GRPCServer registers the base and runner services.
func (p *GRPCPlugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	srv := &server{impl: p.Impl}
	srv.fast = &fastServer{Server: p.fast.New(), srv: srv}
	limitv1.RegisterPluginServer(s, &base.Server{Impl: p.Impl})
	limitv1.RegisterRunnerServer(s, srv)
	return nil
}

// GRPCClient returns the host's client of a runner plugin.
func (p *GRPCPlugin) GRPCClient(ctx context.Context, _ *plugin.GRPCBroker, c *grpc.ClientConn) (any, error) {
	if p.GRPCOnly {
		return NewClient(c), nil
	}
	return NewFastClient(ctx, c), nil
}

// PluginSet is the client-side plugin set for launching runner plugins; their clients
// execute over the fast path when the plugin offers it.
func PluginSet() plugin.PluginSet {
	return plugin.PluginSet{base.KindRunner: &GRPCPlugin{}}
}

// PluginSetGRPCOnly is PluginSet with clients that execute over gRPC, for tests of that
// path and for comparison.
func PluginSetGRPCOnly() plugin.PluginSet {
	return plugin.PluginSet{base.KindRunner: &GRPCPlugin{GRPCOnly: true}}
}

// Serve serves impl as a runner plugin; call it from main.
func Serve(impl Runner) {
	p := &GRPCPlugin{Impl: impl}
	base.Serve(base.KindRunner, p)
	p.fast.Shutdown()
}

var _ plugin.GRPCPlugin = (*GRPCPlugin)(nil)
