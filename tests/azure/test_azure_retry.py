"""Retries, error mapping and the settlement of writes whose answer was lost, on
MockTransport: a scripted service, and a clock whose waits take no time."""

from __future__ import annotations

import base64
import hashlib
import time
from email.utils import formatdate
from typing import Any

import pytest

from asyncblobdict import (
    AuthenticationError,
    BlobNotFoundError,
    ConcurrencyError,
    OutcomeUnknownError,
    StorageError,
)
from asyncblobdict.adapters.azure import AzureBlobAdapter, RetryPolicy
from asyncblobdict.adapters.azure.retry import parse_retry_after
from asyncblobdict.adapters.azure.transport import (
    AnswerLostError,
    ConnectError,
    HttpRequest,
    HttpResponse,
    MockTransport,
    RequestError,
    TransportTimeout,
)
from asyncblobdict.adapters.base import CREATE, Update
from tests.azure.mockhttp import KEY, URL, Service, mock_adapter, reply

TOKEN = "x-ms-meta-abdtoken"
LOST = AnswerLostError("ServerDisconnectedError: Server disconnected")


def md5_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()


# ------------------------------------------------------------------ the retry policy


def test_retry_policy_backoff_is_bounded_full_jitter() -> None:
    policy = RetryPolicy(base_delay=0.5, max_delay=4.0)
    for attempt in range(1, 12):
        for _ in range(50):
            assert 0.0 <= policy.backoff(attempt) <= min(4.0, 0.5 * 2 ** (attempt - 1))
    # Full jitter: the waits spread over the whole range, not the ceiling (or one value)
    # every time. 200 draws of U(0, 4) all above 1 or all below 3: odds of 1 in 10**24.
    waits = [policy.backoff(4) for _ in range(200)]
    assert min(waits) < 1.0 and max(waits) > 3.0
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


# ------------------------------------------------------------------ what is retried


@pytest.mark.parametrize(
    "failure",
    [
        reply(503),
        reply(500),
        reply(408),
        reply(429),
        LOST,
        TransportTimeout("TimeoutError: "),
        ConnectError("ClientConnectorError: refused"),
    ],
    ids=["503", "500", "408", "429", "lost", "timeout", "refused"],
)
async def test_transient_failure_then_success(failure: Any) -> None:
    service = Service()
    service.on("HEAD", failure)
    service.on("HEAD", reply(200, Content_Length="3", ETag='"e1"'))
    adapter, clock = mock_adapter(service)
    info = await adapter.head("cc1", "k")
    assert info is not None and info.etag == '"e1"' and info.size == 3
    assert len(service.requests) == 2 and len(clock.sleeps) == 1
    # One logical request: the same client request id, a fresh date and signature each time.
    ids = {r.headers["x-ms-client-request-id"] for r in service.requests}
    assert len(ids) == 1


async def test_not_retried_answers_and_errors() -> None:
    service = Service()
    service.on("HEAD", reply(400, x_ms_error_code="InvalidHeaderValue"))
    adapter, clock = mock_adapter(service)
    with pytest.raises(StorageError) as bad:
        await adapter.head("cc1", "k")
    assert bad.value.status == 400 and clock.sleeps == []
    service.on("GET", RequestError("InvalidURL: nonsense"))
    with pytest.raises(StorageError, match="get failed: InvalidURL") as invalid:
        await adapter.get("cc1", "k")
    assert invalid.value.__cause__ is None and clock.sleeps == []
    assert len(service.requests) == 2


async def test_429_waits_as_long_as_retry_after_says() -> None:
    service = Service()
    service.on("HEAD", reply(429, Retry_After="0.2"))
    service.on("HEAD", reply(429, Retry_After=formatdate(time.time() + 30, usegmt=True)))
    service.on("HEAD", reply(404))
    adapter, clock = mock_adapter(service, retry=RetryPolicy(base_delay=10, max_delay=10))
    assert await adapter.head("cc1", "k") is None
    # Retry-After replaced the (up to 10 s) backoff; an HTTP date counts from now.
    assert clock.sleeps[0] == 0.2 and 28 <= clock.sleeps[1] <= 30


