"""The compiled kernels one by one, for tests and micro-benchmarks.

Each function checks its arguments, then makes one GIL-free call into ``fastmlp._core``.
Float arguments must share one dtype, float32 or float64 (taken from the first argument);
non-contiguous inputs are copied to C order, ``out`` arrays must already be C-contiguous
and writable and must not overlap an input (except exactly, where a docstring says the
kernel works in place).  Dimensions must fit BLAS's 32-bit sizes, and a result allocated
here must fit the workspace limit (``fastmlp.set_workspace_limit``).  Layout is row-major (seed 003): batches are (n, d), W is (d_in, d_out).

The update kernels (``sgd_update``, ``momentum_update``, ``adam_update``) work in place on
``theta`` and on their optimizer state, which must therefore be C-contiguous, aligned,
writable ndarrays of theta's dtype; their hyper-parameters are rounded to that dtype, as
the training step does.  From 16,384 values they are split over fastmlp's worker threads
as the step's update is (``fastmlp.threads``), with the same bits at every thread count.
Each has an ``*_is_finite`` twin taking the same arguments, which writes nothing and says
whether every value the update would store is finite: the step's NaN guard, for loops of
one's own.
"""
from __future__ import annotations

import math
import numbers
import operator
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from fastmlp import _core
from fastmlp._validation import (ACTIVATIONS, MAX_WIDTH, _numeric_array, as_sparse_rows,
                                 check_choice, check_fraction, is_sparse)

__all__ = ["linear_forward", "relu_forward", "relu_backward", "backprop_delta",
           "linear_backward", "mse_loss_delta", "softmax_cross_entropy_loss_delta",
           "softmax", "sgd_update", "activation_forward", "activation_backward",
           "sklearn_loss_delta", "momentum_update", "adam_update", "dropout_forward",
           "csr_linear_forward", "csr_transposed_accumulate", "sgd_update_is_finite",
           "momentum_update_is_finite", "adam_update_is_finite"]

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
        _core.check_memory(name, f"a {shape} result", need, "see fastmlp.set_workspace_limit")
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


