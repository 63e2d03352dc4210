"""Tagged JSON: plain UTF-8 JSON that round-trips Python values exactly.

Values JSON has no form for are written as small tagged objects, e.g.
``{"_bdtype_": "set", "items": [...]}`` or ``{"_bdtype_": "datetime", "value": "2024-01-01"}``,
the forms the original library (0.1.132+) wrote, so its data reads back. The older ``__type__``
marker is read too. A user dict that itself contains a marker key, or has non-str keys, is written
as ``{"_bdtype_": "dict", "items": [[key, value], ...]}`` so it never decodes as something else.
Subclasses (str and int enums, OrderedDict...) are written as their base type's value, as
``json.dumps`` writes them (``Color.RED`` of ``class Color(str, Enum)`` is ``"red"``, also as a
dict key), and so read back as the base type.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Callable
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

from .errors import SerializationError

__all__ = ["TYPE_MARKER", "decode", "encode"]

TYPE_MARKER = "_bdtype_"
_LEGACY_MARKER = "__type__"
_MARKERS = (TYPE_MARKER, _LEGACY_MARKER)
# Python refuses int <-> str conversions past 4300 digits by default; stay well below it.
_MAX_PLAIN_INT_BITS = 10_000

_Encoded = Any
_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode


class _Encoder:
    """One encoding pass; tracks the path for error messages and the containers being walked."""

    __slots__ = ("active",)

    def __init__(self) -> None:
        self.active: set[int] = set()

    def value(self, v: Any, path: str) -> _Encoded:
        t = type(v)
        if t is str or v is None or t is bool:
            return v
        if t is int:
            if v.bit_length() > _MAX_PLAIN_INT_BITS:
                return {TYPE_MARKER: "int", "value": hex(v)}
            return v
        if t is float:
            if math.isfinite(v):
                return v
            return {TYPE_MARKER: "float", "value": repr(v)}
        handler = _HANDLERS.get(t)
        if handler is None:
            handler = _handler_for_subclass(v)
            if handler is None:
                raise SerializationError(
                    f"cannot encode a value of type {t.__module__}.{t.__qualname__} "
                    f"at {path or 'the top level'}"
                )
        return handler(self, v, path)

    def guard(self, v: Any, path: str) -> int:
        ident = id(v)
        if ident in self.active:
            raise SerializationError(
                f"the value contains itself at {path or 'the top level'} (a recursive structure)"
            )
        self.active.add(ident)
        return ident

    def dict_(self, v: dict[Any, Any], path: str) -> _Encoded:
        ident = self.guard(v, path)
        try:
            if all(type(k) is str for k in v):
                if not any(m in v for m in _MARKERS):
                    return {k: self.value(item, f"{path}[{k!r}]") for k, item in v.items()}
            elif all(isinstance(k, str) for k in v):
                # str subclasses (str enums...) as keys: their text, as json.dumps writes it.
                plain = {str.__str__(k): item for k, item in v.items()}
                if len(plain) < len(v):
                    raise SerializationError(
                        f"two keys of the dict at {path or 'the top level'} have the same text"
                    )
                return self.dict_(plain, path)
            return {
                TYPE_MARKER: "dict",
                "items": [
                    [self.value(k, f"{path}<key {k!r}>"), self.value(item, f"{path}[{k!r}]")]
                    for k, item in v.items()
                ],
            }
        finally:
            self.active.discard(ident)

    def list_(self, v: list[Any], path: str) -> _Encoded:
        ident = self.guard(v, path)
        try:
            return [self.value(item, f"{path}[{i}]") for i, item in enumerate(v)]
        finally:
            self.active.discard(ident)

    def items(self, tag: str, v: Any, path: str, *, ordered: bool) -> _Encoded:
        ident = self.guard(v, path)
        try:
            encoded = [self.value(item, f"{path}<{tag} item>") for item in v]
        finally:
            self.active.discard(ident)
        if not ordered:
            # Sets have no order of their own: sort by encoded text so equal sets give equal bytes.
            encoded.sort(key=_canonical_text)
        return {TYPE_MARKER: tag, "items": encoded}


def _canonical_text(encoded: _Encoded) -> str:
    return json.dumps(encoded, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def _tagged(tag: str, fn: Callable[[Any], Any]) -> Callable[[_Encoder, Any, str], _Encoded]:
    return lambda _enc, v, _path: {TYPE_MARKER: tag, "value": fn(v)}


def _timedelta(_enc: _Encoder, v: timedelta, _path: str) -> _Encoded:
    return {
        TYPE_MARKER: "timedelta",
        "days": v.days,
        "seconds": v.seconds,
        "microseconds": v.microseconds,
    }


_HANDLERS: dict[type, Callable[[_Encoder, Any, str], _Encoded]] = {
    dict: _Encoder.dict_,
    list: _Encoder.list_,
    tuple: lambda enc, v, path: enc.items("tuple", v, path, ordered=True),
    set: lambda enc, v, path: enc.items("set", v, path, ordered=False),
    frozenset: lambda enc, v, path: enc.items("frozenset", v, path, ordered=False),
    bytes: _tagged("bytes", lambda v: base64.b64encode(v).decode("ascii")),
    bytearray: _tagged("bytearray", lambda v: base64.b64encode(v).decode("ascii")),
    datetime: _tagged("datetime", datetime.isoformat),
    date: _tagged("date", date.isoformat),
    time: _tagged("time", time.isoformat),
    timedelta: _timedelta,
    UUID: _tagged("uuid", str),
    Decimal: _tagged("decimal", str),
}

# Subclasses (OrderedDict, IntEnum, str enums, ...) encode as their base type; order matters
# because datetime is a date (bool cannot be subclassed).
_BASES: tuple[type, ...] = (
    int, float, str, dict, list, tuple, set, frozenset, bytes, bytearray,
    datetime, date, time, timedelta, UUID, Decimal,
)  # fmt: skip


# The base type's own conversion, never the subclass's: str(Color.RED) is "Color.RED" and a
# subclass may override __int__ or __float__, while json.dumps writes the underlying value.
_SCALAR_VALUE: dict[type, Callable[[Any], Any]] = {
    int: int.__int__,
    float: float.__float__,
    str: str.__str__,
}


def _handler_for_subclass(v: Any) -> Callable[[_Encoder, Any, str], _Encoded] | None:
    for base in _BASES:
        if isinstance(v, base):
            to_base = _SCALAR_VALUE.get(base)
            if to_base is not None:
                return _as_scalar(to_base)
            return _HANDLERS[base]
    return None


def _as_scalar(to_base: Callable[[Any], Any]) -> Callable[[_Encoder, Any, str], _Encoded]:
    def as_base(enc: _Encoder, x: Any, path: str) -> _Encoded:
        return enc.value(to_base(x), path)

    return as_base


def encode(value: Any) -> bytes:
    """Encode ``value`` as UTF-8 tagged JSON; raise SerializationError naming what failed."""
    try:
        return _dumps(_Encoder().value(value, "")).encode("utf-8")
    except SerializationError:
        raise
    except RecursionError:
        raise SerializationError("the value is nested too deeply to encode") from None
    except (TypeError, ValueError) as exc:
        raise SerializationError(f"cannot encode the value: {exc}") from None


def _items(d: dict[str, Any]) -> list[Any]:
    items = d["items"]
    if not isinstance(items, list):
        raise ValueError("'items' is not a list")
    return items


def _timedelta_from(d: dict[str, Any]) -> timedelta:
    if "value" in d:  # seconds as a number, a form other writers use
        return timedelta(seconds=d["value"])
    return timedelta(days=d["days"], seconds=d["seconds"], microseconds=d["microseconds"])


_DECODERS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "set": lambda d: set(_items(d)),
    "frozenset": lambda d: frozenset(_items(d)),
    "tuple": lambda d: tuple(_items(d)),
    "dict": lambda d: {k: v for k, v in _items(d)},
    "datetime": lambda d: datetime.fromisoformat(d["value"]),
    "date": lambda d: date.fromisoformat(d["value"]),
    "time": lambda d: time.fromisoformat(d["value"]),
    "timedelta": _timedelta_from,
    "uuid": lambda d: UUID(d["value"]),
    "decimal": lambda d: Decimal(d["value"]),
    "bytes": lambda d: base64.b64decode(d["value"], validate=True),
    "bytearray": lambda d: bytearray(base64.b64decode(d["value"], validate=True)),
    "float": lambda d: float(d["value"]),
    "int": lambda d: int(d["value"], 16),
}


def _object_hook(d: dict[str, Any]) -> Any:
    for marker in _MARKERS:
        tag = d.get(marker)
        if tag is not None:
            decoder = _DECODERS.get(tag) if isinstance(tag, str) else None
            # Foreign objects that merely use the marker name are returned as they are.
            if decoder is None:
                return d
            try:
                return decoder(d)
            except RecursionError:
                raise
            except Exception as exc:  # any malformed payload is a decode error, never a crash
                raise ValueError(f"malformed {tag!r} value: {exc!r}") from None
    return d


# One prebuilt decoder: json.loads with an object_hook would build a new one per call.
_loads = json.JSONDecoder(object_hook=_object_hook).decode


def decode(data: bytes | bytearray | memoryview) -> Any:
    """Decode tagged JSON bytes; raise SerializationError if they are not valid."""
    try:
        return _loads(bytes(data).decode("utf-8"))
    except RecursionError:
        raise SerializationError("the stored JSON is nested too deeply to decode") from None
    except (ValueError, TypeError, KeyError, OverflowError) as exc:
        # UnicodeDecodeError and JSONDecodeError are ValueErrors.
        raise SerializationError(f"stored bytes are not valid JSON: {exc}") from None
