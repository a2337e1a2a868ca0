# Output losses and their deltas Δ(L) = ∂L/∂Z(L): the seeds' own (000, 002, 003), then
# scikit-learn's variants, which its estimators reproduce.  Every loss is accumulated in
# double for both dtypes.
#
# fastmlp's deltas carry the 1/n of the batch mean, so backpropagation needs no further
# scaling (see linear_backward in _layers.pxd).

from cython cimport floating
from libc.math cimport log
from libc.stdint cimport int64_t

from fastmlp._fmath cimport feps, xlogy
from fastmlp._layers cimport row_max, shifted_exp_rows

# Loss codes; _core.LOSS_CODES maps their names to them.
cdef enum:
    C_LOSS_MSE = 0              # (1/n)·Σ‖ŷ − y‖², any element-wise output activation
    C_LOSS_SOFTMAX_XENT = 1     # −(1/n)·Σ y·log softmax(z), from logits (identity output)
    C_LOSS_SK_SQUARED = 2       # scikit-learn: ½·mean over outputs of the weighted mean
    C_LOSS_SK_LOG = 3           # scikit-learn: log-loss of softmax probabilities, clipped
    C_LOSS_SK_BINARY_LOG = 4    # scikit-learn: binary log-loss of logistic outputs, clipped
    C_LOSS_SK_POISSON = 5       # scikit-learn: half Poisson deviance of exp outputs


# ---------------------------------------------------------------- summed by blocks

# A loss is summed block by block of rows — each block's rows in order, then the blocks
# in order — so that a pass split by blocks over fastmlp's workers (_split.pxi) gives the
# bits of the whole pass at every thread count.  A block holds whole rows, about
# LOSS_BLOCK_VALUES values (a batch of fewer is one block, summed as before the split),
# and a batch at most MAX_LOSS_BLOCKS blocks.
cdef enum:
    LOSS_BLOCK_VALUES = 4096
    MAX_LOSS_BLOCKS = 1024


cdef inline Py_ssize_t loss_block_rows(Py_ssize_t n, Py_ssize_t k) noexcept nogil:
    cdef Py_ssize_t rows = (LOSS_BLOCK_VALUES + k - 1) // k
    cdef Py_ssize_t least = (n + MAX_LOSS_BLOCKS - 1) // MAX_LOSS_BLOCKS
    return rows if rows > least else least


# ---------------------------------------------------------------- the seeds' losses

cdef inline double mse_rows(const floating* Yhat, const floating* Y, const floating* sw,
                            Py_ssize_t lo, Py_ssize_t hi, Py_ssize_t n, Py_ssize_t k,
                            floating* D) noexcept nogil:
    # Σ over rows [lo, hi) of wᵢ·‖ŷᵢ − yᵢ‖², and those rows of ∇ŷ = (2/n)·wᵢ·(ŷᵢ − yᵢ)
    # (seed 000 eq. 10–11, seed 001 §3: R = f(X) − Y, factor 2 kept; a sample weight wᵢ
    # scales row i's term of the mean, sw NULL: all 1).  Through an element-wise output
    # activation ŷ = g(a), seed 002's ∇a = g'(a) ⊙ ∇ŷ follows (activation_backward with
    # g' written through ŷ, output_loss_delta).
    cdef Py_ssize_t i, j
    cdef double total = 0.0, row
    cdef floating r, w
    cdef floating scale = <floating>(2.0 / n)
    if sw == NULL:
        for i in range(lo * k, hi * k):
            r = Yhat[i] - Y[i]
            total += <double>r * r
            D[i] = scale * r
        return total
    for i in range(lo, hi):
        w = sw[i]
        row = 0.0
        for j in range(i * k, i * k + k):
            r = Yhat[j] - Y[j]
            row += <double>r * r
            D[j] = (scale * w) * r
        total += row * w
    return total


cdef inline double softmax_xent_rows(const floating* logits, const floating* Y,
                                     const int64_t* labels, const floating* sw,
                                     Py_ssize_t lo, Py_ssize_t hi, Py_ssize_t n, Py_ssize_t k,
                                     floating* D) noexcept nogil:
    # Σ over rows [lo, hi) of −wᵢ·Σₖ yᵢₖ·log pᵢₖ with p = softmax(logits), and those rows
    # of Δ(L) = wᵢ·(P·sᵢ − Y)/n with sᵢ = Σₖ yᵢₖ (seed 003 eq. 3–4, 10: δ = p − y once rows
    # of Y sum to 1, as they do; a sample weight wᵢ scales row i's term of the mean, sw
    # NULL: all 1).  log pᵢₖ = zᵢₖ − (m + log Σ exp(z − m)), m = max z: finite for logits
    # of any size.  Y is either dense (n, k) or, when Y is NULL, int labels (n,).
    cdef Py_ssize_t i, j
    cdef double total = 0.0
    cdef double row_loss, y_sum
    cdef floating m, s, scale, w_n
    cdef const floating* z
    cdef const floating* y
    cdef floating* d
    cdef floating inv_n = <floating>(1.0 / n)
    shifted_exp_rows(logits + lo * k, hi - lo, k, D + lo * k)
    for i in range(lo, hi):
        z = logits + i * k
        d = D + i * k
        m = row_max(z, k)
        s = 0
        for j in range(k):
            s += d[j]
        # The unweighted row's factor is 1/n itself, so that weights of 1 (or none) give
        # the bits of the unweighted loss.
        w_n = inv_n if sw == NULL else inv_n * sw[i]
        if Y == NULL:
            # (m − z) first: for huge logits m + log s would round log s away.
            row_loss = (<double>m - z[labels[i]]) + log(<double>s)
            scale = w_n / s
            for j in range(k):
                d[j] *= scale
            d[labels[i]] -= w_n
        else:
            y = Y + i * k
            row_loss = 0.0
            y_sum = 0.0
            for j in range(k):
                row_loss += <double>y[j] * ((<double>m - z[j]) + log(<double>s))
                y_sum += y[j]
            scale = <floating>(y_sum / s) * w_n
            for j in range(k):
                d[j] = d[j] * scale - y[j] * w_n
        total += row_loss if sw == NULL else row_loss * sw[i]
    return total


