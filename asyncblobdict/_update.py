"""A store's ``update_json``: read, apply, write only if unchanged, retry on a conflict."""

from __future__ import annotations

import asyncio
import inspect
import logging
import random
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from ._options import _NO_DEFAULT, JSON_CONTENT_TYPE, _Extra, _with_expiry
from .adapters.base import CREATE, OVERWRITE, Precondition, Update
from .errors import BlobNotFoundError, ConcurrencyError
from .expiry import Ttl, expires_at, expiry_of

if TYPE_CHECKING:
    from .store import AsyncBlobStore

__all__ = ["update_json"]

logger = logging.getLogger("asyncblobdict")


async def update_json(
    store: AsyncBlobStore,
    key: str,
    fn: Callable[[Any], Any],
    default: Any,
    max_attempts: int,
    ttl: Ttl | None,
) -> Any:
    """:meth:`AsyncBlobStore.update_json`."""
    key = store._key(key)
    if max_attempts < 1:
        raise ValueError("max_attempts must be at least 1")
    expires = None if ttl is None else expires_at(store.clock(), ttl)
    table = store._table
    state = await table.acquire(key)
    try:
        if store._write_back and state.pending:
            metadata = state.metadata
            if state.data is not None and not store._expired(state.expires):
                current = store._decode(key, state.data)
            elif default is _NO_DEFAULT:
                raise BlobNotFoundError(
                    "key was deleted or expired (pending sync)",
                    container=store.container_name,
                    key=key,
                )
            else:
                current, metadata = store._copy(key, default), None
            new_value = await _call(fn, current)
            extra: _Extra = (JSON_CONTENT_TYPE, metadata)
            if expires is not None:
                extra = _with_expiry(extra, expires)
            table.make_pending(
                key, state, store._encode(key, new_value), *extra, expires=expiry_of(extra[1])
            )
            return new_value
        for attempt in range(max_attempts):
            new_value, new_data, condition, extra = await _apply(store, key, fn, default)
            if expires is not None:
                extra = _with_expiry(extra, expires)
            try:
                await store._finish(
                    key, state, store._put_stored(key, state, new_data, condition, extra)
                )
            except ConcurrencyError:  # a clean conflict: nothing of ours landed
                logger.debug("update_json conflict on %r, attempt %d", key, attempt + 1)
                await asyncio.sleep(random.uniform(0, min(0.5, 0.002 * 2**attempt)))
                continue
            return new_value
        raise ConcurrencyError(
            f"update_json gave up after {max_attempts} conflicting attempts",
            container=store.container_name,
            key=key,
        )
    finally:
        store._release_key(key, state)


async def _apply(
    store: AsyncBlobStore, key: str, fn: Callable[[Any], Any], default: Any
) -> tuple[Any, bytes, Precondition, _Extra]:
    """One read-modify step of update_json: the new value, its bytes, the write's
    condition, and the content type and metadata to keep (the stored value's)."""
    extra: _Extra = (JSON_CONTENT_TYPE, None)
    condition: Precondition
    try:
        data, info = await store.adapter.get(store.container_name, key)
    except BlobNotFoundError:
        if default is _NO_DEFAULT:
            raise
        current, condition = store._copy(key, default), CREATE
    else:
        condition = OVERWRITE if info.etag is None else Update(info.etag)
        if store._expired(expiry_of(info.metadata)):
            if default is _NO_DEFAULT:
                raise store._expired_error(key)
            current = store._copy(key, default)  # replaces the expired version
        else:
            current = store._decode(key, data)
            extra = (info.content_type or JSON_CONTENT_TYPE, dict(info.metadata) or None)
    new_value = await _call(fn, current)
    return new_value, store._encode(key, new_value), condition, extra


async def _call(fn: Callable[[Any], Any], value: Any) -> Any:
    result = fn(value)
    if inspect.isawaitable(result):
        awaited: Awaitable[Any] = result
        return await awaited
    return result
