"""AsyncBlobStore: JSON and binary values by key over any adapter, with caching and ETags."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import inspect
import io
import logging
import os
import random
import time
import warnings
import weakref
from collections import Counter
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Coroutine,
    Iterable,
    Mapping,
)
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Literal, TypeAlias, TypeVar

from . import codec
from ._tasks import gather_bounded
from .adapters.base import (
    CREATE,
    OVERWRITE,
    Adapter,
    BlobInfo,
    Create,
    MetadataListingAdapter,
    Precondition,
    StreamingAdapter,
    Update,
    check_delimiter,
    check_range,
    range_end,
    validate_content_type,
    validate_metadata,
)
from .cache import ABSENT, KeyState, KeyTable
from .errors import (
    AsyncBlobDictError,
    BatchError,
    BlobNotFoundError,
    ConcurrencyError,
    SerializationError,
    StorageError,
)
from .expiry import (
    EXPIRES_METADATA,
    Ttl,
    check_user_metadata,
    expires_at,
    expiry_datetime,
    expiry_of,
    format_expiry,
)
from .keys import validate_key, validate_prefix
from .modes import CacheMode, ConcurrencyMode, SyncResult

__all__ = ["AsyncBlobStore"]

logger = logging.getLogger("asyncblobdict")

EtagBehavior = Literal["skip", "overwrite", "raise"]
_ETAG_BEHAVIORS: Final = ("skip", "overwrite", "raise")


_NO_DEFAULT: Final = object()
_T = TypeVar("_T")
JSON_CONTENT_TYPE: Final = "application/json"


def _warn_unsynced(table: KeyTable, container: str) -> None:
    """Finalizer of a store: pending write-back changes die with it, never silently."""
    count = table.pending_count
    if count:
        message = (
            f"an AsyncBlobStore of container {container!r} was dropped without close(): "
            f"{count} pending change(s) were lost"
        )
        warnings.warn(message, ResourceWarning, stacklevel=2)
        logger.warning("%s", message)


_Extra = tuple["str | None", "dict[str, str] | None"]
"""Content type and metadata of a write."""


def _extra(content_type: str | None, metadata: Mapping[str, str] | None) -> _Extra:
    """Check a write's content type and metadata before any I/O."""
    names = validate_metadata(metadata)
    check_user_metadata(names)
    return validate_content_type(content_type), names or None


def _with_expiry(extra: _Extra, expires: float | None) -> _Extra:
    """``extra`` with its expiry replaced by ``expires`` (None: no expiry)."""
    content_type, metadata = extra
    names = {k: v for k, v in (metadata or {}).items() if k != EXPIRES_METADATA}
    if expires is not None:
        names[EXPIRES_METADATA] = format_expiry(expires)
    return content_type, names or None


def _public_info(info: BlobInfo) -> BlobInfo:
    """``info`` as the store shows it: the expiry as ``expires``, not as metadata."""
    if EXPIRES_METADATA not in info.metadata:
        return info
    metadata = {k: v for k, v in info.metadata.items() if k != EXPIRES_METADATA}
    expires = expiry_datetime(expiry_of(info.metadata))
    return dataclasses.replace(info, metadata=metadata, expires=expires)


class _Turn:
    """One operation's place on one key, reserved at once and held until it ends."""

    __slots__ = ("held", "key", "over", "state", "table", "waiter")

    def __init__(
        self, table: KeyTable, key: str, state: KeyState, waiter: asyncio.Future[None] | None
    ) -> None:
        self.table, self.key, self.state, self.waiter = table, key, state, waiter
        self.held = waiter is None
        self.over = False

    async def hold(self) -> KeyState:
        """Wait until the key is ours (at once if it already is)."""
        if not self.held:
            try:
                await self.table.wait_turn(self.key, self.state, self.waiter)
            except BaseException:
                self.over = True  # wait_turn gave the place up
                raise
            self.held = True
        return self.state

    def handed_over(self) -> None:
        """A running write now owns the key and releases it when it ends."""
        self.over = True

    def end(self) -> None:
        """Release the key, or give up the place if it was never used; twice is fine."""
        if self.over:
            return
        self.over = True
        if self.held:
            self.table.release(self.key, self.state)
        else:
            self.table.abandon(self.key, self.state, self.waiter)


async def _close_iterator(iterator: AsyncIterator[Any]) -> None:
    """Close an adapter's listing now (a caller that stops early), not when it is collected."""
    close = getattr(iterator, "aclose", None)
    if close is not None:
        await close()


def _level(name: str, prefix: str) -> str:
    """The name as a one-level listing below ``prefix`` shows it (a key, or its folder)."""
    cut = name.find("/", len(prefix))
    return name if cut < 0 else name[: cut + 1]


def _ancestors(key: str) -> list[str]:
    """``"a/b/c"`` -> ``["a", "a/b"]``: the keys a local folder of this key would clash with."""
    parts = key.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts))]


Progress = Callable[[int, "int | None"], object]
"""``progress(done_bytes, total_bytes_or_None)`` of a streaming call."""

_Chunk: TypeAlias = "bytes | bytearray | memoryview"
Chunks: TypeAlias = "AsyncIterable[_Chunk] | Iterable[_Chunk]"
"""A stream of bytes-like chunks, as ``set_binary`` accepts it."""

MiB: Final = 1024 * 1024
CACHE_VALUE_MAX_BYTES: Final = 8 * MiB
"""Values larger than this are never cached in memory (see ``cache_value_max_bytes``)."""
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


