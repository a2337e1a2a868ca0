# One training step over a batch (included by _core.pyx): forward, loss, backward, the
# optimizer's pre-check and update, and the NaN guard that leaves the parameters unchanged.

cdef int target_step(const StepTarget* t, const Batch* b, double lr, bint update,
                     bint check_inputs, double* loss_out) noexcept nogil:
    # train_step on an engine's target, in its dtype.
    if t.f64:
        return train_step[double](t.net, t.opt, <double*>t.theta, <double*>t.grad, t.s,
                                  <double*>t.da, <double*>t.db, b, lr, update,
                                  check_inputs, loss_out)
    return train_step[float](t.net, t.opt, <float*>t.theta, <float*>t.grad, t.s,
                             <float*>t.da, <float*>t.db, b, lr, update, check_inputs,
                             loss_out)


cdef Py_ssize_t stack_step(const StepTarget* t, const Batch* b, double lr, unsigned char* on,
                           int* st, double* tot, Py_ssize_t* done,
                           double* loss) noexcept nogil:
    # One model's own step in a stack's loop (Stack.fit_epoch, _stack_first.pxi): its
    # status into *st; on success tot += loss·rows and done += 1, else *on = 0.  Returns
    # 1 if it stopped, else 0.
    st[0] = target_step(t, b, lr, True, False, loss)
    if st[0] != OK:
        on[0] = 0
        return 1
    tot[0] += loss[0] * b.n
    done[0] += 1
    return 0


cdef int train_step(const Net* net, Optim* opt, floating* theta, floating* grad,
                    Scratch* s, floating* D_a, floating* D_b, const Batch* b,
                    double lr, bint update, bint check_inputs,
                    double* loss_out) noexcept nogil:
    # Forward, loss, backward and, if update, the optimizer step — all in one call.
    # Dropout applies to updating steps only: a step that only evaluates the loss and
    # gradient (loss_and_grad, L-BFGS) sees the whole network, as prediction does.
    # Parameters and optimizer state are written only once the loss and every new value
    # are known to be finite, so a diverging step leaves them bit-identical.
    # Sparse rows (b.csr; their values checked finite by SparseRows): the gradient of
    # W(1) is zero but on the rows the batch reaches (s.touched, flagged in s.seen), which
    # are the only rows of grad it writes; see W1Rows for how the update covers W(1).
    cdef int status
    cdef Py_ssize_t r, width = net.dims[1]
    cdef floating* gW1 = grad + net.w_off[0]
    if b.csr == NULL:
        s.w1_grad_zero = False
        s.w1_acc_known = False
        return dense_or_sparse_step(net, opt, theta, grad, s, D_a, D_b, b, lr, update,
                                    check_inputs, loss_out, NULL)
    if not s.w1_grad_zero:
        memset(gW1, 0, net.dims[0] * width * sizeof(floating))
    if b.csr.idx64:
        s.n_touched = csr_touched_rows(<const int64_t*>b.csr.indices,
                                       <const int64_t*>b.csr.indptr, b.n, s.seen, s.touched)
    else:
        s.n_touched = csr_touched_rows(<const int32_t*>b.csr.indices,
                                       <const int32_t*>b.csr.indptr, b.n, s.seen, s.touched)
    status = dense_or_sparse_step(net, opt, theta, grad, s, D_a, D_b, b, lr, update,
                                  check_inputs, loss_out, NULL)
    # Back to the state between steps: no row flagged, and (unless the caller is to read
    # the whole gradient) grad's W(1) block zero again, by clearing the rows written.
    for r in range(s.n_touched):
        s.seen[s.touched[r]] = 0
        if update:
            memset(gW1 + s.touched[r] * width, 0, width * sizeof(floating))
    s.w1_grad_zero = update
    return status


cdef int dense_or_sparse_step(const Net* net, Optim* opt, floating* theta, floating* grad,
                              Scratch* s, floating* D_a, floating* D_b, const Batch* b,
                              double lr, bint update, bint check_inputs,
                              double* loss_out, const FirstLayer* first) noexcept nogil:
    # train_step's work, once a sparse batch's rows are flagged.  With `first` (dense
    # rows, update, no input checks: a stack's step, _stack_first.pxi), Z(1) is the
    # stack's and the step stops once Δ(1) is in the stack's block: the caller makes
    # W(1)'s gradient and calls finish_step.
    cdef int L = net.n_layers
    cdef Py_ssize_t n = b.n, k = net.dims[L]
    cdef const floating* X = <const floating*>b.X
    cdef double norm = b.norm if net.sk_scaling else <double>n
    cdef double penalty = 0.0
    cdef bint fused, sparse = b.csr != NULL
    if check_inputs:
        if not sparse and not split_all_finite(X, n * net.dims[0]):
            return BAD_X
        if b.Y != NULL and not all_finite(<const floating*>b.Y, n * k):
            return BAD_Y
        if b.Y == NULL and not labels_in_range(b.labels, n, k):
            return BAD_LABEL
    forward_pass(net, theta, X, b.csr, n, s, update, first)
    loss_out[0] = output_loss_delta(net, <const floating*>s.acts[L - 1], b, D_a)
    if net.l2 != 0:
        penalty = l2_penalty(net, theta, s.w1_acc if s.w1_acc_known else NULL)
        loss_out[0] += 0.5 * net.l2 * penalty / norm
    s.w1_acc_known = False
    if not (loss_out[0] - loss_out[0] == 0):
        return DIVERGED
    fused = (update and not sparse and first == NULL and opt.kind == C_OPT_SGD
             and not net.sk_scaling and fused_sgd_is_safe(net, theta, s, X, n, D_a, lr))
    backward_pass(net, theta, grad, s, update, D_a, D_b, X, b.csr, n, fused, lr, not update,
                  norm, first)
    if fused or first != NULL:
        return OK
    if not update:
        return OK if split_all_finite(grad, net.n_params) else DIVERGED
    return finish_step(net, opt, theta, grad, s, b, lr, penalty)


cdef int finish_step(const Net* net, Optim* opt, floating* theta, floating* grad,
                     Scratch* s, const Batch* b, double lr, double penalty) noexcept nogil:
    # An updating step's end, its gradient in grad: the optimizer's pre-check (the NaN
    # guard: nothing is written unless every new value is finite), then its update.
    # penalty: the step's Σ‖W‖² (l2_penalty), read for sparse rows only.
    cdef Py_ssize_t n = b.n
    cdef double norm = b.norm if net.sk_scaling else <double>n
    cdef bint sparse = b.csr != NULL
    cdef W1Rows rows
    cdef const W1Rows* w1 = NULL
    if sparse:
        w1 = &rows
        rows.seen = s.seen
        rows.zero = s.zero_row
        rows.zero_rows = s.zero_rows
        rows.only = s.touched if opt.kind == C_OPT_SGD and net.l2 == 0 else NULL
        rows.n_only = s.n_touched
        rows.others_finite = (opt.kind == C_OPT_SGD and decayed_rows_finite(
            net, penalty, lr, norm, 1e30 if floating is float else 1e300))
    if not net_update_is_finite(net, opt, theta, grad, lr, norm, w1):
        return DIVERGED
    s.w1_acc_known = apply_update(net, opt, theta, grad, lr, norm, w1,
                                  s.w1_acc if opt.kind == C_OPT_SGD else NULL)
    return OK
