package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/limitgraph/limit/internal/binclass"
	"github.com/limitgraph/limit/sdk/client"
)

// evalPresets are the governance presets `governance eval` measures by default.
var evalPresets = []string{"permissive", "default", "strict"}

// evalExample is one labelled line of an evaluation set.
type evalExample struct {
	Line     int
	Text     string
	Positive bool
}

// readEvalSet reads JSON lines {"text", "label"} with label "jailbreak" or "benign"
// (other fields are ignored), naming the file and line of any it cannot take.
func readEvalSet(path string) ([]evalExample, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 16<<20)
	var out []evalExample
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		var row struct {
			Text  *string `json:"text"`
			Label string  `json:"label"`
		}
		if err := json.Unmarshal([]byte(line), &row); err != nil {
			return nil, fmt.Errorf("%s:%d: not a JSON object {\"text\", \"label\"}: %v", path, n, err)
		}
		if row.Text == nil || *row.Text == "" {
			return nil, fmt.Errorf("%s:%d: no \"text\"", path, n)
		}
		ex := evalExample{Line: n, Text: *row.Text}
		switch strings.ToLower(row.Label) {
		case "jailbreak":
			ex.Positive = true
		case "benign":
		default:
			return nil, fmt.Errorf("%s:%d: label %q: want \"jailbreak\" or \"benign\"", path, n, row.Label)
		}
		out = append(out, ex)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no examples", path)
	}
	return out, nil
}

// evalVerdict is what the daemon said of one text under one preset.
type evalVerdict struct {
	flagged bool
	// findings are the findings of the measured flags: why the text was flagged.
	findings []evalFinding
	// ruleHit: a finding of the flag by a rule that reports no score (a phrase rule,
	// a decoded payload), as opposed to a model crossing its threshold.
	ruleHit bool
	// score is the highest model score reported; hasScore whether any was.
	score    float64
	hasScore bool
}

// evalPresetResult is one preset's outcome, beside the length-only baseline held to
// the same false-positive rate on the same set.
type evalPresetResult struct {
	Preset    string             `json:"preset"`
	Confusion binclass.Confusion `json:"confusion"`
	TPR       *float64           `json:"tpr"`
	FPR       *float64           `json:"fpr"`
	Precision *float64           `json:"precision"`
	F1        *float64           `json:"f1"`
	// Length is the length-only baseline: a text is flagged when it has more than
	// LengthThreshold bytes, the threshold set on this set's benign texts to the
	// detector's false-positive rate under this preset.
	LengthThreshold float64            `json:"length_threshold"`
	Length          binclass.Confusion `json:"length_confusion"`
	LengthTPR       *float64           `json:"length_tpr"`
	LengthFPR       *float64           `json:"length_fpr"`
	// Misses and FalsePositives are the line numbers of the texts the detector got wrong.
	Misses         []int `json:"misses"`
	FalsePositives []int `json:"false_positives"`
	// Hits are the texts flagged (true and false positives), each with the findings of
	// the measured flags that flagged it.
	Hits []evalHit `json:"hits"`
}

// evalHit is a text flagged under a preset, and why.
type evalHit struct {
	Line     int           `json:"line"`
	Label    string        `json:"label"`
	Findings []evalFinding `json:"findings"`
}

// evalFinding is one finding of a measured flag on a text.
type evalFinding struct {
	Flag     string `json:"flag"`
	Severity int    `json:"severity"`
	RuleID   string `json:"rule_id"`
	Reason   string `json:"reason"`
}

// evalReport is the whole measurement.
type evalReport struct {
	File string `json:"file"`
	Kind string `json:"kind"`
	// Flag is the measured flags as given (comma-separated); Flags the same as a list.
	// A text counts as detected when any of them is raised on it.
	Flag      string             `json:"flag"`
	Flags     []string           `json:"flags"`
	Positives int                `json:"positives"`
	Negatives int                `json:"negatives"`
	Presets   []evalPresetResult `json:"presets"`
	// ModelAUC is the ROC-AUC of the rules' model scores alone; DetectorAUC of the
	// detector's combined score (1 when a rule without a score fires, else the model
	// score); LengthAUC of the text length. Null when not defined (no scores reported,
	// or a class missing).
	ModelAUC    *float64 `json:"model_roc_auc"`
	DetectorAUC *float64 `json:"detector_roc_auc"`
	LengthAUC   *float64 `json:"length_roc_auc"`
}