class AsyncBlobStore:
    """A key-value store of JSON and binary values in one container of an adapter.

    ``cache_mode`` and ``concurrency_mode`` take the enums or their string values. The cache
    holds at most ``cache_max_entries`` values and ``cache_max_bytes`` bytes (None: no bound);
    pending write-back changes are never evicted. In ETAG mode the store remembers the
    version of at most ``etag_memory`` keys it is not using (least recently used forgotten
    first; a forgotten key is written as if never seen). ``sync_concurrency`` bounds parallel
    writes in ``sync()``. Use it with ``async with``, or call ``close()``: the store closes
    its adapter too unless ``owns_adapter=False`` (for an adapter shared by several stores,
    which its owner closes). Keys are compared exactly (``café`` in NFC and in NFD are two
    keys) unless ``normalize_keys`` names a Unicode form ("NFC", ...): then every key and
    prefix is normalised to it before use, and stored so. ``types`` (a TypeRegistry) adds
    classes to the JSON codec. ``clock`` (default ``time.time``) tells the time, in seconds
    since the epoch, for expiry: writes with ``ttl`` add it to the clock, reads compare
    stored expiry times with it.

    Operations on one key are serialised in call order. A write whose caller is cancelled
    runs to its end in storage, and the store records its outcome, so its own writes never
    look like someone else's (streamed writes excepted: cancelling one aborts it, see
    :meth:`set_binary`).

    Only values of at most ``cache_value_max_bytes`` (8 MiB; set it on the instance to
    change it) are cached; larger ones are always read from storage.
    """

    cache_value_max_bytes: int = CACHE_VALUE_MAX_BYTES

    def __init__(
        self,
        adapter: Adapter,
        container_name: str,
        cache_mode: CacheMode | str = CacheMode.NONE,
        concurrency_mode: ConcurrencyMode | str = ConcurrencyMode.NONE,
        *,
        cache_max_entries: int | None = 10_000,
        cache_max_bytes: int | None = 256 * 1024 * 1024,
        etag_memory: int | None = 100_000,
        sync_concurrency: int = 16,
        batch_concurrency: int = 32,
        normalize_keys: Literal["NFC", "NFD", "NFKC", "NFKD"] | None = None,
        owns_adapter: bool = True,
        types: codec.TypeRegistry | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        if not isinstance(adapter, Adapter):
            raise TypeError(
                f"adapter must implement the Adapter protocol, not {type(adapter).__name__}"
            )
        self.cache_mode = CacheMode(cache_mode)
        self.concurrency_mode = ConcurrencyMode(concurrency_mode)
        if types is not None and not isinstance(types, codec.TypeRegistry):
            raise TypeError(f"types must be a TypeRegistry, not {type(types).__name__}")
        if sync_concurrency < 1:
            raise ValueError("sync_concurrency must be at least 1")
        if batch_concurrency < 1:
            raise ValueError("batch_concurrency must be at least 1")
        self.batch_concurrency = batch_concurrency
        if normalize_keys not in (None, "NFC", "NFD", "NFKC", "NFKD"):
            raise ValueError(
                f"normalize_keys must be None, NFC, NFD, NFKC or NFKD, not {normalize_keys!r}"
            )
        self._normal_form = normalize_keys
        if normalize_keys is not None:
            import unicodedata  # only for stores that ask: it adds to import time

            self._normalize = unicodedata.normalize
        adapter.validate_container(container_name)
        self.adapter: Adapter = adapter
        self.container_name: str = container_name
        self._table = KeyTable(cache_max_entries, cache_max_bytes, etag_memory)
        self._caching = self.cache_mode is not CacheMode.NONE
        self._write_back = self.cache_mode is CacheMode.WRITE_BACK
        self._etags = self.concurrency_mode is ConcurrencyMode.ETAG
        self._sync_concurrency = sync_concurrency
        self._sync_lock = asyncio.Lock()
        # Writes whose callers were cancelled, still running to their end.
        self._background: set[asyncio.Future[Any]] = set()
        self._closed = False
        self.owns_adapter = owns_adapter
        self.types = types
        self.clock: Callable[[], float] = time.time if clock is None else clock
        self._unsynced = weakref.finalize(self, _warn_unsynced, self._table, container_name)

    def __repr__(self) -> str:
        return (
            f"AsyncBlobStore({self.adapter!r}, {self.container_name!r}, "
            f"cache_mode={self.cache_mode.name}, concurrency_mode={self.concurrency_mode.name})"
        )

    async def __aenter__(self) -> AsyncBlobStore:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # ------------------------------------------------------------------ reads

    async def get_json(self, key: str) -> Any:
        """Return the decoded JSON value of ``key``.

        Raises BlobNotFoundError if it is missing and SerializationError if the stored bytes
        are not JSON (they are left as they are).
        """
        return self._decode(key, await self._read(key))

    async def get_binary(
        self,
        key: str,
        *,
        offset: int = 0,
        length: int | None = None,
        progress: Progress | None = None,
    ) -> bytes:
        """Return the stored bytes of ``key`` (for a JSON value, its UTF-8 JSON text).

        ``offset`` and ``length`` select a byte range (as ``data[offset:offset + length]``
        would; ``length=None``: to the end), read from one version of the value.
        """
        check_range(offset, length)
        if offset == 0 and length is None and progress is None:
            return await self._read(key)
        return b"".join(
            [
                c
                async for c in self.iter_binary(
                    key, offset=offset, length=length, progress=progress
                )
            ]
        )

    async def iter_binary(
        self,
        key: str,
        *,
        offset: int = 0,
        length: int | None = None,
        chunk_size: int | None = None,
        progress: Progress | None = None,
    ) -> AsyncIterator[bytes]:
        """Yield the stored bytes of ``key`` (or of a range of them) without holding them all.

        Every byte comes from one version: if the value is overwritten during the read and
        the backend cannot go on reading the old one, ConcurrencyError is raised, never a
        mix of two versions. ``chunk_size`` bounds the chunks' size (default: the
        adapter's own chunks, 1 MiB from a cached value). A whole-value read counts as a
        read for ETAG mode; a range does not. Close the iterator (``aclose``, or leave an
        ``async for``) when stopping early.
        """
        key = self._key(key)
        check_range(offset, length)
        if chunk_size is not None and chunk_size < 1:
            raise ValueError("chunk_size must be at least 1")
        whole = offset == 0 and length is None
        data = self._hit(key)
        chunks: AsyncIterator[bytes]
        if data is not None:
            total = range_end(len(data), offset, length) - min(offset, len(data))
            chunks = _slices(data, offset, range_end(len(data), offset, length))
        else:
            table = self._table
            state = await table.acquire(key)
            try:
                data = self._hit(key, held=True)
                if data is not None:
                    end = range_end(len(data), offset, length)
                    total = max(0, end - offset)
                    chunks = _slices(data, offset, end)
                else:
                    try:
                        info, chunks = await self._open_read(key, offset, length)
                    except BlobNotFoundError:
                        if self._etags and whole:
                            table.set_etag(state, ABSENT)
                        raise
                    if self._etags and whole:
                        table.set_etag(state, info.etag)
                    if self._expired(expiry_of(info.metadata)):
                        await _close_iterator(chunks)
                        raise self._expired_error(key)
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
            await _close_iterator(chunks)

    async def _open_read(
        self, key: str, offset: int, length: int | None
    ) -> tuple[BlobInfo, AsyncIterator[bytes]]:
        adapter = self.adapter
        if isinstance(adapter, StreamingAdapter):
            return await adapter.open_read(self.container_name, key, offset=offset, length=length)
        data, info = await adapter.get(self.container_name, key)  # not streaming: whole
        return info, _slices(data, offset, range_end(len(data), offset, length))

    async def get_file(
        self, key: str, path: str | os.PathLike[str], *, progress: Progress | None = None
    ) -> None:
        """Write the value of ``key`` to the file ``path``, streaming.

        The bytes go to a temp file beside ``path`` (fsynced), which then replaces ``path``:
        ``path`` holds its old content or the whole value, never a part. On any failure or
        cancellation the temp file is removed and ``path`` is untouched.
        """
        target = Path(os.fspath(path))
        tmp = target.with_name(f".{target.name}.abd-part-{os.urandom(6).hex()}")
        chunks = self.iter_binary(key, progress=progress)
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
                container=self.container_name,
                key=key,
            ) from None
        finally:
            await _close_iterator(chunks)
            if fd is not None:
                os.close(fd)
                with contextlib.suppress(OSError):
                    os.unlink(tmp)

    async def set_file(
        self,
        key: str,
        path: str | os.PathLike[str],
        *,
        content_type: str | None = None,
        metadata: Mapping[str, str] | None = None,
        progress: Progress | None = None,
        ttl: Ttl | None = None,
    ) -> None:
        """Store the content of the file ``path`` as the value of ``key``, streaming (with an
        optional ``ttl``, as for :meth:`set_json`).

        Atomic like :meth:`set_binary`: readers see the old value or the whole file. A file
        whose size changes while it is read raises StorageError and stores nothing.
        """
        source = os.fspath(path)
        try:
            fd = await _in_thread(os.open, source, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            raise StorageError(
                f"set_file could not open {source!r}: {exc.strerror or exc}",
                container=self.container_name,
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

            await self.set_binary(
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

    async def exists(self, key: str) -> bool:
        """Return whether ``key`` exists (pending write-back changes count).

        It never changes which version an ETAG write is checked against: only reading the
        value does.
        """
        key = self._key(key)
        cached = self._cached(key)
        if cached is not None:
            return cached[0] is not None
        state = await self._table.acquire(key)
        try:
            cached = self._cached(key, held=True)
            if cached is not None:
                return cached[0] is not None
            info = await self.adapter.head(self.container_name, key)
            return info is not None and not self._expired(expiry_of(info.metadata))
        finally:
            self._table.release(key, state)

    async def list_keys(self, prefix: str = "", *, delimiter: str | None = None) -> list[str]:
        """Return every key starting with ``prefix``, sorted as Python sorts str; expired
        values are left out.

        With ``delimiter="/"`` only one level is listed: the keys directly below ``prefix``
        and, once each, the folders holding deeper keys, as their prefix ending in ``/``
        (``["a/", "b"]`` for the keys ``a/x``, ``a/y/z`` and ``b``): one sorted list, where a
        name ending in ``/`` is a folder (a key never ends in ``/``).
        """
        return sorted([key async for key in self.iter_keys(prefix, delimiter=delimiter)])

    async def iter_keys(
        self, prefix: str = "", *, delimiter: str | None = None
    ) -> AsyncGenerator[str, None]:
        """Yield every key starting with ``prefix`` in the adapter's order, without a list.

        ``delimiter`` as for :meth:`list_keys`. In WRITE_BACK mode pending deletes are left
        out and keys created since the last sync come after the stored ones. Expired values
        are left out (a folder is listed while it holds any stored key, expired or not,
        unless there are pending changes below ``prefix``; :meth:`sweep_expired` removes
        expired values for good).
        """
        prefix = self._prefix(prefix)
        check_delimiter(delimiter)
        pending = {
            key: state.data is not None and not self._expired(state.expires)
            for key, state in self._table.pending_items()
            if key.startswith(prefix)
        }
        if not pending:
            names = self._live_names(prefix, delimiter)
            try:
                async for name in names:
                    yield name
            finally:
                await _close_iterator(names)
            return
        # Pending changes below the prefix: list every key and fold the levels here, so a
        # folder whose keys are all deleted (pending) is left out too.
        shown: set[str] = set()
        names = self._live_names(prefix, None)
        try:
            async for name in names:
                if pending.pop(name, True):
                    entry = _level(name, prefix) if delimiter else name
                    if entry not in shown:
                        shown.add(entry)
                        yield entry
        finally:
            await _close_iterator(names)
        for key in sorted(pending):
            if pending[key]:
                entry = _level(key, prefix) if delimiter else key
                if entry not in shown:
                    shown.add(entry)
                    yield entry

    def _prefix(self, prefix: str) -> str:
        """A listing's prefix, checked (and normalised if the store says so)."""
        self._check_open()
        validate_prefix(prefix, self.container_name)
        if self._normal_form is not None:
            prefix = self._normalize(self._normal_form, prefix)
        return prefix

    async def _live_names(self, prefix: str, delimiter: str | None) -> AsyncIterator[str]:
        """The adapter's names below ``prefix`` without the expired values."""
        entries = self._listed_metadata(prefix, delimiter)
        try:
            async for name, metadata in entries:
                if EXPIRES_METADATA not in metadata or not self._expired(expiry_of(metadata)):
                    yield name
        finally:
            await _close_iterator(entries)

    async def _listed_metadata(
        self, prefix: str, delimiter: str | None
    ) -> AsyncIterator[tuple[str, Mapping[str, str]]]:
        """``(name, metadata)`` of every listed name, from the adapter's ``list_metadata``;
        an adapter without it is asked ``head`` for each key (a folder's metadata is empty)."""
        adapter = self.adapter
        if isinstance(adapter, MetadataListingAdapter):
            entries = adapter.list_metadata(self.container_name, prefix, delimiter=delimiter)
            try:
                async for entry in entries:
                    yield entry
            finally:
                await _close_iterator(entries)
            return
        names = adapter.list_names(self.container_name, prefix, delimiter=delimiter)
        try:
            async for name in names:
                if name.endswith("/"):
                    yield name, {}
                    continue
                info = await adapter.head(self.container_name, name)
                if info is not None:  # deleted since it was listed
                    yield name, info.metadata
        finally:
            await _close_iterator(names)

    async def info(self, key: str) -> BlobInfo | None:
        """Size, ETag, content type and metadata of ``key`` without reading it; None if missing.

        ``expires`` is the value's expiry time (aware UTC) if it was written with a ``ttl``,
        and the reserved ``abdexpires`` entry is left out of ``metadata``; an expired value
        is missing (None). A pending write-back value has no ETag or modification time yet.
        Like ``exists()``, it never changes which version an ETAG write is checked against.
        """
        key = self._key(key)
        state = await self._table.acquire(key)
        try:
            if self._write_back and state.pending:
                if state.data is None or self._expired(state.expires):
                    return None
                return _public_info(
                    BlobInfo(
                        key,
                        len(state.data),
                        content_type=state.content_type,
                        metadata=dict(state.metadata or {}),
                    )
                )
            info = await self.adapter.head(self.container_name, key)
            if info is None or self._expired(expiry_of(info.metadata)):
                return None
            return _public_info(info)
        finally:
            self._table.release(key, state)

    def _expired(self, expires: float | None) -> bool:
        """Whether an expiry time has come by this store's clock."""
        return expires is not None and expires <= self.clock()

    def _expired_error(self, key: str) -> BlobNotFoundError:
        return BlobNotFoundError("key expired", container=self.container_name, key=key)

    def _cached(self, key: str, *, held: bool = False) -> tuple[bytes | None] | None:
        """``(bytes,)`` or ``(None,)`` for a pending delete when the cache answers; else None.

        While another operation holds the key (``held`` is False) the cache does not answer:
        that operation may be about to change it.
        """
        if not self._caching:
            return None
        state = self._table.peek(key)
        if state is None or (state.locked and not held):
            return None
        if state.data is None and not state.pending:
            return None
        if state.expires is not None and self._expired(state.expires):
            # A pending value that expired reads as missing; a clean one is asked of
            # storage again (it may have been written anew there meanwhile).
            return (None,) if state.pending else None
        self._table.touch(key)
        return (state.data,)

    def _hit(self, key: str, *, held: bool = False) -> bytes | None:
        cached = self._cached(key, held=held)
        if cached is None:
            return None
        if cached[0] is None:
            raise BlobNotFoundError(
                "key was deleted or expired (pending sync)",
                container=self.container_name,
                key=key,
            )
        return cached[0]

    async def _read(self, key: str) -> bytes:
        key = self._key(key)
        data = self._hit(key)
        if data is not None:
            return data
        table = self._table
        state = await table.acquire(key)
        try:
            data = self._hit(key, held=True)  # filled while we waited for the key
            if data is not None:
                return data
            try:
                data, info = await self.adapter.get(self.container_name, key)
            except BlobNotFoundError:
                if self._etags:
                    table.set_etag(state, ABSENT)
                if not state.pending:
                    table.set_data(state, None)
                raise
            if self._etags:
                # Even for an expired value: a later write then replaces exactly that version.
                table.set_etag(state, info.etag)
            expires = expiry_of(info.metadata)
            if self._expired(expires):
                if not state.pending:
                    table.set_data(state, None)
                raise self._expired_error(key)
            if self._caching and len(data) <= self.cache_value_max_bytes:
                table.set_data(state, data, expires)
            return data
        finally:
            table.release(key, state)

    # ----------------------------------------------------------------- writes

    async def set_json(
        self,
        key: str,
        value: Any,
        *,
        content_type: str | None = None,
        metadata: Mapping[str, str] | None = None,
        ttl: Ttl | None = None,
    ) -> None:
        """Store ``value`` as JSON; nothing is written if it cannot be encoded.

        ``content_type`` defaults to ``application/json``; ``metadata`` (names of ASCII
        letters, digits and ``_``; printable ASCII values) replaces the key's old metadata.
        ``ttl`` (seconds > 0, or a timedelta) makes the value expire that long after this
        call, by the store's clock; without it the value never expires (an overwrite
        without ``ttl`` clears an earlier expiry).
        """
        key = self._key(key)
        extra = self._expiring(_extra(content_type or JSON_CONTENT_TYPE, metadata), ttl)
        await self._write(key, self._encode(key, value), extra)

    def _expiring(self, extra: _Extra, ttl: Ttl | None) -> _Extra:
        """A write's content type and metadata with the expiry ``ttl`` gives (from now)."""
        if ttl is None:
            return extra
        return _with_expiry(extra, expires_at(self.clock(), ttl))

    async def set_binary(
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
        """Store ``data`` as given, with an optional content type, metadata and ``ttl`` (as
        for :meth:`set_json`; a streamed value's expiry counts from the call, not its end).

        ``data`` is bytes-like, or an async iterable or iterable of bytes-like chunks: a
        stream, consumed once, holding a bounded number of chunks (a sync iterable is
        iterated on the event loop; wrap a blocking source in an async one). A stream is
        stored atomically (readers see the old value or the whole new one) under the
        store's concurrency mode; if it raises, or the call is cancelled, nothing is stored
        (the stream's exception propagates). ``size``, if given, is the stream's expected
        length (another length raises StorageError and stores nothing). A streamed value is
        never cached; in WRITE_BACK mode it is written through at once, replacing any
        pending change of the key.
        """
        key = self._key(key)
        extra = self._expiring(_extra(content_type, metadata), ttl)
        if not isinstance(data, (bytes, bytearray, memoryview)):
            if isinstance(data, (AsyncIterable, Iterable)) and not isinstance(data, str):
                await self._write_stream(key, data, extra, size, progress)  # type: ignore[arg-type]
                return
            raise SerializationError(
                "set_binary needs bytes, bytearray, memoryview or an iterable of them, "
                f"not {type(data).__name__}",
                container=self.container_name,
                key=key,
            )
        try:
            raw = bytes(data)
        except ValueError as exc:  # a released memoryview
            raise SerializationError(
                f"set_binary cannot read the data: {exc}", container=self.container_name, key=key
            ) from None
        if size is not None and size != len(raw):
            raise StorageError(
                f"set_binary got {len(raw)} bytes, not the {size} announced",
                container=self.container_name,
                key=key,
            )
        await self._write(key, raw, extra)
        if progress is not None:
            progress(len(raw), len(raw))

    async def _write_stream(
        self,
        key: str,
        data: Chunks,
        extra: _Extra,
        size: int | None,
        progress: Progress | None,
    ) -> None:
        """Stream ``data`` to storage under the key's lock and the store's condition."""
        report = _Progress(progress, size)
        chunks = self._checked_chunks(key, data, report)
        table = self._table
        state = await table.acquire(key)
        try:
            try:
                etag = await self._put_stream(key, chunks, self._condition(state), extra, size)
            except BaseException:
                if not state.pending:  # what storage holds is not known here any more
                    table.set_data(state, None)
                raise
            report.end()
            if self._etags:
                table.set_etag(state, etag)
            if state.pending:  # superseded by the value just stored
                table.mark_stored(key, state, state.version)
            table.set_data(state, None)
        finally:
            await _close_iterator(chunks)
            table.release(key, state)

    async def _checked_chunks(
        self, key: str, data: Chunks, report: _Progress
    ) -> AsyncIterator[bytes | bytearray | memoryview]:
        """The caller's chunks, each checked to be bytes-like, counted for ``progress``."""
        source: AsyncIterator[Any] | None = None
        if isinstance(data, AsyncIterable):
            source = aiter(data)
        try:
            if source is not None:
                async for chunk in source:
                    yield self._chunk(key, chunk, report)
            else:
                assert isinstance(data, Iterable)
                for chunk in data:
                    yield self._chunk(key, chunk, report)
        finally:
            if source is not None:
                await _close_iterator(source)

    def _chunk(self, key: str, chunk: object, report: _Progress) -> bytes | bytearray | memoryview:
        if not _is_chunk(chunk):
            raise SerializationError(
                f"set_binary got a chunk of type {type(chunk).__name__}; chunks must be "
                "bytes, bytearray or memoryview",
                container=self.container_name,
                key=key,
            )
        assert isinstance(chunk, (bytes, bytearray, memoryview))
        report.add(len(chunk) if not isinstance(chunk, memoryview) else chunk.nbytes)
        return chunk

    async def _put_stream(
        self,
        key: str,
        chunks: AsyncIterator[bytes | bytearray | memoryview],
        condition: Precondition,
        extra: _Extra,
        size: int | None,
    ) -> str:
        content_type, metadata = extra
        adapter = self.adapter
        if isinstance(adapter, StreamingAdapter):
            return await adapter.put_stream(
                self.container_name,
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
                container=self.container_name,
                key=key,
            )
        return await adapter.put(
            self.container_name,
            key,
            data,
            condition=condition,
            content_type=content_type,
            metadata=metadata,
        )

    async def delete(self, key: str) -> None:
        """Delete ``key``; a missing key is a no-op.

        In ETAG mode a key changed in storage since this store last saw it raises
        ConcurrencyError and stays.
        """
        key = self._key(key)
        await self._write(key, None)

    async def _write(self, key: str, data: bytes | None, extra: _Extra = (None, None)) -> None:
        """Write (or, for None, delete) the key: pending in WRITE_BACK, else in storage."""
        table = self._table
        state = await table.acquire(key)
        try:
            if self._write_back:
                table.make_pending(key, state, data, *extra, expires=expiry_of(extra[1]))
                return
            if data is None:
                await self._finish(key, state, self._delete_stored(key, state, overwrite=False))
            else:
                await self._finish(key, state, self._put_stored(key, state, data, None, extra))
        finally:
            self._release_key(key, state)

    async def update_json(
        self,
        key: str,
        fn: Callable[[Any], Any],
        *,
        default: Any = _NO_DEFAULT,
        max_attempts: int = 64,
        ttl: Ttl | None = None,
    ) -> Any:
        """Atomically replace the value of ``key`` with ``fn(value)`` and return the new value.

        Reads the stored value with its ETag, applies ``fn`` (a function or coroutine
        function) and writes only if the key is unchanged, retrying with a fresh read on a
        conflict, up to ``max_attempts`` times (then ConcurrencyError). A missing key uses a
        copy of ``default`` (BlobNotFoundError without one) and is created only if still
        missing. ``fn`` may run more than once and should not have side effects. After an
        attempt whose outcome cannot be proven, OutcomeUnknownError is raised and ``fn`` is
        not applied again. Other operations of this store on ``key`` wait until it is done.

        The new value keeps the old one's content type, metadata and expiry time, unless
        ``ttl`` is given: then it expires that long after this call. An expired value is
        missing here too (``default`` is used; the expired value is replaced).

        In WRITE_BACK mode a key with a pending change is updated in the cache instead.
        """
        key = self._key(key)
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        expires = None if ttl is None else expires_at(self.clock(), ttl)
        table = self._table
        state = await table.acquire(key)
        try:
            if self._write_back and state.pending:
                metadata = state.metadata
                if state.data is not None and not self._expired(state.expires):
                    current = self._decode(key, state.data)
                elif default is _NO_DEFAULT:
                    raise BlobNotFoundError(
                        "key was deleted or expired (pending sync)",
                        container=self.container_name,
                        key=key,
                    )
                else:
                    current, metadata = self._copy(key, default), None
                new_value = await _call(fn, current)
                extra: _Extra = (JSON_CONTENT_TYPE, metadata)
                if expires is not None:
                    extra = _with_expiry(extra, expires)
                table.make_pending(
                    key, state, self._encode(key, new_value), *extra, expires=expiry_of(extra[1])
                )
                return new_value
            for attempt in range(max_attempts):
                new_value, new_data, condition, extra = await self._apply(key, fn, default)
                if expires is not None:
                    extra = _with_expiry(extra, expires)
                try:
                    await self._finish(
                        key, state, self._put_stored(key, state, new_data, condition, extra)
                    )
                except ConcurrencyError:  # a clean conflict: nothing of ours landed
                    logger.debug("update_json conflict on %r, attempt %d", key, attempt + 1)
                    await asyncio.sleep(random.uniform(0, min(0.5, 0.002 * 2**attempt)))
                    continue
                return new_value
            raise ConcurrencyError(
                f"update_json gave up after {max_attempts} conflicting attempts",
                container=self.container_name,
                key=key,
            )
        finally:
            self._release_key(key, state)

    async def _apply(
        self, key: str, fn: Callable[[Any], Any], default: Any
    ) -> tuple[Any, bytes, Precondition, _Extra]:
        """One read-modify step of update_json: the new value, its bytes, the write's
        condition, and the content type and metadata to keep (the stored value's)."""
        extra: _Extra = (JSON_CONTENT_TYPE, None)
        condition: Precondition
        try:
            data, info = await self.adapter.get(self.container_name, key)
        except BlobNotFoundError:
            if default is _NO_DEFAULT:
                raise
            current, condition = self._copy(key, default), CREATE
        else:
            condition = OVERWRITE if info.etag is None else Update(info.etag)
            if self._expired(expiry_of(info.metadata)):
                if default is _NO_DEFAULT:
                    raise self._expired_error(key)
                current = self._copy(key, default)  # replaces the expired version
            else:
                current = self._decode(key, data)
                extra = (info.content_type or JSON_CONTENT_TYPE, dict(info.metadata) or None)
        new_value = await _call(fn, current)
        return new_value, self._encode(key, new_value), condition, extra

    # ------------------------------------------------------- storage and state

    def _condition(self, state: KeyState) -> Precondition:
        """The precondition of an ETAG write: the version this store last saw."""
        etag = state.etag
        if not self._etags or etag is None:
            return OVERWRITE
        if isinstance(etag, str):
            return Update(etag)
        return CREATE

    async def _finish(self, key: str, state: KeyState, write: Coroutine[Any, Any, _T]) -> _T:
        """Run a storage write to its end even if the caller is cancelled meanwhile.

        The write records its own outcome in ``state``. If the caller is cancelled first, the
        write keeps the key until it ends, so the next operation on the key sees its result.
        """
        task = asyncio.ensure_future(write)
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            if not task.done():
                state.detached = True
                self._background.add(task)
                task.add_done_callback(lambda done: self._detached_done(key, state, done))
            raise

    def _detached_done(self, key: str, state: KeyState, task: asyncio.Future[Any]) -> None:
        self._background.discard(task)
        self._table.release(key, state)
        if not task.cancelled() and task.exception() is not None:
            logger.warning(
                "a write of %r whose caller was cancelled failed: %s", key, task.exception()
            )

    def _release_key(self, key: str, state: KeyState) -> None:
        if state.detached:  # a cancelled caller's write still runs; it releases the key
            state.detached = False
        else:
            self._table.release(key, state)

    async def _put_stored(
        self,
        key: str,
        state: KeyState,
        data: bytes,
        condition: Precondition | None,
        extra: _Extra,
    ) -> None:
        """Write ``data`` (under ``condition``, else the store's own) and record the outcome."""
        table = self._table
        version = state.version
        content_type, metadata = extra
        try:
            etag = await self.adapter.put(
                self.container_name,
                key,
                data,
                condition=self._condition(state) if condition is None else condition,
                content_type=content_type,
                metadata=metadata,
            )
        except BaseException:
            if not state.pending:  # what storage holds is not known here any more
                table.set_data(state, None)
            raise
        if self._etags:
            table.set_etag(state, etag)
        if state.pending:
            table.mark_stored(key, state, version)
        elif self._caching:
            if len(data) <= self.cache_value_max_bytes:
                table.set_data(state, data, expiry_of(metadata))
            else:
                table.set_data(state, None)

    async def _delete_stored(self, key: str, state: KeyState, *, overwrite: bool) -> None:
        table = self._table
        version = state.version
        # CREATE (last seen missing): deleting a value someone has since created would lose it.
        condition = OVERWRITE if overwrite else self._condition(state)
        try:
            try:
                await self.adapter.delete(self.container_name, key, condition=condition)
            except ConcurrencyError:
                # Already deleted by someone else: the outcome we wanted, nothing lost.
                if not isinstance(condition, Update) or await self.adapter.head(
                    self.container_name, key
                ):
                    raise
        except BaseException:
            if not state.pending:
                table.set_data(state, None)
            raise
        if self._etags:
            table.set_etag(state, ABSENT)
        if state.pending:
            table.mark_stored(key, state, version)
        else:
            table.set_data(state, None)

    def _encode(self, key: str, value: Any) -> bytes:
        try:
            return codec.encode(value, self.types)
        except SerializationError as exc:
            raise SerializationError(exc.message, container=self.container_name, key=key) from None

    def _decode(self, key: str, data: bytes) -> Any:
        try:
            return codec.decode(data, self.types)
        except SerializationError as exc:
            raise SerializationError(exc.message, container=self.container_name, key=key) from None

    def _copy(self, key: str, value: Any) -> Any:
        """A fresh copy of a caller's object, so ``fn`` never mutates the caller's own."""
        return self._decode(key, self._encode(key, value))

    # ---------------------------------------------------------------- batches

    async def get_many(
        self,
        keys: Iterable[str],
        *,
        default: Any = _NO_DEFAULT,
        concurrency: int | None = None,
    ) -> dict[str, Any]:
        """The JSON values of ``keys``, read ``concurrency`` at a time (``batch_concurrency``).

        A missing key is left out, or maps to ``default`` when one is given. Every key goes
        through the store's cache and concurrency modes as ``get_json`` would. If some keys
        fail, the others are still read and BatchError reports each failure (its
        ``results`` holds the values read).
        """
        return await self._batch(keys, self.get_json, default, concurrency, "get_many")

    async def get_many_binary(
        self,
        keys: Iterable[str],
        *,
        default: Any = _NO_DEFAULT,
        concurrency: int | None = None,
    ) -> dict[str, bytes]:
        """The stored bytes of ``keys``, as :meth:`get_many` does for JSON."""
        return await self._batch(keys, self.get_binary, default, concurrency, "get_many_binary")

    async def set_many(
        self,
        items: Mapping[str, Any] | Iterable[tuple[str, Any]],
        *,
        concurrency: int | None = None,
        ttl: Ttl | None = None,
    ) -> None:
        """Store every ``key: value`` as JSON, ``concurrency`` at a time (with ``ttl``, all
        expire at one time: that long after this call).

        Every key is checked and every value encoded before anything is written (a bad one
        raises at once and nothing is written). Each write honours the store's modes as
        ``set_json`` does; if some fail, the others are still written and BatchError reports
        each failure.
        """
        pairs = list(items.items() if isinstance(items, Mapping) else items)
        encoded = {}
        for key, value in pairs:
            key = self._key(key)
            encoded[key] = self._encode(key, value)
        extra = self._expiring(_extra(JSON_CONTENT_TYPE, None), ttl)

        async def write(key: str) -> None:
            await self._write(key, encoded[key], extra)

        await self._batch(encoded, write, _NO_DEFAULT, concurrency, "set_many")

    async def delete_many(self, keys: Iterable[str], *, concurrency: int | None = None) -> None:
        """Delete every key (missing ones are no-ops), ``concurrency`` at a time; failures
        as for :meth:`set_many`."""
        await self._batch(keys, self.delete, _NO_DEFAULT, concurrency, "delete_many")

    async def sweep_expired(self, prefix: str = "", *, concurrency: int | None = None) -> int:
        """Delete the expired values of keys starting with ``prefix``; return how many.

        Lists the keys with their metadata, then for each expired one reads its current
        version (``head``) and deletes exactly that version (a conditional delete on its
        ETag), ``concurrency`` at a time (``batch_concurrency``): a value written anew
        meanwhile, by this store or another, survives. Keys with a pending write-back change
        are left alone (the change replaces them at ``sync``). Expiry is judged by this
        store's clock.
        """
        prefix = self._prefix(prefix)
        limit = self.batch_concurrency if concurrency is None else concurrency
        if limit < 1:
            raise ValueError("concurrency must be at least 1")
        expired = [
            name
            async for name, metadata in self._listed_metadata(prefix, None)
            if EXPIRES_METADATA in metadata and self._expired(expiry_of(metadata))
        ]
        deleted = await gather_bounded(
            [functools.partial(self._sweep_one, key) for key in expired], limit
        )
        count = sum(deleted)
        logger.info("sweep of %r: %d expired value(s) deleted", self.container_name, count)
        return count

    async def _sweep_one(self, key: str) -> bool:
        """Delete ``key`` if the version stored now has expired; whether it was deleted."""
        table = self._table
        state = await table.acquire(key)
        try:
            if state.pending:
                return False
            info = await self.adapter.head(self.container_name, key)
            if info is None or info.etag is None or not self._expired(expiry_of(info.metadata)):
                return False
            try:
                await self._finish(key, state, self._delete_expired(key, state, info.etag))
            except ConcurrencyError:  # written anew (or deleted) since the head: it stays
                return False
            return True
        finally:
            self._release_key(key, state)

    async def _delete_expired(self, key: str, state: KeyState, etag: str) -> None:
        try:
            await self.adapter.delete(self.container_name, key, condition=Update(etag))
        finally:
            if not state.pending:
                self._table.set_data(state, None)  # the expired value, or an unknown one
        if self._etags and state.etag == etag:
            self._table.set_etag(state, ABSENT)

    async def _batch(
        self,
        keys: Iterable[str],
        operation: Callable[[str], Awaitable[_T]],
        default: Any,
        concurrency: int | None,
        name: str,
    ) -> dict[str, _T]:
        unique = list(dict.fromkeys(self._key(key) for key in keys))  # once each, in order
        limit = self.batch_concurrency if concurrency is None else concurrency
        if limit < 1:
            raise ValueError("concurrency must be at least 1")
        results: dict[str, _T] = {}
        errors: dict[str, AsyncBlobDictError] = {}

        async def one(key: str) -> None:
            try:
                results[key] = await operation(key)
            except BlobNotFoundError:
                if default is not _NO_DEFAULT:
                    results[key] = default
            except AsyncBlobDictError as exc:  # reported with the others, never abandoned
                errors[key] = exc

        await gather_bounded([functools.partial(one, key) for key in unique], limit)
        if errors:
            raise BatchError(
                f"{name}: {len(errors)} of {len(unique)} key(s) failed",
                errors,
                dict(results),
                container=self.container_name,
            )
        return {key: results[key] for key in unique if key in results}

    # -------------------------------------------------------------- write-back

    def dirty_keys(self) -> list[str]:
        """Keys with changes not yet written to storage (WRITE_BACK mode), sorted."""
        return sorted(key for key, _ in self._table.pending_items())

    def discard_changes(self, *keys: str) -> None:
        """Drop pending write-back changes of ``keys`` (all of them when none are given)."""
        for key in keys or self.dirty_keys():
            self._table.discard_pending(key)

    async def sync(self, etag_behavior: EtagBehavior | str = "skip") -> SyncResult:
        """Write pending write-back changes to storage, in the order they were made.

        In ETAG mode each change is checked against the version it was based on:
        ``"skip"`` leaves conflicting keys dirty and reports them as skipped, ``"overwrite"``
        writes them anyway, ``"raise"`` checks every key first and raises ConcurrencyError
        (writing nothing) if any conflicts. A storage failure is raised after the other keys
        were tried; unwritten keys stay dirty. One sync runs at a time.
        """
        if etag_behavior not in _ETAG_BEHAVIORS:
            raise ValueError(
                f"etag_behavior must be one of {', '.join(_ETAG_BEHAVIORS)}, not {etag_behavior!r}"
            )
        self._check_open()
        # The sync takes its place on every pending key now, before anything can run: a
        # change made after this call waits for the sync's write of that key, as a change of
        # one key waits for the calls made before it.
        turns = {
            key: _Turn(self._table, key, *self._table.reserve(key))
            for key, _ in self._table.pending_items()
        }
        try:
            async with self._sync_lock:
                return await self._sync(etag_behavior, turns)
        finally:
            for turn in turns.values():
                turn.end()

    async def _sync(self, etag_behavior: str, turns: dict[str, _Turn]) -> SyncResult:
        result = SyncResult()
        keys = list(turns)
        if not keys:
            return result
        if etag_behavior == "raise" and self._etags:
            await self._check_no_conflicts(turns)
        overwrite = etag_behavior == "overwrite"
        errors: list[BaseException] = []

        async def flush(key: str) -> None:
            turn = turns[key]
            state = await turn.hold()
            try:
                if not state.pending:
                    return  # written by an earlier, cancelled sync, or discarded meanwhile
                data = state.data
                if data is None:
                    await self._finish(
                        key, state, self._delete_stored(key, state, overwrite=overwrite)
                    )
                    result.deleted.append(key)
                else:
                    condition = OVERWRITE if overwrite else None
                    extra = (state.content_type, state.metadata)
                    await self._finish(
                        key, state, self._put_stored(key, state, data, condition, extra)
                    )
                    result.written.append(key)
            except ConcurrencyError as exc:
                if etag_behavior == "raise":
                    errors.append(exc)
                result.skipped.append(key)
                logger.warning("sync: %s; left unsynced", exc)
            except Exception as exc:  # re-raised below, after the other keys were tried
                errors.append(exc)
            finally:
                if state.detached:  # a cancelled sync's write still runs; it releases the key
                    state.detached = False
                    turn.handed_over()
                else:
                    turn.end()

        await self._replay(keys, flush)
        for names in (result.written, result.deleted, result.skipped):
            names.sort()
        logger.info(
            "sync of %r: %d written, %d deleted, %d skipped",
            self.container_name,
            len(result.written),
            len(result.deleted),
            len(result.skipped),
        )
        if errors:
            raise errors[0]
        return result

    async def _replay(self, keys: list[str], flush: Callable[[str], Awaitable[None]]) -> None:
        """Flush ``keys`` in order, ``sync_concurrency`` at a time, related keys one by one.

        ``a`` and ``a/b`` are related (on the local backend one is the other's folder), so
        a change to one starts only after every earlier change to the other has ended.
        """
        running: dict[asyncio.Future[None], str] = {}
        below: Counter[str] = Counter()  # folders of running keys

        def blocked(key: str) -> bool:
            return key in below or any(a in running.values() for a in _ancestors(key))

        try:
            for key in keys:
                while len(running) >= self._sync_concurrency or (running and blocked(key)):
                    done, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                    for task in done:
                        for folder in _ancestors(running.pop(task)):
                            below[folder] -= 1
                            if not below[folder]:
                                del below[folder]
                running[asyncio.ensure_future(flush(key))] = key
                below.update(_ancestors(key))
            await asyncio.gather(*running)
        except BaseException:
            for task in running:
                task.cancel()
            await asyncio.gather(*running, return_exceptions=True)
            raise

    async def _check_no_conflicts(self, turns: dict[str, _Turn]) -> None:
        """Raise ConcurrencyError naming every key changed in storage; the keys stay held."""
        keys = list(turns)

        async def changed(key: str) -> bool:
            state = await turns[key].hold()
            if not state.pending:
                return False
            condition = self._condition(state)
            if condition is OVERWRITE:
                return False
            info = await self.adapter.head(self.container_name, key)
            if isinstance(condition, Create):
                return info is not None
            assert isinstance(condition, Update)
            return info is None or info.etag != condition.etag

        flags = await gather_bounded(
            [functools.partial(changed, key) for key in keys], self._sync_concurrency
        )
        conflicts = sorted(key for key, flag in zip(keys, flags, strict=True) if flag)
        if conflicts:
            shown = ", ".join(repr(k) for k in conflicts[:10])
            more = f" and {len(conflicts) - 10} more" if len(conflicts) > 10 else ""
            raise ConcurrencyError(
                f"sync wrote nothing: {len(conflicts)} key(s) changed in storage since read: "
                f"{shown}{more}",
                container=self.container_name,
            )

    # -------------------------------------------------------------- lifecycle

    async def close(self) -> None:
        """Wait for running operations, sync pending changes ("raise"), release the adapter.

        If the sync fails the error is raised and the store stays open with its changes, so
        they can be synced again or discarded. Closing twice is fine. The adapter is closed
        too when the store owns it (``owns_adapter``, the default).
        """
        if self._closed:
            return
        while True:
            await self._table.wait_idle()
            if not self._table.pending_count:
                break
            await self.sync("raise")
        self._closed = True
        self._unsynced.detach()
        if self.owns_adapter:
            await self.adapter.close()

    def _key(self, key: str) -> str:
        """The key as stored: checked (before any I/O), and normalised if the store says so."""
        self._check_open()
        # A key the table holds was checked (and is in normal form) when it entered: a cache
        # hit then costs a dict lookup, not the key rules again. (Exactly str: a subclass
        # may hash or compare as it likes.)
        if type(key) is str and self._table.peek(key) is not None:
            return key
        validate_key(key, self.container_name)
        if self._normal_form is not None:
            return self._normalize(self._normal_form, key)
        return key

    def _check_open(self) -> None:
        if self._closed:
            raise AsyncBlobDictError("the store is closed", container=self.container_name)


async def _slices(data: bytes, start: int, end: int) -> AsyncIterator[bytes]:
    """``data[start:end]`` in STREAM_CHUNK pieces."""
    view = memoryview(data)
    for pos in range(start, end, STREAM_CHUNK):
        yield bytes(view[pos : min(end, pos + STREAM_CHUNK)])


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


async def _call(fn: Callable[[Any], Any], value: Any) -> Any:
    result = fn(value)
    if inspect.isawaitable(result):
        awaited: Awaitable[Any] = result
        return await awaited
    return result
