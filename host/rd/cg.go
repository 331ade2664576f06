package rd

import (
	"context"
	"math"
)

// conditionalGradient mirrors POT 0.8.2's ot.gromov.fused_gromov_wasserstein
// (ot.optim.cg with armijo=False and ot.optim.solve_linesearch):
//
//   - start from G = p·qᵀ (or g0), loss f(G) = ⟨(1−α)M, G⟩ + α·gwloss(G) with
//     gwloss(G) = ⟨constC, G⟩ − 2⟨C1·G·C2ᵀ, G⟩;
//   - each iteration: linearise with POT's gradient (1−α)M + α·2·(constC − 2·C1·G·C2ᵀ)
//     (without constC, below),
//     solve the exact OT problem for the vertex Gc, take the closed-form step τ in [0, 1]
//     that minimises the quadratic f(G + τ(Gc − G)) (solve_1d_linesearch_quad, including
//     its rule for the non-convex case), recompute the loss;
//   - stop after MaxIter iterations or when the loss changed by less than Tol,
//     relatively or absolutely (POT's stopThr and stopThr2).
//
// What differs is how the work is done, not what is computed. POT recomputes
// C1·G·C2ᵀ (and C1·ΔG·C2, C1·G·C2) with dense products, about ten n³ products per
// iteration. Here A = C1·G·C2ᵀ and B = C1·Gc·C2ᵀ are kept up to date: Gc is a vertex
// with at most n+m−1 non-zero cells, consecutive vertices differ in few cells, so B
// changes by C1·(Gc − Gc_prev)·C2ᵀ, one product of inner dimension equal to the number
// of columns that changed, and A = (1−τ)A + τB; every line-search term is then an
// O(nm) inner product. The linear problems are warm-started from the previous optimal
// basis. POT also adds min(Mi) to the linear cost (a constant shift that does not
// change the optimal vertex); that shift is not reproduced.
//
// The constant part of the square loss is kept out of the iterations: constC_ij is a
// row part plus a column part, so ⟨constC, X⟩ is the same number K for every coupling X
// of p and q. The linear step's cost and the line search leave it out (it changes
// neither the vertex nor τ), and the stopping rule compares the losses without it
// (dividing by the whole loss αK + v for the relative test): K is of the order of the
// squared structure entries, and carried through sums that cancel it, its rounding
// would swamp a feature cost far smaller. The distance reported is the loss of the
// final plan, evaluated afresh (planLoss).
func (ws *Workspace) conditionalGradient(pr *problem, cfg FGWConfig, g0 []float64) (FGWResult, error) {
	n, m := pr.n, pr.m
	nm := n * m
	ws.g = grow(ws.g, nm)
	ws.a = grow(ws.a, nm)
	ws.b = grow(ws.b, nm)
	ws.mi = grow(ws.mi, nm)
	if !pr.symmetric {
		ws.as = grow(ws.as, nm)
		ws.bs = grow(ws.bs, nm)
	}
	if err := ws.initPlan(pr, g0); err != nil {
		return FGWResult{}, err
	}
	clear(ws.b)
	if !pr.symmetric {
		clear(ws.bs)
	}
	ws.prevVtx = ws.prevVtx[:0]
	ws.tr.hasTree = false

	alpha := pr.alpha
	// The loss is α·K + v: K = ⟨constC, G⟩ = Σ constR·p + Σ constC·q is the same for
	// every coupling, v = (1−α)⟨M, G⟩ − 2α⟨A, G⟩ is what changes. The change between
	// iterations is taken on v alone, so that K's rounding (K is of the order of the
	// squared structure entries) is not mistaken for progress or its absence.
	k := ws.constTerm(pr)
	mg, ag := ws.featureAndCross(pr)
	v := (1-alpha)*mg - 2*alpha*ag

	it := 0
	converged := false
	for {
		if err := pr.ctx.Err(); err != nil {
			return FGWResult{}, err
		}
		it++
		old := v
		ws.gradient(pr, false)
		if err := ws.tr.SolveContext(pr.ctx, pr.p, pr.q, ws.mi); err != nil {
			return FGWResult{}, errf("linear step %d: %w", it, err)
		}
		ws.vtx = ws.tr.AppendPlan(ws.vtx[:0])
		ws.updateVertexProducts(pr)

		// Line search on f(G + τΔ) = a·τ² + b·τ + c with Δ = Gc − G, D = B − A. The
		// constant part α⟨constC, ·⟩ is left out of b: Gc and G have the same marginals,
		// so ⟨constC, Δ⟩ is 0, and evaluating it at the structure's scale would only add
		// that scale's rounding to a coefficient the feature cost may be far below.
		var eG, aG, bG float64
		for i := 0; i < n; i++ {
			row := ws.g[i*m : i*m+m]
			ar := ws.a[i*m : i*m+m]
			br := ws.b[i*m : i*m+m]
			fr := pr.feat[i*m : i*m+m]
			var se, sa, sb float64
			for j, gv := range row {
				if gv == 0 {
					continue
				}
				se += fr[j] * gv
				sa += ar[j] * gv
				sb += br[j] * gv
			}
			eG += se
			aG += sa
			bG += sb
		}
		var eV, aV, bV float64
		for _, e := range ws.vtx {
			k := e.I*m + e.J
			eV += pr.feat[k] * e.Mass
			aV += ws.a[k] * e.Mass
			bV += ws.b[k] * e.Mass
		}
		dDelta := (bV - aV) - (bG - aG)
		qa := -2 * alpha * dDelta
		qb := (1-alpha)*(eV-eG) - 2*alpha*((bG-aG)+(aV-aG))
		tau := lineSearchQuad(qa, qb)

		ws.step(pr, tau)
		mg, ag = ws.featureAndCross(pr)
		v = (1-alpha)*mg - 2*alpha*ag

		absDelta := math.Abs(v - old)
		rel := absDelta / math.Abs(alpha*k+v)
		if rel < cfg.Tol || absDelta < cfg.Tol {
			converged = true
			break
		}
		if it >= cfg.MaxIter {
			break
		}
		ws.vtx, ws.prevVtx = ws.prevVtx, ws.vtx
	}
	ws.vtx, ws.prevVtx = ws.prevVtx, ws.vtx
	return FGWResult{Distance: ws.planLoss(pr), Iterations: it, Converged: converged}, nil
}

