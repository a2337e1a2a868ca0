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
BAD_INPUTS = {
    "missing file": ["train", "missing.csv", "--loss", "mse"],
    "missing column": ["train", "d.csv", "--target", "species", "--loss", "mse"],
    "non-numeric feature": ["train", "text_feature.csv", "--target", "label", "--loss",
                            "softmax_cross_entropy"],
    "ragged csv": ["train", "ragged.csv", "--loss", "softmax_cross_entropy"],
    "text target for mse": ["train", "d.csv", "--target", "label", "--loss", "mse"],
    "one class": ["train", "one_class.csv", "--loss", "softmax_cross_entropy"],
    "unknown format": ["train", "d.txt", "--loss", "mse"],
    "corrupt npz": ["train", "garbage.npz", "--loss", "mse"],
    "npz without X": ["train", "no_x.npz", "--loss", "mse"],
    "empty npy": ["train", "garbage.npy", "--loss", "mse"],
    "nan in npy": ["train", "nan.npy", "--loss", "softmax_cross_entropy"],
    "npy target out of range": ["train", "nan.npy", "--target", "5", "--loss", "mse"],
    "bad layers": [*TRAIN_CLASSES, "--layers", "16,x"],
    "zero layer": [*TRAIN_CLASSES, "--layers", "16,0"],
    "bad lr": [*TRAIN_CLASSES, "--lr", "-1"],
    "bad val fraction": [*TRAIN_CLASSES, "--val-fraction", "1"],
    "unknown loss": ["train", "d.csv", "--loss", "hinge"],
    "out folder missing": [*TRAIN_CLASSES, "--out", "no/such/folder/m.npz"],
    "diverges": [*TRAIN_CLASSES, "--lr", "1e30", "--quiet"],
    "predict: missing feature column": ["predict", "model.npz", "two_features.csv"],
    "predict: wrong feature count": ["predict", "model.npz", "two_features.npy"],
    "predict: missing model": ["predict", "missing.npz", "d.csv"],
    "predict: not a model": ["predict", "not_a_model.npz", "d.csv"],
    "predict: stale sidecar": ["predict", "stale.npz", "d.csv"],
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
    return folder


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_input_exits_2_with_a_one_line_error(bad_folder, case):
    proc = run_cli(*BAD_INPUTS[case], cwd=bad_folder)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("fastmlp: error: "), proc.stderr
