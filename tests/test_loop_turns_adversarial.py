"""Hostile tests of the loop turns (adapters/_loop_turns.py) through the real local adapter
and store: cancellation at every point, declining and failing reads given a turn, several
adapters and loops, loops closed with readers queued, memory, and a state machine that
checks every reader not cancelled gets its turns within a bounded number of iterations."""

from __future__ import annotations

import asyncio
import errno
import gc
import os
import sys
import tempfile
import threading
import weakref
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from asyncblobdict import AsyncBlobStore, BlobNotFoundError, LocalFileAdapter
from asyncblobdict.adapters import local as local_module
from asyncblobdict.adapters._loop_turns import LoopTurns, turns_for
from tests.test_local_fast_read import adapter, needs_openat2, root, warm
from tests.test_loop_turns import SPENT, IterationCounter

__all__ = ["adapter", "root"]  # fixtures used here

HANG = 20.0  # seconds: a guard that turns a hang into a failure, never a timed assertion
FAST = local_module.FAST_READ_BYTES
BIG = b"B" * (FAST + 1)  # declined on the loop: read in a thread


def one_iteration(loop: asyncio.AbstractEventLoop) -> None:
    """Run exactly one iteration of a loop that is not running."""
    loop.call_soon(loop.stop)
    loop.run_forever()


async def iterations(n: int) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


def queued(turns: LoopTurns) -> int:
    return len(turns._waiting)


async def settle(turns: LoopTurns) -> None:
    """Let a last end of slice run (it pops what was cancelled)."""
    await iterations(3)
    assert queued(turns) == 0
    assert turns._slice_start is None or turns._end_pending


async def filled(a: LocalFileAdapter, n: int) -> dict[str, bytes]:
    await warm(a)
    values = {f"k{i}": f"value {i}".encode() for i in range(n)}
    values["big"] = BIG
    for key, value in values.items():
        await a.put("c", key, value)
    return values


# -- loops closed with readers queued ---------------------------------------------------


def _close_with_readers_queued(root: Path) -> weakref.ref[asyncio.AbstractEventLoop]:
    a = LocalFileAdapter(root, durable=False)
    loop = asyncio.new_event_loop()
    loop.run_until_complete(filled(a, 4))

    readers: list[asyncio.Task[Any]] = []

    async def start_readers() -> None:
        for i in range(8):
            readers.append(asyncio.create_task(a.get("c", f"k{i % 4}")))
        await asyncio.sleep(0)  # the first read; the others queue (the slice is spent)
        assert queued(turns_for(asyncio.get_running_loop())) > 0

    loop.run_until_complete(start_readers())
    loop.run_until_complete(a.close())
    loop.close()  # readers still queued: their tasks are never finished
    return weakref.ref(loop)


