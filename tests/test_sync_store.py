"""BlobStore: the synchronous store on its private loop, on memory and local storage.

Covers every method, calls from inside a running event loop (as in Jupyter), calls from eight
threads at once, errors keeping their type, closing, and a store dropped without close().
"""

from __future__ import annotations

import asyncio
import inspect
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import pytest

from asyncblobdict import (
    AsyncBlobDictError,
    AsyncBlobStore,
    BlobNotFoundError,
    BlobStore,
    ConcurrencyError,
    InvalidKeyError,
    LocalFileAdapter,
    MemoryAdapter,
    SerializationError,
    TypeRegistry,
)
from asyncblobdict import sync_store as sync_store_module
from asyncblobdict.adapters.base import Adapter

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(params=["memory", "local"])
def make_adapter(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], Adapter]:
    """A factory of adapters that all see the same storage (the memory one is shared)."""
    if request.param == "memory":
        shared = MemoryAdapter()
        return lambda: shared
    return lambda: LocalFileAdapter(tmp_path / "store")


def open_store(make_adapter: Callable[[], Adapter], *args: Any, **kwargs: Any) -> BlobStore:
    # The memory adapter is shared by the test's stores, so none of them may close it.
    return BlobStore(make_adapter(), "box", *args, owns_adapter=False, **kwargs)


def store_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name.startswith("asyncblobdict-BlobStore")}


@dataclass
class Point:
    x: int
    y: int


def test_every_method(make_adapter: Callable[[], Adapter]) -> None:
    with open_store(make_adapter, "write_through", "etag", types=TypeRegistry(Point)) as s:
        s.set_json("cfg/app", {"debug": False}, metadata={"Owner": "ops"})
        s.set_binary("img/logo.png", b"\x89PNG", content_type="image/png")
        s.set_json("cfg/db/main", Point(1, 2))
        assert s.get_json("cfg/app") == {"debug": False}
        assert s.get_json("cfg/db/main") == Point(1, 2)  # the store's registry is used
        assert s.get_binary("img/logo.png") == b"\x89PNG"
        assert s.get_binary("cfg/app") == b'{"debug":false}'
        info = s.info("img/logo.png")
        assert info is not None and info.content_type == "image/png" and info.size == 4
        assert dict(s.info("cfg/app").metadata) == {"owner": "ops"}  # type: ignore[union-attr]
        assert s.info("nothing") is None
        assert s.exists("cfg/app") and not s.exists("nothing")
        assert s.list_keys() == ["cfg/app", "cfg/db/main", "img/logo.png"]
        assert s.list_keys("cfg/", delimiter="/") == ["cfg/app", "cfg/db/"]
        names = s.iter_keys("cfg/")
        assert isinstance(names, Iterator)
        assert sorted(names) == ["cfg/app", "cfg/db/main"]
        assert s.update_json("n", lambda n: n + 1, default=0) == 1
        assert s.update_json("n", lambda n: n + 1) == 2
        s.delete("img/logo.png")
        s.delete("img/logo.png")  # a missing key is a no-op
        assert not s.exists("img/logo.png")
        assert s.dirty_keys() == []
        assert s.cache_mode.name == "WRITE_THROUGH" and s.container_name == "box"
        assert repr(s).startswith("BlobStore(") and "WRITE_THROUGH" in repr(s)
    with open_store(make_adapter) as again:  # it was all stored
        assert again.get_json("n") == 2
        assert again.list_keys() == ["cfg/app", "cfg/db/main", "n"]


def test_write_back_sync_discard_and_close(make_adapter: Callable[[], Adapter]) -> None:
    s = open_store(make_adapter, "write_back")
    s.set_json("a", 1)
    s.set_json("b", 2)
    s.delete("b")
    assert s.dirty_keys() == ["a", "b"]
    assert s.sync().written == ["a"]
    s.set_json("c", 3)
    s.set_json("d", 4)
    s.discard_changes("c")
    assert s.dirty_keys() == ["d"]
    s.close()  # syncs "d"
    s.close()
    with open_store(make_adapter) as reader:
        assert reader.list_keys() == ["a", "d"]


def test_leaving_with_syncs_and_a_failed_close_keeps_the_changes(
    make_adapter: Callable[[], Adapter],
) -> None:
    with open_store(make_adapter) as other:
        other.set_json("k", "first")
        s = open_store(make_adapter, "write_back", "etag")
        assert s.get_json("k") == "first"
        s.set_json("k", "mine")
        other.set_json("k", "theirs")  # changed since s read it
        with pytest.raises(ConcurrencyError), s:
            pass
        assert s.dirty_keys() == ["k"]  # still open, change kept
        s.discard_changes()
        s.close()
        assert other.get_json("k") == "theirs"


def test_calls_from_inside_a_running_loop(make_adapter: Callable[[], Adapter]) -> None:
    """As in Jupyter: the calling thread runs an event loop and blocks in a sync call."""

    async def main() -> list[Any]:
        with open_store(make_adapter) as s:
            s.set_json("a", [1])
            await asyncio.sleep(0)  # the caller's loop keeps working between calls
            s.update_json("a", lambda v: [*v, 2])
            return [s.get_json("a"), list(s.iter_keys()), s.exists("a")]

    assert asyncio.run(main()) == [[1, 2], ["a"], True]


