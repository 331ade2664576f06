package main

import (
	"container/list"
	"errors"
	"fmt"
	"hash/fnv"
	"math"
	"slices"
	"strings"

	"github.com/limitgraph/limit/host/rd"
	"github.com/limitgraph/limit/sdk/governance"
	"gonum.org/v1/gonum/mat"
)

// Session graphs. A session's latest executions form an attributed graph: one node per
// execution, node features = the execution's normalised figures, structure = distance
// in execution order plus distance in feature space (so the graph carries both the
// sequence and the spread of the session's behaviour). Every graph_every executions the
// session's graph is compared by FGW distortion (the RD core, host/rd) with the graphs of
// the sessions of the same owner seen before it; the mean distance to its nearest few is
// its score, and a score far above the scores those earlier sessions got when they were
// judged is an anomaly. Earlier sessions are kept as bounded reference sets of immutable
// graphs, one per owner (ownerSets).

// ruleSessionGraph is the rule id of session-graph findings.
const ruleSessionGraph = "anomaly.session_graph"

// Defaults of the session-graph attributes.
const (
	defaultGraphNodes      = 32
	defaultGraphReferences = 32
	defaultGraphNeighbours = 3
	defaultGraphEvery      = 8
	defaultGraphThreshold  = 4.0
)

const (
	// graphAlpha weighs structure against features in FGW (rd.DefaultAlpha).
	graphAlpha = rd.DefaultAlpha
	// minGraphBaseline is how many scored references the baseline needs before a
	// session is judged.
	minGraphBaseline = 5
	// Scores are compared on a log scale, as ln(graphEpsilon + score): distances are
	// positive and right-skewed (a few ordinary sessions with a failure or two score
	// several times the median), so what is unusual is a ratio, not a difference.
	// graphEpsilon (the distance of two sessions whose figures all differ by a seventh
	// of a decade) keeps near-identical sessions from making tiny distances look far
	// apart.
	graphEpsilon = 0.01
	// graphMinMAD floors the MAD of the log scores: references that all behave alike
	// would otherwise make any difference infinitely surprising. With it, a session is
	// flagged at the default threshold only beyond e^(4·0.2/0.6745) ≈ 3.3 times the
	// median (epsilon added to both).
	graphMinMAD = 0.2
	// minGraphSteps is how many executions a session needs before its graph is judged
	// (at least min_samples, at most graph_nodes): fewer make too noisy a score, one
	// failure in eight executions already looks like a different behaviour.
	minGraphSteps = 16
	// runnerBuckets is how many one-hot dimensions runner names are hashed into.
	runnerBuckets = 4
)

// flagNames are the governance flags an execution may carry from the pre stage.
var flagNames = [...]string{
	governance.FlagJailbreak, governance.FlagAnomaly, governance.FlagHighRisk,
	governance.FlagUnsafe, governance.FlagMalicious, governance.FlagUnverified,
}

// Node feature layout. Figures are log10(1+x), so a tenfold change weighs as much as a
// failure; the runner is one-hot (scaled so two runners differ by 1) and so are flags.
const (
	fDuration = iota
	fOutput
	fTokens
	fInput
	fFailed
	fExhausted
	fRunner
	fFlags      = fRunner + runnerBuckets
	featureDims = fFlags + len(flagNames)
)

// step is what the session graph keeps of one execution (compact: sessions are many).
type step struct {
	duration, output, tokens, input float32 // log10(1+x); 0 when absent
	failed, exhausted               bool
	runner                          uint8 // 1 + bucket; 0 unknown
	flags                           uint8 // bit i: flagNames[i]
}

// newStep reads an execution's figures. Absent figures are 0 in every session alike,
// so a host that does not send one simply does not compare on it.
func newStep(obs observation, md map[string]string, runner string) step {
	lg := func(v float64) float32 { return float32(math.Log10(1 + v)) }
	st := step{output: lg(obs.values["output_bytes"]), tokens: lg(obs.values["tokens"])}
	if us, err := parseFigure(md["duration_us"]); err == nil {
		st.duration = lg(us / 1000)
	} else {
		st.duration = lg(obs.values["duration_ms"])
	}
	if in, err := parseFigure(md["input_bytes"]); err == nil {
		st.input = lg(in)
	}
	st.failed = obs.status != "" && obs.status != "ok" && obs.status != "success" && obs.status != statusCancelled
	st.exhausted = obs.status == "timeout" || obs.status == "limit_exceeded"
	if code, ok := md["exit_code"]; ok && !st.failed && strings.TrimSpace(code) != "" && strings.TrimSpace(code) != "0" {
		st.failed = true
	}
	if runner == "" {
		runner = md["runner"]
	}
	if runner != "" {
		h := fnv.New32a()
		h.Write([]byte(runner))
		st.runner = uint8(1 + h.Sum32()%runnerBuckets)
	}
	for f := range strings.SplitSeq(md["pre_flags"], ",") {
		if i := slices.Index(flagNames[:], strings.TrimSpace(f)); i >= 0 {
			st.flags |= 1 << i
		}
	}
	return st
}

