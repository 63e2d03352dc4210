"""Access tokens, their cache, and the base class of our credentials (standard library only).

The cache is shared by every credential here and by the adapter's ``BearerTokenAuth`` for
foreign credentials (azure-identity): one token request in flight at a time, refreshed
ahead of expiry, and a failed early refresh keeps the still-valid token in use.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple

from ....errors import AuthenticationError

__all__ = [
    "EXPIRY_MARGIN",
    "REFRESH_MARGIN",
    "REFRESH_RETRY_DELAY",
    "STORAGE_RESOURCE",
    "STORAGE_SCOPE",
    "AccessToken",
    "CachingCredential",
    "CredentialUnavailableError",
    "Fetched",
    "TokenCache",
    "caches_tokens",
    "scope_to_resource",
]

logger = logging.getLogger("asyncblobdict.azure.identity")

STORAGE_SCOPE = "https://storage.azure.com/.default"
STORAGE_RESOURCE = "https://storage.azure.com"
# Without a refresh_in from the token service, refresh when less than this remains.
REFRESH_MARGIN = 300.0
# A token is never sent when less than this remains by our clock: it could expire on the
# way, or on a server whose clock runs a little ahead.
EXPIRY_MARGIN = 30.0
# After a failed early refresh, the current token is used this long before trying again
# (azure-identity waits 30 s too), so a failing token service is not asked on every request.
REFRESH_RETRY_DELAY = 30.0


class AccessToken(NamedTuple):
    """A bearer token and when it expires (seconds since the epoch), as azure-core's.

    The repr hides the token.
    """

    token: str
    expires_on: int

    def __repr__(self) -> str:
        return f"AccessToken(token=<hidden>, expires_on={self.expires_on})"


class Fetched(NamedTuple):
    """What a token request returns to the cache: the token and when to refresh it."""

    access: AccessToken
    refresh_on: float | None = None  # seconds since the epoch; None: REFRESH_MARGIN rule


class CredentialUnavailableError(AuthenticationError):
    """This credential cannot work here (its environment variables, endpoint or tool are
    missing); :class:`DefaultAzureCredential` moves on to the next one."""


def scope_to_resource(scopes: tuple[str, ...], who: str) -> str:
    """The v1 resource of a single ``.../.default`` scope (managed identity, Azure CLI)."""
    if len(scopes) != 1:
        raise ValueError(f"{who} takes exactly one scope, got {len(scopes)}")
    scope = scopes[0]
    return scope[: -len("/.default")] if scope.endswith("/.default") else scope


class TokenCache:
    """One cached token, fetched by one request at a time.

    ``get(fetch)`` returns the cached token while it is fresh. Once it is due for refresh
    (``refresh_on``, else ``REFRESH_MARGIN`` before expiry) the next caller fetches a new
    one, and callers arriving meanwhile keep using the current token if it is still valid
    (``EXPIRY_MARGIN`` before expiry) or wait for the same request if not. A failed
    refresh while the token is valid is logged, and the token stays in use; the refresh is
    tried again after ``REFRESH_RETRY_DELAY``. An expired token is never returned.
    """

    __slots__ = ("_clock", "_failed_at", "_fetching", "_refresh_on", "_token")

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._token: AccessToken | None = None
        self._refresh_on = 0.0
        self._failed_at: float | None = None
        self._fetching: asyncio.Task[AccessToken] | None = None

    def __repr__(self) -> str:
        state = "empty" if self._token is None else f"expires_on={self._token.expires_on}"
        return f"TokenCache({state})"

    def _usable(self, token: AccessToken | None, now: float) -> bool:
        return token is not None and now < token.expires_on - EXPIRY_MARGIN

    async def get(self, fetch: Callable[[], Awaitable[Fetched]]) -> AccessToken:
        """A token that is valid now; ``fetch`` is called when a new one is needed."""
        now = self._clock()
        token = self._token
        if token is not None and now < self._refresh_on and self._usable(token, now):
            return token
        if not self._usable(token, now):
            return await self._fetch(fetch)
        assert token is not None
        # Due for refresh but still valid: one caller refreshes, the others go on.
        in_flight = self._in_flight()
        recently_failed = self._failed_at is not None and (
            now - self._failed_at < REFRESH_RETRY_DELAY
        )
        if in_flight is not None or recently_failed:
            return token
        try:
            return await self._fetch(fetch)
        except AuthenticationError as exc:
            now = self._clock()
            if not self._usable(token, now):
                raise
            logger.warning(
                "early token refresh failed, the current token stays in use (%d s left): %s",
                int(token.expires_on - now),
                exc,
            )
            return token

    def _in_flight(self) -> asyncio.Task[AccessToken] | None:
        task = self._fetching
        # A task of another event loop (the adapter may be reused from a new loop) is
        # of no use here.
        if task is None or task.done() or task.get_loop() is not asyncio.get_running_loop():
            return None
        return task

    async def _fetch(self, fetch: Callable[[], Awaitable[Fetched]]) -> AccessToken:
        task = self._in_flight()
        if task is None:
            task = asyncio.ensure_future(self._run(fetch))
            # Its outcome is read by the callers; this keeps asyncio quiet when all of them
            # were cancelled before it ended.
            task.add_done_callback(_consume)
            self._fetching = task
        # Shielded: a caller that is cancelled does not cancel the request others wait for.
        return await asyncio.shield(task)

    async def _run(self, fetch: Callable[[], Awaitable[Fetched]]) -> AccessToken:
        try:
            fetched = await fetch()
        except AuthenticationError:
            self._failed_at = self._clock()
            raise
        access, refresh_on = fetched
        now = self._clock()
        if access.expires_on <= now:
            self._failed_at = now
            raise AuthenticationError("the token service returned a token that has expired")
        self._token = access
        self._failed_at = None
        self._refresh_on = (
            refresh_on if refresh_on is not None else (access.expires_on - REFRESH_MARGIN)
        )
        logger.debug(
            "new access token, expires in %d s, refresh in %d s",
            int(access.expires_on - now),
            int(self._refresh_on - now),
        )
        return access


def _consume(task: asyncio.Task[Any]) -> None:
    if not task.cancelled():
        task.exception()


class CachingCredential:
    """Base of this package's credentials: ``get_token`` with one cache per scope set.

    Subclasses implement ``_request_token(scopes)``. The adapter uses such a credential
    as it is, without a cache of its own.
    """

    # Tests replace it to move time without waiting.
    _clock: Callable[[], float] = staticmethod(time.time)

    def __init__(self) -> None:
        self._caches: dict[tuple[str, ...], TokenCache] = {}

    async def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        """A token for ``scopes``, from the cache or a new request.

        Keyword arguments of azure-core's protocol (``claims``, ``tenant_id``,
        ``enable_cae``) are accepted and ignored. Raises AuthenticationError
        (CredentialUnavailableError when this credential cannot work here).
        """
        if not scopes:
            raise ValueError("get_token needs at least one scope")
        cache = self._caches.get(scopes)
        if cache is None:
            cache = self._caches[scopes] = TokenCache(lambda: self._clock())
        return await cache.get(lambda: self._request_token(scopes))

    async def _request_token(self, scopes: tuple[str, ...]) -> Fetched:
        raise NotImplementedError

    async def close(self) -> None:
        """Nothing to release: a credential opens a connection only for each token request."""

    async def __aenter__(self) -> CachingCredential:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


def caches_tokens(credential: object) -> bool:
    """True for credentials that cache their tokens the way TokenCache does."""
    return isinstance(credential, CachingCredential)
