"""cp: copy every key (or a prefix) from one store to another, byte for byte.

Works through the adapters (get/put), never the JSON codec, so values arrive byte-exact.
A key is skipped when the destination already holds the same bytes: same size and the same
MD5 (the source's listed Content-MD5 or the MD5 of its bytes, against the destination's
``content_md5`` from list or head). Timestamps are never compared.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field

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
    With ``dry_run`` nothing is written (the source is still read to compare hashes).
    """
    if jobs < 1:
        raise ValueError("jobs must be at least 1")
    validate_prefix(prefix, src_container)
    sources = [info async for info in src.list(src_container, prefix)]
    existing = {info.key: info async for info in dst.list(dst_container, prefix)}
    bar = progress(len(sources), sum(i.size for i in sources)) if progress else None
    stats = CopyStats()
    queue: asyncio.Queue[BlobInfo] = asyncio.Queue()
    for info in sources:
        queue.put_nowait(info)

    async def dst_md5(info: BlobInfo | None) -> bytes | None:
        if info is None or info.content_md5 is not None:
            return None if info is None else info.content_md5
        fuller = await dst.head(dst_container, info.key)
        return None if fuller is None else fuller.content_md5

    async def unchanged(info: BlobInfo, data: bytes | None) -> bool:
        """Whether the destination already holds the source's bytes (``data`` if read)."""
        there = existing.get(info.key)
        if there is None or there.size != (info.size if data is None else len(data)):
            return False
        theirs = await dst_md5(there)
        ours = info.content_md5 if data is None else _md5(data)
        if ours is None:
            return False  # decide after reading the source
        if theirs is None:  # the destination cannot tell: hash its bytes
            try:
                theirs = _md5((await dst.get(dst_container, info.key))[0])
            except BlobNotFoundError:
                return False
        return ours == theirs

    async def handle(info: BlobInfo) -> None:
        key = info.key
        try:
            validate_key(key, dst_container)
        except InvalidKeyError as exc:
            stats.failed.append((key, exc.message))
            return
        compared = info.content_md5 is not None
        if compared and await unchanged(info, None):
            skip(key, info.size)
            return
        try:
            data, _ = await src.get(src_container, key)
        except BlobNotFoundError:
            stats.vanished.append(key)
            return
        if not compared and await unchanged(info, data):
            skip(key, len(data))
            return
        if not dry_run:
            try:
                await dst.put(dst_container, key, data)
            except InvalidKeyError as exc:
                stats.failed.append((key, exc.message))
                return
        stats.copied += 1
        stats.copied_bytes += len(data)
        if report:
            report("copy", key, len(data))

    def skip(key: str, size: int) -> None:
        stats.skipped += 1
        stats.skipped_bytes += size
        if report:
            report("skip", key, size)

    async def worker() -> None:
        while True:
            try:
                info = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            await handle(info)
            if bar is not None:
                bar.advance(info.size)

    tasks = [asyncio.ensure_future(worker()) for _ in range(min(jobs, max(1, len(sources))))]
    try:
        await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
    finally:
        if bar is not None:
            bar.finish()
    return stats
