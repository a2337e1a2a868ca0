"""The activations beyond seeds 001–003 (leaky ReLU, ELU, GELU, SiLU, softplus) and
per-layer activations, against independent oracles:

- their definitions written out in plain numpy/scipy (``DEFINITIONS``/``DERIVATIVES``
  below, from the formulas, in float64), and central finite differences of the loss;
- PyTorch's modules and autograd, where torch is installed (its definitions are the ones
  fastmlp follows);
- onnxruntime for the ONNX export.

Tolerances: float64 results agree with a float64 oracle to a few ulps of the values
involved (1e-12 relative, far above the ~1e-15 rounding of these short sums and libm
calls, far below any formula error); float32 kernels against the float64 oracle to
1e-5 relative (a few float32 ulps through libm and the products); finite differences to
1e-6 relative (step 1e-6: truncation ~1e-12, cancellation ~1e-10 of the loss).
"""
from __future__ import annotations

import pickle

import numpy as np
import pytest
from scipy.special import erfc, expit

import fastmlp
from fastmlp import MLP, kernels

NEW = ("leaky_relu", "elu", "gelu", "silu", "softplus")
ALL = ("relu", "tanh", "logistic", "identity") + NEW


def _sigmoid(z):
    return expit(z)


# g(z), transcribed from the definitions (PyTorch's: LeakyReLU slope 0.01, ELU α = 1,
# exact GELU, SiLU, softplus with β = 1), in float64.  Φ(z) is written ½·erfc(−z/√2),
# which keeps its digits where ½·(1 + erf(z/√2)) cancels (z ≪ 0).
DEFINITIONS = {
    "relu": lambda z: np.maximum(z, 0),
    "tanh": np.tanh,
    "logistic": _sigmoid,
    "identity": lambda z: z,
    "leaky_relu": lambda z: np.where(z > 0, z, 0.01 * z),
    "elu": lambda z: np.where(z > 0, z, np.expm1(np.minimum(z, 0))),
    "gelu": lambda z: z * 0.5 * erfc(-z / np.sqrt(2)),
    "silu": lambda z: z * _sigmoid(z),
    "softplus": lambda z: np.logaddexp(0, z),
}
# g'(z), likewise from the formulas (d/dz of the above).
DERIVATIVES = {
    "relu": lambda z: (z > 0).astype(float),
    "tanh": lambda z: 1 - np.tanh(z) ** 2,
    "logistic": lambda z: _sigmoid(z) * (1 - _sigmoid(z)),
    "identity": lambda z: np.ones_like(z),
    "leaky_relu": lambda z: np.where(z > 0, 1.0, 0.01),
    "elu": lambda z: np.where(z > 0, 1.0, np.exp(np.minimum(z, 0))),
    "gelu": lambda z: 0.5 * erfc(-z / np.sqrt(2)) + z * np.exp(-z * z / 2) / np.sqrt(2 * np.pi),
    "silu": lambda z: _sigmoid(z) * (1 + z * (1 - _sigmoid(z))),
    "softplus": _sigmoid,
}


def _Z(dtype, n=40, k=9, scale=4.0, seed=0):
    return (np.random.default_rng(seed).standard_normal((n, k)) * scale).astype(dtype)


def _rtol(dtype):
    return 1e-12 if dtype == np.float64 else 1e-5


# ------------------------------------------------------------------------- kernels

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind", NEW)
def test_forward_matches_definition(kind, dtype):
    Z = _Z(dtype)
    want = DEFINITIONS[kind](Z.astype(np.float64))
    got = kernels.activation_forward(kind, Z)
    assert got.dtype == dtype
    np.testing.assert_allclose(got, want, rtol=_rtol(dtype), atol=_rtol(dtype) * 1e-3)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind", NEW)
def test_backward_matches_derivative(kind, dtype):
    Z = _Z(dtype, seed=1)
    D = _Z(dtype, scale=1.0, seed=2)
    A = kernels.activation_forward(kind, Z)
    got = kernels.activation_backward(kind, A, D, Z=Z)
    want = D.astype(np.float64) * DERIVATIVES[kind](Z.astype(np.float64))
    np.testing.assert_allclose(got, want, rtol=_rtol(dtype) * 10, atol=_rtol(dtype) * 1e-2)


