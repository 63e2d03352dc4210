"""The adapter protocol (contract v2): the only thing the store knows about storage.

An adapter moves bytes with a little metadata; it knows nothing of JSON, caching or ETag
bookkeeping. Keys reach it already checked by :func:`asyncblobdict.keys.validate_key`;
container names it checks itself in :meth:`Adapter.validate_container` (each backend has its
own rules) and raises :class:`~asyncblobdict.InvalidKeyError` for a bad one.

The contract, written once (``asyncblobdict.testing`` checks every rule of it):

``validate_container(container) -> str``
    Return the name if this backend accepts it, else raise InvalidKeyError; no I/O.
``async get(container, key) -> (data, BlobInfo)``
    Data and what is known of it, from one atomic read: ``info.etag`` is the ETag of exactly
    these bytes. Missing key or container: BlobNotFoundError.
``async head(container, key) -> BlobInfo | None``
    The stored value's size, ETag, content type and metadata without reading the value (cheap
    on every backend); None when missing.
``async put(container, key, data, *, condition=OVERWRITE, content_type=None, metadata=None)``
    Store ``data`` whole (readers never see a torn value), with ``content_type`` and
    ``metadata`` replacing the old ones; return the new ETag. ``condition``:
    :data:`OVERWRITE` (whatever is stored), :data:`CREATE` (only if the key does not exist),
    ``Update(etag)`` (only if the stored ETag equals it). A failed condition raises
    ConcurrencyError and changes nothing. A missing container is created.
``async delete(container, key, *, condition=OVERWRITE) -> None``
    Remove the key; a missing key is a no-op. ``Update(etag)``: only if the stored ETag equals
    it (a missing key then raises ConcurrencyError). ``CREATE``: only if the key does not exist,
    i.e. do nothing, but raise ConcurrencyError if it does.
``list(container, prefix="") -> AsyncIterator[BlobInfo]``
    Every key starting with ``prefix``, with its size (the ETag and metadata may be None and
    empty when the backend cannot list them cheaply), in the backend's order. Missing
    container: nothing.
``list_names(container, prefix="", *, delimiter=None) -> AsyncIterator[str]``
    The names alone, as cheaply as the backend can, each once, in the same order as
    ``list``. With ``delimiter="/"`` only one level: keys directly below ``prefix``, and
    each deeper folder once, as its prefix ending in ``/`` (``"a/"`` for the keys ``a/b``
    and ``a/c``). The store sorts what it lists; an adapter documents its own order.
``async open_read(container, key, *, offset=0, length=None) -> (BlobInfo, AsyncIterator[bytes])``
    *Streaming (optional; see* :class:`StreamingAdapter` *).* Open one stored version and
    return what is known of it (``info.size`` is the whole value's size, ``info.etag`` its
    ETag) with an iterator of the bytes ``[offset, offset + length)`` of exactly that
    version (clipped to its size; ``length=None``: to the end), in order, in chunks of the
    adapter's choosing, never holding the value in memory. Missing key: BlobNotFoundError
    from ``open_read`` itself. The version never changes under the iterator: if it is
    replaced and the adapter can no longer read it, the iterator raises ConcurrencyError,
    never yields bytes of another version. The caller closes the iterator (``aclose``) when
    it stops early; resources are held until then.
``async put_stream(container, key, chunks, *, condition, content_type, metadata, size=None)``
    *Streaming (optional).* As ``put`` (same defaults; returns the new ETag), with the
    value given as an async iterable of bytes-like chunks, consumed once, in order, holding
    a bounded number of them. ``size``, when given, is the expected total (a stream of
    another length raises StorageError and stores nothing). Atomic like ``put``: readers
    see the old value until the whole new one is stored. If the stream raises, or the call
    is cancelled, nothing is stored and no partial value or temp data is left visible; the
    stream's own exception propagates unchanged. The condition is checked when the value is
    committed (and may be checked earlier too).
``list_metadata(container, prefix="", *, delimiter=None) -> AsyncIterator[(str, metadata)]``
    *Optional (see* :class:`MetadataListingAdapter` *).* The names ``list_names`` yields, in
    its order, each with its value's metadata (a mapping, lower-case names, empty for none;
    a folder's, with a delimiter, is empty). The store lists through it to leave expired
    values out; without it, the store asks ``head`` for every listed name.
``async container_exists(container) -> bool`` (optional)
    Whether the container exists, as cheaply as the backend can tell; callers that need it
    (the command line's ``ls``) fall back to listing when an adapter does not have it.
``async close() -> None``
    Release sessions and threads. Safe to call twice. Whether a closed adapter may be used
    again is the adapter's to document (memory and local: yes; Azure: no, close is final).

Metadata names are ASCII letters, digits and ``_``, not starting with a digit, compared
without case (stored in lower case); values are printable ASCII. Use
:func:`validate_metadata` before writing. Any other failure is a StorageError (or
AuthenticationError); no OSError or client exception escapes.
:class:`~asyncblobdict.adapters.memory.MemoryAdapter` is the reference implementation.

The two streaming operations are optional: an adapter that has both is a
:class:`StreamingAdapter` (memory, local and Azure are). For one that has not, the store
falls back to ``get`` and ``put`` and so holds the whole value in memory.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterable, AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final, Protocol, runtime_checkable

from ..errors import ConcurrencyError, InvalidKeyError

__all__ = [
    "CREATE",
    "MAX_METADATA_BYTES",
    "OVERWRITE",
    "Adapter",
    "BlobInfo",
    "Create",
    "MetadataListingAdapter",
    "Overwrite",
    "Precondition",
    "StreamingAdapter",
    "Update",
    "check_condition",
    "check_delimiter",
    "check_range",
    "range_end",
    "fold_levels",
    "validate_content_type",
    "validate_metadata",
]


@dataclass(frozen=True, slots=True)
class Overwrite:
    """Write whatever is stored (or nothing)."""


@dataclass(frozen=True, slots=True)
class Create:
    """Only if the key does not exist."""


@dataclass(frozen=True, slots=True)
class Update:
    """Only if the stored version's ETag is ``etag``."""

    etag: str


