package runner

import (
	"context"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	limitv1 "github.com/limitgraph/limit/proto/limit/v1"
	"github.com/limitgraph/limit/sdk/base"
)

// GRPCPlugin is the go-plugin glue of a runner plugin.
type GRPCPlugin struct {
	plugin.NetRPCUnsupportedPlugin
	// Impl is the implementation served; nil on the host side.
	Impl Runner
}

// GRPCServer registers the base and runner services.
func (p *GRPCPlugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	limitv1.RegisterPluginServer(s, &base.Server{Impl: p.Impl})
	limitv1.RegisterRunnerServer(s, &server{impl: p.Impl})
	return nil
}

// GRPCClient returns the host's client of a runner plugin.
func (p *GRPCPlugin) GRPCClient(_ context.Context, _ *plugin.GRPCBroker, c *grpc.ClientConn) (any, error) {
	return NewClient(c), nil
}

// PluginSet is the client-side plugin set for launching runner plugins.
func PluginSet() plugin.PluginSet {
	return plugin.PluginSet{base.KindRunner: &GRPCPlugin{}}
}

// Serve serves impl as a runner plugin; call it from main.
func Serve(impl Runner) {
	base.Serve(base.KindRunner, &GRPCPlugin{Impl: impl})
}

var _ plugin.GRPCPlugin = (*GRPCPlugin)(nil)
