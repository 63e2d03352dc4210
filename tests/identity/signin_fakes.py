"""Servers for the sign-in tests: a certificate made now, an Azurite that takes bearer tokens
over HTTPS, and a fake token service.

The fake token service is a real aiohttp server on 127.0.0.1. Over plain HTTP it plays IMDS,
App Service and Azure Arc (as those are on a VM or container); over HTTPS (the same
certificate as Azurite) it plays the Entra ID token endpoint, with the client secret,
certificate assertion and workload identity flows; and it answers the fake ``az`` script.
It mints JWTs that Azurite's ``--oauth basic`` accepts (issuer sts.windows.net, audience
storage.azure.com, nbf/iat/exp; Azurite checks no signature, so they are HS256 with a test
key), and records every token request.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import hmac
import ipaddress
import json
import os
import re
import shutil
import signal
import socket
import ssl
import stat
import subprocess
import sys
import tempfile
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from tests.azure.azurite import DEV_ACCOUNT, REPO_ROOT

TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
STORAGE = "https://storage.azure.com"
SCOPE = "https://storage.azure.com/.default"
_JWT_KEY = b"fake token service"
_HTTPS_LISTENING = re.compile(r"listens on (https://[\w.\-]+:\d+)")


# --- TLS ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tls:
    cert: Path
    key: Path

    def client_context(self) -> ssl.SSLContext:
        """Verifies servers against this certificate only (verification stays on)."""
        return ssl.create_default_context(cafile=str(self.cert))

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(self.cert), str(self.key))
        return context


def make_tls(folder: Path) -> Tls:
    """A self-signed certificate for 127.0.0.1 and localhost, valid for a day."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "asyncblobdict test")])
    now = dt.datetime.now(dt.timezone.utc)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(ski, critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    folder.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return Tls(cert_path, key_path)


@dataclass
class ClientCertificate:
    """A service principal's certificate: PEM (key + cert) and PKCS#12 files."""

    pem: Path
    pfx: Path
    password: str
    thumbprint: str  # base64url SHA-1, as x5t
    public_key: Any


def make_client_certificate(folder: Path) -> ClientCertificate:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.hazmat.primitives.serialization import pkcs12
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "asyncblobdict sp")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    password = "pfx-" + uuid.uuid4().hex
    pem = folder / "sp.pem"
    pem.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        + cert.public_bytes(serialization.Encoding.PEM)
    )
    pfx = folder / "sp.pfx"
    pfx.write_bytes(
        pkcs12.serialize_key_and_certificates(
            b"sp", key, cert, None, serialization.BestAvailableEncryption(password.encode())
        )
    )
    thumbprint = _b64url(cert.fingerprint(hashes.SHA1()))
    return ClientCertificate(pem, pfx, password, thumbprint, cert.public_key())


# --- HTTPS Azurite ------------------------------------------------------------------------


class AzuriteUnavailable(RuntimeError):
    pass


@dataclass
class HttpsAzurite:
    endpoint: str  # https://127.0.0.1:PORT/devstoreaccount1
    process: subprocess.Popen[bytes]
    log_path: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self.log_path.unlink(missing_ok=True)


