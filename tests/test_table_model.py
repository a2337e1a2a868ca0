"""fastmlp.load_table_model: a model trained by ``fastmlp train`` on a table, used from
Python on raw tables.  The oracle is the command itself: for the README's houses table,
``fastmlp predict MODEL DATA --proba`` writes a CSV, and the table model's predictions
on the same rows — given as a DataFrame, as one with its columns shuffled, as a dict of
plain lists, as the CSV's path and as Parquet — must be the same text, cell for cell
(``str`` of each value is what the command writes).  Bad tables must give the command's
messages; to_sklearn's Pipeline must predict the same.
"""
import pickle
import re
import subprocess
import sys
import warnings

import numpy as np
import pytest

import fastmlp
from test_cli import ok, read_csv, run_cli, write_csv
from test_readme import BLOCKS

pd = pytest.importorskip("pandas")


def _readme_table_script() -> str:
    """The Python that writes the README's houses.csv and new.csv (its Command line
    section), as the README has it."""
    block = next(b for b in BLOCKS if b.lang == "bash" and "houses.csv" in b.code
                 and "python - <<'PY'" in b.code)
    return block.code.split("python - <<'PY'\n", 1)[1].split("\nPY\n", 1)[0]


# Models trained on the README's table: (file, extra `fastmlp train` options).  The
# README's own command (float32) first; float64 variants where to_sklearn is compared to
# ~1e-12.
TRAIN = "houses.csv", "--target", "decision", "--loss", "softmax_cross_entropy"
MODELS = {
    "readme": [*TRAIN, "--val-fraction", "0.2"],
    "f64": [*TRAIN, "--dtype", "float64"],
    "noscale": [*TRAIN, "--dtype", "float64", "--no-scale", "--lr", "0.001"],
    # Three classes: scikit-learn's softmax model (two classes are its logistic one).
    "region": ["houses.csv", "--target", "region", "--loss", "softmax_cross_entropy",
               "--dtype", "float64"],
    "rate": ["houses.csv", "--target", "rate", "--loss", "mse", "--dtype", "float64"],
    "impute": ["gaps.csv", "--target", "decision", "--loss", "softmax_cross_entropy",
               "--dtype", "float64", "--impute", "median"],
}
# The table each model predicts in the comparisons (its training table, target included,
# which predict ignores).
DATA = {name: "gaps.csv" if name == "impute" else "houses.csv" for name in MODELS}


def read_frame(path):
    # Each number read as Python's float() reads it, as the command does: pandas 3's
    # default parser does; before it, the default fast parser could be an ulp off.
    old = int(pd.__version__.split(".")[0]) < 3
    return pd.read_csv(path, **({"float_precision": "round_trip"} if old else {}))


@pytest.fixture(scope="module")
def houses(tmp_path_factory):
    folder = tmp_path_factory.mktemp("houses")
    subprocess.run([sys.executable, "-c", _readme_table_script()], cwd=folder, check=True)
    # The same table with holes: 5 % of the areas and regions missing.
    frame = read_frame(folder / "houses.csv")
    rng = np.random.default_rng(1)
    frame.loc[rng.random(len(frame)) < 0.05, "area"] = np.nan
    frame.loc[rng.random(len(frame)) < 0.05, "region"] = None
    frame.to_csv(folder / "gaps.csv", index=False)
    for name, args in MODELS.items():
        ok(run_cli("train", *args, "--quiet", "--out", f"{name}.npz", cwd=folder))
    return folder


def command_predictions(folder, model, data):
    """(header, columns as lists of str) of the CSV `fastmlp predict --proba` writes."""
    proba = ["--proba"] if model != "rate" else []
    ok(run_cli("predict", f"{model}.npz", data, *proba, "--out", "out.csv", cwd=folder))
    header, rows = read_csv(folder / "out.csv")
    return header, [list(c) for c in zip(*rows)]


def as_text(values):
    return [str(v) for v in values]


