"""How the time of one training step grows with the batch size and with the width.

    python -m fastmlp.bench.scaling [--quick] [--threads N] [--json PATH] [--plot PATH]
    fastmlp bench --scaling [the same options]

Two sweeps of ``MLP.train_step`` (softmax cross-entropy, float32 unless --dtype):

  batch   n = 1, 2, 4, ..., 4096 rows through [256, 256, 256, 10]
  width   [w, w, w, 10] for w = 16, 32, ..., 4096, at 128 rows

Each point is set against the FLOP count of the step's matrix products,
6·n·Σ d_in·d_out (forward A·W is 2·n·d_in·d_out a layer; backward Aᵀ·Δ and Δ·Wᵀ twice
that), as GFLOP/s, next to the same step's products alone (the ``gemms`` peer of
peers.py: numpy matmul into preallocated arrays) and PyTorch when it is installed.
Timing is fastmlp.bench.run's: a warm-up, then interleaved rounds of blocks of calls,
medians; the rounds of a point are cut to about 3 s (at least 3 rounds).  One thread by
default: the sweeps measure efficiency against the FLOP count, and with more threads every
block must wait for the previous library's BLAS threads to stop spinning (see
bench/README.md), which over ~20 points makes a long run.
"""
from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

from fastmlp.bench import peers as P
from fastmlp.bench import harness

LOSS = "softmax_cross_entropy"
BATCH_LAYERS = [256, 256, 256, 10]
WIDTH_BATCH = 128
PEERS = ("fastmlp", "gemms", "torch")
MIN_ROUNDS = 3

# point_s: the measured rounds of one point (all its peers) are cut to about this many
# seconds, but never below MIN_ROUNDS: a step of the 4096-wide net takes ~0.3 s.
SETTINGS = {
    "full": dict(batches=[2 ** k for k in range(13)], widths=[2 ** k for k in range(4, 13)],
                 rounds=7, block_s=0.02, warmup_s=0.1, point_s=3.0),
    "quick": dict(batches=[2 ** k for k in range(0, 11)], widths=[2 ** k for k in range(4, 11)],
                  rounds=3, block_s=0.005, warmup_s=0.02, point_s=0.4),
}


def width_layers(w: int) -> list[int]:
    """The network of the width sweep: three layers of width w, ten outputs."""
    return [w, w, w, 10]


def step_flops(layers, n: int) -> int:
    """FLOPs of the products of one training step on n rows, 6·n·Σ d_in·d_out.

    The usual count: it includes the product Δ(1)·W(1)ᵀ, the delta of the inputs, which no
    implementation here computes (see ``gemm_flops``).
    """
    return 6 * n * sum(a * b for a, b in zip(layers[:-1], layers[1:]))


def gemm_flops(layers, n: int) -> int:
    """FLOPs of the products a step actually runs: ``step_flops`` less 2·n·d0·d1."""
    return step_flops(layers, n) - 2 * n * layers[0] * layers[1]


def measure_point(layers, n, dtype, peer_names, cfg, pause_s) -> dict:
    """Time one step of every available peer on a batch of n rows; one sweep point."""
    X, Y = harness.make_data(n, layers, LOSS, dtype)
    fns, skipped = {}, {}
    for name in peer_names:
        why = P.BY_NAME[name].available()
        if why:
            skipped[name] = why
            continue
        peer = P.BY_NAME[name]()
        peer.setup(layers, LOSS, dtype, X, Y)
        fns[name] = peer.step
    flops = step_flops(layers, n)
    point = {"batch": n, "layers": list(layers), "flops": flops,
             "gemm_flops": gemm_flops(layers, n), "peers": {}, "skipped": skipped}
    if not fns:
        return point
    # One probe call (after the one that allocates fastmlp's workspace) sizes the rounds.
    probe = next(iter(fns.values()))
    probe()
    t0 = time.perf_counter()
    probe()
    per_call = time.perf_counter() - t0
    rounds = min(cfg["rounds"], max(MIN_ROUNDS, int(cfg["point_s"] / (per_call * len(fns)))))
    load = harness.OtherLoad()
    timed = harness.measure(fns, rounds, cfg["block_s"], cfg["warmup_s"], pause_s)
    point.update(rounds=rounds, other_load_pct=load.percent())
    for name, t in timed.items():
        s = harness.summarize(t["samples_us"])
        s["gflops"] = flops / s["median_us"] / 1e3
        s.update(t)
        point["peers"][name] = s
    return point


