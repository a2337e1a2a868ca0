"""The compiled kernels one by one, for tests and micro-benchmarks.

Each function checks its arguments, then makes one GIL-free call into ``fastmlp._core``.
Float arguments must share one dtype, float32 or float64 (taken from the first argument);
non-contiguous inputs are copied to C order, ``out`` arrays must already be C-contiguous
and writable and must not overlap an input (except exactly, where a docstring says the
kernel works in place).  Dimensions must fit BLAS's 32-bit sizes, and a result allocated
here must fit the workspace limit (``fastmlp.set_workspace_limit``).  Layout is row-major (seed 003): batches are (n, d), W is (d_in, d_out).
"""
from __future__ import annotations

import numbers

import numpy as np
from numpy.typing import ArrayLike

from fastmlp import _core
from fastmlp._validation import MAX_WIDTH, _numeric_array

__all__ = ["linear_forward", "relu_forward", "relu_backward", "backprop_delta",
           "linear_backward", "mse_loss_delta", "softmax_cross_entropy_loss_delta",
           "softmax", "sgd_update"]

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


def _float_dtype(name: str, a: ArrayLike) -> np.dtype:
    arr = _numeric_array(name, a)
    if arr.dtype not in _FLOATS:
        raise TypeError(f"{name}: expected float32 or float64, got {arr.dtype}")
    return arr.dtype


def _in(name: str, a: ArrayLike, dtype: np.dtype, ndim: int) -> np.ndarray:
    arr = _numeric_array(name, a)
    if arr.dtype != dtype:
        raise TypeError(f"{name}: expected dtype {dtype} like the first argument, got {arr.dtype}")
    if arr.ndim != ndim:
        raise ValueError(f"{name}: expected a {ndim}-D array, got shape {arr.shape}")
    return np.require(arr, requirements=("C", "A"))


