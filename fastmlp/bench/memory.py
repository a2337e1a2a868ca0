"""Memory of training: what steady-state steps and epochs allocate, and the peak of ``fit``
against the least memory minibatch SGD needs.

    python -m fastmlp.bench.memory [--workloads wide,mnist] [--json PATH]

Workloads (softmax cross-entropy, float32, SGD, 4,096 rows of synthetic data):
  wide   [1024, 2048, 2048, 10], batch 1024;   mnist  [784, 256, 128, 10], batch 128.

(a) Steady state, in this process, under tracemalloc (which sees numpy's data buffers as
    well as Python objects): after warm-up, for each ``train_step`` (up to 100; fewer
    when they are slow) and each further one-epoch ``fit`` call:
      peak      the most traced memory above its level before the call, during the call;
      retained  the traced memory, and the number of blocks, still allocated after all
                the calls (a leak of one object per call would leave ≥ calls blocks).
    tracemalloc cannot count allocations that are freed again within the call; 'peak'
    bounds the size of those alive at any one time.
(b) Peak of ``fit`` (2 epochs), in a fresh process: the growth of the resident set
    (VmHWM, the kernel's high-water mark, reset just before ``fit``) and of the traced
    memory, both from before the model was built (so its parameters and gradients are
    included; the data set and the transient draws of the initial weights are not),
    divided by the bound of ``bound_parts``.  The issue's target is a ratio ≤ 1.2.
    The traced peak counts what is allocated, the resident set only pages written to:
    with plain SGD fastmlp folds the update into the weight GEMM and never writes the
    weight gradients, whose pages therefore never become resident.  The kernel counts
    resident pages in per-CPU batches (Linux ≥ 6.2: up to 32 pages a CPU), so RSS figures
    are exact only to a few hundred KiB.
"""
from __future__ import annotations

import argparse
import functools
import gc
import json
import os
import sys
import threading
import time
import tracemalloc

import numpy as np

from fastmlp._core import Layout
from fastmlp.bench import harness, run

LOSS = "softmax_cross_entropy"
LR = 0.01
ROWS = 4096
# name: (layer sizes, batch size)
WORKLOADS = {"wide": ([1024, 2048, 2048, 10], 1024), "mnist": ([784, 256, 128, 10], 128)}
WARMUP_STEPS = 2
MAX_CALLS, MIN_CALLS, MAX_CALL_S = 100, 2, 3.0   # calls of (a), cut to ~MAX_CALL_S seconds
FIT_EPOCHS = 2
MIB = 2.0 ** 20


def bound_parts(layer_sizes, batch: int, itemsize: int) -> dict:
    """The least memory minibatch SGD needs, in bytes, by part (model dtype throughout):

    parameters   Σ (d_in·d_out + d_out): every W(l) and b(l)
    gradients    as many again
    activations  A(0), ..., A(L) of one batch, n·Σ_{l=0..L} d_l: A(0) is the batch of
                 inputs, which backpropagation needs for dW(1) = A(0)ᵀ·Δ(1) and which
                 ``fit`` must gather from the shuffled rows
    deltas       Δ(1), ..., Δ(L) of one batch, n·Σ_{l=1..L} d_l

    Not counted: the data set, the batch's targets, optimizer state (none for SGD), the
    epoch's permutation of the rows.
    """
    n_params = Layout(layer_sizes).n_params
    return {"parameters": n_params * itemsize, "gradients": n_params * itemsize,
            "activations": batch * sum(layer_sizes) * itemsize,
            "deltas": batch * sum(layer_sizes[1:]) * itemsize}


# ---------------------------------------------------------------------- (a) steady state
_OWN_FILES = (tracemalloc.__file__, __file__)


def _traced_blocks() -> int:
    """Blocks tracemalloc holds now, less the measuring code's own (snapshots, loop
    variables).  Compared by file name: tracemalloc.Filter would fill fnmatch's cache,
    itself traced, on first use."""
    stats = tracemalloc.take_snapshot().statistics("filename")
    return sum(s.count for s in stats if s.traceback[0].filename not in _OWN_FILES)


def traced_allocations(call, max_calls=MAX_CALLS, max_s=MAX_CALL_S, min_calls=MIN_CALLS) -> dict:
    """Run ``call()`` up to ``max_calls`` times (stopping after ``max_s`` seconds once
    ``min_calls`` are done) under tracemalloc; returns the peak above the level before each
    call (max and median over calls) and the bytes and blocks still allocated after all
    the calls.  The caller warms ``call`` up first: only the steady state is measured."""
    peaks = np.zeros(max_calls, dtype=np.int64)   # preallocated: recording keeps nothing
    gc.collect()
    tracemalloc.start()
    try:
        deadline = time.perf_counter() + max_s
        done = 0
        blocks0 = _traced_blocks()
        gc.collect()         # taking a snapshot leaves garbage in reference cycles
        mem0 = tracemalloc.get_traced_memory()[0]
        while done < max_calls:
            base = tracemalloc.get_traced_memory()[0]
            tracemalloc.reset_peak()
            call()
            peaks[done] = tracemalloc.get_traced_memory()[1] - base
            done += 1
            if done >= min_calls and time.perf_counter() > deadline:
                break
        gc.collect()
        mem1 = tracemalloc.get_traced_memory()[0]
        blocks = _traced_blocks() - blocks0
    finally:
        tracemalloc.stop()
    return {"calls": done, "peak_bytes": int(peaks[:done].max()),
            "median_peak_bytes": float(np.median(peaks[:done])),
            "retained_bytes": mem1 - mem0, "retained_blocks": blocks}


