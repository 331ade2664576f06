package rd

import (
	"context"
	"fmt"
	"math"
	"sort"

	"gonum.org/v1/gonum/mat"
)

// PlanEntry is one non-zero cell of a transport plan: Mass moves from source I to
// target J.
type PlanEntry struct {
	I    int     `json:"i"`
	J    int     `json:"j"`
	Mass float64 `json:"mass"`
}

// Transport solves exact (unregularised) discrete optimal-transport problems
//
//	min ⟨C, T⟩  subject to  T·1 = p,  Tᵀ·1 = q,  T ≥ 0
//
// with a primal network simplex on the bipartite transportation network. A Transport
// remembers its last optimal basis: solving again with the same marginals and a new
// cost matrix starts from that basis (a warm start), which is what conditional
// gradient needs, since consecutive linearised problems differ little. Pivots use the
// block-search rule, and the leaving arc is chosen by the strongly-feasible-tree rule
// (the last blocking arc met when walking the cycle from its apex), which rules out
// cycling on the highly degenerate assignment-like problems that uniform weights give.
//
// A Transport is not safe for concurrent use; give each goroutine its own.
type Transport struct {
	// MaxPivots bounds the pivots of one Solve; zero means 100·(arcs + nodes). Reaching
	// it is an error, never a silent sub-optimal plan.
	MaxPivots int

	n, m, root int
	cost       []float64 // row-major n×m, borrowed from the caller for one Solve
	art        float64   // cost of the artificial arcs that point from the root
	p, q       []float64 // marginals of the basis in memory (q rescaled to p's sum)

	// Spanning tree, indexed by node: sources 0..n-1, targets n..n+m-1, root n+m.
	parent []int32
	pred   []int32   // arc joining the node to its parent
	up     []bool    // pred arc points from the node to its parent
	flow   []float64 // flow on pred arc
	depth  []int32
	child  []int32 // first child
	next   []int32 // next sibling
	prev   []int32 // previous sibling
	pi     []float64
	artUp  []bool // the node's artificial arc points to the root

	nextArc int
	block   int
	stem    []int32
	pivots  int
	hasTree bool
}

// NewTransport returns a solver with no basis in memory.
func NewTransport() *Transport { return &Transport{} }

// Solve computes an optimal plan for marginals p (length n), q (length m) and the
// row-major n×m cost matrix cost. The marginals must be non-negative, finite and have
// equal sums (within 1e-9 relative); costs must be finite (negative costs are allowed).
// When p and q equal those of the previous call the previous optimal basis is the
// starting point.
func (t *Transport) Solve(p, q, cost []float64) error {
	return t.SolveContext(context.Background(), p, q, cost)
}

// SolveContext is Solve stopped, with ctx's error, once ctx is done (checked every
// ctxCheckPivots pivots: a problem of n = m = 1600 may take millions of them). The
// basis in memory is then not optimal but still a feasible tree, a valid warm start.
func (t *Transport) SolveContext(ctx context.Context, p, q, cost []float64) error {
	n, m := len(p), len(q)
	if n == 0 || m == 0 {
		return inputErr("p", "transport needs at least one source and one target")
	}
	if len(cost) != n*m {
		return inputErrf("m", "cost has %d entries, want %d×%d = %d", len(cost), n, m, n*m)
	}
	if err := checkMarginal("p", p, -1); err != nil {
		return err
	}
	if err := checkMarginal("q", q, -1); err != nil {
		return err
	}
	sp, sq := floatsSum(p), floatsSum(q)
	if math.Abs(sp-sq) > 1e-9*math.Max(1, sp) {
		return inputErrf("q", "sums to %.17g but p sums to %.17g: the marginals must carry equal mass", sq, sp)
	}
	for k, c := range cost {
		if math.IsNaN(c) || math.IsInf(c, 0) {
			return inputErrf("m", "entry [%d][%d] is %v: costs must be finite", k/m, k%m, c)
		}
	}
	t.cost = cost
	defer func() { t.cost = nil }()
	t.art = 0
	for _, c := range cost {
		if a := math.Abs(c); a > t.art {
			t.art = a
		}
	}
	t.art = (t.art + 1) * float64(n+m+1)

	if t.hasTree && t.n == n && t.m == m && sameMarginals(t.p, p) && t.sameTargets(q, sp, sq) {
		t.recomputePotentials()
	} else {
		t.init(p, q, sp, sq)
	}
	return t.run(ctx)
}

