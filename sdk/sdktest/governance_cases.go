package sdktest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/limitgraph/limit/sdk/governance"
)

// Sizes of the governance suite's load cases.
const (
	// largeContentSize is the size of the content of the large-content case (1 MiB).
	largeContentSize = 1 << 20
	// concurrentEvaluators is how many goroutines evaluate at once in the concurrent case.
	concurrentEvaluators = 16
)

// sampleContent is evaluated by the deterministic and concurrent cases when the
// configuration gives no content at all.
const sampleContent = "The quick brown fox jumps over the lazy dog.\nprint(sum(range(10)))\n"

// GovernanceCases returns the governance conformance cases for cfg, in the order they are
// meant to run. Cases needing contents cfg lacks are marked not applicable.
func GovernanceCases(cfg GovernanceSuiteConfig) []GovernanceCase {
	c := func(name string, run func(context.Context, governance.Rule, GovernanceSuiteConfig) error) GovernanceCase {
		return GovernanceCase{Name: name, Run: func(ctx context.Context, r governance.Rule) error { return run(ctx, r, cfg) }}
	}
	benign := c("benign-clean", caseBenignClean)
	if len(cfg.Benign) == 0 {
		benign.NotApplicable = "no benign contents given (Benign, --benign)"
	}
	malicious := c("malicious-flagged", caseMaliciousFlagged)
	if len(cfg.Malicious) == 0 {
		malicious.NotApplicable = "no malicious contents given (Malicious, --malicious)"
	}
	return []GovernanceCase{
		c("describe", caseDescribe),
		benign,
		malicious,
		c("empty-content", caseEmptyContent),
		c("large-content", caseLargeContent),
		c("deterministic", caseDeterministic),
		c("concurrent", caseConcurrent),
	}
}

// ruleSet is what the plugin described, read leniently so that cases other than
// "describe" can run against a plugin whose description has faults.
type ruleSet struct {
	byID map[string]governance.RuleDescription
	// stages the rules run at, in order; both when no rule names a valid one.
	stages []governance.Stage
}

// describe asks r for its rules.
func describe(ctx context.Context, r governance.Rule) (ruleSet, error) {
	ds, err := r.Describe(ctx)
	if err != nil {
		return ruleSet{}, fmt.Errorf("describe: %w", err)
	}
	rs := ruleSet{byID: map[string]governance.RuleDescription{}}
	for _, d := range ds {
		rs.byID[d.ID] = d
		for _, s := range d.Stages {
			if (s == governance.StagePre || s == governance.StagePost) && !slices.Contains(rs.stages, s) {
				rs.stages = append(rs.stages, s)
			}
		}
	}
	if len(rs.stages) == 0 {
		rs.stages = []governance.Stage{governance.StagePre, governance.StagePost}
	}
	slices.Sort(rs.stages)
	return rs, nil
}

// request builds the evaluation request of content at stage.
func request(cfg GovernanceSuiteConfig, stage governance.Stage, content string) governance.EvaluateRequest {
	ct := cfg.ContentType
	if ct == "" {
		// What the host sends: the input of a runner without an input:TYPE capability is
		// text/plain, a program's output text/output.
		ct = "text/plain"
		if stage == governance.StagePost {
			ct = "text/output"
		}
	}
	return governance.EvaluateRequest{
		Stage: stage, SessionID: "sdktest-session", TraceID: "sdktest-trace", Runner: "sdktest",
		ContentType: ct, Content: content,
	}
}

// evaluate runs one evaluation within the call timeout.
func evaluate(ctx context.Context, r governance.Rule, cfg GovernanceSuiteConfig, req governance.EvaluateRequest) ([]governance.Finding, error) {
	ctx, cancel := context.WithTimeout(ctx, cfg.callTimeout())
	defer cancel()
	start := time.Now()
	fs, err := r.Evaluate(ctx, req)
	if err != nil {
		if d := time.Since(start); d >= cfg.callTimeout() {
			return nil, fmt.Errorf("evaluate %s at stage %s: no answer within the %v a call may take: %w", showText(req.Content), req.Stage, cfg.callTimeout(), err)
		}
		return nil, fmt.Errorf("evaluate %s at stage %s: %w (after %v)", showText(req.Content), req.Stage, err, time.Since(start).Round(time.Millisecond))
	}
	if d := time.Since(start); d > cfg.callTimeout() {
		return nil, fmt.Errorf("evaluate %s at stage %s took %v, longer than the %v a call may take", showText(req.Content), req.Stage, d.Round(time.Millisecond), cfg.callTimeout())
	}
	return fs, nil
}

