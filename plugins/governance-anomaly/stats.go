package main

import (
	"math"
	"slices"
)

// madScale makes the median absolute deviation of a normal sample estimate its standard
// deviation (1/Φ⁻¹(3/4)); 0.6745 is its inverse, as in Iglewicz and Hoaglin's modified
// z-score.
const madScale = 0.6745

// ring is the last values of one metric.
type ring struct {
	vals []float64
	next int
}

func newRing(n int) *ring { return &ring{vals: make([]float64, 0, n)} }

func (r *ring) add(v float64) {
	if len(r.vals) < cap(r.vals) {
		r.vals = append(r.vals, v)
		return
	}
	r.vals[r.next] = v
	r.next = (r.next + 1) % len(r.vals)
}

func (r *ring) len() int { return len(r.vals) }

// medianMAD returns the median and the median absolute deviation of the values.
func (r *ring) medianMAD() (med, mad float64) {
	s := slices.Clone(r.vals)
	med = median(s)
	for i, v := range s {
		s[i] = math.Abs(v - med)
	}
	return med, median(s)
}

// median sorts s and returns its median.
func median(s []float64) float64 {
	if len(s) == 0 {
		return math.NaN()
	}
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return s[n/2-1] + (s[n/2]-s[n/2-1])/2 // not (a+b)/2, which overflows near MaxFloat64
}

// logValue is where a figure of a multiplicative quantity (a duration, a size, a token
// count) sits on the log scale the statistics judge it on: ln(offset+x), where offset,
// the metric's floor, keeps figures near 0 (a 0 ms print, an empty output) finite and
// makes differences below it count for little.
func logValue(x, offset float64) float64 { return math.Log(offset + x) }

// precedents counts the values at least as far from med as y, in y's direction, to
// within a factor precedentFactor on the natural scale: earlier executions of the
// session that did something comparable.
func (r *ring) precedents(y, med float64) int {
	n := 0
	for _, v := range r.vals {
		if y >= med && v >= y-math.Log(precedentFactor) || y < med && v <= y+math.Log(precedentFactor) {
			n++
		}
	}
	return n
}

// bernoulliZ is how far one error is from the session's rate given errs errors in n
// earlier executions: its standardised residual (1−p)/√(p(1−p)), with p smoothed as
// (errs+½)/(n+1), so a first error after a long clean run stands out and one in an
// error-prone session does not. It is not a probability (one error after 50 clean runs
// is at z 10 but has probability 1 %), so a lone failure is never more than worth a look.
func bernoulliZ(errs, n int) (z, p float64) {
	p = (float64(errs) + 0.5) / (float64(n) + 1)
	return (1 - p) / math.Sqrt(p*(1-p)), p
}

// laplaceRate is the rate of errs failures in n executions smoothed by Laplace's rule of
// succession, (errs+1)/(n+2): the mean of the Beta(1+errs, 1+n−errs) posterior, never 0,
// so a session that never failed is not taken as one that cannot fail.
func laplaceRate(errs, n int) float64 { return (float64(errs) + 1) / (float64(n) + 2) }

// binomialTail is the probability of k or more failures in w executions that each fail
// with probability p: Σ_{i≥k} C(w,i) p^i (1−p)^(w−i), summed on a log scale so that
// tiny terms do not underflow before they are added.
func binomialTail(k, w int, p float64) float64 {
	switch {
	case k <= 0:
		return 1
	case k > w || p <= 0:
		return 0
	case p >= 1:
		return 1
	}
	lp, lq := math.Log(p), math.Log1p(-p)
	sum := 0.0
	for i := k; i <= w; i++ {
		sum += math.Exp(lchoose(w, i) + float64(i)*lp + float64(w-i)*lq)
	}
	return min(sum, 1)
}

// lchoose is ln C(n, k).
func lchoose(n, k int) float64 {
	a, _ := math.Lgamma(float64(n + 1))
	b, _ := math.Lgamma(float64(k + 1))
	c, _ := math.Lgamma(float64(n - k + 1))
	return a - b - c
}

// maxTailZ is the z-score of a probability too small for a float64 (beyond z 37, the
// upper tail of the normal law underflows).
const maxTailZ = 37.5

// tailZ converts a one-sided probability to the z-score with that upper tail, Φ⁻¹(1−p):
// 2.3e-4 is z 3.5, 2.9e-7 is z 5. math.Erfcinv computes 1−x first and loses its digits
// below about 1e-10, so smaller probabilities are solved by Newton's method on ln Φ̄(z).
func tailZ(p float64) float64 {
	switch {
	case math.IsNaN(p):
		return math.NaN()
	case p <= 0:
		return maxTailZ
	case p >= 1e-10:
		return math.Sqrt2 * math.Erfcinv(2*min(p, 1))
	}
	lp := math.Log(p)
	// The asymptotic solution of Φ̄(z) ≈ φ(z)/z, within 1 % here; three Newton steps
	// finish it to float64 precision.
	z := math.Sqrt(-2*lp - math.Log(-4*math.Pi*lp))
	for range 4 {
		q := 0.5 * math.Erfc(z/math.Sqrt2)
		if q <= 0 {
			return maxTailZ
		}
		phi := math.Exp(-z*z/2) / math.Sqrt(2*math.Pi)
		z += (math.Log(q) - lp) * q / phi
	}
	return min(z, maxTailZ)
}
