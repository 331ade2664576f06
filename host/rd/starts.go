package rd

import "math"

// FGW's objective is not convex: both solvers find a stationary point near where they
// start, and POT's start p·qᵀ is a poor one between graphs with symmetries. There the
// gradient is a rank-one cost with ties (the two ends of a path graph look alike, as do
// its two middle nodes), cg's first linear step picks one of the tied vertices, and may
// stop on it: a path graph against itself came out at 0.25 (its middle nodes swapped),
// and the entropic solver stays at p·qᵀ itself, a fixed point of its iteration for
// symmetric structures. With WithStarts, solve therefore also starts from other plans
// and keeps the one of least loss; p·qᵀ runs first and is kept on ties, so wherever it
// finds the best plan the answer is POT's, to the iteration.

// solve runs cfg's solver from g0 (p·qᵀ when nil), or, without g0 and with many, from
// each start plan in turn and returns the result of least loss, with its plan in ws.g.
// The result's Iterations and Converged are those of the run that found it.
func (ws *Workspace) solve(pr *problem, cfg FGWConfig, g0 []float64, many bool) (FGWResult, error) {
	run := func(g0 []float64) (FGWResult, error) {
		if cfg.Method == MethodEntropic {
			return ws.entropic(pr, cfg, g0)
		}
		return ws.conditionalGradient(pr, cfg, g0)
	}
	best, err := run(g0)
	if err != nil || g0 != nil || !many {
		return best, err
	}
	nm := pr.n * pr.m
	ws.best = grow(ws.best, nm)
	ws.start = grow(ws.start, nm)
	copy(ws.best, ws.g[:nm])
	// Strictly less beyond rounding: on a tie the earlier start (p·qᵀ first) stays.
	try := func() error {
		res, err := run(ws.start)
		if err != nil {
			return err
		}
		if res.Distance < best.Distance-1e-12*math.Abs(best.Distance) {
			best = res
			copy(ws.best, ws.g[:nm])
		}
		return nil
	}
	if best.Distance > 0 && ws.identityStart(pr) {
		if err := try(); err != nil {
			return FGWResult{}, err
		}
	}
	if best.Distance > 0 && cfg.Method == MethodCG {
		ok, err := ws.featureStart(pr)
		if err != nil {
			return FGWResult{}, err
		}
		if ok {
			if err := try(); err != nil {
				return FGWResult{}, err
			}
		}
	}
	if best.Distance > 0 && cfg.Method == MethodCG {
		copy(ws.g, ws.best)
		if sigma, ok := ws.permutation(pr); ok {
			improved, err := ws.twoOpt(pr, sigma)
			if err != nil {
				return FGWResult{}, err
			}
			if improved {
				clear(ws.start)
				for i, j := range sigma {
					ws.start[i*pr.m+j] = pr.p[i]
				}
				if err := try(); err != nil {
					return FGWResult{}, err
				}
			}
		}
	}
	copy(ws.g, ws.best)
	return best, nil
}

// identityStart sets ws.start to the identity plan when the graphs have the same size
// and weights: a graph against itself, in the same node order, is then at distance 0 from
// the start, whatever symmetries it has.
func (ws *Workspace) identityStart(pr *problem) bool {
	if pr.n != pr.m || !sameMarginals(pr.p, pr.q) {
		return false
	}
	clear(ws.start)
	for i, w := range pr.p {
		ws.start[i*pr.n+i] = w
	}
	return true
}

// featureStart sets ws.start to the optimal transport plan of the feature cost alone,
// when there is a feature term that is not constant: a graph against a relabelled copy
// of itself with telling features starts on the relabelling.
func (ws *Workspace) featureStart(pr *problem) (bool, error) {
	if pr.alpha == 1 || constant(pr.feat) {
		return false, nil
	}
	// cg starts its own linear steps afresh (hasTree = false): its basis is free here.
	ws.tr.hasTree = false
	if err := ws.tr.SolveContext(pr.ctx, pr.p, pr.q, pr.feat); err != nil {
		return false, err
	}
	clear(ws.start)
	ws.vtx = ws.tr.AppendPlan(ws.vtx[:0])
	for _, e := range ws.vtx {
		ws.start[e.I*pr.m+e.J] = e.Mass
	}
	return true, nil
}

