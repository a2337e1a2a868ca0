# Network: the parameters and the forward pass, all that prediction needs (included by
# _core.pyx).

cdef class Network:
    """The parameters of a network and its forward pass: all that prediction needs.

    Holds a pointer into ``theta``, owned by the caller, which must not be reallocated
    while the network lives (the network keeps a reference, so it is not freed).

    Parameters
    ----------
    layout : Layout                  layer widths and offsets
    theta : (layout.n_params,)       float32 or float64, C-contiguous, writable
    hidden_act : str or sequence     a name of HIDDEN_ACTIVATIONS for every hidden layer,
                                     or one per hidden layer (layout.n_layers - 1)
    out_act : str                    a name from ACT_CODES

    ``activations``: the names of every layer's activation, the output's last.
    ``kept_width``: values a row of the hidden layers whose Z a training step keeps.
    """
    cdef Net net
    cdef readonly Layout layout
    cdef readonly cnp.ndarray theta
    cdef readonly tuple activations
    cdef readonly Py_ssize_t kept_width
    cdef cnp.ndarray act_codes
    cdef int typenum
    cdef bint f64
    cdef Py_ssize_t isz

    def __cinit__(self, Layout layout not None, cnp.ndarray theta, hidden_act="relu",
                  str out_act="identity"):
        cdef Py_ssize_t l, n_hidden = layout.n_layers - 1
        if theta.dtype == np.float64:
            self.typenum, self.f64, self.isz = cnp.NPY_FLOAT64, True, 8
        elif theta.dtype == np.float32:
            self.typenum, self.f64, self.isz = cnp.NPY_FLOAT32, False, 4
        else:
            raise TypeError("theta: expected float32 or float64")
        if not _is_writable_carray(theta, self.typenum, 1) or theta.shape[0] != layout.n_params:
            raise ValueError(f"theta: expected a writable contiguous array of "
                             f"{layout.n_params} {theta.dtype} values")
        hidden = (hidden_act,) * n_hidden if isinstance(hidden_act, str) else tuple(hidden_act)
        if len(hidden) != n_hidden or not all(a in HIDDEN_ACTIVATIONS for a in hidden):
            raise ValueError(f"hidden_act: expected a name of {HIDDEN_ACTIVATIONS} or "
                             f"{n_hidden} of them, got {hidden_act!r}")
        if out_act not in ACT_CODES:
            raise ValueError(f"out_act: unknown output activation {out_act!r}")
        self.activations = hidden + (out_act,)
        self.act_codes = np.array([ACT_CODES[a] for a in self.activations], dtype=np.intc)
        self.kept_width = sum(layout.dims[l + 1] for l in range(n_hidden)
                              if activation_needs_z(ACT_CODES[hidden[l]]))
        self.layout, self.theta = layout, theta
        self.net.n_layers = <int>layout.n_layers
        self.net.dims = <const Py_ssize_t*>cnp.PyArray_DATA(layout.c_dims)
        self.net.w_off = <const Py_ssize_t*>cnp.PyArray_DATA(layout.c_w_off)
        self.net.b_off = <const Py_ssize_t*>cnp.PyArray_DATA(layout.c_b_off)
        self.net.n_params = layout.n_params
        self.net.acts = <const int*>cnp.PyArray_DATA(self.act_codes)
        self.net.drop_p = NULL
        self.net.loss = C_LOSS_MSE          # unused by the forward pass; an Engine sets it
        self.net.l2 = 0.0
        self.net.sk_scaling = False

    cdef object _check_X(self, object X):
        if type(X) is SparseRows:
            if ((<SparseRows>X).typenum != self.typenum
                    or (<SparseRows>X).n_cols != self.net.dims[0]):
                raise ValueError(f"X: expected sparse rows of {self.net.dims[0]} columns "
                                 "and the model's dtype")
            return
        if not _is_carray(X, self.typenum, 2) or X.shape[1] != self.net.dims[0]:
            raise ValueError(f"X: expected a C-contiguous ({self.net.dims[0]}-column) "
                             f"array of the model's dtype")

    def forward(self, X, out):
        """Network output for X (n, d0) into ``out`` (n, dL): raw outputs or logits, or
        probabilities when the output activation is logistic/softmax.  X is an array, or
        SparseRows (its first layer then costs nnz·d1, not n·d0·d1).

        Uses scratch memory of its own, so concurrent calls on one network are safe while
        no training step changes the parameters.  Raises ValueError if X is not finite.
        """
        cdef Py_ssize_t n, l, width, chunk, start, rows, d0, dL
        cdef int L = self.net.n_layers
        cdef Scratch s
        cdef char* op
        cdef char* s0
        cdef char* s1
        cdef Py_ssize_t isz = self.isz
        cdef const void* xp = NULL
        cdef void* tp = cnp.PyArray_DATA(self.theta)
        cdef bint ok = True
        cdef cnp.ndarray scratch
        cdef const CSR* csr = NULL
        cdef CSR chunk_rows
        self._check_X(X)
        n = X.shape[0]
        if (not _is_writable_carray(out, self.typenum, 2) or out.shape[0] != n
                or out.shape[1] != self.net.dims[L]):
            raise ValueError(f"out: expected a writable ({n}, {self.net.dims[L]}) array")
        check_workspace("X", self.layout.forward_bytes(n, isz), n)
        if n == 0:
            return out
        # Hidden activations alternate between two scratch halves; the last layer writes
        # straight into `out`.  Rows go through in chunks so that predicting on a large
        # (e.g. memory-mapped) X needs scratch of FORWARD_SCRATCH_BYTES, not of n rows.
        width = self.layout.hidden_width
        chunk = self.layout.forward_chunk_rows(n, isz)
        scratch = np.empty(max(2 * chunk * width, 1), dtype=self.theta.dtype)
        s0 = <char*>cnp.PyArray_DATA(scratch)
        s1 = s0 + chunk * width * isz
        memset(&s, 0, sizeof(Scratch))
        for l in range(L - 1):
            s.acts[l] = s0 if l % 2 == 0 else s1
        if type(X) is SparseRows:
            csr = &(<SparseRows>X).csr          # values checked finite by SparseRows
        else:
            xp = cnp.PyArray_DATA(<cnp.ndarray>X)
        op = <char*>cnp.PyArray_DATA(<cnp.ndarray>out)
        d0 = self.net.dims[0]
        dL = self.net.dims[L]
        with nogil:
            if csr == NULL and self.f64:
                ok = all_finite[double](<const double*>xp, n * d0)
            elif csr == NULL:
                ok = all_finite[float](<const float*>xp, n * d0)
            start = 0
            call_begin()
            while ok and start < n:
                rows = min(chunk, n - start)
                s.acts[L - 1] = op + start * dL * isz
                if csr != NULL:
                    csr_rows(csr, start, &chunk_rows)
                if self.f64:
                    forward_pass[double](&self.net, <const double*>tp,
                                         <const double*>xp + start * d0,
                                         &chunk_rows if csr != NULL else NULL, rows, &s,
                                         False, NULL)
                else:
                    forward_pass[float](&self.net, <const float*>tp,
                                        <const float*>xp + start * d0,
                                        &chunk_rows if csr != NULL else NULL, rows, &s,
                                        False, NULL)
                start += rows
            call_end()
        if not ok:
            raise ValueError("X: contains NaN or infinity")
        return out