def inputs(folder, data):
    """The same rows in each form load_table_model takes: {form: data}."""
    frame = read_frame(folder / data)
    shuffled = frame[list(np.random.default_rng(2).permutation(frame.columns))]
    forms = {"DataFrame": frame, "shuffled DataFrame": shuffled,
             "dict of lists": {c: frame[c].tolist() for c in frame.columns},
             "dict of arrays": {c: frame[c].to_numpy() for c in frame.columns},
             "CSV path": str(folder / data)}
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        return forms
    parquet = folder / (data.replace(".csv", ".parquet"))
    frame.to_parquet(parquet)
    forms["Parquet path"] = str(parquet)
    return forms


# ---------------------------------------------------------------------- against predict
@pytest.mark.parametrize("name", list(MODELS))
def test_predictions_are_the_commands_in_every_form_of_the_table(houses, name):
    header, columns = command_predictions(houses, name, DATA[name])
    tm = fastmlp.load_table_model(houses / f"{name}.npz")
    assert len(columns[0]) == 2000
    for form, data in inputs(houses, DATA[name]).items():
        predicted = tm.predict(data)
        assert as_text(predicted) == columns[0], form          # exactly the same text
        if tm.classes is None:
            assert header == ["prediction"] and predicted.dtype == tm.model.dtype
            continue
        assert predicted.dtype == object and isinstance(predicted[0], str)
        proba = tm.predict_proba(data)
        assert header == ["prediction", *[f"proba_{c}" for c in tm.classes]]
        assert proba.shape == (2000, len(tm.classes)) and proba.dtype == tm.model.dtype
        for j in range(len(tm.classes)):
            assert as_text(proba[:, j]) == columns[1 + j], (form, j)


def test_table_model_holds_the_network_and_its_preprocessing(houses):
    tm = fastmlp.load_table_model(houses / "readme.npz")
    assert isinstance(tm.model, fastmlp.MLP) and tm.model.layer_sizes == (6, 64, 2)
    assert np.array_equal(tm.model.params, fastmlp.load(houses / "readme.npz").params)
    assert tm.features == ["area", "price", "rate", "region"] and tm.target == "decision"
    assert tm.classes == ["buy", "skip"]
    assert [c["kind"] for c in tm.preprocessing.columns] == ["number"] * 3 + ["text"]
    assert tm.preprocessing.columns[3]["categories"] == ["city", "coast", "country"]
    # transform: the network's input, which the network alone predicts from.
    frame = read_frame(houses / "houses.csv")
    X = tm.transform(frame)
    assert X.shape == (2000, 6) and X.dtype == np.float32 and X.flags.c_contiguous
    assert np.array_equal(tm.model.predict_proba(X), tm.predict_proba(frame))
    region = frame["region"].to_numpy()
    assert np.array_equal(X[:, 3:], np.stack([region == c for c in
                                              ["city", "coast", "country"]], axis=1))
    assert "regressor" in repr(fastmlp.load_table_model(houses / "rate.npz"))


def test_readme_new_rows_and_unseen_category_warning(houses):
    # The README's new.csv: no target, columns in another order, the unseen 'island'.
    proc = ok(run_cli("predict", "readme.npz", "new.csv", cwd=houses))
    warning = proc.stderr.strip()
    assert warning.startswith("fastmlp: warning: new.csv: column 'region': 1 row(s)")
    tm = fastmlp.load_table_model(houses / "readme.npz")
    expected = proc.stdout.splitlines()[1:]
    for data, source in [(str(houses / "new.csv"), str(houses / "new.csv")),
                         (read_frame(houses / "new.csv"), "data")]:
        with pytest.warns(UserWarning) as record:
            assert as_text(tm.predict(data)) == expected
        assert [str(w.message) for w in record] == \
            [warning.removeprefix("fastmlp: warning: ").replace("new.csv", source, 1)]
        assert record[0].filename == __file__          # points at the caller's line
    with warnings.catch_warnings():
        warnings.simplefilter("error")                 # known categories: no warning
        tm.predict({"area": [1.0], "price": [2.0], "rate": [3.0], "region": ["city"]})


