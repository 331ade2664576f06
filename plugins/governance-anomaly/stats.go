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

// bernoulliZ is how surprising one error is given errs errors in n earlier executions:
// (1−p)/√(p(1−p)) with p smoothed as (errs+½)/(n+1), so a first error after a long
// clean run stands out and one in an error-prone session does not.
func bernoulliZ(errs, n int) (z, p float64) {
	p = (float64(errs) + 0.5) / (float64(n) + 1)
	return (1 - p) / math.Sqrt(p*(1-p)), p
}
