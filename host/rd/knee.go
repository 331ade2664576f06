package rd

import (
	"fmt"
	"math"
	"sort"
)

// KneeMethod names a knee detector.
type KneeMethod string

// Knee detectors.
const (
	// KneeMenger picks the point of largest Menger curvature (the curvature of the circle
	// through a point and its two neighbours) on axes normalised to the unit square.
	KneeMenger KneeMethod = "menger"
	// KneeKneedle is Satopää et al.'s Kneedle (2011): the curve is mapped to a concave
	// increasing one, and a knee is a local maximum of the difference curve y − x after
	// which the difference drops below the maximum minus S/(N−1).
	KneeKneedle KneeMethod = "kneedle"
)

// CurveShape says which way a curve bends; empty means infer it from the points (below
// the chord joining the end points: convex; above: concave).
type CurveShape string

// Curve shapes.
const (
	CurveConvex  CurveShape = "convex"
	CurveConcave CurveShape = "concave"
)

// Direction says whether y grows with x; empty means infer it from the end points.
type Direction string

// Directions.
const (
	Increasing Direction = "increasing"
	Decreasing Direction = "decreasing"
)

// KneeOptions selects and tunes the knee detector. The zero value is Menger curvature
// with the shape and direction inferred.
type KneeOptions struct {
	// Method is KneeMenger (default) or KneeKneedle.
	Method KneeMethod `json:"method,omitempty"`
	// Curve is convex or concave; empty infers it.
	Curve CurveShape `json:"curve,omitempty"`
	// Direction is increasing or decreasing; empty infers it from the end points. A
	// given direction must agree with the end points (an *InputError otherwise): Kneedle
	// maps the curve by it; Menger's curvature does not depend on it, so for Menger it
	// is only checked and echoed.
	Direction Direction `json:"direction,omitempty"`
	// Sensitivity is Kneedle's S ≥ 0 (default 1): larger waits for a clearer drop.
	Sensitivity float64 `json:"sensitivity,omitempty"`
	// Online makes Kneedle return the last knee it confirms while scanning the curve
	// (the knee a stream of points ends with); offline (default) returns the first.
	Online bool `json:"online,omitempty"`
	// DuplicateTol is the distance on the unit-square-normalised axes below which a
	// point counts as a duplicate of the previous one and is dropped (default 1e-9).
	DuplicateTol float64 `json:"duplicate_tol,omitempty"`
}

// Knee is the knee of a curve.
type Knee struct {
	// X and Y are the knee's coordinates as given.
	X float64 `json:"x"`
	Y float64 `json:"y"`
	// Index is the knee's position in the input slice.
	Index int `json:"index"`
	// Curvature is the Menger curvature at the knee on normalised axes (0 at an end
	// point).
	Curvature float64 `json:"curvature"`
	// Difference is Kneedle's difference-curve value at the knee (Kneedle only).
	Difference float64 `json:"difference,omitempty"`
	// Method, Curve and Direction say how the knee was found (inferred values filled in).
	Method    KneeMethod `json:"method"`
	Curve     CurveShape `json:"curve"`
	Direction Direction  `json:"direction"`
}

// normCurve is a curve sorted by x, de-duplicated and normalised to the unit square.
type normCurve struct {
	x, y []float64 // normalised
	idx  []int     // input index of each point
}

// FindKnee returns the knee of the curve through points ([x, y] pairs, any order; they
// are sorted by x). It needs at least three distinct points and x values that differ by
// more than rounding (an *InputError on points otherwise), and a direction, when given,
// that agrees with the end points (an *InputError on direction otherwise). A flat curve,
// one whose y values differ only by rounding, one that never bends the way its shape
// says, or (Kneedle) one that bends less sharply than the sensitivity asks gives
// ErrNoKnee, wrapped with which of these it is. An axis's range is rounding when it is at most rangeTol (1e-12) of the
// largest magnitude on that axis: normalising it to [0, 1] would turn last-bit
// differences (5 ± 1 ulp) into a curve.
func FindKnee(points [][2]float64, opts KneeOptions) (Knee, error) {
	return findKnee(points, opts, 0)
}

