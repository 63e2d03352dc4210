"""CacheMode.NONE: every read and write goes to storage, so two stores always agree.

Runs in a temporary folder that is removed at the end.
"""

import asyncio
import tempfile

from asyncblobdict import AsyncBlobStore, CacheMode, LocalFileAdapter


async def main() -> None:
    with tempfile.TemporaryDirectory() as root:
        async with (
            AsyncBlobStore(LocalFileAdapter(root), "cache_none", CacheMode.NONE) as writer,
            AsyncBlobStore(LocalFileAdapter(root), "cache_none", CacheMode.NONE) as reader,
        ):
            await writer.set_json("settings", {"theme": "dark"})
            print("reader sees:", await reader.get_json("settings"))

            await writer.set_json("settings", {"theme": "light"})
            # No cache: the reader goes to storage again and sees the new value at once.
            print("reader sees after the change:", await reader.get_json("settings"))
            assert await reader.get_json("settings") == {"theme": "light"}


if __name__ == "__main__":
    asyncio.run(main())
