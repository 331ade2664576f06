package rd

import (
	"context"
	"fmt"
	"runtime"
	"sync"

	"gonum.org/v1/gonum/mat"
)

// Graph is an attributed graph for pairwise FGW: a structure matrix C (n×n), optional
// node features (n×d, the same d for every graph; the feature cost between two graphs
// is their squared Euclidean distance) and optional node weights (uniform when nil).
// Without features on both graphs of a pair the feature cost is zero.
type Graph struct {
	C        *mat.Dense
	Features *mat.Dense
	Weights  []float64
}

// PairwiseResult holds the FGW distances between every pair of graphs.
type PairwiseResult struct {
	// Distances[i][j] is FGW(graphs[i], graphs[j]); the diagonal is not computed (0).
	Distances *mat.SymDense
	// NotConverged lists the pairs (i < j) whose solver stopped at MaxIter.
	NotConverged [][2]int
}

// PairwiseFGW computes FGW between all pairs of graphs with workers goroutines (every
// core when workers ≤ 0), each with its own reused Workspace.
func PairwiseFGW(graphs []Graph, cfg FGWConfig, workers int) (PairwiseResult, error) {
	return PairwiseFGWContext(context.Background(), graphs, cfg, workers)
}

// PairwiseFGWContext is PairwiseFGW that stops early when ctx is done.
func PairwiseFGWContext(ctx context.Context, graphs []Graph, cfg FGWConfig, workers int) (PairwiseResult, error) {
	if _, err := cfg.normalize(); err != nil {
		return PairwiseResult{}, err
	}
	if len(graphs) < 2 {
		return PairwiseResult{}, inputErrf("graphs", "%d given: pairwise FGW needs at least 2", len(graphs))
	}
	weights := make([][]float64, len(graphs))
	for g, gr := range graphs {
		if err := checkSquare(fmt.Sprintf("graphs[%d].c", g), gr.C); err != nil {
			return PairwiseResult{}, err
		}
		n, _ := gr.C.Dims()
		w := gr.Weights
		if w == nil {
			w = uniformWeights(n)
		}
		if len(w) != n {
			return PairwiseResult{}, inputErrf(fmt.Sprintf("graphs[%d].weights", g), "has %d weights, want %d", len(w), n)
		}
		if err := checkMarginal(fmt.Sprintf("graphs[%d].weights", g), w, 1); err != nil {
			return PairwiseResult{}, err
		}
		if gr.Features != nil {
			if r, _ := gr.Features.Dims(); r != n {
				return PairwiseResult{}, inputErrf(fmt.Sprintf("graphs[%d].features", g), "has %d rows, want %d", r, n)
			}
		}
		weights[g] = w
	}
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	type pair struct{ i, j int }
	jobs := make(chan pair)
	res := PairwiseResult{Distances: mat.NewSymDense(len(graphs), nil)}
	var (
		mu       sync.Mutex
		firstErr error
		wg       sync.WaitGroup
	)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ws := NewWorkspace()
			for pr := range jobs {
				a, b := graphs[pr.i], graphs[pr.j]
				na, _ := a.C.Dims()
				nb, _ := b.C.Dims()
				var m *mat.Dense
				var err error
				if a.Features != nil && b.Features != nil {
					m, err = FeatureCost(a.Features, b.Features)
				} else {
					m = mat.NewDense(na, nb, nil)
				}
				var r FGWResult
				if err == nil {
					r, err = FGW(a.C, b.C, m, weights[pr.i], weights[pr.j], cfg, WithWorkspace(ws), WithContext(ctx))
				}
				mu.Lock()
				if err != nil {
					if firstErr == nil {
						firstErr = fmt.Errorf("graphs %d and %d: %w", pr.i, pr.j, err)
					}
					cancel()
				} else {
					res.Distances.SetSym(pr.i, pr.j, r.Distance)
					if !r.Converged {
						res.NotConverged = append(res.NotConverged, [2]int{pr.i, pr.j})
					}
				}
				mu.Unlock()
			}
		}()
	}
feed:
	for i := range graphs {
		for j := i + 1; j < len(graphs); j++ {
			select {
			case jobs <- pair{i, j}:
			case <-ctx.Done():
				break feed
			}
		}
	}
	close(jobs)
	wg.Wait()
	if firstErr != nil {
		return PairwiseResult{}, firstErr
	}
	if err := ctx.Err(); err != nil {
		return PairwiseResult{}, fmt.Errorf("pairwise fgw: %w", err)
	}
	return res, nil
}

func uniformWeights(n int) []float64 {
	w := make([]float64, n)
	for i := range w {
		w[i] = 1 / float64(n)
	}
	return w
}
