"""The Azure CLI's signed-in account: ``az account get-access-token``."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import sys
from datetime import datetime
from typing import Any

from ...._redact import redact
from ....errors import AuthenticationError
from ._http import aadsts_code
from ._token import (
    AccessToken,
    CachingCredential,
    CredentialUnavailableError,
    Fetched,
    logger,
    scope_to_resource,
)

__all__ = ["AzureCliCredential"]

_TENANT = re.compile(r"[A-Za-z0-9.\-]+")
_NOT_LOGGED_IN = ("az login", "az account set")


class AzureCliCredential(CachingCredential):
    """The account signed in with ``az login`` (for development machines).

    Runs ``az account get-access-token --resource RESOURCE --output json`` (plus
    ``--tenant`` when ``tenant_id`` is given), found on ``PATH``, and gives up after
    ``process_timeout`` seconds.
    """

    def __init__(self, *, tenant_id: str | None = None, process_timeout: float = 10.0) -> None:
        super().__init__()
        if tenant_id is not None and not _TENANT.fullmatch(tenant_id):
            raise ValueError("tenant_id must be a tenant id or domain")
        self.tenant_id = tenant_id
        self.process_timeout = process_timeout

    def __repr__(self) -> str:
        tenant = f"tenant_id={self.tenant_id!r}" if self.tenant_id else ""
        return f"AzureCliCredential({tenant})"

    async def _request_token(self, scopes: tuple[str, ...]) -> Fetched:
        who = "AzureCliCredential"
        resource = scope_to_resource(scopes, who)
        az = shutil.which("az")
        if az is None:
            raise CredentialUnavailableError(f"{who}: the Azure CLI (az) is not on PATH")
        args = [az, "account", "get-access-token", "--output", "json", "--resource", resource]
        if self.tenant_id:
            args += ["--tenant", self.tenant_id]
        # No colour codes in messages; a fixed folder so no file of the current one is run.
        env = {**os.environ, "AZURE_CORE_NO_COLOR": "true"}
        cwd = os.path.dirname(sys.executable) if sys.platform == "win32" else "/"
        try:
            process = await asyncio.create_subprocess_exec(
                *args,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=env,
                cwd=cwd,
            )
        except OSError as exc:
            raise CredentialUnavailableError(
                f"{who}: cannot run the Azure CLI ({type(exc).__name__})"
            ) from None
        try:
            stdout, stderr = await asyncio.wait_for(process.communicate(), self.process_timeout)
        except asyncio.TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
            raise CredentialUnavailableError(
                f"{who}: the Azure CLI did not answer within {self.process_timeout:g} s"
            ) from None
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            raise
        if process.returncode != 0:
            text = redact(stderr.decode("utf-8", "replace")).strip()
            first = next((line for line in text.splitlines() if line.strip()), "")[:300]
            if any(hint in text for hint in _NOT_LOGGED_IN):
                raise CredentialUnavailableError(f"{who}: not signed in; run 'az login' ({first})")
            raise AuthenticationError(
                f"{who}: az exited with {process.returncode}: {first}",
                error_code=aadsts_code(text),
            )
        logger.debug("%s: token from az", who)
        return Fetched(_parse(stdout))


def _parse(stdout: bytes) -> AccessToken:
    who = "AzureCliCredential"
    try:
        data: Any = json.loads(stdout)
    except ValueError:
        data = None
    token = data.get("accessToken") if isinstance(data, dict) else None
    if not isinstance(token, str) or not token:
        raise AuthenticationError(f"{who}: az printed no access token")
    expires_on = data.get("expires_on")
    if isinstance(expires_on, int) and not isinstance(expires_on, bool):
        return AccessToken(token, expires_on)
    text = data.get("expiresOn")
    if isinstance(text, str):
        # Older az: local time without a zone, e.g. "2024-05-01 12:34:56.000000".
        for fmt in ("%Y-%m-%d %H:%M:%S.%f", "%Y-%m-%d %H:%M:%S"):
            with contextlib.suppress(ValueError):
                return AccessToken(token, int(datetime.strptime(text, fmt).timestamp()))
    raise AuthenticationError(f"{who}: az did not say when the token expires")
