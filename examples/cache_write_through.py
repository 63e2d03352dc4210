"""CacheMode.WRITE_THROUGH: writes go to storage at once; reads come from the cache.

With ConcurrencyMode.ETAG a store that holds a stale value cannot overwrite a newer one:
its write raises ConcurrencyError, and a fresh read lets it try again.
Runs in a temporary folder that is removed at the end.
"""

import asyncio
import tempfile

from asyncblobdict import (
    AsyncBlobStore,
    CacheMode,
    ConcurrencyError,
    ConcurrencyMode,
    LocalFileAdapter,
)


async def main() -> None:
    with tempfile.TemporaryDirectory() as root:

        def open_store() -> AsyncBlobStore:
            return AsyncBlobStore(
                LocalFileAdapter(root),
                "cache_write_through",
                cache_mode=CacheMode.WRITE_THROUGH,
                concurrency_mode=ConcurrencyMode.ETAG,
            )

        async with open_store() as a, open_store() as b:
            await a.set_json("counter", 1)
            print("a wrote 1; b reads:", await b.get_json("counter"))  # now cached in b

            await a.set_json("counter", 2)  # stored at once (write-through)
            print("a wrote 2; b's cache still says:", await b.get_json("counter"))

            try:
                await b.set_json("counter", 100)  # b last saw version 1
            except ConcurrencyError as exc:
                print("b's stale write was refused:", exc)

            fresh = await a.get_json("counter")
            print("storage holds:", fresh)
            assert fresh == 2

            # update_json reads, applies the function and retries on conflict by itself.
            print("b increments with update_json:", await b.update_json("counter", lambda n: n + 1))


if __name__ == "__main__":
    asyncio.run(main())
