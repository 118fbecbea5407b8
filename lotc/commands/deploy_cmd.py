"""`lotc deploy USER@HOST --server HOST:PORT --name NAME`: install or upgrade an agent over SSH."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from lotc.commands.agent_cmd import client_ssl_context
from lotc.deploy import Deployment, deploy, uninstall
from lotc.deploy_online import AdminAccess
from lotc.deploy_ssh import Remote
from lotc.errors import InvalidRequest
from lotc.names import validate_name
from lotc.net.address import Address, parse_address
from lotc.selectors import parse_labels
from lotc.token_names import login_name
from protocol.message_types import DEFAULT_ADMIN_PORT, DEFAULT_AGENT_PORT

DEFAULT_DIR = "lotc-agent"

EPILOG = """\
The agent file is built with `lotc build-agent`. The token comes from --token or
--token-file, else is created in --db (the server's SQLite file), else the one
already on the node is kept (an upgrade). The admin token used to see the agent
online comes from --admin-token, else $LOTC_TOKEN; without one, deploy does not wait.
Re-running deploy upgrades in place: stop, replace, start; processes keep running."""


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "deploy", help="install, upgrade or remove the agent on a node over SSH",
        description="Copy the single-file agent to a node over SSH, start it (systemd unit "
                    "when root and systemd run there, else nohup) and wait until it is online.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("target", metavar="USER@HOST", help="the node, as ssh reaches it")
    p.add_argument("--server", metavar="HOST:PORT",
                   help="the server's agent port as the NODE reaches it")
    p.add_argument("--name", help="the agent's name")
    p.add_argument("--identity", "-i", metavar="KEY", help="SSH private key")
    p.add_argument("--port", "-p", type=int, default=22, help="SSH port (default 22)")
    p.add_argument("-o", dest="ssh_options", action="append", default=[], metavar="OPTION",
                   help="extra ssh -o option, repeatable")
    token = p.add_mutually_exclusive_group()
    token.add_argument("--token", help="the agent's token (else --token-file or --db)")
    token.add_argument("--token-file", type=Path, help="file holding the agent's token")
    p.add_argument("--db", type=Path, help="the server's database: create the agent's token")
    p.add_argument("--agent-file", type=Path, default=Path("lotc-agent.pyz"),
                   help="the single-file agent (default lotc-agent.pyz)")
    p.add_argument("--dir", default=DEFAULT_DIR,
                   help=f"install directory on the node, relative to the SSH user's home "
                        f"(default ~/{DEFAULT_DIR})")
    p.add_argument("--python", default="", help="python3 on the node (default: from its PATH)")
    p.add_argument("--ntp", action="append", default=[], metavar="HOST", help="agent --ntp")
    p.add_argument("--label", action="append", default=[], metavar="KEY=VALUE",
                   help="agent --label, repeatable (role=web)")
    p.add_argument("--tls-ca", metavar="PATH",
                   help="CA file ON THE NODE for the agent's TLS (and here, for the admin port)")
    p.add_argument("--admin-server", metavar="HOST:PORT",
                   help=f"the server's admin port from here (default: --server's host, "
                        f"port {DEFAULT_ADMIN_PORT})")
    p.add_argument("--admin-token", help="admin token (default $LOTC_TOKEN)")
    p.add_argument("--admin-name", metavar="ADMIN",
                   help="check that the admin token is ADMIN's; for a token made by an older "
                        "lotc, the admin it belongs to (default $LOTC_ADMIN or admin)")
    p.add_argument("--timeout", type=float, default=30.0, metavar="SECONDS",
                   help="how long to wait for the agent to come online (default 30)")
    p.add_argument("--uninstall", action="store_true",
                   help="stop the agent, terminate its processes, remove what deploy wrote")
    p.set_defaults(handler=run)


def admin_access(args: argparse.Namespace) -> AdminAccess | None:
    token = args.admin_token or os.environ.get("LOTC_TOKEN", "").strip()
    if not token:
        return None
    if args.admin_server:
        address = parse_address(args.admin_server, DEFAULT_ADMIN_PORT)
    elif args.server:
        address = Address(parse_address(args.server, DEFAULT_AGENT_PORT).host, DEFAULT_ADMIN_PORT)
    else:
        return None
    ssl_context = client_ssl_context(Path(args.tls_ca)) if args.tls_ca else None
    name = login_name(token, args.admin_name, kind="admin",
                      fallback=os.environ.get("LOTC_ADMIN") or "admin")
    return AdminAccess(address, str(address), token, name, ssl_context)


def agent_token(args: argparse.Namespace) -> str | None:
    if args.token:
        return str(args.token)
    if args.token_file:
        try:
            return args.token_file.read_text().strip()
        except OSError as exc:
            raise InvalidRequest(f"cannot read --token-file: {exc}") from None
    return None


def report(step: str) -> None:
    print(f"deploy: {step}", flush=True)


def run(args: argparse.Namespace) -> int:
    remote = Remote(args.target, args.port, args.identity, tuple(args.ssh_options))
    deployment = Deployment(
        remote, args.dir, name=args.name or "", server=args.server or "",
        agent_file=args.agent_file, token=agent_token(args), db=args.db, python=args.python,
        ntp=tuple(args.ntp), tls_ca=args.tls_ca, admin=admin_access(args),
        labels=tuple(f"{k}={v}" for k, v in parse_labels(args.label).items()),
        online_timeout_s=args.timeout, report=report)
    if args.uninstall:
        uninstall(deployment)
        print(f"deploy: uninstalled from {args.target}")
        return 0
    if not args.server or not args.name:
        print("lotc deploy: --server and --name are needed (except with --uninstall)",
              file=sys.stderr)
        return 2
    validate_name("agent", args.name)
    deploy(deployment)
    print(f"deploy: done: agent {args.name!r} on {args.target}")
    return 0
