"""The estimators' errors, and the message scikit-learn gives for a fit gone non-finite."""
from fastmlp.errors import DivergenceError

NON_FINITE_MSG = ("Solver produced non-finite parameter weights. The input data may contain "
                  "large values and need to be preprocessed.")


class InvalidParameterError(ValueError, TypeError):
    """A constructor parameter has a value scikit-learn refuses (raised by ``fit``)."""


class SolverDivergedError(DivergenceError, ValueError):
    """Training produced a non-finite loss or gradient.

    A ValueError, as scikit-learn raises for non-finite weights, and a
    ``fastmlp.DivergenceError``.  The parameters are those of the last good step.
    """

