"""The single-store commands: demo, ls, get, put, rm."""

from __future__ import annotations

import asyncio
import json
import pickle
import sys
from datetime import datetime, timezone
from pathlib import Path

from .. import codec
from ..adapters.base import BlobInfo
from ..errors import BlobNotFoundError, SerializationError
from ..keys import validate_key, validate_prefix
from ..modes import CacheMode, ConcurrencyMode
from ..store import AsyncBlobStore
from .output import echo, err, write_bytes
from .stores import StoreSpec, UserError, open_adapter

__all__ = ["cmd_demo", "cmd_get", "cmd_ls", "cmd_put", "cmd_rm", "store_of"]


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


# ------------------------------------------------------------------------------------ ls


def _format_time(when: datetime | None) -> str:
    if when is None:
        return "-"
    if when.tzinfo is not None:
        when = when.astimezone(timezone.utc)
    return when.strftime("%Y-%m-%d %H:%M:%S")


async def cmd_ls(spec: StoreSpec, prefix: str, long: bool) -> int:
    """Print the keys starting with ``prefix``, sorted; ``long`` adds size, time and ETag."""
    async with store_of(spec) as store:
        validate_prefix(prefix, spec.container)
        adapter = store.adapter
        infos = sorted(
            [info async for info in adapter.list(spec.container, prefix)], key=lambda i: i.key
        )
        if not long:
            for info in infos:
                echo(info.key)
            return 0
        limit = asyncio.Semaphore(16)

        async def details(info: BlobInfo) -> BlobInfo:
            if info.etag is not None and info.last_modified is not None:
                return info
            async with limit:
                fuller = await adapter.head(spec.container, info.key)
            return info if fuller is None else fuller

        infos = list(await asyncio.gather(*(details(info) for info in infos)))
        width = max((len(str(info.size)) for info in infos), default=1)
        for info in infos:
            echo(
                f"{info.size:>{width}}  {_format_time(info.last_modified)}  "
                f"{info.etag or '-'}  {info.key}"
            )
    return 0


# ----------------------------------------------------------------------------------- get


def _as_json(data: bytes) -> object:
    """The JSON value of ``data``, or raise ValueError if it is not JSON text."""
    return json.loads(data.decode("utf-8"))


async def cmd_get(spec: StoreSpec, key: str, output: str | None, raw: bool) -> int:
    """JSON values pretty-printed; other bytes (or ``raw``) written exactly."""
    async with store_of(spec) as store:
        data = await store.get_binary(key)
    if output is not None and output != "-":
        try:
            Path(output).write_bytes(data)
        except OSError as exc:
            raise UserError(f"cannot write {output}: {exc.strerror or exc}") from None
        return 0
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


async def cmd_put(spec: StoreSpec, key: str, source: str, as_json: bool) -> int:
    """Store a file's (or stdin's) bytes under ``key``; ``as_json`` checks them first."""
    validate_key(key, spec.container)
    if source == "-":
        data = sys.stdin.buffer.read()
        label = "stdin"
    else:
        try:
            data = Path(source).read_bytes()
        except OSError as exc:
            raise UserError(f"cannot read {source}: {exc.strerror or exc}") from None
        label = source
    if as_json:
        data = _json_bytes(data, label)
    async with store_of(spec) as store:
        await store.set_binary(key, data)
    echo(f"put: {key} ({len(data)} bytes{', JSON' if as_json else ''})")
    return 0


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
        err(f"asyncblobdict: error: no such key {key!r} in {spec.describe()}")
    return 1 if missing else 0
