"""Local adapter on contract v2: the ETag kept with the file, a cheap head, names-only listing.

Run by hand (not a test); it prints a Markdown table and writes the numbers as JSON::

    python benchmarks/local_v2.py                       # this checkout against the one before v2
    python benchmarks/local_v2.py --original /tmp/orig/bin/python   # add asyncblobdict 0.1.133
    python benchmarks/local_v2.py --after /path/to/tree --rounds 9 --root /dev/shm/x

Implementations (each workload runs in a fresh subprocess; rounds interleave them):

``after``     this checkout (or ``--after PATH``): the ETag comes from the file's record
``before``    the tree at ``--before-rev`` (default 7f3fcce, the last commit before contract
              v2), extracted with ``git archive``: every read hashes what it reads
``original``  asyncblobdict 0.1.133 from PyPI, given its venv's python (``--original``)
``floor``     the bare system calls: open/read with one ``asyncio.to_thread`` per read; a
              plain ``os.scandir`` walk (sorted) for listings

Workloads: ``get_binary`` of one 1 MiB value through the store (CacheMode.NONE) and through
the adapter; ``exists()`` of a 64 MiB value (bytes read per call from /proc/self/io, and
time); listing 10,000 keys of one folder. Medians of the rounds, with min-max.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
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
    spread,
    timed,
)

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
MiB = 1024 * 1024
CONTAINER = "bench"
LIST_KEYS = 10_000


# ------------------------------------------------------------------ in the child process


def rchar() -> int:
    with open("/proc/self/io") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("rchar:"))


def floor_get(path: str) -> bytes:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        size = os.fstat(fd).st_size
        return os.read(fd, size + 1)
    finally:
        os.close(fd)


async def child(spec: dict[str, Any]) -> dict[str, Any]:
    impl, work, root, reps = spec["impl"], spec["work"], spec["root"], spec["reps"]
    base = os.path.join(root, CONTAINER)
    if impl == "floor":
        if work == "get_store":
            path = os.path.join(base, "g", "k")
            times = await timed(lambda: asyncio.to_thread(floor_get, path), reps)
        elif work == "list":
            walk = os.path.join(base, "l")
            times = await timed(lambda: asyncio.to_thread(floor_walk, walk), reps)
        else:
            raise ValueError(work)
        return {"times": times}
    if impl == "original":
        from asyncblobdict import AsyncBlobStore, CacheMode, LocalFileAdapter

        store: Any = AsyncBlobStore(LocalFileAdapter(root), CONTAINER, cache_mode=CacheMode.NONE)
        if work != "get_store":
            raise ValueError(work)
        times = await timed(lambda: store.binary.get("g/k"), reps)
        await store.close()
        return {"times": times}

    from asyncblobdict import AsyncBlobStore, CacheMode, LocalFileAdapter

    adapter: Any = LocalFileAdapter(root)
    store = AsyncBlobStore(adapter, CONTAINER, cache_mode=CacheMode.NONE)
    result: dict[str, Any] = {}
    if work == "get_store":
        assert len(await store.get_binary("g/k")) == MiB
        times = await timed(lambda: store.get_binary("g/k"), reps)
    elif work == "get_adapter":
        times = await timed(lambda: adapter.get(CONTAINER, "g/k"), reps)
    elif work == "exists":
        assert await store.exists("x/big")
        before = rchar()
        times = await timed(lambda: store.exists("x/big"), reps)
        result["bytes_per_call"] = (rchar() - before) / (reps + 2)
    elif work == "list":
        got = await store.list_keys("l/")
        assert len(got) == LIST_KEYS, len(got)
        times = await timed(lambda: store.list_keys("l/"), reps)
    elif work == "list_names":

        async def names() -> list[str]:
            return [n async for n in adapter.list_names(CONTAINER, "l/")]

        assert len(await names()) == LIST_KEYS
        times = await timed(names, reps)
    else:
        raise ValueError(work)
    await store.close()
    await adapter.close()
    result["times"] = times
    return result


# ------------------------------------------------------------------ in the parent


def populate(python: str, tree: Path, root: str) -> None:
    """The values, written once by the 'after' adapter (so they carry their records)."""
    code = f"""
import asyncio, os
from asyncblobdict import LocalFileAdapter
async def main():
    a = LocalFileAdapter({root!r})
    await a.put({CONTAINER!r}, "g/k", os.urandom({MiB}))
    await a.put({CONTAINER!r}, "x/big", os.urandom({64 * MiB}))
    await a.close()
asyncio.run(main())
folder = os.path.join({root!r}, {CONTAINER!r}, "l")
os.makedirs(folder, exist_ok=True)
for i in range({LIST_KEYS}):
    with open(os.path.join(folder, f"k{{i:05d}}"), "wb") as f:
        f.write(b"x" * 64)
