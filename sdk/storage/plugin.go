package storage

import (
	"context"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	limitv1 "github.com/limitgraph/limit/proto/limit/v1"
	"github.com/limitgraph/limit/sdk/base"
)

// GRPCPlugin is the go-plugin glue of a storage plugin.
type GRPCPlugin struct {
	plugin.NetRPCUnsupportedPlugin
	// Impl is the implementation served; nil on the host side.
	Impl Storage
}

// GRPCServer registers the base and storage services.
func (p *GRPCPlugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	limitv1.RegisterPluginServer(s, &base.Server{Impl: p.Impl})
	limitv1.RegisterStorageServer(s, &server{impl: p.Impl})
	return nil
}

// GRPCClient returns the host's client of a storage plugin.
func (p *GRPCPlugin) GRPCClient(_ context.Context, _ *plugin.GRPCBroker, c *grpc.ClientConn) (any, error) {
	return NewClient(c), nil
}

// PluginSet is the client-side plugin set for launching storage plugins.
func PluginSet() plugin.PluginSet {
	return plugin.PluginSet{base.KindStorage: &GRPCPlugin{}}
}

// Serve serves impl as a storage plugin; call it from main. When the host shuts the
// plugin down, Serve closes impl (finishing writes already taken, releasing locks) before
// it returns.
func Serve(impl Storage) {
	base.Serve(base.KindStorage, &GRPCPlugin{Impl: impl})
	if err := impl.Close(); err != nil {
		base.NewPluginLogger(base.KindStorage).Error("close storage", "error", err)
	}
}

var _ plugin.GRPCPlugin = (*GRPCPlugin)(nil)
