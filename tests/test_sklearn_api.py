"""fastmlp.MLPClassifier / MLPRegressor as scikit-learn estimators.

scikit-learn's conformance suite on both, then the API surface against scikit-learn's own
MLPs: signatures and defaults, tags, pickling, clone, Pipeline and GridSearchCV, warnings,
errors, verbose output, the optional import, and fastmlp's divergence handling.
"""
import copy
import inspect
import io
import pickle
import warnings
from contextlib import redirect_stdout

import numpy as np
import pytest

pytest.importorskip("sklearn")

from numpy.testing import assert_allclose, assert_array_equal  # noqa: E402
from sklearn import neural_network as sknn  # noqa: E402
from sklearn.base import clone  # noqa: E402
from sklearn.datasets import make_classification, make_regression  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.model_selection import GridSearchCV  # noqa: E402
from sklearn.pipeline import Pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.utils.estimator_checks import estimator_checks_generator  # noqa: E402

import fastmlp  # noqa: E402
import fastmlp.sklearn as fsk  # noqa: E402

KINDS = ["MLPClassifier", "MLPRegressor"]

X_C, Y_C = make_classification(150, 6, n_informative=4, n_classes=3, random_state=0)
X_R, Y_R = make_regression(150, 6, n_targets=2, random_state=0)
Y_R = Y_R / 100
SMALL = dict(hidden_layer_sizes=(10,), random_state=0, max_iter=8)


# What fastmlp adds to scikit-learn's estimators (README, "Beyond scikit-learn"): the
# parameters with their defaults, fitted attributes, and the conformance checks that a
# class_weight parameter brings in; everything else must be scikit-learn's.
EXTRA_PARAMS = {"MLPClassifier": {"class_weight": None, "dropout": 0.0},
                "MLPRegressor": {"dropout": 0.0}}
EXTRA_ATTRIBUTES = {"validation_loss_curve_"}
EXTRA_CHECKS = {"MLPClassifier": {"check_class_weight_classifiers"}, "MLPRegressor": set()}


def data(kind):
    return (X_C, Y_C) if kind == "MLPClassifier" else (X_R, Y_R)


# ------------------------------------------------------------------ conformance suite
# scikit-learn's own test suite runs its MLPs with max_iter=100 and, for the sample-weight
# equivalence check (integer weights == repeated rows), with the per-check parameters
# below (sklearn/utils/_test_common/instance_generator.py, PER_ESTIMATOR_CHECK_PARAMS):
# minibatch adam does not see repeated rows as weighted ones.  We do the same; no check
# is skipped or expected to fail.  The checks scikit-learn itself skips in this
# environment (pandas not installed, SCIPY_ARRAY_API unset, no decision_function) are
# reported as skipped with its reason.
PER_CHECK_PARAMS = {
    ("MLPClassifier", "check_sample_weight_equivalence_on_dense_data"): dict(solver="lbfgs"),
    ("MLPRegressor", "check_sample_weight_equivalence_on_dense_data"):
        dict(solver="sgd", tol=1e-2, random_state=42),
}


def _check_name(check):
    return getattr(check, "func", check).__name__


def _conformance_cases():
    for kind in KINDS:
        est = getattr(fastmlp, kind)(max_iter=100)
        for estimator, check in estimator_checks_generator(est, legacy=True, mark=None):
            name = _check_name(check)
            yield pytest.param(kind, estimator, check, id=f"{kind}-{name}")


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("kind, estimator, check", list(_conformance_cases()))
def test_sklearn_conformance(kind, estimator, check):
    params = PER_CHECK_PARAMS.get((kind, _check_name(check)))
    if params:
        estimator = clone(estimator).set_params(**params)
    check(estimator)


def test_conformance_suite_is_the_one_sklearn_runs_on_its_mlps():
    for kind in KINDS:
        ours = [_check_name(c) for _, c in
                estimator_checks_generator(getattr(fastmlp, kind)(), mark=None)
                if _check_name(c) not in EXTRA_CHECKS[kind]]
        theirs = [_check_name(c) for _, c in
                  estimator_checks_generator(getattr(sknn, kind)(), mark=None)]
        assert ours == theirs


