"""The adapter protocol: the only thing the store knows about storage.

An adapter moves bytes; it knows nothing of JSON, caching or ETag bookkeeping. Keys reach it
already checked by :func:`asyncblobdict.keys.validate_key`; container names it checks itself
(each backend has its own rules) and raises :class:`~asyncblobdict.InvalidKeyError` for a bad one.

The contract, written once:

``async get(container, key) -> (data, etag)``
    Data and its ETag from one atomic read. Missing key or container: BlobNotFoundError.
``async head(container, key) -> BlobInfo | None``
    Metadata of the stored value, None when missing.
``async put(container, key, data, *, if_match=None, if_none_match=False) -> etag``
    Store ``data`` whole (readers never see a torn value) and return the new ETag.
    ``if_match=etag``: only if the stored ETag equals it. ``if_none_match=True``: only if the key
    does not exist. A failed condition raises ConcurrencyError and changes nothing.
    A missing container is created.
``async delete(container, key, *, if_match=None) -> None``
    Remove the key. Missing key: no-op, unless ``if_match`` is given (then ConcurrencyError).
``list(container, prefix="") -> AsyncIterator[BlobInfo]``
    Every key starting with ``prefix``, in the backend's order. Missing container: nothing.
``async close() -> None``
    Release sessions and threads. Safe to call twice; a closed adapter may be used again.

Any other failure is a StorageError (or AuthenticationError); no OSError or client exception
escapes. :class:`~asyncblobdict.adapters.memory.MemoryAdapter` is the reference implementation.

Example: an adapter that puts every container under a fixed prefix of another adapter::

    class Prefixed:
        def __init__(self, inner: Adapter, prefix: str) -> None:
            self.inner, self.prefix = inner, prefix
        async def get(self, container, key):
            return await self.inner.get(container, self.prefix + key)
        ...  # head, put, delete, list and close the same way
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, runtime_checkable

__all__ = ["Adapter", "BlobInfo"]


@dataclass(frozen=True, slots=True)
class BlobInfo:
    """What an adapter knows about one stored value without reading it.

    ``etag`` and ``content_md5`` (the raw 16-byte MD5 digest of the content) may be None
    when the backend cannot tell them cheaply (the local adapter's ``list`` gives neither;
    its ``head`` gives both).
    """

    key: str
    size: int
    etag: str | None = None
    last_modified: datetime | None = None
    content_md5: bytes | None = None


@runtime_checkable
class Adapter(Protocol):
    """The storage protocol every backend implements (see the module docstring)."""

    async def get(self, container: str, key: str) -> tuple[bytes, str]:
        """Return the stored bytes and their ETag, read atomically together."""
        ...

    async def head(self, container: str, key: str) -> BlobInfo | None:
        """Return the key's metadata, or None if it does not exist."""
        ...

    async def put(
        self,
        container: str,
        key: str,
        data: bytes,
        *,
        if_match: str | None = None,
        if_none_match: bool = False,
    ) -> str:
        """Store ``data`` atomically under the given precondition; return the new ETag."""
        ...

    async def delete(self, container: str, key: str, *, if_match: str | None = None) -> None:
        """Delete the key (a missing key is a no-op unless ``if_match`` is given)."""
        ...

    def list(self, container: str, prefix: str = "") -> AsyncIterator[BlobInfo]:
        """Yield every stored key that starts with ``prefix``."""
        ...

    async def close(self) -> None:
        """Release resources; safe to call more than once."""
        ...
