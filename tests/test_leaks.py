"""No leaks: 10⁵ ``train_step`` and 10⁵ ``forward`` calls, 10³ model create/destroy cycles
(and 100 ``fit``/``save``/``load`` round trips) leave the resident set flat and
tracemalloc's traced memory where it was; a steady-state ``train_step`` allocates nothing.

Bounds (stated here, measured values printed with ``pytest -s``):
- tracemalloc: traced memory after the loop within TRACED_SLACK (4 KiB) of before —
  a leak of even one small object per call would show as ≥ 10⁵ × 16 bytes = 1.6 MB;
- RSS (from /proc/self/statm): growth below RSS_SLACK (4 MiB) over the loop, against
  ≥ 1.6 MB for a one-object-per-call leak and 10⁵ × the workspace (hundreds of MB) for a
  leaked buffer; the slack absorbs allocator and page-cache noise;
- steady-state ``train_step``: the tracemalloc peak during the call exceeds the memory
  before it by less than 1 KiB, with a workspace of > 1 MB: no buffer is allocated.
Tiny models keep the run to a few seconds.
"""
from __future__ import annotations

import gc
import os
import sys
import tracemalloc
import weakref

import numpy as np
import pytest

import fastmlp
from fastmlp import MLP

N_CALLS = 100_000
N_MODELS = 1_000
TRACED_SLACK = 4 * 2**10
RSS_SLACK = 4 * 2**20

pytestmark = pytest.mark.skipif(not os.path.exists("/proc/self/statm"),
                                reason="RSS is read from /proc/self/statm (Linux)")

# Under AddressSanitizer (tools/sanitize.sh) freed memory sits in ASan's quarantine, so
# RSS grows by design: only the tracemalloc bounds are checked there.
UNDER_ASAN = "libasan" in open("/proc/self/maps").read() if os.path.exists(
    "/proc/self/maps") else False


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def measure(label, loop, warmup):
    """Run warmup, then loop, under tracemalloc; return (traced growth, RSS growth)."""
    gc.collect()
    tracemalloc.start()
    try:
        warmup()
        gc.collect()
        t0, r0 = tracemalloc.get_traced_memory()[0], rss()
        snap0 = tracemalloc.take_snapshot()
        loop()
        gc.collect()
        t1, r1 = tracemalloc.get_traced_memory()[0], rss()
        snap1 = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    top = snap1.compare_to(snap0, "lineno")[:3]
    print(f"\n{label}: traced memory {t1 - t0:+d} B (bound ±{TRACED_SLACK}), "
          f"RSS {r1 - r0:+d} B (bound {RSS_SLACK})")
    for stat in top:
        print(f"    {stat}")
    return t1 - t0, r1 - r0, top


def check(growth, label):
    traced, rss_growth, top = growth
    assert abs(traced) <= TRACED_SLACK, f"{label}: traced memory grew by {traced} B: {top}"
    assert UNDER_ASAN or rss_growth <= RSS_SLACK, f"{label}: RSS grew by {rss_growth} B"


@pytest.fixture(scope="module")
def tiny():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((8, 4)).astype(np.float32)
    Y = rng.standard_normal((8, 2)).astype(np.float32)
    labels = rng.integers(0, 3, 8)
    return X, Y, labels


@pytest.mark.parametrize("kind", ["mse-sgd", "xent-adam"])
def test_train_step_does_not_leak(tiny, kind):
    X, Y, labels = tiny
    if kind == "mse-sgd":
        net, T = MLP([4, 8, 2], dtype=np.float32, seed=0), Y
    else:
        net = MLP([4, 8, 3], loss="softmax_cross_entropy", optimizer="adam",
                  dtype=np.float32, seed=0)
        T = labels
    step = net.train_step

    def loop():
        for _ in range(N_CALLS):
            step(X, T, 1e-3)

    check(measure(f"{N_CALLS} train_step ({kind})", loop,
                  lambda: [step(X, T, 1e-3) for _ in range(2000)]), "train_step")
    assert np.all(np.isfinite(net.params))


def test_forward_does_not_leak(tiny):
    X = tiny[0]
    net = MLP([4, 8, 8, 2], dtype=np.float32, seed=0)
    fwd = net.forward

    def loop():
        for _ in range(N_CALLS):
            fwd(X)

    check(measure(f"{N_CALLS} forward", loop, lambda: [fwd(X) for _ in range(2000)]),
          "forward")


