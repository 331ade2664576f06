package main

import (
	"container/list"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/limitgraph/limit/host/version"
	"github.com/limitgraph/limit/internal/clip"
	"github.com/limitgraph/limit/sdk/base"
	"github.com/limitgraph/limit/sdk/governance"
)

// Defaults of the config attributes.
const (
	defaultWindow      = 50
	defaultMinSamples  = 8
	defaultThreshold   = 3.5
	defaultMaxSessions = 10000
	// defaultGraphOwners is how many owners' reference sets are kept (about 0.5 MB each
	// at the default graph_nodes and graph_references).
	defaultGraphOwners = 64
	// recentTraces is how many evaluated requests per session are remembered, so the
	// same request evaluated again gets the same answer and is not counted twice.
	recentTraces = 16
)

// metric is one execution figure the host passes in the request's metadata.
type metric struct {
	// Key in EvaluateRequest.Metadata.
	Key string
	// RuleID of its findings.
	RuleID string
	// Floor in the metric's unit: figures are judged as ln(Floor+x), so differences
	// well below it (a 0 against a 2 ms print) count for little.
	Floor float64
	Unit  string
	Desc  string
}

var metrics = []metric{
	{"duration_ms", "anomaly.duration", 5, "ms", "Execution duration far from the session's median, on a log scale (robust z-score of ln(5+ms) on its median and MAD)."},
	{"output_bytes", "anomaly.output_size", 64, "bytes", "Output size far from the session's median, on a log scale (robust z-score of ln(64+bytes) on its median and MAD)."},
	{"tokens", "anomaly.tokens", 8, "tokens", "Token count far from the session's median, on a log scale (robust z-score of ln(8+tokens) on its median and MAD)."},
}

// Log-scale statistics of the figures (measured by TestStatsFalsePositives).
const (
	// logMinMAD is the least MAD of ln(floor+x) a z-score is taken on: a session of
	// identical executions still varies by some 20 % (log-normal noise of deviation 0.3
	// has a MAD of 0.2). At the default threshold a figure is flagged beyond about
	// e^(3.5·0.25/0.6745) ≈ 3.7 times the median, at severity 5 beyond 6.4 times.
	logMinMAD = 0.25
	// precedentFactor and minPrecedents: a figure within precedentFactor times of
	// minPrecedents of the window's, as far from the median, is one the session has
	// produced before; it is flagged at severity 4 at most.
	precedentFactor = 2.0
	minPrecedents   = 2
)

// Error-rate statistics (measured by TestStatsFalsePositives).
const (
	// burstWindow is the longest run of latest executions judged as a burst: k failures
	// among the last w ≤ burstWindow, against the session's rate before them.
	burstWindow = 10
	// minBurst is how many failures a burst needs for severity 5 (what strict acts on);
	// two failures, or one, are worth a look at most. A lone failure can never be
	// unlikely enough: its probability is the session's smoothed rate, at least
	// 1/(window+2), 2 % by default (z 2.1).
	minBurst = 3
	// burstSevereZ is the z-score (probability 2.3e-4, an exact binomial tail, not a
	// robust z on heavy-tailed figures) at which a burst of minBurst failures or more is
	// severity 5; 6 at z 10, 7 at z 20, as for the figures.
	burstSevereZ = 3.5
)

// statusCancelled is the status of an execution cancelled before it ended.
const statusCancelled = "cancelled"

// ruleErrorRate is the rule id of error-rate findings.
const ruleErrorRate = "anomaly.error_rate"

// rawConfig is the config block as the host sends it.
type rawConfig struct {
	Window      *float64 `json:"window"`
	MinSamples  *float64 `json:"min_samples"`
	Threshold   *float64 `json:"threshold"`
	MaxSessions *float64 `json:"max_sessions"`

	SessionGraph    *bool    `json:"session_graph"`
	GraphNodes      *float64 `json:"graph_nodes"`
	GraphReferences *float64 `json:"graph_references"`
	GraphNeighbours *float64 `json:"graph_neighbours"`
	GraphEvery      *float64 `json:"graph_every"`
	GraphThreshold  *float64 `json:"graph_threshold"`
	GraphOwners     *float64 `json:"graph_owners"`
}

// settings is a checked configuration.
type settings struct {
	window, minSamples, maxSessions int
	threshold                       float64
	graph                           graphSettings
}

