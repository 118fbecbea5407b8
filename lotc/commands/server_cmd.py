"""`lotc server`: run the management server."""
from __future__ import annotations

import argparse
import ssl
from pathlib import Path
from typing import TYPE_CHECKING

from lotc.errors import InvalidRequest
from lotc.net.address import default_listen_addresses, loopback_listen_addresses, parse_address

if TYPE_CHECKING:
    from lotc.server.config import ServerConfig
from protocol.message_types import DEFAULT_ADMIN_PORT, DEFAULT_AGENT_PORT


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "server", help="run the management server",
        description="Run the management server: agents connect to its agent port (all "
                    f"interfaces, {DEFAULT_AGENT_PORT}, by default), consoles to its console "
                    f"port (this machine only, {DEFAULT_ADMIN_PORT}, by default).")
    p.add_argument("--listen", action="append", default=[], metavar="ADDR:PORT",
                   help="agent listener, repeatable (default all interfaces: "
                        f"0.0.0.0:{DEFAULT_AGENT_PORT} and [::]:{DEFAULT_AGENT_PORT})")
    p.add_argument("--admin-listen", action="append", default=[], metavar="ADDR:PORT",
                   help="console listener, repeatable (default this machine only: "
                        f"127.0.0.1:{DEFAULT_ADMIN_PORT} and [::1]:{DEFAULT_ADMIN_PORT}; "
                        f"give 0.0.0.0:{DEFAULT_ADMIN_PORT} or [::]:{DEFAULT_ADMIN_PORT} "
                        "to take consoles from other machines)")
    p.add_argument("--db", type=Path, default=Path("lotc.db"),
                   help="SQLite file (default lotc.db; created when missing)")
    p.add_argument("--tls-cert", type=Path, metavar="FILE",
                   help="PEM certificate chain; enables TLS on both ports (with --tls-key)")
    p.add_argument("--tls-key", type=Path, metavar="FILE", help="PEM private key of --tls-cert")
    p.add_argument("--heartbeat", type=float, default=1.0, metavar="SECONDS",
                   help="interval agents heartbeat at (default 1)")
    p.add_argument("--missed-heartbeats", type=int, default=3, metavar="N",
                   help="silent intervals before a connection is presumed dead (default 3)")
    p.add_argument("--ping-interval", type=float, default=5.0, metavar="SECONDS",
                   help="interval the server beats each agent and console at; they presume "
                        "it gone after --missed-heartbeats of (ping + heartbeat) (default 5)")
    p.add_argument("--offline-grace", type=float, default=2.0, metavar="SECONDS",
                   help="further grace before an agent is declared offline (default 2)")
    p.add_argument("--ntp-listen", action="append", default=[], metavar="ADDR:PORT",
                   help="also answer SNTP here, so agents can use the server as their time "
                        "source (--ntp SERVER:PORT); repeatable")
    p.add_argument("--no-exec", action="store_true",
                   help="refuse the console's `exec` (commands run once on many agents)")
    p.add_argument("--ntp-local-stratum", type=int, metavar="N",
                   help="with --ntp-listen: serve this host's clock as stratum N (1-15) even "
                        "when the kernel says it is not synchronised, like chrony's `local "
                        "stratum N` (default: tell clients the truth, and they will not sync)")
    p.set_defaults(handler=run)


def server_ssl_context(cert: Path | None, key: Path | None) -> ssl.SSLContext | None:
    if cert is None and key is None:
        return None
    if cert is None or key is None:
        raise InvalidRequest("TLS needs both --tls-cert and --tls-key")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise InvalidRequest(f"cannot load TLS certificate {cert} / key {key}: {exc}") from None
    return context


def config_from_args(args: argparse.Namespace) -> ServerConfig:
    from lotc.server.config import ServerConfig

    if args.heartbeat <= 0 or args.ping_interval <= 0 or args.offline_grace < 0:
        raise InvalidRequest("--heartbeat and --ping-interval must be positive, "
                             "--offline-grace not negative")
    if not 1 <= args.missed_heartbeats <= 255:  # TIMING carries it in a byte
        raise InvalidRequest("--missed-heartbeats must be 1 to 255")
    if args.ntp_local_stratum is not None and not 1 <= args.ntp_local_stratum <= 15:
        raise InvalidRequest("--ntp-local-stratum must be 1 to 15")
    return ServerConfig(
        db_path=args.db,
        listen=tuple(parse_address(a) for a in args.listen)
        or tuple(default_listen_addresses(DEFAULT_AGENT_PORT)),
        admin_listen=tuple(parse_address(a) for a in args.admin_listen)
        or tuple(loopback_listen_addresses(DEFAULT_ADMIN_PORT)),
        ssl_context=server_ssl_context(args.tls_cert, args.tls_key),
        heartbeat_interval_s=args.heartbeat,
        missed_heartbeats=args.missed_heartbeats,
        server_ping_interval_s=args.ping_interval,
        offline_grace_s=args.offline_grace,
        ntp_listen=tuple(parse_address(a, 123) for a in args.ntp_listen),
        ntp_local_stratum=args.ntp_local_stratum,
        no_exec=args.no_exec,
    )


def run(args: argparse.Namespace) -> int:
    # Imported here: `lotc console` and friends should not pay for the server's stack.
    import trio

    from lotc.server import app

    config = config_from_args(args)
    trio.run(app.run, config)  # cannot listen: app.ListenFailed names the address
    return 0
