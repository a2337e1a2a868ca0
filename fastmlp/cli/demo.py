"""``fastmlp demo``: train on data generated here (no download), report loss, accuracy and
throughput."""
from __future__ import annotations

import contextlib

import numpy as np

from fastmlp.cli.training import fit_epochs, rate
from fastmlp.model import MLP

N_FEATURES, N_CLASSES = 20, 4
LAYERS = [N_FEATURES, 128, 64, N_CLASSES]
# About a second of training on one idle core; a few seconds on a busy machine.
N_SAMPLES, EPOCHS = 40_000, 6


def make_blobs(n: int, n_features: int, n_classes: int, seed: int = 0):
    """Gaussian clusters around random centres: (X (n, d) float32, labels (n,) int64)."""
    rng = np.random.default_rng(seed)
    # Centres this close make the clusters overlap a little: the accuracy is high but not
    # trivially 1, so the demo shows the network learning.
    centres = rng.normal(scale=0.6, size=(n_classes, n_features))
    y = rng.integers(0, n_classes, size=n)
    X = centres[y] + rng.normal(size=(n, n_features))
    return X.astype(np.float32), y.astype(np.int64)


def _one_blas_thread():
    """(context, note): limits BLAS to one thread while the demo trains, if threadpoolctl
    is installed.  Layers this small gain nothing from more threads, and on a busy machine
    OpenBLAS's spinning workers make a step many times slower (see the README's
    performance notes)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext(), "BLAS threads: the library's default"
    return threadpool_limits(limits=1, user_api="blas"), "BLAS threads: 1"


def run(n: int = N_SAMPLES, epochs: int = EPOCHS, seed: int = 0,
        progress: bool = True) -> dict:
    """Train ``LAYERS`` on ``n`` generated rows (80 % training, 20 % test) for ``epochs``
    epochs with a progress bar; print and return the losses, test accuracy and
    throughput."""
    if n < 10:
        raise ValueError(f"n: expected at least 10 rows, got {n}")
    X, y = make_blobs(n, N_FEATURES, N_CLASSES, seed)
    split = int(0.8 * n)
    net = MLP(LAYERS, loss="softmax_cross_entropy", seed=seed)
    print(f"demo: {N_CLASSES} Gaussian clusters in {N_FEATURES} dimensions; network "
          f"{'-'.join(map(str, LAYERS))}; {split:,} training rows, {n - split:,} test rows",
          flush=True)
    limit, note = _one_blas_thread()
    with limit:
        history = fit_epochs(net, X[:split], y[:split], epochs=epochs, batch_size=64,
                             lr=0.05, seed=seed, progress=progress, desc="demo")
    accuracy = float(np.mean(net.predict(X[split:]) == y[split:]))
    throughput = rate(epochs * split, history["seconds"])
    print(f"training loss per epoch: {', '.join(f'{x:.4f}' for x in history['loss'])}")
    print(f"test accuracy {accuracy:.3f}")
    print(f"throughput {throughput:,.0f} samples/s ({history['seconds']:.2f} s of training; "
          f"{note})")
    return {"losses": history["loss"], "accuracy": accuracy, "samples_per_s": throughput}