async def test_retry_after_is_capped() -> None:
    service = Service()
    service.on("HEAD", reply(503, Retry_After="3600"))
    service.on("HEAD", reply(404))
    adapter, clock = mock_adapter(service, retry=RetryPolicy(max_retry_after=2.0))
    assert await adapter.head("cc1", "k") is None
    assert clock.sleeps == [2.0]


async def test_500_storm_ends_in_storage_error_after_max_attempts() -> None:
    body = b"<?xml version='1.0'?><Error><Code>InternalError</Code><Message>boom</Message></Error>"
    service = Service()
    service.on("GET", reply(500, body, x_ms_request_id="rid-1"), repeat=True)
    adapter, clock = mock_adapter(service, retry=RetryPolicy(max_attempts=4, base_delay=0.01))
    with pytest.raises(StorageError) as info:
        await adapter.get("cc1", "k")
    assert len(service.requests) == 4 and len(clock.sleeps) == 3
    assert all(0 <= s <= 0.01 * 2**i for i, s in enumerate(clock.sleeps))
    assert info.value.status == 500
    assert info.value.error_code == "InternalError"
    assert info.value.request_id == "rid-1"
    assert not isinstance(info.value, AuthenticationError)


@pytest.mark.parametrize(("hint", "attempts"), [("0.25", 5), ("0.75", 2), ("1.5", 1)])
async def test_total_timeout_bounds_retries(hint: str, attempts: int) -> None:
    """No wait runs past the deadline (1 s after the first attempt): with 0.25 s waits the
    fifth attempt starts exactly at it, and is the last; a wait that would end after it is
    not started."""
    service = Service()
    service.on("HEAD", reply(503, Retry_After=hint), repeat=True)
    policy = RetryPolicy(max_attempts=100, total_timeout=1.0)
    adapter, clock = mock_adapter(service, retry=policy)
    with pytest.raises(StorageError) as info:
        await adapter.head("cc1", "k")
    assert info.value.status == 503
    assert len(service.requests) == attempts
    assert clock.sleeps == [float(hint)] * (attempts - 1)


@pytest.mark.parametrize(
    ("error", "reason"),
    [(LOST, "network error"), (TransportTimeout("TimeoutError: "), "timed out")],
)
async def test_network_down_is_a_storage_error_without_a_cause(error: Any, reason: str) -> None:
    service = Service()
    service.on("GET", error, repeat=True)
    adapter, _ = mock_adapter(service)
    with pytest.raises(StorageError) as info:
        await adapter.get("cc1", "k")
    assert f"get failed after 5 attempt(s): {reason} ({error})" in str(info.value)
    assert info.value.__cause__ is None and info.value.__suppress_context__


async def test_closed_adapter_refuses_requests_and_closes_its_transport() -> None:
    service = Service()
    adapter, _ = mock_adapter(service)
    await adapter.close()
    assert adapter._client.transport.closed  # type: ignore[attr-defined]
    with pytest.raises(StorageError, match="the adapter is closed"):
        await adapter.head("cc1", "k")
    assert service.requests == []


# ------------------------------------------------------------------ signing on the wire


async def test_every_attempt_is_signed_over_what_is_sent() -> None:
    """The Authorization header of each attempt is the HMAC of the string-to-sign rebuilt
    from the request exactly as the transport received it (path as encoded, query decoded)."""
    from urllib.parse import parse_qsl, urlsplit

    from asyncblobdict.adapters.azure.auth import SharedKeyAuth, string_to_sign

    service = Service()
    service.on("PUT", LOST, path="/cc1/dir/a%20b%2B%25%26%C3%BC")
    service.on("PUT", reply(201, ETag='"e"'), path="/cc1/dir/a%20b%2B%25%26%C3%BC")
    adapter, _ = mock_adapter(service, credential=("acct", KEY))
    await adapter.put("cc1", "dir/a b+%&ü", b"value", metadata={"k1": "x", "k_1": "y"})
    signer = SharedKeyAuth("acct", base64.b64decode(KEY))
    for request in service.requests:
        url = urlsplit(request.url)
        text = string_to_sign(
            request.method,
            "acct",
            url.path,
            parse_qsl(url.query),
            request.headers,
            len(request.body or b""),
        )
        assert request.headers["Authorization"] == f"SharedKey acct:{signer.sign(text)}"
    first, second = service.requests
    assert first.headers["x-ms-date"] and first.headers[TOKEN] == second.headers[TOKEN]


