"""List Blobs: both string-scan parsers read what ElementTree reads, on generated answers;
and the adapter follows markers across pages (MockTransport)."""

from __future__ import annotations

import base64
import xml.etree.ElementTree as ET
from email.utils import formatdate, parsedate_to_datetime
from typing import Any
from urllib.parse import quote, unquote

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from asyncblobdict.adapters.azure import listing
from asyncblobdict.adapters.azure.listing import (
    decode_md5,
    normalize_etag,
    parse_blob_list,
    parse_blob_names,
)
from asyncblobdict.adapters.azure.transport import HttpRequest, HttpResponse
from asyncblobdict.adapters.base import BlobInfo
from tests.azure.mockhttp import Service, mock_adapter, query_of, reply

# ------------------------------------------------------------------ the oracle


def tree_name(entry: ET.Element) -> str | None:
    name = entry.find("Name")
    if name is None or not name.text:
        return None
    return unquote(name.text) if name.get("Encoded", "").lower() == "true" else name.text


def tree_date(value: str | None) -> Any:
    try:
        return parsedate_to_datetime(value) if value else None
    except (TypeError, ValueError, IndexError):
        return None


def tree_list(body: bytes) -> tuple[list[BlobInfo], str | None]:
    root = ET.fromstring(body)
    blobs = root.find("Blobs")
    infos = []
    for blob in blobs.findall("Blob") if blobs is not None else ():
        name = tree_name(blob)
        if name is None:
            continue
        props = blob.find("Properties")
        if props is None:
            infos.append(BlobInfo(name, 0))
            continue
        infos.append(
            BlobInfo(
                name,
                int(props.findtext("Content-Length") or 0),
                normalize_etag(props.findtext("Etag")),
                tree_date(props.findtext("Last-Modified")),
                decode_md5(props.findtext("Content-MD5")),
            )
        )
    return infos, root.findtext("NextMarker") or None


def tree_names(body: bytes) -> tuple[list[str], str | None]:
    root = ET.fromstring(body)
    blobs = root.find("Blobs")
    names = [
        name
        for entry in (blobs if blobs is not None else ())
        if entry.tag in ("Blob", "BlobPrefix") and (name := tree_name(entry)) is not None
    ]
    return names, root.findtext("NextMarker") or None


# ------------------------------------------------------------------ generated answers

# Characters XML 1.0 can carry, with the awkward ones often.
XML_CHAR = st.one_of(
    st.sampled_from([*"&<>\"'/ %+#?;=\t\n", "\r", "ü", "中", "😀", "\u2028"]),
    st.characters(min_codepoint=0x20, max_codepoint=0xFFFD, blacklist_categories=["Cs"]),
)
NAMES = st.text(XML_CHAR, min_size=0, max_size=12)


@st.composite
def escaped(draw: st.DrawFn, text: str) -> str:
    """``text`` as XML element content, escaped one of the ways a writer may choose."""
    style = draw(st.sampled_from(["minimal", "minimal", "minimal", "full", "charref", "cdata"]))
    if style == "cdata" and "]]>" not in text:
        return f"<![CDATA[{text}]]>"
    out = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    if style == "full":
        out = out.replace('"', "&quot;").replace("'", "&apos;")
    elif style == "charref":
        out = "".join(f"&#{ord(c)};" if c in "\"'ü\r" else c for c in out)
    return out


@st.composite
def name_element(draw: st.DrawFn) -> str:
    name = draw(NAMES)
    form = draw(st.sampled_from(["plain", "plain", "encoded", "self-closing"]))
    if form == "self-closing" and not name:
        return "<Name/>"
    if form == "encoded":
        return f'<Name Encoded="true">{draw(escaped(quote(name, safe="/")))}</Name>'
    return f"<Name>{draw(escaped(name))}</Name>"


