"""DATA for the ``fastmlp`` command: reading .csv, .npz and .npy files, turning their
targets into class codes or regression targets, and the sidecar JSON that keeps next to a
saved model what the model file does not store (column and class names)."""
from __future__ import annotations

import csv
import json
import os
import zipfile
import zlib

import numpy as np

_SIDECAR = ".json"          # model.npz -> model.npz.json: what fastmlp.load does not store
_SIDECAR_FORMAT = "fastmlp-cli-1"


# ---------------------------------------------------------------------- data
def _format_of(path: str) -> str:
    ext = os.path.splitext(path)[1].lower()
    if ext not in (".csv", ".npz", ".npy"):
        raise ValueError(f"{path}: unknown data format {ext or '(no extension)'!r}; "
                         "expected .csv, .npz or .npy")
    return ext[1:]


class CsvTable:
    """A CSV file with a header: column names and the cells as strings, with the line
    number of each row for error messages."""

    def __init__(self, path: str):
        self.path = path
        try:
            header, rows, lines = self._read(path)
        except (UnicodeDecodeError, csv.Error) as exc:
            raise ValueError(f"{path}: not a readable CSV text file ({exc})") from None
        if header is None or not rows:
            raise ValueError(f"{path}: expected a header line and at least one row of data")
        self.columns = [name.strip() for name in header]
        duplicates = sorted({c for c in self.columns if self.columns.count(c) > 1})
        if duplicates:
            raise ValueError(f"{path}: duplicate column name(s) {duplicates}")
        self.cells = np.char.strip(np.array(rows, dtype=str))
        self.lines = lines

    @staticmethod
    def _read(path: str):
        # utf-8-sig: files saved by spreadsheets often start with a byte-order mark.
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            rows, lines = [], []
            for row in reader:
                if not row or (len(row) == 1 and not row[0].strip()):
                    continue                       # blank line
                if len(row) != len(header):
                    raise ValueError(f"{path}, line {reader.line_num}: {len(row)} fields, "
                                     f"but the header has {len(header)}")
                rows.append(row)
                lines.append(reader.line_num)
        return header, rows, lines

    def index(self, name: str) -> int:
        if name not in self.columns:
            raise ValueError(f"{self.path}: no column {name!r}; the columns are "
                             + ", ".join(map(repr, self.columns)))
        return self.columns.index(name)

    def numeric(self, names, what: str = "features") -> np.ndarray:
        """The named columns as an (n, len(names)) float64 array of finite numbers."""
        cols = [self.index(name) for name in names]
        block = self.cells[:, cols]
        try:
            out = block.astype(np.float64)
        except ValueError:
            out = None
        if out is None or not np.all(np.isfinite(out)):
            self._raise_first_bad(block, names, what)
        return out

    def _raise_first_bad(self, block, names, what):
        for i, row in enumerate(block):
            for j, cell in enumerate(row):
                try:
                    ok = np.isfinite(float(cell))
                except ValueError:
                    ok = False
                if not ok:
                    raise ValueError(f"{self.path}, line {self.lines[i]}, column "
                                     f"{names[j]!r}: {str(cell)!r} is not a finite number "
                                     f"({what} must be numeric)")
        raise ValueError(f"{self.path}: {what} must be finite numbers")


def _load_npz(path: str) -> dict:
    z = _np_load(path, ".npz")
    if not isinstance(z, np.lib.npyio.NpzFile):
        raise ValueError(f"{path}: not an .npz archive")
    with z:
        try:
            return {key: z[key] for key in z.files}
        except (ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error) as exc:
            raise ValueError(f"{path}: damaged .npz file ({exc})") from None


