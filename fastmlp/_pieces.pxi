# Pieces of one call that run side by side for its whole length, on fastmlp's worker
# pool (included by _core.pyx): the groups of models of an MLPStack or of a search's
# shared fit (fastmlp/_workers.py).  Each piece is a Python callable: a group's epochs,
# whose compiled loops release the GIL, with their per-epoch bookkeeping in between, so
# the groups meet only when the call ends.  Running them on the pool's workers keeps one
# set of threads in the process, the one the split passes and products use.

cdef struct PiecesJob:
    PyObject* pieces          # list of callables
    PyObject* outcomes        # list: (True, result) or (False, exception) per piece


cdef void piece_part(void* ctx, int part) noexcept nogil:
    # The GIL for the piece's Python (taken on a worker, which has no thread state, as on
    # the caller); the piece releases it in its compiled loops.
    cdef PiecesJob* j = <PiecesJob*>ctx
    with gil:
        outcomes = <list>j.outcomes
        try:
            outcomes[part] = (True, (<list>j.pieces)[part]())
        except BaseException as exc:       # handed to the caller, which raises it
            outcomes[part] = (False, exc)


def run_pieces(pieces):
    """Call each of ``pieces`` (a list of callables taking no argument) once, side by side
    on the calling thread and fastmlp's pool workers, one thread per piece up to the
    thread limit (``fastmlp.set_num_threads``) and the CPUs the process may use; a
    piece no thread was free for runs after another.  The caller waits asleep for the
    others once its own are done.  Returns a list of (True, result) or (False, exception)
    per piece, in their order.  While the pieces run, the passes inside them find the
    pool taken and run on their own thread."""
    cdef list fns = list(pieces)
    cdef list outcomes = [None] * len(fns)
    cdef PiecesJob j
    cdef int n = len(fns), threads = min(n, thread_share(), pool_cpus())
    j.pieces = <PyObject*>fns
    j.outcomes = <PyObject*>outcomes
    if n == 0:
        return outcomes
    with nogil:
        pool_run_long(piece_part, &j, n, threads)
    return outcomes
