"""``MLPClassifier``: labels encoded for the core, log-loss, class weights, probabilities."""
import numpy as np
from sklearn.base import ClassifierMixin
from sklearn.metrics import accuracy_score
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils.class_weight import compute_sample_weight
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import type_of_target, unique_labels
from sklearn.utils.validation import column_or_1d

from fastmlp.sklearn._base import BaseMLP
from fastmlp.sklearn._callbacks import with_callbacks
from fastmlp.sklearn._data import fit_input
from fastmlp.sklearn._docstrings import BEYOND, PARAMETERS
from fastmlp.sklearn._params import CLASS_WEIGHT, STOCHASTIC
from fastmlp.sklearn._labels import accuracy, classes_of, decode, encode, fit_binarizer


class MLPClassifier(ClassifierMixin, BaseMLP):
    __doc__ = """Multi-layer perceptron classifier: scikit-learn's, trained by fastmlp's core.

    Log-loss with a softmax output for multiclass targets and logistic outputs for binary
    and multilabel ones.  A drop-in for :class:`sklearn.neural_network.MLPClassifier`:
    same parameters, attributes, methods and, for the same ``random_state``, the same model
    (to rounding).

    Parameters
    ----------""" + PARAMETERS.format(name="MLPClassifier") + """
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
    are views into one flat parameter buffer that the core trains in place.""" + BEYOND + """
    """

    _extra_constraints = {"class_weight": CLASS_WEIGHT}

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
        return accuracy(y, y_pred, sample_weight)

    def score(self, X, y, sample_weight=None):
        """Mean accuracy of ``predict(X)`` against y (ClassifierMixin.score), weighted by
        sample_weight."""
        if sample_weight is not None:     # the user's weights: scikit-learn checks them
            return accuracy_score(y, self.predict(X), sample_weight=sample_weight)
        return accuracy(y, self.predict(X))

    def _validate_input(self, X, y, incremental, reset):
        X, y = fit_input(self, X, y, reset)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        if not hasattr(self, "classes_") or (not self.warm_start and not incremental):
            self._label_binarizer, Y = fit_binarizer(y)
            self.classes_ = self._label_binarizer.classes_
        else:
            classes = classes_of(y)
            if self.warm_start:
                if set(classes) != set(self.classes_):
                    raise ValueError(
                        "warm_start can only be used where `y` has the same classes as in "
                        f"the previous call to fit. Previously got {self.classes_}, `y` has "
                        f"{classes}")
            elif len(np.setdiff1d(classes, self.classes_, assume_unique=True)):
                raise ValueError(f"`y` has classes not in `self.classes_`. `self.classes_` has "
                                 f"{self.classes_}. 'y' has {classes}.")
            Y = encode(self._label_binarizer, y)
        return X, Y, self._class_sample_weight(y, incremental)

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
        if self.solver not in STOCHASTIC:
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
        return decode(self._label_binarizer, y_pred)

    def predict(self, X):
        """Class labels for X."""
        return self._predict_from_output(self._forward(X))

    def predict_proba(self, X):
        """Class probabilities for X, columns ordered as ``classes_``."""
        y_pred = self._forward(X)
        if self.n_outputs_ == 1:
            y_pred = y_pred.ravel()
        if y_pred.ndim == 1:
            # np.vstack([1 - y_pred, y_pred]).T, as scikit-learn gives it (the same
            # values and memory order), without the stacking's intermediate copies
            proba = np.empty((2, y_pred.shape[0]), dtype=y_pred.dtype)
            np.subtract(1, y_pred, out=proba[0])
            proba[1] = y_pred
            return proba.T
        return y_pred

    def predict_log_proba(self, X):
        """log(predict_proba(X))."""
        y_prob = self.predict_proba(X)
        return np.log(y_prob, out=y_prob)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags
