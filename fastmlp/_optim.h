/* The optimizers' update rules and the two passes each runs over a segment of the flat
 * parameter buffer: the finite pre-check, which evaluates every new value without
 * storing it, and the update, which stores them.  Both passes inline the same rule
 * functions below, so "finite in the check" means "finite in the update", bit for bit.
 *
 * Why C and not Cython: the passes are a training step's largest element-wise work
 * (Adam's reads four arrays and writes three, with a division and a square root per
 * value), and each is compiled here for three instruction sets (baseline SSE2, AVX2,
 * AVX-512) with _vecmath.h's dispatch: wider vectors halve Adam's passes.  Contraction
 * into fused multiply-adds is off (FM_NO_CONTRACT), so every level, and the scalar
 * rules' definitions, give the same bits: only separate IEEE products, sums, quotients
 * and square roots, each rounded once.
 *
 * The gradient convention (fmo_grad): the kernels receive the raw gradient AᵀΔ and
 * use g = (raw + a·θ)·nrm — fastmlp's weight decay is a = α/n, nrm = 1; scikit-learn's
 * a = α, nrm = 1/Σw (a multiplication where scikit-learn divides: one rounding apart,
 * and no division in a pass bound by its arithmetic).  Without decay (biases, α = 0)
 * the a·θ term is left out, not multiplied by zero, so that an infinite θ stays
 * infinite.  `decay` is the same for a whole loop, so the compiler splits the loop on
 * it and both versions vectorise.
 */
#ifndef FASTMLP_OPTIM_H
#define FASTMLP_OPTIM_H

#include "_checks.h"

/* The rules, once per dtype: FMO_RULES(type, scalar suffix, sqrt). */
#define FMO_RULES(T, t, SQRT)                                                      \
    FM_INLINE T fmo_grad_##t(T raw, T w, int decay, T a, T nrm) {                   \
        return decay ? (raw + a * w) * nrm : raw * nrm;                            \
    }                                                                              \
    /* θ − η·∇θ (seed 000 eq. 12, with the 1/m already inside the gradient) */     \
    FM_INLINE T fmo_sgd_##t(T theta, T g, T lr) { return theta - lr * g; }         \
    /* v ← μ·v − η·∇θ; then θ + v (momentum) or θ + μ·v − η·∇θ (Nesterov) */       \
    FM_INLINE T fmo_velocity_##t(T vel, T g, T mu, T lr) { return mu * vel - lr * g; } \
    FM_INLINE T fmo_momentum_##t(T theta, T v) { return theta + v; }               \
    FM_INLINE T fmo_nesterov_##t(T theta, T v, T g, T mu, T lr) {                  \
        return theta + (mu * v - lr * g);                                          \
    }                                                                              \
    /* β·old + (1 − β)·new: Adam's moments m (of g) and v (of g²) */               \
    FM_INLINE T fmo_ema_##t(T old, T x, T beta, T one_m_beta) {                    \
        return beta * old + one_m_beta * x;                                        \
    }                                                                              \
    /* θ − η_t·m/(√v + ε), η_t with Adam's bias correction folded in (_optim.pxd's \
     * adam_step_size), all in the model dtype with the constants rounded to it.   \
     * (scikit-learn's float32 step goes through float64 by numpy's promotion; a   \
     * float32 division instead costs a float32 ulp per step and halves the pass.) */ \
    FM_INLINE T fmo_adam_##t(T theta, T m, T v, T lr_t, T eps) {                   \
        return theta + (-lr_t * m) / (SQRT(v) + eps);                              \
    }

#if defined(__GNUC__) || defined(__clang__)
FMO_RULES(float, f, __builtin_sqrtf)
FMO_RULES(double, d, __builtin_sqrt)
#else
#include <math.h>
FMO_RULES(float, f, sqrtf)
FMO_RULES(double, d, sqrt)
#endif

/* The passes, once per instruction set: FMO_LOOPS(level suffix, attribute, type,
 * scalar suffix, array suffix, flag type).  Each check returns nonzero iff every new
 * value the matching update would store (parameters and state) is finite; a
 * non-finite gradient always makes one non-finite, so it checks the gradient too.
 * Momentum and Nesterov are separate loops: a select inside one kept it scalar. */
