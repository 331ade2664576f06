package rd

import (
	"errors"
	"math"
	"strings"
	"testing"

	"gonum.org/v1/gonum/mat"
)

// elbow is a convex decreasing polyline through x = 0..10 whose slope changes from
// −4 to −0.2 at x = 2 (index 2).
func elbow() [][2]float64 {
	pts := make([][2]float64, 11)
	for i := range pts {
		x := float64(i)
		y := 10 - 4*x
		if x > 2 {
			y = 2 - 0.2*(x-2)
		}
		pts[i] = [2]float64{x, y}
	}
	return pts
}

// transform maps the convex decreasing elbow to the other three shapes.
func transform(pts [][2]float64, mirrorX, negateY bool) [][2]float64 {
	out := make([][2]float64, len(pts))
	for i, p := range pts {
		x, y := p[0], p[1]
		if mirrorX {
			x = 10 - x
		}
		if negateY {
			y = -y
		}
		out[i] = [2]float64{x, y}
	}
	return out
}

// TestKneeClassicShapes: a sharp elbow in each of the four shapes is found by both
// methods at the corner, with the shape and direction inferred or given.
func TestKneeClassicShapes(t *testing.T) {
	cases := []struct {
		name      string
		mirrorX   bool
		negateY   bool
		curve     CurveShape
		direction Direction
	}{
		{"convex decreasing", false, false, CurveConvex, Decreasing},
		{"concave increasing", false, true, CurveConcave, Increasing},
		{"convex increasing", true, false, CurveConvex, Increasing},
		{"concave decreasing", true, true, CurveConcave, Decreasing},
	}
	for _, tc := range cases {
		pts := transform(elbow(), tc.mirrorX, tc.negateY)
		for _, method := range []KneeMethod{KneeMenger, KneeKneedle} {
			for _, infer := range []bool{true, false} {
				opts := KneeOptions{Method: method}
				if !infer {
					opts.Curve, opts.Direction = tc.curve, tc.direction
				}
				k, err := FindKnee(pts, opts)
				if err != nil {
					t.Fatalf("%s/%s: %v", tc.name, method, err)
				}
				if k.Index != 2 || k.X != pts[2][0] || k.Y != pts[2][1] {
					t.Errorf("%s/%s (infer=%v): knee at index %d (%v, %v), want index 2", tc.name, method, infer, k.Index, k.X, k.Y)
				}
				if k.Curve != tc.curve || k.Direction != tc.direction {
					t.Errorf("%s/%s: shape %s %s, want %s %s", tc.name, method, k.Curve, k.Direction, tc.curve, tc.direction)
				}
				if k.Curvature <= 0 {
					t.Errorf("%s/%s: curvature %v at the corner", tc.name, method, k.Curvature)
				}
			}
		}
	}
}

// TestKneeSmoothCurve: on y = e^{−5x}, x ∈ [0, 1], Menger finds the maximum curvature
// of the normalised curve, where its slope is −1/√2, and Kneedle the maximum of the
// difference curve, where the slope is −1: two different, analytically known points.
func TestKneeSmoothCurve(t *testing.T) {
	const n = 1001
	pts := make([][2]float64, n)
	for i := range pts {
		x := float64(i) / (n - 1)
		pts[i] = [2]float64{x, math.Exp(-5 * x)}
	}
	span := 1 - math.Exp(-5)
	wantMenger := math.Log(5*math.Sqrt2/span) / 5
	wantKneedle := math.Log(5/span) / 5
	for _, tc := range []struct {
		method KneeMethod
		want   float64
	}{{KneeMenger, wantMenger}, {KneeKneedle, wantKneedle}} {
		k, err := FindKnee(pts, KneeOptions{Method: tc.method})
		if err != nil {
			t.Fatal(err)
		}
		if math.Abs(k.X-tc.want) > 2.0/(n-1) {
			t.Errorf("%s: knee at x = %v, want %v", tc.method, k.X, tc.want)
		}
	}
}

