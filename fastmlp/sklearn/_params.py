"""scikit-learn's parameter constraints for its MLPs, checked at fit time.

scikit-learn states them with the classes of ``sklearn.utils._param_validation``
(``Interval``, ``StrOptions``, ``validate_parameter_constraints``), a private module whose
names and messages have changed between releases; its public ``check_scalar`` checks one
number with other messages.  A drop-in must refuse what scikit-learn's estimator refuses,
with the same ``InvalidParameterError`` message, so the constraints are written here with
public Python: (predicate, description) pairs, one list per parameter.
"""
import math
import numbers

import numpy as np
import scipy.sparse as sp

from fastmlp import _core
from fastmlp.sklearn._errors import InvalidParameterError

# The solvers that train by minibatch epochs (the rest is L-BFGS).
STOCHASTIC = ("sgd", "adam")


def _interval(kind, lo, hi, closed):
    """(predicate, description) for a number in an interval; lo/hi None = unbounded."""
    integral = kind == "int"

    def ok(v):
        # Python's own int and float first: the abstract classes' isinstance is slow, and
        # every fit checks some twenty of these.
        t = type(v)
        if t is int:
            pass
        elif t is float and not integral:
            if v != v:
                return False
        elif not isinstance(v, numbers.Integral if integral else numbers.Real):
            return False
        elif not isinstance(v, numbers.Integral) and math.isnan(v):
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


def options(*values):
    return (lambda v: isinstance(v, str) and v in values,
            "a str among {" + ", ".join(map(repr, sorted(values))) + "}")


def _is_bool(v):
    return isinstance(v, (bool, np.bool_))


_BOOL = (_is_bool, "an instance of 'bool' or 'numpy.bool_'")


def _is_array_like(v):
    return (not sp.issparse(v) and not np.isscalar(v)
            and (hasattr(v, "__len__") or hasattr(v, "shape") or hasattr(v, "__array__")))


CONSTRAINTS = {
    "hidden_layer_sizes": [(_is_array_like, "an array-like"), _interval("int", 1, None, "left")],
    "activation": [options(*_core.HIDDEN_ACTIVATIONS),
                   (lambda v: isinstance(v, (list, tuple)) and len(v) > 0
                    and all(isinstance(a, str) and a in _core.HIDDEN_ACTIVATIONS for a in v),
                    "a list of those names, one per hidden layer")],
    "solver": [options("lbfgs", *STOCHASTIC)],
    "alpha": [_interval("real", 0, None, "left")],
    "batch_size": [options("auto"), _interval("int", 1, None, "left")],
    "learning_rate": [options("constant", "invscaling", "adaptive")],
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
CLASS_WEIGHT = [options("balanced"), (lambda v: isinstance(v, dict), "a dict"),
                (_is_class_weight_list, "a list of dicts"), (lambda v: v is None, "None")]


def check_params(est, constraints):
    """Raise scikit-learn's InvalidParameterError for the first parameter of ``est`` that
    meets none of its constraints ({name: [(predicate, description), …]})."""
    for name, options_ in constraints.items():
        value = getattr(est, name)
        if not any(ok(value) for ok, _ in options_):
            descs = [d for _, d in options_]
            desc = descs[0] if len(descs) == 1 else ", ".join(descs[:-1]) + " or " + descs[-1]
            raise InvalidParameterError(
                f"The {name!r} parameter of {type(est).__name__} must be {desc}. "
                f"Got {value!r} instead.")
