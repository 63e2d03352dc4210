"""The default transport: one pooled aiohttp session per event loop.

Everything aiohttp-specific about sending a Blob REST request lives here: the session's
lifecycle across event loops, the options that keep requests exactly as signed (no
automatic headers, URLs not re-encoded, bodies not decompressed), the switch that stops
aiohttp's silent resend, and the mapping of aiohttp's exceptions onto
:mod:`~asyncblobdict.adapters.azure.transport`'s.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncGenerator
from typing import Any

import aiohttp
from yarl import URL

from ..._redact import redact
from .transport import (
    AnswerLostError,
    ConnectError,
    HttpRequest,
    HttpResponse,
    RequestError,
    TransportClosedError,
    TransportError,
    TransportTimeout,
    fill,
)

__all__ = ["RESEND_SWITCH", "AiohttpTransport"]

# aiohttp (since PR #9396, late 2024) silently resends an idempotent request (GET, HEAD,
# PUT, DELETE) once when a kept-alive connection drops. A PUT that had landed would then come
# back as a false 412 conflict, and the client could not settle it. This private attribute
# turns that off; if aiohttp renames or drops it, AiohttpTransport refuses to start rather
# than silently resend.
RESEND_SWITCH = "_retry_connection"


def _check_resend_switch() -> None:
    if RESEND_SWITCH not in getattr(aiohttp.ClientSession, "ATTRS", ()):
        raise RuntimeError(
            f"aiohttp {aiohttp.__version__} has no ClientSession.{RESEND_SWITCH}, which "
            "asyncblobdict needs to stop aiohttp from resending a write on its own; "
            "use an aiohttp version that has it"
        )


async def _close_at_loop_end(session: aiohttp.ClientSession) -> AsyncGenerator[None, None]:
    """Keeps ``session`` company until its event loop shuts down, then closes it there.

    Iterated once inside the loop that made the session, this generator is registered by
    the loop's async-generator hooks; ``asyncio.run`` (and any loop that runs
    ``shutdown_asyncgens``) closes it before the loop closes, so the session's connections
    are closed by the loop that owns them. The transport closes it itself sooner on
    ``close()`` or when it moves to another loop.
    """
    try:
        yield
    finally:
        if not session.closed:
            await session.close()


# A body larger than this goes out in slices of this size (see _SlicedBody).
BODY_SLICE = 256 * 1024


class _SlicedBody(aiohttp.BytesPayload):
    """A bytes-like request body written in slices, each awaited until the socket takes it.

    Handed a whole body, aiohttp (on Python before 3.12.9) joins headers and body into one
    new bytes, and asyncio's transport copies whatever the socket did not take at once: an
    8 MiB block briefly cost three times its size. Slices keep what is in flight per
    connection to about one slice plus the transport's 64 KiB high-water mark.
    """

    async def write(self, writer: Any) -> None:
        await self.write_with_length(writer, None)

    async def write_with_length(self, writer: Any, content_length: int | None) -> None:
        with memoryview(self._value) as whole, whole.cast("B") as view:
            end = len(view) if content_length is None else min(len(view), content_length)
            for start in range(0, end, BODY_SLICE):
                await writer.write(view[start : min(start + BODY_SLICE, end)])


def _payload(body: bytes | memoryview | None) -> bytes | memoryview | aiohttp.BytesPayload | None:
    if body is None or len(memoryview(body).cast("B")) <= BODY_SLICE:
        return body
    return _SlicedBody(body)


# Failures once the request may have gone out: the connection broke, the answer was cut
# short or could not be parsed.
_AFTER_SENDING = (
    aiohttp.ClientConnectionError,
    aiohttp.ClientPayloadError,
    aiohttp.ClientResponseError,
)


def _map_error(exc: BaseException) -> TransportError:
    """The transport error for an aiohttp (or timeout) exception, its message redacted."""
    text = f"{type(exc).__name__}: {redact(str(exc))}"
    if isinstance(exc, asyncio.TimeoutError):  # aiohttp's own timeouts included
        return TransportTimeout(text)
    if isinstance(exc, aiohttp.ClientConnectorError):
        return ConnectError(text)
    if isinstance(
        exc,
        (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, aiohttp.ClientResponseError),
    ):
        return AnswerLostError(text)
    return RequestError(text)


class AiohttpTransport:
    """Sends requests through one ``aiohttp.ClientSession`` (a connection pool) per event
    loop, made lazily inside the running loop.

    A session belongs to the loop that made it. It is closed when that loop shuts down
    (``asyncio.run`` does this), and when the transport is next used from another loop: on
    the old loop if that is still running in another thread, else from the new loop, which
    marks it closed but cannot close its sockets (they belong to a loop that will not run
    again; they are released when garbage collected). :meth:`close` is final.

    ``request_timeout`` bounds one attempt (connect, send, whole answer);
    ``connect_timeout`` the connection alone; ``max_connections`` the pool.
    """

    def __init__(
        self,
        *,
        request_timeout: float | None = 120.0,
        connect_timeout: float | None = 10.0,
        max_connections: int = 64,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        _check_resend_switch()
        self._timeout = aiohttp.ClientTimeout(total=request_timeout, sock_connect=connect_timeout)
        self._max_connections = max_connections
        # True: verify against the system's CAs; a context: e.g. a private CA's.
        self._ssl: ssl.SSLContext | bool = ssl_context if ssl_context is not None else True
        self._session: aiohttp.ClientSession | None = None
        self._session_loop: asyncio.AbstractEventLoop | None = None
        self._keeper: AsyncGenerator[None, None] | None = None
        self._closed = False

    def __repr__(self) -> str:
        return f"AiohttpTransport(max_connections={self._max_connections})"

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called."""
        return self._closed

    async def send(self, request: HttpRequest) -> HttpResponse:
        return await self._exchange(request, None)

    async def send_into(self, request: HttpRequest, into: memoryview) -> HttpResponse:
        """Like :meth:`send`, but a 2xx body goes into ``into`` chunk by chunk as it arrives
        (no assembly of the whole body); see :class:`~.transport.ReadsInto`."""
        return await self._exchange(request, into)

    async def _exchange(self, request: HttpRequest, into: memoryview | None) -> HttpResponse:
        session = await self._get_session()
        error: TransportError
        try:
            async with session.request(
                request.method,
                URL(request.url, encoded=True),
                headers=request.headers,
                data=_payload(request.body),
                timeout=self._timeout,
                allow_redirects=False,
            ) as resp:
                parts: list[bytes] = []
                written = 0
                target = into if into is not None and 200 <= resp.status < 300 else None
                try:
                    if target is None:
                        async for data in resp.content.iter_any():
                            parts.append(data)
                    else:
                        # One network chunk at a time (iter_any would join what is
                        # buffered), copied straight to its place.
                        async for data, _ in resp.content.iter_chunks():
                            if data:
                                written, rest = fill(target, written, data)
                                if rest:
                                    parts.append(rest)
                except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                    error = _map_error(exc)
                    # What arrived is kept: a ranged read resumes after it.
                    error.partial = HttpResponse(
                        resp.status, resp.headers, b"".join(parts), written
                    )
                    parts.clear()
                else:
                    return HttpResponse(resp.status, resp.headers, b"".join(parts), written)
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            error = _map_error(exc)
        if self._closed:
            error = TransportClosedError("the transport was closed during the request")
        # Raised outside the handler, so no __context__ keeps aiohttp's exception (and its
        # URL, which may carry a SAS signature) alive on ours.
        raise error

    async def _get_session(self) -> aiohttp.ClientSession:
        """The session of the running loop, made on first use."""
        loop = asyncio.get_running_loop()
        while True:
            if self._closed:
                raise TransportClosedError("the transport is closed")
            session = self._session
            if session is not None and self._session_loop is loop and not session.closed:
                return session
            if session is None:
                break
            # Made on another loop (or closed at its loop's end): close it before replacing
            # it. Closing may wait, so look again afterwards.
            await self._close_session()
        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self._max_connections, ssl=self._ssl),
            # Stored bytes must come back as stored, and an unsigned Content-Type would
            # break the SharedKey signature of body-less PUTs.
            auto_decompress=False,
            skip_auto_headers=("Content-Type", "Accept-Encoding"),
        )
        setattr(session, RESEND_SWITCH, False)  # checked to exist in __init__
        keeper = _close_at_loop_end(session)
        self._session, self._session_loop, self._keeper = session, loop, keeper
        # Runs to the generator's yield without suspending: nothing can interleave here.
        await keeper.__anext__()
        return session

    async def _close_session(self) -> None:
        session, loop, keeper = self._session, self._session_loop, self._keeper
        self._session = self._session_loop = self._keeper = None
        if session is None or keeper is None:
            return
        current = asyncio.get_running_loop()
        if loop is not None and loop is not current and loop.is_running():
            # The session's loop runs in another thread: its connections must be closed
            # there. Bounded, in case that loop is blocked.
            future = asyncio.run_coroutine_threadsafe(keeper.aclose(), loop)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.wrap_future(future), 10.0)
            return
        # RuntimeError: the session's loop is gone (closed without shutdown_asyncgens);
        # aiohttp still marks the session closed.
        with contextlib.suppress(RuntimeError):
            await keeper.aclose()

    async def close(self) -> None:
        """Close the session for good; safe to call twice."""
        self._closed = True
        await self._close_session()
