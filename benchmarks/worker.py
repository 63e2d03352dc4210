"""Run one benchmark spec in this process and print the results as JSON.

    python benchmarks/worker.py < spec.json

The same script runs under our venv (``impl`` = ours, floor, sdk, bare) and under
benchmarks/.venv-original (``impl`` = original), so every implementation is measured by the
same loop. It imports only what its ``impl`` needs.

Spec::

    {"impl": "ours" | "original" | "floor" | "sdk" | "bare",
     "backend": "local" | "azure",
     "root": "/tmp/x",            # local: the adapter's root folder
     "durable": true,             # ours/floor, local writes
     "hop": true,                 # floor: one asyncio.to_thread per op (false: plain calls)
     "endpoint": "...", "account": "...", "key": "...",   # azure
     "container": "bench",
     "workloads": [{"name": "set_json_seq", "op": "set_json", "n": 2000, "tasks": 1,
                    "cache": "none", "size": 200, "keys": 256, "prefix": "sj"}, ...],
     "memory": {"op": "set_binary" | "get_binary", "size": 67108864}   # instead of workloads
    }

Each result: ops, samples (latencies measured), seconds, ops_s, p50_us, p99_us,
cpu_us_per_op (time.process_time of this process, all its threads, divided by ops),
loop_cpu_us_per_op (time.thread_time of the event-loop thread alone),
MB_s for binary ops, loadavg (1-minute load when it ended).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import itertools
import json
import os
import resource
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any, cast

MiB = 1024 * 1024
API_VERSION = "2025-11-05"


def small_value(size: int = 200) -> dict[str, Any]:
    """A JSON-able dict whose encoding is about ``size`` bytes."""
    v: dict[str, Any] = {
        "id": 12345,
        "name": "benchmark-item",
        "tags": ["a", "b", "c"],
        "ok": True,
        "score": 0.75,
    }
    base = len(json.dumps(v, separators=(",", ":")))
    v["pad"] = "x" * max(0, size - base - 9)
    return v


# ------------------------------------------------------------------------ clients


class Client:
    """The four operations every implementation offers, plus list and close."""

    async def set_json(self, key: str, value: Any) -> None:
        raise NotImplementedError

    async def get_json(self, key: str) -> Any:
        raise NotImplementedError

    async def set_binary(self, key: str, data: bytes) -> None:
        raise NotImplementedError

    async def get_binary(self, key: str) -> bytes:
        raise NotImplementedError

    async def list_keys(self, prefix: str) -> list[str]:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError


class OursClient(Client):
    def __init__(self, spec: dict[str, Any], cache: str) -> None:
        from asyncblobdict import AsyncBlobStore, CacheMode

        self.names_only = bool(spec.get("names_only"))
        if spec["backend"] == "local":
            from asyncblobdict import LocalFileAdapter

            adapter: Any = LocalFileAdapter(spec["root"], durable=spec.get("durable", True))
        else:
            from asyncblobdict import AzureBlobAdapter

            adapter = AzureBlobAdapter(
                spec["endpoint"], (spec["account"], spec["key"]), api_version=API_VERSION
            )
        mode = CacheMode.WRITE_THROUGH if cache == "write_through" else CacheMode.NONE
        self.store = AsyncBlobStore(adapter, spec["container"], cache_mode=mode)
        s = self.store
        self.set_json, self.get_json = s.set_json, s.get_json  # type: ignore[method-assign]
        self.set_binary, self.get_binary = s.set_binary, s.get_binary  # type: ignore[method-assign]

    async def list_keys(self, prefix: str) -> list[str]:
        if self.names_only:  # the adapter's names-only listing
            store = self.store
            return [n async for n in store.adapter.list_names(store.container_name, prefix)]
        return await self.store.list_keys(prefix)

    async def close(self) -> None:
        await self.store.close()


class OriginalClient(Client):
    """asyncblobdict 0.1.133 from PyPI: ``store.json.set``/``store.binary.get`` views."""

    def __init__(self, spec: dict[str, Any], cache: str) -> None:
        from asyncblobdict import AsyncBlobStore, CacheMode, LocalFileAdapter

        mode = CacheMode.WRITE_THROUGH if cache == "write_through" else CacheMode.NONE
        self.store = AsyncBlobStore(
            LocalFileAdapter(spec["root"]), spec["container"], cache_mode=mode
        )
        s: Any = self.store  # the original's API, not ours
        self.set_json, self.get_json = s.json.set, s.json.get  # type: ignore[method-assign]
        self.set_binary, self.get_binary = s.binary.set, s.binary.get  # type: ignore[method-assign]

    async def list_keys(self, prefix: str) -> list[str]:
        return sorted(await self.store.list_keys(prefix))

    async def close(self) -> None:
        await self.store.close()


class FloorClient(Client):
    """Only the unavoidable syscalls, in a plain loop; ``hop`` adds one to_thread per op."""

    def __init__(self, spec: dict[str, Any], cache: str) -> None:
        self.base = os.path.join(spec["root"], spec["container"])
        self.durable = spec.get("durable", True)
        self.hop = spec.get("hop", True)
        self.counter = itertools.count()
        self.made: set[str] = set()
        self.flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC

    def _put(self, key: str, data: bytes) -> None:
        path = os.path.join(self.base, key)
        folder = os.path.dirname(path)
        if folder not in self.made:  # the library also creates folders once per key path
            os.makedirs(folder, exist_ok=True)
            self.made.add(folder)
        tmp = f"{folder}/.{next(self.counter)}.tmp"
        fd = os.open(tmp, self.flags, 0o666)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            if self.durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        if self.durable:
            dfd = os.open(folder, os.O_RDONLY | os.O_CLOEXEC)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)

    def _get(self, key: str) -> bytes:
        fd = os.open(os.path.join(self.base, key), os.O_RDONLY | os.O_CLOEXEC)
        try:
            size = os.fstat(fd).st_size
            chunks = []
            while True:
                chunk = os.read(fd, max(size + 1, 65536))
                if not chunk:
                    break
                chunks.append(chunk)
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)
        finally:
            os.close(fd)

    def _list(self, prefix: str) -> list[str]:
        out: list[str] = []
        stack = [""]
        while stack:
            rel = stack.pop()
            with os.scandir(os.path.join(self.base, rel) if rel else self.base) as it:
                for e in it:
                    name = f"{rel}/{e.name}" if rel else e.name
                    if e.is_dir(follow_symlinks=False):
                        stack.append(name)
                    elif not e.name.startswith(".") and name.startswith(prefix):
                        out.append(name)
        out.sort()
        return out

    async def _run(self, fn: Any, *args: Any) -> Any:
        if self.hop:
            return await asyncio.to_thread(fn, *args)
        return fn(*args)

    async def set_json(self, key: str, value: Any) -> None:
        await self._run(self._put, key, json.dumps(value, separators=(",", ":")).encode())

    async def get_json(self, key: str) -> Any:
        return json.loads(await self._run(self._get, key))

    async def set_binary(self, key: str, data: bytes) -> None:
        await self._run(self._put, key, data)

    async def get_binary(self, key: str) -> bytes:
        return await self._run(self._get, key)  # type: ignore[no-any-return]

    async def list_keys(self, prefix: str) -> list[str]:
        return await self._run(self._list, prefix)  # type: ignore[no-any-return]

    async def close(self) -> None:
        """Nothing to release: every operation closes its own descriptors."""


class SdkClient(Client):
    """The official azure-storage-blob async SDK, shaped like our adapter (8 MiB blocks and
    ranges, 4 in parallel), api_version pinned as in the interop tests."""

    def __init__(self, spec: dict[str, Any], cache: str) -> None:
        from azure.storage.blob.aio import BlobServiceClient

        conn = (
            f"DefaultEndpointsProtocol=http;AccountName={spec['account']};"
            f"AccountKey={spec['key']};BlobEndpoint={spec['endpoint']};"
        )
        self.service = BlobServiceClient.from_connection_string(
            conn,
            api_version=API_VERSION,
            max_single_put_size=8 * MiB,
            max_block_size=8 * MiB,
            max_single_get_size=8 * MiB,
            max_chunk_get_size=8 * MiB,
        )
        self.cc = self.service.get_container_client(spec["container"])

    async def setup(self) -> None:
        from azure.core.exceptions import ResourceExistsError

        with contextlib.suppress(ResourceExistsError):
            await self.cc.create_container()

    async def set_json(self, key: str, value: Any) -> None:
        await self.cc.upload_blob(
            key, json.dumps(value, separators=(",", ":")).encode(), overwrite=True
        )

    async def get_json(self, key: str) -> Any:
        stream = await self.cc.download_blob(key)
        return json.loads(await stream.readall())

    async def set_binary(self, key: str, data: bytes) -> None:
        await self.cc.upload_blob(key, data, overwrite=True, max_concurrency=4)

    async def get_binary(self, key: str) -> bytes:
        stream = await self.cc.download_blob(key, max_concurrency=4)
        return await stream.readall()

    async def list_keys(self, prefix: str) -> list[str]:
        return sorted([n async for n in self.cc.list_blob_names(name_starts_with=prefix or None)])

    async def close(self) -> None:
        await self.cc.close()
        await self.service.close()


class BareClient(Client):
    """Bare aiohttp with a hand-written SharedKey signer (benchmarks/sharedkey.py)."""

    def __init__(self, spec: dict[str, Any], cache: str) -> None:
        from sharedkey import BareBlobClient

        self.c = BareBlobClient(spec["endpoint"], spec["account"], spec["key"])
        self.container = spec["container"]

    async def setup(self) -> None:
        await self.c.create_container(self.container)

    async def set_json(self, key: str, value: Any) -> None:
        await self.c.put(self.container, key, json.dumps(value, separators=(",", ":")).encode())

    async def get_json(self, key: str) -> Any:
        return json.loads(await self.c.get(self.container, key))

    async def set_binary(self, key: str, data: bytes) -> None:
        await self.c.put(self.container, key, data)

    async def get_binary(self, key: str) -> bytes:
        return await self.c.get(self.container, key)

    async def list_keys(self, prefix: str) -> list[str]:
        return sorted(await self.c.list(self.container, prefix))

    async def close(self) -> None:
        await self.c.close()


IMPLS = {
    "ours": OursClient,
    "original": OriginalClient,
    "floor": FloorClient,
    "sdk": SdkClient,
    "bare": BareClient,
}


async def make_client(spec: dict[str, Any], cache: str) -> Client:
    client = IMPLS[spec["impl"]](spec, cache)
    setup = getattr(client, "setup", None)
    if setup is not None:
        await setup()
    return client


# ---------------------------------------------------------------------- workloads


def _pct(sorted_vals: list[float], q: float) -> float:
    if not sorted_vals:
        return 0.0
    i = min(len(sorted_vals) - 1, max(0, round(q * (len(sorted_vals) - 1))))
    return sorted_vals[i]


async def run_workload(client: Client, w: dict[str, Any]) -> dict[str, Any]:
    op = w["op"]
    n = int(w["n"])
    tasks = int(w.get("tasks", 1))
    nkeys = int(w.get("keys", min(n, 256)))
    prefix = w.get("prefix", w["name"])
    keys = [f"{prefix}/k{i}" for i in range(max(1, nkeys))]
    size = int(w.get("size", 200))

    fn: Callable[..., Awaitable[Any]]
    args: tuple[Any, ...]
    if op in ("set_json", "get_json", "get_json_cached"):
        value = small_value(size)
        if op != "set_json":
            for k in keys:  # untimed: the values to read
                await client.set_json(k, value)
            if op == "get_json_cached" or w.get("warm_read"):
                for k in keys:  # the first read fills the cache
                    await client.get_json(k)
        fn = client.set_json if op == "set_json" else client.get_json
        args = (value,) if op == "set_json" else ()
    elif op in ("set_binary", "get_binary"):
        data = os.urandom(size)
        if op == "get_binary":
            for k in keys:
                await client.set_binary(k, data)
            fn, args = client.get_binary, ()
        else:
            fn, args = client.set_binary, (data,)
    elif op == "list":
        expect = int(w.get("expect", 0))
        got = await client.list_keys(prefix)  # warm-up, and checks the count
        if expect and len(got) != expect:
            raise RuntimeError(f"list {prefix!r}: {len(got)} keys, expected {expect}")
        fn, args, keys = client.list_keys, (), [prefix]
    else:
        raise ValueError(op)

    # Untimed warm-up: connections, folders, containers, code paths.
    for k in keys[: int(w.get("warmup", 5))]:
        if op == "list":
            break
        await fn(k, *args)

    if w.get("sync_fs"):
        # Flush dirty pages (set-up, earlier workloads, other processes) now, so their
        # writeback does not land inside the timed loop.
        os.sync()

    lat: list[float] = []
    per_task = n // tasks
    perf = time.perf_counter

    timed = cast("Callable[..., Awaitable[Any]]", fn)  # one type for every op's function

    async def one(t: int) -> None:
        nk = len(keys)
        base = t * per_task
        for i in range(per_task):
            k = keys[(base + i) % nk]
            t0 = perf()
            await (timed(prefix) if op == "list" else timed(k, *args))
            lat.append(perf() - t0)

    gc.collect()
    gc_was = gc.isenabled()
    gc.disable()
    try:
        c0, l0, t0 = time.process_time(), time.thread_time(), perf()
        if tasks == 1:
            await one(0)
        else:
            await asyncio.gather(*(one(t) for t in range(tasks)))
        elapsed, cpu = perf() - t0, time.process_time() - c0
        loop_cpu = time.thread_time() - l0
    finally:
        if gc_was:
            gc.enable()
    ops = per_task * tasks
    lat.sort()
    out = {
        "ops": ops,
        "samples": len(lat),
        "seconds": elapsed,
        "ops_s": ops / elapsed,
        "p50_us": _pct(lat, 0.50) * 1e6,
        "p99_us": _pct(lat, 0.99) * 1e6,
        "cpu_us_per_op": cpu / ops * 1e6,
        "loop_cpu_us_per_op": loop_cpu / ops * 1e6,
        "loadavg": os.getloadavg()[0],
    }
    if op in ("set_binary", "get_binary"):
        out["MB_s"] = ops * size / MiB / elapsed
    return out


def populate_local(folder: str, prefix: str, count: int) -> None:
    """Write ``count`` small files under ``folder/prefix`` directly (untimed set-up)."""
    target = os.path.join(folder, prefix)
    os.makedirs(target, exist_ok=True)
    if len(os.listdir(target)) >= count:
        return
    for i in range(count):
        with open(os.path.join(target, f"k{i}"), "wb") as f:
            f.write(b"x" * 64)


async def run_memory(client: Client, m: dict[str, Any]) -> dict[str, Any]:
    """Peak memory of one big transfer: tracemalloc peak and ru_maxrss growth."""
    import tracemalloc

    size = int(m["size"])
    key = m.get("key", "mem/big")
    data = os.urandom(size) if m["op"] == "set_binary" else b""
    # Warm the code path with a small value so imports and sessions are not counted.
    await client.set_binary("mem/warm", b"x" * 1024)
    await client.get_binary("mem/warm")
    gc.collect()
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    tracemalloc.start()
    t0 = time.perf_counter()
    if m["op"] == "set_binary":
        await client.set_binary(key, data)
    else:
        got = await client.get_binary(key)
        if len(got) != size:
            raise RuntimeError(f"read {len(got)} bytes, expected {size}")
    elapsed = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "tracemalloc_peak_MiB": peak / MiB,
        "maxrss_delta_MiB": (rss1 - rss0) / 1024,
        "seconds_traced": elapsed,
    }


async def main_async(spec: dict[str, Any]) -> dict[str, Any]:
    results: dict[str, Any] = {}
    clients: dict[str, Client] = {}
    try:
        if "memory" in spec:
            client = await make_client(spec, "none")
            clients["none"] = client
            return {"memory": await run_memory(client, spec["memory"])}
        for w in spec["workloads"]:
            cache = w.get("cache", "none")
            container = w.get("container", spec["container"])
            ident = f"{cache}/{container}"
            if w.get("populate") and spec["backend"] == "local":
                populate_local(
                    os.path.join(spec["root"], container), w["prefix"], int(w["populate"])
                )
            if ident not in clients:
                clients[ident] = await make_client({**spec, "container": container}, cache)
            results[w["name"]] = await run_workload(clients[ident], w)
    finally:
        for c in clients.values():
            await c.close()
    return {"results": results}


def main() -> None:
    spec = json.loads(sys.stdin.read())
    out = asyncio.run(main_async(spec))
    sys.stdout.write(json.dumps(out) + "\n")


if __name__ == "__main__":
    main()
