"""The timing harness every benchmark of fastmlp.bench shares: interleaved blocks of calls
and their summary, thread counts and CPU pinning, the load other processes put on the
machine, the benchmark data, and the description of the machine and libraries that goes
with every result.
"""
from __future__ import annotations

import datetime
import gc
import importlib.metadata
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

from fastmlp import bench
from fastmlp.bench import peers as P

PAUSE_S = 0.15  # sleep before each block when BLAS is multi-threaded (see measure)
BUSY_PCT = 5    # flag a workload during which other processes used more of the machine
NOISY = 0.2     # flag a peer whose interquartile range exceeds this fraction of its median


# ---------------------------------------------------------------------- child processes
def run_child(code: str, args, env=None, timeout: float = 600, before: str = ""):
    """Run ``code`` in a fresh Python process that imports the fastmlp this process runs
    (not a source tree in its working directory), with ``args`` as sys.argv[1:];
    ``before`` is imported first (the import order of a user's script can matter).
    Returns the last line of its output; raises RuntimeError with its stderr if it fails.
    """
    import fastmlp
    root = os.path.dirname(os.path.dirname(os.path.abspath(fastmlp.__file__)))
    env = dict(os.environ if env is None else env)
    # The folder holding this fastmlp goes first on the child's path by PYTHONPATH, and the
    # code runs as a script file, whose own folder (not the working directory, which may
    # be a source checkout) is the path's first entry.
    env["PYTHONPATH"] = os.pathsep.join([root] + ([env["PYTHONPATH"]]
                                                  if env.get("PYTHONPATH") else []))
    with tempfile.TemporaryDirectory(prefix="fastmlp-bench-") as folder:
        script = os.path.join(folder, "child.py")
        with open(script, "w", encoding="utf-8") as f:
            f.write((f"import {before}\n" if before else "") + "import sys\n" + code)
        proc = subprocess.run([sys.executable, script, *map(str, args)], env=env,
                              capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark subprocess failed:\n{proc.stderr}")
    return proc.stdout.strip().splitlines()[-1]


# ---------------------------------------------------------------------- threads
ALL_CPUS = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []


def pin_threads(threads: int, peer_names=()):
    """Same thread count for every BLAS / OpenMP pool and for torch; returns an undo function.

    The libraries of the selected peers are imported first, so that threadpoolctl sees
    (and limits) their thread pools.
    """
    import fastmlp  # noqa: F401  (loads the BLAS fastmlp calls)
    for pname in peer_names:       # load the other BLAS libraries compared, then switch back
        lib = getattr(P.BY_NAME.get(pname), "blas", None)
        if lib and lib in fastmlp.blas.available():
            fastmlp.blas.use(fastmlp.blas.use(lib))
    for peer, module in (("torch", "torch"), ("sklearn", "sklearn.neural_network")):
        if peer in peer_names:
            try:
                __import__(module)
            except ImportError:
                pass
    undo = []
    torch = sys.modules.get("torch")
    if torch is not None:
        undo.append(lambda n=torch.get_num_threads(): torch.set_num_threads(n))
        torch.set_num_threads(threads)
    try:
        from threadpoolctl import threadpool_limits
        undo.append(threadpool_limits(limits=threads).restore_original_limits)
    except ImportError:
        pass
    return lambda: [f() for f in reversed(undo)]


def pin_to_cpus(on: bool = True) -> None:
    """Main thread → first CPU, every other thread of the process (BLAS / OpenMP workers)
    → the remaining CPUs; ``on=False`` gives every thread all CPUs back.

    When another process takes a CPU (or a VM kernel packs threads onto one vCPU), a BLAS
    call can end up waiting on a worker that shares the caller's CPU, both spinning, and a
    30 µs GEMM takes 16 ms.  Pinning keeps the caller and its workers apart.  Threads are
    created lazily, so this is re-applied after each peer's first call.
    """
    if len(ALL_CPUS) < 2:
        return
    main = threading.get_native_id()
    for tid in os.listdir("/proc/self/task"):
        cpus = ALL_CPUS if not on else ALL_CPUS[:1] if int(tid) == main else ALL_CPUS[1:]
        try:
            os.sched_setaffinity(int(tid), cpus)
        except OSError:      # the thread has exited
            pass


# ---------------------------------------------------------------------- measurement
def measure(fns: dict, rounds: int, block_s: float, warmup_s: float,
            pause_s: float = PAUSE_S, pin: bool = False, before: dict | None = None) -> dict:
    """Interleaved timing of the callables in ``fns``.

    Returns {name: {"samples_us": [µs per call, one per round], "calls_per_block": k}}.
    ``before[name]``, if given, runs untimed before each of that peer's blocks (e.g. to
    switch fastmlp's BLAS library).

    Each block is preceded by ``pause_s`` of sleep, so that the previous block's idle BLAS
    threads (OpenBLAS workers busy-wait ~2**28 cycles, about 0.1 s, before sleeping) have
    stopped spinning: on a 2-core machine, one library's spinning pool would otherwise take
    a core from the next library's block.
    """
    before = before or {}
    calls = {}
    for name, fn in fns.items():
        time.sleep(pause_s)
        if name in before:
            before[name]()
        fn()
        if pin:
            pin_to_cpus()
        n, t0 = 1, time.perf_counter()
        while True:
            fn()
            n += 1
            elapsed = time.perf_counter() - t0
            if elapsed >= warmup_s:
                break
        calls[name] = max(1, round(block_s / (elapsed / (n - 1))))
    samples = {name: [] for name in fns}
    names = list(fns)
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for r in range(rounds):
            for name in names[r % len(names):] + names[:r % len(names)]:
                fn, k = fns[name], calls[name]
                if pause_s:
                    time.sleep(pause_s)
                if name in before:
                    before[name]()
                t0 = time.perf_counter_ns()
                for _ in range(k):
                    fn()
                samples[name].append((time.perf_counter_ns() - t0) / k / 1e3)
            gc.collect()
    finally:
        if gc_was_enabled:
            gc.enable()
    return {name: {"samples_us": s, "calls_per_block": calls[name]} for name, s in samples.items()}


class OtherLoad:
    """CPU time used by everything but this process while it runs, in % of the machine
    (from /proc/stat).  Other work on the machine makes multi-threaded timings unreliable."""

    def __init__(self):
        self.start = self._now()

    @staticmethod
    def _now():
        try:
            with open("/proc/stat") as f:
                v = [int(x) for x in f.readline().split()[1:]]
            busy = (sum(v) - v[3] - v[4]) / os.sysconf("SC_CLK_TCK")   # less idle, iowait
        except (OSError, ValueError, IndexError):
            busy = None
        return busy, time.process_time(), time.perf_counter()

    def percent(self):
        (b0, p0, t0), (b1, p1, t1) = self.start, self._now()
        if b0 is None or t1 <= t0:
            return None
        other = (b1 - b0) - (p1 - p0)
        return max(0.0, 100.0 * other / ((t1 - t0) * (os.cpu_count() or 1)))


def wait_for_idle(max_s: float) -> float | None:
    """Wait (up to ``max_s``) for a 1-second window in which other processes use under
    BUSY_PCT % of the CPUs; returns their load in the last window."""
    deadline, pct = time.perf_counter() + max_s, None
    while True:
        load = OtherLoad()
        time.sleep(1.0)
        pct = load.percent()
        if pct is None or pct < BUSY_PCT or time.perf_counter() >= deadline:
            return pct


def summarize(samples_us) -> dict:
    q1, med, q3 = np.percentile(samples_us, [25, 50, 75])
    return {"median_us": float(med), "q1_us": float(q1), "q3_us": float(q3),
            "min_us": float(min(samples_us)), "max_us": float(max(samples_us))}


# ---------------------------------------------------------------------- data
def make_data(n, layer_sizes, loss, dtype, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, layer_sizes[0]), dtype=np.float32).astype(dtype)
    if loss == "mse":
        Y = rng.standard_normal((n, layer_sizes[-1])).astype(dtype)
    else:
        Y = rng.integers(0, layer_sizes[-1], n, dtype=np.int64)
    return X, Y


