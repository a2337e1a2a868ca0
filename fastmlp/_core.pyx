"""Compiled core of fastmlp: the kernels of ../shared/seeds/ and the one-call training step.

Layout is row-major throughout (seed 003): a batch X is (n, d0), W(l) is (d(l-1), d(l)),
Z(l) = A(l-1)·W(l) + b(l).  Every kernel is a ``noexcept nogil`` function over raw
pointers; the ``def`` functions and the ``Engine`` methods at the bottom are the only
entry points from Python, and they check every size and flag the kernels rely on before
handing pointers down (bounds checking is off in the kernels).

Parameters of a network live in one flat buffer ``theta``: for each layer W(l) (row-major)
followed by b(l).  Gradients use the same layout in ``grad``.
"""
from cython cimport floating
from libc.math cimport exp, expf, log, logf
from libc.stdint cimport int64_t
from libc.string cimport memcpy, memset
from scipy.linalg.cython_blas cimport dgemm, sgemm

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

# Codes shared with the Python layer (fastmlp/_validation.py holds the name tables).
LOSS_MSE = 0
LOSS_SOFTMAX_XENT = 1
ACT_RELU = 0

cdef enum:
    C_LOSS_MSE = 0
    C_LOSS_SOFTMAX_XENT = 1


# --------------------------------------------------------------------------------------
# BLAS and element-wise helpers
# --------------------------------------------------------------------------------------

cdef inline void gemm(bint trans_a, bint trans_b, int m, int n, int k, floating alpha,
                      const floating* a, int lda, const floating* b, int ldb,
                      floating beta, floating* c, int ldc) noexcept nogil:
    # Row-major C (m, n) = alpha·op(A)·op(B) + beta·C.  A row-major matrix read as
    # column-major is its transpose, so BLAS computes Cᵀ = op(B)ᵀ·op(A)ᵀ with the
    # operands swapped: no copies, no layout conversion.
    cdef char ta = b'T' if trans_b else b'N'
    cdef char tb = b'T' if trans_a else b'N'
    if floating is float:
        sgemm(&ta, &tb, &n, &m, &k, &alpha, <float*>b, &ldb, <float*>a, &lda,
              &beta, c, &ldc)
    else:
        dgemm(&ta, &tb, &n, &m, &k, &alpha, <double*>b, &ldb, <double*>a, &lda,
              &beta, c, &ldc)


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


cdef bint all_finite(const floating* x, Py_ssize_t size) noexcept nogil:
    # x - x is 0 for finite x and NaN for ±Inf/NaN; OR-ing comparisons vectorises,
    # unlike an early-exit loop.
    cdef Py_ssize_t i
    cdef int bad = 0
    for i in range(size):
        bad |= not (x[i] - x[i] == 0)
    return not bad


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


cdef void backprop_delta(const floating* D_next, Py_ssize_t n, Py_ssize_t d_next,
                         const floating* W_next, const floating* A, Py_ssize_t d,
                         floating* D) noexcept nogil:
    # Δ(l) = θ'(S(l)) ⊙ (Δ(l+1)·W(l+1)ᵀ)   (seed 003 eq. 34/42): (n, d_next)·(d_next, d).
    gemm(False, True, <int>n, <int>d, <int>d_next, <floating>1.0, D_next, <int>d_next,
         W_next, <int>d_next, <floating>0.0, D, <int>d)
    relu_mask_delta(A, D, n * d)


cdef void linear_backward(const floating* A_prev, Py_ssize_t n, Py_ssize_t d_in,
                          const floating* D, Py_ssize_t d_out,
                          floating* dW, floating* db) noexcept nogil:
    # dW(l) = X(l-1)ᵀ·Δ(l) (seed 003 eq. 33), db(l) = 1ᵀ·Δ(l) (eq. 41).  The 1/N of the
    # seed is already inside Δ(L) (see the output deltas), so no scaling here.
    cdef Py_ssize_t i, j
    cdef const floating* row
    gemm(True, False, <int>d_in, <int>d_out, <int>n, <floating>1.0, A_prev, <int>d_in,
         D, <int>d_out, <floating>0.0, dW, <int>d_out)
    memset(db, 0, d_out * sizeof(floating))
    for i in range(n):
        row = D + i * d_out
        for j in range(d_out):
            db[j] += row[j]


