/* Vectorisable exp, expm1, log1p and the activations built on them, for float and double.
 *
 * Why: a scalar libm call per element made tanh/logistic layers the bottleneck of a
 * training step.  Every element function below is branch-free straight-line arithmetic
 * (selects, integer bit operations, Horner polynomials, no calls), so the array loops
 * at the end auto-vectorise; each loop is compiled for three instruction sets (baseline
 * SSE2, AVX2+FMA, AVX-512) and the best one the CPU has is chosen once, when the module
 * loads (fm_vec_init).
 *
 * Method, shared by exp and expm1: x = n·ln2 + r with n = round(x/ln2) (by adding and
 * subtracting 1.5·2^52 resp. 1.5·2^23, which rounds to an integer and leaves n in the low
 * bits), r = x − n·ln2_hi − n·ln2_lo (Cody & Waite: ln2_hi has few enough significant
 * bits that n·ln2_hi is exact), |r| ≤ ln2/2; e^r or e^r − 1 by its Taylor polynomial
 * (degree 13 for double, 7 for float: truncation < 2^−56 resp. 2^−27 relative), then a
 * scale by 2^n written into the exponent field (in two factors, so that every 2^n from
 * the subnormal range to overflow is reached with a single rounding).  Inputs are
 * clamped first so that out-of-range values saturate (exp: +inf / +0, expm1: +inf / −1)
 * and NaN passes every clamp unchanged and propagates.
 *
 * Accuracy, max error over the whole range (subnormals, ±inf and NaN included) against
 * long-double references, measured at every instruction-set level (tests/test_vecmath.py
 * keeps the bounds and lists each function's): exp ≤ 1.0 ulp; expm1, log1p, softplus
 * ≤ 2.0 ulp; tanh and σ ≤ 1.5 ulp in float32 and ≤ 2.5 ulp in float64; GELU z·Φ(z)
 * ≤ 0.51 ulp in float32 (computed in double) and ≤ 7.5 ulp in float64.
 */
