"""A model of AsyncBlobStore's contract, for the stateful test: every state the system may be in.

The model is a set of possible *worlds*. A world is what storage holds (one int or nothing per
key) and, per store, what that store knows: the version of each key it last read or wrote
(its remembered ETag), which cache entries it may serve, its pending write-back changes and
the storage writes it still has in flight after a cancellation. Where the contract allows
several behaviours (a cancelled write that may or may not land, an evicted cache entry, the
order of concurrent calls, a request lost by a faulty network), a step maps a world to several
worlds. What the test observes (each call's result or error, storage read through a fresh
adapter, each store's ``dirty_keys()``) keeps only the worlds that agree; none left is a bug.

Values are ints that never repeat (``set_json`` writes fresh multiples of 1000 and
``update_json`` starts a missing counter from a fresh multiple of 1000 and adds 1), so a value
names the storage version that holds it: a store's remembered ETag is modelled by the value it
last saw, and a conditional write succeeds exactly when storage still holds that value.

Concurrent calls are checked for linearisability: some order of the calls (calls of one store
on a shared key keep their call order) must explain every result. A cancelled storage write
becomes a background effect that may fire at any point until that store's next call on the key
(or its ``close()``), which must wait for it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from itertools import combinations, permutations
from typing import Final, Literal, TypeVar

__all__ = [
    "ALL",
    "KEYS",
    "NEVER",
    "Bg",
    "Close",
    "Delete",
    "Discard",
    "Entry",
    "Exists",
    "Get",
    "ListKeys",
    "Model",
    "Op",
    "Outcome",
    "Set",
    "Stale",
    "StoreConfig",
    "StoreState",
    "Sync",
    "Update",
    "World",
]

_T = TypeVar("_T")

KEYS: Final = ("a", "a/b", "c")
ALL: Final = frozenset(range(len(KEYS)))
# "a" and "a/b" cannot both exist on the local backend.
_PARTNER: Final = {0: 1, 1: 0}


class _Never:
    """A key the store never saw: its writes are unconditional."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "never"


NEVER: Final = _Never()


@dataclass(frozen=True)
class Stale:
    """A version the store saw that was since replaced by another of the same value.

    Values rarely repeat, but two write-back updates from one stale base do give one value
    twice; on memory and Azure every write has a new ETag, so the older one never matches.
    """

    value: int

    def __repr__(self) -> str:
        return f"{self.value}(replaced)"


Val = int | None  # a stored value; None: absent
Know = int | None | _Never | Stale  # the version a store last saw (None: it saw the key absent)
CacheKind = Literal["none", "write_through", "write_back"]
Behaviour = Literal["skip", "overwrite", "raise"]
# ("ok", value) | ("err", error class name) | ("cancelled", None)
Outcome = tuple[str, object]

OK: Final[Outcome] = ("ok", None)
FAULT_ERRORS: Final = ("StorageError", "OutcomeUnknownError")


def err(name: str) -> Outcome:
    return ("err", name)


def _read(value: Val) -> Outcome:
    return err("BlobNotFoundError") if value is None else ("ok", value)


@dataclass(frozen=True)
class StoreConfig:
    cache: CacheKind
    etag: bool
    small_cache: bool = False  # a tiny cache_max_bytes, so clean entries are evicted

    @property
    def caching(self) -> bool:
        return self.cache != "none"

    @property
    def write_back(self) -> bool:
        return self.cache == "write_back"

    def __str__(self) -> str:
        small = ", tiny cache" if self.small_cache and self.caching else ""
        return f"{self.cache}, {'etag' if self.etag else 'no etag'}{small}"


@dataclass(frozen=True)
class Entry:
    """A cache entry the store may serve (None value: absent); dirty entries are pending."""

    value: Val
    dirty: bool = False
    first: int = 0  # ticks of the first and the last change while dirty (replay order)
    last: int = 0


@dataclass(frozen=True)
class Bg:
    """A call (or one key's write of a sync) still running after its caller was cancelled."""

    op: Op | None = None  # the call; None: a sync's write of one key
    value: Val = None  # sync: the value written (None: a delete)
    conditional: bool = True  # sync: False for sync("overwrite")
    tick: int = 0  # the call's tick; sync: the dirty entry's version
    faulted: bool = False  # started in a step with network faults
    written: bool = False  # sync: the value is stored, the entry not yet marked clean


