package rd

import (
	"context"
	"encoding/json"
	"fmt"
	"math"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas64"
	"gonum.org/v1/gonum/mat"
)

// Method names an FGW solver.
type Method string

// FGW solvers.
const (
	// MethodCG is conditional gradient (Frank–Wolfe) with an exact optimal-transport
	// linear step and a closed-form line search: POT's fused_gromov_wasserstein.
	MethodCG Method = "cg"
	// MethodEntropic is projected gradient with Sinkhorn projections: POT ≥ 0.9's
	// entropic_fused_gromov_wasserstein with solver="PGD".
	MethodEntropic Method = "entropic"
)

// Defaults of FGWConfig (see DefaultFGWConfig).
const (
	DefaultAlpha           = 0.5
	DefaultCGMaxIter       = 200
	DefaultCGTol           = 1e-9
	DefaultEpsilon         = 0.01 // POT ≥ 0.9 uses 0.1; 0.01 is this project's choice
	DefaultEntropicMaxIter = 1000
	DefaultEntropicTol     = 1e-9
)

// FGWConfig parameterises Fused Gromov–Wasserstein. Alpha and Epsilon are used as
// given; MaxIter and Tol of zero mean the method's default.
type FGWConfig struct {
	// Method is MethodCG (default when empty) or MethodEntropic.
	Method Method `json:"method,omitempty"`
	// Alpha in [0, 1] weighs structure against features: 0 is plain optimal transport
	// on the feature cost, 1 is Gromov–Wasserstein.
	Alpha float64 `json:"alpha"`
	// Epsilon > 0 is the entropic regularisation (entropic method only).
	Epsilon float64 `json:"epsilon,omitempty"`
	// MaxIter bounds the outer iterations: 200 (cg) or 1000 (entropic) by default.
	MaxIter int `json:"max_iter,omitempty"`
	// Tol is the stopping threshold: for cg on both the relative and the absolute change
	// of the loss between iterations; for entropic on the Frobenius norm of the change of
	// the plan (checked every 10 iterations, as POT does). Default 1e-9.
	Tol float64 `json:"tol,omitempty"`
}

// DefaultFGWConfig returns the defaults for method: alpha 0.5; cg: max_iter 200, tol
// 1e-9; entropic: epsilon 0.01, max_iter 1000, tol 1e-9.
func DefaultFGWConfig(method Method) FGWConfig {
	if method == MethodEntropic {
		return FGWConfig{Method: method, Alpha: DefaultAlpha, Epsilon: DefaultEpsilon,
			MaxIter: DefaultEntropicMaxIter, Tol: DefaultEntropicTol}
	}
	return FGWConfig{Method: MethodCG, Alpha: DefaultAlpha, MaxIter: DefaultCGMaxIter, Tol: DefaultCGTol}
}

// normalize validates cfg and fills zero MaxIter and Tol with the method's defaults.
func (cfg FGWConfig) normalize() (FGWConfig, error) {
	switch cfg.Method {
	case "":
		cfg.Method = MethodCG
	case MethodCG, MethodEntropic:
	default:
		return cfg, inputErrf("method", "unknown method %q: use \"cg\" or \"entropic\"", cfg.Method)
	}
	if math.IsNaN(cfg.Alpha) || cfg.Alpha < 0 || cfg.Alpha > 1 {
		return cfg, inputErrf("alpha", "%v is outside [0, 1]", cfg.Alpha)
	}
	if cfg.MaxIter < 0 {
		return cfg, inputErrf("max_iter", "%d is negative", cfg.MaxIter)
	}
	if math.IsNaN(cfg.Tol) || math.IsInf(cfg.Tol, 0) || cfg.Tol < 0 {
		return cfg, inputErrf("tol", "%v must be a finite number ≥ 0", cfg.Tol)
	}
	def := DefaultFGWConfig(cfg.Method)
	if cfg.MaxIter == 0 {
		cfg.MaxIter = def.MaxIter
	}
	if cfg.Tol == 0 {
		cfg.Tol = def.Tol
	}
	if cfg.Method == MethodEntropic {
		if math.IsNaN(cfg.Epsilon) || math.IsInf(cfg.Epsilon, 0) || cfg.Epsilon <= 0 {
			return cfg, inputErrf("epsilon", "%v: the entropic method needs epsilon > 0", cfg.Epsilon)
		}
	}
	return cfg, nil
}