// lineSearchQuad is POT's solve_1d_linesearch_quad: the minimiser over [0, 1] of
// a·x² + b·x + c; for a ≤ 0 the better end point (1 only if strictly better). POT
// compares c with a + c + b; c is left out here, as it cancels: added to a loss of the
// structure's scale, a + b of the feature cost's scale would round away.
func lineSearchQuad(a, b float64) float64 {
	if a > 0 {
		return math.Min(1, math.Max(0, -b/(2*a)))
	}
	if a+b < 0 {
		return 1
	}
	return 0
}

// initPlan sets G to p·qᵀ (or g0, row-major n×m) and A = C1·G·C2ᵀ (and A* = C1ᵀ·G·C2).
// It stops with pr.ctx's error once pr.ctx is done (see denseProducts).
func (ws *Workspace) initPlan(pr *problem, g0 []float64) error {
	n, m := pr.n, pr.m
	if g0 == nil {
		for i := 0; i < n; i++ {
			row := ws.g[i*m : i*m+m]
			for j := range row {
				row[j] = pr.p[i] * pr.q[j]
			}
		}
		// C1·p·qᵀ·C2ᵀ = (C1·p)(C2·q)ᵀ: rank one, no matrix product needed.
		ws.su = grow(ws.su, n)
		ws.sv = grow(ws.sv, m)
		matVec(pr.c1, n, pr.p, ws.su, false)
		matVec(pr.c2, m, pr.q, ws.sv, false)
		outer(ws.a, ws.su, ws.sv)
		if !pr.symmetric {
			matVec(pr.c1, n, pr.p, ws.su, true)
			matVec(pr.c2, m, pr.q, ws.sv, true)
			outer(ws.as, ws.su, ws.sv)
		}
		return nil
	}
	copy(ws.g, g0)
	return ws.denseProducts(pr, ws.g)
}

