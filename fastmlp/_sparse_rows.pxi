# SparseRows, a CSR matrix checked once for the core (included by _core.pyx: a class must
# be compiled into the module; its kernels are in _sparse.pxd).

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
