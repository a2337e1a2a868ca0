"""Sparse workload: text-like CSR data, fastmlp's MLPClassifier on it as sparse, on it
densified, and scikit-learn's MLPClassifier on it as sparse.

    python -m fastmlp.bench.sparse [--full] [--rows N] [--cols D] [--nnz K] [--width H]
                                   [--solvers adam,sgd0] [--epochs E] [--repeats R]
                                   [--max-dense-mb M] [--json PATH]

The data: N rows of D columns with K stored values a row (uniform in [0, 1), columns drawn
uniformly), binary labels.  Default 5,000 × 20,000, K = 20, H = 64 (a few seconds each);
--full is issue 12's size, 20,000 × 100,000.  Solvers: adam, sgd (momentum 0.9) and sgd0
(plain SGD, momentum 0), each with the estimators' other defaults and max_iter = E.

Each fit runs in a fresh interpreter, so that its peak memory (ru_maxrss, the whole
process: Python, numpy, scipy and scikit-learn included) is its own; the three sides
alternate, ``repeats`` times, and the report gives median wall time of the fit, peak
memory and the ratios to fastmlp's sparse fit, and checks that the sides computed the same
fit: the largest relative difference of each side's loss curve from scikit-learn's.  The dense side is skipped when the dense
matrix alone would exceed --max-dense-mb (default 4,000).
"""
from __future__ import annotations

import argparse
import json
import statistics

from fastmlp.bench import harness

_CHILD = r"""
import json, resource, sys, time, warnings
import numpy as np, scipy.sparse as sp
warnings.filterwarnings("ignore")
side, solver, n, d, k, h, epochs = sys.argv[1], sys.argv[2], *map(int, sys.argv[3:])
rng = np.random.default_rng(0)
X = sp.csr_matrix((rng.random(n * k), (np.repeat(np.arange(n), k), rng.integers(0, d, n * k))),
                  shape=(n, d))
X.sum_duplicates()
y = (rng.random(n) < 0.5).astype(np.int64)
params = dict(hidden_layer_sizes=(h,), max_iter=epochs, random_state=0, solver=solver)
if solver == "sgd0":
    params.update(solver="sgd", momentum=0.0)
if side == "sklearn":
    from sklearn.neural_network import MLPClassifier
else:
    from fastmlp import MLPClassifier
if side == "fastmlp dense":
    X = X.toarray()
start = time.perf_counter()
model = MLPClassifier(**params).fit(X, y)
seconds = time.perf_counter() - start
print(json.dumps({"seconds": seconds,
                  "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "loss_curve": [float(v) for v in model.loss_curve_]}))
"""

SIDES = ("fastmlp sparse", "fastmlp dense", "sklearn")


def run_one(side, solver, args) -> dict:
    return json.loads(harness.run_child(_CHILD, (side, solver, args.rows, args.cols,
                                                  args.nnz, args.width, args.epochs)))


def curve_difference(curve, reference) -> float:
    """The largest relative difference between two loss curves (inf if their lengths
    differ: one side stopped early)."""
    if len(curve) != len(reference):
        return float("inf")
    return max(abs(a - b) / max(abs(b), 1e-300) for a, b in zip(curve, reference))


def parse_args(argv):
    p = argparse.ArgumentParser(prog="python -m fastmlp.bench.sparse",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--full", action="store_true", help="issue 12's size, 20000 x 100000")
    p.add_argument("--rows", type=int)
    p.add_argument("--cols", type=int)
    p.add_argument("--nnz", type=int, default=20, help="stored values a row")
    p.add_argument("--width", type=int, default=64, help="hidden layer width")
    p.add_argument("--solvers", default="adam,sgd0")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--max-dense-mb", type=float, default=4000.0)
    p.add_argument("--json")
    args = p.parse_args(argv)
    args.rows = args.rows or (20_000 if args.full else 5_000)
    args.cols = args.cols or (100_000 if args.full else 20_000)
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    dense_mb = args.rows * args.cols * 8 / 2**20
    sides = [s for s in SIDES if s != "fastmlp dense" or dense_mb <= args.max_dense_mb]
    print(f"sparse workload: {args.rows} x {args.cols}, {args.nnz} values a row, width "
          f"{args.width}, {args.epochs} epochs, float64 (dense X would be {dense_mb:,.0f} MB"
          f"{'' if 'fastmlp dense' in sides else ': dense side skipped'})")
    results = {}
    for solver in args.solvers.split(","):
        runs = {side: [] for side in sides}
        for _ in range(args.repeats):
            for side in sides:
                runs[side].append(run_one(side, solver, args))
        base = statistics.median(r["seconds"] for r in runs["fastmlp sparse"])
        reference = runs["sklearn"][0]["loss_curve"]
        for side in sides:
            t = statistics.median(r["seconds"] for r in runs[side])
            mb = max(r["peak_mb"] for r in runs[side])
            diff = curve_difference(runs[side][0]["loss_curve"], reference)
            results[f"{solver} / {side}"] = {"seconds": t, "peak_mb": mb,
                                             "loss_curve": runs[side][0]["loss_curve"],
                                             "loss_rel_diff_vs_sklearn": diff}
            print(f"  {solver:5s} {side:15s} {t:8.2f} s  {mb:8.0f} MB peak  "
                  f"time / fastmlp sparse: {t / base:5.2f}  loss curve vs scikit-learn: "
                  f"{diff:.1e}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"settings": vars(args), "results": results}, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
