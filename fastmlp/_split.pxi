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
# 101,770 and more 0.61-0.77x (bench/README.md, "fastmlp's own workers").
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


cdef bint update_range(bint check, const Net* net, Optim* opt, floating* theta,
                       const floating* grad, double lr, double norm, Py_ssize_t lo,
                       Py_ssize_t hi) noexcept nogil:
    # With `check`, whether every new value of theta[lo:hi] is finite, else its update;
    # segment by segment (segment() gives each its a and nrm).
    cdef int s
    cdef Py_ssize_t off, size, b, e
    cdef double a, nrm
    for s in range(2 * net.n_layers):
        segment(net, s, norm, &off, &size, &a, &nrm)
        b = off if off > lo else lo
        e = off + size if off + size < hi else hi
        if b >= e:
            continue
        if check:
            if not segment_is_finite(opt, theta, grad, b, e - b, net.dims[1], NULL, lr, a,
                                     nrm):
                return False
        else:
            update_segment(opt, theta, grad, b, 0, e - b, lr, a, nrm)
    return True


cdef void update_part(void* ctx, int part) noexcept nogil:
    cdef UpdateJob* j = <UpdateJob*>ctx
    cdef Py_ssize_t lo = part * j.chunk
    cdef Py_ssize_t hi = min(lo + j.chunk, j.net.n_params)
    cdef bint ok
    if lo >= hi:
        return
    if j.f64:
        ok = update_range[double](j.check, j.net, j.opt, <double*>j.theta,
                                  <const double*>j.grad, j.lr, j.norm, lo, hi)
    else:
        ok = update_range[float](j.check, j.net, j.opt, <float*>j.theta,
                                 <const float*>j.grad, j.lr, j.norm, lo, hi)
    if not ok:
        flag_set(&j.bad)


