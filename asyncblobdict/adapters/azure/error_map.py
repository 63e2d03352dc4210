"""Turn an HTTP answer from the Blob service into the library's exceptions."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Mapping
from typing import NoReturn

from ...errors import (
    AuthenticationError,
    BlobNotFoundError,
    ConcurrencyError,
    StorageError,
)

__all__ = ["error_details", "raise_for_status"]

_AUTH_HINT = "check the account key/SAS/token and the machine clock (requests expire after 15 min)"


def error_details(headers: Mapping[str, str], body: bytes) -> tuple[str | None, str | None]:
    """(error code, first line of the service message) from x-ms-error-code or the XML body.

    Only <Code> and <Message> are read: AuthenticationErrorDetail may quote our signature.
    """
    code = headers.get("x-ms-error-code")
    message = None
    if body and body.lstrip()[:1] == b"<":
        try:
            root = ET.fromstring(body)
        except ET.ParseError:
            root = None
        if root is not None:
            code = code or (root.findtext("Code") or None)
            text = root.findtext("Message")
            if text:
                message = text.strip().splitlines()[0][:300]
    return code, message


def raise_for_status(
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    *,
    action: str,
    container: str | None,
    key: str | None,
    conditional: bool = False,
) -> NoReturn:
    """Raise the exception that matches a failed answer.

    404 → BlobNotFoundError; 409/412 on a conditional request → ConcurrencyError;
    401/403 → AuthenticationError; anything else → StorageError with status, code and
    request id.
    """
    code, message = error_details(headers, body)
    request_id = headers.get("x-ms-request-id")
    if status == 404:
        raise BlobNotFoundError(
            f"{action}: not found ({code or 404})", container=container, key=key
        )
    if conditional and status in (409, 412):
        raise ConcurrencyError(
            f"{action}: the stored version is not the one expected ({code or status})",
            container=container,
            key=key,
        )
    text = f"{action} failed"
    if message:
        text += f": {message}"
    if status in (401, 403):
        raise AuthenticationError(
            f"{text}; {_AUTH_HINT}",
            container=container,
            key=key,
            status=status,
            error_code=code,
            request_id=request_id,
        )
    if status == 413:
        text += "; the value is larger than the service accepts in one request"
    raise StorageError(
        text, container=container, key=key, status=status, error_code=code, request_id=request_id
    )
