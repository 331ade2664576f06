package rd

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"math/big"
	"math/rand/v2"
	"os"
	"strings"
	"testing"
	"time"

	"gonum.org/v1/gonum/mat"
)

type potCase struct {
	Name               string      `json:"name"`
	Alpha              float64     `json:"alpha"`
	C1                 [][]float64 `json:"c1"`
	C2                 [][]float64 `json:"c2"`
	M                  [][]float64 `json:"m"`
	P                  []float64   `json:"p"`
	Q                  []float64   `json:"q"`
	CGValue            float64     `json:"cg_value"`
	CGIterations       int         `json:"cg_iterations"`
	CGPlan             [][]float64 `json:"cg_plan"`
	EMDValue           *float64    `json:"emd_value"`
	GWValue            *float64    `json:"gw_value"`
	GWIterations       int         `json:"gw_iterations"`
	Epsilon            float64     `json:"epsilon"`
	EntropicValue      *float64    `json:"entropic_value"`
	EntropicIterations int         `json:"entropic_iterations"`
}

func loadPOT(t *testing.T) []potCase {
	t.Helper()
	raw, err := os.ReadFile("testdata/pot_fixtures.json")
	if err != nil {
		t.Fatalf("read fixtures (regenerate with make rd-fixtures): %v", err)
	}
	var doc struct {
		POTVersion string    `json:"pot_version"`
		Cases      []potCase `json:"cases"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Cases) == 0 {
		t.Fatal("no fixture cases")
	}
	return doc.Cases
}

func dense(rows [][]float64) *mat.Dense {
	r := len(rows)
	c := len(rows[0])
	d := mat.NewDense(r, c, nil)
	for i, row := range rows {
		d.SetRow(i, row)
	}
	return d
}

func relErr(got, want float64) float64 {
	return math.Abs(got-want) / math.Max(math.Abs(want), 1e-300)
}

// productPlan is p·qᵀ, POT's start.
func productPlan(p, q []float64) *mat.Dense {
	g := mat.NewDense(len(p), len(q), nil)
	for i := range p {
		for j := range q {
			g.Set(i, j, p[i]*q[j])
		}
	}
	return g
}

// TestFGWMatchesPOT: conditional gradient started from p·qᵀ, as POT starts, gives POT's
// value within 1e-9 relative with the same number of linear steps, and the same plan.
// WithStarts it also tries others: its distance is then at most POT's (below it on
// several fixtures), and the loss of the plan it returns.
func TestFGWMatchesPOT(t *testing.T) {
	for _, tc := range loadPOT(t) {
		t.Run(tc.Name, func(t *testing.T) {
			cfg := DefaultFGWConfig(MethodCG)
			cfg.Alpha = tc.Alpha
			best, err := FGW(dense(tc.C1), dense(tc.C2), dense(tc.M), tc.P, tc.Q, cfg, WithPlan(), WithStarts())
			if err != nil {
				t.Fatal(err)
			}
			if best.Distance > tc.CGValue*(1+1e-9) {
				t.Errorf("from every start: distance %.17g, above POT's %.17g", best.Distance, tc.CGValue)
			}
			if direct := directFGWLoss(dense(tc.C1), dense(tc.C2), dense(tc.M), best.Plan, tc.Alpha); relErr(best.Distance, direct) > 1e-12 {
				t.Errorf("from every start: distance %.17g, loss of the plan %.17g", best.Distance, direct)
			}
			pot := WithInitialPlan(productPlan(tc.P, tc.Q))
			res, err := FGW(dense(tc.C1), dense(tc.C2), dense(tc.M), tc.P, tc.Q, cfg, WithPlan(), pot)
			if err != nil {
				t.Fatal(err)
			}
			if e := relErr(res.Distance, tc.CGValue); e > 1e-9 {
				t.Errorf("distance %.17g, POT %.17g (relative error %.3g)", res.Distance, tc.CGValue, e)
			}
			if res.Iterations != tc.CGIterations {
				t.Errorf("iterations %d, POT %d", res.Iterations, tc.CGIterations)
			}
			if !res.Converged {
				t.Errorf("not converged")
			}
			if tc.CGPlan != nil {
				want := dense(tc.CGPlan)
				if !mat.EqualApprox(res.Plan, want, 1e-9) {
					t.Errorf("plan differs from POT's:\n%v\nPOT:\n%v", mat.Formatted(res.Plan), mat.Formatted(want))
				}
			}
			// The reported distance is the loss of the returned plan.
			if direct := directFGWLoss(dense(tc.C1), dense(tc.C2), dense(tc.M), res.Plan, tc.Alpha); relErr(res.Distance, direct) > 1e-12 {
				t.Errorf("distance %.17g, loss of the plan %.17g", res.Distance, direct)
			}
			if tc.EMDValue != nil { // alpha = 0 is exact optimal transport on M
				if e := relErr(res.Distance, *tc.EMDValue); e > 1e-9 {
					t.Errorf("alpha=0: distance %.17g, POT emd2 %.17g", res.Distance, *tc.EMDValue)
				}
				own, _, err := EMD(tc.P, tc.Q, dense(tc.M))
				if err != nil || relErr(res.Distance, own) > 1e-12 {
					t.Errorf("alpha=0: distance %.17g, EMD %.17g (%v)", res.Distance, own, err)
				}
			}
			if tc.GWValue != nil { // alpha = 1 is Gromov–Wasserstein, whatever M is
				zero := mat.NewDense(len(tc.P), len(tc.Q), nil)
				gw, err := FGW(dense(tc.C1), dense(tc.C2), zero, tc.P, tc.Q, cfg, pot)
				if err != nil {
					t.Fatal(err)
				}
				if e := relErr(gw.Distance, *tc.GWValue); e > 1e-9 || gw.Iterations != tc.GWIterations {
					t.Errorf("alpha=1: GW %.17g in %d iterations, POT gromov_wasserstein2 %.17g in %d",
						gw.Distance, gw.Iterations, *tc.GWValue, tc.GWIterations)
				}
			}
		})
	}
}

// TestEntropicFGWMatchesPOT09: the entropic solver reproduces POT ≥ 0.9's
// entropic_fused_gromov_wasserstein (PGD, no warm start) as replayed by the fixture
// script on POT 0.8.2's Sinkhorn.
func TestEntropicFGWMatchesPOT09(t *testing.T) {
	n := 0
	for _, tc := range loadPOT(t) {
		if tc.EntropicValue == nil {
			continue
		}
		n++
		t.Run(tc.Name, func(t *testing.T) {
			cfg := DefaultFGWConfig(MethodEntropic)
			cfg.Alpha = tc.Alpha
			cfg.Epsilon = tc.Epsilon
			res, err := FGW(dense(tc.C1), dense(tc.C2), dense(tc.M), tc.P, tc.Q, cfg, WithPlan())
			if err != nil {
				t.Fatal(err)
			}
			if e := relErr(res.Distance, *tc.EntropicValue); e > 1e-9 {
				t.Errorf("distance %.17g, POT 0.9 formulation %.17g (relative error %.3g)", res.Distance, *tc.EntropicValue, e)
			}
			if res.Iterations != tc.EntropicIterations {
				t.Errorf("iterations %d, POT %d", res.Iterations, tc.EntropicIterations)
			}
			// POT's value uses the target marginals p, q in its constant term; the plan
			// meets them only to Sinkhorn's 1e-9, hence the looser comparison.
			if direct := directFGWLoss(dense(tc.C1), dense(tc.C2), dense(tc.M), res.Plan, tc.Alpha); relErr(res.Distance, direct) > 1e-7 {
				t.Errorf("distance %.17g, loss of the plan %.17g", res.Distance, direct)
			}
		})
	}
	if n == 0 {
		t.Fatal("no entropic fixtures")
	}
}

// directFGWLoss evaluates the FGW objective by its definition, O(n²m²).
func directFGWLoss(c1, c2, m, t *mat.Dense, alpha float64) float64 {
	n, k := t.Dims()
	var lin, quad float64
	for i := 0; i < n; i++ {
		for j := 0; j < k; j++ {
			tij := t.At(i, j)
			lin += m.At(i, j) * tij
			if tij == 0 {
				continue
			}
			for a := 0; a < n; a++ {
				for b := 0; b < k; b++ {
					d := c1.At(i, a) - c2.At(j, b)
					quad += d * d * tij * t.At(a, b)
				}
			}
		}
	}
	return (1-alpha)*lin + alpha*quad
}

func randomGraph(r *rand.Rand, n, dim int) (c, feat *mat.Dense) {
	pts := make([][2]float64, n)
	for i := range pts {
		pts[i] = [2]float64{r.Float64(), r.Float64()}
	}
	c = mat.NewDense(n, n, nil)
	for i := range pts {
		for j := range pts {
			c.Set(i, j, math.Hypot(pts[i][0]-pts[j][0], pts[i][1]-pts[j][1]))
		}
	}
	feat = mat.NewDense(n, dim, nil)
	for i := 0; i < n; i++ {
		for d := 0; d < dim; d++ {
			feat.Set(i, d, r.Float64())
		}
	}
	return c, feat
}

func uniform(n int) []float64 {
	w := make([]float64, n)
	for i := range w {
		w[i] = 1 / float64(n)
	}
	return w
}

// TestFGWAsymmetric: with directed structures the solver still descends on the true
// objective: the reported distance is the plan's loss and no worse than the start.
func TestFGWAsymmetric(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	n, k := 9, 7
	c1 := mat.NewDense(n, n, nil)
	c2 := mat.NewDense(k, k, nil)
	for i := 0; i < n; i++ {
		for j := 0; j < n; j++ {
			c1.Set(i, j, r.Float64())
		}
	}
	for i := 0; i < k; i++ {
		for j := 0; j < k; j++ {
			c2.Set(i, j, r.Float64())
		}
	}
	m := mat.NewDense(n, k, nil)
	for i := 0; i < n; i++ {
		for j := 0; j < k; j++ {
			m.Set(i, j, r.Float64())
		}
	}
	p, q := uniform(n), uniform(k)
	for _, method := range []Method{MethodCG, MethodEntropic} {
		cfg := DefaultFGWConfig(method)
		cfg.Epsilon = 0.05
		res, err := FGW(c1, c2, m, p, q, cfg, WithPlan())
		if err != nil {
			t.Fatal(err)
		}
		direct := directFGWLoss(c1, c2, m, res.Plan, cfg.Alpha)
		if relErr(res.Distance, direct) > 1e-7 {
			t.Fatalf("%s: distance %.17g, loss of the plan %.17g", method, res.Distance, direct)
		}
		start := mat.NewDense(n, k, nil)
		for i := 0; i < n; i++ {
			for j := 0; j < k; j++ {
				start.Set(i, j, p[i]*q[j])
			}
		}
		if s := directFGWLoss(c1, c2, m, start, cfg.Alpha); method == MethodCG && res.Distance > s {
			t.Fatalf("cg ended at %v, above the starting loss %v", res.Distance, s)
		}
	}
}

// TestFGWNotConverged: hitting MaxIter is reported, not hidden.
func TestFGWNotConverged(t *testing.T) {
	r := rand.New(rand.NewPCG(13, 14))
	c1, f1 := randomGraph(r, 30, 4)
	c2, f2 := randomGraph(r, 30, 4)
	m, err := FeatureCost(f1, f2)
	if err != nil {
		t.Fatal(err)
	}
	cfg := DefaultFGWConfig(MethodCG)
	cfg.MaxIter = 1
	res, err := FGW(c1, c2, m, uniform(30), uniform(30), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if res.Converged || res.Iterations != 1 {
		t.Fatalf("got converged=%v after %d iterations, want not converged after 1", res.Converged, res.Iterations)
	}
	cfg = DefaultFGWConfig(MethodEntropic)
	cfg.MaxIter = 2
	res, err = FGW(c1, c2, m, uniform(30), uniform(30), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if res.Converged || res.Iterations != 2 {
		t.Fatalf("entropic: converged=%v after %d iterations, want not converged after 2", res.Converged, res.Iterations)
	}
}

// TestFGWStopsWithItsContext: a solver given a context stops with its error once it is
// done, before or during the iterations (a deadline stops a run of a billion iterations
// towards a tolerance it never reaches, which would otherwise run for hours).
func TestFGWStopsWithItsContext(t *testing.T) {
	r := rand.New(rand.NewPCG(17, 18))
	c1, f1 := randomGraph(r, 40, 3)
	c2, f2 := randomGraph(r, 40, 3)
	m, err := FeatureCost(f1, f2)
	if err != nil {
		t.Fatal(err)
	}
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	for _, method := range []Method{MethodCG, MethodEntropic} {
		cfg := DefaultFGWConfig(method)
		if _, err := FGW(c1, c2, m, uniform(40), uniform(40), cfg, WithContext(cancelled)); !errors.Is(err, context.Canceled) {
			t.Errorf("%s, cancelled: %v", method, err)
		}
	}
	// The entropic solver, asked for a tolerance it never reaches, stops at its deadline.
	cfg := DefaultFGWConfig(MethodEntropic)
	cfg.Tol, cfg.MaxIter = 1e-300, 1e9
	ctx, stop := context.WithTimeout(context.Background(), 50*time.Millisecond)
	_, err = FGW(c1, c2, m, uniform(40), uniform(40), cfg, WithContext(ctx))
	stop()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("entropic, past its deadline: %v", err)
	}
	// Without a context it runs as before.
	if _, err := FGW(c1, c2, m, uniform(40), uniform(40), DefaultFGWConfig(MethodCG)); err != nil {
		t.Fatal(err)
	}
}

// pollCtx is a context that is done from its (left+1)th Err call on: it stops a solver
// at a chosen check, whatever the machine's speed.
type pollCtx struct {
	context.Context
	left int
	done chan struct{}
}

func newPollCtx(left int) *pollCtx {
	return &pollCtx{Context: context.Background(), left: left, done: make(chan struct{})}
}

func (c *pollCtx) Done() <-chan struct{} { return c.done }

func (c *pollCtx) Err() error {
	if c.left > 0 {
		c.left--
		return nil
	}
	select {
	case <-c.done:
	default:
		close(c.done)
	}
	return context.Canceled
}

// TestFGWStopsInsideSinkhorn: a context done during a Sinkhorn projection stops it at
// its next pass, not after the up to 1000 passes of the projection (at n = 1600 and a
// small epsilon, a minute past rd.timeout).
func TestFGWStopsInsideSinkhorn(t *testing.T) {
	r := rand.New(rand.NewPCG(23, 24))
	c1, f1 := randomGraph(r, 30, 3)
	c2, f2 := randomGraph(r, 30, 3)
	m, err := FeatureCost(f1, f2)
	if err != nil {
		t.Fatal(err)
	}
	cfg := DefaultFGWConfig(MethodEntropic)
	cfg.Epsilon = 1e-4 // far below the costs: the log domain, slow to reach its marginals
	// One projection, run to its end.
	cfg.MaxIter = 1
	ws := NewWorkspace()
	if _, err := FGW(c1, c2, m, uniform(30), uniform(30), cfg, WithWorkspace(ws)); err != nil {
		t.Fatal(err)
	}
	full := ws.sinkhornPasses
	if full < 10 {
		t.Fatalf("a full projection took %d passes: the problem is too easy to tell", full)
	}
	// Done at the second check, the first pass of the first projection.
	cfg.MaxIter = 1000
	_, err = FGW(c1, c2, m, uniform(30), uniform(30), cfg, WithWorkspace(ws), WithContext(newPollCtx(2)))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled: %v", err)
	}
	if ws.sinkhornPasses >= full {
		t.Errorf("cancelled during the first projection, it ran %d passes; a whole projection is %d", ws.sinkhornPasses, full)
	}
}

// TestFGWInitialPlanAndWorkspace: starting from p·qᵀ given explicitly gives the same
// result as the default start, and a reused workspace gives the same results again.
func TestFGWInitialPlanAndWorkspace(t *testing.T) {
	r := rand.New(rand.NewPCG(15, 16))
	c1, f1 := randomGraph(r, 12, 3)
	c2, f2 := randomGraph(r, 10, 3)
	m, _ := FeatureCost(f1, f2)
	p, q := uniform(12), randSimplex(r, 10, false)
	cfg := DefaultFGWConfig(MethodCG)
	base, err := FGW(c1, c2, m, p, q, cfg)
	if err != nil {
		t.Fatal(err)
	}
	g0 := mat.NewDense(12, 10, nil)
	for i := range p {
		for j := range q {
			g0.Set(i, j, p[i]*q[j])
		}
	}
	got, err := FGW(c1, c2, m, p, q, cfg, WithInitialPlan(g0))
	if err != nil {
		t.Fatal(err)
	}
	if relErr(got.Distance, base.Distance) > 1e-12 || got.Iterations != base.Iterations {
		t.Fatalf("explicit start: %v/%d, default start %v/%d", got.Distance, got.Iterations, base.Distance, base.Iterations)
	}
	ws := NewWorkspace()
	for round := 0; round < 3; round++ {
		got, err := FGW(c1, c2, m, p, q, cfg, WithWorkspace(ws))
		if err != nil {
			t.Fatal(err)
		}
		if got.Distance != base.Distance || got.Iterations != base.Iterations {
			t.Fatalf("round %d with a reused workspace: %v/%d, want %v/%d", round, got.Distance, got.Iterations, base.Distance, base.Iterations)
		}
	}
	bad := mat.NewDense(12, 10, nil)
	if _, err := FGW(c1, c2, m, p, q, cfg, WithInitialPlan(bad)); err == nil || !strings.Contains(err.Error(), "g0") {
		t.Fatalf("a start plan with wrong marginals gave %v", err)
	}
}

func TestFGWResultJSON(t *testing.T) {
	res := FGWResult{Distance: 0.5, Iterations: 3, Converged: true, Method: MethodCG}
	b, err := json.Marshal(res)
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != `{"distance":0.5,"iterations":3,"converged":true,"method":"cg"}` {
		t.Fatalf("got %s", b)
	}
	res.Plan = mat.NewDense(1, 2, []float64{0.25, 0.75})
	b, _ = json.Marshal(res)
	if !strings.Contains(string(b), `"plan":[[0.25,0.75]]`) {
		t.Fatalf("got %s", b)
	}
}

func TestFGWBadInput(t *testing.T) {
	sq := func(n int) *mat.Dense { return mat.NewDense(n, n, nil) }
	ok2 := mat.NewDense(2, 2, []float64{0, 1, 1, 0})
	m22 := mat.NewDense(2, 2, []float64{1, 2, 3, 4})
	half := []float64{0.5, 0.5}
	cg := DefaultFGWConfig(MethodCG)
	ent := DefaultFGWConfig(MethodEntropic)
	withAlpha := func(a float64) FGWConfig { c := cg; c.Alpha = a; return c }
	withEps := func(e float64) FGWConfig { c := ent; c.Epsilon = e; return c }
	cases := []struct {
		name       string
		c1, c2, m  *mat.Dense
		p, q       []float64
		cfg        FGWConfig
		field, msg string
	}{
		{"c1 not square", mat.NewDense(2, 3, nil), ok2, m22, half, half, cg, "c1", "not square"},
		{"c2 missing", ok2, nil, m22, half, half, cg, "c2", "missing"},
		{"m mismatched", ok2, sq(3), m22, half, []float64{0.2, 0.3, 0.5}, cg, "m", "shape 2×2, want 2×3"},
		{"p length", ok2, ok2, m22, []float64{1}, half, cg, "p", "has 1 weights, want 2"},
		{"negative c1", mat.NewDense(2, 2, []float64{0, -1, -1, 0}), ok2, m22, half, half, cg, "c1", "non-negative"},
		{"nan m", ok2, ok2, mat.NewDense(2, 2, []float64{1, math.NaN(), 0, 0}), half, half, cg, "m", "finite"},
		{"inf c2", ok2, mat.NewDense(2, 2, []float64{0, math.Inf(1), 1, 0}), m22, half, half, cg, "c2", "finite"},
		{"p sum", ok2, ok2, m22, []float64{0.5, 0.6}, half, cg, "p", "sum to 1.1"},
		{"q negative", ok2, ok2, m22, half, []float64{1.5, -0.5}, cg, "q", "non-negative"},
		{"q sum off by 1e-8", ok2, ok2, m22, half, []float64{0.5, 0.5 + 1e-8}, cg, "q", "within 1e-09"},
		{"alpha above 1", ok2, ok2, m22, half, half, withAlpha(1.5), "alpha", "outside [0, 1]"},
		{"alpha negative", ok2, ok2, m22, half, half, withAlpha(-0.1), "alpha", "outside"},
		{"epsilon zero", ok2, ok2, m22, half, half, withEps(0), "epsilon", "epsilon > 0"},
		{"epsilon negative", ok2, ok2, m22, half, half, withEps(-1), "epsilon", "epsilon > 0"},
		{"method", ok2, ok2, m22, half, half, FGWConfig{Method: "newton", Alpha: 0.5}, "method", "unknown method"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := FGW(tc.c1, tc.c2, tc.m, tc.p, tc.q, tc.cfg)
			var ie *InputError
			if !errors.As(err, &ie) || ie.Field != tc.field || !strings.Contains(ie.Msg, tc.msg) {
				t.Fatalf("got %v, want an InputError on %q mentioning %q", err, tc.field, tc.msg)
			}
		})
	}
	// Weights within 1e-9 of summing to 1 are accepted.
	if _, err := FGW(ok2, ok2, m22, half, []float64{0.5, 0.5 + 1e-10}, cg); err != nil {
		t.Fatalf("weights 1e-10 off were refused: %v", err)
	}
}

func TestFeatureCost(t *testing.T) {
	a := mat.NewDense(2, 2, []float64{0, 0, 1, 1})
	b := mat.NewDense(1, 2, []float64{1, 0})
	m, err := FeatureCost(a, b)
	if err != nil {
		t.Fatal(err)
	}
	if m.At(0, 0) != 1 || m.At(1, 0) != 1 {
		t.Fatalf("got %v", mat.Formatted(m))
	}
	if _, err := FeatureCost(a, mat.NewDense(1, 3, nil)); err == nil || !strings.Contains(err.Error(), "features_b") {
		t.Fatalf("dimension mismatch gave %v", err)
	}
	if _, err := FeatureCost(mat.NewDense(1, 1, []float64{math.NaN()}), mat.NewDense(1, 1, nil)); err == nil {
		t.Fatal("NaN feature accepted")
	}
}

// TestHugeEntriesRefused: numbers whose squares and sums would overflow are refused by
// name rather than turned into a wrong distance or a NaN blamed on another field.
func TestHugeEntriesRefused(t *testing.T) {
	small := mat.NewDense(2, 2, []float64{0, 1, 1, 0})
	huge := mat.NewDense(2, 2, []float64{0, 1e308, 1e308, 0})
	for _, c := range []struct {
		field      string
		c1, c2, m  *mat.Dense
		fa, fb     *mat.Dense
		useFeature bool
	}{
		{field: "c1", c1: huge, c2: small, m: small},
		{field: "m", c1: small, c2: small, m: huge},
		{field: "features_a", c1: small, c2: small, fa: mat.NewDense(2, 1, []float64{-1e200, 0}), fb: mat.NewDense(2, 1, []float64{0, 1}), useFeature: true},
	} {
		var err error
		if c.useFeature {
			_, err = FeatureCost(c.fa, c.fb)
		} else {
			_, err = FGW(c.c1, c.c2, c.m, uniform(2), uniform(2), DefaultFGWConfig(MethodCG))
		}
		var ie *InputError
		if !errors.As(err, &ie) || ie.Field != c.field || !strings.Contains(err.Error(), "overflow") {
			t.Errorf("%s: %v", c.field, err)
		}
	}
	if _, err := FindKnee([][2]float64{{-1e308, 1}, {0, 0.5}, {1, 0.2}, {1e308, 0}}, KneeOptions{}); err == nil || !strings.Contains(err.Error(), "overflows") {
		t.Errorf("knee of huge points: %v", err)
	}
}

// TestFGWIdenticalNotNegative: the FGW loss is a sum of non-negative terms; between a
// graph and itself the solver's cancellation (⟨constC, G⟩ − 2⟨C1·G·C2ᵀ, G⟩) leaves
// −1.8e-15, which must not be reported as a negative distance.
func TestFGWIdenticalNotNegative(t *testing.T) {
	// Two traces' provenance chains (3 and 2 entries), as the API builds a session's
	// graph: hop distance along a chain, 3 between chains; one-hot entry kinds.
	c := mat.NewDense(5, 5, []float64{
		0, 1, 2, 3, 3,
		1, 0, 1, 3, 3,
		2, 1, 0, 3, 3,
		3, 3, 3, 0, 1,
		3, 3, 3, 1, 0,
	})
	f := mat.NewDense(5, 3, []float64{1, 0, 0, 0, 1, 0, 0, 0, 1, 1, 0, 0, 0, 1, 0})
	m, err := FeatureCost(f, f)
	if err != nil {
		t.Fatal(err)
	}
	for _, method := range []Method{MethodCG, MethodEntropic} {
		for _, alpha := range []float64{0.1, 0.5, 0.7, 1} {
			if method == MethodEntropic && alpha == 1 {
				// Pure entropic GW from p·qᵀ stays in a symmetric local minimum (0.40)
				// here, as POT's does: not a rounding matter.
				continue
			}
			cfg := DefaultFGWConfig(method)
			cfg.Alpha = alpha
			res, err := FGW(c, c, m, uniform(5), uniform(5), cfg)
			if err != nil {
				t.Fatal(err)
			}
			if res.Distance < 0 || res.Distance > 1e-12 {
				t.Errorf("%s, alpha %v: distance %v, want 0", method, alpha, res.Distance)
			}
		}
	}
}

// TestFeatureCostOverflowNamed: features within ±1e100 whose squared distances exceed
// MaxMagnitude are refused on the features, not later on m, which the caller never gave.
func TestFeatureCostOverflowNamed(t *testing.T) {
	_, err := FeatureCost(mat.NewDense(2, 1, []float64{1e60, 0}), mat.NewDense(2, 1, []float64{-1e60, 0}))
	var ie *InputError
	if !errors.As(err, &ie) || !strings.HasPrefix(ie.Field, "features_") || !strings.Contains(err.Error(), "overflow") {
		t.Fatalf("got %v, want an InputError on the features", err)
	}
}

// exactFGWLoss evaluates the FGW objective of plan t by its definition in 512-bit
// arithmetic: every product and sum of float64 inputs here is exact at that precision,
// so the result is the plan's true loss rounded once.
func exactFGWLoss(c1, c2, m, t *mat.Dense, alpha float64) float64 {
	const prec = 512
	nf := func(v float64) *big.Float { return new(big.Float).SetPrec(prec).SetFloat64(v) }
	n, k := t.Dims()
	lin, quad := nf(0), nf(0)
	for i := 0; i < n; i++ {
		for j := 0; j < k; j++ {
			tij := nf(t.At(i, j))
			lin.Add(lin, nf(0).Mul(nf(m.At(i, j)), tij))
			for a := 0; a < n; a++ {
				for b := 0; b < k; b++ {
					d := nf(0).Sub(nf(c1.At(i, a)), nf(c2.At(j, b)))
					d.Mul(d, d).Mul(d, tij).Mul(d, nf(t.At(a, b)))
					quad.Add(quad, d)
				}
			}
		}
	}
	lin.Mul(lin, nf(0).Sub(nf(1), nf(alpha)))
	quad.Mul(quad, nf(alpha))
	v, _ := lin.Add(lin, quad).Float64()
	return v
}

// permutationPlans calls f with the plan of every permutation of n nodes (mass 1/n).
func permutationPlans(n int, f func(*mat.Dense)) {
	perm := make([]int, n)
	for i := range perm {
		perm[i] = i
	}
	var rec func(k int)
	rec = func(k int) {
		if k == n {
			t := mat.NewDense(n, n, nil)
			for i, j := range perm {
				t.Set(i, j, 1/float64(n))
			}
			f(t)
			return
		}
		for i := k; i < n; i++ {
			perm[k], perm[i] = perm[i], perm[k]
			rec(k + 1)
			perm[k], perm[i] = perm[i], perm[k]
		}
	}
	rec(0)
}

// TestFGWLargeStructureScale: a 5-cycle against itself, its hop distances scaled by s,
// with a feature cost that only the identity match minimises (the cycle's ten
// automorphisms tie on structure). The feature term decides the plan, so it must not be
// lost beside the structure term, of the order of s²: up to the scale where float64 can
// still hold it, conditional gradient finds the identity and reports its loss, 0.5, as
// the exactly evaluated loss of the plan it returns and no more than the best
// permutation's (exhaustive, exact arithmetic); beyond, both solvers refuse the problem
// with a PrecisionError instead of a plan that ignores M reported as converged.
func TestFGWLargeStructureScale(t *testing.T) {
	const n = 5
	hops := func(s float64) *mat.Dense {
		c := mat.NewDense(n, n, nil)
		for i := 0; i < n; i++ {
			for j := 0; j < n; j++ {
				d := (i - j + n) % n
				c.Set(i, j, s*float64(min(d, n-d)))
			}
		}
		return c
	}
	m := mat.NewDense(n, n, nil)
	for i := 0; i < n; i++ {
		for j := 0; j < n; j++ {
			m.Set(i, j, 1+math.Abs(float64(i-j)))
		}
	}
	for _, s := range []float64{1, 1e3, 1e6} {
		c := hops(s)
		cfg := DefaultFGWConfig(MethodCG)
		res, err := FGW(c, c, m, uniform(n), uniform(n), cfg, WithPlan())
		if err != nil {
			t.Fatalf("scale %g: %v", s, err)
		}
		exact := exactFGWLoss(c, c, m, res.Plan, cfg.Alpha)
		best := math.Inf(1)
		permutationPlans(n, func(p *mat.Dense) { best = math.Min(best, exactFGWLoss(c, c, m, p, cfg.Alpha)) })
		if relErr(res.Distance, exact) > 1e-12 {
			t.Errorf("scale %g: distance %.17g, exact loss of the plan %.17g", s, res.Distance, exact)
		}
		if best != 0.5 || res.Distance > best*(1+1e-12) || !res.Converged {
			t.Errorf("scale %g: distance %.17g (converged %v), best permutation %.17g, want 0.5\n%v", s, res.Distance, res.Converged, best, mat.Formatted(res.Plan))
		}
	}
	// The audit's case: two nodes, entries 1e8 and beyond against a feature cost of 1.
	for _, s := range []float64{1e8, 1e16, 1e20} {
		c := mat.NewDense(2, 2, []float64{0, s, s, 0})
		for _, method := range []Method{MethodCG, MethodEntropic} {
			res, err := FGW(c, c, mat.NewDense(2, 2, []float64{0, 1, 1, 0}), uniform(2), uniform(2), DefaultFGWConfig(method))
			var pe *PrecisionError
			if !errors.As(err, &pe) || !strings.Contains(err.Error(), "ratio") || pe.Ratio >= pe.MinRatio {
				t.Errorf("%s, entries %g: got %+v, %v; want a PrecisionError", method, s, res, err)
			}
		}
	}
	// Structure or features alone, or a constant M, are never refused.
	c := mat.NewDense(2, 2, []float64{0, 1e20, 1e20, 0})
	for _, tc := range []struct {
		alpha float64
		m     *mat.Dense
	}{
		{1, mat.NewDense(2, 2, []float64{0, 1, 1, 0})},
		{0, mat.NewDense(2, 2, []float64{0, 1, 1, 0})},
		{0.5, mat.NewDense(2, 2, []float64{7, 7, 7, 7})},
	} {
		cfg := DefaultFGWConfig(MethodCG)
		cfg.Alpha = tc.alpha
		if _, err := FGW(c, c, tc.m, uniform(2), uniform(2), cfg); err != nil {
			t.Errorf("alpha %v, m %v: %v", tc.alpha, tc.m.RawMatrix().Data, err)
		}
	}
}

// TestFGWIsomorphicGraphsAtZero: cg WithStarts puts a graph at distance ~0 from itself and from
// relabelled copies of itself, with and without features, for graphs with symmetries
// (path, cycle) where its start p·qᵀ is a tie: from that start alone a 4-node path
// graph came out at 0.25, its middle nodes swapped. The entropic solver gets a graph
// against itself in the same order to its blur at epsilon.
func TestFGWIsomorphicGraphsAtZero(t *testing.T) {
	path := func(n int) *mat.Dense {
		c := mat.NewDense(n, n, nil)
		for i := 0; i < n; i++ {
			for j := 0; j < n; j++ {
				c.Set(i, j, math.Abs(float64(i-j)))
			}
		}
		return c
	}
	cycle := func(n int) *mat.Dense {
		c := mat.NewDense(n, n, nil)
		for i := 0; i < n; i++ {
			for j := 0; j < n; j++ {
				d := (i - j + n) % n
				c.Set(i, j, float64(min(d, n-d)))
			}
		}
		return c
	}
	r := rand.New(rand.NewPCG(71, 72))
	for _, g := range []struct {
		name string
		c    *mat.Dense
	}{{"path4", path(4)}, {"path7", path(7)}, {"path12", path(12)}, {"cycle5", cycle(5)}, {"cycle8", cycle(8)}, {"cycle13", cycle(13)}} {
		n, _ := g.c.Dims()
		feat := mat.NewDense(n, 2, nil)
		for i := 0; i < n; i++ {
			feat.Set(i, 0, float64(i%3))
			feat.Set(i, 1, float64(i%2))
		}
		perm := r.Perm(n)
		if g.name == "path4" {
			perm = []int{0, 1, 2, 3} // the audit's case, in its own order
		}
		pc := mat.NewDense(n, n, nil)
		pf := mat.NewDense(n, 2, nil)
		for i := 0; i < n; i++ {
			for j := 0; j < n; j++ {
				pc.Set(perm[i], perm[j], g.c.At(i, j))
			}
			pf.SetRow(perm[i], feat.RawRowView(i))
		}
		for _, withFeatures := range []bool{false, true} {
			var m *mat.Dense
			if withFeatures {
				var err error
				if m, err = FeatureCost(feat, pf); err != nil {
					t.Fatal(err)
				}
			} else {
				m = mat.NewDense(n, n, nil)
			}
			for _, alpha := range []float64{0.5, 1} {
				for _, c2 := range []*mat.Dense{g.c, pc} {
					m := m
					if c2 == g.c && withFeatures {
						m, _ = FeatureCost(feat, feat)
					}
					cfg := DefaultFGWConfig(MethodCG)
					cfg.Alpha = alpha
					res, err := FGW(g.c, c2, m, uniform(n), uniform(n), cfg, WithPlan(), WithStarts())
					if err != nil {
						t.Fatal(err)
					}
					if res.Distance > 1e-12 || !res.Converged {
						t.Errorf("%s (relabelled %v, features %v, alpha %v): distance %v converged %v, want 0",
							g.name, c2 != g.c, withFeatures, alpha, res.Distance, res.Converged)
					}
				}
			}
		}
	}
	// The entropic solver, a graph against itself in its own order: the two-node graph
	// came out at 0.25 (the product plan, a fixed point of its iteration), now at the
	// loss of a plan blurred by epsilon around the identity.
	for _, c := range []*mat.Dense{path(2), path(4), cycle(6)} {
		n, _ := c.Dims()
		res, err := FGW(c, c, mat.NewDense(n, n, nil), uniform(n), uniform(n), DefaultFGWConfig(MethodEntropic), WithStarts())
		if err != nil {
			t.Fatal(err)
		}
		if res.Distance > 1e-6 {
			t.Errorf("entropic, %d nodes against itself: distance %v, want ~0", n, res.Distance)
		}
	}
}
