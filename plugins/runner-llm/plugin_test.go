package main

import (
	"context"
	"errors"
	"math"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/limitgraph/limit/host/plugins"
	"github.com/limitgraph/limit/internal/llmtest"
	"github.com/limitgraph/limit/sdk/runner"
)

const (
	openaiKey    = "sk-test-0123456789abcdefOPENAI"
	anthropicKey = "sk-ant-test-0123456789abcdefANTHROPIC"
)

// providerCase is one provider with its test server.
type providerCase struct {
	name   string
	server *llmtest.Server
	config map[string]any
	key    string
}

func providerCases(t *testing.T) []providerCase {
	oa := llmtest.NewOpenAI(t, openaiKey)
	an := llmtest.NewAnthropic(t, anthropicKey)
	co := llmtest.NewOpenAI(t, "")
	return []providerCase{
		{"openai", oa, map[string]any{"provider": "openai", "model": "gpt-test", "base_url": oa.BaseURL(), "api_key": openaiKey}, openaiKey},
		{"anthropic", an, map[string]any{"provider": "anthropic", "model": "claude-test", "base_url": an.BaseURL(), "api_key": anthropicKey}, anthropicKey},
		{"openai-compatible", co, map[string]any{"provider": "openai-compatible", "model": "local-llama", "base_url": co.BaseURL()}, ""},
	}
}

// TestAnswerAndStream asks each provider for a normal (JSON) answer and a streamed (SSE)
// one through the plugin binary: the output, the token events, the usage, the cost from
// the price table and the finish reason come through, and the request on the wire is the
// provider's format with its credentials.
func TestAnswerAndStream(t *testing.T) {
	for _, pc := range providerCases(t) {
		for _, stream := range []bool{false, true} {
			name := pc.name + "/json"
			if stream {
				name = pc.name + "/stream"
			}
			t.Run(name, func(t *testing.T) {
				model := pc.config["model"].(string)
				p := launch(t, cfg(pc.config, "stream", stream, "max_tokens", 77, "system", "be brief",
					"prices", map[string]any{model: map[string]any{"input": 2.0, "output": 8.0}}), nil)
				pc.server.Push(llmtest.Step{Text: "The answer is forty-two.", InputTokens: 12, OutputTokens: 7, FinishReason: "length"})
				before := len(pc.server.Requests())
				res, toks := ask(t, p, "What is the answer?")
				if res.Status != runner.StatusOK || res.Output != "The answer is forty-two." {
					t.Fatalf("result: %+v", res)
				}
				if strings.Join(toks, "") != res.Output || (stream && len(toks) != 4) || (!stream && len(toks) != 1) {
					t.Errorf("token events %q", toks)
				}
				u := res.Usage
				if u.PromptTokens != 12 || u.CompletionTokens != 7 || u.TotalTokens != 19 {
					t.Errorf("usage: %+v", u)
				}
				if want := (12*2.0 + 7*8.0) / 1e6; math.Abs(u.Extra["cost_usd"]-want) > 1e-12 || u.Extra["session_cost_usd"] != u.Extra["cost_usd"] {
					t.Errorf("cost %v, session %v, want %v", u.Extra["cost_usd"], u.Extra["session_cost_usd"], want)
				}
				if res.FinishReason != "length" || u.Extra["attempts"] != 1 || u.Extra["fallback"] != 0 || u.Extra["time_to_first_token_ms"] <= 0 {
					t.Errorf("finish %q extra %v", res.FinishReason, u.Extra)
				}
				reqs := pc.server.Requests()[before:]
				if len(reqs) != 1 {
					t.Fatalf("%d requests", len(reqs))
				}
				rq := reqs[0]
				if rq.Model != model || rq.Stream != stream {
					t.Errorf("request model %q stream %v", rq.Model, rq.Stream)
				}
				body := string(rq.Body)
				if !strings.Contains(body, "What is the answer?") || !strings.Contains(body, "be brief") {
					t.Errorf("request body lacks the input or the system prompt: %s", body)
				}
				switch pc.name {
				case "openai":
					if rq.Header.Get("Authorization") != "Bearer "+pc.key || rq.JSON["max_completion_tokens"] != 77.0 {
						t.Errorf("openai request: auth %q body %s", rq.Header.Get("Authorization"), body)
					}
				case "anthropic":
					// SDK v2 sends the key as a bearer token; the API takes it as x-api-key too.
					cred := rq.Header.Get("X-Api-Key")
					if cred == "" {
						cred = strings.TrimPrefix(rq.Header.Get("Authorization"), "Bearer ")
					}
					if cred != pc.key || rq.Header.Get("Anthropic-Version") == "" || rq.JSON["max_tokens"] != 77.0 {
						t.Errorf("anthropic request: headers %v body %s", rq.Header, body)
					}
				case "openai-compatible":
					if rq.Header.Get("Authorization") != "" || rq.JSON["max_tokens"] != 77.0 {
						t.Errorf("compatible request: auth %q body %s", rq.Header.Get("Authorization"), body)
					}
				}
			})
		}
	}
}