def _csr_parts(X: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(data, indices, indptr) of a scipy sparse X (CSR, CSC or COO) of float32 or
    float64 values, converted and checked as the training entry points do
    (_validation.as_sparse_rows: CSR structure, finite values, one index type)."""
    if not is_sparse(X):
        raise TypeError(f"X: expected a scipy sparse matrix, got {type(X).__name__}")
    if X.dtype not in _FLOATS:
        raise TypeError(f"X: expected float32 or float64 values, got {X.dtype}")
    rows = as_sparse_rows("X", X, X.dtype, X.shape[1] if X.ndim == 2 else -1)
    return rows.data, rows.indices, rows.indptr


def csr_linear_forward(X: Any, W: ArrayLike, b: ArrayLike,
                       out: np.ndarray | None = None) -> np.ndarray:
    """Z = X·W + 1·bᵀ for sparse X (seed 003: s(l) = b(l) + Σᵢ wᵢ·xᵢ, over the stored xᵢ).

    X: scipy sparse (n, d_in) (CSR, CSC or COO) of float32 or float64 values; W:
    (d_in, d_out) and b: (d_out,) of X's dtype.  Returns Z: (n, d_out) (written into
    ``out`` if given).  Costs nnz·d_out multiply-adds, not n·d_in·d_out; the first layer
    of training on sparse X.
    """
    data, indices, indptr = _csr_parts(X)
    dt = data.dtype
    W, b = _in("W", W, dt, 2), _in("b", b, dt, 1)
    n, d_in = X.shape
    _shape_check(W.shape[0] == d_in, f"W: expected {d_in} rows to match X, got shape {W.shape}")
    _shape_check(b.shape[0] == W.shape[1], f"b: expected shape ({W.shape[1]},), got {b.shape}")
    _shape_check(min(n, d_in, W.shape[1]) >= 1, "X, W: every dimension must be >= 1")
    Z = _out("out", out, (n, W.shape[1]), dt)
    _no_overlap("out", Z, {"W": W, "b": b, "X.data": data})
    _core.k_csr_linear_forward(data, indices, indptr, W, b, Z)
    return Z


def csr_transposed_accumulate(X: Any, D: ArrayLike, dW: np.ndarray) -> np.ndarray:
    """dW += Xᵀ·Δ for sparse X (seed 003 eq. 33: the weight gradient of a first layer
    whose input is X; the 1/N lives in Δ).

    X: scipy sparse (n, d_in) (CSR, CSC or COO) of float32 or float64 values; D:
    (n, d_out) of X's dtype; dW: (d_in, d_out) C-contiguous, writable, of X's dtype,
    added to in place (only the rows of the columns X stores change).  Returns dW.
    """
    data, indices, indptr = _csr_parts(X)
    dt = data.dtype
    D = _in("D", D, dt, 2)
    n, d_in = X.shape
    _shape_check(D.shape[0] == n, f"D: expected {n} rows to match X, got {D.shape[0]}")
    _shape_check(min(n, d_in, D.shape[1]) >= 1, "X, D: every dimension must be >= 1")
    if not isinstance(dW, np.ndarray):
        raise TypeError(f"dW: expected an ndarray, got {type(dW).__name__}")
    dW = _out("dW", dW, (d_in, D.shape[1]), dt)
    _no_overlap("dW", dW, {"D": D, "X.data": data})
    _core.k_csr_transposed_accumulate(data, indices, indptr, D, dW)
    return dW


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
                   out: np.ndarray | None = None, activation: str = "relu",
                   Z: ArrayLike | None = None) -> np.ndarray:
    """Δ(l) = g'(Z(l)) ⊙ (Δ(l+1)·W(l+1)ᵀ)  (seed 003 eq. 34 and 42, there with g = ReLU).

    D_next: (n, d_next) = Δ(l+1); W_next: (d, d_next) = W(l+1); A: (n, d) = output of
    layer l's activation g, one of "relu", "tanh", "logistic", "identity" (g' is written
    through A, as in ``activation_backward``; "gelu" and "silu" need the layer's input
    ``Z`` too).  Returns Δ(l): (n, d).  One gemm (beta = 0) and one pass for g'.
    """
    activation = check_choice("activation", activation, ACTIVATIONS)
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
    Zc = _z_input(activation, Z, A.shape, dt)
    D = _out("out", out, A.shape, dt)
    _no_overlap("out", D, {"D_next": D_next, "W_next": W_next, "A": A, "Z": Zc})
    _core.k_backprop_delta(D_next, W_next, A, D, activation, Zc)
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


# Below what magnitude a float64 rounds to a finite value of each dtype: float32 rounds
# to nearest even, so from the midpoint between its largest value (2¹²⁸ − 2¹⁰⁴) and 2¹²⁸
# up it gives inf.  A comparison, not a conversion under np.errstate: these checks run
# on every call of the update kernels.
_FINITE_BELOW = {np.dtype(np.float32): 2.0**128 - 2.0**103, np.dtype(np.float64): math.inf}


def _finite_in_dtype(x: float, dt: np.dtype) -> bool:
    """Whether the float x stays finite once rounded to dt (False for NaN)."""
    return abs(x) < _FINITE_BELOW[dt]


def _real_in_dtype(name: str, value: object, dt: np.dtype) -> float:
    """A real number (not bool) that stays finite once rounded to ``dt``, as a float."""
    if type(value) is not float and (isinstance(value, (bool, np.bool_))
                                     or not isinstance(value, numbers.Real)):
        raise TypeError(f"{name}: expected a real number, got {value!r}")
    try:
        x = float(value)
    except OverflowError:
        x = float("inf")
    if not _finite_in_dtype(x, dt):
        raise ValueError(f"{name}: expected a number finite in {dt}, got {x}")
    return x


def _theta(theta: object) -> tuple[np.ndarray, np.dtype]:
    """The parameter vector an update kernel writes in place, and its dtype."""
    if not isinstance(theta, np.ndarray):
        raise TypeError(f"theta: expected an ndarray, got {type(theta).__name__}")
    dt = _float_dtype("theta", theta)
    _shape_check(theta.ndim == 1, f"theta: expected a 1-D array, got shape {theta.shape}")
    _out("theta", theta, theta.shape, dt)
    return theta, dt


def _state(name: str, a: object, shape: tuple[int, ...], dt: np.dtype) -> np.ndarray:
    """Optimizer state written in place: an ndarray of theta's shape, dtype and layout."""
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{name}: expected an ndarray, got {type(a).__name__}")
    if a.dtype != dt:
        raise TypeError(f"{name}: expected dtype {dt} like theta, got {a.dtype}")
    return _out(name, a, shape, dt)


