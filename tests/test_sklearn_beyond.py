"""What the estimators add to scikit-learn's (README, "Beyond scikit-learn").

- ``class_weight`` against its oracle, the equivalent ``sample_weight`` (identical fits);
- ``validation_loss_curve_`` against scikit-learn's loss formula evaluated in numpy on the
  validation split, with the parameters of each epoch;
- scikit-learn's callback API (1.9): stopping, task bookkeeping, ProgressBar and
  ScoringMonitor, and the import without it.
"""
import pickle
import warnings

import numpy as np
import pytest

pytest.importorskip("sklearn")

from numpy.testing import assert_allclose, assert_array_equal  # noqa: E402
from sklearn.base import clone  # noqa: E402
from sklearn.datasets import make_classification, make_multilabel_classification  # noqa: E402
from sklearn.datasets import make_regression  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402
from sklearn.neural_network._base import ACTIVATIONS, LOSS_FUNCTIONS  # noqa: E402
from sklearn.utils.class_weight import compute_class_weight, compute_sample_weight  # noqa: E402

import fastmlp  # noqa: E402
from fastmlp.sklearn import InvalidParameterError  # noqa: E402

X_M, Y_M = make_classification(160, 6, n_informative=4, n_classes=3, weights=[0.6, 0.3, 0.1],
                               random_state=0)
X_B, Y_B = make_classification(160, 6, n_informative=4, weights=[0.8, 0.2], random_state=1)
Y_B = np.where(Y_B == 1, "yes", "no")
X_L, Y_L = make_multilabel_classification(160, 6, n_classes=3, random_state=2)
X_R, Y_R = make_regression(160, 6, n_targets=2, noise=5.0, random_state=3)
Y_R = Y_R / 100
SW = np.random.RandomState(4).uniform(0.2, 3.0, 160)
SMALL = dict(hidden_layer_sizes=(8,), random_state=0, max_iter=6)

TARGETS = {"binary": (X_B, Y_B, {"no": 0.5, "yes": 3.0}),
           "multiclass": (X_M, Y_M, {0: 1.0, 1: 2.0, 2: 5.0}),
           "multilabel": (X_L, Y_L, [{0: 1.0, 1: 2.0}, {0: 0.5, 1: 1.5}, {0: 3.0, 1: 1.0}])}


