# Layer kernels: the linear map, the activations and their derivatives, and the two
# products of backpropagation (seeds 001 and 003).  Each has one job; the whole-network
# passes in _core.pyx chain them.

from cython cimport floating
from libc.stdint cimport uint64_t
from libc.string cimport memcpy, memset

from fastmlp._blas cimport gemm, gemv, ger
from fastmlp._fmath cimport (velu, velu_bwd, vexp, vgelu, vgelu_bwd, vleaky_relu,
                             vleaky_relu_bwd, vrelu, vrelu_bwd, vsigmoid, vsigmoid_bwd, vsilu,
                             vsilu_bwd, vsoftplus, vsoftplus_bwd, vtanh, vtanh_bwd)

# Activation codes; _core.ACT_CODES maps their names to them.  The definitions are
# PyTorch's (its modules are the oracle and the export target).
cdef enum:
    C_ACT_IDENTITY = 0
    C_ACT_RELU = 1
    C_ACT_LOGISTIC = 2
    C_ACT_TANH = 3
    C_ACT_SOFTMAX = 4   # output layer only
    C_ACT_EXP = 5       # output layer only (scikit-learn's Poisson regressor)
    C_ACT_LEAKY_RELU = 6    # z if z > 0 else s·z, s = LEAKY_RELU_SLOPE
    C_ACT_ELU = 7           # z if z > 0 else α·(eᶻ − 1), α = ELU_ALPHA
    C_ACT_GELU = 8          # z·Φ(z) = ½·z·erfc(−z/√2), the exact form
    C_ACT_SILU = 9          # z·σ(z), also called swish
    C_ACT_SOFTPLUS = 10     # log(1 + eᶻ)

# Their constants (PyTorch's defaults; _core exports them for the ONNX and torch
# exports), and the largest |g'(z)| of GELU and SiLU for the fused SGD step's a priori
# bounds: GELU's derivative peaks at 1.1289 (z ≈ 1.414), SiLU's at 1.0998 (z ≈ 2.40).
cdef extern from *:
    """
    #define FASTMLP_LEAKY_RELU_SLOPE 0.01
    #define FASTMLP_ELU_ALPHA 1.0
    #define FASTMLP_GELU_SILU_MAX_SLOPE 1.13
    """
    const double LEAKY_RELU_SLOPE "FASTMLP_LEAKY_RELU_SLOPE"
    const double ELU_ALPHA "FASTMLP_ELU_ALPHA"
    const double GELU_SILU_MAX_SLOPE "FASTMLP_GELU_SILU_MAX_SLOPE"


cdef inline bint activation_needs_z(int kind) noexcept nogil:
    # Whether g' must be computed from Z: GELU's and SiLU's derivatives are no function
    # of their output, so a training step keeps those layers' Z (every other g' is
    # written through A, which the forward pass leaves in place of Z).
    return kind == C_ACT_GELU or kind == C_ACT_SILU


cdef inline double activation_max_slope(int kind) noexcept nogil:
    if kind == C_ACT_LOGISTIC:
        return 0.25
    if kind == C_ACT_GELU or kind == C_ACT_SILU:
        return GELU_SILU_MAX_SLOPE
    return 1.0


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


cdef inline void copy_block(const floating* src, Py_ssize_t ld_src, Py_ssize_t rows,
                            Py_ssize_t width, floating* dst, Py_ssize_t ld_dst) noexcept nogil:
    # rows × width values from a row-major matrix of leading dimension ld_src into one of
    # ld_dst: a model's column block of a stack's Z(1), Δ(1) or W(1), in or out.
    cdef Py_ssize_t i
    for i in range(rows):
        memcpy(dst + i * ld_dst, src + i * ld_src, width * sizeof(floating))


cdef inline void add_bias_block(const floating* P, Py_ssize_t ld, Py_ssize_t n,
                                Py_ssize_t width, const floating* b,
                                floating* Z) noexcept nogil:
    # Z = P + 1·bᵀ (n, width) from a column block of a wider product P (leading dimension
    # ld): a model's Z(1) out of a stack's X·[W(1)…] (seed 003, s(l) = b(l) + Σ w·x).
    # The sum a GEMM onto a bias-filled Z makes, so the bits of linear_forward's.
    cdef Py_ssize_t i, j
    for i in range(n):
        for j in range(width):
            Z[i * width + j] = P[i * ld + j] + b[j]


