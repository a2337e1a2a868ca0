"""DATA for the ``fastmlp`` command: reading .csv, .parquet, .npz and .npy files into
columns of numbers or text, turning targets into class codes or regression targets, and
the sidecar JSON that keeps next to a saved model what the model file does not store
(column and class names, the preprocessing statistics).

A CSV file is parsed a chunk of rows at a time, each chunk's cells converted to arrays
before the next is read, so that the file's text is never in memory whole, let alone
twice.  Parquet needs pyarrow (the ``cli`` extra); the other formats need nothing beyond
numpy.
"""
from __future__ import annotations

import csv
import json
import os
import zipfile
import zlib

import numpy as np

from fastmlp.cli.preprocess import Preprocessing
from fastmlp.cli.sparse import SPARSE_FORMATS

_SIDECAR = ".json"          # model.npz -> model.npz.json: what fastmlp.load does not store
_SIDECAR_FORMAT = "fastmlp-cli-1"

FORMATS = (".csv", ".parquet", ".npz", ".npy")
# Large enough that the per-chunk numpy conversions dominate, small enough that one
# chunk's text is a few MB.
_CHUNK_ROWS = 16_384
# CSV cells that mean "no value" (compared after stripping spaces); in Parquet, nulls,
# and in every format a NaN.
MISSING_CELLS = ("", "NA", "N/A", "NaN", "nan", "null")
_MISSING = frozenset(MISSING_CELLS)

# How a column is read: AUTO decides numbers or text from its cells; NUMBER and TEXT
# insist (a model's known columns, the target, --categorical).
AUTO, NUMBER, TEXT = "auto", "number", "text"


# ---------------------------------------------------------------------- tables
class Column:
    """One column: numbers (float64, NaN where a cell is missing) or text categories
    (``values`` are int32 codes into ``categories``, -1 where a cell is missing)."""

    __slots__ = ("name", "values", "categories")

    def __init__(self, name, values: np.ndarray, categories: list[str] | None = None):
        self.name, self.values, self.categories = name, values, categories

    @property
    def is_text(self) -> bool:
        return self.categories is not None

    def missing(self) -> np.ndarray:
        """A boolean mask of the missing cells."""
        return self.values < 0 if self.is_text else np.isnan(self.values)

    def take(self, rows) -> "Column":
        return Column(self.name, self.values[rows], self.categories)

    def strings(self) -> np.ndarray:
        """Each row's text (for the target column: class labels); '' where missing."""
        if not self.is_text:
            return self.values
        return np.array([*self.categories, ""], dtype=str)[self.values]


class Table:
    """Columns read from DATA, and where each row came from in the file (CSV line
    numbers, else row numbers), for error messages."""

    def __init__(self, path: str, columns: list[Column], origins: np.ndarray | None = None,
                 unit: str = "row"):
        self.path, self.columns, self.unit = path, columns, unit
        n = len(columns[0].values) if columns else 0
        self.origins = np.arange(1, n + 1) if origins is None else origins

    def __len__(self) -> int:
        return len(self.origins)

    @property
    def names(self) -> list:
        return [c.name for c in self.columns]

    def column(self, name) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise ValueError(f"{self.path}: no column {name!r}; the columns are "
                         + ", ".join(map(repr, self.names)))

    def where(self, row: int) -> str:
        """'data.csv, line 7': where row ``row`` (0-based, of this table) is in the file."""
        return f"{self.path}, {self.unit} {self.origins[row]}"

    def take(self, rows) -> "Table":
        return Table(self.path, [c.take(rows) for c in self.columns], self.origins[rows],
                     self.unit)

    def select(self, names) -> "Table":
        return Table(self.path, [self.column(n) for n in names], self.origins, self.unit)


def _format_of(path: str) -> str:
    ext = os.path.splitext(path)[1].lower()
    if ext not in FORMATS:
        raise ValueError(f"{path}: unknown data format {ext or '(no extension)'!r}; "
                         f"expected {', '.join(FORMATS[:-1])} or {FORMATS[-1]}")
    return ext[1:]


