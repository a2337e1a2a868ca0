"""Validated data as the core takes it: rows of one dtype, sample weights; the fit's
inputs validated at their cost when they are plain arrays."""
import numbers

import numpy as np
import scipy.sparse as sp
import sklearn
from sklearn.utils import check_array
from sklearn.utils.validation import validate_data

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


_FLOAT_X = (np.dtype(np.float64), np.dtype(np.float32))


def plain_fit_input(est, X, y):
    """(X, y) as ``validate_data(est, X, y, accept_sparse=["csr", "csc"],
    multi_output=True, dtype=(np.float64, np.float32), reset=True)`` returns them, for
    the case where it could only accept them unchanged: X a finite (n, d) float64 or
    float32 ndarray, y an (n,) or (n, k) ndarray of integers or finite floats (n, d, k
    >= 1).  Then it sets what validate_data sets (``n_features_in_``, and removes
    ``feature_names_in_``: X has no column names) at a fraction of its cost (scikit-learn's
    validation looks for DataFrames of several libraries on every call).  Anything else
    returns None, and the caller's validate_data gives scikit-learn's own outcome."""
    if (type(X) is not np.ndarray or type(y) is not np.ndarray or X.ndim != 2
            or X.dtype not in _FLOAT_X or y.ndim not in (1, 2) or y.dtype.kind not in "iuf"
            or X.shape[0] < 1 or X.shape[1] < 1 or y.shape[0] != X.shape[0]
            or (y.ndim == 2 and y.shape[1] < 1) or sklearn.get_config()["array_api_dispatch"]):
        return None
    # NaN or infinity: scikit-learn's check names what it found (or, with assume_finite,
    # lets it through), so those cases take its path.
    if not (np.isfinite(X).all() and (y.dtype.kind != "f" or np.isfinite(y).all())):
        return None
    est.n_features_in_ = X.shape[1]
    if hasattr(est, "feature_names_in_"):
        del est.feature_names_in_
    return X, y


def fit_input(est, X, y, reset, **checks):
    """The fit's X and y validated: ``validate_data(est, X, y, accept_sparse=["csr",
    "csc"], multi_output=True, dtype=(np.float64, np.float32), reset=reset, **checks)``,
    at ``plain_fit_input``'s cost where that takes them (a first fit, reset=True)."""
    plain = plain_fit_input(est, X, y) if reset else None
    if plain is not None:
        return plain
    return validate_data(est, X, y, accept_sparse=["csr", "csc"], multi_output=True,
                         dtype=(np.float64, np.float32), reset=reset, **checks)
