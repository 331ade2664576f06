package governance

import (
	"context"
	"fmt"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
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
// run, to every rule (the host before rules said what they read). It reports a call's p50
// and the CPU time of the host and both plugin processes per call, and the ratios.
//
//	go test -run '^$' -bench 'EvaluateByContent/2000B' -benchtime 3000x ./host/governance
//	go test -run '^$' -bench 'EvaluateByContent/1048576B' -benchtime 500x ./host/governance
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
		c := &rule{name: r.name, m: r.m, descs: slices.Clone(r.descs)}
		for i := range c.descs {
			c.descs[i].ContentTypes, c.descs[i].Runners = nil, nil
		}
		every.rules = append(every.rules, c)
	}
	sentence := "Could you summarise the attached quarterly report and list the three biggest risks it mentions for our supply chain? "
	for _, size := range []int{2000, 1 << 20} {
		text := strings.Repeat(sentence, size/len(sentence)+1)[:size]
		req := sdkgov.EvaluateRequest{Stage: sdkgov.StagePre, ContentType: "text/prompt", Content: text}
		var p50, cpu [2]time.Duration
		for i, e := range []*Evaluator{byContent, every} {
			name := []string{"by-content", "every-rule"}[i]
			b.Run(fmt.Sprintf("%dB/%s", size, name), func(b *testing.B) {
				lat := make([]time.Duration, 0, b.N)
				cpu0 := cpuTime(b, managed)
				for b.Loop() {
					start := time.Now()
					if _, errs := e.Evaluate(ctx, req); len(errs) > 0 {
						b.Fatal(errs[0])
					}
					lat = append(lat, time.Since(start))
				}
				cpu[i] = (cpuTime(b, managed) - cpu0) / time.Duration(len(lat))
				sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
				p50[i] = lat[len(lat)/2]
				b.ReportMetric(float64(p50[i].Microseconds()), "p50-µs")
				b.ReportMetric(float64(cpu[i].Microseconds()), "cpu-µs/op")
			})
		}
		if p50[0] > 0 && p50[1] > 0 {
			fmt.Printf("%d-byte prompt: p50 %v sent by content, %v sent to every rule (%.2f×); CPU of the host and rule processes %v and %v a call (%.2f×)\n",
				size, p50[0], p50[1], float64(p50[1])/float64(p50[0]), cpu[0], cpu[1], float64(cpu[1])/float64(cpu[0]))
		}
	}
}

// cpuTime is the CPU time used so far by this process and the rule plugins' processes.
func cpuTime(b *testing.B, managed []*plugins.Managed) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	total := time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	for _, m := range managed {
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", m.Status().PID))
		if err != nil {
			b.Fatal(err)
		}
		// Fields 14 and 15, utime and stime in clock ticks (100 a second), come after the
		// command name's closing parenthesis.
		f := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
		ut, _ := strconv.Atoi(f[11])
		st, _ := strconv.Atoi(f[12])
		total += time.Duration(ut+st) * 10 * time.Millisecond
	}
	return total
}
