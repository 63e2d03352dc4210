"""Low-level Blob REST requests: build and sign them, send them through a transport, retry.

The client knows URLs, headers, authorisation, retries and logging; it returns every final
answer (any status) to the adapter, which decides what it means. How bytes go over the wire
is the transport's business (:mod:`.transport`); the client sees only plain requests,
answers and :class:`~.transport.TransportError`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from email.utils import formatdate
from urllib.parse import quote, urlsplit

from ..._redact import redact
from ...errors import StorageError
from .auth import Authorizer, PreparedRequest
from .retry import RETRYABLE_STATUSES, RetryPolicy
from .transport import (
    HttpRequest,
    HttpResponse,
    ReadsInto,
    Transport,
    TransportError,
    TransportTimeout,
    send_by_copy,
)

__all__ = ["DEFAULT_API_VERSION", "BlobClient", "Failure", "Response", "redact"]

DEFAULT_API_VERSION = "2025-11-05"

logger = logging.getLogger("asyncblobdict.azure")


@dataclass(frozen=True, slots=True)
class Response:
    """A final answer: status, headers (case-insensitive), the whole body.

    ``ambiguous`` is True when some attempt other than a clean answer may have been applied
    on the server: an earlier attempt that failed after sending (a timeout, a dropped
    connection, a 5xx or 408), or this one when it is itself such a 5xx/408 returned because
    the retries ran out. A conflict in an ambiguous answer may be our own earlier write.
    """

    status: int
    headers: Mapping[str, str]
    body: bytes
    ambiguous: bool = False
    written: int = 0
    """With ``into``: how many bytes of the body went into the caller's buffer."""

    def header(self, name: str) -> str | None:
        """A response header by case-insensitive name."""
        return self.headers.get(name)


@dataclass(frozen=True, slots=True)
class Failure:
    """No final answer: the retries ran out on network errors or timeouts, or the client
    was closed meanwhile. ``error`` is what :meth:`BlobClient.request` raises; ``ambiguous``
    is True when some attempt may have been applied (see :class:`Response`)."""

    error: StorageError
    ambiguous: bool


class _Call:
    """What one logical request is about, for its error messages and log lines (a plain
    class: a frozen dataclass costs a microsecond per request to build)."""

    __slots__ = ("action", "container", "key")

    def __init__(self, action: str, container: str | None, key: str | None) -> None:
        self.action, self.container, self.key = action, container, key

    def error(self, text: str) -> StorageError:
        return StorageError(f"{self.action} {text}", container=self.container, key=self.key)

    def closed(self) -> StorageError:
        return self.error("failed: the adapter is closed")


def _request_id() -> str:
    """A random (version 4) UUID in its usual text form, as ``str(uuid.uuid4())`` gives it,
    at a quarter of its cost (no UUID object)."""
    h = os.urandom(16).hex()
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(h[16], 16) & 3]}{h[17:20]}-{h[20:]}"


class _HttpDate:
    """The x-ms-date header's text for the current second, formatted once per second."""

    __slots__ = ("second", "text")

    def __init__(self) -> None:
        self.second = -1
        self.text = ""

    def now(self) -> str:
        second = int(time.time())
        if second != self.second:
            # formatdate() of the second itself: the header has no finer resolution.
            self.text, self.second = formatdate(second, usegmt=True), second
        return self.text


_http_date = _HttpDate().now


def _may_have_landed(result: HttpResponse | TransportError) -> bool:
    """Whether this attempt may have been applied although it has no clean answer: a
    failure after sending, or a 5xx/408 (429 means throttled, not run)."""
    if isinstance(result, TransportError):
        return result.may_have_landed
    return result.status in RETRYABLE_STATUSES and result.status != 429


def _worth_retrying(result: HttpResponse | TransportError) -> bool:
    if isinstance(result, TransportError):
        return result.retryable
    return result.status in RETRYABLE_STATUSES


