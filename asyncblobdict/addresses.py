"""Stores by address, and the one registry of address schemes.

``open_store("local:./data/box")`` opens container ``box`` of ``LocalFileAdapter("./data")``.
An address is ``SCHEME:TARGET``; the built-in schemes:

``local:DIR/CONTAINER``
    A :class:`LocalFileAdapter` on ``DIR`` (relative to the working directory; ``~`` is
    expanded); the last path segment is the container.
``memory:[NAME/]CONTAINER``
    A :class:`MemoryAdapter` named ``NAME`` (empty when left out), one per name in the
    process: every address with that name sees the same data, until the process ends.
``azure:CONTAINER[?env=VARIABLE]``
    An ``AzureBlobAdapter`` (aiohttp is imported only when such a store is opened). The
    account comes from a ``connection_string=`` argument, or ``account_url=`` and
    ``credential=``, else from the environment variable ``VARIABLE`` (default
    ``AZURE_CONN_STR``). A connection string never goes in the address itself: addresses
    end up in logs and shell history.

A backend is added with one call (or one line in ``_SCHEMES`` below for a built-in one):
``register_scheme("name", opener)``, where ``opener(target, **options)`` returns a
:class:`StoreLocation` without doing any I/O.

A malformed address or an unknown scheme raises :class:`InvalidKeyError` (a ValueError, the
error of a bad container name, the commonest mistake in an address); a missing or conflicting
Azure account raises :class:`ConnectionStringError` (a ValueError too). Neither message ever
repeats a secret.
"""

from __future__ import annotations

import inspect
import logging
import os
import re
import threading
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

from ._redact import redact
from .adapters.azure_connection import (
    ConnectionStringError,
    account_label,
    connection_string_secrets,
    parse_account_url,
    parse_connection_string,
)
from .adapters.base import Adapter
from .adapters.local import LocalFileAdapter
from .adapters.memory import MemoryAdapter
from .errors import InvalidKeyError
from .store import AsyncBlobStore

__all__ = [
    "AZURE_CONN_ENV",
    "Opener",
    "StoreLocation",
    "azure_location",
    "local_location",
    "locate",
    "memory_location",
    "open_store",
    "register_scheme",
    "schemes",
]

logger = logging.getLogger("asyncblobdict")

AZURE_CONN_ENV = "AZURE_CONN_STR"
"""Where an ``azure:`` address finds its connection string unless told otherwise."""


@dataclass(frozen=True)
class StoreLocation:
    """Where an address leads: one container of an adapter not made yet.

    ``make_adapter()`` builds the adapter (it does no I/O). ``label`` says where, for people
    and logs, and never holds a secret; ``identity`` is equal for two locations that hold the
    same data (the label when left out); ``secrets`` are strings to hide from any message,
    such as the connection string the location was made from. ``shared``: ``make_adapter``
    returns an adapter that outlives the store (a named memory adapter), which the store
    must not close.
    """

    label: str
    container: str
    make_adapter: Callable[[], Adapter] = field(repr=False, compare=False)
    identity: Hashable = None
    secrets: tuple[str, ...] = field(default=(), repr=False, compare=False)
    shared: bool = False

    def __post_init__(self) -> None:
        if self.identity is None:
            object.__setattr__(self, "identity", self.label)


Opener = Callable[..., StoreLocation]
"""``opener(target, **options) -> StoreLocation``: ``target`` is the text after ``SCHEME:``."""


# ------------------------------------------------------------------------------- helpers


def _bad_address(address: str, why: str) -> InvalidKeyError:
    return InvalidKeyError(f"bad store address {redact(address)!r}: {why}")


# --------------------------------------------------------------------------------- local


def local_location(root: str | os.PathLike[str], container: str, **options: Any) -> StoreLocation:
    """Container ``container`` of ``LocalFileAdapter(root, **options)``; ``~`` is expanded."""
    root_text = os.fspath(root)
    real_root = os.path.expanduser(root_text)
    return StoreLocation(
        label=f"local:{os.path.join(root_text, container)}",
        container=container,
        make_adapter=lambda: LocalFileAdapter(real_root, **options),
        identity=("local", os.path.realpath(real_root), container),
    )


def _open_local(target: str, /, **options: Any) -> StoreLocation:
    root, container = os.path.split(target.rstrip("/" + os.sep) or target)
    if not container or container in (".", ".."):
        raise _bad_address(
            f"local:{target}",
            "the last segment of the path is the container, as in local:./data/my_container",
        )
    return local_location(root or ".", container, **options)


