"""Fixtures for the sign-in tests: TLS, an HTTPS Azurite, the fake token service, a clean
environment, and credentials of every kind wired to them.

Every test runs with the identity environment variables cleared, IMDS pointed at a port
that refuses connections (never 169.254.169.254) and a PATH without any real ``az``.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from asyncblobdict import AsyncBlobStore
from asyncblobdict.adapters.azure import (
    AzureBlobAdapter,
    AzureCliCredential,
    ClientCertificateCredential,
    ClientSecretCredential,
    DefaultAzureCredential,
    ManagedIdentityCredential,
    WorkloadIdentityCredential,
)
from asyncblobdict.adapters.azure.identity import _managed
from tests.azure.azurite import new_container_name
from tests.identity.signin_fakes import (
    TENANT,
    AzuriteUnavailable,
    ClientCertificate,
    FakeClock,
    FakeSleep,
    FakeTokenService,
    HttpsAzurite,
    Tls,
    make_client_certificate,
    make_tls,
    refused_port,
    start_https_azurite,
)

IDENTITY_ENV = (
    "AZURE_TENANT_ID",
    "AZURE_CLIENT_ID",
    "AZURE_CLIENT_SECRET",
    "AZURE_CLIENT_CERTIFICATE_PATH",
    "AZURE_CLIENT_CERTIFICATE_PASSWORD",
    "AZURE_FEDERATED_TOKEN_FILE",
    "AZURE_AUTHORITY_HOST",
    "AZURE_POD_IDENTITY_AUTHORITY_HOST",
    "IDENTITY_ENDPOINT",
    "IDENTITY_HEADER",
    "IDENTITY_SERVER_THUMBPRINT",
    "IMDS_ENDPOINT",
    "MSI_ENDPOINT",
    "MSI_SECRET",
)
ORIGINAL_PATH = os.environ.get("PATH", "")
_azurite_failure: list[str] = []


@pytest.fixture(scope="session")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Tls:
    return make_tls(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="session")
def client_certificate(tmp_path_factory: pytest.TempPathFactory) -> ClientCertificate:
    return make_client_certificate(tmp_path_factory.mktemp("sp"))


@pytest.fixture(scope="session")
def https_azurite(tls: Tls) -> Iterator[HttpsAzurite]:
    """A second Azurite, HTTPS with --oauth basic; fails (not skips) if AZURITE_REQUIRED=1."""
    if not _azurite_failure:
        try:
            server = start_https_azurite(tls, path=ORIGINAL_PATH)
        except AzuriteUnavailable as exc:
            _azurite_failure.append(str(exc))
    if _azurite_failure:
        reason = f"HTTPS Azurite unavailable: {_azurite_failure[0]}"
        if os.environ.get("AZURITE_REQUIRED") == "1":
            pytest.fail(f"AZURITE_REQUIRED=1 but {reason}")
        pytest.skip(reason)
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def clean_identity_env(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[Callable[[], None]]:
    """Clears the identity environment; the value clears it again (within a test)."""
    sock, port = refused_port()
    no_az = tmp_path / "no-az"
    no_az.mkdir()

    def reset() -> None:
        for name in IDENTITY_ENV:
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("AZURE_POD_IDENTITY_AUTHORITY_HOST", f"http://127.0.0.1:{port}")
        monkeypatch.setenv("PATH", str(no_az))

    reset()
    yield reset
    sock.close()


@pytest.fixture
def ssl_context(tls: Tls) -> ssl.SSLContext:
    return tls.client_context()


@pytest.fixture
async def service(
    tls: Tls,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    client_certificate: ClientCertificate,
) -> AsyncIterator[FakeTokenService]:
    svc = FakeTokenService(tls, tmp_path / "token-service")
    svc.certificates[client_certificate.thumbprint] = client_certificate.public_key
    await svc.start()
    # Azure Arc's key files live in the agent's folder; here, in the service's.
    monkeypatch.setattr(_managed, "_arc_key_dir", lambda: svc.arc_key_dir)
    yield svc
    await svc.stop()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def sleep() -> FakeSleep:
    return FakeSleep()


@pytest.fixture
def make_credential(
    service: FakeTokenService,
    ssl_context: ssl.SSLContext,
    client_certificate: ClientCertificate,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> Callable[[str], Any]:
    """Build a credential of one kind, its environment set to reach the fake service."""
    svc = service

    def workload_file() -> Path:
        path = tmp_path / "federated-token"
        assertion = "federated-" + os.urandom(8).hex()
        svc.workload_assertions.add(assertion)
        path.write_text(assertion)
        return path

    def workload_env() -> None:
        monkeypatch.setenv("AZURE_TENANT_ID", TENANT)
        monkeypatch.setenv("AZURE_CLIENT_ID", svc.client_id)
        monkeypatch.setenv("AZURE_FEDERATED_TOKEN_FILE", str(workload_file()))
        monkeypatch.setenv("AZURE_AUTHORITY_HOST", svc.https_url)

    def az_on_path() -> None:
        monkeypatch.setenv("PATH", str(svc.write_az(tmp_path / "az-bin").parent))

    def make(kind: str) -> Any:
        auth = svc.https_url
        if kind == "client-secret":
            return ClientSecretCredential(
                TENANT, svc.client_id, svc.client_secret, authority=auth, ssl_context=ssl_context
            )
        if kind == "client-certificate-pem":
            return ClientCertificateCredential(
                TENANT,
                svc.client_id,
                client_certificate.pem,
                authority=auth,
                ssl_context=ssl_context,
            )
        if kind == "client-certificate-pfx":
            return ClientCertificateCredential(
                TENANT,
                svc.client_id,
                str(client_certificate.pfx),
                password=client_certificate.password,
                authority=auth,
                ssl_context=ssl_context,
            )
        if kind == "workload-identity":
            return WorkloadIdentityCredential(
                TENANT, svc.client_id, workload_file(), authority=auth, ssl_context=ssl_context
            )
        if kind == "workload-identity-env":
            workload_env()
            return WorkloadIdentityCredential(ssl_context=ssl_context)
        if kind.startswith("managed-identity-imds"):
            monkeypatch.setenv("AZURE_POD_IDENTITY_AUTHORITY_HOST", svc.http_url)
            if kind.endswith("client-id"):
                return ManagedIdentityCredential(svc.user_assigned)
            if kind.endswith("resource-id"):
                return ManagedIdentityCredential(resource_id="/subscriptions/s/rg/id1")
            return ManagedIdentityCredential()
        if kind == "managed-identity-app-service":
            monkeypatch.setenv("IDENTITY_ENDPOINT", svc.http_url + "/msi/token")
            monkeypatch.setenv("IDENTITY_HEADER", svc.identity_header)
            return ManagedIdentityCredential()
        if kind == "managed-identity-arc":
            monkeypatch.setenv("IDENTITY_ENDPOINT", svc.http_url + "/arc/token")
            monkeypatch.setenv("IMDS_ENDPOINT", svc.http_url)
            return ManagedIdentityCredential()
        if kind == "managed-identity-workload":
            workload_env()
            return ManagedIdentityCredential(ssl_context=ssl_context)
        if kind == "azure-cli":
            az_on_path()
            return AzureCliCredential()
        if kind.startswith("default-environment"):
            monkeypatch.setenv("AZURE_TENANT_ID", TENANT)
            monkeypatch.setenv("AZURE_CLIENT_ID", svc.client_id)
            monkeypatch.setenv("AZURE_AUTHORITY_HOST", auth)
            if kind.endswith("secret"):
                monkeypatch.setenv("AZURE_CLIENT_SECRET", svc.client_secret)
            else:
                monkeypatch.setenv("AZURE_CLIENT_CERTIFICATE_PATH", str(client_certificate.pfx))
                monkeypatch.setenv("AZURE_CLIENT_CERTIFICATE_PASSWORD", client_certificate.password)
            return DefaultAzureCredential(ssl_context=ssl_context)
        if kind == "default-workload-identity":
            workload_env()
            return DefaultAzureCredential(ssl_context=ssl_context)
        if kind == "default-managed-identity":
            monkeypatch.setenv("AZURE_POD_IDENTITY_AUTHORITY_HOST", svc.http_url)
            return DefaultAzureCredential(ssl_context=ssl_context)
        if kind == "default-azure-cli":
            az_on_path()
            return DefaultAzureCredential(ssl_context=ssl_context)
        raise AssertionError(kind)

    return make


@pytest.fixture
async def make_store(
    https_azurite: HttpsAzurite, ssl_context: ssl.SSLContext
) -> AsyncIterator[Callable[..., AsyncBlobStore]]:
    """Stores on the HTTPS Azurite signed by a given credential; closed after the test."""
    made: list[AsyncBlobStore] = []

    def make(credential: Any, **options: Any) -> AsyncBlobStore:
        adapter = AzureBlobAdapter(
            https_azurite.endpoint, credential, ssl_context=ssl_context, **options
        )
        store = AsyncBlobStore(adapter, new_container_name())
        made.append(store)
        return store

    yield make
    for store in made:
        await store.close()
