/* fastmlp's own worker threads, for the element-wise passes of a step (bench/README.md,
 * "The serial part of a step").
 *
 * Why a pool of its own, and why it sleeps: the products run on numpy's OpenBLAS pool,
 * whose workers busy-wait for a while after each call; a second pool that also spun
 * (OpenMP's default policy) would fight them for the cores between the products.  These
 * workers block on a condition variable between jobs, so they hold no CPU while fastmlp
 * is not running, and a wake-up is all an element-wise pass pays to use them.
 *
 * A job is n_parts independent parts, fn(ctx, part): the caller publishes it, wakes as
 * many workers as its share of the thread limit allows, and works on it too.  Parts are
 * claimed one at a time from a ticket that carries the job's generation, so a worker
 * that wakes late takes fewer parts (or none: the caller will have taken them) and can
 * never take a part of a later job.  The result of a part may not depend on which
 * thread runs it, so a pass gives the same bits at every thread count.
 *
 * One job at a time: a call that finds the pool busy (fastmlp trained in two Python
 * threads) runs its parts itself, which is what its share of the thread limit would
 * give it anyway.  Workers start lazily, at the first job that wants them; a fork()ed
 * child starts with none (pthread_atfork).
 */
#ifndef FASTMLP_POOL_H
#define FASTMLP_POOL_H

#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <time.h>

typedef void (*fastmlp_part_fn)(void *ctx, int part);

/* The most workers the pool starts, whatever the thread limit says. */
#define FASTMLP_POOL_MAX_WORKERS 255

static struct {
    pthread_mutex_t lock;
    pthread_cond_t wake;
    int workers;               /* started and waiting for jobs */
    uint32_t gen;              /* the current job's number */
    fastmlp_part_fn fn;
    void *ctx;
    int n_parts;
    int more;                  /* another job follows this one at once */
    uint64_t ticket;           /* gen << 32 | the next part to claim */
    int left;                  /* parts of the current job not finished */
    int busy;                  /* a caller owns the pool */
    pthread_once_t once;
} fastmlp_pool = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, 0, 0, 0, 0, 0,
                  0, 0, PTHREAD_ONCE_INIT};

static void fastmlp_pool_after_fork(void) {
    /* Only the forking thread exists in the child: no worker, no job. */
    pthread_mutex_init(&fastmlp_pool.lock, NULL);
    pthread_cond_init(&fastmlp_pool.wake, NULL);
    fastmlp_pool.workers = 0;
    fastmlp_pool.busy = 0;
}

static void fastmlp_pool_register_fork(void) {
    pthread_atfork(NULL, NULL, fastmlp_pool_after_fork);
}