// rangeTol is the relative size, against the largest magnitude of an axis's values,
// up to which the axis's range counts as rounding rather than a range.
const rangeTol = 1e-12

// findKnee is FindKnee with yFloor, an absolute amount by which the y values are known
// to be uncertain (the tolerance of the computation that produced them): a y range up
// to yFloor is flat too.
func findKnee(points [][2]float64, opts KneeOptions, yFloor float64) (Knee, error) {
	switch opts.Method {
	case "":
		opts.Method = KneeMenger
	case KneeMenger, KneeKneedle:
	default:
		return Knee{}, inputErrf("method", "unknown knee method %q: use \"menger\" or \"kneedle\"", opts.Method)
	}
	switch opts.Curve {
	case "", CurveConvex, CurveConcave:
	default:
		return Knee{}, inputErrf("curve", "unknown curve %q: use \"convex\" or \"concave\"", opts.Curve)
	}
	switch opts.Direction {
	case "", Increasing, Decreasing:
	default:
		return Knee{}, inputErrf("direction", "unknown direction %q: use \"increasing\" or \"decreasing\"", opts.Direction)
	}
	if math.IsNaN(opts.Sensitivity) || math.IsInf(opts.Sensitivity, 0) || opts.Sensitivity < 0 {
		return Knee{}, inputErrf("sensitivity", "%v must be a finite number ≥ 0", opts.Sensitivity)
	}
	if opts.Sensitivity == 0 {
		opts.Sensitivity = 1
	}
	if math.IsNaN(opts.DuplicateTol) || math.IsInf(opts.DuplicateTol, 0) || opts.DuplicateTol < 0 {
		return Knee{}, inputErrf("duplicate_tol", "%v must be a finite number ≥ 0", opts.DuplicateTol)
	}
	if opts.DuplicateTol == 0 {
		opts.DuplicateTol = 1e-9
	}
	if len(points) < 3 {
		return Knee{}, inputErrf("points", "%d given: a knee needs at least 3 points", len(points))
	}
	for i, p := range points {
		for _, v := range p {
			if math.IsNaN(v) || math.IsInf(v, 0) {
				return Knee{}, inputErrf("points", "point %d has a non-finite coordinate %v", i, v)
			}
			if math.Abs(v) > MaxMagnitude {
				return Knee{}, inputErrf("points", "point %d has a coordinate %v beyond ±%g, which overflows the curve's ranges; scale the curve down", i, v, MaxMagnitude)
			}
		}
	}
	c, err := normalise(points, opts.DuplicateTol, yFloor)
	if err != nil {
		return Knee{}, err
	}
	nPts := len(c.x)
	// The direction is read from the end points: a given one must agree with them
	// (Kneedle's transform depends on it, and the answer echoes it). Ends at the same
	// height up to rounding fit either direction.
	first, last := c.idx[0], c.idx[nPts-1]
	switch {
	case opts.Direction == Increasing && c.y[nPts-1] < c.y[0]-bendTol,
		opts.Direction == Decreasing && c.y[nPts-1] > c.y[0]+bendTol:
		verb, other := "decrease", Decreasing
		if opts.Direction == Decreasing {
			verb, other = "increase", Increasing
		}
		return Knee{}, inputErrf("direction", "is %q, but the points %s: y goes from %g at x = %g to %g at x = %g; send %q, or leave direction out to infer it",
			opts.Direction, verb, points[first][1], points[first][0], points[last][1], points[last][0], other)
	case opts.Direction == "":
		opts.Direction = Increasing
		if c.y[nPts-1] < c.y[0] {
			opts.Direction = Decreasing
		}
	}
	if opts.Curve == "" {
		// Mean signed height above the chord through the end points.
		var s float64
		x0, y0, x1, y1 := c.x[0], c.y[0], c.x[nPts-1], c.y[nPts-1]
		for i := range c.x {
			chord := y0 + (y1-y0)*(c.x[i]-x0)/(x1-x0)
			s += c.y[i] - chord
		}
		opts.Curve = CurveConcave
		if s < 0 {
			opts.Curve = CurveConvex
		}
	}
	var k int
	var diff float64
	if opts.Method == KneeMenger {
		k, err = c.menger(opts.Curve)
	} else {
		k, diff, err = c.kneedle(opts)
	}
	if err != nil {
		return Knee{}, err
	}
	in := c.idx[k]
	return Knee{
		X: points[in][0], Y: points[in][1], Index: in,
		Curvature:  math.Abs(c.curvature(k)),
		Difference: diff,
		Method:     opts.Method, Curve: opts.Curve, Direction: opts.Direction,
	}, nil
}

