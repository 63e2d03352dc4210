"""Service SAS tokens for a container or a blob, signed with the account key.

The string-to-sign is the Blob service's for SAS version 2020-12-06 and later
(https://learn.microsoft.com/rest/api/storageservices/create-service-sas).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import datetime, timedelta, timezone
from urllib.parse import quote

from ...keys import validate_key
from ..azure_connection import decode_account_key
from .client import DEFAULT_API_VERSION
from .names import validate_container_name

__all__ = ["SAS_VERSION", "generate_sas"]

SAS_VERSION = DEFAULT_API_VERSION
# The service wants permissions in this order.
_ORDER = "racwdxyltfmei"
_CONTAINER_ONLY = set("lf")


def _when(value: datetime | timedelta, now: datetime) -> str:
    if isinstance(value, timedelta):
        value = now + value
    if value.tzinfo is None:
        raise ValueError(
            "SAS times must be aware datetimes (e.g. datetime.now(timezone.utc) + ...) "
            "or timedeltas from now"
        )
    return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _permissions(permission: str, blob: bool) -> str:
    letters = set(permission)
    unknown = letters - set(_ORDER) | (letters & _CONTAINER_ONLY if blob else set())
    if not letters or unknown:
        allowed = "".join(c for c in _ORDER if not (blob and c in _CONTAINER_ONLY))
        raise ValueError(
            f"permission must be letters of {allowed!r} for a "
            f"{'blob' if blob else 'container'} SAS, got {permission!r}"
        )
    return "".join(c for c in _ORDER if c in letters)


def generate_sas(
    account_name: str,
    account_key: str,
    container: str,
    key: str | None = None,
    *,
    permission: str,
    expiry: datetime | timedelta,
    start: datetime | timedelta | None = None,
    protocol: str = "https",
    ip: str | None = None,
) -> str:
    """A service SAS token for ``container``, or for the blob ``key`` in it.

    ``permission``: letters of ``racwdxytmei`` (read, add, create, write, delete, ...; a
    container SAS may add ``l`` list and ``f`` find by tags), in any order.
    ``expiry`` and ``start``: aware datetimes, or timedeltas from now. ``protocol``:
    ``"https"`` (the default: the token is refused over plain HTTP) or ``"https,http"``.
    ``ip``: an address or range (``"10.0.0.1-10.0.0.9"``) the requests must come from.

    Returns the query string without ``?`` (``sv=...&sig=...``): append it to a URL, or
    pass it to ``AzureBlobAdapter(account_url, token)``.
    """
    validate_container_name(container)
    if key is not None:
        validate_key(key, container)
    if protocol not in ("https", "https,http"):
        raise ValueError("protocol must be 'https' or 'https,http'")
    raw_key = decode_account_key(account_key)
    now = datetime.now(timezone.utc)
    fields = {
        "sp": _permissions(permission, blob=key is not None),
        "st": _when(start, now) if start is not None else "",
        "se": _when(expiry, now),
        "sip": ip or "",
        "spr": protocol,
        "sv": SAS_VERSION,
        "sr": "b" if key is not None else "c",
    }
    if fields["st"] and fields["st"] >= fields["se"]:
        raise ValueError("the SAS expiry must come after its start")
    resource = f"/blob/{account_name}/{container}" + (f"/{key}" if key is not None else "")
    string_to_sign = "\n".join(
        [
            fields["sp"],
            fields["st"],
            fields["se"],
            resource,
            "",  # signed identifier (stored access policy)
            fields["sip"],
            fields["spr"],
            fields["sv"],
            fields["sr"],
            "",  # snapshot time
            "",  # encryption scope
            "",  # rscc: Cache-Control
            "",  # rscd: Content-Disposition
            "",  # rsce: Content-Encoding
            "",  # rscl: Content-Language
            "",  # rsct: Content-Type
        ]
    )
    digest = hmac.new(raw_key, string_to_sign.encode("utf-8"), hashlib.sha256).digest()
    fields["sig"] = base64.b64encode(digest).decode("ascii")
    return "&".join(f"{name}={quote(value, safe='')}" for name, value in fields.items() if value)
