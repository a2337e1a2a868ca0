"""Fingerprints of fastmlp's results on a fixed set of cases, to prove a refactor changes
no bit of them.

    python tools/fingerprint.py record FILE   # before the change, with the old build
    python tools/fingerprint.py check FILE    # after it, with the new build: exit 1 on a diff

Each case trains a small model (MLP with every activation, optimizer, dtype, dropout, L2,
dense and sparse X; both estimators with every solver, early stopping, sparse X) and
hashes the bytes of what it produced: the parameters, the losses, the predictions.  A hash
compares bits exactly, so "equal" here means bit-identical, not close.  Run both sides on
one machine: the vectorised kernels are chosen per instruction set, and BLAS results may
differ between CPUs.
"""
from __future__ import annotations

import hashlib
import json
import sys
import warnings
from typing import Any, Callable

import numpy as np
import scipy.sparse as sp

import fastmlp


def _digest(*arrays: Any) -> str:
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(np.asarray(a))
        h.update(str(a.dtype).encode() + str(a.shape).encode())
        h.update(a.tobytes())
    return h.hexdigest()[:20]


def _data(dtype: Any, n: int = 120, d: int = 12, k: int = 3, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)).astype(dtype)
    X[rng.random(X.shape) < 0.6] = 0          # sparse-friendly, same values either way
    labels = (X[:, 0] - X[:, 1] > 0).astype(np.int64) + (X[:, 2] > 0.5)
    Y = np.column_stack([np.sin(X[:, 0]), X[:, 1] * X[:, 2]]).astype(dtype)
    return X, labels % k, Y


def _mlp_cases() -> dict[str, Callable[[], str]]:
    cases: dict[str, Callable[[], str]] = {}
    acts = ["relu", "tanh", "logistic", "identity", "leaky_relu", "elu", "gelu", "silu",
            "softplus"]
    for dtype in (np.float32, np.float64):
        dn = np.dtype(dtype).name
        for sparse in (False, True):
            for opt in ("sgd", "momentum", "nesterov", "adam"):
                for act in acts:
                    for loss in ("softmax_cross_entropy", "mse"):
                        if loss == "mse" and act not in ("relu", "gelu"):
                            continue
                        extra: dict[str, Any] = {}
                        if act == "tanh":
                            extra = {"dropout": 0.2}
                        if act in ("relu", "silu"):
                            extra = {"l2": 1e-3}
                        name = f"MLP/{dn}/{'sparse' if sparse else 'dense'}/{opt}/{act}/{loss}"
                        cases[name] = _mlp_case(dtype, sparse, opt, act, loss, extra)
    return cases


def _mlp_case(dtype, sparse, opt, act, loss, extra):
    def run() -> str:
        X, labels, Y = _data(dtype)
        Xin = sp.csr_matrix(X) if sparse else X
        target = labels if loss == "softmax_cross_entropy" else Y
        d_out = 3 if loss == "softmax_cross_entropy" else 2
        net = fastmlp.MLP([X.shape[1], 16, 8, d_out], activation=act, loss=loss,
                          dtype=dtype, seed=1, optimizer=opt, **extra)
        lr = 0.01 if opt == "adam" else 0.05
        losses = net.fit(Xin, target, epochs=3, batch_size=16, lr=lr, seed=2)
        step = net.train_step(Xin[:7], target[:7], lr=lr)
        lg, grads = net.loss_and_grad(Xin[:33], target[:33])
        flat = [g for pair in grads for g in pair]
        return _digest(net.params, np.asarray(losses), np.asarray([step, lg]), *flat,
                       net.forward(Xin))
    return run


def _estimator_cases() -> dict[str, Callable[[], str]]:
    try:
        from fastmlp.sklearn import MLPClassifier, MLPRegressor
    except ImportError:
        return {}
    cases: dict[str, Callable[[], str]] = {}
    for solver in ("sgd", "adam", "lbfgs"):
        for sparse in (False, True):
            for es in (False, True):
                if solver == "lbfgs" and es:
                    continue
                for kind in ("clf", "binary", "reg"):
                    name = f"est/{kind}/{solver}/{'sparse' if sparse else 'dense'}/es={es}"
                    cases[name] = _estimator_case(MLPClassifier, MLPRegressor, kind, solver,
                                                  sparse, es)
    return cases


def _estimator_case(MLPClassifier, MLPRegressor, kind, solver, sparse, es):
    def run() -> str:
        X, labels, Y = _data(np.float64, n=150, seed=3)
        Xin = sp.csr_matrix(X) if sparse else X
        common = dict(hidden_layer_sizes=(10, 6), solver=solver, max_iter=25,
                      random_state=0, early_stopping=es, alpha=1e-3)
        if solver == "sgd":
            common.update(learning_rate="adaptive", momentum=0.9, nesterovs_momentum=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if kind == "reg":
                est = MLPRegressor(activation="tanh", **common).fit(Xin, Y[:, 0])
                out = [est.predict(Xin)]
            else:
                y = labels if kind == "clf" else labels % 2
                est = MLPClassifier(**common).fit(Xin, y)
                out = [est.predict_proba(Xin), est.predict(Xin)]
                if solver != "lbfgs" and not es:
                    est.partial_fit(Xin[:40], y[:40])
                    out.append(est.predict_proba(Xin))
        return _digest(*est.coefs_, *est.intercepts_, np.asarray(getattr(est, "loss_curve_", [])),
                       *out,
                       np.asarray(est.n_iter_))
    return run


def fingerprints() -> dict[str, str]:
    cases = {**_mlp_cases(), **_estimator_cases()}
    return {name: run() for name, run in cases.items()}


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in ("record", "check"):
        print(__doc__, file=sys.stderr)
        return 2
    mode, path = argv
    got = fingerprints()
    if mode == "record":
        with open(path, "w") as f:
            json.dump(got, f, indent=1, sort_keys=True)
        print(f"recorded {len(got)} cases in {path}")
        return 0
    with open(path) as f:
        want = json.load(f)
    differ = sorted(k for k in want if got.get(k) != want[k])
    missing = sorted(set(want) ^ set(got))
    for k in differ:
        print(f"DIFFERS: {k}")
    for k in missing:
        print(f"only on one side: {k}")
    print(f"{len(want) - len(differ)} of {len(want)} cases bit-identical")
    return 1 if differ or missing else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
