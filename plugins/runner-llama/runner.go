package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hybridgroup/yzma/pkg/llama"

	"github.com/limitgraph/limit/host/version"
	"github.com/limitgraph/limit/sdk/base"
	"github.com/limitgraph/limit/sdk/runner"
)

// Causes of an execution's end other than its natural one.
var (
	errCancelled = errors.New("execution cancelled")
	errTimeout   = errors.New("execution timed out")
)

// llamaRunner serves one session with one llama.cpp model.
type llamaRunner struct {
	log    hclog.Logger
	exe    string
	getenv func(string) string

	mu      sync.Mutex
	set     settings
	model   *model
	lctx    *llamaContext
	session *runner.Session
	running map[string]context.CancelCauseFunc

	// busy holds one token: executions in a session run one after another, as they
	// share the one context.
	busy chan struct{}
}

func newRunner(log hclog.Logger) *llamaRunner {
	exe, _ := os.Executable()
	return &llamaRunner{
		log: log, exe: exe, getenv: os.Getenv,
		running: map[string]context.CancelCauseFunc{},
		busy:    make(chan struct{}, 1),
	}
}

// PluginInfo implements base.Plugin.
func (r *llamaRunner) PluginInfo() base.Info {
	return base.Info{
		Name: "llama", Kind: base.KindRunner, Version: version.Version,
		Capabilities: []string{"tokens", "chat", "cancel"},
		Description:  "Local GGUF models through llama.cpp (CPU), one process per session.",
	}
}

// ConfigSchema implements base.Plugin.
func (r *llamaRunner) ConfigSchema() base.Schema { return configSchema() }

// Configure implements base.Plugin: it checks the config, and unless ValidateOnly loads
// llama.cpp and the model.
func (r *llamaRunner) Configure(_ context.Context, req base.ConfigureRequest) base.Diagnostics {
	set, info, ds := parseConfig(req, r.exe, r.getenv)
	if ds.HasErrors() || req.ValidateOnly {
		return ds
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.model != nil && set == r.set {
		return ds
	}
	if r.session != nil {
		return append(ds, base.Errorf(nil, "the configuration cannot change while a session is open"))
	}
	if err := loadLibrary(set.libraryDir, r.log); err != nil {
		return append(ds, base.Diagnostic{
			Severity: base.SeverityError, Summary: err.Error(), Path: []string{"library_dir"},
			Detail: "The libraries must be those of the npm package @node-llama-cpp/linux-x64@3.21.1 (`make llama-deps`).",
		})
	}
	md, err := loadModel(set.model, info)
	if err != nil {
		return append(ds, base.Diagnostic{Severity: base.SeverityError, Summary: err.Error(), Path: []string{"model"}})
	}
	r.model.free()
	r.model, r.set = md, set
	r.log.Info("model loaded", "model", info.String(), "library_dir", set.libraryDir, "threads", set.threads)
	for _, d := range ds {
		r.log.Warn(d.Error())
	}
	return ds
}

// OpenSession implements runner.Runner: it creates the session's llama.cpp context.
func (r *llamaRunner) OpenSession(_ context.Context, s runner.Session) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.model == nil {
		return errors.New("runner not configured: no model is loaded")
	}
	if r.session != nil {
		return fmt.Errorf("this process already serves session %q", r.session.ID)
	}
	lc, err := newContext(r.model, r.set)
	if err != nil {
		return err
	}
	r.lctx, r.session = lc, &s
	return nil
}