// TestKneeBumpy: small wiggles on the tail do not move the knee of a noisy elbow, for
// either method; input order does not matter.
func TestKneeBumpy(t *testing.T) {
	pts := make([][2]float64, 41)
	for i := range pts {
		x := float64(i) / 4
		y := 10 - 4*x
		if x > 2 {
			y = 2 - 0.2*(x-2)
		}
		y += 0.02 * math.Sin(float64(i)*1.7)
		pts[i] = [2]float64{x, y}
	}
	// Shuffle deterministically: reverse.
	rev := make([][2]float64, len(pts))
	for i := range pts {
		rev[len(pts)-1-i] = pts[i]
	}
	for _, method := range []KneeMethod{KneeMenger, KneeKneedle} {
		k, err := FindKnee(rev, KneeOptions{Method: method})
		if err != nil {
			t.Fatal(err)
		}
		if k.X != 2 || k.Index != len(pts)-1-8 {
			t.Errorf("%s: knee at x = %v (index %d), want x = 2 (index %d)", method, k.X, k.Index, len(pts)-1-8)
		}
	}
}

// TestKneedleOnlineOffline: on a staircase with two knees, offline Kneedle reports the
// first and online the last, and a high sensitivity suppresses a shallow knee.
func TestKneedleOnlineOffline(t *testing.T) {
	// Two steps: steep rise to x=4, plateau, steep rise from 16 to 20, plateau. The
	// difference curve has local maxima at 4 and 20.
	var pts [][2]float64
	for i := 0; i <= 40; i++ {
		x := float64(i)
		var y float64
		switch {
		case x <= 4:
			y = 2.5 * x
		case x <= 16:
			y = 10 + 0.05*(x-4)
		case x <= 20:
			y = 10.6 + 2.35*(x-16)
		default:
			y = 20 + 0.05*(x-20)
		}
		pts = append(pts, [2]float64{x, y})
	}
	off, err := FindKnee(pts, KneeOptions{Method: KneeKneedle})
	if err != nil {
		t.Fatal(err)
	}
	on, err := FindKnee(pts, KneeOptions{Method: KneeKneedle, Online: true})
	if err != nil {
		t.Fatal(err)
	}
	if off.X != 4 || on.X != 20 {
		t.Fatalf("offline knee at %v, online at %v; want 4 and 20", off.X, on.X)
	}
	if _, err := FindKnee(elbow(), KneeOptions{Method: KneeKneedle, Sensitivity: 100}); !errors.Is(err, ErrNoKnee) {
		t.Fatalf("sensitivity 100 gave %v, want ErrNoKnee", err)
	}
}

// TestKneeDuplicates: repeated points, exact or within the tolerance, are dropped
// before the curvature is taken, so they neither produce NaN nor move the knee.
func TestKneeDuplicates(t *testing.T) {
	pts := elbow()
	pts = append(pts, pts[2], [2]float64{pts[5][0] + 1e-12, pts[5][1]}, pts[0])
	for _, method := range []KneeMethod{KneeMenger, KneeKneedle} {
		k, err := FindKnee(pts, KneeOptions{Method: method})
		if err != nil {
			t.Fatal(err)
		}
		if k.X != 2 || math.IsNaN(k.Curvature) {
			t.Fatalf("%s: knee %+v, want x = 2", method, k)
		}
	}
}

func TestKneeBadInput(t *testing.T) {
	cases := []struct {
		name  string
		pts   [][2]float64
		opts  KneeOptions
		field string
		msg   string
	}{
		{"two points", [][2]float64{{0, 1}, {1, 0}}, KneeOptions{}, "points", "at least 3"},
		{"none", nil, KneeOptions{}, "points", "at least 3"},
		{"duplicates leave two", [][2]float64{{0, 1}, {0, 1}, {1, 0}}, KneeOptions{}, "points", "only 2 distinct"},
		{"nan", [][2]float64{{0, 1}, {math.NaN(), 1}, {1, 0}}, KneeOptions{}, "points", "non-finite"},
		{"vertical", [][2]float64{{1, 1}, {1, 2}, {1, 3}}, KneeOptions{}, "points", "same x"},
		{"method", elbow(), KneeOptions{Method: "l-method"}, "method", "unknown"},
		{"curve", elbow(), KneeOptions{Curve: "wavy"}, "curve", "unknown"},
		{"direction", elbow(), KneeOptions{Direction: "up"}, "direction", "unknown"},
		{"sensitivity", elbow(), KneeOptions{Sensitivity: -1}, "sensitivity", "≥ 0"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := FindKnee(tc.pts, tc.opts)
			var ie *InputError
			if !errors.As(err, &ie) || ie.Field != tc.field || !strings.Contains(ie.Msg, tc.msg) {
				t.Fatalf("got %v, want an InputError on %q mentioning %q", err, tc.field, tc.msg)
			}
		})
	}
	// A straight line or a flat one has no knee.
	for _, pts := range [][][2]float64{{{0, 0}, {1, 1}, {2, 2}}, {{0, 1}, {1, 1}, {2, 1}}} {
		for _, method := range []KneeMethod{KneeMenger, KneeKneedle} {
			if _, err := FindKnee(pts, KneeOptions{Method: method}); !errors.Is(err, ErrNoKnee) {
				t.Fatalf("%s on %v: got %v, want ErrNoKnee", method, pts, err)
			}
		}
	}
}

