"""The classifier's labels as the network sees them: encoded at fit, decoded at predict.

scikit-learn keeps them in a ``LabelBinarizer``, and so does fastmlp (``_label_binarizer``
is what a user, a pickle or a callback may find there).  But each of its calls validates
y again — ``type_of_target``, ``unique_labels`` and ``check_array``, several times over —
and for a small fit that costs more than the training: on iris, fitting the binarizer and
transforming y took some 0.6 ms of a 1.4 ms one-epoch fit.  For the common targets, a 1-D
integer or boolean array (already validated by ``validate_data``) and two or more
classes, or a decoding of binary and multiclass outputs, the functions here compute the
binarizer's answer directly; anything else goes through the binarizer itself, so strings,
floats, multilabel targets and every error keep scikit-learn's handling.
"""
import numpy as np
from sklearn.metrics import accuracy_score
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils.multiclass import unique_labels

# Kinds of target (LabelBinarizer.y_type_) whose encoding and decoding are computed here.
_BINARY, _MULTICLASS = "binary", "multiclass"


def _plain(y):
    """True for a 1-D ndarray of integers or booleans: labels whose type_of_target is
    binary or multiclass by their count alone, and whose unique_labels np.unique gives
    (same values, same dtype)."""
    return type(y) is np.ndarray and y.ndim == 1 and y.dtype.kind in "biu" and y.size > 0


def _indicator(codes, n_classes):
    """LabelBinarizer's (n, 1) column for two classes, else its (n, n_classes) one-hot,
    as booleans (the core takes bool targets: they keep float32 training in float32)."""
    if n_classes == 2:
        return (codes == 1).reshape(-1, 1)
    Y = np.zeros((codes.shape[0], n_classes), dtype=bool)
    Y[np.arange(codes.shape[0]), codes] = True
    return Y


def fit_binarizer(y):
    """``(LabelBinarizer().fit(y), its transform(y) as bool)`` for validated labels y."""
    binarizer = LabelBinarizer()
    if _plain(y):
        classes, codes = np.unique(y, return_inverse=True)
        if classes.shape[0] >= 2:
            # The attributes LabelBinarizer.fit documents and sets, from the same facts.
            binarizer.y_type_ = _BINARY if classes.shape[0] == 2 else _MULTICLASS
            binarizer.sparse_input_ = False
            binarizer.classes_ = classes
            return binarizer, _indicator(codes, classes.shape[0])
    binarizer.fit(y)
    return binarizer, binarizer.transform(y).astype(bool)


def classes_of(y):
    """``unique_labels(y)``: the sorted distinct labels of validated y."""
    return np.unique(y) if _plain(y) else unique_labels(y)


def encode(binarizer, y):
    """``binarizer.transform(y)`` as bool, for validated labels y of a fitted binarizer."""
    classes = binarizer.classes_
    if (_plain(y) and binarizer.y_type_ in (_BINARY, _MULTICLASS) and classes.shape[0] >= 2
            and classes.dtype == y.dtype and not binarizer.sparse_output
            and binarizer.neg_label == 0 and binarizer.pos_label == 1):
        codes = np.searchsorted(classes, y).clip(0, classes.shape[0] - 1)
        # A label outside classes_ is a row of zeros for the binarizer: its own path.
        if np.array_equal(classes[codes], y):
            return _indicator(codes, classes.shape[0])
    return binarizer.transform(y).astype(bool)


def decode(binarizer, y_pred):
    """``binarizer.inverse_transform(y_pred)`` (y_pred the output layer, raveled for one
    output): argmax for multiclass, threshold ½ for binary targets."""
    kind, classes = binarizer.y_type_, binarizer.classes_
    if kind == _MULTICLASS and y_pred.ndim == 2 and y_pred.shape[1] == len(classes):
        return classes.take(y_pred.argmax(axis=1), mode="clip")
    if kind == _BINARY and y_pred.ndim == 1 and len(classes) == 2 \
            and binarizer.pos_label == 1 and binarizer.neg_label == 0:
        return classes[np.array(y_pred > 0.5, dtype=int)]
    return binarizer.inverse_transform(y_pred)


def accuracy(y, y_pred, sample_weight=None):
    """``accuracy_score(y, y_pred, sample_weight=sample_weight)``; computed directly (as
    scikit-learn's numpy path does: the weighted mean of y == y_pred) when y and y_pred
    are plain labels of one dtype and length, without its target checks, which cost a
    millisecond a call: a search's every score, an early-stopping fit's every epoch.
    sample_weight: None or a validated (n,) array."""
    if (_plain(y) and type(y_pred) is np.ndarray and y_pred.dtype == y.dtype
            and y_pred.shape == y.shape):
        return float(np.average(y == y_pred, weights=sample_weight))
    return accuracy_score(y, y_pred, sample_weight=sample_weight)
