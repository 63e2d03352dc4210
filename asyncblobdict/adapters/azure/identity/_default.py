"""Credentials that choose: from the environment, the first of a chain that works, and
DefaultAzureCredential."""

from __future__ import annotations

import asyncio
import os
import ssl
from typing import Any

from ...._redact import redact
from ....errors import AuthenticationError
from ._cli import AzureCliCredential
from ._entra import ClientCertificateCredential, ClientSecretCredential, WorkloadIdentityCredential
from ._managed import ManagedIdentityCredential
from ._token import AccessToken, CachingCredential, CredentialUnavailableError, Fetched, logger

__all__ = ["ChainedTokenCredential", "DefaultAzureCredential", "EnvironmentCredential"]


class EnvironmentCredential(CachingCredential):
    """A service principal described by environment variables.

    ``AZURE_TENANT_ID`` and ``AZURE_CLIENT_ID`` with ``AZURE_CLIENT_SECRET`` (a
    :class:`ClientSecretCredential`), or else with ``AZURE_CLIENT_CERTIFICATE_PATH`` and
    optionally ``AZURE_CLIENT_CERTIFICATE_PASSWORD`` (a :class:`ClientCertificateCredential`);
    ``AZURE_AUTHORITY_HOST`` is honoured. Unavailable when they are not set.
    """

    def __init__(
        self, *, authority: str | None = None, ssl_context: ssl.SSLContext | None = None
    ) -> None:
        super().__init__()
        env = os.environ
        tenant, client = env.get("AZURE_TENANT_ID"), env.get("AZURE_CLIENT_ID")
        self._inner: ClientSecretCredential | ClientCertificateCredential | None = None
        self._error: str | None = None
        try:
            if tenant and client and env.get("AZURE_CLIENT_SECRET"):
                self._inner = ClientSecretCredential(
                    tenant,
                    client,
                    env["AZURE_CLIENT_SECRET"],
                    authority=authority,
                    ssl_context=ssl_context,
                )
            elif tenant and client and env.get("AZURE_CLIENT_CERTIFICATE_PATH"):
                self._inner = ClientCertificateCredential(
                    tenant,
                    client,
                    env["AZURE_CLIENT_CERTIFICATE_PATH"],
                    password=env.get("AZURE_CLIENT_CERTIFICATE_PASSWORD") or None,
                    authority=authority,
                    ssl_context=ssl_context,
                )
        except (ValueError, ImportError, OSError) as exc:
            # Reported by get_token, so DefaultAzureCredential can say what went wrong.
            self._error = f"{type(exc).__name__}: {redact(str(exc))}"

    def __repr__(self) -> str:
        return f"EnvironmentCredential({self._inner!r})"

    async def _request_token(self, scopes: tuple[str, ...]) -> Fetched:
        if self._error is not None:
            raise AuthenticationError(f"EnvironmentCredential: {self._error}")
        if self._inner is None:
            raise CredentialUnavailableError(
                "EnvironmentCredential: AZURE_TENANT_ID, AZURE_CLIENT_ID and "
                "AZURE_CLIENT_SECRET or AZURE_CLIENT_CERTIFICATE_PATH are not all set"
            )
        return await self._inner._request_token(scopes)