#ifndef FASTMLP_VECMATH_H
#define FASTMLP_VECMATH_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* GCC keeps a select of floating-point values as a branch (and so the loop scalar)
 * under its default -ftrapping-math, for fear of raising a flag the branch would have
 * skipped; nothing here reads the floating-point flags, so turn that off for this
 * header alone (clang's default already is). */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC push_options
#pragma GCC optimize("no-trapping-math")
#endif
/* clang contracts a·b + c within an expression by default; the simple loops below must
 * not (see FM_NO_CONTRACT), and the functions' bounds hold without it too (they are
 * measured on the SSE2 level, which has no FMA), so turn it off for the whole header. */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

#if defined(__GNUC__) || defined(__clang__)
#define FM_INLINE static inline __attribute__((always_inline))
#else
#define FM_INLINE static inline
#endif

/* ------------------------------------------------------------------ bit casts */

FM_INLINE uint64_t fm_bits_d(double x) { uint64_t u; memcpy(&u, &x, 8); return u; }
FM_INLINE double fm_from_bits_d(uint64_t u) { double x; memcpy(&x, &u, 8); return x; }
FM_INLINE uint32_t fm_bits_f(float x) { uint32_t u; memcpy(&u, &x, 4); return u; }
FM_INLINE float fm_from_bits_f(uint32_t u) { float x; memcpy(&x, &u, 4); return x; }

/* x clamped to [lo, hi]; NaN compares false both times and passes through. */
FM_INLINE double fm_clamp_d(double x, double lo, double hi) {
    x = x < lo ? lo : x;
    return x > hi ? hi : x;
}
FM_INLINE float fm_clamp_f(float x, float lo, float hi) {
    x = x < lo ? lo : x;
    return x > hi ? hi : x;
}

/* |x|, and |m| with the sign of s: sign-bit operations (the builtins are no calls). */
#if defined(__GNUC__) || defined(__clang__)
FM_INLINE double fm_abs_d(double x) { return __builtin_fabs(x); }
FM_INLINE float fm_abs_f(float x) { return __builtin_fabsf(x); }
FM_INLINE double fm_with_sign_d(double m, double s) { return __builtin_copysign(m, s); }
FM_INLINE float fm_with_sign_f(float m, float s) { return __builtin_copysignf(m, s); }
#else
FM_INLINE double fm_abs_d(double x) { return fm_from_bits_d(fm_bits_d(x) & 0x7fffffffffffffffULL); }
FM_INLINE float fm_abs_f(float x) { return fm_from_bits_f(fm_bits_f(x) & 0x7fffffffU); }
FM_INLINE double fm_with_sign_d(double m, double s) {
    return fm_from_bits_d((fm_bits_d(m) & 0x7fffffffffffffffULL) | (fm_bits_d(s) & 0x8000000000000000ULL));
}
FM_INLINE float fm_with_sign_f(float m, float s) {
    return fm_from_bits_f((fm_bits_f(m) & 0x7fffffffU) | (fm_bits_f(s) & 0x80000000U));
}
#endif

/* ------------------------------------------------------------------ constants */

#define FM_LOG2E_D 0x1.71547652b82fep+0      /* 1/ln 2 */
#define FM_LN2_HI_D 0x1.62e42ff000000p-1     /* ln 2 to 32 bits: n·hi exact for |n| < 2^21 */
#define FM_LN2_LO_D (-0x1.718432a1b0e26p-35) /* ln 2 − hi */
#define FM_LN2_D 0x1.62e42fefa39efp-1
#define FM_ROUND_D 0x1.8p52                  /* x + this − this = x rounded to an integer */
#define FM_LOG2E_F 0x1.715476p+0f
#define FM_LN2_HI_F 0x1.62e4p-1f             /* 15 bits: n·hi exact for |n| < 2^9 */
#define FM_LN2_LO_F 0x1.7f7d1cp-20f
#define FM_LN2_F 0x1.62e430p-1f
#define FM_ROUND_F 0x1.8p23f
#define FM_SQRT2_M1_D 0x1.a827999fcef32p-2   /* √2 − 1 */
#define FM_SQRT2_M1_F 0x1.a8279ap-2f
#define FM_INV_SQRT_2 0x1.6a09e667f3bcdp-1      /* 1/√2 */
#define FM_INV_SQRT_2PI 0x1.9884533d43651p-2    /* 1/√(2π) */

/* ------------------------------------------------------------------ range reduction */

/* r = x − n·ln 2 with n = round(x/ln 2), |r| ≤ ln2/2 (+ rounding); n returned as the
 * unsigned two's-complement integer (unsigned: wrap-around is defined, and the lane
 * operations that follow are the ones SSE2 has: add, subtract, logical shifts). */
FM_INLINE double fm_reduce_d(double x, uint64_t *n) {
    double t = x * FM_LOG2E_D + FM_ROUND_D;
    double k = t - FM_ROUND_D;
    *n = fm_bits_d(t) - fm_bits_d(FM_ROUND_D);
    return (x - k * FM_LN2_HI_D) - k * FM_LN2_LO_D;
}
FM_INLINE float fm_reduce_f(float x, uint32_t *n) {
    float t = x * FM_LOG2E_F + FM_ROUND_F;
    float k = t - FM_ROUND_F;
    *n = fm_bits_f(t) - fm_bits_f(FM_ROUND_F);
    return (x - k * FM_LN2_HI_F) - k * FM_LN2_LO_F;
}

/* 2^n as a double, for n in [−1022, 1023] (its biased exponent written directly). */
FM_INLINE double fm_pow2_d(uint64_t n) { return fm_from_bits_d((n + 1023) << 52); }
FM_INLINE float fm_pow2_f(uint32_t n) { return fm_from_bits_f((n + 127) << 23); }

/* p·2^n for n in [−1076, 1024] (float: [−151, 128]): two factors 2^h·2^(n−h), h = ⌊n/2⌋,
 * each a normal number, the product rounded once (to a subnormal, 0 or inf as due). */
FM_INLINE double fm_scale_d(double p, uint64_t n) {
    uint64_t h = ((n + 2048) >> 1) - 1024;
    return p * fm_pow2_d(h) * fm_pow2_d(n - h);
}
FM_INLINE float fm_scale_f(float p, uint32_t n) {
    uint32_t h = ((n + 256) >> 1) - 128;
    return p * fm_pow2_f(h) * fm_pow2_f(n - h);
}

/* e^r − 1 − r − r²/2 … by Taylor: the polynomial P with e^r − 1 = r + r²·P(r). */
FM_INLINE double fm_expm1_poly_d(double r) {
    double p = 1.0 / 6227020800.0;              /* 1/13! */
    p = p * r + 1.0 / 479001600.0;
    p = p * r + 1.0 / 39916800.0;
    p = p * r + 1.0 / 3628800.0;
    p = p * r + 1.0 / 362880.0;
    p = p * r + 1.0 / 40320.0;
    p = p * r + 1.0 / 5040.0;
    p = p * r + 1.0 / 720.0;
    p = p * r + 1.0 / 120.0;
    p = p * r + 1.0 / 24.0;
    p = p * r + 1.0 / 6.0;
    p = p * r + 0.5;
    return r + r * r * p;
}
FM_INLINE float fm_expm1_poly_f(float r) {
    float p = 1.0f / 5040.0f;                   /* 1/7! */
    p = p * r + 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    return r + r * r * p;
}

/* ------------------------------------------------------------------ exp, expm1 */

/* e^x.  x < −746 (float −104) gives +0, x > 710 (float 89) +inf, NaN stays NaN. */
FM_INLINE double fm_exp_d(double x) {
    uint64_t n;
    double r = fm_reduce_d(fm_clamp_d(x, -746.0, 710.0), &n);
    return fm_scale_d(1.0 + fm_expm1_poly_d(r), n);
}
FM_INLINE float fm_exp_f(float x) {
    uint32_t n;
    float r = fm_reduce_f(fm_clamp_f(x, -104.0f, 89.0f), &n);
    return fm_scale_f(1.0f + fm_expm1_poly_f(r), n);
}

/* e^x − 1 without the cancellation of exp(x) − 1 near 0: 2^n·(e^r − 1) + (2^n − 1),
 * written 2·(2^(n−1)·q + (2^(n−1) − ½)) so that 2^(n−1) stays finite up to overflow;
 * the inner subtraction is exact wherever the result is not already ±1-dominated.
 * x < −40 (float −18) gives −1 (e^x is below half an ulp of 1), x > 710 (89) +inf. */
FM_INLINE double fm_expm1_d(double x) {
    uint64_t n;
    double q = fm_expm1_poly_d(fm_reduce_d(fm_clamp_d(x, -40.0, 710.0), &n));
    double h = fm_pow2_d(n - 1);
    double y = 2.0 * (q * h + (h - 0.5));
    return fm_abs_d(x) < 0x1p-54 ? x : y;   /* x itself to rounding: keeps −0 and subnormals */
}
FM_INLINE float fm_expm1_f(float x) {
    uint32_t n;
    float q = fm_expm1_poly_f(fm_reduce_f(fm_clamp_f(x, -18.0f, 89.0f), &n));
    float h = fm_pow2_f(n - 1);
    float y = 2.0f * (q * h + (h - 0.5f));
    return fm_abs_f(x) < 0x1p-25f ? x : y;   /* x itself to rounding: keeps −0 and subnormals */
}

/* ------------------------------------------------------------------ log1p on [0, 1] */

/* log(1 + y) for y in [0, 1] (the range softplus needs; NaN propagates).  With
 * b = [1 + y > √2], 1 + y = 2^b·(1 + f) and f = y or (y − 1)/2, both exact, f in
 * [√2/2 − 1, √2 − 1]; log(1 + f) = 2·atanh(s), s = f/(2 + f), written
 * f − (f²/2 − s·(f²/2 + R(s²))) with R(z) = 2z/3 + 2z²/5 + … (Taylor of atanh; |s| ≤
 * 0.172), so that the rounding of s only touches a correction of size f²/2. */
FM_INLINE double fm_log1p01_d(double y) {
    int big = y > FM_SQRT2_M1_D;
    double f_big = (y - 1.0) * 0.5;   /* computed either way: a select, not a branch */
    double f = big ? f_big : y;
    double s = f / (2.0 + f), z = s * s, hf2 = 0.5 * f * f;
    double R = 2.0 / 23;
    R = R * z + 2.0 / 21;
    R = R * z + 2.0 / 19;
    R = R * z + 2.0 / 17;
    R = R * z + 2.0 / 15;
    R = R * z + 2.0 / 13;
    R = R * z + 2.0 / 11;
    R = R * z + 2.0 / 9;
    R = R * z + 2.0 / 7;
    R = R * z + 2.0 / 5;
    R = R * z + 2.0 / 3;
    R = R * z;
    double lf = f - (hf2 - s * (hf2 + R));
    double l_big = FM_LN2_HI_D + (lf + FM_LN2_LO_D);
    return big ? l_big : lf;
}
FM_INLINE float fm_log1p01_f(float y) {
    int big = y > FM_SQRT2_M1_F;
    float f_big = (y - 1.0f) * 0.5f;   /* computed either way: a select, not a branch */
    float f = big ? f_big : y;
    float s = f / (2.0f + f), z = s * s, hf2 = 0.5f * f * f;
    float R = 2.0f / 11;
    R = R * z + 2.0f / 9;
    R = R * z + 2.0f / 7;
    R = R * z + 2.0f / 5;
    R = R * z + 2.0f / 3;
    R = R * z;
    float lf = f - (hf2 - s * (hf2 + R));
    float l_big = FM_LN2_HI_F + (lf + FM_LN2_LO_F);
    return big ? l_big : lf;
}

/* ------------------------------------------------------------------ activations */

/* tanh x = u/(u + 2), u = e^(2|x|) − 1, sign restored; |x| ≥ 20 (float 10) is ±1 to
 * rounding, and clamping there keeps u finite.  tanh(−0) = −0. */
FM_INLINE double fm_tanh_d(double x) {
    double u = fm_expm1_d(2.0 * fm_clamp_d(fm_abs_d(x), 0.0, 20.0));
    return fm_with_sign_d(u / (u + 2.0), x);
}
/* float: below |x| = 0.625, where u/(u + 2) passes all of u's error on, the odd
 * polynomial x + x³·P(x²), P of degree 5 least-squares fitted for fastmlp to
 * (tanh x − x)/x³ against mpmath (truncation 0.01 ulp); above, u ≥ 2.49 and the
 * quotient damps u's error by 2/(u + 2) ≤ 0.45. */
FM_INLINE float fm_tanh_f(float x) {
    float a = fm_abs_f(x), w = x * x;
    float u = fm_expm1_f(2.0f * fm_clamp_f(a, 0.0f, 10.0f));
    float big = u / (u + 2.0f);
    float p = 0x1.2ceba646fb607p-9f;
    p = p * w - 0x1.11838c1f1c475p-7f;
    p = p * w + 0x1.64add58b2bf12p-6f;
    p = p * w - 0x1.ba0913760354bp-5f;
    p = p * w + 0x1.1110ea11aebe7p-3f;
    p = p * w - 0x1.5555553a9f200p-2f;
    float small = a + a * w * p;
    return fm_with_sign_f(a < 0.625f ? small : big, x);
}

/* σ(x) = 1/(1 + e^−x) as (x ≥ 0 ? 1 : e)/(1 + e), e = e^−|x| ≤ 1: never overflows, and
 * keeps full relative accuracy far into the left tail (σ(x) ≈ e^x). */
FM_INLINE double fm_sigmoid_d(double x) {
    double e = fm_exp_d(-fm_abs_d(x));
    return (x < 0 ? e : 1.0) / (1.0 + e);
}
/* float: the quotient in double, rounded once (1 + e would otherwise add its rounding). */
FM_INLINE double fm_sigmoid_fd(float x) {
    double e = fm_exp_f(-fm_abs_f(x));
    return (x < 0 ? e : 1.0) / (1.0 + e);
}
FM_INLINE float fm_sigmoid_f(float x) { return (float)fm_sigmoid_fd(x); }

/* log(1 + e^x) = max(x, 0) + log1p(e^−|x|): no overflow for any x; NaN stays NaN. */
FM_INLINE double fm_softplus_d(double x) {
    return (x > 0 ? x : 0.0) + fm_log1p01_d(fm_exp_d(-fm_abs_d(x)));
}
FM_INLINE float fm_softplus_f(float x) {
    return (x > 0 ? x : 0.0f) + fm_log1p01_f(fm_exp_f(-fm_abs_f(x)));
}

/* ------------------------------------------------------------------ GELU, float32 */

/* log(erfc(a)·e^(a²)/t) for a in [0, 10.5], t = 1/(1 + a/2): a Chebyshev series of
 * degree 12 in s = (2t − 1.16)/0.84 (t runs over [0.16, 1]), summed by Clenshaw's
 * recurrence; coefficients least-squares fitted for fastmlp at 300 Chebyshev nodes
 * against mpmath's erfc, max error 1.8·10^−10 (relative, in erfc): for float results
 * only, computed in double. */
static const double fm_erfc_cheb[13] = {
    -0x1.1c51b7b79e752p-1, 0x1.1bb7ae4080435p-1, 0x1.f69f0f161f458p-8,
    -0x1.a9aa53572e6e4p-8, -0x1.772e68961b390p-13, 0x1.89c9aaded5ae6p-13,
    -0x1.f00329ad09775p-20, -0x1.c9ea418c5f932p-18, 0x1.2ff354a7823ebp-21,
    0x1.fb965045e911dp-23, -0x1.92f35125461d4p-25, -0x1.7ccdaf359caa3p-28,
    0x1.77b3e4a06c26bp-29,
};
FM_INLINE double fm_erfc_series(double t) {
    double s = t * (2.0 / 0.84) - (1.16 / 0.84);
    double b1 = 0.0, b2 = 0.0, b0;
#pragma GCC unroll 32   /* fully: a loop left inside the element loop would keep it scalar */
    for (int j = 12; j > 0; j--) {
        b0 = 2.0 * s * b1 - b2 + fm_erfc_cheb[j];
        b2 = b1;
        b1 = b0;
    }
    return s * b1 - b2 + fm_erfc_cheb[0];
}

/* Φ(z) = ½·erfc(−z/√2) in double for a float z: erfc(x) = t·e^(−a² + series), a = |x|
 * (2 − that for x < 0); beyond a = 10.5 erfc is taken as 0 (z·Φ(z) is then below
 * float's smallest subnormal for every float z). */
FM_INLINE double fm_gelu_phi(double z) {
    double x = -z * FM_INV_SQRT_2;
    double a = fm_clamp_d(fm_abs_d(x), 0.0, 10.5);
    double t = 1.0 / (1.0 + 0.5 * a);
    double e = t * fm_exp_d(fm_erfc_series(t) - a * a);
    double erfc = (fm_abs_d(x) > 10.5 ? 0.0 : e);     /* NaN: false, e is NaN */
    erfc = x < 0 ? 2.0 - erfc : erfc;
    return 0.5 * erfc;
}

/* GELU z·Φ(z) and its derivative Φ(z) + z·φ(z), φ(z) = e^(−z²/2)/√(2π), for float32, in
 * double (z² of a float is exact in double), rounded once to float. */
#define FM_GELU_LOOPS(SUF, ATTR)                                                   \
    ATTR static inline void fmv_gelu_f32_##SUF(float *x, ptrdiff_t n) {                   \
        for (ptrdiff_t i = 0; i < n; i++) {                                        \
            double z = x[i];                                                       \
            x[i] = (float)(z * fm_gelu_phi(z));                                    \
        }                                                                          \
    }                                                                              \
    ATTR static inline void fmv_gelu_bwd_f32_##SUF(const float *zs, float *d, ptrdiff_t n) { \
        for (ptrdiff_t i = 0; i < n; i++) {                                        \
            double z = zs[i];                                                      \
            double g = fm_gelu_phi(z) + z * FM_INV_SQRT_2PI * fm_exp_d(-0.5 * z * z); \
            d[i] = (float)(d[i] * g);                                              \
        }                                                                          \
    }