def test_model_create_destroy_cycles_do_not_leak(tiny):
    X, Y, labels = tiny
    alive = [0]  # models (or their buffers) still alive after `del`

    def cycle():
        net = MLP([4, 16, 2], dtype=np.float32, seed=1, optimizer="momentum")
        net.train_step(X, Y, 1e-3)          # grows the training workspace
        net.fit(X, Y, epochs=1, batch_size=3)  # and the gather buffers
        net.forward(X)
        params = weakref.ref(net.params)     # the engine holds the buffers too
        ref = weakref.ref(net)
        del net
        alive[0] += ref() is not None or params() is not None

    def loop():
        for _ in range(N_MODELS):
            cycle()

    check(measure(f"{N_MODELS} model create/train/destroy cycles", loop,
                  lambda: [cycle() for _ in range(50)]), "create/destroy")
    # freed by reference counting alone, at once: no reference cycles keep a model alive
    assert alive[0] == 0, f"{alive[0]} models outlived their last reference"


def test_fit_and_save_load_do_not_leak(tiny, tmp_path):
    X, Y, _ = tiny
    net = MLP([4, 8, 2], dtype=np.float64, seed=2, optimizer="adam")
    path = tmp_path / "m.npz"
    fds = len(os.listdir("/proc/self/fd"))

    def round_trip():
        net.fit(X, Y, epochs=2, batch_size=3, lr=1e-3)
        net.save(path)
        fastmlp.load(path)

    check(measure("100 fit + save + load round trips", lambda: [round_trip() for _ in range(100)],
                  lambda: [round_trip() for _ in range(20)]), "fit/save/load")
    assert len(os.listdir("/proc/self/fd")) == fds, "file descriptors leaked"


def _steady_increments(net, X, T, calls=200):
    """tracemalloc peak above the baseline during each of `calls` steady-state steps."""
    net.train_step(X, T, 1e-3)
    net.train_step(X, T, 1e-3)
    eng = net._engine
    Y, labels = (None, T) if T.dtype.kind in "iu" else (T, None)
    model, engine = [], []
    for _ in range(calls):
        base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        net.train_step(X, T, 1e-3)
        model.append(tracemalloc.get_traced_memory()[1] - base)
        base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        eng.train_step(X, Y, labels, 1e-3, True)
        engine.append(tracemalloc.get_traced_memory()[1] - base)
    return max(model), max(engine)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("target", ["dense", "labels"])
def test_steady_state_train_step_allocates_nothing(dtype, target):
    """No buffer is allocated once the workspace exists: what tracemalloc sees during a
    step is a few short-lived Python objects (shape tuples, boxed ints, the returned
    float; < 256 B), about the same for an 8-row batch of a tiny model as for a 512-row
    batch with a 1.6–3.2 MB workspace."""
    loss = "mse" if target == "dense" else "softmax_cross_entropy"
    rng = np.random.default_rng(1)
    found = {}
    gc.collect()
    tracemalloc.start()
    try:
        for n, sizes in ((8, [4, 8, 3]), (512, [64, 256, 10])):
            net = MLP(sizes, loss=loss, dtype=dtype, seed=3)
            X = rng.standard_normal((n, sizes[0])).astype(dtype)
            T = (rng.standard_normal((n, sizes[-1])).astype(dtype) if target == "dense"
                 else rng.integers(0, sizes[-1], n))
            workspace = n * (sum(sizes[1:]) + 2 * max(sizes[1:])) * np.dtype(dtype).itemsize
            tracemalloc.reset_peak()
            base = tracemalloc.get_traced_memory()[0]
            net.train_step(X, T, 1e-3)  # first step: the workspace is allocated here …
            first = tracemalloc.get_traced_memory()[1] - base
            assert first >= workspace, "the workspace was not seen (tracemalloc blind?)"
            found[n] = _steady_increments(net, X, T) + (workspace,)  # … and never again
            assert sys.getrefcount(X) == 2 and sys.getrefcount(T) == 2, "inputs kept alive"
    finally:
        tracemalloc.stop()
    for n, (model, engine, workspace) in found.items():
        print(f"\ntrain_step {np.dtype(dtype).name} {target}, {n} rows (workspace {workspace} "
              f"B): transient Python objects per steady-state step: {model} B "
              f"(MLP.train_step), {engine} B (compiled Engine.train_step)")
        assert model < 256 and engine < 256, f"a steady-state step allocated {model} B"
    # (512 is not one of CPython's cached small ints: a boxed row count is ~30 B more)
    assert found[512][0] - found[8][0] < 128 and found[512][1] - found[8][1] < 128, \
        "per-step allocation grows with the batch"
