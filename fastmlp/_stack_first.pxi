# A stack's first layer as one product over its models (included by _core.pyx, after the
# step): X·[W(1)⁽¹⁾ … W(1)⁽ᴷ⁾] for the forward pass (each model adds its bias as it takes
# its block), and [dW(1)⁽¹⁾ … dW(1)⁽ᴷ⁾] = Xᵀ·[Δ(1)⁽¹⁾ … Δ(1)⁽ᴷ⁾] for the gradients (seed
# 003 eq. 33 with the models' columns side by side: each column of a product depends on
# its own column of the right factor only).  The two products with the data's width d0
# are the widest of a small model's step: one product of width S = Σ d1⁽ᵏ⁾ instead of K
# narrow ones is meant to run BLAS nearer its peak (first_product_pays: where it does).
# Each model's layers above the first, its loss, its optimizer and its NaN guard stay
# its own step (dense_or_sparse_step with `first`, finish_step).

cdef struct FirstBuffers:
    # The stack's side-by-side first layers, each (rows, S) row-major, model k's columns
    # [off[k], off[k] + d1⁽ᵏ⁾), or off[k] = -1: model k takes its own whole step (plain
    # SGD, Stack.__cinit__).  A stopped model's columns of d are zero (so are its
    # gradient's), its w columns stale: finite and unused.
    void* w                  # (d0, S) the W(1) of every training model, packed each step
    void* z                  # (batch, S) X·W(1)
    void* d                  # (batch, S) Δ(1)
    void* g                  # (d0, S) dW(1)
    double* loss             # (K,) each model's loss of the batch, between the two halves
    const Py_ssize_t* off    # (K,)
    Py_ssize_t S, isz


cdef Py_ssize_t stack_first_batch(const StepTarget* t, Py_ssize_t K, unsigned char* on,
                                  int* st, double* tot, Py_ssize_t* done, const Batch* b,
                                  const Batch* own, const double* lr,
                                  const FirstBuffers* f, floating dtype_tag) noexcept nogil:
    # One step of every training model (on[k]) on the dense batch b, the first layer as
    # one product each way; as Stack.fit_epoch's loop does per model otherwise: st[k]
    # the status, tot[k] += loss·rows, done[k] += 1, on[k] = 0 for a model that stopped.
    # own: NULL, or (K,) batches, b with each model's own sample weights.  Returns how
    # many stopped.  dtype_tag: the models' dtype (its value unused).
    cdef Py_ssize_t k, d0, d1, S = f.S, n = b.n, stopped = 0
    cdef const Net* net
    cdef floating* theta
    cdef FirstLayer first
    cdef const floating* X = <const floating*>b.X
    d0 = t[0].net.dims[0]
    for k in range(K):
        if on[k] and f.off[k] < 0:
            stopped += stack_step(&t[k], b if own == NULL else &own[k], lr[k], &on[k],
                                  &st[k], &tot[k], &done[k], &f.loss[k])
        elif on[k]:
            net = t[k].net
            theta = <floating*>t[k].theta
            d1 = net.dims[1]
            copy_block(theta + net.w_off[0], d1, d0, d1, <floating*>f.w + f.off[k], S)
    gemm(False, False, <int>n, <int>S, <int>d0, <floating>1.0, X, <int>d0,
         <const floating*>f.w, <int>S, <floating>0.0, <floating*>f.z, <int>S)
    first.ld = S
    for k in range(K):
        if not on[k] or f.off[k] < 0:
            continue
        t[k].s.w1_grad_zero = False
        t[k].s.w1_acc_known = False
        first.z = <const floating*>f.z + f.off[k]
        first.d = <floating*>f.d + f.off[k]
        st[k] = dense_or_sparse_step(t[k].net, t[k].opt, <floating*>t[k].theta,
                                     <floating*>t[k].grad, t[k].s, <floating*>t[k].da,
                                     <floating*>t[k].db, b if own == NULL else &own[k],
                                     lr[k], True, False, &f.loss[k], &first)
        if st[k] != OK:
            stopped += stop_first(f, k, t[k].net.dims[1], n, on)
    linear_weight_gradient(X, n, d0, <const floating*>f.d, S, <floating*>f.g)
    for k in range(K):
        if not on[k] or f.off[k] < 0:
            continue
        net = t[k].net
        d1 = net.dims[1]
        copy_block(<const floating*>f.g + f.off[k], S, d0, d1,
                   <floating*>t[k].grad + net.w_off[0], d1)
        st[k] = finish_step(net, t[k].opt, <floating*>t[k].theta, <floating*>t[k].grad,
                            t[k].s, b if own == NULL else &own[k], lr[k], 0.0)
        if st[k] != OK:
            stopped += stop_first(f, k, d1, n, on)
            continue
        tot[k] += f.loss[k] * n
        done[k] += 1
    return stopped


cdef inline Py_ssize_t stop_first(const FirstBuffers* f, Py_ssize_t k, Py_ssize_t d1,
                                  Py_ssize_t n, unsigned char* on) noexcept nogil:
    # Model k stops: its columns of Δ(1) zeroed for the steps of the others.
    cdef Py_ssize_t i, isz = f.isz
    for i in range(n):
        memset(<char*>f.d + (i * f.S + f.off[k]) * isz, 0, d1 * isz)
    on[k] = 0
    return 1


cdef bint first_product_pays(const StepTarget* t, Py_ssize_t K,
                             Py_ssize_t batch) noexcept nogil:
    # Whether Stack.fit_epoch (first_product = -1) takes the first layer as one product:
    # nowhere yet.  Measured on a 2-vCPU AVX-512 Xeon at one thread (bench/README.md,
    # "Many models at once"), the one product made a stack's epoch 0.59-0.94x as fast on
    # search-, ensemble- and mnist-sized stacks, 1.03x at best (32 models [784, 8, 10]):
    # OpenBLAS's small-matrix kernels run the K narrow products faster than its packed
    # kernel runs the wide one, and the block copies cost the rest.  Where a BLAS lacks
    # such kernels the balance may differ; first_product = 1 measures it.
    return False
