// Package execution runs one execution end to end: governance evaluates the input, the
// session's own runner process executes it, governance evaluates the output, and the
// whole of it becomes a trace with its provenance entries and flags.
package execution

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/hashicorp/go-hclog"

	"github.com/limitgraph/limit/host/governance"
	"github.com/limitgraph/limit/host/session"
	"github.com/limitgraph/limit/host/trace"
	sdkgov "github.com/limitgraph/limit/sdk/governance"
	"github.com/limitgraph/limit/sdk/runner"
	"github.com/limitgraph/limit/sdk/storage"
)

// Defaults of an execution.
const (
	DefaultTimeout = session.DefaultTimeoutMS * time.Millisecond
	MaxTimeout     = session.MaxTimeoutMS * time.Millisecond
	// MaxKeptOutput bounds each of the stdout, stderr and output kept in the answer, in the
	// rules' post check and in the trace's digests; the runner's max_output_bytes bounds
	// what it produces, this bounds what the host holds of a runner that does not keep to
	// it. What is cut sets the result's Truncated.
	MaxKeptOutput = 4 << 20
	// MaxKeptError bounds the error text of an execution kept in the answer and the
	// trace, where it is recorded in full (stdout, stderr and output by their digests).
	MaxKeptError = 64 << 10
	// MaxInputBytes bounds an execution's input.
	MaxInputBytes = 8 << 20
	// MaxParamValues bounds the JSON values in an execution's params (every object, array,
	// string, number, boolean and null counts one): each costs the host and the runner
	// process a few hundred bytes on the way (the trace, the runner's protocol), where it
	// cost the client two. Long texts are one value each.
	MaxParamValues = 100_000
	// MaxParamDepth bounds how deeply params nest.
	MaxParamDepth = 64
)

// Agent is the provenance agent of the host's own entries.
const Agent = "limitd"

// Request is one execution.
type Request struct {
	Runner    string         `json:"runner" api:"required"`
	Input     string         `json:"input"`
	TimeoutMS uint64         `json:"timeout_ms,omitempty"`
	Params    map[string]any `json:"params,omitempty"`
	// RequestedBy is the principal that asked for the execution ("operator",
	// "user:NAME"), recorded in its trace's data as requested_by; set by the API, never
	// read from the request's body.
	RequestedBy string `json:"-"`
}

// Result is an execution's answer.
type Result struct {
	TraceID      string            `json:"trace_id"`
	Status       string            `json:"status"`
	Stdout       string            `json:"stdout"`
	Stderr       string            `json:"stderr"`
	Output       string            `json:"output"`
	ExitCode     int               `json:"exit_code"`
	Error        string            `json:"error,omitempty"`
	Usage        runner.Usage      `json:"usage"`
	DurationMS   int64             `json:"duration_ms"`
	DurationUS   int64             `json:"duration_us"`
	Flags        []governance.Flag `json:"flags"`
	StateReset   bool              `json:"state_reset,omitempty"`
	Truncated    bool              `json:"truncated,omitempty"`
	FinishReason string            `json:"finish_reason,omitempty"`
	// Timings are where the host's time went, phase by phase (see Timing); the API sends
	// them as a Server-Timing header.
	Timings []Timing `json:"-"`
}

// Timing is the duration of one phase of an execution: "session" (finding the session, a
// slot under max_concurrency and its runner process), "pre" and "post" (governance on the
// input and the output), "run" (the runner process) and "record" (storing the trace, durably).
type Timing struct {
	Name string
	Dur  time.Duration
}

// Event is one piece of output while an execution runs.
type Event struct {
	// Kind is "stdout", "stderr" or "token"; or EventStarted, sent once, before any output.
	Kind string `json:"-"`
	Data string `json:"data"`
}

// EventStarted is the Kind of the event that says the execution passed its checks and its
// runner was asked to run it.
const EventStarted = "started"

// BlockedError means the session's policy blocked the execution before it ran; the
// trace is stored, flagged.
type BlockedError struct {
	TraceID string
	Policy  string
	// Flags are the flags that blocked the execution under Policy.
	Flags []governance.Flag
	// Raised are all the flags the rules raised on the input, Flags among them: the trace
	// and the session's governance counts keep them all.
	Raised []governance.Flag
}

func (e *BlockedError) Error() string {
	names := make([]string, 0, len(e.Flags))
	for _, f := range e.Flags {
		names = append(names, fmt.Sprintf("%s (severity %d, rule %s)", f.Flag, f.Severity, f.RuleID))
	}
	return fmt.Sprintf("policy %q blocks this execution: %s", e.Policy, strings.Join(names, ", "))
}

// FlagNames names the flags that blocked the execution, each once, in the order raised
// (several rules may raise the same flag).
func (e *BlockedError) FlagNames() []string {
	names := make([]string, 0, len(e.Flags))
	for _, f := range e.Flags {
		if !slices.Contains(names, f.Flag) {
			names = append(names, f.Flag)
		}
	}
	return names
}

// ErrGovernanceUnavailable means a rule plugin could not answer and the policy fails closed.
var ErrGovernanceUnavailable = errors.New("governance rule unavailable")

// ErrUncheckable means a rule found the input beyond the limits it checks within (code
// over the codesafety rule's max_bytes, an analysis longer than its timeout, code nested
// deeper than it can walk) and the policy fails closed: unlike ErrGovernanceUnavailable,
// the same input would be refused again.
var ErrUncheckable = errors.New("input beyond what governance can check")

