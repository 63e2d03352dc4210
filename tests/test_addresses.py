"""open_store by address, and the registry of schemes: local, memory, azure and added ones."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from asyncblobdict import (
    AsyncBlobDictError,
    AsyncBlobStore,
    CacheMode,
    ConnectionStringError,
    InvalidKeyError,
    LocalFileAdapter,
    MemoryAdapter,
    StoreLocation,
    addresses,
    open_store,
    register_scheme,
)
from asyncblobdict.addresses import locate, schemes
from tests.checkout import run_python

SECRET = "U2VjcmV0QWNjb3VudEtleU5ldmVyU2hvd24xMjM0NQ=="
SECRET_CONN = f"AccountName=acct;AccountKey={SECRET};EndpointSuffix=core.windows.net"


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:12]}"


# --------------------------------------------------------------------------------- local


async def test_local_address_is_root_and_container(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # relative to the working directory
    async with open_store("local:./data/box", cache_mode="write_through") as store:
        assert isinstance(store.adapter, LocalFileAdapter)
        assert store.container_name == "box"
        assert store.cache_mode is CacheMode.WRITE_THROUGH  # a store option
        assert store.owns_adapter
        await store.set_binary("a/b", b"bytes")
    assert (tmp_path / "data" / "box" / "a" / "b").read_bytes() == b"bytes"
    # A trailing slash, an absolute path, and the default root "." are the same rule.
    async with open_store(f"local:{tmp_path}/data/box/") as store:
        assert await store.get_binary("a/b") == b"bytes"
    async with open_store("local:box") as store:
        await store.set_binary("k", b"v")
    assert (tmp_path / "box" / "k").read_bytes() == b"v"


async def test_local_options_go_to_the_adapter_and_tilde_is_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    async with open_store("local:~/data/box", durable=False) as store:
        assert isinstance(store.adapter, LocalFileAdapter)
        assert store.adapter.durable is False
        await store.set_json("k", [1])
    assert (tmp_path / "data" / "box" / "k").read_bytes() == b"[1]"
    with pytest.raises(TypeError):
        open_store("local:~/data/box", no_such_option=1)


def test_local_label_and_identity(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    location = locate("local:./data/box")
    assert (location.label, location.container) == ("local:./data/box", "box")
    # The same folder written two ways is the same store; another container is not.
    assert locate(f"local:{tmp_path}/data/box").identity == location.identity
    assert locate("local:./data/other").identity != location.identity


# -------------------------------------------------------------------------------- memory


async def test_memory_name_is_shared_in_the_process() -> None:
    name = unique("space")
    async with open_store(f"memory:{name}/box") as store:
        await store.set_json("k", {"v": 1})
    # Closed and opened again: the data is still there, in the same adapter.
    async with open_store(f"memory:{name}/box") as again, open_store(f"memory:{name}/c2") as c2:
        assert await again.get_json("k") == {"v": 1}
        assert c2.adapter is again.adapter and isinstance(again.adapter, MemoryAdapter)
        assert not again.owns_adapter  # the process keeps it; no store may close it
        assert await c2.list_keys() == []
    # Another name (or none) is another adapter.
    async with open_store(f"memory:{unique('space')}/box") as other:
        assert await other.list_keys() == []
    box = unique("box")
    async with open_store(f"memory:{box}") as a, open_store(f"memory:{box}") as b:
        await a.set_binary("x", b"1")
        assert await b.get_binary("x") == b"1"
        assert a.adapter is not again.adapter


def test_memory_takes_no_options() -> None:
    with pytest.raises(TypeError, match="memory"):
        open_store("memory:box", durable=False)


# ------------------------------------------------------------------------ bad addresses


@pytest.mark.parametrize(
    "address",
    [
        "",
        "box",
        "local:",
        "local:..",
        "local:data/.",
        "local:/",
        "memory:",
        "memory:ns/..",
        "azure:",
        "azure:a/b",
        "azure://acct.blob.core.windows.net/box",
        "azure:box?container=x",
        "azure:box?env",
        "azure:box?env=A&env=B",
        "s3:bucket",
        "C:\\data\\box",
        ":x",
    ],
)
def test_bad_addresses_are_invalid_key_errors(address: str) -> None:
    with pytest.raises(InvalidKeyError) as info:
        locate(address)
    assert isinstance(info.value, ValueError) and isinstance(info.value, AsyncBlobDictError)
    assert "store address" in str(info.value)


def test_unknown_scheme_names_the_known_ones() -> None:
    with pytest.raises(InvalidKeyError, match=r"unknown scheme 's3'.*azure:.*local:.*memory:"):
        open_store("s3:bucket")


def test_a_bad_container_in_an_address_is_the_adapters_error(tmp_path: Path) -> None:
    with pytest.raises(InvalidKeyError, match="invalid container name 'bad name'"):
        open_store(f"local:{tmp_path}/bad name")


# --------------------------------------------------------------------------------- azure


def test_azure_reads_the_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AZURE_CONN_STR", raising=False)
    with pytest.raises(ConnectionStringError, match="set AZURE_CONN_STR"):
        locate("azure:box")
    monkeypatch.setenv("AZURE_CONN_STR", SECRET_CONN)
    location = locate("azure:box")
    assert (location.label, location.container) == ("azure:box (account acct)", "box")
    # ?env= names another variable, and only that one is read.
    monkeypatch.setenv("PROD_CONN", "UseDevelopmentStorage=true")
    assert locate("azure:box?env=PROD_CONN").label == "azure:box (development storage)"
    with pytest.raises(ConnectionStringError, match="set MISSING_CONN"):
        locate("azure:box?env=MISSING_CONN")
    # Arguments instead of the environment.
    assert locate("azure:box", connection_string=SECRET_CONN).identity == location.identity
    url = locate("azure:box", account_url="https://other.blob.core.windows.net", credential="k")
    assert url.label == "azure:box (account other)" and url.identity != location.identity


@pytest.mark.parametrize(
    ("address", "options"),
    [
        (f"azure:box?env={SECRET_CONN}", {}),
        (f"azure:box?conn={SECRET_CONN}", {}),
        (f"azure:{SECRET_CONN}", {}),
        (f"azure:box?sv=2024&sig={SECRET}", {}),
        (f"azure://x?{SECRET}", {}),
        (f"nope:{SECRET_CONN}", {}),
        ("azure:box?env=PROD", {"connection_string": SECRET_CONN}),
        ("azure:box", {"connection_string": SECRET_CONN, "account_url": "https://a.b.c"}),
        ("azure:box", {"credential": SECRET}),
    ],
)
def test_azure_errors_never_show_a_secret(address: str, options: dict[str, Any]) -> None:
    with pytest.raises(ValueError) as info:
        locate(address, **options)
    assert isinstance(info.value, AsyncBlobDictError)
    assert SECRET not in str(info.value) and SECRET not in repr(info.value)


def test_azure_location_keeps_the_secret_out_of_its_repr() -> None:
    location = locate("azure:box", connection_string=SECRET_CONN)
    assert SECRET not in repr(location) and SECRET not in location.label
    assert SECRET in location.secrets  # for whoever has to hide it from a message


def test_azure_address_imports_aiohttp_only_when_opened() -> None:
    code = (
        "import sys; sys.modules['aiohttp'] = None  # as if it were not installed\n"
        "from asyncblobdict import open_store\n"
        "from asyncblobdict.addresses import locate\n"
        "print(locate('azure:box', connection_string='UseDevelopmentStorage=true').label)\n"
        "try:\n"
        "    open_store('azure:box', connection_string='UseDevelopmentStorage=true')\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    out = run_python(code)
    lines = out.stdout.splitlines()
    assert lines[0] == "azure:box (development storage)", out.stderr
    assert 'pip install "aiohttp>=3.11,<4"' in lines[1]


@pytest.mark.azure
async def test_azure_store_round_trip(azurite: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    container = unique("addr")
    monkeypatch.setenv("ABD_TEST_CONN", azurite.connection_string)
    async with open_store(f"azure:{container}?env=ABD_TEST_CONN", concurrency_mode="etag") as s:
        await s.set_json("k", {"a": 1})
    monkeypatch.delenv("ABD_TEST_CONN")
    async with open_store(f"azure:{container}", connection_string=azurite.connection_string) as s:
        assert await s.get_json("k") == {"a": 1}
        assert type(s.adapter).__name__ == "AzureBlobAdapter"


# ------------------------------------------------------------------------------ registry


class _ClosingAdapter(MemoryAdapter):
    closed = 0

    async def close(self) -> None:
        type(self).closed += 1


@pytest.fixture
def scheme(monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh scheme name, unregistered after the test."""
    name = unique("test-")
    monkeypatch.setattr(addresses, "_SCHEMES", dict(addresses._SCHEMES))
    return name


