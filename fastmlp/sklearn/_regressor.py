"""``MLPRegressor``: squared error or Poisson deviance, R² score."""
import numpy as np
from sklearn.base import RegressorMixin
from sklearn.metrics import r2_score
from sklearn.utils.validation import column_or_1d

from fastmlp.sklearn._base import BaseMLP
from fastmlp.sklearn._callbacks import with_callbacks
from fastmlp.sklearn._data import fit_input
from fastmlp.sklearn._docstrings import BEYOND, PARAMETERS
from fastmlp.sklearn._params import options


class MLPRegressor(RegressorMixin, BaseMLP):
    __doc__ = """Multi-layer perceptron regressor: scikit-learn's, trained by fastmlp's core.

    A drop-in for :class:`sklearn.neural_network.MLPRegressor`: same parameters,
    attributes, methods and, for the same ``random_state``, the same model (to rounding).

    Parameters
    ----------
    loss : {'squared_error', 'poisson'}, default='squared_error'
        Half squared error with identity outputs, or half Poisson deviance with exp
        outputs (targets must be >= 0).  The squared error reproduces scikit-learn #8349:
        ``loss_`` is averaged over outputs while the gradient is that of the sum over
        outputs.""" + PARAMETERS.format(name="MLPRegressor") + """
    Attributes
    ----------
    loss_, best_loss_, loss_curve_, validation_scores_, best_validation_score_, t_,
    coefs_, intercepts_, n_features_in_, feature_names_in_, n_iter_, n_layers_,
    n_outputs_, out_activation_ : as in scikit-learn.  ``coefs_[i]`` and ``intercepts_[i]``
    are views into one flat parameter buffer that the core trains in place.""" + BEYOND + """
    """

    _extra_constraints = {"loss": [options("squared_error", "poisson")]}

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
        X, y = fit_input(self, X, y, reset, y_numeric=True)
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
        return self._predict_from_output(self._forward(X))
