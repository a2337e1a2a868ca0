# The BLAS routines of the core, and their row-major wrappers.
#
# The routines are called through a table of addresses so that another library than
# scipy's OpenBLAS can be swapped in at run time (fastmlp/blas.py, through _core._set_blas);
# scipy's cython_blas is the default and the fallback.  All use the Fortran interface, with
# 32-bit integers (LP64) or, for numpy's own OpenBLAS, 64-bit ones (ILP64).  Each library
# has its own filled-in table, and switching is one pointer store (blas_active, and
# blas_serial for the small calls, see fastmlp_blas_for), so a call racing a switch sees
# one whole library, never one library's routine with another's integer width.  The
# tables are C statics: this file is cimported by the one module, _core, so there is
# exactly one of each.

from cython cimport floating
from libc.stdint cimport int64_t

ctypedef void (*set_threads_t)(int) noexcept nogil
ctypedef int (*get_threads_t)() noexcept nogil

cdef extern from *:
    """
    #include <time.h>
    /* Slots of a library's routine table, in the order of _core._set_blas's arguments. */
    enum { FASTMLP_SGEMM, FASTMLP_DGEMM, FASTMLP_SGEMV, FASTMLP_DGEMV, FASTMLP_SGER,
           FASTMLP_DGER };
    typedef struct {
        void *fn[6];
        int ilp64;
        /* The library's thread-count setter and getter, for a library that only fastmlp
           calls; NULL for one shared with numpy or scipy, whose count is the user's. */
        void (*set_threads)(int);
        int (*get_threads)(void);
        /* Its products for two threads or more may be split over fastmlp's own workers,
           each part on the serial library (_split_gemm.h): an OpenBLAS, which the serial
           one matches; not MKL. */
        int splits;
    } fastmlp_blas_lib;
    static fastmlp_blas_lib fastmlp_blas_libs[4];
    static fastmlp_blas_lib *volatile fastmlp_blas_active = &fastmlp_blas_libs[0];
    static fastmlp_blas_lib *volatile fastmlp_blas_serial = NULL;

    /* The most threads fastmlp's BLAS calls may use (fastmlp.threads), and the compiled
       calls running now in all Python threads, which share that many. */
    static int fastmlp_thread_limit = 0;   /* 0: not set yet, one thread */
    /* Work (floating-point operations) that pays for one more BLAS thread: on 2-vCPU VMs
       (bench/README.md, "Threads") a product of 2·m·n·k below about 4 million ran no
       faster on two threads than on one, and often far slower. */
    static const double fastmlp_flops_per_thread = 4e6;
    static int fastmlp_calls_running = 0;

    /* When a product last went to a library's thread pool (CLOCK_MONOTONIC, ns), and how
       long that pool's workers then keep spinning on the other cores (OpenBLAS:
       2^OPENBLAS_THREAD_TIMEOUT cycles, ~0.1 s by default; set by fastmlp.threads).
       A pass split over fastmlp's own workers in that window cannot win: they cannot
       preempt the spinning workers (fastmlp_pooled_workers_spinning, _pool.pxd). */
    static int64_t fastmlp_pooled_at_ns = -(int64_t)1 << 62;
    static int64_t fastmlp_pool_spin_ns = 107000000;

    static inline int64_t fastmlp_clock_ns(void) {
        struct timespec t;
        clock_gettime(CLOCK_MONOTONIC, &t);
        return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
    }
    static inline int fastmlp_pooled_workers_spinning(void) {
        return fastmlp_clock_ns() - __atomic_load_n(&fastmlp_pooled_at_ns, __ATOMIC_RELAXED)
               < fastmlp_pool_spin_ns;
    }

    /* The limit's getter and setter as exported C symbols, which threadpoolctl's
       controller for fastmlp (fastmlp/threads.py) calls through ctypes. */
    int fastmlp_get_num_threads(void) { return fastmlp_thread_limit; }
    void fastmlp_set_num_threads(int n) { fastmlp_thread_limit = n >= 1 ? n : 1; }

    static void fastmlp_call_begin(void) {
        __atomic_add_fetch(&fastmlp_calls_running, 1, __ATOMIC_RELAXED);
    }
    static void fastmlp_call_end(void) {
        __atomic_sub_fetch(&fastmlp_calls_running, 1, __ATOMIC_RELAXED);
    }

    /* The library for one BLAS call of `flops` floating-point operations, its thread count
       set if fastmlp owns it.  One more thread pays only past fastmlp_flops_per_thread: a
       worker woken for less costs more than it saves, and on a busy machine may wait a
       whole scheduler slice.  A call too small for two threads, or left one thread by
       sharing the limit with fastmlp calls in other Python threads, goes to the serial
       library (one only fastmlp calls, kept at one thread), so it wakes no pool at all;
       larger ones go to the active library, by default numpy's own. */
    /* The threads one compiled call may use now: the limit shared among the calls
       running (the products here, and the split passes of _pool.pxd). */
    static int fastmlp_thread_share(void) {
        int running = __atomic_load_n(&fastmlp_calls_running, __ATOMIC_RELAXED);
        return fastmlp_thread_limit / (running > 1 ? running : 1);
    }

    /* Threads a product of `flops` earns, at most `share`: one per
       fastmlp_flops_per_thread (below one: 0). */
    static int fastmlp_product_threads(double flops, int share) {
        return flops < fastmlp_flops_per_thread * share
               ? (int)(flops / fastmlp_flops_per_thread) : share;
    }

    static fastmlp_blas_lib *fastmlp_blas_for(double flops) {
        fastmlp_blas_lib *lib = fastmlp_blas_active, *serial = fastmlp_blas_serial;
        int want = fastmlp_product_threads(flops, fastmlp_thread_share());
        if (want < 2 && serial != NULL) lib = serial;
        if (want < 1) want = 1;
        if (want >= 2) __atomic_store_n(&fastmlp_pooled_at_ns, fastmlp_clock_ns(), __ATOMIC_RELAXED);
        if (lib->set_threads != NULL && want != lib->get_threads()) lib->set_threads(want);
        return lib;
    }

    /* Row-major C (m, n) = alpha·op(A)·op(B) + beta·C through lib's Fortran sgemm
       (f64 = 0) or dgemm.  A row-major matrix read as column-major is its transpose, so
       BLAS computes Cᵀ = op(B)ᵀ·op(A)ᵀ with the operands swapped: no copies, no layout
       conversion.  alpha and beta come from the model dtype, so a float32 one passes
       through double unchanged. */
    typedef void (*fastmlp_sgemm32)(char *, char *, int *, int *, int *, float *,
                                    float *, int *, float *, int *, float *, float *,
                                    int *);
    typedef void (*fastmlp_dgemm32)(char *, char *, int *, int *, int *, double *,
                                    double *, int *, double *, int *, double *, double *,
                                    int *);
    typedef void (*fastmlp_sgemm64)(char *, char *, int64_t *, int64_t *, int64_t *,
                                    float *, float *, int64_t *, float *, int64_t *,
                                    float *, float *, int64_t *);
    typedef void (*fastmlp_dgemm64)(char *, char *, int64_t *, int64_t *, int64_t *,
                                    double *, double *, int64_t *, double *, int64_t *,
                                    double *, double *, int64_t *);
    static inline void fastmlp_blas_gemm(const fastmlp_blas_lib *lib, int f64, int trans_a,
                                         int trans_b, int m, int n, int k, double alpha,
                                         const void *a, int lda, const void *b, int ldb,
                                         double beta, void *c, int ldc) {
        char ta = trans_b ? 'T' : 'N', tb = trans_a ? 'T' : 'N';
        float sa = (float)alpha, sb = (float)beta;
        if (lib->ilp64) {
            int64_t m8 = m, n8 = n, k8 = k, lda8 = lda, ldb8 = ldb, ldc8 = ldc;
            if (f64)
                ((fastmlp_dgemm64)lib->fn[FASTMLP_DGEMM])(&ta, &tb, &n8, &m8, &k8, &alpha, (double *)b,
                                              &ldb8, (double *)a, &lda8, &beta,
                                              (double *)c, &ldc8);
            else
                ((fastmlp_sgemm64)lib->fn[FASTMLP_SGEMM])(&ta, &tb, &n8, &m8, &k8, &sa, (float *)b,
                                              &ldb8, (float *)a, &lda8, &sb, (float *)c,
                                              &ldc8);
        } else if (f64) {
            ((fastmlp_dgemm32)lib->fn[FASTMLP_DGEMM])(&ta, &tb, &n, &m, &k, &alpha, (double *)b, &ldb,
                                          (double *)a, &lda, &beta, (double *)c, &ldc);
        } else {
            ((fastmlp_sgemm32)lib->fn[FASTMLP_SGEMM])(&ta, &tb, &n, &m, &k, &sa, (float *)b, &ldb,
                                          (float *)a, &lda, &sb, (float *)c, &ldc);
        }
    }
    """
    ctypedef struct BlasLib "fastmlp_blas_lib":
        void* fn[6]
        bint ilp64
        set_threads_t set_threads
        get_threads_t get_threads
        bint splits
    BlasLib blas_libs "fastmlp_blas_libs"[4]
    BlasLib* blas_active "fastmlp_blas_active"
    BlasLib* blas_serial "fastmlp_blas_serial"
    int thread_limit "fastmlp_thread_limit"
    int calls_running "fastmlp_calls_running"
    void call_begin "fastmlp_call_begin"() noexcept nogil
    void call_end "fastmlp_call_end"() noexcept nogil
    const double FLOPS_PER_THREAD "fastmlp_flops_per_thread"
    BlasLib* blas_for "fastmlp_blas_for"(double flops) noexcept nogil
    int64_t pool_spin_ns "fastmlp_pool_spin_ns"
    bint pooled_workers_spinning "fastmlp_pooled_workers_spinning"() noexcept nogil
    int thread_share "fastmlp_thread_share"() noexcept nogil
    void blas_gemm "fastmlp_blas_gemm"(const BlasLib* lib, bint f64, bint trans_a,
                                       bint trans_b, int m, int n, int k, double alpha,
                                       const void* a, int lda, const void* b, int ldb,
                                       double beta, void* c, int ldc) noexcept nogil