// Execute implements runner.Runner: it generates a completion of the input, or of
// params.messages formatted by the chat template, streaming each token.
func (r *llamaRunner) Execute(ctx context.Context, req runner.ExecuteRequest, emit func(runner.Event) error) (runner.Result, error) {
	start := time.Now()
	r.mu.Lock()
	md, lc, sess, set := r.model, r.lctx, r.session, r.set
	r.mu.Unlock()
	if lc == nil || sess == nil {
		return runner.Result{}, errors.New("no session is open")
	}
	fail := func(format string, args ...any) (runner.Result, error) {
		return runner.Result{Status: runner.StatusError, ExitCode: 1, Error: fmt.Sprintf(format, args...), Duration: time.Since(start)}, nil
	}
	ep, err := parseParams(req.Params, set.sampling)
	if err != nil {
		return fail("%v", err)
	}
	size := len(req.Input)
	for _, m := range ep.messages {
		size += len(m.Content)
	}
	if md.minTokens(size) >= lc.nCtx {
		return fail("the input is %d bytes, more than the context of %d tokens can hold (no token of this model stands for more than %d bytes): shorten it or raise context_size", size, lc.nCtx, md.maxPiece)
	}
	prompt, err := r.prompt(md, req.Input, ep)
	if err != nil {
		return fail("%v", err)
	}
	if len(prompt) == 0 {
		return fail("the prompt is empty: give input or params.messages")
	}
	if len(prompt) >= lc.nCtx {
		return fail("the prompt is %d tokens, which does not fit the context of %d tokens: shorten it or raise context_size", len(prompt), lc.nCtx)
	}
	// Generation stops at the end of the context; the finish reason then is "length".
	ep.sampling.MaxTokens = min(ep.sampling.MaxTokens, lc.nCtx-len(prompt))

	// The execution's timeout, else the session's, else the configured one (the host
	// sends the first it finds of these, SessionLimits telling it the last two).
	timeout := req.Timeout
	if timeout <= 0 {
		timeout = sess.Limits.Timeout
	}
	if timeout <= 0 {
		timeout = set.timeout
	}
	ectx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	ectx, stop := context.WithTimeoutCause(ectx, timeout, errTimeout)
	defer stop()

	// One execution at a time: wait for the previous one.
	select {
	case r.busy <- struct{}{}:
	case <-ectx.Done():
		// Nothing was generated: exit code -1, as the host's results of what did not run.
		res, err := r.interrupted(context.Cause(ectx), genResult{}, len(prompt), start, timeout, cpuTime())
		res.ExitCode = -1
		return res, err
	}
	defer func() { <-r.busy }()

	r.mu.Lock()
	if r.lctx != lc {
		r.mu.Unlock()
		return runner.Result{}, errors.New("the session was closed")
	}
	if req.ExecutionID != "" {
		r.running[req.ExecutionID] = cancel
	}
	r.mu.Unlock()
	if req.ExecutionID != "" {
		defer func() {
			r.mu.Lock()
			delete(r.running, req.ExecutionID)
			r.mu.Unlock()
		}()
	}

	cpu0 := cpuTime()
	gen := genRequest{prompt: prompt, sampling: ep.sampling, stop: ep.stop, ignoreEOS: ep.ignoreEOS, maxBytes: int(sess.Limits.MaxOutputBytes)}
	tokens := newTokenSender(emit)
	res, err := lc.generate(ectx, md, gen, tokens.send)
	if serr := tokens.close(); err == nil && serr != nil {
		err = serr
	}
	if err != nil {
		if cause := context.Cause(ectx); cause != nil {
			return r.interrupted(cause, res, len(prompt), start, timeout, cpu0)
		}
		if errors.Is(err, errDecode) {
			return runner.Result{}, fmt.Errorf("generation failed: %w", err)
		}
		// The host's stream is gone: nobody is left to read a result.
		return runner.Result{}, err
	}
	result := runner.Result{
		Status: runner.StatusOK, Output: res.text, FinishReason: res.finish, Truncated: res.truncated,
		Usage: usage(res, len(prompt), cpu0), Duration: time.Since(start),
	}
	return result, nil
}

// tokenSender streams tokens to the host from its own goroutine, so generation does not
// wait for gRPC sends. The first token goes out at once; later ones are sent in bursts
// at most coalesceWindow apart, which lets gRPC write several in one go and the host wake
// once for them: a fast model would otherwise pay two process wake-ups per token.
type tokenSender struct {
	ch      chan runner.Token
	closing chan struct{} // closed by close: send what is left without waiting
	done    chan struct{}
	mu      sync.Mutex
	err     error // the first send error
}

// coalesceWindow bounds how long a generated token may wait before it is sent.
const coalesceWindow = 4 * time.Millisecond