def sweep(kind, values, dtype, peer_names, cfg, pause_s) -> dict:
    """The batch sweep (values: row counts) or the width sweep (values: widths)."""
    points = []
    for v in values:
        layers, n = (BATCH_LAYERS, v) if kind == "batch" else (width_layers(v), WIDTH_BATCH)
        t0 = time.perf_counter()
        points.append(measure_point(layers, n, dtype, peer_names, cfg, pause_s))
        print(f"  {kind} {v}: {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
    fixed = {"layers": BATCH_LAYERS} if kind == "batch" else {"batch": WIDTH_BATCH}
    return {**fixed, "points": points}


# ---------------------------------------------------------------------- output
def table(kind, result) -> str:
    """Markdown table of a sweep: µs per step and GFLOP/s of each peer."""
    names = [p for p in P.BY_NAME if any(p in pt["peers"] for pt in result["points"])]
    head = "| " + ("batch" if kind == "batch" else "width") + " | layers | MFLOP/step | " + \
        " | ".join(f"{p} µs | {p} GFLOP/s" for p in names) + " | fastmlp / gemms |"
    lines = [head, "|" + "---|" * 3 + "---:|---:|" * len(names) + "---:|"]
    for pt in result["points"]:
        key = pt["batch"] if kind == "batch" else pt["layers"][0]
        cells = []
        for p in names:
            s = pt["peers"].get(p)
            flag = " (!)" if s and harness.is_noisy(s) else ""
            cells += [f"{harness.fmt_us(s['median_us'])}{flag}", f"{s['gflops']:.1f}"] if s \
                else ["–", "–"]
        fm, gm = pt["peers"].get("fastmlp"), pt["peers"].get("gemms")
        ratio = f"{fm['median_us'] / gm['median_us']:.2f}" if fm and gm else "–"
        busy = " [load]" if (pt.get("other_load_pct") or 0) > harness.BUSY_PCT else ""
        lines.append(f"| {key}{busy} | {pt['layers']} | {pt['flops'] / 1e6:,.2f} | "
                     + " | ".join(cells) + f" | {ratio} |")
    return "\n".join(lines)


def plot(report, path) -> None:
    """PNG with two panels: µs per step against the batch size (log-log, with the line
    proportional to the FLOP count through fastmlp's largest batch), and GFLOP/s against
    the width."""
    import matplotlib      # parse_args has checked that it is installed
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import ScalarFormatter
    fig, (ax_b, ax_w) = plt.subplots(1, 2, figsize=(11, 4.5))
    batch, width = report.get("batch"), report.get("width")
    for name in P.BY_NAME:
        label = P.BY_NAME[name].label
        pts = [pt for pt in batch["points"] if name in pt["peers"]] if batch else []
        if pts:
            ax_b.plot([pt["batch"] for pt in pts], [pt["peers"][name]["median_us"] for pt in pts],
                      "o-", ms=3, label=label)
        pts = [pt for pt in width["points"] if name in pt["peers"]] if width else []
        if pts:
            ax_w.plot([pt["layers"][0] for pt in pts], [pt["peers"][name]["gflops"] for pt in pts],
                      "o-", ms=3, label=label)
    if batch:
        pts = [pt for pt in batch["points"] if "fastmlp" in pt["peers"]]
        if pts:
            last = pts[-1]
            scale = last["peers"]["fastmlp"]["median_us"] / last["flops"]
            ns = [pt["batch"] for pt in batch["points"]]
            ax_b.plot(ns, [scale * pt["flops"] for pt in batch["points"]], "k--", lw=1,
                      label="∝ FLOPs (through fastmlp's largest batch)")
        ax_b.set_xscale("log", base=2)
        ax_b.xaxis.set_major_formatter(ScalarFormatter())
        ax_b.set_yscale("log")
        ax_b.set_xlabel("batch size (rows)")
        ax_b.set_ylabel("µs per training step")
        ax_b.set_title(f"time per step, {batch['layers']}")
        ax_b.legend(fontsize=8)
    if width:
        ax_w.set_xscale("log", base=2)
        ax_w.xaxis.set_major_formatter(ScalarFormatter())
        ax_w.set_ylim(bottom=0)
        ax_w.set_xlabel("width w of [w, w, w, 10]")
        ax_w.set_ylabel("GFLOP/s (6·n·Σ d_in·d_out per step)")
        ax_w.set_title(f"throughput, batch {width['batch']}")
        ax_w.legend(fontsize=8)
    env = report["env"]
    fig.suptitle(f"fastmlp scaling, {report['config']['dtype']}, {env['threads']} thread(s), "
                 f"{env['cpu'].get('model name', '?')}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ---------------------------------------------------------------------- CLI
def _int_list(text, name, ap):
    if text == "none":
        return []
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        values = [0]
    if not values or min(values) < 1:
        ap.error(f"{name}: expected a comma list of positive integers or 'none', got {text!r}")
    return values


def parse_args(argv):
    ap = argparse.ArgumentParser(prog="fastmlp bench --scaling", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true",
                    help="short run (< 30 s): batches up to 1024, widths up to 1024, "
                         "3 rounds of short blocks")
    ap.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    ap.add_argument("--peers", default=",".join(PEERS),
                    help=f"comma list of {', '.join(P.BY_NAME)} (default {','.join(PEERS)}; "
                         "those not installed are skipped)")
    ap.add_argument("--threads", type=int, default=1,
                    help="threads for every BLAS / OpenMP pool and torch (default 1)")
    ap.add_argument("--batches", help="comma list of batch sizes, or 'none' (default: "
                                      "1, 2, 4, ..., 4096; up to 1024 with --quick)")
    ap.add_argument("--widths", help="comma list of widths, or 'none' (default: 16, 32, ..., "
                                     "4096; up to 1024 with --quick)")
    ap.add_argument("--rounds", type=int,
                    help="rounds per point, at most (default 7, 3 with --quick); points "
                         "whose steps are slow get fewer, down to 3")
    ap.add_argument("--json", metavar="PATH", help="write every number and the environment")
    ap.add_argument("--plot", metavar="PATH", help="PNG chart, two panels (needs matplotlib)")
    args = ap.parse_args(argv)
    if args.plot:
        try:
            import matplotlib  # noqa: F401  (checked before the run, not after it)
        except ImportError:
            ap.error("--plot needs matplotlib: pip install matplotlib")
    cfg = dict(SETTINGS["quick" if args.quick else "full"])
    if args.batches is not None:
        cfg["batches"] = _int_list(args.batches, "--batches", ap)
    if args.widths is not None:
        cfg["widths"] = _int_list(args.widths, "--widths", ap)
    if args.rounds is not None:
        if args.rounds < 1:
            ap.error("--rounds: expected a positive integer")
        cfg["rounds"] = args.rounds
    args.cfg = cfg
    args.peers = [p.strip() for p in args.peers.split(",") if p.strip()]
    bad = [p for p in args.peers if p not in P.BY_NAME]
    if bad:
        ap.error(f"unknown peer(s) {bad}; choose from {list(P.BY_NAME)}")
    if args.threads < 1:
        ap.error("--threads: expected a positive integer")
    return args


def main(argv=None) -> int:
    """The command line; returns the exit status.  Thread limits are undone on return."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    undo_threads = harness.pin_threads(args.threads, args.peers)
    try:
        env = harness.environment(args.threads)
        print(harness.env_summary(env), flush=True)
        pause_s = harness.PAUSE_S if args.threads > 1 else 0.0
        dtype = np.dtype(args.dtype)
        report = {"env": env, "config": {**args.cfg, "dtype": dtype.name, "loss": LOSS,
                                         "peers": args.peers, "pause_s": pause_s,
                                         "flops": "6·n·Σ d_in·d_out per step"}}
        t_start, load = time.perf_counter(), harness.OtherLoad()
        if args.cfg["batches"]:
            report["batch"] = sweep("batch", args.cfg["batches"], dtype, args.peers, args.cfg,
                                    pause_s)
        if args.cfg["widths"]:
            report["width"] = sweep("width", args.cfg["widths"], dtype, args.peers, args.cfg,
                                    pause_s)
        report["elapsed_s"] = time.perf_counter() - t_start
        report["other_load_pct"] = load.percent()
    finally:
        undo_threads()
    for kind in ("batch", "width"):
        if kind in report:
            fixed = (f"layers {BATCH_LAYERS}" if kind == "batch"
                     else f"[w, w, w, 10], batch {WIDTH_BATCH}")
            print(f"\n{kind} sweep, {fixed}, {dtype.name}, {args.threads} thread(s)")
            print(table(kind, report[kind]))
    other = report["other_load_pct"]
    print(f"\n(benchmark time {report['elapsed_s']:.1f} s; other processes used "
          f"{'?' if other is None else f'{other:.0f}%'} of the CPUs meanwhile; "
          f"[load]: > {harness.BUSY_PCT}% during that point, (!): IQR > {harness.NOISY:.0%} "
          "of the median)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
        print(f"wrote {args.json}")
    if args.plot and ("batch" in report or "width" in report):
        plot(report, args.plot)
        print(f"wrote {args.plot}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