/* ------------------------------------------------------------------ GELU, float64 */

/* Φ(−x)/(φ(x)·t) for x in [0, 38.5], t = 1/(1 + x/4) (a Mills ratio over t, smooth and
 * near 1): a Chebyshev series of degree 28 in s = (2t − 1 − t_min)/(1 − t_min), t_min =
 * 1/10.625, summed by Clenshaw's recurrence.  Coefficients: the exact interpolant at 29
 * Chebyshev nodes, computed for fastmlp in 50-digit mpmath and rounded to double; the
 * sum in double is within 2.5 ulp of the ratio. */
static const double fm_mills_cheb[29] = {
    0x1.45127cebc4f53p-1, 0x1.dae08d63a9e7bp-2, 0x1.034ef069d878bp-3,
    0x1.989658621e011p-6, 0x1.92ac4d06e870cp-9, 0x1.5bc7482f5bf5fp-14,
    -0x1.6e0b7951a1da5p-15, -0x1.728b54df77a36p-18, 0x1.3ac118ceef640p-21,
    0x1.50d9dd301b1bdp-23, -0x1.78335bf53ec50p-27, -0x1.2b4b5ecf0a264p-28,
    0x1.7f9c183b13316p-32, 0x1.1124f8cf50fb4p-33, -0x1.118e754dfa0a2p-36,
    -0x1.d870b1442a8d6p-39, 0x1.9ff8613892684p-41, 0x1.2c92f8dc6cf17p-44,
    -0x1.270f48f44b5b1p-45, 0x1.1859119c0e95ap-51, 0x1.638952d804619p-50,
    -0x1.6881a2b88f8d5p-53, -0x1.296955a4f0833p-55, 0x1.8bdd9abadfd86p-57,
    -0x1.186ffa4538331p-64, -0x1.1309d0efa0d98p-61, 0x1.5773069f2dc2cp-64,
    0x1.7bf1c024e13b3p-67, -0x1.8b1f6362c7130p-68,
};
FM_INLINE double fm_mills_series(double t) {
    double s = t * 0x1.1a98ef606a63cp+1 - 0x1.3531dec0d4c78p+0;
    double b1 = 0.0, b2 = 0.0, b0;
#pragma GCC unroll 32   /* fully: a loop left inside the element loop would keep it scalar */
    for (int j = 28; j > 0; j--) {
        b0 = 2.0 * s * b1 - b2 + fm_mills_cheb[j];
        b2 = b1;
        b1 = b0;
    }
    return s * b1 - b2 + fm_mills_cheb[0];
}

