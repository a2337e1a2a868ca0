"""``MLPStack``: many ``MLP``s trained on the same batches in one compiled call per epoch."""
from __future__ import annotations

import contextlib
import functools
import time
import warnings
from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike

from fastmlp import _core, _workers
from fastmlp import _validation as v
from fastmlp._progress import EpochProgress
from fastmlp.errors import DivergenceWarning
from fastmlp.model import MLP, divergence_text


class MLPStack:
    """K ``MLP``s with the same input width, output width, loss and dtype, trained together
    on the same batches.

    Hidden widths, depth, activations, optimizers, L2 and dropout are free per model.  An
    epoch (or a step) of all of them is one GIL-free call into the core: each batch is
    gathered once for the whole stack and every model takes its own step on it, so each
    model ends exactly (bit for bit) where its own ``MLP.fit`` with the same arguments
    would have left it — the batch order is drawn from ``seed`` apart from the weights.
    What is saved, against K separate fits: the Python-level work of each call, the
    permutation and the gather of every batch, K - 1 times over.

    The models are the stack's: ``models[k]`` is the caller's own object, trained in place;
    use it (predict, save, …) as any MLP.

    A model whose step diverges (non-finite loss or gradient) stops alone, with the
    parameters after its last good step (the NaN guard of ``MLP.fit``); the others go
    on.  It is reported by a ``DivergenceWarning`` naming it, its message is kept in
    ``diverged[k]``, and ``active[k]`` becomes False: later calls skip it (its losses are
    NaN) until the caller sets ``active[k] = True`` again.

    Parameters
    ----------
    models : sequence of MLP
        K ≥ 1 distinct models; a mismatch (input or output width, loss, dtype) is a
        ValueError naming the model.

    Attributes
    ----------
    models : tuple of MLP
    active : ndarray (K,) bool
        The models the next call trains.
    diverged : dict[int, str]
        For each model that stopped on a non-finite step, where and why.
    """

    def __init__(self, models: Sequence[MLP]) -> None:
        models = tuple(models)
        for k, m in enumerate(models):
            if not isinstance(m, MLP):
                raise TypeError(f"models[{k}]: expected a fastmlp.MLP, got "
                                f"{type(m).__name__}")
        self.models: tuple[MLP, ...] = models
        self._stack = _core.Stack([m._engine for m in models], "models")
        self.active: np.ndarray = np.ones(len(models), dtype=bool)
        self.diverged: dict[int, str] = {}
        self._groups: dict[tuple[int, ...], _core.Stack] = {}

    def __len__(self) -> int:
        return len(self.models)

    def __repr__(self) -> str:
        return f"MLPStack({len(self.models)} models)"

    def _lrs(self, lr: float | ArrayLike) -> np.ndarray:
        K = len(self.models)
        values = np.ravel(np.asarray(lr, dtype=object)) if np.ndim(lr) else [lr] * K
        if len(values) != K:
            raise ValueError(f"lr: expected one learning rate or {K}, got {len(values)}")
        return np.array([v.check_positive_float(f"lr[{k}]" if np.ndim(lr) else "lr", x)
                         for k, x in enumerate(values)], dtype=np.float64)

    def _inputs(self, X: ArrayLike, Y: ArrayLike, batch_size: int):
        # Converted and checked once, by the first model (they share dtype and widths);
        # every model's workspace for the batch size is checked as its own fit would.
        rows, Yd, labels, batch_size = self.models[0]._fit_inputs(X, Y, batch_size)
        for m in self.models[1:]:
            _core.check_workspace("batch_size", m._engine.train_bytes(batch_size),
                                  batch_size)
        return rows, Yd, labels, batch_size

    @contextlib.contextmanager
    def _locked(self):
        # Each model's lock, as its own training calls take it; in one global order, so
        # that two stacks sharing models cannot deadlock.
        with contextlib.ExitStack() as held:
            for m in sorted(self.models, key=id):
                held.enter_context(m._lock)
            yield

    def _plan(self, n: int, batch_size: int, epochs: int, single: bool
              ) -> list[tuple[np.ndarray, _core.Stack]]:
        # The groups of models that train side by side, one per thread, each with its
        # sub-stack: (indices, Stack); _workers.split decides.
        K = len(self.models)
        work = [_workers.model_work(m.n_params, n, batch_size, epochs) if self.active[k]
                else 0.0 for k, m in enumerate(self.models)]
        groups = [list(range(K))] if single else _workers.split(work)
        if len(groups) == 1:
            return [(np.arange(K), self._stack)]
        plan = []
        for g in groups:
            idx = tuple(g)
            if idx not in self._groups:
                self._groups[idx] = _core.Stack([self.models[k]._engine for k in idx],
                                                "models")
            plan.append((np.array(idx, dtype=np.intp), self._groups[idx]))
        return plan

    def _weights(self, sample_weight: ArrayLike | None, n: int, fit: bool
                 ) -> np.ndarray | None:
        # None, (n,) weights of every model, or (K, n) one row a model: checked, of the
        # models' dtype (a fit's: not all 0 for any model).
        if sample_weight is None:
            return None
        shape = (n,) if np.ndim(sample_weight) < 2 else (len(self.models), n)
        return v.as_sample_weight("sample_weight", sample_weight, self.models[0].dtype,
                                  shape, fit)

    @staticmethod
    def _group_weights(sw: np.ndarray | None, idx: np.ndarray, K: int) -> np.ndarray | None:
        # A group's share of the weights: its rows of a (K, n) array (a copy, once a fit).
        if sw is None or sw.ndim == 1 or len(idx) == K:
            return sw
        return np.ascontiguousarray(sw[idx])

    def _run(self, idx: np.ndarray, stack: _core.Stack, rows, Yd, labels, sw, epochs: int,
             batch_size: int, lrs: np.ndarray, shuffle: bool, seed: int | None,
             losses: np.ndarray, progress: EpochProgress | None
             ) -> list[tuple[int, int, int]]:
        # The epochs of one group, with its own generator from seed: the same permutations
        # MLP.fit draws.  sw: the group's weights (_group_weights).  Fills its rows of
        # losses; returns (epoch, model, step) of each model that diverged, for the caller
        # to report.
        n = rows.shape[0]
        rng = v.make_rng("seed", seed)
        active = self.active[idx].copy()
        stopped = []
        for epoch in range(epochs):
            if not active.any():
                break
            perm = rng.permutation(n).astype(np.intp, copy=False) if shuffle else None
            start = time.perf_counter()
            totals, status, steps = stack.fit_epoch(rows, Yd, labels, perm, batch_size,
                                                    lrs[idx], active, sw)
            perm = None     # freed before the next epoch draws one: one alive at a time
            ok = active & (status == 0)
            losses[idx, epoch] = np.where(ok, totals / n, np.nan)
            for j in np.flatnonzero(active & (status != 0)):
                stopped.append((epoch, int(idx[j]), int(steps[j])))
                active[j] = False
            if progress is not None:
                progress.update(float(np.mean(losses[idx[ok], epoch])) if ok.any()
                                else float("nan"), time.perf_counter() - start)
        return stopped

    def _report(self, stopped: list[tuple[int, int, int]], n_steps: int) -> None:
        # Each model that diverged: kept in diverged, taken out of active, warned about.
        for epoch, k, step in sorted(stopped):
            text = f"models[{k}]: " + divergence_text(epoch, step, n_steps)
            self.diverged[k] = text
            self.active[k] = False
            warnings.warn(text + "; it stopped there, the other models go on",
                          DivergenceWarning, stacklevel=3)

    def fit(self, X: ArrayLike, Y: ArrayLike, epochs: int = 10, batch_size: int = 32,
            lr: float | ArrayLike = 0.01, shuffle: bool = True, seed: int | None = 0,
            verbose: bool = False, sample_weight: ArrayLike | None = None) -> np.ndarray:
        """Minibatch training of every active model over (X, Y), as ``MLP.fit`` with the
        same arguments trains one; returns the mean training loss of each model and
        epoch, a (K, epochs) float64 array (NaN where a model was not training).

        ``lr``: one learning rate, or K of them (one per model).  ``verbose``: as
        ``MLP.fit``, showing the mean loss of the models still training.
        ``sample_weight``: None, (n,) weights of every model, or (K, n), row k the
        weights of ``models[k]`` (each as ``MLP.fit``'s): K bootstrap or Poisson-bootstrap
        draws make a bagged ensemble in one call, on one gathered batch at a time.

        With more than one thread allowed (``fastmlp.set_num_threads``) and enough work,
        the models are split into groups that train side by side on fastmlp's threads,
        each group gathering its own batches; the results are the same bit for bit.
        """
        epochs = v.check_positive_int("epochs", epochs)
        lrs = self._lrs(lr)
        rows, Yd, labels, batch_size = self._inputs(X, Y, batch_size)
        n = rows.shape[0]
        sw = self._weights(sample_weight, n, fit=True)
        K = len(self.models)
        losses = np.full((K, epochs), np.nan)
        plan = self._plan(n, batch_size, epochs, single=verbose)
        progress = EpochProgress(epochs, n) if verbose else None
        args = (epochs, batch_size, lrs, shuffle, seed, losses)
        with self._locked(), (progress if progress is not None else contextlib.nullcontext()):
            # One piece per group (progress only with one group: single=verbose above).
            stopped = sum(_workers.side_by_side(
                [functools.partial(self._run, idx, stack, rows, Yd, labels,
                                   self._group_weights(sw, idx, K), *args, progress)
                 for idx, stack in plan]), [])
        self._report(stopped, -(-n // batch_size))
        return losses

    def train_step(self, X: ArrayLike, Y: ArrayLike, lr: float | ArrayLike = 0.01,
                   sample_weight: ArrayLike | None = None) -> np.ndarray:
        """One step of every active model's optimizer on the batch (X, Y); returns each
        model's loss before its update, (K,) float64 (NaN where a model did not train).
        ``sample_weight``: as ``fit``'s."""
        lrs = self._lrs(lr)
        rows, Yd, labels, n = self._inputs(X, Y, np.shape(X)[0] or 1)
        sw = self._weights(sample_weight, rows.shape[0], fit=False)
        losses = np.full((len(self.models), 1), np.nan)
        with self._locked():
            stopped = self._run(np.arange(len(self.models)), self._stack, rows, Yd, labels,
                                sw, 1, n, lrs, False, None, losses, None)
        self._report(stopped, 1)
        return losses[:, 0]

    def forward(self, X: ArrayLike) -> np.ndarray:
        """Every model's raw outputs or logits on X: (K, n, dL) array of the models'
        dtype (``MLP.forward`` of each)."""
        first = self.models[0]
        rows = first._X(X)
        n = rows.shape[0]
        _core.check_workspace("X", first._layout.forward_bytes(n, first.dtype.itemsize)
                              * len(self.models), n)
        out = np.empty((len(self.models), n, first.n_outputs), dtype=first.dtype)
        for k, m in enumerate(self.models):
            m._network.forward(rows, out[k])
        return out