// num turns NaN into null.
func num(x float64) *float64 {
	if math.IsNaN(x) {
		return nil
	}
	return &x
}

// governanceEval runs a labelled set through the daemon's POST /v1/governance/evaluate
// at each preset and prints the detector's rates beside the length-only baseline's.
func (x *cli) governanceEval(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("governance eval", flag.ContinueOnError)
	kind := fs.String("kind", "prompt", "what the texts are: prompt, code or output")
	flagName := fs.String("flag", "jailbreak", "the flags that count as detected, comma-separated: a text is detected when any is raised (codesafety: malicious,unsafe,high_risk)")
	var presets multi
	fs.Var(&presets, "preset", "a preset to measure (repeatable; default permissive, default and strict)")
	parallel := fs.Int("parallel", 4, "evaluations in flight at once")
	pos, err := x.parse(fs, args)
	if err != nil {
		return err
	}
	if err := need(pos, 1, "FILE.jsonl (lines {\"text\", \"label\": \"jailbreak\" | \"benign\"})"); err != nil {
		return err
	}
	flags, err := evalFlags(*flagName)
	if err != nil {
		return err
	}
	if *parallel < 1 || *parallel > 64 {
		return usagef("--parallel must be 1 to 64, got %d", *parallel)
	}
	if len(presets) == 0 {
		presets = evalPresets
	}
	for _, p := range presets {
		if !slices.Contains(evalPresets, p) {
			return usagef("--preset must be one of %s, got %q", strings.Join(evalPresets, ", "), p)
		}
	}
	set, err := readEvalSet(pos[0])
	if err != nil {
		return err
	}
	// One evaluation first: the daemon must have a rule that raises the flag.
	probe, err := evaluateRetrying(ctx, x.c, *kind, set[0].Text, presets[0])
	if err != nil {
		return err
	}
	var unraised []string
	for _, f := range flags {
		if !raises(probe.Rules, f) {
			unraised = append(unraised, strconv.Quote(f))
		}
	}
	if len(unraised) > 0 {
		return fmt.Errorf("no rule the daemon runs on %s texts raises %s: nothing to measure (configure a rule plugin that does, and reads them)", *kind, strings.Join(unraised, ", "))
	}
	verdicts := make(map[string][]evalVerdict, len(presets))
	for _, p := range presets {
		v, err := x.evalPass(ctx, set, *kind, flags, p, *parallel)
		if err != nil {
			return err
		}
		verdicts[p] = v
	}
	rep := evalReport{File: pos[0], Kind: *kind, Flag: strings.Join(flags, ","), Flags: flags}
	positive := make([]bool, len(set))
	lengths := make([]float64, len(set))
	var benignLengths []float64
	for i, ex := range set {
		positive[i], lengths[i] = ex.Positive, float64(len(ex.Text))
		if ex.Positive {
			rep.Positives++
		} else {
			rep.Negatives++
			benignLengths = append(benignLengths, lengths[i])
		}
	}
	for _, p := range presets {
		r := evalPresetResult{Preset: p, Misses: []int{}, FalsePositives: []int{}, Hits: []evalHit{}}
		for i, v := range verdicts[p] {
			r.Confusion.Add(positive[i], v.flagged)
			if v.flagged {
				label := "benign"
				if positive[i] {
					label = "jailbreak"
				}
				r.Hits = append(r.Hits, evalHit{Line: set[i].Line, Label: label, Findings: v.findings})
			}
			switch {
			case positive[i] && !v.flagged:
				r.Misses = append(r.Misses, set[i].Line)
			case !positive[i] && v.flagged:
				r.FalsePositives = append(r.FalsePositives, set[i].Line)
			}
		}
		c := r.Confusion
		r.TPR, r.FPR, r.Precision, r.F1 = num(c.TPR()), num(c.FPR()), num(c.Precision()), num(c.F1())
		fpr := c.FPR()
		if math.IsNaN(fpr) {
			fpr = 0
		}
		r.LengthThreshold = binclass.ThresholdAtFPR(benignLengths, fpr)
		for i := range set {
			r.Length.Add(positive[i], lengths[i] > r.LengthThreshold)
		}
		r.LengthTPR, r.LengthFPR = num(r.Length.TPR()), num(r.Length.FPR())
		rep.Presets = append(rep.Presets, r)
	}
	// Scores are the same under every preset; rule hits too (only the model's threshold
	// moves): take them from the default pass when there is one.
	base := verdicts[presets[0]]
	if v, ok := verdicts["default"]; ok {
		base = v
	}
	model, det := make([]float64, len(set)), make([]float64, len(set))
	scored := true
	for i, v := range base {
		scored = scored && v.hasScore
		model[i], det[i] = v.score, v.score
		if v.ruleHit {
			det[i] = 1
		}
	}
	if scored {
		rep.ModelAUC, rep.DetectorAUC = num(binclass.ROCAUC(model, positive)), num(binclass.ROCAUC(det, positive))
	}
	rep.LengthAUC = num(binclass.ROCAUC(lengths, positive))
	if x.json {
		return x.printJSON(rep)
	}
	x.printEval(rep, scored)
	return nil
}

