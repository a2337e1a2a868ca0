# Single-kernel entry points, for fastmlp.kernels, which validates values and allocates.
# Included by _core.pyx: the wrappers compile into the one module, beside the kernels.
# Each checks the sizes its kernel relies on (bounds checking is off in the kernels),
# BLAS's 32-bit sizes included.


cdef int _derivable_activation(str name, str kind) except -1:
    if kind not in HIDDEN_ACTIVATIONS:
        raise ValueError(f"{name}: expected an element-wise activation with a derivative, "
                         f"got {kind!r}")
    return ACT_CODES[kind]


cdef const floating* _z_pointer(int code, const floating[:, ::1] Z,
                                const floating[:, ::1] A) except? NULL:
    # The activation's input where its derivative needs it (shape of A), else NULL.
    if not activation_needs_z(code):
        return NULL
    if Z is None or Z.shape[0] != A.shape[0] or Z.shape[1] != A.shape[1]:
        raise ValueError("Z: the activation's derivative needs its input Z, shaped as A")
    if Z.shape[0] < 1 or Z.shape[1] < 1:
        return NULL
    return &Z[0, 0]


cdef _check_blas_dims(str name, Py_ssize_t a, Py_ssize_t b, Py_ssize_t c):
    if a > BLAS_MAX or b > BLAS_MAX or c > BLAS_MAX:
        raise ValueError(f"{name}: a dimension over {BLAS_MAX} exceeds BLAS's 32-bit sizes")

def k_linear_forward(const floating[:, ::1] A, const floating[:, ::1] W,
                     const floating[::1] b, floating[:, ::1] Z):
    if (W.shape[0] != A.shape[1] or b.shape[0] != W.shape[1] or Z.shape[0] != A.shape[0]
            or Z.shape[1] != W.shape[1] or A.shape[0] < 1 or A.shape[1] < 1
            or W.shape[1] < 1):
        raise ValueError("linear_forward: inconsistent shapes")
    _check_blas_dims("linear_forward", A.shape[0], A.shape[1], W.shape[1])
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
                     const floating[:, ::1] A, floating[:, ::1] D, str activation="relu",
                     const floating[:, ::1] Z=None):
    cdef int code = _derivable_activation("activation", activation)
    if (W_next.shape[1] != D_next.shape[1] or A.shape[0] != D_next.shape[0]
            or A.shape[1] != W_next.shape[0] or D.shape[0] != A.shape[0]
            or D.shape[1] != A.shape[1] or min(A.shape[0], A.shape[1], D_next.shape[1]) < 1):
        raise ValueError("backprop_delta: inconsistent shapes")
    _check_blas_dims("backprop_delta", A.shape[0], A.shape[1], D_next.shape[1])
    cdef const floating* zp = _z_pointer(code, Z, A)
    with nogil:
        backprop_delta(code, &D_next[0, 0], D_next.shape[0], D_next.shape[1],
                       &W_next[0, 0], &A[0, 0], zp, A.shape[1], &D[0, 0])


def k_linear_backward(const floating[:, ::1] A_prev, const floating[:, ::1] D,
                      floating[:, ::1] dW, floating[::1] db):
    if (A_prev.shape[0] != D.shape[0] or dW.shape[0] != A_prev.shape[1]
            or dW.shape[1] != D.shape[1] or db.shape[0] != D.shape[1]
            or min(A_prev.shape[0], A_prev.shape[1], D.shape[1]) < 1):
        raise ValueError("linear_backward: inconsistent shapes")
    _check_blas_dims("linear_backward", A_prev.shape[0], A_prev.shape[1], D.shape[1])
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


# The update kernels: with `check`, nothing is written and the result says whether every
# value the update with the same arguments would store is finite (the step's pre-check).

def k_sgd_update(floating[::1] theta, const floating[::1] grad, double lr,
                 bint check=False):
    if theta.shape[0] != grad.shape[0]:
        raise ValueError("sgd_update: theta and grad differ in size")
    cdef Optim opt
    cdef bint ok
    if theta.shape[0] < 1:
        return True
    opt.kind = C_OPT_SGD
    opt.s1 = opt.s2 = NULL
    with nogil:
        ok = split_flat_update(&opt, &theta[0], &grad[0], theta.shape[0], lr, check)
    return ok


def k_all_finite(const floating[::1] x):
    """Whether every value of x is finite: the up-front check of a fit's rows (one pass
    over the whole data set, split over the pool as the step's guards are)."""
    cdef bint ok
    if x.shape[0] < 1:
        return True
    with nogil:
        ok = split_all_finite(&x[0], x.shape[0])
    return ok


