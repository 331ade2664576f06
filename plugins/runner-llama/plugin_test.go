package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hybridgroup/yzma/pkg/llama"

	"github.com/limitgraph/limit/host/plugins"
	"github.com/limitgraph/limit/host/version"
	"github.com/limitgraph/limit/internal/gguf"
	"github.com/limitgraph/limit/sdk/base"
	"github.com/limitgraph/limit/sdk/runner"
)

// TestGenerateStreamsTokens runs a completion through the real plugin binary and checks
// the stream against the result: every token arrives as a Token event, the events add
// up to the output, and the usage counts and speeds are filled in.
func TestGenerateStreamsTokens(t *testing.T) {
	r := launch(t, map[string]any{"model": tiny(t), "threads": 1})
	res, toks := run(t, r, runner.ExecuteRequest{
		ExecutionID: "e1", Input: "hello world, what is the answer?",
		Params: params("max_tokens", 24.0, "seed", 7.0, "ignore_eos", true),
	})
	if res.Status != runner.StatusOK || res.Error != "" {
		t.Fatalf("result: %+v", res)
	}
	if got := joined(toks); got != res.Output || got == "" {
		t.Errorf("streamed tokens %q differ from the output %q", got, res.Output)
	}
	u := res.Usage
	if u.CompletionTokens != 24 || res.FinishReason != "length" {
		t.Errorf("completion tokens %d, finish %q; want 24, length", u.CompletionTokens, res.FinishReason)
	}
	// Byte tokens of an incomplete character are held back, so there may be fewer
	// events than tokens, never more.
	if len(toks) == 0 || len(toks) > 24 {
		t.Errorf("%d token events for 24 tokens", len(toks))
	}
	if u.PromptTokens < 5 || u.TotalTokens != u.PromptTokens+u.CompletionTokens {
		t.Errorf("usage: %+v", u)
	}
	for _, k := range []string{"tokens_per_second", "time_to_first_token_ms", "prompt_ms", "generation_ms"} {
		if u.Extra[k] <= 0 {
			t.Errorf("usage.extra[%s] = %v, want > 0", k, u.Extra[k])
		}
	}
	if u.Extra["seed"] != 7 {
		t.Errorf("usage.extra[seed] = %v, want 7", u.Extra["seed"])
	}
	if res.Duration <= 0 {
		t.Errorf("duration %v", res.Duration)
	}
	t.Logf("%d tokens at %.0f tokens/s: %q", u.CompletionTokens, u.Extra["tokens_per_second"], res.Output)
}

// sample is the sampling used by tests that compare outputs.
func sample(seed int64, maxTokens int) sampling {
	return sampling{Temperature: 0.8, TopP: 0.95, TopK: 40, Seed: seed, MaxTokens: maxTokens}
}

// TestDeterministicForFixedSeed checks that a fixed seed gives the same output twice in
// one process, in a fresh process, and in-process through yzma with the same model; and
// that another seed gives another output.
func TestDeterministicForFixedSeed(t *testing.T) {
	const input = "the llama says"
	req := func(seed float64) runner.ExecuteRequest {
		return runner.ExecuteRequest{Input: input, Params: params("seed", seed, "max_tokens", 32.0, "ignore_eos", true)}
	}
	a := launch(t, map[string]any{"model": tiny(t), "threads": 1})
	first, _ := run(t, a, req(42))
	again, _ := run(t, a, req(42))
	other, _ := run(t, a, req(43))
	b := launch(t, map[string]any{"model": tiny(t), "threads": 1})
	fresh, _ := run(t, b, req(42))
	if first.Output == "" || first.Output != again.Output || first.Output != fresh.Output {
		t.Errorf("seed 42 gave different outputs:\n first %q\n again %q\n fresh process %q", first.Output, again.Output, fresh.Output)
	}
	if other.Output == first.Output {
		t.Errorf("seeds 42 and 43 gave the same output %q", first.Output)
	}
	ref := inProcess(t, tiny(t), 1).completion(t, input, sample(42, 32), true)
	if ref.text != first.Output {
		t.Errorf("in-process yzma gave %q, the plugin %q", ref.text, first.Output)
	}
	// The config's seed is the default of requests that give none.
	c := launch(t, map[string]any{"model": tiny(t), "threads": 1, "seed": 42, "max_tokens": 32})
	def, _ := run(t, c, runner.ExecuteRequest{Input: input, Params: params("ignore_eos", true)})
	if def.Output != first.Output {
		t.Errorf("config seed 42 gave %q, params seed 42 gave %q", def.Output, first.Output)
	}
}

