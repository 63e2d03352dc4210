"""LocalFileAdapter on real files: layout, atomicity, locking, containment, errors, listing."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import unicodedata
import warnings
from collections.abc import AsyncIterator, Iterator
from datetime import timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from asyncblobdict import (
    BlobNotFoundError,
    ConcurrencyError,
    InvalidKeyError,
    LocalFileAdapter,
    StorageError,
)
from asyncblobdict.adapters import local as local_module
from asyncblobdict.adapters.base import (
    CREATE,
    OVERWRITE,
    Adapter,
    BlobInfo,
    Update,
    check_condition,
    fold_levels,
)

TEMP = ".k.abd-tmp-0123456789abcdef"


def quoted_md5(data: bytes) -> str:
    return '"' + hashlib.md5(data).hexdigest() + '"'


@pytest.fixture
async def adapter(tmp_path: Path) -> AsyncIterator[LocalFileAdapter]:
    a = LocalFileAdapter(tmp_path / "root")
    yield a
    await a.close()


def files_under(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*") if not p.is_dir())


def temp_files(path: Path) -> list[str]:
    return [p for p in files_under(path) if ".abd-tmp-" in p]


async def pair(a: LocalFileAdapter, container: str, key: str) -> tuple[bytes, str | None]:
    """The value and its ETag."""
    data, info = await a.get(container, key)
    assert info.key == key and info.size == len(data)
    return data, info.etag


async def names_of(a: LocalFileAdapter, container: str = "c", prefix: str = "") -> list[str]:
    return [name async for name in a.list_names(container, prefix)]


async def keys(a: LocalFileAdapter, container: str = "c", prefix: str = "") -> list[str]:
    return [info.key async for info in a.list(container, prefix)]


# -- basics ---------------------------------------------------------------------------------


def test_is_an_adapter_and_repr_shows_the_root(tmp_path: Path) -> None:
    a = LocalFileAdapter(tmp_path / "r", durable=False)
    assert isinstance(a, Adapter)
    assert repr(a) == f"LocalFileAdapter(root={str(tmp_path / 'r')!r}, durable=False)"


def test_io_threads_default_follows_the_cpus(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for cpus, threads in [(1, 2), (2, 2), (3, 3), (16, 4), (None, 2)]:
        monkeypatch.setattr(os, "cpu_count", lambda cpus=cpus: cpus)
        assert LocalFileAdapter(tmp_path).io_threads == threads
    assert LocalFileAdapter(tmp_path, io_threads=1).io_threads == 1


async def test_layout_and_round_trip(tmp_path: Path) -> None:
    root = tmp_path / "not" / "yet"
    a = LocalFileAdapter(root)
    assert not root.exists()  # nothing happens before the first write
    data = b"\x00\x01 binary \xff"
    etag = await a.put("c", "demo/model.bin", data)
    assert etag == quoted_md5(data)
    assert (root / "c" / "demo" / "model.bin").read_bytes() == data  # the bytes, nothing else
    assert await pair(a, "c", "demo/model.bin") == (data, etag)
    info = await a.head("c", "demo/model.bin")
    assert info is not None
    assert (info.key, info.size, info.etag) == ("demo/model.bin", len(data), etag)
    assert info.content_md5 == hashlib.md5(data).digest()
    assert info.last_modified is not None and info.last_modified.tzinfo == timezone.utc
    assert abs(info.last_modified.timestamp() - time.time()) < 60
    await a.close()


async def test_empty_large_and_bytearray_values(adapter: LocalFileAdapter) -> None:
    assert await adapter.put("c", "empty", b"") == quoted_md5(b"")
    assert await pair(adapter, "c", "empty") == (b"", quoted_md5(b""))
    big = os.urandom(5 * 1024 * 1024 + 3)
    await adapter.put("c", "big", big)
    assert await pair(adapter, "c", "big") == (big, quoted_md5(big))
    info = await adapter.head("c", "big")
    assert info is not None and info.size == len(big) and info.etag == quoted_md5(big)
    await adapter.put("c", "ba", bytearray(b"abc"))  # type: ignore[arg-type]
    assert (await adapter.get("c", "ba"))[0] == b"abc"


async def test_missing_things_are_not_found(adapter: LocalFileAdapter, tmp_path: Path) -> None:
    with pytest.raises(BlobNotFoundError):
        await adapter.get("c", "k")  # no root yet
    assert await adapter.head("c", "k") is None
    assert await keys(adapter) == []
    await adapter.put("c", "a", b"1")
    await adapter.put("c", "d/e", b"2")
    for key in ("nope", "a/b", "a/b/c", "d", "d/x", "d/e/f"):
        with pytest.raises(BlobNotFoundError) as info:
            await adapter.get("c", key)
        assert isinstance(info.value, KeyError)
        assert key in str(info.value) and "'c'" in str(info.value)
        assert await adapter.head("c", key) is None
    with pytest.raises(BlobNotFoundError):
        await adapter.get("other", "a")
    assert await keys(adapter, "other") == []


# -- conditions -----------------------------------------------------------------------------


async def test_conditional_puts(adapter: LocalFileAdapter) -> None:
    e1 = await adapter.put("c", "k", b"v1", condition=CREATE)
    with pytest.raises(ConcurrencyError):
        await adapter.put("c", "k", b"v2", condition=CREATE)
    with pytest.raises(ConcurrencyError):
        await adapter.put("c", "k", b"v2", condition=Update('"0123"'))
    assert await pair(adapter, "c", "k") == (b"v1", e1)
    e2 = await adapter.put("c", "k", b"v2", condition=Update(e1))
    assert e2 == quoted_md5(b"v2")
    with pytest.raises(ConcurrencyError):
        await adapter.put("c", "k", b"v3", condition=Update(e1))
    with pytest.raises(ConcurrencyError):
        await adapter.put("c", "missing", b"x", condition=Update(e1))
    with pytest.raises(ConcurrencyError):
        await adapter.put("c", "deep/missing", b"x", condition=Update(e1))
    assert await pair(adapter, "c", "k") == (b"v2", e2)
    assert temp_files(adapter.root) == []


async def test_deletes(adapter: LocalFileAdapter) -> None:
    await adapter.delete("c", "missing")  # no-op, even without root
    e = await adapter.put("c", "k", b"v")
    with pytest.raises(ConcurrencyError):
        await adapter.delete("c", "missing", condition=Update(e))
    with pytest.raises(ConcurrencyError):
        await adapter.delete("c", "no/such/folder", condition=Update(e))
    with pytest.raises(ConcurrencyError):
        await adapter.delete("c", "k", condition=Update('"stale"'))
    assert await pair(adapter, "c", "k") == (b"v", e)
    await adapter.delete("c", "k", condition=Update(e))
    assert await adapter.head("c", "k") is None
    await adapter.delete("c", "k")


async def test_delete_removes_empty_folders_but_keeps_the_container(
    adapter: LocalFileAdapter,
) -> None:
    await adapter.put("c", "a/b/c/d", b"1")
    await adapter.put("c", "a/x", b"2")
    await adapter.delete("c", "a/b/c/d")
    container = adapter.root / "c"
    assert sorted(p.name for p in (container / "a").iterdir()) == ["x"]
    await adapter.delete("c", "a/x")
    assert container.is_dir() and list(container.iterdir()) == []
    # The freed names are usable both ways again.
    await adapter.put("c", "a", b"now a value")
    await adapter.delete("c", "a")
    await adapter.put("c", "a/b", b"now a folder")
    assert await keys(adapter) == ["a/b"]


# -- listing --------------------------------------------------------------------------------


async def test_list_is_sorted_as_python_sorts_and_honours_prefixes(
    adapter: LocalFileAdapter,
) -> None:
    written = ["a-c", "a/b", "a0", "x/y/z", "x/y-z", "x/yz", "x/y.z/q", "é", "z", "Z"]
    for key in written:
        await adapter.put("c", key, key.encode())
    assert await keys(adapter) == sorted(written)
    for prefix in ("a", "a/", "x/y", "x/y/", "x/y.", "x/yz", "nope", "nope/", "x/y/z/", ""):
        assert await keys(adapter, prefix=prefix) == sorted(
            k for k in written if k.startswith(prefix)
        ), prefix
    for prefix in ("../", "x/../", "x//", "./", "/x"):
        assert await keys(adapter, prefix=prefix) == []
    infos: list[BlobInfo] = [i async for i in adapter.list("c", "x/y/")]
    assert len(infos) == 1
    (info,) = infos
    assert (info.key, info.size, info.etag, info.content_md5) == ("x/y/z", 5, None, None)
    assert info.last_modified is not None and info.last_modified.tzinfo == timezone.utc


async def test_list_of_many_keys_crosses_batches(adapter: LocalFileAdapter) -> None:
    written = [f"k{i:04d}" for i in range(1300)] + [f"f/{i}" for i in range(20)]
    await asyncio.gather(*(adapter.put("c", k, b"") for k in written))
    assert await keys(adapter) == sorted(written)
    # Stopping early is fine and leaves nothing open.
    async for _ in adapter.list("c"):
        break


async def test_list_returns_unicode_keys_exactly_as_written(adapter: LocalFileAdapter) -> None:
    nfc = unicodedata.normalize("NFC", "café")
    nfd = unicodedata.normalize("NFD", "café")
    written = [nfc, nfd, "ünïcødé/ключ/鍵", "emoji/🎉.json", "spaces and 'quotes'/\"x\""]
    for key in written:
        await adapter.put("c", key, key.encode())
    assert await keys(adapter) == sorted(written)
    for key in written:
        assert (await adapter.get("c", key))[0] == key.encode()


# -- temp files and crashes -----------------------------------------------------------------


async def test_temp_files_are_never_listed_and_stale_ones_are_removed(
    adapter: LocalFileAdapter,
) -> None:
    await adapter.put("c", "f/k", b"committed")
    folder = adapter.root / "c" / "f"
    young = folder / TEMP
    young.write_bytes(b"half-writ")  # a crash mid-write, or a write in progress
    stale = folder / ".other.abd-tmp-fedcba9876543210"
    stale.write_bytes(b"half")
    old = time.time() - local_module.STALE_TEMP_SECONDS - 60
    os.utime(stale, (old, old))
    assert await keys(adapter) == ["f/k"]
    assert young.exists()  # may belong to a live writer in another process
    assert not stale.exists()
    assert await pair(adapter, "c", "f/k") == (b"committed", quoted_md5(b"committed"))
    # A leftover temp file does not stop the key being replaced or deleted.
    await adapter.put("c", "f/k", b"next")
    assert (folder / "k").read_bytes() == b"next"


async def test_keys_shaped_like_temp_files_are_rejected(adapter: LocalFileAdapter) -> None:
    (adapter.root / "c" / "f").mkdir(parents=True)
    (adapter.root / "c" / "f" / TEMP).write_bytes(b"a write in progress")
    for key in (TEMP, "f/" + TEMP, ".x.abd-tmp-0000000000000000", TEMP + "/x"):
        with pytest.raises(InvalidKeyError, match="temp"):
            await adapter.put("c", key, b"")
        # It can never be stored here, so reads find nothing (and never see a temp file).
        with pytest.raises(BlobNotFoundError):
            await adapter.get("c", key)
        assert await adapter.head("c", key) is None
        await adapter.delete("c", key)
        with pytest.raises(ConcurrencyError):
            await adapter.delete("c", key, condition=Update(quoted_md5(b"a write in progress")))
    assert (adapter.root / "c" / "f" / TEMP).exists()
    # Only the exact shape is reserved.
    allowed = [TEMP + "0", TEMP[1:], "x.abd-tmp-0123456789abcdef", ".k.abd-tmp-0123"]
    for key in allowed:
        await adapter.put("c", key, b"ok")
    assert await keys(adapter) == sorted(allowed)


async def test_lock_files_cannot_clash_with_a_container(adapter: LocalFileAdapter) -> None:
    await adapter.put(".abd-locks", "k", b"any valid container name works")
    assert await keys(adapter, ".abd-locks") == ["k"]
    with pytest.raises(InvalidKeyError):
        await adapter.put(local_module.LOCK_FOLDER, "k", b"")
    assert sorted(p.name for p in adapter.root.iterdir()) == [
        ".abd-locks",
        local_module.LOCK_FOLDER,
    ]


@pytest.mark.parametrize("durable", [True, False])
async def test_readers_never_see_a_torn_value(tmp_path: Path, durable: bool) -> None:
    writer = LocalFileAdapter(tmp_path, durable=durable)
    reader = LocalFileAdapter(tmp_path, durable=durable)
    values = [bytes([65 + i]) * (256 * 1024 + i) for i in range(3)]
    await writer.put("c", "k", values[0])
    stop = False
    seen: set[bytes] = set()

    async def write() -> None:
        nonlocal stop
        for i in range(60):
            await writer.put("c", "k", values[i % 3])
        stop = True

    async def read() -> None:
        while not stop:
            data, info = await reader.get("c", "k")
            etag = info.etag
            assert data in values
            assert etag == quoted_md5(data)
            seen.add(data[:1])

    await asyncio.gather(write(), read(), read())
    assert len(seen) >= 2
    assert temp_files(tmp_path) == []
    await writer.close()
    await reader.close()


async def test_durable_false_skips_fsync_but_still_replaces_atomically(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    real_replace = os.replace

    def no_fsync(fd: int) -> None:
        raise AssertionError("fsync called with durable=False")

    def spy_replace(*args: Any, **kwargs: Any) -> None:
        calls.append(args[0])
        real_replace(*args, **kwargs)

    monkeypatch.setattr(os, "fsync", no_fsync)
    monkeypatch.setattr(os, "replace", spy_replace)
    a = LocalFileAdapter(tmp_path, durable=False)
    await a.put("c", "a/b", b"x")
    await a.delete("c", "a/b")
    assert len(calls) == 1 and ".abd-tmp-" in calls[0]
    await a.close()


async def test_durable_writes_fsync_the_file_and_the_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kinds: list[str] = []
    real_fsync = os.fsync

    def spy(fd: int) -> None:
        kinds.append("dir" if os.path.isdir(f"/proc/self/fd/{fd}") else "file")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", spy)
    a = LocalFileAdapter(tmp_path)
    await a.put("c", "k", b"x")
    assert kinds == ["dir", "file", "dir"]  # the new container folder's entry too
    kinds.clear()
    await a.put("c", "k", b"y")
    assert kinds == ["file", "dir"]
    await a.close()


# -- concurrency ----------------------------------------------------------------------------


def _increment(a: LocalFileAdapter, rounds: int) -> tuple[int, int]:
    async def run() -> tuple[int, int]:
        landed = failed = 0
        for _ in range(rounds):
            data, info = await a.get("c", "n")
            assert info.etag is not None
            etag = info.etag
            try:
                await a.put("c", "n", str(int(data) + 1).encode(), condition=Update(etag))
                landed += 1
            except ConcurrencyError:
                failed += 1
        return landed, failed

    return asyncio.run(run())


def test_conditional_increments_from_threads_lose_nothing(tmp_path: Path) -> None:
    # Each thread runs its own event loop against one shared adapter.
    a = LocalFileAdapter(tmp_path, durable=False)
    asyncio.run(a.put("c", "n", b"0"))
    results: list[tuple[int, int]] = []
    threads = [threading.Thread(target=lambda: results.append(_increment(a, 60))) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    landed = sum(r[0] for r in results)
    assert sum(r[1] for r in results) + landed == 6 * 60
    assert asyncio.run(a.get("c", "n"))[0] == str(landed).encode()
    asyncio.run(a.close())


def test_unconditional_writes_cannot_slip_into_a_conditional_write(tmp_path: Path) -> None:
    # A creator may only create; a blind writer keeps overwriting. If a blind write landed
    # between a create's check and its rename, the create would succeed over an existing key.
    a = LocalFileAdapter(tmp_path, durable=False)

    async def run() -> None:
        for i in range(150):
            await a.delete("c", "k")
            results = await asyncio.gather(
                a.put("c", "k", b"created", condition=CREATE),
                a.put("c", "k", b"blind"),
                return_exceptions=True,
            )
            data, _ = await a.get("c", "k")
            if isinstance(results[0], ConcurrencyError):
                assert data == b"blind"
            else:
                assert results[0] == quoted_md5(b"created"), i

    asyncio.run(run())
    asyncio.run(a.close())


PROCESS_WORKER = """
import asyncio, json, sys
from asyncblobdict import ConcurrencyError, LocalFileAdapter
from asyncblobdict.adapters.base import Update

