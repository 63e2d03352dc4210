"""Hostile tests of the changes since c1039e1: the marshal copy of cached JSON, store writes
handing their outcome to a waiter, I/O threads started on demand, and the local adapter's
mtime marks that say where a record went.

Each test that found a defect says so; the others assert what the new code could get wrong.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import uuid
from pathlib import Path
from typing import Any

import pytest

from asyncblobdict import AsyncBlobStore, MemoryAdapter, StorageError
from asyncblobdict.adapters._io_worker import IOWorker


class _Counting(MemoryAdapter):
    """A memory adapter that counts the reads reaching it."""

    def __init__(self) -> None:
        super().__init__()
        self.gets = 0

    async def get(self, container: str, key: str) -> Any:
        self.gets += 1
        return await super().get(container, key)


# -- 1: the marshal copy of cached JSON ----------------------------------------------------


async def test_a_value_that_fits_the_cache_stays_cached_when_its_copy_would_not_fit() -> None:
    # Defect: the first hit kept the copy, which pushed the entry over cache_max_bytes and
    # evicted the entry itself; every later read went to storage (none did before the copy).
    adapter = _Counting()
    store = AsyncBlobStore(adapter, "c", "write_through", cache_max_bytes=40)
    await store.set_json("k", "x" * 30)  # 32 bytes of JSON: fits; with its copy it would not
    for _ in range(5):
        assert await store.get_json("k") == "x" * 30
    assert adapter.gets == 0
    assert store._table.total_bytes <= 40
    await store.close()


async def test_a_copy_never_evicts_its_own_entry_beside_pending_changes() -> None:
    # The same defect when pending write-back bytes (never evicted) fill most of the bound.
    adapter = _Counting()
    writer = AsyncBlobStore(adapter, "c")
    await writer.set_json("k", "x" * 30)
    store = AsyncBlobStore(adapter, "c", "write_back", cache_max_bytes=100)
    await store.set_json("p", "y" * 58)  # 60 pending bytes
    assert await store.get_json("k") == "x" * 30  # read once: 32 cached bytes
    for _ in range(5):
        assert await store.get_json("k") == "x" * 30
    assert adapter.gets == 1
    assert store._table.total_bytes <= 100
    await store.sync()
    await store.close()


# -- 2: store writes hand their outcome to a waiter ----------------------------------------


class _Abort(BaseException):
    """A BaseException that is neither CancelledError nor KeyboardInterrupt/SystemExit
    (as pytest's own outcomes, or another framework's cancellation, are)."""


class _Raising(MemoryAdapter):
    """Raises ``error`` from put while it is set; ``gate`` set: waits for it first."""

    def __init__(self) -> None:
        super().__init__()
        self.error: BaseException | None = None
        self.gate: asyncio.Event | None = None

    async def put(self, container: str, key: str, data: bytes, **kw: Any) -> str:
        if self.gate is not None:
            await self.gate.wait()
        if self.error is not None:
            raise self.error
        return await super().put(container, key, data, **kw)


async def _settle(task: asyncio.Future[Any], steps: int = 50) -> None:
    """Let the loop run until ``task`` is done, a bounded number of steps (the memory
    adapter needs a handful): a task still pending after them is stuck for good."""
    for _ in range(steps):
        if task.done():
            return
        await asyncio.sleep(0)


async def test_an_adapter_raising_a_base_exception_reaches_the_caller_and_frees_the_key() -> None:
    # Defect: the write task let a BaseException that is not an Exception end the task
    # without telling the waiter: the caller waited forever, holding the key (asyncio.shield,
    # used before, passed it on), and the next operation on the key hung too.
    adapter = _Raising()
    store = AsyncBlobStore(adapter, "c", "write_through")
    adapter.error = _Abort("aborted")
    first = asyncio.ensure_future(store.set_json("k", 1))
    await _settle(first)
    assert first.done()
    with pytest.raises(_Abort):
        first.result()
    adapter.error = None
    second = asyncio.ensure_future(store.set_json("k", 2))
    await _settle(second)
    assert second.done() and second.result() is None
    assert await store.get_json("k") == 2
    await store.close()


async def test_a_failed_write_whose_caller_is_cancelled_as_it_fails_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Defect: the write failed and handed its error to the waiter; the caller, cancelled
    # before it resumed, raised CancelledError and the failure went nowhere (a caller
    # cancelled while the write runs has it logged).
    adapter = _Raising()
    store = AsyncBlobStore(adapter, "c")
    adapter.gate = asyncio.Event()
    adapter.error = StorageError("the disk is on fire", container="c", key="k")
    caller = asyncio.ensure_future(store.set_json("k", 1))
    for _ in range(5):
        await asyncio.sleep(0)  # the write waits at the gate
    assert not caller.done()
    with caplog.at_level(logging.WARNING, logger="asyncblobdict"):
        adapter.gate.set()
        await asyncio.sleep(0)  # the write task fails and hands the error to the waiter
        caller.cancel()  # before the caller resumed
        with pytest.raises(asyncio.CancelledError):
            await caller
    assert any("the disk is on fire" in r.getMessage() for r in caplog.records)
    adapter.gate = None
    adapter.error = None
    await store.set_json("k", 2)  # the key was released
    assert await store.get_json("k") == 2
    await store.close()


# -- 3: I/O threads start on demand --------------------------------------------------------


async def test_a_job_whose_thread_could_not_start_never_runs_later_and_close_returns(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Defect: run() queued the job, then failed to start the thread it needed and raised;
    # the job stayed queued and ran with the next job (a write its caller was told had
    # failed), and close() waited forever for the thread that never started.
    name = "hostile-" + uuid.uuid4().hex[:8]
    start = threading.Thread.start
    failures = [1]

    def failing_start(thread: threading.Thread) -> None:
        if thread.name.startswith(name) and failures[0]:
            failures[0] -= 1
            raise RuntimeError("can't start new thread")
        start(thread)

    monkeypatch.setattr(threading.Thread, "start", failing_start)
    worker = IOWorker(2, name=name)
    ran: list[str] = []
    with pytest.raises(RuntimeError):
        worker.run(ran.append, "refused")
    assert await worker.run(ran.append, "next") is None
    assert ran == ["next"]
    # A hang detector, not a timing assertion: close() ends in microseconds or never.
    await asyncio.wait_for(worker.close(), timeout=30)
    assert ran == ["next"]


async def test_a_thread_that_cannot_start_beside_running_ones_leaves_the_job_to_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    name = "hostile-" + uuid.uuid4().hex[:8]
    start = threading.Thread.start

    def second_fails(thread: threading.Thread) -> None:
        if thread.name == f"{name}-1":
            raise RuntimeError("can't start new thread")
        start(thread)

    monkeypatch.setattr(threading.Thread, "start", second_fails)
    worker = IOWorker(2, name=name)
    release = threading.Event()
    busy = worker.run(release.wait, 30)  # holds the one thread that starts
    queued = worker.run(lambda: "ran")  # its thread cannot start: it waits for the first
    assert not queued.done()
    release.set()
    assert await busy is True
    assert await queued == "ran"
    await asyncio.wait_for(worker.close(), timeout=30)  # a hang detector, as above
