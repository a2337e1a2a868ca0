"""scikit-learn's hyper-parameter searches over fastmlp's estimators, with the candidates
that can share their batches trained together: ``GridSearchCV``, ``RandomizedSearchCV``.

Modules: _search (the search classes and their ``fit``), _tasks (a search's fits as
joblib tasks: groups of candidates trained as one stack, the others one by one); the
shared fit itself is ``fastmlp.sklearn._shared_fit``.
"""
try:
    import sklearn  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised in a subprocess test
    raise ImportError("fastmlp.model_selection needs scikit-learn (>= 1.6): "
                      "pip install fastmlp[sklearn]") from exc

from fastmlp.model_selection._search import GridSearchCV, RandomizedSearchCV

__all__ = ["GridSearchCV", "RandomizedSearchCV"]
