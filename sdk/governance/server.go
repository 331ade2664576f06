package governance

import (
	"context"
	"errors"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	limitv1 "github.com/limitgraph/limit/proto/limit/v1"
	"github.com/limitgraph/limit/sdk/base"
)

// server adapts a Rule to the gRPC service.
type server struct {
	limitv1.UnimplementedGovernanceServer
	impl Rule
	fast *fastServer // nil: no fast path offered
}

// OpenFastPath offers the fast path; see fastpath.go.
func (s *server) OpenFastPath(_ context.Context, req *limitv1.OpenFastPathRequest) (resp *limitv1.OpenFastPathResponse, err error) {
	defer base.Recover(&err)
	if s.fast == nil {
		return nil, status.Error(codes.FailedPrecondition, "this plugin offers no fast path")
	}
	return s.fast.open(req)
}

func (s *server) Describe(ctx context.Context, _ *limitv1.DescribeRequest) (resp *limitv1.DescribeResponse, err error) {
	defer base.Recover(&err)
	ds, err := s.impl.Describe(ctx)
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	resp = &limitv1.DescribeResponse{}
	for _, d := range ds {
		resp.Rules = append(resp.Rules, DescriptionToProto(d))
	}
	return resp, nil
}

func (s *server) Evaluate(ctx context.Context, req *limitv1.EvaluateRequest) (resp *limitv1.EvaluateResponse, err error) {
	defer base.Recover(&err)
	if req.GetStage() != limitv1.Stage_STAGE_PRE && req.GetStage() != limitv1.Stage_STAGE_POST {
		return nil, status.Error(codes.InvalidArgument, "stage must be pre or post")
	}
	var ev Evaluation
	if sr, ok := s.impl.(ScoringRule); ok {
		ev, err = sr.EvaluateScores(ctx, RequestFromProto(req))
	} else {
		ev.Findings, err = s.impl.Evaluate(ctx, RequestFromProto(req))
	}
	if err != nil {
		return nil, evaluateStatus(err)
	}
	if err := ev.Validate(); err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	resp = &limitv1.EvaluateResponse{Scores: ev.Scores}
	for _, f := range ev.Findings {
		resp.Findings = append(resp.Findings, FindingToProto(f))
	}
	return resp, nil
}

// evaluateStatus is the status of a rule's error: OutOfRange for content beyond the
// rule's limits (see ErrBeyondLimits), Canceled or DeadlineExceeded for a call whose
// context ended, Internal for any other failure.
func evaluateStatus(err error) error {
	if errors.Is(err, ErrBeyondLimits) {
		return status.Error(codes.OutOfRange, err.Error())
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		// The call ended (the host's deadline, or it gave up): said as gRPC says it.
		return status.FromContextError(err).Err()
	}
	return status.Error(codes.Internal, err.Error())
}