async def main(root, n):
    a = LocalFileAdapter(root, durable=False)
    landed = failed = 0
    for _ in range(n):
        data, info = await a.get("c", "n")
        etag = info.etag
        try:
            await a.put("c", "n", str(int(data) + 1).encode(), condition=Update(etag))
            landed += 1
        except ConcurrencyError:
            failed += 1
    await a.close()
    print(json.dumps([landed, failed]))

asyncio.run(main(sys.argv[1], int(sys.argv[2])))
"""


async def test_conditional_increments_from_processes_lose_nothing(tmp_path: Path) -> None:
    a = LocalFileAdapter(tmp_path)
    await a.put("c", "n", b"0")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", PROCESS_WORKER, str(tmp_path), "150"],
            stdout=subprocess.PIPE,
            env=env,
            text=True,
        )
        for _ in range(4)
    ]
    results = []
    for proc in procs:
        out, _ = await asyncio.to_thread(proc.communicate, timeout=120)
        assert proc.returncode == 0
        results.append(json.loads(out))
    landed = sum(r[0] for r in results)
    assert sum(r[1] for r in results) + landed == 4 * 150
    assert (await a.get("c", "n"))[0] == str(landed).encode()
    assert landed > 0
    await a.close()


CONDITIONAL_WRITE = """
import asyncio, sys
from asyncblobdict import LocalFileAdapter
from asyncblobdict.adapters.base import Update

async def main(root):
    a = LocalFileAdapter(root, durable=False)
    _, info = await a.get("c", "k")
    await a.put("c", "k", b"from another process", condition=Update(info.etag))
    await a.close()

