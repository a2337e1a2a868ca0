"""Benchmarks for fastmlp: whole training steps against numpy, PyTorch and scikit-learn.

Run ``fastmlp bench --help`` (or ``python -m fastmlp.bench --help``); bench/README.md in
the source repository explains the method.  Part of the installed package so that the
benchmark runs from a wheel, against the compiled fastmlp.
"""
import os

# The OpenBLAS variables as they were when the benchmark started (OpenBLAS reads them once,
# when it is loaded), reported with every result.
OPENBLAS_VARS = {k: os.environ.get(k) for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE",
                                                 "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")}
