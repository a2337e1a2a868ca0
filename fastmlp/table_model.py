"""A model that ``fastmlp train`` trained on a table, used from Python on raw tables.

``fastmlp.load("model.npz")`` gives the network alone, whose inputs are the encoded
columns; the statistics that turn a table into those inputs (scaling, one-hot categories,
fill values) are in the sidecar ``model.npz.json``.  ``load_table_model`` reads both, and
its ``predict``/``predict_proba`` take the table itself, going through the functions
``fastmlp predict`` uses (fastmlp.cli.prediction), so that Python and the command give
the same answers, errors and warnings for the same rows.

The modules of the command line are imported here, so fastmlp loads this module on first
use of ``fastmlp.load_table_model``, not with ``import fastmlp``.
"""
from __future__ import annotations

import os
import warnings
from typing import Any

import numpy as np

from fastmlp.cli.data import prediction_columns, prediction_modes, read_sidecar, sidecar_path
from fastmlp.cli.frames import columns_table
from fastmlp.cli.prediction import (REGRESSOR_HAS_NO_PROBA, class_names, is_classifier,
                                    network_input, prediction_inputs, predictions,
                                    text_features)
from fastmlp.cli.preprocess import Preprocessing
from fastmlp.cli.sparse import SPARSE_FORMATS
from fastmlp.model import MLP, load

_TABLES = ("csv", "parquet")
# Where the rows of a DataFrame or dict come from, in messages: "data, row 3, column ...".
_SOURCE = "data"


