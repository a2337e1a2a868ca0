"""Sharing the machine (issue #11): fastmlp beside the user's numpy, scipy and PyTorch.

    fastmlp bench --sharing [--quick] [--cases a,b] [--rounds N] [--json PATH]
    python -m fastmlp.bench.sharing [the same options]

Each case runs in a fresh Python process (thread pools, and which of them have spun up,
are per process), with the default thread settings a user gets; the process times its
callables with fastmlp.bench.harness (warm-up, interleaved rounds of blocks, medians) and
prints one JSON line.  Cases (all float32 unless named float64):

  numpy-fastmlp-*   a loop alternating numpy ``X @ P`` (128×784 · 784×784) and one
                    ``MLP.train_step`` of [784, 256, 128, 10] on 128 rows, against the sum
                    of the two alone (target ≤ 1.2)
  numpy-torch-*     the same with PyTorch's step (peers.TorchPeer) instead: the anchor
  scipy-fastmlp-*   the same with ``scipy.linalg.blas.sgemm/dgemm`` on Fortran-ordered
                    arrays (no copy) instead of numpy's product (target ≤ 1.2)
  lbfgs-*           ``MLPClassifier/MLPRegressor(solver="lbfgs")`` fits on scikit-learn's
                    small data sets, standardized: fastmlp against scikit-learn
                    (breast_cancer: ≥ 8× faster) and scikit-learn at one thread, and
                    fastmlp by default against fastmlp with every pool at one thread
                    (threadpoolctl ``limit(1)``; ≤ 1.0).  scikit-learn is imported before
                    fastmlp, except in the ``-fastmlp-first`` cases
  two-threads       ``MLP.fit`` (1 epoch, 12,000 rows) of two models in two Python threads
                    against one after the other (≤ 1.0)
  epoch             one epoch of ``MLP.fit`` on 60,000 rows against the GEMMs of that
                    epoch alone (peers.GemmsPeer, numpy matmul into preallocated arrays,
                    on one cached batch; ≤ 1.1), and against the same GEMMs reading the
                    epoch's rows of X in order (the data set read once, no shuffle)

OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE, if set, are removed from the cases' environment
only (bench/README.md, "OPENBLAS_CORETYPE"); the report says so.  Every case's process
imports fastmlp, since the benchmark lives in it; libraries a case does not call stay idle.
bench/README.md, "Threads", explains the cases and the results.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time

import numpy as np

from fastmlp.bench import harness
from fastmlp.bench import peers as P

MNIST = [784, 256, 128, 10]
CE = "softmax_cross_entropy"
BATCH = 128
P_SIDE = 784          # the user's product X @ P: (BATCH, 784) · (784, 784)
UNSET = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")

# name: (kind, options, in --quick?)
CASES = {
    **{f"{other}-{step}-{dt}": ("loop", {"other": other, "step": step, "dtype": dt},
                                dt == "float32")
       for other, step in (("numpy", "fastmlp"), ("numpy", "torch"), ("scipy", "fastmlp"))
       for dt in ("float32", "float64")},
    "lbfgs-breast_cancer": ("lbfgs", {"data": "breast_cancer", "speedup": 8.0,
                                      "first": "sklearn.neural_network"}, True),
    "lbfgs-diabetes": ("lbfgs", {"data": "diabetes", "speedup": None,
                                 "first": "sklearn.neural_network"}, False),
    "lbfgs-digits": ("lbfgs", {"data": "digits", "speedup": None,
                               "first": "sklearn.neural_network"}, False),
    # The same with fastmlp imported first: the order changes the times (README, "Threads").
    "lbfgs-breast_cancer-fastmlp-first": ("lbfgs", {"data": "breast_cancer", "speedup": 8.0},
                                          False),
    "lbfgs-digits-fastmlp-first": ("lbfgs", {"data": "digits", "speedup": None}, False),
    "two-threads": ("threads", {"rows": 12_000, "rows_quick": 1_200}, True),
    "epoch": ("epoch", {"rows": 60_000, "rows_quick": 6_000}, True),
}
# (rounds, seconds per block, seconds of warm-up per callable); cases whose calls take
# 0.1-1 s (lbfgs, two-threads, epoch) get SLOW_ROUNDS at most.
SETTINGS = {"full": (11, 0.04, 0.3), "quick": (3, 0.008, 0.05)}
SLOW_ROUNDS = {"full": 7, "quick": 3}
TIMEOUT_S = 600


# ---------------------------------------------------------------------- the cases
# Each builder runs in the case's process and returns (fns, before, comparisons, labels):
# the callables to time, what runs untimed before a callable's blocks, and the ratios to
# report as {label, baseline: [names whose medians add up], measured: name, target, sense}.

def _loop(opt, quick):
    dtype = np.dtype(opt["dtype"])
    X, Y = harness.make_data(BATCH, MNIST, CE, dtype)
    Pm = np.random.default_rng(1).standard_normal((P_SIDE, P_SIDE)).astype(dtype)
    if opt["other"] == "numpy":
        def other():
            return X @ Pm
        other_label = "numpy X@P"
    else:
        from scipy.linalg import blas as sblas
        gemm = sblas.sgemm if dtype == np.float32 else sblas.dgemm
        Xf, Pf = np.asfortranarray(X), np.asfortranarray(Pm)   # scipy copies C-ordered input

        def other():
            return gemm(1.0, Xf, Pf)
        other_label = "scipy " + ("sgemm" if dtype == np.float32 else "dgemm")
    peer = (P.TorchPeer if opt["step"] == "torch" else P.FastmlpPeer)()
    peer.setup(MNIST, CE, dtype, X, Y)
    step = peer.step

    def together():
        other()
        step()
    fns = {"other": other, "step": step, "together": together}
    labels = {"other": other_label, "step": f"{peer.label}", "together": "interleaved"}
    target = None if opt["step"] == "torch" else 1.2
    return fns, {}, [{"label": "together / (other + step alone)", "baseline": ["other", "step"],
                      "measured": "together", "target": target, "sense": "<="}], labels


def _lbfgs(opt, quick):
    import warnings

    from sklearn import datasets
    from sklearn import neural_network as sk
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.preprocessing import StandardScaler
    from threadpoolctl import ThreadpoolController

    import fastmlp
    warnings.filterwarnings("ignore", category=ConvergenceWarning)   # both hit max_iter
    X, y = getattr(datasets, f"load_{opt['data']}")(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    kind = "MLPRegressor" if opt["data"] == "diabetes" else "MLPClassifier"
    if kind == "MLPRegressor":
        y = (y - y.mean()) / y.std()
    ours, theirs = getattr(fastmlp, kind), getattr(sk, kind)
    kw = {"solver": "lbfgs", "random_state": 0}
    controller = ThreadpoolController()      # after fastmlp's import: sees its limit too
    limiter = []

    def one_thread():
        if not limiter:
            limiter.append(controller.limit(limits=1))

    def default_threads():
        while limiter:
            limiter.pop().restore_original_limits()

    fns = {"fastmlp": lambda: ours(**kw).fit(X, y),
           "fastmlp-1": lambda: ours(**kw).fit(X, y),
           "sklearn": lambda: theirs(**kw).fit(X, y),
           "sklearn-1": lambda: theirs(**kw).fit(X, y)}
    before = {"fastmlp": default_threads, "fastmlp-1": one_thread, "sklearn": default_threads,
              "sklearn-1": one_thread}
    labels = {"fastmlp": f"fastmlp {kind}", "fastmlp-1": "fastmlp, all pools 1 thread",
              "sklearn": f"scikit-learn {kind}", "sklearn-1": "scikit-learn, 1 thread"}
    return fns, before, [
        {"label": "scikit-learn at 1 thread / fastmlp", "baseline": ["fastmlp"],
         "measured": "sklearn-1", "target": None, "sense": ">="},
        {"label": "scikit-learn / fastmlp (speed-up)", "baseline": ["fastmlp"],
         "measured": "sklearn", "target": opt["speedup"], "sense": ">="},
        {"label": "fastmlp / fastmlp at 1 thread", "baseline": ["fastmlp-1"],
         "measured": "fastmlp", "target": 1.0, "sense": "<="}], labels


def _threads(opt, quick):
    import fastmlp
    rows = opt["rows_quick" if quick else "rows"]
    X, Y = harness.make_data(rows, MNIST, CE, np.float32)
    nets = [fastmlp.MLP(MNIST, loss=CE, dtype=np.float32, seed=s) for s in (0, 1)]

    def fit(net, errors):
        try:
            net.fit(X, Y, epochs=1, batch_size=BATCH, lr=P.LR)
        except BaseException as exc:    # re-raised in the calling thread
            errors.append(exc)

    def serial():
        errors = []
        for net in nets:
            fit(net, errors)
        if errors:
            raise errors[0]

    def threaded():
        errors = []
        workers = [threading.Thread(target=fit, args=(net, errors)) for net in nets]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        if errors:
            raise errors[0]
    labels = {"serial": f"2 fits of {rows:,} rows, one after the other",
              "threaded": "2 fits in 2 Python threads"}
    return {"serial": serial, "threaded": threaded}, {}, [
        {"label": "threaded / serial", "baseline": ["serial"], "measured": "threaded",
         "target": 1.0, "sense": "<="}], labels


def _epoch(opt, quick):
    rows = opt["rows_quick" if quick else "rows"]
    X, Y = harness.make_data(rows, MNIST, CE, np.float32)
    fit = P.FastmlpPeer()
    fit.setup(MNIST, CE, np.float32, X[:BATCH], Y[:BATCH])
    full, rest = divmod(rows, BATCH)
    # the epoch's batches: `full` of BATCH rows, one of `rest`; a second set for the
    # products that read X, whose A(0) moves
    gemms, on_rows = [], []
    for n in (BATCH, rest) if rest else (BATCH,):
        for peers in (gemms, on_rows):
            peers.append(P.GemmsPeer())
            peers[-1].setup(MNIST, CE, np.float32, X[:n], Y[:n])

    def epoch_gemms():
        for _ in range(full):
            gemms[0].step()
        if rest:
            gemms[1].step()

    def epoch_gemms_on_rows():
        # the same products with A(0) each batch's rows of X in turn (views, no copy): the
        # data set is read once, as any epoch must, but in order, without a shuffle
        for start in range(0, rows, BATCH):
            g = on_rows[0] if start + BATCH <= rows else on_rows[1]
            g.acts[0] = X[start:start + BATCH]
            g.step()
    labels = {"fit": f"MLP.fit, 1 epoch of {rows:,} rows", "gemms": "the epoch's GEMMs alone",
              "gemms_rows": "the same GEMMs reading the epoch's rows of X"}
    return {"fit": lambda: fit.epoch(X, Y, BATCH), "gemms": epoch_gemms,
            "gemms_rows": epoch_gemms_on_rows}, {}, [
        {"label": "fit / GEMMs", "baseline": ["gemms"], "measured": "fit", "target": 1.1,
         "sense": "<="},
        {"label": "fit / GEMMs reading X", "baseline": ["gemms_rows"], "measured": "fit",
         "target": None, "sense": "<="}], labels


BUILDERS = {"loop": _loop, "lbfgs": _lbfgs, "threads": _threads, "epoch": _epoch}


def ratios(comparison, stats) -> dict:
    """The comparison's ratio, paired by round: measured / sum of the baselines within each
    round (a round's blocks run back to back, so a slow spell of the machine or a change of
    clock speed cancels), its median and quartiles over the rounds; the ratio of the
    medians too; and whether the target is met: "yes", "no", or "within noise" (missed by
    the median, inside the quartiles)."""
    meas = stats[comparison["measured"]]
    per_round = [m / sum(b) for m, *b in zip(meas["samples_us"], *(
        stats[n]["samples_us"] for n in comparison["baseline"]))]
    q1, ratio, q3 = (float(x) for x in np.percentile(per_round, [25, 50, 75]))
    target, met = comparison["target"], None
    if target is not None:
        ok = ratio <= target if comparison["sense"] == "<=" else ratio >= target
        met = "yes" if ok else "within noise" if q1 <= target <= q3 else "no"
    of_medians = meas["median_us"] / sum(stats[n]["median_us"] for n in comparison["baseline"])
    return {"ratio": ratio, "ratio_q1": q1, "ratio_q3": q3, "ratio_of_medians": of_medians,
            "ratios_per_round": per_round, "met": met}


def _child(config_json: str) -> None:
    """Body of a case's process: prints one JSON line."""
    import fastmlp
    cfg = json.loads(config_json)
    kind, opt, _ = CASES[cfg["case"]]
    fns, before, comparisons, labels = BUILDERS[kind](opt, cfg["quick"])
    # The pools as the case found them (the lbfgs case changes limits between blocks).
    env = harness.environment(fastmlp.get_num_threads())
    load = harness.OtherLoad()
    timed = harness.measure(fns, cfg["rounds"], cfg["block_s"], cfg["warmup_s"],
                            harness.PAUSE_S, before=before)
    other_load = load.percent()
    stats = {}
    for name, t in timed.items():
        stats[name] = harness.summarize(t["samples_us"])
        stats[name].update(t, label=labels[name])
    print(json.dumps({
        "stats": stats, "comparisons": [{**c, **ratios(c, stats)} for c in comparisons],
        "other_load_pct": other_load, "rounds": cfg["rounds"],
        "blas": {"current": fastmlp.blas.current(), "serial": fastmlp.blas.serial(),
                 "thread_limit": fastmlp.get_num_threads()},
        "threadpools": env["threadpools"], "torch_threads": env.get("torch_threads"),
        "modules": sorted(m for m in ("torch", "sklearn", "scipy.linalg", "threadpoolctl")
                          if m in sys.modules)}))


