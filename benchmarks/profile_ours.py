"""Profile one workload of our library with cProfile and print µs per operation.

    python benchmarks/profile_ours.py get_json_seq [--root /dev/shm] [--n 5000] [--durable 0]
    python benchmarks/profile_ours.py put_small_seq --azure      # starts its own Azurite

Workload names are those of benchmarks/run.py. The table lists the functions with the most
own time (tottime) and cumulative time, each divided by the number of operations, so a row
reads "this function costs X µs of every operation". Worker-thread time (the local adapter's
I/O threads) is not seen by cProfile, which profiles the event-loop thread only; the
``threads`` line gives the process CPU that the profile does not show.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import os
import pstats
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

# Sibling modules: Python puts a script's own folder first on sys.path.
import worker
from run import azure_workloads, local_workloads

HERE = Path(__file__).resolve().parent


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("workload")
    ap.add_argument("--azure", action="store_true")
    ap.add_argument("--root", default=tempfile.gettempdir())
    ap.add_argument("--n", type=int, default=None)
    ap.add_argument("--durable", type=int, default=1)
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--sort", default="tottime", choices=["tottime", "cumulative"])
    args = ap.parse_args()

    wl = (azure_workloads if args.azure else local_workloads)(False)[args.workload][0]
    w = {"name": args.workload, "prefix": args.workload, **wl}
    if args.n:
        w["n"] = args.n
    az = None
    root = None
    if args.azure:
        from azurite import ACCOUNT, KEY, Azurite

        az = Azurite().start()
        spec: dict[str, Any] = {
            "impl": "ours",
            "backend": "azure",
            "endpoint": az.endpoint,
            "account": ACCOUNT,
            "key": KEY,
            "container": "prof",
        }
        if w["op"] == "list":
            from run import _populate_list

            asyncio.run(_populate_list(az.endpoint, 10_000))
    else:
        root = tempfile.mkdtemp(prefix="abd-prof-", dir=args.root)
        spec = {
            "impl": "ours",
            "backend": "local",
            "root": root,
            "container": "prof",
            "durable": bool(args.durable),
        }
        if w.get("populate"):
            worker.populate_local(
                os.path.join(root, w["container"]), w["prefix"], int(w["populate"])
            )
    prof = cProfile.Profile()

    async def go() -> dict[str, float]:
        client = await worker.make_client(
            {**spec, "container": w.get("container", "prof")}, w.get("cache", "none")
        )
        try:
            # Run once unprofiled (set-up, warm-up), then profile the timed loop only.
            orig_run = worker.run_workload
            await orig_run(client, {**w, "n": max(w.get("tasks", 1), w["n"] // 10)})
            c0 = time.process_time()
            prof.enable()
            res = await orig_run(client, w)
            prof.disable()
            res["cpu_total_s"] = time.process_time() - c0
            return res
        finally:
            await client.close()

    try:
        res = asyncio.run(go())
    finally:
        if az is not None:
            az.stop()
        if root:
            shutil.rmtree(root, ignore_errors=True)
    ops = res["ops"]
    print(
        f"{args.workload}: {ops} ops, {res['ops_s']:.0f} ops/s (under the profiler), "
        f"p50 {res['p50_us']:.0f} µs, CPU {res['cpu_us_per_op']:.0f} µs/op"
    )
    stats = pstats.Stats(prof)
    prof_total = stats.total_tt  # type: ignore[attr-defined]
    print(
        f"loop-thread profiled time {prof_total / ops * 1e6:.1f} µs/op; process CPU "
        f"{res['cpu_total_s'] / ops * 1e6:.1f} µs/op (the rest: I/O threads, profiler)"
    )
    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).sort_stats(args.sort)
    rows = []
    for func, (_cc, nc, tt, ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        rows.append((tt if args.sort == "tottime" else ct, tt, ct, nc, func))
    rows.sort(reverse=True)
    print(f"{'own µs/op':>10} {'cum µs/op':>10} {'calls/op':>9}  function")
    for _, tt, ct, nc, (file, line, name) in rows[: args.top]:
        short = file.replace(str(HERE.parent) + "/", "")
        short = short if len(short) < 60 else "..." + short[-57:]
        print(
            f"{tt / ops * 1e6:10.2f} {ct / ops * 1e6:10.2f} {nc / ops:9.2f}  "
            f"{name} ({short}:{line})"
        )


if __name__ == "__main__":
    main()
