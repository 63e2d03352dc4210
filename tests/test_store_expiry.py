"""Expiry (``ttl=``) on every backend: expired values read as missing everywhere, listings
leave them out, ``sweep_expired`` deletes exactly the expired version.

Time is a clock the tests move (the store's ``clock`` option), never a sleep.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Callable, Mapping
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from asyncblobdict import (
    AsyncBlobStore,
    BlobNotFoundError,
    BlobStore,
    InvalidKeyError,
    InvalidTTLError,
    LocalFileAdapter,
    MemoryAdapter,
)
from asyncblobdict.adapters.base import Adapter, BlobInfo
from asyncblobdict.expiry import EXPIRES_METADATA, MAX_EXPIRY, expires_at, ttl_seconds

Factory = Callable[..., AsyncBlobStore]
T0 = 1_800_000_000.0  # 2027-01-15 08:00:00 UTC
MODES = ["none", "write_through", "write_back"]


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def _gone(store: AsyncBlobStore, key: str, tmp_path: Path) -> None:
    """``key`` reads as missing through every read of the store."""
    with pytest.raises(BlobNotFoundError):
        await store.get_json(key)
    with pytest.raises(BlobNotFoundError):
        await store.get_binary(key)
    with pytest.raises(BlobNotFoundError):
        async for _ in store.iter_binary(key):
            pass
    with pytest.raises(BlobNotFoundError):
        await store.get_file(key, tmp_path / "out.bin")
    assert not (tmp_path / "out.bin").exists()
    assert await store.exists(key) is False
    assert await store.info(key) is None
    assert await store.get_many([key]) == {}
    assert await store.get_many([key], default="d") == {key: "d"}
    assert key not in await store.list_keys()
    assert key not in [k async for k in store.iter_keys()]


@pytest.mark.parametrize("cache_mode", MODES)
async def test_an_expired_value_reads_as_missing_everywhere(
    store_factory: Factory, cache_mode: str, tmp_path: Path
) -> None:
    clock = Clock()
    store = store_factory(cache_mode=cache_mode, clock=clock)
    await store.set_json("s/a", {"n": 1}, ttl=10)
    await store.set_binary("s/b", b"bytes", ttl=timedelta(seconds=20))
    await store.set_json("s/c", "forever")
    assert await store.get_json("s/a") == {"n": 1}  # cached now, in the caching modes
    await store.sync()
    assert await store.list_keys() == ["s/a", "s/b", "s/c"]
    clock.now += 10  # the expiry time itself counts as expired
    await _gone(store, "s/a", tmp_path)
    assert await store.get_binary("s/b") == b"bytes"
    assert await store.list_keys("s/") == ["s/b", "s/c"]
    clock.now += 10
    await _gone(store, "s/b", tmp_path)
    assert await store.list_keys() == ["s/c"]
    # Another store, with a clock of its own, judges by that clock.
    behind = store_factory(clock=Clock(T0 + 5))
    assert await behind.get_json("s/a") == {"n": 1}
    assert await behind.list_keys() == ["s/a", "s/b", "s/c"]


async def test_info_shows_the_expiry_not_the_reserved_metadata(store_factory: Factory) -> None:
    store = store_factory(clock=Clock())
    await store.set_json("k", 1, metadata={"owner": "ops"}, ttl=90.5)
    info = await store.info("k")
    assert info is not None
    assert info.expires == datetime.fromtimestamp(T0 + 90.5, timezone.utc)
    assert dict(info.metadata) == {"owner": "ops"}
    await store.set_json("k", 2)  # an overwrite without ttl never expires
    info = await store.info("k")
    assert info is not None and info.expires is None
    # Stored as metadata any tool can read: epoch seconds, milliseconds.
    await store.set_json("k", 3, ttl=timedelta(milliseconds=1500))
    raw = await store.adapter.head(store.container_name, "k")
    assert raw is not None and raw.metadata[EXPIRES_METADATA] == f"{T0 + 1.5:.3f}"


@pytest.mark.parametrize("cache_mode", ["write_through", "write_back"])
async def test_a_cached_value_expires_on_time(store_factory: Factory, cache_mode: str) -> None:
    clock = Clock()
    store = store_factory(cache_mode=cache_mode, clock=clock)
    await store.set_json("k", "v", ttl=5)
    assert await store.get_json("k") == "v"
    clock.now += 5
    with pytest.raises(BlobNotFoundError):
        await store.get_json("k")
    assert await store.exists("k") is False
    assert await store.list_keys() == []
    store.discard_changes()


async def test_a_clean_cached_value_is_asked_of_storage_again(store_factory: Factory) -> None:
    """A value written anew by another store after this one cached it is found."""
    clock = Clock()
    store = store_factory(cache_mode="write_through", clock=clock)
    await store.set_json("k", "old", ttl=5)
    assert await store.get_json("k") == "old"
    await store_factory().set_json("k", "new")
    clock.now += 6
    assert await store.get_json("k") == "new"


async def test_write_back_keeps_the_expiry_of_the_call(store_factory: Factory) -> None:
    clock = Clock()
    store = store_factory(cache_mode="write_back", clock=clock)
    await store.set_json("k", 1, ttl=10)
    clock.now += 8
    assert (await store.sync()).written == ["k"]
    reader = store_factory(clock=Clock(T0 + 9))
    assert await reader.get_json("k") == 1
    reader.clock = Clock(T0 + 10)
    with pytest.raises(BlobNotFoundError):
        await reader.get_json("k")
    info = await store.info("k")  # this store's clock is still before the expiry
    assert info is not None and info.expires == datetime.fromtimestamp(T0 + 10, timezone.utc)


async def test_a_pending_value_that_expired_is_missing(store_factory: Factory) -> None:
    clock = Clock()
    store = store_factory(cache_mode="write_back", clock=clock)
    await store.set_json("a/k", 1, ttl=1)
    await store.set_json("a/j", 2)
    clock.now += 1
    with pytest.raises(BlobNotFoundError):
        await store.get_json("a/k")
    assert await store.info("a/k") is None
    assert await store.list_keys() == ["a/j"]
    assert await store.update_json("a/k", lambda v: v + 1, default=0) == 1
    assert await store.get_json("a/k") == 1
    store.discard_changes()


@pytest.mark.parametrize("concurrency_mode", ["none", "etag"])
async def test_update_json_keeps_or_sets_the_expiry(
    store_factory: Factory, concurrency_mode: str
) -> None:
    clock = Clock()
    store = store_factory(concurrency_mode=concurrency_mode, clock=clock)
    await store.set_json("n", 1, ttl=10)
    assert await store.update_json("n", lambda v: v + 1) == 2
    info = await store.info("n")
    assert info is not None and info.expires == datetime.fromtimestamp(T0 + 10, timezone.utc)
    assert await store.update_json("n", lambda v: v + 1, ttl=100) == 3
    info = await store.info("n")
    assert info is not None and info.expires == datetime.fromtimestamp(T0 + 100, timezone.utc)
    clock.now += 100
    with pytest.raises(BlobNotFoundError):
        await store.update_json("n", lambda v: v + 1)
    # An expired value is missing to update_json: default, and the expired one is replaced.
    assert await store.update_json("n", lambda v: v + 1, default=0) == 1
    info = await store.info("n")
    assert info is not None and info.expires is None
    assert await store.get_json("n") == 1


async def test_an_etag_store_overwrites_an_expired_value_it_read(store_factory: Factory) -> None:
    clock = Clock()
    store = store_factory(concurrency_mode="etag", clock=clock)
    await store.set_json("k", 1, ttl=1)
    clock.now += 2
    with pytest.raises(BlobNotFoundError):
        await store.get_json("k")
    await store.set_json("k", 2)  # conditioned on the expired version, which is still there
    await store.delete("k")
    assert await store_factory().info("k") is None


@pytest.mark.parametrize("cache_mode", MODES)
async def test_set_many_with_ttl(store_factory: Factory, cache_mode: str) -> None:
    clock = Clock()
    store = store_factory(cache_mode=cache_mode, clock=clock)
    await store.set_many({"a": 1, "b": 2}, ttl=3)
    await store.set_many({"c": 3})
    clock.now += 3
    assert await store.get_many(["a", "b", "c"]) == {"c": 3}
    await store.sync()
    assert await store_factory(clock=clock).list_keys() == ["c"]


async def test_set_file_with_ttl(store_factory: Factory, tmp_path: Path) -> None:
    clock = Clock()
    store = store_factory(clock=clock)
    source = tmp_path / "in.bin"
    source.write_bytes(b"x" * 1000)
    await store.set_file("f", source, ttl=2)
    await store.set_binary("g", iter([b"a", b"b"]), ttl=2)  # a stream
    assert await store.get_binary("f") == b"x" * 1000
    clock.now += 2
    assert await store.list_keys() == []
    assert await store.exists("g") is False


@pytest.mark.parametrize(
    "metadata",
    [{EXPIRES_METADATA: "1"}, {"AbdExpires": f"{T0:.3f}"}, {"ok": "1", "ABDEXPIRES": "x"}],
)
async def test_the_reserved_name_is_refused_in_metadata(
    store_factory: Factory, metadata: dict[str, str], tmp_path: Path
) -> None:
    store = store_factory()
    source = tmp_path / "in.bin"
    source.write_bytes(b"x")
    writes = [
        store.set_json("k", 1, metadata=metadata),
        store.set_binary("k", b"x", metadata=metadata),
        store.set_file("k", source, metadata=metadata),
    ]
    for write in writes:
        with pytest.raises(InvalidKeyError, match="reserved for the expiry"):
            await write
    assert await store.list_keys() == []


@pytest.mark.parametrize(
    "ttl", [0, -1, 0.0, -0.5, math.inf, math.nan, timedelta(0), timedelta(seconds=-1), "5", True]
)
async def test_bad_ttls_are_refused_before_any_io(store_factory: Factory, ttl: Any) -> None:
    store = store_factory()
    for write in (
        store.set_json("k", 1, ttl=ttl),
        store.set_binary("k", b"x", ttl=ttl),
        store.set_many({"k": 1}, ttl=ttl),
        store.update_json("k", lambda v: v, default=0, ttl=ttl),
    ):
        with pytest.raises(InvalidTTLError):
            await write
    assert await store.list_keys() == []


async def test_a_foreign_value_of_the_reserved_name_never_expires(store_factory: Factory) -> None:
    store = store_factory(clock=Clock())
    await store.adapter.put(
        store.container_name, "k", b"1", metadata={EXPIRES_METADATA: "tomorrow"}
    )
    assert await store.get_json("k") == 1
    assert await store.list_keys() == ["k"]
    info = await store.info("k")
    assert info is not None and info.expires is None and dict(info.metadata) == {}


async def test_folders_of_expired_keys_and_the_level_below(store_factory: Factory) -> None:
    clock = Clock()
    store = store_factory(clock=clock)
    await store.set_json("d/old", 1, ttl=1)
    await store.set_json("d/sub/x", 1, ttl=1)
    await store.set_json("d/new", 2)
    await store.set_json("e/old", 3, ttl=1)
    clock.now += 1
    assert await store.list_keys("d/", delimiter="/") == ["d/new", "d/sub/"]
    # A folder is shown while it holds any stored key (documented); sweeping removes it.
    assert await store.list_keys(delimiter="/") == ["d/", "e/"]
    assert await store.sweep_expired() == 3
    assert await store.list_keys(delimiter="/") == ["d/"]
    assert await store.list_keys() == ["d/new"]


# ------------------------------------------------------------------- sweep_expired


async def test_sweep_deletes_the_expired_values_and_counts_them(store_factory: Factory) -> None:
    clock = Clock()
    store = store_factory(clock=clock)
    await store.set_many({f"s/{i}": i for i in range(5)}, ttl=1)
    await store.set_many({f"s/{i}": i for i in range(5, 8)}, ttl=100)
    await store.set_json("t/0", 0, ttl=1)
    await store.set_json("keep", 1)
    assert await store.sweep_expired() == 0
    clock.now += 1
    assert await store.sweep_expired("s/", concurrency=2) == 5
    raw = sorted([name async for name in store.adapter.list_names(store.container_name)])
    assert raw == ["keep", "s/5", "s/6", "s/7", "t/0"]
    assert await store.sweep_expired() == 1
    assert await store.sweep_expired() == 0
    with pytest.raises(ValueError):
        await store.sweep_expired(concurrency=0)


class RewritesBefore:
    """Wraps an adapter: ``hook`` runs (once) just before the named operation's answer
    reaches the store, so another store's write lands between two steps of a sweep."""

    def __init__(self, adapter: Adapter, operation: str, hook: Callable[[], Any]) -> None:
        self._adapter, self._operation = adapter, operation
        self._hook: Callable[[], Any] | None = hook

    def __getattr__(self, name: str) -> Any:
        return getattr(self._adapter, name)

    async def _fire(self, name: str) -> None:
        if name == self._operation and self._hook is not None:
            hook, self._hook = self._hook, None
            await hook()

    async def head(self, container: str, key: str) -> BlobInfo | None:
        info = await self._adapter.head(container, key)
        if key == "k":
            await self._fire("head")
        return info

    def list_metadata(
        self, container: str, prefix: str = "", *, delimiter: str | None = None
    ) -> AsyncIterator[tuple[str, Mapping[str, str]]]:
        return self._listed(container, prefix, delimiter)

    async def _listed(
        self, container: str, prefix: str, delimiter: str | None
    ) -> AsyncIterator[tuple[str, Mapping[str, str]]]:
        entries = [
            entry
            async for entry in self._adapter.list_metadata(  # type: ignore[attr-defined]
                container, prefix, delimiter=delimiter
            )
        ]
        await self._fire("list")
        for entry in entries:
            yield entry

    async def get(self, container: str, key: str) -> Any:
        return await self._adapter.get(container, key)

    async def put(self, *args: Any, **kwargs: Any) -> str:
        return await self._adapter.put(*args, **kwargs)

    async def delete(self, *args: Any, **kwargs: Any) -> None:
        await self._adapter.delete(*args, **kwargs)

    def list(self, container: str, prefix: str = "") -> AsyncIterator[BlobInfo]:
        return self._adapter.list(container, prefix)

    def list_names(
        self, container: str, prefix: str = "", *, delimiter: str | None = None
    ) -> AsyncIterator[str]:
        return self._adapter.list_names(container, prefix, delimiter=delimiter)

    def validate_container(self, container: str) -> str:
        return self._adapter.validate_container(container)

    async def close(self) -> None:
        await self._adapter.close()