def _column_names(header, path: str) -> list[str]:
    names = [str(name).strip() for name in header]
    duplicates = sorted({c for c in names if names.count(c) > 1})
    if duplicates:
        raise ValueError(f"{path}: duplicate column name(s) {duplicates}")
    return names


def bad_cell(where: str, column, cell, what: str, hint: str) -> ValueError:
    """The error for one cell that does not fit its column: "data.csv, line 7, column 'a':
    'abc' is not a number (the model was trained on numbers in this column)"."""
    return ValueError(f"{where}, column {column!r}: {cell!r} {what}{hint}")


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


class _ColumnReader:
    """Accumulates one CSV column chunk by chunk, as numbers or as category codes."""

    def __init__(self, name: str, mode: str, hint: str, path: str):
        self.name, self.mode, self.hint, self.path = name, mode, hint, path
        self.text = mode == TEXT
        self.chunks: list[np.ndarray] = []
        self.index: dict[str, int] = {}
        self.has_number = False

    def add(self, cells, lines) -> None:
        if self.text:
            self._add_text(cells, lines)
        else:
            self._add_numbers(cells, lines)

    def _add_numbers(self, cells, lines) -> None:
        try:
            values = np.array(cells, dtype=np.float64)     # fast path: every cell a number
        except ValueError:
            values = np.full(len(cells), np.nan)
            for i, cell in enumerate(cells):
                cell = cell.strip()
                if cell in _MISSING:
                    continue
                try:
                    values[i] = float(cell)
                except ValueError:
                    if self.mode == AUTO and not self.has_number \
                            and np.all(np.isnan(values[:i])):
                        # Every cell so far was missing: this is a text column.
                        self.text = True
                        self.chunks = [np.full(len(c), -1, np.int32) for c in self.chunks]
                        self._add_text(cells, lines)
                        return
                    raise self._mixed(lines[i], cell, "is not a number") from None
        self.has_number = self.has_number or not np.all(np.isnan(values))
        self.chunks.append(values)

    def _add_text(self, cells, lines) -> None:
        codes = np.empty(len(cells), np.int32)
        index = self.index
        for i, cell in enumerate(cells):
            cell = cell.strip()
            if cell in _MISSING:
                codes[i] = -1
                continue
            code = index.get(cell)
            if code is None:
                if self.mode == AUTO and _is_number(cell):
                    raise self._mixed(lines[i], cell, "is a number")
                code = index[cell] = len(index)
            codes[i] = code
        self.chunks.append(codes)

    def _mixed(self, line: int, cell: str, what: str) -> ValueError:
        if self.mode == AUTO:
            other = "text" if what == "is a number" else "numbers"
            hint = (f", but the column's other cells are {other}; correct the cell, or pass "
                    f"--categorical {self.name} to encode the column as categories")
        else:
            hint = self.hint
        return bad_cell(f"{self.path}, line {line}", self.name, cell, what, hint)

    def column(self) -> Column:
        if self.text:
            return Column(self.name, np.concatenate(self.chunks), list(self.index))
        return Column(self.name, np.concatenate(self.chunks))


def _read_csv(path: str, modes_for) -> Table:
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            return _parse_csv(f, path, modes_for)
    except (UnicodeDecodeError, csv.Error) as exc:
        raise ValueError(f"{path}: not a readable CSV text file ({exc})") from None


def _parse_csv(f, path: str, modes_for) -> Table:
    # utf-8-sig (the caller): files saved by spreadsheets often start with a byte-order mark.
    reader = csv.reader(f)
    header = next(reader, None)
    if header is None:
        raise ValueError(f"{path}: expected a header line and at least one row of data")
    names = _column_names(header, path)
    readers = [_ColumnReader(name, mode, hint, path)
               for name, (mode, hint) in zip(names, modes_for(names))]
    rows: list[list[str]] = []
    lines: list[int] = []
    line_chunks: list[np.ndarray] = []

    def flush():
        chunk_lines = np.array(lines, dtype=np.int64)
        for column_reader, cells in zip(readers, zip(*rows)):
            column_reader.add(cells, chunk_lines)
        line_chunks.append(chunk_lines)
        rows.clear()
        lines.clear()

    for row in reader:
        if not row or (len(row) == 1 and not row[0].strip()):
            continue                                   # blank line
        if len(row) != len(names):
            raise ValueError(f"{path}, line {reader.line_num}: {len(row)} fields, but the "
                             f"header has {len(names)}")
        rows.append(row)
        lines.append(reader.line_num)
        if len(rows) == _CHUNK_ROWS:
            flush()
    if rows:
        flush()
    if not line_chunks:
        raise ValueError(f"{path}: expected a header line and at least one row of data")
    return Table(path, [r.column() for r in readers], np.concatenate(line_chunks), "line")


