"""Key rules shared by every backend, so the same key names the same blob everywhere."""

from __future__ import annotations

import re

from .errors import InvalidKeyError

__all__ = ["MAX_KEY_LENGTH", "validate_folder_container", "validate_key", "validate_prefix"]

MAX_KEY_LENGTH = 1024


# An empty, '.' or '..' segment: at the start, between slashes, or at the end.
_BAD_SEGMENT = re.compile(r"(?:^|/)\.{0,2}(?:/|$)")
# Unicode non-characters: U+FDD0..U+FDEF and the last two code points of every plane. They are
# for a program's internal use, not for interchange: Azurite cannot even list a container that
# holds a blob named with U+FFFF.
_NONCHARACTERS = "\ufdd0-\ufdef" + "".join(
    chr(plane << 16 | 0xFFFE) + chr(plane << 16 | 0xFFFF) for plane in range(17)
)
# Control characters (C0, DEL, C1), backslash, lone surrogates and non-characters are never
# allowed.
_FORBIDDEN = re.compile(f"[\x00-\x1f\x7f-\x9f\\\\\ud800-\udfff{_NONCHARACTERS}]")


# Keys found valid lately: the store checks a key, then the adapter it calls checks the same
# key again (it may be called directly too); the second check is this lookup. Only valid keys
# are kept, and validity depends on the key alone.
_RECENT: set[str] = set()
_RECENT_MAX = 32  # enough for the hand-off; more would only hold keys alive


def _check_text(text: str, what: str, container: str | None) -> None:
    # Printable ASCII without a backslash, the common case, holds none of the forbidden.
    if text.isascii() and text.isprintable() and "\\" not in text:
        return
    bad = _FORBIDDEN.search(text)
    if bad is None:
        return
    ch = bad.group()
    if ch == "\\":
        reason = "a backslash"
    elif 0xD800 <= ord(ch) <= 0xDFFF:
        reason = "a lone surrogate"
    elif ord(ch) >= 0xFDD0:
        reason = f"the Unicode non-character U+{ord(ch):04X}"
    else:
        reason = f"control character U+{ord(ch):04X}"
    raise InvalidKeyError(f"{what} contains {reason}", container=container, key=text)


def validate_key(key: object, container: str | None = None) -> str:
    """Return ``key`` if it is a valid key, else raise InvalidKeyError.

    A key is a non-empty str of at most 1024 characters made of ``/``-separated segments;
    no segment is empty, ``.`` or ``..``; no backslash, control character, lone surrogate or
    Unicode non-character (U+FDD0 to U+FDEF, U+FFFE and U+FFFF of every plane).
    """
    if type(key) is str and key in _RECENT:
        return key
    if not isinstance(key, str):
        raise InvalidKeyError(f"key must be a str, not {type(key).__name__}", container=container)
    if not key:
        raise InvalidKeyError("key must not be empty", container=container, key=key)
    if len(key) > MAX_KEY_LENGTH:
        raise InvalidKeyError(
            f"key is {len(key)} characters long; the limit is {MAX_KEY_LENGTH}",
            container=container,
            key=key[:64] + "...",
        )
    _check_text(key, "key", container)
    if (key[0] == "/" or key[-1] == "/" or "//" in key or "." in key) and _BAD_SEGMENT.search(
        key
    ) is not None:
        raise InvalidKeyError(
            "key segments must not be empty, '.' or '..' (no leading, trailing or doubled '/')",
            container=container,
            key=key,
        )
    if type(key) is str:  # a str subclass may hash or compare as it likes
        if len(_RECENT) >= _RECENT_MAX:
            _RECENT.clear()
        _RECENT.add(key)
    return key


def validate_prefix(prefix: object, container: str | None = None) -> str:
    """Return ``prefix`` if it could begin a valid key ('' lists everything)."""
    if not isinstance(prefix, str):
        raise InvalidKeyError(
            f"prefix must be a str, not {type(prefix).__name__}", container=container
        )
    if len(prefix) > MAX_KEY_LENGTH:
        raise InvalidKeyError("prefix is longer than any key can be", container=container)
    _check_text(prefix, "prefix", container)
    return prefix


_CONTAINER_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")


def validate_folder_container(container: object) -> str:
    """Container rule of the local and memory adapters: one folder name.

    Letters, digits, ``.``, ``_`` and ``-``; 1 to 255 characters; never ``.`` or ``..``.
    """
    if not isinstance(container, str):
        raise InvalidKeyError(f"container name must be a str, not {type(container).__name__}")
    if (
        not container
        or len(container) > 255
        or container in (".", "..")
        or not set(container) <= _CONTAINER_CHARS
    ):
        raise InvalidKeyError(
            f"invalid container name {container!r}: use 1-255 letters, digits, '.', '_' "
            "or '-' (not '.' or '..')"
        )
    return container