class TableModel:
    """A network trained by ``fastmlp train`` on a table, with the preprocessing it was
    trained with.  Build one with ``fastmlp.load_table_model(path)``.

    Attributes
    ----------
    model : fastmlp.MLP
        The network; its inputs are the encoded columns (``transform``'s output).
    features : list of str
        The feature columns, in the order the network takes them.
    target : str
        The target column of the training table (allowed, and ignored, in ``data``).
    classes : list of str or None
        A classifier's class names in the order of its outputs: ``predict_proba``'s
        columns, ``fastmlp predict --proba``'s proba_ columns.  None for a regressor.
    preprocessing : fastmlp.cli.preprocess.Preprocessing
        Per feature, its saved statistics (``preprocessing.columns``: center, scale and
        fill of a number column; categories and fill of a text column), ``.impute``
        and ``.scale``.
    path : str
        The model file.

    ``data`` in each method is a pandas DataFrame, a dict of columns (name -> sequence of
    cells) or the path of a .csv or .parquet file.  Its columns are matched to
    ``features`` by name, in any order; the target column may be there.  As for
    ``fastmlp predict``, a missing feature, a column that is neither a feature nor the
    target, a cell that is not a number in a number column, or a missing cell when the
    model was trained without ``--impute``, is a ValueError of one line naming the column
    (and the row: "data, row 3" for a DataFrame or dict, counted from 1; the file's line
    for a CSV).  A category not seen in training is encoded as all zeros, with a
    UserWarning counting the rows (the command's "fastmlp: warning: ..." line).
    """

    def __init__(self, model: MLP, meta: dict, path: str = "") -> None:
        self.model = model
        self.path = path
        self.features: list[str] = list(meta["features"])
        self.target: str = meta["target"]
        self.preprocessing: Preprocessing = meta["preprocessing"]
        self.classes: list[str] | None = class_names(model, meta) if is_classifier(model) \
            else None
        self._meta = meta

    def __repr__(self) -> str:
        kind = (f"classifier of {len(self.classes)} classes" if self.classes is not None
                else f"regressor of {self.model.n_outputs} output(s)")
        return (f"TableModel({self.path!r}: {kind}, features {self.features}, "
                f"target {self.target!r})")

    # ------------------------------------------------------------------ the table
    def transform(self, data: Any) -> np.ndarray:
        """The network's input for ``data``: (n, model.n_inputs) array of the model's
        dtype, C-ordered — numbers filled, standardised, categories one-hot, in the order
        of ``features``."""
        return self._input(data)

    def _input(self, data: Any) -> np.ndarray:
        found: list[str] = []
        if isinstance(data, (str, os.PathLike)):
            X, _ = prediction_inputs(self.path, os.fspath(data), None, self.model,
                                     self._meta, found.append)
        else:
            modes = prediction_modes(_SOURCE, self.features, self.target,
                                     text_features(self.preprocessing, self._meta))
            table, _ = prediction_columns(columns_table(data, modes, _SOURCE),
                                          self.features, self.target)
            X = network_input(self.model, self.preprocessing, table, found.append)
        for message in found:
            # stacklevel 3: the caller of predict / predict_proba / transform.
            warnings.warn(message, UserWarning, stacklevel=3)
        return X

    # ------------------------------------------------------------------ prediction
    def predict(self, data: Any) -> np.ndarray:
        """What ``fastmlp predict`` writes for ``data``'s rows.

        A classifier: (n,) object array of the class names (str).  A regressor: (n,) of
        the model's dtype for one output, else (n, k); ``str`` of each value is the text
        of the command's CSV cell.
        """
        out = predictions(self.model, self.classes or [], self._input(data))
        return out[:, 0] if out.ndim == 2 and out.shape[1] == 1 else out

    def predict_proba(self, data: Any) -> np.ndarray:
        """A classifier's class probabilities: (n, len(classes)) of the model's dtype,
        column j for ``classes[j]`` (the command's proba_ columns, in their order)."""
        if self.classes is None:
            raise ValueError(f"predict_proba: {REGRESSOR_HAS_NO_PROBA}")
        return self.model.predict_proba(self._input(data))

    # ------------------------------------------------------------------ scikit-learn
    def to_sklearn(self):
        """An equivalent, fitted scikit-learn Pipeline that takes a pandas DataFrame:
        a ColumnTransformer of the saved preprocessing (per number column a SimpleImputer
        if the model imputes and a StandardScaler of the saved center and scale, unless
        trained with --no-scale; per text column a OneHotEncoder of the saved categories,
        handle_unknown="ignore", after an imputer if the model imputes), then a fitted
        ``fastmlp.sklearn.MLPClassifier`` or ``MLPRegressor`` holding the network's
        parameters (``fastmlp.sklearn.from_mlp``).  Needs scikit-learn and pandas.
        Details and the differences that remain: ``fastmlp.sklearn._table_pipeline``."""
        from fastmlp.sklearn._table_pipeline import table_pipeline
        return table_pipeline(self)


def load_table_model(path: str | os.PathLike[str]) -> TableModel:
    """The model that ``fastmlp train`` saved at ``path`` from a .csv or .parquet table,
    with its column names and preprocessing (from the sidecar ``path + ".json"``), ready
    to predict on raw tables: see TableModel.

    A model without a sidecar (saved by ``MLP.save``), or trained on sparse data or on
    .npz/.npy arrays (whose columns have no names), is refused with a ValueError: use
    ``fastmlp.load(path)`` for the network, or ``fastmlp predict`` for such data.
    """
    path = os.fspath(path)
    net = load(path)
    meta = read_sidecar(path, net)
    if meta is None:
        raise ValueError(f"path: {path} has no sidecar {sidecar_path(path)}, so no column "
                         "names or preprocessing; load_table_model is for models that "
                         "`fastmlp train` saved from a table (.csv or .parquet); "
                         "fastmlp.load(path) reads the network alone")
    kind = meta["data_format"]
    if kind not in _TABLES:
        what = ("sparse data" if kind in SPARSE_FORMATS
                else "arrays, whose columns have no names")
        raise ValueError(f"path: {path} was trained on {what} ({kind}); load_table_model "
                         "is for models trained on a table (.csv or .parquet); "
                         "fastmlp.load(path) reads the network, and `fastmlp predict` "
                         f"applies its preprocessing to {kind} DATA")
    return TableModel(net, meta, path)