def fit(est, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return est.fit(*args, **kwargs)


def assert_same_fit(a, b):
    """Bit for bit: parameters, loss and iterations."""
    for p, q in zip(a.coefs_ + a.intercepts_, b.coefs_ + b.intercepts_):
        assert_array_equal(p, q)
    assert a.loss_ == b.loss_ and a.n_iter_ == b.n_iter_
    for name in ("loss_curve_", "validation_scores_", "validation_loss_curve_"):
        assert getattr(a, name, None) == getattr(b, name, None)


# ------------------------------------------------------------------ class_weight
@pytest.mark.parametrize("solver", ["sgd", "adam", "lbfgs"])
@pytest.mark.parametrize("target", list(TARGETS))
@pytest.mark.parametrize("with_sw", [False, True])
def test_class_weight_is_the_equivalent_sample_weight(solver, target, with_sw):
    X, y, class_weight = TARGETS[target]
    sw = SW if with_sw else None
    for cw in (class_weight, "balanced"):
        weighted = fit(fastmlp.MLPClassifier(solver=solver, class_weight=cw, **SMALL), X, y,
                       sample_weight=sw)
        expected_sw = compute_sample_weight(cw, y) * (1.0 if sw is None else sw)
        plain = fit(fastmlp.MLPClassifier(solver=solver, **SMALL), X, y,
                    sample_weight=expected_sw)
        assert_same_fit(weighted, plain)


def test_class_weight_with_early_stopping_weights_the_validation_split_too():
    params = dict(SMALL, early_stopping=True, max_iter=8)
    weighted = fit(fastmlp.MLPClassifier(class_weight="balanced", **params), X_M, Y_M)
    plain = fit(fastmlp.MLPClassifier(**params), X_M, Y_M,
                sample_weight=compute_sample_weight("balanced", Y_M))
    assert_same_fit(weighted, plain)


def test_class_weight_none_changes_nothing():
    for solver in ["adam", "lbfgs"]:
        default = fit(fastmlp.MLPClassifier(solver=solver, **SMALL), X_M, Y_M)
        none = fit(fastmlp.MLPClassifier(solver=solver, class_weight=None, **SMALL), X_M, Y_M)
        assert_same_fit(default, none)
        # and the weighted path is not taken: unit class weights differ from no weights
        ones = fit(fastmlp.MLPClassifier(solver=solver, class_weight={0: 1, 1: 1, 2: 1},
                                         **SMALL), X_M, Y_M)
        plain_ones = fit(fastmlp.MLPClassifier(solver=solver, **SMALL), X_M, Y_M,
                         sample_weight=np.ones(len(Y_M)))
        assert_same_fit(ones, plain_ones)


class _Recorder:
    """A passive callback that records the root task's metadata and every hook call."""

    def __init__(self):
        self.calls, self.metadata = [], None

    def setup(self, estimator, context):
        self.calls.append("setup")

    def teardown(self, estimator, context):
        self.calls.append("teardown")

    def on_fit_task_begin(self, estimator, context, *, metadata=None):
        self.calls.append(("begin", context.task_name, context.task_id))
        if context.parent is None:
            self.metadata = metadata

    def on_fit_task_end(self, estimator, context):
        self.calls.append(("end", context.task_name, context.task_id))
        return False


@pytest.mark.parametrize("target", ["binary", "multiclass"])
def test_balanced_weights_are_sklearns(target):
    X, y, _ = TARGETS[target]
    classes, counts = np.unique(y, return_counts=True)
    by_formula = len(y) / (len(classes) * counts)
    sk = compute_class_weight("balanced", classes=classes, y=y)
    assert_allclose(sk, by_formula, rtol=1e-15)
    pytest.importorskip("sklearn.callback")
    rec = _Recorder()
    fit(fastmlp.MLPClassifier(class_weight="balanced", **SMALL).set_callbacks(rec), X, y,
        sample_weight=SW)
    # what the estimator trains with: sample weight times the class's balanced weight
    assert_array_equal(rec.metadata["sample_weight"], SW * sk[np.searchsorted(classes, y)])


@pytest.mark.parametrize("value, error", [
    ("balance", InvalidParameterError), (2.0, InvalidParameterError),
    ([1.0, 2.0], InvalidParameterError), ((("a", 1),), InvalidParameterError),
])
def test_bad_class_weight_rejected(value, error):
    with pytest.raises(error, match="'class_weight' parameter of MLPClassifier must be"):
        fastmlp.MLPClassifier(class_weight=value, **SMALL).fit(X_M, Y_M)


def test_class_weight_not_matching_the_target_rejected():
    with pytest.raises(ValueError, match="not in class_weight"):
        fastmlp.MLPClassifier(class_weight={0: 1.0, 7: 2.0}, **SMALL).fit(X_M, Y_M)
    with pytest.raises(ValueError, match="list of dicts"):  # a dict for multilabel
        fastmlp.MLPClassifier(class_weight={0: 1.0, 1: 2.0}, **SMALL).fit(X_L, Y_L)
    with pytest.raises(ValueError, match="multilabel"):  # a list for multiclass
        fastmlp.MLPClassifier(class_weight=[{0: 1.0}], **SMALL).fit(X_M, Y_M)


def test_class_weight_in_partial_fit():
    cw = {0: 1.0, 1: 2.0, 2: 5.0}
    a = fastmlp.MLPClassifier(class_weight=cw, **SMALL)
    b = fastmlp.MLPClassifier(**SMALL)
    for half in (slice(0, 80), slice(80, 160)):
        a.partial_fit(X_M[half], Y_M[half], classes=[0, 1, 2])
        b.partial_fit(X_M[half], Y_M[half], classes=[0, 1, 2],
                      sample_weight=compute_sample_weight(cw, Y_M[half]))
    assert_same_fit(a, b)
    with pytest.raises(ValueError, match="not supported by partial_fit"):
        fastmlp.MLPClassifier(class_weight="balanced", **SMALL).partial_fit(
            X_M, Y_M, classes=[0, 1, 2])


def test_class_weight_in_params_clone_and_pickle():
    est = fastmlp.MLPClassifier(class_weight={0: 2.0, 1: 1.0, 2: 1.0}, **SMALL)
    assert est.get_params()["class_weight"] == {0: 2.0, 1: 1.0, 2: 1.0}
    assert clone(est).get_params() == est.get_params()
    fit(est, X_M, Y_M)
    again = pickle.loads(pickle.dumps(est))
    assert again.class_weight == est.class_weight
    assert_array_equal(again.predict_proba(X_M), est.predict_proba(X_M))
    assert "class_weight" not in fastmlp.MLPRegressor().get_params()


# ------------------------------------------------------------------ validation_loss_curve_
def _validation_split(est, X, y):
    """The early-stopping split a fit with sample_weight=SW makes: random_state draws
    the initial weights (one uniform draw per weight matrix, then per bias vector), then
    splits."""
    rs = np.random.RandomState(est.random_state)
    units = [X.shape[1], *est.hidden_layer_sizes, est.n_outputs_]
    for fan_in, fan_out in zip(units[:-1], units[1:]):
        rs.uniform(size=(fan_in, fan_out))
        rs.uniform(size=fan_out)
    parts = train_test_split(X, y, SW, random_state=rs, test_size=est.validation_fraction)
    return parts[1], parts[3], parts[5]


def _sk_objective(est, coefs, intercepts, X, Y, sw):
    """scikit-learn's MLP objective (_backprop's loss): its loss function on the forward
    pass plus alpha/2 · Σ‖W‖² / Σ weights, in numpy."""
    A = X
    for i, (W, b) in enumerate(zip(coefs, intercepts)):
        A = A @ W + b
        ACTIVATIONS[est.activation if i < len(coefs) - 1 else est.out_activation_](A)
    name = "log_loss" if est.out_activation_ == "softmax" else "squared_error"
    penalty = sum(np.dot(W.ravel(), W.ravel()) for W in coefs)
    return LOSS_FUNCTIONS[name](Y, A, sw) + 0.5 * est.alpha * penalty / sw.sum()


class _Snapshots:
    """Records fitted_estimator's parameters at the end of every epoch."""

    def setup(self, estimator, context):
        self.params = []

    def teardown(self, estimator, context):
        pass

    def on_fit_task_begin(self, estimator, context):
        pass

    def on_fit_task_end(self, estimator, context, *, fitted_estimator=None):
        if context.parent is not None:
            self.params.append((fitted_estimator.coefs_, fitted_estimator.intercepts_))


@pytest.mark.parametrize("kind", ["MLPRegressor", "MLPClassifier"])
def test_validation_loss_curve_is_sklearns_objective_on_the_validation_split(kind):
    X, y = (X_R, Y_R) if kind == "MLPRegressor" else (X_M, Y_M)
    est = getattr(fastmlp, kind)(early_stopping=True, validation_fraction=0.25, alpha=0.01,
                                 **dict(SMALL, max_iter=10))
    fit(est, X, y, sample_weight=SW)
    curve = est.validation_loss_curve_
    assert len(curve) == est.n_iter_ == len(est.validation_scores_)
    X_val, y_val, sw_val = _validation_split(est, X, y)
    Y_val = y_val if kind == "MLPRegressor" else np.eye(3)[y_val]
    # After the fit the parameters are those of the (first) best validation score.
    best = int(np.argmax(est.validation_scores_))
    assert_allclose(curve[best], _sk_objective(est, est.coefs_, est.intercepts_, X_val,
                                               Y_val, sw_val), rtol=1e-12)
    # Every epoch, with the parameters a callback saw at its end.
    pytest.importorskip("sklearn.callback")
    snaps = _Snapshots()
    fit(clone(est).set_callbacks(snaps), X, y, sample_weight=SW)
    expected = [_sk_objective(est, c, b, X_val, Y_val, sw_val) for c, b in snaps.params]
    assert_allclose(curve, expected, rtol=1e-12)
    assert len(set(curve)) == len(curve)  # it moves: a stale curve would repeat values


def test_validation_loss_curve_absent_without_early_stopping():
    est = fit(fastmlp.MLPClassifier(**SMALL), X_M, Y_M)
    assert est.validation_loss_curve_ is None and est.validation_scores_ is None
    # lbfgs has neither, as scikit-learn has no validation_scores_ there
    est = fit(fastmlp.MLPClassifier(solver="lbfgs", early_stopping=True, **SMALL), X_M, Y_M)
    assert not hasattr(est, "validation_loss_curve_") and not hasattr(est, "validation_scores_")


def test_validation_loss_curve_grows_with_warm_start_like_validation_scores():
    est = fastmlp.MLPRegressor(early_stopping=True, warm_start=True, **SMALL)
    fit(est, X_R, Y_R)
    fit(est, X_R, Y_R)
    n = len(est.validation_loss_curve_)
    assert n == len(est.validation_scores_) == 2 * SMALL["max_iter"]


# ------------------------------------------------------------------ callbacks
callback = pytest.importorskip("sklearn.callback")


class _StopAfter(_Recorder):
    """Asks to stop at the end of the k-th subtask."""

    def __init__(self, k):
        super().__init__()
        self.k = k

    def on_fit_task_end(self, estimator, context):
        super().on_fit_task_end(estimator, context)
        return context.parent is not None and context.task_id + 1 >= self.k


def _balanced(calls):
    """Every begun task ends, in nesting order, between one setup and one teardown."""
    assert calls[0] == "setup" and calls[-1] == "teardown"
    stack = []
    for event in calls[1:-1]:
        if event[0] == "begin":
            stack.append(event[1:])
        else:
            assert stack.pop() == event[1:]
    assert not stack


@pytest.mark.parametrize("solver, early_stopping",
                         [("sgd", False), ("adam", False), ("adam", True), ("lbfgs", False)])
def test_callback_stop_equals_max_iter(solver, early_stopping):
    params = dict(SMALL, solver=solver, early_stopping=early_stopping, max_iter=50)
    stopper = _StopAfter(3)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)  # a requested stop is no failure
        stopped = fastmlp.MLPClassifier(**params).set_callbacks(stopper).fit(X_M, Y_M)
    assert stopped.n_iter_ == 3
    assert_same_fit(stopped, fit(fastmlp.MLPClassifier(**dict(params, max_iter=3)), X_M, Y_M))
    _balanced(stopper.calls)
    name = "iteration" if solver == "lbfgs" else "epoch"
    assert [c for c in stopper.calls if c[0] == "end"] == (
        [("end", name, i) for i in range(3)] + [("end", "fit", 0)])


