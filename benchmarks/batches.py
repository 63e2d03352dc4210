"""Batch calls against the same calls awaited one by one, on a private Azurite.

    python benchmarks/batches.py [--keys 64] [--rounds 7]

Each round writes and reads ``--keys`` small JSON values both ways (in alternating order, so
neither always runs on a warmer server) and reports the per-round ratio; the verdict uses the
median and the whole [min-max] spread of the paired ratios (benchmarks/README.md).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
import uuid

from azurite import Azurite  # benchmarks/azurite.py: this script's folder is on sys.path

from asyncblobdict import AsyncBlobStore
from asyncblobdict.adapters.azure import AzureBlobAdapter


async def one_round(conn: str, keys: int, batch_first: bool) -> tuple[float, float, float, float]:
    adapter = AzureBlobAdapter.from_connection_string(conn)
    async with AsyncBlobStore(adapter, "b" + uuid.uuid4().hex[:20]) as store:
        values = {f"k/{i:03d}": {"i": i, "pad": "x" * 100} for i in range(keys)}
        await store.set_json("warm", 0)  # the container exists and the pool is warm

        async def sequential() -> tuple[float, float]:
            start = time.perf_counter()
            for key, value in values.items():
                await store.set_json(key, value)
            middle = time.perf_counter()
            for key in values:
                await store.get_json(key)
            return middle - start, time.perf_counter() - middle

        async def batched() -> tuple[float, float]:
            start = time.perf_counter()
            await store.set_many(values)
            middle = time.perf_counter()
            await store.get_many(values)
            return middle - start, time.perf_counter() - middle

        if batch_first:
            b_set, b_get = await batched()
            s_set, s_get = await sequential()
        else:
            s_set, s_get = await sequential()
            b_set, b_get = await batched()
    return s_set, b_set, s_get, b_get


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--keys", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    load_start = os.getloadavg()
    with Azurite() as server:
        rounds = [
            asyncio.run(one_round(server.connection_string, args.keys, i % 2 == 1))
            for i in range(args.rounds)
        ]
    load_end = os.getloadavg()
    print(f"{args.keys} keys, {args.rounds} rounds, load {load_start[0]:.2f} -> {load_end[0]:.2f}")
    for name, pick in (("set_many vs set_json", (0, 1)), ("get_many vs get_json", (2, 3))):
        ratios = [r[pick[0]] / r[pick[1]] for r in rounds]
        one_by_one = statistics.median(r[pick[0]] for r in rounds) * 1000
        batch = statistics.median(r[pick[1]] for r in rounds) * 1000
        print(
            f"{name}: one by one {one_by_one:.1f} ms, batch {batch:.1f} ms, speed-up "
            f"{statistics.median(ratios):.1f}x [{min(ratios):.1f}-{max(ratios):.1f}]"
        )


if __name__ == "__main__":
    main()
