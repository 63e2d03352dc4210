"""MemoryAdapter: the reference adapter, holding every value in a dict."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from datetime import datetime, timezone

from ..errors import BlobNotFoundError, ConcurrencyError
from ..keys import validate_folder_container
from .base import BlobInfo

__all__ = ["MemoryAdapter"]


class _Entry:
    __slots__ = ("data", "etag", "last_modified", "md5")

    def __init__(self, data: bytes, etag: str) -> None:
        self.data = data
        self.etag = etag
        self.md5 = hashlib.md5(data, usedforsecurity=False).digest()
        self.last_modified = datetime.now(timezone.utc)


class MemoryAdapter:
    """Keeps values in process memory; nothing survives the process.

    Each write gets a new ETag (a generation number), as on Azure, even when the bytes are
    the same. ``list`` yields keys in sorted order. Containers follow the local adapter's rule
    (one folder name). Share one instance between stores to share the data.
    """

    def __init__(self) -> None:
        self._containers: dict[str, dict[str, _Entry]] = {}
        self._generation = 0
        # Operations complete without awaiting, so asyncio's single thread already makes
        # each one atomic; the lock documents that and guards against future awaits.
        self._lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"MemoryAdapter(containers={sorted(self._containers)})"

    @staticmethod
    def validate_container(container: str) -> str:
        """Check a container name (one folder name) before any I/O."""
        return validate_folder_container(container)

    def _next_etag(self) -> str:
        self._generation += 1
        return f'"0x{self._generation:X}"'

    async def get(self, container: str, key: str) -> tuple[bytes, str]:
        validate_folder_container(container)
        entry = self._containers.get(container, {}).get(key)
        if entry is None:
            raise BlobNotFoundError("key not found", container=container, key=key)
        return entry.data, entry.etag

    async def head(self, container: str, key: str) -> BlobInfo | None:
        validate_folder_container(container)
        entry = self._containers.get(container, {}).get(key)
        if entry is None:
            return None
        return BlobInfo(key, len(entry.data), entry.etag, entry.last_modified, entry.md5)

    async def put(
        self,
        container: str,
        key: str,
        data: bytes,
        *,
        if_match: str | None = None,
        if_none_match: bool = False,
    ) -> str:
        validate_folder_container(container)
        async with self._lock:
            blobs = self._containers.setdefault(container, {})
            current = blobs.get(key)
            _check_condition(container, key, current, if_match, if_none_match)
            etag = self._next_etag()
            blobs[key] = _Entry(bytes(data), etag)
            return etag

    async def delete(self, container: str, key: str, *, if_match: str | None = None) -> None:
        validate_folder_container(container)
        async with self._lock:
            blobs = self._containers.get(container, {})
            current = blobs.get(key)
            if if_match is not None:
                _check_condition(container, key, current, if_match, False)
            blobs.pop(key, None)

    async def list(self, container: str, prefix: str = "") -> AsyncIterator[BlobInfo]:
        validate_folder_container(container)
        blobs = self._containers.get(container, {})
        for key in sorted(k for k in blobs if k.startswith(prefix)):
            entry = blobs.get(key)
            if entry is not None:  # deleted while we were yielding
                yield BlobInfo(key, len(entry.data), entry.etag, entry.last_modified, entry.md5)

    async def close(self) -> None:
        """Nothing to release; the data stays for the adapter's next user."""


def _check_condition(
    container: str,
    key: str,
    current: _Entry | None,
    if_match: str | None,
    if_none_match: bool,
) -> None:
    if if_none_match and current is not None:
        raise ConcurrencyError("key already exists", container=container, key=key)
    if if_match is not None and (current is None or current.etag != if_match):
        raise ConcurrencyError(
            "key was changed or deleted since it was read", container=container, key=key
        )
