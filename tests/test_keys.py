"""Key and container-name rules shared by every backend."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from asyncblobdict import AsyncBlobStore, InvalidKeyError, LocalFileAdapter
from asyncblobdict.keys import (
    MAX_KEY_LENGTH,
    validate_folder_container,
    validate_key,
    validate_prefix,
)

GOOD = ["a", "a/b/c", "demo/config", "ünïcødé/ключ", "a b", "+%&=?#", "a..b", ".hidden", "x" * 1024]
BAD = [
    "",
    "/",
    "/a",
    "a/",
    "a//b",
    ".",
    "..",
    "../a",
    "a/..",
    "a/./b",
    "a\\b",
    "a\x00b",
    "tab\there",
    "new\nline",
    "\x7f",
    "\x9f",
    "\ud800",
    "x" * (MAX_KEY_LENGTH + 1),
]


@pytest.mark.parametrize("key", GOOD)
def test_good_keys(key: str) -> None:
    assert validate_key(key) == key


@pytest.mark.parametrize("key", BAD)
def test_bad_keys(key: str) -> None:
    with pytest.raises(InvalidKeyError) as info:
        validate_key(key, "c")
    assert isinstance(info.value, ValueError)
    assert "'c'" in str(info.value)


@pytest.mark.parametrize("key", [None, 1, b"a", ["a"]])
def test_non_str_keys(key: object) -> None:
    with pytest.raises(InvalidKeyError, match="must be a str"):
        validate_key(key)


@given(st.lists(st.text(min_size=1), min_size=1, max_size=5))
def test_segment_rule_matches_the_definition(segments: list[str]) -> None:
    key = "/".join(segments)
    expected_ok = (
        len(key) <= MAX_KEY_LENGTH
        and all(s not in ("", ".", "..") and "/" not in s for s in segments)
        and not any(
            c == "\\"
            or ord(c) < 0x20
            or 0x7F <= ord(c) <= 0x9F
            or 0xD800 <= ord(c) <= 0xDFFF
            or 0xFDD0 <= ord(c) <= 0xFDEF
            or ord(c) & 0xFFFE == 0xFFFE
            for c in key
        )
    )
    if expected_ok:
        assert validate_key(key) == key
    elif all("/" not in s for s in segments):
        with pytest.raises(InvalidKeyError):
            validate_key(key)


def test_prefix_may_be_partial() -> None:
    assert validate_prefix("") == ""
    assert validate_prefix("a/") == "a/"
    with pytest.raises(InvalidKeyError):
        validate_prefix("a\x00")


@pytest.mark.parametrize("name", ["demo_container", "a", "A-b.c_d", "x" * 255])
def test_good_folder_containers(name: str) -> None:
    assert validate_folder_container(name) == name


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "a\\b", "ä", "a b", "x" * 256, None])
def test_bad_folder_containers(name: object) -> None:
    with pytest.raises(InvalidKeyError):
        validate_folder_container(name)


NONCHARACTERS = [
    *range(0xFDD0, 0xFDF0),
    *(plane << 16 | low for plane in range(17) for low in (0xFFFE, 0xFFFF)),
]


def test_every_other_character_is_allowed() -> None:
    """Keys and prefixes refuse the 66 non-characters, and of the rest of Unicode only the
    control characters, the backslash and lone surrogates: every other code point passes."""
    assert len(set(NONCHARACTERS)) == 66  # U+FDD0-U+FDEF, and U+nFFFE, U+nFFFF of 17 planes
    refused = {*NONCHARACTERS, *range(0x20), *range(0x7F, 0xA0), ord("\\"), *range(0xD800, 0xE000)}
    allowed = "".join(chr(c) for c in range(0x110000) if c not in refused)
    for start in range(0, len(allowed), 1000):
        chunk = allowed[start : start + 1000]
        assert validate_prefix(chunk) == chunk
        key = "k" + chunk.replace("/", "")  # one segment
        assert validate_key(key) == key


@pytest.mark.parametrize("code", NONCHARACTERS, ids=lambda c: f"U+{c:04X}")
def test_noncharacters_are_refused_in_keys_and_prefixes(code: int) -> None:
    # Azurite cannot list a container holding a blob named with U+FFFF (defect 21).
    name = f"U+{code:04X}"
    with pytest.raises(InvalidKeyError, match=rf"non-character {re.escape(name)}\b"):
        validate_key(f"a/b{chr(code)}c", "c")
    with pytest.raises(InvalidKeyError, match=rf"non-character {re.escape(name)}\b"):
        validate_prefix(f"a/{chr(code)}", "c")


@pytest.mark.parametrize("code", [0xFDCF, 0xFDF0, 0xFFFD, 0x1FFFD, 0x20000, 0x10FFFD])
def test_characters_next_to_noncharacters_are_fine(code: int) -> None:
    assert validate_key(f"a{chr(code)}") == f"a{chr(code)}"
    assert validate_prefix(chr(code)) == chr(code)


async def test_store_refuses_a_noncharacter_key_before_any_io(tmp_path: Path) -> None:
    async with AsyncBlobStore(LocalFileAdapter(tmp_path), "c") as store:
        for call in (
            store.set_json("a\uffffb", 1),
            store.set_binary("\U0010fffe", b"x"),
            store.get_json("a/\ufdd0"),
            store.exists("a\uffff"),
            store.delete("a\uffff"),
            store.list_keys("a\uffff"),
        ):
            with pytest.raises(InvalidKeyError, match="non-character"):
                await call
    assert list(tmp_path.iterdir()) == []
