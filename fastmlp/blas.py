"""Which BLAS library the compiled core calls.

The core's GEMMs are most of a training step, so the BLAS behind them sets fastmlp's speed.
Three libraries can serve, all through the Fortran interface with 32-bit integers:

``"scipy"``
    scipy's own OpenBLAS, through ``scipy.linalg.cython_blas`` (as scikit-learn does).
    Always available; the fallback.
``"openblas"``
    The ``scipy-openblas32`` wheel (``pip install scipy-openblas32``): the OpenBLAS build the
    numpy and scipy projects publish, usually newer than the one inside scipy's wheel.
``"mkl"``
    Intel oneMKL's single dynamic library from the ``mkl`` wheel (``pip install mkl``),
    forced to its LP64 (32-bit integer) interface.

The choice is made once at import: the ``FASTMLP_BLAS`` environment variable if set
(``scipy``, ``openblas``, ``mkl`` or ``auto``), else ``auto``, which takes ``openblas`` when
it is installed and ``scipy`` otherwise.  ``use()`` switches later; switch before training,
not while another thread trains (each step then mixes libraries: valid, but not
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

NAMES = ("scipy", "openblas", "mkl")
_ROUTINES = ("sgemm", "dgemm", "sgemv", "dgemv", "sger", "dger")

_current = "scipy"
_libraries: dict[str, ctypes.CDLL] = {}   # kept loaded for the life of the process
_adopted: dict[str, tuple[int, ...]] = {}   # routine addresses of checked libraries


def _load_openblas() -> tuple[ctypes.CDLL, str]:
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
    return ctypes.CDLL(path, mode=ctypes.RTLD_LOCAL), prefix + "{}_"


def _load_mkl() -> tuple[ctypes.CDLL, str]:
    # The mkl wheel puts its libraries in <prefix>/lib, outside site-packages.
    candidates = sorted(glob.glob(os.path.join(sys.prefix, "lib", "libmkl_rt.so*")))
    if not candidates:
        raise ImportError("blas 'mkl' needs the mkl package (libmkl_rt): pip install mkl")
    lib = ctypes.CDLL(candidates[0], mode=ctypes.RTLD_LOCAL)
    # mkl_rt picks 32- or 64-bit integers at run time; the core passes 32-bit ones.
    lib.MKL_Set_Interface_Layer.restype = ctypes.c_int
    if lib.MKL_Set_Interface_Layer(ctypes.c_int(0)) != 0:     # 0 = MKL_INTERFACE_LP64
        raise ImportError("blas 'mkl': libmkl_rt is already set to its ILP64 interface")
    return lib, "{}_"


def _addresses(lib: ctypes.CDLL, pattern: str) -> tuple[int, ...]:
    """The routines' addresses in the order of _ROUTINES, which is _core._set_blas's."""
    # a resolved symbol's address is never NULL (a missing one raises AttributeError)
    return tuple(cast(int, ctypes.cast(getattr(lib, pattern.format(r)), ctypes.c_void_p).value)
                 for r in _ROUTINES)


def _point_core_at(name: str) -> None:
    # scipy's cython_blas is the core's built-in default: no addresses to pass.
    _core._set_blas(*(() if name == "scipy" else _adopted[name]))


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


def use(name: str) -> str:
    """Make the core call BLAS library ``name`` (see the module docstring); returns the
    previous name.  Raises ImportError if the library is not installed or fails its check
    (the previous library stays in use)."""
    global _current
    if name not in NAMES:
        raise ValueError(f"name: expected one of {', '.join(NAMES)}, got {name!r}")
    previous = _current
    if name == "scipy" or name in _adopted:     # loaded and checked before: cheap switch
        _point_core_at(name)
    else:
        try:
            lib, pattern = _load_openblas() if name == "openblas" else _load_mkl()
            addresses = _addresses(lib, pattern)
        except (OSError, AttributeError) as exc:
            raise ImportError(f"blas {name!r}: could not load its library ({exc})") from None
        _core._set_blas(*addresses)
        if not _agrees_with_numpy():
            _point_core_at(previous)
            raise ImportError(f"blas {name!r}: results disagree with numpy; not used")
        _libraries[name] = lib
        _adopted[name] = addresses
    _current = name
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
    return names


def _choose_at_import() -> None:
    wanted = os.environ.get("FASTMLP_BLAS", "auto").strip().lower() or "auto"
    if wanted == "auto":
        if "openblas" in available():
            try:
                use("openblas")
            except ImportError:
                pass          # scipy's stays; current() tells
        return
    if wanted not in NAMES:
        raise ImportError(f"FASTMLP_BLAS: expected auto, {', '.join(NAMES)}; got {wanted!r}")
    use(wanted)


_choose_at_import()