func normalise(points [][2]float64, tol, yFloor float64) (*normCurve, error) {
	order := make([]int, len(points))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool { return points[order[a]][0] < points[order[b]][0] })
	xmin, xmax := points[order[0]][0], points[order[len(order)-1]][0]
	ymin, ymax := math.Inf(1), math.Inf(-1)
	for _, p := range points {
		ymin = math.Min(ymin, p[1])
		ymax = math.Max(ymax, p[1])
	}
	if xmax == xmin {
		return nil, inputErr("points", "all points have the same x: there is no curve")
	}
	if withinRounding(xmin, xmax, 0) {
		return nil, inputErrf("points", "all points have the same x up to rounding (they span %.3g at magnitude %.3g, at most %g of it): there is no curve",
			xmax-xmin, math.Max(math.Abs(xmin), math.Abs(xmax)), rangeTol)
	}
	if ymax == ymin {
		return nil, fmt.Errorf("%w: every point has y = %g: a flat curve", ErrNoKnee, ymin)
	}
	if withinRounding(ymin, ymax, yFloor) {
		if span := ymax - ymin; span <= yFloor {
			return nil, fmt.Errorf("%w: its y values span %.3g, within the %.3g precision of the computation that produced them: a flat curve", ErrNoKnee, span, yFloor)
		}
		return nil, fmt.Errorf("%w: its y values differ only by rounding (they span %.3g at magnitude %.3g): a flat curve",
			ErrNoKnee, ymax-ymin, math.Max(math.Abs(ymin), math.Abs(ymax)))
	}
	c := &normCurve{}
	for _, i := range order {
		x := (points[i][0] - xmin) / (xmax - xmin)
		y := (points[i][1] - ymin) / (ymax - ymin)
		if k := len(c.x); k > 0 && math.Hypot(x-c.x[k-1], y-c.y[k-1]) < tol {
			continue
		}
		c.x = append(c.x, x)
		c.y = append(c.y, y)
		c.idx = append(c.idx, i)
	}
	if len(c.x) < 3 {
		return nil, inputErrf("points", "only %d distinct points: a knee needs at least 3", len(c.x))
	}
	return c, nil
}

// withinRounding reports whether the range [lo, hi] is at most rangeTol of the largest
// magnitude in it, or at most floor.
func withinRounding(lo, hi, floor float64) bool {
	span := hi - lo
	return span <= floor || span <= rangeTol*math.Max(math.Abs(lo), math.Abs(hi))
}

// curvature is the signed Menger curvature at interior point k: 4·area / (product of
// the triangle's sides), positive when the curve turns left (convex), 0 at end points.
func (c *normCurve) curvature(k int) float64 {
	if k <= 0 || k >= len(c.x)-1 {
		return 0
	}
	ax, ay := c.x[k]-c.x[k-1], c.y[k]-c.y[k-1]
	bx, by := c.x[k+1]-c.x[k], c.y[k+1]-c.y[k]
	cross := ax*by - ay*bx
	la, lb := math.Hypot(ax, ay), math.Hypot(bx, by)
	den := la * lb * math.Hypot(c.x[k+1]-c.x[k-1], c.y[k+1]-c.y[k-1])
	// cross/(la·lb) is the sine of the turn: below bendTol the three points are
	// collinear up to rounding (a line through 0.1·i), not a bend.
	if den == 0 || math.Abs(cross) <= bendTol*la*lb {
		return 0
	}
	return 2 * cross / den
}

