"""Fixtures for the Azure backend tests: one Azurite per session, fresh containers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from asyncblobdict.adapters.azure import AzureBlobAdapter
from tests.azure.azurite import Azurite, new_container_name


@pytest.fixture
def azurite_connection_string(azurite: Azurite) -> str:
    """An account-key connection string for the session's Azurite."""
    return azurite.connection_string


@pytest.fixture
def azure_container() -> str:
    """A fresh, never-used container name."""
    return new_container_name()


@pytest.fixture
async def azure_adapter_factory(
    azurite: Azurite,
) -> AsyncIterator[Callable[..., AzureBlobAdapter]]:
    """Make adapters on Azurite with any options; all are closed after the test."""
    made: list[AzureBlobAdapter] = []

    def make(**options: Any) -> AzureBlobAdapter:
        adapter: AzureBlobAdapter = azurite.new_adapter(**options)
        made.append(adapter)
        return adapter

    yield make
    for adapter in made:
        await adapter.close()


@pytest.fixture
async def azure_adapter(
    azure_adapter_factory: Callable[..., AzureBlobAdapter],
) -> AzureBlobAdapter:
    """An adapter with default options."""
    return azure_adapter_factory()
