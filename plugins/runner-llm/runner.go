package main

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/limitgraph/limit/host/version"
	"github.com/limitgraph/limit/internal/clip"
	"github.com/limitgraph/limit/internal/describe"
	"github.com/limitgraph/limit/sdk/base"
	"github.com/limitgraph/limit/sdk/runner"
)

// Causes of an execution's end other than its natural one.
var (
	errCancelled = errors.New("execution cancelled")
	errTimeout   = errors.New("execution timed out")
	// errOutputLimit stops reading an answer that reached the session's
	// max_output_bytes.
	errOutputLimit = errors.New("the answer reached the session's max_output_bytes")
)

// llmRunner serves one session with a hosted model and its fallbacks.
type llmRunner struct {
	log hclog.Logger

	mu         sync.Mutex
	set        settings
	configured bool
	providers  []provider
	http       *http.Client
	red        redactor
	session    *runner.Session
	usedTokens uint64
	usedCost   float64
	running    map[string]context.CancelCauseFunc
	// turn is held by the running execution of a session with a budget: each one sees
	// what the one before it spent, so executions started together cannot all pass
	// the budget's check before any of them is counted.
	turn chan struct{}

	// sleep waits d unless ctx ends first; a variable so the retry policy's waits are
	// the real ones in the binary and observable in tests.
	sleep func(ctx context.Context, d time.Duration) bool
}

func newRunner(log hclog.Logger) *llmRunner {
	return &llmRunner{log: log, running: map[string]context.CancelCauseFunc{}, turn: make(chan struct{}, 1), sleep: sleepCtx}
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// PluginInfo implements base.Plugin.
func (r *llmRunner) PluginInfo() base.Info {
	return base.Info{
		Name: "llm", Kind: base.KindRunner, Version: version.Version,
		Capabilities: []string{"tokens", "chat", "cancel", "fallback", "budget"},
		Description:  "Hosted models: OpenAI, Anthropic and OpenAI-compatible servers, with retries, fallbacks and per-session budgets.",
	}
}

// ConfigSchema implements base.Plugin.
func (r *llmRunner) ConfigSchema() base.Schema { return configSchema() }

// Configure implements base.Plugin. It checks the configuration and builds the SDK
// clients; it makes no request.
func (r *llmRunner) Configure(_ context.Context, req base.ConfigureRequest) base.Diagnostics {
	set, ds := parseConfig(req)
	red := newRedactor(set.secrets())
	for i := range ds {
		ds[i].Summary, ds[i].Detail = red.clean(ds[i].Summary), red.clean(ds[i].Detail)
	}
	if ds.HasErrors() || req.ValidateOnly {
		return ds
	}
	hc := newHTTPClient()
	provs := make([]provider, len(set.targets))
	for i, t := range set.targets {
		provs[i] = newProvider(t, hc)
	}
	r.mu.Lock()
	if r.http != nil {
		r.http.CloseIdleConnections()
	}
	r.set, r.providers, r.red, r.http, r.configured = set, provs, red, hc, true
	r.mu.Unlock()
	names := make([]string, len(set.targets))
	for i, t := range set.targets {
		names[i] = t.String()
	}
	r.log.Info("configured", "models", strings.Join(names, ", "), "stream", set.stream)
	for _, d := range ds {
		r.log.Warn(d.Error())
	}
	return ds
}

// OpenSession implements runner.Runner.
func (r *llmRunner) OpenSession(_ context.Context, s runner.Session) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.configured {
		return errors.New("runner not configured")
	}
	if r.session != nil {
		return fmt.Errorf("this process already serves session %q", r.session.ID)
	}
	if !s.AllowNetwork {
		// The host decides whether a session may reach the network; this runner needs it.
		r.log.Debug("session opened without allow_network; the model provider is still reached by the runner itself", "session", s.ID)
	}
	r.session = &s
	r.usedTokens, r.usedCost = r.spentBefore(s)
	return nil
}

