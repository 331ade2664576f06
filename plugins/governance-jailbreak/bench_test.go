package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/limitgraph/limit/internal/jailbreak"
	"github.com/limitgraph/limit/sdk/governance"
	"github.com/limitgraph/limit/sdk/sdktest"
)

// benchPrompts returns prompts of exactly 2,000 bytes cut from the training file, half
// jailbreaks and half benign (benign texts shorter than 2,000 bytes are repeated), so
// both the flagged path (with its explanation) and the clean path are measured.
func benchPrompts(b *testing.B) []string {
	p := filepath.Join(jailbreak.ModuleRoot(), jailbreak.TrainingDataRel)
	ex, _, err := jailbreak.LoadJSONL(p)
	if err != nil {
		b.Skipf("training file needed for the benchmark prompts: %v", err)
	}
	var jb, bn []string
	for _, e := range ex {
		t := cut2000(e.Text)
		if e.Positive() {
			jb = append(jb, t)
		} else {
			bn = append(bn, t)
		}
	}
	n := min(len(jb), len(bn), 200)
	var out []string
	for i := 0; i < n; i++ {
		out = append(out, jb[i], bn[i])
	}
	return out
}

// cut2000 returns t repeated (on new lines) up to 2,000 bytes and cut there, whole runes
// only, padded with spaces to exactly 2,000 bytes.
func cut2000(t string) string {
	s := t
	for len(s) < 2000 {
		s += "\n" + t
	}
	s = strings.ToValidUTF8(s[:2000], "")
	for len(s) < 2000 {
		s += " "
	}
	return s
}

// measure runs call b.N times over the prompts and reports p50 and p99 in µs.
func measure(b *testing.B, prompts []string, call func(string)) (p50 time.Duration) {
	ds := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		call(prompts[i%len(prompts)])
		ds = append(ds, time.Since(t0))
	}
	b.StopTimer()
	slices.Sort(ds)
	p50 = ds[len(ds)/2]
	b.ReportMetric(float64(p50.Microseconds()), "p50-µs")
	b.ReportMetric(float64(ds[len(ds)*99/100].Microseconds()), "p99-µs")
	return p50
}

// BenchmarkEvaluate2000 measures one evaluation of a 2,000-byte prompt in-process and
// through the plugin process (over its fast path, and over gRPC in a second process),
// beside the floor of a gRPC call across the plugin boundary (a Describe round trip), and
// prints the ratios measured in the same run.
//
//	go test -run '^$' -bench Evaluate2000 -benchtime 2000x ./plugins/governance-jailbreak
func BenchmarkEvaluate2000(b *testing.B) {
	prompts := benchPrompts(b)
	ctx := context.Background()
	var inproc, plugin, floor time.Duration
	b.Run("in-process", func(b *testing.B) {
		r := configured(b, `{}`)
		inproc = measure(b, prompts, func(p string) {
			if _, err := r.Evaluate(ctx, governance.EvaluateRequest{Stage: governance.StagePre, ContentType: "text/prompt", Content: p}); err != nil {
				b.Fatal(err)
			}
		})
	})
	r := launch(b, `{}`)
	b.Run("plugin", func(b *testing.B) {
		plugin = measure(b, prompts, func(p string) {
			if _, err := r.Evaluate(ctx, governance.EvaluateRequest{Stage: governance.StagePre, ContentType: "text/prompt", Content: p}); err != nil {
				b.Fatal(err)
			}
		})
	})
	var viaGRPC time.Duration
	b.Run("plugin-grpc", func(b *testing.B) {
		exe, err := os.Executable()
		if err != nil {
			b.Fatal(err)
		}
		g, stop, err := sdktest.LaunchGovernanceGRPC(ctx, exe, []string{serveEnv + "=1"}, []byte(`{}`), b.TempDir())
		if err != nil {
			b.Fatal(err)
		}
		defer stop()
		viaGRPC = measure(b, prompts, func(p string) {
			if _, err := g.Evaluate(ctx, governance.EvaluateRequest{Stage: governance.StagePre, ContentType: "text/prompt", Content: p}); err != nil {
				b.Fatal(err)
			}
		})
	})
	b.Run("grpc-floor", func(b *testing.B) {
		floor = measure(b, prompts, func(string) {
			if _, err := r.Describe(ctx); err != nil {
				b.Fatal(err)
			}
		})
	})
	if inproc > 0 && plugin > 0 && floor > 0 {
		fmt.Printf("p50 per 2,000-byte prompt: in-process %v, through the plugin %v (its fast path; %v over gRPC), gRPC floor (Describe) %v; plugin/in-process %.2f",
			inproc, plugin, viaGRPC, floor, float64(plugin)/float64(inproc))
		fmt.Println()
	}
}

