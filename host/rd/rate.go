package rd

import (
	"context"
	"math"
	"sort"

	"gonum.org/v1/gonum/mat"
)

// Rate is Shannon's rate–distortion function of a Gaussian source with the given
// variance under squared error: R(D) = max(0, ½·log2(σ²/D)) bits. Distortion and
// variance must be finite, positive and at most MaxMagnitude (a larger one could not be
// a point of a curve FindKnee takes).
func Rate(distortion, variance float64) (float64, error) {
	if math.IsNaN(distortion) || math.IsInf(distortion, 0) || distortion <= 0 || distortion > MaxMagnitude {
		return 0, inputErrf("distortion", "%v must be a finite number > 0 and ≤ %g", distortion, MaxMagnitude)
	}
	if math.IsNaN(variance) || math.IsInf(variance, 0) || variance <= 0 || variance > MaxMagnitude {
		return 0, inputErrf("variance", "%v must be a finite number > 0 and ≤ %g", variance, MaxMagnitude)
	}
	// A difference of logarithms: the ratio σ²/D itself overflows for a tiny distortion.
	return math.Max(0, 0.5*(math.Log2(variance)-math.Log2(distortion))), nil
}

// BAConfig tunes BlahutArimoto. Zero values mean the defaults.
type BAConfig struct {
	// Betas are the slopes (Lagrange multipliers, > 0) to sweep; default 40 values
	// spaced logarithmically from 0.01/d̄ to 1000/d̄, d̄ the mean positive distortion.
	Betas []float64 `json:"betas,omitempty"`
	// MaxIter bounds the iterations per slope (default 10000).
	MaxIter int `json:"max_iter,omitempty"`
	// Tol stops a slope's iteration when Blahut's optimality gap
	// log max_x̂ c(x̂) − Σ_x̂ q(x̂)·log c(x̂), which bounds how far the rate is from the
	// curve, falls below Tol nats (default 1e-10).
	Tol float64 `json:"tol,omitempty"`
}

// RDPoint is one point of a rate–distortion curve.
type RDPoint struct {
	Beta       float64 `json:"beta"`
	Distortion float64 `json:"distortion"`
	Rate       float64 `json:"rate"` // bits
	Iterations int     `json:"iterations"`
	Converged  bool    `json:"converged"`
}

// RDCurve is a rate–distortion curve, its points in increasing slope (decreasing
// distortion), with its knee when one exists.
type RDCurve struct {
	Points []RDPoint `json:"points"`
	// Knee is the Menger-curvature knee of the (distortion, rate) points; nil when the
	// curve has fewer than three distinct points, distortions equal up to rounding, rates
	// spanning no more than Tol (flat), or no bend (KneeError says why).
	Knee      *Knee  `json:"knee,omitempty"`
	KneeError string `json:"knee_error,omitempty"`
}

// BlahutArimoto computes the rate–distortion curve of a discrete source with
// probabilities p (len n, summing to 1) and distortion matrix d (n×k, finite,
// non-negative; d[x][x̂] is the cost of reproducing x as x̂) by the Blahut–Arimoto
// algorithm at each slope β:
//
//	Q(x̂|x) ∝ q(x̂)·exp(−β·d(x,x̂)),   q(x̂) = Σ_x p(x)·Q(x̂|x),
//
// iterated to a fixed point. Slopes run in increasing order and each starts from the
// previous slope's q (a warm start). The updates run on log-probabilities, so large
// β·d never underflows.
func BlahutArimoto(p []float64, d *mat.Dense, cfg BAConfig) (RDCurve, error) {
	return BlahutArimotoContext(context.Background(), p, d, cfg)
}