@pytest.mark.parametrize("solver", ["adam", "lbfgs"])
def test_passive_callbacks_change_nothing(solver):
    for kind, (X, y) in [("MLPClassifier", (X_M, Y_M)), ("MLPRegressor", (X_R, Y_R))]:
        params = dict(SMALL, solver=solver)
        rec = _Recorder()
        a = fit(getattr(fastmlp, kind)(**params).set_callbacks(rec), X, y)
        assert_same_fit(a, fit(getattr(fastmlp, kind)(**params), X, y))
        _balanced(rec.calls)
        n_sub = sum(1 for c in rec.calls if c[0] == "end" and c[1] != "fit")
        # one task per epoch; lbfgs may begin one more iteration than it completes
        assert n_sub == a.n_iter_ if solver == "adam" else n_sub in (a.n_iter_, a.n_iter_ + 1)
        assert not hasattr(a, "_callback_fit_ctx")  # torn down


def test_partial_fit_is_one_epoch_task():
    rec = _Recorder()
    est = fastmlp.MLPRegressor(**SMALL).set_callbacks(rec)
    est.partial_fit(X_R, Y_R)
    est.partial_fit(X_R, Y_R)
    assert rec.calls == 2 * ["setup", ("begin", "fit", 0), ("begin", "epoch", 0),
                             ("end", "epoch", 0), ("end", "fit", 0), "teardown"]