// spentBefore is what the session spent in its earlier processes, as the host kept it
// from this runner's results (session_tokens, session_cost_usd): the budget is counted
// from there, so that a new process (a restarted host, a crash) does not reset it. A
// figure that is not a finite, non-negative number is ignored, and logged.
func (r *llmRunner) spentBefore(s runner.Session) (tokens uint64, cost float64) {
	ok := func(key string) (float64, bool) {
		v, found := s.Spent[key]
		if !found {
			return 0, false
		}
		if math.IsNaN(v) || math.IsInf(v, 0) || v < 0 || (key == "session_tokens" && v >= math.MaxUint64) {
			r.log.Warn("ignoring what the host says the session spent before: not a finite, non-negative number",
				"session", s.ID, "key", key, "value", v)
			return 0, false
		}
		return v, true
	}
	if v, found := ok("session_tokens"); found {
		tokens = uint64(math.Ceil(v))
	}
	if v, found := ok("session_cost_usd"); found {
		cost = v
	}
	if tokens > 0 || cost > 0 {
		r.log.Debug("session spent before this process", "session", s.ID, "tokens", tokens, "cost_usd", cost)
	}
	return tokens, cost
}

// SessionLimits implements runner.SessionLimiter: the timeout this runner applies to an
// execution that names none (the configured timeout, or the session's when shorter), so
// that the host uses it rather than its own default; and its cap (the configured timeout),
// which an execution asking for longer gets, so its trace says so.
func (r *llmRunner) SessionLimits() runner.Limits {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.session == nil {
		return runner.Limits{}
	}
	t := r.set.timeout
	if s := r.session.Limits.Timeout; s > 0 && s < t {
		t = s
	}
	return runner.Limits{Timeout: t, MaxTimeout: r.set.timeout}
}

// ConfiguredLimits implements runner.LimitsReporter: the configured timeout, which ends
// every execution. This runner bounds nothing else by itself (max_output_bytes is a
// session's only: by default an answer is read whole), so the rest is zero.
func (r *llmRunner) ConfiguredLimits(req base.ConfigureRequest) (runner.Limits, error) {
	set, ds := parseConfig(req)
	if ds.HasErrors() {
		return runner.Limits{}, errors.New(newRedactor(set.secrets()).clean(ds.Err().Error()))
	}
	return runner.Limits{Timeout: set.timeout}, nil
}

