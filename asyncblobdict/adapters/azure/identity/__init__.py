"""Microsoft Entra ID sign-in without azure-identity: the credentials most deployments need.

Names and arguments follow azure-identity, so code written for it reads the same; any
credential with an async ``get_token`` (azure-identity's included) works with the adapter.
Every credential here caches its token per scope set, sends one token request at a time,
refreshes ahead of expiry, and holds no connection between token requests.
"""

from __future__ import annotations

from ._cli import AzureCliCredential
from ._default import ChainedTokenCredential, DefaultAzureCredential, EnvironmentCredential
from ._entra import ClientCertificateCredential, ClientSecretCredential, WorkloadIdentityCredential
from ._managed import ManagedIdentityCredential
from ._token import STORAGE_SCOPE, AccessToken, CredentialUnavailableError

__all__ = [
    "STORAGE_SCOPE",
    "AccessToken",
    "AzureCliCredential",
    "ChainedTokenCredential",
    "ClientCertificateCredential",
    "ClientSecretCredential",
    "CredentialUnavailableError",
    "DefaultAzureCredential",
    "EnvironmentCredential",
    "ManagedIdentityCredential",
    "WorkloadIdentityCredential",
]
