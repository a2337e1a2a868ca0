"""Compiled core of fastmlp: the kernels of ../shared/seeds/ and the one-call training step.

Layout is row-major throughout (seed 003): a batch X is (n, d0), W(l) is (d(l-1), d(l)),
Z(l) = A(l-1)·W(l) + b(l).  Every kernel is a ``noexcept nogil`` function over raw
pointers; the ``def`` functions and the ``Engine`` methods at the bottom are the only
entry points from Python, and they check every size and flag the kernels rely on before
handing pointers down (bounds checking is off in the kernels).

Parameters of a network live in one flat buffer ``theta``: for each layer W(l) (row-major)
followed by b(l).  Gradients use the same layout in ``grad``, optimizer state too.

Two gradient conventions share the kernels:
- fastmlp's own (``sk_scaling`` off): the 1/n sits in the output delta, as in the seeds;
- scikit-learn's (``sk_scaling`` on): raw output delta (P − Y)·wᵢ, and the gradients are
  (AᵀΔ + α·W)/Σw, in scikit-learn's order of operations, so that its estimators can be
  reproduced closely.
"""
from cython cimport floating
from libc.float cimport DBL_EPSILON, FLT_EPSILON
from libc.math cimport INFINITY, exp, expf, log, logf, pow, sqrt, sqrtf, tanh, tanhf
from libc.stdint cimport int32_t, int64_t, uint64_t
from libc.string cimport memcpy, memset
from scipy.linalg.cython_blas cimport dgemm, dgemv, dger, sgemm, sgemv, sger

cimport numpy as cnp

import numpy as np

from fastmlp.errors import DivergenceError

cnp.import_array()

# Status codes returned by the training step; the Engine turns them into exceptions.
cdef enum:
    OK = 0
    BAD_X = 1
    BAD_Y = 2
    BAD_LABEL = 3
    DIVERGED = 4

# Codes shared with the Python layer (fastmlp/_validation.py maps names to them).
cdef enum:
    C_ACT_IDENTITY = 0
    C_ACT_RELU = 1
    C_ACT_LOGISTIC = 2
    C_ACT_TANH = 3
    C_ACT_SOFTMAX = 4   # output layer only
    C_ACT_EXP = 5       # output layer only (scikit-learn's Poisson regressor)

cdef enum:
    C_LOSS_MSE = 0              # (1/n)·Σ‖ŷ − y‖², any element-wise output activation
    C_LOSS_SOFTMAX_XENT = 1     # −(1/n)·Σ y·log softmax(z), from logits (identity output)
    C_LOSS_SK_SQUARED = 2       # scikit-learn: ½·mean over outputs of the weighted mean
    C_LOSS_SK_LOG = 3           # scikit-learn: log-loss of softmax probabilities, clipped
    C_LOSS_SK_BINARY_LOG = 4    # scikit-learn: binary log-loss of logistic outputs, clipped
    C_LOSS_SK_POISSON = 5       # scikit-learn: half Poisson deviance of exp outputs

cdef enum:
    C_OPT_SGD = 0
    C_OPT_MOMENTUM = 1
    C_OPT_NESTEROV = 2
    C_OPT_ADAM = 3

# Workspace larger than this is refused up front, with a clear error, instead of failing
# (or swapping) deep inside an allocation; see set_workspace_limit.
_workspace_limit = 8 * 2**30


def set_workspace_limit(nbytes):
    """Set the largest workspace (bytes) one batch may ask for; returns the old limit."""
    global _workspace_limit
    # The core's own size arithmetic is Py_ssize_t: keep every checked size far below 2**63.
    if isinstance(nbytes, bool) or not isinstance(nbytes, int) or not 1 <= nbytes <= 2**62:
        raise ValueError(f"nbytes: expected an int in [1, 2**62], got {nbytes!r}")
    old, _workspace_limit = _workspace_limit, nbytes
    return old


def get_workspace_limit():
    """The largest workspace (bytes) one batch may ask for (default 8 GiB)."""
    return _workspace_limit


cdef object _check_workspace(object n_values, object itemsize, object n_rows):
    # Python integers: no overflow whatever n·d is.
    need = n_values * itemsize
    if need > _workspace_limit:
        raise ValueError(f"X: a batch of {n_rows} rows needs {need} bytes of workspace, over "
                         f"the limit of {_workspace_limit} bytes; use smaller batches or "
                         f"fastmlp.set_workspace_limit")


ACT_CODES = {"identity": C_ACT_IDENTITY, "relu": C_ACT_RELU, "logistic": C_ACT_LOGISTIC,
             "tanh": C_ACT_TANH, "softmax": C_ACT_SOFTMAX, "exp": C_ACT_EXP}
LOSS_CODES = {"mse": C_LOSS_MSE, "softmax_cross_entropy": C_LOSS_SOFTMAX_XENT,
              "sk_squared_error": C_LOSS_SK_SQUARED, "sk_log_loss": C_LOSS_SK_LOG,
              "sk_binary_log_loss": C_LOSS_SK_BINARY_LOG, "sk_poisson": C_LOSS_SK_POISSON}
OPT_CODES = {"sgd": C_OPT_SGD, "momentum": C_OPT_MOMENTUM, "nesterov": C_OPT_NESTEROV,
             "adam": C_OPT_ADAM}


cdef struct Net:
    int n_layers             # L, number of weight layers
    const Py_ssize_t* dims   # L + 1 layer widths
    const Py_ssize_t* w_off  # offset of W(l) in theta / grad
    const Py_ssize_t* b_off  # offset of b(l)
    Py_ssize_t n_params
    int hidden_act
    int out_act
    int loss
    double l2                # α: penalty α/(2·Σw)·Σ‖W‖², gradient α·W/Σw
    bint sk_scaling          # scikit-learn's gradient convention (see module docstring)


cdef struct Optim:
    int kind
    double momentum, beta1, beta2, eps
    void* s1                 # velocity, or Adam's first moment
    void* s2                 # Adam's second moment
    int64_t t                # Adam's step count


cdef struct Batch:
    const void* X            # (n, d0)
    const void* Y            # (n, dL) or NULL when labels are given
    const int64_t* labels    # (n,) or NULL
    const void* sw           # (n,) sample weights or NULL
    Py_ssize_t n
    double norm              # Σ sample weights, or n



# --------------------------------------------------------------------------------------
# BLAS and element-wise helpers
# --------------------------------------------------------------------------------------

# The BLAS routines are called through pointers so that a faster library than scipy's
# OpenBLAS can be swapped in at run time (fastmlp/blas.py); scipy's cython_blas is the
# default and the fallback.  All use the Fortran interface with 32-bit integers.
ctypedef void (*sgemm_t)(char*, char*, int*, int*, int*, float*, float*, int*, float*, int*,
                         float*, float*, int*) noexcept nogil
ctypedef void (*dgemm_t)(char*, char*, int*, int*, int*, double*, double*, int*, double*,
                         int*, double*, double*, int*) noexcept nogil
ctypedef void (*sgemv_t)(char*, int*, int*, float*, float*, int*, float*, int*, float*,
                         float*, int*) noexcept nogil
ctypedef void (*dgemv_t)(char*, int*, int*, double*, double*, int*, double*, int*, double*,
                         double*, int*) noexcept nogil
ctypedef void (*sger_t)(int*, int*, float*, float*, int*, float*, int*, float*,
                        int*) noexcept nogil
ctypedef void (*dger_t)(int*, int*, double*, double*, int*, double*, int*, double*,
                        int*) noexcept nogil

cdef sgemm_t p_sgemm = sgemm
cdef dgemm_t p_dgemm = dgemm
cdef sgemv_t p_sgemv = sgemv
cdef dgemv_t p_dgemv = dgemv
cdef sger_t p_sger = sger
cdef dger_t p_dger = dger


def _set_blas(size_t s_gemm=0, size_t d_gemm=0, size_t s_gemv=0, size_t d_gemv=0,
              size_t s_ger=0, size_t d_ger=0):
    """Point the core at BLAS routines by address (0: scipy's); used by fastmlp.blas only.

    The addresses must be the Fortran-interface routines (LP64) of a library that stays
    loaded for the life of the process; fastmlp.blas resolves and checks them.
    """
    global p_sgemm, p_dgemm, p_sgemv, p_dgemv, p_sger, p_dger
    p_sgemm = <sgemm_t>s_gemm if s_gemm else sgemm
    p_dgemm = <dgemm_t>d_gemm if d_gemm else dgemm
    p_sgemv = <sgemv_t>s_gemv if s_gemv else sgemv
    p_dgemv = <dgemv_t>d_gemv if d_gemv else dgemv
    p_sger = <sger_t>s_ger if s_ger else sger
    p_dger = <dger_t>d_ger if d_ger else dger


cdef inline void gemm(bint trans_a, bint trans_b, int m, int n, int k, floating alpha,
                      const floating* a, int lda, const floating* b, int ldb,
                      floating beta, floating* c, int ldc) noexcept nogil:
    # Row-major C (m, n) = alpha·op(A)·op(B) + beta·C.  A row-major matrix read as
    # column-major is its transpose, so BLAS computes Cᵀ = op(B)ᵀ·op(A)ᵀ with the
    # operands swapped: no copies, no layout conversion.
    cdef char ta = b'T' if trans_b else b'N'
    cdef char tb = b'T' if trans_a else b'N'
    if floating is float:
        p_sgemm(&ta, &tb, &n, &m, &k, &alpha, <float*>b, &ldb, <float*>a, &lda,
                &beta, c, &ldc)
    else:
        p_dgemm(&ta, &tb, &n, &m, &k, &alpha, <double*>b, &ldb, <double*>a, &lda,
                &beta, c, &ldc)