// Execute implements runner.Runner: it asks the model, retrying and falling back as
// configured, and streams the answer as token events.
func (r *llmRunner) Execute(ctx context.Context, req runner.ExecuteRequest, emit func(runner.Event) error) (runner.Result, error) {
	start := time.Now()
	r.mu.Lock()
	set, provs, red, sess := r.set, r.providers, r.red, r.session
	r.mu.Unlock()
	if sess == nil {
		return runner.Result{}, errors.New("no session is open")
	}

	timeout := set.timeout
	for _, t := range []time.Duration{req.Timeout, sess.Limits.Timeout} {
		if t > 0 && t < timeout {
			timeout = t
		}
	}
	ectx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	ectx, stop := context.WithTimeoutCause(ectx, timeout, errTimeout)
	defer stop()
	if req.ExecutionID != "" {
		r.mu.Lock()
		r.running[req.ExecutionID] = cancel
		r.mu.Unlock()
		defer func() {
			r.mu.Lock()
			delete(r.running, req.ExecutionID)
			r.mu.Unlock()
		}()
	}
	if set.budgetTokens > 0 || set.budgetCost > 0 {
		select {
		case r.turn <- struct{}{}:
			defer func() { <-r.turn }()
		case <-ectx.Done():
			// Under a budget the session's executions run one at a time. This one never
			// reached the provider: exit code -1, as the host's results of what did not run.
			res, err := r.stopped(context.Cause(ectx), timeout, "", 0, nil, start, red)
			res.ExitCode = -1
			if errors.Is(context.Cause(ectx), errCancelled) {
				res.Error = "execution cancelled before it started (the session's previous execution, under its budget, was still running)"
			}
			return res, err
		}
	}
	r.mu.Lock()
	usedTokens, usedCost := r.usedTokens, r.usedCost
	r.mu.Unlock()
	fail := func(status runner.Status, msg string) (runner.Result, error) {
		return runner.Result{Status: status, ExitCode: 1, Error: red.clean(msg), Duration: time.Since(start),
			Usage: runner.Usage{Extra: r.sessionExtra(usedTokens, usedCost)}}, nil
	}
	if msg := budgetExhausted(set, usedTokens, usedCost); msg != "" {
		return fail(runner.StatusLimitExceeded, msg)
	}
	creq, err := buildRequest(set, req.Input, req.Params)
	if err != nil {
		return fail(runner.StatusError, err.Error())
	}
	if msg := promptOverBudget(set, creq, usedTokens, usedCost); msg != "" {
		return fail(runner.StatusLimitExceeded, msg)
	}

	// The answer goes out through a stream redactor: a key that the server or the model
	// put into it, even split over several tokens, never leaves the plugin. streamed is
	// the answer as received, up to the session's max_output_bytes (0: no limit): the
	// answer is read no further, like the llama runner's generation.
	var (
		streamed   strings.Builder
		firstToken time.Duration
		emitErr    error
		answerRed  = red.stream()
		maxOut     = sess.Limits.MaxOutputBytes
	)
	send := func(s string) error {
		if s == "" || emitErr != nil {
			return emitErr
		}
		if err := emit(runner.Event{Token: &runner.Token{Text: s}}); err != nil {
			emitErr = err
			return err
		}
		return nil
	}
	onText := func(s string) error {
		if firstToken == 0 {
			firstToken = time.Since(start)
		}
		var full error
		if maxOut > 0 && uint64(streamed.Len()+len(s)) > maxOut {
			s, full = clip.Prefix(s, int(maxOut)-streamed.Len()), errOutputLimit
		}
		streamed.WriteString(s)
		if err := send(answerRed.write(s)); err != nil {
			return err
		}
		return full
	}
	// flush sends what the redactor held back, once the answer has ended in any way, so
	// that no text but a key is lost.
	flush := func() error { return send(answerRed.flush()) }

	var failures, noRoom []string
	var last *attemptError
	attempts := 0
	for ti, p := range provs {
		t := set.targets[ti]
		treq, ok := withinBudget(set, t.Model, creq, usedTokens, usedCost)
		if !ok {
			// A fallback priced differently may still have room; none is asked for
			// an answer the budget cannot pay.
			noRoom = append(noRoom, fmt.Sprintf("%s: not asked, %s", t, noRoomForAnswer(set, creq, usedTokens, usedCost)))
			continue
		}
		for n := 1; ; n++ {
			attempts++
			actx, acancel := context.WithTimeout(ectx, set.attemptTimeout)
			ans, err := p.complete(actx, treq, onText)
			aerr := actx.Err()
			acancel()
			if err == nil || errors.Is(err, errOutputLimit) {
				// The answer is charged before its last tokens go out: a host that is
				// gone by then does not make it free. ans.text is all that was
				// received, the part past the limit included: it was generated, and
				// is paid for.
				cut := err != nil
				res, err := r.succeed(set, t, ti, treq, ans, cut, streamed.String(), attempts, start, firstToken, red)
				if ferr := flush(); ferr != nil {
					return runner.Result{}, ferr
				}
				return res, err
			}
			_ = flush() // a failure to send is in emitErr, handled below
			var spent answer
			if streamed.Len() > 0 {
				// What was streamed was generated, and is paid for, answer or not.
				ans.text = streamed.String()
				spent = counted(creq, ans, true)
				usedTokens, usedCost = r.charge(set, t.Model, creq, ans, true)
			}
			if emitErr != nil {
				// The host's stream is gone: nobody is left to read a result.
				return runner.Result{}, emitErr
			}
			if cause := context.Cause(ectx); cause != nil {
				res, err := r.stopped(cause, timeout, streamed.String(), attempts, failures, start, red)
				if streamed.Len() > 0 {
					r.addSpent(&res, set, t.Model, spent, usedTokens, usedCost)
				}
				return res, err
			}
			ae := classify(t, err, set.attemptTimeout, contextWithErr(aerr), red)
			last = ae
			r.log.Warn("attempt failed", "model", t.String(), "attempt", n, "error", red.clean(ae.Error()))
			if streamed.Len() > 0 {
				// Part of the answer went out: another attempt would repeat it. The client
				// has it, so it is the output (the host checks and records that) and what
				// it cost is the usage.
				res, err := fail(statusOf(ae), fmt.Sprintf("%v; the answer broke off after %d bytes were streamed, so it was neither retried nor handed to a fallback",
					ae, streamed.Len()))
				res.Output = red.clean(streamed.String())
				r.addSpent(&res, set, t.Model, spent, usedTokens, usedCost)
				return res, err
			}
			if !ae.retryable() || n > set.retries {
				failures = append(failures, attemptSummary(ae, n))
				break
			}
			wait := ae.retryAfter
			if wait == 0 {
				wait = backoff(n, set.retryBackoff, set.maxBackoff)
			}
			if dl, ok := ectx.Deadline(); ok && time.Until(dl) < wait {
				failures = append(failures, fmt.Sprintf("%s (the provider asked to wait %v, more than the %v left of the timeout)",
					attemptSummary(ae, n), wait.Round(time.Millisecond), time.Until(dl).Round(time.Millisecond)))
				break
			}
			if !r.sleep(ectx, wait) {
				return r.stopped(context.Cause(ectx), timeout, "", attempts, failures, start, red)
			}
		}
	}
	if attempts == 0 {
		// No model was asked: the budget leaves none of them room for an answer.
		return fail(runner.StatusLimitExceeded, noRoomForAnswer(set, creq, usedTokens, usedCost))
	}
	failures = append(failures, noRoom...)
	msg := failures[0]
	if len(failures) > 1 {
		msg = fmt.Sprintf("all %d models failed: %s", len(failures), strings.Join(failures, "; "))
	}
	return fail(statusOf(last), msg)
}

