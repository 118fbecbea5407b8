"""`lotc console`: the interactive console, or run commands against a server (`-c`, `-f`)."""
from __future__ import annotations

import argparse
import functools
import os
import ssl
import sys
from pathlib import Path

import trio

from admin_console.commands import build_registry
from admin_console.errors import UsageError
from admin_console.script import (
    EXIT_FAILED,
    EXIT_USAGE,
    PROG,
    Connection,
    lines_of_command_string,
    plan,
    read_script,
    run_script,
)
from lotc.errors import InvalidRequest
from lotc.net.address import parse_address
from lotc.token_names import login_name
from protocol.message_types import DEFAULT_ADMIN_PORT

ENV_TOKEN = "LOTC_TOKEN"
ENV_SERVER = "LOTC_SERVER"
ENV_ADMIN = "LOTC_ADMIN"
DEFAULT_SERVER = f"localhost:{DEFAULT_ADMIN_PORT}"
DEFAULT_ADMIN = "admin"
MAX_WAIT_S = 3600.0

EPILOG = f"""\
The token is taken from --token, else from ${ENV_TOKEN}, else from the file
$XDG_CONFIG_HOME/lotc/token (~/.config/lotc/token): prefer the last two, so the
token does not show in the process list or the shell history.
Exit status: 0 success, 1 a command failed, 2 usage error or cannot connect.
Type `lotc console -c help` for the commands."""


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "console", help="run admin commands against a server",
        description="Run admin console commands (agents, ps, upload, start, logs ...).",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--server", metavar="HOST:PORT",
                   help=f"server admin address (default ${ENV_SERVER} or {DEFAULT_SERVER})")
    p.add_argument("--token", help=f"admin token (default ${ENV_TOKEN}, then the token file)")
    p.add_argument("--name", metavar="ADMIN",
                   help="check that the token belongs to ADMIN (tokens name their owner); "
                        f"for a token made by an older lotc, the admin it belongs to "
                        f"(default ${ENV_ADMIN} or {DEFAULT_ADMIN})")
    p.add_argument("--tls-ca", type=Path, metavar="FILE",
                   help="CA certificate (PEM) to verify the server with; enables TLS")
    source = p.add_mutually_exclusive_group()
    source.add_argument("-c", dest="commands", metavar='"CMD; CMD"',
                        help="commands to run, separated by ';'")
    source.add_argument("-f", dest="script", metavar="SCRIPT",
                        help="file of commands, one per line, '#' comments ('-': stdin)")
    p.add_argument("--json", action="store_true",
                   help="machine-readable output: one JSON document per command, one per line")
    p.add_argument("--wait", type=float, default=0.0, metavar="SECONDS",
                   help="if the server is not listening yet (a script has just started it), "
                        "keep trying for up to SECONDS (default 0: fail at once)")
    p.set_defaults(handler=run)


def token_file() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "lotc" / "token"


def find_token(given: str | None) -> str:
    if given:
        return given
    if os.environ.get(ENV_TOKEN):
        return os.environ[ENV_TOKEN].strip()
    path = token_file()
    try:
        token = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        token = ""
    except OSError as exc:
        raise UsageError(f"cannot read the token file {path}: {exc.strerror}") from None
    if not token:
        raise UsageError(f"no token: pass --token, set ${ENV_TOKEN} or write it to {path}")
    return token


def client_ssl_context(ca_file: Path | None) -> ssl.SSLContext | None:
    if ca_file is None:
        return None
    try:
        return ssl.create_default_context(cafile=str(ca_file))
    except (OSError, ssl.SSLError) as exc:
        raise UsageError(f"cannot load the CA certificate {ca_file}: {exc}") from None


def connection_from_args(args: argparse.Namespace) -> Connection:
    server = args.server or os.environ.get(ENV_SERVER) or DEFAULT_SERVER
    try:
        address = parse_address(server, DEFAULT_ADMIN_PORT)
    except InvalidRequest as exc:
        raise UsageError(f"--server: {exc}") from None
    token = find_token(args.token)
    try:
        name = login_name(token, args.name, kind="admin",
                          fallback=os.environ.get(ENV_ADMIN) or DEFAULT_ADMIN)
    except InvalidRequest as exc:
        raise UsageError(str(exc)) from None
    if not 0 <= args.wait <= MAX_WAIT_S:
        raise UsageError(f"--wait must be between 0 and {MAX_WAIT_S:g} seconds")
    return Connection(address, token, name, client_ssl_context(args.tls_ca), wait_s=args.wait)


def run(args: argparse.Namespace) -> int:
    if args.commands is None and args.script is None:
        return run_interactive(args)
    registry = build_registry()
    try:
        lines = (lines_of_command_string(args.commands) if args.commands is not None
                 else read_script(args.script))
        invocations = plan(registry, lines)
        needs_server = any(i.command.needs_server for i in invocations)
        connection = connection_from_args(args) if needs_server else None
    except UsageError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        return trio.run(functools.partial(run_script, registry, invocations, connection,
                                          json=args.json))
    except BrokenPipeError:
        # the reader went away (`... | head`): stop quietly, like any Unix filter
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILED


def run_interactive(args: argparse.Namespace, banner: str = "") -> int:
    """The REPL (admin_console/repl.py); it needs a terminal on both ends."""
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        print(f"{PROG}: the interactive console needs a terminal; use -c or -f in scripts",
              file=sys.stderr)
        return EXIT_USAGE
    if args.json:
        print(f"{PROG}: --json is for -c and -f", file=sys.stderr)
        return EXIT_USAGE
    try:
        connection = connection_from_args(args)
    except UsageError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    from admin_console.repl import run_repl  # prompt_toolkit loads only for the REPL

    return run_repl(connection, build_registry(), banner)