#define FMO_LOOPS(SUF, ATTR, T, t, W, U)                                           \
    ATTR static int fmo_sgd_finite_##W##_##SUF(                                     \
            const T *theta, const T *grad, ptrdiff_t n, T lr, T a, T nrm) {        \
        U bad = 0;                                                                 \
        int decay = a != 0;                                                        \
        for (ptrdiff_t i = 0; i < n; i++)                                          \
            bad |= fmc_nonfinite_##t(                                              \
                fmo_sgd_##t(theta[i], fmo_grad_##t(grad[i], theta[i], decay, a, nrm), lr)); \
        return (bad >> (8 * sizeof(U) - 1)) == 0;                                  \
    }                                                                              \
    ATTR static void fmo_sgd_update_##W##_##SUF(                                    \
            T *theta, const T *grad, ptrdiff_t n, T lr, T a, T nrm) {              \
        int decay = a != 0;                                                        \
        for (ptrdiff_t i = 0; i < n; i++)                                          \
            theta[i] = fmo_sgd_##t(theta[i], fmo_grad_##t(grad[i], theta[i], decay, a, nrm), lr); \
    }                                                                              \
    ATTR static int fmo_momentum_finite_##W##_##SUF(                                \
            const T *theta, const T *grad, const T *vel, ptrdiff_t n, T lr, T mu,  \
            int nesterov, T a, T nrm) {                                            \
        U bad = 0;                                                                 \
        int decay = a != 0;                                                        \
        if (nesterov) {                                                            \
            for (ptrdiff_t i = 0; i < n; i++) {                                    \
                T g = fmo_grad_##t(grad[i], theta[i], decay, a, nrm);              \
                T v = fmo_velocity_##t(vel[i], g, mu, lr);                         \
                bad |= fmc_nonfinite_##t(fmo_nesterov_##t(theta[i], v, g, mu, lr)) \
                       | fmc_nonfinite_##t(v);                                     \
            }                                                                      \
        } else {                                                                   \
            for (ptrdiff_t i = 0; i < n; i++) {                                    \
                T g = fmo_grad_##t(grad[i], theta[i], decay, a, nrm);              \
                T v = fmo_velocity_##t(vel[i], g, mu, lr);                         \
                bad |= fmc_nonfinite_##t(fmo_momentum_##t(theta[i], v))               \
                       | fmc_nonfinite_##t(v);                                     \
            }                                                                      \
        }                                                                          \
        return (bad >> (8 * sizeof(U) - 1)) == 0;                                  \
    }                                                                              \
    ATTR static void fmo_momentum_update_##W##_##SUF(                               \
            T *theta, const T *grad, T *vel, ptrdiff_t n, T lr, T mu, int nesterov, \
            T a, T nrm) {                                                          \
        int decay = a != 0;                                                        \
        if (nesterov) {                                                            \
            for (ptrdiff_t i = 0; i < n; i++) {                                    \
                T g = fmo_grad_##t(grad[i], theta[i], decay, a, nrm);              \
                T v = fmo_velocity_##t(vel[i], g, mu, lr);                         \
                vel[i] = v;                                                        \
                theta[i] = fmo_nesterov_##t(theta[i], v, g, mu, lr);               \
            }                                                                      \
        } else {                                                                   \
            for (ptrdiff_t i = 0; i < n; i++) {                                    \
                T g = fmo_grad_##t(grad[i], theta[i], decay, a, nrm);              \
                T v = fmo_velocity_##t(vel[i], g, mu, lr);                         \
                vel[i] = v;                                                        \
                theta[i] = fmo_momentum_##t(theta[i], v);                          \
            }                                                                      \
        }                                                                          \
    }                                                                              \
    ATTR static int fmo_adam_finite_##W##_##SUF(                                    \
            const T *theta, const T *grad, const T *m, const T *v, ptrdiff_t n,    \
            T lr_t, T b1, T c1, T b2, T c2, T eps, T a, T nrm) {                   \
        U bad = 0;                                                                 \
        int decay = a != 0;                                                        \
        for (ptrdiff_t i = 0; i < n; i++) {                                        \
            T g = fmo_grad_##t(grad[i], theta[i], decay, a, nrm);                  \
            T mm = fmo_ema_##t(m[i], g, b1, c1), vv = fmo_ema_##t(v[i], g * g, b2, c2); \
            bad |= fmc_nonfinite_##t(fmo_adam_##t(theta[i], mm, vv, lr_t, eps))    \
                   | fmc_nonfinite_##t(mm) | fmc_nonfinite_##t(vv);                \
        }                                                                          \
        return (bad >> (8 * sizeof(U) - 1)) == 0;                                  \
    }                                                                              \
    ATTR static void fmo_adam_update_##W##_##SUF(                                   \
            T *theta, const T *grad, T *m, T *v, ptrdiff_t n, T lr_t, T b1, T c1,  \
            T b2, T c2, T eps, T a, T nrm) {                                       \
        int decay = a != 0;                                                        \
        for (ptrdiff_t i = 0; i < n; i++) {                                        \
            T g = fmo_grad_##t(grad[i], theta[i], decay, a, nrm);                  \
            T mm = fmo_ema_##t(m[i], g, b1, c1), vv = fmo_ema_##t(v[i], g * g, b2, c2); \
            m[i] = mm;                                                             \
            v[i] = vv;                                                             \
            theta[i] = fmo_adam_##t(theta[i], mm, vv, lr_t, eps);                  \
        }                                                                          \
    }

