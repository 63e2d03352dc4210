"""The behavioural suite: every adapter must pass all of it (memory, local, azure)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import pytest

from asyncblobdict import (
    AsyncBlobDictError,
    AsyncBlobStore,
    BlobNotFoundError,
    CacheMode,
    ConcurrencyError,
    ConcurrencyMode,
    InvalidKeyError,
    SerializationError,
)

Factory = Callable[..., AsyncBlobStore]
ALL_CACHE_MODES = list(CacheMode)


@pytest.mark.parametrize("cache_mode", ALL_CACHE_MODES)
async def test_json_and_binary_round_trip(store_factory: Factory, cache_mode: CacheMode) -> None:
    store = store_factory(cache_mode=cache_mode)
    value = {"learning_rate": 0.01, "layers": [64, 128], "created_at": datetime(2024, 1, 2, 3, 4)}
    await store.set_json("demo/config", value)
    await store.set_binary("demo/model.bin", b"\x00\x01binary\xff")
    assert await store.get_json("demo/config") == value
    assert await store.get_binary("demo/model.bin") == b"\x00\x01binary\xff"
    assert await store.list_keys() == ["demo/config", "demo/model.bin"]
    await store.sync()
    # A second store on the same storage sees what the first wrote.
    other = store_factory()
    assert await other.get_json("demo/config") == value
    assert await other.get_binary("demo/model.bin") == b"\x00\x01binary\xff"


async def test_json_is_plain_utf8_json(store_factory: Factory) -> None:
    store = store_factory()
    await store.set_json("k", {"name": "Åsa", "n": 1})
    raw = await store.get_binary("k")
    assert raw.decode("utf-8") == '{"name":"Åsa","n":1}'


async def test_missing_key_raises_not_found_which_is_a_key_error(store_factory: Factory) -> None:
    store = store_factory()
    with pytest.raises(BlobNotFoundError) as info:
        await store.get_json("nope")
    assert isinstance(info.value, KeyError)
    assert "nope" in str(info.value)
    with pytest.raises(BlobNotFoundError):
        await store.get_binary("nope/deeper")


@pytest.mark.parametrize("cache_mode", ALL_CACHE_MODES)
async def test_delete_and_missing_delete_is_noop(
    store_factory: Factory, cache_mode: CacheMode
) -> None:
    store = store_factory(cache_mode=cache_mode, concurrency_mode=ConcurrencyMode.ETAG)
    await store.set_json("a/b/c", 1)
    await store.delete("a/b/c")
    await store.delete("a/b/c")
    await store.delete("never/there")
    with pytest.raises(BlobNotFoundError):
        await store.get_json("a/b/c")
    assert not await store.exists("a/b/c")
    await store.sync()
    assert await store_factory().list_keys() == []


async def test_list_keys_sorted_prefix_and_iter(store_factory: Factory) -> None:
    store = store_factory()
    keys = ["b", "a/2", "a/10", "a/1", "ab", "z/ü", "a b/+%&", "c.json"]
    for key in keys:
        await store.set_json(key, key)
    assert await store.list_keys() == sorted(keys)
    assert await store.list_keys("a/") == ["a/1", "a/10", "a/2"]
    assert await store.list_keys("a") == sorted(k for k in keys if k.startswith("a"))
    assert await store.list_keys("nothing") == []
    assert sorted([k async for k in store.iter_keys()]) == sorted(keys)
    for key in keys:
        assert await store.get_json(key) == key


async def test_exists(store_factory: Factory) -> None:
    store = store_factory()
    assert not await store.exists("x")
    await store.set_binary("x", b"")
    assert await store.exists("x")
    assert await store.get_binary("x") == b""


async def test_get_binary_of_json_and_get_json_of_bytes(store_factory: Factory) -> None:
    store = store_factory()
    await store.set_json("j", [1, 2])
    assert await store.get_binary("j") == b"[1,2]"
    await store.set_binary("b", b"\xff\xfe not json")
    with pytest.raises(SerializationError):
        await store.get_json("b")
    assert await store.get_binary("b") == b"\xff\xfe not json"  # left as it was


@pytest.mark.parametrize(
    "key", ["", "/a", "a/", "a//b", ".", "..", "a/../b", "a/./b", "a\\b", "a\x00b", "\x7f", 5]
)
async def test_invalid_keys_rejected_before_io(store_factory: Factory, key: Any) -> None:
    store = store_factory()
    for call in (
        lambda: store.get_json(key),
        lambda: store.set_json(key, 1),
        lambda: store.set_binary(key, b""),
        lambda: store.delete(key),
        lambda: store.exists(key),
        lambda: store.update_json(key, lambda v: v, default=0),
    ):
        with pytest.raises(InvalidKeyError):
            await call()
    assert await store.list_keys() == []


async def test_unencodable_value_writes_nothing(store_factory: Factory) -> None:
    store = store_factory()
    await store.set_json("k", {"ok": 1})
    with pytest.raises(SerializationError) as info:
        await store.set_json("k", {"bad": [object()]})
    assert "object" in str(info.value) and "['bad'][0]" in str(info.value)
    assert await store.get_json("k") == {"ok": 1}


async def test_wrong_binary_type(store_factory: Factory) -> None:
    store = store_factory()
    with pytest.raises(SerializationError):
        await store.set_binary("k", "text")  # type: ignore[arg-type]
    assert not await store.exists("k")


async def test_bad_modes_raise_value_error(store_factory: Factory) -> None:
    with pytest.raises(ValueError):
        store_factory(cache_mode="sometimes")
    with pytest.raises(ValueError):
        store_factory(concurrency_mode="locks")
    store = store_factory(cache_mode="write_back", concurrency_mode="etag")
    assert store.cache_mode is CacheMode.WRITE_BACK
    with pytest.raises(ValueError):
        await store.sync(etag_behavior="ignore")


@pytest.mark.parametrize("cache_mode", ALL_CACHE_MODES)
async def test_etag_stale_write_raises_and_storage_unchanged(
    store_factory: Factory, cache_mode: CacheMode
) -> None:
    mine = store_factory(cache_mode=cache_mode, concurrency_mode=ConcurrencyMode.ETAG)
    theirs = store_factory(concurrency_mode=ConcurrencyMode.ETAG)
    await theirs.set_json("k", 1)
    assert await mine.get_json("k") == 1
    assert await theirs.get_json("k") == 1
    await theirs.set_json("k", 2)
    if cache_mode is CacheMode.WRITE_BACK:
        await mine.set_json("k", 100)
        result = await mine.sync("skip")
        assert result.skipped == ["k"] and mine.dirty_keys() == ["k"]
        mine.discard_changes()
    else:
        with pytest.raises(ConcurrencyError):
            await mine.set_json("k", 100)
    assert await theirs.get_json("k") == 2


@pytest.mark.parametrize("cache_mode", [CacheMode.NONE, CacheMode.WRITE_THROUGH])
async def test_etag_conflict_then_reread_allows_write(
    store_factory: Factory, cache_mode: CacheMode
) -> None:
    mine = store_factory(cache_mode=cache_mode, concurrency_mode=ConcurrencyMode.ETAG)
    theirs = store_factory(concurrency_mode=ConcurrencyMode.ETAG)
    await theirs.set_json("k", 1)
    assert await mine.get_json("k") == 1
    await theirs.set_json("k", 2)
    with pytest.raises(ConcurrencyError):
        await mine.set_json("k", 100)
    # The remembered ETag stays stale: no blind overwrite on a second try.
    with pytest.raises(ConcurrencyError):
        await mine.set_binary("k", b"x")
    assert await theirs.get_json("k") == 2
    assert await mine.get_json("k") == 2  # the stale cache entry was dropped
    await mine.set_json("k", 3)
    assert await theirs.get_json("k") == 3


async def test_etag_seen_absent_means_create_only(store_factory: Factory) -> None:
    mine = store_factory(concurrency_mode=ConcurrencyMode.ETAG)
    theirs = store_factory()
    with pytest.raises(BlobNotFoundError):
        await mine.get_json("k")
    await theirs.set_json("k", "theirs")
    with pytest.raises(ConcurrencyError):
        await mine.set_json("k", "mine")
    with pytest.raises(ConcurrencyError):
        await mine.delete("k")
    assert await theirs.get_json("k") == "theirs"


async def test_etag_delete_of_changed_key_raises(store_factory: Factory) -> None:
    mine = store_factory(concurrency_mode=ConcurrencyMode.ETAG)
    theirs = store_factory()
    await theirs.set_json("k", 1)
    await mine.get_json("k")
    await theirs.set_json("k", 2)
    with pytest.raises(ConcurrencyError):
        await mine.delete("k")
    assert await theirs.get_json("k") == 2
    # Deleted by someone else meanwhile: our delete is a no-op, not a conflict.
    await mine.get_json("k")
    await theirs.delete("k")
    await mine.delete("k")


async def test_etag_unseen_key_is_written_unconditionally(store_factory: Factory) -> None:
    theirs = store_factory()
    await theirs.set_json("k", 1)
    mine = store_factory(concurrency_mode=ConcurrencyMode.ETAG)
    await mine.set_json("k", 2)  # never read: no condition to check
    await mine.set_json("k", 3)  # now it knows its own write's ETag
    assert await theirs.get_json("k") == 3


async def test_write_through_serves_reads_from_cache(store_factory: Factory) -> None:
    mine = store_factory(cache_mode=CacheMode.WRITE_THROUGH)
    theirs = store_factory()
    await mine.set_json("k", 1)
    await theirs.set_json("k", 2)
    assert await mine.get_json("k") == 1  # cached
    assert await store_factory().get_json("k") == 2


async def test_cached_values_are_not_shared_objects(store_factory: Factory) -> None:
    store = store_factory(cache_mode=CacheMode.WRITE_THROUGH)
    value = {"list": [1]}
    await store.set_json("k", value)
    value["list"].append(2)
    got = await store.get_json("k")
    got["list"].append(3)
    assert await store.get_json("k") == {"list": [1]}


async def test_write_back_defers_until_sync(store_factory: Factory) -> None:
    mine = store_factory(cache_mode=CacheMode.WRITE_BACK, concurrency_mode=ConcurrencyMode.ETAG)
    theirs = store_factory()
    await theirs.set_json("gone", 0)
    await mine.set_json("a", 1)
    await mine.set_binary("b", b"2")
    await mine.delete("gone")
    assert await mine.get_json("a") == 1
    assert await mine.list_keys() == ["a", "b"]
    assert not await mine.exists("gone")
    assert await theirs.list_keys() == ["gone"]
    assert mine.dirty_keys() == ["a", "b", "gone"]
    result = await mine.sync()
    assert (result.written, result.deleted, result.skipped) == (["a", "b"], ["gone"], [])
    assert mine.dirty_keys() == []
    assert await theirs.list_keys() == ["a", "b"]
    assert (await mine.sync()).written == []


async def test_write_back_close_flushes(store_factory: Factory) -> None:
    store = store_factory(cache_mode=CacheMode.WRITE_BACK)
    async with store:
        await store.set_json("k", {"v": 1})
    assert await store_factory().get_json("k") == {"v": 1}
    with pytest.raises(AsyncBlobDictError):
        await store.get_json("k")
    await store.close()  # twice is fine


async def test_sync_raise_checks_all_before_writing_any(store_factory: Factory) -> None:
    mine = store_factory(cache_mode=CacheMode.WRITE_BACK, concurrency_mode=ConcurrencyMode.ETAG)
    theirs = store_factory()
    await theirs.set_json("a", "theirs")
    await theirs.set_json("m", "theirs")
    await mine.get_json("m")
    await theirs.set_json("m", "theirs again")
    await mine.set_json("a0", "mine")
    await mine.set_json("m", "mine")
    await mine.set_json("z", "mine")
    with pytest.raises(ConcurrencyError) as info:
        await mine.sync("raise")
    assert "'m'" in str(info.value)
    assert await theirs.list_keys() == ["a", "m"]  # nothing written
    assert mine.dirty_keys() == ["a0", "m", "z"]
    # close() syncs with "raise": it fails, keeps the changes and leaves the store open.
    with pytest.raises(ConcurrencyError):
        await mine.close()
    result = await mine.sync("overwrite")
    assert result.written == ["a0", "m", "z"]
    assert await theirs.get_json("m") == "mine"
    await mine.close()


async def test_update_json_creates_and_updates(store_factory: Factory) -> None:
    store = store_factory(concurrency_mode=ConcurrencyMode.ETAG)
    with pytest.raises(BlobNotFoundError):
        await store.update_json("c", lambda v: v + 1)
    assert await store.update_json("c", lambda v: v + 1, default=0) == 1
    assert await store.update_json("c", lambda v: v + 1, default=0) == 2

    async def append(v: list[int]) -> list[int]:
        return [*v, 3]

    await store.set_json("l", [1, 2])
    assert await store.update_json("l", append) == [1, 2, 3]
    assert await store_factory().get_json("l") == [1, 2, 3]


async def test_update_json_exact_under_contention(store_factory: Factory) -> None:
    stores = [store_factory(concurrency_mode=ConcurrencyMode.ETAG) for _ in range(50)]
    await asyncio.gather(*(s.update_json("n", lambda v: v + 1, default=0) for s in stores))
    assert await stores[0].get_json("n") == 50


@pytest.mark.parametrize("cache_mode", [CacheMode.NONE, CacheMode.WRITE_THROUGH])
async def test_no_lost_update_with_50_tasks(store_factory: Factory, cache_mode: CacheMode) -> None:
    await store_factory().set_json("n", 0)
    stores = [
        store_factory(cache_mode=cache_mode, concurrency_mode=ConcurrencyMode.ETAG)
        for _ in range(50)
    ]

    async def increment(store: AsyncBlobStore) -> bool:
        value = await store.get_json("n")
        await asyncio.sleep(0)
        try:
            await store.set_json("n", value + 1)
        except ConcurrencyError:
            return False
        return True

    landed = await asyncio.gather(*(increment(s) for s in stores))
    assert await store_factory().get_json("n") == sum(landed)
    assert sum(landed) >= 1


async def test_shared_adapter_is_closed_by_its_owner_only(
    backend: Callable[[], Any], container: str
) -> None:
    adapter = backend()
    closes = 0
    real_close = adapter.close

    async def counting_close() -> None:
        nonlocal closes
        closes += 1
        await real_close()

    adapter.close = counting_close
    one = AsyncBlobStore(adapter, container, owns_adapter=False)
    two = AsyncBlobStore(adapter, container, owns_adapter=False)
    await one.set_json("k", 1)
    await one.close()
    assert closes == 0
    assert await two.get_json("k") == 1  # the adapter is still open for the second store
    await two.close()
    assert closes == 0
    owner = AsyncBlobStore(adapter, container)  # owns_adapter=True, the default
    assert await owner.get_json("k") == 1
    await owner.close()
    await owner.close()
    assert closes == 1


async def test_values_round_trip_through_storage(store_factory: Factory) -> None:
    from decimal import Decimal
    from uuid import UUID

    value = {
        "set": {3, 1, 2},
        "tuple": (1, "a"),
        "aware": datetime(2024, 5, 6, 7, 8, 9, 10, tzinfo=timezone.utc),
        "uuid": UUID(int=7),
        "dec": Decimal("1.10"),
        1: "int key",
        "_bdtype_": "a user key that looks like a tag",
        "bytes": b"\x00",
    }
    store = store_factory()
    await store.set_json("v", value)
    assert await store_factory().get_json("v") == value


def uuid_container() -> str:
    return "t" + uuid.uuid4().hex[:20]


async def test_keys_are_exact_unless_normalised(store_factory: Factory) -> None:
    nfc, nfd = "caf\u00e9", "cafe\u0301"
    exact = store_factory()
    await exact.set_json(nfc, "composed")
    await exact.set_json(nfd, "decomposed")
    assert sorted([await exact.get_json(nfc), await exact.get_json(nfd)]) == [
        "composed",
        "decomposed",
    ]
    normal = store_factory(normalize_keys="NFC", container=uuid_container())
    await normal.set_json(nfd, 1)
    assert await normal.get_json(nfc) == 1
    assert await normal.list_keys() == [nfc]
    assert await normal.list_keys(nfd[:3]) == [nfc]
    await normal.delete(nfd)
    assert await normal.list_keys() == []
    with pytest.raises(ValueError):
        store_factory(normalize_keys="NFX")
