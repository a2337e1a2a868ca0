"""Model files: a plain .npz (never pickled), written atomically, checked on load.

This module serialises a model's configuration and arrays; it knows models only through
the ``Model`` protocol, and the model class that ``load`` builds is handed to it
(``fastmlp.load`` is ``fastmlp.model.load``), so it imports no model code.
"""
from __future__ import annotations

import os
import tempfile
import zipfile
import zlib
from typing import Any, Callable, Protocol, TypeAlias, Union

import numpy as np

from fastmlp import _core
from fastmlp import _validation as v


class Model(Protocol):
    """What a model file holds: the configuration and three pieces of state."""
    params: np.ndarray
    optimizer_state: np.ndarray

    @property
    def adam_steps(self) -> int: ...

    def config(self) -> dict[str, Any]: ...

    @property
    def dropout_state(self) -> int: ...

    def _set_state(self, params: np.ndarray, optimizer_state: np.ndarray,
                   adam_steps: int, dropout_state: int | None = None) -> None: ...

# What save and load accept as a file name.
PathLike: TypeAlias = Union[str, os.PathLike[str]]

FORMAT_VERSION = 1
# Refuse files declaring more parameters than this before allocating anything for them.
MAX_PARAMS = v.MAX_PARAMS
# The configuration fields (version, sizes, names, hyper-parameters) are tiny; a member
# declaring more than this is refused before it is read, whatever its (compressed) size.
_MAX_SMALL_FIELD = 2**16
# What reading a zip member can raise for a damaged or hostile archive besides ValueError:
# bad deflate data (zlib.error), an encrypted member (RuntimeError), an unknown
# compression method (NotImplementedError), cut-off data (EOFError, OSError).
_ZIP_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, KeyError, OSError,
               NotImplementedError, RuntimeError)


def _fspath(path: PathLike) -> str:
    try:
        # fsdecode: bytes paths become str, so the rest of this module handles one type.
        return os.fsdecode(os.fspath(path))
    except TypeError:
        raise TypeError(f"path: expected a str, bytes or os.PathLike, got "
                        f"{type(path).__name__}") from None


def save(model: Model, path: PathLike) -> None:
    """Write ``model`` to ``path`` as .npz: format version, configuration, the flat
    parameters and the optimizer state (so training resumes exactly).

    The file is written to a temporary name in the same folder, flushed, fsynced and
    renamed over ``path``, so an interrupted save never leaves a half-written model.
    """
    path = _fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".fastmlp-", suffix=".tmp", dir=folder)
    try:
        os.chmod(tmp, _file_mode(path))
        with os.fdopen(fd, "wb") as f:
            config = model.config()
            np.savez(
                f,
                format_version=np.array(FORMAT_VERSION, dtype=np.int64),
                layer_sizes=np.asarray(config["layer_sizes"], dtype=np.int64),
                activation=np.array(config["activation"]),
                loss=np.array(config["loss"]),
                dtype=np.array(config["dtype"]),
                params=model.params,
                output_activation=np.array(config["output_activation"]),
                optimizer=np.array(config["optimizer"]),
                hyper=np.array([config[name] for name in _HYPER], dtype=np.float64),
                optimizer_state=model.optimizer_state,
                adam_steps=np.array(model.adam_steps, dtype=np.int64),
                dropout=np.asarray(config["dropout"], dtype=np.float64),
                dropout_state=np.array(model.dropout_state, dtype=np.uint64),
            )
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def _file_mode(path: str) -> int:
    """Mode for a new model file: that of the file it replaces, else 0o666 minus umask
    (mkstemp's 0o600 would make every saved model private)."""
    try:
        return os.stat(path).st_mode & 0o777
    except FileNotFoundError:
        mask = os.umask(0)
        os.umask(mask)
        return 0o666 & ~mask


# The float hyper-parameters, in the order of the file's `hyper` array.
_HYPER = ("l2", "momentum", "beta_1", "beta_2", "epsilon")
_FIELDS = ("format_version", "layer_sizes", "activation", "loss", "dtype", "params",
           "output_activation", "optimizer", "hyper", "optimizer_state", "adam_steps")
# Fields that files written before dropout existed lack (read as no dropout).
_OPTIONAL_FIELDS = ("dropout", "dropout_state")


def _read_member(zf: zipfile.ZipFile, key: str,
                 expect: tuple[tuple[int, ...], np.dtype] | None = None) -> np.ndarray:
    """Read one .npy member after checking its header: a configuration field may declare
    at most _MAX_SMALL_FIELD bytes; ``expect`` = (shape, dtype) must match exactly (the
    parameter buffers, whose size the layer sizes fix); and never more bytes than the
    archive says it stores.  So a hostile header — or a small, highly compressed member
    declaring a huge array — cannot make us allocate more than the model needs."""
    name = key + ".npy"
    try:
        info = zf.getinfo(name)
    except KeyError:
        raise ValueError(f"file: missing field {key!r}") from None
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        # np.savez stores, np.savez_compressed deflates.  The other methods are refused
        # unread: an LZMA member declares its own dictionary size (up to 4 GiB), which the
        # decompressor allocates before reading a byte.
        raise ValueError(f"file: field {key!r} uses zip compression method "
                         f"{info.compress_type}; only stored or deflated members are read")
    try:
        return _read_checked(zf, info, key, expect)
    except ValueError as exc:
        if str(exc).startswith("file:"):
            raise
        # numpy's own complaints about a damaged .npy member (magic string, header)
        raise ValueError(f"file: field {key!r} is not a valid .npy array ({exc})") from exc


