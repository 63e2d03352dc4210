"""The conformance suite (asyncblobdict.testing): run on every adapter, and checked itself.

The suite is checked against a reference adapter written here from base.py's docstring
alone (it must pass every check), and against broken variants of it (each must fail the
checks named for it), so a check that cannot fail shows up here.
"""

from __future__ import annotations

import asyncio
import unittest
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import pytest

from asyncblobdict import (
    BlobNotFoundError,
    ConcurrencyError,
    InvalidKeyError,
    LocalFileAdapter,
    MemoryAdapter,
    StorageError,
)
from asyncblobdict.adapters.base import (
    CREATE,
    OVERWRITE,
    BlobInfo,
    Precondition,
    check_condition,
    check_delimiter,
    fold_levels,
    validate_metadata,
)
from asyncblobdict.keys import validate_folder_container
from asyncblobdict.testing import CHECKS, Check, ConformanceError, check_adapter
from tests.checkout import run_python

NAMES = [check.name for check in CHECKS]


# ------------------------------------------------------------------ a reference adapter


@dataclass(frozen=True)
class _Blob:
    data: bytes
    etag: str
    content_type: str | None
    metadata: Mapping[str, str]


class ReferenceAdapter:
    """Contract v2 exactly as base.py's docstring states it, over a dict.

    The small methods are seams for the broken variants below.
    """

    def __init__(self) -> None:
        self.containers: dict[str, dict[str, _Blob]] = {}
        self.generation = 0

    def validate_container(self, container: str) -> str:
        return validate_folder_container(container)

    def _info(self, key: str, blob: _Blob) -> BlobInfo:
        return BlobInfo(
            key,
            len(blob.data),
            blob.etag,
            content_type=blob.content_type,
            metadata=dict(blob.metadata),
        )

    def _blob(self, container: str, key: str) -> _Blob | None:
        return self.containers.get(container, {}).get(key)

    def _current(self, container: str, key: str) -> str | None:
        blob = self._blob(container, key)
        return None if blob is None else blob.etag

    async def get(self, container: str, key: str) -> tuple[bytes, BlobInfo]:
        blob = self._blob(container, key)
        if blob is None:
            raise BlobNotFoundError("key not found", container=container, key=key)
        return blob.data, self._info(key, blob)

    async def head(self, container: str, key: str) -> BlobInfo | None:
        blob = self._blob(container, key)
        return None if blob is None else self._info(key, blob)

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
        meta = self._metadata(metadata)
        self._check(container, key, condition)
        blobs = self.containers.setdefault(container, {})
        etag = self._new_etag(data)
        blobs[key] = _Blob(bytes(data), etag, content_type, meta)
        return etag

    def _metadata(self, metadata: Mapping[str, str] | None) -> Mapping[str, str]:
        return validate_metadata(metadata)

    def _check(self, container: str, key: str, condition: Precondition) -> None:
        check_condition(container, key, self._current(container, key), condition)

    def _new_etag(self, data: bytes) -> str:
        self.generation += 1
        return f'"{self.generation}"'

    async def delete(
        self, container: str, key: str, *, condition: Precondition = OVERWRITE
    ) -> None:
        self._check(container, key, condition)
        self.containers.get(container, {}).pop(key, None)

    def _keys(self, container: str, prefix: str) -> list[str]:
        return sorted(k for k in self.containers.get(container, {}) if k.startswith(prefix))

    def _order(self, keys: list[str]) -> list[str]:
        return keys  # the order list and list_names promise: sorted

    async def list(self, container: str, prefix: str = "") -> AsyncIterator[BlobInfo]:
        for key in self._order(self._keys(container, prefix)):
            blob = self._blob(container, key)
            if blob is not None:
                yield self._info(key, blob)

    async def list_names(
        self, container: str, prefix: str = "", *, delimiter: str | None = None
    ) -> AsyncIterator[str]:
        check_delimiter(delimiter)
        keys = self._keys(container, prefix)
        names = _aiter(self._order(keys)) if delimiter is None else self._fold(keys, prefix)
        async for name in names:
            yield name

    def _fold(self, keys: Sequence[str], prefix: str) -> AsyncIterator[str]:
        return fold_levels(_aiter(keys), prefix)

    async def close(self) -> None:
        pass


