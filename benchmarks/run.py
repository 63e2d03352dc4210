"""Benchmarks of asyncblobdict against its peers, side by side on this machine.

    python benchmarks/run.py [--quick] [--only local|azure|import] [--repeats N]

Peers: the original asyncblobdict 0.1.133 from PyPI (installed into benchmarks/.venv-original
on first use), a bare syscall loop (the local floor, with and without one asyncio.to_thread
hop per op), the official azure-storage-blob async SDK and a bare aiohttp loop with a
hand-written SharedKey signer (the Azure floor), against a private in-memory Azurite.

Every workload runs in a fresh subprocess of benchmarks/worker.py, the same script for every
implementation; repeats are interleaved across implementations and the median is reported.
Writes benchmarks/results/results.json and results.md and the chart docs/performance.png.
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
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

# Sibling modules: Python puts a script's own folder first on sys.path.
from azurite import ACCOUNT, KEY, Azurite
from report import write_report

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS = HERE / "results"
ORIGINAL_VENV = HERE / ".venv-original"
ORIGINAL_VERSION = "0.1.133"
MiB = 1024 * 1024


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


def run_worker(python: str, spec: dict[str, Any], timeout: float = 900) -> dict[str, Any]:
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


def median_results(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Median of each metric over repeated runs of the same workload."""
    out: dict[str, Any] = {}
    for metric in runs[0]:
        vals = [r[metric] for r in runs if metric in r]
        out[metric] = statistics.median(vals)
    out["repeats"] = len(runs)
    out["ops_s_runs"] = [round(r.get("ops_s", 0), 1) for r in runs]
    return out


# --------------------------------------------------------------------- workloads


def local_workloads(quick: bool) -> dict[str, dict[str, Any]]:
    q = quick
    return {
        "set_json_seq": {"op": "set_json", "n": 100 if q else 1000},
        "set_json_c64": {"op": "set_json", "n": 640 if q else 3200, "tasks": 64},
        "get_json_seq": {"op": "get_json", "n": 500 if q else 5000},
        "get_json_c64": {"op": "get_json", "n": 640 if q else 6400, "tasks": 64},
        "set_json_seq_wt": {"op": "set_json", "n": 100 if q else 1000, "cache": "write_through"},
        "get_json_cached": {
            "op": "get_json_cached",
            "n": 5000 if q else 100_000,
            "cache": "write_through",
        },
        "set_binary_1m": {"op": "set_binary", "n": 10 if q else 50, "size": MiB, "keys": 4},
        "get_binary_1m": {"op": "get_binary", "n": 20 if q else 100, "size": MiB, "keys": 4},
        "set_binary_64m": {
            "op": "set_binary",
            "n": 1 if q else 3,
            "size": 64 * MiB,
            "keys": 1,
            "warmup": 1,
        },
        "get_binary_64m": {
            "op": "get_binary",
            "n": 1 if q else 5,
            "size": 64 * MiB,
            "keys": 1,
            "warmup": 1,
        },
        "list_10k": {
            "op": "list",
            "n": 1 if q else 3,
            "container": "lst",
            "prefix": "list",
            "populate": 10_000,
            "expect": 10_000,
        },
    }


WRITES = ["set_json_seq", "set_json_c64", "set_binary_1m", "set_binary_64m"]
FLOOR = [
    "set_json_seq",
    "set_json_c64",
    "get_json_seq",
    "get_json_c64",
    "set_binary_1m",
    "get_binary_1m",
    "set_binary_64m",
    "get_binary_64m",
    "list_10k",
]

# variant -> (impl, spec extras, workloads (None: all))
LOCAL_VARIANTS: dict[str, tuple[str, dict[str, Any], list[str] | None]] = {
    "ours": ("ours", {"durable": True}, None),
    "ours_nondurable": ("ours", {"durable": False}, [*WRITES, "set_json_seq_wt"]),
    "original": ("original", {}, None),
    "floor_async": ("floor", {"durable": True, "hop": True}, FLOOR),
    "floor_async_nondurable": ("floor", {"durable": False, "hop": True}, WRITES),
    "floor_sync": ("floor", {"durable": True, "hop": False}, FLOOR),
    "floor_sync_nondurable": ("floor", {"durable": False, "hop": False}, WRITES),
}