def _read_parquet(path: str, modes_for) -> Table:
    try:
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.parquet as pq
    except ImportError:
        raise ValueError(f"{path}: reading Parquet needs pyarrow: pip install pyarrow "
                         "(or pip install \"fastmlp[cli]\")") from None
    try:
        table = pq.read_table(path)
    except pa.ArrowException as exc:
        raise ValueError(f"{path}: not a readable Parquet file ({exc})") from None
    names = _column_names(table.column_names, path)
    if table.num_rows == 0 or not names:
        raise ValueError(f"{path}: expected at least one column and one row of data")
    columns = []
    for name, (mode, hint), data in zip(names, modes_for(names), table.columns):
        kind = data.type.value_type if pa.types.is_dictionary(data.type) else data.type
        textual = pa.types.is_string(kind) or pa.types.is_large_string(kind)
        numeric = (pa.types.is_integer(kind) or pa.types.is_floating(kind)
                   or pa.types.is_boolean(kind) or pa.types.is_decimal(kind))
        if not (textual or numeric):
            raise ValueError(f"{path}: column {name!r} has type {data.type}; expected "
                             "numbers or text")
        if mode == TEXT or (mode == AUTO and textual):
            encoded = data.cast(pa.string()).combine_chunks().dictionary_encode()
            codes = encoded.indices.fill_null(-1).to_numpy(zero_copy_only=False)
            columns.append(Column(name, codes.astype(np.int32),
                                  [str(s) for s in encoded.dictionary.to_pylist()]))
        elif numeric:
            values = pc.cast(data, pa.float64()).to_numpy(zero_copy_only=False)
            columns.append(Column(name, np.array(values, dtype=np.float64)))
        else:
            raise ValueError(f"{path}: column {name!r} holds text ({data.type})"
                             f"{hint or '; expected numbers'}")
    return Table(path, columns)


def _check_finite(table: Table) -> Table:
    """Missing cells (NaN) are the preprocessing's business; infinities are errors."""
    for column in table.columns:
        if not column.is_text:
            bad = np.flatnonzero(np.isinf(column.values))
            if len(bad):
                raise ValueError(f"{table.where(bad[0])}, column {column.name!r}: "
                                 f"{column.values[bad[0]]} is not a finite number")
    return table


def read_table(path: str, modes_for) -> Table:
    """A .csv or .parquet file as a Table.  ``modes_for(column names)`` returns, for each
    column, (AUTO | NUMBER | TEXT, hint appended to the error when a cell does not fit),
    and may refuse the columns with a ValueError before any row is read."""
    reader = _read_csv if _format_of(path) == "csv" else _read_parquet
    return _check_finite(reader(path, modes_for))


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


def _matrix(a, what: str) -> np.ndarray:
    """A 2-D array of numbers (NaN: missing) as float64."""
    if a.ndim != 2:
        raise ValueError(f"{what}: expected a 2-D array (rows, features), got shape {a.shape}")
    if a.dtype.kind not in "biuf":
        raise ValueError(f"{what}: expected numbers, got dtype {a.dtype}")
    if a.shape[0] < 1 or a.shape[1] < 1:
        raise ValueError(f"{what}: expected at least one row and one column, got shape "
                         f"{a.shape}")
    return a.astype(np.float64)


def _matrix_table(path: str, a: np.ndarray) -> Table:
    """Columns of a numeric matrix, named by their index."""
    return _check_finite(Table(path, [Column(j, a[:, j]) for j in range(a.shape[1])]))


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


_MSE_HINT = "; mse needs numeric targets (for class labels use --loss softmax_cross_entropy)"


