package jailbreak

import (
	"fmt"
	"math"
	"sort"
	"strings"
)

// Confusion counts a binary classifier's outcomes.
type Confusion struct {
	TP int `json:"tp"`
	FP int `json:"fp"`
	TN int `json:"tn"`
	FN int `json:"fn"`
}

// Add counts one outcome.
func (c *Confusion) Add(positive, flagged bool) {
	switch {
	case positive && flagged:
		c.TP++
	case positive:
		c.FN++
	case flagged:
		c.FP++
	default:
		c.TN++
	}
}

// TPR is the share of positives flagged (NaN without positives).
func (c Confusion) TPR() float64 { return ratio(c.TP, c.TP+c.FN) }

// FPR is the share of negatives flagged (NaN without negatives).
func (c Confusion) FPR() float64 { return ratio(c.FP, c.FP+c.TN) }

// Precision is the share of flagged texts that are positives.
func (c Confusion) Precision() float64 { return ratio(c.TP, c.TP+c.FP) }

// F1 is the harmonic mean of precision and TPR.
func (c Confusion) F1() float64 {
	p, r := c.Precision(), c.TPR()
	if math.IsNaN(p) || math.IsNaN(r) || p+r == 0 {
		return math.NaN()
	}
	return 2 * p * r / (p + r)
}

func ratio(a, b int) float64 {
	if b == 0 {
		return math.NaN()
	}
	return float64(a) / float64(b)
}

// ROCAUC is the probability that a random positive scores above a random negative (ties
// count half).
func ROCAUC(scores []float64, positive []bool) float64 {
	type sp struct {
		s float64
		p bool
	}
	xs := make([]sp, len(scores))
	var np, nn int
	for i := range scores {
		xs[i] = sp{scores[i], positive[i]}
		if positive[i] {
			np++
		} else {
			nn++
		}
	}
	if np == 0 || nn == 0 {
		return math.NaN()
	}
	sort.Slice(xs, func(i, j int) bool { return xs[i].s < xs[j].s })
	// Rank-sum with average ranks for ties.
	var rankSum float64
	for i := 0; i < len(xs); {
		j := i
		for j < len(xs) && xs[j].s == xs[i].s {
			j++
		}
		avg := float64(i+j+1) / 2 // ranks are 1-based
		for k := i; k < j; k++ {
			if xs[k].p {
				rankSum += avg
			}
		}
		i = j
	}
	return (rankSum - float64(np)*float64(np+1)/2) / (float64(np) * float64(nn))
}

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
		s := append([]float64(nil), ls...)
		sort.Sort(sort.Reverse(sort.Float64Slice(s)))
		k := int(math.Floor(fpr * float64(len(s))))
		switch {
		case len(s) == 0:
			b.Thresholds[p] = 0
		case k <= 0:
			b.Thresholds[p] = s[0]
		default:
			b.Thresholds[p] = (s[k-1] + s[k]) / 2
		}
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
	// RuleOnly counts texts flagged by a rule (not the model) under default.
	RuleOnly Confusion `json:"rule_only"`
}

// EvaluateSet runs the full detector (rules, decoders, model) at each preset of m over
// ex, beside the length baseline.
func EvaluateSet(name string, m *Model, lb LengthBaseline, ex []Example) (SetResult, error) {
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
			res := dets[p].Scan(e.Text)
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