// contextWithErr lets classify see whether the attempt's own deadline passed.
func contextWithErr(err error) context.Context {
	if errors.Is(err, context.DeadlineExceeded) {
		ctx, cancel := context.WithDeadline(context.Background(), time.Time{})
		cancel()
		return ctx
	}
	return context.Background()
}

// attemptSummary is an attempt's error with how many times the model was tried.
func attemptSummary(ae *attemptError, tries int) string {
	if tries == 1 {
		return ae.Error()
	}
	return fmt.Sprintf("%v (after %d attempts)", ae, tries)
}

func statusOf(ae *attemptError) runner.Status {
	if ae != nil && ae.kind == failTimeout {
		return runner.StatusTimeout
	}
	return runner.StatusError
}

// succeed records the usage and builds the result. cut is an answer whose reading
// stopped at the session's max_output_bytes: its output is what was kept, its finish
// reason "length" and it is truncated; a streamed one is charged by estimate, since the
// provider's final count never came.
func (r *llmRunner) succeed(set settings, t target, index int, req chatRequest, ans answer, cut bool, output string, attempts int, start time.Time, firstToken time.Duration, red redactor) (runner.Result, error) {
	elapsed := time.Since(start)
	// The result reports what the session was charged: the provider's figures, or the
	// estimate when it reported none.
	partial := cut && req.stream
	spent := counted(req, ans, partial)
	tokens := uint64(max(spent.input, 0) + max(spent.output, 0))
	cost, priced := costOf(set, t.Model, spent)
	usedTokens, usedCost := r.charge(set, t.Model, req, ans, partial)
	extra := r.sessionExtra(usedTokens, usedCost)
	extra["attempts"] = float64(attempts)
	extra["fallback"] = float64(index)
	if priced {
		extra["cost_usd"] = cost
	}
	if !ans.usageKnown {
		extra["usage_unknown"] = 1
	}
	if !ans.usageKnown || partial {
		extra["usage_estimated"] = 1
	}
	finish := ans.finish
	if cut {
		finish = "length"
		r.log.Debug("answer cut at the session's max_output_bytes", "model", t.String(), "received_bytes", len(ans.text), "kept_bytes", len(output))
	}
	if firstToken > 0 {
		extra["time_to_first_token_ms"] = float64(firstToken.Microseconds()) / 1000
		// An answer that was not streamed came whole: it has no generation rate.
		if gen := elapsed - firstToken; req.stream && ans.output > 1 && gen > 0 {
			extra["tokens_per_second"] = float64(ans.output-1) / gen.Seconds()
		}
	}
	if index > 0 {
		r.log.Warn("answered by a fallback", "model", t.String(), "fallback", index)
	}
	return runner.Result{
		Status: runner.StatusOK, Output: red.clean(output), FinishReason: red.clean(finish), Truncated: cut, Duration: elapsed,
		Usage: runner.Usage{
			PromptTokens: uint64(max(spent.input, 0)), CompletionTokens: uint64(max(spent.output, 0)), TotalTokens: tokens,
			Extra: extra,
		},
	}, nil
}

