"""Regressions of the issue "No silent lost update": sequences, overlaps, cancellations.

Each test reproduces one defect found by a hostile user; the number in its name is the
defect's number in that issue. Every one of them failed on the store before the rewrite
around one per-key state.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import tracemalloc
import warnings
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from asyncblobdict import (
    AsyncBlobStore,
    BlobInfo,
    CacheMode,
    ConcurrencyError,
    LocalFileAdapter,
    MemoryAdapter,
    SerializationError,
    StorageError,
    SyncResult,
)
from asyncblobdict.adapters.base import Adapter

Factory = Callable[..., AsyncBlobStore]


class Gated:
    """Wraps an adapter; a put or delete can be held after it landed, a head before it runs.

    ``hold_after_write`` set: every put/delete completes in storage, then waits for the
    event before answering (an answer that is late, so the caller can be cancelled after
    the write landed). ``in_flight`` counts calls still running.
    """

    def __init__(self, inner: Adapter) -> None:
        self.inner = inner
        self.hold_after_write: asyncio.Event | None = None
        self.landed = 0
        self.landing = asyncio.Condition()  # notified whenever a write lands
        self.in_flight = 0
        self.head_hook: Callable[[str], Any] | None = None

    def validate_container(self, container: str) -> str:
        return self.inner.validate_container(container)

    async def get(self, container: str, key: str) -> tuple[bytes, BlobInfo]:
        return await self.inner.get(container, key)

    async def head(self, container: str, key: str) -> BlobInfo | None:
        self.in_flight += 1
        try:
            if self.head_hook is not None:
                await self.head_hook(key)
            return await self.inner.head(container, key)
        finally:
            self.in_flight -= 1

    async def put(self, container: str, key: str, data: bytes, **kw: Any) -> str:
        self.in_flight += 1
        try:
            etag = await self.inner.put(container, key, data, **kw)
            await self._landed()
            if self.hold_after_write is not None:
                await self.hold_after_write.wait()
            return etag
        finally:
            self.in_flight -= 1

    async def delete(self, container: str, key: str, **kw: Any) -> None:
        self.in_flight += 1
        try:
            await self.inner.delete(container, key, **kw)
            await self._landed()
            if self.hold_after_write is not None:
                await self.hold_after_write.wait()
        finally:
            self.in_flight -= 1

    async def _landed(self) -> None:
        async with self.landing:
            self.landed += 1
            self.landing.notify_all()

    async def wait_landed(self, count: int) -> None:
        """Wait until ``count`` writes have landed in all (30 s at most: a hang is a bug)."""
        async with self.landing:
            await asyncio.wait_for(self.landing.wait_for(lambda: self.landed >= count), 30)

    def list(self, container: str, prefix: str = "") -> AsyncIterator[BlobInfo]:
        return self.inner.list(container, prefix)

    def list_names(
        self, container: str, prefix: str = "", *, delimiter: str | None = None
    ) -> AsyncIterator[str]:
        return self.inner.list_names(container, prefix, delimiter=delimiter)

    async def close(self) -> None:
        await self.inner.close()


async def _cancel_after_landing(gated: Gated, operation: Any) -> None:
    """Run ``operation``, cancel it once its write landed but before it answered."""
    gated.hold_after_write = asyncio.Event()
    task = asyncio.ensure_future(operation)
    await gated.wait_landed(gated.landed + 1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    gated.hold_after_write.set()
    gated.hold_after_write = None


async def _other_writer(store_factory: Factory, key: str, value: Any) -> None:
    other = store_factory()
    await other.set_json(key, value)


# -- 3: exists() must not replace the remembered ETag -----------------------------------


@pytest.mark.parametrize("cache_mode", [CacheMode.NONE, CacheMode.WRITE_THROUGH])
async def test_3_exists_does_not_launder_a_stale_read(
    store_factory: Factory, cache_mode: CacheMode
) -> None:
    mine = store_factory(cache_mode=cache_mode, concurrency_mode="etag", cache_max_entries=1)
    await _other_writer(store_factory, "k", 1)
    assert await mine.get_json("k") == 1
    await _other_writer(store_factory, "other", 0)
    await mine.get_json("other")  # evicts k's cached bytes (one entry allowed)
    await _other_writer(store_factory, "k", 2)
    assert await mine.exists("k")
    with pytest.raises(ConcurrencyError):
        await mine.set_json("k", 3)
    assert await store_factory().get_json("k") == 2


# -- 4: write-back update_json must refresh the cached bytes ---------------------------


async def test_4_write_back_update_refreshes_cached_value(store_factory: Factory) -> None:
    mine = store_factory(cache_mode="write_back", concurrency_mode="etag")
    await _other_writer(store_factory, "k", 1)
    assert await mine.get_json("k") == 1  # a clean cached entry
    assert await mine.update_json("k", lambda v: v + 1) == 2
    assert await mine.get_json("k") == 2
    await _other_writer(store_factory, "k", 10)
    value = await mine.get_json("k")
    await mine.set_json("k", value + 1)
    result = await mine.sync("skip")
    assert result.skipped == ["k"]  # the other writer's 10 is not erased
    assert await store_factory().get_json("k") == 10
    mine.discard_changes()


# -- 5: a set made while update_json is in flight is never dropped ----------------------


async def test_5_set_during_update_json_is_not_dropped(store_factory: Factory) -> None:
    mine = store_factory(cache_mode="write_back", concurrency_mode="etag")
    await _other_writer(store_factory, "k", 1)
    release, started = asyncio.Event(), asyncio.Event()
    calls = 0

    async def slow_increment(v: int) -> int:
        nonlocal calls
        calls += 1
        if calls == 1:
            started.set()
            await release.wait()
        return v + 1

    updating = asyncio.ensure_future(mine.update_json("k", slow_increment))
    await started.wait()
    setting = asyncio.ensure_future(mine.set_json("k", 100))
    for _ in range(3):
        await asyncio.sleep(0)  # let it reach the key's queue (no I/O before that)
    assert not setting.done()
    await _other_writer(store_factory, "k", 50)  # makes the update's first attempt conflict
    release.set()
    assert await updating == 51
    await setting
    assert mine.dirty_keys() == ["k"]
    assert await mine.get_json("k") == 100
    assert (await mine.sync("overwrite")).written == ["k"]
    assert await store_factory().get_json("k") == 100


# -- 7: write-back update_json with an async fn is atomic --------------------------------


async def test_7_write_back_async_update_is_atomic(store_factory: Factory) -> None:
    store = store_factory(cache_mode="write_back")
    await store.set_json("n", 0)

    async def increment(v: int) -> int:
        await asyncio.sleep(0)
        return v + 1

    results = await asyncio.gather(*(store.update_json("n", increment) for _ in range(100)))
    assert sorted(results) == list(range(1, 101))
    assert await store.get_json("n") == 100


# -- 9: eviction stays cheap however many entries are dirty -------------------------------


async def test_9_eviction_does_not_scan_dirty_entries() -> None:
    store = AsyncBlobStore(MemoryAdapter(), "c", "write_back", cache_max_entries=10)
    for i in range(5000):
        await store.set_json(f"k{i}", i)
    assert len(store.dirty_keys()) == 5000
    table = store._table  # the one per-key state; its counter is for this test
    assert table.eviction_steps <= 2 * 5000
    store.discard_changes()


# -- 10: a store recognises its own writes ----------------------------------------------


async def test_10_cancelled_sync_after_landing_is_not_a_self_conflict(tmp_path: Path) -> None:
    gated = Gated(LocalFileAdapter(tmp_path))
    store = AsyncBlobStore(gated, "c", "write_back", "etag")
    await store.set_json("k", 1)
    await store.sync()
    await store.set_json("k", 2)
    await _cancel_after_landing(gated, store.sync())
    result = await store.sync("raise")
    assert result.skipped == []
    await store.set_json("k", 3)
    await store.close()  # syncs with "raise": must not see its own write as a conflict
    assert await AsyncBlobStore(LocalFileAdapter(tmp_path), "c").get_json("k") == 3


async def test_10_background_sync_overlapping_close(tmp_path: Path) -> None:
    gated = Gated(LocalFileAdapter(tmp_path))
    store = AsyncBlobStore(gated, "c", "write_back", "etag")
    for i in range(20):
        await store.set_json(f"k{i}", i)
    await store.sync()
    for i in range(20):
        await store.set_json(f"k{i}", i + 100)
    gated.hold_after_write = release = asyncio.Event()
    syncing = asyncio.ensure_future(store.sync())
    await gated.wait_landed(21)  # a write of the background sync landed, unanswered
    closing = asyncio.ensure_future(store.close())
    for _ in range(3):
        await asyncio.sleep(0)  # close() now waits for the sync (no I/O before that)
    assert not closing.done()
    release.set()
    await closing  # must not see the background sync's writes as conflicts
    await syncing
    reader = AsyncBlobStore(LocalFileAdapter(tmp_path), "c")
    assert [await reader.get_json(f"k{i}") for i in range(20)] == list(range(100, 120))


@pytest.mark.parametrize("cache_mode", list(CacheMode))
async def test_10_single_store_never_conflicts_with_itself(
    tmp_path: Path, cache_mode: CacheMode
) -> None:
    gated = Gated(LocalFileAdapter(tmp_path, durable=False))
    store = AsyncBlobStore(gated, "c", cache_mode, "etag")
    await store.set_json("k", 0)
    await store.sync()
    for i in range(12):
        if cache_mode is CacheMode.WRITE_BACK:
            await store.update_json("k", lambda v: v + 1)
            await store.set_json("k", i)
            operation: Any = store.sync()
        elif i % 2:
            operation = store.update_json("k", lambda v: v + 1)
        else:
            operation = store.set_json("k", i)
        await _cancel_after_landing(gated, operation)
    await store.set_json("k", "last")
    await store.update_json("k", lambda v: v + "!")
    await store.close()
    assert await AsyncBlobStore(LocalFileAdapter(tmp_path), "c").get_json("k") == "last!"


# -- 11: a failed sync("raise") leaves nothing running ----------------------------------


async def test_11_failed_sync_raise_cancels_its_heads() -> None:
    gated = Gated(MemoryAdapter())
    setup = AsyncBlobStore(gated, "c")
    for key in ("bad", "slow1", "slow2"):
        await setup.set_json(key, 0)
    store = AsyncBlobStore(gated, "c", "write_back", "etag")
    for key in ("bad", "slow1", "slow2"):
        await store.get_json(key)
        await store.set_json(key, 1)

    async def hook(key: str) -> None:
        if key == "bad":
            raise StorageError("head failed", key=key)
        await asyncio.sleep(30)

    gated.head_hook = hook
    with pytest.raises(StorageError):
        await store.sync("raise")
    assert gated.in_flight == 0
    gated.head_hook = None
    store.discard_changes()
    await store.close()


# -- 13: a released memoryview is a clear error -------------------------------------------


async def test_13_released_memoryview(store_factory: Factory) -> None:
    store = store_factory()
    view = memoryview(b"abc")
    view.release()
    with pytest.raises(SerializationError):
        await store.set_binary("k", view)
    assert not await store.exists("k")


# -- 14: per-key bookkeeping does not grow without bound ---------------------------------


class Sink:
    """Stores nothing, so whatever memory grows is the store's own."""

    def validate_container(self, container: str) -> str:
        return container

    async def get(self, container: str, key: str) -> tuple[bytes, BlobInfo]:
        return b"0", BlobInfo(key, 1, '"1"')

    async def head(self, container: str, key: str) -> BlobInfo | None:
        return None

    async def put(self, container: str, key: str, data: bytes, **kw: Any) -> str:
        return '"1"'

    async def delete(self, container: str, key: str, **kw: Any) -> None:
        return None

    async def list(self, container: str, prefix: str = "") -> AsyncIterator[BlobInfo]:
        return
        yield  # an async generator that yields nothing

    async def list_names(
        self, container: str, prefix: str = "", *, delimiter: str | None = None
    ) -> AsyncIterator[str]:
        return
        yield

    async def close(self) -> None:
        return None


