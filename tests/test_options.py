"""Activations, output activations, L2 and optimizers of MLP, against independent oracles.

Gradients: central finite differences in float64 for every combination (seed 002 gives the
output delta g'(a) ⊙ ∇ŷ for any element-wise g).  Optimizers: their update rules written
plainly in numpy, applied to the gradients fastmlp reports.
"""
import itertools

import numpy as np
import pytest

import fastmlp
from test_gradients import fd_gradient

ACTS = ["relu", "tanh", "logistic", "identity"]
OUT_ACTS = ["identity", "logistic", "tanh", "relu"]


def flat(grads):
    return np.concatenate([np.concatenate([dW.ravel(), db]) for dW, db in grads])


def setup(act, out_act="identity", loss="mse", l2=0.0, seed=0, sizes=(4, 6, 5, 3)):
    net = fastmlp.MLP(list(sizes), activation=act, output_activation=out_act, loss=loss,
                      l2=l2, dtype=np.float64, seed=seed)
    rng = np.random.default_rng(seed + 1)
    net.params[...] = rng.normal(scale=0.5, size=net.params.shape)
    X = rng.normal(size=(7, sizes[0]))
    if loss == "mse":
        Y = rng.uniform(0.1, 0.9, size=(7, sizes[-1]))
    else:
        Y = rng.integers(0, sizes[-1], size=7)
    return net, X, Y


def relu_kinks_far(net, X, eps):
    """Every pre-activation of a ReLU is farther than 10·eps from its kink."""
    A = X
    for i, (W, b) in enumerate(zip(net.weights, net.biases)):
        Z = A @ W + b
        last = i == len(net.weights) - 1
        act = net.output_activation if last else net.activation
        if act == "relu" and np.min(np.abs(Z)) < 10 * eps:
            return False
        A = {"relu": np.maximum(Z, 0), "tanh": np.tanh(Z), "identity": Z,
             "logistic": 1 / (1 + np.exp(-Z))}[act]
    return True


