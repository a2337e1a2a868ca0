"""Smoke test of `fastmlp bench --threads-scaling`: it runs, its report holds every pass at
both thread counts, and its Amdahl projection follows from the numbers it measured.
Nothing here asserts anything about speed."""
import json

import pytest

pytest.importorskip("threadpoolctl")

from fastmlp.bench import run, threadscaling   # noqa: E402


def test_quick_run_reports_and_projects(tmp_path):
    out = tmp_path / "threads.json"
    assert run.main(["--threads-scaling", "--quick", "--dtype", "float32",
                     "--optimizer", "sgd", "--json", str(out)]) == 0
    (r,) = json.loads(out.read_text())["results"]
    times = r["times_us"]
    assert set(times) == {"1", "2"}
    assert set(times["1"]) == set(times["2"]) >= {"step", "step, passes whole", "products",
                                                  "step, products to pool", "update (sgd)"}
    assert all(t > 0 for th in times.values() for t in th.values())
    # The unnamed part is the 2-thread step minus its products minus every pass listed.
    t2 = times["2"]
    passes = [k for k in t2 if k not in threadscaling.NOT_PASSES]
    assert "update (sgd)" in passes and not {"step", "step, products to pool"} & set(passes)
    assert r["unnamed_us"] == pytest.approx(
        t2["step"] - t2["products"] - sum(t2[k] for k in passes))
    assert r["unnamed_fraction_of_step"] == pytest.approx(r["unnamed_us"] / t2["step"])
    q = r["products_parallel_fraction"]
    assert 0.0 <= q <= 1.0
    for n, p in r["projection"].items():
        # products(N) = products(1)·((1 − q) + q/N); step(N) = serial + products(N)
        want = times["1"]["products"] * ((1 - q) + q / int(n))
        assert p["products_us"] == pytest.approx(want)
        assert p["step_us"] == pytest.approx(r["serial_us"] + want)
    assert threadscaling.table(threadscaling.run("float32", "sgd", quick=True))


@pytest.mark.parametrize("optimizer", ["adam", "momentum"])
def test_checked_optimizers_time_their_pre_check(optimizer):
    # Adam's and momentum's steps check every new value before updating; the breakdown
    # names that pass, and the check it times passes (finite data), as the step's does.
    import numpy as np
    fns = threadscaling.passes(np.dtype(np.float32), optimizer)
    assert {f"pre-check ({optimizer})", f"update ({optimizer})"} <= set(fns)
    assert fns[f"pre-check ({optimizer})"]() is True
