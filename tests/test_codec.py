"""The codec's exact round trip, as a property, its error paths, and registered types."""

from __future__ import annotations

import json
import math
from collections import OrderedDict
from dataclasses import dataclass, field, fields, is_dataclass
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from enum import Enum, IntEnum
from pathlib import Path, PurePath, PurePosixPath
from typing import Any
from uuid import UUID

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from asyncblobdict import AsyncBlobStore, MemoryAdapter, SerializationError, TypeRegistry, codec
from asyncblobdict.codec import decode, encode

fixed_offsets = st.builds(
    lambda minutes: timezone(timedelta(minutes=minutes)), st.integers(-23 * 60, 23 * 60)
)
hashable_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    # Huge ints (past the plain-int threshold) without huge strategy reprs.
    st.builds(
        lambda bits, sign: sign * (2**bits + 12345), st.integers(0, 14000), st.sampled_from([1, -1])
    ),
    st.floats(allow_nan=False),
    st.text(),
    st.binary(max_size=32),
    st.datetimes(),
    st.datetimes(timezones=st.one_of(st.just(timezone.utc), fixed_offsets)),
    st.dates(),
    st.times(),
    st.times(timezones=fixed_offsets),
    st.timedeltas(),
    st.uuids(),
    st.decimals(allow_nan=False),
)
hashables = st.recursive(
    hashable_scalars,
    lambda inner: st.one_of(st.tuples(inner, inner), st.frozensets(inner, max_size=4)),
    max_leaves=8,
)
values = st.recursive(
    st.one_of(hashables, st.builds(bytearray, st.binary(max_size=16))),
    lambda inner: st.one_of(
        st.lists(inner, max_size=5),
        st.dictionaries(st.text(), inner, max_size=5),
        st.dictionaries(hashables, inner, max_size=4),
        st.dictionaries(st.sampled_from(["_bdtype_", "__type__", "items", "value"]), inner),
        st.sets(hashables, max_size=5),
        st.lists(inner, max_size=3).map(tuple),
    ),
    max_leaves=25,
)


