# Layer kernels: the linear map, the activations and their derivatives, and the two
# products of backpropagation (seeds 001 and 003).  Each has one job; the whole-network
# passes in _core.pyx chain them.

from cython cimport floating
from libc.string cimport memcpy, memset

from fastmlp._blas cimport gemm, gemv, ger
from fastmlp._fmath cimport fexp, ftanh

# Activation codes; _core.ACT_CODES maps their names to them.
cdef enum:
    C_ACT_IDENTITY = 0
    C_ACT_RELU = 1
    C_ACT_LOGISTIC = 2
    C_ACT_TANH = 3
    C_ACT_SOFTMAX = 4   # output layer only
    C_ACT_EXP = 5       # output layer only (scikit-learn's Poisson regressor)


cdef inline void linear_forward(const floating* A, Py_ssize_t n, Py_ssize_t d_in,
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


cdef inline void relu_forward(floating* Z, Py_ssize_t size) noexcept nogil:
    # A = θ(Z) = max(Z, 0) in place (seeds 001, 003).  The derivative mask θ'(Z) = [Z > 0]
    # (θ'(0) = 0) equals [A > 0], so this single pass also records the mask, in A itself.
    # NaN is kept (NaN < 0 is false) so that a diverging step is seen, not hidden.
    # Written as an unconditional select so the compiler vectorises it.
    cdef Py_ssize_t i
    for i in range(size):
        Z[i] = 0 if Z[i] < 0 else Z[i]


cdef inline void relu_mask_delta(const floating* A, floating* D, Py_ssize_t size) noexcept nogil:
    # D ⊙= θ'(S) with θ'(S) = [A > 0]  (seed 003 eq. 34; seed 001's V ⊙ D).
    cdef Py_ssize_t i
    for i in range(size):
        D[i] = D[i] if A[i] > 0 else 0


cdef inline floating shifted_exp_row(const floating* z, Py_ssize_t k, floating* e,
                                     floating* m_out) noexcept nogil:
    # e = exp(z − m) for one row z of k values, m = max z (into m_out); returns Σ e.
    # Shifted by the maximum, no exp overflows (seed 003 eq. 3's softmax, and the
    # log-sum-exp of its loss).  e may be z itself.
    cdef Py_ssize_t j
    cdef floating m = z[0], s = 0
    for j in range(1, k):
        if z[j] > m:
            m = z[j]
    for j in range(k):
        e[j] = fexp(z[j] - m)
        s += e[j]
    m_out[0] = m
    return s


cdef inline void softmax_rows(floating* Z, Py_ssize_t n, Py_ssize_t k) noexcept nogil:
    # P = softmax(Z) row by row, in place (seed 003 eq. 3).
    cdef Py_ssize_t i, j
    cdef floating m, s
    cdef floating* z
    for i in range(n):
        z = Z + i * k
        s = shifted_exp_row(z, k, z, &m)
        for j in range(k):
            z[j] /= s


cdef inline void activation_forward(int kind, floating* Z, Py_ssize_t n,
                                    Py_ssize_t k) noexcept nogil:
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


cdef inline void activation_backward(int kind, const floating* A, floating* D,
                                     Py_ssize_t size) noexcept nogil:
    # D ⊙= g'(Z), with g' written through the activation's output A: relu [A > 0],
    # logistic A·(1 − A), tanh 1 − A², identity 1 (seed 002: ∇a = g'(a) ⊙ ∇ŷ; seed 003
    # eq. 34).  Softmax and exp are output activations whose derivative the matching
    # loss folds into its delta, so they never come here.
    cdef Py_ssize_t i
    if kind == C_ACT_RELU:
        relu_mask_delta(A, D, size)
    elif kind == C_ACT_LOGISTIC:
        for i in range(size):
            D[i] = D[i] * A[i] * (1 - A[i])
    elif kind == C_ACT_TANH:
        for i in range(size):
            D[i] = D[i] * (1 - A[i] * A[i])


cdef inline void backprop_delta(int act, const floating* D_next, Py_ssize_t n,
                                Py_ssize_t d_next, const floating* W_next,
                                const floating* A, Py_ssize_t d,
                                floating* D) noexcept nogil:
    # Δ(l) = g'(Z(l)) ⊙ (Δ(l+1)·W(l+1)ᵀ)   (seed 003 eq. 34/42, there with g = θ):
    # (n, d_next)·(d_next, d), then the derivative of the layer's activation `act`.
    if n == 1:
        gemv(False, <int>d, <int>d_next, <floating>1.0, W_next, <int>d_next, D_next,
             <floating>0.0, D)
    else:
        gemm(False, True, <int>n, <int>d, <int>d_next, <floating>1.0, D_next, <int>d_next,
             W_next, <int>d_next, <floating>0.0, D, <int>d)
    activation_backward(act, A, D, n * d)


cdef inline void column_sums(const floating* D, Py_ssize_t n, Py_ssize_t d,
                             floating* out) noexcept nogil:
    # out = 1ᵀ·D for D (n, d), row by row so the inner loop runs over contiguous memory.
    cdef Py_ssize_t i, j
    cdef const floating* row
    memset(out, 0, d * sizeof(floating))
    for i in range(n):
        row = D + i * d
        for j in range(d):
            out[j] += row[j]


cdef inline void linear_backward(const floating* A_prev, Py_ssize_t n, Py_ssize_t d_in,
                                 const floating* D, Py_ssize_t d_out,
                                 floating* dW, floating* db) noexcept nogil:
    # dW(l) = A(l-1)ᵀ·Δ(l) (seed 003 eq. 33), db(l) = 1ᵀ·Δ(l) (eq. 41).  Seed 003 puts
    # the 1/N on these sums; fastmlp's output deltas already carry it (see _losses.pxd),
    # which gives the same gradients with one scaling pass over (n, dL) instead of one
    # over every parameter.
    if n == 1:
        memset(dW, 0, d_in * d_out * sizeof(floating))
        ger(<int>d_in, <int>d_out, <floating>1.0, A_prev, D, dW, <int>d_out)
        memcpy(db, D, d_out * sizeof(floating))
        return
    gemm(True, False, <int>d_in, <int>d_out, <int>n, <floating>1.0, A_prev, <int>d_in,
         D, <int>d_out, <floating>0.0, dW, <int>d_out)
    column_sums(D, n, d_out, db)
