"""The minibatch fit (solver 'sgd' or 'adam'): scikit-learn's epoch loop around the core."""
import functools
import math
import warnings

import numpy as np
import scipy.sparse as sp
from sklearn.base import is_classifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split

from fastmlp._flat import FlatParams
from fastmlp.errors import DivergenceError
from fastmlp.sklearn._callbacks import fitted_attributes, subtasks
from fastmlp.sklearn._data import rows
from fastmlp.sklearn._errors import NON_FINITE_MSG, SolverDivergedError
from fastmlp.sklearn._optimizer import Optimizer


def fit_stochastic(est, X, y, sample_weight, incremental, root=None):
    """Fit ``est`` by minibatch SGD or Adam: one GIL-free call of the core per epoch, and
    between epochs scikit-learn's bookkeeping (learning-rate schedule, ``tol`` and
    ``n_iter_no_change``, early stopping, verbose output, callbacks).  X, y,
    sample_weight: validated, y encoded (n_samples, n_outputs); ``incremental``: one
    epoch, for ``partial_fit``; ``root``: the fit's callback context or None."""
    run = EpochLoop(est, X, y, sample_weight, incremental, root)
    # What no epoch changes, read once: on a small data set the epoch itself takes tens
    # of µs, and each attribute read or call around it adds to what MLP.fit does not pay.
    tasks, snapshot, shuffle_order, order = run.tasks, run.snapshot, run.shuffle_order, run.order
    fit_epoch, X_core, Y_train, sw_train = (run.engine.fit_epoch, run.X_core, run.Y_train,
                                            run.sw_train)
    batch_size, step_size, epoch_ends = run.batch_size, run.opt.step_size, run.epoch_ends
    try:
        for _ in range(est.max_iter):
            if tasks is not None:
                tasks.begin(snapshot)
            if shuffle_order is not None:
                shuffle_order(order)
            # One GIL-free call: every minibatch step of the epoch.
            total, status, steps = fit_epoch(X_core, Y_train, None, order, batch_size,
                                             step_size(), sw_train)
            if epoch_ends(total, status, steps):
                break
    except KeyboardInterrupt:
        run.interrupted()
    finally:
        run.close()


