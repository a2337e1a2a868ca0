# Optimizers: their state, the step-size of Adam, and the passes over a segment of the
# flat buffer — the finite pre-check, which evaluates the new values without storing
# them, and the update, which stores them.  The update rules and both passes are C, in
# _optim.h (one rule per optimizer, inlined by both passes, each pass compiled for
# three instruction sets); this file picks the pass by optimizer and dtype.

from cython cimport floating
from libc.math cimport pow, sqrt
from libc.stdint cimport int64_t


# Optimizer codes; _core.OPT_CODES maps their names to them.
cdef enum:
    C_OPT_SGD = 0
    C_OPT_MOMENTUM = 1
    C_OPT_NESTEROV = 2
    C_OPT_ADAM = 3


cdef struct Optim:
    int kind
    double momentum, beta1, beta2, eps
    void* s1                 # velocity, or Adam's first moment
    void* s2                 # Adam's second moment
    int64_t t                # Adam's step count


# ---------------------------------------------------------------- gradient conventions

# The update passes receive the raw gradient AᵀΔ and turn it into ∇θ themselves, with the
# a and nrm of _optim.h's header (fmo_grad): they read θ anyway, so this costs one pass
# over the parameters less than scaling the gradient buffer first.

cdef inline void scale_gradients(floating* dW, const floating* W, Py_ssize_t size,
                                 double alpha, double norm, bint sk_order) noexcept nogil:
    # The gradient a step returns without updating (loss_and_grad, L-BFGS): fastmlp
    # dW += (α/n)·W; scikit-learn dW = (dW + α·W) / Σw, its division kept, so that L-BFGS
    # sees scikit-learn's numbers to the last bit where the products agree.
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


# ---------------------------------------------------------------- the rules

cdef inline double adam_step_size(double lr, double beta1, double beta2,
                                  int64_t t) noexcept nogil:
    # η_t = η·√(1 − β2ᵗ)/(1 − β1ᵗ): Adam's bias correction folded into the step size
    # (Kingma & Ba, §2).  The rules themselves, and the passes, are in _optim.h.
    return lr * sqrt(1 - pow(beta2, <double>t)) / (1 - pow(beta1, <double>t))


cdef inline void adam_constants(double lr, double beta1, double beta2, double eps,
                                int64_t t, floating* c) noexcept nogil:
    # c = [η_t, β1, 1 − β1, β2, 1 − β2, ε] rounded to the model dtype for step t: rounded
    # here once for both passes, so that the pre-check and the update use the same numbers.
    c[0] = <floating>adam_step_size(lr, beta1, beta2, t)
    c[1] = <floating>beta1
    c[2] = <floating>(1 - beta1)
    c[3] = <floating>beta2
    c[4] = <floating>(1 - beta2)
    c[5] = <floating>eps


cdef extern from "_optim.h" nogil:
    bint fmo_sgd_finite_f32(const float* theta, const float* grad, Py_ssize_t n,
                            float lr, float a, float nrm)
    bint fmo_sgd_finite_f64(const double* theta, const double* grad, Py_ssize_t n,
                            double lr, double a, double nrm)
    void fmo_sgd_update_f32(float* theta, const float* grad, Py_ssize_t n, float lr,
                            float a, float nrm)
    void fmo_sgd_update_f64(double* theta, const double* grad, Py_ssize_t n, double lr,
                            double a, double nrm)
    bint fmo_momentum_finite_f32(const float* theta, const float* grad, const float* vel,
                                 Py_ssize_t n, float lr, float mu, int nesterov, float a,
                                 float nrm)
    bint fmo_momentum_finite_f64(const double* theta, const double* grad,
                                 const double* vel, Py_ssize_t n, double lr, double mu,
                                 int nesterov, double a, double nrm)
    void fmo_momentum_update_f32(float* theta, const float* grad, float* vel,
                                 Py_ssize_t n, float lr, float mu, int nesterov, float a,
                                 float nrm)
    void fmo_momentum_update_f64(double* theta, const double* grad, double* vel,
                                 Py_ssize_t n, double lr, double mu, int nesterov,
                                 double a, double nrm)
    bint fmo_adam_finite_f32(const float* theta, const float* grad, const float* m,
                             const float* v, Py_ssize_t n, float lr_t, float b1, float c1,
                             float b2, float c2, float eps, float a, float nrm)
    bint fmo_adam_finite_f64(const double* theta, const double* grad, const double* m,
                             const double* v, Py_ssize_t n, double lr_t, double b1,
                             double c1, double b2, double c2, double eps, double a,
                             double nrm)
    void fmo_adam_update_f32(float* theta, const float* grad, float* m, float* v,
                             Py_ssize_t n, float lr_t, float b1, float c1, float b2,
                             float c2, float eps, float a, float nrm)
    void fmo_adam_update_f64(double* theta, const double* grad, double* m, double* v,
                             Py_ssize_t n, double lr_t, double b1, double c1, double b2,
                             double c2, double eps, double a, double nrm)


# ---------------------------------------------------------------- the passes

