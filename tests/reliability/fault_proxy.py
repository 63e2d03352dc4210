"""A fault-injecting HTTP/1.1 proxy for tests: asyncio only, listens on 127.0.0.1.

    proxy = FaultProxy(FaultRates(error_503=0.05, reset_after=0.02), seed=1)
    port = await proxy.start("http://127.0.0.1:10000")
    ...  # point a client at http://127.0.0.1:{port}/...
    await proxy.quiesce()  # wait until no request is on its way to the upstream
    print(proxy.counts)
    await proxy.stop()

Each request draws at most one fault, by the configured rates:

``error_503``    answers 503 ServerBusy (with Retry-After 0) without forwarding
``error_500``    forwards the request, then answers 500 instead of the real answer (it landed)
``delay``        holds the request past the client's timeout: half the time it first forwards
                 it (it landed, the answer never comes in time), half the time it never does
``reset_before`` closes the connection without forwarding (nothing landed)
``reset_after``  forwards the request, then closes the connection without answering (landed)
``truncate``     forwards, then sends the real status and headers with the full
                 Content-Length but only part of the body, and closes (only for answers with
                 a body; otherwise the request passes unharmed)

``refuse_all = True`` turns every request into a 503 (a backend that is down).
Subclasses may override :meth:`FaultProxy.choose` (which fault a request gets) and
:meth:`FaultProxy.forwarded` (runs once the upstream has answered, before the client hears
anything); :class:`ScriptedProxy` uses them to stage exact interleavings.
Counters: ``counts[kind]`` for faults injected, ``counts["forwarded"]``, ``counts["requests"]``.
The proxy forwards bytes as they are (path, query, headers), so signed requests stay valid.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, fields
from urllib.parse import urlsplit

__all__ = ["FAULT_KINDS", "FaultProxy", "FaultRates", "Rule", "ScriptedProxy"]

FAULT_KINDS = ("error_503", "error_500", "delay", "reset_before", "reset_after", "truncate")
_NO_BODY_STATUS = {204, 304}
_HOP = {b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"te"}


@dataclass
class FaultRates:
    """Probability of each fault per request (they should sum to at most 1)."""

    error_503: float = 0.0
    error_500: float = 0.0
    delay: float = 0.0
    reset_before: float = 0.0
    reset_after: float = 0.0
    truncate: float = 0.0
    delay_seconds: float = 1.0  # how long a delayed request is held (past the client timeout)

    def total(self) -> float:
        return sum(float(getattr(self, k)) for k in FAULT_KINDS)

    def scaled(self, factor: float) -> FaultRates:
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        for k in FAULT_KINDS:
            values[k] *= factor
        return FaultRates(**values)


class _Closed(Exception):
    pass


class _Message:
    """One parsed HTTP message: the head as received and the body."""

    def __init__(self, first: bytes, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        self.first = first
        self.headers = headers
        self.body = body
        self.rule: Rule | None = None  # the ScriptedProxy rule that caught it

    def header(self, name: bytes) -> bytes | None:
        for k, v in self.headers:
            if k.lower() == name:
                return v
        return None

    def encode(self, body: bytes | None = None, *, length: int | None = None) -> bytes:
        """Head (hop-by-hop headers dropped, Content-Length set) and body."""
        body = self.body if body is None else body
        lines = [self.first]
        for k, v in self.headers:
            lk = k.lower()
            if lk in _HOP or lk == b"content-length":
                continue
            lines.append(k + b": " + v)
        if length is not None:
            lines.append(b"Content-Length: %d" % length)
        return b"\r\n".join(lines) + b"\r\n\r\n" + body


async def _read_head(reader: asyncio.StreamReader) -> tuple[bytes, list[tuple[bytes, bytes]]]:
    try:
        raw = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError) as exc:
        raise _Closed from exc
    lines = raw[:-4].split(b"\r\n")
    headers = []
    for line in lines[1:]:
        k, _, v = line.partition(b":")
        headers.append((k.strip(), v.strip()))
    return lines[0], headers


async def _read_body(
    reader: asyncio.StreamReader, headers: list[tuple[bytes, bytes]], *, until_eof: bool
) -> bytes:
    lookup = {k.lower(): v for k, v in headers}
    try:
        if b"chunked" in lookup.get(b"transfer-encoding", b"").lower():
            chunks: list[bytes] = []
            while True:
                size_line = await reader.readuntil(b"\r\n")
                n = int(size_line.split(b";")[0].strip(), 16)
                if n == 0:
                    while (await reader.readuntil(b"\r\n")) != b"\r\n":
                        pass
                    return b"".join(chunks)
                chunks.append(await reader.readexactly(n))
                await reader.readexactly(2)
        if b"content-length" in lookup:
            return await reader.readexactly(int(lookup[b"content-length"]))
        if until_eof:
            return await reader.read()
        return b""
    except (asyncio.IncompleteReadError, ConnectionError, ValueError) as exc:
        raise _Closed from exc


class FaultProxy:
    """See the module docstring."""

    def __init__(self, rates: FaultRates | None = None, *, seed: int | None = None) -> None:
        self.rates = rates or FaultRates()
        self.refuse_all = False
        self.counts: Counter[str] = Counter()
        self._rng = random.Random(seed)
        self._server: asyncio.AbstractServer | None = None
        self._upstream: tuple[str, int] = ("127.0.0.1", 0)
        self._inflight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self.port = 0
        self.trace: list[tuple[str, str, str]] | None = None  # (request line, fault, status)

    async def start(self, upstream: str) -> int:
        """Start listening; ``upstream`` is ``http://host:port`` (any path is ignored)."""
        parts = urlsplit(upstream)
        assert parts.hostname is not None and parts.port is not None
        self._upstream = (parts.hostname, parts.port)
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    def url(self, path: str = "") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def quiesce(self) -> None:
        """Wait until no forwarded request is still on its way to or from the upstream."""
        await self._idle.wait()

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for w in list(self._writers):
                w.transport.abort()
            for t in list(self._tasks):
                t.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await self._server.wait_closed()
            self._server = None

    # -------------------------------------------------------------------------------

    async def choose(self, request: _Message) -> str | None:
        """The fault for ``request`` (None: pass it through); by default drawn by the rates."""
        return self._draw()

    async def forwarded(self, request: _Message, fault: str | None) -> None:
        """Called after the upstream answered ``request``, before the client gets anything."""

    def _draw(self) -> str | None:
        if self.refuse_all:
            return "error_503"
        x = self._rng.random()
        for kind in FAULT_KINDS:
            x -= getattr(self.rates, kind)
            if x < 0:
                return kind
        return None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(writer)
        try:
            while True:
                first, headers = await _read_head(reader)
                body = await _read_body(reader, headers, until_eof=False)
                request = _Message(first, headers, body)
                self.counts["requests"] += 1
                fault = await self.choose(request)
                head_request = first.split(b" ", 1)[0].upper() == b"HEAD"
                if self.trace is not None:
                    self.trace.append((first.decode("latin-1"), fault or "", "?"))
                if fault == "error_503":
                    self.counts[fault] += 1
                    await self._answer_error(writer, 503, b"ServerBusy", head_request)
                    continue
                if fault == "reset_before":
                    self.counts[fault] += 1
                    writer.transport.abort()
                    return
                forward_now = fault != "delay" or self._rng.random() < 0.5
                response: _Message | None = None
                if forward_now:
                    response = await self._forward(request)
                    await self.forwarded(request, fault)
                if fault == "delay":
                    self.counts[fault] += 1
                    await asyncio.sleep(self.rates.delay_seconds)
                    writer.transport.abort()
                    return
                assert response is not None
                if fault == "error_500":
                    self.counts[fault] += 1
                    await self._answer_error(writer, 500, b"InternalError", head_request)
                    continue
                if fault == "reset_after":
                    self.counts[fault] += 1
                    writer.transport.abort()
                    return
                if fault == "truncate" and len(response.body) >= 1 and not head_request:
                    self.counts[fault] += 1
                    cut = self._rng.randrange(0, len(response.body))
                    writer.write(response.encode(response.body[:cut], length=len(response.body)))
                    await writer.drain()
                    writer.transport.abort()
                    return
                if head_request:
                    writer.write(self._head_answer(response))
                else:
                    writer.write(response.encode(length=len(response.body)))
                await writer.drain()
        except (_Closed, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.transport.abort()
            self._writers.discard(writer)
            self._tasks.discard(task)

    @staticmethod
    def _head_answer(response: _Message) -> bytes:
        # A HEAD answer keeps the upstream's Content-Length (the size of the blob), no body.
        lines = [response.first]
        for k, v in response.headers:
            if k.lower() not in _HOP:
                lines.append(k + b": " + v)
        return b"\r\n".join(lines) + b"\r\n\r\n"

    async def _answer_error(
        self, writer: asyncio.StreamWriter, status: int, code: bytes, head: bool
    ) -> None:
        reason = b"Server Busy" if status == 503 else b"Internal Server Error"
        body = (
            b'<?xml version="1.0" encoding="utf-8"?><Error><Code>' + code + b"</Code>"
            b"<Message>injected by the fault proxy</Message></Error>"
        )
        lines = (
            b"HTTP/1.1 %d %s\r\nContent-Type: application/xml\r\nx-ms-error-code: %s\r\n"
            b"x-ms-request-id: fault-proxy\r\nRetry-After: 0\r\nContent-Length: %d\r\n\r\n"
        ) % (status, reason, code, len(body))
        writer.write(lines if head else lines + body)  # a HEAD answer has no body
        await writer.drain()

    async def _forward(self, request: _Message) -> _Message:
        """Send the request upstream on a connection of its own, closed after the answer.

        A fresh link per request means a request is never sent twice by the proxy.
        """
        self._inflight += 1
        self._idle.clear()
        writer: asyncio.StreamWriter | None = None
        try:
            reader, writer = await asyncio.open_connection(*self._upstream)
            head = request.encode(b"", length=len(request.body))
            writer.write(head[:-2] + b"Connection: close\r\n\r\n" + request.body)
            await writer.drain()
            first, headers = await _read_head(reader)
            status = int(first.split(b" ")[1])
            method = request.first.split(b" ", 1)[0].upper()
            if method == b"HEAD" or status in _NO_BODY_STATUS or status < 200:
                body = b""
            else:
                body = await _read_body(reader, headers, until_eof=True)
            self.counts["forwarded"] += 1
            if self.trace is not None:
                self.trace.append((request.first.decode("latin-1"), "forwarded", first.decode()))
            return _Message(first, headers, body)
        except OSError as exc:
            raise _Closed from exc
        finally:
            if writer is not None:
                writer.transport.abort()
            self._inflight -= 1
            if self._inflight == 0:
                self._idle.set()


@dataclass
class Rule:
    """One step of a :class:`ScriptedProxy`: which requests it catches and what it does.

    ``method`` and ``has``/``lacks`` (substrings of the request line, e.g. ``"comp=block"``)
    select requests; the first ``times`` of them (None: all) get ``fault`` and run
    ``before`` (awaited before the fault is applied, so before any forwarding) and ``after``
    (awaited once the upstream has answered a forwarded request). ``seen`` lists each
    caught request's headers, lower-cased names.
    """

    method: str
    fault: str | None = None
    has: str = ""
    lacks: str | None = None
    times: int | None = 1
    before: Callable[[], Awaitable[None]] | None = None
    after: Callable[[], Awaitable[None]] | None = None
    seen: list[dict[str, str]] = field(default_factory=list)

    def matches(self, request: _Message) -> bool:
        line = request.first.decode("latin-1")
        method, _, rest = line.partition(" ")
        if method.upper() != self.method or self.has not in rest:
            return False
        return self.lacks is None or self.lacks not in rest


class ScriptedProxy(FaultProxy):
    """A proxy that injects exactly the faults its rules name, in order, and nothing else.

    proxy = ScriptedProxy()
    proxy.rule("PUT", fault="error_503", before=other_writer_writes)
    """

    def __init__(self) -> None:
        super().__init__()
        self.rules: list[Rule] = []

    def rule(self, method: str, **options: object) -> Rule:
        rule = Rule(method, **options)  # type: ignore[arg-type]
        self.rules.append(rule)
        return rule

    async def choose(self, request: _Message) -> str | None:
        for rule in self.rules:
            if rule.times == 0 or not rule.matches(request):
                continue
            if rule.times is not None:
                rule.times -= 1
            rule.seen.append({k.decode().lower(): v.decode() for k, v in request.headers})
            request.rule = rule
            if rule.before is not None:
                await rule.before()
            return rule.fault
        return None

    async def forwarded(self, request: _Message, fault: str | None) -> None:
        rule = request.rule
        if rule is not None and rule.after is not None:
            await rule.after()
