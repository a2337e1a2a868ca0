"""The implementations a benchmark compares, all behind one small interface.

    peer = NumpyPeer()
    peer.setup(layer_sizes, loss, dtype, X, Y)   # builds the model, keeps the batch
    peer.step()                                  # ONE SGD step on it: forward, loss,
                                                 # backward, update; returns the loss
    peer.epoch(X, Y, batch_size)                 # (some peers) one shuffled epoch
    peer.params()                                # [(W, b), ...] in fastmlp's layout

Every peer starts from the same weights (``he_init``, the scheme and seed fastmlp uses),
with X of shape (n, d0), W(l) of shape (d_in, d_out), ReLU hidden layers, and
  mse:                   L = (1/n)·Σᵢ‖ŷᵢ − yᵢ‖²,  Δ = (2/n)·(Ŷ − Y)      (Y: (n, k) floats)
  softmax_cross_entropy: L = −(1/n)·Σᵢ log pᵢ,yᵢ,   Δ = (P − onehot(y))/n  (Y: (n,) int64)
(the conventions of /work/shared/seeds).  scikit-learn is the exception: it halves the
squared error, so its MSE step is the same work but not the same numbers.
"""
from __future__ import annotations

import numpy as np

LR = 0.01


def he_init(layer_sizes, dtype, seed=0):
    """[(W, b), ...] drawn like ``fastmlp.MLP(..., seed=seed)``: W ~ N(0, 2/d_in), b = 0."""
    rng = np.random.default_rng(seed)
    out = []
    for d_in, d_out in zip(layer_sizes[:-1], layer_sizes[1:]):
        W = (rng.standard_normal((d_in, d_out)) * np.sqrt(2.0 / d_in)).astype(dtype)
        out.append((W, np.zeros(d_out, dtype=dtype)))
    return out


def _copy_init(init, layer_sizes, dtype):
    init = he_init(layer_sizes, dtype) if init is None else init
    return ([np.array(W, dtype=dtype) for W, _ in init],
            [np.array(b, dtype=dtype) for _, b in init])


def _batches(n, batch_size, seed):
    perm = np.random.default_rng(seed).permutation(n)
    return [perm[s:s + batch_size] for s in range(0, n, batch_size)]


class Peer:
    name = "?"
    label = "?"

    @classmethod
    def available(cls) -> str | None:
        """None if the peer can run here, else why not."""
        return None

    def setup(self, layer_sizes, loss, dtype, X, Y, lr=LR, init=None):
        raise NotImplementedError

    def step(self):
        raise NotImplementedError


class FastmlpPeer(Peer):
    name, label = "fastmlp", "fastmlp MLP.train_step"
    blas = None      # fastmlp.blas library for this peer's blocks; None: the import default

    def setup(self, layer_sizes, loss, dtype, X, Y, lr=LR, init=None):
        import fastmlp
        self._blas = self.blas or _DEFAULT_BLAS
        self.model = fastmlp.MLP(layer_sizes, loss=loss, dtype=dtype, seed=0)
        if init is not None:
            for (W, b), W0, b0 in zip(init, self.model.weights, self.model.biases):
                W0[...] = W
                b0[...] = b
        self.X, self.Y, self.lr = X, Y, float(lr)

    def step(self):
        return self.model.train_step(self.X, self.Y, self.lr)

    def epoch(self, X, Y, batch_size, seed=0):
        return self.model.fit(X, Y, epochs=1, batch_size=batch_size, lr=self.lr,
                              shuffle=True, seed=seed)[0]

    def params(self):
        return [(W.copy(), b.copy()) for W, b in zip(self.model.weights, self.model.biases)]

    def before_block(self):
        import fastmlp.blas
        fastmlp.blas.use(self._blas)


def _default_blas() -> str:
    import fastmlp.blas
    return fastmlp.blas.current()


_DEFAULT_BLAS = _default_blas()


class _FastmlpOnBlas(FastmlpPeer):
    """fastmlp on another BLAS library of fastmlp.blas, to compare the libraries."""

    @classmethod
    def available(cls):
        import fastmlp.blas
        if cls.blas not in fastmlp.blas.available():
            return f"BLAS library {cls.blas!r} not installed"
        return None


