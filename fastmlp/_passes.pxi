# Whole-network passes over the flat parameter buffer (included by _core.pyx, whose cimports
# and structs it uses): the forward pass, the output loss and its delta, the L2 penalty,
# and the backward pass (seeds 001, 002, 003).

cdef void forward_pass(const Net* net, const floating* theta, const floating* X,
                       const CSR* csr, Py_ssize_t n, Scratch* s, bint drop,
                       const FirstLayer* first) noexcept nogil:
    # s.acts[l] receives A(l+1), (n, dims[l+1]); the last holds the network's output,
    # after the output activation (identity for raw outputs and logits).  Where s has
    # them, Z(l+1) is kept before the activation, and with `drop` (training) the hidden
    # layers with a dropout mask are dropped, their output kept before it in s.pre.
    # The input is X (n, d0), or when csr is not NULL its n sparse rows (X unused).
    # first: NULL, or X·W(1) already computed by the stack this model trains in.
    cdef int l, L = net.n_layers
    cdef Py_ssize_t size
    cdef const floating* A_prev = X
    cdef floating* A
    for l in range(L):
        A = <floating*>s.acts[l]
        size = n * net.dims[l + 1]
        if l == 0 and first != NULL:
            add_bias_block(<const floating*>first.z, first.ld, n, net.dims[1],
                           theta + net.b_off[0], A)
        elif l == 0 and csr != NULL:
            sparse_linear_forward(csr, n, theta + net.w_off[0], theta + net.b_off[0],
                                  net.dims[1], A)
        else:
            linear_forward(A_prev, n, net.dims[l], theta + net.w_off[l],
                           theta + net.b_off[l], net.dims[l + 1], A)
        if s.zs[l] != NULL:
            memcpy(s.zs[l], A, size * sizeof(floating))
        split_activation_forward(net.acts[l], A, n, net.dims[l + 1])
        if drop and s.masks[l] != NULL:
            memcpy(s.pre[l], A, size * sizeof(floating))
            dropout_forward(A, <floating*>s.masks[l], size, net.drop_p[l], &s.rng)
        A_prev = A


cdef double output_loss_delta(const Net* net, const floating* out, const Batch* b,
                              floating* D) noexcept nogil:
    # The loss of the batch, and Δ(L) into D.
    # Split over the pool by blocks of rows (split_loss_delta); the MSE's output
    # activation after it, as the hidden layers' derivatives are.
    cdef Py_ssize_t k = net.dims[net.n_layers]
    cdef double loss = split_loss_delta(net.loss, out, <const floating*>b.Y, b.labels,
                                        <const floating*>b.sw, b.n, k, b.norm, D)
    if net.loss == C_LOSS_MSE:
        split_activation_backward(net.acts[net.n_layers - 1], out, NULL, D, b.n * k)
    return loss


cdef double l2_penalty(const Net* net, const floating* theta,
                       const double* w1_acc) noexcept nogil:
    # Σₗ ‖W(l)‖² (biases excluded), accumulated in double in eight sums (add_squares).
    # w1_acc: the sums of W(1) already known (sgd_update_squares), or NULL.
    cdef int l, j
    cdef Py_ssize_t size
    cdef double acc[8]
    for j in range(8):
        acc[j] = 0.0 if w1_acc == NULL else w1_acc[j]
    for l in range(0 if w1_acc == NULL else 1, net.n_layers):
        size = net.dims[l] * net.dims[l + 1]
        add_squares(theta + net.w_off[l], size, acc, 0, size - size % 8)
    return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]))


cdef bint fused_sgd_is_safe(const Net* net, const floating* theta, const Scratch* s,
                            const floating* X, Py_ssize_t n, const floating* D_out,
                            double lr) noexcept nogil:
    # The fused SGD step writes W(l) ← β·W(l) − η·A(l-1)ᵀ·Δ(l) straight from the GEMM, so
    # it cannot look at a gradient before applying it.  It is taken only when a priori
    # bounds prove every new value finite: |η·AᵀΔ| ≤ η·n·max|A|·max|Δ|, and the deltas
    # below the output obey max|Δ(l-1)| ≤ d(l)·max|Δ(l)|·max|W(l)|·max|g'|·max(mask),
    # the mask's 1/(1 − p) where layer l-1 is dropped.  The bounds
    # are loose by orders of magnitude in practice; if one fails, the exact-check path
    # runs instead, so divergence is still caught with the parameters untouched.
    cdef int l, L = net.n_layers
    cdef double big = 1e30 if floating is float else 1e300
    cdef double d_max = split_max_abs(D_out, n * net.dims[L])
    cdef double a_max, w_max, b_max, beta = 1 - lr * net.l2 / n
    if beta < 0:
        beta = -beta
    for l in range(L - 1, -1, -1):
        a_max = split_max_abs(X if l == 0 else <const floating*>s.acts[l - 1],
                              n * net.dims[l])
        w_max = split_max_abs(theta + net.w_off[l], net.dims[l] * net.dims[l + 1])
        b_max = max_abs(theta + net.b_off[l], net.dims[l + 1])
        if not (beta * w_max + lr * n * a_max * d_max < big):
            return False
        if not (b_max + lr * n * d_max < big):
            return False
        if l > 0:
            d_max = net.dims[l + 1] * d_max * w_max * activation_max_slope(net.acts[l - 1])
            if s.masks[l - 1] != NULL:
                d_max = d_max / (1 - net.drop_p[l - 1])
        if not (d_max < big):
            return False
    return True


