"""The estimators' prediction fast path (fastmlp/sklearn/_predict.py) against the full path.

The full path is scikit-learn's validation followed by the forward pass; it is reached
here by giving X as a list of rows, which the fast path never takes.  Both run the same
compiled forward pass on the same float64 values, so their answers must be equal bit for
bit (assert_array_equal), and a row predicted alone must equal its row of the batch: the
forward pass computes each row's output from that row only, in the same order of
operations whatever the batch size... except that BLAS may order a product's sums
differently for one row (gemv) than for many (gemm), hence rtol 1e-12 there.
"""
import pickle
import threading
import warnings

import numpy as np
import pytest

pytest.importorskip("sklearn")
pd = pytest.importorskip("pandas")

import fastmlp.sklearn._base as base  # noqa: E402
from fastmlp.sklearn import MLPClassifier, MLPRegressor  # noqa: E402

N, D = 60, 5
COLUMNS = [f"f{i}" for i in range(D)]


def _data(seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(N, D))
    return X, rng


def _fit(kind, frame=False):
    X, rng = _data()
    Xin = pd.DataFrame(X, columns=COLUMNS) if frame else X
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if kind == "regressor":
            y = X @ rng.normal(size=D)
            return MLPRegressor(hidden_layer_sizes=(8, 4), max_iter=15, random_state=0).fit(Xin, y), X
        if kind == "multiregressor":
            return MLPRegressor(hidden_layer_sizes=(8,), max_iter=15, random_state=0).fit(Xin, X[:, :2]), X
        if kind == "binary":
            y = np.where(X[:, 0] > 0, "yes", "no")
        elif kind == "multiclass":
            y = np.digitize(X[:, 0], [-0.5, 0.5])
        else:  # multilabel
            y = np.stack([X[:, 0] > 0, X[:, 1] > 0], axis=1).astype(int)
        return MLPClassifier((8, 4), max_iter=15, random_state=0).fit(Xin, y), X


KINDS = ["binary", "multiclass", "multilabel", "regressor", "multiregressor"]


def _methods(est):
    if isinstance(est, MLPClassifier):
        return ["predict", "predict_proba", "predict_log_proba"]
    return ["predict"]


@pytest.mark.parametrize("kind", KINDS)
def test_fast_path_equals_full_path(kind):
    est, X = _fit(kind)
    for method in _methods(est):
        fast, full = getattr(est, method)(X), getattr(est, method)(X.tolist())
        np.testing.assert_array_equal(fast, full)
        assert fast.shape == full.shape and fast.dtype == full.dtype


@pytest.mark.parametrize("kind", KINDS)
def test_fast_path_equals_full_path_for_frames(kind):
    est, X = _fit(kind, frame=True)
    frame = pd.DataFrame(X, columns=COLUMNS)
    # the same values in an object-dtype frame: the full path converts them
    full_frame = pd.DataFrame(X.tolist(), columns=COLUMNS, dtype=object)
    for method in _methods(est):
        np.testing.assert_array_equal(getattr(est, method)(frame),
                                      getattr(est, method)(full_frame))


def test_fast_path_is_taken_for_the_common_cases(monkeypatch):
    est, X = _fit("multiclass")
    est_frame, _ = _fit("multiclass", frame=True)
    expected = est.predict_proba(X[:3])
    expected_frame = est_frame.predict_proba(pd.DataFrame(X[:3], columns=COLUMNS))

    def no_validation(*args, **kwargs):
        raise AssertionError("the full path was taken")

    monkeypatch.setattr(base, "validate_data", no_validation)
    np.testing.assert_array_equal(est.predict_proba(X[:3]), expected)
    np.testing.assert_array_equal(
        est_frame.predict_proba(pd.DataFrame(X[:3], columns=COLUMNS)), expected_frame)
    with pytest.raises(AssertionError, match="full path"):
        est.predict_proba(X[:3].tolist())
    with pytest.raises(AssertionError, match="full path"):
        est.predict_proba(X[:3].astype(np.float32))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("frame", [False, True])
