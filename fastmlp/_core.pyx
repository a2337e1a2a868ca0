"""Compiled core of fastmlp: the network-level passes over the kernels, and the objects
Python drives them through.

Layout is row-major throughout (seed 003): a batch X is (n, d0), W(l) is (d(l-1), d(l)),
Z(l) = A(l-1)·W(l) + b(l).  The kernels live in the .pxd files beside this one, split by
job — _blas (BLAS calls), _fmath (float helpers and checks), _layers (linear map,
activations, backpropagation products), _sparse (CSR input: its products, checks and
gather), _batches (a step's batch, and an epoch's batches made from its rows), _losses
(output losses and deltas), _optim (update rules) — and the network-level code in the
.pxi files this one includes, one job each:

- here: the status codes, the BLAS table, the workspace limit, ``Layout`` (where each
  parameter lives in the flat buffer, and every size that follows from the layer widths)
  and the structs the passes share (Net, Scratch; Batch is _batches.pxd's);
- ``_passes.pxi``: ``forward_pass``, the output loss, the L2 penalty, ``backward_pass``;
- ``_update.pxi``: the optimizer's passes over the flat buffer, segment by segment;
- ``_split.pxi``: element-wise passes split over fastmlp's sleeping worker pool
  (_pool.pxd, _pool.h), with the same bits at every thread count;
- ``_step.pxi``: ``train_step``, one whole step over a batch;
- ``_sparse_rows.pxi``: ``SparseRows``, a CSR matrix checked once for the core;
- ``_network.pxi``: ``Network``, the parameters and the forward pass (all prediction
  needs);
- ``_engine.pxi``: ``Engine``, a Network plus gradient, loss, optimizer and training
  workspace, and the GIL-free epoch loop;
- ``_stack.pxi``: ``Stack``, engines of one input width, output width, loss and dtype
  trained on the same batches, each batch gathered once for all;
- ``_pieces.pxi``: ``run_pieces``, the pieces of one call (groups of models) side by side
  on the worker pool;
- ``_kernel_entry.pxi``: the single-kernel entry points of fastmlp.kernels.

The .pxi files are included, not cimported: the classes and the non-inline passes must be
compiled into this one module (one translation unit, so that gcc inlines across them as
before the split), and a .pxd can hold only declarations and inline functions.  They use
this file's cimports.

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
from libc.math cimport INFINITY, sqrt
from libc.string cimport memcpy, memset
from cpython.ref cimport PyObject
from scipy.linalg.cython_blas cimport dgemm, dgemv, dger, sgemm, sgemv, sger

cimport numpy as cnp

import numpy as np

from fastmlp.errors import DivergenceError

from fastmlp._blas cimport (BLAS_LIBS, DGEMM, DGEMV, DGER, FLOPS_PER_THREAD, SGEMM, SGEMV,
                            SGER, blas_active, blas_libs, blas_serial, call_begin, call_end,
                            get_threads_t, gemm, ger, pool_spin_ns, set_threads_t,
                            split_products, thread_limit, thread_share)
from fastmlp._fmath cimport all_finite, labels_in_range, max_abs, weights_valid
from fastmlp._layers cimport (C_ACT_ELU, C_ACT_EXP, C_ACT_GELU, C_ACT_IDENTITY,
                              C_ACT_LEAKY_RELU, C_ACT_LOGISTIC, C_ACT_RELU, C_ACT_SILU,
                              C_ACT_SOFTMAX, C_ACT_SOFTPLUS, C_ACT_TANH, ELU_ALPHA,
                              LEAKY_RELU_SLOPE, activation_backward, activation_forward,
                              activation_max_slope, activation_needs_z, backprop_delta,
                              add_bias_block, backprop_product, column_sums,
                              column_sums_range, copy_block,
                              dropout_backward, dropout_forward, linear_backward,
                              linear_forward, linear_weight_gradient, relu_forward,
                              relu_mask_delta, softmax_rows)
from fastmlp._sparse cimport (CSR, csr_index, csr_linear_forward, csr_rows,
                              csr_structure_ok, csr_touched_rows, csr_transposed_accumulate,
                              gathered_values_offset, max_batch_nnz,
                              sparse_linear_forward, sparse_weight_gradient)
from fastmlp._batches cimport Batch, EpochRows, batch_weights, epoch_batch
from fastmlp._pool cimport (part_size, pool_cpus, pool_helped, pool_no_backoff, pool_run,
                            pool_run_long, pool_workers, split_scale, split_threads)
from fastmlp._losses cimport (C_LOSS_MSE, C_LOSS_SK_BINARY_LOG, C_LOSS_SK_LOG,
                              C_LOSS_SK_POISSON, C_LOSS_SK_SQUARED, C_LOSS_SOFTMAX_XENT,
                              MAX_LOSS_BLOCKS, loss_block_rows, loss_delta, loss_rows,
                              loss_total, mse_loss_delta, sk_loss_delta,
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
              bint serial=False, bint splits=True):
    """Make the core call the BLAS library in table ``slot`` (0: scipy's cython_blas);
    used by fastmlp.blas only.  With ``serial``, make it the library of the products too
    small for two threads instead (slot -1: none, all products go to the active one).

    ``addresses``, if given, first fill that table: the Fortran-interface sgemm, dgemm,
    sgemv, dgemv, sger and dger of a library that stays loaded for the life of the process,
    taking 64-bit integers if ``ilp64`` else 32-bit ones, and ``threads``, for a library
    only fastmlp calls, the addresses of its ``void set(int)`` and ``int get(void)``
    thread-count functions (the core then picks each call's thread count), and ``splits``,
    whether its large products may be split over fastmlp's own workers, each part on the
    serial library (an OpenBLAS: not for MKL).  fastmlp.blas resolves and checks them.
    The table in use is never refilled, so a step running in another thread always calls
    one whole library.
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
        blas_libs[slot].splits = splits
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


def _set_split_scale(double scale):
    """Multiply every split pass's grain by ``scale`` (default 1; 0 splits passes of any
    size over the thread limit, and every one wakes the workers, without the pool's
    back-off): for the tests of the split passes, _split.pxi."""
    global split_scale, pool_no_backoff
    if not scale >= 0:
        raise ValueError(f"scale: expected a number >= 0, got {scale}")
    split_scale = scale
    pool_no_backoff = scale == 0


def _set_pool_spin(double seconds):
    """How long a BLAS pool's workers spin after a product fastmlp sent there (see
    fastmlp.threads): within that time no pass splits over fastmlp's own workers."""
    global pool_spin_ns
    if not seconds >= 0:
        raise ValueError(f"seconds: expected a number >= 0, got {seconds}")
    pool_spin_ns = <int64_t>(seconds * 1e9)


def _set_split_products(bint on):
    """Whether products for two threads or more are split over fastmlp's own workers
    (_split_gemm.h; default on) rather than sent to the active library's thread pool
    (fastmlp.threads.set_split_products)."""
    global split_products
    split_products = on


def _get_split_products():
    return bool(split_products)


def pool_threads():
    """How many worker threads fastmlp's pool has started (_pool.h; 0 until a pass or a
    product first splits)."""
    return pool_workers()


def pool_parts_helped():
    """How many parts of split passes fastmlp's workers (not the calling threads) have
    run in this process (_pool.h)."""
    return pool_helped()


blas_libs[0].fn[SGEMM] = <void*>sgemm
blas_libs[0].fn[DGEMM] = <void*>dgemm
blas_libs[0].fn[SGEMV] = <void*>sgemv
blas_libs[0].fn[DGEMV] = <void*>dgemv
blas_libs[0].fn[SGER] = <void*>sger
blas_libs[0].fn[DGER] = <void*>dger
blas_libs[0].ilp64 = False
blas_libs[0].set_threads = NULL
blas_libs[0].get_threads = NULL
blas_libs[0].splits = True       # scipy's wheels bundle OpenBLAS


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


cdef struct StepTarget:
    # What one training step works on: an Engine's network, optimizer, buffers and
    # workspace, as plain pointers, so that a GIL-free loop can step many engines
    # (Stack, _stack.pxi).  Valid while the engine lives and its workspace is not
    # reallocated (Engine._reserve).
    const Net* net
    Optim* opt
    void* theta
    void* grad
    Scratch* s
    void* da
    void* db
    bint f64


cdef struct FirstLayer:
    # A step whose first layer is computed for a whole stack at once (_stack_first.pxi):
    # this model's column block of the stack's X·[W(1)…] (n, ld; the model adds its own
    # bias), and of the stack's Δ(1), which its backward pass fills for the one product
    # Xᵀ·[Δ(1)…].
    const void* z
    void* d
    Py_ssize_t ld


# --------------------------------------------------------------------------------------
# Whole-network passes over the flat parameter buffer: forward and backward, the
# optimizer's update, the step
# --------------------------------------------------------------------------------------

include "_passes.pxi"
include "_update.pxi"
include "_split.pxi"
include "_step.pxi"
include "_stack_first.pxi"


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


cdef bint _weights_nonnegative(cnp.ndarray w):
    # Every value of w (float32 or float64, contiguous: _is_carray) finite and >= 0.
    cdef void* p = cnp.PyArray_DATA(w)
    cdef Py_ssize_t n = w.size
    with nogil:
        if cnp.PyArray_TYPE(w) == cnp.NPY_FLOAT64:
            return weights_valid(<const double*>p, n)
        return weights_valid(<const float*>p, n)


include "_sparse_rows.pxi"
include "_network.pxi"
include "_engine.pxi"
include "_stack.pxi"
include "_pieces.pxi"


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
