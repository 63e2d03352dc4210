"""Which store a command works on: the --local/--azure options and cp's store addresses.

Addresses are read by the library's one registry of schemes (asyncblobdict.addresses); this
module only maps the command line's options onto it.
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Hashable
from dataclasses import dataclass

from ..adapters.azure_connection import (
    ConnectionStringError,
    account_label,
    parse_connection_string,
)
from ..adapters.azure_connection import connection_string_secrets as secrets_of
from ..adapters.base import Adapter
from ..addresses import AZURE_CONN_ENV, StoreLocation, azure_location, local_location, locate
from ..errors import InvalidKeyError

__all__ = [
    "AUTH_CHOICES",
    "AZURE_CONN_ENV",
    "AZURE_CONTAINER_ENV",
    "DEFAULT_LOCAL_CONTAINER",
    "DEFAULT_LOCAL_ROOT",
    "StoreSpec",
    "UsageError",
    "UserError",
    "account_label",
    "check_connection_string",
    "container_exists",
    "open_adapter",
    "parse_address",
    "resolve_conn_str",
    "secrets_of",
]

DEFAULT_LOCAL_ROOT = "./local_blob_storage"
DEFAULT_LOCAL_CONTAINER = "demo_container"
AZURE_CONTAINER_ENV = "AZURE_CONTAINER"
AUTH_CHOICES = ("default", "cli", "managed-identity")


class UsageError(Exception):
    """The command line itself is wrong (exit code 2, with the usage line)."""


class UserError(Exception):
    """The request cannot be done as asked: missing file, binary to a terminal... (exit 1)."""


@dataclass(frozen=True)
class StoreSpec:
    """One container of one backend: where an address or the store options lead.

    ``options`` are the store options that select it again (empty for a cp address).
    Secrets stay in ``location.secrets``, out of every label and repr.
    """

    location: StoreLocation
    options: str = ""

    @property
    def container(self) -> str:
        return self.location.container

    @property
    def secrets(self) -> tuple[str, ...]:
        return self.location.secrets

    def describe(self) -> str:
        """A human label without secrets: ``local:DIR/CONTAINER`` or ``azure:CONTAINER (...)``."""
        return self.location.label

    def cli_options(self) -> str:
        """The store options that select this store again (secrets left to the environment)."""
        return self.options

    def identity(self) -> Hashable:
        """Equal for two specs that name the same stored data."""
        return self.location.identity


def resolve_conn_str(
    value: str | None, who: str = "--azure", how: str = "pass --azure CONNSTR"
) -> str:
    """``value``, or $AZURE_CONN_STR when it is None or empty (``--azure`` given alone)."""
    if value:
        return check_connection_string(value, f"the value of {who}")
    env = os.environ.get(AZURE_CONN_ENV, "")
    if not env.strip():
        raise UsageError(
            f"{who} needs an Azure connection string: {how} or set {AZURE_CONN_ENV} "
            "(use 'UseDevelopmentStorage=true' for Azurite)"
        )
    return check_connection_string(env, f"${AZURE_CONN_ENV}")


# An angle-bracketed placeholder as documentation writes them: <key>, <account>, <your key>.
_PLACEHOLDER = re.compile(r"<[A-Za-z][^<>;=]{0,60}>")
_WHERE_TO_GET_ONE = (
    "copy one from the storage account's Access keys in the Azure portal, or use "
    "UseDevelopmentStorage=true for Azurite"
)


def check_connection_string(conn: str, where: str) -> str:
    """``conn`` if it reads as an Azure connection string, else a UsageError saying why.

    ``where`` names its origin (``--azure``, ``$AZURE_CONN_STR``); the message never repeats
    any of it. A documentation placeholder (``AccountKey=<key>``) is called one.
    """
    if _PLACEHOLDER.search(conn):
        raise UsageError(
            f"{where} is a placeholder, not a connection string: fill in its <...> parts "
            "from the storage account's Access keys in the Azure portal, or use "
            "UseDevelopmentStorage=true for Azurite"
        )
    try:
        parse_connection_string(conn)
    except ConnectionStringError as exc:
        raise UsageError(
            f"{where} is not an Azure connection string: {exc} ({_WHERE_TO_GET_ONE})"
        ) from None
    return conn


def _signed_in_location(container: str, account_url: str, auth: str | None) -> StoreLocation:
    """Container ``container`` at ``account_url``, signed in with Entra ID as ``auth`` says."""
    if "?" in account_url:
        raise UsageError("--account-url takes the blob endpoint alone, without a SAS")
    try:
        from ..adapters import azure
    except ImportError as exc:
        raise UserError(str(exc).splitlines()[0]) from None
    credential: object
    if auth == "cli":
        credential = azure.AzureCliCredential()
    elif auth == "managed-identity":
        # As DefaultAzureCredential: AZURE_CLIENT_ID picks a user-assigned identity.
        credential = azure.ManagedIdentityCredential(os.environ.get("AZURE_CLIENT_ID") or None)
    else:
        credential = azure.DefaultAzureCredential()
    try:
        return azure_location(container, account_url=account_url, credential=credential)
    except ConnectionStringError as exc:
        raise UsageError(str(exc)) from None


def store_from_options(
    local: str | None,
    azure: str | None,
    container: str | None,
    *,
    account_url: str | None = None,
    auth: str | None = None,
) -> StoreSpec:
    """The store of a single-store command: --azure or --account-url, else --local, else the
    default folder."""
    if auth is not None and account_url is None:
        raise UsageError("--auth goes with --account-url URL")
    if sum(option is not None for option in (local, azure, account_url)) > 1:
        raise UsageError("use one of --local, --azure and --account-url")
    if account_url is not None:
        container = container or os.environ.get(AZURE_CONTAINER_ENV, "")
        if not container:
            raise UsageError(f"--account-url needs --container NAME (or set {AZURE_CONTAINER_ENV})")
        return StoreSpec(
            _signed_in_location(container, account_url, auth),
            f"--account-url {shlex.quote(account_url)} --auth {auth or 'default'} "
            f"--container {shlex.quote(container)} ",
        )
    if azure is not None:
        conn = resolve_conn_str(azure)
        container = container or os.environ.get(AZURE_CONTAINER_ENV, "")
        if not container:
            raise UsageError(f"--azure needs --container NAME (or set {AZURE_CONTAINER_ENV})")
        return StoreSpec(
            azure_location(container, connection_string=conn),
            f"--azure --container {shlex.quote(container)} ",
        )
    root = local or DEFAULT_LOCAL_ROOT
    container = container or DEFAULT_LOCAL_CONTAINER
    options = ""
    if os.path.normpath(root) != os.path.normpath(DEFAULT_LOCAL_ROOT):
        options += f"--local {shlex.quote(root)} "
    if container != DEFAULT_LOCAL_CONTAINER:
        options += f"--container {shlex.quote(container)} "
    return StoreSpec(local_location(root, container), options)


def parse_address(
    text: str,
    conn_str: str | None,
    side_option: str = "--azure",
    *,
    account_url: str | None = None,
    auth: str | None = None,
) -> StoreSpec:
    """A store address, as ``open_store`` reads it: ``local:DIR/CONTAINER``, ``azure:CONTAINER``...

    ``conn_str`` is the account of an ``azure:`` address (None or empty: ``account_url``
    signed in as ``auth``, else the address's own ``?env=VARIABLE``, else $AZURE_CONN_STR).
    """
    options = {}
    is_azure = text.partition(":")[0].lower() == "azure"
    if is_azure and not conn_str and account_url is not None and "?" not in text:
        return StoreSpec(_signed_in_location(text.partition(":")[2], account_url, auth))
    if conn_str and is_azure:  # --azure goes to azure: alone
        options["connection_string"] = conn_str
    try:
        spec = StoreSpec(locate(text, **options))
    except InvalidKeyError as exc:
        raise UsageError(str(exc)) from None
    except ConnectionStringError as exc:
        raise UsageError(f"{exc}; or pass {side_option} CONNSTR") from None
    if is_azure:
        if conn_str:
            check_connection_string(conn_str, f"the value of {side_option}")
        else:
            # locate() accepted the address, so its query is at most env=VARIABLE.
            variable = text.partition("?env=")[2] or AZURE_CONN_ENV
            check_connection_string(os.environ.get(variable, ""), f"${variable}")
    return spec


def open_adapter(spec: StoreSpec) -> Adapter:
    """Make the adapter of ``spec``; Azure (and so aiohttp) is imported only here."""
    try:
        return spec.location.make_adapter()
    except ImportError as exc:
        raise UserError(str(exc).splitlines()[0] if str(exc) else repr(exc)) from None


async def container_exists(adapter: Adapter, container: str) -> bool:
    """Whether ``container`` exists, as cheaply as the backend can tell.

    Local: its folder exists (an emptied container keeps its folder). Azure: the service
    says so (Get Container Properties, one request). Any other backend (memory): it holds
    a key. When Azure cannot answer (a SAS scoped to the container may not read container
    properties), the container is taken to exist: a listing that worked found it empty.
    """
    check = getattr(adapter, "container_exists", None)  # optional in the adapter contract
    if check is not None:
        return bool(await check(container))
    async for _ in adapter.list_names(container):
        return True
    return False