@st.composite
def field(draw: st.DrawFn, tag: str, values: st.SearchStrategy[str]) -> str:
    form = draw(st.sampled_from(["value", "value", "value", "absent", "empty", "self-closing"]))
    if form == "absent":
        return ""
    if form == "empty":
        return f"<{tag}></{tag}>"
    if form == "self-closing":
        return f"<{tag} />"
    return f"<{tag}>{draw(escaped(draw(values)))}</{tag}>"


DATES = st.one_of(
    st.integers(0, 4_000_000_000).map(lambda t: formatdate(t, usegmt=True)),
    st.sampled_from(["Mon, 3 Nov 2026 06:20:38 GMT", "Tue, 31 Feb 2026 00:00:00 GMT", "soon"]),
)
MD5S = st.one_of(
    st.binary(min_size=16, max_size=16).map(lambda b: base64.b64encode(b).decode()),
    st.sampled_from(["not base64!", "YWJj"]),
)


@st.composite
def blob_entry(draw: st.DrawFn) -> str:
    props = "".join(
        [
            draw(field("Creation-Time", DATES)),
            draw(field("Last-Modified", DATES)),
            draw(field("Etag", st.from_regex(r"0x[0-9A-F]{15}", fullmatch=True))),
            draw(field("Content-Length", st.integers(0, 2**40).map(str))),
            draw(field("Content-Type", NAMES)),
            draw(field("Content-MD5", MD5S)),
            "<BlobType>BlockBlob</BlobType>",
        ]
    )
    extra = draw(
        st.sampled_from(
            ["", "", "", "<Metadata><Etag>meta</Etag><Name>meta</Name></Metadata>", "<Tags/>"]
        )
    )
    properties = draw(st.sampled_from([f"<Properties>{props}</Properties>", "<Properties/>", ""]))
    start = draw(st.sampled_from(["<Blob>", "<Blob>", "<Blob>", '<Blob Kind="x">']))
    return f"{start}{draw(name_element())}{properties}{extra}</Blob>"


@st.composite
def list_blobs_answer(draw: st.DrawFn) -> bytes:
    entries = draw(
        st.lists(
            st.one_of(blob_entry(), name_element().map(lambda n: f"<BlobPrefix>{n}</BlobPrefix>")),
            max_size=6,
        )
    )
    marker = draw(
        st.one_of(
            st.sampled_from(["<NextMarker/>", "<NextMarker />", "<NextMarker></NextMarker>", ""]),
            NAMES.flatmap(lambda m: escaped(m)).map(lambda m: f"<NextMarker>{m}</NextMarker>"),
        )
    )
    sep = draw(st.sampled_from(["", "", "", "\n  "]))  # pretty-printed now and then
    comment = draw(st.sampled_from(["", "", "", "<!-- a comment -->"]))
    blobs = f"<Blobs>{sep}{sep.join(entries)}{sep}</Blobs>" if entries else "<Blobs />"
    prolog = draw(st.sampled_from(['<?xml version="1.0" encoding="UTF-8" standalone="yes"?>', ""]))
    text = (
        f'{prolog}<EnumerationResults ServiceEndpoint="http://h/acct" ContainerName="c">'
        f"<Prefix/><Marker/><MaxResults>5000</MaxResults>{comment}{blobs}{marker}"
        "</EnumerationResults>"
    )
    return text.encode("utf-8")


