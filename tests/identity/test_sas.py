"""generate_sas: URLs that Azurite accepts (or refuses) when used with plain aiohttp, and the
same signature as the Azure SDK computes."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import parse_qs, quote

import aiohttp
import pytest

from asyncblobdict import AsyncBlobStore
from asyncblobdict.adapters.azure import AzureBlobAdapter, ConnectionStringError, generate_sas
from tests.azure.azurite import DEV_ACCOUNT, DEV_KEY, Azurite, new_container_name
from tests.identity.signin_fakes import HttpsAzurite

VERSION = {"x-ms-version": "2025-11-05"}
PUT = {**VERSION, "x-ms-blob-type": "BlockBlob"}


@pytest.fixture
async def container(https_azurite: HttpsAzurite, ssl_context: ssl.SSLContext) -> str:
    """A container made with the account key (a service SAS cannot create one)."""
    name = new_container_name()
    adapter = AzureBlobAdapter(
        https_azurite.endpoint, (DEV_ACCOUNT, DEV_KEY), ssl_context=ssl_context
    )
    await adapter.put(name, "existing", b"here before")
    await adapter.close()
    return name


@pytest.fixture
async def http(ssl_context: ssl.SSLContext) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ssl_context)) as session:
        yield session


def url(endpoint: str, container: str, key: str | None, sas: str, extra: str = "") -> str:
    path = f"{endpoint}/{container}" + (f"/{quote(key)}" if key is not None else "")
    return f"{path}?{extra}{'&' if extra else ''}{sas}"


@pytest.mark.azure
async def test_container_sas_reads_writes_lists_and_deletes(
    https_azurite: HttpsAzurite, container: str, http: aiohttp.ClientSession
) -> None:
    sas = generate_sas(
        DEV_ACCOUNT, DEV_KEY, container, permission="ldwrc", expiry=timedelta(minutes=10)
    )
    assert parse_qs(sas)["sp"] == ["rcwdl"] and parse_qs(sas)["spr"] == ["https"]
    end = https_azurite.endpoint
    async with http.put(url(end, container, "new key", sas), data=b"hello", headers=PUT) as r:
        assert r.status == 201
    async with http.get(url(end, container, "new key", sas), headers=VERSION) as r:
        assert r.status == 200 and await r.read() == b"hello"
    listing = url(end, container, None, sas, "restype=container&comp=list")
    async with http.get(listing, headers=VERSION) as r:
        body = await r.text()
        assert r.status == 200 and "<Name>new key</Name>" in body
    async with http.delete(url(end, container, "new key", sas), headers=VERSION) as r:
        assert r.status == 202


@pytest.mark.azure
async def test_blob_sas_reads_that_blob_only(
    https_azurite: HttpsAzurite, container: str, http: aiohttp.ClientSession
) -> None:
    sas = generate_sas(
        DEV_ACCOUNT, DEV_KEY, container, "existing", permission="r", expiry=timedelta(minutes=5)
    )
    end = https_azurite.endpoint
    async with http.get(url(end, container, "existing", sas), headers=VERSION) as r:
        assert r.status == 200 and await r.read() == b"here before"
    async with http.put(url(end, container, "existing", sas), data=b"x", headers=PUT) as r:
        assert r.status == 403
    async with http.get(url(end, container, "other", sas), headers=VERSION) as r:
        assert r.status == 403


@pytest.mark.parametrize(
    "times",
    [
        {"expiry": timedelta(minutes=-1)},
        {"start": timedelta(minutes=10), "expiry": timedelta(minutes=20)},
    ],
    ids=["expired", "not-started"],
)
@pytest.mark.azure
async def test_sas_outside_its_time_window_is_refused(
    https_azurite: HttpsAzurite, container: str, http: aiohttp.ClientSession, times: Any
) -> None:
    sas = generate_sas(DEV_ACCOUNT, DEV_KEY, container, "existing", permission="r", **times)
    async with http.get(url(https_azurite.endpoint, container, "existing", sas)) as r:
        assert r.status == 403


@pytest.mark.azure
async def test_https_only_by_default(azurite: Azurite, http: aiohttp.ClientSession) -> None:
    """The plain-HTTP Azurite of the session refuses an HTTPS-only SAS, takes an https,http one."""
    container = new_container_name()
    adapter = azurite.new_adapter()
    await adapter.put(container, "k", b"v")
    await adapter.close()
    https_only = generate_sas(
        DEV_ACCOUNT, DEV_KEY, container, "k", permission="r", expiry=timedelta(minutes=5)
    )
    both = generate_sas(
        DEV_ACCOUNT, DEV_KEY, container, "k", permission="r", expiry=timedelta(minutes=5),
        protocol="https,http",
    )  # fmt: skip
    async with http.get(url(azurite.endpoint, container, "k", https_only)) as r:
        assert r.status == 403
    async with http.get(url(azurite.endpoint, container, "k", both)) as r:
        assert r.status == 200 and await r.read() == b"v"


@pytest.mark.azure
async def test_the_adapter_takes_a_generated_sas(
    https_azurite: HttpsAzurite, container: str, ssl_context: ssl.SSLContext
) -> None:
    sas = generate_sas(
        DEV_ACCOUNT, DEV_KEY, container, permission="racwdl", expiry=timedelta(minutes=5)
    )
    adapter = AzureBlobAdapter(https_azurite.endpoint, sas, ssl_context=ssl_context)
    async with AsyncBlobStore(adapter, container) as store:
        await store.set_json("j", {"a": 1})
        assert await store.get_json("j") == {"a": 1}
        assert await store.list_keys() == ["existing", "j"]
        assert sas.split("sig=")[1] not in repr(adapter)


@pytest.mark.parametrize("key", [None, "dir/ünï cødé+&.json"])
def test_same_signature_as_the_azure_sdk(key: str | None, monkeypatch: pytest.MonkeyPatch) -> None:
    from azure.storage.blob import _shared_access_signature as sdk_sas
    from azure.storage.blob import generate_blob_sas, generate_container_sas

    monkeypatch.setattr(sdk_sas, "X_MS_VERSION", "2025-11-05")
    start = datetime(2030, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    expiry = start + timedelta(hours=1)
    ours = generate_sas(
        DEV_ACCOUNT, DEV_KEY, "box", key, permission="wr" if key else "lr", start=start,
        expiry=expiry, ip="10.0.0.1-10.0.0.9",
    )  # fmt: skip
    common: dict[str, Any] = {
        "account_key": DEV_KEY,
        "start": start,
        "expiry": expiry,
        "ip": "10.0.0.1-10.0.0.9",
        "protocol": "https",
    }
    if key is None:
        theirs = generate_container_sas(DEV_ACCOUNT, "box", permission="rl", **common)
    else:
        theirs = generate_blob_sas(DEV_ACCOUNT, "box", key, permission="rw", **common)
    assert parse_qs(ours) == parse_qs(theirs)


def test_arguments_are_checked() -> None:
    week = timedelta(days=7)
    with pytest.raises(ValueError, match="aware"):
        generate_sas(DEV_ACCOUNT, DEV_KEY, "box", permission="r", expiry=datetime(2030, 1, 1))
    with pytest.raises(ValueError, match="permission"):
        generate_sas(DEV_ACCOUNT, DEV_KEY, "box", "k", permission="rl", expiry=week)
    with pytest.raises(ValueError, match="permission"):
        generate_sas(DEV_ACCOUNT, DEV_KEY, "box", permission="rz", expiry=week)
    with pytest.raises(ValueError, match="protocol"):
        generate_sas(DEV_ACCOUNT, DEV_KEY, "box", permission="r", expiry=week, protocol="http")
    with pytest.raises(ValueError, match="after its start"):
        generate_sas(DEV_ACCOUNT, DEV_KEY, "box", permission="r", expiry=week, start=week)
    with pytest.raises(ConnectionStringError) as info:
        generate_sas(DEV_ACCOUNT, "not base64!", "box", permission="r", expiry=week)
    assert "not base64!" not in str(info.value)
