"""Run the benchmark: ``fastmlp bench [--quick] [--dtype ...] [--workloads ...] ...``.

Each workload builds every available peer on the same data and starting weights, then
times them in one process, interleaved: after a warm-up, several rounds in which each peer
(in rotating order) runs one block of repeated calls; a block's time / calls is one sample.
The report gives the median and quartiles of the samples per peer, and the ratio
peer median / fastmlp median (> 1: fastmlp is faster).
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time

import numpy as np

from fastmlp.bench import peers as P
# Imported under their old names too: the harness was part of this module, and
# fastmlp.bench.memory (and code outside the package) still reaches it as run.make_data,
# run.pin_threads, run.environment, run.env_summary, ...
from fastmlp.bench.harness import (ALL_CPUS, BUSY_PCT, NOISY, PAUSE_S,  # noqa: F401
                                   OtherLoad, cpu_info, env_summary, environment, fmt_us,
                                   is_noisy, make_data, measure, pin_threads, pin_to_cpus,
                                   summarize, wait_for_idle)

CE, MSE = "softmax_cross_entropy", "mse"

# name: (layer sizes, batch size, loss, in --quick?)
WORKLOADS = {
    "online": ([16, 32, 1], 1, MSE, True),
    "tiny": ([16, 32, 1], 32, MSE, True),
    "small": ([64, 128, 128, 10], 64, CE, True),
    "mnist": ([784, 256, 128, 10], 128, CE, True),
    "wide": ([1024, 2048, 2048, 10], 1024, CE, False),
    "epoch": ([784, 256, 128, 10], 128, CE, True),   # one epoch of fit / a training loop
}
EPOCH_ROWS, EPOCH_ROWS_QUICK = 60_000, 6_000
EPOCH_PEERS = ("fastmlp", "numpy", "torch")

# (rounds, seconds per block, seconds of warm-up per peer)
SETTINGS = {"full": (15, 0.04, 0.3), "quick": (5, 0.008, 0.05)}
MAX_ROUNDS_SLOW = 7      # rounds at most for 'wide' and 'epoch', whose calls are long (3 quick)


# ---------------------------------------------------------------------- workloads
def run_workload(name, dtype, peer_names, settings, quick):
    sizes, batch, loss, _ = WORKLOADS[name]
    rounds, block_s, warmup_s, pause_s, pin = settings
    is_epoch = name == "epoch"
    rows = (EPOCH_ROWS_QUICK if quick else EPOCH_ROWS) if is_epoch else batch
    X, Y = make_data(rows, sizes, loss, dtype)
    result = {"workload": name, "dtype": np.dtype(dtype).name, "layers": sizes,
              "batch": batch, "loss": loss, "rows": rows,
              "unit": "us/epoch" if is_epoch else "us/step", "peers": {}, "skipped": {}}
    fns, before = {}, {}
    for pname in peer_names:
        cls = P.BY_NAME[pname]
        if is_epoch and pname not in EPOCH_PEERS:
            continue
        why = cls.available()
        if why:
            result["skipped"][pname] = why
            continue
        peer = cls()
        peer.setup(sizes, loss, dtype, X[:batch], Y[:batch])
        fns[pname] = (lambda p=peer: p.epoch(X, Y, batch)) if is_epoch else peer.step
        if hasattr(peer, "before_block"):
            before[pname] = peer.before_block
    if is_epoch or name == "wide":
        rounds = min(rounds, 3 if quick else MAX_ROUNDS_SLOW)
    load = OtherLoad()
    timed = measure(fns, rounds, block_s, warmup_s, pause_s, pin, before)
    result["other_load_pct"] = load.percent()
    base = summarize(timed["fastmlp"]["samples_us"]) if "fastmlp" in timed else None
    for pname, t in timed.items():
        s = summarize(t["samples_us"])
        s["ratio_vs_fastmlp"] = s["median_us"] / base["median_us"] if base else None
        s["ratio_of_mins_vs_fastmlp"] = s["min_us"] / base["min_us"] if base else None
        s.update(t, label=P.BY_NAME[pname].label, rounds=rounds)
        result["peers"][pname] = s
    return result


# ---------------------------------------------------------------------- output
def table(results) -> str:
    lines = ["| workload | dtype | peer | median µs | IQR µs | min–max µs | peer/fastmlp |",
             "|---|---|---|---:|---:|---:|---:|"]
    noisy = busy = False
    for res in results:
        wl = f"{res['workload']} {res['layers']} b={res['batch']}"
        if (res.get("other_load_pct") or 0) > BUSY_PCT:
            wl += f" [other load {res['other_load_pct']:.0f}%]"
            busy = True
        if res["unit"] == "us/epoch":
            wl += f" ({res['rows']:,} rows, µs/epoch)"
        for pname, s in res["peers"].items():
            ratio = f"{s['ratio_vs_fastmlp']:.2f}" if s["ratio_vs_fastmlp"] else "–"
            flag = " (!)" if is_noisy(s) else ""
            noisy = noisy or bool(flag)
            lines.append(f"| {wl} | {res['dtype']} | {pname} | {fmt_us(s['median_us'])} | "
                         f"{fmt_us(s['q1_us'])}–{fmt_us(s['q3_us'])}{flag} | "
                         f"{fmt_us(s['min_us'])}–{fmt_us(s['max_us'])} | {ratio} |")
        for pname, why in res["skipped"].items():
            lines.append(f"| {wl} | {res['dtype']} | {pname} | skipped: {why} | | | |")
    if busy:
        lines.append("\n[other load N%]: other processes used N% of the machine's CPU time "
                     "during that workload; its numbers are not a clean measurement")
    if noisy:
        lines.append(f"\n(!) interquartile range > {NOISY:.0%} of the median: the machine was "
                     "noisy during that workload; rerun it, or compare with --threads 1 "
                     "(see bench/README.md)")
    return "\n".join(lines)


def plot(results, path) -> bool:
    import matplotlib      # parse_args has checked that it is installed
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    groups = [r for r in results if r["peers"].get("fastmlp")]
    others = [p.name for p in P.ALL if p.name != "fastmlp"]
    fig, ax = plt.subplots(figsize=(max(6, 1.3 * len(groups)), 4.5))
    width = 0.8 / len(others)
    for j, pname in enumerate(others):
        xs, ys = [], []
        for i, r in enumerate(groups):
            if pname in r["peers"]:
                xs.append(i + (j - (len(others) - 1) / 2) * width)
                ys.append(r["peers"][pname]["ratio_vs_fastmlp"])
        if xs:
            ax.bar(xs, ys, width, label=P.BY_NAME[pname].label)
    ax.axhline(1.0, color="black", lw=1)
    ax.set_yscale("log")
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels([f"{r['workload']}\n{r['dtype']}" for r in groups])
    ax.set_ylabel("peer time / fastmlp time  (> 1: fastmlp faster)")
    ax.set_title("fastmlp speed-up per training step")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


# Benchmarks run instead of the workloads when their flag is given: flag -> (module of
# fastmlp.bench, name, what it measures).
SEPARATE_BENCHMARKS = {
    "--threads-scaling": ("threadscaling", "thread-scaling",
                          "each pass of a step at 1 and 2 threads, projected to 8-64 cores"),
    "--scaling": ("scaling", "scaling", "time per step against batch size and width"),
    "--sharing": ("sharing", "sharing", "fastmlp beside numpy, scipy and PyTorch in one "
                  "process; each case in a fresh process"),
    "--serving": ("serving", "serving", "one-row and batch predictions through the "
                  "estimators, against MLP.forward, scikit-learn and onnxruntime"),
    "--fit-overhead": ("fitcost", "fit-overhead",
                       "the estimators' fits against MLP.fit and their GEMMs"),
    "--stack": ("stacking", "stack", "MLPStack against the same small models fitted one "
                "by one"),
    "--search": ("search", "search", "fastmlp's GridSearchCV against scikit-learn's, on "
                 "scikit-learn's and fastmlp's estimators"),
}


# ---------------------------------------------------------------------- CLI
def parse_args(argv):
    ap = argparse.ArgumentParser(prog="fastmlp bench", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true",
                    help="short run (< 60 s): fewer, shorter rounds; no 'wide'; "
                         f"'epoch' on {EPOCH_ROWS_QUICK:,} rows")
    ap.add_argument("--dtype", choices=("float32", "float64", "both"), default="float32")
    ap.add_argument("--workloads", default="all",
                    help=f"comma list of {', '.join(WORKLOADS)}; 'all' (default) or 'none'")
    ap.add_argument("--peers", default="all",
                    help=f"comma list of {', '.join(P.BY_NAME)} (default all available)")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                    help="threads for every BLAS / OpenMP pool and torch (default: all CPUs)")
    ap.add_argument("--pin", action="store_true",
                    help="pin the main thread to one CPU and the BLAS / OpenMP worker threads "
                         "to the others (off by default: libraries as users get them)")
    ap.add_argument("--rounds", type=int, help="override the number of rounds")
    ap.add_argument("--wait-idle", type=float, default=0, metavar="SECONDS",
                    help="before each workload, wait up to SECONDS for other processes to "
                         "leave the CPUs idle (for shared machines)")
    ap.add_argument("--kernels", action="store_true",
                    help="also micro-benchmark each fastmlp.kernels function against numpy")
    ap.add_argument("--json", metavar="PATH", help="write every number and the environment")
    ap.add_argument("--plot", metavar="PATH", help="PNG chart of the ratios (needs matplotlib)")
    for flag, (module, name, what) in SEPARATE_BENCHMARKS.items():
        ap.add_argument(flag, action="store_true",
                        help=f"run the {name} benchmark instead ({what}); its options: "
                             f"fastmlp bench {flag} --help")
    args = ap.parse_args(argv)
    if args.plot:
        try:
            import matplotlib  # noqa: F401  (checked before the run, not after minutes of it)
        except ImportError:
            ap.error("--plot needs matplotlib: pip install matplotlib")
    if args.workloads == "all":
        args.workloads = [w for w, spec in WORKLOADS.items() if spec[3] or not args.quick]
    elif args.workloads == "none":
        args.workloads = []
    else:
        args.workloads = [w.strip() for w in args.workloads.split(",") if w.strip()]
        bad = [w for w in args.workloads if w not in WORKLOADS]
        if bad:
            ap.error(f"unknown workload(s) {bad}; choose from {list(WORKLOADS)}")
    if args.peers == "all":
        args.peers = [p.name for p in P.ALL]
    else:
        args.peers = [p.strip() for p in args.peers.split(",") if p.strip()]
        bad = [p for p in args.peers if p not in P.BY_NAME]
        if bad:
            ap.error(f"unknown peer(s) {bad}; choose from {list(P.BY_NAME)}")
    return args


def main(argv=None) -> int:
    """The command line; returns the exit status.  Thread limits are undone on return."""
    argv = sys.argv[1:] if argv is None else list(argv)
    for flag, (module, _, _) in SEPARATE_BENCHMARKS.items():   # each has options of its own
        if flag in argv:
            bench = importlib.import_module(f"fastmlp.bench.{module}")
            return bench.main([a for a in argv if a != flag])
    args = parse_args(argv)
    undo_threads = pin_threads(args.threads, args.peers)
    try:
        report = benchmark(args, argv)
    finally:
        undo_threads()
        pin_to_cpus(False)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
        print(f"wrote {args.json}")
    if args.plot and report["results"] and plot(report["results"], args.plot):
        print(f"wrote {args.plot}")
    return 0


def benchmark(args, argv) -> dict:
    """Run what ``args`` selects, print the tables, return the whole report."""
    env = environment(args.threads)
    print(env_summary(env), flush=True)
    mode = "quick" if args.quick else "full"
    rounds, block_s, warmup_s = SETTINGS[mode]
    # No BLAS worker threads spin between blocks, or need pinning, with only one thread.
    pause_s = PAUSE_S if args.threads > 1 else 0.0
    pin = args.threads > 1 and args.pin and len(ALL_CPUS) > 1
    settings = (args.rounds or rounds, block_s, warmup_s, pause_s, pin)
    dtypes = ["float32", "float64"] if args.dtype == "both" else [args.dtype]
    report = {"env": env, "config": {"mode": mode, "rounds": settings[0], "block_s": block_s,
                                     "warmup_s": warmup_s, "pause_s": pause_s, "dtypes": dtypes,
                                     "pinned": pin and f"main thread → CPU {ALL_CPUS[0]}, "
                                                       f"other threads → CPUs {ALL_CPUS[1:]}",
                                     "workloads": args.workloads, "peers": args.peers,
                                     "lr": P.LR, "argv": argv if argv is not None else sys.argv[1:]},
              "results": []}
    t_start, load = time.perf_counter(), OtherLoad()
    for dtype in dtypes:
        for wl in args.workloads:
            if args.wait_idle:
                wait_for_idle(args.wait_idle)
            t0 = time.perf_counter()
            res = run_workload(wl, np.dtype(dtype), args.peers, settings, args.quick)
            report["results"].append(res)
            print(f"  {wl} {dtype}: {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
    if report["results"]:
        print()
        print(table(report["results"]))
    if args.kernels:
        from fastmlp.bench import kernels as K
        report["kernels"] = K.run(dtypes, settings)
        print()
        print(K.table(report["kernels"]))
    report["elapsed_s"] = time.perf_counter() - t_start
    report["other_load_pct"] = load.percent()
    other = report["other_load_pct"]
    print(f"\n(benchmark time {report['elapsed_s']:.1f} s; other processes used "
          f"{'?' if other is None else f'{other:.0f}%'} of the CPUs meanwhile)")
    return report


if __name__ == "__main__":
    raise SystemExit(main())
