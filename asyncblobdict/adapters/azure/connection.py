"""Connection strings and account URLs (kept for compatibility).

The parser lives in :mod:`asyncblobdict.adapters.azure_connection`, which needs the standard
library only; importing this module runs ``asyncblobdict.adapters.azure``, and so imports
aiohttp.
"""

from __future__ import annotations

from ..azure_connection import (
    DEV_ACCOUNT_KEY,
    DEV_ACCOUNT_NAME,
    DEV_BLOB_ENDPOINT,
    ConnectionInfo,
    ConnectionStringError,
    account_label,
    connection_string_secrets,
    decode_account_key,
    parse_account_url,
    parse_connection_string,
)

__all__ = [
    "DEV_ACCOUNT_KEY",
    "DEV_ACCOUNT_NAME",
    "DEV_BLOB_ENDPOINT",
    "ConnectionInfo",
    "ConnectionStringError",
    "account_label",
    "connection_string_secrets",
    "decode_account_key",
    "parse_account_url",
    "parse_connection_string",
]