# ------------------------------------------------------------------ error mapping


async def test_status_mapping() -> None:
    service = Service()
    adapter, _ = mock_adapter(service)
    service.on("GET", reply(404, x_ms_error_code="BlobNotFound"))
    with pytest.raises(BlobNotFoundError):
        await adapter.get("cc1", "k")
    service.on("GET", reply(403, x_ms_error_code="AuthenticationFailed"))
    with pytest.raises(AuthenticationError) as auth:
        await adapter.get("cc1", "k")
    assert "machine clock" in str(auth.value) and auth.value.status == 403
    service.on("PUT", reply(413, x_ms_error_code="RequestBodyTooLarge"))
    with pytest.raises(StorageError) as big:
        await adapter.put("cc1", "k", b"x")
    assert big.value.status == 413 and big.value.error_code == "RequestBodyTooLarge"
    assert "larger than the service accepts" in str(big.value)
    service.on("PUT", reply(400, b"<Error><Code>InvalidHeaderValue</Code></Error>"))
    with pytest.raises(StorageError) as bad:
        await adapter.put("cc1", "k", b"x")
    assert bad.value.error_code == "InvalidHeaderValue"
    detail = (
        b"<Error><Code>AuthenticationFailed</Code><Message>Server failed\nmore</Message>"
        b"<AuthenticationErrorDetail>The MAC signature found: SIGNATURE</AuthenticationErrorDetail>"
        b"</Error>"
    )
    service.on("HEAD", reply(403, detail, x_ms_request_id="rid"))
    with pytest.raises(AuthenticationError) as denied:
        await adapter.head("cc1", "k")
    assert "Server failed" in str(denied.value) and "SIGNATURE" not in str(denied.value)
    assert denied.value.error_code == "AuthenticationFailed" and denied.value.request_id == "rid"


# ------------------------------------------------------------------ integrity


async def test_md5_mismatch_on_full_and_ranged_reads() -> None:
    service = Service()
    adapter, _ = mock_adapter(service)
    service.on("GET", reply(200, b"abc", ETag='"e"', Content_MD5=md5_b64(b"abd")))
    with pytest.raises(StorageError, match="MD5") as info:
        await adapter.get("cc1", "k")
    assert info.value.error_code == "Md5Mismatch"
    service.on(
        "GET",
        reply(
            206,
            b"abc",
            ETag='"e"',
            Content_Range="bytes 0-2/3",
            x_ms_blob_content_md5=md5_b64(b"xyz"),
        ),
    )
    with pytest.raises(StorageError, match="MD5"):
        await adapter.get("cc1", "k")


def ranged_blob(data: bytes, etag: str, stored_md5_of: bytes) -> Any:
    """Serves ``data`` by x-ms-range, as the service does (206 with Content-Range)."""

    def answer(request: HttpRequest) -> HttpResponse:
        start, end = map(int, request.headers["x-ms-range"].split("=")[1].split("-"))
        if_match = request.headers.get("If-Match")
        if if_match is not None and if_match != etag:
            return reply(412, x_ms_error_code="ConditionNotMet")
        piece = data[start : end + 1]
        return reply(
            206,
            piece,
            ETag=etag,
            Content_Range=f"bytes {start}-{start + len(piece) - 1}/{len(data)}",
            x_ms_blob_content_md5=md5_b64(stored_md5_of),
        )

    return answer