cdef double mse_loss_delta(const floating* Yhat, const floating* Y, Py_ssize_t n,
                           Py_ssize_t k, floating* D) noexcept nogil:
    # L = (1/n)·Σᵢ‖ŷᵢ − yᵢ‖² and Δ(L) = (2/n)·(Ŷ − Y)  (seed 000 eq. 10–11, seed 001 §3:
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
    cdef floating m, s, lse, scale
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
        lse = m + flog(s)
        if Y == NULL:
            total += lse - z[labels[i]]
            scale = inv_n / s
            for j in range(k):
                d[j] *= scale
            d[labels[i]] -= inv_n
        else:
            y = Y + i * k
            row_loss = 0.0
            y_sum = 0.0
            for j in range(k):
                row_loss += <double>y[j] * (lse - z[j])
                y_sum += y[j]
            total += row_loss
            scale = <floating>(y_sum / s) * inv_n
            for j in range(k):
                d[j] = d[j] * scale - y[j] * inv_n
    return total / n


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
        s = 1 / s
        for j in range(k):
            z[j] *= s


cdef void sgd_update(floating* theta, const floating* grad, Py_ssize_t size,
                     floating lr) noexcept nogil:
    # θ ← θ − η·∇θ  (seed 000 eq. 12, with the 1/m already inside the gradient).
    cdef Py_ssize_t i
    for i in range(size):
        theta[i] -= lr * grad[i]


# --------------------------------------------------------------------------------------
# Whole-network passes over the flat parameter buffer
# --------------------------------------------------------------------------------------

cdef struct Net:
    int n_layers            # L, number of weight layers
    const Py_ssize_t* dims  # L + 1 layer widths
    const Py_ssize_t* w_off  # offset of W(l) in theta / grad
    const Py_ssize_t* b_off  # offset of b(l)
    int loss
    Py_ssize_t n_params


cdef void forward_pass(const Net* net, const floating* theta, const floating* X,
                       Py_ssize_t n, floating** acts) noexcept nogil:
    # acts[l] receives A(l+1), (n, dims[l+1]); the last one holds the raw outputs/logits.
    cdef int l
    cdef const floating* A_prev = X
    for l in range(net.n_layers):
        linear_forward(A_prev, n, net.dims[l], theta + net.w_off[l], theta + net.b_off[l],
                       net.dims[l + 1], acts[l])
        if l < net.n_layers - 1:
            relu_forward(acts[l], n * net.dims[l + 1])
        A_prev = acts[l]


cdef double output_loss_delta(const Net* net, const floating* out, const floating* Y,
                              const int64_t* labels, Py_ssize_t n,
                              floating* D) noexcept nogil:
    cdef Py_ssize_t k = net.dims[net.n_layers]
    if net.loss == C_LOSS_MSE:
        return mse_loss_delta(out, Y, n, k, D)
    return softmax_xent_loss_delta(out, Y, labels, n, k, D)


cdef int train_step(const Net* net, floating* theta, floating* grad, floating** acts,
                    floating* D_a, floating* D_b, const floating* X, Py_ssize_t n,
                    const floating* Y, const int64_t* labels, floating lr, bint update,
                    bint check_inputs, double* loss_out) noexcept nogil:
    # Forward, loss, backward (seed 003 eq. 29–42) and, if update, the SGD step — all in
    # one call.  The parameters are written only after the loss and every gradient are
    # known to be finite, so a diverging step leaves theta bit-identical.
    cdef int l, L = net.n_layers
    cdef Py_ssize_t k = net.dims[L]
    cdef floating* D = D_a
    cdef floating* D_other = D_b
    cdef floating* tmp
    cdef const floating* A_prev
    if check_inputs:
        if not all_finite(X, n * net.dims[0]):
            return BAD_X
        if Y != NULL and not all_finite(Y, n * k):
            return BAD_Y
        if Y == NULL and not labels_in_range(labels, n, k):
            return BAD_LABEL
    forward_pass(net, theta, X, n, acts)
    loss_out[0] = output_loss_delta(net, acts[L - 1], Y, labels, n, D)
    for l in range(L - 1, -1, -1):
        A_prev = X if l == 0 else acts[l - 1]
        linear_backward(A_prev, n, net.dims[l], D, net.dims[l + 1],
                        grad + net.w_off[l], grad + net.b_off[l])
        if l > 0:
            backprop_delta(D, n, net.dims[l + 1], theta + net.w_off[l], acts[l - 1],
                           net.dims[l], D_other)
            tmp = D
            D = D_other
            D_other = tmp
    if not (loss_out[0] - loss_out[0] == 0) or not all_finite(grad, net.n_params):
        return DIVERGED
    if update:
        sgd_update(theta, grad, net.n_params, lr)
    return OK