# ---------------------------------------------------------------------- the parent
def run_case(name: str, quick: bool, rounds: int | None) -> dict:
    """Run case ``name`` in a fresh Python process; returns its report."""
    kind = CASES[name][0]
    mode = "quick" if quick else "full"
    r, block_s, warmup_s = SETTINGS[mode]
    if kind != "loop":
        r = min(r, SLOW_ROUNDS[mode])
    cfg = {"case": name, "quick": quick, "rounds": rounds or r, "block_s": block_s,
           "warmup_s": warmup_s}
    # A module named "first" is imported before fastmlp: the order of the user's script,
    # which matters (bench/README.md, "Threads").
    env = {k: v for k, v in os.environ.items() if k not in UNSET}
    t0 = time.perf_counter()
    out = json.loads(harness.run_child(
        "from fastmlp.bench.sharing import _child; _child(sys.argv[1])", (json.dumps(cfg),),
        env=env, timeout=TIMEOUT_S, before=CASES[name][1].get("first") or ""))
    out.update(case=name, config=cfg, elapsed_s=time.perf_counter() - t0)
    return out


def _ms(us: float) -> str:
    return f"{us / 1e3:,.2f}" if us < 1e5 else f"{us / 1e3:,.0f}"


def table(cases) -> str:
    """Markdown table: one row per comparison of every case."""
    lines = ["| case | baseline ms | measured ms | ratio (IQR) | ratio of medians | target "
             "| met? |", "|---|---|---|---:|---:|---:|---|"]
    for c in cases:
        st = c["stats"]
        busy = (c.get("other_load_pct") or 0) > harness.BUSY_PCT
        name = c["case"] + (f" [other load {c['other_load_pct']:.0f}%]" if busy else "")
        for cmp in c["comparisons"]:
            base = " + ".join(f"{st[n]['label']} {_ms(st[n]['median_us'])}"
                              for n in cmp["baseline"])
            meas = st[cmp["measured"]]
            target = "–" if cmp["target"] is None else f"{cmp['sense']} {cmp['target']:g}"
            lines.append(f"| {name}: {cmp['label']} | {base} | {meas['label']} "
                         f"{_ms(meas['median_us'])} | {cmp['ratio']:.2f} "
                         f"({cmp['ratio_q1']:.2f}–{cmp['ratio_q3']:.2f}) | "
                         f"{cmp['ratio_of_medians']:.2f} | {target} | "
                         f"{cmp['met'] or '–'} |")
    return "\n".join(lines)


