"""``GridSearchCV`` and ``RandomizedSearchCV``: scikit-learn's searches, whose candidates
that can share their batches train together as one stack on each split."""
import time
from collections import defaultdict
from inspect import signature

from sklearn import model_selection as skms
from sklearn.base import clone, is_classifier
from sklearn.metrics._scorer import _MultimetricScorer
from sklearn.model_selection import check_cv
from sklearn.model_selection._validation import (_insert_error_scores,
                                                 _warn_or_raise_about_fit_failures)
from sklearn.utils.parallel import Parallel
from sklearn.utils.validation import _check_method_params, indexable

from fastmlp.model_selection._tasks import search_tasks
from fastmlp.sklearn._base import BaseMLP


class _StackedSearch:
    """``fit`` of a scikit-learn search (the class it is mixed into) with the fits of each
    split grouped into stacks.  Whatever it cannot group it leaves to scikit-learn: a
    search whose estimator is not a fastmlp estimator, that has callbacks (or whose
    estimator has), or whose estimator is given fit parameters other than
    ``sample_weight`` runs scikit-learn's own ``fit`` unchanged."""

    def fit(self, X, y=None, **params):
        """Run fit with all sets of parameters, as scikit-learn's search of the same name
        (same arguments, attributes and results); X: (n_samples, n_features), dense or
        sparse, y: (n_samples,) or (n_samples, n_outputs); ``params``: passed on as
        scikit-learn's search passes them."""
        self._validate_params()
        X, y = indexable(X, y)
        routed = self._get_routed_params_for_fit(_check_method_params(X, params=params))
        if (not isinstance(self.estimator, BaseMLP) or getattr(self, "_skl_callbacks", None)
                or getattr(self.estimator, "_skl_callbacks", None)
                or set(routed.estimator.fit) - {"sample_weight"}):
            return super().fit(X, y, **params)
        scorers, refit_metric = self._get_scorers()
        split_params = routed.splitter.split
        self._checked_cv_orig = check_cv(self.cv, y, classifier=is_classifier(self.estimator))
        self._check_input_parameters(X=X, y=y, split_params=split_params)
        self.n_splits_ = self._checked_cv_orig.get_n_splits(X, y, **split_params)
        base = clone(self.estimator)
        task_kw = dict(scorer=scorers, return_train_score=self.return_train_score,
                       error_score=self.error_score, verbose=self.verbose,
                       fit_params=routed.estimator.fit, score_params=routed.scorer.score)
        all_params, all_out, all_more = [], [], defaultdict(list)
        results = {}

        def evaluate_candidates(candidate_params, cv=None, more_results=None,
                                callback_ctx=None):
            nonlocal results
            candidate_params = list(candidate_params)
            splits = list((cv or self._checked_cv_orig).split(X, y, **split_params))
            if len(splits) != self.n_splits_:
                raise ValueError("cv.split and cv.get_n_splits return inconsistent results. "
                                 f"Expected {self.n_splits_} splits, got {len(splits)}")
            if self.verbose > 0:
                print(f"Fitting {len(splits)} folds for each of {len(candidate_params)} "
                      f"candidates, totalling {len(splits) * len(candidate_params)} fits")
            tasks = search_tasks(base, X, y, candidate_params, splits, task_kw,
                                 self.n_jobs)
            parallel = Parallel(n_jobs=self.n_jobs, pre_dispatch=self.pre_dispatch)
            out = [None] * (len(candidate_params) * len(splits))
            for done in parallel(tasks):
                for index, result in done:
                    out[index] = result
            if len(out) < 1:
                raise ValueError("No fits were performed. Was the CV iterator empty? Were "
                                 "there no candidates?")
            _warn_or_raise_about_fit_failures(out, self.error_score)
            if callable(self.scoring):
                _insert_error_scores(out, self.error_score)
            all_params.extend(candidate_params)
            all_out.extend(out)
            for key, value in (more_results or {}).items():
                all_more[key].extend(value)
            results = self._format_results(all_params, self.n_splits_, all_out, all_more)
            return results

        # scikit-learn >= 1.9 hands its searches' _run_search a callback context, needed
        # even when no callback is set (a search with callbacks runs scikit-learn's fit).
        init = getattr(self, "_init_callback_context", None)
        root = None if init is None else init(
            max_subtasks=1 + (self.refit is not False)).call_on_fit_task_begin(
                estimator=self, X=X, y=y, metadata=None)
        if root is not None and "callback_ctx" in signature(self._run_search).parameters:
            self._run_search(evaluate_candidates, callback_ctx=root)
        else:
            self._run_search(evaluate_candidates)
        first_test_score = all_out[0]["test_scores"]
        self.multimetric_ = isinstance(first_test_score, dict)
        if callable(self.scoring) and self.multimetric_:
            self._check_refit_for_multimetric(first_test_score)
            refit_metric = self.refit
        if self.refit or not self.multimetric_:
            self.best_index_ = self._select_best_index(self.refit, refit_metric, results)
            if not callable(self.refit):
                self.best_score_ = results[f"mean_test_{refit_metric}"][self.best_index_]
            self.best_params_ = results["params"][self.best_index_]
        if self.refit:
            self.best_estimator_ = clone(base).set_params(**clone(self.best_params_,
                                                                  safe=False))
            start = time.time()
            self.best_estimator_.fit(X, y, **routed.estimator.fit)
            self.refit_time_ = time.time() - start
            if hasattr(self.best_estimator_, "feature_names_in_"):
                self.feature_names_in_ = self.best_estimator_.feature_names_in_
        self.scorer_ = scorers._scorers if isinstance(scorers, _MultimetricScorer) else scorers
        self.cv_results_ = results
        if root is not None:
            root.call_on_fit_task_end(estimator=self, X=X, y=y, metadata=None)
        return self


class GridSearchCV(_StackedSearch, skms.GridSearchCV):
    """scikit-learn's ``GridSearchCV`` for fastmlp's ``MLPClassifier`` and
    ``MLPRegressor``: the same parameters, attributes and results (see scikit-learn's
    documentation of ``sklearn.model_selection.GridSearchCV``).

    On each split, the candidates that share their batches — the same ``random_state``
    (an int), ``shuffle``, ``batch_size``, early-stopping split, layer widths, dropout on
    or off and ``class_weight``; a grid over ``alpha``, ``learning_rate_init``,
    ``activation``, ``max_iter``, the solver's settings … — train together, one
    compiled call per epoch for all of them, each ending exactly where its own fit
    would, so ``cv_results_`` equals scikit-learn's search score for score.  Any other
    candidate (``random_state=None``, lbfgs, verbose) is fitted alone, as scikit-learn
    fits it.  Folds and groups are spread over ``n_jobs`` joblib workers; the groups of
    one worker over fastmlp's threads (``fastmlp.set_num_threads``).
    """


class RandomizedSearchCV(_StackedSearch, skms.RandomizedSearchCV):
    """scikit-learn's ``RandomizedSearchCV`` for fastmlp's ``MLPClassifier`` and
    ``MLPRegressor``: the same parameters, attributes and results (see scikit-learn's
    documentation of ``sklearn.model_selection.RandomizedSearchCV``); the sampled
    candidates that share their batches train together on each split, as in
    ``fastmlp.model_selection.GridSearchCV``.
    """
