"""Compiled core of fastmlp: the network-level passes over the kernels, and the objects
Python drives them through.

Layout is row-major throughout (seed 003): a batch X is (n, d0), W(l) is (d(l-1), d(l)),
Z(l) = A(l-1)·W(l) + b(l).  The kernels live in the .pxd files beside this one, split by
job — _blas (BLAS calls), _fmath (float helpers and checks), _layers (linear map,
activations, backpropagation products), _losses (output losses and deltas), _optim
(update rules) — and compile into this one module.  Here:

- ``Layout``: where each parameter lives in the flat buffer, and every size that follows
  from the layer widths (parameters, optimizer state, workspace per row);
- ``forward_pass``, ``backward_pass`` and ``train_step``, the whole-network passes;
- ``Network`` (parameters and the forward pass: all prediction needs) and ``Engine``
  (a Network plus gradient, loss, optimizer and training workspace);
- the single-kernel entry points of fastmlp.kernels (``_kernel_entry.pxi``).

The ``def`` functions and the methods of those classes are the only entry points from
Python.  They check every size and flag the kernels rely on before handing pointers down
(bounds checking is off in the kernels).

Parameters of a network live in one flat buffer ``theta``: for each layer W(l) (row-major)
followed by b(l).  Gradients use the same layout in ``grad``, optimizer state too.

Two gradient conventions share the kernels:
- fastmlp's own (``sk_scaling`` off): the output deltas carry the batch's 1/n, so the
  gradients come out of the backward pass already averaged;
- scikit-learn's (``sk_scaling`` on): raw output delta (P − Y)·wᵢ, and the gradients are
  (AᵀΔ + α·W)/Σw, in scikit-learn's order of operations, so that its estimators can be
  reproduced closely.
"""
from cython cimport floating
from libc.stdint cimport int32_t, int64_t, uint64_t
from libc.math cimport sqrt
from libc.string cimport memcpy, memset
from scipy.linalg.cython_blas cimport dgemm, dgemv, dger, sgemm, sgemv, sger

cimport numpy as cnp

import numpy as np

from fastmlp.errors import DivergenceError

from fastmlp._blas cimport (BLAS_LIBS, DGEMM, DGEMV, DGER, FLOPS_PER_THREAD, SGEMM, SGEMV,
                            SGER, blas_active, blas_libs, blas_serial, call_begin, call_end,
                            get_threads_t, gemm, ger, set_threads_t, thread_limit)
from fastmlp._fmath cimport all_finite, labels_in_range, max_abs
from fastmlp._layers cimport (C_ACT_ELU, C_ACT_EXP, C_ACT_GELU, C_ACT_IDENTITY,
                              C_ACT_LEAKY_RELU, C_ACT_LOGISTIC, C_ACT_RELU, C_ACT_SILU,
                              C_ACT_SOFTMAX, C_ACT_SOFTPLUS, C_ACT_TANH, ELU_ALPHA,
                              LEAKY_RELU_SLOPE, activation_backward, activation_forward,
                              activation_max_slope, activation_needs_z, backprop_delta,
                              column_sums, csr_index, csr_linear_forward, csr_touched_rows,
                              csr_transposed_accumulate, dropout_backward, dropout_forward,
                              linear_backward, linear_forward, relu_forward,
                              relu_mask_delta, softmax_rows)
from fastmlp._losses cimport (C_LOSS_MSE, C_LOSS_SK_BINARY_LOG, C_LOSS_SK_LOG,
                              C_LOSS_SK_POISSON, C_LOSS_SK_SQUARED, C_LOSS_SOFTMAX_XENT,
                              mse_loss_delta, output_activation_delta, sk_loss_delta,
                              softmax_xent_loss_delta)
from fastmlp._optim cimport (C_OPT_ADAM, C_OPT_MOMENTUM, C_OPT_NESTEROV, C_OPT_SGD, Optim,
                             add_squares, adam_update, momentum_update, scale_gradients,
                             sgd_update, sgd_update_squares, update_is_finite)
from fastmlp._optim cimport adam_step_size as _adam_step_size

cnp.import_array()

# Status codes returned by the training step; _raise_status turns them into exceptions.
cdef enum:
    OK = 0
    BAD_X = 1
    BAD_Y = 2
    BAD_LABEL = 3
    DIVERGED = 4

# BLAS takes 32-bit int sizes and leading dimensions: layer widths, and the rows of one
# forward pass or training step, must fit.
cdef enum:
    BLAS_MAX = 2147483647
    MAX_LAYERS = 64          # weight layers: the passes keep per-layer pointers on the stack
MAX_WIDTH = BLAS_MAX
MAX_ROWS = BLAS_MAX
MAX_WEIGHT_LAYERS = MAX_LAYERS

ACT_CODES = {"identity": C_ACT_IDENTITY, "relu": C_ACT_RELU, "logistic": C_ACT_LOGISTIC,
             "tanh": C_ACT_TANH, "softmax": C_ACT_SOFTMAX, "exp": C_ACT_EXP,
             "leaky_relu": C_ACT_LEAKY_RELU, "elu": C_ACT_ELU, "gelu": C_ACT_GELU,
             "silu": C_ACT_SILU, "softplus": C_ACT_SOFTPLUS}
# The activations a hidden layer may have (softmax and exp are output activations only).
HIDDEN_ACTIVATIONS = ("relu", "tanh", "logistic", "identity", "leaky_relu", "elu", "gelu",
                      "silu", "softplus")
# Those whose derivative needs the activation's input Z, not only its output.
NEEDS_Z = tuple(name for name in HIDDEN_ACTIVATIONS if activation_needs_z(ACT_CODES[name]))
LEAKY_RELU_NEGATIVE_SLOPE = LEAKY_RELU_SLOPE
ELU_ALPHA_VALUE = ELU_ALPHA
LOSS_CODES = {"mse": C_LOSS_MSE, "softmax_cross_entropy": C_LOSS_SOFTMAX_XENT,
              "sk_squared_error": C_LOSS_SK_SQUARED, "sk_log_loss": C_LOSS_SK_LOG,
              "sk_binary_log_loss": C_LOSS_SK_BINARY_LOG, "sk_poisson": C_LOSS_SK_POISSON}
