"""asyncblobdict._tasks: bounded concurrency that starts jobs lazily and leaves none behind."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from asyncblobdict._tasks import bounded_in_order, gather_bounded


class Jobs:
    """Jobs that each wait for their own gate; records starts, ends and the peak running."""

    def __init__(self, n: int) -> None:
        self.gates = [asyncio.Event() for _ in range(n)]
        self.made: list[int] = []  # factories called (coroutines created)
        self.ended: list[int] = []  # jobs that ran their finally
        self.running = 0
        self.peak = 0

    def job(self, i: int) -> Callable[[], Awaitable[int]]:
        def make() -> Awaitable[int]:
            self.made.append(i)
            return self.run(i)

        return make

    async def run(self, i: int) -> int:
        self.running += 1
        self.peak = max(self.peak, self.running)
        try:
            await self.gates[i].wait()
            if i == 99:
                raise RuntimeError("job 99 failed")
            return i * 10
        finally:
            self.running -= 1
            self.ended.append(i)

    def all(self) -> list[Callable[[], Awaitable[int]]]:
        return [self.job(i) for i in range(len(self.gates))]


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_in_order_yields_in_job_order_while_later_jobs_finish_first() -> None:
    jobs = Jobs(6)
    seen: list[int] = []
    async with bounded_in_order(jobs.all(), 3) as results:
        await settle()
        assert jobs.made == [0, 1, 2]  # three running, the rest not even created
        for gate in reversed(jobs.gates):  # finish in reverse order
            gate.set()
        async for value in results:
            seen.append(value)
    assert seen == [0, 10, 20, 30, 40, 50]
    assert jobs.peak == 3


async def test_in_order_leaving_early_cancels_and_awaits_the_rest() -> None:
    jobs = Jobs(8)
    jobs.gates[0].set()
    async with bounded_in_order(jobs.all(), 2) as results:
        async for value in results:
            assert value == 0
            break
    # Job 1 (and job 2, if it took job 0's slot already) were running: cancelled and
    # finished before the block was left; the others were never created.
    assert jobs.running == 0
    assert sorted(jobs.ended) == sorted(jobs.made)
    assert set(jobs.made) <= {0, 1, 2}


async def test_in_order_raises_a_failure_when_reached_and_cleans_up() -> None:
    jobs = Jobs(3)
    failing = Jobs(100)
    job_list = [jobs.job(0), failing.job(99), jobs.job(2)]
    seen: list[int] = []
    jobs.gates[0].set()
    failing.gates[99].set()
    with pytest.raises(RuntimeError, match="job 99"):
        async with bounded_in_order(job_list, 3) as results:
            async for value in results:
                seen.append(value)
    assert seen == [0]
    assert jobs.running == 0 and failing.running == 0


async def test_in_order_cancelled_caller_leaves_no_job_running_or_uncreated_coroutine() -> None:
    jobs = Jobs(10)

    async def consume() -> list[int]:
        async with bounded_in_order(jobs.all(), 2) as results:
            return [value async for value in results]

    task = asyncio.ensure_future(consume())
    await settle()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # Cancelling the caller cancels job 0 first (the one it awaits), which may hand its
    # slot to job 2 before the block cancels the rest: whatever started has ended, and the
    # jobs behind were never created.
    assert jobs.running == 0 and sorted(jobs.ended) == sorted(jobs.made)
    assert jobs.made[:2] == [0, 1] and len(jobs.made) <= 3


async def test_gather_bounded_limits_orders_and_cancels_on_failure() -> None:
    jobs = Jobs(5)
    for gate in jobs.gates:
        gate.set()
    assert await gather_bounded(jobs.all(), 2) == [0, 10, 20, 30, 40]
    assert jobs.peak <= 2

    stuck = Jobs(100)
    failing = [stuck.job(0), stuck.job(99), stuck.job(1), stuck.job(2)]
    stuck.gates[99].set()
    with pytest.raises(RuntimeError, match="job 99"):
        await gather_bounded(failing, 2)
    assert stuck.running == 0 and stuck.made == [0, 99]  # the failed worker took no more


async def test_in_order_results_not_taken_hold_back_later_jobs() -> None:
    jobs = Jobs(6)
    for gate in jobs.gates:
        gate.set()
    async with bounded_in_order(jobs.all(), 2) as results:
        await settle()
        assert jobs.made == [0, 1]  # both done, neither taken: no third job
        assert await results.__anext__() == 0
        await settle()
        assert jobs.made == [0, 1, 2]
        assert [value async for value in results] == [10, 20, 30, 40, 50]
