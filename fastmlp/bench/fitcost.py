"""Fit overhead: what fastmlp's scikit-learn estimators cost beyond the core's epochs.

    fastmlp bench --fit-overhead [--quick] [--dtype float32|float64] [--rows N] [--json PATH]

Two cases, each timed interleaved in one process (medians over rounds):

- **small**: iris (150 × 4), ``MLPClassifier()`` (hidden (100,), adam, batch 150) for 1 and
  200 epochs (``n_iter_no_change`` past ``max_iter``, so every epoch runs), against
  ``MLP(...)`` built and ``fit`` for the same epochs with the same optimizer, L2 and
  batch: the estimator's fixed cost (validation, label encoding, initialisation) and its
  per-epoch bookkeeping (shuffling, stopping rules) show as the ratio.  float64.
- **large**: N × 784 synthetic rows (default 20,000), 10 classes, ``hidden (256, 128)``,
  adam, batch 200, 2 epochs, against ``MLP.fit`` doing the same and against the bare GEMMs
  of those epochs' steps (numpy's matmul into preallocated arrays, the ``gemms`` peer):
  what the whole step — bias, activation, loss, Adam's update, the row gather — adds to
  its products.

The estimator's one-epoch fit is also broken down by phase (each phase timed on its own,
medians) so that the fixed cost has names.
"""
from __future__ import annotations

import argparse
import os
import time
import warnings

import numpy as np

from fastmlp.bench.harness import (env_summary, environment, fmt_us, measure, require,
                                   publish, summarize)

SMALL_EPOCHS = (1, 200)
LARGE = dict(width=784, classes=10, hidden=(256, 128), batch=200, epochs=2)
# (rounds, seconds per block, seconds of warm-up per call)
SETTINGS = {"full": (15, 0.05, 0.2), "quick": (5, 0.01, 0.02)}


def _small_case(epochs):
    from sklearn.datasets import load_iris

    import fastmlp
    X, y = load_iris(return_X_y=True)
    X = np.ascontiguousarray(X, dtype=np.float64)
    est = fastmlp.MLPClassifier(max_iter=epochs, n_iter_no_change=epochs + 1, random_state=0)
    n = X.shape[0]

    def estimator():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")          # max_iter reached, by design
            est.fit(X, y)

    def core():
        net = fastmlp.MLP([X.shape[1], 100, 3], loss="softmax_cross_entropy",
                          dtype=np.float64, optimizer="adam", l2=est.alpha, seed=0)
        net.fit(X, y, epochs=epochs, batch_size=min(200, n), lr=est.learning_rate_init,
                seed=0)

    return {"MLPClassifier.fit": estimator, "MLP(...).fit": core}


def _large_case(rows, dtype):
    import fastmlp
    from fastmlp.bench.estimators import synthetic
    from fastmlp.bench.peers import GemmsPeer
    X, y = synthetic(rows, LARGE["width"], LARGE["classes"])
    X = np.ascontiguousarray(X, dtype=dtype)
    hidden, batch, epochs = LARGE["hidden"], LARGE["batch"], LARGE["epochs"]
    sizes = [X.shape[1], *hidden, LARGE["classes"]]
    est = fastmlp.MLPClassifier(hidden_layer_sizes=hidden, batch_size=batch, max_iter=epochs,
                                n_iter_no_change=epochs + 1, random_state=0)

    def estimator():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            est.fit(X, y)

    def core():
        net = fastmlp.MLP(sizes, loss="softmax_cross_entropy", dtype=dtype, optimizer="adam",
                          l2=est.alpha, seed=0)
        net.fit(X, y, epochs=epochs, batch_size=batch, lr=est.learning_rate_init, seed=0)

    gemms, last = GemmsPeer(), GemmsPeer()
    gemms.setup(sizes, "softmax_cross_entropy", dtype, X[:batch], y[:batch])
    steps, rest = divmod(rows, batch)
    if rest:
        last.setup(sizes, "softmax_cross_entropy", dtype, X[:rest], y[:rest])

    def products():
        for _ in range(epochs):
            for _ in range(steps):
                gemms.step()
            if rest:
                last.step()

    return {"MLPClassifier.fit": estimator, "MLP(...).fit": core, "GEMMs alone": products}


