package rd

import (
	"context"
	"math"
)

// Inner Sinkhorn settings of the entropic solver: ot.sinkhorn's defaults
// (numItermax=1000, stopThr=1e-9), which POT's entropic FGW uses.
const (
	sinkhornMaxIter = 1000
	sinkhornTol     = 1e-9
	// logDomainRatio: above this spread of cost/epsilon the kernel exp(−C/ε) would
	// underflow, so Sinkhorn runs on log-potentials instead.
	logDomainRatio = 300
)

// entropic reproduces POT ≥ 0.9's ot.gromov.entropic_fused_gromov_wasserstein with its
// defaults solver="PGD", warmstart=False, square loss (POT 0.8.2 has no fused entropic
// solver; its entropic_gromov_wasserstein is the α = 1, M = 0 case of the same loop):
//
//	T ← p·qᵀ;  repeat: tens ← α·∇gw(T) + (1−α)M;  T ← sinkhorn(p, q, tens, ε)
//	(ot.sinkhorn method="sinkhorn": u = v = uniform, at most 1000 iterations, stop when
//	the column-marginal error ‖diag(u)Kdiag(v)ᵀ1 − q‖₂ < 1e-9, checked every 10th);
//	every 10th iteration (from the first) err ← ‖T − T_prev‖_F; stop when err ≤ tol or
//	after MaxIter projections.
//
// The value is (1−α)⟨M, T⟩ + α·gwloss(T) at the final plan, POT's log["fgw_dist"]. The
// gradient is POT's 2·(constC − 2·C1·T·C2ᵀ) for symmetric structures and the
// symmetrised one otherwise, as POT ≥ 0.9 does. Where exp(−tens/ε) would underflow,
// the same Sinkhorn iterations run on log-potentials (f = ε·log u, g = ε·log v), which
// are the same iterates in exact arithmetic; the kernel is always built from tens minus
// its minimum, which changes neither the iterates' plan nor the stopping test.
func (ws *Workspace) entropic(pr *problem, cfg FGWConfig, g0 []float64) (FGWResult, error) {
	n, m := pr.n, pr.m
	nm := n * m
	ws.g = grow(ws.g, nm)
	ws.a = grow(ws.a, nm)
	ws.mi = grow(ws.mi, nm)
	ws.kprev = grow(ws.kprev, nm)
	ws.kcur = grow(ws.kcur, nm)
	if !pr.symmetric {
		ws.as = grow(ws.as, nm)
	}
	if g0 == nil {
		for i := 0; i < n; i++ {
			for j := 0; j < m; j++ {
				ws.g[i*m+j] = pr.p[i] * pr.q[j]
			}
		}
	} else {
		copy(ws.g, g0)
	}
	eps := cfg.Epsilon
	errNorm := 1.0
	cpt := 0
	innerOK := true
	for errNorm > cfg.Tol && cpt < cfg.MaxIter {
		if err := pr.ctx.Err(); err != nil {
			return FGWResult{}, err
		}
		copy(ws.kprev, ws.g)
		if err := ws.denseProducts(pr, ws.g); err != nil {
			return FGWResult{}, err
		}
		ws.gradient(pr, true)
		ok, err := ws.sinkhorn(pr, ws.mi, eps)
		if err != nil {
			return FGWResult{}, err
		}
		innerOK = ok
		if cpt%10 == 0 {
			var s float64
			for k, v := range ws.g {
				d := v - ws.kprev[k]
				s += d * d
			}
			errNorm = math.Sqrt(s)
		}
		cpt++
	}
	if err := ws.denseProducts(pr, ws.g); err != nil {
		return FGWResult{}, err
	}
	eg, ag := ws.lossTerms(pr)
	return FGWResult{
		Distance:   eg - 2*pr.alpha*ag,
		Iterations: cpt,
		Converged:  errNorm <= cfg.Tol && innerOK,
	}, nil
}

// sinkhorn writes into ws.g the entropic OT plan for cost c (row-major n×m) and
// regularisation eps, following POT's sinkhorn_knopp iteration. It reports whether the
// marginal error fell below sinkhornTol. It stops with pr.ctx's error once pr.ctx is
// done, checked before every pass: one pass is a few sweeps over n×m (milliseconds at
// n = m = 1600, with up to sinkhornMaxIter passes per projection), against which
// ctx.Err is free, and a projection of a large problem would otherwise outlive its
// deadline by minutes.
func (ws *Workspace) sinkhorn(pr *problem, c []float64, eps float64) (bool, error) {
	p, q, n, m := pr.p, pr.q, pr.n, pr.m
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, v := range c {
		lo = math.Min(lo, v)
		hi = math.Max(hi, v)
	}
	if (hi-lo)/eps <= logDomainRatio {
		ok, finite, err := ws.sinkhornScaling(pr.ctx, p, q, c, lo, eps, n, m)
		if err != nil || finite {
			return ok, err
		}
	}
	return ws.sinkhornLog(pr.ctx, p, q, c, lo, eps, n, m)
}