def start_https_azurite(tls: Tls, path: str, timeout: float = 30.0) -> HttpsAzurite:
    """Azurite with ``--oauth basic`` over HTTPS on a free port; returns once it listens.

    ``path`` is the PATH that finds node (tests run with a PATH of their own).
    """
    binary = REPO_ROOT / "node_modules" / ".bin" / "azurite-blob"
    if not binary.exists() or shutil.which("node", path=path) is None:
        raise AzuriteUnavailable("node or node_modules/.bin/azurite-blob not found (npm ci)")
    fd, name = tempfile.mkstemp(prefix="azurite-https-", suffix=".log")
    log_path = Path(name)
    with os.fdopen(fd, "wb") as log:
        # Output to a file: an unread pipe would block the server.
        process = subprocess.Popen(
            [
                str(binary),
                "--blobHost",
                "127.0.0.1",
                "--blobPort",
                "0",
                "--inMemoryPersistence",
                "--disableTelemetry",
                "--silent",
                "--skipApiVersionCheck",
                "--oauth",
                "basic",
                "--cert",
                str(tls.cert),
                "--key",
                str(tls.key),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "PATH": path},
        )
    server = HttpsAzurite("", process, log_path)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = log_path.read_text(errors="replace")
        match = _HTTPS_LISTENING.search(text)
        if match:
            server.endpoint = f"{match.group(1)}/{DEV_ACCOUNT}"
            return server
        if process.poll() is not None:
            server.stop()
            raise AzuriteUnavailable(f"azurite-blob exited with {process.returncode}: {text}")
        time.sleep(0.05)  # polling a log file for the server's start, not synchronising tests
    text = log_path.read_text(errors="replace")
    server.stop()
    raise AzuriteUnavailable(f"azurite-blob (HTTPS) did not start within {timeout} s: {text}")


# --- JWTs ---------------------------------------------------------------------------------


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def mint_jwt(claims: dict[str, Any]) -> str:
    header = _b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = _b64url(json.dumps(claims).encode())
    sig = hmac.new(_JWT_KEY, f"{header}.{body}".encode(), hashlib.sha256).digest()
    return f"{header}.{body}.{_b64url(sig)}"


def storage_claims(lifetime: float = 3600.0, **extra: Any) -> dict[str, Any]:
    """Claims Azurite accepts: issuer, audience and a lifetime around now."""
    now = int(time.time())
    return {
        "aud": STORAGE,
        "iss": f"https://sts.windows.net/{TENANT}/",
        "iat": now - 60,
        "nbf": now - 60,
        "exp": now + int(lifetime),
        "tid": TENANT,
        "oid": str(uuid.uuid4()),
        "jti": uuid.uuid4().hex,
        **extra,
    }


# --- a clock tests can move -----------------------------------------------------------------


