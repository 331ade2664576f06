// Package governance is the SDK for governance rule plugins: rules that look at an
// execution's input before it runs (pre) or at its output after (post) and raise flags.
//
// A plugin implements Rule and calls Serve from main:
//
//	func main() { governance.Serve(&myRule{}) }
//
// The host calls Evaluate for every configured rule on every execution, at the stages its
// Describe names and for the content its descriptions read (RuleDescription.Reads: by
// content type or runner; all content when they name none), concurrently, and gives up on
// a call after 10 s: a rule should be fast and hold no mutable state between calls. A
// Finding names one of Flags with a Severity from 1 to 10 and may say where (Location) and
// how sure the rule is (Score, a finite number); the host refuses an evaluation with any
// other finding (Finding.Validate). What a flag does, block, quarantine or refuse a merge,
// is up to the session's policy.
// An error return, or a panic (Serve recovers it and logs its stack), means the rule
// could not answer: the default and strict policies then refuse the execution (503). An
// error wrapping ErrBeyondLimits says the content itself is beyond what the rule can check
// (too large, too long to analyse): those policies refuse it with 422, since the same
// content would fail the same way again.
//
// sdktest.RunGovernance, or `limitctl plugin check --kind governance`, checks a rule
// against contents the author says it must pass and must flag. See examples/governance-rule
// for a complete rule with its tests.
package governance

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/limitgraph/limit/sdk/base"
)

// Flags a rule may raise.
const (
	FlagJailbreak  = "jailbreak"
	FlagAnomaly    = "anomaly"
	FlagHighRisk   = "high_risk"
	FlagUnsafe     = "unsafe"
	FlagMalicious  = "malicious"
	FlagUnverified = "unverified"
)

// Flags lists every known flag.
var Flags = []string{FlagJailbreak, FlagAnomaly, FlagHighRisk, FlagUnsafe, FlagMalicious, FlagUnverified}

// ValidFlag reports whether f is a known flag.
func ValidFlag(f string) bool {
	for _, k := range Flags {
		if k == f {
			return true
		}
	}
	return false
}

// Stage says when a rule runs.
type Stage int

// Stages.
const (
	// StagePre evaluates the input before execution.
	StagePre Stage = iota + 1
	// StagePost evaluates the output after execution.
	StagePost
)

// String returns "pre" or "post".
func (s Stage) String() string {
	switch s {
	case StagePre:
		return "pre"
	case StagePost:
		return "post"
	}
	return "unspecified"
}

// RuleDescription describes one rule of a plugin.
type RuleDescription struct {
	ID          string   `json:"id"`
	Flags       []string `json:"flags"`
	Stages      []Stage  `json:"stages"`
	Description string   `json:"description,omitempty"`
	// ContentTypes and Runners say what the rule reads (see Reads): the host sends a
	// rule plugin only the requests one of its rules reads. Both empty: every request.
	ContentTypes []string `json:"content_types,omitempty"`
	Runners      []string `json:"runners,omitempty"`
}

// Reads reports whether the rule reads req: when it names no content type and no runner;
// when req has no content type; when req's media type (its content type without
// parameters) is one of ContentTypes, compared case-insensitively; or when req's runner is
// one of Runners. A rule that says less than it reads misses what it is not sent.
func (d RuleDescription) Reads(req EvaluateRequest) bool {
	if len(d.ContentTypes) == 0 && len(d.Runners) == 0 {
		return true
	}
	ct := MediaType(req.ContentType)
	if ct == "" {
		return true
	}
	for _, t := range d.ContentTypes {
		if strings.EqualFold(t, ct) {
			return true
		}
	}
	return req.Runner != "" && slices.Contains(d.Runners, req.Runner)
}

// MediaType returns a content type without its parameters and surrounding spaces:
// "text/plain; charset=utf-8" → "text/plain".
func MediaType(ct string) string {
	ct, _, _ = strings.Cut(ct, ";")
	return strings.TrimSpace(ct)
}

// EvaluateRequest is what a rule looks at.
type EvaluateRequest struct {
	Stage     Stage
	SessionID string
	TraceID   string
	// Runner is the runner that will consume or produced the content.
	Runner string
	// ContentType is what the content is. The host sends the input (StagePre) as the
	// runner's input:TYPE capability says ("code/python"), else as "text/plain", and the
	// output (StagePost) as "text/output".
	ContentType string
	Content     string
	Metadata    map[string]string
	// Owner is the user the session belongs to (a user name of the host's token file);
	// "" for the operators' sessions, for a request of no session, and from hosts that
	// predate the field. A rule that keeps state across sessions (the anomaly rule's
	// reference sessions) keeps it apart per owner, so that what it tells about one
	// user's session neither names nor depends on another user's sessions.
	Owner string
}