// parseFigure parses a non-negative finite number.
func parseFigure(s string) (float64, error) {
	v, err := parseNumber(s)
	if err != nil {
		return 0, err
	}
	if v < 0 {
		return 0, fmt.Errorf("%v is negative", v)
	}
	return v, nil
}

// features writes the step's feature vector into row (featureDims long).
func (st step) features(row []float64) {
	clear(row)
	row[fDuration], row[fOutput], row[fTokens], row[fInput] = float64(st.duration), float64(st.output), float64(st.tokens), float64(st.input)
	if st.failed {
		row[fFailed] = 1
	}
	if st.exhausted {
		row[fExhausted] = 1
	}
	if st.runner > 0 {
		row[fRunner+int(st.runner)-1] = math.Sqrt2 / 2
	}
	for i := range flagNames {
		if st.flags&(1<<i) != 0 {
			row[fFlags+i] = 1
		}
	}
}

// stepRing is a session's latest executions.
type stepRing struct {
	steps []step
	next  int
	// seen counts every execution added; judged is seen at the last comparison.
	seen, judged int
}

func (g *stepRing) add(st step, capacity int) {
	g.seen++
	if len(g.steps) < capacity {
		g.steps = append(g.steps, st)
		return
	}
	g.steps[g.next] = st
	g.next = (g.next + 1) % len(g.steps)
}

// chronological returns the steps oldest first.
func (g *stepRing) chronological() []step {
	return append(slices.Clone(g.steps[g.next:]), g.steps[:g.next]...)
}

// sessionGraph is one session's graph at one moment; immutable once built, so the
// reference set shares it with comparisons running outside the rule's lock.
type sessionGraph struct {
	// session and owner are the request's SessionID and Owner.
	session, owner string
	// executions is how many executions the session had when the graph was built.
	executions int
	c, f       *mat.Dense // structure n×n, features n×featureDims
	w          []float64  // uniform node weights
	// sorted holds each feature's values over the nodes, sorted, and last the nodes'
	// eccentricities √(Σ_k C_ik² w_k), sorted: what lowerBound needs.
	sorted [featureDims + 1][]float64
	// score is the mean FGW distance to the nearest earlier sessions when the graph was
	// judged; NaN when there were too few to judge it.
	score float64
	// flagged graphs stay references (a later session like them is not unusual) but
	// leave the baseline, which describes how far ordinary sessions are from theirs.
	flagged bool
}

// buildGraph makes the graph of steps (oldest first, at least two).
func buildGraph(session string, executions int, steps []step) *sessionGraph {
	n := len(steps)
	g := &sessionGraph{session: session, executions: executions, c: mat.NewDense(n, n, nil), f: mat.NewDense(n, featureDims, nil),
		w: make([]float64, n), score: math.NaN()}
	for d := range g.sorted {
		g.sorted[d] = make([]float64, n)
	}
	for i, st := range steps {
		row := g.f.RawRowView(i)
		st.features(row)
		for d, v := range row {
			g.sorted[d][i] = v
		}
		g.w[i] = 1 / float64(n)
	}
	for i := 0; i < n; i++ {
		fi := g.f.RawRowView(i)
		ci := g.c.RawRowView(i)
		for j := i + 1; j < n; j++ {
			fj := g.f.RawRowView(j)
			var s float64
			for d := range fi {
				x := fi[d] - fj[d]
				s += x * x
			}
			v := float64(j-i)/float64(n-1) + math.Sqrt(s)
			ci[j] = v
			g.c.Set(j, i, v)
		}
	}
	ecc := g.sorted[featureDims]
	for i := 0; i < n; i++ {
		var s float64
		for _, v := range g.c.RawRowView(i) {
			s += v * v
		}
		ecc[i] = math.Sqrt(s / float64(n))
	}
	for _, col := range g.sorted {
		slices.Sort(col)
	}
	return g
}

