"""Many small models at once: ``MLPStack.fit`` against the same models fitted one by one.

    fastmlp bench --stack [--quick] [--models K] [--optimizer adam|sgd] [--json PATH]

K tiny [16, 32, 1] models (default 32), float32, each with its own seed, trained on the
same 1,000 rows (batch 32, 5 epochs) and 200 rows (online: batch 1, 3 epochs):

- **one by one**: ``m.fit(...)`` for each model, what a user's loop does;
- **MLPStack**: ``MLPStack(models).fit(...)`` with the same arguments (every model ends
  bit-identical to its own fit; checked before timing);
- **one wide model**: a single [16, 32·K, 1] model fitted once, the same first-layer work
  as the whole stack in one product per step — the most fusing the K first layers into
  one product could give on one core (its output layer is K times narrower, so it is an
  upper bound on that saving, not the same training).

Each at the thread limit the user has (``fastmlp.get_num_threads()``) and at one thread
(``fastmlp.set_num_threads(1)``), so the share of the stack's split over threads shows.
Timed interleaved in one process (fastmlp.bench.harness: warm-up, rounds, medians); the
ratios are to one by one at the same thread count.
"""
from __future__ import annotations

import argparse

import numpy as np

from fastmlp.bench.harness import (env_summary, environment, fmt_us, measure, publish,
                                   summarize)

WIDTHS = (16, 32, 1)
# name: (rows, batch size, epochs)
CASES = {"batch 32": (1000, 32, 5), "online": (200, 1, 3)}
# (rounds, seconds per block, seconds of warm-up per call)
SETTINGS = {"full": (9, 0.1, 0.2), "quick": (3, 0.01, 0.01)}


def _case(rows: int, batch: int, epochs: int, K: int, optimizer: str) -> dict:
    import fastmlp
    rng = np.random.default_rng(0)
    X = rng.standard_normal((rows, WIDTHS[0])).astype(np.float32)
    Y = rng.standard_normal((rows, WIDTHS[-1])).astype(np.float32)
    kw = dict(optimizer=optimizer)
    models = [fastmlp.MLP(WIDTHS, seed=k, **kw) for k in range(K)]
    stack = fastmlp.MLPStack(models)
    wide = fastmlp.MLP([WIDTHS[0], WIDTHS[1] * K, WIDTHS[-1]], seed=0, **kw)
    fit = dict(epochs=epochs, batch_size=batch, lr=1e-3, seed=1)
    # The stack trains the very models its one-by-one side would: checked once, up front.
    alone = [fastmlp.MLP(WIDTHS, seed=k, **kw) for k in range(K)]
    for m in alone:
        m.fit(X, Y, **fit)
    stack.fit(X, Y, **fit)
    if not all(np.array_equal(a.params, m.params) for a, m in zip(alone, models)):
        raise AssertionError("a stacked model differs from its own fit")
    return {"one by one": lambda: [m.fit(X, Y, **fit) for m in alone],
            "MLPStack": lambda: stack.fit(X, Y, **fit),
            "one wide model": lambda: wide.fit(X, Y, **fit)}


def run(quick: bool = False, K: int = 32, optimizer: str = "adam") -> dict:
    import fastmlp
    rounds, block_s, warmup_s = SETTINGS["quick" if quick else "full"]
    limit = fastmlp.get_num_threads()
    results = []
    try:
        for threads in sorted({limit, 1}, reverse=True):
            fastmlp.set_num_threads(threads)
            for name, (rows, batch, epochs) in CASES.items():
                fns = _case(rows, batch, epochs, K, optimizer)
                timed = measure(fns, rounds, block_s, warmup_s, pause_s=0.0)
                ref = summarize(timed["one by one"]["samples_us"])["median_us"]
                for side, t in timed.items():
                    s = summarize(t["samples_us"])
                    results.append({"case": f"{K} × {list(WIDTHS)}, {name}", "threads": threads,
                                    "side": side, **s, "speedup": ref / s["median_us"]})
    finally:
        fastmlp.set_num_threads(limit)
    return {"optimizer": optimizer, "models": K, "results": results}


def table(report) -> str:
    lines = [f"optimizer {report['optimizer']}, float32; speedup against one by one at the "
             "same thread count",
             f"{'case':30s} {'threads':>7s} {'side':16s} {'median':>10s} {'speedup':>8s}"]
    for r in report["results"]:
        lines.append(f"{r['case']:30s} {r['threads']:7d} {r['side']:16s} "
                     f"{fmt_us(r['median_us']):>10s} {r['speedup']:7.2f}×")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="fastmlp bench --stack", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--models", type=int, default=32, help="models in the stack (K)")
    ap.add_argument("--optimizer", default="adam", choices=["adam", "sgd"])
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    if args.models < 1:
        ap.error("--models must be at least 1")
    import fastmlp
    env = environment(fastmlp.get_num_threads())
    print(env_summary(env), flush=True)
    report = run(args.quick, args.models, args.optimizer)
    return publish(table(report), env, report, args.json)


if __name__ == "__main__":
    raise SystemExit(main())