# ---------------------------------------------------------------------- bad tables
def bad_tables():
    """{case: (header, rows)} of tables the command refuses; each row of data is the
    README table's kind (the target column may be there)."""
    good = ["120.5", "3000", "0.04", "city"]
    return {
        "missing column": (["area", "price", "region"], [[good[0], good[1], good[3]]]),
        "extra column": (["area", "price", "rate", "region", "id"], [[*good, "x7"]]),
        "not a number": (["area", "price", "rate", "region"], [good, [good[0], good[1],
                                                                      "abc", good[3]]]),
        "missing number": (["area", "price", "rate", "region"], [good, ["", *good[1:]]]),
        "missing category": (["area", "price", "rate", "region"], [good, [*good[:3], "NA"]]),
        "infinity": (["area", "price", "rate", "region"], [["inf", *good[1:]]]),
    }


@pytest.mark.parametrize("case", list(bad_tables()))
def test_bad_tables_give_the_commands_one_line_errors(houses, case):
    header, rows = bad_tables()[case]
    write_csv(houses / "bad.csv", header, rows)
    proc = run_cli("predict", "readme.npz", "bad.csv", cwd=houses)
    assert proc.returncode == 2
    message = proc.stderr.strip().removeprefix("fastmlp: error: ")
    tm = fastmlp.load_table_model(houses / "readme.npz")
    # The CSV's path: the same text.  A DataFrame or dict is "data", its rows counted
    # from 1 where the CSV counts lines (the header is line 1).
    with pytest.raises(ValueError) as path_error:
        tm.predict(str(houses / "bad.csv"))
    assert str(path_error.value) == message.replace("bad.csv", str(houses / "bad.csv"), 1)
    in_memory = re.sub(r"^bad\.csv, line (\d+)",
                       lambda m: f"data, row {int(m[1]) - 1}", message)
    in_memory = re.sub(r"^bad\.csv:", "data:", in_memory)
    assert "bad.csv" not in in_memory
    frame = pd.DataFrame(rows, columns=header)
    for data in (frame, {h: [r[j] for r in rows] for j, h in enumerate(header)}):
        with pytest.raises(ValueError) as error:
            tm.predict(data)
        assert str(error.value) == in_memory
        with pytest.raises(ValueError) as error:
            tm.predict_proba(data)
        assert str(error.value) == in_memory


def test_typed_columns_read_as_the_same_cells(houses):
    tm = fastmlp.load_table_model(houses / "f64.npz")
    frame = read_frame(houses / "houses.csv").head(50)
    expected = tm.predict_proba(frame)
    typed = frame.astype({"price": "Int64", "region": "category"})   # nullable, categorical
    assert np.array_equal(tm.predict_proba(typed), expected)
    as_strings = {c: [str(v) for v in frame[c]] for c in frame.columns}
    assert np.array_equal(tm.predict_proba(as_strings), expected)
    with pytest.raises(ValueError, match=r"^data: column 'price' has 50 rows, but column "
                                         r"'area' has 49$"):
        tm.predict({**as_strings, "area": as_strings["area"][1:]})
    with pytest.raises(TypeError, match=r"^data: expected a pandas DataFrame, a dict"):
        tm.predict(frame.to_numpy())


def test_a_regressor_has_no_probabilities(houses):
    tm = fastmlp.load_table_model(houses / "rate.npz")
    assert tm.classes is None
    with pytest.raises(ValueError, match=r"^predict_proba: the model is a regressor"):
        tm.predict_proba(read_frame(houses / "houses.csv"))


