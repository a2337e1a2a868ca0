"""The vectorised math of fastmlp/_vecmath.h (exp, expm1, log1p on [0, 1], tanh, σ,
softplus), at every instruction-set level this CPU has (SSE2, AVX2+FMA, AVX-512),
against an independent reference: numpy's long-double functions (x86's 80-bit format,
64-bit significand: 2^−11 of a float64 ulp, far below the errors measured).

Error is |computed − reference| in units of the spacing of the correctly rounded
result (np.spacing), over the whole range: random bit patterns (every exponent,
subnormals included), dense samples where the functions are not saturated, and the edge
cases.  Measured maxima (2·10⁶ points per function and level, two seeds, all three
levels):

    function   float64  float32
    exp        0.98     1.01
    expm1      1.86     1.67
    log1p01    1.77     1.43
    tanh       2.49     1.50
    sigmoid    2.33     1.44
    softplus   1.98     1.68

The bounds asserted (BOUND) leave ~0.5 ulp of margin over those maxima for the other
samples drawn here; an error in a coefficient, the range reduction or the scaling would
be off by orders of magnitude.  The piecewise-linear activations and the derivatives
written through A must equal numpy's expressions bit for bit at every level (their
loops allow no fused multiply-add, so the roundings are numpy's, and scikit-learn's).
"""
from __future__ import annotations

import numpy as np
import pytest
from scipy.special import erfc, expit

from fastmlp import _core, kernels

L = np.longdouble
pytestmark = pytest.mark.skipif(np.finfo(L).nmant < 63,
                                reason="needs an extended-precision long double as reference")

REFERENCE = {
    "exp": np.exp,
    "expm1": np.expm1,
    "log1p01": np.log1p,
    "tanh": np.tanh,
    "sigmoid": lambda x: 1 / (1 + np.exp(-x)),
    "softplus": lambda x: np.logaddexp(L(0), x),
}
BOUND = {  # max ulp: (float32, float64)
    "exp": (1.5, 1.5), "expm1": (2.0, 2.5), "log1p01": (2.0, 2.5),
    "tanh": (2.0, 3.0), "sigmoid": (2.0, 3.0), "softplus": (2.0, 2.5),
}
SAME_LEVEL = ("sse2", "avx2", "avx512")


def _levels():
    best = _core.k_vecmath_level()
    try:
        return [lv for lv in _core.VECMATH_LEVELS if _core.k_vecmath_level(lv) == lv]
    finally:
        _core.k_vecmath_level(best)


LEVELS = _levels()


@pytest.fixture(params=LEVELS)
def level(request):
    best = _core.k_vecmath_level()
    assert _core.k_vecmath_level(request.param) == request.param
    yield request.param
    _core.k_vecmath_level(best)