/* For x ≥ 0: *f = Φ(−x)/e and returns e = e^(−x²/2), so that Φ(−x) = f·e and φ(x) =
 * e/√(2π), f within the normal range; callers multiply their other factors into f
 * before e, so that a result in the subnormal range is rounded once.  x² is split
 * exactly into hi + lo (Veltkamp/Dekker: no FMA needed) and e = e^(−hi/2)·(1 − lo/2):
 * the rounding of x² would otherwise cost up to x²/2 ulp (700 at x = 37).  The series
 * is used up to x = 38.5 (beyond, f varies by < 1% while e has underflowed to the last
 * few subnormals, then to 0); NaN propagates. */
FM_INLINE double fm_normal_tail_d(double x, double *f) {
    double xc = fm_clamp_d(x, 0.0, 38.5), xe = fm_clamp_d(x, 0.0, 40.0);
    double t = 1.0 / (1.0 + 0.25 * xc);
    double hi = xe * xe, big = 134217729.0 * xe;     /* 2^27 + 1 */
    double xh = big - (big - xe), xl = xe - xh;
    double lo = ((xh * xh - hi) + 2.0 * xh * xl) + xl * xl;
    *f = FM_INV_SQRT_2PI * t * fm_mills_series(t);
    return fm_exp_d(-0.5 * hi) * (1.0 - 0.5 * lo);
}

