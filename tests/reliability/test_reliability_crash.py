"""Scenario 1: crash consistency of the local backend under SIGKILL.

A child process writes checksummed JSON and binary values in a loop (durable mode, four
concurrent writers) and acknowledges each completed write on stdout; the parent kills it
with SIGKILL at a random moment, ``ABD_CRASH_KILLS`` times. After every kill: each key
parses and its checksum holds, every acknowledged value is there (or a newer one), no temp
file is listed, and the store opens and writes again.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sys
import time
from pathlib import Path

from asyncblobdict import AsyncBlobStore, LocalFileAdapter
from tests.reliability import crash_child
from tests.reliability.support import REPO_ROOT, child_env, record, size

CONTAINER = "crash"


async def run_child(root: Path, first_seq: int, seed: int, delay: float) -> list[str]:
    """Start a writer, let it run ``delay`` seconds after it is ready, SIGKILL it."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        crash_child.__name__,
        str(root),
        CONTAINER,
        str(first_seq),
        str(seed),
        stdout=asyncio.subprocess.PIPE,
        env=child_env(),
        cwd=REPO_ROOT,
    )
    assert proc.stdout is not None
    try:
        first = await asyncio.wait_for(proc.stdout.readline(), timeout=60)
        assert first == b"ready\n", f"the crash child did not start (it said {first!r})"
    except BaseException:
        proc.kill()
        await proc.wait()
        raise
    lines: list[str] = []

    async def drain() -> None:
        assert proc.stdout is not None
        while True:
            raw = await proc.stdout.readline()
            if not raw:
                return
            if raw.endswith(b"\n"):  # a torn last line is no acknowledgement
                lines.append(raw.decode().rstrip("\n"))

    reader = asyncio.create_task(drain())
    await asyncio.sleep(delay)  # the scenario: a kill at a random moment of the writing
    os.kill(proc.pid, signal.SIGKILL)
    await proc.wait()
    await reader
    assert proc.returncode == -signal.SIGKILL, f"child ended with {proc.returncode}, not killed"
    return lines


def temp_files_on_disk(root: Path) -> int:
    return sum(1 for _, _, files in os.walk(root) for f in files if ".abd-tmp-" in f)


async def verify(root: Path, acked: dict[str, int], round_no: int) -> int:
    """Check the store after a kill; return how many values were checked."""
    known = set(crash_child.JSON_KEYS) | set(crash_child.BINARY_KEYS) | {"parent/check"}
    checked = 0
    async with AsyncBlobStore(LocalFileAdapter(root, durable=True), CONTAINER) as store:
        keys = await store.list_keys()
        assert not [k for k in keys if ".abd-tmp" in k], f"temp files listed: {keys}"
        assert set(keys) <= known, f"unexpected keys listed: {set(keys) - known}"
        for key in keys:
            if key in crash_child.JSON_KEYS:
                seq = crash_child.check_json(key, await store.get_json(key))
            elif key in crash_child.BINARY_KEYS:
                seq = crash_child.check_binary(key, await store.get_binary(key))
            else:
                continue
            checked += 1
            assert seq >= acked.get(key, 0), (
                f"round {round_no}: {key} holds seq {seq}, older than acknowledged "
                f"{acked[key]} (an acknowledged write was lost)"
            )
        missing = set(acked) - set(keys)
        assert not missing, f"round {round_no}: acknowledged keys missing: {missing}"
        # The store opens and writes again.
        await store.set_json("parent/check", {"round": round_no})
        assert await store.get_json("parent/check") == {"round": round_no}
    return checked


async def test_sigkill_never_loses_or_tears_a_value(tmp_path: Path) -> None:
    kills = size("ABD_CRASH_KILLS", 30)
    max_delay = float(os.environ.get("ABD_CRASH_MAX_DELAY", "0.3"))
    rng = random.Random(int(os.environ.get("ABD_SEED", "0")) or None)
    root = tmp_path / "store"
    acked: dict[str, int] = {}
    acks = checked = 0
    max_temp = 0
    started = time.monotonic()
    for round_no in range(kills):
        delay = rng.uniform(0, max_delay)
        lines = await run_child(root, (round_no + 1) * 10**8, rng.randrange(2**32), delay)
        for line in lines:
            key, seq = line.rsplit(" ", 1)
            acked[key] = max(acked.get(key, 0), int(seq))
        acks += len(lines)
        checked += await verify(root, acked, round_no)
        max_temp = max(max_temp, temp_files_on_disk(root))
    record(
        "crash_local",
        {
            "kills_survived": kills,
            "acknowledged_writes": acks,
            "values_verified": checked,
            "stray_temp_files_on_disk_max": max_temp,
            "acknowledged_writes_lost": 0,
            "torn_values": 0,
            "seconds": round(time.monotonic() - started, 1),
        },
    )
    assert acks > 0