async def _aiter(items: Iterable[str]) -> AsyncIterator[str]:
    for item in items:
        yield item


# --------------------------------------------------------------------- broken variants
# Each has one fault; BROKEN below names the checks that must catch it.


class AcceptsAnyContainer(ReferenceAdapter):
    def validate_container(self, container: str) -> str:
        return container


class GetReturnsBytearray(ReferenceAdapter):
    async def get(self, container: str, key: str) -> tuple[bytes, BlobInfo]:
        data, info = await super().get(container, key)
        return bytearray(data), info  # type: ignore[return-value]


class ReadsEtagThenData(ReferenceAdapter):
    """Two reads where one is needed: a write in between pairs bytes with another ETag."""

    async def get(self, container: str, key: str) -> tuple[bytes, BlobInfo]:
        etag = self._current(container, key)
        await asyncio.sleep(0)
        data, info = await super().get(container, key)
        return data, replace(info, etag=etag)


class HeadRaisesWhenMissing(ReferenceAdapter):
    async def head(self, container: str, key: str) -> BlobInfo | None:
        return (await self.get(container, key))[1]


class StaleHeadEtag(ReferenceAdapter):
    """head reports the ETag of the version before the current one."""

    def __init__(self) -> None:
        super().__init__()
        self.previous: dict[tuple[str, str], str] = {}

    async def put(self, container: str, key: str, data: bytes, **kw: Any) -> str:
        old = self._current(container, key)
        etag = await super().put(container, key, data, **kw)
        self.previous[container, key] = old or etag
        return etag

    async def head(self, container: str, key: str) -> BlobInfo | None:
        info = await super().head(container, key)
        if info is None:
            return None
        return replace(info, etag=self.previous.get((container, key), info.etag))


class EtagFromSize(ReferenceAdapter):
    def _new_etag(self, data: bytes) -> str:
        return f'"{len(data)}"'


class DefaultsToCreate(ReferenceAdapter):
    async def put(self, container: str, key: str, data: bytes, **kw: Any) -> str:
        return await super().put(container, key, data, **{"condition": CREATE, **kw})


class IgnoresConditions(ReferenceAdapter):
    def _check(self, container: str, key: str, condition: Precondition) -> None:
        pass


class UpdateOfMissingKeyGoesAhead(ReferenceAdapter):
    def _check(self, container: str, key: str, condition: Precondition) -> None:
        if self._current(container, key) is not None:
            super()._check(container, key, condition)


