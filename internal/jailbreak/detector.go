package jailbreak

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/limitgraph/limit/internal/clip"
)

// Rule ids of the detector's findings.
const (
	// RuleModel is the trained model's finding.
	RuleModel = "jailbreak.model"
	// RuleEncoded is a phrase rule or the model firing on a decoded payload (base64, hex,
	// percent-encoding, ROT13).
	RuleEncoded = "jailbreak.encoded"
	// RuleHidden is text smuggled in invisible Unicode tag characters.
	RuleHidden = "jailbreak.hidden"
	// RulePlanted is a sentence the planted-instruction scorer reads as an instruction
	// planted in a document for the assistant that reads it (see planted.go).
	RulePlanted = "jailbreak.planted"
	// rulePhrasePrefix + category is a phrase rule's id.
	rulePhrasePrefix = "jailbreak.phrase."
)

// PhraseRuleID returns the rule id of a phrase rule category.
func PhraseRuleID(category string) string { return rulePhrasePrefix + category }

// RuleIDs lists every rule id the detector can report.
func RuleIDs() []string {
	ids := []string{RuleModel, RulePlanted, RuleEncoded, RuleHidden}
	for _, c := range Categories {
		ids = append(ids, PhraseRuleID(c))
	}
	return ids
}

// maxFindings caps the findings of one scan; the first of each rule id is kept.
const maxFindings = 8

// minHiddenLen is the shortest tag-character payload reported on its own: emoji flag
// sequences (🏴 + "gbeng") use a few tag characters legitimately.
const minHiddenLen = 8

// Finding is one reason a text was flagged.
type Finding struct {
	RuleID   string
	Severity int
	// Score is the model probability, or 1 for a phrase rule.
	Score  float64
	Reason string
	// Start and End are the byte span in the scanned text; Line is its first line.
	Start, End, Line int
}

// Detector scans texts with the phrase rules, the decoders and the model at a threshold.
type Detector struct {
	model     *Model
	threshold float64
	// planted is the planted-instruction scorer's threshold (the preset's), or 0 when the
	// model has no such scorer; plantedOutput the same for the scorer of a program's
	// output.
	planted, plantedOutput float64
}

// NewDetector returns a detector using m with the given preset's threshold, or with
// threshold itself when it is above zero. The model's planted-instruction scorer, if it
// has one, takes the preset's threshold (a preset is needed for it to run).
func NewDetector(m *Model, preset string, threshold float64) (*Detector, error) {
	if m == nil {
		return nil, fmt.Errorf("no model")
	}
	var planted, plantedOutput float64
	if m.Planted != nil {
		planted = m.Planted.Meta.Thresholds[preset]
	}
	if m.PlantedOutput != nil {
		plantedOutput = m.PlantedOutput.Meta.Thresholds[preset]
	}
	if threshold <= 0 {
		t, ok := m.Meta.Thresholds[preset]
		if !ok {
			return nil, fmt.Errorf("unknown preset %q (want %s)", preset, strings.Join(Presets, ", "))
		}
		threshold = t
	}
	if threshold >= 1 {
		return nil, fmt.Errorf("threshold %v must be below 1", threshold)
	}
	return &Detector{model: m, threshold: threshold, planted: planted, plantedOutput: plantedOutput}, nil
}

// Threshold returns the model probability at or above which the detector flags a text.
func (d *Detector) Threshold() float64 { return d.threshold }

// Model returns the detector's model.
func (d *Detector) Model() *Model { return d.model }

// Result is what Scan found.
type Result struct {
	Findings []Finding
	// ModelScore is the model's verdict on the normalised text itself.
	ModelScore WindowScore
}

// Flagged reports whether anything was found.
func (r Result) Flagged() bool { return len(r.Findings) > 0 }

// Scan normalises text, runs the phrase rules on it and on its leetspeak-folded and
// ROT13 views, decodes embedded payloads and scans them too, and scores the text with
// the model over windows. Each finding says which rule fired, where and why.
func (d *Detector) Scan(text string) Result {
	r, _ := d.scan(context.Background(), text, Reading{Window: true, Planted: true})
	return r
}

// ScanRules is Scan without the model's verdict on the text itself, for content the model
// does not know: it was trained on prompts, and what it says of code or of what a program
// printed means nothing. Phrase rules, hidden text and decoded payloads (scored by the
// model too: they are text someone encoded) are reported as by Scan.
func (d *Detector) ScanRules(text string) Result {
	r, _ := d.scan(context.Background(), text, Reading{})
	return r
}

// Reading says which of the detector's trained scorers read a text beside the phrase
// rules and decoders, which always do: the window model (trained on prompts: its score of
// code or of what a program printed means nothing) and a planted-instruction scorer.
// Output says the text is what a program printed (a tool's output, a model's answer): the
// planted scorer that reads it is then the one trained with benign output among its
// negatives and calibrated on it, not the one of prompts and documents.
type Reading struct {
	Window, Planted, Output bool
}

