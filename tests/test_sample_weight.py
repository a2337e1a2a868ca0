"""Sample weights in fastmlp's own losses (``MLP.fit/train_step/loss_and_grad``) and one
row of weights a model in ``MLPStack`` (bagging in one call).

Convention: row i's term of its batch's mean is multiplied by wᵢ, L = (1/n)·Σ wᵢ·ℓᵢ.
Oracles: the seed equations in float64 numpy (``reference.py``, weights multiplying the
rows of the loss and its delta), central finite differences of the weighted loss, the
smaller data set that zero weights leave, PyTorch autograd where installed; a stacked
model against its own weighted fit is exact (bit for bit: the same step on the same
rows and weights).

Tolerances: float64 against the numpy transcription 1e-12 relative (a few dozen roundings
of order-1 values); float32 1e-4 relative, 1e-5 absolute (float32's 6e-8 unit roundoff
through the same ops, and a float64 oracle); finite differences 1e-6 (h = 1e-6, error
O(h²) plus roundoff/h ≈ 1e-10 on the loss).
"""
import numpy as np
import pytest
import reference as ref
import scipy.sparse as sp

import fastmlp
from fastmlp import MLP, MLPStack

LOSSES = ["mse", "softmax_cross_entropy"]


def _data(n, d, k, loss, dtype=np.float64, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d)).astype(dtype)
    Y = (rng.standard_normal((n, k)).astype(dtype) if loss == "mse"
         else rng.integers(0, k, n))
    return X, Y, rng.poisson(1.0, n).astype(dtype) + rng.random(n).astype(dtype)


def _net(loss, dtype=np.float64, seed=3, **kw):
    return MLP([5, 9, 6, 3], loss=loss, dtype=dtype, seed=seed, **kw)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("targets", ["mse", "labels", "probabilities"])
def test_weighted_loss_and_gradients_are_the_seed_equations_weighted(targets, dtype):
    loss = "mse" if targets == "mse" else "softmax_cross_entropy"
    X, Y, w = _data(40, 5, 3, loss, dtype)
    if targets == "probabilities":
        P = np.random.default_rng(1).random((40, 3))
        Y = (P / P.sum(axis=1, keepdims=True)).astype(dtype)
    net = _net(loss, dtype)
    value, grads = net.loss_and_grad(X, Y, sample_weight=w)
    want, want_grads = ref.loss_and_grad(net.weights, net.biases, X, Y, loss, w)
    tol = dict(rtol=1e-12, atol=1e-14) if dtype == np.float64 else dict(rtol=1e-4, atol=1e-5)
    assert value == pytest.approx(want, rel=tol["rtol"])
    for (gW, gb), (rW, rb) in zip(grads, want_grads):
        np.testing.assert_allclose(gW, rW, **tol)
        np.testing.assert_allclose(gb, rb, **tol)
    # The weights matter: the unweighted gradient is another one.
    assert not np.allclose(net.loss_and_grad(X, Y)[1][0][0], grads[0][0], rtol=1e-3)


