"""The feature columns as the network sees them, for ``fastmlp train`` and ``predict``:
missing cells filled (``--impute``), numbers standardised (unless ``--no-scale``), text
categories one-hot encoded.

Every statistic comes from the training rows only and is kept as plain JSON in the model's
sidecar, so that ``predict`` repeats the transformation with numpy alone.  Steps run in
that order: a column's mean and standard deviation are those of its imputed values.

A category that the training rows did not contain (a new value at ``predict``, or one
that only the validation rows hold) is encoded as all zeros — no known category — with a
warning that counts the rows, rather than refused: one new value in a large file should
not stop every other row from being predicted, and whether a rare category falls in the
validation rows should not decide whether training succeeds.
"""
from __future__ import annotations

import sys

import numpy as np

IMPUTE = ("mean", "median", "most-frequent")
# More distinct values than this in a text column is an identifier or free text, not a
# category: its one-hot encoding would be as wide as the table is long.
MAX_CATEGORIES = 1000
_NUMBER, _TEXT = "number", "text"


def _warn(message: str) -> None:
    print(f"fastmlp: warning: {message}", file=sys.stderr)


def _most_frequent(values: np.ndarray):
    """The most frequent value; ties go to the smallest (np.unique sorts)."""
    uniques, counts = np.unique(values, return_counts=True)
    return uniques[np.argmax(counts)]


class Preprocessing:
    """What ``train`` learnt about each feature column, and how to apply it.

    ``columns`` holds, per feature in order, ``{"kind": "number", "center", "scale",
    "fill"}`` (the network sees ``(x - center) / scale``) or ``{"kind": "text",
    "categories", "fill"}`` (one input per category, in sorted order); ``fill`` is the
    imputed value, or None when missing cells are refused.
    """

    def __init__(self, columns: list[dict], impute: str | None = None, scale: bool = False):
        self.columns, self.impute, self.scale = columns, impute, scale

    @property
    def width(self) -> int:
        """The number of network inputs the features become."""
        return sum(1 if c["kind"] == _NUMBER else len(c["categories"]) for c in self.columns)

    def text_features(self, names) -> list:
        """Those of ``names`` (the features, in order) that are text categories."""
        return [n for n, c in zip(names, self.columns) if c["kind"] == _TEXT]

    @classmethod
    def identity(cls, n_features: int) -> "Preprocessing":
        """Numbers passed through unchanged: a model saved before preprocessing existed."""
        return cls([{"kind": _NUMBER, "center": 0.0, "scale": 1.0, "fill": None}
                    for _ in range(n_features)])

    # ------------------------------------------------------------------ learning
    @classmethod
    def fit(cls, table, *, scale: bool = True, impute: str | None = None) -> "Preprocessing":
        """Learn the statistics of each column of ``table`` (the training rows)."""
        if impute is not None and impute not in IMPUTE:
            raise ValueError(f"--impute: expected one of {', '.join(IMPUTE)}, got {impute!r}")
        columns = []
        for column in table.columns:
            missing = column.missing()
            if missing.any() and impute is None:
                raise _missing(table, column, missing, training=True)
            present = column.values[~missing]
            if len(present) == 0:
                raise ValueError(f"{table.path}: column {column.name!r} has no values in the "
                                 "training rows")
            if column.is_text:
                columns.append(_fit_text(table, column, present, impute))
            else:
                columns.append(_fit_number(column.values, missing, present, impute, scale))
        return cls(columns, impute, scale)

    # ------------------------------------------------------------------ applying
    @staticmethod
    def check_complete(table) -> None:
        """Refuse a missing cell anywhere in ``table`` (training without --impute: the
        validation rows are checked too, before any training)."""
        for column in table.columns:
            missing = column.missing()
            if missing.any():
                raise _missing(table, column, missing, training=True)

    def transform(self, table, warn=_warn) -> np.ndarray:
        """``table``'s feature columns (in the model's order) as the network's (n, width)
        float64 input."""
        out = np.zeros((len(table), self.width))
        offset = 0
        for spec, column in zip(self.columns, table.columns):
            if column.is_text != (spec["kind"] == _TEXT):
                expected = "text categories" if spec["kind"] == _TEXT else "numbers"
                raise ValueError(f"{table.path}: column {column.name!r}: the model was "
                                 f"trained on {expected} in this column")
            missing = column.missing()
            if missing.any() and spec["fill"] is None:
                raise _missing(table, column, missing, training=False)
            if spec["kind"] == _NUMBER:
                x = np.where(missing, spec["fill"], column.values) if missing.any() \
                    else column.values
                out[:, offset] = (x - spec["center"]) / spec["scale"]
                offset += 1
            else:
                index = {name: k for k, name in enumerate(spec["categories"])}
                fill = -1 if spec["fill"] is None else index[spec["fill"]]
                # Code -1 (missing) picks the last entry: the filled category's index.
                lookup = np.array([index.get(c, -1) for c in column.categories] + [fill],
                                  dtype=np.int64)
                k = lookup[column.values]
                unseen = np.flatnonzero(k < 0)
                if len(unseen):
                    names = sorted({column.categories[c] for c in column.values[unseen]})
                    shown = ", ".join(map(repr, names[:3])) + (", ..." if len(names) > 3 else "")
                    warn(f"{table.path}: column {column.name!r}: {len(unseen):,} row(s) with "
                         f"categories not seen in training ({shown}), encoded as all zeros")
                rows = np.flatnonzero(k >= 0)
                out[rows, offset + k[rows]] = 1.0
                offset += len(spec["categories"])
        return out

    # ------------------------------------------------------------------ the sidecar
    def to_json(self) -> dict:
        """Plain JSON types: what the sidecar stores."""
        return {"impute": self.impute, "scale": self.scale, "columns": self.columns}

    @classmethod
    def from_json(cls, data) -> "Preprocessing":
        """The inverse of ``to_json``; a ValueError if ``data`` is not what it wrote."""
        ok = (isinstance(data, dict) and data.get("impute") in (None, *IMPUTE)
              and isinstance(data.get("scale"), bool) and isinstance(data.get("columns"), list)
              and len(data["columns"]) > 0 and all(map(_valid_spec, data["columns"])))
        if not ok:
            raise ValueError("preprocessing: not as fastmlp train writes it")
        return cls(data["columns"], data["impute"], data["scale"])


