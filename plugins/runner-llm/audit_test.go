package main

import (
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/limitgraph/limit/internal/llmtest"
	"github.com/limitgraph/limit/sdk/runner"
)

// TestRedirectNotFollowed has the provider answer with a redirect to another server on
// the same host name: the plugin must neither follow it (the key would go along, and
// the request would reach a host the config does not name) nor retry it.
func TestRedirectNotFollowed(t *testing.T) {
	const secret = "sk-redirect-5e1d7a90c3b2f4"
	for _, prov := range []string{"openai", "anthropic"} {
		other := llmtest.NewOpenAI(t, "")
		base := "/v1"
		if prov == "anthropic" {
			other, base = llmtest.NewAnthropic(t, ""), ""
		}
		for _, code := range []int{http.StatusTemporaryRedirect, http.StatusFound} {
			t.Run(fmt.Sprint(prov, code), func(t *testing.T) {
				redir := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					http.Redirect(w, r, other.URL+r.URL.Path+"?leak="+secret, code)
				}))
				defer redir.Close()
				p := launch(t, map[string]any{"provider": prov, "model": "m", "base_url": redir.URL + base, "api_key": secret,
					"retries": 2, "retry_backoff": "5ms"}, nil)
				n := len(other.Requests())
				res, _ := ask(t, p, "hi")
				expectErr(t, res, runner.StatusError, "redirect")
				if got := other.Requests()[n:]; len(got) != 0 {
					t.Errorf("the redirect was followed: %d requests reached another server, Authorization %q", len(got), got[0].Header.Get("Authorization"))
				}
				if res.Usage.Extra["attempts"] > 1 || strings.Contains(res.Error, "after 3 attempts") {
					t.Errorf("a redirect was retried: %s", res.Error)
				}
				if strings.Contains(res.Error+p.logs.String(), secret) {
					t.Errorf("the key leaked: %s", res.Error)
				}
			})
		}
	}
}

// TestErrorBodyCutDoesNotSplitKey answers with an error body without a message whose
// echoed key straddles the point where the body is cut for the error: no part of the
// key may show. A huge error message is cut too.
func TestErrorBodyCutDoesNotSplitKey(t *testing.T) {
	const secret = "sk-straddle-0f9e8d7c6b5a4938"
	var body string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprint(w, body)
	}))
	defer srv.Close()
	p := launch(t, map[string]any{"provider": "openai", "model": "gpt-test", "base_url": srv.URL + "/v1", "api_key": secret, "retries": 0}, nil)
	for pad := 270; pad < 300; pad++ {
		body = `{"error": {"detail": "` + strings.Repeat("x", pad) + " you sent " + secret + `"}}`
		res, _ := ask(t, p, "hi")
		if res.Status != runner.StatusError || !strings.Contains(res.Error, "HTTP 400") {
			t.Fatalf("result: %+v", res)
		}
		for i := 0; i+8 <= len(secret); i++ {
			if part := secret[i : i+8]; strings.Contains(res.Error, part) {
				t.Fatalf("pad %d: part %q of the key in the error %q", pad, part, res.Error)
			}
		}
	}
	body = `{"error": {"message": "` + strings.Repeat("y", 4<<20) + `"}}`
	res, _ := ask(t, p, "hi")
	if res.Status != runner.StatusError || len(res.Error) > 4096 {
		t.Fatalf("a 4 MiB error message gave an error of %d bytes (status %v)", len(res.Error), res.Status)
	}
}