@needs_openat2
def test_a_loop_closed_with_readers_queued_is_freed_once_another_loop_reads(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The queued futures hold their loop; the loop's turns must not keep them (and so the
    loop, the key of a weak dictionary) alive once the loop is closed."""
    monkeypatch.setattr(local_module, "FAST_SLICE_SECONDS", SPENT)
    gone = _close_with_readers_queued(root)
    a = LocalFileAdapter(root, durable=False)

    async def read_and_close() -> bytes:
        try:
            await warm(a)  # from now on it reads on the loop: this loop's turns
            return (await a.get("c", "k1"))[0]
        finally:
            await a.close()

    assert asyncio.run(read_and_close()) == b"value 1"  # a new loop reads as usual
    gc.collect()
    assert gone() is None


@needs_openat2
def test_asyncio_run_twice_with_readers_queued_at_the_end_of_the_first(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """asyncio.run cancels the readers left queued; the adapter then reads on a new loop."""
    monkeypatch.setattr(local_module, "FAST_SLICE_SECONDS", SPENT)
    a = LocalFileAdapter(root, durable=False)
    left: list[asyncio.Task[Any]] = []
    loops: list[weakref.ref[asyncio.AbstractEventLoop]] = []

    async def first() -> None:
        await filled(a, 4)
        loops.append(weakref.ref(asyncio.get_running_loop()))
        left.extend(asyncio.create_task(a.get("c", f"k{i % 4}")) for i in range(16))
        await asyncio.sleep(0)

    async def second() -> list[bytes]:
        got = await asyncio.wait_for(
            asyncio.gather(*(a.get("c", f"k{i % 4}") for i in range(16))), HANG
        )
        await settle(turns_for(asyncio.get_running_loop()))
        await a.close()
        return [data for data, _ in got]

    asyncio.run(first())
    assert all(t.done() for t in left)
    assert asyncio.run(second()) == [f"value {i % 4}".encode() for i in range(16)]
    left.clear()
    gc.collect()
    assert loops[0]() is None


# -- cancellation ------------------------------------------------------------------------

# What a reader reads: a small value (read on the loop), a large one (declined: a thread),
# one whose record is in a sidecar file (declined), a missing key (declined: a thread
# raises BlobNotFoundError).
KINDS = ["small", "big", "side", "missing"]


@needs_openat2
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    plan=st.lists(
        st.tuples(
            st.lists(st.sampled_from(KINDS), min_size=1, max_size=6),
            st.one_of(st.none(), st.integers(0, 30)),
        ),
        min_size=1,
        max_size=16,
    ),
    spent=st.booleans(),
)
def test_real_reads_cancelled_anywhere_never_stall_the_rest(
    plan: list[tuple[list[str], int | None]], spent: bool, tmp_path: Path
) -> None:
    """Readers of small, large and missing keys, each cancelled after some loop iterations
    (while queued, just given its turn, or while a thread reads for it) or never: every
    reader not cancelled reads everything right, and the queue ends empty."""
    slice_seconds = SPENT if spent else local_module.FAST_SLICE_SECONDS
    with tempfile.TemporaryDirectory(dir=tmp_path) as tmp:

        async def run() -> None:
            a = LocalFileAdapter(Path(tmp) / "root", durable=False)
            try:
                values = await filled(a, 3)
                side = LocalFileAdapter(a.root, durable=False, _metadata_store="sidecar")
                values["side"] = b"in a sidecar"
                await side.put("c", "side", values["side"], metadata={"m": "1"})
                await side.close()
                turns = turns_for(asyncio.get_running_loop())

                async def reader(kinds: list[str]) -> None:
                    for i, kind in enumerate(kinds):
                        if kind == "missing":
                            with pytest.raises(BlobNotFoundError):
                                await a.get("c", "nowhere")
                        else:
                            key = kind if kind in ("big", "side") else f"k{i % 3}"
                            assert (await a.get("c", key))[0] == values[key]

                tasks = [asyncio.create_task(reader(kinds)) for kinds, _ in plan]
                for step in range(31):
                    for task, (_, cancel_at) in zip(tasks, plan, strict=True):
                        if cancel_at == step:
                            task.cancel()
                    await asyncio.sleep(0)
                done = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), HANG)
                for task, result in zip(tasks, done, strict=True):
                    if not task.cancelled():
                        assert result is None, result
                await settle(turns)
            finally:
                await a.close()

        old = local_module.FAST_SLICE_SECONDS
        local_module.FAST_SLICE_SECONDS = slice_seconds
        try:
            asyncio.run(run())
        finally:
            local_module.FAST_SLICE_SECONDS = old


@needs_openat2
async def test_wait_for_timeouts_around_get_never_stall_the_rest(
    adapter: LocalFileAdapter, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Readers that give up (a timeout due in the next iteration: after they queued) leave
    the queue to those that wait."""
    values = await filled(adapter, 8)
    monkeypatch.setattr(local_module, "FAST_SLICE_SECONDS", SPENT)
    turns = turns_for(asyncio.get_running_loop())
    gave_up = 0

    async def impatient(i: int) -> None:
        nonlocal gave_up
        for _ in range(20):
            try:
                await asyncio.wait_for(adapter.get("c", f"k{i % 8}"), 1e-9)
            except asyncio.TimeoutError:
                gave_up += 1

    async def patient(i: int) -> None:
        for _ in range(20):
            assert (await adapter.get("c", f"k{i % 8}"))[0] == values[f"k{i % 8}"]

    await asyncio.wait_for(
        asyncio.gather(*(impatient(i) for i in range(16)), *(patient(i) for i in range(16))),
        HANG,
    )
    assert gave_up > 0  # some did queue and give up
    await settle(turns)


