"""What ``import asyncblobdict`` adds to ``import asyncio``: fresh interpreters, timed.

Each command runs in a fresh ``python -c`` process, the commands interleaved, ``--rounds``
times; the report is the median (min-max) of each command's wall and CPU time and of its
per-round difference from ``import asyncio``, in ms (CPU time is less disturbed by other
load). The processes run in the current folder, so from a clone's root they import that
clone's package (``python -c`` puts the folder first on the path).

    python benchmarks/import_time.py --rounds 15
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time

COMMANDS = {
    "asyncio": "import asyncio",
    "asyncblobdict": "import asyncblobdict",
    "asyncio + asyncblobdict": "import asyncio, asyncblobdict",
    "store + local": "from asyncblobdict import AsyncBlobStore, LocalFileAdapter",
}


# Bytecode caches as an installed package has them (some set-ups turn writing them off).
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def _child_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_ms(code: str) -> tuple[float, float]:
    """Wall time and CPU time (user + system) of one fresh interpreter, in ms."""
    cpu = _child_cpu()
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, env=ENV)
    return (time.perf_counter() - start) * 1000, (_child_cpu() - cpu) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    for code in COMMANDS.values():  # warm the file cache and write the .pyc files
        run_ms(code)
    wall: dict[str, list[float]] = {name: [] for name in COMMANDS}
    cpu: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for _ in range(args.rounds):
        for name, code in COMMANDS.items():
            w, c = run_ms(code)
            wall[name].append(w)
            cpu[name].append(c)

    def spread(xs: list[float]) -> str:
        return f"{statistics.median(xs):.1f} ({min(xs):.1f}-{max(xs):.1f})"

    def extra(times: dict[str, list[float]], name: str) -> str:
        base = times["asyncio"]
        return spread([t - b for t, b in zip(times[name], base, strict=True)])

    print("| command | wall ms | wall minus asyncio | CPU ms | CPU minus asyncio |")
    print("|---|---|---|---|---|")
    for name, code in COMMANDS.items():
        more = ("", "") if name == "asyncio" else (extra(wall, name), extra(cpu, name))
        print(
            f"| `python -c '{code}'` | {spread(wall[name])} | {more[0]} "
            f"| {spread(cpu[name])} | {more[1]} |"
        )


if __name__ == "__main__":
    main()
