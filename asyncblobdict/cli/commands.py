"""The single-store commands: demo, ls, get, put, rm."""

from __future__ import annotations

import asyncio
import io
import json
import os
import pickle
import stat
import sys
from collections.abc import AsyncIterator, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import BinaryIO, cast

from .. import codec
from .._options import JSON_CONTENT_TYPE
from ..adapters.base import BlobInfo
from ..errors import BlobNotFoundError, SerializationError
from ..keys import validate_key, validate_prefix
from ..modes import CacheMode, ConcurrencyMode
from ..store import AsyncBlobStore
from .output import (
    echo,
    err,
    human_bytes,
    no_key_starts_with,
    no_such_container,
    no_such_key,
    write_bytes,
)
from .stores import StoreSpec, UserError, container_exists, open_adapter

__all__ = [
    "cmd_demo",
    "cmd_get",
    "cmd_info",
    "cmd_sweep",
    "cmd_ls",
    "cmd_put",
    "cmd_rm",
    "info_lines",
    "store_of",
]


def store_of(spec: StoreSpec, **options: object) -> AsyncBlobStore:
    """A store on ``spec`` (no cache, no ETags unless asked); close it with ``async with``."""
    owns = not spec.location.shared
    return AsyncBlobStore(open_adapter(spec), spec.container, owns_adapter=owns, **options)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------- demo


async def cmd_demo(spec: StoreSpec) -> int:
    """The README's quick start, narrated: JSON, binary, list, delete, BlobNotFoundError."""
    async with store_of(
        spec, cache_mode=CacheMode.WRITE_THROUGH, concurrency_mode=ConcurrencyMode.ETAG
    ) as store:
        echo(f"Store: {spec.describe()} (cache WRITE_THROUGH, concurrency ETAG)")
        # What datetime.utcnow() gives, without its deprecation warning on Python 3.12+.
        now = datetime.now(timezone.utc).replace(tzinfo=None)
        config = {"learning_rate": 0.01, "layers": [64, 128, 256], "created_at": now}
        await store.set_json("demo/config", config)
        echo(f"1. set_json('demo/config', {config!r})")
        loaded_config = await store.get_json("demo/config")
        echo(f"2. get_json('demo/config') -> {loaded_config!r}")
        echo(f"   round trip exact: {loaded_config == config}")

        model_bytes = pickle.dumps({"weights": [0.1, 0.2, 0.3], "bias": 0.5})
        await store.set_binary("demo/model.bin", model_bytes)
        echo(f"3. set_binary('demo/model.bin', <{len(model_bytes)} bytes of a pickled model>)")
        loaded_model = pickle.loads(await store.get_binary("demo/model.bin"))
        echo(f"4. get_binary('demo/model.bin') -> unpickled: {loaded_model!r}")

        echo(f"5. list_keys() -> {await store.list_keys()!r}")

        await store.delete("demo/config")
        echo("6. delete('demo/config')")
        try:
            await store.get_json("demo/config")
        except BlobNotFoundError:
            echo("7. get_json('demo/config') -> BlobNotFoundError: config deleted successfully.")
        else:  # pragma: no cover - the store is broken if this happens
            raise UserError("demo/config was not deleted")
    options = spec.cli_options()
    echo(f"Done. demo/model.bin stays in {spec.describe()}; look at it with:")
    echo(f"  asyncblobdict {options}ls --long")
    echo(f"  asyncblobdict {options}get demo/model.bin -o model.bin")
    return 0


# ------------------------------------------------------------------------------ ls, info


def _format_time(when: datetime | None) -> str:
    if when is None:
        return "-"
    if when.tzinfo is not None:
        when = when.astimezone(timezone.utc)
    return when.strftime("%Y-%m-%d %H:%M:%S")


def _compact_metadata(metadata: Mapping[str, str]) -> str:
    """Metadata as one word of compact JSON (``{"owner":"ops"}``), ``-`` when there is none."""
    if not metadata:
        return "-"
    return json.dumps(dict(sorted(metadata.items())), separators=(",", ":"))


def _format_expiry(when: datetime | None) -> str:
    """An expiry time as one word (``2026-11-30T09:00:00Z``), ``-`` for none."""
    if when is None:
        return "-"
    return when.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