// TestHugeAnswerBounded answers with a body that never ends, as JSON and as an event
// stream: the plugin must stop reading at its size limit and say so, rather than
// buffer until the attempt's timeout.
func TestHugeAnswerBounded(t *testing.T) {
	chunk := strings.Repeat("a", 64<<10)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		stream := strings.Contains(string(body), `"stream":true`)
		if stream {
			w.Header().Set("Content-Type", "text/event-stream")
		} else {
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprint(w, `{"id":"x","object":"chat.completion","choices":[{"index":0,"finish_reason":"stop","message":{"role":"assistant","content":"`)
		}
		for r.Context().Err() == nil {
			var err error
			if stream {
				_, err = fmt.Fprintf(w, "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":%q}}]}\n\n", chunk)
			} else {
				_, err = fmt.Fprint(w, chunk)
			}
			if err != nil {
				return
			}
		}
	}))
	defer srv.Close()
	for _, stream := range []bool{false, true} {
		t.Run(fmt.Sprint("stream=", stream), func(t *testing.T) {
			p := launch(t, map[string]any{"provider": "openai-compatible", "model": "m", "base_url": srv.URL + "/v1",
				"retries": 0, "attempt_timeout": "60s", "stream": stream}, nil)
			begin := time.Now()
			res, err := p.Execute(context.Background(), runner.ExecuteRequest{ExecutionID: "e", Input: "hi"}, func(runner.Event) error { return nil })
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%v after %v: %.200s", res.Status, time.Since(begin), res.Error)
			// Stopped by its size ("larger than"), not by the attempt's 60 s timeout, which
			// says so otherwise; no time bound (the machine is shared).
			if res.Status != runner.StatusError || !strings.Contains(res.Error, "larger than") {
				t.Errorf("an endless answer: status %v after %v, error %.300q", res.Status, time.Since(begin), res.Error)
			}
		})
	}
}

// TestBudgetConcurrent starts executions together in a session whose budget one
// answer spends: only one may reach the provider.
func TestBudgetConcurrent(t *testing.T) {
	srv := llmtest.NewOpenAI(t, openaiKey)
	srv.SetDefault(llmtest.Step{Text: "ok", InputTokens: 10, OutputTokens: 5, Delay: 300 * time.Millisecond})
	p := launch(t, map[string]any{"provider": "openai", "model": "gpt-test", "base_url": srv.BaseURL(), "api_key": openaiKey,
		"budget_tokens": 15}, nil)
	n := len(srv.Requests())
	var wg sync.WaitGroup
	var mu sync.Mutex
	statuses := map[runner.Status]int{}
	for i := range 4 {
		wg.Go(func() {
			res, err := p.Execute(context.Background(), runner.ExecuteRequest{ExecutionID: fmt.Sprint("e", i), Input: "hi"},
				func(runner.Event) error { return nil })
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			statuses[res.Status]++
			mu.Unlock()
		})
	}
	wg.Wait()
	if got := len(srv.Requests()) - n; got != 1 || statuses[runner.StatusOK] != 1 || statuses[runner.StatusLimitExceeded] != 3 {
		t.Errorf("4 concurrent executions with a budget of one answer: %d reached the provider, statuses %v", got, statuses)
	}
}

// TestBudgetWithoutUsage has a server that reports no usage: the session's budget must
// still count what the answers used, estimated.
func TestBudgetWithoutUsage(t *testing.T) {
	srv := llmtest.NewOpenAI(t, "")
	text := strings.Repeat("word ", 40)
	sse := "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"" + text + "\"}}]}\n\n" +
		"data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n"
	srv.SetDefault(llmtest.Step{Raw: sse, RawType: "text/event-stream"})
	p := launch(t, map[string]any{"provider": "openai-compatible", "model": "m", "base_url": srv.BaseURL(), "budget_tokens": 60}, nil)
	res, _ := ask(t, p, "hi")
	if res.Status != runner.StatusOK || res.Output != text || res.Usage.Extra["usage_unknown"] != 1 {
		t.Fatalf("result: %+v", res)
	}
	if res.Usage.Extra["session_tokens"] < 40 {
		t.Errorf("an answer of 200 bytes without usage counted %v tokens against the budget", res.Usage.Extra["session_tokens"])
	}
	ask(t, p, "hi")
	res, _ = ask(t, p, "hi")
	expectErr(t, res, runner.StatusLimitExceeded, "token budget is spent")
}

