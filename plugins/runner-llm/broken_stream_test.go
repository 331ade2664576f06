package main

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/limitgraph/limit/internal/llmtest"
	"github.com/limitgraph/limit/sdk/runner"
)

// TestBrokenStreamKeepsOutput has each provider's stream stall after its first tokens,
// past attempt_timeout. The tokens went out to the client, so the failed result must
// carry them as its output (the host checks the output with its rules and records its
// digest: text the client saw but the result left out would go unchecked), with a key
// the model echoed still redacted, and the usage the session was charged for them.
func TestBrokenStreamKeepsOutput(t *testing.T) {
	for _, prov := range []string{"openai", "anthropic"} {
		t.Run(prov, func(t *testing.T) {
			srv, key, model := llmtest.NewOpenAI(t, openaiKey), openaiKey, "gpt-test"
			if prov == "anthropic" {
				srv, key, model = llmtest.NewAnthropic(t, anthropicKey), anthropicKey, "claude-test"
			}
			text := "one two " + key + " three four five six seven"
			srv.SetDefault(llmtest.Step{Text: text, ChunkDelay: 250 * time.Millisecond})
			p := launch(t, map[string]any{
				"provider": prov, "model": model, "base_url": srv.BaseURL(), "api_key": key,
				"attempt_timeout": "1s", "retries": 0,
			}, nil)
			res, toks := ask(t, p, "count")
			expectErr(t, res, runner.StatusTimeout, "the answer broke off after")
			got := strings.Join(toks, "")
			if len(toks) < 2 || !strings.HasPrefix(got, "one two ") || strings.Contains(got, key) {
				t.Fatalf("tokens %q", toks)
			}
			if res.Output != got {
				t.Errorf("output %q, but the client was sent %q", res.Output, got)
			}
			u := res.Usage
			if u.CompletionTokens == 0 || u.TotalTokens != u.PromptTokens+u.CompletionTokens ||
				u.Extra["session_tokens"] != float64(u.TotalTokens) || u.Extra["usage_estimated"] != 1 {
				t.Errorf("usage %+v: want the streamed part's estimate, marked usage_estimated, counted in session_tokens", u)
			}
		})
	}
}

// TestNonStreamedAnswerHasNoRate asks for a whole (non-streamed) answer: it arrives at
// once, so there is no generation rate to report (elapsed time after the "first token"
// is only the plugin's own bookkeeping, which gave rates of tens of thousands of tokens
// a second).
func TestNonStreamedAnswerHasNoRate(t *testing.T) {
	srv := llmtest.NewOpenAI(t, openaiKey)
	srv.SetDefault(llmtest.Step{Text: "a b c d e f g h", OutputTokens: 8, Delay: 50 * time.Millisecond})
	p := launch(t, map[string]any{"provider": "openai", "model": "gpt-test", "base_url": srv.BaseURL(), "api_key": openaiKey, "stream": false}, nil)
	res, _ := ask(t, p, "hi")
	if res.Status != runner.StatusOK {
		t.Fatalf("result %+v", res)
	}
	if r, ok := res.Usage.Extra["tokens_per_second"]; ok {
		t.Errorf("tokens_per_second %v for an answer that was not streamed", r)
	}
	if ttft := res.Usage.Extra["time_to_first_token_ms"]; ttft < 50 {
		t.Errorf("time_to_first_token_ms %v, want the whole answer's wait (≥ 50 ms)", ttft)
	}
}

// TestStoppedStreamUsage stops a streaming answer by the execution's timeout after its
// first tokens: the result keeps them as its output, and carries what the session was
// charged for them.
func TestStoppedStreamUsage(t *testing.T) {
	srv := llmtest.NewOpenAI(t, openaiKey)
	srv.SetDefault(llmtest.Step{Text: strings.Repeat("word ", 50), ChunkDelay: 150 * time.Millisecond})
	p := launch(t, map[string]any{"provider": "openai", "model": "gpt-test", "base_url": srv.BaseURL(), "api_key": openaiKey,
		"prices": map[string]any{"gpt-test": map[string]any{"input": 1.0, "output": 2.0}}}, nil)
	res, toks := run(t, p, runner.ExecuteRequest{ExecutionID: "x", Input: "talk", Timeout: 700 * time.Millisecond})
	expectErr(t, res, runner.StatusTimeout, "no answer within the execution's timeout of 700ms")
	if len(toks) == 0 || res.Output != strings.Join(toks, "") {
		t.Fatalf("output %q, tokens %q", res.Output, toks)
	}
	u := res.Usage
	if u.CompletionTokens == 0 || u.TotalTokens != u.PromptTokens+u.CompletionTokens ||
		u.Extra["session_tokens"] != float64(u.TotalTokens) || u.Extra["cost_usd"] <= 0 {
		t.Errorf("usage %+v: want the streamed part's estimate and cost, counted in session_tokens", u)
	}
}

