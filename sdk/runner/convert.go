package runner

import (
	"fmt"
	"math"
	"time"

	"google.golang.org/protobuf/types/known/structpb"

	limitv1 "github.com/limitgraph/limit/proto/limit/v1"
)

// LimitsToProto converts Limits to its protocol message.
func LimitsToProto(l Limits) *limitv1.Limits {
	return &limitv1.Limits{
		TimeoutMs: uint64(l.Timeout / time.Millisecond), MemoryBytes: l.MemoryBytes, CpuMillis: l.CPUMillis,
		MaxProcesses: l.MaxProcesses, MaxOutputBytes: l.MaxOutputBytes, MaxFileBytes: l.MaxFileBytes,
		MaxDiskBytes: l.MaxDiskBytes, MaxTimeoutMs: uint64(l.MaxTimeout / time.Millisecond),
	}
}

// LimitsFromProto converts a protocol message to Limits.
func LimitsFromProto(m *limitv1.Limits) Limits {
	return Limits{
		Timeout: durationMS(m.GetTimeoutMs()), MemoryBytes: m.GetMemoryBytes(),
		CPUMillis: m.GetCpuMillis(), MaxProcesses: m.GetMaxProcesses(),
		MaxOutputBytes: m.GetMaxOutputBytes(), MaxFileBytes: m.GetMaxFileBytes(),
		MaxDiskBytes: m.GetMaxDiskBytes(), MaxTimeout: durationMS(m.GetMaxTimeoutMs()),
	}
}

// durationMS is ms milliseconds, saturated where a time.Duration would overflow.
func durationMS(ms uint64) time.Duration {
	if ms > uint64(math.MaxInt64/int64(time.Millisecond)) {
		return math.MaxInt64
	}
	return time.Duration(ms) * time.Millisecond
}

// RequestToProto converts an ExecuteRequest to its protocol message.
func RequestToProto(r ExecuteRequest) (*limitv1.ExecuteRequest, error) {
	m := &limitv1.ExecuteRequest{ExecutionId: r.ExecutionID, Input: r.Input, TimeoutMs: uint64(r.Timeout / time.Millisecond)}
	if len(r.Params) > 0 {
		s, err := structpb.NewStruct(r.Params)
		if err != nil {
			return nil, fmt.Errorf("execute params: %w", err)
		}
		m.Params = s
	}
	return m, nil
}

// RequestFromProto converts a protocol message to an ExecuteRequest.
func RequestFromProto(m *limitv1.ExecuteRequest) ExecuteRequest {
	r := ExecuteRequest{ExecutionID: m.GetExecutionId(), Input: m.GetInput(), Timeout: time.Duration(m.GetTimeoutMs()) * time.Millisecond}
	if m.GetParams() != nil {
		r.Params = m.GetParams().AsMap()
	}
	return r
}

// UsageToProto converts Usage to its protocol message.
func UsageToProto(u Usage) *limitv1.Usage {
	return &limitv1.Usage{
		PromptTokens: u.PromptTokens, CompletionTokens: u.CompletionTokens, TotalTokens: u.TotalTokens,
		PeakMemoryBytes: u.PeakMemoryBytes, CpuTimeMs: u.CPUTimeMS, Extra: u.Extra,
	}
}

// UsageFromProto converts a protocol message to Usage.
func UsageFromProto(m *limitv1.Usage) Usage {
	return Usage{
		PromptTokens: m.GetPromptTokens(), CompletionTokens: m.GetCompletionTokens(), TotalTokens: m.GetTotalTokens(),
		PeakMemoryBytes: m.GetPeakMemoryBytes(), CPUTimeMS: m.GetCpuTimeMs(), Extra: m.GetExtra(),
	}
}

// ResultToProto converts a Result to its protocol message.
func ResultToProto(r Result) *limitv1.ExecuteResult {
	return &limitv1.ExecuteResult{
		Status: limitv1.ExecuteStatus(r.Status), ExitCode: int32(r.ExitCode), Output: r.Output, Error: r.Error,
		Usage: UsageToProto(r.Usage), DurationMs: uint64(r.Duration / time.Millisecond), DurationUs: uint64(r.Duration / time.Microsecond),
		StateReset: r.StateReset, FinishReason: r.FinishReason, Truncated: r.Truncated,
	}
}

// ResultFromProto converts a protocol message to a Result. An unspecified or unknown
// status is an error whose Error says so: a runner that forgot to say how it ended did
// not succeed, and the user is told it is the runner's bug.
func ResultFromProto(m *limitv1.ExecuteResult) Result {
	st := Status(m.GetStatus())
	errText := m.GetError()
	if st < StatusOK || st > StatusLimitExceeded {
		why := "runner result has no status (a bug in the runner plugin)"
		if st != 0 {
			why = fmt.Sprintf("runner result has unknown status %d (a bug in the runner plugin)", st)
		}
		if errText != "" {
			why += ": " + errText
		}
		st, errText = StatusError, why
	}
	d := time.Duration(m.GetDurationUs()) * time.Microsecond
	if d == 0 {
		d = time.Duration(m.GetDurationMs()) * time.Millisecond
	}
	return Result{
		Status: st, ExitCode: int(m.GetExitCode()), Output: m.GetOutput(), Error: errText,
		Usage: UsageFromProto(m.GetUsage()), Duration: d,
		StateReset: m.GetStateReset(), FinishReason: m.GetFinishReason(), Truncated: m.GetTruncated(),
	}
}

// HealthToProto converts Health to its protocol message.
func HealthToProto(h Health) *limitv1.RunnerHealthResponse {
	m := &limitv1.RunnerHealthResponse{Healthy: h.Healthy, Message: h.Message}
	for _, f := range h.Isolation {
		m.Isolation = append(m.Isolation, &limitv1.IsolationFeature{Name: f.Name, Enforced: f.Enforced, Detail: f.Detail})
	}
	return m
}

// HealthFromProto converts a protocol message to Health.
func HealthFromProto(m *limitv1.RunnerHealthResponse) Health {
	h := Health{Healthy: m.GetHealthy(), Message: m.GetMessage()}
	for _, f := range m.GetIsolation() {
		h.Isolation = append(h.Isolation, IsolationFeature{Name: f.GetName(), Enforced: f.GetEnforced(), Detail: f.GetDetail()})
	}
	return h
}
