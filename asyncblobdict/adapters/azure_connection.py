"""Connection strings and account URLs: where the account is and how to authenticate.

The one parser of Azure Storage connection strings. Standard library only, so the command line
and ``open_store`` can read a connection string without importing aiohttp (importing anything
under ``asyncblobdict.adapters.azure`` does); ``asyncblobdict.adapters.azure.connection``
re-exports it.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from ipaddress import ip_address
from urllib.parse import urlsplit

from ..errors import AsyncBlobDictError

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

# The well-known Azurite / storage emulator account (public, documented by Microsoft).
DEV_ACCOUNT_NAME = "devstoreaccount1"
DEV_ACCOUNT_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)
DEV_BLOB_ENDPOINT = "http://127.0.0.1:10000/devstoreaccount1"


class ConnectionStringError(AsyncBlobDictError, ValueError):
    """A connection string, account URL or credential is malformed.

    The message says what is wrong without repeating the key or SAS signature.
    """


@dataclass(frozen=True, slots=True)
class ConnectionInfo:
    """What a connection string says: endpoint, account name and one credential.

    ``account_key`` and ``sas_token`` are secrets and are left out of the repr.
    """

    endpoint: str
    account_name: str
    account_key: bytes | None = None
    sas_token: str | None = None

    def __repr__(self) -> str:
        kind = "key" if self.account_key else "sas" if self.sas_token else "none"
        return (
            f"ConnectionInfo(endpoint={self.endpoint!r}, account_name={self.account_name!r}, "
            f"credential={kind})"
        )


def decode_account_key(key: str) -> bytes:
    """Decode a base64 account key, raising ConnectionStringError (without echoing it)."""
    try:
        raw = base64.b64decode(key.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ConnectionStringError("the account key is not valid base64") from None
    if not raw:
        raise ConnectionStringError("the account key is empty")
    return raw


def _is_path_style_host(host: str) -> bool:
    # Azurite and other emulators put the account in the path: IP hosts, localhost, or any
    # host that is not of the form <account>.blob.<suffix>.
    if host == "localhost":
        return True
    try:
        ip_address(host)
    except ValueError:
        return False
    return True


def parse_account_url(url: str, what: str = "account URL") -> tuple[str, str, str | None]:
    """Split an account URL into (endpoint without query, account name, SAS token or None).

    Path-style URLs (``http://127.0.0.1:10000/devstoreaccount1``) name the account in their
    first path segment; virtual-host URLs (``https://acct.blob.core.windows.net``) in the
    first label of the host. A malformed host or port, or a ``user:password@`` part, raises
    ConnectionStringError now rather than at the first request; ``what`` names the URL in
    the message, which never repeats the URL (it may carry a password or a SAS signature).
    """
    if not isinstance(url, str) or not url.strip():
        raise ConnectionStringError(f"{what} must be a non-empty str")
    try:
        parts = urlsplit(url.strip())
    except ValueError:  # e.g. an unclosed or invalid [IPv6] host
        raise ConnectionStringError(f"{what} is malformed (check the host)") from None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise ConnectionStringError(f"{what} must start with http:// or https:// and a host")
    if "@" in parts.netloc:
        raise ConnectionStringError(
            f"{what} must not contain a user name or password (user:password@host); "
            "pass the account key, SAS token or token credential as the credential"
        )
    # The text after the host (and after an [IPv6] literal's bracket): urlsplit checks it only
    # when .port is read, and accepts "1_0" or full-width digits that aiohttp does not.
    port = parts.netloc.rpartition("]")[2].partition(":")[2]
    if port and not (port.isascii() and port.isdigit() and 0 < int(port) <= 65535):
        raise ConnectionStringError(f"{what} has an invalid port: use a number from 1 to 65535")
    _check_host(parts.hostname, what)
    path = parts.path.rstrip("/")
    segments = [s for s in path.split("/") if s]
    if segments:
        account = segments[0]
    elif _is_path_style_host(parts.hostname):
        raise ConnectionStringError(
            f"{what} on an IP address or localhost must name the account in its path "
            "(e.g. http://127.0.0.1:10000/devstoreaccount1)"
        )
    else:
        account = parts.hostname.split(".")[0]
    endpoint = f"{parts.scheme.lower()}://{parts.netloc}{path}"
    sas = parts.query if "sig=" in parts.query else None
    return endpoint, account, sas


# Letters, digits, '-' and '_' (container hosts such as azurite_1) in dot-separated labels.
_HOST_LABEL = re.compile(r"[A-Za-z0-9_-]{1,63}")


def _check_host(hostname: str, what: str) -> None:
    """Refuse a host aiohttp could not connect to (an empty label, a space...)."""
    if ":" in hostname:  # an IPv6 literal; urlsplit has already checked it
        return
    try:
        ascii_host = hostname.encode("idna").decode("ascii")
    except UnicodeError:
        ascii_host = ""
    labels = ascii_host[:-1] if ascii_host.endswith(".") else ascii_host
    if not labels or not all(_HOST_LABEL.fullmatch(label) for label in labels.split(".")):
        raise ConnectionStringError(f"{what} has an invalid host name")


def _fields(conn_str: str, *, strict: bool) -> dict[str, str]:
    """The ``Name=Value`` fields of a connection string, names lower-cased.

    ``strict``: a segment that is not ``Name=Value`` is an error (never repeating it, as it
    may hold a secret); otherwise it is skipped.
    """
    fields: dict[str, str] = {}
    for index, segment in enumerate(conn_str.split(";"), start=1):
        if not segment.strip():
            continue
        name, sep, value = segment.partition("=")
        if not sep or not name.strip():
            if strict:
                raise ConnectionStringError(
                    f"connection string segment {index} is not of the form Name=Value"
                )
            continue
        fields[name.strip().lower()] = value.strip()
    return fields


def account_label(conn_str: str) -> str:
    """Which account a connection string names, safe to show: never a key or a password.

    Lenient: a malformed string gives a vaguer label rather than an error.
    """
    fields = _fields(conn_str, strict=False)
    if fields.get("usedevelopmentstorage", "").lower() == "true":
        return "development storage"
    if fields.get("accountname"):
        return f"account {fields['accountname']}"
    # Never a user:password@ part (parse_account_url refuses one, but a label may come first).
    match = re.match(r"[a-z]+://(?:[^/?;@]*@)?([^/?;@]+)", fields.get("blobendpoint", ""), re.I)
    return f"endpoint {match.group(1)}" if match else "account"


def connection_string_secrets(conn_str: str) -> list[str]:
    """The secret parts of a connection string, whole string first, to hide from any text.

    Lenient, as it must also cover a malformed string (a typo in ``AccountKey``).
    """
    if not conn_str:
        return []
    fields = _fields(conn_str, strict=False)
    found = [conn_str]
    for name in ("accountkey", "sharedaccesssignature"):
        if fields.get(name):
            found.append(fields[name])
    found += re.findall(r"(?i)[?&;]sig=([^&;\s]+)", conn_str)
    return found


def parse_connection_string(conn_str: str) -> ConnectionInfo:
    """Parse an Azure Storage connection string.

    Accepts account-key strings (DefaultEndpointsProtocol, AccountName, AccountKey,
    EndpointSuffix or BlobEndpoint), SAS strings (BlobEndpoint + SharedAccessSignature) and
    ``UseDevelopmentStorage=true``. Names are case-insensitive and spaces around ``=`` and
    ``;`` are ignored. Errors never repeat the key or signature.
    """
    if not isinstance(conn_str, str):
        raise ConnectionStringError(
            f"connection string must be a str, not {type(conn_str).__name__}"
        )
    fields = _fields(conn_str, strict=True)
    if not fields:
        raise ConnectionStringError("connection string is empty")

    if fields.get("usedevelopmentstorage", "").lower() == "true":
        endpoint = fields.get("blobendpoint") or DEV_BLOB_ENDPOINT
        endpoint = parse_account_url(endpoint, "BlobEndpoint")[0]
        return ConnectionInfo(endpoint, DEV_ACCOUNT_NAME, decode_account_key(DEV_ACCOUNT_KEY))

    account_name = fields.get("accountname") or None
    blob_endpoint = fields.get("blobendpoint")
    if blob_endpoint:
        endpoint, url_account, _ = parse_account_url(blob_endpoint, "BlobEndpoint")
        account_name = account_name or url_account
    elif account_name:
        protocol = (fields.get("defaultendpointsprotocol") or "https").lower()
        if protocol not in ("http", "https"):
            raise ConnectionStringError("DefaultEndpointsProtocol must be http or https")
        suffix = (fields.get("endpointsuffix") or "core.windows.net").strip(".")
        endpoint = f"{protocol}://{account_name}.blob.{suffix}"
    else:
        raise ConnectionStringError(
            "connection string needs AccountName or BlobEndpoint (or UseDevelopmentStorage=true)"
        )

    key = fields.get("accountkey")
    sas = fields.get("sharedaccesssignature")
    if key:
        return ConnectionInfo(endpoint, account_name, account_key=decode_account_key(key))
    if sas:
        return ConnectionInfo(endpoint, account_name, sas_token=sas.lstrip("?"))
    raise ConnectionStringError("connection string needs AccountKey or SharedAccessSignature")
