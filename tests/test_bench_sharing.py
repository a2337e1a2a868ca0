"""Smoke test of `fastmlp bench --sharing` (fastmlp/bench/sharing.py) in tiny settings: the
cases run in their own processes, the report has its structure, the ratios are computed
from the samples.  Nothing here asserts anything about speed."""
import json
import math

import pytest

from fastmlp import cli
from fastmlp.bench import sharing

CASES = ["numpy-fastmlp-float32", "two-threads", "epoch"]


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("sharing") / "sharing.json"
    rc = cli.main(["bench", "--sharing", "--quick", "--rounds", "2", "--cases",
                   ",".join(CASES), "--json", str(out)])
    assert rc == 0
    return json.loads(out.read_text())


def test_every_case_ran_in_its_own_process_with_finite_ratios(report):
    assert [c["case"] for c in report["cases"]] == CASES
    for case in report["cases"]:
        assert case["rounds"] == 2
        assert case["blas"]["thread_limit"] >= 1
        for s in case["stats"].values():
            assert len(s["samples_us"]) == 2 and all(x > 0 for x in s["samples_us"])
        for cmp in case["comparisons"]:
            assert math.isfinite(cmp["ratio"]) and cmp["ratio"] > 0
            assert cmp["ratio_q1"] <= cmp["ratio"] <= cmp["ratio_q3"]
            if cmp["target"] is None:        # a comparison reported for reading only
                assert cmp["met"] is None
            else:
                assert cmp["met"] in ("yes", "no", "within noise")


def test_ratio_is_paired_by_round(report):
    (loop,) = [c for c in report["cases"] if c["case"] == "numpy-fastmlp-float32"]
    st = loop["stats"]
    (cmp,) = loop["comparisons"]
    want = [t / (o + s) for t, o, s in zip(st["together"]["samples_us"],
                                           st["other"]["samples_us"], st["step"]["samples_us"])]
    assert cmp["ratios_per_round"] == pytest.approx(want, rel=1e-12)
    assert cmp["ratio"] == pytest.approx(sum(want) / 2, rel=1e-12)     # median of two
    assert cmp["target"] == 1.2 and cmp["sense"] == "<="


def test_environment_is_recorded(report):
    env = report["env"]
    assert env["blas"]["current"] and env["blas"]["thread_limit"] >= 1
    assert "simd" in env["cpu"] and len(env["loadavg_at_start"]) == 3
    assert isinstance(report["openblas_unset_in_cases"], dict)


def test_met_reads_the_target_and_the_quartiles():
    stats = {"a": {"samples_us": [1.0, 1.0, 1.0, 1.0], "median_us": 1.0},
             "b": {"samples_us": [1.0, 1.1, 1.3, 1.5], "median_us": 1.2}}
    cmp = {"baseline": ["a"], "measured": "b", "target": 1.25, "sense": "<="}
    r = sharing.ratios(cmp, stats)
    assert r["ratio"] == pytest.approx(1.2) and r["met"] == "yes"
    r = sharing.ratios({**cmp, "target": 1.15}, stats)
    assert r["met"] == "within noise"          # median 1.2, quartiles 1.075–1.35
    r = sharing.ratios({**cmp, "target": 1.3, "sense": ">="}, stats)
    assert r["met"] == "within noise"
    r = sharing.ratios({**cmp, "target": 2.0, "sense": ">="}, stats)
    assert r["met"] == "no"


def test_unknown_case_is_refused(capsys):
    with pytest.raises(SystemExit):
        sharing.parse_args(["--cases", "numpy-fastmlp-float16"])
    assert "unknown case" in capsys.readouterr().err
