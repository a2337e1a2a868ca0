"""fastmlp's scikit-learn estimators in a grid search spread over a real Dask cluster.

Two worker processes on loopback, one thread each, reached through joblib's Dask backend —
the way scikit-learn code is scaled out without changes.  The search must find exactly what
the same search finds serially.  Skipped without dask.distributed.
"""
import logging
import os
import warnings

import numpy as np
import pytest

pytest.importorskip("sklearn")
distributed = pytest.importorskip("distributed")
import dask  # noqa: E402
import joblib  # noqa: E402
from sklearn.datasets import make_classification  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.model_selection import GridSearchCV  # noqa: E402
from threadpoolctl import threadpool_info, threadpool_limits  # noqa: E402

from fastmlp import MLPClassifier  # noqa: E402

# BLAS reads its thread count once, when the library loads, so it must be in the worker's
# environment before the worker process starts.  Dask's nanny sets these variables
# (`distributed.nanny.pre-spawn-environ`) before it spawns a worker; they are Dask's
# defaults already, set here explicitly so that the test does not depend on the user's
# Dask configuration.  One BLAS thread per single-threaded worker keeps 2 workers on 2
# cores instead of 2 × n_cores threads.
ONE_THREAD = {"OMP_NUM_THREADS": 1, "OPENBLAS_NUM_THREADS": 1, "MKL_NUM_THREADS": 1}


@pytest.fixture(scope="module")
def client():
    environ = dict(os.environ)
    key = "distributed.nanny.pre-spawn-environ"
    with dask.config.set({key: {**dask.config.get(key, {}), **ONE_THREAD}}):
        cluster = distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
            dashboard_address=None, silence_logs=logging.ERROR)
    try:
        with distributed.Client(cluster) as c:
            yield c
    finally:
        cluster.close()
        # The nanny runs in this process and writes the pre-spawn variables into its
        # environment; put it back so later tests' subprocesses are not affected.
        os.environ.clear()
        os.environ.update(environ)


def test_workers_run_one_blas_thread(client):
    # Defined here, not at module level, so that cloudpickle ships the function by value:
    # the workers cannot import this test module.
    def blas_threads():
        import fastmlp  # noqa: F401  (loads scipy's OpenBLAS, the BLAS fastmlp calls)
        import scipy.linalg.cython_blas  # noqa: F401
        return [(pool["internal_api"], pool["num_threads"]) for pool in threadpool_info()]

    pools = client.run(blas_threads)
    assert len(pools) == 2
    for worker, info in pools.items():
        assert any(api == "openblas" for api, _ in info), (worker, info)
        assert all(n == 1 for _, n in info), (worker, info)


def _search():
    X, y = make_classification(n_samples=240, n_features=10, n_informative=6, n_classes=3,
                               random_state=0)
    grid = {"hidden_layer_sizes": [(8,), (16,)], "alpha": [1e-4, 1e-1],
            "solver": ["adam", "sgd"]}
    est = MLPClassifier(max_iter=30, learning_rate_init=0.01, random_state=0)
    return GridSearchCV(est, grid, cv=3, n_jobs=2), X, y


def test_grid_search_on_dask_equals_serial(client):
    search, X, y = _search()
    with joblib.parallel_backend("dask"), distributed.get_task_stream(client) as tasks, \
            warnings.catch_warnings():
        # 30 epochs leave some fits unconverged; that is fine for comparing two runs.
        warnings.simplefilter("ignore", ConvergenceWarning)
        search.fit(X, y)
    # The fits ran on the cluster's workers, not in this process.
    workers = {t["worker"] for t in tasks.data}
    assert workers and workers <= set(client.scheduler_info()["workers"]), workers

    serial, _, _ = _search()
    _assert_same_as_serial(search, serial, X, y)


def _assert_same_as_serial(search, serial, X, y):
    # ``serial`` fitted here at n_jobs=1 and one BLAS thread must find what ``search``
    # found: same data, same random_state, same single-threaded BLAS, so the same
    # arithmetic, and the scores are equal, not just close.
    serial.set_params(n_jobs=1)
    with warnings.catch_warnings(), threadpool_limits(1):
        warnings.simplefilter("ignore", ConvergenceWarning)
        serial.fit(X, y)
    assert search.best_params_ == serial.best_params_
    for key in ("mean_test_score", "std_test_score", "rank_test_score"):
        np.testing.assert_array_equal(search.cv_results_[key], serial.cv_results_[key])


def test_fastmlps_grouped_search_on_dask_equals_scikit_learns_serial(client):
    # fastmlp.model_selection's tasks (groups of candidates fitted together) go through
    # the same joblib backend: on the cluster, and scored as scikit-learn's search
    # scores the same fits one by one here.
    import fastmlp.model_selection
    search, X, y = _search()
    ours = fastmlp.model_selection.GridSearchCV(**search.get_params(deep=False))
    with joblib.parallel_backend("dask"), distributed.get_task_stream(client) as tasks, \
            warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ours.fit(X, y)
    workers = {t["worker"] for t in tasks.data}
    assert workers and workers <= set(client.scheduler_info()["workers"]), workers
    _assert_same_as_serial(ours, search, X, y)