def _sgd_args(theta: np.ndarray, grad: ArrayLike, lr: float
              ) -> tuple[np.ndarray, np.ndarray, float]:
    theta, dt = _theta(theta)
    grad = _in("grad", grad, dt, 1)
    _shape_check(grad.shape == theta.shape, f"grad: expected shape {theta.shape}, got {grad.shape}")
    _no_overlap("theta", theta, {"grad": grad}, same_ok=("grad",))
    return theta, grad, _real_in_dtype("lr", lr, dt)


def sgd_update(theta: np.ndarray, grad: ArrayLike, lr: float) -> np.ndarray:
    """θ ← θ − lr·∇θ in place (seed 000 eq. 12).  theta, grad: (p,) of one dtype."""
    theta, grad, lr = _sgd_args(theta, grad, lr)
    _core.k_sgd_update(theta, grad, lr)
    return theta


def sgd_update_is_finite(theta: np.ndarray, grad: ArrayLike, lr: float) -> bool:
    """Whether ``sgd_update`` with the same arguments would leave every value of theta
    finite (and so whether grad is), computed from the same arithmetic without writing
    anything: the pre-check of a training step's NaN guard, so that a loop can skip a
    diverging update and keep its parameters as they were."""
    theta, grad, lr = _sgd_args(theta, grad, lr)
    return bool(_core.k_sgd_update(theta, grad, lr, check=True))


# Activations by name: what activation_forward computes, and which of them have a
# derivative activation_backward computes (softmax's goes through the loss, exp is only
# scikit-learn's Poisson output, whose delta the loss gives directly).
_ACTIVATIONS = ACTIVATIONS + ("softmax", "exp")
_ACT_DERIVATIVES = ACTIVATIONS
_NEED_Z = _core.NEEDS_Z


def _z_input(kind: str, Z: ArrayLike | None, shape: tuple[int, ...],
             dt: np.dtype) -> np.ndarray | None:
    """The activation's input Z (shaped as its output) where its derivative needs it."""
    if kind not in _NEED_Z:
        return None
    if Z is None:
        raise ValueError(f"Z: the derivative of {kind!r} needs the activation's input Z")
    Zc = _in("Z", Z, dt, 2)
    _shape_check(Zc.shape == shape, f"Z: expected shape {shape}, got {Zc.shape}")
    return Zc


def _kind(kind: object, choices: tuple[str, ...]) -> str:
    if not isinstance(kind, str) or kind not in choices:
        raise ValueError(f"kind: expected one of {', '.join(map(repr, choices))}, got {kind!r}")
    return kind


def activation_forward(kind: str, Z: ArrayLike, out: np.ndarray | None = None) -> np.ndarray:
    """A = g(Z) for the activation ``kind``; Z: (n, k) float32/float64 → A: (n, k).

    ``kind``: "identity" (A = Z), "relu" (max(Z, 0), as ``relu_forward``), "logistic"
    (1/(1 + e^−z)), "tanh", "leaky_relu" (z if z > 0 else 0.01·z), "elu" (z if z > 0
    else e^z − 1), "gelu" (z·Φ(z) = ½·z·(1 + erf(z/√2))), "silu" (z/(1 + e^−z)),
    "softplus" (max(z, 0) + log(1 + e^−|z|): no overflow), "exp" (e^z, scikit-learn's
    Poisson output) element-wise, or "softmax" row-wise (as ``softmax``) — PyTorch's
    definitions.  Computed in the dtype, by fastmlp's vectorised exp/expm1/log1p/tanh
    (within 2.5 ulp; GELU 1 ulp in float32, 7.5 in float64); logistic never gives NaN for finite z,
    saturates to exactly 1 and keeps its relative accuracy in the left tail; NaN stays
    NaN.
    Pass ``out=Z`` to work in place.
    """
    kind = _kind(kind, _ACTIVATIONS)
    dt = _float_dtype("Z", Z)
    Zc = _in("Z", Z, dt, 2)
    A = _out("out", out, Zc.shape, dt)
    if A is not Zc:
        np.copyto(A, Zc)
    _core.k_activation_forward(kind, A)
    return A