@pytest.mark.parametrize(("concurrency", "bound"), [("none", 0), ("etag", 1000)])
async def test_14_bookkeeping_is_bounded(concurrency: str, bound: int) -> None:
    options: dict[str, Any] = {"etag_memory": bound} if bound else {}
    store = AsyncBlobStore(Sink(), "c", concurrency_mode=concurrency, **options)
    keys = [f"key-{i:06d}" for i in range(20_000)]
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for key in keys:
            await store.set_json(key, 1)
            await store.delete(key)
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    # A remembered "absent" costs a key and a small record: a few hundred bytes at most.
    assert grown < 10_000 + 400 * bound, f"{grown} bytes retained for 20,000 deleted keys"


# -- 15: write-back replays changes in the order they were made ---------------------------


async def test_15_write_back_replays_in_order(tmp_path: Path) -> None:
    adapter = LocalFileAdapter(tmp_path, durable=False)
    await AsyncBlobStore(adapter, "c").set_json("a/b", 1)
    store = AsyncBlobStore(adapter, "c", "write_back", sync_concurrency=1)
    await store.delete("a/b")
    await store.set_json("a", 2)
    await store.close()
    reader = AsyncBlobStore(LocalFileAdapter(tmp_path), "c")
    assert await reader.list_keys() == ["a"]
    assert await reader.get_json("a") == 2


