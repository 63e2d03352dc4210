"""BlobStore: the AsyncBlobStore API without ``await``, for scripts, notebooks and threads.

Each BlobStore runs an AsyncBlobStore on an event loop of its own, in a private daemon thread;
every method hands its coroutine to that loop and waits for the answer. So it works where a
loop is already running in the calling thread (Jupyter), and from many threads at once: the
loop serialises them as the async store serialises tasks.

A loop per store, rather than one shared by all: a store's loop lives and dies with it (no
process-wide state to start, fork or tear down), and a slow ``update_json`` function or a busy
store never delays another store's calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import threading
import weakref
from collections.abc import (
    AsyncIterator,
    Callable,
    Coroutine,
    Generator,
    Iterable,
    Iterator,
    Mapping,
)
from types import TracebackType
from typing import Any, Final, TypeVar, cast

from ._options import _NO_DEFAULT
from ._streaming import Chunks, Progress
from ._write_back import EtagBehavior
from .adapters.base import Adapter, BlobInfo
from .errors import AsyncBlobDictError
from .expiry import Ttl
from .modes import CacheMode, ConcurrencyMode, SyncResult
from .store import AsyncBlobStore

__all__ = ["BlobStore"]

logger = logging.getLogger("asyncblobdict")

_T = TypeVar("_T")
_ITER_BATCH: Final = 1000
"""Names iter_keys takes from the loop per hop between threads."""
_EXIT_JOIN_SECONDS: Final = 5.0
"""How long a finalizer (garbage collection, interpreter exit) waits for the loop to end."""
_numbers = itertools.count(1)


def _run_loop(loop: asyncio.AbstractEventLoop) -> None:
    """The body of a store's thread: run the loop until stopped, then wind it down."""
    asyncio.set_event_loop(loop)
    try:
        loop.run_forever()
    finally:
        try:
            # Calls handed over just before the stop never started: cancel them, so every
            # waiting caller gets an answer.
            leftovers = asyncio.all_tasks(loop)
            for task in leftovers:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*leftovers, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            asyncio.set_event_loop(None)
            loop.close()


def _stop_loop(loop: asyncio.AbstractEventLoop, thread: threading.Thread) -> None:
    """Finalizer: stop the loop of a store that was never closed, and let its thread end.

    Never waits for long: a daemon thread cannot keep the interpreter from exiting, and this
    may run inside that very thread (garbage collection happens anywhere).
    """
    try:
        loop.call_soon_threadsafe(loop.stop)
    except RuntimeError:  # the loop is closed already
        return
    if thread is not threading.current_thread():
        thread.join(_EXIT_JOIN_SECONDS)


async def _open(make_store: Callable[[], AsyncBlobStore]) -> AsyncBlobStore:
    # Created on the store's own loop, so whatever it binds to a loop binds to that one.
    return make_store()


async def _next_chunk(chunks: AsyncIterator[bytes]) -> bytes | None:
    try:
        return await anext(chunks)
    except StopAsyncIteration:
        return None


async def _take(names: AsyncIterator[str], count: int) -> list[str]:
    batch: list[str] = []
    try:
        while len(batch) < count:
            batch.append(await anext(names))
    except StopAsyncIteration:
        pass
    return batch


async def _call(fn: Callable[[], _T]) -> _T:
    return fn()


class _Call:
    """One call handed to a store's loop; ``done`` is released once it has an answer.

    A bare lock and a task, rather than run_coroutine_threadsafe: its concurrent future
    (a Condition, and callbacks chaining two futures) doubled the cost of each call.
    """

    __slots__ = ("abandoned", "coro", "done", "task")

    def __init__(self, coro: Coroutine[Any, Any, Any]) -> None:
        self.coro = coro
        self.done = threading.Lock()
        self.done.acquire()
        self.task: asyncio.Task[Any] | None = None
        self.abandoned = False

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """On the loop: run the coroutine as a task."""
        if self.abandoned:
            self.coro.close()
            self.done.release()
            return
        self.task = loop.create_task(self.coro)
        self.task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[Any]) -> None:
        self.done.release()

    def cancel(self) -> None:
        """On the loop: the caller stopped waiting."""
        self.abandoned = True
        if self.task is not None:
            self.task.cancel()


