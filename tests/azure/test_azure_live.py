"""Every adapter operation against a real Azurite (started once per session)."""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable
from typing import Any

import pytest

from asyncblobdict import (
    AuthenticationError,
    BlobNotFoundError,
    ConcurrencyError,
    InvalidKeyError,
    StorageError,
)
from asyncblobdict.adapters.azure import AzureBlobAdapter, RetryPolicy
from asyncblobdict.adapters.base import CREATE, Adapter, Update
from tests.azure.azurite import DEV_KEY, Azurite

pytestmark = pytest.mark.azure

Factory = Callable[..., AzureBlobAdapter]
TRICKY = [
    "plain",
    "with space/and more spaces",
    "unicode/ünïcødé/日本語/emoji-😀",
    "plus+sign",
    "percent%20literal%",
    "amp&er=sand?q#frag",
    "deep/a/b/c/d/e",
    "tilde~and'quote\"",
    "semi;colon,comma",
]


async def _data_etag(adapter: Any, container: str, key: str) -> tuple[bytes, str | None]:
    data, info = await adapter.get(container, key)
    return data, info.etag


async def test_protocol_roundtrip(azure_adapter: AzureBlobAdapter, azure_container: str) -> None:
    a, c = azure_adapter, azure_container
    assert isinstance(a, Adapter)
    assert await a.head(c, "k") is None
    with pytest.raises(BlobNotFoundError):
        await a.get(c, "k")  # missing container
    assert [i async for i in a.list(c)] == []
    await a.delete(c, "k")  # missing container and key: no-op
    etag = await a.put(c, "k", b"value")  # creates the container
    data, got = await _data_etag(a, c, "k")
    assert (data, got) == (b"value", etag)
    info = await a.head(c, "k")
    assert info is not None
    assert (info.key, info.size, info.etag) == ("k", 5, etag)
    assert info.content_md5 == hashlib.md5(b"value").digest()
    assert info.last_modified is not None and info.last_modified.tzinfo is not None
    listed = [i async for i in a.list(c)]
    assert [(i.key, i.size, i.etag, i.content_md5) for i in listed] == [
        ("k", 5, etag, info.content_md5)
    ]
    etag2 = await a.put(c, "k", b"")
    assert etag2 != etag and await _data_etag(a, c, "k") == (b"", etag2)
    await a.delete(c, "k")
    assert await a.head(c, "k") is None
    with pytest.raises(BlobNotFoundError):
        await a.get(c, "k")
    await a.delete(c, "k")  # missing key: no-op


async def test_conditions(azure_adapter: AzureBlobAdapter, azure_container: str) -> None:
    a, c = azure_adapter, azure_container
    e1 = await a.put(c, "k", b"one", condition=CREATE)
    with pytest.raises(ConcurrencyError):
        await a.put(c, "k", b"two", condition=CREATE)
    e2 = await a.put(c, "k", b"two", condition=Update(e1))
    with pytest.raises(ConcurrencyError):
        await a.put(c, "k", b"stale", condition=Update(e1))
    assert await _data_etag(a, c, "k") == (b"two", e2)
    with pytest.raises(ConcurrencyError):
        await a.delete(c, "k", condition=Update(e1))
    assert await _data_etag(a, c, "k") == (b"two", e2)
    with pytest.raises(ConcurrencyError):
        await a.put(c, "missing", b"x", condition=Update(e2))
    with pytest.raises(ConcurrencyError):
        await a.delete(c, "missing", condition=Update(e2))
    await a.delete(c, "k", condition=Update(e2))
    assert await a.head(c, "k") is None
    assert await a.head(c, "missing") is None


async def test_container_created_once_by_concurrent_puts(
    azure_adapter: AzureBlobAdapter, azure_container: str
) -> None:
    import asyncio

    etags = await asyncio.gather(
        *(azure_adapter.put(azure_container, f"k{i}", b"v") for i in range(8))
    )
    assert len(set(etags)) == 8
    assert len([i async for i in azure_adapter.list(azure_container)]) == 8


async def test_list_paging_and_prefix(azure_adapter_factory: Factory, azure_container: str) -> None:
    a = azure_adapter_factory(list_page_size=3)
    keys = [f"p/{i:02d}" for i in range(10)] + ["q/0", "q/1"]
    for key in keys:
        await a.put(azure_container, key, key.encode())
    assert [i.key async for i in a.list(azure_container)] == sorted(keys)
    assert [i.key async for i in a.list(azure_container, "p/")] == sorted(keys[:10])
    assert [i.key async for i in a.list(azure_container, "q")] == ["q/0", "q/1"]
    assert [i.key async for i in a.list(azure_container, "zzz")] == []


