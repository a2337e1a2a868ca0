"""``TableModel.to_sklearn``: the table model as a fitted scikit-learn Pipeline.

Steps: ``preprocessing``, a ColumnTransformer with one transformer per feature in the
network's input order (so the network's first layer needs no reordering), named
"j:column"; then, for a float32 network, ``float32``, the cast the table model makes
before the network (without it the estimator would compute in float64, as scikit-learn
promotes float32 parameters and float64 data); then ``mlp``, ``from_mlp``'s estimator.

Each transformer is fitted on a few rows made of the saved categories, then given the
saved statistics: a SimpleImputer's ``statistics_`` (the fill value), a StandardScaler's
``mean_``, ``scale_`` and ``var_`` (center, scale, scale²).  They are the same float64
operations as the table model's, (x − center)/scale, so the network sees the same inputs
bit for bit.

What differs from ``TableModel.predict`` (scikit-learn's conventions, kept):

- it takes a DataFrame only; columns other than the features are dropped, not refused;
- missing cells are NaN/None/pd.NA only (not the CSV markers "NA", "" ...); without an
  imputer, a missing number is refused by the estimator's input check, while a missing
  or unseen category is encoded as all zeros without a warning;
- a text column must hold str (the table model also reads numbers as category codes);
- a binary classifier's probabilities are σ of the logit difference (see from_mlp): the
  same to ~1e-16 absolute in float64.
"""
from __future__ import annotations

import functools

import numpy as np
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

from fastmlp.sklearn._from_mlp import from_mlp

# fastmlp train's --impute names, as SimpleImputer's strategies.
_STRATEGY = {"mean": "mean", "median": "median", "most-frequent": "most_frequent"}


def _steps(spec: dict, impute, scale: bool) -> list:
    """[(step name, unfitted transformer), ...] for one feature."""
    steps = []
    if spec["kind"] == "number":
        if spec["fill"] is not None:
            steps.append(("impute", SimpleImputer(strategy=_STRATEGY[impute])))
        if scale:
            steps.append(("scale", StandardScaler()))
        return steps
    if spec["fill"] is not None:
        # Whatever --impute says, train fills text with its most frequent category.
        steps.append(("impute", SimpleImputer(strategy="most_frequent")))
    steps.append(("onehot", OneHotEncoder(categories=[list(spec["categories"])],
                                          handle_unknown="ignore", sparse_output=False)))
    return steps


def _set_statistics(step_name: str, fitted, spec: dict) -> None:
    """Give a fitted step the saved statistics of its feature."""
    if step_name == "impute":
        dtype = np.float64 if spec["kind"] == "number" else object
        fitted.statistics_ = np.array([spec["fill"]], dtype=dtype)
    elif step_name == "scale":
        fitted.mean_ = np.array([spec["center"]], dtype=np.float64)
        fitted.scale_ = np.array([spec["scale"]], dtype=np.float64)
        fitted.var_ = fitted.scale_ ** 2


def _fitting_rows(pd, features, specs):
    """A DataFrame of a few rows holding each text feature's categories (so that each
    encoder sees them) and each number feature's center."""
    n = max([2] + [len(s["categories"]) for s in specs if s["kind"] == "text"])
    return pd.DataFrame({
        name: ([s["categories"][i % len(s["categories"])] for i in range(n)]
               if s["kind"] == "text" else np.full(n, s["center"]))
        for name, s in zip(features, specs)})


def table_pipeline(table_model) -> Pipeline:
    """The fitted Pipeline of ``TableModel.to_sklearn`` (see this module's notes)."""
    try:
        import pandas as pd
    except ImportError:
        raise ImportError("to_sklearn: the pipeline selects the table's columns by name, "
                          "which scikit-learn's ColumnTransformer does on pandas "
                          "DataFrames: pip install pandas") from None
    prep, features = table_model.preprocessing, table_model.features
    names = [f"{j}:{name}".replace("__", "_") for j, name in enumerate(features)]
    transformers = []
    for tname, name, spec in zip(names, features, prep.columns):
        steps = _steps(spec, prep.impute, prep.scale)
        transformer = ("passthrough" if not steps else steps[0][1] if len(steps) == 1
                       else Pipeline(steps))
        transformers.append((tname, transformer, [name]))
    columns = ColumnTransformer(transformers, remainder="drop", sparse_threshold=0.0)
    columns.fit(_fitting_rows(pd, features, prep.columns))
    for tname, spec in zip(names, prep.columns):
        steps = _steps(spec, prep.impute, prep.scale)
        fitted = columns.named_transformers_[tname]
        if len(steps) == 1:
            _set_statistics(steps[0][0], fitted, spec)
        else:
            for step_name, _ in steps:
                _set_statistics(step_name, fitted.named_steps[step_name], spec)
    net = table_model.model
    pipeline = [("preprocessing", columns)]
    if net.dtype == np.float32:
        pipeline.append(("float32", FunctionTransformer(
            functools.partial(np.asarray, dtype=np.float32), feature_names_out="one-to-one")))
    pipeline.append(("mlp", from_mlp(net, table_model.classes)))
    return Pipeline(pipeline)