@pytest.mark.parametrize("act,out_act", list(itertools.product(ACTS, OUT_ACTS)))
@pytest.mark.parametrize("l2", [0.0, 0.3])
def test_mse_gradients_for_every_activation_pair(act, out_act, l2):
    net, X, Y = setup(act, out_act, l2=l2, seed=3)
    assert relu_kinks_far(net, X, 1e-6)
    _, grads = net.loss_and_grad(X, Y)
    # float64 central differences: see test_gradients.py for the error budget.
    np.testing.assert_allclose(flat(grads), fd_gradient(net, X, Y, 1e-6), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("l2", [0.0, 0.3])
def test_cross_entropy_gradients_for_every_activation(act, l2):
    net, X, Y = setup(act, loss="softmax_cross_entropy", l2=l2, seed=5)
    assert relu_kinks_far(net, X, 1e-6)
    _, grads = net.loss_and_grad(X, Y)
    np.testing.assert_allclose(flat(grads), fd_gradient(net, X, Y, 1e-6), rtol=1e-6, atol=1e-7)


def test_forward_applies_the_output_activation():
    net, X, _ = setup("tanh", "logistic", seed=2)
    A = X
    for i, (W, b) in enumerate(zip(net.weights, net.biases)):
        Z = A @ W + b
        A = np.tanh(Z) if i < 2 else 1 / (1 + np.exp(-Z))
    np.testing.assert_allclose(net.forward(X), A, rtol=1e-13, atol=1e-15)


def test_l2_adds_scikit_learn_penalty_to_the_loss():
    net, X, Y = setup("relu", l2=0.0, seed=4)
    reg = fastmlp.MLP([4, 6, 5, 3], l2=0.7, dtype=np.float64, seed=4)
    reg.params[...] = net.params
    penalty = 0.7 / (2 * len(X)) * sum(np.sum(W ** 2) for W in net.weights)
    assert reg.loss(X, Y) == pytest.approx(net.loss(X, Y) + penalty, rel=1e-13)


def numpy_optimizer(kind, hyper):
    """One optimizer's update rule, plainly: returns step(theta, g, lr) mutating state."""
    state = {"v": None, "m": None, "s": None, "t": 0}

    def step(theta, g, lr):
        if kind == "sgd":
            return theta - lr * g
        if kind in ("momentum", "nesterov"):
            v = state["v"] if state["v"] is not None else np.zeros_like(theta)
            v = hyper["momentum"] * v - lr * g
            state["v"] = v
            if kind == "nesterov":
                return theta + hyper["momentum"] * v - lr * g
            return theta + v
        m = state["m"] if state["m"] is not None else np.zeros_like(theta)
        s = state["s"] if state["s"] is not None else np.zeros_like(theta)
        state["t"] += 1
        t = state["t"]
        m = hyper["beta_1"] * m + (1 - hyper["beta_1"]) * g
        s = hyper["beta_2"] * s + (1 - hyper["beta_2"]) * g ** 2
        state["m"], state["s"] = m, s
        # Kingma & Ba §2, the "more efficient" ordering with ε applied to √v
        # (scikit-learn's definition): α_t = α·√(1 − β2ᵗ)/(1 − β1ᵗ).
        alpha_t = lr * np.sqrt(1 - hyper["beta_2"] ** t) / (1 - hyper["beta_1"] ** t)
        return theta - alpha_t * m / (np.sqrt(s) + hyper["epsilon"])

    return step


@pytest.mark.parametrize("kind", ["sgd", "momentum", "nesterov", "adam"])
def test_optimizers_follow_their_update_rules(kind):
    hyper = {"momentum": 0.8, "beta_1": 0.85, "beta_2": 0.99, "epsilon": 1e-7}
    net = fastmlp.MLP([5, 8, 2], optimizer=kind, dtype=np.float64, seed=1, **hyper)
    rng = np.random.default_rng(2)
    theta = net.params.copy()
    step = numpy_optimizer(kind, hyper)
    for i in range(5):
        X = rng.normal(size=(6, 5))
        Y = rng.normal(size=(6, 2))
        probe = fastmlp.MLP([5, 8, 2], dtype=np.float64)
        probe.params[...] = theta
        _, g = probe.loss_and_grad(X, Y)
        theta = step(theta, flat(g), 0.05)
        net.train_step(X, Y, lr=0.05)
        # same float64 arithmetic up to the order of a few operations per element
        np.testing.assert_allclose(net.params, theta, rtol=1e-12, atol=1e-14)
    assert net.adam_steps == (5 if kind == "adam" else 0)


@pytest.mark.parametrize("kind", ["momentum", "adam"])
def test_save_load_resumes_training_exactly(kind, tmp_path):
    rng = np.random.default_rng(0)
    X, Y = rng.normal(size=(40, 3)), rng.normal(size=(40, 1))
    a = fastmlp.MLP([3, 6, 1], optimizer=kind, activation="tanh", l2=0.01, seed=0)
    a.fit(X, Y, epochs=2, batch_size=8, lr=0.01)
    a.save(tmp_path / "m.npz")
    b = fastmlp.load(tmp_path / "m.npz")
    assert b.config() == a.config()
    np.testing.assert_array_equal(b.optimizer_state, a.optimizer_state)
    la = a.fit(X, Y, epochs=2, batch_size=8, lr=0.01, seed=3)
    lb = b.fit(X, Y, epochs=2, batch_size=8, lr=0.01, seed=3)
    assert la == lb
    np.testing.assert_array_equal(a.params, b.params)


def test_invalid_options_are_rejected():
    with pytest.raises(ValueError, match="^output_activation"):
        fastmlp.MLP([2, 3], loss="softmax_cross_entropy", output_activation="logistic")
    with pytest.raises(ValueError, match="^optimizer"):
        fastmlp.MLP([2, 3], optimizer="rmsprop")
    with pytest.raises(ValueError, match="^l2"):
        fastmlp.MLP([2, 3], l2=-1)
    with pytest.raises(ValueError, match="^beta_2"):
        fastmlp.MLP([2, 3], optimizer="adam", beta_2=1.0)
    with pytest.raises(TypeError, match="^momentum"):
        fastmlp.MLP([2, 3], momentum="0.9")
    # ε is used in the model dtype: one that rounds to 0 there would make 0/0 of a
    # parameter whose gradient is 0 (and a DivergenceError blaming the learning rate).
    with pytest.raises(ValueError, match="^epsilon: 1e-50 rounds to 0 in float32"):
        fastmlp.MLP([2, 3], optimizer="adam", dtype=np.float32, epsilon=1e-50)
    fastmlp.MLP([2, 3], optimizer="adam", dtype=np.float64, epsilon=1e-50)   # fine there


@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("l2", [0.0, 0.3])
@pytest.mark.parametrize("n", [1, 7])
def test_sgd_step_equals_gradient_update_for_every_activation(act, l2, n):
    """train_step's fused path (weights updated inside the GEMM) against θ − lr·∇L(θ)
    from loss_and_grad, which takes the unfused path."""
    net, X, Y = setup(act, l2=l2, seed=8)
    X, Y = X[:n], Y[:n]
    before = net.params.copy()
    loss, grads = net.loss_and_grad(X, Y)
    assert net.train_step(X, Y, lr=0.1) == loss
    # float64; the fused GEMM may round α·AᵀΔ + β·W once where the unfused path rounds
    # twice: a few ulps of the parameters.
    np.testing.assert_allclose(net.params, before - 0.1 * flat(grads), rtol=1e-13, atol=1e-15)
