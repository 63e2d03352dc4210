"""A storm of local reads on the loop: what 64 readers do to a writer and to a timer.

Run by hand (not a test); it prints a Markdown table and writes the numbers as JSON::

    python benchmarks/read_storm.py                     # 7 rounds, tmpfs and the disk
    python benchmarks/read_storm.py --before-rev b1b85d0 --roots /dev/shm

Implementations (each one runs in a fresh subprocess; rounds interleave them):

``after``   this checkout (readers take turns once a loop iteration's slice is spent)
``before``  the tree at ``--before-rev`` (default b1b85d0: each reader read once per
            iteration beyond the slice, then yielded)

One workload: 64 tasks call ``store.get_json`` back to back (200-byte values, 256 keys, no
cache, every read finishing on the loop) while one task makes WRITES ``set_json`` calls
(durable=False) to keys the readers read, sleeping 5 ms after each. Per process: reads per
second, the writes' latency (median and largest), and how late the 5 ms sleeps woke (median
and largest). The report gives each figure's median [min-max] over the rounds, and the
after/before ratio of reads per second paired within a round.
"""

from __future__ import annotations

import asyncio
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# Sibling module: Python puts a script's own folder first on sys.path.
from harness import (
    command_line,
    extract,
    machine,
    measured,
    ran_as_child,
    rounds,
    run_child,
    save,
    shown,
    spread,
)

HERE = Path(__file__).resolve().parent
READERS = 64
WRITES = 200
VALUE = {"id": 1, "name": "benchmark-item", "tags": ["a", "b", "c"], "ok": True, "pad": "x" * 120}
FIGURES = ("reads_per_s", "write_p50_ms", "write_max_ms", "lag_p50_ms", "lag_max_ms")


# ------------------------------------------------------------------ in the child process


async def child(spec: dict[str, Any]) -> dict[str, float]:
    from asyncblobdict import AsyncBlobStore, LocalFileAdapter

    folder = tempfile.mkdtemp(prefix="abd-storm-", dir=spec["root"])
    try:
        store = AsyncBlobStore(LocalFileAdapter(folder, durable=False), "c")
        keys = [f"items/k{i:04d}" for i in range(256)]
        for key in keys:
            await store.set_json(key, VALUE)
        for key in keys:  # warm: the first reads probe the filesystem
            await store.get_json(key)
        stop = False
        reads = 0

        async def reader(t: int) -> None:
            nonlocal reads
            i = 0
            while not stop:
                await store.get_json(keys[(t * 7919 + i) % 256])
                i += 1
                reads += 1

        writes: list[float] = []
        lags: list[float] = []
        tasks = [asyncio.create_task(reader(t)) for t in range(READERS)]
        start = time.perf_counter()
        for j in range(WRITES):
            t0 = time.perf_counter()
            await store.set_json(keys[j % 256], VALUE)
            t1 = time.perf_counter()
            await asyncio.sleep(0.005)
            writes.append(t1 - t0)
            lags.append(time.perf_counter() - t1 - 0.005)
        elapsed = time.perf_counter() - start
        stop = True
        await asyncio.gather(*tasks)
        await store.close()
        return {
            "reads_per_s": reads / elapsed,
            "write_p50_ms": statistics.median(writes) * 1e3,
            "write_max_ms": max(writes) * 1e3,
            "lag_p50_ms": statistics.median(lags) * 1e3,
            "lag_max_ms": max(lags) * 1e3,
        }
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# ------------------------------------------------------------------ in the parent


def main() -> None:
    parser = command_line(__doc__, "read_storm.json", 7, "b1b85d0", "git revision to compare with")
    parser.add_argument("--roots", nargs="+", default=["/dev/shm", "/tmp"])
    args = parser.parse_args()
    if ran_as_child(args, child):
        return

    python = sys.executable
    load: list[float] = []
    per_round: list[dict[str, dict[str, float]]] = []
    with tempfile.TemporaryDirectory(prefix="abd-storm-") as tmp:
        trees = {"after": HERE.parent, "before": extract(args.before_rev, Path(tmp))}
        for r in rounds(args.rounds, load):
            got: dict[str, dict[str, float]] = {}
            impls = list(trees) if r % 2 == 0 else list(reversed(trees))
            for root in args.roots:
                for impl in impls:
                    spec = {"root": root}
                    got[f"{root}/{impl}"] = run_child(__file__, python, trees[impl], spec)
            per_round.append(got)
    where = {**machine(args.roots[0], load, args.rounds), "before": args.before_rev}
    where["filesystem"] = ", ".join(machine(root, load, 0)["filesystem"] for root in args.roots)
    figures = {
        name: {f: spread([r[name][f] for r in per_round]) for f in FIGURES} for name in per_round[0]
    }

    def paired(root: str) -> list[float]:
        return [
            r[f"{root}/after"]["reads_per_s"] / r[f"{root}/before"]["reads_per_s"]
            for r in per_round
        ]

    ratios = {root: spread(paired(root)) for root in args.roots}
    save(args.json, {"machine": where, "figures": figures, "ratios": ratios, "rounds": per_round})
    print(report(where, args.roots, figures, ratios))


def report(
    machine: dict[str, Any],
    roots: list[str],
    figures: dict[str, dict[str, dict[str, float]]],
    ratios: dict[str, dict[str, float]],
) -> str:
    how = (
        f"{machine['rounds']} interleaved rounds, each (filesystem, tree) in a fresh process; "
        f"{READERS} readers, {WRITES} writes; before = {machine['before']}"
    )
    lines = [
        measured(machine, how),
        "",
        "| data on | tree | reads/s | write latency p50 / max, ms | timer late p50 / max, ms |",
        "|---|---|---|---|---|",
    ]

    for root in roots:
        for impl in ("before", "after"):
            f = figures[f"{root}/{impl}"]
            writes = f"{shown(f['write_p50_ms'])} / {shown(f['write_max_ms'])}"
            lags = f"{shown(f['lag_p50_ms'], 2)} / {shown(f['lag_max_ms'], 2)}"
            lines.append(f"| {root} | {impl} | {shown(f['reads_per_s'], 0)} | {writes} | {lags} |")
    lines.append("")
    for root in roots:
        lines.append(f"Reads per second, after/before per round, {root}: {shown(ratios[root], 2)}")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