// evalFlags reads --flag: one flag or several, comma-separated.
func evalFlags(s string) ([]string, error) {
	var out []string
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			return nil, usagef("--flag must name flags separated by commas, got %q", s)
		}
		if !slices.Contains(out, f) {
			out = append(out, f)
		}
	}
	return out, nil
}

// raises reports whether any configured rule raises flag.
func raises(rules []client.RuleInfo, flag string) bool {
	for _, p := range rules {
		for _, r := range p.Rules {
			if slices.Contains(r.Flags, flag) {
				return true
			}
		}
	}
	return false
}

// evalPass evaluates every text at one preset, parallel at a time, showing progress on
// stderr when it takes a while. Any failed request or rule fails the measurement, which
// would otherwise be wrong.
func (x *cli) evalPass(ctx context.Context, set []evalExample, kind string, flags []string, preset string, parallel int) ([]evalVerdict, error) {
	out := make([]evalVerdict, len(set))
	var done atomic.Int64
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(parallel)
	stop := make(chan struct{})
	progressDone := make(chan struct{})
	go func() {
		defer close(progressDone)
		t := time.NewTicker(2 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				fmt.Fprintf(x.stderr, "%s: %d/%d evaluated\n", preset, done.Load(), len(set))
			}
		}
	}()
	for i, ex := range set {
		g.Go(func() error {
			ev, err := evaluateRetrying(gctx, x.c, kind, ex.Text, preset)
			if err != nil {
				return fmt.Errorf("line %d: %w", ex.Line, err)
			}
			if len(ev.Errors) > 0 {
				return fmt.Errorf("line %d: a rule failed: %s", ex.Line, strings.Join(ev.Errors, "; "))
			}
			out[i] = verdictOf(ev, flags)
			done.Add(1)
			return nil
		})
	}
	err := g.Wait()
	close(stop)
	<-progressDone
	return out, err
}

// evalRetries is how many times an evaluation the daemon asked to retry (503 with
// Retry-After: a large text that waited for others' share of api.max_body_bytes_in_flight)
// is made again before the measurement fails.
const evalRetries = 5

// evaluateRetrying is EvaluateAt, made again after the daemon's Retry-After when it asks
// for that: an evaluation changes nothing, so it may be repeated.
func evaluateRetrying(ctx context.Context, c *client.Client, kind, text, preset string) (*client.Evaluation, error) {
	for attempt := 0; ; attempt++ {
		ev, err := c.EvaluateAt(ctx, kind, text, preset)
		var ce *client.Error
		if err == nil || attempt == evalRetries || !errors.As(err, &ce) || ce.Status != http.StatusServiceUnavailable || ce.RetryAfter <= 0 {
			return ev, err
		}
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(ce.RetryAfter):
		}
	}
}

