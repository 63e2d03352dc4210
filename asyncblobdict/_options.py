"""What a store call was given, shared by the store's modules: the no-default sentinel, and
a write's content type and metadata (with its expiry)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from .adapters.base import validate_content_type, validate_metadata
from .expiry import EXPIRES_METADATA, check_user_metadata, format_expiry

__all__ = ["JSON_CONTENT_TYPE", "_NO_DEFAULT", "_Extra", "_extra", "_with_expiry"]

_NO_DEFAULT: Final = object()
"""The ``default=`` of a call given none (None is a default like any other)."""
JSON_CONTENT_TYPE: Final = "application/json"

_Extra = tuple["str | None", "dict[str, str] | None"]
"""Content type and metadata of a write."""


def _extra(content_type: str | None, metadata: Mapping[str, str] | None) -> _Extra:
    """Check a write's content type and metadata before any I/O."""
    names = validate_metadata(metadata)
    check_user_metadata(names)
    return validate_content_type(content_type), names or None


def _with_expiry(extra: _Extra, expires: float | None) -> _Extra:
    """``extra`` with its expiry replaced by ``expires`` (None: no expiry)."""
    content_type, metadata = extra
    names = {k: v for k, v in (metadata or {}).items() if k != EXPIRES_METADATA}
    if expires is not None:
        names[EXPIRES_METADATA] = format_expiry(expires)
    return content_type, names or None
