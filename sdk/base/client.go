package base

import (
	"context"
	"encoding/json"
	"fmt"

	limitv1 "github.com/limitgraph/limit/proto/limit/v1"
)

// Client is the host's side of the base service.
type Client struct {
	RPC limitv1.PluginClient
}

// Info asks the plugin for its identity.
func (c *Client) Info(ctx context.Context) (Info, error) {
	m, err := c.RPC.Info(ctx, &limitv1.InfoRequest{})
	if err != nil {
		return Info{}, fmt.Errorf("plugin info: %w", PlainStatus(err))
	}
	return InfoFromProto(m), nil
}

// ConfigSchema asks the plugin for its config schema.
func (c *Client) ConfigSchema(ctx context.Context) (Schema, error) {
	m, err := c.RPC.ConfigSchema(ctx, &limitv1.ConfigSchemaRequest{})
	if err != nil {
		return Schema{}, fmt.Errorf("plugin config schema: %w", PlainStatus(err))
	}
	return SchemaFromProto(m), nil
}

// Configure sends the decoded configuration and returns the plugin's diagnostics.
func (c *Client) Configure(ctx context.Context, req ConfigureRequest) (Diagnostics, error) {
	raw := req.Config
	if len(raw) == 0 {
		raw = json.RawMessage("{}")
	}
	m, err := c.RPC.Configure(ctx, &limitv1.ConfigureRequest{ConfigJson: raw, ValidateOnly: req.ValidateOnly, DataDir: req.DataDir})
	if err != nil {
		return nil, fmt.Errorf("plugin configure: %w", PlainStatus(err))
	}
	return DiagnosticsFromProto(m.GetDiagnostics()), nil
}

// Base returns the client itself; kind clients embed Client and promote this, so the host
// can reach the context-taking base calls behind any kind's client.
func (c *Client) Base() *Client { return c }

// PluginClient is a Client that also implements Plugin, with no context to pass and
// failures folded into the results; the kind clients (storage, runner, governance) embed
// it, so they implement the kind's interface.
type PluginClient struct {
	Client
}

// NewPluginClient returns a PluginClient over rpc.
func NewPluginClient(rpc limitv1.PluginClient) PluginClient {
	return PluginClient{Client{RPC: rpc}}
}

// PluginInfo implements Plugin; it returns an empty Info on failure.
func (c *PluginClient) PluginInfo() Info {
	i, _ := c.Client.Info(context.Background())
	return i
}

// ConfigSchema implements Plugin; it returns an empty Schema on failure.
func (c *PluginClient) ConfigSchema() Schema {
	s, _ := c.Client.ConfigSchema(context.Background())
	return s
}

// Configure implements Plugin; a transport failure becomes an error diagnostic.
func (c *PluginClient) Configure(ctx context.Context, req ConfigureRequest) Diagnostics {
	ds, err := c.Client.Configure(ctx, req)
	if err != nil {
		return Diagnostics{Errorf(nil, "%v", err)}
	}
	return ds
}