// TestRateLimitThenSuccess answers 429 with Retry-After: 1 first. The plugin must wait
// the second the provider asked for (the configured backoff is only 10ms), then succeed.
func TestRateLimitThenSuccess(t *testing.T) {
	for _, pc := range providerCases(t)[:2] {
		t.Run(pc.name, func(t *testing.T) {
			p := launch(t, cfg(pc.config, "retry_backoff", "10ms", "retries", 2), nil)
			before := len(pc.server.Requests())
			pc.server.Push(
				llmtest.Step{Status: 429, ErrorMessage: "slow down", Header: map[string]string{"Retry-After": "1"}},
				llmtest.Step{Text: "finally"},
			)
			res, _ := ask(t, p, "hi")
			if res.Status != runner.StatusOK || res.Output != "finally" || res.Usage.Extra["attempts"] != 2 {
				t.Fatalf("result: %+v", res)
			}
			reqs := pc.server.Requests()[before:]
			if len(reqs) != 2 {
				t.Fatalf("%d requests, want 2", len(reqs))
			}
			if gap := reqs[1].Time.Sub(reqs[0].Time); gap < 950*time.Millisecond {
				t.Errorf("retried after %v; the provider asked for 1s", gap)
			}
			if !strings.Contains(p.logs.String(), "rate limited (HTTP 429: slow down)") {
				t.Errorf("the failed attempt is not logged:\n%s", p.logs)
			}
		})
	}

	// A wait longer than the time left is not slept through: the model is given up at
	// once, with the reason.
	pc := providerCases(t)[0]
	p := launch(t, cfg(pc.config, "timeout", "2s", "retries", 3), nil)
	pc.server.Push(llmtest.Step{Status: 429, ErrorMessage: "quota", Header: map[string]string{"Retry-After": "60"}})
	res, _ := ask(t, p, "hi")
	expectErr(t, res, runner.StatusError, "openai gpt-test: rate limited (HTTP 429: quota)",
		"the provider asked to wait 1m0s, more than the ", "left of the timeout")
}

