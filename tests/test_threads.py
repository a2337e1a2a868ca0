"""Threads, for real: one model shared by several threads, and models trained in parallel.

- ``forward``/``predict``/``predict_proba``/``loss_and_grad`` from many threads at once on
  one model return exactly what they return serially (per-call scratch; the training
  workspace is under the model's lock).
- ``train_step``/``fit`` from many threads on one model are serialised, never interleaved
  inside a step: with identical batches, N threads × K steps equal N·K sequential steps,
  bit for bit; with different batches, the returned losses let us replay the calls in
  one serial order that reproduces the final parameters bit for bit; two concurrent
  ``fit`` calls equal one after the other.
- Different models train in parallel threads with exactly the results of serial training.
- The GIL is released inside the compiled calls: another Python thread keeps running
  during one long ``fit``/``train_step``/``forward`` call (measured as the longest pause
  of a heartbeat thread), and two threads training two large models overlap (speed-up
  measured and printed, not asserted; their results are checked against serial training).
"""
from __future__ import annotations

import contextlib
import copy
import sys
import threading
import time

import numpy as np
import pytest

from fastmlp import MLP

try:
    from threadpoolctl import threadpool_limits
except ImportError:  # pragma: no cover - optional: BLAS then keeps its own threads
    threadpool_limits = None


def one_blas_thread():
    """BLAS on one thread where threadpoolctl is installed, so that overlap measures the
    GIL, not BLAS's own threading."""
    if threadpool_limits is None:
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def run_threads(fns, timeout=120):
    """Start every fn in its own thread at the same moment; re-raise the first error."""
    barrier = threading.Barrier(len(fns))
    errors, results = [], [None] * len(fns)

    def wrap(i, fn):
        try:
            barrier.wait()
            results[i] = fn()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=wrap, args=(i, fn)) for i, fn in enumerate(fns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)
        assert not t.is_alive(), "a thread hung"
    if errors:
        raise errors[0]
    return results


def data(n, d_in, d_out, seed, labels):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d_in))
    Y = rng.integers(0, d_out, n) if labels else rng.standard_normal((n, d_out))
    return X, Y


# --------------------------------------------------------------------------------------
# inference and gradients from many threads on one model
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_concurrent_inference_on_one_model_is_exact(dtype):
    net = MLP([16, 64, 64, 5], loss="softmax_cross_entropy", dtype=dtype, seed=0)
    inputs = [data(n, 16, 5, seed, True)[0].astype(dtype)
              for seed, n in enumerate([1, 7, 33, 128, 250, 3, 64, 511])]
    # serial results under the same BLAS threading as the threads below (OpenBLAS's
    # multi-threaded gemm rounds differently from its single-threaded one)
    with one_blas_thread():
        want = [(net.forward(X), net.predict(X), net.predict_proba(X)) for X in inputs]

    def worker(i):
        def fn():
            for rep in range(16):
                j = (i + rep) % len(inputs)
                X = inputs[j]
                got = (net.forward(X), net.predict(X), net.predict_proba(X))
                for g, w in zip(got, want[j]):
                    assert np.array_equal(g, w), f"thread {i}: result differs from serial"
            return True
        return fn

    before = net.params.tobytes()
    with one_blas_thread():
        assert all(run_threads([worker(i) for i in range(8)]))
    assert net.params.tobytes() == before


def test_concurrent_loss_and_grad_on_one_model_is_exact():
    """loss_and_grad shares the model's workspace and gradient buffer with training: the
    lock keeps concurrent calls from mixing them up."""
    net = MLP([8, 32, 32, 3], dtype=np.float64, seed=1, l2=0.01)
    batches = [data(n, 8, 3, s, False) for s, n in enumerate([5, 50, 200, 17])]
    want = [net.loss_and_grad(X, Y) for X, Y in batches]

    def worker(i):
        def fn():
            for rep in range(60):
                j = (i * 3 + rep) % len(batches)
                loss, grads = net.loss_and_grad(*batches[j])
                assert loss == want[j][0]
                for (dW, db), (wW, wb) in zip(grads, want[j][1]):
                    assert np.array_equal(dW, wW) and np.array_equal(db, wb)
            return True
        return fn

    assert all(run_threads([worker(i) for i in range(6)]))


# --------------------------------------------------------------------------------------
# training from many threads on one model: serialised
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_concurrent_train_step_identical_batches_equals_sequential(dtype, optimizer):
    N, K = 6, 40
    net = MLP([10, 48, 48, 4], dtype=dtype, seed=2, optimizer=optimizer)
    twin = copy.deepcopy(net)
    X, Y = data(64, 10, 4, 0, False)
    X, Y = X.astype(dtype), Y.astype(dtype)

    def worker():
        return [net.train_step(X, Y, lr=0.01) for _ in range(K)]

    losses = run_threads([worker] * N)
    serial = [twin.train_step(X, Y, lr=0.01) for _ in range(N * K)]
    assert net.params.tobytes() == twin.params.tobytes(), "steps were interleaved"
    assert net.optimizer_state.tobytes() == twin.optimizer_state.tobytes()
    assert net.adam_steps == twin.adam_steps == (N * K if optimizer == "adam" else 0)
    # every step saw the parameters of a distinct point of the serial sequence
    assert sorted(x for per in losses for x in per) == sorted(serial)


