"""The store's per-key state: cached bytes, pending changes, remembered ETags and key locks.

One :class:`KeyState` per key the store has something to remember about, changed only
through :class:`KeyTable`. A key with nothing left to remember (no cached bytes, no pending
change, no remembered ETag, no operation holding it) has no state at all, so memory is
bounded by the cache bounds, the ETag memory bound and the pending changes.

Eviction is O(1) amortised however many entries are pending: only idle entries (not pending,
not held by an operation) sit in the LRU lists that eviction pops from.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict, deque
from typing import Final

__all__ = ["ABSENT", "Absent", "KeyState", "KeyTable"]


class Absent:
    """Marks a key this store last saw missing (its next ETAG write must create it)."""

    def __repr__(self) -> str:
        return "<absent>"


ABSENT: Final = Absent()


class KeyState:
    """Everything the store remembers about one key.

    ``data``: cached bytes (clean, or the pending value); None when nothing is cached or the
    pending change is a delete. ``copy``: the value of ``data`` decoded and put in marshal
    form by the store on a first hit (``b""``: it cannot be, or has no room in
    ``max_bytes``), None until then; it goes with ``data``. ``pending``: a write-back
    change not yet in storage, with its ``content_type`` and ``metadata``.
    ``etag``: the version this store last read or wrote (ETAG mode), ABSENT when it last saw
    the key missing, None when it remembers none. ``version`` grows with every pending
    change, so a sync that wrote an older one does not mark a newer one clean.
    """

    __slots__ = (
        "content_type",
        "copy",
        "data",
        "detached",
        "etag",
        "expires",
        "holders",
        "locked",
        "metadata",
        "pending",
        "version",
        "waiters",
    )

    def __init__(self) -> None:
        self.data: bytes | None = None
        self.copy: bytes | None = None
        # The cached value's expiry time (epoch seconds), None for a value that never expires.
        self.expires: float | None = None
        self.pending = False
        self.content_type: str | None = None
        self.metadata: dict[str, str] | None = None
        self.etag: str | Absent | None = None
        self.version = 0
        self.holders = 0
        self.locked = False
        self.detached = False
        self.waiters: deque[asyncio.Future[None]] | None = None

    @property
    def size(self) -> int:
        return 0 if self.data is None else len(self.data)

    def __repr__(self) -> str:
        return (
            f"KeyState(size={self.size}, pending={self.pending}, etag={self.etag!r}, "
            f"holders={self.holders})"
        )


class KeyTable:
    """The per-key states of one store, with LRU bounds and a FIFO lock per key.

    ``max_entries``/``max_bytes`` bound the cached values (pending ones count but are never
    evicted); ``max_etags`` bounds the remembered ETags. None means no bound.
    """

    def __init__(self, max_entries: int | None, max_bytes: int | None, max_etags: int | None):
        for name, bound in (
            ("cache_max_entries", max_entries),
            ("cache_max_bytes", max_bytes),
            ("etag_memory", max_etags),
        ):
            if bound is not None and bound < 0:
                raise ValueError(f"{name} must be >= 0 or None")
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.max_etags = max_etags
        self._states: dict[str, KeyState] = {}
        # Idle keys only (no holder, nothing pending), least recently used first.
        self._values: OrderedDict[str, None] = OrderedDict()
        self._etags: OrderedDict[str, None] = OrderedDict()
        # Keys with a pending change, in the order of their latest change.
        self._pending: dict[str, KeyState] = {}
        self._cached = 0  # states holding bytes
        self._remembered = 0  # states holding an ETag (or ABSENT)
        self._bytes = 0
        self._held = 0
        self._idle: asyncio.Event | None = None
        self._versions = 0
        self.eviction_steps = 0
        """How many entries eviction has looked at (tests check it stays O(1) per change)."""

    def __len__(self) -> int:
        return len(self._states)

    @property
    def total_bytes(self) -> int:
        """Bytes of every cached value, pending ones included, and of their decoded copies."""
        return self._bytes

    # -- lookups ------------------------------------------------------------------------

    def peek(self, key: str) -> KeyState | None:
        """The key's state, if any, without marking it used."""
        return self._states.get(key)

    def touch(self, key: str) -> None:
        """Mark an idle key recently used (a cache hit)."""
        if key in self._values:
            self._values.move_to_end(key)
        if key in self._etags:
            self._etags.move_to_end(key)

    def pending_items(self) -> list[tuple[str, KeyState]]:
        """Keys with pending changes, in the order the changes were made."""
        return list(self._pending.items())

    @property
    def pending_count(self) -> int:
        return len(self._pending)

    # -- holding and locking ------------------------------------------------------------

    def _hold(self, key: str) -> KeyState:
        state = self._states.get(key)
        if state is None:
            state = self._states[key] = KeyState()
        if state.holders == 0:
            self._values.pop(key, None)
            self._etags.pop(key, None)
            if self._held == 0 and self._idle is not None:
                self._idle.clear()
            self._held += 1
        state.holders += 1
        return state

    def _unhold(self, key: str, state: KeyState) -> None:
        state.holders -= 1
        if state.holders == 0:
            self._held -= 1
            if self._held == 0 and self._idle is not None:
                self._idle.set()
            self._settle(key, state)

    async def acquire(self, key: str) -> KeyState:
        """Wait for the key's lock (FIFO) and return its state; pair with :meth:`release`."""
        state, waiter = self.reserve(key)
        await self.wait_turn(key, state, waiter)
        return state

    def reserve(self, key: str) -> tuple[KeyState, asyncio.Future[None] | None]:
        """Take the key's lock, or a place in its queue, now (without awaiting).

        Returns the state and None when the lock was free, else a future that is done when
        the lock is ours: pass both to :meth:`wait_turn`, or to :meth:`abandon` to give the
        place up. This is how one operation takes its turn on many keys at once.
        """
        state = self._hold(key)
        if not state.locked:
            state.locked = True
            return state, None
        if state.waiters is None:
            state.waiters = deque()
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        state.waiters.append(waiter)
        return state, waiter

    async def wait_turn(
        self, key: str, state: KeyState, waiter: asyncio.Future[None] | None
    ) -> None:
        """Wait until a reserved place holds the key's lock (at once for None)."""
        if waiter is None:
            return
        try:
            await waiter
        except asyncio.CancelledError:
            self.abandon(key, state, waiter)
            raise

    def abandon(self, key: str, state: KeyState, waiter: asyncio.Future[None] | None) -> None:
        """Give up a reserved place that was not used: whether or not it got the lock."""
        if waiter is None or (waiter.done() and not waiter.cancelled()):
            self._pass_on(state)  # the lock was ours (maybe granted as we gave up): hand it on
        else:
            waiter.cancel()
            if state.waiters is not None:
                with contextlib.suppress(ValueError):
                    state.waiters.remove(waiter)
        self._unhold(key, state)

    def release(self, key: str, state: KeyState) -> None:
        """Give the key's lock to the next waiter, or free it."""
        self._pass_on(state)
        self._unhold(key, state)

    @staticmethod
    def _pass_on(state: KeyState) -> None:
        waiters = state.waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the lock stays taken: it now belongs to the waiter
                return
        state.locked = False

    async def wait_idle(self) -> None:
        """Return once no key is held by an operation."""
        while self._held:
            if self._idle is None:
                self._idle = asyncio.Event()
            await self._idle.wait()

    # -- changes ------------------------------------------------------------------------

    def set_data(self, state: KeyState, data: bytes | None, expires: float | None = None) -> None:
        """Replace the key's cached bytes (None: cache nothing) and their expiry time."""
        if state.data is not None:
            self._cached -= 1
            self._bytes -= len(state.data)
        if state.copy is not None:
            self._bytes -= len(state.copy)
            state.copy = None
        state.data = data
        state.expires = None if data is None else expires
        if data is not None:
            self._cached += 1
            self._bytes += len(data)

    def set_copy(self, key: str, state: KeyState, copy: bytes) -> None:
        """Keep the decoded form of the cached bytes (see :class:`KeyState`); it counts
        toward ``max_bytes`` and goes when they do. Room for it is made by evicting other
        idle entries, never its own: without room it is not kept (``b""``)."""
        assert state.data is not None and state.copy is None
        state.copy = copy
        self._bytes += len(copy)
        max_bytes = self.max_bytes
        if max_bytes is None or self._bytes <= max_bytes:
            return
        # Evicting the entry itself would drop its bytes with the copy: every later read
        # would go to storage for a value that fits the cache alone. (Values only: the
        # ETag bound is not this change's business, and could forget the key itself.)
        idle = key in self._values
        if idle:
            del self._values[key]
        self._evict_values()
        if idle:
            self._values[key] = None
        if self._bytes > max_bytes:
            self._bytes -= len(copy)
            state.copy = b""

    def set_etag(self, state: KeyState, etag: str | Absent | None) -> None:
        """Remember the version this store last read or wrote."""
        self._remembered += (etag is not None) - (state.etag is not None)
        state.etag = etag

    def make_pending(
        self,
        key: str,
        state: KeyState,
        data: bytes | None,
        content_type: str | None = None,
        metadata: dict[str, str] | None = None,
        expires: float | None = None,
    ) -> None:
        """Record a write-back change (None: a delete) as the key's latest change."""
        self.set_data(state, data, expires)
        state.content_type, state.metadata = content_type, metadata
        self._versions += 1
        state.version = self._versions
        state.pending = True
        self._pending.pop(key, None)
        self._pending[key] = state

    def mark_stored(self, key: str, state: KeyState, version: int) -> None:
        """The pending change ``version`` reached storage; a newer change stays pending."""
        if state.pending and state.version == version:
            state.pending = False
            state.content_type = state.metadata = None
            del self._pending[key]

    def discard_pending(self, key: str) -> None:
        """Forget the key's pending change and its cached bytes."""
        state = self._pending.pop(key, None)
        if state is None:
            return
        state.pending = False
        state.content_type = state.metadata = None
        self._versions += 1
        state.version = self._versions
        self.set_data(state, None)
        if state.holders == 0:
            self._settle(key, state)

    # -- bounds -------------------------------------------------------------------------

    def _settle(self, key: str, state: KeyState) -> None:
        """File an idle key under the LRU lists, or forget it when it holds nothing."""
        if state.pending:
            self._evict()  # its bytes count, and only the idle entries can make room
            return
        if state.data is None and state.etag is None:
            del self._states[key]
            return
        if state.data is not None:
            self._values[key] = None
        if state.etag is not None:
            self._etags[key] = None
        self._evict()

    def _evict(self) -> None:
        self._evict_values()
        max_etags = self.max_etags
        while self._etags and max_etags is not None and self._remembered > max_etags:
            self.eviction_steps += 1
            key, _ = self._etags.popitem(last=False)
            state = self._states.pop(key)
            # A cached value without the version it came from would be written blindly.
            self._values.pop(key, None)
            self.set_data(state, None)
            self.set_etag(state, None)

    def _evict_values(self) -> None:
        max_entries, max_bytes = self.max_entries, self.max_bytes
        while self._values and (
            (max_entries is not None and self._cached > max_entries)
            or (max_bytes is not None and self._bytes > max_bytes)
        ):
            self.eviction_steps += 1
            key, _ = self._values.popitem(last=False)
            state = self._states[key]
            self.set_data(state, None)
            if state.etag is None:
                del self._states[key]
