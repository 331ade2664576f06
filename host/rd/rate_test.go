package rd

import (
	"context"
	"errors"
	"math"
	"strings"
	"sync"
	"testing"

	"gonum.org/v1/gonum/mat"
)

func TestRate(t *testing.T) {
	cases := []struct {
		d, v, want float64
	}{
		{1, 4, 1},
		{0.25, 1, 1},
		{1, 1, 0},
		{2, 1, 0}, // distortion above the variance costs nothing
		{1e-6, 1, 0.5 * math.Log2(1e6)},
	}
	for _, tc := range cases {
		got, err := Rate(tc.d, tc.v)
		if err != nil || math.Abs(got-tc.want) > 1e-15 {
			t.Errorf("Rate(%v, %v) = %v, %v; want %v", tc.d, tc.v, got, err, tc.want)
		}
	}
	for _, bad := range [][2]float64{{0, 1}, {-1, 1}, {math.NaN(), 1}, {1, 0}, {1, math.Inf(1)}} {
		if _, err := Rate(bad[0], bad[1]); err == nil {
			t.Errorf("Rate(%v, %v) accepted", bad[0], bad[1])
		}
	}
}

// TestRateExtremes: a ratio σ²/D beyond float64's range still gives a finite rate, and a
// number beyond MaxMagnitude is refused, as FindKnee would refuse the point later.
func TestRateExtremes(t *testing.T) {
	for _, tc := range []struct{ d, v, want float64 }{
		{1e-300, 1e100, 0.5 * (100 + 300) * math.Log2(10)},
		{5e-324, 1, 537}, // the smallest subnormal is 2^-1074
	} {
		got, err := Rate(tc.d, tc.v)
		if err != nil || math.IsInf(got, 0) || math.Abs(got-tc.want) > 1e-9*tc.want {
			t.Errorf("Rate(%v, %v) = %v, %v; want %v", tc.d, tc.v, got, err, tc.want)
		}
	}
	for _, bad := range [][2]float64{{1e300, 1}, {1, 1e300}} {
		if _, err := Rate(bad[0], bad[1]); err == nil {
			t.Errorf("Rate(%v, %v) accepted", bad[0], bad[1])
		}
	}
	// A tracker whose points were all accepted has a knee (or ErrNoKnee), never a
	// refusal of its own points.
	tr := NewTracker()
	for _, p := range [][2]float64{{5e-324, 1}, {0.5, 1}, {0.1, 1}, {0.9, 1}} {
		if _, err := tr.AddPoint(p[0], p[1]); err != nil {
			t.Fatal(err)
		}
	}
	var ie *InputError
	if _, err := tr.Knee(); errors.As(err, &ie) {
		t.Errorf("knee of accepted points: %v", err)
	}
}

func binaryEntropy(d float64) float64 {
	if d <= 0 || d >= 1 {
		return 0
	}
	return -d*math.Log2(d) - (1-d)*math.Log2(1-d)
}

// TestBlahutArimotoHamming: for a uniform source over k symbols with Hamming
// distortion, every computed point lies on the known curve
// R(D) = log2 k − h(D) − D·log2(k−1).
func TestBlahutArimotoHamming(t *testing.T) {
	for _, k := range []int{2, 4} {
		p := uniform(k)
		d := mat.NewDense(k, k, nil)
		for i := 0; i < k; i++ {
			for j := 0; j < k; j++ {
				if i != j {
					d.Set(i, j, 1)
				}
			}
		}
		curve, err := BlahutArimoto(p, d, BAConfig{})
		if err != nil {
			t.Fatal(err)
		}
		if len(curve.Points) != 40 {
			t.Fatalf("%d points, want the 40 default slopes", len(curve.Points))
		}
		for _, pt := range curve.Points {
			if !pt.Converged {
				t.Fatalf("k=%d β=%v did not converge", k, pt.Beta)
			}
			want := math.Max(0, math.Log2(float64(k))-binaryEntropy(pt.Distortion)-pt.Distortion*math.Log2(float64(k-1)))
			if math.Abs(pt.Rate-want) > 1e-6 {
				t.Errorf("k=%d β=%v: R(%v) = %v, want %v", k, pt.Beta, pt.Distortion, pt.Rate, want)
			}
		}
		last := curve.Points[len(curve.Points)-1]
		if last.Distortion > 1e-6 || math.Abs(last.Rate-math.Log2(float64(k))) > 1e-5 {
			t.Errorf("k=%d: at the largest slope D=%v R=%v, want D≈0, R≈log2 k", k, last.Distortion, last.Rate)
		}
		if curve.Knee == nil {
			t.Fatalf("k=%d: no knee (%s)", k, curve.KneeError)
		}
	}
}

