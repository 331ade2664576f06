package rd

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"gonum.org/v1/gonum/mat"
	"gonum.org/v1/gonum/optimize/convex/lp"
)

// bruteForceOT enumerates every basis of the transportation polytope (every choice of
// n+m−1 cells whose flows the marginal equations determine uniquely and non-negatively)
// and returns the cheapest vertex's cost.
func bruteForceOT(t *testing.T, p, q []float64, cost []float64) float64 {
	t.Helper()
	n, m := len(p), len(q)
	k := n + m - 1
	best := math.Inf(1)
	cells := make([]int, k)
	var rec func(start, depth int)
	rec = func(start, depth int) {
		if depth == k {
			a := mat.NewDense(k, k, nil)
			b := mat.NewVecDense(k, nil)
			for c, cell := range cells {
				i, j := cell/m, cell%m
				a.Set(i, c, 1)
				if j < m-1 { // the last column equation is implied by the others
					a.Set(n+j, c, 1)
				}
			}
			for i := 0; i < n; i++ {
				b.SetVec(i, p[i])
			}
			for j := 0; j < m-1; j++ {
				b.SetVec(n+j, q[j])
			}
			var x mat.VecDense
			if err := x.SolveVec(a, b); err != nil {
				return // singular: not a basis
			}
			if mat.Cond(a, 1) > 1e12 {
				return
			}
			var c float64
			for idx, cell := range cells {
				v := x.AtVec(idx)
				if v < -1e-12 {
					return
				}
				c += v * cost[cell]
			}
			best = math.Min(best, c)
			return
		}
		for cell := start; cell <= n*m-(k-depth); cell++ {
			cells[depth] = cell
			rec(cell+1, depth+1)
		}
	}
	rec(0, 0)
	return best
}

// lpOT solves the same problem with gonum's general-purpose simplex as an independent
// reference.
func lpOT(t *testing.T, p, q, cost []float64) float64 {
	t.Helper()
	n, m := len(p), len(q)
	rows := n + m - 1
	a := mat.NewDense(rows, n*m, nil)
	b := make([]float64, rows)
	for i := 0; i < n; i++ {
		for j := 0; j < m; j++ {
			a.Set(i, i*m+j, 1)
			if j < m-1 {
				a.Set(n+j, i*m+j, 1)
			}
		}
		b[i] = p[i]
	}
	for j := 0; j < m-1; j++ {
		b[n+j] = q[j]
	}
	opt, _, err := lp.Simplex(cost, a, b, 1e-10, nil)
	if err != nil {
		t.Fatalf("gonum lp.Simplex: %v", err)
	}
	return opt
}

func randSimplex(r *rand.Rand, n int, zeros bool) []float64 {
	w := make([]float64, n)
	var s float64
	for i := range w {
		w[i] = r.Float64() + 0.05
		if zeros && r.IntN(4) == 0 {
			w[i] = 0
		}
		s += w[i]
	}
	if s == 0 {
		w[0], s = 1, 1
	}
	for i := range w {
		w[i] /= s
	}
	return w
}

func randCost(r *rand.Rand, n, m int, negative bool) []float64 {
	c := make([]float64, n*m)
	for k := range c {
		c[k] = r.Float64()
		if negative {
			c[k] = 2*c[k] - 1
		}
	}
	return c
}

func planCost(plan []PlanEntry, cost []float64, m int) float64 {
	var c float64
	for _, e := range plan {
		c += e.Mass * cost[e.I*m+e.J]
	}
	return c
}

