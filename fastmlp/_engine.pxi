# Engine: a Network with the gradient, loss, optimizer state and training workspace, and
# the training entry points: one step, and one GIL-free epoch (included by _core.pyx).

cdef class Engine:
    """A Network with what training needs besides: gradient buffer, loss, optimizer,
    workspace, and the training passes.

    It holds pointers into arrays owned by the model (``grad``, optimizer state, and the
    network's ``theta``), which must not be reallocated while the engine lives.  Methods
    expect inputs already shaped and converted by the Python layer; they re-check dtype,
    shape and layout cheaply (C-level flag tests) because the kernels run without bounds
    checks.

    Parameters
    ----------
    network : Network                parameters, widths, activations
    grad : (n_params,)               the network's dtype, contiguous, writable
    loss : str                       a name from LOSS_CODES
    l2 : float                       α ≥ 0 (penalty α/(2·Σw)·Σ‖W‖²)
    sk_scaling : bool                scikit-learn's gradient convention
    """
    cdef Net net
    cdef Optim opt
    cdef readonly Network network
    cdef Layout layout
    cdef cnp.ndarray grad, opt_state
    cdef cnp.ndarray work        # activations A(1..L) and two delta buffers, for `cap` rows
    cdef cnp.ndarray gather_x, gather_y, gather_labels, gather_sw
    cdef Py_ssize_t cap, gather_cap, isz
    cdef cnp.ndarray seen, touched, zero_row   # sparse steps: their Scratch pointers
    cdef cnp.ndarray gather_sp      # sparse batch buffer: indptr, indices, values
    cdef int typenum
    cdef bint f64
    cdef Scratch scratch
    cdef cnp.ndarray drop_arr    # dropout probability of each layer (0: none), float64
    cdef Py_ssize_t drop_width   # values a row of the dropped hidden layers
    cdef void* theta_ptr
    cdef void* grad_ptr
    cdef void* delta_ptrs[2]

    def __cinit__(self, Network network not None, cnp.ndarray grad, str loss,
                  double l2=0.0, bint sk_scaling=False):
        self.network, self.layout = network, network.layout
        self.typenum, self.f64, self.isz = network.typenum, network.f64, network.isz
        if not _is_writable_carray(grad, self.typenum, 1) or grad.shape[0] != self.layout.n_params:
            raise ValueError(f"grad: expected a writable contiguous array of "
                             f"{self.layout.n_params} {network.theta.dtype} values")
        if loss not in LOSS_CODES:
            raise ValueError(f"loss: unknown loss {loss!r}")
        if not (l2 >= 0 and l2 < float("inf")):
            raise ValueError("l2: expected a finite number >= 0")
        self.grad = grad
        self.theta_ptr = cnp.PyArray_DATA(network.theta)
        self.grad_ptr = cnp.PyArray_DATA(grad)
        self.net = network.net
        self.net.loss = LOSS_CODES[loss]
        self.net.l2 = l2
        self.net.sk_scaling = sk_scaling
        self.opt.kind = C_OPT_SGD
        self.opt.s1 = NULL
        self.opt.s2 = NULL
        self.opt.t = 0
        self.cap = 0
        self.gather_cap = 0
        memset(&self.scratch, 0, sizeof(Scratch))
        self.drop_width = 0

    @property
    def adam_steps(self):
        """Adam's step count t (the bias correction uses it)."""
        return self.opt.t

    @adam_steps.setter
    def adam_steps(self, int64_t t):
        if t < 0:
            raise ValueError("adam_steps: expected an int >= 0")
        self.opt.t = t

    def set_optimizer(self, str kind, cnp.ndarray state, double momentum=0.9,
                      double beta1=0.9, double beta2=0.999, double eps=1e-8):
        """Choose the update rule.  state: (layout.state_size(kind),) array of the model
        dtype holding velocity or Adam's moments; it is updated in place."""
        if kind not in OPT_CODES:
            raise ValueError(f"optimizer: unknown optimizer {kind!r}")
        need = self.layout.state_size(kind)
        if not _is_writable_carray(state, self.typenum, 1) or state.shape[0] != need:
            raise ValueError(f"state: expected a writable contiguous array of {need} values")
        self.opt_state = state
        self.opt.kind = OPT_CODES[kind]
        self.opt.momentum = momentum
        self.opt.beta1 = beta1
        self.opt.beta2 = beta2
        self.opt.eps = eps
        cdef char* base = <char*>cnp.PyArray_DATA(state)
        self.opt.s1 = base if need else NULL
        self.opt.s2 = base + self.net.n_params * self.isz if STATE_VECTORS[kind] == 2 else NULL

    def set_dropout(self, p, uint64_t state=0):
        """Dropout on the hidden layers' outputs during updating steps: ``p`` one
        probability in [0, 1) for every hidden layer or one per hidden layer; ``state``
        the counter the masks are drawn from (``dropout_state``).  0 turns it off."""
        cdef Py_ssize_t l, n_hidden = self.layout.n_layers - 1
        ps = [float(p)] * n_hidden if isinstance(p, (int, float)) else [float(x) for x in p]
        if len(ps) != n_hidden or not all(0 <= x < 1 for x in ps):
            raise ValueError(f"dropout: expected a probability in [0, 1) or {n_hidden} of "
                             f"them, got {p!r}")
        self.drop_arr = np.array(ps + [0.0], dtype=np.float64)
        self.net.drop_p = <const double*>cnp.PyArray_DATA(self.drop_arr)
        self.drop_width = sum(self.layout.dims[l + 1] for l in range(n_hidden) if ps[l] > 0)
        self.scratch.rng = state
        self.cap = 0                     # the workspace gains (or loses) the masks

    @property
    def dropout(self):
        """The dropout probability of each hidden layer (a tuple)."""
        if self.drop_arr is None:
            return (0.0,) * (self.layout.n_layers - 1)
        return tuple(float(x) for x in self.drop_arr[:self.layout.n_layers - 1])

    @property
    def dropout_state(self):
        """The counter the next dropout masks are drawn from (saved with a model, so that
        training resumes with the same masks)."""
        return self.scratch.rng

    @dropout_state.setter
    def dropout_state(self, uint64_t state):
        self.scratch.rng = state

    def train_bytes(self, rows):
        """Workspace of a training step on ``rows`` rows (Layout.train_bytes): with the
        kept Z of the layers that need it, and a mask and the output before dropout for
        each dropped layer."""
        return self.layout.train_bytes(rows, self.isz,
                                       self.network.kept_width + 2 * self.drop_width)

    cdef void _reserve(self, Py_ssize_t n) except *:
        # Workspace for a batch of n rows (train_bytes): A(1..L), two delta buffers of
        # the widest layer, the kept Z of hidden layers and the dropout buffers.
        # Allocated once per new maximum batch size, then reused by every step.
        cdef Py_ssize_t l, off = 0
        cdef int L = self.net.n_layers
        cdef char* base
        if n <= self.cap:
            return
        nbytes = self.train_bytes(n)
        check_workspace("X", nbytes, n)
        self.work = np.empty(nbytes // self.isz, dtype=self.network.theta.dtype)
        base = <char*>cnp.PyArray_DATA(self.work)
        for l in range(L):
            self.scratch.acts[l] = base + off * self.isz
            off += n * self.net.dims[l + 1]
        self.delta_ptrs[0] = base + off * self.isz
        self.delta_ptrs[1] = base + (off + n * self.layout.max_width) * self.isz
        off += 2 * n * self.layout.max_width
        for l in range(L):
            self.scratch.zs[l] = self.scratch.pre[l] = self.scratch.masks[l] = NULL
            if l < L - 1 and activation_needs_z(self.net.acts[l]):
                self.scratch.zs[l] = base + off * self.isz
                off += n * self.net.dims[l + 1]
            if l < L - 1 and self.net.drop_p != NULL and self.net.drop_p[l] > 0:
                self.scratch.pre[l] = base + off * self.isz
                self.scratch.masks[l] = base + (off + n * self.net.dims[l + 1]) * self.isz
                off += 2 * n * self.net.dims[l + 1]
        # train_bytes counts these buffers, the loops above lay them out: one fact in two
        # forms, so a disagreement is caught here instead of writing past the workspace.
        if off * self.isz != nbytes:
            raise RuntimeError(f"workspace layout: {off * self.isz} bytes laid out, "
                               f"{nbytes} counted")
        self.cap = n

    cdef void _reserve_sparse(self, Py_ssize_t nnz) except *:
        # The flags and row list of sparse steps on batches of at most nnz stored values
        # (Layout.sparse_step_bytes).
        cdef Py_ssize_t d0 = self.net.dims[0]
        cdef Py_ssize_t need = max(min(nnz, d0), 1)
        check_memory("X", "a sparse batch", self.layout.sparse_step_bytes(nnz),
                     "use smaller batches or fastmlp.set_workspace_limit")
        if self.seen is None:
            self.seen = np.zeros(d0, dtype=np.uint8)
            self.scratch.seen = <unsigned char*>cnp.PyArray_DATA(self.seen)
            self.scratch.zero_rows = max(1, ZERO_VALUES // self.net.dims[1])
            self.zero_row = np.zeros(self.scratch.zero_rows * self.net.dims[1],
                                     dtype=self.network.theta.dtype)
            self.scratch.zero_row = cnp.PyArray_DATA(self.zero_row)
        if self.touched is None or self.touched.shape[0] < need:
            self.touched = np.empty(need, dtype=np.intp)
            self.scratch.touched = <Py_ssize_t*>cnp.PyArray_DATA(self.touched)

    cdef bint _lazy_rows_finite(self, object X):
        # A lazy sparse step (plain SGD without decay on SparseRows: see W1Rows.only) reads
        # and checks only the rows of W(1) its batch reaches, where a dense step's product
        # X·W(1) carries any NaN or infinity of W(1) into the loss and is refused.  So that
        # sparse and dense training refuse the same parameters, the whole of W(1) is
        # checked once a call (an epoch of steps for fit_epoch) before the lazy steps.
        cdef Py_ssize_t size = self.net.dims[0] * self.net.dims[1]
        cdef char* W1 = <char*>self.theta_ptr + self.net.w_off[0] * self.isz
        if type(X) is not SparseRows or self.opt.kind != C_OPT_SGD or self.net.l2 != 0:
            return True
        with nogil:
            if self.f64:
                return all_finite(<const double*>W1, size)
            return all_finite(<const float*>W1, size)

    cdef double _check_batch(self, object X, object Y, object labels, object sw) except -1:
        # Returns the normaliser: Σ sample weights, or n.
        cdef Py_ssize_t n
        cdef int L = self.net.n_layers
        self.network._check_X(X)
        n = X.shape[0]
        if n < 1:
            raise ValueError("X: expected at least one row")
        if n > BLAS_MAX:
            raise ValueError(f"X: a batch of more than {BLAS_MAX} rows exceeds BLAS's sizes")
        if labels is None:
            if Y is None:
                raise ValueError("Y: expected targets")
            if (not _is_carray(Y, self.typenum, 2) or Y.shape[0] != n
                    or Y.shape[1] != self.net.dims[L]):
                raise ValueError(f"Y: expected a C-contiguous ({n}, {self.net.dims[L]}) "
                                 f"array of the model's dtype")
        else:
            if self.net.loss != C_LOSS_SOFTMAX_XENT:
                raise ValueError("Y: integer labels need the softmax_cross_entropy loss")
            if not _is_carray(labels, cnp.NPY_INT64, 1) or labels.shape[0] != n:
                raise ValueError(f"Y: expected {n} int64 labels")
        if sw is None:
            return <double>n
        if not _is_carray(sw, self.typenum, 1) or sw.shape[0] != n:
            raise ValueError(f"sample_weight: expected {n} values of the model's dtype")
        if not self.net.sk_scaling:
            # The seeds' losses weigh each row's term of the mean (_losses.pxd): any
            # finite weights >= 0, a batch of zero weight included.
            if not _weights_nonnegative(sw):
                raise ValueError("sample_weight: expected finite weights >= 0")
            return <double>n
        total = float(np.sum(sw, dtype=np.float64))
        if not (total > 0 and total < float("inf")):
            raise ValueError("sample_weight: expected finite weights with a positive sum")
        return total

    cdef StepTarget _target(self) noexcept nogil:
        # This engine as a step's target; valid until the workspace is next reserved.
        cdef StepTarget t
        t.net, t.opt, t.s = &self.net, &self.opt, &self.scratch
        t.theta, t.grad = self.theta_ptr, self.grad_ptr
        t.da, t.db = self.delta_ptrs[0], self.delta_ptrs[1]
        t.f64 = self.f64
        return t

    cdef int _step(self, Batch* b, double lr, bint update, bint check,
                   double* loss) noexcept nogil:
        cdef StepTarget t = self._target()
        return target_step(&t, b, lr, update, check, loss)

    cdef double _run(self, Batch* b, double lr, bint update) except? -1:
        # One checked step on a batch whose arrays have passed the flag checks.  Small
        # steps keep the GIL: releasing it costs more than the step.
        cdef double loss = 0.0
        cdef int status
        if b.n > self.cap:
            self._reserve(b.n)
        self.scratch.w1_acc_known = False     # the caller may have written W(1)
        # A call, for the thread count shared among calls running at once (_blas.pxd).
        call_begin()
        if b.n * self.net.n_params > 200000:
            with nogil:
                status = self._step(b, lr, update, True, &loss)
        else:
            status = self._step(b, lr, update, True, &loss)
        call_end()
        if status != OK:
            _raise_status(status, loss, self.net.dims[self.net.n_layers])
        return loss

    def train_step(self, X, Y, labels, double lr, bint update=True, sample_weight=None):
        """One step on a batch: forward, loss, gradients into ``grad``, then the optimizer
        step if ``update``.

        X: (n, d0) C-contiguous, model dtype, or SparseRows of the model dtype.  Either
        Y: (n, dL) model dtype, or labels:
        (n,) int64 (softmax cross-entropy only).  sample_weight: (n,) or None.  Returns the
        loss before the update.  Raises ValueError for non-finite inputs or labels out of
        range, and DivergenceError (parameters untouched) when the loss or a gradient is
        not finite.
        """
        cdef Batch b
        b.norm = self._check_batch(X, Y, labels, sample_weight)
        b.n = X.shape[0]
        if type(X) is SparseRows:
            self._reserve_sparse((<SparseRows>X).nnz)
            b.X = NULL
            b.csr = &(<SparseRows>X).csr
        else:
            b.X = cnp.PyArray_DATA(<cnp.ndarray>X)
            b.csr = NULL
        b.Y = NULL if Y is None else cnp.PyArray_DATA(<cnp.ndarray>Y)
        b.labels = NULL if labels is None else <const int64_t*>cnp.PyArray_DATA(<cnp.ndarray>labels)
        b.sw = NULL if sample_weight is None else cnp.PyArray_DATA(<cnp.ndarray>sample_weight)
        if update and not self._lazy_rows_finite(X):
            _raise_status(DIVERGED, float("nan"), self.net.dims[self.net.n_layers])
        return self._run(&b, lr, update)

    def train_step_fast(self, X, Y, lr):
        """``train_step`` (with update) for inputs already in final form; returns None
        when one needs converting or validating in Python first, which then calls
        ``train_step``.  The recognition is a few C-level flag tests, so a small step pays
        no Python-level checks.

        Accepts: lr a finite float > 0; X an exact (n, d0) C-contiguous ndarray of the
        model dtype, 1 ≤ n ≤ MAX_ROWS; Y (n, dL) likewise (mse), or (n,) when dL == 1, or
        (n,) int64 labels (softmax cross-entropy).  Probability-row targets always go
        through Python, which checks that they are probabilities.
        """
        cdef double flr
        cdef Py_ssize_t n, k = self.net.dims[self.net.n_layers]
        cdef Batch b
        if type(lr) is not float:
            return None
        flr = lr
        if not (flr > 0 and flr < 1.7976931348623157e308):
            return None
        if (not _is_carray(X, self.typenum, 2)
                or cnp.PyArray_DIM(<cnp.ndarray>X, 1) != self.net.dims[0]):
            return None
        n = cnp.PyArray_DIM(<cnp.ndarray>X, 0)
        if n < 1 or n > BLAS_MAX:
            return None
        b.labels = NULL
        b.Y = NULL
        if self.net.loss == C_LOSS_SOFTMAX_XENT:
            if not _is_carray(Y, cnp.NPY_INT64, 1) or cnp.PyArray_DIM(<cnp.ndarray>Y, 0) != n:
                return None
            b.labels = <const int64_t*>cnp.PyArray_DATA(<cnp.ndarray>Y)
        elif self.net.loss == C_LOSS_MSE:
            if _is_carray(Y, self.typenum, 2):
                if (cnp.PyArray_DIM(<cnp.ndarray>Y, 0) != n
                        or cnp.PyArray_DIM(<cnp.ndarray>Y, 1) != k):
                    return None
            elif not (k == 1 and _is_carray(Y, self.typenum, 1)
                      and cnp.PyArray_DIM(<cnp.ndarray>Y, 0) == n):
                return None
            b.Y = cnp.PyArray_DATA(<cnp.ndarray>Y)
        else:
            return None
        b.X = cnp.PyArray_DATA(<cnp.ndarray>X)
        b.csr = NULL
        b.sw = NULL
        b.n = n
        b.norm = <double>n
        return self._run(&b, flr, True)

    cdef void _reserve_gather(self, Py_ssize_t n, bint labels, bint weights,
                              bint dense_x) except *:
        cdef object dt = self.network.theta.dtype
        if dense_x:
            check_workspace("X", self.layout.gather_bytes(n, self.isz), n)
        if n > self.gather_cap:
            self.gather_x = self.gather_y = self.gather_labels = self.gather_sw = None
            self.gather_cap = n
        n = self.gather_cap
        if dense_x and self.gather_x is None:
            self.gather_x = np.empty(n * self.net.dims[0], dtype=dt)
        if labels and self.gather_labels is None:
            self.gather_labels = np.empty(n, dtype=np.int64)
        if not labels and self.gather_y is None:
            self.gather_y = np.empty(n * self.net.dims[self.net.n_layers], dtype=dt)
        if weights and self.gather_sw is None:
            self.gather_sw = np.empty(n, dtype=dt)

    cdef char* _reserve_gather_sparse(self, Py_ssize_t rows, Py_ssize_t nnz,
                                      Py_ssize_t index_size) except NULL:
        # One buffer for a gathered sparse batch: indptr (rows + 1) and indices (nnz) of
        # index_size bytes, then nnz values from gathered_values_offset.
        cdef Py_ssize_t idx_bytes = gathered_values_offset(rows, nnz, index_size)
        check_workspace("X", self.layout.gather_bytes(rows, self.isz, nnz, index_size)
                        + 8, rows)
        if self.gather_sp is None or self.gather_sp.shape[0] < idx_bytes + nnz * self.isz:
            self.gather_sp = np.empty(idx_bytes + nnz * self.isz, dtype=np.uint8)
        return <char*>cnp.PyArray_DATA(self.gather_sp)

    cdef Py_ssize_t _prepare_epoch(self, X, Y, labels, perm, Py_ssize_t batch_size,
                                   sample_weight, EpochRows* e, CSR* batch_rows) except -1:
        # Checks an epoch's arguments (as fit_epoch documents them), fills ``e`` with its
        # rows and this engine's gather buffers (a shuffled epoch's batches are gathered
        # there), and reserves the workspace of its steps.  Returns the batch size
        # (clipped to n); ``prepare_steps`` then readies another engine for the same
        # batches.
        cdef Py_ssize_t n, i, idx_bytes
        cdef char* bsp
        self._check_batch(X, Y, labels, sample_weight)
        n = X.shape[0]
        if batch_size < 1:
            raise ValueError("batch_size: expected a positive integer")
        if batch_size > n:
            batch_size = n
        memset(e, 0, sizeof(EpochRows))
        e.d0, e.k = self.net.dims[0], self.net.dims[self.net.n_layers]
        e.isz, e.f64, e.rows_csr = self.isz, self.f64, batch_rows
        if type(X) is SparseRows:
            e.csr = &(<SparseRows>X).csr
        if perm is not None:
            if not _is_carray(perm, cnp.NPY_INTP, 1) or perm.shape[0] != n:
                raise ValueError(f"perm: expected an ({n},) intp permutation")
            e.perm = <const Py_ssize_t*>cnp.PyArray_DATA(<cnp.ndarray>perm)
            for i in range(n):
                if e.perm[i] < 0 or e.perm[i] >= n:
                    raise ValueError("perm: index out of range")
            self._reserve_gather(batch_size, labels is not None, sample_weight is not None,
                                 e.csr == NULL)
            if e.csr == NULL:
                e.bx = <char*>cnp.PyArray_DATA(self.gather_x)
            if labels is None:
                e.by = <char*>cnp.PyArray_DATA(self.gather_y)
            else:
                e.bl = <int64_t*>cnp.PyArray_DATA(self.gather_labels)
            if sample_weight is not None:
                e.bw = <char*>cnp.PyArray_DATA(self.gather_sw)
        if e.csr != NULL:
            if e.csr.idx64:
                e.max_nnz = max_batch_nnz(<const int64_t*>e.csr.indptr, e.perm, n, batch_size)
            else:
                e.max_nnz = max_batch_nnz(<const int32_t*>e.csr.indptr, e.perm, n,
                                          batch_size)
            if e.perm != NULL:
                bsp = self._reserve_gather_sparse(batch_size, e.max_nnz,
                                                  (<SparseRows>X).index_size)
                idx_bytes = gathered_values_offset(batch_size, e.max_nnz,
                                                   (<SparseRows>X).index_size)
                batch_rows.idx64 = e.csr.idx64
                batch_rows.indptr = bsp
                batch_rows.indices = bsp + (batch_size + 1) * (<SparseRows>X).index_size
                batch_rows.data = bsp + idx_bytes
        if e.csr == NULL:
            e.X = <const char*>cnp.PyArray_DATA(<cnp.ndarray>X)
        if labels is None:
            e.Y = <const char*>cnp.PyArray_DATA(<cnp.ndarray>Y)
        else:
            e.labels = <const int64_t*>cnp.PyArray_DATA(<cnp.ndarray>labels)
        if sample_weight is not None:
            e.sw = <const char*>cnp.PyArray_DATA(<cnp.ndarray>sample_weight)
        self._prepare_steps(e, batch_size)
        return batch_size

    cdef void _prepare_steps(self, const EpochRows* e, Py_ssize_t batch_size) except *:
        # The workspace for steps on the batches of ``e`` (of at most batch_size rows and,
        # when sparse, e.max_nnz stored values).
        if e.csr != NULL:
            self._reserve_sparse(e.max_nnz)
        self._reserve(batch_size)
        self.scratch.w1_acc_known = False     # the caller may have written W(1)

    def fit_epoch(self, X, Y, labels, perm, Py_ssize_t batch_size, double lr,
                  sample_weight=None):
        """One epoch of minibatch training in a single GIL-free loop.

        X (an array or SparseRows), Y/labels, sample_weight as in ``train_step`` for all
        n rows, already checked finite and in range by the caller.  perm: None (rows in
        order) or an (n,) intp permutation; rows are gathered into preallocated batch
        buffers (sparse rows: their stored values only).  The last partial batch is
        used.  Returns (Σ over batches of loss·rows, status, steps completed).
        """
        cdef Py_ssize_t n, start, rows, step = 0
        cdef double loss = 0.0, total = 0.0
        cdef int status = OK
        cdef EpochRows e
        cdef CSR batch_rows
        cdef Batch b
        batch_size = self._prepare_epoch(X, Y, labels, perm, batch_size, sample_weight, &e,
                                         &batch_rows)
        n = X.shape[0]
        if not self._lazy_rows_finite(X):
            return 0.0, DIVERGED, 0
        with nogil:
            call_begin()
            start = 0
            while start < n:
                rows = batch_size if start + batch_size <= n else n - start
                epoch_batch(&e, start, rows, &b)
                status = self._step(&b, lr, True, False, &loss)
                if status != OK:
                    break
                total += loss * rows
                start += rows
                step += 1
            call_end()
        return total, status, step

    def forward(self, X, out):
        """``Network.forward`` of this engine's network."""
        return self.network.forward(X, out)

