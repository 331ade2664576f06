package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/limitgraph/limit/host/rd"
	"github.com/limitgraph/limit/sdk/base"
	"github.com/limitgraph/limit/sdk/governance"
)

// profile returns the figures of execution i of a session; r is the session's own
// random source.
type profile func(r *rand.Rand, i int) map[string]string

// figures formats one execution's figures as the host sends them.
func figures(durMS, outBytes, tokens float64, status string) map[string]string {
	exit := "0"
	if status != "ok" {
		exit = "1"
	}
	return map[string]string{
		"duration_ms": fmt.Sprint(int(durMS)), "duration_us": fmt.Sprint(int(durMS * 1000)),
		"output_bytes": fmt.Sprint(int(outBytes)), "tokens": fmt.Sprint(int(tokens)),
		"status": status, "exit_code": exit, "runner": "python",
	}
}

// ordinary sessions differ from one another (their own typical duration, output and
// tokens, a rare failure) but stay within one order of magnitude.
func ordinary(seed uint64) profile {
	b := rand.New(rand.NewPCG(seed, 7))
	dur, out, tok := 60+80*b.Float64(), 800+2400*b.Float64(), 120+160*b.Float64()
	return func(r *rand.Rand, i int) map[string]string {
		status := "ok"
		if r.IntN(25) == 0 {
			status = "error"
		}
		j := func() float64 { return 0.75 + 0.5*r.Float64() }
		return figures(dur*j(), out*j(), tok*j(), status)
	}
}

// Sessions that behave very differently, each consistently (so the per-execution
// statistics, which compare a session with itself, see nothing unusual).
var unusual = map[string]profile{
	"long outputs": func(r *rand.Rand, i int) map[string]string {
		return figures(90+20*r.Float64(), 400_000+200_000*r.Float64(), 4000+1000*r.Float64(), "ok")
	},
	"failing": func(r *rand.Rand, i int) map[string]string {
		st := "ok"
		if i%2 == 1 {
			st = "error"
		}
		return figures(90+20*r.Float64(), 1500+500*r.Float64(), 200, st)
	},
	"timing pattern": func(r *rand.Rand, i int) map[string]string {
		d := 3.0
		if i%2 == 1 {
			d = 3000
		}
		return figures(d*(0.9+0.2*r.Float64()), 1500+500*r.Float64(), 200, "ok")
	},
	"timeouts": func(r *rand.Rand, i int) map[string]string {
		return figures(30_000, 100*r.Float64(), 0, "timeout")
	},
}

// runSession evaluates n executions of a session and returns its session-graph findings.
func runSession(t testing.TB, r governance.Rule, id string, n int, p profile, seed uint64) []governance.Finding {
	t.Helper()
	rnd := rand.New(rand.NewPCG(seed, 11))
	var out []governance.Finding
	for i := 0; i < n; i++ {
		fs, err := r.Evaluate(context.Background(), governance.EvaluateRequest{
			Stage: governance.StagePost, SessionID: id, TraceID: fmt.Sprintf("%s-%d", id, i), Runner: "python",
			ContentType: "text/output", Content: "out", Metadata: p(rnd, i),
		})
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range fs {
			if f.RuleID == ruleSessionGraph {
				out = append(out, f)
			}
		}
	}
	return out
}

// warm feeds count ordinary sessions of n executions.
func warm(t testing.TB, r governance.Rule, count, n int) { warmFrom(t, r, 0, count, n) }

// warmFrom feeds ordinary sessions first to first+count-1 of n executions.
func warmFrom(t testing.TB, r governance.Rule, first, count, n int) {
	t.Helper()
	for s := first; s < first+count; s++ {
		if fs := runSession(t, r, fmt.Sprintf("ordinary-%02d", s), n, ordinary(uint64(s)), uint64(s)); len(fs) != 0 {
			t.Fatalf("ordinary session %d flagged: %+v", s, fs)
		}
	}
}

// closest matches the first of the closest sessions in a reason.
var closest = regexp.MustCompile(`\((ordinary|odd)-\d+ at [0-9.]+`)

