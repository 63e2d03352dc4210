"""LocalFileAdapter: values as plain files under a root folder, standard library only.

Layout: ``<root>/<container>/<key>``; the key's ``/`` segments are folders and the file holds
the value's bytes, nothing else, so any tool can read it. A small *record* travels with each
file: its content type, metadata, the MD5 of its content and the proof that the file is
still the one that MD5 was computed for (see docs/local.md).

Guarantees (POSIX; Windows is not supported yet and the constructor says so):

==========================  ===================================================================
atomic                      every write goes to a temp file in the same folder, then
                            ``os.replace``; a reader (any thread or process) sees the old value
                            or the new one, never a torn one, and the record (content type,
                            metadata, ETag) that belongs to the version it read
durable (``durable=True``)  the temp file (with its record) is fsynced before the replace and
                            the folder after, so a crash or power loss leaves the old value or
                            the new one; ``durable=False`` skips the fsyncs but never the
                            atomic replace
process-safe                conditional writes and deletes (``Update``/``CREATE``) check and
                            replace under ``fcntl.flock``; every write and delete takes the
                            lock, so an unconditional write cannot slip between a conditional
                            write's check and its replace
contained                   folders are opened in one ``openat2`` (Linux) that follows no
                            symlink: by whole path from a root path without symlinks, else
                            relative to the root with ``RESOLVE_BENEATH``; elsewhere one
                            segment at a time relative to their parent (``openat`` with
                            ``O_NOFOLLOW``), so no key,
                            container name or symlink planted inside a container reaches
                            outside the root; each parent is closed once its child is open,
                            so an operation holds a few descriptors however deep the key
loop never waits            a small ``get`` first tries to finish on the event loop from the
                            kernel's caches alone (``openat2`` with ``RESOLVE_CACHED``,
                            ``preadv`` with ``RWF_NOWAIT``) and goes to the I/O threads
                            whenever that might wait for the disk (see ``_get_fast``)
fork-safe                   locks are released with ``LOCK_UN``, so a child forked while one
                            is held (and keeping a copy of its fd) cannot keep it held
==========================  ===================================================================

The record is one extended attribute, ``user.asyncblobdict``, set on the temp file before the
rename, so the rename switches data and record together. Where the filesystem has no
extended attributes (probed on the first write; or when a record is too big for one, as
ext4's 4 KiB), it is a *sidecar* file ``.<name>.abd-meta-<inode>-<mtime_ns>`` beside the
value, written (and fsynced) before the rename and named after the identity of the file it
describes, so a reader finds the record of exactly the version it opened. Readers look for
both, so adapters of either kind share a root.

ETags are the quoted MD5 hex of the content (``'"<md5hex>"'``), the same digest Azure keeps as
Content-MD5. The MD5 is computed once, when the value is written, and kept in the record; it
is trusted only while the file is provably untouched since: the write sets the file's mtime to
a mark ``M`` 20 ms in the past (odd nanoseconds) and records it and the size, and any later
in-place change by another program moves the mtime to the kernel's "now", which is later than
``M`` by more than one clock tick. A file whose mtime or size differ, that has no record
(written by another program), or whose filesystem rounded the mark, is hashed; so are values
of at most :data:`SMALL_VALUE_BYTES`, whose MD5 costs a few microseconds.

Limits stated, not hidden:

* a key this backend cannot hold -- a segment longer than 255 bytes of UTF-8 (or than the
  filesystem allows), or a segment shaped like a temp file (``.<anything>.abd-tmp-<16 hex
  digits>``) or a sidecar (``.<anything>.abd-meta-<16 hex>-<16 hex>``) -- is an
  InvalidKeyError for ``put``; since it can never be stored, ``get`` raises
  BlobNotFoundError, ``head`` returns None and ``delete`` does nothing (without I/O);
* ``a`` and ``a/b`` cannot both exist: writing one while the other is stored raises
  StorageError and leaves the stored value untouched;
* the lock files live in ``<root>/.abd~locks/`` (64 of them, shared by all containers);
  ``~`` is not allowed in container names, so the folder can never clash with one;
* symlinks inside a container are never followed: a key whose folder path crosses one, or a
  ``get``/``head``/conditional write of a key that is one, raises StorageError; an
  unconditional ``put`` or ``delete`` replaces or removes the link itself, never its target;
  ``list`` skips them. The root folder itself may be a symlink.

``list`` yields keys in sorted order (as Python sorts str), with size and modification time
but no ETag. ``list_names`` yields names alone from the folder entries (no per-key stat);
with ``delimiter="/"`` it reads one folder and never descends. Stray temp and sidecar files
from a crash are never listed; ``list`` removes those older than ten minutes. Empty folders
left by a delete (or by a failed conditional write) are removed (the container folder stays).
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import logging
import os
import random
import re
import stat
import time
import zlib
from collections.abc import AsyncIterable, AsyncIterator, Callable, Generator, Iterator, Mapping
from contextlib import AbstractContextManager, suppress
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal, TypeVar

from ..errors import (
    AsyncBlobDictError,
    BlobNotFoundError,
    ConcurrencyError,
    InvalidKeyError,
    StorageError,
)
from ..keys import MAX_KEY_LENGTH, validate_folder_container, validate_key, validate_prefix
from . import _fastread
from ._fastread import RESOLVE_BENEATH, RESOLVE_CACHED, RESOLVE_NO_SYMLINKS, SwapWatch
from ._io_worker import IOWorker
from ._loop_turns import turns_for
from .base import (
    OVERWRITE,
    BlobInfo,
    Create,
    Overwrite,
    Precondition,
    Update,
    check_condition,
    check_delimiter,
    check_range,
    range_end,
    validate_content_type,
    validate_metadata,
)

try:
    import fcntl as _fcntl
except ImportError:  # pragma: no cover - Windows
    _fcntl = None  # type: ignore[assignment]

__all__ = [
    "LOCK_FOLDER",
    "MTIME_MARK_NS",
    "FAST_READ_BYTES",
    "FAST_SLICE_SECONDS",
    "SMALL_VALUE_BYTES",
    "STALE_TEMP_SECONDS",
    "XATTR_NAME",
    "LocalFileAdapter",
]

_log = logging.getLogger("asyncblobdict.local")

LOCK_FOLDER = ".abd~locks"
"""Folder under the root holding the lock files (never a valid container name)."""
LOCK_STRIPES = 64
STALE_TEMP_SECONDS = 600.0
"""Temp and sidecar files older than this that belong to no value are removed by ``list``."""
XATTR_NAME = "user.asyncblobdict"
"""The extended attribute holding a value's record."""
MTIME_MARK_NS = 20_000_000
"""How far in the past a write sets its file's mtime (more than any kernel clock tick)."""
_LOCK_PATHS = [f"{LOCK_FOLDER}/{stripe:02d}.lock".encode() for stripe in range(LOCK_STRIPES)]
_IN_ATTRIBUTE = 0b01
_IN_SIDECAR = 0b11
SMALL_VALUE_BYTES = 4096
"""Values up to this size are hashed on every read instead of trusting their record."""

FAST_READ_BYTES = 64 * 1024
"""Values up to this size may be read on the event loop when that needs no disk access."""

FAST_SLICE_SECONDS = 0.001
"""Reads on the loop in one iteration of the event loop take about this long, plus one read;
further readers wait for a later iteration, one reader per iteration, in turn."""

_MAX_SEGMENT_BYTES = 255
_TEMP_MARK = ".abd-tmp-"
_TEMP_RE = re.compile(r"\..*\.abd-tmp-[0-9a-f]{16}\Z", re.DOTALL)
_META_MARK = ".abd-meta-"
_META_RE = re.compile(r"\..*\.abd-meta-[0-9a-f]{16}-[0-9a-f]{16}\Z", re.DOTALL)
_META_TAIL = len(_META_MARK) + 33  # ".abd-meta-" + 16 hex + "-" + 16 hex
_SHORT_NAME_BYTES = 200  # room for a marker within the 255-byte name limit
_HASH_CHUNK = 1 << 20
READ_CHUNK = 1 << 20
"""Bytes per ``pread`` of ``open_read``."""
_MAX_RECORD_BYTES = 64 * 1024
_RECORD_TAG = "abd1"
# Opening a key again because the version opened was replaced before its sidecar was read.
_REOPEN_ATTEMPTS = 8

