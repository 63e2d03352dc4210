"""Every credential signs real requests that an HTTPS Azurite (``--oauth basic``) accepts.

Tokens come from the fake token service (tests/identity/servers.py), a real HTTP server
playing IMDS, App Service, Azure Arc, Entra ID and ``az``. Azurite checks each token's
issuer, audience and lifetime, so a request it accepts carried a token that was valid.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from asyncblobdict import AsyncBlobStore, AuthenticationError
from asyncblobdict.adapters.azure import (
    AccessToken,
    AzureBlobAdapter,
    ClientSecretCredential,
    CredentialUnavailableError,
    WorkloadIdentityCredential,
)
from tests.identity.signin_fakes import (
    KINDS,
    TENANT,
    FakeClock,
    FakeSleep,
    FakeTokenService,
    TokenPlan,
    mint_jwt,
    use_clock,
)
from tests.identity.signin_fakes import storage_claims as claims

MakeStore = Callable[..., AsyncBlobStore]


async def exercise(store: AsyncBlobStore) -> None:
    """Set, get, list and delete: every kind of request the store makes."""
    await store.set_json("a/1", {"n": 1})
    await store.set_binary("b", b"\x00\x01")
    assert await store.get_json("a/1") == {"n": 1}
    assert await store.get_binary("b") == b"\x00\x01"
    assert await store.list_keys() == ["a/1", "b"]
    await store.delete("a/1")
    assert await store.list_keys() == ["b"]


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.azure
async def test_each_credential_signs_requests_azurite_accepts(
    kind: str,
    make_credential: Callable[[str], Any],
    make_store: MakeStore,
    service: FakeTokenService,
) -> None:
    credential = make_credential(kind)
    await exercise(make_store(credential))
    # One token, from the expected source, served every request.
    assert [(s.kind, s.status) for s in service.seen] == [(KINDS[kind], 200)]
    seen = service.seen[0].details
    if kind.endswith("client-id"):
        assert seen == {"client_id": service.user_assigned}
    if kind.endswith("resource-id"):
        assert seen == {"msi_res_id": "/subscriptions/s/rg/id1"}
    if kind.startswith("client-certificate") or kind.endswith("certificate"):
        assert seen["flow"] == "certificate"
    if "workload" in kind:
        assert seen["flow"] == "workload"
    await credential.close()


@pytest.mark.azure
async def test_a_bad_token_is_refused_by_azurite(
    make_store: MakeStore, service: FakeTokenService, make_credential: Callable[[str], Any]
) -> None:
    """The proof above means something: Azurite refuses a token with the wrong audience."""
    service.plans.append(TokenPlan(claims={"aud": "https://vault.azure.net"}))
    store = make_store(make_credential("client-secret"))
    with pytest.raises(AuthenticationError) as info:
        await store.set_json("k", 1)
    assert info.value.status == 403 and info.value.error_code == "AuthenticationFailed"


@pytest.mark.azure
async def test_100_concurrent_first_requests_make_one_token_request(
    make_store: MakeStore, service: FakeTokenService, make_credential: Callable[[str], Any]
) -> None:
    store = make_store(make_credential("managed-identity-imds"))
    await asyncio.gather(*(store.set_json(f"k{i}", i) for i in range(100)))
    assert service.count() == 1
    assert await store.get_json("k99") == 99


async def test_concurrent_get_token_callers_share_one_request(
    service: FakeTokenService, make_credential: Callable[[str], Any]
) -> None:
    """Deterministic form: the answer is held until all 100 callers have asked."""
    credential = make_credential("client-secret")
    service.gate = asyncio.Event()
    callers = [
        asyncio.ensure_future(credential.get_token("https://storage.azure.com/.default"))
        for _ in range(100)
    ]
    # All 100 callers ran their first step before the request could reach the service.
    await service.received.wait()
    service.gate.set()
    tokens = await asyncio.gather(*callers)
    assert service.count() == 1
    assert {t.token for t in tokens} == {service.issued[0]}


@pytest.mark.azure
async def test_token_near_expiry_is_refreshed_before_use(
    make_store: MakeStore,
    service: FakeTokenService,
    make_credential: Callable[[str], Any],
    clock: FakeClock,
) -> None:
    credential = make_credential("client-secret")
    use_clock(credential, clock)
    # The first token is already expired for Azurite: if it were ever sent, Azurite would
    # refuse the request. The client is told it lives an hour.
    service.plans.append(TokenPlan(claims={"lifetime": -10}))
    first = await credential.get_token("https://storage.azure.com/.default")
    clock.advance(3600 - 299)  # less than 5 minutes left: due for refresh, still valid
    store = make_store(credential)
    await store.set_json("k", "v")  # sent with a new token, or Azurite refuses it
    assert service.count() == 2
    second = await credential.get_token("https://storage.azure.com/.default")
    assert second.token != first.token and second.token == service.issued[1]


@pytest.mark.azure
async def test_refresh_in_from_the_service_is_honoured(
    make_store: MakeStore,
    service: FakeTokenService,
    make_credential: Callable[[str], Any],
    clock: FakeClock,
) -> None:
    service.refresh_in = 600
    credential = make_credential("managed-identity-imds")
    use_clock(credential, clock)
    store = make_store(credential)
    await store.set_json("k", 1)
    clock.advance(599)
    await store.get_json("k")
    assert service.count() == 1
    clock.advance(2)  # past refresh_in, though most of the hour is left
    await store.get_json("k")
    assert service.count() == 2


@pytest.mark.azure
async def test_an_expired_token_is_never_sent(
    make_store: MakeStore,
    service: FakeTokenService,
    make_credential: Callable[[str], Any],
    clock: FakeClock,
    sleep: FakeSleep,
) -> None:
    credential = make_credential("client-secret")
    use_clock(credential, clock, sleep)
    service.plans.append(TokenPlan(claims={"lifetime": -10}))  # Azurite would refuse it
    await credential.get_token("https://storage.azure.com/.default")
    clock.advance(3600 - 29)  # 29 s left by our clock: too close to expiry to send
    service.fail(503, "temporarily_unavailable", "AADSTS50196: try again later")
    store = make_store(credential)
    with pytest.raises(AuthenticationError) as info:
        await store.set_json("k", "v")
    # The token service's error, not Azurite's: the request was never sent.
    assert info.value.error_code == "temporarily_unavailable" and info.value.status == 503
    service.heal()
    await store.set_json("k", "v")
    assert await store.get_json("k") == "v"


@pytest.mark.azure
async def test_failed_early_refresh_keeps_the_valid_token(
    make_store: MakeStore,
    service: FakeTokenService,
    make_credential: Callable[[str], Any],
    clock: FakeClock,
    sleep: FakeSleep,
    caplog: pytest.LogCaptureFixture,
) -> None:
    credential = make_credential("client-secret")
    use_clock(credential, clock, sleep)
    store = make_store(credential)
    await store.set_json("k", 1)
    clock.advance(3600 - 200)  # due for refresh, valid for 200 s more
    service.fail(500, "server_error", "AADSTS90033: A transient error has occurred.")
    with caplog.at_level(logging.WARNING, logger="asyncblobdict"):
        assert await store.get_json("k") == 1  # the old token, accepted by Azurite
    asked = service.count()
    assert asked == 3  # the first token, then the refresh and its one retry
    assert "early token refresh failed" in caplog.text
    # While the service fails, it is not asked on every request, but again after 30 s.
    await store.set_json("k", 2)
    assert service.count() == asked
    service.heal()
    clock.advance(31)
    assert await store.get_json("k") == 2
    assert service.count() == asked + 1
    assert (await credential.get_token("https://storage.azure.com/.default")).token == (
        service.issued[-1]
    )


@pytest.mark.azure
async def test_rotated_workload_identity_file_is_read_again(
    make_store: MakeStore,
    service: FakeTokenService,
    ssl_context: ssl.SSLContext,
    clock: FakeClock,
    tmp_path: Path,
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("assertion-one")
    service.workload_assertions.add("assertion-one")
    credential = WorkloadIdentityCredential(
        TENANT, service.client_id, str(token_file), authority=service.https_url,
        ssl_context=ssl_context,
    )  # fmt: skip
    use_clock(credential, clock)
    store = make_store(credential)
    await store.set_json("k", 1)
    # Kubernetes rotates the file; the old assertion is no longer accepted.
    service.workload_assertions = {"assertion-two"}
    token_file.write_text("assertion-two")
    clock.advance(3600)  # the first token has expired
    assert await store.get_json("k") == 1
    assert [s.details["assertion"] for s in service.seen] == ["assertion-one", "assertion-two"]


@pytest.mark.azure
async def test_adapter_close_leaves_a_given_credential_open_and_no_session_behind(
    make_store: MakeStore, service: FakeTokenService, make_credential: Callable[[str], Any]
) -> None:
    """The adapter does not close a credential it was given (the owner does); ours hold no
    connection between token requests, so nothing is left open either way."""

    def open_sessions() -> set[int]:
        gc.collect()
        return {
            id(o) for o in gc.get_objects() if isinstance(o, aiohttp.ClientSession) and not o.closed
        }

    before = open_sessions()
    credential = make_credential("managed-identity-imds")
    first = make_store(credential)
    await first.set_json("k", 1)
    await first.close()
    assert open_sessions() <= before
    second = make_store(credential)  # the same credential serves another adapter
    await second.set_json("k", 2)
    assert service.count() == 1
    await second.close()
    await credential.close()
    assert open_sessions() <= before


@pytest.mark.azure
async def test_azure_identity_style_credentials_still_work(
    make_store: MakeStore, service: FakeTokenService
) -> None:
    """Any object with an async get_token (azure-identity's) signs requests as before."""
    from azure.core.credentials import AccessToken as CoreAccessToken

    class Foreign:
        calls = 0

        async def get_token(self, *scopes: str, **kwargs: Any) -> CoreAccessToken:
            assert scopes == ("https://storage.azure.com/.default",)
            self.calls += 1
            c = claims()
            return CoreAccessToken(mint_jwt(c), c["exp"])

    foreign = Foreign()
    store = make_store(foreign)
    await asyncio.gather(*(store.set_json(f"k{i}", i) for i in range(20)))
    await exercise(make_store(foreign))
    assert foreign.calls == 2  # one per adapter: each adapter caches the token
    assert service.count() == 0


@pytest.mark.parametrize(
    ("kind", "setup", "code", "status"),
    [
        ("client-secret", "wrong-secret", "invalid_client", 401),
        ("client-certificate-pem", "unregistered-certificate", "invalid_client", 401),
        ("workload-identity", "unknown-assertion", "invalid_client", 401),
        ("managed-identity-app-service", "wrong-header", None, 401),
        ("managed-identity-imds", "server-error", "server_error", 500),
        ("managed-identity-arc", "server-error", "server_error", 500),
        ("azure-cli", "server-error", "AADSTS90033", None),
    ],
)
@pytest.mark.azure
async def test_errors_are_authentication_errors_with_the_service_code_and_no_secret(
    kind: str,
    setup: str,
    code: str | None,
    status: int | None,
    make_credential: Callable[[str], Any],
    make_store: MakeStore,
    service: FakeTokenService,
    sleep: FakeSleep,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    credential = make_credential(kind)
    use_clock(credential, FakeClock(), sleep)
    secrets = [service.client_secret, service.identity_header]
    if setup == "wrong-secret":
        credential._client_secret = "not-the-secret-" + "x" * 16
        secrets.append(credential._client_secret)
    elif setup == "unregistered-certificate":
        service.certificates.clear()
    elif setup == "unknown-assertion":
        secrets += list(service.workload_assertions)
        service.workload_assertions.clear()
    elif setup == "wrong-header":
        monkeypatch.setenv("IDENTITY_HEADER", "wrong-header-" + "y" * 16)
        secrets.append("wrong-header-" + "y" * 16)
    else:
        service.fail(500, "server_error", "AADSTS90033: A transient error has occurred.")
    store = make_store(credential)
    with caplog.at_level(logging.DEBUG), pytest.raises(AuthenticationError) as info:
        await store.set_json("k", 1)
    exc = info.value
    assert exc.error_code == code and exc.status == status, (exc.error_code, exc.status, exc)
    secrets += service.secrets()
    text = "\n".join([str(exc), repr(exc), repr(credential), caplog.text])
    for secret in secrets:
        assert secret not in text
    assert exc.__cause__ is None


async def test_imds_identity_not_assigned_is_unavailable_with_its_code(
    service: FakeTokenService, make_credential: Callable[[str], Any], monkeypatch: Any
) -> None:
    monkeypatch.setenv("AZURE_POD_IDENTITY_AUTHORITY_HOST", service.http_url)
    from asyncblobdict.adapters.azure import ManagedIdentityCredential

    credential = ManagedIdentityCredential("not-assigned-here")
    with pytest.raises(CredentialUnavailableError) as info:
        await credential.get_token("https://storage.azure.com/.default")
    assert info.value.status == 400 and info.value.error_code == "invalid_request"
    assert "Identity not found" in str(info.value)
    assert service.count("imds") == 1  # a 400 is not retried


@pytest.mark.azure
async def test_no_token_or_secret_in_logs_reprs_or_exceptions(
    make_credential: Callable[[str], Any],
    make_store: MakeStore,
    service: FakeTokenService,
    sleep: FakeSleep,
    caplog: pytest.LogCaptureFixture,
    clean_identity_env: Callable[[], None],
) -> None:
    seen_text: list[str] = []
    with caplog.at_level(logging.DEBUG):
        for kind in KINDS:
            clean_identity_env()
            credential = make_credential(kind)
            clock = FakeClock()  # App Service and az give absolute expiry times
            use_clock(credential, clock, sleep)
            store = make_store(credential)
            await store.set_json("k", kind)
            token = await credential.get_token("https://storage.azure.com/.default")
            seen_text += [repr(credential), repr(store), repr(token), str(token)]
            clock.advance(3600 - 100)
            service.fail(500, "server_error", "AADSTS90033: A transient error has occurred.")
            assert await store.get_json("k") == kind  # failed early refresh: warning logged
            clock.advance(200)
            try:
                await store.get_json("k")
            except AuthenticationError as exc:
                seen_text += [str(exc), repr(exc)]
            else:
                raise AssertionError("an expired token was used")
            service.heal()
    assert "early token refresh failed" in caplog.text
    assert len(service.issued) >= len(KINDS)
    text = "\n".join([*seen_text, caplog.text])
    for secret in service.secrets():
        assert secret not in text
    assert "<hidden>" in repr(token)


async def test_client_secret_credential_repr_and_errors_before_any_request() -> None:
    credential = ClientSecretCredential(TENANT, "client", "very-secret-value")
    assert "very-secret-value" not in repr(credential)
    assert repr(AccessToken("tok-en-value-123", 1)) == "AccessToken(token=<hidden>, expires_on=1)"
    with pytest.raises(ValueError):
        ClientSecretCredential("bad tenant/", "client", "secret")
    with pytest.raises(ValueError):
        ClientSecretCredential(TENANT, "client", "secret", authority="http://insecure.example")


@pytest.mark.azure
async def test_one_adapter_used_from_two_event_loops(
    https_azurite: Any, ssl_context: ssl.SSLContext, make_credential: Callable[[str], Any]
) -> None:
    """The credential's cache and single request work from each loop the adapter meets."""
    credential = make_credential("managed-identity-imds")
    adapter = AzureBlobAdapter(https_azurite.endpoint, credential, ssl_context=ssl_context)

    def in_new_loop() -> None:
        asyncio.run(adapter.put("loops", "k", b"v"))

    await asyncio.to_thread(in_new_loop)
    assert (await adapter.get("loops", "k"))[0] == b"v"
    await adapter.close()
