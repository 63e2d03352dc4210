"""Readers on the event loop take turns (adapters/_loop_turns.py, docs/local.md): once an
iteration's slice is spent, one reader per iteration works, in FIFO order, and a reader
cancelled while it waits, or just after it was given its turn, holds nobody up."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from asyncblobdict import AsyncBlobStore, LocalFileAdapter
from asyncblobdict.adapters import _loop_turns
from asyncblobdict.adapters import local as local_module
from asyncblobdict.adapters._loop_turns import LoopTurns, turns_for
from tests.test_local_fast_read import adapter, needs_openat2, root, warm

__all__ = ["adapter", "root"]  # fixtures used here

SPENT = -1.0  # a slice that is always spent: every reader after the first must wait


class IterationCounter:
    """Counts loop iterations: a callback that schedules itself again each iteration and
    notes ``probe()`` at each run."""

    def __init__(self, probe: Callable[[], int]) -> None:
        self.probe = probe
        self.marks: list[int] = []
        self.stopped = False

    def start(self) -> None:
        asyncio.get_running_loop().call_soon(self._tick)

    def _tick(self) -> None:
        self.marks.append(self.probe())
        if not self.stopped:
            asyncio.get_running_loop().call_soon(self._tick)

    def most_per_iteration(self) -> int:
        return max(b - a for a, b in zip(self.marks, self.marks[1:], strict=False))


async def read(turns: LoopTurns, log: list[int], who: int, slice_seconds: float) -> None:
    """One read as the local adapter does it, minus the file: wait if told to, then work."""
    loop = asyncio.get_running_loop()
    if turns.must_wait(loop, slice_seconds):
        await turns.wait_turn(loop)
    log.append(who)


async def reader(turns: LoopTurns, log: list[int], who: int, reads: int, s: float) -> None:
    for _ in range(reads):
        await read(turns, log, who, s)


def drained(turns: LoopTurns) -> bool:
    return not turns._waiting


async def test_once_the_slice_is_spent_readers_work_one_per_iteration() -> None:
    turns = LoopTurns(asyncio.get_running_loop())
    log: list[int] = []
    counter = IterationCounter(lambda: len(log))
    counter.start()
    await asyncio.gather(*(reader(turns, log, who, 20, SPENT) for who in range(64)))
    counter.stopped = True
    assert len(log) == 64 * 20
    # Each iteration: the reader that opened the slice, or the one given its turn. Without
    # turns, every one of the 64 ready readers would read once per iteration.
    assert counter.most_per_iteration() <= 2
    assert drained(turns)


async def test_turns_go_round_in_order() -> None:
    turns = LoopTurns(asyncio.get_running_loop())
    log: list[int] = []
    await asyncio.gather(*(reader(turns, log, who, 30, SPENT) for who in range(8)))
    # FIFO: between two reads of one reader, each of the other seven reads at most once
    # (and, once all are queued, exactly once).
    steady = log[16:-16]
    for i in range(len(steady) - 8):
        assert sorted(steady[i : i + 8]) == list(range(8)), steady[i : i + 8]


async def test_a_reader_alone_keeps_reading_within_its_slice() -> None:
    turns = LoopTurns(asyncio.get_running_loop())
    log: list[int] = []
    counter = IterationCounter(lambda: len(log))
    counter.start()
    await reader(turns, log, 0, 200, 60.0)  # a slice that is never spent
    assert counter.marks == []  # all 200 reads in one iteration: no wait at all
    counter.stopped = True


async def test_a_reader_cancelled_while_waiting_holds_nobody_up() -> None:
    turns = LoopTurns(asyncio.get_running_loop())
    log: list[int] = []
    tasks = [asyncio.create_task(read(turns, log, who, SPENT)) for who in range(5)]
    await asyncio.sleep(0)  # the first opened the slice and read; the others are queued
    assert log == [0] and len(turns._waiting) == 4
    tasks[1].cancel()
    tasks[3].cancel()
    await asyncio.wait_for(asyncio.gather(tasks[2], tasks[4]), 5)
    assert log == [0, 2, 4]
    assert tasks[1].cancelled() and tasks[3].cancelled()
    assert drained(turns)


async def test_a_reader_cancelled_after_its_turn_came_passes_the_turn_on() -> None:
    """Given its turn, then cancelled before it ran: without passing the turn on, the reader
    behind it waits for an end of slice nobody scheduled."""
    turns = LoopTurns(asyncio.get_running_loop())
    log: list[int] = []
    opener = asyncio.create_task(read(turns, log, 0, SPENT))  # opens the slice and reads
    first = asyncio.create_task(read(turns, log, 1, SPENT))
    second = asyncio.create_task(read(turns, log, 2, SPENT))
    while len(turns._waiting) != 2:
        await asyncio.sleep(0)
    while len(turns._waiting) == 2:  # until the first is given its turn
        await asyncio.sleep(0)
    assert not first.done()
    first.cancel()  # its wake-up is already scheduled
    await asyncio.wait_for(second, 5)
    assert first.cancelled() and opener.done()
    assert log == [0, 2]


@settings(max_examples=60, deadline=None)
@given(
    plan=st.lists(
        st.tuples(st.integers(1, 12), st.one_of(st.none(), st.integers(0, 40))),
        min_size=1,
        max_size=12,
    ),
    slice_seconds=st.sampled_from([SPENT, 0.0, 60.0]),
)
def test_cancelling_readers_anywhere_never_stalls_the_rest(
    plan: list[tuple[int, int | None]], slice_seconds: float
) -> None:
    """Readers with (reads, cancelled after this many loop iterations or never): every
    reader not cancelled makes all its reads, and the queue ends empty."""

    async def run() -> None:
        turns = LoopTurns(asyncio.get_running_loop())
        log: list[int] = []
        tasks = [
            asyncio.create_task(reader(turns, log, who, reads, slice_seconds))
            for who, (reads, _) in enumerate(plan)
        ]
        for step in range(41):
            for task, (_, cancel_at) in zip(tasks, plan, strict=True):
                if cancel_at == step:
                    task.cancel()
            await asyncio.sleep(0)
        await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 10)
        for who, (task, (reads, _)) in enumerate(zip(tasks, plan, strict=True)):
            if not task.cancelled():
                assert log.count(who) == reads
            else:
                assert log.count(who) < reads
        for _ in range(3):  # let a last end-of-slice run
            await asyncio.sleep(0)
        assert drained(turns)

    asyncio.run(run())


async def test_each_loop_has_its_own_turns() -> None:
    mine = turns_for(asyncio.get_running_loop())
    assert turns_for(asyncio.get_running_loop()) is mine
    found: list[LoopTurns] = []
    thread = threading.Thread(target=lambda: found.append(asyncio.run(_turns_here())))
    thread.start()
    thread.join()
    assert found and found[0] is not mine
    assert turns_for(asyncio.get_running_loop()) is mine


async def _turns_here() -> LoopTurns:
    return turns_for(asyncio.get_running_loop())


def test_a_closed_loop_is_not_kept_alive() -> None:
    import gc
    import weakref

    loop = asyncio.new_event_loop()
    loop.run_until_complete(_turns_here())
    loop.close()
    gone = weakref.ref(loop)
    del loop
    turns_for(asyncio.new_event_loop())  # _last moves on
    gc.collect()
    assert gone() is None
    assert all(t.owned_by(k) for k, t in _loop_turns._by_loop.items())


@needs_openat2
async def test_64_store_readers_read_one_per_iteration_once_the_slice_is_spent(
    adapter: LocalFileAdapter, monkeypatch: pytest.MonkeyPatch
) -> None:
    await warm(adapter)
    store = AsyncBlobStore(adapter, "c")  # no cache: every read goes to the adapter
    for i in range(64):
        await store.set_json(f"k{i}", {"i": i})
    monkeypatch.setattr(local_module, "FAST_SLICE_SECONDS", SPENT)
    counter = IterationCounter(lambda: adapter.fast_reads)
    reads = adapter.fast_reads

    async def task(i: int) -> None:
        for _ in range(10):
            assert await store.get_json(f"k{i}") == {"i": i}

    counter.start()
    await asyncio.gather(*(task(i) for i in range(64)))
    counter.stopped = True
    assert adapter.fast_reads == reads + 640
    assert counter.most_per_iteration() <= 2


@needs_openat2
def test_two_loops_in_two_threads_share_one_adapter(root: Path) -> None:
    """Each loop has its own turns; neither waits on the other's."""
    a = LocalFileAdapter(root, durable=False)
    asyncio.run(a.put("c", "k", b"v"))
    errors: list[BaseException] = []

    async def readers() -> None:
        await warm(a)

        async def one() -> None:
            for _ in range(50):
                assert (await a.get("c", "k"))[0] == b"v"

        await asyncio.wait_for(asyncio.gather(*(one() for _ in range(16))), 30)

    def run() -> None:
        try:
            asyncio.run(readers())
        except BaseException as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    asyncio.run(a.close())
    assert not errors
    # Read on the loops (the counter is shared by two threads, so it may miss an increment).
    assert a.fast_reads >= 16 * 50


def test_readers_still_waiting_when_the_loop_ends_do_not_keep_it_alive() -> None:
    """asyncio.run ends by cancelling the tasks still waiting for their turn; their futures
    hold the loop, so they must leave the queue."""
    import gc
    import weakref

    loops: list[weakref.ref[asyncio.AbstractEventLoop]] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        loops.append(weakref.ref(loop))
        turns = turns_for(loop)
        log: list[int] = []
        for who in range(8):
            asyncio.get_running_loop().create_task(reader(turns, log, who, 1000, SPENT))
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert len(turns._waiting) >= 6  # ended with readers queued

    asyncio.run(main())
    turns_for(asyncio.new_event_loop())  # _last moves on
    gc.collect()
    assert loops[0]() is None
