"""Validated data as the core takes it: rows of one dtype, sample weights."""
import numbers

import numpy as np
import scipy.sparse as sp
from sklearn.utils import check_array

from fastmlp import _core, _validation


def rows(X, dtype):
    """What the core takes for validated X: a C-contiguous ndarray of ``dtype`` (no copy
    when X already is one), or for sparse X its CSR rows of ``dtype``
    (``_core.SparseRows``: the stored values only, never n_samples × n_features)."""
    if isinstance(X, _core.SparseRows):
        return X if X.dtype == dtype else _core.SparseRows(
            X.data.astype(dtype), X.indices, X.indptr, X.n_cols)
    if sp.issparse(X):
        return _validation.as_sparse_rows("X", X, dtype, X.shape[1])
    return np.ascontiguousarray(X, dtype=dtype)


def check_sample_weight(sample_weight, X):
    """scikit-learn's rules: a scalar or a finite 1-D (n_samples,) array, not all zero."""
    n = X.shape[0]
    if isinstance(sample_weight, numbers.Number):
        sample_weight = np.full(n, sample_weight, dtype=np.float64)
    else:
        sample_weight = check_array(sample_weight, accept_sparse=False, ensure_2d=False,
                                    dtype=[np.float64, np.float32], order="C",
                                    input_name="sample_weight")
        if sample_weight.ndim != 1:
            raise ValueError(
                f"Sample weights must be 1D array or scalar, got {sample_weight.ndim}D array. "
                f"Expected either a scalar value or a 1D array of length {n}.")
        if sample_weight.shape != (n,):
            raise ValueError(f"sample_weight.shape == {sample_weight.shape}, expected {(n,)}!")
    if np.all(sample_weight == 0):
        raise ValueError("Sample weights must contain at least one non-zero number.")
    return sample_weight