async def test_tricky_names_round_trip(
    azure_adapter: AzureBlobAdapter, azure_container: str
) -> None:
    for key in TRICKY:
        etag = await azure_adapter.put(azure_container, key, key.encode())
        assert await _data_etag(azure_adapter, azure_container, key) == (key.encode(), etag)
        info = await azure_adapter.head(azure_container, key)
        assert info is not None and info.key == key
    listed = {i.key async for i in azure_adapter.list(azure_container)}
    assert listed == set(TRICKY)
    for key in TRICKY:
        first = [i.key async for i in azure_adapter.list(azure_container, key)]
        assert first[:1] == [key]
        await azure_adapter.delete(azure_container, key)
    assert [i async for i in azure_adapter.list(azure_container)] == []


async def test_blocks_and_ranges_small_sizes(
    azure_adapter_factory: Factory, azure_container: str
) -> None:
    a = azure_adapter_factory(
        single_put_threshold=1000, block_size=700, read_chunk_size=300, max_concurrency=3
    )
    for size in (999, 1000, 1001, 1400, 1401, 5000):
        data = os.urandom(size)
        etag = await a.put(azure_container, f"s{size}", data)
        assert await _data_etag(a, azure_container, f"s{size}") == (data, etag)
        info = await a.head(azure_container, f"s{size}")
        assert info is not None and info.content_md5 == hashlib.md5(data).digest()
    e = await a.put(azure_container, "s5000", b"x" * 3000, condition=Update(etag))
    with pytest.raises(ConcurrencyError):
        await a.put(azure_container, "s5000", b"y" * 3000, condition=Update(etag))
    with pytest.raises(ConcurrencyError):
        await a.put(azure_container, "s5000", b"y" * 3000, condition=CREATE)
    assert await _data_etag(a, azure_container, "s5000") == (b"x" * 3000, e)


@pytest.mark.slow
async def test_64_mib_value(azure_adapter: AzureBlobAdapter, azure_container: str) -> None:
    data = os.urandom(64 * 1024 * 1024 + 123)
    etag = await azure_adapter.put(azure_container, "big", data)
    got, got_etag = await _data_etag(azure_adapter, azure_container, "big")
    assert got_etag == etag and got == data
    info = await azure_adapter.head(azure_container, "big")
    assert info is not None and info.size == len(data)
    assert info.content_md5 == hashlib.md5(data).digest()
    etag2 = await azure_adapter.put(azure_container, "big", data[::-1], condition=Update(etag))
    with pytest.raises(ConcurrencyError):
        await azure_adapter.put(azure_container, "big", data, condition=Update(etag))
    assert (await azure_adapter.get(azure_container, "big"))[1].etag == etag2


async def test_wrong_key_is_authentication_error(
    azurite: Azurite, azure_container: str, caplog: pytest.LogCaptureFixture
) -> None:
    wrong = "d3Jvbmcta2V5LXdyb25nLWtleS13cm9uZy1rZXktd3Jvbmcta2V5IQ=="
    adapter = AzureBlobAdapter(azurite.endpoint, wrong, retry=RetryPolicy.none())
    caplog.set_level(logging.DEBUG, logger="asyncblobdict.azure")
    with pytest.raises(AuthenticationError) as info:
        await adapter.put(azure_container, "k", b"v")
    err = info.value
    assert err.status == 403
    assert err.error_code in ("AuthenticationFailed", "AuthorizationFailure")
    assert "machine clock" in str(err)
    text = str(err) + repr(err) + repr(adapter) + caplog.text
    assert wrong not in text and wrong[:20] not in text
    assert "SharedKey" not in text
    await adapter.close()


async def test_secrets_never_logged(
    azurite: Azurite, azure_container: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="asyncblobdict.azure")
    adapter = azurite.new_adapter()
    await adapter.put(azure_container, "k", b"v")
    await adapter.get(azure_container, "k")
    assert "asyncblobdict.azure" in {r.name for r in caplog.records}
    assert "PUT" in caplog.text
    for secret in (DEV_KEY, DEV_KEY[:16], "SharedKey devstoreaccount1:"):
        assert secret not in caplog.text
        assert secret not in repr(adapter)
    await adapter.close()


async def test_close_twice_and_no_reuse(azurite: Azurite, azure_container: str) -> None:
    adapter = azurite.new_adapter()
    await adapter.put(azure_container, "k", b"v")
    await adapter.close()
    await adapter.close()
    with pytest.raises(StorageError, match="the adapter is closed"):
        await adapter.get(azure_container, "k")  # close() is final: no new session


async def test_bad_container_name_before_request(azure_adapter: AzureBlobAdapter) -> None:
    with pytest.raises(InvalidKeyError):
        await azure_adapter.put("Not_Valid", "k", b"v")


def test_repr(azurite: Azurite) -> None:
    adapter = azurite.new_adapter()
    assert repr(adapter) == (
        f"AzureBlobAdapter(account='devstoreaccount1', endpoint='{azurite.endpoint}')"
    )
