"""`lotc demo`: a server and two local agents (IPv4 and IPv6), a sample bundle, the console.

Everything lives under ./var/demo (--dir): the SQLite file, the tokens, the
agents' state dirs and every log. The
server and the agents are subprocesses in sessions of their own, so a Ctrl-C
meant for `logs -f` in the console does not reach them.

Leaving the console (quit, Ctrl-D; or the terminal closing) stops the agents
and the server, and then terminates the processes the agents started: an
agent deliberately leaves its processes running when it stops (the next one
re-adopts them), which a demo should not do to the machine. The state stays
for a look afterwards; the next `lotc demo` starts afresh (it forgets what the
previous one asked for, so the hints work every time) and appends to the logs.
"""
from __future__ import annotations

import argparse
import logging
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType

import psutil
import trio

from admin_console.client import AdminClient
from admin_console.commands import build_registry
from admin_console.commands.base import Context
from admin_console.script import Connection, plan, run_all
from lotc.commands.token_cmd import write_secret
from lotc.errors import InvalidRequest
from lotc.net.address import Address
from lotc.server.model import Model
from protocol.enums import Role
from protocol.message_types import DEFAULT_ADMIN_PORT, DEFAULT_AGENT_PORT
from protocol.messages import AgentList, ListAgents

LOTC = [sys.executable, "-m", "lotc.cli"]
AGENTS = (("demo-ipv4", "127.0.0.1"), ("demo-ipv6", "::1"))
ADMIN = "admin"
BUNDLE = "hello"
SAMPLE = Path(__file__).resolve().parents[2] / "examples" / "hello"
START_TIMEOUT_S = 20.0  # server listening, agents online
STOP_TIMEOUT_S = 10.0  # each child, after SIGTERM, before SIGKILL
POLL_S = 0.1

