"""Sparse X (issue 12): every entry point against the dense path, the CSR kernels against
scipy's products, the estimators against scikit-learn's own sparse fit, and bad input.

Tolerances.  Float64 sparse vs dense fastmlp: the first layer sums in another order (the
stored values one by one vs BLAS), so single evaluations agree to ~1e-15 relative and
short fits to 1e-12.  Against scikit-learn's sparse fit the products run in scipy's order,
the same as the kernels': 1e-10 relative over whole fits is the issue's bar (measured
~1e-16 for sgd/adam, ~1e-12 for lbfgs, whose line search amplifies rounding).  float32:
1e-5.
"""
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from numpy.testing import assert_allclose, assert_array_equal

import fastmlp
from fastmlp import _core

RNG = np.random.default_rng(12)


def sparse_data(n=120, d=60, density=0.08, seed=0, dtype=np.float64, fmt="csr"):
    rng = np.random.default_rng(seed)
    X = sp.random(n, d, density=density, format=fmt, random_state=rng, dtype=dtype)
    return X


def unsorted_with_zeros(X):
    """The same matrix as X, with each row's entries reversed (unsorted indices), one
    explicit zero and one duplicated entry split in two halves."""
    X = X.tocsr()
    data, indices, indptr = [], [], [0]
    for i in range(X.shape[0]):
        lo, hi = X.indptr[i], X.indptr[i + 1]
        d, j = list(X.data[lo:hi][::-1]), list(X.indices[lo:hi][::-1])
        if d:
            d[0] /= 2
            d.append(d[0])           # duplicate: adds up to the original
            j.append(j[0])
        d.append(0.0)                # explicit zero
        j.append(i % X.shape[1])
        data += d
        indices += j
        indptr.append(len(data))
    return sp.csr_matrix((np.array(data, X.dtype), np.array(indices, np.int32),
                          np.array(indptr, np.int32)), shape=X.shape)


def int64_indices(X):
    X = X.tocsr().copy()
    X.indices = X.indices.astype(np.int64)
    X.indptr = X.indptr.astype(np.int64)
    return X


# ---------------------------------------------------------------------- kernels

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("index", [np.int32, np.int64])
def test_kernels_against_scipy(dtype, index):
    X = unsorted_with_zeros(sparse_data(40, 30, 0.2, dtype=dtype))
    data, indices, indptr = X.data, X.indices.astype(index), X.indptr.astype(index)
    W = RNG.normal(size=(30, 7)).astype(dtype)
    b = RNG.normal(size=7).astype(dtype)
    Z = np.full((40, 7), np.nan, dtype=dtype)
    _core.k_csr_linear_forward(data, indices, indptr, W, b, Z)
    rtol = 1e-5 if dtype == np.float32 else 1e-13
    assert_allclose(Z, X.toarray() @ W + b, rtol=rtol, atol=rtol)
    D = RNG.normal(size=(40, 7)).astype(dtype)
    dW = RNG.normal(size=(30, 7)).astype(dtype)
    expect = dW + X.T @ D
    _core.k_csr_transposed_accumulate(data, indices, indptr, D, dW)
    assert_allclose(dW, expect, rtol=rtol, atol=rtol)


def test_kernels_refuse_bad_structure():
    W, b = np.ones((5, 2)), np.zeros(2)
    Z = np.empty((2, 2))
    with pytest.raises(ValueError, match="CSR"):
        _core.k_csr_linear_forward(np.ones(2), np.array([0, 5], np.int32),
                                   np.array([0, 1, 2], np.int32), W, b, Z)
    with pytest.raises(ValueError, match="CSR"):
        _core.k_csr_linear_forward(np.ones(2), np.array([0, 1], np.int32),
                                   np.array([0, 2, 1], np.int32), W, b, Z)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("fmt", ["csr", "csc", "coo", "int64"])
