"""Bounded LRU cache of stored bytes, with dirty entries and tombstones for write-back."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

__all__ = ["Cache", "CacheEntry"]


@dataclass(slots=True)
class CacheEntry:
    """One cached key: its bytes (None for a tombstone, i.e. a pending delete).

    ``dirty`` entries are not in storage yet. ``version`` grows on every change, so a sync
    that wrote an older version does not mark a newer one clean.
    """

    data: bytes | None
    dirty: bool
    version: int = 0

    @property
    def size(self) -> int:
        return 0 if self.data is None else len(self.data)


class Cache:
    """LRU cache bounded by entry count and total bytes; dirty entries are never evicted.

    Clean entries are evicted oldest first once a bound is passed. Dirty entries count towards
    the bounds but stay until written, so a write-back store can exceed them until it syncs.
    """

    def __init__(self, max_entries: int | None, max_bytes: int | None) -> None:
        if max_entries is not None and max_entries < 0:
            raise ValueError("cache_max_entries must be >= 0 or None")
        if max_bytes is not None and max_bytes < 0:
            raise ValueError("cache_max_bytes must be >= 0 or None")
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._entries: OrderedDict[str, CacheEntry] = OrderedDict()
        self._bytes = 0
        self._versions = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def total_bytes(self) -> int:
        """Bytes held by all entries."""
        return self._bytes

    def get(self, key: str) -> CacheEntry | None:
        """Return the entry and mark it recently used."""
        entry = self._entries.get(key)
        if entry is not None:
            self._entries.move_to_end(key)
        return entry

    def put(self, key: str, data: bytes | None, *, dirty: bool) -> CacheEntry:
        """Set ``key`` to ``data`` (None: tombstone) and evict clean entries past the bounds."""
        self._versions += 1
        old = self._entries.pop(key, None)
        if old is not None:
            self._bytes -= old.size
        entry = CacheEntry(data, dirty, self._versions)
        self._entries[key] = entry
        self._bytes += entry.size
        self._evict()
        return entry

    def discard(self, key: str) -> None:
        """Forget ``key``, dirty or not."""
        old = self._entries.pop(key, None)
        if old is not None:
            self._bytes -= old.size

    def mark_clean(self, key: str, version: int) -> None:
        """Mark ``key`` written, if it still holds ``version``; written tombstones go away."""
        entry = self._entries.get(key)
        if entry is None or entry.version != version:
            return
        if entry.data is None:
            self.discard(key)
        else:
            entry.dirty = False
            self._evict()

    def dirty_items(self) -> list[tuple[str, CacheEntry]]:
        """Dirty entries and tombstones, in key order."""
        return sorted((k, e) for k, e in self._entries.items() if e.dirty)

    def _over(self) -> bool:
        return (self.max_entries is not None and len(self._entries) > self.max_entries) or (
            self.max_bytes is not None and self._bytes > self.max_bytes
        )

    def _evict(self) -> None:
        while self._over():
            victim = next((k for k, e in self._entries.items() if not e.dirty), None)
            if victim is None:
                return  # only dirty entries left: they wait for sync
            self.discard(victim)