// verdictOf reads one evaluation: whether any of the flags was raised (and the findings
// that raised them), by a rule without a score, and the highest model score.
func verdictOf(ev *client.Evaluation, flags []string) evalVerdict {
	var v evalVerdict
	scoredIDs := map[string]bool{}
	for _, byID := range ev.Scores {
		for id, s := range byID {
			scoredIDs[id] = true
			if !v.hasScore || s > v.score {
				v.score, v.hasScore = s, true
			}
		}
	}
	for _, f := range ev.Findings {
		if !slices.Contains(flags, f.Flag) {
			continue
		}
		v.flagged = true
		v.findings = append(v.findings, evalFinding{Flag: f.Flag, Severity: f.Severity, RuleID: f.RuleID, Reason: f.Reason})
		if !scoredIDs[f.RuleID] {
			v.ruleHit = true
		}
	}
	return v
}

func pctOf(x *float64) string {
	if x == nil {
		return "–"
	}
	return strconv.FormatFloat(100**x, 'f', 1, 64) + "%"
}

func aucOf(x *float64) string {
	if x == nil {
		return "–"
	}
	return strconv.FormatFloat(*x, 'f', 3, 64)
}

func (x *cli) printEval(rep evalReport, scored bool) {
	detected := ""
	if len(rep.Flags) > 1 {
		detected = ", detected when any of " + strings.Join(rep.Flags, ", ") + " is raised"
	}
	fmt.Fprintf(x.stdout, "%s: %s (%d %s, %d benign), kind %s%s\n\n", rep.File, plural(rep.Positives+rep.Negatives, "text", "texts"), rep.Positives, rep.Flag, rep.Negatives, rep.Kind, detected)
	rows := make([][]string, 0, len(rep.Presets))
	for _, r := range rep.Presets {
		c := r.Confusion
		rows = append(rows, []string{r.Preset, pctOf(r.TPR), pctOf(r.FPR), pctOf(r.Precision), pctOf(r.F1),
			strconv.Itoa(c.TP), strconv.Itoa(c.FN), strconv.Itoa(c.FP), strconv.Itoa(c.TN),
			pctOf(r.LengthTPR), pctOf(r.LengthFPR)})
	}
	x.table("PRESET\tTPR\tFPR\tPRECISION\tF1\tTP\tFN\tFP\tTN\tLENGTH-ONLY TPR\tLENGTH-ONLY FPR", rows)
	fmt.Fprintf(x.stdout, "\nROC-AUC: model %s, detector %s, length-only %s\n", aucOf(rep.ModelAUC), aucOf(rep.DetectorAUC), aucOf(rep.LengthAUC))
	if !scored {
		fmt.Fprintln(x.stdout, "(the daemon's rules reported no model scores, so the detector has no ROC-AUC)")
	}
	fmt.Fprintln(x.stdout, "Length-only: flags a text longer than a threshold set on this set's benign texts to the detector's false-positive rate under each preset.")
	for _, r := range rep.Presets {
		if len(r.Misses)+len(r.FalsePositives) == 0 {
			continue
		}
		fmt.Fprintf(x.stdout, "%s: missed lines %s; false positives on lines %s\n", r.Preset, lines(r.Misses), lines(r.FalsePositives))
	}
}

// lines lists line numbers, the first 20 of them.
func lines(ns []int) string {
	if len(ns) == 0 {
		return "none"
	}
	parts := make([]string, 0, min(len(ns), 20))
	for _, n := range ns[:min(len(ns), 20)] {
		parts = append(parts, strconv.Itoa(n))
	}
	s := strings.Join(parts, ", ")
	if len(ns) > 20 {
		s += fmt.Sprintf(" and %d more (-o json lists all)", len(ns)-20)
	}
	return s
}