def k_max_abs(const floating[::1] x):
    """max |x| as a float (+inf if x holds a NaN, 0.0 if empty): the bound the fused SGD
    step is taken on."""
    cdef double m
    if x.shape[0] < 1:
        return 0.0
    with nogil:
        m = max_abs(&x[0], x.shape[0])
    return m


def k_activation_forward(str kind, floating[:, ::1] Z):
    if kind not in ACT_CODES:
        raise ValueError(f"kind: unknown activation {kind!r}")
    cdef int code = ACT_CODES[kind]
    if Z.shape[0] < 1 or Z.shape[1] < 1:
        return
    with nogil:
        activation_forward(code, &Z[0, 0], Z.shape[0], Z.shape[1])


def k_activation_backward(str kind, const floating[:, ::1] A, floating[:, ::1] D,
                          const floating[:, ::1] Z=None):
    cdef int code = _derivable_activation("kind", kind)
    if A.shape[0] != D.shape[0] or A.shape[1] != D.shape[1]:
        raise ValueError("activation_backward: inconsistent shapes")
    cdef const floating* zp = _z_pointer(code, Z, A)
    if A.shape[0] < 1 or A.shape[1] < 1:
        return
    with nogil:
        activation_backward(code, &A[0, 0], zp, &D[0, 0], A.shape[0] * A.shape[1])


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
                      double lr, double momentum, bint nesterov, bint check=False):
    if theta.shape[0] != grad.shape[0] or vel.shape[0] != theta.shape[0]:
        raise ValueError("momentum_update: theta, grad and velocity differ in size")
    cdef Optim opt
    cdef bint ok
    if theta.shape[0] < 1:
        return True
    opt.kind = C_OPT_NESTEROV if nesterov else C_OPT_MOMENTUM
    opt.momentum = momentum
    opt.s1 = &vel[0]
    opt.s2 = NULL
    with nogil:
        ok = split_flat_update(&opt, &theta[0], &grad[0], theta.shape[0], lr, check)
    return ok


def k_adam_update(floating[::1] theta, const floating[::1] grad, floating[::1] m,
                  floating[::1] v, double lr, double beta1, double beta2, double eps,
                  int64_t t, bint check=False):
    if (theta.shape[0] != grad.shape[0] or m.shape[0] != theta.shape[0]
            or v.shape[0] != theta.shape[0]):
        raise ValueError("adam_update: theta, grad, m and v differ in size")
    if t < 1:
        raise ValueError("t: expected the step count, >= 1")
    cdef Optim opt
    cdef bint ok
    if theta.shape[0] < 1:
        return True
    opt.kind = C_OPT_ADAM
    opt.beta1 = beta1
    opt.beta2 = beta2
    opt.eps = eps
    opt.s1 = &m[0]
    opt.s2 = &v[0]
    opt.t = t - 1 if check else t     # the check is of the step to t (update_is_finite)
    with nogil:
        ok = split_flat_update(&opt, &theta[0], &grad[0], theta.shape[0], lr, check)
    return ok


def adam_step_size(double lr, double beta1, double beta2, int64_t t):
    """Adam's bias-corrected step size η·√(1 − β2ᵗ)/(1 − β1ᵗ) after t ≥ 1 steps."""
    if t < 1:
        raise ValueError("t: expected the step count, >= 1")
    return _adam_step_size(lr, beta1, beta2, t)


def k_dropout_forward(floating[:, ::1] A, floating[:, ::1] mask, double p, uint64_t state):
    """A ⊙= mask in place, mask drawn from ``state``; returns the advanced state."""
    if A.shape[0] != mask.shape[0] or A.shape[1] != mask.shape[1]:
        raise ValueError("dropout_forward: inconsistent shapes")
    if not 0 <= p < 1:
        raise ValueError(f"p: expected a probability in [0, 1), got {p!r}")
    if A.shape[0] < 1 or A.shape[1] < 1:
        return state
    with nogil:
        dropout_forward(&A[0, 0], &mask[0, 0], A.shape[0] * A.shape[1], p, &state)
    return state


cdef _check_csr(str name, const csr_index[::1] indices, const csr_index[::1] indptr,
                Py_ssize_t n_stored, Py_ssize_t n_cols):
    # What the CSR kernels rely on (SparseRows checks the same for training).
    cdef int what = 0
    if indptr.shape[0] < 2 or indices.shape[0] != n_stored or n_cols < 1:
        raise ValueError(f"{name}: inconsistent shapes")
    if not csr_structure_ok(&indptr[0], &indices[0] if n_stored else NULL,
                            indptr.shape[0] - 1, n_stored, n_cols, &what):
        raise ValueError(f"{name}: invalid CSR structure (indptr or column indices)")


