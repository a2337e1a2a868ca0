"""Many estimators fitted on the same batches: each one's minibatch fit exactly as its own
``fit`` runs it, the epochs of all of them one compiled call (the core's ``Stack``).

scikit-learn's estimators draw the batch order from ``random_state`` after the initial
weights, the early-stopping split and dropout's seed.  Estimators that agree on
everything those draws depend on (``batch_key``) draw the same orders epoch after epoch
on the same data, so one order serves them all, whatever their learning rates, L2,
activations, optimizers or stopping rules.
"""
import functools
import numbers

import numpy as np
import sklearn

from fastmlp import _core, _workers
from fastmlp.sklearn._base import BaseMLP
from fastmlp.sklearn._params import STOCHASTIC
from fastmlp.sklearn._stochastic import EpochLoop


def batch_key(est):
    """What must match for fastmlp estimators fitted on the same data to see the same
    batches at every epoch: a hashable tuple, or None when ``est`` cannot share its
    batches (another estimator, lbfgs, ``random_state`` not an int, verbose output,
    callbacks, or parameters its own fit would refuse: that fit reports them)."""
    if (not isinstance(est, BaseMLP) or est.solver not in STOCHASTIC or est.verbose
            or est.warm_start or getattr(est, "_skl_callbacks", None)
            or not isinstance(est.random_state, numbers.Integral)
            or isinstance(est.random_state, (bool, np.bool_))):
        return None
    try:
        est._check_params()
        hidden = est._hidden_sizes()
        est._layer_activations(len(hidden))
        drops = any(est._dropout_rates(len(hidden)))
    except (TypeError, ValueError):
        return None
    # The draws before the first shuffle: the weights (their count: the layer widths),
    # the early-stopping split, dropout's seed (drawn only when some layer drops); then
    # the batches (n_samples, batch_size, shuffle) and the targets the core shares (the
    # loss and the sample weights: class_weight).
    return (type(est), int(est.random_state), tuple(hidden), bool(est.shuffle),
            est.batch_size, bool(est.early_stopping),
            float(est.validation_fraction) if est.early_stopping else None, drops,
            repr(getattr(est, "class_weight", None)), getattr(est, "loss", None))


def fit_together(ests, X, y, sample_weight=None):
    """Fit each of ``ests`` (fastmlp estimators with one ``batch_key``, not fitted or to
    be refitted from scratch) on (X, y) with the same ``sample_weight`` (None or
    (n_samples,)), each ending exactly where its own ``est.fit(X, y, sample_weight)``
    would: the same epochs, stopping, warnings and fitted attributes.

    Returns one entry per estimator: None when its fit succeeded, else the exception its
    own fit would have raised; an estimator that fails leaves the others training."""
    errors = [None] * len(ests)
    runs = {}
    for k, est in enumerate(ests):
        try:
            Xk, yk, swk, root, fit_data = est._fit_begin(X, y, sample_weight, False)
            with sklearn.config_context(skip_parameter_validation=True):
                runs[k] = (EpochLoop(est, Xk, yk, swk, False, root), root, fit_data)
        except Exception as exc:      # that estimator's fit fails; the others go on
            errors[k] = exc
    if runs:
        _train(list(runs), [run for run, _, _ in runs.values()], errors)
    for k, (run, root, fit_data) in runs.items():
        try:
            ests[k]._fit_end(root, fit_data)
        except Exception as exc:
            errors[k] = exc
    return errors


def _train(index, runs, errors):
    # The runs split into groups that train side by side on fastmlp's threads when the
    # work pays (_workers.split), each group with its own order from its own first
    # run's generator: every run's generator is in the same state, so every group draws
    # the same orders and the split changes nothing.
    first = runs[0]
    work = [_workers.model_work(run.est._theta.size, first.n_samples, first.batch_size,
                                run.est.max_iter) for run in runs]
    _workers.side_by_side([functools.partial(_epochs, [index[j] for j in g],
                                             [runs[j] for j in g], errors)
                           for g in _workers.split(work)])


def _epochs(index, runs, errors):
    # The epochs of every run, one Stack call each, until every run has ended; a run's
    # end (convergence, max_iter, divergence) takes it out of ``active``.  The order is
    # shuffled by the first run's generator: every run would draw the same one (that
    # generator is the only one that moves on after its own fit ended, and no fitted
    # attribute holds it).  config_context is per thread: each group's thread sets it for
    # the bookkeeping's scorers and checks, as the estimator's own fit does.
    first = runs[0]
    stack = _core.Stack([run.engine for run in runs], "estimators")
    active = np.ones(len(runs), dtype=bool)
    lrs = np.array([run.opt.step_size() for run in runs], dtype=np.float64)
    shuffle_order, order = first.shuffle_order, first.order
    try:
        with sklearn.config_context(skip_parameter_validation=True):
            while active.any():
                if shuffle_order is not None:
                    shuffle_order(order)
                totals, status, steps = stack.fit_epoch(first.X_core, first.Y_train, None,
                                                        order, first.batch_size, lrs, active,
                                                        first.sw_train)
                for j in np.flatnonzero(active):
                    run = runs[j]
                    try:
                        ended = run.epoch_ends(float(totals[j]), int(status[j]),
                                               int(steps[j]))
                    except Exception as exc:
                        errors[index[j]], ended = exc, True
                    if ended:
                        active[j] = False
                    else:
                        lrs[j] = run.opt.step_size()
    except KeyboardInterrupt:
        for j in np.flatnonzero(active):
            runs[j].interrupted()
    finally:
        for run in runs:
            run.close()