// sinkhornScaling is the classic scaling iteration. finite is false when a scaling
// vector overflowed or a kernel column vanished; the caller then uses log-potentials.
func (ws *Workspace) sinkhornScaling(ctx context.Context, p, q, c []float64, shift, eps float64, n, m int) (ok, finite bool, err error) {
	k := ws.kcur[:n*m]
	for i, v := range c {
		k[i] = math.Exp(-(v - shift) / eps)
	}
	ws.su = grow(ws.su, n)
	ws.sv = grow(ws.sv, m)
	ws.sw = grow(ws.sw, m)
	ws.sz = grow(ws.sz, n)
	u, v, ktu, kv := ws.su, ws.sv, ws.sw, ws.sz
	for i := range u {
		u[i] = 1 / float64(n)
	}
	for j := range v {
		v[j] = 1 / float64(m)
	}
	kTimesU := func() {
		clear(ktu)
		for i := 0; i < n; i++ {
			axpy(u[i], k[i*m:i*m+m], ktu)
		}
	}
	for ii := 0; ii < sinkhornMaxIter; ii++ {
		if err := ctx.Err(); err != nil {
			return false, false, err
		}
		ws.sinkhornPasses++
		kTimesU()
		for j := range v {
			if ktu[j] == 0 {
				return false, false, nil
			}
			v[j] = q[j] / ktu[j]
		}
		for i := 0; i < n; i++ {
			var s float64
			row := k[i*m : i*m+m]
			for j, kv := range row {
				s += kv * v[j]
			}
			kv[i] = s
			u[i] = p[i] / s
		}
		for _, x := range u {
			if math.IsNaN(x) || math.IsInf(x, 0) {
				return false, false, nil
			}
		}
		for _, x := range v {
			if math.IsNaN(x) || math.IsInf(x, 0) {
				return false, false, nil
			}
		}
		if ii%10 == 0 {
			kTimesU()
			var s float64
			for j := range v {
				d := v[j]*ktu[j] - q[j]
				s += d * d
			}
			if math.Sqrt(s) < sinkhornTol {
				ok = true
				break
			}
		}
	}
	for i := 0; i < n; i++ {
		row := k[i*m : i*m+m]
		out := ws.g[i*m : i*m+m]
		for j, kv := range row {
			out[j] = u[i] * kv * v[j]
		}
	}
	return ok, true, nil
}

// sinkhornLog runs the same iteration on f = ε·log u and g = ε·log v.
func (ws *Workspace) sinkhornLog(ctx context.Context, p, q, c []float64, shift, eps float64, n, m int) (bool, error) {
	ws.su = grow(ws.su, n)
	ws.sv = grow(ws.sv, m)
	ws.sw = grow(ws.sw, m)
	f, g, colMax := ws.su, ws.sv, ws.sw
	for i := range f {
		f[i] = eps * math.Log(1/float64(n))
	}
	for j := range g {
		g[j] = eps * math.Log(1/float64(m))
	}
	cs := ws.kcur[:n*m] // shifted cost / eps
	for k, v := range c {
		cs[k] = (v - shift) / eps
	}
	colLSE := func(out []float64) { // out_j = log Σ_i exp(f_i/ε − cs_ij)
		for j := range colMax {
			colMax[j] = math.Inf(-1)
		}
		for i := 0; i < n; i++ {
			fi := f[i] / eps
			for j, cv := range cs[i*m : i*m+m] {
				if x := fi - cv; x > colMax[j] {
					colMax[j] = x
				}
			}
		}
		clear(out)
		for i := 0; i < n; i++ {
			fi := f[i] / eps
			for j, cv := range cs[i*m : i*m+m] {
				if !math.IsInf(colMax[j], -1) {
					out[j] += math.Exp(fi - cv - colMax[j])
				}
			}
		}
		for j := range out {
			out[j] = math.Log(out[j]) + colMax[j]
		}
	}
	ws.sz = grow(ws.sz, m)
	lse := ws.sz[:m]
	ok := false
	for ii := 0; ii < sinkhornMaxIter; ii++ {
		if err := ctx.Err(); err != nil {
			return false, err
		}
		ws.sinkhornPasses++
		colLSE(lse)
		for j := range g {
			g[j] = eps * (math.Log(q[j]) - lse[j])
		}
		for i := 0; i < n; i++ {
			row := cs[i*m : i*m+m]
			mx := math.Inf(-1)
			for j, cv := range row {
				if x := g[j]/eps - cv; x > mx {
					mx = x
				}
			}
			var s float64
			if !math.IsInf(mx, -1) {
				for j, cv := range row {
					s += math.Exp(g[j]/eps - cv - mx)
				}
			}
			f[i] = eps * (math.Log(p[i]) - (math.Log(s) + mx))
		}
		if ii%10 == 0 {
			colLSE(lse)
			var s float64
			for j := range g {
				d := math.Exp(g[j]/eps+lse[j]) - q[j]
				s += d * d
			}
			if math.Sqrt(s) < sinkhornTol {
				ok = true
				break
			}
		}
	}
	for i := 0; i < n; i++ {
		for j := 0; j < m; j++ {
			ws.g[i*m+j] = math.Exp((f[i]+g[j])/eps - cs[i*m+j])
		}
	}
	return ok, nil
}
