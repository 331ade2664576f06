package main

import (
	"bufio"
	"context"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hybridgroup/yzma/pkg/llama"

	"github.com/limitgraph/limit/internal/syncbuf"
	"github.com/limitgraph/limit/internal/testbin"
	"github.com/limitgraph/limit/sdk/client"
	"github.com/limitgraph/limit/sdk/runner"
)

// benchTokens is how many tokens each measured generation produces.
const benchTokens = 512

// BenchmarkTokensPerSecond compares generation speed of the tiny model through the real
// plugin binary (measured on the host side: the Execute call, every token streamed over
// gRPC, until the result arrives) with the same model, settings and seed driven
// in-process through yzma, in the same run. Runs alternate so both see the same machine
// load; the medians are compared. `make bench-llm` runs it.
//
// Reported: plugin_tok/s, inprocess_tok/s, ratio (plugin / in-process; the target is at
// least 0.9), plugin_ttft_ms (time to first token on the host side).
func BenchmarkTokensPerSecond(b *testing.B) {
	model := tiny(b)
	r := launch(b, map[string]any{"model": model, "threads": 1})
	e := inProcess(b, model, 1)
	const input = "hello world, what is the answer?"
	s := sample(1, benchTokens)
	req := runner.ExecuteRequest{Input: input, Params: params("seed", 1.0, "max_tokens", float64(benchTokens), "ignore_eos", true)}
	ctx := context.Background()

	// Warm both up once.
	e.completion(b, input, s, true)
	run(b, r, req)

	var plugin, inproc, ttft, internal, ratios []float64
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		var first time.Duration
		res, err := r.Execute(ctx, req, func(ev runner.Event) error {
			if first == 0 {
				first = time.Since(start)
			}
			return nil
		})
		el := time.Since(start)
		if err != nil || res.Usage.CompletionTokens != benchTokens {
			b.Fatalf("plugin: %v %+v", err, res.Usage)
		}
		plugin = append(plugin, benchTokens/el.Seconds())
		internal = append(internal, res.Usage.Extra["tokens_per_second"])
		ttft = append(ttft, float64(first.Microseconds())/1000)

		start = time.Now()
		g := e.completion(b, input, s, true)
		el = time.Since(start)
		if g.completion != benchTokens || g.text != res.Output {
			b.Fatalf("in-process run gave %d tokens, output equal to the plugin's: %v", g.completion, g.text == res.Output)
		}
		inproc = append(inproc, benchTokens/el.Seconds())
		ratios = append(ratios, plugin[len(plugin)-1]/inproc[len(inproc)-1])
	}
	b.StopTimer()
	p, q := median(plugin), median(inproc)
	b.ReportMetric(p, "plugin_tok/s")
	b.ReportMetric(q, "inprocess_tok/s")
	b.ReportMetric(median(ratios), "ratio")
	b.ReportMetric(median(internal), "plugin_internal_tok/s")
	b.ReportMetric(median(ttft), "plugin_ttft_ms")
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

