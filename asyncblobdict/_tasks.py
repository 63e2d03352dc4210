"""Bounded concurrency that never leaves a task behind."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, TypeVar

__all__ = ["bounded_in_order", "gather_bounded"]

T = TypeVar("T")


async def gather_bounded(jobs: Sequence[Callable[[], Awaitable[T]]], limit: int) -> list[T]:
    """Run ``job()`` for every job, at most ``limit`` at a time; results in job order.

    Jobs are started lazily (a job that never starts never creates its coroutine). On the
    first failure, or if the caller is cancelled, every running job is cancelled and awaited
    before the exception propagates, so nothing keeps running behind the caller's back.
    """
    results: list[T | None] = [None] * len(jobs)
    queue = iter(enumerate(jobs))

    async def worker() -> None:
        for index, job in queue:
            results[index] = await job()

    workers = [asyncio.ensure_future(worker()) for _ in range(min(limit, len(jobs)))]
    try:
        await asyncio.gather(*workers)
    except BaseException:
        await _cancel_all(workers)
        raise
    return results  # type: ignore[return-value]


class _InOrder(AsyncIterator[T]):
    """The results of ``tasks``, awaited one after the other."""

    __slots__ = ("_next", "_tasks")

    def __init__(self, tasks: Sequence[asyncio.Future[T]]) -> None:
        self._tasks = tasks
        self._next = 0

    async def __anext__(self) -> T:
        if self._next >= len(self._tasks):
            raise StopAsyncIteration
        task = self._tasks[self._next]
        self._next += 1
        return await task


@contextlib.asynccontextmanager
async def bounded_in_order(
    jobs: Sequence[Callable[[], Awaitable[T]]], limit: int
) -> AsyncIterator[AsyncIterator[T]]:
    """Run ``job()`` for every job, at most ``limit`` at a time; iterate the results in job
    order, each as soon as it and those before it are done.

    ::

        async with bounded_in_order(jobs, 4) as results:
            async for piece in results:
                ...

    Jobs start as soon as a slot is free, whether or not the caller has taken the results
    before them, and lazily (a job that never starts never creates its coroutine). A job's
    exception is raised when the iteration reaches it. Leaving the block, by the end of the
    iteration, ``break``, an exception or cancellation, cancels every job still running and
    waits for all of them, so nothing keeps running behind the caller's back.
    """
    semaphore = asyncio.Semaphore(limit)

    async def run(job: Callable[[], Awaitable[T]]) -> T:
        async with semaphore:
            return await job()

    tasks = [asyncio.ensure_future(run(job)) for job in jobs]
    try:
        yield _InOrder(tasks)
    finally:
        await _cancel_all(tasks)


async def _cancel_all(tasks: Sequence[asyncio.Future[Any]]) -> None:
    """Cancel the tasks still running and wait until all have ended (their errors retrieved)."""
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
