"""Benchmarks of asyncblobdict against its peers: interleaved rounds, paired ratios.

    python benchmarks/run.py             # the published run (>= 7 rounds, about 25 minutes)
    python benchmarks/run.py --quick     # smoke run: few ops, 3 rounds, results/quick/ only
    python benchmarks/run.py --only azure --rounds 3   # a part, to results/partial/ only

Every round runs every (implementation, workload) once, each in a fresh process of
benchmarks/worker.py; the order of the sections, of the workloads and of the implementations
within a workload rotates from round to round. report.py turns the per-round numbers into
paired ratios (ours / peer within one round), their median [min-max] and a verdict.

Peers: the original asyncblobdict 0.1.133 from PyPI (benchmarks/.venv-original, created on
first use); the local floors (the bare system calls in a plain loop, with one asyncio.to_thread
hop per op or none, i.e. run inside the event loop); the azure-storage-blob async SDK and a bare
aiohttp loop (sharedkey.py) against a private in-memory Azurite.

Only a full run writes the published files (benchmarks/results/results.json and results.md,
docs/performance.png and the generated part of docs/performance.md): one run, one table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

# Sibling modules: Python puts a script's own folder first on sys.path.
from azurite import ACCOUNT, KEY, Azurite
from report import write_report
from worker import populate_local

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS = HERE / "results"
ORIGINAL_VENV = HERE / ".venv-original"
ORIGINAL_VERSION = "0.1.133"
MiB = 1024 * 1024
FORMAT = 2  # results.json layout: rounds of per-process results (report.py checks it)


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ------------------------------------------------------------------- environments


def original_python() -> str:
    """Python of benchmarks/.venv-original, created with asyncblobdict==0.1.133 if missing."""
    py = ORIGINAL_VENV / "bin" / "python"
    if py.exists():
        check = subprocess.run(
            [str(py), "-c", "import importlib.metadata as m; print(m.version('asyncblobdict'))"],
            capture_output=True,
            text=True,
            cwd=tempfile.gettempdir(),
        )
        if check.stdout.strip() == ORIGINAL_VERSION:
            return str(py)
    log(f"creating {ORIGINAL_VENV} with asyncblobdict=={ORIGINAL_VERSION}")
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(ORIGINAL_VENV)], check=True)
    subprocess.run(
        [
            str(py),
            "-m",
            "pip",
            "install",
            "-q",
            "--disable-pip-version-check",
            f"asyncblobdict=={ORIGINAL_VERSION}",
        ],
        check=True,
    )
    return str(py)


def run_worker(python: str, spec: dict[str, Any], timeout: float = 600) -> dict[str, Any]:
    proc = subprocess.run(
        [python, str(HERE / "worker.py")],
        input=json.dumps(spec),
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=tempfile.gettempdir(),  # never import the repo's package by accident
    )
    if proc.returncode != 0:
        raise RuntimeError(
            f"worker {spec.get('impl')} failed ({proc.returncode}):\n{proc.stderr[-4000:]}"
        )
    return json.loads(proc.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


# --------------------------------------------------------------------- workloads

# variant -> (impl, spec extras). "floor_sync" is the plain synchronous syscall loop run inside
# the event loop (no thread); "floor_async" the same with one asyncio.to_thread hop per op.
LOCAL_VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "ours": ("ours", {"durable": True}),
    "ours_nondurable": ("ours", {"durable": False}),
    # adapter.list_names: names only (store.list_keys also reads each value's expiry)
    "ours_names": ("ours", {"durable": True, "names_only": True}),
    "original": ("original", {}),
    "floor_sync": ("floor", {"durable": True, "hop": False}),
    "floor_async": ("floor", {"durable": True, "hop": True}),
    "floor_async_nondurable": ("floor", {"durable": False, "hop": True}),
}
AZURE_VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "ours": ("ours", {}),
    "sdk": ("sdk", {}),
    "bare": ("bare", {}),
}
LIST_KEYS = 10_000


def local_workloads(quick: bool) -> dict[str, tuple[dict[str, Any], list[str]]]:
    """workload -> (worker spec, variants that run it)."""
    q = quick
    reads = ["ours", "original", "floor_sync", "floor_async"]
    writes = ["ours_nondurable", "original", "floor_async_nondurable", "ours", "floor_async"]
    return {
        "get_json_seq": ({"op": "get_json", "n": 500 if q else 5000}, reads),
        "get_json_c64": ({"op": "get_json", "n": 640 if q else 6400, "tasks": 64}, reads),
        # durable_n: the fsync'd variants' count; a durable write costs 5-20 ms on a loaded disk
        "set_json_seq": (
            {"op": "set_json", "n": 100 if q else 1000, "durable_n": 50 if q else 300},
            writes,
        ),
        "set_json_c64": (
            {
                "op": "set_json",
                "n": 640 if q else 3200,
                "tasks": 64,
                "durable_n": 640 if q else 1280,
            },
            writes,
        ),
        "get_json_cached": (
            {"op": "get_json_cached", "n": 5000 if q else 100_000, "cache": "write_through"},
            ["ours"],
        ),
        "list_10k": (
            {
                "op": "list",
                "n": 1 if q else 5,
                "container": "lst",
                "prefix": "list",
                "populate": LIST_KEYS,
            },
            ["ours_names", "ours", "floor_sync"],
        ),
    }


def azure_workloads(quick: bool) -> dict[str, tuple[dict[str, Any], list[str]]]:
    q = quick
    small = ["ours", "sdk", "bare"]
    return {
        "put_small_seq": ({"op": "set_json", "n": 100 if q else 600}, small),
        "get_small_seq": ({"op": "get_json", "n": 150 if q else 1000}, small),
        "put_small_c64": ({"op": "set_json", "n": 320 if q else 1280, "tasks": 64}, small),
        "get_small_c64": ({"op": "get_json", "n": 320 if q else 1280, "tasks": 64}, small),
        "put_64m": (
            {"op": "set_binary", "n": 1 if q else 3, "size": 64 * MiB, "keys": 1, "warmup": 1},
            ["ours", "sdk"],
        ),
        "get_64m": (
            {"op": "get_binary", "n": 1 if q else 3, "size": 64 * MiB, "keys": 1, "warmup": 1},
            ["ours", "sdk"],
        ),
        "list_10k": (
            {"op": "list", "n": 1 if q else 3, "container": "list10k", "prefix": "list"},
            ["ours", "sdk"],
        ),
    }


@dataclass
class Config:
    """One (implementation, workload) of a section: one fresh process per round."""

    section: str
    workload: str
    variant: str
    python: str
    spec: dict[str, Any]


@dataclass
class Section:
    name: str
    info: dict[str, Any]
    groups: list[list[Config]]  # one group per workload: its implementations run back to back
    runs: dict[str, dict[str, list[dict[str, Any] | None]]] = field(default_factory=dict)


def rotate(items: list[Any], by: int) -> list[Any]:
    """``items`` rotated left by ``by``: round r starts with item r (mod len)."""
    if not items:
        return items
    k = by % len(items)
    return items[k:] + items[:k]


def round_order(sections: list[Section], r: int) -> Iterator[tuple[Section, Config]]:
    """Round ``r``'s order: sections, workloads and implementations each rotated by ``r``."""
    for sec in rotate(sections, r):
        for group in rotate(sec.groups, r):
            for cfg in rotate(group, r):
                yield sec, cfg


