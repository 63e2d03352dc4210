"""Scenario 5: WRITE_BACK changes survive a failing backend.

A store with dirty entries and tombstones is closed while its backend fails: the error
surfaces, every unwritten change stays (``dirty_keys()``) and storage is untouched; a later
sync, once the backend is back, writes them all. Backends: memory and local, behind a
wrapper adapter that fails on command (all calls, or only some keys), and Azure through
the fault proxy refusing every request.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from asyncblobdict import (
    AsyncBlobStore,
    BlobInfo,
    BlobNotFoundError,
    CacheMode,
    ConcurrencyMode,
    LocalFileAdapter,
    MemoryAdapter,
    StorageError,
)
from tests.reliability.fault_proxy import FaultProxy
from tests.reliability.support import AzuriteInfo, SecretWatch, azure_fast_options, record

N_KEYS = 40
counts: dict[str, int] = {"closes_refused": 0, "dirty_entries_kept": 0, "entries_later_synced": 0}


@pytest.fixture(scope="module", autouse=True)
def _record_counts() -> Iterator[None]:
    """Once the module's tests have run, their counts go to the results file (a helper,
    not a test: the tests that gather the counts assert on them)."""
    yield
    if any(counts.values()):
        record("write_back", dict(counts))


class Failing:
    """Wraps an adapter; ``fail(key)`` decides which calls raise StorageError (None: all)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.failing: Callable[[str | None], bool] = lambda key: False
        self.refused = 0

    def _gate(self, container: str, key: str | None) -> None:
        if self.failing(key):
            self.refused += 1
            raise StorageError("injected: disk unwritable", container=container, key=key)

    def validate_container(self, container: str) -> str:
        return self.inner.validate_container(container)  # type: ignore[no-any-return]

    async def get(self, container: str, key: str) -> tuple[bytes, BlobInfo]:
        self._gate(container, key)
        return await self.inner.get(container, key)  # type: ignore[no-any-return]

    async def head(self, container: str, key: str) -> BlobInfo | None:
        self._gate(container, key)
        return await self.inner.head(container, key)  # type: ignore[no-any-return]

    async def put(self, container: str, key: str, data: bytes, **cond: Any) -> str:
        self._gate(container, key)
        return await self.inner.put(container, key, data, **cond)  # type: ignore[no-any-return]

    async def delete(self, container: str, key: str, **cond: Any) -> None:
        self._gate(container, key)
        await self.inner.delete(container, key, **cond)

    async def list(self, container: str, prefix: str = "") -> AsyncIterator[BlobInfo]:
        self._gate(container, None)
        async for info in self.inner.list(container, prefix):
            yield info

    async def list_names(
        self, container: str, prefix: str = "", *, delimiter: str | None = None
    ) -> AsyncIterator[str]:
        self._gate(container, None)
        async for name in self.inner.list_names(container, prefix, delimiter=delimiter):
            yield name

    async def close(self) -> None:
        await self.inner.close()


async def stored(adapter: Any, container: str) -> dict[str, bytes]:
    out = {}
    async for info in adapter.list(container):
        out[info.key] = (await adapter.get(container, info.key))[0]
    return out


def expected_after(before: dict[str, bytes], n: int) -> dict[str, bytes]:
    want = {k: v for k, v in before.items() if not k.startswith("old/") or int(k[4:]) % 2}
    want.update({f"new/{i}": b'{"i":%d}' % i for i in range(n)})
    want.update({f"old/{i}": b"rewritten %d" % i for i in range(1, n, 4)})
    return want


async def make_changes(store: AsyncBlobStore, n: int) -> set[str]:
    """Dirty entries (new keys, rewrites) and tombstones (every even old key)."""
    for i in range(n):
        await store.set_json(f"new/{i}", {"i": i})
    for i in range(0, n, 2):
        await store.delete(f"old/{i}")
    for i in range(1, n, 4):
        await store.set_binary(f"old/{i}", b"rewritten %d" % i)
    return (
        {f"new/{i}" for i in range(n)}
        | {f"old/{i}" for i in range(0, n, 2)}
        | {f"old/{i}" for i in range(1, n, 4)}
    )