// TestServerErrorThenFallback makes the primary answer 500 every time: after its retry
// the fallback (another provider) answers. When the fallback fails too, the error names
// both models and what each did.
func TestServerErrorThenFallback(t *testing.T) {
	primary := llmtest.NewOpenAI(t, openaiKey)
	primary.SetDefault(llmtest.Step{Status: 500, ErrorMessage: "upstream exploded"})
	second := llmtest.NewAnthropic(t, anthropicKey)
	config := map[string]any{
		"provider": "openai", "model": "gpt-test", "base_url": primary.BaseURL(), "api_key": openaiKey,
		"retries": 1, "retry_backoff": "10ms",
		"fallback": []any{map[string]any{"provider": "anthropic", "model": "claude-test", "base_url": second.BaseURL(), "api_key": anthropicKey}},
	}
	p := launch(t, config, nil)
	second.Push(llmtest.Step{Text: "from the fallback", InputTokens: 3, OutputTokens: 3})
	res, toks := ask(t, p, "hi")
	if res.Status != runner.StatusOK || res.Output != "from the fallback" || strings.Join(toks, "") != res.Output {
		t.Fatalf("result: %+v", res)
	}
	if res.Usage.Extra["fallback"] != 1 || res.Usage.Extra["attempts"] != 3 || len(primary.Requests()) != 2 {
		t.Errorf("extra %v, %d requests to the primary; want fallback 1, 3 attempts, 2 requests", res.Usage.Extra, len(primary.Requests()))
	}

	second.SetDefault(llmtest.Step{Status: 529, ErrorMessage: "Overloaded"})
	res, _ = ask(t, p, "hi")
	expectErr(t, res, runner.StatusError,
		"all 2 models failed: openai gpt-test: provider error (HTTP 500: upstream exploded) (after 2 attempts); anthropic claude-test: provider error (HTTP 529: Overloaded) (after 2 attempts)")

	// A request the provider refuses (400) is not retried, but the fallback is tried.
	primary.SetDefault(llmtest.Step{Status: 400, ErrorMessage: "max_tokens is too large"})
	second.SetDefault(llmtest.Step{Text: "ok"})
	n := len(primary.Requests())
	res, _ = ask(t, p, "hi")
	if res.Status != runner.StatusOK || len(primary.Requests()) != n+1 {
		t.Errorf("after a 400: %+v, %d requests to the primary", res, len(primary.Requests())-n)
	}
}

// TestTimeouts checks the attempt timeout (a server that never answers), the execution's
// total timeout, and a stream that stalls after its first tokens (not retried, since
// part of the answer went out).
func TestTimeouts(t *testing.T) {
	srv := llmtest.NewOpenAI(t, openaiKey)
	base := map[string]any{"provider": "openai", "model": "gpt-test", "base_url": srv.BaseURL(), "api_key": openaiKey, "retry_backoff": "10ms"}

	p := launch(t, cfg(base, "attempt_timeout", "200ms", "retries", 1), nil)
	srv.SetDefault(llmtest.Step{Hang: true})
	res, _ := ask(t, p, "hi")
	expectErr(t, res, runner.StatusTimeout, "openai gpt-test: no complete answer within attempt_timeout (200ms) (after 2 attempts)")

	q := launch(t, cfg(base, "attempt_timeout", "10s", "timeout", "300ms"), nil)
	res, _ = ask(t, q, "hi")
	expectErr(t, res, runner.StatusTimeout, "no answer within the execution's timeout of 300ms")
	// The execution's own timeout wins when shorter.
	res, _ = run(t, q, runner.ExecuteRequest{Input: "hi", Timeout: 100 * time.Millisecond})
	expectErr(t, res, runner.StatusTimeout, "timeout of 100ms")

	s := launch(t, cfg(base, "attempt_timeout", "1s", "retries", 2), nil)
	srv.SetDefault(llmtest.Step{Text: "one two three four five six", ChunkDelay: 300 * time.Millisecond})
	n := len(srv.Requests())
	res, toks := ask(t, s, "hi")
	expectErr(t, res, runner.StatusTimeout, "no complete answer within attempt_timeout (1s)", "the answer broke off after", "neither retried nor handed to a fallback")
	if len(toks) == 0 || len(srv.Requests()) != n+1 {
		t.Errorf("%d tokens streamed, %d requests; want some tokens and one request", len(toks), len(srv.Requests())-n)
	}
}