// bendTol is the least turn (the sine of the angle between consecutive segments, or the
// height of Kneedle's difference curve on the unit square) that counts as a bend rather
// than rounding.
const bendTol = 1e-9

// noBend is the ErrNoKnee of a curve with no point bending the way shape says.
func noBend(shape CurveShape) error {
	other := CurveConcave
	if shape == CurveConcave {
		other = CurveConvex
	}
	return fmt.Errorf("%w: no point of the curve bends the %s way (it is straight, or %s)", ErrNoKnee, shape, other)
}

// menger returns the interior point of largest curvature bending the way shape says.
func (c *normCurve) menger(shape CurveShape) (int, error) {
	best, bestK := 0.0, -1
	for k := 1; k < len(c.x)-1; k++ {
		v := c.curvature(k)
		if shape == CurveConcave {
			v = -v
		}
		if v > best {
			best, bestK = v, k
		}
	}
	if bestK < 0 {
		return 0, noBend(shape)
	}
	return bestK, nil
}

// kneedle maps the curve to a concave increasing one, computes the difference curve
// and applies Kneedle's threshold test, returning the knee's position in c.
func (c *normCurve) kneedle(opts KneeOptions) (int, float64, error) {
	n := len(c.x)
	xs := make([]float64, n)
	ys := make([]float64, n)
	pos := make([]int, n) // position in c of transformed point i
	// concave increasing: as is; convex decreasing: y → 1−y; concave decreasing: x → 1−x
	// (order reversed); convex increasing: both.
	flipX := (opts.Curve == CurveConcave) == (opts.Direction == Decreasing)
	flipY := opts.Curve == CurveConvex
	for i := 0; i < n; i++ {
		k := i
		if flipX {
			k = n - 1 - i
		}
		x, y := c.x[k], c.y[k]
		if flipX {
			x = 1 - x
		}
		if flipY {
			y = 1 - y
		}
		xs[i], ys[i], pos[i] = x, y, k
	}
	d := make([]float64, n)
	for i := range d {
		d[i] = ys[i] - xs[i]
	}
	// A knee is a local maximum above the chord (d > 0): one at or below it, within
	// rounding, is a straight stretch or a bend the other way.
	isMax := func(i int) bool { return i > 0 && i < n-1 && d[i] > bendTol && d[i] >= d[i-1] && d[i] >= d[i+1] }
	isMin := func(i int) bool { return i > 0 && i < n-1 && d[i] <= d[i-1] && d[i] <= d[i+1] }
	step := (xs[n-1] - xs[0]) / float64(n-1)
	first := -1
	for i := 1; i < n-1; i++ {
		if isMax(i) {
			first = i
			break
		}
	}
	if first < 0 {
		return 0, 0, noBend(opts.Curve)
	}
	knee := -1
	threshold, thresholdIdx := 0.0, -1
	for i := first; i < n-1; i++ {
		if isMax(i) {
			threshold = d[i] - opts.Sensitivity*step
			thresholdIdx = i
		}
		if isMin(i) {
			threshold = 0
		}
		if thresholdIdx >= 0 && d[i+1] < threshold {
			knee = thresholdIdx
			thresholdIdx = -1 // wait for the next local maximum
			if !opts.Online {
				break
			}
		}
	}
	if knee < 0 {
		// The curve bends (the difference curve has a maximum above the chord) but
		// never drops sensitivity·step below it; a small enough S always confirms the
		// maximum, since the difference curve ends at 0.
		return 0, 0, fmt.Errorf("%w: the curve bends, but at sensitivity %g no maximum of Kneedle's difference curve is followed by a drop of sensitivity/(N−1) = %.3g below it: lower sensitivity (the default is 1)",
			ErrNoKnee, opts.Sensitivity, opts.Sensitivity*step)
	}
	return pos[knee], d[knee], nil
}