// charge adds what an answer used to the session's spending and returns the session's
// totals. When the provider reported no usage, or the answer broke off (partial) before
// its final count, the tokens are estimated from the text, at 4 bytes a token: what was
// generated is paid for, reported or not.
func (r *llmRunner) charge(set settings, model string, req chatRequest, ans answer, partial bool) (uint64, float64) {
	ans = counted(req, ans, partial)
	cost, _ := costOf(set, model, ans)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.usedTokens += uint64(max(ans.input, 0) + max(ans.output, 0))
	r.usedCost += cost
	return r.usedTokens, r.usedCost
}

// counted is the answer with the usage charge counts: the provider's figures, or
// estimates when it reported none or the answer broke off.
func counted(req chatRequest, ans answer, partial bool) answer {
	if !ans.usageKnown || partial {
		if ans.input <= 0 {
			ans.input = estimateTokens(req.size())
		}
		ans.output = max(ans.output, estimateTokens(len(ans.text)))
	}
	return ans
}

func estimateTokens(bytes int) int64 { return int64(bytes+3) / 4 }

// answerRoom is how many tokens the session's budget leaves model for the answer to
// req: what is left after what was used and after the prompt, estimated at 4 bytes a
// token (for budget_cost, at the model's input price); -1 when no budget bounds it.
// The provider charges the prompt in full, so a cap on the answer that ignored it
// would let every execution overrun the budget by its prompt.
func answerRoom(set settings, model string, req chatRequest, usedTokens uint64, usedCost float64) int64 {
	const most = 1 << 40 // far above any max_tokens, and exact as a float
	room := int64(-1)
	est := estimateTokens(req.size())
	if set.budgetTokens > 0 {
		room = 0
		if spent := usedTokens + uint64(est); spent < set.budgetTokens {
			room = int64(min(set.budgetTokens-spent, most))
		}
	}
	if set.budgetCost > 0 {
		p := set.prices[model]
		left := set.budgetCost - usedCost - float64(est)*p.Input/1e6
		n := int64(0)
		switch {
		case left <= 0:
		case p.Output <= 0:
			n = -1 // output costs nothing: the cost budget does not bound the answer
		default:
			n = int64(min(math.Floor(left*1e6/p.Output+1e-9), most))
		}
		if n >= 0 && (room < 0 || n < room) {
			room = n
		}
	}
	return room
}

