/* The reductions that guard every step: are all values finite, and the largest
 * magnitude (the a-priori bounds of the fused SGD step).  They read the inputs, the
 * parameters and the activations once per step, so on a two-core machine they are a
 * good part of the step's serial time; each is compiled for three instruction sets
 * with _vecmath.h's dispatch (baseline SSE2 has no 64-bit integer compare, which kept
 * the float64 maximum scalar).
 *
 * Both work on the bit patterns, with unsigned or integer operations only: a compare of
 * floats turned into a flag, or a float max-reduction, does not vectorise without
 * -ffast-math, and NaN must never pass (a NaN's pattern sorts above +inf's).
 */
#ifndef FASTMLP_CHECKS_H
#define FASTMLP_CHECKS_H

#include "_vecmath.h"

/* Bit 31 (float) or 63 (double) of the result is set iff x is ±Inf or NaN: (bits &
 * exponent) + the lowest exponent bit carries into the top bit exactly when every
 * exponent bit is set.  ORed over an array, it flags any non-finite value. */
FM_INLINE uint32_t fmc_nonfinite_f(float x) {
    return (fm_bits_f(x) & 0x7f800000U) + 0x00800000U;
}
FM_INLINE uint64_t fmc_nonfinite_d(double x) {
    return (fm_bits_d(x) & 0x7ff0000000000000ULL) + 0x0010000000000000ULL;
}

/* FMC_LOOPS(level suffix, attribute, type, scalar suffix, array suffix, unsigned and
 * signed integer of its width). */
#define FMC_LOOPS(SUF, ATTR, T, t, W, U, S)                                        \
    /* nonzero iff every x[i] is finite */                                         \
    ATTR static int fmc_all_finite_##W##_##SUF(const T *x, ptrdiff_t n) {          \
        U bad = 0;                                                                 \
        for (ptrdiff_t i = 0; i < n; i++)                                          \
            bad |= fmc_nonfinite_##t(x[i]);                                        \
        return (bad >> (8 * sizeof(U) - 1)) == 0;                                  \
    }                                                                              \
    /* max |x| as the bit pattern of |x| (sign cleared: for IEEE values the        \
     * integer order is the order of magnitudes); 0 for n = 0 */                   \
    ATTR static S fmc_max_abs_bits_##W##_##SUF(const T *x, ptrdiff_t n) {          \
        S m = 0;                                                                   \
        for (ptrdiff_t i = 0; i < n; i++) {                                        \
            S b;                                                                   \
            memcpy(&b, &x[i], sizeof(T));                                          \
            b &= (S)(~(U)0 >> 1);                                                  \
            m = b > m ? b : m;                                                     \
        }                                                                          \
        return m;                                                                  \
    }

#define FMC_LOOPS_BOTH(SUF, ATTR)                                                  \
    FMC_LOOPS(SUF, ATTR, float, f, f32, uint32_t, int32_t)                         \
    FMC_LOOPS(SUF, ATTR, double, d, f64, uint64_t, int64_t)

FMC_LOOPS_BOTH(base, FM_NO_ATTR)
#if FM_DISPATCH
FMC_LOOPS_BOTH(avx2, __attribute__((target("avx2,fma"))))
FMC_LOOPS_BOTH(avx512, __attribute__((target("avx512f,avx512dq,avx2,fma"))))
#endif

/* The entry points: max |x| as a value, +inf if any x is NaN. */
#define FMC_ENTRIES(T, W, S, INF_BITS)                                             \
    static inline int fmc_all_finite_##W(const T *x, ptrdiff_t n) {                \
        return FM_RESULT(fmc_all_finite_##W, x, n);                                \
    }                                                                              \
    static inline double fmc_max_abs_##W(const T *x, ptrdiff_t n) {                \
        S m = FM_RESULT(fmc_max_abs_bits_##W, x, n);                               \
        T v;                                                                       \
        if (m > (S)INF_BITS) m = (S)INF_BITS;                                      \
        memcpy(&v, &m, sizeof(T));                                                 \
        return (double)v;                                                          \
    }

FMC_ENTRIES(float, f32, int32_t, 0x7f800000)
FMC_ENTRIES(double, f64, int64_t, 0x7ff0000000000000LL)

#endif /* FASTMLP_CHECKS_H */
