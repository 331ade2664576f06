package governance

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/limitgraph/limit/host/plugins"
	"github.com/limitgraph/limit/internal/testbin"
	"github.com/limitgraph/limit/sdk/base"
	sdkgov "github.com/limitgraph/limit/sdk/governance"
)

// BenchmarkEvaluateByContent evaluates prompts with the default config's jailbreak and
// codesafety rules as plugin processes: sent only to the rules that read prompts (the
// jailbreak rule; the codesafety rule reads Python code), and, for reference in the same
// run, to every rule (the host before rules said what they read). It reports the p50 of a
// call and the ratio.
//
//	go test -run '^$' -bench EvaluateByContent -benchtime 2000x ./host/governance
func BenchmarkEvaluateByContent(b *testing.B) {
	ctx := context.Background()
	var managed []*plugins.Managed
	for _, name := range []string{"jailbreak", "codesafety"} {
		spec := plugins.Spec{Kind: base.KindGovernance, Name: name, Path: testbin.Plugin(b, "governance-"+name),
			Env: map[string]string{}, DataDir: b.TempDir(), StartTimeout: 30 * time.Second}
		m, err := plugins.StartManaged(ctx, spec, hclog.NewNullLogger(), time.Minute)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(m.Close)
		managed = append(managed, m)
	}
	byContent, err := NewEvaluator(ctx, managed)
	if err != nil {
		b.Fatal(err)
	}
	// The same rules, said to read everything.
	every := &Evaluator{}
	for _, r := range byContent.rules {
		c := *r
		c.descs = slices.Clone(r.descs)
		for i := range c.descs {
			c.descs[i].ContentTypes, c.descs[i].Runners = nil, nil
		}
		every.rules = append(every.rules, &c)
	}
	sentence := "Could you summarise the attached quarterly report and list the three biggest risks it mentions for our supply chain? "
	for _, size := range []int{2000, 1 << 20} {
		text := strings.Repeat(sentence, size/len(sentence)+1)[:size]
		req := sdkgov.EvaluateRequest{Stage: sdkgov.StagePre, ContentType: "text/prompt", Content: text}
		var p50 [2]time.Duration
		for i, e := range []*Evaluator{byContent, every} {
			name := []string{"by-content", "every-rule"}[i]
			b.Run(fmt.Sprintf("%dB/%s", size, name), func(b *testing.B) {
				lat := make([]time.Duration, 0, b.N)
				for b.Loop() {
					start := time.Now()
					if _, errs := e.Evaluate(ctx, req); len(errs) > 0 {
						b.Fatal(errs[0])
					}
					lat = append(lat, time.Since(start))
				}
				sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
				p50[i] = lat[len(lat)/2]
				b.ReportMetric(float64(p50[i].Microseconds()), "p50-µs")
			})
		}
		if p50[0] > 0 && p50[1] > 0 {
			fmt.Printf("%d-byte prompt: p50 %v sent by content, %v sent to every rule (%.2f×)\n", size, p50[0], p50[1], float64(p50[1])/float64(p50[0]))
		}
	}
}