cdef inline void gemv(bint trans, int m, int n, floating alpha, const floating* a, int lda,
                      const floating* x, floating beta, floating* y) noexcept nogil:
    # Row-major y = alpha·op(A)·x + beta·y for A (m, n): column-major BLAS on Aᵀ, so the
    # transpose flag flips.  A batch of one row turns each layer's GEMM into this or ger,
    # whose call overhead is a fraction of gemm's.
    cdef char t = b'N' if trans else b'T'
    cdef int one = 1
    if floating is float:
        p_sgemv(&t, &n, &m, &alpha, <float*>a, &lda, <float*>x, &one, &beta, y, &one)
    else:
        p_dgemv(&t, &n, &m, &alpha, <double*>a, &lda, <double*>x, &one, &beta, y, &one)


cdef inline void ger(int m, int n, floating alpha, const floating* x, const floating* y,
                     floating* a, int lda) noexcept nogil:
    # Row-major A (m, n) += alpha·x·yᵀ, as the column-major update of Aᵀ.
    cdef int one = 1
    if floating is float:
        p_sger(&n, &m, &alpha, <float*>y, &one, <float*>x, &one, a, &lda)
    else:
        p_dger(&n, &m, &alpha, <double*>y, &one, <double*>x, &one, a, &lda)


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


cdef inline uint64_t nonfinite64(double x) noexcept nogil:
    # Bit 63 of the result is set iff x is ±Inf or NaN (every exponent bit set).  Unsigned
    # integer operations only: a double compare turned into a flag does not vectorise
    # with SSE2, these do (and unsigned, the carry into bit 63 is defined behaviour).
    cdef uint64_t b
    memcpy(&b, &x, 8)
    return (b & ((<uint64_t>0x7ff) << 52)) + ((<uint64_t>1) << 52)


cdef bint all_finite(const floating* x, Py_ssize_t size) noexcept nogil:
    # x - x is 0 for finite x and NaN for ±Inf/NaN; OR-ing the flags vectorises, unlike
    # an early-exit loop.
    cdef Py_ssize_t i
    cdef int32_t bad32 = 0
    cdef uint64_t bad64 = 0
    for i in range(size):
        if floating is float:
            bad32 |= (x[i] - x[i]) != 0
        else:
            bad64 |= nonfinite64(x[i])
    return not ((bad32 != 0) | ((bad64 >> 63) != 0))


cdef bint labels_in_range(const int64_t* y, Py_ssize_t n, int64_t k) noexcept nogil:
    cdef Py_ssize_t i
    cdef int bad = 0
    for i in range(n):
        bad |= (y[i] < 0) | (y[i] >= k)
    return not bad


# --------------------------------------------------------------------------------------
# Kernels: one job each, named after the seed equation they compute
# --------------------------------------------------------------------------------------

cdef void linear_forward(const floating* A, Py_ssize_t n, Py_ssize_t d_in,
                         const floating* W, const floating* b, Py_ssize_t d_out,
                         floating* Z) noexcept nogil:
    # Z = A·W + 1·bᵀ (seed 003, s(l) = b(l) + Σ w·x; seed 001, W1·X + b1·1ᵀ transposed).
    # The bias is folded into the GEMM: Z is pre-filled with b and gemm runs with beta=1.
    cdef Py_ssize_t i
    for i in range(n):
        memcpy(Z + i * d_out, b, d_out * sizeof(floating))
    if n == 1:
        gemv(True, <int>d_in, <int>d_out, <floating>1.0, W, <int>d_out, A, <floating>1.0, Z)
        return
    gemm(False, False, <int>n, <int>d_out, <int>d_in, <floating>1.0, A, <int>d_in,
         W, <int>d_out, <floating>1.0, Z, <int>d_out)


cdef void relu_forward(floating* Z, Py_ssize_t size) noexcept nogil:
    # A = θ(Z) = max(Z, 0) in place (seeds 001, 003).  The derivative mask θ'(Z) = [Z > 0]
    # (θ'(0) = 0) equals [A > 0], so this single pass also records the mask, in A itself.
    # NaN is kept (NaN < 0 is false) so that a diverging step is seen, not hidden.
    # Written as an unconditional select so the compiler vectorises it.
    cdef Py_ssize_t i
    for i in range(size):
        Z[i] = 0 if Z[i] < 0 else Z[i]


cdef void relu_mask_delta(const floating* A, floating* D, Py_ssize_t size) noexcept nogil:
    # D ⊙= θ'(S) with θ'(S) = [A > 0]  (seed 003 eq. 34; seed 001's V ⊙ D).
    cdef Py_ssize_t i
    for i in range(size):
        D[i] = D[i] if A[i] > 0 else 0


cdef void activation_forward(int kind, floating* Z, Py_ssize_t n, Py_ssize_t k) noexcept nogil:
    # A = g(Z) in place, for the element-wise activations and the row-wise softmax.
    cdef Py_ssize_t i, size = n * k
    if kind == C_ACT_RELU:
        relu_forward(Z, size)
    elif kind == C_ACT_LOGISTIC:
        for i in range(size):
            Z[i] = 1 / (1 + fexp(-Z[i]))
    elif kind == C_ACT_TANH:
        for i in range(size):
            Z[i] = ftanh(Z[i])
    elif kind == C_ACT_EXP:
        for i in range(size):
            Z[i] = fexp(Z[i])
    elif kind == C_ACT_SOFTMAX:
        softmax_rows(Z, n, k)


cdef void activation_backward(int kind, const floating* A, floating* D,
                              Py_ssize_t size) noexcept nogil:
    # D ⊙= g'(Z), with g' written through the activation's output A: relu [A > 0],
    # logistic A·(1 − A), tanh 1 − A² (seed 002: ∇a = g'(a) ⊙ ∇ŷ; seed 003 eq. 34).
    cdef Py_ssize_t i
    if kind == C_ACT_RELU:
        relu_mask_delta(A, D, size)
    elif kind == C_ACT_LOGISTIC:
        for i in range(size):
            D[i] = D[i] * A[i] * (1 - A[i])
    elif kind == C_ACT_TANH:
        for i in range(size):
            D[i] = D[i] * (1 - A[i] * A[i])


cdef void backprop_delta(int act, const floating* D_next, Py_ssize_t n, Py_ssize_t d_next,
                         const floating* W_next, const floating* A, Py_ssize_t d,
                         floating* D) noexcept nogil:
    # Δ(l) = θ'(S(l)) ⊙ (Δ(l+1)·W(l+1)ᵀ)   (seed 003 eq. 34/42): (n, d_next)·(d_next, d).
    if n == 1:
        gemv(False, <int>d, <int>d_next, <floating>1.0, W_next, <int>d_next, D_next,
             <floating>0.0, D)
    else:
        gemm(False, True, <int>n, <int>d, <int>d_next, <floating>1.0, D_next, <int>d_next,
             W_next, <int>d_next, <floating>0.0, D, <int>d)
    activation_backward(act, A, D, n * d)


cdef void linear_backward(const floating* A_prev, Py_ssize_t n, Py_ssize_t d_in,
                          const floating* D, Py_ssize_t d_out,
                          floating* dW, floating* db) noexcept nogil:
    # dW(l) = X(l-1)ᵀ·Δ(l) (seed 003 eq. 33), db(l) = 1ᵀ·Δ(l) (eq. 41).  The 1/N of the
    # seed is already inside Δ(L) (see the output deltas), so no scaling here.
    if n == 1:
        memset(dW, 0, d_in * d_out * sizeof(floating))
        ger(<int>d_in, <int>d_out, <floating>1.0, A_prev, D, dW, <int>d_out)
        memcpy(db, D, d_out * sizeof(floating))
        return
    gemm(True, False, <int>d_in, <int>d_out, <int>n, <floating>1.0, A_prev, <int>d_in,
         D, <int>d_out, <floating>0.0, dW, <int>d_out)
    column_sums(D, n, d_out, db)


cdef void column_sums(const floating* D, Py_ssize_t n, Py_ssize_t d,
                      floating* out) noexcept nogil:
    # out = 1ᵀ·D for D (n, d), row by row so the inner loop runs over contiguous memory.
    cdef Py_ssize_t i, j
    cdef const floating* row
    memset(out, 0, d * sizeof(floating))
    for i in range(n):
        row = D + i * d
        for j in range(d):
            out[j] += row[j]


cdef double mse_loss_delta(const floating* Yhat, const floating* Y, Py_ssize_t n,
                           Py_ssize_t k, floating* D) noexcept nogil:
    # L = (1/n)·Σᵢ‖ŷᵢ − yᵢ‖² and ∇ŷ = (2/n)·(Ŷ − Y)  (seed 000 eq. 10–11, seed 001 §3:
    # R = f(X) − Y, factor 2 kept).  The loss is accumulated in double for both dtypes.
    cdef Py_ssize_t i
    cdef double total = 0.0
    cdef floating r
    cdef floating scale = <floating>(2.0 / n)
    for i in range(n * k):
        r = Yhat[i] - Y[i]
        total += <double>r * r
        D[i] = scale * r
    return total / n


