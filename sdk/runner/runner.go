// Package runner is the SDK for runner plugins. The host starts one runner process per
// (session, runner), opens the session once, executes in it, then closes it and stops the
// process: nothing a runner keeps in memory is ever shared between sessions.
package runner

import (
	"context"
	"time"

	"github.com/limitgraph/limit/sdk/base"
)

// MaxChunkSize is the largest piece of output sent in one event; larger writes are split.
const MaxChunkSize = 64 << 10

// Limits bound what a session's executions may use. Zero means the runner's default.
type Limits struct {
	Timeout        time.Duration `json:"timeout,omitempty"`
	MemoryBytes    uint64        `json:"memory_bytes,omitempty"`
	CPUMillis      uint64        `json:"cpu_millis,omitempty"`
	MaxProcesses   uint32        `json:"max_processes,omitempty"`
	MaxOutputBytes uint64        `json:"max_output_bytes,omitempty"`
	MaxFileBytes   uint64        `json:"max_file_bytes,omitempty"`
}

// Session describes the session a runner process serves.
type Session struct {
	ID     string
	Limits Limits
	// Env is the only environment the session's code sees.
	Env          map[string]string
	AllowNetwork bool
	// WorkDir is the session's private working directory, created by the host.
	WorkDir string
}

// ExecuteRequest is one execution.
type ExecuteRequest struct {
	ExecutionID string
	Input       string
	// Timeout of this execution; zero means the session's.
	Timeout time.Duration
	// Params are runner-specific parameters (JSON-like values).
	Params map[string]any
}

// CapSandboxUIDs prefixes the capability (base.Info.Capabilities) by which a runner says
// which uids its sandboxed code runs as, "sandbox_uids:200000-299999": the host refuses
// API requests from them, so code a session allowed the network cannot drive the host.
const CapSandboxUIDs = "sandbox_uids:"

// Stream names an output stream.
type Stream int

// Output streams.
const (
	Stdout Stream = iota + 1
	Stderr
)

// String returns "stdout" or "stderr".
func (s Stream) String() string {
	if s == Stderr {
		return "stderr"
	}
	return "stdout"
}

// Event is one piece of output while an execution runs: exactly one of Output or Token.
type Event struct {
	Output *Output
	Token  *Token
}

// Output is a chunk of stdout or stderr.
type Output struct {
	Stream Stream
	Data   []byte
}

// Token is one generated token of a model.
type Token struct {
	Text string
	ID   int64
}

// Status of a finished execution.
type Status int

// Execution statuses.
const (
	StatusOK Status = iota + 1
	StatusError
	StatusTimeout
	StatusCancelled
	StatusLimitExceeded
)

// String returns the status as used in the API.
func (s Status) String() string {
	switch s {
	case StatusOK:
		return "ok"
	case StatusError:
		return "error"
	case StatusTimeout:
		return "timeout"
	case StatusCancelled:
		return "cancelled"
	case StatusLimitExceeded:
		return "limit_exceeded"
	}
	return "unknown"
}

// Usage reports what an execution consumed.
type Usage struct {
	PromptTokens     uint64             `json:"prompt_tokens,omitempty"`
	CompletionTokens uint64             `json:"completion_tokens,omitempty"`
	TotalTokens      uint64             `json:"total_tokens,omitempty"`
	PeakMemoryBytes  uint64             `json:"peak_memory_bytes,omitempty"`
	CPUTimeMS        uint64             `json:"cpu_time_ms,omitempty"`
	Extra            map[string]float64 `json:"extra,omitempty"`
}

// Result ends an execution.
type Result struct {
	Status   Status
	ExitCode int
	// Output is the structured answer (a model's text, a value), if any.
	Output       string
	Error        string
	Usage        Usage
	Duration     time.Duration
	StateReset   bool
	FinishReason string
	Truncated    bool
}

// IsolationFeature reports one isolation mechanism and whether it is enforced here.
type IsolationFeature struct {
	Name     string `json:"name"`
	Enforced bool   `json:"enforced"`
	Detail   string `json:"detail,omitempty"`
}

// Health is a runner's state.
type Health struct {
	Healthy   bool               `json:"healthy"`
	Message   string             `json:"message,omitempty"`
	Isolation []IsolationFeature `json:"isolation,omitempty"`
}

// Runner is the interface a runner plugin implements.
type Runner interface {
	base.Plugin
	// OpenSession prepares the process for its one session.
	OpenSession(ctx context.Context, s Session) error
	// Execute runs req, calling emit for each piece of output as it comes (emit is safe to
	// call from several goroutines), and returns the result. An error return means the
	// runner itself failed, not the executed code.
	Execute(ctx context.Context, req ExecuteRequest, emit func(Event) error) (Result, error)
	// Cancel stops a running execution and tells whether it was found.
	Cancel(ctx context.Context, executionID string) (bool, error)
	// Health reports the runner's state and its isolation features.
	Health(ctx context.Context) (Health, error)
	// CloseSession releases the session's resources.
	CloseSession(ctx context.Context) error
}