cdef inline bint update_is_finite(const Optim* opt, const floating* theta,
                                  const floating* grad, const floating* s1,
                                  const floating* s2, Py_ssize_t size, double lr,
                                  double alpha, double norm) noexcept nogil:
    # Every new parameter and state value the update below would store is finite (and
    # so the gradient is): the check pass of _optim.h for opt's rule.
    cdef floating fl = <floating>lr, a = <floating>alpha, nrm = <floating>norm
    cdef floating mu = <floating>opt.momentum
    cdef floating c[6]
    if opt.kind == C_OPT_SGD:
        if floating is float:
            return fmo_sgd_finite_f32(theta, grad, size, fl, a, nrm)
        else:
            return fmo_sgd_finite_f64(theta, grad, size, fl, a, nrm)
    if opt.kind == C_OPT_ADAM:
        adam_constants(lr, opt.beta1, opt.beta2, opt.eps, opt.t + 1, c)
        if floating is float:
            return fmo_adam_finite_f32(theta, grad, s1, s2, size, c[0], c[1], c[2], c[3],
                                       c[4], c[5], a, nrm)
        else:
            return fmo_adam_finite_f64(theta, grad, s1, s2, size, c[0], c[1], c[2], c[3],
                                       c[4], c[5], a, nrm)
    if floating is float:
        return fmo_momentum_finite_f32(theta, grad, s1, size, fl, mu,
                                       opt.kind == C_OPT_NESTEROV, a, nrm)
    else:
        return fmo_momentum_finite_f64(theta, grad, s1, size, fl, mu,
                                       opt.kind == C_OPT_NESTEROV, a, nrm)


cdef enum:
    # Values sgd_update_squares updates and then squares at a time: 8 KB of float64.
    SQUARES_PIECE = 1024


cdef inline void sgd_update(floating* theta, const floating* grad, Py_ssize_t size,
                            floating lr, floating a, floating nrm) noexcept nogil:
    if floating is float:
        fmo_sgd_update_f32(theta, grad, size, lr, a, nrm)
    else:
        fmo_sgd_update_f64(theta, grad, size, lr, a, nrm)


cdef inline void add_squares(const floating* x, Py_ssize_t size, double* acc,
                             Py_ssize_t pos, Py_ssize_t blocked) noexcept nogil:
    # Σ x², in double, into eight running sums: x[i] is position pos + i of a matrix and
    # goes to acc[(pos + i) % 8] below `blocked` (the matrix's size rounded down to 8),
    # to acc[0] from there.  Eight sums, not one: a single sum is a chain of dependent
    # additions (one per ~4 cycles); eight run at the adder's throughput and vectorise.
    # Called on consecutive pieces of a matrix, it sums the same numbers in the same order
    # as on the whole.
    cdef Py_ssize_t i = 0, j, lim = min(size, max(blocked - pos, 0))
    cdef double s[8]
    for j in range(8):
        s[j] = acc[j]
    while i < lim and (pos + i) % 8 != 0:
        s[(pos + i) % 8] += <double>x[i] * x[i]
        i += 1
    while i + 8 <= lim:
        for j in range(8):
            s[j] += <double>x[i + j] * x[i + j]
        i += 8
    while i < size:
        s[(pos + i) % 8 if i < lim else 0] += <double>x[i] * x[i]
        i += 1
    for j in range(8):
        acc[j] = s[j]


cdef inline void sgd_update_squares(floating* theta, const floating* grad, Py_ssize_t size,
                                    floating lr, floating a, floating nrm, double* acc,
                                    Py_ssize_t pos, Py_ssize_t blocked) noexcept nogil:
    # sgd_update, then add_squares of the new values, a piece small enough to stay in
    # the L1 cache at a time: one pass over theta from memory instead of two, and each
    # loop as simple (and as vectorised) as on its own.
    cdef Py_ssize_t i = 0, c
    while i < size:
        c = min(<Py_ssize_t>SQUARES_PIECE, size - i)
        sgd_update(theta + i, grad + i, c, lr, a, nrm)
        add_squares(theta + i, c, acc, pos + i, blocked)
        i += c


cdef inline void momentum_update(floating* theta, const floating* grad, floating* vel,
                                 Py_ssize_t size, floating lr, floating mu, bint nesterov,
                                 floating a, floating nrm) noexcept nogil:
    if floating is float:
        fmo_momentum_update_f32(theta, grad, vel, size, lr, mu, nesterov, a, nrm)
    else:
        fmo_momentum_update_f64(theta, grad, vel, size, lr, mu, nesterov, a, nrm)


cdef inline void adam_update(floating* theta, const floating* grad, floating* m,
                             floating* v, Py_ssize_t size, double lr, double beta1,
                             double beta2, double eps, int64_t t, floating a,
                             floating nrm) noexcept nogil:
    # t is the step count after this step (≥ 1).
    cdef floating c[6]
    adam_constants(lr, beta1, beta2, eps, t, c)
    if floating is float:
        fmo_adam_update_f32(theta, grad, m, v, size, c[0], c[1], c[2], c[3], c[4], c[5],
                            a, nrm)
    else:
        fmo_adam_update_f64(theta, grad, m, v, size, c[0], c[1], c[2], c[3], c[4], c[5],
                            a, nrm)
