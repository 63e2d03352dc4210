"""Start and stop a private in-memory Azurite for the benchmarks."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

ACCOUNT = "devstoreaccount1"
KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
REPO = Path(__file__).resolve().parent.parent


class Azurite:
    def __init__(self, memory_limit_mb: int = 2048) -> None:
        self.memory_limit_mb = memory_limit_mb
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.log_path = ""

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}/{ACCOUNT}"

    @property
    def connection_string(self) -> str:
        return (
            f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={KEY};"
            f"BlobEndpoint={self.endpoint};"
        )

    def start(self, timeout: float = 30.0) -> Azurite:
        binary = REPO / "node_modules" / ".bin" / "azurite-blob"
        if not binary.exists():
            raise RuntimeError(f"{binary} is missing: run `npm ci` in {REPO}")
        fd, self.log_path = tempfile.mkstemp(prefix="bench-azurite-", suffix=".log")
        log = os.fdopen(fd, "wb")
        self.proc = subprocess.Popen(
            [
                str(binary),
                "--blobHost",
                "127.0.0.1",
                "--blobPort",
                "0",
                "--inMemoryPersistence",
                "--extentMemoryLimit",
                str(self.memory_limit_mb),
                "--disableTelemetry",
                "--silent",
                "--skipApiVersionCheck",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=str(REPO),
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = Path(self.log_path).read_text(errors="replace")
            m = re.search(r"listens on http://127\.0\.0\.1:(\d+)", text)
            if m:
                self.port = int(m.group(1))
                break
            if self.proc.poll() is not None:
                raise RuntimeError(f"Azurite exited: {text[-2000:]}")
            time.sleep(0.1)
        else:
            self.stop()
            raise RuntimeError("Azurite did not start in time")
        # Wait until it answers HTTP.
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(self.endpoint + "?comp=list", timeout=1)
            except urllib.error.HTTPError:
                return self
            except OSError:
                time.sleep(0.1)
                continue
            return self
        return self

    def rss_mb(self) -> float | None:
        if self.proc is None:
            return None
        try:
            for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        except OSError:
            return None
        return None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        if self.log_path:
            with contextlib.suppress(OSError):
                os.unlink(self.log_path)
            self.log_path = ""

    def __enter__(self) -> Azurite:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