def azure_workloads(quick: bool) -> dict[str, dict[str, Any]]:
    q = quick
    return {
        "put_small_seq": {"op": "set_json", "n": 150 if q else 1000},
        "get_small_seq": {"op": "get_json", "n": 200 if q else 1500},
        "put_small_c64": {"op": "set_json", "n": 640 if q else 3200, "tasks": 64},
        "get_small_c64": {"op": "get_json", "n": 640 if q else 3200, "tasks": 64},
        "put_1m": {"op": "set_binary", "n": 8 if q else 40, "size": MiB, "keys": 4},
        "get_1m": {"op": "get_binary", "n": 8 if q else 40, "size": MiB, "keys": 4},
        "put_64m": {
            "op": "set_binary",
            "n": 1 if q else 3,
            "size": 64 * MiB,
            "keys": 1,
            "warmup": 1,
        },
        "get_64m": {
            "op": "get_binary",
            "n": 1 if q else 3,
            "size": 64 * MiB,
            "keys": 1,
            "warmup": 1,
        },
        "list_10k": {
            "op": "list",
            "n": 1 if q else 3,
            "container": "list10k",
            "prefix": "list",
            "expect": 10_000,
        },
        "get_json_cached": {
            "op": "get_json_cached",
            "n": 5000 if q else 100_000,
            "cache": "write_through",
        },
    }


AZURE_VARIANTS: dict[str, tuple[str, list[str] | None]] = {
    "ours": ("ours", None),
    "sdk": ("sdk", [w for w in azure_workloads(True) if w != "get_json_cached"]),
    "bare": ("bare", [w for w in azure_workloads(True) if w != "get_json_cached"]),
}


def _named(
    workloads: dict[str, dict[str, Any]], names: list[str] | None, **extra: Any
) -> list[dict[str, Any]]:
    return [
        {"name": n, "prefix": n, **extra, **w}
        for n, w in workloads.items()
        if names is None or n in names
    ]


# -------------------------------------------------------------------------- local


def bench_local(quick: bool, repeats: int, orig_py: str) -> dict[str, Any]:
    filesystems = {"tmp": tempfile.gettempdir(), "shm": "/dev/shm"}
    if not os.path.isdir("/dev/shm"):
        del filesystems["shm"]
    workloads = local_workloads(quick)
    out: dict[str, Any] = {}
    for fs, base in filesystems.items():
        runs: dict[str, dict[str, list[dict[str, Any]]]] = {}
        for rep in range(repeats):
            for variant, (impl, extras, names) in LOCAL_VARIANTS.items():
                root = tempfile.mkdtemp(prefix=f"abd-bench-{variant}-", dir=base)
                try:
                    spec = {
                        "impl": impl,
                        "backend": "local",
                        "root": root,
                        "container": "bench",
                        **extras,
                        "workloads": _named(workloads, names, sync_fs=True),
                    }
                    py = orig_py if impl == "original" else sys.executable
                    t0 = time.perf_counter()
                    res = run_worker(py, spec)["results"]
                    log(
                        f"local/{fs} rep {rep + 1}/{repeats} {variant}: "
                        f"{time.perf_counter() - t0:.1f}s"
                    )
                finally:
                    shutil.rmtree(root, ignore_errors=True)
                    os.sync()  # the deletes' journal writes land here, not in the next run
                for name, r in res.items():
                    runs.setdefault(variant, {}).setdefault(name, []).append(r)
        out[fs] = {
            "path": base,
            "fstype": _fstype(base),
            "variants": {
                v: {n: median_results(rs) for n, rs in ws.items()} for v, ws in runs.items()
            },
        }
    return out


def memory_local(quick: bool, orig_py: str) -> dict[str, Any]:
    """Peak memory of one 64 MiB set/get in fresh processes (tmp filesystem)."""
    out: dict[str, Any] = {}
    reps = 1 if quick else 3
    for variant, impl, extras in (
        ("ours", "ours", {"durable": True}),
        ("original", "original", {}),
        ("floor_async", "floor", {"durable": True, "hop": True}),
    ):
        root = tempfile.mkdtemp(prefix=f"abd-mem-{variant}-")
        try:
            per: dict[str, list[dict[str, Any]]] = {}
            for _ in range(reps):
                for op in ("set_binary", "get_binary"):
                    spec = {
                        "impl": impl,
                        "backend": "local",
                        "root": root,
                        "container": "mem",
                        **extras,
                        "memory": {"op": op, "size": 64 * MiB},
                    }
                    py = orig_py if impl == "original" else sys.executable
                    per.setdefault(op, []).append(run_worker(py, spec)["memory"])
            out[variant] = {op: median_results(rs) for op, rs in per.items()}
        finally:
            shutil.rmtree(root, ignore_errors=True)
    return out


def _fstype(path: str) -> str:
    try:
        best, kind = "", "?"
        with open("/proc/mounts") as f:
            for line in f:
                parts = line.split()
                mnt, typ = parts[1], parts[2]
                real = os.path.realpath(path)
                if (real == mnt or real.startswith(mnt.rstrip("/") + "/")) and len(mnt) > len(best):
                    best, kind = mnt, typ
        return kind
    except OSError:
        return "?"


# -------------------------------------------------------------------------- azure


