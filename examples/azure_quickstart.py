"""The Azure quick start of docs/azure.md. Needs aiohttp (``pip install ".[azure]"`` in a clone of
asyncblobdict, or ``pip install "aiohttp>=3.11,<4"``) and:

    AZURE_CONN_STR=your-azure-connection-string   (UseDevelopmentStorage=true for Azurite)
    AZURE_CONTAINER=your-container-name           (3-63 lowercase letters, digits, hyphens)

in the environment or in a .env file (read when python-dotenv is installed; it is optional).
It leaves demo/config in the container. Without them it says what to set, not a KeyError.
"""

import asyncio
import os
import re
import sys
from datetime import datetime

try:
    from dotenv import load_dotenv
except ImportError:  # python-dotenv is optional: use the environment as it is

    def load_dotenv(*args, **kwargs):
        return False


from asyncblobdict import AsyncBlobStore, AzureBlobAdapter, CacheMode, ConcurrencyMode

load_dotenv()


def settings():
    """AZURE_CONN_STR and AZURE_CONTAINER, or exit saying what to set (not a KeyError)."""
    names = ("AZURE_CONN_STR", "AZURE_CONTAINER")
    missing = [name for name in names if not os.environ.get(name, "").strip()]
    if missing:
        sys.exit(
            f"Set {' and '.join(missing)} (in the environment or in a .env file): "
            "AZURE_CONN_STR to your storage account's connection string, or "
            "UseDevelopmentStorage=true for Azurite; AZURE_CONTAINER to a container name."
        )
    conn_str, container = (os.environ[name].strip() for name in names)
    if re.search(r"<[^<>]+>", conn_str):  # as docs write them: AccountKey=<key>
        sys.exit(
            "AZURE_CONN_STR is a placeholder: fill in its <...> parts from the storage "
            "account's Access keys in the Azure portal, or use UseDevelopmentStorage=true "
            "for Azurite."
        )
    return conn_str, container


async def main():
    conn_str, container = settings()
    adapter = AzureBlobAdapter.from_connection_string(conn_str)
    async with AsyncBlobStore(
        adapter,
        container,
        cache_mode=CacheMode.WRITE_THROUGH,
        concurrency_mode=ConcurrencyMode.ETAG,
    ) as store:
        await store.set_json("demo/config", {"created_at": datetime.utcnow()})
        print(await store.get_json("demo/config"))


if __name__ == "__main__":
    asyncio.run(main())
