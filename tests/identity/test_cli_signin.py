"""The command line signs in with --account-url and --auth, against the HTTPS Azurite.

The CLI runs in a child process that trusts the test certificate through SSL_CERT_FILE (the
standard OpenSSL variable: the system's default context then verifies against it alone).
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

from asyncblobdict.cli import main
from tests.azure.azurite import new_container_name
from tests.identity.signin_fakes import TENANT, FakeTokenService, HttpsAzurite, Tls

REPO = Path(__file__).resolve().parents[2]
URL = "https://a.blob.core.windows.net"


async def cli(env: dict[str, str], *args: str, stdin: bytes = b"") -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "asyncblobdict",
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
        cwd=REPO,
    )
    out, err = await process.communicate(stdin)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


@pytest.mark.parametrize("auth", ["default", "cli", "managed-identity"])
@pytest.mark.azure
async def test_cli_signs_in_with_account_url_and_auth(
    auth: str,
    https_azurite: HttpsAzurite,
    service: FakeTokenService,
    tls: Tls,
    tmp_path: Path,
) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO), "SSL_CERT_FILE": str(tls.cert)}
    if auth == "default":  # a service principal from the environment
        env.update(
            AZURE_TENANT_ID=TENANT,
            AZURE_CLIENT_ID=service.client_id,
            AZURE_CLIENT_SECRET=service.client_secret,
            AZURE_AUTHORITY_HOST=service.https_url,
        )
    elif auth == "cli":
        env["PATH"] = str(service.write_az(tmp_path / "bin").parent)
    else:
        env["AZURE_POD_IDENTITY_AUTHORITY_HOST"] = service.http_url
    where = ["--account-url", https_azurite.endpoint, "--auth", auth, "--container"]
    where.append(new_container_name())
    code, out, err = await cli(env, *where, "put", "--json", "cfg", "-", stdin=b'{"a": 1}')
    assert code == 0, err
    code, out, err = await cli(env, *where, "ls")
    assert (code, out) == (0, "cfg\n"), err
    code, out, err = await cli(env, *where, "get", "cfg")
    assert code == 0 and '"a": 1' in out, err
    code, out, err = await cli(env, *where, "rm", "cfg")
    assert code == 0, err
    expected = {"default": "entra", "cli": "az", "managed-identity": "imds"}[auth]
    assert {s.kind for s in service.seen} == {expected}
    assert len(service.seen) == 4  # one token per process
    for secret in service.secrets():
        assert secret not in out + err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--auth", "cli", "ls"], "--auth goes with --account-url"),
        (["--account-url", URL, "--azure", "X=1", "ls"], "use one of --local, --azure"),
        (["--account-url", URL, "ls"], "needs --container"),
        (
            ["--account-url", f"{URL}/?sv=1&sig=c2VjcmV0c2VjcmV0", "--container", "box", "ls"],
            "without a SAS",
        ),
    ],
)
def test_cli_sign_in_usage_errors(
    args: list[str],
    message: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("AZURE_CONTAINER", raising=False)
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err and "c2VjcmV0c2VjcmV0" not in err
