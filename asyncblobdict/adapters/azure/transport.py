"""The transport seam: how one HTTP request goes over the wire, on plain types.

:class:`BlobClient <asyncblobdict.adapters.azure.client.BlobClient>` builds and signs
every request, decides on retries and settles writes whose answer was lost; a transport
only sends one request and returns the answer, or raises one of the
:class:`TransportError` classes below. It never retries, never reads a status, never
follows a redirect. Two transports come with the package:
:class:`~asyncblobdict.adapters.azure.aiohttp_transport.AiohttpTransport` (the default,
one pooled aiohttp session per event loop) and :class:`MockTransport` (in memory, for
tests). A wrapper that injects faults, throttles or records is a transport that holds
another one.

The contract, once::

    class Transport(Protocol):
        async def send(self, request: HttpRequest) -> HttpResponse: ...
        async def close(self) -> None: ...

- ``send`` sends ``request.method`` to ``request.url`` exactly as given (already
  percent-encoded: it must not be encoded again, or the SharedKey signature breaks) with
  exactly ``request.headers`` (no header of its own: no Content-Type, no Accept-Encoding)
  and ``request.body`` (``None`` means no body). It returns the status, the headers as a
  case-insensitive mapping, and the whole body as received (never decompressed), for every
  status. It must not resend a request on its own: a resend may apply a write twice, and
  only the client knows how to settle that.
- A request that gets no answer raises :class:`ConnectError` if it certainly never left
  (the connection was refused or could not be made), :class:`TransportTimeout` if an
  attempt timed out, :class:`AnswerLostError` if anything failed after the request may
  have been sent (a reset, a dropped connection, a truncated or malformed answer), and
  :class:`RequestError` if the request could not be sent at all as made (not retried).
  :class:`TransportClosedError` once the transport is closed. No other exception type
  leaves ``send`` (cancellation aside), and messages carry no secret: pass them through
  :func:`asyncblobdict._redact.redact`.
- ``close`` releases connections; it is final and safe to call twice; requests still
  running fail.

Optionally (:class:`ReadsInto`), a transport also has ``send_into(request, into)``: the same
as ``send``, except that a 2xx answer's body is written into the caller's buffer ``into``
(a writable memoryview) as it arrives, from its start, instead of being collected;
``HttpResponse.written`` says how many bytes went there, and ``body`` holds only what did
not fit (normally nothing). Other statuses come back as from ``send``. When the connection
breaks mid-body, ``partial.written`` says how much of ``into`` was filled. The client uses
it for ranged reads into one preallocated buffer; for a transport without it, the client
copies the body in itself.

Example: a transport that answers every request with 404::

    async def handler(request: HttpRequest) -> HttpResponse:
        return HttpResponse(404, {"x-ms-error-code": "BlobNotFound"})

    adapter = AzureBlobAdapter(url, key, transport=MockTransport(handler))
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import ClassVar, Protocol, runtime_checkable

__all__ = [
    "AnswerLostError",
    "ConnectError",
    "Headers",
    "ReadsInto",
    "HttpRequest",
    "HttpResponse",
    "MockTransport",
    "RequestError",
    "Transport",
    "TransportClosedError",
    "TransportError",
    "TransportTimeout",
]


class Headers(Mapping[str, str]):
    """A read-only, case-insensitive mapping of header names to values (last one wins).

    Iteration gives the names as first given.
    """

    __slots__ = ("_items",)

    def __init__(self, headers: Mapping[str, str] | None = None) -> None:
        self._items: dict[str, tuple[str, str]] = {
            name.lower(): (name, value) for name, value in (headers or {}).items()
        }

    def __getitem__(self, name: str) -> str:
        return self._items[name.lower()][1]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._items

    def __iter__(self) -> Iterator[str]:
        return (name for name, _ in self._items.values())

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"Headers({dict(self.items())!r})"


@dataclass(frozen=True, slots=True)
class HttpRequest:
    """One request as it goes on the wire: ``url`` fully percent-encoded, sent as is."""

    method: str
    url: str
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes | memoryview | None = None


@dataclass(frozen=True, slots=True)
class HttpResponse:
    """One answer: status, headers (a case-insensitive mapping), the whole body as received
    (with ``send_into``: ``written`` bytes of it in the caller's buffer, the rest here)."""

    status: int
    headers: Mapping[str, str] = field(default_factory=Headers)
    body: bytes = b""
    written: int = 0


class TransportError(Exception):
    """No answer to a request. The subclass says whether it is worth another attempt
    (``retryable``) and whether the request may have reached the server and been applied
    (``may_have_landed``): a write after which this is True must be settled, not assumed.
    """

    retryable: ClassVar[bool] = False
    may_have_landed: ClassVar[bool] = True
    partial: HttpResponse | None = None
    """The answer's status, headers and the part of its body that arrived before the
    connection broke, when a transport can tell (for resuming a ranged read)."""


class ConnectError(TransportError):
    """No connection could be made (refused, unreachable, name not found, TLS failure):
    the request was never sent."""

    retryable = True
    may_have_landed = False


class AnswerLostError(TransportError):
    """The connection failed after the request may have been sent (reset, dropped, a
    truncated or malformed answer): it may have been applied."""

    retryable = True
    may_have_landed = True


class TransportTimeout(TransportError):
    """An attempt took longer than the transport allows: it may have been applied."""

    retryable = True
    may_have_landed = True


class RequestError(TransportError):
    """The request could not be sent as made (e.g. an invalid URL); never retried."""

    retryable = False
    may_have_landed = False


class TransportClosedError(TransportError):
    """The transport was closed before or while the request was sent."""

    retryable = False
    may_have_landed = True


class Transport(Protocol):
    """Sends one HTTP request and returns the answer (see the module docstring)."""

    async def send(self, request: HttpRequest) -> HttpResponse: ...

    async def close(self) -> None: ...


@runtime_checkable
class ReadsInto(Protocol):
    """A transport that can also write a 2xx answer's body straight into a buffer."""

    async def send_into(self, request: HttpRequest, into: memoryview) -> HttpResponse: ...


def fill(into: memoryview, done: int, data: bytes) -> tuple[int, bytes]:
    """Copy ``data`` into ``into`` at ``done``: the new fill level and what did not fit."""
    room = len(into) - done
    if len(data) <= room:
        into[done : done + len(data)] = data
        return done + len(data), b""
    into[done:] = memoryview(data)[:room]
    return len(into), data[room:]


async def send_by_copy(
    transport: Transport, request: HttpRequest, into: memoryview
) -> HttpResponse:
    """``send_into`` for any transport: ``send``, then copy a 2xx body (or the part of one
    that arrived before a cut) into ``into``."""
    try:
        answer = await transport.send(request)
    except TransportError as exc:
        cut = exc.partial
        if cut is not None and 200 <= cut.status < 300 and not cut.written:
            written, rest = fill(into, 0, cut.body)
            exc.partial = HttpResponse(cut.status, Headers(cut.headers), rest, written)
        raise
    if not 200 <= answer.status < 300:
        return answer
    written, rest = fill(into, 0, answer.body)
    return HttpResponse(answer.status, answer.headers, rest, written)


Handler = Callable[[HttpRequest], "HttpResponse | Awaitable[HttpResponse]"]


class MockTransport:
    """A transport that hands every request to ``handler`` (sync or async) and returns what
    it returns; the handler raises a :class:`TransportError` to fake a network failure.

    The answer's headers are made case-insensitive, and its body must be bytes. After
    :meth:`close` every request raises :class:`TransportClosedError`.
    """

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.closed = False

    async def send(self, request: HttpRequest) -> HttpResponse:
        if self.closed:
            raise TransportClosedError("the transport is closed")
        answer = self.handler(request)
        if inspect.isawaitable(answer):
            answer = await answer
        if not isinstance(answer, HttpResponse):
            raise TypeError(f"the handler returned {type(answer).__name__}, not HttpResponse")
        return HttpResponse(answer.status, Headers(answer.headers), bytes(answer.body))

    async def send_into(self, request: HttpRequest, into: memoryview) -> HttpResponse:
        """Like :meth:`send`; a 2xx body is copied into ``into`` (see :class:`ReadsInto`)."""
        return await send_by_copy(self, request, into)

    async def close(self) -> None:
        self.closed = True