@pytest.mark.parametrize(("old", "new"), [("a/b", "a"), ("a", "a/b")])
async def test_15_related_keys_replay_one_after_the_other_at_any_concurrency(
    old: str, new: str
) -> None:
    # With sync_concurrency > 1 unrelated keys are written at once, but a change to a key
    # starts only after the change to its folder or to a key below it, made before, has
    # ended (on the local backend one is the other's folder).
    gated = Gated(MemoryAdapter())
    await AsyncBlobStore(gated, "c").set_json(old, 1)
    store = AsyncBlobStore(gated, "c", "write_back", sync_concurrency=16)
    await store.set_json("z", 3)
    await store.delete(old)
    await store.set_json(new, 2)
    gated.hold_after_write = release = asyncio.Event()
    syncing = asyncio.ensure_future(store.sync())
    await gated.wait_landed(3)  # the first put, then the put of z and the delete of old
    assert gated.in_flight == 2, f"{new} started while {old} was still being deleted"
    release.set()
    assert await syncing == SyncResult(written=sorted([new, "z"]), deleted=[old], skipped=[])
    assert gated.landed == 4
    assert await AsyncBlobStore(gated, "c").list_keys() == sorted([new, "z"])


# -- 17: update_json never hands the caller's default object to fn ------------------------