cdef double softmax_xent_loss_delta(const floating* logits, const floating* Y,
                                    const int64_t* labels, Py_ssize_t n, Py_ssize_t k,
                                    floating* D) noexcept nogil:
    # L = −(1/n)·Σᵢ Σₖ yᵢₖ·log pᵢₖ with p = softmax(logits), and Δ(L) = (P·sᵢ − Y)/n with
    # sᵢ = Σₖ yᵢₖ (seed 003 eq. 3–4, 10: δ = p − y once rows of Y sum to 1, as they do).
    # log pᵢₖ = zᵢₖ − (m + log Σ exp(z − m)), m = max z: finite for logits of any size.
    # Y is either dense (n, k) or, when Y is NULL, int labels (n,).
    cdef Py_ssize_t i, j
    cdef double total = 0.0
    cdef double row_loss, y_sum
    cdef floating m, s, scale
    cdef const floating* z
    cdef const floating* y
    cdef floating* d
    cdef floating inv_n = <floating>(1.0 / n)
    for i in range(n):
        z = logits + i * k
        d = D + i * k
        m = z[0]
        for j in range(1, k):
            if z[j] > m:
                m = z[j]
        s = 0
        for j in range(k):
            d[j] = fexp(z[j] - m)
            s += d[j]
        if Y == NULL:
            # (m − z) first: for huge logits m + log s would round log s away.
            total += (<double>m - z[labels[i]]) + log(<double>s)
            scale = inv_n / s
            for j in range(k):
                d[j] *= scale
            d[labels[i]] -= inv_n
        else:
            y = Y + i * k
            row_loss = 0.0
            y_sum = 0.0
            for j in range(k):
                row_loss += <double>y[j] * ((<double>m - z[j]) + log(<double>s))
                y_sum += y[j]
            total += row_loss
            scale = <floating>(y_sum / s) * inv_n
            for j in range(k):
                d[j] = d[j] * scale - y[j] * inv_n
    return total / n


cdef double sk_loss_delta(int kind, const floating* P, const floating* Y,
                          const floating* sw, Py_ssize_t n, Py_ssize_t k, double norm,
                          floating* D) noexcept nogil:
    # scikit-learn's output losses over P, the output layer after its activation, with
    # optional sample weights (NULL: all 1) and norm = Σ weights.  Every one pairs with its
    # canonical output activation, so the raw delta is (P − Y)·wᵢ, unscaled; scikit-learn
    # divides the gradients by Σw instead.  Probabilities are clipped to [eps, 1 − eps]
    # inside the logarithms, as scikit-learn does.
    cdef Py_ssize_t i, j
    cdef double total = 0.0, row
    cdef floating w, p, y, eps = feps(<floating>0), one_m_eps = 1 - feps(<floating>0)
    for i in range(n):
        w = 1 if sw == NULL else sw[i]
        row = 0.0
        for j in range(k):
            p = P[i * k + j]
            y = Y[i * k + j]
            D[i * k + j] = (p - y) * w
            if kind == C_LOSS_SK_SQUARED:
                row += <double>((y - p) * (y - p))
            elif kind == C_LOSS_SK_POISSON:
                row += <double>(xlogy(y, y / p) - y + p)
            else:
                p = eps if p < eps else (one_m_eps if p > one_m_eps else p)
                row -= <double>xlogy(y, p)
                if kind == C_LOSS_SK_BINARY_LOG:
                    row -= <double>xlogy(1 - y, 1 - p)
        total += row * w
    if kind == C_LOSS_SK_SQUARED:
        return 0.5 * total / norm / k
    return total / norm


cdef void softmax_rows(floating* Z, Py_ssize_t n, Py_ssize_t k) noexcept nogil:
    # P = softmax(Z) row by row, in place, shifted by the row maximum (seed 003 eq. 3).
    cdef Py_ssize_t i, j
    cdef floating m, s
    cdef floating* z
    for i in range(n):
        z = Z + i * k
        m = z[0]
        for j in range(1, k):
            if z[j] > m:
                m = z[j]
        s = 0
        for j in range(k):
            z[j] = fexp(z[j] - m)
            s += z[j]
        for j in range(k):
            z[j] /= s


cdef double l2_penalty(const Net* net, const floating* theta) noexcept nogil:
    # Σₗ ‖W(l)‖² (biases excluded), accumulated in double.  Eight running sums, not one:
    # a single sum is a chain of dependent additions (one per ~4 cycles); eight
    # independent ones run at the adder's throughput and vectorise.
    cdef int l, j
    cdef Py_ssize_t i, size, blocked
    cdef double acc[8]
    cdef const floating* W
    for j in range(8):
        acc[j] = 0.0
    for l in range(net.n_layers):
        W = theta + net.w_off[l]
        size = net.dims[l] * net.dims[l + 1]
        blocked = size - size % 8
        for i in range(0, blocked, 8):
            for j in range(8):
                acc[j] += <double>W[i + j] * W[i + j]
        for i in range(blocked, size):
            acc[0] += <double>W[i] * W[i]
    return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]))


cdef void scale_gradients(floating* dW, const floating* W, Py_ssize_t size, double alpha,
                          double norm, bint sk_order) noexcept nogil:
    # fastmlp: dW += (α/n)·W.  scikit-learn: dW = (dW + α·W) / Σw, in that order.
    cdef Py_ssize_t i
    cdef floating a = <floating>alpha, c = <floating>(alpha / norm), nrm = <floating>norm
    if sk_order:
        if alpha != 0:
            for i in range(size):
                dW[i] = (dW[i] + a * W[i]) / nrm
        else:
            for i in range(size):
                dW[i] = dW[i] / nrm
    elif alpha != 0:
        for i in range(size):
            dW[i] += c * W[i]


# How the update kernels turn the raw gradient AᵀΔ they are given into ∇θ:
# g = (raw + a·θ)·nrm — fastmlp's weight decay is a = α/n, nrm = 1; scikit-learn's is
# a = α, nrm = 1/Σw (a multiplication where scikit-learn divides: one rounding apart,
# and no division in a pass bound by its arithmetic).  Without decay (biases, α = 0) the
# a·θ term is left out, not multiplied by zero, so that an infinite θ stays infinite.
# Training steps leave this to the update passes, which read θ anyway: one pass less over
# the parameters than scaling the gradient buffer first.  `decay` is the same for a whole
# loop, so the compiler splits the loop on it and both versions vectorise.
cdef inline floating grad_value(floating raw, floating w, bint decay, floating a,
                                floating nrm) noexcept nogil:
    if decay:
        return (raw + a * w) * nrm
    return raw * nrm


cdef bint update_is_finite(const Optim* opt, const floating* theta, const floating* grad,
                           const floating* s1, const floating* s2, Py_ssize_t size,
                           double lr, double alpha, double norm) noexcept nogil:
    # Evaluates the optimizer's new values without storing them: the step may write only if
    # every new parameter and state value is finite.  It reproduces the exact arithmetic
    # of the update kernels below, so "finite here" means "finite there"; a non-finite
    # gradient always makes a new value non-finite, so this also checks the gradient.
    # Comparisons are combined with a bitwise |, not `and`: no branch, so loops vectorise.
    cdef Py_ssize_t i
    cdef int32_t bad32 = 0      # float flags; double ones through nonfinite64
    cdef uint64_t bad64 = 0
    cdef floating t, v, g, mm, vv, fl = <floating>lr, mu = <floating>opt.momentum
    cdef floating b1 = <floating>opt.beta1, c1 = <floating>(1 - opt.beta1)
    cdef floating b2 = <floating>opt.beta2, c2 = <floating>(1 - opt.beta2)
    cdef floating e = <floating>opt.eps, a = <floating>alpha, nrm = <floating>norm
    cdef floating flr_t
    cdef bint decay = a != 0
    if opt.kind == C_OPT_SGD:
        for i in range(size):
            t = theta[i] - fl * grad_value(grad[i], theta[i], decay, a, nrm)
            if floating is float:
                bad32 |= (t - t) != 0
            else:
                bad64 |= nonfinite64(t)
    elif opt.kind == C_OPT_ADAM:
        flr_t = <floating>adam_step_size(lr, opt.beta1, opt.beta2, opt.t + 1)
        for i in range(size):
            g = grad_value(grad[i], theta[i], decay, a, nrm)
            mm = b1 * s1[i] + c1 * g
            vv = b2 * s2[i] + c2 * (g * g)
            t = theta[i] + (-flr_t * mm) / (fsqrt(vv) + e)
            if floating is float:
                bad32 |= ((t - t) != 0) | ((mm - mm) != 0) | ((vv - vv) != 0)
            else:
                bad64 |= nonfinite64(t) | nonfinite64(mm) | nonfinite64(vv)
    elif opt.kind == C_OPT_NESTEROV:     # (two loops: a select inside one kept it scalar)
        for i in range(size):
            g = grad_value(grad[i], theta[i], decay, a, nrm)
            v = mu * s1[i] - fl * g
            t = theta[i] + (mu * v - fl * g)
            if floating is float:
                bad32 |= ((t - t) != 0) | ((v - v) != 0)
            else:
                bad64 |= nonfinite64(t) | nonfinite64(v)
    else:
        for i in range(size):
            g = grad_value(grad[i], theta[i], decay, a, nrm)
            v = mu * s1[i] - fl * g
            t = theta[i] + v
            if floating is float:
                bad32 |= ((t - t) != 0) | ((v - v) != 0)
            else:
                bad64 |= nonfinite64(t) | nonfinite64(v)
    return not ((bad32 != 0) | ((bad64 >> 63) != 0))


cdef inline double adam_step_size(double lr, double beta1, double beta2,
                                  int64_t t) noexcept nogil:
    # η_t = η·√(1 − β2ᵗ)/(1 − β1ᵗ): Adam's bias correction folded into the step size.
    return lr * sqrt(1 - pow(beta2, <double>t)) / (1 - pow(beta1, <double>t))


cdef void sgd_update(floating* theta, const floating* grad, Py_ssize_t size,
                     floating lr, floating a=0, floating nrm=1) noexcept nogil:
    # θ ← θ − η·∇θ  (seed 000 eq. 12, with the 1/m already inside the gradient).
    cdef Py_ssize_t i
    cdef bint decay = a != 0
    for i in range(size):
        theta[i] -= lr * grad_value(grad[i], theta[i], decay, a, nrm)


