package main

import (
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/limitgraph/limit/internal/jailbreak"
)

// tune prints, for each hyper-parameter setting of the sweep, the model's out-of-fold
// ROC-AUC and true-positive rate at 1 % and 0.1 % false positives on the training split
// (the held-out split is never looked at), which is how DefaultTrainConfig was chosen;
// extra (documents, the written corpus's training half) is trained on in every fold,
// never scored. With valid (the written corpus's held-out half), each setting's model
// trained on everything is also measured on it at the default preset's threshold.
func tune(train, extra, valid []jailbreak.Example, sweep []jailbreak.TrainConfig) {
	if js := os.Getenv("TUNE_CONFIGS"); js != "" {
		// e.g. TUNE_CONFIGS='{"epochs":20};{"lr":0.5,"binary":true}' runs those changes
		// to DefaultTrainConfig instead of the built-in sweep.
		sweep = nil
		for _, j := range strings.Split(js, ";") {
			c := jailbreak.DefaultTrainConfig()
			if err := json.Unmarshal([]byte(j), &c); err != nil {
				fmt.Fprintf(os.Stderr, "TUNE_CONFIGS %q: %v\n", j, err)
				os.Exit(2)
			}
			sweep = append(sweep, c)
		}
	}
	if only := os.Getenv("TUNE_ONLY"); only != "" {
		// e.g. TUNE_ONLY=10,11 runs just those settings of the sweep.
		var keep []jailbreak.TrainConfig
		for _, f := range strings.Split(only, ",") {
			if i, err := strconv.Atoi(f); err == nil && i >= 0 && i < len(sweep) {
				keep = append(keep, sweep[i])
			}
		}
		sweep = keep
	}
	pos := make([]bool, len(train))
	for i, e := range train {
		pos[i] = e.Positive()
	}
	// Which training texts a phrase rule or decoder flags, to report the whole
	// detector's out-of-fold TPR and FPR beside the model's.
	rules, err := ruleFindings(train)
	if err != nil {
		fmt.Fprintln(os.Stderr, "train-jailbreak:", err)
		os.Exit(1)
	}
	for _, cfg := range sweep {
		oof := jailbreak.OutOfFoldWith(train, extra, cfg)
		var benign []float64
		for i, s := range oof {
			if !pos[i] {
				benign = append(benign, s)
			}
		}
		line := fmt.Sprintf("bits=%d window=%d stride=%d epochs=%d lr=%g l2=%g symbols=%v min_norm=%d mil=%v trigrams=%v start=%d context=%v skip=%d benign_weight=%g average=%v max_repeat=%d min_letters=%g nb=%g: auc=%.4f", cfg.Bits, cfg.Window, cfg.Stride, cfg.Epochs, cfg.LR, cfg.L2, !cfg.NoSymbols, cfg.MinNorm, cfg.MIL, cfg.Trigrams, cfg.StartTokens, cfg.Context, cfg.SkipGrams, cfg.BenignWeight, cfg.Average, cfg.MaxRepeat, cfg.MinLetters, cfg.NB, jailbreak.ROCAUC(oof, pos))
		for _, fpr := range []float64{0.01, 0.001} {
			t := jailbreak.ThresholdAtFPR(benign, fpr)
			var c jailbreak.Confusion
			for i, s := range oof {
				c.Add(pos[i], s >= t)
			}
			var dc jailbreak.Confusion
			for i, s := range oof {
				dc.Add(pos[i], s >= t || rules[i] != "")
			}
			line += fmt.Sprintf(" tpr@%g=%.3f (detector tpr %.3f fpr %.4f)", fpr, c.TPR(), dc.TPR(), dc.FPR())
		}
		if len(valid) > 0 {
			// The written corpus's held-out half, scored by a model trained on everything
			// else, at the default preset's threshold.
			m := jailbreak.Train(append(slices.Clip(train), extra...), cfg)
			vs := jailbreak.ModelScores(m, valid)
			vpos := make([]bool, len(valid))
			for i, e := range valid {
				vpos[i] = e.Positive()
			}
			t := jailbreak.ThresholdAtFPR(benign, jailbreak.PresetFPR[jailbreak.PresetDefault])
			var c jailbreak.Confusion
			for i, s := range vs {
				c.Add(vpos[i], s >= t)
			}
			line += fmt.Sprintf(" written held-out: auc=%.4f tpr=%.3f fpr=%.3f", jailbreak.ROCAUC(vs, vpos), c.TPR(), c.FPR())
		}
		if os.Getenv("TUNE_EXTRA_OOF") != "" {
			line += extraOOF(train, extra, cfg)
		}
		fmt.Fprintln(os.Stderr, line)
	}
}