// sameTargets reports whether q, rescaled like init would, equals the stored targets.
func (t *Transport) sameTargets(q []float64, sp, sq float64) bool {
	for j, v := range q {
		if v*sp/sq != t.q[j] {
			return false
		}
	}
	return true
}

func sameMarginals(a, b []float64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// init builds the starting basis: every node hangs from the root by its artificial
// arc. Sources with positive supply point up (cost 0), every other node is reached
// from the root (cost art), so every zero-flow tree arc points away from the root and
// the tree is strongly feasible.
func (t *Transport) init(p, q []float64, sp, sq float64) {
	n, m := len(p), len(q)
	N := n + m + 1
	t.n, t.m, t.root = n, m, n+m
	t.p = append(t.p[:0], p...)
	t.q = t.q[:0]
	for _, v := range q {
		// Like POT, rescale q so that both sides carry exactly p's mass.
		t.q = append(t.q, v*sp/sq)
	}
	t.parent = resizeI32(t.parent, N)
	t.pred = resizeI32(t.pred, N)
	t.depth = resizeI32(t.depth, N)
	t.child = resizeI32(t.child, N)
	t.next = resizeI32(t.next, N)
	t.prev = resizeI32(t.prev, N)
	t.flow = resizeF64(t.flow, N)
	t.pi = resizeF64(t.pi, N)
	if cap(t.up) < N {
		t.up = make([]bool, N)
		t.artUp = make([]bool, N)
	}
	t.up, t.artUp = t.up[:N], t.artUp[:N]

	nm := n * m
	root := t.root
	t.parent[root], t.pred[root], t.depth[root] = -1, -1, 0
	t.next[root], t.prev[root], t.child[root] = -1, -1, -1
	t.pi[root] = 0
	for u := 0; u < n+m; u++ {
		var supply float64
		if u < n {
			supply = t.p[u]
		} else {
			supply = -t.q[u-n]
		}
		t.parent[u] = int32(root)
		t.pred[u] = int32(nm + u)
		t.depth[u] = 1
		t.child[u] = -1
		t.artUp[u] = supply > 0
		t.up[u] = t.artUp[u]
		t.flow[u] = math.Abs(supply)
		t.attach(int32(u), int32(root))
	}
	t.recomputePotentials()
	t.block = int(math.Sqrt(float64(nm)))
	if t.block < 10 {
		t.block = 10
	}
	t.nextArc = 0
	t.hasTree = true
}

func resizeI32(s []int32, n int) []int32 {
	if cap(s) < n {
		return make([]int32, n)
	}
	return s[:n]
}

func resizeF64(s []float64, n int) []float64 {
	if cap(s) < n {
		return make([]float64, n)
	}
	return s[:n]
}

// arcCost is the cost of arc e: a transport arc i→j is e = i·m + j, the artificial
// arc of node u is n·m + u.
func (t *Transport) arcCost(e int32) float64 {
	nm := t.n * t.m
	if int(e) < nm {
		return t.cost[e]
	}
	if t.artUp[int(e)-nm] {
		return 0
	}
	return t.art
}

// recomputePotentials sets every potential from the root down, so that each tree arc
// u→v has reduced cost c + π(u) − π(v) = 0.
func (t *Transport) recomputePotentials() {
	root := int32(t.root)
	t.pi[root] = 0
	t.depth[root] = 0
	t.updateSubtree(root, true)
}

// updateSubtree recomputes potentials and depths below top (top itself too unless
// skipTop) in preorder, parents before children.
func (t *Transport) updateSubtree(top int32, skipTop bool) {
	w := top
	if skipTop {
		w = t.child[top]
		if w < 0 {
			return
		}
	}
	for {
		par := t.parent[w]
		c := t.arcCost(t.pred[w])
		if t.up[w] {
			t.pi[w] = t.pi[par] - c
		} else {
			t.pi[w] = t.pi[par] + c
		}
		t.depth[w] = t.depth[par] + 1
		if t.child[w] >= 0 {
			w = t.child[w]
			continue
		}
		for w != top && t.next[w] < 0 {
			w = t.parent[w]
		}
		if w == top {
			return
		}
		w = t.next[w]
	}
}

func (t *Transport) attach(w, v int32) {
	first := t.child[v]
	t.next[w] = first
	t.prev[w] = -1
	if first >= 0 {
		t.prev[first] = w
	}
	t.child[v] = w
}

func (t *Transport) detach(w int32) {
	par := t.parent[w]
	if t.prev[w] >= 0 {
		t.next[t.prev[w]] = t.next[w]
	} else {
		t.child[par] = t.next[w]
	}
	if t.next[w] >= 0 {
		t.prev[t.next[w]] = t.prev[w]
	}
	t.next[w], t.prev[w] = -1, -1
}

// reducedTol is the relative tolerance below which a negative reduced cost counts as
// rounding noise rather than an improving arc.
const reducedTol = 1e-13

// ctxCheckPivots is how often run checks its context: a pivot scans at least a block of
// √(nm) arcs, so a check every 64 is noise beside them.
const ctxCheckPivots = 64

// run pivots until no arc has a negative reduced cost.
func (t *Transport) run(ctx context.Context) error {
	limit := t.MaxPivots
	if limit <= 0 {
		limit = 100 * (t.n*t.m + t.n + t.m)
	}
	t.pivots = 0
	for {
		if t.pivots%ctxCheckPivots == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		e := t.findEnteringBlock()
		if e < 0 {
			return nil
		}
		if t.pivots >= limit {
			return fmt.Errorf("network simplex: pivot limit %d reached before optimality", limit)
		}
		t.pivot(int32(e))
		t.pivots++
	}
}

// findEnteringBlock scans the arcs cyclically from where the last search stopped, in
// blocks of t.block arcs, and returns the most negative reduced-cost arc of the first
// block that has one; -1 after a full cycle without any (the basis is optimal).
func (t *Transport) findEnteringBlock() int {
	n, m := t.n, t.m
	nm := n * m
	cost, pi := t.cost, t.pi
	piT := pi[n : n+m]
	best := -1
	minRC := 0.0
	cnt := 0
	start := t.nextArc
	i := start / m
	j := start - i*m
	remaining := nm
	for remaining > 0 {
		row := cost[i*m : i*m+m]
		pii := pi[i]
		end := m
		if j+remaining < m {
			end = j + remaining
		}
		remaining -= end - j
		for ; j < end; j++ {
			rc := row[j] + pii - piT[j]
			if rc < minRC && rc < -reducedTol*(math.Abs(row[j])+math.Abs(pii)+math.Abs(piT[j])) {
				minRC = rc
				best = i*m + j
			}
			cnt++
			if cnt == t.block {
				if best >= 0 {
					t.nextArc = i*m + j + 1
					if t.nextArc >= nm {
						t.nextArc = 0
					}
					return best
				}
				cnt = 0
			}
		}
		i++
		j = 0
		if i == n {
			i = 0
		}
	}
	if best >= 0 {
		t.nextArc = i*m + j
		return best
	}
	return -1
}

// pivot brings transport arc e into the basis.
func (t *Transport) pivot(e int32) {
	n, m := t.n, t.m
	si := int(e) / m
	src := int32(si)
	dst := int32(n + int(e) - si*m)
	parent, depth, up, flow := t.parent, t.depth, t.up, t.flow

	// Apex of the cycle closed by e.
	u, v := src, dst
	for u != v {
		switch {
		case depth[u] > depth[v]:
			u = parent[u]
		case depth[v] > depth[u]:
			v = parent[v]
		default:
			u, v = parent[u], parent[v]
		}
	}
	join := u

	// The cycle runs join → … → src → dst → … → join. Arcs against that direction lose
	// flow; the leaving arc is the last blocking one met from the apex.
	delta := math.Inf(1)
	uOut, side := int32(-1), 0
	for w := src; w != join; w = parent[w] {
		if up[w] && flow[w] < delta {
			delta, uOut, side = flow[w], w, 1
		}
	}
	for w := dst; w != join; w = parent[w] {
		if !up[w] && flow[w] <= delta {
			delta, uOut, side = flow[w], w, 2
		}
	}
	if delta > 0 {
		for w := src; w != join; w = parent[w] {
			if up[w] {
				flow[w] -= delta
			} else {
				flow[w] += delta
			}
		}
		for w := dst; w != join; w = parent[w] {
			if up[w] {
				flow[w] += delta
			} else {
				flow[w] -= delta
			}
		}
	}
	uIn, vIn := src, dst
	if side == 2 {
		uIn, vIn = dst, src
	}

	// Re-root the subtree of uOut at uIn along the stem uIn … uOut, then hang it
	// from vIn by the entering arc.
	stem := t.stem[:0]
	for w := uIn; ; w = parent[w] {
		stem = append(stem, w)
		if w == uOut {
			break
		}
	}
	t.stem = stem
	for _, w := range stem {
		t.detach(w)
	}
	for k := len(stem) - 1; k >= 1; k-- {
		w, c := stem[k], stem[k-1]
		parent[w] = c
		t.pred[w] = t.pred[c]
		up[w] = !up[c]
		flow[w] = flow[c]
		t.attach(w, c)
	}
	parent[uIn] = vIn
	t.pred[uIn] = e
	up[uIn] = uIn == src
	flow[uIn] = delta
	t.attach(uIn, vIn)
	t.updateSubtree(uIn, false)
}

// Pivots returns the number of pivots the last Solve made.
func (t *Transport) Pivots() int { return t.pivots }

// AppendPlan appends the non-zero cells of the last optimal plan to dst, ordered by
// (I, J), and returns the extended slice.
func (t *Transport) AppendPlan(dst []PlanEntry) []PlanEntry {
	nm := t.n * t.m
	start := len(dst)
	for w := 0; w < t.n+t.m; w++ {
		e := int(t.pred[w])
		if e < nm && t.flow[w] > 0 {
			dst = append(dst, PlanEntry{I: e / t.m, J: e % t.m, Mass: t.flow[w]})
		}
	}
	s := dst[start:]
	sort.Slice(s, func(a, b int) bool {
		if s[a].I != s[b].I {
			return s[a].I < s[b].I
		}
		return s[a].J < s[b].J
	})
	return dst
}

// Duals returns dual potentials u (sources) and v (targets) of the last optimal basis:
// u_i + v_j ≤ C_ij for every cell, with equality on the plan's support.
func (t *Transport) Duals() (u, v []float64) {
	u = make([]float64, t.n)
	v = make([]float64, t.m)
	for i := range u {
		u[i] = -t.pi[i]
	}
	for j := range v {
		v[j] = t.pi[t.n+j]
	}
	return u, v
}

// EMD solves the exact optimal-transport problem between weights p and q for the cost
// matrix c (len(p)×len(q)) and returns the optimal cost and plan.
func EMD(p, q []float64, c *mat.Dense) (float64, *mat.Dense, error) {
	if c == nil {
		return 0, nil, inputErr("m", "cost matrix is missing")
	}
	r, k := c.Dims()
	if r != len(p) || k != len(q) {
		return 0, nil, inputErrf("m", "shape %d×%d, want %d×%d (len(p)×len(q))", r, k, len(p), len(q))
	}
	cost := denseData(c)
	t := NewTransport()
	if err := t.Solve(p, q, cost); err != nil {
		return 0, nil, err
	}
	plan := mat.NewDense(r, k, nil)
	var total float64
	for _, e := range t.AppendPlan(nil) {
		plan.Set(e.I, e.J, e.Mass)
		total += e.Mass * cost[e.I*k+e.J]
	}
	return total, plan, nil
}
