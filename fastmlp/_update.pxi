# The optimizer's passes over the flat parameter buffer, segment by segment (included by
# _core.pyx): the finite pre-check and the update of each rule in _optim.pxd, with the rows
# of W(1) a sparse step need not touch skipped.

cdef inline void segment(const Net* net, int s, double norm, Py_ssize_t* off,
                         Py_ssize_t* size, double* a, double* nrm) noexcept nogil:
    # Segment s of the flat buffer: W(s/2) for even s, b(s/2) for odd s, with the a and
    # nrm of fmo_grad (_optim.h) that turn its raw gradient into ∇θ.
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


cdef struct W1Rows:
    # How the update passes cover W(1) after a sparse batch (train_step); NULL: all of it,
    # from grad.  Either `only`: those rows alone (plain SGD without decay: a zero
    # gradient leaves a weight as it is, θ − η·0 = θ), or every row, the ones the batch
    # reached (seen) from grad and the others from `zero`, a row of zeros: the same
    # numbers as from grad's zero rows, without reading them.
    const Py_ssize_t* only
    Py_ssize_t n_only
    const unsigned char* seen
    const void* zero         # zero_rows rows of zeros
    Py_ssize_t zero_rows
    bint others_finite       # the untouched rows' new values are proved finite


cdef inline Py_ssize_t w1_span(const W1Rows* rows, Py_ssize_t r, Py_ssize_t n_rows,
                               bint* reached) noexcept nogil:
    # The end of the span of rows from r that an update pass handles in one call: row r
    # alone if the batch reached it, else the untouched rows from r on, at most
    # zero_rows of them (one call per span, not per row: the kernels' set-up is per
    # call).
    cdef Py_ssize_t e = r + 1
    reached[0] = rows.seen[r]
    if reached[0]:
        return e
    while e < n_rows and e - r < rows.zero_rows and not rows.seen[e]:
        e += 1
    return e


cdef inline bint segment_is_finite(const Optim* opt, const floating* theta,
                                   const floating* grad, Py_ssize_t off, Py_ssize_t size,
                                   Py_ssize_t width, const W1Rows* rows, double lr, double a,
                                   double nrm) noexcept nogil:
    # update_is_finite on theta[off:off+size], a W(1) of rows of `width` values covered
    # as `rows` says (NULL: whole).
    cdef Py_ssize_t r, e, o, n_rows = size // width
    cdef bint reached
    cdef const floating* s1 = <const floating*>opt.s1
    cdef const floating* s2 = <const floating*>opt.s2
    if rows == NULL:
        return update_is_finite(opt, theta + off, grad + off,
                                s1 + off if s1 != NULL else NULL,
                                s2 + off if s2 != NULL else NULL, size, lr, a, nrm)
    if rows.only != NULL:
        for r in range(rows.n_only):
            o = off + rows.only[r] * width
            if not update_is_finite(opt, theta + o, grad + o, NULL, NULL, width, lr, a,
                                    nrm):
                return False
        return True
    r = 0
    while r < n_rows:
        e = w1_span(rows, r, n_rows, &reached)
        o = off + r * width
        if (reached or not rows.others_finite) and not update_is_finite(
                opt, theta + o, grad + o if reached else <const floating*>rows.zero,
                s1 + o if s1 != NULL else NULL, s2 + o if s2 != NULL else NULL,
                (e - r) * width, lr, a, nrm):
            return False
        r = e
    return True


cdef inline void update_segment(Optim* opt, floating* theta, const floating* grad,
                                Py_ssize_t off, Py_ssize_t gap, Py_ssize_t size, double lr,
                                double a, double nrm) noexcept nogil:
    # The optimizer step on theta[off:off+size] from grad[off-gap:…] (opt.t already
    # advanced).
    cdef floating* s1 = <floating*>opt.s1
    cdef floating* s2 = <floating*>opt.s2
    cdef const floating* g = grad + (off - gap)
    if opt.kind == C_OPT_SGD:
        sgd_update(theta + off, g, size, <floating>lr, <floating>a, <floating>nrm)
    elif opt.kind == C_OPT_ADAM:
        adam_update(theta + off, g, s1 + off, s2 + off, size, lr, opt.beta1, opt.beta2,
                    opt.eps, opt.t, <floating>a, <floating>nrm)
    else:
        momentum_update(theta + off, g, s1 + off, size, <floating>lr,
                        <floating>opt.momentum, opt.kind == C_OPT_NESTEROV,
                        <floating>a, <floating>nrm)


