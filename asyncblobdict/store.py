"""AsyncBlobStore: JSON and binary values by key over any adapter, with caching and ETags."""

from __future__ import annotations

import asyncio
import inspect
import logging
import random
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from types import TracebackType
from typing import Any, Final, Literal

from . import codec
from .adapters.base import Adapter
from .cache import Cache
from .errors import AsyncBlobDictError, BlobNotFoundError, ConcurrencyError, SerializationError
from .keys import validate_key, validate_prefix
from .modes import CacheMode, ConcurrencyMode, SyncResult

__all__ = ["AsyncBlobStore"]

logger = logging.getLogger("asyncblobdict")

EtagBehavior = Literal["skip", "overwrite", "raise"]
_ETAG_BEHAVIORS: Final = ("skip", "overwrite", "raise")


class _Absent:
    """Marks a key this store last saw missing (its next write must create it)."""

    def __repr__(self) -> str:
        return "<absent>"


_ABSENT: Final = _Absent()
_NO_DEFAULT: Final = object()

# How many open stores use each adapter (by identity), so a shared adapter closes only with
# its last store. A store holds its adapter, so a counted id cannot be reused; a store dropped
# without close() uncounts itself through its finalizer.
_adapter_users: dict[int, int] = {}


def _release_adapter(ident: int) -> bool:
    """Uncount one store of adapter ``ident``; True when it was the last."""
    users = _adapter_users.get(ident, 1) - 1
    if users > 0:
        _adapter_users[ident] = users
        return False
    _adapter_users.pop(ident, None)
    return True


