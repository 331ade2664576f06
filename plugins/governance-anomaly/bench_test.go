package main

import (
	"context"
	"fmt"
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
