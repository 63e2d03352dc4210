"""The asyncblobdict command line: every command, exit codes, stderr one-liners, cp."""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import io
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from asyncblobdict import (
    AsyncBlobStore,
    AuthenticationError,
    BlobNotFoundError,
    LocalFileAdapter,
    MemoryAdapter,
    StorageError,
)
from asyncblobdict._redact import redact
from asyncblobdict.cli import _duration, _expand_bare_conn_options, main, output
from asyncblobdict.cli.output import human_bytes
from asyncblobdict.cli.progress import Progress, render_progress
from asyncblobdict.cli.stores import UsageError, parse_address

PYTHON = sys.executable
REPO = Path(__file__).resolve().parents[1]
SCRIPT = Path(PYTHON).with_name("asyncblobdict")


# ------------------------------------------------------------------------------ helpers


@pytest.fixture
def cli(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Callable[..., tuple[int, str, str]]:
    """Run main() in tmp_path; return (exit code, stdout, stderr)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("AZURE_CONN_STR", raising=False)
    monkeypatch.delenv("AZURE_CONTAINER", raising=False)

    def run(*args: str, stdin: bytes | None = None) -> tuple[int, str, str]:
        if stdin is not None:
            monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin)))
        code = main(list(args))
        out, err = capsys.readouterr()
        return code, out, err

    return run


def run_process(
    args: list[str], cwd: Path, env: dict[str, str] | None = None, stdin: bytes | None = None
) -> subprocess.CompletedProcess[bytes]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("AZURE_")}
    # This checkout's package, whatever copy is installed (the console script too).
    full_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), full_env.get("PYTHONPATH")]))
    full_env.update(env or {})
    return subprocess.run(
        args, cwd=cwd, env=full_env, input=stdin, capture_output=True, timeout=120, check=False
    )


def one_line_error(err: str) -> str:
    """stderr must be exactly one 'asyncblobdict: error: ...' line, no traceback."""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("asyncblobdict: error: "), err
    assert "Traceback" not in err
    return lines[0]


def read_local(root: Path, container: str, key: str) -> bytes:
    return (root / container / key).read_bytes()


async def _fill(root: Path, container: str, values: dict[str, bytes]) -> None:
    async with AsyncBlobStore(LocalFileAdapter(root), container) as store:
        for key, data in values.items():
            await store.set_binary(key, data)


def fill(root: Path, container: str, values: dict[str, bytes]) -> None:
    asyncio.run(_fill(root, container, values))


# --------------------------------------------------------------------------- the parser


def test_help_and_version(cli: Callable[..., tuple[int, str, str]]) -> None:
    code, out, _ = cli("--help")
    assert code == 0
    for word in ("demo", "ls", "get", "put", "rm", "cp", "exit codes", "local:DIR/CONTAINER"):
        assert word in out
    code, out, _ = cli("--version")
    assert code == 0 and out.startswith("asyncblobdict ")
    code, out, _ = cli("cp", "--help")
    assert code == 0 and "--dry-run" in out and "--jobs" in out


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["frobnicate"],
        ["ls", "--bogus"],
        ["get"],
        ["cp", "local:a/b"],
        ["cp", "local:a/b", "local:c/d", "--jobs", "0"],
        ["cp", "nowhere", "local:c/d"],
        ["cp", "local:a/b", "s3:bucket"],
        ["cp", "local:a/b", "local:a/b"],
        ["cp", "local:./x/c", "azure:demo"],  # no connection string anywhere
        ["--local", "a", "--azure", "UseDevelopmentStorage=true", "ls"],
        ["--azure", "ls"],  # --azure alone, AZURE_CONN_STR unset
        ["--azure", "UseDevelopmentStorage=true", "ls"],  # no container
        ["cp", "--local", "x", "local:a/b", "local:c/d"],
    ],
)
def test_usage_errors_exit_2(cli: Callable[..., tuple[int, str, str]], args: list[str]) -> None:
    code, out, err = cli(*args)
    assert code == 2, err
    assert out == ""
    assert "usage:" in err and "error:" in err and "Traceback" not in err


def test_store_options_before_or_after_the_command(
    cli: Callable[..., tuple[int, str, str]], tmp_path: Path
) -> None:
    fill(tmp_path / "data", "box", {"k": b"v"})
    assert cli("--local", "data", "--container", "box", "ls") == (0, "k\n", "")
    assert cli("ls", "--local", "data", "--container", "box") == (0, "k\n", "")


def test_bare_azure_option_is_expanded() -> None:
    assert _expand_bare_conn_options(["--azure", "ls"]) == ["--azure=", "ls"]
    assert _expand_bare_conn_options(["ls", "--azure"]) == ["ls", "--azure="]
    assert _expand_bare_conn_options(["--azure", "UseDevelopmentStorage=true", "ls"]) == [
        "--azure",
        "UseDevelopmentStorage=true",
        "ls",
    ]
    assert _expand_bare_conn_options(["cp", "--to-azure", "--jobs", "2"])[1] == "--to-azure="
    assert _expand_bare_conn_options(["get", "--", "--azure"]) == ["get", "--", "--azure"]
    # Before the command, a word that is no command is --azure's value (refused later as
    # no connection string); after it, a word is the command's own argument.
    assert _expand_bare_conn_options(["--azure", "garbage", "ls"]) == ["--azure", "garbage", "ls"]
    assert _expand_bare_conn_options(["ls", "--azure", "runs/"]) == ["ls", "--azure=", "runs/"]
    assert _expand_bare_conn_options(["--azure", "info", "k"]) == ["--azure=", "info", "k"]
    # cp's arguments are store addresses: a word without ':' can only be the option's value.
    assert _expand_bare_conn_options(["cp", "--to-azure", "bad", "a:b", "c:d"])[1] == "--to-azure"
    assert _expand_bare_conn_options(["cp", "--to-azure", "a:b", "c:d"])[1] == "--to-azure="
    # A container called "ls" is the value of --container, not the command.
    assert _expand_bare_conn_options(["--container", "ls", "--azure", "x", "ls"]) == [
        "--container",
        "ls",
        "--azure",
        "x",
        "ls",
    ]


def test_the_commands_the_option_reader_knows_are_the_parsers() -> None:
    from asyncblobdict.cli import _COMMANDS, build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert sorted(_COMMANDS) == sorted(sub.choices)


def test_bare_azure_option_reads_the_environment(
    cli: Callable[..., tuple[int, str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A malformed connection string from the environment: the error proves it was read.
    monkeypatch.setenv("AZURE_CONN_STR", "AccountName=x;AccountKey=c2VjcmV0c2V*not-base64")
    monkeypatch.setenv("AZURE_CONTAINER", "demo")
    code, _, err = cli("--azure", "ls")
    assert code == 2, err
    assert "$AZURE_CONN_STR is not an Azure connection string" in err
    assert "the account key is not valid base64" in err
    assert "c2VjcmV0c2V" not in err


NOT_A_CONN = "notaconnectionstring42"
PLACEHOLDER_CONN = (
    "DefaultEndpointsProtocol=https;AccountName=<account>;AccountKey=<key>;"
    "EndpointSuffix=core.windows.net"
)


@pytest.mark.parametrize(
    ("argv", "env", "words"),
    [
        (["--azure", NOT_A_CONN, "ls"], {}, "the value of --azure is not an Azure connection"),
        ([f"--azure={NOT_A_CONN}", "ls"], {}, "the value of --azure is not an Azure connection"),
        (
            ["get", "k", "--azure", "AccountName=acct AccountKey=NotShownKey42"],
            {},
            "needs AccountKey or SharedAccessSignature",
        ),
        (["--azure", PLACEHOLDER_CONN, "ls"], {}, "the value of --azure is a placeholder"),
        (["--azure", "ls"], {"AZURE_CONN_STR": PLACEHOLDER_CONN}, "$AZURE_CONN_STR is a placeh"),
        (["--azure", "ls"], {"AZURE_CONN_STR": NOT_A_CONN}, "$AZURE_CONN_STR is not an Azure"),
        (["--azure", "ls"], {"AZURE_CONN_STR": "  "}, "set AZURE_CONN_STR"),
        (["cp", "local:a/b", "azure:c"], {"AZURE_CONN_STR": PLACEHOLDER_CONN}, "placeholder"),
        (["cp", "local:a/b", "azure:c?env=MINE"], {"MINE": PLACEHOLDER_CONN}, "$MINE is a plac"),
        (["cp", "local:a/b", "azure:c?env=MINE"], {"MINE": NOT_A_CONN}, "$MINE is not an Azure"),
        (["cp", "--to-azure", NOT_A_CONN, "local:a/b", "azure:c"], {}, "--to-azure is not an"),
        (["cp", "--to-azure", PLACEHOLDER_CONN, "local:a/b", "azure:c"], {}, "placeholder"),
        (["cp", "--from-azure", NOT_A_CONN, "azure:c", "local:a/b"], {}, "--from-azure is not"),
    ],
)
def test_a_connection_string_that_is_none_is_a_usage_error(
    cli: Callable[..., tuple[int, str, str]],
    monkeypatch: pytest.MonkeyPatch,
    argv: list[str],
    env: dict[str, str],
    words: str,
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AZURE_CONTAINER", "demo")
    code, out, err = cli(*argv)
    assert (code, out) == (2, ""), err
    assert "usage:" in err and "invalid choice" not in err
    line = err.strip().splitlines()[-1]
    assert line.startswith("asyncblobdict: error: ") and words in line, err
    if "placeholder" in words:
        assert "<...> parts" in line
    for shown in (NOT_A_CONN, "NotShownKey42", "<account>", "<key>"):
        assert shown not in err  # never repeated, not even a placeholder


def test_parse_address() -> None:
    spec = parse_address("local:./local_blob_storage/demo_container", None)
    assert (spec.describe(), spec.container) == (
        "local:./local_blob_storage/demo_container",
        "demo_container",
    )
    spec = parse_address("local:box/", None)
    assert (spec.describe(), spec.container) == ("local:./box", "box")
    spec = parse_address("azure:demo", "UseDevelopmentStorage=true")
    assert spec.container == "demo"
    assert "UseDevelopmentStorage" not in repr(spec)
    assert spec.describe() == "azure:demo (development storage)"
    for bad in ("local:", "azure:", "azure:a/b", "demo", "local:..", "ftp:x"):
        with pytest.raises(UsageError):
            parse_address(bad, "UseDevelopmentStorage=true")


# --------------------------------------------------------------------------------- demo


def test_demo_runs_the_quickstart_in_the_default_folder(
    cli: Callable[..., tuple[int, str, str]], tmp_path: Path
) -> None:
    code, out, err = cli("demo")
    assert code == 0, err
    assert err == ""
    for text in (
        "set_json('demo/config'",
        "get_binary('demo/model.bin')",
        "list_keys()",
        "BlobNotFoundError",
        "round trip exact: True",
    ):
        assert text in out
    folder = tmp_path / "local_blob_storage" / "demo_container"
    assert (folder / "demo" / "model.bin").is_file()
    assert not (folder / "demo" / "config").exists()
    assert cli("ls") == (0, "demo/model.bin\n", "")
    # Twice in a row is fine (the README's first command may be run again).
    assert cli("demo")[0] == 0


# ----------------------------------------------------------------------------- ls, get


def test_ls_sorted_with_prefix_and_long(
    cli: Callable[..., tuple[int, str, str]], tmp_path: Path
) -> None:
    fill(
        tmp_path / "local_blob_storage",
        "demo_container",
        {"b/2": b"22", "a/1": b"1", "b/1": b"x" * 300, "c": b""},
    )
    assert cli("ls") == (0, "a/1\nb/1\nb/2\nc\n", "")
    assert cli("ls", "b/") == (0, "b/1\nb/2\n", "")
    code, out, err = cli("ls", "zzz")
    assert (code, out) == (1, "")
    assert one_line_error(err) == (
        "asyncblobdict: error: no key starts with 'zzz' in container 'demo_container'"
    )
    code, out, _ = cli("ls", "--long", "b/")
    assert code == 0
    rows = [line.split() for line in out.splitlines()]
    assert [row[-1] for row in rows] == ["b/1", "b/2"]
    assert [row[0] for row in rows] == ["300", "2"]
    md5 = hashlib.md5(b"x" * 300).hexdigest()
    assert rows[0][3] == f'"{md5}"'  # the local ETag: the quoted MD5 of the content
    # size, date, time, ETag, content type, expiry, metadata, key
    assert rows[0][4:] == ["-", "-", "-", "b/1"]
    assert len(rows[1]) == 8


CFG_MD5 = hashlib.md5(b'{"a":1}').hexdigest()


async def _write_described(adapter: Any, container: str) -> None:
    """Two values with a content type, one with metadata too."""
    async with AsyncBlobStore(adapter, container) as store:
        await store.set_json("cfg", {"a": 1}, metadata={"Owner": "ops", "run": "7"})
        await store.set_binary("img", b"\x89PNG" * 300, content_type="image/png")


def test_ls_long_and_info_show_content_type_and_metadata(
    cli: Callable[..., tuple[int, str, str]], tmp_path: Path
) -> None:
    asyncio.run(
        _write_described(LocalFileAdapter(tmp_path / "local_blob_storage"), "demo_container")
    )
    code, out, err = cli("ls", "-l")
    assert (code, err) == (0, "")
    lines = out.splitlines()
    rows = [line.split() for line in lines]
    assert [(row[0], *row[4:]) for row in rows] == [
        ("7", "application/json", "-", '{"owner":"ops","run":"7"}', "cfg"),
        ("1200", "image/png", "-", "-", "img"),
    ]
    assert len({line.rindex(" ") for line in lines}) == 1  # the keys line up

    code, out, err = cli("info", "cfg")
    assert (code, err) == (0, "")
    fields = [line.split(None, 1) for line in out.splitlines()]
    md5 = CFG_MD5
    assert [name for name, _ in fields[:3]] == ["key:", "size:", "last"]
    assert fields[:2] == [["key:", "cfg"], ["size:", "7 bytes"]]
    assert out.splitlines()[2].endswith(" UTC")
    assert out.splitlines()[3:] == [
        "expires:       -",
        f'etag:          "{md5}"',
        "content type:  application/json",
        f"content md5:   {md5}",
        "metadata:      owner=ops",
        "               run=7",
    ]
    code, out, _ = cli("info", "img")
    assert code == 0
    assert "size:          1200 bytes (1.2 KiB)\n" in out
    assert "content type:  image/png\n" in out and out.endswith("metadata:      -\n")


def test_put_json_stores_the_json_content_type(
    cli: Callable[..., tuple[int, str, str]], tmp_path: Path
) -> None:
    assert cli("put", "j", "-", "--json", stdin=b"[1]")[0] == 0
    assert cli("put", "b", "-", stdin=b"[1]")[0] == 0
    assert "content type:  application/json\n" in cli("info", "j")[1]
    assert "content type:  -\n" in cli("info", "b")[1]


def test_ls_of_a_missing_container_says_so(
    cli: Callable[..., tuple[int, str, str]], tmp_path: Path
) -> None:
    for args in (["ls"], ["ls", "-l"], ["ls", "some/prefix"]):
        code, out, err = cli("--container", "nothing_here", *args)
        assert (code, out) == (1, ""), err
        assert one_line_error(err) == (
            "asyncblobdict: error: no such container 'nothing_here' "
            "(local:./local_blob_storage/nothing_here)"
        )
    assert not (tmp_path / "local_blob_storage").exists()  # looking created nothing


def test_ls_of_an_emptied_container_lists_nothing(
    cli: Callable[..., tuple[int, str, str]], tmp_path: Path
) -> None:
    # The container exists (its folder stays when its last key goes): nothing to list is
    # then no error, but a prefix that names nothing still is.
    fill(tmp_path / "data", "box", {"a/b": b"1"})
    assert cli("--local", "data", "--container", "box", "rm", "a/b")[0] == 0
    assert (tmp_path / "data" / "box").is_dir()
    assert cli("--local", "data", "--container", "box", "ls") == (0, "", "")
    assert cli("--local", "data", "--container", "box", "ls", "-l") == (0, "", "")
    code, _, err = cli("--local", "data", "--container", "box", "ls", "a/")
    assert code == 1 and "no key starts with 'a/'" in one_line_error(err)


async def test_container_exists_per_backend(tmp_path: Path) -> None:
    from asyncblobdict import MemoryAdapter
    from asyncblobdict.cli.stores import container_exists

    local = LocalFileAdapter(tmp_path)
    assert not await container_exists(local, "box")
    (tmp_path / "box").mkdir()
    assert await container_exists(local, "box")  # an empty folder is an empty container
    memory = MemoryAdapter()  # no folder to look at: a container is its keys
    assert not await container_exists(memory, "box")
    await memory.put("box", "k", b"v")
    assert await container_exists(memory, "box")
    await memory.delete("box", "k")
    assert not await container_exists(memory, "box")


def test_put_json_and_get_pretty(cli: Callable[..., tuple[int, str, str]], tmp_path: Path) -> None:
    (tmp_path / "v.json").write_text('{"b": [1, 2],\n "a": "é", "c": null}')
    code, out, err = cli("put", "cfg/v", "v.json", "--json")
    assert (code, err) == (0, "")
    assert "cfg/v" in out
    stored = read_local(tmp_path / "local_blob_storage", "demo_container", "cfg/v")
    assert json.loads(stored) == {"b": [1, 2], "a": "é", "c": None}
    code, out, _ = cli("get", "cfg/v")
    assert code == 0
    assert json.loads(out) == {"b": [1, 2], "a": "é", "c": None}
    assert out.startswith("{\n  ") and "é" in out

    async def read_back() -> Any:
        async with AsyncBlobStore(
            LocalFileAdapter(tmp_path / "local_blob_storage"), "demo_container"
        ) as store:
            return await store.get_json("cfg/v")

    assert asyncio.run(read_back()) == {"b": [1, 2], "a": "é", "c": None}


def test_get_json_written_by_the_library_shows_its_tags(
    cli: Callable[..., tuple[int, str, str]], tmp_path: Path
) -> None:
    async def write() -> None:
        async with AsyncBlobStore(
            LocalFileAdapter(tmp_path / "local_blob_storage"), "demo_container"
        ) as store:
            await store.set_json("s", {"tags": {"x"}})

    asyncio.run(write())
    code, out, _ = cli("get", "s")
    assert code == 0 and "_bdtype_" in out
    # What get prints can be put back and reads as the same value.
    (tmp_path / "s.json").write_text(out)
    assert cli("put", "s2", "s.json", "--json")[0] == 0

    async def read() -> Any:
        async with AsyncBlobStore(
            LocalFileAdapter(tmp_path / "local_blob_storage"), "demo_container"
        ) as store:
            return await store.get_json("s2")

    assert asyncio.run(read()) == {"tags": {"x"}}


def test_put_from_stdin_and_raw_bytes(
    cli: Callable[..., tuple[int, str, str]], tmp_path: Path
) -> None:
    assert cli("put", "n", "-", "--json", stdin=b"[1, 2, 3]\n")[0] == 0
    assert json.loads(cli("get", "n")[1]) == [1, 2, 3]
    data = bytes(range(256)) * 4
    (tmp_path / "blob.bin").write_bytes(data)
    assert cli("put", "bin/x", "blob.bin")[0] == 0
    assert read_local(tmp_path / "local_blob_storage", "demo_container", "bin/x") == data
    assert cli("get", "bin/x", "-o", "out.bin") == (0, "", "")
    assert (tmp_path / "out.bin").read_bytes() == data
    # -o writes the stored bytes exactly, JSON too (no pretty-printing).
    assert cli("get", "n", "-o", "n.json")[0] == 0
    assert (tmp_path / "n.json").read_bytes() == read_local(
        tmp_path / "local_blob_storage", "demo_container", "n"
    )


def test_get_binary_to_stdout_and_raw(tmp_path: Path) -> None:
    data = b"\x80\x00binary\xff" * 10
    fill(tmp_path / "local_blob_storage", "demo_container", {"b": data, "j": b'{"a":1}'})
    result = run_process([PYTHON, "-m", "asyncblobdict", "get", "b"], tmp_path)
    assert (result.returncode, result.stdout, result.stderr) == (0, data, b"")
    result = run_process([PYTHON, "-m", "asyncblobdict", "get", "j", "--raw"], tmp_path)
    assert result.stdout == b'{"a":1}'
    result = run_process([PYTHON, "-m", "asyncblobdict", "get", "j"], tmp_path)
    assert result.stdout == b'{\n  "a": 1\n}\n'


def test_get_binary_to_a_terminal_is_refused(
    cli: Callable[..., tuple[int, str, str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fill(tmp_path / "local_blob_storage", "demo_container", {"b": b"\x00\x01\x02"})
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    code, out, err = cli("get", "b")
    assert code == 1 and out == ""
    assert "-o FILE" in one_line_error(err)


@pytest.mark.parametrize(
    ("args", "stdin", "words"),
    [
        (["get", "missing"], None, "no such key 'missing'"),
        (["get", "a//b"], None, "key segments"),
        (["get", "../etc/passwd"], None, "key segments"),
        (["put", "k", "no-such-file"], None, "cannot read no-such-file"),
        (["put", "k", "-", "--json"], b"{not json", "stdin is not valid JSON"),
        (["put", "k", "-", "--json"], b"[NaN]", "NaN is not valid JSON"),
        (["put", "k", "-", "--json"], b"\xff\xfe", "not UTF-8"),
        (["put", "", "-"], b"x", "must not be empty"),
        (["rm", "missing"], None, "no such key 'missing'"),
        (["info", "missing"], None, "no such key 'missing'"),
        (["info", "a//b"], None, "key segments"),
        (["rm", "ok", "/bad"], None, "key segments"),
        (["--container", "bad/name", "ls"], None, "container"),
    ],
)
def test_user_errors_exit_1_with_one_line(
    cli: Callable[..., tuple[int, str, str]],
    args: list[str],
    stdin: bytes | None,
    words: str,
) -> None:
    code, _, err = cli(*args, stdin=stdin)
    assert code == 1, err
    assert words in one_line_error(err)


def test_bad_json_input_stores_nothing(
    cli: Callable[..., tuple[int, str, str]], tmp_path: Path
) -> None:
    assert cli("put", "k", "-", "--json", stdin=b'{"a": 1,}')[0] == 1
    assert not (tmp_path / "local_blob_storage").exists()


def test_rm(cli: Callable[..., tuple[int, str, str]], tmp_path: Path) -> None:
    fill(tmp_path / "local_blob_storage", "demo_container", {"a": b"1", "b/c": b"2", "d": b"3"})
    code, out, err = cli("rm", "a", "b/c")
    assert (code, err) == (0, "")
    assert out == "deleted: a\ndeleted: b/c\n"
    assert cli("ls") == (0, "d\n", "")
    code, out, err = cli("rm", "d", "gone")
    assert code == 1 and out == "deleted: d\n"
    assert "gone" in one_line_error(err)
    assert cli("rm", "-f", "gone", "also-gone") == (0, "", "")


MISSING = "asyncblobdict: error: no such key 'runs/missing' in container 'box'"


@pytest.mark.parametrize(
    "args",
    [
        ["get", "runs/missing"],
        ["get", "runs/missing", "--raw"],
        ["get", "runs/missing", "-o", "out.bin"],
        ["info", "runs/missing"],
        ["rm", "runs/missing"],
        ["rm", "runs/other", "runs/missing"],
    ],
)
def test_a_missing_key_is_worded_the_same_by_every_command(
    cli: Callable[..., tuple[int, str, str]], tmp_path: Path, args: list[str]
) -> None:
    fill(tmp_path / "data", "box", {"runs/other": b"1"})
    code, _, err = cli("--local", "data", "--container", "box", *args)
    assert code == 1
    assert one_line_error(err) == MISSING
    assert not (tmp_path / "out.bin").exists()


def test_cp_words_a_key_gone_from_the_source_the_same_way(
    cli: Callable[..., tuple[int, str, str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from asyncblobdict import BlobNotFoundError, MemoryAdapter, addresses

    class Vanishing(MemoryAdapter):
        """Lists runs/missing, which is deleted before it can be read."""

        async def get(self, container: str, key: str) -> tuple[bytes, Any]:
            if key == "runs/missing":
                await self.delete(container, key)
                raise BlobNotFoundError("key not found", container=container, key=key)
            return await super().get(container, key)

    source = Vanishing()
    asyncio.run(_fill_adapter(source, {"runs/missing": b"1", "runs/kept": b"2"}))
    location = addresses.StoreLocation("vanish:box", "box", lambda: source, shared=True)
    monkeypatch.setitem(addresses._SCHEMES, "vanish", lambda target: location)
    code, out, err = cli("cp", "vanish:box", "local:dst/box")
    assert code == 0 and out.startswith("copied 1 key (1 bytes)")
    assert err == f"{MISSING.replace('error', 'warning')} any more: deleted during the copy\n"


def test_storage_failure_exits_3(cli: Callable[..., tuple[int, str, str]], tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("not a folder")
    code, _, err = cli("--local", "a-file", "put", "k", "a-file")
    assert code == 3, err
    one_line_error(err)


def test_debug_shows_the_traceback(cli: Callable[..., tuple[int, str, str]]) -> None:
    code, _, err = cli("--debug", "get", "missing")
    assert code == 1
    assert "Traceback" in err and err.strip().splitlines()[-1].startswith("asyncblobdict: error:")


# ----------------------------------------------------------------------------------- cp


def test_cp_copies_then_skips_unchanged(
    cli: Callable[..., tuple[int, str, str]], tmp_path: Path
) -> None:
    values = {"a": b"1", "dir/b": b'{"x": 1}', "dir/c": os.urandom(5000), "e": b""}
    fill(tmp_path / "src", "box", values)
    code, out, err = cli("cp", "local:src/box", "local:dst/copy")
    assert (code, err) == (0, "")  # no progress bar: stderr is not a terminal
    assert out.startswith("copied 4 keys (5009 bytes") and "skipped 0 unchanged" in out
    for key, data in values.items():
        assert read_local(tmp_path / "dst", "copy", key) == data

    code, out, _ = cli("cp", "local:src/box", "local:dst/copy")
    assert code == 0 and out.startswith("copied 0 keys (0 bytes), skipped 4 unchanged")

    # Same size, other bytes: the MD5 differs, so it is copied again (timestamps ignored).
    fill(tmp_path / "src", "box", {"a": b"2"})
    code, out, _ = cli("cp", "local:src/box", "local:dst/copy", "-v")
    assert code == 0
    assert "copied: a (1 bytes)" in out
    assert "copied 1 key (1 bytes), skipped 3 unchanged" in out
    assert read_local(tmp_path / "dst", "copy", "a") == b"2"


def test_cp_dry_run_writes_nothing(
    cli: Callable[..., tuple[int, str, str]], tmp_path: Path
) -> None:
    fill(tmp_path / "src", "box", {"a": b"1", "b": b"22"})
    fill(tmp_path / "dst", "box", {"a": b"1"})
    code, out, err = cli("cp", "--dry-run", "local:src/box", "local:dst/box")
    assert (code, err) == (0, "")
    assert "would copy: b (2 bytes)" in out
    assert "unchanged: a (1 bytes)" in out
    assert "would copy 1 key (2 bytes), would skip 1 unchanged" in out
    assert not (tmp_path / "dst" / "box" / "b").exists()


def test_cp_prefix_and_jobs(cli: Callable[..., tuple[int, str, str]], tmp_path: Path) -> None:
    values = {f"p/{i:03d}": str(i).encode() for i in range(40)}
    values["q/other"] = b"no"
    fill(tmp_path / "src", "box", values)
    code, out, _ = cli("cp", "local:src/box", "local:dst/box", "--prefix", "p/", "--jobs", "3")
    assert code == 0 and out.startswith("copied 40 keys")
    code, _, err = cli("--local", "dst", "--container", "box", "ls", "q/")
    assert code == 1 and "no key starts with 'q/'" in err
    assert cli("--local", "dst", "--container", "box", "ls")[1].count("\n") == 40


def test_cp_missing_source_is_a_user_error(
    cli: Callable[..., tuple[int, str, str]], tmp_path: Path
) -> None:
    code, _, err = cli("cp", "local:nowhere/box", "local:dst/box")
    assert code == 1
    assert one_line_error(err) == (
        "asyncblobdict: error: no such container 'box' (local:nowhere/box)"
    )
    assert not (tmp_path / "dst").exists()


def test_cp_uses_the_librarys_scheme_registry(
    cli: Callable[..., tuple[int, str, str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A scheme registered with the library is a cp address too: one place knows the schemes.
    from asyncblobdict import addresses, register_scheme

    monkeypatch.setattr(addresses, "_SCHEMES", dict(addresses._SCHEMES))
    name = f"cli{os.urandom(4).hex()}"
    source = addresses.memory_location(name, "box")
    asyncio.run(_fill_adapter(source.make_adapter(), {"a": b"1", "b/c": b"22"}))
    register_scheme("mine", lambda target: addresses.memory_location(name, target))
    code, out, err = cli("cp", "mine:box", "local:dst/box")
    assert (code, err) == (0, "")
    assert out.startswith("copied 2 keys (3 bytes)") and "from memory:" in out
    assert read_local(tmp_path / "dst", "box", "b/c") == b"22"
    code, _, err = cli("cp", "mine:box", "mine:box")
    assert code == 2 and "same store" in err


async def _fill_adapter(adapter: Any, values: dict[str, bytes]) -> None:
    async with AsyncBlobStore(adapter, "box") as store:
        for key, data in values.items():
            await store.set_binary(key, data)


def test_cp_address_env_names_the_variable(cli: Callable[..., tuple[int, str, str]]) -> None:
    fill(Path("src"), "box", {"k": b"v"})
    code, _, err = cli("cp", "local:src/box", "azure:demo?env=NO_SUCH_CONN_VAR")
    assert code == 2
    assert "set NO_SUCH_CONN_VAR" in err and "--to-azure CONNSTR" in err
    code, _, err = cli("cp", "local:src/box", f"azure:demo?env={KEY_CONN}")
    assert code == 2 and "env=" in err and ACCOUNT_KEY not in err


def test_cp_progress_is_quiet_without_a_terminal(tmp_path: Path) -> None:
    fill(tmp_path / "src", "box", {f"k{i}": b"x" * i for i in range(20)})
    result = run_process(
        [PYTHON, "-m", "asyncblobdict", "cp", "local:src/box", "local:dst/box"], tmp_path
    )
    assert result.returncode == 0
    assert result.stderr == b""
    assert result.stdout.decode().startswith("copied 20 keys")


# ----------------------------------------------------------------------------- progress


def test_render_progress() -> None:
    assert render_progress(0, 4, 0, 2048, width=8) == "[--------]  0/4 keys  0 B/2.0 KiB    0%"
    assert render_progress(2, 4, 1024, 2048, width=8) == (
        "[####----]  2/4 keys  1.0 KiB/2.0 KiB   50%"
    )
    assert render_progress(4, 4, 2048, 2048, width=8).startswith("[########]")
    assert render_progress(1, 2, 0, 0, width=4).startswith("[##--]")  # empty values
    assert render_progress(0, 0, 0, 0, width=4).startswith("[####]")


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_draws_only_on_a_terminal() -> None:
    quiet = io.StringIO()
    bar = Progress(quiet, 2, 20)
    bar.advance(10)
    bar.advance(10)
    bar.finish()
    assert quiet.getvalue() == ""

    tty = _Terminal()
    bar = Progress(tty, 2, 20, interval=0)
    bar.advance(10)
    bar.advance(10)
    drawn = tty.getvalue()
    assert drawn.startswith("\r[") and "2/2 keys" in drawn
    bar.finish()
    assert tty.getvalue().endswith("\r")

    off = _Terminal()
    bar = Progress(off, 1, 1, enabled=False)
    bar.advance(1)
    assert off.getvalue() == ""


def test_human_bytes() -> None:
    assert [human_bytes(n) for n in (0, 1023, 1536, 5 * 1024**2)] == [
        "0 B",
        "1023 B",
        "1.5 KiB",
        "5.0 MiB",
    ]


# ------------------------------------------------------------------------------ secrets


def test_redact() -> None:
    conn = "AccountName=acct;AccountKey=S3cr3tKeyS3cr3tKey==;EndpointSuffix=core.windows.net"
    text = f"failed with {conn} and https://x/c/b?sv=1&sig=abc%2Fdef&se=2"
    shown = redact(text)
    assert "S3cr3tKey" not in shown and "abc%2Fdef" not in shown
    assert "AccountName=acct" in shown
    assert redact("key is hunter2hunter2", ["hunter2hunter2"]) == "key is <redacted>"


ACCOUNT_KEY = "S3cr3tAccountKeyNeverShown0123456789=="
SAS_SIG = "S1gNeverShown%2Fabc%3D"
KEY_CONN = f"AccountName=acct;AccountKey={ACCOUNT_KEY};EndpointSuffix=core.windows.net"
SAS_CONN = (
    "BlobEndpoint=https://acct.blob.core.windows.net;"
    f"SharedAccessSignature=sv=2024-01-01&ss=b&sig={SAS_SIG}"
)
# No AccountKey= or sig= to recognise: only its place in argv says it is a secret.
TYPO_CONN = "AccountName=acct;AcountKey=TypoSecretNeverShown42"


@pytest.mark.parametrize(
    "argv",
    [
        ["--from-azure", KEY_CONN, "cp", "local:a/b", "azure:ccc"],
        ["--to-azure", SAS_CONN, "cp", "local:a/b", "azure:ccc"],
        ["--from-azure", TYPO_CONN, "cp", "local:a/b", "azure:ccc"],
        [f"--to-azure={TYPO_CONN}", "cp", "local:a/b", "azure:ccc"],
        ["cp", "--jobs", KEY_CONN, "local:a/b", "azure:ccc"],
        ["cp", "--jobs", SAS_CONN, "local:a/b", "azure:ccc"],
        ["cp", "--prefix", "p", "--jobs", KEY_CONN, "--to-azure", TYPO_CONN, "x", "y"],
        ["ls", "--azure", TYPO_CONN, "--long", "--nope"],
        ["--azure", TYPO_CONN, TYPO_CONN, "ls"],
        ["get", "--container", KEY_CONN],
        ["rm", f"--azure={SAS_CONN}"],
    ],
)
def test_usage_errors_never_show_secrets(
    cli: Callable[..., tuple[int, str, str]], argv: list[str]
) -> None:
    code, out, err = cli(*argv)
    assert code == 2
    assert "error:" in err
    for secret in (ACCOUNT_KEY, SAS_SIG, "TypoSecretNeverShown42"):
        assert secret not in out and secret not in err


def test_usage_error_of_the_console_script_never_shows_the_key(tmp_path: Path) -> None:
    proc = run_process(
        [PYTHON, "-m", "asyncblobdict", "--from-azure", KEY_CONN, "cp", "local:a/b", "azure:c"],
        tmp_path,
        env={"PYTHONPATH": str(REPO)},  # this checkout, whatever is installed
    )
    assert proc.returncode == 2
    assert b"error:" in proc.stderr
    assert ACCOUNT_KEY.encode() not in proc.stdout + proc.stderr


def test_one_redact_function() -> None:
    import asyncblobdict._redact as one
    from asyncblobdict.adapters.azure import client

    assert client.redact is one.redact
    assert not hasattr(output, "redact")


@pytest.mark.parametrize(
    ("text", "hidden"),
    [
        (f"x {KEY_CONN} y", ACCOUNT_KEY),
        (f"AccountKey = {ACCOUNT_KEY}", ACCOUNT_KEY),
        (f"'{SAS_CONN}'", "sv=2024-01-01&ss=b&sig="),
        (f"https://a/c/b?sv=1&sig={SAS_SIG}&se=2", SAS_SIG),
        (f"https://a/c/b?sig={SAS_SIG}", SAS_SIG),
        ("Authorization: SharedKey acct:c2lnbmF0dXJl", "c2lnbmF0dXJl"),
        ("Authorization: Bearer eyJ0eXAiOiJKV1Q.abc", "eyJ0eXAiOiJKV1Q"),
    ],
)
def test_redact_hides_every_kind_of_secret(text: str, hidden: str) -> None:
    shown = redact(text)
    assert hidden not in shown
    assert "<redacted>" in shown


# ------------------------------------------------------------------- entry points, imports


def test_console_script_and_python_m(tmp_path: Path) -> None:
    for command in ([str(SCRIPT)], [PYTHON, "-m", "asyncblobdict"]):
        if not Path(command[0]).exists():
            continue
        result = run_process([*command, "--version"], tmp_path)
        assert result.returncode == 0 and result.stdout.startswith(b"asyncblobdict ")
        result = run_process([*command, "get", "missing"], tmp_path)
        assert result.returncode == 1
        assert result.stderr.decode().strip().startswith("asyncblobdict: error: no such key")
        result = run_process([*command, "ls", "--nope"], tmp_path)
        assert result.returncode == 2


def test_local_commands_do_not_import_aiohttp(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from asyncblobdict.cli import main\n"
        "assert main(['demo']) == 0\n"
        "assert main(['ls', '--long']) == 0\n"
        "assert main(['cp', 'local:local_blob_storage/demo_container', 'local:b/c']) == 0\n"
        "assert 'aiohttp' not in sys.modules, 'aiohttp was imported'\n"
    )
    result = run_process([PYTHON, "-c", code], tmp_path)
    assert result.returncode == 0, result.stderr.decode()


# -------------------------------------------------------------------------------- azure


@pytest.fixture
def azurite_conn_str(azurite: Any) -> str:
    """Connection string of the session's Azurite (skips when it cannot run)."""
    return str(azurite.connection_string)


def _container(tag: str) -> str:
    return f"cli-{tag}-{os.urandom(4).hex()}"


@pytest.mark.azure
def test_azure_commands(
    cli: Callable[..., tuple[int, str, str]],
    tmp_path: Path,
    azurite_conn_str: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    container = _container("cmd")
    monkeypatch.setenv("AZURE_CONN_STR", azurite_conn_str)
    monkeypatch.setenv("AZURE_CONTAINER", container)
    assert cli("--azure", "put", "cfg", "-", "--json", stdin=b'{"a": [1]}')[0] == 0
    data = os.urandom(3000)
    (tmp_path / "b.bin").write_bytes(data)
    assert cli("--azure", "put", "bin/b", "b.bin")[0] == 0
    assert cli("--azure", "ls") == (0, "bin/b\ncfg\n", "")
    code, out, _ = cli("--azure", "ls", "-l")
    rows = [line.split() for line in out.splitlines()]
    assert code == 0 and [row[0] for row in rows] == ["3000", "9"]  # {"a":[1]}
    assert all(row[3].startswith('"') for row in rows)
    assert json.loads(cli("--azure", "get", "cfg")[1]) == {"a": [1]}
    assert cli("--azure", "get", "bin/b", "-o", "copy.bin")[0] == 0
    assert (tmp_path / "copy.bin").read_bytes() == data
    code, _, err = cli("--azure", "get", "nope")
    assert code == 1 and "no such key 'nope'" in one_line_error(err)
    assert cli("--azure", "rm", "cfg")[0] == 0
    # The connection string as a value, the container as an option after the command.
    assert cli("ls", "--azure", azurite_conn_str, "--container", container) == (0, "bin/b\n", "")
    code, _, err = cli("--azure", "--container", "Bad_Name", "ls")
    assert code == 1 and "container" in one_line_error(err)
    code, out, _ = cli("--azure", "demo")
    assert code == 0 and "BlobNotFoundError" in out and f"--container {container}" in out


@pytest.mark.azure
def test_azure_ls_info_and_missing_things(
    cli: Callable[..., tuple[int, str, str]],
    azurite: Any,
    azurite_conn_str: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    container = _container("ls")
    monkeypatch.setenv("AZURE_CONN_STR", azurite_conn_str)
    monkeypatch.setenv("AZURE_CONTAINER", container)
    # Not there yet: every listing says so (one cheap request tells), and creates nothing.
    for args in (["ls"], ["ls", "-l"], ["ls", "p/"]):
        code, out, err = cli("--azure", *args)
        assert (code, out) == (1, ""), err
        line = one_line_error(err)
        assert line.startswith(f"asyncblobdict: error: no such container {container!r} (azure:")
    for args in (["get", "k"], ["info", "k"], ["rm", "k"]):
        code, _, err = cli("--azure", *args)
        assert code == 1
        assert one_line_error(err) == (
            f"asyncblobdict: error: no such key 'k' in container {container!r}"
        )
    code, _, err = cli("cp", f"azure:{container}", "local:dst/box")
    assert code == 1 and f"no such container {container!r}" in one_line_error(err)

    asyncio.run(_write_described(azurite.new_adapter(), container))
    code, out, err = cli("--azure", "ls", "--long")
    assert (code, err) == (0, "")
    rows = [line.split() for line in out.splitlines()]
    assert [(row[0], *row[4:]) for row in rows] == [
        ("7", "application/json", "-", '{"owner":"ops","run":"7"}', "cfg"),
        ("1200", "image/png", "-", "-", "img"),
    ]
    assert all(row[3].startswith('"0x') for row in rows)  # the service's ETags
    code, out, _ = cli("--azure", "info", "cfg")
    assert code == 0
    assert "content type:  application/json\n" in out
    assert out.endswith("metadata:      owner=ops\n               run=7\n")
    assert f"content md5:   {CFG_MD5}\n" in out

    # Emptied, the container still exists: nothing to list is no error, a prefix still is.
    assert cli("--azure", "rm", "cfg", "img")[0] == 0
    assert cli("--azure", "ls") == (0, "", "")
    code, _, err = cli("--azure", "ls", "cfg")
    assert code == 1 and "no key starts with 'cfg'" in one_line_error(err)


@pytest.mark.azure
def test_azure_wrong_key_exits_3_without_showing_it(
    cli: Callable[..., tuple[int, str, str]], tmp_path: Path, azurite_conn_str: str
) -> None:
    fields = dict(part.split("=", 1) for part in azurite_conn_str.strip(";").split(";"))
    wrong_key = "V3JvbmdLZXlXcm9uZ0tleVdyb25nS2V5V3JvbmdLZXk="
    fields["AccountKey"] = wrong_key
    wrong = ";".join(f"{k}={v}" for k, v in fields.items())
    fill(tmp_path / "src", "box", {"k": b"v"})
    for args in (
        ("--azure", wrong, "--container", "demo", "ls"),
        ("--debug", "--azure", wrong, "--container", "demo", "get", "k"),
        ("cp", "--to-azure", wrong, "local:src/box", "azure:demo"),
    ):
        code, out, err = cli(*args)
        assert code == 3, err
        assert wrong_key not in err + out
        assert wrong not in err + out
        if "--debug" not in args:
            assert "403" in one_line_error(err) or "auth" in err.lower()


@pytest.mark.azure
def test_cp_local_to_azurite_and_back(
    cli: Callable[..., tuple[int, str, str]],
    tmp_path: Path,
    azurite_conn_str: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    values = {f"runs/{i}/model.bin": os.urandom(100 + i) for i in range(12)}
    values["runs/config"] = b'{"lr":0.1}'
    values["unicode/é 文件+%&"] = b"u"
    fill(tmp_path / "local_blob_storage", "demo_container", values)
    container = _container("cp")
    src = "local:./local_blob_storage/demo_container"
    monkeypatch.setenv("AZURE_CONN_STR", azurite_conn_str)

    code, out, _ = cli("cp", src, f"azure:{container}", "--dry-run")
    assert code == 0 and "would copy 14 keys" in out
    code, _, err = cli("--azure", "--container", container, "ls")  # the dry run made nothing
    assert code == 1 and f"no such container {container!r}" in one_line_error(err)

    code, out, err = cli("cp", src, f"azure:{container}", "--jobs", "4")
    assert (code, err) == (0, "")
    assert out.startswith("copied 14 keys") and "skipped 0 unchanged" in out
    code, out, _ = cli("cp", src, f"azure:{container}")
    assert out.startswith("copied 0 keys (0 bytes), skipped 14 unchanged")

    fill(tmp_path / "local_blob_storage", "demo_container", {"runs/config": b'{"lr":0.2}'})
    code, out, _ = cli("cp", src, f"azure:{container}")
    assert out.startswith("copied 1 key (10 bytes), skipped 13 unchanged")

    # Back again, with the account given for the source side only.
    monkeypatch.delenv("AZURE_CONN_STR")
    code, out, err = cli(
        "cp", "--from-azure", azurite_conn_str, f"azure:{container}", "local:back/box"
    )
    assert code == 0, err
    assert out.startswith("copied 14 keys")
    values["runs/config"] = b'{"lr":0.2}'
    for key, data in values.items():
        assert read_local(tmp_path / "back", "box", key) == data
    code, out, _ = cli(
        "cp", "--from-azure", azurite_conn_str, f"azure:{container}", "local:back/box"
    )
    assert out.startswith("copied 0 keys (0 bytes), skipped 14 unchanged")


@pytest.mark.azure
def test_cp_reads_the_account_from_the_addresss_env_variable(
    cli: Callable[..., tuple[int, str, str]],
    tmp_path: Path,
    azurite_conn_str: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fill(tmp_path / "src", "box", {"k": b"v"})
    container = _container("env")
    monkeypatch.setenv("BACKUP_CONN", azurite_conn_str)  # AZURE_CONN_STR stays unset
    code, out, err = cli("cp", "local:src/box", f"azure:{container}?env=BACKUP_CONN")
    assert (code, err) == (0, "")
    assert out.startswith("copied 1 key") and f"to azure:{container} (" in out
    assert "?env" not in out
    code, out, _ = cli("cp", f"azure:{container}?env=BACKUP_CONN", "local:back/box")
    assert code == 0 and read_local(tmp_path / "back", "box", "k") == b"v"
    # A wrong key in that variable: refused (exit 3), and never shown.
    wrong_key = "V3JvbmdLZXlXcm9uZ0tleVdyb25nS2V5V3JvbmdLZXk="
    fields = dict(part.split("=", 1) for part in azurite_conn_str.strip(";").split(";"))
    fields["AccountKey"] = wrong_key
    monkeypatch.setenv("BACKUP_CONN", ";".join(f"{k}={v}" for k, v in fields.items()))
    code, out, err = cli("--debug", "cp", "local:src/box", f"azure:{container}?env=BACKUP_CONN")
    assert code == 3 and wrong_key not in out + err


@pytest.mark.azure
def test_cp_to_azurite_as_a_process(tmp_path: Path, azurite_conn_str: str) -> None:
    fill(tmp_path / "local_blob_storage", "demo_container", {"a": b"1", "b": b"2"})
    container = _container("proc")
    args = [
        str(SCRIPT) if SCRIPT.exists() else PYTHON,
        "cp",
        "local:./local_blob_storage/demo_container",
        f"azure:{container}",
    ]
    if not SCRIPT.exists():
        args.insert(1, "-m")
        args.insert(2, "asyncblobdict")
    result = run_process(args, tmp_path, {"AZURE_CONN_STR": azurite_conn_str})
    assert result.returncode == 0, result.stderr
    assert result.stderr == b""  # not a terminal: no progress bar
    assert result.stdout.startswith(b"copied 2 keys")


def test_azure_without_aiohttp_names_the_extra(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "sys.modules['aiohttp'] = None  # as if it were not installed\n"
        "from asyncblobdict.cli import main\n"
        "sys.exit(main(['--azure', 'UseDevelopmentStorage=true', '--container', 'demo', 'ls']))\n"
    )
    result = run_process([PYTHON, "-c", code], tmp_path)
    assert result.returncode == 1
    err = result.stderr.decode()
    assert one_line_error(err) and 'pip install "aiohttp>=3.11,<4"' in err
    assert "asyncblobdict[azure]" not in err  # from PyPI: the unrelated original library


def test_argv_secrets_are_the_values_of_connection_string_options() -> None:
    from asyncblobdict.cli import _argv_secrets

    argv = ["--azure", "--container", "abc", "--to-azure", TYPO_CONN, f"--azure={KEY_CONN}"]
    found = _argv_secrets([*argv, "--", "--from-azure", "After=DoubleDash123"])
    assert TYPO_CONN in found and KEY_CONN in found and ACCOUNT_KEY in found
    assert "--container" not in found and "After=DoubleDash123" not in found


def test_account_label_never_shows_a_password() -> None:
    from asyncblobdict.cli.stores import account_label

    label = account_label(f"BlobEndpoint=https://user:{ACCOUNT_KEY}@acct.example.org/;x=1")
    assert label == "endpoint acct.example.org"


async def test_copy_keeps_content_type_and_metadata() -> None:
    from asyncblobdict import MemoryAdapter
    from asyncblobdict.cli.copy import copy_keys

    src, dst = MemoryAdapter(), MemoryAdapter()
    await src.put("a", "img", b"\x89PNG", content_type="image/png", metadata={"owner": "ops"})
    await src.put("a", "raw", b"plain")
    stats = await copy_keys(src, "a", dst, "b", jobs=2)
    assert (stats.copied, stats.skipped, stats.failed) == (2, 0, [])
    info = await dst.head("b", "img")
    assert info is not None
    assert (info.content_type, dict(info.metadata)) == ("image/png", {"owner": "ops"})
    assert (await dst.get("b", "raw"))[0] == b"plain"
    again = await copy_keys(src, "a", dst, "b")
    assert (again.copied, again.skipped) == (0, 2)


# ------------------------------------------------------------------- cp: failures, streams

SUMMARY = re.compile(
    r"(?P<verb>copied|would copy) (?P<copied>\d+) keys? \((?P<bytes>\d+) bytes(, [\d.]+ \w+)?\), "
    r"(copied|would skip|skipped) (?P<skipped>\d+) unchanged, (?P<failed>\d+) failed, "
    r"from (?P<src>\S+) to (?P<dst>.+)"
)


def summary_of(out: str) -> dict[str, str]:
    """The fields of cp's summary line, which must be the last line of stdout."""
    match = SUMMARY.fullmatch(out.splitlines()[-1])
    assert match is not None, out
    return match.groupdict()


class FlakyAdapter(MemoryAdapter):
    """A memory adapter (streaming) that cannot read the key ``bad``."""

    async def get(self, container: str, key: str) -> tuple[bytes, Any]:
        if key.endswith("bad"):
            raise StorageError("disk on fire", container=container, key=key)
        return await super().get(container, key)

    async def open_read(
        self, container: str, key: str, *, offset: int = 0, length: int | None = None
    ) -> tuple[Any, Any]:
        if key.endswith("bad"):
            raise StorageError("disk on fire", container=container, key=key)
        return await super().open_read(container, key, offset=offset, length=length)


@pytest.fixture
def flaky_scheme(monkeypatch: pytest.MonkeyPatch) -> FlakyAdapter:
    """``flaky:box`` addresses: keys a, b-bad, c (in that order); b-bad cannot be read."""
    from asyncblobdict import addresses, register_scheme

    monkeypatch.setattr(addresses, "_SCHEMES", dict(addresses._SCHEMES))
    source = FlakyAdapter()
    asyncio.run(_fill_adapter(source, {"a": b"1", "b-bad": b"22", "c": b"333"}))
    location = addresses.StoreLocation("flaky:box", "box", lambda: source, shared=True)
    register_scheme("flaky", lambda target: location)
    return source


def _destination(kind: str, request: pytest.FixtureRequest, tag: str) -> tuple[str, Any]:
    """A cp destination address on ``kind`` and a function reading a key back from it."""
    if kind == "local":
        path = Path("dst", "box")
        return (
            "local:dst/box",
            lambda key: (path / key).read_bytes() if (path / key).exists() else None,
        )
    conn = str(request.getfixturevalue("azurite").connection_string)
    request.getfixturevalue("monkeypatch").setenv("AZURE_CONN_STR", conn)
    container = _container(tag)

    def read(key: str) -> bytes | None:
        async def go() -> bytes | None:
            async with AsyncBlobStore(
                request.getfixturevalue("azurite").new_adapter(), container
            ) as s:
                try:
                    return await s.get_binary(key)
                except BlobNotFoundError:
                    return None

        return asyncio.run(go())

    return f"azure:{container}", read


DESTINATIONS = ["local", pytest.param("azure", marks=pytest.mark.azure)]


@pytest.mark.parametrize("kind", DESTINATIONS)
def test_cp_goes_on_past_a_failing_key_and_exits_3(
    cli: Callable[..., tuple[int, str, str]],
    flaky_scheme: FlakyAdapter,
    request: pytest.FixtureRequest,
    kind: str,
) -> None:
    dst, read = _destination(kind, request, "flaky")
    code, out, err = cli("cp", "flaky:box", dst, "--jobs", "1")
    assert code == 3, err
    fields = summary_of(out)
    assert (fields["copied"], fields["skipped"], fields["failed"]) == ("2", "0", "1")
    assert err == "asyncblobdict: error: cannot copy 'b-bad': disk on fire\n"
    assert (read("a"), read("c")) == (b"1", b"333")
    # Again: the two copied are unchanged, the failing one fails again.
    code, out, err = cli("cp", "flaky:box", dst)
    assert code == 3 and "cannot copy 'b-bad'" in err
    fields = summary_of(out)
    assert (fields["copied"], fields["skipped"], fields["failed"]) == ("0", "2", "1")


@pytest.mark.parametrize("kind", DESTINATIONS)
def test_cp_fail_fast_stops_at_the_first_failure(
    cli: Callable[..., tuple[int, str, str]],
    flaky_scheme: FlakyAdapter,
    request: pytest.FixtureRequest,
    kind: str,
) -> None:
    dst, read = _destination(kind, request, "fast")
    code, out, err = cli("cp", "flaky:box", dst, "--jobs", "1", "--fail-fast")
    assert code == 3, err
    fields = summary_of(out)
    assert (fields["copied"], fields["skipped"], fields["failed"]) == ("1", "0", "1")
    assert err.splitlines() == [
        "asyncblobdict: error: cannot copy 'b-bad': disk on fire",
        "asyncblobdict: error: stopped at the first failure (--fail-fast); other keys not copied",
    ]
    assert read("a") == b"1"
    assert read("c") is None  # after the failing key: never tried


def test_cp_summary_line(cli: Callable[..., tuple[int, str, str]], tmp_path: Path) -> None:
    fill(tmp_path / "src", "box", {"a": b"1", "big": b"x" * 2048})
    fill(tmp_path / "dst", "box", {"a": b"1"})
    code, out, err = cli("cp", "local:src/box", "local:dst/box")
    assert (code, err) == (0, "")
    assert out == (
        "copied 1 key (2048 bytes, 2.0 KiB), skipped 1 unchanged, 0 failed, "
        "from local:src/box to local:dst/box\n"
    )
    code, out, _ = cli("cp", "local:src/box", "local:dst/box", "--dry-run")
    assert out.endswith(
        "would copy 0 keys (0 bytes), would skip 2 unchanged, 0 failed, "
        "from local:src/box to local:dst/box\n"
    )


def test_cp_prints_the_summary_when_storage_fails_mid_copy(
    cli: Callable[..., tuple[int, str, str]], flaky_scheme: FlakyAdapter, tmp_path: Path
) -> None:
    # An authentication failure stops the whole copy (it will not get better per key);
    # what was copied before it is still summed up.
    async def refused(*args: Any, **kwargs: Any) -> Any:
        raise AuthenticationError("403 AuthorizationFailure")

    original = flaky_scheme.open_read

    async def open_read(container: str, key: str, **kwargs: Any) -> Any:
        if key == "c":
            return await refused()
        return await original(container, key, **kwargs)

    flaky_scheme.open_read = open_read  # type: ignore[method-assign]
    code, out, err = cli("cp", "flaky:box", "local:dst/box", "--jobs", "1")
    assert code == 3
    fields = summary_of(out)
    assert (fields["copied"], fields["failed"]) == ("1", "1")
    assert err.splitlines()[-1] == "asyncblobdict: error: 403 AuthorizationFailure"


class PlainAdapter:
    """An adapter without streaming (only the required methods), over a MemoryAdapter."""

    def __init__(self, inner: MemoryAdapter) -> None:
        self.inner = inner
        self.validate_container = inner.validate_container
        self.get, self.head, self.put = inner.get, inner.head, inner.put
        self.delete, self.list, self.list_names = inner.delete, inner.list, inner.list_names

    async def close(self) -> None:
        await self.inner.close()


async def test_cp_falls_back_to_get_and_put_without_streaming(tmp_path: Path) -> None:
    from asyncblobdict.adapters.base import StreamingAdapter
    from asyncblobdict.cli.copy import copy_keys

    src, dst = PlainAdapter(MemoryAdapter()), PlainAdapter(MemoryAdapter())
    assert not isinstance(src, StreamingAdapter)
    big = os.urandom(3 * 1024 * 1024 + 5)
    await src.put("a", "big", big, content_type="application/x-big", metadata={"k": "v"})
    stats = await copy_keys(src, "a", dst, "b")
    assert (stats.copied, stats.copied_bytes, stats.failed) == (1, len(big), [])
    data, info = await dst.get("b", "big")
    assert data == big
    assert (info.content_type, dict(info.metadata)) == ("application/x-big", {"k": "v"})
    # Streaming source into the plain destination, and back: the same bytes.
    local = LocalFileAdapter(tmp_path / "s")
    stats = await copy_keys(dst, "b", local, "c")
    assert stats.copied == 1 and (await local.get("c", "big"))[0] == big
    again = await copy_keys(local, "c", src, "a")
    assert (again.copied, again.skipped) == (0, 1)  # MD5 hashed from the stream


@pytest.mark.parametrize("kind", DESTINATIONS)
def test_cp_keeps_content_type_and_metadata_on_disk_and_azure(
    cli: Callable[..., tuple[int, str, str]],
    tmp_path: Path,
    request: pytest.FixtureRequest,
    kind: str,
) -> None:
    asyncio.run(_write_described(LocalFileAdapter(tmp_path / "src"), "box"))
    dst, _ = _destination(kind, request, "meta")
    code, out, err = cli("cp", "local:src/box", dst)
    assert (code, err) == (0, "")
    code, out, err = cli("cp", dst, "local:back/box")  # azure: the account of AZURE_CONN_STR
    assert code == 0, err
    code, out, _ = cli("--local", "back", "--container", "box", "info", "cfg")
    assert "content type:  application/json\n" in out
    assert out.endswith("metadata:      owner=ops\n               run=7\n")


# ------------------------------------------------------------------------- bounded memory

MiB = 1024 * 1024


# benchmarks/rss_probe.py runs the command line in a fresh process and reports its peak. The
# baseline is taken after the imports a command makes (aiohttp is ~13 MiB): the bound is
# about the bytes moved, not the code loaded.
def peak_growth(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> int:
    """Run the command line in a fresh process; return its peak RSS growth in bytes."""
    probe = [PYTHON, "-m", "benchmarks.rss_probe", "--preload", "asyncblobdict.adapters.azure"]
    result = run_process([*probe, *args], cwd, env)
    assert result.returncode == 0, result.stderr.decode()
    found = json.loads(result.stdout.decode().splitlines()[-1])
    assert found["code"] == 0, result.stderr.decode()
    return int(found["peak"]) - int(found["before"])


async def _write_big(adapter: Any, container: str, key: str, size: int, seed: int) -> None:
    block = hashlib.sha256(str(seed).encode()).digest() * (MiB // 32)

    async def chunks() -> Any:
        for i in range(size // MiB):
            yield block[i % 32 :] + block[: i % 32]

    await adapter.put_stream(container, key, chunks(), size=size)


needs_proc = pytest.mark.skipif(
    not Path("/proc/self/clear_refs").exists(), reason="measures RSS through Linux's /proc"
)


@needs_proc
@pytest.mark.parametrize("dst", ["local", pytest.param("azure", marks=pytest.mark.azure)])
def test_cp_memory_is_bounded_by_jobs_times_block(
    tmp_path: Path, request: pytest.FixtureRequest, dst: str
) -> None:
    values, size, jobs = 4, 64 * MiB, 4
    adapter = LocalFileAdapter(tmp_path / "src")
    for i in range(values):
        asyncio.run(_write_big(adapter, "box", f"v{i}", size, i))
    env = None
    if dst == "local":
        target = "local:dst/box"
    else:
        target = f"azure:{_container('cp')}"
        env = {"AZURE_CONN_STR": str(request.getfixturevalue("azurite").connection_string)}
    growth = peak_growth(["cp", "local:src/box", target, "--jobs", str(jobs)], tmp_path, env)
    # The local adapter reads 1 MiB chunks; Azure stages 8 MiB blocks, and cp splits its
    # 4 blocks in flight among the 4 jobs. Allow jobs x 8 MiB + 32 MiB: 64 MiB here, a
    # quarter of the 256 MiB copied, while holding values would take >= 64 MiB each (and
    # 4 blocks in flight per job 128 MiB).
    bound = jobs * 8 * MiB + 32 * MiB
    assert growth < bound, f"peak RSS grew {growth / MiB:.1f} MiB (bound {bound / MiB} MiB)"
    if dst == "local":
        for i in range(values):
            assert (tmp_path / "dst" / "box" / f"v{i}").stat().st_size == size
        copied = (tmp_path / "dst/box/v3").read_bytes()
    else:
        copied = _download(request.getfixturevalue("azurite"), target[len("azure:") :], "v3")
    assert copied == (tmp_path / "src/box/v3").read_bytes()


def _download(azurite: Any, container: str, key: str) -> bytes:
    async def get() -> bytes:
        adapter = azurite.new_adapter()
        try:
            data, _ = await adapter.get(container, key)
            return bytes(data)
        finally:
            await adapter.close()

    return asyncio.run(get())


@needs_proc
@pytest.mark.parametrize(
    ("kind", "command"),
    [
        ("local", "put"),
        ("local", "get"),
        pytest.param("azure", "put", marks=pytest.mark.azure),
        pytest.param("azure", "get", marks=pytest.mark.azure),
    ],
)
def test_put_and_get_to_a_file_stream(
    tmp_path: Path, request: pytest.FixtureRequest, kind: str, command: str
) -> None:
    # Azure with its defaults holds up to 4 blocks or ranges of 8 MiB in flight, and one
    # block being filled: 256 MiB is large enough to tell that from holding the value.
    size = 128 * MiB if kind == "local" else 256 * MiB
    block = os.urandom(MiB)
    with open(tmp_path / "in.bin", "wb") as f:
        for i in range(size // MiB):
            f.write(block[i:] + block[:i])
    if kind == "local":
        store, env = ["--local", "data"], None
    else:
        conn = str(request.getfixturevalue("azurite").connection_string)
        store, env = ["--azure", "--container", _container("big")], {"AZURE_CONN_STR": conn}
    up = peak_growth([*store, "put", "big", "in.bin"], tmp_path, env)
    down = peak_growth([*store, "get", "big", "-o", "out.bin"], tmp_path, env)
    assert (tmp_path / "out.bin").stat().st_size == size
    with open(tmp_path / "in.bin", "rb") as a, open(tmp_path / "out.bin", "rb") as b:
        while chunk := a.read(8 * MiB):
            assert b.read(8 * MiB) == chunk
    # Holding the value would take >= its size; streaming holds a few chunks (local: 4 MiB
    # reads, 1 MiB preads; Azure: 5 blocks of 8 MiB up, 4 ranges of 8 MiB down).
    growth = up if command == "put" else down
    assert growth / size < 0.25, f"{command}: peak RSS grew {growth / MiB:.1f} MiB"


def test_get_o_of_a_missing_key_leaves_no_file(
    cli: Callable[..., tuple[int, str, str]], tmp_path: Path
) -> None:
    fill(tmp_path / "data", "box", {"k": b"v"})
    (tmp_path / "out.bin").write_bytes(b"old")
    code, _, err = cli("--local", "data", "--container", "box", "get", "nope", "-o", "out.bin")
    assert code == 1 and "no such key 'nope'" in one_line_error(err)
    assert (tmp_path / "out.bin").read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "out.bin"]  # no temp file


def test_get_streams_a_large_value_to_stdout(tmp_path: Path) -> None:
    from asyncblobdict.cli.commands import PRINT_LIMIT

    data = os.urandom(PRINT_LIMIT + 12345)
    fill(tmp_path / "data", "box", {"big": data, "cfg": b'{"a": 1}'})
    result = run_process(
        [PYTHON, "-m", "asyncblobdict", "--local", "data", "--container", "box", "get", "big"],
        tmp_path,
    )
    assert result.returncode == 0 and result.stdout == data
    result = run_process(
        [PYTHON, "-m", "asyncblobdict", "--local", "data", "--container", "box", "get", "cfg"],
        tmp_path,
    )
    assert json.loads(result.stdout) == {"a": 1} and b"\n  " in result.stdout  # pretty


def test_put_from_a_pipe_streams_without_a_size(tmp_path: Path) -> None:
    data = os.urandom(9 * MiB + 7)
    result = run_process(
        [PYTHON, "-m", "asyncblobdict", "--local", "data", "put", "piped", "-"],
        tmp_path,
        stdin=data,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode() == f"put: piped ({len(data)} bytes)\n"
    assert read_local(tmp_path / "data", "demo_container", "piped") == data


# ------------------------------------------------------------------------------- expiry


async def _plant_expired(adapter: Any, container: str) -> None:
    """A value whose expiry (1970) has long passed, as another writer's clock put it."""
    await adapter.put(container, "old", b"1", metadata={"abdexpires": "1.000", "who": "x"})
    await adapter.close()


def test_put_ttl_and_expiry_in_info_ls_get_and_sweep(
    cli: Callable[..., tuple[int, str, str]], tmp_path: Path
) -> None:
    root = tmp_path / "local_blob_storage"
    (tmp_path / "v.txt").write_bytes(b"hello")
    before = datetime.now(timezone.utc)
    assert cli("put", "k", "v.txt", "--ttl", "1d") == (0, "put: k (5 bytes)\n", "")
    assert cli("put", "j", "v.txt", "--json", "--ttl", "90")[0] == 1  # not JSON: not stored
    assert cli("put", "forever", "v.txt")[0] == 0
    asyncio.run(_plant_expired(LocalFileAdapter(root), "demo_container"))

    code, out, err = cli("info", "k")
    assert (code, err) == (0, "")
    line = next(line for line in out.splitlines() if line.startswith("expires:"))
    shown = datetime.strptime(line.split(None, 1)[1], "%Y-%m-%d %H:%M:%S UTC")
    expected = before + timedelta(days=1)
    assert abs(shown.replace(tzinfo=timezone.utc) - expected) < timedelta(minutes=5)
    assert "abdexpires" not in out
    assert "expires:       -" in cli("info", "forever")[1]

    assert cli("ls") == (0, "forever\nk\n", "")  # "old" has expired
    code, out, _ = cli("ls", "-l")
    rows = [line.split() for line in out.splitlines()]
    assert [row[-1] for row in rows] == ["forever", "k"]
    assert rows[0][5] == "-"
    assert rows[1][5] == shown.strftime("%Y-%m-%dT%H:%M:%SZ")
    code, _, err = cli("get", "old")
    assert code == 1 and one_line_error(err).endswith(
        "no such key 'old' in container 'demo_container'"
    )
    code, _, err = cli("info", "old")
    assert code == 1
    code, _, err = cli("ls", "ol")
    assert code == 1 and "no key starts with 'ol'" in one_line_error(err)

    assert cli("sweep") == (0, "sweep: 1 expired value deleted\n", "")
    assert cli("sweep", "k") == (0, "sweep: 0 expired values deleted\n", "")
    assert sorted(p.name for p in (root / "demo_container").iterdir()) == ["forever", "k"]


@pytest.mark.parametrize("bad", ["0", "-5", "soon", "inf", "nan", "1x", "", "h"])
def test_put_refuses_a_bad_ttl(cli: Callable[..., tuple[int, str, str]], bad: str) -> None:
    Path("v.txt").write_bytes(b"x")
    code, out, err = cli("put", "k", "v.txt", f"--ttl={bad}")
    assert (code, out) == (2, "")
    assert "argument --ttl" in err
    assert not Path("local_blob_storage").exists()


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90", 90), ("1.5h", 5400), ("30m", 1800), ("2D", 172800), ("0.25s", 0.25)],
)
def test_ttl_durations(text: str, seconds: float) -> None:
    assert _duration(text) == seconds


@pytest.mark.azure
def test_azure_put_ttl_ls_and_sweep(
    cli: Callable[..., tuple[int, str, str]],
    azurite: Any,
    azurite_conn_str: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    container = _container("ttl")
    monkeypatch.setenv("AZURE_CONN_STR", azurite_conn_str)
    monkeypatch.setenv("AZURE_CONTAINER", container)
    assert cli("--azure", "put", "k", "-", "--ttl", "12h", stdin=b"v")[0] == 0
    asyncio.run(_plant_expired(azurite.new_adapter(), container))
    assert cli("--azure", "ls") == (0, "k\n", "")
    code, out, _ = cli("--azure", "ls", "-l")
    assert code == 0 and out.split()[5].endswith("Z")
    assert cli("--azure", "info", "old")[0] == 1
    assert cli("--azure", "sweep") == (0, "sweep: 1 expired value deleted\n", "")
