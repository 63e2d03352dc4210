"""A store's batches: one operation over many keys, bounded, every failure reported."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from ._options import _NO_DEFAULT, JSON_CONTENT_TYPE, _extra
from ._tasks import gather_bounded
from .errors import AsyncBlobDictError, BatchError, BlobNotFoundError
from .expiry import Ttl

if TYPE_CHECKING:
    from .store import AsyncBlobStore

__all__ = ["batch", "set_many"]

_T = TypeVar("_T")


async def set_many(
    store: AsyncBlobStore,
    items: Mapping[str, Any] | Iterable[tuple[str, Any]],
    concurrency: int | None,
    ttl: Ttl | None,
) -> None:
    """:meth:`AsyncBlobStore.set_many`."""
    pairs = list(items.items() if isinstance(items, Mapping) else items)
    encoded = {}
    for key, value in pairs:
        key = store._key(key)
        encoded[key] = store._encode(key, value)
    extra = store._expiring(_extra(JSON_CONTENT_TYPE, None), ttl)

    async def write(key: str) -> None:
        await store._write(key, encoded[key], extra)

    await batch(store, encoded, write, _NO_DEFAULT, concurrency, "set_many")


async def batch(
    store: AsyncBlobStore,
    keys: Iterable[str],
    operation: Callable[[str], Awaitable[_T]],
    default: Any,
    concurrency: int | None,
    name: str,
) -> dict[str, _T]:
    """``operation(key)`` for each key once, in order, ``concurrency`` at a time (the
    store's ``batch_concurrency`` if None); a missing key maps to ``default`` (or is left
    out), and the store's errors are raised together as one BatchError."""
    unique = list(dict.fromkeys(store._key(key) for key in keys))  # once each, in order
    limit = store.batch_concurrency if concurrency is None else concurrency
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
            container=store.container_name,
        )
    return {key: results[key] for key in unique if key in results}
