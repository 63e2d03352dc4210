"""Which store a command works on: the --local/--azure options and cp's store addresses."""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass, field
from typing import Literal

from ..adapters.azure_connection import account_label
from ..adapters.azure_connection import connection_string_secrets as secrets_of
from ..adapters.base import Adapter
from ..adapters.local import LocalFileAdapter

__all__ = [
    "AZURE_CONN_ENV",
    "AZURE_CONTAINER_ENV",
    "DEFAULT_LOCAL_CONTAINER",
    "DEFAULT_LOCAL_ROOT",
    "StoreSpec",
    "UsageError",
    "UserError",
    "account_label",
    "open_adapter",
    "parse_address",
    "resolve_conn_str",
    "secrets_of",
]

DEFAULT_LOCAL_ROOT = "./local_blob_storage"
DEFAULT_LOCAL_CONTAINER = "demo_container"
AZURE_CONN_ENV = "AZURE_CONN_STR"
AZURE_CONTAINER_ENV = "AZURE_CONTAINER"


class UsageError(Exception):
    """The command line itself is wrong (exit code 2, with the usage line)."""


class UserError(Exception):
    """The request cannot be done as asked: missing file, binary to a terminal... (exit 1)."""


@dataclass(frozen=True)
class StoreSpec:
    """One container of one backend. ``conn_str`` is a secret: never shown, not in the repr."""

    kind: Literal["local", "azure"]
    container: str
    root: str = ""
    conn_str: str = field(default="", repr=False)

    def describe(self) -> str:
        """A human label without secrets: ``local:DIR/CONTAINER`` or ``azure:CONTAINER (...)``."""
        if self.kind == "local":
            return f"local:{os.path.join(self.root, self.container)}"
        return f"azure:{self.container} ({account_label(self.conn_str)})"

    def cli_options(self) -> str:
        """The store options that select this store again (secrets left to the environment)."""
        if self.kind == "azure":
            return f"--azure --container {shlex.quote(self.container)} "
        options = ""
        if os.path.normpath(self.root) != os.path.normpath(DEFAULT_LOCAL_ROOT):
            options += f"--local {shlex.quote(self.root)} "
        if self.container != DEFAULT_LOCAL_CONTAINER:
            options += f"--container {shlex.quote(self.container)} "
        return options

    def identity(self) -> tuple[str, str, str]:
        """Equal for two specs that name the same stored data."""
        if self.kind == "local":
            return ("local", os.path.realpath(self.root), self.container)
        return ("azure", self.conn_str, self.container)


def resolve_conn_str(
    value: str | None, who: str = "--azure", how: str = "pass --azure CONNSTR"
) -> str:
    """``value``, or $AZURE_CONN_STR when it is None or empty (``--azure`` given alone)."""
    if value:
        return value
    env = os.environ.get(AZURE_CONN_ENV, "")
    if not env:
        raise UsageError(
            f"{who} needs an Azure connection string: {how} or set {AZURE_CONN_ENV} "
            "(use 'UseDevelopmentStorage=true' for Azurite)"
        )
    return env


def store_from_options(local: str | None, azure: str | None, container: str | None) -> StoreSpec:
    """The store of a single-store command: --azure, else --local, else the default folder."""
    if local is not None and azure is not None:
        raise UsageError("use either --local or --azure, not both")
    if azure is not None:
        conn = resolve_conn_str(azure)
        container = container or os.environ.get(AZURE_CONTAINER_ENV, "")
        if not container:
            raise UsageError(f"--azure needs --container NAME (or set {AZURE_CONTAINER_ENV})")
        return StoreSpec("azure", container, conn_str=conn)
    return StoreSpec(
        "local", container or DEFAULT_LOCAL_CONTAINER, root=local or DEFAULT_LOCAL_ROOT
    )


def parse_address(text: str, conn_str: str | None, side_option: str = "--azure") -> StoreSpec:
    """``local:DIR/CONTAINER`` (the last path segment is the container) or ``azure:CONTAINER``.

    ``conn_str`` is the Azure account for ``azure:`` (None or empty: $AZURE_CONN_STR).
    """
    scheme, sep, rest = text.partition(":")
    if not sep or scheme not in ("local", "azure") or not rest:
        raise UsageError(f"bad store address {text!r}: use local:DIR/CONTAINER or azure:CONTAINER")
    if scheme == "local":
        path = rest.rstrip("/" + os.sep) or rest
        root, container = os.path.split(path)
        if not container or container in (".", ".."):
            raise UsageError(
                f"bad store address {text!r}: the last part of the path is the container, "
                "as in local:./local_blob_storage/demo_container"
            )
        return StoreSpec("local", container, root=root or ".")
    if "/" in rest:
        raise UsageError(f"bad store address {text!r}: use azure:CONTAINER (no '/')")
    return StoreSpec(
        "azure", rest, conn_str=resolve_conn_str(conn_str, text, f"pass {side_option} CONNSTR")
    )


def open_adapter(spec: StoreSpec) -> Adapter:
    """Make the adapter of ``spec``; Azure (and so aiohttp) is imported only here."""
    if spec.kind == "local":
        return LocalFileAdapter(spec.root)
    try:
        from .. import AzureBlobAdapter
    except ImportError as exc:
        raise UserError(str(exc).splitlines()[0] if str(exc) else repr(exc)) from None
    adapter: Adapter = AzureBlobAdapter.from_connection_string(spec.conn_str)
    return adapter
