"""How Azure downloads are verified, on Azurite: the blob's stored MD5 over a whole-value
read, else each range's own MD5 (x-ms-range-get-content-md5, ranges of at most 4 MiB);
a byte corrupted on the way (injected by a transport wrapped around the real one: a fault
Azurite cannot produce) is caught on every path, a resumed range included."""

from __future__ import annotations

import base64
import hashlib
import itertools
import logging
import re
from collections.abc import Mapping
from pathlib import Path

import pytest

from asyncblobdict import AsyncBlobStore, StorageError
from asyncblobdict.adapters.azure import AzureBlobAdapter
from asyncblobdict.adapters.azure.aiohttp_transport import AiohttpTransport
from asyncblobdict.adapters.azure.transport import AnswerLostError, HttpRequest, HttpResponse
from tests.azure.azurite import Azurite, new_container_name

pytestmark = pytest.mark.azure

blob_aio = pytest.importorskip("azure.storage.blob.aio")

MiB = 1024 * 1024
RANGE_MD5 = "x-ms-range-get-content-md5"


def _data(size: int, seed: int) -> bytes:
    return hashlib.shake_256(f"verify-{seed}".encode()).digest(size)


class Faulty:
    """The real transport, seen through: records each ranged GET's headers, and can flip
    one byte of the blob (``corrupt_at``) in every answer that carries it, or cut the first
    answer for the range starting at ``cut_start`` after ``cut_after`` bytes."""

    def __init__(
        self,
        corrupt_at: int | None = None,
        cut_start: int | None = None,
        cut_after: int = 0,
    ) -> None:
        self.inner = AiohttpTransport()
        self.corrupt_at = corrupt_at
        self.cut_start = cut_start
        self.cut_after = cut_after
        self.seen: list[Mapping[str, str]] = []
        self.corrupted = 0

    async def send(self, request: HttpRequest) -> HttpResponse:
        answer = await self.inner.send(request)
        rng = request.headers.get("x-ms-range")
        if request.method != "GET" or rng is None or answer.status != 206:
            return answer
        self.seen.append(dict(request.headers))
        start = int(rng.split("=")[1].split("-")[0])
        body = answer.body
        at = self.corrupt_at
        if at is not None and start <= at < start + len(body):
            changed = bytearray(body)
            changed[at - start] ^= 0x01
            body = bytes(changed)
            self.corrupted += 1
        if start == self.cut_start:
            self.cut_start = None  # once
            error = AnswerLostError("cut by the test")
            error.partial = HttpResponse(answer.status, answer.headers, body[: self.cut_after])
            raise error
        return HttpResponse(answer.status, answer.headers, body)

    async def close(self) -> None:
        await self.inner.close()

    def ranges(self) -> list[tuple[int, int, bool]]:
        """(first byte, last byte, asked for the range's MD5) of each ranged GET."""
        out = []
        for headers in self.seen:
            match = re.fullmatch(r"bytes=(\d+)-(\d+)", headers["x-ms-range"])
            assert match is not None
            out.append((int(match[1]), int(match[2]), headers.get(RANGE_MD5) == "true"))
        return sorted(out)  # recorded as answers complete, in parallel


async def _put_without_md5(azurite: Azurite, container: str, key: str, data: bytes) -> None:
    """Blocks committed without x-ms-blob-content-md5: the blob has no stored MD5 (as
    with the SDK's own chunked uploads)."""
    async with blob_aio.BlobServiceClient.from_connection_string(
        azurite.connection_string, api_version="2025-11-05"
    ) as service:
        container_client = service.get_container_client(container)
        if not await container_client.exists():
            await container_client.create_container()
        blob = container_client.get_blob_client(key)
        ids = []
        for i, pos in enumerate(range(0, len(data), 3 * MiB)):
            block_id = base64.b64encode(f"{i:06d}".encode()).decode()
            await blob.stage_block(block_id, data[pos : pos + 3 * MiB])
            ids.append(block_id)
        await blob.commit_block_list(ids)