COMPACT = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?><EnumerationResults '
    'ServiceEndpoint="http://127.0.0.1:1/devstoreaccount1" ContainerName="c"><Prefix/><Marker/>'
    "<MaxResults>2</MaxResults><Blobs>"
    "<Blob><Name>b&amp;&lt;&gt;\"'ü中😀</Name><Properties>"
    "<Creation-Time>Mon, 30 Nov 2026 06:20:38 GMT</Creation-Time>"
    "<Last-Modified>Mon, 30 Nov 2026 06:20:38 GMT</Last-Modified><Etag>0x27D129469A0EAC0</Etag>"
    "<Content-Length>3</Content-Length><Content-Type>text/plain</Content-Type>"
    "<Content-MD5>R4bzKC8E3ltccxfEkMbZIg==</Content-MD5><BlobType>BlockBlob</BlobType>"
    "</Properties></Blob>"
    '<BlobPrefix><Name>dir/</Name></BlobPrefix><Blob><Name Encoded="true">a%01b%EF%BF%BE</Name>'
    "<Properties><Etag>0x1</Etag><Content-Length>0</Content-Length><Content-MD5 /></Properties>"
    "</Blob></Blobs><NextMarker>2!b&amp;c</NextMarker></EnumerationResults>"
).encode()


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(list_blobs_answer())
@example(COMPACT)
def test_parse_blob_list_reads_what_elementtree_reads(body: bytes) -> None:
    try:
        expected = tree_list(body)
    except ValueError as exc:  # e.g. an int() of a bad Content-Length
        with pytest.raises(ValueError):
            parse_blob_list(body)
        assert "invalid literal" in str(exc)
        return
    assert parse_blob_list(body) == expected


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(list_blobs_answer())
@example(COMPACT)
def test_parse_blob_names_reads_what_elementtree_reads(body: bytes) -> None:
    assert parse_blob_names(body) == tree_names(body)


def test_the_compact_form_is_read_by_the_scan_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    """What the service sends never needs the XML parser, awkward names and all."""
    expected_list, expected_names = tree_list(COMPACT), tree_names(COMPACT)

    def no_tree(body: bytes) -> Any:
        raise AssertionError("fell back to ElementTree")

    monkeypatch.setattr(listing, "_tree_blob_list", no_tree)
    monkeypatch.setattr(listing, "_tree_blob_names", no_tree)
    assert parse_blob_list(COMPACT) == expected_list
    assert parse_blob_names(COMPACT) == expected_names
    infos, marker = expected_list
    assert [i.key for i in infos] == ["b&<>\"'ü中😀", "a\x01b\ufffe"] and marker == "2!b&c"
    assert expected_names[0] == ["b&<>\"'ü中😀", "dir/", "a\x01b\ufffe"]


@pytest.mark.parametrize("body", [b"<Error><Code>X</Code></Error>", b"not xml", b"\xff\xfe"])
def test_an_answer_that_is_not_a_listing_is_a_value_error(body: bytes) -> None:
    with pytest.raises(ValueError):
        parse_blob_list(body)
    with pytest.raises(ValueError):
        parse_blob_names(body)


# ------------------------------------------------------------------ paging


NAMES_STORED = sorted(
    ["a", "b&<>\"'", "dir/x", "dir/y", "uni/ü中😀", "ctl\x01", "sp ace+%", "z" * 300]
)


def list_service(page_size: int) -> Service:
    """Answers List Blobs from NAMES_STORED, ``page_size`` per page; markers are opaque
    strings that need escaping in XML and encoding in the query."""

    def entry(name: str) -> str:
        if name.isprintable():
            text = name.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            return f"<Blob><Name>{text}</Name><Properties><Etag>0x{len(name)}</Etag>"
        encoded = quote(name, safe="")
        return f'<Blob><Name Encoded="true">{encoded}</Name><Properties><Etag>0x1</Etag>'

    def answer(request: HttpRequest) -> HttpResponse:
        query = query_of(request)
        start = int(query.get("marker", "&0").split("&")[1])
        names = [n for n in NAMES_STORED if n.startswith(query.get("prefix", ""))]
        page = names[start : start + page_size]
        blobs = "".join(
            f"{entry(n)}<Content-Length>{len(n)}</Content-Length></Properties></Blob>" for n in page
        )
        more = start + page_size < len(names)
        marker = f"<NextMarker>&amp;{start + page_size}</NextMarker>" if more else "<NextMarker/>"
        body = f"<EnumerationResults><Blobs>{blobs}</Blobs>{marker}</EnumerationResults>"
        return reply(200, body.encode())

    service = Service()
    service.on("GET", answer, path="/cc1", query="comp=list", repeat=True)
    return service


