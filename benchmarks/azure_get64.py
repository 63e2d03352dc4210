"""Whole-value get of a 64 MiB value on Azurite: asyncblobdict against the azure-storage-blob
async SDK at equal concurrency (8 MiB ranges, 4 in parallel, api_version 2025-11-05).

    python benchmarks/azure_get64.py [--rounds 7] [--size-mib 64] [--json out.json]
                                     [--unverified]

Each round reads the value once with each client (which goes first alternates), both clients
kept open across rounds (warm connection pools). The ratio of a round is SDK time / our time
(> 1: we are faster). Reported: the median of the paired ratios with [min-max], the load
average at start and end, and a verdict: PASS only if every round's ratio is above 1.0,
FAIL if every one is below, else "within noise". Ours checks the whole-blob MD5 while the
SDK, by default, checks nothing. ``--unverified`` (an experiment, never a library option)
patches our adapter in this process to check nothing either, which shows what the check
costs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any

from azurite import Azurite  # benchmarks/azurite.py: this script's folder is on sys.path

import asyncblobdict
from asyncblobdict import AsyncBlobStore
from asyncblobdict.adapters.azure import AzureBlobAdapter

MiB = 1024 * 1024
API_VERSION = "2025-11-05"


def _server_cpu(pid: int | None) -> float:
    """CPU seconds (user + system) used so far by the Azurite process."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def verdict(ratios: list[float]) -> str:
    if min(ratios) > 1.0:
        return "PASS"
    if max(ratios) < 1.0:
        return "FAIL"
    return "within noise"


def _switch_off_verification() -> None:
    """Experiment only: our adapter checks no MD5 (8 MiB ranges, as the SDK's)."""
    import asyncblobdict.adapters.azure.adapter as adapter_module

    async def no_check(*args: Any, **kwargs: Any) -> None:
        return None

    setattr(adapter_module, "decode_md5", lambda value: None)  # noqa: B010
    adapter_module._RANGE_MD5.clear()
    setattr(adapter_module, "RANGE_MD5_MAX", 1 << 62)  # noqa: B010
    setattr(adapter_module.AzureBlobAdapter, "_check_range", no_check)  # noqa: B010


async def run(rounds: int, size: int) -> dict[str, Any]:
    from azure.core.exceptions import ResourceExistsError
    from azure.storage.blob.aio import BlobServiceClient

    load_start = os.getloadavg()
    data = hashlib.shake_256(b"get64").digest(size)
    with Azurite(memory_limit_mb=max(1024, 4 * size // MiB)) as azurite:
        adapter = AzureBlobAdapter.from_connection_string(
            azurite.connection_string, read_chunk_size=8 * MiB, max_concurrency=4
        )
        store = AsyncBlobStore(adapter, "bench64", cache_mode="none")
        service = BlobServiceClient.from_connection_string(
            azurite.connection_string,
            api_version=API_VERSION,
            max_single_get_size=8 * MiB,
            max_chunk_get_size=8 * MiB,
        )
        cc = service.get_container_client("bench64")
        with contextlib.suppress(ResourceExistsError):
            await cc.create_container()
        await store.set_binary("v", data)

        pid = azurite.proc.pid if azurite.proc is not None else None
        cpu: dict[str, list[tuple[float, float]]] = {"ours": [], "sdk": []}

        async def timed(name: str, read: Any) -> float:
            c, z = time.process_time(), _server_cpu(pid)
            t = time.perf_counter()
            got = await read()
            elapsed = time.perf_counter() - t
            cpu[name].append((time.process_time() - c, _server_cpu(pid) - z))
            assert len(got) == size
            del got
            return elapsed

        async def ours() -> float:
            return await timed("ours", lambda: store.get_binary("v"))

        async def sdk() -> float:
            async def read() -> bytes:
                got: bytes = await (await cc.download_blob("v", max_concurrency=4)).readall()
                return got

            return await timed("sdk", read)

        await ours()
        await sdk()  # warm both pools
        cpu["ours"].clear()
        cpu["sdk"].clear()
        rows = []
        for i in range(rounds):
            if i % 2:
                s, o = await sdk(), await ours()
            else:
                o, s = await ours(), await sdk()
            rows.append({"ours_s": o, "sdk_s": s, "ratio": s / o})
            print(
                f"round {i + 1}: ours {size / MiB / o:7.1f} MiB/s  sdk {size / MiB / s:7.1f} "
                f"MiB/s  ratio {s / o:.2f}",
                flush=True,
            )
        await store.close()
        await service.close()
    ratios = [r["ratio"] for r in rows]
    return {
        "size_mib": size // MiB,
        "rounds": rows,
        "median_ratio": statistics.median(ratios),
        "min_ratio": min(ratios),
        "max_ratio": max(ratios),
        "ours_mib_s": size / MiB / statistics.median(r["ours_s"] for r in rows),
        "sdk_mib_s": size / MiB / statistics.median(r["sdk_s"] for r in rows),
        "verdict": verdict(ratios),
        # CPU per get (median): the client process (all its threads) and Azurite. Less
        # sensitive to other load than wall time.
        "ours_cpu_ms": 1000 * statistics.median(c for c, _ in cpu["ours"]),
        "sdk_cpu_ms": 1000 * statistics.median(c for c, _ in cpu["sdk"]),
        "azurite_cpu_ms_ours": 1000 * statistics.median(z for _, z in cpu["ours"]),
        "azurite_cpu_ms_sdk": 1000 * statistics.median(z for _, z in cpu["sdk"]),
        "load_start": load_start,
        "load_end": os.getloadavg(),
        "machine": f"{platform.system()} {platform.release()} {platform.machine()}, "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        # Which checkout was measured (the one installed, or on PYTHONPATH).
        "package": str(Path(asyncblobdict.__file__).parent),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--size-mib", type=int, default=64)
    parser.add_argument("--json")
    parser.add_argument("--unverified", action="store_true")
    args = parser.parse_args()
    if args.unverified:
        _switch_off_verification()
    result = asyncio.run(run(args.rounds, args.size_mib * MiB))
    result["ours_verifies"] = not args.unverified
    print(
        f"{result['size_mib']} MiB get: ours {result['ours_mib_s']:.0f} MiB/s, SDK "
        f"{result['sdk_mib_s']:.0f} MiB/s; ratio median {result['median_ratio']:.2f}x "
        f"[{result['min_ratio']:.2f}-{result['max_ratio']:.2f}] -> {result['verdict']}; "
        f"load {result['load_start'][0]:.1f} -> {result['load_end'][0]:.1f}; "
        f"{result['machine']}; {result['date']}"
    )
    print(
        f"CPU per get (median): ours {result['ours_cpu_ms']:.0f} ms + Azurite "
        f"{result['azurite_cpu_ms_ours']:.0f} ms; SDK {result['sdk_cpu_ms']:.0f} ms + Azurite "
        f"{result['azurite_cpu_ms_sdk']:.0f} ms; measured: {result['package']}"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