@pytest.mark.parametrize(("stored_md5_of", "ok"), [(b"abcde", True), (b"abcdX", False)])
async def test_md5_checked_across_parallel_ranges(stored_md5_of: bytes, ok: bool) -> None:
    # Three ranges, hashed in order while they arrive: the whole blob's MD5 must match.
    service = Service()
    service.on("GET", ranged_blob(b"abcde", '"e"', stored_md5_of), repeat=True)
    adapter, _ = mock_adapter(service, read_chunk_size=2)
    if ok:
        data, info = await adapter.get("cc1", "k")
        assert (data, info.etag) == (b"abcde", '"e"')
    else:
        with pytest.raises(StorageError, match="MD5"):
            await adapter.get("cc1", "k")
    ranges = [r.headers["x-ms-range"] for r in service.requests]
    assert ranges == ["bytes=0-1", "bytes=2-3", "bytes=4-4"]
    assert all(r.headers["If-Match"] == '"e"' for r in service.requests[1:])


async def test_ranged_read_restarts_when_overwritten() -> None:
    service = Service()
    old_first = reply(206, b"ab", ETag='"old"', Content_Range="bytes 0-1/4")
    service.on("GET", old_first)
    service.on("GET", reply(412, x_ms_error_code="ConditionNotMet"))
    service.on("GET", ranged_blob(b"xyz", '"new"', b"xyz"), repeat=True)
    adapter, _ = mock_adapter(service, read_chunk_size=2)
    data, info = await adapter.get("cc1", "k")
    assert (data, info.etag) == (b"xyz", '"new"')
    service = Service()
    for _ in range(3):
        service.on("GET", old_first)
        service.on("GET", reply(412))
    adapter, _ = mock_adapter(service, read_chunk_size=2)
    with pytest.raises(StorageError, match="changed during each of 3 ranged reads"):
        await adapter.get("cc1", "k")


async def test_missing_container_is_created_then_put_retried() -> None:
    service = Service()
    service.on("PUT", reply(404, x_ms_error_code="ContainerNotFound"))
    service.on(
        "PUT",
        reply(409, x_ms_error_code="ContainerAlreadyExists"),
        path="/cc1",
        query="restype=container",
    )
    service.on("PUT", reply(201, ETag='"e"'))
    adapter, _ = mock_adapter(service)
    assert await adapter.put("cc1", "k", b"v") == '"e"'
    blob, container = f"{URL}/cc1/k", f"{URL}/cc1"
    assert [r.url.split("?")[0] for r in service.requests] == [blob, container, blob]


# ------------------------------------------------------------------ lost answers


class Sent:
    """Answers writes with a chosen status, recording their headers; answers a HEAD with
    the chosen version (carrying our token or not)."""

    def __init__(self) -> None:
        self.headers: list[dict[str, str]] = []

    def write(self, status: int, **headers: str) -> Any:
        def answer(request: HttpRequest) -> HttpResponse:
            self.headers.append(dict(request.headers))
            return reply(status, b"", **headers)

        return answer

    def head(self, etag: str, *, ours: bool) -> Any:
        def answer(request: HttpRequest) -> HttpResponse:
            headers = {"ETag": etag, "Content-Length": "3"}
            if ours:
                headers[TOKEN] = self.headers[0][TOKEN]
            return HttpResponse(200, headers)

        return answer

    def tokens(self) -> set[str]:
        return {h[TOKEN] for h in self.headers}


class Lost:
    """A write that reaches the server and is recorded, but whose answer is lost."""

    def __init__(self, sent: Sent, error: Exception = LOST) -> None:
        self.sent, self.error = sent, error

    def __call__(self, request: HttpRequest) -> HttpResponse:
        self.sent.headers.append(dict(request.headers))
        raise self.error


@pytest.mark.parametrize(
    ("condition", "conflict"), [({"condition": CREATE}, 409), ({"condition": Update('"e1"')}, 412)]
)
async def test_ambiguous_conflict_with_our_token_is_success(
    condition: dict[str, Any], conflict: int
) -> None:
    sent = Sent()
    service = Service()
    service.on("PUT", Lost(sent))  # landed, answer lost
    service.on("PUT", sent.write(conflict))
    service.on("HEAD", sent.head('"ours"', ours=True))
    adapter, _ = mock_adapter(service)
    assert await adapter.put("cc1", "k", b"new", **condition) == '"ours"'
    assert len(sent.tokens()) == 1


