"""AzureBlobAdapter: the adapter protocol over the Blob REST API."""

from __future__ import annotations

import asyncio
import base64
import enum
import functools
import hashlib
import logging
import mmap
import os
import re
import ssl
import uuid
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Mapping,
    Sequence,
)
from dataclasses import replace
from typing import Any, Literal, NoReturn, TypeVar

from ..._tasks import bounded_in_order, gather_bounded
from ...errors import (
    BlobNotFoundError,
    ConcurrencyError,
    InvalidKeyError,
    OutcomeUnknownError,
    StorageError,
)
from ..base import (
    OVERWRITE,
    BlobInfo,
    Create,
    Precondition,
    Update,
    check_delimiter,
    check_range,
    range_end,
    validate_content_type,
    validate_metadata,
)
from .aiohttp_transport import AiohttpTransport
from .auth import (
    AsyncTokenCredential,
    Authorizer,
    BearerTokenAuth,
    SasAuth,
    SharedKeyAuth,
)
from .buffer import BytesBuffer
from .client import DEFAULT_API_VERSION, BlobClient, Failure, Response
from .connection import (
    ConnectionStringError,
    decode_account_key,
    parse_account_url,
    parse_connection_string,
)
from .error_map import error_details, raise_for_status
from .listing import (
    block_list_xml,
    decode_md5,
    normalize_etag,
    parse_blob_list,
    parse_blob_metadata,
    parse_blob_names,
    parse_http_date,
)
from .names import blob_path, validate_container_name
from .retry import RetryPolicy
from .transport import HttpResponse, Transport

__all__ = ["TOKEN_METADATA", "AzureBlobAdapter", "Credential"]

logger = logging.getLogger("asyncblobdict.azure")

MiB = 1024 * 1024
# Service limits for block blobs (API version 2019-12-12 and later).
MAX_BLOCK_SIZE = 4000 * MiB
MAX_BLOCKS = 50_000
MAX_SINGLE_PUT = 5000 * MiB
# A ranged read that keeps losing to concurrent writers gives up after this many restarts.
MAX_READ_RESTARTS = 3
# Get Blob returns a range's own MD5 (x-ms-range-get-content-md5: true) only for a range of
# at most 4 MiB; for a larger one the service answers 400.
RANGE_MD5_MAX = 4 * MiB
_RANGE_MD5 = {"x-ms-range-get-content-md5": "true"}
# Every put stores a fresh random token (32 hex digits) as this metadata entry, and all
# attempts of one put send the same one: after an attempt whose answer was lost, a HEAD
# tells whether the stored version is ours. Comparing bytes cannot: another writer storing
# equal bytes is the normal case for a counter. Metadata names must be C# identifiers.
TOKEN_METADATA = "abdtoken"
_TOKEN_HEADER = "x-ms-meta-" + TOKEN_METADATA
# A conflict after a lost answer, while storage still holds the version our condition
# names (so our write did not land), sends the write again at most this many times.
MAX_UNLANDED_RETRIES = 3

Credential = str | tuple[str, str] | Mapping[str, str] | AsyncTokenCredential


class _Verdict(enum.Enum):
    """What storage shows about a write whose outcome was unknown."""

    LANDED = "landed"  # our token is stored
    NOT_LANDED = "not landed"  # still the version (or absence) our condition named
    UNKNOWN = "unknown"  # another writer's version: ours may have landed before it


_Item = TypeVar("_Item")


async def _no_bytes() -> AsyncIterator[bytes]:
    return
    yield b""


_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+)")


def _blob_info(key: str, resp: Response, size: int, md5: bytes | None) -> BlobInfo:
    """The properties a GET or HEAD answer carries (our write token left out)."""
    metadata = {
        name.lower()[10:]: value
        for name, value in resp.headers.items()
        if name.lower().startswith("x-ms-meta-") and name.lower() != _TOKEN_HEADER
    }
    return BlobInfo(
        key,
        size,
        normalize_etag(resp.header("ETag")),
        parse_http_date(resp.header("Last-Modified")),
        md5,
        resp.header("Content-Type"),
        metadata,
    )


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _md5(data: bytes | memoryview) -> bytes:
    return hashlib.md5(data, usedforsecurity=False).digest()


# Hashing runs about 0.8 GB/s here; beyond this size it moves off the event loop (hashlib
# releases the GIL), below it a thread hop would cost more than the hash.
_HASH_ON_LOOP_MAX = 256 * 1024


async def _update_off_loop(md5: Any, data: bytes | bytearray | memoryview) -> None:
    """Feed ``data`` to a running MD5, in a thread when it is big."""
    if len(data) <= _HASH_ON_LOOP_MAX:
        md5.update(data)
    else:
        await asyncio.to_thread(md5.update, data)


async def _md5_off_loop(data: bytes | memoryview) -> bytes:
    if len(data) <= _HASH_ON_LOOP_MAX:
        return _md5(data)
    return await asyncio.to_thread(_md5, data)


def _update_then_release(md5: Any, view: memoryview) -> None:
    with view:
        md5.update(view)


def _md5_then_release(view: memoryview) -> bytes:
    with view:
        return _md5(view)


async def _update_consuming(md5: Any, view: memoryview) -> None:
    """Like :func:`_update_off_loop` for a slice of a :class:`BytesBuffer` made for this
    call alone: the slice is released by the thread that hashed it, before the caller
    resumes. Else the executor could still hold it when the buffer is taken, and the
    whole value would be copied."""
    if len(view) <= _HASH_ON_LOOP_MAX:
        _update_then_release(md5, view)
    else:
        await asyncio.to_thread(_update_then_release, md5, view)


async def _md5_consuming(view: memoryview) -> bytes:
    """The MD5 of a slice made for this call alone, released once hashed (see above)."""
    if len(view) <= _HASH_ON_LOOP_MAX:
        return _md5_then_release(view)
    return await asyncio.to_thread(_md5_then_release, view)


def _md5_mismatch(container: str, key: str, what: str) -> StorageError:
    return StorageError(
        f"get failed: Content-MD5 mismatch ({what}), the data was corrupted in transit or storage",
        container=container,
        key=key,
        error_code="Md5Mismatch",
    )


def _new_block(size: int) -> mmap.mmap:
    """A buffer for one block of a streamed upload: an anonymous memory map, so its pages
    cost memory only once written, and go back to the system as soon as it is dropped
    (not kept by the allocator, whose freed chunks raised the peak RSS by ~10 MiB)."""
    return mmap.mmap(-1, size)


