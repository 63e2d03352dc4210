"""AsyncBlobStore: JSON and binary values by key over any adapter, with caching and ETags.

The class holds the API and the reads and writes of one key; streams, listings, batches,
``update_json``, the expiry sweep and ``sync`` are in modules its methods delegate to.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import marshal
import os
import time
import warnings
import weakref
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Callable,
    Coroutine,
    Iterable,
    Mapping,
)
from types import TracebackType
from typing import Any, Final, Literal, TypeVar

from . import _batches, _listing, _streaming, _sweep, _update, _write_back, codec
from ._options import _NO_DEFAULT, JSON_CONTENT_TYPE, _Extra, _extra, _with_expiry
from ._streaming import Chunks, MiB, Progress
from ._write_back import EtagBehavior
from .adapters.base import (
    CREATE,
    OVERWRITE,
    Adapter,
    BlobInfo,
    Precondition,
    Update,
    check_range,
)
from .cache import ABSENT, KeyState, KeyTable
from .errors import (
    AsyncBlobDictError,
    BlobNotFoundError,
    ConcurrencyError,
    SerializationError,
    StorageError,
)
from .expiry import (
    EXPIRES_METADATA,
    Ttl,
    expires_at,
    expiry_datetime,
    expiry_of,
)
from .keys import validate_key, validate_prefix
from .modes import CacheMode, ConcurrencyMode, SyncResult

__all__ = ["AsyncBlobStore"]

logger = logging.getLogger("asyncblobdict")

_T = TypeVar("_T")


async def _run_into(write: Coroutine[Any, Any, _T], waiter: asyncio.Future[_T]) -> _T:
    """Run ``write`` and give its outcome to ``waiter`` while anyone waits there. Once the
    waiter was cancelled (a detached write) the outcome stays with this task."""
    try:
        result = await write
    except asyncio.CancelledError:
        waiter.cancel()
        raise
    except GeneratorExit:  # the task is destroyed unfinished (its loop closed): nobody waits
        raise
    except BaseException as exc:  # any other: the caller waits for it (as with shield)
        if waiter.done():
            raise
        waiter.set_exception(exc)
        return None  # type: ignore[return-value]  # the waiter has it: never read here
    if not waiter.done():
        waiter.set_result(result)
    return result


def _log_lost_failure(key: str, exc: BaseException | None) -> None:
    logger.warning("a write of %r whose caller was cancelled failed: %s", key, exc)


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


def _public_info(info: BlobInfo) -> BlobInfo:
    """``info`` as the store shows it: the expiry as ``expires``, not as metadata."""
    if EXPIRES_METADATA not in info.metadata:
        return info
    metadata = {k: v for k, v in info.metadata.items() if k != EXPIRES_METADATA}
    expires = expiry_datetime(expiry_of(info.metadata))
    return dataclasses.replace(info, metadata=metadata, expires=expires)


CACHE_VALUE_MAX_BYTES: Final = 8 * MiB
"""Values larger than this are never cached in memory (see ``cache_value_max_bytes``)."""


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
        key = self._key(key)
        data = self._hit(key) if self._caching else None
        if data is None:
            data = await self._read(key, checked=True)
        return self._json_of(key, data)

    def _json_of(self, key: str, data: bytes) -> Any:
        """A fresh decoded value of ``data``, the bytes just read of ``key``.

        When they are the cached bytes of plain JSON (no tagged value), the value is kept
        beside them in marshal form, made on the first read: each later hit loads that,
        about 2.5x as fast as decoding JSON, and as fresh a copy. (marshal keeps JSON's own
        types exactly; it would turn a bytearray into bytes, so tagged values are decoded.)
        """
        state = self._table.peek(key) if self._caching else None
        if state is None or state.data is not data:
            return self._decode(key, data)
        copy = state.copy
        if copy:
            return marshal.loads(copy)
        value = self._decode(key, data)
        if copy is None:
            try:
                copy = marshal.dumps(value) if codec.decodes_plain(data) else b""
            except ValueError:  # nested too deeply for marshal
                copy = b""
            self._table.set_copy(key, state, copy)
        return value

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

    def iter_binary(
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
        return _streaming.iter_binary(self, key, offset, length, chunk_size, progress)

    async def get_file(
        self, key: str, path: str | os.PathLike[str], *, progress: Progress | None = None
    ) -> None:
        """Write the value of ``key`` to the file ``path``, streaming.

        The bytes go to a temp file beside ``path`` (fsynced), which then replaces ``path``:
        ``path`` holds its old content or the whole value, never a part. On any failure or
        cancellation the temp file is removed and ``path`` is untouched.
        """
        await _streaming.get_file(self, key, path, progress)

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
        await _streaming.set_file(self, key, path, content_type, metadata, progress, ttl)

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

    def iter_keys(
        self, prefix: str = "", *, delimiter: str | None = None
    ) -> AsyncGenerator[str, None]:
        """Yield every key starting with ``prefix`` in the adapter's order, without a list.

        ``delimiter`` as for :meth:`list_keys`. In WRITE_BACK mode pending deletes are left
        out and keys created since the last sync come after the stored ones. Expired values
        are left out (a folder is listed while it holds any stored key, expired or not,
        unless there are pending changes below ``prefix``; :meth:`sweep_expired` removes
        expired values for good).
        """
        return _listing.iter_keys(self, prefix, delimiter)

    def _prefix(self, prefix: str) -> str:
        """A listing's prefix, checked (and normalised if the store says so)."""
        self._check_open()
        validate_prefix(prefix, self.container_name)
        if self._normal_form is not None:
            prefix = self._normalize(self._normal_form, prefix)
        return prefix

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

    async def _read(self, key: str, *, checked: bool = False) -> bytes:
        if not checked:
            key = self._key(key)
        caching = self._caching
        if caching:
            data = self._hit(key)
            if data is not None:
                return data
        table = self._table
        state, waiter = table.reserve(key)
        if waiter is not None:
            await table.wait_turn(key, state, waiter)
        try:
            if caching:
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
        await _streaming.write_stream(self, key, data, extra, size, progress)

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
        return await _update.update_json(self, key, fn, default, max_attempts, ttl)

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
        # As asyncio.shield(task), one loop iteration sooner: the task hands its outcome to
        # ``waiter`` itself instead of through a done-callback.
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[_T] = loop.create_future()
        task = loop.create_task(_run_into(write, waiter))
        try:
            return await waiter
        except asyncio.CancelledError:
            if not task.done():
                state.detached = True
                self._background.add(task)
                task.add_done_callback(lambda done: self._detached_done(key, state, done))
            elif not waiter.cancelled() and waiter.exception() is not None:
                # It failed just before its caller was cancelled: the caller never saw it.
                _log_lost_failure(key, waiter.exception())
            raise

    def _detached_done(self, key: str, state: KeyState, task: asyncio.Future[Any]) -> None:
        self._background.discard(task)
        self._table.release(key, state)
        if not task.cancelled() and task.exception() is not None:
            _log_lost_failure(key, task.exception())

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
        return await _batches.batch(self, keys, self.get_json, default, concurrency, "get_many")

    async def get_many_binary(
        self,
        keys: Iterable[str],
        *,
        default: Any = _NO_DEFAULT,
        concurrency: int | None = None,
    ) -> dict[str, bytes]:
        """The stored bytes of ``keys``, as :meth:`get_many` does for JSON."""
        return await _batches.batch(
            self, keys, self.get_binary, default, concurrency, "get_many_binary"
        )

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
        await _batches.set_many(self, items, concurrency, ttl)

    async def delete_many(self, keys: Iterable[str], *, concurrency: int | None = None) -> None:
        """Delete every key (missing ones are no-ops), ``concurrency`` at a time; failures
        as for :meth:`set_many`."""
        await _batches.batch(self, keys, self.delete, _NO_DEFAULT, concurrency, "delete_many")

    async def sweep_expired(self, prefix: str = "", *, concurrency: int | None = None) -> int:
        """Delete the expired values of keys starting with ``prefix``; return how many.

        Lists the keys with their metadata, then for each expired one reads its current
        version (``head``) and deletes exactly that version (a conditional delete on its
        ETag), ``concurrency`` at a time (``batch_concurrency``): a value written anew
        meanwhile, by this store or another, survives. Keys with a pending write-back change
        are left alone (the change replaces them at ``sync``). Expiry is judged by this
        store's clock.
        """
        return await _sweep.sweep_expired(self, prefix, concurrency)

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
        return await _write_back.sync(self, etag_behavior)

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
