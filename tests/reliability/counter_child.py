"""Child of the lost-update scenarios: increments one counter N times, then reports.

    python -m tests.reliability.counter_child SPEC_JSON MODE N   # from the repo root

SPEC_JSON: {"backend": "local", "root": ...} or {"backend": "azure", "connection_string":
..., "options": {...}}, plus "container" and "stores" (stores in this process, each with
its own adapter, sharing the N increments). MODE "update" uses update_json; "getset" reads
with get_json and writes with set_json in ETAG mode, counting writes that landed and writes
refused with ConcurrencyError. Once its stores are made it prints ``ready`` and waits for a
line on stdin, so that every process starts incrementing at once; then prints one JSON line
of counts.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

from asyncblobdict import AsyncBlobStore, ConcurrencyError, ConcurrencyMode


def make_adapter(spec: dict[str, Any]) -> Any:
    if spec["backend"] == "local":
        from asyncblobdict import LocalFileAdapter

        return LocalFileAdapter(spec["root"])
    from asyncblobdict import AzureBlobAdapter

    return AzureBlobAdapter.from_connection_string(
        spec["connection_string"], **spec.get("options", {})
    )


async def main(spec: dict[str, Any], mode: str, n: int) -> None:
    counts = {"landed": 0, "conflicts": 0, "update_calls": 0}
    stores = [
        AsyncBlobStore(make_adapter(spec), spec["container"], concurrency_mode=ConcurrencyMode.ETAG)
        for _ in range(spec.get("stores", 1))
    ]
    todo = list(range(n))

    async def work(store: AsyncBlobStore) -> None:
        while todo:
            todo.pop()
            if mode == "update":
                await store.update_json("counter", lambda v: v + 1, default=0, max_attempts=1000)
                counts["update_calls"] += 1
                counts["landed"] += 1
                continue
            value = await store.get_json("counter")
            try:
                await store.set_json("counter", value + 1)
                counts["landed"] += 1
            except ConcurrencyError:
                counts["conflicts"] += 1

    print("ready", flush=True)
    await asyncio.to_thread(sys.stdin.readline)  # the parent's "go", sent to all at once
    try:
        await asyncio.gather(*(work(s) for s in stores))
    finally:
        for s in stores:
            await s.close()
    print(json.dumps(counts))


if __name__ == "__main__":
    asyncio.run(main(json.loads(sys.argv[1]), sys.argv[2], int(sys.argv[3])))
