"""Large inputs are refused up front, with a clear ValueError, before anything is allocated.

- A call whose workspace would exceed the limit (``fastmlp.set_workspace_limit``, default
  8 GiB) is refused before its scratch, output or permutation exists: ``forward`` counts
  its scratch *and* its output, training steps the activations of every layer and two
  deltas per row, ``fit`` the workspace of one batch.  tracemalloc's peak shows that
  nothing of that size was allocated.
- More rows in one call than BLAS's 32-bit sizes take, or an n·d that would overflow a
  64-bit integer, is refused in Python (arbitrary-precision) arithmetic before any
  compiled code computes a size — checked on views that *claim* 2**31 or 2**44 rows over a
  few bytes of memory: any read of them would crash, so the tests run in a subprocess.
- A model whose parameters, gradient and optimizer state would exceed the limit (or 2**31
  parameters) is refused by the constructor, and by ``load`` for a file declaring one.
- Model files whose members declare far more than they could need (zip bombs, LZMA
  dictionaries) are refused before decompression.
"""
from __future__ import annotations

import io
import os
import struct
import subprocess
import sys
import textwrap
import tracemalloc
import zipfile

import numpy as np
import pytest

import fastmlp
from fastmlp import MLP

_HERE = os.path.dirname(os.path.abspath(__file__))
KIB, MIB, GIB = 2**10, 2**20, 2**30


@pytest.fixture
def limit():
    """Set the workspace limit for one test, restoring the default afterwards."""
    old = fastmlp.get_workspace_limit()
    yield fastmlp.set_workspace_limit
    fastmlp.set_workspace_limit(old)


def peak_of(fn, *args, **kw):
    """(exception raised by fn or None, tracemalloc peak in bytes during the call)."""
    tracemalloc.start()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    try:
        fn(*args, **kw)
        exc = None
    except Exception as e:  # noqa: BLE001 - returned to the caller to check
        exc = e
    peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    return exc, peak


def state(net):
    return net.params.tobytes(), net.optimizer_state.tobytes(), net.adam_steps


# --------------------------------------------------------------------------------------
# the documented limit
# --------------------------------------------------------------------------------------
def test_default_limit_and_setter():
    assert fastmlp.get_workspace_limit() == 8 * GIB
    old = fastmlp.set_workspace_limit(123456)
    try:
        assert old == 8 * GIB and fastmlp.get_workspace_limit() == 123456
    finally:
        fastmlp.set_workspace_limit(old)
    for bad in (0, -1, 1.5, "1", None, True):
        with pytest.raises(ValueError, match="^nbytes:"):
            fastmlp.set_workspace_limit(bad)
    assert fastmlp.get_workspace_limit() == 8 * GIB


def test_limit_above_int64_is_refused():
    old = fastmlp.get_workspace_limit()
    try:
        with pytest.raises(ValueError, match="^nbytes:"):
            fastmlp.set_workspace_limit(2**63)
    finally:
        fastmlp.set_workspace_limit(old)


_ENGINE_ROWS = textwrap.dedent("""
    import numpy as np
    from numpy.lib.stride_tricks import as_strided
    import fastmlp
    fastmlp.set_workspace_limit(2**62)
    net = fastmlp.MLP([1, 1, 1], dtype=np.float32, seed=0)
    buf = np.zeros(16, dtype=np.float32)
    X = as_strided(buf, shape=(2**31, 1), strides=(4, 4))   # claims 2**31 rows
    try:
        net._engine.forward(X, X)
    except ValueError as exc:
        print("refused:", exc)
""")


def test_engine_refuses_rows_beyond_blas_int():
    proc = subprocess.run([sys.executable, "-P", "-c", _ENGINE_ROWS], capture_output=True,
                          text=True, timeout=120, cwd=_HERE)
    assert proc.returncode == 0 and "refused" in proc.stdout, (proc.returncode, proc.stderr[-500:])


# --------------------------------------------------------------------------------------
# workspace over the limit: forward, loss, loss_and_grad, train_step, fit
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("method", ["forward", "predict", "loss", "loss_and_grad",
                                    "train_step"])