# ---------------------------------------------------------------- scikit-learn's losses

cdef inline double sk_rows(int kind, const floating* P, const floating* Y,
                           const floating* sw, Py_ssize_t lo, Py_ssize_t hi, Py_ssize_t k,
                           floating* D) noexcept nogil:
    # scikit-learn's output losses over P, the output layer after its activation, with
    # optional sample weights (NULL: all 1): Σ over rows [lo, hi) of wᵢ·(the row's loss),
    # and those rows of the raw delta (P − Y)·wᵢ.  Every one pairs with its canonical
    # output activation, so the delta is unscaled; scikit-learn divides the gradients by
    # Σw instead.  Probabilities are clipped to [eps, 1 − eps] inside the logarithms, as
    # scikit-learn does.
    cdef Py_ssize_t i, j
    cdef double total = 0.0, row
    cdef floating w, p, y, eps = feps(<floating>0), one_m_eps = 1 - feps(<floating>0)
    for i in range(lo, hi):
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
    return total


# ---------------------------------------------------------------- any loss, whole

cdef inline double loss_rows(int kind, const floating* out, const floating* Y,
                             const int64_t* labels, const floating* sw, Py_ssize_t lo,
                             Py_ssize_t hi, Py_ssize_t n, Py_ssize_t k,
                             floating* D) noexcept nogil:
    # The sum of loss `kind` over rows [lo, hi), and those rows of its delta.
    if kind == C_LOSS_MSE:
        return mse_rows(out, Y, sw, lo, hi, n, k, D)
    if kind == C_LOSS_SOFTMAX_XENT:
        return softmax_xent_rows(out, Y, labels, sw, lo, hi, n, k, D)
    return sk_rows(kind, out, Y, sw, lo, hi, k, D)


cdef inline double loss_total(int kind, double total, Py_ssize_t n, Py_ssize_t k,
                              double norm) noexcept nogil:
    # The batch's loss from the sum over its rows: the seeds' mean over rows (of the
    # weighted terms: a weight multiplies its row's term, as repeating the row would),
    # scikit-learn's weighted mean (and its squared error's ½ and mean over outputs).
    if kind == C_LOSS_MSE or kind == C_LOSS_SOFTMAX_XENT:
        return total / n
    if kind == C_LOSS_SK_SQUARED:
        return 0.5 * total / norm / k
    return total / norm


cdef inline double loss_delta(int kind, const floating* out, const floating* Y,
                              const int64_t* labels, const floating* sw, Py_ssize_t n,
                              Py_ssize_t k, double norm, floating* D) noexcept nogil:
    # Loss `kind` of the batch and its delta into D (n, k), summed block by block (see
    # loss_block_rows); norm = Σ sample weights (scikit-learn's losses) or n.
    cdef Py_ssize_t lo, hi, rows = loss_block_rows(n, k)
    cdef double total = 0.0
    lo = 0
    while lo < n:
        hi = lo + rows if lo + rows < n else n
        total += loss_rows(kind, out, Y, labels, sw, lo, hi, n, k, D)
        lo = hi
    return loss_total(kind, total, n, k, norm)


cdef inline double mse_loss_delta(const floating* Yhat, const floating* Y, Py_ssize_t n,
                                  Py_ssize_t k, floating* D) noexcept nogil:
    # L = (1/n)·Σᵢ‖ŷᵢ − yᵢ‖² and ∇ŷ = (2/n)·(Ŷ − Y) (mse_rows).
    return loss_delta(C_LOSS_MSE, Yhat, Y, NULL, NULL, n, k, n, D)


cdef inline double softmax_xent_loss_delta(const floating* logits, const floating* Y,
                                           const int64_t* labels, Py_ssize_t n,
                                           Py_ssize_t k, floating* D) noexcept nogil:
    # L = −(1/n)·Σᵢ Σₖ yᵢₖ·log pᵢₖ and Δ(L) (softmax_xent_rows).
    return loss_delta(C_LOSS_SOFTMAX_XENT, logits, Y, labels, NULL, n, k, n, D)


cdef inline double sk_loss_delta(int kind, const floating* P, const floating* Y,
                                 const floating* sw, Py_ssize_t n, Py_ssize_t k,
                                 double norm, floating* D) noexcept nogil:
    # scikit-learn's loss `kind` (sk_rows) with norm = Σ weights.
    return loss_delta(kind, P, Y, NULL, sw, n, k, norm, D)
