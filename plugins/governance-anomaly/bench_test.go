package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/limitgraph/limit/sdk/governance"
)

// BenchmarkEvaluate measures one post-execution evaluation with all four figures, in a
// session with a full baseline, in-process and through the plugin process.
//
//	go test -run '^$' -bench Evaluate -benchtime 2000x ./plugins/governance-anomaly
func BenchmarkEvaluate(b *testing.B) {
	ctx := context.Background()
	run := func(b *testing.B, r governance.Rule) {
		for i := 0; i < b.N; i++ {
			md := normal(i)
			if _, err := r.Evaluate(ctx, governance.EvaluateRequest{Stage: governance.StagePost, SessionID: "bench", TraceID: fmt.Sprint(i), Metadata: md}); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.Run("in-process", func(b *testing.B) { run(b, configured(b, `{}`)) })
	b.Run("plugin", func(b *testing.B) { run(b, launch(b, `{}`)) })
}

// BenchmarkSessionGraph measures Evaluate with the session graph: the common path (no
// comparison due), the default (a comparison every 8 executions, amortised), and a
// comparison at every execution (graph_every = 1) against a full
// reference set of 32 sessions of 32 executions, for an ordinary session and an
// unusual one (whose references the lower bound prunes). The reference rows, measured
// in the same run, are one FGW computation between two session graphs of 32 nodes and
// the same Evaluate with session_graph = false; fgw/op counts FGW computations.
//
//	go test -run '^$' -bench SessionGraph -benchtime 2000x ./plugins/governance-anomaly
func BenchmarkSessionGraph(b *testing.B) {
	ctx := context.Background()
	setup := func(b *testing.B, cfg string) *rule {
		r := configured(b, cfg)
		warm(b, r, 33, 32)
		return r
	}
	run := func(b *testing.B, r *rule, p profile) {
		rnd := rand.New(rand.NewPCG(1, 1))
		runSession(b, r, "bench", minGraphSteps, p, 2) // its first comparison is not timed
		r.graphMu.Lock()
		r.refs.get("", defaultGraphOwners).solves = 0
		r.graphMu.Unlock()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			if _, err := r.Evaluate(ctx, governance.EvaluateRequest{Stage: governance.StagePost, SessionID: "bench", TraceID: fmt.Sprint(i), Metadata: p(rnd, i)}); err != nil {
				b.Fatal(err)
			}
		}
		b.StopTimer()
		r.graphMu.Lock()
		b.ReportMetric(float64(r.refs.get("", defaultGraphOwners).solves)/float64(b.N), "fgw/op")
		r.graphMu.Unlock()
	}
	b.Run("reference:one-fgw-32x32", func(b *testing.B) {
		rnd := rand.New(rand.NewPCG(1, 1))
		var gs [2]*sessionGraph
		for k := range gs {
			steps := make([]step, defaultGraphNodes)
			for i := range steps {
				md := ordinary(uint64(k))(rnd, i)
				obs, _ := parse(md)
				steps[i] = newStep(obs, md, "python")
			}
			gs[k] = buildGraph(fmt.Sprint(k), len(steps), steps)
		}
		set := graphSet{refs: gs[1:]}
		for i := 0; i < b.N; i++ {
			if _, _, err := set.nearest(gs[0], 1); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("reference:graph-off", func(b *testing.B) { run(b, setup(b, `{"session_graph": false}`), ordinary(1000)) })
	b.Run("common-path", func(b *testing.B) { run(b, setup(b, `{"graph_every": 10000}`), ordinary(1000)) })
	b.Run("default-every-8/ordinary", func(b *testing.B) { run(b, setup(b, `{}`), ordinary(1000)) })
	b.Run("compare-every/ordinary", func(b *testing.B) { run(b, setup(b, `{"graph_every": 1}`), ordinary(1000)) })
	b.Run("compare-every/unusual", func(b *testing.B) { run(b, setup(b, `{"graph_every": 1}`), unusual["long outputs"]) })
}