@pytest.mark.parametrize("kind", NEW)
def test_derivative_is_the_slope_of_the_kernel(kind):
    """Central differences of the compiled forward kernel itself, away from the kinks."""
    Z = _Z(np.float64, seed=3)
    Z = Z[np.abs(Z) > 1e-3].reshape(1, -1)
    h = 1e-6
    slope = (kernels.activation_forward(kind, Z + h) - kernels.activation_forward(kind, Z - h)) / (2 * h)
    A = kernels.activation_forward(kind, Z)
    got = kernels.activation_backward(kind, A, np.ones_like(Z), Z=Z)
    np.testing.assert_allclose(got, slope, rtol=1e-6, atol=1e-8)


def test_softplus_and_elu_do_not_overflow():
    Z = np.array([[-1e4, -800.0, -30.0, 0.0, 30.0, 800.0, 1e4]])
    A = kernels.activation_forward("softplus", Z)
    assert np.all(np.isfinite(A))
    np.testing.assert_allclose(A, np.logaddexp(0, Z), rtol=1e-15)
    D = kernels.activation_backward("softplus", A, np.ones_like(Z))
    np.testing.assert_allclose(D, _sigmoid(Z), rtol=1e-15)
    E = kernels.activation_forward("elu", Z)
    assert np.all(np.isfinite(E)) and E[0, 0] == -1.0


def test_exactly_gelu_and_silu_need_z():
    assert set(fastmlp._core.NEEDS_Z) == {"gelu", "silu"}


@pytest.mark.parametrize("kind", ["gelu", "silu"])
def test_derivatives_that_need_z_refuse_without_it(kind):
    Z = _Z(np.float64)
    A = kernels.activation_forward(kind, Z)
    with pytest.raises(ValueError, match="^Z:"):
        kernels.activation_backward(kind, A, np.ones_like(A))
    with pytest.raises(ValueError, match="^Z:"):
        kernels.backprop_delta(np.ones((40, 3)), np.ones((9, 3)), A, activation=kind)


@pytest.mark.parametrize("kind", ALL)
def test_backprop_delta_kernel_takes_any_activation(kind):
    rng = np.random.default_rng(4)
    Z, D_next, W = rng.standard_normal((6, 5)), rng.standard_normal((6, 3)), rng.standard_normal((5, 3))
    A = kernels.activation_forward(kind, Z)
    got = kernels.backprop_delta(D_next, W, A, activation=kind, Z=Z)
    want = (D_next @ W.T) * DERIVATIVES[kind](Z)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)


# ------------------------------------------------------------------------- the model

def _numpy_loss_and_grad(net, X, Y):
    """Forward and backward of seed 003's recursion with per-layer g, in numpy float64."""
    acts = list(net.activation) if not isinstance(net.activation, str) else \
        [net.activation] * (len(net.layer_sizes) - 2)
    A, cache = X, []
    for l, (W, b) in enumerate(zip(net.weights, net.biases)):
        Z = A @ W + b
        cache.append((A, Z))
        A = DEFINITIONS[acts[l]](Z) if l < len(acts) else Z
    loss = np.mean(np.sum((A - Y) ** 2, axis=1))
    D = 2 * (A - Y) / len(X)
    grads = []
    for l in range(len(net.weights) - 1, -1, -1):
        A_prev, Z = cache[l]
        grads.append((A_prev.T @ D, D.sum(axis=0)))
        if l > 0:
            D = (D @ net.weights[l].T) * DERIVATIVES[acts[l - 1]](cache[l - 1][1])
    return loss, grads[::-1]


MIXES = [("gelu",), ("silu", "elu"), ("leaky_relu", "softplus", "gelu"),
         ("tanh", "silu", "relu"), ("elu",), ("softplus", "logistic")]


@pytest.mark.parametrize("acts", MIXES, ids="-".join)
def test_loss_and_grad_per_layer_match_numpy(acts):
    rng = np.random.default_rng(5)
    sizes = [4] + [7] * len(acts) + [3]
    net = MLP(sizes, activation=list(acts), dtype=np.float64, seed=6)
    X, Y = rng.standard_normal((25, 4)) * 2, rng.standard_normal((25, 3))
    loss, grads = net.loss_and_grad(X, Y)
    want_loss, want = _numpy_loss_and_grad(net, X, Y)
    assert loss == pytest.approx(want_loss, rel=1e-13)
    for (gW, gb), (wW, wb) in zip(grads, want):
        np.testing.assert_allclose(gW, wW, rtol=1e-11, atol=1e-14)
        np.testing.assert_allclose(gb, wb, rtol=1e-11, atol=1e-14)


