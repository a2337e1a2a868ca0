"""fastmlp: multilayer-perceptron training on the CPU, exact and fast.

``MLP`` is the model; ``MLPStack`` trains many of them on the same batches in one call;
``load`` reads a saved one; ``fastmlp.kernels`` exposes each compiled
kernel for testing and micro-benchmarks.  ``MLPClassifier`` and ``MLPRegressor`` (from
``fastmlp.sklearn``, loaded on first use) are scikit-learn drop-in estimators; they need
scikit-learn (``pip install fastmlp[sklearn]``), ``import fastmlp`` does not.
``load_table_model`` (from ``fastmlp.table_model``, loaded on first use) reads a model
that ``fastmlp train`` trained on a table, to predict from Python on raw tables.
"""
from typing import TYPE_CHECKING, Any

from fastmlp.errors import DivergenceError, DivergenceWarning
from fastmlp.model import MLP, load
from fastmlp.stack import MLPStack
from fastmlp import blas, kernels, threads
from fastmlp._core import get_workspace_limit, set_workspace_limit
from fastmlp._version import __version__
from fastmlp.threads import get_num_threads, set_num_threads

__all__ = ["MLP", "MLPStack", "load", "DivergenceError", "DivergenceWarning", "blas", "kernels", "threads",
           "get_workspace_limit", "set_workspace_limit", "get_num_threads", "set_num_threads",
           "__version__"]


_SKLEARN_NAMES = ("MLPClassifier", "MLPRegressor")
# Lazy too: the table model is built on the command line's modules (its sidecar, the
# preprocessing), which `import fastmlp` need not load.
_TABLE_NAMES = ("load_table_model", "TableModel")

if TYPE_CHECKING:
    # Type checkers see the real classes; at run time __getattr__ loads them.
    from fastmlp import sklearn
    from fastmlp.sklearn import MLPClassifier, MLPRegressor
    from fastmlp.table_model import TableModel, load_table_model


def __getattr__(name: str) -> Any:
    # Lazy: scikit-learn is optional, so fastmlp.sklearn is imported on first use only.
    # Without scikit-learn this raises ImportError naming `pip install fastmlp[sklearn]`.
    if name in _SKLEARN_NAMES or name == "sklearn":
        import importlib
        module = importlib.import_module("fastmlp.sklearn")
        return module if name == "sklearn" else getattr(module, name)
    if name in _TABLE_NAMES:
        import importlib
        return getattr(importlib.import_module("fastmlp.table_model"), name)
    raise AttributeError(f"module 'fastmlp' has no attribute {name!r}")