"""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    subprocess.run([python, "-c", code], env=env, check=True)


def md5_us(size: int) -> float:
    """Microseconds for the MD5 of ``size`` bytes (best of 5 batches)."""
    import hashlib

    data = os.urandom(size)
    n = max(10, (4 * MiB) // size)
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(n):
            hashlib.md5(data, usedforsecurity=False).digest()
        best = min(best, (time.perf_counter() - t0) / n)
    return best * 1e6


def main() -> None:
    parser = command_line(__doc__, "local_v2.json", 7, "7f3fcce", "git revision before v2")
    parser.add_argument("--after", type=Path, default=REPO, help="tree with the v2 package")
    parser.add_argument("--original", help="python of a venv with asyncblobdict==0.1.133")
    parser.add_argument("--root", help="folder for the data (default: a temp folder)")
    parser.add_argument("--only", help="comma-separated workloads (get_store, get_adapter, ...)")
    args = parser.parse_args()
    if ran_as_child(args, child):
        return

    python = sys.executable
    with tempfile.TemporaryDirectory(prefix="abd-v2-", dir=args.root) as tmp:
        root = os.path.join(tmp, "data")
        before = extract(args.before_rev, Path(tmp))
        populate(python, args.after, root)
        # (workload, implementation, interpreter, tree, calls per child)
        plan: list[tuple[str, str, str, Path | None, int]] = [
            ("get_store", "after", python, args.after, 200),
            ("get_store", "before", python, before, 50),
            ("get_store", "floor", python, None, 200),
            ("get_adapter", "after", python, args.after, 200),
            ("get_adapter", "before", python, before, 50),
            ("exists", "after", python, args.after, 50),
            ("exists", "before", python, before, 3),
            ("list_names", "after", python, args.after, 10),
            ("list", "after", python, args.after, 10),
            ("list", "before", python, before, 5),
            ("list", "floor", python, None, 10),
        ]
        if args.original:
            plan.insert(2, ("get_store", "original", args.original, None, 200))
        if args.only:
            plan = [p for p in plan if p[0] in args.only.split(",")]
        results: dict[str, dict[str, Any]] = {}
        load: list[float] = []
        for _ in rounds(args.rounds, load):
            for work, impl, py, tree, reps in plan:
                spec = {"impl": impl, "work": work, "root": root, "reps": reps}
                got = run_child(__file__, py, tree, spec)
                entry = results.setdefault(f"{work}/{impl}", {"rounds": []})
                entry["rounds"].append(
                    {
                        "median_s": statistics.median(got["times"]),
                        "bytes_per_call": got.get("bytes_per_call"),
                    }
                )
            for size in (256, 4096, 65536, MiB):
                entry = results.setdefault(f"md5/{size}", {"rounds": []})
                entry["rounds"].append({"median_s": md5_us(size) / 1e6, "bytes_per_call": None})
        where = machine(root, load, args.rounds)
    for entry in results.values():
        secs = spread([r["median_s"] for r in entry["rounds"]])
        entry["median_s"], entry["min_s"], entry["max_s"] = secs["median"], secs["min"], secs["max"]
        read = [r["bytes_per_call"] for r in entry["rounds"] if r["bytes_per_call"] is not None]
        if read:
            entry["bytes_per_call"] = statistics.median(read)
    save(args.json, {"machine": where, "results": results})
    print(report(where, results))


def report(machine: dict[str, Any], results: dict[str, dict[str, Any]]) -> str:
    def ops(key: str) -> str:
        e = results[key]
        return f"{1 / e['median_s']:,.0f} ({1 / e['max_s']:,.0f}-{1 / e['min_s']:,.0f})"

    def ms(key: str) -> str:
        e = results[key]
        return f"{e['median_s'] * 1e3:.3g} ({e['min_s'] * 1e3:.3g}-{e['max_s'] * 1e3:.3g})"

    def ratio(a: str, b: str) -> str:
        if a not in results or b not in results:
            return ""
        return f"{results[b]['median_s'] / results[a]['median_s']:.2f}x"

    lines = [
        measured(machine, f"median of {machine['rounds']} interleaved rounds (min-max)"),
        "",
        "| workload | implementation | ops/s or ms per call (min-max) | vs |",
        "|---|---|---|---|",
    ]
    for impl in ("after", "before", "original", "floor"):
        key = f"get_store/{impl}"
        if key in results:
            vs = "" if impl == "after" else f"after is {ratio('get_store/after', key)}"
            lines.append(f"| `get_binary` 1 MiB (store) | {impl} | {ops(key)} ops/s | {vs} |")
    for impl in ("after", "before"):
        key = f"get_adapter/{impl}"
        if key not in results:
            continue
        vs = "" if impl == "after" else f"after is {ratio('get_adapter/after', key)}"
        lines.append(f"| `adapter.get` 1 MiB | {impl} | {ops(key)} ops/s | {vs} |")
    for impl in ("after", "before"):
        key = f"exists/{impl}"
        if key not in results:
            continue
        read = results[key].get("bytes_per_call", 0)
        lines.append(
            f"| `exists()` 64 MiB | {impl} | {ms(key)} ms, {read:,.0f} bytes read per call | |"
        )
    floor = "list/floor"
    for key, what in (
        ("list_names/after", "`adapter.list_names`"),
        ("list/after", "`store.list_keys`"),
        ("list/before", "`store.list_keys`"),
        (floor, "bare `os.scandir` walk"),
    ):
        if key not in results:
            continue
        impl = key.split("/")[1]
        vs = "" if key == floor else f"{ratio(key, floor)} of the walk's speed"
        lines.append(f"| list 10,000 keys: {what} | {impl} | {ms(key)} ms | {vs} |")
    for size in (256, 4096, 65536, MiB):
        e = results[f"md5/{size}"]
        lines.append(
            f"| MD5 of {size:,} bytes | hashlib | {e['median_s'] * 1e6:.3g} µs "
            f"({e['min_s'] * 1e6:.3g}-{e['max_s'] * 1e6:.3g}) | |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