@pytest.mark.parametrize("between", ["list", "head"])
async def test_a_value_rewritten_during_a_sweep_survives(
    store_factory: Factory, backend: Callable[[], Adapter], container: str, between: str
) -> None:
    """Another store rewrites the key after the sweep saw it expired: the listing (then the
    head sees it alive) or the head (then the conditional delete misses): it stays."""
    clock = Clock()
    writer = store_factory(clock=clock)
    await writer.set_json("k", "old", ttl=1)
    await writer.set_json("other", "old", ttl=1)
    clock.now += 1

    async def rewrite() -> None:
        await writer.set_json("k", "new")

    sweeper = AsyncBlobStore(
        RewritesBefore(backend(), between, rewrite),
        container,
        clock=clock,
    )
    try:
        assert await sweeper.sweep_expired(concurrency=1) == 1  # "other" only
    finally:
        await sweeper.close()
    assert await writer.get_json("k") == "new"
    assert await writer.list_keys() == ["k"]


async def test_sweep_leaves_keys_with_pending_changes_alone(store_factory: Factory) -> None:
    clock = Clock()
    store = store_factory(cache_mode="write_back", concurrency_mode="etag", clock=clock)
    await store.set_json("k", 1, ttl=1)
    await store.sync()
    assert await store.get_json("k") == 1
    clock.now += 1
    await store.set_json("k", 2)  # pending: replaces the expired value at sync
    assert await store.sweep_expired() == 0
    assert (await store.sync("raise")).written == ["k"]
    assert await store_factory().get_json("k") == 2


