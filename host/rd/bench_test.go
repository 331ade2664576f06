package rd

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// BenchmarkFGW times conditional-gradient FGW on the bench-rd instances' shape (2-D
// Euclidean structures, 8-dimensional features, uniform weights) with a fresh
// workspace per solve (allocations included) and with a reused one. POT comparisons
// are in `make bench-rd`.
func BenchmarkFGW(b *testing.B) {
	for _, n := range []int{100, 200, 400} {
		r := rand.New(rand.NewPCG(1, uint64(n)))
		c1, f1 := randomGraph(r, n, 8)
		c2, f2 := randomGraph(r, n, 8)
		m, _ := FeatureCost(f1, f2)
		p := uniform(n)
		cfg := DefaultFGWConfig(MethodCG)
		b.Run(fmt.Sprintf("n=%d/fresh", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := FGW(c1, c2, m, p, p, cfg); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(8*n*n), "bytes/matrix")
		})
		b.Run(fmt.Sprintf("n=%d/workspace", n), func(b *testing.B) {
			ws := NewWorkspace()
			if _, err := FGW(c1, c2, m, p, p, cfg, WithWorkspace(ws)); err != nil { // size the buffers
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := FGW(c1, c2, m, p, p, cfg, WithWorkspace(ws)); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkTransport times a cold exact-OT solve on a uniform n×n assignment-like
// problem.
func BenchmarkTransport(b *testing.B) {
	for _, n := range []int{100, 400} {
		r := rand.New(rand.NewPCG(2, uint64(n)))
		c := randCost(r, n, n, false)
		p := uniform(n)
		b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
			for b.Loop() {
				if err := NewTransport().Solve(p, p, c); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkPairwiseFGW times all pairs of 16 graphs of 60 nodes with one worker and
// with one per core.
func BenchmarkPairwiseFGW(b *testing.B) {
	r := rand.New(rand.NewPCG(3, 4))
	graphs := make([]Graph, 16)
	for i := range graphs {
		c, f := randomGraph(r, 60, 8)
		graphs[i] = Graph{C: c, Features: f}
	}
	cfg := DefaultFGWConfig(MethodCG)
	for _, workers := range []int{1, 0} {
		b.Run(fmt.Sprintf("workers=%d", workers), func(b *testing.B) {
			for b.Loop() {
				if _, err := PairwiseFGW(graphs, cfg, workers); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