// TestKneeStraightLineRounding: a straight line whose coordinates carry rounding (0.1·i)
// has no knee either: a curvature or a Kneedle difference of 1e-13 is rounding, not a
// bend. Neither is a point on the side of the chord the shape excludes.
func TestKneeStraightLineRounding(t *testing.T) {
	for _, slope := range []float64{0.3, -0.7, 2.2} {
		for _, step := range []float64{0.1, 1.0 / 3, 0.01} {
			pts := make([][2]float64, 29)
			for i := range pts {
				x := step * float64(i+1)
				pts[i] = [2]float64{x, 5 + slope*x}
			}
			for _, method := range []KneeMethod{KneeMenger, KneeKneedle} {
				if k, err := FindKnee(pts, KneeOptions{Method: method}); !errors.Is(err, ErrNoKnee) {
					t.Errorf("%s on a line of slope %v, step %v: got %+v, %v; want ErrNoKnee", method, slope, step, k, err)
				}
			}
		}
	}
	// The elbow is convex: read as concave, its only bends are rounding.
	for _, method := range []KneeMethod{KneeMenger, KneeKneedle} {
		if k, err := FindKnee(elbow(), KneeOptions{Method: method, Curve: CurveConcave}); !errors.Is(err, ErrNoKnee) {
			t.Errorf("%s on the elbow read as concave: got %+v, %v; want ErrNoKnee", method, k, err)
		}
	}
}

// TestKneeRangeWithinRounding: an axis whose values differ only in their last bits is no
// range to normalise to the unit square: x values 5 ± 1 ulp are the same x (an
// InputError on points, as equal ones are), y values spanning 1e-12 of their magnitude
// are a flat curve (ErrNoKnee), for both methods. A curve of genuine but small relative
// range (x from 1e6 to 1e6 + 1e-3) still has its knee. Blahut–Arimoto's curve reports
// no knee, in knee_error, for a source whose every distortion is 5 (distortions 5 ± 1 ulp,
// rates of 1e-17) or whose rates are all 0 up to its tolerance.
func TestKneeRangeWithinRounding(t *testing.T) {
	five := math.Nextafter(5, 0)
	for _, method := range []KneeMethod{KneeMenger, KneeKneedle} {
		k, err := FindKnee([][2]float64{{five, 0}, {5, 1e-17}, {math.Nextafter(5, 10), 0}}, KneeOptions{Method: method})
		var ie *InputError
		if !errors.As(err, &ie) || ie.Field != "points" || !strings.Contains(ie.Msg, "same x up to rounding") {
			t.Errorf("%s, x = 5 ± 1 ulp: got %+v, %v; want an InputError on points", method, k, err)
		}
		flat := elbow()
		for i := range flat {
			flat[i][1] = 1e3 + 1e-13*flat[i][1]
		}
		if k, err := FindKnee(flat, KneeOptions{Method: method}); !errors.Is(err, ErrNoKnee) || !strings.Contains(err.Error(), "rounding") {
			t.Errorf("%s, y spanning 1e-12 of 1e3: got %+v, %v; want ErrNoKnee", method, k, err)
		}
		shifted := elbow()
		for i := range shifted {
			shifted[i][0] = 1e6 + 1e-4*shifted[i][0]
		}
		if k, err := FindKnee(shifted, KneeOptions{Method: method}); err != nil || k.Index != 2 {
			t.Errorf("%s, x from 1e6 to 1e6+1e-3: got %+v, %v; want the knee at index 2", method, k, err)
		}
	}
	for _, d := range [][]float64{{5, 5, 5, 5}, {1, 2, 1, 2}} {
		c, err := BlahutArimoto([]float64{0.5, 0.5}, mat.NewDense(2, 2, d), BAConfig{})
		if err != nil {
			t.Fatal(err)
		}
		if c.Knee != nil || c.KneeError == "" {
			t.Errorf("distortion %v: knee %+v (%q), want none", d, c.Knee, c.KneeError)
		}
	}
}

