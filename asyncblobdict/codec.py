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
import dataclasses
import json
import math
import sys
from collections.abc import Callable, Iterable
from datetime import date, datetime, time, timedelta
from enum import Enum
from pathlib import Path, PurePath
from typing import TYPE_CHECKING, Any, TypeVar

from .errors import SerializationError

if TYPE_CHECKING:
    from decimal import Decimal
    from uuid import UUID

# dataclasses, enum and pathlib cost nothing here: the package imports them anyway.

__all__ = ["TYPE_MARKER", "TypeRegistry", "decode", "encode"]

TYPE_MARKER = "_bdtype_"
_LEGACY_MARKER = "__type__"
_MARKERS = (TYPE_MARKER, _LEGACY_MARKER)
# Python refuses int <-> str conversions past 4300 digits by default; stay well below it.
_MAX_PLAIN_INT_BITS = 10_000

_Encoded = Any


def _compact_dumps() -> Callable[[Any], str]:
    """``JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode``.

    Its C encoder is made once here rather than on every call (which is what ``encode``
    does, about a third of its time for a small value), with no cycle check: the values it
    gets have none (the fast path's depth cap and the walk's guard see to that).
    """
    encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:  # no C accelerator in this Python
        return encoder.encode
    iterencode = make(
        None, encoder.default, json.encoder.encode_basestring, None, ":", ",", False, False, False
    )
    return lambda value: "".join(iterencode(value, 0))


_dumps = _compact_dumps()
_C = TypeVar("_C", bound=type)
_PLAIN = (str, int, float, bool, type(None))


class _TypeCodec:
    """A registered class's name and conversions (a plain class: NamedTuple is slow to import)."""

    __slots__ = ("decode", "encode", "name")

    def __init__(
        self, name: str, encode: Callable[[Any], Any], decode: Callable[[Any], Any]
    ) -> None:
        self.name, self.encode, self.decode = name, encode, decode


class TypeRegistry:
    """Classes the JSON codec of a store can write and read back exactly, each under a name.

    A value of a registered class (its exact type) is written as
    ``{"_bdtype_": name, "value": encode(value)}``; ``encode`` may return anything the codec
    can write, and ``decode`` gets that back, decoded. Pass the registry to the store:
    ``AsyncBlobStore(..., types=registry)``; a store without it reads such values as the
    tagged dicts they are.
    """

    __slots__ = ("_by_name", "_by_type", "_loads")

    def __init__(self, *classes: type) -> None:
        self._by_type: dict[type, _TypeCodec] = {}
        self._by_name: dict[str, type] = {}
        self._loads: Callable[[str], Any] | None = None
        for cls in classes:
            self.register(cls)

    def __repr__(self) -> str:
        return f"TypeRegistry({', '.join(sorted(self._by_name))})"

    def __contains__(self, cls: object) -> bool:
        return cls in self._by_type

    def register(
        self,
        cls: _C,
        name: str | None = None,
        *,
        encode: Callable[[Any], Any] | None = None,
        decode: Callable[[Any], Any] | None = None,
    ) -> _C:
        """Register ``cls`` under ``name`` (default: its ``__qualname__``) and return it.

        A dataclass or an ``Enum`` needs only the class: a dataclass is written as an object
        of its fields and rebuilt with them, an enum member as its value and read back as
        ``cls(value)``. Any other class needs both ``encode`` and ``decode``. Registering a
        class again replaces its codec; usable as a class decorator.
        """
        if not isinstance(cls, type):
            raise TypeError(f"register() needs a class, not {cls!r}")
        name = cls.__qualname__ if name is None else name
        if not isinstance(name, str) or not name:
            raise ValueError("a type name must be a non-empty str")
        _add_late_types()
        if cls in _HANDLERS or cls in _PLAIN:
            raise ValueError(f"{_type_name(cls)} is written by the codec itself")
        if name in _DECODERS:
            raise ValueError(f"{name!r} is a built-in type name; pass another name=")
        owner = self._by_name.get(name)
        if owner is not None and owner is not cls:
            raise ValueError(
                f"{name!r} is already the name of {_type_name(owner)}; pass another name="
            )
        if (encode is None) != (decode is None):
            raise TypeError("pass both encode= and decode=, or neither")
        if encode is None or decode is None:
            if issubclass(cls, Enum):
                encode, decode = _enum_value, cls
            elif dataclasses.is_dataclass(cls):
                encode, decode = _fields_of, _dataclass_builder(cls)
            else:
                raise TypeError(
                    f"{_type_name(cls)} is not a dataclass or an Enum: pass encode= and decode="
                )
        old = self._by_type.get(cls)
        if old is not None:
            del self._by_name[old.name]
        self._by_type[cls] = _TypeCodec(name, encode, decode)
        self._by_name[name] = cls
        self._loads = None
        return cls

    def _decoder(self) -> Callable[[str], Any]:
        """json.loads for this registry (built once per change of registrations)."""
        loads = self._loads
        if loads is None:
            decoders = dict(_DECODERS)
            for codec in self._by_type.values():
                decoders[codec.name] = _value_decoder(codec.decode)
            loads = self._loads = json.JSONDecoder(object_hook=_object_hook_for(decoders)).decode
        return loads