// TestMalformedAnswers checks bodies that are not the provider's format: broken JSON,
// an HTML page, a broken event in a stream, a stream that ends too early.
func TestMalformedAnswers(t *testing.T) {
	oa := llmtest.NewOpenAI(t, openaiKey)
	an := llmtest.NewAnthropic(t, anthropicKey)
	oc := map[string]any{"provider": "openai", "model": "gpt-test", "base_url": oa.BaseURL(), "api_key": openaiKey, "retries": 0}
	ac := map[string]any{"provider": "anthropic", "model": "claude-test", "base_url": an.BaseURL(), "api_key": anthropicKey, "retries": 0}
	for _, tt := range []struct {
		name   string
		srv    *llmtest.Server
		config map[string]any
		stream bool
		step   llmtest.Step
		expect string
	}{
		{"openai json", oa, oc, false, llmtest.Step{Raw: `{"id": "x", "choices": [`}, "openai gpt-test: its answer could not be read (not the provider's format)"},
		{"openai html", oa, oc, false, llmtest.Step{Raw: "<html>bad gateway</html>", RawType: "text/html"}, "openai gpt-test: its answer could not be read"},
		{"openai no choices", oa, oc, false, llmtest.Step{Raw: `{"id": "x", "object": "chat.completion", "choices": []}`}, "the answer has no choices"},
		{"openai sse", oa, oc, true, llmtest.Step{Raw: "data: {\"choices\": [{\"delta\": {\"content\": \"hi\"}\n\n", RawType: "text/event-stream"}, "openai gpt-test: its answer could not be read"},
		{"openai sse cut", oa, oc, true, llmtest.Step{Raw: "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"}}]}\n\n", RawType: "text/event-stream"}, "the stream ended without a finish reason"},
		{"anthropic json", an, ac, false, llmtest.Step{Raw: `{"type": "message", "content": [{`}, "anthropic claude-test: its answer could not be read"},
		{"anthropic sse", an, ac, true, llmtest.Step{Raw: "event: message_start\ndata: {not json}\n\n", RawType: "text/event-stream"}, "anthropic claude-test: its answer could not be read"},
		{"anthropic sse cut", an, ac, true, llmtest.Step{Raw: "event: ping\ndata: {\"type\": \"ping\"}\n\n", RawType: "text/event-stream"}, "the stream ended before message_stop"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p := launch(t, cfg(tt.config, "stream", tt.stream), nil)
			tt.srv.Push(tt.step)
			res, _ := ask(t, p, "hi")
			expectErr(t, res, runner.StatusError, tt.expect)
		})
	}
}

