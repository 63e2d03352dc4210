"""Scenario 4: mixed operations through a faulty network, ETag mode on.

The store's AzureBlobAdapter talks to Azurite through tests/reliability/fault_proxy.py, which
injects 503/500 answers, delays past the client timeout, connection resets before and after
forwarding, and truncated bodies. Every call must succeed or raise one of our errors, data
returned must be exactly what was stored (values carry checksums), a conflict may only follow
an ambiguous failure of the same key, and afterwards Azurite (read directly, not through the
proxy) holds exactly what the successful calls imply. A call that failed with StorageError
may or may not have landed: either outcome is accepted, and the model is re-read from Azurite.

Sizes: ``ABD_FLAKY_OPS`` operations (in batches of ``ABD_FLAKY_CONCURRENCY`` concurrent calls
on distinct keys); ``ABD_FLAKY_TIMEOUT`` the client's per-request timeout in seconds;
``ABD_FLAKY_RATE`` scales every fault rate. Every fourth block of 25 operations is a "storm"
at four times the rates, so retries run out and ambiguous outcomes happen.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import random
import time
from collections import Counter
from typing import Any

import pytest

from asyncblobdict import (
    AsyncBlobDictError,
    AsyncBlobStore,
    BlobNotFoundError,
    ConcurrencyError,
    ConcurrencyMode,
    StorageError,
)
from asyncblobdict.adapters.base import Adapter
from asyncblobdict.codec import encode
from tests.reliability.fault_proxy import FAULT_KINDS, FaultProxy, FaultRates
from tests.reliability.support import AzuriteInfo, SecretWatch, azure_fast_options, record, size

pytestmark = pytest.mark.azure

BASE_RATES = FaultRates(
    error_503=0.03, error_500=0.02, delay=0.01, reset_before=0.02, reset_after=0.02, truncate=0.03
)
JSON_KEYS = [f"json/{i}" for i in range(12)] + ["json/é ü+%20&x", "json/a b/c"]
BINARY_KEYS = [f"bin/{i}" for i in range(12)] + ["bin/ø 1+2=3", "bin/big"]
MAGIC = b"ABDF"


def json_value(key: str, n: int, rng: random.Random) -> dict[str, Any]:
    pad = "x" * rng.choice([0, 10, 300, 3000])
    return {"key": key, "n": n, "pad": pad, "sha256": _digest(key, n, pad)}


def _digest(key: str, n: int, pad: str) -> str:
    return hashlib.sha256(f"{key}|{n}|{pad}".encode()).hexdigest()


def check_json(key: str, value: Any) -> int:
    assert isinstance(value, dict) and value.get("key") == key, f"{key}: foreign value"
    assert value["sha256"] == _digest(key, value["n"], value["pad"]), f"{key}: bad checksum"
    return int(value["n"])


def binary_value(key: str, rng: random.Random) -> bytes:
    n = 6 * 1024 * 1024 if key == "bin/big" else rng.choice([0, 1, 100, 5000, 70000])
    body = key.encode() + b"\0" + os.urandom(n)
    return MAGIC + hashlib.sha256(body).digest() + body


def check_binary(key: str, data: bytes) -> None:
    assert data[:4] == MAGIC, f"{key}: bad magic"
    assert hashlib.sha256(data[36:]).digest() == data[4:36], f"{key}: bad checksum (torn?)"
    assert data[36:].split(b"\0", 1)[0] == key.encode(), f"{key}: foreign value"


def bump(value: Any) -> Any:
    n = value["n"] + 1
    return {**value, "n": n, "sha256": _digest(value["key"], n, value["pad"])}


class Run:
    def __init__(self, store: AsyncBlobStore, direct: Adapter, container: str, seed: int) -> None:
        self.store = store
        self.direct = direct
        self.container = container
        self.rng = random.Random(seed)
        self.model: dict[str, bytes] = {}
        self.stale: set[str] = set()  # keys whose remembered ETag may be out of date
        self.outcomes: Counter[str] = Counter()
        self.errors: list[BaseException] = []

    async def stored(self, key: str) -> bytes | None:
        try:
            return (await self.direct.get(self.container, key))[0]
        except BlobNotFoundError:
            return None

    async def op(self, key: str) -> tuple[str, bytes | None, bytes | None] | None:
        """One random call on ``key``; returns (kind, old, new) when its outcome is unknown."""
        rng = self.rng
        store = self.store
        is_json = key.startswith("json/")
        old = self.model.get(key)
        kind = rng.choices(
            ["set", "get", "delete", "update", "exists"], weights=[35, 35, 8, 14, 8]
        )[0]
        if kind == "update" and not is_json:
            kind = "set"
        self.outcomes[f"{kind}_calls"] += 1
        new: bytes | None = None
        try:
            if kind == "set":
                if is_json:
                    n = json.loads(old)["n"] + 1 if old else rng.randrange(100)
                    value = json_value(key, n, rng)
                    new = encode(value)
                    await store.set_json(key, value)
                else:
                    new = binary_value(key, rng)
                    await store.set_binary(key, new)
                self.model[key] = new
            elif kind == "get":
                if is_json:
                    got = await store.get_json(key)
                    check_json(key, got)
                    data = encode(got)
                else:
                    data = await store.get_binary(key)
                    check_binary(key, data)
                assert old is not None, f"get of {key!r} found a value the model lacks"
                assert data == old, f"get of {key!r} returned other data than stored"
            elif kind == "delete":
                new = None
                await store.delete(key)
                self.model.pop(key, None)
            elif kind == "update":
                start = json_value(key, 0, rng)
                before = json.loads(old)["n"] if old else 0  # the default has n=0
                result = await store.update_json(key, bump, default=start)
                new = encode(result)
                assert result["n"] == before + 1, (
                    f"update_json of {key!r} went from n={before} to n={result['n']}: an "
                    "increment was applied twice (or lost)"
                )
                self.model[key] = new
            else:
                assert await store.exists(key) == (old is not None)
        except BlobNotFoundError:
            assert kind == "get" and old is None, f"{kind} {key!r}: not found, but it exists"
            self.outcomes[f"{kind}_not_found"] += 1
            self.stale.discard(key)
        except ConcurrencyError as exc:
            self.errors.append(exc)
            assert key in self.stale and kind in ("set", "delete"), (
                f"{kind} {key!r} raised a conflict although nothing else wrote it "
                f"(and no earlier call on it failed): {exc}"
            )
            self.outcomes[f"{kind}_conflict_after_ambiguous_failure"] += 1
        except StorageError as exc:
            self.errors.append(exc)
            self.outcomes[f"{kind}_storage_error"] += 1
            if kind in ("set", "delete", "update"):
                if kind == "update":
                    return kind, old, None  # checked against n below
                return kind, old, new
            return None
        else:
            self.outcomes[f"{kind}_ok"] += 1
            self.stale.discard(key)
        return None

    async def resolve(self, key: str, kind: str, old: bytes | None, new: bytes | None) -> None:
        """After an ambiguous failure: storage holds the old or the new value, nothing else."""
        actual = await self.stored(key)
        if kind == "update":
            n_old = json.loads(old)["n"] if old else 0
            if actual is None:
                assert old is None, f"a failed update_json deleted {key!r}"
                landed = False
            else:
                n_now = check_json(key, json.loads(actual))
                assert n_now == n_old + 1 or (old is not None and n_now == n_old), (
                    f"{key!r}: n={n_now} after n={n_old} and one failed update_json"
                )
                landed = n_now != n_old or old is None
        else:
            assert actual in (old, new), f"{key!r} holds neither the old nor the new value"
            landed = actual == new and old != new
        self.outcomes["ambiguous_landed" if landed else "ambiguous_not_landed"] += 1
        if actual is None:
            self.model.pop(key, None)
        else:
            self.model[key] = actual
        self.stale.add(key)

    async def list_check(self) -> None:
        self.outcomes["list_calls"] += 1
        try:
            keys = await self.store.list_keys()
        except StorageError as exc:
            self.errors.append(exc)
            self.outcomes["list_storage_error"] += 1
            return
        assert keys == sorted(self.model), "list_keys differs from the model"
        self.outcomes["list_ok"] += 1


async def test_mixed_operations_under_faults(
    rel_azurite: AzuriteInfo, secret_watch: SecretWatch
) -> None:
    ops = size("ABD_FLAKY_OPS", 300)
    concurrency = size("ABD_FLAKY_CONCURRENCY", 4, scaled=False)
    timeout = float(os.environ.get("ABD_FLAKY_TIMEOUT", "0.5"))
    rate = float(os.environ.get("ABD_FLAKY_RATE", "1"))
    seed = int(os.environ.get("ABD_SEED", "0")) or random.randrange(2**32)
    rates = BASE_RATES.scaled(rate)
    rates.delay_seconds = timeout + 0.5
    proxy = FaultProxy(rates, seed=seed)
    port = await proxy.start(rel_azurite.endpoint)
    adapter = rel_azurite.new_adapter(
        f"http://127.0.0.1:{port}/devstoreaccount1",
        **azure_fast_options(
            timeout,
            # Small thresholds so 6 MiB values go as Put Block lists and ranged reads.
            single_put_threshold=2 * 1024 * 1024,
            block_size=1024 * 1024,
            read_chunk_size=1024 * 1024,
        ),
    )
    direct = rel_azurite.new_adapter()
    container = f"flaky{int(time.time() * 1000)}"
    store = AsyncBlobStore(adapter, container, concurrency_mode=ConcurrencyMode.ETAG)
    secret_watch.see(store)
    secret_watch.see(adapter)
    run = Run(store, direct, container, seed)
    started = time.monotonic()
    done = 0
    try:
        await direct.put(container, "json/0", encode(json_value("json/0", 0, run.rng)))
        run.model["json/0"] = (await direct.get(container, "json/0"))[0]
        block = 0
        while done < ops:
            storm = block % 4 == 3
            proxy.rates = rates.scaled(4) if storm else rates
            proxy.rates.delay_seconds = rates.delay_seconds
            for _ in range(25 // concurrency + 1):
                keys = run.rng.sample(JSON_KEYS + BINARY_KEYS, concurrency)
                results = await asyncio.gather(*(run.op(k) for k in keys), return_exceptions=True)
                for r in results:
                    if isinstance(r, BaseException):
                        secret_watch.see(r)
                        assert isinstance(r, (AssertionError, AsyncBlobDictError)), repr(r)
                        raise r
                done += concurrency
                await proxy.quiesce()
                for k, r in zip(keys, results, strict=True):
                    if r is not None:
                        await run.resolve(k, *r)  # type: ignore[misc]
                if run.rng.random() < 0.1:
                    await run.list_check()
                    done += 1
            block += 1
        proxy.rates = FaultRates()
        await proxy.quiesce()
        # Azurite itself, read directly, holds exactly what the model says.
        stored = {}
        async for info in direct.list(container):
            stored[info.key] = (await direct.get(container, info.key))[0]
        assert sorted(stored) == sorted(run.model), "the container's keys differ from the model"
        for key, data in stored.items():
            assert data == run.model[key], f"{key!r} differs from the model"
            if key.startswith("json/"):
                check_json(key, json.loads(data))
            else:
                check_binary(key, data)
    finally:
        for exc in run.errors:
            secret_watch.see(exc)
        await store.close()
        await direct.close()
        await proxy.stop()
    faults = {k: proxy.counts.get(k, 0) for k in FAULT_KINDS}
    record(
        "flaky_network_azure",
        {
            "operations": done,
            "http_requests": proxy.counts["requests"],
            "faults_injected": faults,
            "faults_total": sum(faults.values()),
            "outcomes": dict(sorted(run.outcomes.items())),
            "client_timeout_s": timeout,
            "seed": seed,
            "final_keys_checked": len(run.model),
            "data_lost": 0,
            "truncated_bodies_returned": 0,
            "log_records_checked_for_secrets": secret_watch.records,
            "seconds": round(time.monotonic() - started, 1),
        },
    )


class _OneReset(FaultProxy):
    """Drops the connection, unanswered, after forwarding the next request (once)."""

    armed = False

    def _draw(self) -> str | None:
        if self.armed:
            self.armed = False
            return "reset_after"
        return None


@pytest.mark.parametrize("call", ["create", "replace", "update_json", "delete"])
async def test_connection_dropped_after_a_write_landed(
    rel_azurite: AzuriteInfo, secret_watch: SecretWatch, call: str
) -> None:
    """The write landed, its answer was lost: no false conflict, no double update.

    Deterministic form of what the mixed run finds: aiohttp by itself resends an idempotent
    method (PUT, DELETE) once when a kept-alive connection drops, so the adapter must not
    mistake that resend's 409/412 for somebody else's change.
    """
    proxy = _OneReset()
    port = await proxy.start(rel_azurite.endpoint)
    adapter = rel_azurite.new_adapter(
        f"http://127.0.0.1:{port}/devstoreaccount1", **azure_fast_options(2.0)
    )
    container = f"drop{call.replace('_', '')}{int(time.time() * 1000)}"
    try:
        async with AsyncBlobStore(adapter, container, concurrency_mode="etag") as store:
            if call == "create":
                assert not await store.exists("k")
            else:
                await store.set_json("k", {"n": 1})
            proxy.armed = True
            if call == "create":
                await store.set_json("k", {"n": 1})
            elif call == "replace":
                await store.set_json("k", {"n": 2})
            elif call == "update_json":
                await store.update_json("k", lambda v: {"n": v["n"] + 1})
            else:
                await store.delete("k")
            assert proxy.counts["reset_after"] == 1
            expected = {"create": {"n": 1}, "replace": {"n": 2}, "update_json": {"n": 2}}
            if call == "delete":
                assert not await store.exists("k")
            else:
                assert await store.get_json("k") == expected[call]
    finally:
        await proxy.stop()
