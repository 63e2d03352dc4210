"""Scenario 7: credentials never appear in logs, reprs or exception texts.

Runs Azure traffic at DEBUG logging, through the fault proxy (so retries, timeouts and
failures are logged), with each kind of credential: account key (also a wrong one), SAS
token (also a tampered one) and a bearer token from a get_token() credential. Every log
record of the "asyncblobdict" and "aiohttp" loggers, every repr and every exception text
(with its chain) is searched for the secret. The other Azure scenarios use the same watch.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from typing import Any, NamedTuple

import pytest

from asyncblobdict import AsyncBlobDictError, AsyncBlobStore
from tests.azure.azurite import DEV_ACCOUNT, DEV_KEY
from tests.reliability.fault_proxy import FaultProxy, FaultRates
from tests.reliability.support import (
    AzuriteInfo,
    SecretWatch,
    azure_fast_options,
    record,
)

pytestmark = pytest.mark.azure

RATES = FaultRates(error_503=0.1, error_500=0.05, reset_before=0.05, reset_after=0.05,
                   truncate=0.05, delay=0.02)  # fmt: skip
counts: dict[str, int] = {}


@pytest.fixture(scope="module", autouse=True)
def _record_counts() -> Iterator[None]:
    """Once the module's tests have run, their counts go to the results file (a helper,
    not a test: the tests that gather the counts assert on them)."""
    yield
    if any(counts.values()):
        record("secrets_azure", dict(counts))


def account_sas(key: str, *, permissions: str = "rwdlacup") -> tuple[str, str]:
    """An account SAS token for the blob service, and its signature."""
    version = "2021-08-06"
    expiry = (datetime.now(timezone.utc) + timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    to_sign = "\n".join(
        [DEV_ACCOUNT, permissions, "b", "sco", "", expiry, "", "http,https", version, "", ""]
    )
    sig = base64.b64encode(
        hmac.new(base64.b64decode(key), to_sign.encode(), hashlib.sha256).digest()
    ).decode()
    from urllib.parse import quote

    token = (
        f"sv={version}&ss=b&srt=sco&sp={permissions}&se={quote(expiry, safe='')}"
        f"&spr=http,https&sig={quote(sig, safe='')}"
    )
    return token, sig


class AccessToken(NamedTuple):
    token: str
    expires_on: int


class FakeTokenCredential:
    def __init__(self, token: str) -> None:
        self._token = token
        self.calls = 0

    async def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        self.calls += 1
        return AccessToken(self._token, int(time.time()) + 3600)

    async def close(self) -> None:
        pass


async def traffic(watch: SecretWatch, make: Callable[[], Any], name: str, n: int = 40) -> None:
    """A few writes, reads and a listing; every outcome's text goes to the watch."""
    try:
        adapter = make()
    except Exception as exc:  # refusing the credential up front is fine, if the text is clean
        watch.see(exc)
        counts[f"{name}_refused_at_construction"] = 1
        return
    watch.see(adapter)
    container = f"sec{int(time.time() * 1000)}"
    errors = 0
    async with AsyncBlobStore(adapter, container, concurrency_mode="etag") as store:
        watch.see(store)
        for i in range(n):
            for call in (
                store.set_json(f"k/{i % 7}", {"i": i}),
                store.get_json(f"k/{i % 7}"),
                store.exists("missing"),
            ):
                try:
                    await call
                except AsyncBlobDictError as exc:
                    watch.see(exc)
                    errors += 1
        try:
            watch.see(await store.list_keys())
        except AsyncBlobDictError as exc:
            watch.see(exc)
            errors += 1
    counts[f"{name}_calls"] = n * 3 + 1
    counts[f"{name}_errors_checked"] = errors


@pytest.fixture
async def proxy(rel_azurite: AzuriteInfo) -> Any:
    p = FaultProxy(RATES, seed=7)
    p.rates.delay_seconds = 0.8
    await p.start(rel_azurite.endpoint)
    yield p
    await p.stop()


def via(proxy: FaultProxy) -> str:
    return f"http://127.0.0.1:{proxy.port}/{DEV_ACCOUNT}"


async def test_account_key_never_leaks(
    rel_azurite: AzuriteInfo, secret_watch: SecretWatch, proxy: FaultProxy
) -> None:
    from asyncblobdict import AzureBlobAdapter

    wrong = base64.b64encode(b"not the key, but a secret all the same!!").decode()
    secret_watch.add_secret("wrong account key", wrong)
    opts = azure_fast_options(0.5)
    await traffic(secret_watch, lambda: rel_azurite.new_adapter(via(proxy), **opts), "key")
    await traffic(
        secret_watch,
        lambda: AzureBlobAdapter.from_connection_string(
            rel_azurite.connection_string(via(proxy)).replace(DEV_KEY, wrong), **opts
        ),
        "wrong_key",
        n=3,
    )
    assert counts["wrong_key_errors_checked"] > 0


async def test_sas_signature_never_leaks(
    rel_azurite: AzuriteInfo, secret_watch: SecretWatch, proxy: FaultProxy
) -> None:
    from asyncblobdict import AzureBlobAdapter

    token, sig = account_sas(DEV_KEY)
    secret_watch.add_secret("SAS signature", sig)
    tampered_sig = base64.b64encode(b"x" * 32).decode()
    secret_watch.add_secret("tampered SAS signature", tampered_sig)
    tampered = token.rsplit("&sig=", 1)[0] + "&sig=" + tampered_sig.replace("=", "%3D")
    opts = azure_fast_options(0.5)
    await traffic(
        secret_watch, lambda: AzureBlobAdapter(via(proxy), credential=token, **opts), "sas"
    )
    await traffic(
        secret_watch,
        lambda: AzureBlobAdapter.from_connection_string(
            f"BlobEndpoint={via(proxy)};SharedAccessSignature={token}", **opts
        ),
        "sas_connection_string",
    )
    await traffic(
        secret_watch,
        lambda: AzureBlobAdapter(via(proxy), credential=tampered, **opts),
        "sas_tampered",
        n=3,
    )


async def test_bearer_token_never_leaks(
    rel_azurite: AzuriteInfo, secret_watch: SecretWatch, proxy: FaultProxy
) -> None:
    from asyncblobdict import AzureBlobAdapter

    token = "eyJ0eXAiOiJKV1QifQ.c2VjcmV0LXRva2VuLWJvZHk.c2lnbmF0dXJlLXBhcnQ"
    secret_watch.add_secret("bearer token", token)
    credential = FakeTokenCredential(token)
    secret_watch.see(credential)
    await traffic(
        secret_watch,
        lambda: AzureBlobAdapter(via(proxy), credential=credential, **azure_fast_options(0.5)),
        "bearer",
        n=5,
    )