_HAS_XATTR = hasattr(os, "getxattr") and hasattr(os, "setxattr")
_ENODATA = getattr(errno, "ENODATA", getattr(errno, "ENOATTR", errno.ENOENT))
_XATTR_UNSUPPORTED = frozenset({errno.ENOTSUP, errno.EOPNOTSUPP})
# setxattr: the record does not fit (ext4 keeps all of a file's attributes in one 4 KiB
# block) or is refused for this file; a sidecar holds it instead.
_XATTR_REFUSED = frozenset({errno.E2BIG, errno.ENOSPC, errno.ERANGE, errno.EPERM, errno.EACCES})
# getxattr: this file has no (readable) record.
_XATTR_ABSENT = _XATTR_UNSUPPORTED | _XATTR_REFUSED | {_ENODATA}

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
# The read on the loop: O_NOATIME (allowed on files we own; EPERM otherwise, and the read
# goes to a thread) so that the read dirties no inode, which on a journalling filesystem
# could wait for the journal.
_FAST_FLAGS = _READ_FLAGS | getattr(os, "O_NOATIME", 0)
_FAST_RESOLVE = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_CACHED
_FAST_DIRECT = RESOLVE_NO_SYMLINKS | RESOLVE_CACHED
_AT_FDCWD = -100
_BENEATH = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS
_WHOLE = RESOLVE_NO_SYMLINKS  # a whole path from a root path that holds no symlink
# In a walk's descriptors, where the root's would be: it was not opened (see _walk).
_NO_ROOT = -1
# Looked up at call time, so tests can make them report "would block" or be slow.
_preadv = getattr(os, "preadv", None)
_RWF_NOWAIT = getattr(os, "RWF_NOWAIT", 0)
_NOWAIT_UNSUPPORTED = frozenset({errno.EOPNOTSUPP, errno.ENOTSUP, errno.EINVAL})
# How a LocalFileAdapter may read on the loop: not yet known, never, with RWF_NOWAIT, or with
# a plain pread (a memory filesystem while no swap is active).
_FAST_UNKNOWN = 0
_FAST_OFF = 1
_FAST_NOWAIT = 2
_FAST_MEMORY = 3

_SUPPORTED = (
    _fcntl is not None
    # os.replace takes dir_fd wherever os.rename does (it is missing from supports_dir_fd).
    and {os.open, os.rename, os.mkdir, os.unlink, os.rmdir, os.stat} <= os.supports_dir_fd
    and os.scandir in os.supports_fd
    and os.utime in os.supports_fd
)


class _Missing(Exception):
    """Internal: a folder on the key's path does not exist (or is a value)."""


class _Vanished(FileNotFoundError):
    """Internal: a folder was removed (by a concurrent delete) while we were inside it."""

    def __init__(self) -> None:
        super().__init__(errno.ENOENT, "a folder was removed while in use")


class _Replaced(Exception):
    """Internal: the version opened was replaced before its sidecar record was read."""


class _Again:
    """Internal: the version looked at changed meanwhile; look at the key again."""


_AGAIN = _Again()


_T = TypeVar("_T")
_Fds = list[int]
_Names = list[str]
_Batch = list[_T]
_Entries = list[tuple[str, str, "os.stat_result | None"]]
_DirEntries = list["os.DirEntry[str]"]
_Listed = list[tuple[str, Mapping[str, str]]]


@dataclass(slots=True)
class _Record:
    """What a write knows about the version it wrote, kept with the file.

    Encoded as ASCII lines: ``abd1 <md5 hex> <size> <mtime mark ns> <written ns>``, the
    content type (empty for none), then one ``name=value`` line per metadata item (names are
    identifiers and values printable ASCII, so neither holds a newline).
    """

    md5: bytes
    size: int
    mtime_ns: int
    written_ns: int
    content_type: str | None
    metadata: dict[str, str]

    def encode(self) -> bytes:
        text = (
            f"{_RECORD_TAG} {self.md5.hex()} {self.size} {self.mtime_ns} {self.written_ns}\n"
            f"{self.content_type or ''}\n"
        )
        if self.metadata:
            text += "".join([f"{name}={value}\n" for name, value in self.metadata.items()])
        return text.encode("ascii")

    @staticmethod
    def decode(raw: bytes) -> _Record | None:
        """The record, or None if ``raw`` is not one (damaged, or another program's)."""
        try:
            lines = raw.decode("ascii").split("\n")
            head = lines[0].split(" ")
            if len(head) != 5 or head[0] != _RECORD_TAG or len(lines) < 3 or lines[-1]:
                return None
            md5 = bytes.fromhex(head[1])
            metadata = dict(line.split("=", 1) for line in lines[2:-1]) if len(lines) > 3 else {}
            record = _Record(
                md5, int(head[2]), int(head[3]), int(head[4]), lines[1] or None, metadata
            )
        except ValueError:  # includes UnicodeDecodeError, and a line without "="
            return None
        return record if len(md5) == 16 else None


@dataclass(slots=True)
class _Found:
    """A stored version as a read saw it."""

    size: int
    md5: bytes
    modified_ns: int
    record: _Record | None
    data: bytes | None

    def info(self, key: str) -> BlobInfo:
        record = self.record
        return BlobInfo(
            key,
            self.size,
            _etag_of(self.md5),
            datetime.fromtimestamp(self.modified_ns / 1e9, timezone.utc),
            self.md5,
            record.content_type if record is not None else None,
            dict(record.metadata) if record is not None else {},
        )


@dataclass(slots=True)
class _TempWrite:
    """A write in progress: the key's folder walk, its temp file and how far it got."""

    fds: _Fds
    name: str
    tmp: str
    fd: int | None
    sidecar: str | None = None
    placed: bool = False


def _write_hash(fd: int, md5: Any, chunk: bytes | bytearray | memoryview) -> int:
    """Append ``chunk`` to the temp file and to the running MD5; return its length."""
    view = memoryview(chunk).cast("B")
    md5.update(view)
    while view:
        view = view[os.write(fd, view) :]
    return len(memoryview(chunk).cast("B"))


def _etag_of(digest: bytes) -> str:
    return f'"{digest.hex()}"'


def _md5(data: bytes) -> bytes:
    return hashlib.md5(data, usedforsecurity=False).digest()


def _is_reserved_name(name: str) -> bool:
    """A temp or sidecar file's name (never a key segment, never listed)."""
    return (_TEMP_MARK in name and _TEMP_RE.match(name) is not None) or (
        _META_MARK in name and _META_RE.match(name) is not None
    )


def _short(name: str) -> str:
    if len(name) <= _SHORT_NAME_BYTES // 4:  # at most 4 bytes of UTF-8 per character
        return name
    raw = name.encode("utf-8", "surrogateescape")
    if len(raw) > _SHORT_NAME_BYTES:
        return raw[:_SHORT_NAME_BYTES].decode("utf-8", "ignore")
    return name


# Temp names need to be unique, not secret: a generator seeded once (and again in a forked
# child) saves a getrandom call per write. Our own, so that random.seed() cannot make two
# processes pick the same names.
_names = random.Random()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_names.seed)


def _temp_name(name: str) -> str:
    return f".{_short(name)}{_TEMP_MARK}{_names.getrandbits(64):016x}"


def _meta_name(name: str, ino: int, mtime_ns: int) -> str:
    """The sidecar of the version of ``name`` with this inode and mtime."""
    return f".{_short(name)}{_META_MARK}{ino:016x}-{mtime_ns:016x}"


def _meta_identity(sidecar: str) -> tuple[str, int, int]:
    """(short name, inode, mtime_ns) of the version a sidecar name belongs to."""
    return sidecar[1:-_META_TAIL], int(sidecar[-33:-17], 16), int(sidecar[-16:], 16)


def _mark(now_ns: int, in_sidecar: bool) -> int:
    """The mtime a write at ``now_ns`` gives its file (see docs/local.md, "ETags"): odd, and
    its second bit says where the record went (0: the file's attribute, 1: a sidecar)."""
    return ((now_ns - MTIME_MARK_NS) & ~3) | (_IN_SIDECAR if in_sidecar else _IN_ATTRIBUTE)


def _record_in_attribute(st: os.stat_result) -> bool:
    """Whether this version still has the mark of a write whose record is in the attribute:
    replacing it leaves no sidecar to remove. (Versions written before marks said so, and
    rewritten ones, may be wrong here: their sidecar then stays, an orphan ``list`` removes.)"""
    return st.st_mtime_ns & 3 == _IN_ATTRIBUTE


