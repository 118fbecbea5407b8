"""lotc.options: the one table of process options, and how the server sends them."""
from __future__ import annotations

from pathlib import Path

import pytest
import trio

from lotc.errors import InvalidRequest
from lotc.options import START_OPTIONS_CAPABILITY, canonical_options, parse_size, spec_fields
from lotc.server.controller import Controller
from lotc.server.model import Model
from lotc.server.processes import start_message, start_process, unapplied_options
from lotc.server.records import ProcessSpecRecord
from protocol.codec import FrameDecoder, encode
from protocol.enums import BundleKind, DesiredState, RestartPolicy
from protocol.messages import KeyValue, Ok, ProcStart, ProcStartOptions
from tests.server_helpers import (  # noqa: F401  (fixtures)
    connect_agent,
    ctl_fixture,
    model_fixture,
    wall_fixture,
)


def _spec(options: tuple[tuple[str, str], ...]) -> ProcessSpecRecord:
    return ProcessSpecRecord(
        agent="n1", name="web", bundle="app", argv=("./app",), env=(), cwd="",
        restart=RestartPolicy.ALWAYS, liveness_ms=0, grace_ms=0, backoff_base_ms=0,
        backoff_cap_ms=0, restart_limit=0, restart_window_s=0, desired=DesiredState.RUNNING,
        revision=0, updated_us=1, options=options,
    )


def test_sizes_and_canonical_text() -> None:
    assert parse_size("64K") == 65536 and parse_size("10M") == 10 * 2**20
    assert parse_size("1GiB") == 2**30 and parse_size("5000") == 5000
    assert canonical_options([("log-keep", "2"), ("log-size", "64K")]) == (
        ("log-keep", "2"), ("log-size", "65536"))
    assert spec_fields([("log-size", "64K"), ("log-keep", "0")]) == {
        "log_size": 65536, "log_keep": 0}


@pytest.mark.parametrize("pairs, said", [
    ([("swap", "1G")], "unknown process option 'swap'"),
    ([("log-size", "10Q")], "process option log-size: '10Q' is not a size"),
    ([("log-size", "100")], "out of range"),
    ([("log-keep", "x")], "not a whole number"),
    ([("log-keep", "1"), ("log-keep", "2")], "given twice"),
])
def test_bad_options_are_refused_in_plain_words(pairs: list[tuple[str, str]], said: str) -> None:
    with pytest.raises(InvalidRequest, match=said):
        canonical_options(pairs)


def test_only_agents_announcing_start_options_get_the_new_message() -> None:
    spec = _spec((("log-keep", "2"), ("log-size", "65536")))
    new = start_message(spec, ("processes", START_OPTIONS_CAPABILITY))
    assert isinstance(new, ProcStartOptions)
    assert new.options == (KeyValue("log-keep", "2"), KeyValue("log-size", "65536"))
    assert FrameDecoder().feed(encode(new, 7))[0].body == new
    old = start_message(spec, ("processes",))
    assert type(old) is ProcStart and old.name == "web"
    assert unapplied_options(spec, ("processes",)) == (
        "; this agent's LOTC is too old for --log-keep, --log-size: not applied "
        "(upgrade the agent)")
    assert unapplied_options(spec, (START_OPTIONS_CAPABILITY,)) == ""
    assert type(start_message(_spec(()), (START_OPTIONS_CAPABILITY,))) is ProcStart


def test_options_are_kept_in_the_desired_state(tmp_path: Path) -> None:
    model = Model(tmp_path / "lotc.db")
    try:
        model.put_process(_spec((("log-size", "65536"),)))
    finally:
        model.close()
    model = Model(tmp_path / "lotc.db")
    try:
        stored = model.find_process("n1", "web")
        assert stored is not None and stored.options == (("log-size", "65536"),)
    finally:
        model.close()


async def test_an_old_agent_gets_plain_start_and_the_admin_is_told(
        ctl: Controller, nursery: trio.Nursery) -> None:
    new = await connect_agent(nursery, ctl, "new-1", answers={
        ProcStartOptions: lambda frame: Ok(message="started pid 42")},
        capabilities=("processes", START_OPTIONS_CAPABILITY))
    old = await connect_agent(nursery, ctl, "old-1", capabilities=("processes",))
    for agent in ("new-1", "old-1"):
        ctl.model.set_desired_bundle(agent, "app", bytes(32), BundleKind.FILE, 1, now_us=1)
    msg = ProcStartOptions(target="*-1", name="web", bundle="app", argv=("./app",),
                           options=(KeyValue("log-size", "10M"),))

    results = {r.agent: r for r in await start_process(ctl, msg)}

    assert [m.options for m in new.of_type(ProcStartOptions)] == [
        (KeyValue("log-size", "10485760"),)]
    assert len(old.of_type(ProcStart)) == 1 and not old.of_type(ProcStartOptions)
    assert "too old for --log-size: not applied" in results["old-1"].message
    assert results["new-1"].message == "started pid 42"
    assert not old.closed.is_set(), "the old agent's link is untouched"
    stored = ctl.model.find_process("old-1", "web")
    assert stored is not None and stored.options == (("log-size", "10485760"),)