// TestSessionGraph checks that ordinary sessions are not flagged and each unusual one
// is, with its z-score, distance and closest sessions in the finding. The unusual
// sessions run one after the other against the same earlier sessions (each becomes a
// reference in turn, without hiding the next: a score is the mean over 3 neighbours).
func TestSessionGraph(t *testing.T) {
	r := configured(t, `{}`)
	warm(t, r, 32, 16)
	for i, name := range slices.Sorted(maps.Keys(unusual)) {
		fs := runSession(t, r, fmt.Sprintf("odd-%d", i), 16, unusual[name], 99)
		if len(fs) != 1 {
			t.Fatalf("%s: unusual session: %d session-graph findings, want 1", name, len(fs))
		}
		f := fs[0]
		if f.Flag != governance.FlagAnomaly || f.Score < defaultGraphThreshold || f.Severity < 4 ||
			!strings.Contains(f.Reason, fmt.Sprintf("robust z-score %.1f", f.Score)) ||
			!strings.Contains(f.Reason, "mean FGW distance ") || !closest.MatchString(f.Reason) {
			t.Errorf("%s: finding %+v: want the z-score, the distance and the closest sessions", name, f)
		}
		t.Logf("%s: %s", name, f.Reason)
	}
	// Later ordinary sessions are still not flagged, though the odd ones are references.
	warmFrom(t, r, 32, 4, 24)
}

// TestSessionGraphPlugin checks the session graph through the real plugin process:
// described, silent on ordinary sessions, and flagging an unusual one.
func TestSessionGraphPlugin(t *testing.T) {
	r := launch(t, `{"graph_references": 16}`)
	ds, err := r.Describe(context.Background())
	if err != nil || !slices.ContainsFunc(ds, func(d governance.RuleDescription) bool { return d.ID == ruleSessionGraph }) {
		t.Fatalf("Describe: %v, %+v: no %s", err, ds, ruleSessionGraph)
	}
	warm(t, r, 16, 16)
	fs := runSession(t, r, "odd", 16, unusual["timing pattern"], 1)
	if len(fs) != 1 || fs[0].Score < defaultGraphThreshold || !strings.Contains(fs[0].Reason, "of 16 earlier sessions") {
		t.Fatalf("unusual session through the plugin: %+v", fs)
	}
}

// TestSessionGraphDeterministic checks that the same executions give the same findings.
func TestSessionGraphDeterministic(t *testing.T) {
	play := func() []governance.Finding {
		r := configured(t, `{}`)
		warm(t, r, 20, 16)
		return runSession(t, r, "odd", 24, unusual["long outputs"], 5)
	}
	a, b := play(), play()
	if len(a) == 0 || !slices.Equal(a, b) {
		t.Fatalf("two runs differ or found nothing:\n%+v\n%+v", a, b)
	}
}

// TestSessionGraphBounded checks that the reference set keeps at most graph_references
// graphs, one per session, of at most graph_nodes nodes, and that max_sessions still
// bounds the per-session histories.
func TestSessionGraphBounded(t *testing.T) {
	r := configured(t, `{"graph_references": 6, "graph_nodes": 10, "max_sessions": 4}`)
	warm(t, r, 30, 40)
	// Judge one session several times: it keeps one graph in the set.
	runSession(t, r, "ordinary-29", 40, ordinary(29), 1)
	r.graphMu.Lock()
	defer r.graphMu.Unlock()
	if n := len(r.ownerRefs("")); n != 6 {
		t.Fatalf("%d references kept, want 6", n)
	}
	seen := map[string]bool{}
	for _, g := range r.ownerRefs("") {
		if seen[g.session] {
			t.Errorf("session %s has two graphs in the reference set", g.session)
		}
		seen[g.session] = true
		if g.nodes() != 10 {
			t.Errorf("graph of %s has %d nodes, want 10", g.session, g.nodes())
		}
	}
	if n := r.sessionCount(); n != 4 {
		t.Errorf("%d sessions kept, want 4", n)
	}
}

