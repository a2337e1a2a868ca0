"""Input checks and conversions, done once in Python before anything reaches the core.

Every failure is a ValueError or TypeError whose message starts with the argument's name.
The compiled core re-checks only cheap invariants (dtype, shape, layout flags); the
value checks it does itself (finiteness, label range) run inside the same GIL-free call.
"""
from __future__ import annotations

import mmap
import numbers
import operator

import numpy as np
import scipy.sparse as sp

from fastmlp import _core

LOSSES = ("mse", "softmax_cross_entropy")
ACTIVATIONS = _core.HIDDEN_ACTIVATIONS
# Activations whose networks start from He's initialisation (ReLU and its smooth or leaky
# relatives, unbounded above); the others start from Glorot's.
HE_ACTIVATIONS = ("relu", "leaky_relu", "elu", "gelu", "silu", "softplus")
OUTPUT_ACTIVATIONS = ("identity", "logistic", "tanh", "relu")
OPTIMIZERS = ("sgd", "momentum", "nesterov", "adam")
DTYPES = (np.float32, np.float64)

# Layer widths and the rows of one call must fit BLAS's 32-bit sizes (the core owns these).
MAX_WIDTH = _core.MAX_WIDTH
MAX_ROWS = _core.MAX_ROWS
# Largest model (parameters) the constructor builds and ``load`` reads.
MAX_PARAMS = 2**31


def check_dtype(dtype) -> np.dtype:
    try:
        dt = np.dtype(dtype)
    except TypeError as exc:
        raise TypeError(f"dtype: expected float32 or float64, got {dtype!r}") from exc
    if dt not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise TypeError(f"dtype: expected float32 or float64, got {dt}")
    return dt


def check_layer_sizes(layer_sizes) -> tuple[int, ...]:
    if isinstance(layer_sizes, (str, bytes)) or not hasattr(layer_sizes, "__len__"):
        raise TypeError(f"layer_sizes: expected a sequence of ints, got {layer_sizes!r}")
    sizes = []
    for i, s in enumerate(layer_sizes):
        if isinstance(s, (bool, np.bool_)) or not isinstance(s, numbers.Integral):
            raise TypeError(f"layer_sizes[{i}]: expected an int, got {s!r}")
        s = operator.index(s)
        if not 1 <= s <= MAX_WIDTH:
            raise ValueError(f"layer_sizes[{i}]: expected an int in [1, {MAX_WIDTH}], got {s}")
        sizes.append(s)
    if len(sizes) < 2:
        raise ValueError(
            f"layer_sizes: expected at least 2 sizes (inputs and outputs), got {len(sizes)}")
    if len(sizes) > _core.MAX_WEIGHT_LAYERS + 1:
        raise ValueError(f"layer_sizes: at most {_core.MAX_WEIGHT_LAYERS} weight layers are "
                         f"supported, got {len(sizes) - 1}")
    return tuple(sizes)


def check_choice(name: str, value, choices) -> str:
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name}: expected one of {', '.join(map(repr, choices))}, got {value!r}")
    return value


def check_activations(name: str, value, n_hidden: int) -> str | tuple[str, ...]:
    """A hidden activation name, or a sequence of one name per hidden layer (returned as
    a tuple of names)."""
    if isinstance(value, str):
        return check_choice(name, value, ACTIVATIONS)
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"{name}: expected a name of {', '.join(map(repr, ACTIVATIONS))} "
                         f"or a sequence of {n_hidden} of them, got {value!r}")
    if len(value) != n_hidden:
        raise ValueError(f"{name}: expected one name per hidden layer ({n_hidden}), got "
                         f"{len(value)}")
    return tuple(check_choice(f"{name}[{i}]", a, ACTIVATIONS) for i, a in enumerate(value))


def check_dropout(name: str, value, n_hidden: int) -> float | tuple[float, ...]:
    """A dropout probability in [0, 1), or a sequence of one per hidden layer (a tuple)."""
    if isinstance(value, (list, tuple)):
        if len(value) != n_hidden:
            raise ValueError(f"{name}: expected one probability per hidden layer "
                             f"({n_hidden}), got {len(value)}")
        return tuple(check_fraction(f"{name}[{i}]", p, closed_low=True)
                     for i, p in enumerate(value))
    return check_fraction(name, value, closed_low=True)