// checkFindings checks every finding of an evaluation of req against the protocol and the
// plugin's description.
func checkFindings(rs ruleSet, req governance.EvaluateRequest, fs []governance.Finding) error {
	if len(fs) == 0 {
		return nil
	}
	lines := strings.Count(req.Content, "\n") + 1
	for i, f := range fs {
		if err := checkFinding(rs, req, lines, f); err != nil {
			return fmt.Errorf("evaluate %s at stage %s: finding %d %s: %w", showText(req.Content), req.Stage, i, showFinding(f), err)
		}
	}
	return nil
}

// checkFinding checks one finding of req, whose content has the given number of lines.
func checkFinding(rs ruleSet, req governance.EvaluateRequest, lines int, f governance.Finding) error {
	if err := f.Validate(); err != nil {
		return err
	}
	if strings.TrimSpace(f.Reason) == "" {
		return fmt.Errorf("reason is empty, want a sentence a user can act on")
	}
	d, ok := rs.byID[f.RuleID]
	if !ok {
		ids := make([]string, 0, len(rs.byID))
		for id := range rs.byID {
			ids = append(ids, strconv.Quote(id))
		}
		slices.Sort(ids)
		return fmt.Errorf("rule id %q is not one Describe lists (%s)", f.RuleID, strings.Join(ids, ", "))
	}
	if !slices.Contains(d.Flags, f.Flag) {
		return fmt.Errorf("rule %q raised flag %q, which Describe does not list for it (%v)", d.ID, f.Flag, d.Flags)
	}
	if !slices.Contains(d.Stages, req.Stage) {
		return fmt.Errorf("rule %q raised a finding at stage %s, but Describe lists it only for %v", d.ID, req.Stage, d.Stages)
	}
	if !d.Reads(req) {
		return fmt.Errorf("rule %q raised a finding on content of type %q from runner %q, which Describe says it does not read (content types %q, runners %q): the host would not send it that content",
			d.ID, req.ContentType, req.Runner, d.ContentTypes, d.Runners)
	}
	if l := f.Location; l != nil {
		n := len(req.Content)
		switch {
		case l.Start < 0 || l.End < 0 || l.Line < 0 || l.Column < 0:
			return fmt.Errorf("location %+v has a negative field", *l)
		case l.Start > l.End:
			return fmt.Errorf("location %+v starts after it ends, want byte offsets [start, end)", *l)
		case l.End > n:
			return fmt.Errorf("location %+v ends past the content's %d bytes", *l, n)
		case l.Line > lines:
			return fmt.Errorf("location %+v is on line %d, but the content has %d lines", *l, l.Line, lines)
		}
	}
	return nil
}

// showFinding formats a finding for an error message.
func showFinding(f governance.Finding) string {
	loc := ""
	if f.Location != nil {
		loc = fmt.Sprintf(" at %+v", *f.Location)
	}
	return fmt.Sprintf("{rule %q flag %q severity %d score %v reason %q%s}", f.RuleID, f.Flag, f.Severity, f.Score, f.Reason, loc)
}

// showFindings formats findings for an error message.
func showFindings(fs []governance.Finding) string {
	parts := make([]string, len(fs))
	for i, f := range fs {
		parts[i] = showFinding(f)
	}
	return "[" + strings.Join(parts, " ") + "]"
}

