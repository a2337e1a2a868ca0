"""The ``fastmlp`` command: ``demo``, ``train``, ``predict`` and ``bench``.

Mistakes a user can make — a missing or malformed file, an unknown column, data that does
not fit the model, a bad option value — end the command with one line on stderr,
``fastmlp: error: ...``, and exit status 2, never a traceback.

tqdm (progress bars) and matplotlib (``--plot``) are optional: without tqdm, training
prints one line per epoch instead of a bar; without matplotlib, ``--plot`` is refused
before anything runs.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
import zipfile
import zlib

import numpy as np

import fastmlp
from fastmlp import _validation as v
from fastmlp.demo import EPOCHS as DEMO_EPOCHS, N_SAMPLES as DEMO_SAMPLES

EXIT_USAGE = 2
_SIDECAR = ".json"          # model.npz -> model.npz.json: what fastmlp.load does not store
_SIDECAR_FORMAT = "fastmlp-cli-1"


# ---------------------------------------------------------------------- argument parsing
class _Parser(argparse.ArgumentParser):
    """argparse with its usage errors on one line, like the command's other errors."""

    def error(self, message):
        self.exit(EXIT_USAGE, f"fastmlp: error: {message} (see '{self.prog} --help')\n")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not (np.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected a finite number > 0, got {text!r}")
    return value


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"expected a number strictly between 0 and 1, "
                                         f"got {text!r}")
    return value


def parse_layers(text: str) -> list[int]:
    """``"256,128"`` -> [256, 128]; ``""`` or ``"none"`` -> [] (no hidden layer)."""
    if text.strip().lower() in ("", "none"):
        return []
    try:
        sizes = [int(s) for s in text.split(",")]
    except ValueError:
        sizes = [0]
    if any(s < 1 for s in sizes):
        raise argparse.ArgumentTypeError(
            f"expected hidden-layer sizes as positive integers separated by commas, such as "
            f"256,128 (or 'none'), got {text!r}")
    return sizes


_TRAIN_EPILOG = """\
DATA formats:
  .csv  a header row, then one row per sample; --target names the target column
        (default: the last one); every other column is a numeric feature
  .npz  features in array X, targets in array y (--target names another array)
  .npy  a 2-D numeric array; --target is the index of the target column (default: -1)

With --loss softmax_cross_entropy the targets are class labels of any kind (strings,
numbers); they are numbered 0..k-1 in sorted order and their names are kept in
MODEL.json next to the model, so that `fastmlp predict` writes them back.

example:
  fastmlp train data.csv --target label --layers 64,32 --loss softmax_cross_entropy \\
      --epochs 20 --val-fraction 0.2 --out model.npz --plot loss.png
"""

