"""The Azure adapter's session lifecycle: close is final, loops do not leak sessions, and a
cancelled parallel transfer leaves no coroutine behind.

Live Azurite; the ScriptedProxy holds chosen requests so the interleavings are exact.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
import warnings
from collections.abc import Iterator

import pytest
from conftest import AzuriteInfo, azure_fast_options
from fault_proxy import ScriptedProxy

pytestmark = pytest.mark.azure


def container_name(prefix: str) -> str:
    return f"{prefix}{time.time_ns() // 1000}"


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
                task = asyncio.ensure_future(adapter.get(container, "big"))
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
