#!/usr/bin/python3
"""Reference values for host/rd, computed with POT (Python Optimal Transport).

Run by `make rd-fixtures`; needs Debian's python3-pot (POT 0.8.2) under /usr/bin/python3.
Writes host/rd/testdata/pot_fixtures.json. Every input is stored in the file, so the Go
tests read exactly what POT was given.

What is recorded per case:
  cg        ot.gromov.fused_gromov_wasserstein(M, C1, C2, p, q, alpha=alpha, log=True):
            value log['fgw_dist'] (= log['loss'][-1]) and iterations len(log['loss']) - 1
            (the number of linear steps), from the default start p q^T.
  emd       alpha = 0 cases: ot.emd2(p, q, M), the exact optimal-transport cost.
  gw        alpha = 1 cases: ot.gromov.gromov_wasserstein2(C1, C2, p, q, 'square_loss').
  entropic  POT >= 0.9's entropic_fused_gromov_wasserstein (solver='PGD',
            warmstart=False), which POT 0.8.2 lacks. Its loop is reproduced below line
            for line from POT 0.9's source, on POT 0.8.2's own ot.sinkhorn (method
            'sinkhorn', i.e. sinkhorn_knopp, whose iteration 0.9 keeps), init_matrix,
            gwggrad and gwloss. For alpha = 1 and M = 0 that loop is POT 0.8.2's
            entropic_gromov_wasserstein, and the script asserts the two agree.
"""

import json
import os
import sys

import numpy as np
import ot
from ot.gromov import gwggrad, gwloss, init_matrix


def entropic_fgw_pot09(M, C1, C2, p, q, epsilon, alpha, max_iter=1000, tol=1e-9):
    """POT 0.9 entropic_fused_gromov_wasserstein, symmetric square loss, PGD, no warmstart."""
    T = np.outer(p, q)
    constC, hC1, hC2 = init_matrix(C1, C2, p, q, 'square_loss')
    cpt = 0
    err = 1
    while err > tol and cpt < max_iter:
        Tprev = T
        tens = alpha * gwggrad(constC, hC1, hC2, T) + (1 - alpha) * M
        T = ot.sinkhorn(p, q, tens, epsilon, method='sinkhorn')
        if cpt % 10 == 0:
            err = np.linalg.norm(T - Tprev)
        cpt += 1
    value = (1 - alpha) * np.sum(M * T) + alpha * gwloss(constC, hC1, hC2, T)
    return float(value), cpt


def weights(rng, n, uniform):
    if uniform:
        return np.full(n, 1.0 / n)
    w = rng.random(n) + 0.1
    return w / w.sum()


def instance(rng, n, m, uniform, dim=3):
    xs = rng.random((n, 2))
    xt = rng.random((m, 2))
    C1 = ot.dist(xs, xs, metric='euclidean')
    C2 = ot.dist(xt, xt, metric='euclidean')
    fs = rng.random((n, dim))
    ft = rng.random((m, dim))
    M = ot.dist(fs, ft)  # squared Euclidean
    return C1, C2, M, weights(rng, n, uniform), weights(rng, m, uniform)


def tolist(a):
    return [[float(x) for x in row] for row in a]


def main(out):
    rng = np.random.default_rng(20240521)
    cases = []
    specs = [
        # name, n, m, alpha, uniform weights, entropic epsilon (None: no entropic run)
        ("uniform-8-a0.5", 8, 8, 0.5, True, 0.05),
        ("weighted-7x9-a0.5", 7, 9, 0.5, False, 0.05),
        ("uniform-12-a0.25", 12, 12, 0.25, True, None),
        ("weighted-15x11-a0.75", 15, 11, 0.75, False, None),
        ("uniform-20-a0.5", 20, 20, 0.5, True, None),
        ("weighted-25x30-a0.5", 25, 30, 0.5, False, None),
        ("uniform-30-a0.9", 30, 30, 0.9, True, None),
        ("alpha0-10x12", 10, 12, 0.0, False, None),
        ("alpha0-uniform-16", 16, 16, 0.0, True, None),
        ("alpha1-10", 10, 10, 1.0, True, 0.05),
        ("alpha1-weighted-9x13", 9, 13, 1.0, False, None),
        ("entropic-default-eps-6x7", 6, 7, 0.5, False, 0.01),
        ("entropic-10-a0.3", 10, 10, 0.3, True, 0.1),
    ]
    for name, n, m, alpha, uniform, eps in specs:
        C1, C2, M, p, q = instance(rng, n, m, uniform)
        G, log = ot.gromov.fused_gromov_wasserstein(M, C1, C2, p, q, alpha=alpha, log=True)
        case = {
            "name": name, "alpha": alpha,
            "c1": tolist(C1), "c2": tolist(C2), "m": tolist(M),
            "p": [float(x) for x in p], "q": [float(x) for x in q],
            "cg_value": float(log['fgw_dist']),
            "cg_iterations": len(log['loss']) - 1,
        }
        if n <= 10:
            case["cg_plan"] = tolist(G)
        if alpha == 0.0:
            case["emd_value"] = float(ot.emd2(p, q, M))
        if alpha == 1.0:
            gw, glog = ot.gromov.gromov_wasserstein2(C1, C2, p, q, 'square_loss', log=True)
            case["gw_value"] = float(gw)
            case["gw_iterations"] = len(glog['loss']) - 1
        if eps is not None:
            value, iters = entropic_fgw_pot09(M, C1, C2, p, q, eps, alpha)
            case["epsilon"] = eps
            case["entropic_value"] = value
            case["entropic_iterations"] = iters
            if alpha == 1.0:
                egw = ot.gromov.entropic_gromov_wasserstein2(C1, C2, p, q, 'square_loss', eps)
                if abs(egw - value) > 1e-12 * max(1.0, abs(value)):
                    sys.exit("%s: POT 0.8.2 entropic GW %r != reproduced 0.9 loop %r" % (name, egw, value))
        cases.append(case)
    doc = {
        "generator": "scripts/rd/gen_fixtures.py",
        "pot_version": ot.__version__,
        "numpy_version": np.__version__,
        "cases": cases,
    }
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as f:
        json.dump(doc, f, separators=(",", ":"))
        f.write("\n")
    print("wrote %s: %d cases, %d bytes" % (out, len(cases), os.path.getsize(out)))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "host/rd/testdata/pot_fixtures.json")