# ------------------------------------------------------------------ API surface
@pytest.mark.parametrize("kind", KINDS)
def test_signature_defaults_and_tags(kind):
    ours, theirs = getattr(fastmlp, kind), getattr(sknn, kind)
    extra = EXTRA_PARAMS[kind]
    signature = inspect.signature(ours.__init__)
    assert {n: p.default for n, p in signature.parameters.items() if n in extra} == extra
    assert signature.replace(parameters=[p for n, p in signature.parameters.items()
                                         if n not in extra]) == inspect.signature(theirs.__init__)
    assert ours().get_params() == dict(theirs().get_params(), **extra)
    assert ours().__sklearn_tags__() == theirs().__sklearn_tags__()
    for method in ["fit", "predict", "score", "get_params", "set_params"]:
        assert callable(getattr(ours(), method))
    assert ours is getattr(fsk, kind)


def test_partial_fit_availability_matches_sklearn():
    for kind in KINDS:
        for solver in ["sgd", "adam", "lbfgs"]:
            assert (hasattr(getattr(fastmlp, kind)(solver=solver), "partial_fit")
                    == hasattr(getattr(sknn, kind)(solver=solver), "partial_fit"))
    # MLPRegressor(solver="lbfgs").partial_fit runs a whole lbfgs fit, as scikit-learn's
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        f = fastmlp.MLPRegressor(solver="lbfgs", **SMALL).partial_fit(X_R, Y_R)
        s = sknn.MLPRegressor(solver="lbfgs", **SMALL).partial_fit(X_R, Y_R)
    assert f.n_iter_ == s.n_iter_
    assert_allclose(f.predict(X_R), s.predict(X_R), rtol=1e-9, atol=1e-12)


def test_fitted_attributes_match_sklearn():
    for kind in KINDS:
        X, y = data(kind)
        for solver in ["adam", "lbfgs"]:
            for early_stopping in [False, True]:
                params = dict(SMALL, solver=solver, early_stopping=early_stopping)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", ConvergenceWarning)
                    f = getattr(fastmlp, kind)(**params).fit(X, y)
                    s = getattr(sknn, kind)(**params).fit(X, y)
                public = lambda e: sorted(k for k in vars(e) if k.endswith("_")
                                          and not k.startswith("_")
                                          and k not in EXTRA_ATTRIBUTES)
                assert public(f) == public(s)
                for name in public(s):
                    a, b = getattr(f, name), getattr(s, name)
                    assert type(a) is type(b) or (isinstance(a, float) and isinstance(b, float))


def test_coefs_are_views_of_one_flat_buffer():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        f = fastmlp.MLPClassifier(**SMALL).fit(X_C, Y_C)
    flat = f._theta
    for a in f.coefs_ + f.intercepts_:
        assert np.shares_memory(a, flat)
    # in-place edits are seen by predict and by training
    before = f.predict_proba(X_C)
    f.coefs_[-1] *= 2
    assert not np.allclose(f.predict_proba(X_C), before)


def test_assigned_coefs_are_used_like_sklearn():
    # Replacing coefs_/intercepts_ (as users and scikit-learn's tests do) is honoured.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        f = fastmlp.MLPRegressor(solver="sgd", warm_start=True, **SMALL).fit(X_R, Y_R)
        s = sknn.MLPRegressor(solver="sgd", warm_start=True, **SMALL).fit(X_R, Y_R)
        rng = np.random.RandomState(0)
        new_coefs = [rng.normal(scale=0.3, size=c.shape) for c in s.coefs_]
        new_icpts = [rng.normal(scale=0.3, size=b.shape) for b in s.intercepts_]
        for est in (f, s):
            est.coefs_ = [c.copy() for c in new_coefs]
            est.intercepts_ = [b.copy() for b in new_icpts]
        assert_allclose(f.predict(X_R), s.predict(X_R), rtol=1e-12)
        f.fit(X_R, Y_R)
        s.fit(X_R, Y_R)
    for a, b in zip(f.coefs_ + f.intercepts_, s.coefs_ + s.intercepts_):
        assert_allclose(a, b, rtol=1e-9, atol=1e-12)
    assert all(np.shares_memory(a, f._theta) for a in f.coefs_)


@pytest.mark.parametrize("kind", KINDS)
def test_pickle_and_deepcopy_keep_training_state(kind):
    X, y = data(kind)
    est = getattr(fastmlp, kind)(solver="adam", **SMALL)
    extra = {"classes": np.unique(y)} if kind == "MLPClassifier" else {}
    est.partial_fit(X, y, **extra)
    est.partial_fit(X, y)
    for restored in (pickle.loads(pickle.dumps(est)), copy.deepcopy(est)):
        assert_array_equal(restored.predict(X), est.predict(X))
        assert all(np.shares_memory(a, restored._theta) for a in restored.coefs_)
        assert not any(np.shares_memory(a, est._theta) for a in restored.coefs_)
    twin = pickle.loads(pickle.dumps(est))
    est.partial_fit(X, y)           # Adam moments and step count travel with the pickle
    twin.partial_fit(X, y)
    for a, b in zip(est.coefs_ + est.intercepts_, twin.coefs_ + twin.intercepts_):
        assert_array_equal(a, b)


