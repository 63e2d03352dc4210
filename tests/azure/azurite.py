"""Start Azurite once per pytest session, or use one given by AZURITE_BLOB_ENDPOINT.

Plain module, usable from any conftest::

    from tests.azure.azurite import azurite_for_session

    @pytest.fixture(scope="session")
    def azurite(pytestconfig):
        return azurite_for_session(pytestconfig)   # skips, or fails if AZURITE_REQUIRED=1

The running instance is cached on the pytest config, so every conftest that asks gets the
same server, started once and stopped (SIGTERM) when the session ends.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from asyncblobdict.adapters.azure import AzureBlobAdapter

DEV_ACCOUNT = "devstoreaccount1"
DEV_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
REPO_ROOT = Path(__file__).resolve().parents[2]
_LISTENING = re.compile(r"listens on (http://[\w.\-]+:\d+)")
_CONFIG_ATTR = "_asyncblobdict_azurite"


class AzuriteUnavailable(RuntimeError):
    """Azurite could not be found or started."""


def new_container_name() -> str:
    """A fresh container name valid on Azure (3-63 lowercase letters/digits)."""
    return "t" + uuid.uuid4().hex[:20]


@dataclass
class Azurite:
    """A running Azurite blob service (ours, or external when ``process`` is None)."""

    endpoint: str  # e.g. http://127.0.0.1:PORT/devstoreaccount1
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    _stopped: bool = field(default=False, repr=False)

    @property
    def account_name(self) -> str:
        return DEV_ACCOUNT

    @property
    def account_key(self) -> str:
        return DEV_KEY

    @property
    def connection_string(self) -> str:
        return (
            f"DefaultEndpointsProtocol=http;AccountName={DEV_ACCOUNT};AccountKey={DEV_KEY};"
            f"BlobEndpoint={self.endpoint};"
        )

    def new_adapter(self, **options: Any) -> AzureBlobAdapter:
        """A fresh AzureBlobAdapter on this server (the caller closes it)."""
        from asyncblobdict.adapters.azure import AzureBlobAdapter

        return AzureBlobAdapter.from_connection_string(self.connection_string, **options)

    def stop(self) -> None:
        """SIGTERM our Azurite (by its own PID) and wait; a no-op for an external one."""
        if self._stopped or self.process is None:
            return
        self._stopped = True
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        if self.log_path is not None:
            self.log_path.unlink(missing_ok=True)


def find_azurite_binary() -> str | None:
    """node_modules/.bin/azurite-blob of this repository, if it and node are installed."""
    candidate = REPO_ROOT / "node_modules" / ".bin" / "azurite-blob"
    if candidate.exists() and shutil.which("node"):
        return str(candidate)
    return None


def start_azurite(binary: str | None = None, timeout: float = 30.0) -> Azurite:
    """Start azurite-blob in memory on a free port; return once it listens."""
    binary = binary or find_azurite_binary()
    if binary is None:
        raise AzuriteUnavailable("node or node_modules/.bin/azurite-blob not found (npm ci)")
    fd, name = tempfile.mkstemp(prefix="azurite-", suffix=".log")
    log_path = Path(name)
    with os.fdopen(fd, "wb") as log:
        # Output goes to a file: an unread pipe would block the server.
        process = subprocess.Popen(
            [
                binary,
                "--blobHost",
                "127.0.0.1",
                "--blobPort",
                "0",
                "--inMemoryPersistence",
                "--extentMemoryLimit",
                "4096",
                "--disableTelemetry",
                "--silent",
                "--skipApiVersionCheck",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    server = Azurite("", process, log_path)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = log_path.read_text(errors="replace")
        match = _LISTENING.search(text)
        if match:
            server.endpoint = f"{match.group(1)}/{DEV_ACCOUNT}"
            return server
        if process.poll() is not None:
            server.stop()
            raise AzuriteUnavailable(f"azurite-blob exited with {process.returncode}: {text}")
        time.sleep(0.05)
    text = log_path.read_text(errors="replace")
    server.stop()
    raise AzuriteUnavailable(f"azurite-blob did not start within {timeout} s: {text}")


def azurite_for_session(config: pytest.Config) -> Azurite:
    """The session's Azurite: external (AZURITE_BLOB_ENDPOINT) or started once, here.

    Missing node/Azurite skips the test, or fails it when AZURITE_REQUIRED=1.
    """
    cached = getattr(config, _CONFIG_ATTR, None)
    if isinstance(cached, Azurite):
        return cached
    if isinstance(cached, str):
        _unavailable(cached)
    external = os.environ.get("AZURITE_BLOB_ENDPOINT")
    if external:
        server = Azurite(external.rstrip("/"))
    else:
        try:
            server = start_azurite()
        except AzuriteUnavailable as exc:
            setattr(config, _CONFIG_ATTR, str(exc))
            _unavailable(str(exc))
        config.add_cleanup(server.stop)
    setattr(config, _CONFIG_ATTR, server)
    return server


def _unavailable(reason: str) -> None:
    if os.environ.get("AZURITE_REQUIRED") == "1":
        pytest.fail(f"Azurite is required (AZURITE_REQUIRED=1) but unavailable: {reason}")
    pytest.skip(f"Azurite unavailable: {reason}")
