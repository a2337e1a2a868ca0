/* fastmlp's own worker threads, for the element-wise passes of a step (bench/README.md,
 * "fastmlp's own workers").
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
 * The same workers run the pieces of one call that go side by side for its whole length
 * (the groups of models of an MLPStack or of a search's shared fit, _pieces.pxi): a
 * job whose parts are long, which the caller, once its own parts are done, waits for
 * asleep (fastmlp_pool_run_long).
 *
 * One job at a time: a call that finds the pool busy (fastmlp trained in two Python
 * threads, or a pass inside a long job's part) runs its parts itself, which is what its
 * share of the thread limit would give it anyway.  Workers start lazily, at the first
 * job that wants them; a fork()ed child starts with none (pthread_atfork).
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
/* After a job no worker helped with, the next 2^k − 1 jobs run on the caller alone, k
 * growing by one for each such job up to this (fastmlp_pool_run). */
#define FASTMLP_POOL_MAX_BACKOFF 6
/* Set: every job wakes the workers, whatever the last ones found (for the tests, which
 * must see split passes run on several threads; fastmlp._core._set_split_scale(0)). */
static int fastmlp_pool_no_backoff = 0;

static struct {
    pthread_mutex_t lock;
    pthread_cond_t wake;
    pthread_cond_t done;       /* the last part of a long job finished */
    int workers;               /* started and waiting for jobs */
    uint32_t gen;              /* the current job's number */
    fastmlp_part_fn fn;
    void *ctx;
    int n_parts;
    int more;                  /* another job follows this one at once */
    int sleeper;               /* the caller waits asleep on `done` (a long job) */
    uint64_t ticket;           /* gen << 32 | the next part to claim */
    int left;                  /* parts of the current job not finished */
    int helped;                /* parts of the current job the workers ran */
    long helped_total;         /* ... of every job so far (for the tests) */
    int busy;                  /* a caller owns the pool */
    int skip, backoff;         /* jobs to run without waking the workers; log2 of the next skip */
    pthread_once_t once;
} fastmlp_pool = {.lock = PTHREAD_MUTEX_INITIALIZER, .wake = PTHREAD_COND_INITIALIZER,
                  .done = PTHREAD_COND_INITIALIZER, .once = PTHREAD_ONCE_INIT};

