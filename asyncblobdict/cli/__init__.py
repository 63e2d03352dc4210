"""The ``asyncblobdict`` command (also ``python -m asyncblobdict``): standard library only.

Azure (and so aiohttp) is imported only when a command uses an Azure store.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from .._redact import redact
from ..errors import (
    AsyncBlobDictError,
    BlobNotFoundError,
    ConcurrencyError,
    InvalidKeyError,
    SerializationError,
    StorageError,
)
from .commands import cmd_demo, cmd_get, cmd_info, cmd_ls, cmd_put, cmd_rm, cmd_sweep
from .copy import CopyStats, copy_keys
from .output import echo, err, human_bytes, no_such_container, no_such_key
from .progress import Progress
from .stores import (
    AUTH_CHOICES,
    AZURE_CONN_ENV,
    StoreSpec,
    UsageError,
    UserError,
    container_exists,
    open_adapter,
    parse_address,
    secrets_of,
    store_from_options,
)

__all__ = ["EXIT_OK", "EXIT_STORAGE", "EXIT_USAGE", "EXIT_USER", "build_parser", "main"]

EXIT_OK = 0
EXIT_USER = 1
EXIT_USAGE = 2
EXIT_STORAGE = 3

PROG = "asyncblobdict"
_CONN_OPTIONS = ("--azure", "--from-azure", "--to-azure")

_EPILOG = f"""\
stores:
  default            local folder ./local_blob_storage, container demo_container
  --local DIR        a local folder (the container is a sub-folder)
  --azure [CONNSTR]  an Azure account; alone it reads ${AZURE_CONN_ENV};
                     'UseDevelopmentStorage=true' is Azurite on 127.0.0.1:10000
  --account-url URL  an Azure account signed in with Microsoft Entra ID, e.g.
                     https://myacct.blob.core.windows.net; --auth default (the
                     environment, workload or managed identity, then az), cli (az login)
                     or managed-identity
cp addresses (as asyncblobdict.open_store reads them):
  local:DIR/CONTAINER   e.g. local:./local_blob_storage/demo_container
  azure:CONTAINER       account from --azure, --from-azure/--to-azure or ${AZURE_CONN_ENV}
  azure:CONTAINER?env=VARIABLE   account from $VARIABLE
exit codes:
  0 ok, 1 cannot be done (missing key, container or prefix; bad key; bad JSON),
  2 usage (bad option, address or connection string), 3 storage or auth failure
