package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/limitgraph/limit/internal/gguf"
	"github.com/limitgraph/limit/internal/llmtest"
	"github.com/limitgraph/limit/internal/testbin"
	"github.com/limitgraph/limit/sdk/client"
)

// The API keys of the llm runners. The daemon reads them from its environment through
// env() in the HCL file, as an operator would configure it.
const (
	openAIKeyEnv    = "LIMIT_E2E_OPENAI_KEY"
	anthropicKeyEnv = "LIMIT_E2E_ANTHROPIC_KEY"
	openAIKey       = "sk-e2e-openai-7c1f09d2b4e8a6355d0c"
	anthropicKey    = "sk-ant-e2e-51aa9e03f7c2d84b6e19"
)

// llamaLibDir returns the llama.cpp libraries `make llama-deps` unpacks (or the directory
// LIMIT_LLAMA_LIB_DIR names). Missing libraries fail the test rather than skip it, as in
// plugins/runner-llama: CI fetches them (.ci/setup.d/llama.sh), so a skip would hide a
// broken setup.
func llamaLibDir(t testing.TB) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	dir := filepath.Join(filepath.Dir(file), "..", "..", ".cache", "llama", "package", "bins", "linux-x64")
	if d := os.Getenv("LIMIT_LLAMA_LIB_DIR"); d != "" {
		dir = d
	}
	dir, _ = filepath.Abs(dir)
	var missing []string
	for _, lib := range []string{"libllama.so", "libggml.so", "libggml-base.so"} {
		if _, err := os.Stat(filepath.Join(dir, lib)); err != nil {
			missing = append(missing, lib)
		}
	}
	if len(missing) > 0 {
		t.Fatalf("llama.cpp libraries missing in %s (%s): run `make llama-deps` (npm pack of @node-llama-cpp/linux-x64@3.21.1) first",
			dir, strings.Join(missing, ", "))
	}
	return dir
}

// modelEnv is a running limitd with model runners and the fake providers behind them.
type modelEnv struct {
	*daemon
	dataDir   string
	openai    *llmtest.Server
	anthropic *llmtest.Server
}

// startModels starts limitd with these runners:
//   - llama: the tiny model; llama-b: the same architecture with other weights;
//     fragile: a model without byte tokens, on which llama.cpp aborts its process;
//   - llm: an OpenAI-compatible server, falling back to an Anthropic one;
//     claude: the Anthropic server alone.
func startModels(t *testing.T) *modelEnv {
	t.Helper()
	t.Setenv(openAIKeyEnv, openAIKey)
	t.Setenv(anthropicKeyEnv, anthropicKey)
	libDir := llamaLibDir(t)
	testbin.Plugin(t, "storage-bolt")
	testbin.Plugin(t, "runner-llama")
	testbin.Plugin(t, "runner-llm")

	models := t.TempDir()
	write := func(name string, m gguf.TinyLlama) string {
		p := filepath.Join(models, name+".gguf")
		if err := gguf.WriteTinyLlama(p, m); err != nil {
			t.Fatal(err)
		}
		return p
	}
	a := gguf.DefaultTinyLlama()
	b := gguf.DefaultTinyLlama()
	b.Name, b.Seed = "tiny-llama-b", 2
	nb := gguf.DefaultTinyLlama()
	nb.Name, nb.NoByteTokens = "tiny-no-bytes", true

	e := &modelEnv{
		dataDir:   t.TempDir(),
		openai:    llmtest.NewOpenAI(t, openAIKey),
		anthropic: llmtest.NewAnthropic(t, anthropicKey),
	}
	e.openai.SetDefault(llmtest.Step{Text: "Hello from the compatible server."})
	e.anthropic.SetDefault(llmtest.Step{Text: "Hello from the Anthropic server."})
	llama := func(name, model string) string {
		plugin := ""
		if name != "llama" {
			plugin = `plugin = "limit-runner-llama"`
		}
		return fmt.Sprintf(`runner %q {
  %s
  config {
    model        = %q
    library_dir  = %q
    threads      = 1
    context_size = 1024
    max_tokens   = 32
  }
}
`, name, plugin, model, libDir)
	}
	src := fmt.Sprintf(`host {
  listen     = "127.0.0.1:0"
  data_dir   = %q
  plugin_dir = %q
  log_level  = "trace"
}
storage "bolt" {}
%s%s%s
runner "llm" {
  config {
    provider = "openai-compatible"
    base_url = %q
    model    = "test-gpt"
    api_key  = env(%q)
    retries  = 0
    fallback = [{
      provider = "anthropic"
      model    = "test-claude"
      base_url = %q
      api_key  = env(%q)
    }]
    prices = {
      "test-gpt"    = { input = 1, output = 2 }
      "test-claude" = { input = 3, output = 15 }
    }
  }
}
runner "claude" {
  plugin = "limit-runner-llm"
  config {
    provider = "anthropic"
    model    = "test-claude"
    base_url = %q
    api_key  = env(%q)
    retries  = 0
  }
}
`, e.dataDir, testbin.PluginDir(t),
		llama("llama", write("tiny-a", a)), llama("llama-b", write("tiny-b", b)), llama("fragile", write("tiny-no-bytes", nb)),
		e.openai.BaseURL(), openAIKeyEnv, e.anthropic.BaseURL(), anthropicKeyEnv,
		e.anthropic.BaseURL(), anthropicKeyEnv)
	path := writeConfig(t, src)
	e.daemon = start(t, path)
	return e
}

