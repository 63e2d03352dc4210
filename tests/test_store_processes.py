"""ETag mode across processes on one local folder: no lost update, ever."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from asyncblobdict import AsyncBlobStore, ConcurrencyMode, LocalFileAdapter

WORKER = """
import asyncio, json, sys
from asyncblobdict import AsyncBlobStore, ConcurrencyError, ConcurrencyMode, LocalFileAdapter

async def main(root, mode, n):
    landed = failed = 0
    async with AsyncBlobStore(
        LocalFileAdapter(root), "c", concurrency_mode=ConcurrencyMode.ETAG
    ) as store:
        for _ in range(n):
            if mode == "update":
                await store.update_json("n", lambda v: v + 1, default=0)
                landed += 1
                continue
            value = await store.get_json("n")
            try:
                await store.set_json("n", value + 1)
                landed += 1
            except ConcurrencyError:
                failed += 1
    print(json.dumps({"landed": landed, "failed": failed}))

asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
"""

PROCESSES = 4
PER_PROCESS = 40


def run_workers(root: Path, mode: str) -> list[dict[str, int]]:
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(root), mode, str(PER_PROCESS)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(PROCESSES)
    ]
    results = []
    for proc in procs:
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0
        results.append(json.loads(out))
    return results


async def read_counter(root: Path) -> int:
    async with AsyncBlobStore(LocalFileAdapter(root), "c") as store:
        value: int = await store.get_json("n")
        return value


@pytest.mark.slow
async def test_update_json_is_exact_across_processes(tmp_path: Path) -> None:
    run_workers(tmp_path, "update")
    assert await read_counter(tmp_path) == PROCESSES * PER_PROCESS


@pytest.mark.slow
async def test_get_set_in_etag_mode_loses_nothing_across_processes(tmp_path: Path) -> None:
    async with AsyncBlobStore(
        LocalFileAdapter(tmp_path), "c", concurrency_mode=ConcurrencyMode.ETAG
    ) as store:
        await store.set_json("n", 0)
    results = run_workers(tmp_path, "getset")
    landed = sum(r["landed"] for r in results)
    assert sum(r["failed"] for r in results) + landed == PROCESSES * PER_PROCESS
    assert await read_counter(tmp_path) == landed
