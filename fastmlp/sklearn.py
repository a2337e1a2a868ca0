"""scikit-learn drop-in estimators: ``MLPClassifier`` and ``MLPRegressor``.

They take the same parameters as scikit-learn's estimators of the same names (1.9), set the
same fitted attributes, draw from ``random_state`` in the same order (initial weights,
early-stopping split, minibatch shuffling) and follow the same arithmetic, so a model fitted
here equals scikit-learn's to rounding (see tests/test_sklearn_equivalence.py for the measured
agreement).  The training work runs in fastmlp's compiled ``Engine``: one GIL-free call per
epoch of minibatch steps, one call per loss-and-gradient evaluation for L-BFGS.  Python does
validation, the bookkeeping between epochs (learning-rate schedules, stopping, early
stopping, verbose output) and the scikit-learn glue.

scikit-learn's quirks reproduced on purpose
-------------------------------------------
- Regressor, squared error (scikit-learn #8349): ``loss_``/``loss_curve_`` report
  ½·mean over outputs of the mean squared error, while the gradient is that of the loss
  *summed* over outputs (the output delta is Ŷ − Y, not (Ŷ − Y)/n_outputs).
- ``partial_fit`` always reports ``n_iter_ == 1``; the optimizer (and its learning rate,
  momentum, …) is frozen at its creation by the first ``partial_fit``, and ``fit`` with
  ``warm_start`` creates a new one (Adam's step count and the velocities restart).
- With ``early_stopping``, only binary classification stratifies the validation split.
- After a fit with ``early_stopping`` the best parameters *are* the live ones, so a later
  ``warm_start`` fit that never improves the validation score keeps its last parameters.
- ``MLPRegressor.partial_fit`` exists for every solver; with ``solver="lbfgs"`` it runs a
  whole L-BFGS fit from the current parameters (``MLPClassifier`` hides it for lbfgs).
- ``solver="lbfgs"``: scipy evaluates the loss and gradient in the parameters' dtype
  (float32 for float32 data) but returns its iterate in float64, so ``coefs_`` are
  float64 after an lbfgs fit, as in scikit-learn.

Where fastmlp differs
---------------------
- A training step whose loss or gradient is not finite is not taken (the core checks before
  it writes).  Without early stopping, ``fit``/``partial_fit`` then raise at once the
  ValueError scikit-learn raises at the end of such a fit ("Solver produced non-finite
  parameter weights…"), here a ``SolverDivergedError`` (also a ``fastmlp.DivergenceError``),
  with the parameters of the last good step.  With early stopping, training stops, the
  parameters of the best validation score are restored (as scikit-learn ends up doing) and a
  ConvergenceWarning says so.  For lbfgs a non-finite evaluation is reported to L-BFGS-B as
  an infinite loss, so its line search backs off.
- ``loss="poisson"`` refuses negative targets (scikit-learn trains on them with a NaN loss).
- A regressor given float32 ``X`` and float64 ``y`` trains fully in float32 (``y`` is
  rounded to float32); scikit-learn then mixes float64 gradients into float32 parameters.
- Sparse ``X`` (CSR, CSC, COO) is trained on as CSR: the first layer's products and the
  gathered minibatches cost its stored values, never n_samples × n_features.

Beyond scikit-learn (README, "Beyond scikit-learn"); at their defaults nothing changes
---------------------------------------------------------------------------------------
- ``MLPClassifier(class_weight=...)``: folded into the sample weights before anything else
  (split, training, validation score, callbacks), so it *is* the equivalent
  ``sample_weight``.
- ``validation_loss_curve_``: with early stopping, the objective on the validation split
  after each epoch, from a second engine over the same parameters.
- scikit-learn's callback API (>= 1.9, ``sklearn.callback``): ``set_callbacks``; one task
  per ``fit``/``partial_fit`` with one subtask per epoch (per L-BFGS iteration).  Nothing
  is set up when no callback is set.
"""
from __future__ import annotations

import math
import numbers
import warnings

import numpy as np
import scipy
import scipy.optimize
import scipy.sparse as sp

try:
    import sklearn
    from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, is_classifier
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.metrics import accuracy_score, r2_score
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import LabelBinarizer
    from sklearn.utils import check_array, check_random_state
    from sklearn.utils.class_weight import compute_sample_weight
    from sklearn.utils.metaestimators import available_if
    from sklearn.utils.multiclass import type_of_target, unique_labels
    from sklearn.utils.validation import check_is_fitted, column_or_1d, validate_data
except ImportError as exc:  # pragma: no cover - exercised in a subprocess test
    raise ImportError(
        "fastmlp.MLPClassifier and fastmlp.MLPRegressor need scikit-learn (>= 1.6): "
        "pip install fastmlp[sklearn]") from exc

try:
    from sklearn.callback import CallbackSupportMixin, with_callbacks
except ImportError:  # scikit-learn < 1.9: no callback API, so nothing to call back
    CallbackSupportMixin = None

    def with_callbacks(method):
        return method

from fastmlp import _core, _validation
from fastmlp._flat import FlatParams
from fastmlp.errors import DivergenceError
from fastmlp.threads import scipy_blas_serial

__all__ = ["MLPClassifier", "MLPRegressor", "SolverDivergedError", "InvalidParameterError"]

_STOCHASTIC = ("sgd", "adam")
_SCIPY_BEFORE_1_15 = tuple(int(p) for p in scipy.__version__.split(".")[:2]) < (1, 15)
_NON_FINITE_MSG = ("Solver produced non-finite parameter weights. The input data may contain "
                   "large values and need to be preprocessed.")


class InvalidParameterError(ValueError, TypeError):
    """A constructor parameter has a value scikit-learn refuses (raised by ``fit``)."""


class SolverDivergedError(DivergenceError, ValueError):
    """Training produced a non-finite loss or gradient.

    A ValueError, as scikit-learn raises for non-finite weights, and a
    ``fastmlp.DivergenceError``.  The parameters are those of the last good step.
    """


# --------------------------------------------------------------------------------------
# Parameter validation (scikit-learn's constraints for its MLPs, checked at fit time)
# --------------------------------------------------------------------------------------

def _interval(kind, lo, hi, closed):
    """(predicate, description) for a number in an interval; lo/hi None = unbounded."""
    integral = kind == "int"

    def ok(v):
        if not isinstance(v, numbers.Integral if integral else numbers.Real):
            return False
        if not isinstance(v, numbers.Integral) and math.isnan(v):
            return False
        low = -math.inf if lo is None else lo
        high = math.inf if hi is None else hi
        if (v < low) if closed in ("left", "both") else (v <= low):
            return False
        if (v > high) if closed in ("right", "both") else (v >= high):
            return False
        return True

    fmt = (lambda b, d: d if b is None else (str(b) if integral else str(float(b))))
    desc = (f"{'an int' if integral else 'a float'} in the range "
            f"{'[' if closed in ('left', 'both') else '('}{fmt(lo, '-inf')}, "
            f"{fmt(hi, 'inf')}{']' if closed in ('right', 'both') else ')'}")
    return ok, desc


