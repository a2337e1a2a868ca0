"""A stack's first layer as one product over its models (``_stack_first.pxi``), forced on
with the core Stack's ``first_product = 1``: X·[W(1)…] and Xᵀ·[Δ(1)…] for every model but
plain SGD's, each model's layers above its own step.

Oracle: each model's own ``MLP.fit`` with the same arguments, exactly (bit for bit).  A
column of a product is one sum over the inner dimension in OpenBLAS's order whatever the
number of columns (the property the split products rely on, _split_gemm.h), and a model
adds its bias as the GEMM onto a bias-filled Z does, so nothing may differ; batches of
one row (gemv, ger) take the models' own steps.
"""
import numpy as np
import pytest

from fastmlp import MLP, DivergenceWarning, MLPStack

OPTIMIZERS = ("momentum", "nesterov", "adam", "sgd")
ACTIVATIONS = ("relu", "tanh", "gelu", "logistic", "silu")


def _models(loss, dtype, count=8):
    # Widths, depths, activations, optimizers (plain SGD among them: its own step), L2
    # and dropout differ from model to model.
    return [MLP([6, 3 + 2 * i] + ([5] if i % 3 == 1 else []) + [3], loss=loss, dtype=dtype,
                seed=40 + i, activation=ACTIVATIONS[i % 5], optimizer=OPTIMIZERS[i % 4],
                l2=0.03 * (i % 2), dropout=0.25 if i == 2 else 0.0) for i in range(count)]


def _data(n, loss, dtype, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 6)).astype(dtype)
    Y = rng.standard_normal((n, 3)).astype(dtype) if loss == "mse" else rng.integers(0, 3, n)
    return X, Y


def _forced(models):
    stack = MLPStack(models)
    stack._stack.first_product = 1
    return stack


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("batch_size", [8, 41])      # 41 rows: a last batch of one row
@pytest.mark.parametrize("shuffle", [True, False])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("loss", ["mse", "softmax_cross_entropy"])
def test_one_first_product_ends_every_model_at_its_own_fit(loss, dtype, shuffle, batch_size,
                                                           weighted):
    X, Y = _data(42, loss, dtype)
    stacked, alone = _models(loss, dtype), _models(loss, dtype)
    W = (np.random.default_rng(3).poisson(1.0, (len(stacked), 42)).astype(dtype)
         if weighted else None)
    stack = _forced(stacked)
    losses = stack.fit(X, Y, epochs=3, batch_size=batch_size, lr=0.02, seed=5,
                       shuffle=shuffle, sample_weight=W)
    assert len(stack._stack.first_arrays) == 5      # the one-product path ran
    for k, (m, own) in enumerate(zip(stacked, alone)):
        own_losses = own.fit(X, Y, epochs=3, batch_size=batch_size, lr=0.02, seed=5,
                             shuffle=shuffle, sample_weight=None if W is None else W[k])
        assert np.array_equal(m.params, own.params), k
        assert np.array_equal(m.optimizer_state, own.optimizer_state), k
        np.testing.assert_array_equal(losses[k], own_losses)


def test_a_model_diverging_in_the_one_product_stops_alone():
    X, Y = _data(48, "mse", np.float64)
    Y = Y * 1e3
    stacked = [MLP([6, 8, 3], dtype=np.float64, optimizer="momentum", seed=s) for s in range(3)]
    alone = [MLP([6, 8, 3], dtype=np.float64, optimizer="momentum", seed=s) for s in (0, 2)]
    stack = _forced(stacked)
    lrs = [1e-4, 1e3, 1e-4]
    with pytest.warns(DivergenceWarning, match=r"models\[1\]: non-finite loss"):
        stack.fit(X, Y, epochs=4, batch_size=8, lr=lrs, seed=2)
    assert list(stack.active) == [True, False, True]
    # The others' steps after it stopped (its Δ(1) columns zeroed) are still their own.
    for m, own in zip((stacked[0], stacked[2]), alone):
        own.fit(X, Y, epochs=4, batch_size=8, lr=1e-4, seed=2)
        assert np.array_equal(m.params, own.params)


def test_the_default_stack_takes_each_models_own_first_product():
    X, Y = _data(20, "mse", np.float64)
    stack = MLPStack(_models("mse", np.float64, 3))
    stack.fit(X, Y, epochs=1, batch_size=5)
    assert stack._stack.first_product == -1 and stack._stack.first_arrays == []
