"""cp: copy every key (or a prefix) from one store to another, byte for byte.

Works through the adapters (get/put), never the JSON codec, so values arrive byte-exact.
A key is skipped when the destination already holds the same bytes: same size and the same
MD5 (the source's listed Content-MD5 or the MD5 of its bytes, against the destination's
``content_md5`` from list or head). Timestamps are never compared.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field

from .._tasks import gather_bounded
from ..adapters.base import Adapter, BlobInfo
from ..errors import BlobNotFoundError, InvalidKeyError
from ..keys import validate_key, validate_prefix
from .progress import Progress

__all__ = ["CopyStats", "copy_keys"]


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
    """(key, reason) of keys the destination cannot hold (e.g. an invalid name)."""


def _md5(data: bytes) -> bytes:
    return hashlib.md5(data, usedforsecurity=False).digest()


async def copy_keys(
    src: Adapter,
    src_container: str,
    dst: Adapter,
    dst_container: str,
    *,
    prefix: str = "",
    jobs: int = 8,
    dry_run: bool = False,
    progress: Callable[[int, int], Progress] | None = None,
    report: Callable[[str, str, int], None] | None = None,
) -> CopyStats:
    """Copy the keys of ``src_container`` that start with ``prefix`` into ``dst_container``.

    At most ``jobs`` keys are in flight at once. ``progress(total_keys, total_bytes)`` makes
    the progress bar; ``report(action, key, size)`` is told of each key ("copy" or "skip").
    With ``dry_run`` nothing is written (the source is still read to compare hashes). Each
    value keeps its content type and metadata.
    """
    if jobs < 1:
        raise ValueError("jobs must be at least 1")
    validate_prefix(prefix, src_container)
    sources = [info async for info in src.list(src_container, prefix)]
    existing = {info.key: info async for info in dst.list(dst_container, prefix)}
    bar = progress(len(sources), sum(i.size for i in sources)) if progress else None
    copier = _Copier(src, src_container, dst, dst_container, existing, dry_run, report)

    async def copy_one(info: BlobInfo) -> None:
        await copier.copy(info)
        if bar is not None:
            bar.advance(info.size)

    try:
        await gather_bounded([functools.partial(copy_one, info) for info in sources], jobs)
    finally:
        if bar is not None:
            bar.finish()
    return copier.stats


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
    ) -> None:
        self.src, self.src_container = src, src_container
        self.dst, self.dst_container = dst, dst_container
        self.existing = existing
        self.dry_run = dry_run
        self.report = report
        self.stats = CopyStats()

    async def copy(self, info: BlobInfo) -> None:
        key = info.key
        try:
            validate_key(key, self.dst_container)
        except InvalidKeyError as exc:
            self.stats.failed.append((key, exc.message))
            return
        compared = info.content_md5 is not None
        if compared and await self._unchanged(info, None):
            self._counted("skip", key, info.size)
            return
        try:
            data, stored = await self.src.get(self.src_container, key)
        except BlobNotFoundError:
            self.stats.vanished.append(key)
            return
        if not compared and await self._unchanged(info, data):
            self._counted("skip", key, len(data))
            return
        if not self.dry_run:
            try:
                await self.dst.put(
                    self.dst_container,
                    key,
                    data,
                    content_type=stored.content_type,
                    metadata=stored.metadata,
                )
            except InvalidKeyError as exc:
                self.stats.failed.append((key, exc.message))
                return
        self._counted("copy", key, len(data))

    def _counted(self, action: str, key: str, size: int) -> None:
        if action == "copy":
            self.stats.copied += 1
            self.stats.copied_bytes += size
        else:
            self.stats.skipped += 1
            self.stats.skipped_bytes += size
        if self.report:
            self.report(action, key, size)

    async def _unchanged(self, info: BlobInfo, data: bytes | None) -> bool:
        """Whether the destination already holds the source's bytes (``data`` if read)."""
        there = self.existing.get(info.key)
        if there is None or there.size != (info.size if data is None else len(data)):
            return False
        ours = info.content_md5 if data is None else _md5(data)
        if ours is None:
            return False  # decide after reading the source
        theirs = there.content_md5
        if theirs is None:
            fuller = await self.dst.head(self.dst_container, info.key)
            theirs = None if fuller is None else fuller.content_md5
        if theirs is None:  # the destination cannot tell: hash its bytes
            try:
                theirs = _md5((await self.dst.get(self.dst_container, info.key))[0])
            except BlobNotFoundError:
                return False
        return ours == theirs