cdef void momentum_update(floating* theta, const floating* grad, floating* vel,
                          Py_ssize_t size, floating lr, floating mu, bint nesterov,
                          floating a=0, floating nrm=1) noexcept nogil:
    # v ← μ·v − η·∇θ; θ ← θ + v, or with Nesterov's correction θ ← θ + μ·v − η·∇θ.
    cdef Py_ssize_t i
    cdef floating v, g
    cdef bint decay = a != 0
    if nesterov:        # two loops: a select inside one kept it scalar
        for i in range(size):
            g = grad_value(grad[i], theta[i], decay, a, nrm)
            v = mu * vel[i] - lr * g
            vel[i] = v
            theta[i] += mu * v - lr * g
    else:
        for i in range(size):
            g = grad_value(grad[i], theta[i], decay, a, nrm)
            v = mu * vel[i] - lr * g
            vel[i] = v
            theta[i] += v


cdef void adam_update(floating* theta, const floating* grad, floating* m, floating* v,
                      Py_ssize_t size, double lr, double beta1, double beta2,
                      double eps, int64_t t, floating a=0, floating nrm=1) noexcept nogil:
    # Adam with the bias correction folded into the step size (Kingma & Ba, §2):
    # m ← β1·m + (1−β1)·g, v ← β2·v + (1−β2)·g², θ ← θ − η_t·m/(√v + ε), all in the model
    # dtype with the constants rounded to it.  (scikit-learn's float32 step goes through
    # float64 by numpy's promotion; a float32 division instead costs a float32 ulp per
    # step and halves this pass, which is bound by its divisions.)
    cdef Py_ssize_t i
    cdef floating lr_t = <floating>adam_step_size(lr, beta1, beta2, t)
    cdef floating b1 = <floating>beta1, c1 = <floating>(1 - beta1)
    cdef floating b2 = <floating>beta2, c2 = <floating>(1 - beta2), e = <floating>eps
    cdef floating g
    cdef bint decay = a != 0
    for i in range(size):
        g = grad_value(grad[i], theta[i], decay, a, nrm)
        m[i] = b1 * m[i] + c1 * g
        v[i] = b2 * v[i] + c2 * (g * g)
        theta[i] = theta[i] + (-lr_t * m[i]) / (fsqrt(v[i]) + e)


cdef inline void segment(const Net* net, int s, double norm, Py_ssize_t* off,
                         Py_ssize_t* size, double* a, double* nrm) noexcept nogil:
    # Segment s of the flat buffer: W(s/2) for even s, b(s/2) for odd s, with the a and
    # nrm of grad_value that turn its raw gradient into ∇θ.
    cdef int l = s // 2
    cdef bint weights = s % 2 == 0
    off[0] = net.w_off[l] if weights else net.b_off[l]
    size[0] = net.dims[l] * net.dims[l + 1] if weights else net.dims[l + 1]
    if net.sk_scaling:
        a[0] = net.l2 if weights else 0.0
        nrm[0] = 1.0 / norm
    else:
        a[0] = net.l2 / norm if weights else 0.0
        nrm[0] = 1.0


# --------------------------------------------------------------------------------------
# Whole-network passes over the flat parameter buffer
# --------------------------------------------------------------------------------------

cdef void forward_pass(const Net* net, const floating* theta, const floating* X,
                       Py_ssize_t n, floating** acts) noexcept nogil:
    # acts[l] receives A(l+1), (n, dims[l+1]); the last holds the network's output, after
    # the output activation (identity for raw outputs and logits).
    cdef int l, L = net.n_layers
    cdef const floating* A_prev = X
    for l in range(L):
        linear_forward(A_prev, n, net.dims[l], theta + net.w_off[l], theta + net.b_off[l],
                       net.dims[l + 1], acts[l])
        activation_forward(net.hidden_act if l < L - 1 else net.out_act, acts[l], n,
                           net.dims[l + 1])
        A_prev = acts[l]


cdef double output_loss_delta(const Net* net, const floating* out, const Batch* b,
                              floating* D) noexcept nogil:
    cdef Py_ssize_t k = net.dims[net.n_layers]
    cdef double loss
    if net.loss == C_LOSS_MSE:
        loss = mse_loss_delta(out, <const floating*>b.Y, b.n, k, D)
        activation_backward(net.out_act, out, D, b.n * k)   # seed 002
        return loss
    if net.loss == C_LOSS_SOFTMAX_XENT:
        return softmax_xent_loss_delta(out, <const floating*>b.Y, b.labels, b.n, k, D)
    return sk_loss_delta(net.loss, out, <const floating*>b.Y, <const floating*>b.sw,
                         b.n, k, b.norm, D)


cdef bint net_update_is_finite(const Net* net, const Optim* opt, const floating* theta,
                               const floating* grad, double lr, double norm) noexcept nogil:
    # update_is_finite over every segment; grad holds raw gradients (see grad_value).
    cdef int s
    cdef Py_ssize_t off, size
    cdef double a, nrm
    cdef const floating* s1 = <const floating*>opt.s1
    cdef const floating* s2 = <const floating*>opt.s2
    for s in range(2 * net.n_layers):
        segment(net, s, norm, &off, &size, &a, &nrm)
        if not update_is_finite(opt, theta + off, grad + off,
                                s1 + off if s1 != NULL else NULL,
                                s2 + off if s2 != NULL else NULL,
                                size, lr, a, nrm):
            return False
    return True


cdef void apply_update(const Net* net, Optim* opt, floating* theta, const floating* grad,
                       double lr, double norm) noexcept nogil:
    # The optimizer step over every segment; grad holds raw gradients (see grad_value).
    cdef int s
    cdef Py_ssize_t off, size
    cdef double a, nrm
    cdef floating* s1 = <floating*>opt.s1
    cdef floating* s2 = <floating*>opt.s2
    if opt.kind == C_OPT_ADAM:
        opt.t += 1
    for s in range(2 * net.n_layers):
        segment(net, s, norm, &off, &size, &a, &nrm)
        if opt.kind == C_OPT_SGD:
            sgd_update(theta + off, grad + off, size, <floating>lr, <floating>a,
                       <floating>nrm)
        elif opt.kind == C_OPT_ADAM:
            adam_update(theta + off, grad + off, s1 + off, s2 + off, size, lr, opt.beta1,
                        opt.beta2, opt.eps, opt.t, <floating>a, <floating>nrm)
        else:
            momentum_update(theta + off, grad + off, s1 + off, size, <floating>lr,
                            <floating>opt.momentum, opt.kind == C_OPT_NESTEROV,
                            <floating>a, <floating>nrm)


cdef double max_abs(const floating* x, Py_ssize_t size) noexcept nogil:
    # max |x|, or +inf if any x is NaN (a NaN must never pass a bound test).  Computed on
    # the bit patterns with the sign cleared: for IEEE floats their integer order is the
    # order of |x|, every NaN sorts above +inf, and an integer max-reduction vectorises
    # (a float one does not without -ffast-math).
    cdef Py_ssize_t i
    cdef int32_t b32, m32 = 0
    cdef int64_t b64, m64 = 0
    cdef int64_t sign_off = ~((<int64_t>1) << 63), inf64 = (<int64_t>0x7ff) << 52
    cdef float f32
    cdef double f64
    if floating is float:
        for i in range(size):
            memcpy(&b32, &x[i], 4)
            b32 = b32 & 0x7fffffff
            m32 = b32 if b32 > m32 else m32
        if m32 > 0x7f800000:
            return INFINITY
        memcpy(&f32, &m32, 4)
        return f32
    else:
        for i in range(size):
            memcpy(&b64, &x[i], 8)
            b64 = b64 & sign_off
            m64 = b64 if b64 > m64 else m64
        if m64 > inf64:
            return INFINITY
        memcpy(&f64, &m64, 8)
        return f64


cdef bint fused_sgd_is_safe(const Net* net, const floating* theta, floating** acts,
                            const floating* X, Py_ssize_t n, const floating* D_out,
                            double lr) noexcept nogil:
    # The fused SGD step writes W(l) ← β·W(l) − η·A(l-1)ᵀ·Δ(l) straight from the GEMM, so
    # it cannot look at a gradient before applying it.  It is taken only when a priori
    # bounds prove every new value finite: |η·AᵀΔ| ≤ η·n·max|A|·max|Δ|, and the deltas
    # below the output obey max|Δ(l-1)| ≤ d(l)·max|Δ(l)|·max|W(l)|·max|g'|.  The bounds
    # are loose by orders of magnitude in practice; if one fails, the exact-check path
    # runs instead, so divergence is still caught with the parameters untouched.
    cdef int l, L = net.n_layers
    cdef double big = 1e30 if floating is float else 1e300
    cdef double d_max = max_abs(D_out, n * net.dims[L])
    cdef double a_max, w_max, b_max, beta = 1 - lr * net.l2 / n
    cdef double g_max = 0.25 if net.hidden_act == C_ACT_LOGISTIC else 1.0
    if beta < 0:
        beta = -beta
    for l in range(L - 1, -1, -1):
        a_max = max_abs(X if l == 0 else acts[l - 1], n * net.dims[l])
        w_max = max_abs(theta + net.w_off[l], net.dims[l] * net.dims[l + 1])
        b_max = max_abs(theta + net.b_off[l], net.dims[l + 1])
        if not (beta * w_max + lr * n * a_max * d_max < big):
            return False
        if not (b_max + lr * n * d_max < big):
            return False
        d_max = net.dims[l + 1] * d_max * w_max * g_max
        if not (d_max < big):
            return False
    return True


