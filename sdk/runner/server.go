package runner

import (
	"context"
	"sync"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	limitv1 "github.com/limitgraph/limit/proto/limit/v1"
	"github.com/limitgraph/limit/sdk/base"
)

// server adapts a Runner to the gRPC service.
type server struct {
	limitv1.UnimplementedRunnerServer
	impl Runner
	fast *fastServer // nil: no fast path offered
}

func internal(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	return status.Error(codes.Internal, err.Error())
}

func (s *server) OpenSession(ctx context.Context, req *limitv1.OpenSessionRequest) (resp *limitv1.OpenSessionResponse, err error) {
	defer base.Recover(&err)
	if req.GetSessionId() == "" {
		return nil, status.Error(codes.InvalidArgument, "session_id is empty")
	}
	sess := Session{
		ID: req.GetSessionId(), Limits: LimitsFromProto(req.GetLimits()), Env: req.GetEnv(),
		AllowNetwork: req.GetAllowNetwork(), WorkDir: req.GetWorkDir(), Spent: req.GetSpent(),
	}
	if err := s.impl.OpenSession(ctx, sess); err != nil {
		return nil, internal(err)
	}
	resp = &limitv1.OpenSessionResponse{}
	if l, ok := s.impl.(SessionLimiter); ok {
		resp.Limits = LimitsToProto(l.SessionLimits())
	}
	return resp, nil
}

func (s *server) ConfiguredLimits(_ context.Context, req *limitv1.ConfiguredLimitsRequest) (resp *limitv1.ConfiguredLimitsResponse, err error) {
	defer base.Recover(&err)
	lr, ok := s.impl.(LimitsReporter)
	if !ok {
		return nil, status.Error(codes.Unimplemented, "this runner does not report its configured limits")
	}
	cfg := req.GetConfigJson()
	if len(cfg) == 0 {
		cfg = []byte("{}")
	}
	l, err := lr.ConfiguredLimits(base.ConfigureRequest{Config: cfg, ValidateOnly: true, DataDir: req.GetDataDir()})
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	return &limitv1.ConfiguredLimitsResponse{Limits: LimitsToProto(l)}, nil
}

func (s *server) Execute(req *limitv1.ExecuteRequest, stream limitv1.Runner_ExecuteServer) error {
	return s.execute(stream.Context(), req, stream.Send)
}

// execute runs req, sending its events with send (over gRPC or the fast path): output in
// chunks of at most MaxChunkSize, and the result last.
func (s *server) execute(ctx context.Context, req *limitv1.ExecuteRequest, send func(*limitv1.ExecuteEvent) error) (err error) {
	defer base.Recover(&err)
	// A runner may emit from several goroutines (one per output pipe); events leave one at
	// a time, in order.
	var mu sync.Mutex
	emit := func(ev Event) error {
		mu.Lock()
		defer mu.Unlock()
		switch {
		case ev.Output != nil:
			data := ev.Output.Data
			for len(data) > 0 {
				n := min(len(data), MaxChunkSize)
				m := &limitv1.ExecuteEvent{Event: &limitv1.ExecuteEvent_Output{Output: &limitv1.OutputChunk{
					Stream: limitv1.OutputStream(ev.Output.Stream), Data: data[:n],
				}}}
				if err := send(m); err != nil {
					return err
				}
				data = data[n:]
			}
			return nil
		case ev.Token != nil:
			return send(&limitv1.ExecuteEvent{Event: &limitv1.ExecuteEvent_Token{Token: &limitv1.Token{Text: ev.Token.Text, Id: ev.Token.ID}}})
		}
		return nil
	}
	res, err := s.impl.Execute(ctx, RequestFromProto(req), emit)
	if err != nil {
		return internal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	return send(&limitv1.ExecuteEvent{Event: &limitv1.ExecuteEvent_Result{Result: ResultToProto(res)}})
}

// OpenFastPath offers the fast path; see fastpath.go.
func (s *server) OpenFastPath(_ context.Context, req *limitv1.OpenFastPathRequest) (resp *limitv1.OpenFastPathResponse, err error) {
	defer base.Recover(&err)
	if s.fast == nil {
		return nil, status.Error(codes.FailedPrecondition, "this plugin offers no fast path")
	}
	return s.fast.open(req)
}

func (s *server) Cancel(ctx context.Context, req *limitv1.CancelRequest) (resp *limitv1.CancelResponse, err error) {
	defer base.Recover(&err)
	found, err := s.impl.Cancel(ctx, req.GetExecutionId())
	if err != nil {
		return nil, internal(err)
	}
	return &limitv1.CancelResponse{Found: found}, nil
}

func (s *server) Health(ctx context.Context, _ *limitv1.RunnerHealthRequest) (resp *limitv1.RunnerHealthResponse, err error) {
	defer base.Recover(&err)
	h, err := s.impl.Health(ctx)
	if err != nil {
		return nil, internal(err)
	}
	return HealthToProto(h), nil
}

func (s *server) CloseSession(ctx context.Context, _ *limitv1.CloseSessionRequest) (resp *limitv1.CloseSessionResponse, err error) {
	defer base.Recover(&err)
	if err := s.impl.CloseSession(ctx); err != nil {
		return nil, internal(err)
	}
	return &limitv1.CloseSessionResponse{}, nil
}