def load_training_data(path: str, target, *, classify: bool, categorical=()) -> dict:
    """Features and raw targets from DATA for ``train``.

    Returns {"table": the feature columns (a Table), "y": targets (n,) or (n, k),
    "format", "features": CSV/Parquet column names or None, "target": column name / .npz
    array name / .npy index}.  ``categorical``: column names read as text categories even
    if their cells are numbers.
    """
    kind = _format_of(path)
    if kind in ("csv", "parquet"):
        chosen = {}

        def modes_for(names):
            chosen["target"] = names[-1] if target is None else target
            for name in [chosen["target"], *categorical]:
                if name not in names:
                    option = "--target" if name == chosen["target"] else "--categorical"
                    raise ValueError(f"{option}: {path} has no column {name!r}; the columns "
                                     "are " + ", ".join(map(repr, names)))
            if len(names) < 2:
                raise ValueError(f"{path}: no feature columns besides the target "
                                 f"{chosen['target']!r}")
            return [((TEXT, "") if classify else (NUMBER, _MSE_HINT))
                    if name == chosen["target"]
                    else (TEXT if name in categorical else AUTO, "") for name in names]

        table = read_table(path, modes_for)
        target = chosen["target"]
        features = [c for c in table.names if c != target]
        y_column = table.column(target)
        _check_no_missing_target(table, y_column)
        y = y_column.strings()
        table = table.select(features)
    else:
        if categorical:
            raise ValueError(f"--categorical: {path} has no named columns; it is for .csv "
                             "and .parquet files")
        features = None
        if kind == "npz":
            arrays = _load_npz(path)
            target = "y" if target is None else target
            X = _matrix(_npz_array(arrays, "X", path), f"{path}: X")
            y = _npz_array(arrays, target, path)
        else:
            a = _matrix(_load_npy(path), path)
            if a.shape[1] < 2:
                raise ValueError(f"{path}: expected a target column and at least one feature "
                                 f"column, got shape {a.shape}")
            target = _npy_target_index(-1 if target is None else target, a.shape[1], path)
            X, y = np.delete(a, target, axis=1), a[:, target]
        if len(y) != len(X):
            raise ValueError(f"{path}: {len(X)} rows of features but {len(y)} targets")
        table = _matrix_table(path, X)
        if y.dtype.kind == "f" and y.ndim >= 1:
            rows = np.flatnonzero(np.isnan(y.reshape(len(y), -1)).any(axis=1))
            if len(rows):
                raise ValueError(f"{table.where(rows[0])}: missing target (NaN)")
    return {"table": table, "y": y, "format": kind, "features": features, "target": target}


def _check_no_missing_target(table: Table, column: Column) -> None:
    rows = np.flatnonzero(column.missing())
    if len(rows):
        raise ValueError(f"{table.where(rows[0])}, column {column.name!r}: missing target")


# For a feature the model took as numbers, appended to the error for a cell that is not one.
NUMBER_HINT = " (the model was trained on numbers in this column)"


def prediction_modes(path: str, named, target, text_features=()):
    """``modes_for`` (see read_table) of a table given to a trained model: its columns
    matched to the model's features ``named`` (None: not checked) by name, in any order,
    the target column allowed; a missing feature, or a column that is neither a feature nor
    the target, is an error naming it.  ``text_features``: the features the model took as
    categories, read as text; the other features are read as numbers."""
    def modes_for(names):
        if named is not None:
            missing = [f for f in named if f not in names]
            if missing:
                raise ValueError(f"{path}: no column {missing[0]!r}, a feature the "
                                 "model was trained on; the columns are "
                                 + ", ".join(map(repr, names)))
            extra = [c for c in names if c not in named and c != target]
            if extra:
                raise ValueError(f"{path}: column {extra[0]!r} is not a feature of the "
                                 f"model (its features: {', '.join(map(repr, named))}); "
                                 "remove it")
        return [(TEXT, "") if name == target or name in text_features else
                (NUMBER, NUMBER_HINT) for name in names]
    return modes_for