cdef inline void relu_forward(floating* Z, Py_ssize_t size) noexcept nogil:
    # A = θ(Z) = max(Z, 0) in place (seeds 001, 003).  The derivative mask θ'(Z) = [Z > 0]
    # (θ'(0) = 0) equals [A > 0], so this single pass also records the mask, in A itself.
    # NaN is kept (NaN < 0 is false) so that a diverging step is seen, not hidden.
    # An unconditional select, vectorised in _vecmath.h.
    vrelu(Z, size)


cdef inline void relu_mask_delta(const floating* A, floating* D, Py_ssize_t size) noexcept nogil:
    # D ⊙= θ'(S) with θ'(S) = [A > 0]  (seed 003 eq. 34; seed 001's V ⊙ D).
    vrelu_bwd(A, D, size)


cdef inline floating row_max(const floating* z, Py_ssize_t k) noexcept nogil:
    # max of one row of k values (NaN never wins a comparison, as before).
    cdef Py_ssize_t j
    cdef floating m = z[0]
    for j in range(1, k):
        if z[j] > m:
            m = z[j]
    return m


cdef inline void shifted_exp_rows(const floating* Z, Py_ssize_t n, Py_ssize_t k,
                                  floating* E) noexcept nogil:
    # E = exp(Z − m) row by row, m = the row's maximum (seed 003 eq. 3's softmax, and the
    # log-sum-exp of its loss): shifted by the maximum, no exp overflows.  The shifts
    # first, then one vectorised exp over all n·k values (rows of ~10 classes are too
    # short to vectorise one by one).  E may be Z.
    cdef Py_ssize_t i, j
    cdef floating m
    for i in range(n):
        m = row_max(Z + i * k, k)
        for j in range(k):
            E[i * k + j] = Z[i * k + j] - m
    vexp(E, n * k)


cdef inline void softmax_rows(floating* Z, Py_ssize_t n, Py_ssize_t k) noexcept nogil:
    # P = softmax(Z) row by row, in place (seed 003 eq. 3).
    cdef Py_ssize_t i, j
    cdef floating s
    cdef floating* z
    shifted_exp_rows(Z, n, k, Z)
    for i in range(n):
        z = Z + i * k
        s = 0
        for j in range(k):
            s += z[j]
        for j in range(k):
            z[j] /= s


cdef inline void activation_forward(int kind, floating* Z, Py_ssize_t n,
                                    Py_ssize_t k) noexcept nogil:
    # A = g(Z) in place, for the element-wise activations and the row-wise softmax.
    # NaN stays NaN in every branch, so that a diverging step is seen.  Every
    # element-wise one runs as a vectorised loop of _vecmath.h.
    cdef Py_ssize_t i, size = n * k
    if kind == C_ACT_RELU:
        relu_forward(Z, size)
    elif kind == C_ACT_LOGISTIC:
        vsigmoid(Z, size)      # 1/(1 + e^−z), without overflow for z ≪ 0
    elif kind == C_ACT_TANH:
        vtanh(Z, size)
    elif kind == C_ACT_EXP:
        vexp(Z, size)
    elif kind == C_ACT_SOFTMAX:
        softmax_rows(Z, n, k)
    elif kind == C_ACT_LEAKY_RELU:
        vleaky_relu(Z, size, <floating>LEAKY_RELU_SLOPE)
    elif kind == C_ACT_ELU:
        velu(Z, size, <floating>ELU_ALPHA)
    elif kind == C_ACT_GELU:
        # Φ(z) through its normal tail (erfc), not ½·(1 + erf(z/√2)), whose cancellation
        # loses every digit of Φ(z) below z ≈ −6 (−4 in float32): _vecmath.h.
        vgelu(Z, size)
    elif kind == C_ACT_SILU:
        vsilu(Z, size)         # z·σ(z)
    elif kind == C_ACT_SOFTPLUS:
        # max(z, 0) + log(1 + e^(−|z|)): no overflow for any z, and exact to rounding
        # where PyTorch's threshold (z > 20: z) cuts off.
        vsoftplus(Z, size)


