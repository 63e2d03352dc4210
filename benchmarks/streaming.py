"""Streaming 1 GiB (issue 11): peak RSS of writing then reading a value through
``set_file``/``get_file`` and ``set_binary(iterable)``/``iter_binary`` on a local folder and
on Azurite; the peak RSS of ``cp`` of 8 x 256 MiB local -> Azurite (``cp_rss.py``); and 1 GiB
up and down against the azure-storage-blob async SDK on the same Azurite.

    python benchmarks/streaming.py [--size-mib 1024] [--rss-rounds 3] [--rounds 7]
                                   [--parts rss,cp,speed] [--json out.json]

Every measurement runs in a fresh process that imports this checkout (PYTHONPATH).

- rss: the peak RSS (VmHWM) minus the RSS after the imports, before the store is made;
  target <= 64 MiB. Reported as the median [min-max] of ``--rss-rounds`` processes.
- cp: ``cp_rss.py --values 8 --size 256 --jobs 8``; target 8 x 8 MiB + 64 MiB.
- speed: per round a fresh Azurite; ours (``set_file``/``get_file``, defaults: 8 MiB blocks
  and ranges, 4 in parallel) and the SDK (``upload_blob``/``download_blob().readinto``,
  ``max_block_size``/``max_single_put_size``/``max_chunk_get_size``/``max_single_get_size``
  8 MiB, ``max_concurrency`` 4) each move the same 1 GiB file up, then both read the blob
  ours wrote down to a file (which goes first alternates). Ours computes Content-MD5 per
  block and the whole-value MD5 up, checks the MD5 down and fsyncs the file; the SDK checks
  nothing, and its file is fsynced too, for the same work on disk. Ratio of a round = SDK
  time / our time (> 1: we are faster); verdict PASS only if every round is >= 1.0, FAIL if
  every round is below, else "within noise".
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from azurite import Azurite  # benchmarks/azurite.py: this script's folder is on sys.path

REPO = Path(__file__).resolve().parent.parent
MiB = 1024 * 1024
RSS_TARGET_MIB = 64.0
BLOCK = 8 * MiB
CP_ARGS = ["--values", "8", "--size", "256", "--jobs", "8"]

_RSS_CHILD = r"""
import asyncio, json, os, sys
import aiohttp
from asyncblobdict import AsyncBlobStore, LocalFileAdapter
from asyncblobdict.adapters.azure import AzureBlobAdapter
from benchmarks.rss_probe import chunks, reset_peak, status

folder, size, backend, api = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
conn = sys.stdin.read()

async def main():
    base = reset_peak()
    if backend == "local":
        adapter = LocalFileAdapter(os.path.join(folder, "store"))
    else:
        adapter = AzureBlobAdapter.from_connection_string(conn)
    async with AsyncBlobStore(adapter, "stream" + os.urandom(4).hex()) as store:
        if api == "file":
            await store.set_file("k", os.path.join(folder, "src.bin"))
            written = status("VmHWM")
            await store.get_file("k", os.path.join(folder, "dst.bin"))
            assert os.path.getsize(os.path.join(folder, "dst.bin")) == size
        else:
            await store.set_binary("k", chunks(size), size=size)
            written = status("VmHWM")
            n = 0
            async for chunk in store.iter_binary("k"):
                n += len(chunk)
            assert n == size
        await store.delete("k")
    print(json.dumps({"base": base, "after_write": written, "peak": status("VmHWM")}))

asyncio.run(main())
"""

_SPEED_CHILD = r"""
import asyncio, json, os, sys, time
folder, size, impl, direction = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
conn = sys.stdin.read()
MiB = 1 << 20
src, dst = os.path.join(folder, "src.bin"), os.path.join(folder, f"dst-{impl}.bin")

async def ours():
    from asyncblobdict import AsyncBlobStore
    from asyncblobdict.adapters.azure import AzureBlobAdapter
    async with AsyncBlobStore(AzureBlobAdapter.from_connection_string(conn), "speed") as store:
        await store.set_binary("warm", b"x")
        started = time.perf_counter()
        if direction == "up":
            await store.set_file(impl, src)
        else:
            await store.get_file("ours", dst)
        return time.perf_counter() - started

async def sdk():
    from azure.storage.blob.aio import BlobServiceClient
    options = dict(
        max_block_size=8 * MiB, max_single_put_size=8 * MiB,
        max_chunk_get_size=8 * MiB, max_single_get_size=8 * MiB,
        api_version="2025-11-05",
    )
    async with BlobServiceClient.from_connection_string(conn, **options) as service:
        container = service.get_container_client("speed")
        try:
            await container.create_container()
        except Exception:
            pass
        await container.upload_blob("warm", b"x", overwrite=True)
        started = time.perf_counter()
        if direction == "up":
            with open(src, "rb") as f:
                await container.upload_blob(impl, f, length=size, overwrite=True, max_concurrency=4)
        else:
            downloader = await container.download_blob("ours", max_concurrency=4)
            with open(dst, "wb") as f:
                await downloader.readinto(f)
                f.flush()
                os.fsync(f.fileno())
        return time.perf_counter() - started

seconds = asyncio.run(ours() if impl == "ours" else sdk())
if direction == "down":
    assert os.path.getsize(dst) == size
    os.unlink(dst)
