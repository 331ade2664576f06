package jailbreak

import (
	"context"
	"fmt"
	"math"
	"strings"

	"github.com/limitgraph/limit/internal/binclass"
)

// Confusion counts a binary classifier's outcomes.
type Confusion = binclass.Confusion

// ROCAUC is the probability that a random positive scores above a random negative (ties
// count half).
func ROCAUC(scores []float64, positive []bool) float64 { return binclass.ROCAUC(scores, positive) }

// LengthBaseline is the length-only classifier: a text is flagged when it has more than
// Threshold bytes. It is what a detector must beat on data whose classes differ in length.
type LengthBaseline struct {
	Thresholds map[string]float64 `json:"thresholds"`
}

// NewLengthBaseline calibrates the length thresholds on benign texts by PresetFPR, the
// same way the model's thresholds are calibrated.
func NewLengthBaseline(benign []Example) LengthBaseline {
	ls := make([]float64, len(benign))
	for i, e := range benign {
		ls[i] = float64(len(e.Text))
	}
	b := LengthBaseline{Thresholds: map[string]float64{}}
	for p, fpr := range PresetFPR {
		b.Thresholds[p] = binclass.ThresholdAtFPR(ls, fpr)
	}
	return b
}

// PresetResult is one preset's outcome on a set.
type PresetResult struct {
	Preset    string    `json:"preset"`
	Threshold float64   `json:"threshold"`
	Confusion Confusion `json:"confusion"`
	TPR       float64   `json:"tpr"`
	FPR       float64   `json:"fpr"`
	Precision float64   `json:"precision"`
	F1        float64   `json:"f1"`
}

func presetResult(p string, t float64, c Confusion) PresetResult {
	return PresetResult{Preset: p, Threshold: t, Confusion: c, TPR: nz(c.TPR()), FPR: nz(c.FPR()), Precision: nz(c.Precision()), F1: nz(c.F1())}
}

// nz turns NaN into -1 so results encode as JSON.
func nz(x float64) float64 {
	if math.IsNaN(x) {
		return -1
	}
	return x
}

// SetResult is a detector's and the length baseline's outcome on one labelled set.
type SetResult struct {
	Name      string `json:"name"`
	Positives int    `json:"positives"`
	Negatives int    `json:"negatives"`
	// AUC of the model's probability alone and of the detector's combined score (1 when
	// a rule fires, else the model's probability).
	ModelAUC    float64        `json:"model_auc"`
	DetectorAUC float64        `json:"detector_auc"`
	LengthAUC   float64        `json:"length_auc"`
	Detector    []PresetResult `json:"detector"`
	Length      []PresetResult `json:"length"`
	// RuleOnly counts texts flagged by anything but the window model (phrase rules, decoders,
	// hidden text, the planted-instruction scorer) under default.
	RuleOnly Confusion `json:"rule_only"`
}

// EvaluateSet runs the full detector (rules, decoders, model) at each preset of m over
// ex, beside the length baseline.
func EvaluateSet(name string, m *Model, lb LengthBaseline, ex []Example) (SetResult, error) {
	return EvaluateSetAs(name, m, lb, ex, Reading{Window: true, Planted: true})
}

// EvaluateSetAs is EvaluateSet with the trained scorers read names (a program's output is
// read by the rules and the planted-instruction scorer, not the window model).
func EvaluateSetAs(name string, m *Model, lb LengthBaseline, ex []Example, read Reading) (SetResult, error) {
	r := SetResult{Name: name}
	pos := make([]bool, len(ex))
	modelScores := make([]float64, len(ex))
	detScores := make([]float64, len(ex))
	lens := make([]float64, len(ex))
	dets := map[string]*Detector{}
	confs := map[string]*Confusion{}
	lconfs := map[string]*Confusion{}
	for _, p := range Presets {
		d, err := NewDetector(m, p, 0)
		if err != nil {
			return r, err
		}
		dets[p], confs[p], lconfs[p] = d, &Confusion{}, &Confusion{}
	}
	for i, e := range ex {
		pos[i] = e.Positive()
		if pos[i] {
			r.Positives++
		} else {
			r.Negatives++
		}
		lens[i] = float64(len(e.Text))
		for _, p := range Presets {
			res, err := dets[p].ScanAs(context.Background(), e.Text, read)
			if err != nil {
				return r, err
			}
			confs[p].Add(pos[i], res.Flagged())
			lconfs[p].Add(pos[i], lens[i] > lb.Thresholds[p])
			if p == PresetDefault {
				modelScores[i] = res.ModelScore.Prob
				detScores[i] = res.ModelScore.Prob
				rule := false
				for _, f := range res.Findings {
					if f.RuleID != RuleModel {
						rule = true
					}
				}
				if rule {
					detScores[i] = 1
				}
				r.RuleOnly.Add(pos[i], rule)
			}
		}
	}
	r.ModelAUC, r.DetectorAUC, r.LengthAUC = nz(ROCAUC(modelScores, pos)), nz(ROCAUC(detScores, pos)), nz(ROCAUC(lens, pos))
	for _, p := range Presets {
		r.Detector = append(r.Detector, presetResult(p, dets[p].Threshold(), *confs[p]))
		r.Length = append(r.Length, presetResult(p, lb.Thresholds[p], *lconfs[p]))
	}
	return r, nil
}

// Markdown renders set results as a table.
func Markdown(rs []SetResult) string {
	var b strings.Builder
	b.WriteString("| set | pos | neg | preset | detector TPR | detector FPR | precision | F1 | length TPR | length FPR |\n")
	b.WriteString("|---|---:|---:|---|---:|---:|---:|---:|---:|---:|\n")
	for _, r := range rs {
		for i, d := range r.Detector {
			l := r.Length[i]
			fmt.Fprintf(&b, "| %s | %d | %d | %s | %s | %s | %s | %s | %s | %s |\n", r.Name, r.Positives, r.Negatives, d.Preset,
				pct(d.TPR), pct(d.FPR), pct(d.Precision), pct(d.F1), pct(l.TPR), pct(l.FPR))
		}
	}
	b.WriteString("\n| set | model ROC-AUC | detector ROC-AUC | length ROC-AUC | rule-only TPR | rule-only FPR |\n|---|---:|---:|---:|---:|---:|\n")
	for _, r := range rs {
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s |\n", r.Name, num(r.ModelAUC), num(r.DetectorAUC), num(r.LengthAUC),
			pct(nz(r.RuleOnly.TPR())), pct(nz(r.RuleOnly.FPR())))
	}
	return b.String()
}

func pct(x float64) string {
	if x < 0 {
		return "–"
	}
	return fmt.Sprintf("%.1f%%", 100*x)
}

func num(x float64) string {
	if x < 0 {
		return "–"
	}
	return fmt.Sprintf("%.3f", x)
}