def steady_state(layer_sizes, batch, rows=ROWS, dtype=np.float32, max_calls=MAX_CALLS,
                 max_s=MAX_CALL_S) -> dict:
    """(a): allocations of steady-state ``train_step`` calls and of one-epoch ``fit`` calls
    after the first, on one model."""
    import fastmlp
    X, Y = run.make_data(rows, layer_sizes, LOSS, dtype)
    net = fastmlp.MLP(layer_sizes, loss=LOSS, dtype=dtype, seed=0)
    Xb, Yb = X[:batch], Y[:batch]            # C-contiguous views: train_step's fast path
    for _ in range(WARMUP_STEPS):            # the first allocates the workspace
        net.train_step(Xb, Yb, LR)
    step = traced_allocations(functools.partial(net.train_step, Xb, Yb, LR), max_calls, max_s)
    epoch = functools.partial(net.fit, X, Y, 1, batch, LR)
    epoch()                                  # the first allocates the gather buffers
    fit = traced_allocations(epoch, max_calls, max_s)
    return {"train_step": step, "fit_epoch": fit, "permutation_bytes": 8 * rows}


# ---------------------------------------------------------------------- (b) peak of fit
def _status_bytes(field: str):
    """A field of /proc/self/status (given in kB there) in bytes, or None."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


class PeakRSS:
    """Peak resident set size (bytes) while the ``with`` block runs.

    Resets the kernel's high-water mark VmHWM by writing 5 to /proc/self/clear_refs
    (Linux ≥ 4.0) and reads it afterwards: no thread, and no short peak missed.  Where
    that file cannot be written, a thread samples VmRSS every millisecond instead (``fit``
    releases the GIL, so it runs); ``method`` says which, ``peak`` is None without /proc.
    """

    def __enter__(self):
        self.peak, self._stop = None, threading.Event()
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            self.method = "VmHWM reset through /proc/self/clear_refs"
        except OSError:
            self.method = "VmRSS sampled every 1 ms"
            self._max = _status_bytes("VmRSS") or 0
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self):
        while not self._stop.wait(0.001):
            self._max = max(self._max, _status_bytes("VmRSS") or 0)

    def __exit__(self, *exc):
        if self.method.startswith("VmHWM"):
            self.peak = _status_bytes("VmHWM")
        else:
            self._stop.set()
            self._thread.join()
            self.peak = max(self._max, _status_bytes("VmRSS") or 0) or None
        return False


def _fit_child(config_json: str) -> None:
    """Body of the subprocess of ``fit_peak``: prints one JSON line."""
    import fastmlp
    cfg = json.loads(config_json)
    sizes, batch, dtype = cfg["layers"], cfg["batch"], np.dtype(cfg["dtype"])
    X, Y = run.make_data(cfg["rows"], sizes, LOSS, dtype)
    # A throwaway model of the same shape first: BLAS touches its packing buffers, and
    # Python imports what fit needs, on first use; neither is fit's memory.
    warm = fastmlp.MLP(sizes, loss=LOSS, dtype=dtype, seed=1)
    warm.fit(X[:batch], Y[:batch], epochs=1, batch_size=batch, lr=LR)
    del warm
    gc.collect()
    tracemalloc.start()
    rss0, traced0 = _status_bytes("VmRSS"), tracemalloc.get_traced_memory()[0]
    net = fastmlp.MLP(sizes, loss=LOSS, dtype=dtype, seed=0)
    gc.collect()
    model_traced = tracemalloc.get_traced_memory()[0] - traced0
    tracemalloc.reset_peak()         # forget the transient float64 draws of the weights
    with PeakRSS() as peak:
        net.fit(X, Y, epochs=cfg["epochs"], batch_size=batch, lr=LR)
    traced_peak = tracemalloc.get_traced_memory()[1] - traced0
    tracemalloc.stop()
    print(json.dumps({
        "rss_peak_bytes": None if peak.peak is None or rss0 is None else peak.peak - rss0,
        "rss_method": peak.method, "traced_peak_bytes": traced_peak,
        "model_traced_bytes": model_traced}))


def fit_peak(layer_sizes, batch, rows=ROWS, epochs=FIT_EPOCHS, dtype="float32",
             threads=1) -> dict:
    """(b): peak memory of ``MLP(layer_sizes).fit(X, Y, epochs, batch)`` on ``rows`` rows,
    measured in a fresh Python process, against ``bound_parts``; returns the numbers."""
    cfg = {"layers": list(layer_sizes), "batch": batch, "rows": rows, "epochs": epochs,
           "dtype": np.dtype(dtype).name}
    # glibc returns freed blocks of ≥ 64 KiB to the system at once with a fixed mmap
    # threshold (its default one grows after the first large free, and freed memory then
    # stays resident), so the resident set follows what is allocated.  OpenBLAS sizes its
    # thread buffers when it loads: the thread count goes in through the environment.
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536",
           "OPENBLAS_NUM_THREADS": str(threads), "OMP_NUM_THREADS": str(threads)}
    out = json.loads(harness.run_child(
        "from fastmlp.bench.memory import _fit_child; _fit_child(sys.argv[1])",
        (json.dumps(cfg),), env=env))
    parts = bound_parts(layer_sizes, batch, np.dtype(dtype).itemsize)
    bound = sum(parts.values())
    out.update(cfg, bound_parts=parts, bound_bytes=bound,
               traced_ratio=out["traced_peak_bytes"] / bound,
               rss_ratio=None if out["rss_peak_bytes"] is None else out["rss_peak_bytes"] / bound)
    return out


# ---------------------------------------------------------------------- output
def tables(results) -> str:
    """The two markdown tables of a report: steady state, and peak of fit."""
    lines = ["Steady state after warm-up, tracemalloc: peak above the level before a call "
             "(max and median over the calls); retained after all the calls",
             "| workload | call | calls | peak B | median peak B | retained B | "
             "retained blocks |", "|---|---|---:|---:|---:|---:|---:|"]
    for r in results:
        wl = f"{r['workload']} {r['layers']} b={r['batch']}"
        for key, label in (("train_step", "train_step"),
                           ("fit_epoch", f"fit, 1 epoch of {r['rows']:,} rows")):
            s = r["steady"][key]
            lines.append(f"| {wl} | {label} | {s['calls']} | {s['peak_bytes']:,} | "
                         f"{s['median_peak_bytes']:,.0f} | {s['retained_bytes']:,} | "
                         f"{s['retained_blocks']} |")
    lines += ["", f"Peak of fit ({FIT_EPOCHS} epochs, fresh process) against the bound "
                  "(parameters + gradients + A(0..L) + Δ(1..L) of one batch)",
              "| workload | bound MiB | traced peak MiB | traced / bound | RSS peak MiB | "
              "RSS / bound |", "|---|---:|---:|---:|---:|---:|"]
    for r in results:
        f = r["fit_peak"]
        rss = "–" if f["rss_peak_bytes"] is None else f"{f['rss_peak_bytes'] / MIB:,.2f}"
        rss_ratio = "–" if f["rss_ratio"] is None else f"{f['rss_ratio']:.3f}"
        lines.append(f"| {r['workload']} {r['layers']} b={r['batch']}, {r['rows']:,} rows | "
                     f"{f['bound_bytes'] / MIB:,.2f} | {f['traced_peak_bytes'] / MIB:,.2f} | "
                     f"{f['traced_ratio']:.3f} | {rss} | {rss_ratio} |")
    lines.append("")
    for r in results:
        parts = ", ".join(f"{k} {v / MIB:,.3f}" for k, v in r["fit_peak"]["bound_parts"].items())
        lines.append(f"bound of {r['workload']} (MiB): {parts}; the epoch's permutation, "
                     f"not in the bound: {r['steady']['permutation_bytes'] / MIB:.3f}")
    return "\n".join(lines)


def parse_args(argv):
    ap = argparse.ArgumentParser(prog="python -m fastmlp.bench.memory", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workloads", default=",".join(WORKLOADS),
                    help=f"comma list of {', '.join(WORKLOADS)} (default both)")
    ap.add_argument("--rows", type=int, default=ROWS, help=f"rows of data (default {ROWS})")
    ap.add_argument("--threads", type=int, default=1,
                    help="BLAS / OpenMP threads (default 1; more threads, more BLAS buffers)")
    ap.add_argument("--json", metavar="PATH", help="write every number and the environment")
    args = ap.parse_args(argv)
    args.workloads = [w.strip() for w in args.workloads.split(",") if w.strip()]
    bad = [w for w in args.workloads if w not in WORKLOADS]
    if bad:
        ap.error(f"unknown workload(s) {bad}; choose from {list(WORKLOADS)}")
    if args.rows < 1 or args.threads < 1:
        ap.error("--rows and --threads: expected positive integers")
    return args


def main(argv=None) -> int:
    """The command line; returns the exit status."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    undo_threads = run.pin_threads(args.threads)
    try:
        env = run.environment(args.threads)
        print(run.env_summary(env), flush=True)
        results = []
        for name in args.workloads:
            sizes, batch = WORKLOADS[name]
            batch = min(batch, args.rows)
            t0 = time.perf_counter()
            results.append({"workload": name, "layers": sizes, "batch": batch,
                            "rows": args.rows, "dtype": "float32", "loss": LOSS,
                            "steady": steady_state(sizes, batch, args.rows),
                            "fit_peak": fit_peak(sizes, batch, args.rows, threads=args.threads)})
            print(f"  {name}: {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
    finally:
        undo_threads()
    print()
    print(tables(results))
    if args.json:
        harness.write_json(args.json, {"env": env, "results": results})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
