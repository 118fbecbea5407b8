"""`lotc agent`: run the agent on a node."""
from __future__ import annotations

import argparse
import os
import ssl
from pathlib import Path

from lotc.errors import InvalidRequest
from lotc.names import validate_name
from lotc.net.address import parse_address
from lotc.selectors import parse_labels
from lotc.token_names import login_name
from protocol.message_types import DEFAULT_AGENT_PORT

DEFAULT_STATE_DIR = "lotc-agent-state"
STATS_INTERVAL_S = 10.0
NTP_INTERVAL_S = 64.0  # lotc.agent.timesync.NTP_INTERVAL_S (a test keeps them equal)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("agent", help="run the agent on this node")
    p.add_argument("--server", required=True, metavar="HOST:PORT",
                   help=f"the server's agent port (default port {DEFAULT_AGENT_PORT})")
    p.add_argument("--name", help="check that the token is this agent's (tokens name their "
                                  "owner); required with a token made by an older lotc")
    p.add_argument("--token", help="the agent's token; or set LOTC_TOKEN, or use --token-file")
    p.add_argument("--token-file", type=Path, help="file holding the token (keeps it out of ps)")
    p.add_argument("--state-dir", type=Path, default=Path(DEFAULT_STATE_DIR),
                   help=f"where bundles, logs and process state live (default ./{DEFAULT_STATE_DIR}"
                        ", in the directory the agent starts in)")
    p.add_argument("--ntp", action="append", default=[], metavar="HOST[:PORT]",
                   help="NTP server to correct the clock against, repeatable")
    p.add_argument("--ntp-interval", type=float, default=NTP_INTERVAL_S, metavar="SECONDS",
                   help=f"how often to measure the clock against --ntp "
                        f"(default {NTP_INTERVAL_S:g})")
    p.add_argument("--tls-ca", type=Path, metavar="FILE",
                   help="CA certificate (PEM) to verify the server with; enables TLS")
    p.add_argument("--stats-interval", type=float, default=STATS_INTERVAL_S, metavar="SECONDS",
                   help="how often to report node and process statistics "
                        f"(default {STATS_INTERVAL_S:g})")
    p.add_argument("--label", action="append", default=[], metavar="KEY=VALUE",
                   help="a label that selectors match (role=web), repeatable; announced at each "
                        "connect. A label set from the console for the same key wins over it")
    p.set_defaults(handler=run)


def read_token(args: argparse.Namespace) -> str:
    if args.token:
        return str(args.token)
    if args.token_file:
        try:
            return args.token_file.read_text().strip()
        except OSError as exc:
            raise InvalidRequest(f"cannot read --token-file: {exc}") from None
    token = os.environ.get("LOTC_TOKEN", "").strip()
    if not token:
        raise InvalidRequest("no token: give --token, --token-file or LOTC_TOKEN")
    return token


def client_ssl_context(ca: Path | None) -> ssl.SSLContext | None:
    if ca is None:
        return None
    try:
        return ssl.create_default_context(cafile=str(ca))
    except (OSError, ssl.SSLError) as exc:
        raise InvalidRequest(f"cannot load --tls-ca {ca}: {exc}") from None


def run(args: argparse.Namespace) -> int:
    # Imported here: `lotc console` and friends should not pay for the agent's stack.
    import trio

    from lotc.agent import app
    from lotc.agent.connection import LinkConfig

    token = read_token(args)
    name = validate_name("agent", login_name(token, args.name, kind="agent"))
    labels = parse_labels(args.label)  # InvalidRequest in plain words before anything starts
    if args.ntp_interval <= 0:
        raise InvalidRequest("--ntp-interval must be positive")
    link = LinkConfig(
        server=parse_address(args.server, DEFAULT_AGENT_PORT), name=name, token=token,
        ssl_context=client_ssl_context(args.tls_ca),
        stats_interval_s=args.stats_interval, labels=tuple(sorted(labels.items())),
    )
    config = app.AgentConfig(link=link, state_dir=args.state_dir.resolve(),
                             ntp_servers=tuple(args.ntp), ntp_interval_s=args.ntp_interval)
    trio.run(app.run, config)
    return 0