_PREDICT_EPILOG = """\
DATA is read like `fastmlp train` reads it.  CSV columns are matched to the model's
features by name (other columns, such as the target, are ignored); a .npy array may
keep the target column the model was trained without.  If DATA also holds the targets,
the score (accuracy, or R² and MSE) is printed on stderr.

example:
  fastmlp predict model.npz data.csv --out predictions.csv
"""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``fastmlp`` command (``bench`` is parsed by fastmlp.bench)."""
    parser = _Parser(prog="fastmlp",
                     description="Train and use multilayer perceptrons (fastmlp "
                                 f"{fastmlp.__version__}).")
    parser.add_argument("--version", action="version", version=f"fastmlp {fastmlp.__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = sub.add_parser("demo", help="train a small network on generated data",
                          description="Train a classifier on Gaussian clusters generated here "
                                      "(no download) and print its loss, test accuracy and "
                                      "throughput.")
    demo.add_argument("--samples", type=_positive_int, default=DEMO_SAMPLES,
                      help="rows generated, 80%% for training (default: %(default)s)")
    demo.add_argument("--epochs", type=_positive_int, default=DEMO_EPOCHS,
                      help="default: %(default)s")
    demo.add_argument("--seed", type=int, default=0, help="default: %(default)s")
    demo.set_defaults(func=cmd_demo)

    train = sub.add_parser("train", help="train a network on a .csv, .npz or .npy file",
                           description="Train a network on DATA and save it.",
                           epilog=_TRAIN_EPILOG,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    train.add_argument("data", metavar="DATA", help="training data: .csv, .npz or .npy")
    train.add_argument("--target", metavar="COL",
                       help="target column (CSV name, .npy index) or .npz array name")
    train.add_argument("--loss", required=True, choices=v.LOSSES,
                       help="mse for regression, softmax_cross_entropy for classification")
    train.add_argument("--layers", type=parse_layers, default=[64], metavar="SIZES",
                       help="hidden-layer sizes, comma-separated, or 'none' (default: 64); "
                            "input and output sizes come from the data")
    train.add_argument("--activation", choices=v.ACTIVATIONS, default="relu",
                       help="hidden-layer activation (default: %(default)s)")
    train.add_argument("--optimizer", choices=v.OPTIMIZERS, default="sgd",
                       help="default: %(default)s")
    train.add_argument("--l2", type=float, default=0.0, help="L2 penalty (default: 0)")
    train.add_argument("--epochs", type=_positive_int, default=10, help="default: %(default)s")
    train.add_argument("--batch-size", type=_positive_int, default=32,
                       help="default: %(default)s")
    train.add_argument("--lr", type=_positive_float, default=0.01,
                       help="learning rate (default: %(default)s)")
    train.add_argument("--dtype", choices=("float32", "float64"), default="float32",
                       help="default: %(default)s")
    train.add_argument("--seed", type=int, default=0,
                       help="seeds the weights, the validation split and the shuffling "
                            "(default: %(default)s)")
    train.add_argument("--val-fraction", type=_fraction, metavar="F",
                       help="hold out this fraction of the rows and report the validation "
                            "score after each epoch")
    train.add_argument("--out", default="model.npz", metavar="MODEL",
                       help="where to save the model (default: %(default)s; class names "
                            "and column names go to MODEL.json)")
    train.add_argument("--plot", metavar="PNG",
                       help="write the loss curves to this image (needs matplotlib)")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    train.set_defaults(func=cmd_train)

    predict = sub.add_parser("predict", help="predict with a saved model",
                             description="Write the predictions of a saved model for DATA "
                                         "as CSV.",
                             epilog=_PREDICT_EPILOG,
                             formatter_class=argparse.RawDescriptionHelpFormatter)
    predict.add_argument("model", metavar="MODEL", help="a model saved by fastmlp (.npz)")
    predict.add_argument("data", metavar="DATA", help=".csv, .npz or .npy")
    predict.add_argument("--out", default="-", metavar="CSV",
                         help="output file (default: standard output)")
    predict.add_argument("--proba", action="store_true",
                         help="classifiers: also write each class's probability")
    predict.set_defaults(func=cmd_predict)

    # Listed for `fastmlp --help`; main() hands `bench ...` to fastmlp.bench untouched.
    sub.add_parser("bench", add_help=False,
                   help="benchmark fastmlp against numpy, PyTorch and scikit-learn "
                        "(see fastmlp bench --help)")
    return parser


# ---------------------------------------------------------------------- main
def main(argv=None) -> int:
    """Run the command line ``argv`` (default: sys.argv[1:]); returns the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        if argv[:1] == ["bench"]:
            return cmd_bench(argv[1:])
        args = build_parser().parse_args(argv)
        return args.func(args)
    except KeyboardInterrupt:
        print("fastmlp: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # Output piped into e.g. `head`, which has exited: not an error worth a message.
        # Point stdout at devnull so that the interpreter's final flush does not fail.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except (ValueError, TypeError, OSError, KeyError, FloatingPointError, csv.Error) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
        print(f"fastmlp: error: {' '.join(str(message).split())}", file=sys.stderr)
        return EXIT_USAGE


# ---------------------------------------------------------------------- progress
class _EpochLines:
    """Stand-in for a tqdm bar when tqdm is not installed: one line per epoch."""

    def __init__(self, total: int, desc: str):
        self.total, self.desc, self.n, self.postfix = total, desc, 0, ""

    def set_postfix_str(self, text: str, refresh: bool = True) -> None:
        self.postfix = text

    def update(self, n: int = 1) -> None:
        self.n += n
        print(f"{self.desc}: epoch {self.n}/{self.total}  {self.postfix}", file=sys.stderr,
              flush=True)

    def close(self) -> None:
        pass


class _NoBar(_EpochLines):
    def update(self, n: int = 1) -> None:
        pass


def _epoch_bar(total: int, desc: str, enabled: bool):
    if not enabled:
        return _NoBar(total, desc)
    try:
        from tqdm import tqdm
    except ImportError:
        return _EpochLines(total, desc)
    return tqdm(total=total, desc=desc, unit="epoch", file=sys.stderr, dynamic_ncols=True)


def fit_epochs(net, X, y, *, epochs: int, batch_size: int, lr: float, seed: int,
               progress: bool = True, desc: str = "train", val=None) -> dict:
    """Train ``net`` on (X, y) one epoch at a time, under a progress bar over the epochs
    showing the training loss, the throughput and, with ``val=(X_val, y_val)``, the
    validation score.

    Returns {"loss": [per epoch], "val_loss": [per epoch] or [], "seconds": time in fit}.
    Each epoch gets its own shuffling seed drawn from ``seed`` (one ``fit`` call per epoch
    with the same seed would visit the rows in the same order every epoch).
    """
    # Converted once here, so that fit does not copy the data again every epoch.
    X = np.ascontiguousarray(X, dtype=net.dtype)
    epoch_seeds = np.random.default_rng([seed, 1]).integers(0, 2**63, size=epochs)
    history = {"loss": [], "val_loss": [], "seconds": 0.0}
    bar = _epoch_bar(epochs, desc, progress)
    try:
        for epoch, epoch_seed in enumerate(epoch_seeds, 1):
            t0 = time.perf_counter()
            try:
                (loss,) = net.fit(X, y, epochs=1, batch_size=batch_size, lr=lr,
                                  seed=int(epoch_seed))
            except fastmlp.DivergenceError as exc:
                # fit counts epochs per call; name the epoch of the whole run instead.
                raise fastmlp.DivergenceError(
                    f"training diverged in epoch {epoch} of {epochs}: a step gave a "
                    "non-finite loss or gradient; lower the learning rate") from exc
            elapsed = time.perf_counter() - t0
            history["seconds"] += elapsed
            history["loss"].append(loss)
            status = f"loss {loss:.4g}, {rate(len(X), elapsed):,.0f} samples/s"
            if val is not None:
                history["val_loss"].append(net.loss(*val))
                name, value = score(net, *val)[0]
                status += f", validation {name} {value:.4g}"
            bar.set_postfix_str(status, refresh=False)     # update() redraws
            bar.update(1)
    finally:
        bar.close()
    return history


def rate(samples: int, seconds: float) -> float:
    """Samples per second (a tiny data set can train within the clock's resolution)."""
    return samples / max(seconds, 1e-9)


def score(net, X, y) -> list[tuple[str, float]]:
    """[(name, value), ...]: accuracy for a classifier, R² and MSE for a regressor
    (y: int labels, or (n, k) targets)."""
    pred = net.predict(X)
    if net.loss_name == "softmax_cross_entropy":
        return [("accuracy", float(np.mean(pred == y)))]
    return regression_scores(pred, np.asarray(y, dtype=np.float64).reshape(pred.shape))


def regression_scores(pred, y) -> list[tuple[str, float]]:
    """R² (mean over outputs, as scikit-learn's default) and MSE (mean over entries)."""
    err = np.asarray(pred, dtype=np.float64) - y
    ss_res = np.sum(err**2, axis=0)
    ss_tot = np.sum((y - y.mean(axis=0))**2, axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        r2 = np.where(ss_tot > 0, 1 - ss_res / ss_tot, np.where(ss_res > 0, 0.0, 1.0))
    return [("R²", float(np.mean(r2))), ("MSE", float(np.mean(err**2)))]


def _format_scores(scores) -> str:
    return ", ".join(f"{name} {value:.4f}" for name, value in scores)


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


# ---------------------------------------------------------------------- commands
def cmd_demo(args) -> int:
    """``fastmlp demo``."""
    from fastmlp.demo import run
    if args.samples < 10:
        raise ValueError(f"--samples: expected at least 10, got {args.samples}")
    run(args.samples, args.epochs, args.seed)
    return 0


def _check_output_path(path: str, option: str) -> None:
    """Fail before training, not after, if ``path`` cannot be written."""
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise ValueError(f"{option}: folder {folder} does not exist")
    if os.path.isdir(path):
        raise ValueError(f"{option}: {path} is a folder")


def _split(n: int, fraction: float, seed: int):
    """Row indices (train, validation), a random ``fraction`` of the rows held out."""
    n_val = int(round(fraction * n))
    if n_val < 1 or n_val >= n:
        raise ValueError(f"--val-fraction: {fraction} of {n} rows leaves no "
                         f"{'validation' if n_val < 1 else 'training'} rows")
    perm = np.random.default_rng([seed, 2]).permutation(n)
    return perm[n_val:], perm[:n_val]


def cmd_train(args) -> int:
    """``fastmlp train``."""
    _check_output_path(args.out, "--out")
    if args.plot:
        _check_output_path(args.plot, "--plot")
        try:
            import matplotlib  # noqa: F401  (checked now, not after training)
        except ImportError:
            raise ValueError("--plot needs matplotlib: pip install matplotlib") from None
    data = load_training_data(args.data, args.target)
    X, what = data["X"], f"{args.data}: targets {data['target']!r}"
    if args.loss == "softmax_cross_entropy":
        y, classes = encode_classes(data["y"], what)
        n_out = len(classes)
    else:
        y, classes = regression_targets(data["y"], what), None
        n_out = y.shape[1]
    sizes = [X.shape[1], *args.layers, n_out]
    net = fastmlp.MLP(sizes, loss=args.loss, activation=args.activation, dtype=args.dtype,
                      optimizer=args.optimizer, l2=args.l2, seed=args.seed)
    val = None
    if args.val_fraction:
        tr, va = _split(len(X), args.val_fraction, args.seed)
        X, y, val = X[tr], y[tr], (np.ascontiguousarray(X[va], dtype=net.dtype), y[va])
    print(f"training {'-'.join(map(str, sizes))} ({args.loss}, {args.dtype}) on "
          f"{len(X):,} rows" + (f", validating on {len(val[0]):,}" if val else ""), flush=True)
    history = fit_epochs(net, X, y, epochs=args.epochs, batch_size=args.batch_size,
                         lr=args.lr, seed=args.seed, progress=not args.quiet, val=val)
    print(f"final training loss {history['loss'][-1]:.6g}; "
          f"{rate(args.epochs * len(X), history['seconds']):,.0f} samples/s")
    if val is not None:
        print(f"validation: {_format_scores(score(net, *val))}")
    # Without this, a failed sidecar write would leave an older model's names next to it.
    if os.path.exists(sidecar_path(args.out)):
        os.remove(sidecar_path(args.out))
    net.save(args.out)
    write_sidecar(args.out, {
        "data_format": data["format"], "features": data["features"],
        "target": data["target"], "classes": classes, "loss": args.loss,
        "n_inputs": sizes[0], "n_outputs": sizes[-1]})
    print(f"saved {args.out} (and {sidecar_path(args.out)})")
    if args.plot:
        plot_losses(history, args.plot)
        print(f"wrote {args.plot}")
    return 0


def plot_losses(history: dict, path: str) -> None:
    """Training (and validation) loss per epoch, to an image file."""
    import matplotlib
    matplotlib.use("Agg")           # no display needed
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4))
    epochs = np.arange(1, len(history["loss"]) + 1)
    ax.plot(epochs, history["loss"], marker="o", label="training")
    if history["val_loss"]:
        ax.plot(epochs, history["val_loss"], marker="o", label="validation")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.legend()
    fig.tight_layout()
    try:
        fig.savefig(path, dpi=100)
    finally:
        plt.close(fig)


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


