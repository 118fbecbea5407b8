"""The REPL's completer against a fake server state, and through a real prompt (pipe input)."""
from __future__ import annotations

from pathlib import Path

import pytest
from prompt_toolkit import PromptSession
from prompt_toolkit.input import create_pipe_input
from prompt_toolkit.output import DummyOutput

from admin_console.commands import build_registry
from admin_console.commands.base import Command
from admin_console.completion import ConsoleCompleter, suggest, tab_key_bindings, typed
from admin_console.live_state import (
    AgentInfo,
    BundleInfo,
    LabelsInfo,
    ProcessInfo,
    ScheduleInfo,
    ServerState,
)
from admin_console.parsing import CommandParser
from admin_console.registry import Registry

REGISTRY = build_registry()
STATE = ServerState(
    agents=(AgentInfo("web-1", True), AgentInfo("web-2", False), AgentInfo("db", True)),
    processes=(ProcessInfo("web-1", "api", "running"), ProcessInfo("web-2", "worker", "exited"),
               ProcessInfo("db", "postgres", "running")),
    bundles=(BundleInfo("web-1", "api-v2"), BundleInfo("db", "pg")),
    schedules=(ScheduleInfo(7, "db", "postgres", "restart"),),
)


def texts(text: str, state: ServerState = STATE) -> list[str]:
    return [s.text for s in suggest(REGISTRY, state, text)]


def test_commands_with_their_summaries() -> None:
    found = suggest(REGISTRY, STATE, "st")
    assert [s.text for s in found] == ["start", "stop", "stats"]
    assert all(s.start == -2 for s in found)
    assert found[0].meta.startswith("Start a process")
    assert "agents" in texts("")


def test_agent_names_with_their_state() -> None:
    found = suggest(REGISTRY, STATE, "ps ")
    assert [(s.text, s.meta) for s in found] == [
        ("web-1", "online"), ("web-2", "offline"), ("db", "online"), ("all", "every agent")]
    assert texts("ps we") == ["web-1", "web-2"]
    assert texts("agents; logs d") == ["db"]  # after ';' a new command starts


def test_process_names_on_the_agent_typed_before() -> None:
    assert texts("kill db ") == ["postgres"]
    assert texts("logs web-* ") == ["api", "worker"]  # a glob
    assert texts("stop all ") == ["api", "worker", "postgres"]
    assert texts("restart nosuch ") == []
    assert texts("kill db postgres ") == []  # no third positional word


def test_bundle_names_on_the_agent_typed_before() -> None:
    assert texts("start db ") == ["pg"]
    assert texts("remove all ") == ["api-v2", "pg"]


def test_options_and_their_values() -> None:
    assert texts("kill db postgres --s") == ["--signal"]
    assert "HUP" in texts("kill db postgres --signal ")
    assert texts("kill db postgres --signal US") == ["USR1", "USR2"]
    assert texts("start db pg --restart ") == ["always", "never", "on-failure"]
    assert texts("start db pg --restart never ") == []  # value given: a positional slot is next
    assert "--restart" not in texts("start db pg --restart never --")  # used once
    assert texts("start db pg --env A=1 --e") == ["--env", "--env-file"]  # repeatable
    assert texts("start db pg -- pyth") == []  # the program's own command line


def test_subcommands_and_help_topics() -> None:
    assert texts("token ") == ["create", "revoke"]
    assert texts("token create --a") == ["--agent", "--admin"]
    assert texts("help sta") == ["start", "stats"]


def test_unknown_command_offers_nothing() -> None:
    assert texts("frob ") == []


def test_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "build").mkdir()
    (tmp_path / "bundle.tar").write_text("")
    (tmp_path / ".hidden").write_text("")
    monkeypatch.chdir(tmp_path)
    assert texts("upload db web b") == ["build/", "bundle.tar"]
    assert texts("upload db web ") == ["build/", "bundle.tar"]
    assert texts("upload db web .h") == [".hidden"]