def _real(name: str, value) -> float:
    """A real number (not bool) as float; ints too large for a float become inf."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}: expected a real number, got {value!r}")
    try:
        return float(value)
    except OverflowError:
        return float("inf")


def check_positive_float(name: str, value) -> float:
    v = _real(name, value)
    if not (np.isfinite(v) and v > 0):
        raise ValueError(f"{name}: expected a finite number > 0, got {value!r}")
    return v


def check_nonnegative_float(name: str, value) -> float:
    v = _real(name, value)
    if not (np.isfinite(v) and v >= 0):
        raise ValueError(f"{name}: expected a finite number >= 0, got {value!r}")
    return v


def check_fraction(name: str, value, closed_low: bool = False) -> float:
    """A number in [0, 1) (or (0, 1) when not closed_low)."""
    v = check_nonnegative_float(name, value)
    if not (v < 1 and (closed_low or v > 0)):
        low = "[0" if closed_low else "(0"
        raise ValueError(f"{name}: expected a number in {low}, 1), got {value!r}")
    return v


def make_rng(name: str, seed) -> np.random.Generator:
    """np.random.default_rng(seed), with numpy's errors re-raised naming the argument."""
    try:
        return np.random.default_rng(seed)
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"{name}: not a valid seed, {seed!r} ({exc})") from None


def check_positive_int(name: str, value) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name}: expected an int, got {value!r}")
    v = operator.index(value)
    if v < 1:
        raise ValueError(f"{name}: expected an int >= 1, got {v}")
    return v


def _numeric_array(name: str, a) -> np.ndarray:
    """Array-like → ndarray of a real numeric or bool dtype, without copying if possible."""
    if type(a) is np.ndarray:
        arr = a
    else:
        # np.asarray also turns ndarray subclasses (np.matrix, masked arrays, memmaps)
        # into plain arrays, which is what the core accepts.
        try:
            arr = np.asarray(a)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{name}: could not be read as a numeric array ({exc})") from exc
    kind = arr.dtype.kind
    if kind not in "biuf":
        what = {"c": "complex", "O": "object", "U": "string", "S": "bytes"}.get(kind, str(arr.dtype))
        raise TypeError(f"{name}: expected real numbers, got an array of {what} dtype")
    return arr


def _memory_mapped(a) -> bool:
    """Whether a is a memory map or a view of one (scipy keeps its components as plain
    ndarray views of the maps it was built from)."""
    while isinstance(a, np.ndarray):
        if isinstance(a, np.memmap) or isinstance(a.base, mmap.mmap):
            return True
        a = a.base
    return False


def _refuse_memmap_copy(name: str, a, dtype: np.dtype) -> None:
    """A memory map that would need converting is refused rather than copied whole.

    Conversion makes one in-memory copy of the entire array; for a memory-mapped file that
    may be larger than memory, so it is never done silently.
    """
    if _memory_mapped(a) and not (
            a.dtype == dtype and a.flags.c_contiguous and a.flags.aligned):
        layout = "C-ordered" if a.flags.c_contiguous else "not C-contiguous"
        raise ValueError(
            f"{name}: a memory-mapped array ({a.dtype}, {layout}) would be copied whole to "
            f"convert it to C-ordered {dtype}; pass a memmap of that dtype and order "
            f"(convert the file once, in chunks), or np.asarray({name}, dtype=np.{dtype}, "
            "order='C') if it fits in memory")


