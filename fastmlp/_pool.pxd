# fastmlp's sleeping worker pool (_pool.h), and how many of its threads a pass gets.

from fastmlp._blas cimport pooled_workers_spinning, thread_share

ctypedef void (*part_fn)(void* ctx, int part) noexcept nogil

cdef extern from "_pool.h" nogil:
    void pool_run "fastmlp_pool_run"(part_fn fn, void* ctx, int n_parts, int threads,
                                      bint more)
    void pool_run_long "fastmlp_pool_run_long"(part_fn fn, void* ctx, int n_parts,
                                               int threads)
    int pool_workers "fastmlp_pool_workers"()
    long pool_helped "fastmlp_pool_helped"()
    int pool_cpus "fastmlp_pool_cpus"()
    int pool_no_backoff "fastmlp_pool_no_backoff"

cdef extern from *:
    """
    /* Multiplies every pass's grain (the elements that pay for one more thread); 1 but in
       the tests, which set 0 to split passes of any size (fastmlp._core._set_split_scale). */
    static double fastmlp_split_scale = 1.0;
    """
    double split_scale "fastmlp_split_scale"

cdef enum:
    # The most threads a pass is split over: the caller and FASTMLP_POOL_MAX_WORKERS.
    MAX_THREADS = 256
    # A split pass's parts per thread: a worker that wakes late leaves its parts to the
    # others, so more parts than threads keep a late wake-up from costing a whole share.
    PARTS_PER_THREAD = 4
    # Parts start at multiples of this many elements, a multiple of every vector width
    # (so no part boundary changes which elements a vector loop's tail handles) and of a
    # cache line for every dtype.
    PART_ALIGN = 64


cdef inline int split_threads(Py_ssize_t size, double grain) noexcept nogil:
    # Threads for a pass over `size` elements, one more per `grain` elements (the size
    # below which a wake-up costs more than the thread saves, measured per pass:
    # bench/README.md), never more than the call's share of the thread limit nor than the
    # CPUs the process may use; one while a BLAS pool's workers spin after a product of
    # fastmlp's, holding the other cores.
    # The size test comes first: it is all a tiny step's passes pay.
    cdef double g = grain * split_scale
    cdef int share
    if g > 0 and size < 2 * g:
        return 1
    share = thread_share()
    if split_scale != 0:                  # the tests (scale 0) split over any limit
        if share > pool_cpus():
            share = pool_cpus()
        if share >= 2 and pooled_workers_spinning():
            return 1
    if share > MAX_THREADS:
        share = MAX_THREADS
    if share < 2:
        return 1
    if g <= 0:
        return share
    return share if size / g >= share else <int>(size / g)


cdef inline Py_ssize_t part_size(Py_ssize_t size, int threads) noexcept nogil:
    # Elements per part when `threads` split `size`: PARTS_PER_THREAD parts per thread,
    # rounded up to PART_ALIGN.
    cdef Py_ssize_t parts = <Py_ssize_t>threads * PARTS_PER_THREAD
    cdef Py_ssize_t c = (size + parts - 1) // parts
    return ((c + PART_ALIGN - 1) // PART_ALIGN) * PART_ALIGN