def _type_name(t: type) -> str:
    return f"{t.__module__}.{t.__qualname__}"


def _enum_value(member: Any) -> Any:
    return member.value


def _fields_of(obj: Any) -> dict[str, Any]:
    """A dataclass instance's fields by name, as ``dataclasses.asdict`` would list them."""
    return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}


def _dataclass_builder(cls: type) -> Callable[[Any], Any]:
    fields = dataclasses.fields(cls)
    in_init = {f.name for f in fields if f.init}
    later = {f.name for f in fields if not f.init}

    def build(value: Any) -> Any:
        if not isinstance(value, dict):
            raise TypeError(f"the fields of {cls.__qualname__} are not an object")
        unknown = [k for k in value if k not in in_init and k not in later]
        if unknown:
            raise TypeError(f"{cls.__qualname__} has no field(s) {unknown}")
        obj = cls(**{k: v for k, v in value.items() if k in in_init})
        # Fields outside __init__ get their stored value (frozen dataclasses too).
        for k in later.intersection(value):
            object.__setattr__(obj, k, value[k])
        return obj

    return build


def _value_decoder(fn: Callable[[Any], Any]) -> Callable[[dict[str, Any]], Any]:
    return lambda d: fn(d["value"])


class _Encoder:
    """One encoding pass; tracks the path for error messages and the containers being walked."""

    __slots__ = ("active", "types")

    def __init__(self, types: TypeRegistry | None) -> None:
        self.active: set[int] = set()
        self.types = types

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
            return self.other(v, t, path)
        return handler(self, v, path)

    def other(self, v: Any, t: type, path: str) -> _Encoded:
        """A value of a type without a handler of its own (kept off the path of plain values)."""
        if _add_late_types():
            handler = _HANDLERS.get(t)
            if handler is not None:
                return handler(self, v, path)
        if self.types is not None:
            codec = self.types._by_type.get(t)
            if codec is not None:
                return self.registered(codec, v, path)
        handler = _handler_for_subclass(v)
        if handler is not None:
            return handler(self, v, path)
        if isinstance(v, Enum):
            return self.value(v.value, path)
        if dataclasses.is_dataclass(t):  # the type: a dataclass's class object is no value
            return self.with_guard(v, path, _fields_of)
        if isinstance(v, PurePath):
            return {TYPE_MARKER: "path", "value": str(v)}
        if t.__module__ == "numpy" and getattr(v, "ndim", None) == 0:
            # A numpy scalar (or 0-d array): its Python value, as numpy's .item() gives it.
            return self.with_guard(v, path, lambda x: x.item())
        raise SerializationError(
            f"cannot encode a value of type {_type_name(t)} at {path or 'the top level'}; "
            f"to store it, register the class with TypeRegistry.register({t.__qualname__}, "
            "encode=..., decode=...) and pass the registry as AsyncBlobStore(..., types=...)"
        )

    def with_guard(self, v: Any, path: str, convert: Callable[[Any], Any]) -> _Encoded:
        """Encode ``convert(v)`` in place of ``v``, which must not appear inside it."""
        ident = self.guard(v, path)
        try:
            return self.value(convert(v), path)
        finally:
            self.active.discard(ident)

    def registered(self, codec: _TypeCodec, v: Any, path: str) -> _Encoded:
        def convert(x: Any) -> Any:
            try:
                return codec.encode(x)
            except Exception as exc:  # the user's code: any failure is an encoding error
                raise SerializationError(
                    f"the encoder of type {codec.name!r} failed at "
                    f"{path or 'the top level'}: {exc!r}"
                ) from exc

        return {TYPE_MARKER: codec.name, "value": self.with_guard(v, path, convert)}

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
}

# Subclasses (OrderedDict, IntEnum, str enums, ...) encode as their base type; order matters
# because datetime is a date (bool cannot be subclassed).
_BASES: tuple[type, ...] = (
    int, float, str, dict, list, tuple, set, frozenset, bytes, bytearray,
    datetime, date, time, timedelta,
)  # fmt: skip

# uuid.UUID and decimal.Decimal join the tables above once their module is loaded: a value of
# either type cannot exist before, and importing them (uuid brings platform) would cost more
# than the rest of the codec on `import asyncblobdict`.
_LATE_TYPES = {"uuid": ("UUID", "uuid"), "decimal": ("Decimal", "decimal")}


def _add_late_types() -> bool:
    """Add the handlers of the late types whose module is loaded; True if any was added."""
    global _BASES
    added = False
    for module, (cls_name, tag) in tuple(_LATE_TYPES.items()):
        loaded = sys.modules.get(module)
        cls = getattr(loaded, cls_name, None)  # None also while the module is being imported
        if isinstance(cls, type):
            _HANDLERS[cls] = _tagged(tag, str)
            _BASES = (*_BASES, cls)
            _LATE_TYPES.pop(module, None)
            added = True
    return added


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


