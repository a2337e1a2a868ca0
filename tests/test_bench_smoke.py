"""Smoke test of the benchmark suite (fastmlp.bench): it runs, writes its JSON, and its
peers compute the same SGD step as fastmlp.  Nothing here asserts anything about speed."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import fastmlp
from fastmlp.bench import peers, run

LOSSES = ["mse", "softmax_cross_entropy"]


def _data(loss, n=7, sizes=(5, 8, 6, 3), seed=1):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, sizes[0]))
    if loss == "mse":
        return X, rng.standard_normal((n, sizes[-1]))
    return X, rng.integers(0, sizes[-1], n)


def test_quick_run_writes_json(tmp_path):
    out = tmp_path / "bench.json"
    rc = run.main(["--quick", "--workloads", "tiny", "--peers", "fastmlp,numpy,gemms",
                   "--rounds", "3", "--threads", "1", "--json", str(out)])
    assert rc == 0
    report = json.loads(out.read_text())
    assert report["env"]["versions"]["numpy"] == np.__version__
    assert "OPENBLAS_CORETYPE" in report["env"]["openblas_env_at_start"]
    (res,) = report["results"]
    assert res["workload"] == "tiny" and res["dtype"] == "float32"
    for name in ("fastmlp", "numpy", "gemms"):
        p = res["peers"][name]
        assert p["median_us"] > 0 and p["min_us"] > 0
        assert len(p["samples_us"]) == 3 and all(s > 0 for s in p["samples_us"])
        assert p["ratio_vs_fastmlp"] > 0
    assert res["peers"]["fastmlp"]["ratio_vs_fastmlp"] == 1.0


def test_bench_command_from_the_repository_root_runs_the_installed_package(tmp_path):
    """`fastmlp bench` started in the repository root (where bench/README.md's commands
    are typed) measures the fastmlp the tests use, not the uncompiled sources there."""
    root = Path(__file__).resolve().parents[1]
    command = Path(sys.executable).with_name("fastmlp")
    if not command.exists():
        pytest.skip("no fastmlp console script beside this Python")
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [str(command), "bench", "--quick", "--workloads", "tiny", "--peers", "fastmlp",
         "--rounds", "2", "--threads", "1", "--json", str(out)],
        cwd=root, env={**os.environ, "OPENBLAS_NUM_THREADS": "1"}, capture_output=True,
        text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(out.read_text())
    assert Path(report["env"]["fastmlp_path"]) == Path(fastmlp.__file__).parent
    assert report["results"][0]["peers"]["fastmlp"]["ratio_vs_fastmlp"] == 1.0


def _check_same_steps(peer_cls, loss, steps=3):
    sizes = (5, 8, 6, 3)
    X, Y = _data(loss)
    init = peers.he_init(sizes, np.float64, seed=3)
    ref, other = peers.FastmlpPeer(), peer_cls()
    ref.setup(sizes, loss, np.float64, X, Y, init=init)
    other.setup(sizes, loss, np.float64, X, Y, init=init)
    for _ in range(steps):
        assert other.step() == pytest.approx(ref.step(), rel=1e-12, abs=1e-14)
    for (W1, b1), (W2, b2) in zip(ref.params(), other.params()):
        np.testing.assert_allclose(W2, W1, rtol=0, atol=1e-10)
        np.testing.assert_allclose(b2, b1, rtol=0, atol=1e-10)


@pytest.mark.parametrize("loss", LOSSES)
def test_numpy_peer_computes_fastmlps_step(loss):
    _check_same_steps(peers.NumpyPeer, loss)


@pytest.mark.parametrize("loss", LOSSES)
def test_torch_peer_computes_fastmlps_step(loss):
    pytest.importorskip("torch")
    _check_same_steps(peers.TorchPeer, loss)


def test_default_init_is_fastmlps():
    sizes = (4, 6, 2)
    model = fastmlp.MLP(sizes, dtype=np.float64, seed=0)
    for (W, b), W0, b0 in zip(peers.he_init(sizes, np.float64), model.weights, model.biases):
        np.testing.assert_array_equal(W, W0)
        np.testing.assert_array_equal(b, b0)


def test_numpy_epoch_matches_fit():
    sizes = (5, 8, 6, 3)
    X, Y = _data("softmax_cross_entropy", n=50)
    ref, other = peers.FastmlpPeer(), peers.NumpyPeer()
    ref.setup(sizes, "softmax_cross_entropy", np.float64, X, Y)
    other.setup(sizes, "softmax_cross_entropy", np.float64, X, Y)
    mean_loss = ref.epoch(X, Y, batch_size=16)         # 4 steps, the last one of 2 rows
    assert other.epoch(X, Y, batch_size=16) / len(X) == pytest.approx(mean_loss, rel=1e-12)
    for (W1, b1), (W2, b2) in zip(ref.params(), other.params()):
        np.testing.assert_allclose(W2, W1, rtol=0, atol=1e-10)
        np.testing.assert_allclose(b2, b1, rtol=0, atol=1e-10)


def test_sparse_workload_runs_and_fastmlp_fits_what_scikit_learn_fits(tmp_path, capsys):
    pytest.importorskip("sklearn")
    from fastmlp.bench import sparse
    out = tmp_path / "sparse.json"
    assert sparse.main(["--rows", "60", "--cols", "300", "--nnz", "4", "--width", "6",
                        "--epochs", "2", "--solvers", "sgd0", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["settings"]["rows"] == 60 and report["settings"]["solvers"] == "sgd0"
    results = report["results"]
    assert set(results) == {f"sgd0 / {side}" for side in sparse.SIDES}
    for side, r in results.items():
        assert r["seconds"] > 0 and r["peak_mb"] > 0, side
        assert len(r["loss_curve"]) == 2, side
        # float64 throughout: the sides' products differ in order only (the module's
        # docstring and tests/test_sparse.py: 1e-10 is the bar over whole fits).
        assert r["loss_rel_diff_vs_sklearn"] < 1e-10, side
    assert results["sgd0 / sklearn"]["loss_rel_diff_vs_sklearn"] == 0
    printed = capsys.readouterr().out
    assert printed.count("time / fastmlp sparse") == len(sparse.SIDES)


def test_serving_workload_times_every_call_after_checking_its_answers(tmp_path, monkeypatch):
    pytest.importorskip("sklearn")
    pytest.importorskip("pandas")
    from fastmlp.bench import serving
    monkeypatch.setitem(serving.SETTINGS, "quick", (2, 0.001, 0.001))
    out = tmp_path / "serving.json"
    assert run.main(["--serving", "--quick", "--rows", "40", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["results"]
    inputs = {r["input"] for r in rows}
    assert inputs == {"1 row (ndarray)", "1 row (DataFrame)", "40 rows (ndarray)"}
    for name in inputs:
        sides = {r["side"]: r for r in rows if r["input"] == name}
        assert {"MLP.forward", "predict_proba", "predict", "predict_proba, full checks",
                "scikit-learn predict_proba"} <= set(sides)
        assert sides["MLP.forward"]["ratio_vs_forward"] == 1.0
        assert all(r["median_us"] > 0 for r in sides.values())


def test_serving_check_refuses_a_side_that_computes_something_else():
    pytest.importorskip("sklearn")
    pytest.importorskip("pandas")
    from fastmlp.bench import serving
    cases, _ = serving._cases(np.dtype("float64"), 5)
    fns = dict(cases["1 row (ndarray)"])
    serving._check("1 row", fns, "float64")          # as built: every side agrees
    right = fns["predict_proba"]
    fns["predict_proba"] = lambda: right() + 1e-9
    with pytest.raises(AssertionError, match="predict_proba: probabilities differ"):
        serving._check("1 row", fns, "float64")


def test_fit_overhead_workload_times_the_estimator_beside_mlp_fit_and_its_gemms(
        tmp_path, monkeypatch):
    pytest.importorskip("sklearn")
    from fastmlp.bench import fitcost
    monkeypatch.setitem(fitcost.SETTINGS, "quick", (2, 0.001, 0.001))
    monkeypatch.setattr(fitcost, "SMALL_EPOCHS", (1, 3))
    monkeypatch.setitem(fitcost.LARGE, "hidden", (8,))
    monkeypatch.setitem(fitcost.LARGE, "epochs", 1)
    out = tmp_path / "fit.json"
    assert run.main(["--fit-overhead", "--quick", "--rows", "450", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    cases = {}
    for r in report["results"]:
        cases.setdefault(r["case"], {})[r["side"]] = r
        assert r["median_us"] > 0
    assert set(cases) == {"iris, 1 epoch", "iris, 3 epochs", "450 x 784, adam, 1 epochs"}
    large = cases["450 x 784, adam, 1 epochs"]
    assert set(large) == {"MLPClassifier.fit", "MLP(...).fit", "GEMMs alone"}
    assert large["GEMMs alone"]["ratio"] == 1.0 and large["MLP(...).fit"]["ratio_to"] == "GEMMs alone"
    assert cases["iris, 3 epochs"]["MLP(...).fit"]["ratio"] == 1.0
    assert set(report["phases_us"]) >= {"validate_data(X, y)", "label encoding"}
    assert all(us > 0 for us in report["phases_us"].values())


def test_stack_workload_times_the_stack_beside_the_same_fits_one_by_one(tmp_path, monkeypatch):
    from fastmlp.bench import stacking
    monkeypatch.setitem(stacking.SETTINGS, "quick", (2, 0.001, 0.001))
    out = tmp_path / "stack.json"
    assert run.main(["--stack", "--quick", "--models", "3", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["models"] == 3 and report["optimizer"] == "adam"
    cases = {}
    for r in report["results"]:
        cases.setdefault((r["case"], r["threads"]), {})[r["side"]] = r
        assert r["median_us"] > 0
    assert {case for case, _ in cases} == {"3 × [16, 32, 1], batch 32", "3 × [16, 32, 1], online"}
    assert 1 in {threads for _, threads in cases}
    for sides in cases.values():
        assert set(sides) == {"one by one", "MLPStack", "one wide model"}
        assert sides["one by one"]["speedup"] == 1.0


def test_stack_workload_refuses_a_stack_that_trains_something_else(monkeypatch):
    from fastmlp.bench import stacking
    fit = fastmlp.MLPStack.fit
    def off_by_one_step(self, X, Y, **kw):       # a stack that trains one epoch too few
        return fit(self, X, Y, **dict(kw, epochs=kw["epochs"] - 1))
    monkeypatch.setattr(fastmlp.MLPStack, "fit", off_by_one_step)
    with pytest.raises(AssertionError, match="differs from its own fit"):
        stacking._case(50, 10, 2, 2, "adam")


def test_search_workload_times_every_search_after_checking_they_agree(tmp_path, monkeypatch):
    pytest.importorskip("sklearn")
    from fastmlp.bench import search
    monkeypatch.setitem(search.CASES, "iris", ("load_iris", True, {"max_iter": 3},
                                               {"alpha": [1e-4, 1e-2],
                                                "hidden_layer_sizes": [(4,)]}))
    out = tmp_path / "search.json"
    assert run.main(["--search", "--quick", "--cases", "iris", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    sides = {r["side"]: r for r in report["results"]}
    assert {r["case"] for r in report["results"]} == {"iris"}
    assert len(sides) == 5 and sides[search.REFERENCE]["speedup"] == 1.0
    assert all(r["median_us"] > 0 for r in sides.values())
    with pytest.raises(SystemExit):
        search.main(["--cases", "iris,mnist"])
