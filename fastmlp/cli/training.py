"""Training for ``fastmlp train`` and ``fastmlp demo``: one ``fit`` call per epoch under a
progress bar, and the scores reported along the way."""
from __future__ import annotations

import sys
import time

import numpy as np
import scipy.sparse as sp

import fastmlp
from fastmlp.cli.report import regression_scores


# ---------------------------------------------------------------------- progress
class _EpochLines:
    """Stand-in for a tqdm bar when tqdm is not installed: one line per epoch."""

    def __init__(self, total: int, desc: str):
        self.total, self.desc, self.n, self.postfix = total, desc, 0, ""

    def set_postfix_str(self, text: str, refresh: bool = True) -> None:
        self.postfix = text

    def update(self, n: int = 1) -> None:
        self.n += n
        print(f"{self.desc}: epoch {self.n}/{self.total}  {self.postfix}", file=sys.stderr,
              flush=True)

    def close(self) -> None:
        pass


class _NoBar(_EpochLines):
    def update(self, n: int = 1) -> None:
        pass


def _epoch_bar(total: int, desc: str, enabled: bool):
    if not enabled:
        return _NoBar(total, desc)
    try:
        from tqdm import tqdm
    except ImportError:
        return _EpochLines(total, desc)
    return tqdm(total=total, desc=desc, unit="epoch", file=sys.stderr, dynamic_ncols=True)


def fit_epochs(net, X, y, *, epochs: int, batch_size: int, lr: float, seed: int,
               progress: bool = True, desc: str = "train", val=None) -> dict:
    """Train ``net`` on (X, y) one epoch at a time, under a progress bar over the epochs
    showing the training loss, the throughput and, with ``val=(X_val, y_val)``, the
    validation score.

    Returns {"loss": [per epoch], "val_loss": [per epoch] or [], "seconds": time in fit}.
    Each epoch gets its own shuffling seed drawn from ``seed`` (one ``fit`` call per epoch
    with the same seed would visit the rows in the same order every epoch).
    """
    # Converted once here, so that fit does not copy the data again every epoch.
    X = _as_input(X, net.dtype)
    if val is not None:
        val = (_as_input(val[0], net.dtype), val[1])
    epoch_seeds = np.random.default_rng([seed, 1]).integers(0, 2**63, size=epochs)
    history = {"loss": [], "val_loss": [], "seconds": 0.0}
    bar = _epoch_bar(epochs, desc, progress)
    try:
        for epoch, epoch_seed in enumerate(epoch_seeds, 1):
            t0 = time.perf_counter()
            try:
                (loss,) = net.fit(X, y, epochs=1, batch_size=batch_size, lr=lr,
                                  seed=int(epoch_seed))
            except fastmlp.DivergenceError as exc:
                # fit counts epochs per call; name the epoch of the whole run instead.
                raise fastmlp.DivergenceError(
                    f"training diverged in epoch {epoch} of {epochs}: a step gave a "
                    "non-finite loss or gradient; lower the learning rate") from exc
            elapsed = time.perf_counter() - t0
            history["seconds"] += elapsed
            history["loss"].append(loss)
            status = f"loss {loss:.4g}, {rate(X.shape[0], elapsed):,.0f} samples/s"
            if val is not None:
                history["val_loss"].append(net.loss(*val))
                name, value = score(net, *val)[0]
                status += f", validation {name} {value:.4g}"
            bar.set_postfix_str(status, refresh=False)     # update() redraws
            bar.update(1)
    finally:
        bar.close()
    return history


def _as_input(X, dtype):
    """X in the form fit takes without converting it: C-ordered of the model's dtype, or
    (sparse X) CSR of it."""
    if sp.issparse(X):
        return sp.csr_matrix(X, dtype=dtype)
    return np.ascontiguousarray(X, dtype=dtype)


def rate(samples: int, seconds: float) -> float:
    """Samples per second (a tiny data set can train within the clock's resolution)."""
    return samples / max(seconds, 1e-9)


def score(net, X, y) -> list[tuple[str, float]]:
    """[(name, value), ...]: accuracy for a classifier, R², MAE and RMSE for a regressor
    (y: int labels, or (n, k) targets)."""
    pred = net.predict(X)
    if net.loss_name == "softmax_cross_entropy":
        return [("accuracy", float(np.mean(pred == y)))]
    return regression_scores(pred, np.asarray(y, dtype=np.float64).reshape(pred.shape))
