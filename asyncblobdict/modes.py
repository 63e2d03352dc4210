"""The store's configuration enums and the result of a write-back sync."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

__all__ = ["CacheMode", "ConcurrencyMode", "SyncResult"]


class CacheMode(Enum):
    """How the store caches values (see docs/cache-and-concurrency.md)."""

    NONE = "none"
    """Every read and write goes to storage."""
    WRITE_THROUGH = "write_through"
    """Writes go to storage, then into the cache; reads are served from the cache."""
    WRITE_BACK = "write_back"
    """Writes and deletes stay in the cache until ``sync()`` or ``close()``."""


class ConcurrencyMode(Enum):
    """Whether writes are guarded by ETags."""

    NONE = "none"
    """Last writer wins."""
    ETAG = "etag"
    """A write succeeds only if the key is still the version this store last saw."""


@dataclass
class SyncResult:
    """What one ``sync()`` did: keys written, deleted, and skipped because of a conflict.

    Skipped keys stay dirty in the cache.
    """

    written: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
