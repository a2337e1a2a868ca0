"""The ``fastmlp`` command on sparse DATA: svmlight/libsvm text and scipy.sparse.save_npz
matrices, trained and predicted as CSR rows; each checked against the Python API (dense
training on the same numbers) and against the files' own readers (scipy, scikit-learn)."""
import json

import numpy as np
import pytest
import scipy.sparse as sp

import fastmlp
from test_cli import ENV, _hide_module, ok, read_csv, read_csv_text, run_cli

sklearn_datasets = pytest.importorskip("sklearn.datasets")


def make_sparse(n=160, d=40, density=0.1, seed=0):
    """(X (n, d) CSR float64, y (n,) labels 0/1 from a linear rule on X)."""
    rng = np.random.default_rng(seed)
    X = sp.random(n, d, density=density, format="csr", random_state=seed,
                  data_rvs=lambda k: rng.normal(size=k))
    score = X @ rng.normal(size=d)
    return X, (score > np.median(score)).astype(np.int64)


def trained_like_the_command(X, y, layers, *, epochs, lr, batch_size=32, seed=0, **options):
    """The network `fastmlp train` gives, trained through the Python API on dense X:
    an MLP seeded by --seed, one fit call an epoch with the epoch seeds the command draws
    (fastmlp.cli.training.fit_epochs)."""
    k = len(np.unique(y)) if options.get("loss") == "softmax_cross_entropy" else 1
    net = fastmlp.MLP([X.shape[1], *layers, k], dtype="float64", seed=seed, **options)
    dense = X.toarray()
    for epoch_seed in np.random.default_rng([seed, 1]).integers(0, 2**63, size=epochs):
        net.fit(dense, y, epochs=1, batch_size=batch_size, lr=lr, seed=int(epoch_seed))
    return net


def assert_same_parameters(a, b):
    # Sparse and dense first layers sum the same products in different orders: float64
    # rounding, a few ulps a step, compounded over the steps of training.
    np.testing.assert_allclose(a.params, b.params, rtol=1e-9, atol=1e-12)


def test_svmlight_train_is_the_python_api_and_predict_writes_its_predictions(tmp_path):
    X, y = make_sparse()
    sklearn_datasets.dump_svmlight_file(X, y, str(tmp_path / "d.svm"), zero_based=True)
    proc = ok(run_cli("train", "d.svm", "--loss", "softmax_cross_entropy", "--layers", "8",
                      "--epochs", "4", "--lr", "0.3", "--dtype", "float64", "--quiet",
                      cwd=tmp_path))
    assert "sparse" in proc.stdout and "not scaled" in proc.stdout
    model = fastmlp.load(tmp_path / "model.npz")
    assert model.layer_sizes == (40, 8, 2)
    expected = trained_like_the_command(X, y, [8], epochs=4, lr=0.3,
                                        loss="softmax_cross_entropy")
    assert_same_parameters(model, expected)
    meta = json.loads((tmp_path / "model.npz.json").read_text())
    assert meta["data_format"] == "svmlight" and meta["preprocessing"] is None

    proc = ok(run_cli("predict", "model.npz", "d.svm", "--proba", cwd=tmp_path))
    header, *rows = [line.split(",") for line in proc.stdout.splitlines()]
    assert header == ["prediction", "proba_0", "proba_1"]
    # The file read back by scikit-learn's own reader, through the Python API.
    X_read, y_read = sklearn_datasets.load_svmlight_file(str(tmp_path / "d.svm"),
                                                         zero_based=True, n_features=40)
    np.testing.assert_array_equal([int(r[0]) for r in rows], model.predict(X_read))
    np.testing.assert_allclose([[float(r[1]), float(r[2])] for r in rows],
                               model.predict_proba(X_read), rtol=1e-15)
    accuracy = np.mean(model.predict(X_read) == y_read)
    assert f"d.svm: accuracy {accuracy:.4f} (160 rows)" in proc.stderr


def test_one_based_svmlight_keeps_its_numbering(tmp_path):
    # libsvm numbers features from 1: index j is input j, input 0 unused, in training and
    # in a prediction file whose highest index is lower.
    (tmp_path / "train.libsvm").write_text("1 1:0.5 3:1.0\n0 2:2.0\n1 1:1.5 3:-1.0\n0 2:1.0\n")
    (tmp_path / "new.libsvm").write_text("0 2:0.5\n1 1:1.0\n")
    ok(run_cli("train", "train.libsvm", "--loss", "softmax_cross_entropy", "--epochs", "3",
               "--dtype", "float64", "--quiet", cwd=tmp_path))
    model = fastmlp.load(tmp_path / "model.npz")
    assert model.layer_sizes[0] == 4
    proc = ok(run_cli("predict", "model.npz", "new.libsvm", "--proba", cwd=tmp_path))
    _, rows = read_csv_text(proc.stdout)
    new = sp.csr_matrix(([0.5, 1.0], ([0, 1], [2, 1])), shape=(2, 4))
    np.testing.assert_allclose(np.array(rows, dtype=object)[:, 1:].astype(float),
                               model.predict_proba(new), rtol=1e-15)