#define FMO_LOOPS_BOTH(SUF, ATTR)                                                  \
    FMO_LOOPS(SUF, ATTR FM_NO_CONTRACT, float, f, f32, uint32_t)                   \
    FMO_LOOPS(SUF, ATTR FM_NO_CONTRACT, double, d, f64, uint64_t)

FMO_LOOPS_BOTH(base, FM_NO_ATTR)
#if FM_DISPATCH
FMO_LOOPS_BOTH(avx2, __attribute__((target("avx2,fma"))))
FMO_LOOPS_BOTH(avx512, __attribute__((target("avx512f,avx512dq,avx2,fma"))))
#endif

/* The entry points, at the level _vecmath.h chose. */
#define FMO_ENTRIES(T, W)                                                          \
    static inline int fmo_sgd_finite_##W(const T *theta, const T *grad, ptrdiff_t n, \
                                         T lr, T a, T nrm) {                       \
        return FM_RESULT(fmo_sgd_finite_##W, theta, grad, n, lr, a, nrm);           \
    }                                                                              \
    static inline void fmo_sgd_update_##W(T *theta, const T *grad, ptrdiff_t n, T lr, \
                                          T a, T nrm) {                            \
        FM_CALL(fmo_sgd_update_##W, theta, grad, n, lr, a, nrm);                   \
    }                                                                              \
    static inline int fmo_momentum_finite_##W(const T *theta, const T *grad,       \
            const T *vel, ptrdiff_t n, T lr, T mu, int nesterov, T a, T nrm) {     \
        return FM_RESULT(fmo_momentum_finite_##W, theta, grad, vel, n, lr, mu,      \
                        nesterov, a, nrm);                                         \
    }                                                                              \
    static inline void fmo_momentum_update_##W(T *theta, const T *grad, T *vel,    \
            ptrdiff_t n, T lr, T mu, int nesterov, T a, T nrm) {                   \
        FM_CALL(fmo_momentum_update_##W, theta, grad, vel, n, lr, mu, nesterov, a, nrm); \
    }                                                                              \
    static inline int fmo_adam_finite_##W(const T *theta, const T *grad, const T *m, \
            const T *v, ptrdiff_t n, T lr_t, T b1, T c1, T b2, T c2, T eps, T a,   \
            T nrm) {                                                               \
        return FM_RESULT(fmo_adam_finite_##W, theta, grad, m, v, n, lr_t, b1, c1,   \
                        b2, c2, eps, a, nrm);                                      \
    }                                                                              \
    static inline void fmo_adam_update_##W(T *theta, const T *grad, T *m, T *v,    \
            ptrdiff_t n, T lr_t, T b1, T c1, T b2, T c2, T eps, T a, T nrm) {      \
        FM_CALL(fmo_adam_update_##W, theta, grad, m, v, n, lr_t, b1, c1, b2, c2,   \
                eps, a, nrm);                                                      \
    }

FMO_ENTRIES(float, f32)
FMO_ENTRIES(double, f64)

#endif /* FASTMLP_OPTIM_H */