func defaultSettings() settings {
	return settings{window: defaultWindow, minSamples: defaultMinSamples, maxSessions: defaultMaxSessions, threshold: defaultThreshold,
		graph: graphSettings{enabled: true, nodes: defaultGraphNodes, references: defaultGraphReferences,
			neighbours: defaultGraphNeighbours, every: defaultGraphEvery, owners: defaultGraphOwners, threshold: defaultGraphThreshold}}
}

// session is one session's history.
type session struct {
	id      string
	metrics map[string]*ring
	// statuses of the last window+burstWindow−1 executions (cancelled ones aside):
	// true is a failure. A burst of the latest ones is judged against the window before.
	statuses []bool
	// recent maps a request's digest to the findings it got.
	recent     map[string][]governance.Finding
	recentKeys []string
	// steps are the latest executions, for the session graph (nil when it is off).
	steps *stepRing
}

// rule is the plugin.
type rule struct {
	mu       sync.Mutex
	set      settings
	sessions map[string]*list.Element // of *session
	lru      *list.List               // front: most recently used
	// gen counts configuration changes (written under both locks), so a comparison
	// started under an older configuration does not feed the new reference set.
	gen int

	// graphMu serialises session-graph comparisons and guards refs, the reference sets
	// of each owner; it is taken without mu held (Configure takes it first, then mu), so
	// the per-execution statistics of other sessions do not wait for an FGW computation.
	graphMu sync.Mutex
	refs    *ownerSets
}

func newRule() *rule {
	return &rule{set: defaultSettings(), sessions: map[string]*list.Element{}, lru: list.New(), refs: newOwnerSets()}
}

// PluginInfo implements base.Plugin.
func (r *rule) PluginInfo() base.Info {
	return base.Info{
		Name: "anomaly", Kind: base.KindGovernance, Version: version.Version,
		Capabilities: []string{"per-session", "robust-z", "log-scale", "failure-bursts", "session-graph-fgw"},
		Description:  "Executions whose duration, output size, tokens or status are far from the session's robust baseline, and sessions whose graph of executions is far, by FGW distortion, from earlier sessions' of the same owner.",
	}
}

