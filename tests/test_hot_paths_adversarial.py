"""Adversarial tests of the hot paths: the marshal copy of cached JSON, store writes handing
their outcome to a waiter, I/O threads started on demand, and the local adapter's mtime marks
that say where a record went (benchmarks/hot_paths.py measures what these buy).

Each test that found a defect says so; the others assert what the new code could get wrong.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import threading
import uuid
from pathlib import Path
from typing import Any

import pytest

from asyncblobdict import AsyncBlobStore, MemoryAdapter, StorageError
from asyncblobdict.adapters._io_worker import IOWorker
from tests.test_local_adapter import quoted_md5, round_mtimes, sidecars


class _Counting(MemoryAdapter):
    """A memory adapter that counts the reads reaching it."""

    def __init__(self) -> None:
        super().__init__()
        self.gets = 0

    async def get(self, container: str, key: str) -> Any:
        self.gets += 1
        return await super().get(container, key)


# -- 1: the marshal copy of cached JSON ----------------------------------------------------


async def test_a_value_that_fits_the_cache_stays_cached_when_its_copy_would_not_fit() -> None:
    # Defect: the first hit kept the copy, which pushed the entry over cache_max_bytes and
    # evicted the entry itself; every later read went to storage (none did before the copy).
    adapter = _Counting()
    store = AsyncBlobStore(adapter, "c", "write_through", cache_max_bytes=40)
    await store.set_json("k", "x" * 30)  # 32 bytes of JSON: fits; with its copy it would not
    for _ in range(5):
        assert await store.get_json("k") == "x" * 30
    assert adapter.gets == 0
    assert store._table.total_bytes <= 40
    await store.close()


async def test_a_copy_never_evicts_its_own_entry_beside_pending_changes() -> None:
    # The same defect when pending write-back bytes (never evicted) fill most of the bound.
    adapter = _Counting()
    writer = AsyncBlobStore(adapter, "c")
    await writer.set_json("k", "x" * 30)
    store = AsyncBlobStore(adapter, "c", "write_back", cache_max_bytes=100)
    await store.set_json("p", "y" * 58)  # 60 pending bytes
    assert await store.get_json("k") == "x" * 30  # read once: 32 cached bytes
    for _ in range(5):
        assert await store.get_json("k") == "x" * 30
    assert adapter.gets == 1
    assert store._table.total_bytes <= 100
    await store.sync()
    await store.close()


async def test_a_pending_change_makes_room_in_the_cache_at_once() -> None:
    # Defect (older than the copy; found by the model test below): a write-back change
    # counted toward cache_max_bytes but evicted nothing, so idle values stayed cached past
    # the bound until some later read or sync.
    store = AsyncBlobStore(MemoryAdapter(), "c", "write_back", cache_max_bytes=40)
    await store.set_json("b", "y" * 20)  # 22 bytes
    await store.sync()
    await store.set_binary("a", b"z" * 30)  # 30 pending bytes: b must go
    assert store._table.total_bytes <= 40
    b = store._table.peek("b")
    assert b is None or b.data is None
    assert await store.get_json("b") == "y" * 20  # still in storage
    await store.sync()
    await store.close()


# -- 2: store writes hand their outcome to a waiter ----------------------------------------


class _Abort(BaseException):
    """A BaseException that is neither CancelledError nor KeyboardInterrupt/SystemExit
    (as pytest's own outcomes, or another framework's cancellation, are)."""


class _Raising(MemoryAdapter):
    """Raises ``error`` from put while it is set; ``gate`` set: waits for it first."""

    def __init__(self) -> None:
        super().__init__()
        self.error: BaseException | None = None
        self.gate: asyncio.Event | None = None

    async def put(self, container: str, key: str, data: bytes, **kw: Any) -> str:
        if self.gate is not None:
            await self.gate.wait()
        if self.error is not None:
            raise self.error
        return await super().put(container, key, data, **kw)


async def _settle(task: asyncio.Future[Any], steps: int = 50) -> None:
    """Let the loop run until ``task`` is done, a bounded number of steps (the memory
    adapter needs a handful): a task still pending after them is stuck for good."""
    for _ in range(steps):
        if task.done():
            return
        await asyncio.sleep(0)


async def test_an_adapter_raising_a_base_exception_reaches_the_caller_and_frees_the_key() -> None:
    # Defect: the write task let a BaseException that is not an Exception end the task
    # without telling the waiter: the caller waited forever, holding the key (asyncio.shield,
    # used before, passed it on), and the next operation on the key hung too.
    adapter = _Raising()
    store = AsyncBlobStore(adapter, "c", "write_through")
    adapter.error = _Abort("aborted")
    first = asyncio.ensure_future(store.set_json("k", 1))
    await _settle(first)
    assert first.done()
    with pytest.raises(_Abort):
        first.result()
    adapter.error = None
    second = asyncio.ensure_future(store.set_json("k", 2))
    await _settle(second)
    assert second.done() and second.result() is None
    assert await store.get_json("k") == 2
    await store.close()


async def test_a_failed_write_whose_caller_is_cancelled_as_it_fails_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Defect: the write failed and handed its error to the waiter; the caller, cancelled
    # before it resumed, raised CancelledError and the failure went nowhere (a caller
    # cancelled while the write runs has it logged).
    adapter = _Raising()
    store = AsyncBlobStore(adapter, "c")
    adapter.gate = asyncio.Event()
    adapter.error = StorageError("the disk is on fire", container="c", key="k")
    caller = asyncio.ensure_future(store.set_json("k", 1))
    for _ in range(5):
        await asyncio.sleep(0)  # the write waits at the gate
    assert not caller.done()
    with caplog.at_level(logging.WARNING, logger="asyncblobdict"):
        adapter.gate.set()
        await asyncio.sleep(0)  # the write task fails and hands the error to the waiter
        caller.cancel()  # before the caller resumed
        with pytest.raises(asyncio.CancelledError):
            await caller
    assert any("the disk is on fire" in r.getMessage() for r in caplog.records)
    adapter.gate = None
    adapter.error = None
    await store.set_json("k", 2)  # the key was released
    assert await store.get_json("k") == 2
    await store.close()


# -- 3: I/O threads start on demand --------------------------------------------------------


async def test_a_job_whose_thread_could_not_start_never_runs_later_and_close_returns(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Defect: run() queued the job, then failed to start the thread it needed and raised;
    # the job stayed queued and ran with the next job (a write its caller was told had
    # failed), and close() waited forever for the thread that never started.
    name = "hostile-" + uuid.uuid4().hex[:8]
    start = threading.Thread.start
    failures = [1]

    def failing_start(thread: threading.Thread) -> None:
        if thread.name.startswith(name) and failures[0]:
            failures[0] -= 1
            raise RuntimeError("can't start new thread")
        start(thread)

    monkeypatch.setattr(threading.Thread, "start", failing_start)
    worker = IOWorker(2, name=name)
    ran: list[str] = []
    with pytest.raises(RuntimeError):
        worker.run(ran.append, "refused")
    await worker.run(ran.append, "next")
    assert ran == ["next"]
    # A hang detector, not a timing assertion: close() ends in microseconds or never.
    await asyncio.wait_for(worker.close(), timeout=30)
    assert ran == ["next"]


async def test_a_thread_that_cannot_start_beside_running_ones_leaves_the_job_to_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    name = "hostile-" + uuid.uuid4().hex[:8]
    start = threading.Thread.start

    def second_fails(thread: threading.Thread) -> None:
        if thread.name == f"{name}-1":
            raise RuntimeError("can't start new thread")
        start(thread)

    monkeypatch.setattr(threading.Thread, "start", second_fails)
    worker = IOWorker(2, name=name)
    release = threading.Event()
    busy = worker.run(release.wait, 30)  # holds the one thread that starts
    queued = worker.run(lambda: "ran")  # its thread cannot start: it waits for the first
    assert not queued.done()
    release.set()
    assert await busy is True
    assert await queued == "ran"
    await asyncio.wait_for(worker.close(), timeout=30)  # a hang detector, as above


# -- 1 (held): the copy against a model, over every operation that changes a key --------------

_RAW_JSON = [
    b'{"a": NaN, "b": Infinity, "c": -Infinity, "d": -0.0}',
    b"[1e400, -1e400, 1E-400]",
    b"123456789012345678901234567890123456789012345678901234567890",
    b'"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"',
    b'"\\u00e9\\ud83d\\ude00"',
    b'{"_bdtype_": "set", "items": [1, 2]}',
    b'{"\\u005fbdtype_": "tuple", "items": [1, 2]}',
    b'{"a": 1, "a": 2, "b": [true, false, null]}',
    b"[" * 300 + b"]" * 300,
    b'{"k": "\\"quoted\\" \\\\ \\/ \\n"}',
    b"1.0",
    b"1",
    b"not json",
    b"",
]


def _same_nan(a: Any, b: Any) -> bool:
    """``same`` (exact types all the way down), where NaN equals NaN."""
    from tests.test_codec import same

    if type(a) is float and type(b) is float and math.isnan(a) and math.isnan(b):
        return True
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same_nan(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same_nan(x, y) for x, y in zip(a, b, strict=True))
    return same(a, b)


def _check_table(store: AsyncBlobStore) -> None:
    import marshal

    from asyncblobdict import codec

    table = store._table
    states = list(table._states.values())
    assert table.total_bytes == sum(s.size + len(s.copy or b"") for s in states)
    for state in states:
        assert state.data is not None or state.copy is None
        if state.copy:
            assert _same_nan(marshal.loads(state.copy), codec.decode(state.data or b""))
    if table.max_bytes is not None and table._values:
        assert table.total_bytes <= table.max_bytes


def _ops() -> Any:
    from hypothesis import strategies as st

    from tests.test_codec import values as codec_values

    keys = st.sampled_from(["a", "b", "c/d"])
    return st.lists(
        st.one_of(
            st.tuples(st.just("set_json"), keys, codec_values),
            st.tuples(st.just("set_binary"), keys, st.sampled_from(_RAW_JSON)),
            st.tuples(st.just("get_json"), keys, st.none()),
            st.tuples(st.just("get_binary"), keys, st.none()),
            st.tuples(st.just("delete"), keys, st.none()),
            st.tuples(st.just("update"), keys, st.none()),
            st.tuples(st.just("discard"), keys, st.none()),
            st.tuples(st.just("sync"), keys, st.none()),
            st.tuples(st.just("ttl"), keys, st.sampled_from(["x", [1, 2], {"y": 1.5}])),
            st.tuples(st.just("tick"), keys, st.none()),
            st.tuples(st.just("other_writer"), keys, st.sampled_from(_RAW_JSON)),
        ),
        max_size=40,
    )


def _cache_model_test() -> Any:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from asyncblobdict import BlobNotFoundError, SerializationError, codec

    @settings(max_examples=250, deadline=None, suppress_health_check=list(HealthCheck))
    @given(
        ops=_ops(),
        mode=st.sampled_from(["write_through", "write_back"]),
        max_bytes=st.sampled_from([0, 40, 120, 400, None]),
        etag_memory=st.sampled_from([None, 0, 1, 2]),
    )
    def test(
        ops: list[tuple[str, str, Any]], mode: str, max_bytes: int | None, etag_memory: int | None
    ) -> None:
        # etag_memory None: no ETAG mode; else ETAG mode remembering that many keys (then
        # no other writer: this store's writes would rightly conflict with it).
        async def main() -> None:
            now = [1_000_000.0]
            adapter = MemoryAdapter()
            store = AsyncBlobStore(
                adapter,
                "c",
                mode,
                "none" if etag_memory is None else "etag",
                cache_max_bytes=max_bytes,
                etag_memory=etag_memory,
                clock=lambda: now[0],
            )
            other = AsyncBlobStore(adapter, "c")
            # What this store must read: its own view (pending changes included).
            model: dict[str, tuple[bytes, float | None]] = {}
            stored: dict[str, tuple[bytes, float | None]] = {}  # what storage holds
            # Keys another writer changed: (what this store may still have cached, new).
            either: dict[str, tuple[bytes | None, bytes]] = {}

            def view(key: str) -> bytes | None:
                entry = model.get(key)
                if entry is None or (entry[1] is not None and entry[1] <= now[0]):
                    return None
                return entry[0]

            for op, key, arg in ops:
                if op in ("set_json", "set_binary", "ttl", "delete", "update"):
                    either.pop(key, None)
                if op == "set_json":
                    data = codec.encode(arg)
                    await store.set_json(key, arg)
                    model[key] = (data, None)
                elif op == "set_binary" or op == "other_writer":
                    if op == "other_writer":
                        if etag_memory is not None:
                            continue
                        if mode == "write_back" and key in store.dirty_keys():
                            continue  # the store's pending change wins at sync
                        await other.set_binary(key, arg)
                        # This store may read its cached bytes until they are evicted or
                        # expire (the cache's promise), then the new ones: either may come.
                        earlier = either.get(key)
                        either[key] = (view(key) if earlier is None else earlier[0], arg)
                        model[key] = stored[key] = (arg, None)
                        continue
                    await store.set_binary(key, arg)
                    model[key] = (arg, None)
                elif op == "ttl":
                    data = codec.encode(arg)
                    await store.set_json(key, arg, ttl=10)
                    model[key] = (data, now[0] + 10)
                elif op == "tick":
                    now[0] += 6
                elif op == "delete":
                    await store.delete(key)
                    model.pop(key, None)
                elif op == "discard":
                    if key in store.dirty_keys():
                        either.pop(key, None)
                        store.discard_changes(key)
                        if key in stored:
                            model[key] = stored[key]
                        else:
                            model.pop(key, None)
                elif op == "sync":
                    await store.sync()
                    stored = dict(model)
                elif op == "update":
                    expected = view(key)
                    try:
                        current = codec.decode(expected) if expected is not None else None
                    except SerializationError:
                        current = None
                    if not isinstance(current, list):
                        continue
                    new = await store.update_json(key, lambda v: [*v, "u"])
                    assert _same_nan(new, [*current, "u"])
                    entry = model[key]
                    model[key] = (codec.encode([*current, "u"]), entry[1])
                elif op in ("get_json", "get_binary"):
                    expected = view(key)
                    if key in either:
                        # Which one comes is the cache's business; then it stays so.
                        old, new_bytes = either[key]
                        try:
                            seen: bytes | None = await store.get_binary(key)
                        except BlobNotFoundError:
                            seen = None
                        assert seen in (old, new_bytes), (seen, old, new_bytes)
                        if seen == new_bytes:
                            del either[key]
                        expected = seen
                    for _ in range(2):
                        if expected is None:
                            with pytest.raises(BlobNotFoundError):
                                await getattr(store, op)(key)
                            continue
                        if op == "get_binary":
                            assert await store.get_binary(key) == expected
                            continue
                        try:
                            want = codec.decode(expected)
                        except SerializationError:
                            with pytest.raises(SerializationError):
                                await store.get_json(key)
                            continue
                        got = await store.get_json(key)
                        assert _same_nan(got, want), (key, got, want)
                        if isinstance(got, list):
                            got.append("mutated")  # the next hit is a fresh copy
                        elif isinstance(got, dict):
                            got["mutated"] = True
                if mode == "write_through" and op not in ("get_json", "get_binary"):
                    stored = dict(model)
                _check_table(store)
            store.discard_changes()
            await store.close()
            await other.close()

        asyncio.run(main())

    return test


test_cache_hits_match_a_model_of_every_change = _cache_model_test()


# -- 2 (held): cancel a write at every step, once or twice -----------------------------------


class _Steps(MemoryAdapter):
    """A memory adapter whose put and delete take a few loop steps before and after landing."""

    async def put(self, container: str, key: str, data: bytes, **kw: Any) -> str:
        for _ in range(3):
            await asyncio.sleep(0)
        etag = await super().put(container, key, data, **kw)
        for _ in range(3):
            await asyncio.sleep(0)
        return etag

    async def delete(self, container: str, key: str, **kw: Any) -> None:
        for _ in range(2):
            await asyncio.sleep(0)
        await super().delete(container, key, **kw)
        await asyncio.sleep(0)


@pytest.mark.parametrize("twice", [False, True])
@pytest.mark.parametrize("cache_mode", ["none", "write_through"])
async def test_a_write_cancelled_at_any_step_keeps_the_store_consistent(
    tmp_path: Path, cache_mode: str, twice: bool
) -> None:
    import gc

    from asyncblobdict import LocalFileAdapter

    loop = asyncio.get_running_loop()
    reported: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: reported.append(context))
    for adapter in (_Steps(), LocalFileAdapter(tmp_path)):
        store = AsyncBlobStore(adapter, "c", cache_mode, "etag")
        await store.set_json("k", 0)
        for step in range(14):
            for operation in ("set", "delete", "update"):
                if operation == "set":
                    call = store.set_json("k", step)
                elif operation == "delete":
                    call = store.delete("k")
                else:
                    call = store.update_json("k", lambda v: [v, "updated"], default=0)
                task = asyncio.ensure_future(call)
                for _ in range(step):
                    await asyncio.sleep(0)
                task.cancel()
                if twice:
                    await asyncio.sleep(0)
                    task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
                # The key is free again (a detached write releases it when it ends), the
                # store's remembered version is its own write's, and the cache agrees with
                # storage: the next conditional write passes and reads see it.
                await store.set_json("k", ["after", step, operation])
                assert await store.get_json("k") == ["after", step, operation]
                fresh = AsyncBlobStore(adapter, "c", owns_adapter=False)
                assert await fresh.get_json("k") == ["after", step, operation]
                await fresh.close()
        await store.close()
    gc.collect()
    await asyncio.sleep(0)
    assert reported == []


@pytest.mark.parametrize("cache_mode", ["none", "write_back"])
async def test_close_waits_for_a_detached_write_before_closing_the_adapter(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cache_mode: str
) -> None:
    from asyncblobdict import LocalFileAdapter

    adapter = LocalFileAdapter(tmp_path)
    store = AsyncBlobStore(adapter, "c", cache_mode, "etag")
    await store.set_json("k", 1)
    await store.sync()
    release = threading.Event()
    put = adapter._put_sync

    def slow_put(*args: Any) -> str:
        release.wait(30)
        return put(*args)

    monkeypatch.setattr(adapter, "_put_sync", slow_put)
    write: asyncio.Future[Any]
    if cache_mode == "write_back":
        await store.set_json("k", 2)  # pending: the sync writes it
        write = asyncio.ensure_future(store.sync())
    else:
        write = asyncio.ensure_future(store.set_json("k", 2))
    for _ in range(5):
        await asyncio.sleep(0)  # the job is in an I/O thread, held there
    write.cancel()
    with pytest.raises(asyncio.CancelledError):
        await write
    closing = asyncio.ensure_future(store.close())
    for _ in range(5):
        await asyncio.sleep(0)
    assert not closing.done()  # the detached write still holds its key
    release.set()
    await closing
    monkeypatch.undo()
    async with AsyncBlobStore(LocalFileAdapter(tmp_path), "c") as reader:
        assert await reader.get_json("k") == 2


# -- 4: local writes: marks that say where the record went -----------------------------------


@pytest.mark.parametrize("granularity_ns", [1, 2, 1000, 1_000_000_000])
@pytest.mark.parametrize("store", ["auto", "sidecar"])
async def test_records_stay_right_and_sidecars_go_whatever_the_mtime_granularity(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, store: str, granularity_ns: int
) -> None:
    import os

    from asyncblobdict import LocalFileAdapter
    from asyncblobdict.adapters import local as local_module

    round_mtimes(monkeypatch, granularity_ns)
    a = LocalFileAdapter(tmp_path, _metadata_store=store)  # type: ignore[arg-type]
    big = local_module.SMALL_VALUE_BYTES * 4
    for i in range(6):
        data = bytes([65 + i]) * (big if i % 2 else 10)
        etag = await a.put("c", "k", data, content_type=f"t/{i}", metadata={"i": str(i)})
        assert etag == quoted_md5(data)
        got, info = await a.get("c", "k")
        assert got == data and info.etag == etag
        assert (info.content_type, dict(info.metadata)) == (f"t/{i}", {"i": str(i)})
        assert len(sidecars(tmp_path)) <= (1 if store == "sidecar" else 0)
    # Changed in place by another program (same size), its mtime then set back to what the
    # filesystem kept: where that is not the exact (odd) mark, the record proves nothing
    # and the ETag follows the bytes. (A program restoring an exact mark is the documented
    # limit of the proof.)
    path = tmp_path / "c" / "k"
    st = path.stat()
    changed = b"Z" * st.st_size
    with open(path, "r+b") as f:
        f.write(changed)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    if granularity_ns > 1:
        info2 = await a.head("c", "k")
        assert info2 is not None and info2.etag == quoted_md5(changed)
    await a.delete("c", "k")
    assert sidecars(tmp_path) == []
    await a.close()


async def test_mixed_adapters_alternating_on_one_key_never_mix_records(tmp_path: Path) -> None:
    from asyncblobdict import LocalFileAdapter
    from asyncblobdict.adapters import local as local_module

    auto = LocalFileAdapter(tmp_path)
    side = LocalFileAdapter(tmp_path, _metadata_store="sidecar")
    huge_meta = {f"m{i}": "v" * 200 for i in range(30)}  # too big for an ext4 attribute
    big = local_module.SMALL_VALUE_BYTES * 4
    for i in range(12):
        writer = (auto, side)[i % 2]
        meta = huge_meta if i % 3 == 0 else {"i": str(i)}
        data = bytes([97 + i]) * (big if i % 4 < 2 else 7)
        etag = await writer.put("c", "k", data, content_type=f"t/{i}", metadata=meta)
        for reader in (auto, side):
            got, info = await reader.get("c", "k")
            assert got == data and info.etag == etag == quoted_md5(data)
            assert (info.content_type, dict(info.metadata)) == (f"t/{i}", meta)
            head = await reader.head("c", "k")
            assert head is not None and head.etag == etag and dict(head.metadata) == meta
        assert len(sidecars(tmp_path)) <= 1  # never an orphan beside the live one
    await side.delete("c", "k")
    assert sidecars(tmp_path) == []
    await auto.close()
    await side.close()


async def test_a_mark_assumed_kept_on_a_rounding_filesystem_proves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Once one write saw its mark kept exactly, later writes skip the fstat and record the
    # mark as kept. A later write that lands where mtimes are rounded (a mount inside the
    # root) then records a mark the file does not have: it must prove nothing.
    import os

    from asyncblobdict import LocalFileAdapter
    from asyncblobdict.adapters import local as local_module

    a = LocalFileAdapter(tmp_path)
    await a.put("c", "first", b"x")
    assert a._mark_kept
    round_mtimes(monkeypatch, 1000)
    data = b"A" * (local_module.SMALL_VALUE_BYTES * 4)
    await a.put("c", "k", data, content_type="t/a", metadata={"v": "1"})
    path = tmp_path / "c" / "k"
    st = path.stat()
    changed = b"B" * len(data)
    with open(path, "r+b") as f:
        f.write(changed)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    got, info = await a.get("c", "k")
    assert got == changed and info.etag == quoted_md5(changed)
    assert (info.content_type, dict(info.metadata)) == ("t/a", {"v": "1"})
    await a.close()


async def test_a_forked_child_gets_threads_of_its_own(tmp_path: Path) -> None:
    import os
    import warnings

    from asyncblobdict import LocalFileAdapter

    a = LocalFileAdapter(tmp_path, durable=False, io_threads=2)
    await asyncio.gather(*(a.put("c", f"k{i}", b"parent") for i in range(8)))  # threads run
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads (3.12+)
        pid = os.fork()
    if pid == 0:
        code = 1
        try:

            async def child() -> None:
                await asyncio.gather(*(a.put("c", f"k{i}", b"child") for i in range(8)))
                for i in range(8):
                    assert (await a.get("c", f"k{i}"))[0] == b"child"
                await a.close()

            # A thread of its own: this one still has the parent's running loop set.
            done: list[bool] = []

            def run_child() -> None:
                try:
                    asyncio.run(child())
                    done.append(True)
                except BaseException:
                    import traceback

                    traceback.print_exc()

            t = threading.Thread(target=run_child)
            t.start()
            t.join(30)
            code = 0 if done == [True] else 2
        finally:
            os._exit(code)
    status = None
    for _ in range(3000):  # a hang detector: the child ends in milliseconds or never
        finished, status = os.waitpid(pid, os.WNOHANG)
        if finished:
            break
        await asyncio.sleep(0.01)
    else:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        pytest.fail("the forked child hung")
    assert os.waitstatus_to_exitcode(status) == 0
    assert (await a.get("c", "k0"))[0] == b"child"
    await a.close()


async def test_conditional_writes_of_many_adapters_in_threads_lose_no_update(
    tmp_path: Path,
) -> None:
    from asyncblobdict import LocalFileAdapter

    async def bump(n: int) -> None:
        async with AsyncBlobStore(LocalFileAdapter(tmp_path, durable=False), "c") as store:
            for _ in range(n):
                await store.update_json("counter", lambda v: v + 1, default=0)

    def in_own_loop() -> None:
        asyncio.run(bump(25))

    threads = [threading.Thread(target=in_own_loop) for _ in range(3)]
    for t in threads:
        t.start()
    await bump(25)
    for t in threads:
        await asyncio.to_thread(t.join, 60)
    async with AsyncBlobStore(LocalFileAdapter(tmp_path), "c") as store:
        assert await store.get_json("counter") == 100


async def test_a_copy_made_while_another_key_is_being_written_keeps_the_table_whole() -> None:
    # A hit can run while another key's write has landed but its caller has not resumed:
    # that key holds a new ETag, over etag_memory, and is not idle. Making room for the
    # hit's copy must not leave the table naming a key it has forgotten (an eviction
    # would then raise KeyError) or count bytes twice.
    landed = asyncio.Event()

    class Signalling(MemoryAdapter):
        async def put(self, container: str, key: str, data: bytes, **kw: Any) -> str:
            etag = await super().put(container, key, data, **kw)
            if key == "b":
                landed.set()  # wakes the reader before the writer's caller resumes
            return etag

    store = AsyncBlobStore(
        Signalling(), "c", "write_through", "etag", cache_max_bytes=40, etag_memory=1
    )
    await store.set_json("a", "x" * 30)  # 32 bytes: fits; with its copy it does not

    async def reader() -> Any:
        await landed.wait()
        return await store.get_json("a")

    read = asyncio.ensure_future(reader())
    await store.set_json("b", 1)
    assert await read == "x" * 30
    table = store._table
    assert set(table._values) <= set(table._states)
    assert table.total_bytes == sum(s.size + len(s.copy or b"") for s in table._states.values())
    for i in range(5):  # evictions go on working
        await store.set_json(f"k{i}", "y" * 20)
        assert await store.get_json(f"k{i}") == "y" * 20
    assert await store.get_json("a") == "x" * 30
    await store.close()


async def test_a_job_sent_as_another_thread_closes_the_pool_still_runs() -> None:
    # Defect (older than the on-demand threads): run() took the pool, close() ran in another
    # thread's loop (stopping every thread), and the job went into the closed pool's queue
    # behind the stop marks, where no thread would ever take it: its caller waited forever.
    worker = IOWorker(1, name="hostile-" + uuid.uuid4().hex[:8])
    await worker.run(lambda: None)  # one thread, and one idle token
    pool = worker._pool
    assert pool is not None
    closed = threading.Event()

    class ClosingFirst:
        """The pool's idle semaphore, but the first look at it lets another thread close."""

        def __init__(self, inner: threading.Semaphore) -> None:
            self.inner = inner

        def acquire(self, blocking: bool = True) -> bool:
            if not closed.is_set():
                other = threading.Thread(target=lambda: asyncio.run(worker.close()))
                other.start()
                other.join(30)
                closed.set()
            return self.inner.acquire(blocking)

        def release(self) -> None:
            self.inner.release()

    pool.idle = ClosingFirst(pool.idle)  # type: ignore[assignment]
    job = worker.run(lambda: "ran")
    assert closed.is_set()
    assert await asyncio.wait_for(job, timeout=30) == "ran"  # a hang detector
    await worker.close()


def test_a_write_task_destroyed_with_its_loop_raises_nothing_more(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A loop closed (without cancelling its tasks) while a write is in flight: its task is
    # destroyed (asyncio says so). The write task must then not try to hand anything to
    # the closed loop (it did, once it handed every BaseException on: an unraisable
    # RuntimeError "Event loop is closed" from the coroutine's close).
    import gc
    import sys

    unraisable: list[Any] = []
    monkeypatch.setattr(sys, "unraisablehook", unraisable.append)

    class Hanging(MemoryAdapter):
        async def put(self, container: str, key: str, data: bytes, **kw: Any) -> str:
            await asyncio.Event().wait()
            raise AssertionError("never reached")

    loop = asyncio.new_event_loop()
    store = AsyncBlobStore(Hanging(), "c")
    task = loop.create_task(store.set_json("k", 1))
    loop.run_until_complete(asyncio.sleep(0.01))
    loop.close()
    del task, store
    with contextlib.suppress(Exception):
        gc.collect()
    assert [u.exc_value for u in unraisable] == []
