"""The ``fastmlp`` command: ``demo``, ``train``, ``predict`` and ``bench``.

Mistakes a user can make — a missing or malformed file, an unknown column, data that does
not fit the model, a bad option value — end the command with one line on stderr,
``fastmlp: error: ...``, and exit status 2, never a traceback.

tqdm (progress bars), matplotlib (``--plot``) and pyarrow (Parquet files) are optional:
without tqdm, training prints one line per epoch instead of a bar; without matplotlib,
``--plot`` is refused before anything runs; without pyarrow, a .parquet DATA is refused
with the command that installs it.

This module holds the argument parser and ``main``; the rest is in
``fastmlp.cli.commands`` (what each command does), ``fastmlp.cli.training`` (the epoch
loop, its progress bar and the scores), ``fastmlp.cli.data`` (reading DATA, the
targets, the model's sidecar JSON), ``fastmlp.cli.preprocess`` (imputation, scaling and
one-hot encoding of the features), ``fastmlp.cli.prediction`` (DATA as the network's
input and its outputs as class names, shared with ``fastmlp.load_table_model``),
``fastmlp.cli.frames`` (DataFrames and dicts of columns read as tables),
``fastmlp.cli.report`` (the validation report) and ``fastmlp.cli.demo`` (the demo's data
and network).  Their public names are re-exported here, so ``fastmlp.cli.<name>`` works as it
did when the command was one module; the submodules import one another, never this
package, so that importing any of them does not need the parser.
"""
from __future__ import annotations

import argparse
import csv
import os
import sys

import numpy as np

import fastmlp
from fastmlp import _validation as v
from fastmlp.cli.commands import (cmd_bench, cmd_demo, cmd_predict, cmd_train,
                                  plot_losses)
from fastmlp.cli.data import (MISSING_CELLS, Column, Table, encode_classes, label_names,
                              label_values, load_prediction_data, load_training_data,
                              read_sidecar, read_table, regression_targets, sidecar_path,
                              write_sidecar)
from fastmlp.cli.demo import EPOCHS as DEMO_EPOCHS, N_SAMPLES as DEMO_SAMPLES
from fastmlp.cli.preprocess import IMPUTE, Preprocessing
from fastmlp.cli.report import (classification_report, confusion_matrix,
                                format_classification_report, regression_scores)
from fastmlp.cli.training import fit_epochs, rate, score

__all__ = [
    "EXIT_USAGE", "build_parser", "main", "parse_layers",
    "cmd_bench", "cmd_demo", "cmd_predict", "cmd_train", "plot_losses",
    "MISSING_CELLS", "Column", "Table", "encode_classes", "label_names", "label_values",
    "load_prediction_data", "load_training_data", "read_sidecar", "read_table",
    "regression_targets", "sidecar_path", "write_sidecar",
    "IMPUTE", "Preprocessing",
    "classification_report", "confusion_matrix", "format_classification_report",
    "regression_scores",
    "fit_epochs", "rate", "score",
]

EXIT_USAGE = 2


# ---------------------------------------------------------------------- argument parsing
class _Parser(argparse.ArgumentParser):
    """argparse with its usage errors on one line, like the command's other errors."""

    def error(self, message):
        self.exit(EXIT_USAGE, f"fastmlp: error: {message} (see '{self.prog} --help')\n")


def _argument(convert, ok, expected: str):
    """An argparse ``type``: ``convert(text)``, refused unless ``ok`` with a message
    saying what was ``expected``."""
    def parse(text: str):
        try:
            value = convert(text)
        except ValueError:
            value = None
        if value is None or not ok(value):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        return value
    return parse


_positive_int = _argument(int, lambda v: v >= 1, "an integer >= 1")
_positive_float = _argument(float, lambda v: np.isfinite(v) and v > 0, "a finite number > 0")
_fraction = _argument(float, lambda v: 0 < v < 1, "a number strictly between 0 and 1")


def parse_names(text: str) -> list[str]:
    """``"region,zip"`` -> ["region", "zip"]: column names separated by commas."""
    names = [name.strip() for name in text.split(",")]
    if not all(names):
        raise argparse.ArgumentTypeError(f"expected column names separated by commas, got "
                                         f"{text!r}")
    return names


def parse_activations(text: str) -> str | list[str]:
    """``"gelu"`` -> "gelu" (every hidden layer); ``"gelu,tanh"`` -> one per hidden layer."""
    names = [name.strip() for name in text.split(",")]
    bad = [name for name in names if name not in v.ACTIVATIONS]
    if bad:
        raise argparse.ArgumentTypeError(
            f"expected one of {', '.join(v.ACTIVATIONS)}, or one per hidden layer separated "
            f"by commas, got {bad[0]!r}")
    return names[0] if len(names) == 1 else names


def parse_dropout(text: str) -> float | list[float]:
    """``"0.2"`` -> 0.2 (every hidden layer); ``"0.2,0"`` -> one per hidden layer."""
    try:
        rates = [float(p) for p in text.split(",")]
    except ValueError:
        rates = [-1.0]
    if not all(0 <= p < 1 for p in rates):
        raise argparse.ArgumentTypeError(
            f"expected a probability in [0, 1), or one per hidden layer separated by "
            f"commas, got {text!r}")
    return rates[0] if len(rates) == 1 else rates


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
  .csv      a header row, then one row per sample; --target names the target column
            (default: the last one); every other column is a feature
  .parquet  the same, as a Parquet file (needs pyarrow: pip install "fastmlp[cli]")
  .npz      features in array X, targets in array y (--target names another array)
  .npy      a 2-D numeric array; --target is the index of the target column (default: -1)

