"""LocalFileAdapter: values as plain files under a root folder, standard library only.

Layout: ``<root>/<container>/<key>``; the key's ``/`` segments are folders and the file holds
the value's bytes, nothing else, so any tool can read it.

Guarantees (POSIX; Windows is not supported yet and the constructor says so):

==========================  ===================================================================
atomic                      every write goes to a temp file in the same folder, then
                            ``os.replace``; a reader (any thread or process) sees the old value
                            or the new one, never a torn one
durable (``durable=True``)  the temp file is fsynced before the replace and the folder after,
                            so a crash or power loss leaves the old value or the new one;
                            ``durable=False`` skips the fsyncs but never the atomic replace
process-safe                conditional writes and deletes (``if_match``/``if_none_match``)
                            check and replace under ``fcntl.flock``; every write and delete
                            takes the lock, so an unconditional write cannot slip between a
                            conditional write's check and its replace
contained                   folders are opened one segment at a time relative to their parent
                            (``openat`` with ``O_NOFOLLOW``), so no key, container name or
                            symlink planted inside a container reaches outside the root;
                            each parent is closed once its child is open, so an operation
                            holds a few descriptors however deep the key
fork-safe                   locks are released with ``LOCK_UN``, so a child forked while one
                            is held (and keeping a copy of its fd) cannot keep it held
==========================  ===================================================================

ETags are the quoted MD5 hex of the content (``'"<md5hex>"'``), the same digest Azure keeps as
Content-MD5, so ``head(...).content_md5`` compares across backends. They are computed from the
bytes actually read, never memoised: inode numbers are reused, so a (inode, mtime, size) memo
could hand out a stale ETag and break the conditional-write guarantee. Two writes of equal
bytes therefore have equal ETags.

Limits stated, not hidden:

* a key this backend cannot hold -- a segment longer than 255 bytes of UTF-8 (or than the
  filesystem allows), or a segment shaped like a temp file (``.<anything>.abd-tmp-<16 hex
  digits>``) -- is an InvalidKeyError for ``put``; since it can never be stored, ``get``
  raises BlobNotFoundError, ``head`` returns None and ``delete`` does nothing (without I/O);
* ``a`` and ``a/b`` cannot both exist: writing one while the other is stored raises
  StorageError and leaves the stored value untouched;
* the lock files live in ``<root>/.abd~locks/`` (64 of them, shared by all containers);
  ``~`` is not allowed in container names, so the folder can never clash with one;
* symlinks inside a container are never followed: a key whose folder path crosses one, or a
  ``get``/``head``/conditional write of a key that is one, raises StorageError; an
  unconditional ``put`` or ``delete`` replaces or removes the link itself, never its target;
  ``list`` skips them. The root folder itself may be a symlink.

``list`` yields keys in sorted order (as Python sorts str), with size and modification time
but no ETag. Stray temp files from a crash are never listed; ``list`` removes those older than
ten minutes. Empty folders left by a delete are removed (the container folder stays).
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import re
import stat
import time
import zlib
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager, suppress
from datetime import datetime, timezone
from pathlib import Path
from typing import TypeVar

from ..errors import (
    AsyncBlobDictError,
    BlobNotFoundError,
    ConcurrencyError,
    InvalidKeyError,
    StorageError,
)
from ..keys import validate_folder_container, validate_key, validate_prefix
from ._io_worker import IOWorker
from .base import BlobInfo

try:
    import fcntl as _fcntl
except ImportError:  # pragma: no cover - Windows
    _fcntl = None  # type: ignore[assignment]

__all__ = ["LOCK_FOLDER", "STALE_TEMP_SECONDS", "LocalFileAdapter"]

_log = logging.getLogger("asyncblobdict.local")

LOCK_FOLDER = ".abd~locks"
"""Folder under the root holding the lock files (never a valid container name)."""
LOCK_STRIPES = 64
STALE_TEMP_SECONDS = 600.0
"""Temp files older than this are a crash's leftovers, removed by ``list``."""

_MAX_SEGMENT_BYTES = 255
_TEMP_MARK = ".abd-tmp-"
_TEMP_RE = re.compile(r"\..*\.abd-tmp-[0-9a-f]{16}\Z", re.DOTALL)
_HASH_CHUNK = 1 << 20

_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_O_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
# O_NONBLOCK so a FIFO planted under a key cannot hang a worker thread in open().
_O_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
_ROOT_FLAGS = os.O_RDONLY | _O_DIRECTORY | _O_CLOEXEC
_DIR_FLAGS = _ROOT_FLAGS | _O_NOFOLLOW
_READ_FLAGS = os.O_RDONLY | _O_NOFOLLOW | _O_NONBLOCK | _O_CLOEXEC
_TEMP_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_NOFOLLOW | _O_CLOEXEC
_LOCK_FLAGS = os.O_RDWR | os.O_CREAT | _O_NOFOLLOW | _O_CLOEXEC

_SUPPORTED = (
    _fcntl is not None
    # os.replace takes dir_fd wherever os.rename does (it is missing from supports_dir_fd).
    and {os.open, os.rename, os.mkdir, os.unlink, os.rmdir, os.stat} <= os.supports_dir_fd
    and os.scandir in os.supports_fd
)


class _Missing(Exception):
    """Internal: a folder on the key's path does not exist (or is a value)."""


class _Vanished(FileNotFoundError):
    """Internal: a folder was removed (by a concurrent delete) while we were inside it."""

    def __init__(self) -> None:
        super().__init__(errno.ENOENT, "a folder was removed while in use")


_T = TypeVar("_T")
_Fds = list[int]
_Names = list[str]
_Batch = list[BlobInfo]
_Entries = list[tuple[str, str, "os.stat_result | None"]]


def _etag_of(digest: bytes) -> str:
    return f'"{digest.hex()}"'


def _is_temp_name(name: str) -> bool:
    return _TEMP_MARK in name and _TEMP_RE.match(name) is not None


def _temp_name(name: str) -> str:
    raw = name.encode("utf-8")
    if len(raw) > 200:  # leave room for the marker within the 255-byte name limit
        name = raw[:200].decode("utf-8", "ignore")
    return f".{name}{_TEMP_MARK}{os.urandom(8).hex()}"


def _valid_segment(name: str) -> bool:
    try:
        validate_key(name)
    except InvalidKeyError:
        return False
    return "/" not in name


def _read_all(fd: int) -> bytes | None:
    """The whole content of an open regular file, or None if it is not a regular file."""
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        return None
    size = st.st_size
    # Files are replaced, never rewritten in place, so fstat's size is the size; asking
    # for one byte more still catches a file someone else appends to.
    data = os.read(fd, size + 1)
    if len(data) == size:
        return data
    chunks = [data]
    while True:
        more = os.read(fd, max(size, _HASH_CHUNK))
        if not more:
            return b"".join(chunks)
        chunks.append(more)


def _hash_open(fd: int) -> tuple[bytes, int, float] | None:
    """(MD5 digest, size, mtime) of an open regular file without keeping its bytes."""
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        return None
    md5 = hashlib.md5(usedforsecurity=False)
    size = 0
    while True:
        chunk = os.read(fd, _HASH_CHUNK)
        if not chunk:
            return md5.digest(), size, st.st_mtime_ns / 1e9
        md5.update(chunk)
        size += len(chunk)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _close_all(fds: _Fds) -> None:
    for fd in reversed(fds):
        os.close(fd)


def _mtime(st: os.stat_result) -> datetime:
    return datetime.fromtimestamp(st.st_mtime_ns / 1e9, timezone.utc)