// ScanAs is ScanContext with the scorers r names.
func (d *Detector) ScanAs(ctx context.Context, text string, r Reading) (Result, error) {
	return d.scan(ctx, text, r)
}

// ScanContext is Scan that gives up once ctx ends, with its error: a scan of a large text
// takes seconds (see BENCHMARKS.md), and a caller that stopped waiting for it should not
// leave it running. It looks at ctx between the scan's stages, every 64 KiB inside the
// stages that go through a whole text in one loop (normalising, each view's phrase
// rules, leetspeak folding) and between the blocks of a long text's scoring: the longest
// stretch without a look is a block or the opening of normalising (~50–90 ms for 10 MB).
func (d *Detector) ScanContext(ctx context.Context, text string) (Result, error) {
	return d.scan(ctx, text, Reading{Window: true, Planted: true})
}

// ScanRulesContext is ScanRules that gives up once ctx ends, as ScanContext does.
func (d *Detector) ScanRulesContext(ctx context.Context, text string) (Result, error) {
	return d.scan(ctx, text, Reading{})
}

func (d *Detector) scan(ctx context.Context, text string, read Reading) (Result, error) {
	var res Result
	if err := ctx.Err(); err != nil {
		return Result{}, err
	}
	n, err := normalize(&stopper{ctx: ctx}, text)
	if err != nil {
		return Result{}, err
	}
	seen := map[string]bool{}
	add := func(f Finding) {
		if seen[f.RuleID] || len(res.Findings) >= maxFindings {
			return
		}
		seen[f.RuleID] = true
		f.Line = lineOf(text, f.Start)
		res.Findings = append(res.Findings, f)
	}
	invis := ""
	if n.Removed > 0 {
		invis = fmt.Sprintf(" after removing %d invisible characters", n.Removed)
	}
	pm, err := matchPhrases(&stopper{ctx: ctx}, n.Text, false, false)
	if err != nil {
		return Result{}, err
	}
	for _, m := range pm {
		s, e := n.Span(m.Start, m.End)
		add(Finding{RuleID: PhraseRuleID(m.Rule.Category), Severity: m.Rule.Severity, Score: 1, Start: s, End: e,
			Reason: fmt.Sprintf("%s%s", m, invis)})
	}
	lv, ok, err := leetView(ctx, n.View)
	if err != nil {
		return Result{}, err
	}
	if ok {
		pm, err := matchPhrases(&stopper{ctx: ctx}, lv.Text, true, false)
		if err != nil {
			return Result{}, err
		}
		for _, m := range pm {
			s, e := lv.Span(m.Start, m.End)
			add(Finding{RuleID: PhraseRuleID(m.Rule.Category), Severity: m.Rule.Severity, Score: 1, Start: s, End: e,
				Reason: fmt.Sprintf("%s after folding leetspeak and spelled-out letters (original %q)", m, clip.Marked(text[s:e], 80))})
		}
	}
	if err := ctx.Err(); err != nil {
		return Result{}, err
	}
	if !seen[RuleEncoded] {
		rv := Rot13(n.View)
		pm, err := matchPhrases(&stopper{ctx: ctx}, rv.Text, false, true)
		if err != nil {
			return Result{}, err
		}
		for _, m := range pm {
			s, e := rv.Span(m.Start, m.End)
			add(Finding{RuleID: RuleEncoded, Severity: 9, Score: 1, Start: s, End: e,
				Reason: fmt.Sprintf("ROT13-encoded text decodes to %q: %s", clip.Marked(m.Text, 80), m)})
			break
		}
	}
	if err := ctx.Err(); err != nil {
		return Result{}, err
	}
	if rv, ok := reverseView(n.Text); ok && !seen[RuleEncoded] {
		pm, err := matchPhrases(&stopper{ctx: ctx}, rv.Text, false, true)
		if err != nil {
			return Result{}, err
		}
		for _, m := range pm {
			s, e := n.Span(rv.span(m.Start, m.End))
			add(Finding{RuleID: RuleEncoded, Severity: 9, Score: 1, Start: s, End: e,
				Reason: fmt.Sprintf("text written backwards reads %q: %s", clip.Marked(m.Text, 80), m)})
			break
		}
	}
	if n.Hidden != "" {
		if err := d.scanPayload(ctx, Payload{Encoding: "tags", Start: n.HiddenStart, End: n.HiddenEnd, Text: n.Hidden}, text, 0, add); err != nil {
			return Result{}, err
		}
		if len(strings.TrimSpace(n.Hidden)) >= minHiddenLen {
			add(Finding{RuleID: RuleHidden, Severity: 7, Score: 1, Start: n.HiddenStart, End: n.HiddenEnd,
				Reason: fmt.Sprintf("invisible Unicode tag characters carry hidden text %q", clip.Marked(n.Hidden, 120))})
		}
	}
	for _, p := range FindPayloads(text) {
		if err := d.scanPayload(ctx, p, text, 0, add); err != nil {
			return Result{}, err
		}
	}

	if read.Window {
		if err := d.scoreWindows(ctx, &n, &res, add); err != nil {
			return Result{}, err
		}
	}
	scorer, planted := d.model.Planted, d.planted
	if read.Output {
		scorer, planted = d.model.PlantedOutput, d.plantedOutput
	}
	if read.Planted && planted > 0 {
		ps, err := scorer.score(ctx, n.Text)
		if err != nil {
			return Result{}, err
		}
		if ps.Prob >= planted {
			s, e := n.Span(ps.Start, ps.End)
			add(Finding{RuleID: RulePlanted, Severity: modelSeverity(ps.Prob, planted), Score: ps.Prob, Start: s, End: e,
				Reason: fmt.Sprintf("the sentence %q reads as an instruction planted for an assistant reading the text: scored %.6f (threshold %.6f)", clip.Marked(text[s:e], 160), ps.Prob, planted)})
		}
	}
	sort.SliceStable(res.Findings, func(i, j int) bool { return res.Findings[i].Severity > res.Findings[j].Severity })
	return res, nil
}

