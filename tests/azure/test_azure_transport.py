"""AiohttpTransport against a real HTTP server on a local socket, scripted byte by byte.

What is checked is what only the aiohttp transport can get wrong: requests leave exactly as
signed, answers come back as received, aiohttp never resends a request on its own, and each
way a request can fail maps to the right transport error. No Azurite needed.
"""

from __future__ import annotations

import asyncio
import gzip
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import aiohttp
import pytest

from asyncblobdict.adapters.azure import aiohttp_transport
from asyncblobdict.adapters.azure.aiohttp_transport import RESEND_SWITCH, AiohttpTransport
from asyncblobdict.adapters.azure.transport import (
    AnswerLostError,
    ConnectError,
    Headers,
    HttpRequest,
    HttpResponse,
    MockTransport,
    RequestError,
    TransportClosedError,
    TransportTimeout,
)


@dataclass
class Received:
    method: str
    target: str
    headers: dict[str, str]  # names lower-cased
    body: bytes
    connection: int


@dataclass
class Drop:
    """Write ``first`` (maybe nothing), then close the connection."""

    first: bytes = b""


# What the server does with request number n (1-based): bytes to write back on the
# kept-alive connection, or Drop.
Script = Callable[[int, Received], Awaitable[bytes | Drop]]


def http(status: int, headers: dict[str, str] | None = None, body: bytes = b"") -> bytes:
    lines = [f"HTTP/1.1 {status} X"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


class RawServer:
    """A keep-alive HTTP/1.1 server that records every request and answers by script."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.requests: list[Received] = []
        self.connections = 0
        self._handlers: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None

    async def start(self) -> str:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._handlers):
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        self.connections += 1
        connection = self.connections
        try:
            while line := await reader.readline():
                method, target, _ = line.decode().split(" ", 2)
                headers = {}
                while (raw := await reader.readline()) not in (b"\r\n", b""):
                    name, value = raw.decode().split(":", 1)
                    headers[name.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                received = Received(method, target, headers, body, connection)
                self.requests.append(received)
                answer = await self.script(len(self.requests), received)
                if isinstance(answer, Drop):
                    writer.write(answer.first)
                    await writer.drain()
                    break
                writer.write(answer)
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            self._handlers.discard(task)


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[Script], Awaitable[tuple[RawServer, str]]]]:
    servers: list[RawServer] = []

    async def start(script: Script) -> tuple[RawServer, str]:
        server = RawServer(script)
        servers.append(server)
        return server, await server.start()

    yield start
    for server in servers:
        await server.stop()


@pytest.fixture
async def transport() -> AsyncIterator[AiohttpTransport]:
    t = AiohttpTransport(request_timeout=10, connect_timeout=5)
    yield t
    await t.close()


def ok(body: bytes = b"", **headers: str) -> Script:
    async def answer(n: int, request: Received) -> bytes | Drop:
        return http(200, headers, body)

    return answer


async def test_requests_leave_exactly_as_signed(
    serve: Callable[[Script], Awaitable[tuple[RawServer, str]]], transport: AiohttpTransport
) -> None:
    server, base = await serve(ok())
    path = "/acct/c1/dir/a%20b%2B%25%26%C3%BC?comp=block&blockid=YQ%3D%3D"
    headers = {"x-ms-date": "d", "Authorization": "SharedKey acct:sig", "If-Match": '"e"'}
    await transport.send(HttpRequest("PUT", base + path, headers, b""))
    await transport.send(HttpRequest("PUT", base + path, headers, b"data"))
    await transport.send(HttpRequest("GET", base + path, headers))
    empty_put, put, get = server.requests
    # Not re-encoded, and no header aiohttp would add on its own (an unsigned Content-Type
    # breaks SharedKey; Accept-Encoding would let the server compress what we store).
    assert empty_put.target == put.target == get.target == path
    for request in (empty_put, put, get):
        assert "content-type" not in request.headers
        assert "accept-encoding" not in request.headers
        assert request.headers["authorization"] == "SharedKey acct:sig"
        assert request.headers["if-match"] == '"e"'
    assert put.body == b"data" and put.headers["content-length"] == "4"
    assert empty_put.body == b"" and empty_put.headers.get("content-length", "0") == "0"


async def test_answers_come_back_as_received(
    serve: Callable[[Script], Awaitable[tuple[RawServer, str]]], transport: AiohttpTransport
) -> None:
    stored = gzip.compress(b"stored compressed, returned compressed")
    _, base = await serve(ok(stored, etag='"0x1"', **{"Content-Encoding": "gzip"}))
    response = await transport.send(HttpRequest("GET", base + "/c/k"))
    assert response.status == 200
    assert response.body == stored  # never decompressed
    assert response.headers["ETag"] == response.headers["etag"] == '"0x1"'


async def test_no_silent_resend_when_a_kept_alive_connection_drops(
    serve: Callable[[Script], Awaitable[tuple[RawServer, str]]], transport: AiohttpTransport
) -> None:
    """The second PUT reaches the server on the kept-alive connection, which then drops
    without an answer. aiohttp's own resend would send it again on a new connection and
    return that answer; the transport must report the loss instead (the first copy may
    have been applied, and only the client can settle that)."""

    async def answer(n: int, request: Received) -> bytes | Drop:
        return Drop() if n == 2 else http(201, {"ETag": f'"e{n}"'})

    server, base = await serve(answer)
    first = await transport.send(HttpRequest("PUT", base + "/c/k", {}, b"1"))
    assert first.status == 201
    assert getattr(transport._session, RESEND_SWITCH) is False
    with pytest.raises(AnswerLostError) as lost:
        await transport.send(HttpRequest("PUT", base + "/c/k", {}, b"2"))
    assert lost.value.may_have_landed and lost.value.retryable
    assert [r.body for r in server.requests] == [b"1", b"2"]  # sent once, not twice
    assert server.requests[1].connection == server.requests[0].connection  # kept alive


def test_the_resend_switch_exists_and_its_absence_fails_loudly(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert RESEND_SWITCH in aiohttp.ClientSession.ATTRS
    AiohttpTransport()
    renamed = frozenset(aiohttp.ClientSession.ATTRS - {RESEND_SWITCH})
    monkeypatch.setattr(aiohttp.ClientSession, "ATTRS", renamed)
    with pytest.raises(RuntimeError, match=RESEND_SWITCH):
        AiohttpTransport()
    assert aiohttp_transport.RESEND_SWITCH == "_retry_connection"


async def test_refused_connection_is_a_connect_error(transport: AiohttpTransport) -> None:
    with socket.socket() as sock:  # a port that was just free: nothing listens there
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(ConnectError) as refused:
        await transport.send(HttpRequest("PUT", f"http://127.0.0.1:{port}/c/k", {}, b"v"))
    assert not refused.value.may_have_landed and refused.value.retryable


@pytest.mark.parametrize(
    "answer",
    [b"HTTP/1.1 200 X\r\nContent-Length: 10\r\n\r\nabc", b"this is not HTTP\r\n\r\n", b""],
    ids=["truncated", "malformed", "none"],
)
async def test_answers_cut_short_malformed_or_missing_are_lost(
    serve: Callable[[Script], Awaitable[tuple[RawServer, str]]],
    transport: AiohttpTransport,
    answer: bytes,
) -> None:
    async def script(n: int, request: Received) -> bytes | Drop:
        return Drop(answer)

    server, base = await serve(script)
    with pytest.raises(AnswerLostError) as lost:
        await transport.send(HttpRequest("PUT", base + "/c/k", {}, b"v"))
    assert lost.value.may_have_landed and lost.value.retryable
    assert len(server.requests) == 1  # and not resent


async def test_an_attempt_that_takes_too_long_is_a_timeout(
    serve: Callable[[Script], Awaitable[tuple[RawServer, str]]],
) -> None:
    never = asyncio.Event()

    async def hang(n: int, request: Received) -> bytes | Drop:
        await never.wait()
        return Drop()

    _, base = await serve(hang)
    transport = AiohttpTransport(request_timeout=0.2)
    try:
        with pytest.raises(TransportTimeout) as slow:
            await transport.send(HttpRequest("PUT", base + "/c/k", {}, b"v"))
    finally:
        await transport.close()
    assert slow.value.may_have_landed and slow.value.retryable


async def test_errors_carry_no_signature_and_no_aiohttp_context(
    transport: AiohttpTransport,
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/c/k?sv=2025-11-05&sig=TOPSECRETSIGNATURE"
    with pytest.raises(ConnectError) as refused:
        await transport.send(HttpRequest("GET", url))
    assert "TOPSECRETSIGNATURE" not in str(refused.value)
    assert refused.value.__context__ is None and refused.value.__cause__ is None
    with pytest.raises(RequestError):
        await transport.send(HttpRequest("GET", "nonsense-without-a-scheme/c/k"))


async def test_close_is_final_and_cuts_off_running_requests(
    serve: Callable[[Script], Awaitable[tuple[RawServer, str]]],
) -> None:
    arrived = asyncio.Event()
    never = asyncio.Event()

    async def hold(n: int, request: Received) -> bytes | Drop:
        arrived.set()
        await never.wait()
        return Drop()

    _, base = await serve(hold)
    transport = AiohttpTransport()
    running = asyncio.ensure_future(transport.send(HttpRequest("GET", base + "/c/k")))
    await arrived.wait()
    await transport.close()
    with pytest.raises(TransportClosedError):
        await running
    with pytest.raises(TransportClosedError):
        await transport.send(HttpRequest("GET", base + "/c/k"))
    assert transport.closed and transport._session is None
    await transport.close()  # twice is fine


# ------------------------------------------------------------------ MockTransport


async def test_mock_transport_takes_sync_or_async_handlers_and_fakes_failures() -> None:
    seen: list[HttpRequest] = []

    def sync(request: HttpRequest) -> HttpResponse:
        seen.append(request)
        return HttpResponse(201, {"etag": '"e"'}, b"x")

    async def failing(request: HttpRequest) -> HttpResponse:
        raise TransportTimeout("TimeoutError: ")

    mock = MockTransport(sync)
    request = HttpRequest("PUT", "https://a/c/k", {"x-ms-date": "d"}, b"v")
    response = await mock.send(request)
    assert seen == [request]
    assert (response.status, response.body) == (201, b"x")
    assert response.headers["ETag"] == response.headers.get("ETAG") == '"e"'
    assert list(response.headers) == ["etag"] and "Etag" in response.headers
    with pytest.raises(TransportTimeout):
        await MockTransport(failing).send(request)
    await mock.close()
    with pytest.raises(TransportClosedError):
        await mock.send(request)


def test_headers_are_case_insensitive_and_read_only() -> None:
    headers = Headers({"Content-MD5": "a", "x-ms-meta-K": "b"})
    assert headers["content-md5"] == "a" and headers["X-MS-META-k"] == "b"
    assert dict(headers) == {"Content-MD5": "a", "x-ms-meta-K": "b"}
    assert len(headers) == 2 and 3 not in headers  # type: ignore[comparison-overlap]
    assert not hasattr(headers, "__setitem__")