// withinBudget caps a request's max_tokens at answerRoom, so that neither the
// configured max_tokens nor params.max_tokens spends beyond the budget. ok is false
// when the budget leaves model nothing for an answer: it must not be asked.
func withinBudget(set settings, model string, req chatRequest, usedTokens uint64, usedCost float64) (_ chatRequest, ok bool) {
	room := answerRoom(set, model, req, usedTokens, usedCost)
	if room == 0 {
		return req, false
	}
	if room > 0 && int64(req.maxTokens) > room {
		req.maxTokens = int(room)
	}
	return req, true
}

// noRoomForAnswer says why the budget leaves a model nothing to answer with after the
// prompt.
func noRoomForAnswer(set settings, req chatRequest, tokens uint64, cost float64) string {
	est := estimateTokens(req.size())
	if set.budgetTokens > 0 && tokens+uint64(est) >= set.budgetTokens {
		return fmt.Sprintf("the prompt, about %d tokens, leaves nothing of the session's token budget for an answer: %d of %d tokens used (budget_tokens)",
			est, tokens, set.budgetTokens)
	}
	return fmt.Sprintf("the prompt, about %d tokens, leaves too little of the session's cost budget for one token of answer: $%.4f of $%.4f used (budget_cost)",
		est, cost, set.budgetCost)
}

// stopped builds the result of an execution ended by Cancel, its timeout, or the host
// going away; what was streamed is kept as the output.
func (r *llmRunner) stopped(cause error, timeout time.Duration, partial string, attempts int, failures []string, start time.Time, red redactor) (runner.Result, error) {
	res := runner.Result{
		Output: red.clean(partial), ExitCode: 1, Duration: time.Since(start),
		Usage: runner.Usage{Extra: map[string]float64{"attempts": float64(attempts)}},
	}
	var before string
	if len(failures) > 0 {
		before = "; earlier failures: " + strings.Join(failures, "; ")
	}
	switch {
	case errors.Is(cause, errTimeout):
		res.Status, res.FinishReason = runner.StatusTimeout, "timeout"
		res.Error = fmt.Sprintf("no answer within the execution's timeout of %v%s", timeout, before)
	case errors.Is(cause, errCancelled):
		res.Status, res.FinishReason = runner.StatusCancelled, "cancelled"
		res.Error = "execution cancelled" + before
	default:
		res.Status, res.FinishReason = runner.StatusCancelled, "cancelled"
		res.Error = fmt.Sprintf("execution stopped: %v%s", cause, before)
	}
	res.Error = red.clean(res.Error)
	return res, nil
}

// addSpent gives a result that ended before its answer did the usage of what was
// streamed (as charge counted it, estimated: usage_estimated), its cost, and the
// session's totals.
func (r *llmRunner) addSpent(res *runner.Result, set settings, model string, spent answer, usedTokens uint64, usedCost float64) {
	u := &res.Usage
	u.PromptTokens, u.CompletionTokens = uint64(max(spent.input, 0)), uint64(max(spent.output, 0))
	u.TotalTokens = u.PromptTokens + u.CompletionTokens
	if u.Extra == nil {
		u.Extra = map[string]float64{}
	}
	maps.Copy(u.Extra, r.sessionExtra(usedTokens, usedCost))
	u.Extra["usage_estimated"] = 1
	if cost, priced := costOf(set, model, spent); priced {
		u.Extra["cost_usd"] = cost
	}
}

// costOf prices an answer; priced is false when the model has no price.
func costOf(set settings, model string, ans answer) (cost float64, priced bool) {
	p, ok := set.prices[model]
	if !ok {
		return 0, false
	}
	return (float64(max(ans.input, 0))*p.Input + float64(max(ans.output, 0))*p.Output) / 1e6, true
}

// budgetExhausted says why the session may not execute any more, or "".
func budgetExhausted(set settings, tokens uint64, cost float64) string {
	switch {
	case set.budgetTokens > 0 && tokens >= set.budgetTokens:
		return fmt.Sprintf("the session's token budget is spent: %d of %d tokens used (budget_tokens); executions are refused for the rest of this session", tokens, set.budgetTokens)
	case set.budgetCost > 0 && cost >= set.budgetCost:
		return fmt.Sprintf("the session's cost budget is spent: $%.4f of $%.4f used (budget_cost); executions are refused for the rest of this session", cost, set.budgetCost)
	}
	return ""
}

