"""What both estimators share: parameters, the flat parameter buffer, initialisation, the
fit's set-up and the forward pass.  The fit loops are in ``_stochastic`` and ``_lbfgs``."""
import numbers

import numpy as np
import sklearn
from sklearn.base import BaseEstimator
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted, validate_data

from fastmlp import _core, _validation
from fastmlp._flat import FlatParams
from fastmlp.sklearn._callbacks import CallbackSupportMixin, callback_root, hook_data
from fastmlp.sklearn._data import check_sample_weight, rows
from fastmlp.sklearn._errors import NON_FINITE_MSG
from fastmlp.sklearn._lbfgs import fit_lbfgs
from fastmlp.sklearn._params import CONSTRAINTS, STOCHASTIC, check_params
from fastmlp.sklearn._predict import fast_output
from fastmlp.sklearn._stochastic import fit_stochastic


class BaseMLP(*(() if CallbackSupportMixin is None else (CallbackSupportMixin,)),
               BaseEstimator):
    """Training, prediction and state shared by both estimators.

    With scikit-learn >= 1.9 it takes scikit-learn's callbacks (``set_callbacks``, from
    ``sklearn.callback.CallbackSupportMixin``); with an older scikit-learn there is no
    ``set_callbacks``, which is how scikit-learn's meta-estimators recognise an estimator
    without callback support.
    """

    # --------------------------------------------------------------- parameters
    def _check_params(self):
        check_params(self, dict(CONSTRAINTS, **self._extra_constraints))

    def _hidden_sizes(self):
        sizes = self.hidden_layer_sizes
        sizes = list(sizes) if hasattr(sizes, "__iter__") else [sizes]
        if all(type(s) is int and s > 0 for s in sizes):
            return sizes                  # the common case, without numpy's overhead
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
        if self.solver in STOCHASTIC:
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
        X, y, sample_weight, root, fit_data = self._fit_begin(X, y, sample_weight,
                                                              incremental)
        with sklearn.config_context(skip_parameter_validation=True):
            if self.solver in STOCHASTIC:
                fit_stochastic(self, X, y, sample_weight, incremental, root)
            else:
                fit_lbfgs(self, X, y, sample_weight, root)
        self._fit_end(root, fit_data)
        return self

    def _fit_begin(self, X, y, sample_weight, incremental):
        """A fit up to its training loop: the parameters checked, X, y and the sample
        weights validated (y encoded, (n_samples, n_outputs)), the network initialised
        (or checked against the data for warm_start/partial_fit).  Returns (X, y,
        sample_weight, root, fit_data): the callback context and its hooks' data."""
        self._check_params()
        hidden = self._hidden_sizes()
        self._layer_activations(len(hidden))
        if any(self._dropout_rates(len(hidden))) and self.solver not in STOCHASTIC:
            raise ValueError("dropout: L-BFGS needs a deterministic objective; use "
                             "solver='sgd' or 'adam' with dropout, or dropout=0")
        first_pass = not hasattr(self, "coefs_") or (not self.warm_start and not incremental)
        X, y, class_sw = self._validate_input(X, y, incremental, reset=first_pass)
        if sample_weight is not None:
            sample_weight = check_sample_weight(sample_weight, X)
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
        stochastic = self.solver in STOCHASTIC
        root = callback_root(self, 1 if stochastic and incremental
                                   else self.max_iter if stochastic
                                   # scikit-learn's bound for L-BFGS (LogisticRegression)
                                   else self.max_iter + 1)
        fit_data = None
        if root is not None:
            fit_data = hook_data(self, X, y, sample_weight)
            root.call_on_fit_task_begin(estimator=self, **fit_data)
        return X, y, sample_weight, root, fit_data

    def _fit_end(self, root, fit_data):
        """A fit after its training loop: the parameters checked finite, the callbacks
        told."""
        if not np.all(np.isfinite(self._theta)):
            raise ValueError(NON_FINITE_MSG)
        if root is not None:
            root.call_on_fit_task_end(estimator=self, reconstruction_attributes={}, **fit_data)

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
        return network.forward(rows(X, dtype), out)

    def _forward(self, X):
        """Output layer for X as the user gives it: at the core's cost when X is the
        common case (``_predict.fast_output``), else after scikit-learn's full checks."""
        out = fast_output(self, X)
        if out is None:
            check_is_fitted(self)
            X = validate_data(self, X, accept_sparse=["csr", "csc"], reset=False)
            out = self._forward_prepared(X)
        return out

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags
