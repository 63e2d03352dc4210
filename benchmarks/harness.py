"""The harness of the by-hand comparisons of the local adapter (``local_v2.py``,
``list_expiry.py``, ``hot_paths.py``, ``read_storm.py``): each (workload, implementation)
runs in a fresh process per round, the rounds interleave them, and an older revision runs
from a ``git archive`` of its package.

A script runs itself as the child (``script --child SPEC``, one JSON object in, one out:
``ran_as_child``); ``timed`` and ``floor_walk`` are for that child, the rest for the parent.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import tarfile
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent

# ------------------------------------------------------------------ in the child process


async def timed(fn: Callable[[], Awaitable[object]], reps: int) -> list[float]:
    """Seconds of each of ``reps`` calls of ``fn`` (after two untimed ones)."""
    for _ in range(2):
        await fn()
    out = []
    for _ in range(reps):
        t0 = time.perf_counter()
        await fn()
        out.append(time.perf_counter() - t0)
    return out


def floor_walk(base: str) -> list[str]:
    """The files below ``base`` (no dot files), sorted: a bare ``os.scandir`` walk."""
    out: list[str] = []
    stack = [""]
    while stack:
        rel = stack.pop()
        with os.scandir(os.path.join(base, rel) if rel else base) as it:
            for e in it:
                name = f"{rel}/{e.name}" if rel else e.name
                if e.is_dir(follow_symlinks=False):
                    stack.append(name)
                elif not e.name.startswith("."):
                    out.append(name)
    out.sort()
    return out


# ------------------------------------------------------------------ in the parent


def command_line(
    doc: str, results: str, rounds: int, before_rev: str, before_help: str
) -> argparse.ArgumentParser:
    """The options every comparison takes: ``--before-rev``, ``--rounds``, ``--json`` (where
    the numbers go, ``results`` under benchmarks/results/) and the child's own ``--child``."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--before-rev", default=before_rev, help=before_help)
    parser.add_argument("--rounds", type=int, default=rounds)
    parser.add_argument("--json", type=Path, default=REPO / "benchmarks" / "results" / results)
    return parser


def ran_as_child(
    args: argparse.Namespace, child: Callable[[dict[str, Any]], Coroutine[Any, Any, Any]]
) -> bool:
    """In a child process (``--child SPEC``): print ``child(SPEC)`` as JSON and say so."""
    if not args.child:
        return False
    json.dump(asyncio.run(child(json.loads(args.child))), sys.stdout)
    return True


def extract(rev: str, into: Path) -> Path:
    """The package as it was at ``rev`` (git archive), for the 'before' runs."""
    tar = subprocess.run(
        ["git", "-C", str(REPO), "archive", rev, "asyncblobdict"], capture_output=True, check=True
    ).stdout
    tmp = into / f"tree-{rev}"
    tmp.mkdir()
    archive = into / "tree.tar"
    archive.write_bytes(tar)
    with tarfile.open(archive) as t:
        if hasattr(tarfile, "data_filter"):
            t.extractall(tmp, filter="data")
        else:  # Python before 3.10.12 / 3.11.4; our own repository's archive
            t.extractall(tmp)
    return tmp


def run_child(script: str, python: str, tree: Path | None, spec: dict[str, Any]) -> dict[str, Any]:
    """``python script --child SPEC`` in a fresh process that imports the package from
    ``tree`` (None: from no tree, for the implementations that do not use it)."""
    env = dict(os.environ)
    if tree is not None:
        env["PYTHONPATH"] = str(tree)
    else:
        env.pop("PYTHONPATH", None)
    out = subprocess.run(
        [python, str(Path(script).resolve()), "--child", json.dumps(spec)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if out.returncode != 0:
        raise RuntimeError(f"{spec}: {out.stderr[-3000:]}")
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def rounds(count: int, load: list[float]) -> Iterator[int]:
    """The round numbers; the 1-minute load average goes into ``load`` before the first
    round and after each one, and each round's end is reported on stderr."""
    load.append(os.getloadavg()[0])
    for n in range(count):
        yield n
        load.append(os.getloadavg()[0])
        print(f"round {n + 1}/{count} done", file=sys.stderr)


def spread(values: list[float]) -> dict[str, float]:
    """Median and the whole range of per-round values."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def shown(s: dict[str, float], digits: int = 1) -> str:
    """A :func:`spread` as text: ``median [min-max]``."""
    return f"{s['median']:.{digits}f} [{s['min']:.{digits}f}-{s['max']:.{digits}f}]"


def fs_type(path: str) -> str:
    best, kind = "", "?"
    with open("/proc/mounts") as f:
        for line in f:
            _, mount, fstype, *_ = line.split()
            if path.startswith(mount) and len(mount) > len(best):
                best, kind = mount, fstype
    return f"{kind} at {best}"


def machine(root: str, load: list[float], rounds: int) -> dict[str, Any]:
    """When and where the rounds ran: date, system, the data's filesystem, load range."""
    return {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "uname": " ".join(platform.uname()),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "filesystem": fs_type(os.path.realpath(root)),
        "load_min_max": [min(load), max(load)],
        "rounds": rounds,
    }


def save(path: Path, results: dict[str, Any]) -> None:
    """Write a run's ``results`` as JSON to ``path`` (its folder made if missing)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=1))


def measured(machine: dict[str, Any], how: str) -> str:
    """The report's first line: ``machine`` and ``how`` the numbers were taken."""
    low, high = machine["load_min_max"]
    return (
        f"Measured {machine['date']} on `{machine['uname']}` ({machine['cpus']} CPUs, Python "
        f"{machine['python']}, {machine['filesystem']}); {how}; load average "
        f"{low:.2f}-{high:.2f}."
    )