@dataclass(frozen=True)
class StoreState:
    know: tuple[Know, ...] = (NEVER,) * len(KEYS)
    cache: tuple[Entry | None, ...] = (None,) * len(KEYS)
    # Per key: calls still running after their callers were cancelled, oldest first.
    bg: tuple[tuple[Bg, ...], ...] = ((),) * len(KEYS)

    def with_know(self, k: int, know: Know) -> StoreState:
        return replace(self, know=_put_at(self.know, k, know))

    def with_cache(self, k: int, entry: Entry | None) -> StoreState:
        return replace(self, cache=_put_at(self.cache, k, entry))

    def with_bg(self, k: int, queue: tuple[Bg, ...]) -> StoreState:
        return replace(self, bg=_put_at(self.bg, k, queue))

    def dirty(self) -> frozenset[int]:
        return frozenset(k for k, e in enumerate(self.cache) if e is not None and e.dirty)


@dataclass(frozen=True)
class World:
    storage: tuple[Val, ...]
    stores: tuple[StoreState, ...]

    def with_storage(self, k: int, value: Val) -> World:
        return replace(self, storage=_put_at(self.storage, k, value))

    def with_store(self, i: int, state: StoreState) -> World:
        return replace(self, stores=_put_at(self.stores, i, state))


def _put_at(items: tuple[_T, ...], k: int, value: _T) -> tuple[_T, ...]:
    return (*items[:k], value, *items[k + 1 :])


# --------------------------------------------------------------------------- operations


@dataclass(frozen=True)
class Op:
    def keys(self) -> frozenset[int]:
        """The keys this call works on (calls of one store on a shared key are serialised)."""
        return ALL

    def describe(self) -> str:
        raise NotImplementedError


@dataclass(frozen=True)
class Get(Op):
    k: int

    def keys(self) -> frozenset[int]:
        return frozenset({self.k})

    def describe(self) -> str:
        return f"get_json({KEYS[self.k]!r})"


@dataclass(frozen=True)
class Exists(Op):
    k: int

    def keys(self) -> frozenset[int]:
        return frozenset({self.k})

    def describe(self) -> str:
        return f"exists({KEYS[self.k]!r})"


@dataclass(frozen=True)
class Set(Op):
    k: int
    value: int

    def keys(self) -> frozenset[int]:
        return frozenset({self.k})

    def describe(self) -> str:
        return f"set_json({KEYS[self.k]!r}, {self.value})"


@dataclass(frozen=True)
class Delete(Op):
    k: int

    def keys(self) -> frozenset[int]:
        return frozenset({self.k})

    def describe(self) -> str:
        return f"delete({KEYS[self.k]!r})"


@dataclass(frozen=True)
class Update(Op):
    k: int
    default: int
    is_async: bool = False

    def keys(self) -> frozenset[int]:
        return frozenset({self.k})

    def describe(self) -> str:
        fn = "async v+1" if self.is_async else "v+1"
        return f"update_json({KEYS[self.k]!r}, {fn}, default={self.default})"


@dataclass(frozen=True)
class ListKeys(Op):
    def keys(self) -> frozenset[int]:
        return frozenset()

    def describe(self) -> str:
        return "list_keys()"


@dataclass(frozen=True)
class Sync(Op):
    behaviour: Behaviour

    def describe(self) -> str:
        return f"sync({self.behaviour!r})"


@dataclass(frozen=True)
class Close(Op):
    def describe(self) -> str:
        return "close()"


@dataclass(frozen=True)
class Discard(Op):
    def keys(self) -> frozenset[int]:
        return frozenset()  # not a coroutine: it cannot wait for anything

    def describe(self) -> str:
        return "discard_changes()"


Call = tuple[int, Op]  # (store index, operation)
Branches = list[tuple[Outcome, World]]


# --------------------------------------------------------------------------- the model


