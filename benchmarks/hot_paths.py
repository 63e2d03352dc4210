"""CPU per call of the hot paths this tree changed, against an older tree.

Run by hand (not a test); it prints a Markdown table and writes the numbers as JSON::

    python benchmarks/hot_paths.py                      # 9 rounds, data on /dev/shm
    python benchmarks/hot_paths.py --before-rev c1039e1 --root /tmp

Implementations (each one runs in a fresh subprocess; rounds interleave them):

``after``   this checkout
``before``  the tree at ``--before-rev`` (default c1039e1), extracted with ``git archive``

Workloads, each timed as the process's CPU time (``time.process_time``: every thread, user
and system) per call, the best of 5 batches in the process:

``put``           ``LocalFileAdapter._put_sync`` called directly (the write in its I/O
                  thread, without the hand-off), durable=False, 200 bytes, 256 keys
``set_memory``    ``store.set_json`` on the memory adapter: the store's own cost of a write
``set_local``     ``store.set_json`` on the local adapter, durable=False (the whole write)
``cache_hit``     ``store.get_json`` answered by the cache (WRITE_THROUGH)

The report gives ratios (after / before) of the paired runs of one round, median [min-max].
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
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
WORKS = {"put": 20_000, "set_memory": 20_000, "set_local": 3_000, "cache_hit": 50_000}
VALUE = {"id": 1, "name": "benchmark-item", "tags": ["a", "b", "c"], "ok": True, "pad": "x" * 120}


# ------------------------------------------------------------------ in the child process


async def cpu_per_call(fn: Callable[[int], Awaitable[object]], n: int) -> float:
    """µs of process CPU per call of ``fn(i)``, the best of 5 batches of ``n``."""
    best = float("inf")
    for _ in range(5):
        t0 = time.process_time()
        for i in range(n):
            await fn(i)
        best = min(best, (time.process_time() - t0) / n * 1e6)
    return best


async def child(spec: dict[str, Any]) -> dict[str, Any]:
    from asyncblobdict import AsyncBlobStore, LocalFileAdapter, MemoryAdapter
    from asyncblobdict.adapters.base import OVERWRITE

    work, n = spec["work"], WORKS[spec["work"]]
    keys = [f"p/k{i}" for i in range(256)]
    folder = tempfile.mkdtemp(prefix="abd-hot-", dir=spec["root"])
    try:
        if work == "put":
            adapter = LocalFileAdapter(folder, durable=False)
            data = json.dumps(VALUE).encode()
            await adapter.put("c", keys[0], data)

            async def put(i: int) -> None:
                adapter._put_sync("c", keys[i & 255], data, OVERWRITE, None, {})

            us = await cpu_per_call(put, n)
            await adapter.close()
            return {"us": us}
        backend: Any = (
            MemoryAdapter() if work == "set_memory" else LocalFileAdapter(folder, durable=False)
        )
        mode = "write_through" if work == "cache_hit" else "none"
        store = AsyncBlobStore(backend, "c", cache_mode=mode)
        for k in keys:
            await store.set_json(k, VALUE)
            await store.get_json(k)
        if work == "cache_hit":
            us = await cpu_per_call(lambda i: store.get_json(keys[i & 255]), n)
        else:
            us = await cpu_per_call(lambda i: store.set_json(keys[i & 255], VALUE), n)
        await store.close()
        return {"us": us}
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# ------------------------------------------------------------------ in the parent


def main() -> None:
    parser = command_line(__doc__, "hot_paths.json", 9, "c1039e1", "git revision to compare with")
    parser.add_argument("--root", default="/dev/shm", help="folder for the data")
    args = parser.parse_args()
    if ran_as_child(args, child):
        return

    python = sys.executable
    load: list[float] = []
    per_round: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory(prefix="abd-hot-") as tmp:
        trees = {"after": HERE.parent, "before": extract(args.before_rev, Path(tmp))}
        for r in rounds(args.rounds, load):
            got: dict[str, float] = {}
            impls = list(trees) if r % 2 == 0 else list(reversed(trees))
            for work in WORKS:
                for impl in impls:
                    spec = {"work": work, "root": args.root}
                    got[f"{work}/{impl}"] = run_child(__file__, python, trees[impl], spec)["us"]
            per_round.append(got)
    where = {**machine(args.root, load, args.rounds), "before": args.before_rev}
    us = {name: spread([r[name] for r in per_round]) for name in per_round[0]}
    ratios = {w: spread([r[f"{w}/after"] / r[f"{w}/before"] for r in per_round]) for w in WORKS}
    save(args.json, {"machine": where, "us": us, "ratios": ratios, "rounds": per_round})
    print(report(where, us, ratios))


def report(
    machine: dict[str, Any], us: dict[str, dict[str, float]], ratios: dict[str, dict[str, float]]
) -> str:
    how = (
        f"{machine['rounds']} interleaved rounds, each (workload, tree) in a fresh process, "
        f"the best of 5 batches per process; before = {machine['before']}"
    )
    lines = [
        measured(machine, how),
        "",
        "| workload | before µs CPU/call | after µs CPU/call | after/before per round |",
        "|---|---|---|---|",
    ]

    for work in WORKS:
        lines.append(
            f"| {work} | {shown(us[f'{work}/before'])} | {shown(us[f'{work}/after'])} "
            f"| {shown(ratios[work], 2)} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
