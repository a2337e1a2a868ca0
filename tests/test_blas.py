"""The BLAS library behind the core (fastmlp.blas): every installed one gives the seed
equations' results, switching is clean, and a missing or unknown library is refused."""
import os
import subprocess
import sys

import numpy as np
import pytest

import fastmlp
from fastmlp import blas

import reference as ref

# Each library is checked against the float64 numpy transcription of the seeds.  float32
# products of width ≤ 64 stay within 1e-5 relative of it (a few roundings of 2⁻²⁴ per
# term); float64 within 1e-12.
TOL = {np.float32: 1e-5, np.float64: 1e-12}


@pytest.fixture
def restore_blas():
    # Request it before monkeypatch: torn down after monkeypatch has undone its patches.
    # Small products go to the named library too while a test runs (the serial library
    # would otherwise take every product of these small networks).
    before, serial_before = blas.current(), blas.use_serial(None)
    yield
    blas.use(before)
    blas.use_serial(serial_before)


def _case(dtype, n, loss, seed=0):
    rng = np.random.default_rng(seed)
    net = fastmlp.MLP([9, 17, 8, 4], loss=loss, dtype=dtype, seed=seed)
    X = rng.normal(size=(n, 9)).astype(dtype)
    Y = rng.integers(0, 4, n) if loss != "mse" else rng.normal(size=(n, 4)).astype(dtype)
    return net, X, Y


@pytest.mark.parametrize("name", blas.available())
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [1, 13])          # n = 1 runs gemv/ger, n > 1 gemm
@pytest.mark.parametrize("loss", ["mse", "softmax_cross_entropy"])
def test_each_library_computes_the_seed_gradients(name, dtype, n, loss, restore_blas):
    blas.use(name)
    assert blas.current() == name
    net, X, Y = _case(dtype, n, loss)
    weights = [w.astype(np.float64) for w in net.weights]
    biases = [b.astype(np.float64) for b in net.biases]
    want_loss, want_grads = ref.loss_and_grad(weights, biases, X, Y, loss)
    got_loss, got_grads = net.loss_and_grad(X, Y)
    tol = TOL[dtype]
    assert got_loss == pytest.approx(want_loss, rel=tol)
    for (gW, gb), (wW, wb) in zip(got_grads, want_grads):
        scale = np.abs(wW).max() + np.abs(wb).max()
        np.testing.assert_allclose(gW, wW, rtol=tol, atol=tol * scale)
        np.testing.assert_allclose(gb, wb, rtol=tol, atol=tol * scale)
    # And a whole fused SGD step (the update inside the backward GEMM).
    before = [w.astype(np.float64) for w in net.weights]
    net.train_step(X, Y, lr=0.1)
    for w_new, w_old, (wW, _) in zip(net.weights, before, want_grads):
        np.testing.assert_allclose(w_new, w_old - 0.1 * wW, rtol=tol, atol=tol)


def test_libraries_agree_on_a_long_float64_run(restore_blas):
    # 50 steps on each library from the same start: float64 rounding differences between
    # BLAS builds stay at the 1e-13 level, far from any visible drift.
    finals = {}
    for name in blas.available():
        blas.use(name)
        net, X, Y = _case(np.float64, 64, "softmax_cross_entropy", seed=3)
        for _ in range(50):
            net.train_step(X, Y, lr=0.05)
        finals[name] = net.params.copy()
    base = finals.pop("scipy")
    for name, params in finals.items():
        np.testing.assert_allclose(params, base, rtol=1e-10, atol=1e-12, err_msg=name)


def test_switching_back_uses_the_checked_library_again(restore_blas):
    # The second use() of a library takes the cached addresses: same results, no reload.
    names = blas.available()
    net, X, Y = _case(np.float64, 7, "mse")
    first = {}
    for name in names + names:
        blas.use(name)
        assert blas.current() == name
        loss, grads = net.loss_and_grad(X, Y)
        first.setdefault(name, (loss, grads[0][0]))
        assert loss == first[name][0]
        np.testing.assert_array_equal(grads[0][0], first[name][1])


def test_unknown_name_is_refused(restore_blas):
    before = blas.current()
    with pytest.raises(ValueError, match="name: expected one of scipy, openblas, mkl, numpy"):
        blas.use("atlas")
    assert blas.current() == before


def test_missing_library_is_refused_and_the_old_one_stays(restore_blas, monkeypatch):
    blas.use("scipy")
    monkeypatch.setattr(blas, "_adopted", set())      # as in a process that never loaded it
    monkeypatch.setitem(sys.modules, "scipy_openblas32", None)   # import fails
    with pytest.raises(ImportError, match="pip install scipy-openblas32"):
        blas.use("openblas")
    assert blas.current() == "scipy"
    net, X, Y = _case(np.float64, 5, "mse")
    net.train_step(X, Y, lr=0.1)                 # still computes
    assert np.isfinite(net.params).all()


def test_a_library_that_disagrees_with_numpy_is_not_adopted(restore_blas, monkeypatch):
    if "openblas" not in blas.available():
        pytest.skip("scipy-openblas32 not installed")
    blas.use("scipy")
    monkeypatch.setattr(blas, "_adopted", set())
    monkeypatch.setattr(blas, "_agrees_with_numpy", lambda: False)
    with pytest.raises(ImportError, match="disagree with numpy"):
        blas.use("openblas")
    assert blas.current() == "scipy"


def _import_with(env_value):
    env = dict(os.environ, FASTMLP_BLAS=env_value)
    return subprocess.run([sys.executable, "-c", "import fastmlp; print(fastmlp.blas.current())"],
                          env=env, capture_output=True, text=True, cwd=os.path.dirname(__file__))


def test_environment_variable_chooses_at_import():
    res = _import_with("scipy")
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "scipy"
    res = _import_with("auto")
    installed = blas.available()
    want = next((n for n in ("numpy", "openblas") if n in installed), "scipy")
    assert res.stdout.strip() == want
    res = _import_with("bogus")
    assert res.returncode != 0
    assert "FASTMLP_BLAS" in res.stderr


def test_use_serial_takes_openblas_or_none(restore_blas):
    with pytest.raises(ValueError, match="name: expected 'openblas' or None"):
        blas.use_serial("numpy")
    assert blas.serial() is None          # the fixture's setting stays
    if "openblas" in blas.available():
        assert blas.use_serial("openblas") is None
        assert blas.serial() == "openblas"


@pytest.mark.skipif("numpy" not in blas.available(), reason="numpy bundles no OpenBLAS")
def test_numpy_library_is_the_one_numpy_loaded():
    # fastmlp shares numpy's thread pool only if it calls the very file numpy loaded.
    loaded = [line.split()[-1] for line in open("/proc/self/maps") if "openblas64_" in line]
    assert os.path.realpath(blas._numpy_openblas()) in {os.path.realpath(p) for p in loaded}