HINT = """\
LOTC demo: one server, two agents on this machine; bundle "hello" is loaded on both.
  demo-ipv4 reaches the server over 127.0.0.1, demo-ipv6 over ::1.  State: {root}
Try:
  agents
  ps
  start demo-ipv4 hello -- python3 hello.py
  logs demo-ipv4 hello -f                  (Ctrl-C stops following)
  start all hello --name flaky -- python3 hello.py --crash-after 3
  ps net=ipv6                              (a label selector; 'help label' for more)
  start demo-ipv6 hello --name stuck --liveness 2 -- python3 hello.py --hang-after 4
  schedule demo-ipv4 hello restart cron "*/2 * * * *"
  events -f                                (Ctrl-C stops following)
  help                                     (Tab completes; 'help start' for one command)
From another terminal: LOTC_TOKEN=$(cat {token}) {lotc} console --server {admin}
quit or Ctrl-D stops the demo."""


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "demo", help="a server and two local agents (IPv4, IPv6), then the console",
        description="Start a server and two local agents (one over IPv4, one over IPv6), "
                    "upload a sample bundle to them and open the console. Leaving the "
                    "console stops them all; the state stays in --dir.")
    p.add_argument("--dir", type=Path, default=Path("var") / "demo",
                   help="where the demo keeps its state (default ./var/demo)")
    p.add_argument("--agent-port", type=int, default=0,
                   help=f"agent port (default {DEFAULT_AGENT_PORT} if free, else any)")
    p.add_argument("--admin-port", type=int, default=0,
                   help=f"console port (default {DEFAULT_ADMIN_PORT} if free, else any)")
    p.add_argument("--bundle", type=Path, default=SAMPLE,
                   help="the directory uploaded as bundle 'hello' (default examples/hello)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    logging.getLogger().setLevel(logging.WARNING)  # the console is the demo's output
    if not args.bundle.is_dir():
        raise InvalidRequest(f"no sample bundle at {args.bundle}: run from a source checkout "
                             "or give --bundle DIR")
    demo = Demo(args.dir.resolve(), _port(args.agent_port, DEFAULT_AGENT_PORT),
                _port(args.admin_port, DEFAULT_ADMIN_PORT))
    previous = {sig: signal.signal(sig, _leave) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        demo.start()
        admin_token = demo.token(Role.ADMIN, ADMIN)
        connection = Connection(Address("127.0.0.1", demo.admin_port), admin_token, ADMIN)
        trio.run(demo.wait_and_upload, connection, args.bundle.resolve())
        from admin_console.repl import run_repl

        hint = HINT.format(root=demo.root, token=demo.token_file(ADMIN),
                           admin=connection.address, lotc=_lotc_command())
        return run_repl(connection, build_registry(), hint)
    finally:
        demo.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _lotc_command() -> str:
    """How to run this `lotc` from another terminal: `lotc` if on PATH, else its path."""
    script = Path(sys.executable).parent / "lotc"
    if not script.exists() or shutil.which("lotc") == str(script):
        return "lotc"
    try:
        return str(script.relative_to(Path.cwd()))  # `.venv/bin/lotc` after `make demo`
    except ValueError:
        return str(script)


def _leave(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds through `finally`: the children are stopped


def _port(given: int, preferred: int) -> int:
    """`given`, else the usual port when it is free on both loopbacks, else any free one."""
    if given:
        return given
    return preferred if _free(preferred) else _any_free_port()


def _free(port: int) -> bool:
    loopbacks = [(socket.AF_INET, "127.0.0.1")]
    if ipv6_available():
        loopbacks.append((socket.AF_INET6, "::1"))
    for family, host in loopbacks:
        try:
            with socket.socket(family, socket.SOCK_STREAM) as sock:
                sock.bind((host, port))
        except OSError:
            return False
    return True


def _any_free_port() -> int:
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if _free(port):
            return port
    raise InvalidRequest("no free port on 127.0.0.1 and ::1")


def ipv6_available() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


class Demo:
    def __init__(self, root: Path, agent_port: int, admin_port: int) -> None:
        self.root = root
        self.agent_port = agent_port
        self.admin_port = admin_port
        self.children: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.agent_hosts = {name: host if host != "::1" or ipv6_available() else "127.0.0.1"
                            for name, host in AGENTS}

    @property
    def db(self) -> Path:
        return self.root / "lotc.db"

    def token_file(self, name: str) -> Path:
        return self.root / f"{name}.token"

    def token(self, role: Role, name: str) -> str:
        """The demo's token for `name`: made once per run (written 0600), read back after."""
        path = self.token_file(name)
        if path.exists() and path.read_text().strip():
            return path.read_text().strip()
        model = Model(self.db)
        try:
            model.revoke_token(name, time.time_ns() // 1000)  # a token whose file was lost
            token = model.create_token(role, name, time.time_ns() // 1000)
        finally:
            model.close()
        write_secret(path, token + "\n")
        return token

    # ------------------------------------------------------------ start

    def forget_previous_run(self) -> None:
        """Remove what an earlier demo left in root (only the demo's own files; logs stay)."""
        for path in [self.db, *self.root.glob(f"{self.db.name}-*"),
                     *(self.token_file(name) for name in (ADMIN, *self.agent_hosts))]:
            path.unlink(missing_ok=True)
        for directory in [self.root / f"{self.db.stem}-blobs",
                          *(self.root / f"state-{name}" for name in self.agent_hosts)]:
            shutil.rmtree(directory, ignore_errors=True)

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.forget_previous_run()
        print(f"starting the demo in {self.root}: server on ports {self.agent_port} (agents) "
              f"and {self.admin_port} (console)", flush=True)
        listen = [f"127.0.0.1:{self.agent_port}"]
        admin = [f"127.0.0.1:{self.admin_port}"]
        if ipv6_available():
            listen.append(f"[::1]:{self.agent_port}")
            admin.append(f"[::1]:{self.admin_port}")
        self.token(Role.ADMIN, ADMIN)  # before the server opens the database
        argv = ["server", "--db", str(self.db)]
        argv += [w for a in listen for w in ("--listen", a)]
        argv += [w for a in admin for w in ("--admin-listen", a)]
        server = self._spawn("server", argv)
        self._wait(lambda: _port_open(self.admin_port) or server.poll() is not None,
                   "the server to listen")
        if server.poll() is not None:
            raise InvalidRequest(f"the server did not start:\n{self._log_tail('server')}")
        for name, host in self.agent_hosts.items():
            self._start_agent(name, host)

    def _start_agent(self, name: str, host: str) -> None:
        self.token(Role.AGENT, name)
        server = f"[{host}]:{self.agent_port}" if ":" in host else f"{host}:{self.agent_port}"
        if host != dict(AGENTS)[name]:
            print(f"{name}: no IPv6 loopback here, connecting over {host}", flush=True)
        self._spawn(name, ["agent", "--server", server, "--name", name, "--token-file",
                           str(self.token_file(name)), "--state-dir",
                           str(self.root / f"state-{name}"),
                           "--label", "role=demo",
                           "--label", f"net={'ipv6' if ':' in host else 'ipv4'}"])

    def _spawn(self, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        with (self.root / f"{name}.log").open("ab") as log:
            child = subprocess.Popen([*LOTC, *argv], stdout=log, stderr=log,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        self.children.append((name, child))
        return child

    def _wait(self, done: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not done():
            if time.monotonic() > deadline:
                raise InvalidRequest(f"gave up waiting for {what} after {START_TIMEOUT_S:g} s "
                                     f"(logs in {self.root})")
            time.sleep(POLL_S)

    def _log_tail(self, name: str, lines: int = 15) -> str:
        text = (self.root / f"{name}.log").read_text(errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    async def wait_and_upload(self, connection: Connection, bundle: Path) -> None:
        """Wait for both agents, then upload the sample bundle to them."""
        names = set(self.agent_hosts)
        async with AdminClient.connect(connection.address, token=connection.token,
                                       name=connection.name) as client:
            with trio.move_on_after(START_TIMEOUT_S):
                while not names <= await _online(client):
                    await trio.sleep(POLL_S)
            missing = names - await _online(client)
            if missing:
                print(f"not online yet: {', '.join(sorted(missing))} (see the logs in "
                      f"{self.root}); carrying on", flush=True)
            registry = build_registry()
            ctx = Context(client, registry)
            await run_all(ctx, plan(registry, [("demo", f"upload all {BUNDLE} {shlex.quote(str(bundle))}")]),
                          sys.stderr)

    # ------------------------------------------------------------ stop

    def stop(self) -> None:
        """Agents first (so they do not see the server vanish), then the server, then leftovers."""
        for name, child in reversed(self.children):
            if child.poll() is None:
                child.terminate()
                try:
                    child.wait(STOP_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    print(f"{name} did not stop in {STOP_TIMEOUT_S:g} s: killing it", flush=True)
                    child.kill()
                    child.wait()
        self.children.clear()
        self._stop_managed()
        print(f"demo stopped: the server, the agents and what they ran; its state and logs "
              f"stay in {self.root} until the next demo", flush=True)

    def _stop_managed(self) -> None:
        """Terminate the process groups of what the agents ran (they run in the state dirs)."""
        found = []
        for proc in psutil.process_iter(["cwd"]):
            cwd = proc.info.get("cwd") or ""
            if cwd.startswith(str(self.root) + os.sep) and proc.pid != os.getpid():
                found.append(proc)
        for proc in found:
            _signal_group(proc.pid, signal.SIGTERM)
        _gone, alive = psutil.wait_procs(found, timeout=STOP_TIMEOUT_S)
        for proc in alive:
            _signal_group(proc.pid, signal.SIGKILL)


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)  # each managed process leads its own group: reach its children
    except (ProcessLookupError, PermissionError):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


async def _online(client: AdminClient) -> set[str]:
    frames = await client.request(ListAgents(pattern=""))
    return {a.name for f in frames if isinstance(f.body, AgentList) for a in f.body.agents
            if a.online}