cdef void fused_sgd_backward(const Net* net, floating* theta, floating* grad,
                             floating** acts, floating* D, floating* D_other,
                             const floating* X, Py_ssize_t n, double lr) noexcept nogil:
    # Backpropagation with the SGD update folded into the weight GEMM (seed 003 eq. 33
    # and 000 eq. 12 in one BLAS call): W(l) ← β·W(l) − η·A(l-1)ᵀ·Δ(l), β = 1 − η·α/n.
    # Δ(l-1) is computed from W(l) before W(l) changes.  No gradient buffer is written for
    # the weights and no separate update pass runs.
    cdef int l, L = net.n_layers
    cdef Py_ssize_t j, d_in, d_out
    cdef floating* tmp
    cdef floating* W
    cdef floating* bias
    cdef floating* db
    cdef const floating* A_prev
    cdef floating flr = <floating>lr
    cdef floating beta = <floating>(1 - lr * net.l2 / n)
    for l in range(L - 1, -1, -1):
        d_in = net.dims[l]
        d_out = net.dims[l + 1]
        A_prev = X if l == 0 else acts[l - 1]
        W = theta + net.w_off[l]
        if l > 0:
            backprop_delta(net.hidden_act, D, n, d_out, W, acts[l - 1], d_in, D_other)
        bias = theta + net.b_off[l]
        db = grad + net.b_off[l]
        column_sums(D, n, d_out, db)
        for j in range(d_out):
            bias[j] -= flr * db[j]
        if n == 1 and beta == 1:
            ger(<int>d_in, <int>d_out, -flr, A_prev, D, W, <int>d_out)
        else:
            gemm(True, False, <int>d_in, <int>d_out, <int>n, -flr, A_prev, <int>d_in,
                 D, <int>d_out, beta, W, <int>d_out)
        tmp = D
        D = D_other
        D_other = tmp


cdef int train_step(const Net* net, Optim* opt, floating* theta, floating* grad,
                    floating** acts, floating* D_a, floating* D_b, const Batch* b,
                    double lr, bint update, bint check_inputs,
                    double* loss_out) noexcept nogil:
    # Forward, loss, backward (seed 003 eq. 29–42) and, if update, the optimizer step — all
    # in one call.  Parameters and optimizer state are written only once the loss and
    # every new value are known to be finite, so a diverging step leaves them
    # bit-identical.
    cdef int l, L = net.n_layers
    cdef Py_ssize_t n = b.n, k = net.dims[L]
    cdef const floating* X = <const floating*>b.X
    cdef floating* D = D_a
    cdef floating* D_other = D_b
    cdef floating* tmp
    cdef const floating* A_prev
    cdef double norm = b.norm if net.sk_scaling else <double>n
    if check_inputs:
        if not all_finite(X, n * net.dims[0]):
            return BAD_X
        if b.Y != NULL and not all_finite(<const floating*>b.Y, n * k):
            return BAD_Y
        if b.Y == NULL and not labels_in_range(b.labels, n, k):
            return BAD_LABEL
    forward_pass(net, theta, X, n, acts)
    loss_out[0] = output_loss_delta(net, acts[L - 1], b, D)
    if net.l2 != 0:
        loss_out[0] += 0.5 * net.l2 * l2_penalty(net, theta) / norm
    if not (loss_out[0] - loss_out[0] == 0):
        return DIVERGED
    if (update and opt.kind == C_OPT_SGD and not net.sk_scaling
            and fused_sgd_is_safe(net, theta, acts, X, n, D, lr)):
        fused_sgd_backward(net, theta, grad, acts, D, D_other, X, n, lr)
        return OK
    for l in range(L - 1, -1, -1):
        A_prev = X if l == 0 else acts[l - 1]
        linear_backward(A_prev, n, net.dims[l], D, net.dims[l + 1],
                        grad + net.w_off[l], grad + net.b_off[l])
        if not update:       # else the update passes apply the decay and scaling
            scale_gradients(grad + net.w_off[l], theta + net.w_off[l],
                            net.dims[l] * net.dims[l + 1], net.l2, norm, net.sk_scaling)
            if net.sk_scaling:
                scale_gradients(grad + net.b_off[l], theta, net.dims[l + 1], 0.0, norm,
                                True)
        if l > 0:
            backprop_delta(net.hidden_act, D, n, net.dims[l + 1], theta + net.w_off[l],
                           acts[l - 1], net.dims[l], D_other)
            tmp = D
            D = D_other
            D_other = tmp
    if not update:
        return OK if all_finite(grad, net.n_params) else DIVERGED
    if not net_update_is_finite(net, opt, theta, grad, lr, norm):
        return DIVERGED
    apply_update(net, opt, theta, grad, lr, norm)
    return OK


# --------------------------------------------------------------------------------------
# Python entry points
# --------------------------------------------------------------------------------------

cdef inline bint _is_carray(object a, int typenum, int ndim):
    # An ndarray of exactly this dtype in native byte order, C-contiguous, aligned, of
    # this ndim: what the kernels may read through a raw pointer.
    if type(a) is not cnp.ndarray:
        return False
    return (cnp.PyArray_TYPE(<cnp.ndarray>a) == typenum
            and cnp.PyArray_NDIM(<cnp.ndarray>a) == ndim
            and cnp.PyArray_CHKFLAGS(<cnp.ndarray>a, cnp.NPY_ARRAY_CARRAY_RO)
            and cnp.PyArray_ISNOTSWAPPED(<cnp.ndarray>a))


cdef inline bint _is_writable_carray(object a, int typenum, int ndim):
    return (_is_carray(a, typenum, ndim)
            and cnp.PyArray_CHKFLAGS(<cnp.ndarray>a, cnp.NPY_ARRAY_WRITEABLE))


# Scratch of Engine.forward: hidden activations of this many bytes at most (but never
# fewer than FORWARD_MIN_ROWS rows, so GEMMs stay large enough to run at full speed).
FORWARD_SCRATCH_BYTES = 16 * 2**20
FORWARD_MIN_ROWS = 256