// TestBlahutArimotoWarmStartAndLogDomain: warm starts give the points of independent
// cold runs with fewer iterations; huge slopes stay finite thanks to the log domain.
func TestBlahutArimotoWarmStartAndLogDomain(t *testing.T) {
	p := []float64{0.1, 0.2, 0.3, 0.4}
	d := mat.NewDense(4, 3, []float64{0, 1, 4, 1, 0, 1, 4, 1, 0, 9, 4, 1})
	betas := []float64{0.1, 0.3, 1, 3, 10, 30, 1e4}
	warm, err := BlahutArimoto(p, d, BAConfig{Betas: betas})
	if err != nil {
		t.Fatal(err)
	}
	var warmIt, coldIt int
	for i, b := range betas {
		cold, err := BlahutArimoto(p, d, BAConfig{Betas: []float64{b}})
		if err != nil {
			t.Fatal(err)
		}
		w, c := warm.Points[i], cold.Points[0]
		if math.Abs(w.Rate-c.Rate) > 1e-7 || math.Abs(w.Distortion-c.Distortion) > 1e-7 {
			t.Errorf("β=%v: warm (%v, %v), cold (%v, %v)", b, w.Distortion, w.Rate, c.Distortion, c.Rate)
		}
		if math.IsNaN(w.Rate) || math.IsNaN(w.Distortion) {
			t.Fatalf("β=%v: NaN", b)
		}
		warmIt += w.Iterations
		coldIt += c.Iterations
	}
	if warmIt >= coldIt {
		t.Errorf("warm starts took %d iterations, cold %d", warmIt, coldIt)
	}
	// Rate decreases as distortion grows along the sweep.
	for i := 1; i < len(warm.Points); i++ {
		if warm.Points[i].Distortion > warm.Points[i-1].Distortion+1e-12 || warm.Points[i].Rate < warm.Points[i-1].Rate-1e-12 {
			t.Errorf("points %d and %d are not monotone: %+v %+v", i-1, i, warm.Points[i-1], warm.Points[i])
		}
	}
}

// TestBlahutArimotoVanishingLetter: at a low slope the reproduction letters away from the
// mean lose nearly all their mass (q(x̂) ≈ 1e-320, subnormal); the rate, summed over
// them, stays finite (it was NaN, and the API's answer an empty 200).
func TestBlahutArimotoVanishingLetter(t *testing.T) {
	const n = 15
	p := make([]float64, n)
	x := make([]float64, n)
	var s float64
	for i := range p {
		x[i] = -3 + 6*float64(i)/(n-1)
		p[i] = math.Exp(-x[i] * x[i] / 2)
		s += p[i]
	}
	for i := range p {
		p[i] /= s
	}
	d := mat.NewDense(n, n, nil)
	for i := 0; i < n; i++ {
		for j := 0; j < n; j++ {
			d.Set(i, j, (x[i]-x[j])*(x[i]-x[j]))
		}
	}
	curve, err := BlahutArimoto(p, d, BAConfig{Betas: []float64{0.3, 1, 3, 10}})
	if err != nil {
		t.Fatal(err)
	}
	for _, pt := range curve.Points {
		if math.IsNaN(pt.Rate) || math.IsInf(pt.Rate, 0) || pt.Rate < 0 || pt.Rate > math.Log2(n) || math.IsNaN(pt.Distortion) {
			t.Errorf("beta %v: rate %v, distortion %v", pt.Beta, pt.Rate, pt.Distortion)
		}
	}
	if curve.Points[0].Rate > 1e-3 {
		t.Errorf("beta 0.3 (below the slope where the curve leaves rate 0): rate %v", curve.Points[0].Rate)
	}
	if curve.Knee == nil {
		t.Errorf("no knee: %s", curve.KneeError)
	}
}

func TestBlahutArimotoBadInput(t *testing.T) {
	d := mat.NewDense(2, 2, []float64{0, 1, 1, 0})
	cases := []struct {
		name  string
		p     []float64
		d     *mat.Dense
		cfg   BAConfig
		field string
	}{
		{"empty p", nil, d, BAConfig{}, "p"},
		{"p sum", []float64{0.5, 0.6}, d, BAConfig{}, "p"},
		{"rows", []float64{1}, d, BAConfig{}, "distortion"},
		{"negative", []float64{0.5, 0.5}, mat.NewDense(2, 2, []float64{0, -1, 1, 0}), BAConfig{}, "distortion"},
		{"beta", []float64{0.5, 0.5}, d, BAConfig{Betas: []float64{1, 0}}, "betas"},
		{"all zero", []float64{0.5, 0.5}, mat.NewDense(2, 2, nil), BAConfig{}, "distortion"},
	}
	for _, tc := range cases {
		_, err := BlahutArimoto(tc.p, tc.d, tc.cfg)
		var ie *InputError
		if !errors.As(err, &ie) || ie.Field != tc.field {
			t.Errorf("%s: got %v, want an InputError on %q", tc.name, err, tc.field)
		}
	}
}

