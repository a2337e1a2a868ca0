"""fastmlp's thread limit (fastmlp.threads): set by set_num_threads and by threadpoolctl,
honoured by the products of fastmlp's own OpenBLAS, and without effect on the results
beyond rounding."""
from __future__ import annotations

import numpy as np
import pytest

import fastmlp
from fastmlp import blas

threadpoolctl = pytest.importorskip("threadpoolctl")


@pytest.fixture
def restore_threads():
    before, lib_before, serial_before = fastmlp.get_num_threads(), blas.current(), blas.serial()
    split_before = fastmlp.threads.get_split_products()
    yield
    fastmlp.set_num_threads(before)
    blas.use(lib_before)
    blas.use_serial(serial_before)
    fastmlp.threads.set_split_products(split_before)


def _private_openblas_threads() -> int:
    """Thread count of the scipy-openblas32 copy fastmlp loads (threadpoolctl's view)."""
    infos = [i for i in threadpoolctl.threadpool_info()
             if "scipy_openblas32" in i["filepath"]]
    assert len(infos) == 1
    return infos[0]["num_threads"]


def _big_step(seed=0, dtype=np.float64):
    # 256 rows through 512-wide layers: every product is tens of MFLOP, above the
    # work that earns a second thread (FLOPS_PER_THREAD_MIN).
    rng = np.random.default_rng(seed)
    net = fastmlp.MLP([512, 512, 512, 10], loss="softmax_cross_entropy", dtype=dtype,
                      seed=seed, optimizer="adam")
    X = rng.normal(size=(256, 512)).astype(dtype)
    y = rng.integers(0, 10, 256)
    return net, X, y


def test_set_num_threads_validates():
    with pytest.raises(ValueError, match="n: expected a positive number of threads"):
        fastmlp.set_num_threads(0)
    with pytest.raises(TypeError, match="n: expected an int"):
        fastmlp.set_num_threads(2.0)
    with pytest.raises(TypeError, match="n: expected an int"):
        fastmlp.set_num_threads(True)


@pytest.mark.skipif("openblas" not in blas.available(), reason="scipy-openblas32 missing")
def test_the_limit_caps_the_threads_of_fastmlps_own_library(restore_threads):
    # Products sent to the library's own pool, not split over fastmlp's workers (those
    # keep the library at one thread: tests/test_split_products.py).
    fastmlp.threads.set_split_products(False)
    blas.use("openblas")
    net, X, y = _big_step()
    assert 512 * 512 * 256 * 2 > 4 * fastmlp._core.FLOPS_PER_THREAD_MIN
    for limit in (1, 3, 2):
        fastmlp.set_num_threads(limit)
        assert fastmlp.get_num_threads() == limit
        net.train_step(X, y, lr=1e-3)
        # the last product of a step is a large one: it ran on exactly the limit
        assert _private_openblas_threads() == limit


@pytest.mark.skipif("openblas" not in blas.available(), reason="scipy-openblas32 missing")
def test_small_products_run_on_one_thread(restore_threads):
    fastmlp.threads.set_split_products(False)
    blas.use("openblas")
    fastmlp.set_num_threads(2)
    big, X, y = _big_step()
    big.train_step(X, y, lr=1e-3)
    assert _private_openblas_threads() == 2
    small = fastmlp.MLP([8, 16, 2], seed=0)
    small.train_step(np.ones((4, 8)), np.ones((4, 2)), lr=1e-3)
    assert _private_openblas_threads() == 1


def test_threadpoolctl_sees_and_sets_fastmlps_limit(restore_threads):
    fastmlp.set_num_threads(2)
    ours = [i for i in threadpoolctl.threadpool_info() if i["internal_api"] == "fastmlp"]
    assert len(ours) == 1 and ours[0]["num_threads"] == 2 and ours[0]["user_api"] == "blas"
    assert ours[0]["version"] == fastmlp.__version__
    with threadpoolctl.threadpool_limits(limits=1):
        assert fastmlp.get_num_threads() == 1
    assert fastmlp.get_num_threads() == 2
    with threadpoolctl.threadpool_limits(limits=1, user_api="openmp"):
        assert fastmlp.get_num_threads() == 2          # not an OpenMP library


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_results_do_not_depend_on_the_thread_count(restore_threads, dtype):
    # One thread runs every product on the serial library, more send the large ones to
    # the active library: the same products, summed in the same order within each output
    # element by both OpenBLAS builds, so equal to rounding.  After 5 Adam steps float64
    # parameters agree to 1e-12 relative, float32 to 1e-5 (a few roundings of 2⁻²⁴).
    tol = 1e-12 if dtype == np.float64 else 1e-5
    runs = []
    for limit in (1, 2, 4):
        fastmlp.set_num_threads(limit)
        net, X, y = _big_step(dtype=dtype)
        for _ in range(5):
            net.train_step(X, y, lr=1e-3)
        runs.append((net.params.copy(), net.predict_proba(X)))
    for params, proba in runs[1:]:
        np.testing.assert_allclose(params, runs[0][0], rtol=tol, atol=tol)
        np.testing.assert_allclose(proba, runs[0][1], rtol=tol, atol=tol)


def test_scipy_blas_serial_restores_the_count_after_overlapping_blocks(restore_threads):
    from fastmlp import threads
    scipy_lib = threads._scipy_openblas()
    if scipy_lib is None:
        pytest.skip("scipy bundles no OpenBLAS of its own here")
    blas.use("numpy" if "numpy" in blas.available() else "openblas")
    before = scipy_lib.get_num_threads()
    first, second = threads.scipy_blas_serial(), threads.scipy_blas_serial()
    first.__enter__()
    second.__enter__()
    assert scipy_lib.get_num_threads() == 1
    first.__exit__(None, None, None)          # the first one out, as from another thread
    assert scipy_lib.get_num_threads() == 1
    second.__exit__(None, None, None)
    assert scipy_lib.get_num_threads() == before
