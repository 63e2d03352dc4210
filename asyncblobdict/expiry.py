"""Expiry of values: the ``ttl=`` of a write, stored with the value as metadata.

A value written with ``ttl`` carries the metadata entry :data:`EXPIRES_METADATA`
(``abdexpires``): its absolute expiry time as UTC seconds since the Unix epoch, a decimal
string with millisecond precision (``"1767225600.250"``, rounded up), computed from the
writer's clock when the write is made. Any tool (and any backend) can read it; the store
compares it with the reader's clock, so a value whose expiry has come reads as missing. The
name is reserved: user metadata may not use it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from typing import Final

from .errors import InvalidKeyError, InvalidTTLError

__all__ = [
    "EXPIRES_METADATA",
    "MAX_EXPIRY",
    "Ttl",
    "check_user_metadata",
    "expires_at",
    "expiry_datetime",
    "expiry_of",
    "format_expiry",
    "ttl_seconds",
]

EXPIRES_METADATA: Final = "abdexpires"
"""The reserved metadata name holding a value's expiry time."""

MAX_EXPIRY: Final = 253402300799.0
"""9999-12-31T23:59:59Z: the latest expiry a ``datetime`` can show."""

Ttl = float | int | timedelta
"""What ``ttl=`` accepts: seconds (int or float, > 0) or a positive timedelta."""

_STORED: Final = re.compile(r"[0-9]{1,12}(\.[0-9]{1,9})?\Z", re.ASCII)


def ttl_seconds(ttl: object) -> float:
    """``ttl`` as seconds; InvalidTTLError unless it is a finite number or timedelta > 0."""
    if isinstance(ttl, timedelta):
        seconds = ttl.total_seconds()
    elif isinstance(ttl, (int, float)) and not isinstance(ttl, bool):
        try:
            seconds = float(ttl)
        except OverflowError:  # an int too large for a float
            raise InvalidTTLError(f"ttl {ttl!r} is too large") from None
    else:
        raise InvalidTTLError(
            f"ttl must be seconds (int or float) or a timedelta, not {type(ttl).__name__}"
        )
    if not math.isfinite(seconds) or seconds <= 0:
        raise InvalidTTLError(f"ttl must be a finite duration > 0, not {ttl!r}")
    return seconds


def expires_at(now: float, ttl: object) -> float:
    """The expiry time of a value written at ``now`` (epoch seconds) with ``ttl``."""
    when = now + ttl_seconds(ttl)
    if when > MAX_EXPIRY:
        raise InvalidTTLError(f"ttl {ttl!r} is too large: the value would expire after 9999")
    return when


def format_expiry(when: float) -> str:
    """The stored form of an expiry time: milliseconds, rounded up (a value never expires
    before its ``ttl`` has passed)."""
    millis = round(when * 1000)
    if millis / 1000 < when:
        millis += 1
    return f"{max(millis, 1) // 1000}.{max(millis, 1) % 1000:03d}"


def expiry_of(metadata: Mapping[str, str] | None) -> float | None:
    """The expiry time stored in ``metadata``, or None for none (or one that is not ours:
    a value another tool stored under the name that is not in our form never expires)."""
    if not metadata:
        return None
    raw = metadata.get(EXPIRES_METADATA)
    if raw is None or _STORED.match(raw) is None:
        return None
    return float(raw)


def expiry_datetime(when: float | None) -> datetime | None:
    """An expiry time as an aware UTC datetime (None stays None)."""
    if when is None:
        return None
    return datetime.fromtimestamp(min(when, MAX_EXPIRY), timezone.utc)


def check_user_metadata(
    metadata: Mapping[str, str] | None, container: str | None = None, key: str | None = None
) -> None:
    """Refuse the reserved name in metadata given by a caller (it names a ``ttl``)."""
    if metadata and EXPIRES_METADATA in metadata:
        raise InvalidKeyError(
            f"metadata name {EXPIRES_METADATA!r} is reserved for the expiry time; "
            "use ttl= to make a value expire",
            container=container,
            key=key,
        )