def forward_chunk_rows(Py_ssize_t n, Py_ssize_t width, Py_ssize_t itemsize):
    """Rows per chunk of Engine.forward for n rows and a widest hidden layer of width."""
    if width == 0:
        return max(n, 1)
    return max(min(n, FORWARD_SCRATCH_BYTES // (2 * width * itemsize)),
               min(n, FORWARD_MIN_ROWS), 1)


cdef class Engine:
    """The compiled half of a model: sizes, offsets, workspace, optimizer, and the passes.

    It holds pointers into arrays owned by the model (``theta``, ``grad``, optimizer
    state), which must not be reallocated while the engine lives.  Methods expect inputs
    already shaped and converted by the Python layer; they re-check dtype, shape and layout
    cheaply (C-level flag tests) because the kernels run without bounds checks.

    Parameters
    ----------
    dims : intp array (L + 1,)       layer widths d0 … dL
    theta, grad : (n_params,)        float32 or float64, contiguous, writable
    loss, hidden_act, out_act : str  names from LOSS_CODES / ACT_CODES
    l2 : float                       α ≥ 0 (penalty α/(2·Σw)·Σ‖W‖²)
    sk_scaling : bool                scikit-learn's gradient convention
    """
    cdef Net net
    cdef Optim opt
    cdef cnp.ndarray dims_arr, w_off_arr, b_off_arr
    cdef cnp.ndarray theta, grad, opt_state
    cdef cnp.ndarray work        # activations A(1..L) and two delta buffers, for `cap` rows
    cdef cnp.ndarray gather_x, gather_y, gather_labels, gather_sw
    cdef Py_ssize_t cap, gather_cap, max_width
    cdef int typenum
    cdef bint f64
    cdef void* act_ptrs[64]
    cdef void* theta_ptr
    cdef void* grad_ptr
    cdef void* delta_ptrs[2]

    def __cinit__(self, cnp.ndarray dims, cnp.ndarray theta, cnp.ndarray grad, str loss,
                  str hidden_act="relu", str out_act="identity", double l2=0.0,
                  bint sk_scaling=False):
        cdef Py_ssize_t l, off = 0
        cdef Py_ssize_t L = dims.shape[0] - 1
        if not _is_carray(dims, cnp.NPY_INTP, 1) or L < 1 or L > 64:
            raise ValueError("dims: expected an intp array of 2 to 65 layer widths")
        self.dims_arr = dims.copy()
        self.w_off_arr = np.empty(L, dtype=np.intp)
        self.b_off_arr = np.empty(L, dtype=np.intp)
        cdef Py_ssize_t* d = <Py_ssize_t*>cnp.PyArray_DATA(self.dims_arr)
        cdef Py_ssize_t* wo = <Py_ssize_t*>cnp.PyArray_DATA(self.w_off_arr)
        cdef Py_ssize_t* bo = <Py_ssize_t*>cnp.PyArray_DATA(self.b_off_arr)
        self.max_width = 0
        for l in range(L + 1):
            if d[l] < 1 or d[l] > 2147483647:
                raise ValueError("dims: every layer width must be in [1, 2**31 - 1]")
            if l > 0 and d[l] > self.max_width:
                self.max_width = d[l]
        for l in range(L):
            wo[l] = off
            off += d[l] * d[l + 1]
            bo[l] = off
            off += d[l + 1]
        if theta.dtype == np.float64:
            self.typenum, self.f64 = cnp.NPY_FLOAT64, True
        elif theta.dtype == np.float32:
            self.typenum, self.f64 = cnp.NPY_FLOAT32, False
        else:
            raise TypeError("theta: expected float32 or float64")
        for name, buf in (("theta", theta), ("grad", grad)):
            if not _is_writable_carray(buf, self.typenum, 1) or buf.shape[0] != off:
                raise ValueError(f"{name}: expected a writable contiguous array of "
                                 f"{off} {theta.dtype} values")
        if loss not in LOSS_CODES:
            raise ValueError(f"loss: unknown loss {loss!r}")
        if hidden_act not in ACT_CODES or ACT_CODES[hidden_act] >= C_ACT_SOFTMAX:
            raise ValueError(f"hidden_act: unknown hidden activation {hidden_act!r}")
        if out_act not in ACT_CODES:
            raise ValueError(f"out_act: unknown output activation {out_act!r}")
        if not (l2 >= 0 and l2 < float("inf")):
            raise ValueError("l2: expected a finite number >= 0")
        self.theta, self.grad = theta, grad
        self.theta_ptr = cnp.PyArray_DATA(theta)
        self.grad_ptr = cnp.PyArray_DATA(grad)
        self.net.n_layers = <int>L
        self.net.dims = d
        self.net.w_off = wo
        self.net.b_off = bo
        self.net.n_params = off
        self.net.loss = LOSS_CODES[loss]
        self.net.hidden_act = ACT_CODES[hidden_act]
        self.net.out_act = ACT_CODES[out_act]
        self.net.l2 = l2
        self.net.sk_scaling = sk_scaling
        self.opt.kind = C_OPT_SGD
        self.opt.s1 = NULL
        self.opt.s2 = NULL
        self.opt.t = 0
        self.cap = 0
        self.gather_cap = 0

    @property
    def n_params(self):
        return self.net.n_params

    @property
    def capacity(self):
        """Rows the training workspace holds; grows on demand, never shrinks."""
        return self.cap

    @property
    def adam_steps(self):
        """Adam's step count t (the bias correction uses it)."""
        return self.opt.t

    @adam_steps.setter
    def adam_steps(self, int64_t t):
        if t < 0:
            raise ValueError("adam_steps: expected an int >= 0")
        self.opt.t = t

    def set_optimizer(self, str kind, cnp.ndarray state, double momentum=0.9,
                      double beta1=0.9, double beta2=0.999, double eps=1e-8):
        """Choose the update rule.  state: (0,), (n_params,) or (2·n_params,) array of the
        model dtype holding velocity or Adam's moments; it is updated in place."""
        if kind not in OPT_CODES:
            raise ValueError(f"optimizer: unknown optimizer {kind!r}")
        need = {"sgd": 0, "momentum": 1, "nesterov": 1, "adam": 2}[kind] * self.net.n_params
        if not _is_writable_carray(state, self.typenum, 1) or state.shape[0] != need:
            raise ValueError(f"state: expected a writable contiguous array of {need} values")
        self.opt_state = state
        self.opt.kind = OPT_CODES[kind]
        self.opt.momentum = momentum
        self.opt.beta1 = beta1
        self.opt.beta2 = beta2
        self.opt.eps = eps
        cdef char* base = <char*>cnp.PyArray_DATA(state)
        cdef Py_ssize_t isz = 8 if self.f64 else 4
        self.opt.s1 = base if need else NULL
        self.opt.s2 = base + self.net.n_params * isz if need == 2 * self.net.n_params else NULL

    cdef void _reserve(self, Py_ssize_t n) except *:
        # Workspace for a batch of n rows: A(1..L) and two delta buffers of the widest
        # layer.  Allocated once per new maximum batch size, then reused by every step.
        cdef Py_ssize_t l, total = 0, off = 0
        cdef int L = self.net.n_layers
        cdef char* base
        cdef Py_ssize_t itemsize = 8 if self.f64 else 4
        if n <= self.cap:
            return
        _check_workspace(sum([int(n) * int(self.net.dims[l]) for l in range(1, L + 1)])
                         + 2 * int(n) * int(self.max_width), itemsize, n)
        for l in range(1, L + 1):
            total += n * self.net.dims[l]
        total += 2 * n * self.max_width
        self.work = np.empty(total, dtype=np.float64 if self.f64 else np.float32)
        base = <char*>cnp.PyArray_DATA(self.work)
        for l in range(L):
            self.act_ptrs[l] = base + off * itemsize
            off += n * self.net.dims[l + 1]
        self.delta_ptrs[0] = base + off * itemsize
        self.delta_ptrs[1] = base + (off + n * self.max_width) * itemsize
        self.cap = n

    def reserve(self, Py_ssize_t n):
        """Make the training workspace hold batches of up to ``n`` rows."""
        if n < 1:
            raise ValueError("n: expected a positive batch size")
        self._reserve(n)

    cdef double _check_batch(self, object X, object Y, object labels, object sw) except -1:
        # Returns the normaliser: Σ sample weights, or n.
        cdef Py_ssize_t n
        cdef int L = self.net.n_layers
        if not _is_carray(X, self.typenum, 2) or X.shape[1] != self.net.dims[0]:
            raise ValueError(f"X: expected a C-contiguous ({self.net.dims[0]}-column) "
                             f"array of the model's dtype")
        n = X.shape[0]
        if n < 1:
            raise ValueError("X: expected at least one row")
        if n > 2147483647:
            raise ValueError("X: a batch of more than 2**31 - 1 rows exceeds BLAS's sizes")
        if labels is None:
            if Y is None:
                raise ValueError("Y: expected targets")
            if (not _is_carray(Y, self.typenum, 2) or Y.shape[0] != n
                    or Y.shape[1] != self.net.dims[L]):
                raise ValueError(f"Y: expected a C-contiguous ({n}, {self.net.dims[L]}) "
                                 f"array of the model's dtype")
        else:
            if self.net.loss != C_LOSS_SOFTMAX_XENT:
                raise ValueError("Y: integer labels need the softmax_cross_entropy loss")
            if not _is_carray(labels, cnp.NPY_INT64, 1) or labels.shape[0] != n:
                raise ValueError(f"Y: expected {n} int64 labels")
        if sw is None:
            return <double>n
        if not self.net.sk_scaling:
            raise ValueError("sample_weight: only supported with scikit-learn scaling")
        if not _is_carray(sw, self.typenum, 1) or sw.shape[0] != n:
            raise ValueError(f"sample_weight: expected {n} values of the model's dtype")
        total = float(np.sum(sw, dtype=np.float64))
        if not (total > 0 and total < float("inf")):
            raise ValueError("sample_weight: expected finite weights with a positive sum")
        return total

    cdef int _step(self, Batch* b, double lr, bint update, bint check,
                   double* loss) noexcept nogil:
        cdef void* tp = self.theta_ptr
        cdef void* gp = self.grad_ptr
        cdef void* da = self.delta_ptrs[0]
        cdef void* db = self.delta_ptrs[1]
        if self.f64:
            return train_step[double](&self.net, &self.opt, <double*>tp, <double*>gp,
                                      <double**>self.act_ptrs, <double*>da, <double*>db,
                                      b, lr, update, check, loss)
        return train_step[float](&self.net, &self.opt, <float*>tp, <float*>gp,
                                 <float**>self.act_ptrs, <float*>da, <float*>db,
                                 b, lr, update, check, loss)

    def train_step(self, X, Y, labels, double lr, bint update=True, sample_weight=None):
        """One step on a batch: forward, loss, gradients into ``grad``, then the optimizer
        step if ``update``.

        X: (n, d0) C-contiguous, model dtype.  Either Y: (n, dL) model dtype, or labels:
        (n,) int64 (softmax cross-entropy only).  sample_weight: (n,) or None.  Returns the
        loss before the update.  Raises ValueError for non-finite inputs or labels out of
        range, and DivergenceError (parameters untouched) when the loss or a gradient is
        not finite.
        """
        cdef double loss = 0.0
        cdef int status
        cdef Batch b
        b.norm = self._check_batch(X, Y, labels, sample_weight)
        b.n = X.shape[0]
        b.X = cnp.PyArray_DATA(<cnp.ndarray>X)
        b.Y = NULL if Y is None else cnp.PyArray_DATA(<cnp.ndarray>Y)
        b.labels = NULL if labels is None else <const int64_t*>cnp.PyArray_DATA(<cnp.ndarray>labels)
        b.sw = NULL if sample_weight is None else cnp.PyArray_DATA(<cnp.ndarray>sample_weight)
        self._reserve(b.n)
        with nogil:
            status = self._step(&b, lr, update, True, &loss)
        if status != OK:
            _raise_status(status, loss, self.net.dims[self.net.n_layers])
        return loss

    def train_step_fast(self, X, Y, lr):
        """``train_step`` for inputs already in final form, checked in C; returns None when
        an argument needs the general Python path (conversion, validation, messages).

        Accepts: lr a finite float > 0; X an exact (n, d0) C-contiguous ndarray of the
        model dtype; Y (n, dL) likewise (mse), or (n,) when dL == 1, or (n,) int64 labels
        (softmax cross-entropy).  Probability-row targets always take the Python path,
        which validates them.  Small batches keep the GIL: releasing it costs more than
        the step.
        """
        cdef double flr, loss = 0.0
        cdef Py_ssize_t n, k = self.net.dims[self.net.n_layers]
        cdef int status
        cdef bint release
        cdef Batch b
        if type(lr) is not float:
            return None
        flr = lr
        if not (flr > 0 and flr < 1.7976931348623157e308):
            return None
        if (not _is_carray(X, self.typenum, 2) or cnp.PyArray_DIM(<cnp.ndarray>X, 1) != self.net.dims[0]):
            return None
        n = cnp.PyArray_DIM(<cnp.ndarray>X, 0)
        if n < 1 or n > 2147483647:   # BLAS sizes are 32-bit: the Python path explains
            return None
        b.labels = NULL
        b.Y = NULL
        if self.net.loss == C_LOSS_SOFTMAX_XENT:
            if not _is_carray(Y, cnp.NPY_INT64, 1) or cnp.PyArray_DIM(<cnp.ndarray>Y, 0) != n:
                return None
            b.labels = <const int64_t*>cnp.PyArray_DATA(<cnp.ndarray>Y)
        elif self.net.loss == C_LOSS_MSE:
            if _is_carray(Y, self.typenum, 2):
                if (cnp.PyArray_DIM(<cnp.ndarray>Y, 0) != n
                        or cnp.PyArray_DIM(<cnp.ndarray>Y, 1) != k):
                    return None
            elif not (k == 1 and _is_carray(Y, self.typenum, 1)
                      and cnp.PyArray_DIM(<cnp.ndarray>Y, 0) == n):
                return None
            b.Y = cnp.PyArray_DATA(<cnp.ndarray>Y)
        else:
            return None
        b.X = cnp.PyArray_DATA(<cnp.ndarray>X)
        b.sw = NULL
        b.n = n
        b.norm = <double>n
        if n > self.cap:
            self._reserve(n)
        if n * self.net.n_params > 200000:
            with nogil:
                status = self._step(&b, flr, True, True, &loss)
        else:
            status = self._step(&b, flr, True, True, &loss)
        if status != OK:
            _raise_status(status, loss, k)
        return loss

    cdef void _reserve_gather(self, Py_ssize_t n, bint labels, bint weights) except *:
        cdef object dt = np.float64 if self.f64 else np.float32
        _check_workspace(int(n) * (int(self.net.dims[0]) + int(self.net.dims[self.net.n_layers])
                                   + 2), 8 if self.f64 else 4, n)
        if n > self.gather_cap:
            self.gather_x = self.gather_y = self.gather_labels = self.gather_sw = None
            self.gather_cap = n
        n = self.gather_cap
        if self.gather_x is None:
            self.gather_x = np.empty(n * self.net.dims[0], dtype=dt)
        if labels and self.gather_labels is None:
            self.gather_labels = np.empty(n, dtype=np.int64)
        if not labels and self.gather_y is None:
            self.gather_y = np.empty(n * self.net.dims[self.net.n_layers], dtype=dt)
        if weights and self.gather_sw is None:
            self.gather_sw = np.empty(n, dtype=dt)

    def fit_epoch(self, X, Y, labels, perm, Py_ssize_t batch_size, double lr,
                  sample_weight=None):
        """One epoch of minibatch training in a single GIL-free loop.

        X, Y/labels, sample_weight as in ``train_step`` for all n rows, already checked
        finite and in range by the caller.  perm: None (rows in order) or an (n,) intp
        permutation; rows are gathered into preallocated batch buffers.  The last partial
        batch is used.  Returns (Σ over batches of loss·rows, status, steps completed).
        """
        cdef Py_ssize_t n, start, rows, i, j, step = 0
        cdef Py_ssize_t d0 = self.net.dims[0], k = self.net.dims[self.net.n_layers]
        cdef Py_ssize_t isz = 8 if self.f64 else 4
        cdef double loss = 0.0, total = 0.0, w_sum
        cdef int status = OK
        cdef const Py_ssize_t* pp = NULL
        cdef const char* xp
        cdef const char* yp = NULL
        cdef const int64_t* lp = NULL
        cdef const char* wp = NULL
        cdef char* bx = NULL
        cdef char* by = NULL
        cdef int64_t* bl = NULL
        cdef char* bw = NULL
        cdef Batch b
        self._check_batch(X, Y, labels, sample_weight)
        n = X.shape[0]
        if batch_size < 1:
            raise ValueError("batch_size: expected a positive integer")
        if batch_size > n:
            batch_size = n
        if perm is not None:
            if not _is_carray(perm, cnp.NPY_INTP, 1) or perm.shape[0] != n:
                raise ValueError(f"perm: expected an ({n},) intp permutation")
            pp = <const Py_ssize_t*>cnp.PyArray_DATA(<cnp.ndarray>perm)
            for i in range(n):
                if pp[i] < 0 or pp[i] >= n:
                    raise ValueError("perm: index out of range")
            self._reserve_gather(batch_size, labels is not None, sample_weight is not None)
            bx = <char*>cnp.PyArray_DATA(self.gather_x)
            if labels is None:
                by = <char*>cnp.PyArray_DATA(self.gather_y)
            else:
                bl = <int64_t*>cnp.PyArray_DATA(self.gather_labels)
            if sample_weight is not None:
                bw = <char*>cnp.PyArray_DATA(self.gather_sw)
        self._reserve(batch_size)
        xp = <const char*>cnp.PyArray_DATA(<cnp.ndarray>X)
        if labels is None:
            yp = <const char*>cnp.PyArray_DATA(<cnp.ndarray>Y)
        else:
            lp = <const int64_t*>cnp.PyArray_DATA(<cnp.ndarray>labels)
        if sample_weight is not None:
            wp = <const char*>cnp.PyArray_DATA(<cnp.ndarray>sample_weight)
        with nogil:
            start = 0
            while start < n:
                rows = batch_size if start + batch_size <= n else n - start
                if pp == NULL:
                    b.X = xp + start * d0 * isz
                    b.Y = NULL if yp == NULL else yp + start * k * isz
                    b.labels = NULL if lp == NULL else lp + start
                    b.sw = NULL if wp == NULL else wp + start * isz
                else:
                    for i in range(rows):
                        j = pp[start + i]
                        memcpy(bx + i * d0 * isz, xp + j * d0 * isz, d0 * isz)
                        if yp != NULL:
                            memcpy(by + i * k * isz, yp + j * k * isz, k * isz)
                        else:
                            bl[i] = lp[j]
                        if wp != NULL:
                            memcpy(bw + i * isz, wp + j * isz, isz)
                    b.X = bx
                    b.Y = by
                    b.labels = bl
                    b.sw = bw
                b.n = rows
                b.norm = rows
                if wp != NULL:
                    w_sum = 0.0
                    for i in range(rows):
                        w_sum += (<const double*>b.sw)[i] if self.f64 else (<const float*>b.sw)[i]
                    b.norm = w_sum
                status = self._step(&b, lr, True, False, &loss)
                if status != OK:
                    break
                total += loss * rows
                start += rows
                step += 1
        return total, status, step

    def forward(self, X, out):
        """Network output for X (n, d0) into ``out`` (n, dL): raw outputs or logits, or
        probabilities when the output activation is logistic/softmax.

        Uses scratch memory of its own, so concurrent calls on one engine are safe while
        no training step changes the parameters.  Raises ValueError if X is not finite.
        """
        cdef Py_ssize_t n, l, width, chunk, start, rows, d0, dL
        cdef int L = self.net.n_layers
        cdef void* ptrs[64]
        cdef char* op
        cdef char* s0
        cdef char* s1
        cdef Py_ssize_t isz = 8 if self.f64 else 4
        cdef const void* xp
        cdef void* tp = cnp.PyArray_DATA(self.theta)
        cdef bint ok
        cdef cnp.ndarray scratch
        if not _is_carray(X, self.typenum, 2) or X.shape[1] != self.net.dims[0]:
            raise ValueError(f"X: expected a C-contiguous ({self.net.dims[0]}-column) "
                             f"array of the model's dtype")
        n = X.shape[0]
        if n > 2147483647:
            raise ValueError("X: more than 2**31 - 1 rows exceeds BLAS's sizes; predict in chunks")
        if (not _is_writable_carray(out, self.typenum, 2) or out.shape[0] != n
                or out.shape[1] != self.net.dims[L]):
            raise ValueError(f"out: expected a writable ({n}, {self.net.dims[L]}) array")
        if n == 0:
            return out
        width = 0
        for l in range(1, L):
            if self.net.dims[l] > width:
                width = self.net.dims[l]
        # Hidden activations alternate between two scratch halves; the last layer writes
        # straight into `out`.  Rows go through in chunks so that predicting on a large
        # (e.g. memory-mapped) X needs scratch of FORWARD_SCRATCH_BYTES, not of n rows.
        chunk = forward_chunk_rows(n, width, isz)
        _check_workspace(2 * int(chunk) * int(width), isz, n)
        scratch = np.empty(max(2 * chunk * width, 1), dtype=self.theta.dtype)
        s0 = <char*>cnp.PyArray_DATA(scratch)
        s1 = s0 + chunk * width * isz
        for l in range(L - 1):
            ptrs[l] = s0 if l % 2 == 0 else s1
        xp = cnp.PyArray_DATA(<cnp.ndarray>X)
        op = <char*>cnp.PyArray_DATA(<cnp.ndarray>out)
        d0 = self.net.dims[0]
        dL = self.net.dims[L]
        with nogil:
            if self.f64:
                ok = all_finite[double](<const double*>xp, n * d0)
            else:
                ok = all_finite[float](<const float*>xp, n * d0)
            start = 0
            while ok and start < n:
                rows = min(chunk, n - start)
                ptrs[L - 1] = op + start * dL * isz
                if self.f64:
                    forward_pass[double](&self.net, <const double*>tp,
                                         <const double*>xp + start * d0, rows,
                                         <double**>ptrs)
                else:
                    forward_pass[float](&self.net, <const float*>tp,
                                        <const float*>xp + start * d0, rows, <float**>ptrs)
                start += rows
        if not ok:
            raise ValueError("X: contains NaN or infinity")
        return out


cdef object _raise_status(int status, double loss, Py_ssize_t k):
    if status == BAD_X:
        raise ValueError("X: contains NaN or infinity")
    if status == BAD_Y:
        raise ValueError("Y: contains NaN or infinity")
    if status == BAD_LABEL:
        raise ValueError(f"Y: class labels must be integers in [0, {k})")
    if status == DIVERGED:
        raise DivergenceError(f"non-finite loss or gradient (loss = {loss}); the "
                              "parameters were left unchanged — lower the learning rate")
    raise RuntimeError(f"unknown status {status}")


# --------------------------------------------------------------------------------------
# Single-kernel entry points, for fastmlp.kernels (which validates and allocates)
# --------------------------------------------------------------------------------------

def k_linear_forward(const floating[:, ::1] A, const floating[:, ::1] W,
                     const floating[::1] b, floating[:, ::1] Z):
    if (W.shape[0] != A.shape[1] or b.shape[0] != W.shape[1] or Z.shape[0] != A.shape[0]
            or Z.shape[1] != W.shape[1] or A.shape[0] < 1 or A.shape[1] < 1
            or W.shape[1] < 1):
        raise ValueError("linear_forward: inconsistent shapes")
    with nogil:
        linear_forward(&A[0, 0], A.shape[0], A.shape[1], &W[0, 0], &b[0], W.shape[1],
                       &Z[0, 0])


def k_relu_forward(floating[:, ::1] Z):
    if Z.shape[0] < 1 or Z.shape[1] < 1:
        return
    with nogil:
        relu_forward(&Z[0, 0], Z.shape[0] * Z.shape[1])


def k_relu_mask_delta(const floating[:, ::1] A, floating[:, ::1] D):
    if A.shape[0] != D.shape[0] or A.shape[1] != D.shape[1]:
        raise ValueError("relu_backward: inconsistent shapes")
    if A.shape[0] < 1 or A.shape[1] < 1:
        return
    with nogil:
        relu_mask_delta(&A[0, 0], &D[0, 0], A.shape[0] * A.shape[1])


def k_backprop_delta(const floating[:, ::1] D_next, const floating[:, ::1] W_next,
                     const floating[:, ::1] A, floating[:, ::1] D):
    if (W_next.shape[1] != D_next.shape[1] or A.shape[0] != D_next.shape[0]
            or A.shape[1] != W_next.shape[0] or D.shape[0] != A.shape[0]
            or D.shape[1] != A.shape[1] or min(A.shape[0], A.shape[1], D_next.shape[1]) < 1):
        raise ValueError("backprop_delta: inconsistent shapes")
    with nogil:
        backprop_delta(C_ACT_RELU, &D_next[0, 0], D_next.shape[0], D_next.shape[1],
                       &W_next[0, 0], &A[0, 0], A.shape[1], &D[0, 0])


def k_linear_backward(const floating[:, ::1] A_prev, const floating[:, ::1] D,
                      floating[:, ::1] dW, floating[::1] db):
    if (A_prev.shape[0] != D.shape[0] or dW.shape[0] != A_prev.shape[1]
            or dW.shape[1] != D.shape[1] or db.shape[0] != D.shape[1]
            or min(A_prev.shape[0], A_prev.shape[1], D.shape[1]) < 1):
        raise ValueError("linear_backward: inconsistent shapes")
    with nogil:
        linear_backward(&A_prev[0, 0], A_prev.shape[0], A_prev.shape[1], &D[0, 0],
                        D.shape[1], &dW[0, 0], &db[0])


def k_mse_loss_delta(const floating[:, ::1] Yhat, const floating[:, ::1] Y,
                     floating[:, ::1] D):
    cdef double loss
    if (Y.shape[0] != Yhat.shape[0] or Y.shape[1] != Yhat.shape[1]
            or D.shape[0] != Yhat.shape[0] or D.shape[1] != Yhat.shape[1]
            or Yhat.shape[0] < 1 or Yhat.shape[1] < 1):
        raise ValueError("mse_loss_delta: inconsistent shapes")
    with nogil:
        loss = mse_loss_delta(&Yhat[0, 0], &Y[0, 0], Yhat.shape[0], Yhat.shape[1],
                              &D[0, 0])
    return loss


def k_softmax_xent_dense(const floating[:, ::1] logits, const floating[:, ::1] Y,
                         floating[:, ::1] D):
    cdef double loss
    if (Y.shape[0] != logits.shape[0] or Y.shape[1] != logits.shape[1]
            or D.shape[0] != logits.shape[0] or D.shape[1] != logits.shape[1]
            or logits.shape[0] < 1 or logits.shape[1] < 1):
        raise ValueError("softmax_xent_loss_delta: inconsistent shapes")
    with nogil:
        loss = softmax_xent_loss_delta(&logits[0, 0], &Y[0, 0], NULL, logits.shape[0],
                                       logits.shape[1], &D[0, 0])
    return loss


def k_softmax_xent_labels(const floating[:, ::1] logits, const int64_t[::1] labels,
                          floating[:, ::1] D):
    cdef double loss
    cdef bint ok
    if (labels.shape[0] != logits.shape[0] or D.shape[0] != logits.shape[0]
            or D.shape[1] != logits.shape[1] or logits.shape[0] < 1
            or logits.shape[1] < 1):
        raise ValueError("softmax_xent_loss_delta: inconsistent shapes")
    with nogil:
        ok = labels_in_range(&labels[0], labels.shape[0], logits.shape[1])
    if not ok:
        raise ValueError(f"Y: class labels must be integers in [0, {logits.shape[1]})")
    with nogil:
        loss = softmax_xent_loss_delta(&logits[0, 0], <const floating*>NULL, &labels[0],
                                       logits.shape[0], logits.shape[1], &D[0, 0])
    return loss


def k_softmax(floating[:, ::1] Z):
    if Z.shape[0] < 1 or Z.shape[1] < 1:
        return
    with nogil:
        softmax_rows(&Z[0, 0], Z.shape[0], Z.shape[1])


def k_sgd_update(floating[::1] theta, const floating[::1] grad, double lr):
    if theta.shape[0] != grad.shape[0]:
        raise ValueError("sgd_update: theta and grad differ in size")
    if theta.shape[0] < 1:
        return
    with nogil:
        sgd_update(&theta[0], &grad[0], theta.shape[0], <floating>lr)


def k_all_finite(const floating[::1] x):
    cdef bint ok
    if x.shape[0] < 1:
        return True
    with nogil:
        ok = all_finite(&x[0], x.shape[0])
    return ok


def k_activation_forward(str kind, floating[:, ::1] Z):
    if kind not in ACT_CODES:
        raise ValueError(f"kind: unknown activation {kind!r}")
    cdef int code = ACT_CODES[kind]
    if Z.shape[0] < 1 or Z.shape[1] < 1:
        return
    with nogil:
        activation_forward(code, &Z[0, 0], Z.shape[0], Z.shape[1])


def k_activation_backward(str kind, const floating[:, ::1] A, floating[:, ::1] D):
    if kind not in ACT_CODES or ACT_CODES[kind] >= C_ACT_SOFTMAX:
        raise ValueError(f"kind: expected an element-wise activation with a derivative, "
                         f"got {kind!r}")
    cdef int code = ACT_CODES[kind]
    if A.shape[0] != D.shape[0] or A.shape[1] != D.shape[1]:
        raise ValueError("activation_backward: inconsistent shapes")
    if A.shape[0] < 1 or A.shape[1] < 1:
        return
    with nogil:
        activation_backward(code, &A[0, 0], &D[0, 0], A.shape[0] * A.shape[1])


def k_sk_loss_delta(str kind, const floating[:, ::1] P, const floating[:, ::1] Y,
                    const floating[::1] sw, floating[:, ::1] D):
    cdef int code
    cdef double loss, norm
    if kind not in LOSS_CODES or LOSS_CODES[kind] < C_LOSS_SK_SQUARED:
        raise ValueError(f"kind: expected a scikit-learn loss, got {kind!r}")
    code = LOSS_CODES[kind]
    if (Y.shape[0] != P.shape[0] or Y.shape[1] != P.shape[1] or D.shape[0] != P.shape[0]
            or D.shape[1] != P.shape[1] or P.shape[0] < 1 or P.shape[1] < 1
            or (sw is not None and sw.shape[0] != P.shape[0])):
        raise ValueError("sk_loss_delta: inconsistent shapes")
    norm = P.shape[0] if sw is None else float(np.sum(sw, dtype=np.float64))
    with nogil:
        loss = sk_loss_delta(code, &P[0, 0], &Y[0, 0], NULL if sw is None else &sw[0],
                             P.shape[0], P.shape[1], norm, &D[0, 0])
    return loss


def k_momentum_update(floating[::1] theta, const floating[::1] grad, floating[::1] vel,
                      double lr, double momentum, bint nesterov):
    if theta.shape[0] != grad.shape[0] or vel.shape[0] != theta.shape[0]:
        raise ValueError("momentum_update: theta, grad and velocity differ in size")
    if theta.shape[0] < 1:
        return
    with nogil:
        momentum_update(&theta[0], &grad[0], &vel[0], theta.shape[0], <floating>lr,
                        <floating>momentum, nesterov)


def k_adam_update(floating[::1] theta, const floating[::1] grad, floating[::1] m,
                  floating[::1] v, double lr, double beta1, double beta2, double eps,
                  int64_t t):
    if (theta.shape[0] != grad.shape[0] or m.shape[0] != theta.shape[0]
            or v.shape[0] != theta.shape[0]):
        raise ValueError("adam_update: theta, grad, m and v differ in size")
    if t < 1:
        raise ValueError("t: expected the step count, >= 1")
    if theta.shape[0] < 1:
        return
    with nogil:
        adam_update(&theta[0], &grad[0], &m[0], &v[0], theta.shape[0], lr, beta1, beta2,
                    eps, t)