/* The next part of job `gen` (of n), or -1 when none is left. */
static int fastmlp_pool_claim(uint32_t gen, int n) {
    uint64_t t = __atomic_load_n(&fastmlp_pool.ticket, __ATOMIC_ACQUIRE);
    for (;;) {
        if ((uint32_t)(t >> 32) != gen || (int)(uint32_t)t >= n) return -1;
        if (__atomic_compare_exchange_n(&fastmlp_pool.ticket, &t, t + 1, 1,
                                        __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
            return (int)(uint32_t)t;
    }
}

static void fastmlp_pool_work(uint32_t gen, fastmlp_part_fn fn, void *ctx, int n) {
    int p;
    while ((p = fastmlp_pool_claim(gen, n)) >= 0) {
        fn(ctx, p);
        __atomic_sub_fetch(&fastmlp_pool.left, 1, __ATOMIC_RELEASE);
    }
}

/* How long a worker waits for the next job of a pair (fastmlp_pool_run's `more`)
 * before it sleeps: a wake-up from sleep costs 30-40 us on the 2-vCPU VMs (the idle
 * vCPU halts), more than the second pass's part; a pair's second job follows the first
 * within a microsecond. */
#define FASTMLP_POOL_SPIN_NS 50000

static inline int64_t fastmlp_pool_now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

static inline void fastmlp_pool_pause(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static void *fastmlp_pool_worker(void *arg) {
    uint32_t seen = (uint32_t)(uintptr_t)arg;   /* the job before the one it was started for */
    fastmlp_part_fn fn;
    void *ctx;
    int n, more = 0;
    int64_t until;
#if defined(__linux__) && defined(_GNU_SOURCE)
    pthread_setname_np(pthread_self(), "fastmlp-pool");
#endif
    for (;;) {
        if (more) {
            until = fastmlp_pool_now_ns() + FASTMLP_POOL_SPIN_NS;
            while (__atomic_load_n(&fastmlp_pool.gen, __ATOMIC_ACQUIRE) == seen &&
                   fastmlp_pool_now_ns() < until)
                fastmlp_pool_pause();
        }
        pthread_mutex_lock(&fastmlp_pool.lock);
        while (fastmlp_pool.gen == seen)
            pthread_cond_wait(&fastmlp_pool.wake, &fastmlp_pool.lock);
        seen = fastmlp_pool.gen;
        fn = fastmlp_pool.fn;
        ctx = fastmlp_pool.ctx;
        n = fastmlp_pool.n_parts;
        more = fastmlp_pool.more;
        pthread_mutex_unlock(&fastmlp_pool.lock);
        fastmlp_pool_work(seen, fn, ctx, n);
    }
    return NULL;
}

/* Start workers until there are `want` (under the lock); returns how many there are. */
static int fastmlp_pool_grow(int want) {
    pthread_attr_t attr;
    pthread_t tid;
    if (want > FASTMLP_POOL_MAX_WORKERS) want = FASTMLP_POOL_MAX_WORKERS;
    if (fastmlp_pool.workers >= want) return fastmlp_pool.workers;
    pthread_once(&fastmlp_pool.once, fastmlp_pool_register_fork);
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, 256 * 1024);     /* the passes use little stack */
    while (fastmlp_pool.workers < want &&
           pthread_create(&tid, &attr, fastmlp_pool_worker,
                          (void *)(uintptr_t)fastmlp_pool.gen) == 0)
        fastmlp_pool.workers++;
    pthread_attr_destroy(&attr);
    return fastmlp_pool.workers;
}

static inline void fastmlp_pool_relax(long spins) {
    /* The caller waits for the last parts: spin a little (they are short), then let the
     * scheduler run something else on this core (perhaps the very worker it waits for). */
    if (spins < 4000) {
        fastmlp_pool_pause();
    } else {
        sched_yield();
    }
}

/* Run fn(ctx, p) for p in [0, n_parts) on the calling thread and up to threads − 1
 * workers; returns when every part has finished, its writes visible to the caller.
 * more: another job follows at once (the workers wait for it briefly before sleeping). */
static void fastmlp_pool_run(fastmlp_part_fn fn, void *ctx, int n_parts, int threads,
                             int more) {
    int p, wake, have;
    uint32_t gen;
    long spins = 0;
    if (threads > n_parts) threads = n_parts;
    if (threads < 2 || __atomic_exchange_n(&fastmlp_pool.busy, 1, __ATOMIC_ACQUIRE)) {
        for (p = 0; p < n_parts; p++) fn(ctx, p);
        return;
    }
    pthread_mutex_lock(&fastmlp_pool.lock);
    have = fastmlp_pool_grow(threads - 1);
    gen = fastmlp_pool.gen + 1;
    fastmlp_pool.fn = fn;
    fastmlp_pool.ctx = ctx;
    fastmlp_pool.n_parts = n_parts;
    fastmlp_pool.more = more;
    fastmlp_pool.left = n_parts;
    __atomic_store_n(&fastmlp_pool.ticket, (uint64_t)gen << 32, __ATOMIC_RELEASE);
    __atomic_store_n(&fastmlp_pool.gen, gen, __ATOMIC_RELEASE);   /* spinning workers see it */
    pthread_mutex_unlock(&fastmlp_pool.lock);
    wake = threads - 1 < have ? threads - 1 : have;
    if (wake >= have) pthread_cond_broadcast(&fastmlp_pool.wake);
    else
        for (p = 0; p < wake; p++) pthread_cond_signal(&fastmlp_pool.wake);
    fastmlp_pool_work(gen, fn, ctx, n_parts);
    while (__atomic_load_n(&fastmlp_pool.left, __ATOMIC_ACQUIRE) > 0)
        fastmlp_pool_relax(spins++);
    __atomic_store_n(&fastmlp_pool.busy, 0, __ATOMIC_RELEASE);
}

/* Workers started so far (for the tests: none before the first split pass). */
static int fastmlp_pool_workers(void) {
    int n;
    pthread_mutex_lock(&fastmlp_pool.lock);
    n = fastmlp_pool.workers;
    pthread_mutex_unlock(&fastmlp_pool.lock);
    return n;
}

#endif /* FASTMLP_POOL_H */
