"""Prediction at the core's cost for the common case: a float ndarray of the fitted width,
or a DataFrame whose columns are the fitted names, in the parameters' dtype.

A served model predicts one row per request, and there scikit-learn's input checks cost
some 25 times the forward pass itself.  ``fast_output`` decides by cheap tests whether X is
a case whose full validation (``validate_data``) could only accept it unchanged; then it
hands X straight to the compiled forward pass, whose own finiteness check refuses NaN and
infinity.  Anything else — another type or dtype, a width or names that differ, NaN, an
estimator whose parameters were replaced — returns None, and the caller takes the full
path, which gives scikit-learn's own outcome: its warnings, its errors, its conversions.
So both paths give the same answers and the same errors; only their cost differs.

What the fast path relies on is kept in a ``_Fitted`` per estimator, built on the first
prediction after each change of the fitted state and checked on every call: the parameter
lists and arrays by identity, the activation by value.  A prediction writes into it only
the fitted names as a pandas Index, made at the first DataFrame and the same whichever
thread makes it, so concurrent predictions from several threads share it safely; each
call allocates its own output.
"""
import operator
import sys
import weakref

import numpy as np

class _Fitted:
    """The fitted state one estimator's fast predictions read."""

    __slots__ = ("coefs", "intercepts", "weights", "biases", "activation", "network",
                 "dtype", "n_features", "names", "columns", "width")

    def __init__(self, est):
        self.coefs, self.intercepts = est.coefs_, est.intercepts_
        self.weights, self.biases = tuple(est.coefs_), tuple(est.intercepts_)
        # A copy: an activation list changed in place must not go on matching.
        self.activation = (est.activation if isinstance(est.activation, str)
                           else list(est.activation))
        self.network = est._flat.network(est.activation, est.out_activation_)
        self.dtype = est._theta.dtype
        self.n_features = est._layer_units[0]
        self.width = est._layer_units[-1]
        names = getattr(est, "feature_names_in_", None)
        self.names = None if names is None else list(names)
        self.columns = None     # the names as a pandas Index, made at the first DataFrame

    def current(self, est):
        """True while ``est`` still predicts with the state this was built from."""
        coefs, intercepts = est.coefs_, est.intercepts_
        return (coefs is self.coefs and intercepts is self.intercepts
                and est.activation == self.activation
                and len(coefs) == len(self.weights) and len(intercepts) == len(self.biases)
                and all(map(operator.is_, coefs, self.weights))
                and all(map(operator.is_, intercepts, self.biases)))


# Outside the estimators: scikit-learn requires that predicting leaves an estimator's
# __dict__ as it was, and a copy or pickle of an estimator has no use for this.
_FITTED = weakref.WeakKeyDictionary()


def _fitted(est):
    """The estimator's ``_Fitted``, (re)built when its fitted state changed; None when it
    is not fitted, or its parameters are not its flat buffer's views (then the full path
    packs them)."""
    fitted = _FITTED.get(est)
    if fitted is not None and fitted.current(est):
        return fitted
    if "_theta" not in est.__dict__ or not hasattr(est, "coefs_") or not est._views_current():
        return None
    fitted = _FITTED[est] = _Fitted(est)
    return fitted


def _frame_rows(X, fitted):
    """A pandas DataFrame's values, when its columns are exactly the fitted names and its
    values come out in the parameters' dtype; else None."""
    if fitted.names is None:
        return None
    if fitted.columns is None:
        # pandas is imported: X is one of its frames.  Index.equals, against an Index,
        # compares the names in a few µs where listing pandas' string columns costs more.
        fitted.columns = sys.modules["pandas"].Index(fitted.names)
    if not X.columns.equals(fitted.columns):
        return None
    rows = X.to_numpy()
    if rows.dtype != fitted.dtype:
        return None
    return rows if rows.flags.c_contiguous else np.ascontiguousarray(rows)


def fast_output(est, X):
    """The output layer (n, n_outputs) for X, or None when X is not the fast case (or
    ``est`` is not fitted): the caller then validates X in full."""
    fitted = _fitted(est)
    if fitted is None:
        return None
    if type(X) is np.ndarray:
        if (fitted.names is not None or X.ndim != 2 or X.dtype != fitted.dtype
                or X.shape[1] != fitted.n_features or not X.flags.c_contiguous):
            return None
    elif type(X).__name__ == "DataFrame" and type(X).__module__.startswith("pandas"):
        X = _frame_rows(X, fitted)
        if X is None:
            return None
    else:
        return None
    if X.shape[0] == 0:
        return None
    out = np.empty((X.shape[0], fitted.width), dtype=fitted.dtype)
    try:
        return fitted.network.forward(X, out)
    except ValueError:   # NaN or infinity: the full path raises scikit-learn's error
        return None