def _options(*values):
    return (lambda v: isinstance(v, str) and v in values,
            "a str among {" + ", ".join(map(repr, sorted(values))) + "}")


def _is_bool(v):
    return isinstance(v, (bool, np.bool_))


_BOOL = (_is_bool, "an instance of 'bool' or 'numpy.bool_'")


def _is_array_like(v):
    return (not sp.issparse(v) and not np.isscalar(v)
            and (hasattr(v, "__len__") or hasattr(v, "shape") or hasattr(v, "__array__")))


_CONSTRAINTS = {
    "hidden_layer_sizes": [(_is_array_like, "an array-like"), _interval("int", 1, None, "left")],
    "activation": [_options(*_core.HIDDEN_ACTIVATIONS),
                   (lambda v: isinstance(v, (list, tuple)) and len(v) > 0
                    and all(isinstance(a, str) and a in _core.HIDDEN_ACTIVATIONS for a in v),
                    "a list of those names, one per hidden layer")],
    "solver": [_options("lbfgs", "sgd", "adam")],
    "alpha": [_interval("real", 0, None, "left")],
    "batch_size": [_options("auto"), _interval("int", 1, None, "left")],
    "learning_rate": [_options("constant", "invscaling", "adaptive")],
    "learning_rate_init": [_interval("real", 0, None, "neither")],
    "power_t": [_interval("real", 0, None, "left")],
    "max_iter": [_interval("int", 1, None, "left")],
    "shuffle": [_BOOL],
    "random_state": [_interval("int", 0, 2**32 - 1, "both"),
                     (lambda v: isinstance(v, np.random.RandomState),
                      "an instance of 'numpy.random.mtrand.RandomState'"),
                     (lambda v: v is None, "None")],
    "tol": [_interval("real", 0, None, "left")],
    "verbose": [_interval("int", 0, None, "left"), _BOOL],
    "warm_start": [_BOOL],
    "momentum": [_interval("real", 0, 1, "both")],
    "nesterovs_momentum": [_BOOL],
    "early_stopping": [_BOOL],
    "validation_fraction": [_interval("real", 0, 1, "left")],
    "beta_1": [_interval("real", 0, 1, "left")],
    "beta_2": [_interval("real", 0, 1, "left")],
    "epsilon": [_interval("real", 0, None, "neither")],
    "n_iter_no_change": [_interval("int", 1, None, "left"),
                         (lambda v: isinstance(v, numbers.Real)
                          and not isinstance(v, numbers.Integral) and v == math.inf,
                          "inf")],
    "max_fun": [_interval("int", 1, None, "left")],
    "dropout": [_interval("real", 0, 1, "left"),
                (lambda v: isinstance(v, (list, tuple)) and len(v) > 0
                 and all(_interval("real", 0, 1, "left")[0](p) for p in v),
                 "a list of such floats, one per hidden layer")],
}


def _is_class_weight_list(v):
    return isinstance(v, list) and all(isinstance(d, dict) for d in v)


# Beyond scikit-learn's MLPClassifier: the class_weight of its other classifiers (a list of
# dicts, one per label column, for multilabel targets, as RandomForestClassifier takes).
_CLASS_WEIGHT = [_options("balanced"), (lambda v: isinstance(v, dict), "a dict"),
                 (_is_class_weight_list, "a list of dicts"), (lambda v: v is None, "None")]


def _shuffled(sample_idx, random_state):
    """``sklearn.utils.shuffle(sample_idx, random_state=…)``: the same draw (one
    RandomState.permutation of n), without its per-call validation overhead."""
    return sample_idx[random_state.permutation(sample_idx.shape[0])]


def _rows(X, dtype):
    """What the core takes for validated X: a C-contiguous ndarray of ``dtype`` (no copy
    when X already is one), or for sparse X its CSR rows of ``dtype``
    (``_core.SparseRows``: the stored values only, never n_samples × n_features)."""
    if isinstance(X, _core.SparseRows):
        return X if X.dtype == dtype else _core.SparseRows(
            X.data.astype(dtype), X.indices, X.indptr, X.n_cols)
    if sp.issparse(X):
        return _validation.as_sparse_rows("X", X, dtype, X.shape[1])
    return np.ascontiguousarray(X, dtype=dtype)


def _check_sample_weight(sample_weight, X):
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


class _FitTasks:
    """scikit-learn's callback tasks of one fit: the root task (the whole fit) and one
    subtask per epoch (per L-BFGS iteration).

    The hooks get ``data``, the keyword arguments for the data the subtasks train on
    (``_BaseMLP._hook_data``), and ``fitted_estimator``: a copy of the estimator with the
    parameters of that moment, built only if a hook asks for it.
    """

    def __init__(self, est, root, data, name):
        self.est, self.root, self.data, self.name = est, root, data, name
        self.task = None

    def begin(self, snapshot=None):
        """Open the next subtask and call its begin hooks."""
        self.task = self.root.subcontext(task_name=self.name)
        self.task.call_on_fit_task_begin(estimator=self.est, reconstruction_attributes=snapshot,
                                         **self.data)

    def end(self, snapshot):
        """Close the open subtask; True when a callback asks to stop."""
        task, self.task = self.task, None
        return task.call_on_fit_task_end(estimator=self.est,
                                         reconstruction_attributes=snapshot, **self.data)

    def abandon(self):
        """Close a subtask that did not complete (training stopped inside it): its end
        hooks are called without data, as scikit-learn does for an unfinished task."""
        if self.task is not None:
            task, self.task = self.task, None
            task.call_on_fit_task_end(estimator=self.est)


