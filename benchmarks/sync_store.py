"""The cost per call of BlobStore (synchronous) against AsyncBlobStore: N get_json per round.

    python benchmarks/sync_store.py [--calls 2000] [--rounds 9] [--root DIR]

Each round times ``--calls`` sequential ``get_json`` of one small value through each store,
in alternating order; the stores are built once per backend (memory, and local files under
``--root``, default a temporary folder), both in CacheMode.NONE so every call reaches the
adapter. Printed: the median µs per call of each, the extra µs per call of the synchronous
store, and the median [min-max] of the per-round ratios sync/async.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable

from asyncblobdict import (
    AsyncBlobStore,
    BlobStore,
    LocalFileAdapter,
    MemoryAdapter,
)
from asyncblobdict.adapters.base import Adapter

VALUE = {"id": 12345, "name": "alice", "tags": ["a", "b", "c"], "score": 3.75}


def measure(
    make_adapter: Callable[[], Adapter], calls: int, rounds: int
) -> list[tuple[float, float]]:
    """Per round: (async µs per call, sync µs per call)."""
    loop = asyncio.new_event_loop()
    astore = loop.run_until_complete(_open_async(make_adapter()))
    sstore = BlobStore(make_adapter(), "bench")

    async def async_round() -> float:
        start = time.perf_counter()
        for _ in range(calls):
            await astore.get_json("k")
        return time.perf_counter() - start

    def sync_round() -> float:
        start = time.perf_counter()
        for _ in range(calls):
            sstore.get_json("k")
        return time.perf_counter() - start

    results: list[tuple[float, float]] = []
    try:
        loop.run_until_complete(async_round())  # warm both (first reads, caches, threads)
        sync_round()
        for i in range(rounds):
            if i % 2:
                s = sync_round()
                a = loop.run_until_complete(async_round())
            else:
                a = loop.run_until_complete(async_round())
                s = sync_round()
            results.append((a / calls * 1e6, s / calls * 1e6))
    finally:
        sstore.close()
        loop.run_until_complete(astore.close())
        loop.close()
    return results


async def _open_async(adapter: Adapter) -> AsyncBlobStore:
    store = AsyncBlobStore(adapter, "bench")
    await store.set_json("k", VALUE)
    return store


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--root", help="folder for the local backend (default: a temp folder)")
    args = parser.parse_args()
    if args.rounds < 7:
        parser.error("--rounds must be at least 7")
    with tempfile.TemporaryDirectory(dir=args.root) as root:
        memory = MemoryAdapter()  # one adapter for both stores: both read the same value
        backends: dict[str, Callable[[], Adapter]] = {
            "memory": lambda: memory,
            "local": lambda: LocalFileAdapter(root, durable=False),
        }
        load = os.getloadavg()[0]
        print(
            f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {platform.platform()}, "
            f"{os.cpu_count()} CPUs, Python {platform.python_version()}, load {load:.2f}; "
            f"{args.calls} get_json per round, {args.rounds} rounds, temp folder {root}"
        )
        print()
        print("| backend | async µs/call | sync µs/call | extra µs/call | sync/async |")
        print("|---|---|---|---|---|")
        for name, make in backends.items():
            rounds = measure(make, args.calls, args.rounds)
            a = statistics.median(r[0] for r in rounds)
            s = statistics.median(r[1] for r in rounds)
            ratios = [r[1] / r[0] for r in rounds]
            print(
                f"| {name} | {a:.1f} | {s:.1f} | {s - a:.1f} | {statistics.median(ratios):.2f} "
                f"[{min(ratios):.2f}-{max(ratios):.2f}] |"
            )


if __name__ == "__main__":
    main()
