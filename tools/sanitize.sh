#!/usr/bin/env bash
# Build fastmlp's compiled core with AddressSanitizer + UndefinedBehaviorSanitizer (gcc's
# libasan/libubsan, as Debian ships them) into a separate virtual environment, then run
# the test suite against that build.  See tools/README.md.
#
#   tools/sanitize.sh                 # build, then run the whole test suite
#   tools/sanitize.sh tests/test_fuzz.py -x   # build, then run these pytest arguments
#
# Environment:
#   FASTMLP_SAN_VENV   where the sanitized venv lives (default: .venv-sanitize in the repo)
#   FASTMLP_SAN_SKIP_BUILD=1   reuse the existing sanitized build, only run the tests
#   PYTHON             interpreter for the venv (default: python3)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
VENV="${FASTMLP_SAN_VENV:-$ROOT/.venv-sanitize}"
PYTHON="${PYTHON:-python3}"
CC="${CC:-gcc}"
export CC

SAN="-fsanitize=address,undefined -fsanitize=float-cast-overflow -fno-sanitize-recover=all"
SAN="$SAN -fno-omit-frame-pointer"
LIBASAN="$("$CC" -print-file-name=libasan.so)"
LIBUBSAN="$("$CC" -print-file-name=libubsan.so)"
for lib in "$LIBASAN" "$LIBUBSAN"; do
    if [ ! -e "$lib" ]; then
        echo "sanitize.sh: $CC has no $(basename "$lib"); install gcc's sanitizer runtimes" \
             "(Debian: apt-get install libasan8 libubsan1, or the gcc package)" >&2
        exit 2
    fi
done

if [ "${FASTMLP_SAN_SKIP_BUILD:-0}" != 1 ]; then
    # Build from a clean copy of the sources: the repo's own build/ folder holds objects
    # compiled without the sanitizers, which setuptools would happily reuse.
    SRC="$(mktemp -d)"
    trap 'rm -rf "$SRC"' EXIT
    if git -C "$ROOT" rev-parse --git-dir >/dev/null 2>&1; then
        (cd "$ROOT" && git ls-files -co --exclude-standard -z \
            | xargs -0 cp --parents -t "$SRC" 2>/dev/null || true)
    else
        tar -C "$ROOT" --exclude=build --exclude='.venv*' --exclude='*.so' \
            --exclude=fastmlp/_core.c -cf - . | tar -C "$SRC" -xf -
    fi
    [ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
    echo "::: sanitize: building with $SAN"
    # setup.py passes FASTMLP_CFLAGS to the compiler; distutils appends LDFLAGS to the link.
    # pip always rebuilds a local directory, so a reused venv gets a fresh sanitized build.
    FASTMLP_CFLAGS="-O1 -g $SAN" LDFLAGS="$SAN" "$VENV/bin/pip" install -q "$SRC[test]"
fi

# CPython itself is not instrumented: the ASan runtime must be loaded first (LD_PRELOAD),
# and its leak checker is off because the interpreter keeps memory alive at exit by
# design.  allocator_may_return_null: a failed huge allocation becomes NULL (numpy raises
# MemoryError) as with the system malloc, instead of an ASan report.
export LD_PRELOAD="$LIBASAN:$LIBUBSAN${LD_PRELOAD:+:$LD_PRELOAD}"
export ASAN_OPTIONS="detect_leaks=0:allocator_may_return_null=1:abort_on_error=1:strict_init_order=1:detect_stack_use_after_return=1${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"
# (from / so that the source folder fastmlp/ cannot shadow the installed package)
SO="$(cd / && "$VENV/bin/python" -c 'import fastmlp._core as c; print(c.__file__)')"
NEEDED="$(readelf -d "$SO" | grep NEEDED || true)"
case "$NEEDED" in
    *libasan*) ;;
    *) echo "sanitize.sh: $SO is not linked against libasan" >&2; exit 1 ;;
esac
echo "::: sanitize: $SO needs $(echo "$NEEDED" | grep -o 'lib[a-z]*san[^]]*' | tr '\n' ' ')"

# Canary: prove the instrumentation is live.  A C-contiguous view claiming 64 rows over a
# 2-element array, handed straight to the compiled Engine (which trusts its caller's
# shapes), must be reported as a heap-buffer-overflow — not silently read.
CANARY='
import numpy as np
from numpy.lib.stride_tricks import as_strided
import fastmlp
net = fastmlp.MLP([1, 1], dtype=np.float64, seed=0)
a = np.ones(2)
X = as_strided(a, shape=(64, 1), strides=(8, 8))
net._engine.forward(X, np.empty((64, 1)))
'
if (cd / && ASAN_OPTIONS="$ASAN_OPTIONS:abort_on_error=0" "$VENV/bin/python" -c "$CANARY") \
        >/dev/null 2>"${TMPDIR:-/tmp}/fastmlp-canary.$$"; then
    echo "sanitize.sh: the canary out-of-bounds read was not caught: ASan is not active" >&2
    rm -f "${TMPDIR:-/tmp}/fastmlp-canary.$$"; exit 1
fi
if ! grep -q "AddressSanitizer: heap-buffer-overflow" "${TMPDIR:-/tmp}/fastmlp-canary.$$"; then
    echo "sanitize.sh: the canary failed without an ASan report:" >&2
    tail -20 "${TMPDIR:-/tmp}/fastmlp-canary.$$" >&2; rm -f "${TMPDIR:-/tmp}/fastmlp-canary.$$"
    exit 1
fi
rm -f "${TMPDIR:-/tmp}/fastmlp-canary.$$"
echo "::: sanitize: canary caught (heap-buffer-overflow reported) - instrumentation is live"

cd "$ROOT"
echo "::: sanitize: pytest ${*:-(whole suite)}"
"$VENV/bin/python" -m pytest -q -p no:cacheprovider "$@"