cdef bint split_update(const Net* net, Optim* opt, floating* theta, const floating* grad,
                       double lr, double norm, bint check) noexcept nogil:
    # Over the whole flat buffer: with `check`, whether every new value of the update is
    # finite (net_update_is_finite); else the update itself (apply_update's, opt.t
    # already advanced).  Returns False only for a failed check.
    cdef UpdateJob j
    cdef int threads = split_threads(net.n_params, UPDATE_GRAIN)
    if threads < 2:
        # The whole buffer, as update_range does it, without a job.
        return update_range(check, net, opt, theta, grad, lr, norm, 0, net.n_params)
    j.net = net
    j.opt = opt
    j.theta = theta
    j.grad = grad
    j.lr = lr
    j.norm = norm
    j.f64 = floating is double
    j.check = check
    j.bad = 0
    j.chunk = part_size(net.n_params, threads)
    # The update follows the check at once: the workers wait for it awake.
    pool_run(update_part, &j, <int>((net.n_params + j.chunk - 1) // j.chunk), threads,
             check)
    return not j.bad


cdef struct FlatUpdateJob:
    Optim* opt
    void* theta
    const void* grad
    double lr
    Py_ssize_t size, chunk
    bint f64
    bint check           # the finite pre-check, not the update
    int bad              # a part's pre-check failed


cdef bint flat_update_range(const FlatUpdateJob* j, floating* theta, const floating* grad,
                            Py_ssize_t lo, Py_ssize_t hi) noexcept nogil:
    # The job's pass on theta[lo:hi]: with `check`, whether every new value is finite.
    cdef const floating* s1 = <const floating*>j.opt.s1
    cdef const floating* s2 = <const floating*>j.opt.s2
    if j.check:
        return update_is_finite(j.opt, theta + lo, grad + lo,
                                s1 + lo if s1 != NULL else NULL,
                                s2 + lo if s2 != NULL else NULL, hi - lo, j.lr, 0.0, 1.0)
    update_segment(j.opt, theta, grad, lo, 0, hi - lo, j.lr, 0.0, 1.0)
    return True


cdef void flat_update_part(void* ctx, int part) noexcept nogil:
    cdef FlatUpdateJob* j = <FlatUpdateJob*>ctx
    cdef Py_ssize_t lo = part * j.chunk
    cdef Py_ssize_t hi = min(lo + j.chunk, j.size)
    cdef bint ok
    if lo >= hi:
        return
    if j.f64:
        ok = flat_update_range[double](j, <double*>j.theta, <const double*>j.grad, lo, hi)
    else:
        ok = flat_update_range[float](j, <float*>j.theta, <const float*>j.grad, lo, hi)
    if not ok:
        flag_set(&j.bad)


cdef bint split_flat_update(Optim* opt, floating* theta, const floating* grad,
                            Py_ssize_t size, double lr, bint check) noexcept nogil:
    # The optimizer step on one flat theta[:size] from its gradient, without decay (the
    # update kernels of fastmlp.kernels; opt.t already advanced), or with `check` whether
    # every value that step would store is finite (opt.t not yet advanced, as for
    # net_update_is_finite); split as the step's passes are: by element ranges, from
    # UPDATE_GRAIN per thread.  A part reads grad and writes theta on the same range
    # only, so grad may be theta itself.  Returns False only for a failed check.
    cdef FlatUpdateJob j
    cdef int threads = split_threads(size, UPDATE_GRAIN)
    j.opt = opt
    j.theta = theta
    j.grad = grad
    j.lr = lr
    j.size = size
    j.f64 = floating is double
    j.check = check
    j.bad = 0
    if threads < 2:
        return flat_update_range(&j, theta, grad, 0, size)
    j.chunk = part_size(size, threads)
    pool_run(flat_update_part, &j, <int>((size + j.chunk - 1) // j.chunk), threads, False)
    return not j.bad


# ---------------------------------------------------------------- element-wise passes

# Elements per thread of the passes over activations (a layer's A or Δ, n·d values) and
# of the step's guards.  A cheap element (a select, a compare: ~0.1 ns) needs many of
# them to pay for a wake-up (5-40 µs on the 2-vCPU VMs); the transcendental activations
# (~2-5 ns each) few.
cdef enum:
    CHEAP_GRAIN = 65536
    COSTLY_GRAIN = 4096
    # The most parts of a split pass, MAX_THREADS · PARTS_PER_THREAD (_pool.pxd): a split
    # max_abs keeps each part's maximum.
    MAX_PARTS = 1024

cdef enum:
    ELEM_ACT_FORWARD = 0     # x = g(x)
    ELEM_ACT_BACKWARD = 1    # x ⊙= g'(a, z)
    ELEM_FINITE = 2          # all of x finite
    ELEM_MAX_ABS = 3         # max |x|
    ELEM_COLUMN_SUMS = 4     # x = 1ᵀ·a, a (rows, size): parts are ranges of columns


cdef struct ElemJob:
    int what
    int act
    void* x
    const void* a
    const void* z
    Py_ssize_t size, chunk
    Py_ssize_t rows          # ELEM_COLUMN_SUMS: a's rows
    bint f64
    int bad                  # ELEM_FINITE: a part found a non-finite value
    double* maxes            # ELEM_MAX_ABS: each part's maximum


cdef inline double activation_grain(int act) noexcept nogil:
    if act == C_ACT_RELU or act == C_ACT_LEAKY_RELU or act == C_ACT_IDENTITY:
        return CHEAP_GRAIN
    return COSTLY_GRAIN


cdef void elem_range(ElemJob* j, floating* x, const floating* a, const floating* z,
                     int part, Py_ssize_t lo, Py_ssize_t hi) noexcept nogil:
    # The job's pass on elements [lo, hi): exactly what the whole pass does there.
    cdef Py_ssize_t m = hi - lo
    if j.what == ELEM_ACT_FORWARD:
        activation_forward(j.act, x + lo, 1, m)
    elif j.what == ELEM_ACT_BACKWARD:
        activation_backward(j.act, a + lo, z + lo if z != NULL else NULL, x + lo, m)
    elif j.what == ELEM_FINITE:
        if not all_finite(<const floating*>x + lo, m):
            flag_set(&j.bad)
    elif j.what == ELEM_COLUMN_SUMS:
        column_sums_range(a, j.rows, j.size, lo, hi, x)
    else:
        j.maxes[part] = max_abs(<const floating*>x + lo, m)


cdef void elem_part(void* ctx, int part) noexcept nogil:
    cdef ElemJob* j = <ElemJob*>ctx
    cdef Py_ssize_t lo = part * j.chunk
    cdef Py_ssize_t hi = min(lo + j.chunk, j.size)
    if lo >= hi:
        if j.what == ELEM_MAX_ABS:
            j.maxes[part] = 0.0
        return
    if j.f64:
        elem_range[double](j, <double*>j.x, <const double*>j.a, <const double*>j.z, part,
                           lo, hi)
    else:
        elem_range[float](j, <float*>j.x, <const float*>j.a, <const float*>j.z, part, lo,
                          hi)


cdef int elem_split(ElemJob* j, int threads, double* maxes) noexcept nogil:
    # Runs the job over j.size elements on `threads` (split_threads, ≥ 2); returns its
    # number of parts.
    cdef int parts
    j.chunk = part_size(j.size, threads)
    parts = <int>((j.size + j.chunk - 1) // j.chunk)     # ≤ MAX_PARTS (split_threads)
    j.bad = 0
    j.maxes = maxes
    pool_run(elem_part, j, parts, threads, False)
    return parts


cdef inline void elem_job(ElemJob* j, int what, int act, const void* x, const void* a,
                          const void* z, Py_ssize_t size, bint f64) noexcept nogil:
    j.what = what
    j.act = act
    j.x = <void*>x
    j.a = a
    j.z = z
    j.size = size
    j.f64 = f64


cdef void split_activation_forward(int act, floating* Z, Py_ssize_t n,
                                   Py_ssize_t k) noexcept nogil:
    # activation_forward (softmax, row-wise and on the output only, stays whole).
    cdef ElemJob j
    cdef int threads = split_threads(n * k, activation_grain(act))
    if threads < 2 or act == C_ACT_SOFTMAX or act == C_ACT_IDENTITY:
        activation_forward(act, Z, n, k)
        return
    elem_job(&j, ELEM_ACT_FORWARD, act, Z, NULL, NULL, n * k, floating is double)
    elem_split(&j, threads, NULL)


cdef void split_activation_backward(int act, const floating* A, const floating* Z,
                                    floating* D, Py_ssize_t size) noexcept nogil:
    # activation_backward.
    cdef ElemJob j
    cdef int threads = split_threads(size, activation_grain(act))
    if threads < 2 or act == C_ACT_IDENTITY:
        activation_backward(act, A, Z, D, size)
        return
    elem_job(&j, ELEM_ACT_BACKWARD, act, D, A, Z, size, floating is double)
    elem_split(&j, threads, NULL)


cdef void split_column_sums(const floating* D, Py_ssize_t n, Py_ssize_t d,
                            floating* out) noexcept nogil:
    # column_sums, split by ranges of columns: each column's sum is the whole pass's.
    cdef ElemJob j
    cdef int threads = split_threads(n * d, CHEAP_GRAIN)
    if threads < 2:
        column_sums(D, n, d, out)
        return
    elem_job(&j, ELEM_COLUMN_SUMS, 0, out, D, NULL, d, floating is double)
    j.rows = n
    elem_split(&j, threads, NULL)


cdef struct LossJob:
    int kind
    const void* out
    const void* Y
    const int64_t* labels
    const void* sw
    void* D
    Py_ssize_t n, k, rows   # rows: a block's (loss_block_rows)
    bint f64
    double* sums            # each block's sum of the loss over its rows


cdef void loss_part(void* ctx, int part) noexcept nogil:
    cdef LossJob* j = <LossJob*>ctx
    cdef Py_ssize_t lo = part * j.rows
    cdef Py_ssize_t hi = lo + j.rows if lo + j.rows < j.n else j.n
    if j.f64:
        j.sums[part] = loss_rows[double](j.kind, <const double*>j.out, <const double*>j.Y,
                                         j.labels, <const double*>j.sw, lo, hi, j.n, j.k,
                                         <double*>j.D)
    else:
        j.sums[part] = loss_rows[float](j.kind, <const float*>j.out, <const float*>j.Y,
                                        j.labels, <const float*>j.sw, lo, hi, j.n, j.k,
                                        <float*>j.D)


cdef double split_loss_delta(int kind, const floating* out, const floating* Y,
                             const int64_t* labels, const floating* sw, Py_ssize_t n,
                             Py_ssize_t k, double norm, floating* D) noexcept nogil:
    # loss_delta, its blocks of rows split over the pool: each block's sum as the whole
    # pass computes it, added in the same order.  The squared errors are cheap; the
    # softmax (an exp per value) and the logarithms of the other losses are not.
    cdef LossJob j
    cdef double sums[MAX_LOSS_BLOCKS]
    cdef double total = 0.0
    cdef int p, blocks
    cdef int threads = split_threads(
        n * k, CHEAP_GRAIN if kind == C_LOSS_MSE or kind == C_LOSS_SK_SQUARED
        else COSTLY_GRAIN)
    j.rows = loss_block_rows(n, k)
    blocks = <int>((n + j.rows - 1) // j.rows)      # ≤ MAX_LOSS_BLOCKS
    if threads < 2 or blocks < 2:
        return loss_delta(kind, out, Y, labels, sw, n, k, norm, D)
    j.kind = kind
    j.out = out
    j.Y = Y
    j.labels = labels
    j.sw = sw
    j.D = D
    j.n = n
    j.k = k
    j.f64 = floating is double
    j.sums = sums
    pool_run(loss_part, &j, blocks, threads, False)
    for p in range(blocks):
        total += sums[p]
    return loss_total(kind, total, n, k, norm)


cdef bint split_all_finite(const floating* x, Py_ssize_t size) noexcept nogil:
    # all_finite.
    cdef ElemJob j
    cdef int threads = split_threads(size, CHEAP_GRAIN)
    if threads < 2:
        return all_finite(x, size)
    elem_job(&j, ELEM_FINITE, 0, x, NULL, NULL, size, floating is double)
    elem_split(&j, threads, NULL)
    return not j.bad


cdef double split_max_abs(const floating* x, Py_ssize_t size) noexcept nogil:
    # max_abs: the largest of the parts' maxima, each exact, so the same number.
    cdef ElemJob j
    cdef double maxes[MAX_PARTS]
    cdef double m = 0.0
    cdef int p, parts, threads = split_threads(size, CHEAP_GRAIN)
    if threads < 2:
        return max_abs(x, size)
    elem_job(&j, ELEM_MAX_ABS, 0, x, NULL, NULL, size, floating is double)
    parts = elem_split(&j, threads, maxes)
    for p in range(parts):
        if maxes[p] > m:               # a part with a NaN gave +inf
            m = maxes[p]
    return m