Precondition = Overwrite | Create | Update
"""When a write or delete may go ahead."""

OVERWRITE: Final = Overwrite()
CREATE: Final = Create()


@dataclass(frozen=True, slots=True)
class BlobInfo:
    """What an adapter knows about one stored value.

    ``etag`` and ``content_md5`` (the raw 16-byte MD5 digest of the content) may be None
    when the backend cannot tell them cheaply (in listings). ``metadata`` holds the names in
    lower case. ``expires`` is filled in by the store (``AsyncBlobStore.info``) for a value
    written with a ``ttl``: its expiry time, aware UTC; adapters leave it None (they keep the
    expiry in ``metadata`` as ``abdexpires``, see ``asyncblobdict.expiry``).
    """

    key: str
    size: int
    etag: str | None = None
    last_modified: datetime | None = None
    content_md5: bytes | None = None
    content_type: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict, hash=False)
    expires: datetime | None = None


MAX_METADATA_BYTES = 8 * 1024
"""Names and values together, as Azure allows."""

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_VALUE = re.compile(r"[\x20-\x7e]*\Z")


def validate_metadata(metadata: Mapping[str, str] | None) -> dict[str, str]:
    """Return ``metadata`` with lower-case names, or raise InvalidKeyError.

    Names: ASCII letters, digits and ``_``, not starting with a digit, unique without case.
    Values: printable ASCII without leading or trailing spaces. At most 8 KiB in all.
    """
    if metadata is None:
        return {}
    if not isinstance(metadata, Mapping):
        raise InvalidKeyError(f"metadata must be a mapping, not {type(metadata).__name__}")
    out: dict[str, str] = {}
    total = 0
    for name, value in metadata.items():
        if not isinstance(name, str) or _NAME.match(name) is None:
            raise InvalidKeyError(
                f"metadata name {name!r} must be ASCII letters, digits and '_', "
                "not starting with a digit"
            )
        if not isinstance(value, str) or _VALUE.match(value) is None or value != value.strip():
            raise InvalidKeyError(
                f"metadata value of {name!r} must be printable ASCII text without "
                "leading or trailing spaces"
            )
        lower = name.lower()
        if lower in out:
            raise InvalidKeyError(f"metadata name {name!r} appears twice (names ignore case)")
        out[lower] = value
        total += len(name) + len(value)
    if total > MAX_METADATA_BYTES:
        raise InvalidKeyError(f"metadata is {total} bytes; at most {MAX_METADATA_BYTES} allowed")
    return out


def validate_content_type(content_type: str | None) -> str | None:
    """Return ``content_type`` if it is printable ASCII (or None), else raise InvalidKeyError."""
    if content_type is None:
        return None
    if (
        not isinstance(content_type, str)
        or not content_type
        or _VALUE.match(content_type) is None
        or len(content_type) > 1024
    ):
        raise InvalidKeyError(
            f"content_type must be non-empty printable ASCII text, not {content_type!r}"
        )
    return content_type


