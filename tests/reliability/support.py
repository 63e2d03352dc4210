"""Helpers of the reliability suite: sizes, result files, Azurite access, secrets.

Every scenario's size comes from an environment variable (see docs/reliability.md);
``ABD_RELIABILITY_SCALE`` multiplies every default at once. Each scenario prints its counts
and writes them to ``$ABD_RELIABILITY_RESULTS/<scenario>.json`` (default: a temporary folder
of the pytest session, never the working folder), from which the figures in
docs/reliability.md come.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tests.azure.azurite import DEV_ACCOUNT, DEV_KEY

if TYPE_CHECKING:
    from asyncblobdict.adapters.azure import AzureBlobAdapter

__all__ = [
    "REPO_ROOT",
    "AzuriteInfo",
    "LogCollector",
    "SecretWatch",
    "azure_fast_options",
    "child_env",
    "record",
    "results_dir",
    "use_default_results_dir",
    "scale",
    "size",
]


def scale() -> float:
    return float(os.environ.get("ABD_RELIABILITY_SCALE", "1"))


def size(name: str, default: int, minimum: int = 1, *, scaled: bool = True) -> int:
    """The size of a scenario: ``$name`` if set, else ``default`` (times the global scale
    when ``scaled``; a shape such as a concurrency level is not a size and stays put)."""
    raw = os.environ.get(name)
    if raw:
        return max(minimum, int(raw))
    return max(minimum, round(default * scale()) if scaled else default)


_default_results: list[Path] = []  # the session's temporary folder, once made


def use_default_results_dir(path: Path) -> None:
    """Make ``path`` the folder for results when ABD_RELIABILITY_RESULTS is not set."""
    _default_results[:] = [path]


def results_dir() -> Path:
    """$ABD_RELIABILITY_RESULTS, else the session's temporary folder (else a new one)."""
    chosen = os.environ.get("ABD_RELIABILITY_RESULTS")
    if chosen:
        return Path(chosen)
    if not _default_results:
        _default_results.append(Path(tempfile.mkdtemp(prefix="abd-reliability-results-")))
    return _default_results[0]


def record(scenario: str, counts: dict[str, Any]) -> None:
    """Print a scenario's counts and write them, with the machine, to a JSON file."""
    payload = {
        "scenario": scenario,
        "counts": counts,
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {
            "uname": " ".join(platform.uname()),
            "cpus": os.cpu_count(),
            "python": sys.version.split()[0],
        },
        "env": {k: v for k, v in os.environ.items() if k.startswith("ABD_")},
    }
    out = results_dir()
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{scenario}.json"
    path.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
    print(f"\n[reliability] {scenario}: {json.dumps(counts, sort_keys=True)} ({path})")


# ----------------------------------------------------------------------------- Azurite


@dataclass
class AzuriteInfo:
    """Where Azurite listens, and how to make adapters for it (directly or via a proxy)."""

    endpoint: str  # http://127.0.0.1:PORT/devstoreaccount1

    @property
    def port(self) -> int:
        from urllib.parse import urlsplit

        port = urlsplit(self.endpoint).port
        assert port is not None
        return port

    def connection_string(self, endpoint: str | None = None) -> str:
        return (
            f"DefaultEndpointsProtocol=http;AccountName={DEV_ACCOUNT};AccountKey={DEV_KEY};"
            f"BlobEndpoint={endpoint or self.endpoint};"
        )

    def new_adapter(self, endpoint: str | None = None, **options: Any) -> AzureBlobAdapter:
        from asyncblobdict import AzureBlobAdapter

        return AzureBlobAdapter.from_connection_string(self.connection_string(endpoint), **options)


# ----------------------------------------------------------------------------- secrets


@dataclass
class SecretWatch:
    """Collects every log line, repr and exception text seen while a scenario runs."""

    secrets: dict[str, str] = field(default_factory=dict)
    texts: list[str] = field(default_factory=list)
    records: int = 0

    def add_secret(self, name: str, value: str) -> None:
        if value:
            self.secrets[name] = value

    def see(self, obj: Any) -> None:
        """Remember repr/str of an object, and the full traceback text of an exception."""
        if isinstance(obj, BaseException):
            self.texts.append("".join(traceback.format_exception(obj)))
            seen: set[int] = set()
            exc: BaseException | None = obj
            while exc is not None and id(exc) not in seen:
                seen.add(id(exc))
                self.texts.append(f"{exc!s} {exc!r} {exc.args!r}")
                # What Python itself shows: the cause, or the context unless suppressed
                # (``raise ... from None``).
                exc = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)
        else:
            self.texts.append(f"{obj!s} {obj!r}")

    def leaks(self) -> list[str]:
        found = []
        for name, secret in self.secrets.items():
            variants = {secret}
            from urllib.parse import quote

            variants.add(quote(secret, safe=""))
            variants.add(quote(secret))
            for text in self.texts:
                if any(v in text for v in variants):
                    found.append(f"{name} appears in: {text[:300]!r}")
                    break
        return found


class LogCollector(logging.Handler):
    """A logging handler that hands every record's text (and traceback) to a SecretWatch."""

    def __init__(self, watch: SecretWatch) -> None:
        super().__init__(logging.DEBUG)
        self.watch = watch

    def emit(self, record: logging.LogRecord) -> None:
        self.watch.records += 1
        try:
            text = record.getMessage()
        except Exception as exc:  # a bad format string is itself worth seeing
            text = f"{record.msg!r} {record.args!r} ({exc})"
        if record.exc_info and record.exc_info[1] is not None:
            text += "\n" + "".join(traceback.format_exception(record.exc_info[1]))
        self.watch.texts.append(f"{record.name}: {text}")


REPO_ROOT = Path(__file__).resolve().parents[2]


def child_env() -> dict[str, str]:
    """Environment for child processes: they import the package from this checkout."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    return env


def azure_fast_options(timeout: float, **extra: Any) -> dict[str, Any]:
    """AzureBlobAdapter options for the fault scenarios: short timeouts, quick retries."""
    from asyncblobdict.adapters.azure import RetryPolicy

    options: dict[str, Any] = {
        "retry": RetryPolicy(max_attempts=5, base_delay=0.01, max_delay=0.1, total_timeout=15),
        "request_timeout": timeout,
        "connect_timeout": timeout,
    }
    options.update(extra)
    return options