def _make_auth(account_url: str, credential: object) -> tuple[str, str, Authorizer | None]:
    endpoint, account, url_sas = parse_account_url(account_url)
    if credential is None:
        return endpoint, account, SasAuth(url_sas) if url_sas else None
    if isinstance(credential, str):
        text = credential.strip()
        if text.startswith("?") or "sig=" in text:
            return endpoint, account, SasAuth(text)
        return endpoint, account, SharedKeyAuth(account, decode_account_key(text))
    if isinstance(credential, tuple) and len(credential) == 2:
        name, key = credential
        if isinstance(name, str) and isinstance(key, str):
            return endpoint, name, SharedKeyAuth(name, decode_account_key(key))
    if isinstance(credential, Mapping):
        name, key = credential.get("account_name"), credential.get("account_key")
        if isinstance(name, str) and isinstance(key, str):
            return endpoint, name, SharedKeyAuth(name, decode_account_key(key))
        raise ConnectionStringError("a credential dict needs 'account_name' and 'account_key'")
    if callable(getattr(credential, "get_token", None)):
        return endpoint, account, BearerTokenAuth(credential)  # type: ignore[arg-type]
    raise ConnectionStringError(
        "credential must be an account key, a SAS token, (account_name, account_key), "
        f"or an object with an async get_token(); got {type(credential).__name__}"
    )