def test_workspace_over_limit_is_refused_before_allocating(limit, dtype, method):
    net = MLP([8, 512, 512, 4], dtype=dtype, seed=0)
    X = np.ones((2000, 8), dtype=dtype)
    Y = np.zeros((2000, 4), dtype=dtype)
    isz = np.dtype(dtype).itemsize
    need_fwd = 2000 * (2 * 512 + 4) * isz        # scratch of two hidden layers + output
    need_train = 2000 * (512 + 512 + 4 + 2 * 512) * isz
    need = need_fwd if method in ("forward", "predict") else need_train
    limit(need - 1)
    before = state(net)
    args = (X,) if method in ("forward", "predict") else (X, Y)
    exc, peak = peak_of(getattr(net, method), *args)
    assert isinstance(exc, ValueError), exc
    msg = str(exc)
    assert msg.startswith("X: a batch of 2000 rows needs") and "set_workspace_limit" in msg
    assert f"needs {need} bytes" in msg, msg
    assert peak < 64 * KIB, f"{method} allocated {peak} bytes before refusing"
    assert state(net) == before
    # exactly at the limit it runs, and uses the memory it announced (no more)
    limit(need)
    exc, peak = peak_of(getattr(net, method), *args)
    assert exc is None, exc
    print(f"{method} {np.dtype(dtype).name}: workspace {need} B, peak {peak} B")
    assert peak >= need * 0.9 or method not in ("forward", "predict")


def test_forward_counts_its_output(limit):
    """A single-layer model has no hidden scratch: its output is all the workspace."""
    net = MLP([2, 4096], dtype=np.float32, seed=0)
    X = np.ones((1000, 2), dtype=np.float32)
    limit(1000 * 4096 * 4 - 1)
    exc, peak = peak_of(net.forward, X)
    assert isinstance(exc, ValueError) and str(exc).startswith("X: a batch of 1000 rows"), exc
    assert peak < 64 * KIB, f"forward allocated {peak} bytes (its 16 MB output?) first"
    # and a wide output under a default limit is still refused before the allocation
    limit(8 * GIB)
    wide = MLP([1, 100_000], dtype=np.float32, seed=0)
    exc, peak = peak_of(wide.forward, np.ones((30_000, 1), dtype=np.float32))
    assert isinstance(exc, ValueError) and "12000000000 bytes" in str(exc), exc
    assert peak < 64 * KIB


@pytest.mark.parametrize("shuffle", [False, True])
def test_fit_refuses_a_batch_over_the_limit_but_not_the_data(limit, shuffle):
    net = MLP([4, 64, 2], loss="softmax_cross_entropy", dtype=np.float64, seed=0)
    n = 20_000
    X = np.random.default_rng(0).normal(size=(n, 4))
    y = np.arange(n) % 2
    per_row = (64 + 2 + 2 * 64) * 8
    limit(per_row * 1000)
    before = state(net)
    exc, peak = peak_of(net.fit, X, y, epochs=1, batch_size=1001, shuffle=shuffle)
    assert isinstance(exc, ValueError) and str(exc).startswith("batch_size: a batch of 1001")
    assert peak < 64 * KIB, f"fit allocated {peak} bytes (permutation, workspace) first"
    assert state(net) == before
    # the limit is per batch: the same data trains in batches that fit
    losses = net.fit(X, y, epochs=1, batch_size=1000, shuffle=shuffle)
    assert len(losses) == 1 and np.isfinite(losses[0])
    # batch_size larger than n is one batch of n rows: over the limit too
    with pytest.raises(ValueError, match=f"^batch_size: a batch of {n} rows"):
        net.fit(X, y, epochs=1, batch_size=10**30)


def test_core_still_guards_direct_engine_calls(limit):
    """The compiled Engine checks the limit on its own too (defence in depth)."""
    net = MLP([8, 256, 4], dtype=np.float32, seed=0)
    X = np.ones((1000, 8), dtype=np.float32)
    limit(1000)
    with pytest.raises(ValueError, match="^X: a batch of 1000 rows needs"):
        net._engine.forward(X, np.empty((1000, 4), dtype=np.float32))
    with pytest.raises(ValueError, match="^X: a batch of 1000 rows needs"):
        net._engine.train_step(X, np.zeros((1000, 4), dtype=np.float32), None, 0.1, True)