cdef bint net_update_is_finite(const Net* net, const Optim* opt, const floating* theta,
                               const floating* grad, double lr, double norm,
                               const W1Rows* rows) noexcept nogil:
    # update_is_finite over every segment; grad holds raw gradients (see fmo_grad, _optim.h).
    cdef int s
    cdef Py_ssize_t off, size
    cdef double a, nrm
    if rows == NULL:
        return split_update(net, <Optim*>opt, <floating*>theta, grad, lr, norm, True)
    for s in range(2 * net.n_layers):
        segment(net, s, norm, &off, &size, &a, &nrm)
        if not segment_is_finite(opt, theta, grad, off, size, net.dims[1],
                                 rows if s == 0 else NULL, lr, a, nrm):
            return False
    return True


cdef bint apply_update(const Net* net, Optim* opt, floating* theta, const floating* grad,
                       double lr, double norm, const W1Rows* rows,
                       double* w1_acc) noexcept nogil:
    # The optimizer step over every segment; grad holds raw gradients (see fmo_grad, _optim.h).
    # W(1) is covered as `rows` says (NULL: whole).  w1_acc (plain SGD over every row of
    # W(1), else NULL): where to put l2_penalty's sums of the new W(1), computed in the
    # same pass when there is decay; returns whether they were.
    cdef int s, j
    cdef bint summed = False
    cdef Py_ssize_t off, size, r, e, o, width = net.dims[1]
    cdef double a, nrm
    cdef bint reached
    if opt.kind == C_OPT_ADAM:
        opt.t += 1
    if rows == NULL:       # the whole buffer, dense: split over the pool's threads
        split_update(net, opt, theta, grad, lr, norm, False)
        return False
    for s in range(2 * net.n_layers):
        segment(net, s, norm, &off, &size, &a, &nrm)
        if s == 0 and w1_acc != NULL and rows != NULL and rows.only == NULL \
                and <floating>a != 0:
            summed = True
            for j in range(8):
                w1_acc[j] = 0.0
            r = 0
            while r < net.dims[0]:
                e = w1_span(rows, r, net.dims[0], &reached)
                o = off + r * width
                sgd_update_squares(theta + o, grad + o if reached
                                   else <const floating*>rows.zero, (e - r) * width,
                                   <floating>lr, <floating>a, <floating>nrm, w1_acc,
                                   r * width, size - size % 8)
                r = e
        elif s > 0 or rows == NULL:
            update_segment(opt, theta, grad, off, 0, size, lr, a, nrm)
        elif rows.only != NULL:
            for r in range(rows.n_only):
                update_segment(opt, theta, grad, off + rows.only[r] * width, 0, width, lr,
                               a, nrm)
        else:
            r = 0
            while r < net.dims[0]:
                e = w1_span(rows, r, net.dims[0], &reached)
                o = off + r * width
                if reached:
                    update_segment(opt, theta, grad, o, 0, width, lr, a, nrm)
                else:
                    update_segment(opt, theta, <const floating*>rows.zero, o, o,
                                   (e - r) * width, lr, a, nrm)
                r = e
    return summed


cdef bint decayed_rows_finite(const Net* net, double penalty, double lr, double norm,
                              double big) noexcept nogil:
    # Plain SGD with decay on a W(1) row whose raw gradient is 0: θ' = θ − η·(a·θ)·nrm.
    # Every |θ| ≤ √(Σ‖W‖²) (the penalty the step has computed), so the new values are
    # finite if this bound (and each intermediate) is — no pass over those rows needed.
    cdef Py_ssize_t off, size
    cdef double a, nrm, m
    segment(net, 0, norm, &off, &size, &a, &nrm)
    m = sqrt(penalty) * (1 + 1e-6)
    return (m < big and a * m < big and a * m * nrm < big and lr * a * m * nrm < big
            and m + lr * a * m * nrm < big)