async def test_17_default_not_shared_on_pending_delete() -> None:
    store = AsyncBlobStore(MemoryAdapter(), "c", "write_back")
    await store.set_json("k", {"n": 5})
    await store.delete("k")
    default: dict[str, int] = {"n": 0}

    def bump(v: dict[str, int]) -> dict[str, int]:
        v["n"] += 1
        return v

    assert await store.update_json("k", bump, default=default) == {"n": 1}
    assert default == {"n": 0}
    store.discard_changes()


# -- 18: dropping a store with pending changes is never silent ----------------------------


async def test_18_dropped_store_with_pending_changes_warns(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = AsyncBlobStore(MemoryAdapter(), "c", "write_back")
    for key in ("a", "b", "c"):
        await store.set_json(key, 1)
    with (
        caplog.at_level(logging.WARNING, logger="asyncblobdict"),
        pytest.warns(ResourceWarning, match="3 pending change"),
    ):
        del store
        gc.collect()
    assert any("3 pending change" in r.getMessage() for r in caplog.records)


async def test_18_closed_store_does_not_warn() -> None:
    store = AsyncBlobStore(MemoryAdapter(), "c", "write_back")
    await store.set_json("a", 1)
    await store.close()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        del store
        gc.collect()


# -- 20: a cancelled write-through update still refreshes the cache -----------------------


async def test_20_cancelled_update_refreshes_write_through_cache(tmp_path: Path) -> None:
    gated = Gated(LocalFileAdapter(tmp_path))
    store = AsyncBlobStore(gated, "c", "write_through")
    await store.set_json("k", 1)
    assert await store.get_json("k") == 1
    await _cancel_after_landing(gated, store.update_json("k", lambda v: v + 1))
    assert await store.get_json("k") == 2
    await store.close()


async def test_sync_takes_its_turn_on_every_key_when_called(store_factory: Factory) -> None:
    """Found by the stateful test: a set made right after sync() was called slipped in
    before the sync reached the key, so the sync wrote the newer value and reported the
    pending delete it was called for as a write."""
    await _other_writer(store_factory, "a", 1)
    store = store_factory(cache_mode="write_back")
    await store.delete("a")
    syncing = asyncio.ensure_future(store.sync())
    setting = asyncio.ensure_future(store.set_json("a", 9000))
    result = await syncing
    await setting
    assert (result.written, result.deleted) == ([], ["a"])
    assert store.dirty_keys() == ["a"]
    assert not await store_factory().exists("a")
    await store.sync()
    assert await store_factory().get_json("a") == 9000


# -- a cancelled caller's write runs on, and its outcome is kept ---------------------------


async def test_a_write_whose_caller_is_cancelled_lands_and_is_recorded_without_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    gated = Gated(LocalFileAdapter(tmp_path))
    store = AsyncBlobStore(gated, "c", "none", "etag")
    await store.set_json("k", 1)
    with caplog.at_level(logging.WARNING, logger="asyncblobdict"):
        await _cancel_after_landing(gated, store.set_json("k", 2))
        # The next write is conditional on the version the cancelled one wrote: it passes
        # only if that write's ETag was recorded.
        await store.set_json("k", 3)
    assert await store.get_json("k") == 3
    assert [r.getMessage() for r in caplog.records] == []
    await store.close()


async def test_a_failed_write_whose_caller_was_cancelled_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Failing(Gated):
        async def put(self, container: str, key: str, data: bytes, **kw: Any) -> str:
            await self._landed()
            if self.hold_after_write is not None:
                await self.hold_after_write.wait()
            raise StorageError("the disk is on fire", container=container, key=key)

    gated = Failing(MemoryAdapter())
    store = AsyncBlobStore(gated, "c")
    with caplog.at_level(logging.WARNING, logger="asyncblobdict"):
        await _cancel_after_landing(gated, store.set_json("k", 1))
        for _ in range(5):
            await asyncio.sleep(0)  # the detached write ends
    assert any("the disk is on fire" in r.getMessage() for r in caplog.records)
    with pytest.raises(StorageError):
        await store.set_json("k", 2)  # still failing, now answered to its caller
    await store.close()