// BenchmarkLargeDocument measures a 1 MiB document (the conformance suite's large case)
// in-process.
func BenchmarkLargeDocument(b *testing.B) {
	prompts := benchPrompts(b)
	var doc []byte
	for i := 0; len(doc) < 1<<20; i++ {
		doc = append(doc, prompts[i%len(prompts)]...)
		doc = append(doc, '\n')
	}
	r := configured(b, `{}`)
	b.SetBytes(int64(len(doc)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := r.Evaluate(context.Background(), governance.EvaluateRequest{Stage: governance.StagePre, Content: string(doc)}); err != nil {
			b.Fatal(err)
		}
	}
}

// benchOutputs returns pieces of benign output of exactly 2,000 bytes (the output corpus's
// program output and assistant answers, repeated when shorter) and the planted test pairs'
// injected documents cut the same way, alternating.
func benchOutputs(b *testing.B) []string {
	root := jailbreak.ModuleRoot()
	files, _ := filepath.Glob(filepath.Join(root, "internal/jailbreak/corpus/output-*.jsonl*"))
	var texts []string
	for _, f := range files {
		ex, _, err := jailbreak.LoadJSONL(f)
		if err != nil {
			b.Fatal(err)
		}
		for _, e := range ex {
			texts = append(texts, e.Text)
		}
	}
	pairs, err := jailbreak.PlantedTestPairs()
	if err != nil {
		b.Fatal(err)
	}
	var injected []string
	for _, p := range pairs {
		injected = append(injected, p.Injected)
	}
	n := min(len(texts), len(injected), 200)
	if n == 0 {
		b.Fatal("no output corpus or test pairs")
	}
	var out []string
	for i := 0; i < n; i++ {
		out = append(out, cut2000(texts[i*len(texts)/n]), cut2000(injected[i]))
	}
	return out
}

// BenchmarkEvaluateOutput2000 measures one evaluation of 2,000 bytes of program output
// (text/output) through the plugin, read by the planted-instruction scorer (the default)
// and without it (planted_content_types not naming text/output: phrase rules and decoders
// alone, as before the scorer read output), and prints the ratio measured in the same run.
//
//	go test -run '^$' -bench EvaluateOutput2000 -benchtime 2000x ./plugins/governance-jailbreak
func BenchmarkEvaluateOutput2000(b *testing.B) {
	outputs := benchOutputs(b)
	ctx := context.Background()
	var with, without time.Duration
	for _, c := range []struct {
		name, config string
		p50          *time.Duration
	}{
		{"rules-only", `{"planted_content_types": ["text/plain", "text/prompt"]}`, &without},
		{"planted", `{}`, &with},
	} {
		r := launch(b, c.config)
		b.Run(c.name, func(b *testing.B) {
			*c.p50 = measure(b, outputs, func(p string) {
				if _, err := r.Evaluate(ctx, governance.EvaluateRequest{Stage: governance.StagePost, ContentType: "text/output", Content: p}); err != nil {
					b.Fatal(err)
				}
			})
		})
	}
	if with > 0 && without > 0 {
		fmt.Printf("p50 per 2,000 bytes of output through the plugin: with the planted scorer %v, phrase rules and decoders alone %v; ratio %.2f\n",
			with, without, float64(with)/float64(without))
	}
}
