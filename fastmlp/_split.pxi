# Element-wise passes split over fastmlp's worker pool (_pool.pxd) by ranges of elements
# (included by _core.pyx).  Each part computes exactly what the whole pass computes on
# its elements, so the bits do not depend on the thread count; a pass too small to pay
# for a wake-up (its grain, below) runs whole on the calling thread.

cdef extern from *:
    """
    /* A part's verdict, written by whichever thread ran it. */
    static inline void fastmlp_flag_set(int *flag) {
        __atomic_store_n(flag, 1, __ATOMIC_RELAXED);
    }
    """
    void flag_set "fastmlp_flag_set"(int* flag) noexcept nogil

# Elements of the flat buffer that pay for one more thread in the optimizer's passes
# (its pre-check and update; _update.pxi).  Measured on a 2-vCPU VM, online Adam steps
# split against whole, interleaved: 12,730 parameters no faster, 25,450 0.76-0.83x,
# 101,770 and more 0.61-0.77x (bench/README.md, "The serial part of a step").
cdef enum:
    UPDATE_GRAIN = 8192


cdef struct UpdateJob:
    const Net* net
    Optim* opt
    void* theta
    const void* grad
    double lr, norm
    Py_ssize_t chunk
    bint f64
    bint check           # the finite pre-check, not the update
    int bad              # a part's pre-check failed


cdef bint update_range(UpdateJob* j, floating* theta, const floating* grad,
                       Py_ssize_t lo, Py_ssize_t hi) noexcept nogil:
    # The pre-check or the update of theta[lo:hi], segment by segment (segment() gives
    # each its a and nrm).
    cdef int s
    cdef Py_ssize_t off, size, b, e
    cdef double a, nrm
    for s in range(2 * j.net.n_layers):
        segment(j.net, s, j.norm, &off, &size, &a, &nrm)
        b = off if off > lo else lo
        e = off + size if off + size < hi else hi
        if b >= e:
            continue
        if j.check:
            if not segment_is_finite(j.opt, theta, grad, b, e - b, j.net.dims[1], NULL,
                                     j.lr, a, nrm):
                return False
        else:
            update_segment(j.opt, theta, grad, b, 0, e - b, j.lr, a, nrm)
    return True


cdef void update_part(void* ctx, int part) noexcept nogil:
    cdef UpdateJob* j = <UpdateJob*>ctx
    cdef Py_ssize_t lo = part * j.chunk
    cdef Py_ssize_t hi = min(lo + j.chunk, j.net.n_params)
    cdef bint ok
    if lo >= hi:
        return
    if j.f64:
        ok = update_range[double](j, <double*>j.theta, <const double*>j.grad, lo, hi)
    else:
        ok = update_range[float](j, <float*>j.theta, <const float*>j.grad, lo, hi)
    if not ok:
        flag_set(&j.bad)


cdef bint split_update(const Net* net, Optim* opt, floating* theta, const floating* grad,
                       double lr, double norm, bint check) noexcept nogil:
    # Over the whole flat buffer: with `check`, whether every new value of the update is
    # finite (net_update_is_finite); else the update itself (apply_update's, opt.t
    # already advanced).  Returns False only for a failed check.
    cdef UpdateJob j
    cdef int threads = split_threads(net.n_params, UPDATE_GRAIN)
    j.net = net
    j.opt = opt
    j.theta = theta
    j.grad = grad
    j.lr = lr
    j.norm = norm
    j.f64 = floating is double
    j.check = check
    j.bad = 0
    j.chunk = net.n_params if threads < 2 else part_size(net.n_params, threads)
    # The update follows the check at once: the workers wait for it awake.
    pool_run(update_part, &j, <int>((net.n_params + j.chunk - 1) // j.chunk), threads,
             check)
    return not j.bad
