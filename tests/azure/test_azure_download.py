"""Azure downloads on Azurite: bytes come back as stored (a gzip-encoded blob is not
decompressed), and a read racing an overwrite returns one version or raises, never a mix
(whole get_binary, ranged get_binary, iter_binary)."""

from __future__ import annotations

import gzip
import hashlib
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from asyncblobdict import AsyncBlobStore, ConcurrencyError
from asyncblobdict.adapters.azure.aiohttp_transport import AiohttpTransport
from asyncblobdict.adapters.azure.transport import HttpRequest, HttpResponse
from tests.azure.azurite import Azurite, new_container_name

pytestmark = pytest.mark.azure

blob_aio = pytest.importorskip("azure.storage.blob.aio")
blob_sync = pytest.importorskip("azure.storage.blob")

MiB = 1024 * 1024


def _data(size: int, seed: int) -> bytes:
    return hashlib.shake_256(f"download-{seed}".encode()).digest(size)


@pytest.mark.parametrize(
    ("size", "single_put"), [(1000, True), (9 * MiB + 7, False)], ids=["small", "blocks"]
)
async def test_a_gzip_encoded_blob_comes_back_as_stored(
    azurite: Azurite, tmp_path: Path, size: int, single_put: bool
) -> None:
    # Written by the SDK with Content-Encoding: gzip (blocks committed without an MD5 for
    # the large one); every read returns the compressed bytes, never decompressed ones.
    stored = gzip.compress(_data(size, 1), compresslevel=1, mtime=0)
    container = new_container_name()
    async with blob_aio.BlobServiceClient.from_connection_string(
        azurite.connection_string,
        api_version="2025-11-05",
        max_single_put_size=4 * MiB if not single_put else 64 * MiB,
        max_block_size=4 * MiB,
    ) as service:
        await service.create_container(container)
        await service.get_blob_client(container, "z.gz").upload_blob(
            stored,
            content_settings=blob_sync.ContentSettings(
                content_type="application/octet-stream", content_encoding="gzip"
            ),
        )
    adapter = azurite.new_adapter(read_chunk_size=2 * MiB)
    try:
        store = AsyncBlobStore(adapter, container, cache_mode="none")
        assert await store.get_binary("z.gz") == stored
        assert b"".join([c async for c in store.iter_binary("z.gz")]) == stored
        assert await store.get_binary("z.gz", offset=5, length=500) == stored[5:505]
        await store.get_file("z.gz", tmp_path / "z.gz")
        assert (tmp_path / "z.gz").read_bytes() == stored
        assert gzip.decompress((tmp_path / "z.gz").read_bytes()) == _data(size, 1)
    finally:
        await adapter.close()


class OverwriteAfterFirstRange:
    """The real transport; once the first ranged GET of the key has its answer, ``then``
    runs (another writer overwrites the value) before the answer is handed back."""

    def __init__(self, then: Callable[[], Awaitable[None]]) -> None:
        self.inner = AiohttpTransport()
        self.then: Callable[[], Awaitable[None]] | None = then
        self.statuses: list[int] = []

    async def send(self, request: HttpRequest) -> HttpResponse:
        answer = await self.inner.send(request)
        if request.method == "GET" and "x-ms-range" in request.headers:
            self.statuses.append(answer.status)
            then, self.then = self.then, None
            if then is not None:
                await then()
        return answer

    async def close(self) -> None:
        await self.inner.close()


@pytest.mark.parametrize("how", ["get", "range", "iter"])
async def test_a_read_racing_an_overwrite_never_mixes_versions(azurite: Azurite, how: str) -> None:
    size = 6 * MiB + 11
    old, new = _data(size, 2), _data(size, 3)
    container = new_container_name()
    writer = azurite.new_adapter()
    await writer.put(container, "v", old)

    async def overwrite() -> None:
        await writer.put(container, "v", new)

    wire = OverwriteAfterFirstRange(overwrite)
    reader = azurite.new_adapter(read_chunk_size=MiB, max_concurrency=2, transport=wire)
    store = AsyncBlobStore(reader, container, cache_mode="none")
    try:
        if how == "get":
            # A whole get starts again on the new version (the old one is gone): all new.
            assert await store.get_binary("v") == new
        elif how == "range":
            # The range's first MiB came from the old version; the rest is refused (412):
            # an error, not old bytes followed by new ones.
            with pytest.raises(ConcurrencyError):
                await store.get_binary("v", offset=MiB // 2, length=4 * MiB)
        else:
            got: list[bytes] = []
            with pytest.raises(ConcurrencyError):
                async for chunk in store.iter_binary("v"):
                    got.append(chunk)
            whole = b"".join(got)
            assert whole == old[: len(whole)]  # what was handed out is all old
    finally:
        await reader.close()
        await writer.close()
    assert 412 in wire.statuses  # the later ranges were pinned to the first answer's ETag