// canonical returns findings as sorted strings, so two evaluations can be compared
// regardless of the order the findings came in.
func canonical(fs []governance.Finding) []string {
	out := make([]string, len(fs))
	for i, f := range fs {
		loc := "-"
		if f.Location != nil {
			loc = fmt.Sprintf("%d:%d:%d-%d", f.Location.Line, f.Location.Column, f.Location.Start, f.Location.End)
		}
		out[i] = fmt.Sprintf("%s|%s|%d|%s|%s|%s", f.RuleID, f.Flag, f.Severity, strconv.FormatFloat(f.Score, 'g', -1, 64), loc, f.Reason)
	}
	slices.Sort(out)
	return out
}

// caseDescribe: the plugin describes at least one rule, each with a unique id, known flags
// and stages pre or post.
func caseDescribe(ctx context.Context, r governance.Rule, _ GovernanceSuiteConfig) error {
	ds, err := r.Describe(ctx)
	if err != nil {
		return fmt.Errorf("describe: %w", err)
	}
	if len(ds) == 0 {
		return fmt.Errorf("describe: no rules, want at least one")
	}
	seen := map[string]bool{}
	for i, d := range ds {
		what := fmt.Sprintf("describe: rule %d (%q)", i, d.ID)
		switch {
		case strings.TrimSpace(d.ID) == "":
			return fmt.Errorf("%s: id is empty", what)
		case seen[d.ID]:
			return fmt.Errorf("%s: id is used by two rules; findings name their rule by id, so ids must be unique", what)
		case len(d.Flags) == 0:
			return fmt.Errorf("%s: lists no flags, want the flags it may raise", what)
		case len(d.Stages) == 0:
			return fmt.Errorf("%s: lists no stages, want pre, post or both", what)
		}
		seen[d.ID] = true
		for _, f := range d.Flags {
			if !governance.ValidFlag(f) {
				return fmt.Errorf("%s: unknown flag %q (known: %s)", what, f, strings.Join(governance.Flags, ", "))
			}
		}
		for _, s := range d.Stages {
			if s != governance.StagePre && s != governance.StagePost {
				return fmt.Errorf("%s: stage %d is neither pre nor post", what, int(s))
			}
		}
	}
	return nil
}

// caseBenignClean: benign contents yield no finding at any stage.
func caseBenignClean(ctx context.Context, r governance.Rule, cfg GovernanceSuiteConfig) error {
	rs, err := describe(ctx, r)
	if err != nil {
		return err
	}
	for _, content := range cfg.Benign {
		for _, stage := range rs.stages {
			req := request(cfg, stage, content)
			fs, err := evaluate(ctx, r, cfg, req)
			if err != nil {
				return err
			}
			if err := checkFindings(rs, req, fs); err != nil {
				return err
			}
			if len(fs) > 0 {
				return fmt.Errorf("evaluate benign %s at stage %s: %d findings %s, want none", showText(content), stage, len(fs), showFindings(fs))
			}
		}
	}
	return nil
}

// caseMaliciousFlagged: each malicious content yields at least one valid finding.
func caseMaliciousFlagged(ctx context.Context, r governance.Rule, cfg GovernanceSuiteConfig) error {
	rs, err := describe(ctx, r)
	if err != nil {
		return err
	}
	for _, content := range cfg.Malicious {
		total := 0
		for _, stage := range rs.stages {
			req := request(cfg, stage, content)
			fs, err := evaluate(ctx, r, cfg, req)
			if err != nil {
				return err
			}
			if err := checkFindings(rs, req, fs); err != nil {
				return err
			}
			total += len(fs)
		}
		if total == 0 {
			return fmt.Errorf("evaluate malicious %s at stages %v: no findings, want at least one", showText(content), rs.stages)
		}
	}
	return nil
}

// caseEmptyContent: empty content is evaluated without error.
func caseEmptyContent(ctx context.Context, r governance.Rule, cfg GovernanceSuiteConfig) error {
	rs, err := describe(ctx, r)
	if err != nil {
		return err
	}
	for _, stage := range rs.stages {
		req := request(cfg, stage, "")
		fs, err := evaluate(ctx, r, cfg, req)
		if err != nil {
			return err
		}
		if err := checkFindings(rs, req, fs); err != nil {
			return err
		}
	}
	return nil
}

