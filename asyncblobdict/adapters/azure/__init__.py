"""Azure Blob Storage backend: a hand-written Blob REST client over aiohttp.

Needs the ``azure`` extra (``pip install "asyncblobdict[azure]"``); the Azure SDK is never used.
"""

from __future__ import annotations

try:
    import aiohttp  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised in a subprocess test
    raise ImportError('AzureBlobAdapter needs aiohttp: pip install "asyncblobdict[azure]"') from exc

from .adapter import AzureBlobAdapter, Credential
from .auth import AccessTokenLike, AsyncTokenCredential
from .connection import ConnectionStringError
from .retry import RetryPolicy

__all__ = [
    "AccessTokenLike",
    "AsyncTokenCredential",
    "AzureBlobAdapter",
    "ConnectionStringError",
    "Credential",
    "RetryPolicy",
]