// FGWResult is the outcome of an FGW computation.
type FGWResult struct {
	// Distance is the FGW loss (1−α)⟨M,T⟩ + α Σ (C1_ik − C2_jl)² T_ij T_kl at the final
	// plan T: from POT's start p·qᵀ, or with WithStarts the least over several starts
	// (p·qᵀ; the identity when the graphs have the same size and weights; for cg the
	// feature cost's transport plan and a pairwise-exchange refinement of a permutation
	// plan). Either way an upper bound on the FGW distance, which is a minimum over
	// plans. For the entropic method it is the
	// same loss of the entropic plan (not the entropic objective: no entropy term), a
	// plan blurred by epsilon, so it lies above cg's. For cg it is evaluated
	// from T itself, by that definition over T's support when T is sparse (as cg's plans
	// usually are), so it is T's loss to float64's relative rounding.
	Distance float64 `json:"distance"`
	// Iterations is the number of outer iterations of the run whose plan is returned:
	// linear (optimal-transport) steps for cg, Sinkhorn projections for entropic.
	Iterations int `json:"iterations"`
	// Converged is false when MaxIter stopped the solver before its tolerance was met,
	// or (entropic) when the last Sinkhorn projection did not reach its marginals.
	Converged bool `json:"converged"`
	// Method is the solver that ran.
	Method Method `json:"method"`
	// Plan is the final transport plan (n×m) when WithPlan was given.
	Plan *mat.Dense `json:"-"`
}

// MarshalJSON writes the result with the plan, if any, as "plan": rows of numbers.
func (r FGWResult) MarshalJSON() ([]byte, error) {
	type plain FGWResult
	out := struct {
		plain
		Plan [][]float64 `json:"plan,omitempty"`
	}{plain: plain(r)}
	if r.Plan != nil {
		rows, _ := r.Plan.Dims()
		out.Plan = make([][]float64, rows)
		for i := range out.Plan {
			out.Plan[i] = append([]float64(nil), r.Plan.RawRowView(i)...)
		}
	}
	return json.Marshal(out)
}

// FGWOption adjusts one FGW call.
type FGWOption func(*fgwOptions)

type fgwOptions struct {
	plan   bool
	g0     *mat.Dense
	starts bool
	ws     *Workspace
	ctx    context.Context
}

// WithPlan asks for the final transport plan in FGWResult.Plan.
func WithPlan() FGWOption { return func(o *fgwOptions) { o.plan = true } }

// WithStarts runs the solver from other start plans besides POT's p·qᵀ and keeps the
// plan of least loss (see FGWResult.Distance). FGW's objective is not convex and p·qᵀ is
// a tie between graphs with symmetries: from it alone a 4-node path graph is at 0.25
// from itself (cg) and a 2-node graph at 0.25 (entropic, which stays at p·qᵀ). With
// WithStarts a graph against itself or a relabelled copy is at 0 (cg). It costs one
// to three more solves, and a pass of O(n³) pairwise exchanges for cg between graphs of
// at most twoOptMaxNodes nodes. Without it FGW computes what POT does. WithInitialPlan
// overrides it.
func WithStarts() FGWOption { return func(o *fgwOptions) { o.starts = true } }

// WithInitialPlan starts the solver from g0 instead of p·qᵀ. g0 must be n×m with marginals p and q (within 1e-8, as POT checks).
func WithInitialPlan(g0 *mat.Dense) FGWOption { return func(o *fgwOptions) { o.g0 = g0 } }

// WithContext stops the solver, with ctx's error, once ctx is done: checked at each outer
// iteration, at each Sinkhorn pass of the entropic method and every few pivots of cg's
// linear steps, so that no stretch of work between two checks is long.
func WithContext(ctx context.Context) FGWOption { return func(o *fgwOptions) { o.ctx = ctx } }

// WithWorkspace runs the solver in ws, so repeated calls reuse its memory.
func WithWorkspace(ws *Workspace) FGWOption { return func(o *fgwOptions) { o.ws = ws } }

