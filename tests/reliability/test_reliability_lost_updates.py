"""Scenarios 2 and 3: no lost update across processes, on the local backend and on Azure.

PROCESSES processes (each with ``stores`` stores of its own) increment one counter:
* with ``update_json``: the final value is exactly the number of increments;
* with plain get/set in ETAG mode: the final value equals the number of writes that did not
  raise (ConcurrencyError is the only error allowed).
Sizes: ``ABD_LOST_UPDATE_N`` (local, per process) and ``ABD_AZURE_LOST_UPDATE_N``.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from asyncblobdict import AsyncBlobStore
from tests.reliability import counter_child
from tests.reliability.support import (
    REPO_ROOT,
    AzuriteInfo,
    SecretWatch,
    child_env,
    record,
    size,
)

PROCESSES = 4


async def run_children(spec: dict[str, Any], mode: str, n: int) -> list[dict[str, int]]:
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            counter_child.__name__,
            json.dumps(spec),
            mode,
            str(n),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=child_env(),
            cwd=REPO_ROOT,
        )
        for _ in range(PROCESSES)
    ]
    try:
        # All start together, after their imports: each says "ready", then all hear "go".
        for proc in procs:
            assert proc.stdout is not None
            said = await asyncio.wait_for(proc.stdout.readline(), timeout=120)
            if said != b"ready\n":
                _, err = await asyncio.wait_for(proc.communicate(), timeout=60)
                raise AssertionError(f"a counter process did not start:\n{err.decode()[-3000:]}")
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write(b"go\n")
            await proc.stdin.drain()
            proc.stdin.close()
        results = []
        for proc in procs:
            out, err = await asyncio.wait_for(proc.communicate(), timeout=600)
            assert proc.returncode == 0, f"a counter process failed:\n{err.decode()[-3000:]}"
            results.append(json.loads(out.decode().strip().splitlines()[-1]))
        return results
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()


async def check(store: AsyncBlobStore, spec: dict[str, Any], n: int, scenario: str) -> None:
    started = time.monotonic()
    updates = await run_children(spec, "update", n)
    after_updates = await store.get_json("counter")
    assert after_updates == PROCESSES * n, f"update_json lost {PROCESSES * n - after_updates}"

    getset = await run_children(spec, "getset", n)
    landed = sum(r["landed"] for r in getset)
    conflicts = sum(r["conflicts"] for r in getset)
    assert landed + conflicts == PROCESSES * n
    final = await store.get_json("counter")
    assert final - after_updates == landed, (
        f"get/set in ETAG mode: {landed} writes reported success but the counter moved by "
        f"{final - after_updates}"
    )
    record(
        scenario,
        {
            "processes": PROCESSES,
            "stores_per_process": spec.get("stores", 1),
            "update_json_increments": PROCESSES * n,
            "update_json_final": after_updates,
            "getset_attempts": PROCESSES * n,
            "getset_landed": landed,
            "getset_conflicts": conflicts,
            "lost_updates": 0,
            "seconds": round(time.monotonic() - started, 1),
        },
    )
    assert sum(r["update_calls"] for r in updates) == PROCESSES * n


async def test_local_no_lost_update_across_processes(tmp_path: Path) -> None:
    n = size("ABD_LOST_UPDATE_N", 100)
    spec = {"backend": "local", "root": str(tmp_path / "store"), "container": "c", "stores": 2}
    async with AsyncBlobStore(counter_child.make_adapter(spec), "c") as store:
        await check(store, spec, n, "lost_updates_local")


@pytest.mark.azure
async def test_azure_no_lost_update_across_processes(
    rel_azurite: AzuriteInfo, secret_watch: SecretWatch
) -> None:
    n = size("ABD_AZURE_LOST_UPDATE_N", 25)
    container = "lost" + str(int(time.time() * 1000))
    spec = {
        "backend": "azure",
        "connection_string": rel_azurite.connection_string(),
        "container": container,
        "stores": 2,
    }
    adapter = rel_azurite.new_adapter()
    secret_watch.see(adapter)
    async with AsyncBlobStore(adapter, container) as store:
        secret_watch.see(store)
        await check(store, spec, n, "lost_updates_azure")