asyncio.run(main(sys.argv[1]))
"""


async def test_a_fork_during_a_write_does_not_keep_the_lock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # flock belongs to the open file description, which a fork() shares with the child: if
    # closing our fd were the only release, the lock would stay held until the child exits,
    # and every writer of that stripe, in every process, would stall (defect 8).
    a = LocalFileAdapter(tmp_path, durable=False)
    await a.put("c", "k", b"0")
    inside, release = threading.Event(), threading.Event()
    real_check = check_condition  # what local.py calls

    def pausing_check(*args: Any) -> None:
        inside.set()  # we are in the I/O thread, holding the key's stripe lock
        release.wait(30)
        real_check(*args)

    monkeypatch.setattr(local_module, "check_condition", pausing_check)
    etag = (await a.get("c", "k"))[1].etag
    assert etag is not None
    write = asyncio.ensure_future(a.put("c", "k", b"1", condition=Update(etag)))
    assert await asyncio.to_thread(inside.wait, 30)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads (3.12+)
        pid = os.fork()
    if pid == 0:  # the child: a worker that lives on, doing nothing with the adapter
        try:
            time.sleep(30)
        finally:
            os._exit(0)
    try:
        release.set()
        await asyncio.wait_for(write, 30)
        monkeypatch.setattr(local_module, "check_condition", real_check)
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
        proc = subprocess.Popen([sys.executable, "-c", CONDITIONAL_WRITE, str(tmp_path)], env=env)
        try:
            # Generous: the child lives 30 s, so a leaked lock shows as a timeout here.
            returncode = await asyncio.to_thread(proc.wait, 20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            pytest.fail("a write in another process stalled: the forked child holds the lock")
        assert returncode == 0
        assert (await a.get("c", "k"))[0] == b"from another process"
        # And a write from this process, in another I/O thread, is not stalled either.
        await asyncio.wait_for(a.put("c", "k", b"2"), 20)
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        await a.close()


# -- file descriptors -----------------------------------------------------------------------

DEEP_KEY = "/".join(["d"] * 511 + ["v"])  # 512 segments, 1023 characters
# Whatever the depth: root, a folder or two, the lock folder and file, the value or temp file,
# and the few folders a delete keeps open to remove the empty ones.
FD_BOUND = 16


async def test_a_deep_key_holds_a_bounded_number_of_descriptors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every folder fd of the walk used to stay open: 514 per operation on a 512-segment key,
    # so a few concurrent operations hit EMFILE under the usual limit of 1024 (defect 16).
    a = LocalFileAdapter(tmp_path, durable=False)
    guard = threading.Lock()
    held: set[int] = set()
    peak = 0
    real_open, real_close = os.open, os.close

    def counting_open(*args: Any, **kwargs: Any) -> int:
        nonlocal peak
        fd = real_open(*args, **kwargs)
        with guard:
            held.add(fd)
            peak = max(peak, len(held))
        return fd

    def counting_close(fd: int) -> None:
        with guard:
            held.discard(fd)
        real_close(fd)

    async def peak_of(op: Any) -> int:
        nonlocal peak
        peak = 0
        monkeypatch.setattr(os, "open", counting_open)
        monkeypatch.setattr(os, "close", counting_close)
        try:
            await op
        finally:
            monkeypatch.setattr(os, "open", real_open)
            monkeypatch.setattr(os, "close", real_close)
        assert not held, "descriptors left open"
        return peak

    sidecar = LocalFileAdapter(tmp_path, durable=False, _metadata_store="sidecar")
    peaks = {"put": await peak_of(a.put("c", DEEP_KEY, b"v"))}
    etag = (await a.get("c", DEEP_KEY))[1].etag
    assert etag is not None
    peaks["get"] = await peak_of(a.get("c", DEEP_KEY))
    peaks["head"] = await peak_of(a.head("c", DEEP_KEY))
    peaks["conditional put"] = await peak_of(a.put("c", DEEP_KEY, b"w", condition=Update(etag)))
    peaks["list"] = await peak_of(keys(a, "c", "d/d/"))
    peaks["list_names"] = await peak_of(names_of(a, "c", "d/d/"))
    peaks["sidecar put"] = await peak_of(sidecar.put("c", DEEP_KEY, b"s", metadata={"a": "1"}))
    peaks["sidecar get"] = await peak_of(sidecar.get("c", DEEP_KEY))
    peaks["delete"] = await peak_of(a.delete("c", DEEP_KEY))
    assert all(p <= FD_BOUND for p in peaks.values()), str(peaks)
    # The delete still removed every folder it left empty, and only those.
    assert [p.name for p in tmp_path.iterdir() if not p.name.startswith(".")] == ["c"]
    assert list((tmp_path / "c").iterdir()) == []  # the sidecar went with the value
    await a.close()
    await sidecar.close()


@pytest.mark.parametrize("depth", [1, 2, 3, 9, 17, 40])
async def test_deletes_remove_exactly_the_folders_they_leave_empty(
    adapter: LocalFileAdapter, tmp_path: Path, depth: int
) -> None:
    # Deeper than the window of folders kept open, the delete walks again from the root.
    key = "/".join(f"f{i}" for i in range(depth)) + "/v"
    keep = "/".join(f"f{i}" for i in range(depth // 2)) + "/keep" if depth > 1 else "keep"
    await adapter.put("c", key, b"1")
    await adapter.put("c", keep, b"2")
    await adapter.delete("c", key)
    assert await keys(adapter) == [keep]
    container = tmp_path / "root" / "c"
    assert sorted(str(p.relative_to(container)) for p in container.rglob("*")) == sorted(
        [keep] + ["/".join(keep.split("/")[:i]) for i in range(1, keep.count("/") + 1)]
    )


RLIMIT_WORKER = """
import asyncio, resource, sys
from asyncblobdict import LocalFileAdapter

soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (128, hard))

async def main(root):
    a = LocalFileAdapter(root, durable=False, io_threads=4)
    keys = ["/".join([f"k{i}"] + ["d"] * 510 + ["v"]) for i in range(8)]
    await asyncio.gather(*(a.put("c", k, b"x") for k in keys))
    await asyncio.gather(*(a.get("c", k) for k in keys), *(a.head("c", k) for k in keys))
    listed = [info.key async for info in a.list("c")]
    assert listed == sorted(keys), listed
    await asyncio.gather(*(a.delete("c", k) for k in keys))
    await a.close()
    print("ok")