// TestKeyNeverShown gives the plugin a wrong key against servers that echo the
// credentials they receive into their error bodies, at the most verbose log level, and
// checks that the key appears nowhere: not in any log line or stderr output, any error,
// any health answer, any configuration diagnostic. The servers did receive it.
func TestKeyNeverShown(t *testing.T) {
	const secret = "sk-live-DO-NOT-SHOW-7f3a9c1e5b"
	oa := llmtest.NewOpenAI(t, "another-key")
	an := llmtest.NewAnthropic(t, "another-key")
	oa.SetDefault(llmtest.Step{EchoCredentials: true})
	an.SetDefault(llmtest.Step{EchoCredentials: true})
	srv500 := llmtest.NewOpenAI(t, "")
	srv500.SetDefault(llmtest.Step{Status: 500, EchoCredentials: true})
	config := map[string]any{
		"provider": "openai", "model": "gpt-test", "base_url": oa.BaseURL(), "api_key": secret,
		"retries": 1, "retry_backoff": "5ms",
		"fallback": []any{
			map[string]any{"provider": "anthropic", "model": "claude-test", "base_url": an.BaseURL(), "api_key": secret},
			map[string]any{"provider": "openai-compatible", "model": "local", "base_url": srv500.BaseURL(), "api_key": secret},
		},
	}
	p := launch(t, config, nil)
	var everything []string
	res, _ := ask(t, p, "hi")
	expectErr(t, res, runner.StatusError, "openai gpt-test: API key refused (HTTP 401: Incorrect API key provided. You sent: [REDACTED]); check api_key", "provider error (HTTP 500: ")
	everything = append(everything, res.Error, res.Output)
	h, err := p.Health(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(h.Message, "api key set") {
		t.Errorf("health: %q", h.Message)
	}
	everything = append(everything, h.Message)
	// A configuration error about the key must not quote it either.
	q := start(t, cfg(config, "api_key", secret+" "), nil)
	err = q.proc.Configure(context.Background(), true)
	var ce *plugins.ConfigError
	if !errors.As(err, &ce) || !strings.Contains(err.Error(), "api_key has leading or trailing white space") {
		t.Errorf("configure with a padded key: %v", err)
	}
	everything = append(everything, err.Error(), p.logs.String(), q.logs.String())

	received := 0
	for _, s := range []*llmtest.Server{oa, an, srv500} {
		for _, r := range s.Requests() {
			if strings.Contains(r.Header.Get("Authorization")+r.Header.Get("X-Api-Key"), secret) {
				received++
			}
		}
	}
	// 401 is not retried (one request each to the first two), 500 is (two requests).
	if received != 4 {
		t.Fatalf("the servers received the key %d times; the test proves nothing", received)
	}
	for _, s := range everything {
		if strings.Contains(s, secret) || strings.Contains(s, secret[8:]) {
			t.Fatalf("the API key leaked into:\n%s", s)
		}
	}
	if !strings.Contains(p.logs.String(), "attempt failed") {
		t.Error("the log does not show the failed attempts; the test does not cover log lines")
	}
}

// TestNoKeysOrURLsFromEnvironment gives the plugin process OPENAI_* and ANTHROPIC_*
// variables pointing at a trap server with other keys: the SDKs must use only the config.
func TestNoKeysOrURLsFromEnvironment(t *testing.T) {
	trapO := llmtest.NewOpenAI(t, "")
	trapA := llmtest.NewAnthropic(t, "")
	env := map[string]string{
		"OPENAI_API_KEY": "sk-from-env", "OPENAI_BASE_URL": trapO.BaseURL(), "OPENAI_ORG_ID": "org-env",
		"OPENAI_CUSTOM_HEADERS": "X-From-Env: yes",
		"ANTHROPIC_API_KEY":     "sk-ant-from-env", "ANTHROPIC_BASE_URL": trapA.BaseURL(), "ANTHROPIC_AUTH_TOKEN": "tok-env",
		"ANTHROPIC_CUSTOM_HEADERS": "X-From-Env: yes",
		"HTTPS_PROXY":              trapO.URL, "HTTP_PROXY": trapO.URL,
	}
	for _, pc := range providerCases(t) {
		t.Run(pc.name, func(t *testing.T) {
			p := launch(t, pc.config, env)
			n := len(pc.server.Requests())
			res, _ := ask(t, p, "hi")
			if res.Status != runner.StatusOK {
				t.Fatalf("result: %+v", res)
			}
			reqs := pc.server.Requests()[n:]
			if len(reqs) != 1 {
				t.Fatalf("%d requests reached the configured server", len(reqs))
			}
			h := reqs[0].Header
			for _, k := range []string{"Openai-Organization", "X-From-Env", "Authorization", "X-Api-Key"} {
				v := h.Get(k)
				if strings.Contains(v, "env") {
					t.Errorf("header %s = %q came from the environment", k, v)
				}
			}
			if pc.key == "" && h.Get("Authorization") != "" {
				t.Errorf("an openai-compatible request without api_key sent Authorization %q", h.Get("Authorization"))
			}
		})
	}
	if n := len(trapO.Requests()) + len(trapA.Requests()); n != 0 {
		t.Errorf("%d requests went to the URLs from the environment", n)
	}
}

// TestBudget checks that a session's executions are refused, with the reason, once its
// token or cost budget is spent, and that another session starts afresh.
func TestBudget(t *testing.T) {
	srv := llmtest.NewOpenAI(t, openaiKey)
	srv.SetDefault(llmtest.Step{Text: "ok", InputTokens: 10, OutputTokens: 5})
	base := map[string]any{"provider": "openai", "model": "gpt-test", "base_url": srv.BaseURL(), "api_key": openaiKey}

	p := launch(t, cfg(base, "budget_tokens", 30), nil)
	for i := 0; i < 2; i++ {
		if res, _ := ask(t, p, "hi"); res.Status != runner.StatusOK || res.Usage.Extra["session_tokens"] != float64(15*(i+1)) {
			t.Fatalf("execution %d: %+v", i, res)
		}
	}
	n := len(srv.Requests())
	res, _ := ask(t, p, "hi")
	expectErr(t, res, runner.StatusLimitExceeded, "the session's token budget is spent: 30 of 30 tokens used (budget_tokens)")
	if len(srv.Requests()) != n {
		t.Error("a refused execution reached the provider")
	}
	h, _ := p.Health(context.Background())
	if !strings.Contains(h.Message, "session used 30 tokens") {
		t.Errorf("health: %q", h.Message)
	}

	q := launch(t, cfg(base, "budget_cost", 0.0001, "prices", map[string]any{"gpt-test": map[string]any{"input": 2.0, "output": 10.0}}), nil)
	// Each answer costs (10*2 + 5*10)/1e6 = $0.00007.
	if res, _ := ask(t, q, "hi"); res.Status != runner.StatusOK {
		t.Fatalf("first: %+v", res)
	}
	if res, _ := ask(t, q, "hi"); res.Status != runner.StatusOK {
		t.Fatalf("second: %+v", res)
	}
	res, _ = ask(t, q, "hi")
	expectErr(t, res, runner.StatusLimitExceeded, "the session's cost budget is spent: $0.0001 of $0.0001 used (budget_cost)")

	// A cost budget without a price for a model is a configuration error.
	r := start(t, cfg(base, "budget_cost", 1), nil)
	err := r.proc.Configure(context.Background(), true)
	if err == nil || !strings.Contains(err.Error(), `budget_cost needs a price for model "gpt-test"`) {
		t.Errorf("budget_cost without a price: %v", err)
	}
}

// TestCancelStream cancels a streaming answer after its first tokens.
func TestCancelStream(t *testing.T) {
	srv := llmtest.NewAnthropic(t, anthropicKey)
	srv.SetDefault(llmtest.Step{Text: strings.Repeat("word ", 100), ChunkDelay: 20 * time.Millisecond})
	p := launch(t, map[string]any{"provider": "anthropic", "model": "claude-test", "base_url": srv.BaseURL(), "api_key": anthropicKey}, nil)
	ctx := context.Background()
	var mu sync.Mutex
	var toks []string
	var once sync.Once
	// The test waits for the cancel's answer: ending first kills the plugin under it.
	var wg sync.WaitGroup
	res, err := p.Execute(ctx, runner.ExecuteRequest{ExecutionID: "x", Input: "talk"}, func(ev runner.Event) error {
		mu.Lock()
		toks = append(toks, ev.Token.Text)
		n := len(toks)
		mu.Unlock()
		if n == 3 {
			once.Do(func() {
				wg.Go(func() {
					if found, err := p.Cancel(ctx, "x"); !found || err != nil {
						t.Errorf("cancel: %v %v", found, err)
					}
				})
			})
		}
		return nil
	})
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}
	expectErr(t, res, runner.StatusCancelled, "execution cancelled")
	mu.Lock()
	defer mu.Unlock()
	if res.Output != strings.Join(toks, "") || len(toks) < 3 || len(toks) >= 100 {
		t.Errorf("output %q after %d tokens", res.Output, len(toks))
	}
}

