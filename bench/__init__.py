"""Benchmarks for fastmlp: whole training steps against numpy, PyTorch and scikit-learn.

Run ``python -m bench --help`` from the repository root; see bench/README.md.
"""
import glob
import os
import sys

# The OpenBLAS variables as they were when the benchmark started (OpenBLAS reads them once,
# when it is loaded), reported with every result.
OPENBLAS_VARS = {k: os.environ.get(k) for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE",
                                                 "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")}

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _prefer_installed_fastmlp() -> None:
    """Benchmark the installed, compiled fastmlp rather than the bare source tree.

    ``python -m bench`` puts the repository root first on sys.path, where ``fastmlp/`` has
    no compiled ``_core`` unless it was built in place.  In that case drop the root (this
    package is already imported, so its submodules still load through ``bench.__path__``).
    """
    src = os.path.join(_ROOT, "fastmlp")
    if not os.path.isdir(src) or glob.glob(os.path.join(src, "_core*.so")) \
            or glob.glob(os.path.join(src, "_core*.pyd")):
        return
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _ROOT]


_prefer_installed_fastmlp()