class EpochLoop:
    """One estimator's minibatch fit, between its epochs: the set-up (optimizer,
    early-stopping split, training arrays, engine, dropout, callbacks) at creation, then
    ``epoch_ends`` after each epoch the core ran and ``close`` once at the end.  The
    epochs themselves are the caller's: ``fit_stochastic`` runs them one estimator at a
    time, ``_shared_fit.fit_together`` for many estimators on the same batches.

    The set-up draws from ``est._random_state`` in scikit-learn's order (early-stopping
    split, then dropout's seed if some layer drops); each epoch's shuffle of ``order``
    (``shuffle_order``) is the next draw."""

    def __init__(self, est, X, y, sample_weight, incremental, root=None):
        dtype = np.result_type(X.dtype, est._theta.dtype)
        if est._theta.dtype != dtype:
            est._promote(dtype)
        if not incremental or getattr(est, "_optimizer", None) is None:
            est._optimizer = Optimizer(est, est._flat.layout, dtype)
        opt = est._optimizer
        if opt.state.dtype != dtype:
            opt.state = opt.state.astype(dtype)
        if est.early_stopping and incremental:
            raise ValueError("partial_fit does not support early_stopping=True")
        early_stopping = est.early_stopping
        if not sp.issparse(X):
            X = rows(X, X.dtype)
        if early_stopping:
            # Only binary classification is stratified (n_outputs_ == 1), as in scikit-learn.
            stratify = y if (is_classifier(est) and est.n_outputs_ == 1) else None
            if sample_weight is None:
                X_train, X_val, y_train, y_val = train_test_split(
                    X, y, random_state=est._random_state,
                    test_size=est.validation_fraction, stratify=stratify)
                sw_train = sw_val = None
            else:
                X_train, X_val, y_train, y_val, sw_train, sw_val = train_test_split(
                    X, y, sample_weight, random_state=est._random_state,
                    test_size=est.validation_fraction, stratify=stratify)
            if X_val.shape[0] < 2:
                raise ValueError("The validation set is too small. Increase "
                                 "'validation_fraction' or the size of your dataset.")
            Y_val = np.ascontiguousarray(y_val, dtype=dtype)
            if is_classifier(est):
                y_val = est._label_binarizer.inverse_transform(y_val)
            X_val = rows(X_val, dtype)
            sw_val_core = None if sw_val is None else np.ascontiguousarray(sw_val, dtype=dtype)
            if getattr(est, "validation_scores_", None) is None:
                est.validation_scores_ = []
                est.best_validation_score_ = -np.inf
            if getattr(est, "validation_loss_curve_", None) is None:
                est.validation_loss_curve_ = []
            # Its own engine over the same parameters: the training engine's gradient
            # buffer and workspace (sized for a minibatch) stay as training left them.
            self.val_engine, _ = FlatParams(est._flat.layout, est._theta).engine(
                est.activation, est.out_activation_, est._engine_loss(), float(est.alpha),
                True)
        else:
            X_train, y_train, sw_train = X, y, sample_weight
            X_val = y_val = Y_val = sw_val = sw_val_core = self.val_engine = None
        self.X_val, self.y_val, self.Y_val = X_val, y_val, Y_val
        self.sw_val, self.sw_val_core = sw_val, sw_val_core
        if getattr(est, "loss_curve_", None) is None:
            est.loss_curve_ = []
        if getattr(est, "best_loss_", None) is None and not early_stopping:
            est.best_loss_ = np.inf
        if not hasattr(est, "_no_improvement_count"):
            est._no_improvement_count = 0
        self.X_core = rows(X_train, dtype)    # (callbacks get X_train as it came)
        self.Y_train = np.ascontiguousarray(y_train, dtype=dtype)
        self.sw_train = (None if sw_train is None
                         else np.ascontiguousarray(sw_train, dtype=dtype))

        self.n_samples = n_samples = X_train.shape[0]
        if est.batch_size == "auto":
            self.batch_size = min(200, n_samples)
        else:
            if est.batch_size > n_samples:
                warnings.warn("Got `batch_size` less than 1 or larger than sample size. It is "
                              "going to be clipped")
            self.batch_size = int(np.clip(est.batch_size, 1, n_samples))

        self.engine, _ = est._engine()
        opt.attach(self.engine)
        est._attach_dropout(self.engine)
        self.est, self.opt, self.incremental = est, opt, incremental
        self.tasks = subtasks(est, root, X_train, y_train, sw_train, "epoch")
        self.snapshot = functools.partial(fitted_attributes, est)  # called if a hook asks
        sample_idx = np.arange(n_samples, dtype=np.intp)
        self.order = sample_idx if est.shuffle else None
        # sklearn.utils.shuffle(sample_idx, random_state) shuffles arange(n) and indexes by
        # it; a shuffle's swaps do not depend on the values swapped, so shuffling ``order``
        # itself in place gives the same order without the copy (2.2 µs, not 3.8, on 150
        # rows).
        self.shuffle_order = est._random_state.shuffle if est.shuffle else None
        est.n_iter_ = 0

    def epoch_ends(self, total, status, steps):
        """The bookkeeping after an epoch of the core (its total loss, status and steps
        taken): True when the fit ends here.  Raises SolverDivergedError for a
        non-finite step without early stopping."""
        est, opt, tasks = self.est, self.opt, self.tasks
        early_stopping, verbose = est.early_stopping, est.verbose
        if status != 0:
            where = (f"epoch {est.n_iter_ + 1}, minibatch step {steps + 1} of "
                     f"{-(-self.n_samples // self.batch_size)}")
            if early_stopping:
                warnings.warn(
                    f"Stochastic Optimizer: non-finite loss or gradient at {where}; "
                    "training stopped and the parameters with the best validation "
                    "score were restored. Lower learning_rate_init or scale the data.",
                    ConvergenceWarning)
                if tasks is not None:
                    tasks.abandon()
                return True
            raise SolverDivergedError(
                f"{NON_FINITE_MSG} (fastmlp: non-finite loss or gradient at {where}; "
                "the step was not taken and the parameters are those of the last good "
                "step — lower learning_rate_init or scale the data.)")
        est.n_iter_ += 1
        est.loss_ = loss = total / self.n_samples
        est.t_ += self.n_samples
        est.loss_curve_.append(loss)
        if verbose:
            print("Iteration %d, loss = %.8f" % (est.n_iter_, loss))
        if early_stopping:
            est.validation_loss_curve_.append(
                _validation_loss(self.val_engine, self.X_val, self.Y_val, self.sw_val_core))
            _update_validation_count(est, self.X_val, self.y_val, self.sw_val)
        else:
            # scikit-learn's rule on the training loss (_update_no_improvement_count)
            if loss > est.best_loss_ - est.tol:
                est._no_improvement_count += 1
            else:
                est._no_improvement_count = 0
            if loss < est.best_loss_:
                est.best_loss_ = loss
        opt.iteration_ends(est.t_)
        converged = False
        if est._no_improvement_count > est.n_iter_no_change:
            if early_stopping:
                msg = ("Validation score did not improve more than tol=%f for %d "
                       "consecutive epochs." % (est.tol, est.n_iter_no_change))
            else:
                msg = ("Training loss did not improve more than tol=%f for %d "
                       "consecutive epochs." % (est.tol, est.n_iter_no_change))
            converged = opt.trigger_stopping(msg, verbose)
            if not converged:
                est._no_improvement_count = 0
        # A callback's stop ends the fit like convergence: no max_iter warning.
        if tasks is not None and tasks.end(self.snapshot):
            converged = True
        if converged or self.incremental:
            return True
        if est.n_iter_ == est.max_iter:
            warnings.warn(
                "Stochastic Optimizer: Maximum iterations (%d) reached and the "
                "optimization hasn't converged yet." % est.max_iter,
                ConvergenceWarning)
            return True
        return False

    def interrupted(self):
        """A KeyboardInterrupt between or inside epochs: the fit keeps what it has."""
        warnings.warn("Training interrupted by user.")
        if self.tasks is not None:
            self.tasks.abandon()

    def close(self):
        """Once, however the fit ended: the optimizer's state as the core left it, and
        with early stopping the best parameters made the live ones."""
        est = self.est
        # Adam's step count and rate, as the core left them: once, not every epoch.
        self.opt.read_back(self.engine)
        if est.early_stopping:
            # Restore the best parameters; from here on they are the live ones (as in
            # scikit-learn, where coefs_ becomes the very list of best coefficients).
            est._theta[...] = est._best_theta
            est._best_theta = est._theta


def _validation_loss(engine, X_val, Y_val, sw_val):
    """The training objective (loss plus L2 term) on the validation split, at the
    current parameters: one evaluation without update.  NaN when it is not finite."""
    try:
        return engine.train_step(X_val, Y_val, None, 0.0, False, sw_val)
    except DivergenceError:
        return math.nan


def _update_validation_count(est, X_val, y_val, sw_val):
    """scikit-learn's rule on the validation score (its _update_no_improvement_count
    with early stopping): count epochs without improvement, keep the best parameters."""
    score = est._score_prepared(X_val, y_val, sw_val)
    est.validation_scores_.append(score)
    if est.verbose:
        print("Validation score: %f" % est.validation_scores_[-1])
    if score < est.best_validation_score_ + est.tol:
        est._no_improvement_count += 1
    else:
        est._no_improvement_count = 0
    if score > est.best_validation_score_:
        est.best_validation_score_ = score
        est._best_theta = est._theta.copy()