class LocalFileAdapter:
    """Stores each value as a file ``<root>/<container>/<key>`` (see the module docstring).

    ``root`` is created on the first write. ``durable=False`` skips the fsyncs (faster, and
    still atomic, but a power loss may lose recent writes). ``io_threads`` sizes the pool of
    threads doing the blocking file I/O (default: the number of CPUs, between 2 and 4); the
    event loop never touches the disk. One adapter may be used from several event loops, one
    after another or at once. POSIX only.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        durable: bool = True,
        io_threads: int | None = None,
    ) -> None:
        if not _SUPPORTED:
            raise StorageError(
                "LocalFileAdapter needs a POSIX system (fcntl.flock and dir_fd file "
                "operations); Windows is not supported yet"
            )
        self.root = Path(os.path.abspath(os.fspath(root)))
        self.durable = durable
        self._root = str(self.root)
        if io_threads is None:
            # More threads than CPUs only add GIL contention for small operations; at least
            # two, so one slow fsync does not hold up every read.
            io_threads = max(2, min(4, os.cpu_count() or 1))
        self._io = IOWorker(io_threads, name="asyncblobdict-local")
        self._good_containers: set[str] = set()

    def __repr__(self) -> str:
        return f"LocalFileAdapter(root={self._root!r}, durable={self.durable})"

    @property
    def io_threads(self) -> int:
        """How many threads do the blocking file I/O."""
        return self._io.threads

    # -- names -------------------------------------------------------------------------

    @staticmethod
    def validate_container(container: str) -> str:
        """Check a container name (one folder name) before any I/O."""
        return validate_folder_container(container)

    def _check_container(self, container: str) -> None:
        if container in self._good_containers:
            return
        self.validate_container(container)
        if len(self._good_containers) < 1024:
            self._good_containers.add(container)

    def _check(self, container: str, key: str) -> str | None:
        """Validate; return why this backend cannot hold the (valid) key, or None."""
        self._check_container(container)
        validate_key(key, container)
        # A segment of at most 63 characters is at most 252 bytes of UTF-8.
        if len(key) > 63:
            for segment in key.split("/"):
                if len(segment) > 63 and len(segment.encode("utf-8")) > _MAX_SEGMENT_BYTES:
                    return (
                        f"a key segment is {len(segment.encode('utf-8'))} bytes of UTF-8; "
                        f"the local backend allows {_MAX_SEGMENT_BYTES}"
                    )
        if _TEMP_MARK in key and any(_is_temp_name(s) for s in key.split("/")):
            return (
                "a key segment shaped like '.<name>.abd-tmp-<16 hex digits>' is "
                "reserved for the local backend's temp files"
            )
        return None

    # -- the protocol ------------------------------------------------------------------

    async def get(self, container: str, key: str) -> tuple[bytes, str]:
        """Read the value and its ETag (the MD5 of exactly the bytes returned)."""
        if self._check(container, key) is not None:
            raise BlobNotFoundError("key not found", container=container, key=key)
        return await self._io.run(self._get_sync, container, key)

    async def head(self, container: str, key: str) -> BlobInfo | None:
        """Size, ETag, modification time and MD5 digest (reads the file to hash it)."""
        if self._check(container, key) is not None:
            return None
        return await self._io.run(self._head_sync, container, key)

    async def put(
        self,
        container: str,
        key: str,
        data: bytes,
        *,
        if_match: str | None = None,
        if_none_match: bool = False,
    ) -> str:
        """Replace the value atomically under the given precondition; return the new ETag."""
        problem = self._check(container, key)
        if problem is not None:
            raise InvalidKeyError(problem, container=container, key=key)
        if not isinstance(data, bytes):
            data = bytes(data)
        return await self._io.run(self._put_sync, container, key, data, if_match, if_none_match)

    async def delete(self, container: str, key: str, *, if_match: str | None = None) -> None:
        """Remove the value and any folders it leaves empty (the container folder stays)."""
        if self._check(container, key) is not None:
            if if_match is not None:
                _check_condition(container, key, None, if_match, False)
            return
        await self._io.run(self._delete_sync, container, key, if_match)

    async def list(self, container: str, prefix: str = "") -> AsyncIterator[BlobInfo]:
        """Yield the keys starting with ``prefix`` in sorted order (no ETags)."""
        self._check_container(container)
        validate_prefix(prefix, container)
        scan = self._scan(container, prefix)
        while True:
            batch = await self._io.run(self._take, scan, container)
            for info in batch:
                yield info
            if len(batch) < _LIST_BATCH:
                return

    async def close(self) -> None:
        """Stop the I/O threads. Safe to call twice; the adapter starts them again if used."""
        await self._io.close()

    # -- blocking parts (run in the I/O threads) ---------------------------------------

    def _read_value(self, container: str, key: str, read: Callable[[int], _T | None]) -> _T | None:
        """Open the key's file without following symlinks and apply ``read`` to its fd.

        None when the key is missing (or is not a regular file, or its name is longer than
        this filesystem allows, so it can never have been stored).
        """
        parts = key.split("/")
        try:
            fds = self._walk(container, parts[:-1], key, create=False)
            try:
                fd = os.open(parts[-1], _READ_FLAGS, dir_fd=fds[-1])
            finally:
                _close_all(fds)
            try:
                return read(fd)
            finally:
                os.close(fd)
        except (_Missing, FileNotFoundError):
            return None
        except OSError as exc:
            if exc.errno != errno.ENAMETOOLONG:
                raise self._os_error(exc, "read", container, key) from None
            return None

    def _get_sync(self, container: str, key: str) -> tuple[bytes, str]:
        data = self._read_value(container, key, _read_all)
        if data is None:
            raise BlobNotFoundError("key not found", container=container, key=key)
        return data, _etag_of(hashlib.md5(data, usedforsecurity=False).digest())

    def _head_sync(self, container: str, key: str) -> BlobInfo | None:
        found = self._read_value(container, key, _hash_open)
        if found is None:
            return None
        digest, size, mtime = found
        return BlobInfo(
            key, size, _etag_of(digest), datetime.fromtimestamp(mtime, timezone.utc), digest
        )

    def _put_sync(
        self, container: str, key: str, data: bytes, if_match: str | None, if_none_match: bool
    ) -> str:
        etag = _etag_of(hashlib.md5(data, usedforsecurity=False).digest())
        parts = key.split("/")
        name = parts[-1]
        try:
            # A concurrent delete may remove a folder we just created before our temp file
            # lands in it; then walk (and create) again.
            for _ in range(16):
                try:
                    fds = self._walk(container, parts[:-1], key, create=True)
                except _Vanished:
                    continue
                try:
                    if self._put_in(fds, container, key, name, data, if_match, if_none_match):
                        return etag
                finally:
                    _close_all(fds)
            raise StorageError(
                "a folder on the key's path kept disappearing while writing",
                container=container,
                key=key,
            )
        except OSError as exc:
            raise self._os_error(exc, "write", container, key) from None

    def _put_in(
        self,
        fds: _Fds,
        container: str,
        key: str,
        name: str,
        data: bytes,
        if_match: str | None,
        if_none_match: bool,
    ) -> bool:
        folder = fds[-1]
        tmp = _temp_name(name)
        placed = False
        try:
            tfd = os.open(tmp, _TEMP_FLAGS, 0o666, dir_fd=folder)
        except FileNotFoundError:
            return False
        try:
            try:
                _write_all(tfd, data)
                if self.durable:
                    os.fsync(tfd)
            finally:
                os.close(tfd)
            # Written and flushed before taking the lock, so the lock is held only for the
            # check and the rename.
            with self._locked(fds[0], container, key):
                if if_match is not None or if_none_match:
                    current = self._current_etag(folder, name)
                    _check_condition(container, key, current, if_match, if_none_match)
                try:
                    os.replace(tmp, name, src_dir_fd=folder, dst_dir_fd=folder)
                except OSError as exc:
                    if exc.errno in (errno.EISDIR, errno.ENOTEMPTY, errno.EEXIST):
                        raise StorageError(
                            f"{key!r} is a folder of other keys (such as '{key}/...'), so it "
                            "cannot hold a value on the local backend",
                            container=container,
                            key=key,
                        ) from None
                    raise
                placed = True
        finally:
            if not placed:
                try:
                    os.unlink(tmp, dir_fd=folder)
                except OSError as exc:  # the original error matters more
                    _log.warning("could not remove temp file %r: %s", tmp, exc)
        if self.durable:
            os.fsync(folder)
        return True

    def _delete_sync(self, container: str, key: str, if_match: str | None) -> None:
        parts = key.split("/")
        name = parts[-1]
        try:
            try:
                fds = self._walk(container, parts[:-1], key, create=False, keep=_PRUNE_WINDOW)
            except _Missing:
                if if_match is not None:
                    _check_condition(container, key, None, if_match, False)
                return
            try:
                folder = fds[-1]
                with self._locked(fds[0], container, key):
                    if if_match is not None:
                        current = self._current_etag(folder, name)
                        _check_condition(container, key, current, if_match, False)
                    try:
                        os.unlink(name, dir_fd=folder)
                    except OSError as exc:
                        # Missing, or a folder of other keys (EISDIR on Linux, EPERM on macOS).
                        if exc.errno in (errno.ENOENT, errno.EISDIR, errno.EPERM):
                            return
                        raise
                if self.durable:
                    os.fsync(folder)
                self._prune(container, parts[:-1], key, fds)
            finally:
                _close_all(fds)
        except OSError as exc:
            if exc.errno != errno.ENAMETOOLONG:
                raise self._os_error(exc, "delete", container, key) from None
            if if_match is not None:
                _check_condition(container, key, None, if_match, False)

    def _prune(self, container: str, folders: _Names, key: str, fds: _Fds) -> None:
        """Remove the folders a delete left empty, deepest first, never the container.

        ``fds`` is the delete's walk: the root, then the fds of the last folders of the path
        (at most _PRUNE_WINDOW). Removing folder ``d`` (the container is 0) needs the fd of
        folder ``d - 1``; above the window the path is walked again from the root, replacing
        the contents of ``fds`` (the caller closes whatever it holds at the end), so the
        descriptors held stay bounded however deep the key.
        """
        depth = len(folders)  # the folder that held the value
        lowest = depth - (len(fds) - 2)  # the folder whose fd is fds[1]
        while depth >= 1:
            if depth - 1 < lowest:
                _close_all(fds)
                fds.clear()
                try:
                    fds += self._walk(
                        container, folders[: depth - 1], key, create=False, keep=_PRUNE_WINDOW
                    )
                except (_Missing, AsyncBlobDictError, OSError):
                    return  # changed meanwhile: leave the rest for the next delete
                lowest = depth - 1 - (len(fds) - 2)
            try:
                os.rmdir(folders[depth - 1], dir_fd=fds[depth - lowest])
            except OSError:
                return  # not empty (or gone), so neither are the folders above it
            depth -= 1

    # -- listing -----------------------------------------------------------------------

    def _take(self, scan: Iterator[BlobInfo], container: str) -> _Batch:
        batch: _Batch = []
        try:
            for info in scan:
                batch.append(info)
                if len(batch) >= _LIST_BATCH:
                    break
        except OSError as exc:
            raise self._os_error(exc, "list", container, None) from None
        return batch

    def _scan(self, container: str, prefix: str) -> Iterator[BlobInfo]:
        folders = prefix.rpartition("/")[0]
        start = folders.split("/") if folders else []
        if any(not _valid_segment(s) for s in start):
            return  # no key has such a folder, so none can start with this prefix
        yield from self._scan_folder(container, start, prefix)

    def _scan_folder(self, container: str, parts: _Names, prefix: str) -> Iterator[BlobInfo]:
        base = "/".join(parts) + "/" if parts else ""
        entries = self._read_folder(container, parts, base, prefix)
        for sort_key, name, st in entries:
            if st is None:
                yield from self._scan_folder(container, [*parts, name], prefix)
            else:
                yield BlobInfo(sort_key, st.st_size, None, _mtime(st))

    def _read_folder(self, container: str, parts: _Names, base: str, prefix: str) -> _Entries:
        """One folder's matching entries, sorted: (sort key, name, stat or None for a folder).

        A folder sorts as ``name + "/"``: every key below it starts with that, so visiting
        entries in this order yields keys in exactly the order Python sorts them.
        """
        try:
            fds = self._walk(container, parts, None, create=False)
        except _Missing:
            return []
        except StorageError as exc:  # a symlink on the way: skipped, never followed
            _log.warning("list skips %s", exc)
            return []
        out: _Entries = []
        try:
            folder = fds[-1]
            with os.scandir(folder) as it:
                for entry in it:
                    name = entry.name
                    if name.startswith(".") and _is_temp_name(name):
                        self._maybe_remove_stale(folder, entry)
                        continue
                    candidate = base + name
                    if entry.is_dir(follow_symlinks=False):
                        candidate += "/"
                        if (
                            candidate.startswith(prefix) or prefix.startswith(candidate)
                        ) and _valid_segment(name):
                            out.append((candidate, name, None))
                    elif (
                        entry.is_file(follow_symlinks=False)
                        and candidate.startswith(prefix)
                        and _valid_segment(name)
                    ):
                        with suppress(FileNotFoundError):  # deleted while we looked
                            out.append((candidate, name, entry.stat(follow_symlinks=False)))
        finally:
            _close_all(fds)
        out.sort(key=lambda item: item[0])
        return out

    def _maybe_remove_stale(self, folder: int, entry: os.DirEntry[str]) -> None:
        try:
            st = entry.stat(follow_symlinks=False)
            # Young temp files may belong to a write in progress in another process.
            if stat.S_ISREG(st.st_mode) and st.st_mtime < time.time() - STALE_TEMP_SECONDS:
                os.unlink(entry.name, dir_fd=folder)
                _log.info("removed stale temp file %r", entry.path)
        except OSError:
            pass

    # -- helpers -----------------------------------------------------------------------

    def _walk(
        self, container: str, folders: _Names, key: str | None, *, create: bool, keep: int = 1
    ) -> _Fds:
        """Open root, container and each folder relative to its parent, never via a symlink.

        Returns the root fd, then the fds of the last ``keep`` folders of the path (the
        container counts as the first folder); the caller closes them. Each parent is closed
        once its child is open, so a deep key costs a bounded number of descriptors, not one
        per segment (openat on the open parent is what keeps the walk inside the root, and
        that needs only the parent). Raises _Missing if a folder does not exist (or is a
        value) and ``create`` is false.
        """
        try:
            root = os.open(self._root, _ROOT_FLAGS)
        except FileNotFoundError:
            if not create:
                raise _Missing from None
            os.makedirs(self._root, exist_ok=True)
            root = os.open(self._root, _ROOT_FLAGS)
        fds = [root]
        try:
            fds.append(self._open_folder(root, container, container, key, 0, create))
            for depth, name in enumerate(folders, 1):
                fds.append(self._open_folder(fds[-1], name, container, key, depth, create))
                if len(fds) > keep + 1:
                    os.close(fds.pop(1))
        except BaseException:
            _close_all(fds)
            raise
        return fds

    def _open_folder(
        self,
        parent: int,
        name: str,
        container: str,
        key: str | None,
        depth: int,
        create: bool,
        *,
        durable: bool = True,
    ) -> int:
        for _ in range(16):
            try:
                return os.open(name, _DIR_FLAGS, dir_fd=parent)
            except FileNotFoundError:
                if not create:
                    raise _Missing from None
                try:
                    os.mkdir(name, dir_fd=parent)
                except FileExistsError:
                    continue
                except FileNotFoundError:
                    raise _Vanished from None  # the parent itself was just removed
                if durable and self.durable:
                    os.fsync(parent)
            except OSError as exc:
                if exc.errno not in (errno.ENOTDIR, errno.ELOOP):
                    raise
                self._not_a_folder(parent, name, container, key, depth, create)
        raise StorageError(f"folder {name!r} keeps disappearing", container=container, key=key)

    def _not_a_folder(
        self, parent: int, name: str, container: str, key: str | None, depth: int, create: bool
    ) -> None:
        try:
            st = os.stat(name, dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError:
            return  # gone meanwhile: the caller tries again
        where = "container folder" if depth == 0 else "folder"
        if stat.S_ISLNK(st.st_mode):
            raise StorageError(
                f"the {where} {name!r} on the key's path is a symbolic link; the local "
                "backend never follows symlinks inside its root",
                container=container,
                key=key,
            )
        if not create:
            raise _Missing
        if depth == 0:
            raise StorageError(
                f"{os.path.join(self._root, name)!r} exists and is not a folder",
                container=container,
                key=key,
            )
        assert key is not None
        value = "/".join(key.split("/")[:depth])
        raise StorageError(
            f"{value!r} is a value, so {key!r} cannot be stored beside it on the local backend",
            container=container,
            key=key,
        )

    def _current_etag(self, folder: int, name: str) -> str | None:
        try:
            fd = os.open(name, _READ_FLAGS, dir_fd=folder)
        except FileNotFoundError:
            return None
        try:
            found = _hash_open(fd)
        finally:
            os.close(fd)
        return None if found is None else _etag_of(found[0])

    @contextmanager
    def _locked(self, root: int, container: str, key: str) -> Iterator[None]:
        """Hold the key's stripe lock (across threads and processes) for the block.

        flock belongs to the open file description, so opening the lock file anew for each
        operation makes threads of one process exclude each other too. The lock is released
        with LOCK_UN, not by closing the fd: a fork() while we hold it gives the child a copy
        of the fd (O_CLOEXEC only acts on exec), and the description, with its lock, would
        live on until the child exits, stalling every writer of the stripe.
        """
        stripe = zlib.crc32(f"{container}/{key}".encode()) % LOCK_STRIPES
        # Lock files hold no data, so their folder need not survive a crash.
        locks = self._open_folder(root, LOCK_FOLDER, container, key, 0, True, durable=False)
        try:
            fd = os.open(f"{stripe:02d}.lock", _LOCK_FLAGS, 0o666, dir_fd=locks)
        finally:
            os.close(locks)
        try:
            assert _fcntl is not None
            _fcntl.flock(fd, _fcntl.LOCK_EX)
            try:
                yield
            finally:
                _fcntl.flock(fd, _fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def _os_error(
        self, exc: OSError, action: str, container: str, key: str | None
    ) -> AsyncBlobDictError:
        if exc.errno == errno.ENAMETOOLONG:
            return InvalidKeyError(
                "a key segment is longer than this filesystem allows", container=container, key=key
            )
        if exc.errno == errno.ELOOP:
            return StorageError(
                "the key is a symbolic link; the local backend never follows symlinks inside "
                "its root",
                container=container,
                key=key,
            )
        code = errno.errorcode.get(exc.errno, None) if exc.errno is not None else None
        _log.debug("%s failed in %r: %s", action, self._root, exc)
        return StorageError(
            f"cannot {action} under {self._root!r}: {exc.strerror or exc}",
            container=container,
            key=key,
            error_code=code,
        )


_LIST_BATCH = 512
# Folder fds a delete keeps open to remove the folders it leaves empty (deeper keys walk again).
_PRUNE_WINDOW = 8


def _check_condition(
    container: str, key: str, current: str | None, if_match: str | None, if_none_match: bool
) -> None:
    if if_none_match and current is not None:
        raise ConcurrencyError("key already exists", container=container, key=key)
    if if_match is not None and current != if_match:
        raise ConcurrencyError(
            "key was changed or deleted since it was read", container=container, key=key
        )
