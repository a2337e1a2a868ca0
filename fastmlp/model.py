"""The low-level model: ``MLP`` owns the flat parameter buffer and a compiled Engine."""
from __future__ import annotations

import contextlib
import os
import threading
import time
from typing import Any, Literal, Sequence, cast, overload

import numpy as np
from numpy.typing import ArrayLike, DTypeLike

from fastmlp import _core
from fastmlp import _validation as v
from fastmlp import io
from fastmlp._flat import FlatParams
from fastmlp._progress import EpochProgress
from fastmlp.errors import DivergenceError


# The names config() and save write.  Literal strings, not dtype.name: numpy builds that
# string anew (in Python) on each access, and tracemalloc saw such strings pile up (boundedly,
# but past tests/test_leaks.py's slack) when each saved model carried a fresh one.
_DTYPE_NAMES = {np.dtype(np.float32): "float32", np.dtype(np.float64): "float64"}


class MLP:
    """A multilayer perceptron trained by minibatch gradient descent.

    Row-major throughout (seed 003): X is (n, d0); ``weights[l]`` is (d(l), d(l+1));
    Z = A·W + b.  Hidden layers apply ``activation``; the last layer applies
    ``output_activation`` (identity by default: raw outputs for ``loss="mse"``, logits for
    ``loss="softmax_cross_entropy"``).

    Parameters
    ----------
    layer_sizes : sequence of int
        Widths d0, d1, …, dL (inputs first, outputs last); at least two.  A model of more
        than 2**31 parameters, or whose parameters, gradient and optimizer state would
        exceed the workspace limit (``fastmlp.set_workspace_limit``, default 8 GiB), is
        refused with a ValueError before anything is allocated.
    activation : str or sequence of str
        Hidden-layer activation, one name for every hidden layer or one per hidden layer:
        "relu", "tanh", "logistic", "identity", "leaky_relu" (slope 0.01 below 0), "elu"
        (α = 1), "gelu" (exact, z·Φ(z)), "silu" (z·σ(z)) or "softplus" (log(1 + eᶻ)),
        as PyTorch defines them.
    loss : {"mse", "softmax_cross_entropy"}
        ``mse``: L = (1/n)·Σᵢ‖f(xᵢ) − yᵢ‖² (summed over outputs, averaged over samples,
        seeds 000/001).  ``softmax_cross_entropy``: L = −(1/n)·Σᵢ Σₖ yᵢₖ·log softmax(zᵢ)ₖ
        (seed 003).
    dtype : float32 or float64
        Dtype of parameters and of every computation.
    seed : int or None
        Seeds the initial weights; the same seed gives the same weights.  A layer followed
        by a ReLU-like activation (relu, leaky_relu, elu, gelu, silu, softplus) starts from
        He initialisation, W(l) ~ N(0, 2/d(l-1)); the others from Glorot's,
        W(l) ~ N(0, 2/(d(l-1) + d(l))); the output layer follows the last hidden layer's
        rule.  Biases start at 0.
    output_activation : {"identity", "logistic", "tanh", "relu"}
        Element-wise g applied to the last layer (``mse`` only; the cross-entropy works on
        logits).  Its derivative enters the output delta as g'(a) ⊙ ∇ŷ (seed 002).
    optimizer : {"sgd", "momentum", "nesterov", "adam"}
        Update rule of ``train_step``/``fit``; ``lr`` is its step size.
    l2 : float
        α ≥ 0: adds α/(2n)·Σₗ‖W(l)‖² to the loss of a batch of n rows (biases excluded) —
        scikit-learn's ``alpha`` convention.
    momentum, beta_1, beta_2, epsilon : float
        Hyper-parameters of the momentum and Adam optimizers.
    dropout : float or sequence of float
        p in [0, 1): inverted dropout on the hidden layers' outputs in ``train_step`` and
        ``fit`` — each unit zeroed with probability p, the others scaled by 1/(1 − p);
        one p for every hidden layer or one per hidden layer.  ``forward``, ``predict``,
        ``loss`` and ``loss_and_grad`` never drop.  The masks are drawn from
        ``dropout_state``, a counter seeded from ``seed``, so the same seeds give the
        same training; it is saved with the model.

    Attributes
    ----------
    params : ndarray (n_params,)
        All parameters in one flat buffer: W(1), b(1), W(2), b(2), …
    weights, biases : list of ndarray
        Live views into ``params``.
    """

    def __init__(self, layer_sizes: Sequence[int], *,
                 activation: str | Sequence[str] = "relu",
                 loss: str = "mse", dtype: DTypeLike = np.float32, seed: int | None = None,
                 output_activation: str = "identity", optimizer: str = "sgd",
                 l2: float = 0.0, momentum: float = 0.9, beta_1: float = 0.9,
                 beta_2: float = 0.999, epsilon: float = 1e-8,
                 dropout: float | Sequence[float] = 0.0) -> None:
        sizes = v.check_layer_sizes(layer_sizes)
        acts = v.check_activations("activation", activation, len(sizes) - 2)
        loss = v.check_choice("loss", loss, v.LOSSES)
        output_activation = v.check_choice("output_activation", output_activation,
                                           v.OUTPUT_ACTIVATIONS)
        optimizer = v.check_choice("optimizer", optimizer, v.OPTIMIZERS)
        dt = v.check_dtype(dtype)
        if loss == "softmax_cross_entropy" and sizes[-1] < 2:
            raise ValueError("layer_sizes: softmax_cross_entropy needs at least 2 outputs, "
                             f"got {sizes[-1]}")
        if loss == "softmax_cross_entropy" and output_activation != "identity":
            raise ValueError("output_activation: softmax_cross_entropy works on logits; "
                             f"expected 'identity', got {output_activation!r}")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))):
            raise TypeError(f"seed: expected an int or None, got {seed!r}")
        rng = v.make_rng("seed", seed)
        l2 = v.check_nonnegative_float("l2", l2)
        momentum = v.check_fraction("momentum", momentum, closed_low=True)
        beta_1 = v.check_fraction("beta_1", beta_1, closed_low=True)
        beta_2 = v.check_fraction("beta_2", beta_2, closed_low=True)
        epsilon = v.check_positive_float("epsilon", epsilon)
        drop = v.check_dropout("dropout", dropout, len(sizes) - 2)
        if not dt.type(epsilon) > 0:      # Adam's ε is used in the model dtype
            raise ValueError(f"epsilon: {epsilon!r} rounds to 0 in {dt.name}; expected at "
                             f"least {np.finfo(dt).smallest_subnormal}")
        self.layer_sizes: tuple[int, ...] = sizes
        self.activation: str | tuple[str, ...] = acts
        self.output_activation: str = output_activation
        self.loss_name: str = loss
        self.dtype: np.dtype = dt
        self.optimizer: str = optimizer
        self.l2: float = l2
        self.hyper: dict[str, float] = {"momentum": momentum, "beta1": beta_1, "beta2": beta_2, "eps": epsilon}
        self._layout: _core.Layout = _core.Layout(sizes, "layer_sizes")
        n_params = self._layout.n_params
        n_state = self._layout.state_size(optimizer)
        # Refused before anything is allocated: parameters, gradient, optimizer state and
        # the float64 draw of the largest initial weight matrix.
        if n_params > v.MAX_PARAMS:
            raise ValueError(f"layer_sizes: {n_params} parameters, over the limit of "
                             f"{v.MAX_PARAMS}")
        _core.check_memory(
            "layer_sizes", f"a model of {n_params} parameters",
            (2 * n_params + n_state) * dt.itemsize + 8 * self._layout.largest_weight,
            "see fastmlp.set_workspace_limit")
        self._flat = FlatParams(self._layout, np.zeros(n_params, dtype=dt))
        self.params: np.ndarray = self._flat.theta
        self.weights, self.biases = self._flat.weights, self._flat.biases
        for l, W in enumerate(self.weights):
            # The output layer follows the last hidden layer's rule.
            act = (acts if isinstance(acts, str) else acts[min(l, len(acts) - 1)] if acts
                   else "relu")    # no hidden layer: as the default activation
            fan = W.shape[0] if act in v.HE_ACTIVATIONS else W.shape[0] + W.shape[1]
            W[...] = rng.standard_normal(W.shape) * np.sqrt(2.0 / fan)
        self._engine, self._grad = self._flat.engine(acts, output_activation, loss, l2)
        self._network = self._engine.network
        self._grad_weights, self._grad_biases = self._layout.views(self._grad)
        self.optimizer_state: np.ndarray = np.zeros(n_state, dtype=dt)
        self._engine.set_optimizer(optimizer, self.optimizer_state, **self.hyper)
        # Drawn after the weights, so that the initial network is the same with or
        # without dropout.
        self._engine.set_dropout(drop, int(rng.integers(2**63)))
        self.dropout: float | tuple[float, ...] = drop
        # Training calls share the engine's workspace and the gradient buffer.
        self._lock = threading.Lock()

    @property
    def dropout_state(self) -> int:
        """The counter the next dropout masks are drawn from (fastmlp.kernels.dropout_forward)."""
        state: int = self._engine.dropout_state
        return state

    @property
    def adam_steps(self) -> int:
        """Adam's step count (used by its bias correction); 0 for other optimizers."""
        return self._engine.adam_steps

    # ------------------------------------------------------------------ properties
    @property
    def n_params(self) -> int:
        n: int = self.params.shape[0]
        return n

    @property
    def n_inputs(self) -> int:
        return self.layer_sizes[0]

    @property
    def n_outputs(self) -> int:
        return self.layer_sizes[-1]

    def __repr__(self) -> str:
        return (f"MLP({list(self.layer_sizes)}, activation={self.activation!r}, "
                f"loss={self.loss_name!r}, dtype=np.{self.dtype.name}, "
                f"output_activation={self.output_activation!r}, "
                f"optimizer={self.optimizer!r}, l2={self.l2!r})")

    # ------------------------------------------------------------------ inference
    def _X(self, X: ArrayLike) -> np.ndarray | _core.SparseRows:
        # scipy sparse X (CSR, CSC, COO) becomes checked CSR rows: the first layer then
        # works on the stored values only.
        return v.as_rows("X", X, self.dtype, self.layer_sizes[0])

    def forward(self, X: ArrayLike) -> np.ndarray:
        """Raw outputs (mse) or logits (cross-entropy): (n, dL) array of the model dtype.

        Rows are computed in chunks, so the scratch memory is bounded (16 MiB, or 256 rows
        if more) whatever n is.  An X whose output would exceed the workspace limit, or of
        more than 2**31 - 1 rows, is refused with a ValueError before anything is
        allocated (the training methods check each batch the same way).
        """
        rows = self._X(X)
        n = rows.shape[0]
        _core.check_workspace("X", self._layout.forward_bytes(n, self.dtype.itemsize), n)
        out = np.empty((n, self.layer_sizes[-1]), dtype=self.dtype)
        return self._network.forward(rows, out)

    def predict(self, X: ArrayLike) -> np.ndarray:
        """mse: same as ``forward``; cross-entropy: int64 class labels (n,)."""
        out = self.forward(X)
        if self.loss_name == "mse":
            return out
        labels: np.ndarray = np.argmax(out, axis=1)
        return labels.astype(np.int64, copy=False)

    def predict_proba(self, X: ArrayLike) -> np.ndarray:
        """Softmax rows (n, dL) for a cross-entropy model."""
        if self.loss_name != "softmax_cross_entropy":
            raise ValueError("predict_proba: only defined for loss='softmax_cross_entropy'")
        out = self.forward(X)
        _core.k_softmax(out)
        return out

    # ------------------------------------------------------------------ training
    def _batch(self, X: ArrayLike, Y: ArrayLike, rows_name: str | None = "X"
               ) -> tuple[np.ndarray | _core.SparseRows, np.ndarray | None, np.ndarray | None]:
        rows = self._X(X)
        n = rows.shape[0]
        if rows_name is not None:
            _core.check_workspace(rows_name, self._engine.train_bytes(n), n)
        Yd, labels = v.as_targets(Y, self.loss_name, self.dtype, n, self.layer_sizes[-1])
        return rows, Yd, labels

    def _weights(self, sample_weight: ArrayLike | None, n: int, fit: bool = False
                 ) -> np.ndarray | None:
        # (n,) sample weights of the model's dtype, checked, or None; a fit's not all 0.
        if sample_weight is None:
            return None
        return v.as_sample_weight("sample_weight", sample_weight, self.dtype, (n,), fit)

    def loss(self, X: ArrayLike, Y: ArrayLike, sample_weight: ArrayLike | None = None
             ) -> float:
        """Loss (float) of the model on (X, Y); parameters are not changed.
        ``sample_weight``: as ``fit``'s."""
        return self.loss_and_grad(X, Y, _copy=False, sample_weight=sample_weight)[0]

    @overload
    def loss_and_grad(self, X: ArrayLike, Y: ArrayLike, _copy: Literal[True] = ...,
                      sample_weight: ArrayLike | None = ...
                      ) -> tuple[float, list[tuple[np.ndarray, np.ndarray]]]: ...

    @overload
    def loss_and_grad(self, X: ArrayLike, Y: ArrayLike, _copy: Literal[False],
                      sample_weight: ArrayLike | None = ...) -> tuple[float, None]: ...

    def loss_and_grad(self, X: ArrayLike, Y: ArrayLike, _copy: bool = True,
                      sample_weight: ArrayLike | None = None
                      ) -> tuple[float, list[tuple[np.ndarray, np.ndarray]] | None]:
        """Loss and gradients: ``(loss, [(dW1, db1), (dW2, db2), …])``, fresh arrays.

        dW(l) has the shape of ``weights[l]``, db(l) of ``biases[l]``.
        ``sample_weight``: as ``fit``'s.  Raises DivergenceError if the loss or a
        gradient is not finite.
        """
        rows, Yd, labels = self._batch(X, Y)
        sw = self._weights(sample_weight, rows.shape[0])
        with self._lock:
            loss = self._engine.train_step(rows, Yd, labels, 1.0, False, sw)
            if not _copy:
                return loss, None
            grads = [(dW.copy(), db.copy())
                     for dW, db in zip(self._grad_weights, self._grad_biases)]
        return loss, grads

    def train_step(self, X: ArrayLike, Y: ArrayLike, lr: float = 0.01,
                   sample_weight: ArrayLike | None = None) -> float:
        """One step of the model's optimizer on the batch (X, Y); returns the loss before
        the update.  ``sample_weight``: as ``fit``'s.

        If the loss or a gradient is not finite, raises DivergenceError and leaves the
        parameters (and optimizer state) exactly as they were.
        """
        with self._lock:
            # Inputs already in final form go straight to the core; the others are
            # converted and validated here first.
            loss = (self._engine.train_step_fast(X, Y, lr) if sample_weight is None
                    else None)
            if loss is None:
                lr = v.check_positive_float("lr", lr)
                rows, Yd, labels = self._batch(X, Y)
                sw = self._weights(sample_weight, rows.shape[0])
                loss = self._engine.train_step(rows, Yd, labels, lr, True, sw)
        return loss

    def _fit_inputs(self, X: ArrayLike, Y: ArrayLike, batch_size: int
                    ) -> tuple[np.ndarray | _core.SparseRows, np.ndarray | None,
                               np.ndarray | None, int]:
        # fit's data, converted and checked whole once (an epoch's steps do not check
        # their batches), and its batch size clipped to the rows: (rows, Y, labels,
        # batch_size).
        batch_size = v.check_positive_int("batch_size", batch_size)
        rows, Yd, labels = self._batch(X, Y, rows_name=None)
        n = rows.shape[0]
        batch_size = min(batch_size, n)
        _core.check_workspace("batch_size",
                              self._engine.train_bytes(batch_size), batch_size)
        if isinstance(rows, np.ndarray) and not _core.k_all_finite(rows.reshape(-1)):
            raise ValueError("X: contains NaN or infinity")   # (SparseRows checked theirs)
        if Yd is not None and not _core.k_all_finite(Yd.reshape(-1)):
            raise ValueError("Y: contains NaN or infinity")
        if labels is not None and (labels.min() < 0 or labels.max() >= self.layer_sizes[-1]):
            raise ValueError(f"Y: class labels must be integers in [0, {self.layer_sizes[-1]})")
        return rows, Yd, labels, batch_size

    def fit(self, X: ArrayLike, Y: ArrayLike, epochs: int = 10, batch_size: int = 32, lr: float = 0.01,
            shuffle: bool = True, seed: int | None = 0, verbose: bool = False,
            sample_weight: ArrayLike | None = None) -> list[float]:
        """Minibatch training over (X, Y) with the model's optimizer; returns the mean
        training loss of each epoch.

        Each epoch visits every row once (the last, partial batch included), in an order
        drawn from ``seed`` when ``shuffle``.  An epoch's loss is the mean over samples of
        the per-batch losses before each update.  If a step diverges, the parameters are
        those after the last good step and DivergenceError names the epoch and step.

        ``sample_weight``: (n,) finite weights >= 0, not all zero, or None (all 1).  Row
        i's term of its batch's mean is multiplied by wᵢ: a batch's loss is
        (1/rows)·Σ wᵢ·ℓᵢ, so weights are absolute (doubling them all doubles the data's
        pull against the L2 penalty, which is unchanged), a bootstrap's counts or a
        Poisson bootstrap's draws give a bagged model, and a zero-weight row adds
        nothing (a batch of zero weight steps on the penalty alone).

        ``verbose=True`` draws a tqdm bar on stderr that advances once per epoch (an epoch
        is one call into the core), with the epoch's loss and samples/s; without tqdm
        installed it prints one line per epoch to stdout instead.  Nothing is written
        otherwise.

        X may be a memory map (``np.load(path, mmap_mode="r")``) of the model's dtype,
        C-ordered: it is read in place, batch by batch, never copied whole; the memory
        used besides it is the epoch's permutation (8 bytes a row) and the batch
        workspace.  A memory map of another dtype or layout is refused with a ValueError,
        since converting it would copy all of it into memory.
        """
        epochs = v.check_positive_int("epochs", epochs)
        lr = v.check_positive_float("lr", lr)
        rows, Yd, labels, batch_size = self._fit_inputs(X, Y, batch_size)
        n = rows.shape[0]
        sw = self._weights(sample_weight, n, fit=True)
        rng = v.make_rng("seed", seed)
        losses: list[float] = []
        n_steps = -(-n // batch_size)
        progress = EpochProgress(epochs, n) if verbose else None
        with self._lock, (progress if progress is not None else contextlib.nullcontext()):
            for epoch in range(epochs):
                perm = rng.permutation(n).astype(np.intp, copy=False) if shuffle else None
                start = time.perf_counter()
                total, status, step = self._engine.fit_epoch(rows, Yd, labels, perm,
                                                             batch_size, lr, sw)
                perm = None     # freed before the next epoch draws one: one alive at a time
                if status != 0:
                    raise DivergenceError("fit: " + divergence_text(epoch, step, n_steps))
                losses.append(total / n)
                if progress is not None:
                    progress.update(losses[-1], time.perf_counter() - start)
        return losses

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the model to ``path`` (.npz, no pickle), atomically."""
        io.save(self, path)

    def config(self) -> dict[str, Any]:
        """Constructor arguments that rebuild this model (without its parameters)."""
        activation = (self.activation if isinstance(self.activation, str)
                      else list(self.activation))
        return {"layer_sizes": list(self.layer_sizes), "activation": activation,
                "loss": self.loss_name, "dtype": _DTYPE_NAMES[self.dtype],
                "output_activation": self.output_activation, "optimizer": self.optimizer,
                "l2": self.l2, "momentum": self.hyper["momentum"],
                "beta_1": self.hyper["beta1"], "beta_2": self.hyper["beta2"],
                "epsilon": self.hyper["eps"],
                "dropout": self.dropout if isinstance(self.dropout, float) else list(self.dropout)}

    def _set_state(self, params: ArrayLike, optimizer_state: ArrayLike,
                   adam_steps: int, dropout_state: int | None = None) -> None:
        params = np.asarray(params)
        state = np.asarray(optimizer_state)
        if params.shape != self.params.shape or state.shape != self.optimizer_state.shape:
            raise ValueError("state: params or optimizer state do not match the model")
        if not 0 <= int(adam_steps) < 2**63:
            raise ValueError(f"state: Adam's step count must be in [0, 2**63), got {adam_steps}")
        if dropout_state is not None and not 0 <= int(dropout_state) < 2**64:
            raise ValueError(f"state: the dropout counter must be in [0, 2**64), got "
                             f"{dropout_state}")
        self.params[...] = params
        self.optimizer_state[...] = state
        self._engine.adam_steps = int(adam_steps)
        if dropout_state is not None:
            self._engine.dropout_state = int(dropout_state)

    def __getstate__(self) -> dict[str, Any]:
        return {"config": self.config(), "params": self.params.copy(),
                "optimizer_state": self.optimizer_state.copy(),
                "adam_steps": self.adam_steps, "dropout_state": self.dropout_state}

    def __setstate__(self, state: dict[str, Any]) -> None:
        config = dict(state["config"])
        type(self).__init__(self, config.pop("layer_sizes"), seed=0, **config)
        self._set_state(state["params"], state["optimizer_state"], state["adam_steps"],
                        state.get("dropout_state"))


def divergence_text(epoch: int, step: int, n_steps: int) -> str:
    """What a diverged fit says: where (0-based epoch and step of n_steps) and what the
    parameters are."""
    return (f"non-finite loss or gradient at epoch {epoch + 1}, step {step + 1} of "
            f"{n_steps}; the parameters are those after the last good step — lower lr")


def _build(layer_sizes: Sequence[int], **config: Any) -> MLP:
    # The initial draw is overwritten by the file's parameters; seed 0 keeps it cheap.
    return MLP(layer_sizes, seed=0, **config)


def load(path: str | os.PathLike[str]) -> MLP:
    """Read a model written by ``MLP.save`` (every field checked before use)."""
    return cast(MLP, io.load(path, _build))
