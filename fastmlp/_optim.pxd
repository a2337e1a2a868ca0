# Optimizers: one update rule per optimizer, written once as scalar functions and used by
# both passes over a segment of the flat buffer — the finite pre-check, which evaluates
# the new values without storing them, and the update, which stores them — so that
# "finite in the check" means "finite in the update", bit for bit.

from cython cimport floating
from libc.math cimport pow, sqrt
from libc.stdint cimport int32_t, int64_t, uint64_t

from fastmlp._fmath cimport fsqrt, nonfinite64

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

cdef inline floating sgd_rule(floating theta, floating g, floating lr) noexcept nogil:
    # θ ← θ − η·∇θ  (seed 000 eq. 12, with the 1/m already inside the gradient).
    return theta - lr * g


cdef inline floating momentum_velocity(floating vel, floating g, floating mu,
                                       floating lr) noexcept nogil:
    # v ← μ·v − η·∇θ; then θ ← θ + v (momentum) or θ + μ·v − η·∇θ (Nesterov).
    return mu * vel - lr * g


cdef inline floating momentum_rule(floating theta, floating v) noexcept nogil:
    return theta + v


cdef inline floating nesterov_rule(floating theta, floating v, floating g, floating mu,
                                   floating lr) noexcept nogil:
    return theta + (mu * v - lr * g)


cdef inline double adam_step_size(double lr, double beta1, double beta2,
                                  int64_t t) noexcept nogil:
    # η_t = η·√(1 − β2ᵗ)/(1 − β1ᵗ): Adam's bias correction folded into the step size
    # (Kingma & Ba, §2).
    return lr * sqrt(1 - pow(beta2, <double>t)) / (1 - pow(beta1, <double>t))


cdef inline floating adam_rule(floating theta, floating m, floating v, floating lr_t,
                               floating eps) noexcept nogil:
    # m ← β1·m + (1−β1)·g, v ← β2·v + (1−β2)·g² (the two moment updates below it),
    # θ ← θ − η_t·m/(√v + ε), all in the model dtype with the constants rounded to it.
    # (scikit-learn's float32 step goes through float64 by numpy's promotion; a float32
    # division instead costs a float32 ulp per step and halves the pass, which is bound
    # by its divisions.)
    return theta + (-lr_t * m) / (fsqrt(v) + eps)


cdef inline floating ema(floating old, floating new, floating beta,
                         floating one_m_beta) noexcept nogil:
    # β·old + (1 − β)·new: Adam's moments.
    return beta * old + one_m_beta * new


# ---------------------------------------------------------------- the passes

cdef inline bint update_is_finite(const Optim* opt, const floating* theta,
                                  const floating* grad, const floating* s1,
                                  const floating* s2, Py_ssize_t size, double lr,
                                  double alpha, double norm) noexcept nogil:
    # Every new parameter and state value the update below would store is finite.  A
    # non-finite gradient always makes a new value non-finite, so this also checks the
    # gradient.  Comparisons are combined with a bitwise |, not `and`: no branch, so
    # loops vectorise.
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
            t = sgd_rule(theta[i], grad_value(grad[i], theta[i], decay, a, nrm), fl)
            if floating is float:
                bad32 |= (t - t) != 0
            else:
                bad64 |= nonfinite64(t)
    elif opt.kind == C_OPT_ADAM:
        flr_t = <floating>adam_step_size(lr, opt.beta1, opt.beta2, opt.t + 1)
        for i in range(size):
            g = grad_value(grad[i], theta[i], decay, a, nrm)
            mm = ema(s1[i], g, b1, c1)
            vv = ema(s2[i], g * g, b2, c2)
            t = adam_rule(theta[i], mm, vv, flr_t, e)
            if floating is float:
                bad32 |= ((t - t) != 0) | ((mm - mm) != 0) | ((vv - vv) != 0)
            else:
                bad64 |= nonfinite64(t) | nonfinite64(mm) | nonfinite64(vv)
    elif opt.kind == C_OPT_NESTEROV:     # (two loops: a select inside one kept it scalar)
        for i in range(size):
            g = grad_value(grad[i], theta[i], decay, a, nrm)
            v = momentum_velocity(s1[i], g, mu, fl)
            t = nesterov_rule(theta[i], v, g, mu, fl)
            if floating is float:
                bad32 |= ((t - t) != 0) | ((v - v) != 0)
            else:
                bad64 |= nonfinite64(t) | nonfinite64(v)
    else:
        for i in range(size):
            g = grad_value(grad[i], theta[i], decay, a, nrm)
            v = momentum_velocity(s1[i], g, mu, fl)
            t = momentum_rule(theta[i], v)
            if floating is float:
                bad32 |= ((t - t) != 0) | ((v - v) != 0)
            else:
                bad64 |= nonfinite64(t) | nonfinite64(v)
    return not ((bad32 != 0) | ((bad64 >> 63) != 0))


cdef enum:
    # Values sgd_update_squares updates and then squares at a time: 8 KB of float64.
    SQUARES_PIECE = 1024


cdef inline void sgd_update(floating* theta, const floating* grad, Py_ssize_t size,
                            floating lr, floating a, floating nrm) noexcept nogil:
    cdef Py_ssize_t i
    cdef bint decay = a != 0
    for i in range(size):
        theta[i] = sgd_rule(theta[i], grad_value(grad[i], theta[i], decay, a, nrm), lr)


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
    cdef Py_ssize_t i
    cdef floating v, g
    cdef bint decay = a != 0
    if nesterov:        # two loops: a select inside one kept it scalar
        for i in range(size):
            g = grad_value(grad[i], theta[i], decay, a, nrm)
            v = momentum_velocity(vel[i], g, mu, lr)
            vel[i] = v
            theta[i] = nesterov_rule(theta[i], v, g, mu, lr)
    else:
        for i in range(size):
            g = grad_value(grad[i], theta[i], decay, a, nrm)
            v = momentum_velocity(vel[i], g, mu, lr)
            vel[i] = v
            theta[i] = momentum_rule(theta[i], v)


cdef inline void adam_update(floating* theta, const floating* grad, floating* m,
                             floating* v, Py_ssize_t size, double lr, double beta1,
                             double beta2, double eps, int64_t t, floating a,
                             floating nrm) noexcept nogil:
    # t is the step count after this step (≥ 1).
    cdef Py_ssize_t i
    cdef floating lr_t = <floating>adam_step_size(lr, beta1, beta2, t)
    cdef floating b1 = <floating>beta1, c1 = <floating>(1 - beta1)
    cdef floating b2 = <floating>beta2, c2 = <floating>(1 - beta2), e = <floating>eps
    cdef floating g
    cdef bint decay = a != 0
    for i in range(size):
        g = grad_value(grad[i], theta[i], decay, a, nrm)
        m[i] = ema(m[i], g, b1, c1)
        v[i] = ema(v[i], g * g, b2, c2)
        theta[i] = adam_rule(theta[i], m[i], v[i], lr_t, e)