class RemembersDeletedKeys(ReferenceAdapter):
    """CREATE is refused for a key that ever existed."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: set[tuple[str, str]] = set()

    async def put(self, container: str, key: str, data: bytes, **kw: Any) -> str:
        if kw.get("condition") == CREATE and (container, key) in self.seen:
            raise ConcurrencyError("exists", container=container, key=key)
        self.seen.add((container, key))
        return await super().put(container, key, data, **kw)


class DeleteOfMissingKeyRaises(ReferenceAdapter):
    async def delete(
        self, container: str, key: str, *, condition: Precondition = OVERWRITE
    ) -> None:
        if self._current(container, key) is None and condition == OVERWRITE:
            raise BlobNotFoundError("key not found", container=container, key=key)
        await super().delete(container, key, condition=condition)


class ChecksThenAwaits(ReferenceAdapter):
    """The condition is checked, then the write happens after an await: a race."""

    async def put(self, container: str, key: str, data: bytes, **kw: Any) -> str:
        self._check(container, key, kw.get("condition", OVERWRITE))
        await asyncio.sleep(0)
        return await super().put(container, key, data, **{**kw, "condition": OVERWRITE})


class DropsContentType(ReferenceAdapter):
    async def put(self, container: str, key: str, data: bytes, **kw: Any) -> str:
        return await super().put(container, key, data, **{**kw, "content_type": None})


class KeepsOldContentType(ReferenceAdapter):
    async def put(self, container: str, key: str, data: bytes, **kw: Any) -> str:
        old = self._blob(container, key)
        if kw.get("content_type") is None and old is not None:
            kw["content_type"] = old.content_type
        return await super().put(container, key, data, **kw)


class KeepsMetadataCase(ReferenceAdapter):
    def _metadata(self, metadata: Mapping[str, str] | None) -> Mapping[str, str]:
        validate_metadata(metadata)
        return dict(metadata or {})


class MergesMetadata(ReferenceAdapter):
    async def put(self, container: str, key: str, data: bytes, **kw: Any) -> str:
        old = self._blob(container, key)
        if old is not None:
            kw["metadata"] = {**old.metadata, **(kw.get("metadata") or {})}
        return await super().put(container, key, data, **kw)


class SkipsMetadataValidation(ReferenceAdapter):
    def _metadata(self, metadata: Mapping[str, str] | None) -> Mapping[str, str]:
        return {name.lower(): value for name, value in (metadata or {}).items()}


class PrefixMatchesWholeSegments(ReferenceAdapter):
    def _keys(self, container: str, prefix: str) -> list[str]:
        keys = super()._keys(container, prefix)
        if prefix and not prefix.endswith("/"):
            keys = [k for k in keys if k == prefix or k.startswith(prefix + "/")]
        return keys


class DecodesPlusInKeys(ReferenceAdapter):
    """Keys go through a form decoder: '+' becomes ' '."""

    async def put(self, container: str, key: str, data: bytes, **kw: Any) -> str:
        return await super().put(container, key.replace("+", " "), data, **kw)


class ListsInReverse(ReferenceAdapter):
    """Flat listings in reverse order (allowed with sorted_listing=False)."""

    def _order(self, keys: list[str]) -> list[str]:
        return keys[::-1]


class StopsAfterTwoPages(ReferenceAdapter):
    """Pages of 10 keys, and the continuation after the second page is lost."""

    def _keys(self, container: str, prefix: str) -> list[str]:
        return super()._keys(container, prefix)[:20]


class MissingContainerRaises(ReferenceAdapter):
    def _keys(self, container: str, prefix: str) -> list[str]:
        if container not in self.containers:
            raise BlobNotFoundError("no such container", container=container)
        return super()._keys(container, prefix)


class FoldsFolderPerKey(ReferenceAdapter):
    async def _fold(self, keys: Sequence[str], prefix: str) -> AsyncIterator[str]:
        for key in keys:
            cut = key.find("/", len(prefix))
            yield key if cut < 0 else key[: cut + 1]


class RefusesKeyAndKeySlashSub(ReferenceAdapter):
    """Like the local backend: ``a`` and ``a/b`` cannot both exist."""

    async def put(self, container: str, key: str, data: bytes, **kw: Any) -> str:
        for other in self.containers.get(container, {}):
            if other.startswith(key + "/") or key.startswith(other + "/"):
                raise StorageError("a file is in the way", container=container, key=key)
        return await super().put(container, key, data, **kw)


class CaseInsensitiveKeys(ReferenceAdapter):
    def _blob(self, container: str, key: str) -> _Blob | None:
        return super()._blob(container, key.lower())

    async def put(self, container: str, key: str, data: bytes, **kw: Any) -> str:
        return await super().put(container, key.lower(), data, **kw)


class RaisesKeyError(ReferenceAdapter):
    async def get(self, container: str, key: str) -> tuple[bytes, BlobInfo]:
        try:
            return await super().get(container, key)
        except BlobNotFoundError:
            raise KeyError(key) from None


class RefusesLongKeys(ReferenceAdapter):
    async def put(self, container: str, key: str, data: bytes, **kw: Any) -> str:
        if len(key) > 512:
            raise InvalidKeyError("key too long", container=container, key=key)
        return await super().put(container, key, data, **kw)


class EmptyValueIsDeleted(ReferenceAdapter):
    async def put(self, container: str, key: str, data: bytes, **kw: Any) -> str:
        etag = await super().put(container, key, data, **kw)
        if not data:
            await self.delete(container, key)
        return etag


class TruncatesLargeValues(ReferenceAdapter):
    async def put(self, container: str, key: str, data: bytes, **kw: Any) -> str:
        return await super().put(container, key, data[: 2 * 1024 * 1024], **kw)


class SecondCloseRaises(ReferenceAdapter):
    closed = False

    async def close(self) -> None:
        if self.closed:
            raise StorageError("already closed")
        self.closed = True


class StreamingReference(ReferenceAdapter):
    """The reference adapter with the optional streaming operations of base.py."""

    async def open_read(
        self, container: str, key: str, *, offset: int = 0, length: int | None = None
    ) -> tuple[BlobInfo, AsyncIterator[bytes]]:
        data, info = await self.get(container, key)
        end = len(data) if length is None else min(len(data), offset + length)
        return info, self._chunks(container, key, data, offset, end)

    async def _chunks(
        self, container: str, key: str, data: bytes, start: int, end: int
    ) -> AsyncIterator[bytes]:
        for pos in range(start, end, 1000):
            await asyncio.sleep(0)
            yield data[pos : min(end, pos + 1000)]

    async def put_stream(
        self,
        container: str,
        key: str,
        chunks: AsyncIterable[bytes | bytearray | memoryview],
        *,
        size: int | None = None,
        **kw: Any,
    ) -> str:
        data = b"".join([bytes(chunk) async for chunk in chunks])
        if size is not None and size != len(data):
            raise StorageError("wrong size", container=container, key=key)
        return await self.put(container, key, data, **kw)


class StreamDropsEmptyTail(StreamingReference):
    async def put_stream(self, container: str, key: str, chunks: Any, **kw: Any) -> str:
        parts = [bytes(chunk) async for chunk in chunks]
        return await self.put(container, key, b"".join(parts[:-1]), **kw)


class StreamKeepsWhatArrived(StreamingReference):
    async def put_stream(self, container: str, key: str, chunks: Any, **kw: Any) -> str:
        parts: list[bytes] = []
        try:
            async for chunk in chunks:
                parts.append(bytes(chunk))
        finally:
            kw.pop("size", None)
            etag = await self.put(container, key, b"".join(parts), **kw)
        return etag


class StreamIgnoresConditions(StreamingReference):
    async def put_stream(self, container: str, key: str, chunks: Any, **kw: Any) -> str:
        return await super().put_stream(container, key, chunks, **{**kw, "condition": OVERWRITE})


class StreamReadsLive(StreamingReference):
    """Each chunk comes from whatever is stored now."""

    async def _chunks(
        self, container: str, key: str, data: bytes, start: int, end: int
    ) -> AsyncIterator[bytes]:
        for pos in range(start, end, 1000):
            await asyncio.sleep(0)
            blob = self._blob(container, key)
            yield (blob.data if blob is not None else data)[pos : min(end, pos + 1000)]


class MetadataReference(ReferenceAdapter):
    """The reference adapter with the optional list_metadata of base.py."""

    async def list_metadata(
        self, container: str, prefix: str = "", *, delimiter: str | None = None
    ) -> AsyncIterator[tuple[str, Mapping[str, str]]]:
        async for name in self.list_names(container, prefix, delimiter=delimiter):
            info = None if name.endswith("/") else await self.head(container, name)
            yield name, ({} if info is None else info.metadata)


class MetadataListingDropsMetadata(MetadataReference):
    async def list_metadata(
        self, container: str, prefix: str = "", *, delimiter: str | None = None
    ) -> AsyncIterator[tuple[str, Mapping[str, str]]]:
        async for name, _ in super().list_metadata(container, prefix, delimiter=delimiter):
            yield name, {}


class MetadataListingIgnoresDelimiter(MetadataReference):
    async def list_metadata(
        self, container: str, prefix: str = "", *, delimiter: str | None = None
    ) -> AsyncIterator[tuple[str, Mapping[str, str]]]:
        async for entry in super().list_metadata(container, prefix):
            yield entry


async def failed_checks(make_adapter: Callable[[], Any], **options: Any) -> set[str]:
    try:
        await check_adapter(make_adapter, **options)
    except ConformanceError as exc:
        return set(exc.failures)
    return set()


# --------------------------------------------------------------------- the suite itself


async def test_reference_adapter_passes_every_check() -> None:
    await check_adapter(ReferenceAdapter, page_size=2)


BROKEN: dict[type[ReferenceAdapter], set[str]] = {
    AcceptsAnyContainer: {"validate_container"},
    GetReturnsBytearray: {"get_returns_bytes_and_info"},
    ReadsEtagThenData: {"get_is_atomic"},
    HeadRaisesWhenMissing: {"head_missing"},
    StaleHeadEtag: {"head_reports", "put_returns_new_etag", "put_update_current"},
    EtagFromSize: {"etag_changes_on_write"},
    DefaultsToCreate: {"put_overwrite"},
    IgnoresConditions: {
        "put_create_existing",
        "put_update_stale",
        "put_update_missing",
        "delete_update",
        "delete_create",
        "concurrent_create",
        "concurrent_update",
    },
    UpdateOfMissingKeyGoesAhead: {"put_update_missing", "delete_update"},
    RemembersDeletedKeys: {"put_create_missing"},
    DeleteOfMissingKeyRaises: {"delete_overwrite"},
    ChecksThenAwaits: {"concurrent_create", "concurrent_update"},
    DropsContentType: {"content_type_round_trip", "head_reports"},
    KeepsOldContentType: {"content_type_round_trip"},
    KeepsMetadataCase: {"metadata_round_trip"},
    MergesMetadata: {"metadata_replaced"},
    SkipsMetadataValidation: {"metadata_refused"},
    PrefixMatchesWholeSegments: {"list_prefix_mid_segment"},
    DecodesPlusInKeys: {"list_odd_keys"},
    ListsInReverse: {"list_order", "list_every_key", "list_names_flat"},
    StopsAfterTwoPages: {"list_paging"},
    MissingContainerRaises: {"list_missing_container"},
    FoldsFolderPerKey: {"list_names_delimiter"},
    RefusesKeyAndKeySlashSub: {"key_and_key_slash_sub"},
    CaseInsensitiveKeys: {"keys_case_sensitive"},
    RaisesKeyError: {"get_missing_raises_not_found", "missing_key_shapes"},
    RefusesLongKeys: {"long_key"},
    EmptyValueIsDeleted: {"empty_value"},
    TruncatesLargeValues: {"large_value"},
    SecondCloseRaises: {"close_twice"},
}


BROKEN.update(
    {
        StreamDropsEmptyTail: {"stream_round_trip"},
        StreamKeepsWhatArrived: {"stream_failure_stores_nothing"},
        StreamIgnoresConditions: {"stream_conditions"},
        StreamReadsLive: {"stream_read_one_version"},
        MetadataListingDropsMetadata: {"list_metadata_matches"},
        MetadataListingIgnoresDelimiter: {"list_metadata_matches"},
    }
)


async def test_metadata_listing_reference_passes_every_check() -> None:
    await check_adapter(MetadataReference, page_size=2)


async def test_streaming_reference_passes_every_check() -> None:
    await check_adapter(StreamingReference, page_size=2)


@pytest.mark.parametrize(("broken", "caught_by"), BROKEN.items(), ids=[b.__name__ for b in BROKEN])
async def test_broken_adapters_fail_the_checks_for_their_fault(
    broken: Callable[[], Any], caught_by: set[str]
) -> None:
    failed = await failed_checks(broken, page_size=10)
    assert caught_by <= failed, f"not caught by {caught_by - failed}"


def test_every_check_catches_one_of_the_broken_adapters() -> None:
    assert set().union(*BROKEN.values()) == set(NAMES)


async def test_options_state_what_the_backend_promises() -> None:
    # Backend order: any order passes, as long as each key comes once.
    assert await failed_checks(ListsInReverse, sorted_listing=False) == set()
    # The local backend's limit: expected there, a failure where a and a/b must coexist.
    assert await failed_checks(RefusesKeyAndKeySlashSub, supports_a_and_a_slash_b=False) == set()
    assert "key_and_key_slash_sub" in await failed_checks(
        ReferenceAdapter, supports_a_and_a_slash_b=False
    )


async def test_failures_name_the_check_and_its_rule() -> None:
    check = next(c for c in CHECKS if c.name == "metadata_replaced")
    with pytest.raises(ConformanceError) as info:
        await check(MergesMetadata)
    message = str(info.value)
    assert "metadata_replaced" in message and check.rule in message
    assert "{'a': '1', 'b': '2', 'c': '3'}" in message


async def test_an_unexpected_exception_fails_the_check() -> None:
    class RawOSError(ReferenceAdapter):
        async def head(self, container: str, key: str) -> BlobInfo | None:
            raise FileNotFoundError(key)

    failed = await failed_checks(RawOSError)
    assert "head_missing" in failed


async def test_a_check_that_does_not_apply_is_skipped() -> None:
    paging = next(c for c in CHECKS if c.name == "list_paging")
    with pytest.raises(unittest.SkipTest):
        await paging(ReferenceAdapter)  # no page_size given
    await paging(ReferenceAdapter, page_size=3)


async def test_a_check_that_hangs_fails_on_its_timeout() -> None:
    class Hangs(ReferenceAdapter):
        async def close(self) -> None:
            await asyncio.sleep(3600)

    close_twice = next(c for c in CHECKS if c.name == "close_twice")
    with pytest.raises(ConformanceError, match=r"did not finish within 0\.2 s"):
        await close_twice(Hangs, timeout=0.2)


def test_check_names_are_unique_and_every_check_is_named() -> None:
    assert len(set(NAMES)) == len(NAMES) >= 30
    assert all(isinstance(c, Check) and c.rule for c in CHECKS)


def test_the_suite_is_standard_library_only_and_not_imported_by_the_package() -> None:
    code = (
        "import sys\n"
        "import asyncblobdict\n"
        "assert 'asyncblobdict.testing' not in sys.modules\n"
        "before = set(sys.modules)\n"
        "import asyncblobdict.testing\n"
        "new = {m.split('.')[0] for m in set(sys.modules) - before} - {'asyncblobdict'}\n"
        "print(sorted(m for m in new if m not in sys.stdlib_module_names))\n"
    )
    out = run_python(code, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


# ------------------------------------------------------------------ the real adapters


@pytest.mark.parametrize("check", CHECKS, ids=str)
async def test_memory_adapter(check: Check) -> None:
    await check(MemoryAdapter)


@pytest.mark.parametrize("check", CHECKS, ids=str)
@pytest.mark.parametrize("records", ["auto", "sidecar"])
async def test_local_adapter(
    check: Check, tmp_path: Path, records: Literal["auto", "sidecar"]
) -> None:
    # Both ways the local backend keeps content type, metadata and the ETag with a file.
    await check(
        lambda: LocalFileAdapter(tmp_path / "store", _metadata_store=records),
        supports_a_and_a_slash_b=False,
    )


@pytest.mark.azure
@pytest.mark.parametrize("check", CHECKS, ids=str)
async def test_azure_adapter(check: Check, azurite: Any) -> None:
    # Azurite lists in its own order (folders first within a page, UTF-16 order); the
    # store sorts what it lists, so the adapter promises only "each name once".
    await check(lambda: azurite.new_adapter(list_page_size=2), page_size=2, sorted_listing=False)
