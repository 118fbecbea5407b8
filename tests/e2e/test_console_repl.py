"""The interactive console in a real pseudo-terminal, against a real server and agent.

`lotc console` runs under pexpect; its output feeds pyte, a terminal emulator,
so the assertions read the screen a user would see (prompt, toolbar, events
printed above a half-typed line) and pyte answers prompt_toolkit's cursor
position requests as a real terminal does. Nothing sleeps to wait: `wait_for`
pumps the terminal until the text shows up or its deadline passes.
"""
from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pexpect
import psutil
import pyte
import pytest

from tests.cluster import Cluster, free_port, wait_until

ROWS, COLS = 50, 160
SCREEN_TIMEOUT_S = 10.0
EXIT_TIMEOUT_S = 10.0
CTRL_C, CTRL_D, CTRL_R, CTRL_U, CTRL_G = "\x03", "\x04", "\x12", "\x15", "\x07"
UP = "\x1b[A"

pytestmark = pytest.mark.timeout(60)


class _Screen(pyte.Screen):
    """A screen that keeps what the terminal would answer (cursor position reports)."""

    def __init__(self, columns: int, lines: int) -> None:
        super().__init__(columns, lines)
        self.replies: list[str] = []

    def write_process_input(self, data: str) -> None:
        self.replies.append(data)