async def _populate_list(endpoint: str, count: int) -> None:
    from sharedkey import BareBlobClient

    c = BareBlobClient(endpoint, ACCOUNT, KEY)
    try:
        await c.create_container("list10k")
        sem = asyncio.Semaphore(64)

        async def put(i: int) -> None:
            async with sem:
                await c.put("list10k", f"list/k{i}", b"x" * 64)

        await asyncio.gather(*(put(i) for i in range(count)))
    finally:
        await c.close()


def bench_azure(quick: bool, repeats: int) -> dict[str, Any]:
    """Each repeat gets a fresh Azurite: in-memory Azurite keeps overwritten 64 MiB extents
    until its (slow) garbage collection, and would run out of its extent memory."""
    workloads = azure_workloads(quick)
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {}
    memory: dict[str, Any] = {}
    for rep in range(repeats):
        with Azurite(memory_limit_mb=2048) as az:
            log(f"Azurite on port {az.port}")
            base: dict[str, Any] = {
                "backend": "azure",
                "endpoint": az.endpoint,
                "account": ACCOUNT,
                "key": KEY,
            }
            # Azurite's in-memory store slows every request down 2-3x once it holds 10,000
            # blobs, so list_10k runs last, after the other workloads of all variants.
            for phase in ("main", "list"):
                if phase == "list":
                    t0 = time.perf_counter()
                    asyncio.run(_populate_list(az.endpoint, 10_000))
                    log(f"populated 10,000 blobs in {time.perf_counter() - t0:.1f}s")
                for variant, (impl, names) in AZURE_VARIANTS.items():
                    chosen = [
                        w
                        for w in (names or list(workloads))
                        if (w == "list_10k") == (phase == "list")
                    ]
                    spec = {
                        **base,
                        "impl": impl,
                        "container": f"bench-{variant.replace('_', '-')}",
                        "workloads": _named(workloads, chosen),
                    }
                    t0 = time.perf_counter()
                    res = run_worker(sys.executable, spec)["results"]
                    log(
                        f"azure rep {rep + 1}/{repeats} {variant} {phase}: "
                        f"{time.perf_counter() - t0:.1f}s (Azurite RSS {az.rss_mb() or 0:.0f} MB)"
                    )
                    for name, r in res.items():
                        runs.setdefault(variant, {}).setdefault(name, []).append(r)
    reps = 1 if quick else 3
    with Azurite(memory_limit_mb=2048) as az:
        base = {
            "backend": "azure",
            "endpoint": az.endpoint,
            "account": ACCOUNT,
            "key": KEY,
        }
        for variant, (impl, _) in AZURE_VARIANTS.items():
            per: dict[str, list[dict[str, Any]]] = {}
            for _ in range(reps):
                for op in ("set_binary", "get_binary"):
                    spec = {
                        **base,
                        "impl": impl,
                        "container": "mem",
                        "memory": {"op": op, "size": 64 * MiB, "key": f"mem/{variant}"},
                    }
                    per.setdefault(op, []).append(run_worker(sys.executable, spec)["memory"])
            memory[variant] = {op: median_results(rs) for op, rs in per.items()}
        log(f"azure memory done (Azurite RSS {az.rss_mb() or 0:.0f} MB)")
    return {
        "variants": {v: {n: median_results(rs) for n, rs in ws.items()} for v, ws in runs.items()},
        "memory": memory,
    }


# ------------------------------------------------------------------------- import


def bench_import(quick: bool, orig_py: str) -> dict[str, Any]:
    runs = 7 if quick else 30
    cmds = {
        "asyncio": [sys.executable, "-c", "import asyncio"],
        "ours": [sys.executable, "-c", "import asyncblobdict"],
        "ours_azure": [
            sys.executable,
            "-c",
            "import asyncblobdict; asyncblobdict.AzureBlobAdapter",
        ],
        "original": [orig_py, "-c", "import asyncblobdict"],
        "aiohttp": [sys.executable, "-c", "import aiohttp"],
        "azure_sdk": [sys.executable, "-c", "import azure.storage.blob.aio"],
        "python_empty": [sys.executable, "-c", "pass"],
    }
    cwd = tempfile.gettempdir()
    for cmd in cmds.values():  # warm the page cache and .pyc files
        subprocess.run(cmd, check=True, cwd=cwd)
    times: dict[str, list[float]] = {k: [] for k in cmds}
    for _ in range(runs):
        for name, cmd in cmds.items():  # interleaved, so load changes hit all alike
            t0 = time.perf_counter()
            subprocess.run(cmd, check=True, cwd=cwd)
            times[name].append(time.perf_counter() - t0)
    labels = {"original": " (benchmarks/.venv-original, 0.1.133)"}
    out: dict[str, Any] = {
        "runs": runs,
        "commands": {
            k: "python " + " ".join(repr(a) if " " in a else a for a in v[1:]) + labels.get(k, "")
            for k, v in cmds.items()
        },
    }
    out["median_ms"] = {k: statistics.median(v) * 1000 for k, v in times.items()}
    out["min_ms"] = {k: min(v) * 1000 for k, v in times.items()}
    out["importtime"] = {
        "ours": _importtime([sys.executable, "-X", "importtime", "-c", "import asyncblobdict"]),
        "ours_azure": _importtime(
            [
                sys.executable,
                "-X",
                "importtime",
                "-c",
                "import asyncblobdict; asyncblobdict.AzureBlobAdapter",
            ]
        ),
    }
    return out