cdef inline void activation_backward(int kind, const floating* A, const floating* Z,
                                     floating* D, Py_ssize_t size) noexcept nogil:
    # D ⊙= g'(Z) (seed 002: ∇a = g'(a) ⊙ ∇ŷ; seed 003 eq. 34).  g' is written through
    # the activation's output A where it can be: relu [A > 0], logistic A·(1 − A),
    # tanh 1 − A², leaky ReLU [A > 0] + s·[A ≤ 0], ELU [A > 0] + (A + α)·[A ≤ 0]
    # (eᶻ = A/α + 1 below 0), softplus 1 − e^(−A) (= σ(z)), identity 1.  GELU and SiLU
    # need Z (activation_needs_z): Φ(z) + z·φ(z) and σ(z)·(1 + z·(1 − σ(z))).  Softmax
    # and exp are output activations whose derivative the matching loss folds into its
    # delta, so they never come here.
    cdef Py_ssize_t i
    if kind == C_ACT_RELU:
        relu_mask_delta(A, D, size)
    elif kind == C_ACT_LOGISTIC:
        vsigmoid_bwd(A, D, size)
    elif kind == C_ACT_TANH:
        vtanh_bwd(A, D, size)
    elif kind == C_ACT_LEAKY_RELU:
        vleaky_relu_bwd(A, D, size, <floating>LEAKY_RELU_SLOPE)
    elif kind == C_ACT_ELU:
        velu_bwd(A, D, size, <floating>ELU_ALPHA)
    elif kind == C_ACT_SOFTPLUS:
        vsoftplus_bwd(A, D, size)      # D ⊙= −(e^(−A) − 1)
    elif kind == C_ACT_GELU:
        vgelu_bwd(Z, D, size)
    elif kind == C_ACT_SILU:
        vsilu_bwd(Z, D, size)


cdef inline void backprop_product(const floating* D_next, Py_ssize_t n, Py_ssize_t d_next,
                                  const floating* W_next, Py_ssize_t d,
                                  floating* D) noexcept nogil:
    # D = Δ(l+1)·W(l+1)ᵀ, (n, d_next)·(d_next, d): backprop_delta before the derivative.
    if n == 1:
        gemv(False, <int>d, <int>d_next, <floating>1.0, W_next, <int>d_next, D_next,
             <floating>0.0, D)
    else:
        gemm(False, True, <int>n, <int>d, <int>d_next, <floating>1.0, D_next, <int>d_next,
             W_next, <int>d_next, <floating>0.0, D, <int>d)


cdef inline void backprop_delta(int act, const floating* D_next, Py_ssize_t n,
                                Py_ssize_t d_next, const floating* W_next,
                                const floating* A, const floating* Z, Py_ssize_t d,
                                floating* D) noexcept nogil:
    # Δ(l) = g'(Z(l)) ⊙ (Δ(l+1)·W(l+1)ᵀ)   (seed 003 eq. 34/42, there with g = θ):
    # (n, d_next)·(d_next, d), then the derivative of the layer's activation `act`,
    # from its output A (and its input Z where activation_needs_z; else Z may be NULL).
    backprop_product(D_next, n, d_next, W_next, d, D)
    activation_backward(act, A, Z, D, n * d)


cdef inline void column_sums_range(const floating* D, Py_ssize_t n, Py_ssize_t d,
                                   Py_ssize_t lo, Py_ssize_t hi,
                                   floating* out) noexcept nogil:
    # out[lo:hi] = (1ᵀ·D)[lo:hi] for D (n, d), row by row so the inner loop runs over
    # contiguous memory; each column summed in row order, whatever the range.  One row
    # is copied, so that a −0 stays −0 (0 + −0 is +0).
    cdef Py_ssize_t i, j
    cdef const floating* row
    if n == 1:
        memcpy(out + lo, D + lo, (hi - lo) * sizeof(floating))
        return
    memset(out + lo, 0, (hi - lo) * sizeof(floating))
    for i in range(n):
        row = D + i * d
        for j in range(lo, hi):
            out[j] += row[j]


