"""The process-wide threads that run independent pieces of one fastmlp call side by side
(an ``MLPStack``'s groups of models), started on first use.

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
