"""Whole-network gradients against independent oracles.

Oracles: central finite differences (float64), seed 001's vectorised two-layer formulas in
its own column-major layout, and PyTorch autograd when torch is installed.
"""
import numpy as np
import pytest

import fastmlp

LOSSES = ["mse", "softmax_cross_entropy"]


def make_net(sizes, loss, seed=0, dtype=np.float64, dead_units=True):
    net = fastmlp.MLP(sizes, loss=loss, dtype=dtype, seed=seed)
    rng = np.random.default_rng(seed + 100)
    for b in net.biases:
        b[...] = rng.normal(scale=0.3, size=b.shape)
    if dead_units:
        # Push the first unit of every hidden layer far below zero for every input, so
        # some ReLUs are dead and their gradients must be exactly zero.
        for b in net.biases[:-1]:
            b[0] = -50.0
    return net


def make_data(net, n, seed=1):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, net.layer_sizes[0]))
    k = net.layer_sizes[-1]
    if net.loss_name == "mse":
        Y = rng.normal(size=(n, k))
    else:
        Y = rng.integers(0, k, size=n)
    return X, Y


def hidden_preactivations(net, X):
    Zs, A = [], X
    for W, b in zip(net.weights[:-1], net.biases[:-1]):
        Z = A @ W + b
        Zs.append(Z)
        A = np.maximum(Z, 0)
    return Zs


def fd_gradient(net, X, Y, eps):
    """Central differences over the flat parameter vector: (L(θ+ε) − L(θ−ε)) / 2ε."""
    theta = net.params
    g = np.empty_like(theta)
    for i in range(theta.size):
        old = theta[i]
        theta[i] = old + eps
        lp = net.loss(X, Y)
        theta[i] = old - eps
        lm = net.loss(X, Y)
        theta[i] = old
        g[i] = (lp - lm) / (2 * eps)
    return g


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("depth", [1, 2, 3, 5])
def test_gradient_matches_finite_differences(depth, loss):
    widths = [5, 7, 6, 4, 5, 3]
    sizes = widths[:depth] + [3]
    net = make_net(sizes, loss, seed=depth)
    X, Y = make_data(net, n=9, seed=depth)
    eps = 1e-6
    # A kink of a ReLU within ±eps of a pre-activation would make the difference quotient
    # meaningless; the data are drawn so that does not happen (checked, not assumed).
    for Z in hidden_preactivations(net, X):
        assert np.min(np.abs(Z)) > 10 * eps
    if depth > 1:
        assert np.all(hidden_preactivations(net, X)[0][:, 0] < 0)  # dead units exist
    loss_value, grads = net.loss_and_grad(X, Y)
    flat = np.concatenate([np.concatenate([dW.ravel(), db]) for dW, db in grads])
    fd = fd_gradient(net, X, Y, eps)
    # Central differences in float64: truncation O(eps²·L''') ≈ 1e-12, rounding
    # O(eps_mach·|L|/eps) ≈ 1e-10, so 1e-7 absolute + 1e-6 relative is a safe bound that
    # still catches any wrong factor, sign or transposition.
    np.testing.assert_allclose(flat, fd, rtol=1e-6, atol=1e-7)
    assert loss_value == pytest.approx(net.loss(X, Y), rel=0, abs=0)
    if depth > 1:
        # dead unit: its incoming weights and bias get exactly zero gradient
        dW1, db1 = grads[0]
        assert np.all(dW1[:, 0] == 0) and db1[0] == 0


def test_gradient_with_probability_targets_matches_finite_differences():
    net = make_net([4, 6, 3], "softmax_cross_entropy", seed=3)
    rng = np.random.default_rng(5)
    X = rng.normal(size=(7, 4))
    Y = rng.dirichlet(np.ones(3), size=7)
    _, grads = net.loss_and_grad(X, Y)
    flat = np.concatenate([np.concatenate([dW.ravel(), db]) for dW, db in grads])
    np.testing.assert_allclose(flat, fd_gradient(net, X, Y, 1e-6), rtol=1e-6, atol=1e-7)


