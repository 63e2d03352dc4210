"""A store's streams: ranged and chunked reads, streamed writes, files in and out, progress."""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TypeAlias, TypeVar

from ._options import _Extra
from ._tasks import close_iterator
from .adapters.base import BlobInfo, Precondition, StreamingAdapter, check_range, range_end
from .cache import ABSENT
from .errors import BlobNotFoundError, SerializationError, StorageError
from .expiry import Ttl, expiry_of

if TYPE_CHECKING:
    from .store import AsyncBlobStore

__all__ = [
    "FILE_CHUNK",
    "PROGRESS_INTERVAL",
    "STREAM_CHUNK",
    "Chunks",
    "MiB",
    "Progress",
    "get_file",
    "iter_binary",
    "set_file",
    "slices",
    "write_stream",
]

_T = TypeVar("_T")

Progress = Callable[[int, "int | None"], object]
"""``progress(done_bytes, total_bytes_or_None)`` of a streaming call."""

_Chunk: TypeAlias = "bytes | bytearray | memoryview"
Chunks: TypeAlias = "AsyncIterable[_Chunk] | Iterable[_Chunk]"
"""A stream of bytes-like chunks, as ``set_binary`` accepts it."""

MiB: Final = 1024 * 1024
STREAM_CHUNK: Final = MiB
"""Default chunk size of ``iter_binary`` when the adapter does not choose one."""
FILE_CHUNK: Final = 4 * MiB
"""How much ``set_file`` reads from the file at a time."""
PROGRESS_INTERVAL: Final = 0.1
"""Seconds between two calls of a progress callback, at least."""
_clock = time.monotonic  # a seam for tests of the progress rate


class _Progress:
    """Calls ``progress(done, total)`` at most every PROGRESS_INTERVAL, and once at the end."""

    __slots__ = ("_fn", "_last", "done", "total")

    def __init__(self, fn: Progress | None, total: int | None) -> None:
        self._fn = fn
        self.total = total
        self.done = 0
        self._last: float | None = None

    def add(self, count: int) -> None:
        self.done += count
        if self._fn is None:
            return
        now = _clock()
        if self._last is None or now - self._last >= PROGRESS_INTERVAL:
            self._last = now
            self._fn(self.done, self.total)

    def end(self) -> None:
        """The final count, unless the last call already showed it."""
        if self._fn is None:
            return
        now = _clock()
        if self._last is not None and now - self._last < PROGRESS_INTERVAL:
            # Rate first: wait is not an option here, so the end is shown only if allowed.
            return
        self._last = now
        self._fn(self.done, self.total)


async def _in_thread(fn: Callable[..., _T], *args: Any) -> _T:
    """Run a short blocking call in a thread; if cancelled, let it end before raising, so
    the caller's cleanup (closing the file it uses) never races it."""
    task = asyncio.ensure_future(asyncio.to_thread(fn, *args))
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        await asyncio.wait([task])
        raise


def _is_chunk(chunk: object) -> bool:
    return isinstance(chunk, (bytes, bytearray, memoryview))


async def slices(data: bytes, start: int, end: int) -> AsyncIterator[bytes]:
    """``data[start:end]`` in STREAM_CHUNK pieces."""
    view = memoryview(data)
    for pos in range(start, end, STREAM_CHUNK):
        yield bytes(view[pos : min(end, pos + STREAM_CHUNK)])


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


# ------------------------------------------------------------------------ reads


async def iter_binary(
    store: AsyncBlobStore,
    key: str,
    offset: int,
    length: int | None,
    chunk_size: int | None,
    progress: Progress | None,
) -> AsyncIterator[bytes]:
    """:meth:`AsyncBlobStore.iter_binary`."""
    key = store._key(key)
    check_range(offset, length)
    if chunk_size is not None and chunk_size < 1:
        raise ValueError("chunk_size must be at least 1")
    whole = offset == 0 and length is None
    data = store._hit(key)
    chunks: AsyncIterator[bytes]
    if data is not None:
        total = range_end(len(data), offset, length) - min(offset, len(data))
        chunks = slices(data, offset, range_end(len(data), offset, length))
    else:
        table = store._table
        state = await table.acquire(key)
        try:
            data = store._hit(key, held=True)
            if data is not None:
                end = range_end(len(data), offset, length)
                total = max(0, end - offset)
                chunks = slices(data, offset, end)
            else:
                try:
                    info, chunks = await _open_read(store, key, offset, length)
                except BlobNotFoundError:
                    if store._etags and whole:
                        table.set_etag(state, ABSENT)
                    raise
                if store._etags and whole:
                    table.set_etag(state, info.etag)
                if store._expired(expiry_of(info.metadata)):
                    await close_iterator(chunks)
                    raise store._expired_error(key)
                total = max(0, range_end(info.size, offset, length) - offset)
        finally:
            table.release(key, state)
    report = _Progress(progress, total)
    try:
        async for chunk in chunks:
            if chunk_size is None or len(chunk) <= chunk_size:
                report.add(len(chunk))
                yield chunk
                continue
            view = memoryview(chunk)
            for pos in range(0, len(chunk), chunk_size):
                piece = bytes(view[pos : pos + chunk_size])
                report.add(len(piece))
                yield piece
        report.end()
    finally:
        await close_iterator(chunks)


async def _open_read(
    store: AsyncBlobStore, key: str, offset: int, length: int | None
) -> tuple[BlobInfo, AsyncIterator[bytes]]:
    adapter = store.adapter
    if isinstance(adapter, StreamingAdapter):
        return await adapter.open_read(store.container_name, key, offset=offset, length=length)
    data, info = await adapter.get(store.container_name, key)  # not streaming: whole
    return info, slices(data, offset, range_end(len(data), offset, length))