class BlobClient:
    """Sends signed requests to one storage account endpoint through ``transport``.

    :meth:`close` is final: it closes the transport, requests still running fail, and every
    later request raises StorageError ("the adapter is closed"). ``clock`` and ``sleep``
    (monotonic seconds, and the wait between attempts) are there for tests.
    """

    def __init__(
        self,
        endpoint: str,
        auth: Authorizer | None,
        *,
        transport: Transport,
        api_version: str = DEFAULT_API_VERSION,
        retry: RetryPolicy | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        parts = urlsplit(endpoint)
        self.endpoint = endpoint
        self._origin = f"{parts.scheme}://{parts.netloc}"
        self._base_path = parts.path.rstrip("/")
        self._auth = auth
        self.transport = transport
        self.api_version = api_version
        self.retry = retry if retry is not None else RetryPolicy()
        self._clock = clock
        self._sleep = sleep
        self._closed = False

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called."""
        return self._closed

    async def close(self) -> None:
        """Close the transport for good; safe to call twice."""
        self._closed = True
        await self.transport.close()

    async def send(
        self,
        method: str,
        path: str,
        *,
        query: list[tuple[str, str]] | None = None,
        headers: dict[str, str] | None = None,
        body: bytes | memoryview | None = None,
        action: str,
        container: str | None = None,
        key: str | None = None,
        resume: Callable[[HttpResponse], dict[str, str] | None] | None = None,
        into: memoryview | None = None,
    ) -> Response | Failure:
        """Send one logical request, retrying transient failures; return the final answer.

        ``path`` is the encoded path below the endpoint (``/container/blob``). A request that
        got no final answer comes back as a :class:`Failure` that says whether an attempt
        may have been applied. ``resume`` (reads only): given the part of an answer that
        arrived before the connection broke, it keeps those bytes and returns the headers
        of a request for the rest (None: start again); such an attempt made progress, so it
        is not counted against the retry budget and is sent again at once.

        ``into`` (reads only): a 2xx answer's body is written into this buffer as it arrives
        (``Response.written`` bytes; see :class:`~.transport.ReadsInto`); after a resume the
        rest goes on after the bytes already written.
        """
        call = _Call(action, container, key)
        deadline = self._clock() + self.retry.total_timeout
        request_id = _request_id()
        ambiguous = False  # some attempt so far may have been applied
        attempt = 0
        while True:
            if self._closed:
                return Failure(call.closed(), ambiguous)
            attempt += 1
            try:
                request = await self._prepare(method, path, query, headers, body, request_id)
            except StorageError as exc:
                return Failure(exc, ambiguous)  # e.g. a token that cannot be renewed
            result = await self._attempt(request, attempt, request_id, into)
            partial = result.partial if isinstance(result, TransportError) else None
            if (
                resume is not None
                and partial is not None
                and (partial.body or partial.written)
                and not self._closed
            ):
                more = resume(partial)
                if more is not None:
                    headers = more
                    if into is not None:
                        into = into[partial.written :]
                    attempt -= 1
                    continue
            if not _worth_retrying(result):
                if isinstance(result, HttpResponse):
                    return Response(
                        result.status, result.headers, result.body, ambiguous, result.written
                    )
                return self._failed(call, result, ambiguous or result.may_have_landed)
            ambiguous = ambiguous or _may_have_landed(result)
            if isinstance(result, TransportError) and self._closed:
                # close() cut this request off: say so rather than retry or blame the network.
                return Failure(call.closed(), ambiguous)
            delay = self._next_delay(result, attempt, deadline)
            if delay is None:
                return self._gave_up(call, result, attempt, ambiguous)
            logger.debug(
                "%s %s: retrying in %.3f s (attempt %d of %d)",
                method,
                action,
                delay,
                attempt + 1,
                self.retry.max_attempts,
            )
            await self._sleep(delay)

    async def _prepare(
        self,
        method: str,
        path: str,
        query: list[tuple[str, str]] | None,
        headers: dict[str, str] | None,
        body: bytes | memoryview | None,
        request_id: str,
    ) -> HttpRequest:
        """One attempt's request, dated and signed (StorageError if it cannot be signed)."""
        sent = dict(headers) if headers else {}
        sent["x-ms-date"] = _http_date()
        sent["x-ms-version"] = self.api_version
        sent["x-ms-client-request-id"] = request_id
        prepared = PreparedRequest(
            method, self._base_path + path, list(query) if query else [], sent, len(body or b"")
        )
        if self._auth is not None:
            await self._auth.authorize(prepared)
        return HttpRequest(method, self._url(prepared), prepared.headers, body)

    def _url(self, request: PreparedRequest) -> str:
        if not request.query and not request.raw_query:
            return self._origin + request.path
        query = "&".join(
            f"{quote(name, safe='')}={quote(value, safe='')}" for name, value in request.query
        )
        if request.raw_query:
            query = f"{query}&{request.raw_query}" if query else request.raw_query
        return self._origin + request.path + (f"?{query}" if query else "")

    async def _attempt(
        self, request: HttpRequest, attempt: int, request_id: str, into: memoryview | None
    ) -> HttpResponse | TransportError:
        """Send one attempt: its answer, or the transport error that stands for none."""
        started = self._clock()
        result: HttpResponse | TransportError
        try:
            transport = self.transport
            if into is None:
                result = await transport.send(request)
            elif isinstance(transport, ReadsInto):
                result = await transport.send_into(request, into)
            else:  # a transport without send_into: copy the body in here
                result = await send_by_copy(transport, request, into)
        except TransportError as exc:
            result = exc
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "%s %s attempt %d -> %s in %.1f ms (client request id %s)",
                request.method,
                redact(request.url),
                attempt,
                result.status if isinstance(result, HttpResponse) else type(result).__name__,
                (self._clock() - started) * 1000,
                request_id,
            )
        return result

    def _next_delay(
        self, result: HttpResponse | TransportError, attempt: int, deadline: float
    ) -> float | None:
        """The wait before another attempt, or None when the attempts or the time ran out."""
        policy = self.retry
        retry_after = (
            result.headers.get("Retry-After") if isinstance(result, HttpResponse) else None
        )
        delay = policy.delay(attempt, retry_after)
        if attempt >= policy.max_attempts or self._clock() + delay > deadline:
            return None
        return delay

    def _failed(self, call: _Call, error: TransportError, ambiguous: bool) -> Failure:
        """A transport error that no retry can help (the request could not be sent)."""
        if self._closed:
            return Failure(call.closed(), ambiguous)
        return Failure(call.error(f"failed: {error}"), ambiguous)

    @staticmethod
    def _gave_up(
        call: _Call, result: HttpResponse | TransportError, attempt: int, ambiguous: bool
    ) -> Response | Failure:
        """The outcome once the retries ran out: the last answer, or a StorageError."""
        if isinstance(result, HttpResponse):
            return Response(result.status, result.headers, result.body, ambiguous)
        reason = "timed out" if isinstance(result, TransportTimeout) else "network error"
        return Failure(
            call.error(f"failed after {attempt} attempt(s): {reason} ({result})"), ambiguous
        )