// BenchmarkAPITokensPerSecond compares generation speed of the tiny model through the
// whole product — POST /v1/sessions/{id}/executions on a real limitd (built and started
// as a subprocess), its session's runner-llama process, the trace written for every
// execution — with the same model, settings and seed driven in-process through yzma, in
// the same run. Each round runs a plain JSON request, a streamed one (Accept:
// text/event-stream) and the in-process generation, alternating so all three see the
// same machine load; medians are compared. Then short streamed requests, alternating
// with in-process ones, give the time to first token: from sending the request to the
// first token event, against the in-process time to the first generated piece.
// `make bench-llm` runs it.
//
// Reported: api_tok/s and api_sse_tok/s (client-side, request to result),
// inprocess_tok/s, ratio and ratio_sse (API / in-process; the target is at least 0.9),
// api_ttft_p50_ms, api_ttft_p99_ms, inprocess_ttft_p50_ms, inprocess_ttft_p99_ms.
func BenchmarkAPITokensPerSecond(b *testing.B) {
	model := tiny(b)
	d := startLimitd(b, model)
	e := inProcess(b, model, 1)
	const input = "hello world, what is the answer?"
	s := sample(1, benchTokens)
	req := client.ExecuteRequest{Runner: "llama", Input: input,
		Params: params("seed", 1.0, "max_tokens", float64(benchTokens), "ignore_eos", true)}
	ctx := context.Background()
	sess, err := d.c.CreateSession(ctx, client.CreateSessionRequest{Name: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	apiRun := func(stream bool) (float64, time.Duration, *client.ExecutionResult) {
		b.Helper()
		start := time.Now()
		var first time.Duration
		var res *client.ExecutionResult
		var err error
		if stream {
			res, err = d.c.ExecuteStream(ctx, sess.ID, req, func(ev client.Event) {
				if first == 0 && ev.Kind == "token" {
					first = time.Since(start)
				}
			})
		} else {
			res, err = d.c.Execute(ctx, sess.ID, req)
		}
		el := time.Since(start)
		if err != nil || res.Status != "ok" || res.Usage.CompletionTokens != uint64(req.Params["max_tokens"].(float64)) {
			b.Fatalf("API (stream %v): %v %+v\nlimitd log:\n%s", stream, err, res, d.stderr)
		}
		return float64(res.Usage.CompletionTokens) / el.Seconds(), first, res
	}
	inprocRun := func(s sampling) (float64, time.Duration, genResult) {
		b.Helper()
		prompt := e.model.tokenize(input, true, false)
		start := time.Now()
		var first time.Duration
		g, err := e.lctx.generate(ctx, e.model, genRequest{prompt: prompt, sampling: s, ignoreEOS: true},
			func(string, llama.Token) error {
				if first == 0 {
					first = time.Since(start)
				}
				return nil
			})
		el := time.Since(start)
		if err != nil || g.completion != s.MaxTokens {
			b.Fatalf("in-process: %v, %d tokens", err, g.completion)
		}
		return float64(g.completion) / el.Seconds(), first, g
	}

	// Warm both up once.
	inprocRun(s)
	apiRun(false)

	var api, sse, inproc, ratios, ratiosSSE []float64
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		a, _, res := apiRun(false)
		st, _, sres := apiRun(true)
		q, _, g := inprocRun(s)
		if g.text != res.Output || sres.Output != res.Output {
			b.Fatalf("outputs differ: in-process %q, API %q, API streamed %q", g.text, res.Output, sres.Output)
		}
		api, sse, inproc = append(api, a), append(sse, st), append(inproc, q)
		ratios, ratiosSSE = append(ratios, a/q), append(ratiosSSE, st/q)
	}
	b.StopTimer()

	// Time to first token, on short generations.
	const ttftRounds = 200
	req.Params = params("seed", 1.0, "max_tokens", 4.0, "ignore_eos", true)
	short := sample(1, 4)
	var apiTTFT, inprocTTFT []float64
	for i := 0; i < ttftRounds; i++ {
		_, first, _ := apiRun(true)
		_, ifirst, _ := inprocRun(short)
		apiTTFT = append(apiTTFT, float64(first.Microseconds())/1000)
		inprocTTFT = append(inprocTTFT, float64(ifirst.Microseconds())/1000)
	}

	b.ReportMetric(median(api), "api_tok/s")
	b.ReportMetric(median(sse), "api_sse_tok/s")
	b.ReportMetric(median(inproc), "inprocess_tok/s")
	b.ReportMetric(median(ratios), "ratio")
	b.ReportMetric(median(ratiosSSE), "ratio_sse")
	b.ReportMetric(percentile(apiTTFT, 50), "api_ttft_p50_ms")
	b.ReportMetric(percentile(apiTTFT, 99), "api_ttft_p99_ms")
	b.ReportMetric(percentile(inprocTTFT, 50), "inprocess_ttft_p50_ms")
	b.ReportMetric(percentile(inprocTTFT, 99), "inprocess_ttft_p99_ms")
}

// percentile returns the q-th percentile (nearest rank) of v.
func percentile(v []float64, q float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	i := int(math.Ceil(q/100*float64(len(s)))) - 1
	return s[max(0, min(i, len(s)-1))]
}

// limitd is a real daemon serving the llama runner, for the API benchmark.
type limitd struct {
	cmd    *exec.Cmd
	c      *client.Client
	stderr *syncbuf.Buffer
}

// startLimitd builds limitd and the plugins it needs, and starts it with a runner
// "llama" block for model (one thread, like the in-process reference) over bbolt
// storage in a temporary directory. It is stopped at cleanup.
func startLimitd(tb testing.TB, model string) *limitd {
	tb.Helper()
	bin := testbin.Command(tb, "limitd")
	testbin.Plugin(tb, "storage-bolt")
	testbin.Plugin(tb, "runner-llama")
	src := fmt.Sprintf(`host {
  listen     = "127.0.0.1:0"
  data_dir   = %q
  plugin_dir = %q
}
storage "bolt" {}
runner "llama" {
  config {
    model       = %q
    library_dir = %q
    threads     = 1
  }
}
`, tb.TempDir(), testbin.PluginDir(tb), model, testLibDir(tb))
	path := filepath.Join(tb.TempDir(), "limit.hcl")
	if err := os.WriteFile(path, []byte(src), 0o600); err != nil {
		tb.Fatal(err)
	}
	d := &limitd{cmd: exec.Command(bin, "-config", path), stderr: &syncbuf.Buffer{}}
	d.cmd.Stderr = d.stderr
	out, err := d.cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	if err := d.cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		d.cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { d.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			d.cmd.Process.Kill()
			<-done
			tb.Errorf("limitd did not stop on SIGTERM\n%s", d.stderr)
		}
	})
	line, err := bufio.NewReader(out).ReadString('\n')
	i := strings.Index(line, "http://")
	if err != nil || i < 0 {
		tb.Fatalf("limitd did not start: %v %q\n%s", err, line, d.stderr)
	}
	d.c = client.New(strings.TrimSpace(line[i:]))
	return d
}