// extraOOF measures the extra texts out of fold (TUNE_EXTRA_OOF=1): they are split into
// the folds with the training split, so each document and written text is scored by a
// model that did not see it, at each preset's threshold on the prompts' benign
// out-of-fold scores. It is the training-side view of what METRICS.md measures on the
// documents' and the written corpus's held-out halves (all of it, and its short everyday
// messages), for choosing among settings without reading those halves.
func extraOOF(train, extra []jailbreak.Example, cfg jailbreak.TrainConfig) string {
	all := append(slices.Clip(train), extra...)
	oof := jailbreak.OutOfFold(all, cfg)
	var benign []float64
	for i, e := range train {
		if !e.Positive() {
			benign = append(benign, oof[i])
		}
	}
	var wsc []float64
	var wpos []bool
	for j, e := range extra {
		if e.Category != "" {
			wsc, wpos = append(wsc, oof[len(train)+j]), append(wpos, e.Positive())
		}
	}
	out := fmt.Sprintf(" | extra out of fold: written auc=%.4f", jailbreak.ROCAUC(wsc, wpos))
	for _, p := range jailbreak.Presets {
		t := jailbreak.ThresholdAtFPR(benign, jailbreak.PresetFPR[p])
		var docs, written, short jailbreak.Confusion
		for j, e := range extra {
			s := oof[len(train)+j]
			switch {
			case e.Category == "":
				docs.Add(false, s >= t)
			default:
				written.Add(e.Positive(), s >= t)
				if isShortEveryday(e.Category) {
					short.Add(false, s >= t)
				}
			}
		}
		out += fmt.Sprintf("; %s: documents fp %d/%d, written tpr %.3f fpr %.3f, short everyday fp %d/%d", p, docs.FP, docs.FP+docs.TN, written.TPR(), written.FPR(), short.FP, short.FP+short.TN)
	}
	return out
}

// sweepConfigs varies one hyper-parameter at a time around the default (and includes
// the previous default, for comparison).
func sweepConfigs() []jailbreak.TrainConfig {
	base := jailbreak.DefaultTrainConfig()
	var out []jailbreak.TrainConfig
	add := func(f func(*jailbreak.TrainConfig)) {
		c := base
		f(&c)
		out = append(out, c)
	}
	add(func(*jailbreak.TrainConfig) {})
	// The previous default: plain logistic regression over 2^18 features, each counted
	// at most 3 times per window, without trigrams or skip-bigrams.
	add(func(c *jailbreak.TrainConfig) {
		c.Bits, c.Trigrams, c.SkipGrams, c.MaxRepeat, c.NB = 18, false, 0, 3, 0
	})
	add(func(c *jailbreak.TrainConfig) { c.NB = 0 })
	add(func(c *jailbreak.TrainConfig) { c.NB = 3 })
	add(func(c *jailbreak.TrainConfig) { c.NB = 10 })
	add(func(c *jailbreak.TrainConfig) { c.MaxRepeat = 3 })
	add(func(c *jailbreak.TrainConfig) { c.Window, c.Stride = 512, 256 })
	add(func(c *jailbreak.TrainConfig) { c.Window, c.Stride = 128, 64 })
	add(func(c *jailbreak.TrainConfig) { c.Epochs = 10 })
	add(func(c *jailbreak.TrainConfig) { c.LR = 0.2 })
	add(func(c *jailbreak.TrainConfig) { c.L2 = 1e-4 })
	add(func(c *jailbreak.TrainConfig) { c.L2 = 1e-6 })
	add(func(c *jailbreak.TrainConfig) { c.Bits = 18 })
	add(func(c *jailbreak.TrainConfig) { c.NoSymbols = true })
	add(func(c *jailbreak.TrainConfig) { c.MinNorm = 200 })
	add(func(c *jailbreak.TrainConfig) { c.MIL = true })
	add(func(c *jailbreak.TrainConfig) { c.Context = false })
	add(func(c *jailbreak.TrainConfig) { c.StartTokens = 16 })
	add(func(c *jailbreak.TrainConfig) { c.Trigrams = false })
	add(func(c *jailbreak.TrainConfig) { c.SkipGrams = 0 })
	add(func(c *jailbreak.TrainConfig) { c.BenignWeight = 2 })
	add(func(c *jailbreak.TrainConfig) { c.Average = true })
	return out
}