class _Optimizer:
    """scikit-learn's SGD / Adam optimizer: hyper-parameters frozen at creation, the
    current learning rate, and the state the core updates in place (velocity, or Adam's
    two moments, in one flat array) with Adam's step count ``t``."""

    def __init__(self, est, layout, dtype):
        self.solver = est.solver
        self.learning_rate_init = est.learning_rate_init
        self.learning_rate = float(est.learning_rate_init)
        self.lr_schedule = est.learning_rate
        self.momentum = float(est.momentum)
        self.power_t = est.power_t
        self.beta_1, self.beta_2 = float(est.beta_1), float(est.beta_2)
        self.epsilon = float(est.epsilon)
        self.t = 0
        if self.solver == "adam":
            self.kind = "adam"
        elif self.momentum == 0:
            # v = 0·v − η·g, θ + v: bit for bit θ − η·g, so plain SGD without a velocity.
            self.kind = "sgd"
        else:
            self.kind = "nesterov" if est.nesterovs_momentum else "momentum"
        self.state = np.zeros(layout.state_size(self.kind), dtype=dtype)

    def step_size(self):
        """Learning rate handed to the core: η for SGD, η_init for Adam (the core applies
        Adam's bias correction)."""
        return self.learning_rate_init if self.kind == "adam" else self.learning_rate

    def attach(self, engine):
        engine.set_optimizer(self.kind, self.state, momentum=self.momentum,
                             beta1=self.beta_1, beta2=self.beta_2, eps=self.epsilon)
        engine.adam_steps = self.t

    def read_back(self, engine):
        if self.kind == "adam":
            self.t = engine.adam_steps
            if self.t:
                self.learning_rate = _core.adam_step_size(
                    self.learning_rate_init, self.beta_1, self.beta_2, self.t)

    def iteration_ends(self, time_step):
        if self.solver == "sgd" and self.lr_schedule == "invscaling":
            self.learning_rate = float(self.learning_rate_init) / (time_step + 1) ** self.power_t

    def trigger_stopping(self, msg, verbose):
        if self.solver != "sgd" or self.lr_schedule != "adaptive":
            if verbose:
                print(msg + " Stopping.")
            return True
        if self.learning_rate <= 1e-6:
            if verbose:
                print(msg + " Learning rate too small. Stopping.")
            return True
        self.learning_rate /= 5.0
        if verbose:
            print(msg + " Setting learning rate to %f" % self.learning_rate)
        return False


# --------------------------------------------------------------------------------------
# The shared estimator
# --------------------------------------------------------------------------------------