@pytest.mark.parametrize("kind", NEW)
def test_gradient_matches_finite_differences(kind):
    rng = np.random.default_rng(7)
    net = MLP([3, 6, 5, 2], activation=kind, loss="softmax_cross_entropy",
              dtype=np.float64, seed=8)
    X, y = rng.standard_normal((12, 3)) * 2, rng.integers(0, 2, 12)
    _, grads = net.loss_and_grad(X, y)
    flat = np.concatenate([np.concatenate([gW.ravel(), gb]) for gW, gb in grads])
    h = 1e-6
    for i in rng.choice(net.n_params, 25, replace=False):
        keep = net.params[i]
        net.params[i] = keep + h
        up = net.loss(X, y)
        net.params[i] = keep - h
        down = net.loss(X, y)
        net.params[i] = keep
        assert (up - down) / (2 * h) == pytest.approx(flat[i], rel=1e-6, abs=1e-9)


@pytest.mark.parametrize("acts", [("gelu", "silu"), ("elu", "leaky_relu"), ("softplus", "gelu")],
                         ids="-".join)
def test_fused_sgd_step_uses_the_kept_inputs(acts):
    """Plain SGD folds the update into the backward GEMM (and needs Z for GELU/SiLU):
    one step must equal params − lr·∇ from loss_and_grad, which takes the unfused path."""
    rng = np.random.default_rng(9)
    net = MLP([5, 8, 6, 2], activation=list(acts), dtype=np.float64, seed=10)
    X, Y = rng.standard_normal((16, 5)), rng.standard_normal((16, 2))
    _, grads = net.loss_and_grad(X, Y)
    want = net.params - 0.05 * np.concatenate([np.concatenate([gW.ravel(), gb]) for gW, gb in grads])
    net.train_step(X, Y, lr=0.05)
    np.testing.assert_allclose(net.params, want, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "adam"])
def test_fit_epoch_equals_train_steps(optimizer):
    """fit's compiled epoch loop and a Python loop of train_step agree bit for bit with
    per-layer activations that keep Z (the epoch reuses the same workspace)."""
    rng = np.random.default_rng(11)
    X, Y = rng.standard_normal((60, 4)), rng.standard_normal((60, 2))
    kw = dict(activation=["gelu", "silu", "elu"], dtype=np.float64, optimizer=optimizer, seed=12)
    a, b = MLP([4, 9, 7, 5, 2], **kw), MLP([4, 9, 7, 5, 2], **kw)
    a.fit(X, Y, epochs=2, batch_size=16, lr=0.01, shuffle=False)
    for _ in range(2):
        for s in range(0, 60, 16):
            b.train_step(X[s:s + 16], Y[s:s + 16], lr=0.01)
    assert np.array_equal(a.params, b.params)


def test_per_layer_activation_validation():
    with pytest.raises(ValueError, match=r"^activation: expected one name per hidden layer \(2\)"):
        MLP([3, 4, 4, 2], activation=["relu"])
    with pytest.raises(ValueError, match=r"^activation\[1\]:"):
        MLP([3, 4, 4, 2], activation=["relu", "swish"])
    with pytest.raises(ValueError, match="^activation:"):
        MLP([3, 4, 2], activation=3)
    net = MLP([3, 4, 4, 2], activation=("gelu", "relu"))
    assert net.activation == ("gelu", "relu")


@pytest.mark.parametrize("activation", ["gelu", ["silu", "leaky_relu"]])
def test_save_load_and_pickle_round_trip(tmp_path, activation):
    rng = np.random.default_rng(13)
    net = MLP([3, 5, 4, 2], activation=activation, dtype=np.float64, optimizer="adam", seed=14)
    X, Y = rng.standard_normal((20, 3)), rng.standard_normal((20, 2))
    net.fit(X, Y, epochs=2, batch_size=5, lr=1e-3)
    net.save(tmp_path / "m.npz")
    for other in (fastmlp.load(tmp_path / "m.npz"), pickle.loads(pickle.dumps(net))):
        assert other.activation == net.activation
        assert np.array_equal(other.params, net.params)
        assert np.array_equal(other.forward(X), net.forward(X))
        other.train_step(X, Y, lr=1e-3)
        net2 = pickle.loads(pickle.dumps(net))
        net2.train_step(X, Y, lr=1e-3)
        assert np.array_equal(other.params, net2.params)


