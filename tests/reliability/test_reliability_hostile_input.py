"""Scenario 6: hostile input, fuzzed with hypothesis.

Keys (traversal, unicode, control characters, surrogates, very long, temp-file shaped),
container names, values (deep nesting, huge ints, NaN, recursive structures, the tag key in
user dicts, unencodable objects) and corrupt stored bytes. Only the library's documented
exceptions may escape (AsyncBlobDictError subclasses), a value that was stored reads back
exactly, and nothing outside the store's root is touched (the file tree around the root is
snapshotted before and after). ``ABD_FUZZ_EXAMPLES`` sets the examples per property.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import re
import tempfile
from collections import Counter
from collections.abc import Awaitable, Iterator
from datetime import timedelta, timezone
from decimal import Decimal
from enum import IntEnum
from pathlib import Path
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from asyncblobdict import (
    AsyncBlobDictError,
    AsyncBlobStore,
    BlobNotFoundError,
    InvalidKeyError,
    LocalFileAdapter,
    MemoryAdapter,
    SerializationError,
    StorageError,
)
from asyncblobdict.codec import encode
from asyncblobdict.keys import validate_key
from tests.reliability.support import record, size

T = TypeVar("T")
EXAMPLES = size("ABD_FUZZ_EXAMPLES", 200)
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
tried: Counter[str] = Counter()


@pytest.fixture(scope="module", autouse=True)
def _record_counts() -> Iterator[None]:
    """Once the module's tests have run, their counts go to the results file (a helper,
    not a test: the tests that gather the counts assert on them)."""
    yield
    if any(tried.values()):
        record("hostile_input", {"examples_per_property": EXAMPLES, **dict(tried)})


# --------------------------------------------------------------------------- sandbox


class Sandbox:
    """A root folder with sibling folders and files around it, and one loop to run in."""

    def __init__(self) -> None:
        self.tmp = tempfile.TemporaryDirectory(prefix="abd-hostile-")
        self.base = Path(self.tmp.name)
        for rel in ("outside.txt", "sibling/data.json", "parent/neighbour/file", "parent/x"):
            path = self.base / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("do not touch " + rel)
        self.root = self.base / "parent" / "root"
        self.root.mkdir()
        self.loop = asyncio.new_event_loop()
        self.local = LocalFileAdapter(self.root)
        self.memory = MemoryAdapter()
        self.before = self.snapshot()

    def snapshot(self) -> dict[str, tuple[int, int, int]]:
        """Every path under the sandbox except the root: (mode, size, mtime_ns)."""
        out = {}
        for dirpath, dirnames, filenames in os.walk(self.base):
            for name in dirnames + filenames:
                path = Path(dirpath, name)
                if path == self.root or self.root in path.parents:
                    continue
                st_ = path.lstat()
                out[str(path.relative_to(self.base))] = (st_.st_mode, st_.st_size, st_.st_mtime_ns)
        return out

    def run(self, coro: Awaitable[T]) -> T:
        return self.loop.run_until_complete(coro)

    def close(self) -> None:
        self.run(self.local.close())
        self.loop.close()
        after = self.snapshot()
        assert after == self.before, "files outside the root changed"
        self.tmp.cleanup()


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    box = Sandbox()
    yield box
    box.close()


async def attempt(coro: Awaitable[T]) -> T | AsyncBlobDictError:
    """Run one call: a result or one of our errors; anything else fails the test."""
    try:
        return await coro
    except AsyncBlobDictError as exc:
        return exc


# ------------------------------------------------------------------------------ keys

segment_chars = st.characters(codec=None, exclude_categories=())  # surrogates included
nasty = st.sampled_from(
    [
        "..", ".", "", "/", "\\", "\x00", "\n", "\x7f", "\x85", "\u2028", "%2e%2e", "%2F",
        "~", "con", "nul", " ", "\ufeff", "\ud800", "\U0001f600", "a" * 256, "é" * 128,
        ".abd-tmp-0123456789abcdef", ".x.abd-tmp-0123456789abcdef", ".abd-locks", "?", "#",
        "*", ":", "|", '"', "<", ">", "+", "&", "=", ";",
    ]
)  # fmt: skip
keys = st.one_of(
    st.text(segment_chars, min_size=0, max_size=40),
    st.lists(st.one_of(nasty, st.text(segment_chars, max_size=8)), max_size=6).map("/".join),
    st.lists(st.one_of(nasty, st.text("ab.é/", max_size=4)), max_size=6).map("".join),
    st.builds(lambda n, c: c * n, st.integers(60, 1100), st.sampled_from(["a", "é", "😀", "a/"])),
    st.builds(lambda a, b: a + "/../" + b, st.text("ab", max_size=3), st.text("ab", max_size=3)),
    st.sampled_from(["../../outside.txt", "../sibling/data.json", "/etc/passwd", "a/./b"]),
)
not_strings = st.one_of(st.none(), st.integers(), st.binary(max_size=4), st.lists(st.text()))


async def key_round(store: AsyncBlobStore, key: Any) -> None:
    try:
        valid = isinstance(key, str) and validate_key(key) == key
    except InvalidKeyError:
        valid = False
    value = {"key": key if isinstance(key, str) else repr(key)} if not valid else {"k": 1}
    outcome = await attempt(store.set_json(key, value))
    tried["keys"] += 1
    if not valid:
        assert isinstance(outcome, InvalidKeyError), f"invalid key {key!r} gave {outcome!r}"
        for call in (store.get_json(key), store.exists(key), store.delete(key)):
            assert isinstance(await attempt(call), InvalidKeyError)
        return
    if isinstance(outcome, AsyncBlobDictError):
        # Only the local backend's stated limits: long segments, a value beside a folder.
        assert isinstance(outcome, (InvalidKeyError, StorageError)), repr(outcome)
        after = await attempt(store.get_json(key))
        assert isinstance(after, (InvalidKeyError, BlobNotFoundError)), repr(after)
        tried["keys_refused_by_backend"] += 1
        return
    assert await store.get_json(key) == value
    assert await store.exists(key)
    assert key in await store.list_keys()
    assert key in await store.list_keys(prefix=key)
    await store.set_binary(key, b"\x00\xff" + key.encode("utf-8"))
    assert await store.get_binary(key) == b"\x00\xff" + key.encode("utf-8")
    await store.delete(key)
    assert not await store.exists(key)
    assert key not in await store.list_keys()
    tried["keys_stored"] += 1


@pytest.mark.parametrize("backend", ["memory", "local"])
@FUZZ
@given(key=st.one_of(keys, not_strings))
def test_hostile_keys(sandbox: Sandbox, backend: str, key: Any) -> None:
    adapter = sandbox.memory if backend == "memory" else sandbox.local
    store = AsyncBlobStore(adapter, "keys")
    sandbox.run(key_round(store, key))


@FUZZ
@given(first=keys, second=keys)
def test_two_keys_never_clobber_each_other(sandbox: Sandbox, first: str, second: str) -> None:
    """A value beside a folder of the same name (a vs a/b) is refused, never overwritten."""
    store = AsyncBlobStore(sandbox.local, "pairs")

    async def go() -> None:
        stored = {}
        for key in (first, second, first + "/x", second.rpartition("/")[0]):
            outcome = await attempt(store.set_json(key, key))
            tried["key_pairs"] += 1
            if not isinstance(outcome, AsyncBlobDictError):
                stored[key] = key
            for k, v in stored.items():
                assert await store.get_json(k) == v, f"{k!r} changed when {key!r} was written"
        assert sorted(stored) == await store.list_keys()
        for k in stored:
            await store.delete(k)
        assert await store.list_keys() == []

    sandbox.run(go())


@FUZZ
@given(prefix=st.one_of(keys, not_strings))
def test_hostile_prefixes(sandbox: Sandbox, prefix: Any) -> None:
    store = AsyncBlobStore(sandbox.local, "prefixes")

    async def go() -> None:
        await store.set_json("a/b", 1)
        outcome = await attempt(store.list_keys(prefix))
        tried["prefixes"] += 1
        if isinstance(outcome, AsyncBlobDictError):
            assert isinstance(outcome, InvalidKeyError)
        else:
            assert outcome == (["a/b"] if "a/b".startswith(prefix) else [])

    sandbox.run(go())


# ------------------------------------------------------------------------ containers

FOLDER_RULE = re.compile(r"[A-Za-z0-9._-]{1,255}\Z")
AZURE_RULE = re.compile(r"[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){2,62}\Z")


def local_container_ok(name: Any) -> bool:
    return isinstance(name, str) and FOLDER_RULE.match(name) is not None and name not in (".", "..")


containers = st.one_of(
    st.text(segment_chars, max_size=70),
    st.text("abc-._/\\0A", max_size=70),
    st.sampled_from(["..", ".", "", "../x", "a/b", "$root", "-ab", "ab-", "a--b", "ab", "A" * 63]),
    st.sampled_from([".abd-locks", ".abd~locks", "a" * 64, "a" * 256]),
    not_strings,
)


@FUZZ
@given(name=containers)
def test_hostile_container_names(sandbox: Sandbox, name: Any) -> None:
    tried["containers"] += 1
    try:
        store = AsyncBlobStore(sandbox.local, name)
    except InvalidKeyError:
        assert not local_container_ok(name), f"refused {name!r}"
        return
    assert local_container_ok(name), f"accepted {name!r}"

    async def go() -> None:
        await store.set_json("k", 1)
        assert await store.get_json("k") == 1
        assert (sandbox.root / name / "k").is_file()
        await store.delete("k")

    sandbox.run(go())


@FUZZ
@given(name=containers)
def test_hostile_azure_container_names(name: Any) -> None:
    pytest.importorskip("aiohttp")
    try:
        from asyncblobdict import AzureBlobAdapter
    except ImportError:
        pytest.skip("the Azure adapter is not importable")

    tried["azure_containers"] += 1
    adapter = AzureBlobAdapter.from_connection_string(
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;"
        "BlobEndpoint=http://127.0.0.1:9/devstoreaccount1;"
    )
    try:
        AsyncBlobStore(adapter, name)
    except InvalidKeyError:
        assert not (isinstance(name, str) and AZURE_RULE.match(name)), name
        return
    assert isinstance(name, str) and AZURE_RULE.match(name), f"accepted {name!r}"


# ---------------------------------------------------------------------------- values


class Colour(IntEnum):
    RED = 1


class Opaque:
    pass


class BadEq(dict[str, Any]):
    def __eq__(self, other: object) -> bool:
        raise RuntimeError("no comparing")

    __hash__ = None


offsets = st.builds(lambda m: timezone(timedelta(minutes=m)), st.integers(-23 * 60, 23 * 60))
hashable_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.builds(
        lambda bits, sign: sign * (2**bits + 7), st.integers(0, 40000), st.sampled_from([1, -1])
    ),
    st.floats(allow_nan=False),
    st.text(segment_chars, max_size=20),
    st.binary(max_size=32),
    st.datetimes(timezones=st.one_of(st.none(), st.just(timezone.utc), offsets)),
    st.dates(),
    st.times(timezones=st.one_of(st.none(), offsets)),
    st.timedeltas(),
    st.uuids(),
    st.decimals(allow_nan=False),
    st.just(Colour.RED),
)
hashables = st.recursive(
    hashable_scalars,
    lambda inner: st.one_of(st.tuples(inner, inner), st.frozensets(inner, max_size=3)),
    max_leaves=6,
)
tag_dicts = st.dictionaries(
    st.sampled_from(["_bdtype_", "__type__", "items", "value", "days"]),
    st.one_of(
        st.sampled_from(["set", "datetime", "uuid", "bytes", "int", "dict", "x"]), st.integers()
    ),
)
values = st.recursive(
    st.one_of(
        hashables,
        st.floats(),  # NaN and infinities too
        st.decimals(),  # Decimal NaN, sNaN, infinities
        st.builds(bytearray, st.binary(max_size=16)),
        tag_dicts,
        st.sampled_from([Opaque(), object(), 1j, range(3), Ellipsis]),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.text(segment_chars, max_size=6), inner, max_size=4),
        st.dictionaries(hashables, inner, max_size=3),
        st.dictionaries(st.sampled_from(["_bdtype_", "__type__", "items", "value"]), inner),
        st.sets(hashables, max_size=4),
        st.lists(inner, max_size=3).map(tuple),
    ),
    max_leaves=20,
)


def nested(depth: int, kind: str) -> Any:
    value: Any = 0
    for _ in range(depth):
        value = [value] if kind == "list" else {"a": value} if kind == "dict" else (value,)
    return value


def recursive_value(kind: str) -> Any:
    if kind == "list":
        x: list[Any] = [1]
        x.append({"again": x})
        return x
    d: dict[str, Any] = {}
    d["self"] = [d]
    return d


hostile_values = st.one_of(
    values,
    st.builds(nested, st.integers(50, 200_000), st.sampled_from(["list", "dict", "tuple"])),
    st.builds(recursive_value, st.sampled_from(["list", "dict"])),
    st.sampled_from([10**5000, -(2**100_000), float("nan"), [float("nan")], BadEq(a=1)]),
    st.builds(lambda n: "x" * n, st.integers(0, 3_000_000)),
)


def has_nan(v: Any) -> bool:
    if isinstance(v, float):
        return math.isnan(v)
    if isinstance(v, Decimal):
        return v.is_nan()
    if isinstance(v, dict):
        return any(has_nan(k) or has_nan(x) for k, x in v.items())
    if isinstance(v, (list, tuple, set, frozenset)):
        return any(has_nan(x) for x in v)
    return False


@FUZZ
@given(value=hostile_values)
def test_hostile_values(sandbox: Sandbox, value: Any) -> None:
    store = AsyncBlobStore(sandbox.memory, "values")

    async def go() -> None:
        tried["values"] += 1
        outcome = await attempt(store.set_json("v", value))
        if isinstance(outcome, AsyncBlobDictError):
            assert isinstance(outcome, SerializationError), repr(outcome)
            tried["values_refused"] += 1
            return
        back = await store.get_json("v")
        assert encode(back) == encode(value)
        if not has_nan(value) and not isinstance(value, BadEq):
            assert back == value
        assert type(back) is type(value) or isinstance(value, (IntEnum, BadEq))

    sandbox.run(go())


# ---------------------------------------------------------------------- corrupt bytes

json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=10)
)
tag_names = st.sampled_from(
    ["set", "frozenset", "tuple", "dict", "datetime", "date", "time", "timedelta", "uuid",
     "decimal", "bytes", "bytearray", "float", "int", "unknown", ""]
)  # fmt: skip
json_trees = st.recursive(
    json_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.text(max_size=5), inner, max_size=3),
        st.builds(
            lambda marker, tag, extra: {marker: tag, **extra},
            st.sampled_from(["_bdtype_", "__type__"]),
            tag_names,
            st.dictionaries(
                st.sampled_from(["items", "value", "days", "seconds", "microseconds"]), inner
            ),
        ),
    ),
    max_leaves=12,
)
corrupt = st.one_of(
    st.binary(max_size=200),
    json_trees.map(lambda t: json.dumps(t).encode()),
    st.builds(lambda n, c: c * n, st.integers(1, 200_000), st.sampled_from([b"[", b'{"a":'])),
    st.sampled_from([b"\xff\xfe", b'"\\ud800"', b"NaN", b"1e99999", b"-", b"\x00"]),
)


@FUZZ
@given(data=corrupt)
@example(data=b'{"_bdtype_":"uuid","value":[]}')  # found by this suite: AttributeError
@example(data=b'{"_bdtype_":"decimal","value":"abc"}')  # decimal.InvalidOperation
def test_corrupt_stored_bytes(sandbox: Sandbox, data: bytes) -> None:
    store = AsyncBlobStore(sandbox.local, "corrupt")
    path = sandbox.root / "corrupt" / "k"
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(data)  # written behind the store's back

    async def go() -> None:
        tried["corrupt_values"] += 1
        assert await store.get_binary("k") == data
        outcome = await attempt(store.get_json("k"))
        if isinstance(outcome, AsyncBlobDictError):
            assert isinstance(outcome, SerializationError), repr(outcome)
            tried["corrupt_values_refused"] += 1
        else:
            json.loads(data)  # only valid JSON may decode
        assert path.read_bytes() == data  # left as it was

    sandbox.run(go())


# ----------------------------------------------------------------- symlinks planted


def test_planted_symlinks_are_never_followed(sandbox: Sandbox) -> None:
    store = AsyncBlobStore(sandbox.local, "links")
    folder = sandbox.root / "links"
    folder.mkdir(exist_ok=True)
    (folder / "to-file").symlink_to(sandbox.base / "outside.txt")
    (folder / "to-dir").symlink_to(sandbox.base / "sibling")

    async def go() -> None:
        for key in ("to-file", "to-dir/data.json", "to-dir/new"):
            for call in (store.get_binary(key), store.exists(key)):
                outcome = await attempt(call)
                tried["symlink_calls"] += 1
                assert isinstance(outcome, (StorageError, BlobNotFoundError, bool)), outcome
                assert outcome is not True
            outcome = await attempt(store.set_json(key, "overwritten?"))
            tried["symlink_calls"] += 1
            assert outcome is None or isinstance(outcome, StorageError), outcome
            outcome = await attempt(store.delete(key))
            assert outcome is None or isinstance(outcome, StorageError), outcome
        assert "to-dir/data.json" not in await store.list_keys()

    sandbox.run(go())