@pytest.mark.skipif(sys.version_info < (3, 11), reason="TaskGroup is Python 3.11+")
@needs_openat2
async def test_a_task_group_cancelled_by_a_failing_reader_holds_nobody_up(
    adapter: LocalFileAdapter, monkeypatch: pytest.MonkeyPatch
) -> None:
    values = await filled(adapter, 8)
    monkeypatch.setattr(local_module, "FAST_SLICE_SECONDS", SPENT)
    turns = turns_for(asyncio.get_running_loop())

    async def reader(i: int) -> None:
        for _ in range(50):
            await adapter.get("c", f"k{i % 8}")

    async def failing() -> None:
        for _ in range(5):
            await adapter.get("c", "k0")
        await adapter.get("c", "nowhere")  # BlobNotFoundError: the group cancels the rest

    outsiders = [asyncio.create_task(reader(i)) for i in range(8)]  # not in the group
    task_group: Any = getattr(asyncio, "TaskGroup")  # noqa: B009 (Python 3.11+)
    with pytest.raises(Exception) as caught:  # an ExceptionGroup
        async with task_group() as group:
            for i in range(32):
                group.create_task(reader(i))
            group.create_task(failing())
    errors = getattr(caught.value, "exceptions")  # noqa: B009
    assert [type(e) for e in errors] == [BlobNotFoundError]
    await asyncio.wait_for(asyncio.gather(*outsiders), HANG)
    assert (await adapter.get("c", "k3"))[0] == values["k3"]
    await settle(turns)


@needs_openat2
async def test_a_reader_given_its_turn_then_cancelled_holding_the_key_lock(
    adapter: LocalFileAdapter, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A store reader queues for its turn holding the key's lock; cancelled just as its turn
    comes, it passes the turn to the readers queued behind it (no newcomer would restart
    the queue) and releases the lock."""
    await filled(adapter, 1)
    store = AsyncBlobStore(adapter, "c")
    await store.set_json("one", {"v": 1})
    monkeypatch.setattr(local_module, "FAST_SLICE_SECONDS", SPENT)
    turns = turns_for(asyncio.get_running_loop())
    opener = asyncio.create_task(adapter.get("c", "k0"))  # opens the slice and spends it
    holder = asyncio.create_task(store.get_json("one"))
    others = [asyncio.create_task(adapter.get("c", "k0")) for _ in range(4)]
    await asyncio.sleep(0)
    assert opener.done() and queued(turns) == 5
    holder_turn = turns._waiting[0]
    for _ in range(100):  # until the holder is given its turn
        if holder_turn.done():
            break
        await asyncio.sleep(0)
    assert not holder_turn.cancelled() and not holder.done()
    holder.cancel()
    await asyncio.wait_for(asyncio.gather(*others), HANG)
    assert holder.cancelled()
    assert await asyncio.wait_for(store.get_json("one"), HANG) == {"v": 1}  # lock released
    await settle(turns)


@needs_openat2
async def test_a_granted_reader_whose_read_raises_passes_the_turn_on(
    adapter: LocalFileAdapter, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A read on the loop that raises (a bug, or an error we do not foresee) after its turn
    came: those behind it still get theirs."""
    values = await filled(adapter, 4)
    monkeypatch.setattr(local_module, "FAST_SLICE_SECONDS", SPENT)
    turns = turns_for(asyncio.get_running_loop())
    real = adapter._get_fast
    calls = 0

    def flaky(container: str, key: str) -> Any:
        nonlocal calls
        calls += 1
        if calls % 3 == 0:
            raise RuntimeError("boom")
        return real(container, key)

    monkeypatch.setattr(adapter, "_get_fast", flaky)

    async def reader(i: int) -> int:
        failed = 0
        for _ in range(10):
            try:
                assert (await adapter.get("c", f"k{i % 4}"))[0] == values[f"k{i % 4}"]
            except RuntimeError:
                failed += 1
        return failed

    failed = await asyncio.wait_for(asyncio.gather(*(reader(i) for i in range(24))), HANG)
    assert sum(failed) == calls // 3 and calls == 240
    await settle(turns)


# -- several adapters, stores and loops -------------------------------------------------


@needs_openat2
async def test_adapters_and_stores_on_one_loop_share_its_turns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    adapters = [LocalFileAdapter(tmp_path / f"r{i}", durable=False) for i in range(3)]
    try:
        for a in adapters:
            await filled(a, 4)
        monkeypatch.setattr(local_module, "FAST_SLICE_SECONDS", SPENT)
        stores = [AsyncBlobStore(a, "c") for a in adapters]

        def reads() -> int:
            return sum(a.fast_reads for a in adapters)

        counter = IterationCounter(reads)
        before = reads()

        async def reader(i: int) -> None:
            a, s = adapters[i % 3], stores[i % 3]
            for j in range(10):
                if j % 2:
                    assert (await a.get("c", f"k{j % 4}"))[0] == f"value {j % 4}".encode()
                else:
                    assert await s.get_binary(f"k{j % 4}") == f"value {j % 4}".encode()

        counter.start()
        await asyncio.wait_for(asyncio.gather(*(reader(i) for i in range(48))), HANG)
        counter.stopped = True
        assert reads() == before + 480
        # One turns for the loop: readers of three adapters still read one per iteration.
        assert counter.most_per_iteration() <= 2
        await settle(turns_for(asyncio.get_running_loop()))
    finally:
        for a in adapters:
            await a.close()


@needs_openat2
def test_one_adapter_on_four_loops_in_threads_with_cancellations(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each thread's loop has its own turns, and loops come and go while others read."""
    monkeypatch.setattr(local_module, "FAST_SLICE_SECONDS", SPENT)
    a = LocalFileAdapter(root, durable=False)
    values = asyncio.run(filled(a, 4))
    errors: list[BaseException] = []

    async def readers(seed: int) -> None:
        turns = turns_for(asyncio.get_running_loop())

        async def one(i: int) -> None:
            for j in range(20):
                key = f"k{(i + j) % 4}"
                assert (await a.get("c", key))[0] == values[key]

        tasks = [asyncio.create_task(one(i)) for i in range(12)]
        await iterations(seed % 5 + 1)
        for task in tasks[seed % 3 :: 3]:
            task.cancel()
        results = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), HANG)
        assert all(r is None for t, r in zip(tasks, results, strict=True) if not t.cancelled())
        await settle(turns)
        assert turns_for(asyncio.get_running_loop()) is turns

    def run(seed: int) -> None:
        try:
            for round_ in range(3):  # a new loop each round
                asyncio.run(readers(seed + round_))
        except BaseException as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(seed,)) for seed in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    asyncio.run(a.close())
    assert not errors, errors


