"""Content type, metadata, info() and one-level listing through the store, on every backend."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from asyncblobdict import AsyncBlobStore, CacheMode, ConcurrencyError, InvalidKeyError

Factory = Callable[..., AsyncBlobStore]


@pytest.mark.parametrize("cache_mode", list(CacheMode))
async def test_content_type_and_metadata_round_trip(
    store_factory: Factory, cache_mode: CacheMode
) -> None:
    store = store_factory(cache_mode=cache_mode)
    await store.set_json("cfg", {"a": 1}, metadata={"Owner": "ops", "rev": "7"})
    await store.set_binary("img", b"\x89PNG", content_type="image/png")
    await store.sync()
    reader = store_factory()
    cfg = await reader.info("cfg")
    assert cfg is not None
    assert (cfg.content_type, dict(cfg.metadata), cfg.size) == (
        "application/json",
        {"owner": "ops", "rev": "7"},
        len(b'{"a":1}'),
    )
    assert cfg.etag is not None
    img = await reader.info("img")
    assert img is not None and img.content_type == "image/png" and dict(img.metadata) == {}
    assert await reader.info("missing") is None


async def test_a_later_write_replaces_metadata(store_factory: Factory) -> None:
    store = store_factory()
    await store.set_json("k", 1, metadata={"a": "1", "b": "2"})
    await store.set_json("k", 2, metadata={"c": "3"})
    info = await store.info("k")
    assert info is not None and dict(info.metadata) == {"c": "3"}
    await store.set_binary("k", b"raw")
    info = await store.info("k")
    assert info is not None and dict(info.metadata) == {}


async def test_update_json_keeps_content_type_and_metadata(store_factory: Factory) -> None:
    store = store_factory()
    await store.set_json("n", 1, content_type="application/x-counter", metadata={"kind": "n"})
    assert await store.update_json("n", lambda v: v + 1) == 2
    info = await store.info("n")
    assert info is not None
    assert (info.content_type, dict(info.metadata)) == ("application/x-counter", {"kind": "n"})


async def test_write_back_info_shows_the_pending_value(store_factory: Factory) -> None:
    store = store_factory(cache_mode="write_back")
    await store.set_binary("k", b"abc", content_type="text/plain", metadata={"x": "y"})
    info = await store.info("k")
    assert info is not None
    assert (info.size, info.etag, info.content_type, dict(info.metadata)) == (
        3,
        None,
        "text/plain",
        {"x": "y"},
    )
    assert await store_factory().info("k") is None  # not in storage yet
    await store.delete("k")
    assert await store.info("k") is None
    store.discard_changes()


@pytest.mark.parametrize(
    "metadata",
    [{"9lives": "x"}, {"has-dash": "x"}, {"ok": "naïve"}, {"ok": " padded"}, {"a": "1", "A": "2"}],
)
async def test_bad_metadata_is_refused_before_any_io(
    store_factory: Factory, metadata: dict[str, Any]
) -> None:
    store = store_factory()
    with pytest.raises(InvalidKeyError):
        await store.set_json("k", 1, metadata=metadata)
    with pytest.raises(InvalidKeyError):
        await store.set_binary("k", b"1", content_type="bad\ntype")
    assert not await store.exists("k")


async def test_info_does_not_change_the_remembered_etag(store_factory: Factory) -> None:
    mine = store_factory(concurrency_mode="etag")
    await store_factory().set_json("k", 1)
    assert await mine.get_json("k") == 1
    await store_factory().set_json("k", 2)
    assert await mine.info("k") is not None
    with pytest.raises(ConcurrencyError):
        await mine.set_json("k", 3)


async def _fill(store: AsyncBlobStore) -> None:
    for key in ("a/x", "a/y/z", "abc", "b", "c/d/e"):
        await store.set_json(key, 0)


async def test_list_keys_one_level(store_factory: Factory) -> None:
    store = store_factory()
    await _fill(store)
    assert await store.list_keys(delimiter="/") == ["a/", "abc", "b", "c/"]
    assert await store.list_keys("a", delimiter="/") == ["a/", "abc"]
    assert await store.list_keys("a/", delimiter="/") == ["a/x", "a/y/"]
    assert await store.list_keys("c/d/", delimiter="/") == ["c/d/e"]
    assert await store.list_keys("zz", delimiter="/") == []
    assert await store.list_keys() == ["a/x", "a/y/z", "abc", "b", "c/d/e"]
    with pytest.raises(InvalidKeyError):
        await store.list_keys(delimiter="|")


async def test_list_keys_one_level_sees_pending_changes(store_factory: Factory) -> None:
    await _fill(store_factory())
    store = store_factory(cache_mode="write_back")
    await store.delete("c/d/e")
    await store.delete("a/x")
    await store.set_json("d/new", 1)
    assert await store.list_keys(delimiter="/") == ["a/", "abc", "b", "d/"]
    await store.delete("a/y/z")
    assert await store.list_keys(delimiter="/") == ["abc", "b", "d/"]
    store.discard_changes()
