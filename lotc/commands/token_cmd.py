"""`lotc token create --agent NAME | --admin NAME [-o FILE]` and `lotc token revoke NAME`.

Tokens carry their owner's name (lotc/token_names.py), so the holder logs in
with the token alone.

Works directly on the server's SQLite file, even while the server runs (WAL):
the server notices a revocation within a fraction of a second and cuts the
holder off.
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from lotc.errors import InvalidRequest
from lotc.names import validate_name
from lotc.server.model import Model
from protocol.enums import Role

DEFAULT_DB = "lotc.db"
DB_HELP = f"the server's SQLite file (default {DEFAULT_DB}, as for `lotc server`)"
TOKEN_FILE_MODE = 0o600


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("token", help="create or revoke agent and admin tokens")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    create = actions.add_parser("create", help="create a token and print it (once)")
    who = create.add_mutually_exclusive_group(required=True)
    who.add_argument("--agent", metavar="NAME", help="token for the agent NAME")
    who.add_argument("--admin", metavar="NAME", help="token for the administrator NAME")
    create.add_argument("--db", type=Path, default=Path(DEFAULT_DB), metavar="FILE",
                        help=DB_HELP)
    create.add_argument("-o", "--output", type=Path, metavar="FILE",
                        help="write the token to FILE (mode 0600, only you can read it) "
                             "instead of printing it")
    create.set_defaults(handler=create_token)
    revoke = actions.add_parser("revoke", help="revoke NAME's token; live connections are cut")
    revoke.add_argument("name", help="the agent or administrator whose token to revoke")
    revoke.add_argument("--db", type=Path, default=Path(DEFAULT_DB), metavar="FILE",
                        help=DB_HELP)
    revoke.set_defaults(handler=revoke_token)


def create_token(args: argparse.Namespace) -> int:
    role, name = (Role.AGENT, args.agent) if args.agent else (Role.ADMIN, args.admin)
    validate_name(role.name.lower(), name)
    model = Model(args.db)
    try:
        token = model.create_token(role, name, time.time_ns() // 1000)
    finally:
        model.close()
    if args.output is None:
        print(token)
    else:
        write_secret(args.output, token + "\n")
    return 0


def write_secret(path: Path, text: str) -> None:
    """Write `text` to `path` readable by its owner only, even if the file existed."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, TOKEN_FILE_MODE)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        os.fchmod(out.fileno(), TOKEN_FILE_MODE)  # an existing file kept its old mode
        out.write(text)


def revoke_token(args: argparse.Namespace) -> int:
    model = Model(args.db)
    try:
        if not model.revoke_token(args.name, time.time_ns() // 1000):
            raise InvalidRequest(f"no live token named {args.name!r} in {args.db}")
    finally:
        model.close()
    print(f"revoked {args.name}")
    return 0