def _np_load(path: str, kind: str):
    """np.load without pickles; a file numpy cannot read is a ValueError naming it."""
    try:
        return np.load(path, allow_pickle=False)
    except OSError:
        raise                               # missing file, permissions: already clear
    except (ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise ValueError(f"{path}: not a readable {kind} file ({exc})") from None


def _load_npy(path: str) -> np.ndarray:
    a = _np_load(path, ".npy")
    if not isinstance(a, np.ndarray):
        raise ValueError(f"{path}: not a .npy file")
    return a


def _npz_array(arrays: dict, key: str, path: str) -> np.ndarray:
    if key not in arrays:
        raise ValueError(f"{path}: no array {key!r}; the arrays are "
                         + (", ".join(map(repr, arrays)) or "(none)"))
    return arrays[key]


def _features(a, what: str) -> np.ndarray:
    """A 2-D array of finite numbers, as float64."""
    if a.ndim != 2:
        raise ValueError(f"{what}: expected a 2-D array (rows, features), got shape {a.shape}")
    if a.dtype.kind not in "biuf":
        raise ValueError(f"{what}: expected numbers, got dtype {a.dtype}")
    a = a.astype(np.float64)
    if a.shape[0] < 1 or a.shape[1] < 1:
        raise ValueError(f"{what}: expected at least one row and one column, got shape "
                         f"{a.shape}")
    bad = np.argwhere(~np.isfinite(a))
    if len(bad):
        raise ValueError(f"{what}: row {bad[0][0]}, column {bad[0][1]} is not a finite number")
    return a


def _npy_target_index(target, width: int, path: str) -> int:
    try:
        index = int(target)
    except (TypeError, ValueError):
        raise ValueError(f"--target: for a .npy file, expected a column index, got "
                         f"{target!r}") from None
    if not -width <= index < width:
        raise ValueError(f"--target: column {index} out of range for {path}, which has "
                         f"{width} columns")
    return index % width


def load_training_data(path: str, target) -> dict:
    """Features and raw targets from DATA for ``train``.

    Returns {"X": (n, d) float64, "y": targets (n,) or (n, k), "format", "features":
    CSV column names or None, "target": CSV column name / .npz array name / .npy index}.
    """
    kind = _format_of(path)
    if kind == "csv":
        table = CsvTable(path)
        target = table.columns[-1] if target is None else target
        table.index(target)
        features = [c for c in table.columns if c != target]
        if not features:
            raise ValueError(f"{path}: no feature columns besides the target {target!r}")
        X = table.numeric(features)
        y = table.cells[:, table.index(target)]
    elif kind == "npz":
        arrays = _load_npz(path)
        target = "y" if target is None else target
        features = None
        X = _features(_npz_array(arrays, "X", path), f"{path}: X")
        y = _npz_array(arrays, target, path)
    else:
        a = _features(_load_npy(path), path)
        if a.shape[1] < 2:
            raise ValueError(f"{path}: expected a target column and at least one feature "
                             f"column, got shape {a.shape}")
        target = _npy_target_index(-1 if target is None else target, a.shape[1], path)
        features = None
        X, y = np.delete(a, target, axis=1), a[:, target]
    if len(y) != len(X):
        raise ValueError(f"{path}: {len(X)} rows of features but {len(y)} targets")
    return {"X": X, "y": y, "format": kind, "features": features, "target": target}


def load_prediction_data(path: str, net, meta: dict | None):
    """Features of DATA for ``predict`` and, if DATA holds them, the raw targets."""
    kind, d = _format_of(path), net.layer_sizes[0]
    meta = meta or {}
    trained_on = meta.get("data_format")
    target = meta.get("target")
    y = None
    if kind == "csv":
        table = CsvTable(path)
        if trained_on == "csv" and meta.get("features"):
            features = meta["features"]
        else:
            features = [c for c in table.columns if c != target]
        if len(features) != d:
            raise ValueError(f"{path}: {len(features)} feature columns, but the model takes {d}")
        X = table.numeric(features)
        if trained_on == "csv" and target in table.columns:
            y = table.cells[:, table.index(target)]
    elif kind == "npz":
        arrays = _load_npz(path)
        X = _features(_npz_array(arrays, "X", path), f"{path}: X")
        if trained_on == "npz" and target in arrays:
            y = arrays[target]
    else:
        X = _features(_load_npy(path), path)
        if trained_on == "npy" and X.shape[1] == d + 1:
            # The file the model was trained on, target column included.
            y = X[:, target]
            X = np.delete(X, target, axis=1)
    if X.shape[1] != d:
        raise ValueError(f"{path}: {X.shape[1]} feature columns, but the model takes {d}")
    if y is not None and len(y) != len(X):
        y = None
    return X, y


# ---------------------------------------------------------------------- targets
def _number_name(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def label_values(y, what: str = "targets"):
    """Class labels as comparable values: (float64 array, True) when every label is a
    number (so 1, 1.0 and "1.0" are one class), else (stripped strings, False)."""
    y = np.asarray(y)
    if y.dtype.kind in "US":
        stripped = np.char.strip(y.astype(str))
        empty = np.flatnonzero(stripped == "")
        if len(empty):
            raise ValueError(f"{what}: empty class label in data row {empty[0] + 1}")
        try:
            y = stripped.astype(np.float64)
        except ValueError:
            return stripped, False
    if y.dtype.kind not in "biuf":
        raise ValueError(f"{what}: expected class labels (numbers or text), got dtype {y.dtype}")
    if not np.all(np.isfinite(y)):
        raise ValueError(f"{what}: class labels must be finite")
    return y.astype(np.float64), True


def label_names(y) -> list[str]:
    """Each label's name as ``predict`` writes it: ``"1"`` for 1, 1.0 and "1.0"."""
    values, numeric = label_values(y)
    return [_number_name(u) for u in values] if numeric else [str(u) for u in values]


def encode_classes(y, what: str):
    """Class labels of any kind -> (int64 codes 0..k-1, [k class names]), in sorted order
    (numeric order when every label is a number)."""
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise ValueError(f"{what}: softmax_cross_entropy needs one class label per row, got "
                         f"shape {y.shape}")
    values, numeric = label_values(y, what)
    uniques, codes = np.unique(values, return_inverse=True)
    if len(uniques) < 2:
        raise ValueError(f"{what}: softmax_cross_entropy needs at least 2 classes, found "
                         f"{len(uniques)}")
    names = label_names(uniques) if numeric else [str(u) for u in uniques]
    return codes.astype(np.int64).reshape(-1), names


def regression_targets(y, what: str) -> np.ndarray:
    """Targets for mse as an (n, k) float64 array of finite numbers."""
    y = np.asarray(y)
    if y.dtype.kind in "US":
        text = np.char.strip(y.astype(str))
        try:
            y = text.astype(np.float64)
        except ValueError:
            row = next(i for i, t in enumerate(text.reshape(-1)) if not _is_number(t))
            raise ValueError(f"{what}: {str(text.reshape(-1)[row])!r} in data row {row + 1} "
                             "is not a number; mse needs numeric targets (for class labels "
                             "use --loss softmax_cross_entropy)") from None
    if y.dtype.kind not in "biuf" or y.ndim not in (1, 2):
        raise ValueError(f"{what}: mse needs a 1-D or 2-D numeric array, got "
                         f"{y.dtype} of shape {y.shape}")
    y = y.astype(np.float64).reshape(len(y), -1)
    if not np.all(np.isfinite(y)):
        raise ValueError(f"{what}: targets contain NaN or infinity")
    return y


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


# ---------------------------------------------------------------------- model metadata
def sidecar_path(model_path: str) -> str:
    """Where ``train`` keeps what the model file does not store (column and class names)."""
    return model_path + _SIDECAR


def write_sidecar(model_path: str, meta: dict) -> None:
    """Write ``meta`` (JSON types only) to the model's sidecar, replacing it atomically."""
    path = sidecar_path(model_path)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump({"format": _SIDECAR_FORMAT, **meta}, f, indent=1)
    os.replace(tmp, path)


def read_sidecar(model_path: str, net) -> dict | None:
    """The model's sidecar, checked against the model; None if there is none."""
    path = sidecar_path(model_path)
    try:
        with open(path) as f:
            meta = json.load(f)
    except FileNotFoundError:
        return None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != _SIDECAR_FORMAT:
        raise ValueError(f"{path}: not written by fastmlp train")
    d, k, kind, target = net.layer_sizes[0], net.layer_sizes[-1], meta.get("data_format"), \
        meta.get("target")
    valid = ((meta.get("n_inputs"), meta.get("n_outputs"), meta.get("loss"))
             == (d, k, net.loss_name)
             and _list_of_str(meta.get("features"), d, none_ok=True)
             and _list_of_str(meta.get("classes"), k, none_ok=net.loss_name == "mse")
             and (isinstance(target, str) if kind in ("csv", "npz")
                  else kind == "npy" and type(target) is int and 0 <= target <= d))
    if not valid:
        raise ValueError(f"{path} does not match {model_path} (saved over by other code?); "
                         "delete it or train again")
    return meta


def _list_of_str(value, length: int, none_ok: bool) -> bool:
    if value is None:
        return none_ok
    return (isinstance(value, list) and len(value) == length
            and all(isinstance(x, str) for x in value))
