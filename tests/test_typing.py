"""The typed part of the public API passes ``mypy --strict``.

mypy checks source, not the installed wheel (it refuses to treat site-packages as the
files to check), so this runs on the ``fastmlp/`` folder next to ``tests/``: the
repository, or the unpacked sdist the README runs the suite from.  ``_core.pyi`` stands
in for the compiled core.  Skipped when mypy is not installed (it is in no extra).
"""
from __future__ import annotations

import pathlib
import subprocess
import sys

import pytest

_ROOT = pathlib.Path(__file__).resolve().parent.parent

# --follow-imports=silent: modules outside this list (the scikit-learn layer, the command
# line, the benchmarks) are read for their types but their own errors are not reported.
FILES = ["fastmlp/__init__.py", "fastmlp/io.py", "fastmlp/kernels.py", "fastmlp/errors.py",
         "fastmlp/model.py", "fastmlp/blas.py", "fastmlp/_core.pyi"]


def test_mypy_strict_clean(tmp_path):
    pytest.importorskip("mypy")
    missing = [f for f in FILES if not (_ROOT / f).is_file()]
    if missing:
        pytest.skip(f"sources not next to the tests: {missing}")
    # cache in tmp_path: nothing written into the source tree
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--follow-imports=silent",
         "--cache-dir", str(tmp_path / "mypy_cache"), *FILES],
        cwd=_ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-2000:]
    assert f"no issues found in {len(FILES)} source files" in proc.stdout, proc.stdout