# -- the store while 64 readers take turns ---------------------------------------------

MODES = [
    ("none", "none"),
    ("write_through", "none"),
    ("write_through", "etag"),
    ("write_back", "none"),
    ("write_back", "etag"),
    ("none", "etag"),
]


@needs_openat2
@pytest.mark.parametrize(("cache_mode", "concurrency_mode"), MODES)
async def test_store_readers_and_writers_take_turns_without_a_stale_read(
    adapter: LocalFileAdapter,
    monkeypatch: pytest.MonkeyPatch,
    cache_mode: str,
    concurrency_mode: str,
) -> None:
    """64 readers (get_json, get_binary, exists, get_many) and 4 writers of 8 keys: a read
    begun after a write finished sees that write or a later one, and no write is lost."""
    await warm(adapter)
    store = AsyncBlobStore(adapter, "c", cache_mode=cache_mode, concurrency_mode=concurrency_mode)
    keys = [f"key{i}" for i in range(8)]
    for key in keys:
        await store.set_json(key, 0)
    if cache_mode == "write_back":
        await store.sync()
    monkeypatch.setattr(local_module, "FAST_SLICE_SECONDS", SPENT)
    done = dict.fromkeys(keys, 0)  # increments finished

    async def writer(w: int) -> None:
        for n in range(1, 11):
            key = keys[(w * 2 + n) % 8]
            await store.update_json(key, lambda v: v + 1)
            done[key] += 1

    async def reader(r: int) -> None:
        for n in range(6):
            key = keys[(r + n) % 8]
            seen = done[key]
            how = (r + n) % 4
            if how == 0:
                value = await store.get_json(key)
            elif how == 1:
                value = int(await store.get_binary(key))
            elif how == 2:
                assert await store.exists(key)
                continue
            else:
                value = (await store.get_many([key, keys[0]]))[key]
            assert value >= seen, (key, value, seen)

    await asyncio.wait_for(
        asyncio.gather(*(writer(w) for w in range(4)), *(reader(r) for r in range(64))), HANG
    )
    if cache_mode == "write_back":
        await store.sync()
    fresh = AsyncBlobStore(adapter, "c")
    assert sum([await fresh.get_json(key) for key in keys]) == 40  # no lost update
    await settle(turns_for(asyncio.get_running_loop()))


