"""Managed identity: Azure VMs (IMDS), App Service and Functions, Azure Arc, and workload
identity when its environment is present, detected in azure-identity's order.
"""

from __future__ import annotations

import asyncio
import os
import ssl
import sys
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from ....errors import AuthenticationError
from ._entra import WorkloadIdentityCredential
from ._http import Answer, NetworkError, parse_token_answer, send, token_error
from ._token import (
    CachingCredential,
    CredentialUnavailableError,
    Fetched,
    logger,
    scope_to_resource,
)

__all__ = ["IMDS_ENDPOINT", "ManagedIdentityCredential"]

IMDS_ENDPOINT = "http://169.254.169.254"
_IMDS_PATH = "/metadata/identity/oauth2/token"
_IMDS_API = "2018-02-01"
_APP_SERVICE_API = "2019-08-01"
_ARC_API = "2019-11-01"
# IMDS is on the host: a connection that takes longer than this means there is none.
_IMDS_CONNECT_TIMEOUT = 2.0
_REQUEST_TIMEOUT = 20.0
# Retries as Microsoft documents for IMDS: 404 (identity not ready yet), 408, 429 and 5xx
# with exponential backoff (0.8 s doubling, 5 retries, as azure-identity), Retry-After
# honoured; 410 (IMDS is being updated) every 10 s for at least 70 s.
_IMDS_RETRY_STATUSES = frozenset({404, 408, 410, 429, *range(500, 600)})
_OTHER_RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
_BACKOFF = 0.8
_MAX_RETRIES = 5
_GONE_DELAY = 10.0
_GONE_WINDOW = 70.0
_MAX_RETRY_AFTER = 60.0
_ARC_KEY_MAX = 4096


def _arc_key_dir() -> Path:
    """Where the Azure Connected Machine agent writes its challenge keys."""
    if sys.platform == "win32":  # pragma: no cover - Windows
        base = os.environ.get("PROGRAMDATA", r"C:\ProgramData")
        return Path(base) / "AzureConnectedMachineAgent" / "Tokens"
    return Path("/var/opt/azcmagent/tokens")


