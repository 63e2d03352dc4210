"""Writes whose answer was lost: resolved by the write token, never guessed from the bytes.

Each test stages one exact interleaving through tests/reliability/fault_proxy.py's
ScriptedProxy in front of Azurite: an attempt that never reached the server (a 503 or a reset
before forwarding), or one that landed but whose answer was lost (a reset after forwarding),
with another writer ("B", talking to Azurite directly) acting at a chosen moment. The
adapter must report success only when its own token is in storage, a plain error when the
stored version shows that its write did not land, and OutcomeUnknownError otherwise.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from asyncblobdict import (
    AsyncBlobStore,
    BlobNotFoundError,
    ConcurrencyError,
    InvalidKeyError,
    OutcomeUnknownError,
    StorageError,
)
from asyncblobdict.adapters.azure import AzureBlobAdapter, RetryPolicy
from asyncblobdict.adapters.base import CREATE, Update
from tests.reliability.fault_proxy import Rule, ScriptedProxy
from tests.reliability.support import AzuriteInfo, azure_fast_options

pytestmark = pytest.mark.azure

TOKEN = "x-ms-meta-abdtoken"
KEY = "counter"
# Small thresholds so the "blocks" cases upload 3 blocks and commit them with Put Block List.
BLOCKS = {"single_put_threshold": 1024, "block_size": 1024}


@dataclass
class Env:
    proxy: ScriptedProxy
    direct: AzureBlobAdapter  # writer B, and the referee: talks to Azurite without faults
    container: str
    rel: AzuriteInfo
    made: list[AzureBlobAdapter] = field(default_factory=list)

    def adapter(self, **options: Any) -> AzureBlobAdapter:
        """Writer A: an adapter behind the proxy, with quick retries (3 attempts)."""
        opts = azure_fast_options(
            5.0, retry=RetryPolicy(max_attempts=3, base_delay=0.01, max_delay=0.02)
        )
        opts.update(options)
        adapter: AzureBlobAdapter = self.rel.new_adapter(
            self.proxy.url("/devstoreaccount1"), **opts
        )
        self.made.append(adapter)
        return adapter

    def rule(self, method: str, **options: Any) -> Rule:
        """A proxy rule for requests on KEY (the blob itself, not the container)."""
        return self.proxy.rule(method, has=f"/{self.container}/{KEY}", **options)

    async def stored(self) -> bytes | None:
        try:
            return (await self.direct.get(self.container, KEY))[0]
        except BlobNotFoundError:
            return None


@pytest.fixture
async def env(rel_azurite: AzuriteInfo) -> AsyncIterator[Env]:
    proxy = ScriptedProxy()
    await proxy.start(rel_azurite.endpoint)
    direct = rel_azurite.new_adapter()
    container = f"amb{int(time.time() * 1000)}"
    await direct.put(container, "other", b"the container exists")
    e = Env(proxy, direct, container, rel_azurite)
    try:
        yield e
    finally:
        for adapter in e.made:
            await adapter.close()
        await direct.close()
        await proxy.stop()


async def condition(env: Env, mode: str) -> dict[str, Any]:
    """Prepare KEY for a write of ``mode`` and return that write's precondition."""
    if mode == "create":
        return {"condition": CREATE}
    etag = await env.direct.put(env.container, KEY, b"0")
    return {"condition": Update(etag)} if mode == "update" else {}


def write_request(env: Env, size: str) -> str:
    """What the request line of the write that stores the blob contains: the single Put
    Blob, or the Put Block List that commits the blocks (never a Put Block)."""
    if size == "blocks":
        return f"/{env.container}/{KEY}?comp=blocklist "
    return f"/{env.container}/{KEY} HTTP/"


def b_writes(env: Env, data: bytes, **cond: Any) -> Callable[[], Any]:
    async def write() -> None:
        await env.direct.put(env.container, KEY, data, **cond)

    return write


def b_increments(env: Env, data: bytes) -> Callable[[], Any]:
    """B reads what is stored (A's write, when it landed) and replaces it conditionally."""

    async def write() -> None:
        _, info = await env.direct.get(env.container, KEY)
        assert info.etag is not None
        await env.direct.put(env.container, KEY, data, condition=Update(info.etag))

    return write


# ------------------------------------------------------------------------- defect 1


@pytest.mark.parametrize("fault", ["error_503", "reset_before"])
@pytest.mark.parametrize("mode", ["create", "update"])
async def test_write_that_never_arrived_is_not_success_when_b_wrote_the_same_bytes(
    env: Env, mode: str, fault: str
) -> None:
    """A's first attempt never reaches the server; meanwhile B stores the very bytes A
    writes (two counters incremented from the same value). A's retry meets B's version:
    equal bytes prove nothing, so A must not report success."""
    cond = await condition(env, mode)
    rule = env.rule("PUT", fault=fault, before=b_writes(env, b"1", **cond))
    with pytest.raises((ConcurrencyError, OutcomeUnknownError)):
        await env.adapter().put(env.container, KEY, b"1", **cond)
    assert rule.times == 0 and len(rule.seen) == 1


