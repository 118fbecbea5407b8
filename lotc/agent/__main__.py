"""`python -m lotc.agent` and the single-file agent (lotc-agent.pyz): `lotc agent` alone.

The options are the ones `lotc agent` registers (lotc/commands/agent_cmd.py),
so the two cannot drift; this adds --version and --log-level and none of the
other subcommands, whose dependencies (the server, prompt_toolkit) a node
does not carry.
"""
from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from lotc import __version__
from lotc.commands import agent_cmd
from lotc.errors import LotcError

PROG = "lotc-agent"
EXIT_FAILURE = 1


def build_parser() -> argparse.ArgumentParser:
    holder = argparse.ArgumentParser(prog=PROG)
    subparsers = holder.add_subparsers()
    agent_cmd.register(subparsers)
    parser: argparse.ArgumentParser = subparsers.choices["agent"]
    parser.prog = PROG
    parser.description = "The LOTC agent: runs and watches processes for a LOTC server."
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    parser.add_argument("--log-level", default="info",
                        choices=["debug", "info", "warning", "error"])
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        return int(args.handler(args) or 0)
    except LotcError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
