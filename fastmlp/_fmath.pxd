# Float helpers of the kernels: libm by dtype, and the vectorisable checks (finite values,
# label range, largest magnitude) that guard every step.

from cython cimport floating
from libc.float cimport DBL_EPSILON, FLT_EPSILON
from libc.math cimport (INFINITY, erfc, erfcf, exp, expf, expm1, expm1f, log, log1p, log1pf,
                        logf, sqrt, sqrtf, tanh, tanhf)
from libc.stdint cimport int64_t


cdef inline floating fexp(floating x) noexcept nogil:
    if floating is float:
        return expf(x)
    else:
        return exp(x)


cdef inline floating flog(floating x) noexcept nogil:
    if floating is float:
        return logf(x)
    else:
        return log(x)


cdef inline floating fexpm1(floating x) noexcept nogil:
    if floating is float:
        return expm1f(x)
    else:
        return expm1(x)


cdef inline floating flog1p(floating x) noexcept nogil:
    if floating is float:
        return log1pf(x)
    else:
        return log1p(x)


cdef inline floating ferfc(floating x) noexcept nogil:
    if floating is float:
        return erfcf(x)
    else:
        return erfc(x)


cdef inline floating ftanh(floating x) noexcept nogil:
    if floating is float:
        return tanhf(x)
    else:
        return tanh(x)


cdef inline floating fsqrt(floating x) noexcept nogil:
    if floating is float:
        return sqrtf(x)
    else:
        return sqrt(x)


cdef inline floating feps(floating x) noexcept nogil:
    # machine epsilon of the dtype, as numpy's finfo(dtype).eps
    if floating is float:
        return FLT_EPSILON
    else:
        return DBL_EPSILON


cdef inline floating xlogy(floating x, floating y) noexcept nogil:
    # x·log(y) with 0·log(y) = 0, as scipy.special.xlogy
    return 0 if x == 0 else x * flog(y)


cdef extern from "_checks.h" nogil:
    bint fmc_all_finite_f32(const float* x, Py_ssize_t n)
    bint fmc_all_finite_f64(const double* x, Py_ssize_t n)
    double fmc_max_abs_f32(const float* x, Py_ssize_t n)
    double fmc_max_abs_f64(const double* x, Py_ssize_t n)


cdef inline bint all_finite(const floating* x, Py_ssize_t size) noexcept nogil:
    # No ±Inf or NaN in x (_checks.h, vectorised per instruction set).
    if floating is float:
        return fmc_all_finite_f32(x, size)
    else:
        return fmc_all_finite_f64(x, size)


cdef inline bint labels_in_range(const int64_t* y, Py_ssize_t n, int64_t k) noexcept nogil:
    cdef Py_ssize_t i
    cdef int bad = 0
    for i in range(n):
        bad |= (y[i] < 0) | (y[i] >= k)
    return not bad


cdef inline bint weights_valid(const floating* w, Py_ssize_t n) noexcept nogil:
    # Every sample weight finite and >= 0 (NaN fails the comparison).
    cdef Py_ssize_t i
    cdef int bad = 0
    for i in range(n):
        bad |= not (0 <= w[i] < INFINITY)
    return not bad


cdef inline double max_abs(const floating* x, Py_ssize_t size) noexcept nogil:
    # max |x|, or +inf if any x is NaN (a NaN must never pass a bound test); 0 if size
    # is 0.  _checks.h, vectorised per instruction set.
    if floating is float:
        return fmc_max_abs_f32(x, size)
    else:
        return fmc_max_abs_f64(x, size)


# ---------------------------------------------------------------- vectorised math
# Array loops of _vecmath.h (branch-free exp, expm1, log1p, tanh, σ, softplus that the
# compiler vectorises, run with the CPU's best instruction set), by dtype.  In place;
# the two backward loops multiply D by the derivative.  Accuracy: _vecmath.h's header.

cdef extern from "_vecmath.h" nogil:
    void fmv_exp_f32(float* x, Py_ssize_t n)
    void fmv_exp_f64(double* x, Py_ssize_t n)
    void fmv_expm1_f32(float* x, Py_ssize_t n)
    void fmv_expm1_f64(double* x, Py_ssize_t n)
    void fmv_log1p01_f32(float* x, Py_ssize_t n)
    void fmv_log1p01_f64(double* x, Py_ssize_t n)
    void fmv_tanh_f32(float* x, Py_ssize_t n)
    void fmv_tanh_f64(double* x, Py_ssize_t n)
    void fmv_sigmoid_f32(float* x, Py_ssize_t n)
    void fmv_sigmoid_f64(double* x, Py_ssize_t n)
    void fmv_silu_f32(float* x, Py_ssize_t n)
    void fmv_silu_f64(double* x, Py_ssize_t n)
    void fmv_softplus_f32(float* x, Py_ssize_t n)
    void fmv_softplus_f64(double* x, Py_ssize_t n)
    void fmv_elu_f32(float* x, Py_ssize_t n, float alpha)
    void fmv_elu_f64(double* x, Py_ssize_t n, double alpha)
    void fmv_silu_bwd_f32(const float* z, float* d, Py_ssize_t n)
    void fmv_silu_bwd_f64(const double* z, double* d, Py_ssize_t n)
    void fmv_softplus_bwd_f32(const float* a, float* d, Py_ssize_t n)
    void fmv_softplus_bwd_f64(const double* a, double* d, Py_ssize_t n)
    void fmv_relu_f32(float* x, Py_ssize_t n)
    void fmv_relu_f64(double* x, Py_ssize_t n)
    void fmv_relu_bwd_f32(const float* a, float* d, Py_ssize_t n)
    void fmv_relu_bwd_f64(const double* a, double* d, Py_ssize_t n)
    void fmv_leaky_relu_f32(float* x, Py_ssize_t n, float s)
    void fmv_leaky_relu_f64(double* x, Py_ssize_t n, double s)
    void fmv_leaky_relu_bwd_f32(const float* a, float* d, Py_ssize_t n, float s)
    void fmv_leaky_relu_bwd_f64(const double* a, double* d, Py_ssize_t n, double s)
    void fmv_elu_bwd_f32(const float* a, float* d, Py_ssize_t n, float alpha)
    void fmv_elu_bwd_f64(const double* a, double* d, Py_ssize_t n, double alpha)
    void fmv_tanh_bwd_f32(const float* a, float* d, Py_ssize_t n)
    void fmv_tanh_bwd_f64(const double* a, double* d, Py_ssize_t n)
    void fmv_sigmoid_bwd_f32(const float* a, float* d, Py_ssize_t n)
    void fmv_sigmoid_bwd_f64(const double* a, double* d, Py_ssize_t n)
    void fmv_gelu_f32(float* x, Py_ssize_t n)       # in double inside
    void fmv_gelu_f64(double* x, Py_ssize_t n)
    void fmv_gelu_bwd_f32(const float* z, float* d, Py_ssize_t n)
    void fmv_gelu_bwd_f64(const double* z, double* d, Py_ssize_t n)
    int fm_vec_set_level(int level)     # 0 SSE2, 1 AVX2+FMA, 2 AVX-512; −1 the best
    int fm_vec_get_level()