# --------------------------------------------------------------------------------------
# rows beyond BLAS's int and n·d beyond int64: views that claim the rows, in a subprocess
# --------------------------------------------------------------------------------------
_FAKE_ROWS = textwrap.dedent("""
    import sys, tracemalloc
    import numpy as np
    from numpy.lib.stride_tricks import as_strided
    import fastmlp

    rows, width, limit = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    fastmlp.set_workspace_limit(limit)
    net = fastmlp.MLP([1, width, 1], dtype=np.float32, seed=0)
    lab = fastmlp.MLP([1, width, 2], loss="softmax_cross_entropy", dtype=np.float32, seed=0)
    buf = np.zeros(16, dtype=np.float32)
    # C-contiguous (rows, 1) views over 64 bytes: reading past row 15 would crash.
    X = as_strided(buf, shape=(rows, 1), strides=(4, 4))
    Y = as_strided(buf, shape=(rows, 1), strides=(4, 4))
    labels = as_strided(np.zeros(8, dtype=np.int64), shape=(rows,), strides=(8,))
    assert X.flags.c_contiguous and labels.flags.c_contiguous
    calls = {
        "forward": lambda: net.forward(X),
        "predict": lambda: net.predict(X),
        "loss": lambda: net.loss(X, Y),
        "loss_and_grad": lambda: net.loss_and_grad(X, Y),
        "train_step": lambda: net.train_step(X, Y, lr=0.1),
        "train_step_labels": lambda: lab.train_step(X, labels, lr=0.1),
        "fit": lambda: net.fit(X, Y, epochs=1, batch_size=rows),
    }
    for name, call in calls.items():
        tracemalloc.start()
        try:
            call()
        except ValueError as exc:
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            msg = str(exc)
            assert msg.split(":")[0] in ("X", "batch_size"), msg
            assert peak < 2**20, (name, peak)
            print(name, "refused:", msg[:90], "| peak", peak)
        else:
            raise SystemExit(f"{name}: accepted {rows} rows")
    print("OK")
""")


@pytest.mark.parametrize("rows,width,lim", [
    (2**31, 1, 2**62),        # more rows than BLAS's int takes, workspace allowed
    (2**31 + 5, 1, 2**62),    # would wrap to 5 rows in a C int cast
    (2**44, 2**20, 8 * GIB),  # n·width·itemsize > 2**63 (overflows int64) — default limit
    (2**44, 2**20, 2**62),    # the largest limit set_workspace_limit accepts
], ids=["2**31-rows", "2**31+5-rows-huge-limit", "n*d-overflow-default-limit",
        "n*d-overflow-2**62"])
def test_rows_beyond_blas_and_nd_overflow_refused_up_front(rows, width, lim):
    proc = subprocess.run([sys.executable, "-P", "-c", _FAKE_ROWS, str(rows), str(width),
                           str(lim)], capture_output=True, text=True, timeout=120, cwd=_HERE)
    assert proc.returncode == 0 and proc.stdout.strip().endswith("OK"), \
        (proc.returncode, proc.stdout[-2000:], proc.stderr[-2000:])
    print(proc.stdout)


