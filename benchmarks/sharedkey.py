"""A minimal Azure Blob client over bare aiohttp: the floor the library is measured against.

It issues the same SharedKey-signed requests as ``AzureBlobAdapter`` (Put Blob with
Content-MD5, Put Block + Put Block List, ranged Get Blob, List Blobs) and nothing else:
no retries, no error mapping, no MD5 check on reads. Used only by the benchmarks.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import re
import uuid
from email.utils import formatdate
from urllib.parse import quote

import aiohttp
from yarl import URL

API_VERSION = "2025-11-05"
_NAME_RE = re.compile(rb"<Name>([^<]*)</Name>")
_MARKER_RE = re.compile(rb"<NextMarker>([^<]*)</NextMarker>")


def _header_key(name: str) -> str:
    # Azure sorts canonicalised headers with '_' before digits ('-' < '_' < '0' is not
    # what plain sorted() gives); map '_' below '0' for the sort.
    return name.replace("_", "\x2f")


class SharedKeySigner:
    def __init__(self, account: str, key_b64: str) -> None:
        self.account = account
        self.key = base64.b64decode(key_b64)

    def sign(
        self,
        method: str,
        path: str,
        query: list[tuple[str, str]],
        headers: dict[str, str],
        content_length: int,
    ) -> str:
        lower = {k.lower(): v for k, v in headers.items()}
        ms = sorted((k, v.strip()) for k, v in lower.items() if k.startswith("x-ms-"))
        ms.sort(key=lambda kv: _header_key(kv[0]))
        canon_headers = "".join(f"{k}:{v}\n" for k, v in ms)
        resource = f"/{self.account}{path}"
        if query:
            grouped: dict[str, list[str]] = {}
            for k, v in query:
                grouped.setdefault(k.lower(), []).append(v)
            for k in sorted(grouped):
                resource += f"\n{k}:{','.join(sorted(grouped[k]))}"
        to_sign = "\n".join(
            [
                method,
                lower.get("content-encoding", ""),
                lower.get("content-language", ""),
                str(content_length) if content_length else "",
                lower.get("content-md5", ""),
                lower.get("content-type", ""),
                "",  # Date: x-ms-date is used instead
                lower.get("if-modified-since", ""),
                lower.get("if-match", ""),
                lower.get("if-none-match", ""),
                lower.get("if-unmodified-since", ""),
                lower.get("range", ""),
            ]
        )
        to_sign += "\n" + canon_headers + resource
        mac = hmac.new(self.key, to_sign.encode("utf-8"), hashlib.sha256).digest()
        return f"SharedKey {self.account}:{base64.b64encode(mac).decode()}"


def _b64md5(data: bytes | memoryview) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()


class BareBlobClient:
    """Bare aiohttp requests, signed by hand. ``endpoint`` is path-style for Azurite."""

    def __init__(
        self,
        endpoint: str,
        account: str,
        key_b64: str,
        *,
        max_connections: int = 64,
        chunk: int = 8 * 1024 * 1024,
        block_size: int = 8 * 1024 * 1024,
        single_put_threshold: int = 8 * 1024 * 1024,
        max_concurrency: int = 4,
    ) -> None:
        self.endpoint = endpoint.rstrip("/")
        self.base_path = URL(self.endpoint).path.rstrip("/")
        self.origin = str(URL(self.endpoint).origin())
        self.signer = SharedKeySigner(account, key_b64)
        self.chunk = chunk
        self.block_size = block_size
        self.single_put_threshold = single_put_threshold
        self.max_concurrency = max_concurrency
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=max_connections),
            auto_decompress=False,
            skip_auto_headers=("Content-Type", "User-Agent"),
        )

    async def close(self) -> None:
        await self.session.close()

    async def request(
        self,
        method: str,
        container: str,
        blob: str | None,
        *,
        query: list[tuple[str, str]] | None = None,
        headers: dict[str, str] | None = None,
        body: bytes | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        path = f"{self.base_path}/{container}"
        if blob is not None:
            path += "/" + quote(blob, safe="/~")
        q = query or []
        h = {"x-ms-date": formatdate(usegmt=True), "x-ms-version": API_VERSION}
        if headers:
            h.update(headers)
        length = len(body) if body is not None else 0
        if method in ("PUT", "POST", "DELETE") or body is not None:
            h["Content-Length"] = str(length)
        h["Authorization"] = self.signer.sign(method, path, q, h, length)
        qs = "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in q)
        url = URL(self.origin + path + (f"?{qs}" if qs else ""), encoded=True)
        async with self.session.request(method, url, headers=h, data=body) as resp:
            data = await resp.read()
            return resp.status, dict(resp.headers), data

    # -- operations --------------------------------------------------------------------

    async def create_container(self, container: str) -> None:
        status, _, body = await self.request(
            "PUT", container, None, query=[("restype", "container")], body=b""
        )
        if status not in (201, 409):
            raise RuntimeError(f"create container: {status} {body[:200]!r}")

    async def put(self, container: str, blob: str, data: bytes) -> None:
        if len(data) <= self.single_put_threshold:
            md5 = _b64md5(data)
            status, _, body = await self.request(
                "PUT",
                container,
                blob,
                headers={
                    "x-ms-blob-type": "BlockBlob",
                    "Content-MD5": md5,
                    "x-ms-blob-content-md5": md5,
                },
                body=data,
            )
            if status != 201:
                raise RuntimeError(f"put: {status} {body[:200]!r}")
            return
        view = memoryview(data)
        upload = uuid.uuid4().hex
        offsets = list(range(0, len(data), self.block_size))
        ids = [base64.b64encode(f"{upload}-{i:06d}".encode()).decode() for i in range(len(offsets))]
        sem = asyncio.Semaphore(self.max_concurrency)

        async def block(bid: str, start: int) -> None:
            async with sem:
                chunk = bytes(view[start : start + self.block_size])
                status, _, body = await self.request(
                    "PUT",
                    container,
                    blob,
                    query=[("comp", "block"), ("blockid", bid)],
                    headers={"Content-MD5": _b64md5(chunk)},
                    body=chunk,
                )
                if status != 201:
                    raise RuntimeError(f"put block: {status} {body[:200]!r}")

        await asyncio.gather(*(block(b, s) for b, s in zip(ids, offsets, strict=True)))
        xml = (
            '<?xml version="1.0" encoding="utf-8"?><BlockList>'
            + "".join(f"<Latest>{b}</Latest>" for b in ids)
            + "</BlockList>"
        ).encode()
        status, _, body = await self.request(
            "PUT",
            container,
            blob,
            query=[("comp", "blocklist")],
            headers={"Content-MD5": _b64md5(xml), "x-ms-blob-content-md5": _b64md5(data)},
            body=xml,
        )
        if status != 201:
            raise RuntimeError(f"put block list: {status} {body[:200]!r}")

    async def get(self, container: str, blob: str) -> bytes:
        status, headers, body = await self.request(
            "GET", container, blob, headers={"x-ms-range": f"bytes=0-{self.chunk - 1}"}
        )
        if status not in (200, 206):
            raise RuntimeError(f"get: {status} {body[:200]!r}")
        if status == 200:
            return body
        total = int(headers.get("Content-Range", "").rsplit("/", 1)[1])
        if total <= len(body):
            return body
        etag = headers.get("ETag", "")
        sem = asyncio.Semaphore(self.max_concurrency)

        async def rng(start: int) -> bytes:
            end = min(start + self.chunk, total) - 1
            async with sem:
                s, _, b = await self.request(
                    "GET",
                    container,
                    blob,
                    headers={"x-ms-range": f"bytes={start}-{end}", "If-Match": etag},
                )
            if s not in (200, 206):
                raise RuntimeError(f"get range: {s}")
            return b

        rest = await asyncio.gather(*(rng(s) for s in range(len(body), total, self.chunk)))
        return b"".join([body, *rest])

    async def list(self, container: str, prefix: str = "") -> list[str]:
        names: list[str] = []
        marker = ""
        while True:
            q = [("restype", "container"), ("comp", "list"), ("maxresults", "5000")]
            if prefix:
                q.append(("prefix", prefix))
            if marker:
                q.append(("marker", marker))
            status, _, body = await self.request("GET", container, None, query=q)
            if status != 200:
                raise RuntimeError(f"list: {status} {body[:200]!r}")
            names.extend(_xml_unescape(n.decode()) for n in _NAME_RE.findall(body))
            m = _MARKER_RE.search(body)
            marker = _xml_unescape(m.group(1).decode()) if m else ""
            if not marker:
                return names


def _xml_unescape(s: str) -> str:
    if "&" not in s:
        return s
    return (
        s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", '"')
        .replace("&apos;", "'")
        .replace("&amp;", "&")
    )