// BlahutArimotoContext is BlahutArimoto that stops, with ctx's error, once ctx is done.
func BlahutArimotoContext(ctx context.Context, p []float64, d *mat.Dense, cfg BAConfig) (RDCurve, error) {
	if len(p) == 0 {
		return RDCurve{}, inputErr("p", "the source needs at least one symbol")
	}
	if err := checkMatrix("distortion", d, len(p), -1, "len(p) rows"); err != nil {
		return RDCurve{}, err
	}
	if err := checkMarginal("p", p, 1); err != nil {
		return RDCurve{}, err
	}
	n, k := d.Dims()
	if cfg.MaxIter < 0 {
		return RDCurve{}, inputErrf("max_iter", "%d is negative", cfg.MaxIter)
	}
	if cfg.MaxIter == 0 {
		cfg.MaxIter = 10000
	}
	if math.IsNaN(cfg.Tol) || cfg.Tol < 0 {
		return RDCurve{}, inputErrf("tol", "%v must be ≥ 0", cfg.Tol)
	}
	if cfg.Tol == 0 {
		cfg.Tol = 1e-10
	}
	betas := append([]float64(nil), cfg.Betas...)
	for i, b := range betas {
		if math.IsNaN(b) || math.IsInf(b, 0) || b <= 0 {
			return RDCurve{}, inputErrf("betas", "entry %d is %v: slopes must be finite and > 0", i, b)
		}
	}
	if len(betas) == 0 {
		var s float64
		var c int
		for i := 0; i < n; i++ {
			for _, v := range d.RawRowView(i) {
				if v > 0 {
					s += v
					c++
				}
			}
		}
		if c == 0 {
			return RDCurve{}, inputErr("distortion", "all entries are zero: every reproduction is free")
		}
		mean := s / float64(c)
		const count = 40
		for i := 0; i < count; i++ {
			betas = append(betas, math.Pow(10, -2+5*float64(i)/(count-1))/mean)
		}
	}
	sort.Float64s(betas)

	logQ := make([]float64, k) // log q(x̂)
	logC := make([]float64, k) // log c(x̂), c(x̂) = Σ_x p(x)·exp(−β·d(x,x̂)) / Z(x)
	t := make([]float64, n*k)  // −β·d(x,x̂) − log Z(x), Z(x) = Σ_x̂ q(x̂)·exp(−β·d(x,x̂))
	scratch := make([]float64, 2*k)
	for j := range logQ {
		logQ[j] = -math.Log(float64(k))
	}
	curve := RDCurve{Points: make([]RDPoint, 0, len(betas))}
	for bi, beta := range betas {
		if bi > 0 {
			// Warm start from the previous slope's q, mixed with a little of the uniform
			// distribution: a letter that the previous slope drove towards zero mass must
			// be able to come back, which a multiplicative update cannot do from zero.
			for j := range logQ {
				logQ[j] = math.Log((1-baMix)*math.Exp(logQ[j]) + baMix/float64(k))
			}
		}
		pt := RDPoint{Beta: beta}
		for it := 1; it <= cfg.MaxIter; it++ {
			if err := ctx.Err(); err != nil {
				return RDCurve{}, err
			}
			baTerms(p, d, beta, logQ, t)
			colLogSumExp(p, t, n, k, logC, scratch)
			// Blahut's optimality gap: log max c − Σ q·log c ≥ 0, zero exactly at the
			// optimal q for this slope (nats).
			mx := math.Inf(-1)
			var avg float64
			for j, lc := range logC {
				mx = math.Max(mx, lc)
				if q := math.Exp(logQ[j]); q > 0 {
					avg += q * lc
				}
			}
			for j := range logQ {
				logQ[j] += logC[j] // q ← q·c
			}
			pt.Iterations = it
			if mx-avg < cfg.Tol {
				pt.Converged = true
				break
			}
		}
		// Distortion and mutual information (bits) of Q(x̂|x) = q(x̂)·exp(t). The output
		// marginal is q(x̂)·c(x̂), so log Q(x̂|x)/r(x̂) = t − log c, finite even where q(x̂)
		// is subnormal (the marginal summed in linear space underflows to 0 there, and
		// the rate became NaN).
		baTerms(p, d, beta, logQ, t)
		colLogSumExp(p, t, n, k, logC, scratch)
		for x := 0; x < n; x++ {
			if p[x] == 0 {
				continue
			}
			row := d.RawRowView(x)
			for j := 0; j < k; j++ {
				w := math.Exp(logQ[j] + t[x*k+j])
				if w == 0 {
					continue
				}
				pt.Distortion += p[x] * w * row[j]
				pt.Rate += p[x] * w * (t[x*k+j] - logC[j]) / math.Ln2
			}
		}
		pt.Rate = math.Max(0, pt.Rate) // rounding can leave −1e-17 at β → 0
		curve.Points = append(curve.Points, pt)
	}
	pts := make([][2]float64, len(curve.Points))
	for i, pt := range curve.Points {
		pts[i] = [2]float64{pt.Distortion, pt.Rate}
	}
	// Each rate is within Tol nats of the curve (Blahut's gap): rates spanning no more
	// than that are a flat curve, whatever their own magnitude (0 against 1e-17).
	if kn, err := findKnee(pts, KneeOptions{Method: KneeMenger, Curve: CurveConvex, Direction: Decreasing, DuplicateTol: 1e-6}, cfg.Tol/math.Ln2); err == nil {
		curve.Knee = &kn
	} else {
		curve.KneeError = err.Error()
	}
	return curve, nil
}

// baMix is the weight of the uniform distribution mixed into a warm start.
const baMix = 1e-3

// baTerms sets t[x][x̂] = −β·d(x,x̂) − log Σ_x̂' q(x̂')·exp(−β·d(x,x̂')) in log space.
func baTerms(p []float64, d *mat.Dense, beta float64, logQ, t []float64) {
	n, k := d.Dims()
	for x := 0; x < n; x++ {
		row := d.RawRowView(x)
		tr := t[x*k : x*k+k]
		mx := math.Inf(-1)
		for j := range tr {
			tr[j] = -beta * row[j]
			mx = math.Max(mx, logQ[j]+tr[j])
		}
		var z float64
		for j := range tr {
			z += math.Exp(logQ[j] + tr[j] - mx)
		}
		lz := mx + math.Log(z)
		for j := range tr {
			tr[j] -= lz
		}
	}
}

// colLogSumExp sets out[x̂] = log Σ_x p(x)·exp(t[x][x̂]); scratch holds 2k values.
func colLogSumExp(p, t []float64, n, k int, out, scratch []float64) {
	for j := range out {
		out[j] = math.Inf(-1)
	}
	for x := 0; x < n; x++ {
		if p[x] == 0 {
			continue
		}
		lp := math.Log(p[x])
		for j := 0; j < k; j++ {
			out[j] = math.Max(out[j], lp+t[x*k+j])
		}
	}
	mx, sum := scratch[:k], scratch[k:2*k]
	copy(mx, out)
	clear(sum)
	for x := 0; x < n; x++ {
		if p[x] == 0 {
			continue
		}
		lp := math.Log(p[x])
		for j := 0; j < k; j++ {
			sum[j] += math.Exp(lp + t[x*k+j] - mx[j])
		}
	}
	for j := range out {
		out[j] = mx[j] + math.Log(sum[j])
	}
}