// ConfigSchema implements base.Plugin.
func (r *rule) ConfigSchema() base.Schema {
	return base.Schema{Attributes: []base.Attribute{
		{Name: "window", Type: "number", Default: defaultWindow,
			Description: "How many of a session's latest executions form its baseline."},
		{Name: "min_samples", Type: "number", Default: defaultMinSamples,
			Description: "Executions a session needs before its figures are judged."},
		{Name: "threshold", Type: "number", Default: defaultThreshold,
			Description: "Robust z-score (absolute) at or above which an execution is flagged; 3.5 is Iglewicz and Hoaglin's cut-off. Duration, output size and tokens are multiplicative, so they are judged on a log scale: the z-score of ln(floor+x) (floor 5 ms, 64 bytes, 8 tokens) on the median and MAD of the session's window, MAD at least 0.25; at 3.5 a steady session's figure is flagged beyond about 3.7 times its median, at severity 5 (what strict acts on) beyond 6.4 times, 6 at z 10, 7 at z 20. A figure the session produced at least twice in its window (within 2 times, as far from the median) stays at severity 4. On the package's synthetic ordinary sessions (TestStatsFalsePositives, 1000 sessions of 80 executions per kind) the figures are flagged at severity 5 or more on 0 % of steady, 0 % of drifting, 1.4 % of mixed-task and 1.2 % of chat executions (0.6 % overall; any severity 8.4 %), while a 100 times slower run, a 1000 times larger output and a runaway 8192-token answer in a steady session are all flagged at 5 or more. The error rate judges a run of failures: k failures among the session's last w executions (w up to 10, ending with the failure judged), by the probability of k or more at the session's failure rate over the window before them (Laplace-smoothed, (failures+1)/(executions+2)), converted to the z-score of a normal tail (2.3e-4 is z 3.5, 2.9e-7 is z 5) and flagged at the threshold; a run of 3 failures or more flagged at z 3.5 or more is severity 5 (6 at z 10, 7 at z 20). One or two failures stay at severity 4, worth a look but never what strict quarantines: a lone failure, judged against the session's smoothed rate (standardised residual, flagged after a clean run), has the probability of the session's rate, at least 2 % over a window of 50. On the same synthetic sessions the error rate flags 0.01 % of ordinary executions at 5 or more (29 of 288000, none a lone failure; 0.58 % when one failure was judged at a time), 1.1 % at any severity, and a burst of 5 failures at 5 or more in all sessions that never failed and 99.6 % of sessions failing 0 to 8 % of the time (98.6 % of those failing 8 %)."},
		{Name: "max_sessions", Type: "number", Default: defaultMaxSessions,
			Description: "Sessions whose history is kept; the least recently used is forgotten first."},
		{Name: "session_graph", Type: "bool", Default: true,
			Description: "Compare each session's graph of executions (nodes: its latest executions with their log duration, output size, tokens and input size, failure, runner and pre-stage flags; structure: distance in execution order plus in those figures) with earlier sessions' of the same owner by FGW distortion, and flag a session far from them (rule anomaly.session_graph). A session is judged once it has 16 executions (or min_samples if more, graph_nodes if fewer), then every graph_every executions. Input size and pre-stage flags count when the host passes them (metadata input_bytes, pre_flags)."},
		{Name: "graph_nodes", Type: "number", Default: defaultGraphNodes,
			Description: "How many of a session's latest executions form its graph (4 to 256). An FGW computation costs at least its square: 32 takes a few hundred microseconds."},
		{Name: "graph_references", Type: "number", Default: defaultGraphReferences,
			Description: "How many earlier sessions' graphs of each owner are kept to compare with (the latest graph of each of the owner's last sessions judged; 4 to 1024). A session is compared only with sessions of its own owner (the user it belongs to; the operators' sessions are one owner), and a finding names only those. Each comparison costs up to this many FGW computations, fewer when a cheap lower bound rules references out."},
		{Name: "graph_owners", Type: "number", Default: defaultGraphOwners,
			Description: "How many owners' sets of earlier sessions are kept (1 to 100000); the least recently used is forgotten first, and its owner's next sessions start a new baseline. A set is about 0.5 MB at the default graph_nodes and graph_references."},
		{Name: "graph_neighbours", Type: "number", Default: defaultGraphNeighbours,
			Description: "A session's score is its mean FGW distance to this many nearest earlier sessions (1 to 16, below graph_references): above 1, one earlier session that behaved alike does not hide an anomaly."},
		{Name: "graph_every", Type: "number", Default: defaultGraphEvery,
			Description: "A session's graph is compared again after this many more executions (1 to 10000); executions in between cost no FGW computation."},
		{Name: "graph_threshold", Type: "number", Default: defaultGraphThreshold,
			Description: "Robust z-score at or above which a session is flagged: its score (mean distance to its nearest earlier sessions) against the scores the earlier unflagged sessions got, on a log scale (median and MAD of ln(0.01+score), MAD at least 0.2). On the package's synthetic ordinary sessions 4 flags 0.8 % of comparisons, 3.5 flags 1.4 %, 4.5 flags 0.5 % (TestSessionGraphFalsePositives)."},
	}}
}

