"""Fair turns for work done on the event loop without suspending (reads from the page cache).

A read that completes on the loop never suspends its task, so readers could keep the loop
to themselves. Each loop gets one ``LoopTurns``: work in one loop iteration shares a time
slice, and once the slice is spent every further reader waits in a FIFO; each later
iteration wakes the head of the FIFO, which may then work for a slice of its own. So an
iteration lasts about one slice plus one read, whatever the number of readers, and every
reader gets its turn.
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections import deque

__all__ = ["LoopTurns", "turns_for"]


class LoopTurns:
    """One event loop's slice and queue of waiting readers. Used only from the loop's thread."""

    __slots__ = ("__weakref__", "_end_pending", "_loop", "_slice_start", "_waiting")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = weakref.ref(loop)
        # When this iteration's slice opened, or None when none is open.
        self._slice_start: float | None = None
        self._end_pending = False  # an _end callback is scheduled
        self._waiting: deque[asyncio.Future[None]] = deque()

    def owned_by(self, loop: asyncio.AbstractEventLoop) -> bool:
        return self._loop() is loop

    def must_wait(self, loop: asyncio.AbstractEventLoop, slice_seconds: float) -> bool:
        """Whether the caller must ``wait_turn()`` before working on the loop: this
        iteration's slice is spent, or others are waiting and none is open."""
        start = self._slice_start
        if start is None:
            if self._waiting:
                return True  # those waiting go first
            self._open(loop)
            return False
        return loop.time() - start > slice_seconds

    async def wait_turn(self, loop: asyncio.AbstractEventLoop) -> None:
        """Wait in the FIFO for a later iteration; the caller may then work at least once."""
        turn: asyncio.Future[None] = loop.create_future()
        self._waiting.append(turn)
        self._schedule_end(loop)
        try:
            await turn
        except asyncio.CancelledError:
            if not turn.cancelled():
                # Given the turn, then cancelled before it could use it: pass it on, or
                # those behind would wait for an _end nobody scheduled.
                self._wake_next()
            raise
        if self._slice_start is None:
            self._open(loop)

    def _open(self, loop: asyncio.AbstractEventLoop) -> None:
        self._slice_start = loop.time()
        self._schedule_end(loop)

    def _schedule_end(self, loop: asyncio.AbstractEventLoop) -> None:
        if not self._end_pending:
            self._end_pending = True
            loop.call_soon(self._end)  # runs in the next iteration

    def _end(self) -> None:
        self._end_pending = False
        self._slice_start = None
        self._wake_next()

    def _wake_next(self) -> None:
        waiting = self._waiting
        while waiting:
            turn = waiting.popleft()
            if not turn.done():  # not cancelled while it waited
                turn.set_result(None)
                return


_by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, LoopTurns] = (
    weakref.WeakKeyDictionary()
)
_last: LoopTurns | None = None
_adding = threading.Lock()  # loops of several threads may be added at once


def turns_for(loop: asyncio.AbstractEventLoop) -> LoopTurns:
    """The turns of ``loop``, shared by every adapter reading on it."""
    global _last
    last = _last  # read once: another thread's loop may replace it
    if last is not None and last.owned_by(loop):
        return last
    turns = _by_loop.get(loop)
    if turns is None:
        with _adding:
            # A loop closed with readers still queued: their futures hold the loop, so its
            # turns (a value here) would keep their own key alive for good.
            for closed in [old for old in _by_loop if old.is_closed()]:
                _by_loop.pop(closed, None)
            turns = _by_loop.setdefault(loop, LoopTurns(loop))
    _last = turns
    return turns