# How deep the fast path looks before leaving a value to the walk (which has its own limit).
_FAST_DEPTH = 32


def _is_plain(v: Any, depth: int) -> bool:
    """Whether ``v`` is JSON as it is, so the walk would give it back unchanged.

    Only the exact types dict (str keys, no marker key), list, str, int (up to the plain-int
    size), finite float, bool and None qualify, nested at most ``depth`` containers deep;
    anything else (subclasses, tuples, NaN, a structure containing itself...) needs the walk.
    Scalars inside containers are checked inline: a call per item would cost most of the gain.
    """
    t = type(v)
    items: Iterable[Any]
    if t is dict:
        if depth <= 0 or TYPE_MARKER in v or _LEGACY_MARKER in v:
            return False
        for k in v:
            if type(k) is not str:
                return False
        items = v.values()
    elif t is list:
        if depth <= 0:
            return False
        items = v
    else:
        return _is_plain_scalar(v, t)
    depth -= 1
    for item in items:
        t = type(item)
        if t is str or t is bool or item is None:
            continue
        if t is int:
            if item.bit_length() > _MAX_PLAIN_INT_BITS:
                return False
        elif t is float:
            if item - item != 0.0:  # NaN or ±inf
                return False
        elif not _is_plain(item, depth):
            return False
    return True


def _is_plain_scalar(v: Any, t: type) -> bool:
    if t is str or t is bool or v is None:
        return True
    if t is int:
        return bool(v.bit_length() <= _MAX_PLAIN_INT_BITS)
    if t is float:
        return bool(v - v == 0.0)
    return False


def encode(value: Any, types: TypeRegistry | None = None) -> bytes:
    """Encode ``value`` as UTF-8 tagged JSON; raise SerializationError naming what failed.

    ``types`` adds the classes of a registry to the built-in ones.
    """
    try:
        if _is_plain(value, _FAST_DEPTH):
            # Plain JSON: the walk would rebuild it unchanged, so its bytes are the same.
            return _dumps(value).encode("utf-8")
        return _dumps(_Encoder(types).value(value, "")).encode("utf-8")
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


def _uuid(text: str) -> UUID:
    from uuid import UUID

    return UUID(text)


def _decimal(text: str) -> Decimal:
    from decimal import Decimal

    return Decimal(text)


_DECODERS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "set": lambda d: set(_items(d)),
    "frozenset": lambda d: frozenset(_items(d)),
    "tuple": lambda d: tuple(_items(d)),
    "dict": lambda d: {k: v for k, v in _items(d)},
    "datetime": lambda d: datetime.fromisoformat(d["value"]),
    "date": lambda d: date.fromisoformat(d["value"]),
    "time": lambda d: time.fromisoformat(d["value"]),
    "timedelta": _timedelta_from,
    "uuid": lambda d: _uuid(d["value"]),
    "decimal": lambda d: _decimal(d["value"]),
    "bytes": lambda d: base64.b64decode(d["value"], validate=True),
    "bytearray": lambda d: bytearray(base64.b64decode(d["value"], validate=True)),
    "float": lambda d: float(d["value"]),
    "int": lambda d: int(d["value"], 16),
    "path": lambda d: Path(d["value"]),
}


def _object_hook_for(
    decoders: dict[str, Callable[[dict[str, Any]], Any]],
) -> Callable[[dict[str, Any]], Any]:
    def object_hook(d: dict[str, Any]) -> Any:
        for marker in _MARKERS:
            tag = d.get(marker)
            if tag is not None:
                decoder = decoders.get(tag) if isinstance(tag, str) else None
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

    return object_hook


# One prebuilt decoder: json.loads with an object_hook would build a new one per call.
_loads = json.JSONDecoder(object_hook=_object_hook_for(_DECODERS)).decode
_plain_loads = json.JSONDecoder().decode


def _plain_text(text: str) -> bool:
    # No marker key can be in the text (only a \u escape could spell one).
    return _MARKERS[0] not in text and _MARKERS[1] not in text and "\\u" not in text


def decodes_plain(data: bytes) -> bool:
    """Whether ``data`` (valid UTF-8 JSON) can only decode to JSON's own types: dict, list,
    str, int, float, bool and None, never a tagged one."""
    return _plain_text(data.decode("utf-8", "replace"))


def decode(data: bytes | bytearray | memoryview, types: TypeRegistry | None = None) -> Any:
    """Decode tagged JSON bytes; raise SerializationError if they are not valid.

    ``types`` reads the classes of a registry back as themselves.
    """
    try:
        text = bytes(data).decode("utf-8")
        if not _plain_text(text):
            return (_loads if types is None else types._decoder())(text)
        return _plain_loads(text)  # no tag possible: no object_hook
    except RecursionError:
        raise SerializationError("the stored JSON is nested too deeply to decode") from None
    except (ValueError, TypeError, KeyError, OverflowError) as exc:
        # UnicodeDecodeError and JSONDecodeError are ValueErrors.
        raise SerializationError(f"stored bytes are not valid JSON: {exc}") from None