// TestKneeNoKneeSaysWhy: ErrNoKnee carries the reason a curve has no knee. An exactly
// flat curve says it is flat, as a curve flat up to rounding does; a curve with no bend
// of its shape says which way it does not bend; Kneedle at a sensitivity the curve's
// bend cannot meet says so and suggests a lower one.
func TestKneeNoKneeSaysWhy(t *testing.T) {
	for _, method := range []KneeMethod{KneeMenger, KneeKneedle} {
		_, err := FindKnee([][2]float64{{0, 1}, {1, 1}, {2, 1}}, KneeOptions{Method: method})
		if !errors.Is(err, ErrNoKnee) || !strings.Contains(err.Error(), "flat curve") || strings.Contains(err.Error(), "bend") {
			t.Errorf("%s, exactly flat: got %v, want ErrNoKnee saying it is flat", method, err)
		}
		_, err = FindKnee(elbow(), KneeOptions{Method: method, Curve: CurveConcave})
		if !errors.Is(err, ErrNoKnee) || !strings.Contains(err.Error(), "bends the concave way") {
			t.Errorf("%s, convex elbow read as concave: got %v, want ErrNoKnee naming the shape", method, err)
		}
	}
	_, err := FindKnee(elbow(), KneeOptions{Method: KneeKneedle, Sensitivity: 100})
	if !errors.Is(err, ErrNoKnee) || !strings.Contains(err.Error(), "at sensitivity 100") || !strings.Contains(err.Error(), "lower sensitivity") {
		t.Errorf("kneedle at sensitivity 100: got %v, want ErrNoKnee naming the sensitivity", err)
	}
}

// TestKneeDirectionChecked: a direction that contradicts the end points is an
// InputError on direction, for both methods (Menger does not use it, but would echo it
// back); the right one, or none, finds the knee; a curve whose ends are level takes
// either direction.
func TestKneeDirectionChecked(t *testing.T) {
	for _, method := range []KneeMethod{KneeMenger, KneeKneedle} {
		for _, tc := range []struct {
			pts   [][2]float64
			wrong Direction
			verb  string
			right Direction
		}{
			{elbow(), Increasing, "points decrease", Decreasing},
			{transform(elbow(), true, false), Decreasing, "points increase", Increasing},
		} {
			_, err := FindKnee(tc.pts, KneeOptions{Method: method, Direction: tc.wrong})
			var ie *InputError
			if !errors.As(err, &ie) || ie.Field != "direction" || !strings.Contains(ie.Msg, tc.verb) || !strings.Contains(ie.Msg, string(tc.right)) {
				t.Errorf("%s, direction %s: got %v, want an InputError on direction saying the %s", method, tc.wrong, err, tc.verb)
			}
			for _, d := range []Direction{tc.right, ""} {
				if k, err := FindKnee(tc.pts, KneeOptions{Method: method, Direction: d}); err != nil || k.Index != 2 || k.Direction != tc.right {
					t.Errorf("%s, direction %q: got %+v, %v; want the knee at index 2", method, d, k, err)
				}
			}
		}
		hump := [][2]float64{{0, 0}, {1, 3}, {2, 4}, {3, 3}, {4, 0}}
		for _, d := range []Direction{Increasing, Decreasing} {
			if _, err := FindKnee(hump, KneeOptions{Method: method, Direction: d}); err != nil && !errors.Is(err, ErrNoKnee) {
				t.Errorf("%s, level ends, direction %s: %v", method, d, err)
			}
		}
	}
}
