"""Linux system calls for reading a small file without waiting for the disk.

``openat2`` (Linux >= 5.6; ``RESOLVE_CACHED`` needs 5.12) through ctypes, since the os module
has no wrapper, and a few facts about the filesystem a root lives on. Everything here is
probed once; wherever a call is missing or refused (ENOSYS, EPERM under seccomp, EINVAL for an
unknown flag, another OS), :data:`OPENAT2` is False and callers keep the portable path.
"""

from __future__ import annotations

import ctypes
import errno
import os
import sys
import time
from typing import Any

__all__ = [
    "MEMORY_FILESYSTEMS",
    "NOWAIT_FILESYSTEMS",
    "OPENAT2",
    "OPENAT2_CACHED",
    "RESOLVE_BENEATH",
    "RESOLVE_CACHED",
    "RESOLVE_NO_SYMLINKS",
    "SwapWatch",
    "filesystem_of",
    "openat2",
    "try_openat2",
    "try_openat2_cached",
]

RESOLVE_NO_SYMLINKS = 0x04
RESOLVE_BENEATH = 0x08
RESOLVE_CACHED = 0x20

# Local filesystems whose open() of a regular file for reading does no I/O of its own once the
# path is in the dentry cache (FUSE and network filesystems ask a server on open).
NOWAIT_FILESYSTEMS = frozenset({"ext2", "ext3", "ext4", "xfs", "btrfs", "f2fs", "overlay"})
# Filesystems whose pages live in memory (or in swap): a plain read waits for no disk while
# no swap is active.
MEMORY_FILESYSTEMS = frozenset({"tmpfs", "ramfs"})

_HOW_SIZE = 24  # sizeof(struct open_how)
# os.uname is POSIX only: elsewhere there is no openat2, and importing this must not fail.
_MACHINE = os.uname().machine if hasattr(os, "uname") else ""
_SYS_OPENAT2 = {"x86_64": 437, "aarch64": 437, "arm64": 437}.get(_MACHINE)


class _OpenHow(ctypes.Structure):
    _fields_ = [
        ("flags", ctypes.c_uint64),
        ("mode", ctypes.c_uint64),
        ("resolve", ctypes.c_uint64),
    ]


def _declare(syscall: Any) -> Any:
    syscall.restype = ctypes.c_long
    syscall.argtypes = [
        ctypes.c_long,
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_void_p,
        ctypes.c_size_t,
    ]
    return syscall


def _load() -> tuple[Any, Any, Any, bool, bool]:
    """(libc's syscall keeping errno, the same without, the same holding the GIL, openat2
    works, RESOLVE_CACHED works)."""
    if not sys.platform.startswith("linux") or _SYS_OPENAT2 is None:
        return None, None, None, False, False
    try:
        syscall = _declare(ctypes.CDLL(None, use_errno=True).syscall)
        # use_errno costs several microseconds a call; the read on the loop does not need
        # to know why an open failed (any failure sends the read to a thread).
        bare = _declare(ctypes.CDLL(None).syscall)
        # PyDLL keeps the GIL through the call: for the loop's RESOLVE_CACHED opens, which
        # never wait, so that no other thread takes the GIL from the loop in the middle
        # (and the call costs about half as much).
        held = _declare(ctypes.PyDLL(None).syscall)
    except (OSError, AttributeError):  # pragma: no cover - no libc symbol table
        return None, None, None, False, False
    works = []
    for resolve in (RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS, RESOLVE_CACHED):
        how = _OpenHow(os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, 0, resolve)
        fd = syscall(_SYS_OPENAT2, -100, b".", ctypes.addressof(how), _HOW_SIZE)
        if fd >= 0:
            os.close(fd)
        # EAGAIN: RESOLVE_CACHED is known but "." was not cached (it always is; still fine).
        works.append(fd >= 0 or ctypes.get_errno() == errno.EAGAIN)
    return syscall, bare, held, works[0], works[0] and works[1]


_syscall, _bare, _held, OPENAT2, OPENAT2_CACHED = _load()
"""Whether openat2 with RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS works here, and with
RESOLVE_CACHED too."""

_hows: dict[tuple[int, int, int], tuple[_OpenHow, int]] = {}


def _how(flags: int, resolve: int, mode: int = 0) -> int:
    """The address of a ``struct open_how``, kept alive (in ``_hows``) for reuse."""
    found = _hows.get((flags, resolve, mode))
    if found is None:
        how = _OpenHow(flags, mode, resolve)
        found = _hows[flags, resolve, mode] = (how, ctypes.addressof(how))
    return found[1]


def openat2(dir_fd: int, path: bytes, flags: int, resolve: int, mode: int = 0) -> int:
    """``openat2(dir_fd, path, {flags, mode, resolve})``: a new fd, or OSError."""
    fd: int = _syscall(_SYS_OPENAT2, dir_fd, path, _how(flags, resolve, mode), _HOW_SIZE)
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), os.fsdecode(path))
    return fd


def try_openat2(dir_fd: int, path: bytes, flags: int, resolve: int, mode: int = 0) -> int:
    """:func:`openat2`, faster, returning -1 on any failure (the reason is not kept)."""
    fd: int = _bare(_SYS_OPENAT2, dir_fd, path, _how(flags, resolve, mode), _HOW_SIZE)
    return fd


def try_openat2_cached(dir_fd: int, path: bytes, flags: int, resolve: int) -> int:
    """:func:`try_openat2` holding the GIL, for the event loop: ``resolve`` must include
    RESOLVE_CACHED (so the call never waits for I/O)."""
    fd: int = _held(_SYS_OPENAT2, dir_fd, path, _how(flags, resolve), _HOW_SIZE)
    return fd


def _unescape(field: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \ooo.
    return (
        field.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
    )


def filesystem_of(path: str) -> tuple[str | None, bool]:
    """(type of the filesystem ``path`` is on, whether another filesystem is mounted
    somewhere beneath it), from /proc/self/mountinfo; (None, True) if unknown."""
    real = os.path.realpath(path)
    best, fstype, nested = "", None, False
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
            for line in f:
                fields = line.split(" ")
                try:
                    point = _unescape(fields[4])
                    kind = fields[fields.index("-", 6) + 1]
                except (IndexError, ValueError):
                    continue
                if point == real or real.startswith(point.rstrip("/") + "/"):
                    if len(point) >= len(best):
                        best, fstype = point, kind
                elif point.startswith(real.rstrip("/") + "/"):
                    nested = True
    except OSError:
        return None, True
    return fstype, nested


class SwapWatch:
    """Whether any swap is active, from /proc/swaps, looked at again at most once a second."""

    __slots__ = ("_active", "_at")

    def __init__(self) -> None:
        self._at = -1.0
        self._active = True

    def active(self) -> bool:
        now = time.monotonic()
        if now - self._at >= 1.0:
            self._at = now
            try:
                with open("/proc/swaps", "rb") as f:
                    self._active = len(f.read().splitlines()) > 1  # a header line, then devices
            except OSError:
                self._active = True
        return self._active