// FGW computes the Fused Gromov–Wasserstein distance with the square loss between the
// attributed graphs (c1, p) and (c2, q), whose features differ by the cost m:
//
//	min_T (1−α)⟨M, T⟩ + α Σ_ijkl (C1_ik − C2_jl)² T_ij T_kl  over couplings T of p and q,
//
// as POT defines it. c1 is n×n, c2 m×m, m n×m; all entries finite and non-negative;
// p and q non-negative, summing to 1 within 1e-9. Non-symmetric structure matrices are
// allowed: the gradient then uses both C and Cᵀ, as POT ≥ 0.9 does.
//
// A problem whose feature cost varies by less than float64 can resolve beside its
// structure term ((1−α)·(max M − min M) below 16·(n+m)·2⁻⁵³ of α·max(C1, C2)²: entries
// of 1e8 against a feature cost of 1) is refused with a *PrecisionError: the solvers
// would otherwise pick the plan as if M were constant.
func FGW(c1, c2, m *mat.Dense, p, q []float64, cfg FGWConfig, opts ...FGWOption) (FGWResult, error) {
	var o fgwOptions
	for _, opt := range opts {
		opt(&o)
	}
	cfg, err := cfg.normalize()
	if err != nil {
		return FGWResult{}, err
	}
	if err := validateFGW(c1, c2, m, p, q); err != nil {
		return FGWResult{}, err
	}
	n, k := len(p), len(q)
	if o.g0 != nil {
		if err := checkMatrix("g0", o.g0, n, k, "len(p)×len(q)"); err != nil {
			return FGWResult{}, err
		}
		if err := checkPlanMarginals(o.g0, p, q); err != nil {
			return FGWResult{}, err
		}
	}
	if err := checkScales(c1, c2, m, cfg.Alpha); err != nil {
		return FGWResult{}, err
	}
	ws := o.ws
	if ws == nil {
		ws = NewWorkspace()
	}
	pr := ws.setup(c1, c2, m, p, q, cfg.Alpha)
	pr.ctx = o.ctx
	if pr.ctx == nil {
		pr.ctx = context.Background()
	}
	ws.sinkhornPasses = 0
	var g0 []float64
	if o.g0 != nil {
		g0 = denseData(o.g0)
	}
	res, err := ws.solve(pr, cfg, g0, o.starts)
	if err != nil {
		return FGWResult{}, err
	}
	res.Method = cfg.Method
	// The loss is a sum of non-negative terms; the entropic solver, and cg for a dense
	// plan, compute it by cancellation (⟨constC, G⟩ − 2⟨C1·G·C2ᵀ, G⟩), which leaves
	// −1e-15 between a graph and itself.
	res.Distance = math.Max(0, res.Distance)
	if o.plan {
		res.Plan = mat.NewDense(n, k, append([]float64(nil), ws.g[:n*k]...))
	}
	return res, nil
}

func validateFGW(c1, c2, m *mat.Dense, p, q []float64) error {
	if err := checkSquare("c1", c1); err != nil {
		return err
	}
	if err := checkSquare("c2", c2); err != nil {
		return err
	}
	n, _ := c1.Dims()
	k, _ := c2.Dims()
	if err := checkMatrix("m", m, n, k, "rows of c1 × rows of c2"); err != nil {
		return err
	}
	if len(p) != n {
		return inputErrf("p", "has %d weights, want %d (the size of c1)", len(p), n)
	}
	if len(q) != k {
		return inputErrf("q", "has %d weights, want %d (the size of c2)", len(q), k)
	}
	if err := checkMarginal("p", p, 1); err != nil {
		return err
	}
	return checkMarginal("q", q, 1)
}

// precisionMargin times (n+m)·2⁻⁵³ is the smallest ratio of the feature term's range
// to the structure term's scale that FGW accepts: the rounding error of a structure
// product C1·G·C2ᵀ is bounded by about (n+m)·2⁻⁵³ of its scale, and the gradient holds
// it four times over (α·4·C1·G·C2ᵀ); the margin leaves the feature cost a few bits.
const precisionMargin = 16