def test_row_by_row_equals_the_batch(kind, frame):
    est, X = _fit(kind, frame=frame)
    for method in _methods(est):
        batch = getattr(est, method)(pd.DataFrame(X, columns=COLUMNS) if frame else X)
        rows = [getattr(est, method)(pd.DataFrame(X[i:i + 1], columns=COLUMNS) if frame
                                     else X[i:i + 1]) for i in range(N)]
        one = np.concatenate(rows)
        if one.dtype.kind == "f":
            np.testing.assert_allclose(one, batch, rtol=1e-12, atol=1e-15)
        else:
            np.testing.assert_array_equal(one, batch)


def _outcome(call):
    """(exception type, message) or ('ok', result) of call(), with warnings as errors."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            return "ok", call()
        except Exception as exc:  # noqa: BLE001 - the outcome is what is compared
            return type(exc), str(exc)


def test_same_errors_and_warnings_on_both_paths():
    est, X = _fit("binary")
    est_frame, _ = _fit("binary", frame=True)
    nan, inf = X[:2].copy(), X[:2].copy()
    nan[0, 1], inf[1, 2] = np.nan, np.inf
    cases = [
        (est, nan), (est, inf), (est, X[:2, :3]), (est, np.zeros((0, D))),
        (est, pd.DataFrame(X[:2], columns=COLUMNS)),                 # names it was not fitted with
        (est_frame, X[:2]),                                          # no names, fitted with them
        (est_frame, pd.DataFrame(X[:2], columns=COLUMNS[::-1])),     # names out of order
        (est_frame, pd.DataFrame(X[:2], columns=[c.upper() for c in COLUMNS])),
        (est_frame, pd.DataFrame(nan, columns=COLUMNS)),
    ]
    for model, bad in cases:
        fast = _outcome(lambda: model.predict_proba(bad))
        as_list = bad.values.tolist() if isinstance(bad, pd.DataFrame) else bad.tolist()
        if isinstance(bad, pd.DataFrame):   # an object-dtype frame takes the full path
            full = _outcome(lambda: model.predict_proba(
                pd.DataFrame(as_list, columns=bad.columns, dtype=object)))
        else:
            full = _outcome(lambda: model.predict_proba(as_list if len(as_list) else bad))
        assert fast[0] != "ok", (bad, fast)          # every case is refused or warned about
        assert fast[0] == full[0] and fast[1] == full[1], (fast, full)


def test_not_fitted_is_scikit_learns_error():
    from sklearn.exceptions import NotFittedError
    with pytest.raises(NotFittedError):
        MLPClassifier().predict(np.zeros((1, 3)))


def test_a_changed_model_is_predicted_as_it_is_now():
    est, X = _fit("multiclass")
    before = est.predict_proba(X)
    est.coefs_[0] = est.coefs_[0] * 2.0            # one array of the list replaced
    doubled = est.predict_proba(X)
    assert not np.array_equal(doubled, before)
    np.testing.assert_array_equal(doubled, est.predict_proba(X.tolist()))
    est.coefs_ = [c.copy() for c in est.coefs_]    # the list replaced
    np.testing.assert_array_equal(est.predict_proba(X), doubled)
    est.set_params(activation="tanh")
    tanh = est.predict_proba(X)
    assert not np.array_equal(tanh, doubled)
    np.testing.assert_array_equal(tanh, est.predict_proba(X.tolist()))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.set_params(max_iter=3).fit(X[:, :3], np.digitize(X[:, 0], [0.0]))
    assert est.predict_proba(X[:, :3]).shape == (N, 2)


def test_pickle_after_prediction():
    est, X = _fit("binary")
    expected = est.predict_proba(X)
    again = pickle.loads(pickle.dumps(est))
    assert again.__dict__.keys() == est.__dict__.keys()
    np.testing.assert_array_equal(again.predict_proba(X), expected)


def test_threads_predict_concurrently():
    est, X = _fit("multiclass")
    expected = [est.predict_proba(X[i:i + 1]) for i in range(N)]
    failures = []

    def work():
        for _ in range(20):
            for i in range(N):
                if not np.array_equal(est.predict_proba(X[i:i + 1]), expected[i]):
                    failures.append(i)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []

