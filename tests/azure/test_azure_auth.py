"""SharedKey canonicalisation, pinned with fixed inputs and property-tested; SAS and bearer."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from asyncblobdict.adapters.azure.auth import (
    PreparedRequest,
    SasAuth,
    SharedKeyAuth,
    canonicalized_headers,
    canonicalized_resource,
    string_to_sign,
)
from asyncblobdict.adapters.azure.connection import ConnectionStringError

KEY = base64.b64decode(
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)


def test_string_to_sign_put_blob_with_conditions() -> None:
    headers = {
        "x-ms-version": "2025-11-05",
        "x-ms-date": "Fri, 26 Jun 2015 23:39:12 GMT",
        "x-ms-blob-type": "BlockBlob",
        "Content-MD5": "XrY7u+Ae7tCTyyK7j1rNww==",
        "If-Match": '"0x8D1A"',
        "x-ms-client-request-id": "abc",
    }
    text = string_to_sign(
        "put",
        "myaccount",
        "/mycontainer/dir/a%20b%2B%25%26%C3%BC",
        [],
        headers,
        11,
    )
    assert text == (
        "PUT\n"
        "\n"  # Content-Encoding
        "\n"  # Content-Language
        "11\n"  # Content-Length
        "XrY7u+Ae7tCTyyK7j1rNww==\n"  # Content-MD5
        "\n"  # Content-Type
        "\n"  # Date (x-ms-date is used)
        "\n"  # If-Modified-Since
        '"0x8D1A"\n'  # If-Match
        "\n"  # If-None-Match
        "\n"  # If-Unmodified-Since
        "\n"  # Range
        "x-ms-blob-type:BlockBlob\n"
        "x-ms-client-request-id:abc\n"
        "x-ms-date:Fri, 26 Jun 2015 23:39:12 GMT\n"
        "x-ms-version:2025-11-05\n"
        "/myaccount/mycontainer/dir/a%20b%2B%25%26%C3%BC"
    )


def test_string_to_sign_zero_length_is_empty_and_query_is_canonical() -> None:
    headers = {"x-ms-date": "Mon, 01 Jan 2024 00:00:00 GMT", "x-ms-version": "2025-11-05"}
    query = [
        ("restype", "container"),
        ("Comp", "list"),
        ("prefix", "a b/ü+&"),
        ("include", "snapshots"),
        ("include", "metadata"),
    ]
    text = string_to_sign("GET", "devstoreaccount1", "/devstoreaccount1/c1", query, headers, 0)
    assert text == (
        "GET\n\n\n\n\n\n\n\n\n\n\n\n"
        "x-ms-date:Mon, 01 Jan 2024 00:00:00 GMT\n"
        "x-ms-version:2025-11-05\n"
        "/devstoreaccount1/devstoreaccount1/c1\n"
        "comp:list\n"
        "include:metadata,snapshots\n"
        "prefix:a b/ü+&\n"
        "restype:container"
    )


def test_canonicalized_headers_lowercase_trim_and_underscore_order() -> None:
    headers = {
        "X-MS-Meta-K1": "  one  two ",
        "x-ms-meta-k_1": "u",
        "x-ms-meta-a": "a",
        "Content-Type": "ignored",
    }
    assert canonicalized_headers(headers) == (
        "x-ms-meta-a:a\nx-ms-meta-k_1:u\nx-ms-meta-k1:one two\n"
    )


def test_canonicalized_resource_root_path() -> None:
    assert canonicalized_resource("acct", "", [("comp", "list")]) == "/acct/\ncomp:list"


async def test_shared_key_header_is_hmac_of_string_to_sign() -> None:
    auth = SharedKeyAuth("devstoreaccount1", KEY)
    request = PreparedRequest(
        "GET",
        "/devstoreaccount1/c/k",
        headers={"x-ms-date": "Mon, 01 Jan 2024 00:00:00 GMT", "x-ms-version": "2025-11-05"},
    )
    await auth.authorize(request)
    expected = base64.b64encode(
        hmac.new(
            KEY,
            string_to_sign(
                "GET", "devstoreaccount1", request.path, [], request.headers, 0
            ).encode(),
            hashlib.sha256,
        ).digest()
    ).decode()
    assert request.headers["Authorization"] == f"SharedKey devstoreaccount1:{expected}"
    assert "Eby8" not in repr(auth)


async def test_sas_auth_appends_token_and_hides_it() -> None:
    auth = SasAuth("?sv=2025-11-05&ss=b&sig=abc%2Bdef%3D")
    request = PreparedRequest("GET", "/c/k")
    await auth.authorize(request)
    assert request.raw_query == "sv=2025-11-05&ss=b&sig=abc%2Bdef%3D"
    assert "abc" not in repr(auth)
    with pytest.raises(ConnectionStringError):
        SasAuth("sv=2025-11-05&ss=b")


def reference_string_to_sign(
    method: str,
    account: str,
    path: str,
    query: list[tuple[str, str]],
    headers: dict[str, str],
    content_length: int,
) -> str:
    """The string-to-sign as the documentation composes it, part by part (the form
    string_to_sign had before it was built in one pass)."""
    lower = {k.lower(): v for k, v in headers.items()}
    standard = [
        (str(content_length) if content_length else "")
        if name == "content-length"
        else lower.get(name, "")
        for name in (
            "content-encoding",
            "content-language",
            "content-length",
            "content-md5",
            "content-type",
            "date",
            "if-modified-since",
            "if-match",
            "if-none-match",
            "if-unmodified-since",
            "range",
        )
    ]
    return (
        method.upper()
        + "\n"
        + "\n".join(standard)
        + "\n"
        + canonicalized_headers(headers)
        + canonicalized_resource(account, path, query)
    )


header_names = st.one_of(
    st.sampled_from(
        [
            "Content-MD5",
            "content-type",
            "If-Match",
            "If-None-Match",
            "Range",
            "Content-Length",
            "Date",
            "x-ms-date",
            "X-MS-Version",
            "x-ms-meta-k_1",
            "x-ms-meta-k1",
            "x-ms-meta-K2",
            " x-ms-meta-pad ",
            "x-ms-blob-type",
            "Authorization",
        ]
    ),
    st.from_regex(r"x-ms-meta-[A-Za-z_][A-Za-z0-9_]{0,6}", fullmatch=True),
)
header_values = st.one_of(
    st.text(alphabet=st.sampled_from("ab _-:,\t\r\n\x0b\xa0\u2003"), max_size=12),
    st.text(max_size=8),
)


@settings(max_examples=400, deadline=None)
@given(
    st.sampled_from(["GET", "put", "HEAD", "DELETE"]),
    st.sampled_from(["/c/k", "", "/c/a%20b/c", "/"]),
    st.lists(
        st.tuples(st.sampled_from(["comp", "Restype", "blockid", "prefix"]), st.text()), max_size=3
    ),
    st.dictionaries(header_names, header_values, max_size=8),
    st.integers(0, 10**9),
)
def test_string_to_sign_is_the_documented_composition(
    method: str,
    path: str,
    query: list[tuple[str, str]],
    headers: dict[str, str],
    content_length: int,
) -> None:
    assert string_to_sign(method, "acct", path, query, headers, content_length) == (
        reference_string_to_sign(method, "acct", path, query, headers, content_length)
    )
