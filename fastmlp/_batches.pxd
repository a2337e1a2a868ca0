# The batches of an epoch: what one training step reads (Batch), and how the epoch loop
# (Engine.fit_epoch, _engine.pxi) makes each one from the epoch's rows — a view of the
# next rows when the epoch runs in order, or those rows gathered into preallocated
# buffers when it is shuffled (sparse rows: their stored values only).

from libc.stdint cimport int32_t, int64_t
from libc.string cimport memcpy

from fastmlp._pool cimport PARTS_PER_THREAD, part_fn, pool_run, split_threads
from fastmlp._sparse cimport CSR, copy_csr_rows, csr_rows, gathered_csr_indptr


cdef struct Batch:
    const void* X            # (n, d0), or NULL when the rows are sparse
    const CSR* csr           # the rows when sparse, else NULL
    const void* Y            # (n, dL) or NULL when labels are given
    const int64_t* labels    # (n,) or NULL
    const void* sw           # (n,) sample weights or NULL
    Py_ssize_t n
    double norm              # Σ sample weights, or n


cdef struct EpochRows:
    # All n rows of an epoch, each source NULL when absent (X when the rows are sparse, Y
    # when labels are given, …), and for a shuffled epoch (perm not NULL) the buffers its
    # batches are gathered into, each the source's dtype.  rows_csr: where a sparse
    # batch's rows are described (a view into csr, or the gathered rows).
    const char* X            # (n, d0)
    const CSR* csr
    const char* Y            # (n, k)
    const int64_t* labels    # (n,)
    const char* sw           # (n,) of the model's dtype
    const Py_ssize_t* perm   # (n,) row order, or NULL: in order
    Py_ssize_t d0, k, isz
    bint f64
    Py_ssize_t max_nnz       # sparse rows: the most stored values of a batch
    char* bx                 # (batch, d0)
    char* by                 # (batch, k)
    int64_t* bl              # (batch,)
    char* bw                 # (batch,)
    CSR* rows_csr


# Bytes of a shuffled batch's rows of X (dense, or a sparse X's stored columns and
# values) that pay for one more thread in its gather.  A batch's rows are scattered over
# the data set, so the copy waits on memory, and a second core doubles the requests in
# flight: 128 rows × 784 float32 (392 KB) are gathered once per step of an mnist-like
# epoch.
cdef enum:
    GATHER_GRAIN = 131072