// RefusedError is an execution refused before it ran because a rule could not check its
// input and the session's policy fails closed: it wraps ErrGovernanceUnavailable or
// ErrUncheckable. Its trace is stored, with the flags the other rules raised.
type RefusedError struct {
	Err error
	// Raised are the flags the rules that answered raised on the input: the trace and the
	// session's governance counts keep them, as a blocked execution's.
	Raised []governance.Flag
}

func (e *RefusedError) Error() string { return e.Err.Error() }

func (e *RefusedError) Unwrap() error { return e.Err }

// ErrInvalid marks a bad request.
var ErrInvalid = errors.New("invalid request")

// ErrTooLarge means the execution's trace would exceed what the trace store keeps: it is
// refused before it runs, as code that ran must be recorded.
var ErrTooLarge = errors.New("execution too large to record")

// ErrStopping means the host is shutting down: it starts no execution, and one running
// when its Stopping context ends is stopped and recorded as such.
var ErrStopping = errors.New("limitd is shutting down")

// Engine runs executions.
type Engine struct {
	Sessions *session.Manager
	Traces   *trace.Store
	Rules    *governance.Evaluator
	Stats    *governance.StatsStore
	Logger   hclog.Logger
	// Stopping, when done, refuses new executions with ErrStopping and stops the running
	// ones: each is still recorded, with the shutdown as its outcome, and answered. Nil
	// means never.
	Stopping context.Context
	// Store, when set, keeps the markers of executions whose traces were created before
	// their outcome (see FinishInterrupted); nil leaves such traces unsettled after a crash.
	Store storage.Storage
	// Node names this host in those markers (the session manager's node: the node id kept
	// in data_dir).
	Node string
	// StorageReady, when set, is asked before an execution runs; while it answers an
	// error (the storage backend reports itself down) executions are refused with it:
	// code that ran must be recorded, and one that ran while its record could not be
	// written changed its session with no trace of it.
	StorageReady func() error
	// DiskReady, when set, is asked before an execution runs, after StorageReady; while it
	// answers an error (the data_dir's disk is below host.min_free_disk: a
	// *diskspace.LowError) executions are refused with it. The sessions' disk images are
	// sparse: code writing while the disk is full has its files silently lost, and the
	// record of what it did may not be written either.
	DiskReady func() error

	// JournalDir, when set (data_dir/pending-outcomes, PendingDir), keeps the outcome of
	// an execution whose trace the storage would not take until it does (see
	// ReplayPending); empty, such an execution fails with the storage's error and its
	// outcome is lost.
	JournalDir string

	replayMu sync.Mutex // one pass over the journal at a time
	mu       sync.Mutex
	retrying bool // the journal's background retry runs
	// open holds the ids of this host's executions whose trace may be stored without its
	// outcome yet: added before the early create, removed once the outcome is stored.
	open map[string]time.Time // by id, when it started
}

// Timeout returns the execution's timeout: the request's, else the session's, else the
// runner's own (rl.Timeout: what the runner said it applies when its session opened,
// capped at MaxTimeout; 0 when it did not say), else DefaultTimeout; and no longer than
// the runner's own cap (rl.MaxTimeout), which it would end the execution at anyway.
func Timeout(s *session.Session, req Request, rl runner.Limits) (time.Duration, error) {
	d, err := wantedTimeout(s, req, rl.Timeout)
	if err != nil {
		return 0, err
	}
	if rl.MaxTimeout > 0 && d > rl.MaxTimeout {
		d = rl.MaxTimeout
	}
	return d, nil
}

// wantedTimeout is Timeout before the runner's cap.
func wantedTimeout(s *session.Session, req Request, runnerDefault time.Duration) (time.Duration, error) {
	// Compared in milliseconds, before a time.Duration could overflow into a negative one.
	maxMS := uint64(MaxTimeout.Milliseconds())
	if req.TimeoutMS > maxMS {
		return 0, fmt.Errorf("%w: timeout_ms %d exceeds the limit of %d", ErrInvalid, req.TimeoutMS, maxMS)
	}
	d := time.Duration(req.TimeoutMS) * time.Millisecond
	if d == 0 {
		if s.Limits.TimeoutMS > maxMS {
			return 0, fmt.Errorf("%w: the session's limits.timeout_ms %d exceeds the limit of %d: give timeout_ms", ErrInvalid, s.Limits.TimeoutMS, maxMS)
		}
		d = time.Duration(s.Limits.TimeoutMS) * time.Millisecond
	}
	if d == 0 {
		d = min(runnerDefault, MaxTimeout)
	}
	if d <= 0 {
		d = DefaultTimeout
	}
	return d, nil
}