// TestRequestParams checks chat messages, per-request overrides, and bad params.
func TestRequestParams(t *testing.T) {
	srv := llmtest.NewOpenAI(t, openaiKey)
	p := launch(t, map[string]any{"provider": "openai", "model": "gpt-test", "base_url": srv.BaseURL(), "api_key": openaiKey, "stream": false}, nil)
	n := len(srv.Requests())
	res, _ := run(t, p, runner.ExecuteRequest{Input: "and now?", Params: map[string]any{
		"messages": []any{
			map[string]any{"role": "system", "content": "be kind"},
			map[string]any{"role": "user", "content": "hello"},
			map[string]any{"role": "assistant", "content": "hi there"},
		},
		"max_tokens": 5.0, "temperature": 0.5, "stop": []any{"END"}, "stream": true,
	}})
	if res.Status != runner.StatusOK {
		t.Fatalf("%+v", res)
	}
	rq := srv.Requests()[n]
	msgs, _ := rq.JSON["messages"].([]any)
	var roles []string
	for _, m := range msgs {
		roles = append(roles, m.(map[string]any)["role"].(string)+":"+m.(map[string]any)["content"].(string))
	}
	if strings.Join(roles, "|") != "system:be kind|user:hello|assistant:hi there|user:and now?" ||
		rq.JSON["max_completion_tokens"] != 5.0 || rq.JSON["temperature"] != 0.5 || !rq.Stream {
		t.Errorf("request: %s", rq.Body)
	}
	for _, tt := range []struct {
		params map[string]any
		expect string
	}{
		{map[string]any{"model": "gpt-5"}, "unknown parameter params.model"},
		{map[string]any{"messages": []any{map[string]any{"role": "tool", "content": "x"}}}, "params.messages[0] must be {role, content} with role system, user or assistant"},
		{map[string]any{"max_tokens": -1.0}, "params.max_tokens must be a whole number from 1 to 16777216, got -1"},
		{map[string]any{"max_tokens": "10"}, `params.max_tokens must be a whole number from 1 to 16777216, got the string "10"`},
		{map[string]any{"max_tokens": 1e9}, "params.max_tokens must be a whole number from 1 to 16777216, got 1000000000"},
		{map[string]any{"temperature": 3.0}, "params.temperature must be a number from 0 to 2, got 3"},
		{map[string]any{"temperature": "hot"}, `params.temperature must be a number from 0 to 2, got the string "hot"`},
		{map[string]any{"stream": "yes"}, `params.stream must be true or false, got the string "yes"`},
		{map[string]any{"stop": []any{1.0}}, "params.stop[0] must be a string, got 1"},
		{map[string]any{"system": []any{}}, "params.system must be a string, got a list"},
	} {
		res, _ := run(t, p, runner.ExecuteRequest{Input: "x", Params: tt.params})
		expectErr(t, res, runner.StatusError, tt.expect)
	}
	res, _ = run(t, p, runner.ExecuteRequest{})
	expectErr(t, res, runner.StatusError, "nothing to ask: give input or params.messages")
}

