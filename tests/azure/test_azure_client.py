"""The per-request parts of the Blob client: request ids and the x-ms-date header."""

from __future__ import annotations

import uuid
from email.utils import formatdate

import pytest

from asyncblobdict.adapters.azure import client


def test_request_ids_are_random_version_4_uuids() -> None:
    ids = [client._request_id() for _ in range(5000)]
    assert len(set(ids)) == len(ids)
    variants = set()
    for text in ids:
        parsed = uuid.UUID(text)
        assert str(parsed) == text  # lowercase, dashes where uuid puts them
        assert parsed.version == 4
        assert parsed.variant == uuid.RFC_4122
        variants.add(text[19])
    assert variants == set("89ab")  # every variant digit occurs, nothing else


def test_the_date_header_follows_the_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    date = client._HttpDate()
    for now in (1_700_000_000.0, 1_700_000_000.999, 1_700_000_001.0, 1_600_000_000.5, 0.25):
        monkeypatch.setattr("time.time", lambda now=now: now)
        assert date.now() == formatdate(now, usegmt=True)
