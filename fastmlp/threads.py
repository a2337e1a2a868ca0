"""How many threads fastmlp's products use, and how that is set.

fastmlp's own BLAS (the ``scipy-openblas32`` copy that ``fastmlp.blas`` loads by default)
is called by fastmlp alone, so the core chooses the thread count of every product itself:
one thread per ``_core.FLOPS_PER_THREAD_MIN`` floating-point operations of that product,
never more than the limit below, and the limit shared among fastmlp calls running at the
same time in several Python threads.  Small products therefore run on the calling thread
without waking (or keeping spinning) a pool, and two models trained in two threads split
the cores instead of fighting over them.

The limit starts as the number of threads that library chose when it loaded, which follows
``OPENBLAS_NUM_THREADS`` / ``OMP_NUM_THREADS`` and the process's CPU affinity.  Change it
with ``set_num_threads``, or with threadpoolctl (``threadpool_limits(1)``, or
``threadpool_limits(1, user_api="blas")``), which sees fastmlp as a BLAS library with
``internal_api == "fastmlp"`` when threadpoolctl is installed.

With ``fastmlp.blas.use("scipy")``, ``"numpy"`` or ``"mkl"`` the library is shared with
the user's numpy or scipy (or keeps its own choice, for MKL): its thread count is then
theirs to set, through threadpoolctl, and this limit does not apply.
"""
from __future__ import annotations

import os

from fastmlp import _core

__all__ = ["get_num_threads", "set_num_threads"]


def get_num_threads() -> int:
    """The most threads one of fastmlp's products may use (an int >= 1)."""
    limit = _core.get_thread_limit()
    return limit if limit > 0 else len(os.sched_getaffinity(0))


def set_num_threads(n: int) -> None:
    """Let each of fastmlp's products use at most ``n`` threads (an int >= 1); takes
    effect from the next product, also in steps already running in other threads."""
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"n: expected an int, got {type(n).__name__}")
    if n < 1:
        raise ValueError(f"n: expected a positive number of threads, got {n}")
    _core.set_thread_limit(n)


def _register_with_threadpoolctl() -> None:
    # threadpoolctl finds a library among the loaded shared objects by file name and the
    # C symbols it exports; the compiled core exports fastmlp_get/set_num_threads.
    try:
        import threadpoolctl
    except ImportError:
        return
    if not hasattr(threadpoolctl, "register"):      # threadpoolctl < 3.5
        return

    class FastmlpController(threadpoolctl.LibController):  # type: ignore[misc]
        user_api = "blas"
        internal_api = "fastmlp"
        filename_prefixes = ("_core",)
        check_symbols = ("fastmlp_get_num_threads", "fastmlp_set_num_threads")

        def get_num_threads(self) -> int:
            return int(self.dynlib.fastmlp_get_num_threads())

        def set_num_threads(self, num_threads: int) -> None:
            self.dynlib.fastmlp_set_num_threads(int(num_threads))

        def get_version(self) -> str:
            from fastmlp import __version__
            return __version__

    threadpoolctl.register(FastmlpController)


_register_with_threadpoolctl()
