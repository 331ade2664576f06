package rd

import (
	"sort"
	"sync"
)

// Point is a refinement point of a session: a measured distortion, the source variance
// it refers to, and the Gaussian rate R(D) that follows.
type Point struct {
	// Index is the point's position in insertion order.
	Index      int     `json:"index"`
	Distortion float64 `json:"distortion"`
	Variance   float64 `json:"variance"`
	Rate       float64 `json:"rate"`
}

// RDKnee is a session's operating point: the knee of its rate–distortion curve.
type RDKnee struct {
	Rate       float64 `json:"rate"`
	Distortion float64 `json:"distortion"`
	Index      int     `json:"index"` // Point.Index of the knee
	Curvature  float64 `json:"curvature"`
	// Difference is Kneedle's difference-curve value at the knee (Kneedle only), as in
	// Knee.
	Difference float64    `json:"difference,omitempty"`
	Method     KneeMethod `json:"method"`
}

// Tracker accumulates the refinement points of one session (the seed's
// RDComputation) and finds the knee of their rate–distortion curve. It is safe for
// concurrent use.
type Tracker struct {
	mu     sync.Mutex
	points []Point
}

// NewTracker returns an empty tracker.
func NewTracker() *Tracker { return &Tracker{} }

// AddPoint records a refinement point and returns it with its rate.
func (t *Tracker) AddPoint(distortion, variance float64) (Point, error) {
	r, err := Rate(distortion, variance)
	if err != nil {
		return Point{}, err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	p := Point{Index: len(t.points), Distortion: distortion, Variance: variance, Rate: r}
	t.points = append(t.points, p)
	return p, nil
}

// Len returns the number of points recorded.
func (t *Tracker) Len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.points)
}

// Curve returns a copy of the points ordered by increasing distortion (ties by
// insertion order).
func (t *Tracker) Curve() []Point {
	t.mu.Lock()
	out := append([]Point(nil), t.points...)
	t.mu.Unlock()
	sort.SliceStable(out, func(a, b int) bool { return out[a].Distortion < out[b].Distortion })
	return out
}

// Knee finds the knee of the (distortion, rate) curve. The default options are Menger
// curvature on a convex curve, which is what R(D) is, its direction inferred (one
// session's R(D) decreases; points of several sessions of different variances need
// not); opts may pick Kneedle or other settings. Fewer than three distinct points is
// an *InputError; a curve with no bend (for example every rate 0) is ErrNoKnee.
func (t *Tracker) Knee(opts ...KneeOptions) (RDKnee, error) {
	o := KneeOptions{Method: KneeMenger, Curve: CurveConvex}
	if len(opts) > 0 {
		o = opts[0]
	}
	curve := t.Curve()
	pts := make([][2]float64, len(curve))
	for i, p := range curve {
		pts[i] = [2]float64{p.Distortion, p.Rate}
	}
	k, err := FindKnee(pts, o)
	if err != nil {
		return RDKnee{}, err
	}
	p := curve[k.Index]
	return RDKnee{Rate: p.Rate, Distortion: p.Distortion, Index: p.Index, Curvature: k.Curvature, Difference: k.Difference, Method: k.Method}, nil
}