func newTokenSender(emit func(runner.Event) error) *tokenSender {
	s := &tokenSender{ch: make(chan runner.Token, 4096), closing: make(chan struct{}), done: make(chan struct{})}
	go s.run(emit)
	return s
}

func (s *tokenSender) run(emit func(runner.Event) error) {
	defer close(s.done)
	var (
		pending []runner.Token
		failed  bool
		first   = true
	)
	flush := func() {
		for i := range pending {
			if failed {
				break
			}
			if err := emit(runner.Event{Token: &pending[i]}); err != nil {
				s.mu.Lock()
				s.err = err
				s.mu.Unlock()
				failed = true
			}
		}
		pending = pending[:0]
	}
	for {
		tok, ok := <-s.ch
		if !ok {
			return
		}
		pending = append(pending, tok)
		if !first {
			// Tokens generated meanwhile wait in the channel's buffer, which wakes
			// nobody; then they all go out together.
			select {
			case <-time.After(coalesceWindow):
			case <-s.closing:
			}
			for drained := false; !drained && len(pending) < cap(s.ch); {
				select {
				case tok, ok := <-s.ch:
					if !ok {
						flush()
						return
					}
					pending = append(pending, tok)
				default:
					drained = true
				}
			}
		}
		first = false
		flush()
	}
}

// send queues a token; it fails once a send to the host has failed.
func (s *tokenSender) send(text string, id llama.Token) error {
	s.mu.Lock()
	err := s.err
	s.mu.Unlock()
	if err != nil {
		return err
	}
	s.ch <- runner.Token{Text: text, ID: int64(id)}
	return nil
}

// close waits until every queued token is sent and returns the first send error.
func (s *tokenSender) close() error {
	close(s.closing)
	close(s.ch)
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// prompt builds the prompt's tokens: the chat template's rendering of params.messages
// (with the input, if any, as a last user message), or the input itself. Control-token
// text in the input or in a message is tokenized as text, never as control tokens.
func (r *llamaRunner) prompt(md *model, input string, ep execParams) ([]llama.Token, error) {
	if err := nulError("the input", input); err != nil {
		return nil, err
	}
	if len(ep.messages) == 0 {
		if md.info.Tokenizer == "llama" && !md.info.ByteTokens {
			r.log.Warn("the model's vocabulary has no byte tokens: llama.cpp aborts this process on text it cannot spell")
		}
		return md.tokenize(input, true, false), nil
	}
	msgs := ep.messages
	if input != "" {
		msgs = append(msgs[:len(msgs):len(msgs)], chatMessage{Role: "user", Content: input})
	}
	// Only the template's own text may become control tokens: see chatPrompt.
	toks, note, err := md.chatPrompt(msgs, len(ep.messages))
	if note != "" {
		r.log.Debug(note)
	}
	return toks, err
}

// interrupted builds the result of an execution stopped by Cancel, its timeout, or the
// host going away; the output so far is kept, and the usage counts what was spent since
// cpu0.
func (r *llamaRunner) interrupted(cause error, res genResult, promptTokens int, start time.Time, timeout, cpu0 time.Duration) (runner.Result, error) {
	out := runner.Result{
		Output: res.text, Usage: usage(res, promptTokens, cpu0), Duration: time.Since(start),
		FinishReason: "cancelled", ExitCode: 1,
	}
	switch {
	case errors.Is(cause, errTimeout):
		out.Status, out.FinishReason = runner.StatusTimeout, "timeout"
		out.Error = fmt.Sprintf("generation stopped by the timeout of %v after %d tokens", timeout, res.completion)
	case errors.Is(cause, errCancelled):
		out.Status = runner.StatusCancelled
		out.Error = fmt.Sprintf("generation cancelled after %d tokens", res.completion)
	default:
		out.Status = runner.StatusCancelled
		out.Error = fmt.Sprintf("generation stopped after %d tokens: %v", res.completion, cause)
	}
	return out, nil
}

// usage reports token counts and speeds. tokens_per_second counts generated tokens over
// the generation time (after the prompt); time_to_first_token_ms includes the prompt.
func usage(res genResult, promptTokens int, cpu0 time.Duration) runner.Usage {
	u := runner.Usage{
		PromptTokens: uint64(promptTokens), CompletionTokens: uint64(res.completion),
		TotalTokens: uint64(promptTokens + res.completion),
		Extra:       map[string]float64{"seed": float64(res.seed)},
	}
	if d := cpuTime() - cpu0; d > 0 {
		u.CPUTimeMS = uint64(d.Milliseconds())
	}
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		u.PeakMemoryBytes = uint64(ru.Maxrss) * 1024
	}
	if res.genTime > 0 && res.completion > 0 {
		u.Extra["tokens_per_second"] = float64(res.completion) / res.genTime.Seconds()
		u.Extra["generation_ms"] = float64(res.genTime.Microseconds()) / 1000
	}
	if res.promptTime > 0 {
		u.Extra["prompt_ms"] = float64(res.promptTime.Microseconds()) / 1000
		u.Extra["prompt_tokens_per_second"] = float64(promptTokens) / res.promptTime.Seconds()
	}
	if res.firstToken > 0 {
		u.Extra["time_to_first_token_ms"] = float64(res.firstToken.Microseconds()) / 1000
	}
	return u
}