cdef inline void run_by_rows(part_fn fn, void* ctx, Py_ssize_t* chunk, Py_ssize_t rows,
                             int threads) noexcept nogil:
    # fn over ranges of the batch's rows, *chunk rows each (fn reads it): one range on the
    # calling thread below two threads, else PARTS_PER_THREAD per thread over the pool.
    if threads < 2:
        chunk[0] = rows
        fn(ctx, 0)
        return
    chunk[0] = (rows + threads * PARTS_PER_THREAD - 1) // (threads * PARTS_PER_THREAD)
    pool_run(fn, ctx, <int>((rows + chunk[0] - 1) // chunk[0]), threads, False)


cdef struct GatherJob:
    char* dst
    const char* src
    const Py_ssize_t* perm
    Py_ssize_t rows, row_bytes, chunk


cdef inline void gather_part(void* ctx, int part) noexcept nogil:
    cdef GatherJob* j = <GatherJob*>ctx
    cdef Py_ssize_t i, lo = part * j.chunk
    cdef Py_ssize_t hi = lo + j.chunk if lo + j.chunk < j.rows else j.rows
    for i in range(lo, hi):
        memcpy(j.dst + i * j.row_bytes, j.src + j.perm[i] * j.row_bytes, j.row_bytes)


cdef inline void gather_rows(char* dst, const char* src, const Py_ssize_t* perm,
                             Py_ssize_t rows, Py_ssize_t row_bytes) noexcept nogil:
    # Row i of dst (rows of row_bytes bytes) = row perm[i] of src, for i < rows; split by
    # ranges of rows over fastmlp's workers once large enough (split_threads).
    cdef GatherJob j
    cdef int threads = split_threads(rows * row_bytes, GATHER_GRAIN)
    j.dst = dst
    j.src = src
    j.perm = perm
    j.rows = rows
    j.row_bytes = row_bytes
    run_by_rows(gather_part, &j, &j.chunk, rows, threads)


cdef struct SparseGatherJob:
    const CSR* src
    CSR* dst
    const Py_ssize_t* perm
    Py_ssize_t isz, rows, chunk


cdef inline void sparse_gather_part(void* ctx, int part) noexcept nogil:
    cdef SparseGatherJob* j = <SparseGatherJob*>ctx
    cdef Py_ssize_t lo = part * j.chunk
    cdef Py_ssize_t hi = lo + j.chunk if lo + j.chunk < j.rows else j.rows
    if j.src.idx64:
        copy_csr_rows(<const int64_t*>j.src.indptr, <const int64_t*>j.src.indices,
                      <const char*>j.src.data, j.perm, lo, hi, j.isz,
                      <const int64_t*>j.dst.indptr, <int64_t*>j.dst.indices,
                      <char*>j.dst.data)
    else:
        copy_csr_rows(<const int32_t*>j.src.indptr, <const int32_t*>j.src.indices,
                      <const char*>j.src.data, j.perm, lo, hi, j.isz,
                      <const int32_t*>j.dst.indptr, <int32_t*>j.dst.indices,
                      <char*>j.dst.data)


cdef inline void gather_sparse_rows(const CSR* src, const Py_ssize_t* perm, Py_ssize_t rows,
                                    Py_ssize_t isz, CSR* dst) noexcept nogil:
    # dst (its buffers large enough) = rows perm[0..rows) of src, one after the other:
    # their row pointers first, then their columns and values split by ranges of rows
    # over fastmlp's workers once large enough, as gather_rows.
    cdef SparseGatherJob j
    cdef Py_ssize_t nnz
    cdef int threads
    if src.idx64:
        nnz = gathered_csr_indptr(<const int64_t*>src.indptr, perm, rows,
                                  <int64_t*>dst.indptr)
    else:
        nnz = gathered_csr_indptr(<const int32_t*>src.indptr, perm, rows,
                                  <int32_t*>dst.indptr)
    threads = split_threads(
        nnz * (isz + (sizeof(int64_t) if src.idx64 else sizeof(int32_t))), GATHER_GRAIN)
    j.src = src
    j.dst = dst
    j.perm = perm
    j.isz = isz
    j.rows = rows
    run_by_rows(sparse_gather_part, &j, &j.chunk, rows, threads)


cdef inline void batch_weights(const char* sw, const Py_ssize_t* perm, Py_ssize_t start,
                               Py_ssize_t rows, Py_ssize_t isz, bint f64, char* bw,
                               Batch* b) noexcept nogil:
    # b.sw and b.norm for the epoch's rows [start, start + rows) in its order: sw (n,) of
    # the model's dtype, or NULL (no weights: norm = rows); a shuffled epoch's (perm not
    # NULL) gathered into bw (rows,).
    cdef Py_ssize_t i
    cdef double w_sum = 0.0
    b.norm = rows
    b.sw = NULL
    if sw == NULL:
        return
    if perm == NULL:
        b.sw = sw + start * isz
    else:
        for i in range(rows):
            memcpy(bw + i * isz, sw + perm[start + i] * isz, isz)
        b.sw = bw
    for i in range(rows):
        w_sum += (<const double*>b.sw)[i] if f64 else (<const float*>b.sw)[i]
    b.norm = w_sum


cdef inline void epoch_batch(const EpochRows* e, Py_ssize_t start, Py_ssize_t rows,
                             Batch* b) noexcept nogil:
    # b: the epoch's rows [start, start + rows) in its order, and their weight Σw.
    cdef Py_ssize_t i, j, d0 = e.d0, k = e.k, isz = e.isz
    b.csr = NULL if e.csr == NULL else e.rows_csr
    if e.perm == NULL:
        b.X = NULL if e.X == NULL else e.X + start * d0 * isz
        if e.csr != NULL:
            csr_rows(e.csr, start, e.rows_csr)
        b.Y = NULL if e.Y == NULL else e.Y + start * k * isz
        b.labels = NULL if e.labels == NULL else e.labels + start
    else:
        if e.X != NULL:
            gather_rows(e.bx, e.X, e.perm + start, rows, d0 * isz)
        for i in range(rows):
            j = e.perm[start + i]
            if e.Y != NULL:
                memcpy(e.by + i * k * isz, e.Y + j * k * isz, k * isz)
            else:
                e.bl[i] = e.labels[j]
        if e.csr != NULL:
            gather_sparse_rows(e.csr, e.perm + start, rows, isz, e.rows_csr)
        b.X = e.bx
        b.Y = e.by
        b.labels = e.bl
    b.n = rows
    batch_weights(e.sw, e.perm, start, rows, isz, e.f64, e.bw, b)