// evaluateInput runs the rules on what the execution sends the runner: its input, of the
// runner's content type, and the text in its params (an LLM runner's messages or system
// prompt), as text a person wrote, at the same time. A flag raised on the params says so
// in its reason; its location, an offset into their text, is dropped.
func (e *Engine) evaluateInput(ctx context.Context, s *session.Session, req Request, ctype string) ([]governance.Flag, []*governance.RuleError) {
	text := paramsText(req.Params)
	if text == "" {
		return e.Rules.Evaluate(ctx, sdkgov.EvaluateRequest{
			Stage: sdkgov.StagePre, SessionID: s.ID, Owner: s.Owner, Runner: req.Runner, ContentType: ctype, Content: req.Input,
		})
	}
	var pflags []governance.Flag
	var perrs []*governance.RuleError
	done := make(chan struct{})
	go func() {
		defer close(done)
		// No runner named: a rule that reads whatever a runner gets (codesafety, for the
		// python runner) must not take the params' text for the runner's code.
		pflags, perrs = e.Rules.Evaluate(ctx, sdkgov.EvaluateRequest{
			Stage: sdkgov.StagePre, SessionID: s.ID, Owner: s.Owner, ContentType: "text/plain", Content: text,
			Metadata: map[string]string{"part": "params", "runner": req.Runner},
		})
	}()
	flags, errs := e.Rules.Evaluate(ctx, sdkgov.EvaluateRequest{
		Stage: sdkgov.StagePre, SessionID: s.ID, Owner: s.Owner, Runner: req.Runner, ContentType: ctype, Content: req.Input,
	})
	<-done
	for _, f := range pflags {
		f.Reason = "in params: " + f.Reason
		f.Location = nil
		flags = append(flags, f)
	}
	return flags, append(errs, perrs...)
}

// paramsText is the text of the string values in params, keys aside, one per line, in
// the order of sorted keys: what a runner may send a model besides the input.
func paramsText(params map[string]any) string {
	var b strings.Builder
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case string:
			if strings.TrimSpace(v) != "" {
				b.WriteString(v)
				b.WriteByte('\n')
			}
		case []any:
			for _, x := range v {
				walk(x)
			}
		case map[string]any:
			for _, k := range slices.Sorted(maps.Keys(v)) {
				walk(v[k])
			}
		}
	}
	walk(params)
	return b.String()
}

// contentType is what governance rules are told the input is: the runner's "input:TYPE"
// capability, else text/plain.
func contentType(h interface{ Capabilities() []string }) string {
	for _, c := range h.Capabilities() {
		if t, ok := strings.CutPrefix(c, "input:"); ok {
			return t
		}
	}
	return "text/plain"
}

type caps []string

func (c caps) Capabilities() []string { return c }

