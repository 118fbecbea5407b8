"""Parsing of every console command: good input -> the request, bad input -> plain words + usage."""
from __future__ import annotations

from pathlib import Path

import pytest

from admin_console.commands import build_registry
from admin_console.commands.stats import StatsArgs
from admin_console.commands.streams import EventsArgs, LogsArgs
from admin_console.commands.transfer import UploadArgs
from admin_console.errors import UsageError
from admin_console.parsing import (
    parse_duration,
    signal_name,
    split_commands,
    strip_comment,
    words,
)
from admin_console.registry import parse_line
from admin_console.script import lines_of_script, plan
from protocol.enums import RestartPolicy, Role
from protocol.messages import (
    BundleRemove,
    KeyValue,
    ListAgents,
    ListBundles,
    ListProcesses,
    ProcKill,
    ProcRestart,
    ProcResume,
    ProcStart,
    ProcStop,
    ProcTerminate,
    QueryLogs,
    TokenCreate,
    TokenRevoke,
)

REGISTRY = build_registry()


def parsed(line: str) -> object:
    invocation = parse_line(REGISTRY, line)
    assert invocation is not None
    return invocation.parsed


def usage_error(line: str) -> UsageError:
    with pytest.raises(UsageError) as info:
        parse_line(REGISTRY, line)
    return info.value


# ---------------------------------------------------------------- the -c splitter


@pytest.mark.parametrize(("text", "expected"), [
    ("agents; ps", ["agents", "ps"]),
    ("agents;ps;", ["agents", "ps"]),
    ("  ;; agents ;  ", ["agents"]),
    ("start all web -- sh -c 'a; b'; ps", ["start all web -- sh -c 'a; b'", "ps"]),
    ('start all web -- echo "x;y"', ['start all web -- echo "x;y"']),
    (r"start all web -- echo a\;b; ps", [r"start all web -- echo a\;b", "ps"]),
    ("""start all w -- echo "it's"; ps""", ["""start all w -- echo "it's\"""", "ps"]),
    ("", []),
])
def test_split_commands(text: str, expected: list[str]) -> None:
    assert split_commands(text) == expected


def test_split_commands_unterminated_quote() -> None:
    with pytest.raises(UsageError, match="unterminated"):
        split_commands("agents; start all web -- echo 'oops")


def test_pieces_tokenize_as_typed() -> None:
    [piece] = split_commands(r"start all web -- echo a\;b 'c d'")
    assert words(piece) == ["start", "all", "web", "--", "echo", "a;b", "c d"]


def test_words_keeps_hash_and_reports_bad_quotes() -> None:
    assert words("start all w --env C=#fff -- x") == ["start", "all", "w", "--env", "C=#fff",
                                                      "--", "x"]
    with pytest.raises(UsageError, match="closing quotation"):
        words("logs 'node-1 web")


def test_blank_line_is_nothing() -> None:
    assert parse_line(REGISTRY, "   ") is None


# ---------------------------------------------------------------- values


@pytest.mark.parametrize(("text", "seconds"), [
    ("90", 90), ("30s", 30), ("10m", 600), ("2h", 7200), ("1d", 86400), ("500ms", 0.5),
    ("1.5h", 5400),
])
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "ten", "10y", "-5m", "m"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(UsageError, match="bad duration"):
        parse_duration(text)


@pytest.mark.parametrize(("text", "name"), [
    ("hup", "SIGHUP"), ("SIGTERM", "SIGTERM"), ("usr1", "SIGUSR1"), ("9", "SIGKILL"),
])
def test_signal_names(text: str, name: str) -> None:
    assert signal_name(text) == name


# ---------------------------------------------------------------- every command, good input


def test_list_commands() -> None:
    assert parsed("agents") == ListAgents(pattern="")
    assert parsed("agents web-*") == ListAgents(pattern="web-*")
    assert parsed("ps node-1") == ListProcesses(pattern="node-1")
    assert parsed("bundles") == ListBundles(pattern="")


def test_upload_and_remove() -> None:
    assert parsed("upload all web ./build/web") == UploadArgs("all", "web", Path("build/web"))
    assert parsed("remove node-1 web") == BundleRemove(target="node-1", name="web")


def test_start_with_every_option() -> None:
    start = parsed("start web-* web --name front --restart always --liveness 10 "
                   "--env MODE=prod --env EMPTY= --cwd bin --grace 30s -- ./web --port 8080")
    assert start == ProcStart(
        target="web-*", name="front", bundle="web", revision=0,
        argv=("./web", "--port", "8080"),
        env=(KeyValue(key="MODE", value="prod"), KeyValue(key="EMPTY", value="")), cwd="bin",
        restart=RestartPolicy.ALWAYS, liveness_ms=10_000, grace_ms=30_000, backoff_base_ms=500,
        backoff_cap_ms=30_000, restart_limit=5, restart_window_s=60,
    )


def test_start_defaults() -> None:
    start = parsed("start node-1 tool -- python3 tool.py --verbose -- x")
    assert isinstance(start, ProcStart)
    assert start.name == "tool"
    assert start.argv == ("python3", "tool.py", "--verbose", "--", "x")
    assert start.restart == RestartPolicy.ON_FAILURE
    assert start.liveness_ms == 0 and start.env == ()


def test_process_controls() -> None:
    assert parsed("stop n1 web") == ProcStop(target="n1", name="web", signal="", grace_ms=0)
    assert parsed("resume n1 web") == ProcResume(target="n1", name="web", signal="", grace_ms=0)
    assert parsed("restart all web") == ProcRestart(target="all", name="web", signal="",
                                                    grace_ms=0)
    assert parsed("terminate n1 web --grace 5") == ProcTerminate(target="n1", name="web",
                                                                 signal="", grace_ms=5000)
    assert parsed("kill n1 web") == ProcKill(target="n1", name="web", signal="SIGKILL",
                                             grace_ms=0)
    assert parsed("kill n1 web --signal hup").signal == "SIGHUP"  # type: ignore[attr-defined]