// denseProducts sets A = C1·T·C2ᵀ (and A* = C1ᵀ·T·C2) with dense products, using x
// as scratch. It stops with pr.ctx's error once pr.ctx is done, checked between blocks
// of rows (see gemmRows): the products of a problem of 1600 nodes take about a second.
func (ws *Workspace) denseProducts(pr *problem, t []float64) error {
	n, m := pr.n, pr.m
	ws.x = grow(ws.x, n*m)
	c2t := pr.c2
	if !pr.symmetric {
		c2t = ws.c2t
	}
	if err := gemmRows(pr.ctx, n, m, n, pr.c1, t, ws.x); err != nil {
		return err
	}
	if err := gemmRows(pr.ctx, n, m, m, ws.x, c2t, ws.a); err != nil {
		return err
	}
	if !pr.symmetric {
		if err := gemmRows(pr.ctx, n, m, n, ws.c1t, t, ws.x); err != nil {
			return err
		}
		return gemmRows(pr.ctx, n, m, m, ws.x, pr.c2, ws.as)
	}
	return nil
}

// gemmRowFlops is about how much work gemmRows does between two looks at its context:
// some 50 ms here (a variable for the tests).
var gemmRowFlops = 1 << 27

// gemmRows sets dst (r×c) = a (r×k) · b (k×c), row-major, as gemm does, a block of rows
// at a time, and stops with ctx's error, checked before each block, once ctx is done.
// Each element is computed as one product of the whole would compute it.
func gemmRows(ctx context.Context, r, c, k int, a, b, dst []float64) error {
	rows := r
	if work := 2 * c * k; work > 0 {
		rows = max(1, gemmRowFlops/work)
	}
	for i := 0; i < r; i += rows {
		if err := ctx.Err(); err != nil {
			return err
		}
		h := min(rows, r-i)
		gemm(false, h, c, k, a[i*k:(i+h)*k], b, 0, dst[i*c:(i+h)*c])
	}
	return nil
}

func matVec(c []float64, n int, w, out []float64, transposed bool) {
	for i := 0; i < n; i++ {
		var s float64
		for k := 0; k < n; k++ {
			if transposed {
				s += c[k*n+i] * w[k]
			} else {
				s += c[i*n+k] * w[k]
			}
		}
		out[i] = s
	}
}

func outer(dst, u, v []float64) {
	m := len(v)
	for i, ui := range u {
		row := dst[i*m : i*m+m]
		for j, vj := range v {
			row[j] = ui * vj
		}
	}
}

// constTerm returns K = Σ_i constR_i·p_i + Σ_j constC_j·q_j (plus the transposed
// parts' share for non-symmetric structures, which is the same number): ⟨constC, G⟩ for
// every coupling G of p and q.
func (ws *Workspace) constTerm(pr *problem) float64 {
	var k float64
	for i, w := range pr.p {
		k += ws.constR[i] * w
	}
	for j, w := range pr.q {
		k += ws.constC[j] * w
	}
	return k
}

// featureAndCross returns ⟨M, G⟩ and ⟨A, G⟩.
func (ws *Workspace) featureAndCross(pr *problem) (mg, ag float64) {
	n, m := pr.n, pr.m
	for i := 0; i < n; i++ {
		row := ws.g[i*m : i*m+m]
		ar := ws.a[i*m : i*m+m]
		fr := pr.feat[i*m : i*m+m]
		var sm, sa float64
		for j, gv := range row {
			if gv == 0 {
				continue
			}
			sm += fr[j] * gv
			sa += ar[j] * gv
		}
		mg += sm
		ag += sa
	}
	return mg, ag
}