OPT_CODES = {"sgd": C_OPT_SGD, "momentum": C_OPT_MOMENTUM, "nesterov": C_OPT_NESTEROV,
             "adam": C_OPT_ADAM}
# Vectors of optimizer state, each of n_params values: velocity, or Adam's two moments.
STATE_VECTORS = {"sgd": 0, "momentum": 1, "nesterov": 1, "adam": 2}


# --------------------------------------------------------------------------------------
# BLAS table
# --------------------------------------------------------------------------------------

def _set_blas(int slot, tuple addresses=(), bint ilp64=False, tuple threads=(),
              bint serial=False):
    """Make the core call the BLAS library in table ``slot`` (0: scipy's cython_blas);
    used by fastmlp.blas only.  With ``serial``, make it the library of the products too
    small for two threads instead (slot -1: none, all products go to the active one).

    ``addresses``, if given, first fill that table: the Fortran-interface sgemm, dgemm,
    sgemv, dgemv, sger and dger of a library that stays loaded for the life of the process,
    taking 64-bit integers if ``ilp64`` else 32-bit ones, and ``threads``, for a library
    only fastmlp calls, the addresses of its ``void set(int)`` and ``int get(void)``
    thread-count functions (the core then picks each call's thread count).  fastmlp.blas
    resolves and checks them.  The table in use is never refilled, so a step running in
    another thread always calls one whole library.
    """
    global blas_active, blas_serial
    cdef int i
    if serial and slot == -1:
        blas_serial = NULL
        return
    if not 0 <= slot < BLAS_LIBS:
        raise ValueError(f"slot: expected 0 to {BLAS_LIBS - 1}, got {slot}")
    if addresses:
        if slot == 0 or len(addresses) != 6 or 0 in addresses:
            raise ValueError("addresses: expected six nonzero routine addresses for a slot > 0")
        if threads and (len(threads) != 2 or 0 in threads):
            raise ValueError("threads: expected the addresses of a setter and a getter")
        if blas_active == &blas_libs[slot] or blas_serial == &blas_libs[slot]:
            raise ValueError(f"slot: table {slot} is in use and cannot be refilled")
        for i in range(6):
            blas_libs[slot].fn[i] = <void*><size_t>addresses[i]
        blas_libs[slot].ilp64 = ilp64
        blas_libs[slot].set_threads = <set_threads_t><size_t>threads[0] if threads else NULL
        blas_libs[slot].get_threads = <get_threads_t><size_t>threads[1] if threads else NULL
    elif blas_libs[slot].fn[0] == NULL:
        raise ValueError(f"slot: table {slot} was never filled")
    if serial:
        blas_serial = &blas_libs[slot]
    else:
        blas_active = &blas_libs[slot]


# Work (floating-point operations) per BLAS thread; see _blas.pxd.
FLOPS_PER_THREAD_MIN = FLOPS_PER_THREAD


def get_thread_limit():
    """The most threads the core's BLAS calls use (see fastmlp.threads)."""
    return thread_limit


def set_thread_limit(int n):
    """Set the most threads the core's BLAS calls use; ``n`` >= 1 (see fastmlp.threads)."""
    global thread_limit
    if n < 1:
        raise ValueError(f"n: expected a positive number of threads, got {n}")
    thread_limit = n


blas_libs[0].fn[SGEMM] = <void*>sgemm
blas_libs[0].fn[DGEMM] = <void*>dgemm
blas_libs[0].fn[SGEMV] = <void*>sgemv
blas_libs[0].fn[DGEMV] = <void*>dgemv
blas_libs[0].fn[SGER] = <void*>sger
blas_libs[0].fn[DGER] = <void*>dger
blas_libs[0].ilp64 = False
blas_libs[0].set_threads = NULL
blas_libs[0].get_threads = NULL


# --------------------------------------------------------------------------------------
# Sizes: the workspace limit and the parameter layout
# --------------------------------------------------------------------------------------

# Workspace larger than this is refused up front, with a clear error, instead of failing
# (or swapping) deep inside an allocation; see set_workspace_limit.
_workspace_limit = 8 * 2**30


def set_workspace_limit(nbytes):
    """Set the largest workspace (bytes) one call may ask for; returns the old limit."""
    global _workspace_limit
    # The core's own size arithmetic is Py_ssize_t: keep every checked size far below 2**63.
    if isinstance(nbytes, bool) or not isinstance(nbytes, int) or not 1 <= nbytes <= 2**62:
        raise ValueError(f"nbytes: expected an int in [1, 2**62], got {nbytes!r}")
    old, _workspace_limit = _workspace_limit, nbytes
    return old


def get_workspace_limit():
    """The largest workspace (bytes) one call may ask for (default 8 GiB)."""
    return _workspace_limit


def check_memory(str name, what, n_bytes, str remedy):
    """Refuse, before anything is allocated, ``what`` (a batch, a model, a result)
    needing ``n_bytes`` (a Python int: no overflow) over the workspace limit; the message
    starts with ``name`` and ends with ``remedy``."""
    if n_bytes > _workspace_limit:
        raise ValueError(f"{name}: {what} needs {n_bytes} bytes, over the workspace limit "
                         f"of {_workspace_limit} bytes; {remedy}")


def check_workspace(str name, n_bytes, rows):
    """``check_memory`` for a batch of ``rows`` rows, which must also fit one BLAS call."""
    if rows > BLAS_MAX:
        raise ValueError(f"{name}: a batch of {rows} rows is more than one BLAS call takes "
                         f"({BLAS_MAX}, 32-bit sizes); use smaller batches")
    check_memory(name, f"a batch of {rows} rows", n_bytes,
                 "use smaller batches or fastmlp.set_workspace_limit")