def prediction_columns(table: Table, named, target) -> tuple[Table, np.ndarray | None]:
    """``table``'s feature columns in the model's order (``named``; None: every column
    but the target) and, when the target column is there and complete, its raw targets."""
    features = named if named is not None else [c for c in table.names if c != target]
    y = None
    if target in table.names:
        y_column = table.column(target)
        if not y_column.missing().any():
            y = y_column.strings()
    return table.select(features), y


def _named_features(meta: dict):
    """The model's feature names when it was trained on a table with named columns."""
    return meta.get("features") if meta.get("data_format") in ("csv", "parquet") else None


def load_prediction_data(path: str, n_features: int, meta: dict | None,
                         text_features=()) -> tuple[Table, np.ndarray | None]:
    """The feature columns of DATA for ``predict`` (in the model's order) and, if DATA
    holds them, the raw targets.

    A table's columns are matched to the model's features by name, in any order; a
    feature missing from DATA, or a column that is neither a feature nor the target, is
    an error naming it (``prediction_modes``).  ``text_features``: the features the model
    took as categories.
    """
    kind = _format_of(path)
    meta = meta or {}
    trained_on, target = meta.get("data_format"), meta.get("target")
    y = None
    if kind in ("csv", "parquet"):
        table = read_table(path, prediction_modes(path, _named_features(meta), target,
                                                  text_features))
        table, y = prediction_columns(table, _named_features(meta), target)
    elif kind == "npz":
        arrays = _load_npz(path)
        table = _matrix_table(path, _matrix(_npz_array(arrays, "X", path), f"{path}: X"))
        if trained_on == "npz" and target in arrays:
            y = arrays[target]
    else:
        a = _matrix(_load_npy(path), path)
        if trained_on == "npy" and a.shape[1] == n_features + 1:
            # The file the model was trained on, target column included.
            y = a[:, target]
            a = np.delete(a, target, axis=1)
        table = _matrix_table(path, a)
    if len(table.columns) != n_features:
        raise ValueError(f"{path}: {len(table.columns)} feature columns, but the model takes "
                         f"{n_features}")
    if y is not None and len(y) != len(table):
        y = None
    return table, y


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



# ---------------------------------------------------------------------- model metadata
def sidecar_path(model_path: str) -> str:
    """Where ``train`` keeps what the model file does not store (column and class names,
    the preprocessing statistics)."""
    return model_path + _SIDECAR


def write_sidecar(model_path: str, meta: dict) -> None:
    """Write ``meta`` (JSON types only) to the model's sidecar, replacing it atomically."""
    path = sidecar_path(model_path)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump({"format": _SIDECAR_FORMAT, **meta}, f, indent=1)
    os.replace(tmp, path)


def read_sidecar(model_path: str, net) -> dict | None:
    """The model's sidecar, checked against the model; None if there is none.

    Its "preprocessing" entry, when present (sidecars written before it existed lack it),
    is returned as a Preprocessing.
    """
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
    sparse = kind in SPARSE_FORMATS
    try:
        # Sparse data: no preprocessing (fastmlp.cli.sparse), the inputs as they are.
        prep = (Preprocessing.identity(0) if sparse and meta.get("preprocessing") is None
                else Preprocessing.from_json(meta["preprocessing"]) if "preprocessing" in meta
                else Preprocessing.identity(d))
    except ValueError:
        prep = None
    n_features = len(prep.columns) if prep else -1
    valid = (prep is not None and (sparse or prep.width == d)
             and (meta.get("n_inputs"), meta.get("n_outputs"), meta.get("loss"))
             == (d, k, net.loss_name)
             and _list_of_str(meta.get("features"), n_features, none_ok=True)
             and _list_of_str(meta.get("classes"), k, none_ok=net.loss_name == "mse")
             and (isinstance(target, str) if kind in ("csv", "parquet", "npz")
                  else target is None if sparse
                  else kind == "npy" and type(target) is int and 0 <= target <= n_features))
    if not valid:
        raise ValueError(f"{path} does not match {model_path} (saved over by other code?); "
                         "delete it or train again")
    meta["preprocessing"] = None if sparse else prep
    return meta


def _list_of_str(value, length: int, none_ok: bool) -> bool:
    if value is None:
        return none_ok
    return (isinstance(value, list) and len(value) == length
            and all(isinstance(x, str) for x in value))
