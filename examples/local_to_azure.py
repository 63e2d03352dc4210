"""Move data from a local folder to Azure Blob Storage (or Azurite) with the library API.

    AZURE_CONN_STR   connection string (default UseDevelopmentStorage=true: Azurite)
    AZURE_CONTAINER  destination container (default local-to-azure-demo)

It fills a local store in a temporary folder (removed at the end), copies every key byte for
byte with bounded concurrency, skipping keys Azure already holds with the same MD5, and reads
them back. The copied keys stay in the container: `asyncblobdict --azure --container
local-to-azure-demo ls --long` shows them. The `asyncblobdict cp` command does the same job.
"""

import asyncio
import hashlib
import os
import re
import sys
import tempfile
from datetime import datetime, timezone

from asyncblobdict import AsyncBlobStore, AzureBlobAdapter, LocalFileAdapter

CONN_STR = os.environ.get("AZURE_CONN_STR", "UseDevelopmentStorage=true")
CONTAINER = os.environ.get("AZURE_CONTAINER", "local-to-azure-demo")
if re.search(r"<[^<>]+>", CONN_STR):  # as written in docs: AccountKey=<key>
    sys.exit(
        "AZURE_CONN_STR is a placeholder: fill in its <...> parts from the storage account's "
        "Access keys in the Azure portal, or unset it to use Azurite (UseDevelopmentStorage=true)."
    )


async def copy_all(source: AsyncBlobStore, target: AsyncBlobStore, jobs: int = 8) -> None:
    limit = asyncio.Semaphore(jobs)
    copied = skipped = 0

    async def copy_one(key: str) -> None:
        nonlocal copied, skipped
        async with limit:
            data = await source.get_binary(key)  # exact bytes, JSON or not
            there = await target.adapter.head(target.container_name, key)
            if there is not None and there.content_md5 == hashlib.md5(data).digest():
                skipped += 1
                return
            await target.set_binary(key, data)
            copied += 1

    await asyncio.gather(*[copy_one(key) for key in await source.list_keys()])
    print(f"copied {copied}, skipped {skipped} unchanged")


async def main() -> None:
    with tempfile.TemporaryDirectory() as root:
        async with AsyncBlobStore(LocalFileAdapter(root), "export") as local:
            await local.set_json("runs/1/config", {"lr": 0.01, "at": datetime.now(timezone.utc)})
            await local.set_json("runs/1/metrics", {"loss": [0.9, 0.5, 0.3]})
            await local.set_binary("runs/1/model.bin", os.urandom(2048))

            adapter = AzureBlobAdapter.from_connection_string(CONN_STR)
            async with AsyncBlobStore(adapter, CONTAINER) as azure:
                await copy_all(local, azure)
                await copy_all(local, azure)  # a second run finds nothing to do
                for key in await local.list_keys():
                    assert await azure.get_binary(key) == await local.get_binary(key)
                print(f"in Azure container {CONTAINER!r}:", await azure.list_keys("runs/1/"))
                print("config read back:", await azure.get_json("runs/1/config"))


if __name__ == "__main__":
    asyncio.run(main())