def test_clone_pipeline_and_grid_search_match_sklearn():
    grid = {"mlp__alpha": [1e-4, 1.0], "mlp__hidden_layer_sizes": [(6,), (12,)]}
    results = []
    for module in (fastmlp, sknn):
        pipe = Pipeline([("scale", StandardScaler()), ("mlp", module.MLPClassifier(**SMALL))])
        search = GridSearchCV(pipe, grid, cv=3)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            search.fit(X_C, Y_C)
        results.append(search)
    ours, theirs = results
    assert ours.best_params_ == theirs.best_params_
    assert_allclose(ours.cv_results_["mean_test_score"], theirs.cv_results_["mean_test_score"],
                    rtol=1e-12)
    assert_array_equal(ours.predict(X_C), theirs.predict(X_C))
    est = fastmlp.MLPRegressor(alpha=0.5, hidden_layer_sizes=(3, 4))
    assert clone(est).get_params() == est.get_params()


# ------------------------------------------------------------------ warnings and errors
def _warnings_of(fit):
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        fit()
    return [(w.category, str(w.message)) for w in record]


@pytest.mark.parametrize("solver", ["sgd", "adam", "lbfgs"])
def test_convergence_warnings_match_sklearn(solver):
    for kind in KINDS:
        X, y = data(kind)
        params = dict(SMALL, solver=solver, max_iter=3)
        ours = _warnings_of(lambda: getattr(fastmlp, kind)(**params).fit(X, y))
        theirs = _warnings_of(lambda: getattr(sknn, kind)(**params).fit(X, y))
        assert [c for c, _ in ours] == [c for c, _ in theirs] == [ConvergenceWarning]
        assert ours[0][1] == theirs[0][1]
        # no warning once converged (tol reached) or for partial_fit
        params = dict(SMALL, solver=solver, max_iter=200, tol=10.0)
        assert _warnings_of(lambda: getattr(fastmlp, kind)(**params).fit(X, y)) == []
        if solver != "lbfgs":
            extra = {"classes": np.unique(y)} if kind == "MLPClassifier" else {}
            assert _warnings_of(
                lambda: getattr(fastmlp, kind)(**params).partial_fit(X, y, **extra)) == []


@pytest.mark.parametrize("param, value", [
    ("alpha", -1.0), ("solver", "newton"), ("activation", "swish"),
    ("learning_rate", "cosine"), ("learning_rate_init", 0.0), ("max_iter", 0),
    ("batch_size", 0), ("momentum", 1.5), ("validation_fraction", 1.0), ("beta_1", 1.0),
    ("epsilon", 0.0), ("n_iter_no_change", 0), ("max_fun", 0), ("hidden_layer_sizes", 0),
    ("shuffle", "yes"), ("random_state", -1), ("tol", float("nan")),
])
def test_invalid_parameters_rejected_like_sklearn(param, value):
    for kind in KINDS:
        X, y = data(kind)
        with pytest.raises(ValueError):
            getattr(sknn, kind)(**{param: value}).fit(X, y)
        with pytest.raises(fsk.InvalidParameterError, match=f"'{param}' parameter"):
            getattr(fastmlp, kind)(**{param: value}).fit(X, y)
    with pytest.raises(ValueError, match="loss"):
        fastmlp.MLPRegressor(loss="huber").fit(X_R, Y_R)


