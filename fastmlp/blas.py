"""Which BLAS library the compiled core calls.

The core's GEMMs are most of a training step, so the BLAS behind them sets fastmlp's speed.
Four libraries can serve, all through their Fortran interface:

``"scipy"``
    scipy's own OpenBLAS, through ``scipy.linalg.cython_blas`` (as scikit-learn does).
    Always available; the fallback.
``"openblas"``
    The ``scipy-openblas32`` wheel (``pip install scipy-openblas32``): the OpenBLAS build the
    numpy and scipy projects publish, usually newer than the one inside scipy's wheel.
``"mkl"``
    Intel oneMKL's single dynamic library from the ``mkl`` wheel (``pip install mkl``),
    forced to its LP64 (32-bit integer) interface.
``"numpy"``
    The OpenBLAS that numpy's own wheel bundles (numpy >= 2: ``scipy-openblas64``, 64-bit
    integers), the very library ``numpy.matmul`` calls: fastmlp and the user's numpy then
    share one thread pool instead of two pools fighting over the cores.

Products too small to gain from a second thread (see fastmlp.threads) always go to the
``"openblas"`` copy when it is installed (``serial()``): fastmlp alone calls it, at one
thread, so they wake no thread pool.  The larger ones go to the library chosen once at
import: the ``FASTMLP_BLAS`` environment variable if set (``scipy``, ``openblas``,
``mkl``, ``numpy`` or ``auto``), else ``auto``, which takes ``numpy`` when numpy's wheel
bundles its OpenBLAS, else ``openblas`` when installed, else ``scipy``.  Sharing numpy's
pool matters: two OpenBLAS pools in one process each keep their workers spinning for a
while after a call, and a loop alternating between them runs many times slower than
either alone (bench/README.md, "Threads").  ``use()`` switches later; switch before
training, not while another thread trains (each step then mixes libraries: valid, but not
reproducible).  A library is only adopted after a small product computed through it
matches numpy's, so a broken or mismatched library falls back with an error, never a wrong
answer.  Thread counts of every library are visible to and set by threadpoolctl.
"""
from __future__ import annotations

import ctypes
import glob
import os
import sys
from typing import cast

import numpy as np
from numpy.typing import DTypeLike

from fastmlp import _core

# In the order of the core's library tables (_core._set_blas's slot).
NAMES = ("scipy", "openblas", "mkl", "numpy")
_ROUTINES = ("sgemm", "dgemm", "sgemv", "dgemv", "sger", "dger")

_current = "scipy"
_serial: str | None = None
_libraries: dict[str, ctypes.CDLL] = {}   # kept loaded for the life of the process
_adopted: set[str] = set()   # libraries whose core table is filled and checked


def _load_openblas() -> tuple[ctypes.CDLL, str, bool]:
    # fastmlp alone calls this copy of OpenBLAS, so the core may set its thread count for
    # each call (see _thread_functions).
    try:
        import scipy_openblas32  # type: ignore[import-untyped]
    except ImportError:
        raise ImportError("blas 'openblas' needs the scipy-openblas32 package: "
                          "pip install scipy-openblas32") from None
    found = [p for p in glob.glob(os.path.join(scipy_openblas32.get_lib_dir(),
                                               f"lib{scipy_openblas32.get_library()}.*"))
             if p.endswith((".so", ".dylib", ".dll"))]
    if not found:
        raise ImportError("blas 'openblas': scipy-openblas32 has no shared library")
    path = found[0]
    prefix = scipy_openblas32.get_symbol_prefix() if hasattr(
        scipy_openblas32, "get_symbol_prefix") else "scipy_"
    return ctypes.CDLL(path, mode=ctypes.RTLD_LOCAL), prefix + "{}_", False


def _numpy_openblas() -> str | None:
    """Path of the OpenBLAS bundled in numpy's wheel, or None (numpy < 2, or a numpy built
    against another BLAS)."""
    libs = os.path.join(os.path.dirname(os.path.dirname(np.__file__)), "numpy.libs")
    found = sorted(glob.glob(os.path.join(libs, "libscipy_openblas64_*.so*")))
    return found[0] if found else None


