#!/usr/bin/python3
"""POT side of `make bench-rd` (driven by host/rd/internal/cmd/rdbench).

Usage: bench_pot.py DIR N REPS. Reads DIR/c1.f64, DIR/c2.f64 (N x N) and DIR/m.f64
(N x N), little-endian float64 row-major as rdbench wrote them, uses uniform weights
ot.unif(N) (exactly 1/N, as the Go side), and times
ot.gromov.fused_gromov_wasserstein(M, C1, C2, p, q, alpha=0.5, log=True) with
time.perf_counter around the call only, keeping the fastest of REPS runs. Prints one
JSON object: seconds, value (log['fgw_dist']), iterations (len(log['loss']) - 1) and
the last linear step's EMD warning, if any.
"""

import json
import os
import sys
import time
import warnings

import numpy as np
import ot


def main():
    d, n, reps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])

    def load(name):
        return np.fromfile(os.path.join(d, name + ".f64"), dtype="<f8").reshape(n, n)

    C1, C2, M = load("c1"), load("c2"), load("m")
    p = ot.unif(n)
    q = ot.unif(n)
    best = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(reps):
            t0 = time.perf_counter()
            _, log = ot.gromov.fused_gromov_wasserstein(M, C1, C2, p, q, alpha=0.5, log=True)
            el = time.perf_counter() - t0
            best = el if best is None else min(best, el)
    print(json.dumps({
        "seconds": best,
        "value": float(log["fgw_dist"]),
        "iterations": len(log["loss"]) - 1,
        "emd_warning": log.get("warning") or "",
    }))


if __name__ == "__main__":
    main()