def activation_backward(kind: str, A: ArrayLike, D: ArrayLike,
                        out: np.ndarray | None = None, Z: ArrayLike | None = None) -> np.ndarray:
    """Δ = D ⊙ g'(Z) (seed 002: ∇a = g'(a) ⊙ ∇ŷ; seed 003 eq. 34 for ReLU), with g' read
    from the activation's output A = g(Z) where it can be.

    ``kind``: "identity" (g' = 1), "relu" ([A > 0], as ``relu_backward``), "logistic"
    (A·(1 − A)), "tanh" (1 − A²), "leaky_relu" (1 if A > 0 else 0.01), "elu" (1 if
    A > 0 else A + 1), "softplus" (1 − e^−A = σ(z)); "gelu" (Φ(z) + z·φ(z)) and "silu"
    (σ(z)·(1 + z·(1 − σ(z)))) need ``Z``, the activation's input.  A, D (and Z): (n, k)
    of one dtype; returns Δ (n, k).  ``out=D`` works in place; ``out`` must not overlap
    A or Z.
    """
    kind = _kind(kind, _ACT_DERIVATIVES)
    dt = _float_dtype("A", A)
    A, Dc = _in("A", A, dt, 2), _in("D", D, dt, 2)
    _shape_check(Dc.shape == A.shape, f"D: expected shape {A.shape}, got {Dc.shape}")
    Zc = _z_input(kind, Z, A.shape, dt)
    Delta = _out("out", out, A.shape, dt)
    _no_overlap("out", Delta, {"A": A, "Z": Zc})
    if Delta is not Dc:
        np.copyto(Delta, Dc)
    _core.k_activation_backward(kind, A, Delta, Zc)
    return Delta


# scikit-learn's names (its neural_network LOSS_FUNCTIONS) → the core's.
_SK_LOSSES = {"squared_error": "sk_squared_error", "log_loss": "sk_log_loss",
              "binary_log_loss": "sk_binary_log_loss", "poisson": "sk_poisson"}


def sklearn_loss_delta(kind: str, P: ArrayLike, Y: ArrayLike,
                       sample_weight: ArrayLike | None = None,
                       out: np.ndarray | None = None) -> tuple[float, np.ndarray]:
    """scikit-learn's MLP output losses and their raw output delta, as its estimators use
    them (``fastmlp.MLPClassifier``/``MLPRegressor``; not the seeds' convention).

    P: (n, k) the output layer *after* its activation, Y: (n, k) targets (one-hot rows
    for the classifiers), one dtype; sample_weight: (n,) of that dtype or None (all 1).
    With wᵢ the weights and W = Σᵢ wᵢ, p clipped to [eps, 1 − eps] (eps of the dtype)
    inside the logarithms:

    - "squared_error":   L = ½·(1/k)·Σⱼ (1/W)·Σᵢ wᵢ·(yᵢⱼ − pᵢⱼ)²
    - "log_loss":        L = −(1/W)·Σᵢ wᵢ·Σⱼ yᵢⱼ·log pᵢⱼ  (softmax outputs; for k = 1 use
      "binary_log_loss": no 1 − p column is added)
    - "binary_log_loss": L = −(1/W)·Σᵢ wᵢ·Σⱼ [yᵢⱼ·log pᵢⱼ + (1 − yᵢⱼ)·log(1 − pᵢⱼ)]
    - "poisson":         L = (1/W)·Σᵢ wᵢ·Σⱼ (yᵢⱼ·log(yᵢⱼ/pᵢⱼ) − yᵢⱼ + pᵢⱼ)

    with 0·log(·) = 0.  Each loss pairs with its canonical output activation (identity,
    softmax, logistic, exp), so the delta w.r.t. the output layer's pre-activation is
    Δ = (P − Y)·wᵢ, *not* divided by W: scikit-learn divides the gradients instead.
    Returns (loss as float, accumulated in float64; Δ (n, k)).  ``out`` may be P or Y
    exactly (in place).  sample_weight must have a finite sum > 0.
    """
    core_kind = _SK_LOSSES[_kind(kind, tuple(_SK_LOSSES))]
    dt = _float_dtype("P", P)
    P, Y = _in("P", P, dt, 2), _in("Y", Y, dt, 2)
    _shape_check(Y.shape == P.shape, f"Y: expected shape {P.shape}, got {Y.shape}")
    _shape_check(min(P.shape) >= 1, "P: every dimension must be >= 1")
    sw = None
    if sample_weight is not None:
        sw = _in("sample_weight", sample_weight, dt, 1)
        _shape_check(sw.shape[0] == P.shape[0],
                     f"sample_weight: expected {P.shape[0]} weights, got {sw.shape[0]}")
        total = float(np.sum(sw, dtype=np.float64))
        if not (math.isfinite(total) and total > 0):
            raise ValueError(f"sample_weight: expected weights of a finite sum > 0, got {total}")
    D = _out("out", out, P.shape, dt)
    _no_overlap("out", D, {"P": P, "Y": Y, "sample_weight": sw}, same_ok=("P", "Y"))
    return _core.k_sk_loss_delta(core_kind, P, Y, sw, D), D


