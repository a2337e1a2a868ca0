"""Serving workload: one row per request through the public API, against the core and the
runtimes a deployment would use instead.

    fastmlp bench --serving [--quick] [--dtype float32|float64] [--rows N] [--json PATH]

Breast cancer (569 × 30, standardised), ``MLPClassifier(hidden_layer_sizes=(64, 32))``
fitted by fastmlp and by scikit-learn with the same parameters; an ``MLP`` holding
fastmlp's fitted weights (logistic output, so its forward pass is ``predict_proba[:, 1]``)
and its ONNX export under onnxruntime (one thread, as a server runs one session per
worker).  Timed, interleaved in one process: one row as a (1, 30) ndarray, as a one-row
pandas DataFrame, and a batch of N rows (default 1,000); for fastmlp's estimator also
its full validation path (the fast path switched off: what every call cost before it),
so the report shows before and after in one run.  Each time is the median over rounds
of a block of calls, with its ratio to ``MLP.forward`` on the same input.

Every timed call is first checked to give the same probabilities as ``MLP.forward``
(fastmlp's sides to 1e-12 relative in float64, 1e-5 in float32; onnxruntime to 1e-10
in float64, its kernels summing in another order, 1e-5 in float32).
"""
from __future__ import annotations

import argparse
import contextlib
import os
import tempfile
import warnings

import numpy as np

from fastmlp.bench.harness import (env_summary, environment, fmt_us, measure, require,
                                   summarize, write_json)

HIDDEN = (64, 32)
# (rounds, seconds per block, seconds of warm-up per call)
SETTINGS = {"full": (15, 0.04, 0.2), "quick": (5, 0.01, 0.05)}
TOLERANCE = {"float64": (1e-12, 1e-10), "float32": (1e-5, 1e-5)}   # (fastmlp, onnxruntime)


def _data(dtype):
    from sklearn.datasets import load_breast_cancer
    X, y = load_breast_cancer(return_X_y=True)
    X = (X - X.mean(axis=0)) / X.std(axis=0)
    return np.ascontiguousarray(X, dtype=dtype), y


@contextlib.contextmanager
def _full_validation():
    """fastmlp's estimators with the fast path off: scikit-learn's checks on every call."""
    from fastmlp.sklearn import _base
    fast = _base.fast_output
    _base.fast_output = lambda est, X: None
    try:
        yield
    finally:
        _base.fast_output = fast


def _core_model(est, dtype):
    """An MLP computing ``est``'s probability of class 1 (the binary estimator's output)."""
    import fastmlp
    net = fastmlp.MLP([est.n_features_in_, *HIDDEN, 1], activation="relu", loss="mse",
                      output_activation="logistic", dtype=dtype)
    for W, b, coef, intercept in zip(net.weights, net.biases, est.coefs_, est.intercepts_):
        W[...], b[...] = coef, intercept
    return net


def _onnx_session(net):
    """onnxruntime on ``net``'s export, one thread; None when onnx/onnxruntime are missing."""
    try:
        import onnxruntime as ort
        from fastmlp.export import to_onnx
    except ImportError:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model.onnx")
        to_onnx(net, path)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = opts.inter_op_num_threads = 1
        return ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])


def _cases(dtype, n_rows):
    """{input name: (input description, {side: callable returning P(class 1)})}."""
    import pandas as pd
    from sklearn.neural_network import MLPClassifier as SkMLP

    from fastmlp import MLPClassifier

    X, y = _data(dtype)
    names = [f"f{j}" for j in range(X.shape[1])]
    frame = pd.DataFrame(X, columns=names)
    params = dict(hidden_layer_sizes=HIDDEN, max_iter=50, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")       # ConvergenceWarning of the short fit
        ours = MLPClassifier(**params).fit(X, y)
        ours_df = MLPClassifier(**params).fit(frame, y)
        theirs = SkMLP(**params).fit(X, y)
        theirs_df = SkMLP(**params).fit(frame, y)
    net = _core_model(ours, dtype)
    session = _onnx_session(net)
    batch = np.ascontiguousarray(np.resize(X, (n_rows, X.shape[1])))
    inputs = {"1 row (ndarray)": X[:1].copy(), "1 row (DataFrame)": frame.iloc[:1].copy(),
              f"{n_rows:,} rows (ndarray)": batch}

    def sides(x, is_frame):
        est, sk = (ours_df, theirs_df) if is_frame else (ours, theirs)
        out = {"MLP.forward": lambda: net.forward(x.to_numpy() if is_frame else x)[:, 0],
               "predict_proba": lambda: est.predict_proba(x)[:, 1],
               "predict": lambda: est.predict(x),
               "predict_proba, full checks": lambda: _without_fast_path(est, x),
               "scikit-learn predict_proba": lambda: sk.predict_proba(x)[:, 1]}
        if session is not None:
            arr = x.to_numpy() if is_frame else x
            out["onnxruntime"] = lambda: session.run(["output"], {"input": arr})[0][:, 0]
        return out

    return {name: sides(x, name.endswith("(DataFrame)")) for name, x in inputs.items()}, net


def _without_fast_path(est, x):
    with _full_validation():
        return est.predict_proba(x)[:, 1]


def _check(name, fns, dtype):
    """Every side's probabilities equal MLP.forward's (scikit-learn's own model aside)."""
    ref = fns["MLP.forward"]()
    ours, ort = TOLERANCE[np.dtype(dtype).name]
    for side, fn in fns.items():
        if side in ("predict", "scikit-learn predict_proba", "MLP.forward"):
            continue
        got = fn()
        rtol = ort if side == "onnxruntime" else ours
        if not np.allclose(got, ref, rtol=rtol, atol=rtol):
            raise AssertionError(f"{name}, {side}: probabilities differ from MLP.forward "
                                 f"by {np.max(np.abs(got - ref)):.2e}")


def run(dtype="float64", quick=False, n_rows=1000) -> list[dict]:
    """Time every case; returns one row per (input, side)."""
    rounds, block_s, warmup_s = SETTINGS["quick" if quick else "full"]
    cases, _ = _cases(np.dtype(dtype), n_rows)
    rows = []
    for name, fns in cases.items():
        _check(name, fns, dtype)
        timed = measure(fns, rounds, block_s, warmup_s, pause_s=0.0)
        base = summarize(timed["MLP.forward"]["samples_us"])["median_us"]
        for side, t in timed.items():
            s = summarize(t["samples_us"])
            rows.append({"input": name, "side": side, "dtype": np.dtype(dtype).name, **s,
                         "ratio_vs_forward": s["median_us"] / base})
    return rows


def table(rows) -> str:
    lines = [f"{'input':22s} {'call':28s} {'median':>10s} {'q1–q3':>19s} {'× forward':>10s}"]
    for r in rows:
        lines.append(f"{r['input']:22s} {r['side']:28s} {fmt_us(r['median_us']):>10s} "
                     f"{fmt_us(r['q1_us']) + '–' + fmt_us(r['q3_us']):>19s} "
                     f"{r['ratio_vs_forward']:9.1f}×")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="fastmlp bench --serving", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--dtype", default="float64", choices=["float32", "float64"])
    ap.add_argument("--rows", type=int, default=1000, help="rows of the batch case")
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    if args.rows < 1:
        ap.error("--rows must be >= 1")
    require(ap, "serving", "sklearn", "pandas")
    env = environment(os.cpu_count() or 1)   # thread counts left as users get them
    print(env_summary(env), flush=True)
    rows = run(args.dtype, args.quick, args.rows)
    print(table(rows))
    if args.json:
        write_json(args.json, {"env": env, "results": rows})
    return 0