/* GELU z·Φ(z) and its derivative Φ(z) + z·φ(z) for float64: Φ(z) = f·e for z ≤ 0,
 * 1 − f·e above (f, e of |z|). */
#define FM_GELU64_LOOPS(SUF, ATTR)                                                 \
    ATTR static inline void fmv_gelu_f64_##SUF(double *x, ptrdiff_t n) {           \
        for (ptrdiff_t i = 0; i < n; i++) {                                        \
            double z = x[i], f, e = fm_normal_tail_d(fm_abs_d(z), &f);             \
            double pos = z * (1.0 - f * e), neg = (z * f) * e;                     \
            x[i] = z > 0 ? pos : neg;                                              \
        }                                                                          \
    }                                                                              \
    ATTR static inline void fmv_gelu_bwd_f64_##SUF(const double *zs, double *d, ptrdiff_t n) { \
        for (ptrdiff_t i = 0; i < n; i++) {                                        \
            double z = zs[i], f, e = fm_normal_tail_d(fm_abs_d(z), &f);            \
            double zp = z * FM_INV_SQRT_2PI;                                  \
            double pos = (1.0 - f * e) + zp * e, neg = (f + zp) * e;               \
            d[i] = d[i] * (z > 0 ? pos : neg);                                     \
        }                                                                          \
    }