# Scratch of Network.forward: hidden activations of this many bytes at most (but never
# fewer than FORWARD_MIN_ROWS rows, so GEMMs stay large enough to run at full speed).
FORWARD_SCRATCH_BYTES = 16 * 2**20
# Zeros a sparse step's update reads for the rows of W(1) its batch did not reach
# (W1Rows): whole rows, as many as fit in this many values (32 KiB in float64, L1-sized).
ZERO_VALUES = 4096
FORWARD_MIN_ROWS = 256


cdef class Layout:
    """The flat parameter layout of a network of widths ``dims`` = (d0, …, dL), and the
    sizes that follow from it.  Computing one allocates nothing of the model's size, so
    an oversized model can be refused before anything is allocated.

    theta = [W(1) (d0·d1, row-major), b(1) (d1), W(2), b(2), …]; gradients and each
    vector of optimizer state use the same layout.

    Attributes: ``dims`` (tuple), ``n_layers`` (L), ``n_params``, ``w_off``/``b_off``
    (offsets of W(l)/b(l), tuples), ``hidden_width`` (widest hidden layer, 0 if none),
    ``max_width`` (widest layer after the input), ``largest_weight`` (values of the
    largest W(l)).
    """
    cdef readonly tuple dims, w_off, b_off
    cdef readonly Py_ssize_t n_layers, n_params, hidden_width, max_width, largest_weight
    cdef cnp.ndarray c_dims, c_w_off, c_b_off   # intp copies the passes read

    def __cinit__(self, dims, str name="dims"):
        # name: the argument the widths came from, for the messages
        dims = tuple(int(d) for d in dims)
        if not 2 <= len(dims) <= MAX_LAYERS + 1:
            raise ValueError(f"{name}: expected 2 to {MAX_LAYERS + 1} layer widths, "
                             f"got {len(dims)}")
        if not all(1 <= d <= BLAS_MAX for d in dims):
            raise ValueError(f"{name}: every layer width must be in [1, {BLAS_MAX}]")
        cdef Py_ssize_t L = len(dims) - 1      # (no negative indices: wraparound is off)
        w_off, b_off, off = [], [], 0
        for d_in, d_out in zip(dims[:L], dims[1:]):
            w_off.append(off)
            off += d_in * d_out
            b_off.append(off)
            off += d_out
        # Py_ssize_t arithmetic in the passes: refuse what no memory could hold anyway.
        if off >= 2**62:
            raise ValueError(f"{name}: {off} parameters exceed any addressable buffer")
        self.dims, self.w_off, self.b_off = dims, tuple(w_off), tuple(b_off)
        self.n_layers = L
        self.n_params = off
        self.hidden_width = max(dims[1:L], default=0)
        self.max_width = max(dims[1:])
        self.largest_weight = max(a * b for a, b in zip(dims[:L], dims[1:]))
        self.c_dims = np.array(dims, dtype=np.intp)
        self.c_w_off = np.array(w_off, dtype=np.intp)
        self.c_b_off = np.array(b_off, dtype=np.intp)

    def views(self, flat):
        """(weights, biases): lists of views into ``flat`` (n_params,), weights[l] of
        shape (d(l), d(l+1)), biases[l] of shape (d(l+1),)."""
        weights, biases = [], []
        for l in range(self.n_layers):
            d_in, d_out = self.dims[l], self.dims[l + 1]
            weights.append(flat[self.w_off[l]:self.w_off[l] + d_in * d_out]
                           .reshape(d_in, d_out))
            biases.append(flat[self.b_off[l]:self.b_off[l] + d_out])
        return weights, biases

    def sklearn_order(self):
        """(sk_to_flat, flat_to_sk): intp index arrays between scikit-learn's packing of
        the parameters, [W(1), W(2), …, b(1), b(2), …], and this layout."""
        parts = ([np.arange(self.w_off[l], self.b_off[l]) for l in range(self.n_layers)]
                 + [np.arange(self.b_off[l], self.b_off[l] + self.dims[l + 1])
                    for l in range(self.n_layers)])
        sk_to_flat = np.concatenate(parts).astype(np.intp)
        flat_to_sk = np.empty_like(sk_to_flat)
        flat_to_sk[sk_to_flat] = np.arange(sk_to_flat.size, dtype=np.intp)
        return sk_to_flat, flat_to_sk

    def state_size(self, str optimizer):
        """Values of optimizer state (one array) for ``optimizer``."""
        if optimizer not in STATE_VECTORS:
            raise ValueError(f"optimizer: unknown optimizer {optimizer!r}")
        return STATE_VECTORS[optimizer] * self.n_params

    def train_bytes(self, rows, itemsize, kept_width=0):
        """Workspace of a training step on ``rows`` rows: the activations of every layer,
        two delta buffers of the widest layer, and the inputs Z of the hidden layers
        whose activation derivative needs them, ``kept_width`` values a row (Python
        int: no overflow)."""
        return (int(rows) * (sum(self.dims[1:]) + 2 * self.max_width + int(kept_width))
                * int(itemsize))

    def gather_bytes(self, rows, itemsize, nnz=None, index_size=0):
        """Batch buffers ``Engine.fit_epoch`` gathers shuffled rows into, at most: the
        targets and weights, and the rows of X — dense (d0 values a row) or, given
        ``nnz``, sparse (row pointers and nnz column indices of ``index_size`` bytes,
        nnz values)."""
        rows = int(rows)
        x = (rows * self.dims[0] * int(itemsize) if nnz is None
             else (rows + 1 + int(nnz)) * int(index_size) + int(nnz) * int(itemsize))
        return x + rows * (self.dims[self.n_layers] + 2) * int(itemsize)

    def sparse_step_bytes(self, nnz):
        """Workspace of a step on sparse rows of ``nnz`` stored values besides
        ``train_bytes``: a flag per input column, and the list of the rows of W(1) the
        batch reaches (at most min(nnz, d0), 8 bytes each), and ZERO_VALUES zeros (a
        row of d1 if more)."""
        return self.dims[0] + 8 * min(int(nnz), self.dims[0]) + 8 * max(ZERO_VALUES,
                                                                        self.dims[1])

    def forward_chunk_rows(self, Py_ssize_t n, Py_ssize_t itemsize):
        """Rows per chunk of ``Network.forward`` on n rows: its scratch (two hidden layers
        of the chunk) stays within FORWARD_SCRATCH_BYTES."""
        if self.hidden_width == 0:
            return max(n, 1)
        return max(min(n, FORWARD_SCRATCH_BYTES // (2 * self.hidden_width * itemsize)),
                   min(n, FORWARD_MIN_ROWS), 1)

    def forward_bytes(self, n, itemsize):
        """Memory of ``Network.forward`` on n rows: the (n, dL) output and the scratch."""
        chunk = self.forward_chunk_rows(n, itemsize)
        return ((int(n) * self.dims[self.n_layers] + 2 * chunk * self.hidden_width)
                * int(itemsize))

    def __reduce__(self):
        return Layout, (self.dims,)

    def __repr__(self):
        return f"Layout({list(self.dims)})"


cdef struct Net:
    int n_layers             # L, number of weight layers
    const Py_ssize_t* dims   # L + 1 layer widths
    const Py_ssize_t* w_off  # offset of W(l) in theta / grad
    const Py_ssize_t* b_off  # offset of b(l)
    Py_ssize_t n_params
    const int* acts          # activation of each layer; acts[L-1] is the output's
    const double* drop_p     # dropout probability of each hidden layer, or NULL: none
    int loss
    double l2                # α: penalty α/(2·Σw)·Σ‖W‖², gradient α·W/Σw
    bint sk_scaling          # scikit-learn's gradient convention (see module docstring)


cdef struct CSR:
    # Rows of a sparse X (see _layers.pxd, "sparse input"): row i's values are
    # data[indptr[i]:indptr[i+1]] in the columns indices[…]; checked by SparseRows.
    const void* data         # model dtype
    const void* indices      # int32, or int64 if idx64
    const void* indptr       # n + 1 values of the indices' type
    bint idx64


cdef struct Batch:
    const void* X            # (n, d0), or NULL when the rows are sparse
    const CSR* csr           # the rows when sparse, else NULL
    const void* Y            # (n, dL) or NULL when labels are given
    const int64_t* labels    # (n,) or NULL
    const void* sw           # (n,) sample weights or NULL
    Py_ssize_t n
    double norm              # Σ sample weights, or n


cdef struct Scratch:
    # Where a pass keeps each layer's values: pointers into a workspace, per layer l
    # (the layer that outputs A(l+1)).  Prediction uses acts only.
    void* acts[MAX_LAYERS]   # A(l+1) (after dropout): the next layer's input
    void* zs[MAX_LAYERS]     # Z(l+1), where g' needs it (activation_needs_z), else NULL
    void* pre[MAX_LAYERS]    # A(l+1) before dropout, for g', where dropped, else NULL
    void* masks[MAX_LAYERS]  # dropout mask, where dropped, else NULL
    uint64_t rng             # dropout's counter (dropout_forward)
    # Sparse steps: the rows of W(1) the batch reaches (csr_touched_rows), its flags,
    # and whether the W(1) block of grad is all zero (a sparse step leaves it so, so the
    # next one need only fill the rows it reaches).
    unsigned char* seen      # d0 flags, all 0 between steps
    void* zero_row           # zero_rows·d1 zeros (W1Rows.zero)
    Py_ssize_t zero_rows
    Py_ssize_t* touched
    Py_ssize_t n_touched
    bint w1_grad_zero
    # l2_penalty's eight sums over W(1) as the last sparse plain-SGD step with decay left
    # it (sgd_update_squares), valid when w1_acc_known: the next step's penalty then
    # does not read W(1) again.  Cleared on each call from Python, since the caller may
    # have written W(1) in between.
    double w1_acc[8]
    bint w1_acc_known


# --------------------------------------------------------------------------------------
# Whole-network passes over the flat parameter buffer
# --------------------------------------------------------------------------------------

cdef inline void sparse_linear_forward(const CSR* x, Py_ssize_t n, const floating* W,
                                       const floating* b, Py_ssize_t d_out,
                                       floating* Z) noexcept nogil:
    # csr_linear_forward for either index type.
    if x.idx64:
        csr_linear_forward(<const floating*>x.data, <const int64_t*>x.indices,
                           <const int64_t*>x.indptr, n, W, b, d_out, Z)
    else:
        csr_linear_forward(<const floating*>x.data, <const int32_t*>x.indices,
                           <const int32_t*>x.indptr, n, W, b, d_out, Z)


cdef inline void sparse_weight_gradient(const CSR* x, Py_ssize_t n, const floating* D,
                                        Py_ssize_t d_out, floating* dW) noexcept nogil:
    # csr_transposed_accumulate for either index type.
    if x.idx64:
        csr_transposed_accumulate(<const floating*>x.data, <const int64_t*>x.indices,
                                  <const int64_t*>x.indptr, n, D, d_out, dW)
    else:
        csr_transposed_accumulate(<const floating*>x.data, <const int32_t*>x.indices,
                                  <const int32_t*>x.indptr, n, D, d_out, dW)


cdef void forward_pass(const Net* net, const floating* theta, const floating* X,
                       const CSR* csr, Py_ssize_t n, Scratch* s, bint drop) noexcept nogil:
    # s.acts[l] receives A(l+1), (n, dims[l+1]); the last holds the network's output,
    # after the output activation (identity for raw outputs and logits).  Where s has
    # them, Z(l+1) is kept before the activation, and with `drop` (training) the hidden
    # layers with a dropout mask are dropped, their output kept before it in s.pre.
    # The input is X (n, d0), or when csr is not NULL its n sparse rows (X unused).
    cdef int l, L = net.n_layers
    cdef Py_ssize_t size
    cdef const floating* A_prev = X
    cdef floating* A
    for l in range(L):
        A = <floating*>s.acts[l]
        size = n * net.dims[l + 1]
        if l == 0 and csr != NULL:
            sparse_linear_forward(csr, n, theta + net.w_off[0], theta + net.b_off[0],
                                  net.dims[1], A)
        else:
            linear_forward(A_prev, n, net.dims[l], theta + net.w_off[l],
                           theta + net.b_off[l], net.dims[l + 1], A)
        if s.zs[l] != NULL:
            memcpy(s.zs[l], A, size * sizeof(floating))
        activation_forward(net.acts[l], A, n, net.dims[l + 1])
        if drop and s.masks[l] != NULL:
            memcpy(s.pre[l], A, size * sizeof(floating))
            dropout_forward(A, <floating*>s.masks[l], size, net.drop_p[l], &s.rng)
        A_prev = A


cdef double output_loss_delta(const Net* net, const floating* out, const Batch* b,
                              floating* D) noexcept nogil:
    # The loss of the batch, and Δ(L) into D.
    cdef Py_ssize_t k = net.dims[net.n_layers]
    cdef double loss
    if net.loss == C_LOSS_MSE:
        loss = mse_loss_delta(out, <const floating*>b.Y, b.n, k, D)
        output_activation_delta(net.acts[net.n_layers - 1], out, D, b.n * k)
        return loss
    if net.loss == C_LOSS_SOFTMAX_XENT:
        return softmax_xent_loss_delta(out, <const floating*>b.Y, b.labels, b.n, k, D)
    return sk_loss_delta(net.loss, out, <const floating*>b.Y, <const floating*>b.sw,
                         b.n, k, b.norm, D)


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
    cdef double d_max = max_abs(D_out, n * net.dims[L])
    cdef double a_max, w_max, b_max, beta = 1 - lr * net.l2 / n
    if beta < 0:
        beta = -beta
    for l in range(L - 1, -1, -1):
        a_max = max_abs(X if l == 0 else <const floating*>s.acts[l - 1], n * net.dims[l])
        w_max = max_abs(theta + net.w_off[l], net.dims[l] * net.dims[l + 1])
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
                        double norm) noexcept nogil:
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
            backprop_delta(net.acts[l - 1], D, n, d_out, W,
                           <const floating*>(s.pre[l - 1] if mask else s.acts[l - 1]),
                           <const floating*>s.zs[l - 1], d_in, D_other)
            if mask:
                dropout_backward(D_other, <const floating*>s.masks[l - 1], n * d_in)
        if fused:
            bias = theta + net.b_off[l]
            db = grad + net.b_off[l]
            column_sums(D, n, d_out, db)
            for j in range(d_out):
                bias[j] -= flr * db[j]
            if n == 1 and beta == 1:
                ger(<int>d_in, <int>d_out, -flr, A_prev, D, W, <int>d_out)
            else:
                gemm(True, False, <int>d_in, <int>d_out, <int>n, -flr, A_prev, <int>d_in,
                     D, <int>d_out, beta, W, <int>d_out)
        else:
            if l == 0 and csr != NULL:
                sparse_weight_gradient(csr, n, D, d_out, grad + net.w_off[0])
                column_sums(D, n, d_out, grad + net.b_off[0])
            else:
                linear_backward(A_prev, n, d_in, D, d_out, grad + net.w_off[l],
                                grad + net.b_off[l])
            if scale:
                scale_gradients(grad + net.w_off[l], W, d_in * d_out, net.l2, norm,
                                net.sk_scaling)
                if net.sk_scaling:
                    scale_gradients(grad + net.b_off[l], theta, d_out, 0.0, norm, True)
        tmp = D
        D = D_other
        D_other = tmp


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
                                    check_inputs, loss_out)
    if not s.w1_grad_zero:
        memset(gW1, 0, net.dims[0] * width * sizeof(floating))
    if b.csr.idx64:
        s.n_touched = csr_touched_rows(<const int64_t*>b.csr.indices,
                                       <const int64_t*>b.csr.indptr, b.n, s.seen, s.touched)
    else:
        s.n_touched = csr_touched_rows(<const int32_t*>b.csr.indices,
                                       <const int32_t*>b.csr.indptr, b.n, s.seen, s.touched)
    status = dense_or_sparse_step(net, opt, theta, grad, s, D_a, D_b, b, lr, update,
                                  check_inputs, loss_out)
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
                              double* loss_out) noexcept nogil:
    # train_step's work, once a sparse batch's rows are flagged.
    cdef int L = net.n_layers
    cdef Py_ssize_t n = b.n, k = net.dims[L]
    cdef const floating* X = <const floating*>b.X
    cdef double norm = b.norm if net.sk_scaling else <double>n
    cdef double penalty = 0.0
    cdef bint fused, sparse = b.csr != NULL
    cdef W1Rows rows
    cdef const W1Rows* w1 = NULL
    if check_inputs:
        if not sparse and not all_finite(X, n * net.dims[0]):
            return BAD_X
        if b.Y != NULL and not all_finite(<const floating*>b.Y, n * k):
            return BAD_Y
        if b.Y == NULL and not labels_in_range(b.labels, n, k):
            return BAD_LABEL
    forward_pass(net, theta, X, b.csr, n, s, update)
    loss_out[0] = output_loss_delta(net, <const floating*>s.acts[L - 1], b, D_a)
    if net.l2 != 0:
        penalty = l2_penalty(net, theta, s.w1_acc if s.w1_acc_known else NULL)
        loss_out[0] += 0.5 * net.l2 * penalty / norm
    s.w1_acc_known = False
    if not (loss_out[0] - loss_out[0] == 0):
        return DIVERGED
    fused = (update and not sparse and opt.kind == C_OPT_SGD and not net.sk_scaling
             and fused_sgd_is_safe(net, theta, s, X, n, D_a, lr))
    backward_pass(net, theta, grad, s, update, D_a, D_b, X, b.csr, n, fused, lr, not update,
                  norm)
    if fused:
        return OK
    if not update:
        return OK if all_finite(grad, net.n_params) else DIVERGED
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