// cpuTime is the process's user plus system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// Cancel implements runner.Runner.
func (r *llamaRunner) Cancel(_ context.Context, id string) (bool, error) {
	r.mu.Lock()
	cancel, ok := r.running[id]
	r.mu.Unlock()
	if ok {
		cancel(errCancelled)
	}
	return ok, nil
}

// Health implements runner.Runner.
func (r *llamaRunner) Health(context.Context) (runner.Health, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	h := runner.Health{Isolation: []runner.IsolationFeature{
		{Name: "process", Enforced: true, Detail: "one plugin process per session; llama.cpp runs inside it, so a crash ends only this session's runner"},
		{Name: "memory_limit", Enforced: false, Detail: "the model's memory is not limited by this runner"},
	}}
	switch {
	case r.model == nil:
		h.Message = "not configured: no model loaded"
	case r.lctx == nil:
		h.Healthy = true
		h.Message = fmt.Sprintf("model %s loaded; no session open", r.model.info)
	default:
		h.Healthy = true
		h.Message = fmt.Sprintf("model %s, context %d tokens, %d threads, llama.cpp from %s",
			r.model.info, r.lctx.nCtx, r.set.threads, r.set.libraryDir)
	}
	return h, nil
}

// CloseSession implements runner.Runner: it stops any execution and frees the context
// and the model.
func (r *llamaRunner) CloseSession(context.Context) error {
	r.mu.Lock()
	for _, cancel := range r.running {
		cancel(errCancelled)
	}
	r.mu.Unlock()
	// Wait for a running execution to see its cancellation before freeing what it uses.
	r.busy <- struct{}{}
	defer func() { <-r.busy }()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lctx.free()
	r.lctx, r.session = nil, nil
	r.model.free()
	r.model = nil
	return nil
}

var (
	_ runner.Runner         = (*llamaRunner)(nil)
	_ runner.LimitsReporter = (*llamaRunner)(nil)
	_ runner.SessionLimiter = (*llamaRunner)(nil)
)

// ConfiguredLimits implements runner.LimitsReporter: the configured timeout, which ends an
// execution of a session that sets none. This runner ends an execution's output at the
// session's max_output_bytes (else at max_tokens and the context's end), and bounds
// neither memory, CPU, processes nor files per session: the rest is zero.
func (r *llamaRunner) ConfiguredLimits(req base.ConfigureRequest) (runner.Limits, error) {
	set, _, ds := parseConfig(req, r.exe, r.getenv)
	if ds.HasErrors() {
		return runner.Limits{}, ds.Err()
	}
	return runner.Limits{Timeout: set.timeout}, nil
}

// SessionLimits implements runner.SessionLimiter: the timeout this runner applies to an
// execution that names none, the session's or else the configured one, so that the host
// uses it rather than its own default.
func (r *llamaRunner) SessionLimits() runner.Limits {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.session == nil || r.set.timeout == 0 {
		return runner.Limits{}
	}
	t := r.session.Limits.Timeout
	if t <= 0 {
		t = r.set.timeout
	}
	return runner.Limits{Timeout: t}
}
