"""`lotc dissector [-o FILE]`: regenerate the Wireshark dissector from the spec.

The Lua text comes from protocol/luagen.py (sans-I/O); this command only
writes it. Without -o it goes to stdout, so `lotc dissector > x.lua` works too.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("dissector", help="write the Wireshark Lua dissector (lotc.lua)")
    p.add_argument("-o", "--output", type=Path, metavar="FILE",
                   help="file to write (default: stdout); e.g. wireshark/lotc.lua, or "
                        "~/.local/lib/wireshark/plugins/lotc.lua to install it")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    # Imported here: luagen walks the spec, i.e. construct, which every `lotc` start
    # (the agent's too) would otherwise load for this one command (90 ms on this VM).
    from protocol import luagen

    text = luagen.render()
    if args.output is None:
        sys.stdout.write(text)
        return 0
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text, encoding="utf-8")
    print(f"wrote {args.output}", file=sys.stderr)
    return 0
