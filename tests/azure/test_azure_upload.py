"""Streamed uploads on Azurite (issue 11): blocks staged but never committed when the stream
fails, is cancelled or its condition fails early; at most max_concurrency blocks are held."""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Callable

import pytest

from asyncblobdict import ConcurrencyError
from asyncblobdict.adapters.azure import AzureBlobAdapter
from asyncblobdict.adapters.azure.aiohttp_transport import AiohttpTransport
from asyncblobdict.adapters.azure.transport import HttpRequest, HttpResponse
from asyncblobdict.adapters.base import CREATE, Precondition, Update

pytestmark = pytest.mark.azure

Factory = Callable[..., AzureBlobAdapter]
KiB = 1024
BLOCK = 64 * KiB
# Small blocks, two in flight: a stream of a few hundred KiB is staged as several blocks.
SMALL = {"block_size": BLOCK, "single_put_threshold": BLOCK, "max_concurrency": 2}


class Boom(Exception):
    pass


class Source:
    """A stream of ``blocks`` blocks in 16 KiB chunks; counts what was taken from it."""

    def __init__(self, blocks: int, *, fail_after: int | None = None) -> None:
        self.size = blocks * BLOCK
        self.taken = 0
        self.fail_after = fail_after
        self.stalled = asyncio.Event()
        self.resume = asyncio.Event()

    async def chunks(self) -> AsyncIterator[bytes]:
        for pos in range(0, self.size, 16 * KiB):
            if self.fail_after is not None and pos >= self.fail_after:
                self.stalled.set()
                await self.resume.wait()  # cancelled here, or goes on once resumed
                if self.fail_after is not None:
                    raise Boom
            self.taken += 16 * KiB
            yield bytes([pos // (16 * KiB) % 256]) * (16 * KiB)


async def _uncommitted(adapter: AzureBlobAdapter, container: str, key: str) -> int:
    """How many uncommitted blocks the key has (staged by Put Block, never committed)."""
    resp = await adapter._send(
        "GET",
        container,
        key,
        action="get block list",
        query=[("comp", "blocklist"), ("blocklisttype", "uncommitted")],
    )
    if resp.status == 404:
        return 0
    assert resp.status == 200, resp.status
    return len(ET.fromstring(resp.body).findall("./UncommittedBlocks/Block"))


def _put_block_tasks() -> list[asyncio.Task[object]]:
    return [t for t in asyncio.all_tasks() if not t.done() and "_put_block" in repr(t.get_coro())]


async def test_a_stream_failing_after_staged_blocks_commits_nothing(
    azure_adapter_factory: Factory, azure_container: str
) -> None:
    adapter = azure_adapter_factory(**SMALL)
    old = await adapter.put(azure_container, "k", b"the old value")
    for key in ("k", "new"):
        source = Source(16, fail_after=5 * BLOCK)
        source.resume.set()
        with pytest.raises(Boom):
            await adapter.put_stream(azure_container, key, source.chunks())
        assert source.taken == 5 * BLOCK
        assert await _uncommitted(adapter, azure_container, key) >= 3  # blocks were staged
        assert _put_block_tasks() == []
    data, info = await adapter.get(azure_container, "k")
    assert (data, info.etag) == (b"the old value", old)
    assert await adapter.head(azure_container, "new") is None


async def test_cancelling_mid_upload_leaves_no_blob(
    azure_adapter_factory: Factory, azure_container: str
) -> None:
    adapter = azure_adapter_factory(**SMALL)
    source = Source(16, fail_after=6 * BLOCK)
    task = asyncio.ensure_future(adapter.put_stream(azure_container, "k", source.chunks()))
    await source.stalled.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert _put_block_tasks() == []  # no block upload left running
    assert await adapter.head(azure_container, "k") is None
    # Staged blocks stay uncommitted (the service discards them); nothing is visible.
    assert await _uncommitted(adapter, azure_container, "k") >= 1
    assert [info.key async for info in adapter.list(azure_container)] == []


@pytest.mark.parametrize("case", ["create over a value", "stale etag", "etag of a missing key"])
async def test_a_failing_condition_stops_before_staging_any_block(
    azure_adapter_factory: Factory, azure_container: str, case: str
) -> None:
    adapter = azure_adapter_factory(**SMALL)
    etag = await adapter.put(azure_container, "k", b"stored")
    await adapter.put(azure_container, "k", b"stored again")  # etag is stale now
    cases: dict[str, tuple[str, Precondition]] = {
        "create over a value": ("k", CREATE),
        "stale etag": ("k", Update(etag)),
        "etag of a missing key": ("missing", Update(etag)),
    }
    key, condition = cases[case]
    source = Source(16)
    with pytest.raises(ConcurrencyError):
        await adapter.put_stream(azure_container, key, source.chunks(), condition=condition)
    # The first block was read (it decides between one Put Blob and blocks), no more,
    # and nothing was sent.
    assert source.taken == BLOCK
    assert await _uncommitted(adapter, azure_container, key) == 0
    assert (await adapter.get(azure_container, "k"))[0] == b"stored again"


async def test_conditions_that_hold_are_still_checked_on_commit(
    azure_adapter_factory: Factory, azure_container: str
) -> None:
    adapter = azure_adapter_factory(**SMALL)
    created = await adapter.put_stream(azure_container, "k", Source(4).chunks(), condition=CREATE)
    updated = await adapter.put_stream(
        azure_container, "k", Source(5).chunks(), condition=Update(created)
    )
    data, info = await adapter.get(azure_container, "k")
    assert (len(data), info.etag) == (5 * BLOCK, updated)

    # A writer that lands between the early check and the commit still loses at the commit.
    writer = azure_adapter_factory()
    source = Source(6, fail_after=3 * BLOCK)
    task = asyncio.ensure_future(
        adapter.put_stream(azure_container, "k", source.chunks(), condition=Update(updated))
    )
    await source.stalled.wait()  # past the early check: blocks are being staged
    await writer.put(azure_container, "k", b"someone else")
    source.fail_after = None
    source.resume.set()
    with pytest.raises(ConcurrencyError):
        await task
    assert (await adapter.get(azure_container, "k"))[0] == b"someone else"


class GatedTransport:
    """Holds every Put Block at a gate until it opens; counts the ones waiting there."""

    def __init__(self) -> None:
        self.inner = AiohttpTransport()
        self.gate = asyncio.Event()
        self.waiting = 0
        self.most_waiting = 0
        self.arrived = asyncio.Event()

    async def send(self, request: HttpRequest) -> HttpResponse:
        if "comp=block&" in request.url:
            self.waiting += 1
            self.most_waiting = max(self.most_waiting, self.waiting)
            self.arrived.set()
            await self.gate.wait()
            self.waiting -= 1
        return await self.inner.send(request)

    async def close(self) -> None:
        await self.inner.close()


async def test_blocks_held_are_bounded_by_max_concurrency(
    azurite_connection_string: str, azure_container: str
) -> None:
    transport = GatedTransport()
    adapter = AzureBlobAdapter.from_connection_string(
        azurite_connection_string, transport=transport, **SMALL
    )
    try:
        source = Source(32)
        task = asyncio.ensure_future(adapter.put_stream(azure_container, "k", source.chunks()))
        while transport.waiting < 2:
            transport.arrived.clear()
            await transport.arrived.wait()
        # Both Put Blocks allowed are stuck: no further block is filled, however long the
        # event loop runs on.
        for _ in range(200):
            await asyncio.sleep(0)
        assert not task.done()
        assert source.taken == 2 * BLOCK
        transport.gate.set()
        await task
        assert transport.most_waiting == 2
        data, _ = await adapter.get(azure_container, "k")
        assert data == b"".join([c async for c in Source(32).chunks()])
    finally:
        await adapter.close()