_FAKE_KERNELS = textwrap.dedent("""
    import tracemalloc
    import numpy as np
    from numpy.lib.stride_tricks import as_strided
    from fastmlp import kernels as K

    buf = np.zeros(16, dtype=np.float32)
    tall = as_strided(buf, shape=(2**31, 1), strides=(4, 4))    # 2**31 rows, 64 bytes
    wide = as_strided(buf, shape=(1, 2**31), strides=(4, 4))    # 2**31 columns
    one = np.ones((1, 1), dtype=np.float32)
    b1 = np.zeros(1, dtype=np.float32)
    calls = {
        "linear_forward rows": lambda: K.linear_forward(tall, one, b1, out=tall),
        "linear_forward cols": lambda: K.linear_forward(
            one, wide, as_strided(buf, shape=(2**31,), strides=(4,))),
        "linear_forward inner": lambda: K.linear_forward(wide, as_strided(buf, shape=(2**31, 1),
                                                                          strides=(4, 4)), b1),
        "backprop_delta": lambda: K.backprop_delta(tall, one, tall, out=tall),
        "linear_backward": lambda: K.linear_backward(tall, tall, dW=one, db=b1),
    }
    for name, call in calls.items():
        tracemalloc.start()
        try:
            call()
        except ValueError as exc:
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            assert peak < 2**20, (name, peak)
            print(name, "refused:", str(exc)[:80], "| peak", peak)
        else:
            raise SystemExit(f"{name}: accepted a 2**31 dimension")
    print("OK")
""")


def test_kernels_refuse_dimensions_beyond_blas():
    proc = subprocess.run([sys.executable, "-P", "-c", _FAKE_KERNELS], capture_output=True,
                          text=True, timeout=120, cwd=_HERE)
    assert proc.returncode == 0 and proc.stdout.strip().endswith("OK"), \
        (proc.returncode, proc.stdout[-2000:], proc.stderr[-2000:])
    print(proc.stdout)


@pytest.mark.parametrize("name", ["linear_forward", "softmax", "linear_backward"])
def test_kernels_refuse_a_result_over_the_limit(limit, name):
    from fastmlp import kernels as K
    A = np.ones((1000, 2))
    W = np.ones((2, 1000))
    args = {"linear_forward": (A, W, np.zeros(1000)), "softmax": (W.T @ A.T,),
            "linear_backward": (np.ones((4, 2000)), np.ones((4, 1000)))}[name]
    limit(100_000)
    exc, peak = peak_of(getattr(K, name), *args)
    assert isinstance(exc, ValueError) and "over the workspace limit" in str(exc), exc
    assert peak < 64 * KIB, f"{name} allocated {peak} bytes before refusing"


# --------------------------------------------------------------------------------------
# the model itself: parameters, gradient, optimizer state
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("sizes,optimizer,what", [
    ([2**31 - 1, 2**31 - 1], "sgd", "parameters, over the limit"),   # 4.6e18 parameters
    ([100_000, 100_000], "sgd", "parameters, over the limit"),        # 1e10 > 2**31
    ([30_000, 30_000], "sgd", "bytes, over the workspace limit"),      # 9e8: 14.4 GB
    ([20_000, 20_000], "adam", "bytes, over the workspace limit"),     # 4e8 + Adam: 9.6 GB
    ([4, 25_000, 25_000, 1], "sgd", "bytes, over the workspace limit"),  # 6.3e8: 10 GB
])
def test_model_over_the_limit_is_refused_before_allocating(sizes, optimizer, what):
    exc, peak = peak_of(MLP, sizes, optimizer=optimizer, dtype=np.float32)
    assert isinstance(exc, ValueError), exc
    assert str(exc).startswith("layer_sizes:") and what in str(exc), str(exc)
    assert peak < 64 * KIB, f"MLP allocated {peak} bytes before refusing"


def test_model_limit_follows_the_workspace_limit(limit):
    limit(1 * MIB)
    exc, _ = peak_of(MLP, [256, 256, 10], dtype=np.float64)  # 68 K params: 1.6 MB
    assert isinstance(exc, ValueError) and str(exc).startswith("layer_sizes:"), exc
    limit(8 * GIB)
    MLP([256, 256, 10], dtype=np.float64)


# --------------------------------------------------------------------------------------
# model files that declare more than they need
# --------------------------------------------------------------------------------------
def _fields(net):
    return {
        "format_version": np.array(1, dtype=np.int64),
        "layer_sizes": np.asarray(net.layer_sizes, dtype=np.int64),
        "activation": np.array(net.activation), "loss": np.array(net.loss_name),
        "dtype": np.array(net.dtype.name), "params": net.params.copy(),
        "output_activation": np.array(net.output_activation),
        "optimizer": np.array(net.optimizer),
        "hyper": np.array([0.0, 0.9, 0.9, 0.999, 1e-8]),
        "optimizer_state": net.optimizer_state.copy(),
        "adam_steps": np.array(0, dtype=np.int64),
    }