// checkScales refuses, with a *PrecisionError, a problem whose feature cost would be
// lost to the rounding of its structure term (see PrecisionError). A constant M (range
// 0), alpha 0 or 1, or zero structures are never refused: M then does not matter, or
// nothing else does.
func checkScales(c1, c2, m *mat.Dense, alpha float64) error {
	maxC := 0.0
	for _, c := range []*mat.Dense{c1, c2} {
		r, _ := c.Dims()
		for i := 0; i < r; i++ {
			for _, v := range c.RawRowView(i) {
				maxC = math.Max(maxC, v)
			}
		}
	}
	lo, hi := math.Inf(1), math.Inf(-1)
	r, k := m.Dims()
	for i := 0; i < r; i++ {
		for _, v := range m.RawRowView(i) {
			lo = math.Min(lo, v)
			hi = math.Max(hi, v)
		}
	}
	structure := alpha * maxC * maxC
	feature := (1 - alpha) * (hi - lo)
	if structure == 0 || feature == 0 {
		return nil
	}
	minRatio := precisionMargin * float64(r+k) * 0x1p-53
	if ratio := feature / structure; ratio < minRatio {
		return &PrecisionError{Feature: feature, Structure: structure, Ratio: ratio, MinRatio: minRatio}
	}
	return nil
}

func checkPlanMarginals(g *mat.Dense, p, q []float64) error {
	n, k := g.Dims()
	cols := make([]float64, k)
	for i := 0; i < n; i++ {
		var s float64
		for j, v := range g.RawRowView(i) {
			s += v
			cols[j] += v
		}
		if math.Abs(s-p[i]) > 1e-8 {
			return inputErrf("g0", "row %d sums to %v, want p[%d] = %v", i, s, i, p[i])
		}
	}
	for j, s := range cols {
		if math.Abs(s-q[j]) > 1e-8 {
			return inputErrf("g0", "column %d sums to %v, want q[%d] = %v", j, s, j, q[j])
		}
	}
	return nil
}

// FeatureCost returns the squared Euclidean distances between the rows of a (n×d) and
// the rows of b (m×d): the feature cost M of FGW.
func FeatureCost(a, b *mat.Dense) (*mat.Dense, error) {
	if a == nil || a.IsEmpty() {
		return nil, inputErr("features_a", "feature matrix is missing")
	}
	if b == nil || b.IsEmpty() {
		return nil, inputErr("features_b", "feature matrix is missing")
	}
	n, d := a.Dims()
	k, d2 := b.Dims()
	if d != d2 {
		return nil, inputErrf("features_b", "has %d features per node, features_a has %d", d2, d)
	}
	for _, x := range []struct {
		f string
		a *mat.Dense
	}{{"features_a", a}, {"features_b", b}} {
		r, _ := x.a.Dims()
		for i := 0; i < r; i++ {
			for j, v := range x.a.RawRowView(i) {
				if math.IsNaN(v) || math.IsInf(v, 0) {
					return nil, inputErrf(x.f, "entry [%d][%d] is %v: features must be finite", i, j, v)
				}
				if math.Abs(v) > MaxMagnitude {
					return nil, inputErrf(x.f, "entry [%d][%d] is %v: features beyond ±%g overflow their squared distances; scale them down", i, j, v, MaxMagnitude)
				}
			}
		}
	}
	out := mat.NewDense(n, k, nil)
	for i := 0; i < n; i++ {
		ai := a.RawRowView(i)
		row := out.RawRowView(i)
		for j := 0; j < k; j++ {
			bj := b.RawRowView(j)
			var s float64
			for t := range ai {
				d := ai[t] - bj[t]
				s += d * d
			}
			if s > MaxMagnitude {
				return nil, inputErrf("features_b", "row %d is %v (squared) from row %d of features_a: squared distances above %g overflow the solver; scale the features down", j, s, i, MaxMagnitude)
			}
			row[j] = s
		}
	}
	return out, nil
}

// Workspace holds the buffers of FGW solvers so that repeated calls of the same or
// smaller size allocate nothing. The conditional-gradient solver uses six n×m-sized
// buffers (eight, plus transposed copies of C1 and C2, for non-symmetric structures),
// the transport solver O(n+m). A Workspace is not safe for concurrent use.
type Workspace struct {
	g, a, b, mi, x, y []float64
	as, bs            []float64 // C1ᵀ·G·C2 and its vertex counterpart (non-symmetric only)
	c1t, c2t          []float64 // transposes (non-symmetric only)
	kprev, kcur       []float64 // entropic: Sinkhorn kernel and previous plan
	su, sv, sw, sz    []float64 // vectors of length n or m
	constR, constC    []float64
	constRt, constCt  []float64
	vtx, prevVtx      []PlanEntry
	diff              []PlanEntry
	colID             []int32
	cols              []int32
	tr                Transport
	start, best       []float64 // solve: a start plan, the best plan so far
	perm, permTmp     []int     // solve: a permutation plan and scratch
	// sinkhornPasses counts the Sinkhorn passes of the last entropic call (what a
	// cancelled call reached, for its tests).
	sinkhornPasses int
}

