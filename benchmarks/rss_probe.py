"""Peak RSS in a child process (Linux /proc), for the benchmarks and the tests alike.

A child imports it as ``benchmarks.rss_probe`` (the repository root on its path: PYTHONPATH,
or the working folder of ``python -c``). Run as a module, it measures the command line:

    python -m benchmarks.rss_probe [--preload MODULE]... CLI-ARGS...

imports the ``--preload`` modules, resets the peak (VmHWM) to the current RSS, runs
``asyncblobdict CLI-ARGS`` in this process, and prints one JSON line
``{"code": exit code, "before": RSS at the reset, "peak": VmHWM after}`` in bytes.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
from collections.abc import AsyncIterator

MiB = 1024 * 1024


def status(name: str) -> int:
    """A size in bytes from /proc/self/status (``VmRSS``, ``VmHWM``, ...)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(name + ":"):
                return int(line.split()[1]) * 1024
    raise LookupError(f"no {name} in /proc/self/status")


def reset_peak() -> int:
    """Start the peak (VmHWM) afresh at the current RSS; return that RSS."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    return status("VmRSS")


async def chunks(size: int) -> AsyncIterator[bytes]:
    """``size`` bytes (a whole number of MiB) as one random MiB yielded again and again."""
    block = os.urandom(MiB)
    for _ in range(size // MiB):
        yield block


def main(argv: list[str]) -> int:
    preload = []
    while argv and argv[0] == "--preload":
        preload.append(argv[1])
        argv = argv[2:]
    from asyncblobdict.cli import main as cli

    for name in preload:
        importlib.import_module(name)
    before = reset_peak()
    code = cli(argv)
    print(json.dumps({"code": code, "before": before, "peak": status("VmHWM")}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
