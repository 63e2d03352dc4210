"""MemoryAdapter: the reference adapter, holding every value in a dict."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterable, AsyncIterator, Mapping
from datetime import datetime, timezone

from ..errors import BlobNotFoundError, StorageError
from ..keys import validate_folder_container
from .base import (
    OVERWRITE,
    BlobInfo,
    Precondition,
    check_condition,
    check_delimiter,
    check_range,
    fold_levels,
    range_end,
    validate_content_type,
    validate_metadata,
)

__all__ = ["MemoryAdapter"]


class MemoryAdapter:
    """Keeps values in process memory; nothing survives the process.

    Each write gets a new ETag (a generation number), as on Azure, even when the bytes are
    the same. ``list`` and ``list_names`` yield keys in sorted order. Containers follow the
    local adapter's rule (one folder name). Share one instance between stores to share the
    data. Every operation completes without awaiting, so each is atomic on the event loop.

    Streams: ``open_read`` yields slices of the (immutable) stored bytes of the version it
    opened, ``chunk_size`` at a time; ``put_stream`` collects the chunks, then stores them as
    ``put`` does (it holds the value: it is memory).
    """

    chunk_size = 1024 * 1024

    def __init__(self) -> None:
        self._containers: dict[str, dict[str, tuple[bytes, BlobInfo]]] = {}
        self._generation = 0

    def __repr__(self) -> str:
        return f"MemoryAdapter(containers={sorted(self._containers)})"

    @staticmethod
    def validate_container(container: str) -> str:
        """Check a container name (one folder name) before any I/O."""
        return validate_folder_container(container)

    def _blobs(self, container: str) -> dict[str, tuple[bytes, BlobInfo]]:
        validate_folder_container(container)
        return self._containers.get(container, {})

    async def get(self, container: str, key: str) -> tuple[bytes, BlobInfo]:
        entry = self._blobs(container).get(key)
        if entry is None:
            raise BlobNotFoundError("key not found", container=container, key=key)
        return entry

    async def head(self, container: str, key: str) -> BlobInfo | None:
        entry = self._blobs(container).get(key)
        return None if entry is None else entry[1]

    async def put(
        self,
        container: str,
        key: str,
        data: bytes,
        *,
        condition: Precondition = OVERWRITE,
        content_type: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> str:
        names = validate_metadata(metadata)
        content_type = validate_content_type(content_type)
        blobs = self._containers.setdefault(validate_folder_container(container), {})
        current = blobs.get(key)
        check_condition(container, key, None if current is None else current[1].etag, condition)
        self._generation += 1
        etag = f'"0x{self._generation:X}"'
        data = bytes(data)
        info = BlobInfo(
            key,
            len(data),
            etag,
            datetime.now(timezone.utc),
            hashlib.md5(data, usedforsecurity=False).digest(),
            content_type,
            names,
        )
        blobs[key] = (data, info)
        return etag

    async def open_read(
        self, container: str, key: str, *, offset: int = 0, length: int | None = None
    ) -> tuple[BlobInfo, AsyncIterator[bytes]]:
        check_range(offset, length)
        data, info = await self.get(container, key)
        return info, self._slices(data, offset, range_end(len(data), offset, length))

    async def _slices(self, data: bytes, start: int, end: int) -> AsyncIterator[bytes]:
        view = memoryview(data)
        for pos in range(start, end, self.chunk_size):
            yield bytes(view[pos : min(end, pos + self.chunk_size)])

    async def put_stream(
        self,
        container: str,
        key: str,
        chunks: AsyncIterable[bytes | bytearray | memoryview],
        *,
        condition: Precondition = OVERWRITE,
        content_type: str | None = None,
        metadata: Mapping[str, str] | None = None,
        size: int | None = None,
    ) -> str:
        validate_metadata(metadata)
        validate_content_type(content_type)
        validate_folder_container(container)
        parts = [bytes(chunk) async for chunk in chunks]
        data = b"".join(parts)
        if size is not None and len(data) != size:
            raise StorageError(
                f"the stream gave {len(data)} bytes, not the {size} announced",
                container=container,
                key=key,
            )
        return await self.put(
            container,
            key,
            data,
            condition=condition,
            content_type=content_type,
            metadata=metadata,
        )

    async def delete(
        self, container: str, key: str, *, condition: Precondition = OVERWRITE
    ) -> None:
        blobs = self._blobs(container)
        current = blobs.get(key)
        check_condition(container, key, None if current is None else current[1].etag, condition)
        blobs.pop(key, None)

    async def list(self, container: str, prefix: str = "") -> AsyncIterator[BlobInfo]:
        blobs = self._blobs(container)
        for key in sorted(k for k in blobs if k.startswith(prefix)):
            entry = blobs.get(key)
            if entry is not None:  # deleted while we were yielding
                yield entry[1]

    async def list_names(
        self, container: str, prefix: str = "", *, delimiter: str | None = None
    ) -> AsyncIterator[str]:
        check_delimiter(delimiter)
        names = self._names(container, prefix)
        if delimiter is None:
            async for name in names:
                yield name
        else:
            async for name in fold_levels(names, prefix):
                yield name

    async def list_metadata(
        self, container: str, prefix: str = "", *, delimiter: str | None = None
    ) -> AsyncIterator[tuple[str, Mapping[str, str]]]:
        """The names ``list_names`` yields, each with its metadata (a folder's is empty)."""
        blobs = self._blobs(container)
        names = self.list_names(container, prefix, delimiter=delimiter)
        try:
            async for name in names:
                entry = blobs.get(name)
                if name.endswith("/"):
                    yield name, {}
                elif entry is not None:  # deleted while we were yielding
                    yield name, entry[1].metadata
        finally:
            # A caller that stops early closes this listing; close the one below it now too.
            close = getattr(names, "aclose", None)
            if close is not None:
                await close()

    async def _names(self, container: str, prefix: str) -> AsyncIterator[str]:
        for key in sorted(k for k in self._blobs(container) if k.startswith(prefix)):
            yield key

    async def container_exists(self, container: str) -> bool:
        """Whether the container holds a key (memory keeps no empty containers)."""
        return bool(self._blobs(container))

    async def close(self) -> None:
        """Nothing to release; the data stays for the adapter's next user."""