// TestMaxTokensHonoured checks that generation stops at max_tokens (from params or the
// config) and at the end of the context, with finish reason "length", and that without
// ignore_eos it may stop earlier with "stop" but never later.
func TestMaxTokensHonoured(t *testing.T) {
	r := launch(t, map[string]any{"model": tiny(t), "threads": 1, "max_tokens": 3, "context_size": 256})
	for _, tt := range []struct {
		name   string
		params map[string]any
		want   uint64 // exact count, or the most when exact is false
		exact  bool
		finish string
	}{
		{"one", params("max_tokens", 1.0, "ignore_eos", true), 1, true, "length"},
		{"seventeen", params("max_tokens", 17.0, "ignore_eos", true), 17, true, "length"},
		{"config default", params("ignore_eos", true), 3, true, "length"},
		{"context end", params("max_tokens", 1000.0, "ignore_eos", true), 0, true, "length"},
		{"eos allowed", params("max_tokens", 40.0, "seed", 1.0), 40, false, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			res, toks := run(t, r, runner.ExecuteRequest{Input: "one two three", Params: tt.params})
			if res.Status != runner.StatusOK {
				t.Fatalf("result %+v", res)
			}
			got := res.Usage.CompletionTokens
			want := tt.want
			if tt.name == "context end" {
				want = 256 - res.Usage.PromptTokens
			}
			switch {
			case tt.exact && got != want:
				t.Errorf("generated %d tokens, want %d", got, want)
			case !tt.exact && got > want:
				t.Errorf("generated %d tokens, want at most %d", got, want)
			}
			if tt.finish != "" && res.FinishReason != tt.finish {
				t.Errorf("finish reason %q, want %q", res.FinishReason, tt.finish)
			}
			if !tt.exact && (got < want) != (res.FinishReason == "stop") {
				t.Errorf("%d of %d tokens with finish reason %q", got, want, res.FinishReason)
			}
			if joined(toks) != res.Output {
				t.Errorf("stream %q != output %q", joined(toks), res.Output)
			}
		})
	}
}