static void fastmlp_pool_after_fork(void) {
    /* Only the forking thread exists in the child: no worker, no job. */
    pthread_mutex_init(&fastmlp_pool.lock, NULL);
    pthread_cond_init(&fastmlp_pool.wake, NULL);
    pthread_cond_init(&fastmlp_pool.done, NULL);
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

/* Run parts of job `gen` until none is left; returns how many this thread ran.  A
 * worker counts each in `helped` before it counts it done, so the caller, which waits
 * for `left` to reach 0, sees every count. */
static int fastmlp_pool_work(uint32_t gen, fastmlp_part_fn fn, void *ctx, int n,
                             int worker) {
    int p, done = 0;
    while ((p = fastmlp_pool_claim(gen, n)) >= 0) {
        fn(ctx, p);
        done++;
        if (worker) __atomic_add_fetch(&fastmlp_pool.helped, 1, __ATOMIC_RELAXED);
        if (__atomic_sub_fetch(&fastmlp_pool.left, 1, __ATOMIC_RELEASE) == 0 && worker &&
                __atomic_load_n(&fastmlp_pool.sleeper, __ATOMIC_ACQUIRE)) {
            /* under the lock, which the caller holds from its test of `left` to its wait */
            pthread_mutex_lock(&fastmlp_pool.lock);
            pthread_cond_broadcast(&fastmlp_pool.done);
            pthread_mutex_unlock(&fastmlp_pool.lock);
        }
    }
    return done;
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
    int n, more = 0, done;
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
        done = fastmlp_pool_work(seen, fn, ctx, n, 1);
        /* Late to a job (the caller had taken every part): this core is someone else's
           now, so wait for the next job asleep. */
        more = more && done > 0;
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
    /* A long job's part may run Python (a group's epochs and their bookkeeping): a
       Python thread's stack, of which the passes touch only the top pages. */
    pthread_attr_setstacksize(&attr, 8 * 1024 * 1024);
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
 * more: another job follows at once (the workers wait for it briefly before sleeping).
 * forced: wake the workers whatever the back-off says, and leave it as it is (a job
 * large enough that a wasted wake-up costs little against it: a split product).
 * sleep: the parts are long (milliseconds or more); the caller, done with its own,
 * waits for the others asleep instead of spinning (implies forced). */
static void fastmlp_pool_job(fastmlp_part_fn fn, void *ctx, int n_parts, int threads,
                             int more, int forced, int sleep) {
    int p, wake, have;
    uint32_t gen;
    long spins = 0;
    if (threads > n_parts) threads = n_parts;
    if (threads < 2 || __atomic_exchange_n(&fastmlp_pool.busy, 1, __ATOMIC_ACQUIRE)) {
        for (p = 0; p < n_parts; p++) fn(ctx, p);
        return;
    }
    if (sleep) forced = 1;
    if (fastmlp_pool.skip > 0 && !fastmlp_pool_no_backoff && !forced) {
        /* the owner of the pool alone reads and writes skip and backoff */
        fastmlp_pool.skip--;
        for (p = 0; p < n_parts; p++) fn(ctx, p);
        __atomic_store_n(&fastmlp_pool.busy, 0, __ATOMIC_RELEASE);
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
    fastmlp_pool.helped = 0;
    __atomic_store_n(&fastmlp_pool.sleeper, sleep, __ATOMIC_RELEASE);
    __atomic_store_n(&fastmlp_pool.ticket, (uint64_t)gen << 32, __ATOMIC_RELEASE);
    __atomic_store_n(&fastmlp_pool.gen, gen, __ATOMIC_RELEASE);   /* spinning workers see it */
    pthread_mutex_unlock(&fastmlp_pool.lock);
    wake = threads - 1 < have ? threads - 1 : have;
    if (wake >= have) pthread_cond_broadcast(&fastmlp_pool.wake);
    else
        for (p = 0; p < wake; p++) pthread_cond_signal(&fastmlp_pool.wake);
    fastmlp_pool_work(gen, fn, ctx, n_parts, 0);
    if (sleep) {
        pthread_mutex_lock(&fastmlp_pool.lock);
        while (__atomic_load_n(&fastmlp_pool.left, __ATOMIC_ACQUIRE) > 0)
            pthread_cond_wait(&fastmlp_pool.done, &fastmlp_pool.lock);
        pthread_mutex_unlock(&fastmlp_pool.lock);
    }
    while (__atomic_load_n(&fastmlp_pool.left, __ATOMIC_ACQUIRE) > 0)
        fastmlp_pool_relax(spins++);
    /* No worker got to a part before the caller had taken them all: their cores are
     * busy (typically with another pool's workers spinning after a product, which a
     * woken worker cannot preempt).  Waking them again at once would only take those
     * cores back and forth, so the next jobs run on the caller alone, 1, 3, 7 ... up to
     * 63 of them, before the workers are tried again. */
    fastmlp_pool.helped_total += fastmlp_pool.helped;
    if (!forced) {
        if (fastmlp_pool.helped == 0) {
            if (fastmlp_pool.backoff < FASTMLP_POOL_MAX_BACKOFF) fastmlp_pool.backoff++;
            fastmlp_pool.skip = (1 << fastmlp_pool.backoff) - 1;
        } else {
            fastmlp_pool.backoff = 0;
        }
    }
    __atomic_store_n(&fastmlp_pool.busy, 0, __ATOMIC_RELEASE);
}

static void fastmlp_pool_run_ex(fastmlp_part_fn fn, void *ctx, int n_parts, int threads,
                                int more, int forced) {
    fastmlp_pool_job(fn, ctx, n_parts, threads, more, forced, 0);
}

/* A job of long parts (see fastmlp_pool_job's `sleep`). */
static void fastmlp_pool_run_long(fastmlp_part_fn fn, void *ctx, int n_parts, int threads) {
    fastmlp_pool_job(fn, ctx, n_parts, threads, 0, 1, 1);
}

static void fastmlp_pool_run(fastmlp_part_fn fn, void *ctx, int n_parts, int threads,
                             int more) {
    fastmlp_pool_run_ex(fn, ctx, n_parts, threads, more, 0);
}
/* The CPUs this process may run on (its affinity mask, read once): a pass never splits
 * over more threads than that, whatever the thread limit, since a part waiting for a
 * core would hold up the whole pass. */
static int fastmlp_pool_cpus(void) {
    static int cpus = 0;
    int n = __atomic_load_n(&cpus, __ATOMIC_RELAXED);
    if (n == 0) {
#if defined(__linux__) && defined(_GNU_SOURCE)
        cpu_set_t set;
        n = sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set) : 1;
#else
        n = 1;
#endif
        if (n < 1) n = 1;
        __atomic_store_n(&cpus, n, __ATOMIC_RELAXED);
    }
    return n;
}

/* Workers started so far (for the tests: none before the first split pass). */
static int fastmlp_pool_workers(void) {
    int n;
    pthread_mutex_lock(&fastmlp_pool.lock);
    n = fastmlp_pool.workers;
    pthread_mutex_unlock(&fastmlp_pool.lock);
    return n;
}

/* Parts the workers have run, over all jobs so far (for the tests: that a split pass
 * did run on more than one thread).  Read while no job runs. */
static long fastmlp_pool_helped(void) {
    return __atomic_load_n(&fastmlp_pool.helped_total, __ATOMIC_RELAXED);
}

#endif /* FASTMLP_POOL_H */