@pytest.mark.parametrize("page_size", [1, 3, 5000])
async def test_list_follows_markers_across_pages(page_size: int) -> None:
    service = list_service(page_size)
    adapter, _ = mock_adapter(service, list_page_size=page_size)
    infos = [info async for info in adapter.list("cc1")]
    assert [i.key for i in infos] == NAMES_STORED
    assert [i.size for i in infos] == [len(n) for n in NAMES_STORED]
    names = [name async for name in adapter.list_names("cc1")]
    assert names == NAMES_STORED
    pages = -(-len(NAMES_STORED) // page_size)
    sent = [query_of(r) for r in service.requests]
    assert len(sent) == 2 * pages
    assert [q.get("marker") for q in sent[:pages]] == [None] + [
        f"&{i * page_size}" for i in range(1, pages)
    ]
    assert all(q["maxresults"] == str(page_size) for q in sent)


async def test_list_with_a_prefix_and_a_missing_container() -> None:
    service = list_service(2)
    adapter, _ = mock_adapter(service, list_page_size=2)
    assert [i.key async for i in adapter.list("cc1", "dir/")] == ["dir/x", "dir/y"]
    assert query_of(service.requests[0])["prefix"] == "dir/"
    missing = Service()
    missing.on("GET", reply(404, x_ms_error_code="ContainerNotFound"), path="/cc1", repeat=True)
    adapter, _ = mock_adapter(missing)
    assert [i async for i in adapter.list("cc1")] == []
    assert [n async for n in adapter.list_names("cc1")] == []


async def test_an_unreadable_page_is_a_storage_error() -> None:
    from asyncblobdict import StorageError

    service = Service()
    oops = reply(200, b"<html>oops</html>", x_ms_request_id="r1")
    service.on("GET", oops, path="/cc1", repeat=True)
    adapter, _ = mock_adapter(service)
    with pytest.raises(StorageError, match="unreadable answer") as info:
        [i async for i in adapter.list("cc1")]
    assert info.value.request_id == "r1"
    with pytest.raises(StorageError, match="unreadable answer"):
        [n async for n in adapter.list_names("cc1")]


# ------------------------------------------------- names with metadata (include=metadata)


def tree_metadata(body: bytes) -> tuple[list[tuple[str, dict[str, str]]], str | None]:
    root = ET.fromstring(body)
    blobs = root.find("Blobs")
    entries = []
    for entry in blobs if blobs is not None else ():
        if entry.tag not in ("Blob", "BlobPrefix") or (name := tree_name(entry)) is None:
            continue
        found = entry.find("Metadata") if entry.tag == "Blob" else None
        metadata = {
            item.tag.lower(): item.text or "" for item in (found if found is not None else ())
        }
        entries.append((name, metadata))
    return entries, root.findtext("NextMarker") or None


METADATA_NAMES = st.one_of(
    st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,8}", fullmatch=True),
    st.sampled_from(["abdexpires", "abdtoken", "Name", "Blob", "Metadata", "Etag"]),
)
METADATA_VALUES = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=12)


@st.composite
def metadata_element(draw: st.DrawFn) -> str:
    form = draw(st.sampled_from(["items", "items", "items", "empty", "self-closing", "none"]))
    if form == "none":
        return ""
    if form == "self-closing":
        return draw(st.sampled_from(["<Metadata/>", "<Metadata />"]))
    if form == "empty":
        return "<Metadata></Metadata>"
    items = []
    for name, value in draw(st.lists(st.tuples(METADATA_NAMES, METADATA_VALUES), max_size=4)):
        shape = draw(st.sampled_from(["text", "text", "text", "empty", "self-closing"]))
        if shape == "self-closing":
            items.append(f"<{name} />")
        elif shape == "empty":
            items.append(f"<{name}></{name}>")
        else:
            items.append(f"<{name}>{draw(escaped(value))}</{name}>")
    if draw(st.booleans()) and not items:
        items.append("<x-ms-invalid-name>bad-name</x-ms-invalid-name>")
    return f"<Metadata>{''.join(items)}</Metadata>"