cdef void backward_pass(const Net* net, floating* theta, floating* grad, const Scratch* s,
                        bint dropped, floating* D, floating* D_other, const floating* X,
                        const CSR* csr, Py_ssize_t n, bint fused, double lr, bint scale,
                        double norm, const FirstLayer* first) noexcept nogil:
    # Backpropagation from Δ(L) in D: seed 003's recursion (eq. 33, 34, 41, 42), of which
    # seed 001's two-layer gradients are the L = 2 case.  For l = L … 1:
    #   Δ(l-1) = g'(Z(l-1)) ⊙ (Δ(l)·W(l)ᵀ),  dW(l) = A(l-1)ᵀ·Δ(l),  db(l) = 1ᵀ·Δ(l),
    # where a layer was dropped (`dropped`: the forward pass drew masks) A(l-1) is its
    # dropped output and Δ(l-1) also takes the mask's factor (dropout_backward), g'
    # reading the output before dropout.
    # Δ(l-1) is computed before anything of layer l is written, from W(l) as it was.
    # - fused: plain SGD folded into the weight GEMM (seed 003 eq. 33 and seed 000 eq. 12
    #   in one BLAS call), W(l) ← β·W(l) − η·A(l-1)ᵀ·Δ(l) with β = 1 − η·α/n, and
    #   b(l) ← b(l) − η·db(l); no weight gradient is stored and no update pass follows.
    #   Only when fused_sgd_is_safe has proved every new value finite.
    # - otherwise the raw gradients go into grad (the update passes turn them into ∇θ),
    #   or with `scale` the gradients themselves (decay, scikit-learn's 1/Σw), for a
    #   step that does not update.
    # s as forward_pass left it.  D and D_other are two delta buffers of the widest
    # layer; their contents are lost.
    # - sparse input (csr not NULL, X unused; never fused): dW(1) = Xᵀ·Δ(1) is added into
    #   grad's W(1) block, whose rows the batch reaches the caller has zeroed (the others
    #   hold zeros, as the dense product would give them).
    # - first not NULL (never fused, never scale): Δ(1) goes to the stack's block, for
    #   the stack's one product Xᵀ·[Δ(1)…]; grad's W(1) block is left to the caller.
    cdef int l, L = net.n_layers
    cdef Py_ssize_t j, d_in, d_out
    cdef floating* tmp
    cdef floating* W
    cdef floating* bias
    cdef floating* db
    cdef const floating* A_prev
    cdef bint mask
    cdef floating flr = <floating>lr
    cdef floating beta = <floating>(1 - lr * net.l2 / n)
    for l in range(L - 1, -1, -1):
        d_in = net.dims[l]
        d_out = net.dims[l + 1]
        A_prev = X if l == 0 else <const floating*>s.acts[l - 1]
        W = theta + net.w_off[l]
        if l > 0:
            mask = dropped and s.masks[l - 1] != NULL
            # backprop_delta, its derivative pass split over the pool.
            backprop_product(D, n, d_out, W, d_in, D_other)
            split_activation_backward(
                net.acts[l - 1], <const floating*>(s.pre[l - 1] if mask else s.acts[l - 1]),
                <const floating*>s.zs[l - 1], D_other, n * d_in)
            if mask:
                dropout_backward(D_other, <const floating*>s.masks[l - 1], n * d_in)
        if fused:
            bias = theta + net.b_off[l]
            db = grad + net.b_off[l]
            split_column_sums(D, n, d_out, db)
            for j in range(d_out):
                bias[j] -= flr * db[j]
            if n == 1 and beta == 1:
                ger(<int>d_in, <int>d_out, -flr, A_prev, D, W, <int>d_out)
            else:
                gemm(True, False, <int>d_in, <int>d_out, <int>n, -flr, A_prev, <int>d_in,
                     D, <int>d_out, beta, W, <int>d_out)
        else:
            if l == 0 and first != NULL:
                copy_block(D, d_out, n, d_out, <floating*>first.d, first.ld)
                split_column_sums(D, n, d_out, grad + net.b_off[0])
            elif l == 0 and csr != NULL:
                sparse_weight_gradient(csr, n, D, d_out, grad + net.w_off[0])
                split_column_sums(D, n, d_out, grad + net.b_off[0])
            else:
                linear_weight_gradient(A_prev, n, d_in, D, d_out, grad + net.w_off[l])
                split_column_sums(D, n, d_out, grad + net.b_off[l])
            if scale:
                scale_gradients(grad + net.w_off[l], W, d_in * d_out, net.l2, norm,
                                net.sk_scaling)
                if net.sk_scaling:
                    scale_gradients(grad + net.b_off[l], theta, d_out, 0.0, norm, True)
        tmp = D
        D = D_other
        D_other = tmp

