"""Micro-benchmark of each ``fastmlp.kernels`` function against its numpy equivalent.

``fastmlp bench --kernels`` runs it after the workloads (``--workloads none`` for it
alone).  Both sides write into
preallocated outputs where the kernel does, so the comparison is kernel against kernel
(the fastmlp side includes its Python argument checks).
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
import scipy.sparse as sp

from fastmlp.bench.harness import measure, summarize

# name: (n rows, d_in, d_out, k classes) — a hidden layer of the 'small' and 'mnist' nets
SIZES = {"small": (64, 128, 128, 10), "mnist": (128, 784, 256, 10)}


def cases(n: int, d_in: int, d_out: int, k: int,
          dtype: np.dtype) -> dict[str, tuple[Callable[[], object], Callable[[], object]]]:
    """{kernel name: (fastmlp call, numpy call)} on fresh data of the given sizes."""
    from fastmlp import kernels as fk
    rng = np.random.default_rng(0)

    def r(*shape: int) -> np.ndarray:
        return rng.standard_normal(shape).astype(dtype)

    A, W, b = r(n, d_in), r(d_in, d_out) * 0.05, r(d_out)
    Z, out = r(n, d_out), np.empty((n, d_out), dtype)
    relu_A = np.maximum(r(n, d_out), 0)
    D_next, W_next = r(n, k), r(d_out, k)
    dW, db = np.empty((d_in, d_out), dtype), np.empty(d_out, dtype)
    logits, Y, labels = r(n, k), r(n, k), rng.integers(0, k, n)
    Dk = np.empty((n, k), dtype)
    theta, grad = r(d_in * d_out), r(d_in * d_out)
    A_sparse = sp.csr_matrix(np.where(rng.random(A.shape) < 0.1, A, 0))
    rows = np.arange(n)
    # the scikit-learn estimators' kernels: logistic outputs, 0/1 targets, optimizer state
    P = 1 / (1 + np.exp(-Z))
    Y01 = (r(n, d_out) > 0).astype(dtype)
    eps = np.finfo(dtype).eps
    velocity, m, v = np.zeros_like(theta), np.zeros_like(theta), np.zeros_like(theta)
    adam_lr_t = 1e-6 * np.sqrt(1 - 0.999) / (1 - 0.9)     # η_t at t = 1

    def np_linear() -> None:
        np.matmul(A, W, out=out)
        np.add(out, b, out=out)

    def np_backprop() -> None:
        np.matmul(D_next, W_next.T, out=out)
        np.multiply(out, relu_A > 0, out=out)

    def np_linear_backward() -> None:
        np.matmul(A.T, Z, out=dW)
        np.sum(Z, axis=0, out=db)

    def np_mse() -> float:
        np.subtract(logits, Y, out=Dk)
        loss = float(np.vdot(Dk, Dk)) / n
        np.multiply(Dk, 2.0 / n, out=Dk)
        return loss

    def np_softmax() -> None:
        np.subtract(logits, logits.max(axis=1, keepdims=True), out=Dk)
        np.exp(Dk, out=Dk)
        np.divide(Dk, Dk.sum(axis=1, keepdims=True), out=Dk)

    def np_xent() -> float:
        np.subtract(logits, logits.max(axis=1, keepdims=True), out=Dk)
        lse = np.log(np.exp(Dk).sum(axis=1))
        loss = float(np.mean(lse - Dk[rows, labels]))
        np.exp(Dk - lse[:, None], out=Dk)
        Dk[rows, labels] -= 1.0
        np.multiply(Dk, 1.0 / n, out=Dk)
        return loss

    def np_sgd() -> None:
        theta[...] -= 1e-6 * grad

    def np_logistic() -> None:
        np.negative(Z, out=out)
        np.exp(out, out=out)
        np.add(out, 1, out=out)
        np.reciprocal(out, out=out)

    def np_logistic_backward() -> None:
        np.subtract(1, P, out=out)
        np.multiply(out, P, out=out)
        np.multiply(out, Z, out=out)

    def np_binary_log_loss() -> float:
        np.subtract(P, Y01, out=out)
        Pc = np.clip(P, eps, 1 - eps)
        return -float(np.vdot(Y01, np.log(Pc)) + np.vdot(1 - Y01, np.log(1 - Pc))) / n

    def np_momentum() -> None:
        velocity[...] *= 0.9
        velocity[...] -= 1e-6 * grad
        theta[...] += velocity

    def np_adam() -> None:
        m[...] *= 0.9
        m[...] += 0.1 * grad
        v[...] *= 0.999
        v[...] += 0.001 * (grad * grad)
        theta[...] -= adam_lr_t * m / (np.sqrt(v) + 1e-8)

    # The finite checks: every new value computed into temporaries, nothing written.
    def np_sgd_check() -> bool:
        return bool(np.isfinite(theta - 1e-6 * grad).all())

    def np_momentum_check() -> bool:
        vel = 0.9 * velocity - 1e-6 * grad
        return bool(np.isfinite(vel).all() and np.isfinite(theta + vel).all())

    def np_adam_check() -> bool:
        mm = 0.9 * m + 0.1 * grad
        vv = 0.999 * v + 0.001 * (grad * grad)
        return bool(np.isfinite(mm).all() and np.isfinite(vv).all()
                    and np.isfinite(theta - adam_lr_t * mm / (np.sqrt(vv) + 1e-8)).all())

    # Each hidden activation's forward and backward pass, as one training step runs them:
    # A = g(Z) and Δ = D ⊙ g'(Z), against numpy (and scipy.special) written the same way.
    from scipy.special import erfc, expit
    D = r(n, d_out)
    Act = np.empty((n, d_out), dtype)
    numpy_activations: dict[str, Callable[[], object]] = {
        "relu": lambda: (np.maximum(Z, 0, out=Act), np.multiply(D, Act > 0, out=out)),
        "tanh": lambda: (np.tanh(Z, out=Act), np.multiply(D, 1 - Act * Act, out=out)),
        # scipy's expit: what scikit-learn's logistic layers run
        "logistic": lambda: (expit(Z, out=Act), np.multiply(D, Act * (1 - Act), out=out)),
        "leaky_relu": lambda: (np.multiply(Z, np.where(Z > 0, 1, 0.01).astype(dtype), out=Act),
                               np.multiply(D, np.where(Act > 0, 1, 0.01).astype(dtype), out=out)),
        "elu": lambda: (np.copyto(Act, np.where(Z > 0, Z, np.expm1(np.minimum(Z, 0)))),
                        np.multiply(D, np.where(Act > 0, 1, Act + 1), out=out)),
        "gelu": lambda: (np.multiply(Z * 0.5, erfc(-Z / np.sqrt(2)), out=Act),
                         np.multiply(D, 0.5 * erfc(-Z / np.sqrt(2))
                                     + Z * np.exp(-0.5 * Z * Z) / np.sqrt(2 * np.pi), out=out)),
        "silu": lambda: (np.multiply(Z, expit(Z), out=Act),
                         np.multiply(D, expit(Z) * (1 + Z * (1 - expit(Z))), out=out)),
        "softplus": lambda: (np.logaddexp(0, Z, out=Act),
                             np.multiply(D, -np.expm1(-Act), out=out)),
    }

    def fastmlp_activation(kind: str) -> Callable[[], object]:
        def step() -> object:
            fk.activation_forward(kind, Z, out=Act)
            return fk.activation_backward(kind, Act, D, out=out, Z=Z)
        return step

    return {
        **{f"{kind} forward+backward": (fastmlp_activation(kind), f_np)
           for kind, f_np in numpy_activations.items()},
        "linear_forward": (lambda: fk.linear_forward(A, W, b, out=out), np_linear),
        "relu_forward": (lambda: fk.relu_forward(Z, out=out),
                         lambda: np.maximum(Z, 0, out=out)),
        "relu_backward": (lambda: fk.relu_backward(relu_A, Z, out=out),
                          lambda: np.multiply(Z, relu_A > 0, out=out)),
        "backprop_delta": (lambda: fk.backprop_delta(D_next, W_next, relu_A, out=out),
                           np_backprop),
        "linear_backward": (lambda: fk.linear_backward(A, Z, dW, db), np_linear_backward),
        "mse_loss_delta": (lambda: fk.mse_loss_delta(logits, Y, out=Dk), np_mse),
        "softmax_cross_entropy_loss_delta": (
            lambda: fk.softmax_cross_entropy_loss_delta(logits, labels, out=Dk), np_xent),
        "softmax": (lambda: fk.softmax(logits, out=Dk), np_softmax),
        "sgd_update": (lambda: fk.sgd_update(theta, grad, 1e-6), np_sgd),
        "activation_forward": (lambda: fk.activation_forward("logistic", Z, out=out),
                               np_logistic),
        "activation_backward": (lambda: fk.activation_backward("logistic", P, Z, out=out),
                                np_logistic_backward),
        "sklearn_loss_delta": (lambda: fk.sklearn_loss_delta("binary_log_loss", P, Y01, out=out),
                               np_binary_log_loss),
        "momentum_update": (lambda: fk.momentum_update(theta, grad, velocity, 1e-6, 0.9),
                            np_momentum),
        "adam_update": (lambda: fk.adam_update(theta, grad, m, v, 1e-6, 0.9, 0.999, 1e-8, 1),
                        np_adam),
        "sgd_update_is_finite": (lambda: fk.sgd_update_is_finite(theta, grad, 1e-6),
                                 np_sgd_check),
        "momentum_update_is_finite": (
            lambda: fk.momentum_update_is_finite(theta, grad, velocity, 1e-6, 0.9),
            np_momentum_check),
        "adam_update_is_finite": (
            lambda: fk.adam_update_is_finite(theta, grad, m, v, 1e-6, 0.9, 0.999, 1e-8, 1),
            np_adam_check),
        # the first layer on sparse rows (a tenth of A's values stored), against scipy
        "csr_linear_forward": (lambda: fk.csr_linear_forward(A_sparse, W, b, out=out),
                               lambda: np.add(A_sparse @ W, b, out=out)),
        "csr_transposed_accumulate": (lambda: fk.csr_transposed_accumulate(A_sparse, Z, dW),
                                      lambda: np.add(dW, A_sparse.T @ Z, out=dW)),
        # a training step's dropout of one hidden layer: draw a mask, scale, multiply
        "dropout_forward": (lambda: fk.dropout_forward(relu_A, 0.2, 12345, out=out),
                            lambda: np.multiply(relu_A, (rng.random(relu_A.shape) >= 0.2)
                                                / dtype.type(0.8), out=out)),
    }


def run(dtypes: Sequence[str] = ("float32",),
        settings: Sequence[Any] = (5, 0.008, 0.05, 0.15, False)) -> list[dict[str, Any]]:
    """Time every kernel at every size and dtype; returns a list of result dicts."""
    from fastmlp import _core
    isa = _core.k_vecmath_level()     # the instruction set of the vectorised activations
    out = []
    for dtype in dtypes:
        for size_name, size in SIZES.items():
            for kname, (f_fast, f_np) in cases(*size, np.dtype(dtype)).items():
                t = measure({"fastmlp": f_fast, "numpy": f_np}, *settings)
                fast = summarize(t["fastmlp"]["samples_us"])
                ref = summarize(t["numpy"]["samples_us"])
                out.append({"kernel": kname, "size": size_name, "n_din_dout_k": size,
                            "dtype": np.dtype(dtype).name, "fastmlp": fast, "numpy": ref,
                            "vecmath_isa": isa,
                            "ratio_numpy_vs_fastmlp": ref["median_us"] / fast["median_us"]})
    return out


def table(results: list[dict[str, Any]]) -> str:
    isa = results[0].get("vecmath_isa", "?") if results else "?"
    lines = [f"(fastmlp's vectorised activations run with {isa})", "",
             "| kernel | size (n, d_in, d_out, k) | dtype | fastmlp µs | numpy µs | numpy/fastmlp |",
             "|---|---|---|---:|---:|---:|"]
    for r in results:
        lines.append(f"| {r['kernel']} | {r['size']} {tuple(r['n_din_dout_k'])} | {r['dtype']} | "
                     f"{r['fastmlp']['median_us']:,.1f} | {r['numpy']['median_us']:,.1f} | "
                     f"{r['ratio_numpy_vs_fastmlp']:.2f} |")
    return "\n".join(lines)