def as_sparse_rows(name: str, a, dtype: np.dtype, n_cols: int) -> _core.SparseRows:
    """A scipy sparse matrix or array (CSR, CSC or COO) → ``_core.SparseRows`` of `dtype`
    with n >= 1 rows of n_cols columns, which checks its structure and values.

    CSC and COO are converted to CSR once.  CSR components already of `dtype` and of an
    int32 or int64 index type (one for both) are used in place, memory maps included; a
    memory-mapped component that would need converting is refused, as for dense X.
    """
    fmt = getattr(a, "format", None)
    if fmt not in ("csr", "csc", "coo"):
        raise TypeError(f"{name}: sparse format {fmt!r} is not supported; expected CSR, CSC "
                        "or COO (e.g. X.tocsr())")
    if a.dtype.kind not in "biuf":
        raise TypeError(f"{name}: expected real numbers, got a sparse matrix of {a.dtype} "
                        "dtype")
    if a.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D sparse matrix, got shape {a.shape}")
    if a.shape[1] != n_cols:
        raise ValueError(f"{name}: expected {n_cols} columns, got shape {a.shape}")
    if a.shape[0] < 1:
        raise ValueError(f"{name}: expected at least one row, got shape {a.shape}")
    if fmt != "csr":
        a = a.tocsr()
    data, indices, indptr = a.data, a.indices, a.indptr
    _refuse_memmap_copy(name, data, dtype)
    index = indices.dtype if indices.dtype == indptr.dtype else None
    if index not in (np.dtype(np.int32), np.dtype(np.int64)):
        index = np.dtype(np.int64)
        for part in (indices, indptr):
            _refuse_memmap_copy(name, part, index)
    if indptr.shape != (a.shape[0] + 1,):
        raise ValueError(f"{name}: sparse indptr has {indptr.shape[0]} entries for "
                         f"{a.shape[0]} rows; expected {a.shape[0] + 1}")
    return _core.SparseRows(np.require(data, dtype, ("C", "A")),
                            np.require(indices, index, ("C", "A")),
                            np.require(indptr, index, ("C", "A")), n_cols, name)


def is_sparse(a: object) -> bool:
    """Whether ``a`` is a scipy sparse matrix or array."""
    return bool(sp.issparse(a))


def as_rows(name: str, a, dtype: np.dtype, n_cols: int) -> np.ndarray | _core.SparseRows:
    """``as_sparse_rows`` for a scipy sparse matrix or array, else ``as_matrix``."""
    if is_sparse(a):
        return as_sparse_rows(name, a, dtype, n_cols)
    return as_matrix(name, a, dtype, n_cols)


def as_matrix(name: str, a, dtype: np.dtype, n_cols: int) -> np.ndarray:
    """X-like input → C-contiguous, aligned (n, n_cols) array of `dtype`, n >= 1.

    Copies only when the dtype or the memory layout differs.  A ``np.memmap`` (e.g.
    ``np.load(path, mmap_mode="r")``) of this dtype, C-ordered, is used in place (a plain
    ndarray view, no copy); one that would need converting is refused with a ValueError.
    Finiteness is checked by the core inside the same call that uses the data.
    """
    if (type(a) is np.ndarray and a.dtype == dtype and a.ndim == 2
            and a.flags.c_contiguous and a.flags.aligned):
        arr = a
    else:
        _refuse_memmap_copy(name, a, dtype)
        arr = _numeric_array(name, a)
        if arr.ndim != 2:
            raise ValueError(
                f"{name}: expected a 2-D array (n_samples, {n_cols}), got shape {arr.shape}"
                + ("; use reshape(1, -1) for a single sample" if arr.ndim == 1 else ""))
        arr = np.require(arr, dtype=dtype, requirements=("C", "A"))
    if arr.shape[1] != n_cols:
        raise ValueError(f"{name}: expected {n_cols} columns, got shape {arr.shape}")
    if arr.shape[0] < 1:
        raise ValueError(f"{name}: expected at least one row, got shape {arr.shape}")
    return arr


def as_sample_weight(name: str, a, dtype: np.dtype, shape: tuple[int, ...],
                     some_positive: bool = True) -> np.ndarray:
    """Sample weights → C-contiguous array of `dtype` and exactly `shape`: finite, >= 0,
    and with `some_positive` (a fit's: a model whose every row weighs 0 has nothing to
    learn from) at least one > 0 in each row (the last axis: one model's weights)."""
    arr = _numeric_array(name, a)
    if arr.shape != shape:
        raise ValueError(f"{name}: expected shape {shape}, got {arr.shape}")
    arr = np.require(arr, dtype=dtype, requirements=("C", "A"))
    if not np.all(np.isfinite(arr)) or np.any(arr < 0):
        raise ValueError(f"{name}: expected finite weights >= 0")
    empty = np.flatnonzero(~np.any(arr.reshape(-1, shape[-1]) > 0, axis=1))
    if some_positive and empty.size:
        where = f"{name}[{empty[0]}]" if arr.ndim == 2 else name
        raise ValueError(f"{where}: expected at least one weight > 0, got all zero")
    return arr