def test_models_not_trained_on_a_table_are_refused(houses, tmp_path):
    fastmlp.MLP([3, 4, 2], loss="softmax_cross_entropy").save(tmp_path / "plain.npz")
    with pytest.raises(ValueError, match=r"^path: .*plain\.npz has no sidecar .*"
                                         r"load_table_model is for models that"):
        fastmlp.load_table_model(tmp_path / "plain.npz")
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "arrays.npz", X=rng.normal(size=(40, 3)), y=rng.normal(size=40))
    ok(run_cli("train", "arrays.npz", "--loss", "mse", "--epochs", "1", "--quiet",
               "--out", "arrays_model.npz", cwd=tmp_path))
    with pytest.raises(ValueError, match=r"trained on arrays, whose columns have no "
                                         r"names \(npz\); load_table_model is for models "
                                         r"trained on a table"):
        fastmlp.load_table_model(tmp_path / "arrays_model.npz")
    import scipy.sparse as sp
    sp.save_npz(tmp_path / "sparse.npz", sp.random(40, 6, density=0.3, format="csr",
                                                   random_state=0))
    np.savetxt(tmp_path / "labels.txt", np.arange(40) % 2, fmt="%d")
    ok(run_cli("train", "sparse.npz", "--labels", "labels.txt", "--loss",
               "softmax_cross_entropy", "--epochs", "1", "--quiet", "--out",
               "sparse_model.npz", cwd=tmp_path))
    with pytest.raises(ValueError, match=r"trained on sparse data \(sparse-npz\)"):
        fastmlp.load_table_model(tmp_path / "sparse_model.npz")


def test_import_fastmlp_loads_neither_the_command_line_nor_pandas(houses, python_prints_ok):
    # load_table_model is loaded on first use; a dict of lists works without pandas.
    python_prints_ok(
        "import sys, fastmlp\n"
        "assert not {'fastmlp.cli', 'fastmlp.table_model', 'pandas'} & set(sys.modules)\n"
        "sys.modules['pandas'] = None   # as if pandas were not installed\n"
        f"tm = fastmlp.load_table_model({str(houses / 'readme.npz')!r})\n"
        "out = tm.predict({'rate': [0.035, 0.05], 'area': [150.0, 90.5], 'price': [2600, "
        "3400], 'region': ['coast', 'country']})\n"
        "assert list(out) == ['buy', 'skip'], out\n"
        "print('ok')")


# ---------------------------------------------------------------------- scikit-learn
@pytest.mark.parametrize("name", list(MODELS))
def test_to_sklearn_pipeline_predicts_the_same(houses, name):
    pytest.importorskip("sklearn")
    tm = fastmlp.load_table_model(houses / f"{name}.npz")
    pipe = tm.to_sklearn()
    frame = read_frame(houses / DATA[name])
    # The same network input, bit for bit: the same float64 operations, then the cast.
    assert np.array_equal(pipe[:-1].transform(frame), tm.transform(frame))
    assert pipe[:-1].transform(frame).dtype == tm.model.dtype
    predicted = pipe.predict(frame)
    if tm.classes is None:
        assert predicted.dtype == tm.model.dtype and predicted.shape == (2000,)
        np.testing.assert_allclose(predicted, tm.predict(frame), rtol=1e-12, atol=0)
        return
    assert list(predicted) == list(tm.predict(frame))                 # classes exactly
    est = pipe[-1]
    assert sorted(tm.classes) == list(est.classes_)
    # predict_proba's columns are in classes_ (sorted) order; the table model's in the
    # order of the network's outputs.
    ours = tm.predict_proba(frame)[:, [tm.classes.index(c) for c in est.classes_]]
    theirs = pipe.predict_proba(frame)
    if tm.model.dtype == np.float32:
        # σ of the logit difference, whose weights W₁ − W₀ are rounded to float32.
        np.testing.assert_allclose(theirs, ours, rtol=0, atol=1e-6)
    elif len(tm.classes) == 2:
        # Column 0 is 1 − p₁ (scikit-learn's binary model): absolute agreement.
        np.testing.assert_allclose(theirs, ours, rtol=0, atol=1e-12)
        np.testing.assert_allclose(theirs[:, 1], ours[:, 1], rtol=1e-12, atol=1e-300)
    else:
        np.testing.assert_allclose(theirs, ours, rtol=1e-12, atol=0)


