"""Shared fixtures: the behavioural suite runs against every adapter.

``backend`` is parametrised over memory, local and azure; the azure case starts Azurite
once per session (see tests/azure/azurite.py) and skips without Node unless
AZURITE_REQUIRED=1.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis.configuration import set_hypothesis_home_dir

from asyncblobdict import AsyncBlobStore, LocalFileAdapter, MemoryAdapter
from asyncblobdict.adapters.base import Adapter
from tests.azure.azurite import Azurite, azurite_for_session

BACKENDS = ["memory", "local", pytest.param("azure", marks=pytest.mark.azure)]

# Hypothesis keeps its example database and caches in ./.hypothesis unless told otherwise:
# a folder of the system's temporary directory instead, kept across runs (failing examples
# are replayed) and never in the working folder or the repository.
set_hypothesis_home_dir(Path(tempfile.gettempdir()) / f"asyncblobdict-hypothesis-{os.getuid()}")


def new_container() -> str:
    """A container name valid on every backend (Azure's rules are the strictest)."""
    return "t" + uuid.uuid4().hex[:20]


@pytest.fixture(scope="session")
def azurite(pytestconfig: pytest.Config) -> Azurite:
    """The running Azurite (started once per session; skips when unavailable)."""
    return azurite_for_session(pytestconfig)


@pytest.fixture
def container() -> str:
    return new_container()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], Adapter]:
    """A factory of adapters that all see the same storage (one test's worth)."""
    kind = request.param
    if kind == "memory":
        shared = MemoryAdapter()
        return lambda: shared
    if kind == "local":
        root = tmp_path / "store"
        return lambda: LocalFileAdapter(root)
    server: Azurite = request.getfixturevalue("azurite")
    return server.new_adapter


@pytest.fixture
async def store_factory(
    backend: Callable[[], Adapter], container: str
) -> AsyncIterator[Callable[..., AsyncBlobStore]]:
    """Make stores on one container of the backend; all are closed after the test."""
    made: list[AsyncBlobStore] = []

    def make(**options: Any) -> AsyncBlobStore:
        store = AsyncBlobStore(backend(), options.pop("container", container), **options)
        made.append(store)
        return store

    yield make
    for store in made:
        store.discard_changes()
        await store.close()