// NewWorkspace returns an empty workspace; buffers grow on first use.
func NewWorkspace() *Workspace { return &Workspace{} }

// problem is one FGW instance in the workspace's terms.
type problem struct {
	n, m      int
	c1, c2    []float64 // row-major
	feat      []float64 // row-major n×m feature cost
	p, q      []float64
	alpha     float64
	symmetric bool
	// ctx stops the solver when done.
	ctx context.Context
}

func grow(s []float64, n int) []float64 {
	if cap(s) < n {
		return make([]float64, n)
	}
	return s[:n]
}

// setup checks symmetry and computes the constant parts of the square loss:
// constC_ij = Σ_k C1_ik² p_k + Σ_l C2_jl² q_l (POT's init_matrix), stored as a row
// vector part and a column vector part.
func (ws *Workspace) setup(c1, c2, m *mat.Dense, p, q []float64, alpha float64) *problem {
	n, k := len(p), len(q)
	pr := &problem{n: n, m: k, c1: denseData(c1), c2: denseData(c2), feat: denseData(m), p: p, q: q, alpha: alpha}
	pr.symmetric = isSymmetric(pr.c1, n) && isSymmetric(pr.c2, k)
	ws.constR = grow(ws.constR, n)
	ws.constC = grow(ws.constC, k)
	squareLossConst(pr.c1, n, p, ws.constR, false)
	squareLossConst(pr.c2, k, q, ws.constC, false)
	if !pr.symmetric {
		ws.constRt = grow(ws.constRt, n)
		ws.constCt = grow(ws.constCt, k)
		squareLossConst(pr.c1, n, p, ws.constRt, true)
		squareLossConst(pr.c2, k, q, ws.constCt, true)
		ws.c1t = transposeInto(ws.c1t, pr.c1, n)
		ws.c2t = transposeInto(ws.c2t, pr.c2, k)
	}
	return pr
}

// isSymmetric reports whether the n×n matrix c equals its transpose within 1e-10
// absolute, POT ≥ 0.9's test.
func isSymmetric(c []float64, n int) bool {
	for i := 0; i < n; i++ {
		for j := i + 1; j < n; j++ {
			if math.Abs(c[i*n+j]-c[j*n+i]) > 1e-10 {
				return false
			}
		}
	}
	return true
}

// squareLossConst sets out_i = Σ_k C_ik² w_k (or Σ_k C_ki² w_k when transposed).
func squareLossConst(c []float64, n int, w, out []float64, transposed bool) {
	for i := 0; i < n; i++ {
		var s float64
		for k := 0; k < n; k++ {
			v := c[i*n+k]
			if transposed {
				v = c[k*n+i]
			}
			s += v * v * w[k]
		}
		out[i] = s
	}
}

func transposeInto(dst, c []float64, n int) []float64 {
	dst = grow(dst, n*n)
	for i := 0; i < n; i++ {
		for j := 0; j < n; j++ {
			dst[j*n+i] = c[i*n+j]
		}
	}
	return dst
}

// gemm computes C = beta·C + A·B for row-major A (r×k), B (k×c), C (r×c), with
// optional transposition of A (then stored k×r).
func gemm(transA bool, r, c, k int, a, b []float64, beta float64, dst []float64) {
	ta := blas.NoTrans
	lda := k
	if transA {
		ta = blas.Trans
		lda = r
	}
	if r == 0 || c == 0 {
		return
	}
	if k == 0 {
		for i := range dst[:r*c] {
			dst[i] *= beta
		}
		return
	}
	blas64.Implementation().Dgemm(ta, blas.NoTrans, r, c, k, 1, a, lda, b, c, beta, dst, c)
}

// errf wraps a solver failure with context.
func errf(format string, args ...any) error { return fmt.Errorf("fgw: "+format, args...) }