class ManagedIdentityCredential(CachingCredential):
    """The managed identity of the Azure resource this code runs on.

    Which endpoint is used is decided from the environment when the credential is made,
    in azure-identity's order:

    1. ``IDENTITY_ENDPOINT`` + ``IDENTITY_HEADER``: App Service and Azure Functions
       (``IDENTITY_SERVER_THUMBPRINT`` too: Service Fabric, not supported).
    2. ``IDENTITY_ENDPOINT`` + ``IMDS_ENDPOINT``: Azure Arc (system-assigned only).
    3. ``MSI_ENDPOINT``: Cloud Shell or Azure Machine Learning, not supported.
    4. ``AZURE_CLIENT_ID`` + ``AZURE_TENANT_ID`` + ``AZURE_FEDERATED_TOKEN_FILE``:
       workload identity (see :class:`WorkloadIdentityCredential`).
    5. Otherwise IMDS, the VM's instance metadata service at 169.254.169.254
       (``$AZURE_POD_IDENTITY_AUTHORITY_HOST`` replaces that address).

    ``client_id`` or ``resource_id`` selects a user-assigned identity (not both).
    """

    _sleep: Callable[[float], Awaitable[Any]] = staticmethod(asyncio.sleep)

    def __init__(
        self,
        client_id: str | None = None,
        *,
        resource_id: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        super().__init__()
        if client_id and resource_id:
            raise ValueError("give client_id or resource_id, not both")
        self.client_id = client_id or None
        self.resource_id = resource_id or None
        self._ssl_context = ssl_context
        self._imds_answered = False
        self._workload: WorkloadIdentityCredential | None = None
        self._unsupported: str | None = None
        env = os.environ
        self._endpoint = ""
        if env.get("IDENTITY_ENDPOINT") and env.get("IDENTITY_HEADER"):
            if env.get("IDENTITY_SERVER_THUMBPRINT"):
                self.source = "service-fabric"
                self._unsupported = "Service Fabric managed identity"
            else:
                self.source = "app-service"
                self._endpoint = env["IDENTITY_ENDPOINT"]
        elif env.get("IDENTITY_ENDPOINT") and env.get("IMDS_ENDPOINT"):
            if self.client_id or self.resource_id:
                raise ValueError("Azure Arc supports only the system-assigned identity")
            self.source = "azure-arc"
            self._endpoint = env["IDENTITY_ENDPOINT"]
        elif env.get("MSI_ENDPOINT"):
            self.source = "cloud-shell"
            self._unsupported = "Cloud Shell and Azure Machine Learning managed identity"
        elif all(
            env.get(name)
            for name in ("AZURE_CLIENT_ID", "AZURE_TENANT_ID", "AZURE_FEDERATED_TOKEN_FILE")
        ):
            self.source = "workload-identity"
            self._workload = WorkloadIdentityCredential(
                client_id=self.client_id, ssl_context=ssl_context
            )
        else:
            self.source = "imds"
            self._endpoint = (env.get("AZURE_POD_IDENTITY_AUTHORITY_HOST") or IMDS_ENDPOINT).rstrip(
                "/"
            ) + _IMDS_PATH

    def __repr__(self) -> str:
        which = (
            f", client_id={self.client_id!r}"
            if self.client_id
            else f", resource_id={self.resource_id!r}"
            if self.resource_id
            else ""
        )
        return f"ManagedIdentityCredential(source={self.source!r}{which})"

    async def _request_token(self, scopes: tuple[str, ...]) -> Fetched:
        if self._workload is not None:
            return await self._workload._request_token(scopes)
        if self._unsupported is not None:
            raise CredentialUnavailableError(
                f"ManagedIdentityCredential: {self._unsupported} is not supported; "
                "use azure-identity's ManagedIdentityCredential there"
            )
        resource = scope_to_resource(scopes, "ManagedIdentityCredential")
        if self.source == "app-service":
            return await self._app_service(resource)
        if self.source == "azure-arc":
            return await self._arc(resource)
        return await self._imds(resource)

    def _identity_query(self, resource: str, api_version: str, resource_id_name: str) -> str:
        query = {"api-version": api_version, "resource": resource}
        if self.client_id:
            query["client_id"] = self.client_id
        elif self.resource_id:
            query[resource_id_name] = self.resource_id
        return urlencode(query)

    async def _get(
        self, url: str, headers: Mapping[str, str], connect_timeout: float = 10.0
    ) -> Answer:
        return await send(
            "GET",
            url,
            headers=headers,
            connect_timeout=connect_timeout,
            total_timeout=_REQUEST_TIMEOUT,
            ssl_context=self._ssl_context,
        )

    async def _with_retries(
        self,
        who: str,
        attempt: Callable[[], Awaitable[Answer]],
        statuses: frozenset[int],
    ) -> Answer:
        """Send until an answer that is not retried, or the retries run out."""
        retries = 0
        gone_waited = 0.0
        while True:
            try:
                answer = await attempt()
            except NetworkError as exc:
                if self.source == "imds" and not self._imds_answered:
                    # Nothing listens: this is no Azure VM (or IMDS is blocked here).
                    raise CredentialUnavailableError(
                        f"ManagedIdentityCredential: no managed identity endpoint answered ({exc})"
                    ) from None
                if retries >= _MAX_RETRIES:
                    raise AuthenticationError(f"{who}: {exc}") from None
                delay = _BACKOFF * 2**retries
            else:
                if self.source == "imds":
                    self._imds_answered = True
                if answer.status not in statuses:
                    return answer
                if answer.status == 410 and gone_waited < _GONE_WINDOW:
                    delay = _GONE_DELAY
                    gone_waited += delay
                elif retries >= _MAX_RETRIES:
                    return answer
                else:
                    delay = _BACKOFF * 2**retries
                    retry_after = answer.headers.get("Retry-After", "").strip()
                    if retry_after.isdigit():
                        delay = min(max(delay, float(retry_after)), _MAX_RETRY_AFTER)
            retries += 1
            logger.debug("%s: token request failed, retry %d in %.1f s", who, retries, delay)
            await self._sleep(delay)

    async def _imds(self, resource: str) -> Fetched:
        who = "ManagedIdentityCredential (IMDS)"
        url = f"{self._endpoint}?{self._identity_query(resource, _IMDS_API, 'msi_res_id')}"

        async def attempt() -> Answer:
            return await self._get(url, {"Metadata": "true"}, _IMDS_CONNECT_TIMEOUT)

        answer = await self._with_retries(who, attempt, _IMDS_RETRY_STATUSES)
        if answer.status == 200:
            return parse_token_answer(who, answer, self._clock())
        # 400: IMDS is there but this identity is not assigned to the VM.
        raise token_error(who, answer, unavailable=answer.status == 400)

    async def _app_service(self, resource: str) -> Fetched:
        who = "ManagedIdentityCredential (App Service)"
        header = os.environ.get("IDENTITY_HEADER", "")
        url = f"{self._endpoint}?{self._identity_query(resource, _APP_SERVICE_API, 'mi_res_id')}"

        async def attempt() -> Answer:
            return await self._get(url, {"X-IDENTITY-HEADER": header})

        answer = await self._with_retries(who, attempt, _OTHER_RETRY_STATUSES)
        if answer.status == 200:
            return parse_token_answer(who, answer, self._clock())
        raise token_error(who, answer, [header])

    async def _arc(self, resource: str) -> Fetched:
        who = "ManagedIdentityCredential (Azure Arc)"
        url = f"{self._endpoint}?{urlencode({'api-version': _ARC_API, 'resource': resource})}"

        async def challenge() -> Answer:
            return await self._get(url, {"Metadata": "true"})

        first = await self._with_retries(who, challenge, _OTHER_RETRY_STATUSES)
        realm = first.headers.get("WWW-Authenticate", "")
        scheme, _, key_path = realm.partition("=")
        if first.status != 401 or scheme.strip().lower() != "basic realm":
            raise (
                token_error(who, first)
                if first.status != 401
                else AuthenticationError(
                    f"{who}: the 401 answer has no 'Basic realm=' challenge", status=401
                )
            )
        key = await asyncio.to_thread(_read_arc_key, Path(key_path.strip()))

        async def answer_challenge() -> Answer:
            return await self._get(url, {"Metadata": "true", "Authorization": f"Basic {key}"})

        answer = await self._with_retries(who, answer_challenge, _OTHER_RETRY_STATUSES)
        if answer.status == 200:
            return parse_token_answer(who, answer, self._clock())
        raise token_error(who, answer, [key])


def _read_arc_key(path: Path) -> str:
    """The challenge key, once its path is checked to be the agent's (a rogue endpoint could
    otherwise make us read and send any file)."""
    who = "ManagedIdentityCredential (Azure Arc)"
    expected = _arc_key_dir()
    if path.parent != expected or path.suffix != ".key":
        raise AuthenticationError(f"{who}: the challenge names a key file outside {expected}")
    try:
        if path.stat().st_size > _ARC_KEY_MAX:
            raise AuthenticationError(f"{who}: the challenge key file is too large")
        return path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise AuthenticationError(
            f"{who}: cannot read the challenge key file ({type(exc).__name__})"
        ) from None