// TestNearestPruning checks that the lower-bound search finds the same neighbours as
// computing FGW against every reference, with fewer FGW computations.
func TestNearestPruning(t *testing.T) {
	var set graphSet
	rnd := rand.New(rand.NewPCG(1, 2))
	graphOf := func(id string, p profile) *sessionGraph {
		steps := make([]step, 16)
		for i := range steps {
			obs, err := parse(p(rnd, i))
			if err != nil {
				t.Fatal(err)
			}
			steps[i] = newStep(obs, p(rnd, i), "python")
		}
		return buildGraph(id, len(steps), steps)
	}
	for i := 0; i < 24; i++ {
		set.add(graphOf(fmt.Sprint("s", i), ordinary(uint64(i))), 24)
	}
	for _, name := range []string{"long outputs", "timing pattern"} {
		g := graphOf("probe-"+name, unusual[name])
		before := set.solves
		got, others, err := set.nearest(g, 3)
		if err != nil {
			t.Fatal(err)
		}
		pruned := set.solves - before
		all := graphSet{refs: set.refs}
		want, _, err := all.nearest(g, len(set.refs))
		if err != nil {
			t.Fatal(err)
		}
		if others != 24 || !slices.Equal(got, want[:3]) {
			t.Errorf("%s: pruned search %v, exhaustive %v", name, got, want[:3])
		}
		t.Logf("%s: %d of 24 FGW computations", name, pruned)
	}
	g := graphOf("probe-ordinary", ordinary(77))
	before := set.solves
	if _, _, err := set.nearest(g, 3); err != nil {
		t.Fatal(err)
	}
	n := set.solves - before
	t.Logf("ordinary: %d of 24 FGW computations", n)
	if n >= 24 {
		t.Errorf("ordinary probe: %d FGW computations, the lower bound pruned none", n)
	}
}

// TestSessionGraphOff checks that session_graph = false keeps no graphs and describes no
// session-graph rule.
func TestSessionGraphOff(t *testing.T) {
	r := configured(t, `{"session_graph": false}`)
	warm(t, r, 12, 16)
	if fs := runSession(t, r, "odd", 16, unusual["long outputs"], 1); len(fs) != 0 {
		t.Errorf("session graph off, still flagged: %+v", fs)
	}
	if len(r.ownerRefs("")) != 0 || r.sessions["odd"].Value.(*session).steps != nil {
		t.Error("session graph off, graphs kept")
	}
	ds, _ := r.Describe(context.Background())
	if slices.ContainsFunc(ds, func(d governance.RuleDescription) bool { return d.ID == ruleSessionGraph }) {
		t.Errorf("session graph off, still described: %+v", ds)
	}
}

// TestStepFeatures checks what an execution's metadata becomes, including the keys the
// host may add (input_bytes, pre_flags) and their absence.
func TestStepFeatures(t *testing.T) {
	md := map[string]string{"duration_ms": "99", "duration_us": "99000", "output_bytes": "999", "tokens": "9",
		"status": "timeout", "exit_code": "-1", "input_bytes": "9999", "pre_flags": "unsafe, high_risk,bogus"}
	obs, err := parse(md)
	if err != nil {
		t.Fatal(err)
	}
	row := make([]float64, featureDims)
	newStep(obs, md, "python").features(row)
	near := func(a, b float64) bool { return math.Abs(a-b) < 1e-6 }
	if !near(row[fDuration], 2) || !near(row[fOutput], 3) || !near(row[fTokens], 1) || !near(row[fInput], 4) ||
		row[fFailed] != 1 || row[fExhausted] != 1 {
		t.Errorf("figures: %v", row[:fRunner])
	}
	var runner, flags float64
	for _, v := range row[fRunner:fFlags] {
		runner += v * v
	}
	for _, v := range row[fFlags:] {
		flags += v
	}
	if !near(runner, 0.5) || flags != 2 || row[fFlags+slices.Index(flagNames[:], governance.FlagUnsafe)] != 1 {
		t.Errorf("runner %v, flags %v", row[fRunner:fFlags], row[fFlags:])
	}
	// Only what every host sends today.
	md = map[string]string{"duration_ms": "9", "status": "ok"}
	obs, _ = parse(md)
	newStep(obs, md, "").features(row)
	if !near(row[fDuration], 1) || slices.ContainsFunc(row[fOutput:], func(v float64) bool { return v != 0 }) {
		t.Errorf("minimal metadata: %v", row)
	}
}