class FastmlpScipyBlasPeer(_FastmlpOnBlas):
    name, label, blas = "fastmlp-scipy", "fastmlp on scipy's OpenBLAS", "scipy"


class FastmlpOpenblasPeer(_FastmlpOnBlas):
    name, label, blas = "fastmlp-openblas", "fastmlp on scipy-openblas32", "openblas"


class FastmlpMklPeer(_FastmlpOnBlas):
    name, label, blas = "fastmlp-mkl", "fastmlp on oneMKL", "mkl"


class NumpyPeer(Peer):
    """The step written by hand in numpy, as a careful user would: ``@`` for the products
    (fresh arrays), in-place ReLU, bias and update."""
    name, label = "numpy", "numpy by hand"

    def setup(self, layer_sizes, loss, dtype, X, Y, lr=LR, init=None):
        self.W, self.b = _copy_init(init, layer_sizes, dtype)
        self.loss, self.lr = loss, float(lr)
        self.X, self.Y = X, Y

    def step(self):
        return self._step(self.X, self.Y)

    def _step(self, X, Y):
        n, L = X.shape[0], len(self.W)
        acts = [X]
        for l in range(L):
            Z = acts[-1] @ self.W[l]
            Z += self.b[l]
            if l < L - 1:
                np.maximum(Z, 0, out=Z)
            acts.append(Z)
        out = acts.pop()
        if self.loss == "mse":
            D = out - Y
            loss = float(np.vdot(D, D)) / n
            D *= 2.0 / n
        else:
            rows = np.arange(n)
            out -= out.max(axis=1, keepdims=True)
            D = np.exp(out)
            s = D.sum(axis=1, keepdims=True)
            loss = float(np.mean(np.log(s[:, 0]) - out[rows, Y]))
            D /= s
            D[rows, Y] -= 1.0
            D *= 1.0 / n
        for l in range(L - 1, -1, -1):
            dW = acts[l].T @ D
            db = D.sum(axis=0)
            if l > 0:
                D = D @ self.W[l].T
                D *= acts[l] > 0
            self.W[l] -= self.lr * dW
            self.b[l] -= self.lr * db
        return loss

    def epoch(self, X, Y, batch_size, seed=0):
        return sum(self._step(X[i], Y[i]) * len(i) for i in _batches(len(X), batch_size, seed))

    def params(self):
        return [(W.copy(), b.copy()) for W, b in zip(self.W, self.b)]


class GemmsPeer(Peer):
    """Only the matrix products of a step, into preallocated arrays: the BLAS floor.

    Forward Z(l) = A(l-1)·W(l); backward dW(l) = A(l-1)ᵀ·Δ(l) and, for l > 1,
    Δ(l-1) = Δ(l)·W(l)ᵀ.  No bias, activation, loss or update.
    """
    name, label = "gemms", "GEMMs alone"

    def setup(self, layer_sizes, loss, dtype, X, Y, lr=LR, init=None):
        self.W, _ = _copy_init(init, layer_sizes, dtype)
        n = X.shape[0]
        self.acts = [X] + [np.zeros((n, d), dtype=dtype) for d in layer_sizes[1:-1]]
        self.Z = self.acts[1:] + [np.zeros((n, layer_sizes[-1]), dtype=dtype)]
        rng = np.random.default_rng(1)
        self.D = [(rng.standard_normal((n, d)) * 1e-3).astype(dtype) for d in layer_sizes[1:]]
        self.dW = [np.zeros_like(W) for W in self.W]

    def step(self):
        for A, W, Z in zip(self.acts, self.W, self.Z):
            np.matmul(A, W, out=Z)
        for l in range(len(self.W) - 1, -1, -1):
            np.matmul(self.acts[l].T, self.D[l], out=self.dW[l])
            if l > 0:
                np.matmul(self.D[l], self.W[l].T, out=self.D[l - 1])