class Model:
    """Transitions of the contract. ``faulted`` is set per step when the network misbehaved."""

    def __init__(self, configs: Sequence[StoreConfig], *, local: bool) -> None:
        self.configs = list(configs)
        self.local = local
        self.faulted = False
        # Keys whose writes may fail as if blocked during this step (see explore()).
        self.transient_block: frozenset[int] = frozenset()

    def initial(self) -> World:
        return World((None,) * len(KEYS), tuple(StoreState() for _ in self.configs))

    # ---------------------------------------------------------------- steps

    def orders(self, calls: Sequence[Call]) -> list[tuple[int, ...]]:
        """Orders the calls may have taken effect in: one store's calls on a key keep call order."""
        n = len(calls)
        before = {
            (a, b)
            for a in range(n)
            for b in range(a + 1, n)
            if calls[a][0] == calls[b][0] and calls[a][1].keys() & calls[b][1].keys()
        }
        result = []
        for perm in permutations(range(n)):
            pos = {c: p for p, c in enumerate(perm)}
            if all(pos[a] < pos[b] for a, b in before):
                result.append(perm)
        return result

    def explore(
        self,
        worlds: Iterable[World],
        calls: Sequence[Call],
        actual: Sequence[Outcome],
        tick: int,
        *,
        prune: bool = True,
    ) -> dict[tuple[Outcome, ...], set[World]]:
        """Worlds after the calls, by the outcomes they give (only ``actual`` when pruning).

        A call whose actual outcome is "cancelled" is modelled as cancelled in every order.
        """
        # On the local backend a write of "a/b" makes the folder "a" before it checks its
        # condition, so while it runs (even if it then fails) a write of "a" is refused: not
        # linearisable, a limit of LocalFileAdapter rather than of the store; tolerated
        # during concurrent steps.
        worlds = list(worlds)
        child_written = any(isinstance(op, (Set, Update)) and op.k == 1 for _, op in calls) or any(
            st.bg[1] for w in worlds for st in w.stores
        )
        self.transient_block = frozenset({0}) if self.local and child_written else frozenset()
        start = self.settle(worlds)
        found: dict[tuple[Outcome, ...], set[World]] = {}
        for perm in self.orders(calls):
            states: set[tuple[tuple[Outcome, ...], World]] = {
                ((("?", None),) * len(calls), w) for w in start
            }
            for pos, idx in enumerate(perm):
                i, op = calls[idx]
                want = actual[idx]
                nxt: set[tuple[tuple[Outcome, ...], World]] = set()
                for outs, w in states:
                    if want[0] == "cancelled":
                        for w2 in self.cancelled(w, i, op, tick + pos):
                            nxt.add((_put_at(outs, idx, want), w2))
                        continue
                    for o, w2 in self.apply(w, i, op, tick + pos):
                        if not prune or o == want:
                            nxt.add((_put_at(outs, idx, o), w2))
                states = {(outs, w2) for outs, w in nxt for w2 in self.settle([w])}
            for outs, w in states:
                found.setdefault(outs, set()).add(_canonical(w))
        return found

    # ---------------------------------------------------- background effects

    def settle(self, worlds: Iterable[World]) -> set[World]:
        """Close under "any pending background write may land (or fail) now"."""
        seen = set(worlds)
        todo = [w for w in seen if any(q for s in w.stores for q in s.bg)]
        while todo:
            w = todo.pop()
            for i, st in enumerate(w.stores):
                for k, queue in enumerate(st.bg):
                    if not queue:
                        continue
                    for w2 in self.fire(w, i, k):
                        if w2 not in seen:
                            seen.add(w2)
                            todo.append(w2)
        return seen

    def force(self, w: World, i: int, keys: Iterable[int]) -> list[World]:
        """Store i's calls on ``keys`` wait for its background writes on them."""
        worlds = [w]
        for k in sorted(keys):
            while any(w1.stores[i].bg[k] for w1 in worlds):
                worlds = [
                    w2
                    for w1 in worlds
                    for w2 in (self.fire(w1, i, k) if w1.stores[i].bg[k] else [w1])
                ]
        return worlds

    def fire(self, w: World, i: int, k: int) -> list[World]:
        """The background call of store i on key k completes (each way it may)."""
        bg, *rest = w.stores[i].bg[k]
        w0 = w.with_store(i, w.stores[i].with_bg(k, tuple(rest)))
        faulted, self.faulted = self.faulted, self.faulted or bg.faulted
        try:
            if bg.op is not None:
                out = [w2 for _, w2 in self.transitions(w0, i, bg.op, bg.tick)]
                if isinstance(bg.op, Update) and not self.configs[i].write_back:
                    # It read, then its write lost a race and it gave up.
                    st = w0.stores[i]
                    out += [w0, w0.with_store(i, st.with_know(k, w0.storage[k]))]
                return out
            entry = w0.stores[i].cache[k]
            if bg.written:  # the sync's bookkeeping after its write
                if entry is not None and entry.dirty and entry.last == bg.tick:
                    return [w0.with_store(i, w0.stores[i].with_cache(k, Entry(bg.value)))]
                return [w0]
            out = []
            for res, w2 in self._put(w0, i, k, bg.value, conditional=bg.conditional):
                if res != "ok":
                    out.append(w2)
                    continue
                # Stored, and marked clean at once or a moment later.
                st2 = w2.stores[i]
                out.append(
                    w2.with_store(i, st2.with_bg(k, (replace(bg, written=True), *st2.bg[k])))
                )
                if entry is not None and entry.dirty and entry.last == bg.tick:
                    st2 = st2.with_cache(k, Entry(bg.value))
                out.append(w2.with_store(i, st2))
            return out
        finally:
            self.faulted = faulted

    def cancelled(self, w: World, i: int, op: Op, tick: int) -> list[World]:
        """Worlds after a call that was cancelled (its caller got CancelledError).

        It may have done nothing, or part of its work (a read), or all of it, or it may go
        on in the background until the store's next call on the key (or its close) waits
        for it.
        """
        cfg = self.configs[i]
        out = [w]  # cancelled while waiting for an earlier call of the store on the key
        key = op.k if isinstance(op, (Get, Exists, Set, Delete, Update)) else None
        if key is not None:  # ... or it goes on waiting, then runs
            queue = (*w.stores[i].bg[key], Bg(op, tick=tick, faulted=self.faulted))
            out.append(w.with_store(i, w.stores[i].with_bg(key, queue)))
        for w1 in self.force(w, i, op.keys()):
            out.append(w1)  # cancelled before it changed anything
            st = w1.stores[i]
            if key is not None:  # it runs on in the background
                queue = (Bg(op, tick=tick, faulted=self.faulted),)
                out.append(w1.with_store(i, st.with_bg(key, queue)))
            if isinstance(op, Update):  # cancelled after its read
                out.append(w1.with_store(i, st.with_know(op.k, w1.storage[op.k])))
            elif isinstance(op, Sync) and cfg.write_back:  # some of its writes run on
                conditional = cfg.etag and op.behaviour != "overwrite"
                pending = sorted(st.dirty())
                for n in range(1, len(pending) + 1):
                    for chosen in combinations(pending, n):
                        s2 = st
                        for k in chosen:
                            e = st.cache[k]
                            assert e is not None
                            s2 = s2.with_bg(
                                k, (Bg(None, e.value, conditional, e.last, self.faulted),)
                            )
                        out.append(w1.with_store(i, s2))
        return out

    # ------------------------------------------------------------ transitions

    def apply(self, w: World, i: int, op: Op, tick: int) -> Branches:
        """Every (outcome, world) a call may give, after waiting for its background writes."""
        return [b for w1 in self.force(w, i, op.keys()) for b in self.transitions(w1, i, op, tick)]

    def transitions(self, w: World, i: int, op: Op, tick: int) -> Branches:
        cfg = self.configs[i]
        if isinstance(op, Get):
            return self._get(w, i, op.k)
        if isinstance(op, Exists):
            return self._exists(w, i, op.k)
        if isinstance(op, ListKeys):
            return self._list(w, i)
        if isinstance(op, (Set, Delete)):
            value = op.value if isinstance(op, Set) else None
            if cfg.write_back:
                return [(OK, w.with_store(i, self._pending(w.stores[i], op.k, value, tick)))]
            return self._write_through(w, i, op.k, value)
        if isinstance(op, Update):
            if cfg.write_back:
                return self._update_back(w, i, op.k, op.default, tick)
            return self._update_through(w, i, op.k, op.default)
        if isinstance(op, Sync):
            return self._sync(w, i, op.behaviour)
        if isinstance(op, Close):
            return [
                (OK, w2.with_store(i, StoreState())) if o[0] == "ok" else (o, w2)
                for o, w2 in self._sync(w, i, "raise")
            ]
        if isinstance(op, Discard):
            st = w.stores[i]
            for k in st.dirty():
                st = st.with_cache(k, None)
            return [(OK, w.with_store(i, st))]
        raise AssertionError(f"unknown operation {op!r}")

    def _faults(self, w: World) -> Branches:
        return [(err("StorageError"), w)] if self.faulted else []

    def _get(self, w: World, i: int, k: int) -> Branches:
        cfg = self.configs[i]
        st = w.stores[i]
        e = st.cache[k]
        if e is not None and e.dirty:
            return [(_read(e.value), w)]
        out = []
        if cfg.caching and e is not None:
            out.append((_read(e.value), w))  # a cache hit (it may also have been evicted)
        s = w.storage[k]
        seen = st.with_know(k, s).with_cache(k, Entry(s) if cfg.caching else None)
        out.append((_read(s), w.with_store(i, seen)))
        return out + self._faults(w)

    def _exists(self, w: World, i: int, k: int) -> Branches:
        cfg = self.configs[i]
        st = w.stores[i]
        e = st.cache[k]
        if e is not None and e.dirty:
            return [(("ok", e.value is not None), w)]
        out: Branches = []
        if cfg.caching and e is not None:
            out.append((("ok", e.value is not None), w))
        s = w.storage[k]
        out.append((("ok", s is not None), w))  # never changes the remembered version
        if cfg.caching and s is None:
            out.append((("ok", False), w.with_store(i, st.with_cache(k, Entry(None)))))
        return out + self._faults(w)

    def _list(self, w: World, i: int) -> Branches:
        st = w.stores[i]
        present = []
        for k, s in enumerate(w.storage):
            e = st.cache[k]
            if (e.value is not None) if (e is not None and e.dirty) else (s is not None):
                present.append(KEYS[k])
        return [(("ok", tuple(sorted(present))), w), *self._faults(w)]

    @staticmethod
    def _pending(st: StoreState, k: int, value: Val, tick: int) -> StoreState:
        e = st.cache[k]
        first = e.first if e is not None and e.dirty else tick
        return st.with_cache(k, Entry(value, True, first, tick))

    def _condition(self, i: int, know: Know, s: Val, *, deleting: bool) -> frozenset[bool]:
        """Whether store i's conditional write of a key would pass (both: either may happen)."""
        if not self.configs[i].etag or isinstance(know, _Never):
            return frozenset({True})
        if know is None:
            return frozenset({s is None})
        if s == know:  # never a Stale one
            return frozenset({True})
        if deleting and s is None:  # already gone: a no-op or a conflict, both fine
            return frozenset({True, False})
        return frozenset({False})

    def _landed(self, w: World, k: int, value: Val) -> World:
        """Storage now holds a new version of key k with ``value``."""
        w = w.with_storage(k, value)
        if self.local or value is None:
            return w  # local ETags are content hashes: equal values, equal ETags
        for i, st in enumerate(w.stores):
            if st.know[k] == value:  # an older version with the same value
                w = w.with_store(i, st.with_know(k, Stale(value)))
        return w

    def _blocked(self, storage: tuple[Val, ...], k: int) -> bool:
        partner = _PARTNER.get(k)
        return self.local and partner is not None and storage[partner] is not None

    def _put(
        self, w: World, i: int, k: int, value: Val, *, conditional: bool
    ) -> list[tuple[str, World]]:
        """Store i writes ``value`` (None: deletes) to key k, checking its remembered version.

        Results: "ok" (storage and the remembered version updated), "conflict", "blocked"
        (the local backend cannot hold the key beside its partner), "failed" (faults: landed
        or not, known to the store or not). Cache entries are left to the caller.
        """
        st = w.stores[i]
        cond = (
            self._condition(i, st.know[k], w.storage[k], deleting=value is None)
            if conditional
            else frozenset({True})
        )
        blocked = value is not None and self._blocked(w.storage, k)
        landed = self._landed(w, k, value)
        out: list[tuple[str, World]] = []
        if True in cond and not blocked:
            out.append(("ok", landed.with_store(i, st.with_know(k, value))))
        if False in cond:
            out.append(("conflict", w))
        if blocked or (value is not None and k in self.transient_block):
            out.append(("blocked", w))
        if self.faulted:
            out.append(("failed", w))
            if True in cond and not blocked:
                out.append(("failed", landed))
                out.append(("failed", landed.with_store(i, st.with_know(k, value))))
        return out

    def _write_through(self, w: World, i: int, k: int, value: Val) -> Branches:
        cfg = self.configs[i]
        out: Branches = []
        for res, w2 in self._put(w, i, k, value, conditional=True):
            st = w2.stores[i]
            if res == "ok":
                entry = Entry(value) if cfg.caching else None
                out.append((OK, w2.with_store(i, st.with_cache(k, entry))))
            elif res == "conflict":  # the stale entry is dropped
                out.append((err("ConcurrencyError"), w2.with_store(i, st.with_cache(k, None))))
            elif res == "blocked":
                out.append((err("StorageError"), w2))
            else:
                for name in FAULT_ERRORS:
                    out.append((err(name), w2))
                    if cfg.caching:
                        out.append((err(name), w2.with_store(i, st.with_cache(k, Entry(value)))))
        return out

    def _update_through(self, w: World, i: int, k: int, default: int) -> Branches:
        """An atomic read-modify-write in storage: the counter moves by exactly one."""
        cfg = self.configs[i]
        st = w.stores[i]
        s = w.storage[k]
        new = (default if s is None else s) + 1
        blocked = s is None and self._blocked(w.storage, k)
        out: Branches = []
        if blocked or k in self.transient_block:
            for know in (st.know[k], s):
                out.append((err("StorageError"), w.with_store(i, st.with_know(k, know))))
        if not blocked:
            done = st.with_know(k, new).with_cache(k, Entry(new) if cfg.caching else None)
            out.append((("ok", new), self._landed(w, k, new).with_store(i, done)))
        if self.faulted:
            for name in FAULT_ERRORS:
                for know in (st.know[k], s):
                    out.append((err(name), w.with_store(i, st.with_know(k, know))))
                if not blocked:
                    for know in (st.know[k], s, new):
                        out.append(
                            (
                                err(name),
                                self._landed(w, k, new).with_store(i, st.with_know(k, know)),
                            )
                        )
        return out

    def _update_back(self, w: World, i: int, k: int, default: int, tick: int) -> Branches:
        """WRITE_BACK: the new value stays pending (or, leniently, is written at once)."""
        st = w.stores[i]
        e = st.cache[k]
        if e is not None and e.dirty:
            new = (default if e.value is None else e.value) + 1
            return [(("ok", new), w.with_store(i, self._pending(st, k, new, tick)))]
        out: Branches = []
        if e is not None:  # from the clean cache entry
            new = (default if e.value is None else e.value) + 1
            out.append((("ok", new), w.with_store(i, self._pending(st, k, new, tick))))
        s = w.storage[k]  # from storage: remembers the version it read
        new = (default if s is None else s) + 1
        out.append((("ok", new), w.with_store(i, self._pending(st.with_know(k, s), k, new, tick))))
        out.extend(self._update_through(w, i, k, default))
        return out + self._faults(w)

    def _sync(self, w: World, i: int, behaviour: Behaviour) -> Branches:
        cfg = self.configs[i]
        st = w.stores[i]
        pending = sorted(st.dirty())
        if not pending:
            return [(("ok", ((), (), ())), w)]
        entries = {k: st.cache[k] for k in pending}
        out: Branches = []
        if behaviour == "raise" and cfg.etag:
            conds = [
                self._condition(i, st.know[k], w.storage[k], deleting=entries[k].value is None)  # type: ignore[union-attr]
                for k in pending
            ]
            if any(False in c for c in conds):
                out.append((err("ConcurrencyError"), w))  # nothing written
            out.extend(self._faults(w))
            if any(True not in c for c in conds):
                return out
        by_last = tuple(sorted(pending, key=lambda k: entries[k].last))  # type: ignore[union-attr]
        by_first = tuple(sorted(pending, key=lambda k: entries[k].first))  # type: ignore[union-attr]
        conditional = cfg.etag and behaviour != "overwrite"
        for order in {by_last, by_first}:
            out.extend(self._replay(w, i, order, behaviour, conditional))
        return out

    def _replay(
        self, w: World, i: int, order: tuple[int, ...], behaviour: Behaviour, conditional: bool
    ) -> Branches:
        """Write store i's pending changes one by one, in ``order``."""
        # (world, written, deleted, skipped, errors)
        State = tuple[World, tuple[int, ...], tuple[int, ...], tuple[int, ...], tuple[str, ...]]
        states: list[State] = [(w, (), (), (), ())]
        for k in order:
            nxt: list[State] = []
            for w1, written, deleted, skipped, errors in states:
                e = w1.stores[i].cache[k]
                assert e is not None and e.dirty
                for res, w2 in self._put(w1, i, k, e.value, conditional=conditional):
                    if res == "ok":
                        w3 = w2.with_store(i, w2.stores[i].with_cache(k, Entry(e.value)))
                        if e.value is None:
                            nxt.append((w3, written, (*deleted, k), skipped, errors))
                        else:
                            nxt.append((w3, (*written, k), deleted, skipped, errors))
                    elif res == "conflict" and behaviour == "skip":
                        nxt.append((w2, written, deleted, (*skipped, k), errors))
                    elif res == "conflict":
                        nxt.append((w2, written, deleted, skipped, (*errors, "ConcurrencyError")))
                    elif res == "blocked":
                        nxt.append((w2, written, deleted, skipped, (*errors, "StorageError")))
                    else:
                        nxt.append((w2, written, deleted, skipped, (*errors, *FAULT_ERRORS)))
            states = nxt
        out: Branches = []
        for w1, written, deleted, skipped, errors in states:
            if errors:
                out.extend((err(name), w1) for name in set(errors))
            else:
                names = tuple(
                    tuple(sorted(KEYS[k] for k in ks)) for ks in (written, deleted, skipped)
                )
                out.append((("ok", names), w1))
        return out


