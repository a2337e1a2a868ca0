"""The classifier's label encoding (fastmlp/sklearn/_labels.py) against scikit-learn's
LabelBinarizer, which it must reproduce exactly: the same fitted attributes, the same
encoded targets (as booleans), the same decoded labels with the same dtype.  Labels are
discrete, so every comparison is exact."""
import numpy as np
import pytest

pytest.importorskip("sklearn")

from sklearn.metrics import accuracy_score  # noqa: E402
from sklearn.preprocessing import LabelBinarizer  # noqa: E402
from sklearn.utils.multiclass import unique_labels  # noqa: E402

from fastmlp.sklearn._labels import (accuracy, classes_of, decode, encode,  # noqa: E402
                                     fit_binarizer)

rng = np.random.default_rng(0)
TARGETS = {
    "int64 binary": rng.integers(0, 2, 50),
    "int64 multiclass": rng.integers(-2, 5, 50),
    "int32 multiclass": rng.integers(0, 4, 50).astype(np.int32),
    "uint8 binary, not 0/1": np.where(rng.random(50) < 0.4, 3, 250).astype(np.uint8),
    "bool": rng.random(50) < 0.5,
    "strings": np.array(["cat", "dog", "emu"])[rng.integers(0, 3, 50)],
    "objects": np.array(["no", "yes"], dtype=object)[rng.integers(0, 2, 50)],
    "float labels": rng.integers(0, 3, 50).astype(np.float64),
    "one class": np.full(20, 4),
    "multilabel": (rng.random((50, 3)) < 0.5).astype(int),
}


def _assert_same_binarizer(ours, theirs):
    assert set(vars(ours)) == set(vars(theirs))
    for name, value in vars(theirs).items():
        got = getattr(ours, name)
        if isinstance(value, np.ndarray):
            assert got.dtype == value.dtype, name
            np.testing.assert_array_equal(got, value, err_msg=name)
        else:
            assert got == value, name


@pytest.mark.parametrize("name", TARGETS)
def test_fit_binarizer_is_label_binarizer(name):
    y = TARGETS[name]
    theirs = LabelBinarizer().fit(y)
    ours, Y = fit_binarizer(y)
    _assert_same_binarizer(ours, theirs)
    expected = theirs.transform(y).astype(bool)
    assert Y.dtype == bool and Y.shape == expected.shape
    np.testing.assert_array_equal(Y, expected)
    # and the encoding with a fitted binarizer (warm_start, partial_fit) is the same
    np.testing.assert_array_equal(encode(theirs, y), expected)
    got = classes_of(y)
    assert got.dtype == unique_labels(y).dtype
    np.testing.assert_array_equal(got, unique_labels(y))


@pytest.mark.parametrize("y", [np.array([0, 1, 2, 9]), np.array([5, 5, 5]),
                               np.array([0, 1, 2], dtype=np.int32)])
def test_encode_of_labels_outside_or_unlike_the_classes_is_the_binarizers(y):
    # 9 is not a class (the binarizer's row of zeros), a single repeated class, and int32
    # labels for int64 classes all take the binarizer's own path, with its result.
    theirs = LabelBinarizer().fit(np.array([0, 1, 2, 5]))
    np.testing.assert_array_equal(encode(theirs, y), theirs.transform(y).astype(bool))


@pytest.mark.parametrize("classes", [["no", "yes"], [3, 7], ["a", "b", "c", "d"], [0, 1, 2]])
def test_decode_is_inverse_transform(classes):
    binarizer = LabelBinarizer().fit(np.asarray(classes))
    k = 1 if len(classes) == 2 else len(classes)
    for y in (rng.random((40, k)), rng.random((40, k)) > 0.5, np.full((3, k), 0.5)):
        y = y.ravel() if k == 1 else y
        got, expected = decode(binarizer, y), binarizer.inverse_transform(y)
        assert got.dtype == expected.dtype
        np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("name", ["int64 multiclass", "int32 multiclass", "bool", "strings",
                                  "uint8 binary, not 0/1"])
@pytest.mark.parametrize("weights", [None, "float64", "float32"])
def test_accuracy_is_accuracy_score(name, weights):
    # The same float, bit for bit: both take the (weighted) mean of y == y_pred.
    y = TARGETS[name]
    y_pred = rng.permutation(y)
    sw = None if weights is None else rng.random(y.shape[0]).astype(weights)
    got, expected = accuracy(y, y_pred, sw), accuracy_score(y, y_pred, sample_weight=sw)
    assert type(got) is float and got == expected
    # unlike dtypes or lengths go to accuracy_score itself, with its errors
    assert accuracy(y, list(y_pred)) == accuracy_score(y, list(y_pred))
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        accuracy(y, y_pred[:-1])