def test_sparse_npz_with_labels_file_regression_and_validation(tmp_path):
    X, _ = make_sparse(n=200, d=30, seed=3)
    y = X @ np.linspace(-1, 1, 30) + 0.5
    sp.save_npz(tmp_path / "X.npz", X.tocsc())           # any format save_npz writes
    np.save(tmp_path / "y.npy", y)
    proc = ok(run_cli("train", "X.npz", "--labels", "y.npy", "--loss", "mse", "--layers",
                      "6", "--epochs", "3", "--lr", "0.05", "--dtype", "float64",
                      "--val-fraction", "0.25", "--out", "reg.npz", "--quiet", cwd=tmp_path))
    assert "validating on 50" in proc.stdout and "validation: R²" in proc.stdout
    model = fastmlp.load(tmp_path / "reg.npz")
    # The command's split (fastmlp.cli.commands._split), trained through the Python API.
    perm = np.random.default_rng([0, 2]).permutation(200)
    train_rows = perm[50:]
    expected = trained_like_the_command(X[train_rows], y[train_rows], [6], epochs=3,
                                        lr=0.05, loss="mse")
    assert_same_parameters(model, expected)

    ok(run_cli("predict", "reg.npz", "X.npz", "--out", "p.csv", cwd=tmp_path))
    header, rows = read_csv(tmp_path / "p.csv")
    assert header == ["prediction"]
    np.testing.assert_allclose([float(r[0]) for r in rows],
                               model.predict(sp.load_npz(tmp_path / "X.npz"))[:, 0],
                               rtol=1e-15)
    proc = ok(run_cli("predict", "reg.npz", "X.npz", "--labels", "y.npy", "--out", "p.csv",
                      cwd=tmp_path))
    assert "X.npz: R²" in proc.stderr


def test_text_labels_file_names_the_classes(tmp_path):
    X, y = make_sparse(n=90, d=12, seed=5)
    sp.save_npz(tmp_path / "X.npz", X)
    names = np.array(["no", "yes"])[y]
    (tmp_path / "labels.txt").write_text("\n".join(names) + "\n\n")
    ok(run_cli("train", "X.npz", "--labels", "labels.txt", "--loss", "softmax_cross_entropy",
               "--epochs", "2", "--quiet", cwd=tmp_path))
    proc = ok(run_cli("predict", "model.npz", "X.npz", "--labels", "labels.txt",
                      cwd=tmp_path))
    model = fastmlp.load(tmp_path / "model.npz")
    _, rows = read_csv_text(proc.stdout)
    predicted = np.array(["no", "yes"])[model.predict(X.astype(np.float32))]
    np.testing.assert_array_equal([r[0] for r in rows], predicted)
    assert f"accuracy {np.mean(predicted == names):.4f}" in proc.stderr


def test_without_scikit_learn_svmlight_says_what_to_install(tmp_path):
    (tmp_path / "d.svm").write_text("1 0:1.0\n0 1:1.0\n")
    proc = run_cli("train", "d.svm", "--loss", "mse", cwd=tmp_path,
                   env=_hide_module(tmp_path, "sklearn"))
    assert proc.returncode == 2
    assert proc.stderr == ("fastmlp: error: d.svm: reading svmlight/libsvm files needs "
                           "scikit-learn: pip install \"fastmlp[sklearn]\" (or "
                           "scikit-learn)\n")


TRAIN = ["--loss", "softmax_cross_entropy", "--epochs", "1"]
BAD_INPUTS = {
    "npz without --labels": ["train", "X.npz", *TRAIN],
    "--labels of another length": ["train", "X.npz", "--labels", "short.npy", *TRAIN],
    "--labels for svmlight": ["train", "d.svm", "--labels", "y.npy", *TRAIN],
    "--labels for a table": ["train", "t.csv", "--labels", "y.npy", *TRAIN],
    "--target": ["train", "d.svm", "--target", "0", *TRAIN],
    "--impute": ["train", "d.svm", "--impute", "mean", *TRAIN],
    "--categorical": ["train", "d.svm", "--categorical", "a", *TRAIN],
    "malformed svmlight": ["train", "bad.svm", *TRAIN],
    "nan in svmlight": ["train", "nan.svm", *TRAIN],
    "predict: index beyond the model": ["predict", "sparse_model.npz", "wide.svm"],
    "predict: npz of another width": ["predict", "sparse_model.npz", "wide.npz"],
    "predict: table to a sparse model": ["predict", "sparse_model.npz", "t.csv"],
    "predict: sparse to a table model": ["predict", "table_model.npz", "d.svm"],
}


@pytest.fixture(scope="module")
def bad_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sparse_bad")
    X, y = make_sparse(n=40, d=10)
    sp.save_npz(folder / "X.npz", X)
    sp.save_npz(folder / "wide.npz", sp.random(3, 11, density=0.5, format="csr"))
    np.save(folder / "y.npy", y)
    np.save(folder / "short.npy", y[:-1])
    sklearn_datasets.dump_svmlight_file(X, y, str(folder / "d.svm"), zero_based=True)
    (folder / "bad.svm").write_text("1 3:1.0\nnot svmlight at all\n")
    (folder / "nan.svm").write_text("1 3:1.0\n0 2:nan\n")
    (folder / "wide.svm").write_text("1 10:1.0\n")
    (folder / "t.csv").write_text("a,label\n1,0\n2,1\n3,0\n")
    ok(run_cli("train", "d.svm", *TRAIN, "--out", "sparse_model.npz", cwd=folder))
    ok(run_cli("train", "t.csv", *TRAIN, "--out", "table_model.npz", cwd=folder))
    return folder


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_sparse_input_exits_2_with_a_one_line_error(bad_folder, case):
    proc = run_cli(*BAD_INPUTS[case], cwd=bad_folder, env=ENV)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("fastmlp: error: "), proc.stderr
