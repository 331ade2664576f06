package governance

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/limitgraph/limit/host/plugins"
	"github.com/limitgraph/limit/host/trace"
	"github.com/limitgraph/limit/internal/clip"
	sdkgov "github.com/limitgraph/limit/sdk/governance"
)

// EvalTimeout bounds one rule's evaluation.
const EvalTimeout = 10 * time.Second

// rule is one configured rule plugin and what it said it evaluates.
type rule struct {
	name  string
	m     *plugins.Managed
	descs []sdkgov.RuleDescription
	// errors counts the calls to the rule that failed (ErrorCounts).
	errors atomic.Uint64
}

// evaluates reports whether one of the rule's descriptions runs at req's stage and reads
// req's content (sdkgov.RuleDescription.Reads): the plugin is not sent the others.
func (r *rule) evaluates(req sdkgov.EvaluateRequest) bool {
	for _, d := range r.descs {
		if slices.Contains(d.Stages, req.Stage) && d.Reads(req) {
			return true
		}
	}
	return false
}

// explain folds a finding's score, stage and location into the flag's reason, so that a
// client that reads only the reason still sees why it was flagged and where (the flag's
// Stage, Score and Location say the same for programs). The rule's own words are clipped
// (and made UTF-8) so that the whole fits the trace store's trace.MaxReasonSize.
func explain(f sdkgov.Finding, stage sdkgov.Stage) string {
	var b strings.Builder
	fmt.Fprintf(&b, " [%s", stage)
	if f.Score != 0 {
		fmt.Fprintf(&b, ", score %.3g", f.Score)
	}
	if l := f.Location; l != nil {
		if l.Line > 0 {
			fmt.Fprintf(&b, ", line %d", l.Line)
			if l.Column > 0 {
				fmt.Fprintf(&b, ":%d", l.Column)
			}
		}
		if l.End > l.Start {
			fmt.Fprintf(&b, ", bytes %d-%d", l.Start, l.End)
		}
	}
	b.WriteString("]")
	return clipReason(f.Reason, trace.MaxReasonSize-b.Len()) + b.String()
}

// clipReason returns s as UTF-8 of at most n bytes, ending in "…" when shortened.
func clipReason(s string, n int) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if len(s) <= n {
		return s
	}
	return clip.Prefix(s, n-len("…")) + "…"
}

// validRuleID reports whether the trace store takes id as a flag's rule id: a name of at
// most trace.MaxNameSize bytes of printable UTF-8.
func validRuleID(id string) bool {
	if id == "" || len(id) > trace.MaxNameSize || !utf8.ValidString(id) {
		return false
	}
	return !strings.ContainsFunc(id, func(c rune) bool { return c < 0x20 || c == 0x7f })
}

// flagOf turns a finding of the rule plugin named plugin at stage into a flag raised at
// now. The stage, score and location become the flag's structured fields, for clients that
// locate what was flagged; the reason keeps its bracketed summary of them (explain) for
// those that only read text. A score or location the trace store would refuse (not finite;
// offsets out of order or beyond its bounds) is left out of the fields, not allowed to
// fail the whole write: the reason still shows it. Likewise a reason too long is clipped,
// and a rule id that is missing or that the store would refuse becomes the plugin's name,
// so that the flag still says which rule raised it.
func flagOf(plugin string, f sdkgov.Finding, stage sdkgov.Stage, now time.Time) Flag {
	fl := Flag{
		Flag: f.Flag, Severity: f.Severity, Reason: explain(f, stage), RuleID: f.RuleID,
		AutoDetected: true, Timestamp: now,
	}
	if !validRuleID(fl.RuleID) {
		fl.RuleID = plugin
	}
	switch stage {
	case sdkgov.StagePre:
		fl.Stage = trace.StagePre
	case sdkgov.StagePost:
		fl.Stage = trace.StagePost
	}
	if !math.IsNaN(f.Score) && !math.IsInf(f.Score, 0) {
		fl.Score = f.Score
	}
	if l := f.Location; l != nil {
		loc := trace.Location{Line: l.Line, Column: l.Column, Start: l.Start, End: l.End}
		if loc.Line == 0 {
			loc.Column = 0 // a column means nothing without its line
		}
		if loc.Validate() == nil {
			fl.Location = &loc
		}
	}
	return fl
}

// RuleInfo describes a configured rule plugin.
type RuleInfo struct {
	Plugin string                   `json:"plugin"`
	Rules  []sdkgov.RuleDescription `json:"rules"`
}

// Evaluator runs the configured rule plugins.
type Evaluator struct {
	rules []*rule
	// timeout bounds one rule's evaluation; zero means EvalTimeout.
	timeout time.Duration
}

// NewEvaluator asks each rule plugin what it evaluates.
func NewEvaluator(ctx context.Context, managed []*plugins.Managed) (*Evaluator, error) {
	e := &Evaluator{}
	for _, m := range managed {
		p, err := m.Current(ctx)
		if err != nil {
			return nil, err
		}
		descs, err := p.Impl.(sdkgov.Rule).Describe(ctx)
		if err != nil {
			return nil, fmt.Errorf("governance rule %q: %w", m.Spec().Name, err)
		}
		e.rules = append(e.rules, &rule{name: m.Spec().Name, m: m, descs: descs})
	}
	return e, nil
}

// Rules describes the configured rule plugins.
func (e *Evaluator) Rules() []RuleInfo {
	out := make([]RuleInfo, 0, len(e.rules))
	for _, r := range e.rules {
		out = append(out, RuleInfo{Plugin: r.name, Rules: r.descs})
	}
	return out
}

