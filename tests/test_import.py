"""`import asyncblobdict` loads the standard library only."""

from __future__ import annotations

import subprocess
import sys

import pytest

CHECK = """
import sys
before = set(sys.modules)
import asyncblobdict
from asyncblobdict import *  # noqa: F403
new = {m.split(".")[0] for m in set(sys.modules) - before}
print(sorted(m for m in new if m not in sys.stdlib_module_names and m != "asyncblobdict"))
"""


def test_import_loads_only_the_standard_library() -> None:
    out = subprocess.run(
        [sys.executable, "-I", "-c", CHECK], capture_output=True, text=True, check=True
    )
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
    out = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True)
    assert 'pip install "asyncblobdict[azure]"' in out.stdout, out.stdout + out.stderr


@pytest.mark.parametrize("name", ["Nope", "azure"])
def test_unknown_attribute(name: str) -> None:
    import asyncblobdict

    with pytest.raises(AttributeError):
        getattr(asyncblobdict, name)