@runtime_checkable
class Adapter(Protocol):
    """The storage protocol every backend implements (see the module docstring)."""

    def validate_container(self, container: str) -> str:
        """Return ``container`` if this backend accepts the name, else raise InvalidKeyError."""
        ...

    async def get(self, container: str, key: str) -> tuple[bytes, BlobInfo]:
        """Return the stored bytes and what is known of them, read atomically together."""
        ...

    async def head(self, container: str, key: str) -> BlobInfo | None:
        """Return the key's size, ETag, content type and metadata, or None if missing."""
        ...

    async def put(
        self,
        container: str,
        key: str,
        data: bytes,
        *,
        condition: Precondition = OVERWRITE,
        content_type: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> str:
        """Store ``data`` atomically under ``condition``; return the new ETag."""
        ...

    async def delete(
        self, container: str, key: str, *, condition: Precondition = OVERWRITE
    ) -> None:
        """Delete the key under ``condition`` (a missing key is a no-op for OVERWRITE)."""
        ...

    def list(self, container: str, prefix: str = "") -> AsyncIterator[BlobInfo]:
        """Yield every stored key that starts with ``prefix``, with its size."""
        ...

    def list_names(
        self, container: str, prefix: str = "", *, delimiter: str | None = None
    ) -> AsyncIterator[str]:
        """Yield the names starting with ``prefix`` (one level of them with a delimiter)."""
        ...

    async def close(self) -> None:
        """Release resources; safe to call more than once."""
        ...


@runtime_checkable
class StreamingAdapter(Adapter, Protocol):
    """An adapter that also streams values (see the module docstring)."""

    async def open_read(
        self, container: str, key: str, *, offset: int = 0, length: int | None = None
    ) -> tuple[BlobInfo, AsyncIterator[bytes]]:
        """Open one version; return its BlobInfo and an iterator of the requested bytes."""
        ...

    async def put_stream(
        self,
        container: str,
        key: str,
        chunks: AsyncIterable[bytes | bytearray | memoryview],
        *,
        condition: Precondition = OVERWRITE,
        content_type: str | None = None,
        metadata: Mapping[str, str] | None = None,
        size: int | None = None,
    ) -> str:
        """Store the chunks' bytes atomically under ``condition``; return the new ETag."""
        ...


@runtime_checkable
class MetadataListingAdapter(Adapter, Protocol):
    """An adapter that also lists names with their metadata (see the module docstring)."""

    def list_metadata(
        self, container: str, prefix: str = "", *, delimiter: str | None = None
    ) -> AsyncIterator[tuple[str, Mapping[str, str]]]:
        """Yield ``(name, metadata)`` for the names ``list_names`` would yield, in its order."""
        ...


def check_range(offset: int, length: int | None) -> None:
    """Raise ValueError unless ``offset >= 0`` and ``length`` is None or ``>= 0``."""
    if not isinstance(offset, int) or isinstance(offset, bool) or offset < 0:
        raise ValueError(f"offset must be an int >= 0, not {offset!r}")
    if length is not None and (
        not isinstance(length, int) or isinstance(length, bool) or length < 0
    ):
        raise ValueError(f"length must be None or an int >= 0, not {length!r}")


def range_end(size: int, offset: int, length: int | None) -> int:
    """The end (exclusive) of ``[offset, offset + length)`` clipped to ``size``."""
    return size if length is None else min(size, offset + length)


def check_delimiter(delimiter: str | None) -> None:
    """Only ``/`` is supported as a delimiter (folders of keys)."""
    if delimiter is not None and delimiter != "/":
        raise InvalidKeyError(f"delimiter must be '/' or None, not {delimiter!r}")


def check_condition(
    container: str, key: str, current_etag: str | None, condition: Precondition
) -> None:
    """Raise ConcurrencyError unless ``condition`` allows a change of ``key`` now.

    ``current_etag`` is the stored version's ETag, None for a missing key (for ``CREATE``
    any other value means "exists", so an adapter need not compute the ETag to check it).
    One definition for every adapter that checks conditions itself.
    """
    if isinstance(condition, Update) and current_etag != condition.etag:
        raise ConcurrencyError(
            "key was changed or deleted since it was read", container=container, key=key
        )
    if isinstance(condition, Create) and current_etag is not None:
        raise ConcurrencyError("key already exists", container=container, key=key)


async def fold_levels(names: AsyncIterator[str], prefix: str) -> AsyncIterator[str]:
    """From names in sorted order, yield those directly below ``prefix`` and each deeper
    folder once (``prefix + "sub/"``), keeping the order sorted."""
    last_folder = None
    async for name in names:
        cut = name.find("/", len(prefix))
        if cut < 0:
            yield name
            continue
        folder = name[: cut + 1]
        if folder != last_folder:
            last_folder = folder
            yield folder