// TestSessionGraphConcurrent runs sessions in parallel, with a reconfiguration in the
// middle (which forgets the reference set), for the race detector; the reference set
// stays within its bound.
func TestSessionGraphConcurrent(t *testing.T) {
	r := configured(t, `{"graph_references": 8, "graph_every": 4}`)
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for s := 0; s < 6; s++ {
				id := fmt.Sprintf("w%d-s%d", w, s)
				runSession(t, r, id, 20, ordinary(uint64(10*w+s)), uint64(s))
			}
		}()
	}
	if ds := r.Configure(context.Background(), base.ConfigureRequest{Config: json.RawMessage(`{"graph_references": 6, "graph_every": 4}`)}); ds.HasErrors() {
		t.Fatal(ds.Err())
	}
	wg.Wait()
	r.graphMu.Lock()
	defer r.graphMu.Unlock()
	if n := len(r.ownerRefs("")); n == 0 || n > 6 {
		t.Errorf("%d references after reconfiguring to 6", n)
	}
}

// TestLowerBound checks that lowerBound never exceeds the FGW distance, across graphs
// of different sizes and behaviours, and w2Sorted on known values.
func TestLowerBound(t *testing.T) {
	if got := w2Sorted([]float64{0, 1}, []float64{0, 0, 1, 1}); math.Abs(got) > 1e-12 {
		t.Errorf("w2 of equal distributions = %v", got)
	}
	if got := w2Sorted([]float64{0}, []float64{0, 0, 0, 2}); math.Abs(got-1) > 1e-12 {
		t.Errorf("w2(δ0, ¾δ0+¼δ2) = %v, want 1", got)
	}
	rnd := rand.New(rand.NewPCG(3, 4))
	profiles := []profile{ordinary(1), ordinary(2), unusual["failing"], unusual["long outputs"], unusual["timing pattern"], unusual["timeouts"]}
	var graphs []*sessionGraph
	for i, p := range profiles {
		for _, n := range []int{5, 16, 32} {
			steps := make([]step, n)
			for k := range steps {
				md := p(rnd, k)
				obs, _ := parse(md)
				steps[k] = newStep(obs, md, "python")
			}
			graphs = append(graphs, buildGraph(fmt.Sprint(i, "/", n), n, steps))
		}
	}
	var set graphSet
	for _, a := range graphs {
		set.refs = graphs
		near, _, err := set.nearest(a, len(graphs))
		if err != nil {
			t.Fatal(err)
		}
		// nearest prunes nothing when asked for every graph: all distances are exact.
		for _, nb := range near {
			b := graphs[slices.IndexFunc(graphs, func(g *sessionGraph) bool { return g.session == nb.session })]
			if lb := lowerBound(a, b); lb > nb.dist+1e-9 {
				t.Errorf("%s vs %s: lower bound %v above FGW %v", a.session, b.session, lb, nb.dist)
			}
		}
	}
}

// TestSessionGraphFalsePositives measures, at a few thresholds, how often ordinary
// sessions are flagged (400 sessions of 32 executions, each judged at 16, 24 and 32)
// and that the unusual ones still are. It takes a minute, so it runs on demand:
//
//	LIMIT_ANOMALY_FPR=1 go test -run FalsePositives -v ./plugins/governance-anomaly
func TestSessionGraphFalsePositives(t *testing.T) {
	if os.Getenv("LIMIT_ANOMALY_FPR") == "" {
		t.Skip("set LIMIT_ANOMALY_FPR=1 to measure")
	}
	for _, th := range []float64{3.5, 4, 4.5} {
		r := configured(t, fmt.Sprintf(`{"graph_threshold": %v}`, th))
		flagged, judged := 0, 0
		for s := 0; s < 400; s++ {
			fs := runSession(t, r, fmt.Sprintf("ordinary-%03d", s), 32, ordinary(uint64(s)), uint64(s))
			if s >= 20 { // the baseline is built by then
				judged += 3
				flagged += len(fs)
			}
		}
		line := fmt.Sprintf("graph_threshold %.1f: %d of %d comparisons of ordinary sessions flagged (%.1f %%); unusual sessions flagged:",
			th, flagged, judged, 100*float64(flagged)/float64(judged))
		for i, name := range slices.Sorted(maps.Keys(unusual)) {
			fs := runSession(t, r, fmt.Sprint("odd-", i), 32, unusual[name], 3)
			line += fmt.Sprintf(" %s %d/3", name, len(fs))
		}
		t.Log(line)
	}
}

