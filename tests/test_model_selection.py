"""fastmlp.model_selection's searches and the shared fit under them.

Oracles: each estimator's own ``fit`` (the shared fit must end bit for bit where it does:
the same steps on the same rows in the same order, so any difference is a bug, not
rounding), and scikit-learn's own ``GridSearchCV`` / ``RandomizedSearchCV`` over the same
estimator, whose ``cv_results_`` must be equal entry for entry (every key but the
timings, which are measurements) — they are the same fits scored by the same scorers.
float64 and float32 alike: exact equality, no tolerance.
"""
import re
import warnings

import numpy as np
import pytest

pytest.importorskip("sklearn")

import scipy.sparse as sp  # noqa: E402
import sklearn.model_selection as skms  # noqa: E402
from sklearn.base import clone  # noqa: E402
from sklearn.datasets import load_diabetes, load_iris, make_classification  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402

import fastmlp  # noqa: E402
from fastmlp.model_selection import GridSearchCV  # noqa: E402
from fastmlp.sklearn._shared_fit import batch_key, fit_together  # noqa: E402

FITTED = ("coefs_", "intercepts_", "loss_curve_", "n_iter_", "t_", "loss_",
          "best_loss_", "validation_scores_", "best_validation_score_",
          "validation_loss_curve_")


def _iris(dtype=np.float64):
    X, y = load_iris(return_X_y=True)
    return X.astype(dtype), y


def _diabetes():
    X, y = load_diabetes(return_X_y=True)
    return (X - X.mean(0)) / X.std(0), (y - y.mean()) / y.std()


def _same_fit(shared, alone, what):
    for name in FITTED:
        a, b = getattr(shared, name, None), getattr(alone, name, None)
        if isinstance(b, list) and b and isinstance(b[0], np.ndarray):
            assert len(a) == len(b) and all(np.array_equal(u, v) and u.dtype == v.dtype
                                            for u, v in zip(a, b)), f"{what}: {name}"
        else:
            assert a == b or (a is None and b is None), f"{what}: {name} {a} != {b}"


def _fit_alone_and_together(base, grid, X, y):
    ests = [clone(base).set_params(**p) for p in grid]
    assert len({batch_key(e) for e in ests}) == 1, "the grid must share its batches"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        alone = [clone(e).fit(X, y) for e in ests]
        errors = fit_together(ests, X, y)
    assert errors == [None] * len(ests)
    for p, shared, own in zip(grid, ests, alone):
        _same_fit(shared, own, p)
        np.testing.assert_array_equal(shared.predict(X), own.predict(X))


# Everything the batch order does not depend on, free per estimator.
ADAM_GRID = [dict(alpha=a, learning_rate_init=lr, activation=act, max_iter=mi,
                  n_iter_no_change=nc, tol=tol, beta_1=b1)
             for a, lr, act, mi, nc, tol, b1 in [
                 (1e-4, 1e-3, "relu", 40, 10, 1e-4, 0.9),
                 (1e-2, 1e-2, "tanh", 25, 3, 1e-2, 0.8),
                 (1e-1, 3e-2, "logistic", 60, 2, 1e-1, 0.9),
                 (0.0, 1e-3, "gelu", 5, 10, 1e-4, 0.5),
                 (1e-3, 1e-1, ["silu", "elu"], 30, 1, 0.0, 0.9)]]
SGD_GRID = [dict(learning_rate=lr, momentum=m, nesterovs_momentum=nest,
                 learning_rate_init=eta, power_t=pt, max_iter=mi, n_iter_no_change=nc)
            for lr, m, nest, eta, pt, mi, nc in [
                ("constant", 0.0, False, 1e-2, 0.5, 30, 10),
                ("invscaling", 0.9, True, 5e-2, 0.25, 30, 10),
                ("adaptive", 0.5, False, 1e-2, 0.5, 60, 1),
                ("adaptive", 0.9, True, 1e-1, 0.5, 80, 2)]]


@pytest.mark.parametrize("solver, grid", [("adam", ADAM_GRID), ("sgd", SGD_GRID)])
@pytest.mark.parametrize("early_stopping", [False, True])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_classifiers_fitted_together_equal_their_own_fits(solver, grid, early_stopping,
                                                          dtype):
    X, y = _iris(dtype)
    base = fastmlp.MLPClassifier(hidden_layer_sizes=(9, 5), solver=solver, random_state=3,
                                 batch_size=32, early_stopping=early_stopping)
    _fit_alone_and_together(base, grid, X, y)