asyncio.run(main(sys.argv[1]))
"""


async def test_concurrent_deep_keys_under_a_low_descriptor_limit(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        RLIMIT_WORKER,
        str(tmp_path),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert (proc.returncode, out) == (0, b"ok\n"), err.decode()[-2000:]
    assert os.listdir(tmp_path / "c") == []


# -- containment ----------------------------------------------------------------------------

BAD_KEYS = ["", "..", "../x", "a/../../x", "/etc/passwd", "a//b", "a/", "./a", "a\x00b", "a\\b"]
BAD_CONTAINERS = ["", ".", "..", "a/b", "../x", "/etc", "a\\b", "a b"]


@pytest.mark.parametrize("key", BAD_KEYS)
async def test_bad_keys_never_reach_the_disk(tmp_path: Path, key: str) -> None:
    a = LocalFileAdapter(tmp_path / "root")
    for call in (a.put("c", key, b"x"), a.get("c", key), a.head("c", key), a.delete("c", key)):
        with pytest.raises(InvalidKeyError):
            await call
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("container", BAD_CONTAINERS)
async def test_bad_container_names_never_reach_the_disk(tmp_path: Path, container: str) -> None:
    a = LocalFileAdapter(tmp_path / "root")
    for call in (a.put(container, "k", b"x"), a.get(container, "k"), a.delete(container, "k")):
        with pytest.raises(InvalidKeyError):
            await call
    with pytest.raises(InvalidKeyError):
        await keys(a, container)
    assert list(tmp_path.iterdir()) == []


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    out = tmp_path / "outside"
    out.mkdir()
    (out / "secret").write_bytes(b"top secret")
    return out


def assert_outside_untouched(outside: Path) -> None:
    assert sorted(p.name for p in outside.iterdir()) == ["secret"]
    assert (outside / "secret").read_bytes() == b"top secret"


async def test_a_planted_folder_symlink_is_never_followed(
    adapter: LocalFileAdapter, outside: Path
) -> None:
    await adapter.put("c", "real", b"1")
    (adapter.root / "c" / "link").symlink_to(outside, target_is_directory=True)
    with pytest.raises(StorageError, match="symbolic link"):
        await adapter.get("c", "link/secret")
    with pytest.raises(StorageError, match="symbolic link"):
        await adapter.head("c", "link/secret")
    with pytest.raises(StorageError, match="symbolic link"):
        await adapter.put("c", "link/new", b"x")
    with pytest.raises(StorageError, match="symbolic link"):
        await adapter.put("c", "link/secret", b"x", condition=Update(quoted_md5(b"top secret")))
    with pytest.raises(StorageError, match="symbolic link"):
        await adapter.delete("c", "link/secret")
    assert await keys(adapter) == ["real"]
    assert await keys(adapter, prefix="link/") == []
    assert_outside_untouched(outside)


async def test_a_planted_file_symlink_is_never_followed(
    adapter: LocalFileAdapter, outside: Path
) -> None:
    await adapter.put("c", "real", b"1")
    link = adapter.root / "c" / "f"
    link.symlink_to(outside / "secret")
    with pytest.raises(StorageError, match="symbolic link"):
        await adapter.get("c", "f")
    with pytest.raises(StorageError, match="symbolic link"):
        await adapter.head("c", "f")
    with pytest.raises(StorageError, match="symbolic link"):
        await adapter.put("c", "f", b"x", condition=Update(quoted_md5(b"top secret")))
    with pytest.raises(StorageError, match="symbolic link"):
        await adapter.delete("c", "f", condition=Update(quoted_md5(b"top secret")))
    assert await keys(adapter) == ["real"]
    assert_outside_untouched(outside)
    # Unconditional writes and deletes act on the link itself, never on its target.
    await adapter.put("c", "f", b"mine")
    assert not link.is_symlink() and link.read_bytes() == b"mine"
    assert_outside_untouched(outside)
    link.unlink()
    link.symlink_to(outside / "secret")
    await adapter.delete("c", "f")
    assert not link.exists() and not link.is_symlink()
    assert_outside_untouched(outside)


async def test_a_symlinked_container_is_never_followed(
    adapter: LocalFileAdapter, outside: Path
) -> None:
    await adapter.put("c", "real", b"1")
    (adapter.root / "evil").symlink_to(outside, target_is_directory=True)
    with pytest.raises(StorageError, match="symbolic link"):
        await adapter.get("evil", "secret")
    with pytest.raises(StorageError, match="symbolic link"):
        await adapter.put("evil", "new", b"x")
    with pytest.raises(StorageError, match="symbolic link"):
        await adapter.delete("evil", "secret")
    assert await keys(adapter, "evil") == []
    assert_outside_untouched(outside)


async def test_a_planted_fifo_does_not_hang_a_read(adapter: LocalFileAdapter) -> None:
    await adapter.put("c", "real", b"1")
    os.mkfifo(adapter.root / "c" / "pipe")
    with pytest.raises(BlobNotFoundError):
        await asyncio.wait_for(adapter.get("c", "pipe"), 5)
    assert await adapter.head("c", "pipe") is None
    assert await keys(adapter) == ["real"]


async def test_a_root_that_is_a_symlink_is_fine(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "alias").symlink_to(tmp_path / "real", target_is_directory=True)
    a = LocalFileAdapter(tmp_path / "alias")
    await a.put("c", "k", b"v")
    assert (tmp_path / "real" / "c" / "k").read_bytes() == b"v"
    await a.close()


# -- local limits ---------------------------------------------------------------------------


async def test_segment_length_limit_is_255_bytes_of_utf8(adapter: LocalFileAdapter) -> None:
    longest = ["x" * 255, "é" * 127, "a/" + "鍵" * 85]  # 255, 254 and 255 bytes
    for key in longest:
        await adapter.put("c", key, b"ok")
        assert (await adapter.get("c", key))[0] == b"ok"
    assert await keys(adapter) == sorted(longest)
    for key in ["x" * 256, "é" * 128, "a/" + "鍵" * 86 + "/b"]:
        with pytest.raises(InvalidKeyError, match="255"):
            await adapter.put("c", key, b"no")
        # A valid key this backend cannot hold: reads find nothing.
        with pytest.raises(BlobNotFoundError):
            await adapter.get("c", key)
        assert await adapter.head("c", key) is None
        await adapter.delete("c", key)
    assert temp_files(adapter.root) == []


async def test_a_value_and_a_folder_cannot_share_a_name(adapter: LocalFileAdapter) -> None:
    e = await adapter.put("c", "a", b"value")
    for key in ("a/b", "a/b/c"):
        with pytest.raises(StorageError, match=r"'a' is a value, so .* cannot be stored beside"):
            await adapter.put("c", key, b"x")
    assert await pair(adapter, "c", "a") == (b"value", e)

    e2 = await adapter.put("c", "d/e", b"inner")
    with pytest.raises(StorageError, match="'d' is a folder of other keys"):
        await adapter.put("c", "d", b"x")
    with pytest.raises(StorageError, match="folder of other keys"):
        await adapter.put("c", "d", b"x", condition=CREATE)
    with pytest.raises(ConcurrencyError):
        await adapter.put("c", "d", b"x", condition=Update(e2))
    await adapter.delete("c", "d")  # not a value: nothing to delete
    assert await pair(adapter, "c", "d/e") == (b"inner", e2)
    assert await keys(adapter) == ["a", "d/e"]
    assert temp_files(adapter.root) == []


# -- failures -------------------------------------------------------------------------------


def _is_temp_fd(fd: int) -> bool:
    try:
        return ".abd-tmp-" in os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return False


@pytest.mark.parametrize(
    ("syscall", "code"),
    [
        ("write", errno.ENOSPC),
        ("write", errno.EDQUOT),
        ("fsync", errno.EIO),
        ("replace", errno.EROFS),
        ("open", errno.EACCES),
    ],
)
async def test_os_errors_become_storage_errors_and_leave_the_old_value(
    adapter: LocalFileAdapter, monkeypatch: pytest.MonkeyPatch, syscall: str, code: int
) -> None:
    # A real full or read-only disk cannot be made cheaply (and root ignores chmod), so the
    # failing system call is injected.
    e = await adapter.put("c", "dir/k", b"old value")
    real = getattr(os, syscall)

    def failing(*args: Any, **kwargs: Any) -> Any:
        target = args[0]
        hit = _is_temp_fd(target) if isinstance(target, int) else ".abd-tmp-" in str(target)
        if hit:
            raise OSError(code, os.strerror(code))
        return real(*args, **kwargs)

    monkeypatch.setattr(os, syscall, failing)
    with pytest.raises(StorageError) as info:
        await adapter.put("c", "dir/k", b"new value")
    monkeypatch.undo()
    err = info.value
    assert not isinstance(err, OSError)
    assert err.error_code == errno.errorcode[code]
    assert (err.container, err.key) == ("c", "dir/k")
    assert "'dir/k'" in str(err) and "'c'" in str(err)
    assert await pair(adapter, "c", "dir/k") == (b"old value", e)
    assert temp_files(adapter.root) == []


async def test_read_errors_become_storage_errors(
    adapter: LocalFileAdapter, monkeypatch: pytest.MonkeyPatch
) -> None:
    await adapter.put("c", "k", b"v")

    def failing_read(fd: int, n: int) -> bytes:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "read", failing_read)
    with pytest.raises(StorageError, match="Input/output error"):
        await adapter.get("c", "k")
    with pytest.raises(StorageError):
        await adapter.head("c", "k")
    monkeypatch.undo()
    assert (await adapter.get("c", "k"))[0] == b"v"


async def test_a_root_that_is_a_file_is_a_storage_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_bytes(b"")
    a = LocalFileAdapter(tmp_path / "file")
    with pytest.raises(StorageError):
        await a.put("c", "k", b"v")
    with pytest.raises(StorageError):
        await a.get("c", "k")
    await a.close()


def test_unsupported_platforms_fail_clearly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(local_module, "_SUPPORTED", False)
    with pytest.raises(StorageError, match="POSIX"):
        LocalFileAdapter(tmp_path)


# -- lifecycle ------------------------------------------------------------------------------


def test_one_adapter_across_event_loops_and_closes(tmp_path: Path) -> None:
    a = LocalFileAdapter(tmp_path)

    async def first() -> None:
        await a.put("c", "k", b"1")
        await a.close()
        await a.close()

    async def second() -> bytes:
        data, _ = await a.get("c", "k")  # usable again after close
        await a.put("c", "k", b"2")
        return data

    asyncio.run(first())
    assert asyncio.run(second()) == b"1"
    asyncio.run(a.close())
    asyncio.run(a.close())


async def test_a_cancelled_read_leaves_the_adapter_working(adapter: LocalFileAdapter) -> None:
    await adapter.put("c", "k", b"v")
    tasks = [asyncio.ensure_future(adapter.get("c", "k")) for _ in range(50)]
    await asyncio.sleep(0)
    for t in tasks[::2]:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    assert (await adapter.get("c", "k"))[0] == b"v"


# -- properties -----------------------------------------------------------------------------

SEGMENT_CHARS = st.characters(blacklist_categories=("Cc", "Cs"), blacklist_characters="/\\\x7f")
SEGMENT = st.text(SEGMENT_CHARS, min_size=1, max_size=12).filter(
    lambda s: local_module._valid_segment(s) and not local_module._is_reserved_name(s)
)
KEY = st.lists(SEGMENT, min_size=1, max_size=4).map("/".join)


def _no_value_folder_clash(ks: set[str]) -> bool:
    return not any(other.startswith(k + "/") for k in ks for other in ks)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sets(KEY, min_size=1, max_size=12).filter(_no_value_folder_clash))
def test_any_valid_keys_stay_under_the_root_and_list_back_exactly(written: set[str]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        root = base / "root"
        a = LocalFileAdapter(root, durable=False)

        async def run() -> list[str]:
            for key in written:
                await a.put("c", key, key.encode())
            for key in written:
                assert (await a.get("c", key))[0] == key.encode()
            listed = await keys(a)
            await a.close()
            return listed

        assert asyncio.run(run()) == sorted(written)
        container = (root / "c").resolve()
        for key in written:
            path = (root / "c" / key).resolve()
            assert path.is_relative_to(container)
            assert path.read_bytes() == key.encode()
        # Nothing anywhere but the container and the lock files.
        assert sorted(p.name for p in base.iterdir()) == ["root"]
        assert sorted(p.name for p in root.iterdir()) == [local_module.LOCK_FOLDER, "c"]
        on_disk = {str(p.relative_to(root / "c")) for p in (root / "c").rglob("*") if p.is_file()}
        assert on_disk == written


async def test_writes_survive_deletes_pruning_the_same_folders(tmp_path: Path) -> None:
    # A delete removes folders it leaves empty; a write creating them at the same moment
    # walks again instead of failing.
    a = LocalFileAdapter(tmp_path, durable=False, io_threads=4)

    async def churn(name: str) -> None:
        for _ in range(150):
            await a.put("c", f"f/g/{name}", b"x")
            await a.delete("c", f"f/g/{name}")

    await asyncio.gather(*(churn(n) for n in "abcd"))
    assert await keys(a) == []
    assert list((tmp_path / "c").iterdir()) == []
    await a.close()


# -- contract v2: records (content type, metadata, ETag) ------------------------------------

STORES = ["auto", "sidecar"]  # "auto" uses an extended attribute where the filesystem has one
BIG = local_module.SMALL_VALUE_BYTES * 4  # above the size that is always hashed


def round_mtimes(monkeypatch: pytest.MonkeyPatch, granularity_ns: int) -> None:
    """Make the filesystem keep mtimes only to ``granularity_ns`` (as FAT, HFS+ and some
    network filesystems do), rounding down as they do."""
    real = os.utime

    def utime(path: Any, *args: Any, ns: Any = None, **kw: Any) -> None:
        if ns is None:
            real(path, *args, **kw)
        else:
            real(path, *args, ns=tuple(t - t % granularity_ns for t in ns), **kw)

    monkeypatch.setattr(os, "utime", utime)


def sidecars(path: Path) -> list[str]:
    return [p for p in files_under(path) if ".abd-meta-" in p]


def has_xattr(path: Path) -> bool:
    try:
        os.getxattr(path, local_module.XATTR_NAME, follow_symlinks=False)
    except OSError:
        return False
    return True


def xattrs_work(path: Path) -> bool:
    probe = path / ".xattr-probe"
    probe.write_bytes(b"")
    try:
        os.setxattr(probe, "user.probe", b"1")
    except OSError:
        return False
    finally:
        probe.unlink()
    return True


def xattr_holds(path: Path, size: int) -> bool:
    probe = path / ".xattr-size-probe"
    probe.write_bytes(b"")
    try:
        os.setxattr(probe, "user.probe", b"x" * size)
    except OSError:
        return False
    finally:
        probe.unlink()
    return True


@pytest.fixture(params=STORES)
async def meta_adapter(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[LocalFileAdapter]:
    a = LocalFileAdapter(tmp_path / "root", _metadata_store=request.param)
    yield a
    await a.close()


def where_records_are(a: LocalFileAdapter, key: str) -> str:
    """ "xattr" or "sidecar": where the key's record is, checked on disk (exactly one)."""
    path = a.root / "c" / key
    in_xattr = has_xattr(path)
    st_ = path.stat()
    side = path.parent / local_module._meta_name(path.name, st_.st_ino, st_.st_mtime_ns)
    assert in_xattr != side.exists(), (in_xattr, side.exists())
    return "xattr" if in_xattr else "sidecar"


