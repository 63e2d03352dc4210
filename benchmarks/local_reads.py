"""Local reads on the loop (issue 14): get_json and set_json against the original library and
the system-call floors, on tmpfs and on the disk.

Run by hand (not a test); it prints a Markdown table and writes the numbers as JSON::

    python benchmarks/local_reads.py --original /tmp/orig/bin/python --rounds 9

Implementations, each (implementation, filesystem) pair in a fresh process, the rounds
interleaving them (the order rotates every round):

``ours``      this checkout, ``AsyncBlobStore(LocalFileAdapter(root, durable=...))``
``before``    the same at ``--before`` (default 63d89bf, before this work), from git archive
``original``  asyncblobdict 0.1.133 from PyPI, run by ``--original`` (its venv's python)
``sync``      reads: a plain open/fstat/read/close and ``json.loads`` inside a coroutine, on
              the event loop, no thread (the floor the issue names)
``floor``     writes: temp file, write, rename in one ``asyncio.to_thread`` hop (with
              ``durable``: fsync of the file and of the folder too)

Workloads (values: a 200-byte JSON object, 256 keys ``items/kNNNN``, cache off):
``get_seq`` one task; ``get_64`` 64 tasks; ``set_seq`` one task, ``durable=False``;
``set_durable`` one task, fsyncs; ``hit`` a ``get_json`` served by the write-through cache.
The lag probe (ours, ``get_64``): the largest lateness of an ``asyncio.sleep(0.001)`` loop
running beside the reads.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
KEYS = 256
READS = 10_000
WRITES = 2_000
DURABLE_WRITES = 100
HITS = 50_000


def value() -> dict[str, Any]:
    v: dict[str, Any] = {"id": 12345, "name": "benchmark-item", "tags": ["a", "b", "c"]}
    v["pad"] = "x" * (200 - len(json.dumps(v, separators=(",", ":"))) - 9)
    return v


# ------------------------------------------------------------------ in the child process


class Impl:
    def __init__(self, root: str, durable: bool, cache: bool) -> None:
        pass

    async def get(self, key: str) -> Any:
        raise NotImplementedError

    async def set(self, key: str, v: Any) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        pass


class Ours(Impl):
    def __init__(self, root: str, durable: bool, cache: bool) -> None:
        from asyncblobdict import AsyncBlobStore, CacheMode, LocalFileAdapter

        mode = CacheMode.WRITE_THROUGH if cache else CacheMode.NONE
        self.adapter = LocalFileAdapter(root, durable=durable)
        self.store = AsyncBlobStore(self.adapter, "bench", cache_mode=mode)
        self.direct_get, self.direct_set = self.store.get_json, self.store.set_json

    async def get(self, key: str) -> Any:
        return await self.store.get_json(key)

    async def set(self, key: str, v: Any) -> None:
        await self.store.set_json(key, v)

    async def close(self) -> None:
        await self.store.close()


class Original(Impl):
    def __init__(self, root: str, durable: bool, cache: bool) -> None:
        from asyncblobdict import AsyncBlobStore, CacheMode, LocalFileAdapter

        mode = CacheMode.WRITE_THROUGH if cache else CacheMode.NONE
        self.store = AsyncBlobStore(LocalFileAdapter(root), "bench", cache_mode=mode)
        s: Any = self.store  # the original's API
        self.direct_get, self.direct_set = s.json.get, s.json.set

    async def get(self, key: str) -> Any:
        s: Any = self.store  # the original's API
        return await s.json.get(key)

    async def set(self, key: str, v: Any) -> None:
        s: Any = self.store
        await s.json.set(key, v)

    async def close(self) -> None:
        await self.store.close()


class Floor(Impl):
    """Reads: sync calls on the loop. Writes: temp, write, rename (fsyncs if durable) in one
    to_thread hop."""

    def __init__(self, root: str, durable: bool, cache: bool) -> None:
        self.base = os.path.join(root, "bench")
        self.durable = durable
        self.count = itertools.count()

    async def get(self, key: str) -> Any:
        fd = os.open(f"{self.base}/{key}", os.O_RDONLY | os.O_CLOEXEC)
        try:
            data = os.read(fd, os.fstat(fd).st_size + 1)
        finally:
            os.close(fd)
        return json.loads(data)

    def _put(self, key: str, data: bytes) -> None:
        path = f"{self.base}/{key}"
        folder = os.path.dirname(path)
        tmp = f"{folder}/.{next(self.count)}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
        try:
            os.write(fd, data)
            if self.durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        if self.durable:
            dfd = os.open(folder, os.O_RDONLY | os.O_CLOEXEC)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)

    async def set(self, key: str, v: Any) -> None:
        data = json.dumps(v, separators=(",", ":")).encode()
        await asyncio.to_thread(self._put, key, data)


IMPLS: dict[str, type[Impl]] = {
    "ours": Ours,
    "before": Ours,
    "original": Original,
    "sync": Floor,
    "floor": Floor,
}


async def noise_lag(seconds: float) -> float:
    """The lag probe's largest lateness beside a task that yields at every step, for as long
    as the reads ran: what the machine's scheduling alone costs, in ms."""
    lags: list[float] = []
    stop = asyncio.Event()
    probe = asyncio.create_task(lag_probe(stop, lags))
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        sum(range(300))
        await asyncio.sleep(0)
    stop.set()
    await probe
    return max(lags) * 1e3