// Reads says what the plugin's rules read, for a log line: "everything", or the content
// types and runners its rules name.
func (r RuleInfo) Reads() string {
	if len(r.Rules) == 0 {
		return "nothing"
	}
	var types, runners []string
	for _, d := range r.Rules {
		if len(d.ContentTypes) == 0 && len(d.Runners) == 0 {
			return "everything"
		}
		for _, t := range d.ContentTypes {
			if !slices.Contains(types, t) {
				types = append(types, t)
			}
		}
		for _, n := range d.Runners {
			if !slices.Contains(runners, n) {
				runners = append(runners, n)
			}
		}
	}
	out := strings.Join(types, ", ")
	if len(runners) > 0 {
		if out != "" {
			out += "; "
		}
		out += "the input of runners " + strings.Join(runners, ", ")
	}
	return out
}

// RulesFor describes the configured rule plugins that evaluate req: those with a rule that
// runs at its stage and reads its content.
func (e *Evaluator) RulesFor(req sdkgov.EvaluateRequest) []RuleInfo {
	out := []RuleInfo{}
	for _, r := range e.rules {
		if r.evaluates(req) {
			out = append(out, RuleInfo{Plugin: r.name, Rules: r.descs})
		}
	}
	return out
}

// RuleErrors counts the failed calls to one configured rule plugin.
type RuleErrors struct {
	Rule  string
	Count uint64
}

// ErrorCounts counts, for each configured rule plugin, its calls that failed (it could not
// be reached, did not answer in time, or returned an error, ErrBeyondLimits included)
// since the evaluator was made; they only grow.
func (e *Evaluator) ErrorCounts() []RuleErrors {
	out := make([]RuleErrors, 0, len(e.rules))
	for _, r := range e.rules {
		out = append(out, RuleErrors{Rule: r.name, Count: r.errors.Load()})
	}
	return out
}

// RuleError is a rule plugin that could not answer.
type RuleError struct {
	Plugin string
	Err    error
}

func (e *RuleError) Error() string { return fmt.Sprintf("governance rule %q: %v", e.Plugin, e.Err) }

// Unwrap returns the plugin's error, so errors.Is finds sdkgov.ErrBeyondLimits in it.
func (e *RuleError) Unwrap() error { return e.Err }

// noAnswerError is a rule's evaluation that EvalTimeout ended: it says so, rather than
// the transport's "context deadline exceeded", and wraps the call's error.
type noAnswerError struct {
	within time.Duration
	err    error
}

func (e *noAnswerError) Error() string { return fmt.Sprintf("did not answer within %s", e.within) }
func (e *noAnswerError) Unwrap() error { return e.err }

// Evaluate runs every rule that evaluates req (its stage, its content), in parallel, and
// returns their findings as flags (sorted by severity, highest first) and the rules that
// failed.
func (e *Evaluator) Evaluate(ctx context.Context, req sdkgov.EvaluateRequest) ([]Flag, []*RuleError) {
	flags, _, errs := e.EvaluateScores(ctx, req)
	return flags, errs
}

// EvaluateScores is Evaluate that also returns the raw scores the rules' models gave the
// content, by configured rule name and then rule id (rules without a model give none).
func (e *Evaluator) EvaluateScores(ctx context.Context, req sdkgov.EvaluateRequest) ([]Flag, map[string]map[string]float64, []*RuleError) {
	type answer struct {
		flags  []Flag
		scores map[string]float64
		err    *RuleError
	}
	var wg sync.WaitGroup
	answers := make([]answer, len(e.rules))
	now := time.Now().UTC()
	limit := e.timeout
	if limit <= 0 {
		limit = EvalTimeout
	}
	for i, r := range e.rules {
		if !r.evaluates(req) {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			cctx, cancel := context.WithTimeout(ctx, limit)
			defer cancel()
			p, err := r.m.Current(cctx)
			if err != nil {
				r.errors.Add(1)
				answers[i].err = &RuleError{Plugin: r.name, Err: err}
				return
			}
			var ev sdkgov.Evaluation
			if sr, ok := p.Impl.(sdkgov.ScoringRule); ok {
				ev, err = sr.EvaluateScores(cctx, req)
			} else {
				ev.Findings, err = p.Impl.(sdkgov.Rule).Evaluate(cctx, req)
			}
			if err != nil {
				r.m.Check()
				r.errors.Add(1)
				if errors.Is(cctx.Err(), context.DeadlineExceeded) && ctx.Err() == nil {
					err = &noAnswerError{within: limit, err: err}
				}
				answers[i].err = &RuleError{Plugin: r.name, Err: err}
				return
			}
			answers[i].scores = ev.Scores
			for _, f := range ev.Findings {
				answers[i].flags = append(answers[i].flags, flagOf(r.name, f, req.Stage, now))
			}
		}()
	}
	wg.Wait()
	var flags []Flag
	var errs []*RuleError
	var scores map[string]map[string]float64 // only when some rule reported any
	for i, a := range answers {
		flags = append(flags, a.flags...)
		if a.err != nil {
			errs = append(errs, a.err)
		}
		if len(a.scores) > 0 {
			if scores == nil {
				scores = map[string]map[string]float64{}
			}
			scores[e.rules[i].name] = a.scores
		}
	}
	sort.SliceStable(flags, func(i, j int) bool { return flags[i].Severity > flags[j].Severity })
	return flags, scores, errs
}