cdef extern from "_split_gemm.h" nogil:
    int split_products "fastmlp_split_products"
    int gemm_split_threads "fastmlp_gemm_split_threads"(double flops, int m,
                                                         BlasLib** lib)
    void gemm_split "fastmlp_gemm_split"(const BlasLib* lib, bint f64, bint trans_a,
                                         bint trans_b, int m, int n, int k, double alpha,
                                         const void* a, int lda, const void* b, int ldb,
                                         double beta, void* c, int ldc, int threads)

# How many libraries blas_libs can hold; fastmlp.blas numbers its libraries below this.
cdef enum:
    BLAS_LIBS = 4

# Slots of BlasLib.fn (their home is the C enum above).
cdef extern from *:
    enum:
        SGEMM "FASTMLP_SGEMM"
        DGEMM "FASTMLP_DGEMM"
        SGEMV "FASTMLP_SGEMV"
        DGEMV "FASTMLP_DGEMV"
        SGER "FASTMLP_SGER"
        DGER "FASTMLP_DGER"

ctypedef void (*sgemv_t)(char*, int*, int*, float*, float*, int*, float*, int*, float*,
                         float*, int*) noexcept nogil
ctypedef void (*dgemv_t)(char*, int*, int*, double*, double*, int*, double*, int*, double*,
                         double*, int*) noexcept nogil
