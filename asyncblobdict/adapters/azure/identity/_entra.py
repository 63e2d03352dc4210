"""Service principals and workload identity: the Entra ID token endpoint's client credentials
grant, with a client secret, a certificate-signed assertion or a federated token file.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import ssl
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ....errors import AuthenticationError
from ._http import Answer, NetworkError, parse_token_answer, send, token_error
from ._token import CachingCredential, Fetched, logger

__all__ = [
    "DEFAULT_AUTHORITY",
    "ClientCertificateCredential",
    "ClientSecretCredential",
    "WorkloadIdentityCredential",
]

DEFAULT_AUTHORITY = "https://login.microsoftonline.com"
_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
_TENANT = re.compile(r"[A-Za-z0-9.\-]+")
# One retry of a token request that got 429, 5xx or no answer, after this many seconds
# (or the Retry-After the service asks for, up to _MAX_RETRY_AFTER).
_RETRY_DELAY = 1.0
_MAX_RETRY_AFTER = 10.0
_TRANSIENT = {408, 429, 500, 502, 503, 504}


def _authority(value: str | None) -> str:
    """The authority host as an https URL: the argument, $AZURE_AUTHORITY_HOST, or public."""
    authority = value or os.environ.get("AZURE_AUTHORITY_HOST") or DEFAULT_AUTHORITY
    if "://" not in authority:
        authority = "https://" + authority
    if urlsplit(authority).scheme != "https":
        raise ValueError("the authority must be an https URL")
    return authority.rstrip("/")


def _check_tenant(tenant_id: str) -> str:
    if not isinstance(tenant_id, str) or not _TENANT.fullmatch(tenant_id):
        raise ValueError("tenant_id must be a tenant id or domain (letters, digits, '.', '-' only)")
    return tenant_id


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class _EntraCredential(CachingCredential):
    """The client credentials grant against ``{authority}/{tenant}/oauth2/v2.0/token``."""

    # Tests replace it so retries need no waiting.
    _sleep: Callable[[float], Any] = staticmethod(asyncio.sleep)

    def __init__(
        self,
        tenant_id: str,
        client_id: str,
        *,
        authority: str | None,
        ssl_context: ssl.SSLContext | None,
    ) -> None:
        super().__init__()
        if not client_id or not isinstance(client_id, str):
            raise ValueError("client_id is required")
        self.tenant_id = _check_tenant(tenant_id)
        self.client_id = client_id
        self.authority = _authority(authority)
        self._ssl_context = ssl_context

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(tenant_id={self.tenant_id!r}, "
            f"client_id={self.client_id!r}, authority={self.authority!r})"
        )

    @property
    def token_url(self) -> str:
        return f"{self.authority}/{self.tenant_id}/oauth2/v2.0/token"

    async def _client_credential(self) -> dict[str, str]:
        """The form fields that prove who the client is (a secret or an assertion)."""
        raise NotImplementedError

    def _secrets(self) -> list[str]:
        return []

    async def _request_token(self, scopes: tuple[str, ...]) -> Fetched:
        who = type(self).__name__
        form = {
            "client_id": self.client_id,
            "grant_type": "client_credentials",
            "scope": " ".join(scopes),
            **await self._client_credential(),
        }
        secrets = [*self._secrets(), form.get("client_assertion", "")]
        answer = await self._post(who, form)
        if answer is None:
            # No answer: one retry after a moment.
            await self._sleep(_RETRY_DELAY)
            answer = await self._post(who, form, last=True)
        elif answer.status in _TRANSIENT:
            delay = _RETRY_DELAY
            retry_after = answer.headers.get("Retry-After", "").strip()
            if retry_after.isdigit():
                delay = min(float(retry_after), _MAX_RETRY_AFTER)
            logger.debug("%s: token request got %d, retrying in %.1f s", who, answer.status, delay)
            await self._sleep(delay)
            answer = await self._post(who, form, last=True)
        assert answer is not None
        if answer.status != 200:
            raise token_error(who, answer, secrets)
        logger.debug("%s: token from %s", who, urlsplit(self.token_url).hostname)
        return parse_token_answer(who, answer, self._clock())

    async def _post(self, who: str, form: dict[str, str], last: bool = False) -> Answer | None:
        """The answer, or None when there was none (raised instead when ``last``)."""
        try:
            return await send("POST", self.token_url, form=form, ssl_context=self._ssl_context)
        except NetworkError as exc:
            if last:
                raise AuthenticationError(f"{who}: {exc}") from None
            logger.debug("%s: %s, retrying", who, exc)
            return None


class ClientSecretCredential(_EntraCredential):
    """A service principal signing in with a client secret.

    ``authority`` is the Entra ID host (default ``login.microsoftonline.com``, or
    ``$AZURE_AUTHORITY_HOST``; e.g. ``login.microsoftonline.us`` for US Government).
    """

    def __init__(
        self,
        tenant_id: str,
        client_id: str,
        client_secret: str,
        *,
        authority: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        super().__init__(tenant_id, client_id, authority=authority, ssl_context=ssl_context)
        if not client_secret or not isinstance(client_secret, str):
            raise ValueError("client_secret is required")
        self._client_secret = client_secret

    async def _client_credential(self) -> dict[str, str]:
        return {"client_secret": self._client_secret}

    def _secrets(self) -> list[str]:
        return [self._client_secret]


def _missing_cryptography() -> ImportError:
    return ImportError(
        "ClientCertificateCredential needs the cryptography package: in a clone of "
        'asyncblobdict run pip install ".[identity]", or pip install cryptography'
    )


class ClientCertificateCredential(_EntraCredential):
    """A service principal signing in with a certificate: a JWT assertion signed RS256 with
    its private key, carrying the certificate's SHA-1 thumbprint (``x5t``).

    ``certificate_path`` is a PEM file holding the private key and the certificate, or a
    PKCS#12 (.pfx) file; ``password`` decrypts the key. Needs ``cryptography`` (the
    ``identity`` extra), imported when the credential is made.
    """

    def __init__(
        self,
        tenant_id: str,
        client_id: str,
        certificate_path: str | os.PathLike[str] | None = None,
        *,
        password: str | bytes | None = None,
        certificate_data: bytes | None = None,
        authority: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        super().__init__(tenant_id, client_id, authority=authority, ssl_context=ssl_context)
        if (certificate_path is None) == (certificate_data is None):
            raise ValueError("give either certificate_path or certificate_data")
        if certificate_data is None:
            assert certificate_path is not None
            certificate_data = Path(certificate_path).read_bytes()
        if isinstance(password, str):
            password = password.encode("utf-8")
        self._signer, self._thumbprint = _load_certificate(certificate_data, password)

    async def _client_credential(self) -> dict[str, str]:
        return {
            "client_assertion_type": _ASSERTION_TYPE,
            "client_assertion": self._assertion(),
        }

    def _assertion(self) -> str:
        # Real time, not the cache's clock: the token service checks these claims.
        now = int(time.time())
        header = {"alg": "RS256", "typ": "JWT", "x5t": self._thumbprint}
        claims = {
            "aud": self.token_url,
            "iss": self.client_id,
            "sub": self.client_id,
            "jti": str(uuid.uuid4()),
            "iat": now,
            "nbf": now,
            "exp": now + 600,
        }
        signing_input = (
            _b64url(json.dumps(header, separators=(",", ":")).encode())
            + "."
            + _b64url(json.dumps(claims, separators=(",", ":")).encode())
        )
        signature = self._signer(signing_input.encode("ascii"))
        return signing_input + "." + _b64url(signature)


def _load_certificate(data: bytes, password: bytes | None) -> tuple[Callable[[bytes], bytes], str]:
    """(RS256 signer, base64url SHA-1 thumbprint) from PEM or PKCS#12 bytes."""
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import padding, rsa
        from cryptography.hazmat.primitives.serialization import pkcs12
    except ImportError:
        raise _missing_cryptography() from None
    try:
        if b"-----BEGIN" in data:
            key: object = serialization.load_pem_private_key(data, password=password)
            cert: x509.Certificate | None = x509.load_pem_x509_certificate(data)
        else:
            key, cert, _ = pkcs12.load_key_and_certificates(data, password)
    except (ValueError, TypeError) as exc:
        # cryptography's messages name the problem (bad password, no key), never the key.
        raise ValueError(f"cannot load the certificate: {exc}") from None
    if cert is None or not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("the certificate file must hold an RSA private key and its certificate")
    thumbprint = _b64url(cert.fingerprint(hashes.SHA1()))  # x5t is SHA-1 by spec
    rsa_key = key

    def sign(message: bytes) -> bytes:
        return rsa_key.sign(message, padding.PKCS1v15(), hashes.SHA256())

    return sign, thumbprint


