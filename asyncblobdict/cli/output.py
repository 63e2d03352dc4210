"""The command line's only way to talk to the user: stdout for results, stderr for the rest."""

from __future__ import annotations

import sys

__all__ = [
    "echo",
    "err",
    "human_bytes",
    "no_key_starts_with",
    "no_such_container",
    "no_such_key",
    "write_bytes",
]


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


# The messages of things that are not there: every command words them the same way.


def no_such_key(key: str, container: str | None) -> str:
    """``no such key 'k' in container 'c'``: a missing key, whichever command looked for it."""
    return f"no such key {key!r} in container {container!r}"


def no_such_container(container: str, where: str) -> str:
    """``no such container 'c' (local:./data/c)``; ``where`` is the store's label."""
    return f"no such container {container!r} ({where})"


def no_key_starts_with(prefix: str, container: str) -> str:
    """``no key starts with 'p' in container 'c'``: a prefix that names nothing."""
    return f"no key starts with {prefix!r} in container {container!r}"