def test_regressors_dropout_class_weight_and_sparse_fitted_together():
    X, y = _diabetes()
    grid = [dict(alpha=a, learning_rate_init=lr, dropout=d)
            for a, lr, d in [(1e-4, 1e-3, 0.1), (1e-2, 1e-2, 0.3), (1e-1, 3e-3, [0.2])]]
    _fit_alone_and_together(fastmlp.MLPRegressor(hidden_layer_sizes=(12,), random_state=1,
                                                 max_iter=20), grid, X, y)
    _fit_alone_and_together(fastmlp.MLPRegressor(loss="poisson", hidden_layer_sizes=(6,),
                                                 random_state=1, max_iter=15, shuffle=False),
                            grid[:2], X, np.abs(y))
    Xc, yc = make_classification(120, 30, n_informative=6, random_state=0)
    Xs = sp.random(120, 30, density=0.2, format="csr", random_state=0) + sp.csr_matrix(Xc)
    _fit_alone_and_together(fastmlp.MLPClassifier(hidden_layer_sizes=(8,), random_state=2,
                                                  max_iter=15, class_weight="balanced"),
                            [dict(alpha=1e-4), dict(alpha=1.0, activation="tanh")], Xs, yc)


@pytest.mark.parametrize("threads", [2, 3])
def test_fitting_together_on_several_threads_changes_nothing(threads, monkeypatch):
    # Enough work for every group to get a thread of its own: each group draws its own
    # batch order, which must be every other group's.
    import fastmlp._workers as workers
    monkeypatch.setattr(workers, "GROUP_FLOPS", 1.0)
    before = fastmlp.get_num_threads()
    fastmlp.set_num_threads(threads)
    try:
        assert len(workers.split([1.0] * len(SGD_GRID))) == threads
        X, y = _iris()
        _fit_alone_and_together(fastmlp.MLPClassifier(hidden_layer_sizes=(7,), solver="sgd",
                                                      random_state=4, batch_size=20,
                                                      early_stopping=True), SGD_GRID, X, y)
    finally:
        fastmlp.set_num_threads(before)


def test_batch_key_separates_what_changes_the_batches():
    base = fastmlp.MLPClassifier(random_state=0)
    key = batch_key(base)
    assert key == batch_key(base.set_params(alpha=1.0, activation="tanh", max_iter=3,
                                            learning_rate_init=0.1, n_iter_no_change=2))
    assert key == batch_key(clone(base).set_params(hidden_layer_sizes=[100]))
    for change in [dict(random_state=1), dict(shuffle=False), dict(batch_size=10),
                   dict(hidden_layer_sizes=(50,)), dict(early_stopping=True),
                   dict(dropout=0.1), dict(class_weight="balanced")]:
        assert batch_key(clone(base).set_params(**change)) != key, change
    a = clone(base).set_params(early_stopping=True)
    assert batch_key(a) != batch_key(clone(a).set_params(validation_fraction=0.2))
    for alone in [dict(random_state=None), dict(random_state=np.random.RandomState(0)),
                  dict(solver="lbfgs"), dict(verbose=True), dict(warm_start=True),
                  dict(hidden_layer_sizes=(0,)), dict(alpha=-1.0),
                  dict(activation=["relu", "tanh"])]:
        assert batch_key(clone(base).set_params(**alone)) is None, alone
    assert batch_key(LogisticRegression()) is None
    assert batch_key(fastmlp.MLPRegressor(random_state=0)) != key


