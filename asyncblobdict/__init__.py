"""asyncblobdict: an async key-value store for JSON and binary values.

Local files (standard library only), memory, or Azure Blob Storage (needs aiohttp: ``pip install
".[azure]"`` in a clone), with caching and ETag optimistic concurrency. Importing this package
loads its errors alone; every other public name loads its module on first use (the standard
library only; ``AzureBlobAdapter`` loads aiohttp).
``open_store("local:./data/box")`` opens a store by address (see ``asyncblobdict.addresses``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

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

if TYPE_CHECKING:
    from .adapters.azure import AzureBlobAdapter as AzureBlobAdapter
    from .adapters.azure_connection import ConnectionStringError as ConnectionStringError
    from .adapters.base import Adapter as Adapter
    from .adapters.base import BlobInfo as BlobInfo
    from .adapters.local import LocalFileAdapter as LocalFileAdapter
    from .adapters.memory import MemoryAdapter as MemoryAdapter
    from .addresses import StoreLocation as StoreLocation
    from .addresses import open_store as open_store
    from .addresses import register_scheme as register_scheme
    from .codec import TypeRegistry as TypeRegistry
    from .modes import CacheMode as CacheMode
    from .modes import ConcurrencyMode as ConcurrencyMode
    from .modes import SyncResult as SyncResult
    from .store import AsyncBlobStore as AsyncBlobStore
    from .sync_store import BlobStore as BlobStore

# Every public name that is not an error is imported on first use (PEP 562), so that
# `import asyncblobdict` costs little more than `import asyncio`: the store, the codec and
# the adapters (json, dataclasses, hashlib, uuid...) load with the first name that needs them.
_LAZY = {
    "Adapter": ".adapters.base",
    "AsyncBlobStore": ".store",
    "AzureBlobAdapter": ".adapters.azure",  # needs aiohttp
    "BlobInfo": ".adapters.base",
    "BlobStore": ".sync_store",
    "CacheMode": ".modes",
    "ConcurrencyMode": ".modes",
    "ConnectionStringError": ".adapters.azure_connection",
    "LocalFileAdapter": ".adapters.local",
    "MemoryAdapter": ".adapters.memory",
    "StoreLocation": ".addresses",
    "SyncResult": ".modes",
    "TypeRegistry": ".codec",
    "open_store": ".addresses",
    "register_scheme": ".addresses",
}

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
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'asyncblobdict' has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