async def test_content_type_and_metadata_round_trip(meta_adapter: LocalFileAdapter) -> None:
    a = meta_adapter
    for key, data in [("small", b"{}"), ("f/big", os.urandom(BIG))]:
        before = time.time()
        etag = await a.put(
            "c",
            key,
            data,
            content_type="application/json; charset=utf-8",
            metadata={"Owner": "ann", "run_id": "7", "empty": ""},
        )
        assert etag == quoted_md5(data)
        expected = {"owner": "ann", "run_id": "7", "empty": ""}
        got, info = await a.get("c", key)
        head = await a.head("c", key)
        assert got == data and head == info
        assert (info.key, info.size, info.etag) == (key, len(data), etag)
        assert info.content_md5 == hashlib.md5(data).digest()
        assert info.content_type == "application/json; charset=utf-8"
        assert dict(info.metadata) == expected
        # last_modified is the write's own time, not the mtime mark 20 ms before it.
        mtime_ns = (a.root / "c" / key).stat().st_mtime_ns
        assert mtime_ns & 1 == 1
        assert info.last_modified is not None
        written = info.last_modified.timestamp()
        assert abs(written - (mtime_ns + local_module.MTIME_MARK_NS) / 1e9) < 1e-5
        assert written >= before - 1e-3
        expected_store = a.metadata_store
        assert where_records_are(a, key) == expected_store
    # The file holds the value's bytes and nothing else.
    assert (a.root / "c" / "small").read_bytes() == b"{}"
    # Without content type or metadata: None and {}.
    await a.put("c", "plain", b"x")
    info2 = await a.head("c", "plain")
    assert info2 is not None and (info2.content_type, dict(info2.metadata)) == (None, {})


def test_auto_uses_extended_attributes_where_they_work(tmp_path: Path) -> None:
    if not xattrs_work(tmp_path):
        pytest.skip("this filesystem has no user extended attributes")
    a = LocalFileAdapter(tmp_path)
    asyncio.run(a.put("c", "k", b"v", metadata={"a": "1"}))
    assert a.metadata_store == "xattr"
    assert has_xattr(tmp_path / "c" / "k") and sidecars(tmp_path) == []
    raw = os.getxattr(tmp_path / "c" / "k", local_module.XATTR_NAME)
    assert raw.startswith(b"abd1 " + hashlib.md5(b"v").hexdigest().encode() + b" 1 ")
    assert raw.endswith(b"\n\na=1\n")  # no content type, one metadata item
    asyncio.run(a.close())


async def test_replacing_a_value_replaces_its_metadata(meta_adapter: LocalFileAdapter) -> None:
    a = meta_adapter
    for data in (b"one", os.urandom(BIG)):
        await a.put("c", "d/k", data, content_type="text/plain", metadata={"a": "1", "b": "2"})
        await a.put("c", "d/k", data + b"!", metadata={"c": "3"})
        info = await a.head("c", "d/k")
        assert info is not None
        assert (info.content_type, dict(info.metadata)) == (None, {"c": "3"})
        assert info.etag == quoted_md5(data + b"!")
        # The old version's sidecar went with it (and none was ever made with xattrs).
        assert len(sidecars(a.root)) == (1 if a.metadata_store == "sidecar" else 0)
    # A conditional replace and a delete too.
    etag = (await a.get("c", "d/k"))[1].etag
    assert etag is not None
    await a.put("c", "d/k", b"two", condition=Update(etag), metadata={"z": "9"})
    assert dict((await a.get("c", "d/k"))[1].metadata) == {"z": "9"}
    assert len(sidecars(a.root)) == (1 if a.metadata_store == "sidecar" else 0)
    await a.delete("c", "d/k")
    assert files_under(a.root / "c") == []  # value, sidecar and folder all gone


async def test_metadata_and_content_type_are_checked_before_any_io(tmp_path: Path) -> None:
    a = LocalFileAdapter(tmp_path / "root")
    bad: list[dict[str, Any]] = [
        {"metadata": {"1abc": "x"}},
        {"metadata": {"a-b": "x"}},
        {"metadata": {"a": "line\nbreak"}},
        {"metadata": {"a": " padded"}},
        {"metadata": {"a": "é"}},
        {"metadata": {"A": "1", "a": "2"}},
        {"metadata": {"a": "x" * (9 * 1024)}},
        {"metadata": ["not", "a", "mapping"]},
        {"content_type": ""},
        {"content_type": "text/plain\n"},
        {"condition": "*"},
    ]
    for kwargs in bad:
        with pytest.raises(InvalidKeyError):
            await a.put("c", "k", b"x", **kwargs)
    with pytest.raises(InvalidKeyError):
        await a.delete("c", "k", condition=None)  # type: ignore[arg-type]
    assert not (tmp_path / "root").exists()
    await a.close()


async def test_a_record_too_big_for_an_extended_attribute_goes_to_a_sidecar(
    tmp_path: Path,
) -> None:
    # ext4 keeps a file's attributes in one 4 KiB block; 8 KiB of metadata (the contract's
    # limit) does not fit there, so that file's record goes to a sidecar, and only that one.
    a = LocalFileAdapter(tmp_path)
    big_meta = {f"name{i}": "v" * 200 for i in range(39)}  # 39 * 205 bytes, under 8 KiB
    await a.put("c", "big", b"data", content_type="a/b", metadata=big_meta)
    await a.put("c", "small", b"data", metadata={"a": "1"})
    info = await a.head("c", "big")
    assert info is not None and dict(info.metadata) == big_meta and info.content_type == "a/b"
    assert dict((await a.get("c", "small"))[1].metadata) == {"a": "1"}
    where = where_records_are(a, "big")
    if xattrs_work(tmp_path):
        assert where_records_are(a, "small") == "xattr"
        assert a.metadata_store == "xattr"  # one big record does not switch the adapter
        assert where == ("xattr" if xattr_holds(tmp_path, 8000) else "sidecar")
    # Replaced by a small record, the big one's sidecar goes.
    await a.put("c", "big", b"data2", metadata={"b": "2"})
    assert dict((await a.get("c", "big"))[1].metadata) == {"b": "2"}
    if where == "sidecar":
        assert sidecars(tmp_path) == [] or a.metadata_store == "sidecar"
    await a.close()


