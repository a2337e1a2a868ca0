"""Model files (fastmlp.io): exact round trips, pickling, hostile/corrupt files, atomic save."""
from __future__ import annotations

import copy
import io
import os
import pickle
import tracemalloc
import zipfile

import numpy as np
import pytest

import fastmlp
from fastmlp import MLP
from fastmlp import io as fio

DTYPES = [np.float32, np.float64]
LOSSES = ["mse", "softmax_cross_entropy"]
FIELDS = ["format_version", "layer_sizes", "activation", "loss", "dtype", "params",
          "output_activation", "optimizer", "hyper", "optimizer_state", "adam_steps"]
# Written since dropout exists; files without them load with no dropout.
OPTIONAL_FIELDS = ["dropout", "dropout_state"]


# --------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------
def trained_net(loss="mse", dtype=np.float64, sizes=(5, 7, 3), seed=4):
    """A model whose parameters are not just the initialisation (non-zero biases too)."""
    net = MLP(list(sizes), loss=loss, dtype=dtype, seed=seed)
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((11, sizes[0]))
    Y = rng.standard_normal((11, sizes[-1])) if loss == "mse" else rng.integers(0, sizes[-1], 11)
    net.fit(X, Y, epochs=2, batch_size=4, lr=0.05, seed=1)
    # values that a lossy round trip would not preserve: −0.0, subnormals, extremes
    net.params[0] = -0.0
    net.params[1] = np.finfo(dtype).smallest_subnormal
    net.params[2] = np.finfo(dtype).max / 4
    net.params[3] = np.nextafter(dtype(1), dtype(2))
    return net


def probe_X(net, n=6, seed=9):
    return np.random.default_rng(seed).standard_normal((n, net.n_inputs))


def assert_same_model(a, b):
    assert type(b) is MLP
    assert a.layer_sizes == b.layer_sizes
    assert a.activation == b.activation and a.loss_name == b.loss_name
    assert a.dtype == b.dtype and b.params.dtype == a.dtype
    assert a.params.tobytes() == b.params.tobytes()  # bit-identical, −0.0 included
    assert repr(a) == repr(b)
    X = probe_X(a)
    assert np.array_equal(a.forward(X), b.forward(X), equal_nan=True)


def good_fields(net=None):
    net = net or MLP([3, 4, 2], dtype=np.float64, seed=0)
    return {
        "format_version": np.array(fio.FORMAT_VERSION, dtype=np.int64),
        "layer_sizes": np.asarray(net.layer_sizes, dtype=np.int64),
        "activation": np.array(net.activation),
        "loss": np.array(net.loss_name),
        "dtype": np.array(net.dtype.name),
        "params": net.params.copy(),
        "output_activation": np.array(net.output_activation),
        "optimizer": np.array(net.optimizer),
        "hyper": np.array([net.l2, 0.9, 0.9, 0.999, 1e-8]),
        "optimizer_state": net.optimizer_state.copy(),
        "adam_steps": np.array(0, dtype=np.int64),
        "dropout": np.array(0.0),
        "dropout_state": np.array(7, dtype=np.uint64),
    }


_DROP = object()


def write_npz(path, **overrides):
    fields = good_fields()
    for k, v in overrides.items():
        if v is _DROP:
            del fields[k]
        else:
            fields[k] = v
    with open(path, "wb") as f:
        np.savez(f, **fields)
    return path


