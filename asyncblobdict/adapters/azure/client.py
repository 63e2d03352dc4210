"""Low-level Blob REST requests over one pooled aiohttp session, with retries.

The client knows URLs, headers, authorisation, retries and logging; it returns every final
answer (any status) to the adapter, which decides what it means.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import formatdate
from urllib.parse import quote, urlsplit

import aiohttp
from yarl import URL

from ..._redact import redact
from ...errors import StorageError
from .auth import Authorizer, PreparedRequest
from .retry import RETRYABLE_STATUSES, RetryPolicy

__all__ = ["DEFAULT_API_VERSION", "BlobClient", "Response", "redact"]

DEFAULT_API_VERSION = "2025-11-05"

logger = logging.getLogger("asyncblobdict.azure")


@dataclass(frozen=True, slots=True)
class Response:
    """A final answer: status, headers (case-insensitive), the whole body.

    ``ambiguous`` is True when an earlier attempt failed in a way that may have left it
    applied on the server (a timeout, a dropped connection, a 5xx), so a conflict now may be
    our own earlier write.
    """

    status: int
    headers: Mapping[str, str]
    body: bytes
    ambiguous: bool = False

    def header(self, name: str) -> str | None:
        """A response header by case-insensitive name."""
        return self.headers.get(name)


class BlobClient:
    """Sends signed requests to one storage account endpoint.

    One ``aiohttp.ClientSession`` (a connection pool) is created lazily inside the running
    event loop and reused; :meth:`close` releases it, and the next request makes a new one.
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
        self._session: aiohttp.ClientSession | None = None
        self._session_loop: asyncio.AbstractEventLoop | None = None

    def _get_session(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        if self._session is None or self._session.closed or self._session_loop is not loop:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._max_connections),
                # Stored bytes must come back as stored, and an unsigned Content-Type would
                # break the SharedKey signature of body-less PUTs.
                auto_decompress=False,
                skip_auto_headers=("Content-Type", "Accept-Encoding"),
            )
            # aiohttp (>= 3.10) silently resends an idempotent request once when a kept-alive
            # connection drops; a PUT that had already landed would then come back as a false
            # 412 conflict. Our retry loop must see the drop to run its conditional-write check.
            if hasattr(self._session, "_retry_connection"):
                self._session._retry_connection = False
            self._session_loop = loop
        return self._session

    async def close(self) -> None:
        """Close the session; safe to call twice."""
        session, self._session, self._session_loop = self._session, None, None
        if session is not None and not session.closed:
            # RuntimeError: its event loop is gone (the adapter moved to another loop).
            with contextlib.suppress(RuntimeError):
                await session.close()

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
        policy = self.retry
        loop = asyncio.get_running_loop()
        deadline = loop.time() + policy.total_timeout
        ambiguous = False
        attempt = 0
        request_id = str(uuid.uuid4())
        while True:
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
                await self._auth.authorize(prepared)
            url = self._url(prepared)
            failure: BaseException | None = None
            fatal: StorageError | None = None
            response: Response | None = None
            try:
                session = self._get_session()
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
                # Raised outside the handler so no __context__ keeps aiohttp's error (and its
                # URL, which may carry a SAS signature) alive on our exception.
                raise fatal
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
            retry_after = response.header("Retry-After") if response is not None else None
            delay = policy.delay(attempt, retry_after)
            out_of_time = loop.time() + delay > deadline
            if attempt >= policy.max_attempts or out_of_time:
                if response is not None:
                    return response
                reason = (
                    "timed out" if isinstance(failure, asyncio.TimeoutError) else "network error"
                )
                raise StorageError(
                    f"{action} failed after {attempt} attempt(s): {reason} "
                    f"({type(failure).__name__}: {redact(str(failure))})",
                    container=container,
                    key=key,
                ) from None
            if response is not None and response.status != 429:
                # 429 means throttled, not run; a 5xx or 408 may have been applied.
                ambiguous = True
            logger.debug(
                "%s %s: retrying in %.3f s (attempt %d of %d)",
                method,
                action,
                delay,
                attempt + 1,
                policy.max_attempts,
            )
            await asyncio.sleep(delay)
