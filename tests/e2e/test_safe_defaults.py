"""Issue 14 item 4: safe defaults, --help that says them, plain start-up errors.

The real `lotc` command as a subprocess; sockets on loopback, files in tmp_path.
"""
from __future__ import annotations

import argparse
import socket
import subprocess
from pathlib import Path

import pytest

from lotc.cli import build_parser
from lotc.commands.server_cmd import config_from_args
from tests.cluster import LOTC, free_port

TIMEOUT_S = 30.0


def lotc(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*LOTC, *args], capture_output=True, text=True, timeout=TIMEOUT_S,
                          cwd=cwd, stdin=subprocess.DEVNULL, check=False)


def test_console_port_is_loopback_and_agent_port_all_interfaces() -> None:
    args = build_parser().parse_args(["server"])
    config = config_from_args(args)
    assert [str(a) for a in config.admin_listen] == ["127.0.0.1:7371", "[::1]:7371"]
    assert [str(a) for a in config.listen] == ["0.0.0.0:7370", "[::]:7370"]
    assert config.http_listen == ()  # /metrics only when asked for (DESIGN 7)


def test_server_help_says_the_defaults() -> None:
    text = " ".join(lotc("server", "--help").stdout.split())
    assert "this machine only: 127.0.0.1:7371 and [::1]:7371" in text
    assert "all interfaces: 0.0.0.0:7370 and [::]:7370" in text


def _options_without_help(parser: argparse.ArgumentParser, where: str) -> list[str]:
    missing = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                missing += _options_without_help(sub, f"{where} {name}")
        elif action.help is None and action.dest != "help":
            missing.append(f"{where} {'/'.join(action.option_strings) or action.dest}")
    return missing


def test_every_flag_has_help() -> None:
    assert _options_without_help(build_parser(), "lotc") == []


def test_agent_help_names_the_default_state_dir() -> None:
    text = " ".join(lotc("agent", "--help").stdout.split())
    assert "default ./lotc-agent-state" in text
    assert "--stats-interval SECONDS how often to report" in text


def test_address_in_use_names_it_and_creates_no_database(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        db = tmp_path / "lotc.db"
        result = lotc("server", "--db", str(db), "--listen", f"127.0.0.1:{port}",
                      "--admin-listen", f"127.0.0.1:{free_port()}")
        assert result.returncode == 1
        assert f"cannot listen on 127.0.0.1:{port}: Address already in use" in result.stderr
        assert "Traceback" not in result.stderr
        # the console port too, once the agent port did open
        result = lotc("server", "--db", str(db), "--listen", f"127.0.0.1:{free_port()}",
                      "--admin-listen", f"127.0.0.1:{port}")
        assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("argv, usage", [
    (["console", "--frob"], "usage: lotc console"),
    (["server", "--frob"], "usage: lotc server"),
    (["token", "create", "--admin", "a", "--frob"], "usage: lotc token create"),
    (["--frob"], "usage: lotc [-h]"),
])
def test_an_unknown_flag_shows_its_commands_usage(argv: list[str], usage: str) -> None:
    result = lotc(*argv)
    assert result.returncode == 2
    assert result.stderr.startswith(usage)
    assert "unrecognized arguments: --frob" in result.stderr
