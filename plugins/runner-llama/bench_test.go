package main

import (
	"context"
	"slices"
	"testing"
	"time"

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