def _load_numpy() -> tuple[ctypes.CDLL, str, bool]:
    path = _numpy_openblas()
    if path is None:
        raise ImportError("blas 'numpy': this numpy's wheel bundles no scipy-openblas64 "
                          "(numpy >= 2 from PyPI does)")
    # numpy loaded this file already: dlopen hands back that same instance, thread pool
    # included, which is the point.
    return ctypes.CDLL(path, mode=ctypes.RTLD_LOCAL), "scipy_{}_64_", True


def _load_mkl() -> tuple[ctypes.CDLL, str, bool]:
    # The mkl wheel puts its libraries in <prefix>/lib, outside site-packages.
    candidates = sorted(glob.glob(os.path.join(sys.prefix, "lib", "libmkl_rt.so*")))
    if not candidates:
        raise ImportError("blas 'mkl' needs the mkl package (libmkl_rt): pip install mkl")
    lib = ctypes.CDLL(candidates[0], mode=ctypes.RTLD_LOCAL)
    # mkl_rt picks 32- or 64-bit integers at run time; the core passes 32-bit ones.
    lib.MKL_Set_Interface_Layer.restype = ctypes.c_int
    if lib.MKL_Set_Interface_Layer(ctypes.c_int(0)) != 0:     # 0 = MKL_INTERFACE_LP64
        raise ImportError("blas 'mkl': libmkl_rt is already set to its ILP64 interface")
    return lib, "{}_", False


_LOADERS = {"openblas": _load_openblas, "mkl": _load_mkl, "numpy": _load_numpy}


def _address(lib: ctypes.CDLL, symbol: str) -> int:
    # a resolved symbol's address is never NULL (a missing one raises AttributeError)
    return cast(int, ctypes.cast(getattr(lib, symbol), ctypes.c_void_p).value)


def _thread_functions(name: str, lib: ctypes.CDLL, pattern: str) -> tuple[int, ...]:
    """Addresses of the thread-count setter and getter of a library only fastmlp calls,
    else ().  numpy's and scipy's libraries are shared with the user's own code, whose
    thread count is theirs to set; MKL keeps its own per-call choice."""
    if name != "openblas":
        return ()
    prefix = pattern[:-len("{}_")]
    return (_address(lib, prefix + "openblas_set_num_threads"),
            _address(lib, prefix + "openblas_get_num_threads"))


def _addresses(lib: ctypes.CDLL, pattern: str) -> tuple[int, ...]:
    """The routines' addresses in the order of _ROUTINES, which is _core._set_blas's."""
    return tuple(_address(lib, pattern.format(r)) for r in _ROUTINES)


def _agrees_with_numpy() -> bool:
    # Each routine and dtype once, on shapes odd enough to catch a swapped transpose flag
    # or a wrong integer width; n = 1 takes the core's gemv/ger paths.
    rng = np.random.default_rng(0)
    cases: tuple[tuple[DTypeLike, float], ...] = ((np.float32, 1e-4), (np.float64, 1e-12))
    for dtype, tol in cases:
        for n in (5, 1):
            A = np.abs(rng.standard_normal((n, 7))).astype(dtype) + 1   # relu mask all on
            W = rng.standard_normal((7, 3)).astype(dtype)
            b = rng.standard_normal(3).astype(dtype)
            D = rng.standard_normal((n, 3)).astype(dtype)
            Z = np.empty((n, 3), dtype)
            dW, db, D_prev = np.empty((7, 3), dtype), np.empty(3, dtype), np.empty((n, 7), dtype)
            _core.k_linear_forward(A, W, b, Z)
            _core.k_linear_backward(A, D, dW, db)
            _core.k_backprop_delta(D, W, A, D_prev)
            for got, want in ((Z, A @ W + b), (dW, A.T @ D), (D_prev, D @ W.T)):
                if not np.allclose(got, want, rtol=tol, atol=tol):
                    return False
    return True


