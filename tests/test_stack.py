"""MLPStack: each stacked model against its own fit, a plain numpy transcription of the
seed equations, the divergence guard, thread counts and bad input.

Equality with a model's own ``MLP.fit`` is exact (bit for bit, any dtype): the stack runs
the same step on the same rows in the same order, so any difference is a bug, not
rounding.  The numpy oracle is float64 and independent of the core: agreement to 1e-12
relative (a handful of rounding steps on values of order 1).
"""
import re
import warnings

import numpy as np
import pytest
import reference as ref
import scipy.sparse as sp

import fastmlp
from fastmlp import MLP, DivergenceWarning, MLPStack

OPTIMIZERS = ("sgd", "momentum", "nesterov", "adam")
ACTIVATIONS = ("relu", "tanh", "logistic", "identity", "leaky_relu", "elu", "gelu", "silu",
               "softplus")


def _data(n=90, d=7, k=3, loss="mse", dtype=np.float64, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d)).astype(dtype)
    if loss == "mse":
        return X, rng.standard_normal((n, k)).astype(dtype)
    return X, rng.integers(0, k, n)


def _models(d, k, loss, dtype, count=None, **common):
    # Different widths, depths, activations, optimizers, L2 and dropout, one per model.
    out = []
    for i in range(count or len(ACTIVATIONS)):
        hidden = [5 + 3 * i] + ([4] if i % 3 == 1 else [])
        out.append(MLP([d, *hidden, k], loss=loss, dtype=dtype, seed=10 + i,
                       activation=ACTIVATIONS[i % len(ACTIVATIONS)],
                       optimizer=OPTIMIZERS[i % len(OPTIMIZERS)], l2=0.05 * (i % 3),
                       dropout=0.2 if i % 4 == 3 else 0.0, **common))
    return out


def _twins(d, k, loss, dtype, count=None):
    return _models(d, k, loss, dtype, count), _models(d, k, loss, dtype, count)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("loss", ["mse", "softmax_cross_entropy"])
def test_each_stacked_model_is_its_own_fit(loss, dtype):
    X, Y = _data(loss=loss, dtype=dtype)
    stacked, alone = _twins(7, 3, loss, dtype)
    lrs = [0.01 * (1 + i % 3) for i in range(len(stacked))]
    losses = MLPStack(stacked).fit(X, Y, epochs=3, batch_size=16, lr=lrs, seed=4)
    assert losses.shape == (len(stacked), 3)
    for k, (m, own) in enumerate(zip(stacked, alone)):
        own_losses = own.fit(X, Y, epochs=3, batch_size=16, lr=lrs[k], seed=4)
        assert np.array_equal(m.params, own.params), k
        assert np.array_equal(m.optimizer_state, own.optimizer_state), k
        assert m.adam_steps == own.adam_steps and m.dropout_state == own.dropout_state
        np.testing.assert_array_equal(losses[k], own_losses)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shuffle", [True, False])
def test_sparse_rows_train_as_their_own_fit(shuffle, dtype):
    X, Y = _data(loss="softmax_cross_entropy", dtype=dtype)
    X[np.abs(X) < 0.8] = 0
    Xs = sp.csr_matrix(X)
    stacked, alone = _twins(7, 3, "softmax_cross_entropy", dtype, count=8)
    MLPStack(stacked).fit(Xs, Y, epochs=2, batch_size=10, lr=0.05, seed=1, shuffle=shuffle)
    for m, own in zip(stacked, alone):
        own.fit(Xs, Y, epochs=2, batch_size=10, lr=0.05, seed=1, shuffle=shuffle)
        assert np.array_equal(m.params, own.params)


