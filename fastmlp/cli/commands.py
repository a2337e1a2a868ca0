"""What each subcommand of ``fastmlp`` does once its arguments are parsed: ``demo``,
``train``, ``predict`` and ``bench``, with ``train``'s plot and ``predict``'s CSV output."""
from __future__ import annotations

import csv
import os
import sys

import numpy as np

import fastmlp
from fastmlp.cli.data import (encode_classes, label_names, load_training_data,
                              read_sidecar, regression_targets, sidecar_path, write_sidecar)
from fastmlp.cli.demo import run as run_demo
from fastmlp.cli.prediction import (REGRESSOR_HAS_NO_PROBA, class_names, is_classifier,
                                    prediction_inputs, predictions)
from fastmlp.cli.preprocess import Preprocessing
from fastmlp.cli.report import (classification_report, format_classification_report,
                                regression_scores)
from fastmlp.cli.sparse import load_sparse, refuse_table_options, sparse_kind
from fastmlp.cli.training import fit_epochs, rate, score


def _format_scores(scores) -> str:
    return ", ".join(f"{name} {value:.4f}" for name, value in scores)


def cmd_demo(args) -> int:
    """``fastmlp demo``."""
    if args.samples < 10:
        raise ValueError(f"--samples: expected at least 10, got {args.samples}")
    run_demo(args.samples, args.epochs, args.seed)
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
    classifier = args.loss == "softmax_cross_entropy"
    kind = sparse_kind(args.data)
    if kind is None and args.labels is not None:
        raise ValueError(f"--labels: only for sparse DATA (.npz of scipy.sparse.save_npz); "
                         f"{args.data} names its target with --target")
    inputs = (_sparse_inputs if kind else _table_inputs)(args, classifier, kind)
    X, y, val, classes = inputs["X"], inputs["y"], inputs["val"], inputs["classes"]
    n_out = len(classes) if classifier else y.shape[1]
    sizes = [X.shape[1], *args.layers, n_out]
    net = fastmlp.MLP(sizes, loss=args.loss, activation=args.activation, dtype=args.dtype,
                      optimizer=args.optimizer, l2=args.l2, seed=args.seed,
                      dropout=args.dropout)
    n_rows = X.shape[0]
    print(f"training {'-'.join(map(str, sizes))} ({args.loss}, {args.dtype}) on "
          f"{n_rows:,} rows" + (f", validating on {val[0].shape[0]:,}" if val else "")
          + inputs["note"], flush=True)
    history = fit_epochs(net, X, y, epochs=args.epochs, batch_size=args.batch_size,
                         lr=args.lr, seed=args.seed, progress=not args.quiet, val=val)
    print(f"final training loss {history['loss'][-1]:.6g}; "
          f"{rate(args.epochs * n_rows, history['seconds']):,.0f} samples/s")
    report = None
    if val is not None and classifier:
        report = classification_report(val[1], net.predict(val[0]), classes)
        print("validation: " + format_classification_report(report).replace("\n", "\n  "))
    elif val is not None:
        print(f"validation: {_format_scores(score(net, *val))}")
    # Without this, a failed sidecar write would leave an older model's names next to it.
    if os.path.exists(sidecar_path(args.out)):
        os.remove(sidecar_path(args.out))
    net.save(args.out)
    write_sidecar(args.out, {**inputs["meta"], "classes": classes, "loss": args.loss,
                             "n_inputs": sizes[0], "n_outputs": sizes[-1]})
    print(f"saved {args.out} (and {sidecar_path(args.out)})")
    if args.plot:
        plot_losses(history, args.plot, report)
        print(f"wrote {args.plot}")
    return 0


def _targets(raw, what: str, classifier: bool):
    """(targets for fit: int64 codes or an (n, k) array, class names or None)."""
    if classifier:
        return encode_classes(raw, what)
    return regression_targets(raw, what), None


def _table_inputs(args, classifier: bool, kind) -> dict:
    """``train``'s inputs from a table or dense array: the columns preprocessed with the
    statistics of the training rows.  Returns {"X", "y", "val": (X_val, y_val) or None,
    "classes", "note": what the preprocessing did, "meta": the sidecar's data fields}."""
    data = load_training_data(args.data, args.target, classify=classifier,
                              categorical=args.categorical)
    table = data["table"]
    y, classes = _targets(data["y"], f"{args.data}: targets {data['target']!r}", classifier)
    if args.impute is None:
        Preprocessing.check_complete(table)
    val_table = val_rows = None
    if args.val_fraction:
        train_rows, val_rows = _split(len(table), args.val_fraction, args.seed)
        table, val_table = table.take(train_rows), table.take(val_rows)
    # Statistics from the training rows only: the validation rows stand for unseen data.
    prep = Preprocessing.fit(table, scale=not args.no_scale, impute=args.impute)
    X = prep.transform(table)
    val = None
    if val_rows is not None:
        val = (prep.transform(val_table), y[val_rows])
        y = y[train_rows]
    return {"X": X, "y": y, "val": val, "classes": classes,
            "note": _preprocessing_note(prep),
            "meta": {"data_format": data["format"], "features": data["features"],
                     "target": data["target"], "preprocessing": prep.to_json()}}


