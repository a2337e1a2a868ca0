"""The scaling and memory benchmarks (fastmlp/bench/scaling.py, memory.py) in tiny
configurations: they run and report the right quantities.  No timing is asserted; the
memory bounds are assertions about fastmlp itself."""
import functools
import json

import numpy as np
import pytest

from fastmlp import cli
from fastmlp.bench import memory, scaling


@pytest.fixture(scope="module")
def tiny_report(tmp_path_factory):
    """One run of `fastmlp bench --scaling` on two sizes per sweep, one round."""
    out = tmp_path_factory.mktemp("scaling") / "scaling.json"
    rc = cli.main(["bench", "--scaling", "--quick", "--batches", "1,8", "--widths", "16,24",
                   "--rounds", "1", "--threads", "1", "--peers", "fastmlp,gemms",
                   "--json", str(out)])
    assert rc == 0
    return json.loads(out.read_text())


def test_scaling_reports_the_flop_count_of_each_step(tiny_report):
    batch, width = tiny_report["batch"]["points"], tiny_report["width"]["points"]
    assert [p["batch"] for p in batch] == [1, 8]
    assert all(p["layers"] == [256, 256, 256, 10] for p in batch)
    assert [p["layers"] for p in width] == [[16, 16, 16, 10], [24, 24, 24, 10]]
    assert all(p["batch"] == 128 for p in width)
    # [256, 256, 256, 10]: 256·256 + 256·256 + 256·10 = 133,632 multiply-adds per row and
    # product; a step runs three products per layer (A·W, Aᵀ·Δ, Δ·Wᵀ) of 2 FLOPs each.
    assert [p["flops"] for p in batch] == [6 * 133_632, 6 * 8 * 133_632]
    # [16, 16, 16, 10] at 128 rows: 16·16 + 16·16 + 16·10 = 672; [24, ...]: 1,392.
    assert [p["flops"] for p in width] == [6 * 128 * 672, 6 * 128 * 1_392]
    for p in batch + width:
        n, (d0, d1) = p["batch"], p["layers"][:2]
        forward = sum(2 * n * a * b for a, b in zip(p["layers"], p["layers"][1:]))
        assert p["flops"] == 3 * forward
        assert p["gemm_flops"] == p["flops"] - 2 * n * d0 * d1   # no Δ(0) = Δ(1)·W(1)ᵀ


def test_scaling_reports_positive_times_and_consistent_rates(tiny_report):
    assert tiny_report["config"]["rounds"] == 1
    assert tiny_report["env"]["threads"] == 1
    for p in tiny_report["batch"]["points"] + tiny_report["width"]["points"]:
        assert set(p["peers"]) == {"fastmlp", "gemms"}
        assert p["rounds"] == 1
        for s in p["peers"].values():
            assert len(s["samples_us"]) == 1 and s["median_us"] > 0 and s["min_us"] > 0
            assert s["gflops"] == pytest.approx(p["flops"] / (s["median_us"] * 1e-6) / 1e9)


def test_scaling_table_and_chart(tiny_report, tmp_path):
    text = scaling.table("width", tiny_report["width"])
    assert text.count("\n") == 3 and "| [24, 24, 24, 10] |" in text
    pytest.importorskip("matplotlib")
    path = tmp_path / "scaling.png"
    scaling.plot(tiny_report, path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_allocation_counter_sees_buffers_and_leaks():
    """The instrument is not blind: a transient 64 KiB buffer shows in the peak, one object
    kept per call shows in the retained blocks."""
    scratch = functools.partial(np.ones, 8192)         # 64 KiB, freed at once
    r = memory.traced_allocations(scratch, max_calls=10, max_s=60)
    assert r["peak_bytes"] >= 65536 and r["retained_blocks"] < 10
    kept = []
    r = memory.traced_allocations(lambda: kept.append(object()), max_calls=50, max_s=60)
    assert r["calls"] == 50 and r["retained_blocks"] >= 50


def test_steady_state_train_step_and_epoch_allocate_no_buffer():
    """After warm-up a train_step allocates no buffer, only a few transient Python objects
    (the returned float and the like: ~150 B measured).  The bound, 4 KiB, is a quarter of
    the smallest buffer a step of this net could need (one activation or delta of the
    batch: 64 rows × 64 × 4 B = 16 KiB; the workspace is 68 KiB), so any per-step buffer
    fails it.  An epoch of fit allocates the shuffled order of the rows (8 B a row) and
    transient objects (its loss list, the seeded generator), nothing of batch size."""
    r = memory.steady_state([32, 64, 64, 10], 64, rows=256, max_calls=100, max_s=60)
    step, epoch = r["train_step"], r["fit_epoch"]
    assert step["calls"] == 100 and epoch["calls"] == 100
    assert step["peak_bytes"] <= 4096
    assert epoch["peak_bytes"] <= r["permutation_bytes"] + 4096
    # A leak of one object per call would leave ≥ 100 blocks.
    assert step["retained_blocks"] < 10 and epoch["retained_blocks"] < 10
    assert step["retained_bytes"] < 1024 and epoch["retained_bytes"] < 1024


def test_fit_peak_is_within_the_bound():
    """fit's traced peak over parameters + gradients + one batch's activations A(0..L)
    and deltas Δ(1..L) stays within the issue's target of 1.2×.  (RSS is reported but not
    asserted here: at a few hundred KiB it is below the kernel counters' granularity.)"""
    sizes, batch = [64, 128, 64, 10], 64
    r = memory.fit_peak(sizes, batch, rows=512, epochs=2)
    n_params = 64 * 128 + 128 + 128 * 64 + 64 + 64 * 10 + 10
    assert r["bound_parts"] == {"parameters": 4 * n_params, "gradients": 4 * n_params,
                                "activations": 4 * batch * (64 + 128 + 64 + 10),
                                "deltas": 4 * batch * (128 + 64 + 10)}
    assert r["bound_bytes"] == sum(r["bound_parts"].values())
    # what a step cannot do without: parameters, gradients, the workspace's activations
    assert r["traced_peak_bytes"] >= 8 * n_params + 4 * batch * (128 + 64 + 10)
    assert r["traced_ratio"] <= 1.2
