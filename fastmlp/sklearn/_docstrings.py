"""The docstring parts both estimators share: scikit-learn's parameters, and fastmlp's
attributes and callbacks beyond them."""

PARAMETERS = """
    The parameters, their defaults and meanings are scikit-learn's (1.9); see
    :class:`sklearn.neural_network.{name}`.  In brief:

    hidden_layer_sizes : array-like of int, default=(100,)
    activation : str or list of str, default='relu'
        Hidden-layer activation: scikit-learn's 'identity', 'logistic', 'tanh', 'relu',
        or beyond scikit-learn 'leaky_relu', 'elu', 'gelu', 'silu', 'softplus'
        (PyTorch's definitions); or a list of one name per hidden layer.
    solver : {{'lbfgs', 'sgd', 'adam'}}, default='adam'
    alpha : float, default=1e-4
        L2 penalty: alpha/(2·Σw)·Σ‖W‖² is added to each batch's loss.
    batch_size : int or 'auto', default='auto' (min(200, n_samples))
    learning_rate : {{'constant', 'invscaling', 'adaptive'}}, default='constant'
        Schedule of the sgd solver.
    learning_rate_init, power_t : float, defaults 0.001, 0.5
    max_iter : int, default=200
        Epochs for sgd/adam, iterations for lbfgs.
    shuffle : bool, default=True
    random_state : int, RandomState instance or None
        Drives the initial weights, the early-stopping split and the shuffling, in
        scikit-learn's order: the same value gives scikit-learn's model.
    tol : float, default=1e-4
    verbose : bool, default=False
    warm_start : bool, default=False
    momentum : float, default=0.9
    nesterovs_momentum : bool, default=True
    early_stopping : bool, default=False
    validation_fraction : float, default=0.1
    beta_1, beta_2, epsilon : float, defaults 0.9, 0.999, 1e-8
        Adam's hyper-parameters.
    n_iter_no_change : int, default=10
    max_fun : int, default=15000
        lbfgs: maximum number of loss evaluations.
    dropout : float or list of float, default=0.0
        Beyond scikit-learn: inverted dropout on the hidden layers' outputs during
        training (sgd, adam), one probability in [0, 1) or one per hidden layer; the
        masks are drawn from random_state (nothing is drawn when it is 0, so the default
        is exactly scikit-learn's fit).
"""


BEYOND = """
    validation_loss_curve_ : list of float or None
        Beyond scikit-learn: with ``early_stopping``, after each epoch, scikit-learn's
        training objective (its loss plus alpha·Σ‖W‖²/(2·Σ weights), sample-weighted;
        what ``loss_`` is for lbfgs) evaluated on the whole validation split at the
        epoch's parameters; NaN where not finite.  Its L2 term is scaled by the split's
        total weight, not by a minibatch's as in ``loss_curve_``.  None without early
        stopping; absent, like ``validation_scores_``, after an lbfgs fit.

    Callbacks
    ---------
    ``set_callbacks(*callbacks)`` (scikit-learn >= 1.9): scikit-learn's callback protocol
    (``sklearn.callback``).  ``fit`` is one task with a subtask per epoch (per L-BFGS
    iteration), ``partial_fit`` one epoch; an ``on_fit_task_end`` returning True ends
    training after that subtask.  The hooks get the training part of X, y as labels, the
    sample weights training uses (class weights included) and, if asked, a copy of the
    estimator fitted up to that point.
"""
