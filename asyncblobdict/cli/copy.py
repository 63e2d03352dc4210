"""cp: copy every key (or a prefix) from one store to another, byte for byte, streaming.

Works through the adapters, never the JSON codec, so values arrive byte-exact. With
streaming adapters (:class:`~asyncblobdict.adapters.base.StreamingAdapter`: memory, local,
Azure) a value goes from the source's ``open_read`` straight into the destination's
``put_stream``, one chunk at a time: the copy itself holds one chunk per key in flight,
never a whole value (what the adapters hold is theirs: the local adapter reads 1 MiB
chunks; Azure stages blocks of its ``block_size``). An adapter without streaming falls
back to ``get`` and ``put``, which hold the whole value.

A key is skipped when the destination already holds the same bytes: same size and the same
MD5 (the source's listed Content-MD5 or the MD5 of its bytes, hashed as a stream, against
the destination's ``content_md5`` from list or head, or the MD5 of its bytes). Timestamps
are never compared.

A key that cannot be copied is recorded in :attr:`CopyStats.failed` and the copy goes on
with the others, unless ``fail_fast``: then the first failure stops it (the keys in flight
are cancelled, which stores nothing of them). A failure to authenticate always stops it.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from .._tasks import gather_bounded
from ..adapters.base import Adapter, BlobInfo, StreamingAdapter
from ..errors import AsyncBlobDictError, AuthenticationError, BlobNotFoundError
from ..keys import validate_key, validate_prefix
from .progress import Progress

__all__ = ["CopyStats", "copy_keys"]

_FALLBACK_CHUNK = 1 << 20


@dataclass
class CopyStats:
    """What one copy did (or, in a dry run, would do)."""

    copied: int = 0
    copied_bytes: int = 0
    skipped: int = 0
    skipped_bytes: int = 0
    vanished: list[str] = field(default_factory=list)
    """Keys deleted from the source while the copy ran."""
    failed: list[tuple[str, str]] = field(default_factory=list)
    """(key, reason) of keys that could not be copied (an invalid name, a storage error)."""
    listed: int | None = None
    """How many keys the source listed (None until the listing is done)."""
    stopped: bool = False
    """``fail_fast`` stopped the copy at a failure: some keys were not tried."""


class _Stop(Exception):
    """Raised in a job to stop the others (``fail_fast``)."""


def _reason(exc: BaseException) -> str:
    if isinstance(exc, AsyncBlobDictError):
        return exc.message
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


async def copy_keys(
    src: Adapter,
    src_container: str,
    dst: Adapter,
    dst_container: str,
    *,
    prefix: str = "",
    jobs: int = 8,
    dry_run: bool = False,
    fail_fast: bool = False,
    progress: Callable[[int, int], Progress] | None = None,
    report: Callable[[str, str, int], None] | None = None,
    stats: CopyStats | None = None,
) -> CopyStats:
    """Copy the keys of ``src_container`` that start with ``prefix`` into ``dst_container``.

    At most ``jobs`` keys are in flight at once. ``progress(total_keys, total_bytes)`` makes
    the progress bar; ``report(action, key, size)`` is told of each key ("copy" or "skip").
    With ``dry_run`` nothing is written (the source is still read to compare hashes). Each
    value keeps its content type and metadata. ``stats``, if given, is filled in as the
    copy goes (so the caller still has it when an exception ends the copy).
    """
    if jobs < 1:
        raise ValueError("jobs must be at least 1")
    stats = CopyStats() if stats is None else stats
    validate_prefix(prefix, src_container)
    sources = [info async for info in src.list(src_container, prefix)]
    existing = {info.key: info async for info in dst.list(dst_container, prefix)}
    stats.listed = len(sources)
    bar = progress(len(sources), sum(i.size for i in sources)) if progress else None
    copier = _Copier(src, src_container, dst, dst_container, existing, dry_run, report, stats)

    async def copy_one(info: BlobInfo) -> None:
        try:
            await copier.copy(info)
        except AuthenticationError:
            raise
        except Exception as exc:
            stats.failed.append((info.key, _reason(exc)))
            if fail_fast:
                raise _Stop from exc
        if bar is not None:
            bar.advance(info.size)

    try:
        await gather_bounded([functools.partial(copy_one, info) for info in sources], jobs)
    except _Stop:
        stats.stopped = True
    finally:
        if bar is not None:
            bar.finish()
    return stats


async def _slices(data: bytes) -> AsyncIterator[bytes]:
    view = memoryview(data)
    for pos in range(0, len(data), _FALLBACK_CHUNK):
        yield bytes(view[pos : pos + _FALLBACK_CHUNK])


async def open_value(
    adapter: Adapter, container: str, key: str
) -> tuple[BlobInfo, AsyncIterator[bytes]]:
    """The stored value as a stream: ``open_read``, or (without streaming) ``get`` whole."""
    if isinstance(adapter, StreamingAdapter):
        return await adapter.open_read(container, key)
    data, info = await adapter.get(container, key)
    return info, _slices(data)


async def _close(chunks: AsyncIterator[bytes]) -> None:
    close = getattr(chunks, "aclose", None)
    if close is not None:
        await close()


async def _hash_of(adapter: Adapter, container: str, key: str) -> tuple[int, bytes]:
    """(size, MD5) of a stored value, read as a stream."""
    _, chunks = await open_value(adapter, container, key)
    md5, size = hashlib.md5(usedforsecurity=False), 0
    try:
        async for chunk in chunks:
            md5.update(chunk)
            size += len(chunk)
    finally:
        await _close(chunks)
    return size, md5.digest()


class _Copier:
    """Copies one key at a time (many at once), keeping the statistics."""

    def __init__(
        self,
        src: Adapter,
        src_container: str,
        dst: Adapter,
        dst_container: str,
        existing: dict[str, BlobInfo],
        dry_run: bool,
        report: Callable[[str, str, int], None] | None,
        stats: CopyStats,
    ) -> None:
        self.src, self.src_container = src, src_container
        self.dst, self.dst_container = dst, dst_container
        self.existing = existing
        self.dry_run = dry_run
        self.report = report
        self.stats = stats

    async def copy(self, info: BlobInfo) -> None:
        key = info.key
        validate_key(key, self.dst_container)
        try:
            if await self._unchanged(info):
                self._counted("skip", key, info.size)
                return
            if self.dry_run:
                size = info.size
            else:
                size = await self._transfer(key)
        except BlobNotFoundError as exc:
            if exc.key == key and exc.container in (None, self.src_container):
                self.stats.vanished.append(key)
                return
            raise
        self._counted("copy", key, size)

    async def _transfer(self, key: str) -> int:
        """Stream the source's value of ``key`` into the destination; return its size."""
        stored, chunks = await open_value(self.src, self.src_container, key)
        moved = 0

        async def counted() -> AsyncIterator[bytes]:
            nonlocal moved
            async for chunk in chunks:  # one chunk held here at a time
                moved += len(chunk)
                yield chunk

        try:
            if isinstance(self.dst, StreamingAdapter):
                await self.dst.put_stream(
                    self.dst_container,
                    key,
                    counted(),
                    content_type=stored.content_type,
                    metadata=stored.metadata,
                    size=stored.size,
                )
            else:  # no streaming: the whole value, as put needs it
                data = b"".join([chunk async for chunk in counted()])
                await self.dst.put(
                    self.dst_container,
                    key,
                    data,
                    content_type=stored.content_type,
                    metadata=stored.metadata,
                )
        finally:
            await _close(chunks)
        return moved

    def _counted(self, action: str, key: str, size: int) -> None:
        if action == "copy":
            self.stats.copied += 1
            self.stats.copied_bytes += size
        else:
            self.stats.skipped += 1
            self.stats.skipped_bytes += size
        if self.report:
            self.report(action, key, size)

    async def _unchanged(self, info: BlobInfo) -> bool:
        """Whether the destination already holds the source's bytes (same size and MD5)."""
        there = self.existing.get(info.key)
        if there is None or there.size != info.size:
            return False
        theirs = there.content_md5
        if theirs is None:
            fuller = await self.dst.head(self.dst_container, info.key)
            if fuller is None or fuller.size != info.size:
                return False
            theirs = fuller.content_md5
        ours = info.content_md5
        if ours is None:  # hash the source's bytes, as a stream
            size, ours = await _hash_of(self.src, self.src_container, info.key)
            if size != info.size:
                return False
        if theirs is None:  # the destination cannot tell: hash its bytes
            try:
                size, theirs = await _hash_of(self.dst, self.dst_container, info.key)
            except BlobNotFoundError:
                return False
            if size != info.size:
                return False
        return ours == theirs