@pytest.mark.parametrize("solver", ["adam", "lbfgs"])
def test_scoring_monitor_scores_each_epoch(solver):
    monitor = callback.ScoringMonitor(scoring="accuracy")
    est = fit(fastmlp.MLPClassifier(solver=solver, **SMALL).set_callbacks(monitor), X_M, Y_M)
    rows = monitor.get_logs().data
    tasks = [r for r in rows if r["task_name"] != "fit"]
    assert len(tasks) in (est.n_iter_, est.n_iter_ + 1)
    # each epoch's model is the one a fit of that many epochs gives
    for k in (1, est.n_iter_):
        shorter = fit(fastmlp.MLPClassifier(solver=solver, **dict(SMALL, max_iter=k)), X_M, Y_M)
        assert tasks[k - 1]["accuracy"] == shorter.score(X_M, Y_M)
    assert [r for r in rows if r["task_name"] == "fit"][0]["accuracy"] == est.score(X_M, Y_M)


def test_progress_bar_runs():
    pytest.importorskip("rich")
    for solver in ["adam", "lbfgs"]:
        est = fastmlp.MLPRegressor(solver=solver, **SMALL).set_callbacks(callback.ProgressBar())
        assert_same_fit(fit(est, X_R, Y_R), fit(fastmlp.MLPRegressor(solver=solver, **SMALL),
                                                X_R, Y_R))