# -- memory -----------------------------------------------------------------------------


async def test_a_storm_of_cancelled_waiters_is_dropped_at_the_next_end_of_slice() -> None:
    turns = LoopTurns(asyncio.get_running_loop())

    async def read() -> None:
        loop = asyncio.get_running_loop()
        if turns.must_wait(loop, SPENT):
            await turns.wait_turn(loop)

    first = asyncio.create_task(read())  # opens the slice
    storm = [asyncio.create_task(read()) for _ in range(1000)]
    await asyncio.sleep(0)
    assert first.done() and queued(turns) == 1000
    for task in storm[:-1]:
        task.cancel()
    await iterations(3)
    assert queued(turns) == 0  # one end of slice skipped all 999 to give the last its turn
    assert storm[-1].done() and not storm[-1].cancelled()


async def test_the_queue_stays_bounded_under_endless_cancellations() -> None:
    """Readers that join and are cancelled every iteration, beside readers that keep
    reading: the queue holds at most what one iteration adds, plus the readers."""
    turns = LoopTurns(asyncio.get_running_loop())
    log: list[int] = []

    async def read(who: int) -> None:
        loop = asyncio.get_running_loop()
        if turns.must_wait(loop, SPENT):
            await turns.wait_turn(loop)
        log.append(who)

    async def keeps_reading(who: int) -> None:
        for _ in range(40):
            await read(who)

    steady = [asyncio.create_task(keeps_reading(who)) for who in range(4)]
    longest = 0
    for _ in range(10_000):
        if all(t.done() for t in steady):
            break
        quitters = [asyncio.create_task(read(-1)) for _ in range(10)]
        await asyncio.sleep(0)
        longest = max(longest, queued(turns))
        for task in quitters:
            task.cancel()
    assert log.count(-1) <= 200 and all(log.count(who) == 40 for who in range(4))
    # Four steady readers, each with ten quitters behind it at most, and one iteration's.
    assert longest <= 4 * 11 + 10
    await settle(turns)