// TestResetMidStream has the server reset the connection after the first event of its
// stream: the error says the connection broke, not that the server could not be reached.
func TestResetMidStream(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, `data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"Hello "},"finish_reason":null}]}`+"\n\n")
		http.NewResponseController(w).Flush()
		conn, _, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Error(err)
			return
		}
		conn.(*net.TCPConn).SetLinger(0)
		conn.Close()
	}))
	defer srv.Close()
	p := launch(t, map[string]any{"provider": "openai-compatible", "model": "m", "base_url": srv.URL + "/v1"}, nil)
	res, toks := ask(t, p, "hi")
	expectErr(t, res, runner.StatusError, "openai-compatible m: the connection to "+srv.URL+"/v1 broke: connection reset by peer", "the answer broke off after 6 bytes")
	if strings.Contains(res.Error, "cannot reach") || res.Output != "Hello " || strings.Join(toks, "") != "Hello " {
		t.Errorf("error %q, output %q, tokens %q", res.Error, res.Output, toks)
	}
}

// TestPromptOverBudget sends a prompt that alone is far more than the session's budget
// has left: capping max_tokens cannot keep such a request within the budget (a 40 kB
// prompt in a session of 100 tokens spent 20,000), so it must not reach the provider.
// A prompt that fits still runs.
func TestPromptOverBudget(t *testing.T) {
	srv := llmtest.NewOpenAI(t, openaiKey)
	srv.SetDefault(llmtest.Step{Text: "ok", OutputTokens: 1})
	base := map[string]any{"provider": "openai", "model": "gpt-test", "base_url": srv.BaseURL(), "api_key": openaiKey}
	huge := strings.Repeat("lorem ipsum dolor sit amet ", 1500)
	for _, c := range []map[string]any{
		cfg(base, "budget_tokens", 100),
		cfg(base, "budget_cost", 0.0001, "prices", map[string]any{"gpt-test": map[string]any{"input": 1.0, "output": 1.0}}),
	} {
		p := launch(t, c, nil)
		n := len(srv.Requests())
		res, _ := ask(t, p, huge)
		expectErr(t, res, runner.StatusLimitExceeded, "the prompt, about 10125 tokens", "is more than is left of the session's")
		if len(srv.Requests()) != n || res.Usage.Extra["session_tokens"] != 0 {
			t.Errorf("a prompt over the budget reached the provider or was charged: %+v", res)
		}
		if res, _ := ask(t, p, "hi"); res.Status != runner.StatusOK {
			t.Errorf("a prompt within the budget: %+v", res)
		}
	}
}

// TestErrorEventInStream has each provider send an error event in its stream, as both
// do when they fail after answering 200 (OpenAI's server_error, Anthropic's
// overloaded_error). Before any text it is a provider error like a 5xx, so the model
// is asked again; after some text the answer broke off. Neither is an unreadable answer
// or a refused request.
func TestErrorEventInStream(t *testing.T) {
	const (
		openaiChunk = `data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"gpt-test","choices":[{"index":0,"delta":{"content":"Hello "},"finish_reason":null}]}` + "\n\n"
		openaiError = `data: {"error":{"message":"The server had an error while processing your request.","type":"server_error","param":null,"code":null}}` + "\n\n"
		claudeStart = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-test\",\"content\":[],\"stop_reason\":null,\"usage\":{\"input_tokens\":5,\"output_tokens\":1}}}\n\n"
		claudeDelta = "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hello \"}}\n\n"
		claudeError = "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n"
	)
	for _, tt := range []struct {
		prov, before, after, want string
	}{
		{"openai", "", openaiError, "openai gpt-test: provider error (in the stream: The server had an error while processing your request.)"},
		{"anthropic", claudeStart, claudeError, "anthropic claude-test: provider error (in the stream: Overloaded)"},
	} {
		t.Run(tt.prov, func(t *testing.T) {
			srv, key, model, chunk := llmtest.NewOpenAI(t, openaiKey), openaiKey, "gpt-test", openaiChunk
			if tt.prov == "anthropic" {
				srv, key, model, chunk = llmtest.NewAnthropic(t, anthropicKey), anthropicKey, "claude-test", claudeDelta
			}
			p := launch(t, map[string]any{"provider": tt.prov, "model": model, "base_url": srv.BaseURL(), "api_key": key,
				"retries": 1, "retry_backoff": "10ms"}, nil)

			srv.Push(llmtest.Step{Raw: tt.before + tt.after, RawType: "text/event-stream"}, llmtest.Step{Text: "fine"})
			res, _ := ask(t, p, "hi")
			if res.Status != runner.StatusOK || res.Output != "fine" || res.Usage.Extra["attempts"] != 2 {
				t.Errorf("an error event before any text was not retried: %+v", res)
			}

			srv.Push(llmtest.Step{Raw: tt.before + chunk + tt.after, RawType: "text/event-stream"})
			res, _ = ask(t, p, "hi")
			expectErr(t, res, runner.StatusError, tt.want, "the answer broke off after 6 bytes")
			if strings.Contains(res.Error, "could not be read") || strings.Contains(res.Error, "HTTP 200") || res.Output != "Hello " {
				t.Errorf("error %q, output %q", res.Error, res.Output)
			}
		})
	}
}
