# The BLAS routines of the core, and their row-major wrappers.
#
# The routines are called through a table of addresses so that a faster library than
# scipy's OpenBLAS can be swapped in at run time (fastmlp/blas.py, through
# _core._set_blas); scipy's cython_blas is the default and the fallback.  All use the
# Fortran interface with 32-bit integers.  The table is C's own static array: this file is
# cimported by the one module, _core, so there is exactly one table.

from cython cimport floating

cdef extern from *:
    """
    static void *fastmlp_blas_table[6];
    """
    void* blas_table "fastmlp_blas_table"[6]

# Slots of blas_table, in the order of _core._set_blas's arguments.
cdef enum:
    SGEMM = 0
    DGEMM = 1
    SGEMV = 2
    DGEMV = 3
    SGER = 4
    DGER = 5

ctypedef void (*sgemm_t)(char*, char*, int*, int*, int*, float*, float*, int*, float*, int*,
                         float*, float*, int*) noexcept nogil
ctypedef void (*dgemm_t)(char*, char*, int*, int*, int*, double*, double*, int*, double*,
                         int*, double*, double*, int*) noexcept nogil
ctypedef void (*sgemv_t)(char*, int*, int*, float*, float*, int*, float*, int*, float*,
                         float*, int*) noexcept nogil
ctypedef void (*dgemv_t)(char*, int*, int*, double*, double*, int*, double*, int*, double*,
                         double*, int*) noexcept nogil
ctypedef void (*sger_t)(int*, int*, float*, float*, int*, float*, int*, float*,
                        int*) noexcept nogil
ctypedef void (*dger_t)(int*, int*, double*, double*, int*, double*, int*, double*,
                        int*) noexcept nogil


cdef inline void gemm(bint trans_a, bint trans_b, int m, int n, int k, floating alpha,
                      const floating* a, int lda, const floating* b, int ldb,
                      floating beta, floating* c, int ldc) noexcept nogil:
    # Row-major C (m, n) = alpha·op(A)·op(B) + beta·C.  A row-major matrix read as
    # column-major is its transpose, so BLAS computes Cᵀ = op(B)ᵀ·op(A)ᵀ with the
    # operands swapped: no copies, no layout conversion.
    cdef char ta = b'T' if trans_b else b'N'
    cdef char tb = b'T' if trans_a else b'N'
    if floating is float:
        (<sgemm_t>blas_table[SGEMM])(&ta, &tb, &n, &m, &k, &alpha, <float*>b, &ldb,
                                     <float*>a, &lda, &beta, c, &ldc)
    else:
        (<dgemm_t>blas_table[DGEMM])(&ta, &tb, &n, &m, &k, &alpha, <double*>b, &ldb,
                                     <double*>a, &lda, &beta, c, &ldc)


cdef inline void gemv(bint trans, int m, int n, floating alpha, const floating* a, int lda,
                      const floating* x, floating beta, floating* y) noexcept nogil:
    # Row-major y = alpha·op(A)·x + beta·y for A (m, n): column-major BLAS on Aᵀ, so the
    # transpose flag flips.  A batch of one row turns each layer's GEMM into this or ger,
    # whose call overhead is a fraction of gemm's.
    cdef char t = b'N' if trans else b'T'
    cdef int one = 1
    if floating is float:
        (<sgemv_t>blas_table[SGEMV])(&t, &n, &m, &alpha, <float*>a, &lda, <float*>x, &one,
                                     &beta, y, &one)
    else:
        (<dgemv_t>blas_table[DGEMV])(&t, &n, &m, &alpha, <double*>a, &lda, <double*>x,
                                     &one, &beta, y, &one)


cdef inline void ger(int m, int n, floating alpha, const floating* x, const floating* y,
                     floating* a, int lda) noexcept nogil:
    # Row-major A (m, n) += alpha·x·yᵀ, as the column-major update of Aᵀ.
    cdef int one = 1
    if floating is float:
        (<sger_t>blas_table[SGER])(&n, &m, &alpha, <float*>y, &one, <float*>x, &one, a, &lda)
    else:
        (<dger_t>blas_table[DGER])(&n, &m, &alpha, <double*>y, &one, <double*>x, &one, a,
                                   &lda)
