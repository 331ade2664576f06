package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/limitgraph/limit/internal/jailbreak"
)

// tune prints, for each hyper-parameter setting of the sweep, the model's out-of-fold
// ROC-AUC and true-positive rate at 1 % and 0.1 % false positives on the training split
// (the held-out split is never looked at), which is how DefaultTrainConfig was chosen.
func tune(train []jailbreak.Example, sweep []jailbreak.TrainConfig) {
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
	for _, cfg := range sweep {
		oof := jailbreak.OutOfFold(train, cfg)
		var benign []float64
		for i, s := range oof {
			if !pos[i] {
				benign = append(benign, s)
			}
		}
		line := fmt.Sprintf("bits=%d window=%d stride=%d epochs=%d lr=%g l2=%g symbols=%v min_norm=%d mil=%v: auc=%.4f", cfg.Bits, cfg.Window, cfg.Stride, cfg.Epochs, cfg.LR, cfg.L2, !cfg.NoSymbols, cfg.MinNorm, cfg.MIL, jailbreak.ROCAUC(oof, pos))
		for _, fpr := range []float64{0.01, 0.001} {
			t := jailbreak.ThresholdAtFPR(benign, fpr)
			var c jailbreak.Confusion
			for i, s := range oof {
				c.Add(pos[i], s >= t)
			}
			line += fmt.Sprintf(" tpr@%g=%.3f", fpr, c.TPR())
		}
		fmt.Fprintln(os.Stderr, line)
	}
}

// sweepConfigs varies one hyper-parameter at a time around the default.
func sweepConfigs() []jailbreak.TrainConfig {
	base := jailbreak.DefaultTrainConfig()
	var out []jailbreak.TrainConfig
	add := func(f func(*jailbreak.TrainConfig)) {
		c := base
		f(&c)
		out = append(out, c)
	}
	add(func(*jailbreak.TrainConfig) {})
	add(func(c *jailbreak.TrainConfig) { c.Window, c.Stride = 512, 256 })
	add(func(c *jailbreak.TrainConfig) { c.Window, c.Stride = 128, 64 })
	add(func(c *jailbreak.TrainConfig) { c.Epochs = 20 })
	add(func(c *jailbreak.TrainConfig) { c.LR = 0.5 })
	add(func(c *jailbreak.TrainConfig) { c.L2 = 1e-4 })
	add(func(c *jailbreak.TrainConfig) { c.L2 = 1e-6 })
	add(func(c *jailbreak.TrainConfig) { c.Bits = 20 })
	add(func(c *jailbreak.TrainConfig) { c.NoSymbols = true })
	add(func(c *jailbreak.TrainConfig) { c.MinNorm = 200 })
	add(func(c *jailbreak.TrainConfig) { c.MIL = true })
	add(func(c *jailbreak.TrainConfig) { c.MIL, c.Window, c.Stride = true, 128, 64 })
	return out
}
