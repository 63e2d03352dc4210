"""The bounded cache: LRU eviction of clean entries, dirty entries kept."""

from __future__ import annotations

import pytest

from asyncblobdict.cache import Cache


def test_lru_evicts_oldest_clean_entry_by_count() -> None:
    cache = Cache(max_entries=2, max_bytes=None)
    cache.put("a", b"1", dirty=False)
    cache.put("b", b"2", dirty=False)
    assert cache.get("a") is not None  # a is now the most recent
    cache.put("c", b"3", dirty=False)
    assert cache.get("b") is None
    assert cache.get("a") is not None and cache.get("c") is not None


def test_evicts_by_bytes() -> None:
    cache = Cache(max_entries=None, max_bytes=10)
    cache.put("a", b"x" * 6, dirty=False)
    cache.put("b", b"y" * 6, dirty=False)
    assert cache.get("a") is None
    assert cache.total_bytes == 6


def test_dirty_entries_are_never_evicted() -> None:
    cache = Cache(max_entries=1, max_bytes=None)
    cache.put("a", b"1", dirty=True)
    cache.put("b", b"2", dirty=True)
    cache.put("c", b"3", dirty=False)
    assert [k for k, _ in cache.dirty_items()] == ["a", "b"]
    assert cache.get("c") is None  # the clean one goes first
    entry = cache.get("a")
    assert entry is not None
    cache.mark_clean("a", entry.version)
    assert cache.get("a") is None  # clean now, and over the bound


def test_mark_clean_ignores_newer_versions_and_drops_written_tombstones() -> None:
    cache = Cache(max_entries=None, max_bytes=None)
    old = cache.put("k", b"old", dirty=True)
    cache.put("k", b"new", dirty=True)
    cache.mark_clean("k", old.version)
    assert [k for k, _ in cache.dirty_items()] == ["k"]
    tomb = cache.put("t", None, dirty=True)
    cache.mark_clean("t", tomb.version)
    assert cache.get("t") is None


def test_negative_bounds_rejected() -> None:
    with pytest.raises(ValueError):
        Cache(max_entries=-1, max_bytes=None)
    with pytest.raises(ValueError):
        Cache(max_entries=None, max_bytes=-1)
