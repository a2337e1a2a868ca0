# Sparse input (CSR), one job: the first layer's two products, the structure check
# SparseRows (_sparse_rows.pxi) runs once, and the gather of a shuffled batch's rows.

from cython cimport floating
from libc.stdint cimport int32_t, int64_t
from libc.string cimport memcpy, memset

# The first layer's two products when X is a CSR matrix: its row i holds the values
# data[p] in the columns indices[p] for p in [indptr[i], indptr[i+1]).  indptr may start
# anywhere (a slice of the rows of a larger matrix).  Column indices are int32 or int64
# (scipy's two index types), read in place.  The loops are written out rather than handed
# to a sparse BLAS: each stored value is one axpy over a contiguous row of W or Δ
# (d_out values), which the compiler vectorises, and a BLAS call per value would cost
# more than the row it adds.

ctypedef fused csr_index:
    int32_t
    int64_t


cdef inline void csr_linear_forward(const floating* data, const csr_index* indices,
                                    const csr_index* indptr, Py_ssize_t n,
                                    const floating* W, const floating* b, Py_ssize_t d_out,
                                    floating* Z) noexcept nogil:
    # Z = X·W + 1·bᵀ (seed 003, Z = X·W + b) for X (n, d_in) in CSR: row i of Z is the
    # sum of v·W[j, :] over row i's stored (j, v) — nnz·d_out multiply-adds, not
    # n·d_in·d_out.  The bias is added after the sum and the values in stored order:
    # scipy's CSR product followed by scikit-learn's += intercept, to the rounding.
    cdef Py_ssize_t i, k, p
    cdef floating v
    cdef floating* z
    cdef const floating* w
    for i in range(n):
        z = Z + i * d_out
        memset(z, 0, d_out * sizeof(floating))
        for p in range(indptr[i], indptr[i + 1]):
            v = data[p]
            w = W + <Py_ssize_t>indices[p] * d_out
            for k in range(d_out):
                z[k] += v * w[k]
        for k in range(d_out):
            z[k] += b[k]


cdef inline void csr_transposed_accumulate(const floating* data, const csr_index* indices,
                                           const csr_index* indptr, Py_ssize_t n,
                                           const floating* D, Py_ssize_t d_out,
                                           floating* dW) noexcept nogil:
    # dW += Xᵀ·Δ for X (n, d_in) in CSR and Δ (n, d_out) (seed 003 eq. 33,
    # dW(1) = (1/N)·Xᵀ·Δ(1); the 1/N is in Δ or in the update, as for linear_backward):
    # dW[j, :] += v·Δ[i, :] for each stored (i, j, v), rows i in order — scipy's order
    # for Xᵀ·Δ.  Only the rows of dW whose column occurs in X change; the caller zeroes
    # them first (csr_touched_rows finds them).
    cdef Py_ssize_t i, k, p
    cdef floating v
    cdef floating* g
    cdef const floating* d
    for i in range(n):
        d = D + i * d_out
        for p in range(indptr[i], indptr[i + 1]):
            v = data[p]
            g = dW + <Py_ssize_t>indices[p] * d_out
            for k in range(d_out):
                g[k] += v * d[k]


cdef inline Py_ssize_t csr_touched_rows(const csr_index* indices, const csr_index* indptr,
                                        Py_ssize_t n, unsigned char* seen,
                                        Py_ssize_t* rows) noexcept nogil:
    # The distinct columns of X's n rows — the rows of W(1) and dW(1) a sparse batch
    # reaches (seed 003 eq. 33: a column of X that is all zero gives a zero row of dW(1))
    # — into rows, in order of first appearance; returns their count.  seen: one flag
    # per column of X, all 0 on entry; on return 1 for the
    # listed columns (the caller resets them through the list).
    cdef Py_ssize_t p, j, count = 0
    for p in range(indptr[0], indptr[n]):
        j = indices[p]
        if not seen[j]:
            seen[j] = 1
            rows[count] = j
            count += 1
    return count


cdef struct CSR:
    # Rows of a sparse X (see this file's header): row i's values are
    # data[indptr[i]:indptr[i+1]] in the columns indices[…]; checked by SparseRows.
    const void* data         # model dtype
    const void* indices      # int32, or int64 if idx64
    const void* indptr       # n + 1 values of the indices' type
    bint idx64


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


cdef inline bint csr_structure_ok(const csr_index* indptr, const csr_index* indices,
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


cdef inline void csr_rows(const CSR* x, Py_ssize_t start, CSR* out) noexcept nogil:
    # out: the rows of x from `start` on (the stored values stay where they are).
    out[0] = x[0]
    out.indptr = <const char*>x.indptr + start * (8 if x.idx64 else 4)


cdef inline Py_ssize_t gathered_values_offset(Py_ssize_t rows, Py_ssize_t nnz,
                                             Py_ssize_t index_size) noexcept nogil:
    # Where the values start in a gathered sparse batch's buffer: after the row pointers
    # and column indices, rounded up to 8 bytes.
    cdef Py_ssize_t size = (rows + 1 + nnz) * index_size
    return (size + 7) // 8 * 8


cdef inline Py_ssize_t max_batch_nnz(const csr_index* indptr, const Py_ssize_t* perm,
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


cdef inline Py_ssize_t gathered_csr_indptr(const csr_index* indptr,
                                           const Py_ssize_t* rows, Py_ssize_t n,
                                           csr_index* out_indptr) noexcept nogil:
    # The n + 1 row pointers of the sparse batch of rows[0..n) of a CSR matrix, their
    # stored values one after the other; returns how many values that is.
    cdef Py_ssize_t i, pos = 0
    out_indptr[0] = 0
    for i in range(n):
        pos += indptr[rows[i] + 1] - indptr[rows[i]]
        out_indptr[i + 1] = <csr_index>pos
    return pos


cdef inline void copy_csr_rows(const csr_index* indptr, const csr_index* indices,
                               const char* data, const Py_ssize_t* rows, Py_ssize_t lo,
                               Py_ssize_t hi, Py_ssize_t isz, const csr_index* out_indptr,
                               csr_index* out_indices, char* out_data) noexcept nogil:
    # Rows lo..hi of that batch (out_indptr from gathered_csr_indptr): their stored
    # columns and values (isz bytes each).
    cdef Py_ssize_t i, src, pos, count
    for i in range(lo, hi):
        src = indptr[rows[i]]
        pos = out_indptr[i]
        count = out_indptr[i + 1] - pos
        memcpy(out_indices + pos, indices + src, count * sizeof(csr_index))
        memcpy(out_data + pos * isz, data + src * isz, count * isz)
