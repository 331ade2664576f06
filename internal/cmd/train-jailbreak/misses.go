package main

import (
	"fmt"
	"os"
	"sort"
	"strings"

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
	m, err := jailbreak.UnmarshalModel(raw)
	if err != nil {
		return err
	}
	d, err := jailbreak.NewDetector(m, jailbreak.PresetDefault, 0)
	if err != nil {
		return err
	}
	_, test := jailbreak.Split(ex, 0.2)
	type miss struct {
		e     jailbreak.Example
		score float64
		why   string
	}
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
	show := func(title string, ms []miss) {
		fmt.Printf("## %s: %d (threshold %.4f)\n\n", title, len(ms), d.Threshold())
		for _, x := range ms {
			fmt.Printf("- score %.4f, %d bytes, source %s\n", x.score, len(x.e.Text), x.e.Source)
			if x.why != "" {
				fmt.Printf("  why: %s\n", x.why)
			}
			fmt.Printf("  text: %q\n\n", clip(x.e.Text, 600))
		}
	}
	show("missed jailbreaks", fn)
	show("flagged benign texts", fp)
	return nil
}

func clip(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
