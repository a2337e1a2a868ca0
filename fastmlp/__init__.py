"""fastmlp: multilayer-perceptron training on the CPU, exact and fast.

``MLP`` is the model; ``load`` reads a saved one; ``fastmlp.kernels`` exposes each compiled
kernel for testing and micro-benchmarks.
"""
from fastmlp.errors import DivergenceError
from fastmlp.io import load
from fastmlp.model import MLP
from fastmlp import kernels
from fastmlp._core import get_workspace_limit, set_workspace_limit

__version__ = "0.1.0"
__all__ = ["MLP", "load", "DivergenceError", "kernels", "get_workspace_limit",
           "set_workspace_limit", "__version__"]