def test_one_stacked_sgd_epoch_matches_the_seed_equations_in_numpy():
    # Independent of the core: the steps of seeds 000/001 transcribed in float64 numpy,
    # rows in the order MLP.fit draws them (one permutation from seed per epoch).
    X, Y = _data(n=40, loss="mse")
    models = [MLP([7, 6, 3], dtype=np.float64, seed=s) for s in (1, 2)]
    expected = []
    for m in models:
        W = [w.copy() for w in m.weights]
        b = [c.copy() for c in m.biases]
        perm = np.random.default_rng(3).permutation(40)
        for start in range(0, 40, 8):
            rows = perm[start:start + 8]
            _, grads = ref.loss_and_grad(W, b, X[rows], Y[rows], "mse")
            for layer, (dW, db) in enumerate(grads):
                W[layer] = W[layer] - 0.1 * dW
                b[layer] = b[layer] - 0.1 * db
        expected.append(np.concatenate([np.concatenate([w.ravel(), c]) for w, c in zip(W, b)]))
    MLPStack(models).fit(X, Y, epochs=1, batch_size=8, lr=0.1, seed=3)
    for m, want in zip(models, expected):
        np.testing.assert_allclose(m.params, want, rtol=1e-12, atol=1e-14)


def test_train_step_and_forward_are_each_models_own():
    X, Y = _data(n=12)
    stacked, alone = _twins(7, 3, "mse", np.float64, count=5)
    stack = MLPStack(stacked)
    losses = stack.train_step(X, Y, lr=0.02)
    out = stack.forward(X[:4])
    assert out.shape == (5, 4, 3) and out.dtype == np.float64
    for k, (m, own) in enumerate(zip(stacked, alone)):
        assert losses[k] == pytest.approx(own.train_step(X, Y, lr=0.02), rel=1e-15)
        assert np.array_equal(m.params, own.params)
        assert np.array_equal(out[k], own.forward(X[:4]))


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_the_split_over_threads_does_not_change_a_bit(threads, monkeypatch):
    # Enough work for every model to get a thread of its own, whatever the split.
    import fastmlp._workers as workers
    monkeypatch.setattr(workers, "GROUP_FLOPS", 1.0)
    X, Y = _data(n=64, loss="softmax_cross_entropy")
    stacked, alone = _twins(7, 3, "softmax_cross_entropy", np.float64, count=6)
    before = fastmlp.get_num_threads()
    fastmlp.set_num_threads(threads)
    try:
        stack = MLPStack(stacked)
        assert len(stack._plan(64, 8, 2, single=False)) == min(threads, 6)
        stack.fit(X, Y, epochs=2, batch_size=8, lr=0.05, seed=9)
    finally:
        fastmlp.set_num_threads(before)
    for m, own in zip(stacked, alone):
        own.fit(X, Y, epochs=2, batch_size=8, lr=0.05, seed=9)
        assert np.array_equal(m.params, own.params)


@pytest.mark.parametrize("threads", [1, 2])
def test_a_diverging_model_stops_alone_and_is_reported(threads, monkeypatch):
    import fastmlp._workers as workers
    monkeypatch.setattr(workers, "GROUP_FLOPS", 1.0)
    X, Y = _data(n=64)
    Y *= 1e3
    models = [MLP([7, 8, 3], dtype=np.float64, seed=s) for s in range(3)]
    start = models[1].params.copy()
    before = fastmlp.get_num_threads()
    fastmlp.set_num_threads(threads)
    try:
        stack = MLPStack(models)
        with pytest.warns(DivergenceWarning, match=r"models\[1\]: non-finite loss"):
            losses = stack.fit(X, Y, epochs=3, batch_size=16, lr=[1e-6, 1e3, 1e-6], seed=0)
    finally:
        fastmlp.set_num_threads(before)
    assert list(stack.active) == [True, False, True] and list(stack.diverged) == [1]
    assert np.isnan(losses[1, -1]) and np.isfinite(losses[[0, 2]]).all()
    # Its parameters are those after its last good step: replay that many steps alone.
    replay = MLP([7, 8, 3], dtype=np.float64, seed=1)
    assert np.array_equal(replay.params, start)
    where = re.search(r"epoch (\d+), step (\d+) of 4", stack.diverged[1])
    epoch, good = int(where[1]) - 1, int(where[2]) - 1      # 0-based; good: steps done
    rng = np.random.default_rng(0)
    for e in range(epoch + 1):
        perm = rng.permutation(64)
        for s in range(4 if e < epoch else good):
            rows = perm[16 * s:16 * s + 16]
            replay.train_step(X[rows], Y[rows], lr=1e3)
    assert np.array_equal(models[1].params, replay.params)
    # Later calls skip it until it is made active again.
    frozen = models[1].params.copy()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.isnan(stack.train_step(X, Y, lr=1e-6)[1])
    assert np.array_equal(models[1].params, frozen)