# -------------------------------------------------------------------------------- memory

_memory_adapters: dict[str, MemoryAdapter] = {}
_memory_lock = threading.Lock()


def _memory_adapter(name: str) -> MemoryAdapter:
    with _memory_lock:
        adapter = _memory_adapters.get(name)
        if adapter is None:
            adapter = _memory_adapters[name] = MemoryAdapter()
        return adapter


def memory_location(name: str, container: str) -> StoreLocation:
    """Container ``container`` of the process's MemoryAdapter called ``name``."""
    label = f"memory:{name}/{container}" if name else f"memory:{container}"
    return StoreLocation(
        label=label,
        container=container,
        make_adapter=lambda: _memory_adapter(name),
        identity=("memory", name, container),
        shared=True,
    )


def _open_memory(target: str, /) -> StoreLocation:
    name, _, container = (target.rstrip("/") or target).rpartition("/")
    if not container or container in (".", ".."):
        raise _bad_address(
            f"memory:{target}", "use memory:CONTAINER or memory:NAME/CONTAINER, as in memory:cache"
        )
    return memory_location(name, container)


# --------------------------------------------------------------------------------- azure

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_LOOSE_CONTAINER = re.compile(r"[A-Za-z0-9_.-]+")


def _azure_adapter_class() -> Any:
    from .adapters.azure import AzureBlobAdapter  # imports aiohttp, or says how to get it

    return AzureBlobAdapter


def azure_location(
    container: str,
    *,
    env: str | None = None,
    connection_string: str | None = None,
    account_url: str | None = None,
    credential: Any = None,
    **options: Any,
) -> StoreLocation:
    """Container ``container`` of an Azure account; ``options`` go to ``AzureBlobAdapter``.

    The account: ``connection_string``, or ``account_url`` (with ``credential``, as
    ``AzureBlobAdapter(account_url, credential)`` takes them), else the connection string in
    the environment variable ``env`` (default ``AZURE_CONN_STR``), read now.
    """
    shown = redact(f"azure:{container}")
    given = [
        name
        for name, value in (
            ("env", env),
            ("connection_string", connection_string),
            ("account_url", account_url),
        )
        if value is not None
    ]
    if len(given) > 1:
        raise ConnectionStringError(f"{shown}: give the account one way, not {' and '.join(given)}")
    if credential is not None and account_url is None:
        raise ConnectionStringError(f"{shown}: credential= goes with account_url=")
    if account_url is not None:
        endpoint, account, sas = parse_account_url(account_url, "account_url")
        secrets = [sas] if sas else []
        if isinstance(credential, str):
            secrets.append(credential)
        elif isinstance(credential, tuple) and len(credential) == 2:
            secrets.append(str(credential[1]))
        return StoreLocation(
            label=f"{shown} (account {account})",
            container=container,
            make_adapter=lambda: _azure_adapter_class()(account_url, credential, **options),
            identity=("azure", endpoint, container),
            secrets=tuple(secrets),
        )
    if connection_string is None:
        variable = AZURE_CONN_ENV if env is None else env
        if not _ENV_NAME.fullmatch(variable):
            raise ConnectionStringError(
                f"{shown}: env= takes the name of an environment variable "
                "(the connection string itself never goes in an address)"
            )
        connection_string = os.environ.get(variable, "")
        if not connection_string.strip():
            raise ConnectionStringError(
                f"no Azure connection string for {shown}: set {variable} "
                "(UseDevelopmentStorage=true for Azurite)"
            )
    elif not isinstance(connection_string, str) or not connection_string.strip():
        raise ConnectionStringError(f"{shown}: connection_string must be a non-empty str")
    conn = connection_string
    try:
        where: Hashable = parse_connection_string(conn).endpoint
    except ConnectionStringError:  # raised again, in full, when the adapter is made
        where = conn
    return StoreLocation(
        label=f"{shown} ({account_label(conn)})",
        container=container,
        make_adapter=lambda: _azure_adapter_class().from_connection_string(conn, **options),
        identity=("azure", where, container),
        secrets=tuple(connection_string_secrets(conn)),
    )