async def test_a_registered_scheme_opens_stores_that_own_their_adapter(scheme: str) -> None:
    seen: list[tuple[str, dict[str, Any]]] = []

    def opener(target: str, **options: Any) -> StoreLocation:
        seen.append((target, options))
        return StoreLocation(f"{scheme}:{target}", target, _ClosingAdapter)

    register_scheme(scheme, opener)
    assert scheme in schemes()
    before = _ClosingAdapter.closed
    store = open_store(f"{scheme}:box", flavour="x", cache_mode="write_back")
    assert isinstance(store, AsyncBlobStore) and store.container_name == "box"
    assert seen == [("box", {"flavour": "x"})]  # store options are not the opener's
    await store.set_json("k", 1)
    await store.close()  # syncs, then closes the adapter it owns
    assert _ClosingAdapter.closed == before + 1
    assert locate(f"{scheme}:box").identity == f"{scheme}:box"  # the label by default


def test_register_scheme_checks_its_arguments(scheme: str) -> None:
    def opener(target: str) -> StoreLocation:
        raise AssertionError("not called")

    for bad in ("", "x", "Up", "1ab", "a b", "a:b"):
        with pytest.raises(ValueError, match="scheme name"):
            register_scheme(bad, opener)
    with pytest.raises(ValueError, match="already registered"):
        register_scheme("local", opener)
    with pytest.raises(TypeError):
        register_scheme(scheme, "not callable")  # type: ignore[arg-type]
    register_scheme(scheme, opener)
    register_scheme(scheme, opener, replace=True)


async def test_replacing_a_built_in_scheme(scheme: str, tmp_path: Path) -> None:
    # Every caller (the command line too) goes through the registry.
    def opener(target: str) -> StoreLocation:
        return addresses.local_location(tmp_path, target)

    register_scheme("memory", opener, replace=True)
    async with open_store("memory:box") as store:
        await store.set_binary("k", b"on disk")
    assert (tmp_path / "box" / "k").read_bytes() == b"on disk"
