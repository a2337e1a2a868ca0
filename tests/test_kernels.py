"""Each compiled kernel of ``fastmlp.kernels`` against the numpy reference (tests/reference.py).

Inputs are drawn in float64, cast to the dtype under test, and the reference is computed
in float64 from those same cast values, so the only difference left is the kernel's own
rounding, which the tolerances below bound.
"""
from __future__ import annotations

import functools
import math

import numpy as np
import pytest

from fastmlp import kernels as K

import reference as ref

DTYPES = [np.float32, np.float64]

# ======================================================================================
# Tolerances — the one place they are set.
#
# u = eps/2 is the unit roundoff (float32 eps = 2**-23 ≈ 1.19e-7, float64 eps = 2**-52).
#
# * Element-wise results (relu, masks, mse delta, softmax, sgd) go through a handful of
#   roundings (≤ 4) plus libm exp/log (≤ 2 ulp), relative to the value itself.  The only
#   amplification is in softmax: z − max(z) is rounded once, which perturbs exp(z − m) by
#   a relative |z − m|·u, and |z − m| matters only up to the underflow point (≈ 104 for
#   float32, ≈ 745 for float64): ≤ 6.2e-6 resp. 8.3e-14.  Hence
#       RTOL = 1e-5 (float32, ≈ 84 eps)   and   RTOL = 1e-12 (float64, ≈ 4500 eps).
# * GEMM-type results (linear_forward, backprop_delta, dW, db) are sums of K products that
#   BLAS may reorder/block/FMA at will; the rigorous bound for ANY summation order is
#       |fl(Σ) − Σ| ≤ γ_{K+1}·Σ|terms|,   γ_m ≈ m·u,
#   so the absolute tolerance is scaled element-wise by the magnitude of the terms,
#   MAG = |A|·|W| + |b|  (computed in float64), with a per-dtype factor:
#       float64: 1e-12 (≥ (K+1)·u64 for every K < 9000 used here, i.e. still the rigorous
#                bound, and far below any real indexing/transpose error, which is O(MAG));
#       float32: max(10·sqrt(K), K)·eps32 — 10·sqrt(K)·eps is the usual statistical
#                estimate for random-sign sums; K·eps = 2K·u covers the worst case with a
#                margin of 2.  For K = 65 that is ≈ 9.6e-6 relative to MAG.
# * Cancellations (softmax cross-entropy delta P·s − Y, its loss lse − z, the sgd
#   difference θ − lr·g) get an atol of a few eps times the magnitudes of the operands.
# * The kernels of the scikit-learn estimators use the same two constants:
#   - logistic, tanh, exp: libm exp/tanh (≤ 2 ulp) and ≤ 3 roundings, relative to the
#     value → RTOL; below the dtype's smallest normal, logistic/exp results are subnormal
#     (or 0 once e^−z overflows) and keep only an absolute accuracy → atol finfo.tiny.
#   - derivatives through the output: D·A·(1 − A) is 3 roundings relative (1 − A is exact
#     for A ≥ ½) → RTOL; 1 − A² cancels as |A| → 1 (fl(A²) is off by u·A²), so tanh's
#     gets cancel_atol_factor·|D|·(1 + A²).
#   - scikit-learn's losses: the delta (P − Y)·w is two roundings relative → RTOL.  Each
#     loss term is computed in the dtype (the logs of clipped p and 1 − p; poisson's
#     y·log(y/p) − y + p cancels) and summed in float64: cancel_atol_factor times the
#     weighted mean of the magnitudes of the term's parts, see _sk_loss_atol.
#   - momentum and Adam round η, μ, β1, 1 − β1, β2, 1 − β2, ε and η_t to the dtype (u each)
#     and then run in the dtype; each difference (μ·v − η·g, β1·m + (1 − β1)·g, θ ± step)
#     gets cancel_atol_factor times the magnitudes of its operands, propagated through
#     Adam's division by √v + ε (all positive, so relative), see the tests.
# ======================================================================================
EPS = {np.float32: float(np.finfo(np.float32).eps), np.float64: float(np.finfo(np.float64).eps)}
RTOL = {np.float32: 1e-5, np.float64: 1e-12}


def gemm_atol_factor(dtype, K: int) -> float:
    """Factor c such that |kernel − exact| ≤ c·(|A|·|W| + |b|) for a K-term dot product."""
    if dtype == np.float64:
        return 1e-12
    return max(10.0 * math.sqrt(K), float(K)) * EPS[np.float32]


def cancel_atol_factor(dtype) -> float:
    """Factor c such that a difference a − b is within c·(|a| + |b|) of exact."""
    return 8.0 * EPS[dtype]


# ======================================================================================
# helpers
# ======================================================================================
SHAPES = [  # (n, d_in, d_out)
    pytest.param(1, 1, 1, id="1x1x1"),
    pytest.param(1, 7, 3, id="n1"),
    pytest.param(5, 3, 8, id="nonsquare"),
    pytest.param(17, 33, 17, id="w17-33"),
    pytest.param(33, 17, 33, id="w33-17"),
    pytest.param(129, 65, 33, id="large129x65"),
]
SQUARE_SHAPES = [  # (n, k) for the element-wise / row-wise kernels
    pytest.param(1, 1, id="1x1"),
    pytest.param(1, 9, id="n1"),
    pytest.param(6, 3, id="nonsquare"),
    pytest.param(17, 33, id="17x33"),
    pytest.param(33, 17, id="33x17"),
    pytest.param(129, 65, id="129x65"),
]


def rand(rng, shape, dtype, scale=1.0):
    """Random array of `dtype`, plus its exact float64 value (the reference input)."""
    a = (scale * rng.standard_normal(shape)).astype(dtype)
    return a, a.astype(np.float64)


def _stable(key) -> int:
    """A seed from a test's parameters, stable across runs (unlike hash())."""
    s = "|".join(map(str, key))
    h = 0
    for ch in s:
        h = (h * 131 + ord(ch)) % (2**32)
    return h


def relu_acts(rng, shape, dtype):
    """ReLU outputs with plenty of exact zeros (about half) and a few −0.0."""
    a = rng.standard_normal(shape).astype(dtype)
    a[a < 0] = 0
    flat = a.reshape(-1)
    flat[:: 7] = -0.0
    return a, a.astype(np.float64)


def assert_close(got, want, rtol, atol=0.0, dtype=None):
    got = np.asarray(got)
    want = np.asarray(want, dtype=np.float64)
    assert got.shape == want.shape, (got.shape, want.shape)
    if dtype is not None:
        assert got.dtype == np.dtype(dtype), got.dtype
    g = got.astype(np.float64)
    both_nan = np.isnan(g) & np.isnan(want)
    err = np.abs(g - want)
    lim = np.asarray(atol, dtype=np.float64) + rtol * np.abs(want)
    bad = ~((err <= lim) | both_nan)
    if bad.any():
        idx = tuple(np.argwhere(bad)[0])
        raise AssertionError(
            f"{int(bad.sum())} of {bad.size} elements out of tolerance; first at {idx}: "
            f"got {g[idx]!r}, want {want[idx]!r}, |err| {err[idx]:.3g} > {lim[idx] if np.ndim(lim) else lim:.3g}")


# ======================================================================================
# the reference itself: checked against central finite differences (float64), so that
# the kernel comparisons below compare against something known to be a gradient.
# ======================================================================================
@pytest.mark.parametrize("loss", ["mse", "softmax_cross_entropy"])
def test_reference_gradient_matches_finite_differences(loss):
    rng = np.random.default_rng(7)
    sizes = [3, 5, 4, 3]
    Ws = [rng.standard_normal((a, b)) for a, b in zip(sizes[:-1], sizes[1:])]
    bs = [0.1 * rng.standard_normal(b) for b in sizes[1:]]
    X = rng.standard_normal((6, 3))
    Y = rng.integers(0, 3, 6) if loss != "mse" else rng.standard_normal((6, 3))
    value, grads = ref.loss_and_grad(Ws, bs, X, Y, loss)
    h = 1e-6
    for l in range(len(Ws)):
        for P, G in ((Ws[l], grads[l][0]), (bs[l], grads[l][1])):
            flatP, flatG = P.reshape(-1), G.reshape(-1)
            for i in range(flatP.size):
                old = flatP[i]
                flatP[i] = old + h
                up = ref.loss_and_grad(Ws, bs, X, Y, loss)[0]
                flatP[i] = old - h
                down = ref.loss_and_grad(Ws, bs, X, Y, loss)[0]
                flatP[i] = old
                assert abs((up - down) / (2 * h) - flatG[i]) <= 1e-6 * (1 + abs(flatG[i]))
    # and the loss is the seed's formula evaluated directly
    out = ref.forward(Ws, bs, X)
    if loss == "mse":
        assert value == pytest.approx(((out - Y) ** 2).sum(axis=1).mean(), rel=1e-14)
    else:
        p = np.exp(out) / np.exp(out).sum(axis=1, keepdims=True)
        assert value == pytest.approx(-np.log(p[np.arange(6), Y]).mean(), rel=1e-12)