# --------------------------------------------------------------------------------------
# Python entry points
# --------------------------------------------------------------------------------------

cdef inline bint _is_carray(object a, int typenum, int ndim):
    # An ndarray of exactly this dtype in native byte order, C-contiguous, aligned, of
    # this ndim: what the kernels may read through a raw pointer.
    if type(a) is not cnp.ndarray:
        return False
    return (cnp.PyArray_TYPE(<cnp.ndarray>a) == typenum
            and cnp.PyArray_NDIM(<cnp.ndarray>a) == ndim
            and cnp.PyArray_CHKFLAGS(<cnp.ndarray>a, cnp.NPY_ARRAY_CARRAY_RO)
            and cnp.PyArray_ISNOTSWAPPED(<cnp.ndarray>a))


cdef inline bint _is_writable_carray(object a, int typenum, int ndim):
    return (_is_carray(a, typenum, ndim)
            and cnp.PyArray_CHKFLAGS(<cnp.ndarray>a, cnp.NPY_ARRAY_WRITEABLE))


cdef bint csr_structure_ok(const csr_index* indptr, const csr_index* indices,
                           Py_ssize_t n, Py_ssize_t n_stored, Py_ssize_t n_cols,
                           int* what) noexcept nogil:
    # indptr starts at 0, never decreases and ends within the n_stored values (what = 1
    # if not); every column index is in [0, n_cols) (what = 2 if not).
    cdef Py_ssize_t i, p
    cdef csr_index j
    cdef int bad = 0
    if indptr[0] != 0 or indptr[n] > n_stored:
        what[0] = 1
        return False
    for i in range(n):
        bad |= indptr[i + 1] < indptr[i]
    if bad:
        what[0] = 1
        return False
    for p in range(indptr[n]):
        j = indices[p]
        bad |= (j < 0) | (j >= n_cols)
    if bad:
        what[0] = 2
        return False
    return True


