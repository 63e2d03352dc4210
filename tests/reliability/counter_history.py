"""A history checker for counters: did every reported increment happen exactly once?

    history = await run_counter_history(stores, "counter", increments=25, read_final=read)
    history.check()

Every store runs ``increments`` calls of ``update_json(key, lambda v: v + 1, default=0)``
one after another, all stores at once. Each call's outcome is kept: the value it returned,
or the error it raised. A correct store guarantees, whatever the network did:

* every successful call returned a distinct value (two calls that report the same value
  cannot both have been applied: one of them is a false success);
* the final count is ``successes + k`` with ``0 <= k <= raised``: each reported success
  happened once, and a call that raised may have landed (OutcomeUnknownError says so)
  but no call landed twice (an increment applied twice shows up as k > raised).

Backend-agnostic: give it stores on memory, local or Azure (behind a fault proxy or not).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from asyncblobdict import AsyncBlobDictError, AsyncBlobStore

__all__ = ["CounterHistory", "run_counter_history"]


@dataclass
class CounterHistory:
    """Outcomes of every update_json call of one run, and the count found afterwards."""

    stores: int
    increments: int  # per store
    returned: list[int] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)  # by exception type name
    final: int = 0
    seconds: float = 0.0

    @property
    def calls(self) -> int:
        return self.stores * self.increments

    @property
    def successes(self) -> int:
        return len(self.returned)

    @property
    def raised(self) -> int:
        return sum(self.errors.values())

    @property
    def landed_after_error(self) -> int:
        """k: increments that landed although their call raised."""
        return self.final - self.successes

    def problems(self) -> list[str]:
        found = []
        dup = sorted(v for v, n in Counter(self.returned).items() if n > 1)
        if dup:
            found.append(f"{len(dup)} value(s) returned by more than one call: {dup[:10]}")
        bad = sorted(v for v in self.returned if not 1 <= v <= self.final)
        if bad:
            found.append(f"values outside 1..{self.final} returned: {bad[:10]}")
        if self.successes + self.raised != self.calls:
            found.append(f"{self.calls} calls but {self.successes + self.raised} outcomes")
        k = self.landed_after_error
        if k < 0:
            found.append(
                f"{self.successes} calls reported success but the counter is {self.final}: "
                f"{-k} reported increment(s) never happened"
            )
        if k > self.raised:
            found.append(
                f"the counter is {self.final} after {self.successes} successes and "
                f"{self.raised} errors: {k - self.raised} increment(s) applied twice"
            )
        return found

    def check(self) -> None:
        """Fail (AssertionError) with every broken guarantee named."""
        problems = self.problems()
        assert not problems, "; ".join(problems) + f" ({self.summary()})"

    def summary(self) -> dict[str, Any]:
        return {
            "stores": self.stores,
            "calls": self.calls,
            "successes": self.successes,
            "raised": self.raised,
            "errors": dict(sorted(self.errors.items())),
            "final": self.final,
            "landed_after_error": self.landed_after_error,
            "seconds": round(self.seconds, 1),
        }


async def run_counter_history(
    stores: Sequence[AsyncBlobStore],
    key: str,
    increments: int,
    *,
    read_final: Callable[[], Awaitable[int]],
    max_attempts: int = 1000,
) -> CounterHistory:
    """Run ``increments`` update_json calls per store, concurrently across stores.

    ``read_final`` reads the counter afterwards, preferably around whatever injects faults.
    Errors from the library are recorded; anything else (a bug) propagates.
    """
    history = CounterHistory(len(stores), increments)
    started = time.monotonic()

    async def work(store: AsyncBlobStore) -> None:
        for _ in range(increments):
            try:
                value = await store.update_json(
                    key, lambda v: v + 1, default=0, max_attempts=max_attempts
                )
            except AsyncBlobDictError as exc:
                history.errors[type(exc).__name__] += 1
            else:
                history.returned.append(value)

    await asyncio.gather(*(work(s) for s in stores))
    history.seconds = time.monotonic() - started
    history.final = await read_final()
    return history