def _momentum_args(theta: np.ndarray, grad: ArrayLike, velocity: np.ndarray, lr: float,
                   momentum: float, nesterov: bool) -> tuple[Any, ...]:
    theta, dt = _theta(theta)
    grad = _in("grad", grad, dt, 1)
    _shape_check(grad.shape == theta.shape, f"grad: expected shape {theta.shape}, got {grad.shape}")
    velocity = _state("velocity", velocity, theta.shape, dt)
    _no_overlap("theta", theta, {"grad": grad}, same_ok=("grad",))
    _no_overlap("velocity", velocity, {"theta": theta, "grad": grad})
    lr = _real_in_dtype("lr", lr, dt)
    momentum = _real_in_dtype("momentum", momentum, dt)
    if not isinstance(nesterov, (bool, np.bool_)):
        raise TypeError(f"nesterov: expected a bool, got {nesterov!r}")
    return theta, grad, velocity, lr, momentum, bool(nesterov)


def momentum_update(theta: np.ndarray, grad: ArrayLike, velocity: np.ndarray, lr: float,
                    momentum: float, nesterov: bool = False) -> np.ndarray:
    """Heavy-ball momentum, in place (scikit-learn's SGD solver; with nesterov, Sutskever
    et al. 2013's form of Nesterov's accelerated gradient):

        v ← μ·v − η·∇θ;   θ ← θ + v,   or with nesterov   θ ← θ + μ·v − η·∇θ

    (the new v on the right: θ + μ²·v_old − (1 + μ)·η·∇θ).  theta, grad, velocity: (p,) of
    one dtype; theta and velocity are updated in place and must not overlap (grad may
    be theta exactly).  η = ``lr`` and μ = ``momentum`` are any reals finite in the dtype,
    rounded to it; the arithmetic is the dtype's.  Returns theta.
    """
    args = _momentum_args(theta, grad, velocity, lr, momentum, nesterov)
    _core.k_momentum_update(*args)
    return args[0]


def momentum_update_is_finite(theta: np.ndarray, grad: ArrayLike, velocity: np.ndarray,
                              lr: float, momentum: float, nesterov: bool = False) -> bool:
    """Whether ``momentum_update`` with the same arguments would leave every value of
    theta and velocity finite, without writing anything (as ``sgd_update_is_finite``)."""
    args = _momentum_args(theta, grad, velocity, lr, momentum, nesterov)
    return bool(_core.k_momentum_update(*args, check=True))


def _adam_args(theta: np.ndarray, grad: ArrayLike, m: np.ndarray, v: np.ndarray,
               lr: float, beta_1: float, beta_2: float, epsilon: float, t: int
               ) -> tuple[Any, ...]:
    theta, dt = _theta(theta)
    grad = _in("grad", grad, dt, 1)
    _shape_check(grad.shape == theta.shape, f"grad: expected shape {theta.shape}, got {grad.shape}")
    m = _state("m", m, theta.shape, dt)
    v = _state("v", v, theta.shape, dt)
    _no_overlap("theta", theta, {"grad": grad}, same_ok=("grad",))
    _no_overlap("m", m, {"theta": theta, "grad": grad})
    _no_overlap("v", v, {"theta": theta, "grad": grad, "m": m})
    lr = _real_in_dtype("lr", lr, dt)
    beta_1 = check_fraction("beta_1", beta_1, closed_low=True)
    beta_2 = check_fraction("beta_2", beta_2, closed_low=True)
    epsilon = _real_in_dtype("epsilon", epsilon, dt)
    if not dt.type(epsilon) > 0:
        raise ValueError(f"epsilon: expected a number > 0 in {dt}, got {epsilon}")
    if isinstance(t, (bool, np.bool_)) or not isinstance(t, numbers.Integral):
        raise TypeError(f"t: expected an int, got {t!r}")
    t = operator.index(t)
    if not 1 <= t < 2**63:
        raise ValueError(f"t: expected the step count, an int in [1, 2**63), got {t}")
    # The core's η_t, so that a step size overflowing the dtype is refused here instead
    # of writing ±inf/NaN into theta.
    lr_t = _core.adam_step_size(lr, beta_1, beta_2, t)
    if not _finite_in_dtype(lr_t, dt):
        raise ValueError(f"lr: the step size lr·√(1 − beta_2**t)/(1 − beta_1**t) = "
                         f"{lr_t} is not finite in {dt}")
    return theta, grad, m, v, lr, beta_1, beta_2, epsilon, t