// promptOverBudget says why a request's prompt alone, estimated, is more than the
// session's budget has left, or "": capping max_tokens keeps the answer within the
// budget, not the prompt, which the provider charges in full.
func promptOverBudget(set settings, req chatRequest, tokens uint64, cost float64) string {
	est := estimateTokens(req.size())
	if set.budgetTokens > 0 && tokens+uint64(est) > set.budgetTokens {
		return fmt.Sprintf("the prompt, about %d tokens, is more than is left of the session's token budget: %d of %d tokens used (budget_tokens)",
			est, tokens, set.budgetTokens)
	}
	if set.budgetCost > 0 {
		// The cheapest model that may answer: refused only when none could.
		cheapest := math.Inf(1)
		for _, t := range set.targets {
			cheapest = min(cheapest, set.prices[t.Model].Input)
		}
		if c := float64(est) * cheapest / 1e6; cost+c > set.budgetCost {
			return fmt.Sprintf("the prompt, about %d tokens ($%.4f), is more than is left of the session's cost budget: $%.4f of $%.4f used (budget_cost)",
				est, c, cost, set.budgetCost)
		}
	}
	return ""
}

func (r *llmRunner) sessionExtra(tokens uint64, cost float64) map[string]float64 {
	return map[string]float64{"session_tokens": float64(tokens), "session_cost_usd": cost}
}

// buildRequest turns an execution's input and params into a chat request.
func buildRequest(set settings, input string, params map[string]any) (chatRequest, error) {
	req := chatRequest{system: set.system, maxTokens: set.maxTokens, temperature: set.temperature, stream: set.stream}
	keys := make([]string, 0, len(params))
	for k := range params {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v := params[k]
		switch k {
		case "messages":
			list, ok := v.([]any)
			if !ok || len(list) == 0 {
				return req, errors.New("params.messages must be a non-empty list of {role, content} objects")
			}
			for i, e := range list {
				m, ok := e.(map[string]any)
				role, _ := m["role"].(string)
				content, cok := m["content"].(string)
				if !ok || !cok || (role != "system" && role != "user" && role != "assistant") || len(m) != 2 {
					return req, fmt.Errorf("params.messages[%d] must be {role, content} with role system, user or assistant and content a string", i)
				}
				req.messages = append(req.messages, chatMessage{Role: role, Content: content})
			}
		case "system":
			s, ok := v.(string)
			if !ok {
				return req, fmt.Errorf("params.system must be a string, got %s", describe.JSON(v))
			}
			req.system = s
		case "max_tokens":
			f, ok := v.(float64)
			if !ok || f != math.Trunc(f) || f < 1 || f > maxTokensLimit {
				return req, fmt.Errorf("params.max_tokens must be a whole number from 1 to %s, got %s", describe.Number(maxTokensLimit), describe.JSON(v))
			}
			req.maxTokens = int(f)
		case "temperature":
			f, ok := v.(float64)
			if !ok || f < 0 || f > 2 || math.IsNaN(f) {
				return req, fmt.Errorf("params.temperature must be a number from 0 to 2, got %s", describe.JSON(v))
			}
			// Anthropic's SDK v2 has no temperature (its API deprecated it): rather than
			// drop it for an Anthropic model, the request is refused.
			for i, t := range set.targets {
				if t.Provider == providerAnthropic {
					return req, fmt.Errorf("params.temperature cannot be sent to %s: Anthropic's API deprecated temperature and its SDK v2 has no field for it; leave params.temperature out",
						targetName(t, i))
				}
			}
			req.temperature = &f
		case "stop":
			switch s := v.(type) {
			case string:
				req.stop = []string{s}
			case []any:
				for i, e := range s {
					str, ok := e.(string)
					if !ok {
						return req, fmt.Errorf("params.stop[%d] must be a string, got %s", i, describe.JSON(e))
					}
					req.stop = append(req.stop, str)
				}
			default:
				return req, fmt.Errorf("params.stop must be a string or a list of strings, got %s", describe.JSON(v))
			}
		case "stream":
			b, ok := v.(bool)
			if !ok {
				return req, fmt.Errorf("params.stream must be true or false, got %s", describe.JSON(v))
			}
			req.stream = b
		default:
			return req, fmt.Errorf("unknown parameter params.%s; this runner takes max_tokens, messages, stop, stream, system, temperature", k)
		}
	}
	if input != "" {
		req.messages = append(req.messages, chatMessage{Role: "user", Content: input})
	}
	if !slices.ContainsFunc(req.messages, func(m chatMessage) bool { return m.Role != "system" }) {
		return req, errors.New("nothing to ask: give input or params.messages with a user message")
	}
	if _, _, late := anthropicSplit(req); late >= 0 {
		for i, t := range set.targets {
			if t.Provider == providerAnthropic {
				return req, fmt.Errorf("params.messages[%d] is a system message after the conversation began, which %s cannot take: Anthropic's API has one system text, before the first message; move it before the first user or assistant message, or into params.system",
					late, targetName(t, i))
			}
		}
	}
	return req, nil
}

