"""A search's fits as tasks: on each split, the candidates that can share their batches
(``batch_key``) fitted together as one stack, the others one ``_fit_and_score`` each, as
scikit-learn's search runs every candidate."""
import time
import traceback
from collections import defaultdict
from numbers import Number

from joblib import effective_n_jobs
from sklearn.base import clone
from sklearn.metrics._scorer import _MultimetricScorer
from sklearn.model_selection._validation import _fit_and_score, _score
from sklearn.utils.metaestimators import _safe_split
from sklearn.utils.parallel import delayed
from sklearn.utils.validation import _check_method_params, _num_samples

from fastmlp.sklearn._shared_fit import batch_key, fit_together


def search_tasks(base, X, y, candidate_params, splits, task_kw, n_jobs=1):
    """The delayed calls of one ``evaluate_candidates``: one per group of candidates that
    share their batches on a split (largest first, so that parallel workers end
    together; halved while there are fewer groups than four per ``n_jobs`` worker, so
    that no worker waits long for the last), one per candidate that does not.  Each
    returns [(index, result), …], ``index`` = candidate · n_splits + split
    (scikit-learn's order of results) and ``result`` the dict ``_fit_and_score``
    returns.  ``task_kw``: the keyword arguments every task fits and scores with
    (scorer, return_train_score, error_score, verbose, fit_params, score_params)."""
    n_splits, n_candidates = len(splits), len(candidate_params)
    # Each candidate's key once (it does not depend on the split); each split's fits
    # their own clones of it.
    protos = [clone(base).set_params(**clone(params, safe=False))
              for params in candidate_params]
    keys = [batch_key(est) for est in protos]
    groups, singles = [], []
    for s in range(n_splits):
        by_key = defaultdict(list)
        for c, (proto, key) in enumerate(zip(protos, keys)):
            if key is None:
                singles.append((c, s))
            else:
                by_key[key].append((c, proto if s == 0 else clone(proto)))
        for members in by_key.values():
            if len(members) == 1:
                singles.append((members[0][0], s))
            else:
                groups.append((s, members))
    groups.sort(key=lambda g: -len(g[1]))
    while groups and len(groups) < 4 * effective_n_jobs(n_jobs) and len(groups[0][1]) >= 4:
        s, members = groups.pop(0)
        groups += [(s, members[:len(members) // 2]), (s, members[len(members) // 2:])]
        groups.sort(key=lambda g: -len(g[1]))
    tasks = [delayed(_fit_and_score_group)(
        [est for _, est in members], X, y, train=splits[s][0], test=splits[s][1],
        indices=[c * n_splits + s for c, _ in members],
        parameters=[candidate_params[c] for c, _ in members],
        split_progress=(s, n_splits), **task_kw)
        for s, members in groups]
    tasks += [delayed(_fit_and_score_one)(
        base, X, y, train=splits[s][0], test=splits[s][1], index=c * n_splits + s,
        parameters=candidate_params[c], split_progress=(s, n_splits),
        candidate_progress=(c, n_candidates), **task_kw)
        for c, s in singles]
    return tasks


def _fit_and_score_one(base, X, y, *, train, test, index, parameters, split_progress,
                       candidate_progress, scorer, return_train_score, error_score, verbose,
                       fit_params, score_params):
    # scikit-learn's own fit of one candidate on one split, unchanged.
    return [(index, _fit_and_score(
        clone(base), X, y, scorer=scorer, train=train, test=test, verbose=verbose,
        parameters=parameters, fit_params=fit_params, score_params=score_params,
        return_train_score=return_train_score, return_n_test_samples=True,
        return_times=True, return_parameters=False, error_score=error_score,
        split_progress=split_progress, candidate_progress=candidate_progress))]


def _fit_and_score_group(ests, X, y, *, train, test, indices, parameters, split_progress,
                         scorer, return_train_score, error_score, verbose, fit_params,
                         score_params):
    """Fit ``ests`` (one ``batch_key``, their parameters set) together on the split's
    training rows and score each as ``_fit_and_score`` scores one: the same result dict,
    with each fit's time the group's fit time shared equally among its estimators.
    ``fit_params``: {} or the sample weights of all rows; ``score_params``: the scorer's,
    both split with the rows as ``_fit_and_score`` splits them."""
    X_train, y_train = _safe_split(ests[0], X, y, train)
    X_test, y_test = _safe_split(ests[0], X, y, test, train)
    sample_weight = _check_method_params(X, params=fit_params, indices=train).get(
        "sample_weight")
    score_train = _check_method_params(X, params=score_params, indices=train)
    score_test = _check_method_params(X, params=score_params, indices=test)
    start = time.time()
    errors = fit_together(ests, X_train, y_train, sample_weight)
    fit_time = (time.time() - start) / len(ests)
    out = []
    for est, error, index, params in zip(ests, errors, indices, parameters):
        result = {"fit_time": fit_time, "n_test_samples": _num_samples(X_test)}
        if error is not None:
            if error_score == "raise":
                raise error
            failed = ({name: error_score for name in scorer._scorers}
                      if isinstance(scorer, _MultimetricScorer) else error_score)
            result.update(fit_error="".join(traceback.format_exception(error)),
                          test_scores=failed, score_time=0.0)
            if return_train_score:
                result["train_scores"] = (failed.copy() if isinstance(failed, dict)
                                          else failed)
        else:
            t = time.time()
            result.update(fit_error=None, test_scores=_score(est, X_test, y_test, scorer,
                                                             score_test, error_score))
            result["score_time"] = time.time() - t
            if return_train_score:
                result["train_scores"] = _score(est, X_train, y_train, scorer, score_train,
                                                error_score)
        if verbose > 1:
            _print_end(result, params, split_progress, verbose)
        out.append((index, result))
    return out


def _print_end(result, params, split_progress, verbose):
    # The line scikit-learn's search prints when a fit ends (verbose > 1), its scores
    # from verbose > 2.
    progress = f" {split_progress[0] + 1}/{split_progress[1]}" if verbose > 2 else ""
    msg = ", ".join(f"{k}={params[k]}" for k in sorted(params)) + (";" if params else "")
    if verbose > 2:
        test, train = result["test_scores"], result.get("train_scores")
        if isinstance(test, dict):
            for name in sorted(test):
                msg += f" {name}: ("
                msg += f"train={train[name]:.3f}, " if train is not None else ""
                msg += f"test={test[name]:.3f})"
        elif isinstance(test, Number):
            msg += (f", score=(train={train:.3f}, test={test:.3f})" if train is not None
                    else f", score={test:.3f}")
    msg += f" total time={result['fit_time'] + result['score_time']:.1f}s"
    head = f"[CV{progress}] END "
    print(head + "." * (80 - len(head) - len(msg)) + msg)