async def lag_probe(stop: asyncio.Event, lags: list[float]) -> None:
    while not stop.is_set():
        start = time.perf_counter()
        await asyncio.sleep(0.001)
        lags.append(time.perf_counter() - start - 0.001)


async def run_ops(impl: Impl, op: str, n: int, tasks: int, v: Any) -> float:
    keys = [f"items/k{i:04d}" for i in range(KEYS)]
    per = n // tasks

    # The store's own bound methods where there is a store: no extra coroutine layer.
    get: Callable[[str], Awaitable[Any]] = getattr(impl, "direct_get", impl.get)
    put: Callable[[str, Any], Awaitable[Any]] = getattr(impl, "direct_set", impl.set)

    async def worker(t: int) -> None:
        for i in range(per):
            key = keys[(t * 7919 + i) % KEYS]
            if op == "get":
                await get(key)
            else:
                await put(key, v)

    start = time.perf_counter()
    await asyncio.gather(*(worker(t) for t in range(tasks)))
    return (time.perf_counter() - start) / (per * tasks)


async def child(spec: dict[str, Any]) -> dict[str, Any]:
    impl_name, root = spec["impl"], spec["root"]
    v = value()
    out: dict[str, Any] = {"load_start": os.getloadavg()[0]}
    cls = IMPLS[impl_name]
    fast = cls(root, False, False)
    if isinstance(fast, Floor):
        os.makedirs(os.path.join(root, "bench", "items"), exist_ok=True)
    for i in range(KEYS):  # the values every read workload reads
        await fast.set(f"items/k{i:04d}", v)
    us: dict[str, float] = {}
    if impl_name != "floor":
        for name, tasks in (("get_seq", 1), ("get_64", 64)):
            await run_ops(fast, "get", 2000, tasks, v)  # warm up
            lags: list[float] = []
            stop = asyncio.Event()
            probe = asyncio.create_task(lag_probe(stop, lags))
            us[name] = await run_ops(fast, "get", READS, tasks, v) * 1e6
            stop.set()
            await probe
            out[f"{name}_max_lag_ms"] = max(lags, default=0.0) * 1e3
    if impl_name != "sync":
        await run_ops(fast, "set", 500, 1, v)
        us["set_seq"] = await run_ops(fast, "set", WRITES, 1, v) * 1e6
        durable = cls(root, True, False)
        await run_ops(durable, "set", 20, 1, v)
        us["set_durable"] = await run_ops(durable, "set", DURABLE_WRITES, 1, v) * 1e6
        await durable.close()
    if impl_name in ("ours", "before", "original"):
        cached = cls(root, False, True)
        await cached.set("items/hit", v)
        hit: Callable[[str], Awaitable[Any]] = getattr(cached, "direct_get", cached.get)
        await hit("items/hit")
        start = time.perf_counter()
        for _ in range(HITS):
            await hit("items/hit")
        us["hit"] = (time.perf_counter() - start) / HITS * 1e6
        await cached.close()
    if impl_name == "ours":
        adapter = fast.adapter  # type: ignore[attr-defined]
        out["fast_reads"], out["fast_declines"] = adapter.fast_reads, adapter.fast_declines
        out["noise_max_lag_ms"] = await noise_lag(us["get_64"] * READS / 1e6)
    await fast.close()
    out["us"] = us
    out["load_end"] = os.getloadavg()[0]
    return out


# ------------------------------------------------------------------ the parent


