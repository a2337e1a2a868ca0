/* Products split over fastmlp's own workers (_pool.h), each part one call of the serial
 * library (fastmlp_blas_serial: an OpenBLAS only fastmlp calls, kept at one thread).
 *
 * Why: a product sent to a threaded BLAS pool (numpy's OpenBLAS) leaves that pool's
 * workers busy-waiting on the other cores for ~0.1 s, and through that window none of
 * the step's element-wise passes can use those cores (the spin rule, _pool.pxd).  Split
 * here, the product's parts run on workers that sleep again when it is done, so the
 * passes between the products get the cores too.  Measured on a 2-vCPU Xeon (AVX-512),
 * the mnist-like step's four largest products split by rows ran in 0.88-1.07x the time of
 * numpy's OpenBLAS at two threads, most within 0.95-1.07x (bench/README.md, "fastmlp's
 * own workers").
 *
 * The parts are bands of rows of the row-major C: each band is C[m0:m1] =
 * op(A)[m0:m1]·op(B), computed by the serial library exactly as in the whole product
 * (OpenBLAS's blocking along k depends on k alone, and each element is one sum over k in
 * the same order), so the bits are those of a product on one thread.  One part per
 * thread: each part packs op(B) again, so more parts would cost more than a late
 * worker's share.
 */
#ifndef FASTMLP_SPLIT_GEMM_H
#define FASTMLP_SPLIT_GEMM_H

#include "_pool.h"

/* Rows of C a band starts at a multiple of: a multiple of OpenBLAS's unrolls along that
 * side, so a band boundary adds no edge case a whole product would not have. */
#define FASTMLP_GEMM_BAND_ALIGN 16

/* Set 0 (fastmlp.threads.set_split_products): every product goes to one library call,
 * as before the split. */
static int fastmlp_split_products = 1;

typedef struct {
    const fastmlp_blas_lib *lib;    /* the serial library */
    int f64, trans_a, trans_b, m, n, k, lda, ldb, ldc, band;
    const void *a, *b;
    void *c;
    double alpha, beta;
} fastmlp_gemm_job;

/* Threads to split a product of `flops` with m rows of C over (and in *lib the serial
 * library its bands run on), or 0: one library call (fastmlp_blas_for).  Split only
 * where fastmlp_blas_for would have given the product two threads or more (never more
 * than the CPUs the process may use), and for an OpenBLAS active library (another one,
 * MKL, keeps its threads).  Not skipped while a pool fastmlp sent products to still
 * spins (the passes' rule, _pool.pxd): products sent there would keep it spinning, so
 * fastmlp would never come back to splitting while it trains; the first split products
 * after the switch (set_split_products) pay for that pool's last ~0.1 s instead. */
static int fastmlp_gemm_split_threads(double flops, int m, fastmlp_blas_lib **lib) {
    fastmlp_blas_lib *serial = fastmlp_blas_serial;
    int share, want;
    if (!fastmlp_split_products || serial == NULL || !fastmlp_blas_active->splits)
        return 0;
    if (flops < 2 * fastmlp_flops_per_thread) return 0;
    share = fastmlp_thread_share();
    if (share > fastmlp_pool_cpus()) share = fastmlp_pool_cpus();
    want = fastmlp_product_threads(flops, share);
    if (want > m / FASTMLP_GEMM_BAND_ALIGN) want = m / FASTMLP_GEMM_BAND_ALIGN;
    if (want < 2) return 0;
    if (serial->get_threads != NULL && serial->get_threads() != 1) serial->set_threads(1);
    *lib = serial;
    return want;
}

static void fastmlp_gemm_part(void *ctx, int part) {
    const fastmlp_gemm_job *j = (const fastmlp_gemm_job *)ctx;
    size_t size = j->f64 ? sizeof(double) : sizeof(float);
    int m0 = part * j->band, m1 = m0 + j->band < j->m ? m0 + j->band : j->m;
    /* Rows m0..m1 of op(A): of A itself, or its columns when transposed. */
    ptrdiff_t a_off = j->trans_a ? m0 : (ptrdiff_t)m0 * j->lda;
    if (m1 <= m0) return;
    fastmlp_blas_gemm(j->lib, j->f64, j->trans_a, j->trans_b, m1 - m0, j->n, j->k,
                      j->alpha, (const char *)j->a + a_off * size, j->lda, j->b, j->ldb,
                      j->beta, (char *)j->c + (ptrdiff_t)m0 * j->ldc * size, j->ldc);
}

/* Row-major C (m, n) = alpha·op(A)·op(B) + beta·C (fastmlp_blas_gemm) over `threads`
 * bands of rows, each a call of `lib` (from fastmlp_gemm_split_threads). */
static void fastmlp_gemm_split(const fastmlp_blas_lib *lib, int f64, int trans_a,
                               int trans_b, int m, int n, int k, double alpha,
                               const void *a, int lda, const void *b, int ldb, double beta,
                               void *c, int ldc, int threads) {
    fastmlp_gemm_job j;
    int band = (m + threads - 1) / threads;
    j.lib = lib;
    j.f64 = f64;
    j.trans_a = trans_a;
    j.trans_b = trans_b;
    j.m = m;
    j.n = n;
    j.k = k;
    j.lda = lda;
    j.ldb = ldb;
    j.ldc = ldc;
    j.band = (band + FASTMLP_GEMM_BAND_ALIGN - 1) / FASTMLP_GEMM_BAND_ALIGN
             * FASTMLP_GEMM_BAND_ALIGN;
    j.a = a;
    j.b = b;
    j.c = c;
    j.alpha = alpha;
    j.beta = beta;
    /* Forced: a product is worth a wake-up even while the element-wise passes back off.
     * More: a step's next product, or a pass, follows within a few microseconds, so the
     * workers wait for it awake (at most FASTMLP_POOL_SPIN_NS) instead of paying a
     * wake-up from sleep for each product. */
    fastmlp_pool_run_ex(fastmlp_gemm_part, &j, (m + j.band - 1) / j.band, threads, 1, 1);
}

#endif /* FASTMLP_SPLIT_GEMM_H */