// TestUsageUnknownReportsEstimate has a server that reports no usage: the result must
// report what the session was charged for the answer, the estimate (a 200-byte answer
// is 50 tokens, the prompt "hi" 1), and its cost, marked as estimated, rather than no
// tokens and no cost beside a session total that grew.
func TestUsageUnknownReportsEstimate(t *testing.T) {
	srv := llmtest.NewOpenAI(t, "")
	text := strings.Repeat("word ", 40)
	srv.SetDefault(llmtest.Step{Raw: `{"id":"x","object":"chat.completion","choices":[{"index":0,"finish_reason":"stop","message":{"role":"assistant","content":"` + text + `"}}]}`})
	p := launch(t, map[string]any{"provider": "openai-compatible", "model": "m", "base_url": srv.BaseURL(), "stream": false,
		"prices": map[string]any{"m": map[string]any{"input": 1.0, "output": 2.0}}}, nil)
	for i := 1; i <= 2; i++ {
		res, _ := ask(t, p, "hi")
		u := res.Usage
		if res.Status != runner.StatusOK || res.Output != text {
			t.Fatalf("result: %+v", res)
		}
		if u.PromptTokens != 1 || u.CompletionTokens != 50 || u.TotalTokens != 51 || u.Extra["session_tokens"] != float64(51*i) {
			t.Errorf("execution %d: usage %+v, want the estimate the session was charged (1 + 50 tokens, session %d)", i, u, 51*i)
		}
		if want := (1*1.0 + 50*2.0) / 1e6; math.Abs(u.Extra["cost_usd"]-want) > 1e-15 || math.Abs(u.Extra["session_cost_usd"]-want*float64(i)) > 1e-15 {
			t.Errorf("execution %d: cost %v (session %v), want %v a time", i, u.Extra["cost_usd"], u.Extra["session_cost_usd"], want)
		}
		if u.Extra["usage_estimated"] != 1 || u.Extra["usage_unknown"] != 1 {
			t.Errorf("execution %d: the estimate is not marked: %v", i, u.Extra)
		}
	}
}

// TestBudgetCountsStoppedAnswers stops streamed answers by timeout and by cancel: what
// was streamed was generated (and billed by the provider), so it counts.
func TestBudgetCountsStoppedAnswers(t *testing.T) {
	srv := llmtest.NewAnthropic(t, anthropicKey)
	srv.SetDefault(llmtest.Step{Text: strings.Repeat("word ", 100), ChunkDelay: 20 * time.Millisecond})
	p := launch(t, map[string]any{"provider": "anthropic", "model": "claude-test", "base_url": srv.BaseURL(), "api_key": anthropicKey,
		"budget_tokens": 12}, nil)
	res, toks := run(t, p, runner.ExecuteRequest{ExecutionID: "x", Input: "talk", Timeout: 300 * time.Millisecond})
	expectErr(t, res, runner.StatusTimeout, "no answer within the execution's timeout")
	if len(toks) < 5 || res.Output == "" {
		t.Fatalf("%d tokens streamed before the timeout", len(toks))
	}
	h, _ := p.Health(context.Background())
	if strings.Contains(h.Message, "session used 0 tokens") {
		t.Errorf("a timed-out answer of %d tokens counted nothing: %q", len(toks), h.Message)
	}
	n := len(srv.Requests())
	res, _ = ask(t, p, "talk")
	expectErr(t, res, runner.StatusLimitExceeded, "token budget is spent")
	if len(srv.Requests()) != n {
		t.Error("the session got past its budget by timing its answers out")
	}
}

// TestMaxTokensWithinBudget asks for more tokens than the session's budget has left:
// the request must ask for no more than what is left.
func TestMaxTokensWithinBudget(t *testing.T) {
	srv := llmtest.NewOpenAI(t, openaiKey)
	srv.SetDefault(llmtest.Step{Text: "ok", InputTokens: 10, OutputTokens: 10})
	base := map[string]any{"provider": "openai", "model": "gpt-test", "base_url": srv.BaseURL(), "api_key": openaiKey}

	p := launch(t, cfg(base, "budget_tokens", 100), nil)
	ask(t, p, "hi")
	n := len(srv.Requests())
	run(t, p, runner.ExecuteRequest{Input: "hi", Params: map[string]any{"max_tokens": 100000.0}})
	// 100 less the 20 used and the prompt "hi" (1 token estimated) leaves 79.
	if got := srv.Requests()[n].JSON["max_completion_tokens"]; got != 79.0 {
		t.Errorf("budget 100 tokens, 20 used, prompt 1, params.max_tokens 100000: the request asked for %v", got)
	}

	// $0.001 at $10 per million output tokens is 100 tokens.
	q := launch(t, cfg(base, "budget_cost", 0.001, "prices", map[string]any{"gpt-test": map[string]any{"input": 0.0, "output": 10.0}}), nil)
	n = len(srv.Requests())
	run(t, q, runner.ExecuteRequest{Input: "hi", Params: map[string]any{"max_tokens": 100000.0}})
	if got := srv.Requests()[n].JSON["max_completion_tokens"]; got != 100.0 {
		t.Errorf("budget $0.001 at $10/M output: the request asked for %v tokens", got)
	}
}