@pytest.mark.parametrize("labels", [False, True])
def test_concurrent_train_step_different_batches_is_a_serial_order(labels):
    """Each train_step returns the loss at the parameters it started from.  Replaying the
    steps on a twin, always choosing the thread whose next batch has exactly that loss at
    the twin's current parameters, must succeed at every step and end on the very same
    parameters: the concurrent run was one serial order of whole steps."""
    N, K = 4, 20
    loss = "softmax_cross_entropy" if labels else "mse"
    net = MLP([32, 256, 3], loss=loss, dtype=np.float64, seed=3, optimizer="momentum")
    twin = copy.deepcopy(net)
    # batches large enough that a step spends most of its time in compiled code, without
    # the GIL: the threads do try to run steps at the same time
    batches = [[data(256, 32, 3, 100 * t + k, labels) for k in range(K)] for t in range(N)]

    def worker(t):
        return lambda: [net.train_step(X, Y, lr=0.005) for X, Y in batches[t]]

    prev = sys.getswitchinterval()
    sys.setswitchinterval(1e-4)  # hand the GIL over often, so that the threads interleave
    try:
        with one_blas_thread():
            recorded = run_threads([worker(t) for t in range(N)])
    finally:
        sys.setswitchinterval(prev)
    nxt = [0] * N
    order = []
    for _ in range(N * K):
        match = [t for t in range(N) if nxt[t] < K
                 and twin.loss(*batches[t][nxt[t]]) == recorded[t][nxt[t]]]
        assert len(match) == 1, f"no unique serial order at step {len(order)}: {match}"
        t = match[0]
        twin.train_step(*batches[t][nxt[t]], lr=0.005)
        nxt[t] += 1
        order.append(t)
    assert net.params.tobytes() == twin.params.tobytes()
    assert net.optimizer_state.tobytes() == twin.optimizer_state.tobytes()
    switches = sum(a != b for a, b in zip(order, order[1:]))
    print(f"serial order found; the threads alternated {switches} times in {N * K} steps")


def test_concurrent_fits_on_one_model_run_one_after_the_other():
    net = MLP([5, 128, 2], loss="softmax_cross_entropy", dtype=np.float64, seed=4)
    A = data(3000, 5, 2, 1, True)
    B = data(2000, 5, 2, 2, True)
    kw = dict(epochs=2, batch_size=64, lr=0.05, seed=9)
    ab, ba = copy.deepcopy(net), copy.deepcopy(net)
    ab.fit(*A, **kw), ab.fit(*B, **kw)
    ba.fit(*B, **kw), ba.fit(*A, **kw)
    assert ab.params.tobytes() != ba.params.tobytes()
    for _ in range(3):
        trial = copy.deepcopy(net)
        run_threads([lambda: trial.fit(*A, **kw), lambda: trial.fit(*B, **kw)])
        assert trial.params.tobytes() in (ab.params.tobytes(), ba.params.tobytes()), \
            "two fits on one model were interleaved"


def test_forward_while_training_does_not_crash():
    """forward during training reads parameters in flux (documented); it must still
    return well-formed, finite outputs and never crash."""
    net = MLP([8, 64, 64, 3], dtype=np.float32, seed=5)
    X, Y = data(2000, 8, 3, 0, False)
    stop = threading.Event()
    # Training starts once both readers are reading, so that on a loaded machine the
    # whole fit cannot finish before a reader is scheduled at all.
    reading = [threading.Event(), threading.Event()]

    def trainer():
        try:
            for started in reading:
                started.wait(timeout=60)
            net.fit(X, Y, epochs=5, batch_size=32, lr=0.01)
        finally:
            stop.set()

    def reader(i):
        count = 0
        while not stop.is_set():
            out = net.forward(X[:100])
            assert out.shape == (100, 3) and np.all(np.isfinite(out))
            count += 1
            reading[i].set()
        return count

    counts = run_threads([trainer, lambda: reader(0), lambda: reader(1)])
    assert counts[1] > 0 and counts[2] > 0


