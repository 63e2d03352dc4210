"""Client CPU per small request on Azurite: ours against the azure-storage-blob SDK.

Runs benchmarks/worker.py (the loop run.py uses: ``time.process_time`` of the client
process over the timed operations, divided by their count) once per configuration and
round, each in a fresh process, the configurations interleaved, against one private
Azurite. Prints CPU µs per operation, median (min-max), and the per-round ratio ours/SDK.

    python benchmarks/azure_small.py --rounds 7 [--tasks 64] [--n 3200] [--before DIR]

The workers import asyncblobdict as installed; to measure a checkout, run this from its
root with ``PYTHONPATH=.``. ``--before DIR`` adds a third configuration, ours imported from
the folder DIR (e.g. ``git archive`` of an older commit), to compare two versions in one run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

# Sibling module: Python puts a script's own folder first on sys.path.
from azurite import ACCOUNT, KEY, Azurite

HERE = Path(__file__).resolve().parent
OPS = {"put": "set_json", "get": "get_json"}


def run_one(
    endpoint: str, impl: str, op: str, tasks: int, n: int, path: str | None = None
) -> float:
    """CPU µs per operation of one fresh worker process (``path``: import ours from there)."""
    name = f"{op}_small_{impl}"
    spec = {
        "impl": impl,
        "backend": "azure",
        "endpoint": endpoint,
        "account": ACCOUNT,
        "key": KEY,
        "container": "small",
        "workloads": [{"name": name, "op": OPS[op], "n": n, "tasks": tasks, "warmup": 64}],
    }
    out = subprocess.run(
        [sys.executable, str(HERE / "worker.py")],
        input=json.dumps(spec),
        capture_output=True,
        text=True,
        env=os.environ if path is None else {**os.environ, "PYTHONPATH": path},
    )
    if out.returncode != 0:
        raise RuntimeError(f"{impl} {op} ({path or 'installed'}) failed:\n{out.stderr[-3000:]}")
    return float(json.loads(out.stdout)["results"][name]["cpu_us_per_op"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--tasks", type=int, default=64)
    parser.add_argument("--n", type=int, default=3200)
    parser.add_argument("--ops", default="put,get")
    parser.add_argument("--before", help="a folder holding an older asyncblobdict package")
    args = parser.parse_args()
    ops = args.ops.split(",")
    impls: dict[str, str | None] = {"ours": None, "sdk": None}
    if args.before:
        impls["before"] = str(Path(args.before).resolve())
    cpu: dict[tuple[str, str], list[float]] = {}
    with Azurite() as az:
        # The SDK creates the container (worker's setup); one untimed pass fills the keys.
        for op in ops:
            for impl in ("sdk", "ours"):
                run_one(az.endpoint, impl, op, args.tasks, args.tasks * 4)
        for _ in range(args.rounds):
            for op in ops:
                for name, path in impls.items():
                    impl = "sdk" if name == "sdk" else "ours"
                    got = run_one(az.endpoint, impl, op, args.tasks, args.n, path)
                    cpu.setdefault((op, name), []).append(got)

    def spread(xs: list[float]) -> str:
        return f"{statistics.median(xs):.0f} ({min(xs):.0f}-{max(xs):.0f})"

    def ratio(xs: list[float]) -> str:
        return f"{statistics.median(xs):.3f} ({min(xs):.3f}-{max(xs):.3f})"

    def ratios(name: str, op: str) -> list[float]:
        return [o / s for o, s in zip(cpu[(op, name)], cpu[(op, "sdk")], strict=True)]

    names = [n for n in ("before", "ours") if n in impls]
    print(
        f"| 200 B, {args.tasks} tasks | SDK CPU µs/op | "
        + " | ".join(f"{n} CPU µs/op | {n}/SDK per round" for n in names)
        + " |"
    )
    print("|---" * (1 + 2 * len(names) + 1) + "|")
    for op in ops:
        cells = [spread(cpu[(op, "sdk")])]
        for name in names:
            cells += [spread(cpu[(op, name)]), ratio(ratios(name, op))]
        print(f"| {op} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
