"""A store's listings: the adapter's names below a prefix, without expired values, with
pending write-back changes folded in."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from typing import TYPE_CHECKING

from ._tasks import close_iterator
from .adapters.base import MetadataListingAdapter, check_delimiter
from .expiry import EXPIRES_METADATA, expiry_of

if TYPE_CHECKING:
    from .store import AsyncBlobStore

__all__ = ["iter_keys", "listed_metadata"]


async def iter_keys(
    store: AsyncBlobStore, prefix: str, delimiter: str | None
) -> AsyncGenerator[str, None]:
    """:meth:`AsyncBlobStore.iter_keys`."""
    prefix = store._prefix(prefix)
    check_delimiter(delimiter)
    pending = {
        key: state.data is not None and not store._expired(state.expires)
        for key, state in store._table.pending_items()
        if key.startswith(prefix)
    }
    if not pending:
        names = _live_names(store, prefix, delimiter)
        try:
            async for name in names:
                yield name
        finally:
            await close_iterator(names)
        return
    # Pending changes below the prefix: list every key and fold the levels here, so a
    # folder whose keys are all deleted (pending) is left out too.
    shown: set[str] = set()
    names = _live_names(store, prefix, None)
    try:
        async for name in names:
            if pending.pop(name, True):
                entry = _level(name, prefix) if delimiter else name
                if entry not in shown:
                    shown.add(entry)
                    yield entry
    finally:
        await close_iterator(names)
    for key in sorted(pending):
        if pending[key]:
            entry = _level(key, prefix) if delimiter else key
            if entry not in shown:
                shown.add(entry)
                yield entry


def _level(name: str, prefix: str) -> str:
    """The name as a one-level listing below ``prefix`` shows it (a key, or its folder)."""
    cut = name.find("/", len(prefix))
    return name if cut < 0 else name[: cut + 1]


async def _live_names(
    store: AsyncBlobStore, prefix: str, delimiter: str | None
) -> AsyncIterator[str]:
    """The adapter's names below ``prefix`` without the expired values."""
    entries = listed_metadata(store, prefix, delimiter)
    try:
        async for name, metadata in entries:
            if EXPIRES_METADATA not in metadata or not store._expired(expiry_of(metadata)):
                yield name
    finally:
        await close_iterator(entries)


async def listed_metadata(
    store: AsyncBlobStore, prefix: str, delimiter: str | None
) -> AsyncIterator[tuple[str, Mapping[str, str]]]:
    """``(name, metadata)`` of every listed name, from the adapter's ``list_metadata``;
    an adapter without it is asked ``head`` for each key (a folder's metadata is empty)."""
    adapter = store.adapter
    container = store.container_name
    if isinstance(adapter, MetadataListingAdapter):
        entries = adapter.list_metadata(container, prefix, delimiter=delimiter)
        try:
            async for entry in entries:
                yield entry
        finally:
            await close_iterator(entries)
        return
    names = adapter.list_names(container, prefix, delimiter=delimiter)
    try:
        async for name in names:
            if name.endswith("/"):
                yield name, {}
                continue
            info = await adapter.head(container, name)
            if info is not None:  # deleted since it was listed
                yield name, info.metadata
    finally:
        await close_iterator(names)