async def test_ambiguous_conflict_with_a_foreign_version_is_outcome_unknown() -> None:
    # The stored bytes are even the same as ours: that proves nothing.
    sent = Sent()
    service = Service()
    service.on("PUT", reply(503))
    service.on("PUT", sent.write(412))
    service.on("HEAD", reply(200, ETag='"x"', Content_MD5=md5_b64(b"ours")))
    adapter, _ = mock_adapter(service)
    with pytest.raises(OutcomeUnknownError):
        await adapter.put("cc1", "k", b"ours", condition=Update('"e1"'))


async def test_throttled_attempts_did_not_run_so_a_conflict_is_plain() -> None:
    """429 means the service did not run the request: a conflict after it is a plain
    ConcurrencyError, settled without a HEAD."""
    service = Service()
    service.on("PUT", reply(429, Retry_After="1"))
    service.on("PUT", reply(409, x_ms_error_code="BlobAlreadyExists"))
    adapter, _ = mock_adapter(service)
    with pytest.raises(ConcurrencyError) as info:
        await adapter.put("cc1", "k", b"ours", condition=CREATE)
    assert type(info.value) is ConcurrencyError
    assert service.sent("HEAD") == []


async def test_refused_connections_never_sent_anything_so_no_check() -> None:
    service = Service()
    service.on("PUT", ConnectError("ClientConnectorError: refused"), repeat=True)
    adapter, _ = mock_adapter(service)
    with pytest.raises(StorageError, match="network error") as info:
        await adapter.put("cc1", "k", b"v", condition=Update('"e1"'))
    assert type(info.value) is StorageError
    assert service.sent("HEAD") == [] and len(service.sent("PUT")) == 5


@pytest.mark.parametrize(
    ("stored", "outcome"),
    [('"e1"', StorageError), ('"other"', OutcomeUnknownError)],
    ids=["still-the-old-version", "another-writer"],
)
async def test_writes_timing_out_to_the_end_are_settled_from_storage(
    stored: str, outcome: type[Exception]
) -> None:
    """Every attempt timed out: still the version we conditioned on means nothing landed
    (the network error stands); another version means it is unknown."""
    sent = Sent()
    service = Service()
    service.on("PUT", Lost(sent, TransportTimeout("TimeoutError: ")), repeat=True)
    service.on("HEAD", sent.head(stored, ours=False))
    adapter, _ = mock_adapter(service)
    with pytest.raises(outcome) as info:
        await adapter.put("cc1", "k", b"v", condition=Update('"e1"'))
    assert type(info.value) is outcome
    assert len(sent.headers) == 5 and len(service.sent("HEAD")) == 1


async def test_conflict_while_the_conditioned_version_is_still_stored_is_retried() -> None:
    """A live server cannot answer 412 while holding the ETag we sent; a proxy or a bad
    cache in between could. The version proves our write did not land: try again."""
    sent = Sent()
    service = Service()
    service.on("PUT", TransportTimeout("TimeoutError: "))
    service.on("PUT", sent.write(412))
    service.on("HEAD", sent.head('"e1"', ours=False))
    service.on("PUT", sent.write(201, ETag='"e2"'))
    adapter, _ = mock_adapter(service)
    assert await adapter.put("cc1", "k", b"new", condition=Update('"e1"')) == '"e2"'
    assert len(sent.headers) == 2 and len(sent.tokens()) == 1
    assert all(h["If-Match"] == '"e1"' for h in sent.headers)


async def test_conflicts_while_the_conditioned_version_is_stored_are_bounded() -> None:
    sent = Sent()
    service = Service()
    service.on("PUT", TransportTimeout("TimeoutError: "))
    service.on("PUT", sent.write(412), repeat=True)
    service.on("HEAD", sent.head('"e1"', ours=False), repeat=True)
    adapter, _ = mock_adapter(service)
    with pytest.raises(ConcurrencyError) as info:
        await adapter.put("cc1", "k", b"new", condition=Update('"e1"'))
    assert type(info.value) is ConcurrencyError
    assert len(sent.headers) == 4 and len(sent.tokens()) == 1