def test_public_kernels_against_scipy(dtype, fmt):
    from fastmlp import kernels
    X = sparse_data(25, 18, 0.25, dtype=dtype)
    X = int64_indices(X) if fmt == "int64" else X.asformat(fmt)
    W = RNG.normal(size=(18, 5)).astype(dtype)
    b = RNG.normal(size=5).astype(dtype)
    rtol = 1e-5 if dtype == np.float32 else 1e-13
    Z = kernels.csr_linear_forward(X, W, b)
    assert Z.dtype == dtype
    assert_allclose(Z, X.toarray() @ W + b, rtol=rtol, atol=rtol)
    out = np.full((25, 5), np.nan, dtype=dtype)
    assert kernels.csr_linear_forward(X, W, b, out=out) is out
    assert_array_equal(out, Z)
    D = RNG.normal(size=(25, 5)).astype(dtype)
    dW = RNG.normal(size=(18, 5)).astype(dtype)
    expect = dW + X.T @ D
    assert kernels.csr_transposed_accumulate(X, D, dW) is dW
    assert_allclose(dW, expect, rtol=rtol, atol=rtol)


def test_public_kernels_refuse_bad_input():
    from fastmlp import kernels
    X = sparse_data(6, 4, 0.5)
    W, b, D = np.ones((4, 3)), np.zeros(3), np.ones((6, 3))
    with pytest.raises(TypeError, match="X: expected a scipy sparse"):
        kernels.csr_linear_forward(X.toarray(), W, b)
    with pytest.raises(TypeError, match="W: expected dtype float64"):
        kernels.csr_linear_forward(X, W.astype(np.float32), b)
    with pytest.raises(TypeError, match="float32 or float64"):
        kernels.csr_linear_forward(X.astype(np.int64), W, b)
    with pytest.raises(ValueError, match="W: expected 4 rows"):
        kernels.csr_linear_forward(X, np.ones((5, 3)), b)
    with pytest.raises(ValueError, match="out: expected a"):
        kernels.csr_linear_forward(X, W, b, out=np.empty((6, 2)))
    with pytest.raises(ValueError, match="D: expected 6 rows"):
        kernels.csr_transposed_accumulate(X, D[:5], np.zeros((4, 3)))
    with pytest.raises(ValueError, match="dW: expected a"):
        kernels.csr_transposed_accumulate(X, D, np.zeros((4, 3), order="F")[:, :2])
    bad = sp.csr_matrix((np.ones(2), np.array([0, 9], np.int32), np.array([0, 1, 2], np.int32)),
                        shape=(2, 4))                 # scipy checks no index values here
    with pytest.raises(ValueError, match="X: sparse column indices"):
        kernels.csr_linear_forward(bad, W, b)
    dW = np.zeros((4, 3))
    with pytest.raises(ValueError, match="X: sparse column indices"):
        kernels.csr_transposed_accumulate(bad, D[:2], dW)
    assert not dW.any()
    with pytest.raises(ValueError, match="X: .*NaN"):
        kernels.csr_linear_forward(sp.csr_matrix(np.array([[np.nan, 1.0]])), W[:2], b)


# ---------------------------------------------------------------------- fastmlp.MLP

