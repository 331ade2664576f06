package governance

import (
	"context"
	"fmt"

	"google.golang.org/grpc"

	limitv1 "github.com/limitgraph/limit/proto/limit/v1"
	"github.com/limitgraph/limit/sdk/base"
)

// Client is the host's side of a governance plugin; it implements Rule.
type Client struct {
	base.PluginClient
	rpc limitv1.GovernanceClient
}

// NewClient returns a client over an established plugin connection.
func NewClient(conn *grpc.ClientConn) *Client {
	return &Client{PluginClient: base.NewPluginClient(limitv1.NewPluginClient(conn)), rpc: limitv1.NewGovernanceClient(conn)}
}

// Describe implements Rule.
func (c *Client) Describe(ctx context.Context) ([]RuleDescription, error) {
	r, err := c.rpc.Describe(ctx, &limitv1.DescribeRequest{})
	if err != nil {
		return nil, fmt.Errorf("governance describe: %w", err)
	}
	out := make([]RuleDescription, 0, len(r.GetRules()))
	for _, d := range r.GetRules() {
		out = append(out, DescriptionFromProto(d))
	}
	return out, nil
}

// Evaluate implements Rule. Findings with an unknown flag or a severity out of range are
// refused, so a faulty plugin cannot smuggle in flags the host does not know.
func (c *Client) Evaluate(ctx context.Context, req EvaluateRequest) ([]Finding, error) {
	r, err := c.rpc.Evaluate(ctx, RequestToProto(req))
	if err != nil {
		return nil, fmt.Errorf("governance evaluate: %w", err)
	}
	out := make([]Finding, 0, len(r.GetFindings()))
	for _, m := range r.GetFindings() {
		f := FindingFromProto(m)
		if err := f.Validate(); err != nil {
			return nil, fmt.Errorf("governance evaluate: %w", err)
		}
		out = append(out, f)
	}
	return out, nil
}

var _ Rule = (*Client)(nil)
