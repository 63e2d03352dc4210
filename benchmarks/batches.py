"""Batch calls against the same calls awaited one by one, on a private Azurite.

    python benchmarks/batches.py [--keys 64] [--rounds 7] [--latency-ms 20]

Each round writes and reads ``--keys`` small JSON values both ways (in alternating order, so
neither always runs on a warmer server) and reports the per-round ratio; the verdict uses the
median and the whole [min-max] spread of the paired ratios (benchmarks/README.md).

``--latency-ms N`` puts delay_proxy.py (in its own process) between the client and Azurite,
adding N ms to every request's round trip, as a network would: on one machine a request is
mostly CPU shared with Azurite, so without it a batch has little idle time to overlap.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

from azurite import ACCOUNT, KEY, Azurite  # this script's folder is on sys.path

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
    parser.add_argument("--latency-ms", type=float, default=0.0, help="added round-trip time")
    args = parser.parse_args()
    load_start = os.getloadavg()
    proxy = None
    with Azurite() as server:
        conn = server.connection_string
        if args.latency_ms > 0:
            proxy = subprocess.Popen(
                [
                    sys.executable,
                    str(Path(__file__).with_name("delay_proxy.py")),
                    str(server.port),
                    str(args.latency_ms),
                ],
                stdout=subprocess.PIPE,
                text=True,
            )
            assert proxy.stdout is not None
            port = int(proxy.stdout.readline())
            conn = (
                f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={KEY};"
                f"BlobEndpoint=http://127.0.0.1:{port}/{ACCOUNT};"
            )
        try:
            rounds = [
                asyncio.run(one_round(conn, args.keys, i % 2 == 1)) for i in range(args.rounds)
            ]
        finally:
            if proxy is not None:
                proxy.terminate()
                proxy.wait()
    load_end = os.getloadavg()
    print(
        f"{args.keys} keys, {args.rounds} rounds, added round trip {args.latency_ms:g} ms, "
        f"load {load_start[0]:.2f} -> {load_end[0]:.2f}"
    )
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