@pytest.mark.parametrize("mode", ["create", "update"])
async def test_write_that_never_arrived_retries_with_the_same_token_and_condition(
    env: Env, mode: str
) -> None:
    cond = await condition(env, mode)
    env.rule("PUT", fault="error_503")
    later = env.rule("PUT", times=None)
    etag = await env.adapter().put(env.container, KEY, b"1", **cond)
    seen = env.proxy.rules[0].seen + later.seen
    assert len(seen) == 2
    tokens = {h[TOKEN] for h in seen}
    assert len(tokens) == 1 and len(tokens.pop()) == 32
    assert len({(h.get("if-match"), h.get("if-none-match")) for h in seen}) == 1
    info = await env.direct.head(env.container, KEY)
    assert info is not None and info.etag == etag and await env.stored() == b"1"


# ------------------------------------------------------------------------- defect 2


@pytest.mark.parametrize("mode", ["create", "update"])
async def test_landed_then_overwritten_by_b_is_outcome_unknown(env: Env, mode: str) -> None:
    """A's write lands but its answer is lost; B then replaces it. A's retry meets B's
    version: A's write did land, but nothing in storage proves it, so the outcome is
    unknown (never a ConcurrencyError, which would invite update_json to apply fn again)."""
    cond = await condition(env, mode)
    env.rule("PUT", fault="reset_after", after=b_increments(env, b"2"))
    with pytest.raises(OutcomeUnknownError) as info:
        await env.adapter().put(env.container, KEY, b"1", **cond)
    assert "may or may not have been applied" in str(info.value)
    assert await env.stored() == b"2"


async def test_update_json_does_not_apply_fn_again_after_a_write_that_may_have_landed(
    env: Env,
) -> None:
    store_b = AsyncBlobStore(env.direct, env.container, concurrency_mode="etag")
    store_a = AsyncBlobStore(env.adapter(), env.container, concurrency_mode="etag")
    await store_b.set_json(KEY, 0)
    calls = 0

    def increment(value: int) -> int:
        nonlocal calls
        calls += 1
        return value + 1

    async def b_update() -> None:
        await store_b.update_json(KEY, lambda v: v + 1)

    env.rule("PUT", fault="reset_after", after=b_update)
    with pytest.raises(OutcomeUnknownError):
        await store_a.update_json(KEY, increment)
    assert calls == 1, "update_json applied fn again after a write that may have landed"
    assert await store_b.get_json(KEY) == 2  # A's increment and B's, each once


@pytest.mark.parametrize("size", ["single", "blocks"])
@pytest.mark.parametrize("mode", ["create", "update"])
async def test_landed_with_answer_lost_is_success(env: Env, mode: str, size: str) -> None:
    """The retry meets A's own version: its token proves the write landed."""
    cond = await condition(env, mode)
    data = b"A" * 3000
    first = env.proxy.rule("PUT", has=write_request(env, size), fault="reset_after")
    later = env.proxy.rule("PUT", has=write_request(env, size), times=None)
    adapter = env.adapter(**BLOCKS) if size == "blocks" else env.adapter()
    etag = await adapter.put(env.container, KEY, data, **cond)
    info = await env.direct.head(env.container, KEY)
    assert info is not None and etag == info.etag
    assert await env.stored() == data
    assert len(first.seen) == 1 and len(later.seen) == 1
    assert first.seen[0][TOKEN] == later.seen[0][TOKEN]


@pytest.mark.parametrize("size", ["single", "blocks"])
@pytest.mark.parametrize("mode", ["create", "update", "unconditional"])
async def test_landed_but_every_answer_lost_is_success(env: Env, mode: str, size: str) -> None:
    """Every attempt is forwarded and every answer lost, so the retries run out: the token
    in storage shows the write landed (this used to raise StorageError)."""
    cond = await condition(env, mode)
    data = b"A" * 3000
    rule = env.proxy.rule("PUT", has=write_request(env, size), fault="reset_after", times=None)
    adapter = env.adapter(**BLOCKS) if size == "blocks" else env.adapter()
    etag = await adapter.put(env.container, KEY, data, **cond)
    assert len(rule.seen) == 3  # the whole retry budget
    info = await env.direct.head(env.container, KEY)
    assert info is not None and etag == info.etag and await env.stored() == data