ctypedef void (*sger_t)(int*, int*, float*, float*, int*, float*, int*, float*,
                        int*) noexcept nogil
ctypedef void (*dger_t)(int*, int*, double*, double*, int*, double*, int*, double*,
                        int*) noexcept nogil
# The same routines with 64-bit integers.
ctypedef void (*sgemv64_t)(char*, int64_t*, int64_t*, float*, float*, int64_t*, float*,
                           int64_t*, float*, float*, int64_t*) noexcept nogil
ctypedef void (*dgemv64_t)(char*, int64_t*, int64_t*, double*, double*, int64_t*, double*,
                           int64_t*, double*, double*, int64_t*) noexcept nogil
ctypedef void (*sger64_t)(int64_t*, int64_t*, float*, float*, int64_t*, float*, int64_t*,
                          float*, int64_t*) noexcept nogil
ctypedef void (*dger64_t)(int64_t*, int64_t*, double*, double*, int64_t*, double*, int64_t*,
                          double*, int64_t*) noexcept nogil


cdef inline void gemm(bint trans_a, bint trans_b, int m, int n, int k, floating alpha,
                      const floating* a, int lda, const floating* b, int ldb,
                      floating beta, floating* c, int ldc) noexcept nogil:
    # Row-major C (m, n) = alpha·op(A)·op(B) + beta·C (fastmlp_blas_gemm above), split
    # over fastmlp's workers when large enough (_split_gemm.h), else one library call.
    cdef BlasLib* lib
    cdef double flops = 2.0 * m * n * k
    cdef int threads = gemm_split_threads(flops, m, &lib)
    if threads:
        gemm_split(lib, floating is double, trans_a, trans_b, m, n, k, alpha, a, lda, b,
                   ldb, beta, c, ldc, threads)
    else:
        blas_gemm(blas_for(flops), floating is double, trans_a, trans_b, m, n, k, alpha, a,
                  lda, b, ldb, beta, c, ldc)


