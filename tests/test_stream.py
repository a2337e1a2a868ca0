"""Training from a memory-mapped .npy larger than one would copy: read in place, batch by
batch, never copied whole.

The peak is measured in a fresh process in two independent ways that do not count the
file's pages (which live in the page cache, are shared and evictable): tracemalloc's peak
(numpy reports every array allocation to it) and RssAnon — resident *anonymous* memory,
sampled from /proc/self/status by a thread while the training call runs (the core
releases the GIL during an epoch, so the sampler runs throughout).
"""
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import fastmlp
from fastmlp import _validation

N_ROWS, N_COLS = 250_000, 200          # float32: 200 MB
ARRAY_BYTES = N_ROWS * N_COLS * 4
# What training needs besides X is O(n) bookkeeping — MLP.fit: the epoch's permutation
# (8 bytes a row, 2 MB); the scikit-learn estimators: also binarised labels, sample
# indices and float targets (~60 bytes a row, 15 MB) — plus O(batch) workspace.  Any copy
# of X is at least the array's 200 MB.  A bound of an eighth of the array separates the
# two by a wide margin on both sides.
BOUND = ARRAY_BYTES // 8


@pytest.fixture(scope="module")
def data_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("stream") / "X.npy"
    X = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(N_ROWS, N_COLS))
    rng = np.random.default_rng(0)
    for start in range(0, N_ROWS, 25_000):   # written in chunks: never 200 MB at once
        X[start:start + 25_000] = rng.standard_normal((25_000, N_COLS), dtype=np.float32)
    X.flush()
    del X
    return path


_MEASURE = textwrap.dedent("""
    import json, sys, threading, time, tracemalloc
    import numpy as np
    import fastmlp
    from fastmlp import MLPClassifier

    def rss_anon():
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1]) * 1024

    path, case = sys.argv[1], sys.argv[2]
    X = np.load(path, mmap_mode="r")
    # Labels from one column, read chunk-wise so that building them copies nothing big.
    y = np.concatenate([(X[i:i + 25000, 0] > 0) for i in range(0, X.shape[0], 25000)])
    y = y.astype(np.int64)
    if case == "mlp_fit":
        net = fastmlp.MLP([X.shape[1], 8, 2], loss="softmax_cross_entropy", seed=0)
        run = lambda: net.fit(X, y, epochs=1, batch_size=256, lr=0.05)
    elif case == "sklearn_fit":
        clf = MLPClassifier(hidden_layer_sizes=(8,), max_iter=1, batch_size=256,
                            random_state=0)
        run = lambda: clf.fit(X, y)
    elif case == "sklearn_partial_fit":
        clf = MLPClassifier(hidden_layer_sizes=(8,), batch_size=256, random_state=0)
        def run():
            for i in range(0, X.shape[0], 50000):
                clf.partial_fit(X[i:i + 50000], y[i:i + 50000], classes=[0, 1])
            return clf
    peak = [0]
    done = threading.Event()
    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], rss_anon())
            time.sleep(0.002)
    base = rss_anon()
    sampler = threading.Thread(target=sample)
    tracemalloc.start()
    sampler.start()
    try:
        result = run()
    finally:
        done.set()
        sampler.join()
    traced = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    loss = result[-1] if case == "mlp_fit" else result.loss_
    print(json.dumps({"traced_peak": traced, "anon_peak": max(peak[0], rss_anon()) - base,
                      "loss": float(loss)}))
""")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
@pytest.mark.parametrize("case", ["mlp_fit", "sklearn_fit", "sklearn_partial_fit"])
def test_training_from_memmap_does_not_copy_it(data_file, case, tmp_path):
    if case.startswith("sklearn"):
        pytest.importorskip("sklearn")
    # One BLAS thread: modest CPU use on a shared machine.  From an empty folder, so that
    # the uncompiled source tree cannot shadow the installed package.
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", _MEASURE, str(data_file), case],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert np.isfinite(got["loss"])
    assert got["traced_peak"] < BOUND, got
    assert got["anon_peak"] < BOUND, got


def memmap(tmp_path, a, order="C"):
    # A new file each time: rewriting a mapped file would pull the pages from under a map.
    path = tmp_path / f"a{len(list(tmp_path.iterdir()))}.npy"
    np.save(path, np.asarray(a, order=order))
    return np.load(path, mmap_mode="r")


def test_memmap_of_model_dtype_is_used_in_place(tmp_path):
    X = np.random.default_rng(0).normal(size=(50, 4)).astype(np.float32)
    mm = memmap(tmp_path, X)
    assert isinstance(mm, np.memmap) and not mm.flags.writeable
    arr = _validation.as_matrix("X", mm, np.dtype(np.float32), 4)
    # What the core receives is the mapped buffer itself (a plain ndarray view of it).
    assert type(arr) is np.ndarray and arr.ctypes.data == mm.ctypes.data
    # And training from it is training from the same numbers.
    y = (X[:, 0] > 0).astype(np.int64)
    a = fastmlp.MLP([4, 6, 2], loss="softmax_cross_entropy", seed=0)
    b = fastmlp.MLP([4, 6, 2], loss="softmax_cross_entropy", seed=0)
    assert a.fit(mm, y, epochs=3, batch_size=8) == b.fit(X, y, epochs=3, batch_size=8)
    assert np.array_equal(a.params, b.params)


def test_memmap_needing_conversion_is_refused_not_copied(tmp_path):
    X = np.random.default_rng(0).normal(size=(50, 4)).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.int64)
    net64 = fastmlp.MLP([4, 6, 2], loss="softmax_cross_entropy", dtype=np.float64, seed=0)
    before = net64.params.copy()
    mm = memmap(tmp_path, X)
    with pytest.raises(ValueError, match=r"^X: a memory-mapped array \(float32.*float64"):
        net64.fit(mm, y, epochs=1)
    with pytest.raises(ValueError, match="^X: a memory-mapped array"):
        net64.forward(mm)
    net32 = fastmlp.MLP([4, 6, 2], loss="softmax_cross_entropy", seed=0)
    with pytest.raises(ValueError, match=r"^X: a memory-mapped array \(float32, not C"):
        net32.fit(memmap(tmp_path, X, order="F"), y, epochs=1)
    with pytest.raises(ValueError, match="^X: a memory-mapped array"):
        net32.fit(mm[:, :4][::2], y[::2], epochs=1)        # strided view of the map
    assert np.array_equal(net64.params, before)
    # The way out the message names: convert explicitly when it fits in memory.
    net64.fit(np.asarray(mm, dtype=np.float64), y, epochs=1)
    # Float targets as large as X are held to the same rule; integer labels are converted
    # (8 bytes a row).
    reg = fastmlp.MLP([4, 3], seed=0)
    with pytest.raises(ValueError, match=r"^Y: a memory-mapped array \(float64"):
        reg.fit(X, memmap(tmp_path, np.zeros((50, 3))), epochs=1)
    net32.fit(X, memmap(tmp_path, y.astype(np.int32)), epochs=1)