def run_child(python: str, impl: str, base: str, env: dict[str, str]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(dir=base, prefix="abd-bench-") as tmp:
        spec = json.dumps({"impl": impl, "root": os.path.join(tmp, "root")})
        # cwd=/ so the original's python imports its own asyncblobdict, not a checkout's.
        got = subprocess.run(
            [python, str(Path(__file__).resolve()), "--child", spec],
            capture_output=True,
            text=True,
            cwd="/",
            env=env,
            check=True,
        )
    result: dict[str, Any] = json.loads(got.stdout)
    return result


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} [{min(values):.2f}-{max(values):.2f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--original", help="the python of a venv with asyncblobdict 0.1.133")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--before", default="63d89bf", help="the commit before issue 14's work")
    parser.add_argument("--fs", nargs="*", default=["/dev/shm", "/tmp"])
    parser.add_argument("--out", default=str(HERE / "results" / "local_reads.json"))
    args = parser.parse_args()
    if args.child:
        print(json.dumps(asyncio.run(child(json.loads(args.child)))))
        return
    ours_env = {**os.environ, "PYTHONPATH": str(REPO)}
    plain_env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    impls: dict[str, tuple[str, dict[str, str]]] = {
        "ours": (sys.executable, ours_env),
        "sync": (sys.executable, plain_env),
        "floor": (sys.executable, plain_env),
    }
    before = tempfile.TemporaryDirectory(prefix="abd-before-")
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", args.before, "asyncblobdict"],
        capture_output=True,
        check=True,
    ).stdout
    subprocess.run(["tar", "-x", "-C", before.name], input=archive, check=True)
    impls["before"] = (sys.executable, {**os.environ, "PYTHONPATH": before.name})
    if args.original:
        impls["original"] = (args.original, plain_env)
    names = list(impls)
    rounds: list[dict[str, dict[str, Any]]] = []
    load_start = os.getloadavg()
    for r in range(args.rounds):
        got: dict[str, dict[str, Any]] = {}
        order = names[r % len(names) :] + names[: r % len(names)]
        for base in args.fs:
            for impl in order:
                python, env = impls[impl]
                got[f"{impl}@{base}"] = run_child(python, impl, base, env)
        rounds.append(got)
        print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)
    load_end = os.getloadavg()
    report = {
        "machine": f"{platform.node()} {platform.machine()} {os.cpu_count()} CPUs, "
        f"Linux {platform.release()}, Python {platform.python_version()}",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "load_start": load_start,
        "load_end": load_end,
        "rounds": rounds,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1))
    print(table(report, args.fs))


def table(report: dict[str, Any], bases: list[str]) -> str:
    rounds = report["rounds"]
    lines = [
        f"{report['machine']}; {report['date']}; {len(rounds)} rounds; load average "
        f"{report['load_start'][0]:.2f} at start, {report['load_end'][0]:.2f} at end",
        "",
        "| fs | workload | ours µs/op | other µs/op | speed ratio ours/other, median [min-max] |",
        "|---|---|---|---|---|",
    ]
    pairs = [
        ("get_seq", "before"),
        ("get_64", "before"),
        ("set_seq", "before"),
        ("get_seq", "original"),
        ("get_64", "original"),
        ("get_seq", "sync"),
        ("get_64", "sync"),
        ("set_seq", "floor"),
        ("set_seq", "original"),
        ("set_durable", "floor"),
        ("set_durable", "original"),
        ("hit", "original"),
    ]
    for base in bases:
        for workload, other in pairs:
            key_o, key_x = f"ours@{base}", f"{other}@{base}"
            if key_x not in rounds[0]:
                continue
            ours = [r[key_o]["us"][workload] for r in rounds]
            them = [r[key_x]["us"][workload] for r in rounds]
            ratios = [t / o for o, t in zip(ours, them, strict=True)]
            lines.append(
                f"| {base} | {workload} | {statistics.median(ours):.1f} | "
                f"{other} {statistics.median(them):.1f} | {spread(ratios)} |"
            )
        noise = [r[f"ours@{base}"]["noise_max_lag_ms"] for r in rounds]
        lines.append(f"| {base} | lag probe, scheduling alone | max {spread(noise)} ms | | |")
        lags = [r[f"ours@{base}"]["get_64_max_lag_ms"] for r in rounds]
        fast = [r[f"ours@{base}"]["fast_reads"] for r in rounds]
        declined = [r[f"ours@{base}"]["fast_declines"] for r in rounds]
        lines.append(
            f"| {base} | lag probe, get_64 | max {spread(lags)} ms | | reads on the loop "
            f"{statistics.median(fast):.0f}, declined {statistics.median(declined):.0f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
