"""How many threads fastmlp's products use, and how that is set.

The core chooses the library and thread count of every product itself (_blas.pxd,
``fastmlp_blas_for``): a product gets one thread per ``_core.FLOPS_PER_THREAD_MIN``
floating-point operations, never more than the limit below, and the limit is shared among
fastmlp calls running at the same time in several Python threads.  A product left one
thread runs on fastmlp's private OpenBLAS (``fastmlp.blas.serial()``), waking no pool; a
larger one is split over fastmlp's own workers (below) or goes to
``fastmlp.blas.current()``.  Two models trained in two threads thus split the cores
instead of fighting over them.

The limit starts as the number of threads the private OpenBLAS chose when it loaded, which
follows ``OPENBLAS_NUM_THREADS`` / ``OMP_NUM_THREADS`` and the process's CPU affinity.
Change it with ``set_num_threads``, or with threadpoolctl (``threadpool_limits(1)``, or
``threadpool_limits(1, user_api="blas")``), which sees fastmlp as a BLAS library with
``internal_api == "fastmlp"`` when threadpoolctl is installed.

The same limit caps fastmlp's own worker threads (fastmlp/_pool.h), over which the
element-wise passes of a step large enough to gain are split (the optimizer's check and
update, the activations, the guards), never more of them than the CPUs the process may
use.  They sleep between jobs, and stand aside while a BLAS pool's workers spin after a
product (``blas_spin_seconds``).

The products that get two threads or more are split over those same workers by bands of
rows, each band one call of the private OpenBLAS (fastmlp/_split_gemm.h), when
``current()`` is an OpenBLAS: no BLAS pool is woken, so none spins against the passes
between the products.  ``set_split_products(False)`` (or ``FASTMLP_SPLIT_PRODUCTS=0`` in
the environment at import) sends them to ``current()``'s own thread pool instead.

How many threads a product that gets more than one actually runs on is set by the limit
only when ``current()`` is the private ``"openblas"``; numpy's, scipy's and MKL's libraries
are shared with the user's code (or, for MKL, keep their own choice), and their own thread
count (threadpoolctl sets it) decides.
"""
from __future__ import annotations

import contextlib
import functools
import os
import threading
from typing import Any, Iterator

from fastmlp import _core, blas

__all__ = ["get_num_threads", "set_num_threads", "scipy_blas_serial", "get_split_products",
           "set_split_products"]


def get_num_threads() -> int:
    """The most threads one of fastmlp's products may use (an int >= 1)."""
    limit = _core.get_thread_limit()
    return limit if limit > 0 else len(os.sched_getaffinity(0))


def set_num_threads(n: int) -> None:
    """Let each of fastmlp's products use at most ``n`` threads (an int >= 1); takes
    effect from the next product, also in steps already running in other threads."""
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"n: expected an int, got {type(n).__name__}")
    _core.set_thread_limit(n)      # refuses n < 1


@functools.lru_cache(maxsize=1)
def _scipy_openblas() -> Any:
    """threadpoolctl's controller of the OpenBLAS inside scipy's wheel, or None (no
    threadpoolctl, or a scipy built against a BLAS it shares with numpy)."""
    try:
        import scipy
        import threadpoolctl
    except ImportError:
        return None
    libs = os.path.realpath(os.path.join(os.path.dirname(os.path.dirname(scipy.__file__)),
                                         "scipy.libs"))
    found = [c for c in threadpoolctl.ThreadpoolController().lib_controllers
             if c.internal_api == "openblas"
             and os.path.realpath(c.filepath).startswith(libs + os.sep)]
    return found[0] if len(found) == 1 else None


_scipy_serial_lock = threading.Lock()
_scipy_serial_depth = [0]     # blocks inside scipy_blas_serial now, then the saved count


@contextlib.contextmanager
def scipy_blas_serial() -> Iterator[None]:
    """scipy's own BLAS at one thread inside the block, unless fastmlp's large products
    run there (``fastmlp.blas.current() == "scipy"``).

    For scipy's L-BFGS-B between fastmlp's evaluations: its BLAS work is on vectors of
    the parameters' size, which a second thread does not speed up, but a threaded call
    leaves scipy's pool spinning for ~0.1 s against fastmlp's products in numpy's pool
    (bench/README.md, "Threads").  Other threads calling scipy's BLAS meanwhile get one
    thread too.
    """
    scipy_lib = _scipy_openblas() if blas.current() != "scipy" else None
    if scipy_lib is None:
        yield
        return
    # Fits in several threads overlap: the first one in saves the count, the last one out
    # restores it.
    with _scipy_serial_lock:
        if _scipy_serial_depth[0] == 0:
            _scipy_serial_depth.append(scipy_lib.get_num_threads())
            scipy_lib.set_num_threads(1)
        _scipy_serial_depth[0] += 1
    try:
        yield
    finally:
        with _scipy_serial_lock:
            _scipy_serial_depth[0] -= 1
            if _scipy_serial_depth[0] == 0:
                scipy_lib.set_num_threads(_scipy_serial_depth.pop())


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
            from fastmlp._version import __version__
            return __version__

    threadpoolctl.register(FastmlpController)



def blas_spin_seconds(environ=os.environ) -> float:
    """How long a BLAS pool's workers busy-wait after a threaded product before they
    sleep: OpenBLAS's 2^OPENBLAS_THREAD_TIMEOUT cycles (GOTO_THREAD_TIMEOUT too; 28 when
    unset, clipped to 4..30, as OpenBLAS reads it), taken at 2.5 GHz.

    While they spin they hold the cores fastmlp's own workers would split a pass over
    (_split.pxi), and a woken worker does not preempt them (bench/README.md, "fastmlp's
    own workers"): within that time after a product sent to a pool, passes run on the
    calling thread.  Read once, at import, as OpenBLAS reads it when it loads.
    """
    for name in ("OPENBLAS_THREAD_TIMEOUT", "GOTO_THREAD_TIMEOUT"):
        try:
            exponent = int(environ.get(name, ""))
        except ValueError:
            continue
        if exponent > 0:
            return 2.0 ** min(max(exponent, 4), 30) / 2.5e9
    return 2.0 ** 28 / 2.5e9


def get_split_products() -> bool:
    """Whether fastmlp splits its large products over its own workers (see the module's
    docstring); True by default."""
    return _core._get_split_products()


def set_split_products(on: bool) -> bool:
    """Split fastmlp's large products over its own workers (``True``, the default) or send
    them to ``fastmlp.blas.current()``'s thread pool (``False``); returns the previous
    setting.  Results agree to rounding either way: the bands run on the private OpenBLAS,
    the whole products on ``current()``'s, another build (``tests/test_split_products.py``).
    With the split, they are the bits of the same products on one thread."""
    if not isinstance(on, bool):
        raise TypeError(f"on: expected True or False, got {on!r}")
    previous = _core._get_split_products()
    _core._set_split_products(on)
    return previous


def _split_products_from_env(environ=os.environ) -> bool:
    value = environ.get("FASTMLP_SPLIT_PRODUCTS", "1").strip().lower()
    if value not in ("0", "1", "false", "true", "no", "yes", "off", "on", ""):
        raise ValueError(f"FASTMLP_SPLIT_PRODUCTS: expected 0 or 1, got {value!r}")
    return value not in ("0", "false", "no", "off")


_core._set_pool_spin(blas_spin_seconds())
_core._set_split_products(_split_products_from_env())
_register_with_threadpoolctl()