// largeContent returns at least 1 MiB of valid UTF-8 text made of the configured contents
// (benign ones first), one per line.
func largeContent(cfg GovernanceSuiteConfig) string {
	pieces := append(slices.Clone(cfg.Benign), cfg.Malicious...)
	if len(pieces) == 0 || len(strings.Join(pieces, "")) == 0 {
		pieces = []string{sampleContent}
	}
	var b strings.Builder
	b.Grow(largeContentSize + 4096)
	for i := 0; b.Len() < largeContentSize; i++ {
		b.WriteString(pieces[i%len(pieces)])
		b.WriteByte('\n')
	}
	return b.String()
}

// caseLargeContent: 1 MiB of content is evaluated within the call timeout, without error
// or with one wrapping governance.ErrBeyondLimits (the rule says, in time, that content
// this large is beyond what it checks: the host refuses it with 422), and every location
// found lies within it.
func caseLargeContent(ctx context.Context, r governance.Rule, cfg GovernanceSuiteConfig) error {
	rs, err := describe(ctx, r)
	if err != nil {
		return err
	}
	content := largeContent(cfg)
	for _, stage := range rs.stages {
		req := request(cfg, stage, content)
		fs, err := evaluate(ctx, r, cfg, req)
		if errors.Is(err, governance.ErrBeyondLimits) {
			continue
		}
		if err != nil {
			return err
		}
		if err := checkFindings(rs, req, fs); err != nil {
			return err
		}
	}
	return nil
}

// suiteContents returns the contents the deterministic and concurrent cases evaluate.
func suiteContents(cfg GovernanceSuiteConfig) []string {
	out := append(slices.Clone(cfg.Malicious), cfg.Benign...)
	if len(out) == 0 {
		out = []string{sampleContent}
	}
	return out
}

// caseDeterministic: the same request twice yields the same findings.
func caseDeterministic(ctx context.Context, r governance.Rule, cfg GovernanceSuiteConfig) error {
	rs, err := describe(ctx, r)
	if err != nil {
		return err
	}
	for _, content := range suiteContents(cfg) {
		for _, stage := range rs.stages {
			req := request(cfg, stage, content)
			first, err := evaluate(ctx, r, cfg, req)
			if err != nil {
				return err
			}
			second, err := evaluate(ctx, r, cfg, req)
			if err != nil {
				return err
			}
			if !slices.Equal(canonical(first), canonical(second)) {
				return fmt.Errorf("evaluate %s at stage %s twice: first %s, then %s; want the same findings for the same request", showText(content), stage, showFindings(first), showFindings(second))
			}
		}
	}
	return nil
}

// caseConcurrent: evaluations from many goroutines at once succeed and yield what they
// yield one at a time.
func caseConcurrent(ctx context.Context, r governance.Rule, cfg GovernanceSuiteConfig) error {
	rs, err := describe(ctx, r)
	if err != nil {
		return err
	}
	var reqs []governance.EvaluateRequest
	var want [][]string
	for _, content := range suiteContents(cfg) {
		for _, stage := range rs.stages {
			req := request(cfg, stage, content)
			fs, err := evaluate(ctx, r, cfg, req)
			if err != nil {
				return err
			}
			reqs = append(reqs, req)
			want = append(want, canonical(fs))
		}
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
	)
	fail := func(err error) {
		mu.Lock()
		defer mu.Unlock()
		if first == nil {
			first = err
		}
	}
	start := make(chan struct{})
	for g := range concurrentEvaluators {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			// Each goroutine starts at another request, so different requests overlap.
			for k := range reqs {
				i := (g + k) % len(reqs)
				fs, err := evaluate(ctx, r, cfg, reqs[i])
				if err != nil {
					fail(fmt.Errorf("with %d goroutines evaluating at once: %w", concurrentEvaluators, err))
					return
				}
				if got := canonical(fs); !slices.Equal(got, want[i]) {
					fail(fmt.Errorf("with %d goroutines evaluating at once, evaluate %s at stage %s: got %s, want %s as when evaluated alone", concurrentEvaluators, showText(reqs[i].Content), reqs[i].Stage, showFindings(fs), want[i]))
					return
				}
			}
		}()
	}
	close(start)
	wg.Wait()
	return first
}