// Configure implements base.Plugin. A changed configuration forgets every session.
func (r *rule) Configure(_ context.Context, req base.ConfigureRequest) base.Diagnostics {
	var raw rawConfig
	if ds := base.DecodeConfig(req.Config, &raw); ds.HasErrors() {
		return ds
	}
	var ds base.Diagnostics
	set := defaultSettings()
	whole := func(name string, v *float64, lo, hi int, dst *int) {
		if v == nil {
			return
		}
		if *v != math.Trunc(*v) || *v < float64(lo) || *v > float64(hi) {
			ds = append(ds, base.Errorf([]string{name}, "%s must be a whole number from %d to %d, got %v", name, lo, hi, *v))
			return
		}
		*dst = int(*v)
	}
	whole("window", raw.Window, 3, 10000, &set.window)
	whole("min_samples", raw.MinSamples, 3, 10000, &set.minSamples)
	whole("max_sessions", raw.MaxSessions, 1, 10_000_000, &set.maxSessions)
	whole("graph_nodes", raw.GraphNodes, 4, 256, &set.graph.nodes)
	whole("graph_references", raw.GraphReferences, 4, 1024, &set.graph.references)
	whole("graph_neighbours", raw.GraphNeighbours, 1, 16, &set.graph.neighbours)
	whole("graph_every", raw.GraphEvery, 1, 10000, &set.graph.every)
	whole("graph_owners", raw.GraphOwners, 1, 100000, &set.graph.owners)
	positive := func(name string, v *float64, dst *float64) {
		if v == nil {
			return
		}
		if t := *v; math.IsNaN(t) || math.IsInf(t, 0) || t <= 0 {
			ds = append(ds, base.Errorf([]string{name}, "%s must be a positive z-score, got %v", name, t))
		} else {
			*dst = t
		}
	}
	positive("threshold", raw.Threshold, &set.threshold)
	positive("graph_threshold", raw.GraphThreshold, &set.graph.threshold)
	if raw.SessionGraph != nil {
		set.graph.enabled = *raw.SessionGraph
	}
	if !ds.HasErrors() && set.minSamples > set.window {
		ds = append(ds, base.Errorf([]string{"min_samples"}, "min_samples (%d) must not exceed window (%d)", set.minSamples, set.window))
	}
	if !ds.HasErrors() && set.graph.neighbours >= set.graph.references {
		ds = append(ds, base.Errorf([]string{"graph_neighbours"}, "graph_neighbours (%d) must be below graph_references (%d)", set.graph.neighbours, set.graph.references))
	}
	if ds.HasErrors() || req.ValidateOnly {
		return ds
	}
	r.graphMu.Lock()
	defer r.graphMu.Unlock()
	r.mu.Lock()
	defer r.mu.Unlock()
	if set != r.set {
		r.set = set
		r.sessions = map[string]*list.Element{}
		r.lru.Init()
		r.refs = newOwnerSets()
		r.gen++
	}
	return ds
}

// Describe implements governance.Rule.
func (r *rule) Describe(context.Context) ([]governance.RuleDescription, error) {
	var out []governance.RuleDescription
	post := []governance.Stage{governance.StagePost}
	for _, m := range metrics {
		out = append(out, governance.RuleDescription{ID: m.RuleID, Flags: []string{governance.FlagAnomaly}, Stages: post, Description: m.Desc})
	}
	out = append(out, governance.RuleDescription{ID: ruleErrorRate, Flags: []string{governance.FlagAnomaly}, Stages: post,
		Description: "Failed executions (status other than ok or cancelled) in a session that rarely fails: a run of them by how unlikely it is at the session's earlier failure rate (binomial tail, as a z-score; severity 5 or more from 3 failures), a lone one against its smoothed rate (severity 4 at most)."})
	r.mu.Lock()
	graph := r.set.graph.enabled
	r.mu.Unlock()
	if graph {
		out = append(out, governance.RuleDescription{ID: ruleSessionGraph, Flags: []string{governance.FlagAnomaly}, Stages: post,
			Description: "A session whose graph of latest executions is far, by FGW distortion, from the graphs of its owner's earlier sessions (robust z-score of the mean distance to its nearest ones against theirs)."})
	}
	return out, nil
}

// observation is what one request says about an execution.
type observation struct {
	values map[string]float64
	status string
}

// parse reads the execution figures from metadata; absent keys are simply not judged.
// clip shortens a value quoted in an error or a finding to 100 bytes (at a character
// boundary), so a huge one does not travel whole into the host's log and traces.
func clipValue(s string) string { return clip.Marked(s, 100) }

func parse(md map[string]string) (observation, error) {
	obs := observation{values: map[string]float64{}}
	for _, m := range metrics {
		s, ok := md[m.Key]
		if !ok || s == "" {
			continue
		}
		v, err := parseNumber(s)
		if err != nil || v < 0 {
			return obs, fmt.Errorf("metadata %s=%q: want a non-negative number", m.Key, clipValue(s))
		}
		obs.values[m.Key] = v
	}
	obs.status = strings.ToLower(strings.TrimSpace(md["status"]))
	return obs, nil
}

// parseNumber parses a finite number.
func parseNumber(s string) (float64, error) {
	v, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err != nil {
		return 0, err
	}
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return 0, fmt.Errorf("%v is not finite", v)
	}
	return v, nil
}

// digest identifies a request, so a repeated evaluation is answered from memory.
func digest(req governance.EvaluateRequest) string {
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%s\x00%d\x00", req.TraceID, req.Runner, len(req.Content))
	h.Write([]byte(req.Content))
	keys := make([]string, 0, len(req.Metadata))
	for k := range req.Metadata {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		fmt.Fprintf(h, "\x00%s=%s", k, req.Metadata[k])
	}
	return hex.EncodeToString(h.Sum(nil))
}