async def _setup(azurite: Azurite, size: int, *, stored_md5: bool) -> tuple[str, bytes]:
    container = new_container_name()
    data = _data(size, size)
    if stored_md5:
        writer = azurite.new_adapter()
        try:
            await writer.put(container, "v", data)
        finally:
            await writer.close()
    else:
        await _put_without_md5(azurite, container, "v", data)
    return container, data


async def _read(adapter: AzureBlobAdapter, container: str, how: str, tmp: Path) -> bytes:
    store = AsyncBlobStore(adapter, container, cache_mode="none")
    if how == "get":
        return await store.get_binary("v")
    if how == "iter":
        return b"".join([c async for c in store.iter_binary("v")])
    if how == "file":
        await store.get_file("v", tmp / "v.bin")
        return (tmp / "v.bin").read_bytes()
    offset, length = (int(n) for n in how.split(":"))
    return await store.get_binary("v", offset=offset, length=length)


@pytest.mark.parametrize("how", ["get", "iter"])
async def test_a_blob_with_its_md5_is_checked_whole(
    azurite: Azurite, tmp_path: Path, how: str
) -> None:
    container, data = await _setup(azurite, 20 * MiB + 5, stored_md5=True)
    wire = Faulty()
    adapter = azurite.new_adapter(transport=wire)
    try:
        assert await _read(adapter, container, how, tmp_path) == data
        info = await adapter.head(container, "v")
    finally:
        await adapter.close()
    assert info is not None and info.content_md5 == hashlib.md5(data).digest()
    # Ranges of read_chunk_size (8 MiB), too large for their own MD5, all hashed whole in
    # order against the blob's MD5.
    assert wire.ranges() == [
        (0, 8 * MiB - 1, False),
        (8 * MiB, 16 * MiB - 1, False),
        (16 * MiB, 20 * MiB + 4, False),
    ]


@pytest.mark.parametrize("how", ["get", "iter", "file", f"{MiB + 3}:{9 * MiB}"])
async def test_a_blob_without_md5_is_checked_per_range(
    azurite: Azurite, tmp_path: Path, how: str
) -> None:
    container, data = await _setup(azurite, 10 * MiB + 3, stored_md5=False)
    wire = Faulty()
    adapter = azurite.new_adapter(transport=wire)
    try:
        info = await adapter.head(container, "v")
        assert info is not None and info.content_md5 is None
        got = await _read(adapter, container, how, tmp_path)
    finally:
        await adapter.close()
    if ":" in how:
        offset, length = (int(n) for n in how.split(":"))
        assert got == data[offset : offset + length]
    else:
        assert got == data
    checked = [r for r in wire.ranges() if r[2]]
    unchecked = [r for r in wire.ranges() if not r[2]]
    assert checked and all(last - first < 4 * MiB for first, last, _ in checked)
    # A whole read starts with 8 MiB (as for a blob with its MD5); the answer shows no
    # stored MD5, so those bytes are read again in checked ranges. A part asks for small
    # checked ranges from the start.
    assert unchecked == ([] if ":" in how else [(0, 8 * MiB - 1, False)])
    start = int(how.split(":")[0]) if ":" in how else 0
    assert checked[0][0] == start and all(a[1] + 1 == b[0] for a, b in itertools.pairwise(checked))


async def test_a_part_of_a_blob_with_its_md5_is_checked_per_range(
    azurite: Azurite, tmp_path: Path
) -> None:
    container, data = await _setup(azurite, 12 * MiB, stored_md5=True)
    wire = Faulty()
    adapter = azurite.new_adapter(transport=wire)
    try:
        got = await _read(adapter, container, f"0:{9 * MiB}", tmp_path)
    finally:
        await adapter.close()
    assert got == data[: 9 * MiB]
    assert wire.ranges() == [
        (0, 4 * MiB - 1, True),
        (4 * MiB, 8 * MiB - 1, True),
        (8 * MiB, 9 * MiB - 1, True),
    ]


