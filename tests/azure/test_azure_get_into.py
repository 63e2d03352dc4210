"""Whole-value get of a ranged blob: ranges written straight into one buffer (send_into),
resumed after a cut body, checked against the blob's MD5 (MockTransport, no network)."""

from __future__ import annotations

import base64
import hashlib
import re
from typing import Any

import pytest

from asyncblobdict import StorageError
from asyncblobdict.adapters.azure import AzureBlobAdapter
from asyncblobdict.adapters.azure.transport import (
    AnswerLostError,
    HttpRequest,
    HttpResponse,
    MockTransport,
)

KEY = base64.b64encode(b"k" * 32).decode()
DATA = hashlib.shake_256(b"get-into").digest(3 * 1000 + 17)


class Server:
    """Serves DATA with ranges; cuts each range's first answer after ``cut`` bytes."""

    def __init__(self, cut: int | None, md5: bytes | None = None) -> None:
        self.cut = cut
        self.md5 = hashlib.md5(DATA).digest() if md5 is None else md5
        self.ranges: list[str] = []
        self.cut_starts: set[int] = set()

    def __call__(self, request: HttpRequest) -> HttpResponse:
        rng = request.headers["x-ms-range"]
        self.ranges.append(rng)
        start, end = map(int, re.fullmatch(r"bytes=(\d+)-(\d+)", rng).groups())  # type: ignore[union-attr]
        end = min(end, len(DATA) - 1)
        headers = {
            "ETag": '"0x1"',
            "Content-Range": f"bytes {start}-{end}/{len(DATA)}",
            "x-ms-blob-content-md5": base64.b64encode(self.md5).decode(),
        }
        body = DATA[start : end + 1]
        cut = self.cut
        if (
            cut is not None
            and len(body) > cut
            and start % 1000 == 0
            and start not in self.cut_starts
        ):
            self.cut_starts.add(start)
            error = AnswerLostError("cut")
            error.partial = HttpResponse(206, headers, body[:cut])
            raise error
        return HttpResponse(206, headers, body)


class SendOnly:
    """A transport without send_into: the client copies bodies in itself."""

    def __init__(self, inner: MockTransport) -> None:
        self.inner = inner

    async def send(self, request: HttpRequest) -> HttpResponse:
        return await self.inner.send(request)

    async def close(self) -> None:
        await self.inner.close()


def _adapter(transport: Any) -> AzureBlobAdapter:
    return AzureBlobAdapter(
        "http://127.0.0.1:1/acct",
        ("acct", KEY),
        read_chunk_size=1000,
        max_concurrency=2,
        transport=transport,
    )


@pytest.mark.parametrize("wrap", [False, True], ids=["send_into", "send_only"])
async def test_get_reads_ranges_into_one_buffer_and_resumes(wrap: bool) -> None:
    server = Server(cut=300)
    mock = MockTransport(server)
    adapter = _adapter(SendOnly(mock) if wrap else mock)
    data, info = await adapter.get("ccc", "k")
    await adapter.close()
    assert data == DATA and isinstance(data, bytes) and info.size == len(DATA)
    # Every range (the first too) was cut after 300 bytes and went on from there, never
    # fetched again from its start.
    starts = [int(r.split("=")[1].split("-")[0]) for r in server.ranges]
    assert sorted(starts) == [0, 300, 1000, 1300, 2000, 2300, 3000]


async def test_get_into_still_checks_the_md5() -> None:
    adapter = _adapter(MockTransport(Server(cut=None, md5=b"\0" * 16)))
    with pytest.raises(StorageError, match="MD5"):
        await adapter.get("ccc", "k")
    await adapter.close()