def _adopt(name: str) -> None:
    """Load library ``name``, fill its table in the core and check it against numpy;
    the core's libraries are as before afterwards.  Raises ImportError."""
    try:
        lib, pattern, ilp64 = _LOADERS[name]()
        addresses = _addresses(lib, pattern)
        threads = _thread_functions(name, lib, pattern)
    except (OSError, AttributeError) as exc:
        raise ImportError(f"blas {name!r}: could not load its library ({exc})") from None
    if threads and _core.get_thread_limit() == 0:
        # The limit starts as the count the library chose when it loaded, which is how
        # OPENBLAS_NUM_THREADS / OMP_NUM_THREADS and the CPU affinity reach fastmlp.
        count = ctypes.CFUNCTYPE(ctypes.c_int)(threads[1])()
        _core.set_thread_limit(max(1, count))
    # Every product, small ones included, goes through the candidate while it is checked.
    _core._set_blas(-1, serial=True)
    try:
        _core._set_blas(NAMES.index(name), addresses, ilp64, threads, splits=name != "mkl")
        agrees = _agrees_with_numpy()
    finally:
        _core._set_blas(NAMES.index(_current))
        if _serial is not None:
            _core._set_blas(NAMES.index(_serial), serial=True)
    if not agrees:
        raise ImportError(f"blas {name!r}: results disagree with numpy; not used")
    _libraries[name] = lib
    _adopted.add(name)


def use(name: str) -> str:
    """Make the core call BLAS library ``name`` (see the module docstring) for every
    product large enough for two threads; returns the previous name.  Raises ImportError
    if the library is not installed or fails its check (the previous library stays in
    use)."""
    global _current
    if name not in NAMES:
        raise ValueError(f"name: expected one of {', '.join(NAMES)}, got {name!r}")
    previous = _current
    if name != "scipy" and name not in _adopted:
        _adopt(name)
    _core._set_blas(NAMES.index(name))
    _current = name
    return previous


def serial() -> str | None:
    """The name of the library of the products too small for two threads, or None when
    they go to ``current()`` too."""
    return _serial


def use_serial(name: str | None) -> str | None:
    """Send the products too small for two threads to library ``name``, which must be
    ``"openblas"`` (a library fastmlp alone calls, kept at one thread), or with None to
    ``current()`` like the others; returns the previous choice.  Raises ImportError as
    ``use`` does."""
    global _serial
    if name is not None and name != "openblas":
        raise ValueError(f"name: expected 'openblas' or None, got {name!r}")
    previous = _serial
    if name is None:
        _core._set_blas(-1, serial=True)
    else:
        if name not in _adopted:
            _adopt(name)
        _core._set_blas(NAMES.index(name), serial=True)
    _serial = name
    return previous


def current() -> str:
    """The name of the BLAS library the core calls now."""
    return _current


def available() -> list[str]:
    """Names of the libraries that are installed (not loaded or checked)."""
    names = ["scipy"]
    try:
        import scipy_openblas32  # noqa: F401
        names.append("openblas")
    except ImportError:
        pass
    if glob.glob(os.path.join(sys.prefix, "lib", "libmkl_rt.so*")):
        names.append("mkl")
    if _numpy_openblas() is not None:
        names.append("numpy")
    return names


def _choose_at_import() -> None:
    wanted = os.environ.get("FASTMLP_BLAS", "auto").strip().lower() or "auto"
    if wanted != "auto" and wanted not in NAMES:
        raise ImportError(f"FASTMLP_BLAS: expected auto, {', '.join(NAMES)}; got {wanted!r}")
    if "openblas" in available():
        try:
            use_serial("openblas")
        except ImportError:
            pass          # small products go to the active library too; serial() tells
    if wanted != "auto":
        use(wanted)
        return
    for name in ("numpy", "openblas"):
        if name in available():
            try:
                use(name)
                return
            except ImportError:
                pass      # the next, and in the end scipy's; current() tells


_choose_at_import()
