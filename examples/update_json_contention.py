"""Many tasks, each with its own store, increment one counter with update_json.

update_json reads the value with its ETag and writes only if nobody changed it meanwhile,
retrying otherwise, so no increment is lost: the final count is exact.
Runs in a temporary folder that is removed at the end.
"""

import asyncio
import tempfile

from asyncblobdict import AsyncBlobStore, ConcurrencyMode, LocalFileAdapter

WORKERS = 8
INCREMENTS = 25


async def worker(root: str) -> None:
    # Separate adapters and stores: as independent as separate processes on one machine.
    async with AsyncBlobStore(
        LocalFileAdapter(root), "contention", concurrency_mode=ConcurrencyMode.ETAG
    ) as store:
        for _ in range(INCREMENTS):
            await store.update_json("counter", lambda n: n + 1, default=0)


async def main() -> None:
    with tempfile.TemporaryDirectory() as root:
        await asyncio.gather(*(worker(root) for _ in range(WORKERS)))
        async with AsyncBlobStore(LocalFileAdapter(root), "contention") as store:
            final = await store.get_json("counter")
        expected = WORKERS * INCREMENTS
        print(f"{WORKERS} workers x {INCREMENTS} increments: final count {final}")
        assert final == expected, f"lost updates: {final} != {expected}"
        print("no update was lost")


if __name__ == "__main__":
    asyncio.run(main())