// TestTemperatureToAnthropic checks that params.temperature, which Anthropic's SDK v2
// cannot send, is refused when an Anthropic model may answer (the primary or a
// fallback) rather than silently dropped, and that no request is made.
func TestTemperatureToAnthropic(t *testing.T) {
	an := llmtest.NewAnthropic(t, anthropicKey)
	oa := llmtest.NewOpenAI(t, openaiKey)
	claude := map[string]any{"provider": "anthropic", "model": "claude-test", "base_url": an.BaseURL(), "api_key": anthropicKey}
	for _, tt := range []struct {
		name   string
		config map[string]any
		expect string
	}{
		{"primary", claude, "params.temperature cannot be sent to anthropic claude-test: "},
		{"fallback", map[string]any{"provider": "openai", "model": "gpt-test", "base_url": oa.BaseURL(), "api_key": openaiKey,
			"fallback": []any{claude}}, "params.temperature cannot be sent to anthropic claude-test (fallback 1): "},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p := launch(t, tt.config, nil)
			n, m := len(an.Requests()), len(oa.Requests())
			res, _ := run(t, p, runner.ExecuteRequest{Input: "hi", Params: map[string]any{"temperature": 0.5}})
			expectErr(t, res, runner.StatusError, tt.expect, "leave params.temperature out")
			if len(an.Requests()) != n || len(oa.Requests()) != m {
				t.Error("a refused request reached a provider")
			}
			if res, _ := ask(t, p, "hi"); res.Status != runner.StatusOK {
				t.Errorf("without params.temperature: %+v", res)
			}
		})
	}
}

