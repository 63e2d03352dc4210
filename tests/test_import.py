"""`import asyncblobdict` loads the standard library only."""

from __future__ import annotations

import pytest

from tests.checkout import run_python

CHECK = """
import sys
before = set(sys.modules)
import asyncblobdict
from asyncblobdict import *  # noqa: F403
new = {m.split(".")[0] for m in set(sys.modules) - before}
print(sorted(m for m in new if m not in sys.stdlib_module_names and m != "asyncblobdict"))
"""


def test_import_loads_only_the_standard_library() -> None:
    out = run_python(CHECK, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_public_names() -> None:
    import asyncblobdict

    for name in asyncblobdict.__all__:
        assert getattr(asyncblobdict, name) is not None
    # Lazy: listed by dir() but not by __all__, so `import *` stays standard-library only.
    assert "AzureBlobAdapter" in dir(asyncblobdict)
    assert "AzureBlobAdapter" not in asyncblobdict.__all__
    assert issubclass(asyncblobdict.BlobNotFoundError, KeyError)
    for err in ("InvalidKeyError", "SerializationError"):
        assert issubclass(getattr(asyncblobdict, err), ValueError)
    for err in (
        "BlobNotFoundError",
        "ConcurrencyError",
        "InvalidKeyError",
        "SerializationError",
        "StorageError",
        "AuthenticationError",
    ):
        assert issubclass(getattr(asyncblobdict, err), asyncblobdict.AsyncBlobDictError)


def test_azure_adapter_without_aiohttp_names_the_extra() -> None:
    code = (
        "import sys; sys.modules['aiohttp'] = None\n"
        "import asyncblobdict\n"
        "try:\n"
        "    asyncblobdict.AzureBlobAdapter\n"
        "except ImportError as e:\n"
        "    print(e)\n"
    )
    out = run_python(code)
    # How to get aiohttp for this code: the extra from a clone, or aiohttp itself; never
    # "asyncblobdict[azure]", which from PyPI installs the unrelated original library.
    assert 'pip install "aiohttp>=3.11,<4"' in out.stdout, out.stdout + out.stderr
    assert 'pip install ".[azure]"' in out.stdout
    assert "asyncblobdict[azure]" not in out.stdout


@pytest.mark.parametrize("name", ["Nope", "azure"])
def test_unknown_attribute(name: str) -> None:
    import asyncblobdict

    with pytest.raises(AttributeError):
        getattr(asyncblobdict, name)


def test_connection_strings_parse_without_aiohttp() -> None:
    # The command line and open_store read connection strings: that must not need aiohttp.
    code = (
        "import sys; sys.modules['aiohttp'] = None  # as if it were not installed\n"
        "from asyncblobdict.adapters.azure_connection import account_label, "
        "parse_connection_string\n"
        "info = parse_connection_string('UseDevelopmentStorage=true')\n"
        "print(info.account_name, account_label('AccountName=acct;AccountKey=a2V5'))\n"
    )
    out = run_python(code)
    assert out.stdout.split() == ["devstoreaccount1", "account", "acct"], out.stderr


def test_the_old_connection_module_is_the_same_parser() -> None:
    pytest.importorskip("aiohttp")
    from asyncblobdict.adapters import azure_connection
    from asyncblobdict.adapters.azure import ConnectionStringError, connection

    assert connection.parse_connection_string is azure_connection.parse_connection_string
    assert ConnectionStringError is azure_connection.ConnectionStringError
    for name in azure_connection.__all__:
        assert getattr(connection, name) is getattr(azure_connection, name)


DEFERRED = """
import sys
import asyncblobdict
loaded = [m for m in sys.argv[1:] if m in sys.modules]
asyncblobdict.AsyncBlobStore, asyncblobdict.TypeRegistry  # noqa: B018
print(loaded, "asyncblobdict.store" in sys.modules, "asyncblobdict.codec" in sys.modules)
"""


def test_import_defers_what_it_does_not_need() -> None:
    # `import asyncblobdict` loads the errors alone; the rest comes with the first name used.
    heavy = [
        "asyncblobdict.store",
        "asyncblobdict.codec",
        "asyncblobdict.adapters.local",
        "dataclasses",
        "json",
        "hashlib",
        "uuid",
        "decimal",
        "random",
    ]
    # Measured against `python -c 'import asyncio'`, which loads some of these itself.
    out = run_python("import asyncio\n" + DEFERRED, *heavy, check=True)
    assert out.stdout.split() == ["[]", "True", "True"], out.stdout


def test_the_codec_loads_uuid_and_decimal_only_when_a_value_needs_them() -> None:
    code = (
        "import sys\n"
        "from asyncblobdict.codec import TypeRegistry, decode, encode\n"
        "print('uuid' in sys.modules, 'decimal' in sys.modules)\n"
        'print(decode(b\'[{"_bdtype_":"decimal","value":"1.10"}]\'))\n'
        "from uuid import UUID\n"
        "print(encode({'u': UUID(int=1)}).decode())\n"
        "class Mine(UUID): pass\n"
        "print(encode(Mine(int=2)).decode())\n"
        "try:\n"
        "    TypeRegistry(UUID)\n"
        "except ValueError as e:\n"
        "    print('refused')\n"
    )
    out = run_python(code, check=True)
    assert out.stdout.splitlines() == [
        "False False",
        "[Decimal('1.10')]",
        '{"u":{"_bdtype_":"uuid","value":"00000000-0000-0000-0000-000000000001"}}',
        '{"_bdtype_":"uuid","value":"00000000-0000-0000-0000-000000000002"}',
        "refused",
    ], out.stdout + out.stderr