FORMATS = {
    "csr": lambda X: X.tocsr(),
    "csc": lambda X: X.tocsc(),
    "coo": lambda X: X.tocoo(),
    "csr_array": lambda X: sp.csr_array(X),
    "int64": int64_indices,
    "unsorted+zeros+duplicates": unsorted_with_zeros,
}


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_mlp_entry_points_match_dense(fmt):
    X = sparse_data()
    Xs, Xd = FORMATS[fmt](X), X.toarray()
    y = RNG.integers(0, 3, X.shape[0])
    a = fastmlp.MLP([60, 16, 3], loss="softmax_cross_entropy", dtype=np.float64, seed=0)
    assert_allclose(a.forward(Xs), a.forward(Xd), rtol=1e-13, atol=1e-15)
    assert_array_equal(a.predict(Xs), a.predict(Xd))
    assert_allclose(a.predict_proba(Xs), a.predict_proba(Xd), rtol=1e-13, atol=1e-15)
    assert a.loss(Xs, y) == pytest.approx(a.loss(Xd, y), rel=1e-14)
    (ls, gs), (ld, gd) = a.loss_and_grad(Xs, y), a.loss_and_grad(Xd, y)
    assert ls == pytest.approx(ld, rel=1e-14)
    for (dWs, dbs), (dWd, dbd) in zip(gs, gd):
        assert_allclose(dWs, dWd, rtol=1e-13, atol=1e-16)
        assert_allclose(dbs, dbd, rtol=1e-13, atol=1e-16)


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "nesterov", "adam"])
@pytest.mark.parametrize("l2", [0.0, 0.05])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_mlp_training_matches_dense(optimizer, l2, dtype):
    X = sparse_data(dtype=dtype)
    Y = RNG.normal(size=(X.shape[0], 2))
    nets = [fastmlp.MLP([60, 8, 2], dtype=dtype, seed=1, optimizer=optimizer, l2=l2)
            for _ in range(2)]
    for net, Xin in zip(nets, (X, X.toarray())):
        net.fit(Xin, Y, epochs=3, batch_size=16, lr=0.02)            # gathered batches
        net.fit(Xin, Y, epochs=1, batch_size=50, lr=0.02, shuffle=False)   # in place
        net.train_step(Xin[:9], Y[:9], lr=0.02)
        net.train_step(Xin[3:4], Y[3:4], lr=0.02)                     # one row
    tol = 1e-4 if dtype == np.float32 else 1e-12
    assert_allclose(nets[0].params, nets[1].params, rtol=tol, atol=tol)
    assert_allclose(nets[0].optimizer_state, nets[1].optimizer_state, rtol=tol, atol=tol)