/* ------------------------------------------------------------------ array loops */

/* Each loop once per instruction set: FM_LOOPS(suffix, attribute, type, scalar suffix,
 * array suffix).  In place, except the backward loops (D ⊙= g'(·)). */
#define FM_MAP(NAME, T, EXPR)                                                      \
    static inline void NAME(T *x, ptrdiff_t n) {                                   \
        for (ptrdiff_t i = 0; i < n; i++) { T v = x[i]; x[i] = (EXPR); }           \
    }

#define FM_LOOPS(SUF, ATTR, T, t, W)                                               \
    ATTR FM_MAP(fmv_exp_##W##_##SUF, T, fm_exp_##t(v))                             \
    ATTR FM_MAP(fmv_expm1_##W##_##SUF, T, fm_expm1_##t(v))                         \
    ATTR FM_MAP(fmv_log1p01_##W##_##SUF, T, fm_log1p01_##t(v))                     \
    ATTR FM_MAP(fmv_tanh_##W##_##SUF, T, fm_tanh_##t(v))                           \
    ATTR FM_MAP(fmv_sigmoid_##W##_##SUF, T, fm_sigmoid_##t(v))                     \
    ATTR FM_MAP(fmv_silu_##W##_##SUF, T, v * fm_sigmoid_##t(v))                    \
    ATTR FM_MAP(fmv_softplus_##W##_##SUF, T, fm_softplus_##t(v))                   \
    /* z if z > 0 else α·(e^z − 1); e^min(z, 0) written so that NaN reaches expm1 */ \
    ATTR static inline void fmv_elu_##W##_##SUF(T *x, ptrdiff_t n, T alpha) {             \
        for (ptrdiff_t i = 0; i < n; i++) {                                        \
            T v = x[i];                                                            \
            T e = alpha * fm_expm1_##t(v > 0 ? (T)0 : v);                          \
            x[i] = v > 0 ? v : e;                                                  \
        }                                                                          \
    }                                                                              \
    /* D ⊙= σ(z)·(1 + z·(1 − σ(z))) */                                             \
    ATTR static inline void fmv_silu_bwd_##W##_##SUF(const T *z, T *d, ptrdiff_t n) {     \
        for (ptrdiff_t i = 0; i < n; i++) {                                        \
            T p = fm_sigmoid_##t(z[i]);                                            \
            d[i] = d[i] * (p * (1 + z[i] * (1 - p)));                              \
        }                                                                          \
    }                                                                              \
    /* D ⊙= 1 − e^−A = σ(z) for A = softplus(z) */                                 \
    ATTR static inline void fmv_softplus_bwd_##W##_##SUF(const T *a, T *d, ptrdiff_t n) { \
        for (ptrdiff_t i = 0; i < n; i++)                                          \
            d[i] = d[i] * -fm_expm1_##t(-a[i]);                                    \
    }

/* The piecewise-linear activations and the derivatives written through A: selects
 * and products only, the same operations in the same order as the Cython loops they
 * replace (and as scikit-learn's numpy), so their results do not change; they are here
 * for the wider instruction sets, and for the selects, which GCC keeps as branches
 * (mispredicted on half the elements) under -ftrapping-math. */
#define FM_SIMPLE_LOOPS(SUF, ATTR, T, W)                                           \
    ATTR FM_MAP(fmv_relu_##W##_##SUF, T, v < 0 ? (T)0 : v)                         \
    ATTR static inline void fmv_relu_bwd_##W##_##SUF(const T *a, T *d, ptrdiff_t n) {     \
        for (ptrdiff_t i = 0; i < n; i++) d[i] = a[i] > 0 ? d[i] : (T)0;           \
    }                                                                              \
    ATTR static inline void fmv_leaky_relu_##W##_##SUF(T *x, ptrdiff_t n, T s) {          \
        for (ptrdiff_t i = 0; i < n; i++) { T v = x[i], w = s * v; x[i] = v > 0 ? v : w; } \
    }                                                                              \
    ATTR static inline void fmv_leaky_relu_bwd_##W##_##SUF(const T *a, T *d, ptrdiff_t n, T s) { \
        for (ptrdiff_t i = 0; i < n; i++) { T v = d[i], w = s * v; d[i] = a[i] > 0 ? v : w; } \
    }                                                                              \
    /* D ⊙= 1 if A > 0 else A + α */                                               \
    ATTR static inline void fmv_elu_bwd_##W##_##SUF(const T *a, T *d, ptrdiff_t n, T alpha) { \
        for (ptrdiff_t i = 0; i < n; i++) {                                        \
            T v = d[i], w = v * (a[i] + alpha);                                    \
            d[i] = a[i] > 0 ? v : w;                                               \
        }                                                                          \
    }                                                                              \
    /* D ⊙= 1 − A² (tanh), D ⊙= A·(1 − A) (logistic) */                            \
    ATTR static inline void fmv_tanh_bwd_##W##_##SUF(const T *a, T *d, ptrdiff_t n) {     \
        for (ptrdiff_t i = 0; i < n; i++) d[i] = d[i] * (1 - a[i] * a[i]);         \
    }                                                                              \
    ATTR static inline void fmv_sigmoid_bwd_##W##_##SUF(const T *a, T *d, ptrdiff_t n) {  \
        for (ptrdiff_t i = 0; i < n; i++) d[i] = d[i] * a[i] * (1 - a[i]);         \
    }