// checkPlan asserts that plan has the right marginals and is optimal by the dual
// certificate (u_i + v_j ≤ C_ij everywhere, equality on the support).
func checkPlan(t *testing.T, tr *Transport, p, q, cost []float64) {
	t.Helper()
	n, m := len(p), len(q)
	rows := make([]float64, n)
	cols := make([]float64, m)
	plan := tr.AppendPlan(nil)
	for _, e := range plan {
		if e.Mass < 0 {
			t.Fatalf("negative mass %v at (%d,%d)", e.Mass, e.I, e.J)
		}
		rows[e.I] += e.Mass
		cols[e.J] += e.Mass
	}
	for i := range rows {
		if math.Abs(rows[i]-p[i]) > 1e-12 {
			t.Fatalf("row %d sums to %v, want %v", i, rows[i], p[i])
		}
	}
	for j := range cols {
		if math.Abs(cols[j]-q[j]) > 1e-12 {
			t.Fatalf("column %d sums to %v, want %v", j, cols[j], q[j])
		}
	}
	u, v := tr.Duals()
	for i := 0; i < n; i++ {
		for j := 0; j < m; j++ {
			if u[i]+v[j] > cost[i*m+j]+1e-9 {
				t.Fatalf("dual infeasible at (%d,%d): %v + %v > %v", i, j, u[i], v[j], cost[i*m+j])
			}
		}
	}
	for _, e := range plan {
		if math.Abs(u[e.I]+v[e.J]-cost[e.I*m+e.J]) > 1e-9 {
			t.Fatalf("complementary slackness fails at (%d,%d)", e.I, e.J)
		}
	}
}

func TestTransportBruteForce(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	shapes := [][2]int{{1, 1}, {1, 4}, {3, 1}, {2, 2}, {2, 3}, {3, 3}, {3, 4}, {4, 3}, {4, 4}}
	for _, sh := range shapes {
		for trial := 0; trial < 4; trial++ {
			n, m := sh[0], sh[1]
			p := randSimplex(r, n, trial == 3)
			q := randSimplex(r, m, false)
			cost := randCost(r, n, m, trial == 2)
			if trial == 1 && n == m { // uniform weights: the degenerate assignment case
				for i := range p {
					p[i] = 1 / float64(n)
				}
				for j := range q {
					q[j] = 1 / float64(m)
				}
			}
			tr := NewTransport()
			if err := tr.Solve(p, q, cost); err != nil {
				t.Fatalf("%dx%d: %v", n, m, err)
			}
			got := planCost(tr.AppendPlan(nil), cost, m)
			want := bruteForceOT(t, p, q, cost)
			if math.Abs(got-want) > 1e-12 {
				t.Fatalf("%dx%d trial %d: cost %.17g, brute force %.17g", n, m, trial, got, want)
			}
			checkPlan(t, tr, p, q, cost)
		}
	}
}

func TestTransportMatchesGonumLP(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for trial := 0; trial < 20; trial++ {
		n, m := 2+r.IntN(9), 2+r.IntN(9)
		p := randSimplex(r, n, trial%5 == 0)
		q := randSimplex(r, m, false)
		cost := randCost(r, n, m, trial%3 == 0)
		if trial%4 == 0 { // integer costs: many ties
			for k := range cost {
				cost[k] = math.Floor(cost[k] * 4)
			}
		}
		tr := NewTransport()
		if err := tr.Solve(p, q, cost); err != nil {
			t.Fatal(err)
		}
		got := planCost(tr.AppendPlan(nil), cost, m)
		want := lpOT(t, p, q, cost)
		if math.Abs(got-want) > 1e-9 {
			t.Fatalf("trial %d (%dx%d): cost %.17g, gonum lp %.17g", trial, n, m, got, want)
		}
		checkPlan(t, tr, p, q, cost)
	}
}

// TestTransportWarmStart solves a chain of related problems with one solver (warm) and
// each with a fresh one (cold): the optimal costs agree and warm starts pivot less.
func TestTransportWarmStart(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	n, m := 40, 40
	p := randSimplex(r, n, false)
	q := make([]float64, m)
	for j := range q {
		q[j] = 1 / float64(m)
	}
	cost := randCost(r, n, m, false)
	warm := NewTransport()
	var warmPivots, coldPivots int
	for step := 0; step < 8; step++ {
		for k := range cost {
			cost[k] += 0.05 * (r.Float64() - 0.5)
		}
		if err := warm.Solve(p, q, cost); err != nil {
			t.Fatal(err)
		}
		cold := NewTransport()
		if err := cold.Solve(p, q, cost); err != nil {
			t.Fatal(err)
		}
		wc := planCost(warm.AppendPlan(nil), cost, m)
		cc := planCost(cold.AppendPlan(nil), cost, m)
		if math.Abs(wc-cc) > 1e-12 {
			t.Fatalf("step %d: warm cost %.17g, cold cost %.17g", step, wc, cc)
		}
		checkPlan(t, warm, p, q, cost)
		if step > 0 {
			warmPivots += warm.Pivots()
			coldPivots += cold.Pivots()
		}
	}
	if warmPivots >= coldPivots {
		t.Fatalf("warm starts took %d pivots, cold starts %d: warm start is not used", warmPivots, coldPivots)
	}
	// Changing the marginals falls back to a cold start and stays correct.
	p2 := randSimplex(r, n, false)
	if err := warm.Solve(p2, q, cost); err != nil {
		t.Fatal(err)
	}
	checkPlan(t, warm, p2, q, cost)
}