# --------------------------------------------------------------------------------------
# Python entry points
# --------------------------------------------------------------------------------------

cdef inline bint _is_carray(object a, int typenum, int ndim):
    # An ndarray of exactly this dtype, C-contiguous, aligned, of this ndim: what the
    # kernels may read through a raw pointer.
    if type(a) is not cnp.ndarray:
        return False
    return (cnp.PyArray_TYPE(<cnp.ndarray>a) == typenum
            and cnp.PyArray_NDIM(<cnp.ndarray>a) == ndim
            and cnp.PyArray_CHKFLAGS(<cnp.ndarray>a, cnp.NPY_ARRAY_CARRAY_RO))


cdef inline bint _is_writable_carray(object a, int typenum, int ndim):
    return (_is_carray(a, typenum, ndim)
            and cnp.PyArray_CHKFLAGS(<cnp.ndarray>a, cnp.NPY_ARRAY_WRITEABLE))


cdef class Engine:
    """The compiled half of an ``MLP``: sizes, offsets and workspace, and the passes.

    It holds pointers into arrays owned by the model (``theta``, ``grad``), which must not
    be reallocated while the engine lives.  The methods expect inputs already shaped and
    converted by the Python layer; they re-check dtype, shape and layout cheaply (C-level
    flag tests) because the kernels run without bounds checks.
    """
    cdef Net net
    cdef cnp.ndarray dims_arr, w_off_arr, b_off_arr
    cdef cnp.ndarray theta, grad
    cdef cnp.ndarray work        # activations A(1..L) and two delta buffers, for `cap` rows
    cdef cnp.ndarray gather_x, gather_y, gather_labels
    cdef Py_ssize_t cap, gather_cap, max_width
    cdef int typenum
    cdef bint f64
    cdef void* act_ptrs[64]

    def __cinit__(self, cnp.ndarray dims, cnp.ndarray theta, cnp.ndarray grad, int loss):
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
        if loss not in (C_LOSS_MSE, C_LOSS_SOFTMAX_XENT):
            raise ValueError("loss: unknown loss code")
        self.theta, self.grad = theta, grad
        self.net.n_layers = <int>L
        self.net.dims = d
        self.net.w_off = wo
        self.net.b_off = bo
        self.net.loss = loss
        self.net.n_params = off
        self.cap = 0
        self.gather_cap = 0

    @property
    def n_params(self):
        return self.net.n_params

    @property
    def capacity(self):
        """Rows the training workspace holds; grows on demand, never shrinks."""
        return self.cap

    cdef void _reserve(self, Py_ssize_t n) except *:
        # Workspace for a batch of n rows: A(1..L) and two delta buffers of the widest
        # layer.  Allocated once per new maximum batch size, then reused by every step.
        cdef Py_ssize_t l, total = 0, off = 0
        cdef int L = self.net.n_layers
        cdef char* base
        cdef Py_ssize_t itemsize = 8 if self.f64 else 4
        if n <= self.cap:
            return
        for l in range(1, L + 1):
            total += n * self.net.dims[l]
        total += 2 * n * self.max_width
        self.work = np.empty(total, dtype=np.float64 if self.f64 else np.float32)
        base = <char*>cnp.PyArray_DATA(self.work)
        for l in range(L):
            self.act_ptrs[l] = base + off * itemsize
            off += n * self.net.dims[l + 1]
        self.cap = n

    def reserve(self, Py_ssize_t n):
        """Make the training workspace hold batches of up to ``n`` rows."""
        if n < 1:
            raise ValueError("n: expected a positive batch size")
        self._reserve(n)

    cdef void* _delta_ptr(self, int which):
        cdef char* base = <char*>cnp.PyArray_DATA(self.work)
        cdef Py_ssize_t itemsize = 8 if self.f64 else 4
        cdef Py_ssize_t off = 0, l
        for l in range(1, self.net.n_layers + 1):
            off += self.cap * self.net.dims[l]
        return base + (off + which * self.cap * self.max_width) * itemsize

    cdef void _check_batch(self, object X, object Y, object labels) except *:
        cdef Py_ssize_t n
        cdef int L = self.net.n_layers
        if not _is_carray(X, self.typenum, 2) or X.shape[1] != self.net.dims[0]:
            raise ValueError(f"X: expected a C-contiguous ({self.net.dims[0]}-column) "
                             f"array of the model's dtype")
        n = X.shape[0]
        if n < 1:
            raise ValueError("X: expected at least one row")
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

    cdef int _run_step(self, object X, object Y, object labels, double lr, bint update,
                       bint check_inputs, double* loss) except -1:
        cdef Py_ssize_t n = X.shape[0]
        cdef const void* xp = cnp.PyArray_DATA(<cnp.ndarray>X)
        cdef const void* yp = NULL
        cdef const int64_t* lp = NULL
        cdef void* tp = cnp.PyArray_DATA(self.theta)
        cdef void* gp = cnp.PyArray_DATA(self.grad)
        cdef void* da
        cdef void* db
        cdef int status
        if labels is None:
            yp = cnp.PyArray_DATA(<cnp.ndarray>Y)
        else:
            lp = <const int64_t*>cnp.PyArray_DATA(<cnp.ndarray>labels)
        self._reserve(n)
        da = self._delta_ptr(0)
        db = self._delta_ptr(1)
        with nogil:
            if self.f64:
                status = train_step[double](&self.net, <double*>tp, <double*>gp,
                                            <double**>self.act_ptrs, <double*>da,
                                            <double*>db, <const double*>xp, n,
                                            <const double*>yp, lp, lr, update,
                                            check_inputs, loss)
            else:
                status = train_step[float](&self.net, <float*>tp, <float*>gp,
                                           <float**>self.act_ptrs, <float*>da,
                                           <float*>db, <const float*>xp, n,
                                           <const float*>yp, lp, <float>lr, update,
                                           check_inputs, loss)
        return status

    def train_step(self, X, Y, labels, double lr, bint update=True):
        """One step on a batch: forward, loss, gradients into ``grad``, then SGD if ``update``.

        X: (n, d0) C-contiguous, model dtype.  Either Y: (n, dL) model dtype, or labels:
        (n,) int64 (softmax cross-entropy only).  Returns the loss before the update.
        Raises ValueError for non-finite inputs or labels out of range, and
        DivergenceError (parameters untouched) when the loss or a gradient is not finite.
        """
        cdef double loss = 0.0
        cdef int status
        self._check_batch(X, Y, labels)
        status = self._run_step(X, Y, labels, lr, update, True, &loss)
        if status != OK:
            _raise_status(status, loss, self.net.dims[self.net.n_layers])
        return loss

    def fit_epoch(self, X, Y, labels, perm, Py_ssize_t batch_size, double lr):
        """One epoch of minibatch SGD in a single GIL-free loop.

        X, Y/labels as in ``train_step`` for all n rows, already checked finite and in
        range by the caller.  perm: None (rows in order) or an (n,) intp permutation; rows
        are gathered into a preallocated batch buffer.  The last partial batch is used.
        Returns (sum over batches of loss·batch_rows, status, index of the failing step).
        """
        cdef Py_ssize_t n, start, rows, i, j, step = 0
        cdef Py_ssize_t d0 = self.net.dims[0], k = self.net.dims[self.net.n_layers]
        cdef Py_ssize_t isz = 8 if self.f64 else 4
        cdef double loss = 0.0, total = 0.0
        cdef int status = OK
        cdef const Py_ssize_t* pp = NULL
        cdef const char* xp
        cdef const char* yp = NULL
        cdef const int64_t* lp = NULL
        cdef char* bx
        cdef char* by = NULL
        cdef int64_t* bl = NULL
        cdef const char* sx
        cdef const char* sy
        cdef const int64_t* sl
        cdef void* tp = cnp.PyArray_DATA(self.theta)
        cdef void* gp = cnp.PyArray_DATA(self.grad)
        cdef void* da
        cdef void* db
        self._check_batch(X, Y, labels)
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
            self._reserve_gather(batch_size, labels is not None)
        self._reserve(batch_size)
        da = self._delta_ptr(0)
        db = self._delta_ptr(1)
        xp = <const char*>cnp.PyArray_DATA(<cnp.ndarray>X)
        if labels is None:
            yp = <const char*>cnp.PyArray_DATA(<cnp.ndarray>Y)
        else:
            lp = <const int64_t*>cnp.PyArray_DATA(<cnp.ndarray>labels)
        if pp != NULL:
            bx = <char*>cnp.PyArray_DATA(self.gather_x)
            if labels is None:
                by = <char*>cnp.PyArray_DATA(self.gather_y)
            else:
                bl = <int64_t*>cnp.PyArray_DATA(self.gather_labels)
        with nogil:
            start = 0
            while start < n:
                rows = batch_size if start + batch_size <= n else n - start
                if pp == NULL:
                    sx = xp + start * d0 * isz
                    sy = NULL if yp == NULL else yp + start * k * isz
                    sl = NULL if lp == NULL else lp + start
                else:
                    for i in range(rows):
                        j = pp[start + i]
                        memcpy(bx + i * d0 * isz, xp + j * d0 * isz, d0 * isz)
                        if yp != NULL:
                            memcpy(by + i * k * isz, yp + j * k * isz, k * isz)
                        else:
                            bl[i] = lp[j]
                    sx = bx
                    sy = by
                    sl = bl
                if self.f64:
                    status = train_step[double](&self.net, <double*>tp, <double*>gp,
                                                <double**>self.act_ptrs, <double*>da,
                                                <double*>db, <const double*>sx, rows,
                                                <const double*>sy, sl, lr, True, False,
                                                &loss)
                else:
                    status = train_step[float](&self.net, <float*>tp, <float*>gp,
                                               <float**>self.act_ptrs, <float*>da,
                                               <float*>db, <const float*>sx, rows,
                                               <const float*>sy, sl, <float>lr, True,
                                               False, &loss)
                if status != OK:
                    break
                total += loss * rows
                start += rows
                step += 1
        return total, status, step

    cdef void _reserve_gather(self, Py_ssize_t n, bint with_labels) except *:
        cdef object dt = np.float64 if self.f64 else np.float32
        if n > self.gather_cap or (with_labels and self.gather_labels is None) or (
                not with_labels and self.gather_y is None):
            cap = max(n, self.gather_cap)
            self.gather_x = np.empty(cap * self.net.dims[0], dtype=dt)
            if with_labels:
                self.gather_labels = np.empty(cap, dtype=np.int64)
            else:
                self.gather_y = np.empty(cap * self.net.dims[self.net.n_layers], dtype=dt)
            self.gather_cap = cap

    def forward(self, X, out):
        """Raw outputs/logits of the network for X (n, d0) into ``out`` (n, dL).

        Uses scratch memory of its own, so concurrent calls on one engine are safe while
        no training step changes the parameters.  Raises ValueError if X is not finite.
        """
        cdef Py_ssize_t n, l, width
        cdef int L = self.net.n_layers
        cdef void* ptrs[64]
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
        if (not _is_writable_carray(out, self.typenum, 2) or out.shape[0] != n
                or out.shape[1] != self.net.dims[L]):
            raise ValueError(f"out: expected a writable ({n}, {self.net.dims[L]}) array")
        if n == 0:
            return out
        width = 0
        for l in range(1, L):
            if self.net.dims[l] > width:
                width = self.net.dims[l]
        # hidden activations alternate between two scratch halves; the last layer
        # writes straight into `out`.
        scratch = np.empty(max(2 * n * width, 1), dtype=self.theta.dtype)
        s0 = <char*>cnp.PyArray_DATA(scratch)
        s1 = s0 + n * width * isz
        for l in range(L - 1):
            ptrs[l] = s0 if l % 2 == 0 else s1
        ptrs[L - 1] = cnp.PyArray_DATA(<cnp.ndarray>out)
        xp = cnp.PyArray_DATA(<cnp.ndarray>X)
        with nogil:
            if self.f64:
                ok = all_finite[double](<const double*>xp, n * self.net.dims[0])
                if ok:
                    forward_pass[double](&self.net, <const double*>tp, <const double*>xp,
                                         n, <double**>ptrs)
            else:
                ok = all_finite[float](<const float*>xp, n * self.net.dims[0])
                if ok:
                    forward_pass[float](&self.net, <const float*>tp, <const float*>xp,
                                        n, <float**>ptrs)
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


def status_message(int status):
    """Map a ``fit_epoch`` status code to the exception it stands for (or None)."""
    if status == OK:
        return None
    if status == DIVERGED:
        return DivergenceError
    return ValueError


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
        backprop_delta(&D_next[0, 0], D_next.shape[0], D_next.shape[1], &W_next[0, 0],
                       &A[0, 0], A.shape[1], &D[0, 0])


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
        raise ValueError(f"labels: expected integers in [0, {logits.shape[1]})")
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
