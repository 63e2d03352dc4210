"""Azure Blob Storage backend: a hand-written Blob REST client over aiohttp.

Needs aiohttp: ``pip install ".[azure]"`` in a clone of asyncblobdict, or
``pip install "aiohttp>=3.11,<4"`` (not ``pip install "asyncblobdict[azure]"``: on PyPI that
name is the unrelated original library). The Azure SDK is never used.
"""

from __future__ import annotations

try:
    import aiohttp  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised in a subprocess test
    raise ImportError(
        'AzureBlobAdapter needs aiohttp: pip install "aiohttp>=3.11,<4" '
        '(or pip install ".[azure]" in a clone of asyncblobdict)'
    ) from exc

from .adapter import AzureBlobAdapter, Credential
from .auth import AccessTokenLike, AsyncTokenCredential
from .connection import ConnectionStringError
from .identity import (
    AccessToken,
    AzureCliCredential,
    ChainedTokenCredential,
    ClientCertificateCredential,
    ClientSecretCredential,
    CredentialUnavailableError,
    DefaultAzureCredential,
    EnvironmentCredential,
    ManagedIdentityCredential,
    WorkloadIdentityCredential,
)
from .retry import RetryPolicy
from .sas import generate_sas

__all__ = [
    "AccessToken",
    "AccessTokenLike",
    "AsyncTokenCredential",
    "AzureBlobAdapter",
    "AzureCliCredential",
    "ChainedTokenCredential",
    "ClientCertificateCredential",
    "ClientSecretCredential",
    "ConnectionStringError",
    "Credential",
    "CredentialUnavailableError",
    "DefaultAzureCredential",
    "EnvironmentCredential",
    "ManagedIdentityCredential",
    "RetryPolicy",
    "WorkloadIdentityCredential",
    "generate_sas",
]