def test_he_initialisation_for_relu_like_layers():
    """Each weight matrix is scaled by the activation that follows it."""
    sizes = [400, 300, 300, 200]
    net = MLP(sizes, activation=["tanh", "gelu"], dtype=np.float64, seed=15)
    stds = [W.std() for W in net.weights]
    assert stds[0] == pytest.approx(np.sqrt(2 / (400 + 300)), rel=0.02)    # Glorot (tanh)
    assert stds[1] == pytest.approx(np.sqrt(2 / 300), rel=0.02)            # He (gelu)
    assert stds[2] == pytest.approx(np.sqrt(2 / 300), rel=0.02)            # output: as gelu


# ------------------------------------------------------------------------- peers

@pytest.mark.parametrize("acts", MIXES, ids="-".join)
def test_matches_torch_autograd(acts):
    torch = pytest.importorskip("torch")
    from fastmlp.export import to_torch
    rng = np.random.default_rng(16)
    sizes = [4] + [6] * len(acts) + [3]
    net = MLP(sizes, activation=list(acts), loss="softmax_cross_entropy", dtype=np.float64, seed=17)
    X, y = rng.standard_normal((21, 4)) * 2, rng.integers(0, 3, 21)
    seq = to_torch(net)
    out = seq(torch.from_numpy(X))
    loss = torch.nn.functional.cross_entropy(out, torch.from_numpy(y))
    loss.backward()
    got_loss, grads = net.loss_and_grad(X, y)
    assert got_loss == pytest.approx(loss.item(), rel=1e-12)
    linears = [m for m in seq if isinstance(m, torch.nn.Linear)]
    for (gW, gb), lin in zip(grads, linears):
        np.testing.assert_allclose(gW, lin.weight.grad.numpy().T, rtol=1e-10, atol=1e-15)
        np.testing.assert_allclose(gb, lin.bias.grad.numpy(), rtol=1e-10, atol=1e-15)


def test_torch_round_trip_and_refused_settings():
    torch = pytest.importorskip("torch")
    from fastmlp.export import from_torch, to_torch
    net = MLP([3, 4, 4, 4, 4, 4, 2], activation=list(NEW), dtype=np.float32, seed=18)
    back = from_torch(to_torch(net))
    assert back.activation == tuple(NEW) and np.array_equal(back.params, net.params)
    nn = torch.nn
    for module in (nn.LeakyReLU(0.2), nn.ELU(alpha=2.0), nn.GELU(approximate="tanh"),
                   nn.Softplus(beta=2.0)):
        with pytest.raises(ValueError, match=r"^seq\[1\]"):
            from_torch(nn.Sequential(nn.Linear(3, 4), module, nn.Linear(4, 2)))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("opset", [17, 20])
def test_onnx_export_matches_forward(dtype, opset):
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from fastmlp.export import to_onnx
    # onnxruntime's CPU provider has no float64 Erf or Gelu kernel: float64 GELU models
    # export (valid ONNX) but cannot run there.
    acts = [a for a in NEW if not (dtype == np.float64 and a == "gelu")]
    net = MLP([5] + [6] * len(acts) + [2], activation=acts, dtype=dtype, seed=19)
    X = _Z(dtype, n=11, k=5, scale=3.0, seed=20)
    import tempfile, os
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "m.onnx")
        to_onnx(net, path, opset=opset)
        out = ort.InferenceSession(path).run(None, {"input": X})[0]
    tol = 1e-12 if dtype == np.float64 else 1e-5
    np.testing.assert_allclose(out, net.forward(X), rtol=tol, atol=tol)


def test_benchmark_compares_like_with_like():
    """fastmlp bench --kernels times each activation's forward+backward against a numpy
    version: both must compute the same Δ (float64; rounding only)."""
    from fastmlp.bench import kernels as bench_kernels
    cases = bench_kernels.cases(8, 5, 6, 3, np.dtype(np.float64))
    for kind in ("tanh",) + NEW:
        fast, slow = cases[f"{kind} forward+backward"]
        got = np.array(fast(), copy=True)
        slow()
        want = slow()[1]
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15, err_msg=kind)


