"""The L-BFGS fit: scipy's minimizer over the flat parameters, the core as its objective."""
import math
import warnings

import numpy as np
import scipy
import scipy.optimize
from sklearn.exceptions import ConvergenceWarning

from fastmlp._flat import FlatParams
from fastmlp.errors import DivergenceError
from fastmlp.sklearn._callbacks import subtasks
from fastmlp.sklearn._data import rows
from fastmlp.threads import scipy_blas_serial

_SCIPY_BEFORE_1_15 = tuple(int(p) for p in scipy.__version__.split(".")[:2]) < (1, 15)


def fit_lbfgs(est, X, y, sample_weight, root=None):
    """Fit ``est`` by scipy's L-BFGS-B from its current parameters: one call of the core
    per loss-and-gradient evaluation.  X, y, sample_weight: validated, y encoded
    (n_samples, n_outputs); ``root``: the fit's callback context or None."""
    units = est._layer_units
    # scipy sees the parameters as scikit-learn packs them, [W1, W2, …, b1, b2, …], in
    # their dtype, so that its arithmetic runs in the same order.  scipy (>= 1.x)
    # evaluates the objective at x cast to x0's dtype — float32 parameters for float32
    # data — but returns its iterate in float64, so coefs_ end up float64, as in
    # scikit-learn.  The objective is computed in the dtype numpy's promotion of x and X
    # gives, like scikit-learn's forward pass, by one engine per dtype met.
    layout = est._flat.layout
    sk_to_engine, engine_to_sk = layout.sklearn_order()
    engines = {}

    def setup(dtype):
        if dtype not in engines:
            flat = FlatParams(layout, np.empty(layout.n_params, dtype=dtype))
            engine, grad = flat.engine(est.activation, est.out_activation_,
                                       est._engine_loss(), float(est.alpha), True)
            sw = (None if sample_weight is None
                  else np.ascontiguousarray(sample_weight, dtype=dtype))
            engines[dtype] = (engine, flat.theta, grad, rows(X, dtype),
                              np.ascontiguousarray(y, dtype=dtype), sw)
        return engines[dtype]

    # One callback subtask per L-BFGS iteration.  scipy reports only the ends of
    # iterations, so an iteration's task begins at its first evaluation; one that
    # never completes (max_fun reached inside it) is abandoned after the run.
    tasks = subtasks(est, root, X, y, sample_weight, "iteration")
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
        if tasks is not None and tasks.task is None and n_iters[0] <= est.max_iter:
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

    options = {"maxfun": est.max_fun, "maxiter": est.max_iter, "gtol": est.tol}
    if _SCIPY_BEFORE_1_15:
        options["iprint"] = 1 if (est.verbose is True or est.verbose >= 1) else -1
    with scipy_blas_serial():
        result = scipy.optimize.minimize(
            loss_grad, est._theta[sk_to_engine], method="L-BFGS-B", jac=True,
            options=options, callback=None if tasks is None else iteration_ends)
    if tasks is not None:
        tasks.abandon()
    est.n_iter_ = min(result.nit, est.max_iter)
    if result.status != 0 and not stopped:
        msg = (f"lbfgs failed to converge after {est.n_iter_} iteration(s) "
               f"(status={result.status}):\n{result.message}\n")
        if est.n_iter_ == est.max_iter:
            msg += ("\nIncrease the number of iterations to improve the convergence "
                    f"(max_iter={est.max_iter}).")
        msg += ("\nYou might also want to scale the data as shown in:\n"
                "    https://scikit-learn.org/stable/modules/preprocessing.html")
        warnings.warn(msg, ConvergenceWarning, stacklevel=3)
    est.loss_ = result.fun
    x = np.asarray(result.x)
    if x.dtype not in (np.float32, np.float64):
        x = x.astype(np.float64)
    best_alias = getattr(est, "_best_theta", None) is est._theta
    est._set_theta(np.ascontiguousarray(x[engine_to_sk]), units)
    if best_alias:
        est._best_theta = est._theta