// lowerBound is a lower bound of FGW(a, b) that costs O(d·n), no transport problem.
// FGW is min over couplings T of (1−α)⟨M,T⟩ + α·Σ (C1_ik − C2_jl)² T_ij T_kl, at least
// the sum of the two terms' minima. M is a sum over feature dimensions of squared
// differences, so ⟨M,T⟩ is at least the sum over dimensions of the squared 1-D
// Wasserstein distances of the nodes' values. For fixed i, j the inner sum over k, l is
// a squared L2(T) distance, at least the squared difference of the norms, the
// eccentricities e1_i = √(Σ_k C1_ik² p_k) and e2_j: the structure term is at least α
// times the squared 1-D Wasserstein distance of the eccentricities. The solver's
// distance (a local minimum) is above the true minimum, so above this bound too.
func lowerBound(a, b *sessionGraph) float64 {
	var feat float64
	for d := 0; d < featureDims; d++ {
		feat += w2Sorted(a.sorted[d], b.sorted[d])
	}
	return (1-graphAlpha)*feat + graphAlpha*w2Sorted(a.sorted[featureDims], b.sorted[featureDims])
}

// w2Sorted is the squared 2-Wasserstein distance between the uniform distributions on
// the sorted values a and b: the integral over t in [0, 1] of the squared difference of
// their quantile functions, which are steps at multiples of 1/len(a) and 1/len(b).
func w2Sorted(a, b []float64) float64 {
	n, m := len(a), len(b)
	var s, t float64
	for i, j := 0, 0; i < n && j < m; {
		ta, tb := float64(i+1)/float64(n), float64(j+1)/float64(m)
		next := min(ta, tb)
		d := a[i] - b[j]
		s += (next - t) * d * d
		t = next
		if ta <= tb {
			i++
		}
		if tb <= ta {
			j++
		}
	}
	return s
}

// neighbour is a reference and its distance.
type neighbour struct {
	session string
	dist    float64
}

// graphSettings are the session-graph attributes.
type graphSettings struct {
	enabled                  bool
	nodes, references, every int
	neighbours               int
	// owners bounds how many owners' reference sets are kept.
	owners    int
	threshold float64
}

// graphSet is one owner's reference set: the latest graphs of the owner's last sessions
// judged, oldest first, at most graphSettings.references (one per session).
type graphSet struct {
	owner string
	refs  []*sessionGraph
	ws    *rd.Workspace
	// solves counts FGW computations (tests check the pruning).
	solves int
}

// ownerSets are the reference sets, one per owner of sessions (the request's Owner: a
// user, or "" for the operators' sessions), so that a session is judged against, and a
// finding names, only sessions of its own owner: another user's sessions are none of
// its business, not even their number. At most graphSettings.owners sets are kept; the
// least recently used is forgotten first. The sets share one FGW workspace (comparisons
// are serialised by the rule's graphMu).
type ownerSets struct {
	sets map[string]*list.Element // of *graphSet
	lru  *list.List               // front: most recently used
	ws   *rd.Workspace
}

func newOwnerSets() *ownerSets {
	return &ownerSets{sets: map[string]*list.Element{}, lru: list.New()}
}

// get returns owner's reference set, creating it, and marks it most recently used; the
// least recently used sets beyond limit are forgotten.
func (o *ownerSets) get(owner string, limit int) *graphSet {
	if o.ws == nil {
		o.ws = rd.NewWorkspace()
	}
	if el, ok := o.sets[owner]; ok {
		o.lru.MoveToFront(el)
		return el.Value.(*graphSet)
	}
	gs := &graphSet{owner: owner, ws: o.ws}
	o.sets[owner] = o.lru.PushFront(gs)
	for o.lru.Len() > limit {
		old := o.lru.Back()
		o.lru.Remove(old)
		delete(o.sets, old.Value.(*graphSet).owner)
	}
	return gs
}

// len returns how many owners' sets are kept.
func (o *ownerSets) len() int { return o.lru.Len() }

// nearest returns g's k nearest references of other sessions, nearest first, and how
// many references of other sessions there were. References are visited in order of
// lowerBound, and the search stops once the bound of the next one cannot beat the
// k-th distance found: the result is the same as computing them all.
func (gs *graphSet) nearest(g *sessionGraph, k int) ([]neighbour, int, error) {
	type cand struct {
		ref *sessionGraph
		lb  float64
		pos int
	}
	var cands []cand
	for i, ref := range gs.refs {
		if ref.session != g.session {
			cands = append(cands, cand{ref, lowerBound(g, ref), i})
		}
	}
	slices.SortFunc(cands, func(a, b cand) int {
		if a.lb != b.lb {
			return cmpFloat(a.lb, b.lb)
		}
		return a.pos - b.pos
	})
	if gs.ws == nil {
		gs.ws = rd.NewWorkspace()
	}
	cfg := rd.DefaultFGWConfig(rd.MethodCG)
	cfg.Alpha = graphAlpha
	var best []neighbour
	for _, c := range cands {
		if len(best) == k && c.lb >= best[k-1].dist {
			break
		}
		m, err := rd.FeatureCost(g.f, c.ref.f)
		if err != nil {
			return nil, 0, err
		}
		res, err := rd.FGW(g.c, c.ref.c, m, g.w, c.ref.w, cfg, rd.WithWorkspace(gs.ws))
		if pe := (*rd.PrecisionError)(nil); errors.As(err, &pe) {
			// The features' costs are below the structures' rounding: they cannot move the
			// distance, so it is the structures' alone (a constant feature cost).
			rows, cols := m.Dims()
			res, err = rd.FGW(g.c, c.ref.c, mat.NewDense(rows, cols, nil), g.w, c.ref.w, cfg, rd.WithWorkspace(gs.ws))
		}
		if err != nil {
			return nil, 0, fmt.Errorf("fgw of session %s against session %s: %w", g.session, c.ref.session, err)
		}
		gs.solves++
		nb := neighbour{c.ref.session, max(res.Distance, 0)}
		i, _ := slices.BinarySearchFunc(best, nb, func(a, b neighbour) int { return cmpFloat(a.dist, b.dist) })
		for i < len(best) && best[i].dist == nb.dist {
			i++ // equal distances keep visiting order
		}
		best = slices.Insert(best, i, nb)
		if len(best) > k {
			best = best[:k]
		}
	}
	return best, len(cands), nil
}