/* Contraction into fused multiply-adds is allowed in the transcendental functions
 * (their accuracy is measured with it) but not in the simple loops, whose rounding must
 * stay that of separate products and sums on every instruction set. */
#if defined(__GNUC__) && !defined(__clang__)
#define FM_NO_CONTRACT __attribute__((optimize("fp-contract=off")))
#else
#define FM_NO_CONTRACT
#endif

#define FM_LOOPS_BOTH(SUF, ATTR)                                                   \
    FM_LOOPS(SUF, ATTR, float, f, f32) FM_LOOPS(SUF, ATTR, double, d, f64)         \
    FM_SIMPLE_LOOPS(SUF, ATTR FM_NO_CONTRACT, float, f32)                          \
    FM_SIMPLE_LOOPS(SUF, ATTR FM_NO_CONTRACT, double, f64)                        \
    FM_GELU_LOOPS(SUF, ATTR)                                                       \
    FM_GELU64_LOOPS(SUF, ATTR)

#define FM_NO_ATTR
FM_LOOPS_BOTH(base, FM_NO_ATTR)

#if (defined(__x86_64__) || defined(__i386__)) && \
    (defined(__clang__) || (defined(__GNUC__) && __GNUC__ >= 6))
#define FM_DISPATCH 1
FM_LOOPS_BOTH(avx2, __attribute__((target("avx2,fma"))))
FM_LOOPS_BOTH(avx512, __attribute__((target("avx512f,avx512dq,avx2,fma"))))
#else
#define FM_DISPATCH 0
#endif

/* ------------------------------------------------------------------ dispatch */

/* 0: baseline, 1: AVX2 + FMA, 2: AVX-512; the best the CPU has, chosen at load. */
static int fm_vec_level = 0;

static int fm_vec_best_level(void) {
#if FM_DISPATCH
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
        __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        return 2;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        return 1;
#endif
    return 0;
}

/* Use instruction-set level `level` (clipped to what the CPU has; −1: the best);
 * returns the level in use.  Tests run every level the machine has through this. */
static inline int fm_vec_set_level(int level) {
    int best = fm_vec_best_level();
    fm_vec_level = (level < 0 || level > best) ? best : level;
    return fm_vec_level;
}

static inline int fm_vec_get_level(void) { return fm_vec_level; }

#if defined(__GNUC__) || defined(__clang__)
__attribute__((constructor)) static void fm_vec_init(void) { fm_vec_set_level(-1); }
#endif

#if FM_DISPATCH
#define FM_CALL(NAME, ...)                                                         \
    do {                                                                           \
        if (fm_vec_level == 2) NAME##_avx512(__VA_ARGS__);                         \
        else if (fm_vec_level == 1) NAME##_avx2(__VA_ARGS__);                      \
        else NAME##_base(__VA_ARGS__);                                             \
    } while (0)