class WorkloadIdentityCredential(_EntraCredential):
    """Workload identity (AKS and other federated identities): exchanges the token in
    ``token_file_path`` for an access token.

    Arguments default to ``$AZURE_TENANT_ID``, ``$AZURE_CLIENT_ID`` and
    ``$AZURE_FEDERATED_TOKEN_FILE`` (set by the AKS webhook). The file is read again for
    every token request, as Kubernetes rotates it.
    """

    def __init__(
        self,
        tenant_id: str | None = None,
        client_id: str | None = None,
        token_file_path: str | os.PathLike[str] | None = None,
        *,
        authority: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        values: Mapping[str, str | os.PathLike[str] | None] = {
            "AZURE_TENANT_ID": tenant_id or os.environ.get("AZURE_TENANT_ID"),
            "AZURE_CLIENT_ID": client_id or os.environ.get("AZURE_CLIENT_ID"),
            "AZURE_FEDERATED_TOKEN_FILE": token_file_path
            or os.environ.get("AZURE_FEDERATED_TOKEN_FILE"),
        }
        missing = [name for name, value in values.items() if not value]
        if missing:
            raise ValueError(
                "WorkloadIdentityCredential needs tenant_id, client_id and token_file_path, "
                f"or the environment variables {', '.join(missing)}"
            )
        super().__init__(
            str(values["AZURE_TENANT_ID"]),
            str(values["AZURE_CLIENT_ID"]),
            authority=authority,
            ssl_context=ssl_context,
        )
        self.token_file_path = os.fspath(values["AZURE_FEDERATED_TOKEN_FILE"] or "")

    def __repr__(self) -> str:
        return super().__repr__()[:-1] + f", token_file_path={self.token_file_path!r})"

    async def _client_credential(self) -> dict[str, str]:
        try:
            assertion = (await asyncio.to_thread(Path(self.token_file_path).read_text)).strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise AuthenticationError(
                f"WorkloadIdentityCredential: cannot read the federated token file "
                f"{self.token_file_path!r} ({type(exc).__name__})"
            ) from None
        if not assertion:
            raise AuthenticationError(
                f"WorkloadIdentityCredential: the federated token file {self.token_file_path!r}"
                " is empty"
            )
        return {"client_assertion_type": _ASSERTION_TYPE, "client_assertion": assertion}
