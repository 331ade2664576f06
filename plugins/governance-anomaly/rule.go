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

	"github.com/limitgraph/limit/sdk/base"
	"github.com/limitgraph/limit/sdk/governance"
)

// version of the plugin.
const version = "0.1.0"

// Defaults of the config attributes.
const (
	defaultWindow      = 50
	defaultMinSamples  = 8
	defaultThreshold   = 3.5
	defaultMaxSessions = 10000
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
	// Floor of the MAD, in the metric's unit: below it, differences are noise.
	Floor float64
	Unit  string
	Desc  string
}

var metrics = []metric{
	{"duration_ms", "anomaly.duration", 5, "ms", "Execution duration far from the session's median (robust z-score on median and MAD)."},
	{"output_bytes", "anomaly.output_size", 64, "bytes", "Output size far from the session's median (robust z-score on median and MAD)."},
	{"tokens", "anomaly.tokens", 8, "tokens", "Token count far from the session's median (robust z-score on median and MAD)."},
}

// ruleErrorRate is the rule id of error-rate findings.
const ruleErrorRate = "anomaly.error_rate"

// rawConfig is the config block as the host sends it.
type rawConfig struct {
	Window      *float64 `json:"window"`
	MinSamples  *float64 `json:"min_samples"`
	Threshold   *float64 `json:"threshold"`
	MaxSessions *float64 `json:"max_sessions"`
}

// settings is a checked configuration.
type settings struct {
	window, minSamples, maxSessions int
	threshold                       float64
}

// session is one session's history.
type session struct {
	id      string
	metrics map[string]*ring
	// statuses of the last window executions: true is an error.
	statuses []bool
	// recent maps a request's digest to the findings it got.
	recent     map[string][]governance.Finding
	recentKeys []string
}

// rule is the plugin.
type rule struct {
	mu       sync.Mutex
	set      settings
	sessions map[string]*list.Element // of *session
	lru      *list.List               // front: most recently used
}

func newRule() *rule {
	return &rule{
		set:      settings{window: defaultWindow, minSamples: defaultMinSamples, maxSessions: defaultMaxSessions, threshold: defaultThreshold},
		sessions: map[string]*list.Element{}, lru: list.New(),
	}
}

// PluginInfo implements base.Plugin.
func (r *rule) PluginInfo() base.Info {
	return base.Info{
		Name: "anomaly", Kind: base.KindGovernance, Version: version,
		Capabilities: []string{"per-session", "robust-z"},
		Description:  "Executions whose duration, output size, tokens or status are far from the session's robust baseline.",
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
			Description: "Robust z-score (absolute) at or above which an execution is flagged; 3.5 is Iglewicz and Hoaglin's cut-off."},
		{Name: "max_sessions", Type: "number", Default: defaultMaxSessions,
			Description: "Sessions whose history is kept; the least recently used is forgotten first."},
	}}
}

// Configure implements base.Plugin. A changed configuration forgets every session.
func (r *rule) Configure(_ context.Context, req base.ConfigureRequest) base.Diagnostics {
	var raw rawConfig
	if ds := base.DecodeConfig(req.Config, &raw); ds.HasErrors() {
		return ds
	}
	var ds base.Diagnostics
	set := settings{window: defaultWindow, minSamples: defaultMinSamples, maxSessions: defaultMaxSessions, threshold: defaultThreshold}
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
	if raw.Threshold != nil {
		if t := *raw.Threshold; math.IsNaN(t) || t <= 0 {
			ds = append(ds, base.Errorf([]string{"threshold"}, "threshold must be a positive z-score, got %v", t))
		} else {
			set.threshold = t
		}
	}
	if !ds.HasErrors() && set.minSamples > set.window {
		ds = append(ds, base.Errorf([]string{"min_samples"}, "min_samples (%d) must not exceed window (%d)", set.minSamples, set.window))
	}
	if ds.HasErrors() || req.ValidateOnly {
		return ds
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if set != r.set {
		r.set = set
		r.sessions = map[string]*list.Element{}
		r.lru.Init()
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
		Description: "A failed execution (status other than ok) in a session that rarely fails (z-score against its smoothed error rate)."})
	return out, nil
}

// observation is what one request says about an execution.
type observation struct {
	values map[string]float64
	status string
}

// parse reads the execution figures from metadata; absent keys are simply not judged.
func parse(md map[string]string) (observation, error) {
	obs := observation{values: map[string]float64{}}
	for _, m := range metrics {
		s, ok := md[m.Key]
		if !ok || s == "" {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
		if err != nil || math.IsNaN(v) || math.IsInf(v, 0) || v < 0 {
			return obs, fmt.Errorf("metadata %s=%q: want a non-negative number", m.Key, s)
		}
		obs.values[m.Key] = v
	}
	obs.status = strings.ToLower(strings.TrimSpace(md["status"]))
	return obs, nil
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
// history, then adds it to the history.
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
	defer r.mu.Unlock()
	s := r.session(req.SessionID)
	if fs, ok := s.recent[key]; ok {
		return slices.Clone(fs), nil
	}
	var out []governance.Finding
	for _, m := range metrics {
		x, ok := obs.values[m.Key]
		if !ok {
			continue
		}
		rg := s.metrics[m.Key]
		if rg == nil {
			rg = newRing(r.set.window)
			s.metrics[m.Key] = rg
		}
		if rg.len() >= r.set.minSamples {
			z, med, mad := rg.robustZ(x, m.Floor)
			if math.Abs(z) >= r.set.threshold {
				dir := "above"
				if z < 0 {
					dir = "below"
				}
				out = append(out, governance.Finding{
					Flag: governance.FlagAnomaly, Severity: severity(z), Score: z, RuleID: m.RuleID,
					Reason: fmt.Sprintf("%s %g %s is far %s this session's median %g (MAD %g over the last %d executions): robust z-score %.1f, threshold %.1f",
						m.Key, x, m.Unit, dir, med, mad, rg.len(), z, r.set.threshold),
				})
			}
		}
		rg.add(x)
	}
	if obs.status != "" {
		failed := obs.status != "ok" && obs.status != "success"
		if failed && len(s.statuses) >= r.set.minSamples {
			errs := 0
			for _, e := range s.statuses {
				if e {
					errs++
				}
			}
			z, p := bernoulliZ(errs, len(s.statuses))
			if z >= r.set.threshold {
				out = append(out, governance.Finding{
					Flag: governance.FlagAnomaly, Severity: severity(z), Score: z, RuleID: ruleErrorRate,
					Reason: fmt.Sprintf("status %q in a session that failed %d of its last %d executions (smoothed error rate %.3f): z-score %.1f, threshold %.1f",
						obs.status, errs, len(s.statuses), p, z, r.set.threshold),
				})
			}
		}
		s.statuses = append(s.statuses, failed)
		if len(s.statuses) > r.set.window {
			s.statuses = s.statuses[len(s.statuses)-r.set.window:]
		}
	}
	s.remember(key, out)
	return slices.Clone(out), nil
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

// severity maps a z-score to a severity: 4 at the usual cut-off, up to 8.
func severity(z float64) int {
	a := math.Abs(z)
	switch {
	case a >= 20:
		return 8
	case a >= 10:
		return 6
	case a >= 5:
		return 5
	}
	return 4
}

var _ governance.Rule = (*rule)(nil)