# ======================================================================================
# linear_forward: Z = A·W + b
# ======================================================================================
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n,d_in,d_out", SHAPES)
def test_linear_forward(dtype, n, d_in, d_out):
    rng = np.random.default_rng(_stable(("lf", n, d_in, d_out, dtype.__name__)))
    A, A64 = rand(rng, (n, d_in), dtype)
    W, W64 = rand(rng, (d_in, d_out), dtype)
    b, b64 = rand(rng, (d_out,), dtype)
    Z = K.linear_forward(A, W, b)
    mag = np.abs(A64) @ np.abs(W64) + np.abs(b64)
    assert_close(Z, ref.linear_forward(A64, W64, b64), RTOL[dtype],
                 gemm_atol_factor(dtype, d_in) * mag, dtype)
    # inputs untouched
    assert np.array_equal(A, A64.astype(dtype)) and np.array_equal(W, W64.astype(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
def test_linear_forward_out(dtype):
    rng = np.random.default_rng(1)
    A, A64 = rand(rng, (9, 17), dtype)
    W, W64 = rand(rng, (17, 5), dtype)
    b, b64 = rand(rng, (5,), dtype)
    out = np.full((9, 5), np.nan, dtype=dtype)  # stale content must be overwritten, not added
    Z = K.linear_forward(A, W, b, out=out)
    assert Z is out
    assert np.array_equal(out, K.linear_forward(A, W, b))
    mag = np.abs(A64) @ np.abs(W64) + np.abs(b64)
    assert_close(out, ref.linear_forward(A64, W64, b64), RTOL[dtype],
                 gemm_atol_factor(dtype, 17) * mag)


# ======================================================================================
# relu_forward / relu_backward
# ======================================================================================
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n,k", SQUARE_SHAPES)
def test_relu_forward(dtype, n, k):
    rng = np.random.default_rng(_stable(("relu", n, k, dtype.__name__)))
    Z, Z64 = rand(rng, (n, k), dtype)
    Z.reshape(-1)[::5] = 0.0
    Z64 = Z.astype(np.float64)
    A = K.relu_forward(Z)
    assert A is not Z and A.dtype == dtype
    assert np.array_equal(A, ref.relu(Z64).astype(dtype))  # exact: max(z, 0) is exact
    assert np.array_equal(Z, Z64.astype(dtype))  # input untouched without out=


@pytest.mark.parametrize("dtype", DTYPES)
def test_relu_forward_in_place(dtype):
    rng = np.random.default_rng(2)
    Z, Z64 = rand(rng, (7, 33), dtype)
    A = K.relu_forward(Z, out=Z)
    assert A is Z
    assert np.array_equal(Z, ref.relu(Z64).astype(dtype))
    out = np.full((7, 33), 5, dtype=dtype)
    Z2, Z2_64 = rand(rng, (7, 33), dtype)
    assert K.relu_forward(Z2, out=out) is out
    assert np.array_equal(out, ref.relu(Z2_64).astype(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
def test_relu_forward_zero_and_nan(dtype):
    Z = np.array([[np.nan, -0.0, 0.0, -1.0, 2.0, -np.inf, np.inf]], dtype=dtype)
    A = K.relu_forward(Z)
    assert np.isnan(A[0, 0]), "relu must keep NaN (a diverging step must stay visible)"
    assert np.array_equal(A[0, 1:], np.array([0, 0, 0, 2, 0, np.inf], dtype=dtype))
    assert not np.signbit(A[0, 3])  # a negative input becomes +0


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n,k", SQUARE_SHAPES)
def test_relu_backward(dtype, n, k):
    rng = np.random.default_rng(_stable(("relub", n, k, dtype.__name__)))
    A, A64 = relu_acts(rng, (n, k), dtype)
    dA, dA64 = rand(rng, (n, k), dtype)
    D = K.relu_backward(A, dA)
    assert D.dtype == dtype and D is not dA
    assert np.array_equal(D, ref.relu_backward(A64, dA64).astype(dtype))  # a mask is exact
    assert np.array_equal(dA, dA64.astype(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
def test_relu_backward_in_place_and_zero_derivative(dtype):
    # θ'(0) = 0 (seed 003 eq. 23: 0 for s ≤ 0), also for −0.0; NaN activations are masked.
    A = np.array([[0.0, -0.0, 1e-30, 3.0, np.nan]], dtype=dtype)
    dA = np.array([[5.0, 6.0, 7.0, 8.0, 9.0]], dtype=dtype)
    D = K.relu_backward(A, dA, out=dA)
    assert D is dA
    assert np.array_equal(dA, np.array([[0.0, 0.0, 7.0, 8.0, 0.0]], dtype=dtype))
    assert np.array_equal(dA, ref.relu_backward(A, [[5, 6, 7, 8, 9]]).astype(dtype))


# ======================================================================================
# backprop_delta: Δ(l) = θ'(S(l)) ⊙ (Δ(l+1)·W(l+1)ᵀ)
# ======================================================================================
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n,d,d_next", SHAPES)
def test_backprop_delta(dtype, n, d, d_next):
    rng = np.random.default_rng(_stable(("bpd", n, d, d_next, dtype.__name__)))
    Dn, Dn64 = rand(rng, (n, d_next), dtype)
    Wn, Wn64 = rand(rng, (d, d_next), dtype)
    A, A64 = relu_acts(rng, (n, d), dtype)
    D = K.backprop_delta(Dn, Wn, A)
    want = ref.backprop_delta(Dn64, Wn64, A64)
    mag = np.abs(Dn64) @ np.abs(Wn64).T
    assert_close(D, want, RTOL[dtype], gemm_atol_factor(dtype, d_next) * mag, dtype)
    # the mask is exact: every entry with A ≤ 0 is exactly zero
    assert np.all(D[~(A > 0)] == 0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_backprop_delta_out(dtype):
    rng = np.random.default_rng(3)
    Dn, Dn64 = rand(rng, (4, 17), dtype)
    Wn, Wn64 = rand(rng, (33, 17), dtype)
    A, A64 = relu_acts(rng, (4, 33), dtype)
    out = np.full((4, 33), np.nan, dtype=dtype)
    assert K.backprop_delta(Dn, Wn, A, out=out) is out
    assert np.array_equal(out, K.backprop_delta(Dn, Wn, A))
    assert_close(out, ref.backprop_delta(Dn64, Wn64, A64), RTOL[dtype],
                 gemm_atol_factor(dtype, 17) * (np.abs(Dn64) @ np.abs(Wn64).T))


# ======================================================================================
# linear_backward: dW = A_prevᵀ·Δ, db = 1ᵀ·Δ
# ======================================================================================
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n,d_in,d_out", SHAPES)
def test_linear_backward(dtype, n, d_in, d_out):
    rng = np.random.default_rng(_stable(("lb", n, d_in, d_out, dtype.__name__)))
    Ap, Ap64 = rand(rng, (n, d_in), dtype)
    D, D64 = rand(rng, (n, d_out), dtype)
    dW, db = K.linear_backward(Ap, D)
    want_dW, want_db = ref.linear_backward(Ap64, D64)
    assert_close(dW, want_dW, RTOL[dtype],
                 gemm_atol_factor(dtype, n) * (np.abs(Ap64).T @ np.abs(D64)), dtype)
    assert_close(db, want_db, RTOL[dtype],
                 gemm_atol_factor(dtype, n) * np.abs(D64).sum(axis=0), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_linear_backward_out(dtype):
    rng = np.random.default_rng(4)
    Ap, Ap64 = rand(rng, (33, 5), dtype)
    D, D64 = rand(rng, (33, 17), dtype)
    dW = np.full((5, 17), np.nan, dtype=dtype)
    db = np.full((17,), np.nan, dtype=dtype)  # must be overwritten, not accumulated into
    rW, rb = K.linear_backward(Ap, D, dW=dW, db=db)
    assert rW is dW and rb is db
    fW, fb = K.linear_backward(Ap, D)
    assert np.array_equal(dW, fW) and np.array_equal(db, fb)
    want_dW, want_db = ref.linear_backward(Ap64, D64)
    assert_close(dW, want_dW, RTOL[dtype],
                 gemm_atol_factor(dtype, 33) * (np.abs(Ap64).T @ np.abs(D64)))
    assert_close(db, want_db, RTOL[dtype],
                 gemm_atol_factor(dtype, 33) * np.abs(D64).sum(axis=0))


# ======================================================================================
# mse_loss_delta
# ======================================================================================
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n,k", SQUARE_SHAPES)
def test_mse_loss_delta(dtype, n, k):
    rng = np.random.default_rng(_stable(("mse", n, k, dtype.__name__)))
    Yh, Yh64 = rand(rng, (n, k), dtype, 3.0)
    Y, Y64 = rand(rng, (n, k), dtype)
    loss, D = K.mse_loss_delta(Yh, Y)
    want_loss, want_D = ref.mse_loss_delta(Yh64, Y64)
    assert isinstance(loss, float)
    # loss: each residual rounded once (rel. u), squared and summed in float64.
    assert loss == pytest.approx(want_loss, rel=RTOL[dtype])
    # delta: fl(fl(2/n)·fl(ŷ − y)): three roundings relative to the value, no atol needed.
    assert_close(D, want_D, RTOL[dtype], 0.0, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_mse_loss_delta_out(dtype):
    rng = np.random.default_rng(5)
    Yh, Yh64 = rand(rng, (17, 3), dtype)
    Y, Y64 = rand(rng, (17, 3), dtype)
    out = np.full((17, 3), np.nan, dtype=dtype)
    loss, D = K.mse_loss_delta(Yh, Y, out=out)
    assert D is out
    want_loss, want_D = ref.mse_loss_delta(Yh64, Y64)
    assert loss == pytest.approx(want_loss, rel=RTOL[dtype])
    assert_close(out, want_D, RTOL[dtype], 0.0)


# ======================================================================================
# softmax cross-entropy (labels and dense) and softmax
# ======================================================================================
def _xent_tolerances(dtype, logits64, T):
    """(loss atol, delta atol) for the cancellations lse − z and P·s − Y (see top)."""
    n, k = logits64.shape
    c = cancel_atol_factor(dtype)
    lse = np.log(np.exp(logits64 - logits64.max(1, keepdims=True)).sum(1)) + logits64.max(1)
    row_mass = np.abs(T).sum(axis=1)
    loss_atol = c * float(((np.abs(lse)[:, None] + np.abs(logits64) + math.log(k) + 1)
                           * np.abs(T)).sum() / n)
    P = ref.softmax(logits64)
    delta_atol = c * (P * row_mass[:, None] + np.abs(T)) / n
    return loss_atol, delta_atol


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n,k", SQUARE_SHAPES)
def test_softmax_xent_labels(dtype, n, k):
    rng = np.random.default_rng(_stable(("xl", n, k, dtype.__name__)))
    Z, Z64 = rand(rng, (n, k), dtype, 3.0)
    labels = rng.integers(0, k, n)
    loss, D = K.softmax_cross_entropy_loss_delta(Z, labels)
    want_loss, want_D = ref.softmax_xent_loss_delta(Z64, labels)
    T = np.eye(k)[labels]
    loss_atol, d_atol = _xent_tolerances(dtype, Z64, T)
    assert isinstance(loss, float)
    assert abs(loss - want_loss) <= loss_atol + RTOL[dtype] * abs(want_loss)
    assert_close(D, want_D, RTOL[dtype], d_atol, dtype)
    # rows of the delta sum to 0 for one-hot targets: (Σp − 1)/n
    assert_close(D.astype(np.float64).sum(axis=1), np.zeros(n), 0, 4 * k * EPS[dtype] / n)


@pytest.mark.parametrize("label_dtype", [np.int8, np.int32, np.uint16, np.int64])
def test_softmax_xent_label_integer_dtypes(label_dtype):
    rng = np.random.default_rng(6)
    Z = rng.standard_normal((10, 4))
    labels = rng.integers(0, 4, 10)
    want = K.softmax_cross_entropy_loss_delta(Z, labels.astype(np.int64))
    got = K.softmax_cross_entropy_loss_delta(Z, labels.astype(label_dtype))
    assert got[0] == want[0] and np.array_equal(got[1], want[1])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n,k", SQUARE_SHAPES)
def test_softmax_xent_dense(dtype, n, k):
    rng = np.random.default_rng(_stable(("xd", n, k, dtype.__name__)))
    Z, Z64 = rand(rng, (n, k), dtype, 3.0)
    Y = rng.random((n, k))
    Y = (Y / Y.sum(axis=1, keepdims=True)).astype(dtype)
    Y64 = Y.astype(np.float64)  # rows sum to 1 only up to float32 rounding: the exact
    loss, D = K.softmax_cross_entropy_loss_delta(Z, Y)  # delta (P·rowsum − Y)/n covers it
    want_loss, want_D = ref.softmax_xent_loss_delta(Z64, Y64)
    loss_atol, d_atol = _xent_tolerances(dtype, Z64, Y64)
    assert abs(loss - want_loss) <= loss_atol + RTOL[dtype] * abs(want_loss)
    assert_close(D, want_D, RTOL[dtype], d_atol, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_xent_dense_unnormalised_rows_exact_gradient(dtype):
    # The docstring promises Δ = (P·Σₖyᵢₖ − Y)/n for any non-negative rows.
    rng = np.random.default_rng(8)
    Z, Z64 = rand(rng, (5, 7), dtype)
    Y = (3 * rng.random((5, 7))).astype(dtype)
    Y[0] = 0  # an all-zero row contributes nothing
    loss, D = K.softmax_cross_entropy_loss_delta(Z, Y)
    want_loss, want_D = ref.softmax_xent_loss_delta(Z64, Y.astype(np.float64))
    loss_atol, d_atol = _xent_tolerances(dtype, Z64, Y.astype(np.float64))
    assert abs(loss - want_loss) <= loss_atol + RTOL[dtype] * abs(want_loss)
    assert_close(D, want_D, RTOL[dtype], d_atol, dtype)
    assert np.all(D[0] == 0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_xent_out(dtype):
    rng = np.random.default_rng(9)
    Z, Z64 = rand(rng, (6, 5), dtype)
    labels = rng.integers(0, 5, 6)
    out = np.full((6, 5), np.nan, dtype=dtype)
    loss, D = K.softmax_cross_entropy_loss_delta(Z, labels, out=out)
    assert D is out
    l2, D2 = K.softmax_cross_entropy_loss_delta(Z, labels)
    assert loss == l2 and np.array_equal(out, D2)
    Y = np.eye(5, dtype=dtype)[labels]
    out2 = np.full((6, 5), np.nan, dtype=dtype)
    loss3, D3 = K.softmax_cross_entropy_loss_delta(Z, Y, out=out2)
    assert D3 is out2
    want_loss, want_D = ref.softmax_xent_loss_delta(Z64, labels)
    loss_atol, d_atol = _xent_tolerances(dtype, Z64, np.eye(5)[labels])
    for lo, d in ((loss, out), (loss3, out2)):
        assert abs(lo - want_loss) <= loss_atol + RTOL[dtype] * abs(want_loss)
        assert_close(d, want_D, RTOL[dtype], d_atol)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("dense", [False, True], ids=["labels", "dense"])
def test_softmax_xent_huge_logits_finite(dtype, dense):
    # ±1e4 overflows exp in both dtypes without the max shift.
    Z = np.array([[1e4, -1e4, 0.0],
                  [-1e4, 1e4, 1e4],
                  [-1e4, -1e4, -1e4],
                  [1e4, 1e4 - 1, -1e4]], dtype=dtype)
    labels = np.array([1, 0, 2, 1])
    Y = np.eye(3, dtype=dtype)[labels] if dense else labels
    loss, D = K.softmax_cross_entropy_loss_delta(Z, Y)
    assert np.isfinite(loss) and np.all(np.isfinite(D))
    Z64 = Z.astype(np.float64)
    want_loss, want_D = ref.softmax_xent_loss_delta(Z64, labels)
    assert np.isfinite(want_loss)
    loss_atol, d_atol = _xent_tolerances(dtype, Z64, np.eye(3)[labels])
    assert abs(loss - want_loss) <= loss_atol + RTOL[dtype] * abs(want_loss)
    assert_close(D, want_D, RTOL[dtype], d_atol, dtype)
    # the loss is large (≈ 2e4·(1+1)/4 + …) — a clipped/NaN-guarded value would not match
    assert want_loss > 9e3


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n,k", SQUARE_SHAPES)
def test_softmax(dtype, n, k):
    rng = np.random.default_rng(_stable(("sm", n, k, dtype.__name__)))
    Z, Z64 = rand(rng, (n, k), dtype, 4.0)
    P = K.softmax(Z)
    assert P is not Z
    assert_close(P, ref.softmax(Z64), RTOL[dtype], 0.0, dtype)
    assert np.array_equal(Z, Z64.astype(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_in_place_and_huge(dtype):
    Z = np.array([[1e4, -1e4, 0.0], [-1e4, -1e4, -1e4], [3.0, 1.0, 2.0]], dtype=dtype)
    Z64 = Z.astype(np.float64)
    P = K.softmax(Z, out=Z)
    assert P is Z
    assert np.all(np.isfinite(Z))
    assert_close(Z, ref.softmax(Z64), RTOL[dtype], 0.0)


# ======================================================================================
# sgd_update: θ ← θ − lr·∇θ in place
# ======================================================================================
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("p", [1, 17, 33, 129 * 65])
def test_sgd_update(dtype, p):
    rng = np.random.default_rng(_stable(("sgd", p, dtype.__name__)))
    theta, th64 = rand(rng, (p,), dtype)
    g, g64 = rand(rng, (p,), dtype)
    lr = 0.37
    res = K.sgd_update(theta, g, lr)
    assert res is theta and theta.dtype == dtype
    want = th64 - lr * g64
    assert_close(theta, want, RTOL[dtype], cancel_atol_factor(dtype) * (np.abs(th64) + lr * np.abs(g64)))
    assert np.array_equal(g, g64.astype(dtype))


def test_sgd_update_rejects():
    th = np.zeros(4)
    with pytest.raises(ValueError, match="lr"):
        K.sgd_update(th, np.ones(4), float("nan"))
    with pytest.raises(ValueError, match="lr"):
        K.sgd_update(th, np.ones(4), float("inf"))
    with pytest.raises(TypeError, match="^theta:"):
        K.sgd_update([0.0, 0.0], np.ones(2), 0.1)
    with pytest.raises(TypeError, match="^grad:"):
        K.sgd_update(th, np.ones(4, dtype=np.float32), 0.1)
    with pytest.raises(ValueError, match="^grad:"):
        K.sgd_update(th, np.ones(5), 0.1)
    with pytest.raises(ValueError, match="^theta:"):
        K.sgd_update(np.zeros(8)[::2], np.ones(4), 0.1)  # strided: cannot update in place
    assert np.array_equal(th, np.zeros(4))


# ======================================================================================
# layouts: Fortran-ordered and strided inputs give the same result as C-contiguous ones
# ======================================================================================
def _layouts(a):
    f = np.asfortranarray(a)
    wide = np.zeros((a.shape[0], 2 * a.shape[1]), dtype=a.dtype)
    wide[:, ::2] = a
    tall = np.zeros((2 * a.shape[0], a.shape[1]), dtype=a.dtype)
    tall[::2] = a
    return {"fortran": f, "cols::2": wide[:, ::2], "rows::2": tall[::2]}


def _kernel_cases(dtype, rng):
    n, d, k = 9, 17, 5
    A = rng.standard_normal((n, d)).astype(dtype)
    W = rng.standard_normal((d, k)).astype(dtype)
    b = rng.standard_normal(k).astype(dtype)
    Act = np.maximum(rng.standard_normal((n, d)), 0).astype(dtype)
    Dk = rng.standard_normal((n, k)).astype(dtype)
    Dd = rng.standard_normal((n, d)).astype(dtype)
    Yp = rng.random((n, k)).astype(dtype)
    Yp /= Yp.sum(axis=1, keepdims=True)
    labels = rng.integers(0, k, n)
    return {
        "linear_forward": (K.linear_forward, [A, W, b]),
        "relu_forward": (K.relu_forward, [Dd]),
        "relu_backward": (K.relu_backward, [Act, Dd]),
        "backprop_delta": (K.backprop_delta, [Dk, W, Act]),
        "linear_backward": (K.linear_backward, [A, Dk]),
        "mse_loss_delta": (K.mse_loss_delta, [Dk, Yp]),
        "xent_labels": (K.softmax_cross_entropy_loss_delta, [Dk, labels]),
        "xent_dense": (K.softmax_cross_entropy_loss_delta, [Dk, Yp]),
        "softmax": (K.softmax, [Dk]),
        "activation_forward": (functools.partial(K.activation_forward, "tanh"), [Dd]),
        "activation_backward": (functools.partial(K.activation_backward, "logistic"),
                                [Yp, Dk]),
        "sklearn_loss_delta": (functools.partial(K.sklearn_loss_delta, "binary_log_loss"),
                               [Yp, (Dk > 0).astype(dtype)]),
    }


def _flatten(res):
    if isinstance(res, tuple):
        return [np.asarray(r) for r in res]
    return [np.asarray(res)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ["linear_forward", "relu_forward", "relu_backward",
                                  "backprop_delta", "linear_backward", "mse_loss_delta",
                                  "xent_labels", "xent_dense", "softmax",
                                  "activation_forward", "activation_backward",
                                  "sklearn_loss_delta"])
@pytest.mark.parametrize("layout", ["fortran", "cols::2", "rows::2"])
def test_noncontiguous_inputs_same_result(dtype, name, layout):
    rng = np.random.default_rng(10)
    fn, args = _kernel_cases(dtype, rng)[name]
    base = _flatten(fn(*args))
    for i, a in enumerate(args):
        if a.ndim != 2:
            continue
        alt = list(args)
        alt[i] = _layouts(a)[layout]
        assert not alt[i].flags.c_contiguous
        before = alt[i].copy()
        got = _flatten(fn(*alt))
        for g, w in zip(got, base):
            assert np.array_equal(g, w), f"{name}: argument {i} as {layout} changed the result"
        assert np.array_equal(alt[i], before)  # non-contiguous input was not written to


@pytest.mark.parametrize("dtype", DTYPES)
def test_strided_1d_inputs(dtype):
    rng = np.random.default_rng(11)
    A = rng.standard_normal((4, 3)).astype(dtype)
    W = rng.standard_normal((3, 5)).astype(dtype)
    b2 = np.zeros(10, dtype=dtype)
    b2[::2] = rng.standard_normal(5)
    assert np.array_equal(K.linear_forward(A, W, b2[::2]),
                          K.linear_forward(A, W, np.ascontiguousarray(b2[::2])))
    th = rng.standard_normal(5).astype(dtype)
    th2 = th.copy()
    g2 = np.zeros(10, dtype=dtype)
    g2[::2] = rng.standard_normal(5)
    K.sgd_update(th, g2[::2], 0.1)
    K.sgd_update(th2, np.ascontiguousarray(g2[::2]), 0.1)
    assert np.array_equal(th, th2)


# ======================================================================================
# argument errors
# ======================================================================================
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bad", [-1, 3, 2**40])
@pytest.mark.parametrize("pos", [0, 2])
def test_xent_labels_out_of_range(dtype, bad, pos):
    Z = np.zeros((3, 3), dtype=dtype)
    labels = np.array([0, 1, 2])
    labels[pos] = bad
    out = np.full((3, 3), 7, dtype=dtype)
    # (the message names 'labels', the argument is called Y: accept either)
    with pytest.raises(ValueError, match=r"^(Y|labels):"):
        K.softmax_cross_entropy_loss_delta(Z, labels, out=out)


def test_xent_labels_rejects_huge_unsigned_and_non_integer():
    Z = np.zeros((2, 3))
    with pytest.raises(ValueError, match=r"^(Y|labels):"):
        K.softmax_cross_entropy_loss_delta(Z, np.array([0, 2**64 - 1], dtype=np.uint64))
    with pytest.raises(ValueError, match=r"^(Y|labels):"):
        K.softmax_cross_entropy_loss_delta(Z, np.array([0, 3], dtype=np.uint8))
    with pytest.raises(TypeError, match="^Y:"):
        K.softmax_cross_entropy_loss_delta(Z, np.array([0.0, 1.0]))
    with pytest.raises(TypeError, match="^Y:"):
        K.softmax_cross_entropy_loss_delta(Z, np.array([True, False]))
    with pytest.raises(ValueError, match="^Y:"):
        K.softmax_cross_entropy_loss_delta(Z, np.array([0, 1, 2]))  # 3 labels for 2 rows


def _dtype_mismatch_cases():
    f8 = lambda *s: np.ones(s)  # noqa: E731
    f4 = lambda *s: np.ones(s, dtype=np.float32)  # noqa: E731
    return [
        ("W", K.linear_forward, (f8(2, 3), f4(3, 4), f8(4))),
        ("b", K.linear_forward, (f8(2, 3), f8(3, 4), f4(4))),
        ("A", K.linear_forward, (np.ones((2, 3), dtype=np.int64), f8(3, 4), f8(4))),
        ("A", K.linear_forward, (np.ones((2, 3), dtype=np.float16), f8(3, 4), f8(4))),
        ("dA", K.relu_backward, (f4(2, 3), f8(2, 3))),
        ("W_next", K.backprop_delta, (f8(2, 4), f4(3, 4), f8(2, 3))),
        ("A", K.backprop_delta, (f4(2, 4), f4(3, 4), f8(2, 3))),
        ("D", K.linear_backward, (f8(2, 3), f4(2, 4))),
        ("Y", K.mse_loss_delta, (f4(2, 3), f8(2, 3))),
        ("Y", K.softmax_cross_entropy_loss_delta, (f8(2, 3), f4(2, 3))),
        ("Z", K.softmax, (np.ones((2, 3), dtype=np.int32),)),
        ("Z", K.relu_forward, (np.ones((2, 3), dtype=complex),)),
        ("grad", K.sgd_update, (f8(3), f4(3), 0.1)),
        ("Z", functools.partial(K.activation_forward, "tanh"), (np.ones((2, 3), dtype=int),)),
        ("D", functools.partial(K.activation_backward, "tanh"), (f8(2, 3), f4(2, 3))),
        ("A", functools.partial(K.activation_backward, "relu"),
         (np.ones((2, 3), dtype=np.int64), f8(2, 3))),
        ("Y", functools.partial(K.sklearn_loss_delta, "squared_error"), (f4(2, 3), f8(2, 3))),
        ("sample_weight", functools.partial(K.sklearn_loss_delta, "poisson"),
         (f8(2, 3), f8(2, 3), f4(2))),
        ("grad", K.momentum_update, (f4(3), f8(3), f4(3), 0.1, 0.9)),
        ("velocity", K.momentum_update, (f8(3), f8(3), f4(3), 0.1, 0.9)),
        ("theta", K.momentum_update, (np.ones(3, dtype=np.float16), f8(3), f8(3), 0.1, 0.9)),
        ("m", K.adam_update, (f8(3), f8(3), f4(3), f8(3), 1e-3, 0.9, 0.999, 1e-8, 1)),
        ("v", K.adam_update, (f4(3), f4(3), f4(3), f8(3), 1e-3, 0.9, 0.999, 1e-8, 1)),
    ]


@pytest.mark.parametrize("name,fn,args", _dtype_mismatch_cases(),
                         ids=lambda v: v if isinstance(v, str) else None)
def test_dtype_mismatch_raises_typeerror(name, fn, args):
    snap = [a.copy() for a in args if isinstance(a, np.ndarray)]
    with pytest.raises(TypeError, match=rf"^{name}:"):
        fn(*args)
    for a, s in zip([a for a in args if isinstance(a, np.ndarray)], snap):
        assert np.array_equal(a, s)


def _shape_mismatch_cases():
    o = np.ones
    return [
        ("W", K.linear_forward, (o((2, 3)), o((4, 5)), o(5))),
        ("b", K.linear_forward, (o((2, 3)), o((3, 5)), o(4))),
        ("W", K.linear_forward, (o((2, 3)), o(3), o(5))),  # 1-D W
        ("A", K.linear_forward, (o(3), o((3, 5)), o(5))),  # 1-D A
        ("b", K.linear_forward, (o((2, 3)), o((3, 5)), o((1, 5)))),  # 2-D b
        ("A", K.linear_forward, (o((0, 3)), o((3, 5)), o(5))),  # empty batch
        ("dA", K.relu_backward, (o((2, 3)), o((3, 2)))),
        ("Z", K.relu_forward, (o((2, 3, 1)),)),
        ("W_next", K.backprop_delta, (o((2, 4)), o((3, 5)), o((2, 3)))),
        ("A", K.backprop_delta, (o((2, 4)), o((3, 4)), o((2, 5)))),
        ("A", K.backprop_delta, (o((2, 4)), o((3, 4)), o((3, 3)))),
        ("D", K.linear_backward, (o((2, 3)), o((3, 4)))),
        ("Y", K.mse_loss_delta, (o((2, 3)), o((2, 4)))),
        ("Y", K.mse_loss_delta, (o((2, 3)), o(6))),
        ("Y", K.softmax_cross_entropy_loss_delta, (o((2, 3)), o((2, 4)))),
        ("Y", K.softmax_cross_entropy_loss_delta, (o((2, 3)), np.zeros((2, 3, 1)))),
        ("logits", K.softmax_cross_entropy_loss_delta, (o(3), np.zeros(3, dtype=int))),
        ("Z", K.softmax, (o(3),)),
        ("Z", functools.partial(K.activation_forward, "logistic"), (o(3),)),
        ("D", functools.partial(K.activation_backward, "tanh"), (o((2, 3)), o((3, 2)))),
        ("A", functools.partial(K.activation_backward, "tanh"), (o((2, 3, 1)), o((2, 3)))),
        ("Y", functools.partial(K.sklearn_loss_delta, "log_loss"), (o((2, 3)), o((2, 4)))),
        ("Y", functools.partial(K.sklearn_loss_delta, "log_loss"), (o((2, 3)), o(2))),
        ("P", functools.partial(K.sklearn_loss_delta, "poisson"), (o((0, 3)), o((0, 3)))),
        ("sample_weight", functools.partial(K.sklearn_loss_delta, "squared_error"),
         (o((2, 3)), o((2, 3)), o(3))),
        ("sample_weight", functools.partial(K.sklearn_loss_delta, "squared_error"),
         (o((2, 3)), o((2, 3)), o((2, 1)))),
        ("theta", K.momentum_update, (o((3, 1)), o(3), o(3), 0.1, 0.9)),
        ("grad", K.momentum_update, (o(3), o(4), o(3), 0.1, 0.9)),
        ("velocity", K.momentum_update, (o(3), o(3), o(4), 0.1, 0.9)),
        ("m", K.adam_update, (o(3), o(3), o(4), o(3), 1e-3, 0.9, 0.999, 1e-8, 1)),
        ("v", K.adam_update, (o(3), o(3), o(3), o((3, 1)), 1e-3, 0.9, 0.999, 1e-8, 1)),
    ]


@pytest.mark.parametrize("name,fn,args", _shape_mismatch_cases(),
                         ids=lambda v: v if isinstance(v, str) else None)
def test_shape_mismatch_raises_valueerror_naming_argument(name, fn, args):
    with pytest.raises(ValueError, match=rf"(^|[ ,]){name}[:,]"):
        fn(*args)


@pytest.mark.parametrize("dtype", DTYPES)
def test_bad_out_arrays(dtype):
    A = np.ones((2, 3), dtype=dtype)
    W = np.ones((3, 4), dtype=dtype)
    b = np.ones(4, dtype=dtype)
    other = np.float32 if dtype == np.float64 else np.float64
    with pytest.raises(ValueError, match="^out:"):
        K.linear_forward(A, W, b, out=np.empty((2, 5), dtype=dtype))
    with pytest.raises(ValueError, match="^out:"):
        K.linear_forward(A, W, b, out=np.empty((2, 4), dtype=other))
    with pytest.raises(ValueError, match="^out:"):
        K.linear_forward(A, W, b, out=np.empty((4, 2), dtype=dtype).T)  # Fortran
    ro = np.zeros((2, 4), dtype=dtype)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="^out:"):
        K.linear_forward(A, W, b, out=ro)
    assert np.all(ro == 0)
    with pytest.raises(TypeError, match="^out:"):
        K.linear_forward(A, W, b, out=[[0.0] * 4] * 2)
    with pytest.raises(ValueError, match="^out:"):
        K.relu_forward(np.asfortranarray(np.ones((3, 2), dtype=dtype)),
                       out=np.asfortranarray(np.ones((3, 2), dtype=dtype)))
    with pytest.raises(ValueError, match="^dW:"):
        K.linear_backward(A, np.ones((2, 4), dtype=dtype), dW=np.empty((4, 3), dtype=dtype))
    with pytest.raises(ValueError, match="^db:"):
        K.linear_backward(A, np.ones((2, 4), dtype=dtype), db=np.empty(3, dtype=dtype))
    with pytest.raises(ValueError, match="^out:"):
        K.softmax_cross_entropy_loss_delta(np.ones((2, 3), dtype=dtype), [0, 1],
                                           out=np.empty((3, 2), dtype=dtype))


def test_non_numeric_inputs_raise_typeerror():
    with pytest.raises(TypeError, match="^A:"):
        K.linear_forward(np.array([["a", "b"]]), np.ones((2, 1)), np.ones(1))
    with pytest.raises(TypeError, match="^Z:"):
        K.softmax(np.array([[object(), 1.0]], dtype=object))
    with pytest.raises(ValueError, match="^Z:"):
        K.softmax([[1.0, 2.0], [3.0]])  # ragged


def test_lists_are_accepted_as_float64():
    A = [[1.0, 2.0], [3.0, 4.0]]
    W = [[1.0], [-1.0]]
    Z = K.linear_forward(A, W, [0.5])
    assert Z.dtype == np.float64
    assert np.array_equal(Z, np.array([[-0.5], [-0.5]]))


# ======================================================================================
# activation_forward / activation_backward: the activations of the scikit-learn work
# ======================================================================================
ACT_KINDS = ["identity", "relu", "logistic", "tanh", "exp", "softmax"]
DERIV_KINDS = ["identity", "relu", "logistic", "tanh"]
EXACT_KINDS = ("identity", "relu")   # a copy and a select: no rounding at all


def _act_atol(dtype) -> float:
    return float(np.finfo(dtype).tiny)


@pytest.mark.parametrize("kind", DERIV_KINDS)
def test_reference_activation_derivatives_match_finite_differences(kind):
    # The reference writes g' through the output; check it is g' of its own forward.
    z = (np.linspace(-4, 4, 81) + 0.013)[None, :]     # away from relu's kink at 0
    h = 1e-6
    fd = (ref.activation(kind, z + h) - ref.activation(kind, z - h)) / (2 * h)
    # central differences: O(h²) truncation plus ~eps/h rounding, both ≪ 1e-8
    assert np.allclose(ref.activation_derivative(kind, ref.activation(kind, z)), fd,
                       rtol=1e-8, atol=1e-8)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", ACT_KINDS)
@pytest.mark.parametrize("n,k", SQUARE_SHAPES)
def test_activation_forward(dtype, kind, n, k):
    rng = np.random.default_rng(_stable(("af", kind, n, k, dtype.__name__)))
    Z, Z64 = rand(rng, (n, k), dtype, 4.0)
    A = K.activation_forward(kind, Z)
    assert A is not Z
    want = ref.activation(kind, Z64)
    if kind in EXACT_KINDS:
        assert A.dtype == dtype and np.array_equal(A, want.astype(dtype))
    else:
        assert_close(A, want, RTOL[dtype], _act_atol(dtype), dtype)
    assert np.array_equal(Z, Z64.astype(dtype))   # input untouched without out=


@pytest.mark.parametrize("dtype", DTYPES)
def test_activation_forward_shares_relu_and_softmax(dtype):
    rng = np.random.default_rng(12)
    Z = (4 * rng.standard_normal((7, 5))).astype(dtype)
    assert np.array_equal(K.activation_forward("relu", Z), K.relu_forward(Z))
    assert np.array_equal(K.activation_forward("softmax", Z), K.softmax(Z))


@pytest.mark.parametrize("dtype", DTYPES)
def test_activation_forward_extremes(dtype):
    big = float(np.finfo(dtype).max)
    Z = np.array([[-big, -1e4, -50.0, -0.0, 0.0, 50.0, 1e4, big, np.inf, -np.inf, np.nan]],
                 dtype=dtype)
    lg = K.activation_forward("logistic", Z)[0]
    # saturates to exactly 0 and 1; NaN only from NaN
    assert np.array_equal(lg[[0, 1, 9]], [0, 0, 0]) and np.array_equal(lg[[5, 6, 7, 8]], [1] * 4)
    assert lg[3] == 0.5 and lg[4] == 0.5 and np.isnan(lg[10])
    assert_close(lg[2], ref.logistic(Z[:, 2])[0], RTOL[dtype], 0.0)   # 1.9e-22: no underflow
    th = K.activation_forward("tanh", Z)[0]
    assert np.array_equal(th[[0, 1, 9]], [-1] * 3) and np.array_equal(th[[6, 7, 8]], [1] * 3)
    assert th[3] == 0 and np.signbit(th[3]) and np.isnan(th[10])
    ex = K.activation_forward("exp", Z)[0]
    assert np.array_equal(ex[[0, 1, 9]], [0] * 3) and np.all(np.isposinf(ex[[6, 7, 8]]))
    assert ex[3] == 1 and np.isnan(ex[10])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", DERIV_KINDS)
@pytest.mark.parametrize("n,k", SQUARE_SHAPES)
def test_activation_backward(dtype, kind, n, k):
    rng = np.random.default_rng(_stable(("ab", kind, n, k, dtype.__name__)))
    if kind == "relu":
        A, A64 = relu_acts(rng, (n, k), dtype)
    else:
        # genuine outputs of the activation in the dtype, saturated ones (|A| = 1) included
        Z = (4 * rng.standard_normal((n, k))).astype(dtype)
        A = ref.activation(kind, Z).astype(dtype)
        A64 = A.astype(np.float64)
    D, D64 = rand(rng, (n, k), dtype)
    got = K.activation_backward(kind, A, D)
    assert got is not D
    want = ref.activation_backward(kind, A64, D64)
    if kind in EXACT_KINDS:
        assert got.dtype == dtype and np.array_equal(got, want.astype(dtype))
    else:
        atol = cancel_atol_factor(dtype) * np.abs(D64) * (1 + A64 ** 2) if kind == "tanh" else 0.0
        assert_close(got, want, RTOL[dtype], atol, dtype)
    assert np.array_equal(D, D64.astype(dtype)) and np.array_equal(A, A64.astype(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
def test_activation_backward_relu_is_relu_backward(dtype):
    rng = np.random.default_rng(13)
    A, _ = relu_acts(rng, (9, 17), dtype)
    D = rng.standard_normal((9, 17)).astype(dtype)
    assert np.array_equal(K.activation_backward("relu", A, D), K.relu_backward(A, D))


@pytest.mark.parametrize("dtype", DTYPES)
def test_activation_out_and_in_place(dtype):
    rng = np.random.default_rng(14)
    Z = rng.standard_normal((5, 7)).astype(dtype)
    fresh = K.activation_forward("logistic", Z)
    out = np.full((5, 7), np.nan, dtype=dtype)
    assert K.activation_forward("logistic", Z, out=out) is out
    assert np.array_equal(out, fresh)
    Zc = Z.copy()
    assert K.activation_forward("logistic", Zc, out=Zc) is Zc and np.array_equal(Zc, fresh)
    D = rng.standard_normal((5, 7)).astype(dtype)
    want = K.activation_backward("tanh", fresh, D)
    out = np.full((5, 7), np.nan, dtype=dtype)
    assert K.activation_backward("tanh", fresh, D, out=out) is out
    assert np.array_equal(out, want)
    assert K.activation_backward("tanh", fresh, D, out=D) is D and np.array_equal(D, want)
    # out over the activations would overwrite the g' it still has to read
    A = fresh.copy()
    with pytest.raises(ValueError, match="^out:"):
        K.activation_backward("tanh", A, D, out=A)
    assert np.array_equal(A, fresh)
    with pytest.raises(ValueError, match="^out:"):
        K.activation_forward("tanh", Z, out=np.empty((7, 5), dtype=dtype))


@pytest.mark.parametrize("call", [
    lambda: K.activation_forward("sigmoid", np.ones((2, 2))),
    lambda: K.activation_forward(None, np.ones((2, 2))),
    lambda: K.activation_forward("RELU", np.ones((2, 2))),
    lambda: K.activation_backward("softmax", np.ones((2, 2)), np.ones((2, 2))),
    lambda: K.activation_backward("exp", np.ones((2, 2)), np.ones((2, 2))),
    lambda: K.sklearn_loss_delta("mse", np.ones((2, 2)), np.ones((2, 2))),
    lambda: K.sklearn_loss_delta("sk_log_loss", np.ones((2, 2)), np.ones((2, 2))),
], ids=["forward-unknown", "forward-None", "forward-case", "backward-softmax",
        "backward-exp", "loss-mse", "loss-core-name"])
def test_unknown_kind_rejected(call):
    with pytest.raises(ValueError, match="^kind:"):
        call()


# ======================================================================================
# sklearn_loss_delta: scikit-learn's output losses and raw deltas
# ======================================================================================
SK_KINDS = ["squared_error", "log_loss", "binary_log_loss", "poisson"]


def _sk_data(rng, kind, n, k, dtype):
    """(P, Y) as the estimators produce them, including clipped probabilities."""
    if kind == "squared_error":
        P, Y = 2 * rng.standard_normal((n, k)), rng.standard_normal((n, k))
    elif kind == "log_loss":
        P = ref.softmax(2 * rng.standard_normal((n, k)))
        Y = np.eye(k)[rng.integers(0, k, n)]
        P[0, 0], Y[0] = 0.0, np.eye(k)[0]    # p = 0 under a target of 1: log clipped at eps
    elif kind == "binary_log_loss":
        P = ref.logistic(3 * rng.standard_normal((n, k)))
        Y = (rng.random((n, k)) < 0.5).astype(np.float64)
        P[0, 0], Y[0, 0] = 0.0, 1.0          # log p clipped
        P[-1, -1], Y[-1, -1] = 1.0, 0.0      # log(1 − p) clipped
    else:
        P = np.exp(rng.standard_normal((n, k)))
        Y = rng.poisson(2.0, (n, k)).astype(np.float64)
        Y.reshape(-1)[::3] = 0.0             # 0·log(0/p) = 0
    P, Y = P.astype(dtype), Y.astype(dtype)
    return P, Y, P.astype(np.float64), Y.astype(np.float64)


def _sk_loss_atol(kind, P64, Y64, w, dtype) -> float:
    """cancel_atol_factor × weighted mean of the magnitudes that each loss term sums."""
    eps = float(np.finfo(dtype).eps)
    Pc = np.clip(P64, eps, 1 - eps)
    with np.errstate(divide="ignore", invalid="ignore"):
        if kind == "squared_error":
            parts = 0.5 * (Y64 - P64) ** 2 / P64.shape[1]
        elif kind == "log_loss":
            parts = np.abs(Y64 * np.log(Pc))
        elif kind == "binary_log_loss":
            # 1 − p and 1 − y are rounded: an absolute u inside the log, a relative one outside
            parts = np.abs(Y64 * np.log(Pc)) + np.abs(1 - Y64) * (np.abs(np.log(1 - Pc)) + 1)
        else:
            ylog = np.where(Y64 == 0, 0.0, np.abs(Y64 * np.log(Y64 / P64)))
            parts = ylog + 2 * np.abs(Y64) + np.abs(P64)
    w = np.ones(P64.shape[0]) if w is None else w
    return cancel_atol_factor(dtype) * float(w @ parts.sum(axis=1)) / float(w.sum())


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", SK_KINDS)
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("n,k", SQUARE_SHAPES)
def test_sklearn_loss_delta(dtype, kind, weighted, n, k):
    rng = np.random.default_rng(_stable(("sk", kind, weighted, n, k, dtype.__name__)))
    P, Y, P64, Y64 = _sk_data(rng, kind, n, k, dtype)
    sw = sw64 = None
    if weighted:
        sw = (2 * rng.random(n)).astype(dtype)
        sw[n // 2] = 0.0                     # a zero weight removes the row from the mean
        if not sw.any():
            sw[0] = 1.0
        sw64 = sw.astype(np.float64)
    eps = float(np.finfo(dtype).eps)
    loss, D = K.sklearn_loss_delta(kind, P, Y, sw)
    want_loss, want_D = ref.sklearn_loss(kind, P64, Y64, sw64, eps=eps)
    assert isinstance(loss, float) and np.isfinite(want_loss)
    assert abs(loss - want_loss) <= (_sk_loss_atol(kind, P64, Y64, sw64, dtype)
                                     + RTOL[dtype] * abs(want_loss))
    assert_close(D, want_D, RTOL[dtype], 0.0, dtype)
    assert np.array_equal(P, P64.astype(dtype)) and np.array_equal(Y, Y64.astype(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", SK_KINDS)
def test_sklearn_loss_delta_matches_scikit_learn(dtype, kind):
    # scikit-learn's own loss functions as a second oracle, on its own dtype rules
    base = pytest.importorskip("sklearn.neural_network._base")
    rng = np.random.default_rng(_stable(("sk-sk", kind, dtype.__name__)))
    P, Y, P64, Y64 = _sk_data(rng, kind, 17, 3, dtype)
    sw = (rng.random(17) + 0.5).astype(dtype)
    for weights in (None, sw):
        loss, D = K.sklearn_loss_delta(kind, P, Y, weights)
        with np.errstate(divide="ignore"):
            want = float(base.LOSS_FUNCTIONS[kind](Y, P, sample_weight=weights))
        w64 = None if weights is None else weights.astype(np.float64)
        assert abs(loss - want) <= (2 * _sk_loss_atol(kind, P64, Y64, w64, dtype)
                                    + RTOL[dtype] * abs(want))
        wcol = 1.0 if weights is None else weights[:, None]
        assert np.array_equal(D, ((P - Y) * wcol).astype(dtype))   # same two roundings


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", SK_KINDS)
def test_sklearn_loss_delta_weights_normalise(dtype, kind):
    # Unit weights are no weights, and scaling every weight by 2 (exact) leaves the loss
    # unchanged and doubles the delta: the loss is divided by Σw, the delta is not.
    rng = np.random.default_rng(_stable(("sk-w", kind, dtype.__name__)))
    P, Y, _, _ = _sk_data(rng, kind, 9, 4, dtype)
    sw = (rng.random(9) + 0.25).astype(dtype)
    l0, D0 = K.sklearn_loss_delta(kind, P, Y)
    l1, D1 = K.sklearn_loss_delta(kind, P, Y, np.ones(9, dtype=dtype))
    assert l0 == l1 and np.array_equal(D0, D1)
    la, Da = K.sklearn_loss_delta(kind, P, Y, sw)
    lb, Db = K.sklearn_loss_delta(kind, P, Y, 2 * sw)
    assert la == lb and np.array_equal(Db, 2 * Da)


@pytest.mark.parametrize("dtype", DTYPES)
def test_sklearn_loss_delta_out_and_in_place(dtype):
    rng = np.random.default_rng(15)
    P, Y, _, _ = _sk_data(rng, "binary_log_loss", 6, 3, dtype)
    sw = (rng.random(6) + 0.5).astype(dtype)
    loss, D = K.sklearn_loss_delta("binary_log_loss", P, Y, sw)
    out = np.full((6, 3), np.nan, dtype=dtype)
    l2, D2 = K.sklearn_loss_delta("binary_log_loss", P, Y, sw, out=out)
    assert D2 is out and l2 == loss and np.array_equal(out, D)
    for target in ("P", "Y"):
        Pc, Yc = P.copy(), Y.copy()
        buf = Pc if target == "P" else Yc
        l3, D3 = K.sklearn_loss_delta("binary_log_loss", Pc, Yc, sw, out=buf)
        assert D3 is buf and l3 == loss and np.array_equal(buf, D)
    with pytest.raises(ValueError, match="^out:"):
        K.sklearn_loss_delta("binary_log_loss", P, Y, sw, out=np.empty((3, 6), dtype=dtype))


def test_sklearn_loss_delta_rejects_bad_weights():
    P, Y = np.full((3, 2), 0.5), np.ones((3, 2))
    for bad in ([0.0, 0.0, 0.0], [1.0, -1.0, 0.0], [1.0, np.nan, 1.0], [np.inf, 1.0, 1.0],
                [-1.0, -1.0, -1.0]):
        with pytest.raises(ValueError, match="^sample_weight:"):
            K.sklearn_loss_delta("squared_error", P, Y, np.array(bad))
    with pytest.raises(TypeError, match="^sample_weight:"):
        K.sklearn_loss_delta("squared_error", P, Y, np.array(["a", "b", "c"]))


# ======================================================================================
# momentum_update and adam_update: in place, like sgd_update
# ======================================================================================
UPDATE_SIZES = [1, 17, 33, 129 * 65]


def _momentum_atols(dtype, th64, g64, v64, lr, mu):
    """(velocity atol, theta atol): v = μ·v − η·g cancels; θ adds v (or μ·v − η·g)."""
    c = cancel_atol_factor(dtype)
    v_mag = abs(mu) * np.abs(v64) + abs(lr) * np.abs(g64)
    return c * v_mag, c * (np.abs(th64) + (1 + abs(mu)) * v_mag)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("nesterov", [False, True], ids=["heavy-ball", "nesterov"])
@pytest.mark.parametrize("p", UPDATE_SIZES)
def test_momentum_update(dtype, nesterov, p):
    rng = np.random.default_rng(_stable(("mom", nesterov, p, dtype.__name__)))
    theta, th64 = rand(rng, (p,), dtype)
    g, g64 = rand(rng, (p,), dtype)
    vel, v64 = rand(rng, (p,), dtype, 0.3)
    lr, mu = 0.37, 0.9
    res = K.momentum_update(theta, g, vel, lr, mu, nesterov=nesterov)
    assert res is theta and theta.dtype == dtype and vel.dtype == dtype
    want_th, want_v = ref.momentum_update(th64, g64, v64, lr, mu, nesterov)
    v_atol, th_atol = _momentum_atols(dtype, th64, g64, v64, lr, mu)
    assert_close(vel, want_v, RTOL[dtype], v_atol)
    assert_close(theta, want_th, RTOL[dtype], th_atol)
    assert np.array_equal(g, g64.astype(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
def test_momentum_update_by_hand(dtype):
    # θ = 1, g = 2, v = 3, η = ½, μ = ¼ (all exact): v ← ¾ − 1 = −¼; θ ← 1 − ¼ = ¾;
    # Nesterov θ ← 1 + ¼·(−¼) − ½·2 = −1/16.
    for nesterov, want in ((False, 0.75), (True, -0.0625)):
        th, vel = np.ones(1, dtype=dtype), np.full(1, 3.0, dtype=dtype)
        K.momentum_update(th, np.full(1, 2.0, dtype=dtype), vel, 0.5, 0.25, nesterov)
        assert th[0] == want and vel[0] == -0.25


@pytest.mark.parametrize("dtype", DTYPES)
def test_momentum_update_zero_momentum_is_sgd(dtype):
    rng = np.random.default_rng(16)
    theta = rng.standard_normal(33).astype(dtype)
    g = rng.standard_normal(33).astype(dtype)
    sgd = K.sgd_update(theta.copy(), g, 0.1)
    th64, g64 = theta.astype(np.float64), g.astype(np.float64)
    for nesterov in (False, True):
        th, vel = theta.copy(), rng.standard_normal(33).astype(dtype)
        K.momentum_update(th, g, vel, 0.1, 0.0, nesterov)
        # v = 0·v − η·g is one rounding of η·g whatever the compiler fuses; θ + v may be
        # fused differently from sgd's θ − η·g (FMA builds), so θ gets the sgd tolerance
        assert np.array_equal(vel, (-dtype(0.1) * g).astype(dtype))
        assert_close(th, sgd.astype(np.float64), RTOL[dtype],
                     cancel_atol_factor(dtype) * (np.abs(th64) + 0.1 * np.abs(g64)))
        assert_close(th, th64 - 0.1 * g64, RTOL[dtype],
                     cancel_atol_factor(dtype) * (np.abs(th64) + 0.1 * np.abs(g64)))


def _adam_data(rng, p, dtype):
    theta, th64 = rand(rng, (p,), dtype)
    g, g64 = rand(rng, (p,), dtype)
    m, m64 = rand(rng, (p,), dtype, 0.1)
    v = (0.01 * rng.standard_normal(p) ** 2).astype(dtype)
    # where √v ≈ ε and v = 0, ε's placement decides the step; g = 0 leaves m to decay
    v[::5] = 1e-16
    v[1::7] = 0.0
    g[2::9] = 0.0
    return theta, g, m, v, th64, g.astype(np.float64), m64, v.astype(np.float64)


def _adam_check(dtype, got, want, inputs, lr, b1, b2, eps, t, steps=1):
    """Compare (θ, m, v) with the reference; tolerances as in the block at the top."""
    th64, g64, m64, v64 = inputs
    c = cancel_atol_factor(dtype) * steps
    want_th, want_m, want_v = want
    m_mag = b1 * np.abs(m64) + (1 - b1) * np.abs(g64)
    lr_t = lr * math.sqrt(1 - b2 ** t) / (1 - b1 ** t)
    denom = np.sqrt(want_v) + eps
    assert_close(got[1], want_m, RTOL[dtype], c * m_mag, dtype)
    # v is a sum of non-negative terms: relative
    assert_close(got[2], want_v, RTOL[dtype], 0.0, dtype)
    th_atol = c * (np.abs(th64) + abs(lr_t) * (np.abs(want_m) + m_mag) / denom)
    assert_close(got[0], want_th, RTOL[dtype], th_atol, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("t", [1, 2, 10, 10**6])
@pytest.mark.parametrize("p", UPDATE_SIZES)
def test_adam_update(dtype, t, p):
    rng = np.random.default_rng(_stable(("adam", t, p, dtype.__name__)))
    theta, g, m, v, th64, g64, m64, v64 = _adam_data(rng, p, dtype)
    lr, b1, b2, eps = 1e-3, 0.9, 0.999, 1e-8
    res = K.adam_update(theta, g, m, v, lr, b1, b2, eps, t)
    assert res is theta
    want = ref.adam_update(th64, g64, m64, v64, lr, b1, b2, eps, t)
    _adam_check(dtype, (theta, m, v), want, (th64, g64, m64, v64), lr, b1, b2, eps, t)
    assert np.array_equal(g, g64.astype(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
def test_adam_update_several_steps(dtype):
    # From zero state, as training starts: steps 1..5 against the reference iterated.
    # The atols follow each step's bounds (see the top) and add up over the steps, the
    # error already in m carried through β1 and through the step η_t·m/(√v + ε).
    rng = np.random.default_rng(17)
    p = 65
    theta, th64 = rand(rng, (p,), dtype)
    m, v = np.zeros(p, dtype=dtype), np.zeros(p, dtype=dtype)
    m64, v64 = np.zeros(p), np.zeros(p)
    lr, b1, b2, eps = 0.01, 0.9, 0.999, 1e-8
    c = cancel_atol_factor(dtype)
    m_err, th_err = np.zeros(p), np.zeros(p)
    for t in range(1, 6):
        g, g64 = rand(rng, (p,), dtype)
        g[t::7] = 0.0
        g64 = g.astype(np.float64)
        K.adam_update(theta, g, m, v, lr, b1, b2, eps, t)
        m_err = b1 * m_err + c * (b1 * np.abs(m64) + (1 - b1) * np.abs(g64))
        th64, m64, v64 = ref.adam_update(th64, g64, m64, v64, lr, b1, b2, eps, t)
        lr_t = lr * math.sqrt(1 - b2 ** t) / (1 - b1 ** t)
        th_err = th_err + c * np.abs(th64) + lr_t * (c * np.abs(m64) + m_err) / (np.sqrt(v64) + eps)
    assert_close(m, m64, RTOL[dtype], m_err, dtype)
    assert_close(v, v64, RTOL[dtype], 0.0, dtype)
    assert_close(theta, th64, RTOL[dtype], th_err, dtype)


def test_reference_adam_folded_form_is_algorithm_1():
    # The folded step size with ε on the uncorrected √v is Algorithm 1 with
    # ε̂ = ε/√(1 − β2ᵗ) — and not with ε̂ = ε, which the data below tell apart.
    rng = np.random.default_rng(18)
    theta, g, m = rng.standard_normal((3, 40))
    v = 1e-16 * rng.random(40)
    b1, b2, eps = 0.9, 0.999, 1e-8
    for t in (1, 3, 50):
        folded = ref.adam_update(theta, g, m, v, 0.1, b1, b2, eps, t)
        alg1 = ref.adam_update_bias_corrected(theta, g, m, v, 0.1, b1, b2,
                                              eps / math.sqrt(1 - b2 ** t), t)
        naive = ref.adam_update_bias_corrected(theta, g, m, v, 0.1, b1, b2, eps, t)
        for a, b in zip(folded, alg1):
            assert np.allclose(a, b, rtol=1e-12, atol=0)
        assert not np.allclose(folded[0], naive[0], rtol=1e-6, atol=0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_adam_update_by_hand(dtype):
    # θ = 0, g = 0, m = 1, v = 0, η = 1, β1 = ½, β2 = ¾, ε = ½, t = 1 (all exact):
    # m ← ½, v ← 0, η₁ = √(1 − ¾)/(1 − ½) = 1, θ ← 0 − 1·½/(√0 + ½) = −1.
    # (Algorithm 1 with ε̂ = ε would give −2: ε is added to the uncorrected √v.)
    th, m, v = np.zeros(1, dtype=dtype), np.ones(1, dtype=dtype), np.zeros(1, dtype=dtype)
    K.adam_update(th, np.zeros(1, dtype=dtype), m, v, 1.0, 0.5, 0.75, 0.5, 1)
    assert th[0] == -1.0 and m[0] == 0.5 and v[0] == 0.0


@pytest.mark.parametrize("dtype", DTYPES)
def test_updates_with_grad_exactly_theta(dtype):
    # grad may be theta itself (each element is read before it is written)
    rng = np.random.default_rng(19)
    th0 = rng.standard_normal(33).astype(dtype)
    th64 = th0.astype(np.float64)
    th, vel = th0.copy(), np.zeros(33, dtype=dtype)
    K.momentum_update(th, th, vel, 0.1, 0.9, True)
    want_th, want_v = ref.momentum_update(th64, th64, np.zeros(33), 0.1, 0.9, True)
    v_atol, th_atol = _momentum_atols(dtype, th64, th64, np.zeros(33), 0.1, 0.9)
    assert_close(th, want_th, RTOL[dtype], th_atol)
    assert_close(vel, want_v, RTOL[dtype], v_atol)
    th, m, v = th0.copy(), np.zeros(33, dtype=dtype), np.zeros(33, dtype=dtype)
    K.adam_update(th, th, m, v, 1e-3, 0.9, 0.999, 1e-8, 1)
    want = ref.adam_update(th64, th64, np.zeros(33), np.zeros(33), 1e-3, 0.9, 0.999, 1e-8, 1)
    _adam_check(dtype, (th, m, v), want, (th64, th64, np.zeros(33), np.zeros(33)),
                1e-3, 0.9, 0.999, 1e-8, 1)


@pytest.mark.parametrize("dtype", DTYPES)
def test_updates_strided_grad(dtype):
    rng = np.random.default_rng(20)
    theta = rng.standard_normal(9).astype(dtype)
    g2 = np.zeros(18, dtype=dtype)
    g2[::2] = rng.standard_normal(9)
    gc = np.ascontiguousarray(g2[::2])
    for call in (lambda th, g, s: K.momentum_update(th, g, s[0], 0.1, 0.9, True),
                 lambda th, g, s: K.adam_update(th, g, s[0], s[1], 0.1, 0.9, 0.99, 1e-8, 3)):
        a, b = theta.copy(), theta.copy()
        sa = [np.full(9, 0.5, dtype=dtype), np.full(9, 0.25, dtype=dtype)]
        sb = [x.copy() for x in sa]
        call(a, g2[::2], sa)
        call(b, gc, sb)
        assert np.array_equal(a, b) and all(np.array_equal(x, y) for x, y in zip(sa, sb))


def _update_calls(dtype):
    """(expected error, argument named, call with keyword overrides) for bad updates."""
    big = 1e36 if dtype == np.float32 else 1e300

    def mom(**kw):
        args = dict(lr=0.1, momentum=0.9, nesterov=False) | kw
        return lambda th, g, s: K.momentum_update(th, g, s[0], **args)

    def adam(**kw):
        args = dict(lr=1e-3, beta_1=0.9, beta_2=0.999, epsilon=1e-8, t=1) | kw
        return lambda th, g, s: K.adam_update(th, g, s[0], s[1], **args)

    cases = [
        (ValueError, "lr", mom(lr=np.nan)), (ValueError, "lr", mom(lr=-np.inf)),
        (ValueError, "lr", mom(lr=10**400)),
        (TypeError, "lr", mom(lr="0.1")), (TypeError, "lr", mom(lr=True)),
        (ValueError, "momentum", mom(momentum=np.nan)),
        (TypeError, "momentum", mom(momentum=None)),
        (TypeError, "nesterov", mom(nesterov=1)), (TypeError, "nesterov", mom(nesterov="no")),
        (ValueError, "t", adam(t=0)), (ValueError, "t", adam(t=-3)),
        (ValueError, "t", adam(t=2**63)), (TypeError, "t", adam(t=1.0)),
        (TypeError, "t", adam(t=True)),
        (ValueError, "beta_1", adam(beta_1=1.0)), (ValueError, "beta_1", adam(beta_1=-0.1)),
        (ValueError, "beta_1", adam(beta_1=np.nan)), (ValueError, "beta_2", adam(beta_2=1.5)),
        (ValueError, "beta_2", adam(beta_2=10**400)), (TypeError, "beta_2", adam(beta_2="0.9")),
        (ValueError, "epsilon", adam(epsilon=0.0)), (ValueError, "epsilon", adam(epsilon=-1e-8)),
        (ValueError, "epsilon", adam(epsilon=np.nan)),
        (ValueError, "epsilon", adam(epsilon=np.inf)),
        (ValueError, "lr", adam(lr=np.nan)),
        # η_t = η/(1 − β1) at t = 1 with β2 = 0: finite η, step size beyond the dtype
        (ValueError, "lr", adam(lr=big, beta_1=1 - 1e-9, beta_2=0.0)),
    ]
    if dtype == np.float32:
        cases += [(ValueError, "epsilon", adam(epsilon=1e-50)),      # 0 in float32
                  (ValueError, "lr", mom(lr=1e39)), (ValueError, "momentum", mom(momentum=-1e39)),
                  (ValueError, "lr", adam(lr=1e39))]
    return cases


@pytest.mark.parametrize("dtype", DTYPES)
def test_update_hyperparameters_rejected(dtype):
    rng = np.random.default_rng(21)
    theta = rng.standard_normal(5).astype(dtype)
    g = rng.standard_normal(5).astype(dtype)
    state = [rng.standard_normal(5).astype(dtype), np.abs(rng.standard_normal(5)).astype(dtype)]
    snap = [theta.copy()] + [s.copy() for s in state]
    for err, name, call in _update_calls(dtype):
        with pytest.raises(err, match=f"^{name}:"):
            call(theta, g, state)
        assert all(np.array_equal(a, b) for a, b in zip([theta] + state, snap)), name
    # the boundaries that are valid: β = 0, any finite momentum and lr of either sign
    K.adam_update(theta, g, state[0], state[1], -1e-3, 0.0, 0.0, 1e-8, 2**63 - 1)
    K.momentum_update(theta, g, state[0], -0.1, 1.5, np.True_)
    assert np.all(np.isfinite(theta))


@pytest.mark.parametrize("dtype", DTYPES)
def test_update_overlaps_rejected(dtype):
    buf = np.arange(12, dtype=dtype)
    th, g = buf[:4], np.ones(4, dtype=dtype)
    s1, s2 = np.zeros(4, dtype=dtype), np.zeros(4, dtype=dtype)
    hyper = (1e-3, 0.9, 0.999, 1e-8, 1)
    cases = [
        ("velocity", lambda: K.momentum_update(th, g, th, 0.1, 0.9)),
        ("velocity", lambda: K.momentum_update(th, g, buf[2:6], 0.1, 0.9)),
        ("velocity", lambda: K.momentum_update(th, g, g, 0.1, 0.9)),
        ("theta", lambda: K.momentum_update(th, buf[1:5], s1, 0.1, 0.9)),
        ("m", lambda: K.adam_update(th, g, th, s2, *hyper)),
        ("m", lambda: K.adam_update(th, g, g, s2, *hyper)),
        ("v", lambda: K.adam_update(th, g, s1, s1, *hyper)),
        ("v", lambda: K.adam_update(th, g, s1, buf[3:7], *hyper)),
        ("theta", lambda: K.adam_update(th, buf[2:6], s1, s2, *hyper)),
    ]
    for name, call in cases:
        with pytest.raises(ValueError, match=f"^{name}:"):
            call()
    assert np.array_equal(buf, np.arange(12, dtype=dtype))
    assert np.array_equal(g, np.ones(4, dtype=dtype))
    assert not s1.any() and not s2.any()


@pytest.mark.parametrize("dtype", DTYPES)
def test_update_state_arrays_checked(dtype):
    th, g = np.zeros(4, dtype=dtype), np.ones(4, dtype=dtype)
    ro = np.zeros(4, dtype=dtype)
    ro.flags.writeable = False
    with pytest.raises(TypeError, match="^velocity:"):
        K.momentum_update(th, g, [0.0] * 4, 0.1, 0.9)
    with pytest.raises(ValueError, match="^velocity:"):
        K.momentum_update(th, g, np.zeros(8, dtype=dtype)[::2], 0.1, 0.9)
    with pytest.raises(ValueError, match="^m:"):
        K.adam_update(th, g, ro, np.zeros(4, dtype=dtype), 1e-3, 0.9, 0.999, 1e-8, 1)
    with pytest.raises(TypeError, match="^theta:"):
        K.adam_update([0.0] * 4, g, np.zeros(4), np.zeros(4), 1e-3, 0.9, 0.999, 1e-8, 1)
    with pytest.raises(ValueError, match="^theta:"):
        K.momentum_update(np.zeros(8, dtype=dtype)[::2], g, np.zeros(4, dtype=dtype), 0.1, 0.9)
    assert not th.any() and not ro.any()


# The finite checks: each case (finite data, a NaN gradient, a gradient whose square
# overflows the dtype, a state value already infinite) against the update itself run on
# copies, whose values reference.py's transcription checks elsewhere in this file.
def _update_cases(dtype):
    rng = np.random.default_rng(4)
    p = 50_000                     # above the split's grain: the checks run in parts
    big = np.sqrt(np.finfo(dtype).max) * 2
    for case in ("finite", "nan grad", "g² overflows", "inf state"):
        theta, grad = (rng.standard_normal(p).astype(dtype) for _ in range(2))
        s1, s2 = np.zeros(p, dtype), np.full(p, 0.5, dtype)
        if case == "nan grad":
            grad[p - 3] = np.nan
        elif case == "g² overflows":
            grad[p // 2] = big
        elif case == "inf state":
            s1[7] = np.inf
        yield case, theta, grad, s1, s2


_UPDATES = {
    "sgd": (lambda th, g, s1, s2: (th, g, 1e-3), K.sgd_update, K.sgd_update_is_finite),
    "momentum": (lambda th, g, s1, s2: (th, g, s1, 1e-3, 0.9, True), K.momentum_update,
                 K.momentum_update_is_finite),
    "adam": (lambda th, g, s1, s2: (th, g, s1, s2, 1e-3, 0.9, 0.999, 1e-8, 3), K.adam_update,
             K.adam_update_is_finite),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("rule", sorted(_UPDATES))
def test_update_checks_say_whether_the_update_stays_finite(rule, dtype):
    make, update, check = _UPDATES[rule]
    answers = {}
    for case, theta, grad, s1, s2 in _update_cases(dtype):
        args = make(theta, grad, s1, s2)
        before = [a.copy() for a in args if isinstance(a, np.ndarray)]
        with np.errstate(all="ignore"):
            ok = check(*args)
        assert all(np.array_equal(b, a, equal_nan=True)
                   for b, a in zip(before, [a for a in args if isinstance(a, np.ndarray)]))
        copies = [a.copy() if isinstance(a, np.ndarray) else a for a in args]
        with np.errstate(all="ignore"):
            update(*copies)
        written = [c for c, a in zip(copies, args) if isinstance(a, np.ndarray)
                   and a is not grad]
        assert ok is all(np.isfinite(c).all() for c in written), case
        answers[case] = ok
    # Each rule sees the NaN; the overflow is in v (Adam) only; sgd keeps no state.
    assert answers["finite"] and not answers["nan grad"]
    assert answers["g² overflows"] is (rule != "adam")
    assert answers["inf state"] is (rule == "sgd")


def test_empty_updates_are_no_ops():
    e = np.zeros(0)
    assert K.momentum_update(e, e.copy(), np.zeros(0), 0.1, 0.9).size == 0
    assert K.adam_update(e, e.copy(), np.zeros(0), np.zeros(0), 1e-3, 0.9, 0.999, 1e-8, 1).size == 0


# ======================================================================================
# the micro-benchmark covers every kernel, and each of its cases runs
# ======================================================================================
def test_bench_kernel_cases_cover_every_kernel():
    from fastmlp.bench import kernels as bench_kernels
    for dtype in DTYPES:
        cases = bench_kernels.cases(3, 5, 4, 3, np.dtype(dtype))
        assert set(K.__all__) <= set(cases), set(K.__all__) - set(cases)
        for name, (fast, slow) in cases.items():
            with np.errstate(all="ignore"):
                fast()
                slow()


# ======================================================================================
# known core bug
# ======================================================================================
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kernel", ["sgd", "momentum", "adam"])
def test_update_of_an_infinite_parameter(dtype, kernel):
    th = np.array([np.inf, -np.inf], dtype=dtype)
    g = np.full(2, 0.5, dtype=dtype)
    m, v = np.zeros(2, dtype=dtype), np.zeros(2, dtype=dtype)
    if kernel == "sgd":
        K.sgd_update(th, g, 0.1)
    elif kernel == "momentum":
        K.momentum_update(th, g, m, 0.1, 0.9)
        assert np.all(np.isfinite(m))          # v = μ·0 − η·g does not involve θ
    else:
        K.adam_update(th, g, m, v, 1e-3, 0.9, 0.999, 1e-8, 1)
        assert np.all(np.isfinite(m)) and np.all(np.isfinite(v))   # m, v follow g only
    assert np.array_equal(th, [np.inf, -np.inf])   # ±inf − finite step