// TestSessionGraphFlooredMADExplained: earlier sessions that all behaved alike (a user's
// notebooks of print calls) have scores whose MAD is below its floor, 0.2; the reason of a
// finding then says the z-score was divided by the floor, so that it can be checked from
// what it shows, as the per-execution findings do (found by a user journey: "MAD 0.18"
// with a z-score taken on 0.2), and their typical distance, 0 but for rounding, is not
// shown negative.
func TestSessionGraphFlooredMADExplained(t *testing.T) {
	r := configured(t, `{}`)
	for s := 0; s < 8; s++ {
		runSession(t, r, fmt.Sprintf("alike-%d", s), 16, ordinary(1), 1)
	}
	fs := runSession(t, r, "odd", 16, unusual["long outputs"], 1)
	if len(fs) != 1 {
		t.Fatalf("unusual session after alike ones: %+v, want one finding", fs)
	}
	if !strings.Contains(fs[0].Reason, fmt.Sprintf("taken as %g", graphMinMAD)) {
		t.Errorf("reason %q does not show the MAD the z-score was taken on", fs[0].Reason)
	}
	if strings.Contains(fs[0].Reason, "median -") {
		t.Errorf("reason %q shows a negative typical distance", fs[0].Reason)
	}
}

// TestSessionGraphFeaturesBelowRounding: two sessions of alike executions whose figures
// differ by one float32 step give feature costs far below the structures' rounding, which the FGW core refuses
// (rd.PrecisionError, lest it answer a plan the costs did not choose); the graph's distance
// is then the structures' alone, not an error that would end the rule's evaluation.
func TestSessionGraphFeaturesBelowRounding(t *testing.T) {
	steps := func(last float32) []step {
		s := make([]step, 8)
		for i := range s {
			s[i] = step{duration: 0.001, output: 3, runner: 1}
		}
		s[len(s)-1].duration = last
		return s
	}
	a := buildGraph("a", 8, steps(0.001))
	b := buildGraph("b", 8, steps(math.Nextafter32(0.001, 1)))
	m, err := rd.FeatureCost(b.f, a.f)
	if err != nil {
		t.Fatal(err)
	}
	cfg := rd.DefaultFGWConfig(rd.MethodCG)
	cfg.Alpha = graphAlpha
	var pe *rd.PrecisionError
	if _, err := rd.FGW(b.c, a.c, m, b.w, a.w, cfg); !errors.As(err, &pe) {
		t.Fatalf("the core's answer to feature costs below the structures' rounding: %v, want a PrecisionError (the test no longer tests the fallback)", err)
	}
	var set graphSet
	set.add(a, 24)
	got, _, err := set.nearest(b, 1)
	if err != nil {
		t.Fatalf("nearest: %v", err)
	}
	if len(got) != 1 || got[0].session != "a" || got[0].dist > 1e-9 {
		t.Fatalf("nearest of a session equal to a but for a float32 step: %+v, want a at distance ~0", got)
	}
}

// ownerRefs returns owner's reference graphs (none when it has no set). Callers hold
// r.graphMu or run alone.
func (r *rule) ownerRefs(owner string) []*sessionGraph {
	if el, ok := r.refs.sets[owner]; ok {
		return el.Value.(*graphSet).refs
	}
	return nil
}