def parse_args(argv):
    ap = argparse.ArgumentParser(prog="fastmlp bench --sharing", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true",
                    help="short run: 3 rounds of short blocks, fewer cases "
                         f"({', '.join(n for n, c in CASES.items() if c[2])}), smaller data")
    ap.add_argument("--cases", default="all",
                    help=f"comma list of {', '.join(CASES)}; default all (the --quick ones "
                         "with --quick)")
    ap.add_argument("--rounds", type=int, help="override the number of rounds of every case")
    ap.add_argument("--json", metavar="PATH", help="write every number and the environment")
    args = ap.parse_args(argv)
    if args.cases == "all":
        args.cases = [n for n, c in CASES.items() if c[2] or not args.quick]
    else:
        args.cases = [c.strip() for c in args.cases.split(",") if c.strip()]
        bad = [c for c in args.cases if c not in CASES]
        if bad:
            ap.error(f"unknown case(s) {bad}; choose from {list(CASES)}")
    if args.rounds is not None and args.rounds < 1:
        ap.error("--rounds: expected a positive integer")
    return args


def _skip_reason(name: str) -> str | None:
    kind, opt, _ = CASES[name]
    needs = ["torch"] if opt.get("step") == "torch" else \
        ["sklearn", "threadpoolctl"] if kind == "lbfgs" else []
    for module in needs:
        try:
            __import__(module)
        except ImportError:
            return f"{module} is not installed"
    return None


