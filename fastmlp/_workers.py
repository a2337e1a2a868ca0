"""The pieces of one fastmlp call that run side by side (the groups of models of an
``MLPStack`` or of a search's shared fit), and how models are split into such groups.

Each piece is a whole loop of its own (a group's epochs, GIL-free but for the
bookkeeping between them), so the pieces meet only when the call ends: no barrier per
step or epoch, nothing that spins.  They run on fastmlp's worker pool (``_core.run_pieces``,
_pool.h), the same threads the split passes and products use, which sleep, holding no
CPU, between calls.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastmlp import _core, threads

# Work (estimated floating-point operations) a group of models must bring to be trained on
# a thread of its own: handing a group over and collecting it costs tens of µs.
GROUP_FLOPS = 4e7


def side_by_side(pieces: list[Callable[[], Any]]) -> list[Any]:
    """Each of ``pieces`` called once, side by side on the calling thread and fastmlp's
    workers (one alone runs on the caller); returns their results in order.  Every piece
    runs to its end; then the first exception one raised, if any, is raised."""
    if len(pieces) == 1:
        return [pieces[0]()]
    results = []
    for ok, value in _core.run_pieces(pieces):
        if not ok:
            raise value
        results.append(value)
    return results


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