def _may_have_sidecar(st: os.stat_result) -> bool:
    # A sidecar's name holds the inode and the mtime as 16 hex digits each.
    return 0 < st.st_mtime_ns < 1 << 64 and 0 <= st.st_ino < 1 << 64


def _valid_segment(name: str) -> bool:
    """Whether a (user-given) folder name can be a key segment."""
    try:
        validate_key(name)
    except InvalidKeyError:
        return False
    return "/" not in name


def _valid_entry(name: str) -> bool:
    """Whether a folder entry's name can be a key segment (scandir never gives '', '.', '..'
    or '/'); printable ASCII without a backslash is the fast, common case."""
    if name.isascii():
        return name.isprintable() and "\\" not in name
    return _valid_segment(name)


def _read_open(fd: int, size: int) -> bytes:
    """The content of an open regular file whose fstat said ``size``."""
    # Asking for one byte more catches a file someone else appends to.
    data = os.read(fd, size + 1)
    if len(data) == size:
        return data
    chunks = [data]
    while True:
        more = os.read(fd, max(size, _HASH_CHUNK))
        if not more:
            return b"".join(chunks)
        chunks.append(more)


def _hash_open(fd: int) -> tuple[bytes, int]:
    """(MD5 digest, size) of an open regular file without keeping its bytes."""
    md5 = hashlib.md5(usedforsecurity=False)
    size = 0
    while True:
        chunk = os.read(fd, _HASH_CHUNK)
        if not chunk:
            return md5.digest(), size
        md5.update(chunk)
        size += len(chunk)


class _StripeLock:
    """A stripe lock held for a ``with`` block (``LocalFileAdapter._locked``).

    flock belongs to the open file description, so opening the lock file anew for each
    operation makes threads of one process exclude each other too. The lock is released
    with LOCK_UN, not by closing the fd: a fork() while we hold it gives the child a copy
    of the fd (O_CLOEXEC only acts on exec), and the description, with its lock, would
    live on until the child exits, stalling every writer of the stripe.
    """

    __slots__ = ("_adapter", "_container", "_fd", "_key", "_root", "_shared")

    def __init__(
        self, adapter: LocalFileAdapter, root: int, container: str, key: str, shared: bool
    ) -> None:
        self._adapter = adapter
        self._root = root
        self._container = container
        self._key = key
        self._shared = shared
        self._fd = -1

    def __enter__(self) -> None:
        assert _fcntl is not None
        fd = self._adapter._open_lock(self._root, self._container, self._key)
        try:
            _fcntl.flock(fd, _fcntl.LOCK_SH if self._shared else _fcntl.LOCK_EX)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd

    def __exit__(self, *exc_info: object) -> None:
        assert _fcntl is not None
        fd, self._fd = self._fd, -1
        try:
            _fcntl.flock(fd, _fcntl.LOCK_UN)
        finally:
            os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    written = os.write(fd, data)  # all of it, nearly always: no view needed
    if written < len(data):
        view = memoryview(data)[written:]
        while view:
            view = view[os.write(fd, view) :]


def _close_all(fds: _Fds) -> None:
    for fd in reversed(fds):
        if fd != _NO_ROOT:
            os.close(fd)


def _lstat(folder: int, name: str) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=folder, follow_symlinks=False)
    except FileNotFoundError:
        return None


def _mtime(st: os.stat_result) -> datetime:
    return datetime.fromtimestamp(st.st_mtime_ns / 1e9, timezone.utc)


def _check_precondition(condition: object) -> None:
    if not isinstance(condition, (Overwrite, Create, Update)):
        raise InvalidKeyError(
            f"condition must be OVERWRITE, CREATE or Update(etag), not {condition!r}"
        )


