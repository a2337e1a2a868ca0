"""fastmlp.MLP against bad input: every rejection is a ValueError/TypeError naming the
argument, and no rejected call changes a single bit of ``net.params``.

Also the divergence guard (DivergenceError) and the array-likes/layouts that must be
accepted and give exactly the result of the contiguous float array.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import fastmlp
from fastmlp import DivergenceError, MLP

import reference as ref

_HERE = os.path.dirname(os.path.abspath(__file__))

DTYPES = [np.float32, np.float64]
N_IN, N_HID, N_OUT, N = 4, 6, 3, 5


# --------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------
def make_net(loss="mse", dtype=np.float64, sizes=(N_IN, N_HID, N_OUT), seed=3):
    net = MLP(list(sizes), loss=loss, dtype=dtype, seed=seed)
    # non-zero biases, so that a stray update of any part of the buffer shows
    for b in net.biases:
        b[...] = np.linspace(-0.3, 0.4, b.size)
    return net


def good_data(loss, n=N, seed=0, n_out=N_OUT):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, N_IN))
    if loss == "mse":
        Y = rng.standard_normal((n, n_out))
    else:
        Y = rng.integers(0, n_out, n)
    return X, Y


def snapshot(net):
    return net.params.copy()


def assert_params_unchanged(net, snap):
    assert net.params.dtype == snap.dtype and net.params.shape == snap.shape
    # bit-identical, including signed zeros and NaN payloads
    assert net.params.tobytes() == snap.tobytes(), "a rejected call changed the parameters"
    assert np.array_equal(net.params, snap)


def call(net, method, X, Y=None, **kw):
    fn = getattr(net, method)
    if method in ("forward", "predict", "predict_proba"):
        return fn(X)
    if method == "fit":
        kw.setdefault("epochs", 2)
        kw.setdefault("batch_size", 2)
        kw.setdefault("lr", 0.01)
        return fn(X, Y, **kw)
    if method == "train_step":
        kw.setdefault("lr", 0.01)
        return fn(X, Y, **kw)
    return fn(X, Y)


def rejects(net, exc, match, method, X, Y=None, **kw):
    snap = snapshot(net)
    with pytest.raises(exc, match=match):
        call(net, method, X, Y, **kw)
    assert_params_unchanged(net, snap)


X_METHODS = ["forward", "predict", "loss", "loss_and_grad", "train_step", "fit"]
Y_METHODS = ["loss", "loss_and_grad", "train_step", "fit"]


def test_good_calls_do_change_params():
    """Sanity for the checks below: the same calls with good data do train."""
    for method in ("train_step", "fit"):
        for loss in ("mse", "softmax_cross_entropy"):
            net = make_net(loss)
            snap = snapshot(net)
            X, Y = good_data(loss)
            call(net, method, X, Y)
            assert not np.array_equal(net.params, snap)


# --------------------------------------------------------------------------------------
# X: shapes, emptiness, non-finite values, non-numeric data
# --------------------------------------------------------------------------------------
def _bad_X_cases():
    nan = np.ones((N, N_IN))
    nan[2, 1] = np.nan
    inf = np.ones((N, N_IN))
    inf[0, 3] = np.inf
    ninf = np.ones((N, N_IN))
    ninf[4, 0] = -np.inf
    return [
        ("1d", np.ones(N_IN), ValueError),
        ("3d", np.ones((N, N_IN, 1)), ValueError),
        ("0d", np.float64(1.0), ValueError),
        ("wrong_cols", np.ones((N, N_IN + 1)), ValueError),
        ("too_few_cols", np.ones((N, 1)), ValueError),
        ("empty_rows", np.ones((0, N_IN)), ValueError),
        ("empty_list", [], ValueError),
        ("nan", nan, ValueError),
        ("inf", inf, ValueError),
        ("-inf", ninf, ValueError),
        ("overflows_float32", np.full((N, N_IN), 1e300), ValueError),  # inf once cast (f32)
        ("complex", np.ones((N, N_IN), dtype=complex), TypeError),
        ("object", np.array([[object()] * N_IN] * N, dtype=object), TypeError),
        ("string", np.full((N, N_IN), "1.0"), TypeError),
        ("bytes", np.full((N, N_IN), b"1"), TypeError),
        ("none", None, TypeError),
        ("ragged", [[1.0] * N_IN, [1.0] * (N_IN - 1)], ValueError),
    ]


LOSS_METHODS = ([("mse", m) for m in X_METHODS]
                + [("softmax_cross_entropy", m) for m in X_METHODS + ["predict_proba"]])


@pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")
@pytest.mark.parametrize("loss,method", LOSS_METHODS)
@pytest.mark.parametrize("case,X,exc", _bad_X_cases(), ids=[c[0] for c in _bad_X_cases()])
def test_bad_X(loss, method, case, X, exc):
    if case == "overflows_float32":
        dtypes = [np.float32]
    else:
        dtypes = DTYPES
    for dtype in dtypes:
        net = make_net(loss, dtype)
        _, Y = good_data(loss)
        rejects(net, exc, r"^X:", method, X, Y)


# --------------------------------------------------------------------------------------
# Y for mse
# --------------------------------------------------------------------------------------
def _bad_Y_mse_cases():
    nan = np.zeros((N, N_OUT))
    nan[1, 2] = np.nan
    inf = np.zeros((N, N_OUT))
    inf[3, 0] = -np.inf
    return [
        ("wrong_cols", np.zeros((N, N_OUT + 1)), ValueError),
        ("too_few_rows", np.zeros((N - 1, N_OUT)), ValueError),
        ("too_many_rows", np.zeros((N + 1, N_OUT)), ValueError),
        ("1d_for_3_outputs", np.zeros(N), ValueError),
        ("flat", np.zeros(N * N_OUT), ValueError),
        ("3d", np.zeros((N, N_OUT, 1)), ValueError),
        ("0d", np.float64(0.0), ValueError),
        ("nan", nan, ValueError),
        ("inf", inf, ValueError),
        ("complex", np.zeros((N, N_OUT), dtype=complex), TypeError),
        ("object", np.array([[object()] * N_OUT] * N, dtype=object), TypeError),
        ("string", np.full((N, N_OUT), "0"), TypeError),
        ("none", None, TypeError),
    ]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("method", Y_METHODS)
@pytest.mark.parametrize("case,Y,exc", _bad_Y_mse_cases(), ids=[c[0] for c in _bad_Y_mse_cases()])
def test_bad_Y_mse(dtype, method, case, Y, exc):
    net = make_net("mse", dtype)
    X, _ = good_data("mse")
    rejects(net, exc, r"^Y:", method, X, Y)


@pytest.mark.parametrize("method", Y_METHODS)
def test_mse_single_output_accepts_1d_Y(method):
    a = make_net("mse", np.float64, sizes=(N_IN, 5, 1))
    b = make_net("mse", np.float64, sizes=(N_IN, 5, 1))
    X, Y = good_data("mse", n_out=1)
    ra = call(a, method, X, Y[:, 0])
    rb = call(b, method, X, Y)
    if method == "loss_and_grad":
        assert ra[0] == rb[0]
        assert all(np.array_equal(p, q) for ga, gb in zip(ra[1], rb[1]) for p, q in zip(ga, gb))
    else:
        assert ra == rb
    assert np.array_equal(a.params, b.params)
    with pytest.raises(ValueError, match=r"^Y:"):
        call(a, method, X, Y[:-1, 0])


# --------------------------------------------------------------------------------------
# Y for softmax cross-entropy: labels and probability rows
# --------------------------------------------------------------------------------------
def _bad_Y_xent_cases():
    k = N_OUT
    base = np.array([0, 1, 2, 1, 0])
    neg = base.copy()
    neg[2] = -1
    big = base.copy()
    big[4] = k
    probs = np.full((N, k), 1.0 / k)
    notsum1 = probs.copy()
    notsum1[0] = [0.5, 0.5, 0.5]
    negp = probs.copy()
    negp[1] = [1.5, -0.5, 0.0]
    nanp = probs.copy()
    nanp[2, 0] = np.nan
    return [
        ("label_-1", neg, ValueError),
        ("label_k", big, ValueError),
        ("label_k_int32", big.astype(np.int32), ValueError),
        ("label_k_uint8", big.astype(np.uint8), ValueError),
        ("label_2**63_uint64", np.array([0, 1, 2, 1, 2**63], dtype=np.uint64), ValueError),
        ("label_-1_list", [0, 1, -1, 1, 0], ValueError),
        ("label_k_float", big.astype(float), ValueError),
        ("label_0.5", np.array([0, 0.5, 1, 1, 0]), ValueError),
        ("label_nan", np.array([0, np.nan, 1, 1, 0]), ValueError),
        ("label_inf", np.array([0, np.inf, 1, 1, 0]), ValueError),
        ("label_1e300", np.array([0, 1e300, 1, 1, 0]), ValueError),
        ("label_bool", np.array([True, False, True, True, False]), TypeError),
        ("too_few_labels", base[:-1], ValueError),
        ("too_many_labels", np.append(base, 0), ValueError),
        ("column_labels", base.reshape(-1, 1), ValueError),
        ("3d", np.zeros((N, k, 1)), ValueError),
        ("probs_wrong_cols", np.full((N, k + 1), 1.0 / (k + 1)), ValueError),
        ("probs_wrong_rows", np.full((N + 1, k), 1.0 / k), ValueError),
        ("probs_not_summing_to_1", notsum1, ValueError),
        ("probs_negative", negp, ValueError),
        ("probs_nan", nanp, ValueError),
        ("complex", base.astype(complex), TypeError),
        ("string", np.array(["0", "1", "2", "1", "0"]), TypeError),
        ("object", np.array([0, 1, 2, 1, None], dtype=object), TypeError),
    ]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("method", Y_METHODS)
@pytest.mark.parametrize("case,Y,exc", _bad_Y_xent_cases(), ids=[c[0] for c in _bad_Y_xent_cases()])
def test_bad_Y_xent(dtype, method, case, Y, exc):
    net = make_net("softmax_cross_entropy", dtype)
    X, _ = good_data("softmax_cross_entropy")
    rejects(net, exc, r"^Y:", method, X, Y)


# --------------------------------------------------------------------------------------
# constructor
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("sizes,exc", [
    ([], ValueError),
    ([3], ValueError),
    ([3, 0], ValueError),
    ([3, -1], ValueError),
    ([0, 3], ValueError),
    ([3, 4, 0, 2], ValueError),
    ([3, 2**31], ValueError),
    ([3, 2.5], TypeError),
    ([3, 2.0], TypeError),
    ([3, True], TypeError),
    ([True, 3], TypeError),
    ([3, np.bool_(True)], TypeError),
    ([3, "2"], TypeError),
    ([3, None], TypeError),
    ([3] * 66, ValueError),  # 65 weight layers: over the 64 supported
    ("34", TypeError),
    (3, TypeError),
    (None, TypeError),
    ((s for s in [3, 2]), TypeError),  # a generator has no length
], ids=lambda v: repr(v)[:20] if not isinstance(v, type) else v.__name__)
def test_bad_layer_sizes(sizes, exc):
    with pytest.raises(exc, match=r"^layer_sizes"):
        MLP(sizes)


def test_good_layer_sizes_forms():
    a = MLP((3, np.int64(4), np.int32(2)), seed=1)
    b = MLP([3, 4, 2], seed=1)
    assert a.layer_sizes == b.layer_sizes == (3, 4, 2)
    assert np.array_equal(a.params, b.params)
    assert MLP(np.array([3, 2]), seed=0).layer_sizes == (3, 2)
    assert MLP([3] * 65, seed=0).layer_sizes == (3,) * 65  # 64 weight layers is allowed


@pytest.mark.parametrize("kw,exc,name", [
    (dict(loss="MSE"), ValueError, "loss"),
    (dict(loss="cross_entropy"), ValueError, "loss"),
    (dict(loss=None), ValueError, "loss"),
    (dict(loss=0), ValueError, "loss"),
    (dict(activation="swish"), ValueError, "activation"),
    (dict(activation="ReLU"), ValueError, "activation"),
    (dict(activation=None), ValueError, "activation"),
    (dict(dtype=np.float16), TypeError, "dtype"),
    (dict(dtype=np.int32), TypeError, "dtype"),
    (dict(dtype="int64"), TypeError, "dtype"),
    (dict(dtype=np.complex128), TypeError, "dtype"),
    (dict(dtype=object), TypeError, "dtype"),
    (dict(dtype=np.longdouble), TypeError, "dtype"),
    (dict(dtype="not-a-dtype"), TypeError, "dtype"),
    (dict(seed=True), TypeError, "seed"),
    (dict(seed=1.5), TypeError, "seed"),
    (dict(seed="1"), TypeError, "seed"),
], ids=lambda v: repr(v)[:30] if isinstance(v, dict) else None)
def test_bad_constructor_options(kw, exc, name):
    with pytest.raises(exc, match=rf"^{name}:"):
        MLP([3, 4, 2], **kw)


@pytest.mark.parametrize("dtype", ["float32", "float64", np.float32, np.dtype("f8")])
def test_good_dtype_spellings(dtype):
    assert MLP([2, 2], dtype=dtype).params.dtype == np.dtype(dtype)


def test_softmax_xent_needs_two_outputs():
    with pytest.raises(ValueError, match=r"^layer_sizes"):
        MLP([3, 1], loss="softmax_cross_entropy")
    with pytest.raises(ValueError, match=r"^layer_sizes"):
        MLP([3, 8, 1], loss="softmax_cross_entropy")
    assert MLP([3, 8, 2], loss="softmax_cross_entropy").n_outputs == 2


def test_predict_proba_needs_xent():
    net = make_net("mse")
    snap = snapshot(net)
    with pytest.raises(ValueError, match="predict_proba"):
        net.predict_proba(np.ones((2, N_IN)))
    assert_params_unchanged(net, snap)


# --------------------------------------------------------------------------------------
# hyper-parameters: lr, batch_size, epochs
# --------------------------------------------------------------------------------------
BAD_LR = [
    (0.0, ValueError), (-0.0, ValueError), (-1e-3, ValueError), (0, ValueError),
    (-1, ValueError), (float("nan"), ValueError), (float("inf"), ValueError),
    (float("-inf"), ValueError), (np.float32(0), ValueError), (np.float64("nan"), ValueError),
    ("0.1", TypeError), (None, TypeError), (True, TypeError), (1 + 0j, TypeError),
    ([0.1], TypeError),
]


@pytest.mark.parametrize("method", ["train_step", "fit"])
@pytest.mark.parametrize("lr,exc", BAD_LR, ids=[repr(v) for v, _ in BAD_LR])
def test_bad_lr(method, lr, exc):
    net = make_net("mse")
    X, Y = good_data("mse")
    rejects(net, exc, r"^lr:", method, X, Y, lr=lr)


@pytest.mark.parametrize("method", ["train_step", "fit"])
@pytest.mark.parametrize("lr", [1, np.float32(0.01), np.float64(0.01), 5e-324])
def test_good_lr_forms(method, lr):
    net = make_net("mse")
    X, Y = good_data("mse")
    call(net, method, X, Y, lr=lr)
    assert np.all(np.isfinite(net.params))


@pytest.mark.parametrize("method", ["train_step", "fit"])
def test_lr_huge_int(method):
    net = make_net("mse")
    X, Y = good_data("mse")
    rejects(net, (ValueError, TypeError), r"^lr:", method, X, Y, lr=10**400)


@pytest.mark.parametrize("value,exc", [
    (0, ValueError), (-1, ValueError), (2.0, TypeError), (1.5, TypeError), (True, TypeError),
    (None, TypeError), ("4", TypeError), (np.float64(2), TypeError),
])
@pytest.mark.parametrize("name", ["batch_size", "epochs"])
def test_bad_batch_size_and_epochs(name, value, exc):
    for loss in ("mse", "softmax_cross_entropy"):
        net = make_net(loss)
        X, Y = good_data(loss)
        rejects(net, exc, rf"^{name}:", "fit", X, Y, **{name: value})


def test_batch_size_larger_than_n_is_one_full_batch():
    a, b = make_net("mse"), make_net("mse")
    X, Y = good_data("mse")
    la = a.fit(X, Y, epochs=1, batch_size=10**6, lr=0.01, shuffle=False)
    lb = b.train_step(X, Y, lr=0.01)
    assert la == [lb]
    assert np.array_equal(a.params, b.params)


def test_batch_size_beyond_ssize_t():
    net = make_net("mse")
    X, Y = good_data("mse")
    snap = snapshot(net)
    try:
        net.fit(X, Y, epochs=1, batch_size=2**63, lr=0.01)
    except (ValueError, TypeError) as exc:
        assert str(exc).startswith("batch_size")
        assert_params_unchanged(net, snap)


def test_bad_fit_options_are_checked_before_data():
    # a bad option with bad data still names the option, and nothing moves
    net = make_net("mse")
    X, Y = good_data("mse")
    X[0, 0] = np.nan
    rejects(net, ValueError, r"^epochs:", "fit", X, Y, epochs=0)


# --------------------------------------------------------------------------------------
# divergence guard
# --------------------------------------------------------------------------------------
def _regression_blowup(dtype, seed=1):
    net = MLP([4, 8, 2], dtype=dtype, seed=seed)
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((16, 4))
    Y = 1e3 * rng.standard_normal((16, 2))
    return net, X, Y


@pytest.mark.parametrize("dtype", DTYPES)
def test_train_step_divergence_leaves_params_unchanged(dtype):
    net, X, Y = _regression_blowup(dtype)
    assert issubclass(DivergenceError, FloatingPointError)
    for step in range(20):
        snap = snapshot(net)
        try:
            loss = net.train_step(X, Y, lr=1e30)
        except DivergenceError as exc:
            assert isinstance(exc, FloatingPointError)
            assert_params_unchanged(net, snap)
            assert np.all(np.isfinite(net.params))
            assert step >= 1  # the first step from the initial weights is finite
            break
        assert np.isfinite(loss)
        assert not np.array_equal(net.params, snap)
    else:
        pytest.fail("lr=1e30 never diverged")
    # the guard fires again on retry, still without touching the parameters
    snap = snapshot(net)
    with pytest.raises(DivergenceError):
        net.train_step(X, Y, lr=1e30)
    with pytest.raises(DivergenceError):
        net.loss_and_grad(X, Y)
    assert_params_unchanged(net, snap)
    # and a normal lr can't fix it either (the loss itself is not finite)
    with pytest.raises(DivergenceError):
        net.train_step(X, Y, lr=1e-12)
    assert_params_unchanged(net, snap)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("lr", [1e30, 1e4])
def test_fit_divergence_reports_epoch_and_step_and_keeps_last_good(dtype, lr):
    net, X, Y = _regression_blowup(dtype)
    Y = Y / 100  # targets ~10: with lr=1e4 the blow-up comes in a later epoch
    twin = MLP([4, 8, 2], dtype=dtype, seed=1)
    assert np.array_equal(net.params, twin.params)
    bs = 4
    with pytest.raises(DivergenceError) as info:
        net.fit(X, Y, epochs=50, batch_size=bs, lr=lr, shuffle=False)
    m = re.search(r"epoch (\d+), step (\d+) of (\d+)", str(info.value))
    assert m, str(info.value)
    epoch, step, n_steps = map(int, m.groups())
    assert n_steps == 4 and 1 <= step <= n_steps and epoch >= 1
    assert np.all(np.isfinite(net.params))
    # replay the good steps (same batches, in order) on the twin with train_step
    good = (epoch - 1) * n_steps + (step - 1)
    for i in range(good):
        s = (i % n_steps) * bs
        twin.train_step(X[s:s + bs], Y[s:s + bs], lr=lr)
    assert np.array_equal(net.params, twin.params), "params are not those after the last good step"
    # the failing step diverges from exactly these parameters, and leaves them alone
    s = (step - 1) * bs
    snap = snapshot(twin)
    with pytest.raises(DivergenceError):
        twin.train_step(X[s:s + bs], Y[s:s + bs], lr=lr)
    assert_params_unchanged(twin, snap)


def test_fit_divergence_late_epoch_is_reported():
    net, X, Y = _regression_blowup(np.float64)
    with pytest.raises(DivergenceError, match=r"epoch [2-9]\d*, step \d+ of 4"):
        net.fit(X, Y / 100, epochs=50, batch_size=4, lr=1e4, shuffle=False)
    assert np.all(np.isfinite(net.params))


@pytest.mark.parametrize("dtype", DTYPES)
def test_fit_divergence_shuffled(dtype):
    net, X, Y = _regression_blowup(dtype)
    with pytest.raises(DivergenceError, match=r"epoch \d+, step \d+ of 3"):
        net.fit(X, Y, epochs=20, batch_size=6, lr=1e30, shuffle=True, seed=5)
    assert np.all(np.isfinite(net.params))


def test_update_overflow_is_caught():
    net, X, Y = _regression_blowup(np.float32)
    snap = snapshot(net)
    try:
        net.train_step(X, Y, lr=1e38)
    except DivergenceError:
        assert_params_unchanged(net, snap)
    else:
        assert np.all(np.isfinite(net.params))


# --------------------------------------------------------------------------------------
# array-likes and layouts that must be accepted, with exactly the contiguous result
# --------------------------------------------------------------------------------------
def _variants(X):
    """X (float64, small integers) in other forms that hold the same values."""
    wide = np.zeros((X.shape[0], 2 * X.shape[1]))
    wide[:, ::2] = X
    tall = np.zeros((2 * X.shape[0], X.shape[1]))
    tall[::2] = X
    ro = X.copy()
    ro.flags.writeable = False
    return {
        "list": X.tolist(),
        "tuple": tuple(map(tuple, X.tolist())),
        "int64": X.astype(np.int64),
        "int8": X.astype(np.int8),
        "float32": X.astype(np.float32),
        "fortran": np.asfortranarray(X),
        "cols::2": wide[:, ::2],
        "rows::2": tall[::2],
        "transposed": np.ascontiguousarray(X.T).T,
        "readonly": ro,
        "bigendian": X.astype(">f8"),
    }


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("loss", ["mse", "softmax_cross_entropy"])
@pytest.mark.parametrize("kind", list(_variants(np.zeros((1, 1)))))
def test_array_likes_give_same_results(dtype, loss, kind):
    rng = np.random.default_rng(12)
    X = rng.integers(-3, 4, (7, N_IN)).astype(np.float64)  # exact in every dtype used
    _, Y = good_data(loss, n=7)
    net = make_net(loss, dtype)
    Xv = _variants(X)[kind]
    base_fwd = net.forward(X.astype(dtype))
    base_loss, base_grads = net.loss_and_grad(X.astype(dtype), Y)
    assert np.array_equal(net.forward(Xv), base_fwd)
    assert net.loss(Xv, Y) == base_loss
    lv, gv = net.loss_and_grad(Xv, Y)
    assert lv == base_loss
    for (a, b), (c, d) in zip(gv, base_grads):
        assert np.array_equal(a, c) and np.array_equal(b, d)
    if loss == "mse":
        assert np.array_equal(net.predict(Xv), base_fwd)
    else:
        assert np.array_equal(net.predict(Xv), np.argmax(base_fwd, axis=1))
        assert np.array_equal(net.predict_proba(Xv), net.predict_proba(X.astype(dtype)))
    # a training step from an equivalent input lands on the same parameters
    twin = make_net(loss, dtype)
    net.train_step(Xv, Y, lr=0.05)
    twin.train_step(X.astype(dtype), Y, lr=0.05)
    assert np.array_equal(net.params, twin.params)


@pytest.mark.parametrize("dtype", DTYPES)
def test_target_array_likes_give_same_results(dtype):
    X, Y = good_data("mse")
    net = make_net("mse", dtype)
    base = net.loss(X, Y)
    for Yv in (Y.tolist(), np.asfortranarray(Y), Y.astype(np.float32) if dtype == np.float32
               else Y, np.repeat(Y, 2, axis=1)[:, ::2]):
        assert net.loss(X, Yv) == base
    net = make_net("softmax_cross_entropy", dtype)
    X, lab = good_data("softmax_cross_entropy")
    base = net.loss(X, lab)
    for Yv in (lab.tolist(), lab.astype(np.int32), lab.astype(np.uint8),
               lab.astype(np.float64), np.repeat(lab, 2)[::2]):
        assert net.loss(X, Yv) == base
    onehot = np.eye(N_OUT)[lab]
    assert net.loss(X, onehot) == pytest.approx(base, rel=1e-6 if dtype == np.float32 else 1e-13)


@pytest.mark.parametrize("loss", ["mse", "softmax_cross_entropy"])
def test_model_matches_reference(loss):
    """The contiguous float64 baseline used above is itself the seed math."""
    net = make_net(loss, np.float64)
    X, Y = good_data(loss, n=9)
    Ws = [w.copy() for w in net.weights]
    bs = [b.copy() for b in net.biases]
    want_loss, want_grads = ref.loss_and_grad(Ws, bs, X, Y, loss)
    got_loss, got_grads = net.loss_and_grad(X, Y)
    assert got_loss == pytest.approx(want_loss, rel=1e-12)
    for (gw, gb), (ww, wb) in zip(got_grads, want_grads):
        np.testing.assert_allclose(gw, ww, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(gb, wb, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(net.forward(X), ref.forward(Ws, bs, X), rtol=1e-12, atol=1e-12)


@pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")
def test_ndarray_subclass_X():
    net = make_net("mse")
    X, _ = good_data("mse")
    assert np.array_equal(net.forward(np.asmatrix(X)), net.forward(X))


# --------------------------------------------------------------------------------------
# fit switching between label and probability targets (gather-buffer sizing)
# --------------------------------------------------------------------------------------
_GATHER_SCRIPT = textwrap.dedent("""
    import numpy as np, fastmlp
    rng = np.random.default_rng(0)
    n = 4000
    X = rng.standard_normal((n, 3))
    labels = rng.integers(0, 5, n)
    P = np.full((n, 5), 0.2)
    net = fastmlp.MLP([3, 5], loss="softmax_cross_entropy", dtype=np.float64, seed=0)
    net.fit(X[:1], P[:1], epochs=1, batch_size=1)   # gather buffers for 1 row (X and Y)
    net.fit(X, labels, epochs=1, batch_size=n)      # regrows X and labels buffers only
    net.fit(X, P, epochs=1, batch_size=n)           # writes n rows of Y into a 1-row buffer
    twin = fastmlp.MLP([3, 5], loss="softmax_cross_entropy", dtype=np.float64, seed=0)
    twin.fit(X[:1], P[:1], epochs=1, batch_size=1)
    twin.fit(X, labels, epochs=1, batch_size=n)
    fresh = fastmlp.MLP([3, 5], loss="softmax_cross_entropy", dtype=np.float64, seed=0)
    fresh.params[...] = twin.params
    fresh.fit(X, P, epochs=1, batch_size=n)
    assert np.array_equal(net.params, fresh.params)
    import gc; gc.collect()
    junk = [np.ones(1000) for _ in range(1000)]
    del net, twin, fresh, junk; gc.collect()
    print("OK")
""")


def test_fit_switching_target_kinds_does_not_corrupt_memory():
    proc = subprocess.run([sys.executable, "-P", "-c", _GATHER_SCRIPT], capture_output=True,
                          text=True, timeout=60, cwd=_HERE)
    assert proc.returncode == 0 and proc.stdout.strip() == "OK", (proc.returncode, proc.stderr[-500:])