cdef class SparseRows:
    """The rows of a CSR matrix, checked once for the core: what the training and
    forward passes take in place of a dense X.

    Parameters
    ----------
    data : (n_stored,) float32 or float64     the stored values
    indices : (n_stored,) int32 or int64      their columns
    indptr : (n + 1,) the indices' dtype      row i is data[indptr[i]:indptr[i+1]]
    n_cols : int                              columns of X
    name : str                                the argument, for the messages

    Each array must be 1-D, C-contiguous, aligned and native-endian; none is copied (a
    memory map is read in place).  The constructor checks, without the GIL, what the
    kernels rely on: indptr starts at 0, never decreases and ends within data; every
    column index is in [0, n_cols); every value row 0 … n-1 stores is finite.  A
    ValueError starting with ``name`` says which failed.  Column indices need not be
    sorted; duplicates add up, as in scipy.

    ``shape`` (n, n_cols), ``nnz`` (values stored in the n rows), ``dtype``.
    """
    cdef readonly cnp.ndarray data, indices, indptr
    cdef readonly Py_ssize_t n_rows, n_cols, nnz
    cdef CSR csr
    cdef int typenum
    cdef Py_ssize_t index_size

    def __cinit__(self, cnp.ndarray data not None, cnp.ndarray indices not None,
                  cnp.ndarray indptr not None, Py_ssize_t n_cols, str name="X"):
        cdef int what = 0
        cdef bint ok
        cdef Py_ssize_t n, n_stored
        self.typenum = cnp.PyArray_TYPE(data)
        if self.typenum not in (cnp.NPY_FLOAT32, cnp.NPY_FLOAT64) or not _is_carray(
                data, self.typenum, 1):
            raise ValueError(f"{name}: sparse values must be a contiguous float32 or "
                             "float64 array")
        itype = cnp.PyArray_TYPE(indices)
        if (itype not in (cnp.NPY_INT32, cnp.NPY_INT64) or not _is_carray(indices, itype, 1)
                or not _is_carray(indptr, itype, 1)):
            raise ValueError(f"{name}: sparse indices and indptr must be contiguous arrays "
                             "of one integer type, int32 or int64")
        if not 1 <= n_cols <= BLAS_MAX:
            raise ValueError(f"{name}: expected between 1 and {BLAS_MAX} columns, got {n_cols}")
        n_stored = data.shape[0]
        if indices.shape[0] != n_stored or indptr.shape[0] < 1:
            raise ValueError(f"{name}: sparse indices ({indices.shape[0]}) and values "
                             f"({n_stored}) must be as many, with an indptr of n_rows + 1")
        n = indptr.shape[0] - 1
        self.csr.idx64 = itype == cnp.NPY_INT64
        self.index_size = 8 if self.csr.idx64 else 4
        self.csr.data = cnp.PyArray_DATA(data)
        self.csr.indices = cnp.PyArray_DATA(indices)
        self.csr.indptr = cnp.PyArray_DATA(indptr)
        with nogil:
            if self.csr.idx64:
                ok = csr_structure_ok(<const int64_t*>self.csr.indptr,
                                      <const int64_t*>self.csr.indices, n, n_stored, n_cols,
                                      &what)
            else:
                ok = csr_structure_ok(<const int32_t*>self.csr.indptr,
                                      <const int32_t*>self.csr.indices, n, n_stored, n_cols,
                                      &what)
        if not ok and what == 1:
            raise ValueError(f"{name}: sparse indptr must start at 0, never decrease and "
                             f"end at most at the number of stored values ({n_stored})")
        if not ok:
            raise ValueError(f"{name}: sparse column indices must be in [0, {n_cols})")
        self.nnz = (<const int64_t*>self.csr.indptr)[n] if self.csr.idx64 else \
            (<const int32_t*>self.csr.indptr)[n]
        with nogil:
            if self.typenum == cnp.NPY_FLOAT64:
                ok = all_finite[double](<const double*>self.csr.data, self.nnz)
            else:
                ok = all_finite[float](<const float*>self.csr.data, self.nnz)
        if not ok:
            raise ValueError(f"{name}: contains NaN or infinity")
        self.data, self.indices, self.indptr = data, indices, indptr
        self.n_rows, self.n_cols = n, n_cols

    @property
    def shape(self):
        return (self.n_rows, self.n_cols)

    @property
    def dtype(self):
        return self.data.dtype

    def __repr__(self):
        return (f"SparseRows(shape={self.shape}, nnz={self.nnz}, dtype={self.data.dtype}, "
                f"index={self.indices.dtype})")