func digest(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

// Execute runs req in the session. emit, if not nil, receives output as it comes. Its
// outcome is logged in one INFO line (see logOutcome), with the request id of ctx (see
// WithRequestID) as every line of the engine about it.
func (e *Engine) Execute(ctx context.Context, sessionID string, req Request, emit func(Event)) (*Result, error) {
	log := e.logger(ctx)
	start := time.Now()
	res, err := e.execute(ctx, log, sessionID, req, emit)
	logOutcome(log, sessionID, req.Runner, time.Since(start), res, err)
	return res, err
}

// execute is Execute, logging to log (the engine's logger with the request's id).
func (e *Engine) execute(ctx context.Context, log hclog.Logger, sessionID string, req Request, emit func(Event)) (*Result, error) {
	if emit == nil {
		emit = func(Event) {}
	}
	if req.Runner == "" {
		return nil, fmt.Errorf("%w: runner is required", ErrInvalid)
	}
	mark := time.Now()
	var timings []Timing
	phase := func(name string) {
		now := time.Now()
		timings = append(timings, Timing{Name: name, Dur: now.Sub(mark)})
		mark = now
	}
	if len(req.Input) > MaxInputBytes {
		return nil, fmt.Errorf("%w: input is %d bytes, the limit is %d", ErrInvalid, len(req.Input), MaxInputBytes)
	}
	if n, deep := countValues(req.Params, 0); n > MaxParamValues || deep {
		return nil, fmt.Errorf("%w: params hold more than %d JSON values or nest deeper than %d levels; send bulk data as one string (or in the input)", ErrInvalid, MaxParamValues, MaxParamDepth)
	}
	if e.StorageReady != nil {
		if err := e.StorageReady(); err != nil {
			return nil, fmt.Errorf("not run, as it could not be recorded: %w", err)
		}
	}
	if e.DiskReady != nil {
		if err := e.DiskReady(); err != nil {
			return nil, fmt.Errorf("not run: %w", err)
		}
	}
	if e.Stopping != nil {
		if e.Stopping.Err() != nil {
			return nil, fmt.Errorf("%w: it starts no new execution; retry once it is back", ErrStopping)
		}
		// The caller's own end (it went away) stays told apart from the host's.
		var stop context.CancelCauseFunc
		ctx, stop = context.WithCancelCause(ctx)
		defer stop(nil)
		unhook := context.AfterFunc(e.Stopping, func() { stop(ErrStopping) })
		defer unhook()
	}
	s, err := e.Sessions.Active(ctx, sessionID)
	if err != nil {
		return nil, err
	}
	policy, err := governance.Lookup(s.Policy)
	if err != nil {
		return nil, err
	}
	// The request's or the session's timeout, else the host's default, bounds the wait
	// for a slot (the runner's own default is known once its process is open, below).
	timeout, err := Timeout(s, req, runner.Limits{})
	if err != nil {
		return nil, err
	}
	// Waiting for a slot counts against the execution's own deadline.
	wctx, cancel := context.WithTimeout(ctx, timeout)
	release, err := e.Sessions.Acquire(wctx, s)
	cancel()
	if err != nil {
		return nil, stopping(ctx, err)
	}
	defer release()

	h, err := e.Sessions.Runner(ctx, s, req.Runner)
	if err != nil {
		return nil, stopping(ctx, err)
	}
	// Until the execution is over, its process is not stopped for being idle.
	defer h.Done()
	ctype := contentType(caps(h.Process.Info.Capabilities))
	var capped time.Duration // the timeout the request or session asked for, when the runner's cap cut it
	if l, ok := h.Runner.(runner.SessionLimiter); ok {
		rl := l.SessionLimits()
		if timeout, err = Timeout(s, req, rl); err != nil {
			return nil, err
		}
		if wanted, _ := wantedTimeout(s, req, rl.Timeout); wanted > timeout {
			capped = wanted
		}
	}
	phase("session")

	fields := map[string]any{
		"runner": req.Runner, "input": req.Input, "timeout_ms": timeout.Milliseconds(), "params": req.Params,
		"content_type": ctype,
	}
	if capped > 0 {
		// The trace says what bound the execution: the runner's cap, not what was asked.
		fields["requested_timeout_ms"] = capped.Milliseconds()
	}
	if req.RequestedBy != "" {
		fields["requested_by"] = req.RequestedBy
	}
	data, err := json.Marshal(fields)
	if err != nil {
		return nil, fmt.Errorf("%w: params: %v", ErrInvalid, err)
	}
	// The trace must be storable before the code runs: code that ran must be recorded.
	// Its data is kept in canonical JSON, where a control character of the input takes
	// six bytes (\u0001), so an input under MaxInputBytes may still not fit.
	if c, err := trace.Canonicalize(data); err != nil {
		return nil, fmt.Errorf("%w: input or params cannot be recorded: %v", ErrInvalid, err)
	} else if len(c) > trace.MaxDataSize {
		return nil, fmt.Errorf("%w: input and params take %d bytes in the trace (canonical JSON, where a control character takes 6, \\u0001), the limit is %d; not run: send less, binary data base64-encoded",
			ErrTooLarge, len(c), trace.MaxDataSize)
	}
	// Pre-execution governance, before anything is stored: the trace is then created with
	// its verdict in one write.
	pre, ruleErrs := e.evaluateInput(ctx, s, req, ctype)
	first := trace.Update{Flags: pre}
	if policy.Quarantines(pre) {
		first.Status, first.Reason = trace.StatusQuarantined, "auto-quarantine under policy "+policy.Name
	}
	var refuse error
	blocking := policy.Blocking(pre)
	switch {
	case len(ruleErrs) > 0 && !policy.FailOpen:
		first.Entries = append(first.Entries, entry("governance_error", map[string]any{"errors": ruleErrorStrings(ruleErrs)}))
		refuse = fmt.Errorf("%w: %v; policy %q does not run unchecked inputs", ErrGovernanceUnavailable, ruleErrs[0], policy.Name)
		if i := slices.IndexFunc(ruleErrs, func(e *governance.RuleError) bool { return errors.Is(e, sdkgov.ErrBeyondLimits) }); i >= 0 {
			refuse = fmt.Errorf("%w: %v; policy %q does not run unchecked inputs", ErrUncheckable, ruleErrs[i], policy.Name)
		}
	case len(blocking) > 0:
		first.Entries = append(first.Entries, entry("blocked", map[string]any{"policy": policy.Name, "flags": blocking}))
	case len(ruleErrs) > 0:
		first.Entries = append(first.Entries, entry("governance_error", map[string]any{"errors": ruleErrorStrings(ruleErrs), "fail_open": true}))
	}
	phase("pre")
	res := &Result{Flags: append([]governance.Flag{}, pre...)}
	preDelta := governance.Delta{Flags: pre, Quarantined: first.Status != "", ExecutionBlocked: len(blocking) > 0 && refuse == nil}
	if refuse != nil || len(blocking) > 0 {
		rec, _, err := e.Traces.CreateWith(ctx, s.ID, trace.TraceExecution, data, Agent, first)
		if err != nil {
			return nil, fmt.Errorf("create trace: %w", err)
		}
		// What was written is counted even if the client went away meanwhile; a count that
		// fails is logged, not answered: the trace is stored, and the client must not make
		// it again.
		if err := e.Stats.Record(context.WithoutCancel(ctx), s.ID, preDelta); err != nil {
			log.Warn("an execution's governance counts could not be stored; GET /v1/governance/stats misses them", "session", s.ID, "trace", rec.ID, "error", err)
		}
		if refuse != nil {
			return nil, &RefusedError{Err: refuse, Raised: pre}
		}
		return nil, &BlockedError{TraceID: rec.ID, Policy: policy.Name, Flags: blocking, Raised: pre}
	}
	// The trace is written once, after the run, with everything in it, unless the run
	// outlasts RecordStartAfter: then the trace is created while it runs, so a host that
	// dies during a long execution leaves its trace behind, and the outcome is appended.
	started := time.Now()
	first.At = started
	cr := trace.Creation{ID: trace.NewID(), SessionID: s.ID, Kind: trace.TraceExecution, Data: data, Agent: Agent, At: started, Updates: []trace.Update{first}}
	res.TraceID = cr.ID
	early := e.startRecord(ctx, cr)
	defer early.stop()
	defer e.settled(cr.ID) // once the outcome is stored, or will never be
	// Execute in the session's runner process.
	var stdout, stderr, tokens strings.Builder
	keep := func(b *strings.Builder, data []byte) {
		if room := MaxKeptOutput - b.Len(); room > 0 {
			if len(data) > room {
				data = data[:room]
				res.Truncated = true
			}
			b.Write(data)
		} else if len(data) > 0 {
			res.Truncated = true
		}
	}
	// The runner's stream lives on when the caller goes away: the runner is then asked to
	// cancel the execution (watch, below) and its own result, with what it spent, recorded.
	// The host's shutdown and the execution's timeout still end it.
	xbase, xstop := context.WithCancelCause(context.WithoutCancel(ctx))
	defer xstop(nil)
	if e.Stopping != nil {
		defer context.AfterFunc(e.Stopping, func() { xstop(ErrStopping) })()
	}
	xctx, xcancel := context.WithTimeout(xbase, timeout+RunnerGrace)
	defer xcancel()
	watch := e.watchCaller(ctx, log, xctx, xcancel, h, cr.ID, started, timeout)
	emit(Event{Kind: EventStarted})
	// Output still counts once the caller went away, but is no longer sent: a client that
	// stopped reading must not hold up the runner's stream.
	send := func(e Event) {
		if ctx.Err() == nil {
			emit(e)
		}
	}
	out, xerr := h.Execute(xctx, runner.ExecuteRequest{
		ExecutionID: cr.ID, Input: req.Input, Timeout: timeout, Params: req.Params,
	}, func(ev runner.Event) error {
		switch {
		case ev.Output != nil && ev.Output.Stream == runner.Stderr:
			keep(&stderr, ev.Output.Data)
			send(Event{Kind: "stderr", Data: string(ev.Output.Data)})
		case ev.Output != nil:
			keep(&stdout, ev.Output.Data)
			send(Event{Kind: "stdout", Data: string(ev.Output.Data)})
		case ev.Token != nil:
			keep(&tokens, []byte(ev.Token.Text))
			send(Event{Kind: "token", Data: ev.Token.Text})
		}
		return nil
	})
	gone, torn := watch()
	const goneWhy = "cancelled: the client went away during the execution"
	switch {
	case xerr != nil && (errors.Is(context.Cause(ctx), ErrStopping) || errors.Is(context.Cause(xbase), ErrStopping)):
		// The host is shutting down: the runner was told to stop through its context, and
		// its process goes with the host, state and all.
		out = runner.Result{Status: runner.StatusCancelled, ExitCode: -1, StateReset: true,
			Error:    "cancelled: limitd shut down during the execution (it ran past api.shutdown_timeout); the session's runner state is lost, the next execution starts a fresh process",
			Duration: time.Since(started)}
	case xerr != nil && h.SessionClosed():
		// The session was deleted during the execution: its runner process was closed and
		// stopped under it (the runner may not have had time to answer, as the Python
		// runner does, that its session was closed). Not a crash.
		out = runner.Result{Status: runner.StatusCancelled, ExitCode: -1, StateReset: true,
			Error:    "execution cancelled: its session was closed (deleted) during the execution, which stopped the session's runner process and discarded its state",
			Duration: time.Since(started)}
	case xerr == nil && gone && out.Status == runner.StatusCancelled:
		// The caller went away and the runner, asked to, cancelled the execution: its own
		// result, usage and output so far, is recorded, saying why it was cancelled.
		out.Error = goneWhy
	case xerr != nil && torn:
		// The caller went away and the runner did not end the execution it was asked to
		// cancel: its stream was torn down, and its process, state unknown, is stopped.
		h.Retire()
		out = runner.Result{Status: runner.StatusCancelled, ExitCode: -1, StateReset: true,
			Error: fmt.Sprintf("%s; runner %q did not end it within %v of being asked to cancel it, so the session's runner state was lost and a fresh process starts on the next execution",
				goneWhy, req.Runner, CancelGrace),
			Duration: time.Since(started)}
	case xerr != nil && gone && !errors.Is(xctx.Err(), context.DeadlineExceeded) && !h.Process.Exited():
		// The caller went away past the execution's timeout (its stream was torn down at
		// once), or the runner answered the cancel with an error: the runner keeps the
		// session; what ran is still recorded below.
		out = runner.Result{Status: runner.StatusCancelled, ExitCode: -1, Error: goneWhy, Duration: time.Since(started)}
	case xerr != nil:
		// The runner process failed (crashed, panicked, returned an error, or did not end
		// the execution in time): report it as the execution's error. A process still
		// running is stopped, as its state is unknown; the next execution gets a fresh one.
		log.Warn("runner failed", "session", s.ID, "runner", req.Runner, "error", xerr)
		why := fmt.Sprintf("runner %q failed: %v", req.Runner, xerr)
		switch {
		case errors.Is(xctx.Err(), context.DeadlineExceeded):
			why = fmt.Sprintf("runner %q did not end the execution within its %v timeout and %v more", req.Runner, timeout, RunnerGrace)
			h.Retire()
		case h.Process.Exited() || h.Process.Ping() != nil:
			// The process is gone: say so, rather than pass on the gRPC transport's words.
			why = fmt.Sprintf("runner %q process died during the execution (it crashed or was killed; with host.log_level = \"debug\" the host log has its last output)", req.Runner)
			h.Died()
		default:
			h.Retire()
		}
		out = runner.Result{Status: runner.StatusError, ExitCode: -1, StateReset: true,
			Error:    why + "; the session's runner state was lost and a fresh process starts on the next execution",
			Duration: time.Since(started)}
		if errors.Is(xctx.Err(), context.DeadlineExceeded) {
			out.Status = runner.StatusTimeout
		}
	}
	phase("run")
	if h.Replaced {
		// This process replaced one of the session's that had died: its state is gone.
		out.StateReset = true
	}
	res.Status = out.Status.String()
	res.Stdout, res.Stderr, res.Output = stdout.String(), stderr.String(), out.Output
	if res.Output == "" && tokens.Len() > 0 {
		// A model's answer cut short (the client left, the runner died or said nothing of
		// it): what it streamed is its output, recorded and checked by the rules.
		res.Output = tokens.String()
	}
	if len(res.Output) > MaxKeptOutput {
		res.Output, res.Truncated = cutUTF8(res.Output, MaxKeptOutput), true
	}
	// The error text is recorded as it is (the output only by its digest): bounded, so
	// that the record after the run cannot fail on its size.
	res.ExitCode, res.Error, res.Usage = out.ExitCode, clip(out.Error, MaxKeptError), out.Usage
	res.DurationMS = out.Duration.Milliseconds()
	res.DurationUS = out.Duration.Microseconds()
	res.StateReset = res.StateReset || out.StateReset
	res.Truncated = res.Truncated || out.Truncated
	res.FinishReason = out.FinishReason
	// Post-execution governance on what came out, then one write: the executed entry,
	// the flags and the quarantine if any.
	// What ran is recorded, and its output checked, even if the client went away meanwhile.
	rctx := context.WithoutCancel(ctx)
	content, outputBytes := joinOutput(res)
	post, ruleErrs := e.Rules.Evaluate(rctx, sdkgov.EvaluateRequest{
		Stage: sdkgov.StagePost, SessionID: s.ID, Owner: s.Owner, TraceID: cr.ID, Runner: req.Runner, ContentType: "text/output",
		Content: content,
		// Figures of the execution, for rules that keep per-session statistics.
		Metadata: map[string]string{
			"duration_ms":  strconv.FormatInt(res.DurationMS, 10),
			"duration_us":  strconv.FormatInt(res.DurationUS, 10),
			"output_bytes": strconv.Itoa(outputBytes),
			"tokens":       strconv.FormatUint(totalTokens(res.Usage), 10),
			"status":       res.Status,
			"exit_code":    strconv.Itoa(res.ExitCode),
			"runner":       req.Runner,
			"input_bytes":  strconv.Itoa(len(req.Input)),
			"pre_flags":    flagNames(pre),
		},
	})
	executed := map[string]any{
		"runner": req.Runner, "status": res.Status, "exit_code": res.ExitCode, "error": res.Error,
		"duration_us": res.DurationUS, "usage": res.Usage, "state_reset": res.StateReset, "truncated": res.Truncated,
		"stdout_sha256": digest(res.Stdout), "stderr_sha256": digest(res.Stderr), "output_sha256": digest(res.Output),
		"pid": h.Process.PID,
	}
	if res.FinishReason != "" {
		executed["finish_reason"] = res.FinishReason // why a model's answer ended
	}
	// A merged chain is final: the outcome is never appended to one (see Running).
	last := trace.Update{Entries: []trace.Entry{entry(trace.KindExecuted, executed)}, Flags: post, UnlessMerged: true}
	if len(ruleErrs) > 0 {
		last.Entries = append(last.Entries, entry("governance_error", map[string]any{"errors": ruleErrorStrings(ruleErrs)}))
	}
	phase("post")
	q := policy.Quarantines(post) && first.Status != trace.StatusQuarantined
	if q {
		last.Status, last.Reason = trace.StatusQuarantined, "auto-quarantine under policy "+policy.Name
	}
	created, err := early.finish()
	marked := early.begun()
	if err != nil {
		// The early create failed (or did not say it landed): write everything now.
		log.Warn("storing a running execution's trace failed; storing it with its outcome", "session", s.ID, "trace", cr.ID, "error", err)
		created = false
	}
	if !created {
		cr.Updates = append(cr.Updates, last)
		_, _, err = e.Traces.CreateAll(rctx, cr)
		created = errors.Is(err, trace.ErrExists) // the early create had landed after all
	}
	if created {
		upd := last
		upd.Check = e.unlessSettled(rctx, cr.ID)
		_, _, err = e.Traces.Apply(rctx, cr.ID, Agent, upd)
	}
	if errors.Is(err, errSettled) {
		// Another host settled this one's node as gone (SettleNode) while it ran: the
		// chain says "interrupted" and takes no second outcome; the client still gets
		// what ran.
		log.Error("an execution's trace was settled as interrupted by another host while it ran (this node was settled as gone); its outcome is not recorded in it",
			"session", s.ID, "trace", cr.ID, "runner", req.Runner, "status", res.Status, "output_sha256", digest(content))
		err = nil
	}
	if errors.Is(err, trace.ErrFinal) {
		// Merged while it ran, which the API refuses (see Running) but another host
		// unaware of it may have done: a merged chain is final, so the outcome stays out
		// of it, and the client still gets what ran.
		log.Error("an execution's trace was merged while it ran; its outcome is not recorded in it", "session", s.ID, "trace", cr.ID,
			"runner", req.Runner, "status", res.Status, "output_sha256", digest(content))
		err = nil
	}
	delta := governance.Delta{Flags: append(slices.Clone(res.Flags), post...), Quarantined: q || preDelta.Quarantined}
	var jerr error
	if err != nil && !permanent(err) {
		// The code ran: its outcome is kept until the storage takes it, and the client
		// told not to run it again.
		p := pendingOutcome{TraceID: cr.ID, SessionID: s.ID, Kind: cr.Kind, Data: cr.Data, Agent: cr.Agent, At: cr.At,
			First: toPending(first), Last: toPending(last), Delta: delta, Marked: marked}
		if jerr = e.journal(p); jerr == nil {
			log.Warn("an execution ran but its trace could not be stored; its outcome is kept until it is", "session", s.ID, "trace", cr.ID,
				"runner", req.Runner, "status", res.Status, "error", err)
			res.Flags = append(res.Flags, post...) // recorded with the outcome
			return nil, &RecordPendingError{TraceID: cr.ID, Status: res.Status, Err: err, Result: res}
		}
	}
	if err != nil {
		// The code ran and its session may have changed, but nothing says so but this
		// line and the answer, which carries the outcome and says not to run it again.
		log.Error("an execution ran but its trace could not be stored nor its outcome kept: its record is lost", "session", s.ID, "trace", cr.ID,
			"runner", req.Runner, "status", res.Status, "exit_code", res.ExitCode, "input_sha256", digest(req.Input), "output_sha256", digest(content),
			"flags", flagNames(append(slices.Clone(res.Flags), post...)), "error", err, "journal_error", jerr)
		res.Flags = append(res.Flags, post...)
		return nil, &RecordLostError{TraceID: cr.ID, Status: res.Status, Err: err, JournalErr: jerr, Result: res}
	}
	if marked {
		e.unmarkRunning(cr.ID) // the outcome is stored
	}
	res.Flags = append(res.Flags, post...)
	if err := e.Stats.Record(rctx, s.ID, delta); err != nil {
		// The code ran and its trace is stored: the client gets its result (an error
		// would have it run the code again), and the log says what the counts miss.
		log.Warn("an execution's governance counts could not be stored; GET /v1/governance/stats misses them", "session", s.ID, "trace", cr.ID,
			"flags", flagNames(delta.Flags), "error", err)
	}
	phase("record")
	res.Timings = timings
	return res, nil
}

// watchCaller asks the runner to cancel execution id when the caller's ctx ends (the
// client went away) while the execution runs under xctx, and tears the execution's stream
// down (xcancel) if the runner has not ended it CancelGrace later. A caller gone before the
// execution started, or past its timeout (when the runner should have ended it already),
// has the stream torn down at once, as a host shutting down ends xctx by itself. The
// returned function, called once the execution ended, stops the watch and tells whether
// the caller went away during it and whether the stream was torn down for a runner that
// did not end it in time.
func (e *Engine) watchCaller(ctx context.Context, log hclog.Logger, xctx context.Context, xcancel context.CancelFunc, h runner.Runner, id string, started time.Time, timeout time.Duration) func() (gone, torn bool) {
	early := ctx.Err() != nil
	ended := make(chan struct{})   // the execution ended
	watched := make(chan struct{}) // the watch's function returned
	var gone, torn bool            // written by the watch's function, read after watched
	stop := context.AfterFunc(ctx, func() {
		defer close(watched)
		if errors.Is(context.Cause(ctx), ErrStopping) || xctx.Err() != nil {
			return // the host stops it, or it is over
		}
		select {
		case <-ended:
			return
		default:
		}
		gone = true
		if early || time.Since(started) >= timeout {
			xcancel()
			return
		}
		grace := time.NewTimer(CancelGrace)
		defer grace.Stop()
		cctx, cancel := context.WithTimeout(xctx, CancelGrace)
		defer cancel()
		for asked := false; ; {
			// A runner that has not taken the execution in yet does not find it: it is
			// asked again until it does, or the execution ends.
			var again <-chan time.Time
			if !asked {
				found, err := h.Cancel(cctx, id)
				if err != nil {
					log.Warn("asking the runner to cancel an execution whose client went away failed", "trace", id, "error", err)
				}
				if asked = found || err != nil; !asked {
					again = time.After(cancelRetry)
				}
			}
			select {
			case <-again:
				continue
			case <-ended:
			case <-xctx.Done():
			case <-grace.C:
				torn = true
				xcancel()
			}
			return
		}
	})
	return func() (bool, bool) {
		close(ended)
		if stop() {
			return false, false // the caller stayed to the end
		}
		<-watched
		return gone, torn
	}
}

// cancelRetry is how often the runner is asked again to cancel an execution it did not
// find (it had not taken it in yet).
const cancelRetry = 100 * time.Millisecond

// stopping returns ErrStopping in place of err when the host's shutdown ended ctx: the
// execution had not started, and the client may retry once the host is back.
func stopping(ctx context.Context, err error) error {
	if errors.Is(context.Cause(ctx), ErrStopping) {
		return fmt.Errorf("%w: the execution had not started (%v); retry once it is back", ErrStopping, err)
	}
	return err
}

// countValues counts the JSON values in v (a decoded JSON value), stopping once past
// MaxParamValues, and reports whether it nests deeper than MaxParamDepth.
func countValues(v any, depth int) (int, bool) {
	if depth > MaxParamDepth {
		return 0, true
	}
	n := 1
	switch x := v.(type) {
	case map[string]any:
		for _, e := range x {
			m, deep := countValues(e, depth+1)
			if n += m; deep || n > MaxParamValues {
				return n, deep
			}
		}
	case []any:
		for _, e := range x {
			m, deep := countValues(e, depth+1)
			if n += m; deep || n > MaxParamValues {
				return n, deep
			}
		}
	}
	return n, false
}

// RunnerGrace is how long past an execution's timeout the host waits for the runner to
// end it (runners enforce the timeout themselves) before it gives up on the runner process
// and stops it.
var RunnerGrace = 5 * time.Second

// CancelGrace is how long the host waits for a runner to end an execution it asked it to
// cancel, as its client went away, before it tears the execution's stream down and stops
// the runner process, whose state is then unknown.
var CancelGrace = 5 * time.Second

// RecordStartAfter is how long an execution runs before its trace is stored with what is
// known then (input, pre-execution verdict), ahead of the outcome. Shorter ones are stored
// once, complete, when they end.
var RecordStartAfter = 100 * time.Millisecond

// earlyRecord creates an execution's trace if the execution outlasts RecordStartAfter.
type earlyRecord struct {
	mu      sync.Mutex
	timer   *time.Timer
	started bool          // the timer fired and the create began
	done    chan struct{} // closed when the create ended; err is its outcome
	err     error
}

func (e *Engine) startRecord(ctx context.Context, cr trace.Creation) *earlyRecord {
	r := &earlyRecord{done: make(chan struct{})}
	ctx = context.WithoutCancel(ctx)
	r.mu.Lock() // the timer's function reads r.timer
	defer r.mu.Unlock()
	r.timer = time.AfterFunc(RecordStartAfter, func() {
		r.mu.Lock()
		if r.timer == nil { // finish came first
			r.mu.Unlock()
			return
		}
		r.started = true
		r.mu.Unlock()
		e.opened(cr.ID, cr.At)
		if r.err = e.markRunning(ctx, cr); r.err == nil {
			_, _, r.err = e.Traces.CreateAll(ctx, cr)
		}
		close(r.done)
	})
	return r
}

// finish tells whether the trace was created early, waiting for that create to end.
func (r *earlyRecord) finish() (bool, error) {
	r.mu.Lock()
	started := r.started
	if !started && r.timer != nil {
		r.timer.Stop()
		r.timer = nil
	}
	r.mu.Unlock()
	if !started {
		return false, nil
	}
	<-r.done
	return true, r.err
}

// begun tells whether the early create started (and so a running marker may exist).
func (r *earlyRecord) begun() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.started
}