async def test_a_lost_block_list_commit_is_settled_by_its_token() -> None:
    sent = Sent()
    service = Service()
    service.on("PUT", reply(201), query="comp=block&", repeat=True)
    service.on("PUT", Lost(sent), query="comp=blocklist")
    service.on("PUT", sent.write(412), query="comp=blocklist")
    service.on("HEAD", sent.head('"ours"', ours=True))
    adapter, _ = mock_adapter(service, single_put_threshold=4, block_size=4)
    assert await adapter.put("cc1", "k", b"0123456789", condition=Update('"e1"')) == '"ours"'
    assert len(service.sent("PUT")) == 3 + 2  # blocks staged once, the commit sent twice


async def test_plain_conflict_does_not_check() -> None:
    service = Service()
    service.on("PUT", reply(409, x_ms_error_code="BlobAlreadyExists"))
    adapter, _ = mock_adapter(service)
    with pytest.raises(ConcurrencyError):
        await adapter.put("cc1", "k", b"ours", condition=CREATE)
    assert service.sent("HEAD") == []


async def test_ambiguous_conditional_delete() -> None:
    service = Service()
    service.on("DELETE", TransportTimeout("TimeoutError: "))
    service.on("DELETE", reply(404, x_ms_error_code="BlobNotFound"))
    adapter, _ = mock_adapter(service)
    await adapter.delete("cc1", "k", condition=Update('"e1"'))
    service = Service()
    service.on("DELETE", reply(404, x_ms_error_code="BlobNotFound"))
    adapter, _ = mock_adapter(service)
    with pytest.raises(ConcurrencyError):
        await adapter.delete("cc1", "k", condition=Update('"e1"'))


async def test_delete_conflict_while_the_conditioned_version_is_stored_is_retried() -> None:
    sent = Sent()
    service = Service()
    service.on("DELETE", TransportTimeout("TimeoutError: "))
    service.on("DELETE", sent.write(412))
    service.on("HEAD", sent.head('"e1"', ours=False))
    service.on("DELETE", sent.write(202))
    adapter, _ = mock_adapter(service)
    await adapter.delete("cc1", "k", condition=Update('"e1"'))
    assert len(sent.headers) == 2


async def test_the_settling_head_failing_leaves_the_outcome_unknown() -> None:
    service = Service()
    service.on("PUT", LOST)
    service.on("PUT", reply(412))
    service.on("HEAD", reply(500), repeat=True)
    adapter, _ = mock_adapter(service)
    with pytest.raises(OutcomeUnknownError, match="it answered 500"):
        await adapter.put("cc1", "k", b"v", condition=Update('"e1"'))


# ------------------------------------------------------------------ bearer tokens


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
    service = Service()
    service.on("HEAD", reply(404), repeat=True)
    adapter, _ = mock_adapter(service, credential=credential)
    await adapter.head("cc1", "k")
    await adapter.head("cc1", "k")
    assert credential.calls == [("https://storage.azure.com/.default",)]
    assert [r.headers["Authorization"] for r in service.requests] == ["Bearer token-1"] * 2
    assert "token-1" not in repr(adapter)


async def test_bearer_token_refreshed_near_expiry() -> None:
    credential = FakeCredential(120)  # inside the 5-minute margin: never reused
    service = Service()
    service.on("HEAD", reply(404), repeat=True)
    adapter, _ = mock_adapter(service, credential=credential)
    await adapter.head("cc1", "k")
    await adapter.head("cc1", "k")
    assert len(credential.calls) == 2


async def test_token_failure_is_authentication_error() -> None:
    class Broken:
        async def get_token(self, *scopes: str) -> FakeToken:
            raise RuntimeError("no identity here")

    service = Service()
    adapter = AzureBlobAdapter(URL, Broken(), transport=MockTransport(service))
    with pytest.raises(AuthenticationError):
        await adapter.head("cc1", "k")
    assert service.requests == []