// Evaluate implements governance.Rule: it judges the execution against the session's
// history, then adds it to the history; every graph_every executions it also judges
// the session's graph against earlier sessions' (outside the lock of the statistics).
func (r *rule) Evaluate(ctx context.Context, req governance.EvaluateRequest) ([]governance.Finding, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if req.Stage != governance.StagePost || req.SessionID == "" {
		return nil, nil
	}
	obs, err := parse(req.Metadata)
	if err != nil {
		return nil, err
	}
	if len(obs.values) == 0 && obs.status == "" {
		return nil, nil
	}
	key := digest(req)
	r.mu.Lock()
	s := r.session(req.SessionID)
	if fs, ok := s.recent[key]; ok {
		r.mu.Unlock()
		return slices.Clone(fs), nil
	}
	out := r.judgeStats(s, obs)
	var g *sessionGraph
	set, gen := r.set, r.gen
	if set.graph.enabled {
		if s.steps == nil {
			s.steps = &stepRing{steps: make([]step, 0, min(set.graph.nodes, 8))}
		}
		s.steps.add(newStep(obs, req.Metadata, req.Runner), set.graph.nodes)
		if s.steps.seen >= set.graph.minSteps(set.minSamples) && (s.steps.judged == 0 || s.steps.seen-s.steps.judged >= set.graph.every) {
			s.steps.judged = s.steps.seen
			g = buildGraph(s.id, s.steps.seen, s.steps.chronological())
			g.owner = req.Owner
		}
	}
	s.remember(key, out)
	r.mu.Unlock()
	if g == nil {
		return slices.Clone(out), nil
	}
	f, err := r.judgeGraph(g, set.graph, gen)
	if err != nil {
		return nil, err
	}
	if f == nil {
		return slices.Clone(out), nil
	}
	out = append(slices.Clone(out), *f)
	r.mu.Lock()
	if _, ok := s.recent[key]; ok {
		s.recent[key] = out
	}
	r.mu.Unlock()
	return slices.Clone(out), nil
}

// judgeGraph compares g with its owner's reference set of configuration generation gen
// and adds it there; a configuration changed meanwhile discards it.
func (r *rule) judgeGraph(g *sessionGraph, set graphSettings, gen int) (*governance.Finding, error) {
	r.graphMu.Lock()
	defer r.graphMu.Unlock()
	if gen != r.gen {
		return nil, nil
	}
	return r.refs.get(g.owner, set.owners).judge(g, set)
}

// judgeStats judges the execution's figures against the session's statistics and adds
// them there. Callers hold r.mu.
func (r *rule) judgeStats(s *session, obs observation) []governance.Finding {
	var out []governance.Finding
	// An execution cancelled (its client left, or the host stopped it) says nothing of the
	// session's code: its figures are judged (a huge output still shows) but, cut short,
	// do not enter the baseline; its duration is not judged; it is neither a failure nor
	// a success.
	cancelled := obs.status == statusCancelled
	for _, m := range metrics {
		x, ok := obs.values[m.Key]
		if !ok || cancelled && m.Key == "duration_ms" {
			continue
		}
		rg := s.metrics[m.Key]
		if rg == nil {
			rg = newRing(r.set.window)
			s.metrics[m.Key] = rg
		}
		y := logValue(x, m.Floor)
		if rg.len() >= r.set.minSamples {
			if f, ok := judgeFigure(m, x, y, rg, r.set.threshold); ok {
				out = append(out, f)
			}
		}
		if !cancelled {
			rg.add(y)
		}
	}
	if obs.status != "" && !cancelled {
		failed := obs.status != "ok" && obs.status != "success"
		if failed {
			if f, ok := judgeFailure(s.statuses, obs.status, r.set); ok {
				out = append(out, f)
			}
		}
		s.statuses = append(s.statuses, failed)
		if keep := r.set.window + burstWindow - 1; len(s.statuses) > keep {
			s.statuses = s.statuses[len(s.statuses)-keep:]
		}
	}
	return out
}

// failureRun is k failures among the last w executions (the failure judged the last of
// them), against errs failures in the n executions before them.
type failureRun struct {
	k, w, errs, n int
	// rate is the session's smoothed failure rate before the burst, prob the chance of
	// k or more failures in w executions at that rate, z its z-score.
	rate, prob, z float64
}