@pytest.mark.parametrize("activation", ["gelu", "softplus", ["silu", "leaky_relu"], ["tanh", "elu"]])
@pytest.mark.parametrize("solver", ["adam", "lbfgs"])
def test_estimators_take_new_and_per_layer_activations(activation, solver):
    pytest.importorskip("sklearn")
    from fastmlp import MLPRegressor
    rng = np.random.default_rng(21)
    X = rng.standard_normal((80, 4))
    y = np.sin(X[:, 0]) + X[:, 1] * X[:, 2]
    est = MLPRegressor(hidden_layer_sizes=(8, 6), activation=activation, solver=solver,
                       max_iter=20, random_state=0, tol=0).fit(X, y)
    acts = [activation] * 2 if isinstance(activation, str) else activation
    A = X
    for l, (W, b) in enumerate(zip(est.coefs_, est.intercepts_)):
        A = A @ W + b
        if l < 2:
            A = DEFINITIONS[acts[l]](A)
    np.testing.assert_allclose(est.predict(X), A.ravel(), rtol=1e-12, atol=1e-12)
    assert est.loss_curve_[-1] < est.loss_curve_[0] if solver == "adam" else est.loss_ < 1.0


def test_estimator_refuses_activation_list_of_wrong_length():
    pytest.importorskip("sklearn")
    from fastmlp import MLPClassifier
    X, y = np.random.default_rng(22).standard_normal((30, 3)), np.arange(30) % 2
    with pytest.raises(ValueError, match="^activation: 1 names for 2 hidden layers"):
        MLPClassifier(hidden_layer_sizes=(4, 4), activation=["gelu"]).fit(X, y)
    with pytest.raises(ValueError, match="activation"):
        MLPClassifier(activation="swish").fit(X, y)


# ------------------------------------------------------------------------- dropout

def test_dropout_step_matches_numpy_with_the_same_masks():
    """One training step with dropout on two hidden layers equals the numpy transcription
    of inverted dropout's forward and backward, using the masks the documented counter
    gives (fastmlp.kernels.dropout_forward from MLP.dropout_state, layer by layer)."""
    rng = np.random.default_rng(23)
    X, Y = rng.standard_normal((30, 4)), rng.standard_normal((30, 2))
    net = MLP([4, 9, 7, 2], activation=["tanh", "gelu"], dropout=[0.3, 0.5],
              dtype=np.float64, seed=24)
    W = [w.copy() for w in net.weights]
    b = [x.copy() for x in net.biases]
    state, before = net.dropout_state, net.params.copy()
    net.train_step(X, Y, lr=0.1)
    Z1 = X @ W[0] + b[0]
    A1, m1, state = kernels.dropout_forward(DEFINITIONS["tanh"](Z1), 0.3, state)
    Z2 = A1 @ W[1] + b[1]
    A2, m2, state = kernels.dropout_forward(DEFINITIONS["gelu"](Z2), 0.5, state)
    D3 = 2 * (A2 @ W[2] + b[2] - Y) / len(X)
    D2 = (D3 @ W[2].T) * m2 * DERIVATIVES["gelu"](Z2)
    D1 = (D2 @ W[1].T) * m1 * DERIVATIVES["tanh"](Z1)
    grads = [(X.T @ D1, D1.sum(0)), (A1.T @ D2, D2.sum(0)), (A2.T @ D3, D3.sum(0))]
    want = before - 0.1 * np.concatenate([np.concatenate([gW.ravel(), gb]) for gW, gb in grads])
    np.testing.assert_allclose(net.params, want, rtol=1e-12, atol=1e-15)
    assert net.dropout_state == state
    assert set(np.unique(m1)) <= {0.0, 1 / 0.7} and set(np.unique(m2)) <= {0.0, 2.0}


def test_dropout_rate_and_what_never_drops():
    rng = np.random.default_rng(25)
    A = np.ones((400, 250))
    out, mask, _ = kernels.dropout_forward(A, 0.2, 12345)
    kept = np.mean(mask > 0)
    assert abs(kept - 0.8) < 4 * np.sqrt(0.8 * 0.2 / A.size)     # 4 standard errors
    assert out.mean() == pytest.approx(1.0, abs=0.01)
    net = MLP([3, 16, 2], dropout=0.5, dtype=np.float64, seed=26)
    X, Y = rng.standard_normal((20, 3)), rng.standard_normal((20, 2))
    state = net.dropout_state
    assert np.array_equal(net.forward(X), net.forward(X))
    assert net.loss(X, Y) == net.loss(X, Y)
    net.loss_and_grad(X, Y)
    assert net.dropout_state == state                 # only training steps draw masks
    net.fit(X, Y, epochs=2, batch_size=5)
    assert net.dropout_state != state


