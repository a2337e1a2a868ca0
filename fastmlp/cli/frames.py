"""Tables already in memory — a pandas DataFrame, or a dict of columns (name -> sequence)
— as the Table that fastmlp.cli.data builds from a CSV, so that the checks and messages
that follow (columns matched by name, a cell that is not a number, a missing cell, an
unseen category) are the ones ``fastmlp predict`` gives for the same rows in a file.

A cell means what it would mean written into a CSV: text is stripped, and the CSV's
missing markers (``MISSING_CELLS``) are missing, as are None, NaN and pandas' NA.  In a
column read as text (a category), a number stands for the text a CSV would hold for it:
an integral value is "3" (also as the float 3.0 that pandas makes of a column of integer
codes with a gap), another float its shortest repr.  pandas is never imported here; a
DataFrame is recognised by its ``columns`` and read column by column.
"""
from __future__ import annotations

import numbers
import sys

import numpy as np

from fastmlp.cli.data import (_MISSING, NUMBER, Column, Table, _check_finite,
                              _column_names, _number_name, bad_cell)


def _columns_of(data, source: str) -> tuple[list, list]:
    """(column keys, their values) of a DataFrame or a mapping of columns."""
    if hasattr(data, "columns") and hasattr(data, "iloc"):          # a pandas DataFrame
        keys = list(data.columns)
        return keys, [data.iloc[:, j] for j in range(len(keys))]
    if hasattr(data, "keys") and hasattr(data, "__getitem__"):
        keys = list(data.keys())
        return keys, [data[k] for k in keys]
    raise TypeError(f"{source}: expected a pandas DataFrame, a dict of columns "
                    f"(name -> sequence) or a .csv/.parquet path, got {type(data).__name__}")


def _cells(values, source: str, name) -> np.ndarray:
    """One column's cells as a 1-D array (numbers, strings or objects)."""
    if hasattr(values, "to_numpy"):       # pandas Series, Index, extension arrays
        values = values.to_numpy()
    elif not isinstance(values, np.ndarray):
        values = np.array(list(values) if not isinstance(values, (str, bytes)) else values,
                          dtype=object)
    if values.ndim != 1:
        raise ValueError(f"{source}: column {name!r}: expected one cell per row (a 1-D "
                         f"sequence), got shape {values.shape}")
    if values.dtype.kind == "O":
        # A list of plain numbers reads as numbers, as the same cells would from a CSV.
        try:
            as_numbers = values.astype(np.float64)
        except (TypeError, ValueError):
            return values
        if all(isinstance(c, numbers.Real) for c in values):
            return as_numbers
    return values


def _missing_objects(cells: np.ndarray) -> np.ndarray:
    """Which cells of an object array are None, NaN or pandas' NA (no pandas import:
    a pandas NA can only be there if pandas is loaded)."""
    pd = sys.modules.get("pandas")
    if pd is not None:
        return np.asarray(pd.isna(cells), dtype=bool)
    return np.array([c is None or (isinstance(c, (float, np.floating)) and np.isnan(c))
                     for c in cells], dtype=bool)


def _number_column(name, cells: np.ndarray, hint: str, rows: Table) -> Column:
    if cells.dtype.kind in "biuf":
        return Column(name, cells.astype(np.float64))
    if cells.dtype.kind not in "OUS":
        raise ValueError(f"{rows.path}: column {name!r} has dtype {cells.dtype}; expected "
                         "numbers or text")
    absent = _missing_objects(cells) if cells.dtype.kind == "O" \
        else np.zeros(len(cells), dtype=bool)
    values = np.full(len(cells), np.nan)
    for i, cell in enumerate(cells):
        if absent[i]:
            continue
        if isinstance(cell, bytes):
            cell = cell.decode("utf-8", "replace")
        if isinstance(cell, str):
            cell = cell.strip()
            if cell in _MISSING:
                continue
            try:
                values[i] = float(cell)
                continue
            except ValueError:
                pass
        elif isinstance(cell, numbers.Real):
            values[i] = float(cell)
            continue
        raise bad_cell(rows.where(i), name, cell, "is not a number", hint)
    return Column(name, values)


def _text_of(cell) -> str | None:
    """A cell of a text column as the text a CSV would hold; None where missing."""
    if isinstance(cell, bytes):
        cell = cell.decode("utf-8", "replace")
    if isinstance(cell, str):
        cell = cell.strip()
        return None if cell in _MISSING else cell
    if isinstance(cell, (bool, np.bool_)):
        return str(bool(cell))
    if isinstance(cell, numbers.Real):
        return None if np.isnan(cell) else _number_name(cell)
    return str(cell).strip()


def _text_column(name, cells: np.ndarray, rows: Table) -> Column:
    if cells.dtype.kind not in "biufOUS":
        raise ValueError(f"{rows.path}: column {name!r} has dtype {cells.dtype}; expected "
                         "numbers or text")
    absent = _missing_objects(cells) if cells.dtype.kind == "O" \
        else np.zeros(len(cells), dtype=bool)
    codes = np.full(len(cells), -1, np.int32)
    index: dict[str, int] = {}
    for i, cell in enumerate(cells):
        text = None if absent[i] else _text_of(cell)
        if text is not None:
            codes[i] = index.setdefault(text, len(index))
    return Column(name, codes, list(index))


def columns_table(data, modes_for, source: str = "data") -> Table:
    """A DataFrame or a dict of columns as a Table named ``source`` whose rows are
    numbered from 1 ("data, row 3, ..." in messages).  ``modes_for`` is read_table's:
    (NUMBER | TEXT, hint) for each column, and may refuse the columns first."""
    keys, values = _columns_of(data, source)
    names = _column_names(keys, source)
    if not names:
        raise ValueError(f"{source}: expected at least one column and one row of data")
    modes = modes_for(names)
    cells = [_cells(v, source, name) for name, v in zip(names, values)]
    n = len(cells[0])
    for name, c in zip(names, cells):
        if len(c) != n:
            raise ValueError(f"{source}: column {name!r} has {len(c)} rows, but column "
                             f"{names[0]!r} has {n}")
    if n == 0:
        raise ValueError(f"{source}: expected at least one column and one row of data")
    rows = Table(source, [], np.arange(1, n + 1))
    columns = [_number_column(name, c, hint, rows) if mode == NUMBER
               else _text_column(name, c, rows)
               for name, c, (mode, hint) in zip(names, cells, modes)]
    return _check_finite(Table(source, columns))