// planLoss returns the loss of the plan G, the distance reported. When G has few
// non-zero cells (conditional gradient ends on a vertex or a mix of a few, at most
// n+m−1 cells each), it is evaluated by its definition over G's support,
//
//	(1−α) Σ M_ij G_ij + α Σ_(ij)(kl) (C1_ik − C2_jl)² G_ij G_kl,
//
// a sum of non-negative terms, accurate to its own relative rounding whatever the
// scale of the structures against the features (a graph against itself gives exactly
// 0), in O(nnz²) ≤ O(4nm). Otherwise it is ⟨E, G⟩ − 2α⟨A, G⟩ with the A kept up to
// date, which is exact in exact arithmetic but cancels terms of the order of the squared
// structure entries.
func (ws *Workspace) planLoss(pr *problem) float64 {
	n, m := pr.n, pr.m
	supp := ws.diff[:0]
	budget := 4 * n * m
	for i := 0; i < n; i++ {
		for j, gv := range ws.g[i*m : i*m+m] {
			if gv == 0 {
				continue
			}
			if (len(supp)+1)*(len(supp)+1) > budget {
				ws.diff = supp
				eg, ag := ws.lossTerms(pr)
				return eg - 2*pr.alpha*ag
			}
			supp = append(supp, PlanEntry{I: i, J: j, Mass: gv})
		}
	}
	ws.diff = supp
	var lin, quad float64
	for _, a := range supp {
		lin += pr.feat[a.I*m+a.J] * a.Mass
		r1 := pr.c1[a.I*n : a.I*n+n]
		r2 := pr.c2[a.J*m : a.J*m+m]
		var s float64
		for _, b := range supp {
			d := r1[b.I] - r2[b.J]
			s += d * d * b.Mass
		}
		quad += s * a.Mass
	}
	return (1-pr.alpha)*lin + pr.alpha*quad
}

// lossTerms returns ⟨E, G⟩ and ⟨A, G⟩ with E = (1−α)M + α·constC, so that the loss is
// ⟨E, G⟩ − 2α⟨A, G⟩.
func (ws *Workspace) lossTerms(pr *problem) (eg, ag float64) {
	n, m := pr.n, pr.m
	alpha := pr.alpha
	for i := 0; i < n; i++ {
		row := ws.g[i*m : i*m+m]
		ar := ws.a[i*m : i*m+m]
		fr := pr.feat[i*m : i*m+m]
		cr := ws.constR[i]
		var se, sa float64
		for j, gv := range row {
			if gv == 0 {
				continue
			}
			se += ((1-alpha)*fr[j] + alpha*(cr+ws.constC[j])) * gv
			sa += ar[j] * gv
		}
		eg += se
		ag += sa
	}
	return eg, ag
}

// gradient writes the linearised cost into mi: POT's (1−α)M + α·2·(constC − 2A) for
// symmetric structures; (1−α)M + α·(constC + constCᵗ − 2A − 2A*) otherwise, POT ≥ 0.9's
// symmetrised gradient, which reduces to the former when C1 and C2 are symmetric.
//
// Without withConst the constC terms are left out. constC_ij is a row part plus a
// column part, so its inner product with any coupling of p and q is the same number:
// it changes neither the exact linear step's optimal vertex (conditional gradient) nor
// anything but the scale of the cost, of the order of the squared structure entries,
// in whose rounding the feature cost would be lost. The entropic solver keeps it: its
// Sinkhorn iterates, started from uniform scalings, depend on it, and POT's do too.
func (ws *Workspace) gradient(pr *problem, withConst bool) {
	n, m := pr.n, pr.m
	alpha := pr.alpha
	for i := 0; i < n; i++ {
		out := ws.mi[i*m : i*m+m]
		ar := ws.a[i*m : i*m+m]
		fr := pr.feat[i*m : i*m+m]
		if !withConst {
			if pr.symmetric {
				for j := range out {
					out[j] = (1-alpha)*fr[j] - alpha*4*ar[j]
				}
				continue
			}
			asr := ws.as[i*m : i*m+m]
			for j := range out {
				out[j] = (1-alpha)*fr[j] - alpha*2*(ar[j]+asr[j])
			}
			continue
		}
		if pr.symmetric {
			cr := ws.constR[i]
			for j := range out {
				out[j] = (1-alpha)*fr[j] + alpha*(2*(cr+ws.constC[j])-4*ar[j])
			}
			continue
		}
		asr := ws.as[i*m : i*m+m]
		cr := ws.constR[i] + ws.constRt[i]
		for j := range out {
			out[j] = (1-alpha)*fr[j] + alpha*((cr+ws.constC[j]+ws.constCt[j])-2*(ar[j]+asr[j]))
		}
	}
}

