package storage

import (
	"context"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	limitv1 "github.com/limitgraph/limit/proto/limit/v1"
	"github.com/limitgraph/limit/sdk/base"
	"github.com/limitgraph/limit/sdk/internal/fastpath"
)

// GRPCPlugin is the go-plugin glue of a storage plugin. On the plugin side it serves the
// storage service and offers the fast path; on the host side its client uses the fast
// path unless GRPCOnly is set.
type GRPCPlugin struct {
	plugin.NetRPCUnsupportedPlugin
	// Impl is the implementation served; nil on the host side.
	Impl Storage
	// GRPCOnly makes the host's client ignore the plugin's fast path.
	GRPCOnly bool

	fast fastpath.Servers
}

// GRPCServer registers the base and storage services.
func (p *GRPCPlugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	srv := newServer(p.Impl)
	srv.fast = &fastServer{Server: p.fast.New(), srv: srv}
	limitv1.RegisterPluginServer(s, &base.Server{Impl: p.Impl})
	limitv1.RegisterStorageServer(s, srv)
	return nil
}

// GRPCClient returns the host's client of a storage plugin.
func (p *GRPCPlugin) GRPCClient(ctx context.Context, _ *plugin.GRPCBroker, c *grpc.ClientConn) (any, error) {
	if p.GRPCOnly {
		return NewClient(c), nil
	}
	return NewFastClient(ctx, c), nil
}

// PluginSet is the client-side plugin set for launching storage plugins; their clients
// use the fast path when the plugin offers it.
func PluginSet() plugin.PluginSet {
	return plugin.PluginSet{base.KindStorage: &GRPCPlugin{}}
}

// PluginSetGRPCOnly is PluginSet with clients that make every call over gRPC, for tests
// of that path and for comparison.
func PluginSetGRPCOnly() plugin.PluginSet {
	return plugin.PluginSet{base.KindStorage: &GRPCPlugin{GRPCOnly: true}}
}

// Serve serves impl as a storage plugin; call it from main. When the host shuts the
// plugin down, Serve closes impl (finishing writes already taken, releasing locks) before
// it returns.
func Serve(impl Storage) {
	p := &GRPCPlugin{Impl: impl}
	base.Serve(base.KindStorage, p)
	p.fast.Shutdown()
	if err := impl.Close(); err != nil {
		base.NewPluginLogger(base.KindStorage).Error("close storage", "error", err)
	}
}

var _ plugin.GRPCPlugin = (*GRPCPlugin)(nil)
