package runner

import (
	"context"
	"errors"
	"fmt"
	"io"

	"google.golang.org/grpc"

	limitv1 "github.com/limitgraph/limit/proto/limit/v1"
	"github.com/limitgraph/limit/sdk/base"
)

// Client is the host's side of a runner plugin; it implements Runner.
type Client struct {
	base.PluginClient
	rpc limitv1.RunnerClient
}

// NewClient returns a client over an established plugin connection.
func NewClient(conn *grpc.ClientConn) *Client {
	return &Client{PluginClient: base.NewPluginClient(limitv1.NewPluginClient(conn)), rpc: limitv1.NewRunnerClient(conn)}
}

// OpenSession implements Runner.
func (c *Client) OpenSession(ctx context.Context, s Session) error {
	_, err := c.rpc.OpenSession(ctx, &limitv1.OpenSessionRequest{
		SessionId: s.ID, Limits: LimitsToProto(s.Limits), Env: s.Env, AllowNetwork: s.AllowNetwork, WorkDir: s.WorkDir,
	})
	if err != nil {
		return fmt.Errorf("runner open session: %w", err)
	}
	return nil
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
	stream, err := c.rpc.Execute(ctx, m)
	if err != nil {
		return Result{}, fmt.Errorf("runner execute: %w", err)
	}
	for {
		ev, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return Result{}, ErrNoResult
		}
		if err != nil {
			return Result{}, fmt.Errorf("runner execute: %w", err)
		}
		switch e := ev.GetEvent().(type) {
		case *limitv1.ExecuteEvent_Output:
			if err := emit(Event{Output: &Output{Stream: Stream(e.Output.GetStream()), Data: e.Output.GetData()}}); err != nil {
				return Result{}, err
			}
		case *limitv1.ExecuteEvent_Token:
			if err := emit(Event{Token: &Token{Text: e.Token.GetText(), ID: e.Token.GetId()}}); err != nil {
				return Result{}, err
			}
		case *limitv1.ExecuteEvent_Result:
			return ResultFromProto(e.Result), nil
		}
	}
}

// Cancel implements Runner.
func (c *Client) Cancel(ctx context.Context, id string) (bool, error) {
	r, err := c.rpc.Cancel(ctx, &limitv1.CancelRequest{ExecutionId: id})
	if err != nil {
		return false, fmt.Errorf("runner cancel: %w", err)
	}
	return r.GetFound(), nil
}

// Health implements Runner.
func (c *Client) Health(ctx context.Context) (Health, error) {
	r, err := c.rpc.Health(ctx, &limitv1.RunnerHealthRequest{})
	if err != nil {
		return Health{}, fmt.Errorf("runner health: %w", err)
	}
	return HealthFromProto(r), nil
}

// CloseSession implements Runner.
func (c *Client) CloseSession(ctx context.Context) error {
	if _, err := c.rpc.CloseSession(ctx, &limitv1.CloseSessionRequest{}); err != nil {
		return fmt.Errorf("runner close session: %w", err)
	}
	return nil
}

var _ Runner = (*Client)(nil)