// session creates a session that may reach the network (the hosted models need it).
func (e *modelEnv) session(t *testing.T, name string) *client.Session {
	t.Helper()
	s, err := e.c.CreateSession(ctx, client.CreateSessionRequest{Name: name, AllowNetwork: true})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// exec runs one execution and fails the test unless it answers 200.
func (e *modelEnv) exec(t *testing.T, s *client.Session, runner, input string, params map[string]any) *client.ExecutionResult {
	t.Helper()
	r, err := e.c.Execute(ctx, s.ID, client.ExecuteRequest{Runner: runner, Input: input, Params: params})
	if err != nil {
		t.Fatalf("%s %q %v: %v", runner, input, params, err)
	}
	return r
}

// ok runs one execution that must succeed.
func (e *modelEnv) ok(t *testing.T, s *client.Session, runner, input string, params map[string]any) *client.ExecutionResult {
	t.Helper()
	r := e.exec(t, s, runner, input, params)
	if r.Status != "ok" || r.Error != "" {
		t.Fatalf("%s %q %v: %+v", runner, input, params, r)
	}
	return r
}

// sseEvent is one server-sent event as it came over the wire.
type sseEvent struct {
	name string
	data string
	at   time.Duration // since the request was sent
}

// stream posts an execution with Accept: text/event-stream and returns every event
// with its arrival time, checking the response's framing on the way.
func (e *modelEnv) stream(t *testing.T, s *client.Session, req client.ExecuteRequest) []sseEvent {
	t.Helper()
	body, _ := json.Marshal(req)
	hreq, err := http.NewRequest("POST", e.url+"/v1/sessions/"+s.ID+"/executions", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	hreq.Header.Set("Content-Type", "application/json")
	hreq.Header.Set("Accept", "text/event-stream")
	sent := time.Now()
	res, err := http.DefaultClient.Do(hreq)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != 200 || res.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("stream: status %d, Content-Type %q", res.StatusCode, res.Header.Get("Content-Type"))
	}
	var out []sseEvent
	var cur sseEvent
	sc := bufio.NewScanner(res.Body)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if cur.name != "" {
				cur.at = time.Since(sent)
				out = append(out, cur)
			}
			cur = sseEvent{}
		case strings.HasPrefix(line, "event: "):
			cur.name = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			cur.data += strings.TrimPrefix(line, "data: ")
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// streamed splits events into the token texts and the final result, failing the test
// unless tokens come first and exactly one result ends the stream.
func streamed(t *testing.T, evs []sseEvent) ([]string, *client.ExecutionResult) {
	t.Helper()
	if len(evs) == 0 || evs[len(evs)-1].name != "result" {
		t.Fatalf("the stream does not end with a result event: %+v", evs)
	}
	var toks []string
	for _, ev := range evs[:len(evs)-1] {
		if ev.name != "token" {
			t.Fatalf("unexpected %q event before the result: %s", ev.name, ev.data)
		}
		var tok struct {
			Data string `json:"data"`
		}
		if err := json.Unmarshal([]byte(ev.data), &tok); err != nil {
			t.Fatalf("token event %q: %v", ev.data, err)
		}
		toks = append(toks, tok.Data)
	}
	var r client.ExecutionResult
	if err := json.Unmarshal([]byte(evs[len(evs)-1].data), &r); err != nil {
		t.Fatalf("result event %q: %v", evs[len(evs)-1].data, err)
	}
	return toks, &r
}

// tracedUsage returns the usage recorded in the trace's executed provenance entry.
func (e *modelEnv) tracedUsage(t *testing.T, traceID string) client.Usage {
	t.Helper()
	tv, err := e.c.GetTrace(ctx, traceID)
	if err != nil {
		t.Fatal(err)
	}
	for _, en := range tv.Provenance {
		if en.Kind != "executed" {
			continue
		}
		var data struct {
			Status string       `json:"status"`
			Usage  client.Usage `json:"usage"`
		}
		if err := json.Unmarshal(en.Data, &data); err != nil {
			t.Fatal(err)
		}
		return data.Usage
	}
	t.Fatalf("trace %s has no executed entry: %+v", traceID, tv.Provenance)
	return client.Usage{}
}

// sameCounts compares the token counts of two usages.
func sameCounts(a, b client.Usage) bool {
	return a.PromptTokens == b.PromptTokens && a.CompletionTokens == b.CompletionTokens && a.TotalTokens == b.TotalTokens
}

func p(kv ...any) map[string]any {
	m := map[string]any{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i].(string)] = kv[i+1]
	}
	return m
}

