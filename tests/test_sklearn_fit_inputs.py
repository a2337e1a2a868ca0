"""The fit's input fast path (fastmlp/sklearn/_data.py, ``plain_fit_input``) against
scikit-learn's ``validate_data``, the oracle it stands in for.

For each input the fast path takes, validate_data must return the very same arrays and
leave the estimator with the same attributes; a fit through either path must then be the
same fit bit for bit (the same arrays reach the same core).  Every input it must refuse
(another type, dtype or shape, NaN or infinity) must go to validate_data, whose own
errors and conversions the user then gets.
"""
import warnings

import numpy as np
import pytest

pytest.importorskip("sklearn")
pd = pytest.importorskip("pandas")

from sklearn.utils.validation import validate_data  # noqa: E402

import fastmlp.sklearn._data as data  # noqa: E402
from fastmlp.sklearn import MLPClassifier, MLPRegressor  # noqa: E402

rng = np.random.default_rng(0)
X64 = rng.standard_normal((40, 5))
LABELS = rng.integers(0, 3, 40)
TAKEN = {
    "float64 C, int labels": (X64, LABELS),
    "float32, int8 labels": (X64.astype(np.float32), LABELS.astype(np.int8)),
    "Fortran order": (np.asfortranarray(X64), LABELS),
    "strided rows": (rng.standard_normal((80, 5))[::2], LABELS),
    "float targets": (X64, rng.standard_normal(40)),
    "2-D targets": (X64, rng.standard_normal((40, 2))),
    "column of labels": (X64, LABELS.reshape(-1, 1)),
}
REFUSED = {
    "list of rows": (X64.tolist(), LABELS),
    "DataFrame": (pd.DataFrame(X64), LABELS),
    "int X": (X64.astype(np.int64), LABELS),
    "float16 X": (X64.astype(np.float16), LABELS),
    "NaN in X": (np.where(X64 > 2, np.nan, X64), LABELS),
    "inf in y": (X64, np.where(LABELS > 1, np.inf, 0.0)),
    "string labels": (X64, np.array(list("abc"))[LABELS]),
    "bool labels": (X64, LABELS > 0),
    "1-D X": (X64[:, 0], LABELS),
    "no rows": (X64[:0], LABELS[:0]),
    "lengths differ": (X64, LABELS[:-1]),
    "list y": (X64, LABELS.tolist()),
}


@pytest.mark.parametrize("name", TAKEN)
def test_taken_inputs_are_what_validate_data_returns(name):
    X, y = TAKEN[name]
    fast, full = MLPClassifier(), MLPClassifier()
    fast.feature_names_in_ = full.feature_names_in_ = np.array(["a", "b", "c", "d", "e"],
                                                               dtype=object)
    Xf, yf = data.plain_fit_input(fast, X, y)
    Xs, ys = validate_data(full, X, y, accept_sparse=["csr", "csc"], multi_output=True,
                           dtype=(np.float64, np.float32), reset=True)
    assert Xf is X and yf is y
    assert Xs.dtype == Xf.dtype and np.array_equal(Xs, Xf)
    assert ys.dtype == yf.dtype and np.array_equal(ys, yf)
    assert vars(fast) == vars(full)          # n_features_in_ set, feature_names_in_ gone


@pytest.mark.parametrize("name", REFUSED)
def test_refused_inputs_go_to_validate_data(name):
    X, y = REFUSED[name]
    assert data.plain_fit_input(MLPClassifier(), X, y) is None


@pytest.mark.parametrize("kind", ["classifier", "regressor"])
def test_a_fit_through_the_fast_path_is_the_full_paths(kind, monkeypatch):
    X, y = TAKEN["float64 C, int labels"]
    if kind == "regressor":
        y = X @ rng.standard_normal(5)
    est = (MLPClassifier if kind == "classifier" else MLPRegressor)(
        hidden_layer_sizes=(7,), max_iter=20, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fast = est.fit(X, y)
        fast_theta, fast_curve = fast._theta.copy(), list(fast.loss_curve_)
        seen = []
        monkeypatch.setattr(data, "plain_fit_input",              # the full path only
                            lambda *a: seen.append(a) or None)
        full = est.fit(X, y)
    assert seen, "the full path was not taken"
    assert np.array_equal(full._theta, fast_theta) and full.loss_curve_ == fast_curve


def test_errors_are_scikit_learns():
    with pytest.raises(ValueError, match="Input X contains NaN"):
        MLPClassifier(max_iter=2).fit(*REFUSED["NaN in X"])
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        MLPClassifier(max_iter=2).fit(*REFUSED["lengths differ"])
    with pytest.raises(ValueError, match="Input y contains infinity"):
        MLPRegressor(max_iter=2).fit(*REFUSED["inf in y"])
