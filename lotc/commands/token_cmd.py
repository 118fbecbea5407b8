"""`lotc token create --agent NAME | --admin NAME` and `lotc token revoke NAME`.

Works directly on the server's SQLite file, even while the server runs (WAL):
the server notices a revocation within a fraction of a second and cuts the
holder off.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from lotc.errors import InvalidRequest
from lotc.names import validate_name
from lotc.server.model import Model
from protocol.enums import Role


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser("token", help="create or revoke agent and admin tokens")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    create = actions.add_parser("create", help="create a token and print it (once)")
    who = create.add_mutually_exclusive_group(required=True)
    who.add_argument("--agent", metavar="NAME", help="token for the agent NAME")
    who.add_argument("--admin", metavar="NAME", help="token for the administrator NAME")
    create.add_argument("--db", type=Path, default=Path("lotc.db"))
    create.set_defaults(handler=create_token)
    revoke = actions.add_parser("revoke", help="revoke NAME's token; live connections are cut")
    revoke.add_argument("name")
    revoke.add_argument("--db", type=Path, default=Path("lotc.db"))
    revoke.set_defaults(handler=revoke_token)


def create_token(args: argparse.Namespace) -> int:
    role, name = (Role.AGENT, args.agent) if args.agent else (Role.ADMIN, args.admin)
    validate_name(role.name.lower(), name)
    model = Model(args.db)
    try:
        print(model.create_token(role, name, time.time_ns() // 1000))
    finally:
        model.close()
    return 0


def revoke_token(args: argparse.Namespace) -> int:
    model = Model(args.db)
    try:
        if not model.revoke_token(args.name, time.time_ns() // 1000):
            raise InvalidRequest(f"no live token named {args.name!r} in {args.db}")
    finally:
        model.close()
    print(f"revoked {args.name}")
    return 0