print(json.dumps({"seconds": seconds}))
"""


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AZURE_")}
    env["PYTHONPATH"] = str(REPO)  # this checkout, whatever the venv has installed
    return env


def _child(code: str, args: list[str], conn: str) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, "-c", code, *args],
        input=conn.encode(),
        env=_env(),
        capture_output=True,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(result.stderr.decode()[-3000:])
    found: dict[str, Any] = json.loads(result.stdout.decode().splitlines()[-1])
    return found


def _write_file(path: Path, size: int) -> None:
    block = os.urandom(MiB)
    with open(path, "wb") as f:
        for i in range(size // MiB):
            f.write(block[i % 64 :] + block[: i % 64])


def _spread(values: list[float]) -> dict[str, float]:
    return {
        "median": round(statistics.median(values), 2),
        "min": round(min(values), 2),
        "max": round(max(values), 2),
    }


def _rss_once(folder: Path, size: int, backend: str, api: str) -> dict[str, Any]:
    args = [str(folder), str(size), backend, api]
    if backend == "local":
        return _child(_RSS_CHILD, args, "")
    # A fresh Azurite each time: it frees a deleted blob's memory only later.
    with Azurite(memory_limit_mb=size // MiB + 1024) as azurite:
        return _child(_RSS_CHILD, args, azurite.connection_string)


def _rss(folder: Path, size: int, rounds: int, backends: list[str]) -> list[dict[str, Any]]:
    rows = []
    for backend in backends:
        for api in ("file", "iter"):
            peaks, writes = [], []
            for _ in range(rounds):
                got = _rss_once(folder, size, backend, api)
                peaks.append((got["peak"] - got["base"]) / MiB)
                writes.append((got["after_write"] - got["base"]) / MiB)
                for name in ("dst.bin",):
                    (folder / name).unlink(missing_ok=True)
            verdict = (
                "PASS"
                if max(peaks) <= RSS_TARGET_MIB
                else "FAIL"
                if min(peaks) > RSS_TARGET_MIB
                else "within noise"
            )
            row = {
                "backend": backend,
                "api": "set_file/get_file" if api == "file" else "set_binary/iter_binary",
                "peak_growth_mib": _spread(peaks),
                "write_peak_growth_mib": _spread(writes),
                "target_mib": RSS_TARGET_MIB,
                "verdict": verdict,
            }
            print(json.dumps(row), flush=True)
            rows.append(row)
    return rows


def _cp() -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "cp_rss.py"), *CP_ARGS],
        env=_env(),
        capture_output=True,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(result.stderr.decode()[-3000:])
    found: dict[str, Any] = json.loads(result.stdout.decode())
    print(json.dumps(found), flush=True)
    return found


def _speed(folder: Path, size: int, rounds: int) -> dict[str, Any]:
    ratios: dict[str, list[float]] = {"up": [], "down": []}
    seconds: dict[str, list[float]] = {"ours up": [], "sdk up": [], "ours down": [], "sdk down": []}
    for n in range(rounds):
        order = ["ours", "sdk"] if n % 2 == 0 else ["sdk", "ours"]
        with Azurite(memory_limit_mb=3 * size // MiB + 1024) as azurite:
            conn = azurite.connection_string
            # Both uploads come before the downloads, which both read the blob ours wrote.
            for direction in ("up", "down"):
                took = {}
                for impl in order:
                    args = [str(folder), str(size), impl, direction]
                    took[impl] = float(_child(_SPEED_CHILD, args, conn)["seconds"])
                    seconds[f"{impl} {direction}"].append(took[impl])
                ratios[direction].append(took["sdk"] / took["ours"])
            print(
                json.dumps({"round": n + 1, **{k: round(v[-1], 2) for k, v in seconds.items()}}),
                flush=True,
            )
    result: dict[str, Any] = {}
    for direction, values in ratios.items():
        verdict = "PASS" if min(values) >= 1.0 else "FAIL" if max(values) < 1.0 else "within noise"
        result[direction] = {
            "ratio_sdk_over_ours": _spread(values),
            "ratios": [round(r, 3) for r in values],
            "ours_mib_s": _spread([size / MiB / s for s in seconds[f"ours {direction}"]]),
            "sdk_mib_s": _spread([size / MiB / s for s in seconds[f"sdk {direction}"]]),
            "verdict": verdict,
        }
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--rss-rounds", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--parts", default="rss,cp,speed")
    parser.add_argument("--backends", default="local,azurite", help="of the rss part")
    parser.add_argument("--json", default=str(REPO / "benchmarks/results/streaming.json"))
    parser.add_argument("--tmp", default=None, help="a folder with room for 2 x the size")
    options = parser.parse_args()
    size = options.size_mib * MiB
    parts = set(options.parts.split(","))
    report: dict[str, Any] = {
        "size_mib": options.size_mib,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.platform()}",
        "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "load_start": [round(x, 2) for x in os.getloadavg()],
    }
    with tempfile.TemporaryDirectory(prefix="streaming-", dir=options.tmp) as tmp:
        folder = Path(tmp)
        _write_file(folder / "src.bin", size)
        if "rss" in parts:
            report["rss"] = _rss(folder, size, options.rss_rounds, options.backends.split(","))
        if "speed" in parts:
            report["speed"] = _speed(folder, size, options.rounds)
    if "cp" in parts:
        report["cp"] = _cp()
    report["load_end"] = [round(x, 2) for x in os.getloadavg()]
    text = json.dumps(report, indent=2)
    print(text)
    Path(options.json).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