@st.composite
def blob_with_metadata(draw: st.DrawFn) -> str:
    props = (
        f"<Properties>{draw(field('Etag', st.from_regex(r'0x[0-9A-F]{15}', fullmatch=True)))}"
        f"{draw(field('Content-Length', st.integers(0, 2**40).map(str)))}</Properties>"
    )
    properties = draw(st.sampled_from([props, "<Properties/>", ""]))
    return f"<Blob>{draw(name_element())}{properties}{draw(metadata_element())}</Blob>"


@st.composite
def list_metadata_answer(draw: st.DrawFn) -> bytes:
    entries = draw(
        st.lists(
            st.one_of(
                blob_with_metadata(),
                name_element().map(lambda n: f"<BlobPrefix>{n}</BlobPrefix>"),
            ),
            max_size=6,
        )
    )
    marker = draw(
        st.one_of(
            st.sampled_from(["<NextMarker/>", ""]),
            NAMES.flatmap(lambda m: escaped(m)).map(lambda m: f"<NextMarker>{m}</NextMarker>"),
        )
    )
    sep = draw(st.sampled_from(["", "", "", "\n  "]))
    blobs = f"<Blobs>{sep}{sep.join(entries)}{sep}</Blobs>" if entries else "<Blobs />"
    text = (
        '<?xml version="1.0" encoding="utf-8"?><EnumerationResults ContainerName="c">'
        f"<Prefix/><MaxResults>5000</MaxResults>{blobs}{marker}</EnumerationResults>"
    )
    return text.encode("utf-8")


COMPACT_METADATA = (
    b'<?xml version="1.0" encoding="utf-8"?><EnumerationResults ServiceEndpoint="http://h/a" '
    b'ContainerName="c"><Prefix>s/</Prefix><Delimiter>/</Delimiter><MaxResults>2</MaxResults>'
    b"<Blobs><Blob><Name>s/a&amp;b</Name><Properties><Etag>0x1</Etag>"
    b"<Content-Length>3</Content-Length></Properties><Metadata>"
    b"<abdexpires>1800000010.000</abdexpires><Owner>o&lt;ps</Owner>"
    b"<abdtoken>0123456789abcdef</abdtoken></Metadata></Blob>"
    b"<BlobPrefix><Name>s/sub/</Name></BlobPrefix>"
    b"<Blob><Name>s/c</Name><Properties><Etag>0x2</Etag></Properties><Metadata /></Blob>"
    b"</Blobs><NextMarker>2!x</NextMarker></EnumerationResults>"
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(list_metadata_answer(), list_blobs_answer()))
@example(COMPACT_METADATA)
def test_parse_blob_metadata_reads_what_elementtree_reads(body: bytes) -> None:
    assert listing.parse_blob_metadata(body) == tree_metadata(body)


def test_the_compact_metadata_form_is_read_by_the_scan_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def no_tree(body: bytes) -> Any:
        raise AssertionError("fell back to ElementTree")

    monkeypatch.setattr(listing, "_tree_blob_metadata", no_tree)
    entries, marker = listing.parse_blob_metadata(COMPACT_METADATA)
    assert entries == [
        (
            "s/a&b",
            {"abdexpires": "1800000010.000", "owner": "o<ps", "abdtoken": "0123456789abcdef"},
        ),
        ("s/sub/", {}),
        ("s/c", {}),
    ]
    assert marker == "2!x"
    assert (entries, marker) == tree_metadata(COMPACT_METADATA)
