"""Credential behaviour against the fake token service, without storage: managed identity
detection and retries, Azure Arc's challenge, the Azure CLI, DefaultAzureCredential's
chain, and the errors each gives."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from asyncblobdict import AuthenticationError
from asyncblobdict.adapters.azure import (
    AccessToken,
    AzureCliCredential,
    ClientCertificateCredential,
    CredentialUnavailableError,
    DefaultAzureCredential,
    ManagedIdentityCredential,
    WorkloadIdentityCredential,
)
from asyncblobdict.adapters.azure.auth import BearerTokenAuth
from tests.identity.signin_fakes import TENANT, FakeClock, FakeSleep, FakeTokenService, use_clock

SCOPE = "https://storage.azure.com/.default"
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def imds(service: FakeTokenService, monkeypatch: pytest.MonkeyPatch) -> FakeTokenService:
    monkeypatch.setenv("AZURE_POD_IDENTITY_AUTHORITY_HOST", service.http_url)
    return service


# --- managed identity ---------------------------------------------------------------------


async def test_imds_retries_5xx_with_exponential_backoff(
    imds: FakeTokenService, sleep: FakeSleep
) -> None:
    credential = ManagedIdentityCredential()
    use_clock(credential, FakeClock(), sleep)
    imds.fail(500, "server_error", "busy", times=2)
    token = await credential.get_token(SCOPE)
    assert token.token == imds.issued[0] and imds.count() == 3
    assert sleep.delays == [0.8, 1.6]


async def test_imds_404_and_429_are_retried_and_retry_after_honoured(
    imds: FakeTokenService, sleep: FakeSleep
) -> None:
    credential = ManagedIdentityCredential()
    use_clock(credential, FakeClock(), sleep)
    imds.fail(404, "not_found", "identity not ready", times=1)
    await credential.get_token(SCOPE)
    credential = ManagedIdentityCredential()
    use_clock(credential, FakeClock(), sleep)
    imds.retry_after = "7"
    imds.fail(429, "throttled", "slow down", times=1)
    await credential.get_token(SCOPE)
    assert sleep.delays == [0.8, 7.0]


async def test_imds_410_is_retried_for_at_least_70_seconds(
    imds: FakeTokenService, sleep: FakeSleep
) -> None:
    credential = ManagedIdentityCredential()
    use_clock(credential, FakeClock(), sleep)
    imds.fail(410, "gone", "IMDS is being updated")
    with pytest.raises(AuthenticationError) as info:
        await credential.get_token(SCOPE)
    assert info.value.status == 410 and info.value.error_code == "gone"
    assert sum(sleep.delays) >= 70 and imds.count() == len(sleep.delays) + 1


async def test_imds_gives_up_after_five_retries(imds: FakeTokenService, sleep: FakeSleep) -> None:
    credential = ManagedIdentityCredential()
    use_clock(credential, FakeClock(), sleep)
    imds.fail(503, "unavailable", "down")
    with pytest.raises(AuthenticationError) as info:
        await credential.get_token(SCOPE)
    assert not isinstance(info.value, CredentialUnavailableError)
    assert info.value.status == 503 and imds.count() == 6
    assert sleep.delays == [0.8, 1.6, 3.2, 6.4, 12.8]


async def test_no_imds_endpoint_is_unavailable_at_once(sleep: FakeSleep) -> None:
    credential = ManagedIdentityCredential()  # IMDS points at a refused port (conftest)
    use_clock(credential, FakeClock(), sleep)
    with pytest.raises(CredentialUnavailableError) as info:
        await credential.get_token(SCOPE)
    assert "no managed identity endpoint answered" in str(info.value)
    assert sleep.delays == []


async def test_imds_gone_after_answering_is_retried_not_unavailable(
    imds: FakeTokenService, sleep: FakeSleep
) -> None:
    credential = ManagedIdentityCredential()
    clock = FakeClock()
    use_clock(credential, clock, sleep)
    await credential.get_token(SCOPE)
    await imds.stop()
    clock.advance(3600)
    with pytest.raises(AuthenticationError) as info:
        await credential.get_token(SCOPE)
    assert not isinstance(info.value, CredentialUnavailableError)
    assert len(sleep.delays) == 5


async def test_arc_refuses_a_challenge_outside_the_agent_folder(
    service: FakeTokenService, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("IDENTITY_ENDPOINT", service.http_url + "/arc/token")
    monkeypatch.setenv("IMDS_ENDPOINT", service.http_url)
    elsewhere = tmp_path / "elsewhere.key"
    elsewhere.write_text("not-for-the-endpoint")
    service.arc_realm = str(elsewhere)
    credential = ManagedIdentityCredential()
    with pytest.raises(AuthenticationError) as info:
        await credential.get_token(SCOPE)
    assert "outside" in str(info.value) and "not-for-the-endpoint" not in str(info.value)
    assert service.count("arc") == 0  # the file was never sent


def test_managed_identity_detection_follows_azure_identity(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert ManagedIdentityCredential().source == "imds"
    monkeypatch.setenv("IDENTITY_ENDPOINT", "http://127.0.0.1:1/token")
    assert ManagedIdentityCredential().source == "imds"  # without a header or IMDS_ENDPOINT
    monkeypatch.setenv("IMDS_ENDPOINT", "http://127.0.0.1:1")
    assert ManagedIdentityCredential().source == "azure-arc"
    with pytest.raises(ValueError, match="system-assigned"):
        ManagedIdentityCredential("a-client-id")
    monkeypatch.setenv("IDENTITY_HEADER", "h")
    assert ManagedIdentityCredential().source == "app-service"  # before Arc
    monkeypatch.setenv("IDENTITY_SERVER_THUMBPRINT", "t")
    assert ManagedIdentityCredential().source == "service-fabric"
    for name in ("IDENTITY_ENDPOINT", "IDENTITY_HEADER", "IMDS_ENDPOINT"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("MSI_ENDPOINT", "http://127.0.0.1:1")
    assert ManagedIdentityCredential().source == "cloud-shell"
    monkeypatch.delenv("MSI_ENDPOINT")
    for name in ("AZURE_CLIENT_ID", "AZURE_TENANT_ID", "AZURE_FEDERATED_TOKEN_FILE"):
        monkeypatch.setenv(name, "x")
    assert ManagedIdentityCredential().source == "workload-identity"
    with pytest.raises(ValueError):
        ManagedIdentityCredential("id", resource_id="/subscriptions/x")


@pytest.mark.parametrize("variable", ["IDENTITY_SERVER_THUMBPRINT", "MSI_ENDPOINT"])
async def test_unsupported_managed_identity_hosts_are_unavailable(
    variable: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if variable == "IDENTITY_SERVER_THUMBPRINT":
        monkeypatch.setenv("IDENTITY_ENDPOINT", "https://127.0.0.1:1/token")
        monkeypatch.setenv("IDENTITY_HEADER", "h")
    monkeypatch.setenv(variable, "x")
    with pytest.raises(CredentialUnavailableError, match="not supported"):
        await ManagedIdentityCredential().get_token(SCOPE)


# --- workload identity and certificates ---------------------------------------------------------


def test_workload_identity_names_the_missing_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AZURE_TENANT_ID", TENANT)
    with pytest.raises(ValueError) as info:
        WorkloadIdentityCredential()
    assert "AZURE_CLIENT_ID, AZURE_FEDERATED_TOKEN_FILE" in str(info.value)


async def test_workload_identity_missing_token_file(tmp_path: Path) -> None:
    credential = WorkloadIdentityCredential(TENANT, "client", tmp_path / "gone")
    with pytest.raises(AuthenticationError, match="cannot read the federated token file"):
        await credential.get_token(SCOPE)


def test_certificate_with_a_wrong_password(client_certificate: Any) -> None:
    with pytest.raises(ValueError) as info:
        ClientCertificateCredential(
            TENANT, "client", client_certificate.pfx, password="wrong-password-123"
        )
    assert "wrong-password-123" not in str(info.value)


def test_certificate_credential_without_cryptography_names_the_extra(
    client_certificate: Any,
) -> None:
    code = (
        "import sys; sys.modules['cryptography'] = None\n"
        "from asyncblobdict.adapters.azure import ClientCertificateCredential\n"
        "try:\n"
        f"    ClientCertificateCredential('t', 'c', {str(client_certificate.pem)!r})\n"
        "except ImportError as e:\n"
        "    print(e)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=REPO
    )
    assert 'pip install ".[identity]"' in out.stdout, out.stdout + out.stderr
    assert "pip install cryptography" in out.stdout


# --- Azure CLI ------------------------------------------------------------------------------


async def test_cli_not_on_path_is_unavailable() -> None:
    with pytest.raises(CredentialUnavailableError, match="not on PATH"):
        await AzureCliCredential().get_token(SCOPE)


async def test_cli_not_logged_in_is_unavailable(
    service: FakeTokenService, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(service.write_az(tmp_path / "bin").parent))
    service.az_logged_in = False
    with pytest.raises(CredentialUnavailableError, match="az login"):
        await AzureCliCredential().get_token(SCOPE)


async def test_cli_that_hangs_is_killed_after_the_timeout(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    pid_file = tmp_path / "az.pid"
    az = tmp_path / "bin" / "az"
    az.parent.mkdir()
    az.write_text(
        f"#!{sys.executable}\nimport os, time\n"
        f"open({str(pid_file)!r}, 'w').write(str(os.getpid()))\n"
        "time.sleep(120)\n"
    )
    az.chmod(0o755)
    monkeypatch.setenv("PATH", str(az.parent))
    with pytest.raises(CredentialUnavailableError, match=r"did not answer within 0\.5 s"):
        await AzureCliCredential(process_timeout=0.5).get_token(SCOPE)
    pid = int(pid_file.read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # killed and reaped


# --- DefaultAzureCredential -----------------------------------------------------------------


async def test_default_credential_lists_why_each_failed_without_secrets(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AZURE_CLIENT_SECRET", "half-configured-secret-value")
    credential = DefaultAzureCredential()
    with pytest.raises(CredentialUnavailableError) as info:
        await credential.get_token(SCOPE)
    text = str(info.value)
    for name in (
        "EnvironmentCredential",
        "WorkloadIdentityCredential",
        "ManagedIdentityCredential",
        "AzureCliCredential",
    ):
        assert name in text
    assert "half-configured-secret-value" not in text + repr(credential)


async def test_default_credential_stops_at_a_real_failure(
    imds: FakeTokenService, monkeypatch: pytest.MonkeyPatch, ssl_context: Any, sleep: FakeSleep
) -> None:
    monkeypatch.setenv("AZURE_TENANT_ID", TENANT)
    monkeypatch.setenv("AZURE_CLIENT_ID", imds.client_id)
    monkeypatch.setenv("AZURE_CLIENT_SECRET", "a-wrong-secret-value")
    monkeypatch.setenv("AZURE_AUTHORITY_HOST", imds.https_url)
    credential = DefaultAzureCredential(ssl_context=ssl_context)
    with pytest.raises(AuthenticationError) as info:
        await credential.get_token(SCOPE)
    assert not isinstance(info.value, CredentialUnavailableError)
    assert info.value.error_code == "invalid_client" and "AADSTS7000215" in str(info.value)
    assert "a-wrong-secret-value" not in str(info.value)
    assert imds.count("imds") == 0  # managed identity was not tried


async def test_default_credential_reuses_the_first_that_worked(
    imds: FakeTokenService, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, sleep: FakeSleep
) -> None:
    monkeypatch.setenv("PATH", str(imds.write_az(tmp_path / "bin").parent))
    credential = DefaultAzureCredential()
    clock = FakeClock()
    use_clock(credential, clock, sleep)
    monkeypatch.setenv("AZURE_POD_IDENTITY_AUTHORITY_HOST", imds.http_url)
    # IMDS says "no such identity" (unavailable), so the chain goes on to az.
    imds.fail(400, "invalid_request", "Identity not found", kinds={"imds"})
    await credential.get_token(SCOPE)
    assert [s.kind for s in imds.seen] == ["imds", "az"]
    imds.heal()  # managed identity would work now, but az is kept
    clock.advance(3400)  # due for refresh (az gives an absolute expiry: keep it valid)
    await credential.get_token(SCOPE)
    assert [s.kind for s in imds.seen] == ["imds", "az", "az"]


async def test_default_credential_concurrent_first_callers_walk_the_chain_once(
    imds: FakeTokenService, sleep: FakeSleep
) -> None:
    import asyncio

    credential = DefaultAzureCredential()
    use_clock(credential, FakeClock(), sleep)
    tokens = await asyncio.gather(*(credential.get_token(SCOPE) for _ in range(50)))
    assert imds.count() == 1 and len({t.token for t in tokens}) == 1


# --- the adapter's cache for foreign credentials -------------------------------------------


class Foreign:
    """An azure-identity-like credential: absolute expiry, may be told to fail."""

    def __init__(self, lifetime: float) -> None:
        self.lifetime = lifetime
        self.calls = 0
        self.broken = False

    async def get_token(self, *scopes: str) -> AccessToken:
        self.calls += 1
        if self.broken:
            raise RuntimeError("token service down")
        return AccessToken(f"token-{self.calls}", int(time.time() + self.lifetime))


async def test_foreign_credential_failed_early_refresh_keeps_the_valid_token() -> None:
    foreign = Foreign(lifetime=200)  # always inside the 5-minute refresh window
    auth = BearerTokenAuth(foreign)
    assert await auth.token() == "token-1"
    foreign.broken = True
    assert await auth.token() == "token-1"  # refresh failed: the valid token stays
    assert foreign.calls == 2
    assert await auth.token() == "token-1"  # not asked again within 30 s
    assert foreign.calls == 2


async def test_foreign_credential_expired_token_is_not_used() -> None:
    foreign = Foreign(lifetime=20)  # less than the 30 s margin: never reused
    auth = BearerTokenAuth(foreign)
    assert await auth.token() == "token-1"
    foreign.broken = True
    with pytest.raises(AuthenticationError, match="token service down"):
        await auth.token()


async def test_foreign_credential_handing_out_an_expired_token_is_an_error() -> None:
    auth = BearerTokenAuth(Foreign(lifetime=-10))  # a token service whose clock is behind
    with pytest.raises(AuthenticationError, match="returned a token that has expired"):
        await auth.token()


def test_extras_identity_has_cryptography_and_azure_has_aiohttp_only() -> None:
    tomllib = pytest.importorskip("tomllib")
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    assert extras["azure"] == ["aiohttp>=3.11,<4"]
    assert any(d.startswith("cryptography") for d in extras["identity"])
    assert any(d.startswith("aiohttp") for d in extras["identity"])
    assert any(d.startswith("cryptography") for d in extras["test"])