def _open_azure(target: str, /, **options: Any) -> StoreLocation:
    container, has_query, query = target.partition("?")
    shown = f"azure:{container}{'?...' if has_query else ''}"
    # Azure's own rule (3-63 lowercase letters, digits, single hyphens) is the adapter's to
    # check; this only refuses what is no container name at all ('/', '=', ';'...).
    if not _LOOSE_CONTAINER.fullmatch(container):
        raise _bad_address(
            shown,
            "use azure:CONTAINER or azure:CONTAINER?env=VARIABLE, as in azure:models "
            "(the account comes from the environment or from arguments, never the address)",
        )
    env: str | None = None
    for param in query.split("&") if has_query else ():
        name, sep, value = param.partition("=")
        if name != "env" or not sep or env is not None:
            # Never shown: a connection string pasted here would be a secret.
            raise _bad_address(
                shown,
                "the only parameter is env=VARIABLE, the environment variable holding the "
                "connection string (the connection string itself never goes in an address)",
            )
        env = value
    return azure_location(container, env=env, **options)


# ------------------------------------------------------------------------------ registry

_SCHEMES: dict[str, Opener] = {
    "local": _open_local,
    "memory": _open_memory,
    "azure": _open_azure,
}
# Two characters at least, so that a Windows drive (C:\data) is never taken for a scheme.
_SCHEME_NAME = re.compile(r"[a-z][a-z0-9+.-]+")


def register_scheme(name: str, opener: Opener, *, replace: bool = False) -> None:
    """Make ``NAME:TARGET`` addresses open with ``opener(target, **options)``.

    ``name``: lowercase letters, digits, ``+``, ``.`` or ``-``, starting with a letter, two
    characters at least. Registering a name twice is a ValueError unless ``replace``.
    """
    if not isinstance(name, str) or not _SCHEME_NAME.fullmatch(name):
        raise ValueError(
            f"invalid scheme name {name!r}: use 2 or more lowercase letters, digits, '+', '.' "
            "or '-', starting with a letter"
        )
    if not callable(opener):
        raise TypeError(f"opener must be callable, not {type(opener).__name__}")
    if name in _SCHEMES and not replace:
        raise ValueError(f"scheme {name!r} is already registered (pass replace=True)")
    _SCHEMES[name] = opener


def schemes() -> list[str]:
    """The registered scheme names, sorted."""
    return sorted(_SCHEMES)


def locate(address: str, **options: Any) -> StoreLocation:
    """Where ``address`` leads; ``options`` go to the scheme's opener. No I/O."""
    if not isinstance(address, str):
        raise InvalidKeyError(f"a store address must be a str, not {type(address).__name__}")
    scheme, sep, target = address.partition(":")
    known = ", ".join(f"{name}:" for name in schemes())
    if not sep or not target or not _SCHEME_NAME.fullmatch(scheme.lower()):
        raise _bad_address(address, f"use SCHEME:TARGET with a scheme among {known}")
    opener = _SCHEMES.get(scheme.lower())
    if opener is None:
        raise _bad_address(address, f"unknown scheme {scheme!r}; known: {known}")
    try:
        inspect.signature(opener).bind(target, **options)
    except TypeError:
        raise TypeError(
            f"{scheme.lower()}: stores take no option {', '.join(map(repr, sorted(options)))}"
        ) from None
    except ValueError:  # no signature to check (a builtin): let the call tell
        pass
    return opener(target, **options)


def _store_parameters() -> frozenset[str]:
    parameters = inspect.signature(AsyncBlobStore).parameters
    return frozenset(parameters) - {"adapter", "container_name"}


def open_store(address: str, **options: Any) -> AsyncBlobStore:
    """The store at ``address`` (see the module docstring for the schemes).

    ``options`` that ``AsyncBlobStore`` takes (``cache_mode``, ``concurrency_mode``...) go to
    the store, the others to the scheme (``durable=False`` for ``local:``,
    ``connection_string=`` for ``azure:``...). The store owns its adapter (closing the store
    closes it) unless the adapter is shared, as a named memory adapter is. No I/O happens
    until the store is used.
    """
    store_parameters = _store_parameters()
    store_options = {k: v for k, v in options.items() if k in store_parameters}
    location = locate(address, **{k: v for k, v in options.items() if k not in store_parameters})
    store_options.setdefault("owns_adapter", not location.shared)
    logger.debug("opening store %s", location.label)
    return AsyncBlobStore(location.make_adapter(), location.container, **store_options)