class Terminal:
    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self.screen = _Screen(COLS, ROWS)
        self.stream = pyte.ByteStream(self.screen)
        self.child = pexpect.spawn(argv[0], argv[1:], env=env, dimensions=(ROWS, COLS))
        self.eof = False

    def pump(self, timeout: float = 0.05) -> None:
        try:
            data = self.child.read_nonblocking(65536, timeout)
        except pexpect.TIMEOUT:
            return
        except pexpect.EOF:
            self.eof = True
            return
        self.stream.feed(data)
        if self.screen.replies:
            self.child.send("".join(self.screen.replies))
            self.screen.replies.clear()

    def text(self) -> str:
        return "\n".join(line.rstrip() for line in self.screen.display)

    def prompt_line(self) -> str:
        """The line the cursor is on: the prompt and what is typed."""
        return self.screen.display[self.screen.cursor.y].rstrip()

    def wait_until(self, check: Callable[[], bool], what: str,
                   timeout: float = SCREEN_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            if self.eof or time.monotonic() > deadline:
                raise AssertionError(f"{what}: not seen within {timeout} s; screen:\n{self.text()}")
            self.pump()

    def wait_for(self, text: str, timeout: float = SCREEN_TIMEOUT_S) -> None:
        self.wait_until(lambda: text in self.text(), repr(text), timeout)

    def send(self, keys: str) -> None:
        self.child.send(keys)

    def type_line(self, line: str) -> None:
        self.child.send(line + "\r")

    def wait_exit(self) -> int:
        deadline = time.monotonic() + EXIT_TIMEOUT_S
        while not self.eof and time.monotonic() < deadline:
            self.pump()
        self.child.close()
        assert self.child.exitstatus is not None, f"no exit; screen:\n{self.text()}"
        return int(self.child.exitstatus)


@contextmanager
def repl(cluster: Cluster, history: Path) -> Iterator[Terminal]:
    env = {**os.environ, "LOTC_TOKEN": cluster.admin_token, "LOTC_HISTORY": str(history),
           "TERM": "xterm", "PYTHONUNBUFFERED": "1"}
    argv = [sys.executable, "-m", "lotc.cli", "console", "--server",
            f"127.0.0.1:{cluster.admin_port}"]
    terminal = Terminal(argv, env)
    try:
        yield terminal
    finally:
        if terminal.child.isalive():
            terminal.child.close(force=True)


def test_repl_session(cluster: Cluster, app_bundle: Path, tmp_path: Path) -> None:
    cluster.start_server()
    cluster.start_agent("n1")
    cluster.wait_online("n1")
    history = tmp_path / "state" / "history"
    with repl(cluster, history) as t:
        t.wait_for(f"lotc admin@127.0.0.1:{cluster.admin_port}>")
        t.wait_for("connected · 1/1 agents online")  # the toolbar

        # a command completed with Tab, then its output
        t.send("ag")
        t.wait_for("List agents")  # the completion menu, offered while typing
        t.send("\t")
        t.wait_until(lambda: t.prompt_line().endswith("> agents"), "agents completed")
        t.send("\r")
        t.wait_for("unsynced")
        assert "n1     online" in t.text()

        # help from the command definitions; errors in plain words with the usage line
        t.type_line("help ps")
        t.wait_for("usage: ps [AGENT [P")
        t.type_line("agnets")
        t.wait_for("error: unknown command 'agnets' (did you mean agents or agent?)")
        t.type_line("kill n1")
        t.wait_for("usage: kill AGENT P [--signal SIG]")

        # upload and start; the agent name is completed from the live state
        t.send("upload n")
        t.send("\t")
        t.wait_until(lambda: t.prompt_line().endswith("upload n1"), "n1 completed")
        t.type_line(f" hello {app_bundle}")
        t.wait_for("loaded hello")
        t.type_line(f"start n1 hello -- {sys.executable} main.py")
        t.wait_for("started pid")
        t.wait_for("online · 1 process ·")  # the toolbar follows the server's state

        # an event printed above a half-typed line, which survives it
        t.send("kill n1 hel")
        t.send("\t")
        t.wait_until(lambda: t.prompt_line().endswith("> kill n1 hello"), "process completed")
        cluster.console("kill n1 hello")
        t.wait_for("hello  running -> exited")
        t.wait_until(lambda: t.prompt_line().endswith("> kill n1 hello"), "typed line kept")
        t.send(CTRL_C)  # at the prompt: drops the line
        t.wait_until(lambda: t.prompt_line().endswith(">"), "line dropped")

        # Ctrl-C ends a follow stream, the connection stays
        t.type_line("events -f")
        t.wait_for("agent-online")
        t.send(CTRL_C)
        t.type_line("help quit")
        t.wait_for("usage: quit")
        t.type_line("ps")
        t.wait_for("DESIRED")
        assert "lost" not in t.text() and "reconnected" not in t.text()

        # history: Ctrl-R searches it, Up recalls the last line
        t.send(CTRL_R + "upl")
        t.wait_until(lambda: "(reverse-i-search)`upl': upload n1 hello" in t.prompt_line(),
                     "Ctrl-R found the upload")
        t.send(CTRL_G)
        t.send(UP)
        t.wait_until(lambda: t.prompt_line().endswith("> ps"), "last line recalled")
        t.send(CTRL_U)
        t.send(CTRL_D)
        assert t.wait_exit() == 0
    saved = history.read_text()
    assert "+agents" in saved and "+help ps" in saved


def test_repl_reconnects(cluster: Cluster, tmp_path: Path) -> None:
    cluster.start_server()
    cluster.start_agent("n1")
    cluster.wait_online("n1")
    with repl(cluster, tmp_path / "history") as t:
        t.wait_for("connected · 1/1 agents online")
        cluster.stop_server(signal.SIGKILL)
        t.wait_for("lost: the server closed the connection; reconnecting")
        t.wait_for("NOT CONNECTED")
        t.type_line("ps")
        t.wait_for("error: not connected to 127.0.0.1")
        t.type_line("help ps")  # commands without the server still work
        t.wait_for("usage: ps [AGENT [P")

        cluster.start_server()
        t.wait_for(f"reconnected to 127.0.0.1:{cluster.admin_port}")
        t.wait_for("connected · 1/1 agents online", timeout=20)  # the agent is back too
        t.type_line("agents")
        t.wait_for("n1     online")
        t.type_line("quit")
        assert t.wait_exit() == 0


def demo_processes(root: Path) -> list[psutil.Process]:
    """Processes running in the demo's directory (what its agents started)."""
    return [p for p in psutil.process_iter(["cwd", "status"])
            if (p.info.get("cwd") or "").startswith(str(root))
            and p.info.get("status") != psutil.STATUS_ZOMBIE]


def run_demo(root: Path, tmp_path: Path, session: Callable[[Terminal], None]) -> None:
    """One `lotc demo` in a terminal: `session` types into it, then quit stops it all."""
    argv = [sys.executable, "-m", "lotc.cli", "demo", "--dir", str(root),
            "--agent-port", str(free_port()), "--admin-port", str(free_port())]
    env = {**os.environ, "LOTC_HISTORY": str(tmp_path / "history"), "TERM": "xterm"}
    terminal = Terminal(argv, env)
    try:
        t = terminal
        t.wait_for("demo-ipv6  ok  loaded hello", timeout=30)
        t.wait_for("connected · 2/2 agents online")
        session(t)
        t.type_line("quit")
        t.wait_for("demo stopped", timeout=30)
        assert t.wait_exit() == 0
        wait_until(lambda: not demo_processes(root), what="the demo's processes gone")
    finally:
        if terminal.child.isalive():
            terminal.child.close(force=True)
        for proc in demo_processes(root):
            proc.kill()


def test_demo_starts_everything_and_stops_it(tmp_path: Path) -> None:
    """`lotc demo`: server, two agents, the sample bundle, the console; quit stops it all."""
    root = tmp_path / "demo"

    def session(t: Terminal) -> None:
        t.type_line("start demo-ipv4 hello -- python3 hello.py")
        t.wait_for("started pid")
        t.type_line("logs demo-ipv4 hello -f --no-timestamps")
        t.wait_for("hello | hello from pid")
        t.send(CTRL_C)

    run_demo(root, tmp_path, session)
    assert (root / "admin.token").stat().st_mode & 0o077 == 0  # tokens are private


def test_a_second_demo_works_hints_included(tmp_path: Path) -> None:
    """Issue 14 item 5: the hints' `start` and `schedule` lines work on every run."""
    root = tmp_path / "demo"

    def session(t: Terminal) -> None:
        t.type_line("start demo-ipv4 hello -- python3 hello.py")
        t.wait_for("started pid")
        t.type_line("start all hello --name flaky -- python3 hello.py --crash-after 3")
        t.wait_until(lambda: t.text().count("started pid") == 3, "all started")
        t.type_line('schedule demo-ipv4 hello restart cron "*/2 * * * *"')
        t.wait_for("demo-ipv4  ok  schedule 1 set")

    run_demo(root, tmp_path, session)
    run_demo(root, tmp_path, session)  # no "already runs", and schedule 1 again

