"""The Azure quick start of docs/azure.md. Needs aiohttp (``pip install ".[azure]"`` in a clone of
asyncblobdict, or ``pip install "aiohttp>=3.11,<4"``) and:

    AZURE_CONN_STR=your-azure-connection-string   (UseDevelopmentStorage=true for Azurite)
    AZURE_CONTAINER=your-container-name           (3-63 lowercase letters, digits, hyphens)

in the environment or in a .env file (read when python-dotenv is installed; it is optional).
It leaves demo/config in the container.
"""

import asyncio
import os
from datetime import datetime

try:
    from dotenv import load_dotenv
except ImportError:  # python-dotenv is optional: use the environment as it is

    def load_dotenv(*args, **kwargs):
        return False


from asyncblobdict import AsyncBlobStore, AzureBlobAdapter, CacheMode, ConcurrencyMode

load_dotenv()


async def main():
    adapter = AzureBlobAdapter.from_connection_string(os.environ["AZURE_CONN_STR"])
    async with AsyncBlobStore(
        adapter,
        os.environ["AZURE_CONTAINER"],
        cache_mode=CacheMode.WRITE_THROUGH,
        concurrency_mode=ConcurrencyMode.ETAG,
    ) as store:
        await store.set_json("demo/config", {"created_at": datetime.utcnow()})
        print(await store.get_json("demo/config"))


if __name__ == "__main__":
    asyncio.run(main())
