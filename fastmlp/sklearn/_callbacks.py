"""scikit-learn's callback API (``sklearn.callback``, scikit-learn >= 1.9) for the fits.

One task per ``fit``/``partial_fit`` with one subtask per epoch (per L-BFGS iteration).  With
an older scikit-learn, or when no callback is set, nothing here is called and a fit pays
nothing for callbacks.
"""
try:
    from sklearn.callback import CallbackSupportMixin, with_callbacks
except ImportError:  # scikit-learn < 1.9: no callback API, so nothing to call back
    CallbackSupportMixin = None

    def with_callbacks(method):
        return method


def callback_root(est, max_subtasks):
    """The root callback context of this fit, or None when there is nobody to call
    back (no callbacks set nor propagated from a meta-estimator, or a scikit-learn
    without the callback API): then the fit pays nothing for them."""
    if CallbackSupportMixin is None or not (hasattr(est, "_skl_callbacks")
                                            or hasattr(est, "_parent_callback_ctx")):
        return None
    return est._init_callback_context(max_subtasks=max_subtasks)


def subtasks(est, root, X, y, sample_weight, name):
    """The per-epoch (per-iteration) ``FitTasks`` of a fit with root context ``root``, or
    None when no callback of the estimator's own (set, or propagated to it by a
    meta-estimator) would be called back: a search propagates its context to every
    candidate even without callbacks, and one subtask an epoch then cost a small
    fit more than its training (iris, 200 epochs: ~20 % of a GridSearchCV)."""
    if root is None or not getattr(est, "_skl_callbacks", None):
        return None
    return FitTasks(est, root, hook_data(est, X, y, sample_weight), name)


def hook_data(est, X, y, sample_weight):
    """Keyword arguments of the callback hooks for training data X and the encoded
    targets y: y goes to the hooks as labels (as fit takes them), decoded only if a
    hook asks for it."""
    return dict(X=X, y=lambda: est._predict_from_output(y),
                metadata=None if sample_weight is None else {"sample_weight": sample_weight})


def fitted_attributes(est):
    """Reconstruction attributes of the fitted state right now: copies of what the
    training loop goes on changing in place."""
    attrs = {"coefs_": [c.copy() for c in est.coefs_],
             "intercepts_": [b.copy() for b in est.intercepts_]}
    for name in ("n_iter_", "t_", "loss_", "best_loss_", "best_validation_score_"):
        if hasattr(est, name):
            attrs[name] = getattr(est, name)
    for name in ("loss_curve_", "validation_scores_", "validation_loss_curve_"):
        if getattr(est, name, None) is not None:
            attrs[name] = list(getattr(est, name))
    return attrs


class FitTasks:
    """scikit-learn's callback tasks of one fit: the root task (the whole fit) and one
    subtask per epoch (per L-BFGS iteration).

    The hooks get ``data``, the keyword arguments for the data the subtasks train on
    (``hook_data``), and ``fitted_estimator``: a copy of the estimator with the
    parameters of that moment, built only if a hook asks for it.
    """

    def __init__(self, est, root, data, name):
        self.est, self.root, self.data, self.name = est, root, data, name
        self.task = None

    def begin(self, snapshot=None):
        """Open the next subtask and call its begin hooks."""
        self.task = self.root.subcontext(task_name=self.name)
        self.task.call_on_fit_task_begin(estimator=self.est, reconstruction_attributes=snapshot,
                                         **self.data)

    def end(self, snapshot):
        """Close the open subtask; True when a callback asks to stop."""
        task, self.task = self.task, None
        return task.call_on_fit_task_end(estimator=self.est,
                                         reconstruction_attributes=snapshot, **self.data)

    def abandon(self):
        """Close a subtask that did not complete (training stopped inside it): its end
        hooks are called without data, as scikit-learn does for an unfinished task."""
        if self.task is not None:
            task, self.task = self.task, None
            task.call_on_fit_task_end(estimator=self.est)
