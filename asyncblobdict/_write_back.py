"""A store's sync: pending write-back changes written to storage in the order they were made."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Final, Literal

from ._tasks import gather_bounded
from .adapters.base import OVERWRITE, Create, Update
from .cache import KeyState, KeyTable
from .errors import ConcurrencyError
from .modes import SyncResult

if TYPE_CHECKING:
    from .store import AsyncBlobStore

__all__ = ["EtagBehavior", "sync"]

logger = logging.getLogger("asyncblobdict")

EtagBehavior = Literal["skip", "overwrite", "raise"]
_ETAG_BEHAVIORS: Final = ("skip", "overwrite", "raise")


class _Turn:
    """One operation's place on one key, reserved at once and held until it ends."""

    __slots__ = ("held", "key", "over", "state", "table", "waiter")

    def __init__(
        self, table: KeyTable, key: str, state: KeyState, waiter: asyncio.Future[None] | None
    ) -> None:
        self.table, self.key, self.state, self.waiter = table, key, state, waiter
        self.held = waiter is None
        self.over = False

    async def hold(self) -> KeyState:
        """Wait until the key is ours (at once if it already is)."""
        if not self.held:
            try:
                await self.table.wait_turn(self.key, self.state, self.waiter)
            except BaseException:
                self.over = True  # wait_turn gave the place up
                raise
            self.held = True
        return self.state

    def handed_over(self) -> None:
        """A running write now owns the key and releases it when it ends."""
        self.over = True

    def end(self) -> None:
        """Release the key, or give up the place if it was never used; twice is fine."""
        if self.over:
            return
        self.over = True
        if self.held:
            self.table.release(self.key, self.state)
        else:
            self.table.abandon(self.key, self.state, self.waiter)


def _ancestors(key: str) -> list[str]:
    """``"a/b/c"`` -> ``["a", "a/b"]``: the keys a local folder of this key would clash with."""
    parts = key.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts))]


async def sync(store: AsyncBlobStore, etag_behavior: EtagBehavior | str) -> SyncResult:
    """:meth:`AsyncBlobStore.sync`."""
    if etag_behavior not in _ETAG_BEHAVIORS:
        raise ValueError(
            f"etag_behavior must be one of {', '.join(_ETAG_BEHAVIORS)}, not {etag_behavior!r}"
        )
    store._check_open()
    table = store._table
    # The sync takes its place on every pending key now, before anything can run: a
    # change made after this call waits for the sync's write of that key, as a change of
    # one key waits for the calls made before it.
    turns = {key: _Turn(table, key, *table.reserve(key)) for key, _ in table.pending_items()}
    try:
        async with store._sync_lock:
            return await _sync(store, etag_behavior, turns)
    finally:
        for turn in turns.values():
            turn.end()


async def _sync(store: AsyncBlobStore, etag_behavior: str, turns: dict[str, _Turn]) -> SyncResult:
    result = SyncResult()
    keys = list(turns)
    if not keys:
        return result
    if etag_behavior == "raise" and store._etags:
        await _check_no_conflicts(store, turns)
    overwrite = etag_behavior == "overwrite"
    errors: list[BaseException] = []

    async def flush(key: str) -> None:
        turn = turns[key]
        state = await turn.hold()
        try:
            if not state.pending:
                return  # written by an earlier, cancelled sync, or discarded meanwhile
            data = state.data
            if data is None:
                await store._finish(
                    key, state, store._delete_stored(key, state, overwrite=overwrite)
                )
                result.deleted.append(key)
            else:
                condition = OVERWRITE if overwrite else None
                extra = (state.content_type, state.metadata)
                await store._finish(
                    key, state, store._put_stored(key, state, data, condition, extra)
                )
                result.written.append(key)
        except ConcurrencyError as exc:
            if etag_behavior == "raise":
                errors.append(exc)
            result.skipped.append(key)
            logger.warning("sync: %s; left unsynced", exc)
        except Exception as exc:  # re-raised below, after the other keys were tried
            errors.append(exc)
        finally:
            if state.detached:  # a cancelled sync's write still runs; it releases the key
                state.detached = False
                turn.handed_over()
            else:
                turn.end()

    await _replay(store._sync_concurrency, keys, flush)
    for names in (result.written, result.deleted, result.skipped):
        names.sort()
    logger.info(
        "sync of %r: %d written, %d deleted, %d skipped",
        store.container_name,
        len(result.written),
        len(result.deleted),
        len(result.skipped),
    )
    if errors:
        raise errors[0]
    return result


async def _replay(
    concurrency: int, keys: list[str], flush: Callable[[str], Awaitable[None]]
) -> None:
    """Flush ``keys`` in order, ``concurrency`` at a time, related keys one by one.

    ``a`` and ``a/b`` are related (on the local backend one is the other's folder), so
    a change to one starts only after every earlier change to the other has ended.
    """
    running: dict[asyncio.Future[None], str] = {}
    below: Counter[str] = Counter()  # folders of running keys

    def blocked(key: str) -> bool:
        return key in below or any(a in running.values() for a in _ancestors(key))

    try:
        for key in keys:
            while len(running) >= concurrency or (running and blocked(key)):
                done, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    for folder in _ancestors(running.pop(task)):
                        below[folder] -= 1
                        if not below[folder]:
                            del below[folder]
            running[asyncio.ensure_future(flush(key))] = key
            below.update(_ancestors(key))
        await asyncio.gather(*running)
    except BaseException:
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)
        raise


async def _check_no_conflicts(store: AsyncBlobStore, turns: dict[str, _Turn]) -> None:
    """Raise ConcurrencyError naming every key changed in storage; the keys stay held."""
    keys = list(turns)

    async def changed(key: str) -> bool:
        state = await turns[key].hold()
        if not state.pending:
            return False
        condition = store._condition(state)
        if condition is OVERWRITE:
            return False
        info = await store.adapter.head(store.container_name, key)
        if isinstance(condition, Create):
            return info is not None
        assert isinstance(condition, Update)
        return info is None or info.etag != condition.etag

    flags = await gather_bounded(
        [functools.partial(changed, key) for key in keys], store._sync_concurrency
    )
    conflicts = sorted(key for key, flag in zip(keys, flags, strict=True) if flag)
    if conflicts:
        shown = ", ".join(repr(k) for k in conflicts[:10])
        more = f" and {len(conflicts) - 10} more" if len(conflicts) > 10 else ""
        raise ConcurrencyError(
            f"sync wrote nothing: {len(conflicts)} key(s) changed in storage since read: "
            f"{shown}{more}",
            container=store.container_name,
        )