// TestCancelMidStream cancels a long generation after its first tokens arrived: the
// result says cancelled, keeps the output so far, and the session goes on working.
func TestCancelMidStream(t *testing.T) {
	r := launch(t, map[string]any{"model": tiny(t), "threads": 1})
	ctx := context.Background()
	var (
		mu   sync.Mutex
		toks []runner.Token
		once sync.Once
	)
	cancelled := make(chan bool, 1)
	res, err := r.Execute(ctx, runner.ExecuteRequest{
		ExecutionID: "long", Input: "write a story",
		Params: params("max_tokens", 4000.0, "ignore_eos", true),
	}, func(ev runner.Event) error {
		mu.Lock()
		toks = append(toks, *ev.Token)
		n := len(toks)
		mu.Unlock()
		if n == 5 {
			once.Do(func() {
				go func() {
					found, err := r.Cancel(ctx, "long")
					if err != nil {
						t.Error(err)
					}
					cancelled <- found
				}()
			})
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !<-cancelled {
		t.Error("Cancel did not find the running execution")
	}
	if res.Status != runner.StatusCancelled || res.FinishReason != "cancelled" || !strings.Contains(res.Error, "cancelled after") {
		t.Errorf("result: status %v finish %q error %q", res.Status, res.FinishReason, res.Error)
	}
	n := res.Usage.CompletionTokens
	if n < 5 || n >= 4000 {
		t.Errorf("%d tokens generated, want from 5 to well below 4000", n)
	}
	mu.Lock()
	if joined(toks) != res.Output {
		t.Errorf("stream %q != output %q", joined(toks), res.Output)
	}
	mu.Unlock()
	if found, _ := r.Cancel(ctx, "long"); found {
		t.Error("Cancel found an execution that has ended")
	}
	after, _ := run(t, r, runner.ExecuteRequest{Input: "hello", Params: params("max_tokens", 4.0, "ignore_eos", true)})
	if after.Status != runner.StatusOK || after.Usage.CompletionTokens != 4 {
		t.Errorf("execution after a cancel: %+v", after)
	}
	t.Logf("cancelled after %d tokens", n)
}

// TestTimeoutStopsGeneration checks the execution timeout and the session's.
func TestTimeoutStopsGeneration(t *testing.T) {
	long := gguf.DefaultTinyLlama()
	long.ContextLength = 8192
	r := launch(t, map[string]any{"model": testModel(t, long), "threads": 1, "context_size": 8192})
	res, _ := run(t, r, runner.ExecuteRequest{
		Input: "go", Timeout: 30 * time.Millisecond,
		Params: params("max_tokens", 8000.0, "ignore_eos", true),
	})
	if res.Status != runner.StatusTimeout || res.FinishReason != "timeout" ||
		!strings.Contains(res.Error, "timeout of 30ms") || res.Usage.CompletionTokens >= 8000 {
		t.Errorf("result: status %v finish %q error %q tokens %d", res.Status, res.FinishReason, res.Error, res.Usage.CompletionTokens)
	}
}

// TestConfiguredTimeout: the config's timeout (60s by default) is reported to the host as
// the limit a session that sets none gets, which a user's token may not raise, and as the
// open session's timeout, which the host gives an execution that names none; an execution
// the host sends without a timeout still stops at it, as at any other timeout.
func TestConfiguredTimeout(t *testing.T) {
	ctx := context.Background()
	long := gguf.DefaultTinyLlama()
	long.ContextLength = 8192
	model := testModel(t, long)
	for _, tt := range []struct {
		cfg  map[string]any
		want time.Duration
	}{
		{map[string]any{"model": model}, 60 * time.Second},
		{map[string]any{"model": model, "timeout": "50ms"}, 50 * time.Millisecond},
	} {
		p, err := plugins.Launch(ctx, spec(t, "llama", tt.cfg), nil)
		if err != nil {
			t.Fatal(err)
		}
		l, reported, err := p.ReportedLimits(ctx)
		p.Kill()
		if err != nil || !reported || l != (runner.Limits{Timeout: tt.want}) {
			t.Errorf("config %v: reported limits %+v, %v, %v; want a timeout of %v", tt.cfg, l, reported, err, tt.want)
		}
	}

	r := launch(t, map[string]any{"model": model, "threads": 1, "context_size": 8192, "timeout": "50ms"})
	if l := r.Runner.(runner.SessionLimiter).SessionLimits(); l != (runner.Limits{Timeout: 50 * time.Millisecond}) {
		t.Errorf("session limits %+v, want the configured timeout", l)
	}
	res, _ := run(t, r, runner.ExecuteRequest{Input: "go", Params: params("max_tokens", 8000.0, "ignore_eos", true)})
	if res.Status != runner.StatusTimeout || res.FinishReason != "timeout" ||
		!strings.Contains(res.Error, "timeout of 50ms") || res.Usage.CompletionTokens >= 8000 {
		t.Errorf("result: status %v finish %q error %q tokens %d", res.Status, res.FinishReason, res.Error, res.Usage.CompletionTokens)
	}
}

// TestChatTemplateApplied checks that params.messages go through the model's chat
// template: the prompt has exactly the tokens of the ChatML rendering (control tokens
// included), and the output is what the same rendering gives in-process.
func TestChatTemplateApplied(t *testing.T) {
	r := launch(t, map[string]any{"model": tiny(t), "threads": 1})
	msgs := []any{
		map[string]any{"role": "system", "content": "you are a llama"},
		map[string]any{"role": "user", "content": "say hello"},
	}
	res, _ := run(t, r, runner.ExecuteRequest{Params: params("messages", msgs, "seed", 5.0, "max_tokens", 16.0, "ignore_eos", true)})
	if res.Status != runner.StatusOK {
		t.Fatalf("chat: %+v", res)
	}
	const rendered = "<|im_start|>system\nyou are a llama<|im_end|>\n<|im_start|>user\nsay hello<|im_end|>\n<|im_start|>assistant\n"
	e := inProcess(t, tiny(t), 1)
	want := e.model.tokenize(rendered, true, true)
	if !slices.Contains(want, llama.Token(e.model.tokenize("<|im_start|>", false, true)[0])) {
		t.Fatalf("the reference tokenization has no <|im_start|> control token: %v", want)
	}
	if res.Usage.PromptTokens != uint64(len(want)) {
		t.Errorf("chat prompt has %d tokens, the ChatML rendering %d", res.Usage.PromptTokens, len(want))
	}
	ref := e.generate(t, want, sample(5, 16), true)
	if ref.text != res.Output {
		t.Errorf("chat output %q, in-process output of the rendering %q", res.Output, ref.text)
	}
	// The input, when given too, is the last user message.
	res2, _ := run(t, r, runner.ExecuteRequest{Input: "say hello", Params: params("messages", msgs[:1], "seed", 5.0, "max_tokens", 16.0, "ignore_eos", true)})
	if res2.Output != res.Output || res2.Usage.PromptTokens != res.Usage.PromptTokens {
		t.Errorf("messages+input gave %q (%d prompt tokens), messages alone %q (%d)",
			res2.Output, res2.Usage.PromptTokens, res.Output, res.Usage.PromptTokens)
	}

	// A model without a chat template refuses a chat with an error that says what to do.
	plain := gguf.DefaultTinyLlama()
	plain.ChatTemplate = ""
	p := launch(t, map[string]any{"model": testModel(t, plain)})
	res3, _ := run(t, p, runner.ExecuteRequest{Params: params("messages", msgs)})
	if res3.Status != runner.StatusError || !strings.Contains(res3.Error, "has no chat template") ||
		!strings.Contains(res3.Error, "send the prompt as input") {
		t.Errorf("chat without template: %+v", res3)
	}
}

// TestStopStrings checks that a stop string ends generation, is left out of the output,
// and that no part of it is streamed.
func TestStopStrings(t *testing.T) {
	r := launch(t, map[string]any{"model": tiny(t), "threads": 1})
	p := params("seed", 11.0, "max_tokens", 40.0, "ignore_eos", true)
	full, _ := run(t, r, runner.ExecuteRequest{Input: "hello", Params: p})
	// Pick a stop string from the middle of the deterministic output.
	text := full.Output
	runes := []rune(text)
	if len(runes) < 12 {
		t.Fatalf("output too short to test: %q", text)
	}
	stop := string(runes[len(runes)/2 : len(runes)/2+3])
	cut := strings.Index(text, stop)
	p["stop"] = []any{"never appears \x01", stop}
	res, toks := run(t, r, runner.ExecuteRequest{Input: "hello", Params: p})
	if res.Output != text[:cut] || res.FinishReason != "stop" {
		t.Errorf("with stop %q: output %q finish %q, want %q stop", stop, res.Output, res.FinishReason, text[:cut])
	}
	if joined(toks) != res.Output {
		t.Errorf("stream %q != output %q: part of the stop string was streamed", joined(toks), res.Output)
	}
}

// TestOutputLimit checks the session's max_output_bytes.
func TestOutputLimit(t *testing.T) {
	logger, _ := testLogger()
	ctx := context.Background()
	p, err := plugins.Launch(ctx, spec(t, "llama", map[string]any{"model": tiny(t)}), logger)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Kill()
	if err := p.Configure(ctx, false); err != nil {
		t.Fatal(err)
	}
	r := p.Impl.(runner.Runner)
	if err := r.OpenSession(ctx, runner.Session{ID: "limited", Limits: runner.Limits{MaxOutputBytes: 10}}); err != nil {
		t.Fatal(err)
	}
	res, toks := run(t, r, runner.ExecuteRequest{Input: "hello", Params: params("max_tokens", 200.0, "ignore_eos", true)})
	if !res.Truncated || len(res.Output) > 10 || res.FinishReason != "length" || joined(toks) != res.Output {
		t.Errorf("result: truncated %v output %q finish %q stream %q", res.Truncated, res.Output, res.FinishReason, joined(toks))
	}
}

// TestRequestErrors checks that bad requests get a result with an error a user can act
// on, and the session goes on.
func TestRequestErrors(t *testing.T) {
	r := launch(t, map[string]any{"model": tiny(t), "context_size": 256})
	for _, tt := range []struct {
		name   string
		req    runner.ExecuteRequest
		expect string
	}{
		{"unknown param", runner.ExecuteRequest{Input: "x", Params: params("max_token", 3.0)}, "unknown parameter params.max_token; this runner takes ignore_eos, max_tokens"},
		{"bad max_tokens", runner.ExecuteRequest{Input: "x", Params: params("max_tokens", 2.5)}, "params.max_tokens must be a whole number from 1"},
		{"bad temperature", runner.ExecuteRequest{Input: "x", Params: params("temperature", "hot")}, "params.temperature must be a number from 0 to 10"},
		{"bad messages", runner.ExecuteRequest{Params: params("messages", []any{map[string]any{"role": "user"}})}, "params.messages[0] needs a role and a content"},
		{"bad stop", runner.ExecuteRequest{Input: "x", Params: params("stop", 3.0)}, "params.stop must be a string or a list of strings"},
		// llama.cpp reads the text as a C string: a NUL must be refused, not handed on
		// (it crashed the plugin process).
		{"NUL in input", runner.ExecuteRequest{Input: "a\x00b"}, "the input contains a NUL character (U+0000) at byte 1"},
		{"NUL in message", runner.ExecuteRequest{Params: params("messages", []any{map[string]any{"role": "user", "content": "hi\x00"}})},
			"params.messages[0].content contains a NUL character (U+0000) at byte 2"},
		// A few tokens: generating to the end of the context took over the 60 s timeout
		// on the shared machine under load.
		{"empty", runner.ExecuteRequest{Params: params("max_tokens", 8.0)}, ""},
		{"too long", runner.ExecuteRequest{Input: strings.Repeat("the model ", 200)}, "which does not fit the context of 256 tokens: shorten it or raise context_size"},
		// An input no tokenization could fit is refused before llama.cpp tokenizes it
		// (about a second per megabyte, beyond the reach of the timeout).
		{"far too long", runner.ExecuteRequest{Input: strings.Repeat("the model ", 300000)},
			"the input is 3000000 bytes, more than the context of 256 tokens can hold"},
		{"far too long chat", runner.ExecuteRequest{Params: params("messages", []any{map[string]any{"role": "user", "content": strings.Repeat("x", 1<<20)}})},
			"the input is 1048576 bytes, more than the context of 256 tokens can hold"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			res, _ := run(t, r, tt.req)
			if tt.name == "empty" {
				// An empty input is still a prompt: the BOS token.
				if res.Status != runner.StatusOK {
					t.Errorf("empty input: %+v", res)
				}
				return
			}
			if res.Status != runner.StatusError || !strings.Contains(res.Error, tt.expect) {
				t.Errorf("got status %v error %q, want an error containing %q", res.Status, res.Error, tt.expect)
			}
		})
	}
}

// TestInfoSchemaHealth checks what the plugin tells about itself.
func TestInfoSchemaHealth(t *testing.T) {
	r := launch(t, map[string]any{"model": tiny(t), "threads": 2, "context_size": 512})
	if r.proc.Info.Name != "llama" || r.proc.Info.Kind != base.KindRunner || r.proc.Info.Version != version.Version {
		t.Errorf("info: %+v", r.proc.Info)
	}
	schema, err := r.proc.Schema(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, a := range schema.Attributes {
		names = append(names, a.Name)
		if a.Description == "" {
			t.Errorf("attribute %s has no description", a.Name)
		}
	}
	want := []string{"model", "library_dir", "context_size", "threads", "batch_size", "temperature", "top_p", "top_k", "seed", "max_tokens", "timeout"}
	if !slices.Equal(names, want) {
		t.Errorf("schema attributes %v, want %v", names, want)
	}
	h, err := r.Health(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !h.Healthy || !strings.Contains(h.Message, "tiny-llama (llama, 2 layers, n_embd 64") ||
		!strings.Contains(h.Message, "context 512 tokens, 2 threads") {
		t.Errorf("health: %+v", h)
	}
	if len(h.Isolation) == 0 || h.Isolation[0].Name != "process" || !h.Isolation[0].Enforced {
		t.Errorf("isolation: %+v", h.Isolation)
	}
}

// TestCorruptModelRefused checks that a missing, foreign, empty or truncated model file
// is refused at configuration with an error naming the file and the problem, and that
// llama.cpp was never loaded into the process: its library is not mapped.
func TestCorruptModelRefused(t *testing.T) {
	dir := t.TempDir()
	good, err := os.ReadFile(tiny(t))
	if err != nil {
		t.Fatal(err)
	}
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	badMagic := append([]byte("GGUX"), good[4:]...)
	cases := []struct {
		name, path, expect string
		absent             string // what the message must not say
	}{
		{"missing", filepath.Join(dir, "nope.gguf"), "does not exist", ""},
		// Only the path configs/models.hcl gives gets the hint about its test model.
		{"missing other tiny-llama", filepath.Join(dir, "tiny-llama.gguf"), "does not exist", "make testmodel"},
		{"text", write("notes.gguf", []byte("these are not the weights you are looking for\n")), `is not a GGUF file (it starts with "thes", not "GGUF")`, ""},
		{"empty", write("empty.gguf", nil), "is not a GGUF file: only 0 bytes long", ""},
		{"magic", write("magic.gguf", badMagic), `it starts with "GGUX"`, ""},
		{"truncated data", write("half.gguf", good[:len(good)/2]), "is truncated: ", "block layout"},
		{"one byte short", write("short.gguf", good[:len(good)-1]), fmt.Sprintf("is truncated: 1 byte missing (it is %d bytes long;", len(good)-1), "block layout"},
		{"truncated header", write("head.gguf", good[:200]), "is truncated: its header runs past the end of the file, at 200 bytes", ""},
		{"directory", dir, "is a directory", ""},
	}
	logger, logs := testLogger()
	ctx := context.Background()
	p, err := plugins.Launch(ctx, spec(t, "llama", map[string]any{"model": "x"}), logger)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Kill()
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			p.Spec.Config = []byte(`{"model":` + quote(tt.path) + `,"library_dir":` + quote(testLibDir(t)) + `}`)
			err := p.Configure(ctx, false)
			var ce *plugins.ConfigError
			if !errors.As(err, &ce) || len(ce.Diagnostics) != 1 || !slices.Equal(ce.Diagnostics[0].Path, []string{"model"}) {
				t.Fatalf("configure: got %v, want one diagnostic at model", err)
			}
			msg := ce.Diagnostics[0].Summary
			if !strings.Contains(msg, tt.path) || !strings.Contains(msg, tt.expect) || (tt.absent != "" && strings.Contains(msg, tt.absent)) {
				t.Errorf("diagnostic %q, want it to name %s and say %q (and not %q)", msg, tt.path, tt.expect, tt.absent)
			}
		})
	}
	maps, err := os.ReadFile(filepath.Join("/proc", itoa(p.PID), "maps"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(maps), "libllama") || strings.Contains(string(maps), "libggml") {
		t.Error("llama.cpp was loaded although every model was refused")
	}
	if err := p.Impl.(runner.Runner).OpenSession(ctx, runner.Session{ID: "s"}); err == nil || !strings.Contains(err.Error(), "not configured") {
		t.Errorf("open session after refused configs: %v", err)
	}
	if strings.Contains(logs.String(), "panic") {
		t.Errorf("plugin log mentions a panic:\n%s", logs)
	}
}

// TestLibraryDirFromEnv checks the documented fallback: without library_dir the plugin
// takes LIMIT_LLAMA_LIB_DIR from the environment its runner block gives it, and without
// either it names every place it looked.
func TestLibraryDirFromEnv(t *testing.T) {
	ctx := context.Background()
	logger, _ := testLogger()
	s := spec(t, "llama", map[string]any{"model": tiny(t), "library_dir": nil})
	s.Config = []byte(`{"model":` + quote(tiny(t)) + `}`)
	s.Env = map[string]string{LibDirEnv: testLibDir(t)}
	p, err := plugins.Launch(ctx, s, logger)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Kill()
	if err := p.Configure(ctx, false); err != nil {
		t.Fatalf("configure with %s: %v", LibDirEnv, err)
	}

	s.Env = nil
	q, err := plugins.Launch(ctx, s, logger)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Kill()
	err = q.Configure(ctx, true)
	var ce *plugins.ConfigError
	if !errors.As(err, &ce) || !slices.Equal(ce.Diagnostics[0].Path, []string{"library_dir"}) ||
		!strings.Contains(ce.Diagnostics[0].Summary, "llama.cpp libraries not found (library_dir is unset; looked in ") ||
		!strings.Contains(ce.Diagnostics[0].Summary, repoLibDir) ||
		!strings.Contains(ce.Diagnostics[0].Detail, "make llama-deps") {
		t.Errorf("configure without a library dir: %v", err)
	}
}
