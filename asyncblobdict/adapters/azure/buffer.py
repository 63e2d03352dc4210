"""One preallocated buffer that ranged reads fill in place and that becomes ``bytes``
without a copy.

``get`` returns immutable ``bytes``, but ranges arrive in parallel and must be written into
their places. A ``bytearray`` would need a final copy of the whole value (and, for 64 MiB, a
second 64 MiB of freshly faulted pages). ``io.BytesIO`` holds its data in a ``bytes``
object that it lets the owner write through ``getbuffer()`` while it is not shared, and
whose ``getvalue()`` hands out that very object once no view is left; any later write to
the BytesIO copies first. So this is safe by BytesIO's own rules: if a view is still
alive, ``getvalue()`` copies instead, and nobody can change the ``bytes`` once handed out.
"""

from __future__ import annotations

import contextlib
import io
import logging

__all__ = ["BytesBuffer"]

logger = logging.getLogger("asyncblobdict.azure")


class BytesBuffer:
    """``size`` zero bytes, writable through :attr:`view`, then :meth:`take` as bytes."""

    __slots__ = ("_io", "copied", "view")

    def __init__(self, size: int) -> None:
        # bytes(size) comes from calloc: its pages are not touched until written. Passed
        # in as the only reference, it is BytesIO's own, unshared buffer.
        self._io: io.BytesIO | None = io.BytesIO(bytes(size))
        self.view: memoryview = self._io.getbuffer()
        self.copied = False  # set by take() when a view was still alive: bytes copied

    def take(self) -> bytes:
        """The filled buffer as bytes: the same memory when every slice of :attr:`view`
        has been dropped, else a copy. The buffer cannot be used afterwards."""
        if self._io is None:
            raise ValueError("the buffer was already taken")
        # A view still in use elsewhere cannot be released: getvalue() then copies.
        with contextlib.suppress(BufferError):
            self.view.release()
        size = self._io.seek(0, io.SEEK_END)
        try:
            self._io.truncate(size)  # refused while a view is alive (and a no-op else)
        except BufferError:
            self.copied = True
            logger.debug("a view of the read buffer was still alive: the value is copied")
        data = self._io.getvalue()
        self._io = None
        return data