def cmd_predict(args) -> int:
    """``fastmlp predict``."""
    try:
        net = fastmlp.load(args.model)
    except ValueError as exc:
        # load's messages name the argument ("path: ...", "file: ..."); name the file.
        message = str(exc).removeprefix("path: ").removeprefix("file: ")
        raise ValueError(f"{args.model}: {message}") from None
    meta = read_sidecar(args.model, net)
    X, y = load_prediction_data(args.data, net, meta)
    X = np.ascontiguousarray(X, dtype=net.dtype)
    classifier = net.loss_name == "softmax_cross_entropy"
    if args.proba and not classifier:
        raise ValueError("--proba: the model is a regressor (loss mse)")
    classes = (meta or {}).get("classes") or [str(k) for k in range(net.layer_sizes[-1])]
    if classifier:
        out = np.array(classes, dtype=object)[net.predict(X)]
        header = ["prediction"]
        columns = [out]
        if args.proba:
            proba = net.predict_proba(X)
            header += [f"proba_{c}" for c in classes]
            columns += list(proba.T)
    else:
        out = net.predict(X)
        header = ["prediction"] if out.shape[1] == 1 else \
            [f"prediction_{j}" for j in range(out.shape[1])]
        columns = list(out.T)
    _write_csv(args.out, header, columns)
    if y is not None:
        # DATA holds the targets too: a score, but the predictions are written either way.
        try:
            print(f"{args.data}: {_format_scores(_prediction_scores(net, out, y))} "
                  f"({len(X):,} rows)", file=sys.stderr)
        except ValueError as exc:
            print(f"fastmlp: no score for {args.data}: {exc}", file=sys.stderr)
    if args.out != "-":
        print(f"wrote {len(X):,} predictions to {args.out}", file=sys.stderr)
    return 0


def _prediction_scores(net, predicted, y):
    """Scores of ``predicted`` (class names, or an (n, k) array) against raw targets ``y``."""
    if net.loss_name == "softmax_cross_entropy":
        truth = np.array(label_names(np.asarray(y).reshape(len(predicted))), dtype=object)
        return [("accuracy", float(np.mean(predicted == truth)))]
    return regression_scores(predicted, regression_targets(y, "targets"))


def _write_csv(path: str, header, columns) -> None:
    if path == "-":
        _write_rows(sys.stdout, header, columns)
        sys.stdout.flush()
    else:
        with open(path, "w", newline="") as f:
            _write_rows(f, header, columns)


def _write_rows(f, header, columns) -> None:
    writer = csv.writer(f, lineterminator="\n")
    writer.writerow(header)
    # str of a numpy float is its shortest text that reads back as the same value.
    writer.writerows([str(v) for v in row] for row in zip(*columns))


def cmd_bench(argv) -> int:
    """``fastmlp bench ...``: fastmlp.bench.run with its own options (see its --help)."""
    from fastmlp.bench.run import main as bench_main
    return bench_main(argv)