# --------------------------------------------------------------------------------------
# different models in parallel threads
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_models_in_parallel_threads_equal_serial_training(dtype):
    cfgs = [dict(layer_sizes=[12, 40, 3], loss="softmax_cross_entropy", optimizer="adam"),
            dict(layer_sizes=[12, 40, 40, 2], activation="tanh"),
            dict(layer_sizes=[12, 3], loss="softmax_cross_entropy", optimizer="nesterov"),
            dict(layer_sizes=[12, 64, 1], l2=0.01)]
    sets = [data(600, 12, c["layer_sizes"][-1], i, c.get("loss") == "softmax_cross_entropy")
            for i, c in enumerate(cfgs)]
    par = [MLP(dtype=dtype, seed=i, **c) for i, c in enumerate(cfgs)]
    ser = [MLP(dtype=dtype, seed=i, **c) for i, c in enumerate(cfgs)]

    def job(net, X, Y):
        def fn():
            losses = net.fit(X, Y, epochs=3, batch_size=20, lr=0.02, seed=1)
            losses.append(net.train_step(X[:50], Y[:50], lr=0.02))
            return losses
        return fn

    got = run_threads([job(n, *s) for n, s in zip(par, sets)])
    want = [job(n, *s)() for n, s in zip(ser, sets)]
    assert got == want
    for p, s in zip(par, ser):
        assert p.params.tobytes() == s.params.tobytes()
        assert p.optimizer_state.tobytes() == s.optimizer_state.tobytes()


# --------------------------------------------------------------------------------------
# the GIL is released
# --------------------------------------------------------------------------------------
def _longest_pause_during(call):
    """Run `call` in a worker thread; meanwhile a pure-Python heartbeat loop runs in this
    thread.  Returns (worker seconds, longest gap between two heartbeats).  A call that
    held the GIL would freeze the heartbeat for its whole duration."""
    done = threading.Event()
    times = []

    def worker():
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
        done.set()

    t = threading.Thread(target=worker)
    beats = []
    t.start()
    while not done.is_set():
        beats.append(time.perf_counter())
        sum(range(200))  # a little pure-Python work per beat
    t.join()
    gaps = np.diff(beats) if len(beats) > 1 else np.array([times[0]])
    return times[0], float(gaps.max()), len(beats)


def test_gil_is_released_inside_compiled_calls():
    net = MLP([256, 1024, 1024, 10], loss="softmax_cross_entropy", dtype=np.float32, seed=6)
    X, y = data(2048, 256, 10, 0, True)
    X = X.astype(np.float32)
    calls = {
        "fit (one epoch, one compiled call)": lambda: net.fit(X, y, epochs=1, batch_size=512),
        "train_step (2048 rows)": lambda: net.train_step(X, y, lr=0.01),
        "forward (2048 rows)": lambda: net.forward(X),
    }
    prev = sys.getswitchinterval()
    sys.setswitchinterval(0.001)
    try:
        with one_blas_thread():
            for name, call in calls.items():
                call()  # warm up (workspace)
                reps = 1
                while True:
                    dur, gap, beats = _longest_pause_during(lambda: [call() for _ in range(reps)])
                    if dur > 0.15 or reps >= 64:
                        break
                    reps *= 2
                print(f"GIL: {name} x{reps}: {dur * 1e3:.0f} ms in the worker; heartbeat "
                      f"ran {beats} times, longest pause {gap * 1e3:.1f} ms")
                # held GIL: one pause as long as a whole compiled call (≥ dur / reps)
                assert gap < 0.5 * dur / reps or gap < 0.02, \
                    f"{name}: the heartbeat stalled {gap * 1e3:.0f} ms of {dur * 1e3:.0f} ms"
    finally:
        sys.setswitchinterval(prev)


def test_two_models_training_in_two_threads_overlap():
    """Two large models trained in two threads at once end with the losses and parameters,
    bit for bit, of the same two models trained one after the other.  The speed-up of the
    two threads over serial training is measured and printed (pytest -s), not asserted:
    timing depends on the machine and its load."""
    X, y = data(2048, 256, 10, 1, True)
    X = X.astype(np.float32)

    def warmed_pair():
        nets = [MLP([256, 512, 512, 10], loss="softmax_cross_entropy", dtype=np.float32,
                    seed=s) for s in (7, 8)]
        for n in nets:
            n.fit(X[:512], y[:512], epochs=1, batch_size=256, seed=0)  # warm up
        return nets

    # A pair each: a model trained serially would otherwise start the threaded run from
    # where its serial training ended, and there would be nothing to compare.
    serial_nets, threaded_nets = warmed_pair(), warmed_pair()

    def job(n):
        return lambda: n.fit(X, y, epochs=2, batch_size=256, seed=0)

    with one_blas_thread():
        t0 = time.perf_counter()
        serial_losses = [job(n)() for n in serial_nets]
        serial = time.perf_counter() - t0
        t0 = time.perf_counter()
        threaded_losses = run_threads([job(n) for n in threaded_nets])
        parallel = time.perf_counter() - t0
    import os
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"two models, {cores} cores, BLAS on "
          f"{'1 thread' if threadpool_limits else 'its own threads'}: serial "
          f"{serial * 1e3:.0f} ms, two threads {parallel * 1e3:.0f} ms, "
          f"speed-up {serial / parallel:.2f}x")
    assert threaded_losses == serial_losses
    for threaded, serial_net in zip(threaded_nets, serial_nets):
        assert threaded.params.tobytes() == serial_net.params.tobytes()