// TestUnreachable checks the error for a server that is not there.
func TestUnreachable(t *testing.T) {
	p := launch(t, map[string]any{"provider": "openai-compatible", "model": "m", "base_url": "http://127.0.0.1:1/v1", "retries": 1, "retry_backoff": "5ms"}, nil)
	res, _ := ask(t, p, "hi")
	expectErr(t, res, runner.StatusError, "openai-compatible m: cannot reach http://127.0.0.1:1/v1: connection refused (after 2 attempts)")
}

// TestSystemMessages checks that no system text is dropped. OpenAI and compatible
// servers get every system message where it stands, after params.system; Anthropic,
// which takes one system text, gets params.system and the system messages before the
// conversation joined in order, and a system message after the conversation began is
// refused, naming it, without a request.
func TestSystemMessages(t *testing.T) {
	msg := func(role, content string) any { return map[string]any{"role": role, "content": content} }
	for _, pc := range providerCases(t) {
		t.Run(pc.name, func(t *testing.T) {
			p := launch(t, cfg(pc.config, "stream", false, "system", "from the config"), nil)
			send := func(params map[string]any) (runner.Result, *llmtest.Request) {
				n := len(pc.server.Requests())
				res, _ := run(t, p, runner.ExecuteRequest{Input: "last", Params: params})
				if reqs := pc.server.Requests()[n:]; len(reqs) > 0 {
					return res, &reqs[0]
				}
				return res, nil
			}
			// wire renders the request's system text and messages as role:content|…
			wire := func(rq *llmtest.Request) string {
				if rq == nil {
					return "(no request)"
				}
				var out []string
				if sys, ok := rq.JSON["system"].([]any); ok {
					for _, b := range sys {
						out = append(out, "system:"+b.(map[string]any)["text"].(string))
					}
				}
				msgs, _ := rq.JSON["messages"].([]any)
				for _, m := range msgs {
					m := m.(map[string]any)
					content, ok := m["content"].(string)
					if !ok { // Anthropic's content blocks
						content = m["content"].([]any)[0].(map[string]any)["text"].(string)
					}
					out = append(out, m["role"].(string)+":"+content)
				}
				return strings.Join(out, "|")
			}

			leading := []any{msg("system", "A1"), msg("system", "A2"), msg("user", "u1"), msg("assistant", "a1")}
			res, rq := send(map[string]any{"system": "P", "messages": leading})
			want := "system:P|system:A1|system:A2|user:u1|assistant:a1|user:last"
			if pc.name == "anthropic" {
				want = "system:P\n\nA1\n\nA2|user:u1|assistant:a1|user:last"
			}
			if res.Status != runner.StatusOK || rq == nil || wire(rq) != want {
				t.Errorf("params.system and leading system messages: %+v, sent %q, want %q", res, wire(rq), want)
			}

			res, rq = send(map[string]any{"messages": []any{msg("user", "u1"), msg("system", "B")}})
			if pc.name == "anthropic" {
				expectErr(t, res, runner.StatusError, "params.messages[1] is a system message after the conversation began, which anthropic claude-test cannot take")
				if rq != nil {
					t.Errorf("a refused request reached the provider: %s", rq.Body)
				}
				return
			}
			if want := "system:from the config|user:u1|system:B|user:last"; res.Status != runner.StatusOK || rq == nil || wire(rq) != want {
				t.Errorf("a system message in the conversation: %+v, sent %q, want %q", res, wire(rq), want)
			}
		})
	}
}
