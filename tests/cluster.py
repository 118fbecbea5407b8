"""A real LOTC cluster for end-to-end tests: `lotc server` and `lotc agent` subprocesses.

Everything runs on loopback with free ports and a temporary directory; the
fixture kills the server, the agents and every process the agents started
(they live in their own sessions, so killing an agent does not reach them),
even when the test fails. Nothing here sleeps to wait: `wait_until` polls
with a deadline.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from tests.agent_helpers import remove_agent_cgroups

LOTC = [sys.executable, "-m", "lotc.cli"]
CONSOLE_TIMEOUT_S = 60.0
START_TIMEOUT_S = 15.0


def wait_until(predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.05,
               what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"not true within {timeout} s: {what or predicate} (last: {last!r})")


def free_port() -> int:
    """A port free on both 127.0.0.1 and ::1 (the server listens on both)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as v4:
            v4.bind(("127.0.0.1", 0))
            port = v4.getsockname()[1]
            try:
                with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as v6:
                    v6.bind(("::1", port))
            except OSError:
                continue
            return int(port)
    raise RuntimeError("no free port")


def port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


@dataclass
class Cluster:
    root: Path
    agent_port: int = field(default_factory=free_port)
    admin_port: int = field(default_factory=free_port)
    server: subprocess.Popen[bytes] | None = None
    agents: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    server_args: list[str] = field(default_factory=list)
    admin_token: str = ""

    @property
    def db(self) -> Path:
        return self.root / "lotc.db"

    # ------------------------------------------------------------------ commands

    def lotc(self, *args: str, check: bool = True, env: dict[str, str] | None = None,
             timeout: float = CONSOLE_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([*LOTC, *args], capture_output=True, text=True, timeout=timeout,
                                env={**os.environ, **(env or {})}, stdin=subprocess.DEVNULL,
                                check=False)  # the check below says which command failed
        if check and result.returncode != 0:
            raise AssertionError(f"lotc {' '.join(args)} exited {result.returncode}:\n"
                                 f"{result.stdout}\n{result.stderr}")
        return result

    def token(self, role: str, name: str) -> str:
        return self.lotc("token", "create", f"--{role}", name, "--db", str(self.db)).stdout.strip()

    def console(self, commands: str, *, check: bool = True, json_output: bool = False,
                token: str | None = None) -> subprocess.CompletedProcess[str]:
        args = ["console", "--server", f"127.0.0.1:{self.admin_port}", "-c", commands]
        if json_output:
            args.append("--json")
        return self.lotc(*args, check=check, env={"LOTC_TOKEN": token or self.admin_token})

    def console_json(self, command: str) -> Any:
        return json.loads(self.console(command, json_output=True).stdout)

    # ------------------------------------------------------------------ server

    def start_server(self, *extra: str) -> None:
        if not self.admin_token:
            self.admin_token = self.token("admin", "admin")
        self.server_args = list(extra) or self.server_args
        log = (self.root / "server.log").open("ab")
        self.server = subprocess.Popen(
            [*LOTC, "--log-level", "debug", "server", "--db", str(self.db),
             "--listen", f"127.0.0.1:{self.agent_port}", "--listen", f"[::1]:{self.agent_port}",
             "--admin-listen", f"127.0.0.1:{self.admin_port}",
             "--admin-listen", f"[::1]:{self.admin_port}", *self.server_args],
            stdout=log, stderr=log, stdin=subprocess.DEVNULL,
        )
        wait_until(lambda: port_open("127.0.0.1", self.admin_port) or self.server.poll() is not None,
                   START_TIMEOUT_S, what="server listening")
        assert self.server.poll() is None, self.server_log()

    def stop_server(self, sig: int = signal.SIGTERM) -> None:
        if self.server is not None and self.server.poll() is None:
            self.server.send_signal(sig)
            self.server.wait(timeout=START_TIMEOUT_S)
        self.server = None

    def server_log(self) -> str:
        return (self.root / "server.log").read_text(errors="replace")

    # ------------------------------------------------------------------ agents

    def start_agent(self, name: str, host: str = "127.0.0.1", *, token: str | None = None,
                    extra: tuple[str, ...] = (), env: dict[str, str] | None = None) -> None:
        token_file = self.root / f"{name}.token"
        if token is not None:
            token_file.write_text(token)
        elif not token_file.exists():
            token_file.write_text(self.token("agent", name))
        address = f"[{host}]:{self.agent_port}" if ":" in host else f"{host}:{self.agent_port}"
        log = (self.root / f"agent-{name}.log").open("ab")
        self.agents[name] = subprocess.Popen(
            [*LOTC, "--log-level", "debug", "agent", "--server", address, "--name", name,
             "--token-file", str(token_file), "--state-dir", str(self.root / f"state-{name}"),
             "--stats-interval", "1", *extra],
            stdout=log, stderr=log, stdin=subprocess.DEVNULL, env={**os.environ, **(env or {})},
        )

    def kill_agent(self, name: str, sig: int = signal.SIGKILL) -> None:
        proc = self.agents.pop(name)
        proc.send_signal(sig)
        proc.wait(timeout=START_TIMEOUT_S)

    def agent_log(self, name: str) -> str:
        return (self.root / f"agent-{name}.log").read_text(errors="replace")

    # ------------------------------------------------------------------ views

    def agents_view(self) -> dict[str, dict[str, Any]]:
        return {a["name"]: a for a in self.console_json("agents")["agents"]}

    def wait_online(self, *names: str, timeout: float = START_TIMEOUT_S) -> None:
        def online() -> bool:
            view = self.agents_view()
            return all(view.get(n, {}).get("online") for n in names)
        wait_until(online, timeout, what=f"agents {names} online")

    def processes(self) -> dict[tuple[str, str], dict[str, Any]]:
        return {(p["agent"], p["name"]): p for p in self.console_json("ps")["processes"]}

    def managed(self) -> list[psutil.Process]:
        """OS processes started by this cluster's agents (they run inside the state dirs)."""
        found = []
        for proc in psutil.process_iter(["pid", "cwd", "cmdline", "status"]):
            cwd = proc.info.get("cwd") or ""
            if proc.info.get("status") == psutil.STATUS_ZOMBIE:
                continue
            if cwd.startswith(str(self.root)) and proc.pid not in self._own_pids():
                found.append(proc)
        return found

    def _own_pids(self) -> set[int]:
        pids = {p.pid for p in self.agents.values()}
        if self.server is not None:
            pids.add(self.server.pid)
        return pids

    # ------------------------------------------------------------------ cleanup

    def close(self) -> None:
        for proc in [*self.agents.values(), self.server]:
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait(timeout=START_TIMEOUT_S)
        self.agents.clear()
        self.server = None
        for proc in self.managed():
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                proc.kill()
        for state_dir in self.root.iterdir():  # what the killed agents left (any state dir)
            if state_dir.is_dir():
                remove_agent_cgroups(state_dir)


def cluster_fixture(tmp_path: Path) -> Iterator[Cluster]:
    cluster = Cluster(tmp_path)
    try:
        yield cluster
    finally:
        cluster.close()
