"""Estimator workloads: fastmlp's MLPClassifier against scikit-learn's, same parameters.

    python -m fastmlp.bench.estimators [--quick] [--dtype float32|float64|both]
                                       [--solvers adam,sgd,lbfgs] [--repeats R] [--json PATH]
                                       [--threads N]

For each data set, dtype and solver both estimators are fitted with identical parameters
and random_state, alternately (fastmlp, scikit-learn, fastmlp, ...), ``repeats`` times;
the report gives the median wall time of each, their ratio (scikit-learn / fastmlp, > 1
means fastmlp is faster), the held-out scores, and whether the fitted coefficients agree.
Data sets: scikit-learn's digits, and a synthetic 10-class set of 60,000 × 784 (6,000 rows
with --quick) with hidden_layer_sizes=(256, 128).
"""
from __future__ import annotations

import argparse
import json
import time
import warnings

import numpy as np


def synthetic(n, d=784, k=10, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=1.5, size=(k, d))
    y = rng.integers(0, k, size=n)
    X = centres[y] + rng.normal(scale=4.0, size=(n, d))
    return X, y


def datasets(quick):
    from sklearn.datasets import load_digits
    X, y = load_digits(return_X_y=True)
    yield "digits", X / 16.0, y, dict(hidden_layer_sizes=(64,), max_iter=30 if quick else 100)
    n = 6_000 if quick else 60_000
    X, y = synthetic(n + n // 6)
    yield (f"synthetic {n}x784", X, y,
           dict(hidden_layer_sizes=(256, 128), max_iter=2 if quick else 5, batch_size=128))


def fit_timed(cls, params, X, y):
    est = cls(**params)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # ConvergenceWarning for short runs, by design
        t0 = time.perf_counter()
        est.fit(X, y)
        return time.perf_counter() - t0, est


def run(quick=False, dtypes=("float32", "float64"), solvers=("adam", "sgd", "lbfgs"),
        repeats=3):
    from sklearn.model_selection import train_test_split
    from sklearn.neural_network import MLPClassifier as SkMLP

    from fastmlp import MLPClassifier as FastMLP

    rows = []
    for name, X, y, base in datasets(quick):
        X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=1 / 7, random_state=0)
        for dtype in dtypes:
            Xa, Xb = X_tr.astype(dtype), X_te.astype(dtype)
            for solver in solvers:
                params = dict(base, solver=solver, random_state=0, tol=0.0)
                if solver == "lbfgs":
                    params.pop("batch_size", None)
                times = {"fastmlp": [], "sklearn": []}
                fitted = {}
                for _ in range(repeats):
                    for label, cls in (("fastmlp", FastMLP), ("sklearn", SkMLP)):
                        t, est = fit_timed(cls, params, Xa, y_tr)
                        times[label].append(t)
                        fitted[label] = est
                f, s = fitted["fastmlp"], fitted["sklearn"]
                diff = max(float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))
                           for a, b in zip(f.coefs_, s.coefs_))
                row = {
                    "data": name, "dtype": dtype, "solver": solver,
                    "fastmlp_s": float(np.median(times["fastmlp"])),
                    "sklearn_s": float(np.median(times["sklearn"])),
                    "fastmlp_score": float(f.score(Xb, y_te)),
                    "sklearn_score": float(s.score(Xb, y_te)),
                    "max_rel_coef_diff": diff,
                }
                row["speedup"] = row["sklearn_s"] / row["fastmlp_s"]
                rows.append(row)
                print(f"{name:18s} {dtype:8s} {solver:6s} fastmlp {row['fastmlp_s']:8.3f} s  "
                      f"sklearn {row['sklearn_s']:8.3f} s  speed-up {row['speedup']:5.2f}x  "
                      f"scores {row['fastmlp_score']:.4f}/{row['sklearn_score']:.4f}  "
                      f"coef diff {diff:.1e}", flush=True)
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m fastmlp.bench.estimators", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--dtype", default="both", choices=["float32", "float64", "both"])
    ap.add_argument("--solvers", default="adam,sgd,lbfgs")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json")
    ap.add_argument("--threads", type=int, default=None,
                    help="threads for every BLAS pool, both estimators (default: leave as is)")
    args = ap.parse_args(argv)
    dtypes = ("float32", "float64") if args.dtype == "both" else (args.dtype,)
    solvers = tuple(s for s in args.solvers.split(",") if s)
    bad = set(solvers) - {"adam", "sgd", "lbfgs"}
    if bad or args.repeats < 1:
        ap.error(f"unknown solver(s) {sorted(bad)}" if bad else "--repeats must be >= 1")
    undo = None
    if args.threads is not None:
        from fastmlp.bench.harness import pin_threads
        undo = pin_threads(args.threads, ["sklearn"])
    try:
        rows = run(args.quick, dtypes, solvers, args.repeats)
    finally:
        if undo is not None:
            undo()
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