@pytest.mark.parametrize("kind", ["memory", "local"])
@pytest.mark.parametrize("concurrency", ["none", "etag"])
@pytest.mark.parametrize("failure", ["all", "some_keys"])
async def test_close_with_failing_backend_keeps_dirty_entries(
    tmp_path: Path, kind: str, concurrency: str, failure: str
) -> None:
    inner: Any = MemoryAdapter() if kind == "memory" else LocalFileAdapter(tmp_path / "s")
    adapter = Failing(inner)
    container = "wb"
    for i in range(N_KEYS):
        await inner.put(container, f"old/{i}", b"original %d" % i)
    before = await stored(inner, container)

    store = AsyncBlobStore(adapter, container, CacheMode.WRITE_BACK, concurrency)
    if concurrency == "etag":  # the store learns each key's version, so sync checks them
        for i in range(N_KEYS):
            await store.get_binary(f"old/{i}")
    dirty = await make_changes(store, N_KEYS)
    assert set(store.dirty_keys()) == dirty

    if failure == "all":
        adapter.failing = lambda key: True
    else:  # the backend fails for some keys only: the others are written
        adapter.failing = lambda key: key is not None and hash(key) % 3 == 0
    with pytest.raises(StorageError):
        await store.close()
    counts["closes_refused"] += 1
    left = set(store.dirty_keys())
    if failure == "all":
        assert left == dirty
        assert await stored(inner, container) == before, "storage changed although all failed"
    else:
        failed = {k for k in dirty if hash(k) % 3 == 0}
        if concurrency == "etag":
            # sync("raise") checks every key before writing any: a failed check writes none.
            assert failed <= left
        else:
            assert left == failed, "written keys stayed dirty or failed keys were dropped"
    counts["dirty_entries_kept"] += len(left)
    # Reads of the store still see the pending changes.
    for key in sorted(left):
        if key.startswith("new/"):
            assert await store.get_json(key) == {"i": int(key[4:])}
        elif int(key[4:]) % 2 == 0:
            with pytest.raises(BlobNotFoundError):
                await store.get_binary(key)

    # Also through ``async with``: leaving it raises, and nothing is dropped.
    with pytest.raises(StorageError):
        async with store:
            pass
    assert set(store.dirty_keys()) == left

    adapter.failing = lambda key: False
    result = await store.sync("raise")
    assert set(result.written) | set(result.deleted) == left
    assert store.dirty_keys() == []
    counts["entries_later_synced"] += len(left)
    await store.close()
    assert await stored(inner, container) == expected_after(before, N_KEYS)


@pytest.mark.azure
async def test_close_while_azure_is_down_keeps_dirty_entries(
    rel_azurite: AzuriteInfo, secret_watch: SecretWatch
) -> None:
    proxy = FaultProxy()
    port = await proxy.start(rel_azurite.endpoint)
    options = azure_fast_options(0.5)
    direct = rel_azurite.new_adapter()
    adapter = rel_azurite.new_adapter(f"http://127.0.0.1:{port}/devstoreaccount1", **options)
    container = "wb" + str(int(time.time() * 1000))
    try:
        for i in range(N_KEYS):
            await direct.put(container, f"old/{i}", b"original %d" % i)
        before = await stored(direct, container)
        store = AsyncBlobStore(adapter, container, CacheMode.WRITE_BACK, ConcurrencyMode.ETAG)
        secret_watch.see(store)
        for i in range(N_KEYS):
            await store.get_binary(f"old/{i}")
        dirty = await make_changes(store, N_KEYS)
        proxy.refuse_all = True
        with pytest.raises(StorageError) as info:
            await store.close()
        secret_watch.see(info.value)
        assert set(store.dirty_keys()) == dirty
        assert await stored(direct, container) == before
        counts["closes_refused"] += 1
        counts["dirty_entries_kept"] += len(dirty)
        proxy.refuse_all = False
        result = await store.sync("raise")
        assert set(result.written) | set(result.deleted) == dirty
        await store.close()
        counts["entries_later_synced"] += len(dirty)
        assert await stored(direct, container) == expected_after(before, N_KEYS)
    finally:
        await direct.close()
        await adapter.close()
        await proxy.stop()
