package main

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"strings"
	"testing"

	"github.com/limitgraph/limit/sdk/governance"
)

// The per-execution statistics judged against synthetic ordinary sessions: how often
// they flag an execution that is part of ordinary work, and whether they still flag
// real anomalies injected into a steady session.

// fprExecutions is the length of a synthetic session.
const fprExecutions = 80

// task is one kind of execution of a session: its typical duration, output and tokens
// (tokens below 0: the runner reports none).
type task struct{ dur, out, tok float64 }

// lognormal returns v times a log-normal factor of log-scale deviation sigma.
func lognormal(r *rand.Rand, v, sigma float64) float64 { return v * math.Exp(sigma*r.NormFloat64()) }

// logUniform returns a number between lo and hi, uniform on a log scale.
func logUniform(r *rand.Rand, lo, hi float64) float64 {
	return lo * math.Exp(r.Float64()*math.Log(hi/lo))
}

// execution formats one execution's figures as the host sends them.
func execution(runner string, dur, out, tok float64, failed bool) map[string]string {
	md := map[string]string{
		"duration_ms": fmt.Sprint(math.Round(dur)), "output_bytes": fmt.Sprint(math.Round(out)),
		"status": "ok", "runner": runner,
	}
	if tok >= 0 {
		md["tokens"] = fmt.Sprint(math.Round(tok))
	}
	if failed {
		md["status"] = "error"
	}
	return md
}

// failRate is a session's ordinary failure rate: most sessions rarely fail, some fail
// now and then (a typo, a missing file).
func failRate(b *rand.Rand) float64 { return []float64{0, 0, 0.01, 0.03, 0.08}[b.IntN(5)] }

// sessionKinds generate ordinary sessions: profile(seed) gives one session.
var sessionKinds = []struct {
	name string
	gen  func(seed uint64) profile
}{
	// The same code again and again: log-normal noise of deviation 0.3.
	{"homogeneous", func(seed uint64) profile {
		b := rand.New(rand.NewPCG(seed, 21))
		t := task{logUniform(b, 2, 5000), logUniform(b, 10, 100_000), -1}
		p := failRate(b)
		return func(r *rand.Rand, i int) map[string]string {
			return execution("python", lognormal(r, t.dur, 0.3), lognormal(r, t.out, 0.3), -1, r.Float64() < p)
		}
	}},
	// A notebook: 2 to 4 kinds of task (a print, a data load, a training loop), whose
	// durations and outputs differ by 10 to 100 times, picked at random with random
	// weights (a rare kind is as ordinary as a frequent one).
	{"heterogeneous", func(seed uint64) profile {
		b := rand.New(rand.NewPCG(seed, 22))
		base := task{logUniform(b, 2, 200), logUniform(b, 10, 2000), -1}
		tasks := []task{base}
		weights := []float64{-math.Log(1 - b.Float64())}
		for k := 1 + b.IntN(3); k > 0; k-- {
			f, g := logUniform(b, 10, 100), logUniform(b, 10, 100)
			if b.IntN(3) == 0 {
				g = 1 / g // a long computation printing little
			}
			tasks = append(tasks, task{base.dur * f, base.out * g, -1})
			weights = append(weights, -math.Log(1-b.Float64()))
		}
		p := failRate(b)
		return func(r *rand.Rand, i int) map[string]string {
			t := tasks[pick(r, weights)]
			return execution("python", lognormal(r, t.dur, 0.3), lognormal(r, t.out, 0.3), -1, r.Float64() < p)
		}
	}},
	// The same code on growing inputs: duration and output grow 10 times over the session.
	{"drifting", func(seed uint64) profile {
		b := rand.New(rand.NewPCG(seed, 23))
		t := task{logUniform(b, 5, 2000), logUniform(b, 50, 50_000), -1}
		p := failRate(b)
		return func(r *rand.Rand, i int) map[string]string {
			g := 1 + 9*float64(i)/fprExecutions
			return execution("python", lognormal(r, t.dur*g, 0.3), lognormal(r, t.out*g, 0.3), -1, r.Float64() < p)
		}
	}},
	// A chat with a model: short answers (tens of tokens) and long ones (hundreds to
	// thousands) in a random proportion; duration and output follow the tokens.
	{"llm", func(seed uint64) profile {
		b := rand.New(rand.NewPCG(seed, 24))
		short, long := logUniform(b, 15, 80), logUniform(b, 400, 2000)
		pLong := 0.05 + 0.6*b.Float64()
		msPerToken := logUniform(b, 10, 60)
		p := failRate(b) / 4
		return func(r *rand.Rand, i int) map[string]string {
			tok := lognormal(r, short, 0.5)
			if r.Float64() < pLong {
				tok = lognormal(r, long, 0.5)
			}
			tok = math.Max(1, math.Round(tok))
			dur := lognormal(r, 300, 0.3) + lognormal(r, msPerToken, 0.15)*tok
			return execution("llama", dur, lognormal(r, 4.2*tok, 0.1), tok, r.Float64() < p)
		}
	}},
}

