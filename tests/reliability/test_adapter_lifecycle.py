"""The Azure adapter's session lifecycle: close is final, loops do not leak sessions, and a
cancelled parallel transfer leaves no coroutine behind.

Live Azurite; the ScriptedProxy holds chosen requests so the interleavings are exact.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import threading
import time
import warnings
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest

from asyncblobdict import AzureBlobAdapter, StorageError
from asyncblobdict.adapters.azure.aiohttp_transport import AiohttpTransport
from tests.reliability.fault_proxy import ScriptedProxy
from tests.reliability.support import AzuriteInfo, azure_fast_options

pytestmark = pytest.mark.azure


def container_name(prefix: str) -> str:
    return f"{prefix}{time.time_ns() // 1000}"


def session_of(adapter: AzureBlobAdapter) -> aiohttp.ClientSession | None:
    """The aiohttp session the adapter's transport holds (None when it has none)."""
    transport = adapter._client.transport
    assert isinstance(transport, AiohttpTransport)
    return transport._session


@contextlib.contextmanager
def warnings_seen() -> Iterator[list[warnings.WarningMessage]]:
    """Every warning raised inside (and by what the garbage collector finalises at its end).

    Used inside the test body: pytest records warnings per phase itself, so a fixture's
    catch_warnings would not see the ones raised while the test runs.
    """
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        yield seen
        gc.collect()


def unclosed(seen: list[warnings.WarningMessage]) -> list[str]:
    return [str(w.message) for w in seen if "Unclosed" in str(w.message)]


def never_awaited(seen: list[warnings.WarningMessage]) -> list[str]:
    return [str(w.message) for w in seen if "never awaited" in str(w.message)]


# ------------------------------------------------------------------------- close


async def test_closed_adapter_refuses_requests(rel_azurite: AzuriteInfo) -> None:
    adapter = rel_azurite.new_adapter()
    container = container_name("closed")
    await adapter.put(container, "k", b"v")
    await adapter.close()
    await adapter.close()  # twice is fine
    with pytest.raises(StorageError, match="the adapter is closed"):
        await adapter.get(container, "k")
    with pytest.raises(StorageError, match="the adapter is closed"):
        await adapter.put(container, "k", b"w")
    with pytest.raises(StorageError, match="the adapter is closed"):
        [info async for info in adapter.list(container)]
    assert session_of(adapter) is None  # nothing was re-opened


async def test_requests_running_at_close_do_not_reopen_the_session(
    rel_azurite: AzuriteInfo,
) -> None:
    proxy = ScriptedProxy()
    await proxy.start(rel_azurite.endpoint)
    container = container_name("inflight")
    direct = rel_azurite.new_adapter()
    await direct.put(container, "k", b"v")
    held = 0
    all_held = asyncio.Event()

    async def hold() -> None:
        nonlocal held
        held += 1
        if held == 4:
            all_held.set()
        await asyncio.sleep(3600)

    proxy.rule("GET", has=f"/{container}/k", before=hold, times=4)
    adapter = rel_azurite.new_adapter(proxy.url("/devstoreaccount1"), **azure_fast_options(30))
    try:
        with warnings_seen() as seen:
            gets = [asyncio.ensure_future(adapter.get(container, "k")) for _ in range(4)]
            await asyncio.wait_for(all_held.wait(), 30)
            await adapter.close()
            results = await asyncio.gather(*gets, return_exceptions=True)
            assert all(isinstance(r, StorageError) for r in results), results
            assert all("the adapter is closed" in str(r) for r in results), results
            session = session_of(adapter)
            assert session is None, "a request re-opened the closed adapter"
            del gets, results
        assert unclosed(seen) == []
    finally:
        await adapter.close()
        await direct.close()
        await proxy.stop()


# ------------------------------------------------------------------------- event loops


def test_a_session_is_closed_when_its_loop_ends_or_the_adapter_moves(
    rel_azurite: AzuriteInfo,
) -> None:
    """asyncio.run twice, then a hand-made loop closed without shutdown_asyncgens, then
    asyncio.run again: every session the adapter made ends up closed, none is abandoned."""
    adapter = rel_azurite.new_adapter()
    container = container_name("loops")
    sessions: list[Any] = []

    async def use() -> None:
        await adapter.put(container, "k", b"v")
        sessions.append(session_of(adapter))

    with warnings_seen() as seen:
        asyncio.run(use())
        asyncio.run(use())
        loop = asyncio.new_event_loop()
        loop.run_until_complete(use())
        loop.close()
        asyncio.run(use())
        asyncio.run(adapter.close())
        assert len({id(s) for s in sessions}) == 4
        assert [s.closed for s in sessions] == [True] * 4
        sessions.clear()
    assert unclosed(seen) == []


def test_a_session_on_a_loop_in_another_thread_is_closed_there(
    rel_azurite: AzuriteInfo,
) -> None:
    adapter = rel_azurite.new_adapter()
    container = container_name("thread")
    other = asyncio.new_event_loop()
    thread = threading.Thread(target=other.run_forever, daemon=True)
    thread.start()
    try:
        with warnings_seen() as seen:
            put = adapter.put(container, "k", b"v")
            asyncio.run_coroutine_threadsafe(put, other).result(30)
            first = session_of(adapter)
            assert first is not None and not first.closed

            async def here() -> None:
                assert (await adapter.get(container, "k"))[0] == b"v"
                await adapter.close()

            asyncio.run(here())
            assert first.closed
            del first
        assert unclosed(seen) == []
    finally:
        other.call_soon_threadsafe(other.stop)
        thread.join(30)
        other.close()


# ------------------------------------------------------------------------- cancellation


@pytest.mark.parametrize("operation", ["ranged get", "block upload"])
async def test_cancelled_parallel_transfer_leaves_no_unawaited_coroutine(
    rel_azurite: AzuriteInfo, operation: str
) -> None:
    """32 ranges or blocks, 2 at a time; the first ones stall and the call is cancelled:
    the 30 that never started must not leave 'coroutine ... was never awaited' behind."""
    proxy = ScriptedProxy()
    await proxy.start(rel_azurite.endpoint)
    container = container_name("cancel")
    direct = rel_azurite.new_adapter()
    data = bytes(range(256)) * 128  # 32 KiB
    await direct.put(container, "big", data)
    stalled = asyncio.Event()

    async def stall() -> None:
        stalled.set()
        await asyncio.sleep(3600)

    if operation == "ranged get":
        proxy.rule("GET", has=f"/{container}/big")  # the first range passes
        proxy.rule("GET", has=f"/{container}/big", before=stall, times=None)
    else:
        proxy.rule("PUT", has="comp=block&", before=stall, times=None)
    adapter = rel_azurite.new_adapter(
        proxy.url("/devstoreaccount1"),
        **azure_fast_options(
            60,
            read_chunk_size=1024,
            single_put_threshold=1024,
            block_size=1024,
            max_concurrency=2,
        ),
    )
    try:
        with warnings_seen() as seen:
            if operation == "ranged get":
                task: asyncio.Future[Any] = asyncio.ensure_future(adapter.get(container, "big"))
            else:
                task = asyncio.ensure_future(adapter.put(container, "big", data[::-1]))
            await asyncio.wait_for(stalled.wait(), 30)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            del task
            for _ in range(10):  # let the loop run the callbacks that drop the last references
                await asyncio.sleep(0)
        assert never_awaited(seen) == []
        assert (await direct.get(container, "big"))[0] == data
    finally:
        await adapter.close()
        await direct.close()
        await proxy.stop()
