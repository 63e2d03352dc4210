"""What leaving expired values out costs ``list_keys``: 10,000 keys, before and after expiry.

Run by hand (not a test); it prints a Markdown table and writes the numbers as JSON::

    python benchmarks/list_expiry.py                    # local, 9 rounds
    python benchmarks/list_expiry.py --azurite          # and against a private Azurite

Implementations (each one runs in a fresh subprocess; rounds interleave them):

``after``   this checkout: ``list_keys`` reads every key's metadata (local: one open and
            ``fgetxattr`` per key; Azure: List Blobs with ``include=metadata``) to leave
            expired values out
``before``  the tree at ``--before-rev`` (default 63d89bf, the last commit before expiry),
            extracted with ``git archive``: ``list_keys`` is ``list_names``
``floor``   a bare sorted ``os.scandir`` walk of the same folder (local only)

Workloads: ``store.list_keys("l/")`` of 10,000 keys in one folder (a tenth of them written
with a ``ttl`` far in the future, so none is left out and every record is parsed), and
``adapter.list_names`` alone (names only: it must stay as fast as before, and at least
half as fast as the bare walk). Each round runs every (workload, implementation) once, in
its own process, and takes the median of that process's calls; the report gives ratios of
the paired runs of one round, median [min-max] over rounds.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

# Sibling module: Python puts a script's own folder first on sys.path.
from harness import (
    command_line,
    extract,
    floor_walk,
    machine,
    measured,
    ran_as_child,
    rounds,
    run_child,
    save,
    shown,
    spread,
    timed,
)

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
CONTAINER = "bench"
KEYS = 10_000
FAR = "4102444800.000"  # 2100-01-01: never expires during the run


# ------------------------------------------------------------------ in the child process


async def child(spec: dict[str, Any]) -> dict[str, Any]:
    impl, work, reps = spec["impl"], spec["work"], spec["reps"]
    if impl == "floor":
        walk = os.path.join(spec["root"], CONTAINER, "l")
        return {"times": await timed(lambda: asyncio.to_thread(floor_walk, walk), reps)}
    from asyncblobdict import AsyncBlobStore, LocalFileAdapter

    adapter: Any
    if spec.get("conn"):
        from asyncblobdict import AzureBlobAdapter

        adapter = AzureBlobAdapter.from_connection_string(spec["conn"])
    else:
        adapter = LocalFileAdapter(spec["root"])
    store = AsyncBlobStore(adapter, CONTAINER)
    if work == "list_keys":

        async def listing() -> list[str]:
            return await store.list_keys("l/")

    else:

        async def listing() -> list[str]:
            return [n async for n in adapter.list_names(CONTAINER, "l/")]

    assert len(await listing()) == KEYS
    times = await timed(listing, reps)
    await store.close()
    return {"times": times}


# ------------------------------------------------------------------ in the parent


def populate(python: str, tree: Path, root: str | None, conn: str | None) -> None:
    """The keys, written once by this checkout's adapter (records and metadata included)."""
    code = f"""
import asyncio
from asyncblobdict import LocalFileAdapter
async def main():
    if {conn!r}:
        from asyncblobdict import AzureBlobAdapter
        a = AzureBlobAdapter.from_connection_string({conn!r})
    else:
        a = LocalFileAdapter({root!r}, durable=False)
    sem = asyncio.Semaphore(32)
    async def one(i):
        async with sem:
            meta = {{"abdexpires": {FAR!r}}} if i % 10 == 0 else None
            await a.put({CONTAINER!r}, f"l/k{{i:05d}}", b"x" * 64,
                        content_type="application/json", metadata=meta)
    await asyncio.gather(*(one(i) for i in range({KEYS})))
    await a.close()
asyncio.run(main())
"""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    subprocess.run([python, "-c", code], env=env, check=True)


def main() -> None:
    parser = command_line(__doc__, "list_expiry.json", 9, "63d89bf", "git revision before expiry")
    parser.add_argument("--reps", type=int, default=9, help="timed listings per process")
    parser.add_argument("--azurite", action="store_true", help="also against Azurite")
    parser.add_argument("--root", help="folder for the data (default: a temp folder)")
    args = parser.parse_args()
    if ran_as_child(args, child):
        return

    python = sys.executable
    load: list[float] = []
    with tempfile.TemporaryDirectory(prefix="abd-exp-", dir=args.root) as tmp:
        root = os.path.join(tmp, "data")
        before = extract(args.before_rev, Path(tmp))
        populate(python, REPO, root, None)
        # (backend, workload, implementation, tree)
        plan: list[tuple[str, str, str, Path | None]] = [
            ("local", "list_keys", "after", REPO),
            ("local", "list_keys", "before", before),
            ("local", "list_names", "after", REPO),
            ("local", "list_names", "before", before),
            ("local", "walk", "floor", None),
        ]
        azurite = None
        if args.azurite:
            from azurite import Azurite  # benchmarks/azurite.py

            azurite = Azurite().start()
            populate(python, REPO, None, azurite.connection_string)
            plan += [
                ("azurite", "list_keys", "after", REPO),
                ("azurite", "list_keys", "before", before),
            ]
        try:
            per_round: list[dict[str, float]] = []
            for _ in rounds(args.rounds, load):
                got: dict[str, float] = {}
                for backend, work, impl, tree in plan:
                    spec = {
                        "impl": impl,
                        "work": work,
                        "root": root,
                        "reps": args.reps,
                        "conn": azurite.connection_string
                        if azurite is not None and backend == "azurite"
                        else None,
                    }
                    times = run_child(__file__, python, tree, spec)["times"]
                    got[f"{backend}/{work}/{impl}"] = statistics.median(times)
                per_round.append(got)
        finally:
            if azurite is not None:
                azurite.stop()
        where = {**machine(root, load, args.rounds), "reps": args.reps}
    ms = {name: spread([r[name] * 1e3 for r in per_round]) for name in per_round[0]}
    pairs = {
        "local list_keys after/before": ("local/list_keys/after", "local/list_keys/before"),
        "local list_names after/before": ("local/list_names/after", "local/list_names/before"),
        "local walk floor/list_names after": ("local/walk/floor", "local/list_names/after"),
        "azurite list_keys after/before": ("azurite/list_keys/after", "azurite/list_keys/before"),
    }
    ratios = {
        label: spread([r[a] / r[b] for r in per_round])
        for label, (a, b) in pairs.items()
        if a in per_round[0] and b in per_round[0]
    }
    save(args.json, {"machine": where, "ms": ms, "ratios": ratios, "rounds": per_round})
    print(report(where, ms, ratios))


def report(
    machine: dict[str, Any], ms: dict[str, dict[str, float]], ratios: dict[str, dict[str, float]]
) -> str:
    how = (
        f"{machine['rounds']} interleaved rounds, each implementation in a fresh process per "
        f"round, median of {machine['reps']} listings per process"
    )
    lines = [
        measured(machine, how),
        "",
        "| listing of 10,000 keys | ms, median [min-max] over rounds |",
        "|---|---|",
    ]
    for name, s in ms.items():
        lines.append(f"| {name} | {shown(s)} |")
    lines += ["", "| paired ratio (per round) | median [min-max] |", "|---|---|"]
    for name, s in ratios.items():
        lines.append(f"| {name} | {shown(s, 2)} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
