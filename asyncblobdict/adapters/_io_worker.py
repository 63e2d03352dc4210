"""A small thread pool for blocking I/O that hands results back to the event loop in batches.

``asyncio.to_thread`` costs one executor round trip and one loop wakeup per call, which is
about ten times the cost of reading a small file. Here workers take jobs from a
``queue.SimpleQueue`` and put finished results in a per-loop mailbox; only the result that
finds the mailbox empty wakes the loop, and one loop callback then settles every result that
has arrived since. Under load many results share one wakeup.

One pool serves any number of event loops (each job remembers its loop), starts a thread
only when a job finds none idle (so one caller at a time keeps one thread busy, and a job wakes
exactly that thread), and stops them on :meth:`IOWorker.close`; it may be used again afterwards.
"""

from __future__ import annotations

import asyncio
import os
import queue
import threading
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["IOWorker"]

T = TypeVar("T")

# (function or None for "stop", its arguments, the future to settle or None, the mailbox)
_Job = tuple[
    "Callable[..., Any] | None", tuple[Any, ...], "asyncio.Future[Any] | None", "_Mailbox | None"
]


class _Mailbox:
    """Results waiting for one event loop."""

    __slots__ = ("_items", "_lock", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._lock = threading.Lock()
        self._items: list[tuple[asyncio.Future[Any], bool, Any]] = []

    def deliver(self, fut: asyncio.Future[Any], ok: bool, value: Any) -> None:
        """Called from a worker thread."""
        with self._lock:
            self._items.append((fut, ok, value))
            first = len(self._items) == 1
        if first:
            try:
                self.loop.call_soon_threadsafe(self._drain)
            except RuntimeError:
                # The loop is closed: nobody is waiting for these results any more.
                with self._lock:
                    self._items.clear()

    def _drain(self) -> None:
        with self._lock:
            items, self._items = self._items, []
        for fut, ok, value in items:
            if fut.cancelled():
                continue
            if ok:
                fut.set_result(value)
            else:
                fut.set_exception(value)


class _Pool:
    """The queue and threads of one run of an IOWorker (between start and close)."""

    __slots__ = ("idle", "jobs", "started")

    def __init__(self) -> None:
        self.jobs: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        # One token per job finished since, roughly "a thread is (about to be) idle": as in
        # concurrent.futures.ThreadPoolExecutor, a job that takes one starts no thread.
        self.idle = threading.Semaphore(0)
        self.started = 0


def _work(pool: _Pool) -> None:
    # A module-level function, so the threads hold no reference to the IOWorker and an
    # unclosed worker can still be garbage collected (its finalizer stops them).
    get, idle = pool.jobs.get, pool.idle
    while True:
        fn, args, fut, mailbox = get()
        if fn is None:
            if fut is not None and mailbox is not None:
                mailbox.deliver(fut, True, None)
            return
        assert fut is not None and mailbox is not None
        if fut.cancelled():  # a benign racy read: at worst we do work nobody awaits
            idle.release()
            continue
        try:
            ok, value = True, fn(*args)
        except BaseException as exc:  # handed to the awaiting task, never lost
            ok, value = False, exc
            if isinstance(exc, StopIteration):  # a future refuses it (PEP 479)
                value = RuntimeError(f"{fn!r} raised StopIteration")
                value.__cause__ = exc
        # Free before the result is out: the caller it wakes may send the next job at once,
        # and that job should find this thread rather than start another.
        idle.release()
        mailbox.deliver(fut, ok, value)
        # Drop references while idle, so results and buffers are not kept alive.
        del fn, args, fut, mailbox, value


def _rescue(pool: _Pool, name: str) -> None:
    """Run the jobs of a pool closed as they were sent (from another thread).

    Such a job may sit behind the stop marks close() sent, one per thread, with no thread
    left to take it. One more thread with one more mark takes every job before the last
    mark (each thread takes exactly one); it is not counted, so close() waits as it would.
    """
    threading.Thread(target=_work, args=(pool,), name=f"{name}-late", daemon=True).start()
    pool.jobs.put((None, (), None, None))


def _stop(pool: _Pool) -> None:
    for _ in range(pool.started):
        pool.jobs.put((None, (), None, None))


_all_workers: weakref.WeakSet[IOWorker] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    # Threads do not survive fork(); forget them so the child starts its own.
    for worker in list(_all_workers):
        worker._reset_after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


class IOWorker:
    """A pool of up to ``threads`` daemon threads running blocking calls for asyncio code.

    ``await worker.run(fn, *args)`` runs ``fn(*args)`` in a pool thread and returns its result
    (or raises its exception). If the awaiting task is cancelled before the job starts, the
    job is skipped; once started it runs to completion and its result is dropped.
    """

    def __init__(self, threads: int = 4, *, name: str = "asyncblobdict-io") -> None:
        if threads < 1:
            raise ValueError(f"threads must be at least 1, not {threads}")
        self.threads = threads
        self.name = name
        self._lock = threading.Lock()
        self._pool: _Pool | None = None
        self._finalizer: weakref.finalize[Any, IOWorker] | None = None
        self._mailboxes: dict[asyncio.AbstractEventLoop, _Mailbox] = {}
        self._last: tuple[asyncio.AbstractEventLoop | None, _Mailbox | None] = (None, None)
        _all_workers.add(self)

    def __repr__(self) -> str:
        state = "running" if self._pool is not None else "idle"
        return f"IOWorker(threads={self.threads}, {state})"

    def run(self, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        """Schedule ``fn(*args)`` on a pool thread; await the returned future for its result."""
        loop = asyncio.get_running_loop()
        last_loop, mailbox = self._last
        if last_loop is not loop or mailbox is None:
            mailbox = self._mailbox_for(loop)
        fut: asyncio.Future[T] = loop.create_future()
        pool = self._pool
        if pool is None:
            pool = self._start()
        # The thread first: if none can start, nothing is queued (a queued job would run
        # later, with the next one, though its caller was told it failed).
        if not pool.idle.acquire(blocking=False):
            self._add_thread(pool)
        pool.jobs.put((fn, args, fut, mailbox))
        if self._pool is not pool:
            _rescue(pool, self.name)  # closed by another thread meanwhile
        return fut

    def _mailbox_for(self, loop: asyncio.AbstractEventLoop) -> _Mailbox:
        with self._lock:
            mailbox = self._mailboxes.get(loop)
            if mailbox is None:
                # Forget loops that have ended (each asyncio.run makes a new one).
                for old in [lp for lp in self._mailboxes if lp.is_closed()]:
                    del self._mailboxes[old]
                mailbox = self._mailboxes[loop] = _Mailbox(loop)
            self._last = (loop, mailbox)
            return mailbox

    def _start(self) -> _Pool:
        with self._lock:
            if self._pool is not None:
                return self._pool
            pool = self._pool = _Pool()
            self._finalizer = weakref.finalize(self, _stop, pool)
            return pool

    def _add_thread(self, pool: _Pool) -> None:
        """Start one more thread for ``pool``, up to ``threads`` (none once it is closed)."""
        with self._lock:
            if self._pool is not pool or pool.started >= self.threads:
                return
            pool.started += 1
            number = pool.started - 1
        try:
            threading.Thread(
                target=_work, args=(pool,), name=f"{self.name}-{number}", daemon=True
            ).start()
        except RuntimeError:
            # Not started ("can't start new thread": the system's limit): close() must not
            # wait for it. (Anything else, as KeyboardInterrupt while start() waits for the
            # thread to run, may come from a thread that did start: it stays counted.)
            # Threads already running will take the job; with none, the caller gets the error.
            with self._lock:
                pool.started -= 1
                if pool.started:
                    return
            raise

    async def close(self) -> None:
        """Stop the threads once the jobs already queued have run. Safe to call twice."""
        with self._lock:
            pool, self._pool = self._pool, None
            if self._finalizer is not None:
                self._finalizer.detach()
                self._finalizer = None
        if pool is None:
            return
        loop = asyncio.get_running_loop()
        mailbox = self._mailbox_for(loop)
        done = [loop.create_future() for _ in range(pool.started)]
        for fut in done:
            pool.jobs.put((None, (), fut, mailbox))
        await asyncio.gather(*done)

    def _reset_after_fork(self) -> None:
        self._lock = threading.Lock()
        self._pool = None
        self._finalizer = None
        self._mailboxes = {}
        self._last = (None, None)