cdef inline void csr_rows(const CSR* x, Py_ssize_t start, CSR* out) noexcept nogil:
    # out: the rows of x from `start` on (the stored values stay where they are).
    out[0] = x[0]
    out.indptr = <const char*>x.indptr + start * (8 if x.idx64 else 4)


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
                                         False)
                else:
                    forward_pass[float](&self.net, <const float*>tp,
                                        <const float*>xp + start * d0,
                                        &chunk_rows if csr != NULL else NULL, rows, &s,
                                        False)
                start += rows
            call_end()
        if not ok:
            raise ValueError("X: contains NaN or infinity")
        return out


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
        if not self.net.sk_scaling:
            raise ValueError("sample_weight: only supported with scikit-learn scaling")
        if not _is_carray(sw, self.typenum, 1) or sw.shape[0] != n:
            raise ValueError(f"sample_weight: expected {n} values of the model's dtype")
        total = float(np.sum(sw, dtype=np.float64))
        if not (total > 0 and total < float("inf")):
            raise ValueError("sample_weight: expected finite weights with a positive sum")
        return total

    cdef int _step(self, Batch* b, double lr, bint update, bint check,
                   double* loss) noexcept nogil:
        cdef void* tp = self.theta_ptr
        cdef void* gp = self.grad_ptr
        cdef void* da = self.delta_ptrs[0]
        cdef void* db = self.delta_ptrs[1]
        if self.f64:
            return train_step[double](&self.net, &self.opt, <double*>tp, <double*>gp,
                                      &self.scratch, <double*>da, <double*>db, b, lr,
                                      update, check, loss)
        return train_step[float](&self.net, &self.opt, <float*>tp, <float*>gp,
                                 &self.scratch, <float*>da, <float*>db, b, lr, update,
                                 check, loss)

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

    def fit_epoch(self, X, Y, labels, perm, Py_ssize_t batch_size, double lr,
                  sample_weight=None):
        """One epoch of minibatch training in a single GIL-free loop.

        X (an array or SparseRows), Y/labels, sample_weight as in ``train_step`` for all
        n rows, already checked finite and in range by the caller.  perm: None (rows in
        order) or an (n,) intp permutation; rows are gathered into preallocated batch
        buffers (sparse rows: their stored values only).  The last partial batch is
        used.  Returns (Σ over batches of loss·rows, status, steps completed).
        """
        cdef Py_ssize_t n, start, rows, i, j, step = 0
        cdef Py_ssize_t d0 = self.net.dims[0], k = self.net.dims[self.net.n_layers]
        cdef Py_ssize_t isz = self.isz, max_nnz = 0, idx_bytes = 0
        cdef double loss = 0.0, total = 0.0, w_sum
        cdef int status = OK
        cdef const Py_ssize_t* pp = NULL
        cdef const char* xp = NULL
        cdef const char* yp = NULL
        cdef const int64_t* lp = NULL
        cdef const char* wp = NULL
        cdef char* bx = NULL
        cdef char* by = NULL
        cdef int64_t* bl = NULL
        cdef char* bw = NULL
        cdef char* bsp = NULL
        cdef const CSR* csr = NULL
        cdef CSR batch_rows
        cdef Batch b
        self._check_batch(X, Y, labels, sample_weight)
        n = X.shape[0]
        if batch_size < 1:
            raise ValueError("batch_size: expected a positive integer")
        if batch_size > n:
            batch_size = n
        if type(X) is SparseRows:
            csr = &(<SparseRows>X).csr
        if perm is not None:
            if not _is_carray(perm, cnp.NPY_INTP, 1) or perm.shape[0] != n:
                raise ValueError(f"perm: expected an ({n},) intp permutation")
            pp = <const Py_ssize_t*>cnp.PyArray_DATA(<cnp.ndarray>perm)
            for i in range(n):
                if pp[i] < 0 or pp[i] >= n:
                    raise ValueError("perm: index out of range")
            self._reserve_gather(batch_size, labels is not None, sample_weight is not None,
                                 csr == NULL)
            if csr == NULL:
                bx = <char*>cnp.PyArray_DATA(self.gather_x)
            if labels is None:
                by = <char*>cnp.PyArray_DATA(self.gather_y)
            else:
                bl = <int64_t*>cnp.PyArray_DATA(self.gather_labels)
            if sample_weight is not None:
                bw = <char*>cnp.PyArray_DATA(self.gather_sw)
        if csr != NULL:
            if csr.idx64:
                max_nnz = max_batch_nnz(<const int64_t*>csr.indptr, pp, n, batch_size)
            else:
                max_nnz = max_batch_nnz(<const int32_t*>csr.indptr, pp, n, batch_size)
            self._reserve_sparse(max_nnz)
            if pp != NULL:
                bsp = self._reserve_gather_sparse(batch_size, max_nnz,
                                                  (<SparseRows>X).index_size)
                idx_bytes = gathered_values_offset(batch_size, max_nnz,
                                                   (<SparseRows>X).index_size)
                batch_rows.idx64 = csr.idx64
                batch_rows.indptr = bsp
                batch_rows.indices = bsp + (batch_size + 1) * (<SparseRows>X).index_size
                batch_rows.data = bsp + idx_bytes
        self._reserve(batch_size)
        if csr == NULL:
            xp = <const char*>cnp.PyArray_DATA(<cnp.ndarray>X)
        if labels is None:
            yp = <const char*>cnp.PyArray_DATA(<cnp.ndarray>Y)
        else:
            lp = <const int64_t*>cnp.PyArray_DATA(<cnp.ndarray>labels)
        if sample_weight is not None:
            wp = <const char*>cnp.PyArray_DATA(<cnp.ndarray>sample_weight)
        if not self._lazy_rows_finite(X):
            return 0.0, DIVERGED, 0
        self.scratch.w1_acc_known = False     # the caller may have written W(1)
        with nogil:
            call_begin()
            start = 0
            while start < n:
                rows = batch_size if start + batch_size <= n else n - start
                b.csr = NULL if csr == NULL else &batch_rows
                if pp == NULL:
                    b.X = NULL if xp == NULL else xp + start * d0 * isz
                    if csr != NULL:
                        csr_rows(csr, start, &batch_rows)
                    b.Y = NULL if yp == NULL else yp + start * k * isz
                    b.labels = NULL if lp == NULL else lp + start
                    b.sw = NULL if wp == NULL else wp + start * isz
                else:
                    for i in range(rows):
                        j = pp[start + i]
                        if xp != NULL:
                            memcpy(bx + i * d0 * isz, xp + j * d0 * isz, d0 * isz)
                        if yp != NULL:
                            memcpy(by + i * k * isz, yp + j * k * isz, k * isz)
                        else:
                            bl[i] = lp[j]
                        if wp != NULL:
                            memcpy(bw + i * isz, wp + j * isz, isz)
                    if csr != NULL and csr.idx64:
                        gather_csr_rows(<const int64_t*>csr.indptr,
                                        <const int64_t*>csr.indices, <const char*>csr.data,
                                        pp + start, rows, isz, <int64_t*>batch_rows.indptr,
                                        <int64_t*>batch_rows.indices, <char*>batch_rows.data)
                    elif csr != NULL:
                        gather_csr_rows(<const int32_t*>csr.indptr,
                                        <const int32_t*>csr.indices, <const char*>csr.data,
                                        pp + start, rows, isz, <int32_t*>batch_rows.indptr,
                                        <int32_t*>batch_rows.indices, <char*>batch_rows.data)
                    b.X = bx
                    b.Y = by
                    b.labels = bl
                    b.sw = bw
                b.n = rows
                b.norm = rows
                if wp != NULL:
                    w_sum = 0.0
                    for i in range(rows):
                        w_sum += (<const double*>b.sw)[i] if self.f64 else (<const float*>b.sw)[i]
                    b.norm = w_sum
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