def assert_load_rejected(path, match=None):
    """load(path) raises ValueError/TypeError, with a bounded memory peak."""
    tracemalloc.start()
    try:
        with pytest.raises((ValueError, TypeError), match=match):
            fastmlp.load(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 64 * 2**20, f"load allocated {peak} bytes for a rejected file"


# --------------------------------------------------------------------------------------
# exact round trips
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("loss", LOSSES)
def test_save_load_round_trip(tmp_path, dtype, loss):
    net = trained_net(loss, dtype)
    path = tmp_path / "model.npz"
    net.save(path)
    back = fastmlp.load(path)
    assert_same_model(net, back)
    assert fastmlp.load(str(path)).params.tobytes() == net.params.tobytes()
    # the loaded model is a full model: it trains exactly like the original
    rng = np.random.default_rng(2)
    X = rng.standard_normal((8, 5))
    Y = rng.standard_normal((8, 3)) if loss == "mse" else rng.integers(0, 3, 8)
    net.params[:4] = 0  # (drop the extreme values planted for the round trip)
    back.params[:4] = 0
    assert net.train_step(X, Y, lr=0.01) == back.train_step(X, Y, lr=0.01)
    assert net.params.tobytes() == back.params.tobytes()
    # and it does not share memory with the original
    back.params[...] = 0
    assert np.any(net.params != 0)


def test_bytes_paths_round_trip(tmp_path):
    # os.PathLike, str and bytes are all accepted, as the path error message promises.
    net = trained_net("mse", np.float64)
    path = os.fsencode(tmp_path / "model.npz")
    net.save(path)
    assert fastmlp.load(path).params.tobytes() == net.params.tobytes()


@pytest.mark.parametrize("dtype", DTYPES)
def test_save_load_deep_and_single_layer(tmp_path, dtype):
    for sizes in ([1, 1], [3] * 20, [17, 33, 1]):
        net = MLP(sizes, dtype=dtype, seed=5)
        fastmlp.io.save(net, tmp_path / "m.npz")
        assert_same_model(net, fastmlp.load(tmp_path / "m.npz"))


def test_save_overwrites_and_leaves_no_temp(tmp_path):
    path = tmp_path / "m.npz"
    a = trained_net("mse", np.float64, seed=1)
    b = trained_net("softmax_cross_entropy", np.float32, seed=2)
    a.save(path)
    b.save(path)
    assert_same_model(b, fastmlp.load(path))
    assert sorted(os.listdir(tmp_path)) == ["m.npz"]


def test_saved_file_is_plain_npz_without_pickles(tmp_path):
    net = trained_net()
    net.save(tmp_path / "m.npz")
    with np.load(tmp_path / "m.npz", allow_pickle=False) as z:
        assert sorted(z.files) == sorted(FIELDS + OPTIONAL_FIELDS)
        assert int(z["format_version"]) == fio.FORMAT_VERSION
        assert z["params"].tobytes() == net.params.tobytes()
        assert all(z[k].dtype != object for k in z.files)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("loss", LOSSES)
def test_pickle_round_trip(dtype, loss):
    net = trained_net(loss, dtype)
    for proto in (2, pickle.HIGHEST_PROTOCOL):
        back = pickle.loads(pickle.dumps(net, protocol=proto))
        assert_same_model(net, back)
        back.params[...] = 1
        assert not np.all(net.params == 1)  # an independent copy
    assert_same_model(net, copy.deepcopy(net))
    c = copy.copy(net)
    assert_same_model(net, c)
    # the weight/bias views of the copy point into the copy's buffer
    c.weights[0][0, 0] = 123.0
    assert c.params[0] == 123.0 and net.params[0] != 123.0


def test_pickle_rejects_mismatched_state():
    net = MLP([3, 2], seed=0)
    state = net.__getstate__()
    state["params"] = np.zeros(5)
    fresh = MLP.__new__(MLP)
    with pytest.raises(ValueError):
        fresh.__setstate__(state)


# --------------------------------------------------------------------------------------
# load: unreadable and corrupt files
# --------------------------------------------------------------------------------------
def test_load_missing_path(tmp_path):
    assert_load_rejected(tmp_path / "nope.npz", match="^path:")
    assert_load_rejected(str(tmp_path / "nope" / "deeper.npz"), match="^path:")


def test_load_directory(tmp_path):
    assert_load_rejected(tmp_path)


def test_load_empty_file(tmp_path):
    (tmp_path / "e.npz").write_bytes(b"")
    assert_load_rejected(tmp_path / "e.npz")


@pytest.mark.parametrize("frac", [0.0, 0.001, 0.1, 0.5, 0.9, 0.999, -1])
def test_load_truncated(tmp_path, frac):
    path = tmp_path / "m.npz"
    trained_net().save(path)
    data = path.read_bytes()
    cut = len(data) - 1 if frac == -1 else int(len(data) * frac)
    path.write_bytes(data[:max(cut, 1)])
    assert_load_rejected(path)


@pytest.mark.parametrize("seed", range(4))
def test_load_random_bytes(tmp_path, seed):
    rng = np.random.default_rng(seed)
    junk = rng.integers(0, 256, 4096, dtype=np.uint8).tobytes()
    for prefix in (b"", b"PK\x03\x04", b"PK\x05\x06", b"\x93NUMPY"):
        (tmp_path / "r.npz").write_bytes(prefix + junk)
        assert_load_rejected(tmp_path / "r.npz")


@pytest.mark.parametrize("where", ["header", "data"])
def test_load_corrupted_member(tmp_path, where):
    # a valid zip whose params member has bytes overwritten: in the .npy header, or in the
    # data (0xff… is a NaN bit pattern)
    path = tmp_path / "m.npz"
    trained_net().save(path)
    with zipfile.ZipFile(path) as zi:
        members = {n: zi.read(n) for n in zi.namelist()}
    p = members["params.npy"]
    members["params.npy"] = (p[:20] + b"\xff" * 20 + p[40:] if where == "header"
                             else p[:-16] + b"\xff" * 16)
    with zipfile.ZipFile(path, "w") as zo:
        for n, d in members.items():
            zo.writestr(n, d)
    assert_load_rejected(path)


def test_load_plain_npy_and_other_formats(tmp_path):
    np.save(tmp_path / "a.npy", np.arange(5.0))
    assert_load_rejected(tmp_path / "a.npy")
    with zipfile.ZipFile(tmp_path / "z.npz", "w") as zo:
        zo.writestr("readme.txt", "not a model")
    assert_load_rejected(tmp_path / "z.npz")
    (tmp_path / "t.npz").write_text("format_version=1\n")
    assert_load_rejected(tmp_path / "t.npz")


@pytest.mark.parametrize("field", FIELDS)
def test_load_missing_field(tmp_path, field):
    path = write_npz(tmp_path / "m.npz", **{field: _DROP})
    assert_load_rejected(path, match=field)


def test_load_file_from_before_dropout(tmp_path):
    path = write_npz(tmp_path / "m.npz", dropout=_DROP, dropout_state=_DROP)
    assert fastmlp.load(path).dropout == 0.0
    # dropout without its counter is a damaged file, not an old one
    assert_load_rejected(write_npz(tmp_path / "n.npz", dropout_state=_DROP),
                         match="dropout_state")
    assert_load_rejected(write_npz(tmp_path / "o.npz", dropout=np.array([[0.1]])),
                         match="dropout")


@pytest.mark.parametrize("version", [
    np.array(0), np.array(2), np.array(-1), np.array(2**40), np.array(1.0), np.array("1"),
    np.array([1]), np.array(True),
], ids=["0", "2", "-1", "2**40", "float", "str", "1-d", "bool"])
def test_load_wrong_format_version(tmp_path, version):
    assert_load_rejected(write_npz(tmp_path / "m.npz", format_version=version), match="version")


@pytest.mark.parametrize("params", [
    np.zeros(25), np.zeros(27), np.zeros(0), np.zeros((26, 1)), np.zeros((2, 13)),
    np.zeros(26, dtype=np.float32), np.zeros(26, dtype=np.int64), np.zeros(26, dtype=np.float16),
    np.zeros(26, dtype=complex), np.array(0.0),
], ids=["short", "long", "empty", "col", "2d", "f32", "int", "f16", "complex", "scalar"])
def test_load_wrong_params_shape_or_dtype(tmp_path, params):
    # [3, 4, 2] float64 has 3·4 + 4 + 4·2 + 2 = 26 parameters
    assert good_fields()["params"].shape == (26,)
    assert_load_rejected(write_npz(tmp_path / "m.npz", params=params), match="params")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_load_non_finite_params(tmp_path, bad):
    p = good_fields()["params"]
    p[7] = bad
    assert_load_rejected(write_npz(tmp_path / "m.npz", params=p), match="NaN or inf")


@pytest.mark.parametrize("dtype", ["float16", "int64", "complex128", "object", "nonsense", ""])
def test_load_bad_dtype_name(tmp_path, dtype):
    assert_load_rejected(write_npz(tmp_path / "m.npz", dtype=np.array(dtype)))


@pytest.mark.parametrize("field,value", [
    ("dtype", np.array(b"float64")),      # bytes, not str
    ("dtype", np.array(["float64"])),     # 1-D
    ("dtype", np.array(64)),
    ("loss", np.array("hinge")),
    ("loss", np.array(["mse"])),
    ("activation", np.array("sigmoid")),
    ("activation", np.array(0)),
])
def test_load_bad_config_strings(tmp_path, field, value):
    assert_load_rejected(write_npz(tmp_path / "m.npz", **{field: value}))


@pytest.mark.parametrize("sizes", [
    [2**30, 2**30], [2**31 - 1, 2**31 - 1], [2**20, 2**12], [3, 2**31], [3, 2**63 - 1],
    [3, 0], [3, -2], [3], [], [[3, 4], [4, 2]], [3.0, 4.0, 2.0], [True, True],
    [3] * 66,
], ids=["2**30x2**30", "maxint", "just_over_limit", "2**31", "2**63-1", "zero", "negative",
        "single", "empty", "2d", "float", "bool", "too_deep"])
def test_load_bad_layer_sizes(tmp_path, sizes):
    # the params field is left small: nothing may be allocated for the declared sizes
    arr = np.array(sizes)
    if arr.size == 0:
        arr = arr.astype(np.int64)
    assert_load_rejected(write_npz(tmp_path / "m.npz", layer_sizes=arr))


def test_load_huge_uint_layer_sizes(tmp_path):
    arr = np.array([2**64 - 1, 3], dtype=np.uint64)
    assert_load_rejected(write_npz(tmp_path / "m.npz", layer_sizes=arr))


def test_load_layer_sizes_not_matching_params(tmp_path):
    # a consistent-looking file for another architecture: params of [3, 4, 2] are 26
    # values; [2, 8, 2] needs 42
    assert_load_rejected(write_npz(tmp_path / "m.npz", layer_sizes=np.array([2, 8, 2])),
                         match="params")


def test_load_xent_with_one_output(tmp_path):
    net = MLP([3, 1], seed=0)
    path = write_npz(tmp_path / "m.npz", layer_sizes=np.array([3, 1]),
                     loss=np.array("softmax_cross_entropy"), params=net.params.copy())
    assert_load_rejected(path)


class _Canary:
    """Unpickling this creates a directory: the test checks it never appears."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (os.makedirs, (self.path,))


@pytest.mark.parametrize("field", FIELDS + OPTIONAL_FIELDS)
def test_load_object_array_is_not_unpickled(tmp_path, field):
    canary = tmp_path / "unpickled"
    obj = np.empty(1, dtype=object)
    obj[0] = _Canary(str(canary))
    path = write_npz(tmp_path / "m.npz", **{field: obj})
    with pytest.raises(ValueError):
        fastmlp.load(path)
    assert not canary.exists(), "load unpickled an object array"


def _npy_with_header(shape, descr="<f8", payload=b"\0" * 64):
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buf, {"descr": descr, "fortran_order": False, "shape": shape})
    return buf.getvalue() + payload


def test_load_member_declaring_more_data_than_stored(tmp_path):
    # params.npy declares the right 26 values but holds only 8 bytes
    path = tmp_path / "m.npz"
    write_npz(path)
    with zipfile.ZipFile(path) as zi:
        members = {n: zi.read(n) for n in zi.namelist()}
    members["params.npy"] = _npy_with_header((26,), payload=b"\0" * 8)
    with zipfile.ZipFile(path, "w") as zo:
        for n, d in members.items():
            zo.writestr(n, d)
    assert_load_rejected(path)


@pytest.mark.parametrize("count,container", [(2**50, "npz"), (2**50, "npy"), (2**28, "npz")],
                         ids=["2**50-npz", "2**50-npy", "2**28-npz"])
def test_load_huge_declared_array_shape(tmp_path, count, container):
    data = _npy_with_header((count,))
    path = tmp_path / f"m.{container}"
    if container == "npy":
        path.write_bytes(data)
    else:
        write_npz(path)
        with zipfile.ZipFile(path) as zi:
            members = {n: zi.read(n) for n in zi.namelist()}
        members["params.npy"] = data
        with zipfile.ZipFile(path, "w") as zo:
            for n, d in members.items():
                zo.writestr(n, d)
    assert path.stat().st_size < 4096
    assert_load_rejected(path)  # ValueError, with a peak allocation under 64 MiB


# --------------------------------------------------------------------------------------
# atomic save
# --------------------------------------------------------------------------------------
def _partial_savez(exc):
    real = np.savez

    def savez(file, *args, **kwds):
        buf = io.BytesIO()
        real(buf, *args, **kwds)
        data = buf.getvalue()
        file.write(data[: len(data) // 2])  # half a model file reaches the disk …
        file.flush()
        raise exc  # … then the disk fills up / the user hits ^C

    return savez


@pytest.mark.parametrize("exc", [OSError(28, "No space left on device"), KeyboardInterrupt()],
                         ids=["ENOSPC", "KeyboardInterrupt"])
def test_failed_save_keeps_old_file_and_leaves_no_temp(tmp_path, monkeypatch, exc):
    path = tmp_path / "m.npz"
    old = trained_net("mse", np.float64, seed=1)
    old.save(path)
    old_bytes = path.read_bytes()
    new = trained_net("softmax_cross_entropy", np.float32, seed=2)
    monkeypatch.setattr(np, "savez", _partial_savez(exc))
    with pytest.raises(type(exc)):
        new.save(path)
    monkeypatch.undo()
    assert path.read_bytes() == old_bytes
    assert_same_model(old, fastmlp.load(path))
    assert sorted(os.listdir(tmp_path)) == ["m.npz"], "a temporary file was left behind"


def test_failed_save_to_new_path_creates_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(np, "savez", _partial_savez(OSError(5, "I/O error")))
    with pytest.raises(OSError):
        trained_net().save(tmp_path / "fresh.npz")
    monkeypatch.undo()
    assert os.listdir(tmp_path) == []


def test_failed_rename_keeps_old_file(tmp_path, monkeypatch):
    path = tmp_path / "m.npz"
    old = trained_net(seed=1)
    old.save(path)
    old_bytes = path.read_bytes()

    def bad_replace(src, dst):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(fio.os, "replace", bad_replace)
    with pytest.raises(PermissionError):
        trained_net(seed=3).save(path)
    monkeypatch.undo()
    assert path.read_bytes() == old_bytes
    assert sorted(os.listdir(tmp_path)) == ["m.npz"]


def test_save_to_missing_folder_raises_and_creates_nothing(tmp_path):
    with pytest.raises(OSError):
        trained_net().save(tmp_path / "no" / "such" / "dir" / "m.npz")
    assert os.listdir(tmp_path) == []


def test_save_respects_umask_and_existing_mode(tmp_path):
    old = os.umask(0o022)
    try:
        fresh = tmp_path / "new.npz"
        trained_net().save(fresh)
        existing = tmp_path / "old.npz"
        existing.write_bytes(b"")
        os.chmod(existing, 0o644)
        trained_net().save(existing)
    finally:
        os.umask(old)
    assert fresh.stat().st_mode & 0o777 == 0o644
    assert existing.stat().st_mode & 0o777 == 0o644