// TestMaxTokensLeavesRoomForPrompt sends a prompt of about 141 tokens in a session of
// 200: the provider charges the prompt too, so the answer may have only the 59 tokens
// left after it (asking for 200 spent 341). With a cost budget the prompt is priced at
// the model's input price. A prompt that leaves nothing for an answer is refused
// without asking the provider.
func TestMaxTokensLeavesRoomForPrompt(t *testing.T) {
	srv := llmtest.NewOpenAI(t, openaiKey)
	base := map[string]any{"provider": "openai", "model": "gpt-test", "base_url": srv.BaseURL(), "api_key": openaiKey, "max_tokens": 1000}
	prompt := strings.Repeat("abcd", 141) // 564 bytes: 141 tokens estimated
	for _, tt := range []struct {
		name   string
		config map[string]any
		cap    float64
		check  func(u runner.Usage) bool
	}{
		{"tokens", cfg(base, "budget_tokens", 200), 59, func(u runner.Usage) bool { return u.Extra["session_tokens"] <= 200 }},
		// $0.0005 less the prompt's 141 tokens at $2/M leaves $0.000218: 54 tokens at $4/M.
		{"cost", cfg(base, "budget_cost", 0.0005, "prices", map[string]any{"gpt-test": map[string]any{"input": 2.0, "output": 4.0}}), 54,
			func(u runner.Usage) bool { return u.Extra["session_cost_usd"] <= 0.0005 }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			// The server generates as many tokens as it is allowed.
			srv.SetDefault(llmtest.Step{Text: "ok", InputTokens: 141, OutputTokens: int(tt.cap)})
			p := launch(t, tt.config, nil)
			n := len(srv.Requests())
			res, _ := ask(t, p, prompt)
			if res.Status != runner.StatusOK {
				t.Fatalf("result %+v", res)
			}
			if got := srv.Requests()[n].JSON["max_completion_tokens"]; got != tt.cap {
				t.Errorf("max_completion_tokens %v, want the %v left after the prompt", got, tt.cap)
			}
			if !tt.check(res.Usage) {
				t.Errorf("the session spent beyond its budget: %v", res.Usage.Extra)
			}
			n = len(srv.Requests())
			res, _ = ask(t, p, "hi")
			expectErr(t, res, runner.StatusLimitExceeded)
			if len(srv.Requests()) != n {
				t.Error("an execution over a spent budget reached the provider")
			}
		})
	}
	t.Run("nothing left", func(t *testing.T) {
		for _, c := range []struct {
			config map[string]any
			expect string
		}{
			{cfg(base, "budget_tokens", 141), "the prompt, about 141 tokens, leaves nothing of the session's token budget for an answer: 0 of 141 tokens used"},
			// The prompt costs $0.000282, the answer's first token $0.000004 more.
			{cfg(base, "budget_cost", 0.000285, "prices", map[string]any{"gpt-test": map[string]any{"input": 2.0, "output": 4.0}}),
				"the prompt, about 141 tokens, leaves too little of the session's cost budget for one token of answer"},
		} {
			p := launch(t, c.config, nil)
			n := len(srv.Requests())
			res, _ := ask(t, p, prompt)
			expectErr(t, res, runner.StatusLimitExceeded, c.expect)
			if len(srv.Requests()) != n {
				t.Error("a request without room for an answer reached the provider")
			}
		}
	})
}
