"""Model-based stateful test of AsyncBlobStore: sequences, overlaps, cancellations and faults.

Hypothesis drives 2-4 stores (mixed cache and concurrency modes) on one shared container
through random calls on the keys "a", "a/b" and "c": every public call, concurrent calls on
one or several stores, calls cancelled at a random point, close-and-reopen, and (on Azurite
behind tests/reliability/fault_proxy.py) lost requests and answers. After every step the
results, storage read through a fresh adapter and each store's ``dirty_keys()`` are checked
against store_model.py, which holds every state the contract allows.

Environment:

``ABD_STATEFUL_EXAMPLES``     runs per backend (default 40 on memory and local, 8 on Azurite)
``ABD_STATEFUL_STEPS``        steps per run (default 30)
``ABD_STATEFUL_SEED``         replay a run: a failing run prints its seed
``ABD_STATEFUL_FAULT_RATE``   multiplies the fault proxy's rates (default 1: ~9% of requests)
``ABD_STATEFUL_RULES_OFF``    comma-separated rules to leave out, to chase one bug at a time
``ABD_STATEFUL_DEBUG``        print cancellations and steps that leave many possible states

A long run (4,000 steps per backend):
``ABD_STATEFUL_EXAMPLES=100 ABD_STATEFUL_STEPS=40 AZURITE_REQUIRED=1 pytest tests/stateful``.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, Phase, seed, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    precondition,
    rule,
    run_state_machine_as_test,
)

from asyncblobdict import (
    AsyncBlobDictError,
    AsyncBlobStore,
    BlobNotFoundError,
    ConcurrencyError,
    LocalFileAdapter,
    MemoryAdapter,
    OutcomeUnknownError,
    StorageError,
)
from asyncblobdict.adapters.base import Adapter
from tests.azure.azurite import DEV_ACCOUNT, DEV_KEY, Azurite
from tests.reliability.fault_proxy import FAULT_KINDS, FaultProxy, FaultRates
from tests.stateful.store_model import (
    KEYS,
    Behaviour,
    CacheKind,
    Close,
    Delete,
    Discard,
    Exists,
    Get,
    ListKeys,
    Model,
    Op,
    Outcome,
    Set,
    StoreConfig,
    Sync,
    Update,
    World,
    describe_world,
    iter_limited,
)

# Runs per backend: by default more on the cheap backends than on Azurite.
EXAMPLES = {
    kind: int(os.environ.get("ABD_STATEFUL_EXAMPLES") or default)
    for kind, default in (("memory", 40), ("local", 40), ("azurite", 8), ("azurite_faults", 8))
}
STEPS = int(os.environ.get("ABD_STATEFUL_STEPS") or 30)
FAULT_RATE = float(os.environ.get("ABD_STATEFUL_FAULT_RATE") or 1)
STEP_TIMEOUT = float(os.environ.get("ABD_STATEFUL_STEP_TIMEOUT") or 60)
DEBUG = bool(os.environ.get("ABD_STATEFUL_DEBUG"))
SETTLE = float(os.environ.get("ABD_STATEFUL_SETTLE") or 0.02)
# Rules to leave out, comma-separated (to look for one class of bug at a time); with
# "same_store_overlap" the concurrently rule puts each call on a store of its own.
MAX_WORLDS_TO_CANCEL = 100  # see StoreMachine.cancel
RULES_OFF = frozenset(filter(None, (os.environ.get("ABD_STATEFUL_RULES_OFF") or "").split(",")))

T = TypeVar("T")


# ------------------------------------------------------------------------------ backends


class Backend:
    """One container shared by every store of a run, and a way to read it directly."""

    local = False
    faults = False

    def __init__(self) -> None:
        self.container = "t" + uuid.uuid4().hex[:20]

    async def start(self, fault_seed: int) -> None:
        """Set up (on the machine's event loop)."""

    def adapter(self) -> Adapter:
        """An adapter for a new store."""
        raise NotImplementedError

    def direct(self) -> Adapter:
        """The adapter that reads storage for the checks (never a store's)."""
        raise NotImplementedError

    def fault_count(self) -> int:
        return 0

    async def quiesce(self) -> None:
        """Wait until nothing is still on its way to storage (that we can see)."""

    async def stop(self) -> None:
        await self.direct().close()

    async def stored(self) -> tuple[tuple[int | None, ...], frozenset[str]]:
        """What storage holds, per key, and the keys a listing shows."""
        adapter = self.direct()
        values: list[int | None] = []
        for key in KEYS:
            try:
                data, _ = await adapter.get(self.container, key)
            except BlobNotFoundError:
                values.append(None)
                continue
            value = json.loads(data)
            assert type(value) is int, f"storage holds {data!r} under {key!r}, not a value we wrote"
            values.append(value)
        listed = frozenset([info.key async for info in adapter.list(self.container)])
        return tuple(values), listed


class MemoryBackend(Backend):
    def __init__(self) -> None:
        super().__init__()
        self.shared = MemoryAdapter()

    def adapter(self) -> Adapter:
        return self.shared

    def direct(self) -> Adapter:
        return self.shared


class LocalBackend(Backend):
    local = True

    def __init__(self, parent: Path) -> None:
        super().__init__()
        self.root = Path(tempfile.mkdtemp(prefix="stateful-", dir=parent))
        self._direct = LocalFileAdapter(self.root, durable=False)

    def adapter(self) -> Adapter:
        return LocalFileAdapter(self.root, durable=False)

    def direct(self) -> Adapter:
        return self._direct

    async def stop(self) -> None:
        await super().stop()
        shutil.rmtree(self.root, ignore_errors=True)


FAULT_RATES = FaultRates(error_503=0.03, error_500=0.02, reset_before=0.02, reset_after=0.02)


class AzuriteBackend(Backend):
    def __init__(self, server: Azurite, *, faults: bool) -> None:
        super().__init__()
        self.server = server
        self.faults = faults
        self.proxy: FaultProxy | None = None
        self._direct: Adapter | None = None
        self.endpoint = server.endpoint

    async def start(self, fault_seed: int) -> None:
        self._direct = self.server.new_adapter()
        if self.faults:
            self.proxy = FaultProxy(FAULT_RATES.scaled(FAULT_RATE), seed=fault_seed)
            port = await self.proxy.start(self.server.endpoint)
            self.endpoint = f"http://127.0.0.1:{port}/{DEV_ACCOUNT}"

    def adapter(self) -> Adapter:
        from asyncblobdict.adapters.azure import AzureBlobAdapter, RetryPolicy

        options: dict[str, Any] = {}
        if self.faults:
            options = {
                "retry": RetryPolicy(
                    max_attempts=5, base_delay=0.005, max_delay=0.05, total_timeout=10
                ),
                "request_timeout": 5.0,
                "connect_timeout": 5.0,
            }
        return AzureBlobAdapter.from_connection_string(
            f"DefaultEndpointsProtocol=http;AccountName={DEV_ACCOUNT};AccountKey={DEV_KEY};"
            f"BlobEndpoint={self.endpoint};",
            **options,
        )

    def direct(self) -> Adapter:
        assert self._direct is not None
        return self._direct

    def fault_count(self) -> int:
        if self.proxy is None:
            return 0
        return sum(self.proxy.counts[kind] for kind in FAULT_KINDS)

    async def quiesce(self) -> None:
        if self.proxy is not None:
            await self.proxy.quiesce()

    async def stop(self) -> None:
        if self._direct is not None:
            await self._direct.close()
        if self.proxy is not None:
            await self.proxy.stop()


# ------------------------------------------------------------------------------ calls


def _increment(value: int) -> int:
    return value + 1


async def _increment_async(value: int) -> int:
    await asyncio.sleep(0)
    return value + 1


def error_name(exc: AsyncBlobDictError) -> str:
    for cls in (BlobNotFoundError, ConcurrencyError, OutcomeUnknownError, StorageError):
        if isinstance(exc, cls):
            return cls.__name__
    return type(exc).__name__ if type(exc) is AsyncBlobDictError else "AsyncBlobDictError"


async def call(store: AsyncBlobStore, op: Op) -> object:
    """Make the call ``op`` describes; return what the model compares."""
    if isinstance(op, Get):
        return await store.get_json(KEYS[op.k])
    if isinstance(op, Exists):
        return await store.exists(KEYS[op.k])
    if isinstance(op, Set):
        await store.set_json(KEYS[op.k], op.value)
        return None
    if isinstance(op, Delete):
        await store.delete(KEYS[op.k])
        return None
    if isinstance(op, Update):
        fn = _increment_async if op.is_async else _increment
        return await store.update_json(KEYS[op.k], fn, default=op.default)
    if isinstance(op, ListKeys):
        return tuple(await store.list_keys())
    if isinstance(op, Sync):
        result = await store.sync(op.behaviour)
        return tuple(
            tuple(sorted(set(keys))) for keys in (result.written, result.deleted, result.skipped)
        )
    if isinstance(op, Close):
        await store.close()
        return None
    if isinstance(op, Discard):
        store.discard_changes()
        return None
    raise AssertionError(f"unknown operation {op!r}")


def _show(outcome: Outcome) -> str:
    kind, value = outcome
    if kind == "ok":
        return "ok" if value is None else f"-> {value!r}"
    if kind == "err":
        return f"raises {value}"
    return str(kind)


def _hint(op: Op, actual: Outcome, allowed: set[Outcome]) -> str:
    kinds = {o[0] for o in allowed}
    if actual == ("err", "ConcurrencyError") and "ok" in kinds:
        return (
            "a false conflict: no other store changed the key since this store last read or "
            "wrote it (a store must recognise its own writes, even cancelled ones or those of "
            "its own sync/close, and exists() or list_keys never change what it remembers)"
        )
    if actual[0] == "ok" and allowed == {("err", "ConcurrencyError")}:
        return (
            "a lost update: another store changed the key since this store last read it, "
            "so this write must raise ConcurrencyError (exists(), list_keys and cache "
            "evictions never refresh the remembered ETag)"
        )
    if isinstance(op, Update) and actual[0] == "ok":
        return (
            "update_json returned a value that is not one more than the value it replaced "
            "(applied twice, lost, or based on a stale read)"
        )
    if isinstance(op, (Get, Exists)) and actual[0] in ("ok", "err"):
        return (
            "a stale or wrong read: neither what storage holds nor this store's own last "
            "read or written value (nor its pending change)"
        )
    return ""


# ------------------------------------------------------------------------------ the machine

KEY = st.sampled_from(KEYS)
STORE = st.integers(0, 3)
CACHE: st.SearchStrategy[CacheKind] = st.sampled_from(["none", "write_through", "write_back"])
BEHAVIOUR: st.SearchStrategy[Behaviour] = st.sampled_from(["skip", "overwrite", "raise"])
CONFIG = st.builds(StoreConfig, CACHE, st.booleans(), st.booleans())
SIMPLE = st.sampled_from(["set", "delete", "update", "update_async", "get", "exists"])


class StoreMachine(RuleBasedStateMachine):
    """Stores on one backend, checked against the model after every step."""

    def __init__(self, make_backend: Callable[[], Backend]) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.backend = make_backend()
        self.stores: list[AsyncBlobStore] = []
        self.model = Model([], local=self.backend.local)
        self.worlds: set[World] = {self.model.initial()}
        self.steps = 0
        self.last_value = 0
        self.failed = False
        self.started = False

    # ---------------------------------------------------------------- plumbing

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        try:
            return self.loop.run_until_complete(asyncio.wait_for(coro, STEP_TIMEOUT))
        except BaseException:
            self.failed = True
            raise

    def _fresh(self) -> int:
        self.last_value += 1000
        return self.last_value

    def _store(self, i: int) -> int:
        return i % len(self.stores)

    def _open(self, cfg: StoreConfig) -> AsyncBlobStore:
        return AsyncBlobStore(
            self.backend.adapter(),
            self.backend.container,
            cache_mode=cfg.cache,
            concurrency_mode="etag" if cfg.etag else "none",
            cache_max_entries=64,  # also bounds the remembered ETags: more than the keys
            cache_max_bytes=6 if cfg.small_cache else None,  # 6 bytes: one value, evictions
        )

    async def _execute(
        self, calls: Sequence[tuple[int, Op]], cancel: tuple[int, float] | None
    ) -> list[Outcome]:
        tasks = [asyncio.ensure_future(call(self.stores[i], op)) for i, op in calls]
        if cancel is not None:
            spins, nap = cancel
            for _ in range(spins):
                await asyncio.sleep(0)
            if nap:
                await asyncio.sleep(nap)
            tasks[0].cancel()
        await asyncio.wait(tasks)
        outcomes: list[Outcome] = []
        for task in tasks:
            if task.cancelled():
                outcomes.append(("cancelled", None))
                continue
            exc = task.exception()
            if exc is None:
                outcomes.append(("ok", task.result()))
            elif isinstance(exc, AsyncBlobDictError):
                outcomes.append(("err", error_name(exc)))
            else:
                raise exc  # no other exception may escape the public API
        return outcomes

    def step(
        self,
        calls: Sequence[tuple[int, Op]],
        *,
        cancel: tuple[int, float] | None = None,
        reopen: dict[int, StoreConfig] | None = None,
    ) -> list[Outcome]:
        """Make the calls (concurrently), then check everything against the model."""
        started = time.monotonic()
        tick = self.steps * 8
        self.steps += 1
        faults_before = self.backend.fault_count()
        outcomes = self._run(self._execute(calls, cancel))
        reopened: dict[int, StoreConfig] = {}
        for (i, op), outcome in zip(calls, outcomes, strict=True):
            if isinstance(op, Close) and outcome[0] == "ok" and reopen is not None:
                reopened[i] = reopen.get(i, self.model.configs[i])
                self.stores[i] = self._open(reopened[i])
        if cancel is not None:
            # A write the store lets run on after cancelling its caller (a thread, a request
            # on its way) should show now, not in some later step: that keeps a failing run
            # reproducible. Not an assertion: the model allows it to land at any time.
            self._run(asyncio.sleep(SETTLE))
        in_flight = cancel is not None or any(
            q for w in self.worlds for t in w.stores for q in t.bg
        )
        storage, listed = self._run(self._observe(settle=in_flight))
        dirty = [frozenset(KEYS.index(k) for k in s.dirty_keys()) for s in self.stores]
        self.model.faulted = self.backend.fault_count() != faults_before
        present = frozenset(KEYS[k] for k, v in enumerate(storage) if v is not None)
        if listed != present:
            self._fail(f"a direct listing shows {sorted(listed)}, reads find {sorted(present)}")
        found = self.model.explore(self.worlds, calls, outcomes, tick)
        matching = found.get(tuple(outcomes), set())
        kept = {
            w
            for w in matching
            if w.storage == storage
            and all(s.dirty() == d for s, d in zip(w.stores, dirty, strict=True))
        }
        if not kept:
            self._report(calls, outcomes, tick, matching, storage, dirty)
        self.worlds = kept
        for i, cfg in reopened.items():  # a reopened store starts afresh, in any mode
            self.model.configs[i] = cfg
        if DEBUG and cancel is not None:
            print(f"cancel {cancel}: {self._describe_calls(calls, outcomes)} -> {len(kept)} worlds")
        if DEBUG and (len(kept) > 50 or time.monotonic() - started > 0.5):
            print(
                f"step {self.steps}: {len(kept)} worlds, {time.monotonic() - started:.2f} s: "
                f"{self._describe_calls(calls, outcomes)}"
            )
        return outcomes

    async def _observe(self, *, settle: bool) -> tuple[tuple[int | None, ...], frozenset[str]]:
        """Storage as a fresh adapter sees it (with ``settle``: once two reads agree)."""
        await self.backend.quiesce()
        seen = await self.backend.stored()
        for _ in range(20 if settle else 0):
            again = await self.backend.stored()
            if again == seen:
                break
            seen = again
            await asyncio.sleep(0.005)
        return seen

    def _describe_calls(self, calls: Sequence[tuple[int, Op]], outcomes: Sequence[Outcome]) -> str:
        parts = [
            f"store {i} ({self.model.configs[i]}): {op.describe()} {_show(o)}"
            for (i, op), o in zip(calls, outcomes, strict=True)
        ]
        together = "concurrently: " if len(calls) > 1 else ""
        return together + "; ".join(parts)

    def _report(
        self,
        calls: Sequence[tuple[int, Op]],
        outcomes: list[Outcome],
        tick: int,
        matching: set[World],
        storage: tuple[int | None, ...],
        dirty: list[frozenset[int]],
    ) -> None:
        lines = [f"step {self.steps}: {self._describe_calls(calls, outcomes)}"]
        if self.model.faulted:
            lines.append("(the fault proxy injected faults during this step)")
        if not matching:
            everything = self.model.explore(self.worlds, calls, outcomes, tick, prune=False)
            for idx, ((i, op), actual) in enumerate(zip(calls, outcomes, strict=True)):
                allowed = {outs[idx] for outs in everything}
                if actual not in allowed:
                    shown = ", ".join(sorted(_show(o) for o in allowed))
                    lines.append(f"store {i} {op.describe()}: the model allows only {shown}")
                    hint = _hint(op, actual, allowed)
                    if hint:
                        lines.append(f"  => {hint}")
                    break
            else:
                allowed_sets = (
                    "; ".join(_show(o) for o in outs) for outs in sorted(everything, key=repr)
                )
                lines.append("no order of the calls gives these results together; allowed:")
                lines.extend(f"  {s}" for s in iter_limited(allowed_sets, 8))
        else:

            def val(v: int | None) -> str:
                return "-" if v is None else str(v)

            shown = " ".join(f"{KEYS[k]}={val(v)}" for k, v in enumerate(storage))
            dirty_shown = [sorted(KEYS[k] for k in d) for d in dirty]
            lines.append(f"afterwards storage holds {shown}; dirty keys per store {dirty_shown}")
            lines.append("the model allows (storage, dirty keys per store):")
            options = sorted(
                {
                    (
                        " ".join(f"{KEYS[k]}={val(v)}" for k, v in enumerate(w.storage)),
                        str([sorted(KEYS[k] for k in s.dirty()) for s in w.stores]),
                    )
                    for w in matching
                }
            )
            lines.extend(f"  {o}" for o in iter_limited((f"{a}; {b}" for a, b in options), 8))
            if any(w.storage != storage for w in matching):
                lines.append(
                    "  => storage differs: a write was dropped, applied twice, or landed when "
                    "it should not have (a cancelled write must land, if at all, before the "
                    "store's next call on the key or its close() completes)"
                )
        lines.append("states the model allowed before this step:")
        states = sorted({describe_world(w) for w in self.worlds})
        lines.extend(f"  {d}" for d in iter_limited(states, 6))
        self._fail("\n".join(lines))

    def _fail(self, message: str) -> None:
        self.failed = True
        raise AssertionError(message)

    # ---------------------------------------------------------------- rules

    @initialize(configs=st.lists(CONFIG, min_size=2, max_size=4), fault_seed=st.integers(0, 9999))
    def start(self, configs: list[StoreConfig], fault_seed: int) -> None:
        self._run(self.backend.start(fault_seed))
        self.started = True
        self.stores = [self._open(cfg) for cfg in configs]
        self.model = Model(configs, local=self.backend.local)
        self.worlds = {self.model.initial()}

    @precondition(lambda self: "set_json" not in RULES_OFF)
    @rule(i=STORE, key=KEY)
    def set_json(self, i: int, key: str) -> None:
        self.step([(self._store(i), Set(KEYS.index(key), self._fresh()))])

    @precondition(lambda self: "get_json" not in RULES_OFF)
    @rule(i=STORE, key=KEY)
    def get_json(self, i: int, key: str) -> None:
        self.step([(self._store(i), Get(KEYS.index(key)))])

    @precondition(lambda self: "delete" not in RULES_OFF)
    @rule(i=STORE, key=KEY)
    def delete(self, i: int, key: str) -> None:
        self.step([(self._store(i), Delete(KEYS.index(key)))])

    @precondition(lambda self: "exists" not in RULES_OFF)
    @rule(i=STORE, key=KEY)
    def exists(self, i: int, key: str) -> None:
        self.step([(self._store(i), Exists(KEYS.index(key)))])

    @precondition(lambda self: "list_keys" not in RULES_OFF)
    @rule(i=STORE)
    def list_keys(self, i: int) -> None:
        self.step([(self._store(i), ListKeys())])

    @precondition(lambda self: "update_json" not in RULES_OFF)
    @rule(i=STORE, key=KEY, is_async=st.booleans())
    def update_json(self, i: int, key: str, is_async: bool) -> None:
        self.step([(self._store(i), Update(KEYS.index(key), self._fresh(), is_async))])

    @precondition(lambda self: "sync" not in RULES_OFF)
    @rule(i=STORE, behaviour=BEHAVIOUR)
    def sync(self, i: int, behaviour: Behaviour) -> None:
        self.step([(self._store(i), Sync(behaviour))])

    @precondition(lambda self: "discard_changes" not in RULES_OFF)
    @rule(i=STORE)
    def discard_changes(self, i: int) -> None:
        self.step([(self._store(i), Discard())])

    @precondition(lambda self: "replace_partner" not in RULES_OFF)
    @rule(i=STORE, key=st.sampled_from(["a", "a/b"]))
    def replace_partner(self, i: int, key: str) -> None:
        """delete("a/b") then set_json("a") (or the other way round): on the local backend
        the two cannot coexist, so a write-back store must replay them in this order."""
        i = self._store(i)
        k = KEYS.index(key)
        self.step([(i, Delete(1 - k))])
        self.step([(i, Set(k, self._fresh()))])

    @precondition(lambda self: "close_and_reopen" not in RULES_OFF)
    @rule(i=STORE, config=CONFIG)
    def close_and_reopen(self, i: int, config: StoreConfig) -> None:
        i = self._store(i)
        self.step([(i, Close())], reopen={i: config})

    def _simple(self, kind: str, key: str) -> Op:
        k = KEYS.index(key)
        if kind == "exists" and "exists" in RULES_OFF:
            kind = "get"
        if kind == "set":
            return Set(k, self._fresh())
        if kind == "delete":
            return Delete(k)
        if kind in ("update", "update_async"):
            return Update(k, self._fresh(), kind == "update_async")
        if kind == "get":
            return Get(k)
        if kind == "exists":
            return Exists(k)
        raise AssertionError(kind)

    # Each cancellation leaves the model unsure what the store did until it next touches the
    # key; while the possible states are many, the call runs to its end instead, so steps stay
    # cheap. (Not a precondition: the states depend on what storage did, and hypothesis needs
    # the enabled rules to depend on the drawn data alone to replay and shrink a run.)
    @precondition(lambda self: "cancel" not in RULES_OFF)
    @rule(
        i=STORE,
        # Mostly writes: the calls whose storage write must neither be lost nor come late.
        kind=st.sampled_from(["set", "set", "delete", "update", "update_async", "get", "sync"]),
        key=KEY,
        behaviour=BEHAVIOUR,
        spins=st.integers(0, 12),
        nap=st.sampled_from([0.0, 0.0, 0.0005, 0.003]),
    )
    def cancel(
        self, i: int, kind: str, key: str, behaviour: Behaviour, spins: int, nap: float
    ) -> None:
        """Start a call, let the loop run a little, cancel it and wait for it."""
        op = Sync(behaviour) if kind == "sync" else self._simple(kind, key)
        self.step([(self._store(i), op)], cancel=self._cancel(spins, nap))

    def _cancel(self, spins: int, nap: float) -> tuple[int, float] | None:
        return (spins, nap) if len(self.worlds) <= MAX_WORLDS_TO_CANCEL else None

    @precondition(lambda self: "cancel_then_write" not in RULES_OFF)
    @rule(
        i=STORE,
        kind=st.sampled_from(["set", "delete", "update_async"]),
        then=st.sampled_from(["set", "delete", "update"]),
        key=KEY,
        spins=st.integers(0, 12),
        nap=st.sampled_from([0.0, 0.0005, 0.003]),
    )
    def cancel_then_write(
        self, i: int, kind: str, then: str, key: str, spins: int, nap: float
    ) -> None:
        """Cancel a write, then write the key again from the same store: the second call
        waits for the first, and knows its outcome (no false conflict, no late landing)."""
        i = self._store(i)
        self.step([(i, self._simple(kind, key))], cancel=self._cancel(spins, nap))
        self.step([(i, self._simple(then, key))])

    @precondition(lambda self: "concurrently" not in RULES_OFF)
    @rule(calls=st.lists(st.tuples(STORE, SIMPLE, KEY), min_size=2, max_size=3))
    def concurrently(self, calls: list[tuple[int, str, str]]) -> None:
        """Two or three calls at once, on one store or several."""
        if "same_store_overlap" in RULES_OFF:  # every call on a store of its own
            calls = [(calls[0][0] + n, kind, key) for n, (_, kind, key) in enumerate(calls)]
            calls = calls[: len(self.stores)]
        stores = {self._store(i) for i, _, _ in calls}
        ops: list[tuple[int, Op]] = []
        for i, kind, key in calls:
            if self.backend.faults and len(stores) > 1 and kind in ("set", "delete"):
                # A retried unconditional write may land twice, around another store's
                # write: not linearisable, so faulty cross-store groups only update.
                kind = "update"
            ops.append((self._store(i), self._simple(kind, key)))
        self.step(ops)

    @precondition(lambda self: "update_overlapping_set" not in RULES_OFF)
    @rule(i=STORE, key=KEY, update_first=st.booleans())
    def update_overlapping_set(self, i: int, key: str, update_first: bool) -> None:
        """update_json with an async fn and set_json of the same key, on one store."""
        i = self._store(i)
        k = KEYS.index(key)
        update: tuple[int, Op] = (i, Update(k, self._fresh(), True))
        set_: tuple[int, Op] = (i, Set(k, self._fresh()))
        self.step([update, set_] if update_first else [set_, update])

    @precondition(lambda self: "sync_overlapping" not in RULES_OFF)
    @rule(
        i=STORE,
        behaviour=BEHAVIOUR,
        other=st.sampled_from(["set", "delete", "update_async", "close"]),
        key=KEY,
        sync_first=st.booleans(),
    )
    def sync_overlapping(
        self, i: int, behaviour: Behaviour, other: str, key: str, sync_first: bool
    ) -> None:
        """sync() at the same time as a write of the same store, or as its close()."""
        i = self._store(i)
        sync_call: tuple[int, Op] = (i, Sync(behaviour))
        if other == "close":
            self.step([sync_call, (i, Close())], reopen={})
            return
        other_call = (i, self._simple(other, key))
        self.step([sync_call, other_call] if sync_first else [other_call, sync_call])

    # ---------------------------------------------------------------- the end

    def teardown(self) -> None:
        try:
            if self.started and not self.failed:
                # Closing syncs: what every store acknowledged must now be in storage.
                for i in range(len(self.stores)):
                    if self.step([(i, Close())])[0][0] == "ok":
                        continue
                    self.step([(i, Discard())])
                    self.step([(i, Close())])
        finally:
            self._cleanup()

    def _cleanup(self) -> None:
        if self.loop.is_closed():
            return
        if DEBUG and isinstance(self.backend, AzuriteBackend) and self.backend.proxy is not None:
            print(f"fault proxy: {dict(self.backend.proxy.counts)}")

        async def close_all() -> None:
            for store in self.stores:
                try:
                    store.discard_changes()
                    await asyncio.wait_for(store.close(), 10)
                except (AsyncBlobDictError, asyncio.TimeoutError):
                    pass
            await self.backend.stop()

        try:
            if self.started:
                self.loop.run_until_complete(close_all())
        finally:
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            self.loop.close()


# ------------------------------------------------------------------------------ the tests

BACKENDS = [
    "memory",
    "local",
    pytest.param("azurite", marks=pytest.mark.azure),
    pytest.param("azurite_faults", marks=pytest.mark.azure),
]


@pytest.mark.parametrize("kind", BACKENDS)
def test_store_model(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    """Random call sequences on several stores agree with the model of the contract."""
    server: Azurite | None = None
    if kind.startswith("azurite"):
        server = request.getfixturevalue("azurite")

    def make_backend() -> Backend:
        if kind == "memory":
            return MemoryBackend()
        if kind == "local":
            return LocalBackend(tmp_path)
        assert server is not None
        return AzuriteBackend(server, faults=kind == "azurite_faults")

    class Machine(StoreMachine):
        def __init__(self) -> None:
            super().__init__(make_backend)

    Machine.__name__ = Machine.__qualname__ = f"StoreMachine_{kind}"
    run_seed = int(os.environ.get("ABD_STATEFUL_SEED") or random.randrange(2**32))
    seeded = seed(run_seed)(Machine)
    try:
        run_state_machine_as_test(
            seeded,
            settings=settings(
                max_examples=EXAMPLES[kind],
                stateful_step_count=STEPS,
                deadline=None,
                suppress_health_check=list(HealthCheck),
                print_blob=True,
                phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink],
            ),
        )
    except BaseException:
        print(f"\nreplay this run with ABD_STATEFUL_SEED={run_seed} (backend {kind})")
        raise
