"""The process-wide threads that run independent pieces of one fastmlp call side by side
(the groups of models of an ``MLPStack`` or of a search's shared fit), started on first
use, and how models are split into such groups.

Each piece is a whole GIL-free loop of its own (a group's epochs), so the threads meet only
when the call ends: no barrier per step, nothing that spins.  Idle threads wait on the
executor's queue, holding no CPU, and are shared by every call in the process.
"""
from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from fastmlp import threads

# Work (estimated floating-point operations) a group of models must bring to be trained on
# a thread of its own: handing a group over and collecting it costs tens of µs.
GROUP_FLOPS = 4e7

_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None


def submit(fn: Callable[..., Any], *args: Any) -> Future:
    """Run ``fn(*args)`` on one of the shared threads (as many as the process may use
    cores, created as needed)."""
    global _pool
    with _lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=max(1, len(os.sched_getaffinity(0))),
                                       thread_name_prefix="fastmlp")
        return _pool.submit(fn, *args)


def model_work(n_params: int, rows: int, batch_size: int, epochs: int) -> float:
    """The estimated work of training one model: its products' flops (6 per row and
    parameter) plus the optimizer's pass over its parameters each step."""
    steps = epochs * -(-rows // batch_size)
    return float(n_params) * (6 * rows * epochs + 10 * steps)


def split(work: list[float]) -> list[list[int]]:
    """The models (indices into ``work``, each model's estimated work) split into groups
    that train side by side, one per thread: as many groups as threads are allowed
    (``threads.get_num_threads``) and as bring GROUP_FLOPS each, at least one; each model
    to the least-loaded group, largest first.  Each group's indices are sorted."""
    n_groups = int(min(threads.get_num_threads(), len(work), sum(work) // GROUP_FLOPS))
    if n_groups <= 1:
        return [list(range(len(work)))]
    load = [0.0] * n_groups
    members: list[list[int]] = [[] for _ in range(n_groups)]
    for k in sorted(range(len(work)), key=lambda k: -work[k]):
        g = load.index(min(load))
        members[g].append(k)
        load[g] += work[k]
    return [sorted(g) for g in members]