"""


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _duration(text: str) -> float:
    """``--ttl``: seconds, or a number with a unit: ``90``, ``1.5h``, ``30m``, ``7d``."""
    unit = _UNITS.get(text[-1:].lower(), 0)
    number = text[:-1] if unit else text
    try:
        value = float(number) * (unit or 1)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a duration: {text!r} (seconds, or a number ending in s, m, h or d)"
        ) from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a duration > 0, not {text!r}")
    return value


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors never show a secret.

    argparse quotes the offending value, and a misplaced option (``--from-azure CONNSTR cp``,
    ``cp --jobs CONNSTR``) makes that value a connection string. Subparsers are made with
    this class too, and get the same ``secrets``.
    """

    def __init__(self, *args: Any, secrets: Sequence[str] = (), **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.secrets = list(secrets)

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {redact(message, self.secrets)}\n")


def build_parser(secrets: Sequence[str] = ()) -> argparse.ArgumentParser:
    """The argument parser; store options work before or after the command.

    Usage errors hide ``secrets`` (and anything shaped like a key or signature).
    """
    common = _Parser(add_help=False, argument_default=argparse.SUPPRESS)
    group = common.add_argument_group("store options")
    group.add_argument("--local", metavar="DIR", help="local folder (default ./local_blob_storage)")
    group.add_argument(
        "--azure",
        metavar="CONNSTR",
        help=f"Azure connection string; alone, ${AZURE_CONN_ENV}",
    )
    group.add_argument(
        "--account-url", metavar="URL", help="Azure blob endpoint, signed in with Entra ID"
    )
    group.add_argument("--auth", choices=AUTH_CHOICES, help="how --account-url signs in")
    group.add_argument(
        "--container",
        metavar="NAME",
        help="container (default demo_container locally, $AZURE_CONTAINER on Azure)",
    )
    group.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")

    parser = _Parser(
        prog=PROG,
        description="Look at and move the data of asyncblobdict stores (local folders, Azure).",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[common],
        allow_abbrev=False,
        secrets=secrets,
    )
    from .. import __version__

    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        return sub.add_parser(
            name,
            help=help_text,
            description=help_text,
            parents=[common],
            allow_abbrev=False,
            secrets=secrets,
        )

    command("demo", "run the README quick start on the store (default ./local_blob_storage)")

    ls = command("ls", "list keys, sorted")
    ls.add_argument("prefix", nargs="?", default="", metavar="PREFIX")
    ls.add_argument(
        "-l",
        "--long",
        action="store_true",
        help="size, last modified, ETag, content type, expiry, metadata, key",
    )

    info = command(
        "info", "size, last modified, expiry, ETag, content type, MD5 and metadata of KEY"
    )
    info.add_argument("key", metavar="KEY")

    get = command("get", "print a value: JSON pretty-printed, other bytes as they are")
    get.add_argument("key", metavar="KEY")
    get.add_argument("-o", "--output", metavar="FILE", help="write the stored bytes to FILE")
    get.add_argument("--raw", action="store_true", help="write the stored bytes, even if JSON")

    put = command("put", "store the bytes of FILE (or - for stdin) under KEY")
    put.add_argument("key", metavar="KEY")
    put.add_argument("file", metavar="FILE|-")
    put.add_argument("--json", action="store_true", help="check it is JSON and store it as JSON")
    put.add_argument(
        "--ttl",
        type=_duration,
        metavar="DURATION",
        help="expire the value after DURATION (seconds, or 30m, 12h, 7d)",
    )

    sweep = command("sweep", "delete the expired values (of keys starting with PREFIX)")
    sweep.add_argument("prefix", nargs="?", default="", metavar="PREFIX")

    rm = command("rm", "delete keys")
    rm.add_argument("keys", nargs="+", metavar="KEY")
    rm.add_argument("-f", "--force", action="store_true", help="no error for missing keys")

    cp = command("cp", "copy all keys (or a prefix) from one store to another")
    cp.add_argument("src", metavar="SRC", help="local:DIR/CONTAINER or azure:CONTAINER[?env=VAR]")
    cp.add_argument("dst", metavar="DST", help="local:DIR/CONTAINER or azure:CONTAINER[?env=VAR]")
    cp.add_argument("--prefix", default="", help="only keys starting with PREFIX")
    cp.add_argument(
        "-j", "--jobs", type=_positive_int, default=8, metavar="N", help="keys in flight (8)"
    )
    cp.add_argument("-n", "--dry-run", action="store_true", help="say what would be copied")
    cp.add_argument(
        "--fail-fast",
        action="store_true",
        help="stop at the first key that cannot be copied (default: copy the others)",
    )
    cp.add_argument("-v", "--verbose", action="store_true", help="name each copied key")
    cp.add_argument("--no-progress", action="store_true", help="no progress bar")
    cp.add_argument("--from-azure", metavar="CONNSTR", help="account of an azure: source")
    cp.add_argument("--to-azure", metavar="CONNSTR", help="account of an azure: destination")
    return parser


_COMMANDS = ("demo", "ls", "info", "get", "put", "rm", "sweep", "cp")
_VALUE_OPTIONS = ("--local", "--container", "--account-url", "--auth")  # before the command


def _conn_option_values(argv: Sequence[str]) -> dict[int, str | None]:
    """Where ``--azure``, ``--from-azure`` or ``--to-azure`` appear without ``=VALUE``, and
    the value each takes from the next token (None: the option stands alone).

    The next token is the value when it contains '=' (every connection string does), or
    when it can be nothing else: before the command, a word that is no command; in ``cp``, a
    word that is no store address (no ':'). So ``--azure garbage ls`` gives --azure the
    value ``garbage``, refused later as no connection string (and never shown), rather
    than a command argparse would quote. Otherwise (an option, a command, the command's
    own argument, nothing) the option stands alone and reads $AZURE_CONN_STR.
    """
    found: dict[int, str | None] = {}
    command: str | None = None
    skip = False
    for i, token in enumerate(argv):
        if token == "--":
            break
        if skip:
            skip = False
            continue
        if token in _CONN_OPTIONS:
            nxt = argv[i + 1] if i + 1 < len(argv) else "-"
            takes = not nxt.startswith("-") and ("=" in nxt or not _has_other_use(nxt, command))
            found[i] = nxt if takes else None
            skip = takes
        elif token in _VALUE_OPTIONS:
            skip = True
        elif command is None and token in _COMMANDS:
            command = token
    return found


def _has_other_use(word: str, command: str | None) -> bool:
    """Whether ``word`` (no '=' in it) may be a command, or an argument of ``command``."""
    if command is None:
        return word in _COMMANDS
    return command != "cp" or ":" in word  # cp's arguments are store addresses


def _argv_secrets(argv: Sequence[str]) -> list[str]:
    """The values given to options that take a connection string, and their secret parts.

    Read from the raw argv, so a value argparse later takes for something else (a command,
    a number) is still known to be a secret.
    """
    found: list[str] = []
    values = _conn_option_values(argv)
    for i, token in enumerate(argv):
        if token == "--":
            break
        name, sep, value = token.partition("=")
        if sep and name in _CONN_OPTIONS:
            found += secrets_of(value)
        elif (given := values.get(i)) is not None:
            found += secrets_of(given)
    return found


def _expand_bare_conn_options(argv: Sequence[str]) -> list[str]:
    """Let ``--azure`` stand alone (as ``--azure=``) where it takes no value."""
    values = _conn_option_values(argv)
    return [
        token + "=" if i in values and values[i] is None else token for i, token in enumerate(argv)
    ]


def _opt(args: argparse.Namespace, name: str) -> Any:
    return getattr(args, name, None)


async def _run(args: argparse.Namespace) -> int:
    command: str = args.command
    if command == "cp":
        return await _run_cp(args)
    spec = store_from_options(
        _opt(args, "local"),
        _opt(args, "azure"),
        _opt(args, "container"),
        account_url=_opt(args, "account_url"),
        auth=_opt(args, "auth"),
    )
    if command == "demo":
        return await cmd_demo(spec)
    if command == "ls":
        return await cmd_ls(spec, args.prefix, args.long)
    if command == "info":
        return await cmd_info(spec, args.key)
    if command == "get":
        return await cmd_get(spec, args.key, args.output, args.raw)
    if command == "put":
        return await cmd_put(spec, args.key, args.file, args.json, args.ttl)
    if command == "sweep":
        return await cmd_sweep(spec, args.prefix)
    if command == "rm":
        return await cmd_rm(spec, args.keys, args.force)
    raise UsageError(f"unknown command {command!r}")  # pragma: no cover - argparse checks


def _cp_specs(args: argparse.Namespace) -> tuple[StoreSpec, StoreSpec]:
    if _opt(args, "local") is not None or _opt(args, "container") is not None:
        raise UsageError(
            "cp takes store addresses (local:DIR/CONTAINER, azure:CONTAINER); "
            "--local and --container do not apply"
        )
    azure = _opt(args, "azure")
    signin = {"account_url": _opt(args, "account_url"), "auth": _opt(args, "auth")}
    src = parse_address(args.src, args.from_azure or azure, "--from-azure", **signin)
    dst = parse_address(args.dst, args.to_azure or azure, "--to-azure", **signin)
    # An address's ?env=VARIABLE may have brought a connection string the options did not.
    args.location_secrets = [*src.secrets, *dst.secrets]
    if src.identity() == dst.identity():
        raise UsageError("source and destination are the same store")
    return src, dst


async def _run_cp(args: argparse.Namespace) -> int:
    src, dst = _cp_specs(args)
    verbose: bool = args.verbose or args.dry_run

    def report(action: str, key: str, size: int) -> None:
        if not verbose:
            return
        if args.dry_run:
            verb = "would copy" if action == "copy" else "unchanged"
        else:
            verb = "copied" if action == "copy" else "unchanged"
        echo(f"{verb}: {key} ({size} bytes)")

    def progress(total: int, total_bytes: int) -> Progress:
        return Progress(sys.stderr, total, total_bytes, enabled=not args.no_progress)

    stats = CopyStats()
    try:
        await _copy(args, src, dst, stats, progress, report)
    finally:
        if stats.listed is not None:  # the copy began: say what it did, even on error
            _report_cp(args, stats, src, dst)
    return EXIT_STORAGE if stats.failed else EXIT_OK


async def _copy(
    args: argparse.Namespace,
    src: StoreSpec,
    dst: StoreSpec,
    stats: CopyStats,
    progress: Callable[[int, int], Progress],
    report: Callable[[str, str, int], None],
) -> None:
    src_adapter = open_adapter(src)
    try:
        check = getattr(src_adapter, "validate_container", None)
        if callable(check):
            check(src.container)
        if not await container_exists(src_adapter, src.container):
            raise UserError(no_such_container(src.container, src.describe()))
        dst_adapter = open_adapter(dst)
        try:
            for spec, adapter in ((src, src_adapter), (dst, dst_adapter)):
                check = getattr(adapter, "validate_container", None)
                if callable(check):
                    check(spec.container)
                if not spec.location.shared:
                    _share_concurrency(adapter, args.jobs)
            await copy_keys(
                src_adapter,
                src.container,
                dst_adapter,
                dst.container,
                prefix=args.prefix,
                jobs=args.jobs,
                dry_run=args.dry_run,
                fail_fast=args.fail_fast,
                progress=progress,
                report=report,
                stats=stats,
            )
        finally:
            if not dst.location.shared:
                await dst_adapter.close()
    finally:
        if not src.location.shared:
            await src_adapter.close()


def _share_concurrency(adapter: object, jobs: int) -> None:
    """Split an adapter's per-value parallelism (Azure: blocks or ranges in flight, each
    held in memory) among the ``jobs`` keys copied at once, so that the copy holds about
    ``max(jobs, max_concurrency)`` blocks, not ``jobs`` times ``max_concurrency``."""
    current = getattr(adapter, "max_concurrency", None)
    if isinstance(current, int) and current > 1:
        adapter.max_concurrency = max(1, current // jobs)  # type: ignore[attr-defined]


def _report_cp(args: argparse.Namespace, stats: CopyStats, src: StoreSpec, dst: StoreSpec) -> None:
    """The summary line (stdout), then warnings and the failed keys (stderr), secrets hidden."""
    secrets = _secrets(args)
    echo(redact(_summary(stats, src, dst, args.dry_run), secrets))
    sys.stdout.flush()  # the summary first, then what went wrong (for 2>&1)
    for key in stats.vanished:
        err(f"{PROG}: warning: {no_such_key(key, src.container)} any more: deleted during the copy")
    for key, reason in stats.failed:
        err(redact(f"{PROG}: error: cannot copy {key!r}: {reason}", secrets))
    if stats.stopped:
        err(f"{PROG}: error: stopped at the first failure (--fail-fast); other keys not copied")


def _summary(stats: CopyStats, src: StoreSpec, dst: StoreSpec, dry_run: bool) -> str:
    verb, skip = ("would copy", "would skip") if dry_run else ("copied", "skipped")
    return (
        f"{verb} {stats.copied} {'key' if stats.copied == 1 else 'keys'} "
        f"({_bytes_text(stats.copied_bytes)}), {skip} {stats.skipped} unchanged, "
        f"{len(stats.failed)} failed, from {src.describe()} to {dst.describe()}"
    )


def _bytes_text(n: int) -> str:
    return f"{n} bytes" if n < 1024 else f"{n} bytes, {human_bytes(n)}"


def exit_code_for(exc: BaseException) -> int:
    """The exit code of an error: 1 for the user's request, 3 for storage and the rest."""
    if isinstance(exc, UsageError):
        return EXIT_USAGE
    if isinstance(
        exc,
        (UserError, BlobNotFoundError, InvalidKeyError, SerializationError, ConcurrencyError),
    ):
        return EXIT_USER
    if isinstance(exc, StorageError):
        return EXIT_STORAGE
    if isinstance(exc, (AsyncBlobDictError, ValueError)):
        return EXIT_USER  # e.g. a malformed connection string
    return EXIT_STORAGE


def _message(exc: BaseException) -> str:
    if isinstance(exc, BlobNotFoundError) and exc.key is not None:
        return no_such_key(exc.key, exc.container)
    if isinstance(exc, (UsageError, UserError, AsyncBlobDictError)):
        return str(exc)
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _secrets(args: argparse.Namespace | None, argv: Sequence[str] = ()) -> list[str]:
    values = [os.environ.get(AZURE_CONN_ENV, "")]
    if args is not None:
        values += [_opt(args, name) or "" for name in ("azure", "from_azure", "to_azure")]
        values += _opt(args, "location_secrets") or ()
    found = [secret for value in values for secret in secrets_of(value)]
    return found + _argv_secrets(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code (the console script exits with it)."""
    raw = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(_secrets(None, raw))
    try:
        args = parser.parse_args(_expand_bare_conn_options(raw))
    except SystemExit as exc:  # --help, --version, or a usage error (already printed)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    debug = bool(_opt(args, "debug"))
    if debug:
        logging.basicConfig(level=logging.DEBUG, stream=sys.stderr)
    try:
        return asyncio.run(_run(args))
    except KeyboardInterrupt:
        err(f"{PROG}: interrupted")
        return 130
    except BrokenPipeError:
        # The reader went away (e.g. `asyncblobdict ls | head`): not an error.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK
    except Exception as exc:
        secrets = _secrets(args, raw)
        if debug:
            sys.stderr.write(redact(traceback.format_exc(), secrets))
        if isinstance(exc, UsageError):
            parser.print_usage(sys.stderr)
        line = redact(_message(exc), secrets)
        if (
            not debug
            and exit_code_for(exc) == EXIT_STORAGE
            and not isinstance(exc, AsyncBlobDictError)
        ):
            line += " (run with --debug for details)"
        err(f"{PROG}: error: {line}")
        return exit_code_for(exc)
