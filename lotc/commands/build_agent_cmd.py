"""`lotc build-agent -o lotc-agent.pyz`: the single-file agent for nodes."""
from __future__ import annotations

import argparse
from pathlib import Path

from lotc.build_agent import build

DEFAULT_OUTPUT = Path("lotc-agent.pyz")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "build-agent", help="build the single-file agent (lotc-agent.pyz) for nodes",
        description="Build one executable file holding the agent and its dependencies, "
                    "from the packages installed here (no network). Nodes run it with "
                    "their own python3 (3.11+, same platform as this machine).")
    p.add_argument("-o", "--output", type=Path, default=DEFAULT_OUTPUT,
                   help=f"where to write it (default {DEFAULT_OUTPUT})")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    built = build(args.output)
    print(f"built {built.path}: {built.size / 1e6:.1f} MB, {built.files} files, "
          f"sha256 {built.sha256}")
    print(f"with {', '.join(built.distributions)}")
    return 0
