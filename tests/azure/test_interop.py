"""Interop with the official SDK (azure-storage-blob 12.31.1, test-only dependency).

The package never imports the SDK; these tests prove that what we write, the SDK reads
byte-exact with the same ETag, and the other way round. The SDK's api_version is pinned to
what Azurite 3.35 accepts.
"""

from __future__ import annotations

import logging
import os
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from asyncblobdict.adapters.azure import AzureBlobAdapter
from tests.azure.azurite import Azurite

pytestmark = pytest.mark.azure

blob_aio = pytest.importorskip("azure.storage.blob.aio")
blob_sync = pytest.importorskip("azure.storage.blob")

API_VERSION = "2025-11-05"


def sdk_service(azurite: Azurite) -> Any:
    return blob_aio.BlobServiceClient.from_connection_string(
        azurite.connection_string, api_version=API_VERSION
    )


@pytest.mark.parametrize("size", [0, 1, 1000, 64 * 1024 * 1024 + 7], ids=["0", "1", "1k", "64M"])
async def test_we_write_sdk_reads(azurite: Azurite, azure_container: str, size: int) -> None:
    data = os.urandom(size)
    adapter = azurite.new_adapter()
    key = "dir/ünï cødé+&%.bin"
    etag = await adapter.put(azure_container, key, data)
    async with sdk_service(azurite) as service:
        blob = service.get_blob_client(azure_container, key)
        downloader = await blob.download_blob(max_concurrency=4)
        assert await downloader.readall() == data
        props = await blob.get_blob_properties()
        assert props.etag == etag and props.size == size
    await adapter.close()


@pytest.mark.parametrize("size", [0, 1, 1000, 64 * 1024 * 1024 + 7], ids=["0", "1", "1k", "64M"])
async def test_sdk_writes_we_read(azurite: Azurite, azure_container: str, size: int) -> None:
    data = os.urandom(size)
    key = "sdk/wrote this + that & 100%"
    async with sdk_service(azurite) as service:
        await service.create_container(azure_container)
        blob = service.get_blob_client(azure_container, key)
        result = await blob.upload_blob(data, max_concurrency=4)
        sdk_etag = result["etag"]
    adapter = azurite.new_adapter()
    got, info = await adapter.get(azure_container, key)
    etag = info.etag
    assert got == data and etag == sdk_etag
    head = await adapter.head(azure_container, key)
    assert head is not None and head.etag == sdk_etag and head.size == size
    assert [i.key async for i in adapter.list(azure_container)] == [key]
    await adapter.close()


async def test_sdk_generated_sas_works(
    azurite: Azurite, azure_container: str, caplog: pytest.LogCaptureFixture
) -> None:
    sas = blob_sync.generate_account_sas(
        account_name=azurite.account_name,
        account_key=azurite.account_key,
        resource_types=blob_sync.ResourceTypes(service=True, container=True, object=True),
        permission=blob_sync.AccountSasPermissions(
            read=True, write=True, delete=True, list=True, create=True
        ),
        expiry=datetime.now(timezone.utc) + timedelta(hours=1),
    )
    signature = dict(p.split("=", 1) for p in sas.split("&"))["sig"]
    caplog.set_level(logging.DEBUG, logger="asyncblobdict.azure")
    for adapter in (
        AzureBlobAdapter(azurite.endpoint, sas),
        AzureBlobAdapter.from_connection_string(
            f"BlobEndpoint={azurite.endpoint};SharedAccessSignature={sas}"
        ),
    ):
        etag = await adapter.put(azure_container, "sas key", b"via sas")
        data, info = await adapter.get(azure_container, "sas key")
        assert (data, info.etag) == (b"via sas", etag)
        assert [i.key async for i in adapter.list(azure_container)] == ["sas key"]
        assert signature not in repr(adapter)
        await adapter.close()
    assert "sig=<redacted>" in caplog.text
    assert signature not in caplog.text