// scoreWindows scores the normalised text n with the window model, sets res.ModelScore
// and adds a finding when it reaches the threshold.
func (d *Detector) scoreWindows(ctx context.Context, n *Normalized, res *Result, add func(Finding)) error {
	ms, sc, err := d.model.score(ctx, n.Text)
	defer scratchPool.Put(sc)
	if err != nil {
		return err
	}
	res.ModelScore = ms
	if ms.Prob >= d.threshold {
		s, e := n.Span(ms.Start, ms.End)
		top := d.model.explain(sc, n.Text, ms.a, ms.b, 5)
		where := "the text"
		if ms.Windows > 1 {
			where = fmt.Sprintf("the window at bytes %d-%d (of %d windows)", s, e, ms.Windows)
		}
		add(Finding{RuleID: RuleModel, Severity: modelSeverity(ms.Prob, d.threshold), Score: ms.Prob, Start: s, End: e,
			Reason: fmt.Sprintf("model scores %s %.3f (threshold %.3f); top features: %s", where, ms.Prob, d.threshold, FormatContributions(top))})
	}
	return nil
}

// scanPayload runs the phrase rules and the model on a decoded payload and reports a
// finding located at its encoded span in the original text. It gives up once ctx ends.
func (d *Detector) scanPayload(ctx context.Context, p Payload, text string, depth int, add func(Finding)) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	pn, err := normalize(&stopper{ctx: ctx}, p.Text)
	if err != nil {
		return err
	}
	reason := ""
	ms, err := matchPhrases(&stopper{ctx: ctx}, pn.Text, false, false)
	if err != nil {
		return err
	}
	if len(ms) > 0 {
		reason = ms[0].String()
	} else {
		lv, ok, err := leetView(ctx, pn.View)
		if err != nil {
			return err
		}
		if ok {
			if ms, err = matchPhrases(&stopper{ctx: ctx}, lv.Text, true, false); err != nil {
				return err
			}
			if len(ms) > 0 {
				reason = ms[0].String() + " after folding leetspeak"
			}
		}
	}
	score := 1.0
	if reason == "" {
		ws, sc, err := d.model.score(ctx, pn.Text)
		scratchPool.Put(sc)
		if err != nil {
			return err
		}
		if ws.Prob >= d.threshold {
			score = ws.Prob
			reason = fmt.Sprintf("model scores it %.3f (threshold %.3f)", ws.Prob, d.threshold)
		}
	}
	if reason != "" {
		add(Finding{RuleID: RuleEncoded, Severity: 9, Score: score, Start: p.Start, End: p.End,
			Reason: fmt.Sprintf("%s payload decodes to %q: %s", p.Encoding, clip.Marked(p.Text, 120), reason)})
		return nil
	}
	if depth+1 < maxDecodeDepth {
		for _, q := range FindPayloads(p.Text) {
			// Nested payloads are reported at the outer payload's span.
			q.Encoding = p.Encoding + "+" + q.Encoding
			q.Start, q.End = p.Start, p.End
			if err := d.scanPayload(ctx, q, text, depth+1, add); err != nil {
				return err
			}
		}
	}
	return nil
}

// leetView is LeetView for callers that use the view only when ok, giving up when ctx
// ends.
func leetView(ctx context.Context, v View) (View, bool, error) {
	if !leetChanges(v.Text) {
		return View{}, false, nil
	}
	return leetViewStop(&stopper{ctx: ctx}, v)
}

// modelSeverity maps a probability above the threshold to a severity from 5 to 9.
func modelSeverity(p, threshold float64) int {
	if threshold >= 1 {
		return 5
	}
	s := 5 + int(5*(p-threshold)/(1-threshold))
	return min(max(s, 5), 9)
}
