"""A network's parameters in one flat buffer, with per-layer views, and the compiled
objects that work on it: what ``MLP`` and the scikit-learn estimators share."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from fastmlp import _core


class FlatParams:
    """Parameters ``theta`` (layout.n_params,) of one network, float32 or float64.

    ``weights[l]`` (d(l), d(l+1)) and ``biases[l]`` (d(l+1),) are views into ``theta``.
    ``network``/``engine`` build the compiled objects over ``theta`` once per setting and
    keep them: prediction needs only a Network, training an Engine (a Network plus
    gradient, loss, optimizer and workspace).  ``theta`` is never reallocated, since the
    compiled objects hold pointers into it.
    """

    def __init__(self, layout: _core.Layout, theta: np.ndarray) -> None:
        self.layout = layout
        self.theta = theta
        self.weights, self.biases = layout.views(theta)
        self._network: tuple[tuple[object, str], _core.Network] | None = None
        self._engine: tuple[tuple[object, ...], _core.Engine, np.ndarray] | None = None

    def network(self, hidden_act: str | Sequence[str], out_act: str) -> _core.Network:
        """The forward pass over ``theta`` with these activations (hidden: one name, or
        one per hidden layer)."""
        key = (hidden_act if isinstance(hidden_act, str) else tuple(hidden_act), out_act)
        if self._network is None or self._network[0] != key:
            self._network = (key, _core.Network(self.layout, self.theta, hidden_act, out_act))
        return self._network[1]

    def engine(self, hidden_act: str | Sequence[str], out_act: str, loss: str,
               l2: float = 0.0, sk_scaling: bool = False) -> tuple[_core.Engine, np.ndarray]:
        """(engine, grad): the training engine over ``theta`` and its gradient buffer
        (the layout of ``theta``)."""
        key = (hidden_act if isinstance(hidden_act, str) else tuple(hidden_act), out_act,
               loss, l2, sk_scaling)
        if self._engine is None or self._engine[0] != key:
            grad = np.zeros_like(self.theta)
            engine = _core.Engine(self.network(hidden_act, out_act), grad, loss, l2,
                                  sk_scaling)
            self._engine = (key, engine, grad)
        return self._engine[1], self._engine[2]