def test_stats_logs_events() -> None:
    assert parsed("stats n1") == StatsArgs("n1", 600.0)
    assert parsed("stats n1 --since 1h") == StatsArgs("n1", 3600.0)
    assert parsed("logs n1 web") == LogsArgs(
        QueryLogs(target="n1", process="web", lines=20, follow=False), timestamps=True)
    assert parsed("logs all web -n 5 -f --no-timestamps") == LogsArgs(
        QueryLogs(target="all", process="web", lines=5, follow=True), timestamps=False)
    assert parsed("events") == EventsArgs("", None, 20, False)
    assert parsed("events node-* --since 10m -n 3 -f") == EventsArgs("node-*", 600.0, 3, True)


def test_tokens() -> None:
    assert parsed("token create --agent node-3") == TokenCreate(role=Role.AGENT, name="node-3")
    assert parsed("token create --admin alice") == TokenCreate(role=Role.ADMIN, name="alice")
    assert parsed("token revoke node-3") == TokenRevoke(name="node-3")


def test_help_quit_and_aliases() -> None:
    assert parsed("help") is None
    assert parsed("help start") == "start"
    assert parse_line(REGISTRY, "exit").command.name == "quit"  # type: ignore[union-attr]


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(("line", "words_expected", "usage_of"), [
    ("frobnicate", "unknown command 'frobnicate'", None),
    ("stat n1", "did you mean stats", None),
    ("ps a b c", "unexpected words: c", "ps"),
    ("upload all web", "missing: path", "upload"),
    ("upload all ../web ./x", "invalid bundle name", "upload"),
    ("remove node-1", "missing: bundle", "remove"),
    ("start all web", "nothing to run", "start"),
    ("start all web --", "nothing to run", "start"),
    ("start all web --restart sometimes -- x", "invalid choice", "start"),
    ("start all web --liveness soon -- x", "bad duration", "start"),
    ("start all web --env NOEQUALS -- x", "expected KEY=VALUE", "start"),
    ("start all web --name -- x", "needs a value", "start"),
    ("stop node-1", "missing: process", "stop"),
    ("kill n1 web --signal FOO", "unknown signal 'FOO'", "kill"),
    ("terminate n1 web --grace x", "bad duration", "terminate"),
    ("stats", "missing: agent", "stats"),
    ("logs n1 web -n -1", "must not be negative", "logs"),
    ("logs n1 web -n many", "not a whole number", "logs"),
    ("events --since yesterday", "bad duration", "events"),
    ("token", "token create", "token"),
    ("token create", "--agent --admin is required", "token"),
    ("token create --agent a --admin b", "not allowed with", "token"),
    ("token revoke", "missing", "token"),
    ("help a b", "unexpected words", "help"),
    ("quit now", "unexpected words", "quit"),
])
def test_bad_input_is_plain_words_with_usage(line: str, words_expected: str,
                                             usage_of: str | None) -> None:
    error = usage_error(line)
    assert words_expected in str(error)
    if usage_of is not None:
        assert error.usage == REGISTRY.get(usage_of).usage
        assert str(error).endswith("usage: " + error.usage)


def test_every_command_has_help_with_examples() -> None:
    for command in REGISTRY:
        assert command.summary and command.usage.startswith(command.name)
        assert "Examples:" in command.help, command.name
        for line in command.help.split("Examples:", 1)[1].strip().splitlines():
            parse_line(REGISTRY, line.strip())  # every example parses


def test_options_are_listed_for_completion() -> None:
    assert "--restart" in REGISTRY.get("start").options()
    assert "--signal" in REGISTRY.get("kill").options()
    assert REGISTRY.get("logs").arguments == ("agent", "process")


@pytest.mark.parametrize(("line", "kept"), [
    ("ps  # all of them", "ps"),
    ("# only a comment", ""),
    ("start all w --env C=#fff -- x", "start all w --env C=#fff -- x"),
    ("start all w -- echo '# not a comment'", "start all w -- echo '# not a comment'"),
    (r"start all w -- echo \# x", r"start all w -- echo \# x"),
])
def test_strip_comment(line: str, kept: str) -> None:
    assert strip_comment(line) == kept


def test_script_lines() -> None:
    text = "# setup\nagents\n\n  ps node-1  # which\nstop a p; resume a p\n"
    assert lines_of_script(text, "s.lotc") == [
        ("s.lotc:2", "agents"), ("s.lotc:4", "ps node-1"), ("s.lotc:5", "stop a p"),
        ("s.lotc:5", "resume a p")]
    with pytest.raises(UsageError, match=r"s.lotc:2 \('ps a b c'\): unexpected words: c"):
        plan(REGISTRY, lines_of_script("agents\nps a b c\n", "s.lotc"))


def test_json_after_a_command_is_the_commands_own_flag() -> None:
    """Issue 14 item 5: `-c "ps --json"`; a program's --json after '--' stays its own."""
    from admin_console.commands import build_registry
    from admin_console.registry import parse_line

    registry = build_registry()
    ps = parse_line(registry, "ps --json n1")
    assert ps is not None and ps.json and ps.parsed is not None
    start = parse_line(registry, "start n1 app -- ./app --json")
    assert start is not None and not start.json and start.parsed.argv == ("./app", "--json")
    plain = parse_line(registry, "agents")
    assert plain is not None and not plain.json