def same(a: Any, b: Any) -> bool:
    """Equality that also checks types all the way down (1 == 1.0 == True is not enough)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, (datetime, time)):
        return bool(a == b and a.utcoffset() == b.utcoffset())
    if isinstance(a, Decimal):
        return bool(a.as_tuple() == b.as_tuple())
    return bool(a == b)


@settings(max_examples=400, deadline=None)
@given(values)
def test_exact_round_trip(value: Any) -> None:
    data = encode(value)
    json.loads(data)  # plain JSON any tool can read
    assert same(decode(data), value)


@settings(max_examples=200, deadline=None)
@given(st.sets(hashables, max_size=8))
def test_equal_sets_give_equal_bytes(value: set[Any]) -> None:
    reordered = set(reversed(list(value)))
    assert encode(value) == encode(reordered)


@pytest.mark.parametrize("special", [math.inf, -math.inf])
def test_non_finite_floats(special: float) -> None:
    assert decode(encode([special])) == [special]
    assert math.isnan(decode(encode(math.nan)))


def test_reads_forms_of_the_original_library() -> None:
    assert decode(b'{"_bdtype_": "set", "items": [1, 2]}') == {1, 2}
    assert decode(b'{"_bdtype_": "datetime", "value": "2024-01-02T03:04:05"}') == datetime(
        2024, 1, 2, 3, 4, 5
    )
    assert decode(b'{"_bdtype_": "uuid", "value": "00000000-0000-0000-0000-000000000007"}') == (
        UUID(int=7)
    )
    assert decode(b'{"__type__": "set", "items": ["a"]}') == {"a"}
    assert decode(b'{"__type__": "datetime", "value": "2024-01-02"}') == datetime(2024, 1, 2)
    # An object that merely uses the marker with an unknown tag is returned as it is.
    assert decode(b'{"_bdtype_": "mystery"}') == {"_bdtype_": "mystery"}


def test_datetime_forms() -> None:
    assert encode(datetime(2024, 1, 2)) == b'{"_bdtype_":"datetime","value":"2024-01-02T00:00:00"}'
    assert decode(encode(date(2024, 1, 2))) == date(2024, 1, 2)
    assert type(decode(encode(date(2024, 1, 2)))) is date


class Custom:
    pass


def test_unencodable_names_type_and_path() -> None:
    with pytest.raises(SerializationError) as info:
        encode({"a": [1, {"b": Custom()}]})
    assert "Custom" in str(info.value) and "['a'][1]['b']" in str(info.value)


def test_recursive_structure_is_an_error() -> None:
    loop: list[Any] = [1]
    loop.append(loop)
    with pytest.raises(SerializationError, match="contains itself"):
        encode(loop)
    shared = [1]
    assert decode(encode([shared, shared])) == [[1], [1]]  # shared, not recursive


def test_deep_nesting_is_an_error_not_a_crash() -> None:
    deep: Any = []
    for _ in range(100_000):
        deep = [deep]
    with pytest.raises(SerializationError):
        encode(deep)
    with pytest.raises(SerializationError):
        decode(b"[" * 100_000 + b"]" * 100_000)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"{",
        b"\xff\xfe",
        b"nope",
        b'{"_bdtype_": "set", "items": 5}',
        b"NaN1",
        # Well-formed JSON whose tagged payload is not (found by the hostile-input fuzzing).
        b'{"_bdtype_": "uuid", "value": []}',
        b'{"_bdtype_": "decimal", "value": "abc"}',
        b'{"_bdtype_": "dict", "items": [[[1], 2]]}',
        b'{"_bdtype_": "dict", "items": [1]}',
        b'{"_bdtype_": "datetime"}',
        b'{"__type__": "bytes", "value": "!!"}',
    ],
)
def test_corrupt_bytes_raise_serialization_error(data: bytes) -> None:
    with pytest.raises(SerializationError):
        decode(data)


def test_subclasses_encode_as_their_base() -> None:
    from collections import OrderedDict
    from enum import IntEnum

    class Level(IntEnum):
        HIGH = 3

    assert decode(encode(OrderedDict(a=Level.HIGH))) == {"a": 3}


class Color(str, Enum):
    RED = "red"


class Level(IntEnum):
    HIGH = 3


class Ratio(float, Enum):
    HALF = 0.5


class Shouty(str):
    """A str subclass whose str() is not its value."""

    def __str__(self) -> str:
        return self.upper() + "!"


class Sevens(int):
    """An int subclass whose int() and str() are not its value."""

    def __int__(self) -> int:
        return 7

    def __index__(self) -> int:
        return 7

    def __str__(self) -> str:
        return "seven"

    __repr__ = __str__


class Twos(float):
    """A float subclass whose float() and repr() are not its value."""

    def __float__(self) -> float:
        return 2.0

    def __repr__(self) -> str:
        return "two"


def test_str_enum_is_stored_as_its_value() -> None:
    # json.dumps gives "red"; str(Color.RED) is "Color.RED".
    assert encode(Color.RED) == b'"red"'
    assert encode({"c": Color.RED, "l": [Color.RED]}) == b'{"c":"red","l":["red"]}'
    assert decode(encode(Color.RED)) == "red"


def test_str_enum_dict_key_is_stored_as_its_value() -> None:
    assert encode({Color.RED: 1}) == json.dumps({Color.RED: 1}, separators=(",", ":")).encode()
    assert decode(encode({Color.RED: 1, "blue": 2})) == {"red": 1, "blue": 2}


@pytest.mark.parametrize(
    "value",
    [
        Color.RED,
        Level.HIGH,
        Ratio.HALF,
        Shouty("quiet"),
        Sevens(3),
        Twos(1.5),
        [Shouty("a"), Sevens(-4), Twos(-0.25)],
        {Shouty("k"): Shouty("v")},
        {"n": Sevens(3), "f": Twos(1.5), "e": Level.HIGH},
    ],
)
def test_scalar_subclasses_encode_as_json_dumps_does(value: Any) -> None:
    assert encode(value) == json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def test_non_str_subclass_keys_keep_their_value() -> None:
    # Non-str keys keep their type through the tagged dict form; the subclass becomes its base.
    back = decode(encode({Sevens(4): "a", Level.HIGH: "b", Twos(1.5): "c"}))
    assert same(back, {4: "a", 3: "b", 1.5: "c"})


def test_str_subclass_key_equal_to_a_marker_is_still_tagged() -> None:
    value = {Shouty("_bdtype_"): "set", "items": [1]}
    assert same(decode(encode(value)), {"_bdtype_": "set", "items": [1]})


def test_str_subclass_keys_that_collide_are_an_error() -> None:
    class Loose(str):
        __hash__ = object.__hash__  # distinct from the str of equal text

        def __eq__(self, other: object) -> bool:
            return self is other

    with pytest.raises(SerializationError, match="same"):
        encode({"k": 1, Loose("k"): 2})


@settings(max_examples=200, deadline=None)
@given(
    st.recursive(
        st.one_of(
            st.text().map(Shouty),
            st.integers().map(Sevens),
            st.floats(allow_nan=False, allow_infinity=False).map(Twos),
            st.sampled_from([Color.RED, Level.HIGH, Ratio.HALF]),
        ),
        lambda inner: st.one_of(
            st.lists(inner, max_size=4), st.dictionaries(st.text().map(Shouty), inner, max_size=4)
        ),
        max_leaves=12,
    )
)
def test_subclass_values_encode_as_json_dumps_property(value: Any) -> None:
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    if "_bdtype_" in text or "__type__" in text:
        return  # a marker key is written in the tagged form instead
    assert encode(value) == text.encode()
    assert decode(encode(value)) == json.loads(text)


# ---------------------------------------------------------------- custom types


@dataclass
class Point:
    x: Any
    y: Any = None


@dataclass(frozen=True)
class Tag:
    name: str
    size: int = 0


@dataclass
class Tally:
    n: int
    seen: list[int] = field(init=False, default_factory=list)  # outside __init__


class Plain(Enum):
    ONE = 1
    PAIR = (1, 2)


class Shade(str, Enum):
    DARK = "dark"


class Money:
    """A class that is neither a dataclass nor an enum: it needs encode and decode."""

    def __init__(self, amount: Decimal, currency: str) -> None:
        self.amount, self.currency = amount, currency

    def __eq__(self, other: object) -> bool:
        return (
            type(other) is Money
            and self.amount.as_tuple() == other.amount.as_tuple()
            and self.currency == other.currency
        )

    def __hash__(self) -> int:
        return hash((self.amount, self.currency))


def registry() -> TypeRegistry:
    types = TypeRegistry(Point, Tag, Tally, Plain, Shade)
    types.register(Money, encode=lambda m: (m.amount, m.currency), decode=lambda t: Money(*t))
    return types


TYPES = registry()

custom_hashables = st.one_of(
    st.sampled_from([*Plain, *Shade]),
    st.builds(PurePath, st.text("ab/.", max_size=6)).map(lambda p: Path(p)),
    st.builds(Tag, st.text(max_size=5), st.integers()),
    st.builds(Money, st.decimals(allow_nan=False), st.text(max_size=3)),
)
custom_values = st.recursive(
    st.one_of(hashables, custom_hashables),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.text(), inner, max_size=4),
        st.dictionaries(st.one_of(hashables, custom_hashables), inner, max_size=3),
        st.sets(st.one_of(hashables, custom_hashables), max_size=4),
        st.builds(Point, inner, inner),
        st.lists(inner, max_size=3).map(tuple),
    ),
    max_leaves=20,
)


def same_custom(a: Any, b: Any) -> bool:
    """``same`` that also looks inside dataclasses and keeps enum identity."""
    if type(a) is not type(b):
        return False
    if isinstance(a, Enum):
        return a is b
    if is_dataclass(a):
        return all(same_custom(getattr(a, f.name), getattr(b, f.name)) for f in fields(a))
    if isinstance(a, dict):
        return list(a) == list(b) and all(same_custom(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same_custom(x, y) for x, y in zip(a, b, strict=True))
    return same(a, b)


@settings(max_examples=300, deadline=None)
@given(custom_values)
def test_registered_types_round_trip_exactly(value: Any) -> None:
    data = encode(value, TYPES)
    json.loads(data)  # still plain JSON
    assert same_custom(decode(data, TYPES), value)


@settings(max_examples=150, deadline=None)
@given(st.sets(st.one_of(hashables, custom_hashables), max_size=8))
def test_sets_of_registered_types_give_equal_bytes(value: set[Any]) -> None:
    assert encode(value, TYPES) == encode(set(reversed(list(value))), TYPES)


def test_registered_forms() -> None:
    assert encode(Point(1, 2), TYPES) == b'{"_bdtype_":"Point","value":{"x":1,"y":2}}'
    assert encode(Plain.PAIR, TYPES) == (
        b'{"_bdtype_":"Plain","value":{"_bdtype_":"tuple","items":[1,2]}}'
    )
    assert encode(Shade.DARK, TYPES) == b'{"_bdtype_":"Shade","value":"dark"}'
    assert decode(encode(Shade.DARK, TYPES), TYPES) is Shade.DARK
    money = encode(Money(Decimal("1.10"), "EUR"), TYPES)
    assert decode(money, TYPES) == Money(Decimal("1.10"), "EUR")
    tally = Tally(3)
    tally.seen.append(7)
    back = decode(encode(tally, TYPES), TYPES)
    assert type(back) is Tally and back.n == 3 and back.seen == [7]


def test_without_registration_enums_are_values_and_dataclasses_dicts() -> None:
    assert decode(encode(Plain.ONE)) == 1
    assert same(decode(encode([Plain.PAIR])), [(1, 2)])
    assert encode(Shade.DARK) == b'"dark"'  # as json.dumps writes a str enum
    assert encode({Shade.DARK: 1}) == b'{"dark":1}'
    assert decode(encode(Point(Tag("t"), [Plain.ONE]))) == {
        "x": {"name": "t", "size": 0},
        "y": [1],
    }
    # A registered class inside an unregistered dataclass is still tagged.
    types = TypeRegistry(Tag)
    assert decode(encode(Point(Tag("t")), types), types) == {"x": Tag("t"), "y": None}


def test_a_reader_without_the_registry_gets_the_tagged_dict() -> None:
    assert decode(encode(Point(1), TYPES)) == {"_bdtype_": "Point", "value": {"x": 1, "y": None}}
    # Legacy marker and registered name read back too.
    assert decode(b'{"__type__": "Point", "value": {"x": 1}}', TYPES) == Point(1)


def test_paths_round_trip() -> None:
    assert encode(Path("a/b")) == b'{"_bdtype_":"path","value":"a/b"}'
    back = decode(encode({"p": Path("/tmp/x")}))
    assert back == {"p": Path("/tmp/x")} and type(back["p"]) is type(Path("/tmp/x"))
    assert decode(encode(PurePosixPath("a"))) == Path("a")  # pure paths come back as Path


class FakeNumpyScalar:
    """Stands in for a numpy scalar where numpy is not installed (its module is numpy)."""

    __module__ = "numpy"
    ndim = 0

    def __init__(self, value: Any) -> None:
        self.value = value

    def item(self) -> Any:
        return self.value


class FakeNumpyArray(FakeNumpyScalar):
    __module__ = "numpy"
    ndim = 1


def test_numpy_scalars_are_written_as_their_item() -> None:
    assert encode({"n": FakeNumpyScalar(3), "b": FakeNumpyScalar(True)}) == b'{"n":3,"b":true}'
    with pytest.raises(SerializationError, match=r"numpy\.FakeNumpyArray"):
        encode(FakeNumpyArray([1, 2]))


def test_real_numpy_scalars() -> None:
    np = pytest.importorskip("numpy")
    value = [np.int64(3), np.float32(0.5), np.bool_(True), np.str_("s"), np.array(2.5)]
    assert same(decode(encode(value)), [3, 0.5, True, "s", 2.5])
    with pytest.raises(SerializationError, match=r"numpy\.ndarray"):
        encode(np.array([1, 2]))


def test_unknown_type_error_says_how_to_register() -> None:
    with pytest.raises(SerializationError) as info:
        encode({"a": Custom()}, TYPES)
    message = str(info.value)
    assert "Custom at ['a']" in message
    assert "TypeRegistry.register(Custom, encode=..., decode=...)" in message
    assert "AsyncBlobStore(..., types=" in message


def test_failing_user_codecs_are_serialization_errors() -> None:
    types = TypeRegistry()
    types.register(Custom, encode=lambda c: 1 / 0, decode=lambda v: Custom())
    with pytest.raises(SerializationError, match=r"encoder of type 'Custom' failed at \['k'\]"):
        encode({"k": Custom()}, types)
    types.register(Custom, encode=lambda c: 1, decode=lambda v: v / 0)
    with pytest.raises(SerializationError, match="malformed 'Custom' value"):
        decode(encode(Custom(), types), types)
    types.register(Custom, encode=lambda c: [c], decode=lambda v: v)
    with pytest.raises(SerializationError, match="contains itself"):
        encode(Custom(), types)
    loop = Point(1)
    loop.y = loop
    with pytest.raises(SerializationError, match="contains itself"):
        encode(loop)
    with pytest.raises(SerializationError, match="has no field"):
        decode(b'{"_bdtype_": "Point", "value": {"x": 1, "z": 2}}', TYPES)


def test_register_checks_its_arguments() -> None:
    types = TypeRegistry()
    with pytest.raises(TypeError, match="encode= and decode="):
        types.register(Custom)
    with pytest.raises(TypeError, match="both"):
        types.register(Custom, encode=str)
    with pytest.raises(TypeError, match="a class"):
        types.register(Point(1))  # type: ignore[type-var]
    for reserved in ("set", "datetime", "path"):
        with pytest.raises(ValueError, match="built-in"):
            types.register(Point, reserved)
    for builtin in (datetime, int, dict):
        with pytest.raises(ValueError, match="by the codec itself"):
            types.register(builtin, encode=str, decode=str)
    types.register(Point, "p")
    with pytest.raises(ValueError, match="already the name"):
        types.register(Tag, "p")
    assert Point in types and Tag not in types


def test_registering_again_replaces_and_takes_effect_at_once() -> None:
    types = TypeRegistry()
    data = encode(Point(1), TYPES)
    assert decode(data, types) == {"_bdtype_": "Point", "value": {"x": 1, "y": None}}
    assert types.register(Point) is Point  # usable as a class decorator
    assert decode(data, types) == Point(1)
    types.register(Point, "P2")
    assert encode(Point(1), types).startswith(b'{"_bdtype_":"P2"')
    assert isinstance(decode(data, types), dict)  # the old name is gone
    assert repr(types) == "TypeRegistry(P2)"


async def test_store_uses_its_registry() -> None:
    adapter = MemoryAdapter()
    async with AsyncBlobStore(adapter, "app", "write_through", "etag", types=TYPES) as store:
        await store.set_json("p", Point(Plain.ONE, Path("x")))
        assert await store.get_json("p") == Point(Plain.ONE, Path("x"))
        default = Point(0)
        new = await store.update_json("q", lambda p: Point(p.x + 1, Shade.DARK), default=default)
        assert new == Point(1, Shade.DARK) and default == Point(0)
        assert await store.get_json("q") == Point(1, Shade.DARK)
        with pytest.raises(SerializationError, match=r"TypeRegistry\.register") as info:
            await store.set_json("bad", Custom())
        assert info.value.key == "bad"
    async with AsyncBlobStore(adapter, "app", owns_adapter=False) as plain:
        assert (await plain.get_json("p"))["_bdtype_"] == "Point"
    with pytest.raises(TypeError, match="TypeRegistry"):
        AsyncBlobStore(MemoryAdapter(), "app", types=[Point])  # type: ignore[arg-type]


# The fast paths: plain JSON skips the tagged walk on encode and the object_hook on decode;
# both must give exactly what the walk and the hook give.
class UserList(list[Any]):
    pass


plain_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.builds(lambda bits: 2**bits, st.integers(9990, 10010)),  # around the plain-int limit
    st.floats(),  # NaN and ±inf included: they need the walk
    st.text(),
)
marker_keys = st.sampled_from(["_bdtype_", "__type__", "items", "value", "x"])
json_like = st.recursive(
    plain_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=5),
        st.dictionaries(st.one_of(st.text(), marker_keys), inner, max_size=5),
    ),
    max_leaves=30,
)
subclassed = st.one_of(
    st.text().map(Shouty),
    st.integers().map(Sevens),
    st.floats(allow_nan=False).map(Twos),
    st.sampled_from([Color.RED, Level.HIGH, Ratio.HALF]),
)
wide_values = st.recursive(
    st.one_of(plain_scalars, subclassed, hashables),
    lambda inner: st.one_of(
        st.lists(inner, max_size=5),
        st.lists(inner, max_size=3).map(tuple),
        st.dictionaries(
            st.one_of(st.text(), marker_keys, st.text().map(Shouty)), inner, max_size=5
        ),
        st.dictionaries(hashables, inner, max_size=3),
        st.dictionaries(st.text(), inner, max_size=3).map(OrderedDict),
        st.lists(inner, max_size=3).map(UserList),
    ),
    max_leaves=30,
)


def walk_encode(value: Any) -> bytes:
    """The tagged walk alone, as encode() ran for every value before the fast path."""
    return codec._dumps(codec._Encoder(None).value(value, "")).encode("utf-8")


@settings(max_examples=600, deadline=None)
@given(st.one_of(json_like, wide_values, values))
def test_fast_encode_is_byte_identical_to_the_walk(value: Any) -> None:
    assert encode(value) == walk_encode(value)
    if codec._is_plain(value, codec._FAST_DEPTH):
        assert same(decode(encode(value)), value)


@pytest.mark.parametrize(
    "value",
    [
        (1, 2),
        {"_bdtype_": "set", "items": [1]},
        {"__type__": "set"},
        {1: "a"},
        {Shouty("k"): 1},
        [Sevens(1)],
        {"a": Twos(0.5)},
        OrderedDict(a=1),
        UserList([1]),
        [math.nan],
        {"a": -math.inf},
        2**10001,
        [[2**10001]],
        b"x",
        [datetime(2024, 1, 1)],
        Color.RED,
    ],
)
def test_the_fast_path_declines_what_needs_the_walk(value: Any) -> None:
    assert not codec._is_plain(value, codec._FAST_DEPTH)
    assert encode(value) == walk_encode(value)


def test_the_fast_path_leaves_deep_and_recursive_values_to_the_walk() -> None:
    deep: Any = "leaf"
    for i in range(codec._FAST_DEPTH + 5):
        deep = [deep] if i % 2 else {"k": deep}
    assert not codec._is_plain(deep, codec._FAST_DEPTH)
    assert encode(deep) == walk_encode(deep)
    assert decode(encode(deep)) == deep
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(SerializationError, match="contains itself"):
        encode(loop)
    looped: dict[str, Any] = {}
    looped["self"] = looped
    with pytest.raises(SerializationError, match="contains itself"):
        encode(looped)


@settings(max_examples=400, deadline=None)
@given(json_like, st.booleans())
def test_fast_decode_agrees_with_the_object_hook(value: Any, ascii_only: bool) -> None:
    # ensure_ascii=True writes \u escapes, which can spell a marker key.
    text = json.dumps(value, ensure_ascii=ascii_only, separators=(",", ":"))
    # repr: exact for JSON's types (1, 1.0 and True differ) and equal for NaN.
    assert repr(decode(text.encode())) == repr(codec._loads(text))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"\\u005fbdtype_":"set","items":[1]}', {1}),
        ('{"_\\u0062dtype_":"tuple","items":[1]}', (1,)),
        ('[{"\\u005f_type__":"frozenset","items":[2]}]', [frozenset({2})]),
    ],
)
def test_an_escaped_marker_is_still_read_as_a_tag(text: str, expected: Any) -> None:
    assert same(decode(text.encode()), expected)


PUBLIC_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)


@settings(max_examples=300, deadline=None)
@given(st.one_of(json_like, wide_values, values))
def test_the_prebuilt_json_encoder_writes_what_json_does(value: Any) -> None:
    tree = codec._Encoder(None).value(value, "")  # what encode() gives json: no NaN, no cycle
    assert codec._dumps(tree) == PUBLIC_ENCODER.encode(tree)