class _Unavailable(CachingCredential):
    """Stands in the chain for a credential that could not be made here."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__()
        self.name, self.reason = name, reason

    def __repr__(self) -> str:
        return f"{self.name}(unavailable)"

    async def _request_token(self, scopes: tuple[str, ...]) -> Fetched:
        raise CredentialUnavailableError(_named(self.name, self.reason))


def _named(name: str, text: str) -> str:
    return text if text.startswith(name) else f"{name}: {text}"


def _name(credential: object) -> str:
    return credential.name if isinstance(credential, _Unavailable) else type(credential).__name__


def _is_unavailable(exc: BaseException) -> bool:
    # azure-identity's own CredentialUnavailableError counts too, for mixed chains.
    return isinstance(exc, CredentialUnavailableError) or (
        type(exc).__name__ == "CredentialUnavailableError"
    )


class ChainedTokenCredential(CachingCredential):
    """Tries credentials in order; the first that returns a token is used from then on.

    A credential that is unavailable here passes to the next; one that fails (a wrong
    secret, a refusal) stops the chain. When none works, the error lists why each failed.
    Credentials may be this package's or any with an async ``get_token`` (azure-identity).
    """

    def __init__(self, *credentials: Any) -> None:
        super().__init__()
        if not credentials:
            raise ValueError("ChainedTokenCredential needs at least one credential")
        self.credentials = tuple(credentials)
        self._successful: Any = None
        self._selecting: dict[tuple[str, ...], asyncio.Task[AccessToken]] = {}

    def __repr__(self) -> str:
        inner = ", ".join(repr(c) for c in self.credentials)
        return f"{type(self).__name__}({inner})"

    async def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        """A token from the credential that worked, or from the first that works now."""
        if not scopes:
            raise ValueError("get_token needs at least one scope")
        if self._successful is not None:
            return await self._call(self._successful, scopes, kwargs)
        # One walk of the chain at a time: concurrent first callers share it.
        task = self._selecting.get(scopes)
        if task is None or task.done() or task.get_loop() is not asyncio.get_running_loop():
            task = asyncio.ensure_future(self._select(scopes, kwargs))
            task.add_done_callback(lambda t: t.cancelled() or t.exception())
            self._selecting[scopes] = task
        return await asyncio.shield(task)

    @staticmethod
    async def _call(credential: Any, scopes: tuple[str, ...], kwargs: Any) -> AccessToken:
        access = await credential.get_token(*scopes, **kwargs)
        return AccessToken(access.token, int(access.expires_on))

    async def _select(self, scopes: tuple[str, ...], kwargs: Any) -> AccessToken:
        who = type(self).__name__
        reasons: list[str] = []
        for credential in self.credentials:
            try:
                access = await self._call(credential, scopes, kwargs)
            except Exception as exc:
                text = exc.message if isinstance(exc, AuthenticationError) else str(exc)
                reasons.append(_named(_name(credential), redact(text)))
                if _is_unavailable(exc):
                    continue
                status = exc.status if isinstance(exc, AuthenticationError) else None
                code = exc.error_code if isinstance(exc, AuthenticationError) else None
                raise AuthenticationError(
                    f"{who}: {_name(credential)} failed (the chain stops at a failure that "
                    "is not 'unavailable'):\n  " + "\n  ".join(reasons),
                    status=status,
                    error_code=code,
                ) from None
            self._successful = credential
            logger.info("%s: signed in with %s", who, _name(credential))
            return access
        raise CredentialUnavailableError(
            f"{who}: no credential could sign in here:\n  " + "\n  ".join(reasons)
        )

    async def close(self) -> None:
        """Close every credential of the chain."""
        for credential in self.credentials:
            close = getattr(credential, "close", None)
            if close is not None:
                await close()


class DefaultAzureCredential(ChainedTokenCredential):
    """The usual way to sign in, wherever the code runs. Tries, in order:

    1. :class:`EnvironmentCredential`: a service principal from ``AZURE_TENANT_ID``,
       ``AZURE_CLIENT_ID`` and ``AZURE_CLIENT_SECRET`` (or ``AZURE_CLIENT_CERTIFICATE_PATH``);
    2. :class:`WorkloadIdentityCredential`: ``AZURE_TENANT_ID``, ``AZURE_CLIENT_ID`` and
       ``AZURE_FEDERATED_TOKEN_FILE`` (AKS);
    3. :class:`ManagedIdentityCredential` (``managed_identity_client_id``, else
       ``AZURE_CLIENT_ID``, selects a user-assigned identity);
    4. :class:`AzureCliCredential` (``az login``).

    The first that works is used from then on. ``exclude_*_credential`` drops one.
    """

    def __init__(
        self,
        *,
        authority: str | None = None,
        managed_identity_client_id: str | None = None,
        workload_identity_client_id: str | None = None,
        exclude_environment_credential: bool = False,
        exclude_workload_identity_credential: bool = False,
        exclude_managed_identity_credential: bool = False,
        exclude_cli_credential: bool = False,
        process_timeout: float = 10.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        chain: list[CachingCredential] = []
        if not exclude_environment_credential:
            chain.append(EnvironmentCredential(authority=authority, ssl_context=ssl_context))
        if not exclude_workload_identity_credential:
            try:
                chain.append(
                    WorkloadIdentityCredential(
                        client_id=workload_identity_client_id,
                        authority=authority,
                        ssl_context=ssl_context,
                    )
                )
            except ValueError as exc:
                chain.append(_Unavailable("WorkloadIdentityCredential", str(exc)))
        if not exclude_managed_identity_credential:
            try:
                chain.append(
                    ManagedIdentityCredential(
                        managed_identity_client_id or os.environ.get("AZURE_CLIENT_ID"),
                        ssl_context=ssl_context,
                    )
                )
            except ValueError as exc:
                chain.append(_Unavailable("ManagedIdentityCredential", str(exc)))
        if not exclude_cli_credential:
            chain.append(AzureCliCredential(process_timeout=process_timeout))
        if not chain:
            raise ValueError("DefaultAzureCredential: every credential is excluded")
        super().__init__(*chain)
