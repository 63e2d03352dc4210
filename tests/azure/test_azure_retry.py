"""Retry policy, error mapping and ambiguous-write checks against a mocked service."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import re
import time
from collections.abc import AsyncIterator
from email.utils import formatdate
from typing import Any

import aiohttp
import pytest
from aioresponses import CallbackResult
from mockhttp import CompatResponse, aioresponses

from asyncblobdict import (
    AuthenticationError,
    BlobNotFoundError,
    ConcurrencyError,
    OutcomeUnknownError,
    StorageError,
)
from asyncblobdict.adapters.azure import AzureBlobAdapter, RetryPolicy
from asyncblobdict.adapters.azure.retry import parse_retry_after
from asyncblobdict.adapters.base import CREATE, Update

pytestmark = pytest.mark.azure

URL = "https://acct.blob.core.windows.net"
KEY = base64.b64encode(b"k" * 32).decode()
BLOB = re.compile(r"^https://acct\.blob\.core\.windows\.net/cc1/k(\?.*)?$")
FAST = RetryPolicy(max_attempts=5, base_delay=0.001, max_delay=0.005, total_timeout=5)


def md5_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()


async def _data_etag(adapter: Any, container: str, key: str) -> tuple[bytes, str | None]:
    data, info = await adapter.get(container, key)
    return data, info.etag


@pytest.fixture
async def adapter() -> AsyncIterator[AzureBlobAdapter]:
    a = AzureBlobAdapter(URL, KEY, retry=FAST)
    yield a
    await a.close()


def test_retry_policy_backoff_is_bounded_full_jitter() -> None:
    policy = RetryPolicy(base_delay=0.5, max_delay=4.0)
    for attempt in range(1, 12):
        for _ in range(50):
            assert 0.0 <= policy.backoff(attempt) <= min(4.0, 0.5 * 2 ** (attempt - 1))
    assert RetryPolicy(max_retry_after=2.0).delay(1, "100") == 2.0
    assert RetryPolicy().delay(1, "1.5") == 1.5
    with pytest.raises(ValueError):
        RetryPolicy(max_attempts=0)
    assert RetryPolicy.none().max_attempts == 1


def test_parse_retry_after() -> None:
    now = time.time()
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after("-5") == 0.0
    assert 9 <= parse_retry_after(formatdate(now + 10, usegmt=True), now=now) <= 10  # type: ignore[operator]
    assert parse_retry_after(formatdate(now - 100, usegmt=True), now=now) == 0.0


async def test_503_then_200(adapter: AzureBlobAdapter) -> None:
    with aioresponses() as m:
        m.head(BLOB, status=503)
        m.head(BLOB, status=200, headers={"Content-Length": "3", "ETag": '"e1"'})
        info = await adapter.head("cc1", "k")
    assert info is not None and info.etag == '"e1"' and info.size == 3


async def test_connection_reset_then_200(adapter: AzureBlobAdapter) -> None:
    with aioresponses() as m:
        m.put(BLOB, exception=aiohttp.ServerDisconnectedError())
        m.put(BLOB, exception=aiohttp.ClientOSError(104, "Connection reset by peer"))
        m.put(BLOB, status=201, headers={"ETag": '"e2"'})
        assert await adapter.put("cc1", "k", b"abc") == '"e2"'


async def test_truncated_body_is_retried(adapter: AzureBlobAdapter) -> None:
    headers = {"ETag": '"e1"', "Content-MD5": md5_b64(b"abc"), "Content-Length": "3"}
    with aioresponses() as m:
        m.get(BLOB, exception=aiohttp.ClientPayloadError("truncated"))
        m.get(BLOB, status=200, body=b"abc", headers=headers)
        assert await _data_etag(adapter, "cc1", "k") == (b"abc", '"e1"')


async def test_429_honours_retry_after() -> None:
    adapter = AzureBlobAdapter(URL, KEY, retry=RetryPolicy(base_delay=10, max_delay=10))
    with aioresponses() as m:
        m.head(BLOB, status=429, headers={"Retry-After": "0.2"})
        m.head(BLOB, status=404)
        started = time.monotonic()
        assert await adapter.head("cc1", "k") is None
        elapsed = time.monotonic() - started
    # Retry-After (0.2 s) replaced the 10 s backoff.
    assert 0.18 <= elapsed < 2.0
    await adapter.close()


async def test_timeout_then_200(adapter: AzureBlobAdapter) -> None:
    with aioresponses() as m:
        m.head(BLOB, exception=asyncio.TimeoutError())
        m.head(BLOB, status=200, headers={"Content-Length": "0", "ETag": '"e"'})
        assert (await adapter.head("cc1", "k")) is not None


async def test_500_storm_ends_in_storage_error_within_budget() -> None:
    policy = RetryPolicy(max_attempts=4, base_delay=0.01, max_delay=0.02, total_timeout=2)
    adapter = AzureBlobAdapter(URL, KEY, retry=policy)
    body = b"<?xml version='1.0'?><Error><Code>InternalError</Code><Message>boom</Message></Error>"
    with aioresponses() as m:
        m.get(BLOB, status=500, body=body, headers={"x-ms-request-id": "rid-1"}, repeat=True)
        started = time.monotonic()
        with pytest.raises(StorageError) as info:
            await adapter.get("cc1", "k")
        assert time.monotonic() - started < 1.0
        calls = sum(len(v) for v in m.requests.values())
    assert calls == 4
    assert info.value.status == 500
    assert info.value.error_code == "InternalError"
    assert info.value.request_id == "rid-1"
    assert not isinstance(info.value, AuthenticationError)
    await adapter.close()


async def test_total_timeout_bounds_retries() -> None:
    policy = RetryPolicy(max_attempts=100, base_delay=0.05, max_delay=0.05, total_timeout=0.3)
    adapter = AzureBlobAdapter(URL, KEY, retry=policy)
    with aioresponses() as m:
        m.head(BLOB, status=503, repeat=True)
        started = time.monotonic()
        with pytest.raises(StorageError):
            await adapter.head("cc1", "k")
        assert time.monotonic() - started < 1.0
    await adapter.close()


async def test_network_down_is_a_storage_error_without_aiohttp_cause(
    adapter: AzureBlobAdapter,
) -> None:
    with aioresponses() as m:
        m.get(BLOB, exception=aiohttp.ServerDisconnectedError(), repeat=True)
        with pytest.raises(StorageError) as info:
            await adapter.get("cc1", "k")
    assert "network error" in str(info.value)
    assert info.value.__cause__ is None and info.value.__suppress_context__


TOKEN = "x-ms-meta-abdtoken"


class Sent:
    """Records the headers of each PUT/DELETE; answers a HEAD with the chosen version."""

    def __init__(self) -> None:
        self.headers: list[dict[str, str]] = []

    def write(self, status: int, **headers: str) -> Any:
        def answer(url: Any, **kwargs: Any) -> CallbackResult:
            self.headers.append(dict(kwargs["headers"]))
            return CallbackResult(status=status, headers=headers, response_class=CompatResponse)

        return answer

    def head(self, etag: str, *, ours: bool) -> Any:
        def answer(url: Any, **kwargs: Any) -> CallbackResult:
            headers = {"ETag": etag, "Content-Length": "3"}
            if ours:
                headers[TOKEN] = self.headers[0][TOKEN]
            return CallbackResult(status=200, headers=headers, response_class=CompatResponse)

        return answer

    def tokens(self) -> set[str]:
        return {h[TOKEN] for h in self.headers}


@pytest.mark.parametrize(
    ("condition", "conflict"), [({"condition": CREATE}, 409), ({"condition": Update('"e1"')}, 412)]
)
async def test_ambiguous_conflict_with_our_token_is_success(
    adapter: AzureBlobAdapter, condition: dict[str, Any], conflict: int
) -> None:
    sent = Sent()
    with aioresponses() as m:
        m.put(BLOB, exception=aiohttp.ServerDisconnectedError())  # landed, answer lost
        m.put(BLOB, callback=sent.write(conflict))
        m.head(BLOB, callback=sent.head('"ours"', ours=True))
        assert await adapter.put("cc1", "k", b"new", **condition) == '"ours"'


async def test_ambiguous_conflict_with_a_foreign_version_is_outcome_unknown(
    adapter: AzureBlobAdapter,
) -> None:
    # The stored bytes are even the same as ours: that proves nothing.
    sent = Sent()
    with aioresponses() as m:
        m.put(BLOB, status=503)
        m.put(BLOB, callback=sent.write(412))
        m.head(BLOB, status=200, headers={"ETag": '"x"', "Content-MD5": md5_b64(b"ours")})
        with pytest.raises(OutcomeUnknownError):
            await adapter.put("cc1", "k", b"ours", condition=Update('"e1"'))


async def test_conflict_while_the_conditioned_version_is_still_stored_is_retried(
    adapter: AzureBlobAdapter,
) -> None:
    """A live server cannot answer 412 while holding the ETag we sent; a proxy or a bad
    cache in between could. The version proves our write did not land: try again."""
    sent = Sent()
    with aioresponses() as m:
        m.put(BLOB, exception=asyncio.TimeoutError())
        m.put(BLOB, callback=sent.write(412))
        m.head(BLOB, callback=sent.head('"e1"', ours=False))
        m.put(BLOB, callback=sent.write(201, ETag='"e2"'))
        assert await adapter.put("cc1", "k", b"new", condition=Update('"e1"')) == '"e2"'
    assert len(sent.headers) == 2 and len(sent.tokens()) == 1
    assert all(h["If-Match"] == '"e1"' for h in sent.headers)


async def test_conflicts_while_the_conditioned_version_is_stored_are_bounded(
    adapter: AzureBlobAdapter,
) -> None:
    sent = Sent()
    with aioresponses() as m:
        m.put(BLOB, exception=asyncio.TimeoutError())
        m.put(BLOB, callback=sent.write(412), repeat=True)
        m.head(BLOB, callback=sent.head('"e1"', ours=False), repeat=True)
        with pytest.raises(ConcurrencyError) as info:
            await adapter.put("cc1", "k", b"new", condition=Update('"e1"'))
    assert type(info.value) is ConcurrencyError
    assert 2 <= len(sent.headers) <= 5 and len(sent.tokens()) == 1


async def test_plain_conflict_does_not_check(adapter: AzureBlobAdapter) -> None:
    with aioresponses() as m:
        m.put(BLOB, status=409, headers={"x-ms-error-code": "BlobAlreadyExists"})
        with pytest.raises(ConcurrencyError):
            await adapter.put("cc1", "k", b"ours", condition=CREATE)
        assert not any(method == "HEAD" for method, _ in m.requests)


async def test_ambiguous_conditional_delete(adapter: AzureBlobAdapter) -> None:
    with aioresponses() as m:
        m.delete(BLOB, exception=asyncio.TimeoutError())
        m.delete(BLOB, status=404, headers={"x-ms-error-code": "BlobNotFound"})
        m.head(BLOB, status=404)
        await adapter.delete("cc1", "k", condition=Update('"e1"'))
    with aioresponses() as m:
        m.delete(BLOB, status=404, headers={"x-ms-error-code": "BlobNotFound"})
        with pytest.raises(ConcurrencyError):
            await adapter.delete("cc1", "k", condition=Update('"e1"'))


async def test_delete_conflict_while_the_conditioned_version_is_stored_is_retried(
    adapter: AzureBlobAdapter,
) -> None:
    sent = Sent()
    with aioresponses() as m:
        m.delete(BLOB, exception=asyncio.TimeoutError())
        m.delete(BLOB, callback=sent.write(412))
        m.head(BLOB, callback=sent.head('"e1"', ours=False))
        m.delete(BLOB, callback=sent.write(202))
        await adapter.delete("cc1", "k", condition=Update('"e1"'))
    assert len(sent.headers) == 2


async def test_status_mapping(adapter: AzureBlobAdapter) -> None:
    with aioresponses() as m:
        m.get(BLOB, status=404, headers={"x-ms-error-code": "BlobNotFound"})
        with pytest.raises(BlobNotFoundError):
            await adapter.get("cc1", "k")
        m.get(BLOB, status=403, headers={"x-ms-error-code": "AuthenticationFailed"})
        with pytest.raises(AuthenticationError) as auth:
            await adapter.get("cc1", "k")
        assert "machine clock" in str(auth.value) and auth.value.status == 403
        m.put(BLOB, status=413, headers={"x-ms-error-code": "RequestBodyTooLarge"})
        with pytest.raises(StorageError) as big:
            await adapter.put("cc1", "k", b"x")
        assert big.value.status == 413 and big.value.error_code == "RequestBodyTooLarge"
        assert "larger than the service accepts" in str(big.value)
        m.put(BLOB, status=400, body=b"<Error><Code>InvalidHeaderValue</Code></Error>")
        with pytest.raises(StorageError) as bad:
            await adapter.put("cc1", "k", b"x")
        assert bad.value.error_code == "InvalidHeaderValue"


async def test_md5_mismatch_on_full_and_ranged_reads(adapter: AzureBlobAdapter) -> None:
    with aioresponses() as m:
        m.get(
            BLOB,
            status=200,
            body=b"abc",
            headers={"ETag": '"e"', "Content-MD5": md5_b64(b"abd")},
        )
        with pytest.raises(StorageError) as info:
            await adapter.get("cc1", "k")
        assert "MD5" in str(info.value)
        m.get(
            BLOB,
            status=206,
            body=b"abc",
            headers={
                "ETag": '"e"',
                "Content-Range": "bytes 0-2/3",
                "x-ms-blob-content-md5": md5_b64(b"xyz"),
            },
        )
        with pytest.raises(StorageError):
            await adapter.get("cc1", "k")


@pytest.mark.parametrize(("stored_md5_of", "ok"), [(b"abcde", True), (b"abcdX", False)])
async def test_md5_checked_across_parallel_ranges(stored_md5_of: bytes, ok: bool) -> None:
    # Three ranges hashed in order while they arrive: the whole blob's MD5 must still match.
    adapter = AzureBlobAdapter(URL, KEY, retry=FAST, read_chunk_size=2)
    first = {
        "ETag": '"e"',
        "Content-Range": "bytes 0-1/5",
        "x-ms-blob-content-md5": md5_b64(stored_md5_of),
    }
    try:
        with aioresponses() as m:
            m.get(BLOB, status=206, body=b"ab", headers=first)
            m.get(BLOB, status=206, body=b"cd", headers={"ETag": '"e"'})
            m.get(BLOB, status=206, body=b"e", headers={"ETag": '"e"'})
            if ok:
                assert await _data_etag(adapter, "cc1", "k") == (b"abcde", '"e"')
            else:
                with pytest.raises(StorageError, match="MD5"):
                    await adapter.get("cc1", "k")
    finally:
        await adapter.close()


async def test_ranged_read_restarts_when_overwritten() -> None:
    adapter = AzureBlobAdapter(URL, KEY, retry=FAST, read_chunk_size=2)
    old_first = {"ETag": '"old"', "Content-Range": "bytes 0-1/4"}
    new_first = {"ETag": '"new"', "Content-Range": "bytes 0-1/3"}
    with aioresponses() as m:
        m.get(BLOB, status=206, body=b"ab", headers=old_first)
        m.get(BLOB, status=412, headers={"x-ms-error-code": "ConditionNotMet"})
        m.get(BLOB, status=206, body=b"xy", headers=new_first)
        m.get(BLOB, status=206, body=b"z", headers={"ETag": '"new"'})
        assert await _data_etag(adapter, "cc1", "k") == (b"xyz", '"new"')
    with aioresponses() as m:
        for _ in range(3):
            m.get(BLOB, status=206, body=b"ab", headers=old_first)
            m.get(BLOB, status=412)
        with pytest.raises(StorageError):
            await adapter.get("cc1", "k")
    await adapter.close()


async def test_missing_container_is_created_then_put_retried(adapter: AzureBlobAdapter) -> None:
    container = re.compile(r"^https://acct\.blob\.core\.windows\.net/cc1\?restype=container$")
    with aioresponses() as m:
        m.put(BLOB, status=404, headers={"x-ms-error-code": "ContainerNotFound"})
        m.put(container, status=409, headers={"x-ms-error-code": "ContainerAlreadyExists"})
        m.put(BLOB, status=201, headers={"ETag": '"e"'})
        assert await adapter.put("cc1", "k", b"v") == '"e"'


class FakeToken:
    def __init__(self, token: str, expires_on: int) -> None:
        self.token = token
        self.expires_on = expires_on


class FakeCredential:
    def __init__(self, lifetime: int) -> None:
        self.calls: list[tuple[str, ...]] = []
        self.lifetime = lifetime

    async def get_token(self, *scopes: str) -> FakeToken:
        self.calls.append(scopes)
        return FakeToken(f"token-{len(self.calls)}", int(time.time()) + self.lifetime)


async def test_bearer_token_is_sent_and_cached() -> None:
    credential = FakeCredential(3600)
    adapter = AzureBlobAdapter(URL, credential, retry=FAST)
    with aioresponses() as m:
        m.head(BLOB, status=404, repeat=True)
        await adapter.head("cc1", "k")
        await adapter.head("cc1", "k")
        sent = [call.kwargs["headers"] for calls in m.requests.values() for call in calls]
    assert credential.calls == [("https://storage.azure.com/.default",)]
    assert all(h["Authorization"] == "Bearer token-1" for h in sent) and len(sent) == 2
    assert "token-1" not in repr(adapter)
    await adapter.close()


async def test_bearer_token_refreshed_near_expiry() -> None:
    credential = FakeCredential(120)  # inside the 5-minute margin: never reused
    adapter = AzureBlobAdapter(URL, credential, retry=FAST)
    with aioresponses() as m:
        m.head(BLOB, status=404, repeat=True)
        await adapter.head("cc1", "k")
        await adapter.head("cc1", "k")
    assert len(credential.calls) == 2
    await adapter.close()


async def test_token_failure_is_authentication_error() -> None:
    class Broken:
        async def get_token(self, *scopes: str) -> FakeToken:
            raise RuntimeError("no identity here")

    adapter = AzureBlobAdapter(URL, Broken(), retry=FAST)
    with pytest.raises(AuthenticationError):
        await adapter.head("cc1", "k")
    await adapter.close()
