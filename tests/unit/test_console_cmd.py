"""`lotc console` options: where the token and server come from, and the exit statuses."""
from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from admin_console.errors import UsageError
from lotc.commands import console_cmd


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="lotc")
    console_cmd.register(parser.add_subparsers())
    return parser.parse_args(["console", *argv])


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    for name in (console_cmd.ENV_TOKEN, console_cmd.ENV_SERVER, console_cmd.ENV_ADMIN):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    return tmp_path


def test_token_precedence(monkeypatch: pytest.MonkeyPatch, clean_env: Path) -> None:
    with pytest.raises(UsageError, match="no token: pass --token, set \\$LOTC_TOKEN"):
        console_cmd.find_token(None)
    (clean_env / "lotc").mkdir()
    (clean_env / "lotc" / "token").write_text("from-file\n")
    assert console_cmd.find_token(None) == "from-file"
    monkeypatch.setenv(console_cmd.ENV_TOKEN, "from-env")
    assert console_cmd.find_token(None) == "from-env"
    assert console_cmd.find_token("given") == "given"


def test_connection_defaults_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    connection = console_cmd.connection_from_args(parse("--token", "t", "-c", "ps"))
    assert (str(connection.address), connection.name) == ("localhost:7371", "admin")
    monkeypatch.setenv(console_cmd.ENV_SERVER, "[::1]")
    monkeypatch.setenv(console_cmd.ENV_ADMIN, "alice")
    connection = console_cmd.connection_from_args(parse("--token", "t", "-c", "ps"))
    assert (str(connection.address), connection.name) == ("[::1]:7371", "alice")
    with pytest.raises(UsageError, match="--server: IPv6 addresses need brackets"):
        console_cmd.connection_from_args(parse("--token", "t", "--server", "::1:80"))


def test_exit_statuses(capsys: pytest.CaptureFixture[str]) -> None:
    assert console_cmd.run(parse()) == 2
    assert "the interactive console needs a terminal" in capsys.readouterr().err  # no tty here
    assert console_cmd.run(parse("-c", "agents; frob")) == 2
    assert "command 2 ('frob'): unknown command 'frob'" in capsys.readouterr().err
    assert console_cmd.run(parse("-c", "agents")) == 2  # no token anywhere
    assert "no token" in capsys.readouterr().err
    assert console_cmd.run(parse("-c", "help kill")) == 0  # no server needed
    assert "usage: kill AGENT P [--signal SIG]" in capsys.readouterr().out


def test_script_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    script = tmp_path / "s.lotc"
    script.write_text("# just help\nhelp ps  # this one\n")
    assert console_cmd.run(parse("-f", str(script))) == 0
    assert "usage: ps [AGENT [P" in capsys.readouterr().out
    assert console_cmd.run(parse("-f", str(tmp_path / "missing"))) == 2
    assert "cannot read script" in capsys.readouterr().err