def _canonical(w: World) -> World:
    """The world with each store's ticks renumbered 1, 2, ... in their order.

    Only the order of a store's ticks matters (it orders the replay of pending changes), so
    worlds that differ in tick values alone (from different orders of concurrent calls) are
    one world.
    """
    stores = []
    for st in w.stores:
        ticks = sorted(
            {t for e in st.cache if e is not None and e.dirty for t in (e.first, e.last)}
            | {bg.tick for q in st.bg for bg in q}
        )
        if not ticks or ticks == list(range(1, len(ticks) + 1)):
            stores.append(st)
            continue
        rank = {t: n for n, t in enumerate(ticks, 1)}
        cache = tuple(
            replace(e, first=rank[e.first], last=rank[e.last]) if e is not None and e.dirty else e
            for e in st.cache
        )
        bg = tuple(tuple(replace(b, tick=rank[b.tick]) for b in q) for q in st.bg)
        stores.append(replace(st, cache=cache, bg=bg))
    return replace(w, stores=tuple(stores))


# --------------------------------------------------------------------------- reporting


def describe_world(w: World) -> str:
    def val(v: object) -> str:
        return "-" if v is None else repr(v)

    storage = " ".join(f"{KEYS[k]}={val(v)}" for k, v in enumerate(w.storage))
    parts = [f"storage[{storage}]"]
    for i, st in enumerate(w.stores):
        bits = []
        for k in range(len(KEYS)):
            know = st.know[k]
            e = st.cache[k]
            if know is NEVER and e is None and not st.bg[k]:
                continue
            bit = f"{KEYS[k]}:seen={val(know)}"
            if e is not None:
                bit += f",{'dirty' if e.dirty else 'cached'}={val(e.value)}"
            for bg in st.bg[k]:
                what = bg.op.describe() if bg.op is not None else f"sync write {val(bg.value)}"
                bit += f",inflight={what}"
            bits.append(bit)
        parts.append(f"s{i}{{{' '.join(bits)}}}")
    return " ".join(parts)


def iter_limited(items: Iterable[str], limit: int) -> Iterator[str]:
    for n, item in enumerate(items):
        if n == limit:
            yield "..."
            return
        yield item
