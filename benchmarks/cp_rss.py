"""Peak RSS of ``asyncblobdict cp`` from a local folder to Azurite (issue 11).

Writes N values of SIZE MiB to a local store, starts a private Azurite, and runs
``cp --jobs JOBS`` in a fresh process that reports how far its peak RSS (VmHWM, reset
through /proc/self/clear_refs just before the copy) rose above its RSS at the start. The
target is ``jobs x block size + 64 MiB`` (the Azure adapter's block size, 8 MiB).

    python benchmarks/cp_rss.py --values 8 --size 256 --jobs 8
    python benchmarks/cp_rss.py --values 8 --size 64 --jobs 8 --dst local

Linux only (/proc). Azurite keeps blobs in memory, so N x SIZE must fit in its memory limit.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from azurite import Azurite  # benchmarks/azurite.py: this script's folder is on sys.path

REPO = Path(__file__).resolve().parent.parent
MiB = 1024 * 1024
BLOCK = 8 * MiB


async def _fill(root: Path, values: int, size: int) -> None:
    from asyncblobdict import LocalFileAdapter

    adapter = LocalFileAdapter(root)
    for n in range(values):
        block = hashlib.sha256(str(n).encode()).digest() * (MiB // 32)

        async def chunks(block: bytes = block) -> object:
            for _ in range(size // MiB):
                yield block

        await adapter.put_stream("src", f"value-{n}", chunks(), size=size)  # type: ignore[arg-type]
    await adapter.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--values", type=int, default=8)
    parser.add_argument("--size", type=int, default=256, help="MiB per value")
    parser.add_argument("--jobs", type=int, default=8)
    parser.add_argument("--dst", choices=["azurite", "local"], default="azurite")
    options = parser.parse_args()
    size = options.size * MiB
    env = {k: v for k, v in os.environ.items() if not k.startswith("AZURE_")}
    env["PYTHONPATH"] = str(REPO)
    with (
        tempfile.TemporaryDirectory(prefix="cp-rss-") as tmp,
        Azurite(memory_limit_mb=options.values * options.size + 1024) as azurite,
    ):
        root = Path(tmp)
        asyncio.run(_fill(root / "store", options.values, size))
        if options.dst == "azurite":
            dst = "azure:cprss"
            env["AZURE_CONN_STR"] = azurite.connection_string
        else:
            dst = "local:./copy/dst"
        args = ["cp", "local:./store/src", dst, "--jobs", str(options.jobs), "--no-progress"]
        started = time.monotonic()
        result = subprocess.run(
            [sys.executable, "-m", "benchmarks.rss_probe", *args],  # via PYTHONPATH
            cwd=root,
            env=env,
            capture_output=True,
            check=False,
        )
        seconds = time.monotonic() - started
        if result.returncode != 0:
            sys.stderr.write(result.stderr.decode())
            return 1
        lines = result.stdout.decode().splitlines()
        found = json.loads(lines[-1])
        growth = (found["peak"] - found["before"]) / MiB
        target = options.jobs * BLOCK / MiB + 64
        report = {
            "values": options.values,
            "size_mib": options.size,
            "jobs": options.jobs,
            "dst": options.dst,
            "summary": lines[-2],
            "rss_before_mib": round(found["before"] / MiB, 1),
            "peak_growth_mib": round(growth, 1),
            "target_mib": target,
            "within_target": growth <= target,
            "seconds": round(seconds, 1),
            "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.platform()}",
            "python": platform.python_version(),
            "date": time.strftime("%Y-%m-%d"),
        }
        print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
