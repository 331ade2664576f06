// Package rd is the host's rate–distortion core: Fused Gromov–Wasserstein (FGW)
// distortion between attributed graphs, Shannon rate–distortion (the Gaussian R(D) and
// Blahut–Arimoto for discrete sources), and knee detection (Menger curvature, Kneedle)
// to pick an operating point on a quality/cost curve.
//
// FGW follows POT (Python Optimal Transport), the reference its users know:
// conditional gradient reproduces POT 0.8.2's fused_gromov_wasserstein (same start,
// gradient, exact linear step, closed-form line search and stopping rule; the tests
// compare with values POT computed, see scripts/rd/gen_fixtures.py), on an own network
// simplex solver for the exact optimal-transport steps (Transport, warm-started between
// iterations) and with the structure products kept up to date incrementally instead of
// recomputed. The entropic variant reproduces POT ≥ 0.9's
// entropic_fused_gromov_wasserstein (projected gradient with Sinkhorn projections,
// log-domain when the kernel would underflow).
//
// Matrices are gonum *mat.Dense values. Bad input returns an *InputError naming the
// argument. Result types carry JSON tags in the spelling of the HTTP API.
package rd
