// Package binclass measures binary classifiers: confusion counts and the rates made of
// them, ROC-AUC, and the threshold that holds a false-positive rate. The jailbreak
// model's training and limitctl governance eval (which measures rules through a running
// daemon) share it.
package binclass

import (
	"math"
	"sort"
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

// ThresholdAtFPR returns the score threshold above which (strictly) at most fpr of the
// negatives' scores lie: the midpoint between the k-th and (k+1)-th highest negative
// score, k = ⌊fpr·n⌋; the highest negative score when k is 0; 0 without negatives.
func ThresholdAtFPR(negatives []float64, fpr float64) float64 {
	if len(negatives) == 0 {
		return 0
	}
	s := append([]float64(nil), negatives...)
	sort.Sort(sort.Reverse(sort.Float64Slice(s)))
	k := int(math.Floor(fpr * float64(len(s))))
	switch {
	case k <= 0:
		return s[0]
	case k >= len(s):
		return s[len(s)-1] - 1
	default:
		return (s[k-1] + s[k]) / 2
	}
}
