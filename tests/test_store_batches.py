"""get_many, get_many_binary, set_many and delete_many on every backend."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from asyncblobdict import (
    AsyncBlobStore,
    BatchError,
    ConcurrencyError,
    InvalidKeyError,
    MemoryAdapter,
    SerializationError,
    StorageError,
)

Factory = Callable[..., AsyncBlobStore]


@pytest.mark.parametrize("cache_mode", ["none", "write_through", "write_back"])
async def test_batch_round_trip(store_factory: Factory, cache_mode: str) -> None:
    store = store_factory(cache_mode=cache_mode)
    values = {f"k/{i:02d}": {"i": i} for i in range(40)}
    await store.set_many(values)
    await store.sync()
    reader = store_factory()
    assert await reader.get_many(["k/01", "missing", "k/00", "k/01"]) == {
        "k/01": {"i": 1},
        "k/00": {"i": 0},
    }
    assert await reader.get_many(["k/02", "missing"], default=None) == {
        "k/02": {"i": 2},
        "missing": None,
    }
    assert await reader.get_many_binary(["k/03"]) == {"k/03": b'{"i":3}'}
    assert await reader.get_many(values, concurrency=3) == values
    await store.delete_many([f"k/{i:02d}" for i in range(0, 40, 2)] + ["never/there"])
    await store.sync()
    assert len(await reader.list_keys("k/")) == 20


async def test_bad_input_is_refused_before_any_write(store_factory: Factory) -> None:
    store = store_factory()
    with pytest.raises(InvalidKeyError):
        await store.set_many({"good": 1, "bad//key": 2})
    with pytest.raises(SerializationError):
        await store.set_many([("good", 1), ("worse", object())])
    assert await store.list_keys() == []
    with pytest.raises(InvalidKeyError):
        await store.get_many(["ok", "../up"])
    with pytest.raises(ValueError):
        await store.get_many(["ok"], concurrency=0)


class FailingKeys(MemoryAdapter):
    """Writes and reads of keys starting with ``bad`` fail."""

    async def get(self, container: str, key: str) -> Any:
        if key.startswith("bad"):
            raise StorageError("injected read failure", container=container, key=key)
        return await super().get(container, key)

    async def put(self, container: str, key: str, data: bytes, **kw: Any) -> str:
        if key.startswith("bad"):
            raise StorageError("injected write failure", container=container, key=key)
        return await super().put(container, key, data, **kw)


async def test_a_failing_key_does_not_abandon_the_others() -> None:
    adapter = FailingKeys()
    store = AsyncBlobStore(adapter, "c")
    with pytest.raises(BatchError) as caught:
        await store.set_many({"a": 1, "bad1": 2, "b": 3, "bad2": 4})
    assert sorted(caught.value.errors) == ["bad1", "bad2"]
    assert all(isinstance(e, StorageError) for e in caught.value.errors.values())
    assert await store.get_many(["a", "b"]) == {"a": 1, "b": 3}
    with pytest.raises(BatchError) as caught:
        await store.get_many(["a", "bad1", "b"])
    assert list(caught.value.errors) == ["bad1"]
    assert caught.value.results == {"a": 1, "b": 3}
    assert "bad1" in str(caught.value)


async def test_etag_conflicts_are_reported_per_key(store_factory: Factory) -> None:
    mine = store_factory(concurrency_mode="etag")
    other = store_factory()
    await other.set_many({"x": 0, "y": 0, "z": 0})
    assert await mine.get_many(["x", "y", "z"]) == {"x": 0, "y": 0, "z": 0}
    await other.set_json("y", 99)
    with pytest.raises(BatchError) as caught:
        await mine.set_many({"x": 1, "y": 1, "z": 1})
    assert list(caught.value.errors) == ["y"]
    assert isinstance(caught.value.errors["y"], ConcurrencyError)
    assert await other.get_many(["x", "y", "z"]) == {"x": 1, "y": 99, "z": 1}


async def test_concurrency_is_bounded() -> None:
    running = peak = 0

    class Counting(MemoryAdapter):
        async def put(self, container: str, key: str, data: bytes, **kw: Any) -> str:
            nonlocal running, peak
            running += 1
            peak = max(peak, running)
            await asyncio.sleep(0)
            running -= 1
            return await super().put(container, key, data, **kw)

    store = AsyncBlobStore(Counting(), "c", batch_concurrency=4)
    await store.set_many({f"k{i}": i for i in range(50)})
    assert peak == 4
    peak = 0
    await store.set_many({f"k{i}": i for i in range(50)}, concurrency=2)
    assert peak == 2 and len(await store.list_keys()) == 50