async def test_calls_from_an_async_test(make_adapter: Callable[[], Adapter]) -> None:
    s = open_store(make_adapter)
    s.set_json("x", {"n": 1})
    assert s.get_json("x") == {"n": 1}
    s.close()


@pytest.mark.parametrize("concurrency", ["none", "etag"])
def test_eight_threads_at_once(make_adapter: Callable[[], Adapter], concurrency: str) -> None:
    threads, increments = 8, 50
    start = threading.Barrier(threads)
    errors: list[BaseException] = []

    with open_store(make_adapter, "write_through", concurrency) as s:

        def work(i: int) -> None:
            try:
                start.wait()
                for _ in range(increments):
                    s.update_json("shared", lambda n: n + 1, default=0)
                    s.update_json(f"own/{i}", lambda n: n + 1, default=0)
                    s.get_json("shared")
                    s.list_keys("own/")
            except BaseException as exc:
                errors.append(exc)

        workers = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
        for t in workers:
            t.start()
        for t in workers:
            t.join()
        assert errors == []
        assert s.get_json("shared") == threads * increments
        assert [s.get_json(f"own/{i}") for i in range(threads)] == [increments] * threads


def test_eight_stores_in_eight_threads_on_one_folder(tmp_path: Path) -> None:
    """Each thread its own store and loop: update_json resolves the conflicts in storage."""
    threads, increments = 8, 50
    start = threading.Barrier(threads)
    errors: list[BaseException] = []

    def work() -> None:
        try:
            with BlobStore(LocalFileAdapter(tmp_path), "box", concurrency_mode="etag") as s:
                start.wait()
                for _ in range(increments):
                    s.update_json("n", lambda n: n + 1, default=0)
        except BaseException as exc:
            errors.append(exc)

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    assert errors == []
    with BlobStore(LocalFileAdapter(tmp_path), "box") as s:
        assert s.get_json("n") == threads * increments


def test_errors_keep_their_type(make_adapter: Callable[[], Adapter]) -> None:
    with open_store(make_adapter, concurrency_mode="etag") as s:
        with pytest.raises(BlobNotFoundError) as missing:
            s.get_json("nope")
        assert isinstance(missing.value, KeyError) and missing.value.key == "nope"
        with pytest.raises(BlobNotFoundError):
            s.update_json("nope", lambda v: v)
        with pytest.raises(InvalidKeyError):
            s.set_json("a/../b", 1)
        with pytest.raises(InvalidKeyError):
            next(s.iter_keys("bad\\prefix"))
        with pytest.raises(SerializationError):
            s.set_json("x", object())
        with pytest.raises(ValueError, match="etag_behavior"):
            s.sync("sometimes")

        def broken(value: Any) -> Any:
            raise LookupError("from fn")

        with pytest.raises(LookupError, match="from fn"):
            s.update_json("n", broken, default=0)
        s.set_json("k", 1)
        assert s.get_json("k") == 1
        with open_store(make_adapter) as other:
            other.set_json("k", 2)
        with pytest.raises(ConcurrencyError):
            s.set_json("k", 3)


def test_a_failed_constructor_leaves_no_thread(make_adapter: Callable[[], Adapter]) -> None:
    before = store_threads()
    with pytest.raises(ValueError):
        open_store(make_adapter, "sometimes")
    with pytest.raises(TypeError):
        BlobStore(object(), "box")  # type: ignore[arg-type]
    assert store_threads() == before


def test_use_after_close_raises(make_adapter: Callable[[], Adapter]) -> None:
    s = open_store(make_adapter)
    s.set_json("a", 1)
    thread = s._thread
    s.close()
    s.close()  # twice is fine
    assert not thread.is_alive()
    calls: list[Callable[[], Any]] = [
        lambda: s.get_json("a"),
        lambda: s.get_binary("a"),
        lambda: s.set_json("a", 2),
        lambda: s.set_binary("a", b""),
        lambda: s.delete("a"),
        lambda: s.exists("a"),
        lambda: s.info("a"),
        lambda: s.list_keys(),
        lambda: next(s.iter_keys()),
        lambda: s.update_json("a", lambda v: v),
        lambda: s.sync(),
        lambda: s.dirty_keys(),
        lambda: s.discard_changes(),
    ]
    for call in calls:
        with pytest.raises(AsyncBlobDictError, match="closed"):
            call()


def test_close_while_other_threads_call(make_adapter: Callable[[], Adapter]) -> None:
    """Every call made around close() gets an answer: its result, or "closed"."""
    s = open_store(make_adapter)
    s.set_json("a", 1)
    threads = 4
    running = threading.Barrier(threads + 1)
    outcomes: list[Any] = []

    def work() -> None:
        running.wait()
        answers = 0
        while True:
            try:
                s.get_json("a")
                answers += 1
            except AsyncBlobDictError as exc:
                outcomes.append((answers, str(exc)))
                return
            except BaseException as exc:
                outcomes.append(exc)
                return

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for t in workers:
        t.start()
    running.wait()
    s.close()
    for t in workers:
        t.join()
    assert len(outcomes) == threads
    for outcome in outcomes:
        assert isinstance(outcome, tuple) and "closed" in outcome[1], outcome


