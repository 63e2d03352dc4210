"""XML bodies of the Blob service: List Blobs answers and Put Block List requests."""

from __future__ import annotations

import base64
import binascii
import html
import re
import xml.etree.ElementTree as ET
from datetime import datetime
from email.utils import parsedate_to_datetime
from urllib.parse import unquote
from xml.sax.saxutils import escape

from ..base import BlobInfo

__all__ = [
    "block_list_xml",
    "decode_md5",
    "normalize_etag",
    "parse_blob_list",
    "parse_blob_names",
    "parse_http_date",
]


def normalize_etag(value: str | None) -> str | None:
    """ETags as the HTTP headers give them: quoted (List Blobs XML leaves the quotes off)."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    if value.startswith('"') or value.startswith("W/"):
        return value
    return f'"{value}"'


def parse_http_date(value: str | None) -> datetime | None:
    """An RFC 1123 date (Last-Modified) as an aware datetime, or None."""
    if not value:
        return None
    try:
        return parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None


def decode_md5(value: str | None) -> bytes | None:
    """The raw 16-byte digest from a base64 Content-MD5 value, or None if absent/invalid."""
    if not value:
        return None
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw if len(raw) == 16 else None


def parse_blob_list(body: bytes) -> tuple[list[BlobInfo], str | None]:
    """The blobs of one List Blobs page and the marker of the next page (None at the end)."""
    root = ET.fromstring(body)
    infos: list[BlobInfo] = []
    blobs = root.find("Blobs")
    for blob in blobs.findall("Blob") if blobs is not None else ():
        name_el = blob.find("Name")
        if name_el is None or name_el.text is None:
            continue
        name = name_el.text
        # Names with characters XML cannot carry come percent-encoded (version 2020-06-12+).
        if name_el.get("Encoded", "").lower() == "true":
            name = unquote(name)
        props = blob.find("Properties")
        size = 0
        etag = last_modified = md5 = None
        if props is not None:
            size = int(props.findtext("Content-Length") or 0)
            etag = normalize_etag(props.findtext("Etag"))
            last_modified = parse_http_date(props.findtext("Last-Modified"))
            md5 = decode_md5(props.findtext("Content-MD5"))
        infos.append(BlobInfo(name, size, etag, last_modified, md5))
    marker = root.findtext("NextMarker") or None
    return infos, marker


_NAME = re.compile(r"<Name( [^>]*)?>([^<]*)</Name>")
_NEXT_MARKER = re.compile(r"<NextMarker>([^<]*)</NextMarker>")


def parse_blob_names(body: bytes) -> tuple[list[str], str | None]:
    """Blob names and folder prefixes of one List Blobs page, in the service's order, and
    the next page's marker (None at the end).

    A plain scan, not an XML tree: every ``<Name>`` of a page belongs to a ``<Blob>`` or a
    ``<BlobPrefix>`` (metadata, whose names are free, is never requested here). Raises
    ValueError for an answer that is not a List Blobs page.
    """
    text = body.decode("utf-8")
    start = text.find("<Blobs")
    if start < 0 or "<EnumerationResults" not in text[:start]:
        raise ValueError("no <Blobs> element")
    end = text.find("</Blobs>", start)
    section = text[start:] if end < 0 else text[start:end]
    names = []
    for match in _NAME.finditer(section):
        attrs, name = match.groups()
        if "&" in name:
            name = html.unescape(name)
        # Names with characters XML cannot carry come percent-encoded (version 2020-06-12+).
        if attrs and 'Encoded="true"' in attrs:
            name = unquote(name)
        names.append(name)
    marker = _NEXT_MARKER.search(text, 0 if end < 0 else end)
    return names, (html.unescape(marker.group(1)) or None) if marker else None


def block_list_xml(block_ids: list[str]) -> bytes:
    """The Put Block List body committing ``block_ids`` (base64 ids) in order."""
    items = "".join(f"<Latest>{escape(block_id)}</Latest>" for block_id in block_ids)
    return f'<?xml version="1.0" encoding="utf-8"?><BlockList>{items}</BlockList>'.encode()