def _fit_number(values, missing, present, impute, scale) -> dict:
    fill = None
    if impute == "mean":
        fill = float(np.mean(present))
    elif impute == "median":
        fill = float(np.median(present))
    elif impute == "most-frequent":
        fill = float(_most_frequent(present))
    x = np.where(missing, fill, values) if missing.any() else values
    center, spread = (float(np.mean(x)), float(np.std(x))) if scale else (0.0, 1.0)
    if np.ptp(x) == 0:
        # A constant column: centred to 0, not divided by its zero (or rounding-noise)
        # standard deviation.
        spread = 1.0
    return {"kind": _NUMBER, "center": center, "scale": spread, "fill": fill}


def _fit_text(table, column, present, impute) -> dict:
    counts = np.bincount(present, minlength=len(column.categories))
    used = np.flatnonzero(counts)
    if len(used) > MAX_CATEGORIES:
        raise ValueError(f"{table.path}: column {column.name!r} has {len(used):,} distinct "
                         f"text values in the training rows, more than the {MAX_CATEGORIES:,} "
                         "categories a column may have (an identifier or free text?); "
                         "remove the column")
    order = sorted(used, key=lambda c: column.categories[c])
    categories = [column.categories[c] for c in order]
    fill = None
    if impute is not None:
        # Text has no mean or median: every --impute fills it with its most frequent
        # category (ties: the first in sorted order, which argmax picks).
        fill = categories[int(np.argmax(counts[order]))]
    return {"kind": _TEXT, "categories": categories, "fill": fill}


def _missing(table, column, missing, *, training: bool) -> ValueError:
    row = int(np.flatnonzero(missing)[0])
    remedy = ("pass --impute mean, median or most-frequent to fill such cells" if training
              else "the model was trained without --impute, so it has no value to fill it "
                   "with")
    return ValueError(f"{table.where(row)}, column {column.name!r}: missing value "
                      f"({np.count_nonzero(missing):,} in this column); {remedy}")


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and bool(np.isfinite(x))


def _valid_spec(spec) -> bool:
    if not isinstance(spec, dict):
        return False
    if spec.get("kind") == _NUMBER:
        return (_finite(spec.get("center")) and _finite(spec.get("scale"))
                and spec["scale"] > 0 and (spec.get("fill") is None or _finite(spec["fill"])))
    categories = spec.get("categories")
    return (spec.get("kind") == _TEXT and isinstance(categories, list) and len(categories) > 0
            and all(isinstance(c, str) for c in categories)
            and len(set(categories)) == len(categories)
            and (spec.get("fill") is None or spec["fill"] in categories))