// targetName names the model at index i of the configured ones for a message: "anthropic
// claude-x", or "anthropic claude-x (fallback 1)".
func targetName(t target, i int) string {
	if i == 0 {
		return t.String()
	}
	return fmt.Sprintf("%s (fallback %d)", t, i)
}

// Cancel implements runner.Runner.
func (r *llmRunner) Cancel(_ context.Context, id string) (bool, error) {
	r.mu.Lock()
	cancel, ok := r.running[id]
	r.mu.Unlock()
	if ok {
		cancel(errCancelled)
	}
	return ok, nil
}

// Health implements runner.Runner. It reports the configuration and the session's
// spending without calling the provider, and never shows a key.
func (r *llmRunner) Health(context.Context) (runner.Health, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	h := runner.Health{Isolation: []runner.IsolationFeature{
		{Name: "process", Enforced: true, Detail: "one plugin process per session; the session's spending is counted in it"},
		{Name: "environment", Enforced: true, Detail: "API keys and URLs come only from the config; nothing is read from OPENAI_* or ANTHROPIC_* variables"},
	}}
	if !r.configured {
		h.Message = "not configured"
		return h, nil
	}
	h.Healthy = true
	var parts []string
	for i, t := range r.set.targets {
		key := "no api key"
		if t.APIKey != "" {
			key = "api key set"
		}
		s := fmt.Sprintf("%s at %s (%s)", t, redactURL(t.BaseURL), key)
		if i == 1 {
			s = "fallback: " + s
		}
		parts = append(parts, s)
	}
	msg := strings.Join(parts, ", ")
	if r.session != nil {
		msg += fmt.Sprintf("; session used %d tokens, $%.4f", r.usedTokens, r.usedCost)
		if r.set.budgetTokens > 0 {
			msg += fmt.Sprintf(" (budget %d tokens)", r.set.budgetTokens)
		}
		if r.set.budgetCost > 0 {
			msg += fmt.Sprintf(" (budget $%.4f)", r.set.budgetCost)
		}
	}
	h.Message = r.red.clean(msg)
	return h, nil
}

// CloseSession implements runner.Runner.
func (r *llmRunner) CloseSession(context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, cancel := range r.running {
		cancel(errCancelled)
	}
	r.session = nil
	if r.http != nil {
		r.http.CloseIdleConnections()
	}
	return nil
}

var (
	_ runner.Runner         = (*llmRunner)(nil)
	_ runner.LimitsReporter = (*llmRunner)(nil)
)