func TestTransportBadInput(t *testing.T) {
	cases := []struct {
		name    string
		p, q    []float64
		cost    []float64
		field   string
		wantMsg string
	}{
		{"empty", nil, []float64{1}, nil, "p", "at least one"},
		{"cost size", []float64{1}, []float64{1}, []float64{1, 2}, "m", "entries"},
		{"negative weight", []float64{1.5, -0.5}, []float64{1}, []float64{1, 1}, "p", "non-negative"},
		{"nan weight", []float64{math.NaN()}, []float64{1}, []float64{1}, "p", "finite"},
		{"unequal mass", []float64{1}, []float64{0.5}, []float64{1}, "q", "equal mass"},
		{"inf cost", []float64{1}, []float64{1}, []float64{math.Inf(1)}, "m", "finite"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := NewTransport().Solve(tc.p, tc.q, tc.cost)
			var ie *InputError
			if !errors.As(err, &ie) || ie.Field != tc.field || !strings.Contains(ie.Msg, tc.wantMsg) {
				t.Fatalf("got %v, want an InputError on %q mentioning %q", err, tc.field, tc.wantMsg)
			}
		})
	}
}

func TestTransportPivotLimit(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	tr := NewTransport()
	tr.MaxPivots = 1
	err := tr.Solve(randSimplex(r, 10, false), randSimplex(r, 10, false), randCost(r, 10, 10, false))
	if err == nil || !strings.Contains(err.Error(), "pivot limit") {
		t.Fatalf("got %v, want a pivot-limit error", err)
	}
}

func TestEMD(t *testing.T) {
	c := mat.NewDense(2, 2, []float64{0, 1, 1, 0})
	cost, plan, err := EMD([]float64{0.5, 0.5}, []float64{0.5, 0.5}, c)
	if err != nil {
		t.Fatal(err)
	}
	if cost != 0 || plan.At(0, 0) != 0.5 || plan.At(1, 1) != 0.5 || plan.At(0, 1) != 0 {
		t.Fatalf("cost %v plan %v", cost, mat.Formatted(plan))
	}
	if _, _, err := EMD([]float64{1}, []float64{0.5, 0.5}, c); err == nil {
		t.Fatal("shape mismatch accepted")
	}
}

// TestTransportStopsWithItsContext: a linear step stops within a few pivots of its
// context being done (cg's linear steps at n = 1600 take millions of pivots), and the
// transport can still solve afterwards.
func TestTransportStopsWithItsContext(t *testing.T) {
	r := rand.New(rand.NewPCG(61, 62))
	n := 80
	p, q := randSimplex(r, n, false), randSimplex(r, n, false)
	c := randCost(r, n, n, false)
	full := NewTransport()
	if err := full.Solve(p, q, c); err != nil {
		t.Fatal(err)
	}
	if full.Pivots() <= ctxCheckPivots {
		t.Fatalf("a full solve took %d pivots: too few to tell", full.Pivots())
	}
	tr := NewTransport()
	if err := tr.SolveContext(newPollCtx(0), p, q, c); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled: %v", err)
	}
	if tr.Pivots() >= full.Pivots() {
		t.Errorf("cancelled at once, it made %d pivots; a full solve makes %d", tr.Pivots(), full.Pivots())
	}
	if err := tr.SolveContext(context.Background(), p, q, c); err != nil {
		t.Fatal(err)
	}
	if got, want := planCost(tr.AppendPlan(nil), c, n), planCost(full.AppendPlan(nil), c, n); math.Abs(got-want) > 1e-12*math.Max(1, math.Abs(want)) {
		t.Errorf("after a cancelled solve: cost %v, want %v", got, want)
	}
}