def _npy(arr) -> bytes:
    b = io.BytesIO()
    np.lib.format.write_array(b, arr)
    return b.getvalue()


def _zip(path, members, compression=zipfile.ZIP_DEFLATED):
    with zipfile.ZipFile(path, "w", compression=compression) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def _header(shape, descr):
    b = io.BytesIO()
    np.lib.format.write_array_header_1_0(b, {"descr": descr, "fortran_order": False,
                                             "shape": shape})
    return b.getvalue()


def _load_peak(path):
    exc, peak = peak_of(fastmlp.load, path)
    return exc, peak


@pytest.mark.parametrize("field,shape,descr", [
    ("params", (2**22,), "<f8"),          # 32 MiB of zeros in a ~32 KiB file
    ("optimizer_state", (2**22,), "<f8"),
    ("activation", (), "<U8388608"),      # a 32 MiB "string"
    ("layer_sizes", (2**22,), "<i8"),
])
def test_load_refuses_a_zip_bomb_before_decompressing(tmp_path, field, shape, descr):
    net = MLP([3, 4, 2], dtype=np.float64, seed=0, optimizer="momentum")
    members = {k + ".npy": _npy(v) for k, v in _fields(net).items()}
    count = int(np.prod(shape)) * np.dtype(descr).itemsize
    members[field + ".npy"] = _header(shape, descr) + b"\0" * count
    path = _zip(tmp_path / "bomb.npz", members)
    size = path.stat().st_size
    assert size < count / 500, (size, count)
    exc, peak = _load_peak(path)
    assert isinstance(exc, ValueError) and str(exc).startswith("file:"), exc
    assert peak < 4 * MIB, f"load of a {size}-byte file allocated {peak} bytes"


def test_load_refuses_lzma_members_and_their_dictionary(tmp_path):
    """An LZMA member declares its dictionary size (here 3.75 GiB), which the decompressor
    would allocate before reading anything: such members are refused unread."""
    net = MLP([3, 4, 2], dtype=np.float64, seed=0)
    path = _zip(tmp_path / "lzma.npz", {k + ".npy": _npy(v) for k, v in _fields(net).items()},
                compression=zipfile.ZIP_LZMA)
    data = bytearray(path.read_bytes())
    pos = 0
    while (pos := data.find(b"PK\x03\x04", pos)) >= 0:
        name_len, extra_len = struct.unpack_from("<HH", data, pos + 26)
        struct.pack_into("<I", data, pos + 30 + name_len + extra_len + 5, 0xF0000000)
        pos += 4
    path.write_bytes(bytes(data))
    assert path.stat().st_size < 4096
    exc, peak = _load_peak(path)
    assert isinstance(exc, ValueError) and "compression method 14" in str(exc), exc
    assert peak < 1 * MIB, f"load allocated {peak} bytes"


def test_load_refuses_a_model_over_the_limit(tmp_path, limit):
    net = MLP([256, 256, 10], dtype=np.float64, seed=0)
    net.save(tmp_path / "m.npz")
    limit(1 * MIB)
    with pytest.raises(ValueError, match="^layer_sizes:"):
        fastmlp.load(tmp_path / "m.npz")
    limit(8 * GIB)
    assert fastmlp.load(tmp_path / "m.npz").params.tobytes() == net.params.tobytes()


def test_astronomical_layer_sizes_are_refused_naming_layer_sizes():
    """Widths each within BLAS's range whose product no memory could hold: refused by the
    layout itself, and still named as the constructor's argument."""
    w = 2**31 - 1
    with pytest.raises(ValueError, match="^layer_sizes:"):
        MLP([w, w, w])
    with pytest.raises(ValueError, match="^layer_sizes:"):
        MLP([3, 2**20, 2**20])
