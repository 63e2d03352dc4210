"""A store's sweep of expired values: each deleted only in the version found expired."""

from __future__ import annotations

import functools
import logging
from typing import TYPE_CHECKING

from ._listing import listed_metadata
from ._tasks import gather_bounded
from .adapters.base import Update
from .cache import ABSENT, KeyState
from .errors import ConcurrencyError
from .expiry import EXPIRES_METADATA, expiry_of

if TYPE_CHECKING:
    from .store import AsyncBlobStore

__all__ = ["sweep_expired"]

logger = logging.getLogger("asyncblobdict")


async def sweep_expired(store: AsyncBlobStore, prefix: str, concurrency: int | None) -> int:
    """:meth:`AsyncBlobStore.sweep_expired`."""
    prefix = store._prefix(prefix)
    limit = store.batch_concurrency if concurrency is None else concurrency
    if limit < 1:
        raise ValueError("concurrency must be at least 1")
    expired = [
        name
        async for name, metadata in listed_metadata(store, prefix, None)
        if EXPIRES_METADATA in metadata and store._expired(expiry_of(metadata))
    ]
    deleted = await gather_bounded(
        [functools.partial(_sweep_one, store, key) for key in expired], limit
    )
    count = sum(deleted)
    logger.info("sweep of %r: %d expired value(s) deleted", store.container_name, count)
    return count


async def _sweep_one(store: AsyncBlobStore, key: str) -> bool:
    """Delete ``key`` if the version stored now has expired; whether it was deleted."""
    table = store._table
    state = await table.acquire(key)
    try:
        if state.pending:
            return False
        info = await store.adapter.head(store.container_name, key)
        if info is None or info.etag is None or not store._expired(expiry_of(info.metadata)):
            return False
        try:
            await store._finish(key, state, _delete_expired(store, key, state, info.etag))
        except ConcurrencyError:  # written anew (or deleted) since the head: it stays
            return False
        return True
    finally:
        store._release_key(key, state)


async def _delete_expired(store: AsyncBlobStore, key: str, state: KeyState, etag: str) -> None:
    try:
        await store.adapter.delete(store.container_name, key, condition=Update(etag))
    finally:
        if not state.pending:
            store._table.set_data(state, None)  # the expired value, or an unknown one
    if store._etags and state.etag == etag:
        store._table.set_etag(state, ABSENT)
