"""Store logic that does not depend on the backend, on the memory adapter."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

from asyncblobdict import (
    AsyncBlobDictError,
    AsyncBlobStore,
    BlobInfo,
    BlobNotFoundError,
    CacheMode,
    ConcurrencyError,
    ConcurrencyMode,
    InvalidKeyError,
    MemoryAdapter,
    StorageError,
)
from tests.test_codec import same
from tests.test_codec import values as codec_values


class Failing(MemoryAdapter):
    """A memory adapter whose writes fail while ``broken`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.broken = False
        self.closed = 0

    async def put(self, container: str, key: str, data: bytes, **kw: Any) -> str:
        if self.broken:
            raise StorageError("disk on fire", container=container, key=key)
        return await super().put(container, key, data, **kw)

    async def delete(self, container: str, key: str, **kw: Any) -> None:
        if self.broken:
            raise StorageError("disk on fire", container=container, key=key)
        await super().delete(container, key, **kw)

    async def close(self) -> None:
        self.closed += 1


def test_constructor_checks() -> None:
    with pytest.raises(TypeError):
        AsyncBlobStore(object(), "c")  # type: ignore[arg-type]
    with pytest.raises(InvalidKeyError):
        AsyncBlobStore(MemoryAdapter(), "../c")
    with pytest.raises(ValueError):
        AsyncBlobStore(MemoryAdapter(), "c", sync_concurrency=0)
    store = AsyncBlobStore(MemoryAdapter(), "c", "write_back", "etag")
    assert "WRITE_BACK" in repr(store) and "ETAG" in repr(store)


async def test_close_failure_keeps_dirty_entries_and_store_open() -> None:
    adapter = Failing()
    store = AsyncBlobStore(adapter, "c", cache_mode=CacheMode.WRITE_BACK)
    await store.set_json("a", 1)
    await store.delete("b")
    adapter.broken = True
    with pytest.raises(StorageError):
        await store.close()
    assert store.dirty_keys() == ["a", "b"]
    assert adapter.closed == 0
    assert await store.get_json("a") == 1  # still open
    adapter.broken = False
    result = await store.sync()
    assert result.written == ["a"] and result.deleted == ["b"]
    await store.close()
    assert adapter.closed == 1


async def test_sync_failure_reports_after_trying_every_key() -> None:
    adapter = Failing()
    store = AsyncBlobStore(adapter, "c", cache_mode=CacheMode.WRITE_BACK)
    for key in "abc":
        await store.set_json(key, key)
    adapter.broken = True
    with pytest.raises(StorageError):
        await store.sync()
    assert store.dirty_keys() == ["a", "b", "c"]
    store.discard_changes("a")
    assert store.dirty_keys() == ["b", "c"]
    store.discard_changes()
    assert store.dirty_keys() == []
    await store.close()


async def test_write_during_sync_stays_dirty() -> None:
    entered, gate = asyncio.Event(), asyncio.Event()

    class SlowPut(MemoryAdapter):
        async def put(self, container: str, key: str, data: bytes, **kw: Any) -> str:
            entered.set()
            await gate.wait()
            return await super().put(container, key, data, **kw)

    adapter = SlowPut()
    store = AsyncBlobStore(adapter, "c", cache_mode=CacheMode.WRITE_BACK)
    await store.set_json("k", 1)
    syncing = asyncio.ensure_future(store.sync())
    await asyncio.wait_for(entered.wait(), 30)  # the sync is now waiting inside put
    # Made while the sync writes the key: it waits for that write, then stays pending.
    setting = asyncio.ensure_future(store.set_json("k", 2))
    done, _ = await asyncio.wait({setting}, timeout=0.05)  # time it would need to finish
    assert not done
    gate.set()
    assert (await syncing).written == ["k"]
    await setting
    assert store.dirty_keys() == ["k"]
    await store.close()
    assert await AsyncBlobStore(adapter, "c").get_json("k") == 2


async def test_skip_conflict_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    adapter = MemoryAdapter()
    mine = AsyncBlobStore(adapter, "c", "write_back", "etag")
    theirs = AsyncBlobStore(adapter, "c")
    await theirs.set_json("k", 1)
    await mine.get_json("k")
    await theirs.set_json("k", 2)
    await mine.set_json("k", 3)
    with caplog.at_level(logging.WARNING, logger="asyncblobdict"):
        result = await mine.sync()
    assert result.skipped == ["k"]
    assert any("'k'" in r.getMessage() for r in caplog.records)
    assert (await mine.sync("overwrite")).written == ["k"]
    assert await theirs.get_json("k") == 3


async def test_bounded_cache_in_write_through() -> None:
    store = AsyncBlobStore(MemoryAdapter(), "c", "write_through", cache_max_entries=3)
    for i in range(10):
        await store.set_json(f"k{i}", i)
    assert len(store._table) == 3
    assert [await store.get_json(f"k{i}") for i in range(10)] == list(range(10))


async def test_write_back_exceeds_bounds_rather_than_drop_changes() -> None:
    store = AsyncBlobStore(MemoryAdapter(), "c", "write_back", cache_max_entries=2)
    for i in range(5):
        await store.set_json(f"k{i}", i)
    assert len(store.dirty_keys()) == 5
    await store.close()


async def test_update_json_on_pending_write_back_entry() -> None:
    adapter = MemoryAdapter()
    store = AsyncBlobStore(adapter, "c", "write_back", "etag")
    await store.set_json("n", 5)
    assert await store.update_json("n", lambda v: v + 1) == 6
    await store.delete("n")
    with pytest.raises(BlobNotFoundError):
        await store.update_json("n", lambda v: v + 1)
    assert await store.update_json("n", lambda v: v + 1, default=0) == 1
    await store.close()
    assert await AsyncBlobStore(adapter, "c").get_json("n") == 1


async def test_update_json_gives_up_after_max_attempts() -> None:
    class AlwaysConflict(MemoryAdapter):
        async def put(self, container: str, key: str, data: bytes, **kw: Any) -> str:
            raise ConcurrencyError("lost", container=container, key=key)

    store = AsyncBlobStore(AlwaysConflict(), "c")
    with pytest.raises(ConcurrencyError, match="3 conflicting attempts"):
        await store.update_json("k", lambda v: v, default=1, max_attempts=3)
    with pytest.raises(ValueError):
        await store.update_json("k", lambda v: v, max_attempts=0)


async def test_update_json_default_is_not_mutated() -> None:
    store = AsyncBlobStore(MemoryAdapter(), "c")
    default: list[int] = []

    def add(v: list[int]) -> list[int]:
        v.append(1)
        return v

    assert await store.update_json("k", add, default=default) == [1]
    assert default == []


async def test_exists_never_sets_the_remembered_etag() -> None:
    adapter = MemoryAdapter()
    mine = AsyncBlobStore(adapter, "c", concurrency_mode=ConcurrencyMode.ETAG)
    assert not await mine.exists("k")
    await AsyncBlobStore(adapter, "c").set_json("k", "theirs")
    # exists() is not a read of the value: the key is still one this store never saw.
    await mine.set_json("k", "mine")
    with pytest.raises(BlobNotFoundError):
        await mine.get_json("gone")
    await AsyncBlobStore(adapter, "c").set_json("gone", "theirs")
    with pytest.raises(ConcurrencyError):  # a read that saw it missing does count
        await mine.set_json("gone", "mine")


async def test_iter_keys_overlays_pending_changes() -> None:
    adapter = MemoryAdapter()
    await AsyncBlobStore(adapter, "c").set_json("a", 1)
    await AsyncBlobStore(adapter, "c").set_json("b", 1)
    store = AsyncBlobStore(adapter, "c", "write_back")
    await store.delete("a")
    await store.set_json("c", 1)
    await store.set_json("b", 2)
    assert [k async for k in store.iter_keys()] == ["b", "c"]
    assert await store.list_keys("c") == ["c"]
    store.discard_changes()


async def test_closed_store_refuses_work() -> None:
    store = AsyncBlobStore(MemoryAdapter(), "c")
    await store.close()
    with pytest.raises(AsyncBlobDictError, match="closed"):
        await store.set_json("k", 1)
    with pytest.raises(AsyncBlobDictError, match="closed"):
        await store.list_keys()


async def test_read_racing_a_write_never_caches_old_bytes() -> None:
    gate = asyncio.Event()

    class SlowGet(MemoryAdapter):
        async def get(self, container: str, key: str) -> tuple[bytes, BlobInfo]:
            result = await super().get(container, key)
            read.set()
            await gate.wait()
            return result

    read = asyncio.Event()
    adapter = SlowGet()
    await AsyncBlobStore(adapter, "c").set_json("k", "old")
    store = AsyncBlobStore(adapter, "c", "write_through")
    reading = asyncio.ensure_future(store.get_json("k"))
    await asyncio.wait_for(read.wait(), 30)  # the old bytes are read, not yet cached
    writing = asyncio.ensure_future(store.set_json("k", "new"))
    done, _ = await asyncio.wait({writing}, timeout=0.05)  # time it would need to finish
    assert not done, "the write did not wait for the read in flight"
    gate.set()
    assert await reading == "old"
    await writing
    assert await store.get_json("k") == "new"


async def test_blob_info_is_plain_data() -> None:
    adapter = MemoryAdapter()
    await adapter.put("c", "k", b"abc")
    info = await adapter.head("c", "k")
    assert isinstance(info, BlobInfo) and info.size == 3 and info.content_md5 is not None
    assert [i.key async for i in adapter.list("c")] == ["k"]
    assert await adapter.head("c", "nope") is None


async def test_iter_keys_stopped_early_closes_the_adapter_listing() -> None:
    closed = False

    class Watched(MemoryAdapter):
        async def list_names(self, container: str, prefix: str = "", **kw: Any) -> Any:
            nonlocal closed
            try:
                async for name in super().list_names(container, prefix, **kw):
                    yield name
            finally:
                closed = True

    store = AsyncBlobStore(Watched(), "c")
    await store.set_many({"a": 1, "b": 2, "c": 3})
    names = store.iter_keys()
    async with contextlib.aclosing(names):
        async for _ in names:
            break
    assert closed


async def test_a_cache_hit_does_not_check_a_known_key_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from asyncblobdict.keys import validate_key as real

    checked: list[str] = []

    def counted(key: object, container: str | None = None) -> str:
        checked.append(str(key))
        return real(key, container)

    monkeypatch.setattr("asyncblobdict.store.validate_key", counted)
    async with AsyncBlobStore(MemoryAdapter(), "c", cache_mode=CacheMode.WRITE_THROUGH) as store:
        await store.set_json("a/b", 1)
        checked.clear()
        for _ in range(5):
            assert await store.get_json("a/b") == 1
        assert checked == []  # the table holds it: it was checked when it entered

        class Key(str):
            pass

        assert await store.get_json(Key("a/b")) == 1
        assert checked == ["a/b"]  # not exactly str: checked as any new key
        with pytest.raises(InvalidKeyError):
            await store.get_json("a/../b")
        with pytest.raises(InvalidKeyError):
            await store.get_json("a//b")


# -- cache hits load the value kept in marshal form ----------------------------------------


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=codec_values)
def test_cache_hits_give_fresh_exact_copies_of_any_value(value: Any) -> None:
    # Plain JSON comes back from the marshal copy, a tagged value (a bytearray, a set, a
    # datetime...) from its JSON: either way the types are exact and each hit is its own.
    async def main() -> None:
        async with AsyncBlobStore(MemoryAdapter(), "c", cache_mode="write_through") as store:
            await store.set_json("k", value)
            got = [await store.get_json("k") for _ in range(3)]
            assert all(same(g, value) for g in got), (got, value)
            if isinstance(value, (dict, list, set, bytearray)):
                assert got[1] is not got[2]

    asyncio.run(main())


async def test_a_hit_loads_the_copy_that_goes_with_the_cached_bytes() -> None:
    store = AsyncBlobStore(MemoryAdapter(), "c", cache_mode="write_through", cache_max_bytes=None)
    await store.set_json("k", {"a": [1, 2.5, "x", None, True]})
    state = store._table.peek("k")
    assert state is not None and state.data is not None and state.copy is None
    first = await store.get_json("k")  # decodes, and keeps the copy
    assert state.copy and store._table.total_bytes == len(state.data) + len(state.copy)
    first["a"].append("mutated")
    assert await store.get_json("k") == {"a": [1, 2.5, "x", None, True]}
    await store.set_json("k", {"b": 2})  # new bytes: the copy goes with the old ones
    assert state.copy is None and await store.get_json("k") == {"b": 2}
    assert await store.get_json("k") == {"b": 2}
    await store.set_json("t", bytearray(b"raw"))  # tagged: marshal would give bytes
    assert await store.get_json("t") == bytearray(b"raw")
    tagged = store._table.peek("t")
    assert tagged is not None and tagged.copy == b""
    assert type(await store.get_json("t")) is bytearray
    await store.close()


async def test_the_copy_counts_toward_the_cache_bound() -> None:
    store = AsyncBlobStore(MemoryAdapter(), "c", cache_mode="write_through", cache_max_bytes=60)
    await store.set_json("a", "x" * 20)
    await store.set_json("b", "y" * 20)
    assert await store.get_json("a") == "x" * 20  # 22 bytes + its copy: b is evicted
    assert store._table.total_bytes <= 60
    b = store._table.peek("b")
    assert b is None or b.data is None
    assert await store.get_json("b") == "y" * 20
    await store.close()