async def test_a_replaced_version_s_sidecar_is_looked_for_only_if_its_mark_says_it_has_one(
    meta_adapter: LocalFileAdapter, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The mark's second bit says where the record went, so a replace (or delete) of a value
    # whose record is in its attribute makes no unlink of a sidecar that is not there.
    a = meta_adapter
    in_sidecar = a.metadata_store == "sidecar"
    unlinked: list[str] = []
    real_unlink = os.unlink

    def unlink(path: Any, *args: Any, **kwargs: Any) -> None:
        unlinked.append(os.fsdecode(path))
        real_unlink(path, *args, **kwargs)

    await a.put("c", "k", b"v0", metadata={"n": "0"})
    monkeypatch.setattr(os, "unlink", unlink)
    for i in range(1, 4):
        before = (a.root / "c" / "k").stat().st_mtime_ns
        assert before & 3 == (0b11 if in_sidecar else 0b01)
        await a.put("c", "k", f"v{i}".encode(), metadata={"n": str(i)})
    await a.delete("c", "k")
    tried = [n for n in unlinked if ".abd-meta-" in n]
    # Each replaced version's sidecar, and the deleted one's; none where there is none.
    assert len(tried) == (4 if in_sidecar else 0), tried
    assert sidecars(a.root) == []


async def test_a_record_refused_by_the_attribute_is_marked_for_its_sidecar(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The first write on a filesystem without attributes finds out only when setxattr fails:
    # its file is marked again, so that replacing it removes its sidecar (no orphan).
    def unsupported(*args: Any, **kwargs: Any) -> None:
        raise OSError(errno.EOPNOTSUPP, "Operation not supported")

    monkeypatch.setattr(os, "setxattr", unsupported)
    a = LocalFileAdapter(tmp_path)
    await a.put("c", "k", b"v0", metadata={"n": "0"})
    assert (tmp_path / "c" / "k").stat().st_mtime_ns & 3 == 0b11
    assert where_records_are(a, "k") == "sidecar"
    await a.put("c", "k", b"v1", metadata={"n": "1"})
    assert len(sidecars(tmp_path)) == 1 and where_records_are(a, "k") == "sidecar"
    await a.delete("c", "k")
    assert sidecars(tmp_path) == []
    await a.close()


async def test_a_filesystem_without_extended_attributes_is_probed_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []

    def unsupported(*args: Any, **kwargs: Any) -> None:
        calls.append(1)
        raise OSError(errno.EOPNOTSUPP, "Operation not supported")

    monkeypatch.setattr(os, "setxattr", unsupported)
    a = LocalFileAdapter(tmp_path)
    before = a.metadata_store
    assert before == "xattr"
    for i in range(5):
        await a.put("c", f"k{i}", b"v", metadata={"i": str(i)})
    assert calls == [1] and a.metadata_store == "sidecar"
    for i in range(5):
        assert dict((await a.get("c", f"k{i}"))[1].metadata) == {"i": str(i)}
        assert where_records_are(a, f"k{i}") == "sidecar"
    assert await keys(a) == [f"k{i}" for i in range(5)]
    await a.close()


async def test_either_kind_of_adapter_reads_the_others_records(tmp_path: Path) -> None:
    xattr = LocalFileAdapter(tmp_path)
    sidecar = LocalFileAdapter(tmp_path, _metadata_store="sidecar")
    big = os.urandom(BIG)
    await xattr.put("c", "x", big, content_type="t/x", metadata={"by": "xattr"})
    await sidecar.put("c", "s", big, content_type="t/s", metadata={"by": "sidecar"})
    for reader in (xattr, sidecar):
        for key, by in (("x", "xattr"), ("s", "sidecar")):
            data, info = await reader.get("c", key)
            assert data == big and info.etag == quoted_md5(big)
            assert (info.content_type, dict(info.metadata)) == (f"t/{key}", {"by": by})
    # Overwritten by the other kind, the old record does not linger.
    await xattr.put("c", "s", b"new", metadata={"by": "xattr"})
    assert dict((await sidecar.get("c", "s"))[1].metadata) == {"by": "xattr"}
    assert sidecars(tmp_path) == [] or not xattrs_work(tmp_path)
    await xattr.close()
    await sidecar.close()


WRITER = """
import asyncio, sys
from asyncblobdict import LocalFileAdapter

async def main(root, store, rounds):
    a = LocalFileAdapter(root, durable=False, _metadata_store=store)
    for i in range(rounds):
        n = i % 4
        await a.put("c", "k", bytes([65 + n]) * (100 if n % 2 else 50_000),
                    content_type=f"type/{n}", metadata={"n": str(n)})
    await a.close()

asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
"""


@pytest.mark.parametrize("store", STORES)
async def test_readers_racing_a_writer_see_each_version_with_its_own_record(
    tmp_path: Path, store: str
) -> None:
    # A writer in another process replaces the value (small and large versions, each with
    # its own content type and metadata) while readers here read it: data, ETag, content
    # type and metadata always belong to one version, and never go missing.
    versions = {n: bytes([65 + n]) * (100 if n % 2 else 50_000) for n in range(4)}
    a = LocalFileAdapter(tmp_path, _metadata_store=store)  # type: ignore[arg-type]
    await a.put("c", "k", versions[0], content_type="type/0", metadata={"n": "0"})
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", WRITER, str(tmp_path), store, "400", env=env
    )
    seen: set[str] = set()
    reads = 0

    async def check(data: bytes, info: BlobInfo) -> None:
        n = int(info.metadata["n"])  # a KeyError here: a version read without its record
        assert data == versions[n]
        assert info.content_type == f"type/{n}"
        assert info.etag == quoted_md5(data) and info.size == len(data)
        seen.add(info.metadata["n"])

    async def read() -> None:
        nonlocal reads
        while proc.returncode is None:
            await check(*await a.get("c", "k"))
            info = await a.head("c", "k")
            assert info is not None
            await check(versions[int(info.metadata["n"])], info)
            reads += 1
            await asyncio.sleep(0)

    await asyncio.gather(read(), read(), proc.wait())
    assert proc.returncode == 0
    assert reads > 0 and len(seen) >= 2
    assert temp_files(tmp_path) == []
    assert len(sidecars(tmp_path)) == (1 if store == "sidecar" else 0)
    await a.close()


async def test_a_reader_whose_version_is_replaced_before_its_sidecar_is_read_looks_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = LocalFileAdapter(tmp_path, _metadata_store="sidecar")
    await a.put("c", "k", b"old" * 2000, metadata={"v": "old"})
    real = local_module._meta_name
    raced: list[str] = []

    def racing_meta_name(name: str, ino: int, mtime_ns: int) -> str:
        if not raced:  # the reader has opened the old version: replace it right now
            raced.append(name)
            a._put_sync("c", "k", b"new" * 2000, OVERWRITE, None, {"v": "new"})
        return real(name, ino, mtime_ns)

    monkeypatch.setattr(local_module, "_meta_name", racing_meta_name)
    data, info = await a.get("c", "k")
    assert raced == ["k"]
    assert (data[:3], dict(info.metadata), info.etag) == (b"new", {"v": "new"}, quoted_md5(data))
    await a.close()


def edit_in_place(path: Path, offset: int = 0) -> None:
    """Another program changes one byte in place: same size, no O_TRUNC, no rename."""
    fd = os.open(path, os.O_WRONLY)
    try:
        old = path.read_bytes()[offset : offset + 1]
        os.pwrite(fd, bytes([old[0] ^ 0xFF]), offset)
    finally:
        os.close(fd)


@pytest.mark.parametrize("size", [10, BIG, 3 * 1024 * 1024])
async def test_a_file_edited_in_place_by_another_program_is_hashed_again(
    meta_adapter: LocalFileAdapter, size: int
) -> None:
    # Immediately after our write, so within the same clock tick as the write itself: the
    # mark (20 ms in the past) is what tells the edit apart, not the tick.
    a = meta_adapter
    data = os.urandom(size)
    old_etag = await a.put("c", "k", data, content_type="t/t", metadata={"a": "1"})
    path = a.root / "c" / "k"
    edit_in_place(path, size // 2)
    edited = path.read_bytes()
    assert len(edited) == size and edited != data
    new_etag = quoted_md5(edited)
    info = await a.head("c", "k")
    assert info is not None and info.etag == new_etag and info.size == size
    got, ginfo = await a.get("c", "k")
    assert got == edited and ginfo.etag == new_etag
    assert ginfo.content_md5 == hashlib.md5(edited).digest()
    # The content type and metadata stay with the file where they are attributes of it;
    # a sidecar belongs to the version written, so an edited file reads like a foreign one.
    if where_records_are_now(a, "k") == "xattr":
        assert (ginfo.content_type, dict(ginfo.metadata)) == ("t/t", {"a": "1"})
    else:
        assert (ginfo.content_type, dict(ginfo.metadata)) == (None, {})
    with pytest.raises(ConcurrencyError):
        await a.put("c", "k", b"x", condition=Update(old_etag))
    with pytest.raises(ConcurrencyError):
        await a.delete("c", "k", condition=Update(old_etag))
    assert path.read_bytes() == edited
    await a.put("c", "k", b"after", condition=Update(new_etag))
    assert await pair(a, "c", "k") == (b"after", quoted_md5(b"after"))


def where_records_are_now(a: LocalFileAdapter, key: str) -> str:
    return "xattr" if has_xattr(a.root / "c" / key) else "sidecar"


async def test_a_file_edited_through_mmap_is_hashed_again(meta_adapter: LocalFileAdapter) -> None:
    import mmap

    a = meta_adapter
    data = os.urandom(BIG)
    await a.put("c", "k", data)
    with open(a.root / "c" / "k", "r+b") as f, mmap.mmap(f.fileno(), 0) as m:
        m[0] = data[0] ^ 0xFF
        m.flush()
    edited = (a.root / "c" / "k").read_bytes()
    info = await a.head("c", "k")
    assert info is not None and info.etag == quoted_md5(edited) != quoted_md5(data)


async def test_a_file_appended_to_or_truncated_is_hashed_again(
    meta_adapter: LocalFileAdapter,
) -> None:
    a = meta_adapter
    data = os.urandom(BIG)
    await a.put("c", "k", data)
    path = a.root / "c" / "k"
    with open(path, "ab") as f:
        f.write(b"tail")
    assert (await a.head("c", "k")).etag == quoted_md5(data + b"tail")  # type: ignore[union-attr]
    os.truncate(path, 10)
    assert await pair(a, "c", "k") == (data[:10], quoted_md5(data[:10]))


async def test_a_file_grown_with_its_mtime_put_back_is_hashed_again(
    meta_adapter: LocalFileAdapter,
) -> None:
    # A program that keeps files' times (cp -p, rsync -t, tar) can put the write's mtime
    # back after changing the bytes: the size still shows it is not the recorded version.
    a = meta_adapter
    data = os.urandom(BIG)
    await a.put("c", "k", data)
    path = a.root / "c" / "k"
    mark = path.stat().st_mtime_ns
    with open(path, "ab") as f:
        f.write(b"tail")
    os.utime(path, ns=(mark, mark))
    assert path.stat().st_mtime_ns == mark
    assert (await a.head("c", "k")).etag == quoted_md5(data + b"tail")  # type: ignore[union-attr]
    assert await pair(a, "c", "k") == (data + b"tail", quoted_md5(data + b"tail"))


@pytest.mark.parametrize("odd_mtime", [False, True])
async def test_a_file_written_by_another_program_gets_the_right_etag(
    adapter: LocalFileAdapter, odd_mtime: bool
) -> None:
    await adapter.put("c", "mine", b"x")  # creates the container
    for size in (5, BIG):
        data = os.urandom(size)
        path = adapter.root / "c" / f"theirs{size}"
        path.write_bytes(data)
        if odd_mtime:  # looks like one of our marks: the sidecar lookup finds nothing
            ns = path.stat().st_mtime_ns | 1
            os.utime(path, ns=(ns, ns))
        mtime = path.stat().st_mtime_ns
        info = await adapter.head("c", path.name)
        assert info is not None
        assert (info.etag, info.size, info.content_type, dict(info.metadata)) == (
            quoted_md5(data),
            size,
            None,
            {},
        )
        assert info.last_modified is not None
        assert abs(info.last_modified.timestamp() - mtime / 1e9) < 1e-5
        assert await pair(adapter, "c", path.name) == (data, quoted_md5(data))


@pytest.mark.parametrize("store", STORES)
async def test_a_damaged_record_is_ignored(tmp_path: Path, store: str) -> None:
    a = LocalFileAdapter(tmp_path, _metadata_store=store)  # type: ignore[arg-type]
    data = os.urandom(BIG)
    await a.put("c", "k", data, metadata={"a": "1"})
    path = tmp_path / "c" / "k"
    garbage = [
        b"",
        b"abd1",
        b"abd1 zz 1 2 3\n\n",
        b"\xff\xfe",
        b"abd1 " + b"0" * 32 + b" x 1 1\n\n",
    ]
    for raw in garbage:
        if store == "sidecar":
            st_ = path.stat()
            (path.parent / local_module._meta_name("k", st_.st_ino, st_.st_mtime_ns)).write_bytes(
                raw
            )
        else:
            os.setxattr(path, local_module.XATTR_NAME, raw)
        info = await a.head("c", "k")
        assert info is not None
        assert (info.etag, dict(info.metadata)) == (quoted_md5(data), {})
    await a.close()


async def test_a_filesystem_that_rounds_mtimes_keeps_records_but_hashes_every_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # FAT, exFAT, HFS+ or ext4 with small inodes cannot hold the mark to the nanosecond:
    # the rounded mark still names the sidecar, but proves nothing, so reads hash.
    round_mtimes(monkeypatch, 10_000_000)
    hashed: list[int] = []
    real_md5 = hashlib.md5

    def counting_md5(data: bytes = b"", **kwargs: Any) -> Any:
        hashed.append(len(data))
        return real_md5(data, **kwargs)

    for store in STORES:
        a = LocalFileAdapter(tmp_path / store, _metadata_store=store)  # type: ignore[arg-type]
        value = os.urandom(BIG)
        etag = await a.put("c", "k", value, content_type="t/t", metadata={"a": "1"})
        monkeypatch.setattr(hashlib, "md5", counting_md5)
        data, info = await a.get("c", "k")
        monkeypatch.setattr(hashlib, "md5", real_md5)
        assert hashed == [BIG]
        hashed.clear()
        assert (data, info.etag, info.content_type, dict(info.metadata)) == (
            value,
            etag,
            "t/t",
            {"a": "1"},
        )
        mtime_ns = (tmp_path / store / "c" / "k").stat().st_mtime_ns
        assert mtime_ns % 10_000_000 == 0  # rounded indeed
        assert info.last_modified is not None
        assert info.last_modified.timestamp() * 1e9 - mtime_ns >= local_module.MTIME_MARK_NS - 1e4
        await a.close()


async def test_once_a_mark_is_kept_writes_trust_it_and_a_rounded_one_only_costs_a_hash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # After one write saw its mark kept to the nanosecond, writes skip the fstat that
    # checks it. Should a later one be rounded after all (another filesystem mounted inside
    # the root), its record proves nothing: reads hash, and every answer stays right.
    a = LocalFileAdapter(tmp_path)
    await a.put("c", "k0", b"first")
    fstats: list[int] = []
    real_fstat = os.fstat

    def counting_fstat(fd: int) -> os.stat_result:
        fstats.append(fd)
        return real_fstat(fd)

    monkeypatch.setattr(os, "fstat", counting_fstat)
    await a.put("c", "k1", b"second")
    monkeypatch.setattr(os, "fstat", real_fstat)
    if a.metadata_store == "xattr":
        assert fstats == []
    real_utime = os.utime
    round_mtimes(monkeypatch, 10_000_000)
    value = os.urandom(BIG)
    etag = await a.put("c", "big", value, metadata={"a": "1"})
    monkeypatch.setattr(os, "utime", real_utime)
    assert (tmp_path / "c" / "big").stat().st_mtime_ns % 10_000_000 == 0
    hashed: list[int] = []
    real_md5 = hashlib.md5

    def counting_md5(data: bytes = b"", **kwargs: Any) -> Any:
        hashed.append(len(data))
        return real_md5(data, **kwargs)

    monkeypatch.setattr(hashlib, "md5", counting_md5)
    data, info = await a.get("c", "big")
    head = await a.head("c", "big")
    monkeypatch.setattr(hashlib, "md5", real_md5)
    assert (data, info.etag, dict(info.metadata)) == (value, etag, {"a": "1"})
    assert etag == quoted_md5(value) and head is not None and head.etag == etag
    assert BIG in hashed  # the record was not trusted
    await a.put("c", "big", b"new", condition=Update(etag))
    with pytest.raises(ConcurrencyError):
        await a.put("c", "big", b"newer", condition=Update(etag))
    await a.close()


class ReadCounter:
    """Counts the bytes this process reads through os.read / readv / pread / preadv."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.bytes = 0
        for name in ("read", "pread", "readv", "preadv"):
            real = getattr(os, name, None)
            if real is not None:
                monkeypatch.setattr(os, name, self._wrap(real))

    def _wrap(self, real: Any) -> Any:
        def counting(*args: Any, **kwargs: Any) -> Any:
            result = real(*args, **kwargs)
            self.bytes += len(result) if isinstance(result, bytes) else int(result)
            return result

        return counting


def rchar() -> int:
    with open("/proc/self/io") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("rchar:"))


@pytest.mark.parametrize("store", STORES)
async def test_head_and_conditional_changes_of_a_64_mib_value_read_none_of_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, store: str
) -> None:
    a = LocalFileAdapter(tmp_path, durable=False, _metadata_store=store)  # type: ignore[arg-type]
    value = os.urandom(64 * 1024 * 1024)
    etag = await a.put("c", "big", value, metadata={"a": "1"})
    await a.head("c", "big")  # the I/O threads are started
    counter = ReadCounter(monkeypatch)
    before = rchar()
    for _ in range(3):
        info = await a.head("c", "big")
        assert info is not None and info.etag == etag and info.size == len(value)
    with pytest.raises(ConcurrencyError):
        await a.delete("c", "big", condition=Update('"stale"'))
    with pytest.raises(ConcurrencyError):
        await a.put("c", "big", b"x", condition=CREATE)
    with pytest.raises(ConcurrencyError):
        await a.put("c", "big", b"x", condition=Update('"stale"'))
    await a.delete("c", "big", condition=Update(etag))
    assert counter.bytes < 4096  # a sidecar record at most
    if os.path.exists("/proc/self/io"):
        assert rchar() - before < 1024 * 1024
    assert await a.head("c", "big") is None
    await a.close()


async def test_get_of_a_large_value_trusts_its_record(
    meta_adapter: LocalFileAdapter, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = meta_adapter
    value = os.urandom(1024 * 1024)
    etag = await a.put("c", "k", value)
    hashed: list[int] = []
    real_md5 = hashlib.md5

    def counting_md5(data: bytes = b"", **kwargs: Any) -> Any:
        hashed.append(len(data))
        return real_md5(data, **kwargs)

    monkeypatch.setattr(hashlib, "md5", counting_md5)
    assert await pair(a, "c", "k") == (value, etag)
    assert hashed == []
    # A small value is simply hashed on every read.
    await a.put("c", "small", b"tiny")
    expected = quoted_md5(b"tiny")
    hashed.clear()
    assert await pair(a, "c", "small") == (b"tiny", expected)
    assert hashed == [4]


# -- sidecar files --------------------------------------------------------------------------


async def test_sidecar_orphans_are_removed_by_list_and_live_ones_kept(tmp_path: Path) -> None:
    a = LocalFileAdapter(tmp_path, _metadata_store="sidecar")
    long_name = "é" * 120  # 240 bytes: its sidecar's name holds a shortened form
    for key in ("f/a", "f/b", f"f/{long_name}"):
        await a.put("c", key, key.encode(), metadata={"k": "v"})
    folder = tmp_path / "c" / "f"
    live = sorted(p.name for p in folder.iterdir() if ".abd-meta-" in p.name)
    assert len(live) == 3
    old = time.time() - local_module.STALE_TEMP_SECONDS - 60
    for name in live:  # old, but each still describes its value: kept
        os.utime(folder / name, (old, old))
    # A crash's leftovers: sidecars of versions that never landed (or were replaced).
    orphans = [
        local_module._meta_name("a", 12345, 777),
        local_module._meta_name(long_name, 12345, 777),
        local_module._meta_name("gone", 1, 3),
    ]
    for name in orphans:
        (folder / name).write_bytes(b"abd1 x")
        os.utime(folder / name, (old, old))
    young = local_module._meta_name("b", 999, 555)  # may be a write in progress
    (folder / young).write_bytes(b"")
    # Listing part of the folder keeps the sidecars of the keys it does not list.
    assert await keys(a, prefix="f/b") == ["f/b"]
    assert await keys(a) == sorted(["f/a", "f/b", f"f/{long_name}"])
    left = sorted(p.name for p in folder.iterdir() if ".abd-meta-" in p.name)
    assert left == sorted([*live, young])
    for key in ("f/a", "f/b", f"f/{long_name}"):
        assert dict((await a.get("c", key))[1].metadata) == {"k": "v"}
    await a.close()


async def test_keys_shaped_like_sidecars_are_rejected_and_never_listed(
    adapter: LocalFileAdapter,
) -> None:
    side = ".k.abd-meta-0123456789abcdef-0123456789abcdef"
    await adapter.put("c", "k", b"v")
    (adapter.root / "c" / side).write_bytes(b"abd1")
    for key in (side, "f/" + side, side + "/x"):
        with pytest.raises(InvalidKeyError, match="metadata"):
            await adapter.put("c", key, b"")
        with pytest.raises(BlobNotFoundError):
            await adapter.get("c", key)
        assert await adapter.head("c", key) is None
        await adapter.delete("c", key)
    assert await keys(adapter) == ["k"]
    assert [n async for n in adapter.list_names("c")] == ["k"]
    allowed = [side + "0", side[1:], ".k.abd-meta-0123-4567"]
    for key in allowed:
        await adapter.put("c", key, b"ok")
    assert await keys(adapter) == sorted(["k", *allowed])


async def test_durable_sidecar_writes_fsync_the_sidecar_before_the_rename(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    events: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def spy_fsync(fd: int) -> None:
        target = os.readlink(f"/proc/self/fd/{fd}")
        events.append("dir" if os.path.isdir(target) else target.rsplit("/", 1)[1])
        real_fsync(fd)

    def spy_replace(*args: Any, **kwargs: Any) -> None:
        events.append("replace")
        real_replace(*args, **kwargs)

    a = LocalFileAdapter(tmp_path, _metadata_store="sidecar")
    await a.put("c", "k", b"x")
    monkeypatch.setattr(os, "fsync", spy_fsync)
    monkeypatch.setattr(os, "replace", spy_replace)
    await a.put("c", "k", b"y")
    assert len(events) == 4 and events[2:] == ["replace", "dir"], events
    assert events[0].startswith(".k.abd-meta-") and events[1].startswith(".k.abd-tmp-")
    await a.close()


# -- conditions (v2) ------------------------------------------------------------------------


async def test_delete_with_create_only_checks_that_the_key_is_absent(
    adapter: LocalFileAdapter,
) -> None:
    await adapter.delete("c", "k", condition=CREATE)  # nothing at all yet: a no-op
    await adapter.put("c", "k", b"v")
    await adapter.put("c", "d/e", b"w")
    with pytest.raises(ConcurrencyError):
        await adapter.delete("c", "k", condition=CREATE)
    assert await pair(adapter, "c", "k") == (b"v", quoted_md5(b"v"))
    for missing in ("nope", "d/nope", "x/y/z", "d"):  # "d" is a folder of keys, not a value
        await adapter.delete("c", missing, condition=CREATE)
    await adapter.delete("c", "x" * 300, condition=CREATE)  # can never be stored here
    assert await keys(adapter) == ["d/e", "k"]


async def test_a_failed_conditional_write_leaves_no_folders_behind(
    adapter: LocalFileAdapter,
) -> None:
    await adapter.put("c", "k", b"v")
    with pytest.raises(ConcurrencyError):
        await adapter.put("c", "new/deep/key", b"x", condition=Update('"nope"'))
    assert sorted(p.name for p in (adapter.root / "c").iterdir()) == ["k"]
    assert [n async for n in adapter.list_names("c", delimiter="/")] == ["k"]
    await adapter.put("c", "d/k", b"v")
    with pytest.raises(ConcurrencyError):
        await adapter.put("c", "d/k", b"x", condition=CREATE)
    assert await keys(adapter) == ["d/k", "k"]


# -- list_names -----------------------------------------------------------------------------

NAMES = ["a-b", "a/b", "a/c/d", "a/c/e", "a0", "ab", "b/x/y", "b/xz", "é", "Z", "a/c.d"]


async def fold(names: list[str], prefix: str) -> list[str]:
    async def gen() -> AsyncIterator[str]:
        for n in names:
            yield n

    return [n async for n in fold_levels(gen(), prefix)]


async def test_list_names_with_and_without_a_delimiter(adapter: LocalFileAdapter) -> None:
    assert [n async for n in adapter.list_names("c")] == []  # no root yet
    for key in NAMES:
        await adapter.put("c", key, key.encode())
    assert [n async for n in adapter.list_names("c")] == sorted(NAMES)
    assert [n async for n in adapter.list_names("c", delimiter="/")] == [
        "Z",
        "a-b",
        "a/",
        "a0",
        "ab",
        "b/",
        "é",
    ]
    assert [n async for n in adapter.list_names("c", "a/", delimiter="/")] == [
        "a/b",
        "a/c.d",
        "a/c/",
    ]
    # A prefix ending in the middle of a segment.
    assert [n async for n in adapter.list_names("c", "a/c", delimiter="/")] == ["a/c.d", "a/c/"]
    assert [n async for n in adapter.list_names("c", "b/x", delimiter="/")] == ["b/x/", "b/xz"]
    for prefix in ["", "a", "a/", "a/c", "a/c/", "a/c/d", "b", "b/x", "b/x/", "nope", "nope/", "é"]:
        expected = sorted(k for k in NAMES if k.startswith(prefix))
        assert [n async for n in adapter.list_names("c", prefix)] == expected, prefix
        folded = [n async for n in adapter.list_names("c", prefix, delimiter="/")]
        assert folded == await fold(expected, prefix), prefix
    for prefix in ("../", "x/../", "x//", "./", "/x"):
        assert [n async for n in adapter.list_names("c", prefix)] == []
    assert [n async for n in adapter.list_names("other")] == []  # missing container
    with pytest.raises(InvalidKeyError):
        [n async for n in adapter.list_names("c", delimiter="|")]
    with pytest.raises(InvalidKeyError):
        [n async for n in adapter.list_names("../x")]
    # Emptied, the container lists nothing (the folders went with the keys).
    for key in NAMES:
        await adapter.delete("c", key)
    assert [n async for n in adapter.list_names("c")] == []
    assert [n async for n in adapter.list_names("c", delimiter="/")] == []


async def test_list_names_skips_what_is_not_a_key(adapter: LocalFileAdapter, outside: Path) -> None:
    await adapter.put("c", "f/k", b"v")
    folder = adapter.root / "c" / "f"
    (folder / TEMP).write_bytes(b"in progress")
    (folder / ".k.abd-meta-0123456789abcdef-0123456789abcdef").write_bytes(b"")
    (folder / "link").symlink_to(outside / "secret")
    (adapter.root / "c" / "dirlink").symlink_to(outside, target_is_directory=True)
    os.mkfifo(folder / "pipe")
    (folder / "back\\slash").write_bytes(b"")
    (folder / "ctl\x01").write_bytes(b"")
    os.close(os.open(bytes(folder) + b"/bad\xff", os.O_CREAT | os.O_WRONLY))
    assert [n async for n in adapter.list_names("c")] == ["f/k"]
    assert [n async for n in adapter.list_names("c", "f/", delimiter="/")] == ["f/k"]
    assert await keys(adapter) == ["f/k"]


async def test_list_names_of_many_keys_and_deep_ones(tmp_path: Path) -> None:
    adapter = LocalFileAdapter(tmp_path, durable=False)
    written = [f"k{i:04d}" for i in range(2500)] + [f"f/{i}/v" for i in range(30)]
    written.append(DEEP_KEY)
    await asyncio.gather(*(adapter.put("c", k, b"") for k in written))
    assert [n async for n in adapter.list_names("c")] == sorted(written)
    folded = [n async for n in adapter.list_names("c", delimiter="/")]
    assert folded == ["d/", "f/", *sorted(f"k{i:04d}" for i in range(2500))]
    async for _ in adapter.list_names("c"):
        break  # stopping early leaves nothing open
    await adapter.close()


@pytest.mark.parametrize("method", ["list_names", "list_metadata"])
async def test_listing_stopped_early_closes_its_scan(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, method: str
) -> None:
    adapter = LocalFileAdapter(tmp_path, durable=False)
    # 60 folders of 60 keys: the first batch ends long before the scan does.
    written = [f"f{i:02d}/k{j:02d}" for i in range(60) for j in range(60)]
    await asyncio.gather(*(adapter.put("c", k, b"") for k in written))
    scan_names = adapter._scan_names
    ended: list[str] = []

    def watched(container: str, prefix: str, fold: bool) -> Iterator[list[str]]:
        try:
            yield from scan_names(container, prefix, fold)
        except GeneratorExit:
            ended.append("closed")
            raise
        ended.append("finished")

    monkeypatch.setattr(adapter, "_scan_names", watched)
    fds = sorted(os.listdir("/proc/self/fd"))
    listing = getattr(adapter, method)("c")
    async with contextlib.aclosing(listing):
        async for _ in listing:
            break
    # Closed as the caller leaves, not later by the garbage collector or a loop callback.
    assert ended == ["closed"]
    assert sorted(os.listdir("/proc/self/fd")) == fds
    listing = getattr(adapter, method)("c")
    assert len([n async for n in listing]) == len(written)
    assert ended == ["closed", "finished"]
    await adapter.close()


class CountingEntry:
    def __init__(self, entry: os.DirEntry[str], stats: list[str]) -> None:
        self._entry, self._stats = entry, stats
        self.name, self.path = entry.name, entry.path

    def is_dir(self, *, follow_symlinks: bool = True) -> bool:
        return self._entry.is_dir(follow_symlinks=follow_symlinks)

    def is_file(self, *, follow_symlinks: bool = True) -> bool:
        return self._entry.is_file(follow_symlinks=follow_symlinks)

    def is_symlink(self) -> bool:
        return self._entry.is_symlink()

    def inode(self) -> int:
        return self._entry.inode()

    def stat(self, *, follow_symlinks: bool = True) -> os.stat_result:
        self._stats.append(self.name)
        return self._entry.stat(follow_symlinks=follow_symlinks)


async def test_list_names_stats_no_key(
    adapter: LocalFileAdapter, monkeypatch: pytest.MonkeyPatch
) -> None:
    for i in range(50):
        await adapter.put("c", f"k{i}", b"v")
        await adapter.put("c", f"f{i % 5}/k{i}", b"v")
    stats: list[str] = []
    real_scandir, real_stat = os.scandir, os.stat

    class Scan:
        def __init__(self, target: Any) -> None:
            self._it = real_scandir(target)

        def __enter__(self) -> Iterator[CountingEntry]:
            return (CountingEntry(e, stats) for e in self._it)

        def __exit__(self, *exc: object) -> None:
            self._it.close()

    def counting_stat(*args: Any, **kwargs: Any) -> os.stat_result:
        stats.append(str(args[0]))
        return real_stat(*args, **kwargs)

    monkeypatch.setattr(os, "scandir", Scan)
    monkeypatch.setattr(os, "stat", counting_stat)
    monkeypatch.setattr(os, "lstat", counting_stat)
    names = [n async for n in adapter.list_names("c")]
    assert len(names) == 100 and stats == []
    assert len([n async for n in adapter.list_names("c", delimiter="/")]) == 55 and stats == []
    assert len(await keys(adapter)) == 100 and len(stats) == 100  # list does stat each key