// worstBurst returns the least likely run of latest executions ending with the failure
// judged that holds at least two failures: for each w from 2 to burstWindow, the k
// failures among the last w (statuses, then the failure) against the Laplace-smoothed
// rate of the window executions before them (at least minSamples), by the binomial tail
// P(X ≥ k). ok is false when no run qualifies.
func worstBurst(statuses []bool, set settings) (b failureRun, ok bool) {
	k := 1 // the failure judged
	for w := 2; w <= burstWindow; w++ {
		end := len(statuses) - (w - 1) // the baseline is statuses[start:end]
		start := max(0, end-set.window)
		if end-start < set.minSamples {
			break
		}
		if statuses[end] {
			k++
		}
		if k < 2 {
			continue
		}
		errs := 0
		for _, e := range statuses[start:end] {
			if e {
				errs++
			}
		}
		rate := laplaceRate(errs, end-start)
		prob := binomialTail(k, w, rate)
		if !ok || prob < b.prob {
			b, ok = failureRun{k: k, w: w, errs: errs, n: end - start, rate: rate, prob: prob}, true
		}
	}
	if ok {
		b.z = tailZ(b.prob)
	}
	return b, ok
}

// judgeFailure judges a failed execution, of status status, given the statuses of the
// session's earlier executions. A burst (several failures among the last few
// executions) is judged by how unlikely it is at the session's rate before it (see
// worstBurst): flagged at z ≥ threshold, at severity 5 or more when it holds minBurst
// failures at z ≥ burstSevereZ. Otherwise the failure alone is judged against the
// session's smoothed rate over its window (bernoulliZ): a first failure after a clean
// run is worth a look, severity 4, never more; the typo that fails one run of a session
// is not something strict should quarantine.
func judgeFailure(statuses []bool, status string, set settings) (governance.Finding, bool) {
	if b, ok := worstBurst(statuses, set); ok && b.z >= set.threshold {
		sev := 4
		if b.k >= minBurst && b.z >= burstSevereZ {
			sev = max(5, severity(b.z))
		}
		return governance.Finding{
			Flag: governance.FlagAnomaly, Severity: sev, Score: b.z, RuleID: ruleErrorRate,
			Reason: fmt.Sprintf("%d of the last %d executions failed (this one: status %q); this session fails %s of the time (%d of the %d executions before them, Laplace-smoothed): probability %.2g, z %.1f, threshold %.1f",
				b.k, b.w, clipValue(status), percent(b.rate), b.errs, b.n, b.prob, b.z, set.threshold),
		}, true
	}
	window := statuses[max(0, len(statuses)-set.window):]
	if len(window) < set.minSamples {
		return governance.Finding{}, false
	}
	errs := 0
	for _, e := range window {
		if e {
			errs++
		}
	}
	z, p := bernoulliZ(errs, len(window))
	if z < set.threshold {
		return governance.Finding{}, false
	}
	return governance.Finding{
		Flag: governance.FlagAnomaly, Severity: 4, Score: z, RuleID: ruleErrorRate,
		Reason: fmt.Sprintf("status %q in a session that failed %d of its last %d executions (smoothed error rate %.3f): z-score %.1f, threshold %.1f; one failure is worth a look, severity 4 at most",
			clipValue(status), errs, len(window), p, z, set.threshold),
	}, true
}

// percent formats a rate as a percentage to 2 digits: 3.5 %, 0.19 %.
func percent(p float64) string {
	return strconv.FormatFloat(100*p, 'g', 2, 64) + " %"
}

