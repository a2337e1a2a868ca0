"""Source-checkout alias of the installed ``fastmlp.bench``.

The benchmark code lives in the package (fastmlp/bench/), so that ``fastmlp bench`` works
from a wheel.  This folder keeps its documentation and results, and keeps the older
commands working from the repository root: ``python -m bench``, ``python -m bench.kernels``
and ``python -m bench.estimators`` run fastmlp.bench's modules of the same names.
"""
import glob
import os
import sys

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _prefer_installed_fastmlp() -> None:
    """Benchmark the installed, compiled fastmlp rather than the bare source tree.

    ``python -m bench`` puts the repository root first on sys.path, where ``fastmlp/`` has
    no compiled ``_core`` unless it was built in place, so ``import fastmlp`` would fail.
    In that case drop the root (this module is already imported, so nothing else of this
    folder needs it).
    """
    src = os.path.join(_ROOT, "fastmlp")
    if not os.path.isdir(src) or glob.glob(os.path.join(src, "_core*.so")) \
            or glob.glob(os.path.join(src, "_core*.pyd")):
        return
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _ROOT]


_prefer_installed_fastmlp()

import fastmlp.bench  # noqa: E402

# Submodules (bench.run, bench.__main__, ...) are looked up in fastmlp.bench's folder.
__path__ = list(fastmlp.bench.__path__)
