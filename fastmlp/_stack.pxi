# Stack: engines trained on the same batches in one GIL-free loop (included by _core.pyx).

cdef class Stack:
    """Engines of one input width, output width, loss, gradient convention and dtype,
    trained on the same batches: each batch is gathered once, into the first engine's
    buffers, and every engine still training takes its step on it.

    Each engine's step is its own ``train_step`` on the same rows, so an engine trained
    in a stack ends exactly where ``Engine.fit_epoch`` with the same rows would leave it.
    ``first_product = 1`` takes the first layer of dense batches as one product over the
    engines instead (_stack_first.pxi), to the same bits; -1 (the default) where
    first_product_pays, 0 never.

    Parameters
    ----------
    engines : sequence of Engine     K ≥ 1 distinct engines
    name : str                       how errors name the sequence ("models": models[3])
    """
    cdef readonly tuple engines
    cdef Py_ssize_t K
    cdef cnp.ndarray targets     # K StepTargets, refreshed before each loop
    # The first layer as one product over the models (_stack_first.pxi) on dense
    # batches of 2 rows or more: 1 always, 0 never, -1 where it pays (first_product_pays:
    # nowhere measured yet).
    cdef public int first_product
    cdef cnp.ndarray first_off   # (K,) intp: each model's first column of Z(1)
    cdef Py_ssize_t first_width  # S = Σ d1
    cdef readonly list first_arrays  # w, z, d, g, loss: FirstBuffers' arrays

    def __cinit__(self, engines, str name="engines"):
        cdef Engine first, e
        cdef Py_ssize_t k
        cdef int L
        self.engines = tuple(engines)
        self.K = len(self.engines)
        if self.K < 1:
            raise ValueError(f"{name}: expected at least one model")
        for k in range(self.K):
            if type(self.engines[k]) is not Engine:
                raise TypeError(f"{name}[{k}]: expected an Engine")
        first = <Engine>self.engines[0]
        seen = {id(first): 0}
        for k in range(1, self.K):
            e = <Engine>self.engines[k]
            L = e.net.n_layers
            if id(e) in seen:
                raise ValueError(f"{name}[{k}]: the same model as {name}[{seen[id(e)]}]; "
                                 "a stack trains each model once")
            seen[id(e)] = k
            if e.typenum != first.typenum:
                raise ValueError(f"{name}[{k}]: dtype {e.network.theta.dtype}, expected "
                                 f"{first.network.theta.dtype} as {name}[0]")
            if e.net.dims[0] != first.net.dims[0]:
                raise ValueError(f"{name}[{k}]: input width {e.net.dims[0]}, expected "
                                 f"{first.net.dims[0]} as {name}[0]")
            if e.net.dims[L] != first.net.dims[first.net.n_layers]:
                raise ValueError(f"{name}[{k}]: output width {e.net.dims[L]}, expected "
                                 f"{first.net.dims[first.net.n_layers]} as {name}[0]")
            if e.net.loss != first.net.loss or e.net.sk_scaling != first.net.sk_scaling:
                raise ValueError(f"{name}[{k}]: another loss than {name}[0]'s; a stack "
                                 "shares the targets, so its models share the loss")
        self.targets = np.empty(self.K * sizeof(StepTarget), dtype=np.uint8)
        # Plain SGD's step folds its update into the weight products (backward_pass), the
        # first layer's included: those models keep their own step, so that every model
        # ends bit for bit where its own fit would (first_off -1).
        self.first_off = np.full(self.K, -1, dtype=np.intp)
        self.first_width = 0
        for k in range(self.K):
            e = <Engine>self.engines[k]
            if e.opt.kind != C_OPT_SGD or e.net.sk_scaling:
                self.first_off[k] = self.first_width
                self.first_width += e.net.dims[1]
        self.first_product = -1
        self.first_arrays = []

    cdef bint _first_buffers(self, Py_ssize_t batch_size, FirstBuffers* f) except -1:
        # FirstBuffers for batches of up to batch_size rows, zeroed when allocated, within
        # the workspace limit.
        cdef Engine first = <Engine>self.engines[0]
        cdef Py_ssize_t d0 = first.net.dims[0], S = self.first_width
        cdef Py_ssize_t isz = first.isz
        dtype = first.network.theta.dtype
        # A model stopped in an earlier call has zero Δ(1) columns (stop_first); one the
        # caller set inactive keeps its last finite ones, whose gradient goes unused.
        if not self.first_arrays or self.first_arrays[1].shape[0] < batch_size * S:
            check_workspace("batch_size", (2 * d0 * S + 2 * batch_size * S) * isz,
                            batch_size)
            self.first_arrays = [np.zeros(d0 * S, dtype), np.zeros(batch_size * S, dtype),
                                 np.zeros(batch_size * S, dtype), np.zeros(d0 * S, dtype),
                                 np.zeros(self.K, np.float64)]
        f.w = cnp.PyArray_DATA(<cnp.ndarray>self.first_arrays[0])
        f.z = cnp.PyArray_DATA(<cnp.ndarray>self.first_arrays[1])
        f.d = cnp.PyArray_DATA(<cnp.ndarray>self.first_arrays[2])
        f.g = cnp.PyArray_DATA(<cnp.ndarray>self.first_arrays[3])
        f.loss = <double*>cnp.PyArray_DATA(<cnp.ndarray>self.first_arrays[4])
        f.off = <const Py_ssize_t*>cnp.PyArray_DATA(self.first_off)
        f.S, f.isz = S, isz
        return True

    def __len__(self):
        return self.K

    def fit_epoch(self, X, Y, labels, perm, Py_ssize_t batch_size, lrs, active,
                  sample_weight=None):
        """One epoch of every active engine on the same batches, in one GIL-free loop.

        X, Y, labels, perm, batch_size as in ``Engine.fit_epoch`` (checked finite and in
        range by the caller).  sample_weight: None, (n,) weights of every engine as in
        ``Engine.fit_epoch``, or (K, n), row k engine k's.  lrs: (K,) float64, each
        finite and > 0; active: (K,) bool, the engines to train (an inactive one is not
        touched).  An engine whose step diverges stops there, its parameters those after
        its last good step (the NaN guard); the others go on.  Returns (totals, status, steps), each
        (K,): Σ over its batches of loss·rows (float64), its status (int32, 0: OK) and
        the steps it completed (intp).
        """
        cdef Py_ssize_t n, start, rows, k, K = self.K, n_active = 0
        cdef double loss = 0.0
        cdef EpochRows e
        cdef CSR batch_rows
        cdef Batch b
        cdef Engine eng
        cdef StepTarget* t = <StepTarget*>cnp.PyArray_DATA(self.targets)
        cdef const char* wp = NULL      # (K, n) weights, one row an engine, or NULL
        cdef char* wb = NULL            # (K, batch_size): a shuffled batch's, gathered
        cdef Batch* own = NULL          # (K,) with wp: b with each engine's weights
        cdef cnp.ndarray gathered_w, own_batches
        cdef FirstBuffers f
        cdef bint fuse
        if not _is_carray(lrs, cnp.NPY_FLOAT64, 1) or lrs.shape[0] != K:
            raise ValueError(f"lrs: expected ({K},) float64 learning rates")
        if not _is_carray(active, cnp.NPY_BOOL, 1) or active.shape[0] != K:
            raise ValueError(f"active: expected ({K},) bools")
        cdef const double[::1] lr = lrs
        for k in range(K):
            if not (0 < lr[k] < INFINITY):
                raise ValueError("lrs: expected finite learning rates > 0")
        totals = np.zeros(K, dtype=np.float64)
        status = np.zeros(K, dtype=np.int32)
        steps = np.zeros(K, dtype=np.intp)
        cdef double[::1] tot = totals
        cdef int[::1] st = status
        cdef Py_ssize_t[::1] done = steps
        cdef cnp.ndarray going = np.array(active, dtype=np.uint8)
        cdef unsigned char[::1] on = going
        shared = sample_weight
        if sample_weight is not None and np.ndim(sample_weight) == 2:
            shared = None
            eng = <Engine>self.engines[0]
            if (not _is_carray(sample_weight, eng.typenum, 2)
                    or sample_weight.shape[0] != K or sample_weight.shape[1] != X.shape[0]):
                raise ValueError(f"sample_weight: expected ({K}, {X.shape[0]}) values of "
                                 "the models' dtype")
            for k in range(K):
                (<Engine>self.engines[k])._check_batch(X, Y, labels, sample_weight[k])
            wp = <const char*>cnp.PyArray_DATA(<cnp.ndarray>sample_weight)
        batch_size = (<Engine>self.engines[0])._prepare_epoch(
            X, Y, labels, perm, batch_size, shared, &e, &batch_rows)
        n = X.shape[0]
        if wp != NULL and perm is not None:
            gathered_w = np.empty(K * batch_size, dtype=sample_weight.dtype)
            wb = <char*>cnp.PyArray_DATA(gathered_w)
        for k in range(K):
            eng = <Engine>self.engines[k]
            if k > 0:
                # The first engine checked the batch: the others share its dtype, widths
                # and loss (checked at construction), so the same checks would pass.
                eng._prepare_steps(&e, batch_size)
            if on[k] and not eng._lazy_rows_finite(X):
                st[k], on[k] = DIVERGED, 0
        # Targets last: they point into workspaces the reservations above may have moved.
        for k in range(K):
            t[k] = (<Engine>self.engines[k])._target()
            n_active += on[k]
        fuse = e.csr == NULL and self.first_width > 0 and (self.first_product == 1 or (
            self.first_product == -1 and first_product_pays(t, K, batch_size)))
        if fuse:
            self._first_buffers(batch_size, &f)
        if wp != NULL:
            own_batches = np.empty(K * sizeof(Batch), dtype=np.uint8)
            own = <Batch*>cnp.PyArray_DATA(own_batches)
        with nogil:
            call_begin()
            start = 0
            while start < n and n_active > 0:
                rows = batch_size if start + batch_size <= n else n - start
                epoch_batch(&e, start, rows, &b)
                if wp != NULL:
                    for k in range(K):
                        own[k] = b
                        batch_weights(wp + k * n * e.isz, e.perm, start, rows, e.isz,
                                      e.f64, NULL if wb == NULL
                                      else wb + k * batch_size * e.isz, &own[k])
                # A batch of one row takes gemv and ger, whose sums for a column are not
                # those of a narrower call bit for bit: its models step one by one.
                if fuse and rows > 1 and e.f64:
                    n_active -= stack_first_batch[double](t, K, &on[0], &st[0], &tot[0],
                                                          &done[0], &b, own, &lr[0], &f, 0)
                elif fuse and rows > 1:
                    n_active -= stack_first_batch[float](t, K, &on[0], &st[0], &tot[0],
                                                         &done[0], &b, own, &lr[0], &f, 0)
                else:
                    for k in range(K):
                        if on[k]:
                            n_active -= stack_step(&t[k], &b if own == NULL else &own[k],
                                                   lr[k], &on[k], &st[k], &tot[k],
                                                   &done[k], &loss)
                start += rows
            call_end()
        return totals, status, steps