// pick returns an index at random in proportion to weights.
func pick(r *rand.Rand, weights []float64) int {
	sum := 0.0
	for _, w := range weights {
		sum += w
	}
	x := r.Float64() * sum
	for i, w := range weights {
		if x < w {
			return i
		}
		x -= w
	}
	return len(weights) - 1
}

// fprCount is how many judged executions were flagged, by the figures' rules and by the
// error rate, at severity 5 or more (what the strict policy acts on) and at any severity.
type fprCount struct {
	judged                               int
	figures5, figuresAny, errs5, errsAny int
	any5, anyAny                         int
	// failures judged, and how many of them the error rate flagged at 5 or more.
	failures, failures5 int
}

func pct(n, of int) string { return fmt.Sprintf("%.2f %%", 100*float64(n)/float64(max(of, 1))) }

// measureOrdinary plays sessions of each kind and counts flagged executions.
func measureOrdinary(t testing.TB, cfg string, sessions int) map[string]fprCount {
	t.Helper()
	out := map[string]fprCount{}
	for k, kind := range sessionKinds {
		r := configured(t, cfg)
		var c fprCount
		for s := 0; s < sessions; s++ {
			seed := uint64(1000*k + s)
			p, rnd := kind.gen(seed), rand.New(rand.NewPCG(seed, 5))
			id := fmt.Sprintf("%s-%d", kind.name, s)
			for i := 0; i < fprExecutions; i++ {
				md := p(rnd, i)
				fs := evaluate(t, r, id, i, md)
				if i < defaultMinSamples {
					continue
				}
				c.judged++
				c.failures += b2i(md["status"] != "ok")
				var fig, errs int // highest severity of each, 0 for none
				for _, f := range fs {
					if f.RuleID == ruleErrorRate {
						errs = max(errs, f.Severity)
					} else if f.RuleID != ruleSessionGraph {
						fig = max(fig, f.Severity)
					}
				}
				c.figuresAny += b2i(fig > 0)
				c.figures5 += b2i(fig >= 5)
				c.errsAny += b2i(errs > 0)
				c.errs5 += b2i(errs >= 5)
				c.failures5 += b2i(errs >= 5 && md["status"] != "ok")
				c.anyAny += b2i(fig > 0 || errs > 0)
				c.any5 += b2i(fig >= 5 || errs >= 5)
			}
		}
		out[kind.name] = c
	}
	return out
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// evaluate evaluates one execution in-process.
func evaluate(t testing.TB, r *rule, session string, i int, md map[string]string) []governance.Finding {
	t.Helper()
	fs, err := r.Evaluate(context.Background(), governance.EvaluateRequest{
		Stage: governance.StagePost, SessionID: session, TraceID: fmt.Sprintf("%s-%d", session, i),
		Runner: md["runner"], ContentType: "text/output", Content: "out", Metadata: md,
	})
	if err != nil {
		t.Fatal(err)
	}
	return fs
}

// injected are real anomalies put into a steady session (the homogeneous kind, or a
// steady chat for tokens) after 40 ordinary executions: each must be flagged, by its
// rule, at severity 5 or more on at least one of its executions.
var injected = []struct {
	name, rule string
	steady     func(seed uint64) profile
	// change turns ordinary execution j of the anomaly (0 first) into the anomaly; it
	// returns false past its last execution.
	change func(md map[string]string, j int) bool
	// want is the share of sessions in which it must be flagged; 0: reported only.
	want float64
}{
	{"100× slower run", "anomaly.duration", homogeneous, func(md map[string]string, j int) bool {
		scale(md, "duration_ms", 100)
		return j < 1
	}, 1},
	{"1000× larger output", "anomaly.output_size", homogeneous, func(md map[string]string, j int) bool {
		scale(md, "output_bytes", 1000)
		return j < 1
	}, 1},
	{"runaway tokens (8192)", "anomaly.tokens", steadyChat, func(md map[string]string, j int) bool {
		md["tokens"] = "8192"
		return j < 1
	}, 1},
	{"burst of 5 failures (session that never failed)", ruleErrorRate, neverFailing, burst, 1},
	// A run of failures is judged by the binomial tail at the session's earlier rate, so
	// five in a row stand out in a session that fails now and then too. Required of 95 %
	// of them (see TestStatsFalsePositives): a session that failed 6 of its 40 executions
	// by chance (one in ten of those failing 8 % of the time) has 5 in a row at
	// probability 1e-4, which is not much of a surprise.
	{"burst of 5 failures (session failing 0-8 %)", ruleErrorRate, homogeneous, burst, 0.95},
	{"burst of 5 failures (session failing 8 %)", ruleErrorRate, failingAt(0.08), burst, 0},
	{"burst of 3 failures (session failing 0-8 %)", ruleErrorRate, homogeneous, burstOf(3), 0},
}

// burst fails five executions in a row.
func burst(md map[string]string, j int) bool { return burstOf(5)(md, j) }

// burstOf fails n executions in a row.
func burstOf(n int) func(md map[string]string, j int) bool {
	return func(md map[string]string, j int) bool {
		md["status"] = "error"
		return j < n
	}
}

// failingAt is a homogeneous session that fails with probability p.
func failingAt(p float64) func(seed uint64) profile {
	return func(seed uint64) profile {
		h := homogeneous(seed)
		return func(r *rand.Rand, i int) map[string]string {
			md := h(r, i)
			md["status"] = "ok"
			if r.Float64() < p {
				md["status"] = "error"
			}
			return md
		}
	}
}

// neverFailing is a homogeneous session without failures.
func neverFailing(seed uint64) profile {
	p := homogeneous(seed)
	return func(r *rand.Rand, i int) map[string]string {
		md := p(r, i)
		md["status"] = "ok"
		return md
	}
}

// homogeneous is the homogeneous kind of ordinary session.
func homogeneous(seed uint64) profile { return sessionKinds[0].gen(seed) }

// steadyChat is a chat whose answers are all of one length (tokens with log-normal
// noise of deviation 0.3).
func steadyChat(seed uint64) profile {
	b := rand.New(rand.NewPCG(seed, 25))
	tok := logUniform(b, 30, 800)
	return func(r *rand.Rand, i int) map[string]string {
		n := math.Round(lognormal(r, tok, 0.3))
		return execution("llama", 300+30*n, 4.2*n, n, false)
	}
}

func scale(md map[string]string, key string, f float64) {
	v, _ := parseNumber(md[key])
	md[key] = fmt.Sprint(math.Round(math.Max(v, 1) * f))
}

// measureInjected returns, per injected anomaly, in how many of the sessions it was
// flagged at severity 5 or more.
func measureInjected(t testing.TB, cfg string, sessions int) map[string]int {
	t.Helper()
	out := map[string]int{}
	for k, inj := range injected {
		r := configured(t, cfg)
		for s := 0; s < sessions; s++ {
			seed := uint64(5000 + 1000*k + s)
			p, rnd := inj.steady(seed), rand.New(rand.NewPCG(seed, 5))
			id := fmt.Sprintf("inj-%d", s)
			for i := 0; i < 40; i++ {
				evaluate(t, r, id, i, p(rnd, i))
			}
			found := false
			for j := 0; ; j++ {
				md := p(rnd, 40+j)
				more := inj.change(md, j)
				if !more {
					break
				}
				for _, f := range evaluate(t, r, id, 40+j, md) {
					found = found || f.RuleID == inj.rule && f.Severity >= 5
				}
			}
			out[inj.name] += b2i(found)
		}
	}
	return out
}

// statsFPRTable formats the measurement.
func statsFPRTable(ord map[string]fprCount, inj map[string]int, sessions, injSessions int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d sessions of %d executions per kind (executions from the %dth judged), session graph off\n", sessions, fprExecutions, defaultMinSamples+1)
	fmt.Fprintf(&b, "| kind | executions judged | figures flagged ≥5 | figures any | error rate ≥5 | error rate any | all ≥5 | all any |\n|---|---|---|---|---|---|---|---|\n")
	var total fprCount
	for _, kind := range sessionKinds {
		c := ord[kind.name]
		fmt.Fprintf(&b, "| %s | %d | %s | %s | %s | %s | %s | %s |\n", kind.name, c.judged, pct(c.figures5, c.judged), pct(c.figuresAny, c.judged),
			pct(c.errs5, c.judged), pct(c.errsAny, c.judged), pct(c.any5, c.judged), pct(c.anyAny, c.judged))
		total.judged += c.judged
		total.figures5 += c.figures5
		total.figuresAny += c.figuresAny
		total.errs5 += c.errs5
		total.errsAny += c.errsAny
		total.any5 += c.any5
		total.anyAny += c.anyAny
		total.failures += c.failures
		total.failures5 += c.failures5
	}
	c := total
	fmt.Fprintf(&b, "| all | %d | %s | %s | %s | %s | %s | %s |\n", c.judged, pct(c.figures5, c.judged), pct(c.figuresAny, c.judged),
		pct(c.errs5, c.judged), pct(c.errsAny, c.judged), pct(c.any5, c.judged), pct(c.anyAny, c.judged))
	fmt.Fprintf(&b, "\nordinary failures judged: %d, flagged at severity ≥5 by the error rate: %d (%s)\n", c.failures, c.failures5, pct(c.failures5, c.failures))
	fmt.Fprintf(&b, "\ninjected into steady sessions (after 40 executions), flagged at severity ≥5 by their rule:\n")
	for _, in := range injected {
		note := ""
		switch {
		case in.want == 0:
			note = " (reported, not required)"
		case in.want < 1:
			note = fmt.Sprintf(" (at least %g %% required)", 100*in.want)
		}
		fmt.Fprintf(&b, "- %s: %d of %d%s\n", in.name, inj[in.name], injSessions, note)
	}
	return b.String()
}

// TestStatsFalsePositives measures how often the per-execution statistics flag
// ordinary work (four kinds of synthetic session) and checks that real anomalies
// injected into steady sessions are still flagged at severity 5 or more, what the
// strict policy acts on. The default run is small; the full measurement (the figures
// in the config schema) runs on demand:
//
//	LIMIT_ANOMALY_FPR=1 go test -run StatsFalsePositives -v ./plugins/governance-anomaly
func TestStatsFalsePositives(t *testing.T) {
	sessions, injSessions := 40, 40
	if os.Getenv("LIMIT_ANOMALY_FPR") != "" {
		sessions, injSessions = 1000, 500
	}
	cfg := `{"session_graph": false}`
	ord := measureOrdinary(t, cfg, sessions)
	inj := measureInjected(t, cfg, injSessions)
	t.Log("\n" + statsFPRTable(ord, inj, sessions, injSessions))
	// Bounds with margin over the measurement (1000 sessions per kind: figures at 5 or
	// more 1.4 % of heterogeneous executions, 1.2 % of chat ones, 0 % of the others; the
	// linear z-score of version 0.2.0 flagged 15 % and 19 %).
	for _, kind := range sessionKinds {
		if c := ord[kind.name]; float64(c.figures5) > 0.03*float64(c.judged) {
			t.Errorf("%s sessions: %d of %d executions flagged at severity 5 or more by their figures, want at most 3 %%", kind.name, c.figures5, c.judged)
		}
	}
	for _, kind := range []string{"homogeneous", "drifting"} {
		if c := ord[kind]; float64(c.figuresAny) > 0.005*float64(c.judged) {
			t.Errorf("%s sessions: %d of %d executions flagged by their figures, want at most 0.5 %%", kind, c.figuresAny, c.judged)
		}
	}
	// The error rate at 5 or more (1000 sessions per kind): 0 to 0.03 % of the executions
	// of each kind, 0.01 % of all (version 0.3.0, which judged one failure at a time: 0.4
	// to 0.7 %), all of them chance runs of 3 failures or more, none a lone failure.
	for _, kind := range sessionKinds {
		if c := ord[kind.name]; float64(c.errs5) > 0.001*float64(c.judged) {
			t.Errorf("%s sessions: %d of %d executions flagged at severity 5 or more by the error rate, want at most 0.1 %%", kind.name, c.errs5, c.judged)
		}
	}
	for _, in := range injected {
		if in.want > 0 && float64(inj[in.name]) < in.want*float64(injSessions) {
			t.Errorf("%s flagged at severity 5 or more in %d of %d sessions, want at least %g %%", in.name, inj[in.name], injSessions, 100*in.want)
		}
	}
}