def test_the_last_turns_do_not_keep_a_loop_with_cancelled_waiters(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``_last`` may hold a closed loop's turns until another loop reads; then it lets go."""

    async def queue_and_leave() -> None:
        turns = turns_for(asyncio.get_running_loop())
        loop = asyncio.get_running_loop()
        turns.must_wait(loop, SPENT)
        tasks = [asyncio.create_task(turns.wait_turn(loop)) for _ in range(3)]
        await asyncio.sleep(0)
        assert queued(turns) == 3
        del tasks

    loop = asyncio.new_event_loop()
    loop.run_until_complete(queue_and_leave())
    loop.close()
    gone = weakref.ref(loop)
    del loop
    other = asyncio.new_event_loop()
    try:
        turns_for(other)
        gc.collect()
        assert gone() is None
    finally:
        other.close()


# -- a state machine: readers, cancellations and loop iterations in any order -----------


class TurnsMachine(RuleBasedStateMachine):
    """Readers of a LoopTurns on a loop driven one iteration at a time. Whatever the order
    of starts, cancellations and slice lengths, once nothing more is cancelled every
    reader's reads end within a bounded number of iterations, and the queue empties."""

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.turns = LoopTurns(self.loop)
        self.slice = SPENT
        self.tasks: list[asyncio.Task[None]] = []
        self.wanted: list[int] = []
        self.log: list[int] = []

    async def _reader(self, who: int, reads: int) -> None:
        for _ in range(reads):
            if self.turns.must_wait(self.loop, self.slice):
                await self.turns.wait_turn(self.loop)
            self.log.append(who)

    @initialize()
    def start(self) -> None:
        self.loop.run_until_complete(asyncio.sleep(0))

    @rule(reads=st.integers(1, 4))
    def add_reader(self, reads: int) -> None:
        coro = self._reader(len(self.tasks), reads)
        self.tasks.append(self.loop.create_task(coro))
        self.wanted.append(reads)

    @precondition(lambda self: any(not t.done() for t in self.tasks))
    @rule(data=st.data())
    def cancel_one(self, data: st.DataObject) -> None:
        live = [t for t in self.tasks if not t.done()]
        data.draw(st.sampled_from(live)).cancel()

    @precondition(lambda self: any(not f.done() for f in self.turns._waiting))
    @rule()
    def cancel_the_reader_given_its_turn(self) -> None:
        """Run until the next waiter is given its turn, then cancel it before it runs."""
        head = next(f for f in self.turns._waiting if not f.done())
        for _ in range(4):
            one_iteration(self.loop)
            if head.done():
                break
        for task in self.tasks:
            if getattr(task, "_fut_waiter", None) is head and not task.done():
                task.cancel()

    @rule(spent=st.booleans())
    def slice_length(self, spent: bool) -> None:
        self.slice = SPENT if spent else 60.0

    @rule(n=st.integers(1, 3))
    def run(self, n: int) -> None:
        for _ in range(n):
            one_iteration(self.loop)

    @invariant()
    def an_open_slice_always_ends(self) -> None:
        assert self.turns._slice_start is None or self.turns._end_pending

    def teardown(self) -> None:
        try:
            left = sum(
                w - self.log.count(who)
                for who, (w, t) in enumerate(zip(self.wanted, self.tasks, strict=True))
                if not t.done()
            )
            # Each iteration wakes the next waiter, who reads in the next: two iterations a
            # read at most once all are queued, and a few to start and finish.
            for _ in range(2 * left + 6):
                one_iteration(self.loop)
            for who, (wanted, task) in enumerate(zip(self.wanted, self.tasks, strict=True)):
                assert task.done(), f"reader {who} never got its turn"
                if not task.cancelled():
                    task.result()
                    assert self.log.count(who) == wanted
            assert queued(self.turns) == 0
        finally:
            self.loop.close()


TurnsMachine.TestCase.settings = settings(max_examples=300, stateful_step_count=40, deadline=None)
test_turns_state_machine = TurnsMachine.TestCase


# -- what a reader finds once its turn comes --------------------------------------------


@needs_openat2
async def test_readers_queued_when_rwf_nowait_is_refused_on_a_disk_read_in_the_threads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reader given its turn learns that RWF_NOWAIT is refused (a disk: no more reads on
    the loop); readers that were queued meanwhile must not fall back to a plain pread on the
    loop, which may wait for the disk."""
    a = LocalFileAdapter(tmp_path / "root", durable=False)
    try:
        values = await filled(a, 4)
        assert a._fast_mode == local_module._FAST_NOWAIT
        monkeypatch.setattr(local_module, "FAST_SLICE_SECONDS", SPENT)

        preadv = local_module._preadv
        assert preadv is not None
        calls = 0

        def refused(fd: int, buffers: Any, offset: int, flags: int) -> int:
            # The first read (the one that opens the slice) works; the next is refused,
            # once the others are queued.
            nonlocal calls
            calls += 1
            if calls == 1:
                result: int = preadv(fd, buffers, offset, flags)
                return result
            raise OSError(errno.EOPNOTSUPP, "not supported")

        loop_thread = threading.get_ident()
        on_the_loop: list[int] = []
        pread = os.pread

        def watched(fd: int, n: int, offset: int) -> bytes:
            if threading.get_ident() == loop_thread:
                on_the_loop.append(fd)
            return pread(fd, n, offset)

        monkeypatch.setattr(local_module, "_preadv", refused)
        monkeypatch.setattr(os, "pread", watched)
        reads = a.fast_reads
        got = await asyncio.wait_for(
            asyncio.gather(*(a.get("c", f"k{i % 4}") for i in range(8))), HANG
        )
        assert [data for data, _ in got] == [values[f"k{i % 4}"] for i in range(8)]
        assert a._fast_mode == local_module._FAST_OFF
        assert calls == 2  # the others did not try RWF_NOWAIT again
        assert on_the_loop == [] and a.fast_reads == reads + 1
    finally:
        await a.close()


@needs_openat2
async def test_one_greedy_reader_with_the_real_slice_lets_the_loop_run(
    adapter: LocalFileAdapter,
) -> None:
    """A single task reading cached values in a loop never suspends on its own; once its
    slice is spent it waits for a turn, so other callbacks run meanwhile."""
    values = await filled(adapter, 1)
    counter = IterationCounter(lambda: adapter.fast_reads)
    reads = adapter.fast_reads
    counter.start()
    for _ in range(3000):  # far more than one slice's worth
        assert (await adapter.get("c", "k0"))[0] == values["k0"]
    counter.stopped = True
    assert adapter.fast_reads == reads + 3000
    assert len(counter.marks) > 1  # the loop went round while the reader read
    await settle(turns_for(asyncio.get_running_loop()))
