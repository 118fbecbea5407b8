"""The `lotc` command: one subcommand per role (server, agent, console, ...).

Each subcommand lives in its own small module under lotc/commands/ with a
`register(subparsers)` that adds its arguments and sets its handler; this
module only assembles them and maps errors to exit statuses.
"""
from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from lotc import __version__
from lotc.errors import LotcError
from lotc.exc_groups import lone_error

EXIT_FAILURE = 1
EXIT_USAGE = 2


def build_parser() -> argparse.ArgumentParser:
    from lotc.commands import COMMANDS

    parser = argparse.ArgumentParser(prog="lotc", description="Low Orbit Task Cannon")
    parser.add_argument("--version", action="version", version=f"lotc {__version__}")
    parser.add_argument("--log-level", default="info",
                        choices=["debug", "info", "warning", "error"],
                        help="how much the command logs to stderr (default info); give it "
                             "before the command: lotc --log-level debug server")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in COMMANDS:
        command.register(subparsers)
    return parser


def parse_arguments(parser: argparse.ArgumentParser,
                    argv: Sequence[str] | None) -> argparse.Namespace:
    """parse_args, but an unknown option is reported with its subcommand's usage.

    argparse leaves options a subcommand does not know to the top parser, which then
    prints `lotc`'s usage: `lotc console --frob` should show the console's.
    """
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        chosen_parser(parser, args).error(f"unrecognized arguments: {' '.join(unknown)}")
    return args


def chosen_parser(parser: argparse.ArgumentParser,
                  args: argparse.Namespace) -> argparse.ArgumentParser:
    """The innermost (sub)parser the arguments chose: `lotc token create`, not `lotc`."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            chosen = getattr(args, action.dest, None)
            if chosen in action.choices:
                return chosen_parser(action.choices[chosen], args)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parse_arguments(parser, argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return EXIT_USAGE
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        try:
            return int(handler(args) or 0)
        except BaseExceptionGroup as group:
            # a start-up failure (a database that cannot be opened, a port in use)
            # comes wrapped by trio's nurseries: report it in plain words below
            raise lone_error(group) from None
    except LotcError as exc:
        print(f"lotc {args.command}: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except OSError as exc:  # a file or directory we were given: say which, no traceback
        where = f" ({exc.filename})" if exc.filename else ""
        print(f"lotc {args.command}: {exc.strerror or exc}{where}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