def _read_checked(zf: zipfile.ZipFile, info: zipfile.ZipInfo, key: str,
                  expect: tuple[tuple[int, ...], np.dtype] | None) -> np.ndarray:
    with zf.open(info) as f:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
        else:
            raise ValueError(f"file: field {key!r} has unsupported .npy version {version}")
        if dtype.hasobject:
            raise ValueError(f"file: field {key!r} holds Python objects; refusing to unpickle")
        if expect is not None and (tuple(shape) != expect[0] or dtype != expect[1]):
            raise ValueError(f"file: field {key!r} must be {expect[0]} {expect[1]}, got "
                             f"{tuple(shape)} {dtype}")
        count = 1
        for d in shape:
            count *= d
        if expect is None and count * dtype.itemsize > _MAX_SMALL_FIELD:
            raise ValueError(f"file: field {key!r} declares {count * dtype.itemsize} bytes, "
                             "far more than a configuration field holds")
        if count * dtype.itemsize > info.file_size:
            raise ValueError(f"file: field {key!r} declares {count * dtype.itemsize} bytes "
                             f"but stores {info.file_size}: truncated or corrupted")
    with zf.open(info) as f:
        return np.lib.format.read_array(f, allow_pickle=False)


def _scalar_str(z: dict[str, np.ndarray], key: str) -> str:
    a = z[key]
    if a.dtype.kind != "U" or a.shape != ():
        raise ValueError(f"file: '{key}' must be a string")
    return str(a[()])


def _activation(z: dict[str, np.ndarray]) -> str | list[str]:
    """The hidden activation: one name (a scalar string), or one per hidden layer."""
    a = z["activation"]
    if a.dtype.kind == "U" and a.ndim == 1:
        return [str(x) for x in a]
    return _scalar_str(z, "activation")


def _dropout(z: dict[str, np.ndarray]) -> tuple[float | list[float], int | None]:
    """(dropout, its counter): one probability (a scalar) or one per hidden layer; none
    in files written before dropout existed."""
    if "dropout" not in z:
        return 0.0, None
    p, state = z["dropout"], z.get("dropout_state")
    if p.dtype != np.float64 or p.ndim > 1:
        raise ValueError("file: dropout must be a float64 scalar or 1-D array")
    if state is None or state.shape != () or state.dtype != np.uint64:
        raise ValueError("file: dropout_state must be a uint64 scalar")
    return (float(p) if p.ndim == 0 else [float(x) for x in p]), int(state)


def load(path: PathLike, build: Callable[..., Model]) -> Model:
    """Read a model written by ``save``; every field is checked before use.

    ``build(**config)`` makes the model (its constructor validates every name and
    hyper-parameter), whose state is then set from the file.
    """
    path = _fspath(path)
    try:
        zf = zipfile.ZipFile(path)
    except _ZIP_ERRORS as exc:
        raise ValueError(f"path: not a readable fastmlp model file ({exc})") from exc
    try:
        with zf:
            z = {key: _read_member(zf, key) for key in _FIELDS
                 if key not in ("params", "optimizer_state")}
            z.update({key: _read_member(zf, key) for key in _OPTIONAL_FIELDS
                      if key + ".npy" in zf.namelist()})
            ver = z["format_version"]
            if ver.shape != () or ver.dtype.kind not in "iu" or int(ver) != FORMAT_VERSION:
                raise ValueError(f"file: unsupported format version {ver!r}")
            stored_sizes = z["layer_sizes"]
            if stored_sizes.ndim != 1 or stored_sizes.dtype.kind not in "iu":
                raise ValueError("file: layer_sizes must be a 1-D integer array")
            sizes = v.check_layer_sizes([int(s) for s in stored_sizes])
            n_params = _core.Layout(sizes, "file").n_params
            if n_params > MAX_PARAMS:
                raise ValueError(f"file: declares {n_params} parameters, over the limit")
            dtype = v.check_dtype(_scalar_str(z, "dtype"))
            activation = _activation(z)
            loss = _scalar_str(z, "loss")
            params = _read_member(zf, "params", ((n_params,), dtype))
            if not np.all(np.isfinite(params)):
                raise ValueError("file: params contain NaN or infinity")
            hyper = z["hyper"]
            if hyper.shape != (5,) or hyper.dtype != np.float64:
                raise ValueError("file: hyper must be 5 float64 values")
            steps = z["adam_steps"]
            if (steps.shape != () or steps.dtype.kind not in "iu"
                    or not 0 <= int(steps) < 2**63):
                raise ValueError("file: adam_steps must be an integer in [0, 2**63)")
            dropout, dropout_state = _dropout(z)
            # The constructor validates every name and hyper-parameter.
            model = build(layer_sizes=sizes, activation=activation, loss=loss, dtype=dtype,
                          output_activation=_scalar_str(z, "output_activation"),
                          optimizer=_scalar_str(z, "optimizer"), dropout=dropout,
                          **{name: float(x) for name, x in zip(_HYPER, hyper)})
            state = _read_member(zf, "optimizer_state", (model.optimizer_state.shape, dtype))
            if not np.all(np.isfinite(state)):
                raise ValueError("file: optimizer_state contains NaN or infinity")
            model._set_state(params, state, int(steps), dropout_state)
    except _ZIP_ERRORS as exc:
        raise ValueError(f"file: corrupted model file ({type(exc).__name__}: {exc})") from exc
    return model