// step moves G and A (and A*) a fraction tau towards the vertex and its products.
func (ws *Workspace) step(pr *problem, tau float64) {
	if tau == 0 {
		return
	}
	m := pr.m
	if tau == 1 {
		clear(ws.g)
		copy(ws.a, ws.b)
		if !pr.symmetric {
			copy(ws.as, ws.bs)
		}
	} else {
		s := 1 - tau
		for k := range ws.g {
			ws.g[k] *= s
			ws.a[k] = s*ws.a[k] + tau*ws.b[k]
		}
		if !pr.symmetric {
			for k := range ws.as {
				ws.as[k] = s*ws.as[k] + tau*ws.bs[k]
			}
		}
	}
	for _, e := range ws.vtx {
		ws.g[e.I*m+e.J] += tau * e.Mass
	}
}

// updateVertexProducts brings B = C1·Gc·C2ᵀ (and B* = C1ᵀ·Gc·C2) from the previous
// vertex to the current one: B += C1·(Gc − Gc_prev)·C2ᵀ, grouped by the columns j of
// the cells that changed, as one product of inner dimension |J|.
func (ws *Workspace) updateVertexProducts(pr *problem) {
	n, m := pr.n, pr.m
	// Merge the sorted vertex lists into the difference.
	diff := ws.diff[:0]
	a, b := ws.vtx, ws.prevVtx
	for len(a) > 0 || len(b) > 0 {
		switch {
		case len(b) == 0 || (len(a) > 0 && (a[0].I < b[0].I || (a[0].I == b[0].I && a[0].J < b[0].J))):
			diff = append(diff, a[0])
			a = a[1:]
		case len(a) == 0 || (b[0].I < a[0].I || (b[0].I == a[0].I && b[0].J < a[0].J)):
			diff = append(diff, PlanEntry{I: b[0].I, J: b[0].J, Mass: -b[0].Mass})
			b = b[1:]
		default:
			if d := a[0].Mass - b[0].Mass; d != 0 {
				diff = append(diff, PlanEntry{I: a[0].I, J: a[0].J, Mass: d})
			}
			a, b = a[1:], b[1:]
		}
	}
	ws.diff = diff
	if len(diff) == 0 {
		return
	}
	// Number the changed columns in increasing order.
	if cap(ws.colID) < m {
		ws.colID = make([]int32, m)
	}
	colID := ws.colID[:m]
	for j := range colID {
		colID[j] = -1
	}
	for _, e := range diff {
		colID[e.J] = 0
	}
	cols := ws.cols[:0]
	for j := range colID {
		if colID[j] == 0 {
			colID[j] = int32(len(cols))
			cols = append(cols, int32(j))
		}
	}
	ws.cols = cols
	k := len(cols)

	type factors struct {
		lt, rt []float64 // rows of Lᵀ (n×n) and Rᵀ (m×m)
		dst    []float64
	}
	prods := [2]factors{{pr.c1, pr.c2, ws.b}}
	np := 1
	if !pr.symmetric {
		prods[0] = factors{ws.c1t, ws.c2t, ws.b}
		prods[1] = factors{pr.c1, pr.c2, ws.bs}
		np = 2
	}
	// Size the scratch for the largest case once, so that a varying k never reallocates.
	ws.x = grow(ws.x, n*m)
	for _, f := range prods[:np] {
		// Xᵀ[c, :] = Σ_{cells (i, j=cols[c])} d · Lᵀ[i, :]
		xt := ws.x[:k*n]
		clear(xt)
		for _, e := range diff {
			row := xt[int(colID[e.J])*n : int(colID[e.J])*n+n]
			src := f.lt[e.I*n : e.I*n+n]
			axpy(e.Mass, src, row)
		}
		// Y[c, :] = Rᵀ[cols[c], :]
		var y []float64
		if k == m {
			y = f.rt
		} else {
			ws.y = grow(ws.y, m*m)
			y = ws.y[:k*m]
			for c, j := range cols {
				copy(y[c*m:c*m+m], f.rt[int(j)*m:int(j)*m+m])
			}
		}
		gemm(true, n, m, k, xt, y, 1, f.dst)
	}
}

func axpy(alpha float64, x, y []float64) {
	for i, v := range x {
		y[i] += alpha * v
	}
}
