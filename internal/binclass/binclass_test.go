package binclass

import (
	"math"
	"testing"
)

func TestConfusionRates(t *testing.T) {
	var c Confusion
	for _, o := range []struct{ pos, flagged bool }{
		{true, true}, {true, true}, {true, true}, {true, false}, // 3 TP, 1 FN
		{false, true}, {false, false}, {false, false}, {false, false}, {false, false}, // 1 FP, 4 TN
	} {
		c.Add(o.pos, o.flagged)
	}
	if c != (Confusion{TP: 3, FN: 1, FP: 1, TN: 4}) {
		t.Fatalf("counts %+v", c)
	}
	for _, x := range []struct {
		name      string
		got, want float64
	}{
		{"TPR", c.TPR(), 0.75}, {"FPR", c.FPR(), 0.2}, {"precision", c.Precision(), 0.75}, {"F1", c.F1(), 0.75},
	} {
		if math.Abs(x.got-x.want) > 1e-12 {
			t.Errorf("%s = %v, want %v", x.name, x.got, x.want)
		}
	}
	var empty Confusion
	if !math.IsNaN(empty.TPR()) || !math.IsNaN(empty.F1()) {
		t.Errorf("rates of nothing should be NaN: TPR %v F1 %v", empty.TPR(), empty.F1())
	}
}

func TestROCAUC(t *testing.T) {
	pos := []bool{true, true, false, false}
	for _, c := range []struct {
		name   string
		scores []float64
		want   float64
	}{
		{"perfect", []float64{0.9, 0.8, 0.2, 0.1}, 1},
		{"inverted", []float64{0.1, 0.2, 0.8, 0.9}, 0},
		{"all tied", []float64{0.5, 0.5, 0.5, 0.5}, 0.5},
		// Pairs (p, n): (0.9,0.5) win, (0.9,0.1) win, (0.5,0.5) tie, (0.5,0.1) win.
		{"one tie", []float64{0.9, 0.5, 0.5, 0.1}, 3.5 / 4},
	} {
		if got := ROCAUC(c.scores, pos); math.Abs(got-c.want) > 1e-12 {
			t.Errorf("%s: AUC %v, want %v", c.name, got, c.want)
		}
	}
	if got := ROCAUC([]float64{1, 2}, []bool{true, true}); !math.IsNaN(got) {
		t.Errorf("AUC without negatives = %v, want NaN", got)
	}
}

func TestThresholdAtFPR(t *testing.T) {
	neg := []float64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	for _, c := range []struct {
		fpr, want float64
	}{
		{0, 10}, {0.05, 10}, {0.1, 9.5}, {0.25, 8.5}, {0.5, 5.5}, {1, 0},
	} {
		th := ThresholdAtFPR(neg, c.fpr)
		if th != c.want {
			t.Errorf("fpr %v: threshold %v, want %v", c.fpr, th, c.want)
		}
		above := 0
		for _, s := range neg {
			if s > th {
				above++
			}
		}
		if got := float64(above) / float64(len(neg)); got > c.fpr {
			t.Errorf("fpr %v: %v of the negatives lie above %v", c.fpr, got, th)
		}
	}
	if th := ThresholdAtFPR(nil, 0.01); th != 0 {
		t.Errorf("no negatives: %v", th)
	}
}
