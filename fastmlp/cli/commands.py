"""What each subcommand of ``fastmlp`` does once its arguments are parsed: ``demo``,
``train``, ``predict`` and ``bench``, with ``train``'s plot and ``predict``'s CSV output."""
from __future__ import annotations

import csv
import os
import sys

import numpy as np

import fastmlp
from fastmlp.cli.data import (encode_classes, label_names, load_prediction_data,
                              load_training_data, read_sidecar, regression_targets,
                              sidecar_path, write_sidecar)
from fastmlp.cli.demo import run as run_demo
from fastmlp.cli.preprocess import Preprocessing
from fastmlp.cli.report import (classification_report, format_classification_report,
                                regression_scores)
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
    data = load_training_data(args.data, args.target, classify=classifier,
                              categorical=args.categorical)
    table, what = data["table"], f"{args.data}: targets {data['target']!r}"
    if classifier:
        y, classes = encode_classes(data["y"], what)
        n_out = len(classes)
    else:
        y, classes = regression_targets(data["y"], what), None
        n_out = y.shape[1]
    if args.impute is None:
        Preprocessing.check_complete(table)
    train_rows = val_rows = None
    if args.val_fraction:
        train_rows, val_rows = _split(len(table), args.val_fraction, args.seed)
        table, val_table = table.take(train_rows), table.take(val_rows)
    # Statistics from the training rows only: the validation rows stand for unseen data.
    prep = Preprocessing.fit(table, scale=not args.no_scale, impute=args.impute)
    X = prep.transform(table)
    sizes = [prep.width, *args.layers, n_out]
    net = fastmlp.MLP(sizes, loss=args.loss, activation=args.activation, dtype=args.dtype,
                      optimizer=args.optimizer, l2=args.l2, seed=args.seed,
                      dropout=args.dropout)
    val = None
    if val_rows is not None:
        X_val = np.ascontiguousarray(prep.transform(val_table), dtype=net.dtype)
        y, val = y[train_rows], (X_val, y[val_rows])
    print(f"training {'-'.join(map(str, sizes))} ({args.loss}, {args.dtype}) on "
          f"{len(X):,} rows" + (f", validating on {len(val[0]):,}" if val else "")
          + _preprocessing_note(prep), flush=True)
    history = fit_epochs(net, X, y, epochs=args.epochs, batch_size=args.batch_size,
                         lr=args.lr, seed=args.seed, progress=not args.quiet, val=val)
    print(f"final training loss {history['loss'][-1]:.6g}; "
          f"{rate(args.epochs * len(X), history['seconds']):,.0f} samples/s")
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
    write_sidecar(args.out, {
        "data_format": data["format"], "features": data["features"],
        "target": data["target"], "classes": classes, "loss": args.loss,
        "n_inputs": sizes[0], "n_outputs": sizes[-1], "preprocessing": prep.to_json()})
    print(f"saved {args.out} (and {sidecar_path(args.out)})")
    if args.plot:
        plot_losses(history, args.plot, report)
        print(f"wrote {args.plot}")
    return 0


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
    prep = meta["preprocessing"] if meta else Preprocessing.identity(net.layer_sizes[0])
    features = (meta or {}).get("features")
    table, y = load_prediction_data(args.data, len(prep.columns), meta,
                                    prep.text_features(features) if features else ())
    X = np.ascontiguousarray(prep.transform(table), dtype=net.dtype)
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