class _BaseMLP(*(() if CallbackSupportMixin is None else (CallbackSupportMixin,)),
               BaseEstimator):
    """Training, prediction and state shared by both estimators.

    With scikit-learn >= 1.9 it takes scikit-learn's callbacks (``set_callbacks``, from
    ``sklearn.callback.CallbackSupportMixin``); with an older scikit-learn there is no
    ``set_callbacks``, which is how scikit-learn's meta-estimators recognise an estimator
    without callback support.
    """

    # --------------------------------------------------------------- parameters
    def _check_params(self):
        constraints = dict(_CONSTRAINTS, **self._extra_constraints)
        for name, options in constraints.items():
            value = getattr(self, name)
            if not any(ok(value) for ok, _ in options):
                descs = [d for _, d in options]
                desc = descs[0] if len(descs) == 1 else ", ".join(descs[:-1]) + " or " + descs[-1]
                raise InvalidParameterError(
                    f"The {name!r} parameter of {type(self).__name__} must be {desc}. "
                    f"Got {value!r} instead.")

    def _hidden_sizes(self):
        sizes = self.hidden_layer_sizes
        sizes = list(sizes) if hasattr(sizes, "__iter__") else [sizes]
        if np.any(np.array(sizes) <= 0):
            raise ValueError(f"hidden_layer_sizes must be > 0, got {sizes}.")
        for s in sizes:
            if isinstance(s, (bool, np.bool_)) or not isinstance(s, numbers.Integral):
                raise ValueError(f"hidden_layer_sizes must be integers, got {sizes}.")
        return [int(s) for s in sizes]

    # --------------------------------------------------------------- parameter buffer
    def _set_theta(self, theta, units):
        """Make ``theta`` the parameters: coefs_/intercepts_ become views into it."""
        self._theta = theta
        self._layer_units = tuple(int(u) for u in units)
        self._flat = FlatParams(_core.Layout(self._layer_units), theta)
        self.coefs_, self.intercepts_ = list(self._flat.weights), list(self._flat.biases)
        self._views_ref = (tuple(self.coefs_), tuple(self.intercepts_))

    def _views_current(self):
        ref = getattr(self, "_views_ref", None)
        if ref is None or getattr(self, "_theta", None) is None:
            return False
        coefs, intercepts = getattr(self, "coefs_", None), getattr(self, "intercepts_", None)
        return (isinstance(coefs, list) and isinstance(intercepts, list)
                and len(coefs) == len(ref[0]) and len(intercepts) == len(ref[1])
                and all(a is b for a, b in zip(coefs, ref[0]))
                and all(a is b for a, b in zip(intercepts, ref[1])))

    def _packed_from_attributes(self):
        """(theta, units) packed from coefs_/intercepts_ as they are now (user-assigned,
        say), in the dtype scikit-learn's arithmetic on them would use."""
        coefs = [np.asarray(c) for c in self.coefs_]
        intercepts = [np.asarray(b) for b in self.intercepts_]
        units = [c.shape[0] for c in coefs] + [coefs[-1].shape[1]]
        dtype = np.result_type(np.float32, *coefs, *intercepts)
        if dtype not in (np.float32, np.float64):
            dtype = np.dtype(np.float64)
        layout = _core.Layout(units)
        theta = np.empty(layout.n_params, dtype=dtype)
        for (W, b), c, i in zip(zip(*layout.views(theta)), coefs, intercepts):
            W[...] = c
            b[...] = i
        return theta, units

    def _sync_theta(self):
        """Keep the flat buffer authoritative: if coefs_/intercepts_ were replaced (by the
        user, or by unpickling), pack them into a fresh buffer and re-view them."""
        if not self._views_current():
            best_alias = (getattr(self, "_best_theta", None) is not None
                          and getattr(self, "_best_theta", None) is getattr(self, "_theta", None))
            theta, units = self._packed_from_attributes()
            self._set_theta(theta, units)
            if best_alias:
                self._best_theta = theta
        return self._theta

    def _promote(self, dtype):
        """Switch the parameters (and optimizer state, best parameters) to ``dtype``."""
        old = self._theta
        new = old.astype(dtype)
        best = getattr(self, "_best_theta", None)
        self._set_theta(new, self._layer_units)
        if best is old:
            self._best_theta = new
        elif best is not None:
            self._best_theta = best.astype(dtype)
        opt = getattr(self, "_optimizer", None)
        if opt is not None:
            opt.state = opt.state.astype(dtype)

    def _engine(self):
        """(engine, grad): the training engine over ``_theta`` for the current settings."""
        return self._flat.engine(self.activation, self.out_activation_, self._engine_loss(),
                                 float(self.alpha), True)

    def __getstate__(self):
        if hasattr(self, "coefs_"):
            self._sync_theta()
        state = super().__getstate__()
        state = dict(state)
        for name in ("_flat", "_views_ref", "coefs_", "intercepts_"):
            state.pop(name, None)
        return state

    def __setstate__(self, state):
        super().__setstate__(state)
        theta = getattr(self, "_theta", None)
        if theta is not None:
            best = getattr(self, "_best_theta", None)
            # The core trains in place: a read-only or memory-mapped buffer (joblib's
            # mmap_mode) is copied into a plain writable array.
            if type(theta) is not np.ndarray or not theta.flags.writeable:
                theta = np.array(theta, order="C")
            self._set_theta(theta, self._layer_units)
            self._best_theta = theta if best is state.get("_theta") else best
            opt = getattr(self, "_optimizer", None)
            if opt is not None and (type(opt.state) is not np.ndarray
                                    or not opt.state.flags.writeable):
                opt.state = np.array(opt.state, order="C")

    # --------------------------------------------------------------- fitting
    def _dropout_rates(self, n_hidden):
        """The dropout probability of each of n_hidden layers (MLP's rule, at fit)."""
        rates = _validation.check_dropout("dropout", self.dropout, n_hidden)
        return list(rates) if isinstance(rates, tuple) else [rates] * n_hidden

    def _attach_dropout(self, engine):
        """Dropout for this fit's updating steps.  The masks' counter is drawn from
        random_state only when some layer drops, so that without dropout every draw is
        scikit-learn's."""
        rates = self._dropout_rates(len(self._layer_units) - 2)
        if any(rates):
            engine.set_dropout(rates, int(self._random_state.randint(2**31 - 1)) * 2**32
                               + int(self._random_state.randint(2**31 - 1)))
        elif any(engine.dropout):
            engine.set_dropout(0.0)

    def _layer_activations(self, n_hidden):
        """The hidden activation of each of n_hidden layers (at least one entry, for the
        initialisation of a network without hidden layers)."""
        if isinstance(self.activation, str):
            return [self.activation] * max(n_hidden, 1)
        if len(self.activation) != n_hidden:
            raise ValueError(f"activation: {len(self.activation)} names for {n_hidden} "
                             "hidden layers; give one per hidden layer, or one name")
        return list(self.activation)

    def _initialize(self, y, layer_units, dtype):
        self.n_iter_ = 0
        self.t_ = 0
        self.n_outputs_ = y.shape[1]
        self.n_layers_ = len(layer_units)
        self.out_activation_ = self._output_activation()
        layout = _core.Layout(layer_units)
        theta = np.empty(layout.n_params, dtype=dtype)
        # Glorot-style uniform bounds, √(6/(fan_in + fan_out)) (√2 for logistic); each
        # layer draws its weights then its biases from random_state, in float64.
        acts = self._layer_activations(len(layer_units) - 2)
        for l, (W, b) in enumerate(zip(*layout.views(theta))):
            # (per-layer activations: the one after layer l; the output layer's factor
            # follows the last hidden layer's)
            factor = 2.0 if acts[min(l, len(acts) - 1)] == "logistic" else 6.0
            bound = np.sqrt(factor / (W.shape[0] + W.shape[1]))
            W[...] = self._random_state.uniform(-bound, bound, W.shape)
            b[...] = self._random_state.uniform(-bound, bound, W.shape[1])
        self._set_theta(theta, layer_units)
        self._best_theta = theta.copy()
        if self.solver in _STOCHASTIC:
            self.loss_curve_ = []
            self._no_improvement_count = 0
            if self.early_stopping:
                self.validation_scores_ = []
                self.validation_loss_curve_ = []
                self.best_validation_score_ = -np.inf
                self.best_loss_ = None
            else:
                self.best_loss_ = np.inf
                self.validation_scores_ = None
                self.validation_loss_curve_ = None
                self.best_validation_score_ = None

    def _fit(self, X, y, sample_weight=None, incremental=False):
        self._check_params()
        hidden = self._hidden_sizes()
        self._layer_activations(len(hidden))
        if any(self._dropout_rates(len(hidden))) and self.solver not in _STOCHASTIC:
            raise ValueError("dropout: L-BFGS needs a deterministic objective; use "
                             "solver='sgd' or 'adam' with dropout, or dropout=0")
        first_pass = not hasattr(self, "coefs_") or (not self.warm_start and not incremental)
        X, y, class_sw = self._validate_input(X, y, incremental, reset=first_pass)
        if sample_weight is not None:
            sample_weight = _check_sample_weight(sample_weight, X)
        if class_sw is not None:
            # As scikit-learn's classifiers: a sample weighs sample_weight · its class weight.
            sample_weight = class_sw if sample_weight is None else sample_weight * class_sw
        if y.ndim == 1:
            y = y.reshape((-1, 1))
        self.n_outputs_ = y.shape[1]
        layer_units = [X.shape[1]] + hidden + [self.n_outputs_]
        self._random_state = check_random_state(self.random_state)
        if first_pass:
            self._initialize(y, layer_units, X.dtype)
        else:
            self._sync_theta()
            if tuple(layer_units) != self._layer_units:
                raise ValueError(
                    f"warm_start/partial_fit: the data and hidden_layer_sizes give layer sizes "
                    f"{tuple(layer_units)}, but the fitted network has {self._layer_units}; "
                    "refit without warm_start")
        stochastic = self.solver in _STOCHASTIC
        root = self._callback_root(1 if stochastic and incremental
                                   else self.max_iter if stochastic
                                   # scikit-learn's bound for L-BFGS (LogisticRegression)
                                   else self.max_iter + 1)
        if root is not None:
            fit_data = self._hook_data(X, y, sample_weight)
            root.call_on_fit_task_begin(estimator=self, **fit_data)
        with sklearn.config_context(skip_parameter_validation=True):
            if stochastic:
                self._fit_stochastic(X, y, sample_weight, incremental, root)
            else:
                self._fit_lbfgs(X, y, sample_weight, root)
        if not np.all(np.isfinite(self._theta)):
            raise ValueError(_NON_FINITE_MSG)
        if root is not None:
            root.call_on_fit_task_end(estimator=self, reconstruction_attributes={}, **fit_data)
        return self

    # --------------------------------------------------------------- callbacks
    def _callback_root(self, max_subtasks):
        """The root callback context of this fit, or None when there is nobody to call
        back (no callbacks set nor propagated from a meta-estimator, or a scikit-learn
        without the callback API): then the fit pays nothing for them."""
        if CallbackSupportMixin is None or not (hasattr(self, "_skl_callbacks")
                                                or hasattr(self, "_parent_callback_ctx")):
            return None
        return self._init_callback_context(max_subtasks=max_subtasks)

    def _hook_data(self, X, y, sample_weight):
        """Keyword arguments of the callback hooks for training data X and the encoded
        targets y: y goes to the hooks as labels (as fit takes them), decoded only if a
        hook asks for it."""
        return dict(X=X, y=lambda: self._predict_from_output(y),
                    metadata=None if sample_weight is None else {"sample_weight": sample_weight})

    def _snapshot(self):
        """Reconstruction attributes of the fitted state right now: copies of what the
        training loop goes on changing in place."""
        attrs = {"coefs_": [c.copy() for c in self.coefs_],
                 "intercepts_": [b.copy() for b in self.intercepts_]}
        for name in ("n_iter_", "t_", "loss_", "best_loss_", "best_validation_score_"):
            if hasattr(self, name):
                attrs[name] = getattr(self, name)
        for name in ("loss_curve_", "validation_scores_", "validation_loss_curve_"):
            if getattr(self, name, None) is not None:
                attrs[name] = list(getattr(self, name))
        return attrs

    def _fit_lbfgs(self, X, y, sample_weight, root=None):
        units = self._layer_units
        # scipy sees the parameters as scikit-learn packs them, [W1, W2, …, b1, b2, …], in
        # their dtype, so that its arithmetic runs in the same order.  scipy (>= 1.x)
        # evaluates the objective at x cast to x0's dtype — float32 parameters for float32
        # data — but returns its iterate in float64, so coefs_ end up float64, as in
        # scikit-learn.  The objective is computed in the dtype numpy's promotion of x and X
        # gives, like scikit-learn's forward pass, by one engine per dtype met.
        layout = self._flat.layout
        sk_to_engine, engine_to_sk = layout.sklearn_order()
        engines = {}

        def setup(dtype):
            if dtype not in engines:
                flat = FlatParams(layout, np.empty(layout.n_params, dtype=dtype))
                engine, grad = flat.engine(self.activation, self.out_activation_,
                                           self._engine_loss(), float(self.alpha), True)
                sw = (None if sample_weight is None
                      else np.ascontiguousarray(sample_weight, dtype=dtype))
                engines[dtype] = (engine, flat.theta, grad, _rows(X, dtype),
                                  np.ascontiguousarray(y, dtype=dtype), sw)
            return engines[dtype]

        # One callback subtask per L-BFGS iteration.  scipy reports only the ends of
        # iterations, so an iteration's task begins at its first evaluation; one that
        # never completes (max_fun reached inside it) is abandoned after the run.
        tasks = (None if root is None
                 else _FitTasks(self, root, self._hook_data(X, y, sample_weight), "iteration"))
        n_iters, stopped = [0], []

        def snapshot(x):
            def attrs():
                coefs, intercepts = layout.views(np.ascontiguousarray(x[engine_to_sk]))
                return {"coefs_": coefs, "intercepts_": intercepts, "n_iter_": n_iters[0]}
            return attrs

        def iteration_ends(intermediate_result):
            n_iters[0] += 1
            if tasks.end(snapshot(intermediate_result.x.copy())):
                stopped.append(True)
                raise StopIteration

        def loss_grad(x):
            if tasks is not None and tasks.task is None and n_iters[0] <= self.max_iter:
                tasks.begin(snapshot(x.copy()))
            dtype = np.result_type(x.dtype, X.dtype)
            if dtype not in (np.float32, np.float64):
                dtype = np.dtype(np.float64)
            engine, theta, grad, Xd, Yd, sw = setup(dtype)
            theta[...] = x[engine_to_sk]
            try:
                loss = engine.train_step(Xd, Yd, None, 1.0, False, sw)
            except DivergenceError:
                return math.inf, np.zeros_like(x)
            return loss, grad[sk_to_engine]

        options = {"maxfun": self.max_fun, "maxiter": self.max_iter, "gtol": self.tol}
        if _SCIPY_BEFORE_1_15:
            options["iprint"] = 1 if (self.verbose is True or self.verbose >= 1) else -1
        with scipy_blas_serial():
            result = scipy.optimize.minimize(
                loss_grad, self._theta[sk_to_engine], method="L-BFGS-B", jac=True,
                options=options, callback=None if tasks is None else iteration_ends)
        if tasks is not None:
            tasks.abandon()
        self.n_iter_ = min(result.nit, self.max_iter)
        if result.status != 0 and not stopped:
            msg = (f"lbfgs failed to converge after {self.n_iter_} iteration(s) "
                   f"(status={result.status}):\n{result.message}\n")
            if self.n_iter_ == self.max_iter:
                msg += ("\nIncrease the number of iterations to improve the convergence "
                        f"(max_iter={self.max_iter}).")
            msg += ("\nYou might also want to scale the data as shown in:\n"
                    "    https://scikit-learn.org/stable/modules/preprocessing.html")
            warnings.warn(msg, ConvergenceWarning, stacklevel=3)
        self.loss_ = result.fun
        x = np.asarray(result.x)
        if x.dtype not in (np.float32, np.float64):
            x = x.astype(np.float64)
        best_alias = getattr(self, "_best_theta", None) is self._theta
        self._set_theta(np.ascontiguousarray(x[engine_to_sk]), units)
        if best_alias:
            self._best_theta = self._theta

    def _fit_stochastic(self, X, y, sample_weight, incremental, root=None):
        dtype = np.result_type(X.dtype, self._theta.dtype)
        if self._theta.dtype != dtype:
            self._promote(dtype)
        if not incremental or getattr(self, "_optimizer", None) is None:
            self._optimizer = _Optimizer(self, self._flat.layout, dtype)
        opt = self._optimizer
        if opt.state.dtype != dtype:
            opt.state = opt.state.astype(dtype)
        if self.early_stopping and incremental:
            raise ValueError("partial_fit does not support early_stopping=True")
        early_stopping = self.early_stopping
        if not sp.issparse(X):
            X = _rows(X, X.dtype)
        if early_stopping:
            # Only binary classification is stratified (n_outputs_ == 1), as in scikit-learn.
            stratify = y if (is_classifier(self) and self.n_outputs_ == 1) else None
            if sample_weight is None:
                X_train, X_val, y_train, y_val = train_test_split(
                    X, y, random_state=self._random_state,
                    test_size=self.validation_fraction, stratify=stratify)
                sw_train = sw_val = None
            else:
                X_train, X_val, y_train, y_val, sw_train, sw_val = train_test_split(
                    X, y, sample_weight, random_state=self._random_state,
                    test_size=self.validation_fraction, stratify=stratify)
            if X_val.shape[0] < 2:
                raise ValueError("The validation set is too small. Increase "
                                 "'validation_fraction' or the size of your dataset.")
            Y_val = np.ascontiguousarray(y_val, dtype=dtype)
            if is_classifier(self):
                y_val = self._label_binarizer.inverse_transform(y_val)
            X_val = _rows(X_val, dtype)
            sw_val_core = None if sw_val is None else np.ascontiguousarray(sw_val, dtype=dtype)
            if getattr(self, "validation_scores_", None) is None:
                self.validation_scores_ = []
                self.best_validation_score_ = -np.inf
            if getattr(self, "validation_loss_curve_", None) is None:
                self.validation_loss_curve_ = []
            # Its own engine over the same parameters: the training engine's gradient
            # buffer and workspace (sized for a minibatch) stay as training left them.
            val_engine, _ = FlatParams(self._flat.layout, self._theta).engine(
                self.activation, self.out_activation_, self._engine_loss(), float(self.alpha),
                True)
        else:
            X_train, y_train, sw_train = X, y, sample_weight
            X_val = y_val = Y_val = sw_val = sw_val_core = val_engine = None
        if getattr(self, "loss_curve_", None) is None:
            self.loss_curve_ = []
        if getattr(self, "best_loss_", None) is None and not early_stopping:
            self.best_loss_ = np.inf
        if not hasattr(self, "_no_improvement_count"):
            self._no_improvement_count = 0
        X_core = _rows(X_train, dtype)    # (callbacks get X_train as it came)
        Y_train = np.ascontiguousarray(y_train, dtype=dtype)
        if sw_train is not None:
            sw_train = np.ascontiguousarray(sw_train, dtype=dtype)

        n_samples = X_train.shape[0]
        sample_idx = np.arange(n_samples, dtype=np.intp)
        if self.batch_size == "auto":
            batch_size = min(200, n_samples)
        else:
            if self.batch_size > n_samples:
                warnings.warn("Got `batch_size` less than 1 or larger than sample size. It is "
                              "going to be clipped")
            batch_size = int(np.clip(self.batch_size, 1, n_samples))

        engine, _ = self._engine()
        opt.attach(engine)
        self._attach_dropout(engine)
        tasks = (None if root is None
                 else _FitTasks(self, root, self._hook_data(X_train, y_train, sw_train), "epoch"))
        try:
            self.n_iter_ = 0
            for _ in range(self.max_iter):
                if tasks is not None:
                    tasks.begin(self._snapshot)
                if self.shuffle:
                    sample_idx = _shuffled(sample_idx, self._random_state)
                # One GIL-free call: every minibatch step of the epoch.
                total, status, steps = engine.fit_epoch(
                    X_core, Y_train, None, sample_idx if self.shuffle else None, batch_size,
                    opt.step_size(), sw_train)
                opt.read_back(engine)
                if status != 0:
                    where = (f"epoch {self.n_iter_ + 1}, minibatch step {steps + 1} of "
                             f"{-(-n_samples // batch_size)}")
                    if early_stopping:
                        warnings.warn(
                            f"Stochastic Optimizer: non-finite loss or gradient at {where}; "
                            "training stopped and the parameters with the best validation "
                            "score were restored. Lower learning_rate_init or scale the data.",
                            ConvergenceWarning)
                        if tasks is not None:
                            tasks.abandon()
                        break
                    raise SolverDivergedError(
                        f"{_NON_FINITE_MSG} (fastmlp: non-finite loss or gradient at {where}; "
                        "the step was not taken and the parameters are those of the last good "
                        "step — lower learning_rate_init or scale the data.)")
                self.n_iter_ += 1
                self.loss_ = total / n_samples
                self.t_ += n_samples
                self.loss_curve_.append(self.loss_)
                if self.verbose:
                    print("Iteration %d, loss = %.8f" % (self.n_iter_, self.loss_))
                if early_stopping:
                    self.validation_loss_curve_.append(
                        self._validation_loss(val_engine, X_val, Y_val, sw_val_core))
                self._update_no_improvement_count(early_stopping, X_val, y_val, sw_val)
                opt.iteration_ends(self.t_)
                converged = False
                if self._no_improvement_count > self.n_iter_no_change:
                    if early_stopping:
                        msg = ("Validation score did not improve more than tol=%f for %d "
                               "consecutive epochs." % (self.tol, self.n_iter_no_change))
                    else:
                        msg = ("Training loss did not improve more than tol=%f for %d "
                               "consecutive epochs." % (self.tol, self.n_iter_no_change))
                    converged = opt.trigger_stopping(msg, self.verbose)
                    if not converged:
                        self._no_improvement_count = 0
                # A callback's stop ends the fit like convergence: no max_iter warning.
                if tasks is not None and tasks.end(self._snapshot):
                    converged = True
                if converged or incremental:
                    break
                if self.n_iter_ == self.max_iter:
                    warnings.warn(
                        "Stochastic Optimizer: Maximum iterations (%d) reached and the "
                        "optimization hasn't converged yet." % self.max_iter,
                        ConvergenceWarning)
        except KeyboardInterrupt:
            warnings.warn("Training interrupted by user.")
            if tasks is not None:
                tasks.abandon()
        if early_stopping:
            # Restore the best parameters; from here on they are the live ones (as in
            # scikit-learn, where coefs_ becomes the very list of best coefficients).
            self._theta[...] = self._best_theta
            self._best_theta = self._theta

    def _validation_loss(self, engine, X_val, Y_val, sw_val):
        """The training objective (loss plus L2 term) on the validation split, at the
        current parameters: one evaluation without update.  NaN when it is not finite."""
        try:
            return engine.train_step(X_val, Y_val, None, 0.0, False, sw_val)
        except DivergenceError:
            return math.nan

    def _update_no_improvement_count(self, early_stopping, X_val, y_val, sw_val):
        if early_stopping:
            score = self._score_prepared(X_val, y_val, sw_val)
            self.validation_scores_.append(score)
            if self.verbose:
                print("Validation score: %f" % self.validation_scores_[-1])
            last = self.validation_scores_[-1]
            if last < self.best_validation_score_ + self.tol:
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            if last > self.best_validation_score_:
                self.best_validation_score_ = last
                self._best_theta = self._theta.copy()
        else:
            if self.loss_curve_[-1] > self.best_loss_ - self.tol:
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            if self.loss_curve_[-1] < self.best_loss_:
                self.best_loss_ = self.loss_curve_[-1]

    def _score_prepared(self, X, y, sample_weight):
        """Validation score on already-validated data, NaN for non-finite predictions."""
        y_pred = self._predict_from_output(self._forward_prepared(X))
        if np.issubdtype(y_pred.dtype, np.floating) and not np.isfinite(y_pred).all():
            return np.nan
        return self._score_function(y, y_pred, sample_weight=sample_weight)

    # --------------------------------------------------------------- prediction
    def _forward_prepared(self, X):
        """Output layer for a validated X (dense or sparse), in the dtype numpy's
        promotion of X and the parameters gives, as scikit-learn's forward pass."""
        if self._views_current():
            theta, units = self._theta, self._layer_units
        else:
            theta, units = self._packed_from_attributes()
        dtype = np.result_type(X.dtype, theta.dtype)
        if dtype not in (np.float32, np.float64):
            dtype = np.dtype(np.float64)
        if theta is self._theta and theta.dtype == dtype:
            network = self._flat.network(self.activation, self.out_activation_)
        else:
            # Prediction in another dtype than the parameters', as numpy's promotion in
            # scikit-learn's forward pass would give, or from user-assigned coefs_.
            theta = np.array(theta, dtype=dtype, order="C")
            network = FlatParams(_core.Layout(units), theta).network(self.activation,
                                                                     self.out_activation_)
        out = np.empty((X.shape[0], units[-1]), dtype=dtype)
        return network.forward(_rows(X, dtype), out)

    def _forward(self, X):
        X = validate_data(self, X, accept_sparse=["csr", "csc"], reset=False)
        return self._forward_prepared(X)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags


_DOC_PARAMS = """
    The parameters, their defaults and meanings are scikit-learn's (1.9); see
    :class:`sklearn.neural_network.{name}`.  In brief:

    hidden_layer_sizes : array-like of int, default=(100,)
    activation : str or list of str, default='relu'
        Hidden-layer activation: scikit-learn's 'identity', 'logistic', 'tanh', 'relu',
        or beyond scikit-learn 'leaky_relu', 'elu', 'gelu', 'silu', 'softplus'
        (PyTorch's definitions); or a list of one name per hidden layer.
    solver : {{'lbfgs', 'sgd', 'adam'}}, default='adam'
    alpha : float, default=1e-4
        L2 penalty: alpha/(2·Σw)·Σ‖W‖² is added to each batch's loss.
    batch_size : int or 'auto', default='auto' (min(200, n_samples))
    learning_rate : {{'constant', 'invscaling', 'adaptive'}}, default='constant'
        Schedule of the sgd solver.
    learning_rate_init, power_t : float, defaults 0.001, 0.5
    max_iter : int, default=200
        Epochs for sgd/adam, iterations for lbfgs.
    shuffle : bool, default=True
    random_state : int, RandomState instance or None
        Drives the initial weights, the early-stopping split and the shuffling, in
        scikit-learn's order: the same value gives scikit-learn's model.
    tol : float, default=1e-4
    verbose : bool, default=False
    warm_start : bool, default=False
    momentum : float, default=0.9
    nesterovs_momentum : bool, default=True
    early_stopping : bool, default=False
    validation_fraction : float, default=0.1
    beta_1, beta_2, epsilon : float, defaults 0.9, 0.999, 1e-8
        Adam's hyper-parameters.
    n_iter_no_change : int, default=10
    max_fun : int, default=15000
        lbfgs: maximum number of loss evaluations.
    dropout : float or list of float, default=0.0
        Beyond scikit-learn: inverted dropout on the hidden layers' outputs during
        training (sgd, adam), one probability in [0, 1) or one per hidden layer; the
        masks are drawn from random_state (nothing is drawn when it is 0, so the default
        is exactly scikit-learn's fit).
"""