@pytest.mark.parametrize("loss", LOSSES)
def test_weighted_gradient_is_the_finite_difference_of_the_weighted_loss(loss):
    X, Y, w = _data(25, 5, 3, loss)
    net = _net(loss, activation="tanh", l2=0.1)
    _, grads = net.loss_and_grad(X, Y, sample_weight=w)
    flat = np.concatenate([np.concatenate([gW.ravel(), gb]) for gW, gb in grads])
    fd = np.empty_like(flat)
    h = 1e-6
    for i in range(flat.size):
        keep = net.params[i]
        net.params[i] = keep + h
        up = net.loss(X, Y, sample_weight=w)
        net.params[i] = keep - h
        down = net.loss(X, Y, sample_weight=w)
        net.params[i] = keep
        fd[i] = (up - down) / (2 * h)
    np.testing.assert_allclose(flat, fd, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("sparse", [False, True])
def test_weights_of_one_change_no_bit_of_a_fit(sparse, loss, optimizer):
    X, Y, _ = _data(60, 5, 3, loss)
    if sparse:
        X[np.abs(X) < 0.7] = 0
        X = sp.csr_matrix(X)
    plain, weighted = _net(loss, optimizer=optimizer), _net(loss, optimizer=optimizer)
    plain.fit(X, Y, epochs=3, batch_size=8, lr=0.05, seed=2)
    weighted.fit(X, Y, epochs=3, batch_size=8, lr=0.05, seed=2, sample_weight=np.ones(60))
    assert np.array_equal(plain.params, weighted.params)
    assert np.array_equal(plain.optimizer_state, weighted.optimizer_state)


@pytest.mark.parametrize("loss", LOSSES)
def test_zero_weights_leave_the_smaller_data_set(loss):
    # Full-batch SGD, rows in order, no L2: the weighted gradient (1/n)·Σ over the kept
    # rows is the kept rows' mean gradient times n_kept/n, so it is the fit of the kept
    # rows alone at that lower learning rate.
    X, Y, _ = _data(48, 5, 3, loss)
    w = (np.arange(48) % 3 != 0).astype(np.float64)
    kept = w == 1
    weighted, alone = _net(loss), _net(loss)
    weighted.fit(X, Y, epochs=4, batch_size=48, lr=0.1, shuffle=False, sample_weight=w)
    alone.fit(X[kept], Y[kept], epochs=4, batch_size=48, lr=0.1 * kept.sum() / 48,
              shuffle=False)
    np.testing.assert_allclose(weighted.params, alone.params, rtol=1e-12, atol=1e-14)


def test_a_batch_of_zero_weight_steps_on_the_penalty_alone():
    X, Y, _ = _data(4, 5, 3, "mse")
    net = _net("mse", l2=0.5)
    before = [W.copy() for W in net.weights]
    biases = [b.copy() for b in net.biases]
    loss = net.train_step(X, Y, lr=0.1, sample_weight=np.zeros(4))
    # L = ½·α·Σ‖W‖²/n, its gradient α·W/n on the weights, none on the biases.
    assert loss == pytest.approx(0.25 * sum((W * W).sum() for W in before) / 4, rel=1e-12)
    for W, W0, b, b0 in zip(net.weights, before, net.biases, biases):
        np.testing.assert_allclose(W, W0 * (1 - 0.1 * 0.5 / 4), rtol=1e-14)
        assert np.array_equal(b, b0)


@pytest.mark.parametrize("loss", LOSSES)
def test_weighted_gradients_match_torch_autograd(loss):
    torch = pytest.importorskip("torch")
    X, Y, w = _data(20, 5, 3, loss)
    net = _net(loss)
    params = [(torch.tensor(W.copy(), requires_grad=True),
               torch.tensor(b.copy(), requires_grad=True))
              for W, b in zip(net.weights, net.biases)]
    A = torch.tensor(X)
    for i, (W, b) in enumerate(params):
        A = A @ W + b
        if i < len(params) - 1:
            A = torch.relu(A)
    if loss == "mse":
        rows = ((A - torch.tensor(Y)) ** 2).sum(dim=1)
    else:
        rows = torch.nn.functional.cross_entropy(A, torch.tensor(Y), reduction="none")
    (rows * torch.tensor(w)).mean().backward()
    _, grads = net.loss_and_grad(X, Y, sample_weight=w)
    for (gW, gb), (W, b) in zip(grads, params):
        np.testing.assert_allclose(gW, W.grad.numpy(), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(gb, b.grad.numpy(), rtol=1e-10, atol=1e-12)


def _stack_models(loss, dtype, count=6):
    # Widths, depths, optimizers, L2 and dropout differ from model to model.
    opts = ("sgd", "momentum", "nesterov", "adam")
    return [MLP([5, 4 + 3 * i] + ([4] if i % 3 == 1 else []) + [3], loss=loss, dtype=dtype,
                seed=20 + i, optimizer=opts[i % 4], l2=0.05 * (i % 2),
                dropout=0.2 if i == 3 else 0.0) for i in range(count)]


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("batch_size", [1, 7])
@pytest.mark.parametrize("shuffle", [True, False])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("loss", LOSSES)
def test_each_stacked_model_fits_its_own_row_of_weights(loss, dtype, shuffle, batch_size,
                                                        threads, monkeypatch):
    import fastmlp._workers as workers
    monkeypatch.setattr(workers, "GROUP_FLOPS", 1.0)   # groups even for this little work
    X, Y, _ = _data(30, 5, 3, loss, dtype)
    K = 6
    W = np.random.default_rng(5).poisson(1.0, (K, 30)).astype(dtype)   # zeros included
    stacked, alone = _stack_models(loss, dtype), _stack_models(loss, dtype)
    lr = 0.05 if batch_size > 1 else 0.002     # online momentum steps diverge at 0.01
    before = fastmlp.get_num_threads()
    fastmlp.set_num_threads(threads)
    try:
        stack = MLPStack(stacked)
        assert len(stack._plan(30, batch_size, 2, single=False)) == threads
        losses = stack.fit(X, Y, epochs=2, batch_size=batch_size, lr=lr, seed=8,
                           shuffle=shuffle, sample_weight=W)
    finally:
        fastmlp.set_num_threads(before)
    for k, (m, own) in enumerate(zip(stacked, alone)):
        own_losses = own.fit(X, Y, epochs=2, batch_size=batch_size, lr=lr, seed=8,
                             shuffle=shuffle, sample_weight=W[k])
        assert np.array_equal(m.params, own.params), k
        assert np.array_equal(m.optimizer_state, own.optimizer_state), k
        np.testing.assert_array_equal(losses[k], own_losses)


@pytest.mark.parametrize("shuffle", [True, False])
def test_sparse_stacks_and_shared_weights_fit_as_their_own(shuffle):
    X, Y, w = _data(40, 5, 3, "softmax_cross_entropy")
    X[np.abs(X) < 0.8] = 0
    Xs = sp.csr_matrix(X)
    W = np.random.default_rng(6).poisson(1.0, (4, 40)).astype(np.float64)
    for weights, row in ((W, lambda k: W[k]), (w, lambda k: w)):
        stacked = _stack_models("softmax_cross_entropy", np.float64, 4)
        alone = _stack_models("softmax_cross_entropy", np.float64, 4)
        MLPStack(stacked).fit(Xs, Y, epochs=2, batch_size=6, lr=0.05, seed=1,
                              shuffle=shuffle, sample_weight=weights)
        for k, (m, own) in enumerate(zip(stacked, alone)):
            own.fit(Xs, Y, epochs=2, batch_size=6, lr=0.05, seed=1, shuffle=shuffle,
                    sample_weight=row(k))
            assert np.array_equal(m.params, own.params), k


def test_stacked_train_step_takes_each_models_weights():
    X, Y, _ = _data(9, 5, 3, "mse")
    W = np.random.default_rng(7).random((3, 9))
    stacked, alone = _stack_models("mse", np.float64, 3), _stack_models("mse", np.float64, 3)
    losses = MLPStack(stacked).train_step(X, Y, lr=0.03, sample_weight=W)
    for k, (m, own) in enumerate(zip(stacked, alone)):
        # The stack reports Σ loss·rows / rows: one rounding from the model's own loss.
        assert losses[k] == pytest.approx(own.train_step(X, Y, lr=0.03, sample_weight=W[k]),
                                          rel=1e-15)
        assert np.array_equal(m.params, own.params)


@pytest.mark.parametrize("bad, error, text", [
    (np.ones(7), ValueError, r"sample_weight: expected shape \(8,\)"),
    (-np.ones(8), ValueError, "sample_weight: expected finite weights >= 0"),
    (np.r_[np.nan, np.ones(7)], ValueError, "sample_weight: expected finite weights >= 0"),
    (np.r_[np.inf, np.ones(7)], ValueError, "sample_weight: expected finite weights >= 0"),
    (np.zeros(8), ValueError, "sample_weight: expected at least one weight > 0"),
    (np.array(["a"] * 8), TypeError, "sample_weight: expected real numbers"),
])
def test_bad_weights_are_named_errors_and_leave_the_model_untouched(bad, error, text):
    X, Y, _ = _data(8, 5, 3, "mse")
    net = _net("mse", optimizer="adam")
    params, state = net.params.copy(), net.optimizer_state.copy()
    with pytest.raises(error, match=text):
        net.fit(X, Y, sample_weight=bad)
    if bad.shape == (8,) and bad.dtype.kind == "f" and not np.all(bad == 0):
        with pytest.raises(error, match=text):
            net.train_step(X, Y, sample_weight=bad)
    assert np.array_equal(net.params, params)
    assert np.array_equal(net.optimizer_state, state)


def test_bad_stacked_weights_name_the_model():
    X, Y, _ = _data(8, 5, 3, "mse")
    models = _stack_models("mse", np.float64, 3)
    params = [m.params.copy() for m in models]
    stack = MLPStack(models)
    W = np.ones((3, 8))
    W[2] = 0
    with pytest.raises(ValueError, match=r"sample_weight\[2\]: expected at least one"):
        stack.fit(X, Y, sample_weight=W)
    with pytest.raises(ValueError, match=r"sample_weight: expected shape \(3, 8\)"):
        stack.fit(X, Y, sample_weight=np.ones((2, 8)))
    assert all(np.array_equal(m.params, p) for m, p in zip(models, params))