def local_section(fs: str, base: str, quick: bool, orig_py: str, scratch: ExitStack) -> Section:
    # The listing tree is written once per run and only read by the workloads, so every
    # round lists the same 10,000 files (plain files, as a bare walk sees them).
    list_root = tempfile.mkdtemp(prefix="abd-bench-list-", dir=base)
    scratch.callback(shutil.rmtree, list_root, True)
    populate_local(os.path.join(list_root, "lst"), "list", LIST_KEYS)
    groups = []
    for name, (w, variants) in local_workloads(quick).items():
        group = []
        for variant in variants:
            impl, extras = LOCAL_VARIANTS[variant]
            wl = dict(w)
            durable_n = wl.pop("durable_n", None)
            if durable_n is not None and extras.get("durable") and impl != "original":
                wl["n"] = durable_n
            spec = {
                "impl": impl,
                "backend": "local",
                "container": "bench",
                **extras,
                "workloads": [{"name": name, "prefix": name, "sync_fs": True, **wl}],
            }
            if not w["op"].startswith("set"):
                # Reads do not depend on durability; without fsync their untimed set-up
                # writes take milliseconds instead of seconds on the disk.
                spec["durable"] = False
            if w["op"] == "list":
                spec["root"] = list_root
                spec["workloads"][0]["expect"] = LIST_KEYS
            py = orig_py if impl == "original" else sys.executable
            group.append(Config(f"local/{fs}", name, variant, py, spec))
        groups.append(group)
    return Section(f"local/{fs}", {"path": base, "fstype": _fstype(base)}, groups)