func TestTracker(t *testing.T) {
	tr := NewTracker()
	if _, err := tr.Knee(); err == nil || !strings.Contains(err.Error(), "at least 3") {
		t.Fatalf("empty tracker knee: %v", err)
	}
	// Distortions of a refinement run on a unit-variance source, out of order.
	ds := []float64{0.5, 0.01, 0.2, 0.05, 0.1, 0.02, 0.9, 0.3}
	for _, d := range ds {
		p, err := tr.AddPoint(d, 1)
		if err != nil {
			t.Fatal(err)
		}
		if want, _ := Rate(d, 1); p.Rate != want {
			t.Fatalf("rate %v, want %v", p.Rate, want)
		}
	}
	if _, err := tr.AddPoint(0, 1); err == nil {
		t.Fatal("zero distortion accepted")
	}
	curve := tr.Curve()
	for i := 1; i < len(curve); i++ {
		if curve[i].Distortion < curve[i-1].Distortion {
			t.Fatalf("curve not sorted: %+v", curve)
		}
	}
	k, err := tr.Knee()
	if err != nil {
		t.Fatal(err)
	}
	pts := make([][2]float64, len(curve))
	for i, p := range curve {
		pts[i] = [2]float64{p.Distortion, p.Rate}
	}
	want, err := FindKnee(pts, KneeOptions{Curve: CurveConvex, Direction: Decreasing})
	if err != nil {
		t.Fatal(err)
	}
	if k.Distortion != want.X || k.Rate != want.Y || ds[k.Index] != k.Distortion || k.Method != KneeMenger || k.Curvature <= 0 {
		t.Fatalf("knee %+v, want the Menger knee %+v named by insertion index", k, want)
	}
	// Kneedle's knee carries its difference, as FindKnee's does (GET /v1/rd/knee answers
	// what POST /v1/rd/knee does).
	kk, err := tr.Knee(KneeOptions{Method: KneeKneedle, Curve: CurveConvex, Direction: Decreasing})
	if err != nil {
		t.Fatalf("kneedle: %v", err)
	}
	wantK, err := FindKnee(pts, KneeOptions{Method: KneeKneedle, Curve: CurveConvex, Direction: Decreasing})
	if err != nil {
		t.Fatal(err)
	}
	if kk.Difference <= 0 || kk.Difference != wantK.Difference || kk.Distortion != wantK.X {
		t.Fatalf("kneedle knee %+v, want FindKnee's %+v with its difference", kk, wantK)
	}
	// Points of sessions of different variances may rise with distortion: the default
	// knee infers the direction rather than refusing one the caller never gave.
	rising := NewTracker()
	for _, p := range [][2]float64{{0.5, 1}, {1, 4}, {2, 64}} {
		if _, err := rising.AddPoint(p[0], p[1]); err != nil {
			t.Fatal(err)
		}
	}
	var ie *InputError
	if _, err := rising.Knee(); errors.As(err, &ie) {
		t.Fatalf("rates rising with distortion: %v, want a knee or ErrNoKnee", err)
	}
	flat := NewTracker()
	for _, d := range []float64{2, 3, 4} {
		if _, err := flat.AddPoint(d, 1); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := flat.Knee(); !errors.Is(err, ErrNoKnee) {
		t.Fatalf("all-zero rates: %v, want ErrNoKnee", err)
	}
}

func TestTrackerConcurrent(t *testing.T) {
	tr := NewTracker()
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				if _, err := tr.AddPoint(0.001+float64(g*50+i)/1000, 1); err != nil {
					t.Error(err)
				}
				_ = tr.Curve()
				_, _ = tr.Knee()
			}
		}(g)
	}
	wg.Wait()
	if tr.Len() != 400 {
		t.Fatalf("%d points, want 400", tr.Len())
	}
	seen := make(map[int]bool)
	for _, p := range tr.Curve() {
		if seen[p.Index] {
			t.Fatalf("index %d twice", p.Index)
		}
		seen[p.Index] = true
	}
}

// TestBlahutArimotoStopsWithItsContext: a done context stops the curve with its error.
func TestBlahutArimotoStopsWithItsContext(t *testing.T) {
	d := mat.NewDense(3, 3, []float64{0, 1, 2, 1, 0, 1, 2, 1, 0})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := BlahutArimotoContext(ctx, uniform(3), d, BAConfig{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled: %v", err)
	}
	if _, err := BlahutArimotoContext(context.Background(), uniform(3), d, BAConfig{}); err != nil {
		t.Fatal(err)
	}
}
