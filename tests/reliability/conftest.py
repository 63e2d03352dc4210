"""Fixtures of the reliability suite; its helpers live in tests/reliability/support.py."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator

import pytest

from tests.azure.azurite import DEV_KEY, Azurite
from tests.reliability.support import (
    AzuriteInfo,
    LogCollector,
    SecretWatch,
    use_default_results_dir,
)


@pytest.fixture(scope="session", autouse=True)
def _results_in_a_temporary_folder(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Without ABD_RELIABILITY_RESULTS the scenarios' counts go to a folder of this session
    under pytest's temporary root, never into the working folder."""
    if not os.environ.get("ABD_RELIABILITY_RESULTS"):
        use_default_results_dir(tmp_path_factory.mktemp("reliability-results"))


@pytest.fixture(scope="session")
def rel_azurite(azurite: Azurite) -> AzuriteInfo:
    """The session's Azurite (the root conftest's ``azurite`` fixture, shared by all tests).

    ``AZURITE_BLOB_ENDPOINT`` names a running one; otherwise tests/azure/azurite.py starts it
    once per session, and skips (or fails, with AZURITE_REQUIRED=1) without Node.
    """
    return AzuriteInfo(azurite.endpoint.rstrip("/"))


@pytest.fixture
def secret_watch() -> Iterator[SecretWatch]:
    """DEBUG logging on for asyncblobdict (and aiohttp); fails the test if a secret leaks."""
    watch = SecretWatch()
    watch.add_secret("account key", DEV_KEY)
    handler = LogCollector(watch)
    loggers = [logging.getLogger(n) for n in ("asyncblobdict", "aiohttp", "")]
    saved = [(lg, lg.level) for lg in loggers]
    for lg in loggers[:2]:
        lg.setLevel(logging.DEBUG)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield watch
    finally:
        root.removeHandler(handler)
        for lg, level in saved:
            lg.setLevel(level)
    leaks = watch.leaks()
    assert not leaks, "\n".join(leaks)
