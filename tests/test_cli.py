"""End-to-end tests of the ``fastmlp`` command: each runs ``python -m fastmlp ...`` (or the
console script) in a subprocess, from a temporary folder so that the uncompiled source tree
cannot shadow the installed package."""
import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import fastmlp

# One BLAS thread: the machine is shared, and the tests compare outputs, not speed.
ENV = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}
CLASSES = ["cat", "dog", "emu"]


def run_cli(*args, cwd, env=ENV, command=None):
    """Run the command line; returns the CompletedProcess (text stdout/stderr)."""
    command = command or [sys.executable, "-m", "fastmlp"]
    return subprocess.run([*command, *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def ok(proc):
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    assert "Traceback" not in proc.stderr
    return proc


def num(x) -> str:
    """A float as CSV text that reads back as the same float64."""
    return repr(float(x))


def write_csv(path, header, rows):
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)


def read_csv(path):
    with open(path, newline="") as f:
        header, *rows = list(csv.reader(f))
    return header, rows


def make_classes(n=240, seed=0):
    """Three linearly separable classes named by strings: (X (n, 3), names (n,))."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3))
    k = np.argmax(X @ np.array([[2.0, -1.0, 0.0], [0.0, 2.0, -1.0], [1.0, 0.0, 2.0]]), axis=1)
    return X, np.array(CLASSES)[k]


def standardised(X, like=None):
    """X with each column brought to mean 0 and variance 1 by the statistics of ``like``
    (default X): what `fastmlp train` feeds the network."""
    like = X if like is None else like
    return (X - like.mean(axis=0)) / like.std(axis=0)


def write_class_csv(path, X, names):
    # The target column sits between features: --target must pick it by name.
    write_csv(path, ["a", "label", "b", "c"],
              [[num(x[0]), name, num(x[1]), num(x[2])] for x, name in zip(X, names)])


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    """A classifier trained by the command on a CSV with string labels."""
    folder = tmp_path_factory.mktemp("classifier")
    X, names = make_classes()
    write_class_csv(folder / "train.csv", X, names)
    proc = ok(run_cli("train", "train.csv", "--target", "label", "--loss",
                      "softmax_cross_entropy", "--layers", "16", "--epochs", "15",
                      "--lr", "0.1", "--batch-size", "16", "--out", "model.npz", cwd=folder))
    return {"folder": folder, "X": X, "names": names, "proc": proc}


# ---------------------------------------------------------------------- demo, script
def test_demo_prints_loss_accuracy_and_throughput(tmp_path):
    proc = ok(run_cli("demo", "--samples", "3000", "--epochs", "2", cwd=tmp_path))
    accuracy = float(re.search(r"test accuracy (\d\.\d+)", proc.stdout).group(1))
    assert 0.5 < accuracy <= 1.0                     # 4 classes: chance is 0.25
    losses = re.search(r"training loss per epoch: (.*)", proc.stdout).group(1).split(", ")
    assert len(losses) == 2 and float(losses[1]) < float(losses[0])
    assert float(re.search(r"throughput ([\d,]+) samples/s", proc.stdout)
                 .group(1).replace(",", "")) > 0
    assert "2/2" in proc.stderr                      # the progress bar reached its end


def test_console_script_is_installed_and_runs(tmp_path):
    script = Path(sys.executable).parent / "fastmlp"
    assert script.is_file(), f"no console script at {script}"
    version = ok(run_cli("--version", cwd=tmp_path, command=[str(script)]))
    assert version.stdout.strip() == f"fastmlp {fastmlp.__version__}"
    helptext = ok(run_cli("--help", cwd=tmp_path, command=[str(script)])).stdout
    for command in ("demo", "train", "predict", "bench"):
        assert re.search(rf"^\s+{command}\s", helptext, re.M), command
    proc = ok(run_cli("demo", "--samples", "500", "--epochs", "1", cwd=tmp_path,
                      command=[str(script)]))
    assert "test accuracy" in proc.stdout


@pytest.mark.parametrize("command", ["demo", "train", "predict", "bench"])
def test_each_command_has_help(capsys, command):
    from fastmlp.cli import main     # in-process: only argparse's output is checked here
    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: fastmlp {command}") and "--help" in out


# ---------------------------------------------------------------------- train, predict
def test_train_csv_with_string_labels_then_predict(classifier):
    folder, X, names = classifier["folder"], classifier["X"], classifier["names"]
    meta = json.loads((folder / "model.npz.json").read_text())
    assert meta["classes"] == CLASSES and meta["features"] == ["a", "b", "c"]
    model = fastmlp.load(folder / "model.npz")
    assert model.layer_sizes == (3, 16, 3) and model.loss_name == "softmax_cross_entropy"

    # The statistics of the standardisation, saved as plain JSON numbers.
    columns = meta["preprocessing"]["columns"]
    np.testing.assert_allclose([c["center"] for c in columns], X.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose([c["scale"] for c in columns], X.std(axis=0), rtol=1e-12)

    proc = ok(run_cli("predict", "model.npz", "train.csv", "--out", "pred.csv", cwd=folder))
    header, rows = read_csv(folder / "pred.csv")
    predicted = np.array([row[0] for row in rows])
    assert header == ["prediction"] and len(rows) == len(X)
    np.testing.assert_array_equal(predicted, np.array(CLASSES)[model.predict(standardised(X))])
    accuracy = np.mean(predicted == names)
    assert accuracy > 0.85                           # chance is 1/3
    # The targets are in the file, so predict reports the same accuracy.
    reported = float(re.search(r"accuracy (\d\.\d+)", proc.stderr).group(1))
    assert reported == pytest.approx(accuracy, abs=1e-4)


def test_predict_matches_columns_by_name_and_writes_probabilities(classifier):
    folder, X = classifier["folder"], classifier["X"]
    # New rows: columns reordered, no target column; features are found by name.
    write_csv(folder / "new.csv", ["c", "b", "a"],
              [[num(x[2]), num(x[1]), num(x[0])] for x in X[:20]])
    proc = ok(run_cli("predict", "model.npz", "new.csv", "--proba", cwd=folder))
    header, rows = read_csv_text(proc.stdout)
    assert header == ["prediction", "proba_cat", "proba_dog", "proba_emu"]
    model = fastmlp.load(folder / "model.npz")
    inputs = standardised(X[:20], like=X)           # the training rows' statistics
    proba = np.array([[float(v) for v in row[1:]] for row in rows])
    # float32 network; probabilities written in full: rounding of the float32 forward pass
    np.testing.assert_allclose(proba, model.predict_proba(inputs), rtol=1e-6, atol=1e-7)
    assert [row[0] for row in rows] == list(np.array(CLASSES)[model.predict(inputs)])
    assert "accuracy" not in proc.stderr             # no target column, no score


def read_csv_text(text):
    header, *rows = list(csv.reader(text.splitlines()))
    return header, rows


def test_train_npz_regression_then_predict(tmp_path):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(300, 4))
    y = X @ np.array([1.0, -2.0, 0.5, 0.0]) + 0.3
    np.savez(tmp_path / "data.npz", X=X, y=y)
    ok(run_cli("train", "data.npz", "--loss", "mse", "--layers", "8", "--epochs", "30",
               "--lr", "0.1", "--dtype", "float64", "--out", "reg.npz", cwd=tmp_path))
    model = fastmlp.load(tmp_path / "reg.npz")
    assert model.layer_sizes == (4, 8, 1) and model.dtype == np.float64

    ok(run_cli("predict", "reg.npz", "data.npz", "--out", "pred.csv", cwd=tmp_path))
    header, rows = read_csv(tmp_path / "pred.csv")
    assert header == ["prediction"]
    predicted = np.array([float(row[0]) for row in rows])
    np.testing.assert_allclose(predicted, model.predict(standardised(X))[:, 0], rtol=1e-12,
                               atol=1e-12)
    assert np.mean((predicted - y) ** 2) < 0.05 * np.var(y)   # it learned the function


def test_train_npy_with_numeric_labels_predicts_original_labels(tmp_path):
    X, names = make_classes(n=150, seed=2)
    labels = np.array([10.0, 20.0, 40.0])[np.searchsorted(CLASSES, names)]
    np.save(tmp_path / "data.npy", np.column_stack([labels, X]))    # target in column 0
    ok(run_cli("train", "data.npy", "--target", "0", "--loss", "softmax_cross_entropy",
               "--epochs", "10", "--lr", "0.1", cwd=tmp_path))   # default --out model.npz
    # Predicting on the training file itself: the target column is recognised and dropped.
    proc = ok(run_cli("predict", "model.npz", "data.npy", cwd=tmp_path))
    _, rows = read_csv_text(proc.stdout)
    model = fastmlp.load(tmp_path / "model.npz")
    np.testing.assert_array_equal([row[0] for row in rows],
                                  np.array(["10", "20", "40"])[model.predict(standardised(X))])
    assert "accuracy" in proc.stderr


def test_val_fraction_reports_validation_score_and_is_reproducible(tmp_path):
    X, names = make_classes(n=200, seed=3)
    write_class_csv(tmp_path / "d.csv", X, names)
    args = ["train", "d.csv", "--target", "label", "--loss", "softmax_cross_entropy",
            "--epochs", "3", "--val-fraction", "0.25"]
    first = ok(run_cli(*args, "--out", "m1.npz", cwd=tmp_path))
    assert "on 150 rows, validating on 50" in first.stdout
    accuracy = float(re.search(r"validation: accuracy (\d\.\d+)", first.stdout).group(1))
    assert 0.0 <= accuracy <= 1.0
    assert re.search(r"validation accuracy \d", first.stderr)   # in the per-epoch bar
    ok(run_cli(*args, "--out", "m2.npz", cwd=tmp_path))
    ok(run_cli(*args, "--out", "m3.npz", "--seed", "1", cwd=tmp_path))
    m1, m2, m3 = (fastmlp.load(tmp_path / f"m{i}.npz").params for i in (1, 2, 3))
    np.testing.assert_array_equal(m1, m2)            # same seed, same model
    assert not np.array_equal(m1, m3)


def test_val_fraction_regression_reports_r2(tmp_path):
    rng = np.random.default_rng(4)
    X = rng.normal(size=(100, 2))
    write_csv(tmp_path / "r.csv", ["x1", "x2", "y"],
              [[num(a), num(b), num(a - b)] for a, b in X])
    proc = ok(run_cli("train", "r.csv", "--loss", "mse", "--epochs", "20",   # target: last
                      "--val-fraction", "0.2", cwd=tmp_path))
    r2 = float(re.search(r"validation: R² (-?\d+\.\d+), MAE \d+\.\d+, RMSE \d+\.\d+",
                         proc.stdout).group(1))
    assert r2 > 0.5


def test_plot_writes_png(tmp_path):
    pytest.importorskip("matplotlib")
    X, names = make_classes(n=100)
    write_class_csv(tmp_path / "d.csv", X, names)
    ok(run_cli("train", "d.csv", "--target", "label", "--loss", "softmax_cross_entropy",
               "--epochs", "3", "--val-fraction", "0.2", "--plot", "loss.png", cwd=tmp_path))
    assert (tmp_path / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _hide_module(tmp_path, name):
    """An environment in which ``import name`` fails, as if it were not installed."""
    fake = tmp_path / "hide" / name
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text(f"raise ImportError('{name} hidden by the test')\n")
    return {**ENV, "PYTHONPATH": str(tmp_path / "hide")}


def test_without_matplotlib_plot_is_refused_before_training(tmp_path):
    X, names = make_classes(n=50)
    write_class_csv(tmp_path / "d.csv", X, names)
    proc = run_cli("train", "d.csv", "--target", "label", "--loss", "softmax_cross_entropy",
                   "--plot", "loss.png", cwd=tmp_path, env=_hide_module(tmp_path, "matplotlib"))
    assert proc.returncode == 2
    assert proc.stderr.strip() == "fastmlp: error: --plot needs matplotlib: pip install matplotlib"
    assert not (tmp_path / "model.npz").exists()


def test_without_tqdm_training_prints_one_line_per_epoch(tmp_path):
    proc = ok(run_cli("demo", "--samples", "500", "--epochs", "3", cwd=tmp_path,
                      env=_hide_module(tmp_path, "tqdm")))
    assert [line.split("  ")[0] for line in proc.stderr.splitlines()] == \
        ["demo: epoch 1/3", "demo: epoch 2/3", "demo: epoch 3/3"]
    assert "test accuracy" in proc.stdout


# ---------------------------------------------------------------------- tables as people have them
REGIONS = ["east", "north", "west"]


def make_mixed_table(n=300, seed=5):
    """Numeric columns of very different scales plus a text column: (columns dict, labels).
    The label depends on every column, so a network must use each of them."""
    rng = np.random.default_rng(seed)
    area = rng.normal(1500.0, 400.0, n)              # thousands
    ratio = rng.normal(0.05, 0.01, n)                # hundredths
    region = np.array(REGIONS)[rng.integers(0, 3, n)]
    shift = np.select([region == "east", region == "north"], [1.0, -1.0], 0.0)
    score = (area - 1500) / 400 - (ratio - 0.05) / 0.01 + 1.5 * shift
    return {"area": area, "ratio": ratio, "region": region}, np.where(score > 0, "yes", "no")


def write_mixed_csv(path, cols, labels, rows=slice(None), names=("area", "region", "ratio")):
    cells = {"area": [num(v) for v in cols["area"]], "ratio": [num(v) for v in cols["ratio"]],
             "region": list(cols["region"]), "label": list(labels if labels is not None else [])}
    header = [*names, "label"] if labels is not None else list(names)
    write_csv(path, header, [list(r) for r in zip(*(cells[h] for h in header))][rows])


def encoded(cols, center, scale, categories=REGIONS):
    """The network's input as `fastmlp train` builds it: standardised numbers in the
    table's feature order (area, region one-hot, ratio)."""
    onehot = (np.asarray(cols["region"])[:, None] == np.array(categories)[None, :])
    return np.column_stack([(cols["area"] - center[0]) / scale[0], onehot.astype(float),
                            (cols["ratio"] - center[1]) / scale[1]])


TRAIN_MIXED = ["train", "mixed.csv", "--target", "label", "--loss", "softmax_cross_entropy",
               "--layers", "16", "--epochs", "20", "--lr", "0.1", "--quiet"]


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mixed")
    cols, labels = make_mixed_table()
    write_mixed_csv(folder / "mixed.csv", cols, labels)
    proc = ok(run_cli(*TRAIN_MIXED, "--val-fraction", "0.25", "--out", "model.npz", cwd=folder))
    meta = json.loads((folder / "model.npz.json").read_text())
    return {"folder": folder, "cols": cols, "labels": labels, "proc": proc, "meta": meta}


def test_defaults_standardise_numbers_and_one_hot_encode_text(mixed):
    meta, cols = mixed["meta"], mixed["cols"]
    area, region, ratio = meta["preprocessing"]["columns"]
    assert meta["features"] == ["area", "region", "ratio"] and meta["n_inputs"] == 5
    assert region == {"kind": "text", "categories": REGIONS, "fill": None}
    # Statistics of the training rows only: the 75 % that the validation split left.
    from fastmlp.cli.commands import _split
    train_rows, _ = _split(len(cols["area"]), 0.25, 0)
    for spec, name in [(area, "area"), (ratio, "ratio")]:
        x = cols[name][train_rows]
        assert spec["center"] == pytest.approx(x.mean(), rel=1e-12)
        assert spec["scale"] == pytest.approx(x.std(), rel=1e-12)
        assert spec["center"] != pytest.approx(cols[name].mean(), rel=1e-9)
    # Trained on standardised inputs, the network separates the classes.
    accuracy = float(re.search(r"validation: accuracy (\d\.\d+)", mixed["proc"].stdout)[1])
    assert accuracy > 0.9


def test_scaling_is_what_makes_unscaled_columns_learnable(tmp_path):
    # The case in small: features in their natural units, up to thousands.  With
    # the same network and settings, --no-scale learns far less (measured: 0.99 vs 0.54,
    # the majority class).
    cols, labels = make_mixed_table(n=400, seed=6)
    write_mixed_csv(tmp_path / "mixed.csv", cols, labels)
    args = [*TRAIN_MIXED, "--val-fraction", "0.25"]
    scaled = ok(run_cli(*args, "--out", "s.npz", cwd=tmp_path))
    raw = run_cli(*args, "--no-scale", "--out", "r.npz", cwd=tmp_path)
    scaled_acc = float(re.search(r"validation: accuracy (\d\.\d+)", scaled.stdout)[1])
    assert scaled_acc > 0.9
    if raw.returncode == 0:                          # or it diverged, which is worse still
        raw_acc = float(re.search(r"validation: accuracy (\d\.\d+)", raw.stdout)[1])
        assert raw_acc < scaled_acc - 0.15
        spec = json.loads((tmp_path / "r.npz.json").read_text())["preprocessing"]
        assert spec["scale"] is False
        assert [(c.get("center"), c.get("scale")) for c in spec["columns"]] == \
            [(0.0, 1.0), (None, None), (0.0, 1.0)]


def test_predict_new_rows_any_column_order_without_target(mixed):
    folder, cols, meta = mixed["folder"], mixed["cols"], mixed["meta"]
    specs = meta["preprocessing"]["columns"]
    center = [specs[0]["center"], specs[2]["center"]]
    scale = [specs[0]["scale"], specs[2]["scale"]]
    write_mixed_csv(folder / "new.csv", cols, None, rows=slice(0, 40),
                    names=("ratio", "area", "region"))
    proc = ok(run_cli("predict", "model.npz", "new.csv", cwd=folder))
    _, rows = read_csv_text(proc.stdout)
    model = fastmlp.load(folder / "model.npz")
    first = {k: v[:40] for k, v in cols.items()}
    expected = np.array(["no", "yes"])[model.predict(encoded(first, center, scale))]
    assert [r[0] for r in rows] == list(expected)
    assert proc.stderr == ""                         # no target column: no score


def test_unseen_category_is_all_zeros_with_a_warning(mixed):
    folder, cols, meta = mixed["folder"], mixed["cols"], mixed["meta"]
    specs = meta["preprocessing"]["columns"]
    new = {k: v[:6].copy() for k, v in cols.items()}
    new["region"][[1, 4]] = "south"
    write_mixed_csv(folder / "south.csv", new, None)
    proc = ok(run_cli("predict", "model.npz", "south.csv", cwd=folder))
    assert proc.stderr.strip() == ("fastmlp: warning: south.csv: column 'region': 2 row(s) "
                                   "with categories not seen in training ('south'), encoded "
                                   "as all zeros")
    X = encoded(new, [specs[0]["center"], specs[2]["center"]],
                [specs[0]["scale"], specs[2]["scale"]])
    assert not X[[1, 4], 1:4].any()                  # the oracle's encoding of 'south'
    model = fastmlp.load(folder / "model.npz")
    _, rows = read_csv_text(proc.stdout)
    assert [r[0] for r in rows] == list(np.array(["no", "yes"])[model.predict(X)])


def test_categorical_option_one_hot_encodes_numbers(tmp_path):
    rng = np.random.default_rng(7)
    zone = rng.integers(1, 4, 120)
    x = rng.normal(size=120)
    write_csv(tmp_path / "z.csv", ["zone", "x", "y"],
              [[str(z), num(v), num(v + z)] for z, v in zip(zone, x)])
    ok(run_cli("train", "z.csv", "--loss", "mse", "--categorical", "zone", "--epochs", "2",
               "--quiet", cwd=tmp_path))
    meta = json.loads((tmp_path / "model.npz.json").read_text())
    assert meta["preprocessing"]["columns"][0]["categories"] == ["1", "2", "3"]
    assert meta["n_inputs"] == 4


def test_constant_column_is_centred_not_divided_by_zero(tmp_path):
    X, names = make_classes(n=60, seed=8)
    write_csv(tmp_path / "c.csv", ["a", "const", "label"],
              [[num(x[0]), "0.1", name] for x, name in zip(X, names)])
    ok(run_cli("train", "c.csv", "--loss", "softmax_cross_entropy", "--epochs", "2",
               "--quiet", cwd=tmp_path))
    const = json.loads((tmp_path / "model.npz.json").read_text())["preprocessing"]["columns"][1]
    assert const["scale"] == 1.0 and const["center"] == pytest.approx(0.1, rel=1e-15)
    proc = ok(run_cli("predict", "model.npz", "c.csv", cwd=tmp_path))
    model = fastmlp.load(tmp_path / "model.npz")
    inputs = np.column_stack([standardised(X[:, :1]), np.full(60, 0.1) - const["center"]])
    _, rows = read_csv_text(proc.stdout)
    assert [r[0] for r in rows] == list(np.array(CLASSES)[model.predict(inputs)])


@pytest.mark.parametrize("how", ["mean", "median", "most-frequent"])
def test_impute_fills_missing_cells_with_training_statistics(tmp_path, how):
    rng = np.random.default_rng(9)
    a = rng.integers(0, 5, 50).astype(float)
    a[[3, 10, 11]] = np.nan
    region = np.array(["east", "west", "west", ""] * 12 + ["east", "west"])
    write_csv(tmp_path / "m.csv", ["a", "region", "y"],
              [["" if np.isnan(v) else num(v), r, num(i)] for i, (v, r) in
               enumerate(zip(a, region))])
    ok(run_cli("train", "m.csv", "--loss", "mse", "--impute", how, "--epochs", "2",
               "--quiet", cwd=tmp_path))
    spec = json.loads((tmp_path / "model.npz.json").read_text())["preprocessing"]
    present = a[~np.isnan(a)]
    uniques, counts = np.unique(present, return_counts=True)
    expected = {"mean": np.mean(present), "median": np.median(present),
                "most-frequent": uniques[np.argmax(counts)]}[how]
    assert spec["impute"] == how
    assert spec["columns"][0]["fill"] == pytest.approx(expected, rel=1e-15)
    assert spec["columns"][1]["fill"] == "west"       # text: the most frequent category
    # predict fills a missing cell with the same value: the row predicts as if filled in.
    write_csv(tmp_path / "p.csv", ["region", "a"],
              [["", ""], ["west", num(spec["columns"][0]["fill"])]])
    _, rows = read_csv_text(ok(run_cli("predict", "model.npz", "p.csv", cwd=tmp_path)).stdout)
    assert rows[0] == rows[1]


def test_old_sidecar_without_preprocessing_still_predicts(tmp_path):
    X, names = make_classes(n=80, seed=10)
    write_class_csv(tmp_path / "d.csv", X, names)
    ok(run_cli(*TRAIN_CLASSES, "--no-scale", "--epochs", "2", "--quiet", cwd=tmp_path))
    meta = json.loads((tmp_path / "model.npz.json").read_text())
    del meta["preprocessing"]                         # as written before it existed
    (tmp_path / "model.npz.json").write_text(json.dumps(meta))
    _, rows = read_csv_text(ok(run_cli("predict", "model.npz", "d.csv", cwd=tmp_path)).stdout)
    model = fastmlp.load(tmp_path / "model.npz")
    assert [r[0] for r in rows] == list(np.array(CLASSES)[model.predict(X)])


# ---------------------------------------------------------------------- the report
def _report_rows(stdout):
    """{class: (precision, recall, f1, support)} and the confusion matrix, as printed."""
    per_class = {m[1]: tuple(map(float, m.groups()[1:])) for m in re.finditer(
        r"^\s+(\w+)\s+(\d\.\d{4})\s+(\d\.\d{4})\s+(\d\.\d{4})\s+(\d+)$", stdout, re.M)}
    block = stdout.split("columns: predicted class)\n")[1].splitlines()[1:1 + len(per_class)]
    return per_class, np.array([[int(v) for v in line.split()[1:]] for line in block])


def test_classification_report_is_consistent(mixed):
    per_class, cm = _report_rows(mixed["proc"].stdout)
    assert list(per_class) == ["no", "yes"] and cm.shape == (2, 2)
    assert cm.sum() == 75                             # 25 % of 300 rows
    accuracy = float(re.search(r"validation: accuracy (\d\.\d+)", mixed["proc"].stdout)[1])
    assert accuracy == pytest.approx(np.trace(cm) / cm.sum(), abs=5e-5)
    for k, name in enumerate(per_class):
        precision, recall, f1, support = per_class[name]
        assert support == cm[k].sum()
        assert precision == pytest.approx(cm[k, k] / cm[:, k].sum(), abs=5e-5)
        assert recall == pytest.approx(cm[k, k] / cm[k].sum(), abs=5e-5)
        assert f1 == pytest.approx(2 * precision * recall / (precision + recall), abs=2e-4)


def test_report_scores_match_scikit_learn():
    metrics = pytest.importorskip("sklearn.metrics")
    from fastmlp.cli.report import classification_report, regression_scores
    rng = np.random.default_rng(11)
    truth, pred = rng.integers(0, 4, 200), rng.integers(0, 4, 200)
    pred[pred == 3] = 2                               # class 3 never predicted: precision 0
    report = classification_report(truth, pred, ["a", "b", "c", "d"])
    p, r, f, s = metrics.precision_recall_fscore_support(truth, pred, labels=range(4),
                                                         zero_division=0)
    np.testing.assert_allclose(report["precision"], p, rtol=1e-12)
    np.testing.assert_allclose(report["recall"], r, rtol=1e-12)
    np.testing.assert_allclose(report["f1"], f, rtol=1e-12)
    np.testing.assert_array_equal(report["support"], s)
    np.testing.assert_array_equal(report["confusion"], metrics.confusion_matrix(truth, pred))
    assert report["accuracy"] == pytest.approx(metrics.accuracy_score(truth, pred), rel=1e-12)
    y = rng.normal(size=(50, 2))
    yhat = y + rng.normal(scale=0.3, size=(50, 2))
    assert dict(regression_scores(yhat, y)) == pytest.approx({
        "R²": metrics.r2_score(y, yhat), "MAE": metrics.mean_absolute_error(y, yhat),
        "RMSE": metrics.root_mean_squared_error(y, yhat)}, rel=1e-12)


def _png_width(path):
    data = Path(path).read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return int.from_bytes(data[16:20], "big")


def test_plot_puts_the_confusion_matrix_beside_the_loss_curve(tmp_path):
    pytest.importorskip("matplotlib")
    cols, labels = make_mixed_table(n=80)
    write_mixed_csv(tmp_path / "mixed.csv", cols, labels)
    ok(run_cli(*TRAIN_MIXED, "--epochs", "2", "--plot", "loss.png", cwd=tmp_path))
    ok(run_cli(*TRAIN_MIXED, "--epochs", "2", "--val-fraction", "0.25", "--plot", "both.png",
               cwd=tmp_path))
    # 6 x 4 in for the curve alone, 11 x 4.5 in with the matrix beside it (100 dpi).
    assert _png_width(tmp_path / "loss.png") == 600
    assert _png_width(tmp_path / "both.png") == 1100


# ---------------------------------------------------------------------- file formats
def test_parquet_trains_and_predicts_like_the_same_csv(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    cols, labels = make_mixed_table(n=120, seed=12)
    write_mixed_csv(tmp_path / "mixed.csv", cols, labels)
    pq.write_table(pa.table({"area": cols["area"],
                             "region": pa.array(cols["region"]).dictionary_encode(),
                             "ratio": cols["ratio"], "label": labels}),
                   tmp_path / "mixed.parquet")
    common = TRAIN_MIXED[2:] + ["--epochs", "3"]
    ok(run_cli("train", "mixed.csv", *common, "--out", "c.npz", cwd=tmp_path))
    ok(run_cli("train", "mixed.parquet", *common, "--out", "p.npz", cwd=tmp_path))
    np.testing.assert_array_equal(fastmlp.load(tmp_path / "c.npz").params,
                                  fastmlp.load(tmp_path / "p.npz").params)
    from_csv = ok(run_cli("predict", "p.npz", "mixed.csv", cwd=tmp_path)).stdout
    from_parquet = ok(run_cli("predict", "c.npz", "mixed.parquet", cwd=tmp_path)).stdout
    assert from_csv == from_parquet and len(from_csv.splitlines()) == 121


def test_large_csv_is_read_in_chunks_to_the_same_columns(tmp_path):
    # More rows than one chunk: the text column's first chunk is all missing cells, and a
    # bad cell beyond the first chunk is reported with its line.
    from fastmlp.cli.data import _CHUNK_ROWS, read_table
    n = _CHUNK_ROWS + 1000
    rng = np.random.default_rng(13)
    x = rng.normal(size=n)
    color = np.where(np.arange(n) < _CHUNK_ROWS, "", np.where(x > 0, "red", "blue"))
    write_csv(tmp_path / "big.csv", ["x", "color"], [[num(a), c] for a, c in zip(x, color)])
    table = read_table(str(tmp_path / "big.csv"), lambda names: [("auto", "")] * len(names))
    np.testing.assert_array_equal(table.column("x").values, x)
    assert table.column("color").strings().tolist() == color.tolist()
    with open(tmp_path / "big.csv", "a") as f:
        f.write("oops,red\n")
    with pytest.raises(ValueError, match=rf"line {n + 2}, column 'x': 'oops' is not a number"):
        read_table(str(tmp_path / "big.csv"), lambda names: [("auto", "")] * len(names))


def test_csv_text_is_not_held_whole(tmp_path):
    # Peak memory while reading: the columns' arrays plus one chunk, far below the
    # file's text as Python strings (~50 bytes a cell) or even as bytes.
    import tracemalloc
    from fastmlp.cli.data import _CHUNK_ROWS, read_table
    rng = np.random.default_rng(14)
    np.savetxt(tmp_path / "wide.csv", rng.normal(size=(100_000, 8)), delimiter=",",
               header=",".join(f"c{j}" for j in range(8)), comments="")
    size = (tmp_path / "wide.csv").stat().st_size     # ~20 MB of text
    tracemalloc.start()
    try:
        table = read_table(str(tmp_path / "wide.csv"), lambda names: [("auto", "")] * 8)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert size > 15e6                                 # the text: larger than one chunk
    arrays = sum(c.values.nbytes for c in table.columns) + table.origins.nbytes  # 7.2 MB
    # One chunk's cells as str objects (73 bytes for 24 characters) in row lists and
    # column tuples: under 150 bytes a cell.  The whole file's would be 800,000 x 73 B.
    one_chunk = _CHUNK_ROWS * 8 * 150
    assert peak < arrays + one_chunk < 0.5 * (100_000 * 8 * 73), (peak, arrays, size)


def test_without_optional_packages_csv_still_works_and_parquet_says_what_to_install(tmp_path):
    env = _hide_module(tmp_path, "pyarrow")
    for name in ("tqdm", "matplotlib", "pandas", "sklearn"):
        (tmp_path / "hide" / name).mkdir()
        (tmp_path / "hide" / name / "__init__.py").write_text("raise ImportError('hidden')\n")
    cols, labels = make_mixed_table(n=60)
    write_mixed_csv(tmp_path / "mixed.csv", cols, labels)
    ok(run_cli(*TRAIN_MIXED, "--epochs", "2", "--val-fraction", "0.2", cwd=tmp_path, env=env))
    ok(run_cli("predict", "model.npz", "mixed.csv", cwd=tmp_path, env=env))
    (tmp_path / "t.parquet").write_bytes(b"PAR1")
    proc = run_cli("predict", "model.npz", "t.parquet", cwd=tmp_path, env=env)
    assert proc.returncode == 2
    assert proc.stderr == ("fastmlp: error: t.parquet: reading Parquet needs pyarrow: pip "
                           "install pyarrow (or pip install \"fastmlp[cli]\")\n")


# ---------------------------------------------------------------------- bench
def test_bench_quick_prints_ratio_table(tmp_path):
    plot = ["--plot", "speedups.png"] if _has("matplotlib") else []
    proc = ok(run_cli("bench", "--quick", "--workloads", "tiny", "--peers", "fastmlp,numpy",
                      "--rounds", "2", "--threads", "1", "--json", "b.json", *plot,
                      cwd=tmp_path))
    assert "| peer/fastmlp |" in proc.stdout
    assert re.search(r"^\| tiny .*\| numpy \|.*\| \d+\.\d\d \|$", proc.stdout, re.M)
    report = json.loads((tmp_path / "b.json").read_text())
    assert Path(report["env"]["fastmlp_path"]) == Path(fastmlp.__file__).parent
    assert report["results"][0]["peers"]["numpy"]["ratio_vs_fastmlp"] > 0
    if plot:
        assert (tmp_path / "speedups.png").read_bytes()[:4] == b"\x89PNG"


def _has(module):
    try:
        __import__(module)
    except ImportError:
        return False
    return True


# ---------------------------------------------------------------------- bad input
TRAIN_CLASSES = ["train", "d.csv", "--target", "label", "--loss", "softmax_cross_entropy"]
def test_train_with_per_layer_activations_and_dropout(tmp_path):
    rng = np.random.default_rng(2)
    X = rng.normal(size=(200, 3))
    np.savez(tmp_path / "d.npz", X=X, y=np.sin(X[:, 0]) + X[:, 1])
    ok(run_cli("train", "d.npz", "--loss", "mse", "--layers", "8,6", "--activation",
               "gelu,silu", "--dropout", "0.1,0", "--epochs", "3", "--dtype", "float64",
               "--out", "m.npz", cwd=tmp_path))
    model = fastmlp.load(tmp_path / "m.npz")
    assert model.activation == ("gelu", "silu") and model.dropout == (0.1, 0.0)


BAD_INPUTS = {
    "missing file": ["train", "missing.csv", "--loss", "mse"],
    "missing column": ["train", "d.csv", "--target", "species", "--loss", "mse"],
    "non-numeric feature": ["train", "text_feature.csv", "--target", "label", "--loss",
                            "softmax_cross_entropy"],
    "ragged csv": ["train", "ragged.csv", "--loss", "softmax_cross_entropy"],
    "text target for mse": ["train", "d.csv", "--target", "label", "--loss", "mse"],
    "one class": ["train", "one_class.csv", "--loss", "softmax_cross_entropy"],
    "unknown format": ["train", "d.xyz", "--loss", "mse"],
    "corrupt npz": ["train", "garbage.npz", "--loss", "mse"],
    "npz without X": ["train", "no_x.npz", "--loss", "mse"],
    "empty npy": ["train", "garbage.npy", "--loss", "mse"],
    "nan in npy": ["train", "nan.npy", "--loss", "softmax_cross_entropy"],
    "npy target out of range": ["train", "nan.npy", "--target", "5", "--loss", "mse"],
    "bad layers": [*TRAIN_CLASSES, "--layers", "16,x"],
    "zero layer": [*TRAIN_CLASSES, "--layers", "16,0"],
    "bad lr": [*TRAIN_CLASSES, "--lr", "-1"],
    "unknown activation": [*TRAIN_CLASSES, "--activation", "relu,swish"],
    "activations per layer mismatch": [*TRAIN_CLASSES, "--layers", "8,8", "--activation",
                                       "gelu,tanh,relu"],
    "bad dropout": [*TRAIN_CLASSES, "--dropout", "1.5"],
    "bad val fraction": [*TRAIN_CLASSES, "--val-fraction", "1"],
    "unknown loss": ["train", "d.csv", "--loss", "hinge"],
    "out folder missing": [*TRAIN_CLASSES, "--out", "no/such/folder/m.npz"],
    "diverges": [*TRAIN_CLASSES, "--lr", "1e30", "--quiet"],
    "predict: missing feature column": ["predict", "model.npz", "two_features.csv"],
    "predict: wrong feature count": ["predict", "model.npz", "two_features.npy"],
    "predict: missing model": ["predict", "missing.npz", "d.csv"],
    "predict: not a model": ["predict", "not_a_model.npz", "d.csv"],
    "predict: stale sidecar": ["predict", "stale.npz", "d.csv"],
    "predict: sidecar with bad statistics": ["predict", "badstats.npz", "d.csv"],
    "predict: extra column": ["predict", "model.npz", "extra_column.csv"],
    "predict: text in a numeric column": ["predict", "model.npz", "text_feature.csv"],
    "predict: missing cell, no --impute": ["predict", "model.npz", "missing_cell.csv"],
    "predict: parquet, damaged": ["predict", "model.npz", "garbage.parquet"],
    "missing cell": ["train", "missing_cell.csv", *TRAIN_CLASSES[2:]],
    "missing target": ["train", "missing_target.csv", "--target", "label", "--loss", "mse"],
    "infinity": ["train", "infinite.csv", "--target", "label", "--loss",
                 "softmax_cross_entropy"],
    "text becomes number": ["train", "text_then_number.csv", "--loss", "softmax_cross_entropy"],
    "too many categories": ["train", "ids.csv", "--loss", "mse"],
    "nothing to impute from": ["train", "empty_column.csv", "--loss", "mse", "--impute",
                               "mean"],
    "unknown --categorical": [*TRAIN_CLASSES, "--categorical", "zone"],
    "--categorical on npz": ["train", "no_x.npz", "--loss", "mse", "--categorical", "a"],
    "unknown --impute": [*TRAIN_CLASSES, "--impute", "mode"],
    "unknown command": ["frobnicate"],
}


@pytest.fixture(scope="module")
def bad_folder(classifier):
    """The classifier's folder, plus the malformed files BAD_INPUTS refers to."""
    folder = classifier["folder"]
    X, names = make_classes(n=30)
    write_class_csv(folder / "d.csv", X, names)
    rows = [[num(x[0]), name, num(x[1]), num(x[2])] for x, name in zip(X, names)]
    rows[4][2] = "abc"
    write_csv(folder / "text_feature.csv", ["a", "label", "b", "c"], rows)
    write_csv(folder / "one_class.csv", ["a", "label"], [["1", "cat"], ["2", "cat"]])
    write_csv(folder / "two_features.csv", ["a", "b"], [["1", "2"], ["3", "4"]])
    np.save(folder / "two_features.npy", np.ones((2, 2)))
    (folder / "ragged.csv").write_text("a,b,label\n1,2,cat\n3,dog\n")
    (folder / "garbage.npz").write_bytes(b"not a zip file")
    np.savez(folder / "no_x.npz", features=np.ones((3, 2)), y=np.ones(3))
    (folder / "garbage.npy").write_bytes(b"")
    np.save(folder / "nan.npy", np.array([[1.0, 0.0], [np.nan, 1.0], [2.0, 0.0]]))
    (folder / "not_a_model.npz").write_bytes(b"PK\x03\x04 truncated")
    # A model saved over by other code, next to the old model's sidecar.
    fastmlp.MLP([3, 4, 2], loss="softmax_cross_entropy").save(folder / "stale.npz")
    (folder / "stale.npz.json").write_text((folder / "model.npz.json").read_text())
    meta = json.loads((folder / "model.npz.json").read_text())
    meta["preprocessing"]["columns"][0]["scale"] = 0.0
    fastmlp.load(folder / "model.npz").save(folder / "badstats.npz")
    (folder / "badstats.npz.json").write_text(json.dumps(meta))
    write_csv(folder / "extra_column.csv", ["a", "b", "c", "id"], [["1", "2", "3", "x7"]])
    write_csv(folder / "missing_cell.csv", ["a", "label", "b", "c"],
              [["1", "cat", "2", "3"], ["4", "dog", "", "5"]])
    write_csv(folder / "missing_target.csv", ["a", "label"], [["1", "2"], ["3", "NA"]])
    write_csv(folder / "infinite.csv", ["a", "label"], [["1", "cat"], ["inf", "dog"]])
    write_csv(folder / "text_then_number.csv", ["kind", "label"],
              [["big", "cat"], ["12", "dog"]])
    write_csv(folder / "ids.csv", ["id", "y"], [[f"id{i}", str(i)] for i in range(1001)])
    write_csv(folder / "empty_column.csv", ["a", "b", "y"], [["1", "", "2"], ["2", "", "3"]])
    (folder / "garbage.parquet").write_bytes(b"PAR1 not really")
    return folder


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_input_exits_2_with_a_one_line_error(bad_folder, case):
    proc = run_cli(*BAD_INPUTS[case], cwd=bad_folder)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("fastmlp: error: "), proc.stderr