func cmpFloat(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// logScore is the scale scores are compared on.
func logScore(score float64) float64 { return math.Log(graphEpsilon + score) }

// baseline returns the median and MAD of the log scores of the references of other
// sessions that were not flagged, and how many there were.
func (gs *graphSet) baseline(session string) (med, mad float64, n int) {
	var scores []float64
	for _, ref := range gs.refs {
		if ref.session != session && !ref.flagged && !math.IsNaN(ref.score) {
			scores = append(scores, logScore(ref.score))
		}
	}
	if len(scores) == 0 {
		return math.NaN(), math.NaN(), 0
	}
	med = median(scores)
	for i, v := range scores {
		scores[i] = math.Abs(v - med)
	}
	return med, median(scores), len(scores)
}

// add puts g into the set in place of its session's older graph, forgetting the oldest
// reference beyond limit.
func (gs *graphSet) add(g *sessionGraph, limit int) {
	gs.refs = slices.DeleteFunc(gs.refs, func(ref *sessionGraph) bool { return ref.session == g.session })
	gs.refs = append(gs.refs, g)
	if over := len(gs.refs) - limit; over > 0 {
		gs.refs = slices.Delete(gs.refs, 0, over)
	}
}

// judge compares g with the reference set, returns a finding when g is far from it
// (nil otherwise), and adds g to the set.
func (gs *graphSet) judge(g *sessionGraph, set graphSettings) (*governance.Finding, error) {
	defer gs.add(g, set.references)
	near, others, err := gs.nearest(g, set.neighbours)
	if err != nil {
		return nil, err
	}
	if len(near) < set.neighbours {
		return nil, nil
	}
	var sum float64
	for _, nb := range near {
		sum += nb.dist
	}
	g.score = sum / float64(len(near))
	med, mad, n := gs.baseline(g.session)
	if n < minGraphBaseline {
		return nil, nil
	}
	z := madScale * (logScore(g.score) - med) / max(mad, graphMinMAD)
	if z < set.threshold {
		return nil, nil
	}
	g.flagged = true
	typical := max(math.Exp(med)-graphEpsilon, 0) // not -5e-18 when every score was 0
	spread := fmt.Sprintf("MAD %.2f", mad)
	if mad < graphMinMAD {
		// Say what the z-score was divided by, so that it can be checked.
		spread = fmt.Sprintf("MAD %.2f, taken as %g, the least that counts,", mad, graphMinMAD)
	}
	names := make([]string, len(near))
	for i, nb := range near {
		names[i] = fmt.Sprintf("%s at %.3g", nb.session, nb.dist)
	}
	return &governance.Finding{
		Flag: governance.FlagAnomaly, Severity: severity(z), Score: z, RuleID: ruleSessionGraph,
		Reason: fmt.Sprintf("the graph of this session's last %d executions is at mean FGW distance %.3g from its %d nearest of %d earlier sessions of its owner (%s); "+
			"earlier sessions were at a median %.3g from theirs, this one %.1f times as far on ln(%g+distance) (%s over %d sessions): robust z-score %.1f, threshold %.1f",
			g.nodes(), g.score, len(near), others, strings.Join(names, ", "),
			typical, (graphEpsilon+g.score)/math.Exp(med), graphEpsilon, spread, n, z, set.threshold),
	}, nil
}

// nodes is the number of executions in the graph.
func (g *sessionGraph) nodes() int { return len(g.w) }

// minSteps is how many executions a session needs before its graph is judged.
func (set graphSettings) minSteps(minSamples int) int {
	return min(max(minSamples, minGraphSteps), set.nodes)
}