def _points(name, dtype, rng, n=200_000):
    fi = np.finfo(dtype)
    if name == "log1p01":   # its domain
        low = np.log10(fi.smallest_subnormal)
        x = np.concatenate([rng.random(n // 2), 10.0 ** rng.uniform(low, 0, n // 2),
                            [0.0, 1.0, np.sqrt(2) - 1, fi.smallest_subnormal, fi.tiny]])
        return x.astype(dtype)
    ints = np.uint32 if dtype == np.float32 else np.uint64
    raw = rng.integers(0, np.iinfo(ints).max, n // 2, dtype=ints, endpoint=True).view(dtype)
    raw = raw[np.isfinite(raw)]
    reach = 110.0 if dtype == np.float32 else 750.0     # past overflow and underflow
    edges = [0.0, fi.tiny, fi.smallest_subnormal, fi.max, 88.72, 88.73, 103.9, 104.0,
             709.78, 709.79, 745.1, 745.2, 10.0, 18.0, 20.0, 40.0, 0.3465, 0.3466]
    edges = edges + [-e for e in edges]
    return np.concatenate([raw, rng.uniform(-reach, reach, n // 4),
                           rng.uniform(-3, 3, n // 4), edges]).astype(dtype)


def _ulp_errors(got, ref, dtype):
    with np.errstate(over="ignore", invalid="ignore"):
        rounded = ref.astype(dtype)
        err = np.abs(got.astype(L) - ref) / np.spacing(np.abs(rounded)).astype(L)
    err[(got == rounded) | (np.isnan(got) & np.isnan(rounded))] = 0
    err[np.isnan(err)] = np.inf
    return err


def _apply(name, x):
    y = x.copy()
    _core.k_vecmath(name, y)
    return y


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", list(REFERENCE))
def test_within_the_stated_ulps_over_the_whole_range(name, dtype, level):
    x = _points(name, dtype, np.random.default_rng(7))
    with np.errstate(over="ignore", invalid="ignore"):
        ref = REFERENCE[name](x.astype(L))
    err = _ulp_errors(_apply(name, x), ref, dtype)
    worst = int(np.argmax(err))
    bound = BOUND[name][dtype == np.float64]
    assert err[worst] <= bound, f"{name}({x[worst]!r}): {err[worst]:.2f} ulp > {bound}"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_special_values(dtype, level):
    inf, nan = np.inf, np.nan
    fi = np.finfo(dtype)
    x = np.array([-inf, inf, nan, 0.0, -0.0], dtype)

    def same(got, want):
        np.testing.assert_array_equal(got, np.array(want, dtype))
        signed = ~np.isnan(got)   # a NaN's sign means nothing
        np.testing.assert_array_equal(np.signbit(got[signed]),
                                      np.signbit(np.array(want, dtype)[signed]))

    same(_apply("exp", x), [0, inf, nan, 1, 1])
    same(_apply("expm1", x), [-1, inf, nan, 0, -0.0])
    same(_apply("tanh", x), [-1, 1, nan, 0, -0.0])
    same(_apply("sigmoid", x), [0, 1, nan, 0.5, 0.5])
    same(_apply("softplus", x), [0, inf, nan, np.log(2), np.log(2)])
    # tiny arguments: tanh x = x and expm1 x = x exactly, subnormals included
    tiny = np.array([fi.smallest_subnormal, -fi.tiny, 1e-30], dtype)
    same(_apply("tanh", tiny), tiny)
    same(_apply("expm1", tiny), tiny)
    # exp overflows to inf and underflows through the subnormals to 0 where it must
    big = 709.79 if dtype == np.float64 else 88.73
    e = _apply("exp", np.array([big, -big, -1e5], dtype))
    assert e[0] == inf and 0 < e[1] < fi.tiny * 2 ** 10 and e[2] == 0
    # σ keeps relative accuracy deep in the left tail (1/(1 + e^−x) would give 0)
    z = np.array([-700.0 if dtype == np.float64 else -80.0], dtype)   # σ(z) still normal
    np.testing.assert_allclose(_apply("sigmoid", z), np.exp(z.astype(L)), rtol=4 * fi.eps)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind", ["relu", "leaky_relu", "elu", "tanh", "logistic"])
def test_linear_pieces_and_derivatives_through_A_are_numpys_bit_for_bit(kind, dtype, level):
    rng = np.random.default_rng(1)
    Z = (rng.standard_normal((37, 29)) * 3).astype(dtype)
    Z[0, :4] = [0.0, -0.0, np.nan, np.inf]
    D = rng.standard_normal(Z.shape).astype(dtype)
    A = Z.copy() if kind in ("relu", "leaky_relu") else expit(Z) if kind == "logistic" else \
        np.tanh(Z) if kind == "tanh" else np.where(Z > 0, Z, np.expm1(Z))
    s = dtype(0.01)
    want_A = {"relu": np.where(Z < 0, dtype(0), Z), "leaky_relu": np.where(Z > 0, Z, s * Z)}
    want_D = {"relu": np.where(A > 0, D, dtype(0)), "leaky_relu": np.where(A > 0, D, s * D),
              "elu": np.where(A > 0, D, D * (A + dtype(1))), "tanh": D * (1 - A * A),
              "logistic": D * A * (1 - A)}
    if kind in want_A:
        np.testing.assert_array_equal(kernels.activation_forward(kind, Z), want_A[kind])
    np.testing.assert_array_equal(kernels.activation_backward(kind, A, D), want_D[kind])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind", ["logistic", "tanh", "elu", "silu", "softplus"])
def test_activation_kernels_at_every_level(kind, dtype, level):
    """The activation kernels built on the vectorised functions, against their
    definitions in float64 scipy/numpy: within a few ulps of the dtype (4 eps relative:
    the functions' bounds above plus one product), the derivatives within 8 eps."""
    rng = np.random.default_rng(2)
    Z = (rng.standard_normal((50, 40)) * 4).astype(dtype)
    Z64 = Z.astype(np.float64)
    sig = expit(Z64)
    g = {"logistic": sig, "tanh": np.tanh(Z64), "elu": np.where(Z64 > 0, Z64, np.expm1(Z64)),
         "silu": Z64 * sig, "softplus": np.logaddexp(0, Z64)}[kind]
    dg = {"logistic": sig * (1 - sig), "tanh": 1 - np.tanh(Z64) ** 2,
          "elu": np.where(Z64 > 0, 1.0, np.exp(np.minimum(Z64, 0))),
          "silu": sig * (1 + Z64 * (1 - sig)), "softplus": sig}[kind]
    eps = np.finfo(dtype).eps
    A = kernels.activation_forward(kind, Z)
    np.testing.assert_allclose(A, g, rtol=4 * eps, atol=4 * eps * np.finfo(dtype).tiny)
    got = kernels.activation_backward(kind, A, np.ones_like(Z), Z=Z)
    # through A: the derivative inherits A's rounding, amplified by at most |z|·g'/g
    # (tanh near 0 … 1 − A² loses nothing; σ's tail A·(1 − A) keeps relative accuracy)
    assert np.all(np.abs(got - dg) <= 8 * eps * ((1 + np.abs(Z64)) * np.abs(dg) + 1))


def test_level_names_and_refusal():
    assert _core.k_vecmath_level() in _core.VECMATH_LEVELS
    assert LEVELS[0] == "sse2"
    with pytest.raises(ValueError, match="^level:"):
        _core.k_vecmath_level("avx9")
    with pytest.raises(ValueError, match="^name:"):
        _core.k_vecmath("cosh", np.zeros(3))


def test_float32_gelu_within_an_ulp(level):
    """float32 GELU runs in double inside (a Chebyshev fit of erfc, 1.8e-10 relative, and
    the vectorised exp), rounded once: measured ≤ 0.503 ulp for z·Φ(z) over 2.5·10⁶
    points (random bit patterns and |z| ≤ 16); bound 1 ulp.  Its derivative
    Φ(z) + z·φ(z) crosses 0 near z = −0.75, so its error is measured in ulps of the
    larger term (measured ≤ 1.0: the final rounding of a value up to twice that term);
    bound 1.5.  Reference: the definitions in float64 scipy (≈ 2^−29 of a float ulp)."""
    rng = np.random.default_rng(5)
    raw = rng.integers(0, 2 ** 32 - 1, 200_000, dtype=np.uint32).view(np.float32)
    z = np.concatenate([raw[np.isfinite(raw)], rng.uniform(-16, 16, 200_000),
                        [0.0, -0.0, 14.8, -14.8, -14.9, 1e-30, -1e-30]]).astype(np.float32)
    z64 = z.astype(np.float64)
    with np.errstate(all="ignore"):
        phi = 0.5 * erfc(-z64 / np.sqrt(2))
        zdens = z64 * np.exp(-0.5 * z64 * z64) / np.sqrt(2 * np.pi)
    A = kernels.activation_forward("gelu", z[None, :])[0]
    G = kernels.activation_backward("gelu", A[None, :], np.ones((1, z.size), np.float32),
                                    Z=z[None, :])[0]
    for got, want, scale, bound in ((A, z64 * phi, z64 * phi, 1.0),
                                    (G, phi + zdens, np.maximum(np.abs(phi), np.abs(zdens)), 1.5)):
        with np.errstate(all="ignore"):
            err = np.abs(got - want) / np.spacing(np.abs(scale.astype(np.float32))).astype(np.float64)
        err[got == want.astype(np.float32)] = 0
        worst = int(np.argmax(err))
        assert err[worst] <= bound, f"z={z[worst]!r}: {err[worst]:.2f} ulp"
    assert np.isnan(kernels.activation_forward("gelu", np.array([[np.nan]], np.float32))).all()


def test_float64_gelu_within_its_bound(level):
    """float64 GELU: Φ(−x) = (t·series(t)/√(2π))·e^(−x²/2), t = 1/(1 + x/4), the series a
    degree-28 Chebyshev interpolant of the Mills ratio, x² split exactly.  Against
    mpmath's ncdf/npdf (40 digits) on z in [−39, 10] and N(0, 2²): measured ≤ 7.5 ulp for
    z·Φ(z) (6.7 where |z| < 6), and ≤ 13.5 ulp of the larger term for Φ(z) + z·φ(z)
    (results a few hundred subnormal ulps from 0 near z = −38; 6.4 where |z| < 6).
    libm's erfc(−z/√2), used before, measured 1,500 and 480 (54 and 16 where |z| < 6):
    the rounding of z/√2 is amplified by 2x² in erfc.  Bounds 9 and 16."""
    mp = pytest.importorskip("mpmath")
    mp.mp.dps = 40
    rng = np.random.default_rng(11)
    z = np.concatenate([rng.uniform(-39, 10, 1500), rng.standard_normal(1500) * 2,
                        [0.0, -0.0, -38.0, -38.7, 1e-300, -1e-300]])
    A = kernels.activation_forward("gelu", z[None, :])[0]
    G = kernels.activation_backward("gelu", A[None, :], np.ones((1, z.size)), Z=z[None, :])[0]
    for zi, a, g in zip(z, A, G):
        Z = mp.mpf(float(zi))
        phi, zpdf = mp.ncdf(Z), Z * mp.npdf(Z)
        fwd_ulp = np.spacing(abs(float(Z * phi))) or np.finfo(float).smallest_subnormal
        bwd_ulp = np.spacing(max(abs(float(phi)), abs(float(zpdf)))) or np.finfo(float).smallest_subnormal
        assert abs(mp.mpf(float(a)) - Z * phi) <= 9 * fwd_ulp, zi
        assert abs(mp.mpf(float(g)) - (phi + zpdf)) <= 16 * bwd_ulp, zi
    assert np.isnan(kernels.activation_forward("gelu", np.array([[np.nan]]))).all()


# ======================================================================================
# The optimizers' passes (fastmlp/_optim.h), compiled per level like the loops above:
# the update must give the rules' bits at every level — the rules transcribed in numpy
# in the model dtype, each operation rounded once (no fused multiply-add anywhere), are
# the oracle, so the comparison is exact — and the finite pre-check must refuse, at
# every level and wherever in a vector it falls, an update that would store a
# non-finite value, leaving parameters and state as they were.
# ======================================================================================
UPDATE_N = 1000 + 37      # several full AVX-512 vectors and a ragged tail


def _numpy_rules(name, theta, g, s1, s2, lr, t, mu=0.9, b1=0.9, b2=0.999, eps=1e-8):
    """(θ, s1, s2) after one step of `name`, in theta's dtype, in numpy."""
    T = theta.dtype.type
    if name == "sgd":
        return theta - T(lr) * g, s1, s2
    if name in ("momentum", "nesterov"):
        v = T(mu) * s1 - T(lr) * g
        new = theta + (T(mu) * v - T(lr) * g) if name == "nesterov" else theta + v
        return new, v, s2
    lr_t = T(lr * np.sqrt(1 - b2 ** t) / (1 - b1 ** t))
    m = T(b1) * s1 + T(1 - b1) * g
    v = T(b2) * s2 + T(1 - b2) * (g * g)
    return theta + (-lr_t * m) / (np.sqrt(v) + T(eps)), m, v


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", ["sgd", "momentum", "nesterov", "adam"])
def test_optimizer_update_is_the_rules_bit_for_bit(level, dtype, name):
    rng = np.random.default_rng(sum(map(ord, name)))
    theta, g, s1 = (rng.standard_normal(UPDATE_N).astype(dtype) for _ in range(3))
    s2 = (rng.standard_normal(UPDATE_N) ** 2).astype(dtype)
    s2[::7] = 0.0                       # √v = 0: ε alone in the denominator
    lr, t = 0.37, 3
    want = _numpy_rules(name, theta, g, s1, s2, lr, t)
    th, a, b = theta.copy(), s1.copy(), s2.copy()
    if name == "sgd":
        kernels.sgd_update(th, g, lr)
    elif name == "adam":
        kernels.adam_update(th, g, a, b, lr, 0.9, 0.999, 1e-8, t)
    else:
        kernels.momentum_update(th, g, a, lr, 0.9, nesterov=name == "nesterov")
    for got, w in zip((th, a, b), want):
        assert got.dtype == dtype and np.array_equal(got, w)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", ["momentum", "nesterov", "adam"])
@pytest.mark.parametrize("where", [0, 13, 16, 31, 63])
def test_update_precheck_refuses_a_non_finite_value_anywhere(level, dtype, name, where):
    # Input column 0 is all zeros, so row 0 of W(1) reaches no output and gets a zero
    # gradient: a huge weight there leaves the loss finite, and the update pass alone
    # can overflow — θ + v past the largest float (momentum), or m/ε (Adam).
    from fastmlp import MLP, DivergenceError
    width = 64
    net = MLP([3, width, 2], dtype=dtype, seed=0, optimizer=name, l2=0.0)
    X = np.random.default_rng(1).standard_normal((8, 3)).astype(dtype)
    X[:, 0] = 0
    Y = np.zeros((8, 2), dtype)
    big = np.finfo(dtype).max
    net.weights[0][0, where] = big / 2
    state = net.optimizer_state
    state[where] = big          # velocity, or Adam's m of that weight (v stays 0)
    params, snap = net.params.copy(), state.copy()
    with pytest.raises(DivergenceError):
        net.train_step(X, Y, lr=1e-3)
    assert np.array_equal(net.params, params) and np.array_equal(state, snap)
    # one notch less and the same step goes through, at every level
    state[where] = big / 8 if name != "adam" else 0.0
    net.train_step(X, Y, lr=1e-3)
    assert np.all(np.isfinite(net.params)) and np.all(np.isfinite(state))


# ======================================================================================
# The guards of every step (fastmlp/_checks.h), per level: all values finite, and the
# largest magnitude, +inf if a NaN is present (a NaN must never pass a bound test).
# numpy's isfinite and max(abs) are the oracle; every position of the special value in
# a 70-value array covers the vector bodies and tails of each level.
# ======================================================================================
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("special", [np.inf, -np.inf, np.nan, "max", "subnormal"])
def test_step_guards_at_every_position(level, dtype, special):
    rng = np.random.default_rng(5)
    base = rng.standard_normal(70).astype(dtype)
    fi = np.finfo(dtype)
    value = {"max": -fi.max, "subnormal": fi.smallest_subnormal}.get(special, special)
    for pos in range(70):
        x = base.copy()
        x[pos] = value
        assert _core.k_all_finite(x) == bool(np.isfinite(x).all())
        want = np.inf if np.isnan(x).any() else float(np.abs(x).max())
        assert _core.k_max_abs(x) == want
    assert _core.k_max_abs(np.zeros(0, dtype)) == 0.0
    assert _core.k_max_abs(-np.zeros(5, dtype)) == 0.0
