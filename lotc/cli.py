"""The `lotc` command: one subcommand per role (server, agent, console, ...).

Each subcommand registers its own arguments and a handler; subcommands are
added here as the parts they drive come to exist.
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from lotc import __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lotc", description="Low Orbit Task Cannon")
    parser.add_argument("--version", action="version", version=f"lotc {__version__}")
    parser.add_subparsers(dest="command", metavar="COMMAND")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    return int(handler(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