def _sparse_inputs(args, classifier: bool, kind: str) -> dict:
    """``_table_inputs`` for sparse DATA: CSR rows as they are, no preprocessing."""
    refuse_table_options(args, args.data)
    X, raw = load_sparse(args.data, kind, args.labels)
    y, classes = _targets(raw, f"{args.data}: labels" if args.labels is None
                          else f"--labels {args.labels}", classifier)
    val = None
    if args.val_fraction:
        train_rows, val_rows = _split(X.shape[0], args.val_fraction, args.seed)
        X, val = X[train_rows], (X[val_rows], y[val_rows])
        y = y[train_rows]
    return {"X": X, "y": y, "val": val, "classes": classes,
            "note": f"; sparse, {X.nnz / X.shape[0]:,.1f} stored values a row of "
                    f"{X.shape[1]:,} inputs, not scaled",
            "meta": {"data_format": kind, "features": None, "target": None,
                     "preprocessing": None}}


def _preprocessing_note(prep) -> str:
    """'; 2 text columns one-hot encoded (9 inputs), numbers standardised' and the like."""
    n_text = sum(c["kind"] == "text" for c in prep.columns)
    n_numbers = len(prep.columns) - n_text
    notes = []
    if n_numbers:
        notes.append(f"{n_numbers} numeric column{'s' * (n_numbers > 1)} "
                     + ("standardised" if prep.scale else "not scaled (--no-scale)"))
    if n_text:
        notes.append(f"{n_text} text column{'s' * (n_text > 1)} one-hot encoded")
    if prep.impute:
        notes.append(f"missing cells filled ({prep.impute})")
    return f"; {', '.join(notes)}; {prep.width} inputs"


def plot_losses(history: dict, path: str, report: dict | None = None) -> None:
    """Training (and validation) loss per epoch, to an image file; with a classification
    ``report``, its confusion matrix beside the curves."""
    import matplotlib
    matplotlib.use("Agg")           # no display needed
    import matplotlib.pyplot as plt
    if report is None:
        fig, ax = plt.subplots(figsize=(6, 4))
    else:
        fig, (ax, cax) = plt.subplots(1, 2, figsize=(11, 4.5),
                                      gridspec_kw={"width_ratios": [1.2, 1]})
        _plot_confusion(cax, report)
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


def _plot_confusion(ax, report: dict) -> None:
    cm, names = report["confusion"], [str(c) for c in report["classes"]]
    ax.imshow(cm, cmap="Blues")
    ticks = np.arange(len(names))
    ax.set_xticks(ticks, names, rotation=45 if max(map(len, names)) > 4 else 0, ha="right")
    ax.set_yticks(ticks, names)
    # Counts in white on the darker half of the colour scale, so that they stay legible.
    for (i, j), count in np.ndenumerate(cm):
        ax.text(j, i, str(count), ha="center", va="center",
                color="white" if count > cm.max() / 2 else "black")
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(f"validation: accuracy {report['accuracy']:.3f}")


def cmd_predict(args) -> int:
    """``fastmlp predict``."""
    try:
        net = fastmlp.load(args.model)
    except ValueError as exc:
        # load's messages name the argument ("path: ...", "file: ..."); name the file.
        message = str(exc).removeprefix("path: ").removeprefix("file: ")
        raise ValueError(f"{args.model}: {message}") from None
    meta = read_sidecar(args.model, net)
    X, y = prediction_inputs(args.model, args.data, args.labels, net, meta)
    n_rows = X.shape[0]
    classifier = is_classifier(net)
    if args.proba and not classifier:
        raise ValueError(f"--proba: {REGRESSOR_HAS_NO_PROBA}")
    classes = class_names(net, meta)
    out = predictions(net, classes, X)
    if classifier:
        header = ["prediction"]
        columns = [out]
        if args.proba:
            proba = net.predict_proba(X)
            header += [f"proba_{c}" for c in classes]
            columns += list(proba.T)
    else:
        header = ["prediction"] if out.shape[1] == 1 else \
            [f"prediction_{j}" for j in range(out.shape[1])]
        columns = list(out.T)
    _write_csv(args.out, header, columns)
    if y is not None:
        # DATA holds the targets too: a score, but the predictions are written either way.
        try:
            print(f"{args.data}: {_format_scores(_prediction_scores(net, out, y))} "
                  f"({n_rows:,} rows)", file=sys.stderr)
        except ValueError as exc:
            print(f"fastmlp: no score for {args.data}: {exc}", file=sys.stderr)
    if args.out != "-":
        print(f"wrote {n_rows:,} predictions to {args.out}", file=sys.stderr)
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