def test_an_estimator_that_fails_leaves_the_others_fitting():
    X, y = _iris()
    base = fastmlp.MLPClassifier(hidden_layer_sizes=(6,), random_state=0, max_iter=10,
                                 batch_size=16, solver="sgd", learning_rate_init=1e-3)
    ests = [clone(base), clone(base).set_params(learning_rate_init=1e10),
            clone(base).set_params(alpha=1e-2)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        errors = fit_together(ests, X * 1e6, y)
        alone = [clone(e).fit(X * 1e6, y) for e in (ests[0], ests[2])]
    assert errors[0] is None and errors[2] is None
    assert isinstance(errors[1], fastmlp.sklearn.SolverDivergedError)
    _same_fit(ests[0], alone[0], "first")
    _same_fit(ests[2], alone[1], "third")


def _same_search(ours, theirs):
    assert set(ours.cv_results_) == set(theirs.cv_results_)
    for key, value in theirs.cv_results_.items():
        if key.endswith("_time"):
            assert np.all(ours.cv_results_[key] >= 0), key
        elif key == "params":
            assert ours.cv_results_[key] == value
        else:
            np.testing.assert_array_equal(ours.cv_results_[key], value, err_msg=key)
    for name in ("best_index_", "best_score_", "best_params_", "n_splits_", "multimetric_"):
        if hasattr(theirs, name):
            assert getattr(ours, name) == getattr(theirs, name), name
        else:
            assert not hasattr(ours, name), name
    if hasattr(theirs, "best_estimator_"):
        _same_fit(ours.best_estimator_, theirs.best_estimator_, "best_estimator_")


def _both(search, *args, X, y, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ours = getattr(fastmlp.model_selection, search.__name__)(*args, **kw).fit(X, y)
        theirs = search(*args, **kw).fit(X, y)
    _same_search(ours, theirs)
    return ours


GRID = {"alpha": [1e-4, 1e-2], "learning_rate_init": [1e-3, 1e-2],
        "hidden_layer_sizes": [(8,), (12,)], "activation": ["relu", "tanh"]}


def test_grid_search_equals_scikit_learns_classifier():
    X, y = _iris()
    ours = _both(skms.GridSearchCV, fastmlp.MLPClassifier(random_state=0, max_iter=30),
                 GRID, X=X, y=y, cv=3, return_train_score=True)
    assert ours.best_estimator_.predict(X).shape == (150,)


def test_grid_search_equals_scikit_learns_regressor_with_scorers_and_n_jobs():
    X, y = _diabetes()
    grid = {"alpha": [1e-4, 1e-1], "learning_rate_init": [1e-3, 1e-2],
            "early_stopping": [False, True]}
    base = fastmlp.MLPRegressor(hidden_layer_sizes=(10,), random_state=0, max_iter=25)
    _both(skms.GridSearchCV, base, grid, X=X, y=y, cv=skms.KFold(3, shuffle=True,
                                                                  random_state=0),
          scoring="neg_mean_squared_error", n_jobs=2)
    _both(skms.GridSearchCV, base, grid, X=X, y=y, cv=3, refit="r2",
          scoring={"r2": "r2", "mae": "neg_mean_absolute_error"}, return_train_score=True)
    _both(skms.GridSearchCV, base, grid, X=X, y=y, cv=2, refit=False)


def test_sample_weights_weigh_every_candidate_as_in_scikit_learns_search(monkeypatch):
    from fastmlp.model_selection import _tasks
    groups = []
    monkeypatch.setattr(_tasks, "fit_together",
                        lambda ests, *a: groups.append(len(ests)) or fit_together(ests, *a))
    X, y = _iris()
    w = np.random.default_rng(0).uniform(0.1, 2.0, len(y))
    base = fastmlp.MLPClassifier(hidden_layer_sizes=(6,), random_state=0, max_iter=15)
    grid = {"alpha": [1e-4, 1e-1], "learning_rate_init": [1e-3, 1e-2],
            "early_stopping": [False, True]}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ours = GridSearchCV(base, grid, cv=3, return_train_score=True).fit(
            X, y, sample_weight=w)
        theirs = skms.GridSearchCV(base, grid, cv=3, return_train_score=True).fit(
            X, y, sample_weight=w)
        unweighted = GridSearchCV(base, grid, cv=3).fit(X, y)
    _same_search(ours, theirs)
    assert sum(groups) == 2 * 8 * 3         # the weighted and the unweighted search, grouped
    assert not np.array_equal(ours.cv_results_["mean_test_score"],
                              unweighted.cv_results_["mean_test_score"])


def test_randomized_search_equals_scikit_learns():
    from scipy.stats import loguniform
    X, y = _iris()
    dists = {"alpha": loguniform(1e-5, 1e-1), "learning_rate_init": loguniform(1e-4, 1e-1),
             "hidden_layer_sizes": [(6,), (10,)]}
    _both(skms.RandomizedSearchCV, fastmlp.MLPClassifier(random_state=1, max_iter=20),
          dists, X=X, y=y, n_iter=8, cv=3, random_state=0)


def test_candidates_that_cannot_share_run_alone():
    X, y = _iris()
    grid = [{"solver": ["lbfgs"], "max_iter": [15]},
            {"random_state": [None], "max_iter": [5]},
            {"alpha": [1e-4, 1e-3], "max_iter": [10]},
            {"random_state": [7], "max_iter": [10]}]
    base = fastmlp.MLPClassifier(hidden_layer_sizes=(5,), random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ours = GridSearchCV(base, grid, cv=3).fit(X, y)
        theirs = skms.GridSearchCV(base, grid, cv=3).fit(X, y)
    shared = [i for i, p in enumerate(theirs.cv_results_["params"])
              if p.get("random_state", 0) is not None]
    # random_state=None draws other weights in each fit: only its score is not comparable
    for key in ("mean_test_score", "split0_test_score"):
        np.testing.assert_array_equal(ours.cv_results_[key][shared],
                                      theirs.cv_results_[key][shared])
    assert ours.cv_results_["params"] == theirs.cv_results_["params"]


def test_a_search_over_another_estimator_is_scikit_learns():
    X, y = _iris()
    _both(skms.GridSearchCV, LogisticRegression(max_iter=200), {"C": [0.1, 1.0]},
          X=X, y=y, cv=3)


def test_failing_candidates_get_error_score_or_raise():
    X, y = _iris()
    X = X * 1e6
    grid = {"learning_rate_init": [1e-3, 1e10], "alpha": [1e-4, 1e-2]}
    base = fastmlp.MLPClassifier(hidden_layer_sizes=(6,), random_state=0, max_iter=5,
                                 batch_size=16, solver="sgd")
    with pytest.warns(Warning):
        ours = GridSearchCV(base, grid, cv=3, error_score=-1.0).fit(X, y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = skms.GridSearchCV(base, grid, cv=3, error_score=-1.0).fit(X, y)
    _same_search(ours, theirs)
    failed = np.array([p["learning_rate_init"] == 1e10 for p in ours.cv_results_["params"]])
    assert np.all(ours.cv_results_["mean_test_score"][failed] == -1.0)
    assert np.all(ours.cv_results_["mean_test_score"][~failed] > 0)
    with pytest.raises(fastmlp.sklearn.SolverDivergedError):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            GridSearchCV(base, grid, cv=3, error_score="raise").fit(X, y)


def test_unknown_parameters_are_scikit_learns_errors():
    X, y = _iris()
    base = fastmlp.MLPClassifier(max_iter=5, random_state=0)
    with pytest.raises(ValueError) as theirs:
        skms.GridSearchCV(base, {"alphaa": [1.0]}, cv=2).fit(X, y)
    with pytest.raises(ValueError, match=re.escape(str(theirs.value))):
        GridSearchCV(base, {"alphaa": [1.0]}, cv=2).fit(X, y)
    with pytest.raises(ValueError, match="cv"):
        GridSearchCV(base, {"alpha": [1.0]}, cv="five").fit(X, y)


def test_verbose_prints_the_fits():
    X, y = _iris()
    base = fastmlp.MLPClassifier(hidden_layer_sizes=(4,), max_iter=3, random_state=0)
    import contextlib
    import io
    out = io.StringIO()
    with warnings.catch_warnings(), contextlib.redirect_stdout(out):
        warnings.simplefilter("ignore", ConvergenceWarning)
        GridSearchCV(base, {"alpha": [1e-4, 1e-2]}, cv=2, verbose=3).fit(X, y)
    lines = out.getvalue().splitlines()
    assert lines[0] == "Fitting 2 folds for each of 2 candidates, totalling 4 fits"
    ends = [line for line in lines if "] END " in line]
    assert len(ends) == 4 and all("score=" in line and "alpha=" in line for line in ends)


class _Epochs:
    """A passive callback counting the epoch tasks it is told of."""

    def __init__(self):
        self.epochs = 0

    def setup(self, estimator, context):
        pass

    def teardown(self, estimator, context):
        pass

    def on_fit_task_begin(self, estimator, context, **kw):
        pass

    def on_fit_task_end(self, estimator, context, **kw):
        self.epochs += context.task_name == "epoch"
        return False


def test_an_estimator_with_callbacks_is_searched_by_scikit_learns_fit(monkeypatch):
    pytest.importorskip("sklearn.callback")
    from fastmlp.model_selection import _search
    monkeypatch.setattr(_search, "search_tasks", None)   # not to be reached
    X, y = _iris()
    seen = _Epochs()
    base = fastmlp.MLPClassifier(hidden_layer_sizes=(4,), max_iter=3, random_state=0)
    base.set_callbacks(seen)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ours = GridSearchCV(base, {"alpha": [1e-4, 1e-2]}, cv=2).fit(X, y)
        theirs = skms.GridSearchCV(base, {"alpha": [1e-4, 1e-2]}, cv=2).fit(X, y)
    _same_search(ours, theirs)
    assert seen.epochs > 0
