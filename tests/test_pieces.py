"""Pieces of one call side by side on fastmlp's worker pool (fastmlp/_pieces.pxi,
fastmlp/_workers.py): the groups of models of an MLPStack and of a search's shared fit run
on the pool's own threads, at the same time, each piece once; an exception reaches the
caller after every piece has ended; the caller waits asleep; no second set of threads."""
from __future__ import annotations

import os
import threading
import time

import numpy as np
import pytest

import fastmlp
from fastmlp import _core, _workers


def _comm(native_id: int) -> str:
    with open(f"/proc/self/task/{native_id}/comm") as f:
        return f.read().strip()


@pytest.fixture
def two_threads():
    before = fastmlp.get_num_threads()
    fastmlp.set_num_threads(2)
    yield
    fastmlp.set_num_threads(before)


def _recorder(seen: list, barrier: threading.Barrier | None, value):
    def piece():
        seen.append(threading.get_native_id())
        if barrier is not None:
            barrier.wait(timeout=10)     # both pieces must be running at once to pass
        return value
    return piece


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs")
@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="needs /proc")
def test_two_pieces_run_at_once_one_on_a_pool_worker(two_threads):
    seen: list[int] = []
    barrier = threading.Barrier(2)
    assert _workers.side_by_side([_recorder(seen, barrier, "a"),
                                  _recorder(seen, barrier, "b")]) == ["a", "b"]
    assert len(set(seen)) == 2
    assert threading.get_native_id() in seen
    (other,) = set(seen) - {threading.get_native_id()}
    assert _comm(other) == "fastmlp-pool"


def test_at_one_thread_the_pieces_run_one_after_the_other_on_the_caller():
    before = fastmlp.get_num_threads()
    fastmlp.set_num_threads(1)
    try:
        seen: list[int] = []
        got = _workers.side_by_side([_recorder(seen, None, k) for k in range(3)])
        assert got == [0, 1, 2]
    finally:
        fastmlp.set_num_threads(before)
    assert seen == [threading.get_native_id()] * 3


def test_an_exception_is_raised_after_every_piece_has_ended(two_threads):
    ended = []

    def slow():
        time.sleep(0.1)
        ended.append("slow")

    def fails():
        raise KeyError("piece")

    with pytest.raises(KeyError, match="piece"):
        _workers.side_by_side([fails, slow])
    assert ended == ["slow"]


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs")
def test_the_caller_waits_for_a_long_piece_asleep(two_threads):
    # The caller's own piece ends at once; it then waits 0.3 s for the other one, which
    # sleeps.  Waiting in a spin would cost the calling thread ~0.3 s of CPU.
    cpu = []

    def mine():
        cpu.append(time.thread_time())

    def theirs():
        time.sleep(0.3)

    start = time.thread_time()
    _workers.side_by_side([mine, theirs])
    assert time.thread_time() - start < 0.1


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs")
def test_a_stack_trains_its_groups_on_the_pool_and_nothing_else(two_threads, monkeypatch):
    # Two groups (enough work for both): one trained by a pool worker, and the models end
    # bit for bit where one group, on one thread, leaves them; no thread of any other
    # pool of fastmlp's is left behind.
    monkeypatch.setattr(_workers, "GROUP_FLOPS", 1.0)
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(64, 6)), rng.normal(size=(64, 2))

    def models():
        return [fastmlp.MLP([6, 16, 2], seed=k, optimizer="adam") for k in range(4)]

    grouped, single = fastmlp.MLPStack(models()), fastmlp.MLPStack(models())
    assert len(grouped._plan(64, 8, 3, single=False)) == 2
    workers_before = _core.pool_threads()
    grouped.fit(X, y, epochs=3, batch_size=8)
    single.fit(X, y, epochs=3, batch_size=8, verbose=True)  # verbose: one group
    for a, b in zip(grouped.models, single.models):
        assert np.array_equal(a.params, b.params)
    assert _core.pool_threads() >= max(1, workers_before)
    assert not [t for t in threading.enumerate() if t.name.startswith("fastmlp")]


def test_pieces_inside_a_piece_run_on_its_thread(two_threads):
    # A piece that itself runs pieces (a stack fitted inside a group's bookkeeping) finds
    # the pool taken: its own pieces run one after the other on its thread, no deadlock.
    def inner(tag):
        def piece():
            return [tag, threading.get_native_id()]
        return piece

    def outer(tag):
        def piece():
            here = threading.get_native_id()
            got = _workers.side_by_side([inner(tag + "1"), inner(tag + "2")])
            assert [tid for _, tid in got] == [here, here]
            return [t for t, _ in got]
        return piece

    assert _workers.side_by_side([outer("a"), outer("b")]) == [["a1", "a2"], ["b1", "b2"]]


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs")
def test_two_python_threads_fitting_stacks_at_once_match_their_serial_fits(two_threads,
                                                                           monkeypatch):
    # The second caller finds the pool taken and runs its groups itself: the same bits.
    monkeypatch.setattr(_workers, "GROUP_FLOPS", 1.0)
    rng = np.random.default_rng(1)
    X, y = rng.normal(size=(64, 6)), rng.normal(size=(64, 2))

    def stack(seed):
        return fastmlp.MLPStack([fastmlp.MLP([6, 12, 2], seed=seed + k) for k in range(4)])

    serial = [stack(0), stack(10)]
    for s in serial:
        s.fit(X, y, epochs=4, batch_size=8)
    together = [stack(0), stack(10)]
    threads = [threading.Thread(target=s.fit, args=(X, y),
                                kwargs=dict(epochs=4, batch_size=8)) for s in together]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for a, b in zip(serial, together):
        for m, n in zip(a.models, b.models):
            assert np.array_equal(m.params, n.params)
