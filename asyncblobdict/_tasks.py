"""Bounded concurrency that never leaves a task (or an open iterator) behind."""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, TypeVar

__all__ = ["bounded_in_order", "close_iterator", "gather_bounded"]

T = TypeVar("T")


async def close_iterator(iterator: AsyncIterator[Any]) -> None:
    """Close an async iterator now (its caller stops early), not when it is collected."""
    close = getattr(iterator, "aclose", None)
    if close is not None:
        await close()


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
    """The results of a window of started jobs, taken one after the other; taking one
    starts the next job."""

    __slots__ = ("_fill", "_window")

    def __init__(self, window: deque[asyncio.Future[T]], fill: Callable[[], None]) -> None:
        self._window = window
        self._fill = fill

    async def __anext__(self) -> T:
        if not self._window:
            raise StopAsyncIteration
        result = await self._window[0]
        self._window.popleft()  # taken: its memory goes with it, and a slot is free
        self._fill()
        return result


@contextlib.asynccontextmanager
async def bounded_in_order(
    jobs: Sequence[Callable[[], Awaitable[T]]], limit: int
) -> AsyncIterator[AsyncIterator[T]]:
    """Run ``job()`` for every job with at most ``limit`` of them started and not yet taken;
    iterate the results in job order, each as soon as it and those before it are done.

    ::

        async with bounded_in_order(jobs, 4) as results:
            async for piece in results:
                ...

    A result the caller has not taken yet holds its slot, so a slow consumer holds back the
    jobs behind (a streamed read keeps at most ``limit`` pieces in memory). Jobs start
    lazily (a job that never starts never creates its coroutine). A job's exception is
    raised when the iteration reaches it. Leaving the block, by the end of the iteration,
    ``break``, an exception or cancellation, cancels every job still running and waits for
    all of them, so nothing keeps running behind the caller's back.
    """
    window: deque[asyncio.Future[T]] = deque()
    pending = iter(jobs)

    def fill() -> None:
        while len(window) < limit:
            job = next(pending, None)
            if job is None:
                return
            window.append(asyncio.ensure_future(_started(job)))

    fill()
    try:
        yield _InOrder(window, fill)
    finally:
        await _cancel_all(list(window))


async def _started(job: Callable[[], Awaitable[T]]) -> T:
    # The job's coroutine is made once its task runs: a task cancelled before that leaves
    # no coroutine that was never awaited.
    return await job()


async def _cancel_all(tasks: Sequence[asyncio.Future[Any]]) -> None:
    """Cancel the tasks still running and wait until all have ended (their errors retrieved)."""
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