cdef inline Py_ssize_t gathered_values_offset(Py_ssize_t rows, Py_ssize_t nnz,
                                             Py_ssize_t index_size) noexcept nogil:
    # Where the values start in a gathered sparse batch's buffer: after the row pointers
    # and column indices, rounded up to 8 bytes.
    cdef Py_ssize_t size = (rows + 1 + nnz) * index_size
    return (size + 7) // 8 * 8


cdef Py_ssize_t max_batch_nnz(const csr_index* indptr, const Py_ssize_t* perm,
                              Py_ssize_t n, Py_ssize_t batch) noexcept nogil:
    # The most values one batch of `batch` rows stores, the rows taken in the order perm
    # (NULL: in order).
    cdef Py_ssize_t start = 0, stop, i, j, total, best = 0
    while start < n:
        stop = min(start + batch, n)
        total = 0
        if perm == NULL:
            total = indptr[stop] - indptr[start]
        else:
            for i in range(start, stop):
                j = perm[i]
                total += indptr[j + 1] - indptr[j]
        if total > best:
            best = total
        start = stop
    return best


cdef void gather_csr_rows(const csr_index* indptr, const csr_index* indices,
                          const char* data, const Py_ssize_t* rows, Py_ssize_t n,
                          Py_ssize_t isz, csr_index* out_indptr, csr_index* out_indices,
                          char* out_data) noexcept nogil:
    # The sparse batch of rows[0..n) of a CSR matrix: their stored columns and values
    # (isz bytes each) one after the other, out_indptr their n + 1 row pointers.
    cdef Py_ssize_t i, lo, count, pos = 0
    out_indptr[0] = 0
    for i in range(n):
        lo = indptr[rows[i]]
        count = indptr[rows[i] + 1] - lo
        memcpy(out_indices + pos, indices + lo, count * sizeof(csr_index))
        memcpy(out_data + pos * isz, data + lo * isz, count * isz)
        pos += count
        out_indptr[i + 1] = <csr_index>pos


cdef object _raise_status(int status, double loss, Py_ssize_t k):
    if status == BAD_X:
        raise ValueError("X: contains NaN or infinity")
    if status == BAD_Y:
        raise ValueError("Y: contains NaN or infinity")
    if status == BAD_LABEL:
        raise ValueError(f"Y: class labels must be integers in [0, {k})")
    if status == DIVERGED:
        raise DivergenceError(f"non-finite loss or gradient (loss = {loss}); the "
                              "parameters were left unchanged — lower the learning rate")
    raise RuntimeError(f"unknown status {status}")


include "_kernel_entry.pxi"
