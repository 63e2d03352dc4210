"""asyncblobdict: an async key-value store for JSON and binary values.

Local files (standard library only), memory, or Azure Blob Storage (needs aiohttp: ``pip install
".[azure]"`` in a clone), with caching and ETag optimistic concurrency. Importing this package
loads the standard library alone; ``AzureBlobAdapter`` loads aiohttp on first use.
``open_store("local:./data/box")`` opens a store by address (see ``asyncblobdict.addresses``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .adapters.azure_connection import ConnectionStringError
from .adapters.base import Adapter, BlobInfo
from .adapters.local import LocalFileAdapter
from .adapters.memory import MemoryAdapter
from .addresses import StoreLocation, open_store, register_scheme
from .codec import TypeRegistry
from .errors import (
    AsyncBlobDictError,
    AuthenticationError,
    BatchError,
    BlobNotFoundError,
    ConcurrencyError,
    InvalidKeyError,
    InvalidTTLError,
    OutcomeUnknownError,
    SerializationError,
    StorageError,
)
from .modes import CacheMode, ConcurrencyMode, SyncResult
from .store import AsyncBlobStore
from .sync_store import BlobStore

if TYPE_CHECKING:
    from .adapters.azure import AzureBlobAdapter as AzureBlobAdapter

# AzureBlobAdapter is public but left out of __all__: `from asyncblobdict import *` must not
# import aiohttp (or fail when the extra is not installed), and __getattr__ below cannot make
# a star import lazy, since it fetches every name of __all__ at once. docs/api.md says so.
__all__ = [
    "Adapter",
    "AsyncBlobDictError",
    "AsyncBlobStore",
    "AuthenticationError",
    "BatchError",
    "BlobInfo",
    "BlobNotFoundError",
    "BlobStore",
    "CacheMode",
    "ConcurrencyError",
    "ConcurrencyMode",
    "ConnectionStringError",
    "InvalidKeyError",
    "InvalidTTLError",
    "LocalFileAdapter",
    "MemoryAdapter",
    "OutcomeUnknownError",
    "SerializationError",
    "StorageError",
    "StoreLocation",
    "SyncResult",
    "TypeRegistry",
    "open_store",
    "register_scheme",
]

__version__ = "0.2.0"


def __getattr__(name: str) -> Any:
    # AzureBlobAdapter needs aiohttp; import it only when someone asks for it.
    if name == "AzureBlobAdapter":
        from .adapters.azure import AzureBlobAdapter as AzureBlobAdapter

        globals()[name] = AzureBlobAdapter
        return AzureBlobAdapter
    raise AttributeError(f"module 'asyncblobdict' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), "AzureBlobAdapter"})