class AsyncBlobStore:
    """A key-value store of JSON and binary values in one container of an adapter.

    ``cache_mode`` and ``concurrency_mode`` take the enums or their string values. The cache
    holds at most ``cache_max_entries`` values and ``cache_max_bytes`` bytes (None: no bound);
    dirty write-back entries are never evicted. ``sync_concurrency`` bounds parallel writes in
    ``sync()``. Use it with ``async with``, or call ``close()``.
    """

    def __init__(
        self,
        adapter: Adapter,
        container_name: str,
        cache_mode: CacheMode | str = CacheMode.NONE,
        concurrency_mode: ConcurrencyMode | str = ConcurrencyMode.NONE,
        *,
        cache_max_entries: int | None = 10_000,
        cache_max_bytes: int | None = 256 * 1024 * 1024,
        sync_concurrency: int = 16,
    ) -> None:
        if not isinstance(adapter, Adapter):
            raise TypeError(
                f"adapter must implement the Adapter protocol, not {type(adapter).__name__}"
            )
        self.cache_mode = CacheMode(cache_mode)
        self.concurrency_mode = ConcurrencyMode(concurrency_mode)
        if sync_concurrency < 1:
            raise ValueError("sync_concurrency must be at least 1")
        validate_container = getattr(adapter, "validate_container", None)
        if callable(validate_container):
            validate_container(container_name)
        self.adapter: Adapter = adapter
        self.container_name: str = container_name
        self._cache = Cache(cache_max_entries, cache_max_bytes)
        self._caching = self.cache_mode is not CacheMode.NONE
        self._write_back = self.cache_mode is CacheMode.WRITE_BACK
        self._etags = self.concurrency_mode is ConcurrencyMode.ETAG
        # Per key: the ETag of the version this store last read or wrote, or _ABSENT.
        self._seen: dict[str, str | _Absent] = {}
        # Per key: a counter bumped by every local change, so a read that raced a write never
        # puts its older bytes into the cache.
        self._epochs: dict[str, int] = {}
        self._sync_concurrency = sync_concurrency
        self._closed = False
        _adapter_users[id(adapter)] = _adapter_users.get(id(adapter), 0) + 1
        self._release = weakref.finalize(self, _release_adapter, id(adapter))

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
        data = await self._read(key)
        try:
            return codec.decode(data)
        except SerializationError as exc:
            raise SerializationError(exc.message, container=self.container_name, key=key) from None

    async def get_binary(self, key: str) -> bytes:
        """Return the stored bytes of ``key`` (for a JSON value, its UTF-8 JSON text)."""
        return await self._read(key)

    async def exists(self, key: str) -> bool:
        """Return whether ``key`` exists (pending write-back changes count)."""
        self._check_open()
        validate_key(key, self.container_name)
        if self._caching:
            entry = self._cache.get(key)
            if entry is not None:
                return entry.data is not None
        info = await self.adapter.head(self.container_name, key)
        if self._etags:
            if info is None:
                self._seen[key] = _ABSENT
            elif info.etag is not None:
                self._seen[key] = info.etag
        return info is not None

    async def list_keys(self, prefix: str = "") -> list[str]:
        """Return every key starting with ``prefix``, sorted as Python sorts str."""
        return sorted([key async for key in self.iter_keys(prefix)])

    async def iter_keys(self, prefix: str = "") -> AsyncIterator[str]:
        """Yield every key starting with ``prefix`` in the adapter's order, without a list.

        In WRITE_BACK mode pending deletes are left out and keys created since the last sync
        come after the stored ones.
        """
        self._check_open()
        validate_prefix(prefix, self.container_name)
        pending = (
            {k: e.data is not None for k, e in self._cache.dirty_items() if k.startswith(prefix)}
            if self._write_back
            else {}
        )
        async for info in self.adapter.list(self.container_name, prefix):
            alive = pending.pop(info.key, True)
            if alive:
                yield info.key
        for key, alive in pending.items():
            if alive:
                yield key

    async def _read(self, key: str) -> bytes:
        self._check_open()
        validate_key(key, self.container_name)
        if self._caching:
            entry = self._cache.get(key)
            if entry is not None:
                if entry.data is None:
                    raise BlobNotFoundError(
                        "key was deleted (pending sync)", container=self.container_name, key=key
                    )
                return entry.data
        epoch = self._epochs.get(key, 0)
        try:
            data, etag = await self.adapter.get(self.container_name, key)
        except BlobNotFoundError:
            if self._etags:
                self._seen[key] = _ABSENT
            raise
        if self._etags:
            self._seen[key] = etag
        if self._caching and self._epochs.get(key, 0) == epoch and self._cache.get(key) is None:
            self._cache.put(key, data, dirty=False)
        return data

    # ----------------------------------------------------------------- writes

    async def set_json(self, key: str, value: Any) -> None:
        """Store ``value`` as JSON; nothing is written if it cannot be encoded."""
        self._check_open()
        validate_key(key, self.container_name)
        try:
            data = codec.encode(value)
        except SerializationError as exc:
            raise SerializationError(exc.message, container=self.container_name, key=key) from None
        await self._write(key, data)

    async def set_binary(self, key: str, data: bytes | bytearray | memoryview) -> None:
        """Store ``data`` as given."""
        self._check_open()
        validate_key(key, self.container_name)
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise SerializationError(
                f"set_binary needs bytes, bytearray or memoryview, not {type(data).__name__}",
                container=self.container_name,
                key=key,
            )
        await self._write(key, bytes(data))

    async def delete(self, key: str) -> None:
        """Delete ``key``; a missing key is a no-op.

        In ETAG mode a key changed in storage since this store last saw it raises
        ConcurrencyError and stays.
        """
        self._check_open()
        validate_key(key, self.container_name)
        self._bump(key)
        if self._write_back:
            self._cache.put(key, None, dirty=True)
            return
        try:
            await self._delete_stored(key, overwrite=False)
        finally:
            self._cache.discard(key)

    async def update_json(
        self,
        key: str,
        fn: Callable[[Any], Any],
        *,
        default: Any = _NO_DEFAULT,
        max_attempts: int = 64,
    ) -> Any:
        """Atomically replace the value of ``key`` with ``fn(value)`` and return the new value.

        Reads the stored value with its ETag, applies ``fn`` (a function or coroutine
        function) and writes only if the key is unchanged, retrying with a fresh read on a
        conflict, up to ``max_attempts`` times (then ConcurrencyError). A missing key uses
        ``default`` (BlobNotFoundError without one) and is created only if still missing.
        ``fn`` may run more than once and should not have side effects.

        In WRITE_BACK mode a key with a pending change is updated in the cache instead.
        """
        self._check_open()
        validate_key(key, self.container_name)
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self._write_back:
            entry = self._cache.get(key)
            if entry is not None and entry.dirty:
                current = default if entry.data is None else codec.decode(entry.data)
                if current is _NO_DEFAULT:
                    raise BlobNotFoundError(
                        "key was deleted (pending sync)", container=self.container_name, key=key
                    )
                new_value = await _call(fn, current)
                await self.set_json(key, new_value)
                return new_value
        for attempt in range(max_attempts):
            try:
                data, etag = await self.adapter.get(self.container_name, key)
                current = codec.decode(data)
                condition: dict[str, Any] = {"if_match": etag}
            except BlobNotFoundError:
                if default is _NO_DEFAULT:
                    raise
                current = codec.decode(codec.encode(default))  # a fresh copy each attempt
                condition = {"if_none_match": True}
            except SerializationError as exc:
                raise SerializationError(
                    exc.message, container=self.container_name, key=key
                ) from None
            new_value = await _call(fn, current)
            try:
                new_data = codec.encode(new_value)
            except SerializationError as exc:
                raise SerializationError(
                    exc.message, container=self.container_name, key=key
                ) from None
            epoch = self._bump(key)
            try:
                new_etag = await self.adapter.put(self.container_name, key, new_data, **condition)
            except ConcurrencyError:
                self._cache.discard(key)
                delay = random.uniform(0, min(0.5, 0.002 * 2**attempt))
                logger.debug("update_json conflict on %r, attempt %d", key, attempt + 1)
                await asyncio.sleep(delay)
                continue
            if self._etags:
                self._seen[key] = new_etag
            self._cache_stored(key, new_data, epoch)
            return new_value
        raise ConcurrencyError(
            f"update_json gave up after {max_attempts} conflicting attempts",
            container=self.container_name,
            key=key,
        )

    async def _write(self, key: str, data: bytes) -> None:
        epoch = self._bump(key)
        if self._write_back:
            self._cache.put(key, data, dirty=True)
            return
        try:
            await self._put_stored(key, data, overwrite=False)
        except BaseException:
            self._cache.discard(key)
            raise
        self._cache_stored(key, data, epoch)

    def _cache_stored(self, key: str, data: bytes, epoch: int) -> None:
        """Cache the bytes of a completed write, unless another write of the key overlapped."""
        if self._caching and not self._write_back:
            if self._epochs.get(key) == epoch:
                self._cache.put(key, data, dirty=False)
            else:  # another write of this key finished in between: which landed last is unknown
                self._cache.discard(key)

    def _bump(self, key: str) -> int:
        epoch = self._epochs.get(key, 0) + 1
        self._epochs[key] = epoch
        return epoch

    # ------------------------------------------------------- storage with ETags

    def _condition(self, key: str) -> tuple[str | None, bool]:
        """(if_match, if_none_match) for writing ``key`` in ETAG mode."""
        if not self._etags:
            return None, False
        seen = self._seen.get(key)
        if seen is None:
            return None, False
        if isinstance(seen, _Absent):
            return None, True
        return seen, False

    async def _put_stored(self, key: str, data: bytes, *, overwrite: bool) -> None:
        if_match, if_none_match = (None, False) if overwrite else self._condition(key)
        etag = await self.adapter.put(
            self.container_name, key, data, if_match=if_match, if_none_match=if_none_match
        )
        if self._etags:
            self._seen[key] = etag

    async def _delete_stored(self, key: str, *, overwrite: bool) -> None:
        if_match, if_none_match = (None, False) if overwrite else self._condition(key)
        if if_none_match:
            # Last seen missing: deleting a value someone has since created would lose it.
            if await self.adapter.head(self.container_name, key) is not None:
                raise ConcurrencyError(
                    "key was created by someone else since this store saw it missing",
                    container=self.container_name,
                    key=key,
                )
        else:
            try:
                await self.adapter.delete(self.container_name, key, if_match=if_match)
            except ConcurrencyError:
                # Already deleted by someone else: the outcome we wanted, nothing lost.
                if await self.adapter.head(self.container_name, key) is not None:
                    raise
        if self._etags:
            self._seen[key] = _ABSENT

    # -------------------------------------------------------------- write-back

    def dirty_keys(self) -> list[str]:
        """Keys with changes not yet written to storage (WRITE_BACK mode), sorted."""
        return [key for key, _ in self._cache.dirty_items()]

    def discard_changes(self, *keys: str) -> None:
        """Drop pending write-back changes of ``keys`` (all of them when none are given)."""
        for key in keys or self.dirty_keys():
            entry = self._cache.get(key)
            if entry is not None and entry.dirty:
                self._cache.discard(key)
                self._bump(key)

    async def sync(self, etag_behavior: EtagBehavior | str = "skip") -> SyncResult:
        """Write pending write-back changes to storage and return what was done.

        In ETAG mode each change is checked against the version it was based on:
        ``"skip"`` leaves conflicting keys dirty and reports them as skipped, ``"overwrite"``
        writes them anyway, ``"raise"`` checks every key first and raises ConcurrencyError
        (writing nothing) if any conflicts. A storage failure is raised after the other keys
        were tried; unwritten keys stay dirty.
        """
        if etag_behavior not in _ETAG_BEHAVIORS:
            raise ValueError(
                f"etag_behavior must be one of {', '.join(_ETAG_BEHAVIORS)}, not {etag_behavior!r}"
            )
        self._check_open()
        result = SyncResult()
        pending = self._cache.dirty_items()
        if not pending:
            return result
        if etag_behavior == "raise" and self._etags:
            await self._check_no_conflicts([key for key, _ in pending])
        overwrite = etag_behavior == "overwrite"
        limit = asyncio.Semaphore(self._sync_concurrency)
        errors: list[BaseException] = []

        async def flush(key: str, data: bytes | None, version: int) -> None:
            async with limit:
                try:
                    if data is None:
                        await self._delete_stored(key, overwrite=overwrite)
                        result.deleted.append(key)
                    else:
                        await self._put_stored(key, data, overwrite=overwrite)
                        result.written.append(key)
                    self._cache.mark_clean(key, version)
                except ConcurrencyError as exc:
                    if etag_behavior == "raise":
                        errors.append(exc)
                    result.skipped.append(key)
                    logger.warning("sync: %s; left unsynced", exc)
                except Exception as exc:  # re-raised below, after the other keys were tried
                    errors.append(exc)

        await asyncio.gather(*(flush(k, e.data, e.version) for k, e in pending))
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

    async def _check_no_conflicts(self, keys: list[str]) -> None:
        limit = asyncio.Semaphore(self._sync_concurrency)

        async def changed(key: str) -> bool:
            if_match, if_none_match = self._condition(key)
            if if_match is None and not if_none_match:
                return False
            async with limit:
                info = await self.adapter.head(self.container_name, key)
            if if_none_match:
                return info is not None
            return info is not None and info.etag != if_match

        flags = await asyncio.gather(*(changed(key) for key in keys))
        conflicts = [key for key, flag in zip(keys, flags, strict=True) if flag]
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
        """Sync pending changes (etag_behavior "raise"), then release the adapter.

        If the sync fails the error is raised and the store stays open with its changes, so
        they can be synced again or discarded. Closing twice is fine. The adapter is closed
        when the last open store that uses it closes.
        """
        if self._closed:
            return
        if self._cache.dirty_items():
            await self.sync("raise")
        self._closed = True
        if self._release():
            await self.adapter.close()

    def _check_open(self) -> None:
        if self._closed:
            raise AsyncBlobDictError("the store is closed", container=self.container_name)


async def _call(fn: Callable[[Any], Any], value: Any) -> Any:
    result = fn(value)
    if inspect.isawaitable(result):
        awaited: Awaitable[Any] = result
        return await awaited
    return result