class AzureBlobAdapter:
    """Stores values as block blobs in an Azure Storage account (or Azurite).

    ``account_url`` is the blob endpoint (``https://<account>.blob.core.windows.net``, or the
    path-style ``http://127.0.0.1:10000/devstoreaccount1`` for Azurite). ``credential`` is an
    account key, a SAS token, ``(account_name, account_key)``, or any object with an async
    ``get_token(*scopes)`` (azure-identity credentials). Options:

    - ``single_put_threshold`` (8 MiB): larger values are uploaded as blocks.
    - ``block_size`` (8 MiB) and ``max_concurrency`` (4): parallel Put Block uploads and
      ranged reads of ``read_chunk_size`` (8 MiB).
    - ``list_page_size`` (5000): blobs per List Blobs request.
    - ``retry`` (:class:`RetryPolicy`), ``request_timeout`` (120 s per attempt),
      ``connect_timeout`` (10 s), ``max_connections`` (64), ``api_version`` ("2025-11-05").
    - ``ssl_context``: the ``ssl.SSLContext`` that verifies the server (default: the
      system's trusted CAs), e.g. to trust a private CA or Azurite's certificate.
    - ``transport``: how requests go over the wire (see
      :mod:`asyncblobdict.adapters.azure.transport`); by default an aiohttp session per event
      loop, built from the timeout, connection and TLS options. The adapter owns it and
      closes it.

    A credential passed in is not closed by :meth:`close`: it may serve other adapters,
    and closing it stays with its owner (as with azure-identity).

    ``list`` and ``list_names`` yield keys in the service's order (UTF-8 binary order on
    Azure; Azurite lists folders first within a page and sorts by UTF-16). A missing
    container is created by the first ``put``. A put without ``content_type`` stores the
    service's default, ``application/octet-stream``.

    Retries (``retry``) cover 408, 429, 5xx, dropped connections and timeouts. A write
    whose answer was lost may still have been applied, so its outcome is settled from
    storage, never guessed: every put stores a random token of its own in the blob's
    metadata (``abdtoken``, see :data:`TOKEN_METADATA`), and after such an attempt a HEAD
    shows either that token (the put landed: success), or the version the put was
    conditioned on (it did not land: a conflict is retried, a failure raised as it is), or
    something else, which raises :class:`~asyncblobdict.OutcomeUnknownError` (the write may
    or may not have been applied). A conditional delete is settled the same way; a key
    found gone counts as deleted. A conflict without such an attempt is a plain
    ConcurrencyError, and storage is unchanged.

    The adapter holds one connection pool per event loop, made on first use. ``close()`` is
    final: requests still running fail, and any later request raises StorageError ("the
    adapter is closed"); make a new adapter to continue. The pool is also closed when its
    event loop shuts down (``asyncio.run``) or when the adapter is next used from another
    loop.
    """

    def __init__(
        self,
        account_url: str,
        credential: Credential | None = None,
        *,
        single_put_threshold: int = 8 * MiB,
        block_size: int = 8 * MiB,
        max_concurrency: int = 4,
        read_chunk_size: int = 8 * MiB,
        list_page_size: int = 5000,
        retry: RetryPolicy | None = None,
        request_timeout: float | None = 120.0,
        connect_timeout: float | None = 10.0,
        max_connections: int = 64,
        api_version: str = DEFAULT_API_VERSION,
        ssl_context: ssl.SSLContext | None = None,
        transport: Transport | None = None,
    ) -> None:
        if not 1 <= single_put_threshold <= MAX_SINGLE_PUT:
            raise ValueError(f"single_put_threshold must be between 1 and {MAX_SINGLE_PUT}")
        if not 1 <= block_size <= MAX_BLOCK_SIZE:
            raise ValueError(f"block_size must be between 1 and {MAX_BLOCK_SIZE}")
        if read_chunk_size < 1:
            raise ValueError("read_chunk_size must be at least 1")
        if max_concurrency < 1:
            raise ValueError("max_concurrency must be at least 1")
        if not 1 <= list_page_size <= 5000:
            raise ValueError("list_page_size must be between 1 and 5000")
        endpoint, account, auth = _make_auth(account_url, credential)
        self.account_name = account
        self.endpoint = endpoint
        self.single_put_threshold = single_put_threshold
        self.block_size = block_size
        self.max_concurrency = max_concurrency
        self.read_chunk_size = read_chunk_size
        self.list_page_size = list_page_size
        if transport is None:
            transport = AiohttpTransport(
                request_timeout=request_timeout,
                connect_timeout=connect_timeout,
                max_connections=max_connections,
                ssl_context=ssl_context,
            )
        self._client = BlobClient(
            endpoint, auth, transport=transport, api_version=api_version, retry=retry
        )

    @classmethod
    def from_connection_string(cls, conn_str: str, **options: Any) -> AzureBlobAdapter:
        """Build an adapter from an Azure Storage connection string.

        Accepts account-key strings, SAS strings (BlobEndpoint + SharedAccessSignature) and
        ``UseDevelopmentStorage=true`` (Azurite on 127.0.0.1:10000). Raises
        :class:`ConnectionStringError` (a ValueError) for a malformed string.
        """
        info = parse_connection_string(conn_str)
        if info.account_key is not None:
            credential: Credential = (info.account_name, _b64(info.account_key))
        else:
            credential = "?" + (info.sas_token or "")
        adapter = cls(info.endpoint, credential, **options)
        adapter.account_name = info.account_name
        return adapter

    def __repr__(self) -> str:
        return f"AzureBlobAdapter(account={self.account_name!r}, endpoint={self.endpoint!r})"

    @property
    def retry(self) -> RetryPolicy:
        """The retry policy in use."""
        return self._client.retry

    @staticmethod
    def validate_container(container: str) -> str:
        """Check an Azure container name before any request (InvalidKeyError if bad)."""
        return validate_container_name(container)

    # --- requests ------------------------------------------------------------------------

    async def _send(
        self,
        method: str,
        container: str,
        key: str | None,
        *,
        action: str,
        query: list[tuple[str, str]] | None = None,
        headers: dict[str, str] | None = None,
        body: bytes | memoryview | None = None,
        resume: Callable[[HttpResponse], dict[str, str] | None] | None = None,
        into: memoryview | None = None,
    ) -> Response:
        """Send one request with retries; network failures past the budget raise."""
        outcome = await self._send_outcome(
            method,
            container,
            key,
            action=action,
            query=query,
            headers=headers,
            body=body,
            resume=resume,
            into=into,
        )
        if isinstance(outcome, Failure):
            raise outcome.error from None
        return outcome

    async def _send_outcome(
        self,
        method: str,
        container: str,
        key: str | None,
        *,
        action: str,
        query: list[tuple[str, str]] | None = None,
        headers: dict[str, str] | None = None,
        body: bytes | memoryview | None = None,
        resume: Callable[[HttpResponse], dict[str, str] | None] | None = None,
        into: memoryview | None = None,
    ) -> Response | Failure:
        """Like :meth:`_send`, but running out of retries is an outcome, not an exception."""
        return await self._client.send(
            method,
            blob_path(container, key),
            query=query,
            headers=headers,
            body=body,
            action=action,
            container=container,
            key=key,
            resume=resume,
            into=into,
        )

    async def _create_container(self, container: str) -> None:
        resp = await self._send(
            "PUT",
            container,
            None,
            action="create container",
            query=[("restype", "container")],
            body=b"",
        )
        # 409 ContainerAlreadyExists: someone else created it first, which is what we wanted.
        if resp.status not in (201, 409):
            raise_for_status(
                resp.status,
                resp.headers,
                resp.body,
                action="create container",
                container=container,
                key=None,
            )

    async def _with_container(
        self, container: str, operation: Callable[[], Awaitable[Response | Failure]]
    ) -> Response | Failure:
        """Run a write; if the container is missing, create it and run the write again."""
        outcome = await operation()
        if (
            isinstance(outcome, Response)
            and outcome.status == 404
            and error_details(outcome.headers, outcome.body)[0] == "ContainerNotFound"
        ):
            await self._create_container(container)
            again = await operation()
            if outcome.ambiguous and not again.ambiguous:
                again = replace(again, ambiguous=True)
            outcome = again
        return outcome

    async def _stored_version(
        self, container: str, key: str, action: str
    ) -> tuple[str, str | None] | None:
        """The stored blob's (ETag, write token), None when it is missing.

        Only called when an earlier attempt's outcome is unknown, so a failure here leaves
        it unknown: OutcomeUnknownError.
        """
        outcome = await self._send_outcome("HEAD", container, key, action=f"{action} check")
        if isinstance(outcome, Response):
            if outcome.status == 404:
                return None
            etag = normalize_etag(outcome.header("ETag"))
            if outcome.status == 200 and etag is not None:
                return etag, outcome.header(_TOKEN_HEADER)
            why = f"it answered {outcome.status}"
        else:
            why = outcome.error.message
        raise OutcomeUnknownError(
            f"{action}: an attempt's answer was lost, and reading the key to learn whether "
            f"it was applied failed ({why}): the write may or may not have been applied",
            container=container,
            key=key,
        )

    async def _verdict(
        self,
        container: str,
        key: str,
        token: str,
        if_match: str | None,
        if_none_match: bool,
    ) -> tuple[_Verdict, str | None]:
        """Whether a put carrying ``token`` under this condition landed; the stored ETag."""
        stored = await self._stored_version(container, key, "put")
        if stored is not None and stored[1] == token:
            return _Verdict.LANDED, stored[0]
        if stored is None and if_none_match:
            return _Verdict.NOT_LANDED, None
        if stored is not None and if_match is not None and stored[0] == normalize_etag(if_match):
            return _Verdict.NOT_LANDED, stored[0]
        return _Verdict.UNKNOWN, None

    @staticmethod
    def _raise_outcome(
        outcome: Response | Failure,
        *,
        action: str,
        container: str,
        key: str,
        conditional: bool = False,
    ) -> NoReturn:
        if isinstance(outcome, Failure):
            raise outcome.error from None
        raise_for_status(
            outcome.status,
            outcome.headers,
            outcome.body,
            action=action,
            container=container,
            key=key,
            conditional=conditional,
        )

    # --- protocol --------------------------------------------------------------------------

    async def get(self, container: str, key: str) -> tuple[bytes, BlobInfo]:
        """Return the blob's bytes and properties; large blobs are read as parallel ranges."""
        validate_container_name(container)
        for _ in range(MAX_READ_RESTARTS):
            result = await self._get_once(container, key)
            if result is not None:
                return result
        raise StorageError(
            f"get failed: the blob changed during each of {MAX_READ_RESTARTS} ranged reads",
            container=container,
            key=key,
        )

    async def _get_once(self, container: str, key: str) -> tuple[bytes, BlobInfo] | None:
        chunk = self.read_chunk_size
        # The first range, resumed like the others if its body is cut short. Whether the
        # blob has a stored MD5 is not known yet: the range asks for its own MD5 when it
        # is small enough (4 MiB); a larger one is read again below in checked ranges if
        # the blob turns out to have none (only blobs committed without it).
        checked = chunk <= RANGE_MD5_MAX
        first = await self._fetch_range(
            container, key, 0, chunk - 1, None, range_md5=checked, whole_md5_ok=True
        )
        if first is not None:
            resp, body = first
        else:
            # 416: an empty blob has no byte 0 to range over; read it whole.
            resp = await self._send("GET", container, key, action="get")
            if resp.status != 200:
                raise_for_status(
                    resp.status,
                    resp.headers,
                    resp.body,
                    action="get",
                    container=container,
                    key=key,
                )
            body = resp.body
        etag = normalize_etag(resp.header("ETag"))
        if etag is None:
            raise StorageError("get failed: the answer has no ETag", container=container, key=key)
        total = len(body)
        if resp.status == 206:
            match = _CONTENT_RANGE.fullmatch((resp.header("Content-Range") or "").strip())
            if match is None:
                raise StorageError(
                    "get failed: unexpected Content-Range in a ranged answer",
                    container=container,
                    key=key,
                    status=resp.status,
                )
            total = int(match.group(3))
        # A whole-blob answer carries the blob's MD5 as Content-MD5; a ranged one carries it
        # as x-ms-blob-content-md5 (its Content-MD5 is the range's own).
        md5_header = "Content-MD5" if resp.status == 200 else "x-ms-blob-content-md5"
        expected = decode_md5(resp.header(md5_header))
        keep = len(body)
        if expected is None and not checked and resp.status == 206:
            keep = 0  # nothing can check the first range: read it again, checked
        if total > keep:
            # The rest goes straight into one buffer of the blob's size, each range into
            # its own slice as its body streams in; the buffer then becomes the bytes
            # returned without a copy.
            buffer = BytesBuffer(total)
            view = buffer.view
            if keep:
                view[:keep] = body
            del body
            # With the blob's MD5: one running hash over the whole buffer, in order. Without
            # one (blocks committed without it): each range checked against its own MD5.
            size = chunk if expected is not None else min(chunk, RANGE_MD5_MAX)
            ranges = [(start, min(start + size, total) - 1) for start in range(keep, total, size)]
            read = await self._get_ranges(container, key, etag, view, ranges, expected)
            del view
            if read is False:
                return None  # overwritten mid-read: start again, never mix versions
            actual = read
            data = buffer.take()
        else:
            data = body
            # Up to read_chunk_size (8 MiB, ~10 ms of hashing): keep it off the event loop.
            actual = await _md5_off_loop(data) if expected is not None else None
        if len(data) != total:
            raise StorageError(
                f"get failed: expected {total} bytes, received {len(data)}",
                container=container,
                key=key,
            )
        if expected is not None and actual != expected:
            raise _md5_mismatch(container, key, "the whole blob")
        return data, _blob_info(key, resp, total, expected)

    async def _get_ranges(
        self,
        container: str,
        key: str,
        etag: str,
        view: memoryview,
        ranges: list[tuple[int, int]],
        expected: bytes | None,
    ) -> bytes | Literal[False] | None:
        """Read ``ranges`` in parallel into their slices of ``view`` (whose bytes before the
        first range are already there).

        With ``expected`` (the blob's MD5), the buffer is hashed in order (off the loop) as
        ranges complete, and that MD5 is returned; without it, each range is checked
        against its own MD5 as it completes (in parallel threads) and None is returned.
        False if the blob changed during the read.
        """
        whole = expected is not None
        jobs = [
            functools.partial(
                self._fetch_into, container, key, start, end, etag, view, range_md5=not whole
            )
            for start, end in ranges
        ]
        md5 = hashlib.md5(usedforsecurity=False) if whole else None
        async with bounded_in_order(jobs, self.max_concurrency) as pieces:
            if md5 is not None:
                await _update_consuming(md5, view[: ranges[0][0]])
            for start, end in ranges:
                if not await anext(pieces):
                    return False
                if md5 is not None:
                    await _update_consuming(md5, view[start : end + 1])
        return None if md5 is None else md5.digest()

    async def _fetch_into(
        self,
        container: str,
        key: str,
        start: int,
        end: int,
        etag: str | None,
        view: memoryview,
        *,
        base: int = 0,
        range_md5: bool = False,
    ) -> bool:
        """GET bytes ``start..end`` (of the version ``etag``, if given) into
        ``view[start - base:end - base + 1]`` as they arrive, resuming a body cut short
        after its last byte. With ``range_md5`` (a range of at most 4 MiB), the bytes are
        checked against the MD5 the service computes for the range. False for 412 (replaced)
        or 416 (nothing there)."""
        done = 0
        pinned = [etag]
        # The MD5 of the whole range, from the answer to the request for all of it (the
        # answers to resumed requests carry their own part's).
        asked: list[str | None] = []

        def resume(partial: HttpResponse) -> dict[str, str] | None:
            nonlocal done
            got = normalize_etag(partial.headers.get("ETag"))
            match = _CONTENT_RANGE.fullmatch((partial.headers.get("Content-Range") or "").strip())
            at = start + done
            if (
                partial.status != 206
                or got is None
                or match is None
                or int(match[1]) != at
                or partial.body
                or (pinned[0] is not None and got != pinned[0])
            ):
                return None
            if not asked:
                asked.append(partial.headers.get("Content-MD5"))
            pinned[0] = got
            done += partial.written
            logger.debug("get %r/%r: resuming at byte %d", container, key, start + done)
            return {"x-ms-range": f"bytes={start + done}-{end}", "If-Match": got}

        headers = {"x-ms-range": f"bytes={start}-{end}"}
        if etag is not None:
            headers["If-Match"] = etag
        if range_md5:
            headers.update(_RANGE_MD5)
        resp = await self._send(
            "GET",
            container,
            key,
            action="get",
            headers=headers,
            resume=resume,
            into=view[start - base : end - base + 1],
        )
        if resp.status in (412, 416):
            return False
        if resp.status != 206:
            raise_for_status(
                resp.status, resp.headers, resp.body, action="get", container=container, key=key
            )
        got = done + resp.written + len(resp.body)
        if got != end - start + 1:
            raise StorageError(
                f"get failed: range {start}-{end} returned {got} bytes",
                container=container,
                key=key,
            )
        if range_md5:
            expected = asked[0] if asked else resp.header("Content-MD5")
            await self._check_range(
                container, key, start, end, view[start - base : end - base + 1], expected
            )
        return True

    async def _check_range(
        self,
        container: str,
        key: str,
        start: int,
        end: int,
        data: bytes | memoryview,
        md5_header: str | None,
    ) -> None:
        """Check one range's bytes against the MD5 the service sent for it (off the loop).

        A memoryview ``data`` is a slice made for this call: it is released.
        """
        expected = decode_md5(md5_header)
        if expected is None:
            if isinstance(data, memoryview):
                data.release()
            # The service computes it for every range up to 4 MiB; an answer without one
            # (a service or proxy that drops it) cannot be checked.
            logger.debug("get %r/%r: range %d-%d came without its MD5", container, key, start, end)
            return
        actual = await (
            _md5_consuming(data) if isinstance(data, memoryview) else _md5_off_loop(data)
        )
        if actual != expected:
            raise _md5_mismatch(container, key, f"bytes {start}-{end}")

    async def head(self, container: str, key: str) -> BlobInfo | None:
        """Return size, ETag, Last-Modified and Content-MD5, or None if the blob is missing."""
        validate_container_name(container)
        resp = await self._send("HEAD", container, key, action="head")
        if resp.status == 404:
            return None
        if resp.status != 200:
            raise_for_status(
                resp.status, resp.headers, resp.body, action="head", container=container, key=key
            )
        return _blob_info(
            key,
            resp,
            int(resp.header("Content-Length") or 0),
            decode_md5(resp.header("Content-MD5")),
        )

    async def put(
        self,
        container: str,
        key: str,
        data: bytes,
        *,
        condition: Precondition = OVERWRITE,
        content_type: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> str:
        """Upload ``data`` whole (one Put Blob, or blocks committed at once); return the ETag.

        A lost answer is settled by the write token (see the class docstring): success,
        ConcurrencyError or StorageError when storage proves what happened, else
        OutcomeUnknownError.
        """
        validate_container_name(container)
        headers, token, if_match, if_none_match = self._put_headers(
            container, key, condition, content_type, metadata
        )
        data = bytes(data)
        if len(data) <= self.single_put_threshold:
            md5 = await _md5_off_loop(data)

            async def single() -> Response | Failure:
                return await self._put_single(container, key, data, md5, headers)

            return await self._put_settled(container, key, single, token, if_match, if_none_match)
        block_size = self._plan_blocks(container, key, len(data))
        offsets = list(range(0, len(data), block_size))
        # Ids must all have the same length; a fresh prefix keeps concurrent uploads apart.
        upload = uuid.uuid4().hex
        block_ids = [_b64(f"{upload}-{i:06d}".encode()) for i in range(len(offsets))]
        # The whole blob's MD5 is only needed for the commit: hash it while blocks upload.
        whole = asyncio.ensure_future(asyncio.to_thread(_md5, data))
        staged = False

        async def blocks() -> Response | Failure:
            # Put Block is unconditional and idempotent; only the commit carries the
            # condition and the token. A commit sent again (our earlier one did not land)
            # reuses the staged blocks: no other commit happened, so they are still there.
            nonlocal staged
            if not staged:
                missing_container = await self._put_blocks(
                    container, key, data, block_ids, offsets, block_size
                )
                if missing_container is not None:
                    return missing_container
                staged = True
            return await self._put_block_list(container, key, block_ids, whole, headers)

        try:
            return await self._put_settled(container, key, blocks, token, if_match, if_none_match)
        finally:
            if not whole.done():
                whole.cancel()

    @staticmethod
    def _put_headers(
        container: str,
        key: str,
        condition: Precondition,
        content_type: str | None,
        metadata: Mapping[str, str] | None,
    ) -> tuple[dict[str, str], str, str | None, bool]:
        """A put's headers (metadata, token, content type, condition), its write token,
        If-Match ETag and If-None-Match flag: one token and condition for every attempt."""
        names = validate_metadata(metadata)
        if TOKEN_METADATA in names:
            raise InvalidKeyError(
                f"metadata name {TOKEN_METADATA!r} is reserved for asyncblobdict",
                container=container,
                key=key,
            )
        content_type = validate_content_type(content_type)
        token = os.urandom(16).hex()  # 32 random hex digits, like uuid4().hex without its object
        if_match = condition.etag if isinstance(condition, Update) else None
        if_none_match = isinstance(condition, Create)
        headers = {f"x-ms-meta-{name}": value for name, value in names.items()}
        headers[_TOKEN_HEADER] = token
        if content_type is not None:
            headers["x-ms-blob-content-type"] = content_type
        if if_match is not None:
            headers["If-Match"] = if_match
        if if_none_match:
            headers["If-None-Match"] = "*"
        return headers, token, if_match, if_none_match

    async def _put_settled(
        self,
        container: str,
        key: str,
        operation: Callable[[], Awaitable[Response | Failure]],
        token: str,
        if_match: str | None,
        if_none_match: bool,
    ) -> str:
        """Run a put to a known outcome: its ETag, or the error storage proves, or unknown."""
        conditional = if_match is not None or if_none_match
        maybe_landed = False
        for _ in range(1 + MAX_UNLANDED_RETRIES):
            outcome = await self._with_container(container, operation)
            if isinstance(outcome, Response) and outcome.status == 201:
                etag = normalize_etag(outcome.header("ETag"))
                if etag is None:
                    raise StorageError(
                        "put failed: the answer has no ETag", container=container, key=key
                    )
                return etag
            # Sticky: an attempt of an earlier round may be what trips the condition now.
            maybe_landed = maybe_landed or outcome.ambiguous
            if not maybe_landed:
                # Every attempt got a clean answer: a 409/412 is a plain conflict.
                self._raise_outcome(
                    outcome, action="put", container=container, key=key, conditional=conditional
                )
            verdict, etag = await self._verdict(container, key, token, if_match, if_none_match)
            logger.debug("put %r/%r after a lost answer: %s", container, key, verdict.value)
            if verdict is _Verdict.LANDED and etag is not None:
                return etag
            if verdict is _Verdict.UNKNOWN:
                raise OutcomeUnknownError(
                    "put: an attempt's answer was lost and another writer has changed the key "
                    "since, so the write may or may not have been applied",
                    container=container,
                    key=key,
                )
            conflict = isinstance(outcome, Response) and outcome.status in (409, 412)
            if not conflict:
                # The failure stands, and storage shows nothing of ours was applied.
                self._raise_outcome(outcome, action="put", container=container, key=key)
            # A conflict while storage holds the version we conditioned on: try again.
        raise ConcurrencyError(
            f"put: conflicts in {1 + MAX_UNLANDED_RETRIES} rounds although the stored version "
            "is the one expected; nothing was written",
            container=container,
            key=key,
        )

    def _plan_blocks(self, container: str, key: str, size: int) -> int:
        block_size = self.block_size
        if -(-size // block_size) > MAX_BLOCKS:
            block_size = -(-size // MAX_BLOCKS)
        if block_size > MAX_BLOCK_SIZE:
            raise StorageError(
                f"put failed: {size} bytes is more than a block blob can hold "
                f"({MAX_BLOCKS} blocks of {MAX_BLOCK_SIZE // MiB} MiB)",
                container=container,
                key=key,
            )
        return block_size

    async def _put_single(
        self, container: str, key: str, data: bytes, md5: bytes, headers: dict[str, str]
    ) -> Response | Failure:
        return await self._send_outcome(
            "PUT",
            container,
            key,
            action="put",
            headers={
                "x-ms-blob-type": "BlockBlob",
                "Content-MD5": _b64(md5),
                "x-ms-blob-content-md5": _b64(md5),
                **headers,
            },
            body=data,
        )

    async def _put_blocks(
        self,
        container: str,
        key: str,
        data: bytes,
        block_ids: list[str],
        offsets: list[int],
        block_size: int,
    ) -> Response | None:
        """Stage every block; the answer to return when the container is missing, else None.

        Any other failure raises: a staged block changes nothing anyone can read.
        """
        view = memoryview(data)

        async def put_block(block_id: str, start: int) -> Response:
            chunk = view[start : start + block_size]  # sent as is: no copy
            return await self._send(
                "PUT",
                container,
                key,
                action="put block",
                query=[("comp", "block"), ("blockid", block_id)],
                headers={"Content-MD5": _b64(await _md5_off_loop(chunk))},
                body=chunk,
            )

        results = await gather_bounded(
            [functools.partial(put_block, b, s) for b, s in zip(block_ids, offsets, strict=True)],
            self.max_concurrency,
        )
        for resp in results:
            if resp.status == 201:
                continue
            if resp.status == 404 and error_details(resp.headers, resp.body)[0] == (
                "ContainerNotFound"
            ):
                return replace(resp, ambiguous=False)  # no block can have changed the blob
            raise_for_status(
                resp.status,
                resp.headers,
                resp.body,
                action="put block",
                container=container,
                key=key,
            )
        return None

    async def _put_block_list(
        self,
        container: str,
        key: str,
        block_ids: list[str],
        whole_md5: Awaitable[bytes],
        headers: dict[str, str],
    ) -> Response | Failure:
        body = block_list_xml(block_ids)
        return await self._send_outcome(
            "PUT",
            container,
            key,
            action="put block list",
            query=[("comp", "blocklist")],
            headers={
                "Content-MD5": _b64(_md5(body)),
                "x-ms-blob-content-md5": _b64(await whole_md5),
                **headers,
            },
            body=body,
        )

    # --- streaming ---------------------------------------------------------------------

    async def open_read(
        self, container: str, key: str, *, offset: int = 0, length: int | None = None
    ) -> tuple[BlobInfo, AsyncIterator[bytes]]:
        """Ranged GETs, ``max_concurrency`` at a time, all pinned to the ETag of the first
        answer (If-Match): a replaced blob raises ConcurrencyError.

        A whole-value read of a blob stored with its MD5 is checked against it, hashed as
        ranges of ``read_chunk_size`` arrive in order. Any other read (a part of the value,
        or a blob stored without an MD5) goes in ranges of at most 4 MiB, each checked
        against the MD5 the service computes for it. An answer cut short is resumed from
        its last byte, not fetched again.
        """
        validate_container_name(container)
        check_range(offset, length)
        chunk = self.read_chunk_size
        small = min(chunk, RANGE_MD5_MAX)
        # A whole-value read may check its first range with the rest, against the blob's
        # MD5; a part of it must check each range on its own, so they are small.
        whole_asked = offset == 0 and length is None
        first_size = chunk if whole_asked else small
        checked = first_size <= RANGE_MD5_MAX
        last = offset + (first_size if length is None else min(first_size, length)) - 1
        if length == 0 or last < offset:
            return await self._open_empty(container, key, offset), _no_bytes()
        first = await self._fetch_range(
            container, key, offset, last, None, range_md5=checked, whole_md5_ok=whole_asked
        )
        if first is None:  # 416: the range starts at or past the end
            return await self._open_empty(container, key, offset), _no_bytes()
        resp, body = first
        etag = normalize_etag(resp.header("ETag"))
        match = _CONTENT_RANGE.fullmatch((resp.header("Content-Range") or "").strip())
        if etag is None or match is None:
            raise StorageError(
                "get failed: a ranged answer without ETag or Content-Range",
                container=container,
                key=key,
            )
        total = int(match.group(3))
        stored = decode_md5(resp.header("x-ms-blob-content-md5"))
        end = range_end(total, offset, length)
        whole = whole_asked and stored is not None
        info = _blob_info(key, resp, total, stored)
        if not whole and not checked:
            body = b""  # no stored MD5 to check the first range: read it again, checked
        size = chunk if whole else small
        rest = [
            (start, min(start + size, end) - 1) for start in range(offset + len(body), end, size)
        ]
        return info, self._ranges(container, key, etag, body, rest, stored if whole else None)

    async def _open_empty(self, container: str, key: str, offset: int) -> BlobInfo:
        info = await self.head(container, key)
        if info is None:
            raise BlobNotFoundError("key not found", container=container, key=key)
        return info

    async def _ranges(
        self,
        container: str,
        key: str,
        etag: str,
        first: bytes,
        ranges: list[tuple[int, int]],
        expected: bytes | None,
    ) -> AsyncIterator[bytes]:
        """Yield ``first``, then ``ranges`` in order. With ``expected`` (the blob's MD5)
        everything is hashed in order and checked at the end; without it, each range is
        checked against its own MD5 before it is yielded."""
        md5 = hashlib.md5(usedforsecurity=False) if expected is not None else None
        if md5 is not None:
            await _update_off_loop(md5, first)
        if first:
            yield first
        del first
        jobs = [
            functools.partial(self._fetch_piece, container, key, start, end, etag, md5 is None)
            for start, end in ranges
        ]
        async with bounded_in_order(jobs, self.max_concurrency) as pieces:
            async for body in pieces:
                if body is None:
                    raise ConcurrencyError(
                        "the value was replaced during the read",
                        container=container,
                        key=key,
                    )
                if md5 is not None:
                    await _update_off_loop(md5, body)
                yield body
        if md5 is not None and md5.digest() != expected:
            raise _md5_mismatch(container, key, "the whole blob")

    async def _fetch_piece(
        self, container: str, key: str, start: int, end: int, etag: str, range_md5: bool
    ) -> bytes | None:
        """One range of a streamed read, received straight into a buffer of its size (no
        join of the body's parts: a range in flight costs its size once). None if the blob
        was replaced."""
        buffer = BytesBuffer(end - start + 1)
        if not await self._fetch_into(
            container, key, start, end, etag, buffer.view, base=start, range_md5=range_md5
        ):
            return None
        return buffer.take()

    async def _fetch_range(
        self,
        container: str,
        key: str,
        start: int,
        end: int,
        etag: str | None,
        *,
        range_md5: bool = True,
        whole_md5_ok: bool = False,
    ) -> tuple[Response, bytes] | None:
        """GET bytes ``start..end`` (of the version ``etag``, if given), resuming a body cut
        short after its last byte. None for 412 (replaced) or 416 (nothing there).

        With ``range_md5`` (a range of at most 4 MiB), the bytes are checked against the MD5
        the service computes for the range, unless ``whole_md5_ok`` and the answer carries
        the blob's stored MD5 (the caller then checks the whole blob).
        """
        parts: list[bytes] = []
        pinned = [etag]
        asked: list[str | None] = []  # the whole range's MD5, from the first answer

        def resume(partial: HttpResponse) -> dict[str, str] | None:
            got = normalize_etag(partial.headers.get("ETag"))
            match = _CONTENT_RANGE.fullmatch((partial.headers.get("Content-Range") or "").strip())
            at = start + sum(map(len, parts))
            if partial.status != 206 or got is None or match is None or int(match[1]) != at:
                return None
            if pinned[0] is not None and got != pinned[0]:
                return None
            if not asked:
                asked.append(partial.headers.get("Content-MD5"))
            pinned[0] = got
            parts.append(partial.body)
            logger.debug("get %r/%r: resuming at byte %d", container, key, at + len(partial.body))
            return {"x-ms-range": f"bytes={at + len(partial.body)}-{end}", "If-Match": got}

        headers = {"x-ms-range": f"bytes={start}-{end}"}
        if etag is not None:
            headers["If-Match"] = etag
        if range_md5:
            headers.update(_RANGE_MD5)
        resp = await self._send("GET", container, key, action="get", headers=headers, resume=resume)
        if resp.status in (412, 416):
            return None
        if resp.status == 200 and start == 0 and etag is None:
            return resp, resp.body  # the whole blob, the range ignored (never resumed)
        if resp.status != 206:
            raise_for_status(
                resp.status, resp.headers, resp.body, action="get", container=container, key=key
            )
        parts.append(resp.body)
        body = b"".join(parts) if len(parts) > 1 else resp.body
        match = _CONTENT_RANGE.fullmatch((resp.header("Content-Range") or "").strip())
        expected_end = end if match is None else min(end, int(match[3]) - 1)
        if len(body) != expected_end - start + 1:
            raise StorageError(
                f"get failed: range {start}-{end} returned {len(body)} bytes",
                container=container,
                key=key,
            )
        if range_md5 and not (whole_md5_ok and resp.header("x-ms-blob-content-md5")):
            md5_header = asked[0] if asked else resp.header("Content-MD5")
            await self._check_range(container, key, start, expected_end, body, md5_header)
        return resp, body

    async def put_stream(
        self,
        container: str,
        key: str,
        chunks: AsyncIterable[bytes | bytearray | memoryview],
        *,
        condition: Precondition = OVERWRITE,
        content_type: str | None = None,
        metadata: Mapping[str, str] | None = None,
        size: int | None = None,
    ) -> str:
        """Stage the stream as blocks of ``block_size``, ``max_concurrency`` in flight, then
        commit them with one Put Block List carrying the condition and the write token.

        A stream that ends within its first block and within ``single_put_threshold`` is
        one ``put``. Memory: at most ``max_concurrency`` blocks, those in flight and the one
        being filled (which waits for a free slot), plus the caller's current chunk; each
        block is filled once from the chunks and sent as is. Its MD5 goes with it
        (Content-MD5), and the whole stream's, hashed block by block, with the commit.
        With ``CREATE`` or ``Update(etag)`` a HEAD before the first block fails fast with
        ConcurrencyError when the condition already does not hold; the commit checks it
        again (it decides). Nothing is visible until the commit; the staged blocks of an
        upload that fails or is cancelled stay uncommitted, invisible, and the service
        discards them (after a week on Azure).
        """
        validate_container_name(container)
        headers, token, if_match, if_none_match = self._put_headers(
            container, key, condition, content_type, metadata
        )
        block_size = self.block_size if size is None else self._plan_blocks(container, key, size)
        upload = uuid.uuid4().hex
        block_ids: list[str] = []
        md5 = hashlib.md5(usedforsecurity=False)
        running: set[asyncio.Future[None]] = set()
        block, filled = _new_block(block_size), 0
        total = 0

        async def stage(full: memoryview) -> None:
            if not block_ids and (if_match is not None or if_none_match):
                await self._check_early(container, key, if_match)
            if len(block_ids) >= MAX_BLOCKS:
                raise StorageError(
                    f"put failed: more than {MAX_BLOCKS} blocks of {block_size} bytes",
                    container=container,
                    key=key,
                )
            await _update_off_loop(md5, full)
            block_id = _b64(f"{upload}-{len(block_ids):06d}".encode())
            block_ids.append(block_id)
            running.add(asyncio.ensure_future(self._put_block(container, key, block_id, full)))
            # The next block is filled only once a slot is free: the blocks in flight and
            # the one being filled are never more than max_concurrency.
            while len(running) >= self.max_concurrency:
                done, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                running.difference_update(done)
                for task in done:
                    task.result()

        try:
            async for chunk in chunks:
                with memoryview(chunk) as raw, raw.cast("B") as view:
                    total += len(view)
                    pos = 0
                    while pos < len(view):
                        take = min(block_size - filled, len(view) - pos)
                        block[filled : filled + take] = view[pos : pos + take]
                        pos += take
                        filled += take
                        if filled == block_size:
                            # Handed over whole: the next block is a new buffer, so the
                            # one in flight is never copied or changed.
                            await stage(memoryview(block))
                            block, filled = _new_block(block_size), 0
            if size is not None and size != total:
                raise StorageError(
                    f"the stream gave {total} bytes, not the {size} announced",
                    container=container,
                    key=key,
                )
            if not block_ids and filled <= self.single_put_threshold:  # small: one Put Blob
                data = block[:filled]
                del block
                return await self.put(
                    container,
                    key,
                    data,
                    condition=condition,
                    content_type=content_type,
                    metadata=metadata,
                )
            if filled:
                await stage(memoryview(block)[:filled])
            while running:
                done, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                running.difference_update(done)
                for task in done:
                    task.result()
        finally:
            for task in running:
                task.cancel()
            if running:
                await asyncio.gather(*running, return_exceptions=True)
        whole: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        whole.set_result(md5.digest())

        async def commit() -> Response | Failure:
            return await self._put_block_list(container, key, block_ids, whole, headers)

        return await self._put_settled(container, key, commit, token, if_match, if_none_match)

    async def _check_early(self, container: str, key: str, if_match: str | None) -> None:
        """Before staging any block: ConcurrencyError if the put's condition (If-Match
        ``if_match``, else If-None-Match: *) already fails, so nothing is uploaded in vain.

        Only a clear answer counts; anything else (a HEAD not allowed, say, by a write-only
        SAS) leaves the decision to the commit, which checks the condition anyway.
        """
        outcome = await self._send_outcome("HEAD", container, key, action="put check")
        if not isinstance(outcome, Response) or outcome.status not in (200, 404):
            return
        exists = outcome.status == 200
        if if_match is None:
            fails = exists
        else:
            fails = not exists or normalize_etag(outcome.header("ETag")) != normalize_etag(if_match)
        if fails:
            raise ConcurrencyError(
                "put: the stored version is not the one expected (checked before uploading)",
                container=container,
                key=key,
            )

    async def _put_block(
        self, container: str, key: str, block_id: str, block: bytes | memoryview
    ) -> None:
        """Stage one block (unconditional, idempotent); create a missing container."""
        body = memoryview(block)  # sent as is: aiohttp takes a memoryview without a copy
        for _ in range(2):
            resp = await self._send(
                "PUT",
                container,
                key,
                action="put block",
                query=[("comp", "block"), ("blockid", block_id)],
                headers={"Content-MD5": _b64(await _md5_off_loop(body))},
                body=body,
            )
            if resp.status == 201:
                return
            if resp.status == 404 and error_details(resp.headers, resp.body)[0] == (
                "ContainerNotFound"
            ):
                await self._create_container(container)
                continue
            break
        raise_for_status(
            resp.status, resp.headers, resp.body, action="put block", container=container, key=key
        )

    async def delete(
        self, container: str, key: str, *, condition: Precondition = OVERWRITE
    ) -> None:
        """Delete the blob; a missing blob is a no-op unless the condition is ``Update``.

        With ``Update(etag)``, a lost answer is settled from storage: the key gone is
        success, still at ``etag`` means the delete did not land, another version raises
        OutcomeUnknownError. ``CREATE`` deletes nothing and raises ConcurrencyError if the
        key exists.
        """
        validate_container_name(container)
        if isinstance(condition, Create):
            if await self.head(container, key) is not None:
                raise ConcurrencyError("key already exists", container=container, key=key)
            return
        if_match = condition.etag if isinstance(condition, Update) else None
        if if_match is None:
            resp = await self._send("DELETE", container, key, action="delete")
            if resp.status not in (200, 202, 404):
                self._raise_outcome(resp, action="delete", container=container, key=key)
            return
        maybe_landed = False
        for _ in range(1 + MAX_UNLANDED_RETRIES):
            outcome = await self._send_outcome(
                "DELETE", container, key, action="delete", headers={"If-Match": if_match}
            )
            if isinstance(outcome, Response) and outcome.status in (200, 202):
                return
            # Azure answers 404 for a missing blob, Azurite 412.
            conflict = isinstance(outcome, Response) and outcome.status in (404, 412)
            maybe_landed = maybe_landed or outcome.ambiguous
            if not maybe_landed:
                if conflict:
                    raise ConcurrencyError(
                        "delete: the key was changed or deleted since it was read",
                        container=container,
                        key=key,
                    )
                self._raise_outcome(outcome, action="delete", container=container, key=key)
            if isinstance(outcome, Response) and outcome.status == 404:
                return  # gone, which is what we wanted (very likely our own earlier attempt)
            stored = await self._stored_version(container, key, "delete")
            logger.debug("delete %r/%r after a lost answer: stored %s", container, key, stored)
            if stored is None:
                return
            if stored[0] != normalize_etag(if_match):
                raise OutcomeUnknownError(
                    "delete: an attempt's answer was lost and another writer has changed the "
                    "key since, so the delete may or may not have been applied",
                    container=container,
                    key=key,
                )
            if not conflict:
                self._raise_outcome(outcome, action="delete", container=container, key=key)
        raise ConcurrencyError(
            f"delete: conflicts in {1 + MAX_UNLANDED_RETRIES} rounds although the stored "
            "version is the one expected; nothing was deleted",
            container=container,
            key=key,
        )

    async def list(self, container: str, prefix: str = "") -> AsyncIterator[BlobInfo]:
        """Yield every blob whose name starts with ``prefix``, page by page."""
        async for info in self._pages(container, prefix, None, parse_blob_list):
            yield info

    async def list_names(
        self, container: str, prefix: str = "", *, delimiter: str | None = None
    ) -> AsyncIterator[str]:
        """Yield blob names (and, with ``delimiter="/"``, folder prefixes), page by page.

        Folders come from the service's own BlobPrefix answer, so one level of a large
        container costs one page per thousands of names, not a walk of every blob.
        """
        check_delimiter(delimiter)
        async for name in self._pages(container, prefix, delimiter, parse_blob_names):
            yield name

    async def list_metadata(
        self, container: str, prefix: str = "", *, delimiter: str | None = None
    ) -> AsyncIterator[tuple[str, Mapping[str, str]]]:
        """The names ``list_names`` yields, each with its metadata (our write token left
        out; a folder's is empty), from List Blobs with ``include=metadata``: the same pages,
        a little longer."""
        check_delimiter(delimiter)
        pages = self._pages(container, prefix, delimiter, parse_blob_metadata, "metadata")
        try:
            async for name, metadata in pages:
                metadata.pop(TOKEN_METADATA, None)
                yield name, metadata
        finally:
            await pages.aclose()  # a caller that stops early ends the paging now

    async def _pages(
        self,
        container: str,
        prefix: str,
        delimiter: str | None,
        parse: Callable[[bytes], tuple[Sequence[_Item], str | None]],
        include: str | None = None,
    ) -> AsyncGenerator[_Item, None]:
        """Every item of a List Blobs listing, following NextMarker; nothing for no container."""
        validate_container_name(container)
        marker: str | None = None
        while True:
            query = [
                ("restype", "container"),
                ("comp", "list"),
                ("maxresults", str(self.list_page_size)),
            ]
            query += [
                (n, v)
                for n, v in (("prefix", prefix), ("delimiter", delimiter), ("include", include))
                if v
            ]
            if marker:
                query.append(("marker", marker))
            resp = await self._send("GET", container, None, action="list", query=query)
            if resp.status == 404:
                return  # no container, no keys
            if resp.status != 200:
                raise_for_status(
                    resp.status,
                    resp.headers,
                    resp.body,
                    action="list",
                    container=container,
                    key=None,
                )
            try:
                items, marker = parse(resp.body)
            except Exception as exc:
                raise StorageError(
                    f"list failed: unreadable answer ({type(exc).__name__})",
                    container=container,
                    request_id=resp.header("x-ms-request-id"),
                ) from None
            for item in items:
                yield item
            if not marker:
                return

    async def container_exists(self, container: str) -> bool:
        """Whether the container exists (Get Container Properties, one request).

        When the service will not say (a SAS scoped to the container may not read its
        properties), the container is taken to exist.
        """
        validate_container_name(container)
        outcome = await self._send_outcome(
            "HEAD", container, None, action="container check", query=[("restype", "container")]
        )
        return not (isinstance(outcome, Response) and outcome.status == 404)

    async def close(self) -> None:
        """Close the HTTP session for good; safe to call twice.

        Requests still running fail with StorageError, and so does every later call.
        """
        await self._client.close()
