"""Low-level Blob REST requests over one pooled aiohttp session, with retries.

The client knows URLs, headers, authorisation, retries and logging; it returns every final
answer (any status) to the adapter, which decides what it means.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import uuid
from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass, replace
from email.utils import formatdate
from urllib.parse import quote, urlsplit

import aiohttp
from yarl import URL

from ..._redact import redact
from ...errors import StorageError
from .auth import Authorizer, PreparedRequest
from .retry import RETRYABLE_STATUSES, RetryPolicy

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


def _closed_error(action: str, container: str | None, key: str | None) -> StorageError:
    return StorageError(f"{action} failed: the adapter is closed", container=container, key=key)


async def _close_at_loop_end(session: aiohttp.ClientSession) -> AsyncGenerator[None, None]:
    """Keeps ``session`` company until its event loop shuts down, then closes it there.

    Iterated once inside the loop that made the session, this generator is registered by
    the loop's async-generator hooks; ``asyncio.run`` (and any loop that runs
    ``shutdown_asyncgens``) closes it before the loop closes, so the session's connections
    are closed by the loop that owns them. The client closes it itself sooner on ``close()``
    or when it moves to another loop.
    """
    try:
        yield
    finally:
        if not session.closed:
            await session.close()


class BlobClient:
    """Sends signed requests to one storage account endpoint.

    One ``aiohttp.ClientSession`` (a connection pool) is created lazily inside the running
    event loop and reused. :meth:`close` is final: it closes the session, requests still
    running fail, and every later request raises StorageError ("the adapter is closed").

    A session belongs to the loop that made it. It is closed when that loop shuts down
    (``asyncio.run`` does this), and when the client is next used from another loop:
    on the old loop if that is still running in another thread, else from the new loop,
    which marks it closed but cannot close its sockets (they belong to a loop that will
    not run again; they are released when garbage collected).
    """

    def __init__(
        self,
        endpoint: str,
        auth: Authorizer | None,
        *,
        api_version: str = DEFAULT_API_VERSION,
        retry: RetryPolicy | None = None,
        request_timeout: float | None = 120.0,
        connect_timeout: float | None = 10.0,
        max_connections: int = 64,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        parts = urlsplit(endpoint)
        self.endpoint = endpoint
        self._origin = f"{parts.scheme}://{parts.netloc}"
        self._base_path = parts.path.rstrip("/")
        self._auth = auth
        self.api_version = api_version
        self.retry = retry if retry is not None else RetryPolicy()
        self._timeout = aiohttp.ClientTimeout(total=request_timeout, sock_connect=connect_timeout)
        self._max_connections = max_connections
        self._ssl: ssl.SSLContext | bool = ssl_context if ssl_context is not None else True
        self._session: aiohttp.ClientSession | None = None
        self._session_loop: asyncio.AbstractEventLoop | None = None
        self._keeper: AsyncGenerator[None, None] | None = None
        self._closed = False

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called."""
        return self._closed

    async def _get_session(self) -> aiohttp.ClientSession:
        """The session of the running loop, made on first use; StorageError once closed."""
        loop = asyncio.get_running_loop()
        while True:
            if self._closed:
                raise _closed_error("request", None, None)
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
        # aiohttp (>= 3.10) silently resends an idempotent request once when a kept-alive
        # connection drops; a PUT that had already landed would then come back as a false
        # 412 conflict. Our retry loop must see the drop to run its conditional-write check.
        if hasattr(session, "_retry_connection"):
            session._retry_connection = False
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

    def _url(self, request: PreparedRequest) -> str:
        query = "&".join(
            f"{quote(name, safe='')}={quote(value, safe='')}" for name, value in request.query
        )
        if request.raw_query:
            query = f"{query}&{request.raw_query}" if query else request.raw_query
        return self._origin + request.path + (f"?{query}" if query else "")

    async def request(
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
    ) -> Response:
        """Send one logical request, retrying transient failures; return the final answer.

        ``path`` is the encoded path below the endpoint (``/container/blob``). Network
        failures that outlast the retry budget raise StorageError.
        """
        outcome = await self.send(
            method,
            path,
            query=query,
            headers=headers,
            body=body,
            action=action,
            container=container,
            key=key,
        )
        if isinstance(outcome, Failure):
            raise outcome.error from None
        return outcome

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
    ) -> Response | Failure:
        """Like :meth:`request`, but a request that got no final answer comes back as a
        :class:`Failure` that says whether an attempt may have been applied."""
        policy = self.retry
        loop = asyncio.get_running_loop()
        deadline = loop.time() + policy.total_timeout
        ambiguous = False
        attempt = 0
        request_id = str(uuid.uuid4())
        while True:
            if self._closed:
                return Failure(_closed_error(action, container, key), ambiguous)
            attempt += 1
            started = loop.time()
            prepared = PreparedRequest(
                method=method,
                path=self._base_path + path,
                query=list(query or ()),
                headers={
                    **(headers or {}),
                    "x-ms-date": formatdate(usegmt=True),
                    "x-ms-version": self.api_version,
                    "x-ms-client-request-id": request_id,
                },
                content_length=len(body) if body else 0,
            )
            if self._auth is not None:
                try:
                    await self._auth.authorize(prepared)
                except StorageError as exc:
                    return Failure(exc, ambiguous)  # e.g. a token that cannot be renewed
            url = self._url(prepared)
            failure: BaseException | None = None
            fatal: StorageError | None = None
            response: Response | None = None
            try:
                session = await self._get_session()
                async with session.request(
                    method,
                    URL(url, encoded=True),
                    headers=prepared.headers,
                    data=body if body is not None else None,
                    timeout=self._timeout,
                    allow_redirects=False,
                ) as resp:
                    data = await resp.read()
                    response = Response(resp.status, resp.headers, data, ambiguous)
            except (
                aiohttp.ClientConnectionError,
                aiohttp.ClientPayloadError,
                asyncio.TimeoutError,
            ) as exc:
                failure = exc
                # A refused connection never carried the request; anything later might have.
                if not isinstance(exc, aiohttp.ClientConnectorError):
                    ambiguous = True
            except aiohttp.ClientError as exc:
                fatal = StorageError(
                    f"{action} failed: {type(exc).__name__}: {redact(str(exc))}",
                    container=container,
                    key=key,
                )
            if fatal is not None:
                # Returned outside the handler so no __context__ keeps aiohttp's error (and
                # its URL, which may carry a SAS signature) alive on our exception.
                return Failure(fatal, ambiguous)
            if response is None and self._closed:
                # close() cut this request off: say so rather than retry or blame the network.
                return Failure(_closed_error(action, container, key), ambiguous)
            elapsed_ms = (loop.time() - started) * 1000
            if logger.isEnabledFor(logging.DEBUG):
                outcome = str(response.status) if response is not None else type(failure).__name__
                logger.debug(
                    "%s %s attempt %d -> %s in %.1f ms (client request id %s)",
                    method,
                    redact(url),
                    attempt,
                    outcome,
                    elapsed_ms,
                    request_id,
                )
            if response is not None and response.status not in RETRYABLE_STATUSES:
                return response
            if response is not None and response.status != 429:
                # 429 means throttled, not run; a 5xx or 408 may have been applied.
                ambiguous = True
            retry_after = response.header("Retry-After") if response is not None else None
            delay = policy.delay(attempt, retry_after)
            out_of_time = loop.time() + delay > deadline
            if attempt >= policy.max_attempts or out_of_time:
                if response is not None:
                    return replace(response, ambiguous=ambiguous)
                reason = (
                    "timed out" if isinstance(failure, asyncio.TimeoutError) else "network error"
                )
                return Failure(
                    StorageError(
                        f"{action} failed after {attempt} attempt(s): {reason} "
                        f"({type(failure).__name__}: {redact(str(failure))})",
                        container=container,
                        key=key,
                    ),
                    ambiguous,
                )
            logger.debug(
                "%s %s: retrying in %.3f s (attempt %d of %d)",
                method,
                action,
                delay,
                attempt + 1,
                policy.max_attempts,
            )
            await asyncio.sleep(delay)
