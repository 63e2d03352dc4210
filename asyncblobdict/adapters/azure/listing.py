"""XML bodies of the Blob service: List Blobs answers and Put Block List requests."""

from __future__ import annotations

import base64
import binascii
import re
import xml.etree.ElementTree as ET
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from urllib.parse import unquote
from xml.sax.saxutils import escape

from ..base import BlobInfo

__all__ = [
    "block_list_xml",
    "decode_md5",
    "normalize_etag",
    "parse_blob_list",
    "parse_blob_metadata",
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


_MONTHS = {
    name: number
    for number, name in enumerate(
        ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), 1
    )
}
_RFC1123 = re.compile(
    r"[A-Za-z]{3}, (\d\d) ([A-Za-z]{3}) (\d{4}) (\d\d):(\d\d):(\d\d) GMT", re.ASCII
)


def _listing_date(value: str, seen: dict[str, datetime | None]) -> datetime | None:
    """parse_http_date, quicker for the one form the service sends, and remembered."""
    if value in seen:
        return seen[value]
    when = None
    match = _RFC1123.fullmatch(value)
    if match is not None and match.group(2).lower() in _MONTHS:
        day, month, year, hour, minute, second = match.groups()
        try:
            when = datetime(
                int(year),
                _MONTHS[month.lower()],
                int(day),
                int(hour),
                int(minute),
                int(second),
                tzinfo=timezone.utc,
            )
        except ValueError:
            when = None
    if when is None:
        when = parse_http_date(value)
    seen[value] = when
    return when


class _Unexpected(Exception):
    """The string scan met something it does not read exactly: use the XML parser."""