// TestModelRunnersThroughAPI drives the llama.cpp runner with generated models and the
// hosted-model runner against local OpenAI-compatible and Anthropic wire-format servers,
// all through the real limitd, then checks that neither API key appears in anything the
// daemon wrote or answered.
func TestModelRunnersThroughAPI(t *testing.T) {
	e := startModels(t)

	t.Run("llama answer with usage in the result and the trace", func(t *testing.T) {
		s := e.session(t, "llama")
		r := e.ok(t, s, "llama", "hello world", p("seed", 7.0, "max_tokens", 16.0, "ignore_eos", true))
		if r.Output == "" || r.Usage.CompletionTokens != 16 || r.Usage.PromptTokens == 0 ||
			r.Usage.TotalTokens != r.Usage.PromptTokens+16 || r.FinishReason != "length" {
			t.Fatalf("result %+v", r)
		}
		if r.Usage.Extra["tokens_per_second"] <= 0 || r.Usage.Extra["seed"] != 7 {
			t.Fatalf("usage lacks the speed or the seed: %+v", r.Usage)
		}
		if u := e.tracedUsage(t, r.TraceID); !sameCounts(u, r.Usage) {
			t.Fatalf("trace usage %+v, result usage %+v", u, r.Usage)
		}
	})

	t.Run("llama deterministic for a fixed seed", func(t *testing.T) {
		a, b := e.session(t, "det-a"), e.session(t, "det-b")
		req := p("seed", 11.0, "max_tokens", 24.0, "ignore_eos", true, "temperature", 0.9)
		first := e.ok(t, a, "llama", "the answer is", req).Output
		if again := e.ok(t, a, "llama", "the answer is", req).Output; again != first {
			t.Fatalf("same session, same seed: %q then %q", first, again)
		}
		if other := e.ok(t, b, "llama", "the answer is", req).Output; other != first {
			t.Fatalf("another session, same seed: %q and %q", first, other)
		}
		req["seed"] = 12.0
		if diff := e.ok(t, b, "llama", "the answer is", req).Output; diff == first {
			t.Fatalf("seeds 11 and 12 gave the same %q: the seed is not used", diff)
		}
	})

	t.Run("llama max_tokens", func(t *testing.T) {
		s := e.session(t, "max")
		for _, n := range []float64{1, 5} {
			r := e.ok(t, s, "llama", "hello", p("max_tokens", n, "ignore_eos", true, "seed", 1.0))
			if r.Usage.CompletionTokens != uint64(n) || r.FinishReason != "length" {
				t.Fatalf("max_tokens %v: %d tokens, finish %q", n, r.Usage.CompletionTokens, r.FinishReason)
			}
			// The trace's executed entry records why the answer ended.
			tv, err := e.c.GetTrace(ctx, r.TraceID)
			if err != nil {
				t.Fatal(err)
			}
			last := tv.Provenance[len(tv.Provenance)-1]
			var ex struct {
				FinishReason string `json:"finish_reason"`
			}
			if err := json.Unmarshal(last.Data, &ex); err != nil || last.Kind != "executed" || ex.FinishReason != "length" {
				t.Fatalf("executed entry %s %s: finish_reason %q (%v)", last.Kind, last.Data, ex.FinishReason, err)
			}
		}
		// Without params.max_tokens the config's max_tokens (32) applies.
		r := e.ok(t, s, "llama", "hello", p("ignore_eos", true, "seed", 1.0))
		if r.Usage.CompletionTokens != 32 {
			t.Fatalf("config max_tokens 32: %d tokens", r.Usage.CompletionTokens)
		}
	})

	t.Run("llama stream", func(t *testing.T) {
		s := e.session(t, "stream")
		req := p("seed", 5.0, "max_tokens", 12.0, "ignore_eos", true)
		toks, r := streamed(t, e.stream(t, s, client.ExecuteRequest{Runner: "llama", Input: "hello world", Params: req}))
		if r.Status != "ok" || r.Usage.CompletionTokens != 12 || len(toks) == 0 || len(toks) > 12 {
			t.Fatalf("%d token events, result %+v", len(toks), r)
		}
		if strings.Join(toks, "") != r.Output {
			t.Fatalf("token events spell %q, the result says %q", strings.Join(toks, ""), r.Output)
		}
		if plain := e.ok(t, s, "llama", "hello world", req); plain.Output != r.Output {
			t.Fatalf("streamed %q, plain %q", r.Output, plain.Output)
		}
		if u := e.tracedUsage(t, r.TraceID); !sameCounts(u, r.Usage) {
			t.Fatalf("trace usage %+v, result usage %+v", u, r.Usage)
		}
	})

	t.Run("llama chat", func(t *testing.T) {
		s := e.session(t, "chat")
		msgs := []any{
			map[string]any{"role": "system", "content": "you are a model"},
			map[string]any{"role": "user", "content": "hello"},
		}
		chat := e.ok(t, s, "llama", "", p("messages", msgs, "max_tokens", 8.0, "seed", 1.0))
		plain := e.ok(t, s, "llama", "hello", p("max_tokens", 8.0, "seed", 1.0))
		// The ChatML template wraps the two messages in role markers: far more prompt
		// tokens than the bare word.
		if chat.Usage.PromptTokens <= plain.Usage.PromptTokens+4 {
			t.Fatalf("chat prompt has %d tokens, the plain one %d: the template was not applied",
				chat.Usage.PromptTokens, plain.Usage.PromptTokens)
		}
		r := e.exec(t, s, "llama", "", p("messages", []any{map[string]any{"role": "user"}}))
		if r.Status == "ok" || !strings.Contains(r.Error, "params.messages[0]") {
			t.Fatalf("a bad chat role was not refused clearly: %+v", r)
		}
	})

	t.Run("two sessions with different models at once", func(t *testing.T) {
		a, b := e.session(t, "model-a"), e.session(t, "model-b")
		req := p("seed", 3.0, "max_tokens", 96.0, "ignore_eos", true)
		// Each model alone first, in sessions of their own.
		want := map[string]string{
			"llama":   e.ok(t, e.session(t, "alone-a"), "llama", "hello world", req).Output,
			"llama-b": e.ok(t, e.session(t, "alone-b"), "llama-b", "hello world", req).Output,
		}
		if want["llama"] == want["llama-b"] {
			t.Fatalf("both models give %q; the test cannot tell them apart", want["llama"])
		}
		got := map[string]string{}
		var mu sync.Mutex
		var wg sync.WaitGroup
		for runner, s := range map[string]*client.Session{"llama": a, "llama-b": b} {
			wg.Go(func() {
				r, err := e.c.Execute(ctx, s.ID, client.ExecuteRequest{Runner: runner, Input: "hello world", Params: req})
				if err != nil || r.Status != "ok" {
					t.Errorf("%s: %v %+v", runner, err, r)
					return
				}
				mu.Lock()
				got[runner] = r.Output
				mu.Unlock()
			})
		}
		wg.Wait()
		for runner := range want {
			if got[runner] != want[runner] {
				t.Errorf("%s concurrently gave %q, alone %q", runner, got[runner], want[runner])
			}
		}
		h, err := e.c.Health(ctx)
		if err != nil {
			t.Fatal(err)
		}
		pids := map[string]int{}
		for _, pl := range h.Plugins {
			if pl.Kind == "runner" && (pl.Session == a.ID || pl.Session == b.ID) {
				pids[pl.Session] = pl.PID
			}
		}
		if len(pids) != 2 || pids[a.ID] == pids[b.ID] {
			t.Fatalf("the two sessions' runner processes: %v (health %+v)", pids, h.Plugins)
		}
	})

	t.Run("openai-compatible answer", func(t *testing.T) {
		s := e.session(t, "llm")
		n := len(e.openai.Requests())
		r := e.ok(t, s, "llm", "say hello", nil)
		if r.Output != "Hello from the compatible server." || r.Usage.PromptTokens == 0 || r.Usage.CompletionTokens != 5 {
			t.Fatalf("result %+v", r)
		}
		if r.Usage.Extra["cost_usd"] <= 0 || r.Usage.Extra["fallback"] != 0 {
			t.Fatalf("usage lacks the cost or used a fallback: %+v", r.Usage.Extra)
		}
		if u := e.tracedUsage(t, r.TraceID); !sameCounts(u, r.Usage) || u.Extra["cost_usd"] != r.Usage.Extra["cost_usd"] {
			t.Fatalf("trace usage %+v, result usage %+v", u, r.Usage)
		}
		reqs := e.openai.Requests()[n:]
		if len(reqs) != 1 || reqs[0].Model != "test-gpt" || reqs[0].Header.Get("Authorization") != "Bearer "+openAIKey {
			t.Fatalf("the server got %+v", reqs)
		}
	})

	t.Run("openai-compatible stream, max_tokens and chat", func(t *testing.T) {
		s := e.session(t, "llm-stream")
		e.openai.Push(llmtest.Step{Text: "one two three four", ChunkDelay: 5 * time.Millisecond})
		n := len(e.openai.Requests())
		msgs := []any{
			map[string]any{"role": "system", "content": "be brief"},
			map[string]any{"role": "user", "content": "count"},
		}
		evs := e.stream(t, s, client.ExecuteRequest{Runner: "llm", Params: p("messages", msgs, "max_tokens", 7.0)})
		toks, r := streamed(t, evs)
		if r.Status != "ok" || strings.Join(toks, "|") != "one |two |three |four" || r.Output != "one two three four" {
			t.Fatalf("tokens %q, result %+v", toks, r)
		}
		if evs[0].at >= evs[len(evs)-1].at {
			t.Fatalf("the first token came with the result: %v, %v", evs[0].at, evs[len(evs)-1].at)
		}
		req := e.openai.Requests()[n]
		if !req.Stream || req.JSON["max_tokens"] != 7.0 {
			t.Fatalf("the server got stream=%v max_tokens=%v", req.Stream, req.JSON["max_tokens"])
		}
		got, _ := json.Marshal(req.JSON["messages"])
		if string(got) != `[{"content":"be brief","role":"system"},{"content":"count","role":"user"}]` {
			t.Fatalf("messages sent: %s", got)
		}
		if u := e.tracedUsage(t, r.TraceID); u.CompletionTokens != 4 || !sameCounts(u, r.Usage) {
			t.Fatalf("trace usage %+v, result usage %+v", u, r.Usage)
		}
	})

	t.Run("anthropic answer and stream", func(t *testing.T) {
		s := e.session(t, "claude")
		r := e.ok(t, s, "claude", "say hello", p("max_tokens", 9.0))
		if r.Output != "Hello from the Anthropic server." || r.Usage.CompletionTokens != 5 || r.Usage.PromptTokens == 0 {
			t.Fatalf("result %+v", r)
		}
		last := e.anthropic.Requests()[len(e.anthropic.Requests())-1]
		// The SDK sends the key as x-api-key or, in recent versions, as a bearer token.
		key := last.Header.Get("X-Api-Key")
		if key == "" {
			key = strings.TrimPrefix(last.Header.Get("Authorization"), "Bearer ")
		}
		if key != anthropicKey || last.JSON["max_tokens"] != 9.0 {
			t.Fatalf("the server got the key: %v, max_tokens %v", key == anthropicKey, last.JSON["max_tokens"])
		}
		toks, sr := streamed(t, e.stream(t, s, client.ExecuteRequest{Runner: "claude", Input: "again"}))
		if len(toks) != 5 || sr.Output != strings.Join(toks, "") || sr.Usage.CompletionTokens != 5 {
			t.Fatalf("tokens %q, result %+v", toks, sr)
		}
		if u := e.tracedUsage(t, sr.TraceID); !sameCounts(u, sr.Usage) {
			t.Fatalf("trace usage %+v, result usage %+v", u, sr.Usage)
		}
	})

	t.Run("provider errors carrying the key", func(t *testing.T) {
		s := e.session(t, "errors")
		// The compatible server fails with the key in its message; the Anthropic
		// fallback answers.
		e.openai.Push(llmtest.Step{Status: 500, ErrorMessage: "upstream broke", EchoCredentials: true})
		r := e.ok(t, s, "llm", "hello", nil)
		if r.Output != "Hello from the Anthropic server." || r.Usage.Extra["fallback"] != 1 {
			t.Fatalf("fallback: %+v", r)
		}
		// The Anthropic server refuses, echoing the key: the error reaches the user
		// without it.
		e.anthropic.Push(llmtest.Step{Status: 400, ErrorMessage: "prompt is too long", EchoCredentials: true})
		r = e.exec(t, s, "claude", "hello", nil)
		if r.Status != "error" || !strings.Contains(r.Error, "prompt is too long") || !strings.Contains(r.Error, "400") {
			t.Fatalf("refused request: %+v", r)
		}
	})

	// Everything the daemon wrote or answered, with the sessions' runners still alive.
	var seen bytes.Buffer
	for _, path := range []string{"/v1/health", "/health", "/v1/sessions?per_page=100"} {
		status, _, body := e.raw("GET", path, "", nil)
		b, _ := json.Marshal(body)
		fmt.Fprintf(&seen, "%s %d %s\n", path, status, b)
	}
	l, err := e.c.ListSessions(ctx, 100, "")
	if err != nil {
		t.Fatal(err)
	}
	traces := 0
	for _, s := range l.Sessions {
		tl, err := e.c.ListTraces(ctx, s.ID, 100, "")
		if err != nil {
			t.Fatal(err)
		}
		for _, tr := range tl.Traces {
			_, _, body := e.raw("GET", "/v1/traces/"+tr.ID, "", nil)
			b, _ := json.Marshal(body)
			seen.Write(b)
			traces++
		}
	}
	if traces < 20 {
		t.Fatalf("only %d traces to search", traces)
	}
	e.stop()
	if !strings.Contains(e.stderr.String(), "[TRACE]") {
		t.Fatal("the daemon logged nothing at trace level; the search would prove little")
	}
	seen.WriteString(e.stderr.String())
	err = filepath.WalkDir(e.dataDir, func(path string, de fs.DirEntry, err error) error {
		if err != nil || de.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		seen.Write(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{openAIKey, anthropicKey} {
		for _, part := range []string{key, key[len(key)-12:]} {
			if i := bytes.Index(seen.Bytes(), []byte(part)); i >= 0 {
				t.Errorf("API key material %q found in what the daemon wrote: …%s…", part, seen.Bytes()[max(0, i-200):i])
			}
		}
	}
}

// TestLlamaAbortThroughAPI runs a model without byte tokens: llama.cpp aborts its plugin
// process on text the vocabulary cannot spell. Only that execution fails, with an error
// that says what happened; the daemon stays up, another session running meanwhile keeps
// working, and the session itself gets a fresh process.
func TestLlamaAbortThroughAPI(t *testing.T) {
	e := startModels(t)
	fragile, other := e.session(t, "fragile"), e.session(t, "other")
	e.ok(t, fragile, "fragile", "hello world", p("max_tokens", 4.0, "seed", 1.0))
	e.ok(t, other, "llama", "hello world", p("max_tokens", 4.0, "seed", 1.0))
	var pidBefore int
	h, err := e.c.Health(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, pl := range h.Plugins {
		if pl.Session == fragile.ID {
			pidBefore = pl.PID
		}
	}
	if pidBefore == 0 {
		t.Fatalf("health lists no runner process of the fragile session: %+v", h.Plugins)
	}

	// The other session generates while the fragile one crashes.
	done := make(chan *client.ExecutionResult, 1)
	go func() {
		r, err := e.c.Execute(ctx, other.ID, client.ExecuteRequest{Runner: "llama", Input: "hello é", Params: p("max_tokens", 256.0, "ignore_eos", true)})
		if err != nil {
			t.Error(err)
		}
		done <- r
	}()
	r := e.exec(t, fragile, "fragile", "hello é", p("max_tokens", 4.0))
	if r.Status != "error" || !r.StateReset || r.ExitCode != -1 ||
		!strings.Contains(r.Error, `runner "fragile" process died during the execution`) || !strings.Contains(r.Error, "fresh process") {
		t.Fatalf("the aborted execution: %+v", r)
	}
	t.Logf("error the client reads: %s", r.Error)
	if o := <-done; o == nil || o.Status != "ok" || o.Usage.CompletionTokens != 256 {
		t.Fatalf("the other session during the crash: %+v", o)
	}
	// Health lists the dead process, unhealthy, while the host itself stays healthy: a
	// session's runner crash is that session's business.
	for deadline := time.Now().Add(10 * time.Second); ; {
		status, _, body := e.raw("GET", "/v1/health", "", nil)
		if status != 200 || body["status"] != "ok" {
			t.Fatalf("health after the crash: %d %v", status, body)
		}
		listed := false
		for _, pl := range body["plugins"].([]any) {
			pl := pl.(map[string]any)
			listed = listed || (pl["session"] == fragile.ID && pl["healthy"] == false)
		}
		if listed {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("health does not show the dead runner process: %v", body)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The trace records the failure.
	tv, err := e.c.GetTrace(ctx, r.TraceID)
	if err != nil {
		t.Fatal(err)
	}
	var executed struct {
		Status string `json:"status"`
		Error  string `json:"error"`
	}
	last := tv.Provenance[len(tv.Provenance)-1]
	if err := json.Unmarshal(last.Data, &executed); err != nil || last.Kind != "executed" ||
		executed.Status != "error" || executed.Error != r.Error {
		t.Fatalf("trace of the aborted execution: %s %s", last.Kind, last.Data)
	}
	// The same session works again in a fresh process; so does a new one.
	e.ok(t, fragile, "fragile", "hello world", p("max_tokens", 4.0, "seed", 1.0))
	h, err = e.c.Health(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, pl := range h.Plugins {
		if pl.Session == fragile.ID && (pl.PID == pidBefore || !pl.Healthy) {
			t.Fatalf("the session's runner after the crash: %+v (pid before %d)", pl, pidBefore)
		}
	}
	e.ok(t, e.session(t, "after"), "fragile", "the answer", p("max_tokens", 4.0))
	// A request a runner refuses is an execution error, while one the host cannot run
	// at all is a problem+json.
	status, hdr, body := e.raw("POST", "/v1/sessions/"+fragile.ID+"/executions", "application/json",
		[]byte(`{"runner": "nope", "input": "x"}`))
	mustProblem(t, status, hdr, body, 400)
	e.stop()
	logs := e.stderr.String()
	for _, want := range []string{"runner process died", "std::out_of_range", "without the 256 byte tokens"} {
		if !strings.Contains(logs, want) {
			t.Errorf("the daemon's log lacks %q", want)
		}
	}
}
