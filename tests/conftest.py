"""Test configuration: make sure the compiled, installed package is what gets tested.

`python -m pytest` puts the working directory on sys.path, where the uncompiled source
folder `fastmlp/` would shadow the installed package; drop it so that the tests always
exercise what `pip install` built.  The tests folder itself goes on the path so that
helpers such as `reference.py` import by name.
"""
import os
import pathlib
import subprocess
import sys

import pytest

_TESTS = pathlib.Path(__file__).resolve().parent
_ROOT = _TESTS.parent

if os.environ.get("FASTMLP_ALLOW_INPLACE") != "1":
    sys.path[:] = [p for p in sys.path if pathlib.Path(p or ".").resolve() != _ROOT]
if str(_TESTS) not in sys.path:
    sys.path.insert(0, str(_TESTS))

import fastmlp  # noqa: E402

if os.environ.get("FASTMLP_ALLOW_INPLACE") != "1" and \
        pathlib.Path(fastmlp.__file__).resolve().parent == _ROOT / "fastmlp":
    raise RuntimeError("tests imported fastmlp from the source tree instead of the installed "
                       "package; run `pip install .` first")


def pytest_report_header(config):
    return f"fastmlp {fastmlp.__version__} from {pathlib.Path(fastmlp.__file__).parent}"


@pytest.fixture
def python_prints_ok(tmp_path):
    """Run `code` in a fresh interpreter (from tmp_path, without PYTHONPATH) and assert that
    it exits cleanly printing exactly "ok": for what must be seen in a new process, such as
    an import that is hidden or absent."""
    def run(code: str) -> None:
        out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path,
                             env=dict(os.environ, PYTHONPATH=""), capture_output=True,
                             text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == "ok"
    return run