class FakeClock:
    """Wall-clock seconds that move only when told (for credentials' ``_clock``)."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class FakeSleep:
    """Records the delays asked for and returns at once (for credentials' ``_sleep``)."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


def use_clock(credential: Any, clock: FakeClock, sleep: FakeSleep | None = None) -> None:
    """Give a credential (and every credential of a chain) the test's clock and sleep."""
    for member in (credential, *getattr(credential, "credentials", ())):
        member._clock = clock
        if sleep is not None:
            member._sleep = sleep
        inner = getattr(member, "_inner", None) or getattr(member, "_workload", None)
        if inner is not None:
            inner._sleep = sleep or inner._sleep


# kind -> the kind of token request the fake service should see
KINDS = {
    "client-secret": "entra",
    "client-certificate-pem": "entra",
    "client-certificate-pfx": "entra",
    "workload-identity": "entra",
    "workload-identity-env": "entra",
    "managed-identity-imds": "imds",
    "managed-identity-imds-client-id": "imds",
    "managed-identity-imds-resource-id": "imds",
    "managed-identity-app-service": "app-service",
    "managed-identity-arc": "arc",
    "managed-identity-workload": "entra",
    "azure-cli": "az",
    "default-environment-secret": "entra",
    "default-environment-certificate": "entra",
    "default-workload-identity": "entra",
    "default-managed-identity": "imds",
    "default-azure-cli": "az",
}


# --- the fake token service -----------------------------------------------------------------


@dataclass
class TokenPlan:
    """How the next minted token differs: its claims and the lifetime reported to the client."""

    claims: dict[str, Any] = field(default_factory=dict)
    expires_in: int | None = None


@dataclass
class Seen:
    kind: str  # imds, app-service, arc, entra, az
    details: dict[str, Any]
    status: int = 0


class FakeTokenService:
    """IMDS, App Service, Arc, Entra ID and az, on 127.0.0.1 (see the module docstring)."""

    def __init__(self, tls: Tls, folder: Path) -> None:
        self.tls = tls
        self.folder = folder
        self.client_id = str(uuid.uuid4())
        self.client_secret = "secret-" + uuid.uuid4().hex
        self.identity_header = "header-" + uuid.uuid4().hex
        self.user_assigned = str(uuid.uuid4())  # a user-assigned identity IMDS knows
        self.certificates: dict[str, Any] = {}  # x5t -> public key
        self.workload_assertions: set[str] = set()
        self.arc_key_dir = folder / "arc-tokens"
        self.arc_key_dir.mkdir(parents=True, exist_ok=True)
        self.arc_keys: list[str] = []
        self.arc_realm: str | None = None  # replaces the key path in the challenge
        self.az_logged_in = True
        self.seen: list[Seen] = []
        self.issued: list[str] = []
        self.plans: deque[TokenPlan] = deque()
        self.expires_in = 3600
        self.refresh_in: int | None = None
        # (status, error code, description); answered while set, `failures_left` times
        # (None: until cleared).
        self.failure: tuple[int, str, str] | None = None
        self.failures_left: int | None = None
        self.failing_kinds: set[str] | None = None
        self.retry_after: str | None = None
        self.gate: asyncio.Event | None = None
        self.received = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.http_url = ""
        self.https_url = ""

    # --- lifecycle

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/metadata/identity/oauth2/token", self._imds)
        app.router.add_get("/msi/token", self._app_service)
        app.router.add_get("/arc/token", self._arc)
        app.router.add_post("/{tenant}/oauth2/v2.0/token", self._entra)
        app.router.add_post("/az", self._az)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        plain, secure = _listening_socket(), _listening_socket()
        await web.SockSite(self._runner, plain).start()
        await web.SockSite(self._runner, secure, ssl_context=self.tls.server_context()).start()
        self.http_url = f"http://127.0.0.1:{plain.getsockname()[1]}"
        self.https_url = f"https://127.0.0.1:{secure.getsockname()[1]}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    # --- what the tests look at

    def count(self, kind: str | None = None) -> int:
        """Token requests received (of one kind), failed ones included."""
        return sum(1 for s in self.seen if kind is None or s.kind == kind)

    def fail(
        self,
        status: int,
        code: str,
        description: str,
        times: int | None = None,
        kinds: set[str] | None = None,
    ) -> None:
        """Answer token requests (of ``kinds``, default all) with this error."""
        self.failure, self.failures_left = (status, code, description), times
        self.failing_kinds = kinds

    def heal(self) -> None:
        self.failure, self.failures_left, self.failing_kinds = None, None, None

    def secrets(self) -> list[str]:
        """Everything that must never appear in a log line, repr or exception."""
        return [
            self.client_secret,
            self.identity_header,
            *self.arc_keys,
            *self.workload_assertions,
            *self.issued,
        ]

    def write_az(self, folder: Path) -> Path:
        """An ``az`` on PATH that asks this service what to print."""
        folder.mkdir(parents=True, exist_ok=True)
        script = folder / "az"
        script.write_text(
            f"#!{sys.executable}\n"
            "import json, sys, urllib.request\n"
            "opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))\n"
            f"request = urllib.request.Request({self.http_url + '/az'!r}, "
            "data=json.dumps({'argv': sys.argv[1:]}).encode(), method='POST')\n"
            "with opener.open(request, timeout=60) as answer:\n"
            "    out = json.load(answer)\n"
            "sys.stdout.write(out['stdout'])\n"
            "sys.stderr.write(out['stderr'])\n"
            "sys.exit(out['code'])\n"
        )
        script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        return script

    # --- issuing

    async def _issue(self, seen: Seen) -> tuple[int, dict[str, Any]]:
        """(status, JSON) for a token request that passed its endpoint's checks."""
        self.seen.append(seen)
        self.received.set()
        if self.gate is not None:
            await self.gate.wait()
        if self.failure is not None and (
            self.failing_kinds is None or seen.kind in self.failing_kinds
        ):
            status, code, description = self.failure
            if self.failures_left is not None:
                self.failures_left -= 1
                if self.failures_left <= 0:
                    self.heal()
            seen.status = status
            return status, {"error": code, "error_description": description}
        plan = self.plans.popleft() if self.plans else TokenPlan()
        token = mint_jwt(storage_claims(**plan.claims))
        self.issued.append(token)
        expires_in = plan.expires_in if plan.expires_in is not None else self.expires_in
        body: dict[str, Any] = {
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": expires_in,
            "resource": STORAGE,
        }
        if self.refresh_in is not None:
            body["refresh_in"] = self.refresh_in
        seen.status = 200
        return 200, body

    def _json(self, status: int, body: dict[str, Any]) -> web.Response:
        headers = {"Retry-After": self.retry_after} if self.retry_after and status != 200 else None
        return web.json_response(body, status=status, headers=headers)

    async def _imds(self, request: web.Request) -> web.Response:
        q = request.query
        if request.headers.get("Metadata") != "true":
            return self._json(400, {"error": "invalid_request", "error_description": "no header"})
        assert q.get("api-version") == "2018-02-01" and q.get("resource") == STORAGE, dict(q)
        details = {k: q[k] for k in ("client_id", "msi_res_id") if k in q}
        wanted = q.get("client_id")
        if wanted is not None and wanted != self.user_assigned:
            self.seen.append(Seen("imds", details, 400))
            return self._json(
                400, {"error": "invalid_request", "error_description": "Identity not found"}
            )
        status, body = await self._issue(Seen("imds", details))
        if status == 200:
            # IMDS sends numbers as strings.
            body = {k: str(v) if isinstance(v, int) else v for k, v in body.items()}
        return self._json(status, body)

    async def _app_service(self, request: web.Request) -> web.Response:
        q = request.query
        assert q.get("api-version") == "2019-08-01" and q.get("resource") == STORAGE, dict(q)
        details = {k: q[k] for k in ("client_id", "mi_res_id") if k in q}
        if request.headers.get("X-IDENTITY-HEADER") != self.identity_header:
            self.seen.append(Seen("app-service", details, 401))
            return self._json(
                401,
                {"statusCode": 401, "message": "Unauthorized: the identity header is wrong"},
            )
        status, body = await self._issue(Seen("app-service", details))
        if status == 200:
            # App Service 2019-08-01 gives expires_on (seconds since the epoch, a string).
            body["expires_on"] = str(int(time.time()) + int(body.pop("expires_in")))
        else:
            code, message = body["error"], body["error_description"]
            body = {"statusCode": status, "error": {"code": code, "message": message}}
        return self._json(status, body)

    async def _arc(self, request: web.Request) -> web.Response:
        q = request.query
        assert q.get("api-version") == "2019-11-01" and q.get("resource") == STORAGE, dict(q)
        if request.headers.get("Metadata") != "true":
            return self._json(400, {"error": "invalid_request", "error_description": "header"})
        auth = request.headers.get("Authorization")
        if auth is None:
            secret = "arc-" + uuid.uuid4().hex
            path = self.arc_key_dir / f"{uuid.uuid4()}.key"
            path.write_text(secret)
            self.arc_keys.append(secret)
            realm = self.arc_realm or str(path)
            return web.Response(status=401, headers={"WWW-Authenticate": f"Basic realm={realm}"})
        if auth not in {f"Basic {k}" for k in self.arc_keys}:
            self.seen.append(Seen("arc", {}, 401))
            return self._json(401, {"error": "invalid_key", "error_description": "bad key"})
        status, body = await self._issue(Seen("arc", {}))
        return self._json(status, body)

    async def _entra(self, request: web.Request) -> web.Response:
        if not request.secure:
            return self._json(400, {"error": "invalid_request", "error_description": "https"})
        form = await request.post()
        tenant = request.match_info["tenant"]
        details: dict[str, Any] = {"tenant": tenant}

        def refuse(code: str, description: str, status: int = 401) -> web.Response:
            self.seen.append(Seen("entra", details, status))
            return self._json(status, {"error": code, "error_description": description})

        if tenant != TENANT:
            return refuse("invalid_request", "AADSTS90002: Tenant not found.", 400)
        if form.get("grant_type") != "client_credentials" or form.get("scope") != SCOPE:
            return refuse("invalid_request", "AADSTS900144: bad grant or scope", 400)
        if form.get("client_id") != self.client_id:
            return refuse("unauthorized_client", "AADSTS700016: Application not found.", 400)
        if "client_secret" in form:
            details["flow"] = "secret"
            if form["client_secret"] != self.client_secret:
                return refuse(
                    "invalid_client",
                    "AADSTS7000215: Invalid client secret provided. Ensure the secret being "
                    "sent in the request is the client secret value.",
                )
        elif form.get("client_assertion_type") == (
            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
        ):
            assertion = str(form.get("client_assertion", ""))
            if assertion in self.workload_assertions:
                details["flow"] = "workload"
                details["assertion"] = assertion
            else:
                details["flow"] = "certificate"
                problem = self._check_certificate_assertion(assertion, str(request.url))
                if problem:
                    return refuse("invalid_client", problem)
        else:
            return refuse("invalid_request", "AADSTS900144: no client credential", 400)
        status, body = await self._issue(Seen("entra", details))
        return self._json(status, body)

    def _check_certificate_assertion(self, assertion: str, url: str) -> str | None:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding

        try:
            head, body, sig = assertion.split(".")
            header = json.loads(_unb64url(head))
            claims = json.loads(_unb64url(body))
        except ValueError:
            return "AADSTS50027: JWT token is invalid or malformed."
        key = self.certificates.get(header.get("x5t", ""))
        if header.get("alg") != "RS256" or key is None:
            return "AADSTS700027: the certificate with identifier used to sign is not registered"
        try:
            key.verify(
                _unb64url(sig), f"{head}.{body}".encode(), padding.PKCS1v15(), hashes.SHA256()
            )
        except InvalidSignature:
            return "AADSTS700027: Client assertion contains an invalid signature."
        now = time.time()
        if claims.get("aud") != url:
            return f"AADSTS700021: wrong audience {claims.get('aud')!r}, want {url!r}"
        if claims.get("iss") != self.client_id or claims.get("sub") != self.client_id:
            return "AADSTS700021: iss and sub must be the client id"
        if not claims.get("nbf", now + 1) - 300 <= now < claims.get("exp", 0):
            return "AADSTS700024: Client assertion is not within its valid time range."
        return None

    async def _az(self, request: web.Request) -> web.Response:
        argv = (await request.json())["argv"]
        details = {"argv": argv}
        if not self.az_logged_in:
            self.seen.append(Seen("az", details, 1))
            return web.json_response(
                {
                    "code": 1,
                    "stdout": "",
                    "stderr": "ERROR: Please run 'az login' to setup account.\n",
                }
            )
        assert argv[:2] == ["account", "get-access-token"], argv
        assert argv[argv.index("--resource") + 1] == STORAGE, argv
        status, body = await self._issue(Seen("az", details))
        if status != 200:
            return web.json_response(
                {
                    "code": 1,
                    "stdout": "",
                    "stderr": f"ERROR: {body['error_description']}\n",
                }
            )
        expires_on = int(time.time()) + int(body["expires_in"])
        out = {
            "accessToken": body["access_token"],
            "expiresOn": dt.datetime.fromtimestamp(expires_on).strftime("%Y-%m-%d %H:%M:%S.%f"),
            "expires_on": expires_on,
            "subscription": str(uuid.uuid4()),
            "tenant": TENANT,
            "tokenType": "Bearer",
        }
        return web.json_response({"code": 0, "stdout": json.dumps(out), "stderr": ""})


def _listening_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


def refused_port() -> tuple[socket.socket, int]:
    """A port where connections are refused for as long as the socket is kept."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))  # bound, never listening: connect() is refused
    return sock, sock.getsockname()[1]