class BlobStore:
    """An AsyncBlobStore with the same methods, called without ``await``.

    Takes the arguments of AsyncBlobStore (``BlobStore(adapter, container_name,
    cache_mode=..., ...)``); the adapter may be made anywhere. Safe to call from any number of
    threads, and from code that runs an event loop of its own. Use it with ``with``, or call
    ``close()``: that syncs pending write-back changes (errors propagate) and ends the thread.
    ``update_json``'s ``fn`` runs on the store's thread and must not call the store.
    """

    def __init__(self, adapter: Adapter, container_name: str, *args: Any, **kwargs: Any) -> None:
        self._start(lambda: AsyncBlobStore(adapter, container_name, *args, **kwargs))

    def _start(self, make_store: Callable[[], AsyncBlobStore]) -> None:
        """Start the store's thread and loop, and make its AsyncBlobStore there."""
        self._lock = threading.Lock()  # guards _closed against calls being handed over
        self._close_lock = threading.Lock()  # one close() at a time
        self._closed = False
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=_run_loop,
            args=(self._loop,),
            name=f"asyncblobdict-BlobStore-{next(_numbers)}",
            daemon=True,
        )
        self._thread.start()
        # Holds the loop and the thread, never self: a dropped store is still collected.
        self._finalizer = weakref.finalize(self, _stop_loop, self._loop, self._thread)
        try:
            self._store = self._run(_open(make_store))
        except BaseException:
            self._closed = True
            self._end_thread()
            raise

    @classmethod
    def open(cls, address: str, **options: Any) -> BlobStore:
        """The store at ``address``, as ``open_store(address, **options)`` makes it."""
        from .addresses import open_store

        store = cls.__new__(cls)
        store._start(lambda: open_store(address, **options))
        return store

    def __repr__(self) -> str:
        store = getattr(self, "_store", None)
        if store is None:
            return "BlobStore(<not opened>)"
        return (
            f"BlobStore({store.adapter!r}, {store.container_name!r}, "
            f"cache_mode={store.cache_mode.name}, concurrency_mode={store.concurrency_mode.name})"
        )

    def __enter__(self) -> BlobStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def adapter(self) -> Adapter:
        return self._store.adapter

    @property
    def container_name(self) -> str:
        return self._store.container_name

    @property
    def cache_mode(self) -> CacheMode:
        return self._store.cache_mode

    @property
    def concurrency_mode(self) -> ConcurrencyMode:
        return self._store.concurrency_mode

    # ------------------------------------------------------------ the calls

    def _run(self, coro: Coroutine[Any, Any, _T]) -> _T:
        """Run ``coro`` on the store's loop and wait for its result (or its exception)."""
        if threading.current_thread() is self._thread:
            coro.close()
            raise AsyncBlobDictError(
                "a BlobStore was called from its own thread (from an update_json fn?); "
                "that call would wait for itself forever"
            )
        call = _Call(coro)
        with self._lock:
            if self._closed:
                coro.close()
                raise AsyncBlobDictError("the store is closed", container=self._container())
            self._loop.call_soon_threadsafe(call.start, self._loop)
        try:
            call.done.acquire()
        except BaseException:
            # KeyboardInterrupt and the like in the waiting thread: cancel the call too (a
            # write still runs to its end in storage, as in the async store).
            with contextlib.suppress(RuntimeError):  # the loop is closed: nothing to cancel
                self._loop.call_soon_threadsafe(call.cancel)
            raise
        task = call.task
        if task is None or (task.cancelled() and self._closed):
            # Handed over just as the store closed: it never ran.
            raise AsyncBlobDictError("the store is closed", container=self._container())
        return cast(_T, task.result())  # the result of ``coro``

    def _container(self) -> str | None:
        store = getattr(self, "_store", None)
        return None if store is None else store.container_name

    def get_json(self, key: str) -> Any:
        """The decoded JSON value of ``key`` (BlobNotFoundError if missing)."""
        return self._run(self._store.get_json(key))

    def get_binary(
        self,
        key: str,
        *,
        offset: int = 0,
        length: int | None = None,
        progress: Progress | None = None,
    ) -> bytes:
        """The stored bytes of ``key`` (for a JSON value, its UTF-8 JSON text), or a range."""
        return self._run(
            self._store.get_binary(key, offset=offset, length=length, progress=progress)
        )

    def iter_binary(
        self,
        key: str,
        *,
        offset: int = 0,
        length: int | None = None,
        chunk_size: int | None = None,
        progress: Progress | None = None,
    ) -> Iterator[bytes]:
        """Yield the stored bytes (or a range) chunk by chunk, from one version."""
        chunks = self._store.iter_binary(
            key, offset=offset, length=length, chunk_size=chunk_size, progress=progress
        )
        finished = False
        try:
            while True:
                batch = self._run(_next_chunk(chunks))
                if batch is None:
                    finished = True
                    return
                yield batch
        finally:
            if not finished:
                self._end_listing(chunks)

    def get_file(
        self, key: str, path: str | os.PathLike[str], *, progress: Progress | None = None
    ) -> None:
        """Stream the value into the file ``path`` (atomic on ``path``)."""
        self._run(self._store.get_file(key, path, progress=progress))

    def set_file(
        self,
        key: str,
        path: str | os.PathLike[str],
        *,
        content_type: str | None = None,
        metadata: Mapping[str, str] | None = None,
        progress: Progress | None = None,
        ttl: Ttl | None = None,
    ) -> None:
        """Stream the file ``path`` in as the value of ``key``."""
        self._run(
            self._store.set_file(
                key, path, content_type=content_type, metadata=metadata, progress=progress, ttl=ttl
            )
        )

    def set_json(
        self,
        key: str,
        value: Any,
        *,
        content_type: str | None = None,
        metadata: Mapping[str, str] | None = None,
        ttl: Ttl | None = None,
    ) -> None:
        """Store ``value`` as JSON; nothing is written if it cannot be encoded. ``ttl``
        (seconds or a timedelta) makes it expire."""
        self._run(
            self._store.set_json(key, value, content_type=content_type, metadata=metadata, ttl=ttl)
        )

    def set_binary(
        self,
        key: str,
        data: bytes | bytearray | memoryview | Chunks,
        *,
        content_type: str | None = None,
        metadata: Mapping[str, str] | None = None,
        size: int | None = None,
        progress: Progress | None = None,
        ttl: Ttl | None = None,
    ) -> None:
        """Store ``data`` as given, or stream an iterable of bytes-like chunks (iterated in
        the store's thread)."""
        self._run(
            self._store.set_binary(
                key,
                data,
                content_type=content_type,
                metadata=metadata,
                size=size,
                progress=progress,
                ttl=ttl,
            )
        )

    def delete(self, key: str) -> None:
        """Delete ``key``; a missing key is a no-op."""
        self._run(self._store.delete(key))

    def exists(self, key: str) -> bool:
        """Whether ``key`` exists (pending write-back changes count)."""
        return self._run(self._store.exists(key))

    def info(self, key: str) -> BlobInfo | None:
        """Size, ETag, content type and metadata of ``key``; None if missing."""
        return self._run(self._store.info(key))

    def list_keys(self, prefix: str = "", *, delimiter: str | None = None) -> list[str]:
        """Every key starting with ``prefix``, sorted (one level with ``delimiter="/"``)."""
        return self._run(self._store.list_keys(prefix, delimiter=delimiter))

    def iter_keys(
        self, prefix: str = "", *, delimiter: str | None = None
    ) -> Generator[str, None, None]:
        """Yield the keys starting with ``prefix`` in the adapter's order, without a list.

        Names come from the store's thread a thousand at a time. Closing the iterator early
        (or dropping it) ends the listing.
        """
        names = self._store.iter_keys(prefix, delimiter=delimiter)
        finished = False
        try:
            while True:
                batch = self._run(_take(names, _ITER_BATCH))
                yield from batch
                if len(batch) < _ITER_BATCH:
                    finished = True
                    return
        finally:
            if not finished:
                self._end_listing(names)

    def _end_listing(self, names: AsyncIterator[Any]) -> None:
        aclose = getattr(names, "aclose", None)
        if aclose is None or self._closed:
            return  # a closed store's loop has closed its listings already
        if threading.current_thread() is self._thread:
            # Dropped (garbage collected) on the store's own thread: it cannot wait here.
            self._loop.create_task(aclose())
            return
        try:
            self._run(aclose())
        except AsyncBlobDictError:
            if not self._closed:
                raise

    def update_json(
        self,
        key: str,
        fn: Callable[[Any], Any],
        *,
        default: Any = _NO_DEFAULT,
        max_attempts: int = 64,
        ttl: Ttl | None = None,
    ) -> Any:
        """Atomically replace the value of ``key`` with ``fn(value)``; return the new value.

        As AsyncBlobStore.update_json; ``fn`` runs on the store's thread, may run more than
        once, and must not call this store.
        """
        return self._run(
            self._store.update_json(key, fn, default=default, max_attempts=max_attempts, ttl=ttl)
        )

    def get_many(
        self, keys: Iterable[str], *, default: Any = _NO_DEFAULT, concurrency: int | None = None
    ) -> dict[str, Any]:
        """The JSON values of ``keys`` (see AsyncBlobStore.get_many)."""
        return self._run(self._store.get_many(keys, default=default, concurrency=concurrency))

    def get_many_binary(
        self, keys: Iterable[str], *, default: Any = _NO_DEFAULT, concurrency: int | None = None
    ) -> dict[str, bytes]:
        """The stored bytes of ``keys`` (see AsyncBlobStore.get_many_binary)."""
        return self._run(
            self._store.get_many_binary(keys, default=default, concurrency=concurrency)
        )

    def set_many(
        self,
        items: Mapping[str, Any] | Iterable[tuple[str, Any]],
        *,
        concurrency: int | None = None,
        ttl: Ttl | None = None,
    ) -> None:
        """Store every ``key: value`` as JSON (see AsyncBlobStore.set_many)."""
        self._run(self._store.set_many(items, concurrency=concurrency, ttl=ttl))

    def delete_many(self, keys: Iterable[str], *, concurrency: int | None = None) -> None:
        """Delete every key (see AsyncBlobStore.delete_many)."""
        self._run(self._store.delete_many(keys, concurrency=concurrency))

    def sweep_expired(self, prefix: str = "", *, concurrency: int | None = None) -> int:
        """Delete the expired values below ``prefix``; how many (see
        AsyncBlobStore.sweep_expired)."""
        return self._run(self._store.sweep_expired(prefix, concurrency=concurrency))

    def sync(self, etag_behavior: EtagBehavior | str = "skip") -> SyncResult:
        """Write pending write-back changes to storage (see AsyncBlobStore.sync)."""
        return self._run(self._store.sync(etag_behavior))

    def dirty_keys(self) -> list[str]:
        """Keys with changes not yet written to storage (WRITE_BACK mode), sorted."""
        return self._run(_call(self._store.dirty_keys))

    def discard_changes(self, *keys: str) -> None:
        """Drop pending write-back changes of ``keys`` (all of them when none are given)."""
        self._run(_call(lambda: self._store.discard_changes(*keys)))

    # ------------------------------------------------------------ lifecycle

    def close(self) -> None:
        """Sync pending changes ("raise"), release the adapter and end the store's thread.

        If the sync fails the error is raised and the store stays open with its changes.
        Closing twice is fine.
        """
        with self._close_lock:
            if self._closed:
                return
            self._run(self._store.close())
            with self._lock:
                self._closed = True
            self._end_thread()
            logger.debug("closed %r", self)

    def _end_thread(self) -> None:
        self._finalizer()  # stops the loop (once)
        if self._thread is not threading.current_thread():
            self._thread.join()
