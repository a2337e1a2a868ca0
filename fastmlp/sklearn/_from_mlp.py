"""``from_mlp``: a fitted estimator that holds a ``fastmlp.MLP``'s network.

The estimator is left in the state a fit leaves it in — what ``_initialize`` sets at the
start of a fit (n_outputs_, out_activation_, the empty loss curve, ...), with the MLP's
parameters as ``coefs_``/``intercepts_`` — so that predict, predict_proba, score,
pickling and a later ``warm_start``/``partial_fit`` work as after ``fit``.  The networks
map exactly as far as scikit-learn's models reach:

- hidden layers: every activation of ``fastmlp.MLP`` (the estimators take all of them);
- ``loss="softmax_cross_entropy"`` with k > 2 classes: softmax outputs, their columns
  put in the order of ``classes_`` (scikit-learn's, sorted);
- with 2 classes: scikit-learn's binary model has one logistic output, and
  softmax(z)₁ = σ(z₁ − z₀), so the output layer becomes the difference of the two
  columns (W₁ − W₀, b₁ − b₀).  predict_proba's column 0 is then computed as 1 − p₁, as
  scikit-learn does: it agrees with the MLP's to rounding in absolute terms (~1e-16 in
  float64), not in relative terms once p₀ is below ~1e-4;
- ``loss="mse"`` with identity outputs: a squared-error regressor;
- an mse model with another output activation (logistic, tanh, relu) has no
  scikit-learn counterpart and is refused.

The hyper-parameters that have a scikit-learn counterpart are carried over
(hidden_layer_sizes, activation, alpha = l2, dropout, the optimizer as solver with its
momentum / Adam constants); the learning rate is not stored in an MLP.  A later fit trains
by scikit-learn's loss conventions (half squared error, scikit-learn #8349), not the MLP's.
"""
from __future__ import annotations

import numpy as np
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils import check_random_state

from fastmlp import _core
from fastmlp.sklearn._classifier import MLPClassifier
from fastmlp.sklearn._regressor import MLPRegressor


def _params(net) -> dict:
    """The estimator parameters the MLP's settings correspond to."""
    params = {"hidden_layer_sizes": tuple(net.layer_sizes[1:-1]),
              "activation": (net.activation if isinstance(net.activation, str)
                             else list(net.activation)),
              "alpha": float(net.l2),
              "dropout": net.dropout if isinstance(net.dropout, float) else list(net.dropout)}
    if net.optimizer == "adam":
        params.update(solver="adam", beta_1=net.hyper["beta1"], beta_2=net.hyper["beta2"],
                      epsilon=net.hyper["eps"])
    else:
        params.update(solver="sgd", momentum=net.hyper["momentum"] if net.optimizer != "sgd"
                      else 0.0, nesterovs_momentum=net.optimizer == "nesterov")
    return params


def _output_layer(net, classes):
    """(estimator, W_out (d, k'), b_out (k',)): the estimator to fill and the output
    layer it takes, for the MLP's loss and output activation."""
    W, b = net.weights[-1], net.biases[-1]
    if net.loss_name == "softmax_cross_entropy":
        k = net.layer_sizes[-1]
        classes = [str(c) for c in range(k)] if classes is None else [str(c) for c in classes]
        if len(classes) != k or len(set(classes)) != k:
            raise ValueError(f"classes: expected {k} distinct names, one per output of the "
                             f"network, got {classes!r}")
        est = MLPClassifier(**_params(net))
        est._label_binarizer = LabelBinarizer().fit(np.array(classes))
        est.classes_ = est._label_binarizer.classes_
        # Output j of the estimator is class classes_[j]: which output of the MLP that is.
        order = [classes.index(c) for c in est.classes_.tolist()]
        if k == 2:
            return est, (W[:, order[1]] - W[:, order[0]])[:, None], \
                np.array([b[order[1]] - b[order[0]]], dtype=b.dtype)
        return est, W[:, order], b[order]
    if classes is not None:
        raise ValueError("classes: the MLP is a regressor (loss mse); pass no classes")
    if net.output_activation != "identity":
        raise ValueError(f"net: an mse model with output_activation "
                         f"{net.output_activation!r} has no scikit-learn counterpart "
                         "(MLPRegressor's squared error has identity outputs)")
    return MLPRegressor(**_params(net)), W, b


def from_mlp(net, classes=None):
    """A fitted ``MLPClassifier`` (``net.loss_name == "softmax_cross_entropy"``) or
    ``MLPRegressor`` (``"mse"``, identity outputs) whose predictions are the MLP's.

    Parameters
    ----------
    net : fastmlp.MLP
        The network; its parameters are copied (float32 or float64, kept).
    classes : sequence of str, optional
        A classifier's class name for each output of ``net``, in output order (default
        "0", "1", ...); ``classes_`` is their sorted order, as after a scikit-learn fit.

    The estimator's ``predict(X)`` on X (n, net.n_inputs) of the network's dtype equals
    the class names ``classes[net.predict(X)]`` (a regressor: ``net.predict(X)``,
    raveled for one output); ``predict_proba`` equals ``net.predict_proba`` with its
    columns in ``classes_`` order, to rounding.  Raises ValueError for a network with no
    scikit-learn counterpart (see the module's notes).
    """
    if net.loss_name not in ("softmax_cross_entropy", "mse"):
        raise ValueError(f"net: loss {net.loss_name!r} has no scikit-learn MLP counterpart")
    est, W_out, b_out = _output_layer(net, classes)
    units = [*net.layer_sizes[:-1], W_out.shape[1]]
    layout = _core.Layout(units)
    theta = np.empty(layout.n_params, dtype=net.dtype)
    for (W, b), (W_src, b_src) in zip(zip(*layout.views(theta)),
                                      [*zip(net.weights[:-1], net.biases[:-1]),
                                       (W_out, b_out)]):
        W[...] = W_src
        b[...] = b_src
    # The state a fresh fit starts from (its bookkeeping in one place, _initialize), then
    # the MLP's parameters in place of the random draw.
    est._random_state = check_random_state(0)
    est._initialize(np.empty((0, units[-1])), units, net.dtype)
    est._set_theta(theta, units)
    est._best_theta = theta.copy()
    est.n_features_in_ = net.layer_sizes[0]
    return est