# ---------------------------------------------------------------------- environment
def cpu_info() -> dict:
    info = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, val = line.partition(":")
                key, val = key.strip(), val.strip()
                if key in ("model name", "cpu family", "model", "stepping") and key not in info:
                    info[key] = val
                if key == "flags" and "simd" not in info:
                    flags = set(val.split())
                    info["simd"] = " ".join(f for f in ("avx", "avx2", "fma", "avx512f")
                                            if f in flags)
    except OSError:
        pass
    info["logical_cpus"] = os.cpu_count()
    return info


def environment(threads: int) -> dict:
    import fastmlp
    env = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "python": platform.python_version(), "platform": platform.platform(),
        "cpu": cpu_info(), "threads": threads, "openblas_env_at_start": bench.OPENBLAS_VARS,
        "versions": {"fastmlp": getattr(fastmlp, "__version__", "?"), "numpy": np.__version__},
        "fastmlp_path": os.path.dirname(fastmlp.__file__),
    }
    for name, dist in (("scipy", "scipy"), ("torch", "torch"), ("sklearn", "scikit-learn"),
                       ("threadpoolctl", "threadpoolctl"), ("matplotlib", "matplotlib")):
        try:
            env["versions"][name] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            env["versions"][name] = None
    if "torch" in sys.modules:
        env["torch_threads"] = sys.modules["torch"].get_num_threads()
    try:
        from threadpoolctl import threadpool_info
        keep = ("user_api", "internal_api", "version", "num_threads", "architecture",
                "threading_layer", "filepath")
        env["threadpools"] = [{k: p.get(k) for k in keep} for p in threadpool_info()]
    except ImportError:
        env["threadpools"] = "threadpoolctl not installed: thread counts not pinned"
    return env


