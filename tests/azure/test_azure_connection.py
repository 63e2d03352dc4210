"""Connection strings, account URLs, credentials and Azure container-name rules.

Pure parsing and checks made before any request: no server, so not marked ``azure``.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

import pytest

from asyncblobdict import InvalidKeyError
from asyncblobdict.adapters.azure import AzureBlobAdapter, ConnectionStringError
from asyncblobdict.adapters.azure.auth import BearerTokenAuth, SasAuth, SharedKeyAuth
from asyncblobdict.adapters.azure.connection import (
    DEV_ACCOUNT_KEY,
    parse_account_url,
    parse_connection_string,
)
from asyncblobdict.adapters.azure.names import blob_path, validate_container_name
from asyncblobdict.errors import AsyncBlobDictError

SECRET_KEY = base64.b64encode(b"super-secret-account-key-bytes!!").decode()
SIG = "sig=VerySecretSignature%2Babc%3D"


def test_account_key_string() -> None:
    info = parse_connection_string(
        f"DefaultEndpointsProtocol=https;AccountName=myacct;AccountKey={SECRET_KEY};"
        "EndpointSuffix=core.windows.net"
    )
    assert info.endpoint == "https://myacct.blob.core.windows.net"
    assert info.account_name == "myacct"
    assert info.account_key == base64.b64decode(SECRET_KEY)
    assert SECRET_KEY not in repr(info)


def test_defaults_protocol_and_suffix_and_sovereign_cloud() -> None:
    info = parse_connection_string(f"AccountName=a1;AccountKey={SECRET_KEY}")
    assert info.endpoint == "https://a1.blob.core.windows.net"
    info = parse_connection_string(
        f"DefaultEndpointsProtocol=http;AccountName=a1;AccountKey={SECRET_KEY};"
        "EndpointSuffix=core.chinacloudapi.cn"
    )
    assert info.endpoint == "http://a1.blob.core.chinacloudapi.cn"


def test_blob_endpoint_path_style() -> None:
    info = parse_connection_string(
        f"DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={DEV_ACCOUNT_KEY};"
        "BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1/;"
    )
    assert info.endpoint == "http://127.0.0.1:10000/devstoreaccount1"
    assert info.account_name == "devstoreaccount1"


@pytest.mark.parametrize(
    "text",
    [
        "UseDevelopmentStorage=true",
        "UseDevelopmentStorage=True;",
        " usedevelopmentstorage = TRUE ; ",
    ],
)
def test_development_storage(text: str) -> None:
    info = parse_connection_string(text)
    assert info.endpoint == "http://127.0.0.1:10000/devstoreaccount1"
    assert info.account_name == "devstoreaccount1"
    assert info.account_key == base64.b64decode(DEV_ACCOUNT_KEY)


def test_sas_connection_string() -> None:
    info = parse_connection_string(
        f"BlobEndpoint=https://myacct.blob.core.windows.net/;SharedAccessSignature=sv=2025-11-05&{SIG}"
    )
    assert info.account_name == "myacct"
    assert info.sas_token == f"sv=2025-11-05&{SIG}"
    assert "VerySecret" not in repr(info)
    adapter = AzureBlobAdapter.from_connection_string(
        f"BlobEndpoint=https://myacct.blob.core.windows.net/;SharedAccessSignature=?sv=1&{SIG}"
    )
    assert isinstance(adapter._client._auth, SasAuth)
    assert "VerySecret" not in repr(adapter)


@pytest.mark.parametrize(
    "text",
    [
        "",
        ";;",
        "AccountName",
        f"AccountName=a;AccountKey={SECRET_KEY[:-3]}!!!",
        f"AccountKey={SECRET_KEY}",
        "AccountName=a",
        f"=x;AccountName=a;AccountKey={SECRET_KEY}",
        f"DefaultEndpointsProtocol=ftp;AccountName=a;AccountKey={SECRET_KEY}",
        f"BlobEndpoint=not a url;AccountKey={SECRET_KEY}",
        f"garbage {SECRET_KEY}",
    ],
)
def test_malformed_connection_strings(text: str) -> None:
    with pytest.raises(ConnectionStringError) as info:
        AzureBlobAdapter.from_connection_string(text)
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, AsyncBlobDictError)
    message = str(info.value) + repr(info.value)
    assert SECRET_KEY not in message and SECRET_KEY[:-3] not in message
    assert "VerySecret" not in message


def test_missing_sig_in_sas_connection_string() -> None:
    with pytest.raises(ConnectionStringError):
        AzureBlobAdapter.from_connection_string(
            "BlobEndpoint=https://a.blob.core.windows.net;SharedAccessSignature=sv=1&ss=b"
        )


def test_not_a_string() -> None:
    with pytest.raises(ConnectionStringError):
        AzureBlobAdapter.from_connection_string(None)  # type: ignore[arg-type]


def test_account_urls() -> None:
    assert parse_account_url("https://acct.blob.core.windows.net/") == (
        "https://acct.blob.core.windows.net",
        "acct",
        None,
    )
    assert parse_account_url("http://localhost:10000/devstoreaccount1")[1] == "devstoreaccount1"
    endpoint, account, sas = parse_account_url(f"https://acct.blob.core.windows.net/?sv=1&{SIG}")
    assert (endpoint, account, sas) == ("https://acct.blob.core.windows.net", "acct", f"sv=1&{SIG}")
    with pytest.raises(ConnectionStringError):
        parse_account_url("http://127.0.0.1:10000")
    with pytest.raises(ConnectionStringError):
        parse_account_url("acct.blob.core.windows.net")


class FakeCredential:
    async def get_token(self, *scopes: str) -> object:
        raise AssertionError("not called in this test")


def test_constructor_credentials() -> None:
    url = "https://acct.blob.core.windows.net"
    assert isinstance(AzureBlobAdapter(url, SECRET_KEY)._client._auth, SharedKeyAuth)
    assert isinstance(AzureBlobAdapter(url, f"?sv=1&{SIG}")._client._auth, SasAuth)
    assert isinstance(AzureBlobAdapter(url, f"sv=1&{SIG}")._client._auth, SasAuth)
    assert isinstance(AzureBlobAdapter(f"{url}?sv=1&{SIG}")._client._auth, SasAuth)
    assert isinstance(AzureBlobAdapter(url, ("acct", SECRET_KEY))._client._auth, SharedKeyAuth)
    adapter = AzureBlobAdapter(url, {"account_name": "other", "account_key": SECRET_KEY})
    assert adapter.account_name == "other"
    assert isinstance(AzureBlobAdapter(url, FakeCredential())._client._auth, BearerTokenAuth)  # type: ignore[arg-type]
    assert AzureBlobAdapter(url)._client._auth is None
    with pytest.raises(ConnectionStringError):
        AzureBlobAdapter(url, 42)  # type: ignore[arg-type]
    with pytest.raises(ConnectionStringError) as info:
        AzureBlobAdapter(url, "not base64 key!")
    assert "not base64" not in str(info.value)
    for a in (AzureBlobAdapter(url, SECRET_KEY), AzureBlobAdapter(url, f"?sv=1&{SIG}")):
        assert repr(a) == f"AzureBlobAdapter(account='acct', endpoint='{url}')"


@pytest.mark.parametrize(
    "option", ["single_put_threshold", "block_size", "read_chunk_size", "max_concurrency"]
)
def test_bad_options(option: str) -> None:
    options: dict[str, Any] = {option: 0}
    with pytest.raises(ValueError):
        AzureBlobAdapter("https://acct.blob.core.windows.net", SECRET_KEY, **options)


@pytest.mark.parametrize("name", ["abc", "a-b-c", "a1b", "0ab", "x" * 63, "my-container-1"])
def test_valid_container_names(name: str) -> None:
    assert validate_container_name(name) == name
    assert AzureBlobAdapter.validate_container(name) == name


@pytest.mark.parametrize(
    "name",
    ["ab", "x" * 64, "Abc", "a--b", "-ab", "ab-", "a_b", "a.b", "ab c", "", "ü12", 123],
)
def test_invalid_container_names(name: object) -> None:
    with pytest.raises(InvalidKeyError):
        validate_container_name(name)


async def test_invalid_container_checked_before_any_request() -> None:
    # Port 9 (discard) on a reserved address: a request would fail differently.
    adapter = AzureBlobAdapter("http://127.0.0.1:9/devstoreaccount1", DEV_ACCOUNT_KEY)
    with pytest.raises(InvalidKeyError):
        await adapter.put("Bad_Name", "k", b"v")
    with pytest.raises(InvalidKeyError):
        await adapter.get("ab", "k")
    with pytest.raises(InvalidKeyError):
        [i async for i in adapter.list("a--b")]
    await adapter.close()


def test_blob_path_encoding() -> None:
    assert blob_path("c") == "/c"
    assert blob_path("c", "dir/a b+%&ü?#~") == "/c/dir/a%20b%2B%25%26%C3%BC%3F%23~"


async def test_noncharacter_key_refused_before_any_request() -> None:
    # A blob named with U+FFFF makes Azurite fail to list the whole container (defect 21).
    from asyncblobdict import AsyncBlobStore

    adapter = AzureBlobAdapter("http://127.0.0.1:9/devstoreaccount1", DEV_ACCOUNT_KEY)
    async with AsyncBlobStore(adapter, "abc") as store:
        with pytest.raises(InvalidKeyError, match="U\\+FFFF"):
            await store.set_json("a\uffff", 1)
        with pytest.raises(InvalidKeyError, match="U\\+FFFE"):
            await store.list_keys("\ufffe")


# A bad port or host used to pass construction and fail at the first request with a raw
# ValueError from yarl/aiohttp (defect 13); user:password@ went into the endpoint (and repr).
BAD_ACCOUNT_URLS = [
    "http://127.0.0.1:99999/acct",
    "http://127.0.0.1:65536/acct",
    "http://127.0.0.1:-1/acct",
    "http://127.0.0.1:abc/acct",
    "http://127.0.0.1:1_0/acct",
    "http://127.0.0.1:\uff11\uff10/acct",
    "http://[::1/acct",
    "http://[zz]/acct",
    "http://a..b/acct",
    "http://exa mple.com/acct",
    "https://acct.blob.core.windows.net:0x10",
]


@pytest.mark.parametrize("url", BAD_ACCOUNT_URLS)
def test_malformed_account_url_is_refused_at_construction(url: str) -> None:
    for make in (
        lambda: parse_account_url(url),
        lambda: AzureBlobAdapter(url, SECRET_KEY),
        lambda: AzureBlobAdapter.from_connection_string(
            f"BlobEndpoint={url};AccountName=acct;AccountKey={SECRET_KEY}"
        ),
    ):
        with pytest.raises(ConnectionStringError) as info:
            make()
        assert isinstance(info.value, ValueError) and isinstance(info.value, AsyncBlobDictError)
        assert SECRET_KEY not in str(info.value)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:10000/acct",
        "http://127.0.0.1:65535/acct",
        "http://[::1]:10000/acct",
        "http://azurite:10000/devstoreaccount1",
        "http://azurite_1:10000/devstoreaccount1",
        "https://acct.blob.core.windows.net.",
        "https://\u00e4cct.example.org/acct",
    ],
)
def test_unusual_but_valid_account_urls(url: str) -> None:
    endpoint, _account, _sas = parse_account_url(url)
    assert endpoint == url.rstrip("/")


async def test_malformed_port_never_reaches_a_request() -> None:
    from asyncblobdict import AsyncBlobStore

    with pytest.raises(ConnectionStringError, match="port"):
        async with AsyncBlobStore(
            AzureBlobAdapter("http://127.0.0.1:99999/a", SECRET_KEY), "abc"
        ) as s:
            await s.get_json("k")


PASSWORD = "Pa55w0rdNeverShown"


@pytest.mark.parametrize(
    "url",
    [
        f"https://user:{PASSWORD}@acct.blob.core.windows.net",
        f"https://user:{PASSWORD}@acct.blob.core.windows.net/?sv=1&{SIG}",
        f"http://user:{PASSWORD}@127.0.0.1:10000/devstoreaccount1",
        f"http://{PASSWORD}@127.0.0.1:10000/devstoreaccount1",
        f"http://:{PASSWORD}@127.0.0.1:10000/devstoreaccount1",
    ],
)
def test_user_info_in_account_url_is_refused_without_echoing_it(url: str) -> None:
    attempts: list[Callable[[], object]] = [
        lambda: parse_account_url(url),
        lambda: AzureBlobAdapter(url, SECRET_KEY),
        lambda: AzureBlobAdapter(url),
        lambda: AzureBlobAdapter.from_connection_string(
            f"BlobEndpoint={url};AccountName=acct;AccountKey={SECRET_KEY}"
        ),
        lambda: AzureBlobAdapter.from_connection_string(
            f"BlobEndpoint={url};SharedAccessSignature=sv=1&{SIG}"
        ),
        lambda: AzureBlobAdapter.from_connection_string(
            f"UseDevelopmentStorage=true;BlobEndpoint={url}"
        ),
    ]
    for make in attempts:
        with pytest.raises(ConnectionStringError, match="user name or password") as info:
            make()
        shown = str(info.value) + repr(info.value) + repr(info.value.__cause__)
        shown += repr(info.value.__context__)
        assert PASSWORD not in shown and "VerySecret" not in shown