def test_to_sklearn_pipeline_is_made_of_fitted_scikit_learn_objects(houses):
    pytest.importorskip("sklearn")
    from sklearn.impute import SimpleImputer
    from sklearn.preprocessing import OneHotEncoder, StandardScaler
    from sklearn.utils.validation import check_is_fitted
    tm = fastmlp.load_table_model(houses / "impute.npz")
    pipe = tm.to_sklearn()
    columns = pipe.named_steps["preprocessing"]
    check_is_fitted(pipe)
    area = columns.named_transformers_["0:area"]
    spec = tm.preprocessing.columns[0]
    assert isinstance(area[0], SimpleImputer) and area[0].strategy == "median"
    assert area[0].statistics_.tolist() == [spec["fill"]]
    assert isinstance(area[1], StandardScaler)
    assert (area[1].mean_.tolist(), area[1].scale_.tolist()) == \
        ([spec["center"]], [spec["scale"]])
    region = columns.named_transformers_["3:region"]
    assert isinstance(region[1], OneHotEncoder) and region[1].handle_unknown == "ignore"
    assert region[1].categories_[0].tolist() == tm.preprocessing.columns[3]["categories"]
    assert region[0].statistics_.tolist() == [tm.preprocessing.columns[3]["fill"]]
    noscale = fastmlp.load_table_model(houses / "noscale.npz").to_sklearn()
    assert noscale.named_steps["preprocessing"].transformers[0][1] == "passthrough"
    # Pickles, and predicts the same after.
    frame = read_frame(houses / "gaps.csv")
    again = pickle.loads(pickle.dumps(pipe))
    assert np.array_equal(again.predict_proba(frame), pipe.predict_proba(frame))


def test_from_mlp_gives_a_fitted_estimator_that_trains_on(houses):
    sk = pytest.importorskip("fastmlp.sklearn")
    rng = np.random.default_rng(3)
    X = rng.normal(size=(300, 4))
    y = np.argmax(X[:, :3], axis=1)
    net = fastmlp.MLP([4, 8, 6, 3], activation=["tanh", "gelu"], loss="softmax_cross_entropy",
                      dtype=np.float64, optimizer="adam", l2=0.01, seed=0)
    net.fit(X, y, epochs=5, lr=0.01)
    names = ["zebra", "ant", "moth"]                     # not sorted: outputs reordered
    est = sk.from_mlp(net, names)
    assert list(est.predict(X)) == [names[k] for k in net.predict(X)]
    np.testing.assert_allclose(est.predict_proba(X),
                               net.predict_proba(X)[:, [names.index(c) for c in
                                                        est.classes_]], rtol=1e-12)
    assert (est.solver, est.alpha, est.activation) == ("adam", 0.01, ["tanh", "gelu"])
    assert np.array_equal(est.coefs_[0], net.weights[0])
    est.partial_fit(X, np.array(names)[y])               # the fitted state trains on
    assert est.n_iter_ == 1 and est.coefs_[0].shape == (4, 8)
    regressor = fastmlp.MLP([4, 5, 2], dtype=np.float64, seed=0)
    assert np.array_equal(sk.from_mlp(regressor).predict(X), regressor.predict(X))
    with pytest.raises(ValueError, match=r"^net: an mse model with output_activation "
                                         r"'tanh' has no scikit-learn counterpart"):
        sk.from_mlp(fastmlp.MLP([4, 5, 1], output_activation="tanh"))
    with pytest.raises(ValueError, match=r"^classes: expected 3 distinct names"):
        sk.from_mlp(net, ["a", "b"])