// ownerSession evaluates n executions of owner's session id and returns its
// session-graph findings.
func ownerSession(t testing.TB, r governance.Rule, owner, id string, n int, p profile) []governance.Finding {
	t.Helper()
	rnd := rand.New(rand.NewPCG(uint64(len(id)), 3))
	var out []governance.Finding
	for i := 0; i < n; i++ {
		fs, err := r.Evaluate(context.Background(), governance.EvaluateRequest{
			Stage: governance.StagePost, SessionID: id, Owner: owner, TraceID: fmt.Sprintf("%s-%d", id, i), Runner: "python",
			ContentType: "text/output", Content: "out", Metadata: p(rnd, i),
		})
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range fs {
			if f.RuleID == ruleSessionGraph {
				out = append(out, f)
			}
		}
	}
	return out
}

// TestSessionGraphPerOwner is the audit's case, through the plugin process (so the
// request's Owner crosses the protocol): alice's sessions are not bob's reference set, so
// bob's session is neither judged against them nor told their ids or their number; once
// bob has earlier sessions of his own, a finding names only those, and counts only those.
func TestSessionGraphPerOwner(t *testing.T) {
	r := launch(t, `{"min_samples": 3, "graph_nodes": 4, "graph_neighbours": 1, "graph_every": 1, "graph_threshold": 0.01}`)
	prints := func(r *rand.Rand, i int) map[string]string { return figures(2+r.Float64(), 2, 0, "ok") }
	exits := func(r *rand.Rand, i int) map[string]string { return figures(30+r.Float64(), 20001, 0, "error") }
	for s := 0; s < 7; s++ {
		ownerSession(t, r, "alice", fmt.Sprintf("alice-%d", s), 4, prints)
	}
	if fs := ownerSession(t, r, "bob", "bob-odd", 5, exits); len(fs) != 0 {
		t.Fatalf("bob's first session judged against alice's: %+v", fs)
	}
	// Bob's own earlier sessions, then one unlike them: judged against his alone.
	for s := 0; s < 7; s++ {
		ownerSession(t, r, "bob", fmt.Sprintf("bob-%d", s), 4, prints)
	}
	fs := ownerSession(t, r, "bob", "bob-late", 5, exits)
	if len(fs) == 0 {
		t.Fatal("bob's session unlike his earlier ones: no finding")
	}
	for _, f := range fs {
		if strings.Contains(f.Reason, "alice") || !strings.Contains(f.Reason, "earlier sessions of its owner (bob-") {
			t.Errorf("bob's finding %q: want only bob's sessions named", f.Reason)
		}
		// bob-odd and bob-0 … bob-6: 8 earlier sessions of bob's, not alice's 7 more.
		if !strings.Contains(f.Reason, "of 8 earlier sessions") {
			t.Errorf("bob's finding %q: want bob's 8 earlier sessions counted, alone", f.Reason)
		}
	}
	// The operators' sessions (no owner) are a set of their own too.
	if fs := ownerSession(t, r, "", "op-odd", 5, exits); len(fs) != 0 {
		t.Fatalf("an operator's first session judged against users' sessions: %+v", fs)
	}
}

// TestSessionGraphOwnersBounded checks that at most graph_owners reference sets are kept,
// the least recently used forgotten first.
func TestSessionGraphOwnersBounded(t *testing.T) {
	r := configured(t, `{"graph_owners": 2, "graph_nodes": 4, "min_samples": 3}`)
	for i, owner := range []string{"a", "b", "a", "c"} {
		ownerSession(t, r, owner, fmt.Sprint(owner, "-", i), 4, ordinary(1))
	}
	if n := r.refs.len(); n != 2 {
		t.Fatalf("%d owners' sets kept, want 2", n)
	}
	if len(r.ownerRefs("a")) != 2 || len(r.ownerRefs("c")) != 1 || r.ownerRefs("b") != nil {
		t.Errorf("sets kept: a %d, b %d, c %d graphs; want a and c, b forgotten",
			len(r.ownerRefs("a")), len(r.ownerRefs("b")), len(r.ownerRefs("c")))
	}
}