async def cmd_ls(spec: StoreSpec, prefix: str, long: bool) -> int:
    """Print the keys starting with ``prefix``, sorted; ``long`` adds what ``info`` shows.
    Expired values are left out, as the store leaves them out.

    Nothing to list is an error (exit 1) when the container does not exist, or when a prefix
    was given and no key starts with it; an existing container without keys lists nothing.
    """
    async with store_of(spec) as store:
        validate_prefix(prefix, spec.container)
        adapter = store.adapter
        keys = await store.list_keys(prefix)
        if not keys:
            if not await container_exists(adapter, spec.container):
                raise UserError(no_such_container(spec.container, spec.describe()))
            if prefix:
                raise UserError(no_key_starts_with(prefix, spec.container))
            return 0
        if not long:
            for key in keys:
                echo(key)
            return 0
        limit = asyncio.Semaphore(16)

        async def details(key: str) -> BlobInfo | None:
            async with limit:
                return await store.info(key)

        # A key deleted (or expired) since the listing is left out: it is no longer there.
        found = await asyncio.gather(*(details(key) for key in keys))
        infos = [info for info in found if info is not None]
    rows = [
        [
            str(info.size),
            _format_time(info.last_modified),
            info.etag or "-",
            info.content_type or "-",
            _format_expiry(info.expires),
            _compact_metadata(info.metadata),
        ]
        for info in infos
    ]
    widths = [max(len(cell) for cell in column) for column in zip(*rows, strict=True)]
    for info, row in zip(infos, rows, strict=True):
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=True)]
        cells[0] = row[0].rjust(widths[0])  # sizes line up on the right
        echo("  ".join([*cells, info.key]))
    return 0


def info_lines(info: BlobInfo) -> list[str]:
    """What ``info`` prints about one value: one ``label: value`` line per property."""
    rows = [
        ("key", info.key),
        ("size", _size_text(info.size)),
        ("last modified", f"{_format_time(info.last_modified)} UTC" if info.last_modified else "-"),
        ("expires", f"{_format_time(info.expires)} UTC" if info.expires else "-"),
        ("etag", info.etag or "-"),
        ("content type", info.content_type or "-"),
        ("content md5", info.content_md5.hex() if info.content_md5 is not None else "-"),
    ]
    names = sorted(info.metadata.items())
    rows += [("metadata", f"{name}={value}") for name, value in names] or [("metadata", "-")]
    width = max(len(label) for label, _ in rows) + 2
    lines, previous = [], ""
    for label, value in rows:
        shown = "" if label == previous else f"{label}:"  # one "metadata:" for all names
        lines.append(f"{shown:<{width}}{value}")
        previous = label
    return lines


def _size_text(n: int) -> str:
    return f"{n} bytes" if n < 1024 else f"{n} bytes ({human_bytes(n)})"


async def cmd_info(spec: StoreSpec, key: str) -> int:
    """Print the size, last modification, ETag, content type, MD5 and metadata of ``key``."""
    async with store_of(spec) as store:
        info = await store.info(key)
    if info is None:
        raise BlobNotFoundError("key not found", container=spec.container, key=key)
    for line in info_lines(info):
        echo(line)
    return 0


# ----------------------------------------------------------------------------------- get


def _as_json(data: bytes) -> object:
    """The JSON value of ``data``, or raise ValueError if it is not JSON text."""
    return json.loads(data.decode("utf-8"))


PRINT_LIMIT = 8 * 1024 * 1024
"""Values up to this size are looked at whole by ``get`` to stdout (JSON is pretty-printed);
larger ones are streamed to stdout as they are."""

FILE_CHUNK = 4 * 1024 * 1024
"""``put`` reads its input in chunks of this size."""


async def cmd_get(spec: StoreSpec, key: str, output: str | None, raw: bool) -> int:
    """JSON values pretty-printed; other bytes (or ``raw``) written exactly, streaming."""
    async with store_of(spec) as store:
        chunks = store.iter_binary(key)
        try:
            if output is not None and output != "-":
                await _stream_to_file(chunks, output)
                return 0
            head: list[bytes] = []
            held = 0
            async for chunk in chunks:
                head.append(chunk)
                held += len(chunk)
                if held > PRINT_LIMIT:
                    break
            else:
                return _print_value(key, b"".join(head), raw)
            if not raw and sys.stdout.isatty():
                raise UserError(
                    f"{key!r} holds more than {human_bytes(PRINT_LIMIT)} of data; "
                    "use -o FILE, redirect stdout, or --raw to print it anyway"
                )
            for chunk in head:
                await asyncio.to_thread(write_bytes, chunk)
            del head
            async for chunk in chunks:
                await asyncio.to_thread(write_bytes, chunk)
            return 0
        finally:
            close = getattr(chunks, "aclose", None)
            if close is not None:
                await close()


def _print_value(key: str, data: bytes, raw: bool) -> int:
    if not raw:
        try:
            value = _as_json(data)
        except ValueError:
            pass
        else:
            echo(json.dumps(value, indent=2, ensure_ascii=False))
            return 0
        if sys.stdout.isatty():
            raise UserError(
                f"{key!r} holds {len(data)} bytes of binary data; "
                "use -o FILE, redirect stdout, or --raw to print it anyway"
            )
    write_bytes(data)
    return 0


