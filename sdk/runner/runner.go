// Package runner is the SDK for runner plugins. The host starts one runner process per
// (session, runner), opens the session once, executes in it, then closes it and stops the
// process: nothing a runner keeps in memory is ever shared between sessions.
//
// A plugin implements Runner and calls Serve from main:
//
//	func main() { runner.Serve(&myRunner{}) }
//
// What the host expects of Execute (the conformance suite, sdktest.RunRunner or `limitctl
// plugin check --kind runner`, checks each):
//
//   - Output goes through emit as it comes; the host streams it to the client.
//   - The runner enforces the timeout itself: ExecuteRequest.Timeout, else the session's
//     Limits.Timeout, else its own default, ending the execution with StatusTimeout. The
//     context Execute gets does not carry that timeout: it ends when the client goes away
//     (end then as cancelled), or when the host gives up, a few seconds after the timeout.
//   - Cancel finds the running execution by its ExecutionID, which then ends with
//     StatusCancelled; Cancel of an id not running answers false, without error.
//   - Code that fails is a result (StatusError and Error saying why), not an error return.
//     An error return, a panic (Serve recovers it and logs its stack) or an execution still
//     running when the host gives up fails the execution with state_reset, and the host
//     stops the process: the session's next execution gets a fresh one.
//
// A capability "input:TYPE" in Info.Capabilities (such as "input:code/python") tells
// governance rules what the runner's input is; without one it is "text/plain".
//
// See examples/runner-plugin for a complete runner with its tests.
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
	// Timeout bounds one execution's wall-clock time.
	Timeout time.Duration `json:"timeout,omitempty"`
	// MemoryBytes bounds the memory of the session's processes.
	MemoryBytes uint64 `json:"memory_bytes,omitempty"`
	// CPUMillis is a CPU bandwidth limit in thousandths of a core (1000 = one core,
	// 500 = half of one), not CPU time.
	CPUMillis uint64 `json:"cpu_millis,omitempty"`
	// MaxProcesses bounds the number of processes the executed code may run at once.
	MaxProcesses uint32 `json:"max_processes,omitempty"`
	// MaxOutputBytes bounds one execution's output; beyond it output is cut and the
	// result is Truncated.
	MaxOutputBytes uint64 `json:"max_output_bytes,omitempty"`
	// MaxFileBytes bounds the size of each file the executed code writes.
	MaxFileBytes uint64 `json:"max_file_bytes,omitempty"`
	// MaxDiskBytes bounds the session's files in all (its work dir), not each file.
	MaxDiskBytes uint64 `json:"max_disk_bytes,omitempty"`
	// MaxTimeout, in a runner's SessionLimits only, is the longest one execution may run
	// on the runner whatever it asks for (the runner ends it then); 0: no cap of its own.
	// The host sends an execution no longer timeout and records in its trace the one it
	// sent, so the trace says what bound the execution.
	MaxTimeout time.Duration `json:"max_timeout,omitempty"`
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
	// Spent is what the session has already spent with this runner in its earlier
	// processes, as the runner itself reported it in its results' Usage.Extra under keys
	// that start with "session_" (the host keeps the largest figure of each key). A runner
	// that keeps per-session budgets starts from these, so that replacing its process (a
	// host restart, a crash, a retired process) does not reset the budget. Empty for the
	// session's first process.
	Spent map[string]float64
}

// SpentPrefix starts the keys of Usage.Extra that the host keeps for a session and hands
// back in Session.Spent when it opens the session in a new process.
const SpentPrefix = "session_"

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

// The uids the Python runner's sandboxes run code as: [SandboxUIDBase,
// SandboxUIDBase+SandboxUIDCount). They are machine-wide (every host on a machine shares
// them), so a host refuses API requests from them from its start, whether or not it has
// started such a runner itself: code in another host's session allowed the network must
// not drive this one either.
const (
	SandboxUIDBase  = 200000
	SandboxUIDCount = 100000
)

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
	// Text is the token's text as it is shown.
	Text string
	// ID is the token's id in the model's vocabulary (informational).
	ID int64
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

// Usage reports what an execution consumed. Extra carries runner-specific figures such
// as tokens per second; those under keys that start with SpentPrefix are the session's
// running totals, which the host keeps and gives back in Session.Spent when it opens the
// session in a new process.
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
	// Status says how the execution ended; it is required (a result without one reaches
	// the user as an error naming the runner's bug).
	Status Status
	// ExitCode is the executed program's exit status, when it has one (0 otherwise).
	ExitCode int
	// Output is the structured answer (a model's text, a value), if any.
	Output string
	// Error says why an execution that did not end with StatusOK failed, for the user.
	Error string
	Usage Usage
	// Duration is how long the execution ran, as the runner measured it. Required: the
	// host records it in the trace, and the conformance suite fails a zero Duration
	// (the protocol carries microseconds).
	Duration time.Duration
	// StateReset tells that the session's state was lost during the execution (the
	// runner's worker was restarted): what earlier executions defined is gone.
	StateReset bool
	// FinishReason is a short machine-readable word for why the execution ended, free
	// for the runner to choose; the built-in runners use "completed", "exit", "timeout",
	// "cancelled", "memory_limit", "file_size_limit" (Python) and "stop", "length" (LLM).
	FinishReason string
	// Truncated tells that output beyond the session's MaxOutputBytes was cut.
	Truncated bool
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
	// CloseSession releases the session's resources. The host gives it
	// CloseSessionTimeout, then kills the process (and every process it started).
	CloseSession(ctx context.Context) error
}

// CloseSessionTimeout is how long the host waits for CloseSession when a session ends
// before it kills the runner's process group; the conformance suite fails a runner
// whose CloseSession takes longer.
const CloseSessionTimeout = time.Second

// SessionLimiter is implemented by runners that tell the host, once a session is open,
// the limits they apply to its executions: their configured defaults with the session's
// Limits over them. The host then gives an execution that names no timeout, in a session
// that names none, the runner's own timeout instead of the host's default (60 s); a zero
// Timeout means the runner has no default of its own. A runner that ends executions at a
// cap of its own says so in MaxTimeout. Optional: runners without it get the host's
// default, sent in every ExecuteRequest.
type SessionLimiter interface {
	SessionLimits() Limits
}

// LimitsReporter is implemented by runners that tell the host the limits a configuration
// gives a session that sets none of its own: the configured values, or the runner's own
// defaults where the configuration sets none. A zero field is one the runner does not
// bound (it applies no such limit, or is configured with none); a zero Timeout, one for
// which the host's default execution timeout applies. The host asks once, at its start,
// after Configure has accepted the configuration (ValidateOnly: nothing need be applied),
// and lets a user's token give a session at most these: a user cannot lift the limits the
// operator configured. Optional: a user's session that may run a runner without it sets
// no limits, since the host cannot tell a lower limit from a higher one.
type LimitsReporter interface {
	ConfiguredLimits(req base.ConfigureRequest) (Limits, error)
}