def as_targets(a, loss: str, dtype: np.dtype, n: int, n_out: int):
    """Targets → (Y, labels): exactly one is an array, the other None.

    mse: Y is (n, n_out) of `dtype`; a 1-D (n,) Y is accepted when n_out == 1.
    softmax_cross_entropy: 1-D integer labels become int64 `labels` (range checked by the
    core); a 2-D (n, n_out) Y must hold rows of probabilities.
    """
    if loss == "softmax_cross_entropy" and type(a) is np.ndarray and a.dtype == np.int64 \
            and a.ndim == 1 and a.flags.c_contiguous and a.flags.aligned:
        if a.shape[0] != n:
            raise ValueError(f"Y: expected {n} labels to match X, got {a.shape[0]}")
        return None, a
    if (loss == "mse" and type(a) is np.ndarray and a.dtype == dtype and a.ndim == 2
            and a.flags.c_contiguous and a.flags.aligned and a.shape == (n, n_out)):
        return a, None
    # Float targets (mse, or probability rows) can be as large as X.  Integer labels are
    # converted to int64 regardless: at most 8 bytes a row.
    if isinstance(a, np.memmap) and (loss == "mse" or a.ndim == 2):
        _refuse_memmap_copy("Y", a, dtype)
    arr = _numeric_array("Y", a)
    if arr.ndim == 0 or arr.ndim > 2:
        raise ValueError(f"Y: expected a 1-D or 2-D array, got shape {arr.shape}")
    if arr.shape[0] != n:
        raise ValueError(f"Y: expected {n} rows to match X, got {arr.shape[0]}")
    if loss == "mse":
        if arr.ndim == 1:
            if n_out != 1:
                raise ValueError(
                    f"Y: expected shape ({n}, {n_out}) for {n_out} outputs, got {arr.shape}")
            arr = arr.reshape(n, 1)
        if arr.shape[1] != n_out:
            raise ValueError(f"Y: expected shape ({n}, {n_out}), got {arr.shape}")
        return np.require(arr, dtype=dtype, requirements=("C", "A")), None
    # softmax cross-entropy
    if arr.ndim == 1:
        if arr.dtype.kind == "b":
            raise TypeError("Y: expected integer class labels, got bool")
        if arr.dtype.kind == "f":
            if not np.all(np.isfinite(arr)):
                raise ValueError("Y: contains NaN or infinity")
            if np.any(arr != np.round(arr)):
                raise ValueError("Y: class labels must be integers, got non-integer values")
            if arr.size and (arr.min() < 0 or arr.max() >= n_out):
                raise ValueError(f"Y: class labels must be integers in [0, {n_out})")
        elif arr.dtype.kind == "u" and arr.size and arr.max() >= n_out:
            raise ValueError(f"Y: class labels must be integers in [0, {n_out})")
        return None, np.require(arr, dtype=np.int64, requirements=("C", "A"))
    if arr.shape[1] != n_out:
        raise ValueError(f"Y: expected ({n},) labels or ({n}, {n_out}) probabilities, "
                         f"got shape {arr.shape}")
    arr = np.require(arr, dtype=dtype, requirements=("C", "A"))
    if not np.all(np.isfinite(arr)):
        raise ValueError("Y: contains NaN or infinity")
    # The core's delta (P·Σy − Y)/n is exact for any row sums, but the loss is only a
    # cross-entropy for probability rows, so anything else is refused.
    tol = 1e-3 if dtype == np.float32 else 1e-8
    if np.any(arr < 0) or np.any(np.abs(arr.sum(axis=1) - 1) > tol * max(n_out, 1)):
        raise ValueError("Y: rows of a 2-D target must be probabilities "
                         "(non-negative, summing to 1)")
    return arr, None