def _out(name: str, out: object, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    if out is None:
        need = dtype.itemsize
        for d in shape:
            need *= d
        limit = _core.get_workspace_limit()
        if need > limit:
            raise ValueError(f"{name}: a {shape} result needs {need} bytes, over the workspace "
                             f"limit of {limit} bytes; see fastmlp.set_workspace_limit")
        return np.empty(shape, dtype=dtype)
    if not isinstance(out, np.ndarray):
        raise TypeError(f"{name}: expected an ndarray, got {type(out).__name__}")
    if out.dtype != dtype or out.shape != shape:
        raise ValueError(f"{name}: expected a {shape} {dtype} array, got {out.shape} {out.dtype}")
    if not (out.flags.c_contiguous and out.flags.aligned and out.flags.writeable):
        raise ValueError(f"{name}: expected a C-contiguous, aligned, writable array")
    return out


def _same_memory(a: np.ndarray, b: np.ndarray) -> bool:
    return (a.__array_interface__["data"][0] == b.__array_interface__["data"][0]
            and a.shape == b.shape and a.strides == b.strides and a.dtype == b.dtype)


def _no_overlap(name: str, out: np.ndarray, inputs: dict[str, np.ndarray | None],
                same_ok: tuple[str, ...] = ()) -> None:
    """``out`` must not share memory with an input the kernel still reads after writing
    ``out`` (BLAS and the fused loops assume distinct buffers); an element-wise kernel may
    work exactly in place on the inputs named in ``same_ok``."""
    for in_name, a in inputs.items():
        if a is None or not np.may_share_memory(out, a):
            continue
        if in_name in same_ok and _same_memory(out, a):
            continue
        raise ValueError(f"{name}: must not overlap the input {in_name}"
                         + (" (except exactly, for in-place use)" if in_name in same_ok else ""))


def _blas_sizes(names: str, *dims: int) -> None:
    """BLAS takes 32-bit sizes: a larger dimension would be truncated by the core's casts."""
    if max(dims) > MAX_WIDTH:
        raise ValueError(f"{names}: a dimension of {max(dims)} is more than BLAS's 32-bit "
                         f"sizes take ({MAX_WIDTH})")


def _shape_check(cond: bool, msg: str) -> None:
    if not cond:
        raise ValueError(msg)


def linear_forward(A: ArrayLike, W: ArrayLike, b: ArrayLike,
                   out: np.ndarray | None = None) -> np.ndarray:
    """Z = A·W + 1·bᵀ (seed 003: s(l) = b(l) + Σᵢ wᵢ·xᵢ; seed 001: W·X + b·1ᵀ, transposed).

    A: (n, d_in), W: (d_in, d_out), b: (d_out,), all float32 or all float64.
    Returns Z: (n, d_out) (written into ``out`` if given).  One BLAS gemm over a
    bias-filled Z (beta = 1).
    """
    dt = _float_dtype("A", A)
    A, W, b = _in("A", A, dt, 2), _in("W", W, dt, 2), _in("b", b, dt, 1)
    n, d_in = A.shape
    _shape_check(W.shape[0] == d_in, f"W: expected {d_in} rows to match A, got shape {W.shape}")
    _shape_check(b.shape[0] == W.shape[1], f"b: expected shape ({W.shape[1]},), got {b.shape}")
    _shape_check(min(n, d_in, W.shape[1]) >= 1, "A, W: every dimension must be >= 1")
    _blas_sizes("A, W", n, d_in, W.shape[1])
    Z = _out("out", out, (n, W.shape[1]), dt)
    _no_overlap("out", Z, {"A": A, "W": W, "b": b})
    _core.k_linear_forward(A, W, b, Z)
    return Z


def relu_forward(Z: ArrayLike, out: np.ndarray | None = None) -> np.ndarray:
    """A = θ(Z) = max(Z, 0) (seeds 001, 003).  Z: (n, d) float32/float64 → A: (n, d).

    Pass ``out=Z`` to work in place.  The derivative mask θ'(Z) = [Z > 0] is [A > 0], which
    is how ``relu_backward`` and ``backprop_delta`` read it: no separate mask array.
    NaN stays NaN.
    """
    dt = _float_dtype("Z", Z)
    Zc = _in("Z", Z, dt, 2)
    A = _out("out", out, Zc.shape, dt)
    if A is not Zc:
        np.copyto(A, Zc)
    _core.k_relu_forward(A)
    return A


def relu_backward(A: ArrayLike, dA: ArrayLike, out: np.ndarray | None = None) -> np.ndarray:
    """Δ = dA ⊙ θ'(S), with θ'(S) = [A > 0] (seed 003 eq. 34; seed 001: V ⊙ D).

    A: (n, d) activations after ReLU, dA: (n, d) gradient w.r.t. A.  Returns Δ (n, d);
    ``out=dA`` masks in place.
    """
    dt = _float_dtype("A", A)
    A, dAc = _in("A", A, dt, 2), _in("dA", dA, dt, 2)
    _shape_check(A.shape == dAc.shape, f"dA: expected shape {A.shape}, got {dAc.shape}")
    D = _out("out", out, A.shape, dt)
    _no_overlap("out", D, {"A": A})
    if D is not dAc:
        np.copyto(D, dAc)
    _core.k_relu_mask_delta(A, D)
    return D


def backprop_delta(D_next: ArrayLike, W_next: ArrayLike, A: ArrayLike,
                   out: np.ndarray | None = None) -> np.ndarray:
    """Δ(l) = θ'(S(l)) ⊙ (Δ(l+1)·W(l+1)ᵀ)  (seed 003 eq. 34 and 42).

    D_next: (n, d_next) = Δ(l+1); W_next: (d, d_next) = W(l+1); A: (n, d) = ReLU output of
    layer l.  Returns Δ(l): (n, d).  One gemm (beta = 0) and one masking pass.
    """
    dt = _float_dtype("D_next", D_next)
    D_next, W_next, A = (_in("D_next", D_next, dt, 2), _in("W_next", W_next, dt, 2),
                         _in("A", A, dt, 2))
    n, d_next = D_next.shape
    _shape_check(W_next.shape[1] == d_next,
                 f"W_next: expected {d_next} columns to match D_next, got shape {W_next.shape}")
    _shape_check(A.shape == (n, W_next.shape[0]),
                 f"A: expected shape {(n, W_next.shape[0])}, got {A.shape}")
    _shape_check(min(n, d_next, A.shape[1]) >= 1, "D_next, A: every dimension must be >= 1")
    _blas_sizes("D_next, A", n, d_next, A.shape[1])
    D = _out("out", out, A.shape, dt)
    _no_overlap("out", D, {"D_next": D_next, "W_next": W_next, "A": A})
    _core.k_backprop_delta(D_next, W_next, A, D)
    return D


def linear_backward(A_prev: ArrayLike, D: ArrayLike, dW: np.ndarray | None = None,
                    db: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """dW = A_prevᵀ·Δ (seed 003 eq. 33) and db = 1ᵀ·Δ (eq. 41); the 1/N lives in Δ.

    A_prev: (n, d_in) input of the layer, D: (n, d_out) its delta.
    Returns (dW (d_in, d_out), db (d_out,)).
    """
    dt = _float_dtype("A_prev", A_prev)
    A_prev, D = _in("A_prev", A_prev, dt, 2), _in("D", D, dt, 2)
    _shape_check(D.shape[0] == A_prev.shape[0],
                 f"D: expected {A_prev.shape[0]} rows to match A_prev, got {D.shape[0]}")
    _shape_check(min(A_prev.shape[0], A_prev.shape[1], D.shape[1]) >= 1,
                 "A_prev, D: every dimension must be >= 1")
    _blas_sizes("A_prev, D", A_prev.shape[0], A_prev.shape[1], D.shape[1])
    dW = _out("dW", dW, (A_prev.shape[1], D.shape[1]), dt)
    db = _out("db", db, (D.shape[1],), dt)
    _no_overlap("dW", dW, {"A_prev": A_prev, "D": D, "db": db})
    _no_overlap("db", db, {"A_prev": A_prev, "D": D})
    _core.k_linear_backward(A_prev, D, dW, db)
    return dW, db


def mse_loss_delta(Yhat: ArrayLike, Y: ArrayLike,
                   out: np.ndarray | None = None) -> tuple[float, np.ndarray]:
    """L = (1/n)·Σᵢ‖ŷᵢ − yᵢ‖² and Δ(L) = (2/n)·(Ŷ − Y) (seed 000 eq. 10–11; seed 001 §3).

    Yhat, Y: (n, k).  Returns (loss as float, Δ (n, k)).  The loss is summed in float64.
    """
    dt = _float_dtype("Yhat", Yhat)
    Yhat, Y = _in("Yhat", Yhat, dt, 2), _in("Y", Y, dt, 2)
    _shape_check(Y.shape == Yhat.shape, f"Y: expected shape {Yhat.shape}, got {Y.shape}")
    _shape_check(min(Y.shape) >= 1, "Yhat: every dimension must be >= 1")
    D = _out("out", out, Yhat.shape, dt)
    _no_overlap("out", D, {"Yhat": Yhat, "Y": Y}, same_ok=("Yhat", "Y"))
    return _core.k_mse_loss_delta(Yhat, Y, D), D


def softmax_cross_entropy_loss_delta(logits: ArrayLike, Y: ArrayLike,
                                     out: np.ndarray | None = None) -> tuple[float, np.ndarray]:
    """L = −(1/n)·Σᵢ Σₖ yᵢₖ·log softmax(zᵢ)ₖ and Δ(L) = (P − Y)/n (seed 003 eq. 3–4, 10).

    logits: (n, k).  Y: (n,) integer labels in [0, k), or (n, k) rows of probabilities
    (then Δ = (P·Σₖyᵢₖ − Y)/n, the exact gradient, equal to (P − Y)/n for rows summing
    to 1).  Log-sum-exp shifted by the row maximum: finite for logits of any size.
    Returns (loss as float, Δ (n, k)).
    """
    dt = _float_dtype("logits", logits)
    logits = _in("logits", logits, dt, 2)
    n, k = logits.shape
    _shape_check(min(n, k) >= 1, "logits: every dimension must be >= 1")
    Ya = _numeric_array("Y", Y)
    D = _out("out", out, logits.shape, dt)
    if Ya.ndim == 1:
        if Ya.dtype.kind not in "iu":
            raise TypeError(f"Y: expected integer labels, got {Ya.dtype}")
        _shape_check(Ya.shape[0] == n, f"Y: expected {n} labels, got {Ya.shape[0]}")
        if Ya.dtype.kind == "u" and Ya.max() > np.iinfo(np.int64).max:
            raise ValueError(f"Y: class labels must be integers in [0, {k})")
        labels = np.require(Ya, dtype=np.int64, requirements=("C", "A"))
        _no_overlap("out", D, {"logits": logits, "Y": labels})
        return _core.k_softmax_xent_labels(logits, labels, D), D
    Yd = _in("Y", Ya, dt, 2)
    _shape_check(Yd.shape == logits.shape, f"Y: expected shape {logits.shape}, got {Yd.shape}")
    _no_overlap("out", D, {"logits": logits, "Y": Yd})
    return _core.k_softmax_xent_dense(logits, Yd, D), D


def softmax(Z: ArrayLike, out: np.ndarray | None = None) -> np.ndarray:
    """P = softmax(Z) row-wise, shifted by the row maximum (seed 003 eq. 3).  Z: (n, k)."""
    dt = _float_dtype("Z", Z)
    Zc = _in("Z", Z, dt, 2)
    P = _out("out", out, Zc.shape, dt)
    if P is not Zc:
        np.copyto(P, Zc)
    _core.k_softmax(P)
    return P


def sgd_update(theta: np.ndarray, grad: ArrayLike, lr: float) -> np.ndarray:
    """θ ← θ − lr·∇θ in place (seed 000 eq. 12).  theta, grad: (p,) of one dtype."""
    if not isinstance(theta, np.ndarray):
        raise TypeError(f"theta: expected an ndarray, got {type(theta).__name__}")
    dt = _float_dtype("theta", theta)
    _shape_check(theta.ndim == 1, f"theta: expected a 1-D array, got shape {theta.shape}")
    _out("theta", theta, theta.shape, dt)
    grad = _in("grad", grad, dt, 1)
    _shape_check(grad.shape == theta.shape, f"grad: expected shape {theta.shape}, got {grad.shape}")
    _no_overlap("theta", theta, {"grad": grad}, same_ok=("grad",))
    if isinstance(lr, (bool, np.bool_)) or not isinstance(lr, numbers.Real):
        raise TypeError(f"lr: expected a real number, got {lr!r}")
    try:
        lr = float(lr)
    except OverflowError:
        lr = float("inf")
    with np.errstate(over="ignore"):
        lr_in_dtype = dt.type(lr)
    if not np.isfinite(lr) or not np.isfinite(lr_in_dtype):
        raise ValueError(f"lr: expected a number finite in {dt}, got {lr}")
    _core.k_sgd_update(theta, grad, lr)
    return theta