// stop makes sure no create starts after the execution gave up.
func (r *earlyRecord) stop() { _, _ = r.finish() }

// flagNames lists the distinct flag names of flags, comma-separated, in order.
func flagNames(flags []governance.Flag) string {
	var names []string
	for _, f := range flags {
		if !slices.Contains(names, f.Flag) {
			names = append(names, f.Flag)
		}
	}
	return strings.Join(names, ",")
}

func totalTokens(u runner.Usage) uint64 {
	if u.TotalTokens > 0 {
		return u.TotalTokens
	}
	return u.PromptTokens + u.CompletionTokens
}

// joinOutput is the text the rules read after a run: everything the code or model could
// put in the result, the error text included (an exception's message is the code's to
// choose, returned and recorded like its output), that last so the findings' offsets in
// the output stay those of the output alone. outputBytes is the size of the output
// without the error, the figure per-session statistics keep.
func joinOutput(r *Result) (content string, outputBytes int) {
	parts := []string{}
	for _, s := range []string{r.Output, r.Stdout, r.Stderr} {
		if s != "" {
			parts = append(parts, s)
		}
	}
	outputBytes = len(strings.Join(parts, "\n"))
	if r.Error != "" {
		parts = append(parts, r.Error)
	}
	return strings.Join(parts, "\n"), outputBytes
}