async def test_an_etag_store_that_swept_a_key_creates_it_anew(store_factory: Factory) -> None:
    clock = Clock()
    store = store_factory(concurrency_mode="etag", cache_mode="write_through", clock=clock)
    await store.set_json("k", 1, ttl=1)
    clock.now += 1
    assert await store.sweep_expired() == 1
    await store.set_json("k", 2)  # remembered as deleted: a create, which succeeds
    assert await store_factory().get_json("k") == 2


# --------------------------------------------------------------- wide inputs, local


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    ttl=st.one_of(
        st.floats(allow_nan=True, allow_infinity=True),
        st.integers(min_value=-(2**80), max_value=2**1100),
        st.timedeltas(),
    ),
    now=st.floats(min_value=0, max_value=4e9),
)
def test_ttls_are_accepted_exactly_when_they_are_a_positive_duration(ttl: Any, now: float) -> None:
    if isinstance(ttl, timedelta):
        seconds = ttl.total_seconds()
    else:
        try:
            seconds = float(ttl)
        except OverflowError:
            seconds = math.inf
    valid = math.isfinite(seconds) and seconds > 0 and now + seconds <= MAX_EXPIRY
    if not valid:
        with pytest.raises(InvalidTTLError):
            expires_at(now, ttl)
        return
    assert ttl_seconds(ttl) == seconds
    when = expires_at(now, ttl)
    assert when == now + seconds


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    ttl=st.one_of(
        st.floats(min_value=1e-6, max_value=1e9),
        st.integers(min_value=1, max_value=10**10),
        st.timedeltas(min_value=timedelta(microseconds=1), max_value=timedelta(days=10**5)),
    ),
)
async def test_a_value_lives_until_its_ttl_and_not_after(ttl: Any) -> None:
    clock = Clock()
    seconds = ttl_seconds(ttl)
    async with AsyncBlobStore(MemoryAdapter(), "c", cache_mode="write_through", clock=clock) as s:
        await s.set_json("k", 1, ttl=ttl)
        info = await s.info("k")
        raw = await s.adapter.head("c", "k")
        assert info is not None and info.expires is not None and raw is not None
        stored = float(raw.metadata[EXPIRES_METADATA])  # the stored form: milliseconds
        assert 0 <= stored - (T0 + seconds) <= 0.001 + 1e-6  # rounded up to milliseconds
        assert abs(info.expires.timestamp() - stored) <= 1e-6
        assert stored > T0
        assert await s.get_json("k") == 1
        clock.now = stored - 0.001
        if clock.now >= T0:
            assert await s.exists("k") is (clock.now < stored)
        clock.now = stored
        assert await s.exists("k") is False
        assert await s.list_keys() == []