// judgeFigure judges figure x of metric m, at y = ln(m.Floor+x) on the log scale,
// against the session's values there: a robust z-score on the median and MAD of
// ln(floor+x), the MAD at least logMinMAD. Its severity follows the z-score, but stays
// at 4 when the session did something comparable (within a factor precedentFactor, as
// far from its median in the same direction) at least minPrecedents times in its
// window: a notebook whose data load takes 50 times its prints is still worth a look
// each time, but ordinary work for this session, not something strict should act on.
func judgeFigure(m metric, x, y float64, rg *ring, threshold float64) (governance.Finding, bool) {
	medY, mad := rg.medianMAD()
	scale := max(mad, logMinMAD)
	z := madScale * (y - medY) / scale
	if math.IsNaN(z) || math.Abs(z) < threshold {
		return governance.Finding{}, false
	}
	// The median in natural units: ln(floor+x) is monotonic, so this is the median of
	// the figures (of the middle two, their geometric mean over the floor).
	med := max(math.Exp(medY)-m.Floor, 0)
	if math.IsInf(med, 0) { // figures near the largest float64
		med = math.MaxFloat64
	}
	var far string
	switch {
	case z > 0 && med > 0:
		far = fmt.Sprintf("%s× this session's median %s %s", factor(x/med), natural(med), m.Unit)
	case z > 0:
		far = fmt.Sprintf("far above this session's median 0 %s", m.Unit)
	case x > 0:
		far = fmt.Sprintf("1/%s of this session's median %s %s", factor(med/x), natural(med), m.Unit)
	default:
		far = fmt.Sprintf("far below this session's median %s %s", natural(med), m.Unit)
	}
	spread := fmt.Sprintf("MAD %.2f", mad)
	if mad < logMinMAD {
		// Say what the z-score was divided by, so that it can be checked.
		spread = fmt.Sprintf("MAD %.2f, taken as %g, the least that counts,", mad, logMinMAD)
	}
	sev := severity(z)
	capped := ""
	if n := rg.precedents(y, medY); sev > 4 && n >= minPrecedents {
		sev = 4
		capped = fmt.Sprintf("; %d of them were within %g× of it, so this session does such things: severity 4", n, precedentFactor)
	}
	return governance.Finding{
		Flag: governance.FlagAnomaly, Severity: sev, Score: z, RuleID: m.RuleID,
		Reason: fmt.Sprintf("%s %s %s is %s (log-scale robust z-score %.1f, threshold %.1f: ln(%g+%s) against its %s over the last %d executions%s)",
			m.Key, natural(x), m.Unit, far, z, threshold, m.Floor, m.Key, spread, rg.len(), capped),
	}, true
}

// natural formats a figure in its unit: whole numbers as such, others to 3 digits.
func natural(v float64) string {
	if v == math.Trunc(v) && math.Abs(v) < 1e15 {
		return strconv.FormatFloat(v, 'f', 0, 64)
	}
	return strconv.FormatFloat(v, 'g', 3, 64)
}

// factor formats a ratio: 38, 2.5, 1.2e+04.
func factor(v float64) string {
	if math.IsInf(v, 0) || v >= 1e6 {
		return strconv.FormatFloat(v, 'g', 2, 64)
	}
	if v >= 10 {
		return strconv.FormatFloat(math.Round(v), 'f', 0, 64)
	}
	return strconv.FormatFloat(v, 'f', 1, 64)
}

// session returns the session's history, creating it, and marks it most recently used;
// the least recently used session is forgotten beyond max_sessions. Callers hold r.mu.
func (r *rule) session(id string) *session {
	if el, ok := r.sessions[id]; ok {
		r.lru.MoveToFront(el)
		return el.Value.(*session)
	}
	s := &session{id: id, metrics: map[string]*ring{}, recent: map[string][]governance.Finding{}}
	r.sessions[id] = r.lru.PushFront(s)
	for r.lru.Len() > r.set.maxSessions {
		old := r.lru.Back()
		r.lru.Remove(old)
		delete(r.sessions, old.Value.(*session).id)
	}
	return s
}

// remember keeps the findings of a request for repeated evaluations.
func (s *session) remember(key string, fs []governance.Finding) {
	s.recent[key] = fs
	s.recentKeys = append(s.recentKeys, key)
	if len(s.recentKeys) > recentTraces {
		delete(s.recent, s.recentKeys[0])
		s.recentKeys = s.recentKeys[1:]
	}
}

// sessionCount returns how many sessions are remembered.
func (r *rule) sessionCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.lru.Len()
}

// severity maps a z-score to a severity: 4 at the usual cut-off, up to 7, below the
// default policy's quarantine level (8). A z-score is a measure of surprise, not of harm:
// a benign 2 s computation in a session of sub-millisecond ones is at log-scale z 16,
// and the default policy, which lets anomaly flags merge, must not quarantine it.
func severity(z float64) int {
	a := math.Abs(z)
	switch {
	case a >= 20:
		return 7
	case a >= 10:
		return 6
	case a >= 5:
		return 5
	}
	return 4
}

var _ governance.Rule = (*rule)(nil)
