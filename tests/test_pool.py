"""fastmlp's worker pool (fastmlp/_pool.h) and the passes split over it (_split.pxi: the
optimizer's, the activations', the step's guards): the same bits at every thread count, workers that start only when a pass splits and hold no
CPU while idle, a fork()ed child that trains, two Python threads splitting at once."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest

import fastmlp
from fastmlp import _core
from fastmlp.errors import DivergenceError

# Every product of these steps stays on one thread (below FLOPS_PER_THREAD_MIN), so the
# thread limit changes nothing but how the passes split; and the parameters are many
# enough (~117,000) that a part takes longer than a worker's wake-up, so the workers do
# run parts (asserted through pool_parts_helped), not only the calling thread.
LAYERS = [512, 192, 96, 7]
ROWS = 16


@pytest.fixture
def split_everything():
    """Passes of any size split over the thread limit (grain scale 0), restored after."""
    before = fastmlp.get_num_threads()
    _core._set_split_scale(0.0)
    yield
    _core._set_split_scale(1.0)
    fastmlp.set_num_threads(before)


def _data(dtype, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(ROWS, LAYERS[0])).astype(dtype), rng.integers(0, LAYERS[-1], ROWS)


def _trained(dtype, optimizer, limit, steps=4, lr=1e-2, **kw):
    fastmlp.set_num_threads(limit)
    net = fastmlp.MLP(LAYERS, loss="softmax_cross_entropy", dtype=dtype, seed=3,
                      optimizer=optimizer, **kw)
    X, y = _data(dtype)
    for _ in range(steps):
        net.train_step(X, y, lr=lr)
    return net


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("optimizer", ["adam", "momentum", "nesterov"])
def test_split_update_is_bit_identical_at_every_thread_count(split_everything, dtype,
                                                             optimizer):
    # Exact equality, not a tolerance: every part computes what the whole pass computes
    # on its elements, and the products are the same calls at every limit.
    one = _trained(dtype, optimizer, 1, steps=12, l2=1e-3)
    helped = _core.pool_parts_helped()
    for limit in (2, 3, 5):
        other = _trained(dtype, optimizer, limit, steps=12, l2=1e-3)
        np.testing.assert_array_equal(other.params, one.params)
        np.testing.assert_array_equal(other.optimizer_state, one.optimizer_state)
    assert _core.pool_threads() >= 1           # the limits above did start workers
    assert _core.pool_parts_helped() > helped  # ... which ran parts of the passes


@pytest.mark.parametrize("activation", _core.HIDDEN_ACTIVATIONS)
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_split_activations_and_guards_are_bit_identical(split_everything, activation,
                                                        optimizer):
    # Every hidden activation's forward and derivative passes split, and with plain SGD
    # the fused update's guards (largest magnitudes), with dropout on the first layer;
    # the predictions too (the same forward pass).
    def run(limit):
        net = _trained(np.float32, optimizer, limit, activation=activation,
                       dropout=[0.25, 0.0])
        return net.params, net.forward(_data(np.float32, seed=2)[0])

    params, out = run(1)
    for limit in (2, 3):
        p, o = run(limit)
        np.testing.assert_array_equal(p, params)
        np.testing.assert_array_equal(o, out)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_split_bias_gradients_match_the_transcription(split_everything, dtype):
    # The bias gradients are column sums of each layer's Δ, split by ranges of columns
    # (the 192- and 96-wide layers: several parts): the same bits at every limit, and
    # reference.py's float64 backpropagation within the dtype's rounding (float64 1e-12,
    # float32 1e-5 relative to the largest sum: 16 rows of float32 terms).
    import reference as ref
    X, y = _data(dtype)
    grads = []
    for limit in (1, 2, 3):
        fastmlp.set_num_threads(limit)
        net = fastmlp.MLP(LAYERS, loss="softmax_cross_entropy", dtype=dtype, seed=3)
        grads.append(net.loss_and_grad(X, y)[1])
    for g in grads[1:]:
        for (dW, db), (dW0, db0) in zip(g, grads[0]):
            np.testing.assert_array_equal(dW, dW0)
            np.testing.assert_array_equal(db, db0)
    _, want = ref.loss_and_grad(net.weights, net.biases, X, y, "softmax_cross_entropy")
    tol = 1e-12 if dtype == np.float64 else 1e-5
    for l, ((_, db), (_, want_db)) in enumerate(zip(grads[0], want)):
        assert np.max(np.abs(db - want_db)) <= tol * max(1.0, np.max(np.abs(want_db))), l


@pytest.mark.parametrize("loss", ["softmax_cross_entropy", "mse"])
def test_split_loss_is_the_whole_loss_summed_by_blocks(split_everything, loss):
    # 700 rows × 7 outputs: two blocks of the loss's sum (_losses.pxd, loss_block_rows),
    # split over the pool.  The same loss and gradients at every limit, the very loss of
    # the whole pass (fastmlp.kernels, on the step's outputs), and reference.py's within
    # float64 rounding (1e-12 relative).
    import reference as ref
    from fastmlp import kernels as K
    rng = np.random.default_rng(6)
    X = rng.normal(size=(700, 12))
    Y = (rng.integers(0, 7, 700) if loss == "softmax_cross_entropy"
         else rng.normal(size=(700, 7)))
    runs = []
    for limit in (1, 2, 3):
        fastmlp.set_num_threads(limit)
        net = fastmlp.MLP([12, 16, 7], loss=loss, dtype=np.float64, seed=0)
        runs.append(net.loss_and_grad(X, Y))
    for value, grads in runs[1:]:
        assert value == runs[0][0]
        for (dW, db), (dW0, db0) in zip(grads, runs[0][1]):
            np.testing.assert_array_equal(dW, dW0)
            np.testing.assert_array_equal(db, db0)
    out = net.forward(X)
    if loss == "softmax_cross_entropy":
        whole, _ = K.softmax_cross_entropy_loss_delta(out, Y)
        want, _ = ref.softmax_xent_loss_delta(out, Y)
    else:
        whole, _ = K.mse_loss_delta(out, Y)
        want, _ = ref.mse_loss_delta(out, Y)
    assert runs[0][0] == whole
    assert abs(runs[0][0] - want) <= 1e-12 * abs(want)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_fits_up_front_finite_check_splits_and_finds_every_bad_value(split_everything,
                                                                       dtype):
    # The check of a fit's rows (model.py, _core.k_all_finite) split over the pool: a
    # NaN or an infinity anywhere, in any part, is found at every limit.
    x = np.ones(10_000, dtype=dtype)
    for limit in (1, 2, 3):
        fastmlp.set_num_threads(limit)
        assert _core.k_all_finite(x)
        for where in (0, 4_999, 9_999):
            for bad in (np.nan, np.inf, -np.inf):
                y = x.copy()
                y[where] = bad
                assert not _core.k_all_finite(y), (limit, where, bad)


@pytest.mark.filterwarnings("ignore:Stochastic Optimizer")     # 5 epochs, by design
@pytest.mark.parametrize("solver", ["sgd", "adam"])
def test_split_update_of_the_estimators_is_bit_identical(split_everything, solver):
    # scikit-learn's gradient convention, and plain SGD without the fused product (the
    # estimators' sgd scales by 1/Σw: an update pass of its own).
    pytest.importorskip("sklearn")
    from fastmlp.sklearn import MLPClassifier
    X, y = _data(np.float64, seed=1)
    fits = []
    for limit in (1, 2, 4):
        fastmlp.set_num_threads(limit)
        clf = MLPClassifier(hidden_layer_sizes=(96, 48), solver=solver, momentum=0.0,
                            max_iter=5, batch_size=8, random_state=0, tol=0)
        fits.append(clf.fit(X, y))
    for clf in fits[1:]:
        for a, b in zip(clf.coefs_ + clf.intercepts_, fits[0].coefs_ + fits[0].intercepts_):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("rule", ["sgd", "momentum", "nesterov", "adam"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_update_kernels_split_is_bit_identical(split_everything, rule, dtype):
    # fastmlp.kernels' updates split over the workers as the step's update does: the same
    # bits at every thread limit, and (an independent oracle) the numpy transcription of
    # tests/reference.py, in float64, to a few roundings of the dtype (1e-12 in float64;
    # 1e-5 in float32, where one rounding is 6e-8 relative and values are O(1)).
    from fastmlp import kernels as K
    import reference as R
    rng = np.random.default_rng(7)
    # Parts of unequal size and an odd tail; enough values that a worker woken from
    # sleep (30-40 µs on the 2-vCPU VMs) still finds parts left, even of a plain SGD pass.
    n = 1_000_003
    theta0, grad = (rng.normal(size=n).astype(dtype) for _ in range(2))
    state0 = [rng.normal(size=n).astype(dtype), rng.random(n).astype(dtype)]

    def step():
        theta, state = theta0.copy(), [x.copy() for x in state0]
        if rule == "sgd":
            K.sgd_update(theta, grad, 0.1)
        elif rule == "adam":
            K.adam_update(theta, grad, state[0], state[1], 1e-3, 0.9, 0.999, 1e-8, 3)
        else:
            K.momentum_update(theta, grad, state[0], 0.1, 0.9, nesterov=rule == "nesterov")
        return [theta, *state]

    runs = []
    for limit in (1, 2, 3):
        fastmlp.set_num_threads(limit)
        helped = _core.pool_parts_helped()
        runs.append(step())
        for _ in range(4 if limit > 1 else 0):   # a late wake-up now and then
            step()
        if limit > 1:
            assert _core.pool_parts_helped() > helped
    for run in runs[1:]:
        for a, b in zip(run, runs[0]):
            np.testing.assert_array_equal(a, b)
    if rule == "sgd":
        expected = [theta0.astype(np.float64) - 0.1 * grad.astype(np.float64)]
    elif rule == "adam":
        expected = R.adam_update(theta0, grad, *state0, 1e-3, 0.9, 0.999, 1e-8, 3)
    else:
        expected = R.momentum_update(theta0, grad, state0[0], 0.1, 0.9, rule == "nesterov")
    tol = 1e-12 if dtype == np.float64 else 1e-5
    for a, b in zip(runs[0], expected):
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_shuffled_epochs_gather_split_is_bit_identical(split_everything, dtype):
    # A shuffled epoch gathers each batch's rows of X (_batches.pxd, gather_rows), split
    # by ranges of rows: the same batches, so the same fit, at every thread limit.
    rng = np.random.default_rng(3)
    X = rng.normal(size=(200, LAYERS[0])).astype(dtype)
    Y = np.eye(LAYERS[-1], dtype=dtype)[rng.integers(0, LAYERS[-1], 200)]
    params = []
    for limit in (1, 2, 3):
        fastmlp.set_num_threads(limit)
        net = fastmlp.MLP(LAYERS, loss="softmax_cross_entropy", dtype=dtype, seed=0)
        helped = _core.pool_parts_helped()
        net.fit(X, Y, epochs=2, batch_size=64, lr=1e-2, shuffle=True, seed=5)
        if limit > 1:
            assert _core.pool_parts_helped() > helped
        params.append(net.params.copy())
    for p in params[1:]:
        np.testing.assert_array_equal(p, params[0])


@pytest.mark.parametrize("index", [np.int32, np.int64])
def test_a_shuffled_sparse_epochs_gather_split_is_bit_identical(split_everything, index):
    # A sparse X's batches gather their rows' stored columns and values (_batches.pxd,
    # gather_sparse_rows), split by ranges of rows: the same fit at every thread limit,
    # and the fit of the same rows dense (an independent path: gather_rows and the
    # dense first layer) to the rounding of a different order of sums (float64, 1e-12).
    sparse = pytest.importorskip("scipy.sparse")
    rng = np.random.default_rng(4)
    dense = rng.normal(size=(200, LAYERS[0])) * (rng.random((200, LAYERS[0])) < 0.1)
    X = sparse.csr_matrix(dense)
    X.indices, X.indptr = X.indices.astype(index), X.indptr.astype(index)
    Y = np.eye(LAYERS[-1])[rng.integers(0, LAYERS[-1], 200)]
    fit = dict(epochs=2, batch_size=64, lr=1e-2, shuffle=True, seed=5)
    params = []
    for limit in (1, 2, 3):
        fastmlp.set_num_threads(limit)
        net = fastmlp.MLP(LAYERS, loss="softmax_cross_entropy", dtype=np.float64, seed=0)
        net.fit(X, Y, **fit)
        params.append(net.params.copy())
    for p in params[1:]:
        np.testing.assert_array_equal(p, params[0])
    on_dense = fastmlp.MLP(LAYERS, loss="softmax_cross_entropy", dtype=np.float64, seed=0)
    on_dense.fit(dense, Y, **fit)
    np.testing.assert_allclose(params[0], on_dense.params, rtol=0, atol=1e-12)


def test_a_diverging_split_step_leaves_the_parameters_unchanged(split_everything):
    # One weight the batch does not reach (its input column is 0), near float32's
    # largest value: the forward pass and the loss stay finite, and only the update's
    # decay, θ·(1 − η·α/n) = −2·θ, overflows, in a part past the first (the weights of
    # the last input are more than halfway through the flat buffer).
    fastmlp.set_num_threads(3)
    net = fastmlp.MLP(LAYERS, loss="softmax_cross_entropy", dtype=np.float32, seed=3,
                      optimizer="momentum", l2=1.0)
    X, y = _data(np.float32)
    X[:, -1] = 0
    net.train_step(X, y, lr=1e-2)
    net.weights[0][-1, 0] = 3e38
    params, velocity = net.params.copy(), net.optimizer_state.copy()
    with pytest.raises(DivergenceError):
        net.train_step(X, y, lr=3.0 * ROWS)
    np.testing.assert_array_equal(net.params, params)
    np.testing.assert_array_equal(net.optimizer_state, velocity)


def test_two_python_threads_splitting_at_once_equal_their_serial_runs(split_everything):
    # One of them finds the pool busy and runs its parts itself: the same bits.
    expected = [_trained(np.float64, "adam", 1, steps=30, lr=1e-3 * (i + 1)).params
                for i in range(2)]
    fastmlp.set_num_threads(4)
    nets = [fastmlp.MLP(LAYERS, loss="softmax_cross_entropy", dtype=np.float64, seed=3,
                        optimizer="adam")
            for _ in range(2)]
    X, y = _data(np.float64)
    barrier = threading.Barrier(2)

    def train(i):
        barrier.wait()
        for _ in range(30):
            nets[i].train_step(X, y, lr=1e-3 * (i + 1))

    threads = [threading.Thread(target=train, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for net, params in zip(nets, expected):
        np.testing.assert_array_equal(net.params, params)


def _run(code: str, cwd) -> str:
    # A fresh interpreter, away from the source tree (whose fastmlp/ has no compiled core).
    env = {k: v for k, v in os.environ.items() if k != "FASTMLP_BLAS"}
    env["PYTHONPATH"] = ""
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, cwd=cwd,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_workers_start_only_when_a_pass_splits_and_hold_no_cpu_when_idle(tmp_path):
    # In a fresh process: no worker after import and a step too small to split; one
    # named fastmlp-pool after a split step; and none of its CPU time grows while the
    # process sleeps (it waits on a condition variable, not in a spin).
    out = _run("""
        import os, time
        import numpy as np
        import fastmlp
        from fastmlp import _core
        fastmlp.set_num_threads(2)
        net = fastmlp.MLP([8, 8, 2], optimizer="adam", seed=0)
        X = np.ones((4, 8)); y = np.zeros((4, 2))
        net.train_step(X, y, lr=0.1)
        print("before", _core.pool_threads())
        _core._set_split_scale(0.0)
        for _ in range(50):
            net.train_step(X, y, lr=0.1)
        print("after", _core.pool_threads())
        def pool_ticks():
            ticks = {}
            for tid in os.listdir("/proc/self/task"):
                with open(f"/proc/self/task/{tid}/comm") as f:
                    if f.read().strip() != "fastmlp-pool":
                        continue
                with open(f"/proc/self/task/{tid}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                ticks[tid] = int(fields[11]) + int(fields[12])     # utime + stime
            return ticks
        time.sleep(0.2)
        t0 = pool_ticks()
        time.sleep(1.0)
        t1 = pool_ticks()
        print("named", len(t0))
        print("grew", sum(t1[t] - t0[t] for t in t0))
    """, tmp_path)
    lines = dict(line.split() for line in out.splitlines())
    assert lines["before"] == "0"
    assert int(lines["after"]) >= 1
    assert int(lines["named"]) == int(lines["after"])
    assert lines["grew"] == "0"         # clock ticks (10 ms): a spinning worker takes ~100


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_a_forked_child_trains_on_a_pool_of_its_own(tmp_path):
    # The parent's workers do not exist in the child; its first split pass must start
    # new ones rather than wait for the parent's.
    out = _run("""
        import os, signal
        import numpy as np
        import fastmlp
        from fastmlp import _core
        fastmlp.set_num_threads(2)
        _core._set_split_scale(0.0)
        def train():
            net = fastmlp.MLP([32, 64, 3], loss="softmax_cross_entropy", optimizer="adam",
                              seed=1)
            X = np.linspace(-1, 1, 32 * 8).reshape(8, 32); y = np.arange(8) % 3
            for _ in range(20):
                net.train_step(X, y, lr=1e-2)
            return net.params
        expected = train()
        assert _core.pool_threads() >= 1
        pid = os.fork()
        if pid == 0:
            signal.alarm(60)
            ok = np.array_equal(train(), expected) and _core.pool_threads() >= 1
            os._exit(0 if ok else 3)
        _, status = os.waitpid(pid, 0)
        print("child", os.waitstatus_to_exitcode(status))
    """, tmp_path)
    assert out.split() == ["child", "0"]


def test_blas_spin_follows_openblas_thread_timeout():
    # 2^t cycles at 2.5 GHz, t clipped to 4..30 as OpenBLAS clips it; 28 when unset or
    # unreadable.
    from fastmlp.threads import blas_spin_seconds
    assert blas_spin_seconds({}) == pytest.approx(2 ** 28 / 2.5e9)
    assert blas_spin_seconds({"OPENBLAS_THREAD_TIMEOUT": "16"}) == pytest.approx(2 ** 16 / 2.5e9)
    assert blas_spin_seconds({"OPENBLAS_THREAD_TIMEOUT": "1"}) == pytest.approx(2 ** 4 / 2.5e9)
    assert blas_spin_seconds({"OPENBLAS_THREAD_TIMEOUT": "40"}) == pytest.approx(2 ** 30 / 2.5e9)
    assert blas_spin_seconds({"OPENBLAS_THREAD_TIMEOUT": "x", "GOTO_THREAD_TIMEOUT": "20"}) \
        == pytest.approx(2 ** 20 / 2.5e9)


def test_passes_stay_whole_while_a_blas_pool_spins_after_a_product():
    # 128 rows through 784 × 256: products of ~51 MFLOP, sent to the pooled library at
    # two threads, whose workers then spin for ~0.1 s on the other core; the update
    # (~203,000 parameters, far above its grain) would split, but runs on the caller.
    # The products go to that pool only when they are not split over fastmlp's own
    # workers (fastmlp.threads.set_split_products).
    before = fastmlp.get_num_threads()
    fastmlp.set_num_threads(2)
    split_before = fastmlp.threads.set_split_products(False)
    try:
        net = fastmlp.MLP([784, 256, 10], loss="softmax_cross_entropy", seed=0,
                          optimizer="adam")
        rng = np.random.default_rng(0)
        X, y = rng.normal(size=(128, 784)).astype(np.float32), rng.integers(0, 10, 128)
        net.train_step(X, y, lr=1e-3)
        helped = _core.pool_parts_helped()
        for _ in range(10):
            net.train_step(X, y, lr=1e-3)
        assert _core.pool_parts_helped() == helped
    finally:
        fastmlp.set_num_threads(before)
        fastmlp.threads.set_split_products(split_before)
