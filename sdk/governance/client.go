package governance

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	limitv1 "github.com/limitgraph/limit/proto/limit/v1"
	"github.com/limitgraph/limit/sdk/base"
	"github.com/limitgraph/limit/sdk/internal/fastpath"
)

// Client is the host's side of a governance plugin; it implements Rule. Evaluate goes over
// the plugin's fast path when it offers one (a Unix socket the plugin opens beside the gRPC
// connection, cheaper per call), over gRPC otherwise; answers and errors are the same
// either way.
type Client struct {
	base.PluginClient
	rpc     limitv1.GovernanceClient
	fast    *fastpath.UnaryClient
	fastErr error
	// inline: the plugin takes inline calls (framing version 2).
	inline bool
}

// NewClient returns a client over an established plugin connection that makes every call
// over gRPC.
func NewClient(conn *grpc.ClientConn) *Client {
	return &Client{
		PluginClient: base.NewPluginClient(limitv1.NewPluginClient(conn)), rpc: limitv1.NewGovernanceClient(conn),
		fastErr: errors.New("gRPC only"),
	}
}

// fastSetupTimeout bounds asking for and connecting to a plugin's fast path.
const fastSetupTimeout = 10 * time.Second

// NewFastClient returns a client over an established plugin connection that asks the
// plugin for its fast path and evaluates over it; when the plugin offers none, or it
// cannot be set up, the client uses gRPC (FastPathError tells why).
func NewFastClient(ctx context.Context, conn *grpc.ClientConn) *Client {
	c := NewClient(conn)
	fc, inline, err := dialFast(ctx, c.rpc)
	if err != nil {
		c.fastErr = fmt.Errorf("governance fast path not used: %w", err)
		return c
	}
	c.fast, c.fastErr, c.inline = fc, nil, inline
	return c
}

// Transport names what carries Evaluate: "unix" (the fast path) or "grpc". Once every
// fast-path connection has broken, it is "grpc" again.
func (c *Client) Transport() string {
	if c.fast != nil && c.fast.Alive() {
		return "unix"
	}
	return "grpc"
}

// FastPathError tells why the client does not use a fast path (nil when it does).
func (c *Client) FastPathError() error { return c.fastErr }

// Close closes the fast path's connections; the plugin process is stopped by whoever
// started it.
func (c *Client) Close() {
	if c.fast != nil {
		c.fast.Close()
	}
}

// Describe implements Rule.
func (c *Client) Describe(ctx context.Context) ([]RuleDescription, error) {
	r, err := c.rpc.Describe(ctx, &limitv1.DescribeRequest{})
	if err != nil {
		return nil, fmt.Errorf("governance describe: %w", base.PlainStatus(err))
	}
	out := make([]RuleDescription, 0, len(r.GetRules()))
	for _, d := range r.GetRules() {
		out = append(out, DescriptionFromProto(d))
	}
	return out, nil
}

// Evaluate implements Rule. Findings with an unknown flag, a severity out of range or a
// score that is not a finite number are refused (Finding.Validate), the whole evaluation
// with them, so a faulty plugin cannot smuggle in flags the host does not know.
func (c *Client) Evaluate(ctx context.Context, req EvaluateRequest) ([]Finding, error) {
	ev, err := c.EvaluateScores(ctx, req)
	return ev.Findings, err
}

// EvaluateScores implements ScoringRule: the findings, and the scores of the plugin's
// models when it reports them (none when it does not).
func (c *Client) EvaluateScores(ctx context.Context, req EvaluateRequest) (Evaluation, error) {
	var r *limitv1.EvaluateResponse
	var err error
	err = fastpath.ErrBroken
	if c.fast != nil {
		r = new(limitv1.EvaluateResponse)
		call := c.fast.Call
		if c.inline {
			call = c.fast.CallLong // an evaluation may take long (a long text)
		}
		err = call(ctx, fastEvaluate, RequestToProto(req), r)
	}
	if errors.Is(err, fastpath.ErrBroken) {
		r, err = c.rpc.Evaluate(ctx, RequestToProto(req))
	}
	if status.Code(err) == codes.OutOfRange {
		return Evaluation{}, fmt.Errorf("governance evaluate: %w", beyondLimits{err})
	}
	if err != nil {
		return Evaluation{}, fmt.Errorf("governance evaluate: %w", base.PlainStatus(err))
	}
	ev := Evaluation{Findings: make([]Finding, 0, len(r.GetFindings())), Scores: r.GetScores()}
	for _, m := range r.GetFindings() {
		ev.Findings = append(ev.Findings, FindingFromProto(m))
	}
	if err := ev.Validate(); err != nil {
		return Evaluation{}, fmt.Errorf("governance evaluate: %w", err)
	}
	return ev, nil
}

var _ ScoringRule = (*Client)(nil)

// beyondLimits is a rule's OutOfRange status as the host gets it: it says the rule's own
// words and is both ErrBeyondLimits and the status.
type beyondLimits struct{ st error }

func (e beyondLimits) Error() string   { return status.Convert(e.st).Message() }
func (e beyondLimits) Unwrap() []error { return []error{ErrBeyondLimits, e.st} }