def main(argv=None) -> int:
    """The command line; returns the exit status."""
    import fastmlp
    args = parse_args(sys.argv[1:] if argv is None else argv)
    env = harness.environment(fastmlp.get_num_threads())
    env["blas"] = {"current": fastmlp.blas.current(), "serial": fastmlp.blas.serial(),
                   "thread_limit": fastmlp.get_num_threads()}
    env["loadavg_at_start"] = os.getloadavg()
    # What else steers the pools (OPENBLAS_THREAD_TIMEOUT, OMP_WAIT_POLICY, ...) reaches
    # the cases through the environment.
    env["thread_env"] = {k: v for k, v in os.environ.items()
                         if k.startswith(("OPENBLAS_", "OMP_", "GOMP_", "MKL_"))}
    unset = {k: os.environ[k] for k in UNSET if k in os.environ}
    print(harness.env_summary(env))
    print(f"fastmlp BLAS: {env['blas']['current']} (small products: {env['blas']['serial']}), "
          f"thread limit {env['blas']['thread_limit']}; load average {env['loadavg_at_start']}")
    if env["thread_env"]:
        print("thread settings from the environment: " +
              ", ".join(f"{k}={v}" for k, v in env["thread_env"].items()))
    if unset:
        print(f"{', '.join(f'{k}={v}' for k, v in unset.items())} set here: unset inside "
              "each case's process only")
    report = {"env": env, "openblas_unset_in_cases": unset, "cases": [], "skipped": {}}
    t_start = time.perf_counter()
    for name in args.cases:
        why = _skip_reason(name)
        if why:
            report["skipped"][name] = why
            print(f"  {name}: skipped ({why})", file=sys.stderr, flush=True)
            continue
        case = run_case(name, args.quick, args.rounds)
        report["cases"].append(case)
        print(f"  {name}: {case['elapsed_s']:.1f} s", file=sys.stderr, flush=True)
    report["elapsed_s"] = time.perf_counter() - t_start
    # Each case measures the others' load itself: seen from here, the cases are the others.
    loads = [c["other_load_pct"] for c in report["cases"] if c["other_load_pct"] is not None]
    report["other_load_pct_max"] = max(loads) if loads else None
    report["env"]["loadavg_at_end"] = os.getloadavg()
    print()
    print(table(report["cases"]))
    for name, why in report["skipped"].items():
        print(f"{name}: skipped, {why}")
    other = report["other_load_pct_max"]
    print(f"\n(benchmark time {report['elapsed_s']:.1f} s; other processes used at most "
          f"{'?' if other is None else f'{other:.0f}%'} of the CPUs during a case; ratio: median "
          "over the rounds of measured / baseline within the round, and its interquartile "
          "range; 'within noise': missed by the median, inside that range)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
