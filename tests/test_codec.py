"""The codec's exact round trip, as a property, and its error paths."""

from __future__ import annotations

import json
import math
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from enum import Enum, IntEnum
from typing import Any
from uuid import UUID

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from asyncblobdict import SerializationError
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
        return a == b and a.utcoffset() == b.utcoffset()
    if isinstance(a, Decimal):
        return a.as_tuple() == b.as_tuple()
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