cdef inline void column_sums(const floating* D, Py_ssize_t n, Py_ssize_t d,
                             floating* out) noexcept nogil:
    # out = 1ᵀ·D for D (n, d): the bias gradient (seed 003 eq. 41).
    column_sums_range(D, n, d, 0, d, out)


cdef inline void linear_weight_gradient(const floating* A_prev, Py_ssize_t n,
                                        Py_ssize_t d_in, const floating* D,
                                        Py_ssize_t d_out, floating* dW) noexcept nogil:
    # dW(l) = A(l-1)ᵀ·Δ(l) (seed 003 eq. 33).  Seed 003 puts the 1/N on this sum;
    # fastmlp's output deltas already carry it (see _losses.pxd), which gives the same
    # gradients with one scaling pass over (n, dL) instead of one over every parameter.
    if n == 1:
        memset(dW, 0, d_in * d_out * sizeof(floating))
        ger(<int>d_in, <int>d_out, <floating>1.0, A_prev, D, dW, <int>d_out)
        return
    gemm(True, False, <int>d_in, <int>d_out, <int>n, <floating>1.0, A_prev, <int>d_in,
         D, <int>d_out, <floating>0.0, dW, <int>d_out)


cdef inline void linear_backward(const floating* A_prev, Py_ssize_t n, Py_ssize_t d_in,
                                 const floating* D, Py_ssize_t d_out,
                                 floating* dW, floating* db) noexcept nogil:
    # dW(l) = A(l-1)ᵀ·Δ(l) (eq. 33) and db(l) = 1ᵀ·Δ(l) (eq. 41).
    linear_weight_gradient(A_prev, n, d_in, D, d_out, dW)
    column_sums(D, n, d_out, db)


# ---------------------------------------------------------------- dropout

cdef inline uint64_t mix64(uint64_t z) noexcept nogil:
    # SplitMix64's output function (Steele, Lea & Flood 2014): a bijective scramble of a
    # 64-bit counter whose outputs pass BigCrush, for the dropout masks.
    z = (z ^ (z >> 30)) * <uint64_t>0xBF58476D1CE4E5B9
    z = (z ^ (z >> 27)) * <uint64_t>0x94D049BB133111EB
    return z ^ (z >> 31)


cdef inline void dropout_forward(floating* A, floating* mask, Py_ssize_t size, double p,
                                 uint64_t* state) noexcept nogil:
    # Inverted dropout on a layer's output during training: each unit is kept with
    # probability 1 − p and scaled by 1/(1 − p) (so the expected output is unchanged and
    # prediction needs no rescaling), else zeroed: mask = 1/(1 − p) or 0, A ⊙= mask.  The
    # uniform number of element i is the top 53 bits of mix64(state + (i + 1)·γ), γ the
    # golden-ratio increment: a counter, not a chain, so elements are independent and the
    # loop vectorises; state advances by size·γ.
    cdef Py_ssize_t i
    cdef uint64_t base = state[0], gamma = <uint64_t>0x9E3779B97F4A7C15
    cdef double u
    cdef floating keep = <floating>(1.0 / (1.0 - p))
    for i in range(size):
        u = <double>(mix64(base + <uint64_t>(i + 1) * gamma) >> 11) * (1.0 / 9007199254740992.0)
        mask[i] = 0 if u < p else keep
        A[i] = A[i] * mask[i]
    state[0] = base + <uint64_t>size * gamma


cdef inline void dropout_backward(floating* D, const floating* mask,
                                  Py_ssize_t size) noexcept nogil:
    # ∂L/∂(pre-dropout output) = ∂L/∂(output) ⊙ mask.
    cdef Py_ssize_t i
    for i in range(size):
        D[i] = D[i] * mask[i]
