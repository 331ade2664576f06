package runner

import (
	"context"
	"errors"
	"fmt"
	"io"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	limitv1 "github.com/limitgraph/limit/proto/limit/v1"
	"github.com/limitgraph/limit/sdk/base"
)

// Client is the host's side of a runner plugin; it implements Runner. Executions go over
// the plugin's fast path when it offers one (a Unix socket the plugin opens beside the gRPC
// connection, cheaper per call), over gRPC otherwise; events, results and errors are the
// same either way.
type Client struct {
	base.PluginClient
	rpc     limitv1.RunnerClient
	fast    *fastClient
	fastErr error
	// limits are those the plugin said it applies when its session was opened.
	limits Limits
}

// NewClient returns a client over an established plugin connection that makes every call
// over gRPC.
func NewClient(conn *grpc.ClientConn) *Client {
	return &Client{
		PluginClient: base.NewPluginClient(limitv1.NewPluginClient(conn)), rpc: limitv1.NewRunnerClient(conn),
		fastErr: errors.New("gRPC only"),
	}
}

// NewFastClient returns a client over an established plugin connection that asks the
// plugin for its fast path and executes over it; when the plugin offers none, or it
// cannot be set up, the client uses gRPC (FastPathError tells why).
func NewFastClient(ctx context.Context, conn *grpc.ClientConn) *Client {
	c := NewClient(conn)
	fc, err := dialFast(ctx, c.rpc)
	if err != nil {
		c.fastErr = fmt.Errorf("runner fast path not used: %w", err)
		return c
	}
	c.fast, c.fastErr = fc, nil
	return c
}

// Transport names what carries executions: "unix" (the fast path) or "grpc". Once the
// fast path's connection has broken, it is "grpc" again.
func (c *Client) Transport() string {
	if c.fast != nil && c.fast.alive() {
		return "unix"
	}
	return "grpc"
}

// FastPathError tells why the client does not use a fast path (nil when it does).
func (c *Client) FastPathError() error { return c.fastErr }

// Close closes the fast path's connection; the plugin process is stopped by whoever
// started it.
func (c *Client) Close() {
	if c.fast != nil {
		c.fast.close()
	}
}

// OpenSession implements Runner.
func (c *Client) OpenSession(ctx context.Context, s Session) error {
	resp, err := c.rpc.OpenSession(ctx, &limitv1.OpenSessionRequest{
		SessionId: s.ID, Limits: LimitsToProto(s.Limits), Env: s.Env, AllowNetwork: s.AllowNetwork, WorkDir: s.WorkDir,
		Spent: s.Spent,
	})
	if err != nil {
		return fmt.Errorf("runner open session: %w", base.PlainStatus(err))
	}
	c.limits = LimitsFromProto(resp.GetLimits())
	return nil
}

// SessionLimits implements SessionLimiter: the limits the plugin said, when its session
// was opened, it applies to the session's executions (zero fields where it said nothing,
// all zero for a plugin that does not say). Call it after OpenSession has returned.
func (c *Client) SessionLimits() Limits { return c.limits }

// ReportedLimits asks the plugin what limits the configuration in req gives a session
// that sets none (see LimitsReporter). reported is false, without error, for a plugin that
// does not say (one without LimitsReporter, or older than the call).
func (c *Client) ReportedLimits(ctx context.Context, req base.ConfigureRequest) (l Limits, reported bool, err error) {
	resp, err := c.rpc.ConfiguredLimits(ctx, &limitv1.ConfiguredLimitsRequest{ConfigJson: req.Config, DataDir: req.DataDir})
	if status.Code(err) == codes.Unimplemented {
		return Limits{}, false, nil
	}
	if err != nil {
		return Limits{}, false, fmt.Errorf("runner configured limits: %w", base.PlainStatus(err))
	}
	return LimitsFromProto(resp.GetLimits()), true, nil
}

// ErrNoResult means the runner's stream ended without a result event.
var ErrNoResult = errors.New("runner stream ended without a result")

// Execute implements Runner: it forwards each streamed event to emit and returns the
// final result.
func (c *Client) Execute(ctx context.Context, req ExecuteRequest, emit func(Event) error) (Result, error) {
	m, err := RequestToProto(req)
	if err != nil {
		return Result{}, err
	}
	if c.fast != nil && c.fast.alive() {
		return c.fast.execute(ctx, m, emit)
	}
	// Returning before the result (emit failed, or the stream broke) must end the call in
	// the plugin too, as the fast path's cancel frame does: the execution would otherwise
	// run on, holding the session's runner, until ctx ends.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := c.rpc.Execute(ctx, m)
	if err != nil {
		return Result{}, fmt.Errorf("runner execute: %w", base.PlainStatus(err))
	}
	for {
		ev, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return Result{}, ErrNoResult
		}
		if err != nil {
			return Result{}, fmt.Errorf("runner execute: %w", base.PlainStatus(err))
		}
		if res, done, err := deliver(ev, emit); done || err != nil {
			return res, err
		}
	}
}

// deliver passes an event to emit, or returns the result it carries (done).
func deliver(ev *limitv1.ExecuteEvent, emit func(Event) error) (res Result, done bool, err error) {
	switch e := ev.GetEvent().(type) {
	case *limitv1.ExecuteEvent_Output:
		return Result{}, false, emit(Event{Output: &Output{Stream: Stream(e.Output.GetStream()), Data: e.Output.GetData()}})
	case *limitv1.ExecuteEvent_Token:
		return Result{}, false, emit(Event{Token: &Token{Text: e.Token.GetText(), ID: e.Token.GetId()}})
	case *limitv1.ExecuteEvent_Result:
		return ResultFromProto(e.Result), true, nil
	}
	return Result{}, false, nil
}

// Cancel implements Runner.
func (c *Client) Cancel(ctx context.Context, id string) (bool, error) {
	r, err := c.rpc.Cancel(ctx, &limitv1.CancelRequest{ExecutionId: id})
	if err != nil {
		return false, fmt.Errorf("runner cancel: %w", base.PlainStatus(err))
	}
	return r.GetFound(), nil
}

// Health implements Runner.
func (c *Client) Health(ctx context.Context) (Health, error) {
	r, err := c.rpc.Health(ctx, &limitv1.RunnerHealthRequest{})
	if err != nil {
		return Health{}, fmt.Errorf("runner health: %w", base.PlainStatus(err))
	}
	return HealthFromProto(r), nil
}

// CloseSession implements Runner.
func (c *Client) CloseSession(ctx context.Context) error {
	if _, err := c.rpc.CloseSession(ctx, &limitv1.CloseSessionRequest{}); err != nil {
		return fmt.Errorf("runner close session: %w", base.PlainStatus(err))
	}
	return nil
}

var _ Runner = (*Client)(nil)
