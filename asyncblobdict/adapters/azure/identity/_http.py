"""HTTP for token requests: one short-lived aiohttp session per request, and answer parsing.

A credential holds no connection between token requests (one an hour, typically), so it
has nothing to leak if never closed and works from any event loop.
"""

from __future__ import annotations

import asyncio
import json
import re
import ssl
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from ...._redact import redact
from ....errors import AuthenticationError
from ._token import AccessToken, Fetched

__all__ = [
    "Answer",
    "NetworkError",
    "aadsts_code",
    "error_code_and_text",
    "parse_token_answer",
    "send",
    "token_error",
]


class NetworkError(Exception):
    """No answer: the connection failed or timed out. The text names the host only."""

    def __init__(self, message: str, *, connected: bool) -> None:
        super().__init__(message)
        self.connected = connected  # False: the connection itself could not be made


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    headers: Mapping[str, str]  # case-insensitive (aiohttp's CIMultiDictProxy)
    body: bytes

    def json(self) -> dict[str, Any] | None:
        """The body as a JSON object, or None."""
        try:
            value = json.loads(self.body)
        except ValueError:
            return None
        return value if isinstance(value, dict) else None


async def send(
    method: str,
    url: str,
    *,
    headers: Mapping[str, str] | None = None,
    form: Mapping[str, str] | None = None,
    connect_timeout: float = 10.0,
    total_timeout: float = 30.0,
    ssl_context: ssl.SSLContext | None = None,
) -> Answer:
    """One request in a session of its own, closed before returning.

    Proxies from the environment are not used (IMDS must never go through one).
    """
    timeout = aiohttp.ClientTimeout(total=total_timeout, sock_connect=connect_timeout)
    host = urlsplit(url).hostname
    try:
        async with (
            aiohttp.ClientSession(
                timeout=timeout,
                connector=aiohttp.TCPConnector(
                    ssl=ssl_context if ssl_context is not None else True
                ),
            ) as session,
            session.request(
                method,
                url,
                headers=dict(headers or {}),
                data=dict(form) if form is not None else None,
                allow_redirects=False,
            ) as resp,
        ):
            return Answer(resp.status, resp.headers, await resp.read())
    except aiohttp.ClientConnectorError as exc:
        error = NetworkError(f"cannot connect to {host} ({type(exc).__name__})", connected=False)
    except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
        connected = not _is_connect_timeout(exc)
        error = NetworkError(f"no answer from {host} ({type(exc).__name__})", connected=connected)
    # Raised outside the handler: aiohttp's exception (and the request it holds) is not
    # kept as this one's context.
    raise error


def _is_connect_timeout(exc: BaseException) -> bool:
    # aiohttp >= 3.10 raises ConnectionTimeoutError when the connection itself timed out;
    # older releases a ServerTimeoutError that says so.
    kind = getattr(aiohttp, "ConnectionTimeoutError", None)
    if kind is not None and isinstance(exc, kind):
        return True
    return isinstance(exc, aiohttp.ServerTimeoutError) and str(exc).startswith("Connection timeout")


_AADSTS = re.compile(r"AADSTS\d+")


def error_code_and_text(answer: Answer) -> tuple[str | None, str]:
    """(error code, first line of the description) of a failed token answer.

    Understands Entra ID's ``{"error": ..., "error_description": ...}``, App Service's
    ``{"error": {"code": ..., "message": ...}}`` and ``{"statusCode": ..., "message": ...}``.
    """
    body = answer.json() or {}
    code: Any = body.get("error") or body.get("code")
    text: Any = body.get("error_description") or body.get("message") or ""
    if isinstance(code, dict):
        text = code.get("message") or text
        code = code.get("code")
    if not text and not body:
        text = answer.body[:200].decode("utf-8", "replace")
    lines = str(text).strip().splitlines()
    return (str(code) if code else None), (lines[0][:300] if lines else "")


def token_error(
    who: str,
    answer: Answer,
    secrets: Iterable[str] = (),
    *,
    unavailable: bool = False,
) -> AuthenticationError:
    """The exception for a token request the service refused, without any secret."""
    from ._token import CredentialUnavailableError

    code, text = error_code_and_text(answer)
    message = f"{who}: the token service refused the request"
    if text:
        message += f": {redact(text, secrets)}"
    cls = CredentialUnavailableError if unavailable else AuthenticationError
    return cls(message, status=answer.status, error_code=code)


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str) and value.strip().replace(".", "", 1).isdigit():
        return float(value)
    return None


def parse_token_answer(who: str, answer: Answer, now: float) -> Fetched:
    """The token of a successful answer (Entra ID, IMDS, App Service, Arc, Azure CLI).

    ``expires_in`` (relative, immune to clock skew) is preferred to ``expires_on``;
    ``refresh_in`` sets when to refresh.
    """
    body = answer.json()
    token = body.get("access_token") if body else None
    if not body or not isinstance(token, str) or not token:
        raise AuthenticationError(
            f"{who}: the token service's answer has no access token", status=answer.status
        )
    expires_in = _number(body.get("expires_in"))
    expires_on = _number(body.get("expires_on"))
    if expires_in is not None:
        expires_at = now + expires_in
    elif expires_on is not None:
        expires_at = expires_on
    else:
        raise AuthenticationError(
            f"{who}: the token service's answer does not say when the token expires",
            status=answer.status,
        )
    refresh_in = _number(body.get("refresh_in"))
    refresh_on = now + refresh_in if refresh_in is not None else None
    return Fetched(AccessToken(token, int(expires_at)), refresh_on)


def aadsts_code(text: str) -> str | None:
    """The first AADSTS error code in ``text`` (Azure CLI messages carry one)."""
    match = _AADSTS.search(text)
    return match.group(0) if match else None
