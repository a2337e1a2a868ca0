"""Build script for the compiled core; metadata lives in pyproject.toml."""
import os

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup

# FASTMLP_DEBUG=1 turns bounds and None checks back on inside the kernels, for debugging.
debug = os.environ.get("FASTMLP_DEBUG", "") == "1"

directives = {
    "language_level": 3,
    "boundscheck": debug,
    "wraparound": False,
    "cdivision": True,
    "initializedcheck": debug,
    "nonecheck": debug,
    "embedsignature": True,
}

# -fno-math-errno lets sqrt, exp and friends vectorise (errno is never read here).
extra_compile_args = os.environ.get("FASTMLP_CFLAGS", "-O3 -fno-math-errno").split()

extensions = [
    Extension(
        "fastmlp._core",
        ["fastmlp/_core.pyx"],
        include_dirs=[np.get_include()],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
        extra_compile_args=extra_compile_args,
        extra_link_args=["-pthread"],      # fastmlp's worker pool, _pool.h
    )
]

setup(ext_modules=cythonize(extensions, compiler_directives=directives))
