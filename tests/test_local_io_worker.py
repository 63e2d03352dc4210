"""The I/O thread pool behind the local adapter: results, errors, loops, cancellation, close."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid

import pytest

from asyncblobdict.adapters._io_worker import IOWorker


def _threads_named(prefix: str) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith(prefix + "-")]


def _wait_until(predicate: object, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.01)
    return False


async def test_runs_off_the_loop_thread_and_returns_results() -> None:
    worker = IOWorker(2)
    loop_thread = threading.get_ident()
    try:
        ident = await worker.run(threading.get_ident)
        assert ident != loop_thread
        assert await worker.run(lambda a, b: a + b, 2, 3) == 5
    finally:
        await worker.close()


async def test_exceptions_reach_the_awaiting_task() -> None:
    worker = IOWorker(1)

    def boom() -> None:
        raise ValueError("boom")

    try:
        with pytest.raises(ValueError, match="boom"):
            await worker.run(boom)
        with pytest.raises(RuntimeError, match="StopIteration"):
            await worker.run(next, iter([]))
        assert await worker.run(lambda: 1) == 1  # the thread survived
    finally:
        await worker.close()


async def test_many_concurrent_jobs_all_settle_in_batches() -> None:
    worker = IOWorker(4)
    try:
        results = await asyncio.gather(*(worker.run(lambda i=i: i * i) for i in range(2000)))
        assert results == [i * i for i in range(2000)]
    finally:
        await worker.close()


async def test_cancelled_job_is_dropped_and_the_pool_keeps_working() -> None:
    worker = IOWorker(1)
    started, gate = threading.Event(), threading.Event()
    ran: list[int] = []

    def block() -> bool:
        started.set()
        return gate.wait(30)

    try:
        blocker = worker.run(block)
        queued = worker.run(ran.append, 1)  # behind the blocker on the only thread
        assert await asyncio.to_thread(started.wait, 30)  # the thread is busy with the blocker
        queued.cancel()
        gate.set()
        assert await blocker is True
        with pytest.raises(asyncio.CancelledError):
            await queued
        assert await worker.run(lambda: 7) == 7
        assert ran == []  # cancelled before it started, so skipped
    finally:
        await worker.close()


def test_one_pool_serves_successive_and_concurrent_event_loops() -> None:
    worker = IOWorker(2)

    async def use(n: int) -> list[int]:
        return list(await asyncio.gather(*(worker.run(lambda i=i: i + n) for i in range(50))))

    assert asyncio.run(use(0)) == list(range(50))
    assert asyncio.run(use(1)) == list(range(1, 51))

    results: dict[int, list[int]] = {}

    def in_thread(n: int) -> None:
        results[n] = asyncio.run(use(n))

    threads = [threading.Thread(target=in_thread, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == {n: list(range(n, n + 50)) for n in range(4)}
    asyncio.run(worker.close())


def test_close_stops_the_threads_is_idempotent_and_the_pool_restarts() -> None:
    name = "test-pool-" + uuid.uuid4().hex[:8]
    worker = IOWorker(3, name=name)
    assert _threads_named(name) == []  # lazy start

    async def once() -> int:
        value = await worker.run(lambda: 42)
        assert len(_threads_named(name)) == 1  # started as the work needs them
        await worker.close()
        await worker.close()
        return value

    assert asyncio.run(once()) == 42
    assert _wait_until(lambda: _threads_named(name) == [])
    assert asyncio.run(once()) == 42
    assert _wait_until(lambda: _threads_named(name) == [])


def test_an_unclosed_pool_stops_its_threads_when_collected() -> None:
    import gc

    name = "test-pool-" + uuid.uuid4().hex[:8]

    async def use() -> None:
        worker = IOWorker(2, name=name)
        await worker.run(lambda: None)

    asyncio.run(use())
    gc.collect()
    assert _wait_until(lambda: _threads_named(name) == [])


def test_rejects_an_empty_pool() -> None:
    with pytest.raises(ValueError):
        IOWorker(0)


async def test_one_caller_at_a_time_keeps_to_one_thread() -> None:
    # Idle threads all waiting on the queue would each be woken in turn by a job (and fight
    # for the GIL): a lone caller's jobs go to the one thread it needs.
    worker = IOWorker(4)
    try:
        idents = {await worker.run(threading.get_ident) for _ in range(200)}
        assert len(idents) == 1
    finally:
        await worker.close()


async def test_concurrent_jobs_get_up_to_threads_threads_and_no_more() -> None:
    name = "test-pool-" + uuid.uuid4().hex[:8]
    worker = IOWorker(3, name=name)
    barrier = threading.Barrier(3, timeout=30)  # passes only with three jobs running at once
    try:
        assert await asyncio.gather(*(worker.run(barrier.wait) for _ in range(3))) is not None
        await asyncio.gather(*(worker.run(time.sleep, 0.01) for _ in range(20)))
        assert len(_threads_named(name)) == 3
    finally:
        await worker.close()
    assert _wait_until(lambda: _threads_named(name) == [])
