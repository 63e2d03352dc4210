"""Counters under faults: every reported increment happened exactly once (counter_history).

N stores (each with its own adapter) increment one counter M times each with update_json.
On Azure they talk to Azurite through the fault proxy (503s that never arrive, 500s after
the write landed, resets before and after forwarding, answers held past the timeout,
truncated bodies); the final count is read from Azurite directly. The same checker runs on
the memory and local backends without faults.

Sizes: ``ABD_COUNTER_STORES`` (4), ``ABD_COUNTER_INCREMENTS`` per store (10, scaled by
``ABD_RELIABILITY_SCALE``), ``ABD_COUNTER_RATE`` scales the fault rates, ``ABD_SEED``.
"""

from __future__ import annotations

import os
import random
import time
from pathlib import Path

import pytest

from asyncblobdict import AsyncBlobStore, LocalFileAdapter, MemoryAdapter
from tests.reliability.counter_history import run_counter_history
from tests.reliability.fault_proxy import FAULT_KINDS, FaultProxy, FaultRates
from tests.reliability.support import AzuriteInfo, SecretWatch, azure_fast_options, record, size

RATES = FaultRates(
    error_503=0.05, error_500=0.03, delay=0.01, reset_before=0.04, reset_after=0.04, truncate=0.03
)


def shape() -> tuple[int, int]:
    return size("ABD_COUNTER_STORES", 4, scaled=False), size("ABD_COUNTER_INCREMENTS", 10)


@pytest.mark.azure
async def test_counter_history_on_azure_under_faults(
    rel_azurite: AzuriteInfo, secret_watch: SecretWatch
) -> None:
    stores_n, increments = shape()
    seed = int(os.environ.get("ABD_SEED", "0")) or random.randrange(2**32)
    timeout = 0.5
    rates = RATES.scaled(float(os.environ.get("ABD_COUNTER_RATE", "1")))
    rates.delay_seconds = timeout + 0.5
    proxy = FaultProxy(rates, seed=seed)
    await proxy.start(rel_azurite.endpoint)
    container = f"history{int(time.time() * 1000)}"
    direct = rel_azurite.new_adapter()
    stores = [
        AsyncBlobStore(
            rel_azurite.new_adapter(proxy.url("/devstoreaccount1"), **azure_fast_options(timeout)),
            container,
            concurrency_mode="etag",
        )
        for _ in range(stores_n)
    ]

    async def read_final() -> int:
        proxy.rates = FaultRates()
        await proxy.quiesce()
        return int((await direct.get(container, "counter"))[0])

    try:
        history = await run_counter_history(stores, "counter", increments, read_final=read_final)
    finally:
        for store in stores:
            await store.close()
        await direct.close()
        await proxy.stop()
    faults = {k: proxy.counts.get(k, 0) for k in FAULT_KINDS}
    record(
        "counter_history_azure",
        {**history.summary(), "faults": faults, "requests": proxy.counts["requests"], "seed": seed},
    )
    history.check()


@pytest.mark.parametrize("backend", ["memory", "local"])
async def test_counter_history_on_memory_and_local(backend: str, tmp_path: Path) -> None:
    stores_n, increments = shape()
    shared = MemoryAdapter()
    stores = [
        AsyncBlobStore(
            shared if backend == "memory" else LocalFileAdapter(tmp_path),
            "c",
            concurrency_mode="etag",
        )
        for _ in range(stores_n)
    ]
    reader = AsyncBlobStore(shared if backend == "memory" else LocalFileAdapter(tmp_path), "c")

    async def read_final() -> int:
        return int(await reader.get_json("counter"))

    try:
        history = await run_counter_history(stores, "counter", increments, read_final=read_final)
    finally:
        for store in stores:
            await store.close()
    await reader.close()
    history.check()
    assert history.raised == 0 and history.final == stores_n * increments