def k_csr_linear_forward(const floating[::1] data, const csr_index[::1] indices,
                         const csr_index[::1] indptr, const floating[:, ::1] W,
                         const floating[::1] b, floating[:, ::1] Z):
    _check_csr("csr_linear_forward", indices, indptr, data.shape[0], W.shape[0])
    if (b.shape[0] != W.shape[1] or Z.shape[0] != indptr.shape[0] - 1
            or Z.shape[1] != W.shape[1] or W.shape[1] < 1):
        raise ValueError("csr_linear_forward: inconsistent shapes")
    with nogil:
        csr_linear_forward(&data[0] if data.shape[0] else NULL,
                           &indices[0] if data.shape[0] else NULL, &indptr[0], Z.shape[0],
                           &W[0, 0], &b[0], W.shape[1], &Z[0, 0])


def k_csr_transposed_accumulate(const floating[::1] data, const csr_index[::1] indices,
                                const csr_index[::1] indptr, const floating[:, ::1] D,
                                floating[:, ::1] dW):
    _check_csr("csr_transposed_accumulate", indices, indptr, data.shape[0], dW.shape[0])
    if D.shape[0] != indptr.shape[0] - 1 or D.shape[1] != dW.shape[1] or D.shape[1] < 1:
        raise ValueError("csr_transposed_accumulate: inconsistent shapes")
    with nogil:
        csr_transposed_accumulate(&data[0] if data.shape[0] else NULL,
                                  &indices[0] if data.shape[0] else NULL, &indptr[0],
                                  D.shape[0], &D[0, 0], D.shape[1], &dW[0, 0])


# The vectorised functions of _vecmath.h one by one, and its instruction-set level, for
# the accuracy tests (tests/test_vecmath.py), which run every level the CPU has.
from fastmlp._fmath cimport (fm_vec_get_level, fm_vec_set_level, fmv_exp_f32, fmv_exp_f64,
                             fmv_expm1_f32, fmv_expm1_f64, fmv_log1p01_f32, fmv_log1p01_f64,
                             fmv_sigmoid_f32, fmv_sigmoid_f64, fmv_softplus_f32,
                             fmv_softplus_f64, fmv_tanh_f32, fmv_tanh_f64)

VECMATH_FUNCTIONS = ("exp", "expm1", "log1p01", "tanh", "sigmoid", "softplus")
VECMATH_LEVELS = ("sse2", "avx2", "avx512")


def k_vecmath(str name, floating[::1] x):
    """x ← f(x) in place for f one of VECMATH_FUNCTIONS (log1p01: log1p on [0, 1])."""
    cdef Py_ssize_t n = x.shape[0]
    cdef int code
    if name not in VECMATH_FUNCTIONS:
        raise ValueError(f"name: expected one of {VECMATH_FUNCTIONS}, got {name!r}")
    if n < 1:
        return
    code = VECMATH_FUNCTIONS.index(name)
    with nogil:
        if floating is float:
            if code == 0: fmv_exp_f32(&x[0], n)
            elif code == 1: fmv_expm1_f32(&x[0], n)
            elif code == 2: fmv_log1p01_f32(&x[0], n)
            elif code == 3: fmv_tanh_f32(&x[0], n)
            elif code == 4: fmv_sigmoid_f32(&x[0], n)
            else: fmv_softplus_f32(&x[0], n)
        else:
            if code == 0: fmv_exp_f64(&x[0], n)
            elif code == 1: fmv_expm1_f64(&x[0], n)
            elif code == 2: fmv_log1p01_f64(&x[0], n)
            elif code == 3: fmv_tanh_f64(&x[0], n)
            elif code == 4: fmv_sigmoid_f64(&x[0], n)
            else: fmv_softplus_f64(&x[0], n)


def k_vecmath_level(level=None):
    """The instruction set the vectorised math runs with ("sse2", "avx2" or "avx512");
    with ``level``, switch to it first (to the best the CPU has if it lacks it)."""
    if level is not None:
        if level not in VECMATH_LEVELS:
            raise ValueError(f"level: expected one of {VECMATH_LEVELS}, got {level!r}")
        fm_vec_set_level(VECMATH_LEVELS.index(level))
    return VECMATH_LEVELS[fm_vec_get_level()]