class StuckAdapter(MemoryAdapter):
    """A memory adapter whose reads of "stuck" never end unless cancelled."""

    def __init__(self) -> None:
        super().__init__()
        self.started = threading.Event()
        self.cancelled = threading.Event()

    async def get(self, container: str, key: str) -> Any:
        if key != "stuck":
            return await super().get(container, key)
        self.started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled.set()
            raise


@pytest.mark.skipif(threading.current_thread() is not threading.main_thread(), reason="signals")
def test_an_interrupted_call_is_cancelled_on_the_loop() -> None:
    """Ctrl-C in a notebook or script while a call waits: the call is cancelled too."""
    adapter = StuckAdapter()

    def interrupt() -> None:
        adapter.started.wait()
        signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGINT)

    s = BlobStore(adapter, "box")
    threading.Thread(target=interrupt).start()
    with pytest.raises(KeyboardInterrupt):
        s.get_json("stuck")
    # Not cancelled, the read would hold its key and close() would wait for it forever.
    assert adapter.cancelled.wait(60)  # a guard against a hang, not a timing
    s.set_json("a", 1)  # the store still works
    assert s.get_json("a") == 1
    s.close()


def test_calling_the_store_from_its_own_thread_raises(make_adapter: Callable[[], Adapter]) -> None:
    with open_store(make_adapter) as s:
        s.set_json("a", 1)
        with pytest.raises(AsyncBlobDictError, match="its own thread"):
            s.update_json("b", lambda v: s.get_json("a") + v, default=0)
        assert s.get_json("a") == 1 and not s.exists("b")  # and the store still works


class ListingStore(AsyncBlobStore):
    """An AsyncBlobStore that keeps its listings (so only an explicit close ends them)."""

    listings: ClassVar[list[AsyncGenerator[str, None]]] = []
    open_listings = 0

    def iter_keys(
        self, prefix: str = "", *, delimiter: str | None = None
    ) -> AsyncGenerator[str, None]:
        listing = self._counted(super().iter_keys(prefix, delimiter=delimiter))
        ListingStore.listings.append(listing)
        return listing

    async def _counted(self, names: AsyncIterator[str]) -> AsyncGenerator[str, None]:
        ListingStore.open_listings += 1
        try:
            async for name in names:
                yield name
        finally:
            ListingStore.open_listings -= 1


def test_iter_keys_in_batches_and_closed_early(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sync_store_module, "_ITER_BATCH", 3)
    monkeypatch.setattr(sync_store_module, "AsyncBlobStore", ListingStore)
    monkeypatch.setattr(ListingStore, "listings", [])
    with BlobStore(MemoryAdapter(), "box") as s:
        for i in range(10):
            s.set_json(f"k{i}", i)
        assert list(s.iter_keys()) == [f"k{i}" for i in range(10)]  # 3 + 3 + 3 + 1
        assert ListingStore.open_listings == 0
        names = s.iter_keys()
        assert [next(names) for _ in range(4)] == ["k0", "k1", "k2", "k3"]
        assert ListingStore.open_listings == 1
        names.close()
        assert ListingStore.open_listings == 0  # closed before close() returned
        assert s.list_keys()[:2] == ["k0", "k1"]


def test_same_methods_as_the_async_store() -> None:
    """Every public method of AsyncBlobStore is on BlobStore, with the same parameters."""
    for name, method in inspect.getmembers(AsyncBlobStore, inspect.isfunction):
        if name.startswith("_"):
            continue
        assert hasattr(BlobStore, name), f"BlobStore has no {name}()"
        ours = inspect.signature(getattr(BlobStore, name)).parameters
        theirs = inspect.signature(method).parameters
        assert [(p.name, p.kind, p.default) for p in ours.values()] == [
            (p.name, p.kind, p.default) for p in theirs.values()
        ], name


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    # The timeout only turns a hang (the failure looked for) into a failed test.
    return subprocess.run(
        [sys.executable, "-W", "always::ResourceWarning", "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
    )


def test_a_dropped_store_ends_its_thread_and_warns_of_lost_changes() -> None:
    out = run_python(
        """
        import gc
        from asyncblobdict import BlobStore, MemoryAdapter
        s = BlobStore(MemoryAdapter(), "box", "write_back")
        s.set_json("a", 1)
        thread = s._thread
        del s
        gc.collect()
        thread.join()
        print("thread ended")
        """
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout == "thread ended\n"
    assert "1 pending change(s) were lost" in out.stderr


def test_exit_with_an_open_store_does_not_hang_and_warns() -> None:
    out = run_python(
        """
        from asyncblobdict import BlobStore, MemoryAdapter
        store = BlobStore(MemoryAdapter(), "box", "write_back")
        store.set_json("a", 1)
        print("leaving")
        """
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout == "leaving\n"
    assert "1 pending change(s) were lost" in out.stderr