def _importtime(cmd: list[str], top: int = 12) -> list[dict[str, Any]]:
    """The heaviest imports by cumulative time that ``import asyncio`` does not already load."""
    base = _parse_importtime(
        subprocess.run(
            [cmd[0], "-X", "importtime", "-c", "import asyncio"],
            capture_output=True,
            text=True,
            cwd=tempfile.gettempdir(),
        ).stderr
    )
    best: dict[str, tuple[int, int]] = {}
    for _ in range(5):
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tempfile.gettempdir())
        for name, (self_us, cum_us) in _parse_importtime(proc.stderr).items():
            if name in base:
                continue
            old = best.get(name)
            best[name] = (
                (self_us, cum_us) if old is None else (min(old[0], self_us), min(old[1], cum_us))
            )
    rows = sorted(best.items(), key=lambda kv: -kv[1][1])[:top]
    return [{"module": n, "self_us": s, "cumulative_us": c} for n, (s, c) in rows]


def _parse_importtime(text: str) -> dict[str, tuple[int, int]]:
    out: dict[str, tuple[int, int]] = {}
    for line in text.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        try:
            _, rest = line.split(":", 1)
            self_us, cum_us, name = rest.split("|", 2)
            out[name.strip()] = (int(self_us), int(cum_us))
        except ValueError:
            continue
    return out


# ---------------------------------------------------------------------------- main


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
        "tmp_fs": f"{tempfile.gettempdir()} ({_fstype(tempfile.gettempdir())})",
        "disks": sh("lsblk -d -o NAME,ROTA,TYPE,SIZE 2>/dev/null | tr -s ' '"),
        "loadavg_start": sh("cat /proc/loadavg"),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "versions": {
            "aiohttp": _version("aiohttp"),
            "azure-storage-blob": _version("azure-storage-blob"),
            "azurite": _azurite_version(),
            "original": ORIGINAL_VERSION,
        },
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes, 1 repeat (smoke test)")
    ap.add_argument(
        "--only",
        choices=["local", "azure", "import"],
        action="append",
        help="run only these parts (repeatable)",
    )
    ap.add_argument("--repeats", type=int, default=None, help="repeats (default 3, quick 1)")
    ap.add_argument("--out", default=None, help="results folder (quick: results/quick)")
    ap.add_argument("--chart", default=None, help="chart path (quick: in the results folder)")
    args = ap.parse_args()
    # A smoke run never overwrites the published results or docs/performance.png.
    if args.out is None:
        args.out = str(RESULTS / "quick") if args.quick else str(RESULTS)
    if args.chart is None:
        args.chart = (
            str(Path(args.out) / "performance.png")
            if args.quick
            else str(REPO / "docs" / "performance.png")
        )
    parts = args.only or ["local", "azure", "import"]
    repeats = args.repeats or (1 if args.quick else 3)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    results_path = out_dir / "results.json"

    # --only merges into the previous results, so parts can be re-run one at a time.
    results: dict[str, Any] = {}
    if args.only and results_path.exists():
        results = json.loads(results_path.read_text())
    started = time.perf_counter()
    results["meta"] = {
        **machine_info(),
        "quick": args.quick,
        "repeats": repeats,
        "command": " ".join(["python", "benchmarks/run.py", *sys.argv[1:]]),
    }
    orig_py = original_python()
    if "import" in parts:
        log("import times")
        results["import"] = bench_import(args.quick, orig_py)
    if "local" in parts:
        results["local"] = bench_local(args.quick, repeats, orig_py)
        log("local memory")
        results["local_memory"] = memory_local(args.quick, orig_py)
    if "azure" in parts:
        results["azure"] = bench_azure(args.quick, repeats)
    results["meta"]["seconds"] = round(time.perf_counter() - started, 1)
    results_path.write_text(json.dumps(results, indent=1))
    md = write_report(results, out_dir / "results.md", Path(args.chart))
    log(
        f"wrote {results_path}, {out_dir / 'results.md'}, {args.chart} "
        f"in {results['meta']['seconds']}s"
    )
    print(md)


if __name__ == "__main__":
    main()