class TorchPeer(Peer):
    """PyTorch eager: nn.Linear/ReLU, the loss, backward(), then p -= lr·p.grad by hand
    (on this machine a little faster than torch.optim.SGD for small nets)."""
    name, label = "torch", "PyTorch eager"

    @classmethod
    def available(cls):
        try:
            import torch  # noqa: F401
        except ImportError:
            return "torch is not installed"
        return None

    def setup(self, layer_sizes, loss, dtype, X, Y, lr=LR, init=None):
        import torch
        self.torch = torch
        self.tdtype = torch.float64 if np.dtype(dtype) == np.float64 else torch.float32
        Ws, bs = _copy_init(init, layer_sizes, dtype)
        layers = []
        for l, (W, b) in enumerate(zip(Ws, bs)):
            lin = torch.nn.Linear(W.shape[0], W.shape[1], dtype=self.tdtype)
            with torch.no_grad():
                lin.weight.copy_(torch.from_numpy(W.T.copy()))
                lin.bias.copy_(torch.from_numpy(b))
            layers.append(lin)
            if l < len(Ws) - 1:
                layers.append(torch.nn.ReLU())
        self.model = torch.nn.Sequential(*layers)
        self.params_list = list(self.model.parameters())
        self.lr = float(lr)
        self.mse = loss == "mse"
        self.X, self.Y = torch.from_numpy(X), torch.from_numpy(Y)

    def step(self):
        return self._step(self.X, self.Y)

    def _step(self, X, Y):
        F = self.torch.nn.functional
        out = self.model(X)
        if self.mse:
            loss = F.mse_loss(out, Y, reduction="sum") / X.shape[0]
        else:
            loss = F.cross_entropy(out, Y)
        for p in self.params_list:
            p.grad = None
        loss.backward()
        with self.torch.no_grad():
            for p in self.params_list:
                p.add_(p.grad, alpha=-self.lr)
        return loss.item()

    def epoch(self, X, Y, batch_size, seed=0):
        Xt, Yt = self.torch.from_numpy(X), self.torch.from_numpy(Y)
        total = 0.0
        for i in _batches(len(X), batch_size, seed):
            it = self.torch.from_numpy(i)
            total += self._step(Xt[it], Yt[it]) * len(i)
        return total

    def params(self):
        lins = [m for m in self.model if isinstance(m, self.torch.nn.Linear)]
        return [(m.weight.detach().numpy().T.copy(), m.bias.detach().numpy().copy())
                for m in lins]


class SklearnPeer(Peer):
    """scikit-learn MLPRegressor / MLPClassifier ``partial_fit`` on the whole batch: plain
    SGD (solver='sgd', momentum=0, alpha=0, constant learning rate)."""
    name, label = "sklearn", "scikit-learn partial_fit"

    @classmethod
    def available(cls):
        try:
            import sklearn  # noqa: F401
        except ImportError:
            return "scikit-learn is not installed"
        return None

    def setup(self, layer_sizes, loss, dtype, X, Y, lr=LR, init=None):
        from sklearn.neural_network import MLPClassifier, MLPRegressor
        kw = dict(hidden_layer_sizes=tuple(layer_sizes[1:-1]), activation="relu",
                  solver="sgd", alpha=0.0, momentum=0.0, nesterovs_momentum=False,
                  learning_rate="constant", learning_rate_init=lr, batch_size=X.shape[0],
                  shuffle=False, random_state=0)
        self.X = X
        if loss == "mse":
            self.est = MLPRegressor(**kw)
            self.Y = Y.ravel() if Y.shape[1] == 1 else Y
            self.est.partial_fit(self.X, self.Y)
        else:
            self.est = MLPClassifier(**kw)
            self.Y = Y
            self.est.partial_fit(self.X, self.Y, classes=np.arange(layer_sizes[-1]))
        # Same starting weights as the others; in place, since sklearn's optimizer holds
        # references to these very arrays.
        Ws, bs = _copy_init(init, layer_sizes, dtype)
        for W, b, W0, b0 in zip(Ws, bs, self.est.coefs_, self.est.intercepts_):
            W0[...] = W
            b0[...] = b

    def step(self):
        self.est.partial_fit(self.X, self.Y)


ALL = [FastmlpPeer, NumpyPeer, GemmsPeer, TorchPeer, SklearnPeer]
# Not in "all": chosen by name (--peers fastmlp,fastmlp-scipy,fastmlp-mkl) to compare BLAS.
BLAS_PEERS = [FastmlpScipyBlasPeer, FastmlpOpenblasPeer, FastmlpMklPeer]
BY_NAME = {p.name: p for p in ALL + BLAS_PEERS}