// Location points into the evaluated content.
type Location struct {
	Line   int `json:"line,omitempty"`
	Column int `json:"column,omitempty"`
	// Start and End are byte offsets [Start, End).
	Start int `json:"start,omitempty"`
	End   int `json:"end,omitempty"`
}

// Finding is one problem a rule found.
type Finding struct {
	Flag string `json:"flag"`
	// Severity from 1 (low) to 10 (critical).
	Severity int `json:"severity"`
	// Score is how strongly the rule's evidence points at the flag, in the rule's own
	// units: a model's probability from 0 to 1, an outlier's z-score, 1 for a rule that
	// matched outright. Zero means the rule gives none. The host shows it in the flag's
	// reason and keeps it as the flag's score. Scores of different rules are not
	// comparable, so any finite number is accepted, a negative one included; NaN and
	// ±Inf are not: the host refuses an evaluation with one (see Validate).
	Score    float64   `json:"score"`
	Reason   string    `json:"reason"`
	RuleID   string    `json:"rule_id"`
	Location *Location `json:"location,omitempty"`
}

// Validate checks a finding's flag, severity and score. The host calls it on every
// finding a plugin returns and refuses the whole evaluation when one fails, as the
// plugin's error, so that a faulty plugin cannot raise a flag the host does not know or
// a score the trace store cannot keep.
func (f Finding) Validate() error {
	if !ValidFlag(f.Flag) {
		return fmt.Errorf("finding of rule %q has unknown flag %q", f.RuleID, f.Flag)
	}
	if f.Severity < 1 || f.Severity > 10 {
		return fmt.Errorf("finding of rule %q has severity %d, want 1-10", f.RuleID, f.Severity)
	}
	if math.IsNaN(f.Score) || math.IsInf(f.Score, 0) {
		return fmt.Errorf("finding of rule %q has score %v, want a finite number", f.RuleID, f.Score)
	}
	return nil
}

// MetaPreset is the EvaluateRequest.Metadata key a measurement sets (POST
// /v1/governance/evaluate with a preset, as limitctl governance eval does) to ask rules to
// judge at that preset's sensitivity ("permissive", "default" or "strict") instead of
// their configured one. Rules without presets ignore it.
const MetaPreset = "preset"

// Evaluation is what a rule found, with the raw scores behind it.
type Evaluation struct {
	Findings []Finding
	// Scores maps a rule id to what its model made of the content, flagged or not, so
	// that the rule can be measured (ROC curves). Optional.
	Scores map[string]float64
}

// Validate checks each finding and that each score is a finite number under a rule id.
func (e Evaluation) Validate() error {
	for _, f := range e.Findings {
		if err := f.Validate(); err != nil {
			return err
		}
	}
	for id, s := range e.Scores {
		if id == "" {
			return fmt.Errorf("a score without a rule id")
		}
		if math.IsNaN(s) || math.IsInf(s, 0) {
			return fmt.Errorf("rule %q scored %v, want a finite number", id, s)
		}
	}
	return nil
}

// ScoringRule is a Rule whose models also report their raw scores. The SDK's server calls
// EvaluateScores instead of Evaluate when a plugin implements it.
type ScoringRule interface {
	Rule
	EvaluateScores(ctx context.Context, req EvaluateRequest) (Evaluation, error)
}

// ErrBeyondLimits marks a rule's error about the content it was asked to evaluate: the
// content is beyond the limits the rule checks within (its size, or the time its analysis
// may take), so asking again would fail again. A rule wraps it,
//
//	fmt.Errorf("code is %d bytes, more than max_bytes (%d): %w", n, max, governance.ErrBeyondLimits)
//
// and the error crosses the plugin boundary (a gRPC OutOfRange status): errors.Is finds
// ErrBeyondLimits in what the host's client returns. Errors without it mean the rule
// could not answer this time (a fault, a dead helper) and are worth retrying.
var ErrBeyondLimits = errors.New("content beyond the rule's limits")

// Rule is the interface a governance plugin implements.
type Rule interface {
	base.Plugin
	// Describe lists the rules the plugin evaluates.
	Describe(ctx context.Context) ([]RuleDescription, error)
	// Evaluate looks at req and returns what it found (nothing is a pass).
	Evaluate(ctx context.Context, req EvaluateRequest) ([]Finding, error)
}
