"""Exceptions fastmlp raises beyond the built-in ValueError and TypeError."""


class DivergenceError(FloatingPointError):
    """A training step produced a non-finite loss or gradient.

    The step that raised it did not change the parameters: the model holds the values it
    had before that step (for ``fit``, after the last good step).
    """


class DivergenceWarning(RuntimeWarning):
    """A model of an ``MLPStack`` diverged and stopped, the parameters those after its last
    good step, while the other models went on training."""