_CORRUPT = [
    # (stored MD5, size, read, corrupted byte)
    (True, 20 * MiB + 5, "get", 13 * MiB + 7),  # whole-blob MD5, into one buffer
    (True, 20 * MiB + 5, "iter", 20 * MiB + 1),  # whole-blob MD5, streamed
    (True, 20 * MiB + 5, "get", 17),  # in the first range
    (True, 20 * MiB + 5, "file", 19 * MiB),  # whole-blob MD5: the file is not written
    (True, 20 * MiB + 5, f"{5 * MiB}:{3 * MiB}", 6 * MiB),  # a part: per range
    (False, 10 * MiB + 3, "get", 9 * MiB),  # per range, into one buffer
    (False, 10 * MiB + 3, "iter", 5 * MiB),  # per range, streamed
    (False, 10 * MiB + 3, "file", 1),  # per range, the first one
    (False, 3 * MiB, "get", 3 * MiB - 1),  # one range holds the whole blob
]


@pytest.mark.parametrize(
    ("stored", "size", "how", "at"), _CORRUPT, ids=[f"{c[0]}-{c[2]}-{c[3]}" for c in _CORRUPT]
)
async def test_a_corrupted_byte_is_caught(
    azurite: Azurite, tmp_path: Path, stored: bool, size: int, how: str, at: int
) -> None:
    container, _ = await _setup(azurite, size, stored_md5=stored)
    wire = Faulty(corrupt_at=at)
    adapter = azurite.new_adapter(transport=wire)
    try:
        with pytest.raises(StorageError) as caught:
            await _read(adapter, container, how, tmp_path)
    finally:
        await adapter.close()
    assert wire.corrupted >= 1  # a range read again is corrupted again
    assert caught.value.error_code == "Md5Mismatch"
    assert not (tmp_path / "v.bin").exists()


@pytest.mark.parametrize("how", ["get", "iter"])
@pytest.mark.parametrize("corrupt", [False, True])
async def test_a_resumed_range_is_checked_against_the_whole_range(
    azurite: Azurite, tmp_path: Path, how: str, corrupt: bool
) -> None:
    # The range 4-8 MiB is cut after 1 MiB and resumed; its MD5 came with the first answer
    # and covers all of it: a byte corrupted in the resumed part is caught.
    container, data = await _setup(azurite, 10 * MiB + 3, stored_md5=False)
    wire = Faulty(corrupt_at=6 * MiB if corrupt else None, cut_start=4 * MiB, cut_after=MiB)
    adapter = azurite.new_adapter(transport=wire)
    try:
        if corrupt:
            with pytest.raises(StorageError) as caught:
                await _read(adapter, container, how, tmp_path)
            assert caught.value.error_code == "Md5Mismatch"
        else:
            assert await _read(adapter, container, how, tmp_path) == data
    finally:
        await adapter.close()
    ranges = wire.ranges()
    # Resumed after the first MiB (no MD5 asked for the rest), never fetched again whole.
    assert (5 * MiB, 8 * MiB - 1, False) in ranges
    assert sum(1 for first, _, _ in ranges if first == 4 * MiB) == 1


async def test_a_whole_get_hands_out_its_buffer_without_a_copy(
    azurite: Azurite, caplog: pytest.LogCaptureFixture
) -> None:
    # Every slice of the read buffer (the ones hashed in threads too) is gone when the
    # buffer becomes the bytes returned; else the whole value would be copied.
    with_md5, _ = await _setup(azurite, 20 * MiB + 5, stored_md5=True)
    without_md5, _ = await _setup(azurite, 10 * MiB + 3, stored_md5=False)
    adapter = azurite.new_adapter()
    caplog.set_level(logging.DEBUG, logger="asyncblobdict.azure")
    try:
        for _ in range(3):
            for container in (with_md5, without_md5):
                await adapter.get(container, "v")
    finally:
        await adapter.close()
    assert not [r for r in caplog.records if "still alive" in r.getMessage()]