def _phases():
    """The estimator's one-epoch iris fit, phase by phase: {phase: median µs}."""
    import sklearn
    from sklearn.datasets import load_iris
    from sklearn.utils import check_random_state
    from sklearn.utils.validation import validate_data

    import fastmlp
    from fastmlp.sklearn._labels import fit_binarizer
    X, y = load_iris(return_X_y=True)
    X = np.ascontiguousarray(X, dtype=np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = fastmlp.MLPClassifier(max_iter=1, random_state=0).fit(X, y)  # (its encoder)
    Y = fit_binarizer(y)[1]

    def initialise():
        est._random_state = check_random_state(0)
        est._initialize(Y, [4, 100, 3], np.dtype(np.float64))

    def config():
        with sklearn.config_context(skip_parameter_validation=True):
            pass

    phases = {
        "parameter checks": est._check_params,
        "validate_data(X, y)": lambda: validate_data(
            est, X, y, accept_sparse=["csr", "csc"], multi_output=True,
            dtype=(np.float64, np.float32), reset=True),
        "label encoding": lambda: fit_binarizer(y),
        "RandomState(random_state)": lambda: check_random_state(0),
        "RandomState + initial weights": initialise,
        "config_context": config,
    }
    out = {}
    for name, fn in phases.items():
        fn()
        samples = []
        for _ in range(7):
            t0 = time.perf_counter()
            for _ in range(200):
                fn()
            samples.append((time.perf_counter() - t0) / 200 * 1e6)
        out[name] = float(np.median(samples))
    return out


def run(dtype="float32", quick=False, rows=20_000) -> dict:
    rounds, block_s, warmup_s = SETTINGS["quick" if quick else "full"]
    results = []
    cases = [(f"iris, {e} epoch{'s' if e > 1 else ''}", "float64", _small_case(e))
             for e in SMALL_EPOCHS]
    cases.append((f"{rows:,} x 784, adam, {LARGE['epochs']} epochs", np.dtype(dtype).name,
                  _large_case(rows, np.dtype(dtype))))
    for name, dt, fns in cases:
        big = name.startswith(f"{rows:,}")
        timed = measure(fns, min(rounds, 5) if big else rounds, 0.0 if big else block_s,
                        0.0 if big else warmup_s, pause_s=0.0)
        base = "GEMMs alone" if "GEMMs alone" in fns else "MLP(...).fit"
        ref = summarize(timed[base]["samples_us"])["median_us"]
        for side, t in timed.items():
            s = summarize(t["samples_us"])
            results.append({"case": name, "dtype": dt, "side": side, **s,
                            "ratio": s["median_us"] / ref, "ratio_to": base})
    return {"results": results, "phases_us": _phases()}


def table(report) -> str:
    lines = [f"{'case':34s} {'side':18s} {'median':>12s} {'ratio':>8s}  to"]
    for r in report["results"]:
        lines.append(f"{r['case']:34s} {r['side']:18s} {fmt_us(r['median_us']):>12s} "
                     f"{r['ratio']:7.3f}×  {r['ratio_to']}")
    lines.append("\nMLPClassifier.fit, iris, one epoch, by phase (medians):")
    for name, us in report["phases_us"].items():
        lines.append(f"  {name:28s} {fmt_us(us):>10s}")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="fastmlp bench --fit-overhead", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64"],
                    help="dtype of the large case (the small one is float64, as iris is)")
    ap.add_argument("--rows", type=int, default=20_000, help="rows of the large case")
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    if args.rows < LARGE["batch"]:
        ap.error(f"--rows must be at least the batch size, {LARGE['batch']}")
    require(ap, "fit-overhead", "sklearn")
    env = environment(os.cpu_count() or 1)   # thread counts left as users get them
    print(env_summary(env), flush=True)
    report = run(args.dtype, args.quick, args.rows)
    return publish(table(report), env, report, args.json)
