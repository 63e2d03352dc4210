"""Azure naming rules: container names and how a key becomes a URL path."""

from __future__ import annotations

import re
from urllib.parse import quote

from ...errors import InvalidKeyError

__all__ = ["blob_path", "validate_container_name"]

# 3-63 characters; lowercase letters, digits and single hyphens; starts and ends with a
# letter or digit (https://learn.microsoft.com/rest/api/storageservices/naming-and-referencing-
# containers--blobs--and-metadata).
_CONTAINER = re.compile(r"[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){2,62}")


def validate_container_name(container: object) -> str:
    """Return ``container`` if Azure accepts it as a container name, else raise InvalidKeyError."""
    if not isinstance(container, str):
        raise InvalidKeyError(f"container name must be a str, not {type(container).__name__}")
    if _CONTAINER.fullmatch(container) is None:
        raise InvalidKeyError(
            f"invalid Azure container name {container!r}: use 3-63 lowercase letters, digits "
            "and single hyphens, starting and ending with a letter or digit"
        )
    return container


def blob_path(container: str, key: str | None = None) -> str:
    """The percent-encoded path of a container or blob, exactly as sent and signed.

    Encoded once: '/' stays a separator, everything outside the unreserved set is escaped
    (so ' ', '+', '%', '&', '?', '#' and non-ASCII survive the trip unchanged).
    """
    if key is None:
        return "/" + container
    return "/" + container + "/" + quote(key, safe="/")
