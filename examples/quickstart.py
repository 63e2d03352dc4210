"""The README's local quick start, unchanged: run it with ``python examples/quickstart.py``.

It writes to ./local_blob_storage/demo_container (relative to the current folder) and leaves
demo/model.bin there, so the command line can show it: ``asyncblobdict ls --long``.
(``datetime.utcnow()`` is what the README shows; Python 3.12+ warns that it is deprecated.)
"""

import asyncio
import pickle
from datetime import datetime

from asyncblobdict import (
    AsyncBlobStore,
    BlobNotFoundError,
    CacheMode,
    ConcurrencyMode,
    LocalFileAdapter,
)


async def main():
    adapter = LocalFileAdapter("./local_blob_storage")
    async with AsyncBlobStore(
        adapter,
        "demo_container",
        cache_mode=CacheMode.WRITE_THROUGH,
        concurrency_mode=ConcurrencyMode.ETAG,
    ) as store:
        # Store JSON
        config = {"learning_rate": 0.01, "layers": [64, 128, 256], "created_at": datetime.utcnow()}
        await store.set_json("demo/config", config)

        # Retrieve JSON
        loaded_config = await store.get_json("demo/config")
        print("Loaded config:", loaded_config)

        # Store binary
        model_bytes = pickle.dumps({"weights": [0.1, 0.2, 0.3], "bias": 0.5})
        await store.set_binary("demo/model.bin", model_bytes)

        # Retrieve binary
        loaded_model = pickle.loads(await store.get_binary("demo/model.bin"))
        print("Loaded model:", loaded_model)

        # List keys
        print("Keys:", await store.list_keys())

        # Delete a key
        await store.delete("demo/config")
        try:
            await store.get_json("demo/config")
        except BlobNotFoundError:
            print("Config deleted successfully.")


if __name__ == "__main__":
    asyncio.run(main())