async def _stream_to_file(chunks: AsyncIterator[bytes], output: str) -> None:
    """Write the chunks to ``output`` through a temp file beside it, then replace it: the
    file holds its old content or the whole value, never a part (nor anything for a
    missing key, whose error comes before the file is made)."""
    first = await anext(chunks, b"")
    target = Path(output)
    tmp = target.with_name(f".{target.name}.abd-part-{os.urandom(6).hex()}")
    try:
        with open(tmp, "xb") as file:
            try:
                await asyncio.to_thread(file.write, first)
                del first
                async for chunk in chunks:
                    await asyncio.to_thread(file.write, chunk)
                await asyncio.to_thread(file.flush)
                await asyncio.to_thread(os.fsync, file.fileno())
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
        os.replace(tmp, target)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise UserError(f"cannot write {output}: {exc.strerror or exc}") from None


# ----------------------------------------------------------------------------------- put


def _reject_constant(name: str) -> object:
    raise ValueError(f"{name} is not valid JSON")


def _json_bytes(data: bytes, source: str) -> bytes:
    """Check ``data`` is JSON the store can read back; return it as ``set_json`` writes it."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UserError(f"{source} is not UTF-8 text: {exc.reason} at byte {exc.start}") from None
    try:
        value = json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise UserError(
            f"{source} is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
        ) from None
    except ValueError as exc:
        raise UserError(f"{source} is not valid JSON: {exc}") from None
    compact = json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    try:
        codec.decode(compact)
    except SerializationError as exc:
        raise UserError(f"{source} cannot be read back as a value: {exc.message}") from None
    return compact


async def cmd_put(
    spec: StoreSpec, key: str, source: str, as_json: bool, ttl: float | None = None
) -> int:
    """Store a file's (or stdin's) bytes under ``key``, streaming; ``as_json`` reads them
    whole and checks them first; ``ttl`` (seconds) makes the value expire."""
    validate_key(key, spec.container)
    label = "stdin" if source == "-" else source
    try:
        file = sys.stdin.buffer if source == "-" else open(source, "rb")  # noqa: SIM115
    except OSError as exc:
        raise UserError(f"cannot read {source}: {exc.strerror or exc}") from None
    try:
        size: int | None = None
        if source != "-":
            size = os.fstat(file.fileno()).st_size
        moved = 0

        async def chunks() -> AsyncIterator[bytearray]:
            nonlocal moved
            while True:
                # Allocated on the loop, filled in the thread: see AsyncBlobStore.set_file.
                chunk = bytearray(FILE_CHUNK)
                try:
                    n = await asyncio.to_thread(cast(io.BufferedIOBase, file).readinto, chunk)
                except OSError as exc:
                    raise UserError(f"cannot read {label}: {exc.strerror or exc}") from None
                if not n:
                    return
                del chunk[n:]
                moved += n
                yield chunk

        async with store_of(spec) as store:
            if as_json:
                data = _json_bytes(b"".join([c async for c in chunks()]), label)
                # As set_json would: JSON gets its content type, so info and others can tell.
                await store.set_binary(key, data, content_type=JSON_CONTENT_TYPE, ttl=ttl)
                moved = len(data)
            else:
                await store.set_binary(key, chunks(), size=_regular_size(file, size), ttl=ttl)
    finally:
        if file is not sys.stdin.buffer:
            file.close()
    echo(f"put: {key} ({moved} bytes{', JSON' if as_json else ''})")
    return 0


async def cmd_sweep(spec: StoreSpec, prefix: str) -> int:
    """Delete the expired values of keys starting with ``prefix``; say how many."""
    async with store_of(spec) as store:
        count = await store.sweep_expired(prefix)
    echo(f"sweep: {count} expired value{'' if count == 1 else 's'} deleted")
    return 0


def _regular_size(file: BinaryIO, size: int | None) -> int | None:
    """The size to announce: a regular file's (a file that then changes size is an error),
    none for a pipe or a device."""
    if size is None or not stat.S_ISREG(os.fstat(file.fileno()).st_mode):
        return None
    return size


# ------------------------------------------------------------------------------------ rm


async def cmd_rm(spec: StoreSpec, keys: list[str], force: bool) -> int:
    """Delete each key; a missing one is an error (exit 1) unless ``force``."""
    for key in keys:
        validate_key(key, spec.container)
    missing: list[str] = []
    async with store_of(spec) as store:
        for key in keys:
            if not await store.exists(key):
                if not force:
                    missing.append(key)
                continue
            await store.delete(key)
            echo(f"deleted: {key}")
    for key in missing:
        err(f"asyncblobdict: error: {no_such_key(key, spec.container)}")
    return 1 if missing else 0