def azure_section(quick: bool) -> Section:
    groups = []
    for name, (w, variants) in azure_workloads(quick).items():
        group = []
        for variant in variants:
            impl, extras = AZURE_VARIANTS[variant]
            spec = {
                "impl": impl,
                "backend": "azure",
                "account": ACCOUNT,
                "key": KEY,
                "container": f"bench-{variant}",
                **extras,
                "workloads": [{"name": name, "prefix": name, **w}],
            }
            if w["op"] == "list":
                spec["workloads"][0]["expect"] = _azure_list_keys(quick)
            group.append(Config("azure", name, variant, sys.executable, spec))
        groups.append(group)
    return Section("azure", {"azurite": "in memory, same machine"}, groups)


def _azure_list_keys(quick: bool) -> int:
    return 1000 if quick else LIST_KEYS


async def _populate_list(endpoint: str, count: int) -> None:
    from sharedkey import BareBlobClient

    c = BareBlobClient(endpoint, ACCOUNT, KEY)
    try:
        await c.create_container("list10k")
        sem = asyncio.Semaphore(64)

        async def put(i: int) -> None:
            async with sem:
                await c.put("list10k", f"list/k{i:05d}", b"x" * 64)

        await asyncio.gather(*(put(i) for i in range(count)))
    finally:
        await c.close()


class AzureServers:
    """A fresh Azurite per round for the request workloads (in memory it keeps overwritten
    64 MiB extents until its slow garbage collection), and one Azurite for the whole run that
    holds the listing container: every request gets 2-3x slower once Azurite holds 10,000
    blobs, so those blobs stay out of the other workloads' server."""

    def __init__(self, quick: bool, stack: ExitStack) -> None:
        self.lister = stack.enter_context(Azurite(memory_limit_mb=1024))
        t0 = time.perf_counter()
        count = _azure_list_keys(quick)
        asyncio.run(_populate_list(self.lister.endpoint, count))
        log(f"Azurite for listings: {count:,} blobs in {time.perf_counter() - t0:.1f}s")
        self.round: Azurite | None = None

    def endpoint_for(self, cfg: Config) -> str:
        if cfg.workload == "list_10k":
            return self.lister.endpoint
        if self.round is None:
            self.round = Azurite(memory_limit_mb=2048).start()
        return self.round.endpoint

    def end_round(self) -> None:
        if self.round is not None:
            self.round.stop()
            self.round = None


# ------------------------------------------------------------------------- import

IMPORTS = {
    "asyncio": "import asyncio",
    "ours": "import asyncblobdict",
    "ours_azure": "import asyncblobdict; asyncblobdict.AzureBlobAdapter",
    "original": "import asyncblobdict",
}


# In one fresh interpreter: what `import asyncblobdict` adds once asyncio is imported, as
# wall time and as CPU time (the CPU time hardly moves with the machine's load).
ADDED_PROBE = """
import time
import asyncio
w0, c0 = time.perf_counter(), time.process_time()
import asyncblobdict
print(time.perf_counter() - w0, time.process_time() - c0)
"""


def import_round(runs: int, orig_py: str, r: int) -> dict[str, Any]:
    """Wall time of fresh interpreters doing each import, ``runs`` times interleaved, and as
    many probes of the time `import asyncblobdict` adds to `import asyncio`; the round's
    value of each is the median."""
    cwd = tempfile.gettempdir()
    names = rotate([*IMPORTS, "added"], r)
    times: dict[str, list[float]] = {k: [] for k in names}
    added_cpu: list[float] = []
    for _ in range(runs):
        for name in names:
            if name == "added":
                out = subprocess.run(
                    [sys.executable, "-c", ADDED_PROBE],
                    check=True,
                    cwd=cwd,
                    capture_output=True,
                    text=True,
                ).stdout.split()
                times[name].append(float(out[0]))
                added_cpu.append(float(out[1]))
                continue
            py = orig_py if name == "original" else sys.executable
            t0 = time.perf_counter()
            subprocess.run([py, "-c", IMPORTS[name]], check=True, cwd=cwd)
            times[name].append(time.perf_counter() - t0)
    wall = {k: statistics.median(v) * 1000 for k, v in times.items()}
    return {
        "median_ms": {k: v for k, v in wall.items() if k != "added"},
        "added_ms": wall["added"],
        "added_cpu_ms": statistics.median(added_cpu) * 1000,
        "runs": runs,
        "loadavg": os.getloadavg()[0],
    }