class _Propagated(_Recorder):
    """A recorder that a meta-estimator hands on to its sub-estimators."""
    max_propagation_depth = None


def _count_subtasks(monkeypatch):
    import fastmlp.sklearn._callbacks as cb
    made = []

    class Counting(cb.FitTasks):
        def __init__(self, *args):
            made.append(args[-1])
            super().__init__(*args)

    monkeypatch.setattr(cb, "FitTasks", Counting)
    return made


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("solver", ["adam", "lbfgs"])
def test_search_without_callbacks_opens_no_epoch_subtasks(monkeypatch, solver):
    # A search propagates its callback context to every candidate even without callbacks;
    # one subtask an epoch would then be pure cost.  The fits are unchanged by it.
    from sklearn.model_selection import GridSearchCV
    made = _count_subtasks(monkeypatch)
    params = dict(SMALL, solver=solver)
    search = GridSearchCV(fastmlp.MLPClassifier(**params), {"alpha": [1e-4, 1e-2]}, cv=2)
    search.fit(X_M, Y_M)
    assert made == []
    assert_same_fit(search.best_estimator_,
                    fit(fastmlp.MLPClassifier(**dict(params, **search.best_params_)), X_M, Y_M))


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_search_subtasks_open_for_a_candidates_own_or_propagated_callbacks(monkeypatch):
    from sklearn.model_selection import GridSearchCV
    made = _count_subtasks(monkeypatch)
    own = _Recorder()
    GridSearchCV(fastmlp.MLPClassifier(**SMALL).set_callbacks(own), {"alpha": [1e-4]},
                 cv=2).fit(X_M, Y_M)
    fits = 3                                   # two folds and the refit
    assert made == ["epoch"] * fits
    assert sum(1 for c in own.calls if c[:2] == ("end", "epoch")) == fits * SMALL["max_iter"]
    made.clear()
    handed_on = _Propagated()
    GridSearchCV(fastmlp.MLPClassifier(**SMALL), {"alpha": [1e-4]}, cv=2).set_callbacks(
        handed_on).fit(X_M, Y_M)
    assert made == ["epoch"] * fits
    assert sum(1 for c in handed_on.calls if c[:2] == ("end", "epoch")) == fits * SMALL["max_iter"]


def test_callbacks_survive_clone_and_reject_non_callbacks():
    rec = _Recorder()
    est = fastmlp.MLPClassifier(**SMALL).set_callbacks(rec)
    fit(clone(est), X_M, Y_M)
    assert rec.calls[0] == "setup"
    with pytest.raises(TypeError, match="FitCallback protocol"):
        est.set_callbacks(object())


def test_without_sklearns_callback_api(python_prints_ok):
    # scikit-learn < 1.9: the estimators import and fit, and have no set_callbacks.
    # (scikit-learn 1.9 imports its callback module itself, so it is hidden only from
    # what imports it after scikit-learn's own modules are loaded.)
    code = (
        "import sys\n"
        "import sklearn.metrics, sklearn.model_selection, sklearn.preprocessing\n"
        "sys.modules['sklearn.callback'] = None  # as in scikit-learn < 1.9\n"
        "import numpy as np, fastmlp\n"
        "est = fastmlp.MLPClassifier(hidden_layer_sizes=(4,), max_iter=3, random_state=0,\n"
        "                            early_stopping=True, class_weight='balanced')\n"
        "assert not hasattr(est, 'set_callbacks')\n"
        "X = np.random.RandomState(0).normal(size=(40, 3)); y = (X[:, 0] > 0).astype(int)\n"
        "import warnings; warnings.simplefilter('ignore')\n"
        "est.fit(X, y)\n"
        "assert est.n_iter_ == 3 and len(est.validation_loss_curve_) == 3\n"
        "print('ok')\n")
    python_prints_ok(code)
