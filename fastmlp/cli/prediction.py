"""What a trained model does to DATA, shared by ``fastmlp predict`` and
``fastmlp.load_table_model``: DATA as the network's input (a table transformed with the
model's saved statistics, or sparse rows as they are), and the network's outputs as the
class names or values that ``predict`` writes.  One home for both steps, so that the
command and the Python object cannot come to predict differently.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from fastmlp.cli.data import load_prediction_data
from fastmlp.cli.preprocess import Preprocessing
from fastmlp.cli.sparse import SPARSE_FORMATS, load_sparse, sparse_kind

# What predict --proba and TableModel.predict_proba say to a regressor (after the name of
# the option or method).
REGRESSOR_HAS_NO_PROBA = "the model is a regressor (loss mse)"


def is_classifier(net) -> bool:
    return net.loss_name == "softmax_cross_entropy"


def class_names(net, meta: dict | None) -> list[str]:
    """The class of each output of a classifier, as ``train`` saved them (a model saved
    without a sidecar: its output indices "0", "1", ...)."""
    return (meta or {}).get("classes") or [str(k) for k in range(net.layer_sizes[-1])]


def preprocessing_of(net, meta: dict | None) -> Preprocessing:
    """The model's saved preprocessing; without a sidecar, its inputs taken as they are."""
    return meta["preprocessing"] if meta else Preprocessing.identity(net.layer_sizes[0])


def text_features(prep: Preprocessing, meta: dict | None) -> list:
    """The features the model took as text categories (they are read as text)."""
    features = (meta or {}).get("features")
    return prep.text_features(features) if features else []


def network_input(net, prep: Preprocessing, table, warn=None) -> np.ndarray:
    """``table``'s feature columns (in the model's order) as the network's input: an
    (n, net.layer_sizes[0]) C-ordered array of the model's dtype.  ``warn(message)``
    reports rows with categories not seen in training (default: a line on stderr)."""
    X = prep.transform(table) if warn is None else prep.transform(table, warn)
    return np.ascontiguousarray(X, dtype=net.dtype)


def prediction_inputs(model_path: str, data_path: str, labels, net, meta, warn=None):
    """``predict``'s (network input, raw targets or None) from the file ``data_path``: a
    table transformed with the model's saved statistics, or sparse rows as they are.
    Sparse DATA goes only to a model trained on sparse data (or saved without a sidecar):
    a model of preprocessed columns expects standardised, encoded inputs that sparse rows
    are not.  ``labels``: predict's --labels FILE, or None."""
    kind = sparse_kind(data_path)
    trained_sparse = bool(meta) and meta["data_format"] in SPARSE_FORMATS
    if kind is None and labels is not None:
        raise ValueError(f"--labels: only for sparse DATA (.npz of scipy.sparse.save_npz); "
                         f"the targets of {data_path} are read from the file")
    if kind is not None:
        if meta and not trained_sparse:
            raise ValueError(f"{data_path}: sparse DATA, but {model_path} was trained on "
                             f"{meta['data_format']} columns with their preprocessing")
        X, y = load_sparse(data_path, kind, labels, n_features=net.layer_sizes[0],
                           need_labels=False)
        return sp.csr_matrix(X, dtype=net.dtype), y
    if trained_sparse:
        raise ValueError(f"{model_path} was trained on sparse data ({meta['data_format']}); "
                         f"{data_path} must be sparse too (an svmlight file, or a .npz of "
                         "scipy.sparse.save_npz)")
    prep = preprocessing_of(net, meta)
    table, y = load_prediction_data(data_path, len(prep.columns), meta,
                                    text_features(prep, meta))
    return network_input(net, prep, table, warn), y


def predictions(net, classes: list[str], X) -> np.ndarray:
    """What ``predict`` writes for the network input ``X``: a classifier's class names,
    an (n,) object array of str (``classes[argmax]``); a regressor's outputs, (n, k) of
    the model's dtype."""
    if is_classifier(net):
        return np.array(classes, dtype=object)[net.predict(X)]
    return net.predict(X)