def test_mismatched_models_are_one_line_errors_naming_the_model():
    a = MLP([4, 5, 2])
    with pytest.raises(ValueError, match=r"^models\[1\]: input width 3, expected 4"):
        MLPStack([a, MLP([3, 5, 2])])
    with pytest.raises(ValueError, match=r"^models\[2\]: output width 3, expected 2"):
        MLPStack([a, MLP([4, 2]), MLP([4, 6, 3])])
    with pytest.raises(ValueError, match=r"^models\[1\]: dtype float64, expected float32"):
        MLPStack([a, MLP([4, 5, 2], dtype=np.float64)])
    with pytest.raises(ValueError, match=r"^models\[1\]: another loss"):
        MLPStack([a, MLP([4, 5, 2], loss="softmax_cross_entropy")])
    with pytest.raises(ValueError, match=r"^models\[1\]: the same model as models\[0\]"):
        MLPStack([a, a])
    with pytest.raises(TypeError, match=r"^models\[0\]: expected a fastmlp.MLP"):
        MLPStack(["not a model"])
    with pytest.raises(ValueError, match="^models: expected at least one model"):
        MLPStack([])


def test_bad_training_arguments_leave_every_model_untouched():
    X, Y = _data(n=20, d=4, k=2)
    models = [MLP([4, 5, 2], seed=s, dtype=np.float64) for s in range(2)]
    stack = MLPStack(models)
    before = [m.params.copy() for m in models]
    bad = X.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="lr: expected one learning rate or 2, got 3"):
        stack.fit(X, Y, lr=[0.1, 0.1, 0.1])
    with pytest.raises(ValueError, match=r"lr\[1\]"):
        stack.fit(X, Y, lr=[0.1, -1.0])
    with pytest.raises(ValueError, match="X: contains NaN"):
        stack.fit(bad, Y)
    with pytest.raises(ValueError, match="X: "):
        stack.fit(X[:, :3], Y)
    with pytest.raises(TypeError, match="epochs"):
        stack.fit(X, Y, epochs=1.5)
    for m, p in zip(models, before):
        assert np.array_equal(m.params, p)


@pytest.mark.parametrize("threads", [1, 2])
def test_the_stack_gathers_each_batch_once_not_once_per_model(threads):
    # Memory a shuffled fit keeps, by numpy's allocations (tracemalloc sees them): each
    # model's own fit keeps a gathered batch in its engine, 3.2 MB here; the stack keeps
    # one for all 8 models — one per group of models when it splits them over threads —
    # plus each model's small workspace (~0.1 MB: widths 4 and 1).
    import tracemalloc
    rng = np.random.default_rng(0)
    X, Y = rng.standard_normal((2000, 400)), rng.standard_normal((2000, 1))
    batch = X[:1000].nbytes
    groups = []

    def grown(fit):
        models = [MLP([400, 4, 1], dtype=np.float64, seed=s) for s in range(8)]
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            fit(models)
            return tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()

    def stacked_fit(models):
        stack = MLPStack(models)
        groups.append(len(stack._plan(2000, 1000, 1, single=False)))
        stack.fit(X, Y, **kw)

    kw = dict(epochs=1, batch_size=1000, lr=0.01, seed=0)
    before = fastmlp.get_num_threads()
    fastmlp.set_num_threads(threads)
    try:
        alone = grown(lambda ms: [m.fit(X, Y, **kw) for m in ms])
        stacked = grown(stacked_fit)
    finally:
        fastmlp.set_num_threads(before)
    assert alone > 8 * batch                     # the oracle: one gathered batch per model
    assert groups[0] == threads                  # (enough work for a group per thread)
    assert groups[0] * batch < stacked < (groups[0] + 1) * batch
