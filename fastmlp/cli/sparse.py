"""Sparse DATA for the ``fastmlp`` command: a scipy sparse matrix saved by
``scipy.sparse.save_npz``, or svmlight/libsvm text (``label index:value ...`` a line).

Such data goes to the network as CSR rows, as it is: the first layer then costs the stored
values, not rows × columns.  The per-column preprocessing of tables (standardising,
one-hot encoding, imputing) does not apply: centring a column would fill in every zero,
a sparse file has no text columns, and an entry it leaves out is a zero, not a missing
value.

Column j of the network is index j of the file.  svmlight files are read with their
indices as written (``zero_based=True``): a file numbered from 1, as libsvm's are, keeps
an input 0 that no row uses, rather than having its numbering guessed from whether an
index 0 occurs (which could differ between the training and the prediction file).

Labels: an svmlight file carries its own; a .npz matrix has none, so ``--labels FILE``
gives them (.npy, or text with one label per line).  Reading svmlight needs
scikit-learn's parser (``pip install "fastmlp[sklearn]"``).
"""
from __future__ import annotations

import argparse
import os
import zipfile
from typing import Any

import numpy as np
import scipy.sparse as sp

SVMLIGHT = (".svm", ".svmlight", ".libsvm", ".txt")
# The arrays scipy.sparse.save_npz writes whatever the format (csr, csc, coo, ...).
_SAVE_NPZ_KEYS = frozenset({"format", "shape", "data"})
SPARSE_FORMATS = ("svmlight", "sparse-npz")
_INSTALL = 'pip install "fastmlp[sklearn]" (or scikit-learn)'


def sparse_kind(path: str) -> str | None:
    """'svmlight' or 'sparse-npz' if DATA at ``path`` is sparse, else None (a table or a
    dense array, read by fastmlp.cli.data)."""
    ext = os.path.splitext(path)[1].lower()
    if ext in SVMLIGHT:
        return "svmlight"
    if ext == ".npz" and os.path.isfile(path):
        try:
            with zipfile.ZipFile(path) as z:
                names = {os.path.splitext(name)[0] for name in z.namelist()}
        except (zipfile.BadZipFile, OSError):
            return None              # fastmlp.cli.data reports the damaged file
        if _SAVE_NPZ_KEYS <= names:
            return "sparse-npz"
    return None


def _read_svmlight(path: str, n_features: int | None) -> tuple[Any, np.ndarray]:
    try:
        from sklearn.datasets import load_svmlight_file
    except ImportError:
        raise ImportError(f"{path}: reading svmlight/libsvm files needs scikit-learn: "
                          f"{_INSTALL}") from None
    try:
        X, y = load_svmlight_file(path, n_features=n_features, dtype=np.float64,
                                  zero_based=True)
    except OSError:
        raise                                   # missing file, permissions: already clear
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: not a readable svmlight/libsvm file ({exc})") from None
    return X, y


def _read_sparse_npz(path: str) -> Any:
    try:
        X = sp.load_npz(path)
    except OSError:
        raise
    except (ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        raise ValueError(f"{path}: not a readable scipy.sparse.save_npz file ({exc})") from None
    if X.ndim != 2 or X.dtype.kind not in "biuf":
        raise ValueError(f"{path}: expected a 2-D sparse matrix of numbers, got "
                         f"{X.dtype} of shape {X.shape}")
    return X


def read_labels(path: str, n: int, what: str) -> np.ndarray:
    """Labels from ``path`` for ``n`` rows: a .npy array (n,) or (n, k), else text with
    one label per line (blank lines skipped)."""
    if path.lower().endswith(".npy"):
        try:
            y = np.load(path, allow_pickle=False)
        except OSError:
            raise
        except (ValueError, EOFError) as exc:
            raise ValueError(f"{what}: {path} is not a readable .npy file ({exc})") from None
        if not isinstance(y, np.ndarray):
            raise ValueError(f"{what}: {path} is not a .npy file")
    else:
        try:
            with open(path, encoding="utf-8-sig") as f:
                y = np.array([line.strip() for line in f if line.strip()], dtype=str)
        except UnicodeDecodeError as exc:
            raise ValueError(f"{what}: {path} is not a text file ({exc})") from None
    if y.ndim not in (1, 2) or len(y) != n:
        raise ValueError(f"{what}: {path} holds {len(y) if y.ndim else 0} labels (shape "
                         f"{y.shape}), but the data has {n} rows")
    labels: np.ndarray = y
    return labels


def load_sparse(path: str, kind: str, labels: str | None, *, n_features: int | None = None,
                need_labels: bool = True) -> tuple[sp.csr_matrix, np.ndarray | None]:
    """(X as float64 CSR, raw labels or None) from sparse DATA of ``kind``.

    ``n_features``: the width the model takes (predict): a file with a higher index, or
    a matrix of another width, is an error.  ``labels``: a --labels file, for a .npz
    matrix (for an svmlight file, whose lines carry their labels, it is refused).
    """
    if kind == "svmlight":
        if labels is not None:
            raise ValueError(f"--labels: {path} is an svmlight/libsvm file, whose lines "
                             "carry their labels")
        X, y = _read_svmlight(path, n_features)
    else:
        X = _read_sparse_npz(path)
        y = None if labels is None else read_labels(labels, X.shape[0], "--labels")
        if y is None and need_labels:
            raise ValueError(f"--labels: {path} is a scipy.sparse.save_npz matrix, which "
                             "holds no labels; give them with --labels FILE (.npy, or text "
                             "with one label per line)")
        if n_features is not None and X.shape[1] != n_features:
            raise ValueError(f"{path}: {X.shape[1]} feature columns, but the model takes "
                             f"{n_features}")
    if X.shape[0] < 1 or X.shape[1] < 1:
        raise ValueError(f"{path}: expected at least one row and one column, got shape "
                         f"{X.shape}")
    X = sp.csr_matrix(X, dtype=np.float64)
    if not np.all(np.isfinite(X.data)):
        row = int(np.searchsorted(X.indptr, np.flatnonzero(~np.isfinite(X.data))[0],
                                  side="right")) - 1
        raise ValueError(f"{path}, row {row + 1}: a stored value is NaN or infinite "
                         "(sparse data has no missing values: leave the entry out for 0)")
    return X, y


def refuse_table_options(args: argparse.Namespace, path: str) -> None:
    """The options of table preprocessing that cannot apply to sparse DATA, refused."""
    options = [("--target", args.target is not None,
                "the labels come from the svmlight file or from --labels"),
               ("--categorical", bool(args.categorical), "sparse data has no text columns"),
               ("--impute", args.impute is not None,
                "an entry a sparse file leaves out is 0, not a missing value")]
    for option, given, why in options:
        if given:
            raise ValueError(f"{option}: does not apply to sparse DATA {path} ({why})")