@pytest.mark.parametrize("fault", ["error_503", "reset_before"])
@pytest.mark.parametrize("mode", ["create", "update"])
async def test_conditional_write_that_never_arrived_is_a_plain_storage_error(
    env: Env, mode: str, fault: str
) -> None:
    """Retries run out without the request ever reaching the server: storage still holds
    the version A conditioned on, so the write certainly did not land."""
    cond = await condition(env, mode)
    before = await env.stored()
    env.rule("PUT", fault=fault, times=None)
    with pytest.raises(StorageError) as info:
        await env.adapter().put(env.container, KEY, b"1", **cond)
    assert type(info.value) is StorageError
    assert await env.stored() == before


async def test_unconditional_write_that_never_arrived_is_outcome_unknown(env: Env) -> None:
    """Without a condition there is no version to compare: the 503s may have been applied
    (a 503 can come after the service stored the write), and the token is not there."""
    await condition(env, "unconditional")
    env.rule("PUT", fault="error_503", times=None)
    with pytest.raises(OutcomeUnknownError):
        await env.adapter().put(env.container, KEY, b"1")


async def test_landed_then_overwritten_then_budget_exhausted_is_outcome_unknown(
    env: Env,
) -> None:
    cond = await condition(env, "update")
    env.rule("PUT", fault="reset_after", after=b_increments(env, b"2"))
    env.rule("PUT", fault="reset_before", times=None)
    with pytest.raises(OutcomeUnknownError):
        await env.adapter().put(env.container, KEY, b"1", **cond)
    assert await env.stored() == b"2"


async def test_check_that_fails_is_outcome_unknown(env: Env) -> None:
    """The answer was lost and the HEAD that would tell what happened fails too."""
    cond = await condition(env, "update")
    env.rule("PUT", fault="reset_after")
    env.rule("HEAD", fault="error_503", times=None)
    with pytest.raises(OutcomeUnknownError):
        await env.adapter().put(env.container, KEY, b"1", **cond)
    assert await env.stored() == b"1"  # it had landed: unknown was the honest answer


@pytest.mark.parametrize("mode", ["create", "update"])
async def test_clean_conflict_is_a_concurrency_error_without_a_check(env: Env, mode: str) -> None:
    cond = await condition(env, mode)
    await b_writes(env, b"B")()  # B wins before A starts
    heads = env.rule("HEAD", times=None)
    with pytest.raises(ConcurrencyError) as info:
        await env.adapter().put(env.container, KEY, b"1", **cond)
    assert type(info.value) is ConcurrencyError
    assert heads.seen == []
    assert await env.stored() == b"B"


async def test_token_is_not_reported_as_user_metadata(env: Env) -> None:
    """The token is stored as blob metadata, a fresh one per put, but head and get report
    only the user's own metadata, and a user cannot write the reserved name."""
    env.rule("PUT", times=None)
    adapter = env.adapter()
    await adapter.put(env.container, KEY, b"1")
    await adapter.put(env.container, KEY, b"2", metadata={"Mine": "yes"})
    tokens = [h[TOKEN] for h in env.proxy.rules[0].seen]
    assert len(tokens) == 2 and tokens[0] != tokens[1]
    info = await adapter.head(env.container, KEY)
    assert info is not None and info.size == 1
    assert dict(info.metadata) == {"mine": "yes"}
    assert dict((await adapter.get(env.container, KEY))[1].metadata) == {"mine": "yes"}
    with pytest.raises(InvalidKeyError):
        await adapter.put(env.container, KEY, b"3", metadata={"AbdToken": "forged"})


# ------------------------------------------------------------------------- deletes


async def test_delete_that_never_arrived_while_b_wrote_is_outcome_unknown(env: Env) -> None:
    cond = await condition(env, "update")
    env.rule("DELETE", fault="error_503", before=b_increments(env, b"2"))
    with pytest.raises(OutcomeUnknownError):
        await env.adapter().delete(env.container, KEY, **cond)
    assert await env.stored() == b"2"


async def test_delete_landed_then_b_recreated_is_outcome_unknown(env: Env) -> None:
    cond = await condition(env, "update")
    env.rule("DELETE", fault="reset_after", after=b_writes(env, b"2", condition=CREATE))
    with pytest.raises(OutcomeUnknownError):
        await env.adapter().delete(env.container, KEY, **cond)
    assert await env.stored() == b"2"


@pytest.mark.parametrize("times", [1, None])
async def test_delete_landed_with_answers_lost_is_success(env: Env, times: int | None) -> None:
    """Once (the retry meets a missing key) or on every attempt (the retries run out)."""
    cond = await condition(env, "update")
    env.rule("DELETE", fault="reset_after", times=times)
    await env.adapter().delete(env.container, KEY, **cond)
    assert await env.stored() is None


async def test_delete_that_never_arrived_is_a_plain_storage_error(env: Env) -> None:
    cond = await condition(env, "update")
    env.rule("DELETE", fault="reset_before", times=None)
    with pytest.raises(StorageError) as info:
        await env.adapter().delete(env.container, KEY, **cond)
    assert type(info.value) is StorageError
    assert await env.stored() == b"0"
