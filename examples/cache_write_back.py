"""CacheMode.WRITE_BACK: changes stay in the cache until sync() (or close()).

sync(etag_behavior=...) decides what happens when storage changed meanwhile:
"skip" keeps the local change dirty and reports it, "overwrite" writes it anyway,
"raise" checks every key first and raises ConcurrencyError without writing any.
Runs in a temporary folder that is removed at the end.
"""

import asyncio
import logging
import tempfile

from asyncblobdict import (
    AsyncBlobStore,
    CacheMode,
    ConcurrencyError,
    ConcurrencyMode,
    LocalFileAdapter,
)


async def main() -> None:
    # Conflicts skipped by sync() are reported through logging (and in the SyncResult).
    logging.basicConfig(level=logging.WARNING, format="log: %(levelname)s %(message)s")
    with tempfile.TemporaryDirectory() as root:
        adapter = LocalFileAdapter(root)
        async with (
            AsyncBlobStore(adapter, "wb", CacheMode.WRITE_BACK, ConcurrencyMode.ETAG) as store,
            AsyncBlobStore(adapter, "wb", CacheMode.NONE) as direct,
        ):
            await store.set_json("a", {"n": 1})
            await store.set_json("b", {"n": 2})
            print("dirty before sync:", store.dirty_keys())
            print("in storage before sync:", await direct.list_keys())

            result = await store.sync()
            print("sync() ->", result)
            print("in storage after sync:", await direct.list_keys())

            # Someone else changes "a" while this store has a pending change to it.
            await store.set_json("a", {"n": 10})
            await store.delete("b")
            await direct.set_json("a", {"n": 99})

            try:
                await store.sync(etag_behavior="raise")
            except ConcurrencyError as exc:
                print('sync("raise") wrote nothing:', exc)

            result = await store.sync(etag_behavior="skip")
            print('sync("skip") ->', result)
            print("still dirty:", store.dirty_keys())
            print("storage keeps the other writer's a:", await direct.get_json("a"))

            result = await store.sync(etag_behavior="overwrite")
            print('sync("overwrite") ->', result)
            print("storage now:", await direct.get_json("a"), await direct.list_keys())


if __name__ == "__main__":
    asyncio.run(main())