def test_dropout_same_seed_same_fit_and_resume(tmp_path):
    rng = np.random.default_rng(27)
    X, Y = rng.standard_normal((50, 3)), rng.standard_normal((50, 2))
    kw = dict(dropout=0.25, optimizer="adam", dtype=np.float64)
    a, b = MLP([3, 12, 2], seed=28, **kw), MLP([3, 12, 2], seed=28, **kw)
    a.fit(X, Y, epochs=3, batch_size=10, lr=1e-2)
    b.fit(X, Y, epochs=3, batch_size=10, lr=1e-2)
    assert np.array_equal(a.params, b.params)
    assert not np.array_equal(a.params, MLP([3, 12, 2], seed=29, **kw).params)
    a.save(tmp_path / "m.npz")
    c = fastmlp.load(tmp_path / "m.npz")
    assert c.dropout == 0.25
    a.fit(X, Y, epochs=1, batch_size=10, lr=1e-2)
    c.fit(X, Y, epochs=1, batch_size=10, lr=1e-2)
    assert np.array_equal(a.params, c.params)
    no = MLP([3, 12, 2], seed=28, **dict(kw, dropout=0.0))
    assert np.array_equal(no.params, MLP([3, 12, 2], seed=28, **kw).params)   # same start


def test_dropout_validation():
    with pytest.raises(ValueError, match="^dropout:"):
        MLP([3, 4, 2], dropout=1.0)
    with pytest.raises(ValueError, match=r"^dropout: expected one probability per hidden layer \(2\)"):
        MLP([3, 4, 4, 2], dropout=[0.1])
    with pytest.raises(ValueError, match=r"^dropout\[1\]:"):
        MLP([3, 4, 4, 2], dropout=[0.1, -0.5])


def test_estimators_dropout():
    pytest.importorskip("sklearn")
    from fastmlp import MLPClassifier, MLPRegressor
    rng = np.random.default_rng(30)
    X = rng.standard_normal((120, 5))
    y = (X[:, 0] + X[:, 1] > 0).astype(int)
    kw = dict(hidden_layer_sizes=(16, 8), max_iter=15, random_state=0)
    a = MLPClassifier(dropout=0.3, **kw).fit(X, y)
    b = MLPClassifier(dropout=0.3, **kw).fit(X, y)
    c = MLPClassifier(dropout=0.0, **kw).fit(X, y)
    assert all(np.array_equal(p, q) for p, q in zip(a.coefs_, b.coefs_))
    assert not np.array_equal(a.coefs_[0], c.coefs_[0])
    assert np.array_equal(a.predict_proba(X), a.predict_proba(X))     # never drops
    with pytest.raises(ValueError, match="^dropout: L-BFGS"):
        MLPRegressor(solver="lbfgs", dropout=0.1).fit(X, y.astype(float))
    with pytest.raises(ValueError, match="dropout"):
        MLPRegressor(dropout=1.5).fit(X, y.astype(float))
    # a list: one rate per hidden layer, by MLP's rule and message; nothing is fitted
    est = MLPRegressor(dropout=[0.1], **kw)
    with pytest.raises(ValueError, match=r"^dropout: expected one probability per hidden layer \(2\)"):
        est.fit(X, y.astype(float))
    assert not hasattr(est, "coefs_")
    d = MLPClassifier(dropout=[0.3, 0.3], **kw).fit(X, y)
    assert all(np.array_equal(p, q) for p, q in zip(a.coefs_, d.coefs_))


def test_torch_export_carries_dropout():
    torch = pytest.importorskip("torch")
    from fastmlp.export import from_torch, to_torch
    net = MLP([3, 5, 4, 2], activation=["gelu", "relu"], dropout=[0.1, 0.0], seed=31)
    seq = to_torch(net)
    assert [type(m).__name__ for m in seq] == ["Linear", "GELU", "Dropout", "Linear", "ReLU", "Linear"]
    back = from_torch(seq)
    assert back.dropout == (0.1, 0.0) and np.array_equal(back.params, net.params)
