"""Hyper-parameter searches: fastmlp's ``GridSearchCV`` against scikit-learn's, end to end.

    fastmlp bench --search [--quick] [--json PATH]

Three searches, 5-fold cross-validation, ``random_state=0`` (float64):

- **iris**: ``MLPClassifier(max_iter=200)``, 24 candidates: hidden (16,) / (32,) ×
  ``alpha`` 1e-4, 1e-3, 1e-2 × ``learning_rate_init`` 1e-3, 1e-2 × relu / tanh;
- **digits**: ``MLPClassifier(max_iter=30)``, 24 candidates: hidden (32,) / (64,) and
  the same ``alpha``, ``learning_rate_init`` and activations;
- **diabetes**: ``MLPRegressor(hidden_layer_sizes=(32,), max_iter=200)`` on the
  standardised data, 16 candidates: ``alpha`` 1e-4, 1e-3, 1e-2, 1e-1 ×
  ``learning_rate_init`` 1e-3, 3e-3, 1e-2, 3e-2.

Sides: scikit-learn's ``GridSearchCV`` over scikit-learn's estimator (``n_jobs=2``, what
a user runs today) and over fastmlp's (``n_jobs=1`` and 2), and
``fastmlp.model_selection.GridSearchCV`` (``n_jobs=1`` and 2).  Before timing, both
searches over fastmlp's estimator are checked to give the same ``mean_test_score`` and
``best_params_`` (they are the same fits).  Each side runs once as warm-up (so that the
``n_jobs=2`` sides find joblib's worker pool started), then once a round, interleaved;
medians.  Ratios are to scikit-learn's search over fastmlp's estimator at ``n_jobs=1``.
ConvergenceWarnings (max_iter reached, by design) are silenced.
"""
from __future__ import annotations

import argparse
import warnings

import numpy as np

from fastmlp.bench.harness import (env_summary, environment, fmt_us, measure, require,
                                   publish, summarize)

SHARED = {"alpha": [1e-4, 1e-3, 1e-2], "learning_rate_init": [1e-3, 1e-2],
          "activation": ["relu", "tanh"]}
# name: (data set loader, classifier?, fixed parameters, grid)
CASES = {
    "iris": ("load_iris", True, {"max_iter": 200},
             dict(SHARED, hidden_layer_sizes=[(16,), (32,)])),
    "digits": ("load_digits", True, {"max_iter": 30},
               dict(SHARED, hidden_layer_sizes=[(32,), (64,)])),
    "diabetes": ("load_diabetes", False, {"max_iter": 200, "hidden_layer_sizes": (32,)},
                 {"alpha": [1e-4, 1e-3, 1e-2, 1e-1],
                  "learning_rate_init": [1e-3, 3e-3, 1e-2, 3e-2]}),
}
REFERENCE = "sklearn search, fastmlp, n_jobs=1"
# rounds
SETTINGS = {"full": 5, "quick": 1}


def _data(loader: str):
    import sklearn.datasets
    X, y = getattr(sklearn.datasets, loader)(return_X_y=True)
    X = np.asarray(X, dtype=np.float64)
    if loader == "load_diabetes":
        X = (X - X.mean(axis=0)) / X.std(axis=0)
        y = (y - y.mean()) / y.std()
    return X, y


def _case(name: str) -> dict:
    import sklearn.model_selection as skms
    import sklearn.neural_network as sknn

    import fastmlp
    import fastmlp.model_selection as fms
    loader, classifier, fixed, grid = CASES[name]
    X, y = _data(loader)
    kind = "MLPClassifier" if classifier else "MLPRegressor"
    ours = getattr(fastmlp, kind)(random_state=0, **fixed)
    theirs = getattr(sknn, kind)(random_state=0, **fixed)

    def run(search, est, n_jobs):
        def fit():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return search(est, grid, cv=5, n_jobs=n_jobs).fit(X, y)
        return fit

    fns = {"sklearn search, sklearn MLP, n_jobs=2": run(skms.GridSearchCV, theirs, 2),
           REFERENCE: run(skms.GridSearchCV, ours, 1),
           "sklearn search, fastmlp, n_jobs=2": run(skms.GridSearchCV, ours, 2),
           "fastmlp search, n_jobs=1": run(fms.GridSearchCV, ours, 1),
           "fastmlp search, n_jobs=2": run(fms.GridSearchCV, ours, 2)}
    a, b = fns[REFERENCE](), fns["fastmlp search, n_jobs=1"]()
    if (not np.array_equal(a.cv_results_["mean_test_score"], b.cv_results_["mean_test_score"])
            or a.best_params_ != b.best_params_):
        raise AssertionError(f"{name}: fastmlp's search scores other fits than scikit-learn's")
    return fns


def run(quick: bool = False, cases=tuple(CASES)) -> dict:
    rounds = SETTINGS["quick" if quick else "full"]
    results = []
    for name in cases:
        fns = _case(name)
        timed = measure(fns, rounds, 0.0, 0.0, pause_s=0.2)
        ref = summarize(timed[REFERENCE]["samples_us"])["median_us"]
        for side, t in timed.items():
            s = summarize(t["samples_us"])
            results.append({"case": name, "side": side, **s, "speedup": ref / s["median_us"]})
    return {"reference": REFERENCE, "results": results}


def table(report) -> str:
    lines = [f"speedup against {report['reference']}",
             f"{'case':9s} {'side':40s} {'median':>12s} {'speedup':>8s}"]
    for r in report["results"]:
        lines.append(f"{r['case']:9s} {r['side']:40s} {fmt_us(r['median_us']):>12s} "
                     f"{r['speedup']:7.2f}×")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="fastmlp bench --search", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="one round")
    ap.add_argument("--cases", default=",".join(CASES),
                    help=f"comma list of {', '.join(CASES)}")
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    cases = [c for c in args.cases.split(",") if c]
    unknown = sorted(set(cases) - set(CASES))
    if unknown:
        ap.error(f"--cases: unknown {', '.join(unknown)}; choose from {', '.join(CASES)}")
    require(ap, "search", "sklearn")
    import fastmlp
    env = environment(fastmlp.get_num_threads())
    print(env_summary(env), flush=True)
    report = run(args.quick, cases)
    return publish(table(report), env, report, args.json)


if __name__ == "__main__":
    raise SystemExit(main())