def test_data_errors():
    with pytest.raises(ValueError, match="hidden_layer_sizes must be > 0"):
        fastmlp.MLPClassifier(hidden_layer_sizes=(4, 0)).fit(X_C, Y_C)
    with pytest.raises(ValueError, match="negative"):
        fastmlp.MLPRegressor(loss="poisson").fit(X_R, Y_R[:, 0])
    with pytest.raises(ValueError, match="classes must be passed"):
        fastmlp.MLPClassifier().partial_fit(X_C, Y_C)
    with pytest.raises(ValueError, match="early_stopping"):
        fastmlp.MLPRegressor(early_stopping=True).partial_fit(X_R, Y_R)
    with pytest.raises(ValueError, match="non-zero"):
        fastmlp.MLPRegressor().fit(X_R, Y_R, sample_weight=np.zeros(len(X_R)))
    with pytest.raises(ValueError, match="sample_weight"):
        fastmlp.MLPRegressor().fit(X_R, Y_R, sample_weight=np.ones(3))
    with pytest.raises(ValueError, match="validation set is too small"):
        fastmlp.MLPRegressor(early_stopping=True).fit(X_R[:5], Y_R[:5])
    est = fastmlp.MLPRegressor(warm_start=True, **SMALL)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(X_R, Y_R)
    with pytest.raises(ValueError, match="layer sizes"):
        est.set_params(hidden_layer_sizes=(4,)).fit(X_R, Y_R)
    clf = fastmlp.MLPClassifier(**SMALL)
    clf.partial_fit(X_C, Y_C, classes=[0, 1, 2])
    with pytest.raises(ValueError, match="not the same as on last call"):
        clf.partial_fit(X_C, Y_C, classes=[0, 1, 2, 3])


def test_divergence_raises_sklearns_error_with_last_good_parameters():
    X, y = X_R, Y_R * 1e3
    params = dict(SMALL, solver="sgd", learning_rate_init=10.0, max_iter=20)
    with pytest.raises(ValueError, match="Solver produced non-finite parameter weights"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sknn.MLPRegressor(**params).fit(X, y)
    est = fastmlp.MLPRegressor(**params)
    with pytest.raises(ValueError, match="Solver produced non-finite parameter weights") as info:
        est.fit(X, y)
    assert isinstance(info.value, fastmlp.DivergenceError)
    assert isinstance(info.value, fsk.SolverDivergedError)
    assert "epoch" in str(info.value)
    assert all(np.isfinite(c).all() for c in est.coefs_ + est.intercepts_)
    assert np.isfinite(est.predict(X)).all()


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")  # r2 of huge outputs
def test_divergence_with_early_stopping_restores_best():
    X, y = X_R, Y_R * 1e3
    params = dict(SMALL, solver="sgd", learning_rate_init=10.0, max_iter=20,
                  early_stopping=True)
    est = fastmlp.MLPRegressor(**params)
    with pytest.warns(ConvergenceWarning, match="non-finite loss or gradient"):
        est.fit(X, y)
    assert all(np.isfinite(c).all() for c in est.coefs_ + est.intercepts_)
    # scikit-learn trains on through NaN weights to max_iter, then restores the same
    # best-validation parameters.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        s = sknn.MLPRegressor(**params).fit(X, y)
    for a, b in zip(est.coefs_, s.coefs_):
        assert_allclose(a, b, rtol=1e-12)


def test_verbose_output_matches_sklearn():
    params = dict(SMALL, solver="sgd", learning_rate="adaptive", tol=0.05, n_iter_no_change=1,
                  max_iter=12, early_stopping=True, verbose=True)
    outputs = []
    for module in (fastmlp, sknn):
        buf = io.StringIO()
        with redirect_stdout(buf), warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            module.MLPClassifier(**params).fit(X_C, Y_C)
        outputs.append(buf.getvalue())
    assert "Iteration 1, loss = " in outputs[1] and "Setting learning rate" in outputs[1]
    assert outputs[0] == outputs[1]


# ------------------------------------------------------------------ optional dependency
def test_lazy_import_without_sklearn(python_prints_ok):
    code = (
        "import sys\n"
        "sys.modules['sklearn'] = None  # as if scikit-learn were not installed\n"
        "import fastmlp\n"
        "assert 'fastmlp.sklearn' not in sys.modules\n"
        "net = fastmlp.MLP([2, 3, 1], seed=0)\n"
        "for name in ('MLPClassifier', 'MLPRegressor'):\n"
        "    try:\n"
        "        getattr(fastmlp, name)\n"
        "    except ImportError as exc:\n"
        "        assert 'pip install fastmlp[sklearn]' in str(exc), exc\n"
        "    else:\n"
        "        raise AssertionError('expected ImportError')\n"
        "try:\n"
        "    from fastmlp import MLPClassifier\n"
        "except ImportError as exc:\n"
        "    assert 'pip install fastmlp[sklearn]' in str(exc)\n"
        "else:\n"
        "    raise AssertionError('expected ImportError')\n"
        "print('ok')\n")
    python_prints_ok(code)


def test_lazy_import_with_sklearn():
    assert fastmlp.MLPClassifier is fsk.MLPClassifier
    assert fastmlp.MLPRegressor is fsk.MLPRegressor
    with pytest.raises(AttributeError):
        fastmlp.NoSuchThing