def test_quotes_and_partial_words() -> None:
    assert typed("kill 'db' po").words == ["kill", "db"]
    line = typed('logs "we')
    assert (line.current, line.raw_length) == ("we", 3)
    assert [(s.text, s.start) for s in suggest(REGISTRY, STATE, 'logs "we')] == [
        ("web-1", -3), ("web-2", -3)]


class FakeUnschedule(Command):
    """Drop a schedule (shaped like the coming `unschedule ID`)."""

    name = "unschedule"
    usage = "unschedule ID"
    arguments = ("schedule",)

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("id")


class FakeSchedule(Command):
    """Schedule an action (shaped like the coming `schedule`)."""

    name = "schedule"
    usage = "schedule AGENT P ACTION [--tz ZONE]"
    arguments = ("agent", "process", "action")

    def add_arguments(self, parser: CommandParser) -> None:
        for word in ("agent", "process", "action"):
            parser.add_argument(word)
        parser.add_argument("--tz")


def test_schedule_ids_actions_and_zones() -> None:
    registry = Registry([FakeUnschedule(), FakeSchedule()])
    found = suggest(registry, STATE, "unschedule ")
    assert [(s.text, s.meta) for s in found] == [("7", "db postgres restart")]
    assert [s.text for s in suggest(registry, STATE, "schedule db postgres re")] == [
        "resume", "restart"]
    assert [s.text for s in suggest(registry, STATE, "schedule db postgres stop --tz Europe/Par")
            ] == ["Europe/Paris"]


def test_empty_state_still_completes_commands_and_all() -> None:
    assert texts("ps ", ServerState()) == ["all"]


def test_completer_through_a_prompt() -> None:
    """Tab in a real PromptSession (pipe input), typed as fast as a paste."""
    completer = ConsoleCompleter(REGISTRY, lambda: STATE)
    for typed_keys, expected in [("kill db pos\t\r", "kill db postgres"),
                                 ("ps web\t\r", "ps web-"),  # the common part
                                 ("help sta\t\t\r", "help start")]:  # menu, first entry
        with create_pipe_input() as pipe:
            session: PromptSession[str] = PromptSession(
                input=pipe, output=DummyOutput(), completer=completer,
                key_bindings=tab_key_bindings(completer))
            pipe.send_text(typed_keys)
            assert session.prompt() == expected


def test_the_real_schedule_command_completes_cron_or_at() -> None:
    assert texts("schedule db postgres stop ") == ["cron", "at"]
    assert texts("schedule db postgres stop c") == ["cron"]


LABELLED = ServerState(
    agents=STATE.agents, processes=STATE.processes, bundles=STATE.bundles,
    labels=(LabelsInfo("web-1", (("role", "web"), ("zone", "a")), ("zone",)),
            LabelsInfo("web-2", (("role", "web"),), ()),
            LabelsInfo("db", (("role", "db"),), ())),
)


def test_label_selectors_complete_and_select_like_the_server() -> None:
    assert texts("ps ro", LABELLED) == ["role=db", "role=web"]  # known label terms
    assert texts("stop role=web ", LABELLED) == ["api", "worker"]  # on the agents it matches
    assert texts("stop role=web,zone!=a ", LABELLED) == ["worker"]
    assert texts("stop web-1,db ", LABELLED) == ["api", "postgres"]  # a comma list
    assert texts("stop web-1,role=web ", LABELLED) == []  # not a selector: nothing


def test_label_and_unlabel_offer_keys() -> None:
    assert texts("label web-1 ", LABELLED) == ["role=", "zone="]
    assert texts("label web-1 role=x ", LABELLED) == ["role=", "zone="]  # KEY=VALUE repeats
    assert texts("unlabel web-1 ", LABELLED) == ["zone"]  # only what the console set
    assert texts("unlabel db ", LABELLED) == []
