"""Conformance suite for adapters: checks every rule of the adapter contract v2.

Run it against an adapter of yours (it imports the standard library only, and no test
framework)::

    await check_adapter(MyAdapter)                     # every check; AssertionError if any fails

or one test per rule with pytest::

    @pytest.mark.parametrize("check", CHECKS, ids=str)
    def test_my_adapter(check):
        asyncio.run(check(MyAdapter))

``make_adapter`` is called once per check and returns a new adapter (or an awaitable of
one); the check works in a fresh container of its own, deletes what it wrote and closes
the adapter. Options (see :class:`Options`) state what the backend promises where the
contract lets backends differ: listing order, whether ``a`` and ``a/b`` can both exist,
whether keys are case-sensitive, and a small page size to exercise paging with.

A failure raises :class:`ConformanceError` (an AssertionError) naming each failed check and
its rule. Any exception other than an AssertionError raised by the adapter fails the check
too (the contract allows only asyncblobdict's errors). A check that does not apply to the
backend raises :class:`unittest.SkipTest`, which pytest reports as a skip.
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import os
import unittest
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextlib import suppress
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, NoReturn, TypeVar

from .adapters.base import (
    CREATE,
    OVERWRITE,
    Adapter,
    BlobInfo,
    MetadataListingAdapter,
    Precondition,
    StreamingAdapter,
    Update,
)
from .errors import (
    AsyncBlobDictError,
    BlobNotFoundError,
    ConcurrencyError,
    InvalidKeyError,
    StorageError,
)

__all__ = [
    "BAD_CONTAINERS",
    "CHECKS",
    "AdapterFactory",
    "Check",
    "ConformanceError",
    "Context",
    "Options",
    "check_adapter",
    "new_container_name",
]

AdapterFactory = Callable[[], "Adapter | Awaitable[Adapter]"]
"""Returns a new adapter (or an awaitable of one); called once per check."""

BAD_CONTAINERS = ("", ".", "..", "a/b", "a\\b", "with space", "nul\x00", "x" * 300)
"""Container names no backend accepts."""

UNSET_CONTENT_TYPES = (None, "application/octet-stream")
"""What ``head`` may report for a value written without a content type (Azure's default)."""

CONCURRENT_WRITERS = 10

_E = TypeVar("_E", bound=BaseException)


def new_container_name() -> str:
    """A fresh container name that every built-in backend accepts."""
    return "t" + uuid.uuid4().hex[:20]


@dataclass(frozen=True)
class Options:
    """What the backend promises where the contract lets backends differ.

    - ``container_factory``: returns a fresh container name the adapter accepts.
    - ``sorted_listing``: ``list`` and ``list_names`` yield keys sorted as Python sorts str
      (False: in some backend order, each key once).
    - ``page_size``: the adapter's listing page size, when it was made small (e.g. 2);
      the paging check writes ``2 * page_size + 1`` keys. None skips that check.
    - ``case_sensitive_keys``: ``Key`` and ``key`` are different keys.
    - ``supports_a_and_a_slash_b``: ``a`` and ``a/b`` can both exist (Azure, memory); if
      False (local files), writing one while the other exists must raise StorageError and
      leave the stored value untouched.
    - ``good_containers`` / ``bad_containers``: more names ``validate_container`` must
      accept / refuse with InvalidKeyError.
    - ``large_size``: bytes of the large value that must round-trip exactly.
    - ``timeout``: seconds one check may take (None: no limit).
    """

    container_factory: Callable[[], str] = new_container_name
    sorted_listing: bool = True
    page_size: int | None = None
    case_sensitive_keys: bool = True
    supports_a_and_a_slash_b: bool = True
    good_containers: tuple[str, ...] = ()
    bad_containers: tuple[str, ...] = BAD_CONTAINERS
    large_size: int = 3 * 1024 * 1024 + 17
    timeout: float | None = 120.0


@dataclass
class Context:
    """What a check works with: the adapter under test and a fresh container."""

    adapter: Adapter
    container: str
    options: Options
    make_adapter: AdapterFactory
    containers: list[str] = field(default_factory=list)

    def new_container(self) -> str:
        """Another fresh container (cleaned up after the check like the first)."""
        name = self.options.container_factory()
        self.containers.append(name)
        return name


class ConformanceError(AssertionError):
    """One or more checks failed; ``failures`` maps each check's name to what went wrong."""

    def __init__(self, failures: Mapping[str, str], total: int) -> None:
        self.failures = dict(failures)
        lines = [f"- {name}: {detail}" for name, detail in self.failures.items()]
        super().__init__(
            f"{len(self.failures)} of {total} adapter conformance checks failed:\n"
            + "\n".join(lines)
        )


@dataclass(frozen=True)
class Check:
    """One rule of the contract and the code that checks it.

    ``await check(make_adapter, **options)`` runs it alone (``options`` as in
    :class:`Options`); ``str(check)`` is its name, for pytest ids.
    """

    name: str
    rule: str
    run: Callable[[Context], Awaitable[None]] = field(repr=False)

    def __str__(self) -> str:
        return self.name

    async def __call__(self, make_adapter: AdapterFactory, **options: Any) -> None:
        failure = await _run(self, make_adapter, Options(**options))
        if failure is not None:
            raise ConformanceError({self.name: failure[0]}, 1).with_traceback(failure[1])


async def check_adapter(
    make_adapter: AdapterFactory, *, checks: Iterable[Check] | None = None, **options: Any
) -> None:
    """Run every check (or ``checks``) against adapters from ``make_adapter``.

    ``options`` are the fields of :class:`Options`. Raises ConformanceError naming every
    check that failed; checks that do not apply to the backend are skipped.
    """
    opts = Options(**options)
    selected = list(CHECKS if checks is None else checks)
    failures: dict[str, str] = {}
    for check in selected:
        try:
            failure = await _run(check, make_adapter, opts)
        except unittest.SkipTest:
            continue
        if failure is not None:
            failures[check.name] = failure[0]
    if failures:
        raise ConformanceError(failures, len(selected))


async def _run(
    check: Check, make_adapter: AdapterFactory, options: Options
) -> tuple[str, TracebackType | None] | None:
    """Run one check; return (what failed, where), or None if it passed."""
    made = make_adapter()
    adapter: Adapter = await made if inspect.isawaitable(made) else made
    container = options.container_factory()
    ctx = Context(adapter, container, options, make_adapter, [container])
    task = asyncio.ensure_future(check.run(ctx))
    try:
        await asyncio.wait({task}, timeout=options.timeout)
    finally:
        if not task.done():
            task.cancel()
            await asyncio.wait({task})
        await _clean_up(ctx)
    if task.cancelled():
        return f"{check.rule}: did not finish within {options.timeout} s", None
    exc = task.exception()
    if exc is None:
        return None
    if isinstance(exc, unittest.SkipTest):
        raise exc
    if isinstance(exc, AssertionError):
        return f"{check.rule}: {exc}", exc.__traceback__
    kind = "" if isinstance(exc, AsyncBlobDictError) else " (not an asyncblobdict error)"
    return f"{check.rule}: unexpected {type(exc).__name__}{kind}: {exc}", exc.__traceback__


async def _clean_up(ctx: Context) -> None:
    """Delete what the check wrote (best effort), then close the adapter."""

    async def clean() -> None:
        for container in ctx.containers:
            with suppress(Exception):
                keys = [info.key async for info in ctx.adapter.list(container)]
                for key in keys:
                    await ctx.adapter.delete(container, key)
        with suppress(Exception):
            await ctx.adapter.close()

    with suppress(Exception):
        await asyncio.wait_for(clean(), ctx.options.timeout or 60)


# ----------------------------------------------------------------------------- helpers


def _fail(detail: str) -> NoReturn:
    raise AssertionError(detail)


def _equal(actual: object, expected: object, what: str) -> None:
    if actual != expected:
        _fail(f"{what}: expected {expected!r}, got {actual!r}")


def _same_bytes(actual: bytes, expected: bytes, what: str) -> None:
    if actual == expected:
        return
    if len(actual) < 80 and len(expected) < 80:
        _fail(f"{what}: expected {expected!r}, got {actual!r}")
    at = next((i for i, (a, b) in enumerate(zip(actual, expected, strict=False)) if a != b), None)
    where = f"first difference at byte {at}" if at is not None else "one is a prefix"
    _fail(f"{what}: expected {len(expected)} bytes, got {len(actual)} ({where})")


async def _raises(kind: type[_E], what: str, operation: Awaitable[object]) -> _E:
    try:
        result = await operation
    except kind as exc:
        return exc
    except Exception as exc:
        _fail(f"{what}: expected {kind.__name__}, got {type(exc).__name__}: {exc}")
    _fail(f"{what}: expected {kind.__name__}, but it returned {result!r}")


def _md5(data: bytes) -> bytes:
    return hashlib.md5(data, usedforsecurity=False).digest()


def _check_info(info: object, key: str, what: str) -> BlobInfo:
    if not isinstance(info, BlobInfo):
        _fail(f"{what} must give a BlobInfo, got {type(info).__name__}: {info!r}")
    _equal(info.key, key, f"{what}: BlobInfo.key")
    if not isinstance(info.size, int) or info.size < 0:
        _fail(f"{what}: BlobInfo.size must be an int >= 0, got {info.size!r}")
    if info.etag is not None and (not isinstance(info.etag, str) or not info.etag):
        _fail(f"{what}: BlobInfo.etag must be a non-empty str or None, got {info.etag!r}")
    if not isinstance(info.metadata, Mapping):
        _fail(f"{what}: BlobInfo.metadata must be a mapping, got {info.metadata!r}")
    upper = [name for name in info.metadata if name != name.lower()]
    if upper:
        _fail(f"{what}: metadata names must be in lower case, got {upper}")
    return info


async def _put(
    ctx: Context,
    key: str,
    data: bytes,
    *,
    container: str | None = None,
    condition: Precondition = OVERWRITE,
    content_type: str | None = None,
    metadata: Mapping[str, str] | None = None,
) -> str:
    etag = await ctx.adapter.put(
        container or ctx.container,
        key,
        data,
        condition=condition,
        content_type=content_type,
        metadata=metadata,
    )
    if not isinstance(etag, str) or not etag:
        _fail(f"put({key!r}) must return the new ETag (a non-empty str), got {etag!r}")
    return etag


async def _get(ctx: Context, key: str, container: str | None = None) -> tuple[bytes, BlobInfo]:
    result = await ctx.adapter.get(container or ctx.container, key)
    if not isinstance(result, tuple) or len(result) != 2:
        _fail(f"get({key!r}) must return (bytes, BlobInfo), got {result!r}")
    data, info = result
    if type(data) is not bytes:
        _fail(f"get({key!r}) must return bytes, got {type(data).__name__}")
    info = _check_info(info, key, f"get({key!r})")
    _equal(info.size, len(data), f"get({key!r}): BlobInfo.size")
    if info.etag is None:
        _fail(f"get({key!r}): BlobInfo.etag must be the ETag of the bytes read, got None")
    if info.content_md5 is not None:
        _equal(info.content_md5, _md5(data), f"get({key!r}): BlobInfo.content_md5")
    return data, info


async def _head(ctx: Context, key: str, container: str | None = None) -> BlobInfo | None:
    info = await ctx.adapter.head(container or ctx.container, key)
    if info is None:
        return None
    info = _check_info(info, key, f"head({key!r})")
    if info.etag is None:
        _fail(f"head({key!r}): BlobInfo.etag must be the stored ETag, got None")
    return info


async def _list(ctx: Context, prefix: str = "", container: str | None = None) -> list[BlobInfo]:
    items = []
    async for info in ctx.adapter.list(container or ctx.container, prefix):
        if not isinstance(info, BlobInfo):
            _fail(f"list must yield BlobInfo, got {type(info).__name__}: {info!r}")
        items.append(_check_info(info, info.key, f"list({prefix!r})"))
    return items


async def _names(
    ctx: Context, prefix: str = "", delimiter: str | None = None, container: str | None = None
) -> list[str]:
    names = []
    source = ctx.adapter.list_names(container or ctx.container, prefix, delimiter=delimiter)
    async for name in source:
        if not isinstance(name, str):
            _fail(f"list_names must yield str, got {type(name).__name__}: {name!r}")
        names.append(name)
    return names


async def _level(ctx: Context, prefix: str) -> list[str]:
    """One level of names below ``prefix``: checked for order and duplicates, then sorted."""
    names = await _names(ctx, prefix, "/")
    _order(names, f"list_names({prefix!r}, delimiter='/')", ctx.options.sorted_listing)
    return sorted(names)


@dataclass(frozen=True)
class _State:
    data: bytes
    etag: str | None
    content_type: str | None
    metadata: dict[str, str]


async def _state(ctx: Context, key: str, container: str | None = None) -> _State | None:
    """The stored value as head and get see it; None when missing (both must agree)."""
    info = await _head(ctx, key, container)
    if info is None:
        await _raises(
            BlobNotFoundError, f"get({key!r}) after head said missing", _get(ctx, key, container)
        )
        return None
    data, got = await _get(ctx, key, container)
    _equal(got.etag, info.etag, f"ETag of get({key!r}) vs head")
    _equal(info.size, len(data), f"head({key!r}).size")
    # A backend may report its default type (Azure: application/octet-stream) for "none".
    content_type = None if info.content_type in UNSET_CONTENT_TYPES else info.content_type
    return _State(data, info.etag, content_type, dict(info.metadata))


async def _unchanged(ctx: Context, key: str, before: _State | None, what: str) -> None:
    after = await _state(ctx, key)
    if after != before:
        _fail(f"{what} changed what is stored: before {before!r}, after {after!r}")


async def _put_many(ctx: Context, keys: Iterable[str]) -> dict[str, bytes]:
    """Write each key with a value of its own (sizes differ); return key -> value."""
    values = {key: f"{i}:{key}".encode() * (i % 3 + 1) for i, key in enumerate(keys)}
    for key, data in values.items():
        await _put(ctx, key, data)
    return values


def _order(names: list[str], what: str, sorted_listing: bool) -> None:
    if len(set(names)) != len(names):
        dupes = sorted({n for n in names if names.count(n) > 1})
        _fail(f"{what} yielded keys more than once: {dupes}")
    if sorted_listing and names != sorted(names):
        _fail(f"{what} must be sorted (as Python sorts str): got {names}")


async def _listing_is(
    ctx: Context, prefix: str, expected: Mapping[str, bytes], container: str | None = None
) -> None:
    """list and list_names (flat) give exactly ``expected``'s keys, with sizes and order."""
    infos = await _list(ctx, prefix, container)
    keys = [info.key for info in infos]
    _order(keys, f"list({prefix!r})", ctx.options.sorted_listing)
    _equal(sorted(keys), sorted(expected), f"keys of list({prefix!r})")
    for info in infos:
        _equal(info.size, len(expected[info.key]), f"list({prefix!r}) size of {info.key!r}")
        if info.content_md5 is not None:
            _equal(info.content_md5, _md5(expected[info.key]), f"list: md5 of {info.key!r}")
    names = await _names(ctx, prefix, container=container)
    _order(names, f"list_names({prefix!r})", ctx.options.sorted_listing)
    _equal(sorted(names), sorted(expected), f"list_names({prefix!r})")


# ------------------------------------------------------------------------------ checks

_REGISTRY: list[Check] = []


def _check(rule: str) -> Callable[[Callable[[Context], Awaitable[None]]], Check]:
    def register(func: Callable[[Context], Awaitable[None]]) -> Check:
        check = Check(func.__name__, rule, func)
        _REGISTRY.append(check)
        return check

    return register


@_check("validate_container returns good names, raises InvalidKeyError for bad ones, no I/O")
async def validate_container(ctx: Context) -> None:
    good = [ctx.container, ctx.options.container_factory(), *ctx.options.good_containers]
    for name in good:
        result: object = ctx.adapter.validate_container(name)
        if inspect.isawaitable(result):
            with suppress(Exception):
                await result
            _fail("validate_container must be a plain method (no I/O), not a coroutine")
        _equal(result, name, f"validate_container({name!r})")
    for name in ctx.options.bad_containers:
        try:
            ctx.adapter.validate_container(name)
        except InvalidKeyError:
            continue
        except Exception as exc:
            _fail(f"validate_container({name!r}) raised {type(exc).__name__}, not InvalidKeyError")
        _fail(f"validate_container({name!r}) accepted a bad name")


@_check("get returns the bytes and a BlobInfo whose ETag is the ETag of those bytes")
async def get_returns_bytes_and_info(ctx: Context) -> None:
    data = b"hello \x00\xff world"
    meta = {"kind": "greeting"}
    etag = await _put(ctx, "greeting", data, content_type="text/plain", metadata=meta)
    got, info = await _get(ctx, "greeting")
    _same_bytes(got, data, "get('greeting')")
    _equal(info.etag, etag, "get('greeting').etag (the ETag put returned)")
    # get may leave out content type and metadata; what it does report must be right.
    if info.content_type is not None:
        _equal(info.content_type, "text/plain", "get('greeting').content_type")
    if info.metadata:
        _equal(dict(info.metadata), meta, "get('greeting').metadata")


@_check("a get racing writes returns bytes and ETag of one same version")
async def get_is_atomic(ctx: Context) -> None:
    versions: dict[str, bytes] = {}
    reads: list[tuple[bytes, str | None]] = []
    done = asyncio.Event()

    async def write() -> None:
        try:
            for i in range(20):
                data = bytes([i]) * (1000 * (i % 5) + i + 1)
                versions[await _put(ctx, "racy", data)] = data
                await asyncio.sleep(0)
        finally:
            done.set()

    async def read() -> None:
        while not done.is_set():
            with suppress(BlobNotFoundError):  # before the first write lands
                data, info = await _get(ctx, "racy")
                reads.append((data, info.etag))
            await asyncio.sleep(0)

    await asyncio.gather(write(), read(), read())
    data, info = await _get(ctx, "racy")
    reads.append((data, info.etag))
    for data, etag in reads:
        if etag not in versions:
            _fail(f"get returned ETag {etag!r}, which no put returned")
        _same_bytes(data, versions[etag], f"bytes get returned with ETag {etag!r}")


@_check("head of a missing key or container is None")
async def head_missing(ctx: Context) -> None:
    _equal(await _head(ctx, "missing"), None, "head of a missing key")
    await _put(ctx, "present", b"x")
    _equal(await _head(ctx, "missing"), None, "head of a missing key beside another")
    _equal(await _head(ctx, "missing", ctx.new_container()), None, "head in a missing container")


@_check("head returns key, size, ETag, content type and metadata of the current value")
async def head_reports(ctx: Context) -> None:
    await _put(ctx, "doc", b"an older version", content_type="text/old", metadata={"v": "0"})
    data = b"0123456789" * 7
    etag = await _put(ctx, "doc", data, content_type="application/x-test", metadata={"v": "1"})
    info = await _head(ctx, "doc")
    if info is None:
        _fail("head of a stored key returned None")
    _equal(info.size, len(data), "head.size")
    _equal(info.etag, etag, "head.etag (the ETag put returned)")
    _equal(info.content_type, "application/x-test", "head.content_type")
    _equal(dict(info.metadata), {"v": "1"}, "head.metadata")
    if info.content_md5 is not None:
        _equal(info.content_md5, _md5(data), "head.content_md5")


@_check("put returns the new ETag, which head and get then report")
async def put_returns_new_etag(ctx: Context) -> None:
    for i, data in enumerate([b"first", b"second value", b"third"]):
        etag = await _put(ctx, "k", data)
        state = await _state(ctx, "k")
        _equal(state and state.etag, etag, f"ETag head and get report after put #{i + 1}")
        _equal(state and state.data, data, f"value after put #{i + 1}")


@_check("every write of different bytes changes the ETag")
async def etag_changes_on_write(ctx: Context) -> None:
    etags = [await _put(ctx, "k", data) for data in (b"a", b"b", b"a", b"", b"a")]
    for i in range(1, len(etags)):
        if etags[i] == etags[i - 1]:
            _fail(f"writes #{i} and #{i + 1} of different bytes gave one ETag {etags[i]!r}")


@_check("put with OVERWRITE creates the container and key, then replaces the value")
async def put_overwrite(ctx: Context) -> None:
    first = await _put(ctx, "k", b"one", condition=OVERWRITE)
    _equal(await _state(ctx, "k"), _State(b"one", first, None, {}), "after the first put")
    second = await ctx.adapter.put(ctx.container, "k", b"two")  # OVERWRITE is the default
    state = await _state(ctx, "k")
    _equal(state and (state.data, state.etag), (b"two", second), "after the second put")


@_check("put with CREATE stores a missing key (also one deleted before)")
async def put_create_missing(ctx: Context) -> None:
    etag = await _put(ctx, "k", b"new", condition=CREATE)
    state = await _state(ctx, "k")
    _equal(state and (state.data, state.etag), (b"new", etag), "after put with CREATE")
    await ctx.adapter.delete(ctx.container, "k")
    etag = await _put(ctx, "k", b"again", condition=CREATE)
    state = await _state(ctx, "k")
    _equal(state and (state.data, state.etag), (b"again", etag), "after re-creating")


@_check("put with CREATE on an existing key raises ConcurrencyError and changes nothing")
async def put_create_existing(ctx: Context) -> None:
    await _put(ctx, "k", b"old", content_type="text/old", metadata={"v": "old"})
    before = await _state(ctx, "k")
    await _raises(
        ConcurrencyError,
        "put with CREATE on an existing key",
        _put(ctx, "k", b"new", condition=CREATE, content_type="text/new", metadata={"v": "2"}),
    )
    await _unchanged(ctx, "k", before, "a refused put with CREATE")


@_check("put with Update(current ETag) writes and returns a new ETag")
async def put_update_current(ctx: Context) -> None:
    etag = await _put(ctx, "k", b"v1")
    for data in (b"v2", b"v3"):
        new = await _put(ctx, "k", data, condition=Update(etag))
        if new == etag:
            _fail("put with Update returned the ETag it was conditioned on")
        state = await _state(ctx, "k")
        _equal(state and (state.data, state.etag), (data, new), "after put with Update")
        etag = new


@_check("put with Update(stale ETag) raises ConcurrencyError and changes nothing")
async def put_update_stale(ctx: Context) -> None:
    stale = await _put(ctx, "k", b"v1")
    await _put(ctx, "k", b"v2", content_type="text/v2", metadata={"v": "2"})
    before = await _state(ctx, "k")
    await _raises(
        ConcurrencyError,
        "put with Update(stale ETag)",
        _put(ctx, "k", b"v3", condition=Update(stale), content_type="text/v3"),
    )
    await _unchanged(ctx, "k", before, "a refused put with Update(stale ETag)")


@_check("put with Update on a missing key (or container) raises ConcurrencyError, writes nothing")
async def put_update_missing(ctx: Context) -> None:
    old = await _put(ctx, "k", b"v1")
    await ctx.adapter.delete(ctx.container, "k")
    await _raises(
        ConcurrencyError,
        "put with Update on a deleted key",
        _put(ctx, "k", b"v2", condition=Update(old)),
    )
    _equal(await _state(ctx, "k"), None, "a deleted key after a refused put with Update")
    other = ctx.new_container()
    await _raises(
        ConcurrencyError,
        "put with Update in a missing container",
        _put(ctx, "k", b"v2", container=other, condition=Update(old)),
    )
    _equal(await _head(ctx, "k", other), None, "head after a refused put in a missing container")


@_check("delete with OVERWRITE removes the key; a missing key or container is a no-op")
async def delete_overwrite(ctx: Context) -> None:
    await _put(ctx, "k", b"v")
    await _put(ctx, "other", b"w")
    other = await _state(ctx, "other")
    await ctx.adapter.delete(ctx.container, "k")
    _equal(await _state(ctx, "k"), None, "a deleted key")
    await _listing_is(ctx, "", {"other": b"w"})
    await ctx.adapter.delete(ctx.container, "k", condition=OVERWRITE)
    await ctx.adapter.delete(ctx.new_container(), "k")
    await _unchanged(ctx, "other", other, "deleting the key beside it")


@_check("delete with Update: current ETag deletes; stale or missing raises ConcurrencyError")
async def delete_update(ctx: Context) -> None:
    stale = await _put(ctx, "k", b"v1")
    current = await _put(ctx, "k", b"v2", metadata={"v": "2"})
    before = await _state(ctx, "k")
    await _raises(
        ConcurrencyError,
        "delete with Update(stale ETag)",
        ctx.adapter.delete(ctx.container, "k", condition=Update(stale)),
    )
    await _unchanged(ctx, "k", before, "a refused delete with Update(stale ETag)")
    await ctx.adapter.delete(ctx.container, "k", condition=Update(current))
    _equal(await _state(ctx, "k"), None, "a key deleted with Update(current ETag)")
    await _raises(
        ConcurrencyError,
        "delete with Update on a missing key",
        ctx.adapter.delete(ctx.container, "k", condition=Update(current)),
    )
    await _raises(
        ConcurrencyError,
        "delete with Update in a missing container",
        ctx.adapter.delete(ctx.new_container(), "k", condition=Update(current)),
    )


@_check("delete with CREATE: no-op when absent, ConcurrencyError (nothing deleted) when present")
async def delete_create(ctx: Context) -> None:
    await ctx.adapter.delete(ctx.container, "k", condition=CREATE)
    _equal(await _state(ctx, "k"), None, "a missing key after delete with CREATE")
    await ctx.adapter.delete(ctx.new_container(), "k", condition=CREATE)
    await _put(ctx, "k", b"v1", metadata={"v": "1"})
    before = await _state(ctx, "k")
    await _raises(
        ConcurrencyError,
        "delete with CREATE of an existing key",
        ctx.adapter.delete(ctx.container, "k", condition=CREATE),
    )
    await _unchanged(ctx, "k", before, "a refused delete with CREATE")


@_check("content_type round-trips and a later put replaces it (none given: none kept)")
async def content_type_round_trip(ctx: Context) -> None:
    for content_type in ("application/json; charset=utf-8", "text/plain"):
        await _put(ctx, "k", content_type.encode(), content_type=content_type)
        info = await _head(ctx, "k")
        _equal(info and info.content_type, content_type, "head.content_type after put")
    await _put(ctx, "k", b"no type")
    info = await _head(ctx, "k")
    if info is None or info.content_type not in UNSET_CONTENT_TYPES:
        _fail(
            "a put without content_type must replace the old one: head.content_type must be "
            f"one of {UNSET_CONTENT_TYPES}, got {info and info.content_type!r}"
        )


@_check("metadata round-trips with names in lower case")
async def metadata_round_trip(ctx: Context) -> None:
    meta = {"Author": "Ada Lovelace", "run_ID": "42", "note": "a=b; c:d/e?f&g"}
    expected = {"author": "Ada Lovelace", "run_id": "42", "note": "a=b; c:d/e?f&g"}
    await _put(ctx, "k", b"v", metadata=meta)
    info = await _head(ctx, "k")
    _equal(info and dict(info.metadata), expected, "head.metadata")
    _, got = await _get(ctx, "k")
    if got.metadata:
        _equal(dict(got.metadata), expected, "get's BlobInfo.metadata")


@_check("a later put replaces the metadata (never merges it)")
async def metadata_replaced(ctx: Context) -> None:
    await _put(ctx, "k", b"v1", metadata={"a": "1", "b": "2"})
    await _put(ctx, "k", b"v2", metadata={"c": "3"})
    info = await _head(ctx, "k")
    _equal(info and dict(info.metadata), {"c": "3"}, "head.metadata after a second put")
    await _put(ctx, "k", b"v3")
    info = await _head(ctx, "k")
    _equal(info and dict(info.metadata), {}, "head.metadata after a put without metadata")


_BAD_METADATA: tuple[dict[str, str], ...] = (
    {"1st": "x"},
    {"with-dash": "x"},
    {"sp ace": "x"},
    {"": "x"},
    {"ok": "line\nbreak"},
    {"ok": "caf\u00e9"},
    {"ok": " padded"},
    {"Name": "1", "name": "2"},
)


@_check("put refuses metadata validate_metadata refuses (InvalidKeyError), writing nothing")
async def metadata_refused(ctx: Context) -> None:
    await _put(ctx, "k", b"v", metadata={"v": "1"})
    before = await _state(ctx, "k")
    for bad in _BAD_METADATA:
        await _raises(
            InvalidKeyError, f"put with metadata {bad!r}", _put(ctx, "k", b"x", metadata=bad)
        )
        await _unchanged(ctx, "k", before, f"a put with metadata {bad!r}")
        await _raises(
            InvalidKeyError,
            f"put of a new key with metadata {bad!r}",
            _put(ctx, "new", b"x", metadata=bad),
        )
        _equal(await _state(ctx, "new"), None, f"a new key put with metadata {bad!r}")


@_check("list yields every key with the prefix, with its size (ETag, if given, current)")
async def list_every_key(ctx: Context) -> None:
    values = await _put_many(ctx, ["p/one", "p/two/three", "p/two/four", "pz", "q/one"])
    await _listing_is(ctx, "", values)
    await _listing_is(ctx, "p/", {k: v for k, v in values.items() if k.startswith("p/")})
    await _listing_is(ctx, "nothing", {})
    for info in await _list(ctx):
        head = await _head(ctx, info.key)
        if info.etag is not None:
            _equal(info.etag, head and head.etag, f"list: ETag of {info.key!r}")
        if info.metadata:
            _equal(
                dict(info.metadata), head and dict(head.metadata), f"list: metadata of {info.key!r}"
            )


@_check("a prefix may end in the middle of a segment")
async def list_prefix_mid_segment(ctx: Context) -> None:
    values = await _put_many(ctx, ["dir/file1", "dir/file2", "dir/fig/x", "dir/other", "dirt"])
    for prefix in ("dir/fi", "dir/f", "di", "dir", "dir/", "dir/file1"):
        await _listing_is(ctx, prefix, {k: v for k, v in values.items() if k.startswith(prefix)})


_ODD_KEYS = (
    "with space",
    "plus+percent%amp&",
    "semi;colon=eq?q#h",
    "\u00fcn\u00efc\u00f8d\u00e9/\u65e5\u672c\u8a9e",
    "emoji/\U0001f600 smile",
    "quote'\"tick`",
)


@_check("keys with unicode, spaces and +%&?# round-trip through put, get, list and delete")
async def list_odd_keys(ctx: Context) -> None:
    values = {key: key.encode() for key in _ODD_KEYS}
    for key, data in values.items():
        await _put(ctx, key, data)
    for key, data in values.items():
        got, _ = await _get(ctx, key)
        _same_bytes(got, data, f"get({key!r})")
    await _listing_is(ctx, "", values)
    await _listing_is(ctx, "\u00fcn\u00efc", {_ODD_KEYS[3]: values[_ODD_KEYS[3]]})
    await _listing_is(ctx, "plus+", {_ODD_KEYS[1]: values[_ODD_KEYS[1]]})
    for key in values:
        await ctx.adapter.delete(ctx.container, key)
    await _listing_is(ctx, "", {})


_ORDER_KEYS = (
    "b", "a b", "a%b", "a&b", "a+b", "a-b", "a.b", "a/b", "a0", "aZ", "a_b", "ab",
    "a\u00e9", "a\uff01", "a\U0001f600", "Z",
)  # fmt: skip


@_check("list and list_names yield keys in the promised order (sorted, or each once)")
async def list_order(ctx: Context) -> None:
    values = await _put_many(ctx, _ORDER_KEYS)
    await _listing_is(ctx, "", values)
    await _listing_is(ctx, "a", {k: v for k, v in values.items() if k.startswith("a")})


@_check("listings page through more keys than one page holds, each key once")
async def list_paging(ctx: Context) -> None:
    page = ctx.options.page_size
    if page is None:
        raise unittest.SkipTest("pass page_size= (the adapter's listing page size) to run this")
    n = 2 * page + 1
    keys = [f"pg/{i:04d}" for i in range(n)] + [f"pg/sub/{i:04d}" for i in range(n)]
    values = await _put_many(ctx, [*keys, "ph", "a"])
    await _listing_is(ctx, "", values)
    await _listing_is(ctx, "pg/", {k: values[k] for k in keys})
    expected = sorted([f"pg/{i:04d}" for i in range(n)] + ["pg/sub/"])
    _equal(await _level(ctx, "pg/"), expected, "list_names('pg/', delimiter='/')")


@_check("list and list_names of a missing container yield nothing")
async def list_missing_container(ctx: Context) -> None:
    other = ctx.new_container()
    _equal(await _list(ctx, "", other), [], "list of a missing container")
    _equal(await _list(ctx, "x", other), [], "list with a prefix of a missing container")
    _equal(await _names(ctx, "", None, other), [], "list_names of a missing container")
    _equal(await _names(ctx, "", "/", other), [], "list_names('/') of a missing container")


@_check("list_names without a delimiter yields the names list yields")
async def list_names_flat(ctx: Context) -> None:
    values = await _put_many(ctx, ["x/1", "x/2/3", "x/2/4", "x3", "y"])
    for prefix in ("", "x", "x/", "x/2/"):
        names = await _names(ctx, prefix)
        _order(names, f"list_names({prefix!r})", ctx.options.sorted_listing)
        _equal(
            sorted(names),
            sorted(k for k in values if k.startswith(prefix)),
            f"list_names({prefix!r})",
        )


@_check("list_names with '/' yields keys below the prefix and each deeper folder once, sorted")
async def list_names_delimiter(ctx: Context) -> None:
    await _put_many(ctx, ["a", "b/c", "b/d/e", "b/d/f", "b/f", "c-x", "c/x", "c0", "ca"])
    cases = {
        "": ["a", "b/", "c-x", "c/", "c0", "ca"],
        "b/": ["b/c", "b/d/", "b/f"],
        "b/d": ["b/d/"],
        "b/d/": ["b/d/e", "b/d/f"],
        "c": ["c-x", "c/", "c0", "ca"],
        "nothing": [],
    }
    for prefix, expected in cases.items():
        _equal(await _level(ctx, prefix), expected, f"list_names({prefix!r}, delimiter='/')")
    _equal(await _names(ctx, "", "/", ctx.new_container()), [], "list_names('/') of no container")


@_check("list_metadata (if present) yields list_names' names in order, with head's metadata")
async def list_metadata_matches(ctx: Context) -> None:
    adapter = ctx.adapter
    if not isinstance(adapter, MetadataListingAdapter):
        raise unittest.SkipTest("the adapter has no list_metadata")
    written = {"m/a": {"owner": "ops", "n": "1"}, "m/b/c": {}, "m/d": {"x": "y"}}
    for key, metadata in written.items():
        await _put(ctx, key, b"v", metadata=metadata)
    for prefix, delimiter in (("", None), ("m/", "/"), ("m/b", None), ("nothing", "/")):
        listed: list[tuple[str, dict[str, str]]] = []
        async for name, found in adapter.list_metadata(ctx.container, prefix, delimiter=delimiter):
            listed.append((name, dict(found)))
        what = f"list_metadata({prefix!r}, delimiter={delimiter!r})"
        _equal([n for n, _ in listed], await _names(ctx, prefix, delimiter), f"{what} names")
        for name, metadata in listed:
            expected = {} if name.endswith("/") else written[name]
            _equal(metadata, expected, f"{what} metadata of {name!r}")
    none = [entry async for entry in adapter.list_metadata(ctx.new_container())]
    _equal(none, [], "list_metadata of a missing container")


@_check("a and a/b both exist where supported; else StorageError and the first untouched")
async def key_and_key_slash_sub(ctx: Context) -> None:
    if ctx.options.supports_a_and_a_slash_b:
        values = await _put_many(ctx, ["a", "a/b", "x/y", "x"])
        await _listing_is(ctx, "", values)
        _equal(await _level(ctx, ""), ["a", "a/", "x", "x/"], "list_names('/')")
        await ctx.adapter.delete(ctx.container, "a")
        got, _ = await _get(ctx, "a/b")
        _same_bytes(got, values["a/b"], "a/b after deleting a")
        return
    for first, second in (("a", "a/b"), ("x/y", "x")):
        await _put(ctx, first, b"first", metadata={"v": "1"})
        before = await _state(ctx, first)
        await _raises(
            StorageError, f"put({second!r}) while {first!r} exists", _put(ctx, second, b"2")
        )
        await _unchanged(ctx, first, before, f"a refused put({second!r})")
        _equal(await _state(ctx, second), None, f"{second!r} after its put was refused")


@_check("keys differing only in case are different keys (if the backend is case-sensitive)")
async def keys_case_sensitive(ctx: Context) -> None:
    if not ctx.options.case_sensitive_keys:
        raise unittest.SkipTest("the backend's keys are not case-sensitive")
    values = await _put_many(ctx, ["Case/Key", "case/key", "CASE/KEY"])
    for key, data in values.items():
        got, _ = await _get(ctx, key)
        _same_bytes(got, data, f"get({key!r})")
    await _listing_is(ctx, "", values)


@_check("get of a missing key or container raises BlobNotFoundError (a KeyError)")
async def get_missing_raises_not_found(ctx: Context) -> None:
    where = {"a missing key": ctx.container, "a missing container": ctx.new_container()}
    await _put(ctx, "present", b"x")
    for what, container in where.items():
        exc = await _raises(BlobNotFoundError, f"get of {what}", _get(ctx, "missing", container))
        if not isinstance(exc, KeyError):
            _fail("BlobNotFoundError must be a KeyError")


@_check("a key below a stored key, or a key that is a folder of keys, is missing")
async def missing_key_shapes(ctx: Context) -> None:
    keys = ["file", "folder/inner"]
    await _put_many(ctx, keys)
    before = {key: await _state(ctx, key) for key in keys}
    for missing in ("file/below", "file/below/deeper", "folder"):
        _equal(await _head(ctx, missing), None, f"head({missing!r})")
        await _raises(BlobNotFoundError, f"get({missing!r})", _get(ctx, missing))
        await ctx.adapter.delete(ctx.container, missing)
        await ctx.adapter.delete(ctx.container, missing, condition=CREATE)
        await _raises(
            ConcurrencyError,
            f"delete({missing!r}) with Update",
            ctx.adapter.delete(ctx.container, missing, condition=Update('"x"')),
        )
    _equal(await _list(ctx, "file/"), [], "list('file/')")
    _equal(await _names(ctx, "file/", "/"), [], "list_names('file/', '/')")
    for key, state in before.items():
        await _unchanged(ctx, key, state, "operations on missing keys beside it")


@_check("a key of 1024 characters round-trips")
async def long_key(ctx: Context) -> None:
    key = "/".join(f"{i}" + "s" * 99 for i in range(10))
    key += "/" + "t" * (1024 - len(key) - 1)
    data = b"long"
    etag = await _put(ctx, key, data)
    _equal(await _state(ctx, key), _State(data, etag, None, {}), "a 1024-character key")
    await _listing_is(ctx, "", {key: data})
    await ctx.adapter.delete(ctx.container, key)
    _equal(await _state(ctx, key), None, "a deleted 1024-character key")


@_check("a value of 0 bytes round-trips")
async def empty_value(ctx: Context) -> None:
    etag = await _put(ctx, "empty", b"")
    _equal(await _state(ctx, "empty"), _State(b"", etag, None, {}), "an empty value")
    await _listing_is(ctx, "", {"empty": b""})
    new = await _put(ctx, "empty", b"", condition=Update(etag))
    _equal((await _get(ctx, "empty"))[1].etag, new, "ETag after rewriting an empty value")


@_check("a value of a few MiB round-trips exactly")
async def large_value(ctx: Context) -> None:
    data = bytearray(os.urandom(ctx.options.large_size))
    first = await _put(ctx, "big", bytes(data))
    got, info = await _get(ctx, "big")
    _same_bytes(got, bytes(data), "get of a large value")
    _equal(info.etag, first, "ETag of a large value")
    data[len(data) // 2] ^= 0xFF
    second = await _put(ctx, "big", bytes(data[:-1]))
    if second == first:
        _fail("a large value rewritten with different bytes kept its ETag")
    got, info = await _get(ctx, "big")
    _same_bytes(got, bytes(data[:-1]), "get of a rewritten large value")
    _equal(info.etag, second, "ETag of a rewritten large value")
    await _listing_is(ctx, "", {"big": bytes(data[:-1])})


async def _race(ctx: Context, condition: Precondition) -> None:
    """CONCURRENT_WRITERS tasks put under one condition: exactly one may win."""
    values = [f"writer {i}".encode() for i in range(CONCURRENT_WRITERS)]
    results = await asyncio.gather(
        *(_put(ctx, "k", data, condition=condition) for data in values), return_exceptions=True
    )
    winners = [i for i, r in enumerate(results) if isinstance(r, str)]
    others = [r for r in results if not isinstance(r, (str, ConcurrencyError))]
    if others:
        err = others[0]
        _fail(f"a losing writer raised {type(err).__name__}: {err} (not ConcurrencyError)")
    if len(winners) != 1:
        _fail(f"{len(winners)} of {CONCURRENT_WRITERS} concurrent writers won, not exactly one")
    state = await _state(ctx, "k")
    winner = winners[0]
    _equal(
        state and (state.data, state.etag),
        (values[winner], results[winner]),
        "the stored value and ETag (the winner's)",
    )


@_check("concurrent puts with CREATE of one key: exactly one wins")
async def concurrent_create(ctx: Context) -> None:
    await _race(ctx, CREATE)


@_check("concurrent puts with Update(same ETag): exactly one wins")
async def concurrent_update(ctx: Context) -> None:
    await _race(ctx, Update(await _put(ctx, "k", b"base")))


@_check("close may be called twice")
async def close_twice(ctx: Context) -> None:
    await _put(ctx, "k", b"v")
    await ctx.adapter.delete(ctx.container, "k")
    await ctx.adapter.close()
    await ctx.adapter.close()
    made = ctx.make_adapter()
    unused: Adapter = await made if inspect.isawaitable(made) else made
    await unused.close()
    await unused.close()


# ------------------------------------------------------------------------ streaming


def _streaming(ctx: Context) -> StreamingAdapter:
    if not isinstance(ctx.adapter, StreamingAdapter):
        raise unittest.SkipTest("the adapter does not stream (no open_read/put_stream)")
    return ctx.adapter


class _SourceFailed(Exception):
    """Raised by a check's own stream; put_stream must let it through unchanged."""


async def _stream(parts: Iterable[bytes | bytearray | memoryview]) -> AsyncIterator[Any]:
    for part in parts:
        await asyncio.sleep(0)
        yield part


async def _read_stream(
    ctx: Context, key: str, offset: int = 0, length: int | None = None
) -> tuple[bytes, BlobInfo]:
    adapter = _streaming(ctx)
    result = await adapter.open_read(ctx.container, key, offset=offset, length=length)
    if not isinstance(result, tuple) or len(result) != 2:
        _fail(f"open_read({key!r}) must return (BlobInfo, async iterator), got {result!r}")
    info, chunks = result
    info = _check_info(info, key, f"open_read({key!r})")
    parts = []
    async for chunk in chunks:
        if type(chunk) is not bytes:
            _fail(f"open_read({key!r}) must yield bytes, got {type(chunk).__name__}")
        parts.append(chunk)
    return b"".join(parts), info


@_check(
    "put_stream stores the chunks whole, with content type and metadata; open_read "
    "reads them back, whole and as ranges"
)
async def stream_round_trip(ctx: Context) -> None:
    adapter = _streaming(ctx)
    data = os.urandom(ctx.options.large_size)
    cut = len(data) // 3
    parts: list[bytes | bytearray | memoryview] = [
        data[:cut],
        b"",
        bytearray(data[cut : 2 * cut]),
        memoryview(data[2 * cut :]),
    ]
    etag = await adapter.put_stream(
        ctx.container,
        "streamed",
        _stream(parts),
        content_type="application/x-stream",
        metadata={"Kind": "stream"},
        size=len(data),
    )
    if not isinstance(etag, str) or not etag:
        _fail(f"put_stream must return the new ETag (a non-empty str), got {etag!r}")
    got, info = await _get(ctx, "streamed")
    _same_bytes(got, data, "get after put_stream")
    _equal(info.etag, etag, "get().etag (the ETag put_stream returned)")
    head = await _head(ctx, "streamed")
    assert head is not None
    _equal(head.content_type, "application/x-stream", "head.content_type after put_stream")
    _equal(dict(head.metadata), {"kind": "stream"}, "head.metadata after put_stream")
    whole, info = await _read_stream(ctx, "streamed")
    _same_bytes(whole, data, "open_read of the whole value")
    _equal(info.etag, etag, "open_read: BlobInfo.etag")
    _equal(info.size, len(data), "open_read: BlobInfo.size (the whole value's)")
    for offset, length in [
        (1, 10),
        (cut - 5, cut + 10),
        (len(data) - 3, None),
        (7, 0),
        (len(data), None),
        (len(data) + 10, 5),
        (0, len(data) + 99),
    ]:
        end = None if length is None else offset + length
        part, _ = await _read_stream(ctx, "streamed", offset, length)
        _same_bytes(part, data[offset:end], f"open_read(offset={offset}, length={length})")
    await adapter.put_stream(ctx.container, "empty", _stream([]))
    empty, info = await _read_stream(ctx, "empty")
    _equal((empty, info.size), (b"", 0), "open_read of an empty value streamed in")
    await _raises(
        BlobNotFoundError, "open_read of a missing key", adapter.open_read(ctx.container, "missing")
    )


@_check(
    "a put_stream whose stream raises, or gives another size than announced, stores "
    "nothing; the stream's exception comes through unchanged"
)
async def stream_failure_stores_nothing(ctx: Context) -> None:
    adapter = _streaming(ctx)
    etag = await _put(ctx, "kept", b"the old value")

    async def failing() -> AsyncIterator[bytes]:
        yield b"x" * 100_000
        await asyncio.sleep(0)
        yield b"y" * 100_000
        raise _SourceFailed("the source broke")

    for key in ("kept", "new"):
        try:
            await adapter.put_stream(ctx.container, key, failing())
        except _SourceFailed:
            pass
        except Exception as exc:
            _fail(
                f"put_stream of a failing stream raised {type(exc).__name__}: {exc}, "
                "not the stream's own exception"
            )
        else:
            _fail("put_stream of a failing stream returned")
    data, info = await _get(ctx, "kept")
    _same_bytes(data, b"the old value", "value after a failed put_stream over it")
    _equal(info.etag, etag, "ETag after a failed put_stream over the key")
    _equal(await _head(ctx, "new"), None, "head of a key whose only put_stream failed")
    await _raises(
        StorageError,
        "put_stream of 10 bytes announced as 11",
        adapter.put_stream(ctx.container, "sized", _stream([b"0123456789"]), size=11),
    )
    _equal(await _head(ctx, "sized"), None, "head of a key whose put_stream had a wrong size")


@_check("put_stream honours CREATE and Update(etag) like put")
async def stream_conditions(ctx: Context) -> None:
    adapter = _streaming(ctx)
    etag = await adapter.put_stream(ctx.container, "c", _stream([b"one"]), condition=CREATE)
    await _raises(
        ConcurrencyError,
        "put_stream CREATE of an existing key",
        adapter.put_stream(ctx.container, "c", _stream([b"two"]), condition=CREATE),
    )
    new = await adapter.put_stream(ctx.container, "c", _stream([b"three"]), condition=Update(etag))
    await _raises(
        ConcurrencyError,
        "put_stream Update(stale ETag)",
        adapter.put_stream(ctx.container, "c", _stream([b"four"]), condition=Update(etag)),
    )
    data, info = await _get(ctx, "c")
    _same_bytes(data, b"three", "value after conditional put_streams")
    _equal(info.etag, new, "ETag after conditional put_streams")


@_check(
    "open_read yields one version: an overwrite during the read gives the old bytes "
    "or ConcurrencyError, never a mix"
)
async def stream_read_one_version(ctx: Context) -> None:
    adapter = _streaming(ctx)
    old = os.urandom(ctx.options.large_size)
    await _put(ctx, "v", old)
    _, chunks = await adapter.open_read(ctx.container, "v")
    parts: list[bytes] = []
    try:
        async for chunk in chunks:
            if not parts:
                await _put(ctx, "v", os.urandom(len(old)))
            parts.append(chunk)
    except ConcurrencyError:
        got = b"".join(parts)
        _same_bytes(got, old[: len(got)], "bytes yielded before ConcurrencyError")
        return
    _same_bytes(b"".join(parts), old, "open_read across an overwrite")


CHECKS: tuple[Check, ...] = tuple(_REGISTRY)
"""Every check, in a sensible order; ``str(check)`` is its name."""