def adam_update(theta: np.ndarray, grad: ArrayLike, m: np.ndarray, v: np.ndarray,
                lr: float, beta_1: float, beta_2: float, epsilon: float, t: int) -> np.ndarray:
    """Step t ≥ 1 of Adam (Kingma & Ba 2015, Algorithm 1), in place, with the bias
    correction folded into the step size as in their §2 (and scikit-learn):

        m ← β1·m + (1 − β1)·g;   v ← β2·v + (1 − β2)·g²
        η_t = η·√(1 − β2ᵗ)/(1 − β1ᵗ);   θ ← θ − η_t·m/(√v + ε)

    which is Algorithm 1's θ − η·m̂/(√v̂ + ε̂) with m̂ = m/(1 − β1ᵗ), v̂ = v/(1 − β2ᵗ) and
    ε̂ = ε/√(1 − β2ᵗ) (ε sits outside the square root, on the uncorrected v).
    theta, grad, m, v: (p,) of one dtype; theta, m and v are updated in place and must not
    overlap one another (grad may be theta exactly); v ≥ 0 as Adam keeps it.  η_t is
    computed in float64 and rounded to the dtype, and so are β1, 1 − β1, β2, 1 − β2 and
    ε; the update itself runs in the dtype (a float32 step is float32 throughout).
    lr: real, with η_t finite in the dtype; beta_1, beta_2 in [0, 1); epsilon > 0 and
    still > 0 in the dtype; t: int in [1, 2**63).  Returns theta.
    """
    args = _adam_args(theta, grad, m, v, lr, beta_1, beta_2, epsilon, t)
    _core.k_adam_update(*args)
    return args[0]


def adam_update_is_finite(theta: np.ndarray, grad: ArrayLike, m: np.ndarray, v: np.ndarray,
                          lr: float, beta_1: float, beta_2: float, epsilon: float,
                          t: int) -> bool:
    """Whether ``adam_update`` with the same arguments would leave every value of theta,
    m and v finite, without writing anything (as ``sgd_update_is_finite``): the check a
    training step makes before its Adam update."""
    args = _adam_args(theta, grad, m, v, lr, beta_1, beta_2, epsilon, t)
    return bool(_core.k_adam_update(*args, check=True))


def dropout_forward(A: ArrayLike, p: float, state: int,
                    out: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, int]:
    """Inverted dropout of a layer's output A (n, k), as a training step applies it:
    each unit kept with probability 1 − p and scaled by 1/(1 − p), else zeroed.

    The masks come from a counter ``state`` (an int in [0, 2**64)), the one
    ``MLP.dropout_state`` holds: a step draws its hidden layers' masks one after the
    other from it, in layer order.  Returns (A ⊙ mask, mask, the advanced state); mask
    holds 0 or 1/(1 − p) in A's dtype.  ``out=A`` works in place.
    """
    dt = _float_dtype("A", A)
    Ac = _in("A", A, dt, 2)
    p = check_fraction("p", p, closed_low=True)
    if isinstance(state, (bool, np.bool_)) or not isinstance(state, numbers.Integral):
        raise TypeError(f"state: expected an int, got {state!r}")
    if not 0 <= int(state) < 2**64:
        raise ValueError(f"state: expected an int in [0, 2**64), got {state}")
    D = _out("out", out, Ac.shape, dt)
    if D is not Ac:
        np.copyto(D, Ac)
    mask = np.empty_like(D)
    return D, mask, int(_core.k_dropout_forward(D, mask, p, int(state)))