cdef inline void vexp(floating* x, Py_ssize_t n) noexcept nogil:
    if floating is float:
        fmv_exp_f32(x, n)
    else:
        fmv_exp_f64(x, n)


cdef inline void vtanh(floating* x, Py_ssize_t n) noexcept nogil:
    if floating is float:
        fmv_tanh_f32(x, n)
    else:
        fmv_tanh_f64(x, n)


cdef inline void vsigmoid(floating* x, Py_ssize_t n) noexcept nogil:
    if floating is float:
        fmv_sigmoid_f32(x, n)
    else:
        fmv_sigmoid_f64(x, n)


cdef inline void vsilu(floating* x, Py_ssize_t n) noexcept nogil:
    if floating is float:
        fmv_silu_f32(x, n)
    else:
        fmv_silu_f64(x, n)


cdef inline void vsoftplus(floating* x, Py_ssize_t n) noexcept nogil:
    if floating is float:
        fmv_softplus_f32(x, n)
    else:
        fmv_softplus_f64(x, n)


cdef inline void velu(floating* x, Py_ssize_t n, floating alpha) noexcept nogil:
    if floating is float:
        fmv_elu_f32(x, n, alpha)
    else:
        fmv_elu_f64(x, n, alpha)


cdef inline void vsilu_bwd(const floating* z, floating* d, Py_ssize_t n) noexcept nogil:
    if floating is float:
        fmv_silu_bwd_f32(z, d, n)
    else:
        fmv_silu_bwd_f64(z, d, n)


cdef inline void vsoftplus_bwd(const floating* a, floating* d, Py_ssize_t n) noexcept nogil:
    if floating is float:
        fmv_softplus_bwd_f32(a, d, n)
    else:
        fmv_softplus_bwd_f64(a, d, n)


cdef inline void vrelu(floating* x, Py_ssize_t n) noexcept nogil:
    if floating is float:
        fmv_relu_f32(x, n)
    else:
        fmv_relu_f64(x, n)


cdef inline void vrelu_bwd(const floating* a, floating* d, Py_ssize_t n) noexcept nogil:
    if floating is float:
        fmv_relu_bwd_f32(a, d, n)
    else:
        fmv_relu_bwd_f64(a, d, n)


cdef inline void vleaky_relu(floating* x, Py_ssize_t n, floating s) noexcept nogil:
    if floating is float:
        fmv_leaky_relu_f32(x, n, s)
    else:
        fmv_leaky_relu_f64(x, n, s)


cdef inline void vleaky_relu_bwd(const floating* a, floating* d, Py_ssize_t n,
                                 floating s) noexcept nogil:
    if floating is float:
        fmv_leaky_relu_bwd_f32(a, d, n, s)
    else:
        fmv_leaky_relu_bwd_f64(a, d, n, s)


cdef inline void velu_bwd(const floating* a, floating* d, Py_ssize_t n,
                          floating alpha) noexcept nogil:
    if floating is float:
        fmv_elu_bwd_f32(a, d, n, alpha)
    else:
        fmv_elu_bwd_f64(a, d, n, alpha)


cdef inline void vtanh_bwd(const floating* a, floating* d, Py_ssize_t n) noexcept nogil:
    if floating is float:
        fmv_tanh_bwd_f32(a, d, n)
    else:
        fmv_tanh_bwd_f64(a, d, n)


cdef inline void vsigmoid_bwd(const floating* a, floating* d, Py_ssize_t n) noexcept nogil:
    if floating is float:
        fmv_sigmoid_bwd_f32(a, d, n)
    else:
        fmv_sigmoid_bwd_f64(a, d, n)


cdef inline void vgelu(floating* x, Py_ssize_t n) noexcept nogil:
    if floating is float:
        fmv_gelu_f32(x, n)
    else:
        fmv_gelu_f64(x, n)


cdef inline void vgelu_bwd(const floating* z, floating* d, Py_ssize_t n) noexcept nogil:
    if floating is float:
        fmv_gelu_bwd_f32(z, d, n)
    else:
        fmv_gelu_bwd_f64(z, d, n)
