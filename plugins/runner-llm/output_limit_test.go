package main

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/limitgraph/limit/internal/llmtest"
	"github.com/limitgraph/limit/sdk/runner"
)

// openWithLimits starts the plugin with cfg, configures it and opens a session with
// limits.
func openWithLimits(t *testing.T, cfg map[string]any, limits runner.Limits) *plugin {
	t.Helper()
	p := start(t, cfg, nil)
	ctx := context.Background()
	if err := p.proc.Configure(ctx, false); err != nil {
		t.Fatalf("configure: %v", err)
	}
	if err := p.OpenSession(ctx, runner.Session{ID: "s-" + t.Name(), AllowNetwork: true, Limits: limits}); err != nil {
		t.Fatalf("open session: %v", err)
	}
	return p
}

// TestMaxOutputBytes checks that the session's max_output_bytes ends an answer as it
// does in the llama runner: reading stops at the limit, the output and the token events
// are the first max_output_bytes bytes (never half a character), the result is OK with
// finish reason "length" and truncated, and what was received is charged.
func TestMaxOutputBytes(t *testing.T) {
	// The limit falls inside "€" (bytes 19 to 21): the output stops before it.
	const limit = 20
	text := "héllo wörld, abcd€ " + strings.Repeat("more words ", 30)
	want := "héllo wörld, abcd"
	check := func(t *testing.T, res runner.Result, toks []string, estimated bool) {
		t.Helper()
		if res.Status != runner.StatusOK || !res.Truncated || res.FinishReason != "length" {
			t.Errorf("status %v truncated %v finish %q (error %q), want ok, truncated, length", res.Status, res.Truncated, res.FinishReason, res.Error)
		}
		if res.Output != want {
			t.Errorf("output %q, want %q: the answer's first %d bytes, in whole characters", res.Output, want, limit)
		}
		if got := strings.Join(toks, ""); got != res.Output {
			t.Errorf("token events %q, output %q", got, res.Output)
		}
		u := res.Usage
		if u.CompletionTokens < limit/4 || u.Extra["session_tokens"] != float64(u.TotalTokens) || (u.Extra["usage_estimated"] == 1) != estimated {
			t.Errorf("usage %+v: want what was received charged (estimated %v)", u, estimated)
		}
	}

	t.Run("endless stream", func(t *testing.T) {
		// The server streams the answer, then holds the connection open without
		// finishing: only a runner that stops reading at the limit can answer.
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/event-stream")
			for _, c := range llmtest.SplitWords(text) {
				fmt.Fprintf(w, "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"content\":%q},\"finish_reason\":null}]}\n\n", c)
			}
			http.NewResponseController(w).Flush()
			<-r.Context().Done()
		}))
		defer srv.Close()
		p := openWithLimits(t, map[string]any{"provider": "openai-compatible", "model": "m", "base_url": srv.URL + "/v1",
			"retries": 0, "attempt_timeout": "30s"}, runner.Limits{MaxOutputBytes: limit})
		res, toks := ask(t, p, "talk")
		check(t, res, toks, true)
	})
	t.Run("anthropic stream", func(t *testing.T) {
		srv := llmtest.NewAnthropic(t, anthropicKey)
		srv.SetDefault(llmtest.Step{Text: text})
		p := openWithLimits(t, map[string]any{"provider": "anthropic", "model": "claude-test", "base_url": srv.BaseURL(), "api_key": anthropicKey},
			runner.Limits{MaxOutputBytes: limit})
		res, toks := ask(t, p, "talk")
		check(t, res, toks, true)
	})
	t.Run("whole answer", func(t *testing.T) {
		// An answer that came whole has the provider's usage: that is what is charged.
		srv := llmtest.NewOpenAI(t, openaiKey)
		srv.SetDefault(llmtest.Step{Text: text, InputTokens: 3, OutputTokens: 90})
		p := openWithLimits(t, map[string]any{"provider": "openai", "model": "gpt-test", "base_url": srv.BaseURL(), "api_key": openaiKey, "stream": false},
			runner.Limits{MaxOutputBytes: limit})
		res, toks := ask(t, p, "talk")
		check(t, res, toks, false)
		if res.Usage.CompletionTokens != 90 {
			t.Errorf("usage %+v, want the provider's 90 output tokens", res.Usage)
		}
	})
	t.Run("within the limit", func(t *testing.T) {
		srv := llmtest.NewOpenAI(t, openaiKey)
		srv.SetDefault(llmtest.Step{Text: text})
		p := openWithLimits(t, map[string]any{"provider": "openai", "model": "gpt-test", "base_url": srv.BaseURL(), "api_key": openaiKey},
			runner.Limits{MaxOutputBytes: uint64(len(text))})
		res, _ := ask(t, p, "talk")
		if res.Status != runner.StatusOK || res.Truncated || res.Output != text || res.FinishReason != "stop" {
			t.Errorf("an answer of exactly max_output_bytes: %+v", res)
		}
	})
}
