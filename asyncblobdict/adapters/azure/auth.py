"""Request authorisation: SharedKey signing, SAS tokens and bearer tokens.

Every authoriser gets the request as it will be sent (encoded path, decoded query pairs,
headers) and adds what it needs. None of them shows its secret in a repr.
"""

from __future__ import annotations

import base64
import hmac
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol
from urllib.parse import parse_qsl

from ..._redact import redact
from ...errors import AuthenticationError
from .identity._token import STORAGE_SCOPE, AccessToken, Fetched, TokenCache, caches_tokens

__all__ = [
    "STORAGE_SCOPE",
    "AccessTokenLike",
    "AsyncTokenCredential",
    "Authorizer",
    "BearerTokenAuth",
    "PreparedRequest",
    "SasAuth",
    "SharedKeyAuth",
    "canonicalized_headers",
    "canonicalized_resource",
    "string_to_sign",
]


@dataclass(slots=True)
class PreparedRequest:
    """One HTTP request about to be sent.

    ``path`` is percent-encoded exactly as it goes on the wire; ``query`` holds decoded
    (name, value) pairs; ``raw_query`` is extra already-encoded query text (a SAS token).
    """

    method: str
    path: str
    query: list[tuple[str, str]] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)
    content_length: int = 0
    raw_query: str = ""


class Authorizer(Protocol):
    """Adds authorisation to a request (headers or query) just before each attempt."""

    async def authorize(self, request: PreparedRequest) -> None: ...


# --- SharedKey --------------------------------------------------------------------------


def _header_sort_key(name: str) -> str:
    # The service orders '_' before digits (unlike plain ASCII order); mapping it to '/',
    # which cannot occur in a header name, gives that order for metadata like k1 / k_1.
    return name.replace("_", "/")


def canonicalized_headers(headers: Mapping[str, str]) -> str:
    """The CanonicalizedHeaders part: every x-ms- header, lowercased, sorted, one per line."""
    items: dict[str, str] = {}
    for name, value in headers.items():
        lname = name.strip().lower()
        if lname.startswith("x-ms-"):
            # Unfold and trim as the service does before comparing.
            items[lname] = " ".join(value.replace("\r\n", " ").split())
    return "".join(f"{n}:{items[n]}\n" for n in sorted(items, key=_header_sort_key))


def canonicalized_resource(account: str, path: str, query: Sequence[tuple[str, str]]) -> str:
    """The CanonicalizedResource part: /account + encoded path, then sorted decoded query.

    Query names are lowercased and sorted; a name given more than once gets its values
    sorted and comma-joined.
    """
    out = f"/{account}{path or '/'}"
    grouped: dict[str, list[str]] = {}
    for name, value in query:
        grouped.setdefault(name.lower(), []).append(value)
    for name in sorted(grouped):
        out += f"\n{name}:{','.join(sorted(grouped[name]))}"
    return out


def string_to_sign(
    method: str,
    account: str,
    path: str,
    query: Sequence[tuple[str, str]],
    headers: Mapping[str, str],
    content_length: int,
) -> str:
    """Build the SharedKey string-to-sign (Blob service version 2015-02-21 and later).

    Content-Length is empty for a zero-length body, as the documentation requires. The
    same text as the standard headers, :func:`canonicalized_headers` and
    :func:`canonicalized_resource` joined, built in one pass (it runs for every request).
    """
    lower: dict[str, str] = {}
    ms: dict[str, str] = {}
    underscore = False
    for name, value in headers.items():
        lname = name.lower()
        lower[lname] = value
        mname = lname.strip()
        if mname.startswith("x-ms-"):
            # Unfolded and trimmed as the service does (split() also splits at CR and LF).
            ms[mname] = " ".join(value.split())
            underscore = underscore or "_" in mname
    get = lower.get
    names = sorted(ms, key=_header_sort_key) if underscore else sorted(ms)
    text = "\n".join(
        (  # the standard headers in the order the Blob service (2009-09-19+) lists them
            method.upper(),
            get("content-encoding", ""),
            get("content-language", ""),
            str(content_length) if content_length else "",
            get("content-md5", ""),
            get("content-type", ""),
            get("date", ""),
            get("if-modified-since", ""),
            get("if-match", ""),
            get("if-none-match", ""),
            get("if-unmodified-since", ""),
            get("range", ""),
            "".join([f"{n}:{ms[n]}\n" for n in names]),
        )
    )
    if query:
        return text + canonicalized_resource(account, path, query)
    return f"{text}/{account}{path or '/'}"