cdef inline void gemv(bint trans, int m, int n, floating alpha, const floating* a, int lda,
                      const floating* x, floating beta, floating* y) noexcept nogil:
    # Row-major y = alpha·op(A)·x + beta·y for A (m, n): column-major BLAS on Aᵀ, so the
    # transpose flag flips.  A batch of one row turns each layer's GEMM into this or ger,
    # whose call overhead is a fraction of gemm's.
    cdef char t = b'N' if trans else b'T'
    cdef int one = 1
    cdef int64_t m8 = m, n8 = n, lda8 = lda, one8 = 1
    cdef BlasLib* lib = blas_for(2.0 * m * n)
    if lib.ilp64:
        if floating is float:
            (<sgemv64_t>lib.fn[SGEMV])(&t, &n8, &m8, &alpha, <float*>a, &lda8,
                                           <float*>x, &one8, &beta, y, &one8)
        else:
            (<dgemv64_t>lib.fn[DGEMV])(&t, &n8, &m8, &alpha, <double*>a, &lda8,
                                           <double*>x, &one8, &beta, y, &one8)
    elif floating is float:
        (<sgemv_t>lib.fn[SGEMV])(&t, &n, &m, &alpha, <float*>a, &lda, <float*>x, &one,
                                     &beta, y, &one)
    else:
        (<dgemv_t>lib.fn[DGEMV])(&t, &n, &m, &alpha, <double*>a, &lda, <double*>x,
                                     &one, &beta, y, &one)


cdef inline void ger(int m, int n, floating alpha, const floating* x, const floating* y,
                     floating* a, int lda) noexcept nogil:
    # Row-major A (m, n) += alpha·x·yᵀ, as the column-major update of Aᵀ.
    cdef int one = 1
    cdef int64_t m8 = m, n8 = n, lda8 = lda, one8 = 1
    cdef BlasLib* lib = blas_for(2.0 * m * n)
    if lib.ilp64:
        if floating is float:
            (<sger64_t>lib.fn[SGER])(&n8, &m8, &alpha, <float*>y, &one8, <float*>x, &one8,
                                         a, &lda8)
        else:
            (<dger64_t>lib.fn[DGER])(&n8, &m8, &alpha, <double*>y, &one8, <double*>x,
                                         &one8, a, &lda8)
    elif floating is float:
        (<sger_t>lib.fn[SGER])(&n, &m, &alpha, <float*>y, &one, <float*>x, &one, a, &lda)
    else:
        (<dger_t>lib.fn[DGER])(&n, &m, &alpha, <double*>y, &one, <double*>x, &one, a,
                                   &lda)
