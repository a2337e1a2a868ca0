"""The low-level model: ``MLP`` owns the flat parameter buffer and a compiled Engine."""
from __future__ import annotations

import threading
from typing import Sequence

import numpy as np

from fastmlp import _core
from fastmlp import _validation as v
from fastmlp.errors import DivergenceError


class MLP:
    """A multilayer perceptron with ReLU hidden layers, trained by minibatch SGD.

    Row-major throughout (seed 003): X is (n, d0); ``weights[l]`` is (d(l), d(l+1));
    Z = A·W + b.  Hidden layers apply ReLU; the last layer is linear (raw outputs for
    ``loss="mse"``, logits for ``loss="softmax_cross_entropy"``).

    Parameters
    ----------
    layer_sizes : sequence of int
        Widths d0, d1, …, dL (inputs first, outputs last); at least two.
    activation : {"relu"}
        Hidden-layer activation.
    loss : {"mse", "softmax_cross_entropy"}
        ``mse``: L = (1/n)·Σᵢ‖f(xᵢ) − yᵢ‖² (summed over outputs, averaged over samples,
        seeds 000/001).  ``softmax_cross_entropy``: L = −(1/n)·Σᵢ Σₖ yᵢₖ·log softmax(zᵢ)ₖ
        (seed 003).
    dtype : float32 or float64
        Dtype of parameters and of every computation.
    seed : int or None
        Seeds He initialisation: W(l) ~ N(0, 2/d(l-1)), b(l) = 0.  The same seed gives the
        same weights.

    Attributes
    ----------
    params : ndarray (n_params,)
        All parameters in one flat buffer: W(1), b(1), W(2), b(2), …
    weights, biases : list of ndarray
        Live views into ``params``.
    """

    def __init__(self, layer_sizes: Sequence[int], *, activation: str = "relu",
                 loss: str = "mse", dtype=np.float32, seed: int | None = None):
        sizes = v.check_layer_sizes(layer_sizes)
        activation = v.check_choice("activation", activation, v.ACTIVATIONS)
        loss = v.check_choice("loss", loss, v.LOSSES)
        dt = v.check_dtype(dtype)
        if loss == "softmax_cross_entropy" and sizes[-1] < 2:
            raise ValueError("layer_sizes: softmax_cross_entropy needs at least 2 outputs, "
                             f"got {sizes[-1]}")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))):
            raise TypeError(f"seed: expected an int or None, got {seed!r}")
        self.layer_sizes = sizes
        self.activation = activation
        self.loss_name = loss
        self.dtype = dt
        n_params = sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:]))
        self.params = np.zeros(n_params, dtype=dt)
        self._grad = np.zeros(n_params, dtype=dt)
        self.weights, self.biases = self._views(self.params)
        self._grad_weights, self._grad_biases = self._views(self._grad)
        rng = np.random.default_rng(seed)
        for W in self.weights:
            W[...] = rng.standard_normal(W.shape) * np.sqrt(2.0 / W.shape[0])
        self._engine = _core.Engine(np.asarray(sizes, dtype=np.intp), self.params,
                                    self._grad, loss, activation)
        # Training steps share the engine's workspace and the gradient buffer.
        self._lock = threading.Lock()

    def _views(self, flat: np.ndarray):
        weights, biases = [], []
        off = 0
        for d_in, d_out in zip(self.layer_sizes[:-1], self.layer_sizes[1:]):
            weights.append(flat[off:off + d_in * d_out].reshape(d_in, d_out))
            off += d_in * d_out
            biases.append(flat[off:off + d_out])
            off += d_out
        return weights, biases

    # ------------------------------------------------------------------ properties
    @property
    def n_params(self) -> int:
        return self.params.shape[0]

    @property
    def n_inputs(self) -> int:
        return self.layer_sizes[0]

    @property
    def n_outputs(self) -> int:
        return self.layer_sizes[-1]

    def __repr__(self) -> str:
        return (f"MLP({list(self.layer_sizes)}, activation={self.activation!r}, "
                f"loss={self.loss_name!r}, dtype=np.{self.dtype.name})")

    # ------------------------------------------------------------------ inference
    def _X(self, X) -> np.ndarray:
        return v.as_matrix("X", X, self.dtype, self.layer_sizes[0])

    def forward(self, X) -> np.ndarray:
        """Raw outputs (mse) or logits (cross-entropy): (n, dL) array of the model dtype."""
        X = self._X(X)
        out = np.empty((X.shape[0], self.layer_sizes[-1]), dtype=self.dtype)
        return self._engine.forward(X, out)

    def predict(self, X) -> np.ndarray:
        """mse: same as ``forward``; cross-entropy: int64 class labels (n,)."""
        out = self.forward(X)
        if self.loss_name == "mse":
            return out
        return np.argmax(out, axis=1).astype(np.int64, copy=False)

    def predict_proba(self, X) -> np.ndarray:
        """Softmax rows (n, dL) for a cross-entropy model."""
        if self.loss_name != "softmax_cross_entropy":
            raise ValueError("predict_proba: only defined for loss='softmax_cross_entropy'")
        out = self.forward(X)
        _core.k_softmax(out)
        return out

    # ------------------------------------------------------------------ training
    def _batch(self, X, Y):
        X = self._X(X)
        Yd, labels = v.as_targets(Y, self.loss_name, self.dtype, X.shape[0],
                                  self.layer_sizes[-1])
        return X, Yd, labels

    def loss(self, X, Y) -> float:
        """Loss (float) of the model on (X, Y); parameters are not changed."""
        return self.loss_and_grad(X, Y, _copy=False)[0]

    def loss_and_grad(self, X, Y, _copy: bool = True):
        """Loss and gradients: ``(loss, [(dW1, db1), (dW2, db2), …])``, fresh arrays.

        dW(l) has the shape of ``weights[l]``, db(l) of ``biases[l]``.  Raises
        DivergenceError if the loss or a gradient is not finite.
        """
        X, Yd, labels = self._batch(X, Y)
        with self._lock:
            loss = self._engine.train_step(X, Yd, labels, 1.0, False)
            if not _copy:
                return loss, None
            grads = [(dW.copy(), db.copy())
                     for dW, db in zip(self._grad_weights, self._grad_biases)]
        return loss, grads

    def train_step(self, X, Y, lr: float = 0.01) -> float:
        """One SGD step on the batch (X, Y); returns the loss before the update.

        If the loss or a gradient is not finite, raises DivergenceError and leaves the
        parameters exactly as they were.
        """
        if type(lr) is not float:
            lr = v.check_positive_float("lr", lr)
        elif not (0.0 < lr < float("inf")):
            raise ValueError(f"lr: expected a finite number > 0, got {lr!r}")
        X, Yd, labels = self._batch(X, Y)
        with self._lock:
            return self._engine.train_step(X, Yd, labels, lr, True)

    def fit(self, X, Y, epochs: int = 10, batch_size: int = 32, lr: float = 0.01,
            shuffle: bool = True, seed: int | None = 0, verbose: bool = False) -> list[float]:
        """Minibatch SGD over (X, Y); returns the mean training loss of each epoch.

        Each epoch visits every row once (the last, partial batch included), in an order
        drawn from ``seed`` when ``shuffle``.  An epoch's loss is the mean over samples of
        the per-batch losses before each update.  If a step diverges, the parameters are
        those after the last good step and DivergenceError names the epoch and step.
        """
        epochs = v.check_positive_int("epochs", epochs)
        batch_size = v.check_positive_int("batch_size", batch_size)
        lr = v.check_positive_float("lr", lr)
        X, Yd, labels = self._batch(X, Y)
        n = X.shape[0]
        batch_size = min(batch_size, n)
        if not _core.k_all_finite(X.reshape(-1)):
            raise ValueError("X: contains NaN or infinity")
        if Yd is not None and not _core.k_all_finite(Yd.reshape(-1)):
            raise ValueError("Y: contains NaN or infinity")
        if labels is not None and (labels.min() < 0 or labels.max() >= self.layer_sizes[-1]):
            raise ValueError(f"Y: class labels must be integers in [0, {self.layer_sizes[-1]})")
        rng = np.random.default_rng(seed)
        losses: list[float] = []
        n_steps = -(-n // batch_size)
        with self._lock:
            for epoch in range(epochs):
                perm = rng.permutation(n).astype(np.intp, copy=False) if shuffle else None
                total, status, step = self._engine.fit_epoch(X, Yd, labels, perm,
                                                             batch_size, lr)
                if status != 0:
                    raise DivergenceError(
                        f"fit: non-finite loss or gradient at epoch {epoch + 1}, step "
                        f"{step + 1} of {n_steps}; the parameters are those after the last "
                        "good step — lower lr")
                losses.append(total / n)
                if verbose:
                    print(f"epoch {epoch + 1}/{epochs}  loss {losses[-1]:.6g}")
        return losses

    # ------------------------------------------------------------------ persistence
    def save(self, path) -> None:
        """Write the model to ``path`` (.npz, no pickle), atomically."""
        from fastmlp.io import save
        save(self, path)

    def __getstate__(self):
        return {"layer_sizes": self.layer_sizes, "activation": self.activation,
                "loss": self.loss_name, "dtype": self.dtype.name, "params": self.params.copy()}

    def __setstate__(self, state):
        self.__init__(state["layer_sizes"], activation=state["activation"],
                      loss=state["loss"], dtype=state["dtype"], seed=0)
        params = np.asarray(state["params"], dtype=self.dtype)
        if params.shape != self.params.shape:
            raise ValueError("state: params do not match layer_sizes")
        self.params[...] = params