def env_summary(env) -> str:
    cpu = env["cpu"]
    lines = [f"date: {env['date']}",
             f"cpu: {cpu.get('model name', '?')} (family {cpu.get('cpu family')} model "
             f"{cpu.get('model')}; {cpu.get('simd')}), {cpu['logical_cpus']} logical CPUs",
             f"python {env['python']}; " + ", ".join(f"{k} {v}" for k, v in env["versions"].items()
                                                    if v),
             f"threads: {env['threads']} (torch: {env.get('torch_threads', '-')})"]
    if isinstance(env["threadpools"], str):
        lines.append(env["threadpools"])
    else:
        for p in env["threadpools"]:
            lines.append(f"  {p['internal_api']} {p['version'] or ''} "
                         f"{p['architecture'] or ''} threads={p['num_threads']} "
                         f"{os.path.basename(p['filepath'])}")
    ob = env["openblas_env_at_start"]
    if ob["OPENBLAS_CORETYPE"] or ob["OPENBLAS_L2_SIZE"]:
        lines.append(f"WARNING: OPENBLAS_CORETYPE={ob['OPENBLAS_CORETYPE']} "
                     f"OPENBLAS_L2_SIZE={ob['OPENBLAS_L2_SIZE']} were set: OpenBLAS may run "
                     "slower kernels (see bench/README.md)")
    else:
        lines.append("OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE: not set")
    return "\n".join(lines)


# ---------------------------------------------------------------------- results
def is_noisy(s) -> bool:
    return (s["q3_us"] - s["q1_us"]) > NOISY * s["median_us"]


def fmt_us(x: float) -> str:
    return f"{x:,.1f}" if x < 100 else f"{x:,.0f}"


# ---------------------------------------------------------------------- reports
def require(ap, benchmark: str, *modules: str) -> None:
    """Stop the command line ``ap`` with one line unless every one of ``modules`` imports."""
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            ap.error(f"the {benchmark} benchmark needs {', '.join(modules)} ({exc})")


def write_json(path, report: dict) -> None:
    """Write a benchmark's ``report`` as JSON to ``path`` and say so."""
    with open(path, "w") as f:
        json.dump(report, f, indent=1)
    print(f"wrote {path}")


def publish(text: str, env: dict, report: dict, path=None) -> int:
    """A benchmark command's end: print its table ``text`` and, when ``path`` is given,
    write ``report`` with its environment ``env`` as JSON there.  Returns the exit
    status, 0."""
    print(text)
    if path:
        write_json(path, {"env": env, **report})
    return 0