/* FM_CALL for a function with a result (the checks of _optim.h and _checks.h). */
#define FM_RESULT(NAME, ...)                                                       \
    (fm_vec_level == 2 ? NAME##_avx512(__VA_ARGS__)                                \
     : fm_vec_level == 1 ? NAME##_avx2(__VA_ARGS__) : NAME##_base(__VA_ARGS__))
#else
#define FM_CALL(NAME, ...) NAME##_base(__VA_ARGS__)
#define FM_RESULT(NAME, ...) NAME##_base(__VA_ARGS__)
#endif

/* The entry points: fmv_<function>_<f32|f64>(x, n) in place, and the two backward
 * loops fmv_<activation>_bwd_<W>(input, d, n). */
#define FM_ENTRIES(T, W)                                                                   \
    static inline void fmv_exp_##W(T *x, ptrdiff_t n) { FM_CALL(fmv_exp_##W, x, n); }             \
    static inline void fmv_expm1_##W(T *x, ptrdiff_t n) { FM_CALL(fmv_expm1_##W, x, n); }         \
    static inline void fmv_log1p01_##W(T *x, ptrdiff_t n) { FM_CALL(fmv_log1p01_##W, x, n); }     \
    static inline void fmv_tanh_##W(T *x, ptrdiff_t n) { FM_CALL(fmv_tanh_##W, x, n); }           \
    static inline void fmv_sigmoid_##W(T *x, ptrdiff_t n) { FM_CALL(fmv_sigmoid_##W, x, n); }     \
    static inline void fmv_silu_##W(T *x, ptrdiff_t n) { FM_CALL(fmv_silu_##W, x, n); }           \
    static inline void fmv_softplus_##W(T *x, ptrdiff_t n) { FM_CALL(fmv_softplus_##W, x, n); }   \
    static inline void fmv_elu_##W(T *x, ptrdiff_t n, T alpha) { FM_CALL(fmv_elu_##W, x, n, alpha); } \
    static inline void fmv_silu_bwd_##W(const T *z, T *d, ptrdiff_t n) {                          \
        FM_CALL(fmv_silu_bwd_##W, z, d, n);                                                \
    }                                                                                      \
    static inline void fmv_softplus_bwd_##W(const T *a, T *d, ptrdiff_t n) {                      \
        FM_CALL(fmv_softplus_bwd_##W, a, d, n);                                            \
    }

#define FM_SIMPLE_ENTRIES(T, W)                                                            \
    static inline void fmv_relu_##W(T *x, ptrdiff_t n) { FM_CALL(fmv_relu_##W, x, n); }           \
    static inline void fmv_relu_bwd_##W(const T *a, T *d, ptrdiff_t n) {                          \
        FM_CALL(fmv_relu_bwd_##W, a, d, n);                                                \
    }                                                                                      \
    static inline void fmv_leaky_relu_##W(T *x, ptrdiff_t n, T s) {                               \
        FM_CALL(fmv_leaky_relu_##W, x, n, s);                                              \
    }                                                                                      \
    static inline void fmv_leaky_relu_bwd_##W(const T *a, T *d, ptrdiff_t n, T s) {               \
        FM_CALL(fmv_leaky_relu_bwd_##W, a, d, n, s);                                       \
    }                                                                                      \
    static inline void fmv_elu_bwd_##W(const T *a, T *d, ptrdiff_t n, T alpha) {                  \
        FM_CALL(fmv_elu_bwd_##W, a, d, n, alpha);                                          \
    }                                                                                      \
    static inline void fmv_tanh_bwd_##W(const T *a, T *d, ptrdiff_t n) {                          \
        FM_CALL(fmv_tanh_bwd_##W, a, d, n);                                                \
    }                                                                                      \
    static inline void fmv_sigmoid_bwd_##W(const T *a, T *d, ptrdiff_t n) {                       \
        FM_CALL(fmv_sigmoid_bwd_##W, a, d, n);                                             \
    }

static inline void fmv_gelu_f32(float *x, ptrdiff_t n) { FM_CALL(fmv_gelu_f32, x, n); }
static inline void fmv_gelu_f64(double *x, ptrdiff_t n) { FM_CALL(fmv_gelu_f64, x, n); }
static inline void fmv_gelu_bwd_f64(const double *z, double *d, ptrdiff_t n) {
    FM_CALL(fmv_gelu_bwd_f64, z, d, n);
}
static inline void fmv_gelu_bwd_f32(const float *z, float *d, ptrdiff_t n) {
    FM_CALL(fmv_gelu_bwd_f32, z, d, n);
}
FM_ENTRIES(float, f32)
FM_ENTRIES(double, f64)
FM_SIMPLE_ENTRIES(float, f32)
FM_SIMPLE_ENTRIES(double, f64)

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC pop_options
#endif
#if defined(__clang__)
#pragma STDC FP_CONTRACT DEFAULT
#endif

#endif /* FASTMLP_VECMATH_H */
