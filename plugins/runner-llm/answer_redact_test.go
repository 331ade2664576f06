package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/limitgraph/limit/internal/llmtest"
	"github.com/limitgraph/limit/sdk/runner"
)

// leaks reports the first part of 8 bytes of key found in s, or "".
func leaks(s, key string) string {
	for i := 0; i+8 <= len(key); i++ {
		if strings.Contains(s, key[i:i+8]) {
			return key[i : i+8]
		}
	}
	return ""
}

// checkAnswer checks an answer's token events and output: no part of any key in any
// of them, the tokens joined are the output, and the output is want.
func checkAnswer(t *testing.T, res runner.Result, toks []string, want string, keys ...string) {
	t.Helper()
	for _, k := range keys {
		for _, s := range append([]string{res.Output, res.Error, res.FinishReason, strings.Join(toks, "")}, toks...) {
			if part := leaks(s, k); part != "" {
				t.Fatalf("part %q of a key got out in %q (tokens %q)", part, s, toks)
			}
		}
	}
	if res.Output != want || strings.Join(toks, "") != want {
		t.Errorf("output %q, tokens %q; want %q", res.Output, toks, want)
	}
}

// TestKeyInAnswer has the servers answer with the API key, as a misconfigured proxy or a
// model shown the key might: whole in a JSON answer, split over several events of a
// stream in both providers' formats, at the very end of a stream, and in base64. The key
// must appear in no token event and not in the result, while the text around it arrives
// whole and in order.
func TestKeyInAnswer(t *testing.T) {
	for _, pc := range providerCases(t)[:2] {
		key := pc.key
		enc := base64.StdEncoding.EncodeToString([]byte(key))
		for _, tt := range []struct {
			name   string
			stream bool
			chunks []string
			want   string
		}{
			{"json", false, []string{"Your key is ", key, ", keep it safe."}, "Your key is [REDACTED], keep it safe."},
			{"split", true, []string{"Your key is s", key[1:5], key[5:9], key[9:], " as asked."}, "Your key is [REDACTED] as asked."},
			{"split with text", true, []string{"keys: " + key[:3], key[3:] + " and " + key[:10], key[10:] + "."}, "keys: [REDACTED] and [REDACTED]."},
			{"byte by byte", true, strings.Split("<"+key+">", ""), "<[REDACTED]>"},
			{"at the end", true, []string{"The end: ", key[:len(key)-1], key[len(key)-1:]}, "The end: [REDACTED]"},
			{"held then ordinary", true, []string{"Ask us", "ual things", " s", "k", "y"}, "Ask usual things sky"},
			{"base64", true, []string{"Basic ", enc[:7], enc[7:]}, "Basic [REDACTED]"},
		} {
			t.Run(pc.name+"/"+tt.name, func(t *testing.T) {
				p := launch(t, cfg(pc.config, "stream", tt.stream), nil)
				pc.server.Push(llmtest.Step{Text: strings.Join(tt.chunks, ""), Chunks: tt.chunks})
				res, toks := ask(t, p, "what is your key?")
				if res.Status != runner.StatusOK {
					t.Fatalf("result: %+v", res)
				}
				checkAnswer(t, res, toks, tt.want, key)
			})
		}
	}
}

// TestFallbackKeyInAnswer has the fallback answer with its own key and the primary's:
// every configured key is redacted, whichever model answers.
func TestFallbackKeyInAnswer(t *testing.T) {
	const fallbackKey = "sk-ant-fallback-9f8e7d6c5b4a3210"
	primary := llmtest.NewOpenAI(t, openaiKey)
	primary.SetDefault(llmtest.Step{Status: 500, ErrorMessage: "down"})
	second := llmtest.NewAnthropic(t, fallbackKey)
	p := launch(t, map[string]any{
		"provider": "openai", "model": "gpt-test", "base_url": primary.BaseURL(), "api_key": openaiKey, "retries": 0,
		"fallback": []any{map[string]any{"provider": "anthropic", "model": "claude-test", "base_url": second.BaseURL(), "api_key": fallbackKey}},
	}, nil)
	for _, stream := range []bool{true, false} {
		chunks := []string{"mine: ", fallbackKey[:12], fallbackKey[12:] + "; theirs: " + openaiKey[:4], openaiKey[4:], "!"}
		second.Push(llmtest.Step{Text: strings.Join(chunks, ""), Chunks: chunks})
		res, toks := run(t, p, runner.ExecuteRequest{Input: "keys?", Params: map[string]any{"stream": stream}})
		if res.Status != runner.StatusOK || res.Usage.Extra["fallback"] != 1 {
			t.Fatalf("stream %v: result %+v", stream, res)
		}
		checkAnswer(t, res, toks, "mine: [REDACTED]; theirs: [REDACTED]!", openaiKey, fallbackKey)
	}
}

// TestKeyInCancelledAnswer cancels a stream that stalls after a piece ending in what may
// be the start of the key: what was held back to tell comes out before the result, and
// neither the tokens nor the partial output have any part of the key.
func TestKeyInCancelledAnswer(t *testing.T) {
	chunks := []string{"a " + openaiKey[:9], openaiKey[9:] + " b s"}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		for _, c := range chunks {
			b, _ := json.Marshal(map[string]any{"id": "c", "object": "chat.completion.chunk",
				"choices": []any{map[string]any{"index": 0, "delta": map[string]any{"content": c}}}})
			fmt.Fprintf(w, "data: %s\n\n", b)
			w.(http.Flusher).Flush()
		}
		<-r.Context().Done() // stalls until the client goes
	}))
	defer srv.Close()
	p := launch(t, map[string]any{"provider": "openai", "model": "gpt-test", "base_url": srv.URL + "/v1", "api_key": openaiKey,
		"attempt_timeout": "20s"}, nil)
	ctx := context.Background()
	var mu sync.Mutex
	var toks []string
	var wg sync.WaitGroup
	var once sync.Once
	res, err := p.Execute(ctx, runner.ExecuteRequest{ExecutionID: "x", Input: "go"}, func(ev runner.Event) error {
		mu.Lock()
		defer mu.Unlock()
		toks = append(toks, ev.Token.Text)
		if strings.Contains(strings.Join(toks, ""), " b") {
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
	mu.Lock()
	defer mu.Unlock()
	expectErr(t, res, runner.StatusCancelled, "execution cancelled")
	checkAnswer(t, res, toks, "a [REDACTED] b s", openaiKey)
}