async def test_local_listing_reads_expiry_from_sidecar_records(tmp_path: Path) -> None:
    clock = Clock()
    adapter = LocalFileAdapter(tmp_path / "root", _metadata_store="sidecar")
    async with AsyncBlobStore(adapter, "c", clock=clock) as store:
        await store.set_json("a/x", 1, ttl=1)
        await store.set_json("a/y", 2)
        await store.set_json("b", 3, ttl=1)
        assert adapter.metadata_store == "sidecar"
        assert await store.list_keys() == ["a/x", "a/y", "b"]
        clock.now += 1
        assert await store.list_keys() == ["a/y"]
        assert await store.list_keys("a/", delimiter="/") == ["a/y"]
        assert await store.sweep_expired() == 2


async def test_an_adapter_without_list_metadata_is_asked_head(tmp_path: Path) -> None:
    class NamesOnly:
        """A memory adapter without the optional list_metadata."""

        def __init__(self) -> None:
            self.inner = MemoryAdapter()
            self.heads = 0

        def __getattr__(self, name: str) -> Any:
            if name == "list_metadata":
                raise AttributeError(name)
            return getattr(self.inner, name)

        async def head(self, container: str, key: str) -> BlobInfo | None:
            self.heads += 1
            return await self.inner.head(container, key)

    adapter = NamesOnly()
    clock = Clock()
    store = AsyncBlobStore(adapter, "c", clock=clock)
    await store.set_json("a", 1, ttl=1)
    await store.set_json("b", 2)
    clock.now += 1
    assert await store.list_keys() == ["b"]
    assert adapter.heads == 2
    assert await store.sweep_expired() == 1
    await store.close()


def test_blob_store_mirrors_ttl_and_sweep(tmp_path: Path) -> None:
    clock = Clock()
    with BlobStore(LocalFileAdapter(tmp_path), "c", clock=clock) as store:
        store.set_json("a", 1, ttl=1)
        store.set_binary("b", b"x", ttl=timedelta(seconds=1))
        store.set_file("f", __file__, ttl=1)
        store.set_many({"m": 1}, ttl=1)
        store.update_json("u", lambda v: v, default=0, ttl=1)
        store.set_json("keep", 1)
        assert store.list_keys() == ["a", "b", "f", "keep", "m", "u"]
        clock.now += 1
        assert store.list_keys() == ["keep"]
        assert store.sweep_expired() == 5