def _warm_imports(orig_py: str) -> None:
    for name, code in IMPORTS.items():  # page cache and .pyc files
        py = orig_py if name == "original" else sys.executable
        subprocess.run([py, "-c", code], check=True, cwd=tempfile.gettempdir())


# ---------------------------------------------------------------------------- rounds


def run_rounds(
    sections: list[Section],
    rounds: int,
    orig_py: str,
    azure: AzureServers | None,
    import_runs: int,
) -> dict[str, Any]:
    """Every config of every section once per round, in rotated order; import timing too."""
    total = rounds * (sum(len(g) for s in sections for g in s.groups) + (1 if import_runs else 0))
    done = 0
    started = time.perf_counter()
    failures: list[str] = []
    imports: list[dict[str, Any]] = []

    def progress(what: str, secs: float) -> None:
        elapsed = time.perf_counter() - started
        eta = elapsed / done * (total - done) if done else 0.0
        log(
            f"{done}/{total} {what}: {secs:.1f}s "
            f"(elapsed {elapsed / 60:.1f} min, ETA {eta / 60:.1f} min)"
        )

    for sec in sections:
        for group in sec.groups:
            for cfg in group:
                sec.runs.setdefault(cfg.workload, {})[cfg.variant] = []
    for r in range(rounds):
        log(f"round {r + 1}/{rounds} (load {os.getloadavg()[0]:.2f})")
        if import_runs and r % 2 == 0:  # imports first on even rounds, last on odd ones
            t0 = time.perf_counter()
            imports.append(import_round(import_runs, orig_py, r))
            done += 1
            progress(f"r{r + 1} import", time.perf_counter() - t0)
        for sec, cfg in round_order(sections, r):
            spec = dict(cfg.spec)
            scratch = None
            if cfg.section.startswith("local/") and "root" not in spec:
                scratch = tempfile.mkdtemp(prefix=f"abd-bench-{cfg.variant}-", dir=sec.info["path"])
                spec["root"] = scratch
            if cfg.section == "azure":
                assert azure is not None
                spec["endpoint"] = azure.endpoint_for(cfg)
            t0 = time.perf_counter()
            result: dict[str, Any] | None
            try:
                result = run_worker(cfg.python, spec)["results"][cfg.workload]
                result["round"] = r
            except (RuntimeError, subprocess.TimeoutExpired) as exc:
                result = None
                failures.append(f"round {r + 1} {cfg.section} {cfg.workload} {cfg.variant}: {exc}")
                log(f"FAILED: {failures[-1][-3000:]}")
            finally:
                if scratch is not None:
                    shutil.rmtree(scratch, ignore_errors=True)
                    os.sync()  # the deletes' journal writes land here, not in the next process
            sec.runs[cfg.workload][cfg.variant].append(result)
            done += 1
            progress(
                f"r{r + 1} {cfg.section} {cfg.workload} {cfg.variant}", time.perf_counter() - t0
            )
        if azure is not None:
            azure.end_round()
        if import_runs and r % 2 == 1:
            t0 = time.perf_counter()
            imports.append(import_round(import_runs, orig_py, r))
            done += 1
            progress(f"r{r + 1} import", time.perf_counter() - t0)
    return {"imports": imports, "failures": failures}


# ---------------------------------------------------------------------------- main


def _fstype(path: str) -> str:
    try:
        best, kind = "", "?"
        real = os.path.realpath(path)
        with open("/proc/mounts") as f:
            for line in f:
                parts = line.split()
                mnt, typ = parts[1], parts[2]
                if (real == mnt or real.startswith(mnt.rstrip("/") + "/")) and len(mnt) > len(best):
                    best, kind = mnt, typ
        return kind
    except OSError:
        return "?"