Sparse DATA (trained on as CSR rows: the first layer costs the stored values only):
  .svm .svmlight .libsvm .txt
            svmlight/libsvm text, "label index:value ..." a line, labels from the file
            (needs scikit-learn: pip install "fastmlp[sklearn]"); index j is input j as
            written (a file numbered from 1 leaves input 0 unused)
  .npz      a matrix saved by scipy.sparse.save_npz; its labels come from --labels FILE
            (.npy, or text with one label per line)
  Sparse features are used as they are: no standardising (centring would fill in every
  zero; scale them beforehand if needed), and --target, --categorical and --impute do
  not apply (an entry left out is 0, not missing).

Features, as the network sees them (statistics from the training rows, kept in
MODEL.json, applied again by `fastmlp predict`):
  numbers   standardised to mean 0, variance 1 (--no-scale: as they are); a constant
            column becomes 0
  text      a column of words is one-hot encoded, one input per category of the
            training rows; --categorical encodes columns of numbers so too (codes, zip
            codes); a category not seen in training is all zeros, with a warning
  missing   an empty cell (or %s; NaN in .npz/.npy; null in Parquet)
            is an error unless --impute fills it (text: with its most frequent value)

With --loss softmax_cross_entropy the targets are class labels of any kind (strings,
numbers); they are numbered 0..k-1 in sorted order and their names are kept in
MODEL.json next to the model, so that `fastmlp predict` writes them back.

With --val-fraction, training ends with a report on the held-out rows: accuracy,
per-class precision, recall and F1 and the confusion matrix, or R², MAE and RMSE.

example:
  fastmlp train data.csv --target label --layers 64,32 --loss softmax_cross_entropy \\
      --epochs 20 --val-fraction 0.2 --out model.npz --plot loss.png
""" % ", ".join(c for c in MISSING_CELLS if c)

_PREDICT_EPILOG = """\
DATA is read like `fastmlp train` reads it, and transformed with the statistics saved
in MODEL.json.  A model trained on sparse DATA predicts sparse DATA (svmlight, whose
labels, if any, give the score; or a scipy.sparse .npz, with --labels FILE for a score).  Table columns (.csv, .parquet) are matched to the model's features by
name, in any order; the target column may be there or not; a feature missing from DATA,
or any other column, is an error naming it.  A .npy array may keep the target column the
model was trained without.  If DATA also holds the targets, the score (accuracy, or R²,
MAE and RMSE) is printed on stderr.

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

    train = sub.add_parser("train", help="train a network on a .csv, .parquet, .npz, .npy "
                                         "or svmlight file",
                           description="Train a network on DATA and save it.",
                           epilog=_TRAIN_EPILOG,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    train.add_argument("data", metavar="DATA",
                       help="training data: .csv, .parquet, .npz, .npy, or sparse: "
                            "svmlight (.svm, .svmlight, .libsvm, .txt) or a "
                            "scipy.sparse.save_npz .npz")
    train.add_argument("--target", metavar="COL",
                       help="target column (CSV/Parquet name, .npy index) or .npz array name")
    train.add_argument("--labels", metavar="FILE",
                       help="labels of a sparse .npz DATA (scipy.sparse.save_npz): .npy, or "
                            "text with one label per line")
    train.add_argument("--loss", required=True, choices=v.LOSSES,
                       help="mse for regression, softmax_cross_entropy for classification")
    train.add_argument("--layers", type=parse_layers, default=[64], metavar="SIZES",
                       help="hidden-layer sizes, comma-separated, or 'none' (default: 64); "
                            "input and output sizes come from the data")
    train.add_argument("--activation", type=parse_activations, default="relu",
                       metavar="NAME[,NAME…]",
                       help=f"hidden-layer activation, one of {', '.join(v.ACTIVATIONS)}, or "
                            "one per hidden layer (default: %(default)s)")
    train.add_argument("--dropout", type=parse_dropout, default=0.0, metavar="P[,P…]",
                       help="dropout probability of the hidden layers during training, or "
                            "one per hidden layer (default: 0)")
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
    train.add_argument("--no-scale", action="store_true",
                       help="leave numeric features as they are (default: standardise them)")
    train.add_argument("--categorical", type=parse_names, default=[], metavar="COLS",
                       help="comma-separated columns to one-hot encode although they hold "
                            "numbers (columns of text always are)")
    train.add_argument("--impute", choices=IMPUTE,
                       help="fill missing cells with the column's mean, median or most "
                            "frequent value (default: a missing cell is an error)")
    train.add_argument("--val-fraction", type=_fraction, metavar="F",
                       help="hold out this fraction of the rows, report the validation "
                            "score after each epoch and a full report at the end")
    train.add_argument("--out", default="model.npz", metavar="MODEL",
                       help="where to save the model (default: %(default)s; class names "
                            "and column names go to MODEL.json)")
    train.add_argument("--plot", metavar="PNG",
                       help="write the loss curves (and, for a classifier with "
                            "--val-fraction, the confusion matrix) to this image "
                            "(needs matplotlib)")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    train.set_defaults(func=cmd_train)

    predict = sub.add_parser("predict", help="predict with a saved model",
                             description="Write the predictions of a saved model for DATA "
                                         "as CSV.",
                             epilog=_PREDICT_EPILOG,
                             formatter_class=argparse.RawDescriptionHelpFormatter)
    predict.add_argument("model", metavar="MODEL", help="a model saved by fastmlp (.npz)")
    predict.add_argument("data", metavar="DATA", help=".csv, .parquet, .npz, .npy or "
                                                      "svmlight")
    predict.add_argument("--labels", metavar="FILE",
                         help="labels of a sparse .npz DATA, for a score (optional)")
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
    except (ValueError, TypeError, OSError, KeyError, FloatingPointError, csv.Error,
            ImportError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
        print(f"fastmlp: error: {' '.join(str(message).split())}", file=sys.stderr)
        return EXIT_USAGE