def _scannable(body: bytes) -> str:
    """The body as text, if the string scan can read it exactly as an XML parser would.

    The scan reads the compact UTF-8 XML the service sends. What could change the meaning
    of an element's text is left to the XML parser: another encoding, carriage returns
    (XML normalises them), comments, CDATA, a DOCTYPE (entities), processing instructions.
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise _Unexpected from None
    start = 1 if text.startswith("\ufeff") else 0
    if text.startswith("<?xml", start):
        end = text.find("?>", start)
        declaration = text[start:end].lower()
        if end < 0 or ("encoding" in declaration and "utf-8" not in declaration):
            raise _Unexpected
        start = end + 2
    # One-character searches first: they are several times quicker than two-character ones.
    if "\r" in text or ("!" in text and "<!" in text) or ("?" in text and "<?" in text[start:]):
        raise _Unexpected
    return text[start:] if start else text


def _blobs_section(text: str) -> tuple[str, str | None]:
    """The inside of <Blobs> and the NextMarker of a List Blobs answer."""
    root = text.find("<EnumerationResults")
    if root < 0 or text[:root].strip(" \t\n"):
        raise _Unexpected
    start = text.find("<Blobs>", root)
    if start < 0:
        raise _Unexpected  # <Blobs/>, attributes, or not a List Blobs answer
    start += len("<Blobs>")
    end = text.find("</Blobs>", start)
    if end < 0 or "<NextMarker" in text[:start]:
        raise _Unexpected
    marker = None
    tail = text[end:]
    at = tail.find("<NextMarker>")
    if at >= 0:
        at += len("<NextMarker>")
        stop = tail.find("<", at)
        if not tail.startswith("</NextMarker>", stop):
            raise _Unexpected
        marker = _unescape(tail[at:stop])
    elif tail.count("<NextMarker") != tail.count("<NextMarker/>") + tail.count("<NextMarker />"):
        raise _Unexpected
    return text[start:end], marker or None


def _unescape(value: str) -> str:
    """XML's five named entities decoded; character references are left to the parser
    (html.unescape would read some of them as HTML does, not as XML does)."""
    if "&#" in value:
        raise _Unexpected
    value = (
        value.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", '"')
        .replace("&apos;", "'")
    )
    if value.count("&") != value.count("&amp;"):
        raise _Unexpected
    return value.replace("&amp;", "&")


def _only_prefixes(text: str) -> None:
    """``text``, between blobs, may hold BlobPrefix entries and nothing else."""
    if text and text.count("<Blob") != text.count("<BlobPrefix>"):
        raise _Unexpected


def _scan_blob_list(body: bytes) -> tuple[list[BlobInfo], str | None]:
    section, marker = _blobs_section(_scannable(body))
    pieces = section.split("<Blob>")
    _only_prefixes(pieces[0])
    infos: list[BlobInfo] = []
    dates: dict[str, datetime | None] = {}
    unescape = _unescape
    for piece in pieces[1:]:
        # Exactly <Name>, then <Properties> (or nothing), then </Blob>: another child of
        # Blob (metadata, tags, a snapshot) or another form of either goes to the parser.
        if piece.startswith("<Name>"):
            at, encoded = 6, False
        elif piece.startswith('<Name Encoded="true">'):
            at, encoded = 21, True
        else:
            raise _Unexpected
        stop = piece.find("<", at)
        if not piece.startswith("</Name>", stop):
            raise _Unexpected
        props = stop + 7
        end = piece.find("</Blob>", props)
        if end < 0:
            raise _Unexpected
        _only_prefixes(piece[end + 7 :])
        name = piece[at:stop]
        if not name:
            continue  # as the XML parser reads <Name></Name>: no text, no blob
        if "&" in name:
            name = unescape(name)
        # Names with characters XML cannot carry come percent-encoded (version 2020-06-12+).
        if encoded:
            name = unquote(name)
        size = 0
        etag = last_modified = md5 = None
        if end != props:
            if not piece.startswith("<Properties>", props) or not piece.startswith(
                "</Properties>", end - 13
            ):
                raise _Unexpected
            # Each field: the text up to the next tag, which must be its end tag.
            at = piece.find("<Content-Length>", props, end)
            if at >= 0:
                stop_field = piece.find("<", at + 16)
                if not piece.startswith("</Content-Length>", stop_field):
                    raise _Unexpected
                size = int(piece[at + 16 : stop_field] or 0)
            at = piece.find("<Etag>", props, end)
            if at >= 0:
                stop_field = piece.find("<", at + 6)
                if not piece.startswith("</Etag>", stop_field):
                    raise _Unexpected
                value = piece[at + 6 : stop_field]
                etag = normalize_etag(unescape(value) if "&" in value else value)
            at = piece.find("<Last-Modified>", props, end)
            if at >= 0:
                stop_field = piece.find("<", at + 15)
                if not piece.startswith("</Last-Modified>", stop_field):
                    raise _Unexpected
                value = piece[at + 15 : stop_field]
                if value:
                    last_modified = _listing_date(unescape(value) if "&" in value else value, dates)
            at = piece.find("<Content-MD5>", props, end)
            if at >= 0:
                stop_field = piece.find("<", at + 13)
                if not piece.startswith("</Content-MD5>", stop_field):
                    raise _Unexpected
                md5 = decode_md5(piece[at + 13 : stop_field])
        infos.append(BlobInfo(name, size, etag, last_modified, md5))
    return infos, marker


def _tree(body: bytes) -> ET.Element:
    try:
        root = ET.fromstring(body)
    except ET.ParseError as exc:
        raise ValueError(f"not XML: {exc}") from None
    if root.tag != "EnumerationResults":
        raise ValueError(f"not a List Blobs answer (<{root.tag}>)")
    return root


def _entry_name(entry: ET.Element) -> str | None:
    name_el = entry.find("Name")
    if name_el is None or not name_el.text:
        return None
    # Names with characters XML cannot carry come percent-encoded (version 2020-06-12+).
    if name_el.get("Encoded", "").lower() == "true":
        return unquote(name_el.text)
    return name_el.text


def _tree_blob_list(body: bytes) -> tuple[list[BlobInfo], str | None]:
    root = _tree(body)
    infos: list[BlobInfo] = []
    blobs = root.find("Blobs")
    for blob in blobs.findall("Blob") if blobs is not None else ():
        name = _entry_name(blob)
        if name is None:
            continue
        props = blob.find("Properties")
        size = 0
        etag = last_modified = md5 = None
        if props is not None:
            size = int(props.findtext("Content-Length") or 0)
            etag = normalize_etag(props.findtext("Etag"))
            last_modified = parse_http_date(props.findtext("Last-Modified"))
            md5 = decode_md5(props.findtext("Content-MD5"))
        infos.append(BlobInfo(name, size, etag, last_modified, md5))
    return infos, root.findtext("NextMarker") or None


def parse_blob_list(body: bytes) -> tuple[list[BlobInfo], str | None]:
    """The blobs of one List Blobs page and the marker of the next page (None at the end).

    A string scan of the compact XML the service sends, about twice as fast as an XML tree;
    anything it does not expect goes to ElementTree instead, with the same result. Raises
    ValueError for an answer that is not a List Blobs page.
    """
    try:
        return _scan_blob_list(body)
    except _Unexpected:
        return _tree_blob_list(body)


_NAME = re.compile(r"<Name([^>]*)>([^<]*)(</Name>)?")


def _scan_blob_names(body: bytes) -> tuple[list[str], str | None]:
    section, marker = _blobs_section(_scannable(body))
    names = []
    for match in _NAME.finditer(section):
        attrs, name, closed = match.groups()
        start = match.start()
        # Only <Name> or <Name Encoded="true">, first in a <Blob> or a <BlobPrefix> (no
        # metadata here, whose element names are free); anything else goes to the parser.
        if (
            closed is None
            or (attrs and attrs != ' Encoded="true"')
            or (
                section[start - 6 : start] != "<Blob>"
                and section[start - 12 : start] != "<BlobPrefix>"
            )
        ):
            raise _Unexpected
        if not name:
            continue
        if "&" in name:
            name = _unescape(name)
        # Names with characters XML cannot carry come percent-encoded (version 2020-06-12+).
        if attrs:
            name = unquote(name)
        names.append(name)
    return names, marker


def _tree_blob_names(body: bytes) -> tuple[list[str], str | None]:
    root = _tree(body)
    blobs = root.find("Blobs")
    names = []
    for entry in blobs if blobs is not None else ():
        if entry.tag in ("Blob", "BlobPrefix"):
            name = _entry_name(entry)
            if name is not None:
                names.append(name)
    return names, root.findtext("NextMarker") or None


def parse_blob_names(body: bytes) -> tuple[list[str], str | None]:
    """Blob names and folder prefixes of one List Blobs page, in the service's order, and
    the next page's marker (None at the end).

    A regex scan, not an XML tree (metadata, whose element names are free, is never
    requested here); anything it does not expect goes to ElementTree instead, with the same
    result. Raises ValueError for an answer that is not a List Blobs page.
    """
    try:
        return _scan_blob_names(body)
    except _Unexpected:
        return _tree_blob_names(body)


_META_ITEM = re.compile(r"<([A-Za-z_][A-Za-z0-9_]*)>([^<]*)</\1>")
_PROPERTIES_EMPTY = ("<Properties/>", "<Properties />")
_METADATA_EMPTY = ("<Metadata/>", "<Metadata />", "<Metadata></Metadata>")

Entries = list[tuple[str, dict[str, str]]]


def _scan_name(section: str, pos: int) -> tuple[str | None, int]:
    """The name of the ``<Name>`` element at ``pos`` (None when empty) and the end of it."""
    if section.startswith("<Name>", pos):
        at, encoded = pos + 6, False
    elif section.startswith('<Name Encoded="true">', pos):
        at, encoded = pos + 21, True
    else:
        raise _Unexpected
    stop = section.find("<", at)
    if stop < 0 or not section.startswith("</Name>", stop):
        raise _Unexpected
    name = section[at:stop]
    if "&" in name:
        name = _unescape(name)
    # Names with characters XML cannot carry come percent-encoded (version 2020-06-12+).
    if encoded:
        name = unquote(name)
    return name or None, stop + 7


def _scan_metadata(section: str, pos: int) -> tuple[dict[str, str], int]:
    """The ``<Metadata>`` element at ``pos`` (or none there) as a dict with lower-case
    names, and where it ends. Only ``<name>text</name>`` items; anything else (an empty
    item, an attribute, an invalid name the service reports) goes to the parser."""
    for empty in _METADATA_EMPTY:
        if section.startswith(empty, pos):
            return {}, pos + len(empty)
    if not section.startswith("<Metadata>", pos):
        return {}, pos
    pos += 10
    metadata: dict[str, str] = {}
    while not section.startswith("</Metadata>", pos):
        match = _META_ITEM.match(section, pos)
        if match is None:
            raise _Unexpected
        name, value = match.groups()
        metadata[name.lower()] = _unescape(value) if "&" in value else value
        pos = match.end()
    return metadata, pos + 11


def _scan_blob_metadata(body: bytes) -> tuple[Entries, str | None]:
    section, marker = _blobs_section(_scannable(body))
    entries: Entries = []
    pos, end = 0, len(section)
    while pos < end:
        if section.startswith("<BlobPrefix>", pos):
            name, pos = _scan_name(section, pos + 12)
            if not section.startswith("</BlobPrefix>", pos):
                raise _Unexpected
            pos += 13
            if name is not None:
                entries.append((name, {}))
            continue
        if not section.startswith("<Blob>", pos):
            raise _Unexpected
        name, pos = _scan_name(section, pos + 6)
        # Then <Properties> (its fields hold text only), then <Metadata>, then </Blob>.
        for empty in _PROPERTIES_EMPTY:
            if section.startswith(empty, pos):
                pos += len(empty)
                break
        else:
            if section.startswith("<Properties>", pos):
                stop = section.find("</Properties>", pos)
                if stop < 0:
                    raise _Unexpected
                pos = stop + 13
        metadata, pos = _scan_metadata(section, pos)
        if not section.startswith("</Blob>", pos):
            raise _Unexpected
        pos += 7
        if name is not None:
            entries.append((name, metadata))
    return entries, marker


def _tree_blob_metadata(body: bytes) -> tuple[Entries, str | None]:
    root = _tree(body)
    blobs = root.find("Blobs")
    entries: Entries = []
    for entry in blobs if blobs is not None else ():
        if entry.tag not in ("Blob", "BlobPrefix"):
            continue
        name = _entry_name(entry)
        if name is None:
            continue
        metadata: dict[str, str] = {}
        found = entry.find("Metadata") if entry.tag == "Blob" else None
        for item in found if found is not None else ():
            metadata[item.tag.lower()] = item.text or ""
        entries.append((name, metadata))
    return entries, root.findtext("NextMarker") or None


def parse_blob_metadata(body: bytes) -> tuple[Entries, str | None]:
    """Blob names with their metadata (names lower case) and folder prefixes (with no
    metadata) of one List Blobs page asked with ``include=metadata``, in the service's
    order, and the next page's marker (None at the end).

    A string scan of the compact form the service sends; anything it does not expect goes
    to ElementTree instead, with the same result. Raises ValueError for an answer that is
    not a List Blobs page.
    """
    try:
        return _scan_blob_metadata(body)
    except _Unexpected:
        return _tree_blob_metadata(body)


def block_list_xml(block_ids: list[str]) -> bytes:
    """The Put Block List body committing ``block_ids`` (base64 ids) in order."""
    items = "".join(f"<Latest>{escape(block_id)}</Latest>" for block_id in block_ids)
    return f'<?xml version="1.0" encoding="utf-8"?><BlockList>{items}</BlockList>'.encode()