def machine_info() -> dict[str, Any]:
    def sh(cmd: str) -> str:
        try:
            return subprocess.run(
                cmd, shell=True, capture_output=True, text=True, timeout=10
            ).stdout.strip()
        except Exception:
            return "?"

    return {
        "uname": " ".join(platform.uname()),
        "nproc": os.cpu_count(),
        "cpu": sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2").strip(),
        "python": sys.version.split()[0],
        "mem_total": sh("grep MemTotal /proc/meminfo | awk '{print $2/1024/1024 \" GiB\"}'"),
        "versions": {
            "aiohttp": _version("aiohttp"),
            "azure-storage-blob": _version("azure-storage-blob"),
            "azurite": _azurite_version(),
            "original": ORIGINAL_VERSION,
            "asyncblobdict": _version("asyncblobdict"),
        },
        "git": sh(f"git -C {REPO} rev-parse --short HEAD") or "?",
    }


def _version(dist: str) -> str:
    import importlib.metadata as md

    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return "missing"


def _azurite_version() -> str:
    try:
        data = json.loads((REPO / "node_modules" / "azurite" / "package.json").read_text())
        return str(data.get("version", "?"))
    except OSError:
        return "missing"


def _utc() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="few ops, 3 rounds (smoke run)")
    ap.add_argument(
        "--only",
        choices=["local", "azure", "import"],
        action="append",
        help="run only these parts (repeatable); writes to results/partial/, never published",
    )
    ap.add_argument("--rounds", type=int, default=None, help="rounds (default 7, quick 3)")
    args = ap.parse_args()
    parts = args.only or ["local", "azure", "import"]
    rounds = args.rounds or (3 if args.quick else 7)
    published = not args.quick and not args.only
    if published and rounds < 7:
        ap.error("a published run needs at least 7 rounds (use --quick or --only to try less)")
    # Only a full run writes the published files: a table comes from one run, never merged.
    if args.quick:
        out_dir = RESULTS / "quick"
    elif args.only:
        out_dir = RESULTS / "partial"
    else:
        out_dir = RESULTS
    chart = REPO / "docs" / "performance.png" if published else out_dir / "performance.png"
    out_dir.mkdir(parents=True, exist_ok=True)

    started = time.perf_counter()
    meta: dict[str, Any] = {
        **machine_info(),
        "format": FORMAT,
        "quick": args.quick,
        "partial": bool(args.only),
        "published": published,
        "rounds": rounds,
        "command": " ".join(["python", "benchmarks/run.py", *sys.argv[1:]]),
        "date": _utc(),
        "loadavg_start": os.getloadavg()[0],
    }
    log(
        f"{meta['command']}: {rounds} rounds of {', '.join(parts)}; "
        f"load {meta['loadavg_start']:.2f}"
    )
    if meta["loadavg_start"] > (os.cpu_count() or 1):
        log(
            f"load {meta['loadavg_start']:.1f} on {os.cpu_count()} CPUs: the run takes longer "
            "than its budget and the spreads widen (verdicts turn 'within noise')"
        )
    orig_py = original_python()
    with ExitStack() as stack:
        sections: list[Section] = []
        if "local" in parts:
            for fs, base in (("tmpfs", "/dev/shm"), ("disk", tempfile.gettempdir())):
                if os.path.isdir(base):
                    sections.append(local_section(fs, base, args.quick, orig_py, stack))
        azure = None
        if "azure" in parts:
            azure = AzureServers(args.quick, stack)
            stack.callback(azure.end_round)
            sections.append(azure_section(args.quick))
        import_runs = 0
        if "import" in parts:
            _warm_imports(orig_py)
            import_runs = 3 if args.quick else 7
        outcome = run_rounds(sections, rounds, orig_py, azure, import_runs)
    meta["loadavg_end"] = os.getloadavg()[0]
    meta["finished"] = _utc()
    meta["seconds"] = round(time.perf_counter() - started, 1)
    results: dict[str, Any] = {
        "meta": meta,
        "sections": {s.name: {**s.info, "runs": s.runs} for s in sections},
        "import": (
            {"commands": IMPORTS, "runs_per_round": import_runs, "rounds": outcome["imports"]}
            if import_runs
            else None
        ),
        "failures": outcome["failures"],
    }
    results_path = out_dir / "results.json"
    results_path.write_text(json.dumps(results, indent=1))
    md = write_report(results, out_dir / "results.md", chart, docs=published)
    log(f"wrote {results_path}, {out_dir / 'results.md'}, {chart} in {meta['seconds']}s")
    print(md)


if __name__ == "__main__":
    main()