def test_two_layer_mse_matches_seed_001_vectorised_formulas():
    """Seed 001 §3 in its own column-major layout: X is (m0, n), W1 is (m1, m0).

    dW2 = (2/n)·R·Sᵀ, db2 = (2/n)·rowsum(R), dW1 = (2/n)·(V⊙D)·Xᵀ, db1 = (2/n)·rowsum(V⊙D),
    with R = f(X) − Y, S = σ(W1·X + b1·1ᵀ), D = σ'(·), V = W2ᵀ·R.  fastmlp's W(l) is the
    transpose of the seed's W, and its loss must be the seed's (1/n)·Σᵢ‖f(xᵢ) − yᵢ‖².
    """
    m0, m1, m2, n = 6, 9, 4, 11
    net = make_net([m0, m1, m2], "mse", seed=7)
    rng = np.random.default_rng(8)
    Xr = rng.normal(size=(n, m0))
    Yr = rng.normal(size=(n, m2))

    X, Y = Xr.T, Yr.T
    W1, W2 = net.weights[0].T, net.weights[1].T
    b1, b2 = net.biases[0][:, None], net.biases[1][:, None]
    pre = W1 @ X + b1 @ np.ones((1, n))
    S = np.maximum(pre, 0)
    D = (pre > 0).astype(float)
    F = W2 @ S + b2 @ np.ones((1, n))
    R = F - Y
    V = W2.T @ R
    seed_loss = np.mean(np.sum((F - Y) ** 2, axis=0))
    dW2 = 2 / n * R @ S.T
    db2 = 2 / n * R.sum(axis=1)
    dW1 = 2 / n * (V * D) @ X.T
    db1 = 2 / n * (V * D).sum(axis=1)

    loss, ((gW1, gb1), (gW2, gb2)) = net.loss_and_grad(Xr, Yr)
    # Both sides are float64 evaluations of the same sums in different orders (BLAS vs
    # numpy); 1e-12 relative with an absolute floor at the scale of the entries.
    tol = dict(rtol=1e-12, atol=1e-13)
    assert loss == pytest.approx(seed_loss, rel=1e-12)
    np.testing.assert_allclose(gW2, dW2.T, **tol)
    np.testing.assert_allclose(gb2, db2, **tol)
    np.testing.assert_allclose(gW1, dW1.T, **tol)
    np.testing.assert_allclose(gb1, db1, **tol)
    np.testing.assert_allclose(net.forward(Xr), F.T, **tol)


def test_float32_gradients_agree_with_float64():
    net64 = make_net([10, 16, 8, 4], "softmax_cross_entropy", seed=2, dead_units=False)
    net32 = fastmlp.MLP([10, 16, 8, 4], loss="softmax_cross_entropy", dtype=np.float32)
    net32.params[...] = net64.params
    net64.params[...] = net32.params  # both hold exactly the float32-representable values
    rng = np.random.default_rng(4)
    X = rng.normal(size=(32, 10)).astype(np.float32)
    y = rng.integers(0, 4, size=32)
    l64, g64 = net64.loss_and_grad(X, y)
    l32, g32 = net32.loss_and_grad(X, y)
    # float32 carries ~6e-8 relative error per operation; sums of ≤ 32 terms over 3 layers
    # stay well inside 1e-4 relative with an absolute floor of 1e-5 for near-zero entries.
    assert l32 == pytest.approx(l64, rel=1e-5)
    for (a, b), (c, d) in zip(g32, g64):
        assert a.dtype == np.float32
        np.testing.assert_allclose(a, c, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(b, d, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("loss", LOSSES)
def test_gradient_matches_torch_autograd(loss):
    torch = pytest.importorskip("torch")
    net = make_net([6, 8, 7, 3], loss, seed=11)
    X, Y = make_data(net, n=10, seed=12)
    Xt = torch.tensor(X)
    params = [(torch.tensor(W.copy(), requires_grad=True),
               torch.tensor(b.copy(), requires_grad=True))
              for W, b in zip(net.weights, net.biases)]
    A = Xt
    for i, (W, b) in enumerate(params):
        A = A @ W + b
        if i < len(params) - 1:
            A = torch.relu(A)
    if loss == "mse":
        L = ((A - torch.tensor(Y)) ** 2).sum(dim=1).mean()
    else:
        L = torch.nn.functional.cross_entropy(A, torch.tensor(Y))
    L.backward()
    value, grads = net.loss_and_grad(X, Y)
    assert value == pytest.approx(L.item(), rel=1e-12)
    for (gW, gb), (W, b) in zip(grads, params):
        np.testing.assert_allclose(gW, W.grad.numpy(), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(gb, b.grad.numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_cross_entropy_is_stable_for_huge_logits(dtype):
    net = fastmlp.MLP([2, 3], loss="softmax_cross_entropy", dtype=dtype, seed=0)
    net.weights[0][...] = [[1e4, -1e4, 0.0], [0.0, 0.0, 1e4]]
    X = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    y = np.array([1, 2, 0])
    loss, grads = net.loss_and_grad(X, y)
    assert np.isfinite(loss)
    # logits rows: [1e4, -1e4, 0] with label 1 → 2e4; [0, 0, 1e4] label 2 → ~0;
    # [-1e4, 1e4, 0] label 0 → 2e4.  Mean 4e4/3.
    assert loss == pytest.approx(4e4 / 3, rel=1e-6)
    for dW, db in grads:
        assert np.all(np.isfinite(dW)) and np.all(np.isfinite(db))
