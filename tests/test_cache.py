"""The per-key table: LRU bounds on values and ETags, pending entries kept, FIFO key locks."""

from __future__ import annotations

import asyncio

import pytest

from asyncblobdict.cache import ABSENT, KeyTable


async def _cache(table: KeyTable, key: str, data: bytes, etag: str | None = None) -> None:
    state = await table.acquire(key)
    table.set_data(state, data)
    if etag is not None:
        table.set_etag(state, etag)
    table.release(key, state)


async def test_lru_evicts_oldest_clean_value_by_count() -> None:
    table = KeyTable(max_entries=2, max_bytes=None, max_etags=None)
    await _cache(table, "a", b"1")
    await _cache(table, "b", b"2")
    table.touch("a")  # a is now the most recent
    await _cache(table, "c", b"3")
    assert table.peek("b") is None
    assert table.peek("a") is not None and table.peek("c") is not None


async def test_evicts_by_bytes_but_keeps_the_etag() -> None:
    table = KeyTable(max_entries=None, max_bytes=10, max_etags=None)
    await _cache(table, "a", b"x" * 6, '"1"')
    await _cache(table, "b", b"y" * 6)
    state = table.peek("a")
    assert state is not None and state.data is None and state.etag == '"1"'
    assert table.total_bytes == 6


async def test_forgetting_an_etag_drops_its_cached_value_too() -> None:
    table = KeyTable(max_entries=None, max_bytes=None, max_etags=1)
    await _cache(table, "a", b"1", '"1"')
    await _cache(table, "b", b"2", '"2"')
    assert table.peek("a") is None
    assert table.total_bytes == 1


async def test_pending_entries_are_never_evicted() -> None:
    table = KeyTable(max_entries=1, max_bytes=None, max_etags=None)
    state = await table.acquire("a")
    table.make_pending("a", state, b"1")
    table.release("a", state)
    await _cache(table, "b", b"2")
    assert table.peek("a") is not None
    assert [key for key, _ in table.pending_items()] == ["a"]


async def test_pending_order_is_the_order_of_the_latest_change() -> None:
    table = KeyTable(None, None, None)
    for key in ("a", "b", "a", "c"):
        state = await table.acquire(key)
        table.make_pending(key, state, None)
        table.release(key, state)
    assert [key for key, _ in table.pending_items()] == ["b", "a", "c"]


async def test_mark_stored_ignores_an_older_version() -> None:
    table = KeyTable(None, None, None)
    state = await table.acquire("a")
    table.make_pending("a", state, b"1")
    old = state.version
    table.make_pending("a", state, b"2")
    table.mark_stored("a", state, old)
    assert state.pending
    table.mark_stored("a", state, state.version)
    assert not state.pending and state.data == b"2"
    table.release("a", state)


async def test_a_key_with_nothing_to_remember_is_forgotten() -> None:
    table = KeyTable(None, None, None)
    state = await table.acquire("a")
    table.set_etag(state, ABSENT)
    table.release("a", state)
    assert len(table) == 1
    state = await table.acquire("a")
    table.set_etag(state, None)
    table.release("a", state)
    assert len(table) == 0


async def test_key_lock_is_fifo_and_survives_cancelled_waiters() -> None:
    table = KeyTable(None, None, None)
    order: list[int] = []

    async def hold(n: int) -> None:
        state = await table.acquire("k")
        order.append(n)
        await asyncio.sleep(0)
        table.release("k", state)

    first = await table.acquire("k")
    tasks = [asyncio.ensure_future(hold(n)) for n in range(4)]
    await asyncio.sleep(0)
    tasks[1].cancel()
    table.release("k", first)
    await asyncio.gather(*tasks, return_exceptions=True)
    assert order == [0, 2, 3]
    assert len(table) == 0
    await table.wait_idle()


def test_negative_bounds_are_refused() -> None:
    with pytest.raises(ValueError):
        KeyTable(-1, None, None)
    with pytest.raises(ValueError):
        KeyTable(None, -1, None)
    with pytest.raises(ValueError):
        KeyTable(None, None, -1)