def test_plain_sgd_changes_only_the_rows_a_batch_reaches():
    X = sparse_data(30, 200, 0.02).tocsr()
    Y = RNG.normal(size=(30, 1))
    net = fastmlp.MLP([200, 5, 1], dtype=np.float64, seed=0)
    dense = fastmlp.MLP([200, 5, 1], dtype=np.float64, seed=0)
    W0 = net.weights[0].copy()
    net.train_step(X, Y, lr=0.1)
    dense.train_step(X.toarray(), Y, lr=0.1)
    reached = np.unique(X.indices)
    untouched = np.setdiff1d(np.arange(200), reached)
    assert untouched.size > 0
    assert_array_equal(net.weights[0][untouched], W0[untouched])
    assert_allclose(net.params, dense.params, rtol=1e-13, atol=1e-15)
    # a following dense step and loss_and_grad see a clean gradient buffer
    _, g = net.loss_and_grad(X, Y)
    _, h = dense.loss_and_grad(X.toarray(), Y)
    assert_allclose(g[0][0], h[0][0], rtol=1e-13, atol=1e-16)
    net.train_step(X.toarray()[:5], Y[:5], lr=0.1)
    net.train_step(X[5:20], Y[5:20], lr=0.1)
    dense.train_step(X.toarray()[:5], Y[:5], lr=0.1)
    dense.train_step(X.toarray()[5:20], Y[5:20], lr=0.1)
    assert_allclose(net.params, dense.params, rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("l2", [0.0, 0.05])
def test_non_finite_weights_in_rows_no_batch_reaches_are_refused_like_dense(l2):
    # A dense step carries a NaN of W(1) into the loss (0·NaN = NaN) and is refused; a
    # lazy sparse step never reads rows its batch does not reach, so training checks the
    # whole W(1) before its steps.
    X = sparse_data(20, 50, 0.04).tocsr()
    Y = RNG.normal(size=(20, 1))
    untouched = np.setdiff1d(np.arange(50), np.unique(X.indices))[0]
    for bad in (np.nan, np.inf):
        for Xin in (X, X.toarray()):
            net = fastmlp.MLP([50, 4, 1], dtype=np.float64, seed=0, l2=l2)
            net.weights[0][untouched, 2] = bad
            before = net.params.copy()
            with pytest.raises(fastmlp.DivergenceError):
                net.train_step(Xin, Y, lr=0.1)
            with pytest.raises(fastmlp.DivergenceError):
                net.fit(Xin, Y, epochs=1, batch_size=5, lr=0.1)
            assert_array_equal(net.params, before)


def test_penalty_carried_between_sparse_steps_is_the_penalty_of_the_weights():
    # Plain SGD with decay on sparse rows sums the squares of W(1) while updating it, for
    # the next step's penalty; a write by the caller between calls must not be missed.
    X = sparse_data(dtype=np.float64)
    Y = RNG.normal(size=(X.shape[0], 2))
    nets = [fastmlp.MLP([60, 8, 2], dtype=np.float64, seed=1, l2=0.5) for _ in range(2)]
    losses = []
    for net, Xin in zip(nets, (X, X.toarray())):
        first = net.fit(Xin, Y, epochs=2, batch_size=16, lr=0.05)
        net.weights[0][:] *= 3.0                  # in place, between calls
        step = net.train_step(Xin[:10], Y[:10], lr=0.05)
        net.weights[0][:] *= 0.5
        losses.append([*first, step, *net.fit(Xin, Y, epochs=1, batch_size=16, lr=0.05)])
    assert_allclose(losses[0], losses[1], rtol=1e-13)
    assert_allclose(nets[0].params, nets[1].params, rtol=1e-12, atol=1e-15)


def test_memory_mapped_components_are_read_in_place(tmp_path):
    X = sparse_data(50, 40, 0.1)
    for name in ("data", "indices", "indptr"):
        np.save(tmp_path / f"{name}.npy", getattr(X, name))
    parts = [np.load(tmp_path / f"{name}.npy", mmap_mode="r")
             for name in ("data", "indices", "indptr")]
    Xm = sp.csr_matrix(tuple(parts), shape=X.shape)
    rows = fastmlp._validation.as_sparse_rows("X", Xm, np.dtype(np.float64), 40)
    assert np.shares_memory(rows.data, parts[0]) and np.shares_memory(rows.indices, parts[1])
    Y = RNG.normal(size=(50, 1))
    a, b = (fastmlp.MLP([40, 4, 1], dtype=np.float64, seed=0) for _ in range(2))
    a.fit(Xm, Y, epochs=2, batch_size=8)
    b.fit(X.toarray(), Y, epochs=2, batch_size=8)
    assert_allclose(a.params, b.params, rtol=1e-12, atol=1e-14)
    # a float32 model would need the float64 map converted: refused, as for dense maps
    with pytest.raises(ValueError, match="memory-mapped"):
        fastmlp.MLP([40, 4, 1], dtype=np.float32).fit(Xm, Y)
    # save_npz / load_npz round trip
    sp.save_npz(tmp_path / "x.npz", X)
    assert_allclose(a.forward(sp.load_npz(tmp_path / "x.npz")), a.forward(X.toarray()),
                    rtol=1e-13, atol=1e-15)     # (an output near 0 has no relative bar)


def test_workspace_counts_nonzeros_not_columns():
    layout = _core.Layout([100000, 64, 2])
    dense = layout.gather_bytes(200, 8)
    sparse = layout.gather_bytes(200, 8, nnz=4000, index_size=4)
    assert dense > 100000 * 200 * 8 and sparse < 100000


# ---------------------------------------------------------------------- bad input

def _bad(data=None, indices=None, indptr=None, shape=(3, 4)):
    X = sp.csr_matrix((np.array([1.0, 2.0, 3.0]), np.array([0, 1, 3], np.int32),
                       np.array([0, 1, 2, 3], np.int32)), shape=shape)
    if data is not None:
        X.data = np.asarray(data, dtype=np.float64)
    if indices is not None:
        X.indices = np.asarray(indices, dtype=np.int32)
    if indptr is not None:
        X.indptr = np.asarray(indptr, dtype=np.int32)
    return X


@pytest.mark.parametrize("X, match", [
    (_bad(data=[1.0, np.nan, 3.0]), "NaN or infinity"),
    (_bad(data=[1.0, np.inf, 3.0]), "NaN or infinity"),
    (_bad(indices=[0, 4, 1]), r"column indices must be in \[0, 4\)"),
    (_bad(indices=[0, -1, 1]), r"column indices must be in \[0, 4\)"),
    (_bad(indptr=[0, 2, 1, 3]), "indptr must start at 0, never decrease"),
    (_bad(indptr=[0, 1, 2, 4]), "indptr must start at 0, never decrease"),
    (_bad(indptr=[1, 1, 2, 3]), "indptr must start at 0"),
])
def test_bad_sparse_input_is_refused_before_anything_changes(X, match):
    net = fastmlp.MLP([4, 3, 2], loss="softmax_cross_entropy", dtype=np.float64, seed=0,
                      optimizer="adam")
    before = net.params.copy(), net.optimizer_state.copy()
    y = np.array([0, 1, 0])
    for call in (lambda: net.fit(X, y), lambda: net.train_step(X, y),
                 lambda: net.forward(X), lambda: net.loss_and_grad(X, y)):
        with pytest.raises(ValueError, match="^X: .*" + match):
            call()
    assert_array_equal(net.params, before[0])
    assert_array_equal(net.optimizer_state, before[1])


def test_unsupported_sparse_format_and_shape():
    net = fastmlp.MLP([4, 2], dtype=np.float64)
    with pytest.raises(TypeError, match="^X: sparse format 'dia'"):
        net.forward(sp.dia_matrix(np.eye(4)))
    with pytest.raises(ValueError, match="^X: expected 4 columns"):
        net.forward(sp.csr_matrix(np.ones((2, 3))))


# ---------------------------------------------------------------------- estimators

sknn = pytest.importorskip("sklearn.neural_network")


def _rel(f, s):
    return max(np.abs(a - b).max() / np.abs(b).max()
               for a, b in zip(f.coefs_ + f.intercepts_, s.coefs_ + s.intercepts_))


def _fit_pair(kind, X, y, sample_weight=None, **params):
    ours = getattr(fastmlp, kind)(random_state=0, **params)
    theirs = getattr(sknn, kind)(random_state=0, **params)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours.fit(X, y, sample_weight=sample_weight)
        theirs.fit(X, y, sample_weight=sample_weight)
    return ours, theirs


SOLVERS = [dict(solver="sgd", momentum=0.0), dict(solver="sgd", momentum=0.0, alpha=0.0),
           dict(solver="sgd"), dict(solver="adam"), dict(solver="lbfgs"),
           dict(solver="adam", early_stopping=True)]


@pytest.mark.parametrize("params", SOLVERS)
@pytest.mark.parametrize("kind", ["MLPClassifier", "MLPRegressor"])
def test_estimators_equal_scikit_learn_sparse_fit(kind, params):
    X = sparse_data(300, 150, 0.04, seed=3)
    y = (RNG.integers(0, 3, 300) if kind == "MLPClassifier" else RNG.normal(size=300))
    sw = RNG.uniform(0.5, 2.0, 300) if params.get("momentum") == 0.0 else None
    ours, theirs = _fit_pair(kind, X, y, sample_weight=sw, hidden_layer_sizes=(12,),
                             max_iter=12, **params)
    assert ours.n_iter_ == theirs.n_iter_
    assert _rel(ours, theirs) <= 1e-10
    if kind == "MLPClassifier":
        assert_array_equal(ours.predict(X), ours.predict(X.toarray()))
        assert_allclose(ours.predict_proba(X), ours.predict_proba(X.toarray()), rtol=1e-12)
    else:
        assert_allclose(ours.predict(X), ours.predict(X.toarray()), rtol=1e-12, atol=1e-13)
    assert ours.score(X, y) == pytest.approx(ours.score(X.toarray(), y), rel=1e-12)


def test_partial_fit_and_float32():
    X = sparse_data(200, 80, 0.05, seed=5)
    y = RNG.integers(0, 2, 200)
    ours = fastmlp.MLPClassifier(hidden_layer_sizes=(8,), random_state=0)
    theirs = sknn.MLPClassifier(hidden_layer_sizes=(8,), random_state=0)
    for _ in range(3):
        ours.partial_fit(X, y, classes=[0, 1])
        theirs.partial_fit(X, y, classes=[0, 1])
    assert _rel(ours, theirs) <= 1e-10
    X32 = X.astype(np.float32)
    ours32, theirs32 = _fit_pair("MLPClassifier", X32, y, hidden_layer_sizes=(8,),
                                 max_iter=5)
    assert ours32.coefs_[0].dtype == np.float32
    assert _rel(ours32, theirs32) <= 1e-4