class SharedKeyAuth:
    """Signs requests with the account key (``Authorization: SharedKey account:signature``)."""

    __slots__ = ("_key", "account_name")

    def __init__(self, account_name: str, key: bytes) -> None:
        self.account_name = account_name
        self._key = key

    def __repr__(self) -> str:
        return f"SharedKeyAuth(account_name={self.account_name!r}, key=<hidden>)"

    def sign(self, text: str) -> str:
        """Base64 HMAC-SHA256 of ``text`` with the account key."""
        digest = hmac.digest(self._key, text.encode("utf-8"), "sha256")
        return base64.b64encode(digest).decode("ascii")

    async def authorize(self, request: PreparedRequest) -> None:
        text = string_to_sign(
            request.method,
            self.account_name,
            request.path,
            request.query,
            request.headers,
            request.content_length,
        )
        request.headers["Authorization"] = f"SharedKey {self.account_name}:{self.sign(text)}"


# --- SAS --------------------------------------------------------------------------------


class SasAuth:
    """Appends a shared access signature to every request's query."""

    __slots__ = ("_token",)

    def __init__(self, token: str) -> None:
        token = token.strip().lstrip("?")
        names = {name.lower() for name, _ in parse_qsl(token, keep_blank_values=True)}
        if "sig" not in names:
            from .connection import ConnectionStringError

            raise ConnectionStringError("the SAS token has no sig= parameter")
        self._token = token

    def __repr__(self) -> str:
        return "SasAuth(token=<hidden>)"

    async def authorize(self, request: PreparedRequest) -> None:
        # The token is already percent-encoded: append it as sent by its issuer.
        request.raw_query = self._token


# --- Bearer tokens ----------------------------------------------------------------------


class AccessTokenLike(Protocol):
    """What ``get_token`` returns (azure.core.credentials.AccessToken fits)."""

    @property
    def token(self) -> str: ...

    @property
    def expires_on(self) -> int: ...


class AsyncTokenCredential(Protocol):
    """Any object with an async ``get_token(*scopes)``, e.g. azure-identity credentials."""

    def get_token(self, *scopes: str) -> Awaitable[AccessTokenLike]: ...


class BearerTokenAuth:
    """Sends ``Authorization: Bearer`` with a token from ``credential``.

    This package's credentials cache their tokens themselves and are asked on every
    request; any other (azure-identity's) goes through a :class:`TokenCache` here: one token
    request at a time, refreshed ahead of expiry (at ``refresh_on`` when the token has one,
    else 5 minutes before), an expired token never sent, and a failed early refresh keeping
    the still-valid token.
    """

    __slots__ = ("_cache", "_credential")

    def __init__(self, credential: AsyncTokenCredential) -> None:
        self._credential = credential
        self._cache = None if caches_tokens(credential) else TokenCache()

    def __repr__(self) -> str:
        return f"BearerTokenAuth(credential={type(self._credential).__name__})"

    def _failure(self, exc: Exception) -> AuthenticationError:
        return AuthenticationError(
            f"could not get an access token from {type(self._credential).__name__}: "
            f"{type(exc).__name__}: {redact(str(exc))}"
        )

    async def _fetch(self) -> Fetched:
        try:
            access = await self._credential.get_token(STORAGE_SCOPE)
        except AuthenticationError:
            raise
        except Exception as exc:
            raise self._failure(exc) from None
        refresh_on = getattr(access, "refresh_on", None)  # azure-core's AccessTokenInfo
        return Fetched(
            AccessToken(access.token, int(access.expires_on)),
            float(refresh_on) if isinstance(refresh_on, (int, float)) else None,
        )

    async def token(self) -> str:
        """A valid token, fetched once for all concurrent callers."""
        if self._cache is not None:
            return (await self._cache.get(self._fetch)).token
        try:
            access = await self._credential.get_token(STORAGE_SCOPE)
        except AuthenticationError:
            raise
        except Exception as exc:
            raise self._failure(exc) from None
        return access.token

    async def authorize(self, request: PreparedRequest) -> None:
        request.headers["Authorization"] = f"Bearer {await self.token()}"