class LocalFileAdapter:
    """Stores each value as a file ``<root>/<container>/<key>`` (see the module docstring).

    ``root`` is created on the first write. ``durable=False`` skips the fsyncs (faster, and
    still atomic, but a power loss may lose recent writes). ``io_threads`` sizes the pool of
    threads doing the blocking file I/O (default: the number of CPUs, between 2 and 4); the
    event loop never waits for the disk (small reads from the kernel's caches finish on it).
    ``fast_reads`` and ``fast_declines`` count the ``get`` calls finished on the loop and the
    tries that went to the threads instead. One adapter may be used from several event loops, one
    after another or at once. POSIX only.

    ``_metadata_store="sidecar"`` (private, for tests) keeps every record in a sidecar file
    even where extended attributes work.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        durable: bool = True,
        io_threads: int | None = None,
        _metadata_store: Literal["auto", "sidecar"] = "auto",
    ) -> None:
        if not _SUPPORTED:
            raise StorageError(
                "LocalFileAdapter needs a POSIX system (fcntl.flock and dir_fd file "
                "operations); Windows is not supported yet"
            )
        if _metadata_store not in ("auto", "sidecar"):
            raise ValueError(
                f"_metadata_store must be 'auto' or 'sidecar', not {_metadata_store!r}"
            )
        self.root = Path(os.path.abspath(os.fspath(root)))
        self.durable = durable
        self._root = str(self.root)
        self._root_b = os.fsencode(self._root)
        if io_threads is None:
            # More threads than CPUs only add GIL contention for small operations; at least
            # two, so one slow fsync does not hold up every read.
            io_threads = max(2, min(4, os.cpu_count() or 1))
        self._io = IOWorker(io_threads, name="asyncblobdict-local")
        self._good_containers: set[str] = set()
        # Records go to an extended attribute until the filesystem says it has none.
        self._xattrs = _HAS_XATTR and _metadata_store == "auto"
        self._mark_kept = False  # whether a write saw its mtime mark kept to the nanosecond
        self._root_is_plain: bool | None = None  # see _plain_root
        self._decoded: dict[bytes, _Record] = {}
        # Reading on the loop (see _get_fast): how, the device it is allowed on (the root's),
        # and how often it was done (tests look at these counters).
        self._fast_mode = _FAST_UNKNOWN
        self._fast_dev = -1
        self._fast_direct = False
        self._fast_fstype: str | None = None
        self._fast_prefix = self._root_b.rstrip(b"/") + b"/"
        self._swap = SwapWatch()
        self.fast_reads = 0
        self.fast_declines = 0

    def __repr__(self) -> str:
        return f"LocalFileAdapter(root={self._root!r}, durable={self.durable})"

    @property
    def io_threads(self) -> int:
        """How many threads do the blocking file I/O."""
        return self._io.threads

    @property
    def metadata_store(self) -> Literal["xattr", "sidecar"]:
        """Where new records go: ``"xattr"`` until a write finds the filesystem has none."""
        return "xattr" if self._xattrs else "sidecar"

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
        if ".abd-" in key:
            for segment in key.split("/"):
                if _TEMP_MARK in segment and _TEMP_RE.match(segment) is not None:
                    return (
                        "a key segment shaped like '.<name>.abd-tmp-<16 hex digits>' is "
                        "reserved for the local backend's temp files"
                    )
                if _META_MARK in segment and _META_RE.match(segment) is not None:
                    return (
                        "a key segment shaped like '.<name>.abd-meta-<16 hex>-<16 hex>' is "
                        "reserved for the local backend's metadata files"
                    )
        return None

    # -- the protocol ------------------------------------------------------------------

    async def get(self, container: str, key: str) -> tuple[bytes, BlobInfo]:
        """Read the value and what is known of it; ``info.etag`` is the MD5 of these bytes."""
        if self._check(container, key) is not None:
            raise BlobNotFoundError("key not found", container=container, key=key)
        if self._fast_mode > _FAST_OFF:
            # A read on the loop does not suspend its task: readers take turns (see
            # _loop_turns) so that none keeps the loop beyond FAST_SLICE_SECONDS.
            loop = asyncio.get_running_loop()
            turns = turns_for(loop)
            if turns.must_wait(loop, FAST_SLICE_SECONDS):
                await turns.wait_turn(loop)
            got = self._get_fast(container, key)
            if got is not None:
                self.fast_reads += 1
                return got
            self.fast_declines += 1
        return await self._io.run(self._get_sync, container, key)

    def _get_fast(self, container: str, key: str) -> tuple[bytes, BlobInfo] | None:
        """Read a small value on the event loop if that needs no disk access; None (go to
        the I/O threads) whenever it might: a path not in the kernel's caches, a page not in
        the page cache, a large value, a sidecar record, any error.

        Same steps and result as the thread path (``_inspect_once`` then ``_found_read``): one
        descriptor, its fstat, its record, its bytes.
        """
        # Resolved from the dentry cache only (RESOLVE_CACHED: it fails where a lookup would
        # need I/O), never following a symlink. With a root path free of symlinks, one open
        # of the whole path: no symlink anywhere and no ".." (no key or container holds one)
        # keeps it beneath the root, and a root replaced by a symlink later fails (ELOOP).
        path = f"{container}/{key}".encode()
        if self._fast_direct:
            fd = _fastread.try_openat2_cached(
                _AT_FDCWD, self._fast_prefix + path, _FAST_FLAGS, _FAST_DIRECT
            )
        else:
            root = _fastread.try_openat2_cached(
                _AT_FDCWD, self._root_b, _ROOT_FLAGS, RESOLVE_CACHED
            )
            if root < 0:
                return None
            fd = _fastread.try_openat2_cached(root, path, _FAST_FLAGS, _FAST_RESOLVE)
            os.close(root)
        if fd < 0:
            return None
        try:
            found = self._read_fast(fd)
        except OSError:
            found = None
        finally:
            os.close(fd)
        if found is None or found.data is None:
            return None
        return found.data, found.info(key)

    def _read_fast(self, fd: int) -> _Found | None:
        st = os.fstat(fd)
        if (
            not stat.S_ISREG(st.st_mode)
            or st.st_size > FAST_READ_BYTES
            # Another filesystem mounted inside the root since the probe.
            or st.st_dev != self._fast_dev
            # Replaced meanwhile: our close may free the file, which a thread should do.
            or st.st_nlink == 0
        ):
            return None
        try:
            # The inode is in memory (the file is open) and a record is small: ext4, XFS and
            # Btrfs keep it in the inode itself (docs/local.md, "Reading on the loop").
            raw = os.getxattr(fd, XATTR_NAME)
        except OSError:
            return None  # no attribute: maybe a sidecar, or another program's file
        record = self._decode(raw)
        if self._fast_mode == _FAST_NOWAIT:
            buf = bytearray(st.st_size + 1)
            try:
                assert _preadv is not None
                got = _preadv(fd, [buf], 0, _RWF_NOWAIT)
            except OSError as exc:
                if exc.errno in _NOWAIT_UNSUPPORTED:
                    self._nowait_unsupported()
                return None  # EAGAIN: some of it is not in the page cache
            if got != st.st_size:
                return None  # partly cached (a short count), or changed meanwhile
            data = bytes(memoryview(buf)[:got])
        elif self._fast_mode == _FAST_MEMORY:
            if self._swap.active():
                return None
            data = os.pread(fd, st.st_size + 1, 0)
            if len(data) != st.st_size:
                return None
        else:
            return None  # turned off (RWF_NOWAIT refused on a disk) while this reader waited
        return _found_read(fd, st, record, data)

    def _nowait_unsupported(self) -> None:
        """RWF_NOWAIT refused (tmpfs on many kernels): a memory filesystem's pages are read
        with a plain pread while no swap is active; anywhere else reads stay in the threads."""
        fstype = self._fast_fstype
        self._fast_mode = _FAST_MEMORY if fstype in _fastread.MEMORY_FILESYSTEMS else _FAST_OFF
        _log.info("RWF_NOWAIT not supported under %r (%s)", self._root, fstype)

    def _probe_fast(self) -> None:
        """Decide (in an I/O thread, once the root exists) whether reads may try the loop."""
        if not (_fastread.OPENAT2_CACHED and _preadv is not None and _RWF_NOWAIT):
            self._fast_mode = _FAST_OFF
            return
        try:
            dev = os.stat(self._root).st_dev
        except OSError:
            return  # no root yet: look again on a later read
        fstype, nested = _fastread.filesystem_of(self._root)
        if nested or fstype not in (_fastread.NOWAIT_FILESYSTEMS | _fastread.MEMORY_FILESYSTEMS):
            # A filesystem whose open() may ask a server (FUSE, NFS...), or one mounted
            # inside the root.
            self._fast_mode = _FAST_OFF
            _log.info("reads under %r stay in the I/O threads (%s)", self._root, fstype)
            return
        self._fast_dev = dev
        self._fast_fstype = fstype
        self._fast_direct = os.path.realpath(self._root) == self._root
        self._fast_mode = _FAST_NOWAIT

    async def head(self, container: str, key: str) -> BlobInfo | None:
        """Size, ETag, modification time, MD5 digest, content type and metadata.

        Reads the record, not the value (unless the value is small, or the file was changed
        by another program and must be hashed).
        """
        if self._check(container, key) is not None:
            return None
        return await self._io.run(self._head_sync, container, key)

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
        """Replace the value, its content type and metadata atomically under ``condition``;
        return the new ETag."""
        problem = self._check(container, key)
        if problem is not None:
            raise InvalidKeyError(problem, container=container, key=key)
        _check_precondition(condition)
        content_type = validate_content_type(content_type)
        meta = validate_metadata(metadata)
        if not isinstance(data, bytes):
            data = bytes(data)
        return await self._io.run(
            self._put_sync, container, key, data, condition, content_type, meta
        )

    async def open_read(
        self, container: str, key: str, *, offset: int = 0, length: int | None = None
    ) -> tuple[BlobInfo, AsyncIterator[bytes]]:
        """Open the stored version once; its bytes come as ``pread`` calls on that one
        descriptor, so a later replace (a new file) never shows through."""
        check_range(offset, length)
        if self._check(container, key) is not None:
            raise BlobNotFoundError("key not found", container=container, key=key)
        job = self._io.run(self._open_sync, container, key)
        try:
            opened = await asyncio.shield(job)
        except asyncio.CancelledError:
            await asyncio.wait([job])
            if not job.cancelled() and job.exception() is None:
                result = job.result()
                if result is not None:
                    os.close(result[0])
            raise
        if opened is None:
            raise BlobNotFoundError("key not found", container=container, key=key)
        fd, st, found = opened
        end = range_end(found.size, offset, length)
        return found.info(key), self._preads(fd, st, container, key, offset, end)

    async def _preads(
        self, fd: int, st: os.stat_result, container: str, key: str, start: int, end: int
    ) -> AsyncIterator[bytes]:
        try:
            pos = start
            while pos < end:
                chunk = await self._settled(os.pread, fd, min(READ_CHUNK, end - pos), pos)
                if not chunk:
                    break
                pos += len(chunk)
                yield chunk
            after = await self._settled(os.fstat, fd)
            if pos < end or (after.st_size, after.st_mtime_ns) != (st.st_size, st.st_mtime_ns):
                raise ConcurrencyError(
                    "the file was changed in place by another program during the read",
                    container=container,
                    key=key,
                )
        except OSError as exc:
            raise self._os_error(exc, "read", container, key) from None
        finally:
            os.close(fd)

    async def _settled(self, fn: Callable[..., _T], *args: Any) -> _T:
        """Run ``fn`` in the I/O threads; if cancelled, wait for it to end before raising,
        so the caller's cleanup (closing the fd it uses) never races it."""
        job = self._io.run(fn, *args)
        try:
            return await asyncio.shield(job)
        except asyncio.CancelledError:
            await asyncio.wait([job])
            raise

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
        """Stream the chunks into a temp file (hashing as they go), then place it as ``put``
        does. A failing stream, a wrong ``size`` or cancellation removes the temp file."""
        problem = self._check(container, key)
        if problem is not None:
            raise InvalidKeyError(problem, container=container, key=key)
        _check_precondition(condition)
        content_type = validate_content_type(content_type)
        meta = validate_metadata(metadata)
        tw = await self._settled(self._start_write, container, key)
        try:
            md5 = hashlib.md5(usedforsecurity=False)
            total = 0
            try:
                async for chunk in chunks:
                    if len(chunk):
                        assert tw.fd is not None
                        total += await self._settled(_write_hash, tw.fd, md5, chunk)
            except OSError as exc:
                raise self._os_error(exc, "write", container, key) from None
            if size is not None and size != total:
                raise StorageError(
                    f"the stream gave {total} bytes, not the {size} announced",
                    container=container,
                    key=key,
                )
            digest = md5.digest()
            await self._settled(
                self._place_sync, tw, container, key, digest, total, condition, content_type, meta
            )
        finally:
            if not tw.placed or tw.fd is not None:
                await self._settled(self._end_write, tw, container, key)
            else:
                _close_all(tw.fds)
        return _etag_of(digest)

    def _start_write(self, container: str, key: str) -> _TempWrite:
        parts = key.split("/")
        try:
            for _ in range(16):
                try:
                    fds = self._walk(container, parts[:-1], key, create=True)
                except _Vanished:
                    continue
                try:
                    tw = self._open_temp(fds, parts[-1])
                except BaseException:
                    _close_all(fds)
                    raise
                if tw is not None:
                    return tw
                _close_all(fds)
        except OSError as exc:
            raise self._os_error(exc, "write", container, key) from None
        raise StorageError(
            "a folder on the key's path kept disappearing while writing",
            container=container,
            key=key,
        )

    def _place_sync(
        self,
        tw: _TempWrite,
        container: str,
        key: str,
        md5: bytes,
        size: int,
        condition: Precondition,
        content_type: str | None,
        metadata: dict[str, str],
    ) -> None:
        try:
            self._place(tw, container, key, md5, size, condition, content_type, metadata)
        except OSError as exc:
            raise self._os_error(exc, "write", container, key) from None

    def _end_write(self, tw: _TempWrite, container: str, key: str) -> None:
        """After a streamed write stopped short: no temp file, no folders it created."""
        try:
            self._abandon(tw)
            parts = key.split("/")
            if not tw.placed and len(parts) > 1:
                self._prune(container, parts[:-1], key, tw.fds)
        finally:
            _close_all(tw.fds)

    async def delete(
        self, container: str, key: str, *, condition: Precondition = OVERWRITE
    ) -> None:
        """Remove the value and any folders it leaves empty (the container folder stays)."""
        _check_precondition(condition)
        if self._check(container, key) is not None:
            check_condition(container, key, None, condition)
            return
        await self._io.run(self._delete_sync, container, key, condition)

    async def list(self, container: str, prefix: str = "") -> AsyncIterator[BlobInfo]:
        """Yield the keys starting with ``prefix`` in sorted order (size and mtime, no ETag)."""
        self._check_container(container)
        validate_prefix(prefix, container)
        scan = self._scan(container, prefix)
        while True:
            batch = await self._io.run(self._take, scan, container, _LIST_BATCH)
            for info in batch:
                yield info
            if len(batch) < _LIST_BATCH:
                return

    def list_names(
        self, container: str, prefix: str = "", *, delimiter: str | None = None
    ) -> AsyncIterator[str]:
        """Yield the names starting with ``prefix`` in sorted order, from the folder entries
        alone; with ``delimiter="/"`` the keys directly below ``prefix`` and each folder
        there once (``prefix...sub/``), without descending into it."""
        return self._listing(self._scan_names, container, prefix, delimiter)

    def list_metadata(
        self, container: str, prefix: str = "", *, delimiter: str | None = None
    ) -> AsyncIterator[tuple[str, Mapping[str, str]]]:
        """The names ``list_names`` yields, each with its value's metadata from its record
        (one open and ``fgetxattr`` per key, or a read of its sidecar); a folder's is empty.
        A key deleted between the folder's scan and its record's read is left out."""
        return self._listing(self._scan_metadata, container, prefix, delimiter)

    async def _listing(
        self,
        scan_of: Callable[[str, str, bool], Generator[_Batch[_T], None, None]],
        container: str,
        prefix: str,
        delimiter: str | None,
    ) -> AsyncIterator[_T]:
        """Yield the items of ``scan_of``'s runs, taken a batch at a time in the I/O threads.
        The arguments are checked on the first step, as in an ``async def`` listing."""
        check_delimiter(delimiter)
        self._check_container(container)
        validate_prefix(prefix, container)
        scan = scan_of(container, prefix, delimiter is not None)
        try:
            while True:
                batch, done = await self._io.run(self._take_names, scan, container)
                for item in batch:
                    yield item
                if done:
                    return
        except GeneratorExit:
            # The caller stopped early (this arrives only at a yield, so no thread is running
            # the scan). Close it now: the I/O thread that ran it may not have dropped it yet,
            # and the last reference would then end it later, in that thread.
            scan.close()
            raise

    async def container_exists(self, container: str) -> bool:
        """Whether the container's folder exists (an emptied container keeps its folder)."""
        self._check_container(container)
        return await self._io.run(self._container_exists_sync, container)

    def _container_exists_sync(self, container: str) -> bool:
        try:
            st = os.stat(os.path.join(self._root, container), follow_symlinks=False)
        except OSError:
            return False
        return stat.S_ISDIR(st.st_mode)

    async def close(self) -> None:
        """Stop the I/O threads. Safe to call twice; the adapter starts them again if used."""
        await self._io.close()

    # -- reading (in the I/O threads) --------------------------------------------------

    def _in_folder(
        self, container: str, key: str, action: Callable[[_Fds, str], _T | None]
    ) -> _T | None:
        """Apply ``action([root_fd, folder_fd], name)`` in the key's folder, opened without
        following symlinks. None when the folder is missing (or its name is longer than this
        filesystem allows, so the key can never have been stored)."""
        parts = key.split("/")
        try:
            fds = self._walk(container, parts[:-1], key, create=False)
            try:
                return action(fds, parts[-1])
            finally:
                _close_all(fds)
        except _Missing:
            return None
        except OSError as exc:
            if exc.errno != errno.ENAMETOOLONG:
                raise self._os_error(exc, "read", container, key) from None
            return None

    def _get_sync(self, container: str, key: str) -> tuple[bytes, BlobInfo]:
        if self._fast_mode == _FAST_UNKNOWN:
            self._probe_fast()

        def read(fds: _Fds, name: str) -> _Found | None:
            return self._inspect(
                fds[-1], name, True, lambda: self._locked(fds[0], container, key, shared=True)
            )

        found = self._in_folder(container, key, read)
        if found is None:
            raise BlobNotFoundError("key not found", container=container, key=key)
        assert found.data is not None
        return found.data, found.info(key)

    def _head_sync(self, container: str, key: str) -> BlobInfo | None:
        def read(fds: _Fds, name: str) -> _Found | None:
            return self._inspect(
                fds[-1], name, False, lambda: self._locked(fds[0], container, key, shared=True)
            )

        found = self._in_folder(container, key, read)
        return None if found is None else found.info(key)

    def _open_sync(self, container: str, key: str) -> tuple[int, os.stat_result, _Found] | None:
        """Open the stored version for reading: (fd, its fstat, what is known of it); the
        caller closes the fd. None when missing."""

        def open_version(fds: _Fds, name: str) -> tuple[int, os.stat_result, _Found] | None:
            folder = fds[-1]
            for attempt in range(_REOPEN_ATTEMPTS + 1):
                settle = attempt < _REOPEN_ATTEMPTS
                try:
                    fd = os.open(name, _READ_FLAGS, dir_fd=folder)
                except FileNotFoundError:
                    return None
                try:
                    st = os.fstat(fd)
                    if not stat.S_ISREG(st.st_mode):
                        os.close(fd)
                        return None
                    try:
                        record = self._record(fd, folder, name, st, settle=settle)
                        found = _examine(fd, st, record, False, settle)
                    except _Replaced:
                        found = None
                except BaseException:
                    os.close(fd)
                    raise
                if found is not None:
                    return fd, os.fstat(fd), found
                os.close(fd)
            return None  # pragma: no cover - the last attempt does not settle

        return self._in_folder(container, key, open_version)

    def _inspect(
        self,
        folder: int,
        name: str,
        read: bool,
        shared_lock: Callable[[], AbstractContextManager[None]] | None,
    ) -> _Found | None:
        """The version of ``name`` stored now, with its bytes if ``read``; None if missing
        (or not a regular file). Raises OSError (ELOOP for a symlink).

        In the rare case that the version opened is replaced before its sidecar is read (the
        writer removes the old sidecar), the key is opened again; after a few such races the
        last attempts run under the key's lock taken shared (``shared_lock``, None when the
        caller holds it already), where no writer of this backend can replace it.
        """
        for _ in range(_REOPEN_ATTEMPTS):
            found = self._inspect_once(folder, name, read, settle=True)
            if not isinstance(found, _Again):
                return found
        if shared_lock is not None:
            with shared_lock():
                found = self._inspect_once(folder, name, read, settle=True)
                if not isinstance(found, _Again):
                    return found
        # Changed by another program under every attempt: take whatever is there now.
        found = self._inspect_once(folder, name, read, settle=False)
        assert not isinstance(found, _Again)
        return found

    def _inspect_once(
        self, folder: int, name: str, read: bool, *, settle: bool
    ) -> _Found | _Again | None:
        """One attempt of ``_inspect``: a _Found, None (missing), or _AGAIN if ``settle``
        and the version changed under it."""
        try:
            fd = os.open(name, _READ_FLAGS, dir_fd=folder)
        except FileNotFoundError:
            return None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                return None
            try:
                record = self._record(fd, folder, name, st, settle=settle)
            except _Replaced:
                return _AGAIN
            found = _examine(fd, st, record, read, settle)
            return _AGAIN if found is None else found
        finally:
            os.close(fd)

    def _record(
        self, fd: int, folder: int, name: str, st: os.stat_result, *, settle: bool
    ) -> _Record | None:
        """The record of the open version: its extended attribute, else its sidecar.

        Raises _Replaced if ``settle`` and the version may have had a sidecar that is gone
        because the key was replaced or deleted meanwhile (the caller opens it again).
        """
        if _HAS_XATTR:
            try:
                raw = os.getxattr(fd, XATTR_NAME)
            except OSError as exc:
                if exc.errno not in _XATTR_ABSENT:
                    raise
            else:
                return self._decode(raw)
        if not _may_have_sidecar(st):
            return None  # not written by this backend with a sidecar
        try:
            side = os.open(_meta_name(name, st.st_ino, st.st_mtime_ns), _READ_FLAGS, dir_fd=folder)
        except FileNotFoundError:
            if settle:
                now = _lstat(folder, name)
                if now is None or (now.st_ino, now.st_dev, now.st_mtime_ns) != (
                    st.st_ino,
                    st.st_dev,
                    st.st_mtime_ns,
                ):
                    raise _Replaced from None
            return None  # another program's file, or its sidecar was lost
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                return None  # a symlink planted under a sidecar's name is no record
            raise
        try:
            sst = os.fstat(side)
            if not stat.S_ISREG(sst.st_mode) or sst.st_size > _MAX_RECORD_BYTES:
                return None
            record = self._decode(os.read(side, _MAX_RECORD_BYTES + 1))
        finally:
            os.close(side)
        if record is None or record.mtime_ns != st.st_mtime_ns:
            return None
        return record

    def _decode(self, raw: bytes) -> _Record | None:
        """``_Record.decode``, remembering small records: a value read again and again has
        the same record (records are never changed in place, only replaced)."""
        record = self._decoded.get(raw)
        if record is None:
            record = _Record.decode(raw)
            if record is not None and len(raw) <= _REMEMBER_RECORD_BYTES:
                if len(self._decoded) >= _REMEMBER_RECORDS:
                    self._decoded.clear()
                self._decoded[raw] = record
        return record

    def _current_etag(self, folder: int, name: str, exact: bool) -> str | None:
        """The stored version's ETag (``exact``) or ``"*"`` if one exists; None if none."""
        if not exact:
            try:
                fd = os.open(name, _READ_FLAGS, dir_fd=folder)
            except FileNotFoundError:
                return None
            try:
                return "*" if stat.S_ISREG(os.fstat(fd).st_mode) else None
            finally:
                os.close(fd)
        found = self._inspect(folder, name, False, None)  # the caller holds the lock
        return None if found is None else _etag_of(found.md5)

    # -- writing (in the I/O threads) --------------------------------------------------

    def _put_sync(
        self,
        container: str,
        key: str,
        data: bytes,
        condition: Precondition,
        content_type: str | None,
        metadata: dict[str, str],
    ) -> str:
        md5 = _md5(data)
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
                    placed = self._put_in(
                        fds, container, key, name, data, md5, condition, content_type, metadata
                    )
                except ConcurrencyError:
                    # The walk may have created folders for a write that did not happen.
                    if len(parts) > 1:
                        self._prune(container, parts[:-1], key, fds)
                    raise
                finally:
                    _close_all(fds)
                if placed:
                    return _etag_of(md5)
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
        md5: bytes,
        condition: Precondition,
        content_type: str | None,
        metadata: dict[str, str],
    ) -> bool:
        tw = self._open_temp(fds, name)
        if tw is None:
            return False
        try:
            assert tw.fd is not None
            _write_all(tw.fd, data)
        except BaseException:
            self._abandon(tw)
            raise
        self._place(tw, container, key, md5, len(data), condition, content_type, metadata)
        return True

    def _open_temp(self, fds: _Fds, name: str) -> _TempWrite | None:
        """A new temp file for ``name`` in the folder ``fds[-1]``; None if the folder is gone."""
        tmp = _temp_name(name)
        try:
            tfd = os.open(tmp, _TEMP_FLAGS, 0o666, dir_fd=fds[-1])
        except FileNotFoundError:
            return None
        return _TempWrite(fds, name, tmp, tfd)

    def _abandon(self, tw: _TempWrite) -> None:
        """Remove an unplaced temp file (and sidecar); the stored value stays as it was."""
        if tw.fd is not None:
            os.close(tw.fd)
            tw.fd = None
        if tw.placed:
            return
        for leftover in (tw.tmp, tw.sidecar):
            if leftover is None:
                continue
            try:
                os.unlink(leftover, dir_fd=tw.fds[-1])
            except FileNotFoundError:
                pass
            except OSError as exc:  # the original error matters more
                _log.warning("could not remove %r: %s", leftover, exc)

    def _place(
        self,
        tw: _TempWrite,
        container: str,
        key: str,
        md5: bytes,
        size: int,
        condition: Precondition,
        content_type: str | None,
        metadata: dict[str, str],
    ) -> None:
        """Record, flush and rename the written temp file over the key under ``condition``.

        On any failure the temp file is removed and the stored value is untouched.
        """
        fds, name, tmp = tw.fds, tw.name, tw.tmp
        folder = fds[-1]
        old: os.stat_result | None = None
        try:
            tfd = tw.fd
            assert tfd is not None
            # The mark: an mtime in the past of the kernel's coarse clock, so that any
            # later write into this file moves it (see docs/local.md, "ETags").
            now = time.time_ns()
            in_sidecar = not self._xattrs
            while True:
                mark = _mark(now, in_sidecar)
                os.utime(tfd, ns=(mark, mark))
                if self._mark_kept and not in_sidecar:
                    # This filesystem kept an earlier write's mark exactly. (Were it not
                    # kept here, on another filesystem mounted inside the root, the record
                    # would prove nothing and reads would hash: slower, never wrong.)
                    kept = mark
                else:
                    # What the filesystem kept: the mark, or (without nanoseconds) the mark
                    # rounded to an even number, which names the sidecar but proves nothing.
                    st = os.fstat(tfd)
                    kept = st.st_mtime_ns
                    self._mark_kept = kept == mark
                raw = _Record(md5, size, kept, now, content_type, metadata).encode()
                if in_sidecar or self._set_record(tfd, raw):
                    break
                in_sidecar = True  # refused: mark the file again, for its sidecar
            if in_sidecar:
                tw.sidecar = _meta_name(name, st.st_ino, kept)
                self._write_sidecar(folder, tw.sidecar, raw)
            if self.durable:
                os.fsync(tfd)
            tw.fd = None
            os.close(tfd)
            # Written and flushed before taking the lock, so the lock is held only for the
            # check and the rename.
            with self._locked(fds[0], container, key):
                if not isinstance(condition, Overwrite):
                    current = self._current_etag(folder, name, isinstance(condition, Update))
                    check_condition(container, key, current, condition)
                old = _lstat(folder, name)
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
                tw.placed = True
        finally:
            if not tw.placed:
                self._abandon(tw)
        if old is not None:
            self._drop_sidecar(folder, name, old)
        if self.durable:
            os.fsync(folder)

    def _set_record(self, fd: int, raw: bytes) -> bool:
        """Attach the record to the temp file; False if it must go to a sidecar."""
        if not self._xattrs:
            return False
        try:
            os.setxattr(fd, XATTR_NAME, raw)
        except OSError as exc:
            if exc.errno in _XATTR_UNSUPPORTED:
                if self._xattrs:
                    self._xattrs = False
                    _log.info(
                        "no extended attributes under %r: records go to sidecar files", self._root
                    )
                return False
            if exc.errno in _XATTR_REFUSED:
                return False  # too big for this filesystem's attributes: this file only
            raise
        return True

    def _write_sidecar(self, folder: int, sidecar: str, raw: bytes) -> None:
        try:
            fd = os.open(sidecar, _TEMP_FLAGS, 0o666, dir_fd=folder)
        except FileExistsError:
            # A crashed write's leftover for this very identity (inode and mark): it
            # describes no stored version, since that version is not renamed in yet.
            os.unlink(sidecar, dir_fd=folder)
            fd = os.open(sidecar, _TEMP_FLAGS, 0o666, dir_fd=folder)
        try:
            _write_all(fd, raw)
            if self.durable:
                os.fsync(fd)
        finally:
            os.close(fd)

    def _drop_sidecar(self, folder: int, name: str, old: os.stat_result) -> None:
        """Remove the sidecar of a version just replaced or deleted, if it had one."""
        if not stat.S_ISREG(old.st_mode) or not _may_have_sidecar(old) or _record_in_attribute(old):
            return
        sidecar = _meta_name(name, old.st_ino, old.st_mtime_ns)
        try:
            os.unlink(sidecar, dir_fd=folder)
        except FileNotFoundError:
            pass
        except OSError as exc:  # an orphan now; ``list`` removes it later
            _log.warning("could not remove %r: %s", sidecar, exc)

    def _delete_sync(self, container: str, key: str, condition: Precondition) -> None:
        parts = key.split("/")
        name = parts[-1]
        try:
            try:
                fds = self._walk(container, parts[:-1], key, create=False, keep=_PRUNE_WINDOW)
            except _Missing:
                check_condition(container, key, None, condition)
                return
            try:
                folder = fds[-1]
                with self._locked(fds[0], container, key):
                    if not isinstance(condition, Overwrite):
                        current = self._current_etag(folder, name, isinstance(condition, Update))
                        check_condition(container, key, current, condition)
                        if current is None:
                            return  # CREATE, and nothing is stored: nothing to do
                    old = _lstat(folder, name)
                    try:
                        os.unlink(name, dir_fd=folder)
                    except OSError as exc:
                        # Missing, or a folder of other keys (EISDIR on Linux, EPERM on macOS).
                        if exc.errno in (errno.ENOENT, errno.EISDIR, errno.EPERM):
                            return
                        raise
                if old is not None:
                    self._drop_sidecar(folder, name, old)
                if self.durable:
                    os.fsync(folder)
                self._prune(container, parts[:-1], key, fds)
            finally:
                _close_all(fds)
        except OSError as exc:
            if exc.errno != errno.ENAMETOOLONG:
                raise self._os_error(exc, "delete", container, key) from None
            check_condition(container, key, None, condition)

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

    def _take(self, scan: Iterator[_T], container: str, size: int) -> _Batch[_T]:
        batch: _Batch[_T] = []
        try:
            for item in scan:
                batch.append(item)
                if len(batch) >= size:
                    break
        except OSError as exc:
            raise self._os_error(exc, "list", container, None) from None
        return batch

    @staticmethod
    def _start(prefix: str) -> _Names | None:
        """The folders every key starting with ``prefix`` lies in, or None if no key can."""
        folders = prefix.rpartition("/")[0]
        start = folders.split("/") if folders else []
        if any(not _valid_segment(s) for s in start):
            return None  # no key has such a folder, so none can start with this prefix
        return start

    def _scan(self, container: str, prefix: str) -> Iterator[BlobInfo]:
        start = self._start(prefix)
        if start is not None:
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
        entries in this order yields keys in exactly the order Python sorts them. Stale temp
        files and sidecars that belong to no value are removed on the way.
        """
        fds = self._open_listed(container, parts)
        if fds is None:
            return []
        out: _Entries = []
        sidecars: _DirEntries = []
        files: _DirEntries = []
        try:
            folder = fds[-1]
            with os.scandir(folder) as it:
                for entry in it:
                    name = entry.name
                    if name[0] == "." and _is_reserved_name(name):
                        if _TEMP_MARK in name and _TEMP_RE.match(name) is not None:
                            self._maybe_remove_stale(folder, entry)
                        else:
                            sidecars.append(entry)
                        continue
                    candidate = base + name
                    if entry.is_dir(follow_symlinks=False):
                        candidate += "/"
                        if (
                            candidate.startswith(prefix)
                            and len(candidate) < MAX_KEY_LENGTH
                            and _valid_entry(name)
                        ):
                            out.append((candidate, name, None))
                    elif entry.is_file(follow_symlinks=False):
                        files.append(entry)
                        if (
                            candidate.startswith(prefix)
                            and len(candidate) <= MAX_KEY_LENGTH
                            and _valid_entry(name)
                        ):
                            with suppress(FileNotFoundError):  # deleted while we looked
                                out.append((candidate, name, entry.stat(follow_symlinks=False)))
            if sidecars:
                self._remove_orphans(folder, sidecars, files)
        finally:
            _close_all(fds)
        out.sort(key=lambda item: item[0])
        return out

    def _remove_orphans(self, folder: int, sidecars: _DirEntries, files: _DirEntries) -> None:
        """Remove the stale sidecars whose version is no longer stored in this folder."""
        by_short: dict[str, list[os.DirEntry[str]]] = {}
        for entry in files:
            by_short.setdefault(_short(entry.name), []).append(entry)
        for side in sidecars:
            short, ino, mtime_ns = _meta_identity(side.name)
            live = False
            for entry in by_short.get(short, ()):
                with suppress(OSError):
                    st = entry.stat(follow_symlinks=False)  # cached for listed keys
                    live = live or (st.st_ino, st.st_mtime_ns) == (ino, mtime_ns)
            if not live:
                # Young ones may belong to a write in progress (written before its rename).
                self._maybe_remove_stale(folder, side)

    def _maybe_remove_stale(self, folder: int, entry: os.DirEntry[str]) -> None:
        try:
            st = entry.stat(follow_symlinks=False)
            # Young temp files may belong to a write in progress in another process.
            if stat.S_ISREG(st.st_mode) and st.st_mtime < time.time() - STALE_TEMP_SECONDS:
                os.unlink(entry.name, dir_fd=folder)
                _log.info("removed stale file %r", entry.path)
        except OSError:
            pass

    def _open_listed(self, container: str, parts: _Names) -> _Fds | None:
        try:
            return self._walk(container, parts, None, create=False)
        except _Missing:
            return None
        except StorageError as exc:  # a symlink on the way: skipped, never followed
            _log.warning("list skips %s", exc)
            return None

    def _take_names(self, scan: Iterator[_Batch[_T]], container: str) -> tuple[_Batch[_T], bool]:
        """The next names (whole folders' runs, at least _NAMES_BATCH unless the scan ends),
        and whether the scan ended."""
        batch: _Batch[_T] = []
        try:
            for run in scan:
                batch += run
                if len(batch) >= _NAMES_BATCH:
                    return batch, False
        except OSError as exc:
            raise self._os_error(exc, "list", container, None) from None
        return batch, True

    def _scan_names(self, container: str, prefix: str, fold: bool) -> Generator[_Names, None, None]:
        """Runs of names in sorted order (a folder's names between its sub-folders)."""
        start = self._start(prefix)
        if start is not None:
            yield from self._scan_names_in(container, start, prefix, fold)

    def _scan_names_in(
        self, container: str, parts: _Names, prefix: str, fold: bool
    ) -> Iterator[_Names]:
        base = "/".join(parts) + "/" if parts else ""
        names, folders = self._read_names(container, parts, base, prefix)
        if fold or not folders:
            yield names
            return
        # A folder's name ends with "/" (a key's never does): descend there, in order.
        run = 0
        for i, name in enumerate(names):
            if name[-1] == "/":
                yield names[run:i]
                yield from self._scan_names_in(
                    container, [*parts, name[len(base) : -1]], prefix, False
                )
                run = i + 1
        yield names[run:]

    def _scan_metadata(
        self, container: str, prefix: str, fold: bool
    ) -> Generator[_Listed, None, None]:
        """``_scan_names`` with each key's metadata: one folder's run at a time."""
        for run in self._scan_names(container, prefix, fold):
            yield self._with_metadata(container, run)

    def _with_metadata(self, container: str, run: _Names) -> _Listed:
        """The names of one run (all in one folder) with their metadata."""
        keys = [name for name in run if name[-1] != "/"]
        if not keys:
            return [(name, {}) for name in run]
        parts = keys[0].split("/")[:-1]
        cut = len("/".join(parts)) + 1 if parts else 0
        fds = self._open_listed(container, parts)
        if fds is None:
            return [(name, {}) for name in run if name[-1] == "/"]
        out: _Listed = []
        try:
            folder = fds[-1]
            for name in run:
                if name[-1] == "/":
                    out.append((name, {}))
                    continue
                metadata = self._metadata_of(folder, name[cut:])
                if metadata is not None:
                    out.append((name, metadata))
        finally:
            _close_all(fds)
        return out

    def _metadata_of(self, folder: int, name: str) -> Mapping[str, str] | None:
        """The metadata of the file ``name`` in ``folder``; None if it is gone (or is no
        longer a file)."""
        try:
            fd = os.open(name, _READ_FLAGS, dir_fd=folder)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            if exc.errno == errno.ELOOP:  # replaced by a symlink meanwhile: never followed
                return None
            raise
        try:
            if _HAS_XATTR:
                try:
                    raw = os.getxattr(fd, XATTR_NAME)
                except OSError as exc:
                    if exc.errno not in _XATTR_ABSENT:
                        raise
                else:
                    return _record_metadata(raw)
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                return None
            record = self._record(fd, folder, name, st, settle=False)
            return record.metadata if record is not None else {}
        finally:
            os.close(fd)

    def _read_names(
        self, container: str, parts: _Names, base: str, prefix: str
    ) -> tuple[_Names, int]:
        """One folder's matching names, sorted as in ``_read_folder`` (sub-folders as
        ``name/``), and how many are folders; from the entries' types alone (``d_type``: no
        stat per key on Linux and macOS)."""
        fds = self._open_listed(container, parts)
        if fds is None:
            return [], 0
        out: _Names = []
        append = out.append
        folders = 0
        # Below the prefix's own folder every name matches it.
        check = len(base) < len(prefix)
        try:
            with os.scandir(fds[-1]) as it:
                for entry in it:
                    name = entry.name
                    if name[0] == "." and _is_reserved_name(name):
                        continue
                    candidate = base + name
                    if check and not candidate.startswith(prefix):
                        continue
                    if not (
                        (name.isascii() and name.isprintable() and "\\" not in name)
                        or (not name.isascii() and _valid_segment(name))
                    ):
                        continue
                    if entry.is_dir(follow_symlinks=False):
                        if len(candidate) < MAX_KEY_LENGTH - 1:
                            append(candidate + "/")
                            folders += 1
                    elif entry.is_file(follow_symlinks=False) and len(candidate) <= MAX_KEY_LENGTH:
                        append(candidate)
        finally:
            _close_all(fds)
        out.sort()
        return out, folders

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
        value) and ``create`` is false. The root's place holds _NO_ROOT when the folder was
        opened by its whole path instead (``_close_all`` and ``_locked`` know it).
        """
        if keep == 1 and _fastread.OPENAT2 and self._plain_root():
            # The root's own path holds no symlink, and no container or key holds "..": one
            # openat2 of the folder's whole path that follows no symlink stays beneath the
            # root without opening it. (A symlink planted anywhere fails it: the walk below
            # then says why.)
            path = self._fast_prefix + os.fsencode("/".join([container, *folders]))
            folder = _fastread.try_openat2(_AT_FDCWD, path, _ROOT_FLAGS, _WHOLE)
            if folder >= 0:
                return [_NO_ROOT, folder]
        try:
            root = os.open(self._root, _ROOT_FLAGS)
        except FileNotFoundError:
            if not create:
                raise _Missing from None
            os.makedirs(self._root, exist_ok=True)
            root = os.open(self._root, _ROOT_FLAGS)
        if keep == 1 and _fastread.OPENAT2:
            # All folders in one openat2 (never via a symlink, never above root); any
            # refusal but "missing" (a symlink, a value on the path, a name too long) is
            # left to the walk below, which creates what is missing or says why not.
            path = os.fsencode("/".join([container, *folders]))
            folder = _fastread.try_openat2(root, path, _ROOT_FLAGS, _BENEATH)
            if folder >= 0:
                return [root, folder]
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

    def _locked(self, root: int, container: str, key: str, *, shared: bool = False) -> _StripeLock:
        """The key's stripe lock (across threads and processes), held in a ``with`` block:
        exclusive for writers, ``shared`` for a reader that must not be overtaken."""
        return _StripeLock(self, root, container, key, shared)

    def _plain_root(self) -> bool:
        """Whether the root's path holds no symlink (looked at once)."""
        if self._root_is_plain is None:
            self._root_is_plain = os.path.realpath(self._root) == self._root
        return self._root_is_plain

    def _open_lock(self, root: int, container: str, key: str) -> int:
        """A new descriptor of the key's stripe lock file (see :class:`_StripeLock`);
        ``root`` may be _NO_ROOT (a walk by whole path, see :meth:`_walk`)."""
        stripe = zlib.crc32(f"{container}/{key}".encode()) % LOCK_STRIPES
        if _fastread.OPENAT2:  # one call where there is openat2 and the lock folder exists
            if root == _NO_ROOT:
                path = self._fast_prefix + _LOCK_PATHS[stripe]
                fd = _fastread.try_openat2(_AT_FDCWD, path, _LOCK_FLAGS, _WHOLE, 0o666)
            else:
                fd = _fastread.try_openat2(root, _LOCK_PATHS[stripe], _LOCK_FLAGS, _BENEATH, 0o666)
            if fd >= 0:
                return fd
        if root == _NO_ROOT:
            root = os.open(self._root, _ROOT_FLAGS)
            try:
                return self._open_lock(root, container, key)
            finally:
                os.close(root)
        # Lock files hold no data, so their folder need not survive a crash.
        locks = self._open_folder(root, LOCK_FOLDER, container, key, 0, True, durable=False)
        try:
            return os.open(f"{stripe:02d}.lock", _LOCK_FLAGS, 0o666, dir_fd=locks)
        finally:
            os.close(locks)

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


def _record_metadata(raw: bytes) -> dict[str, str]:
    """The metadata of a record (empty for none, or for bytes that are no record of ours);
    most records have none, which the bytes tell without decoding them."""
    if not raw.startswith(b"abd1 "):
        return {}
    if b"=" not in raw:
        return {}
    record = _Record.decode(raw)
    return {} if record is None else record.metadata


_LIST_BATCH = 512
_REMEMBER_RECORDS = 1024
_REMEMBER_RECORD_BYTES = 512
_NAMES_BATCH = 2048
# Folder fds a delete keeps open to remove the folders it leaves empty (deeper keys walk again).
_PRUNE_WINDOW = 8


def _proven(record: _Record | None, st: os.stat_result, size: int) -> bool:
    """Whether the file is provably the version ``record`` was written for: its mtime is
    still the write's mark (any later write moves it past) and its size is the recorded one."""
    return (
        record is not None
        and st.st_mtime_ns == record.mtime_ns
        and record.mtime_ns & 1 == 1  # the mark itself, not a rounded one
        and st.st_size == size == record.size
    )


def _modified(record: _Record | None, st: os.stat_result) -> int:
    """The write's own time while the file still has the mtime it was given, else the mtime."""
    if record is not None and record.mtime_ns == st.st_mtime_ns:
        return record.written_ns
    return st.st_mtime_ns


def _found_read(fd: int, st: os.stat_result, record: _Record | None, data: bytes) -> _Found:
    """What is known of the open version whose bytes (read after ``st``) are ``data``; the
    thread path and the read on the loop both end here, so they agree."""
    size = len(data)
    if size <= SMALL_VALUE_BYTES:  # hashed: no need to prove anything
        return _Found(size, _md5(data), _modified(record, st), record, data)
    # After the read: a write that started before this fstat has already moved the mtime,
    # so a proven record describes exactly the bytes read.
    after = os.fstat(fd)
    md5 = record.md5 if record is not None and _proven(record, after, size) else _md5(data)
    return _Found(size, md5, _modified(record, after), record, data)


def _examine(
    fd: int, st: os.stat_result, record: _Record | None, read: bool, settle: bool
) -> _Found | None:
    """Size, MD5 and (if ``read``) bytes of the open version; None if ``settle`` and it
    changed while it was hashed (the caller looks again)."""
    if st.st_size <= SMALL_VALUE_BYTES or read:
        return _found_read(fd, st, record, _read_open(fd, st.st_size))
    if _proven(record, st, st.st_size):
        assert record is not None
        return _Found(st.st_size, record.md5, record.written_ns, record, None)
    md5, size = _hash_open(fd)
    after = os.fstat(fd)
    if settle and (after.st_mtime_ns, after.st_size) != (st.st_mtime_ns, size):
        return None
    return _Found(size, md5, _modified(record, after), record, None)