func constant(s []float64) bool {
	for _, v := range s {
		if v != s[0] {
			return false
		}
	}
	return true
}

// twoOptMaxNodes bounds the graphs twoOpt refines: a pass over every pair of nodes is
// O(n³).
const twoOptMaxNodes = 400

// twoOptMaxPasses bounds twoOpt's passes.
const twoOptMaxPasses = 20

// permutation reports whether ws.g is a permutation plan between graphs of the same
// size and uniform weights (cg's vertices between such graphs are), and returns it:
// sigma[i] is the node of the second graph node i goes to.
func (ws *Workspace) permutation(pr *problem) ([]int, bool) {
	n := pr.n
	if n != pr.m || n > twoOptMaxNodes || n < 3 {
		return nil, false
	}
	if !constant(pr.p) || !constant(pr.q) || pr.p[0] != pr.q[0] {
		return nil, false
	}
	ws.perm = growInt(ws.perm, n)
	ws.permTmp = growInt(ws.permTmp, n)
	sigma, used := ws.perm, ws.permTmp
	clear(used)
	for i := 0; i < n; i++ {
		sigma[i] = -1
		for j, v := range ws.g[i*n : i*n+n] {
			if v == 0 {
				continue
			}
			if sigma[i] >= 0 || used[j] != 0 {
				return nil, false
			}
			sigma[i] = j
			used[j] = 1
		}
		if sigma[i] < 0 {
			return nil, false
		}
	}
	return sigma, true
}

// twoOpt improves the permutation plan sigma by exchanging the targets of two nodes
// while an exchange lowers the loss, first improvement first, at most twoOptMaxPasses
// passes. cg stops on a vertex none of whose neighbouring vertices is better along its
// linearisation; an exchange is a move to another vertex along the true, quadratic
// loss, which takes a path graph whose middle nodes cg swapped to its reversal, an
// isometry. It reports whether sigma changed.
func (ws *Workspace) twoOpt(pr *problem, sigma []int) (bool, error) {
	n := pr.n
	c1, c2, feat := pr.c1, pr.c2, pr.feat
	w := pr.p[0]
	alpha := pr.alpha
	f := func(i, k int) float64 { d := c1[i*n+k] - c2[sigma[i]*n+sigma[k]]; return d * d }
	// touched is the structure loss (without α·w²) of the pairs in rows or columns a, b.
	touched := func(a, b int) float64 {
		var s float64
		for k := 0; k < n; k++ {
			s += f(a, k) + f(b, k) + f(k, a) + f(k, b)
		}
		return s - f(a, a) - f(a, b) - f(b, a) - f(b, b)
	}
	var loss float64
	for i := 0; i < n; i++ {
		loss += (1 - alpha) * w * feat[i*n+sigma[i]]
		for k := 0; k < n; k++ {
			loss += alpha * w * w * f(i, k)
		}
	}
	changed := false
	for pass := 0; pass < twoOptMaxPasses && loss > 0; pass++ {
		improved := false
		for a := 0; a < n; a++ {
			if err := pr.ctx.Err(); err != nil {
				return false, err
			}
			for b := a + 1; b < n; b++ {
				before := touched(a, b)
				featBefore := feat[a*n+sigma[a]] + feat[b*n+sigma[b]]
				sigma[a], sigma[b] = sigma[b], sigma[a]
				delta := alpha*w*w*(touched(a, b)-before) + (1-alpha)*w*(feat[a*n+sigma[a]]+feat[b*n+sigma[b]]-featBefore)
				if delta < -1e-12*loss {
					loss += delta
					improved, changed = true, true
					continue
				}
				sigma[a], sigma[b] = sigma[b], sigma[a]
			}
		}
		if !improved {
			break
		}
	}
	return changed, nil
}

func growInt(s []int, n int) []int {
	if cap(s) < n {
		return make([]int, n)
	}
	return s[:n]
}
