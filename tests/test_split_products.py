"""Large products split by bands of rows over fastmlp's own workers (fastmlp/_split_gemm.h):
the bits of the same product on one thread, numbers that agree with numpy's, no BLAS pool
woken, and a switch that sends them back to the active library's pool."""
from __future__ import annotations

import numpy as np
import pytest

import fastmlp
from fastmlp import _core, blas
from fastmlp import kernels as fk
from fastmlp.threads import get_split_products, set_split_products

pytestmark = pytest.mark.skipif(blas.serial() is None or blas.current() == "mkl",
                                reason="products split only with a serial OpenBLAS "
                                       "and an OpenBLAS active library")

# Row counts around the bands' 16-row alignment (_split_gemm.h): one band shorter than
# the other, a last band of a few rows, and an even split.  Every product here is above
# the 2·FLOPS_PER_THREAD_MIN that earns a split.
ROWS = (208, 203, 130, 512)
D_IN, D_OUT = 384, 320


@pytest.fixture
def two_threads():
    before, split_before = fastmlp.get_num_threads(), get_split_products()
    fastmlp.set_num_threads(2)
    yield
    fastmlp.set_num_threads(before)
    set_split_products(split_before)


def _operands(n, dtype, seed=0):
    rng = np.random.default_rng(seed)
    A = rng.normal(size=(n, D_IN)).astype(dtype)
    W = rng.normal(size=(D_IN, D_OUT)).astype(dtype)
    b = rng.normal(size=D_OUT).astype(dtype)
    D = rng.normal(size=(n, D_OUT)).astype(dtype)
    return A, W, b, D


def _products(A, W, b, D):
    # A·W + b (no transpose), Aᵀ·D (op(A) transposed) and D·Wᵀ (op(B) transposed): the
    # three forms of a step's products.
    Z = fk.linear_forward(A, W, b)
    dW, db = fk.linear_backward(A, D)
    dA = fk.backprop_delta(D, W, A, activation="identity")
    return Z, dW, db, dA


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", ROWS)
def test_split_products_have_the_bits_of_one_thread(two_threads, dtype, n):
    ops = _operands(n, dtype)
    fastmlp.set_num_threads(1)              # one thread: the serial library, whole
    whole = _products(*ops)
    fastmlp.set_num_threads(2)
    helped = _core.pool_parts_helped()
    for _ in range(20):                     # a worker may wake late now and then
        split = _products(*ops)
        for w, s in zip(whole, split):
            assert np.array_equal(w, s)
    assert _core.pool_parts_helped() > helped, "no band ran on a worker"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_split_products_agree_with_numpy(two_threads, dtype):
    # numpy in float64 as the oracle; float32 operands of 384 terms of unit normals keep
    # each sum's rounding error below ~384·2⁻²⁴·|terms| ≈ 1e-3 absolute on sums of size
    # ~20, so 2e-4 relative (5e-4 absolute); float64 to 1e-12.
    # (Aᵀ·D sums 203 terms, D·Wᵀ 320: the same bound holds.)
    A, W, b, D = _operands(203, dtype)
    rtol, atol = (2e-4, 5e-4) if dtype == np.float32 else (1e-12, 1e-10)
    A64, W64, D64 = (x.astype(np.float64) for x in (A, W, D))
    Z, dW, db, dA = _products(A, W, b, D)
    np.testing.assert_allclose(Z, A64 @ W64 + b, rtol=rtol, atol=atol)
    np.testing.assert_allclose(dW, A64.T @ D64, rtol=rtol, atol=atol)
    np.testing.assert_allclose(db, D64.sum(axis=0), rtol=rtol, atol=atol)
    np.testing.assert_allclose(dA, D64 @ W64.T, rtol=rtol, atol=atol)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_training_has_the_same_bits_split_or_on_one_thread(two_threads, optimizer, dtype):
    # A step's products at 256 rows through 512-wide layers are split; at one thread
    # they run whole on the serial library: the trained parameters are bit-identical.
    rng = np.random.default_rng(1)
    X = rng.normal(size=(256, 512)).astype(dtype)
    y = rng.integers(0, 10, 256)
    params = []
    for threads in (1, 2):
        fastmlp.set_num_threads(threads)
        net = fastmlp.MLP([512, 512, 256, 10], loss="softmax_cross_entropy", dtype=dtype,
                          seed=0, optimizer=optimizer)
        for _ in range(4):
            net.train_step(X, y, lr=1e-3)
        params.append(net.params.copy())
    assert np.array_equal(params[0], params[1])


def test_switching_the_split_off_gives_the_same_numbers(two_threads):
    # Off, the step's large products go to the active library's pool (numpy's OpenBLAS
    # by default), a different build from the serial one: the same sums to rounding,
    # ~1e-16 relative per product in float64, a few of them chained.
    rng = np.random.default_rng(2)
    X = rng.normal(size=(256, 512)).astype(np.float64)
    y = rng.integers(0, 10, 256)
    out = {}
    for on in (True, False):
        set_split_products(on)
        assert get_split_products() is on
        net = fastmlp.MLP([512, 512, 10], loss="softmax_cross_entropy", seed=0,
                          optimizer="adam")
        net.train_step(X, y, lr=1e-3)
        out[on] = net.forward(X)
    np.testing.assert_allclose(out[True], out[False], rtol=1e-12, atol=1e-12)


def test_products_split_again_right_after_the_split_was_off(two_threads):
    # With the split off the products go to numpy's pool, which then spins; switched back
    # on, the very next products split, although that pool still spins (waiting for it
    # would never end: products sent there would keep renewing its spin).
    A, W, b, _ = _operands(512, np.float64)
    set_split_products(False)
    for _ in range(5):
        fk.linear_forward(A, W, b)
    set_split_products(True)
    helped = _core.pool_parts_helped()
    for _ in range(20):
        fk.linear_forward(A, W, b)
    assert _core.pool_parts_helped() > helped


def test_set_split_products_validates():
    with pytest.raises(TypeError, match="on: expected True or False"):
        set_split_products(1)


@pytest.mark.parametrize("value, expected", [("0", False), ("off", False), ("1", True),
                                             ("", True), ("yes", True)])
def test_the_environment_variable(value, expected):
    from fastmlp.threads import _split_products_from_env
    assert _split_products_from_env({"FASTMLP_SPLIT_PRODUCTS": value}) is expected
    with pytest.raises(ValueError, match="FASTMLP_SPLIT_PRODUCTS: expected 0 or 1"):
        _split_products_from_env({"FASTMLP_SPLIT_PRODUCTS": "2"})