_DOC_BEYOND = """
    validation_loss_curve_ : list of float or None
        Beyond scikit-learn: with ``early_stopping``, after each epoch, scikit-learn's
        training objective (its loss plus alpha·Σ‖W‖²/(2·Σ weights), sample-weighted;
        what ``loss_`` is for lbfgs) evaluated on the whole validation split at the
        epoch's parameters; NaN where not finite.  Its L2 term is scaled by the split's
        total weight, not by a minibatch's as in ``loss_curve_``.  None without early
        stopping; absent, like ``validation_scores_``, after an lbfgs fit.

    Callbacks
    ---------
    ``set_callbacks(*callbacks)`` (scikit-learn >= 1.9): scikit-learn's callback protocol
    (``sklearn.callback``).  ``fit`` is one task with a subtask per epoch (per L-BFGS
    iteration), ``partial_fit`` one epoch; an ``on_fit_task_end`` returning True ends
    training after that subtask.  The hooks get the training part of X, y as labels, the
    sample weights training uses (class weights included) and, if asked, a copy of the
    estimator fitted up to that point.
"""


class MLPClassifier(ClassifierMixin, _BaseMLP):
    __doc__ = """Multi-layer perceptron classifier: scikit-learn's, trained by fastmlp's core.

    Log-loss with a softmax output for multiclass targets and logistic outputs for binary
    and multilabel ones.  A drop-in for :class:`sklearn.neural_network.MLPClassifier`:
    same parameters, attributes, methods and, for the same ``random_state``, the same model
    (to rounding).

    Parameters
    ----------""" + _DOC_PARAMS.format(name="MLPClassifier") + """
    class_weight : dict, list of dict, 'balanced' or None, default=None
        Beyond scikit-learn's MLPClassifier, with the meaning of its other classifiers:
        each sample's weight is multiplied by its class's weight ({class: weight}; for
        multilabel targets one {0: w, 1: w} per label column; 'balanced': n_samples /
        (n_classes · class count), per column for multilabel; not for ``partial_fit``).
        The fit equals the fit with that product passed as ``sample_weight``.

    Attributes
    ----------
    classes_, loss_, best_loss_, loss_curve_, validation_scores_, best_validation_score_,
    t_, coefs_, intercepts_, n_features_in_, feature_names_in_, n_iter_, n_layers_,
    n_outputs_, out_activation_ : as in scikit-learn.  ``coefs_[i]`` and ``intercepts_[i]``
    are views into one flat parameter buffer that the core trains in place.""" + _DOC_BEYOND + """
    """

    _extra_constraints = {"class_weight": _CLASS_WEIGHT}

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, solver="adam",
                 alpha=0.0001, batch_size="auto", learning_rate="constant",
                 learning_rate_init=0.001, power_t=0.5, max_iter=200, shuffle=True,
                 random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, max_fun=15000,
                 class_weight=None, dropout=0.0):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.max_fun = max_fun
        self.class_weight = class_weight
        self.dropout = dropout

    # scikit-learn's loss naming: log-loss, binary for logistic outputs.
    def _output_activation(self):
        return "softmax" if self._label_binarizer.y_type_ == "multiclass" else "logistic"

    def _engine_loss(self):
        return "sk_log_loss" if self.out_activation_ == "softmax" else "sk_binary_log_loss"

    def _score_function(self, y, y_pred, sample_weight=None):
        return accuracy_score(y, y_pred, sample_weight=sample_weight)

    def _validate_input(self, X, y, incremental, reset):
        X, y = validate_data(self, X, y, accept_sparse=["csr", "csc"], multi_output=True,
                             dtype=(np.float64, np.float32), reset=reset)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        if not hasattr(self, "classes_") or (not self.warm_start and not incremental):
            self._label_binarizer = LabelBinarizer()
            self._label_binarizer.fit(y)
            self.classes_ = self._label_binarizer.classes_
        else:
            classes = unique_labels(y)
            if self.warm_start:
                if set(classes) != set(self.classes_):
                    raise ValueError(
                        "warm_start can only be used where `y` has the same classes as in "
                        f"the previous call to fit. Previously got {self.classes_}, `y` has "
                        f"{classes}")
            elif len(np.setdiff1d(classes, self.classes_, assume_unique=True)):
                raise ValueError(f"`y` has classes not in `self.classes_`. `self.classes_` has "
                                 f"{self.classes_}. 'y' has {classes}.")
        class_sw = self._class_sample_weight(y, incremental)
        # bool, not int: keeps float32 training in float32
        y = self._label_binarizer.transform(y).astype(bool)
        return X, y, class_sw

    def _class_sample_weight(self, y, incremental):
        """The weight class_weight gives each sample of the labels y (None without
        class_weight), by scikit-learn's own rules (``compute_sample_weight``)."""
        if self.class_weight is None:
            return None
        if isinstance(self.class_weight, str) and incremental:
            raise ValueError(
                "class_weight='balanced' is not supported by partial_fit: one batch's class "
                "frequencies are not the data's. Compute the weights once, with "
                "sklearn.utils.class_weight.compute_class_weight('balanced', classes=classes, "
                "y=y) on (a large enough sample of) the training targets, and pass them as a "
                "dict.")
        if isinstance(self.class_weight, list) and y.ndim == 1:
            raise ValueError(
                "class_weight: a list of dicts (one per label column) is for multilabel "
                "targets; give a dict {class: weight} for these labels.")
        return compute_sample_weight(self.class_weight, y)

    @with_callbacks
    def fit(self, X, y, sample_weight=None):
        """Fit the model to X (n_samples, n_features) and labels y; returns self."""
        return self._fit(X, y, sample_weight=sample_weight, incremental=False)

    def _check_solver(self):
        if self.solver not in _STOCHASTIC:
            raise AttributeError("partial_fit is only available for stochastic optimizers. "
                                 f"{self.solver} is not stochastic.")
        return True

    def _partial_fit_first_call(self, classes):
        if getattr(self, "classes_", None) is None and classes is None:
            raise ValueError("classes must be passed on the first call to partial_fit.")
        if classes is not None:
            if getattr(self, "classes_", None) is not None:
                if not np.array_equal(self.classes_, unique_labels(classes)):
                    raise ValueError(f"`classes={classes!r}` is not the same as on last call "
                                     f"to partial_fit, was: {self.classes_!r}")
            else:
                self.classes_ = unique_labels(classes)
                return True
        return False

    @available_if(lambda est: est._check_solver())
    @with_callbacks
    def partial_fit(self, X, y, sample_weight=None, classes=None):
        """One epoch over (X, y); ``classes`` is required on the first call."""
        self._check_params()
        if self._partial_fit_first_call(classes):
            self._label_binarizer = LabelBinarizer()
            if type_of_target(y).startswith("multilabel"):
                self._label_binarizer.fit(y)
            else:
                self._label_binarizer.fit(classes)
        return self._fit(X, y, sample_weight=sample_weight, incremental=True)

    def _predict_from_output(self, y_pred):
        if self.n_outputs_ == 1:
            y_pred = y_pred.ravel()
        return self._label_binarizer.inverse_transform(y_pred)

    def predict(self, X):
        """Class labels for X."""
        check_is_fitted(self)
        return self._predict_from_output(self._forward(X))

    def predict_proba(self, X):
        """Class probabilities for X, columns ordered as ``classes_``."""
        check_is_fitted(self)
        y_pred = self._forward(X)
        if self.n_outputs_ == 1:
            y_pred = y_pred.ravel()
        if y_pred.ndim == 1:
            return np.vstack([1 - y_pred, y_pred]).T
        return y_pred

    def predict_log_proba(self, X):
        """log(predict_proba(X))."""
        y_prob = self.predict_proba(X)
        return np.log(y_prob, out=y_prob)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags


class MLPRegressor(RegressorMixin, _BaseMLP):
    __doc__ = """Multi-layer perceptron regressor: scikit-learn's, trained by fastmlp's core.

    A drop-in for :class:`sklearn.neural_network.MLPRegressor`: same parameters,
    attributes, methods and, for the same ``random_state``, the same model (to rounding).

    Parameters
    ----------
    loss : {'squared_error', 'poisson'}, default='squared_error'
        Half squared error with identity outputs, or half Poisson deviance with exp
        outputs (targets must be >= 0).  The squared error reproduces scikit-learn #8349:
        ``loss_`` is averaged over outputs while the gradient is that of the sum over
        outputs.""" + _DOC_PARAMS.format(name="MLPRegressor") + """
    Attributes
    ----------
    loss_, best_loss_, loss_curve_, validation_scores_, best_validation_score_, t_,
    coefs_, intercepts_, n_features_in_, feature_names_in_, n_iter_, n_layers_,
    n_outputs_, out_activation_ : as in scikit-learn.  ``coefs_[i]`` and ``intercepts_[i]``
    are views into one flat parameter buffer that the core trains in place.""" + _DOC_BEYOND + """
    """

    _extra_constraints = {"loss": [_options("squared_error", "poisson")]}

    def __init__(self, loss="squared_error", hidden_layer_sizes=(100,), activation="relu", *,
                 solver="adam", alpha=0.0001, batch_size="auto", learning_rate="constant",
                 learning_rate_init=0.001, power_t=0.5, max_iter=200, shuffle=True,
                 random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, max_fun=15000,
                 dropout=0.0):
        self.loss = loss
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.max_fun = max_fun
        self.dropout = dropout

    def _output_activation(self):
        return "exp" if self.loss == "poisson" else "identity"

    def _engine_loss(self):
        return "sk_poisson" if self.out_activation_ == "exp" else "sk_squared_error"

    def _score_function(self, y, y_pred, sample_weight=None):
        return r2_score(y, y_pred, sample_weight=sample_weight)

    def _validate_input(self, X, y, incremental, reset):
        X, y = validate_data(self, X, y, accept_sparse=["csr", "csc"], multi_output=True,
                             y_numeric=True, dtype=(np.float64, np.float32), reset=reset)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        if self.loss == "poisson" and np.any(y < 0):
            raise ValueError("Some value(s) of y are negative which is not allowed for "
                             "Poisson regression (loss='poisson').")
        return X, y, None

    @with_callbacks
    def fit(self, X, y, sample_weight=None):
        """Fit the model to X (n_samples, n_features) and targets y; returns self."""
        return self._fit(X, y, sample_weight=sample_weight, incremental=False)

    @with_callbacks
    def partial_fit(self, X, y, sample_weight=None):
        """One epoch over (X, y) (with solver='lbfgs': a whole fit from the current
        parameters, as in scikit-learn)."""
        self._check_params()
        return self._fit(X, y, sample_weight=sample_weight, incremental=True)

    def _predict_from_output(self, y_pred):
        return y_pred.ravel() if y_pred.shape[1] == 1 else y_pred

    def predict(self, X):
        """Predicted targets: (n_samples,) for one output, else (n_samples, n_outputs)."""
        check_is_fitted(self)
        return self._predict_from_output(self._forward(X))
