package rd

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"runtime"
	"testing"

	"gonum.org/v1/gonum/mat"
)

// TestPairwiseFGW: every pair's distance equals a direct FGW call, whatever the number
// of workers, and the matrix is symmetric with a zero diagonal.
func TestPairwiseFGW(t *testing.T) {
	r := rand.New(rand.NewPCG(21, 22))
	var graphs []Graph
	for g := 0; g < 6; g++ {
		n := 5 + r.IntN(8)
		c, f := randomGraph(r, n, 3)
		gr := Graph{C: c, Features: f}
		if g%2 == 1 {
			gr.Weights = randSimplex(r, n, false)
		}
		graphs = append(graphs, gr)
	}
	cfg := DefaultFGWConfig(MethodCG)
	for _, workers := range []int{1, 3, 0} {
		res, err := PairwiseFGW(graphs, cfg, workers)
		if err != nil {
			t.Fatal(err)
		}
		if len(res.NotConverged) != 0 {
			t.Fatalf("not converged: %v", res.NotConverged)
		}
		for i := range graphs {
			if res.Distances.At(i, i) != 0 {
				t.Fatalf("diagonal %d = %v", i, res.Distances.At(i, i))
			}
			for j := i + 1; j < len(graphs); j++ {
				a, b := graphs[i], graphs[j]
				m, _ := FeatureCost(a.Features, b.Features)
				pa, pb := a.Weights, b.Weights
				if pa == nil {
					pa = uniform(a.C.RawMatrix().Rows)
				}
				if pb == nil {
					pb = uniform(b.C.RawMatrix().Rows)
				}
				want, err := FGW(a.C, b.C, m, pa, pb, cfg)
				if err != nil {
					t.Fatal(err)
				}
				if got := res.Distances.At(i, j); got != want.Distance || res.Distances.At(j, i) != got {
					t.Fatalf("workers=%d pair (%d,%d): %v, direct FGW %v", workers, i, j, got, want.Distance)
				}
			}
		}
	}
}

func TestPairwiseFGWBadInput(t *testing.T) {
	c := mat.NewDense(2, 2, []float64{0, 1, 1, 0})
	cfg := DefaultFGWConfig(MethodCG)
	cases := []struct {
		name   string
		graphs []Graph
		field  string
	}{
		{"one graph", []Graph{{C: c}}, "graphs"},
		{"missing c", []Graph{{C: c}, {}}, "graphs[1].c"},
		{"weights", []Graph{{C: c, Weights: []float64{1}}, {C: c}}, "graphs[0].weights"},
		{"features rows", []Graph{{C: c, Features: mat.NewDense(3, 1, nil)}, {C: c}}, "graphs[0].features"},
	}
	for _, tc := range cases {
		_, err := PairwiseFGW(tc.graphs, cfg, 2)
		var ie *InputError
		if !errors.As(err, &ie) || ie.Field != tc.field {
			t.Errorf("%s: got %v, want an InputError on %q", tc.name, err, tc.field)
		}
	}
	// Feature dimensions that differ between two graphs fail the pair, naming it.
	gs := []Graph{{C: c, Features: mat.NewDense(2, 1, nil)}, {C: c, Features: mat.NewDense(2, 2, nil)}}
	if _, err := PairwiseFGW(gs, cfg, 2); err == nil {
		t.Fatal("mismatched feature dimensions accepted")
	}
}

// TestFGWMemory: one conditional-gradient solve allocates fewer than ten n×n float64
// matrices in all, and a solve in a reused workspace allocates a small constant
// number of objects, independent of n.
func TestFGWMemory(t *testing.T) {
	r := rand.New(rand.NewPCG(31, 32))
	n := 120
	c1, f1 := randomGraph(r, n, 8)
	c2, f2 := randomGraph(r, n, 8)
	m, _ := FeatureCost(f1, f2)
	p := uniform(n)
	cfg := DefaultFGWConfig(MethodCG)
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	res, err := FGW(c1, c2, m, p, p, cfg)
	runtime.ReadMemStats(&after)
	if err != nil {
		t.Fatal(err)
	}
	matrices := float64(after.TotalAlloc-before.TotalAlloc) / float64(8*n*n)
	t.Logf("n=%d: %d iterations, allocated %.2f n×n matrices", n, res.Iterations, matrices)
	if matrices > 10 {
		t.Fatalf("allocated %.2f n×n matrices, want ≤ 10", matrices)
	}
	ws := NewWorkspace()
	if _, err := FGW(c1, c2, m, p, p, cfg, WithWorkspace(ws)); err != nil {
		t.Fatal(err)
	}
	allocs := testing.AllocsPerRun(3, func() {
		if _, err := FGW(c1, c2, m, p, p, cfg, WithWorkspace(ws)); err != nil {
			t.Fatal(err)
		}
	})
	t.Logf("reused workspace: %.0f allocations per solve", allocs)
	if allocs > 20 {
		t.Fatalf("%.0f allocations per solve in a reused workspace, want a small constant", allocs)
	}
}

// TestSinkhornLogDomain: the log-domain iteration gives the scaling iteration's plan,
// and handles costs where exp(−C/ε) underflows to zero.
func TestSinkhornLogDomain(t *testing.T) {
	r := rand.New(rand.NewPCG(41, 42))
	n, k := 7, 9
	p, q := randSimplex(r, n, false), randSimplex(r, k, false)
	c := randCost(r, n, k, false)
	ws := NewWorkspace()
	ws.g = grow(ws.g, n*k)
	ws.kcur = grow(ws.kcur, n*k)
	bg := context.Background()
	ok, finite, err := ws.sinkhornScaling(bg, p, q, c, 0, 0.05, n, k)
	if !ok || !finite || err != nil {
		t.Fatalf("scaling: ok=%v finite=%v err=%v", ok, finite, err)
	}
	scaling := append([]float64(nil), ws.g...)
	if ok, err := ws.sinkhornLog(bg, p, q, c, 0, 0.05, n, k); !ok || err != nil {
		t.Fatal("log domain did not converge")
	}
	for i := range scaling {
		if math.Abs(scaling[i]-ws.g[i]) > 1e-12 {
			t.Fatalf("entry %d: scaling %v, log %v", i, scaling[i], ws.g[i])
		}
	}
	// Spread/ε ≈ 500: exp(−C/ε) falls below 1e-200 for many cells, the log domain is used
	// and the plan still has the right marginals.
	big := make([]float64, len(c))
	for i := range c {
		big[i] = 5 * c[i]
	}
	if ok, err := ws.sinkhorn(&problem{n: n, m: k, p: p, q: q, ctx: bg}, big, 0.01); !ok || err != nil {
		t.Fatal("large-cost Sinkhorn did not converge")
	}
	rows := make([]float64, n)
	cols := make([]float64, k)
	for i := 0; i < n; i++ {
		for j := 0; j < k; j++ {
			v := ws.g[i*k+j]
			if math.IsNaN(v) {
				t.Fatal("NaN in plan")
			}
			rows[i] += v
			cols[j] += v
		}
	}
	for i := range rows {
		if math.Abs(rows[i]-p[i]) > 1e-9 {
			t.Fatalf("row %d: %v, want %v", i, rows[i], p[i])
		}
	}
	for j := range cols {
		if math.Abs(cols[j]-q[j]) > 1e-9 {
			t.Fatalf("column %d: %v, want %v", j, cols[j], q[j])
		}
	}
}