async def get_file(
    store: AsyncBlobStore, key: str, path: str | os.PathLike[str], progress: Progress | None
) -> None:
    """:meth:`AsyncBlobStore.get_file`."""
    target = Path(os.fspath(path))
    tmp = target.with_name(f".{target.name}.abd-part-{os.urandom(6).hex()}")
    chunks = store.iter_binary(key, progress=progress)
    fd: int | None = None
    try:
        fd = await _in_thread(
            os.open, str(tmp), os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666
        )
        async for chunk in chunks:
            await _in_thread(_write_all, fd, chunk)
        await _in_thread(os.fsync, fd)
        os.close(fd)
        fd = None
        await _in_thread(os.replace, tmp, target)
    except OSError as exc:
        raise StorageError(
            f"get_file could not write {str(target)!r}: {exc.strerror or exc}",
            container=store.container_name,
            key=key,
        ) from None
    finally:
        await close_iterator(chunks)
        if fd is not None:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(tmp)


# ----------------------------------------------------------------------- writes


async def set_file(
    store: AsyncBlobStore,
    key: str,
    path: str | os.PathLike[str],
    content_type: str | None,
    metadata: Mapping[str, str] | None,
    progress: Progress | None,
    ttl: Ttl | None,
) -> None:
    """:meth:`AsyncBlobStore.set_file`."""
    source = os.fspath(path)
    try:
        fd = await _in_thread(os.open, source, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise StorageError(
            f"set_file could not open {source!r}: {exc.strerror or exc}",
            container=store.container_name,
            key=key,
        ) from None
    try:
        size = os.fstat(fd).st_size

        reader = io.FileIO(fd, "rb", closefd=False)

        async def chunks() -> AsyncIterator[bytearray]:
            while True:
                # Allocated here, filled in the thread: a buffer malloc'ed by a worker
                # thread comes from that thread's arena, and a few threads' arenas
                # each keeping freed chunks cost tens of MiB of RSS.
                chunk = bytearray(FILE_CHUNK)
                n = await _in_thread(reader.readinto, chunk)
                if not n:
                    return
                del chunk[n:]
                yield chunk

        await store.set_binary(
            key,
            chunks(),
            content_type=content_type,
            metadata=metadata,
            size=size,
            progress=progress,
            ttl=ttl,
        )
    finally:
        os.close(fd)


async def write_stream(
    store: AsyncBlobStore,
    key: str,
    data: Chunks,
    extra: _Extra,
    size: int | None,
    progress: Progress | None,
) -> None:
    """Stream ``data`` to storage under the key's lock and the store's condition."""
    report = _Progress(progress, size)
    chunks = _checked_chunks(store, key, data, report)
    table = store._table
    state = await table.acquire(key)
    try:
        try:
            etag = await _put_stream(store, key, chunks, store._condition(state), extra, size)
        except BaseException:
            if not state.pending:  # what storage holds is not known here any more
                table.set_data(state, None)
            raise
        report.end()
        if store._etags:
            table.set_etag(state, etag)
        if state.pending:  # superseded by the value just stored
            table.mark_stored(key, state, state.version)
        table.set_data(state, None)
    finally:
        await close_iterator(chunks)
        table.release(key, state)


async def _checked_chunks(
    store: AsyncBlobStore, key: str, data: Chunks, report: _Progress
) -> AsyncIterator[bytes | bytearray | memoryview]:
    """The caller's chunks, each checked to be bytes-like, counted for ``progress``."""
    source: AsyncIterator[Any] | None = None
    if isinstance(data, AsyncIterable):
        source = aiter(data)
    try:
        if source is not None:
            async for chunk in source:
                yield _chunk(store, key, chunk, report)
        else:
            assert isinstance(data, Iterable)
            for chunk in data:
                yield _chunk(store, key, chunk, report)
    finally:
        if source is not None:
            await close_iterator(source)


def _chunk(
    store: AsyncBlobStore, key: str, chunk: object, report: _Progress
) -> bytes | bytearray | memoryview:
    if not _is_chunk(chunk):
        raise SerializationError(
            f"set_binary got a chunk of type {type(chunk).__name__}; chunks must be "
            "bytes, bytearray or memoryview",
            container=store.container_name,
            key=key,
        )
    assert isinstance(chunk, (bytes, bytearray, memoryview))
    report.add(len(chunk) if not isinstance(chunk, memoryview) else chunk.nbytes)
    return chunk


async def _put_stream(
    store: AsyncBlobStore,
    key: str,
    chunks: AsyncIterator[bytes | bytearray | memoryview],
    condition: Precondition,
    extra: _Extra,
    size: int | None,
) -> str:
    content_type, metadata = extra
    adapter = store.adapter
    if isinstance(adapter, StreamingAdapter):
        return await adapter.put_stream(
            store.container_name,
            key,
            chunks,
            condition=condition,
            content_type=content_type,
            metadata=metadata,
            size=size,
        )
    data = b"".join([bytes(chunk) async for chunk in chunks])  # not streaming: whole
    if size is not None and size != len(data):
        raise StorageError(
            f"the stream gave {len(data)} bytes, not the {size} announced",
            container=store.container_name,
            key=key,
        )
    return await adapter.put(
        store.container_name,
        key,
        data,
        condition=condition,
        content_type=content_type,
        metadata=metadata,
    )
