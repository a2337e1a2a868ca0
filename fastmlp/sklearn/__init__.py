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

# The package's modules, one job each: _params (scikit-learn's parameter constraints),
# _data (rows, sample weights, shuffling), _callbacks (sklearn.callback glue), _optimizer
# (SGD / Adam state), _stochastic and _lbfgs (the two fit loops), _base (what both
# estimators share), _classifier and _regressor, _docstrings, _errors; _from_mlp (a fitted
# estimator holding a fastmlp.MLP) and _table_pipeline (TableModel.to_sklearn).
try:
    import sklearn  # noqa: F401
    from sklearn.utils.validation import validate_data  # noqa: F401  (scikit-learn >= 1.6)
except ImportError as exc:  # pragma: no cover - exercised in a subprocess test
    raise ImportError(
        "fastmlp.MLPClassifier and fastmlp.MLPRegressor need scikit-learn (>= 1.6): "
        "pip install fastmlp[sklearn]") from exc

from fastmlp.sklearn._classifier import MLPClassifier
from fastmlp.sklearn._errors import InvalidParameterError, SolverDivergedError
from fastmlp.sklearn._from_mlp import from_mlp
from fastmlp.sklearn._regressor import MLPRegressor

__all__ = ["MLPClassifier", "MLPRegressor", "SolverDivergedError", "InvalidParameterError",
           "from_mlp"]