func ruleErrorStrings(errs []*governance.RuleError) []string {
	out := make([]string, len(errs))
	for i, e := range errs {
		out[i] = clip(e.Error(), maxRuleError)
	}
	return out
}

// maxRuleError bounds the text of a rule's error recorded in a governance_error entry.
const maxRuleError = 4 << 10

// clip returns s cut to at most max bytes, at a character boundary, saying how long it
// was; s itself when it fits.
func clip(s string, max int) string {
	if len(s) <= max {
		return s
	}
	note := fmt.Sprintf(" … (cut: %d bytes in all)", len(s))
	cut := max - len(note)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return strings.ToValidUTF8(s[:cut], "\uFFFD") + note
}

// cutUTF8 returns s's first max bytes at most, cut before a character rather than within
// one.
func cutUTF8(s string, max int) string {
	if len(s) <= max {
		return s
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut]
}

// entry is a host provenance entry; data that cannot be encoded (it never happens with
// the maps built here) is recorded as an error string rather than dropped.
func entry(kind string, data map[string]any) trace.Entry {
	raw, err := json.Marshal(data)
	if err != nil {
		raw, _ = json.Marshal(map[string]string{"encode_error": err.Error()})
	}
	return trace.Entry{Kind: kind, Agent: Agent, Data: raw}
}
