package main

import (
	"fmt"
	"os"
	"sort"
	"strings"

	"github.com/limitgraph/limit/internal/clip"
	"github.com/limitgraph/limit/internal/jailbreak"
)

// printMisses prints the held-out texts the committed model's default preset gets wrong
// (missed jailbreaks and flagged benign texts), lowest-scoring misses first, with the
// model's score, the text's length and its source, for error analysis. It only reads the
// held-out split; nothing is fitted on it.
func printMisses(data, modelPath string) error {
	ex, _, err := jailbreak.LoadJSONL(data)
	if err != nil {
		return err
	}
	raw, err := os.ReadFile(modelPath)
	if err != nil {
		return fmt.Errorf("read model: %w", err)
	}
	m, err := loadModels(raw, modelPath)
	if err != nil {
		return err
	}
	d, err := jailbreak.NewDetector(m, jailbreak.PresetDefault, 0)
	if err != nil {
		return err
	}
	_, test := jailbreak.Split(ex, 0.2)
	var fn, fp []miss
	for _, e := range test {
		r := d.Scan(e.Text)
		switch {
		case e.Positive() && !r.Flagged():
			fn = append(fn, miss{e, r.ModelScore.Prob, ""})
		case !e.Positive() && r.Flagged():
			fp = append(fp, miss{e, r.ModelScore.Prob, r.Findings[0].RuleID + ": " + r.Findings[0].Reason})
		}
	}
	sort.SliceStable(fn, func(i, j int) bool { return fn[i].score < fn[j].score })
	showMisses(fmt.Sprintf("missed jailbreaks: %d (threshold %.4f)", len(fn), d.Threshold()), fn, true)
	showMisses(fmt.Sprintf("flagged benign texts: %d (threshold %.4f)", len(fp), d.Threshold()), fp, true)
	return nil
}

// oneLine returns s on one line, its runs of spaces as one, shortened to n bytes.
func oneLine(s string, n int) string {
	return clip.Marked(strings.Join(strings.Fields(s), " "), n)
}

// printOOFMisses prints the training split's jailbreaks that the whole detector misses
// out of fold (no phrase rule or decoder fires and the model's out-of-fold score is under
// the threshold at the default preset's false-positive rate) and the benign texts it
// flags, for writing rules from the training split without looking at the held-out one.
func printOOFMisses(train, extra []jailbreak.Example) {
	cfg := jailbreak.DefaultTrainConfig()
	oof := jailbreak.OutOfFoldWith(train, extra, cfg)
	var benign []float64
	for i, e := range train {
		if !e.Positive() {
			benign = append(benign, oof[i])
		}
	}
	t := jailbreak.ThresholdAtFPR(benign, jailbreak.PresetFPR[jailbreak.PresetDefault])
	rules, err := ruleFindings(train)
	if err != nil {
		fmt.Fprintln(os.Stderr, "train-jailbreak:", err)
		os.Exit(1)
	}
	var fn, fp []miss
	for i, e := range train {
		rule := rules[i]
		flagged := rule != "" || oof[i] >= t
		switch {
		case e.Positive() && !flagged:
			fn = append(fn, miss{e, oof[i], ""})
		case !e.Positive() && flagged:
			fp = append(fp, miss{e, oof[i], rule})
		}
	}
	sort.SliceStable(fn, func(i, j int) bool { return fn[i].score < fn[j].score })
	showMisses(fmt.Sprintf("missed jailbreaks (out of fold): %d (model threshold %.4f)", len(fn), t), fn, false)
	showMisses(fmt.Sprintf("flagged benign texts (out of fold): %d (model threshold %.4f)", len(fp), t), fp, false)
}

// ruleFindings returns, for each text, the first finding of a phrase rule or decoder
// ("rule id: reason"), or "" when none fires: the committed model's detector with the
// model's own threshold set out of reach, so the rules can be added to out-of-fold model
// scores.
func ruleFindings(ex []jailbreak.Example) ([]string, error) {
	m, err := jailbreak.DefaultModel()
	if err != nil {
		return nil, err
	}
	d, err := jailbreak.NewDetector(m, "", 0.999999)
	if err != nil {
		return nil, err
	}
	out := make([]string, len(ex))
	for i, e := range ex {
		for _, f := range d.Scan(e.Text).Findings {
			if f.RuleID != jailbreak.RuleModel {
				out[i] = f.RuleID + ": " + f.Reason
				break
			}
		}
	}
	return out, nil
}

// miss is a text the detector got wrong: its model score and, for a flagged benign text,
// the finding that flagged it.
type miss struct {
	e     jailbreak.Example
	score float64
	why   string
}

// showMisses prints a section of misses; source adds each text's source.
func showMisses(title string, ms []miss, source bool) {
	fmt.Printf("## %s\n\n", title)
	for _, x := range ms {
		fmt.Printf("- score %.4f, %d bytes", x.score, len(x.e.Text))
		if source {
			fmt.Printf(", source %s", x.e.Source)
		}
		fmt.Println()
		if x.why != "" {
			fmt.Printf("  why: %s\n", x.why)
		}
		fmt.Printf("  text: %q\n\n", oneLine(x.e.Text, 600))
	}
}
