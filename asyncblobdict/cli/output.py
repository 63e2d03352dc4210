"""The command line's only way to talk to the user: stdout for results, stderr for the rest."""

from __future__ import annotations

import sys

__all__ = ["echo", "err", "human_bytes", "write_bytes"]


def echo(text: str = "") -> None:
    """Write one line of results to stdout."""
    sys.stdout.write(text + "\n")


def err(text: str) -> None:
    """Write one line of diagnostics to stderr."""
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def write_bytes(data: bytes) -> None:
    """Write raw bytes to stdout, exactly."""
    sys.stdout.flush()
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()


def human_bytes(n: int) -> str:
    """``1536`` -> ``'1.5 KiB'``; below 1 KiB the exact count."""
    if n < 1024:
        return f"{n} B"
    value = float(n)
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        value /= 1024
        if value < 1024 or unit == "TiB":
            return f"{value:.1f} {unit}"
    raise AssertionError("unreachable")  # pragma: no cover
